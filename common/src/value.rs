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

    /// About how many bytes this value takes on the wire: what pages of answers (Promise,
    /// AcceptedValues, Decided) are measured in, so that no answer grows with the log.
    pub fn size_bytes(&self) -> usize {
        self.commands()
            .iter()
            .map(|command| COMMAND_OVERHEAD_BYTES + command.key.len() + command.value.len())
            .sum::<usize>()
            + COMMAND_OVERHEAD_BYTES
    }
}

/// What a command costs on the wire besides its key and value (its request id, lengths),
/// rounded up; also the cost of an empty value.
const COMMAND_OVERHEAD_BYTES: usize = 24;

/// The most bytes of values one paged answer carries (a Promise, an `AcceptedValues` or a
/// `Decided` sent to catch a node up): a few MiB keep a frame far below the network's
/// limits and the receiver's memory bounded, however long the log that is asked for.
pub const PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Whether a value of `next_bytes` still fits a page that holds `used_bytes`: the first
/// value of a page always fits, so a page is never empty while values remain.
pub fn fits_in_page(used_bytes: usize, next_bytes: usize) -> bool {
    used_bytes == 0 || used_bytes + next_bytes <= PAGE_BYTES_MAX
}
