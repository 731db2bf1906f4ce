//! The applied state: the key-value map that results from applying slots `[1,
//! applied_slot]`. A value decided for a slot (by a quorum of votes or a peer learner) is
//! persisted first, then applied strictly in slot order, each client command at most once
//! (a retried write may be decided in two slots).

use common::ballot::Slot;
use common::message::{DecidedEntry, StateSnapshot};
use common::value::Value;
use std::collections::btree_map::Entry;

use super::{Effect, Learner};

impl Learner {
    /// The state as of `applied_slot()`: what a peer needs to continue from the next slot.
    pub fn snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            applied_slot: self.applied_slot,
            key_values: self
                .key_values
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            applied_request_ids: self
                .applied_request_ids
                .iter()
                .map(|(request_id, slot)| (*request_id, *slot))
                .collect(),
        }
    }

    /// Replaces the state by `snapshot`: everything at or below its slot is applied, and
    /// only decided slots above it are kept.
    pub(super) fn install_state(&mut self, snapshot: StateSnapshot) {
        let slot = snapshot.applied_slot;
        self.key_values = snapshot.key_values.into_iter().collect();
        self.applied_request_ids = snapshot.applied_request_ids.into_iter().collect();
        self.applied_slot = slot;
        self.history_start = slot + 1;
        self.known_slot_max = self.known_slot_max.max(slot);
        self.stalled_ticks = 0;
        while matches!(self.decided.first_key_value(), Some((first, _)) if *first <= slot) {
            self.decided.pop_first();
        }
        while matches!(self.votes.first_key_value(), Some((first, _)) if *first <= slot) {
            self.votes.pop_first();
        }
    }

    /// Records `value` as decided for `slot` (persisting it) unless already known. A value
    /// that differs from the one decided here, found by `source` (a peer learner, or a
    /// quorum of votes), breaks agreement somewhere else: it is refused with an alarm, and
    /// the value decided here stays.
    pub(super) fn decide(
        &mut self,
        slot: Slot,
        value: Value,
        source: &str,
        effects: &mut Vec<Effect>,
    ) {
        self.known_slot_max = self.known_slot_max.max(slot);
        if slot <= self.applied_slot && !self.decided.contains_key(&slot) {
            return; // applied long ago and no longer retained (or folded into a snapshot)
        }
        match self.decided.entry(slot) {
            Entry::Occupied(known) => {
                if *known.get() != value {
                    self.alarms.raise(
                        self.now_tick,
                        format!(
                            "{source} gave slot {slot} a value that differs from the one \
                             decided here: ignored"
                        ),
                    );
                }
            }
            Entry::Vacant(vacant) => {
                self.votes.remove(&slot);
                effects.push(Effect::Persist(DecidedEntry {
                    slot,
                    value: value.clone(),
                }));
                self.persisted_since_compaction += 1;
                vacant.insert(value);
            }
        }
    }

    /// Applies every decided slot that follows `applied_slot` without a hole, then answers
    /// the reads that were waiting for them.
    pub(super) fn apply_contiguous(&mut self, effects: &mut Vec<Effect>) {
        let applied_before = self.applied_slot;
        while let Some(value) = self.decided.get(&(self.applied_slot + 1)) {
            let slot = self.applied_slot + 1;
            for command in value.commands() {
                // Exactly-once: a retried write may be decided again in a later slot.
                if let Entry::Vacant(vacant) = self.applied_request_ids.entry(command.request_id) {
                    vacant.insert(slot);
                    self.key_values
                        .insert(command.key.clone(), command.value.clone());
                }
            }
            self.applied_slot = slot;
        }
        if self.applied_slot == applied_before {
            return;
        }
        self.stalled_ticks = 0;
        debug_assert!(
            self.votes.keys().all(|slot| *slot > self.applied_slot),
            "votes are kept only for undecided slots above the applied slot"
        );
        self.answer_parked_reads(effects);
        self.push_to_subscribers(effects);
        self.trim_history();
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;

    #[test]
    fn slots_apply_in_order_even_when_slot_two_is_decided_first() {
        let mut learner = learner();
        let ballot = Ballot::new(1, 1);
        let one = write(1, "k", "one");
        let two = write(2, "k", "two");
        vote(&mut learner, 1, 2, ballot, &two);
        let effects = vote(&mut learner, 2, 2, ballot, &two);
        assert_eq!(persisted_slots(&effects), vec![2]);
        assert_eq!(learner.applied_slot(), 0, "slot 1 is still missing");
        assert_eq!(learner.value_of("k"), None);
        vote(&mut learner, 1, 1, ballot, &one);
        vote(&mut learner, 2, 1, ballot, &one);
        assert_eq!(learner.applied_slot(), 2);
        assert_eq!(
            learner.value_of("k"),
            Some("two"),
            "slot 2 applied after slot 1"
        );
    }

    #[test]
    fn a_request_decided_again_in_a_later_slot_is_applied_once() {
        let mut learner = learner();
        let ballot = Ballot::new(1, 1);
        let retry = write(7, "k", "retried");
        let Value::Batch(retry_commands) = retry.clone() else {
            unreachable!()
        };
        let overwrite = write(8, "k", "later");
        let batch = Value::Batch(
            [
                retry_commands.clone(),
                vec![Command {
                    request_id: RequestId(9),
                    key: "other".into(),
                    value: "x".into(),
                }],
            ]
            .concat(),
        );
        for acceptor in [1, 2] {
            learner.handle(
                NodeId::acceptor(acceptor),
                votes(&[
                    (1, ballot, &retry),
                    (2, ballot, &overwrite),
                    (3, ballot, &batch),
                ]),
            );
        }
        assert_eq!(learner.applied_slot(), 3);
        assert_eq!(
            learner.value_of("k"),
            Some("later"),
            "the retry decided again in slot 3 must not undo slot 2"
        );
        assert_eq!(
            learner.value_of("other"),
            Some("x"),
            "the rest of the batch applies"
        );
        assert_eq!(
            learner.status(),
            RoleStatus::Learner {
                applied_slot: 3,
                known_slot_max: 3,
                key_count: 2
            }
        );
    }
}
