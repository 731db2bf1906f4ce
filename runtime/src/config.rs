//! Reading a role's configuration from the design's environment variables: the shared
//! parsers each role's `config` module uses (`acceptor::config`, `proposer::config`, ...).
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

/// The default of `LOG_QUOTA_BYTES`: 8 GiB, the largest backend etcd recommends.
pub const DEFAULT_LOG_QUOTA_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// LOG_QUOTA_BYTES (default [`DEFAULT_LOG_QUOTA_BYTES`]; 0: none): the most bytes a
/// node's log may take on disk. Past it, writes are held behind a "no space" alarm (reads
/// go on) until the log shrinks (trimming and compaction) or the quota is raised; a disk
/// that fills first is treated the same way.
pub fn log_quota_bytes(lookup: &dyn Lookup) -> Result<Option<u64>, ConfigError> {
    let bytes: u64 = parsed(lookup, "LOG_QUOTA_BYTES", Some(DEFAULT_LOG_QUOTA_BYTES))?;
    if bytes != 0 && bytes < 64 * 1024 {
        return Err(error(
            "LOG_QUOTA_BYTES",
            format!("{bytes} is below 65536 bytes (64 KiB), too small for a log; 0 means none"),
        ));
    }
    Ok((bytes > 0).then_some(bytes))
}

/// A [`ConfigError`] about `variable`.
pub fn error(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

/// `variable` parsed as a `T`, or `default` when unset (an error when unset without one).
pub fn parsed<T: FromStr>(
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

/// A node id: a number from 1.
pub fn positive_id(lookup: &dyn Lookup, variable: &'static str) -> Result<u32, ConfigError> {
    let id: u32 = parsed(lookup, variable, None)?;
    if id == 0 {
        return Err(error(variable, "ids start at 1"));
    }
    Ok(id)
}

/// A duration in milliseconds, at least 1.
pub fn positive_milliseconds(
    lookup: &dyn Lookup,
    variable: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    positive(lookup, variable, default, "must be at least 1 millisecond")
}

/// A count of at least 1, `default` when unset.
pub fn at_least_one(
    lookup: &dyn Lookup,
    variable: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    positive(lookup, variable, default, "must be at least 1")
}

/// A count or duration that 0 would make meaningless; `problem` says so in its unit.
pub fn positive(
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
pub fn host_list(
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

/// DATA_DIR, or `paxos-data/<default_name>`.
pub fn data_dir(lookup: &dyn Lookup, default_name: String) -> PathBuf {
    match lookup.get("DATA_DIR") {
        Some(path) if !path.trim().is_empty() => PathBuf::from(path.trim()),
        _ => PathBuf::from("paxos-data").join(default_name),
    }
}

/// CLUSTER_ID, trimmed: one line of printable text, since it is stored in a line of the
/// acceptor's identity file.
pub fn cluster_id(lookup: &dyn Lookup) -> Result<String, ConfigError> {
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

/// BIND_ADDRESS (default 127.0.0.1).
pub fn bind_address(lookup: &dyn Lookup) -> Result<String, ConfigError> {
    let host = lookup
        .get("BIND_ADDRESS")
        .filter(|host| !host.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    host.trim()
        .parse::<std::net::IpAddr>()
        .map_err(|problem| error("BIND_ADDRESS", format!("{host:?}: {problem}")))?;
    Ok(host.trim().to_string())
}

/// QUORUM_SIZE, a majority of TOTAL_ACCEPTORS unless set; refused when below one.
pub fn quorum(
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
