//! The acceptor's configuration, read from the environment (see `runtime::config` for the shared parsers).

use runtime::config::*;
use runtime::tls::Security;
use std::path::PathBuf;

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
    /// LOG_QUOTA_BYTES (default 8 GiB; 0: none): the log's quota on disk.
    pub log_quota_bytes: Option<u64>,
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
            log_quota_bytes: log_quota_bytes(lookup)?,
        })
    }
}
