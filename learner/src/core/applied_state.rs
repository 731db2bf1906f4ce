//! The applied state: the key-value map that results from applying slots `[1,
//! applied_slot]`. A value decided for a slot (by a quorum of votes or a peer learner) is
//! persisted first, then applied strictly in slot order, each client command at most once
//! (a retried write may be decided in two slots).
//!
//! "At most once" is kept by remembering the request ids of the last
//! [`EXACTLY_ONCE_WINDOW_COMMANDS`] commands applied, forgotten oldest first: a table
//! bounded by a constant instead of growing with the history. Every learner applies the
//! same commands in the same order, so every learner remembers and forgets the same ids
//! at the same slot (the window travels in snapshots, in order), and their states agree.
//! Why a retry cannot fall out of the window is argued in docs/PROTOCOL.md ("Exactly-once,
//! in bounded memory").

use common::ballot::Slot;
use common::message::{AppliedRequest, DecidedEntry, FINGERPRINT_UNKNOWN};
use common::value::{Command, Operation, RequestId, Value};
use imbl::Vector;
use std::collections::btree_map::Entry;
use std::collections::{hash_map, HashMap};
use std::sync::Arc;

use super::snapshots::StoredValue;
use super::{Effect, FrozenState, Learner};

/// The exactly-once table: the last `window` commands applied (request id, slot,
/// fingerprint), forgotten oldest first.
pub(super) struct AppliedRequests {
    /// Each remembered id's position in `order`, counted from the first command ever
    /// remembered (so that forgetting the oldest moves no position).
    positions: HashMap<RequestId, u64>,
    /// The remembered commands in the order they were applied, oldest first: the next to
    /// forget. A persistent vector, so that a snapshot's frozen copy costs nothing.
    order: Vector<AppliedRequest>,
    /// The position of `order`'s first element.
    first_position: u64,
    window: usize,
}

impl AppliedRequests {
    pub(super) fn new(window: usize) -> Self {
        AppliedRequests {
            positions: HashMap::new(),
            order: Vector::new(),
            first_position: 0,
            window,
        }
    }

    /// Remembers `request` and returns true, unless its request id is remembered already
    /// (a retry, or the id reused for another command: returns false, nothing changes).
    /// Forgets the oldest once the window is full.
    pub(super) fn remember(&mut self, request: AppliedRequest) -> bool {
        let hash_map::Entry::Vacant(vacant) = self.positions.entry(request.request_id) else {
            return false;
        };
        vacant.insert(self.first_position + self.order.len() as u64);
        self.order.push_back(request);
        while self.order.len() > self.window {
            let oldest = self.order.pop_front().expect("longer than the window");
            self.positions.remove(&oldest.request_id);
            self.first_position += 1;
        }
        debug_assert_eq!(
            self.positions.len(),
            self.order.len(),
            "invariant violated: the exactly-once table and its order hold the same ids"
        );
        true
    }

    /// The applied command of `request_id`, while it is remembered.
    pub(super) fn get(&self, request_id: &RequestId) -> Option<&AppliedRequest> {
        let position = *self.positions.get(request_id)?;
        let applied = self.order.get((position - self.first_position) as usize);
        debug_assert!(
            applied.is_some_and(|applied| applied.request_id == *request_id),
            "invariant violated: a remembered id's position holds it"
        );
        applied
    }

    /// The slot that applied `request_id`, while it is remembered.
    pub(super) fn slot_of(&self, request_id: &RequestId) -> Option<Slot> {
        self.get(request_id).map(|applied| applied.slot)
    }

    /// Every remembered command, oldest first (what a snapshot carries, so that its
    /// receiver forgets them in the same order): a copy that costs nothing.
    pub(super) fn in_applied_order(&self) -> Vector<AppliedRequest> {
        self.order.clone()
    }

    /// Takes `order` (oldest first) as the remembered commands, forgetting the oldest
    /// beyond the window (a sender with a larger window) and any id repeated (a faulty
    /// snapshot).
    pub(super) fn restore(&mut self, order: Vector<AppliedRequest>) {
        self.clear();
        let skip = order.len().saturating_sub(self.window);
        for request in order.skip(skip) {
            self.remember(request);
        }
    }

    pub(super) fn clear(&mut self) {
        self.positions.clear();
        self.order.clear();
        self.first_position = 0;
    }

    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}

/// How many of the last applied commands keep their request id: a retry decided after a
/// million other commands were applied would be applied again. The client API retries a
/// write for at most its request timeout (5 s); at 35,000 writes/s, the most this cluster
/// was measured to apply, a million commands take 28 s, over five times longer. About 100
/// bytes per id (32 for its slot and fingerprint in a persistent queue, the rest its
/// position in a hash table, with the table's spare room): 100 MB at most, whatever the
/// history.
pub const EXACTLY_ONCE_WINDOW_COMMANDS: usize = 1_000_000;

impl Learner {
    /// Replaces the state by `state`: everything at or below its slot is applied, and
    /// only decided slots above it are kept.
    pub(super) fn install_state(&mut self, state: FrozenState) {
        let (slot, key_values, applied_request_ids) = state.into_parts();
        self.key_values = key_values;
        self.applied_requests.restore(applied_request_ids);
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
        if self.installing {
            return; // no state to apply to until the snapshot is installed
        }
        let applied_before = self.applied_slot;
        while let Some(value) = self.decided.get(&(self.applied_slot + 1)) {
            let slot = self.applied_slot + 1;
            for command in value.commands() {
                // Exactly-once: a retried command may be decided again in a later slot,
                // and a request id reused for another command is not applied either.
                let applied = AppliedRequest {
                    request_id: command.request_id,
                    slot,
                    fingerprint: window_fingerprint(&command.operation),
                };
                if self.applied_requests.remember(applied) {
                    apply_command(&mut self.key_values, command, slot);
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

/// The fingerprint the window keeps for `operation`: unknown for an unversioned put, as
/// for the request ids of an old snapshot, so that a learner that replays an old log and
/// one that installed an old snapshot of the same slots remember the same window.
fn window_fingerprint(operation: &Operation) -> u64 {
    match operation {
        Operation::UnversionedPut { .. } => FINGERPRINT_UNKNOWN,
        Operation::Put { .. } => operation.fingerprint(),
    }
}

/// Applies `command` to `key_values` as slot `slot` (its revision).
fn apply_command(key_values: &mut super::KeyValues, command: &Command, slot: Slot) {
    match &command.operation {
        Operation::Put { key, value } => {
            let (create_revision, version) = match key_values.get(key.as_str()) {
                // Saturating: a version of u64::MAX (from a faulty peer's snapshot) stays.
                Some(existing) => (existing.create_revision, existing.version.saturating_add(1)),
                None => (slot, 1),
            };
            key_values.insert(
                Arc::from(key.as_str()),
                StoredValue {
                    value: Arc::from(value.as_str()),
                    create_revision,
                    mod_revision: slot,
                    version,
                },
            );
        }
        Operation::UnversionedPut { key, value } => {
            key_values.insert(
                Arc::from(key.as_str()),
                StoredValue {
                    value: Arc::from(value.as_str()),
                    create_revision: 0,
                    mod_revision: 0,
                    version: 0,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;
    use common::value::Operation;

    #[test]
    fn an_unversioned_put_sets_revisions_zero_and_an_unknown_fingerprint() {
        let mut learner = learner();
        let ballot = Ballot::new(1, 1);
        let old = Value::Batch(vec![Command {
            request_id: RequestId(3),
            operation: Operation::UnversionedPut {
                key: "k".into(),
                value: "old".into(),
            },
        }]);
        vote(&mut learner, 1, 1, ballot, &old);
        vote(&mut learner, 2, 1, ballot, &old);
        assert_eq!(revisions_of(&learner, "k"), (0, 0, 0));
        assert_eq!(
            learner.snapshot().applied_request_ids[0].fingerprint,
            common::message::FINGERPRINT_UNKNOWN,
            "as an old snapshot would remember it"
        );
        let new = write(4, "k", "new");
        vote(&mut learner, 1, 2, ballot, &new);
        vote(&mut learner, 2, 2, ballot, &new);
        assert_eq!(revisions_of(&learner, "k"), (0, 2, 1));
    }

    /// `key`'s (create revision, mod revision, version) at `learner`.
    fn revisions_of(learner: &Learner, key: &str) -> (Slot, Slot, u64) {
        let versioned = learner.versioned_value_of(key).expect("the key exists");
        (
            versioned.create_revision,
            versioned.mod_revision,
            versioned.version,
        )
    }

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
                vec![Command::put(RequestId(9), "other", "x")],
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

    #[test]
    fn the_exactly_once_window_forgets_the_oldest_request_ids_in_the_same_order_everywhere() {
        let mut options = LearnerOptions::new(1, 2);
        options.exactly_once_window_commands = 3;
        let mut learner = Learner::new(options.clone());
        let ballot = Ballot::new(1, 1);
        for slot in 1..=5 {
            let value = write(slot as u128, &format!("k{slot}"), "v");
            vote(&mut learner, 1, slot, ballot, &value);
            vote(&mut learner, 2, slot, ballot, &value);
        }
        assert_eq!(
            learner.remembered_request_count(),
            3,
            "bounded by the window"
        );
        let snapshot = learner.snapshot();
        assert_eq!(
            snapshot.applied_request_ids,
            [3, 4, 5]
                .map(|number| AppliedRequest {
                    request_id: RequestId(number),
                    slot: number as Slot,
                    fingerprint: write(number, &format!("k{number}"), "v").commands()[0]
                        .operation
                        .fingerprint(),
                })
                .to_vec(),
            "oldest first, so that a receiver forgets in the same order"
        );
        // A retry within the window is applied once; one past it (a million commands
        // later in production) is applied again, the bound docs/PROTOCOL.md argues.
        let retry_in_window = write(5, "k5", "retried");
        vote(&mut learner, 1, 6, ballot, &retry_in_window);
        vote(&mut learner, 2, 6, ballot, &retry_in_window);
        assert_eq!(learner.value_of("k5"), Some("v"));
        // A peer that installs the snapshot keeps the same window and order.
        let mut peer = Learner::new(options);
        for chunk in learner.freeze().chunks(8) {
            peer.handle(NodeId::learner(1), Message::SnapshotChunk { chunk });
        }
        assert_eq!(peer.remembered_request_count(), 3);
        vote(&mut peer, 1, 6, ballot, &retry_in_window);
        vote(&mut peer, 2, 6, ballot, &retry_in_window);
        assert_eq!(peer.value_of("k5"), Some("v"));
        assert_eq!(
            peer.snapshot(),
            learner.snapshot(),
            "the two learners agree"
        );
    }
}
