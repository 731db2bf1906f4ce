//! The learner's protocol as a plain state machine: no sockets, no clock, no disk.
//!
//! In the paper a value is *chosen* once a quorum of acceptors accepted it under one
//! ballot; the learner is the role that finds out. Acceptors push every vote they cast
//! (`AcceptedValues`), and a slot is decided here when `quorum_size` distinct acceptors
//! report the same ballot for it. Decided values are applied to the key-value map strictly
//! in slot order, each client command at most once (a retried write may be decided in two
//! slots). Slots this learner missed are filled from peer learners (`SyncDecided` /
//! `Decided`) and, if they cannot help, from the acceptors' votes (`SyncAccepted`).
//!
//! The service feeds messages and ticks in and carries out the returned [`Effect`]s in
//! order: every `Persist` before any `Send`, so the log on disk never lags what a client
//! or a peer was told.

use common::ballot::{Ballot, Slot};
use common::message::{AcceptedEntry, DecidedEntry, Message, RoleStatus};
use common::node::{NodeId, Role};
use common::value::{RequestId, Value};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// The most slots one gap-filling exchange covers: a `Decided` answer holds at most this
/// many entries and a `SyncAccepted` asks for at most this many slots, so one answer stays
/// a reasonable frame however far behind a learner is.
pub const SYNC_BATCH_SLOTS: u64 = 4096;

/// How a learner behaves; the counts are in ticks (`common::TICK_MILLISECONDS` each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnerOptions {
    /// This learner's id, from 1.
    pub id: u32,
    /// Votes with one ballot, from distinct acceptors, that decide a slot.
    pub quorum_size: usize,
    /// A read waiting for a slot not yet applied gives up after this many ticks.
    pub read_timeout_ticks: u64,
    /// How often the applied slot is sent to the proposers.
    pub progress_interval_ticks: u64,
    /// How long the applied slot may stay behind a known slot before gap filling starts.
    pub sync_interval_ticks: u64,
}

impl LearnerOptions {
    /// Options for learner `id` deciding with `quorum_size` votes, other counts at their
    /// defaults (read timeout 300 ticks, progress every 5 ticks, sync after 20 ticks).
    pub fn new(id: u32, quorum_size: usize) -> Self {
        LearnerOptions {
            id,
            quorum_size,
            read_timeout_ticks: 300,
            progress_interval_ticks: 5,
            sync_interval_ticks: 20,
        }
    }
}

/// What the service must do, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Append this newly decided slot to the learner's log (before any later `Send`).
    Persist(DecidedEntry),
    /// Send `message` to `to`, if connected.
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// Send `message` to every connected node of `role`.
    Broadcast {
        /// The receivers' role.
        role: Role,
        /// The message.
        message: Message,
    },
}

/// The votes counted so far for one slot that is not decided yet.
#[derive(Default)]
struct SlotVotes {
    /// Each acceptor's latest report: the highest ballot it accepted for the slot. An
    /// acceptor's accepted ballot for a slot only grows, so a lower report that arrives
    /// late is stale and ignored.
    ballot_by_acceptor: BTreeMap<u32, Ballot>,
    /// The value proposed under each ballot reported (a ballot carries one value).
    value_by_ballot: BTreeMap<Ballot, Value>,
}

impl SlotVotes {
    /// Counts `acceptor`'s report of `value` under `ballot`; returns the value once a
    /// quorum of acceptors report that same ballot.
    fn record(
        &mut self,
        slot: Slot,
        acceptor: u32,
        ballot: Ballot,
        value: Value,
        quorum_size: usize,
    ) -> Option<Value> {
        if matches!(self.ballot_by_acceptor.get(&acceptor), Some(latest) if *latest > ballot) {
            return None;
        }
        match self.value_by_ballot.entry(ballot) {
            Entry::Occupied(known) => assert!(
                *known.get() == value,
                "one value per ballot: slot {slot} ballot {ballot} was reported with two values"
            ),
            Entry::Vacant(vacant) => {
                vacant.insert(value);
            }
        }
        self.ballot_by_acceptor.insert(acceptor, ballot);
        let votes = self
            .ballot_by_acceptor
            .values()
            .filter(|reported| **reported == ballot)
            .count();
        if votes >= quorum_size {
            self.value_by_ballot.remove(&ballot)
        } else {
            None
        }
    }
}

/// A client read waiting for its slot to be applied.
#[derive(Clone, Debug)]
struct ParkedRead {
    client: NodeId,
    read_id: u64,
    key: String,
    expires_at_tick: u64,
}

/// One learner: the votes it counts, the decided log and the key-value state it applies.
pub struct Learner {
    options: LearnerOptions,
    /// Ticks since start; the only clock.
    now_tick: u64,
    /// Every slot `<= applied_slot` is decided and applied.
    applied_slot: Slot,
    /// The highest slot heard of (voted on, decided, or named by a leader, peer or read).
    known_slot_max: Slot,
    /// Every decided value, applied or not: peers that missed slots are served from here.
    decided: BTreeMap<Slot, Value>,
    /// Votes for slots above `applied_slot` that are not decided yet.
    votes: BTreeMap<Slot, SlotVotes>,
    /// The replicated state: the result of applying slots `[1, applied_slot]`.
    key_values: BTreeMap<String, String>,
    /// Request ids of every command applied, so a retried write applies once.
    applied_request_ids: BTreeSet<RequestId>,
    /// Reads waiting for a slot, by the slot they wait for.
    parked_reads: BTreeMap<Slot, Vec<ParkedRead>>,
    /// Consecutive ticks during which `applied_slot` stayed behind `known_slot_max`.
    stalled_ticks: u64,
}

impl Learner {
    /// A learner that has decided nothing.
    pub fn new(options: LearnerOptions) -> Self {
        assert!(options.quorum_size >= 1, "a quorum holds at least one vote");
        assert!(
            options.read_timeout_ticks >= 1
                && options.progress_interval_ticks >= 1
                && options.sync_interval_ticks >= 1,
            "tick intervals are at least one tick: {options:?}"
        );
        Learner {
            options,
            now_tick: 0,
            applied_slot: 0,
            known_slot_max: 0,
            decided: BTreeMap::new(),
            votes: BTreeMap::new(),
            key_values: BTreeMap::new(),
            applied_request_ids: BTreeSet::new(),
            parked_reads: BTreeMap::new(),
            stalled_ticks: 0,
        }
    }

    /// A learner restored from its own log: the decided entries it persisted, in any
    /// order. They are applied as far as they are contiguous from slot 1; the rest is
    /// filled from peers as usual.
    pub fn recover(
        options: LearnerOptions,
        entries: impl IntoIterator<Item = DecidedEntry>,
    ) -> Self {
        let mut learner = Learner::new(options);
        for DecidedEntry { slot, value } in entries {
            if slot == 0 {
                continue;
            }
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
        let mut effects = Vec::new();
        learner.apply_contiguous(&mut effects);
        debug_assert!(effects.is_empty(), "no reads wait during recovery");
        learner
    }

    /// Handles `message` from `from`. Messages meant for other roles are ignored;
    /// `StatusRequest` is answered by the service with [`Learner::status`].
    pub fn handle(&mut self, from: NodeId, message: Message) -> Vec<Effect> {
        match message {
            Message::AcceptedValues { entries } => self.on_accepted_values(from, entries),
            Message::Heartbeat {
                decided_slot_max, ..
            } => self.on_heartbeat(decided_slot_max),
            Message::Decided {
                entries,
                applied_slot,
            } => self.on_decided(from, entries, applied_slot),
            Message::SyncDecided { from_slot, limit } => {
                self.on_sync_decided(from, from_slot, limit)
            }
            Message::Read {
                read_id,
                key,
                min_slot,
            } => self.on_read(from, read_id, key, min_slot),
            _ => Vec::new(),
        }
    }

    /// Advances time by one tick: reports progress to the proposers, fills gaps and
    /// expires reads that waited too long.
    pub fn tick(&mut self) -> Vec<Effect> {
        self.now_tick += 1;
        let mut effects = Vec::new();
        if self
            .now_tick
            .is_multiple_of(self.options.progress_interval_ticks)
        {
            effects.push(Effect::Broadcast {
                role: Role::Proposer,
                message: Message::LearnerProgress {
                    applied_slot: self.applied_slot,
                },
            });
        }
        self.fill_gaps(&mut effects);
        self.expire_reads(&mut effects);
        effects
    }

    /// A connection to `node` opened: a peer learner or an acceptor is asked for what this
    /// learner may have missed while apart; a proposer hears the applied slot at once.
    pub fn on_connected(&mut self, node: NodeId) -> Vec<Effect> {
        let from_slot = self.applied_slot + 1;
        let message = match node.role {
            Role::Learner => Message::SyncDecided {
                from_slot,
                limit: SYNC_BATCH_SLOTS as u32,
            },
            Role::Acceptor => Message::SyncAccepted {
                from_slot,
                to_slot: from_slot + SYNC_BATCH_SLOTS,
            },
            Role::Proposer => Message::LearnerProgress {
                applied_slot: self.applied_slot,
            },
            Role::Client => return Vec::new(),
        };
        vec![Effect::Send { to: node, message }]
    }

    /// The learner's report for `/status`.
    pub fn status(&self) -> RoleStatus {
        RoleStatus::Learner {
            applied_slot: self.applied_slot,
            known_slot_max: self.known_slot_max,
            key_count: self.key_values.len() as u64,
        }
    }

    /// Every slot `<= applied_slot()` is decided and applied (0 before the first).
    pub fn applied_slot(&self) -> Slot {
        self.applied_slot
    }

    /// The highest slot this learner has heard of.
    pub fn known_slot_max(&self) -> Slot {
        self.known_slot_max
    }

    /// The value of `key` as of `applied_slot()`, if it was ever written.
    pub fn value_of(&self, key: &str) -> Option<&str> {
        self.key_values.get(key).map(String::as_str)
    }

    /// The value decided for `slot`, applied or not (for tests and simulation).
    pub fn decided_value(&self, slot: Slot) -> Option<&Value> {
        self.decided.get(&slot)
    }

    fn on_accepted_values(&mut self, from: NodeId, entries: Vec<AcceptedEntry>) -> Vec<Effect> {
        if from.role != Role::Acceptor {
            return Vec::new(); // only acceptors vote; counting anyone else could decide wrongly
        }
        let mut effects = Vec::new();
        for AcceptedEntry {
            slot,
            ballot,
            value,
        } in entries
        {
            if slot <= self.applied_slot || self.decided.contains_key(&slot) {
                continue;
            }
            self.known_slot_max = self.known_slot_max.max(slot);
            let quorum_size = self.options.quorum_size;
            let votes = self.votes.entry(slot).or_default();
            if let Some(value) = votes.record(slot, from.id, ballot, value, quorum_size) {
                self.decide(slot, value, &mut effects);
            }
        }
        self.apply_contiguous(&mut effects);
        effects
    }

    fn on_heartbeat(&mut self, decided_slot_max: Slot) -> Vec<Effect> {
        self.known_slot_max = self.known_slot_max.max(decided_slot_max);
        Vec::new()
    }

    fn on_decided(
        &mut self,
        from: NodeId,
        entries: Vec<DecidedEntry>,
        peer_applied_slot: Slot,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.known_slot_max = self.known_slot_max.max(peer_applied_slot);
        let full_batch = entries.len() as u64 >= SYNC_BATCH_SLOTS;
        for DecidedEntry { slot, value } in entries {
            if slot > 0 {
                self.decide(slot, value, &mut effects);
            }
        }
        let applied_before = self.applied_slot;
        self.apply_contiguous(&mut effects);
        // A full answer means the peer probably holds more: ask for the next batch now
        // rather than after another sync interval, so a far-behind learner catches up fast.
        if full_batch
            && self.applied_slot > applied_before
            && self.known_slot_max > self.applied_slot
        {
            effects.push(Effect::Send {
                to: from,
                message: Message::SyncDecided {
                    from_slot: self.applied_slot + 1,
                    limit: SYNC_BATCH_SLOTS as u32,
                },
            });
        }
        effects
    }

    fn on_sync_decided(&mut self, from: NodeId, from_slot: Slot, limit: u32) -> Vec<Effect> {
        let limit = u64::from(limit).min(SYNC_BATCH_SLOTS) as usize;
        let entries = self
            .decided
            .range(from_slot.max(1)..)
            .take(limit)
            .map(|(slot, value)| DecidedEntry {
                slot: *slot,
                value: value.clone(),
            })
            .collect();
        vec![Effect::Send {
            to: from,
            message: Message::Decided {
                entries,
                applied_slot: self.applied_slot,
            },
        }]
    }

    fn on_read(
        &mut self,
        client: NodeId,
        read_id: u64,
        key: String,
        min_slot: Slot,
    ) -> Vec<Effect> {
        if self.applied_slot >= min_slot {
            return vec![self.read_reply(client, read_id, &key)];
        }
        // The reader learned from the leader that `min_slot` is decided: this learner is
        // behind, and gap filling starts if the slot does not arrive by itself.
        self.known_slot_max = self.known_slot_max.max(min_slot);
        self.parked_reads
            .entry(min_slot)
            .or_default()
            .push(ParkedRead {
                client,
                read_id,
                key,
                expires_at_tick: self.now_tick + self.options.read_timeout_ticks,
            });
        Vec::new()
    }

    fn read_reply(&self, client: NodeId, read_id: u64, key: &str) -> Effect {
        Effect::Send {
            to: client,
            message: Message::ReadReply {
                read_id,
                value: self.key_values.get(key).cloned(),
                applied_slot: self.applied_slot,
            },
        }
    }

    /// Records `value` as decided for `slot` (persisting it) unless already known.
    fn decide(&mut self, slot: Slot, value: Value, effects: &mut Vec<Effect>) {
        self.known_slot_max = self.known_slot_max.max(slot);
        match self.decided.entry(slot) {
            Entry::Occupied(known) => assert!(
                *known.get() == value,
                "agreement: slot {slot} was decided with two different values"
            ),
            Entry::Vacant(vacant) => {
                self.votes.remove(&slot);
                effects.push(Effect::Persist(DecidedEntry {
                    slot,
                    value: value.clone(),
                }));
                vacant.insert(value);
            }
        }
    }

    /// Applies every decided slot that follows `applied_slot` without a hole, then answers
    /// the reads that were waiting for them.
    fn apply_contiguous(&mut self, effects: &mut Vec<Effect>) {
        let applied_before = self.applied_slot;
        while let Some(value) = self.decided.get(&(self.applied_slot + 1)) {
            for command in value.commands() {
                // Exactly-once: a retried write may be decided again in a later slot.
                if self.applied_request_ids.insert(command.request_id) {
                    self.key_values
                        .insert(command.key.clone(), command.value.clone());
                }
            }
            self.applied_slot += 1;
        }
        if self.applied_slot == applied_before {
            return;
        }
        self.stalled_ticks = 0;
        debug_assert!(
            self.votes.keys().all(|slot| *slot > self.applied_slot),
            "votes are kept only for undecided slots above the applied slot"
        );
        let still_waiting = self.parked_reads.split_off(&(self.applied_slot + 1));
        let ready = std::mem::replace(&mut self.parked_reads, still_waiting);
        for read in ready.into_values().flatten() {
            effects.push(self.read_reply(read.client, read.read_id, &read.key));
        }
    }

    /// While the applied slot stays behind a known slot: after one interval ask the peer
    /// learners, from the second interval on also ask the acceptors for their votes.
    fn fill_gaps(&mut self, effects: &mut Vec<Effect>) {
        if self.known_slot_max <= self.applied_slot {
            self.stalled_ticks = 0;
            return;
        }
        self.stalled_ticks += 1;
        let interval = self.options.sync_interval_ticks;
        if !self.stalled_ticks.is_multiple_of(interval) {
            return;
        }
        let from_slot = self.applied_slot + 1;
        effects.push(Effect::Broadcast {
            role: Role::Learner,
            message: Message::SyncDecided {
                from_slot,
                limit: SYNC_BATCH_SLOTS as u32,
            },
        });
        if self.stalled_ticks >= 2 * interval {
            effects.push(Effect::Broadcast {
                role: Role::Acceptor,
                message: Message::SyncAccepted {
                    from_slot,
                    to_slot: (self.known_slot_max + 1).min(from_slot + SYNC_BATCH_SLOTS),
                },
            });
        }
    }

    fn expire_reads(&mut self, effects: &mut Vec<Effect>) {
        if self.parked_reads.is_empty() {
            return;
        }
        let now_tick = self.now_tick;
        let applied_slot = self.applied_slot;
        self.parked_reads.retain(|_, reads| {
            reads.retain(|read| {
                if read.expires_at_tick > now_tick {
                    return true;
                }
                effects.push(Effect::Send {
                    to: read.client,
                    message: Message::ReadTimedOut {
                        read_id: read.read_id,
                        applied_slot,
                    },
                });
                false
            });
            !reads.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::value::Command;

    fn learner() -> Learner {
        Learner::new(LearnerOptions::new(1, 2))
    }

    fn write(request_id: u128, key: &str, value: &str) -> Value {
        Value::Batch(vec![Command {
            request_id: RequestId(request_id),
            key: key.to_string(),
            value: value.to_string(),
        }])
    }

    fn votes(entries: &[(Slot, Ballot, &Value)]) -> Message {
        Message::AcceptedValues {
            entries: entries
                .iter()
                .map(|(slot, ballot, value)| AcceptedEntry {
                    slot: *slot,
                    ballot: *ballot,
                    value: (*value).clone(),
                })
                .collect(),
        }
    }

    fn vote(
        learner: &mut Learner,
        acceptor: u32,
        slot: Slot,
        ballot: Ballot,
        value: &Value,
    ) -> Vec<Effect> {
        learner.handle(NodeId::acceptor(acceptor), votes(&[(slot, ballot, value)]))
    }

    fn persisted_slots(effects: &[Effect]) -> Vec<Slot> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Persist(entry) => Some(entry.slot),
                _ => None,
            })
            .collect()
    }

    fn ticks(learner: &mut Learner, count: u64) -> Vec<Effect> {
        (0..count).flat_map(|_| learner.tick()).collect()
    }

    fn broadcasts_to(effects: &[Effect], wanted: Role) -> Vec<Message> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Broadcast { role, message } if *role == wanted => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_slot_is_decided_only_by_a_quorum_reporting_the_same_ballot() {
        let mut learner = learner();
        let first = write(1, "k", "first");
        let second = write(2, "k", "second");
        assert!(vote(&mut learner, 1, 1, Ballot::new(1, 1), &first).is_empty());
        // A vote under another ballot does not add up with the first one.
        assert!(vote(&mut learner, 2, 1, Ballot::new(2, 2), &second).is_empty());
        assert_eq!(learner.decided_value(1), None);
        assert_eq!(learner.applied_slot(), 0);
        // The same acceptor repeating itself is still one vote.
        assert!(vote(&mut learner, 2, 1, Ballot::new(2, 2), &second).is_empty());
        let effects = vote(&mut learner, 3, 1, Ballot::new(2, 2), &second);
        assert_eq!(
            effects,
            vec![Effect::Persist(DecidedEntry {
                slot: 1,
                value: second.clone()
            })]
        );
        assert_eq!(learner.decided_value(1), Some(&second));
        assert_eq!(learner.applied_slot(), 1);
        assert_eq!(learner.value_of("k"), Some("second"));
    }

    #[test]
    fn an_acceptors_higher_ballot_report_replaces_its_earlier_one() {
        let mut learner = learner();
        let old = write(1, "k", "old");
        let new = write(2, "k", "new");
        vote(&mut learner, 1, 1, Ballot::new(1, 1), &old);
        vote(&mut learner, 1, 1, Ballot::new(2, 2), &new);
        // Acceptor 1 no longer stands behind ballot 1.1, so acceptor 2 alone is no quorum.
        assert!(vote(&mut learner, 2, 1, Ballot::new(1, 1), &old).is_empty());
        // A stale report arriving after the newer one changes nothing either.
        assert!(vote(&mut learner, 1, 1, Ballot::new(1, 1), &old).is_empty());
        assert_eq!(learner.applied_slot(), 0);
        vote(&mut learner, 3, 1, Ballot::new(2, 2), &new);
        assert_eq!(learner.value_of("k"), Some("new"));
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

    #[test]
    fn duplicated_and_reordered_votes_decide_each_slot_once() {
        let mut learner = learner();
        let ballot = Ballot::new(3, 2);
        let values: Vec<Value> = (1..=3)
            .map(|slot| write(slot, "k", &slot.to_string()))
            .collect();
        let mut persisted = Vec::new();
        let order = [
            (2, 3),
            (1, 3),
            (2, 3),
            (3, 1),
            (1, 2),
            (3, 1),
            (1, 3),
            (2, 1),
            (3, 2),
            (1, 1),
        ];
        for (acceptor, slot) in order {
            let effects = vote(
                &mut learner,
                acceptor,
                slot,
                ballot,
                &values[slot as usize - 1],
            );
            persisted.extend(persisted_slots(&effects));
        }
        assert_eq!(
            persisted,
            vec![3, 1, 2],
            "each slot persisted once, when decided"
        );
        assert_eq!(learner.applied_slot(), 3);
        assert_eq!(learner.value_of("k"), Some("3"));
        // Votes for applied slots are ignored.
        assert!(vote(&mut learner, 3, 1, ballot, &values[0]).is_empty());
    }

    #[test]
    #[should_panic(expected = "one value per ballot")]
    fn two_values_under_one_ballot_break_an_invariant() {
        let mut learner = learner();
        vote(&mut learner, 1, 1, Ballot::new(1, 1), &write(1, "k", "a"));
        vote(&mut learner, 2, 1, Ballot::new(1, 1), &write(2, "k", "b"));
    }

    #[test]
    fn only_acceptors_votes_count() {
        let mut learner = learner();
        let value = write(1, "k", "v");
        learner.handle(
            NodeId::proposer(1),
            votes(&[(1, Ballot::new(1, 1), &value)]),
        );
        vote(&mut learner, 1, 1, Ballot::new(1, 1), &value);
        assert_eq!(learner.applied_slot(), 0);
    }

    #[test]
    fn a_read_of_an_applied_slot_is_answered_at_once() {
        let mut learner = learner();
        let client = NodeId::client(1);
        let effects = learner.handle(
            client,
            Message::Read {
                read_id: 5,
                key: "k".into(),
                min_slot: 0,
            },
        );
        assert_eq!(
            effects,
            vec![Effect::Send {
                to: client,
                message: Message::ReadReply {
                    read_id: 5,
                    value: None,
                    applied_slot: 0
                }
            }]
        );
    }

    #[test]
    fn a_parked_read_is_answered_when_its_slot_is_applied() {
        let mut learner = learner();
        let client = NodeId::client(2);
        let read = Message::Read {
            read_id: 9,
            key: "k".into(),
            min_slot: 1,
        };
        assert!(
            learner.handle(client, read).is_empty(),
            "slot 1 is not applied yet"
        );
        assert_eq!(learner.known_slot_max(), 1, "the read names a decided slot");
        ticks(&mut learner, 10);
        let value = write(1, "k", "v");
        vote(&mut learner, 1, 1, Ballot::new(1, 1), &value);
        let effects = vote(&mut learner, 2, 1, Ballot::new(1, 1), &value);
        assert_eq!(
            effects,
            vec![
                Effect::Persist(DecidedEntry { slot: 1, value }),
                Effect::Send {
                    to: client,
                    message: Message::ReadReply {
                        read_id: 9,
                        value: Some("v".into()),
                        applied_slot: 1
                    }
                }
            ]
        );
        let later: Vec<Effect> = ticks(&mut learner, 400);
        assert!(
            !later.iter().any(|effect| matches!(
                effect,
                Effect::Send {
                    message: Message::ReadTimedOut { .. },
                    ..
                }
            )),
            "an answered read does not time out"
        );
    }

    #[test]
    fn a_parked_read_times_out_when_its_slot_never_arrives() {
        let mut options = LearnerOptions::new(1, 2);
        options.read_timeout_ticks = 30;
        let mut learner = Learner::new(options);
        let client = NodeId::client(1);
        learner.handle(
            client,
            Message::Read {
                read_id: 3,
                key: "k".into(),
                min_slot: 4,
            },
        );
        let timed_out = |effects: &[Effect]| {
            effects.iter().any(|effect| {
                *effect
                    == Effect::Send {
                        to: client,
                        message: Message::ReadTimedOut {
                            read_id: 3,
                            applied_slot: 0,
                        },
                    }
            })
        };
        assert!(!timed_out(&ticks(&mut learner, 29)));
        assert!(timed_out(&learner.tick()));
        assert!(!timed_out(&ticks(&mut learner, 100)), "answered once");
    }

    #[test]
    fn a_learner_that_missed_slots_asks_its_peers_after_the_interval_and_catches_up() {
        let mut behind = learner();
        let mut ahead = learner();
        let ballot = Ballot::new(1, 1);
        let values: Vec<Value> = (1..=3)
            .map(|slot| write(slot, "k", &slot.to_string()))
            .collect();
        for acceptor in [1, 2] {
            for (index, value) in values.iter().enumerate() {
                vote(&mut ahead, acceptor, index as Slot + 1, ballot, value);
            }
        }
        // The behind learner only heard slot 3's votes: slots 1 and 2 are a gap.
        for acceptor in [1, 2] {
            vote(&mut behind, acceptor, 3, ballot, &values[2]);
        }
        assert_eq!((behind.applied_slot(), behind.known_slot_max()), (0, 3));
        let early = ticks(&mut behind, 19);
        assert!(
            broadcasts_to(&early, Role::Learner).is_empty(),
            "waits one interval"
        );
        let asked = broadcasts_to(&behind.tick(), Role::Learner);
        assert_eq!(
            asked,
            vec![Message::SyncDecided {
                from_slot: 1,
                limit: SYNC_BATCH_SLOTS as u32
            }]
        );
        let reply = ahead.handle(NodeId::learner(1), asked[0].clone());
        let [Effect::Send { to, message }] = reply.as_slice() else {
            panic!("expected one reply, got {reply:?}")
        };
        assert_eq!(*to, NodeId::learner(1));
        let effects = behind.handle(NodeId::learner(2), message.clone());
        assert_eq!(
            persisted_slots(&effects),
            vec![1, 2],
            "slot 3 was already known"
        );
        assert_eq!(behind.applied_slot(), 3);
        assert_eq!(behind.value_of("k"), Some("3"));
        let quiet = ticks(&mut behind, 100);
        assert!(
            broadcasts_to(&quiet, Role::Learner).is_empty(),
            "no gap, no sync"
        );
    }

    #[test]
    fn a_learner_still_stuck_after_a_second_interval_asks_the_acceptors() {
        let mut learner = learner();
        learner.handle(
            NodeId::proposer(1),
            Message::Heartbeat {
                ballot: Ballot::new(1, 1),
                decided_slot_max: 7,
            },
        );
        assert_eq!(learner.known_slot_max(), 7);
        let first = ticks(&mut learner, 20);
        assert_eq!(broadcasts_to(&first, Role::Learner).len(), 1);
        assert!(broadcasts_to(&first, Role::Acceptor).is_empty());
        let second = ticks(&mut learner, 20);
        assert_eq!(broadcasts_to(&second, Role::Learner).len(), 1);
        assert_eq!(
            broadcasts_to(&second, Role::Acceptor),
            vec![Message::SyncAccepted {
                from_slot: 1,
                to_slot: 8
            }]
        );
        // The acceptors' answer fills the gap.
        let entries: Vec<(Slot, Ballot, Value)> = (1..=7)
            .map(|slot| {
                (
                    slot,
                    Ballot::new(1, 1),
                    write(slot as u128, "k", &slot.to_string()),
                )
            })
            .collect();
        let borrowed: Vec<(Slot, Ballot, &Value)> = entries
            .iter()
            .map(|(slot, ballot, value)| (*slot, *ballot, value))
            .collect();
        learner.handle(NodeId::acceptor(1), votes(&borrowed));
        learner.handle(NodeId::acceptor(3), votes(&borrowed));
        assert_eq!(learner.applied_slot(), 7);
    }

    #[test]
    fn a_learner_without_a_gap_sends_only_its_progress() {
        let mut learner = learner();
        let effects = ticks(&mut learner, 50);
        assert_eq!(effects.len(), 10, "progress every 5 ticks and nothing else");
        assert!(effects.iter().all(|effect| *effect
            == Effect::Broadcast {
                role: Role::Proposer,
                message: Message::LearnerProgress { applied_slot: 0 }
            }));
    }

    #[test]
    fn sync_decided_is_answered_from_the_slot_asked_within_the_limit() {
        let mut learner = learner();
        let ballot = Ballot::new(1, 1);
        for acceptor in [1, 2] {
            for slot in 1..=5 {
                vote(&mut learner, acceptor, slot, ballot, &Value::Noop);
            }
        }
        let reply = learner.handle(
            NodeId::learner(2),
            Message::SyncDecided {
                from_slot: 2,
                limit: 3,
            },
        );
        assert_eq!(
            reply,
            vec![Effect::Send {
                to: NodeId::learner(2),
                message: Message::Decided {
                    entries: (2..=4)
                        .map(|slot| DecidedEntry {
                            slot,
                            value: Value::Noop
                        })
                        .collect(),
                    applied_slot: 5
                }
            }]
        );
    }

    #[test]
    fn a_new_connection_is_asked_for_what_was_missed() {
        let mut learner = Learner::recover(
            LearnerOptions::new(1, 2),
            [DecidedEntry {
                slot: 1,
                value: Value::Noop,
            }],
        );
        let send = |to: NodeId, message: Message| vec![Effect::Send { to, message }];
        assert_eq!(
            learner.on_connected(NodeId::learner(2)),
            send(
                NodeId::learner(2),
                Message::SyncDecided {
                    from_slot: 2,
                    limit: SYNC_BATCH_SLOTS as u32
                }
            )
        );
        assert_eq!(
            learner.on_connected(NodeId::acceptor(3)),
            send(
                NodeId::acceptor(3),
                Message::SyncAccepted {
                    from_slot: 2,
                    to_slot: 2 + SYNC_BATCH_SLOTS
                }
            )
        );
        assert_eq!(
            learner.on_connected(NodeId::proposer(1)),
            send(
                NodeId::proposer(1),
                Message::LearnerProgress { applied_slot: 1 }
            )
        );
        assert!(learner.on_connected(NodeId::client(1)).is_empty());
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
