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

use common::alarm::{Alarm, Alarms};
use common::ballot::{is_plausible_slot, Ballot, Slot, MAX_PLAUSIBLE_SLOT, MAX_ROUND_LEAD};
use common::message::{AcceptedEntry, Message, ProposerState, RoleStatus};
use common::node::{NodeId, Role};
use common::value::{Command, RequestId, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

/// The most slots above its `from_slot` a Promise may report. A new leader proposes every
/// slot from `from_slot` to the highest reported one at once (holes as no-ops), so a
/// report far above would make it propose billions of slots; honest reports stay within
/// the slots decided since a learner last reported progress, far below 2^24.
pub const MAX_PROMISE_SPAN_SLOTS: u64 = 1 << 24;

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

/// A client write waiting for its slot to be decided.
#[derive(Clone, Debug)]
struct PendingWrite {
    command: Command,
    /// Who sent it to us: the client API, or a follower proposer that forwarded it.
    reply_to: NodeId,
    /// The client API waiting for the answer.
    client: NodeId,
}

impl PendingWrite {
    /// The effect that delivers `message`, this write's answer, to its client API.
    fn answer(&self, message: Message) -> Effect {
        if self.reply_to == self.client {
            Effect::Send {
                to: self.client,
                message,
            }
        } else {
            Effect::Answer {
                client: self.client,
                relay: self.reply_to,
                message,
            }
        }
    }
}

/// A read-index request waiting for a confirmation round.
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    read_id: u64,
    reply_to: NodeId,
}

#[derive(Debug)]
struct InFlightSlot {
    value: Value,
    accepted_by: BTreeSet<u32>,
    writes: Vec<PendingWrite>,
    sent_tick: u64,
}

#[derive(Debug)]
struct ConfirmRound {
    sequence: u64,
    /// Every write completed before the round started lies in a slot `<= read_slot`.
    read_slot: Slot,
    confirmed_by: BTreeSet<u32>,
    reads: Vec<PendingRead>,
    started_tick: u64,
}

#[derive(Debug)]
struct Leadership {
    ballot: Ballot,
    next_slot: Slot,
    in_flight: BTreeMap<Slot, InFlightSlot>,
    queue: VecDeque<PendingWrite>,
    last_heartbeat_tick: u64,
    last_confirmed_tick: u64,
    confirm_sequence: u64,
    confirm_round: Option<ConfirmRound>,
    waiting_reads: Vec<PendingRead>,
}

impl Leadership {
    /// Phase 2a for one slot: send Accept to every acceptor and track the votes.
    fn propose(
        &mut self,
        slot: Slot,
        value: Value,
        writes: Vec<PendingWrite>,
        now_tick: u64,
        effects: &mut Vec<Effect>,
    ) {
        effects.push(Effect::Broadcast {
            role: Role::Acceptor,
            message: Message::Accept {
                ballot: self.ballot,
                slot,
                value: value.clone(),
            },
        });
        let previous = self.in_flight.insert(
            slot,
            InFlightSlot {
                value,
                accepted_by: BTreeSet::new(),
                writes,
                sent_tick: now_tick,
            },
        );
        assert!(
            previous.is_none(),
            "a leader proposes at most one value per slot under its ballot"
        );
    }
}

/// Why a Promise of `ballot` from acceptor `acceptor`, answering a Prepare from
/// `from_slot`, reporting `accepted`, cannot be honest, if it cannot: a slot outside
/// `[from_slot, from_slot + MAX_PROMISE_SPAN_SLOTS]` or above [`MAX_PLAUSIBLE_SLOT`], a
/// slot accepted at or above the promised ballot (an acceptor accepts a ballot only after
/// promising it, and would then have rejected this Prepare), or a second value for a slot
/// under a ballot that this or another Promise reports with another value.
fn promise_fault(
    acceptor: u32,
    ballot: Ballot,
    from_slot: Slot,
    accepted: &[AcceptedEntry],
    promises: &BTreeMap<u32, Vec<AcceptedEntry>>,
) -> Option<String> {
    let span_end = from_slot.saturating_add(MAX_PROMISE_SPAN_SLOTS);
    let mut reported: BTreeMap<(Slot, Ballot), &Value> = BTreeMap::new();
    for (other, entries) in promises {
        if *other != acceptor {
            for entry in entries {
                reported.insert((entry.slot, entry.ballot), &entry.value);
            }
        }
    }
    for entry in accepted {
        if !is_plausible_slot(entry.slot) || entry.slot < from_slot || entry.slot > span_end {
            return Some(format!(
                "reports slot {}, outside [{from_slot}, {}]",
                entry.slot,
                span_end.min(MAX_PLAUSIBLE_SLOT)
            ));
        }
        if entry.ballot >= ballot {
            return Some(format!(
                "reports slot {} accepted under {}, not below the promise",
                entry.slot, entry.ballot
            ));
        }
        match reported.insert((entry.slot, entry.ballot), &entry.value) {
            Some(known) if *known != entry.value => {
                return Some(format!(
                    "reports a second value for slot {} under ballot {}",
                    entry.slot, entry.ballot
                ));
            }
            _ => {}
        }
    }
    None
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
        promises: BTreeMap<u32, Vec<AcceptedEntry>>,
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
            Message::Promise { ballot, accepted } => {
                self.on_promise(from, ballot, accepted, &mut effects)
            }
            Message::Accepted { ballot, slot } => {
                self.on_accepted(from, ballot, slot, &mut effects)
            }
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
            Message::WriteDecided { client, .. } | Message::WriteRefused { client, .. }
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
            Message::LearnerProgress { applied_slot } => {
                self.on_learner_progress(from, applied_slot)
            }
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

    fn election_backoff_ticks(&mut self) -> u64 {
        self.options.leader_timeout_ticks
            + self
                .random
                .random_range(0..self.options.leader_timeout_ticks.max(1))
    }

    fn observe_ballot(&mut self, ballot: Ballot) {
        self.highest_ballot_seen = self.highest_ballot_seen.max(ballot);
    }

    fn on_learner_progress(&mut self, from: NodeId, applied_slot: Slot) {
        if from.role != Role::Learner || applied_slot > MAX_PLAUSIBLE_SLOT {
            self.raise_alarm(format!(
                "{from} sent a LearnerProgress of slot {applied_slot}: ignored (only learners \
                 send it, for slots up to {MAX_PLAUSIBLE_SLOT})"
            ));
            return;
        }
        self.decided_prefix = self.decided_prefix.max(applied_slot);
        self.decided_slot_max = self.decided_slot_max.max(applied_slot);
    }

    fn start_election(&mut self, effects: &mut Vec<Effect>) {
        let highest = self.highest_round_known();
        let Some(round) = highest.checked_add(1) else {
            // Only a round refused as implausible could get here, or a corrupt round file:
            // no ballot is left above it, so campaigning would reuse one.
            self.raise_alarm(format!(
                "no round is left above {highest}: this proposer stops campaigning"
            ));
            self.state = State::Follower {
                leader: None,
                last_heard_tick: self.now_tick,
                election_tick: u64::MAX,
            };
            return;
        };
        let ballot = Ballot::new(round, self.options.id);
        self.persisted_round = round;
        self.observe_ballot(ballot);
        let from_slot = self.decided_prefix + 1;
        effects.push(Effect::PersistRound(round));
        effects.push(Effect::Broadcast {
            role: Role::Acceptor,
            message: Message::Prepare { ballot, from_slot },
        });
        self.state = State::Candidate {
            ballot,
            from_slot,
            promises: BTreeMap::new(),
            started_tick: self.now_tick,
        };
    }

    /// Leaves leadership or candidacy; every write and read waiting on us is refused so
    /// its client retries elsewhere (with the same request id).
    fn become_follower(&mut self, leader: Option<(u32, Ballot)>, effects: &mut Vec<Effect>) {
        let previous = std::mem::replace(
            &mut self.state,
            State::Follower {
                leader,
                last_heard_tick: self.now_tick,
                election_tick: 0,
            },
        );
        let election_tick = self.now_tick + self.election_backoff_ticks();
        if let State::Follower {
            election_tick: tick,
            ..
        } = &mut self.state
        {
            *tick = election_tick;
        }
        if let State::Leader(leadership) = previous {
            let leader_hint = leader.map(|(id, _)| id);
            let Leadership {
                in_flight,
                queue,
                confirm_round,
                waiting_reads,
                ..
            } = *leadership;
            let writes = in_flight
                .into_values()
                .flat_map(|slot| slot.writes)
                .chain(queue);
            for write in writes {
                effects.push(write.answer(Message::WriteRefused {
                    request_id: write.command.request_id,
                    leader_hint,
                    client: write.client,
                }));
            }
            let reads = confirm_round
                .into_iter()
                .flat_map(|round| round.reads)
                .chain(waiting_reads);
            for read in reads {
                effects.push(Effect::Send {
                    to: read.reply_to,
                    message: Message::ReadIndexRefused {
                        read_id: read.read_id,
                        leader_hint,
                    },
                });
            }
        }
    }

    fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        accepted: Vec<AcceptedEntry>,
        effects: &mut Vec<Effect>,
    ) {
        let State::Candidate {
            ballot: candidate_ballot,
            from_slot,
            promises,
            ..
        } = &mut self.state
        else {
            return;
        };
        if ballot != *candidate_ballot || from.role != Role::Acceptor {
            return;
        }
        if let Some(problem) = promise_fault(from.id, ballot, *from_slot, &accepted, promises) {
            self.raise_alarm(format!(
                "acceptor {} sent a Promise of {ballot} that {problem}: not counted",
                from.id
            ));
            return;
        }
        promises.insert(from.id, accepted);
        if promises.len() >= self.options.quorum_size {
            self.become_leader(effects);
        }
    }

    fn become_leader(&mut self, effects: &mut Vec<Effect>) {
        let State::Candidate {
            ballot,
            from_slot,
            promises,
            ..
        } = std::mem::replace(
            &mut self.state,
            State::Follower {
                leader: None,
                last_heard_tick: self.now_tick,
                election_tick: u64::MAX,
            },
        )
        else {
            unreachable!("only a candidate becomes leader");
        };
        // Per slot, the value accepted with the highest ballot may have been chosen: it is
        // the only value this leader may propose there.
        #[cfg(feature = "planted-bugs")]
        let promises = self.planted_skip_minority_values(promises);
        let mut highest: BTreeMap<Slot, (Ballot, Value)> = BTreeMap::new();
        for entry in promises.into_values().flatten() {
            if entry.slot < from_slot {
                continue;
            }
            match highest.get(&entry.slot) {
                Some((known, known_value)) if *known >= entry.ballot => {
                    debug_assert!(
                        *known != entry.ballot || *known_value == entry.value,
                        "on_promise refuses two values in slot {} under one ballot {}",
                        entry.slot,
                        entry.ballot
                    );
                }
                _ => {
                    highest.insert(entry.slot, (entry.ballot, entry.value));
                }
            }
        }
        let last_reported_slot = highest.keys().next_back().copied().unwrap_or(0);
        // Plausible by `promise_fault` and `on_learner_progress`: no overflow.
        let next_slot = last_reported_slot.max(from_slot - 1) + 1;
        let mut leadership = Leadership {
            ballot,
            next_slot,
            in_flight: BTreeMap::new(),
            queue: VecDeque::new(),
            last_heartbeat_tick: self.now_tick,
            last_confirmed_tick: self.now_tick,
            confirm_sequence: 0,
            confirm_round: None,
            waiting_reads: Vec::new(),
        };
        for slot in from_slot..next_slot {
            let value = highest
                .remove(&slot)
                .map(|(_, value)| value)
                .unwrap_or(Value::Noop);
            leadership.propose(slot, value, Vec::new(), self.now_tick, effects);
        }
        self.state = State::Leader(Box::new(leadership));
        self.send_heartbeat(effects);
    }

    /// The planted bug [`PlantedBug::SkipValueAcceptedByMinority`]: drops every reported
    /// value fewer than a quorum of the Promises carry, so its slot becomes a no-op.
    #[cfg(feature = "planted-bugs")]
    fn planted_skip_minority_values(
        &self,
        mut promises: BTreeMap<u32, Vec<AcceptedEntry>>,
    ) -> BTreeMap<u32, Vec<AcceptedEntry>> {
        if self.planted_bug != Some(PlantedBug::SkipValueAcceptedByMinority) {
            return promises;
        }
        let mut reports: BTreeMap<(Slot, Ballot), usize> = BTreeMap::new();
        for entry in promises.values().flatten() {
            *reports.entry((entry.slot, entry.ballot)).or_default() += 1;
        }
        for entries in promises.values_mut() {
            entries
                .retain(|entry| reports[&(entry.slot, entry.ballot)] >= self.options.quorum_size);
        }
        promises
    }

    fn on_accepted(&mut self, from: NodeId, ballot: Ballot, slot: Slot, effects: &mut Vec<Effect>) {
        let quorum_size = self.options.quorum_size;
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        if ballot != leadership.ballot || from.role != Role::Acceptor {
            return;
        }
        let Some(in_flight) = leadership.in_flight.get_mut(&slot) else {
            return; // already decided: a duplicate or late vote
        };
        in_flight.accepted_by.insert(from.id);
        if in_flight.accepted_by.len() < quorum_size {
            return;
        }
        let decided = leadership.in_flight.remove(&slot).expect("present above");
        for write in decided.writes {
            effects.push(write.answer(Message::WriteDecided {
                request_id: write.command.request_id,
                slot,
                client: write.client,
            }));
        }
        self.decided_slot_max = self.decided_slot_max.max(slot);
        self.propose_queued(effects);
    }

    fn on_rejected(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        promised: Ballot,
        effects: &mut Vec<Effect>,
    ) {
        if from.role != Role::Acceptor {
            self.raise_alarm(format!("{from} sent a Rejected: ignored"));
            return;
        }
        if !self.accept_observed_ballot(from, "Rejected", promised) {
            return;
        }
        self.observe_ballot(promised);
        let ours = match &self.state {
            State::Candidate { ballot: ours, .. } => *ours,
            State::Leader(leadership) => leadership.ballot,
            State::Follower { .. } => return,
        };
        if ballot == ours && promised > ours {
            self.become_follower(None, effects);
        }
    }

    fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot, effects: &mut Vec<Effect>) {
        if from.role != Role::Proposer || from.id == self.options.id {
            return;
        }
        if ballot.proposer_id != from.id {
            self.raise_alarm(format!(
                "proposer {} sent a Heartbeat under ballot {ballot}, which belongs to proposer \
                 {}: ignored",
                from.id, ballot.proposer_id
            ));
            return;
        }
        if !self.accept_observed_ballot(from, "Heartbeat", ballot) {
            return;
        }
        self.observe_ballot(ballot);
        let now_tick = self.now_tick;
        match &mut self.state {
            State::Leader(leadership) => {
                if ballot > leadership.ballot {
                    self.become_follower(Some((from.id, ballot)), effects);
                }
                // A lower ballot: a deposed leader that has not noticed yet; its Accepts
                // and Confirms are rejected, so it steps down on its own.
            }
            State::Candidate { .. } => {
                // A live leader: do not depose it, whatever our ballot.
                self.become_follower(Some((from.id, ballot)), effects);
            }
            State::Follower {
                leader,
                last_heard_tick,
                election_tick,
            } => {
                let leader_silent =
                    now_tick >= *last_heard_tick + self.options.leader_timeout_ticks;
                let follows = match leader {
                    None => true,
                    Some((_, leader_ballot)) => ballot >= *leader_ballot || leader_silent,
                };
                if follows {
                    *leader = Some((from.id, ballot));
                    *last_heard_tick = now_tick;
                    let backoff = self
                        .random
                        .random_range(0..self.options.leader_timeout_ticks.max(1));
                    *election_tick = now_tick + self.options.leader_timeout_ticks + backoff;
                }
            }
        }
    }

    fn on_write(
        &mut self,
        from: NodeId,
        command: Command,
        client: NodeId,
        effects: &mut Vec<Effect>,
    ) {
        // Forward once; a write forwarded to us is never forwarded again, so two proposers
        // with stale views cannot bounce it forever.
        let forward_to = match &self.state {
            State::Follower {
                leader: Some((leader_id, _)),
                ..
            } if from.role != Role::Proposer
                && *leader_id != self.options.id
                && !self.unreachable_proposers.contains(leader_id) =>
            {
                Some(*leader_id)
            }
            _ => None,
        };
        match (&mut self.state, forward_to) {
            (State::Leader(leadership), _) => {
                leadership.queue.push_back(PendingWrite {
                    command,
                    reply_to: from,
                    client,
                });
                self.propose_queued(effects);
            }
            (_, Some(leader_id)) => {
                effects.push(Effect::Send {
                    to: NodeId::proposer(leader_id),
                    message: Message::Write { command, client },
                });
            }
            (_, None) => {
                // Unreachable leader: no hint either, so the client pauses and retries
                // rather than chase a proposer it cannot reach.
                let leader_hint = self
                    .leader_hint()
                    .filter(|leader| !self.unreachable_proposers.contains(leader));
                effects.push(Effect::Send {
                    to: from,
                    message: Message::WriteRefused {
                        request_id: command.request_id,
                        leader_hint,
                        client,
                    },
                });
            }
        }
    }

    fn leader_hint(&self) -> Option<u32> {
        match &self.state {
            State::Follower { leader, .. } => leader.map(|(id, _)| id),
            State::Candidate { .. } => None,
            State::Leader(_) => Some(self.options.id),
        }
    }

    /// Moves queued commands into new slots while the pipeline has room. Under light load
    /// each command gets its own slot at once; under heavy load the pipeline fills and the
    /// queue grows, so each freed slot carries a larger batch.
    fn propose_queued(&mut self, effects: &mut Vec<Effect>) {
        let now_tick = self.now_tick;
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        while !leadership.queue.is_empty()
            && leadership.in_flight.len() < self.options.max_slots_in_flight
        {
            let count = leadership.queue.len().min(self.options.max_batch_commands);
            let mut seen: HashSet<RequestId> = HashSet::with_capacity(count);
            let writes: Vec<PendingWrite> = leadership.queue.drain(..count).collect();
            let commands: Vec<Command> = writes
                .iter()
                .filter(|write| seen.insert(write.command.request_id))
                .map(|write| write.command.clone())
                .collect();
            let slot = leadership.next_slot;
            leadership.next_slot += 1;
            leadership.propose(slot, Value::Batch(commands), writes, now_tick, effects);
        }
    }

    fn on_read_index(&mut self, from: NodeId, read_id: u64, effects: &mut Vec<Effect>) {
        let read = PendingRead {
            read_id,
            reply_to: from,
        };
        #[cfg(feature = "planted-bugs")]
        if let (Some(PlantedBug::ReadIndexWithoutConfirmation), State::Leader(leadership)) =
            (self.planted_bug, &self.state)
        {
            effects.push(Effect::Send {
                to: from,
                message: Message::ReadIndexGranted {
                    read_id,
                    slot: leadership.next_slot - 1,
                },
            });
            return;
        }
        match &mut self.state {
            State::Leader(leadership) => {
                leadership.waiting_reads.push(read);
                if leadership.confirm_round.is_none() {
                    self.start_confirm_round(effects);
                }
            }
            _ => {
                let leader_hint = self.leader_hint();
                effects.push(Effect::Send {
                    to: from,
                    message: Message::ReadIndexRefused {
                        read_id,
                        leader_hint,
                    },
                });
            }
        }
    }

    /// Asks the acceptors to confirm our ballot. Reads waiting now are answered with the
    /// slots assigned so far once a quorum confirms: a write completed before this point
    /// was decided either by us (so its slot is below `next_slot`) or by an earlier leader
    /// (whose slots our phase 1 took over), and no later leader can have decided anything
    /// while a quorum still confirms us.
    fn start_confirm_round(&mut self, effects: &mut Vec<Effect>) {
        let now_tick = self.now_tick;
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        leadership.confirm_sequence += 1;
        let mut reads = std::mem::take(&mut leadership.waiting_reads);
        if let Some(previous) = leadership.confirm_round.take() {
            reads.extend(previous.reads);
        }
        leadership.confirm_round = Some(ConfirmRound {
            sequence: leadership.confirm_sequence,
            read_slot: leadership.next_slot - 1,
            confirmed_by: BTreeSet::new(),
            reads,
            started_tick: now_tick,
        });
        effects.push(Effect::Broadcast {
            role: Role::Acceptor,
            message: Message::Confirm {
                ballot: leadership.ballot,
                sequence: leadership.confirm_sequence,
            },
        });
    }

    fn on_confirmed(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        sequence: u64,
        effects: &mut Vec<Effect>,
    ) {
        let now_tick = self.now_tick;
        let quorum_size = self.options.quorum_size;
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        let Some(round) = &mut leadership.confirm_round else {
            return;
        };
        if ballot != leadership.ballot || sequence != round.sequence || from.role != Role::Acceptor
        {
            return;
        }
        round.confirmed_by.insert(from.id);
        if round.confirmed_by.len() < quorum_size {
            return;
        }
        let round = leadership.confirm_round.take().expect("present above");
        leadership.last_confirmed_tick = now_tick;
        for read in round.reads {
            effects.push(Effect::Send {
                to: read.reply_to,
                message: Message::ReadIndexGranted {
                    read_id: read.read_id,
                    slot: round.read_slot,
                },
            });
        }
        if !leadership.waiting_reads.is_empty() {
            self.start_confirm_round(effects);
        }
    }

    fn send_heartbeat(&mut self, effects: &mut Vec<Effect>) {
        let decided_slot_max = self.decided_slot_max;
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        leadership.last_heartbeat_tick = self.now_tick;
        let message = Message::Heartbeat {
            ballot: leadership.ballot,
            decided_slot_max,
        };
        effects.push(Effect::Broadcast {
            role: Role::Proposer,
            message: message.clone(),
        });
        effects.push(Effect::Broadcast {
            role: Role::Learner,
            message,
        });
    }

    fn leader_tick(&mut self, effects: &mut Vec<Effect>) {
        let now_tick = self.now_tick;
        let options = self.options.clone();
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        if now_tick >= leadership.last_confirmed_tick + options.leader_timeout_ticks {
            // No quorum has confirmed us for a whole leader timeout: we may be cut off.
            // Stop heartbeats so that a proposer that can reach the acceptors takes over.
            self.become_follower(None, effects);
            return;
        }
        for (slot, in_flight) in leadership.in_flight.iter_mut() {
            if now_tick >= in_flight.sent_tick + options.retransmit_ticks {
                in_flight.sent_tick = now_tick;
                effects.push(Effect::Broadcast {
                    role: Role::Acceptor,
                    message: Message::Accept {
                        ballot: leadership.ballot,
                        slot: *slot,
                        value: in_flight.value.clone(),
                    },
                });
            }
        }
        let confirm_stale = leadership
            .confirm_round
            .as_ref()
            .is_some_and(|round| now_tick >= round.started_tick + options.retransmit_ticks);
        let heartbeat_due =
            now_tick >= leadership.last_heartbeat_tick + options.heartbeat_interval_ticks;
        if heartbeat_due {
            self.send_heartbeat(effects);
        }
        let State::Leader(leadership) = &self.state else {
            return;
        };
        if confirm_stale || (heartbeat_due && leadership.confirm_round.is_none()) {
            // The heartbeat's confirmation round doubles as the leader's liveness check.
            self.start_confirm_round(effects);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUORUM: usize = 2;

    fn proposer(id: u32) -> Proposer {
        let mut options = ProposerOptions::new(id, QUORUM, 10, 100);
        options.max_slots_in_flight = 2;
        Proposer::new(options, 0)
    }

    fn command(number: u128, key: &str, value: &str) -> Command {
        Command {
            request_id: RequestId(number),
            key: key.into(),
            value: value.into(),
        }
    }

    fn tick_until_candidate(proposer: &mut Proposer) -> (Ballot, Slot, Vec<Effect>) {
        for _ in 0..1000 {
            let effects = proposer.tick();
            for effect in &effects {
                if let Effect::Broadcast {
                    message: Message::Prepare { ballot, from_slot },
                    ..
                } = effect
                {
                    return (*ballot, *from_slot, effects.clone());
                }
            }
        }
        panic!("no election within 1000 ticks");
    }

    fn elect(proposer: &mut Proposer, accepted: Vec<Vec<AcceptedEntry>>) -> (Ballot, Vec<Effect>) {
        let (ballot, _, _) = tick_until_candidate(proposer);
        let mut effects = Vec::new();
        for (index, entries) in accepted.into_iter().enumerate() {
            effects.extend(proposer.handle(
                NodeId::acceptor(index as u32 + 1),
                Message::Promise {
                    ballot,
                    accepted: entries,
                },
            ));
        }
        assert!(proposer.is_leader());
        (ballot, effects)
    }

    fn accepts(effects: &[Effect]) -> Vec<(Slot, Value)> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Broadcast {
                    message: Message::Accept { slot, value, .. },
                    ..
                } => Some((*slot, value.clone())),
                _ => None,
            })
            .collect()
    }

    fn sent(effects: &[Effect]) -> Vec<(NodeId, Message)> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Send { to, message } => Some((*to, message.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn follower_starts_an_election_after_the_leader_timeout_and_persists_the_round_first() {
        let mut proposer = proposer(1);
        for _ in 0..100 {
            assert!(proposer.tick().is_empty(), "no election before the timeout");
        }
        let (ballot, from_slot, effects) = tick_until_candidate(&mut proposer);
        assert_eq!(ballot, Ballot::new(1, 1));
        assert_eq!(from_slot, 1);
        assert_eq!(
            effects[0],
            Effect::PersistRound(1),
            "durable before Prepare leaves"
        );
    }

    #[test]
    fn a_leader_covers_in_its_next_phase_one_the_slots_it_decided_but_no_learner_applied() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        let client = NodeId::client(1);
        proposer.handle(
            client,
            Message::Write {
                command: command(1, "k", "v"),
                client,
            },
        );
        for acceptor in 1..=2 {
            proposer.handle(
                NodeId::acceptor(acceptor),
                Message::Accepted { ballot, slot: 1 },
            );
        }
        assert_eq!(
            proposer.status(),
            RoleStatus::Proposer {
                state: ProposerState::Leader,
                ballot,
                leader: Some(1),
                decided_slot_max: 1
            }
        );
        // Deposed before any learner reported slot 1 applied.
        proposer.handle(
            NodeId::acceptor(3),
            Message::Rejected {
                ballot,
                promised: Ballot::new(ballot.round + 1, 2),
            },
        );
        let (_, from_slot, _) = tick_until_candidate(&mut proposer);
        assert_eq!(
            from_slot, 1,
            "slot 1 may be unlearnable from the votes as they stand: phase 1 covers it"
        );
        // Once a learner applied it, phase 1 starts after it.
        proposer.handle(
            NodeId::learner(1),
            Message::LearnerProgress { applied_slot: 1 },
        );
        proposer.handle(
            NodeId::acceptor(1),
            Message::Rejected {
                ballot: Ballot::new(ballot.round + 2, 1),
                promised: Ballot::new(ballot.round + 3, 2),
            },
        );
        for _ in 0..1000 {
            for effect in proposer.tick() {
                if let Effect::Broadcast {
                    message: Message::Prepare { from_slot, .. },
                    ..
                } = effect
                {
                    assert_eq!(from_slot, 2);
                    return;
                }
            }
        }
        panic!("no second election");
    }

    #[test]
    fn a_restarted_proposer_never_reuses_a_persisted_round() {
        let mut proposer = Proposer::new(ProposerOptions::new(2, QUORUM, 10, 100), 7);
        let (ballot, _, _) = tick_until_candidate(&mut proposer);
        assert_eq!(ballot, Ballot::new(8, 2));
    }

    #[test]
    fn new_leader_re_proposes_value_accepted_by_minority_and_fills_holes_with_noops() {
        let mut options = ProposerOptions::new(2, QUORUM, 10, 100);
        options.max_slots_in_flight = 2;
        let mut proposer = Proposer::new(options, 5);
        let minority_value = Value::Batch(vec![command(1, "k", "minority")]);
        let older_value = Value::Batch(vec![command(2, "k", "older")]);
        let promises = vec![
            vec![
                AcceptedEntry {
                    slot: 1,
                    ballot: Ballot::new(3, 1),
                    value: older_value,
                },
                AcceptedEntry {
                    slot: 3,
                    ballot: Ballot::new(3, 1),
                    value: Value::Noop,
                },
            ],
            vec![AcceptedEntry {
                slot: 1,
                ballot: Ballot::new(5, 3),
                value: minority_value.clone(),
            }],
        ];
        let (_, effects) = elect(&mut proposer, promises);
        let proposed = accepts(&effects);
        assert_eq!(
            proposed,
            vec![(1, minority_value), (2, Value::Noop), (3, Value::Noop)],
            "slot 1 takes the value of the highest ballot, slot 2 is a hole"
        );
    }

    #[test]
    fn leader_decides_a_slot_on_a_quorum_and_ignores_duplicate_votes() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        let client = NodeId::client(1);
        let effects = proposer.handle(
            client,
            Message::Write {
                command: command(9, "a", "1"),
                client,
            },
        );
        assert_eq!(accepts(&effects).len(), 1);
        let vote = Message::Accepted { ballot, slot: 1 };
        assert!(sent(&proposer.handle(NodeId::acceptor(1), vote.clone())).is_empty());
        assert!(
            sent(&proposer.handle(NodeId::acceptor(1), vote.clone())).is_empty(),
            "a duplicated vote is not a second acceptor"
        );
        let decided = sent(&proposer.handle(NodeId::acceptor(2), vote.clone()));
        assert_eq!(
            decided,
            vec![(
                client,
                Message::WriteDecided {
                    request_id: RequestId(9),
                    slot: 1,
                    client
                }
            )]
        );
        assert!(sent(&proposer.handle(NodeId::acceptor(3), vote)).is_empty());
    }

    #[test]
    fn a_leader_answers_a_forwarded_write_to_the_client_with_the_follower_as_relay() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        let client = NodeId::client(1);
        let follower = NodeId::proposer(2);
        proposer.handle(
            follower,
            Message::Write {
                command: command(4, "k", "v"),
                client,
            },
        );
        let mut effects = Vec::new();
        for acceptor in 1..=2 {
            effects.extend(proposer.handle(
                NodeId::acceptor(acceptor),
                Message::Accepted { ballot, slot: 1 },
            ));
        }
        assert_eq!(
            effects,
            vec![Effect::Answer {
                client,
                relay: follower,
                message: Message::WriteDecided {
                    request_id: RequestId(4),
                    slot: 1,
                    client
                }
            }]
        );
    }

    #[test]
    fn leader_batches_writes_while_the_pipeline_is_full() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        let client = NodeId::client(1);
        let mut proposed = Vec::new();
        for number in 0..10 {
            let effects = proposer.handle(
                client,
                Message::Write {
                    command: command(number, "k", &number.to_string()),
                    client,
                },
            );
            proposed.extend(accepts(&effects));
        }
        assert_eq!(proposed.len(), 2, "two slots in flight at most");
        let mut freed = Vec::new();
        for acceptor in 1..=2 {
            freed.extend(proposer.handle(
                NodeId::acceptor(acceptor),
                Message::Accepted { ballot, slot: 1 },
            ));
        }
        let batch = accepts(&freed);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].0, 3);
        assert_eq!(
            batch[0].1.commands().len(),
            8,
            "the queued writes share one slot"
        );
    }

    #[test]
    fn a_higher_ballot_deposes_the_leader_and_its_pending_writes_are_refused() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        let client = NodeId::client(1);
        proposer.handle(
            client,
            Message::Write {
                command: command(5, "k", "v"),
                client,
            },
        );
        let effects = proposer.handle(
            NodeId::acceptor(1),
            Message::Rejected {
                ballot,
                promised: Ballot::new(4, 2),
            },
        );
        assert!(!proposer.is_leader());
        assert!(matches!(
            sent(&effects)[0].1,
            Message::WriteRefused {
                request_id: RequestId(5),
                ..
            }
        ));
        let (next, _, _) = tick_until_candidate(&mut proposer);
        assert!(
            next > Ballot::new(4, 2),
            "the next ballot is above the one seen"
        );
    }

    #[test]
    fn a_follower_that_hears_heartbeats_never_starts_an_election() {
        let mut proposer = proposer(2);
        for tick in 0..2000 {
            if tick % 10 == 0 {
                proposer.handle(
                    NodeId::proposer(1),
                    Message::Heartbeat {
                        ballot: Ballot::new(1, 1),
                        decided_slot_max: 0,
                    },
                );
            }
            let effects = proposer.tick();
            assert!(accepts(&effects).is_empty() && effects.is_empty());
        }
    }

    #[test]
    fn a_candidate_that_hears_a_live_leader_abandons_its_election() {
        let mut proposer = proposer(2);
        tick_until_candidate(&mut proposer);
        proposer.handle(
            NodeId::proposer(1),
            Message::Heartbeat {
                ballot: Ballot::new(1, 1),
                decided_slot_max: 0,
            },
        );
        assert_eq!(
            proposer.status(),
            RoleStatus::Proposer {
                state: ProposerState::Follower,
                ballot: Ballot::new(1, 2),
                leader: Some(1),
                decided_slot_max: 0
            }
        );
    }

    /// Proposer 2, following proposer 1 after its heartbeat, and a client's write.
    fn follower_of_proposer_1_and_a_write() -> (Proposer, NodeId, Message) {
        let mut proposer = proposer(2);
        proposer.handle(
            NodeId::proposer(1),
            Message::Heartbeat {
                ballot: Ballot::new(1, 1),
                decided_slot_max: 0,
            },
        );
        let client = NodeId::client(1);
        let write = Message::Write {
            command: command(1, "k", "v"),
            client,
        };
        (proposer, client, write)
    }

    #[test]
    fn followers_forward_writes_once_and_relay_the_answer() {
        let (mut proposer, client, write) = follower_of_proposer_1_and_a_write();
        let forwarded = sent(&proposer.handle(client, write.clone()));
        assert_eq!(forwarded, vec![(NodeId::proposer(1), write.clone())]);
        let bounced = sent(&proposer.handle(NodeId::proposer(3), write));
        assert!(
            matches!(bounced[0].1, Message::WriteRefused { .. }),
            "a forwarded write is not forwarded again"
        );
        let answer = Message::WriteDecided {
            request_id: RequestId(1),
            slot: 4,
            client,
        };
        let relayed = sent(&proposer.handle(NodeId::proposer(1), answer.clone()));
        assert_eq!(relayed, vec![(client, answer)]);
    }

    #[test]
    fn a_follower_cut_off_from_its_leader_refuses_writes_instead_of_forwarding_them() {
        let (mut proposer, client, write) = follower_of_proposer_1_and_a_write();
        proposer.on_disconnected(NodeId::proposer(1));
        proposer.on_disconnected(NodeId::acceptor(1)); // other roles do not matter
        let refused = sent(&proposer.handle(client, write.clone()));
        assert_eq!(
            refused,
            vec![(
                client,
                Message::WriteRefused {
                    request_id: RequestId(1),
                    leader_hint: None,
                    client,
                }
            )],
            "no forward into a closed connection, and no hint to chase it"
        );
        assert_eq!(
            proposer.leader_hint(),
            Some(1),
            "it still believes proposer 1 leads"
        );
        proposer.on_connected(NodeId::proposer(1));
        let forwarded = sent(&proposer.handle(client, write.clone()));
        assert_eq!(forwarded, vec![(NodeId::proposer(1), write)]);
    }

    #[test]
    fn read_index_is_granted_after_a_quorum_confirms_with_the_slots_assigned_before() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        let client = NodeId::client(1);
        proposer.handle(
            client,
            Message::Write {
                command: command(1, "k", "v"),
                client,
            },
        );
        let effects = proposer.handle(client, Message::ReadIndex { read_id: 7 });
        let sequence = effects
            .iter()
            .find_map(|effect| match effect {
                Effect::Broadcast {
                    message: Message::Confirm { sequence, .. },
                    ..
                } => Some(*sequence),
                _ => None,
            })
            .expect("a confirmation round starts");
        let confirmed = Message::Confirmed { ballot, sequence };
        assert!(sent(&proposer.handle(NodeId::acceptor(1), confirmed.clone())).is_empty());
        let granted = sent(&proposer.handle(NodeId::acceptor(3), confirmed));
        assert_eq!(
            granted,
            vec![(
                client,
                Message::ReadIndexGranted {
                    read_id: 7,
                    slot: 1
                }
            )],
            "the read waits for the write in slot 1, which was assigned before it arrived"
        );
    }

    #[test]
    fn a_leader_that_no_quorum_confirms_steps_down() {
        let mut proposer = proposer(1);
        elect(&mut proposer, vec![vec![], vec![]]);
        for _ in 0..=100 {
            proposer.tick();
        }
        assert!(
            !proposer.is_leader(),
            "cut off from the acceptors, it stops leading"
        );
    }

    fn candidate_1() -> (Proposer, Ballot) {
        let mut proposer = proposer(1);
        let (ballot, _, _) = tick_until_candidate(&mut proposer);
        (proposer, ballot)
    }

    fn entry(slot: Slot, ballot: Ballot, text: &str) -> AcceptedEntry {
        AcceptedEntry {
            slot,
            ballot,
            value: Value::Batch(vec![command(slot as u128, "k", text)]),
        }
    }

    #[test]
    fn a_promise_reporting_a_value_accepted_at_the_promised_ballot_is_not_counted() {
        let (mut proposer, ballot) = candidate_1();
        for accepted in [
            vec![entry(1, ballot, "a")],
            vec![entry(1, Ballot::new(ballot.round + 1, 2), "a")],
        ] {
            proposer.handle(NodeId::acceptor(1), Message::Promise { ballot, accepted });
        }
        proposer.handle(
            NodeId::acceptor(2),
            Message::Promise {
                ballot,
                accepted: vec![],
            },
        );
        assert!(!proposer.is_leader(), "one honest Promise is no quorum");
        assert_eq!(
            proposer.alarms()[0],
            "acceptor 1 sent a Promise of 1.1 that reports slot 1 accepted under 1.1, not \
             below the promise: not counted (once)"
        );
    }

    #[test]
    fn a_promise_with_a_second_value_under_one_ballot_is_not_counted() {
        let (mut proposer, ballot) = candidate_1();
        let old = Ballot::new(0, 2);
        proposer.handle(
            NodeId::acceptor(1),
            Message::Promise {
                ballot,
                accepted: vec![entry(1, old, "a")],
            },
        );
        proposer.handle(
            NodeId::acceptor(2),
            Message::Promise {
                ballot,
                accepted: vec![entry(1, old, "b")],
            },
        );
        // Within one Promise too.
        proposer.handle(
            NodeId::acceptor(3),
            Message::Promise {
                ballot,
                accepted: vec![entry(2, old, "a"), entry(2, old, "b")],
            },
        );
        assert!(!proposer.is_leader());
        assert_eq!(
            proposer.alarms(),
            [
                "acceptor 2 sent a Promise of 1.1 that reports a second value for slot 1 under \
                 ballot 0.2: not counted (once)",
                "acceptor 3 sent a Promise of 1.1 that reports a second value for slot 2 under \
                 ballot 0.2: not counted (once)"
            ]
        );
    }

    #[test]
    fn a_promise_reporting_a_slot_far_beyond_its_from_slot_is_not_counted() {
        let (mut proposer, ballot) = candidate_1();
        let old = Ballot::new(0, 2);
        for slot in [u64::MAX, MAX_PLAUSIBLE_SLOT, 2 + MAX_PROMISE_SPAN_SLOTS] {
            proposer.handle(
                NodeId::acceptor(1),
                Message::Promise {
                    ballot,
                    accepted: vec![entry(slot, old, "a")],
                },
            );
        }
        assert_eq!(proposer.alarms().len(), 3);
        for acceptor in 1..=2 {
            proposer.handle(
                NodeId::acceptor(acceptor),
                Message::Promise {
                    ballot,
                    accepted: vec![entry(100, old, "a")],
                },
            );
        }
        assert!(proposer.is_leader(), "a report within the span is taken");
    }

    #[test]
    fn a_rejected_with_a_promised_round_of_u64_max_does_not_make_the_proposer_jump() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        proposer.handle(
            NodeId::acceptor(1),
            Message::Rejected {
                ballot,
                promised: Ballot::new(u64::MAX, 2),
            },
        );
        assert!(proposer.is_leader(), "an implausible ballot deposes nobody");
        assert_eq!(
            proposer.alarms(),
            [format!(
                "acceptor1 sent a Rejected naming ballot {}.2, more than 4294967296 rounds above \
                 the highest round known here (1): ignored (once)",
                u64::MAX
            )]
        );
        // A plausible higher ballot still deposes it, and the next round is one above.
        proposer.handle(
            NodeId::acceptor(1),
            Message::Rejected {
                ballot,
                promised: Ballot::new(5, 2),
            },
        );
        let (next, _, _) = tick_until_candidate(&mut proposer);
        assert_eq!(next, Ballot::new(6, 1));
    }

    #[test]
    fn a_heartbeat_under_another_proposers_or_an_implausible_ballot_is_ignored_with_an_alarm() {
        let mut proposer = proposer(2);
        for ballot in [Ballot::new(1, 3), Ballot::new(u64::MAX, 1)] {
            proposer.handle(
                NodeId::proposer(1),
                Message::Heartbeat {
                    ballot,
                    decided_slot_max: u64::MAX,
                },
            );
        }
        assert_eq!(
            proposer.leader_hint(),
            None,
            "no leader was taken from them"
        );
        assert_eq!(
            proposer.alarms()[0],
            "proposer 1 sent a Heartbeat under ballot 1.3, which belongs to proposer 3: \
             ignored (once)"
        );
        assert_eq!(proposer.alarms().len(), 2);
        let (ballot, _, _) = tick_until_candidate(&mut proposer);
        assert_eq!(ballot, Ballot::new(1, 2));
    }

    #[test]
    fn a_proposer_whose_rounds_are_exhausted_stops_campaigning_with_an_alarm() {
        let mut proposer = Proposer::new(ProposerOptions::new(1, QUORUM, 10, 100), u64::MAX);
        for _ in 0..1000 {
            assert!(proposer.tick().is_empty());
        }
        assert_eq!(
            proposer.alarms(),
            [format!(
                "no round is left above {}: this proposer stops campaigning (once)",
                u64::MAX
            )]
        );
    }

    #[test]
    fn a_write_from_a_client_is_answered_to_that_client_whatever_it_claims() {
        let mut proposer = proposer(2);
        let client = NodeId::client(1);
        let effects = proposer.handle(
            client,
            Message::Write {
                command: command(1, "k", "v"),
                client: NodeId::client(7),
            },
        );
        assert_eq!(
            sent(&effects),
            vec![(
                client,
                Message::WriteRefused {
                    request_id: RequestId(1),
                    leader_hint: None,
                    client,
                }
            )]
        );
        // Forwarded to a leader, the write names the real client.
        let (mut follower, _, _) = follower_of_proposer_1_and_a_write();
        let forwarded = sent(&follower.handle(
            client,
            Message::Write {
                command: command(1, "k", "v"),
                client: NodeId::client(7),
            },
        ));
        assert_eq!(
            forwarded,
            vec![(
                NodeId::proposer(1),
                Message::Write {
                    command: command(1, "k", "v"),
                    client
                }
            )]
        );
    }

    #[test]
    fn learner_progress_beyond_the_plausible_slots_or_from_a_non_learner_is_ignored() {
        let mut proposer = proposer(1);
        proposer.handle(
            NodeId::learner(1),
            Message::LearnerProgress {
                applied_slot: u64::MAX,
            },
        );
        proposer.handle(
            NodeId::client(1),
            Message::LearnerProgress { applied_slot: 5 },
        );
        assert_eq!(proposer.alarms().len(), 2);
        let (_, from_slot, _) = tick_until_candidate(&mut proposer);
        assert_eq!(from_slot, 1);
    }

    #[test]
    fn non_leaders_refuse_read_index_with_a_hint() {
        let mut proposer = proposer(2);
        proposer.handle(
            NodeId::proposer(1),
            Message::Heartbeat {
                ballot: Ballot::new(1, 1),
                decided_slot_max: 0,
            },
        );
        let answer = sent(&proposer.handle(NodeId::client(1), Message::ReadIndex { read_id: 3 }));
        assert_eq!(
            answer[0].1,
            Message::ReadIndexRefused {
                read_id: 3,
                leader_hint: Some(1)
            }
        );
    }
}
