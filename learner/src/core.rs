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
//!
//! The learner keeps the decided values of the last `retain_slots` applied slots (its
//! *history*), not all of them: older slots survive only folded into the key-value state.
//! A peer that needs slots below the history gets the whole state instead
//! ([`Message::Snapshot`]), and the log on disk is compacted the same way
//! ([`Effect::PersistSnapshot`]). The history also serves subscribers: a client API
//! subscribes (`Subscribe`) and is pushed the writes of every slot as it is applied
//! (`Applied`), after those of the retained slots it asked for; a position older than the
//! history is refused explicitly (`SubscriptionTooOld`), never skipped.
//!
//! What a message says is validated before it changes anything (`from` is trusted: the
//! network authenticated it): votes only from acceptors, decided values and snapshots only
//! from learners, slots only in `[1, MAX_PLAUSIBLE_SLOT]`, and a peer's value that
//! contradicts one decided here is refused. Each refusal raises an alarm
//! ([`Learner::alarms`]), the core's only record since it does not log.

use common::alarm::{Alarm, Alarms};
use common::ballot::{is_plausible_slot, Ballot, Slot, MAX_PLAUSIBLE_SLOT};
use common::message::{
    AcceptedEntry, AppliedSlot, AppliedWrite, DecidedEntry, Message, RoleStatus, StateSnapshot,
};
use common::node::{NodeId, Role};
use common::value::{RequestId, Value};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// The most slots one gap-filling exchange covers: a `Decided` answer holds at most this
/// many entries and a `SyncAccepted` asks for at most this many slots, so one answer stays
/// a reasonable frame however far behind a learner is.
pub const SYNC_BATCH_SLOTS: u64 = 4096;

/// The default of [`LearnerOptions::retain_slots`] (`LEARNER_RETAIN_SLOTS`): generous, so
/// that a subscriber or a peer that was away for a while still resumes slot by slot.
pub const DEFAULT_RETAIN_SLOTS: u64 = 100_000;

/// An `Applied` message carries at most about this many bytes of keys and values (and at
/// least one slot), so that catching up a subscriber never builds one huge frame.
pub const APPLIED_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// The fewest ticks between two snapshots sent to one peer: a peer asks again every sync
/// interval while it waits, and a large state should not be sent over and over meanwhile.
pub const SNAPSHOT_RESEND_TICKS: u64 = 200;

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
    /// How many applied slots keep their decided value (the history): `[applied_slot -
    /// retain_slots + 1, applied_slot]`. Older slots live on only in the state, so memory
    /// and the log stay bounded; a peer or subscriber behind the history gets a snapshot or
    /// an explicit `SubscriptionTooOld`.
    pub retain_slots: u64,
    /// How often subscribers hear an empty `Applied` when nothing was applied, so that
    /// they know the stream is alive.
    pub subscriber_heartbeat_ticks: u64,
}

impl LearnerOptions {
    /// Options for learner `id` deciding with `quorum_size` votes, other counts at their
    /// defaults (read timeout 300 ticks, progress every 5 ticks, sync after 20 ticks,
    /// [`DEFAULT_RETAIN_SLOTS`] slots of history, a subscriber heartbeat every 50 ticks).
    pub fn new(id: u32, quorum_size: usize) -> Self {
        LearnerOptions {
            id,
            quorum_size,
            read_timeout_ticks: 300,
            progress_interval_ticks: 5,
            sync_interval_ticks: 20,
            retain_slots: DEFAULT_RETAIN_SLOTS,
            subscriber_heartbeat_ticks: 50,
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
    /// Replace the whole log by `snapshot` followed by `retained` (before any later effect):
    /// the log then restores exactly the learner's present state and history. Emitted when
    /// a peer's snapshot was installed, and to compact a log that outgrew the history.
    PersistSnapshot {
        /// The state at `snapshot.applied_slot`.
        snapshot: StateSnapshot,
        /// Every decided value the learner holds: its history (slots at or below the
        /// snapshot, kept for peers and subscribers) and decided slots not applied yet.
        retained: Vec<DecidedEntry>,
    },
}

/// The votes counted so far for one slot that is not decided yet.
#[derive(Default)]
struct SlotVotes {
    /// Each acceptor's latest report: the highest ballot it accepted for the slot, with
    /// the value. An acceptor's accepted ballot for a slot only grows, so a lower report
    /// that arrives late is stale and ignored.
    report_by_acceptor: BTreeMap<u32, (Ballot, Value)>,
}

/// What counting one report gave.
struct VoteOutcome {
    /// The value, once a quorum of acceptors reported it under one ballot.
    decided: Option<Value>,
    /// Why the report breaks the protocol, if it does.
    alarm: Option<String>,
}

impl SlotVotes {
    /// Counts `acceptor`'s report of `value` under `ballot`; decides the value once a
    /// quorum of acceptors report that same ballot with that same value.
    ///
    /// A ballot carries one value per slot, so two values under one ballot mean a peer
    /// broke the protocol. An acceptor that changes its value under its latest ballot is
    /// refused. Two acceptors reporting different values under one ballot (a proposer that
    /// sent each its own) are both kept and counted apart, with an alarm: only a quorum
    /// of the same (ballot, value) is a chosen value, so neither report can wedge the slot.
    fn record(
        &mut self,
        slot: Slot,
        acceptor: u32,
        ballot: Ballot,
        value: Value,
        quorum_size: usize,
    ) -> VoteOutcome {
        let mut outcome = VoteOutcome {
            decided: None,
            alarm: None,
        };
        match self.report_by_acceptor.get(&acceptor) {
            Some((latest, _)) if *latest > ballot => return outcome,
            Some((latest, latest_value)) if *latest == ballot && *latest_value != value => {
                outcome.alarm = Some(format!(
                    "acceptor {acceptor} reported a second value for slot {slot} under ballot \
                     {ballot}: ignored"
                ));
                return outcome;
            }
            _ => {}
        }
        if let Some((other, _)) =
            self.report_by_acceptor
                .iter()
                .find(|(other, (reported, reported_value))| {
                    **other != acceptor && *reported == ballot && *reported_value != value
                })
        {
            outcome.alarm = Some(format!(
                "acceptors {other} and {acceptor} reported different values for slot {slot} \
                 under ballot {ballot}"
            ));
        }
        let votes = 1 + self
            .report_by_acceptor
            .iter()
            .filter(|(other, (reported, reported_value))| {
                **other != acceptor && *reported == ballot && *reported_value == value
            })
            .count();
        if votes >= quorum_size {
            outcome.decided = Some(value);
        } else {
            self.report_by_acceptor.insert(acceptor, (ballot, value));
        }
        outcome
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
    /// Decided values: the history `[history_start, applied_slot]` and every decided slot
    /// above `applied_slot`. Peers that missed slots and subscribers are served from here.
    decided: BTreeMap<Slot, Value>,
    /// The oldest slot whose value is still in `decided` (once applied); slots below are
    /// folded into `key_values` only.
    history_start: Slot,
    /// Votes for slots above `applied_slot` that are not decided yet.
    votes: BTreeMap<Slot, SlotVotes>,
    /// The replicated state: the result of applying slots `[1, applied_slot]`.
    key_values: BTreeMap<String, String>,
    /// Request ids of every command applied, with the slot that applied it, so a retried
    /// write applies once and a subscriber is told which command of a slot took effect.
    applied_request_ids: BTreeMap<RequestId, Slot>,
    /// Reads waiting for a slot, by the slot they wait for.
    parked_reads: BTreeMap<Slot, Vec<ParkedRead>>,
    /// Consecutive ticks during which `applied_slot` stayed behind `known_slot_max`.
    stalled_ticks: u64,
    /// Each subscription (the client API's node and its stream id) and the next slot
    /// to push to it.
    subscribers: BTreeMap<(NodeId, u64), Slot>,
    /// Decided slots persisted since the log was last replaced by a snapshot.
    persisted_since_compaction: u64,
    /// When a snapshot was last sent to each peer.
    snapshot_sent_at_tick: BTreeMap<NodeId, u64>,
    /// What this learner refused from the network, and why.
    alarms: Alarms,
}

impl Learner {
    /// A learner that has decided nothing.
    pub fn new(options: LearnerOptions) -> Self {
        assert!(options.quorum_size >= 1, "a quorum holds at least one vote");
        assert!(
            options.read_timeout_ticks >= 1
                && options.progress_interval_ticks >= 1
                && options.sync_interval_ticks >= 1
                && options.retain_slots >= 1
                && options.subscriber_heartbeat_ticks >= 1,
            "tick intervals are at least one tick: {options:?}"
        );
        Learner {
            options,
            now_tick: 0,
            applied_slot: 0,
            known_slot_max: 0,
            decided: BTreeMap::new(),
            history_start: 1,
            votes: BTreeMap::new(),
            key_values: BTreeMap::new(),
            applied_request_ids: BTreeMap::new(),
            parked_reads: BTreeMap::new(),
            stalled_ticks: 0,
            subscribers: BTreeMap::new(),
            persisted_since_compaction: 0,
            snapshot_sent_at_tick: BTreeMap::new(),
            alarms: Alarms::new(),
        }
    }

    /// What this learner refused from the network and why, one line per distinct alarm
    /// with its count (at most [`common::alarm::ALARMS_MAX`], plus one saying how many
    /// older ones were evicted). The service shows them on `/status`.
    pub fn alarms(&self) -> Vec<String> {
        self.alarms.texts()
    }

    /// The alarms with their counts and first and last occurrence tick.
    pub fn alarm_entries(&self) -> &[Alarm] {
        self.alarms.entries()
    }

    fn raise_alarm(&mut self, text: String) {
        self.alarms.raise(self.now_tick, text);
    }

    /// Whether `slot`, named in a `kind` from `from`, is plausible; raises an alarm if not.
    fn plausible_slot_from(&mut self, from: NodeId, kind: &str, slot: Slot) -> bool {
        if is_plausible_slot(slot) {
            return true;
        }
        self.raise_alarm(format!(
            "{from} sent a {kind} naming slot {slot}, outside [1, {MAX_PLAUSIBLE_SLOT}]: ignored"
        ));
        false
    }

    /// A learner restored from its own log: the decided entries it persisted, in any
    /// order. They are applied as far as they are contiguous from slot 1; the rest is
    /// filled from peers as usual.
    pub fn recover(
        options: LearnerOptions,
        entries: impl IntoIterator<Item = DecidedEntry>,
    ) -> Self {
        Learner::recover_from_snapshot(options, None, entries)
    }

    /// A learner restored from a log that starts with a snapshot (see
    /// [`Effect::PersistSnapshot`]): the state at the snapshot's slot, then the decided
    /// entries. Entries at or below the snapshot are history, kept as far as they reach
    /// down from it without a hole; entries above it are applied as far as contiguous.
    pub fn recover_from_snapshot(
        options: LearnerOptions,
        snapshot: Option<StateSnapshot>,
        entries: impl IntoIterator<Item = DecidedEntry>,
    ) -> Self {
        let mut learner = Learner::new(options);
        if let Some(snapshot) = snapshot {
            learner.install_state(snapshot);
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
        debug_assert!(
            effects.is_empty(),
            "no reads or subscribers wait during recovery"
        );
        learner
    }

    /// Handles `message` from `from`. Messages meant for other roles are ignored;
    /// `StatusRequest` is answered by the service with [`Learner::status`].
    pub fn handle(&mut self, from: NodeId, message: Message) -> Vec<Effect> {
        match message {
            Message::AcceptedValues { entries } => self.on_accepted_values(from, entries),
            Message::Heartbeat {
                decided_slot_max, ..
            } => self.on_heartbeat(from, decided_slot_max),
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
            Message::Subscribe {
                stream_id,
                from_slot,
            } => self.on_subscribe(from, stream_id, from_slot),
            Message::Unsubscribe { stream_id } => {
                self.subscribers.remove(&(from, stream_id));
                Vec::new()
            }
            Message::ReadApplied {
                stream_id,
                from_slot,
                limit,
            } => self.on_read_applied(from, stream_id, from_slot, limit),
            Message::Snapshot { snapshot } => self.on_snapshot(from, snapshot),
            _ => Vec::new(),
        }
    }

    /// The connection to `node` closed: its subscriptions end (a client API that comes
    /// back subscribes again from the slot it needs).
    pub fn on_disconnected(&mut self, node: NodeId) -> Vec<Effect> {
        self.subscribers
            .retain(|(subscriber, _), _| *subscriber != node);
        self.snapshot_sent_at_tick.remove(&node);
        Vec::new()
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
        if self
            .now_tick
            .is_multiple_of(self.options.subscriber_heartbeat_ticks)
        {
            self.heartbeat_subscribers(&mut effects);
        }
        self.compact_log(&mut effects);
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

    /// The value decided for `slot`, applied or not, while the learner holds it (for
    /// tests and simulation).
    pub fn decided_value(&self, slot: Slot) -> Option<&Value> {
        self.decided.get(&slot)
    }

    /// The oldest slot whose writes this learner can still send (to a peer or a
    /// subscriber); older slots exist only folded into the state.
    pub fn history_start_slot(&self) -> Slot {
        self.history_start
    }

    /// How many subscriptions this learner pushes to.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

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
            if !self.plausible_slot_from(from, "vote", slot) {
                continue;
            }
            self.known_slot_max = self.known_slot_max.max(slot);
            let quorum_size = self.options.quorum_size;
            let votes = self.votes.entry(slot).or_default();
            let outcome = votes.record(slot, from.id, ballot, value, quorum_size);
            if let Some(alarm) = outcome.alarm {
                self.raise_alarm(alarm);
            }
            if let Some(value) = outcome.decided {
                self.decide(slot, value, "a quorum of acceptors", &mut effects);
            }
        }
        self.apply_contiguous(&mut effects);
        effects
    }

    fn on_heartbeat(&mut self, from: NodeId, decided_slot_max: Slot) -> Vec<Effect> {
        if from.role != Role::Proposer {
            self.raise_alarm(format!("{from} sent a Heartbeat: ignored"));
        } else if decided_slot_max == 0
            || self.plausible_slot_from(from, "Heartbeat", decided_slot_max)
        {
            self.known_slot_max = self.known_slot_max.max(decided_slot_max);
        }
        Vec::new()
    }

    fn on_decided(
        &mut self,
        from: NodeId,
        entries: Vec<DecidedEntry>,
        peer_applied_slot: Slot,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        if from.role != Role::Learner {
            self.raise_alarm(format!("{from} sent Decided values: ignored"));
            return effects;
        }
        if peer_applied_slot == 0 || self.plausible_slot_from(from, "Decided", peer_applied_slot) {
            self.known_slot_max = self.known_slot_max.max(peer_applied_slot);
        }
        let full_batch = entries.len() as u64 >= SYNC_BATCH_SLOTS;
        let source = format!("{from}");
        for DecidedEntry { slot, value } in entries {
            if self.plausible_slot_from(from, "Decided", slot) {
                self.decide(slot, value, &source, &mut effects);
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
        let mut from_slot = from_slot.max(1);
        let mut effects = Vec::new();
        if from_slot < self.history_start && from_slot <= self.applied_slot {
            // The peer needs slots this learner no longer holds: send the whole state, then
            // the decided slots above it.
            let last_sent = self.snapshot_sent_at_tick.get(&from).copied();
            if matches!(last_sent, Some(tick) if self.now_tick < tick + SNAPSHOT_RESEND_TICKS) {
                return effects;
            }
            self.snapshot_sent_at_tick.insert(from, self.now_tick);
            effects.push(Effect::Send {
                to: from,
                message: Message::Snapshot {
                    snapshot: self.snapshot(),
                },
            });
            from_slot = self.applied_slot + 1;
        }
        let entries = self
            .decided
            .range(from_slot..)
            .take(limit)
            .map(|(slot, value)| DecidedEntry {
                slot: *slot,
                value: value.clone(),
            })
            .collect();
        effects.push(Effect::Send {
            to: from,
            message: Message::Decided {
                entries,
                applied_slot: self.applied_slot,
            },
        });
        effects
    }

    fn on_subscribe(&mut self, subscriber: NodeId, stream_id: u64, from_slot: Slot) -> Vec<Effect> {
        if from_slot != 0 && !self.plausible_slot_from(subscriber, "Subscribe", from_slot) {
            return Vec::new();
        }
        let next_slot = if from_slot == 0 {
            self.applied_slot + 1
        } else {
            from_slot
        };
        if next_slot <= self.applied_slot && next_slot < self.history_start {
            self.subscribers.remove(&(subscriber, stream_id));
            return vec![self.too_old(subscriber, stream_id)];
        }
        let mut effects = Vec::new();
        if next_slot > self.applied_slot {
            // Nothing to catch up: an empty push acknowledges the position.
            effects.push(self.applied_message(subscriber, stream_id, next_slot, next_slot));
        } else {
            self.push_range(subscriber, stream_id, next_slot, &mut effects);
        }
        let pushed_through = next_slot.max(self.applied_slot + 1);
        self.subscribers
            .insert((subscriber, stream_id), pushed_through);
        effects
    }

    fn on_read_applied(
        &mut self,
        asker: NodeId,
        stream_id: u64,
        from_slot: Slot,
        limit: u32,
    ) -> Vec<Effect> {
        if from_slot != 0 && !self.plausible_slot_from(asker, "ReadApplied", from_slot) {
            return Vec::new();
        }
        let from_slot = from_slot.max(1);
        if from_slot <= self.applied_slot && from_slot < self.history_start {
            return vec![self.too_old(asker, stream_id)];
        }
        if from_slot > self.applied_slot {
            return vec![self.applied_message(asker, stream_id, from_slot, from_slot)];
        }
        let limit = u64::from(limit.max(1)).min(SYNC_BATCH_SLOTS);
        let end_slot = (self.applied_slot + 1).min(from_slot.saturating_add(limit));
        let (to_slot, slots) = self.applied_chunk(from_slot, end_slot);
        vec![Effect::Send {
            to: asker,
            message: Message::Applied {
                stream_id,
                from_slot,
                to_slot,
                slots,
                applied_slot: self.applied_slot,
            },
        }]
    }

    /// A peer's whole state at a slot beyond this learner's: taken as this learner's own.
    /// Its history then starts after the snapshot, so subscribers still waiting for slots
    /// in between are told their position is too old rather than skipped past it.
    fn on_snapshot(&mut self, from: NodeId, snapshot: StateSnapshot) -> Vec<Effect> {
        if from.role != Role::Learner {
            self.raise_alarm(format!("{from} sent a Snapshot: ignored"));
            return Vec::new(); // only peers send state
        }
        if snapshot.applied_slot <= self.applied_slot {
            return Vec::new(); // an older state is of no use
        }
        if !self.plausible_slot_from(from, "Snapshot", snapshot.applied_slot) {
            return Vec::new();
        }
        let mut effects = Vec::new();
        let snapshot_slot = snapshot.applied_slot;
        let stranded: Vec<(NodeId, u64)> = self
            .subscribers
            .iter()
            .filter(|(_, next_slot)| **next_slot <= snapshot_slot)
            .map(|(subscription, _)| *subscription)
            .collect();
        self.install_state(snapshot.clone());
        for (subscriber, stream_id) in stranded {
            self.subscribers.remove(&(subscriber, stream_id));
            effects.push(self.too_old(subscriber, stream_id));
        }
        self.answer_parked_reads(&mut effects);
        effects.push(Effect::PersistSnapshot {
            snapshot,
            retained: self.retained_entries(),
        });
        self.persisted_since_compaction = 0;
        self.apply_contiguous(&mut effects);
        effects
    }

    /// Replaces the state by `snapshot`: everything at or below its slot is applied, and
    /// only decided slots above it are kept.
    fn install_state(&mut self, snapshot: StateSnapshot) {
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

    /// Every decided value held, in slot order (what a compacted log keeps).
    fn retained_entries(&self) -> Vec<DecidedEntry> {
        self.decided
            .iter()
            .map(|(slot, value)| DecidedEntry {
                slot: *slot,
                value: value.clone(),
            })
            .collect()
    }

    fn too_old(&self, to: NodeId, stream_id: u64) -> Effect {
        Effect::Send {
            to,
            message: Message::SubscriptionTooOld {
                stream_id,
                oldest_available_slot: self.history_start,
                applied_slot: self.applied_slot,
            },
        }
    }

    /// An `Applied` message for `[from_slot, to_slot)`, with the writes of those slots.
    fn applied_message(
        &self,
        to: NodeId,
        stream_id: u64,
        from_slot: Slot,
        to_slot: Slot,
    ) -> Effect {
        let slots = (from_slot..to_slot)
            .filter(|slot| *slot <= self.applied_slot)
            .filter_map(|slot| self.applied_writes(slot))
            .collect();
        Effect::Send {
            to,
            message: Message::Applied {
                stream_id,
                from_slot,
                to_slot,
                slots,
                applied_slot: self.applied_slot,
            },
        }
    }

    /// Pushes the writes of slots `[from_slot, applied_slot]` to one subscriber, in
    /// messages of at most [`SYNC_BATCH_SLOTS`] slots and about [`APPLIED_CHUNK_BYTES`].
    fn push_range(&self, to: NodeId, stream_id: u64, from_slot: Slot, effects: &mut Vec<Effect>) {
        let mut next_slot = from_slot;
        while next_slot <= self.applied_slot {
            let end_slot = (self.applied_slot + 1).min(next_slot + SYNC_BATCH_SLOTS);
            let (to_slot, slots) = self.applied_chunk(next_slot, end_slot);
            effects.push(Effect::Send {
                to,
                message: Message::Applied {
                    stream_id,
                    from_slot: next_slot,
                    to_slot,
                    slots,
                    applied_slot: self.applied_slot,
                },
            });
            next_slot = to_slot;
        }
    }

    /// The writes of the applied slots from `from_slot` up to `end_slot` (excluded), cut
    /// short after about [`APPLIED_CHUNK_BYTES`]; returns where the chunk ends.
    fn applied_chunk(&self, from_slot: Slot, end_slot: Slot) -> (Slot, Vec<AppliedSlot>) {
        debug_assert!(
            from_slot >= self.history_start && end_slot <= self.applied_slot + 1,
            "history: only retained applied slots are sent"
        );
        let mut slots = Vec::new();
        let mut bytes = 0;
        let mut slot = from_slot;
        while slot < end_slot && (slot == from_slot || bytes < APPLIED_CHUNK_BYTES) {
            if let Some(applied) = self.applied_writes(slot) {
                bytes += applied
                    .writes
                    .iter()
                    .map(|write| write.key.len() + write.value.len())
                    .sum::<usize>();
                slots.push(applied);
            }
            slot += 1;
        }
        (slot, slots)
    }

    /// The commands of applied `slot` that took effect (a request already applied in an
    /// earlier slot, or earlier in the same batch, did not), or None if there were none.
    fn applied_writes(&self, slot: Slot) -> Option<AppliedSlot> {
        let value = self.decided.get(&slot)?;
        let commands = value.commands();
        let mut seen = BTreeSet::new();
        let writes: Vec<AppliedWrite> = commands
            .iter()
            .enumerate()
            .filter(|(_, command)| {
                self.applied_request_ids.get(&command.request_id) == Some(&slot)
                    && seen.insert(command.request_id)
            })
            .map(|(index, command)| AppliedWrite {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                key: command.key.clone(),
                value: command.value.clone(),
            })
            .collect();
        (!writes.is_empty()).then_some(AppliedSlot {
            slot,
            command_count: u32::try_from(commands.len()).unwrap_or(u32::MAX),
            writes,
        })
    }

    /// Pushes what each subscriber has not been sent yet of the applied slots.
    fn push_to_subscribers(&mut self, effects: &mut Vec<Effect>) {
        let applied_slot = self.applied_slot;
        for ((subscriber, stream_id), next_slot) in &self.subscribers {
            if *next_slot <= applied_slot {
                self.push_range(*subscriber, *stream_id, *next_slot, effects);
            }
        }
        for next_slot in self.subscribers.values_mut() {
            *next_slot = (*next_slot).max(applied_slot + 1);
        }
    }

    /// An empty push to every subscriber: the stream is alive, and where it stands.
    fn heartbeat_subscribers(&self, effects: &mut Vec<Effect>) {
        for ((subscriber, stream_id), next_slot) in &self.subscribers {
            effects.push(Effect::Send {
                to: *subscriber,
                message: Message::Applied {
                    stream_id: *stream_id,
                    from_slot: *next_slot,
                    to_slot: *next_slot,
                    slots: Vec::new(),
                    applied_slot: self.applied_slot,
                },
            });
        }
    }

    /// Forgets the decided values of applied slots older than the last `retain_slots`.
    fn trim_history(&mut self) {
        let keep_from = (self.applied_slot + 1)
            .saturating_sub(self.options.retain_slots)
            .max(1);
        if keep_from <= self.history_start {
            return;
        }
        while matches!(self.decided.first_key_value(), Some((first, _)) if *first < keep_from) {
            self.decided.pop_first();
        }
        self.history_start = keep_from;
    }

    /// Once the log has grown by `retain_slots` records and holds slots the history no
    /// longer needs, it is replaced by a snapshot and the history.
    fn compact_log(&mut self, effects: &mut Vec<Effect>) {
        if self.persisted_since_compaction < self.options.retain_slots || self.history_start <= 1 {
            return;
        }
        self.persisted_since_compaction = 0;
        effects.push(Effect::PersistSnapshot {
            snapshot: self.snapshot(),
            retained: self.retained_entries(),
        });
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
        if !self.plausible_slot_from(client, "Read", min_slot) {
            // Answered at once, so the client tries elsewhere rather than wait it out.
            return vec![Effect::Send {
                to: client,
                message: Message::ReadTimedOut {
                    read_id,
                    applied_slot: self.applied_slot,
                },
            }];
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

    /// Records `value` as decided for `slot` (persisting it) unless already known. A value
    /// that differs from the one decided here, found by `source` (a peer learner, or a
    /// quorum of votes), breaks agreement somewhere else: it is refused with an alarm, and
    /// the value decided here stays.
    fn decide(&mut self, slot: Slot, value: Value, source: &str, effects: &mut Vec<Effect>) {
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
    fn apply_contiguous(&mut self, effects: &mut Vec<Effect>) {
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

    /// Answers the reads waiting for a slot that is now applied.
    fn answer_parked_reads(&mut self, effects: &mut Vec<Effect>) {
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
                    to_slot: self
                        .known_slot_max
                        .saturating_add(1)
                        .min(from_slot.saturating_add(SYNC_BATCH_SLOTS)),
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
    fn two_acceptors_reporting_different_values_under_one_ballot_raise_an_alarm_and_count_apart() {
        let mut learner = learner();
        let ballot = Ballot::new(1, 1);
        let (first, second) = (write(1, "k", "a"), write(2, "k", "b"));
        assert!(vote(&mut learner, 1, 1, ballot, &first).is_empty());
        assert!(vote(&mut learner, 2, 1, ballot, &second).is_empty());
        assert_eq!(learner.decided_value(1), None, "no quorum of one value");
        assert_eq!(
            learner.alarms(),
            ["acceptors 1 and 2 reported different values for slot 1 under ballot 1.1 (once)"]
        );
        // The slot is not wedged: a quorum of the same value still decides it.
        vote(&mut learner, 3, 1, ballot, &second);
        assert_eq!(learner.decided_value(1), Some(&second));
    }

    #[test]
    fn an_acceptor_reporting_a_second_value_under_its_ballot_is_ignored_with_an_alarm() {
        let mut learner = learner();
        let ballot = Ballot::new(1, 1);
        let (first, second) = (write(1, "k", "a"), write(2, "k", "b"));
        vote(&mut learner, 1, 1, ballot, &first);
        vote(&mut learner, 1, 1, ballot, &second);
        vote(&mut learner, 2, 1, ballot, &second);
        assert_eq!(
            learner.decided_value(1),
            None,
            "acceptor 1 still stands for the first"
        );
        assert_eq!(
            learner.alarms()[0],
            "acceptor 1 reported a second value for slot 1 under ballot 1.1: ignored (once)"
        );
        vote(&mut learner, 2, 1, Ballot::new(2, 2), &first);
        vote(&mut learner, 3, 1, Ballot::new(2, 2), &first);
        assert_eq!(learner.decided_value(1), Some(&first));
    }

    #[test]
    fn a_peers_decided_value_that_differs_from_the_one_decided_here_is_refused_with_an_alarm() {
        let mut learner = learner();
        let ballot = Ballot::new(1, 1);
        let (decided, other) = (write(1, "k", "a"), write(2, "k", "b"));
        vote(&mut learner, 2, 2, ballot, &decided);
        vote(&mut learner, 3, 2, ballot, &decided);
        let effects = learner.handle(
            NodeId::learner(2),
            Message::Decided {
                entries: vec![DecidedEntry {
                    slot: 2,
                    value: other,
                }],
                applied_slot: 2,
            },
        );
        assert!(persisted_slots(&effects).is_empty());
        assert_eq!(learner.decided_value(2), Some(&decided));
        assert_eq!(
            learner.alarms(),
            ["learner2 gave slot 2 a value that differs from the one decided here: ignored (once)"]
        );
    }

    #[test]
    fn decided_values_and_snapshots_from_a_node_that_is_not_a_learner_are_ignored() {
        let mut learner = learner();
        let decided = Message::Decided {
            entries: vec![DecidedEntry {
                slot: 1,
                value: write(1, "k", "v"),
            }],
            applied_slot: 1,
        };
        assert!(learner.handle(NodeId::client(1), decided).is_empty());
        let snapshot = Message::Snapshot {
            snapshot: StateSnapshot {
                applied_slot: 5,
                key_values: vec![],
                applied_request_ids: vec![],
            },
        };
        assert!(learner.handle(NodeId::acceptor(1), snapshot).is_empty());
        assert_eq!(learner.applied_slot(), 0);
        assert_eq!(learner.alarms().len(), 2);
    }

    #[test]
    fn slots_beyond_the_plausible_maximum_are_refused_with_an_alarm_and_nothing_overflows() {
        let mut learner = learner();
        let ballot = Ballot::new(1, 1);
        let value = write(1, "k", "v");
        for acceptor in 1..=2 {
            vote(&mut learner, acceptor, Slot::MAX, ballot, &value);
        }
        let proposer = NodeId::proposer(1);
        let client = NodeId::client(1);
        for (from, message) in [
            (
                proposer,
                Message::Heartbeat {
                    ballot,
                    decided_slot_max: Slot::MAX,
                },
            ),
            (
                NodeId::learner(2),
                Message::Decided {
                    entries: vec![DecidedEntry {
                        slot: Slot::MAX,
                        value: value.clone(),
                    }],
                    applied_slot: Slot::MAX,
                },
            ),
            (
                client,
                Message::Subscribe {
                    stream_id: 1,
                    from_slot: Slot::MAX,
                },
            ),
            (
                client,
                Message::ReadApplied {
                    stream_id: 1,
                    from_slot: Slot::MAX,
                    limit: u32::MAX,
                },
            ),
            (
                NodeId::learner(2),
                Message::Snapshot {
                    snapshot: StateSnapshot {
                        applied_slot: Slot::MAX,
                        key_values: vec![],
                        applied_request_ids: vec![],
                    },
                },
            ),
        ] {
            assert!(learner.handle(from, message).is_empty());
        }
        let read = learner.handle(
            client,
            Message::Read {
                read_id: 4,
                key: "k".into(),
                min_slot: Slot::MAX,
            },
        );
        assert_eq!(
            read,
            vec![Effect::Send {
                to: client,
                message: Message::ReadTimedOut {
                    read_id: 4,
                    applied_slot: 0
                }
            }]
        );
        assert_eq!(learner.known_slot_max(), 0, "no implausible slot was taken");
        assert_eq!(learner.decided_value(Slot::MAX), None);
        assert!(learner.alarms()[0].starts_with(&format!(
            "acceptor1 sent a vote naming slot {}, outside [1, 4611686018427387904]",
            Slot::MAX
        )));
        ticks(&mut learner, 100);
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

    fn applied_messages(effects: &[Effect], wanted: NodeId) -> Vec<Message> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Send { to, message } if *to == wanted => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// A learner that applied slots `1..=count`, slot `n` writing `k<n>` (slot 3 also
    /// retries slot 1's request, which must not count as a write).
    fn applied_learner(options: LearnerOptions, count: Slot) -> Learner {
        let mut learner = Learner::new(options);
        for slot in 1..=count {
            let mut commands = vec![Command {
                request_id: RequestId(slot as u128),
                key: format!("k{slot}"),
                value: format!("v{slot}"),
            }];
            if slot == 3 {
                commands.push(Command {
                    request_id: RequestId(1),
                    key: "k1".into(),
                    value: "v1".into(),
                });
            }
            for acceptor in [1, 2] {
                vote(
                    &mut learner,
                    acceptor,
                    slot,
                    Ballot::new(1, 1),
                    &Value::Batch(commands.clone()),
                );
            }
        }
        assert_eq!(learner.applied_slot(), count);
        learner
    }

    fn applied_write(slot: Slot, command_count: u32) -> AppliedSlot {
        AppliedSlot {
            slot,
            command_count,
            writes: vec![AppliedWrite {
                index: 0,
                key: format!("k{slot}"),
                value: format!("v{slot}"),
            }],
        }
    }

    #[test]
    fn a_subscriber_gets_the_retained_slots_then_each_slot_as_it_is_applied() {
        let mut learner = applied_learner(LearnerOptions::new(1, 2), 3);
        let client = NodeId::client(1);
        let effects = learner.handle(
            client,
            Message::Subscribe {
                stream_id: 9,
                from_slot: 2,
            },
        );
        assert_eq!(
            applied_messages(&effects, client),
            vec![Message::Applied {
                stream_id: 9,
                from_slot: 2,
                to_slot: 4,
                slots: vec![applied_write(2, 1), applied_write(3, 2)],
                applied_slot: 3,
            }],
            "slot 3's retry of slot 1's request is not a write"
        );
        let value = write(4, "k4", "v4");
        vote(&mut learner, 1, 4, Ballot::new(1, 1), &value);
        let effects = vote(&mut learner, 2, 4, Ballot::new(1, 1), &value);
        assert_eq!(
            applied_messages(&effects, client),
            vec![Message::Applied {
                stream_id: 9,
                from_slot: 4,
                to_slot: 5,
                slots: vec![applied_write(4, 1)],
                applied_slot: 4,
            }]
        );
        let heartbeat = applied_messages(&ticks(&mut learner, 50), client);
        assert_eq!(
            heartbeat,
            vec![Message::Applied {
                stream_id: 9,
                from_slot: 5,
                to_slot: 5,
                slots: vec![],
                applied_slot: 4,
            }],
            "an idle subscriber hears where the stream stands"
        );
        learner.handle(client, Message::Unsubscribe { stream_id: 9 });
        assert_eq!(learner.subscriber_count(), 0);
    }

    #[test]
    fn a_subscription_from_zero_starts_at_the_next_slot_and_ends_when_its_client_leaves() {
        let mut learner = applied_learner(LearnerOptions::new(1, 2), 2);
        let client = NodeId::client(3);
        let effects = learner.handle(
            client,
            Message::Subscribe {
                stream_id: 1,
                from_slot: 0,
            },
        );
        assert_eq!(
            applied_messages(&effects, client),
            vec![Message::Applied {
                stream_id: 1,
                from_slot: 3,
                to_slot: 3,
                slots: vec![],
                applied_slot: 2,
            }]
        );
        assert_eq!(learner.subscriber_count(), 1);
        learner.on_disconnected(client);
        assert_eq!(learner.subscriber_count(), 0);
    }

    #[test]
    fn a_position_older_than_the_history_is_refused_naming_the_oldest_slot() {
        let mut options = LearnerOptions::new(1, 2);
        options.retain_slots = 3;
        let mut learner = applied_learner(options, 10);
        assert_eq!(
            learner.history_start_slot(),
            8,
            "slots 8, 9 and 10 are kept"
        );
        assert_eq!(learner.decided_value(7), None);
        let client = NodeId::client(1);
        let too_old = Message::SubscriptionTooOld {
            stream_id: 4,
            oldest_available_slot: 8,
            applied_slot: 10,
        };
        let subscribe = |from_slot| Message::Subscribe {
            stream_id: 4,
            from_slot,
        };
        assert_eq!(
            applied_messages(&learner.handle(client, subscribe(7)), client),
            vec![too_old.clone()]
        );
        assert_eq!(learner.subscriber_count(), 0);
        let read = Message::ReadApplied {
            stream_id: 4,
            from_slot: 1,
            limit: 10,
        };
        assert_eq!(
            applied_messages(&learner.handle(client, read), client),
            vec![too_old]
        );
        let effects = learner.handle(client, subscribe(8));
        let [Message::Applied {
            from_slot, to_slot, ..
        }] = applied_messages(&effects, client)[..]
        else {
            panic!("expected one push, got {effects:?}")
        };
        assert_eq!((from_slot, to_slot), (8, 11));
    }

    #[test]
    fn read_applied_answers_at_most_the_limit_and_an_empty_range_past_the_applied_slot() {
        let mut learner = applied_learner(LearnerOptions::new(1, 2), 5);
        let client = NodeId::client(1);
        let read = |from_slot, limit| Message::ReadApplied {
            stream_id: 2,
            from_slot,
            limit,
        };
        assert_eq!(
            applied_messages(&learner.handle(client, read(1, 2)), client),
            vec![Message::Applied {
                stream_id: 2,
                from_slot: 1,
                to_slot: 3,
                slots: vec![applied_write(1, 1), applied_write(2, 1)],
                applied_slot: 5,
            }]
        );
        assert_eq!(
            applied_messages(&learner.handle(client, read(9, 2)), client),
            vec![Message::Applied {
                stream_id: 2,
                from_slot: 9,
                to_slot: 9,
                slots: vec![],
                applied_slot: 5,
            }]
        );
        assert_eq!(
            learner.subscriber_count(),
            0,
            "a read is not a subscription"
        );
    }

    #[test]
    fn the_log_is_compacted_once_it_outgrows_the_history() {
        let mut options = LearnerOptions::new(1, 2);
        options.retain_slots = 4;
        let mut learner = applied_learner(options, 5);
        let compactions: Vec<Effect> = learner
            .tick()
            .into_iter()
            .filter(|effect| matches!(effect, Effect::PersistSnapshot { .. }))
            .collect();
        let [Effect::PersistSnapshot { snapshot, retained }] = &compactions[..] else {
            panic!("expected one compaction, got {compactions:?}")
        };
        assert_eq!(snapshot.applied_slot, 5);
        assert_eq!(snapshot.key_values.len(), 5);
        assert_eq!(
            retained.iter().map(|entry| entry.slot).collect::<Vec<_>>(),
            vec![2, 3, 4, 5],
            "the history goes with the snapshot"
        );
        assert!(
            !learner
                .tick()
                .iter()
                .any(|effect| matches!(effect, Effect::PersistSnapshot { .. })),
            "not again until the log has grown again"
        );
        // The compacted log restores the same learner.
        let restored = Learner::recover_from_snapshot(
            learner.options.clone(),
            Some(snapshot.clone()),
            retained.clone(),
        );
        assert_eq!(restored.applied_slot(), 5);
        assert_eq!(restored.history_start_slot(), 2);
        assert_eq!(restored.value_of("k1"), Some("v1"));
        assert_eq!(restored.snapshot(), learner.snapshot());
    }

    #[test]
    fn a_peer_behind_the_history_gets_a_snapshot_and_continues_after_it() {
        let mut options = LearnerOptions::new(1, 2);
        options.retain_slots = 2;
        let mut ahead = applied_learner(options, 6);
        // A seventh slot is decided at the peer but not applied: slot 8 is missing.
        let nine = write(9, "k9", "v9");
        vote(&mut ahead, 1, 9, Ballot::new(1, 1), &nine);
        vote(&mut ahead, 2, 9, Ballot::new(1, 1), &nine);
        let mut behind = Learner::new(LearnerOptions::new(2, 2));
        let client = NodeId::client(1);
        // A subscriber of the behind learner waits for slot 1: the snapshot skips it.
        behind.handle(
            client,
            Message::Subscribe {
                stream_id: 5,
                from_slot: 1,
            },
        );
        let answer = ahead.handle(
            NodeId::learner(2),
            Message::SyncDecided {
                from_slot: 1,
                limit: 100,
            },
        );
        let messages = applied_messages(&answer, NodeId::learner(2));
        assert!(
            matches!(&messages[..], [Message::Snapshot { snapshot }, Message::Decided { entries, .. }]
                if snapshot.applied_slot == 6 && entries.len() == 1 && entries[0].slot == 9),
            "the state, then the decided slots above it: {messages:?}"
        );
        let mut effects = Vec::new();
        for message in messages {
            effects.extend(behind.handle(NodeId::learner(1), message));
        }
        assert_eq!(behind.applied_slot(), 6);
        assert_eq!(behind.history_start_slot(), 7);
        assert_eq!(behind.value_of("k3"), Some("v3"));
        assert_eq!(behind.snapshot(), ahead.snapshot());
        assert!(effects.iter().any(|effect| matches!(effect,
            Effect::PersistSnapshot { snapshot, retained }
                if snapshot.applied_slot == 6 && retained.is_empty())));
        assert_eq!(
            applied_messages(&effects, client),
            vec![Message::SubscriptionTooOld {
                stream_id: 5,
                oldest_available_slot: 7,
                applied_slot: 6,
            }],
            "the subscriber is told, not skipped past slots 1 to 6"
        );
        // Asked again at once, the peer does not resend the whole state.
        let again = ahead.handle(
            NodeId::learner(2),
            Message::SyncDecided {
                from_slot: 1,
                limit: 100,
            },
        );
        assert!(!applied_messages(&again, NodeId::learner(2))
            .iter()
            .any(|message| matches!(message, Message::Snapshot { .. })));
        // A snapshot no newer than the learner's state is ignored.
        assert!(behind
            .handle(
                NodeId::learner(1),
                Message::Snapshot {
                    snapshot: StateSnapshot {
                        applied_slot: 6,
                        key_values: vec![],
                        applied_request_ids: vec![],
                    }
                }
            )
            .is_empty());
        assert_eq!(behind.value_of("k3"), Some("v3"));
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
