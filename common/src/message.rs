//! Every message nodes exchange, in the paper's words.
//!
//! | message | sender -> receiver | effect |
//! |---|---|---|
//! | `Prepare` / `Promise` / `Rejected` | proposer -> acceptor -> proposer | phase 1 |
//! | `Accept` / `Accepted` / `Rejected` | proposer -> acceptor -> proposer | phase 2 |
//! | `AcceptedValues` | acceptor -> learners | votes the learners count to decide a slot |
//! | `Confirm` / `Confirmed` | leader -> acceptor -> leader | proves leadership for strong reads |
//! | `Heartbeat` | leader -> proposers, learners | keeps followers from starting elections |
//! | `Write` / `WriteDecided` / `WriteRefused` | client -> proposer -> client | a client write |
//! | `ReadIndex` / `ReadIndexGranted` / `ReadIndexRefused` | client -> leader -> client | the slot a strong read must wait for |
//! | `Read` / `ReadReply` / `ReadTimedOut` | client -> learner -> client | reads the key-value state |
//! | `Outcome` / `OutcomeReply` / `ReadTimedOut` | client -> learner -> client | what a decided command did: the revision it took effect at, or that its request id was taken by another command |
//! | `SyncDecided` / `Decided` | learner -> learner -> learner | gap filling between learners |
//! | `SyncAccepted` | learner -> acceptor | asks for `AcceptedValues` from a slot on |
//! | `LearnerProgress` | learner -> proposers | the applied and durable slots, so a new leader knows what is decided and the leader where to trim |
//! | `Trim` / `Trimmed` | leader -> acceptors; acceptor -> proposer or learner | acceptors forget slots held durably by enough learners; asked for one, they say so |
//! | `StatusRequest` / `StatusReply` | client -> any node -> client | the `/status` page |
//! | `Subscribe` / `Unsubscribe` / `Applied` / `SubscriptionTooOld` | client -> learner -> client | the writes each applied slot made, pushed for change notifications |
//! | `ReadApplied` / `Applied` | client -> learner -> client | the writes of past slots, fetched once |
//! | `SnapshotChunk` / `SnapshotAck` | learner -> learner -> learner | the state at a slot, in chunks each acknowledged, for a peer behind what the sender retains |
//! | `SnapshotRequest` | learner -> learner | a learner without a state (its transfer failed) asks for one |
//!
//! The sender of a message is known from the connection it arrived on (see `Hello`), so
//! messages do not repeat it.

use crate::ballot::{Ballot, Slot};
use crate::node::NodeId;
use crate::value::{Command, RequestId, Value};
use serde::{Deserialize, Serialize};

/// What an acceptor accepted for one slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedEntry {
    /// The slot.
    pub slot: Slot,
    /// The ballot under which the value was accepted.
    pub ballot: Ballot,
    /// The value accepted.
    pub value: Value,
}

/// A decided slot and its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedEntry {
    /// The slot.
    pub slot: Slot,
    /// The value chosen for it.
    pub value: Value,
}

/// A message between two nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The first frame each side sends on a new connection: who it is.
    Hello {
        /// The sending node.
        node: NodeId,
    },

    /// Phase 1a: "promise to ignore ballots below `ballot`, and tell me what you accepted
    /// in slots `[from_slot, ∞)`".
    Prepare {
        /// The proposer's new ballot.
        ballot: Ballot,
        /// The first slot the proposer does not already know to be decided.
        from_slot: Slot,
    },
    /// Phase 1b: the acceptor promised `ballot` (durably, before sending this).
    ///
    /// Paged: one Promise carries at most `PAGE_BYTES_MAX` (`common::value`) of values. A candidate that
    /// gets `next_from_slot: Some(slot)` asks the same acceptor again with a Prepare of the
    /// same ballot from `slot`; the acceptor's report is complete with the page that says
    /// `None`. Nothing below the ballot can change the slots between two pages: the
    /// acceptor promised the ballot, and the candidate proposes nothing before it leads.
    Promise {
        /// The ballot promised.
        ballot: Ballot,
        /// What the acceptor accepted in the slots of this page, in slot order.
        accepted: Vec<AcceptedEntry>,
        /// Every slot `<= trimmed_slot` is decided and held durably by enough learners:
        /// the acceptor forgot it (see `Trim`), and a new leader must not propose there.
        trimmed_slot: Slot,
        /// Where the next page starts, if the report goes on.
        next_from_slot: Option<Slot>,
    },
    /// Phase 2a: "accept `value` in `slot` under `ballot`".
    Accept {
        /// The leader's ballot.
        ballot: Ballot,
        /// The slot.
        slot: Slot,
        /// The proposed value.
        value: Value,
    },
    /// Phase 2b, to the proposer: the acceptor accepted (durably) `slot` under `ballot`.
    Accepted {
        /// The ballot accepted.
        ballot: Ballot,
        /// The slot.
        slot: Slot,
    },
    /// The acceptor refused a `Prepare`, `Accept` or `Confirm` for `ballot` because it has
    /// promised the higher ballot `promised`.
    Rejected {
        /// The refused ballot.
        ballot: Ballot,
        /// The ballot the acceptor has promised.
        promised: Ballot,
    },
    /// Phase 2b, to the learners: values the acceptor accepted (durably). Also the answer
    /// to `SyncAccepted`.
    AcceptedValues {
        /// The accepted slots.
        entries: Vec<AcceptedEntry>,
    },
    /// The leader tells the acceptors that every slot `<= trimmed_slot` is decided and
    /// held in the durable state of enough learners (see docs/PROTOCOL.md, "Trimming"):
    /// they persist the trim point, then forget those slots.
    Trim {
        /// The highest slot the acceptors may forget.
        trimmed_slot: Slot,
    },
    /// An acceptor's answer to an Accept or a SyncAccepted of slots it forgot: every slot
    /// `<= trimmed_slot` is decided and must be learned from a learner (a snapshot).
    Trimmed {
        /// The acceptor's trim point.
        trimmed_slot: Slot,
    },
    /// The acceptor cannot make a vote durable now (its log reached its quota, or its disk
    /// is full): it accepted nothing for `slot`. The leader refuses new writes while too
    /// few acceptors have space for a quorum.
    NoSpace {
        /// The Accept's ballot.
        ballot: Ballot,
        /// The slot not accepted.
        slot: Slot,
    },
    /// A learner asks an acceptor for what it accepted in `[from_slot, to_slot)`.
    SyncAccepted {
        /// First slot wanted.
        from_slot: Slot,
        /// One past the last slot wanted.
        to_slot: Slot,
    },

    /// The leader asks an acceptor whether it still promised nothing above `ballot`.
    Confirm {
        /// The leader's ballot.
        ballot: Ballot,
        /// Matches the answer to the round that asked.
        sequence: u64,
    },
    /// The acceptor had promised exactly `ballot` when `Confirm` arrived.
    Confirmed {
        /// The leader's ballot.
        ballot: Ballot,
        /// The round being answered.
        sequence: u64,
    },

    /// The leader is alive and leads with `ballot`.
    Heartbeat {
        /// The leader's ballot.
        ballot: Ballot,
        /// The highest slot the leader knows to be decided.
        decided_slot_max: Slot,
    },

    /// A client write, sent to a proposer; a follower forwards it to the leader.
    Write {
        /// What to write.
        command: Command,
        /// The client API node waiting for the answer.
        client: NodeId,
    },
    /// The write was decided in `slot`.
    WriteDecided {
        /// Which write.
        request_id: RequestId,
        /// The slot that holds it.
        slot: Slot,
        /// The client API node waiting for the answer.
        client: NodeId,
    },
    /// The proposer cannot place the write now (it does not lead, or lost leadership
    /// while the write was in flight). The outcome of an in-flight write is then unknown:
    /// the client retries with the same request id, which learners apply at most once.
    WriteRefused {
        /// Which write.
        request_id: RequestId,
        /// The proposer believed to lead, if any.
        leader_hint: Option<u32>,
        /// The client API node waiting for the answer.
        client: NodeId,
    },

    /// The write was placed in no slot and will not be, for `reason` (too few acceptors
    /// have space for a quorum): a definite failure, unlike `WriteRefused`.
    WriteFailed {
        /// Which write.
        request_id: RequestId,
        /// Why, for the client's 503 answer.
        reason: String,
        /// The client API node waiting for the answer.
        client: NodeId,
    },

    /// A client asks the leader for the slot a linearizable read must wait for.
    ReadIndex {
        /// Matches the answer.
        read_id: u64,
    },
    /// A quorum of acceptors confirmed the leader after the request arrived: every write
    /// completed before then lies in a slot `<= slot`.
    ReadIndexGranted {
        /// Which request.
        read_id: u64,
        /// Read from a learner that applied at least this slot.
        slot: Slot,
    },
    /// The proposer does not lead (or lost leadership before confirming).
    ReadIndexRefused {
        /// Which request.
        read_id: u64,
        /// The proposer believed to lead, if any.
        leader_hint: Option<u32>,
    },

    /// A client reads `key` from a learner once the learner has applied `min_slot`.
    Read {
        /// Matches the answer.
        read_id: u64,
        /// The key.
        key: String,
        /// Wait until at least this slot is applied (0: answer at once).
        min_slot: Slot,
    },
    /// The value of the key (None for a key that does not exist) as of `applied_slot`,
    /// which is the revision of the state read.
    ReadReply {
        /// Which read.
        read_id: u64,
        /// The value with its revisions, if the key exists.
        value: Option<VersionedValue>,
        /// The slot the learner had applied when it answered.
        applied_slot: Slot,
    },
    /// The learner did not reach `min_slot` in time.
    ReadTimedOut {
        /// Which read.
        read_id: u64,
        /// The slot the learner had applied.
        applied_slot: Slot,
    },

    /// A learner asks a peer for decided values from `from_slot` on.
    SyncDecided {
        /// First slot wanted.
        from_slot: Slot,
        /// At most this many entries.
        limit: u32,
    },
    /// Decided values, in slot order, and the sender's applied slot.
    Decided {
        /// Decided slots.
        entries: Vec<DecidedEntry>,
        /// The slot the sender has applied.
        applied_slot: Slot,
    },
    /// A learner tells proposers how far it has applied, and how far its state is
    /// durable (the leader's trim point follows the learners' durable slots).
    LearnerProgress {
        /// All slots `<= applied_slot` are decided and applied.
        applied_slot: Slot,
        /// The learner's synced log restores every slot `<= durable_slot` after a crash.
        durable_slot: Slot,
    },

    /// Asks any node for its state.
    StatusRequest {
        /// Matches the answer.
        request_id: u64,
    },
    /// A node's state.
    StatusReply {
        /// Which request.
        request_id: u64,
        /// The node's report.
        status: NodeStatus,
    },

    /// A client API asks a learner to push, as `Applied` messages, the writes of every slot
    /// it applies from `from_slot` on (0: from the next slot it applies). Slots it already
    /// applied and still retains are pushed at once; older ones get `SubscriptionTooOld`.
    Subscribe {
        /// Chosen by the subscriber; names the stream in the answers.
        stream_id: u64,
        /// The first slot wanted (0: whatever the learner applies next).
        from_slot: Slot,
    },
    /// Stops the pushes of `stream_id`.
    Unsubscribe {
        /// The stream to stop.
        stream_id: u64,
    },
    /// A client API asks a learner for the writes it applied in at most `limit` slots from
    /// `from_slot` on, once (catch-up of one subscriber). Answered with `Applied` or
    /// `SubscriptionTooOld`.
    ReadApplied {
        /// Chosen by the asker; names the answer.
        stream_id: u64,
        /// The first slot wanted (at least 1).
        from_slot: Slot,
        /// At most this many slots.
        limit: u32,
    },
    /// The writes a learner applied in the slots `[from_slot, to_slot)`, every one of them:
    /// slots that are absent from `slots` applied no write (no-ops, retried requests).
    /// An empty range is a heartbeat and names the position: the next push starts at
    /// `from_slot`.
    Applied {
        /// The subscription or request answered.
        stream_id: u64,
        /// The first slot covered.
        from_slot: Slot,
        /// One past the last slot covered.
        to_slot: Slot,
        /// The slots of the range that applied at least one write, in slot order.
        slots: Vec<AppliedSlot>,
        /// The learner's applied slot when it sent this.
        applied_slot: Slot,
    },
    /// The learner no longer retains the slots asked for: the writes below
    /// `oldest_available_slot` exist only folded into its state.
    SubscriptionTooOld {
        /// The subscription or request answered.
        stream_id: u64,
        /// The oldest slot whose writes the learner can still send.
        oldest_available_slot: Slot,
        /// The learner's applied slot.
        applied_slot: Slot,
    },
    /// One chunk of a learner's state at a slot, sent to a peer that asked for slots this
    /// learner no longer retains: once it has every chunk, the peer continues from
    /// `chunk.applied_slot + 1`. The sender keeps a few chunks unacknowledged at most.
    SnapshotChunk {
        /// The chunk.
        chunk: SnapshotChunk,
    },
    /// A learner that dropped its state for a snapshot whose transfer then failed asks its
    /// peers for their whole state (`SnapshotChunk`s), whatever their history.
    SnapshotRequest,
    /// The chunks of the snapshot at `applied_slot` up to `index` were received (and
    /// written): the sender may send the next ones.
    SnapshotAck {
        /// The snapshot's slot.
        applied_slot: Slot,
        /// The last chunk received.
        index: u32,
    },
    /// A client API asks a learner, once it has applied `min_slot` (the slot the leader
    /// reported the command decided in), what the command of `request_id` did.
    Outcome {
        /// Matches the answer.
        read_id: u64,
        /// The command asked about.
        request_id: RequestId,
        /// Wait until at least this slot is applied.
        min_slot: Slot,
    },
    /// What the command asked about did, as of `applied_slot`: None if the learner
    /// remembers no command of that request id (it was forgotten, beyond the exactly-once
    /// window). Answered, like a read, only at or after `min_slot`; else `ReadTimedOut`.
    /// (New kinds are appended at the end of this enum, so that the index of every older
    /// kind stays what it was.)
    OutcomeReply {
        /// Which question.
        read_id: u64,
        /// The applied command with that request id.
        outcome: Option<AppliedRequest>,
        /// The slot the learner had applied when it answered.
        applied_slot: Slot,
    },
}

/// A key's value with its revisions, as etcd names them: the slot that created the key
/// (since it last did not exist), the slot that last changed it, and how many changes it
/// had since it was created (1 after its creation). A slot is the revision of the store:
/// every command applied by one slot has that slot's revision, and no state between two
/// of them is ever observed. Keys written before revisions were kept have 0 for all three
/// until they are written again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionedValue {
    /// The value.
    pub value: String,
    /// The slot that created the key.
    pub create_revision: Slot,
    /// The slot that last changed the key.
    pub mod_revision: Slot,
    /// Changes since the key was created.
    pub version: u64,
}

/// A command applied by a learner, as its exactly-once window remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRequest {
    /// The command's request id.
    pub request_id: RequestId,
    /// The slot that applied it: the revision at which it took effect, whatever later
    /// slot a retry of it was decided in again.
    pub slot: Slot,
    /// `Operation::fingerprint` of what it did, so that a request id reused for another
    /// command is told from a retry; [`FINGERPRINT_UNKNOWN`] for commands applied by a
    /// version that kept none (any retry of them counts as genuine).
    pub fingerprint: u64,
}

/// The fingerprint of a command applied before fingerprints were kept.
pub const FINGERPRINT_UNKNOWN: u64 = 0;

impl AppliedRequest {
    /// Whether a command with `fingerprint` is a retry of this one (else its request id
    /// was reused for another command).
    pub fn is_retry_of(&self, fingerprint: u64) -> bool {
        self.fingerprint == FINGERPRINT_UNKNOWN || self.fingerprint == fingerprint
    }
}

/// One piece of a learner's state at `applied_slot`, of at most a page's bytes: the same
/// chunks travel between learners (`SnapshotChunk`) and make a snapshot file on disk, so
/// that a state of any size is never one frame, one record or one allocation. A
/// snapshot's chunks hold its key-value pairs in key order, then its request ids oldest
/// first; every chunk repeats the totals, and the last says so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The snapshot's slot: every slot up to here is folded into the state.
    pub applied_slot: Slot,
    /// This chunk's position, from 0.
    pub index: u32,
    /// How many key-value pairs the whole snapshot holds.
    pub key_count: u64,
    /// How many request ids the whole snapshot holds.
    pub request_id_count: u64,
    /// The next key-value pairs, in key order (after those of earlier chunks).
    pub key_values: Vec<(String, VersionedValue)>,
    /// The next request ids of the exactly-once window, oldest first.
    pub applied_request_ids: Vec<AppliedRequest>,
    /// Whether this is the snapshot's last chunk.
    pub last: bool,
}

/// The writes one slot applied, as a subscriber sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedSlot {
    /// The slot.
    pub slot: Slot,
    /// How many commands the slot's value holds, applied or not (a batch may hold several;
    /// a retried request decided again is not applied twice).
    pub command_count: u32,
    /// The commands that changed the state, in order.
    pub writes: Vec<AppliedWrite>,
}

/// One write applied by a slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedWrite {
    /// The command's position in its slot's batch, from 0.
    pub index: u32,
    /// The key written.
    pub key: String,
    /// The value written.
    pub value: String,
}

/// A learner's state as of `applied_slot`: what applying slots `[1, applied_slot]` gives.
/// Enough to continue applying from `applied_slot + 1` with the same exactly-once filter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSnapshot {
    /// Every slot up to here is folded into the state.
    pub applied_slot: Slot,
    /// The key-value map, in key order.
    pub key_values: Vec<(String, VersionedValue)>,
    /// The exactly-once window: the last applied request ids, oldest first.
    pub applied_request_ids: Vec<AppliedRequest>,
}

/// How a proposer sees itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposerState {
    /// Follows a leader (or waits for one).
    Follower,
    /// Runs phase 1 to become leader.
    Candidate,
    /// Completed phase 1; runs phase 2 only.
    Leader,
}

/// A peer link as the network layer sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The configured address.
    pub address: String,
    /// The node at that address, once it said hello.
    pub node: Option<NodeId>,
    /// Whether a connection is open now.
    pub connected: bool,
}

/// A node's report for `/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The reporting node.
    pub node: NodeId,
    /// Its role-specific state.
    pub detail: RoleStatus,
    /// Its outbound links.
    pub peers: Vec<PeerStatus>,
    /// What the node refused from peers or found wrong (its core's alarms, the network's
    /// refusals, insecure mode), newest last; empty while all is well.
    pub alarms: Vec<String>,
}

/// The role-specific part of a status report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleStatus {
    /// An acceptor's state.
    Acceptor {
        /// The highest ballot promised.
        promised_ballot: Ballot,
        /// The highest slot accepted.
        accepted_slot_max: Slot,
        /// How many slots it holds.
        accepted_slot_count: u64,
        /// Every slot up to here is forgotten (decided and durable at the learners).
        trimmed_slot: Slot,
        /// Why the acceptor refuses to vote, if it does: its log is corrupt, so it cannot
        /// know what it promised. None while its storage is sound.
        storage_fault: Option<String>,
    },
    /// A proposer's state.
    Proposer {
        /// Leader, candidate or follower.
        state: ProposerState,
        /// Its current ballot (as leader or candidate), or the highest seen.
        ballot: Ballot,
        /// The proposer it believes leads.
        leader: Option<u32>,
        /// The highest slot it knows decided.
        decided_slot_max: Slot,
    },
    /// A learner's state.
    Learner {
        /// All slots up to here are applied.
        applied_slot: Slot,
        /// The highest slot it has heard of.
        known_slot_max: Slot,
        /// How many keys its state holds.
        key_count: u64,
    },
}
