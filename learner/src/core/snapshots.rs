//! Snapshots in chunks. The state frozen at a slot ([`FrozenState`]) costs nothing to take:
//! the key-value map and the exactly-once window are persistent structures (`imbl`), so a
//! frozen copy shares everything with the live state and only what changes afterwards is
//! copied (a tree path per write, never the whole state). A frozen state is cut into
//! chunks of about [`LearnerOptions::snapshot_chunk_bytes`] lazily, one at a time
//! ([`SnapshotChunks`]); the same chunks make the snapshot file on disk
//! (`crate::storage`) and travel to a peer (`SnapshotChunk`), so that a state of any size
//! is never one frame, one log record or one buffer.
//!
//! **Sending.** A peer that asks for slots below this learner's history gets its state: a
//! transfer per peer, at most [`SNAPSHOT_WINDOW_CHUNKS`] chunks unacknowledged (and kept
//! for a resend), each acknowledgement (`SnapshotAck`, sent once the receiver wrote the
//! chunk) letting the next leave. One chunk is built per acknowledgement, on the loop,
//! between batches: the loop never stops for the whole state. Without an acknowledgement
//! for [`SNAPSHOT_RESEND_TICKS`] the unacknowledged chunks are sent again (a message may
//! be lost); a transfer that hears nothing for [`SNAPSHOT_TRANSFER_TIMEOUT_TICKS`] is
//! dropped (the peer asks again).
//!
//! **Receiving.** On a transfer's first chunk the receiver drops its own state (it is
//! behind the sender's history anyway, and keeping both would need twice the memory) and
//! serves no read until the new state is complete: reads are answered `ReadTimedOut` at
//! once, so the client API asks another learner. Its log is untouched until then, so a
//! crash restores the old state. Each chunk is validated (its sender, slot, index, totals,
//! keys in order), added to the state being built and written to the snapshot file, then
//! acknowledged; after the last, the file is made durable and the log replaced by a
//! reference to it (`Effect::InstallSnapshot`), and the learner continues from the
//! snapshot's slot. A transfer that stalls is abandoned and another one accepted, from
//! any peer.

use common::ballot::Slot;
use common::message::{
    AppliedRequest, DecidedEntry, Message, SnapshotChunk, StateSnapshot, VersionedValue,
};
use common::node::{NodeId, Role};
use imbl::{OrdMap, Vector};
use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use super::{Effect, Learner};

/// The default of [`super::LearnerOptions::snapshot_chunk_bytes`]: about 1 MiB of keys and
/// values per chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// A sender keeps at most this many chunks of a transfer unacknowledged.
pub const SNAPSHOT_WINDOW_CHUNKS: u32 = 4;

/// A sender that heard no acknowledgement for this many ticks sends the unacknowledged
/// chunks again.
pub const SNAPSHOT_RESEND_TICKS: u64 = 50;

/// A transfer (sending or receiving) that hears nothing for this many ticks is dropped.
pub const SNAPSHOT_TRANSFER_TIMEOUT_TICKS: u64 = 200;

/// A learner sends at most this many snapshots at once; a further peer asks again later.
pub const SNAPSHOT_TRANSFERS_MAX: usize = 4;

/// A chunk counted above this many bytes is refused: an honest one holds about
/// [`SNAPSHOT_CHUNK_BYTES`] plus one key-value pair (a value is at most 1 MiB).
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 64 * 1024 * 1024;

/// What a key-value pair or a request id is counted as in a chunk, besides its text.
const ENTRY_OVERHEAD_BYTES: usize = 16;
const REQUEST_ID_BYTES: usize = 24;

/// The key-value map: a persistent B-tree whose keys and values are shared strings, so
/// that the nodes a write copies while a frozen state shares them hold pointers, never
/// the text.
pub type KeyValues = OrdMap<Arc<str>, StoredValue>;

/// A key's value in the state, with its revisions (see [`VersionedValue`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredValue {
    /// The value, shared with frozen states.
    pub value: Arc<str>,
    /// The slot that created the key.
    pub create_revision: Slot,
    /// The slot that last changed it.
    pub mod_revision: Slot,
    /// Changes since its creation.
    pub version: u64,
}

impl StoredValue {
    /// The value as messages carry it.
    pub fn to_versioned(&self) -> VersionedValue {
        VersionedValue {
            value: self.value.to_string(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }

    fn from_versioned(versioned: &VersionedValue) -> Self {
        StoredValue {
            value: Arc::from(versioned.value.as_str()),
            create_revision: versioned.create_revision,
            mod_revision: versioned.mod_revision,
            version: versioned.version,
        }
    }
}

/// Why `versioned` cannot be a key's value in a state at `applied_slot`, if it cannot:
/// revisions never exceed the state's slot, a key is created before it is changed, and
/// only keys written before revisions were kept (all three 0) have no version.
fn implausible_revisions(versioned: &VersionedValue, applied_slot: Slot) -> Option<String> {
    let VersionedValue {
        create_revision,
        mod_revision,
        version,
        ..
    } = versioned;
    let plausible = create_revision <= mod_revision
        && *mod_revision <= applied_slot
        && (*version == 0) == (*mod_revision == 0);
    (!plausible).then(|| {
        format!(
            "create revision {create_revision}, mod revision {mod_revision} and version \
             {version} cannot describe a key at slot {applied_slot}"
        )
    })
}

/// A chunk's size as the chunker counts it against its budget.
fn counted_bytes(chunk: &SnapshotChunk) -> usize {
    chunk
        .key_values
        .iter()
        .map(|(key, value)| key.len() + value.value.len() + ENTRY_OVERHEAD_BYTES)
        .sum::<usize>()
        + chunk.applied_request_ids.len() * REQUEST_ID_BYTES
}

/// The state at `applied_slot`, frozen: a copy that shares its structure with the live
/// state, so taking it costs nothing and holding it costs only what changes meanwhile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrozenState {
    /// Every slot up to here is folded into the state.
    pub applied_slot: Slot,
    key_values: KeyValues,
    applied_request_ids: Vector<AppliedRequest>,
}

impl FrozenState {
    pub(super) fn new(
        applied_slot: Slot,
        key_values: KeyValues,
        applied_request_ids: Vector<AppliedRequest>,
    ) -> Self {
        FrozenState {
            applied_slot,
            key_values,
            applied_request_ids,
        }
    }

    /// The empty state before slot 1.
    pub fn empty() -> Self {
        FrozenState::new(0, OrdMap::new(), Vector::new())
    }

    /// How many keys the state holds.
    pub fn key_count(&self) -> usize {
        self.key_values.len()
    }

    /// How many request ids its exactly-once window holds.
    pub fn request_id_count(&self) -> usize {
        self.applied_request_ids.len()
    }

    /// The state cut into chunks of about `chunk_bytes` (at least one pair or id each),
    /// built one at a time as they are asked for.
    pub fn chunks(&self, chunk_bytes: usize) -> SnapshotChunks {
        SnapshotChunks {
            state: self.clone(),
            chunk_bytes: chunk_bytes.max(1),
            next_index: 0,
            after_key: None,
            keys_done: self.key_values.is_empty(),
            request_ids_sent: 0,
            done: false,
        }
    }

    /// The whole state as one value: a full copy, for tests and comparisons only.
    pub fn to_snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            applied_slot: self.applied_slot,
            key_values: self
                .key_values
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_versioned()))
                .collect(),
            applied_request_ids: self.applied_request_ids.iter().copied().collect(),
        }
    }

    /// The state a whole snapshot describes (a log written before snapshots had files).
    pub fn from_snapshot(snapshot: StateSnapshot) -> Self {
        FrozenState::new(
            snapshot.applied_slot,
            snapshot
                .key_values
                .into_iter()
                .map(|(key, value)| (Arc::from(key), StoredValue::from_versioned(&value)))
                .collect(),
            snapshot.applied_request_ids.into_iter().collect(),
        )
    }

    pub(super) fn into_parts(self) -> (Slot, KeyValues, Vector<AppliedRequest>) {
        (self.applied_slot, self.key_values, self.applied_request_ids)
    }
}

/// A frozen state's chunks, built lazily: each `next()` costs one chunk's worth of work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunks {
    state: FrozenState,
    chunk_bytes: usize,
    next_index: u32,
    /// The last key sent; the next chunk starts after it.
    after_key: Option<String>,
    keys_done: bool,
    request_ids_sent: usize,
    done: bool,
}

impl SnapshotChunks {
    /// The frozen state's slot.
    pub fn applied_slot(&self) -> Slot {
        self.state.applied_slot
    }
}

impl Iterator for SnapshotChunks {
    type Item = SnapshotChunk;

    fn next(&mut self) -> Option<SnapshotChunk> {
        if self.done {
            return None;
        }
        let mut used_bytes = 0;
        let mut key_values = Vec::new();
        if !self.keys_done {
            let lower = match &self.after_key {
                Some(key) => Bound::Excluded(key.as_str()),
                None => Bound::Unbounded,
            };
            let mut remaining = self
                .state
                .key_values
                .range::<_, str>((lower, Bound::Unbounded))
                .peekable();
            while used_bytes < self.chunk_bytes {
                let Some((key, value)) = remaining.next() else {
                    break;
                };
                used_bytes += key.len() + value.value.len() + ENTRY_OVERHEAD_BYTES;
                key_values.push((key.to_string(), value.to_versioned()));
            }
            self.keys_done = remaining.peek().is_none();
            if let Some((key, _)) = key_values.last() {
                self.after_key = Some(key.clone());
            }
        }
        let mut applied_request_ids = Vec::new();
        let total_ids = self.state.applied_request_ids.len();
        if self.keys_done && used_bytes < self.chunk_bytes && self.request_ids_sent < total_ids {
            let room = (self.chunk_bytes - used_bytes).div_ceil(REQUEST_ID_BYTES);
            let end = (self.request_ids_sent + room).min(total_ids);
            applied_request_ids.extend(
                self.state
                    .applied_request_ids
                    .skip(self.request_ids_sent)
                    .take(end - self.request_ids_sent)
                    .iter()
                    .copied(),
            );
            self.request_ids_sent = end;
        }
        let last = self.keys_done && self.request_ids_sent == total_ids;
        self.done = last;
        let chunk = SnapshotChunk {
            applied_slot: self.state.applied_slot,
            index: self.next_index,
            key_count: self.state.key_values.len() as u64,
            request_id_count: total_ids as u64,
            key_values,
            applied_request_ids,
            last,
        };
        self.next_index += 1;
        Some(chunk)
    }
}

/// A state being rebuilt from its chunks, in order (from a peer, or from the snapshot file
/// at start), each validated before it is taken.
#[derive(Clone, Debug)]
pub struct SnapshotAssembly {
    applied_slot: Slot,
    next_index: u32,
    key_count: u64,
    request_id_count: u64,
    key_values: KeyValues,
    applied_request_ids: Vector<AppliedRequest>,
    last_key: Option<String>,
    complete: bool,
}

impl SnapshotAssembly {
    /// An assembly of the snapshot whose first chunk is `first` (not yet added).
    pub fn new(first: &SnapshotChunk) -> Self {
        SnapshotAssembly {
            applied_slot: first.applied_slot,
            next_index: 0,
            key_count: first.key_count,
            request_id_count: first.request_id_count,
            key_values: OrdMap::new(),
            applied_request_ids: Vector::new(),
            last_key: None,
            complete: false,
        }
    }

    /// The snapshot's slot.
    pub fn applied_slot(&self) -> Slot {
        self.applied_slot
    }

    /// The index the next chunk must have.
    pub fn next_index(&self) -> u32 {
        self.next_index
    }

    /// Whether the last chunk was added.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Adds the next chunk, or says why it does not continue this snapshot (nothing
    /// changes then).
    pub fn add(&mut self, chunk: &SnapshotChunk) -> Result<(), String> {
        if self.complete {
            return Err("the snapshot is already complete".into());
        }
        if chunk.applied_slot != self.applied_slot || chunk.index != self.next_index {
            return Err(format!(
                "chunk {} of the snapshot at slot {} where chunk {} at slot {} was expected",
                chunk.index, chunk.applied_slot, self.next_index, self.applied_slot
            ));
        }
        if chunk.key_count != self.key_count || chunk.request_id_count != self.request_id_count {
            return Err(format!(
                "chunk {} announces {} keys and {} request ids where the first announced {} \
                 and {}",
                chunk.index,
                chunk.key_count,
                chunk.request_id_count,
                self.key_count,
                self.request_id_count
            ));
        }
        let keys = self.key_values.len() as u64 + chunk.key_values.len() as u64;
        let ids = self.applied_request_ids.len() as u64 + chunk.applied_request_ids.len() as u64;
        if keys > self.key_count || ids > self.request_id_count {
            return Err(format!(
                "chunk {} brings {keys} keys and {ids} request ids, more than the {} and {} \
                 announced",
                chunk.index, self.key_count, self.request_id_count
            ));
        }
        if !chunk.key_values.is_empty() && !self.applied_request_ids.is_empty() {
            return Err(format!(
                "chunk {} brings keys after request ids",
                chunk.index
            ));
        }
        let mut previous = self.last_key.as_deref();
        for (key, value) in &chunk.key_values {
            if previous.is_some_and(|previous| previous >= key.as_str()) {
                return Err(format!(
                    "chunk {} holds keys out of order or twice",
                    chunk.index
                ));
            }
            if let Some(reason) = implausible_revisions(value, self.applied_slot) {
                return Err(format!("chunk {} gives key {key:?} {reason}", chunk.index));
            }
            previous = Some(key);
        }
        if let Some(request) = chunk
            .applied_request_ids
            .iter()
            .find(|request| request.slot > self.applied_slot)
        {
            return Err(format!(
                "chunk {} says request {} was applied at slot {}, after the snapshot's slot {}",
                chunk.index, request.request_id, request.slot, self.applied_slot
            ));
        }
        if chunk.last && (keys != self.key_count || ids != self.request_id_count) {
            return Err(format!(
                "the last chunk ({}) leaves {keys} keys and {ids} request ids of the {} and {} \
                 announced",
                chunk.index, self.key_count, self.request_id_count
            ));
        }
        for (key, value) in &chunk.key_values {
            self.key_values
                .insert(Arc::from(key.as_str()), StoredValue::from_versioned(value));
        }
        if let Some((key, _)) = chunk.key_values.last() {
            self.last_key = Some(key.clone());
        }
        self.applied_request_ids
            .extend(chunk.applied_request_ids.iter().copied());
        self.next_index += 1;
        self.complete = chunk.last;
        Ok(())
    }

    /// The state, once complete.
    pub fn finish(self) -> FrozenState {
        assert!(self.complete, "only a complete snapshot is a state");
        FrozenState::new(self.applied_slot, self.key_values, self.applied_request_ids)
    }
}

/// A snapshot this learner sends to a peer.
#[derive(Clone, Debug)]
pub(super) struct OutgoingSnapshot {
    chunks: SnapshotChunks,
    /// The chunks sent and not acknowledged yet, in order (kept to be sent again).
    unacknowledged: VecDeque<SnapshotChunk>,
    /// Whether the last chunk was built.
    all_built: bool,
    /// When the peer was last heard of (or the transfer started).
    heard_at_tick: u64,
    /// When chunks were last sent.
    sent_at_tick: u64,
}

/// A snapshot this learner receives.
#[derive(Clone, Debug)]
pub(super) struct IncomingSnapshot {
    from: NodeId,
    assembly: SnapshotAssembly,
    heard_at_tick: u64,
}

impl Learner {
    /// The state as of `applied_slot()`, frozen (a copy that costs nothing).
    pub fn freeze(&self) -> FrozenState {
        FrozenState::new(
            self.applied_slot,
            self.key_values.clone(),
            self.applied_requests.in_applied_order(),
        )
    }

    /// The state as of `applied_slot()` as one value: a full copy, for tests and
    /// comparisons (the service never takes it).
    pub fn snapshot(&self) -> StateSnapshot {
        self.freeze().to_snapshot()
    }

    /// Whether this learner dropped its state for a snapshot it has not completely received
    /// yet: it then serves no reads and sends no state.
    pub fn is_installing_snapshot(&self) -> bool {
        self.installing
    }

    /// Starts sending this learner's state to `peer` (over again if a transfer to it went
    /// silent), unless it sends too many snapshots or has no state.
    pub(super) fn start_sending_snapshot(&mut self, peer: NodeId) -> Vec<Effect> {
        // A peer that asks while a transfer to it is under way lost it (it asks no peer
        // while it receives one), unless the request is an old one that arrived late: a
        // transfer the peer acknowledged lately goes on, a silent one starts over.
        if let Some(transfer) = self.outgoing_snapshots.get(&peer) {
            if self.now_tick < transfer.heard_at_tick + SNAPSHOT_RESEND_TICKS {
                return Vec::new();
            }
            self.outgoing_snapshots.remove(&peer);
        }
        if self.installing || self.outgoing_snapshots.len() >= SNAPSHOT_TRANSFERS_MAX {
            return Vec::new();
        }
        let chunks = self.freeze().chunks(self.options.snapshot_chunk_bytes);
        // The slots after the snapshot stay in the history until the peer asked for them.
        self.history_floors
            .insert(peer, (chunks.applied_slot() + 1, u64::MAX));
        self.outgoing_snapshots.insert(
            peer,
            OutgoingSnapshot {
                chunks,
                unacknowledged: VecDeque::new(),
                all_built: false,
                heard_at_tick: self.now_tick,
                sent_at_tick: self.now_tick,
            },
        );
        self.snapshots_started += 1;
        let mut effects = Vec::new();
        self.send_snapshot_window(peer, &mut effects);
        effects
    }

    /// Sends the chunks the window allows.
    fn send_snapshot_window(&mut self, peer: NodeId, effects: &mut Vec<Effect>) {
        let now_tick = self.now_tick;
        let Some(transfer) = self.outgoing_snapshots.get_mut(&peer) else {
            return;
        };
        while !transfer.all_built && transfer.unacknowledged.len() < SNAPSHOT_WINDOW_CHUNKS as usize
        {
            let Some(chunk) = transfer.chunks.next() else {
                break;
            };
            transfer.all_built = chunk.last;
            transfer.sent_at_tick = now_tick;
            transfer.unacknowledged.push_back(chunk.clone());
            effects.push(Effect::Send {
                to: peer,
                message: Message::SnapshotChunk { chunk },
            });
        }
    }

    pub(super) fn on_snapshot_ack(
        &mut self,
        from: NodeId,
        applied_slot: Slot,
        index: u32,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let now_tick = self.now_tick;
        let Some(transfer) = self.outgoing_snapshots.get_mut(&from) else {
            return effects; // late, or from a transfer dropped meanwhile
        };
        let sent = transfer
            .unacknowledged
            .back()
            .is_some_and(|newest| index <= newest.index);
        if transfer.chunks.applied_slot() != applied_slot || !sent {
            return effects; // of another transfer, or of a chunk not in flight
        }
        let advances = transfer
            .unacknowledged
            .front()
            .is_some_and(|oldest| oldest.index <= index);
        if !advances {
            // The receiver acknowledged again what it had: a chunk after a lost one
            // arrived. The lost one goes again at once (once per tick at most, so that
            // duplicates cannot make the two ends echo each other).
            if transfer.sent_at_tick != now_tick {
                transfer.sent_at_tick = now_tick;
                let oldest = transfer.unacknowledged.front().expect("not empty").clone();
                effects.push(Effect::Send {
                    to: from,
                    message: Message::SnapshotChunk { chunk: oldest },
                });
            }
            return effects;
        }
        while transfer
            .unacknowledged
            .front()
            .is_some_and(|oldest| oldest.index <= index)
        {
            transfer.unacknowledged.pop_front();
        }
        transfer.heard_at_tick = now_tick;
        if transfer.all_built && transfer.unacknowledged.is_empty() {
            self.outgoing_snapshots.remove(&from);
            // Done: the history floor waits a while for the peer's next question.
            if let Some((_, until)) = self.history_floors.get_mut(&from) {
                *until = now_tick + SNAPSHOT_TRANSFER_TIMEOUT_TICKS;
            }
            return effects;
        }
        self.send_snapshot_window(from, &mut effects);
        effects
    }

    pub(super) fn on_snapshot_chunk(&mut self, from: NodeId, chunk: SnapshotChunk) -> Vec<Effect> {
        if from.role != Role::Learner {
            self.raise_alarm(format!("{from} sent a SnapshotChunk: ignored"));
            return Vec::new();
        }
        if !self.plausible_slot_from(from, "SnapshotChunk", chunk.applied_slot) {
            return Vec::new();
        }
        let chunk_bytes = counted_bytes(&chunk);
        if chunk_bytes > SNAPSHOT_CHUNK_BYTES_MAX {
            self.raise_alarm(format!(
                "{from} sent a snapshot chunk of {chunk_bytes} bytes, above \
                 {SNAPSHOT_CHUNK_BYTES_MAX}: ignored"
            ));
            return Vec::new();
        }
        let receiving = self
            .incoming_snapshot
            .as_ref()
            .map(|incoming| (incoming.from, incoming.assembly.applied_slot()));
        if receiving != Some((from, chunk.applied_slot)) {
            // A sender runs one transfer per peer: a new one from the same sender means it
            // gave the old one up.
            let stalled = self.incoming_snapshot.as_ref().is_none_or(|incoming| {
                incoming.from == from
                    || self.now_tick >= incoming.heard_at_tick + SNAPSHOT_TRANSFER_TIMEOUT_TICKS
            });
            if chunk.index != 0 || chunk.applied_slot <= self.applied_slot || !stalled {
                return Vec::new(); // no use, or another transfer is on its way
            }
        }
        if chunk.index == 0 {
            // A new transfer, or the sender started over: so does this learner.
            self.incoming_snapshot = Some(IncomingSnapshot {
                from,
                assembly: SnapshotAssembly::new(&chunk),
                heard_at_tick: self.now_tick,
            });
        }
        let incoming = self.incoming_snapshot.as_mut().expect("set above");
        if chunk.index != incoming.assembly.next_index() {
            // A duplicate (its acknowledgement was lost) or a chunk after a lost one:
            // acknowledge what arrived, and the sender resends what follows.
            return match incoming.assembly.next_index() {
                0 => Vec::new(),
                next_index => vec![Effect::Send {
                    to: from,
                    message: Message::SnapshotAck {
                        applied_slot: chunk.applied_slot,
                        index: next_index - 1,
                    },
                }],
            };
        }
        if let Err(problem) = incoming.assembly.add(&chunk) {
            self.incoming_snapshot = None;
            self.raise_alarm(format!("{from} sent a faulty snapshot: {problem}; dropped"));
            return Vec::new();
        }
        incoming.heard_at_tick = self.now_tick;
        let complete = incoming.assembly.is_complete();
        let mut effects = Vec::new();
        if chunk.index == 0 {
            self.drop_state_for_snapshot(&mut effects);
        }
        let (applied_slot, index) = (chunk.applied_slot, chunk.index);
        effects.push(Effect::PersistSnapshotChunk(chunk));
        if complete {
            self.install_received_snapshot(&mut effects);
        }
        effects.push(Effect::Send {
            to: from,
            message: Message::SnapshotAck {
                applied_slot,
                index,
            },
        });
        if complete {
            // What follows the snapshot comes from the same peer, at once.
            effects.push(Effect::Send {
                to: from,
                message: self.sync_from_next_slot(),
            });
        }
        effects
    }

    /// The first chunk of a newer state arrived: the state held until now goes, so that the
    /// two never take memory together. The log still restores it after a crash.
    fn drop_state_for_snapshot(&mut self, effects: &mut Vec<Effect>) {
        if self.installing {
            return;
        }
        self.installing = true;
        self.key_values = KeyValues::new();
        self.applied_requests.clear();
        // Nothing to read any more: waiting reads try another learner at once.
        for read in std::mem::take(&mut self.parked_reads)
            .into_values()
            .flatten()
        {
            effects.push(read.timed_out(self.applied_slot));
        }
    }

    /// Every chunk arrived: the received state becomes this learner's.
    fn install_received_snapshot(&mut self, effects: &mut Vec<Effect>) {
        let incoming = self.incoming_snapshot.take().expect("a complete snapshot");
        let state = incoming.assembly.finish();
        let snapshot_slot = state.applied_slot;
        let stranded: Vec<(NodeId, u64)> = self
            .subscribers
            .iter()
            .filter(|(_, next_slot)| **next_slot <= snapshot_slot)
            .map(|(subscription, _)| *subscription)
            .collect();
        self.install_state(state);
        self.installing = false;
        self.snapshots_installed += 1;
        self.last_snapshot_installed = Some((incoming.from, snapshot_slot));
        for (subscriber, stream_id) in stranded {
            self.subscribers.remove(&(subscriber, stream_id));
            effects.push(self.too_old(subscriber, stream_id));
        }
        effects.push(Effect::InstallSnapshot {
            applied_slot: snapshot_slot,
            retained: self.retained_entries(),
        });
        self.persisted_since_compaction = 0;
        self.apply_contiguous(effects);
    }

    /// Drops the transfers that heard nothing for too long (and the history floors they
    /// left); sends again the chunks not acknowledged for a while.
    pub(super) fn expire_snapshot_transfers(&mut self, effects: &mut Vec<Effect>) {
        let now_tick = self.now_tick;
        self.outgoing_snapshots.retain(|_, transfer| {
            now_tick < transfer.heard_at_tick + SNAPSHOT_TRANSFER_TIMEOUT_TICKS
        });
        let sending = &self.outgoing_snapshots;
        self.history_floors
            .retain(|peer, (_, until)| sending.contains_key(peer) || now_tick < *until);
        for (peer, transfer) in &mut self.outgoing_snapshots {
            if now_tick < transfer.sent_at_tick.max(transfer.heard_at_tick) + SNAPSHOT_RESEND_TICKS
            {
                continue;
            }
            transfer.sent_at_tick = now_tick;
            for chunk in &transfer.unacknowledged {
                effects.push(Effect::Send {
                    to: *peer,
                    message: Message::SnapshotChunk {
                        chunk: chunk.clone(),
                    },
                });
            }
        }
        if self.incoming_snapshot.as_ref().is_some_and(|incoming| {
            now_tick >= incoming.heard_at_tick + SNAPSHOT_TRANSFER_TIMEOUT_TICKS
        }) {
            self.incoming_snapshot = None;
        }
    }

    /// The connection to `node` closed: transfers to and from it end.
    pub(super) fn end_snapshot_transfers_with(&mut self, node: NodeId) {
        self.outgoing_snapshots.remove(&node);
        self.history_floors.remove(&node);
        if self
            .incoming_snapshot
            .as_ref()
            .is_some_and(|incoming| incoming.from == node)
        {
            self.incoming_snapshot = None;
        }
    }

    /// A peer without a state asks for one: it gets this learner's, whatever its history.
    pub(super) fn on_snapshot_request(&mut self, from: NodeId) -> Vec<Effect> {
        if from.role != Role::Learner {
            self.raise_alarm(format!("{from} sent a SnapshotRequest: ignored"));
            return Vec::new();
        }
        self.start_sending_snapshot(from)
    }

    /// The lowest slot the history must keep for peers that received (or receive) a
    /// snapshot and will ask for the slots after it.
    pub(super) fn history_floor(&self) -> Option<Slot> {
        self.history_floors.values().map(|(floor, _)| *floor).min()
    }

    /// `peer` asked for the slots from `from_slot`: a floor kept for it is no longer
    /// needed once that is at or above it.
    pub(super) fn release_history_floor(&mut self, peer: NodeId, from_slot: Slot) {
        if self.history_floors.get(&peer).is_some_and(|(floor, _)| {
            from_slot >= *floor && !self.outgoing_snapshots.contains_key(&peer)
        }) {
            self.history_floors.remove(&peer);
        }
    }

    /// Whether a snapshot is arriving (heard of within the timeout): the learner then asks
    /// its peers for nothing, since a peer that is asked restarts its transfer.
    pub(super) fn is_receiving_snapshot(&self) -> bool {
        self.incoming_snapshot.as_ref().is_some_and(|incoming| {
            self.now_tick < incoming.heard_at_tick + SNAPSHOT_TRANSFER_TIMEOUT_TICKS
        })
    }

    /// How many snapshots this learner started sending, and how many it sends now.
    pub fn snapshots_sent(&self) -> (u64, usize) {
        (self.snapshots_started, self.outgoing_snapshots.len())
    }

    /// Every decided value held, in slot order, as a compacted log keeps it.
    pub(super) fn retained_entries(&self) -> Vec<DecidedEntry> {
        self.decided
            .iter()
            .map(|(slot, value)| DecidedEntry {
                slot: *slot,
                value: value.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::value::RequestId;

    fn stored(value: &str, slot: Slot) -> StoredValue {
        StoredValue {
            value: Arc::from(value),
            create_revision: slot.min(1),
            mod_revision: slot,
            version: slot.min(3),
        }
    }

    fn state(keys: usize, ids: usize) -> FrozenState {
        FrozenState::new(
            9,
            (0..keys)
                .map(|index| {
                    (
                        Arc::from(format!("key{index:04}")),
                        stored(&"v".repeat(index % 7), (index % 10) as Slot),
                    )
                })
                .collect(),
            (0..ids)
                .map(|index| AppliedRequest {
                    request_id: RequestId(index as u128),
                    slot: (index % 10) as Slot,
                    fingerprint: index as u64,
                })
                .collect(),
        )
    }

    #[test]
    fn chunks_rebuild_the_state_whatever_the_chunk_size() {
        for (keys, ids) in [(0, 0), (1, 0), (0, 3), (100, 50), (37, 1)] {
            let state = state(keys, ids);
            for chunk_bytes in [1, 20, 64, 1000, SNAPSHOT_CHUNK_BYTES] {
                let chunks: Vec<SnapshotChunk> = state.chunks(chunk_bytes).collect();
                assert!(chunks.last().unwrap().last);
                assert_eq!(chunks.iter().filter(|chunk| chunk.last).count(), 1);
                if chunk_bytes == 1 {
                    assert_eq!(chunks.len(), (keys + ids).max(1), "one entry per chunk");
                }
                let mut assembly = SnapshotAssembly::new(&chunks[0]);
                for chunk in &chunks {
                    assembly.add(chunk).unwrap();
                }
                assert_eq!(
                    assembly.finish(),
                    state,
                    "{keys} keys, {ids} ids, {chunk_bytes} B"
                );
            }
        }
    }

    #[test]
    fn chunks_stay_near_their_size() {
        let state = state(5000, 5000);
        for chunk in state.chunks(4096) {
            let bytes = counted_bytes(&chunk);
            assert!(bytes < 4096 + 64, "a chunk of {bytes} bytes");
        }
    }

    #[test]
    fn an_assembly_refuses_chunks_out_of_order_twice_or_beyond_the_totals() {
        let state = state(10, 4);
        let chunks: Vec<SnapshotChunk> = state.chunks(40).collect();
        assert!(chunks.len() > 3);
        let mut assembly = SnapshotAssembly::new(&chunks[0]);
        assert!(assembly.add(&chunks[1]).is_err(), "out of order");
        assembly.add(&chunks[0]).unwrap();
        assert!(assembly.add(&chunks[0]).is_err(), "twice");
        let mut lying = chunks[1].clone();
        lying.key_count += 1;
        assert!(assembly.add(&lying).is_err(), "totals differ");
        let mut unordered = chunks[1].clone();
        unordered.key_values.reverse();
        if unordered.key_values.len() > 1 {
            assert!(assembly.add(&unordered).is_err(), "keys out of order");
        }
        let mut early_end = chunks[1].clone();
        early_end.last = true;
        assert!(
            assembly.add(&early_end).is_err(),
            "ends short of the totals"
        );
        let mut repeated_key = chunks[1].clone();
        repeated_key.key_values[0] = chunks[0].key_values.last().unwrap().clone();
        assert!(assembly.add(&repeated_key).is_err(), "a key sent twice");
        let mut future = chunks[1].clone();
        future.key_values[0].1.mod_revision = 10;
        assert!(assembly.add(&future).is_err(), "changed after the snapshot");
        let mut uncreated = chunks[1].clone();
        uncreated.key_values[0].1.create_revision = 8;
        uncreated.key_values[0].1.mod_revision = 7;
        assert!(assembly.add(&uncreated).is_err(), "changed before created");
        let mut unversioned = chunks[1].clone();
        unversioned.key_values[0].1.version = 0;
        unversioned.key_values[0].1.mod_revision = 4;
        assert!(
            assembly.add(&unversioned).is_err(),
            "changed without a version"
        );
        for chunk in &chunks[1..] {
            assembly.add(chunk).unwrap();
        }
        assert_eq!(assembly.finish(), state, "refusals changed nothing");
    }

    #[test]
    fn a_frozen_state_does_not_see_later_writes() {
        let mut live: KeyValues = (0..100)
            .map(|i| (Arc::from(i.to_string()), stored("a", 1)))
            .collect();
        let frozen = FrozenState::new(1, live.clone(), Vector::new());
        live.insert(Arc::from("5"), stored("changed", 2));
        live.insert(Arc::from("new"), stored("b", 2));
        let chunks: Vec<SnapshotChunk> = frozen.chunks(64).collect();
        let pairs: Vec<(String, VersionedValue)> = chunks
            .into_iter()
            .flat_map(|chunk| chunk.key_values)
            .collect();
        assert_eq!(pairs.len(), 100);
        assert!(pairs
            .iter()
            .all(|(_, value)| value.value == "a" && value.mod_revision == 1));
    }
}
