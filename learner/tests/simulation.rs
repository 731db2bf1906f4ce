//! A seeded simulation: three acceptors cast votes that follow the Paxos rules (a losing
//! minority ballot, the chosen ballot, sometimes a re-proposal of the chosen value under a
//! higher ballot), and the network delivers them to two learners in random order, with
//! duplicates and losses, together with the learners' own gap-filling traffic.
//!
//! After every step the safety properties are checked: the learners never decide
//! different values for a slot (agreement), decide only the chosen value (validity), and
//! each one's applied state is a prefix of the other's history. At the end both must have
//! applied every slot (liveness through gap filling).
//!
//! A client subscribes at the first learner from slot 1 and must be pushed exactly the
//! writes that took effect (each request once), slot after slot without a gap.
//!
//! A second variant keeps only a few slots of history and cuts the second learner off
//! from the acceptors: it can only catch up from its peer, which no longer holds the slots
//! it missed, so it must take the peer's snapshot and continue from there.
//!
//! Replay one run with `SIM_SEED=<seed> cargo test -p learner --test simulation`.

use common::ballot::{Ballot, Slot};
use common::message::{AcceptedEntry, AppliedSlot, DecidedEntry, Message, RoleStatus};
use common::node::{NodeId, Role};
use common::value::{Command, RequestId, Value};
use learner::core::{Effect, Learner, LearnerOptions};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

const ACCEPTORS: u32 = 3;
const QUORUM_SIZE: usize = 2;
const LEARNERS: usize = 2;
const SLOTS: Slot = 40;
const KEYS: &[&str] = &["a", "b", "c", "d"];

/// Applies `values` in order, each request id once: an independent reference of what a
/// learner's state must be.
fn replay<'a>(values: impl IntoIterator<Item = &'a Value>) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    let mut applied = BTreeSet::new();
    for value in values {
        for command in value.commands() {
            if applied.insert(command.request_id) {
                let (key, value) = command.operation.as_put().expect("puts only");
                state.insert(key.to_string(), value.to_string());
            }
        }
    }
    state
}

fn key_count(learner: &Learner) -> u64 {
    match learner.status() {
        RoleStatus::Learner { key_count, .. } => key_count,
        other => panic!("a learner reported {other:?}"),
    }
}

/// Agreement: no slot is decided with two values by the two learners.
fn check_agreement(first: &Learner, second: &Learner) -> Result<(), String> {
    for slot in 1..=SLOTS {
        if let (Some(one), Some(other)) = (first.decided_value(slot), second.decided_value(slot)) {
            if one != other {
                return Err(format!("slot {slot} decided as {one:?} and as {other:?}"));
            }
        }
    }
    Ok(())
}

/// The state `behind` applied equals `ahead`'s decided history replayed up to
/// `behind.applied_slot()`.
fn check_applied_state_is_prefix(behind: &Learner, ahead: &Learner) -> Result<(), String> {
    if behind.is_installing_snapshot() {
        return Ok(()); // its state was dropped for a snapshot, and it serves no reads
    }
    let applied_slot = behind.applied_slot();
    let mut history = Vec::new();
    for slot in 1..=applied_slot {
        match ahead.decided_value(slot) {
            Some(value) => history.push(value),
            None => {
                return Err(format!(
                    "slot {slot} applied by one learner is unknown to the other, which applied {}",
                    ahead.applied_slot()
                ))
            }
        }
    }
    let expected = replay(history);
    for (key, value) in &expected {
        if behind.value_of(key) != Some(value.as_str()) {
            return Err(format!(
                "after slot {applied_slot} key {key:?} is {:?}, the other's history says {value:?}",
                behind.value_of(key)
            ));
        }
    }
    if key_count(behind) != expected.len() as u64 {
        return Err(format!(
            "after slot {applied_slot} the state holds {} keys, the other's history {}",
            key_count(behind),
            expected.len()
        ));
    }
    Ok(())
}

/// The state a learner applied equals the chosen values replayed up to its applied slot
/// (the check that still holds when the peers' histories no longer reach slot 1).
fn check_state_matches_chosen(
    learner: &Learner,
    chosen: &BTreeMap<Slot, Value>,
) -> Result<(), String> {
    if learner.is_installing_snapshot() {
        return Ok(()); // its state was dropped for a snapshot, and it serves no reads
    }
    let applied_slot = learner.applied_slot();
    let expected = replay(chosen.range(..=applied_slot).map(|(_, value)| value));
    for (key, value) in &expected {
        if learner.value_of(key) != Some(value.as_str()) {
            return Err(format!(
                "after slot {applied_slot} key {key:?} is {:?}, the chosen values say {value:?}",
                learner.value_of(key)
            ));
        }
    }
    if key_count(learner) != expected.len() as u64 {
        return Err(format!(
            "after slot {applied_slot} the state holds {} keys, the chosen values {}",
            key_count(learner),
            expected.len()
        ));
    }
    Ok(())
}

/// The writes a subscriber must see: every command the first time its request id is
/// decided, as (slot, index in the slot, key, value).
fn expected_notifications(chosen: &BTreeMap<Slot, Value>) -> Vec<(Slot, u32, String, String)> {
    let mut applied = BTreeSet::new();
    let mut writes = Vec::new();
    for (slot, value) in chosen {
        for (index, command) in value.commands().iter().enumerate() {
            if applied.insert(command.request_id) {
                let (key, value) = command.operation.as_put().expect("puts only");
                writes.push((*slot, index as u32, key.to_string(), value.to_string()));
            }
        }
    }
    writes
}

/// Validity: only the value the acceptors chose is decided.
fn check_validity(learner: &Learner, chosen: &BTreeMap<Slot, Value>) -> Result<(), String> {
    for (slot, value) in chosen {
        if let Some(decided) = learner.decided_value(*slot) {
            if decided != value {
                return Err(format!(
                    "slot {slot} decided {decided:?}, chosen was {value:?}"
                ));
            }
        }
    }
    Ok(())
}

fn check_safety(learners: &[Learner], chosen: &BTreeMap<Slot, Value>) -> Result<(), String> {
    let (first, second) = (&learners[0], &learners[1]);
    check_agreement(first, second)?;
    check_validity(first, chosen)?;
    check_validity(second, chosen)?;
    check_state_matches_chosen(first, chosen)?;
    check_state_matches_chosen(second, chosen)?;
    let full_history = |learner: &Learner| learner.history_start_slot() == 1;
    if !full_history(first) || !full_history(second) {
        return Ok(()); // the prefix check below needs every slot from 1
    }
    if first.applied_slot() <= second.applied_slot() {
        check_applied_state_is_prefix(first, second)
    } else {
        check_applied_state_is_prefix(second, first)
    }
}

/// One vote an acceptor will cast.
#[derive(Clone, Debug)]
struct Vote {
    slot: Slot,
    ballot: Ballot,
    value: Value,
}

/// The script of one run: what each slot chooses and the votes each acceptor casts,
/// slot by slot in ballot order.
struct Script {
    chosen: BTreeMap<Slot, Value>,
    votes_by_acceptor: Vec<BTreeMap<Slot, Vec<Vote>>>,
}

fn random_value(
    rng: &mut ChaCha8Rng,
    next_request_id: &mut u128,
    earlier: &mut Vec<Command>,
) -> Value {
    if rng.random_bool(0.1) {
        return Value::Noop;
    }
    let mut commands = Vec::new();
    for _ in 0..rng.random_range(1..=3) {
        if !earlier.is_empty() && rng.random_bool(0.2) {
            // A client retry: the same command again, possibly decided in a later slot.
            let retry = earlier[rng.random_range(0..earlier.len())].clone();
            commands.push(retry);
            continue;
        }
        *next_request_id += 1;
        let command = Command::put(
            RequestId(*next_request_id),
            KEYS[rng.random_range(0..KEYS.len())],
            format!("v{next_request_id}"),
        );
        earlier.push(command.clone());
        commands.push(command);
    }
    Value::Batch(commands)
}

fn random_acceptors(rng: &mut ChaCha8Rng, count: usize) -> Vec<u32> {
    let mut acceptors: Vec<u32> = (1..=ACCEPTORS).collect();
    acceptors.shuffle(rng);
    acceptors.truncate(count);
    acceptors
}

fn script(rng: &mut ChaCha8Rng) -> Script {
    let mut chosen = BTreeMap::new();
    let mut votes_by_acceptor = vec![BTreeMap::new(); ACCEPTORS as usize];
    let mut next_request_id = 0;
    let mut earlier = Vec::new();
    for slot in 1..=SLOTS {
        let mut round = rng.random_range(1..4u64);
        let mut phases: Vec<(Ballot, Value, Vec<u32>)> = Vec::new();
        if rng.random_bool(0.3) {
            // A leader that failed after reaching a minority: its value is not chosen.
            let losing = random_value(rng, &mut next_request_id, &mut earlier);
            phases.push((
                Ballot::new(round, 1),
                losing,
                random_acceptors(rng, QUORUM_SIZE - 1),
            ));
            round += 1;
        }
        let value = random_value(rng, &mut next_request_id, &mut earlier);
        let size = rng.random_range(QUORUM_SIZE..=ACCEPTORS as usize);
        phases.push((
            Ballot::new(round, 2),
            value.clone(),
            random_acceptors(rng, size),
        ));
        if rng.random_bool(0.3) {
            // A new leader re-proposes the chosen value under its own ballot and completes
            // a quorum with it.
            let size = rng.random_range(QUORUM_SIZE..=ACCEPTORS as usize);
            phases.push((
                Ballot::new(round + 1, 3),
                value.clone(),
                random_acceptors(rng, size),
            ));
        }
        chosen.insert(slot, value);
        for (ballot, value, acceptors) in phases {
            for acceptor in acceptors {
                let votes: &mut BTreeMap<Slot, Vec<Vote>> =
                    &mut votes_by_acceptor[acceptor as usize - 1];
                votes.entry(slot).or_default().push(Vote {
                    slot,
                    ballot,
                    value: value.clone(),
                });
            }
        }
    }
    Script {
        chosen,
        votes_by_acceptor,
    }
}

/// A simulated acceptor: casts its scripted votes and answers `SyncAccepted` from what it
/// accepted so far.
struct SimulatedAcceptor {
    id: u32,
    pending: BTreeMap<Slot, Vec<Vote>>,
    accepted: BTreeMap<Slot, AcceptedEntry>,
}

struct Envelope {
    from: NodeId,
    to: NodeId,
    message: Message,
}

/// The client subscribed at the first learner: what it was pushed.
#[derive(Default)]
struct SimulatedSubscriber {
    /// The next slot a push must start at (0 until the first push names it).
    next_slot: Slot,
    /// Every write pushed, as (slot, index, key, value).
    writes: Vec<(Slot, u32, String, String)>,
}

const SUBSCRIPTION: u64 = 7;
const SUBSCRIBER: NodeId = NodeId {
    role: Role::Client,
    id: 1,
};

impl SimulatedSubscriber {
    /// Takes one push, checking that it continues exactly where the last one ended.
    fn receive(&mut self, message: Message) -> Result<(), String> {
        let Message::Applied {
            stream_id,
            from_slot,
            to_slot,
            slots,
            ..
        } = message
        else {
            return Err(format!("the subscriber was sent {message:?}"));
        };
        if stream_id != SUBSCRIPTION || from_slot != self.next_slot.max(1) || to_slot < from_slot {
            return Err(format!(
                "a push covers [{from_slot}, {to_slot}) of stream {stream_id}, the subscriber expected slot {}",
                self.next_slot
            ));
        }
        for AppliedSlot { slot, writes, .. } in slots {
            if slot < from_slot || slot >= to_slot {
                return Err(format!(
                    "slot {slot} pushed outside [{from_slot}, {to_slot})"
                ));
            }
            for write in writes {
                self.writes
                    .push((slot, write.index, write.key, write.value));
            }
        }
        self.next_slot = to_slot;
        Ok(())
    }
}

struct Simulation {
    rng: ChaCha8Rng,
    learners: Vec<Learner>,
    acceptors: Vec<SimulatedAcceptor>,
    in_flight: Vec<Envelope>,
    persisted: Vec<BTreeSet<Slot>>,
    loss_probability: f64,
    duplicate_probability: f64,
    subscriber: SimulatedSubscriber,
    /// The second learner hears no acceptor (the variant with a short history).
    second_learner_cut_off: bool,
    /// Snapshots delivered from one learner to the other.
    snapshots_delivered: u64,
}

fn learner_node(index: usize) -> NodeId {
    NodeId::learner(index as u32 + 1)
}

impl Simulation {
    fn post(&mut self, from: NodeId, to: NodeId, message: Message) {
        let cut_off = self.second_learner_cut_off
            && (from.role == Role::Acceptor && to == learner_node(1)
                || from == learner_node(1) && to.role == Role::Acceptor);
        if cut_off {
            return;
        }
        if to == SUBSCRIBER {
            // The client's link is reliable here; what is checked is what the learner sends.
            let _ = self.subscriber.receive(message.clone()).map_err(|problem| {
                self.subscriber.writes.push((0, 0, problem, String::new()));
            });
            return;
        }
        if !self.rng.random_bool(self.loss_probability) {
            self.in_flight.push(Envelope { from, to, message });
        }
    }

    fn carry_out(&mut self, learner_index: usize, effects: Vec<Effect>) -> Result<(), String> {
        let from = learner_node(learner_index);
        for effect in effects {
            match effect {
                Effect::Persist(entry) => {
                    if !self.persisted[learner_index].insert(entry.slot) {
                        return Err(format!("{from} persisted slot {} twice", entry.slot));
                    }
                }
                Effect::Compact { retained, .. } | Effect::InstallSnapshot { retained, .. } => {
                    // The log is rewritten: it holds these slots and nothing else.
                    self.persisted[learner_index] =
                        retained.iter().map(|entry| entry.slot).collect();
                }
                Effect::PersistSnapshotChunk(_) => {}
                Effect::Send { to, message } => self.post(from, to, message),
                Effect::Broadcast { role, message } => {
                    let receivers: Vec<NodeId> = match role {
                        Role::Learner => (0..LEARNERS)
                            .filter(|index| *index != learner_index)
                            .map(learner_node)
                            .collect(),
                        Role::Acceptor => (1..=ACCEPTORS).map(NodeId::acceptor).collect(),
                        Role::Proposer | Role::Client => Vec::new(),
                    };
                    for to in receivers {
                        self.post(from, to, message.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// The next scripted vote of a random acceptor, sent to every learner.
    fn cast_vote(&mut self) -> bool {
        let candidates: Vec<usize> = (0..self.acceptors.len())
            .filter(|index| !self.acceptors[*index].pending.is_empty())
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let acceptor = &mut self.acceptors[candidates[self.rng.random_range(0..candidates.len())]];
        let slots: Vec<Slot> = acceptor.pending.keys().copied().collect();
        // Mostly the lowest pending slots, as a leader proposes them, sometimes any.
        let slot = slots[self.rng.random_range(0..slots.len().min(3))];
        let queue = acceptor.pending.get_mut(&slot).unwrap();
        let vote = queue.remove(0);
        if queue.is_empty() {
            acceptor.pending.remove(&slot);
        }
        let entry = AcceptedEntry {
            slot: vote.slot,
            ballot: vote.ballot,
            value: vote.value,
        };
        acceptor.accepted.insert(slot, entry.clone());
        let from = NodeId::acceptor(acceptor.id);
        for index in 0..LEARNERS {
            self.post(
                from,
                learner_node(index),
                Message::AcceptedValues {
                    entries: vec![entry.clone()],
                },
            );
        }
        true
    }

    fn deliver(&mut self) -> Result<bool, String> {
        if self.in_flight.is_empty() {
            return Ok(false);
        }
        let index = self.rng.random_range(0..self.in_flight.len());
        let envelope = if self.rng.random_bool(self.duplicate_probability) {
            let original = &self.in_flight[index];
            Envelope {
                from: original.from,
                to: original.to,
                message: original.message.clone(),
            }
        } else {
            self.in_flight.swap_remove(index)
        };
        match envelope.to.role {
            Role::Learner => {
                if matches!(&envelope.message, Message::SnapshotChunk { chunk } if chunk.last) {
                    self.snapshots_delivered += 1;
                }
                let learner_index = envelope.to.id as usize - 1;
                let effects = self.learners[learner_index].handle(envelope.from, envelope.message);
                self.carry_out(learner_index, effects)?;
            }
            Role::Acceptor => {
                let acceptor = &self.acceptors[envelope.to.id as usize - 1];
                if let Message::SyncAccepted { from_slot, to_slot } = envelope.message {
                    let entries: Vec<AcceptedEntry> = acceptor
                        .accepted
                        .range(from_slot..to_slot)
                        .map(|(_, entry)| entry.clone())
                        .collect();
                    let from = NodeId::acceptor(acceptor.id);
                    self.post(from, envelope.from, Message::AcceptedValues { entries });
                }
            }
            Role::Proposer | Role::Client => {}
        }
        Ok(true)
    }

    fn tick(&mut self, learner_index: usize) -> Result<(), String> {
        let effects = self.learners[learner_index].tick();
        self.carry_out(learner_index, effects)
    }
}

/// What one run found besides safety, for the variants' own checks.
struct Outcome {
    snapshots_delivered: u64,
}

/// One run; `retain_slots` shortens the learners' history (and cuts the second learner off
/// from the acceptors, so that it must catch up from its peer).
fn simulate(seed: u64, retain_slots: Option<u64>) -> Result<Outcome, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let Script {
        chosen,
        votes_by_acceptor,
    } = script(&mut rng);
    let loss_probability = rng.random_range(0.0..0.3);
    let options = |id: u32| {
        let mut options = LearnerOptions::new(id, QUORUM_SIZE);
        // Small chunks, so that a snapshot takes many, each of which may be lost,
        // duplicated or reordered.
        options.snapshot_chunk_bytes = 24 + (seed % 128) as usize;
        if let Some(retain_slots) = retain_slots {
            options.retain_slots = retain_slots;
        }
        options
    };
    let mut simulation = Simulation {
        rng,
        learners: (1..=LEARNERS as u32)
            .map(|id| Learner::new(options(id)))
            .collect(),
        acceptors: votes_by_acceptor
            .into_iter()
            .enumerate()
            .map(|(index, pending)| SimulatedAcceptor {
                id: index as u32 + 1,
                pending,
                accepted: BTreeMap::new(),
            })
            .collect(),
        in_flight: Vec::new(),
        persisted: vec![BTreeSet::new(); LEARNERS],
        loss_probability,
        duplicate_probability: 0.15,
        subscriber: SimulatedSubscriber::default(),
        second_learner_cut_off: retain_slots.is_some(),
        snapshots_delivered: 0,
    };
    let subscribed = simulation.learners[0].handle(
        SUBSCRIBER,
        Message::Subscribe {
            stream_id: SUBSCRIPTION,
            from_slot: 1,
        },
    );
    simulation.carry_out(0, subscribed)?;
    for index in 0..LEARNERS {
        for peer in (0..LEARNERS).filter(|peer| *peer != index) {
            let effects = simulation.learners[index].on_connected(learner_node(peer));
            simulation.carry_out(index, effects)?;
        }
    }
    // The voting phase: votes, deliveries and ticks interleaved at random, with losses.
    let mut step = 0u64;
    loop {
        step += 1;
        let progressed = match simulation.rng.random_range(0..10) {
            0..=2 => simulation.cast_vote(),
            3..=8 => simulation.deliver()?,
            _ => {
                let index = simulation.rng.random_range(0..LEARNERS);
                simulation.tick(index)?;
                true
            }
        };
        check_safety(&simulation.learners, &chosen)
            .map_err(|problem| format!("step {step}: {problem}"))?;
        let votes_left = simulation
            .acceptors
            .iter()
            .any(|acceptor| !acceptor.pending.is_empty());
        if !progressed && !votes_left {
            break;
        }
        if step > 100_000 {
            return Err("the voting phase did not end".into());
        }
    }
    // The leader's heartbeat names the last decided slot; from here on nothing is lost,
    // so gap filling must bring both learners to the end.
    simulation.loss_probability = 0.0;
    for index in 0..LEARNERS {
        let heartbeat = Message::Heartbeat {
            ballot: Ballot::new(9, 1),
            decided_slot_max: SLOTS,
        };
        simulation.post(NodeId::proposer(1), learner_node(index), heartbeat);
    }
    let mut rounds = 0;
    while simulation
        .learners
        .iter()
        .any(|learner| learner.applied_slot() < SLOTS)
    {
        rounds += 1;
        if rounds > 2_000 {
            let applied: Vec<Slot> = simulation
                .learners
                .iter()
                .map(Learner::applied_slot)
                .collect();
            let transfers: Vec<String> = simulation
                .learners
                .iter()
                .map(|learner| {
                    format!(
                        "installing {}, sent {:?}, installed {:?}, history from {}, alarms {:?}",
                        learner.is_installing_snapshot(),
                        learner.snapshots_sent(),
                        learner.snapshots_installed(),
                        learner.history_start_slot(),
                        learner.alarms()
                    )
                })
                .collect();
            return Err(format!(
                "learners stuck at applied slots {applied:?} ({transfers:?})"
            ));
        }
        for index in 0..LEARNERS {
            simulation.tick(index)?;
        }
        while simulation.deliver()? {
            check_safety(&simulation.learners, &chosen)?;
        }
    }
    let expected = replay(chosen.values());
    for learner in &simulation.learners {
        for (key, value) in &expected {
            if learner.value_of(key) != Some(value.as_str()) {
                return Err(format!("final state differs at key {key:?}"));
            }
        }
        if key_count(learner) != expected.len() as u64 {
            return Err("final state holds extra keys".into());
        }
    }
    let notified = std::mem::take(&mut simulation.subscriber.writes);
    let expected = expected_notifications(&chosen);
    if notified != expected {
        let first_difference = notified
            .iter()
            .zip(&expected)
            .position(|(got, wanted)| got != wanted)
            .unwrap_or(notified.len().min(expected.len()));
        return Err(format!(
            "the subscriber's writes differ from write {first_difference} on: pushed {:?}, expected {:?}",
            notified.get(first_difference),
            expected.get(first_difference)
        ));
    }
    Ok(Outcome {
        snapshots_delivered: simulation.snapshots_delivered,
    })
}

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(seed) => vec![seed.trim().parse().expect("SIM_SEED is a number")],
        Err(_) => (1..=40).collect(),
    }
}

#[test]
fn learners_agree_and_apply_prefixes_under_reordered_duplicated_and_lost_votes() {
    for seed in seeds() {
        let outcome = std::panic::catch_unwind(|| simulate(seed, None));
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(problem)) => panic!("SIM_SEED={seed}: {problem}"),
            Err(_) => panic!("SIM_SEED={seed}: the learner panicked (see above)"),
        }
    }
}

#[test]
fn a_learner_behind_its_peers_short_history_catches_up_from_a_snapshot() {
    let mut snapshots = 0;
    for seed in seeds() {
        let retain_slots = 1 + seed % 6;
        let outcome = std::panic::catch_unwind(|| simulate(seed, Some(retain_slots)));
        match outcome {
            Ok(Ok(outcome)) => snapshots += outcome.snapshots_delivered,
            Ok(Err(problem)) => {
                panic!("SIM_SEED={seed} (history of {retain_slots} slots): {problem}")
            }
            Err(_) => panic!("SIM_SEED={seed}: the learner panicked (see above)"),
        }
    }
    eprintln!("{snapshots} snapshots delivered over the runs");
    assert!(
        snapshots > 0,
        "no run needed a snapshot: the variant does not test what it should"
    );
}

fn noop_or_write(request_id: u128, value: &str) -> Value {
    Value::Batch(vec![Command::put(RequestId(request_id), "k", value)])
}

/// A checker that never fails proves nothing: a learner fed a wrong value by a faulty peer
/// must be caught.
#[test]
fn the_checkers_catch_a_learner_that_decided_a_different_value() {
    let truth = noop_or_write(1, "true");
    let lie = noop_or_write(2, "lie");
    let mut honest = Learner::new(LearnerOptions::new(1, QUORUM_SIZE));
    for acceptor in [1, 2] {
        honest.handle(
            NodeId::acceptor(acceptor),
            Message::AcceptedValues {
                entries: vec![AcceptedEntry {
                    slot: 1,
                    ballot: Ballot::new(1, 1),
                    value: truth.clone(),
                }],
            },
        );
    }
    let misled = Learner::recover(
        LearnerOptions::new(2, QUORUM_SIZE),
        [DecidedEntry {
            slot: 1,
            value: lie,
        }],
    );
    assert!(check_agreement(&honest, &misled).is_err());
    assert!(check_applied_state_is_prefix(&misled, &honest).is_err());
    let chosen = BTreeMap::from([(1, truth)]);
    assert!(check_validity(&misled, &chosen).is_err());
    assert!(check_safety(&[honest, misled], &chosen).is_err());
}
