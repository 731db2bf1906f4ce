//! The real protocol cores of every role (3 acceptors, 2 proposers, 2 learners) in one
//! thread, over a seeded in-memory network that reorders, duplicates and drops messages,
//! with acceptors, proposers and learners crashing and recovering from what they made
//! durable. After every step: agreement (no two learners decide different values for a
//! slot) and validity (only proposed commands or no-ops are decided); at the end, with the
//! network healed, every write a client saw decided is applied, exactly once.
//!
//! A failure prints its seed; `SIM_SEED=<seed> cargo test --test protocol` replays it.

use acceptor::core::{Acceptor, Effect as AcceptorEffect, Record};
use common::ballot::Slot;
use common::message::{DecidedEntry, Message, StateSnapshot};
use common::node::{NodeId, Role};
use common::value::{Command, RequestId, Value};
use learner::core::{Effect as LearnerEffect, Learner, LearnerOptions};
use proposer::core::{Effect as ProposerEffect, Proposer, ProposerOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap, HashSet};

const ACCEPTORS: u32 = 3;
const PROPOSERS: u32 = 2;
const LEARNERS: u32 = 2;
const QUORUM: usize = 2;
const CLIENT: NodeId = NodeId {
    role: Role::Client,
    id: 1,
};

struct Faults {
    drop_percent: u32,
    duplicate_percent: u32,
    crash_percent_per_mille: u32,
    client_writes: bool,
}

struct World {
    random: ChaCha8Rng,
    acceptors: BTreeMap<u32, Acceptor>,
    acceptor_logs: BTreeMap<u32, Vec<Record>>,
    proposers: BTreeMap<u32, Proposer>,
    proposer_rounds: BTreeMap<u32, u64>,
    learners: BTreeMap<u32, Learner>,
    learner_logs: BTreeMap<u32, Vec<DecidedEntry>>,
    /// The snapshot each learner's log starts with, once it replaced its log by one.
    learner_snapshots: BTreeMap<u32, StateSnapshot>,
    network: Vec<(NodeId, NodeId, Message)>,
    proposed: HashMap<RequestId, Command>,
    decided_writes: HashMap<RequestId, Slot>,
    next_request: u128,
    seed: u64,
    step: u64,
    /// The first value seen decided per slot, and per learner the applied prefix checked.
    first_decided: HashMap<Slot, Value>,
    checked_through: HashMap<u32, Slot>,
}

fn nodes_of(role: Role) -> Vec<NodeId> {
    let count = match role {
        Role::Acceptor => ACCEPTORS,
        Role::Proposer => PROPOSERS,
        Role::Learner => LEARNERS,
        Role::Client => 1,
    };
    (1..=count).map(|id| NodeId { role, id }).collect()
}

fn proposer_options(id: u32, seed: u64) -> ProposerOptions {
    let mut options = ProposerOptions::new(id, QUORUM, 3, 12);
    options.seed = seed;
    options.max_slots_in_flight = 4;
    options.max_batch_commands = 3;
    options.retransmit_ticks = 8;
    options
}

impl World {
    fn new(seed: u64) -> World {
        let mut world = World {
            random: ChaCha8Rng::seed_from_u64(seed),
            acceptors: BTreeMap::new(),
            acceptor_logs: BTreeMap::new(),
            proposers: BTreeMap::new(),
            proposer_rounds: BTreeMap::new(),
            learners: BTreeMap::new(),
            learner_logs: BTreeMap::new(),
            learner_snapshots: BTreeMap::new(),
            network: Vec::new(),
            proposed: HashMap::new(),
            decided_writes: HashMap::new(),
            next_request: 1,
            seed,
            step: 0,
            first_decided: HashMap::new(),
            checked_through: HashMap::new(),
        };
        for id in 1..=ACCEPTORS {
            world.acceptors.insert(id, Acceptor::new(id));
            world.acceptor_logs.insert(id, Vec::new());
        }
        for id in 1..=PROPOSERS {
            world
                .proposers
                .insert(id, Proposer::new(proposer_options(id, seed), 0));
            world.proposer_rounds.insert(id, 0);
        }
        for id in 1..=LEARNERS {
            world.learners.insert(id, learner(id));
            world.learner_logs.insert(id, Vec::new());
        }
        world
    }

    fn send(&mut self, from: NodeId, to: NodeId, message: Message) {
        if from != to {
            self.network.push((from, to, message));
        }
    }

    fn broadcast(&mut self, from: NodeId, role: Role, message: Message) {
        for to in nodes_of(role) {
            self.send(from, to, message.clone());
        }
    }

    fn carry_out_acceptor(&mut self, id: u32, effects: Vec<AcceptorEffect>) {
        let me = NodeId::acceptor(id);
        for effect in effects {
            match effect {
                AcceptorEffect::Persist(record) => {
                    self.acceptor_logs.get_mut(&id).unwrap().push(record)
                }
                AcceptorEffect::Send { to, message } => self.send(me, to, message),
                AcceptorEffect::SendToLearners(message) => {
                    self.broadcast(me, Role::Learner, message)
                }
            }
        }
    }

    fn carry_out_proposer(&mut self, id: u32, effects: Vec<ProposerEffect>) {
        let me = NodeId::proposer(id);
        for effect in effects {
            match effect {
                ProposerEffect::PersistRound(round) => {
                    self.proposer_rounds.insert(id, round);
                }
                ProposerEffect::Send { to, message } => self.send(me, to, message),
                ProposerEffect::Broadcast { role, message } => self.broadcast(me, role, message),
            }
        }
    }

    fn carry_out_learner(&mut self, id: u32, effects: Vec<LearnerEffect>) {
        let me = NodeId::learner(id);
        for effect in effects {
            match effect {
                LearnerEffect::Persist(entry) => {
                    self.learner_logs.get_mut(&id).unwrap().push(entry)
                }
                LearnerEffect::Send { to, message } => self.send(me, to, message),
                LearnerEffect::Broadcast { role, message } => self.broadcast(me, role, message),
                LearnerEffect::PersistSnapshot { snapshot, retained } => {
                    self.learner_snapshots.insert(id, snapshot);
                    *self.learner_logs.get_mut(&id).unwrap() = retained;
                }
            }
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, message: Message) {
        match to.role {
            Role::Acceptor => {
                let effects = self
                    .acceptors
                    .get_mut(&to.id)
                    .unwrap()
                    .handle(from, message);
                self.carry_out_acceptor(to.id, effects);
            }
            Role::Proposer => {
                let effects = self
                    .proposers
                    .get_mut(&to.id)
                    .unwrap()
                    .handle(from, message);
                self.carry_out_proposer(to.id, effects);
            }
            Role::Learner => {
                let effects = self.learners.get_mut(&to.id).unwrap().handle(from, message);
                self.carry_out_learner(to.id, effects);
            }
            Role::Client => {
                if let Message::WriteDecided {
                    request_id, slot, ..
                } = message
                {
                    self.decided_writes.insert(request_id, slot);
                }
            }
        }
    }

    fn tick_everyone(&mut self) {
        for id in 1..=PROPOSERS {
            let effects = self.proposers.get_mut(&id).unwrap().tick();
            self.carry_out_proposer(id, effects);
        }
        for id in 1..=LEARNERS {
            let effects = self.learners.get_mut(&id).unwrap().tick();
            self.carry_out_learner(id, effects);
        }
    }

    fn client_write(&mut self) {
        let request_id = RequestId(self.next_request);
        self.next_request += 1;
        let command = Command {
            request_id,
            key: format!("k{}", self.random.random_range(0..4)),
            value: format!("v{}", request_id.0),
        };
        self.proposed.insert(request_id, command.clone());
        let proposer = NodeId::proposer(self.random.random_range(1..=PROPOSERS));
        self.send(
            CLIENT,
            proposer,
            Message::Write {
                command,
                client: CLIENT,
            },
        );
    }

    /// A client retry of an earlier write, with the same request id.
    fn client_retry(&mut self) {
        if self.next_request <= 1 {
            return;
        }
        let request_id = RequestId(self.random.random_range(1..self.next_request));
        let command = self.proposed[&request_id].clone();
        let proposer = NodeId::proposer(self.random.random_range(1..=PROPOSERS));
        self.send(
            CLIENT,
            proposer,
            Message::Write {
                command,
                client: CLIENT,
            },
        );
    }

    fn crash_one(&mut self) {
        match self.random.random_range(0..3) {
            0 => {
                let id = self.random.random_range(1..=ACCEPTORS);
                let records = self.acceptor_logs[&id].clone();
                self.acceptors.insert(id, Acceptor::recover(id, records));
                self.network
                    .retain(|(_, to, _)| *to != NodeId::acceptor(id));
            }
            1 => {
                let id = self.random.random_range(1..=PROPOSERS);
                let round = self.proposer_rounds[&id];
                let options = proposer_options(id, self.seed ^ self.step);
                self.proposers.insert(id, Proposer::new(options, round));
                self.network
                    .retain(|(_, to, _)| *to != NodeId::proposer(id));
            }
            _ => {
                let id = self.random.random_range(1..=LEARNERS);
                let entries = self.learner_logs[&id].clone();
                let snapshot = self.learner_snapshots.get(&id).cloned();
                self.learners.insert(
                    id,
                    Learner::recover_from_snapshot(
                        LearnerOptions::new(id, QUORUM),
                        snapshot,
                        entries,
                    ),
                );
                self.network.retain(|(_, to, _)| *to != NodeId::learner(id));
                self.checked_through.remove(&id);
                for peer in nodes_of(Role::Learner)
                    .into_iter()
                    .chain(nodes_of(Role::Acceptor))
                {
                    let effects = self.learners.get_mut(&id).unwrap().on_connected(peer);
                    self.carry_out_learner(id, effects);
                }
            }
        }
    }

    fn step(&mut self, faults: &Faults) {
        self.step += 1;
        let roll = self.random.random_range(0..100);
        if roll < 10 {
            self.tick_everyone();
        } else if roll < 14 && faults.client_writes {
            self.client_write();
        } else if roll < 15 && faults.client_writes {
            self.client_retry();
        } else if !self.network.is_empty() {
            let index = self.random.random_range(0..self.network.len());
            let (from, to, message) = if self.random.random_range(0..100) < faults.duplicate_percent
            {
                self.network[index].clone()
            } else {
                self.network.swap_remove(index)
            };
            if self.random.random_range(0..100) >= faults.drop_percent {
                self.deliver(from, to, message);
            }
        }
        if self.random.random_range(0..1000) < faults.crash_percent_per_mille {
            self.crash_one();
        }
        self.check_agreement_and_validity();
    }

    /// Agreement and validity. Each learner's slots above what was already checked for it
    /// are compared with the first value any learner decided for that slot.
    fn check_agreement_and_validity(&mut self) {
        for (id, learner) in &self.learners {
            let checked_through = self.checked_through.get(id).copied().unwrap_or(0);
            for slot in checked_through + 1..=learner.known_slot_max() {
                let Some(value) = learner.decided_value(slot) else {
                    continue;
                };
                match self.first_decided.get(&slot) {
                    Some(first) => assert_eq!(
                        first, value,
                        "agreement violated in slot {slot} (seed {}, step {})",
                        self.seed, self.step
                    ),
                    None => {
                        for command in value.commands() {
                            assert_eq!(
                                self.proposed.get(&command.request_id),
                                Some(command),
                                "validity violated in slot {slot}: a command nobody proposed \
                                 (seed {})",
                                self.seed
                            );
                        }
                        self.first_decided.insert(slot, value.clone());
                    }
                }
            }
            self.checked_through.insert(*id, learner.applied_slot());
        }
    }

    /// Heals the network and runs until every decided write is applied everywhere.
    fn settle(&mut self) {
        let faults = Faults {
            drop_percent: 0,
            duplicate_percent: 0,
            crash_percent_per_mille: 0,
            client_writes: false,
        };
        for _ in 0..200_000 {
            self.step(&faults);
            let target = self.decided_writes.values().copied().max().unwrap_or(0);
            let applied: Vec<Slot> = self
                .learners
                .values()
                .map(|learner| learner.applied_slot())
                .collect();
            let known = self
                .learners
                .values()
                .map(|learner| learner.known_slot_max())
                .max()
                .unwrap_or(0);
            if applied.iter().all(|slot| *slot >= target.max(known)) {
                return;
            }
        }
        panic!("seed {}: the cluster did not settle", self.seed);
    }

    /// Every write a client saw decided is applied, exactly once, at every learner: each
    /// key holds the value of the last decided write to it (by the first slot it was
    /// decided in).
    fn check_decided_writes_applied_once(&self) {
        let mut first_slot: HashMap<RequestId, Slot> = HashMap::new();
        let target = self.decided_writes.values().copied().max().unwrap_or(0);
        let reference = self.learners.values().next().unwrap();
        let mut expected: BTreeMap<String, (Slot, String)> = BTreeMap::new();
        let mut seen = HashSet::new();
        for slot in 1..=reference.applied_slot() {
            let value = reference
                .decided_value(slot)
                .unwrap_or_else(|| panic!("seed {}: applied slot {slot} unknown", self.seed));
            for command in value.commands() {
                if seen.insert(command.request_id) {
                    first_slot.insert(command.request_id, slot);
                    expected.insert(command.key.clone(), (slot, command.value.clone()));
                }
            }
        }
        for (request_id, slot) in &self.decided_writes {
            let first = first_slot.get(request_id).unwrap_or_else(|| {
                panic!(
                    "seed {}: write {request_id} acknowledged in slot {slot} was lost",
                    self.seed
                )
            });
            assert!(first <= slot, "seed {}: applied after its slot", self.seed);
        }
        for learner in self.learners.values() {
            assert!(learner.applied_slot() >= target);
            for (key, (_, value)) in &expected {
                assert_eq!(
                    learner.value_of(key),
                    Some(value.as_str()),
                    "seed {}: learners disagree on {key}",
                    self.seed
                );
            }
        }
    }
}

fn learner(id: u32) -> Learner {
    Learner::new(LearnerOptions::new(id, QUORUM))
}

fn run(seed: u64, steps: u64) -> World {
    let mut world = World::new(seed);
    let faults = Faults {
        drop_percent: 5,
        duplicate_percent: 5,
        crash_percent_per_mille: 2,
        client_writes: true,
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..steps {
            world.step(&faults);
        }
        world.settle();
        world.check_decided_writes_applied_once();
        world
    }));
    match outcome {
        Ok(world) => world,
        Err(panic) => {
            eprintln!(
                "failed with seed {seed}: replay with SIM_SEED={seed} cargo test --test protocol"
            );
            std::panic::resume_unwind(panic)
        }
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIM_SEED is a number")],
        Err(_) => (1..=60).collect(),
    }
}

#[test]
fn two_competing_proposers_and_lossy_reordering_network_keep_agreement() {
    let mut decided_total = 0;
    let mut elections_with_both = 0;
    for seed in seeds() {
        let world = run(seed, 4000);
        decided_total += world.decided_writes.len();
        if world.proposer_rounds.values().all(|round| *round > 0) {
            elections_with_both += 1;
        }
    }
    eprintln!("{decided_total} writes decided; {elections_with_both} runs where both proposers ran elections");
    assert!(
        decided_total > 0,
        "the workload decided nothing: the check proved nothing"
    );
    assert!(
        elections_with_both > 0,
        "no run had both proposers compete: the test does not cover duelling"
    );
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let first = run(7, 2000);
    let second = run(7, 2000);
    assert_eq!(first.decided_writes, second.decided_writes);
    assert_eq!(first.proposer_rounds, second.proposer_rounds);
}
