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
//! A peer that needs slots below the history gets the whole state instead, in chunks
//! ([`Message::SnapshotChunk`], see `snapshots`), and the log on disk is compacted the same
//! way: a snapshot file, then the history ([`Effect::Compact`]). The history also serves subscribers: a client API
//! subscribes (`Subscribe`) and is pushed the writes of every slot as it is applied
//! (`Applied`), after those of the retained slots it asked for; a position older than the
//! history is refused explicitly (`SubscriptionTooOld`), never skipped.
//!
//! What a message says is validated before it changes anything (`from` is trusted: the
//! network authenticated it): votes only from acceptors, decided values and snapshots only
//! from learners, slots only in `[1, MAX_PLAUSIBLE_SLOT]`, and a peer's value that
//! contradicts one decided here is refused. Each refusal raises an alarm
//! ([`Learner::alarms`]), the core's only record since it does not log.
//!
//! The [`Learner`] struct, its options, [`Effect`] and the dispatch of messages and ticks
//! live here; each concept of the protocol has its module, each adding to `impl Learner`:
//! - `votes`: counting the acceptors' reports until a quorum decides a slot;
//! - `applied_state`: the key-value map, and applying decided values in slot order;
//! - `reads`: reads at a slot, waiting for it or timing out (`ReadTimedOut`);
//! - `catch_up`: filling gaps from peer learners and acceptors;
//! - `snapshots`: the state frozen at a slot, cut into chunks, sent to and received from
//!   peers;
//! - `subscriptions`: the change feed pushed to client APIs;
//! - `history`: the decided values kept after applying, compaction and recovery of the log.

use common::alarm::{Alarm, Alarms};
use common::ballot::{is_plausible_slot, Slot, MAX_PLAUSIBLE_SLOT};
use common::message::{DecidedEntry, Message, RoleStatus, SnapshotChunk, VersionedValue};
use common::node::{NodeId, Role};
use common::ready::{Core, Destination, Event, Outgoing, Ready};
use common::value::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod applied_state;
mod catch_up;
mod history;
mod reads;
mod snapshots;
mod subscriptions;
#[cfg(test)]
mod test_support;
mod unversioned;
mod votes;

pub use applied_state::EXACTLY_ONCE_WINDOW_COMMANDS;
pub use catch_up::SYNC_BATCH_SLOTS;
pub use history::DEFAULT_RETAIN_SLOTS;
pub use snapshots::{
    FrozenState, KeyValues, SnapshotAssembly, SnapshotChunks, StoredValue, SNAPSHOT_CHUNK_BYTES,
    SNAPSHOT_RESEND_TICKS, SNAPSHOT_TRANSFERS_MAX, SNAPSHOT_TRANSFER_TIMEOUT_TICKS,
    SNAPSHOT_WINDOW_CHUNKS,
};
pub use subscriptions::APPLIED_CHUNK_BYTES;
pub use unversioned::{UnversionedSnapshotChunk, UnversionedStateSnapshot};

use applied_state::AppliedRequests;
use reads::{ParkedRead, Question};
use snapshots::{IncomingSnapshot, OutgoingSnapshot};
use votes::SlotVotes;

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
    /// The longest a record written to the log waits for a sync. Unlike an acceptor's
    /// votes, decided values can be fetched again from acceptors and peers, so the log is
    /// not synced per batch: a crash may lose its last moments, which the learner then
    /// fills like any gap.
    pub log_sync_interval_ticks: u64,
    /// How many of the last applied commands keep their request id, so that a retry is
    /// applied at most once (see [`EXACTLY_ONCE_WINDOW_COMMANDS`]). Every learner of a
    /// cluster must use the same window, or their states could differ: it is not
    /// configurable outside tests.
    pub exactly_once_window_commands: usize,
    /// About how many bytes of keys and values one snapshot chunk holds (on disk and on
    /// the wire); small in tests and the simulation, so that transfers take many chunks.
    pub snapshot_chunk_bytes: usize,
}

impl LearnerOptions {
    /// Options for learner `id` deciding with `quorum_size` votes, other counts at their
    /// defaults (read timeout 300 ticks, progress every 5 ticks, sync after 20 ticks,
    /// [`DEFAULT_RETAIN_SLOTS`] slots of history, a subscriber heartbeat every 50 ticks, the
    /// log synced at most 10 ticks after a write).
    pub fn new(id: u32, quorum_size: usize) -> Self {
        LearnerOptions {
            id,
            quorum_size,
            read_timeout_ticks: 300,
            progress_interval_ticks: 5,
            sync_interval_ticks: 20,
            retain_slots: DEFAULT_RETAIN_SLOTS,
            subscriber_heartbeat_ticks: 50,
            log_sync_interval_ticks: 10,
            exactly_once_window_commands: EXACTLY_ONCE_WINDOW_COMMANDS,
            snapshot_chunk_bytes: SNAPSHOT_CHUNK_BYTES,
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
    /// Compact the log that outgrew the history: write `state` as a snapshot file, then
    /// replace the log by a reference to it followed by `retained` and every slot
    /// persisted since. The log may do it in the background: until it is done it keeps
    /// the old log, which restores the same state, so nothing waits for it.
    Compact {
        /// The state to write, frozen.
        state: FrozenState,
        /// Every decided value the learner holds: its history (slots at or below the
        /// snapshot, kept for peers and subscribers) and decided slots not applied yet.
        retained: Vec<DecidedEntry>,
    },
    /// Write this chunk of a snapshot being received to its file (the first chunk starts
    /// the file), before any later effect.
    PersistSnapshotChunk(SnapshotChunk),
    /// Every chunk of the snapshot at `applied_slot` was written: make its file durable and
    /// replace the log by a reference to it followed by `retained` (before any later
    /// effect), so that the log restores exactly the learner's present state.
    InstallSnapshot {
        /// The snapshot's slot.
        applied_slot: Slot,
        /// Every decided value the learner holds (slots above the snapshot).
        retained: Vec<DecidedEntry>,
    },
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
    /// The replicated state: the result of applying slots `[1, applied_slot]` (a
    /// persistent map, so that a frozen copy for a snapshot costs nothing).
    key_values: KeyValues,
    /// The state was dropped for a snapshot being received: no reads, no applying, no
    /// state sent, until it is installed.
    installing: bool,
    /// Request ids of the last `exactly_once_window_commands` commands applied, with the
    /// slot that applied each, so a retried write applies once and a subscriber is told
    /// which command of a slot took effect.
    applied_requests: AppliedRequests,
    /// Reads waiting for a slot, by the slot they wait for.
    parked_reads: BTreeMap<Slot, Vec<ParkedRead>>,
    /// Consecutive ticks during which `applied_slot` stayed behind `known_slot_max`.
    stalled_ticks: u64,
    /// Each subscription (the client API's node and its stream id) and the next slot
    /// to push to it.
    subscribers: BTreeMap<(NodeId, u64), Slot>,
    /// Decided slots persisted since the log was last replaced by a snapshot.
    persisted_since_compaction: u64,
    /// The tick of the oldest log write not yet synced, if any.
    unsynced_since_tick: Option<u64>,
    /// Every slot `<= durable_slot` is restored by the log as synced (or replaced): what
    /// the leader may trim the acceptors to (`LearnerProgress`).
    durable_slot: Slot,
    /// The highest trim point an acceptor answered with (`Trimmed`).
    acceptors_trimmed_slot: Slot,
    /// How many peers' states this learner installed, and the last one's sender and slot.
    snapshots_installed: u64,
    last_snapshot_installed: Option<(NodeId, Slot)>,
    /// The snapshots being sent, by peer.
    outgoing_snapshots: BTreeMap<NodeId, OutgoingSnapshot>,
    /// For each peer sent a snapshot at slot S, the slot S + 1 that the history keeps until
    /// the peer asked for the slots after it (or the tick after which it gives up): so
    /// that a peer never chases a history that moved on during its transfer.
    history_floors: BTreeMap<NodeId, (Slot, u64)>,
    /// The snapshot being received, if any.
    incoming_snapshot: Option<IncomingSnapshot>,
    /// How many snapshots this learner started sending.
    snapshots_started: u64,
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
                && options.subscriber_heartbeat_ticks >= 1
                && options.exactly_once_window_commands >= 1
                && options.snapshot_chunk_bytes >= 1,
            "tick intervals are at least one tick, the exactly-once window one command, a \
             snapshot chunk one byte: {options:?}"
        );
        let window = options.exactly_once_window_commands;
        Learner {
            options,
            now_tick: 0,
            applied_slot: 0,
            known_slot_max: 0,
            decided: BTreeMap::new(),
            history_start: 1,
            votes: BTreeMap::new(),
            key_values: KeyValues::new(),
            installing: false,
            applied_requests: AppliedRequests::new(window),
            parked_reads: BTreeMap::new(),
            stalled_ticks: 0,
            subscribers: BTreeMap::new(),
            persisted_since_compaction: 0,
            unsynced_since_tick: None,
            durable_slot: 0,
            acceptors_trimmed_slot: 0,
            snapshots_installed: 0,
            last_snapshot_installed: None,
            outgoing_snapshots: BTreeMap::new(),
            history_floors: BTreeMap::new(),
            incoming_snapshot: None,
            snapshots_started: 0,
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
            } => self.on_read(from, read_id, Question::Key(key), min_slot),
            Message::Outcome {
                read_id,
                request_id,
                min_slot,
            } => self.on_read(from, read_id, Question::Outcome(request_id), min_slot),
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
            Message::SnapshotChunk { chunk } => self.on_snapshot_chunk(from, chunk),
            Message::SnapshotRequest => self.on_snapshot_request(from),
            Message::SnapshotAck {
                applied_slot,
                index,
            } => self.on_snapshot_ack(from, applied_slot, index),
            Message::Trimmed { trimmed_slot } => self.on_trimmed(from, trimmed_slot),
            _ => Vec::new(),
        }
    }

    /// The connection to `node` closed: its subscriptions end (a client API that comes
    /// back subscribes again from the slot it needs).
    pub fn on_disconnected(&mut self, node: NodeId) -> Vec<Effect> {
        self.subscribers
            .retain(|(subscriber, _), _| *subscriber != node);
        self.end_snapshot_transfers_with(node);
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
                message: self.progress(),
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
        self.expire_snapshot_transfers(&mut effects);
        self.compact_log(&mut effects);
        effects
    }

    /// A connection to `node` opened: a peer learner or an acceptor is asked for what this
    /// learner may have missed while apart; a proposer hears the applied slot at once.
    pub fn on_connected(&mut self, node: NodeId) -> Vec<Effect> {
        let from_slot = self.applied_slot + 1;
        let message = match node.role {
            Role::Learner => self.sync_from_next_slot(),
            Role::Acceptor => Message::SyncAccepted {
                from_slot,
                to_slot: from_slot + SYNC_BATCH_SLOTS,
            },
            Role::Proposer => self.progress(),
            Role::Client => return Vec::new(),
        };
        vec![Effect::Send { to: node, message }]
    }

    /// How far this learner applied and how far its state is durable.
    fn progress(&self) -> Message {
        Message::LearnerProgress {
            applied_slot: self.applied_slot,
            durable_slot: self.durable_slot,
        }
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

    /// The value of `key` as of `applied_slot()`, if it exists.
    pub fn value_of(&self, key: &str) -> Option<&str> {
        self.key_values.get(key).map(|stored| &*stored.value)
    }

    /// The value of `key` with its revisions, if it exists.
    pub fn versioned_value_of(&self, key: &str) -> Option<VersionedValue> {
        self.key_values.get(key).map(StoredValue::to_versioned)
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
}

impl Learner {
    /// The slot up to which this learner's synced log restores its state.
    pub fn durable_slot(&self) -> Slot {
        self.durable_slot
    }

    /// The highest trim point an acceptor reported: slots at or below it can only come
    /// from a peer learner.
    pub fn acceptors_trimmed_slot(&self) -> Slot {
        self.acceptors_trimmed_slot
    }

    /// How many request ids the exactly-once window holds now.
    pub fn remembered_request_count(&self) -> usize {
        self.applied_requests.len()
    }

    /// How many states sent by peers (`Snapshot`) this learner installed, and the sender
    /// and slot of the last one: for the service's log.
    pub fn snapshots_installed(&self) -> (u64, Option<(NodeId, Slot)>) {
        (self.snapshots_installed, self.last_snapshot_installed)
    }
}

/// One record of the learner's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LearnerRecord {
    /// A slot this learner found decided.
    Decided(DecidedEntry),
    /// The state at a slot, whole: the first record of a log compacted before snapshots
    /// had files of their own (and revisions). Still read; no longer written.
    Snapshot(UnversionedStateSnapshot),
    /// The state at `applied_slot` is in the snapshot file of that slot beside the log: the
    /// first record of a compacted log (or of a log replaced by a peer's snapshot).
    /// Records after it add history and later slots.
    SnapshotFile {
        /// The snapshot's slot.
        applied_slot: Slot,
    },
}

/// What the learner asks its log to do (`Core::Record`): append a record, or handle a
/// snapshot file (see [`Effect`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LearnerWrite {
    /// Append `LearnerRecord::Decided`.
    Decided(DecidedEntry),
    /// See [`Effect::Compact`].
    Compact {
        /// The state to write.
        state: FrozenState,
        /// The decided values the compacted log keeps.
        retained: Vec<DecidedEntry>,
    },
    /// See [`Effect::PersistSnapshotChunk`].
    SnapshotChunk(SnapshotChunk),
    /// See [`Effect::InstallSnapshot`].
    InstallSnapshot {
        /// The snapshot's slot.
        applied_slot: Slot,
        /// The decided values the replaced log keeps.
        retained: Vec<DecidedEntry>,
    },
}

/// The learner under the one contract of every role (see [`common::ready`]): decided slots
/// are appended to the log and reach the operating system before any later message
/// leaves, but are synced only [`LearnerOptions::log_sync_interval_ticks`] after the first
/// of them (a replacement of the log by a snapshot is atomic and durable at once).
impl Core for Learner {
    type Record = LearnerWrite;

    fn on_event(&mut self, event: Event, ready: &mut Ready<LearnerWrite>) {
        let effects = match event {
            Event::Message(from, message) => self.handle(from, message),
            Event::Connected(node) => self.on_connected(node),
            Event::Disconnected(node) => self.on_disconnected(node),
        };
        self.carry_into(effects, ready);
    }

    fn on_tick(&mut self, ready: &mut Ready<LearnerWrite>) {
        let effects = self.tick();
        self.carry_into(effects, ready);
        if self.unsynced_since_tick.is_some_and(|since| {
            self.now_tick.saturating_sub(since) >= self.options.log_sync_interval_ticks
        }) {
            ready.require_sync();
            self.unsynced_since_tick = None;
            // Every applied slot was appended before this sync: durable once it is done.
            // Only progress reports sent after the sync carry it (see `carry_into`).
            self.durable_slot = self.applied_slot;
        }
    }

    fn status(&self) -> RoleStatus {
        Learner::status(self)
    }

    fn alarms(&self) -> Vec<String> {
        Learner::alarms(self)
    }
}

impl Learner {
    /// Adds `effects` to `ready` in their order: a message leaves after the writes before it.
    fn carry_into(&mut self, effects: Vec<Effect>, ready: &mut Ready<LearnerWrite>) {
        for effect in effects {
            match effect {
                Effect::Persist(entry) => {
                    ready.append(LearnerWrite::Decided(entry));
                    self.unsynced_since_tick.get_or_insert(self.now_tick);
                }
                // The old log restores the same state until the compaction is done: nothing
                // durable changes, and nothing waits for it.
                Effect::Compact { state, retained } => {
                    ready.append(LearnerWrite::Compact { state, retained })
                }
                Effect::PersistSnapshotChunk(chunk) => {
                    ready.append(LearnerWrite::SnapshotChunk(chunk))
                }
                Effect::InstallSnapshot {
                    applied_slot,
                    retained,
                } => {
                    // The replacement is durable once written, with everything before it,
                    // before any message leaves.
                    self.durable_slot = self.durable_slot.max(applied_slot);
                    ready.replace(vec![LearnerWrite::InstallSnapshot {
                        applied_slot,
                        retained,
                    }]);
                    self.unsynced_since_tick = None;
                }
                // A durable slot is promised only once the sync that made it so is done:
                // progress reports always wait for the batch's sync.
                Effect::Send {
                    to,
                    message: message @ Message::LearnerProgress { .. },
                } => ready.send_after_persist(to, message),
                Effect::Broadcast {
                    role,
                    message: message @ Message::LearnerProgress { .. },
                } => ready.persisted_messages.push(Outgoing {
                    to: Destination::Role(role),
                    message,
                }),
                Effect::Send { to, message } => {
                    ready.send_after_earlier_writes(Destination::Node(to), message)
                }
                Effect::Broadcast { role, message } => {
                    ready.send_after_earlier_writes(Destination::Role(role), message)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;

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
                Message::SnapshotChunk {
                    chunk: SnapshotChunk {
                        applied_slot: Slot::MAX,
                        index: 0,
                        key_count: 0,
                        request_id_count: 0,
                        key_values: vec![],
                        applied_request_ids: vec![],
                        last: true,
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
}
