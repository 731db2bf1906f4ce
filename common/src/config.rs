//! Configuration of each role from the design's environment variables.
//!
//! Every problem names the variable at fault, so a node with a bad configuration stops at
//! start with a message such as `invalid configuration: QUORUM_SIZE: 1 is not a majority
//! of TOTAL_ACCEPTORS=3`.

pub use crate::tls::Security;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "invalid configuration: {}: {}",
            self.variable, self.problem
        )
    }
}

impl std::error::Error for ConfigError {}

/// Where variables come from: the process environment, or a map in tests.
pub trait Lookup {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Environment;

impl Lookup for Environment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

fn error(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

fn parsed<T: FromStr>(
    lookup: &dyn Lookup,
    variable: &'static str,
    default: Option<T>,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match lookup.get(variable) {
        Some(text) if !text.trim().is_empty() => text
            .trim()
            .parse()
            .map_err(|problem| error(variable, format!("{text:?} is not valid: {problem}"))),
        _ => default.ok_or_else(|| error(variable, "is required but not set")),
    }
}

fn positive_id(lookup: &dyn Lookup, variable: &'static str) -> Result<u32, ConfigError> {
    let id: u32 = parsed(lookup, variable, None)?;
    if id == 0 {
        return Err(error(variable, "ids start at 1"));
    }
    Ok(id)
}

fn positive_milliseconds(
    lookup: &dyn Lookup,
    variable: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    positive(lookup, variable, default, "must be at least 1 millisecond")
}

fn at_least_one(
    lookup: &dyn Lookup,
    variable: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    positive(lookup, variable, default, "must be at least 1")
}

/// A count or duration that 0 would make meaningless; `problem` says so in its unit.
fn positive(
    lookup: &dyn Lookup,
    variable: &'static str,
    default: u64,
    problem: &str,
) -> Result<u64, ConfigError> {
    let value: u64 = parsed(lookup, variable, Some(default))?;
    if value == 0 {
        return Err(error(variable, problem));
    }
    Ok(value)
}

/// A comma-separated list of `host:port`, each with a port.
fn host_list(
    lookup: &dyn Lookup,
    variable: &'static str,
    required: bool,
) -> Result<Vec<String>, ConfigError> {
    let text = lookup.get(variable).unwrap_or_default();
    let hosts: Vec<String> = text
        .split(',')
        .map(|host| host.trim().to_string())
        .filter(|host| !host.is_empty())
        .collect();
    if required && hosts.is_empty() {
        return Err(error(
            variable,
            "is required: a comma-separated list of host:port",
        ));
    }
    for host in &hosts {
        let port = host.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
        if !matches!(port, Some(Ok(port)) if port > 0) {
            return Err(error(
                variable,
                format!("{host:?} is not host:port with a port in 1..65535"),
            ));
        }
    }
    Ok(hosts)
}

fn data_dir(lookup: &dyn Lookup, default_name: String) -> PathBuf {
    match lookup.get("DATA_DIR") {
        Some(path) if !path.trim().is_empty() => PathBuf::from(path.trim()),
        _ => PathBuf::from("paxos-data").join(default_name),
    }
}

/// CLUSTER_ID, trimmed: one line of printable text, since it is stored in a line of the
/// acceptor's identity file.
fn cluster_id(lookup: &dyn Lookup) -> Result<String, ConfigError> {
    let cluster_id = lookup
        .get("CLUSTER_ID")
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "paxos".to_string());
    if cluster_id.chars().any(char::is_control) {
        return Err(error("CLUSTER_ID", "must not hold control characters"));
    }
    Ok(cluster_id)
}

fn bind_address(lookup: &dyn Lookup) -> Result<String, ConfigError> {
    let host = lookup
        .get("BIND_ADDRESS")
        .filter(|host| !host.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    host.trim()
        .parse::<std::net::IpAddr>()
        .map_err(|problem| error("BIND_ADDRESS", format!("{host:?}: {problem}")))?;
    Ok(host.trim().to_string())
}

fn quorum(
    lookup: &dyn Lookup,
    total_acceptors: usize,
    acceptor_hosts: &[String],
) -> Result<usize, ConfigError> {
    if total_acceptors == 0 {
        return Err(error("TOTAL_ACCEPTORS", "must be at least 1"));
    }
    if !acceptor_hosts.is_empty() && acceptor_hosts.len() != total_acceptors {
        return Err(error(
            "ACCEPTOR_HOSTS",
            format!(
                "lists {} acceptors but TOTAL_ACCEPTORS={total_acceptors}",
                acceptor_hosts.len()
            ),
        ));
    }
    let majority = total_acceptors / 2 + 1;
    let quorum_size: usize = parsed(lookup, "QUORUM_SIZE", Some(majority))?;
    if quorum_size < majority || quorum_size > total_acceptors {
        return Err(error(
            "QUORUM_SIZE",
            format!(
                "{quorum_size} is not a majority of TOTAL_ACCEPTORS={total_acceptors} \
                 (must be in {majority}..={total_acceptors}, or two quorums could disagree)"
            ),
        ));
    }
    Ok(quorum_size)
}

/// An acceptor's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptorConfig {
    /// ACCEPTOR_ID: this acceptor's id, from 1.
    pub id: u32,
    /// BIND_ADDRESS (default 127.0.0.1) and ACCEPTOR_PORT (default 7001).
    pub listen: String,
    /// TOTAL_ACCEPTORS (default 3).
    pub total_acceptors: usize,
    /// DATA_DIR (default paxos-data/acceptor<ID>): where promises and votes are kept.
    pub data_dir: PathBuf,
    /// TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, or PAXOS_INSECURE=true: how this node's
    /// connections to the others are secured.
    pub security: Security,
    /// CLUSTER_ID (default "paxos"): the cluster this acceptor belongs to, written into
    /// its data directory's identity so that a volume mounted on a node of another
    /// cluster is refused at start.
    pub cluster_id: String,
}

impl AcceptorConfig {
    /// Reads the acceptor's variables.
    pub fn from_lookup(lookup: &dyn Lookup) -> Result<Self, ConfigError> {
        let id = positive_id(lookup, "ACCEPTOR_ID")?;
        let port: u16 = parsed(lookup, "ACCEPTOR_PORT", Some(7001))?;
        let total_acceptors: usize = parsed(lookup, "TOTAL_ACCEPTORS", Some(3))?;
        if total_acceptors == 0 {
            return Err(error("TOTAL_ACCEPTORS", "must be at least 1"));
        }
        if id as usize > total_acceptors {
            return Err(error(
                "ACCEPTOR_ID",
                format!("{id} is above TOTAL_ACCEPTORS={total_acceptors}"),
            ));
        }
        Ok(AcceptorConfig {
            id,
            listen: format!("{}:{port}", bind_address(lookup)?),
            total_acceptors,
            data_dir: data_dir(lookup, format!("acceptor{id}")),
            security: Security::from_lookup(lookup)?,
            cluster_id: cluster_id(lookup)?,
        })
    }
}

/// A proposer's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposerConfig {
    /// PROPOSER_ID: this proposer's id, from 1; also the tie-breaker of its ballots.
    pub id: u32,
    /// BIND_ADDRESS and PROPOSER_PORT (default 7101).
    pub listen: String,
    /// ACCEPTOR_HOSTS: every acceptor.
    pub acceptor_hosts: Vec<String>,
    /// LEARNER_HOSTS: every learner (they receive heartbeats).
    pub learner_hosts: Vec<String>,
    /// PROPOSER_HOSTS (optional): the other proposers, which receive heartbeats and
    /// forwarded writes. A proposer's own address may be listed; it is skipped.
    pub proposer_hosts: Vec<String>,
    /// HEARTBEAT_INTERVAL in milliseconds (default 100).
    pub heartbeat_interval_milliseconds: u64,
    /// LEADER_TIMEOUT in milliseconds (default 1000): silence after which an election starts.
    pub leader_timeout_milliseconds: u64,
    /// QUORUM_SIZE (default a majority of the acceptors).
    pub quorum_size: usize,
    /// DATA_DIR (default paxos-data/proposer<ID>): the highest round used, so a restarted
    /// proposer never reuses a ballot.
    pub data_dir: PathBuf,
    /// MAX_SLOTS_IN_FLIGHT (default 32): slots the leader may have in phase 2 at once.
    pub max_slots_in_flight: u64,
    /// MAX_BATCH_COMMANDS (default 1024): client writes the leader may put in one slot.
    pub max_batch_commands: u64,
    /// TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, or PAXOS_INSECURE=true: how this node's
    /// connections to the others are secured.
    pub security: Security,
}

impl ProposerConfig {
    /// Reads the proposer's variables.
    pub fn from_lookup(lookup: &dyn Lookup) -> Result<Self, ConfigError> {
        let id = positive_id(lookup, "PROPOSER_ID")?;
        let port: u16 = parsed(lookup, "PROPOSER_PORT", Some(7101))?;
        let acceptor_hosts = host_list(lookup, "ACCEPTOR_HOSTS", true)?;
        let heartbeat_interval_milliseconds =
            positive_milliseconds(lookup, "HEARTBEAT_INTERVAL", 100)?;
        let leader_timeout_milliseconds = positive_milliseconds(lookup, "LEADER_TIMEOUT", 1000)?;
        if leader_timeout_milliseconds <= heartbeat_interval_milliseconds {
            return Err(error(
                "LEADER_TIMEOUT",
                format!(
                    "{leader_timeout_milliseconds} ms must exceed HEARTBEAT_INTERVAL \
                     ({heartbeat_interval_milliseconds} ms), or followers depose a live leader"
                ),
            ));
        }
        let total: usize = parsed(lookup, "TOTAL_ACCEPTORS", Some(acceptor_hosts.len()))?;
        Ok(ProposerConfig {
            id,
            listen: format!("{}:{port}", bind_address(lookup)?),
            quorum_size: quorum(lookup, total, &acceptor_hosts)?,
            acceptor_hosts,
            learner_hosts: host_list(lookup, "LEARNER_HOSTS", false)?,
            proposer_hosts: host_list(lookup, "PROPOSER_HOSTS", false)?,
            heartbeat_interval_milliseconds,
            leader_timeout_milliseconds,
            data_dir: data_dir(lookup, format!("proposer{id}")),
            max_slots_in_flight: at_least_one(lookup, "MAX_SLOTS_IN_FLIGHT", 32)?,
            max_batch_commands: at_least_one(lookup, "MAX_BATCH_COMMANDS", 1024)?,
            security: Security::from_lookup(lookup)?,
        })
    }
}

/// A learner's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnerConfig {
    /// LEARNER_ID: this learner's id, from 1.
    pub id: u32,
    /// BIND_ADDRESS and LEARNER_PORT (default 7201).
    pub listen: String,
    /// ACCEPTOR_HOSTS: every acceptor (the learner subscribes to their votes).
    pub acceptor_hosts: Vec<String>,
    /// PROPOSER_HOSTS: every proposer (they hear the learner's progress).
    pub proposer_hosts: Vec<String>,
    /// LEARNER_HOSTS: the learners to synchronise with; its own address may be listed.
    pub learner_hosts: Vec<String>,
    /// TOTAL_ACCEPTORS (default: the number of ACCEPTOR_HOSTS).
    pub total_acceptors: usize,
    /// QUORUM_SIZE (default a majority): votes with one ballot that decide a slot.
    pub quorum_size: usize,
    /// DATA_DIR (default paxos-data/learner<ID>): the decided log, for a fast restart.
    pub data_dir: PathBuf,
    /// LEARNER_RETAIN_SLOTS (default 100000): how many applied slots keep their decided
    /// values, for peers catching up and subscribers resuming. Older slots survive only
    /// folded into the state (sent whole to a peer that is further behind).
    pub retain_slots: u64,
    /// TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, or PAXOS_INSECURE=true: how this node's
    /// connections to the others are secured.
    pub security: Security,
}

impl LearnerConfig {
    /// Reads the learner's variables.
    pub fn from_lookup(lookup: &dyn Lookup) -> Result<Self, ConfigError> {
        let id = positive_id(lookup, "LEARNER_ID")?;
        let port: u16 = parsed(lookup, "LEARNER_PORT", Some(7201))?;
        let acceptor_hosts = host_list(lookup, "ACCEPTOR_HOSTS", true)?;
        let total_acceptors: usize = parsed(lookup, "TOTAL_ACCEPTORS", Some(acceptor_hosts.len()))?;
        Ok(LearnerConfig {
            id,
            listen: format!("{}:{port}", bind_address(lookup)?),
            quorum_size: quorum(lookup, total_acceptors, &acceptor_hosts)?,
            acceptor_hosts,
            proposer_hosts: host_list(lookup, "PROPOSER_HOSTS", false)?,
            learner_hosts: host_list(lookup, "LEARNER_HOSTS", false)?,
            total_acceptors,
            data_dir: data_dir(lookup, format!("learner{id}")),
            retain_slots: at_least_one(lookup, "LEARNER_RETAIN_SLOTS", 100_000)?,
            security: Security::from_lookup(lookup)?,
        })
    }
}

/// The client API's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// CLIENT_ID (default 1).
    pub id: u32,
    /// BIND_ADDRESS and CLIENT_PORT (default 8000): the REST API.
    pub listen: String,
    /// PROPOSER_HOSTS: every proposer.
    pub proposer_hosts: Vec<String>,
    /// LEARNER_HOSTS: every learner.
    pub learner_hosts: Vec<String>,
    /// REQUEST_TIMEOUT in milliseconds (default 5000): after it, a request gets 503.
    pub request_timeout_milliseconds: u64,
    /// DATA_DIR (default paxos-data/client<ID>): where subscriptions are kept, so that they
    /// survive a restart. None keeps them in memory only.
    pub data_dir: Option<PathBuf>,
    /// SUBSCRIPTION_BUFFER_EVENTS (default 1024): events a subscriber's stream queues at
    /// most; a subscriber further behind is disconnected with the position to resume from.
    pub subscription_buffer_events: usize,
    /// SUBSCRIPTION_BUFFER_BYTES (default 8 MiB): the same bound in bytes of event data.
    pub subscription_buffer_bytes: usize,
    /// CLIENT_HEADER_TIMEOUT in milliseconds (default 10000): a request head must arrive
    /// whole within this time of its first byte, or the connection is closed (slowloris).
    pub header_timeout_milliseconds: u64,
    /// CLIENT_IDLE_TIMEOUT in milliseconds (default 60000): a connection with no request in
    /// progress and no byte of a next one is closed after this time.
    pub idle_timeout_milliseconds: u64,
    /// CLIENT_MAX_CONNECTIONS (default 10000): open REST connections at most, further capped
    /// by the process's file-descriptor limit. At the limit a new connection closes the one
    /// idle the longest, or is refused with 503 when none is idle.
    pub max_connections: usize,
    /// TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE, or PAXOS_INSECURE=true: how this node's
    /// connections to the others are secured.
    pub security: Security,
}

impl ClientConfig {
    /// Reads the client API's variables.
    pub fn from_lookup(lookup: &dyn Lookup) -> Result<Self, ConfigError> {
        let id: u32 = parsed(lookup, "CLIENT_ID", Some(1))?;
        if id == 0 {
            return Err(error("CLIENT_ID", "ids start at 1"));
        }
        let port: u16 = parsed(lookup, "CLIENT_PORT", Some(8000))?;
        Ok(ClientConfig {
            id,
            listen: format!("{}:{port}", bind_address(lookup)?),
            proposer_hosts: host_list(lookup, "PROPOSER_HOSTS", true)?,
            learner_hosts: host_list(lookup, "LEARNER_HOSTS", true)?,
            request_timeout_milliseconds: positive_milliseconds(lookup, "REQUEST_TIMEOUT", 5000)?,
            data_dir: Some(data_dir(lookup, format!("client{id}"))),
            subscription_buffer_events: at_least_one(lookup, "SUBSCRIPTION_BUFFER_EVENTS", 1024)?
                as usize,
            subscription_buffer_bytes: at_least_one(
                lookup,
                "SUBSCRIPTION_BUFFER_BYTES",
                8 * 1024 * 1024,
            )? as usize,
            header_timeout_milliseconds: positive_milliseconds(
                lookup,
                "CLIENT_HEADER_TIMEOUT",
                10_000,
            )?,
            idle_timeout_milliseconds: positive_milliseconds(
                lookup,
                "CLIENT_IDLE_TIMEOUT",
                60_000,
            )?,
            max_connections: at_least_one(lookup, "CLIENT_MAX_CONNECTIONS", 10_000)? as usize,
            security: Security::from_lookup(lookup)?,
        })
    }
}

/// The optional admin HTTP listener of an acceptor, proposer or learner, which serves
/// `GET /health` and `GET /status` about that one node (container healthchecks, load
/// balancers, operators). Off unless ADMIN_PORT is set: outside containers every node of a
/// machine would otherwise need a port of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// BIND_ADDRESS and ADMIN_PORT, or None when ADMIN_PORT is unset or empty.
    pub listen: Option<String>,
}

impl AdminConfig {
    /// Reads ADMIN_PORT (and BIND_ADDRESS).
    pub fn from_lookup(lookup: &dyn Lookup) -> Result<Self, ConfigError> {
        let port: Option<u16> = match lookup.get("ADMIN_PORT") {
            Some(text) if !text.trim().is_empty() => Some(parsed(lookup, "ADMIN_PORT", None)?),
            _ => None,
        };
        match port {
            None => Ok(AdminConfig { listen: None }),
            Some(0) => Err(error(
                "ADMIN_PORT",
                "0 is not a port; leave ADMIN_PORT unset to turn the admin listener off",
            )),
            Some(port) => Ok(AdminConfig {
                listen: Some(format!("{}:{port}", bind_address(lookup)?)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The variables `pairs`, in insecure mode unless they say otherwise (the TLS
    /// variables have tests of their own in `tls`).
    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        map.entry("PAXOS_INSECURE".into())
            .or_insert_with(|| "true".into());
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn learner_defaults_to_a_majority_quorum() {
        let config = LearnerConfig::from_lookup(&lookup(&[
            ("LEARNER_ID", "2"),
            ("ACCEPTOR_HOSTS", "a:1,b:2,c:3"),
        ]))
        .unwrap();
        assert_eq!(config.quorum_size, 2);
        assert_eq!(config.total_acceptors, 3);
        assert_eq!(config.listen, "127.0.0.1:7201");
    }

    #[test]
    fn an_acceptor_belongs_to_cluster_paxos_unless_cluster_id_says_otherwise() {
        let default = AcceptorConfig::from_lookup(&lookup(&[("ACCEPTOR_ID", "1")])).unwrap();
        assert_eq!(default.cluster_id, "paxos");
        let named = AcceptorConfig::from_lookup(&lookup(&[
            ("ACCEPTOR_ID", "1"),
            ("CLUSTER_ID", " production "),
        ]))
        .unwrap();
        assert_eq!(named.cluster_id, "production");
    }

    #[test]
    fn history_and_subscription_bounds_have_defaults_and_refuse_zero() {
        let learner = LearnerConfig::from_lookup(&lookup(&[
            ("LEARNER_ID", "1"),
            ("ACCEPTOR_HOSTS", "a:1,b:2,c:3"),
        ]))
        .unwrap();
        assert_eq!(learner.retain_slots, 100_000);
        let zero = LearnerConfig::from_lookup(&lookup(&[
            ("LEARNER_ID", "1"),
            ("ACCEPTOR_HOSTS", "a:1,b:2,c:3"),
            ("LEARNER_RETAIN_SLOTS", "0"),
        ]))
        .unwrap_err();
        assert_eq!(zero.variable, "LEARNER_RETAIN_SLOTS");
        let hosts = [("PROPOSER_HOSTS", "p:1"), ("LEARNER_HOSTS", "l:1")];
        let client = ClientConfig::from_lookup(&lookup(&hosts)).unwrap();
        assert_eq!(client.subscription_buffer_events, 1024);
        assert_eq!(client.data_dir, Some(PathBuf::from("paxos-data/client1")));
        let zero = ClientConfig::from_lookup(&lookup(&[
            hosts[0],
            hosts[1],
            ("SUBSCRIPTION_BUFFER_EVENTS", "0"),
        ]))
        .unwrap_err();
        assert_eq!(zero.variable, "SUBSCRIPTION_BUFFER_EVENTS");
    }

    #[test]
    fn http_timeouts_and_the_connection_limit_have_defaults_and_refuse_zero() {
        let hosts = [("PROPOSER_HOSTS", "p:1"), ("LEARNER_HOSTS", "l:1")];
        let defaults = ClientConfig::from_lookup(&lookup(&hosts)).unwrap();
        assert_eq!(defaults.header_timeout_milliseconds, 10_000);
        assert_eq!(defaults.idle_timeout_milliseconds, 60_000);
        assert_eq!(defaults.max_connections, 10_000);
        let set = ClientConfig::from_lookup(&lookup(&[
            hosts[0],
            hosts[1],
            ("CLIENT_HEADER_TIMEOUT", "250"),
            ("CLIENT_IDLE_TIMEOUT", "750"),
            ("CLIENT_MAX_CONNECTIONS", "64"),
        ]))
        .unwrap();
        assert_eq!(
            (
                set.header_timeout_milliseconds,
                set.idle_timeout_milliseconds,
                set.max_connections
            ),
            (250, 750, 64)
        );
        for variable in [
            "CLIENT_HEADER_TIMEOUT",
            "CLIENT_IDLE_TIMEOUT",
            "CLIENT_MAX_CONNECTIONS",
        ] {
            let zero = ClientConfig::from_lookup(&lookup(&[hosts[0], hosts[1], (variable, "0")]))
                .unwrap_err();
            assert_eq!(zero.variable, variable);
        }
    }

    #[test]
    fn a_quorum_below_a_majority_is_refused_naming_the_variable() {
        let problem = LearnerConfig::from_lookup(&lookup(&[
            ("LEARNER_ID", "1"),
            ("ACCEPTOR_HOSTS", "a:1,b:2,c:3"),
            ("QUORUM_SIZE", "1"),
        ]))
        .unwrap_err();
        assert_eq!(problem.variable, "QUORUM_SIZE");
    }

    #[test]
    fn missing_and_malformed_variables_are_named() {
        let missing = AcceptorConfig::from_lookup(&lookup(&[])).unwrap_err();
        assert_eq!(missing.variable, "ACCEPTOR_ID");
        let port = AcceptorConfig::from_lookup(&lookup(&[
            ("ACCEPTOR_ID", "1"),
            ("ACCEPTOR_PORT", "http"),
        ]))
        .unwrap_err();
        assert_eq!(port.variable, "ACCEPTOR_PORT");
        let cluster =
            AcceptorConfig::from_lookup(&lookup(&[("ACCEPTOR_ID", "1"), ("CLUSTER_ID", "a\nb")]))
                .unwrap_err();
        assert_eq!(cluster.variable, "CLUSTER_ID");
        let hosts = ProposerConfig::from_lookup(&lookup(&[
            ("PROPOSER_ID", "1"),
            ("ACCEPTOR_HOSTS", "a:1,b"),
        ]))
        .unwrap_err();
        assert_eq!(hosts.variable, "ACCEPTOR_HOSTS");
        let timeout = ProposerConfig::from_lookup(&lookup(&[
            ("PROPOSER_ID", "1"),
            ("ACCEPTOR_HOSTS", "a:1"),
            ("HEARTBEAT_INTERVAL", "500"),
            ("LEADER_TIMEOUT", "200"),
        ]))
        .unwrap_err();
        assert_eq!(timeout.variable, "LEADER_TIMEOUT");
        assert!(timeout
            .to_string()
            .starts_with("invalid configuration: LEADER_TIMEOUT"));
    }

    #[test]
    fn pipelining_and_batching_have_defaults_and_refuse_zero() {
        let base = [("PROPOSER_ID", "1"), ("ACCEPTOR_HOSTS", "a:1,b:2,c:3")];
        let defaults = ProposerConfig::from_lookup(&lookup(&base)).unwrap();
        assert_eq!(defaults.max_slots_in_flight, 32);
        assert_eq!(defaults.max_batch_commands, 1024);
        for variable in ["MAX_SLOTS_IN_FLIGHT", "MAX_BATCH_COMMANDS"] {
            let set =
                ProposerConfig::from_lookup(&lookup(&[base[0], base[1], (variable, "4")])).unwrap();
            assert_eq!(set.max_slots_in_flight.min(set.max_batch_commands), 4);
            let zero = ProposerConfig::from_lookup(&lookup(&[base[0], base[1], (variable, "0")]))
                .unwrap_err();
            assert_eq!(zero.variable, variable);
        }
    }

    #[test]
    fn the_admin_listener_is_off_unless_admin_port_is_set() {
        assert_eq!(
            AdminConfig::from_lookup(&lookup(&[])).unwrap(),
            AdminConfig { listen: None }
        );
        let on = AdminConfig::from_lookup(&lookup(&[
            ("ADMIN_PORT", "9000"),
            ("BIND_ADDRESS", "0.0.0.0"),
        ]))
        .unwrap();
        assert_eq!(on.listen.as_deref(), Some("0.0.0.0:9000"));
        for bad in ["0", "http", "70000"] {
            let problem = AdminConfig::from_lookup(&lookup(&[("ADMIN_PORT", bad)])).unwrap_err();
            assert_eq!(problem.variable, "ADMIN_PORT", "{bad}");
        }
    }
}
