//! The proposer's configuration, read from the environment (see `runtime::config` for the shared parsers).

use runtime::config::*;
use runtime::tls::Security;
use std::path::PathBuf;

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
