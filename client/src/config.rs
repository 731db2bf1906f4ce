//! The client API's configuration, read from the environment (see `runtime::config` for the shared parsers).

use runtime::config::*;
use runtime::tls::Security;
use std::path::PathBuf;

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
