//! The learner's configuration, read from the environment (see `runtime::config` for the shared parsers).

use runtime::config::*;
use runtime::tls::Security;
use std::path::PathBuf;

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
