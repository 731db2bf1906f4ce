//! What the log holds: each slot's value is either a batch of client commands or a no-op
//! that a new leader uses to fill a hole.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies one client write across retries, so a write retried after a timeout or a
/// leader change is applied once (learners skip a request id they already applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u128);

impl RequestId {
    /// A fresh random request id.
    pub fn random() -> Self {
        RequestId(uuid::Uuid::new_v4().as_u128())
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", uuid::Uuid::from_u128(self.0))
    }
}

/// One client write: set `key` to `value`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Command {
    /// The same on every retry of this write.
    pub request_id: RequestId,
    /// The key written.
    pub key: String,
    /// The new value.
    pub value: String,
}

/// The value of one slot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    /// Fills a hole left by a former leader; applying it changes nothing.
    Noop,
    /// Client commands, applied in order (several per slot is the batching of Multi-Paxos).
    Batch(Vec<Command>),
}

impl Value {
    /// The commands this value carries (none for a no-op).
    pub fn commands(&self) -> &[Command] {
        match self {
            Value::Noop => &[],
            Value::Batch(commands) => commands,
        }
    }
}
