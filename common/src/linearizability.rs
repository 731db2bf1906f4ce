//! A linearizability checker for histories of reads and writes on a key-value store.
//!
//! The store is a set of independent registers, so a history is linearizable if and only
//! if each key's sub-history is (linearizability is local: Herlihy & Wing). Each key is
//! checked with the Wing & Gong search as refined by Lowe: repeatedly pick an operation
//! that may take effect next (one invoked before every pending operation's completion),
//! apply it to the register, and backtrack on a dead end, memoising the (set of
//! linearized operations, register value) pairs already explored so that each
//! configuration is explored once.
//!
//! A write whose outcome is unknown (the client saw a timeout or an error) may take effect
//! at any time after its invocation, or never; a read whose outcome is unknown tells
//! nothing and is dropped. Such a write whose value no read returned is dropped too: taking
//! effect never is always allowed for it and constrains nothing, and dropping it spares the
//! search a factor of two per write (a fault-heavy history holds many).

use std::collections::{BTreeMap, HashMap, HashSet};

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Set `key` to `value`.
    Write {
        /// The key.
        key: String,
        /// The value written.
        value: String,
    },
    /// Read `key` and saw `value` (None: the key was never written).
    Read {
        /// The key.
        key: String,
        /// The value returned.
        value: Option<String>,
    },
}

impl Operation {
    fn key(&self) -> &str {
        match self {
            Operation::Write { key, .. } | Operation::Read { key, .. } => key,
        }
    }
}

/// One operation of a history, with the times (any monotonic unit) at which it was
/// invoked and at which its response arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What it did.
    pub operation: Operation,
    /// When the client sent it.
    pub invoked_at: u64,
    /// When the answer arrived; None if the outcome is unknown.
    pub completed_at: Option<u64>,
}

/// Why a history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key whose history cannot be linearized.
    pub key: String,
    /// That key's operations, in invocation order, for the report.
    pub events: Vec<Event>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            formatter,
            "the history of key {:?} is not linearizable:",
            self.key
        )?;
        for event in self.events.iter().take(50) {
            let completed = event
                .completed_at
                .map(|time| time.to_string())
                .unwrap_or_else(|| "unknown".into());
            writeln!(
                formatter,
                "  [{}, {}] {:?}",
                event.invoked_at, completed, event.operation
            )?;
        }
        Ok(())
    }
}

/// Checks a whole history; returns the first key whose history is not linearizable.
pub fn check(history: &[Event]) -> Result<(), Violation> {
    let observed: HashSet<(&str, &str)> = history
        .iter()
        .filter_map(|event| match &event.operation {
            Operation::Read {
                key,
                value: Some(value),
            } if event.completed_at.is_some() => Some((key.as_str(), value.as_str())),
            _ => None,
        })
        .collect();
    let mut by_key: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
    for event in history {
        let unknown_and_unobserved = event.completed_at.is_none()
            && match &event.operation {
                Operation::Read { .. } => true,
                Operation::Write { key, value } => {
                    !observed.contains(&(key.as_str(), value.as_str()))
                }
            };
        if !unknown_and_unobserved {
            by_key
                .entry(event.operation.key())
                .or_default()
                .push(event.clone());
        }
    }
    for (key, mut events) in by_key {
        events.sort_by_key(|event| event.invoked_at);
        if !check_register(&events) {
            return Err(Violation {
                key: key.to_string(),
                events,
            });
        }
    }
    Ok(())
}

/// A register operation with values interned as small integers (0 = never written).
#[derive(Clone, Copy)]
struct RegisterOperation {
    invoked_at: u64,
    completed_at: u64,
    write: bool,
    value: u32,
    required: bool,
}

fn check_register(events: &[Event]) -> bool {
    let mut interned: HashMap<&str, u32> = HashMap::new();
    let mut operations = Vec::with_capacity(events.len());
    for event in events {
        let (write, value) = match &event.operation {
            Operation::Write { value, .. } => (true, Some(value.as_str())),
            Operation::Read { value, .. } => (false, value.as_deref()),
        };
        let next_id = interned.len() as u32 + 1;
        let value = value.map_or(0, |text| *interned.entry(text).or_insert(next_id));
        operations.push(RegisterOperation {
            invoked_at: event.invoked_at,
            completed_at: event.completed_at.unwrap_or(u64::MAX),
            write,
            value,
            required: event.completed_at.is_some(),
        });
    }
    let mut search = Search {
        operations: &operations,
        explored: HashSet::new(),
    };
    let words = operations.len().div_ceil(64);
    search.run(vec![0u64; words], 0)
}

struct Search<'a> {
    operations: &'a [RegisterOperation],
    explored: HashSet<(Vec<u64>, u32)>,
}

impl Search<'_> {
    /// Depth-first search with an explicit stack: can every required operation be
    /// linearized starting from `linearized` with the register holding `value`?
    fn run(&mut self, linearized: Vec<u64>, value: u32) -> bool {
        let mut stack = vec![(linearized, value)];
        while let Some((linearized, value)) = stack.pop() {
            let is_done = |index: usize| linearized[index / 64] & (1 << (index % 64)) != 0;
            let pending: Vec<usize> = (0..self.operations.len())
                .filter(|index| !is_done(*index))
                .collect();
            if pending
                .iter()
                .all(|index| !self.operations[*index].required)
            {
                return true;
            }
            // Whatever takes effect next must be invoked before the earliest completion
            // among the operations still pending.
            let earliest_completion = pending
                .iter()
                .map(|index| self.operations[*index].completed_at)
                .min()
                .unwrap_or(u64::MAX);
            for index in pending {
                let operation = self.operations[index];
                if operation.invoked_at > earliest_completion {
                    break; // sorted by invocation: the rest are later still
                }
                let next_value = if operation.write {
                    operation.value
                } else if operation.value == value {
                    value
                } else {
                    continue;
                };
                let mut next = linearized.clone();
                next[index / 64] |= 1 << (index % 64);
                if self.explored.insert((next.clone(), next_value)) {
                    stack.push((next, next_value));
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(key: &str, value: &str, invoked_at: u64, completed_at: Option<u64>) -> Event {
        Event {
            operation: Operation::Write {
                key: key.into(),
                value: value.into(),
            },
            invoked_at,
            completed_at,
        }
    }

    fn read(key: &str, value: Option<&str>, invoked_at: u64, completed_at: u64) -> Event {
        Event {
            operation: Operation::Read {
                key: key.into(),
                value: value.map(Into::into),
            },
            invoked_at,
            completed_at: Some(completed_at),
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let history = [
            read("k", None, 0, 1),
            write("k", "a", 2, Some(3)),
            read("k", Some("a"), 4, 5),
            write("k", "b", 6, Some(7)),
            read("k", Some("b"), 8, 9),
        ];
        assert_eq!(check(&history), Ok(()));
    }

    #[test]
    fn concurrent_reads_may_see_either_side_of_an_overlapping_write() {
        let history = [
            write("k", "a", 0, Some(1)),
            write("k", "b", 2, Some(10)),
            read("k", Some("b"), 3, 4),
            read("k", Some("b"), 5, 6),
        ];
        assert_eq!(check(&history), Ok(()));
        let flip_flop = [
            write("k", "a", 0, Some(1)),
            write("k", "b", 2, Some(10)),
            read("k", Some("b"), 3, 4),
            read("k", Some("a"), 5, 6),
        ];
        assert!(
            check(&flip_flop).is_err(),
            "once b is seen, a cannot come back"
        );
    }

    #[test]
    fn a_stale_read_is_caught() {
        let history = [
            write("k", "a", 0, Some(1)),
            write("k", "b", 2, Some(3)),
            read("k", Some("a"), 4, 5),
        ];
        let violation = check(&history).unwrap_err();
        assert_eq!(violation.key, "k");
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let history = [write("k", "a", 0, Some(1)), read("k", None, 2, 3)];
        assert!(check(&history).is_err());
    }

    #[test]
    fn a_write_applied_twice_is_caught() {
        let history = [
            write("k", "a", 0, Some(1)),
            write("k", "b", 2, Some(3)),
            read("k", Some("a"), 4, 5),
        ];
        assert!(check(&history).is_err(), "a replayed write a after b");
    }

    #[test]
    fn a_read_of_a_value_never_written_is_caught() {
        let history = [write("k", "a", 0, Some(1)), read("k", Some("z"), 2, 3)];
        assert!(check(&history).is_err());
    }

    #[test]
    fn a_write_with_unknown_outcome_may_take_effect_late_or_never() {
        let late = [
            write("k", "a", 0, None),
            read("k", None, 1, 2),
            read("k", Some("a"), 10, 11),
        ];
        assert_eq!(check(&late), Ok(()));
        let never = [write("k", "a", 0, None), read("k", None, 10, 11)];
        assert_eq!(check(&never), Ok(()));
        let before_invocation = [read("k", Some("a"), 0, 1), write("k", "a", 2, None)];
        assert!(check(&before_invocation).is_err());
    }

    #[test]
    fn a_write_applied_again_after_a_later_write_is_caught() {
        // a is acknowledged and read, b overwrites it, then a comes back: the retry of a
        // was applied a second time.
        let history = [
            write("k", "a", 0, Some(1)),
            read("k", Some("a"), 2, 3),
            write("k", "b", 4, Some(5)),
            read("k", Some("b"), 6, 7),
            read("k", Some("a"), 8, 9),
        ];
        assert!(check(&history).is_err());
    }

    #[test]
    fn a_lost_write_of_unknown_outcome_that_was_read_must_stay() {
        // The unknown write was observed, so it took effect: losing it later is a violation.
        let history = [
            write("k", "a", 0, None),
            read("k", Some("a"), 1, 2),
            read("k", None, 3, 4),
        ];
        assert!(check(&history).is_err());
    }

    #[test]
    fn many_unknown_writes_never_read_do_not_slow_the_check() {
        // Forty overlapping writes of unknown outcome: without dropping the unobserved ones
        // the search would explore every subset of them.
        let mut history = vec![write("k", "first", 0, Some(1))];
        for index in 0..40u64 {
            history.push(write("k", &format!("lost{index}"), 2 + index, None));
        }
        for index in 0..40u64 {
            history.push(read("k", Some("first"), 100 + 2 * index, 101 + 2 * index));
        }
        let started = std::time::Instant::now();
        assert_eq!(check(&history), Ok(()));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn keys_are_checked_independently() {
        let history = [
            write("x", "1", 0, Some(1)),
            write("y", "2", 0, Some(1)),
            read("x", Some("1"), 2, 3),
            read("y", Some("2"), 2, 3),
        ];
        assert_eq!(check(&history), Ok(()));
    }
}
