//! What the log holds: each slot's value is either a batch of client commands or a no-op
//! that a new leader uses to fill a hole. A command is an [`Operation`] with the request id
//! that makes it exactly-once.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::hash::Hasher;

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

/// What a command does to the key-value state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// Set `key` to `value`: its `mod_revision` becomes the slot that applies it, its
    /// `version` grows by one (from 1 for a key that did not exist, whose
    /// `create_revision` is that slot too).
    Put {
        /// The key written.
        key: String,
        /// The new value.
        value: String,
    },
    /// A put written by a version of this software that kept no revisions, read back from
    /// an old log or an old peer. It sets the value like a put, but leaves the key's
    /// `create_revision`, `mod_revision` and `version` at 0, just as keys restored from a
    /// snapshot of that version: every learner then agrees on them, whatever slot its own
    /// snapshot was taken at. Clients cannot send it.
    UnversionedPut {
        /// The key written.
        key: String,
        /// The new value.
        value: String,
    },
}

impl Operation {
    /// The key the operation acts on.
    pub fn key(&self) -> &str {
        match self {
            Operation::Put { key, .. } | Operation::UnversionedPut { key, .. } => key,
        }
    }

    /// Whether a client API may send it: an [`Operation::UnversionedPut`] only comes from
    /// old logs, and one in a `Write` is refused.
    pub fn may_come_from_a_client(&self) -> bool {
        !matches!(self, Operation::UnversionedPut { .. })
    }

    /// The key and value a put writes (None for another operation).
    pub fn as_put(&self) -> Option<(&str, &str)> {
        match self {
            Operation::Put { key, value } | Operation::UnversionedPut { key, value } => {
                Some((key, value))
            }
        }
    }

    /// The bytes of keys and values it carries (what sizes pages and batches).
    pub fn payload_bytes(&self) -> usize {
        match self {
            Operation::Put { key, value } | Operation::UnversionedPut { key, value } => {
                key.len() + value.len()
            }
        }
    }

    /// A 64-bit digest of the operation, the same on every machine and in every version of
    /// this software (SipHash-1-3 with fixed keys over a tagged, length-prefixed encoding,
    /// not over Rust's `Hash`, whose output may change between compilers). Learners keep it
    /// beside each applied request id, so that a request id reused for another operation is
    /// told apart from a retry (409); it fits in the room the id's 16-byte alignment left
    /// unused in the window's entries, so it costs no memory.
    pub fn fingerprint(&self) -> u64 {
        let mut hasher = siphasher::sip::SipHasher13::new_with_keys(0, 0);
        let mut field = |bytes: &[u8]| {
            hasher.write(&(bytes.len() as u64).to_le_bytes());
            hasher.write(bytes);
        };
        match self {
            // A retry of an old put, decided again after the upgrade, is the same put.
            Operation::Put { key, value } | Operation::UnversionedPut { key, value } => {
                field(b"put");
                field(key.as_bytes());
                field(value.as_bytes());
            }
        }
        hasher.finish()
    }
}

/// One client command: `operation`, applied at most once under `request_id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Command {
    /// The same on every retry of this command.
    pub request_id: RequestId,
    /// What it does.
    pub operation: Operation,
}

impl Command {
    /// A put of `value` at `key`.
    pub fn put(request_id: RequestId, key: impl Into<String>, value: impl Into<String>) -> Self {
        Command {
            request_id,
            operation: Operation::Put {
                key: key.into(),
                value: value.into(),
            },
        }
    }
}

/// A command as versions before [`Operation`] wrote it: always a put.
#[derive(Deserialize)]
struct UnversionedCommand {
    request_id: RequestId,
    key: String,
    value: String,
}

/// The value of one slot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// Fills a hole left by a former leader; applying it changes nothing.
    Noop,
    /// Client commands, applied in order (several per slot is the batching of Multi-Paxos).
    Batch(Vec<Command>),
}

/// How a value is encoded: variant 1 is the batch of puts of versions before
/// [`Operation`], still read (from acceptors' and learners' logs written by them) and
/// turned into [`Operation::UnversionedPut`]s; variant 2 is today's batch.
#[derive(Deserialize)]
#[serde(rename = "Value")]
enum EncodedValue {
    Noop,
    UnversionedBatch(Vec<UnversionedCommand>),
    Batch(Vec<Command>),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Noop => serializer.serialize_unit_variant("Value", 0, "Noop"),
            Value::Batch(commands) => {
                serializer.serialize_newtype_variant("Value", 2, "Batch", commands)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match EncodedValue::deserialize(deserializer)? {
            EncodedValue::Noop => Value::Noop,
            EncodedValue::UnversionedBatch(commands) => Value::Batch(
                commands
                    .into_iter()
                    .map(|command| Command {
                        request_id: command.request_id,
                        operation: Operation::UnversionedPut {
                            key: command.key,
                            value: command.value,
                        },
                    })
                    .collect(),
            ),
            EncodedValue::Batch(commands) => Value::Batch(commands),
        })
    }
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
            .map(|command| COMMAND_OVERHEAD_BYTES + command.operation.payload_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    enum OldValue {
        #[allow(dead_code)]
        Noop,
        Batch(Vec<OldCommand>),
    }

    #[derive(Serialize)]
    struct OldCommand {
        request_id: RequestId,
        key: String,
        value: String,
    }

    #[test]
    fn a_batch_written_before_operations_reads_back_as_unversioned_puts() {
        let old = OldValue::Batch(vec![OldCommand {
            request_id: RequestId(7),
            key: "k".into(),
            value: "v".into(),
        }]);
        let bytes = postcard::to_allocvec(&old).unwrap();
        let value: Value = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            value,
            Value::Batch(vec![Command {
                request_id: RequestId(7),
                operation: Operation::UnversionedPut {
                    key: "k".into(),
                    value: "v".into()
                },
            }])
        );
        // Written again, it stays what it is (today's encoding, same operation).
        let again: Value = postcard::from_bytes(&postcard::to_allocvec(&value).unwrap()).unwrap();
        assert_eq!(again, value);
    }

    #[test]
    fn values_round_trip_in_postcard_and_json() {
        for value in [
            Value::Noop,
            Value::Batch(vec![Command::put(RequestId(1), "a", "b")]),
        ] {
            let bytes = postcard::to_allocvec(&value).unwrap();
            assert_eq!(postcard::from_bytes::<Value>(&bytes).unwrap(), value);
            let text = serde_json::to_string(&value).unwrap();
            assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
        }
    }

    #[test]
    fn the_fingerprint_is_fixed_across_builds_and_tells_operations_apart() {
        let put = Operation::Put {
            key: "k".into(),
            value: "v".into(),
        };
        // Pinned: a learner of another build must compute the same digest.
        assert_eq!(
            put.fingerprint(),
            2_279_053_786_539_631_150,
            "changed only with a migration of every exactly-once window"
        );
        let unversioned = Operation::UnversionedPut {
            key: "k".into(),
            value: "v".into(),
        };
        assert_eq!(unversioned.fingerprint(), put.fingerprint());
        let other = Operation::Put {
            key: "kv".into(),
            value: "".into(),
        };
        assert_ne!(
            other.fingerprint(),
            put.fingerprint(),
            "lengths are part of it"
        );
    }
}
