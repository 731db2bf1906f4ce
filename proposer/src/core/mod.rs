//! The proposer's protocol as a plain state machine: messages and ticks in, effects out.
//!
//! A proposer is a follower, a candidate or the leader:
//! - A follower that hears no heartbeat for `leader_timeout_ticks` (plus a random backoff,
//!   so two proposers rarely duel) becomes a candidate: it picks a ballot above any it has
//!   seen, makes the round durable, and sends Prepare to every acceptor.
//! - A candidate with Promises from a quorum becomes leader. It first completes every slot
//!   the Promises reported (re-proposing, per slot, the value accepted with the highest
//!   ballot) and fills the holes between them with no-ops; then it runs phase 2 only.
//! - The leader batches queued client commands into one slot when the pipeline is busy
//!   (up to `max_slots_in_flight` slots at once), sends heartbeats, and answers read-index
//!   requests after a quorum of acceptors confirms it still holds the highest promise.
//! - Any Rejected naming a higher ballot makes a leader or candidate step down. A leader
//!   that cannot get a quorum to confirm it for `leader_timeout_ticks` steps down too and
//!   stops sending heartbeats, so a leader cut off from the acceptors is replaced.
//!
//! What a message says is validated before it changes anything (`from` is trusted: the
//! network authenticated it). A Promise that reports a slot accepted at or above the
//! promised ballot, an implausible slot, or a value that contradicts another report under
//! one ballot is not counted; a Heartbeat under another proposer's ballot, and any ballot
//! more than [`MAX_ROUND_LEAD`] rounds above the highest this proposer knows, are ignored.
//! Each refusal raises an alarm ([`Proposer::alarms`]).
//!
//! The [`Proposer`] struct, its options, [`Effect`], its state (follower, candidate,
//! leader) and the dispatch of messages and ticks live here; each concept of the protocol
//! has its module, each adding to `impl Proposer`:
//! - `election`: phase 1: ballots, the leader timeout, Prepare and Promise, stepping down;
//! - `replication`: phase 2: batching queued writes into slots, pipelining, Accepted votes;
//! - `reads`: read-index requests, granted once a quorum confirms the leader's ballot;
//! - `forwarding`: writes a follower forwards to its leader, and the answers' way back;
//! - `heartbeats`: the leader's tick: heartbeats, liveness checks and retransmission;
//! - `trimming`: the learners' durable slots, and the trim point the leader sends to the
//!   acceptors so that their logs hold the live window only.

use common::alarm::{Alarm, Alarms};
use common::ballot::{Ballot, Slot, MAX_ROUND_LEAD};
use common::message::{Message, ProposerState, RoleStatus};
use common::node::{NodeId, Role};
use common::ready::{Core, Destination, Event, Ready};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

mod election;
mod forwarding;
mod heartbeats;
mod reads;
mod replication;
#[cfg(test)]
mod test_support;
mod trimming;

pub use election::MAX_PROMISE_SPAN_SLOTS;

pub use trimming::TRIM_RESEND_TICKS;

use election::PromiseReport;
use forwarding::PendingWrite;
use reads::{ConfirmRound, PendingRead};
use replication::Leadership;

/// Tunables of a proposer, in ticks.
#[derive(Clone, Debug)]
pub struct ProposerOptions {
    /// This proposer's id, from 1: the tie-breaker of its ballots.
    pub id: u32,
    /// Acceptors whose votes make a quorum (a majority).
    pub quorum_size: usize,
    /// Ticks between two heartbeats of the leader.
    pub heartbeat_interval_ticks: u64,
    /// Ticks without a heartbeat after which a follower starts an election.
    pub leader_timeout_ticks: u64,
    /// Slots the leader may have in phase 2 at once (pipelining).
    pub max_slots_in_flight: usize,
    /// Client commands the leader may put in one slot (batching).
    pub max_batch_commands: usize,
    /// Ticks after which an unanswered Accept or Confirm is sent again.
    pub retransmit_ticks: u64,
    /// Seeds the election backoff, so a run can be replayed.
    pub seed: u64,
    /// The learners of the cluster, numbered from 1 (`LEARNER_HOSTS`). The leader trims
    /// the acceptors' logs up to the slot that [`ProposerOptions::trim_copies`] of them
    /// hold durably; 0 learners: no trimming.
    pub learner_count: usize,
    /// The acceptors of the cluster (`ACCEPTOR_HOSTS`); with `quorum_size`, how many may
    /// be out of space before no quorum can make a vote durable.
    pub acceptor_count: usize,
}

impl ProposerOptions {
    /// How many learners must hold a slot in their durable state before the acceptors may
    /// forget it: two (one learner's disk may be lost and the slot is still held by
    /// another), or all of them if there are fewer. See docs/PROTOCOL.md, "Trimming".
    pub fn trim_copies(&self) -> usize {
        self.learner_count.min(2)
    }
}

impl ProposerOptions {
    /// Options with the defaults for everything but the identity and timing.
    pub fn new(
        id: u32,
        quorum_size: usize,
        heartbeat_interval_ticks: u64,
        leader_timeout_ticks: u64,
    ) -> Self {
        assert!(id > 0, "proposer ids start at 1");
        assert!(quorum_size > 0, "a quorum has at least one acceptor");
        assert!(
            leader_timeout_ticks > heartbeat_interval_ticks,
            "a leader timeout shorter than the heartbeat would depose live leaders"
        );
        ProposerOptions {
            id,
            quorum_size,
            heartbeat_interval_ticks: heartbeat_interval_ticks.max(1),
            leader_timeout_ticks,
            max_slots_in_flight: 32,
            max_batch_commands: 1024,
            retransmit_ticks: 50,
            seed: 0,
            learner_count: 0,
            acceptor_count: 2 * quorum_size - 1,
        }
    }
}

/// PLANTED BUGS, for the simulation only (feature `planted-bugs`): known ways to break
/// Paxos that `sim` must catch, so that its checks are shown not to be vacuous.
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// A new leader re-proposes a value found in phase 1 only if a quorum of the Promises
    /// reported it, and fills the slot with a no-op otherwise: a value chosen by a quorum
    /// that overlaps the Promises in one acceptor is lost.
    SkipValueAcceptedByMinority,
    /// A leader grants a read index at once, without a quorum confirming that it still
    /// leads: a deposed leader that has not noticed answers stale strong reads.
    ReadIndexWithoutConfirmation,
    /// The leader trims the acceptors one slot beyond what enough learners hold durably: a
    /// slot only in a learner's unsynced memory is forgotten by the acceptors, and a crash
    /// of that learner loses a decided value.
    TrimOneSlotTooFar,
}

/// What the service must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Make `round` durable (the highest round this proposer has used) before any later
    /// effect is carried out, so a restarted proposer never reuses a ballot.
    PersistRound(u64),
    /// Send `message` to `to`.
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// The answer to a write a follower forwarded: send `message` to the client API
    /// `client` directly if it is connected, else to `relay` (that follower), which passes
    /// it on. The direct path saves a hop and tells the client API who really leads.
    Answer {
        /// The client API waiting for the answer.
        client: NodeId,
        /// The follower that forwarded the write.
        relay: NodeId,
        /// `WriteDecided` or `WriteRefused`.
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

#[derive(Debug)]
enum State {
    Follower {
        leader: Option<(u32, Ballot)>,
        last_heard_tick: u64,
        election_tick: u64,
    },
    Candidate {
        ballot: Ballot,
        from_slot: Slot,
        promises: BTreeMap<u32, PromiseReport>,
        started_tick: u64,
    },
    Leader(Box<Leadership>),
}

/// A proposer's protocol state.
pub struct Proposer {
    options: ProposerOptions,
    random: ChaCha8Rng,
    now_tick: u64,
    /// The highest round made durable; ballots use rounds above it after a restart.
    persisted_round: u64,
    highest_ballot_seen: Ballot,
    /// Every slot `<= decided_prefix` was applied by a learner: a new leader's phase 1
    /// starts after it. Slots this proposer decided itself do not count: a learner may
    /// never have seen the quorum that chose them (its votes lost, then one of its
    /// acceptors overwritten by a later leader that re-proposed the same value under a
    /// higher ballot but did not finish), and then only a new phase 2 of the slot, under
    /// one ballot, lets learners decide it. Found by the simulation (`sim/`).
    decided_prefix: Slot,
    decided_slot_max: Slot,
    /// Proposers whose connection to this one is down: a write is not forwarded to them
    /// (it would be lost, and its client would wait out its attempt).
    unreachable_proposers: BTreeSet<u32>,
    /// Each learner's durable slot, as it last reported (see `trimming`).
    learner_durable_slots: BTreeMap<u32, Slot>,
    /// The trim point the leader last sent to the acceptors, and when.
    trim_sent: Option<(Slot, u64)>,
    /// Acceptors that answered `NoSpace` and have not voted since. Kept across leader
    /// changes: a stale entry only makes a leader refuse writes until the slots it has in
    /// flight are accepted again, and with none in flight the next write probes.
    acceptors_without_space: BTreeSet<u32>,
    state: State,
    /// What this proposer refused from the network, and why.
    alarms: Alarms,
    #[cfg(feature = "planted-bugs")]
    planted_bug: Option<PlantedBug>,
}

impl Proposer {
    /// A proposer that last made `persisted_round` durable (0 on first start).
    pub fn new(options: ProposerOptions, persisted_round: u64) -> Self {
        let mut random = ChaCha8Rng::seed_from_u64(options.seed ^ u64::from(options.id));
        let election_tick = options.leader_timeout_ticks
            + random.random_range(0..options.leader_timeout_ticks.max(1));
        Proposer {
            options,
            random,
            now_tick: 0,
            persisted_round,
            highest_ballot_seen: Ballot::ZERO,
            decided_prefix: 0,
            decided_slot_max: 0,
            unreachable_proposers: BTreeSet::new(),
            learner_durable_slots: BTreeMap::new(),
            trim_sent: None,
            acceptors_without_space: BTreeSet::new(),
            state: State::Follower {
                leader: None,
                last_heard_tick: 0,
                election_tick,
            },
            alarms: Alarms::new(),
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// What this proposer refused from the network and why, one line per distinct alarm
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

    /// The highest round this proposer knows: seen from peers or used itself.
    fn highest_round_known(&self) -> u64 {
        self.highest_ballot_seen.round.max(self.persisted_round)
    }

    /// Whether `ballot`, seen in a `kind` from `from`, is plausible; raises an alarm if not.
    fn accept_observed_ballot(&mut self, from: NodeId, kind: &str, ballot: Ballot) -> bool {
        let highest = self.highest_round_known();
        if ballot.is_plausible_after(highest) {
            return true;
        }
        self.raise_alarm(format!(
            "{from} sent a {kind} naming ballot {ballot}, more than {MAX_ROUND_LEAD} rounds \
             above the highest round known here ({highest}): ignored"
        ));
        false
    }

    /// PLANTED BUG, for the simulation only: makes this proposer misbehave as `bug` says.
    #[cfg(feature = "planted-bugs")]
    pub fn plant_bug(&mut self, bug: PlantedBug) {
        self.planted_bug = Some(bug);
    }

    /// The connection to `node` closed. A follower whose leader is unreachable refuses
    /// writes (without a hint) instead of forwarding them into the void; it still waits
    /// for the leader timeout before it runs for election, since a closed connection may
    /// be this link's trouble only.
    pub fn on_disconnected(&mut self, node: NodeId) {
        if node.role == Role::Proposer {
            self.unreachable_proposers.insert(node.id);
        }
    }

    /// A connection to `node` opened (again).
    pub fn on_connected(&mut self, node: NodeId) {
        if node.role == Role::Proposer {
            self.unreachable_proposers.remove(&node.id);
        }
    }

    /// This proposer's id.
    pub fn id(&self) -> u32 {
        self.options.id
    }

    /// Whether this proposer believes it leads.
    pub fn is_leader(&self) -> bool {
        matches!(self.state, State::Leader(_))
    }

    /// The ballot this proposer leads with, if it leads.
    pub fn leader_ballot(&self) -> Option<Ballot> {
        match &self.state {
            State::Leader(leadership) => Some(leadership.ballot),
            _ => None,
        }
    }

    /// The report for `/status`.
    pub fn status(&self) -> RoleStatus {
        let (state, ballot, leader) = match &self.state {
            State::Follower { leader, .. } => (
                ProposerState::Follower,
                self.highest_ballot_seen,
                leader.map(|(id, _)| id),
            ),
            State::Candidate { ballot, .. } => (ProposerState::Candidate, *ballot, None),
            State::Leader(leadership) => (
                ProposerState::Leader,
                leadership.ballot,
                Some(self.options.id),
            ),
        };
        RoleStatus::Proposer {
            state,
            ballot,
            leader,
            decided_slot_max: self.decided_slot_max,
        }
    }

    /// Handles one message from `from`.
    pub fn handle(&mut self, from: NodeId, message: Message) -> Vec<Effect> {
        let mut effects = Vec::new();
        match message {
            Message::Promise {
                ballot,
                accepted,
                trimmed_slot,
                next_from_slot,
            } => self.on_promise(
                from,
                ballot,
                PromiseReport {
                    entries: accepted,
                    trimmed_slot,
                    next_from_slot,
                },
                &mut effects,
            ),
            Message::Trimmed { trimmed_slot } => self.on_trimmed(from, trimmed_slot, &mut effects),
            Message::Accepted { ballot, slot } => {
                self.acceptors_without_space.remove(&from.id);
                self.on_accepted(from, ballot, slot, &mut effects)
            }
            Message::NoSpace { ballot, slot } => self.on_no_space(from, ballot, slot, &mut effects),
            Message::Rejected { ballot, promised } => {
                self.on_rejected(from, ballot, promised, &mut effects)
            }
            Message::Confirmed { ballot, sequence } => {
                self.on_confirmed(from, ballot, sequence, &mut effects)
            }
            Message::Heartbeat { ballot, .. } => self.on_heartbeat(from, ballot, &mut effects),
            Message::Write { command, client } => {
                // A client API answers for itself, whatever its message claims; a write
                // forwarded by a follower names the client API waiting for it.
                match from.role {
                    Role::Client => self.on_write(from, command, from, &mut effects),
                    Role::Proposer => self.on_write(from, command, client, &mut effects),
                    _ => self.raise_alarm(format!("{from} sent a Write: ignored")),
                }
            }
            // The answer to a write we forwarded to the leader: relay it.
            Message::WriteDecided { client, .. }
            | Message::WriteRefused { client, .. }
            | Message::WriteFailed { client, .. }
                if from.role == Role::Proposer =>
            {
                if client.role == Role::Client {
                    effects.push(Effect::Send {
                        to: client,
                        message,
                    });
                } else {
                    self.raise_alarm(format!(
                        "{from} asked to relay a write's answer to {client}, not a client: \
                         ignored"
                    ));
                }
            }
            Message::ReadIndex { read_id } => self.on_read_index(from, read_id, &mut effects),
            Message::LearnerProgress {
                applied_slot,
                durable_slot,
            } => self.on_learner_progress(from, applied_slot, durable_slot),
            _ => {}
        }
        effects
    }

    /// Advances time by one tick.
    pub fn tick(&mut self) -> Vec<Effect> {
        self.now_tick += 1;
        let mut effects = Vec::new();
        match &self.state {
            State::Follower { election_tick, .. } => {
                if self.now_tick >= *election_tick {
                    self.start_election(&mut effects);
                }
            }
            State::Candidate { started_tick, .. } => {
                if self.now_tick >= started_tick + self.options.leader_timeout_ticks {
                    // No quorum answered: back off, then try again with a higher ballot.
                    self.become_follower(None, &mut effects);
                }
            }
            State::Leader(_) => self.leader_tick(&mut effects),
        }
        effects
    }

    fn leader_hint(&self) -> Option<u32> {
        match &self.state {
            State::Follower { leader, .. } => leader.map(|(id, _)| id),
            State::Candidate { .. } => None,
            State::Leader(_) => Some(self.options.id),
        }
    }
}

/// The proposer under the one contract of every role (see [`common::ready`]): a round is
/// appended to the round log and synced before anything after it leaves (a restarted
/// proposer never reuses a ballot); a forwarded write's answer goes to its client API
/// directly if connected, else back through the follower that forwarded it.
impl Core for Proposer {
    /// The highest round used so far.
    type Record = u64;

    fn on_event(&mut self, event: Event, ready: &mut Ready<u64>) {
        match event {
            Event::Message(from, message) => {
                let effects = self.handle(from, message);
                carry_into(effects, ready);
            }
            Event::Connected(node) => self.on_connected(node),
            Event::Disconnected(node) => self.on_disconnected(node),
        }
    }

    fn on_tick(&mut self, ready: &mut Ready<u64>) {
        let effects = self.tick();
        carry_into(effects, ready);
    }

    fn status(&self) -> RoleStatus {
        Proposer::status(self)
    }

    fn alarms(&self) -> Vec<String> {
        Proposer::alarms(self)
    }
}

/// Adds `effects` to `ready`, keeping their order: whatever follows a round leaves only
/// once that round is durable.
fn carry_into(effects: Vec<Effect>, ready: &mut Ready<u64>) {
    for effect in effects {
        match effect {
            Effect::PersistRound(round) => {
                ready.append(round);
                ready.require_sync();
            }
            Effect::Send { to, message } => {
                ready.send_after_earlier_writes(Destination::Node(to), message)
            }
            Effect::Answer {
                client,
                relay,
                message,
            } => ready.send_after_earlier_writes(
                Destination::FirstConnected {
                    first: client,
                    fallback: relay,
                },
                message,
            ),
            Effect::Broadcast { role, message } => {
                ready.send_after_earlier_writes(Destination::Role(role), message)
            }
        }
    }
}
