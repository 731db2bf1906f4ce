//! History: the decided values of the last `retain_slots` applied slots, kept for peers
//! that missed them and for subscribers. Older slots survive only folded into the state; the
//! log on disk is compacted the same way (a snapshot file then the history), and a learner
//! is recovered from that log at start.

use common::ballot::Slot;
use common::message::DecidedEntry;
use std::collections::btree_map::Entry;

use super::{Effect, FrozenState, Learner, LearnerOptions};

/// The default of [`LearnerOptions::retain_slots`] (`LEARNER_RETAIN_SLOTS`): generous, so
/// that a subscriber or a peer that was away for a while still resumes slot by slot.
pub const DEFAULT_RETAIN_SLOTS: u64 = 100_000;

impl Learner {
    /// A learner restored from its own log: the decided entries it persisted, in any
    /// order. They are applied as far as they are contiguous from slot 1; the rest is
    /// filled from peers as usual.
    pub fn recover(
        options: LearnerOptions,
        entries: impl IntoIterator<Item = DecidedEntry>,
    ) -> Self {
        Learner::recover_from_state(options, None, entries)
    }

    /// A learner restored from a log that starts with a snapshot (see [`Effect::Compact`]):
    /// the state at the snapshot's slot, then the decided entries. Entries at or below the
    /// snapshot are history, kept as far as they reach down from it without a hole;
    /// entries above it are applied as far as contiguous.
    pub fn recover_from_state(
        options: LearnerOptions,
        state: Option<FrozenState>,
        entries: impl IntoIterator<Item = DecidedEntry>,
    ) -> Self {
        let mut learner = Learner::new(options);
        if let Some(state) = state {
            learner.install_state(state);
        }
        for DecidedEntry { slot, value } in entries {
            if slot == 0 {
                continue;
            }
            learner.persisted_since_compaction += 1;
            learner.known_slot_max = learner.known_slot_max.max(slot);
            match learner.decided.entry(slot) {
                Entry::Occupied(known) => assert!(
                    *known.get() == value,
                    "agreement: the log holds two values for slot {slot}"
                ),
                Entry::Vacant(vacant) => {
                    vacant.insert(value);
                }
            }
        }
        // History below the snapshot counts only down to its first hole.
        while learner.history_start > 1
            && learner.decided.contains_key(&(learner.history_start - 1))
        {
            learner.history_start -= 1;
        }
        while let Some((slot, _)) = learner.decided.first_key_value() {
            if *slot >= learner.history_start {
                break;
            }
            learner.decided.pop_first();
        }
        let mut effects = Vec::new();
        learner.apply_contiguous(&mut effects);
        learner.trim_history();
        // What was read back may sit in the page cache only (the process, not the machine,
        // crashed): durable once the first sync is done, soon after start.
        learner.unsynced_since_tick = Some(0);
        debug_assert!(
            effects.is_empty(),
            "no reads or subscribers wait during recovery"
        );
        learner
    }

    /// Forgets the decided values of applied slots older than the last `retain_slots`.
    pub(super) fn trim_history(&mut self) {
        let keep_from = (self.applied_slot + 1)
            .saturating_sub(self.options.retain_slots)
            .max(1)
            .min(self.history_floor().unwrap_or(Slot::MAX));
        if keep_from <= self.history_start {
            return;
        }
        while matches!(self.decided.first_key_value(), Some((first, _)) if *first < keep_from) {
            self.decided.pop_first();
        }
        self.history_start = keep_from;
    }

    /// Once the log has grown by `retain_slots` records and holds slots the history no
    /// longer needs, it is replaced by a snapshot file and the history.
    pub(super) fn compact_log(&mut self, effects: &mut Vec<Effect>) {
        if self.persisted_since_compaction < self.options.retain_slots
            || self.history_start <= 1
            || self.installing
        {
            return;
        }
        self.persisted_since_compaction = 0;
        effects.push(Effect::Compact {
            state: self.freeze(),
            retained: self.retained_entries(),
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;

    #[test]
    fn the_log_is_compacted_once_it_outgrows_the_history() {
        let mut options = LearnerOptions::new(1, 2);
        options.retain_slots = 4;
        let mut learner = applied_learner(options, 5);
        let compactions: Vec<Effect> = learner
            .tick()
            .into_iter()
            .filter(|effect| matches!(effect, Effect::Compact { .. }))
            .collect();
        let [Effect::Compact { state, retained }] = &compactions[..] else {
            panic!("expected one compaction, got {compactions:?}")
        };
        assert_eq!(state.applied_slot, 5);
        assert_eq!(state.key_count(), 5);
        assert_eq!(
            retained.iter().map(|entry| entry.slot).collect::<Vec<_>>(),
            vec![2, 3, 4, 5],
            "the history goes with the snapshot"
        );
        assert!(
            !learner
                .tick()
                .iter()
                .any(|effect| matches!(effect, Effect::Compact { .. })),
            "not again until the log has grown again"
        );
        // The compacted log restores the same learner.
        let restored = Learner::recover_from_state(
            learner.options.clone(),
            Some(state.clone()),
            retained.clone(),
        );
        assert_eq!(restored.applied_slot(), 5);
        assert_eq!(restored.history_start_slot(), 2);
        assert_eq!(restored.value_of("k1"), Some("v1"));
        assert_eq!(restored.snapshot(), learner.snapshot());
    }

    #[test]
    fn recover_restores_the_applied_state_from_the_log_in_any_order() {
        let log = vec![
            DecidedEntry {
                slot: 2,
                value: write(2, "k", "two"),
            },
            DecidedEntry {
                slot: 1,
                value: write(1, "k", "one"),
            },
            DecidedEntry {
                slot: 3,
                value: write(1, "k", "retry of one"),
            },
            DecidedEntry {
                slot: 5,
                value: write(5, "k", "five"),
            },
        ];
        let mut learner = Learner::recover(LearnerOptions::new(1, 2), log);
        assert_eq!(learner.applied_slot(), 3, "slot 4 is missing");
        assert_eq!(learner.known_slot_max(), 5);
        assert_eq!(
            learner.value_of("k"),
            Some("two"),
            "the retry was applied once"
        );
        assert_eq!(learner.decided_value(5), Some(&write(5, "k", "five")));
        // Recovered slots are not persisted again when peers send them.
        let effects = learner.handle(
            NodeId::learner(2),
            Message::Decided {
                entries: (1..=5)
                    .map(|slot| DecidedEntry {
                        slot,
                        value: if slot == 4 {
                            Value::Noop
                        } else {
                            learner.decided_value(slot).unwrap().clone()
                        },
                    })
                    .collect(),
                applied_slot: 5,
            },
        );
        assert_eq!(persisted_slots(&effects), vec![4]);
        assert_eq!(learner.applied_slot(), 5);
        assert_eq!(learner.value_of("k"), Some("five"));
    }
}
