//! The simulated cluster: every node's real core, what it made durable, whether it runs,
//! and the loop that advances them all one tick at a time.
//!
//! A tick: nodes whose crash or pause ends come back; every message due is delivered (in
//! an order drawn from the seed); proposers and learners tick; clients act; faults strike;
//! acceptors make the tick's records durable and only then release their answers (group
//! commit, as the acceptor service does: a crash before that point loses both the records
//! and the answers); learners sync their log at most 10 ticks after a write; the checks run.

use crate::checks::{check_history, Ledger};
use crate::history::{Consistency, History, Request};
use crate::network::{Envelope, Network};
use crate::nodes::{
    self, AcceptorDriver, LearnerDriver, Membership, ProposerDriver, SimulatedPeers,
};
use crate::workload::{Client, View};
use crate::{
    FaultCounts, Hooks, Property, Report, Scenario, Violation, LEADER_TIMEOUT_TICKS,
    LIVENESS_BOUND_TICKS,
};
use acceptor::core::{Acceptor, Record};
use common::ballot::Ballot;
use common::message::Message;
use common::node::{NodeId, Role};
use common::ready::{Core, Event};
use learner::core::{Learner, LearnerOptions};
use proposer::core::ProposerOptions;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use runtime::driver::{Log, NodeDriver};
use runtime::file_system::{KeepRandomly, SimulatedFileSystem};
use std::cell::{Cell, RefCell};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Once;

/// Ticks between two heartbeats of the leader (100 ms in the services, compressed).
const HEARTBEAT_TICKS: u64 = 2;
/// The learner syncs its log at most 10 ticks after a write (100 ms in the services).
const LEARNER_LOG_SYNC_INTERVAL_TICKS: u64 = 10;
/// Slots of history a simulated learner keeps: short, so that snapshots travel between
/// learners within a run (production keeps 100,000).
const LEARNER_RETAIN_SLOTS: u64 = 24;
/// About two or three keys per snapshot chunk (production: 1 MiB).
const LEARNER_SNAPSHOT_CHUNK_BYTES: usize = 96;
/// Of the learner crashes, those that lose the whole disk, in thousandths.
const LEARNER_DISK_LOSS_PER_MILLE: u32 = 200;

/// The client API core's timings, compressed like the servers': attempt 20 ticks, request
/// 120 ticks, a retry pause of 1 to 3 ticks.
fn client_options(scenario: &Scenario, id: u32) -> client::core::ClientOptions {
    client::core::ClientOptions {
        attempt_timeout_ticks: 20,
        request_timeout_ticks: 120,
        retry_pause_ticks: (1, 3),
        ..client::core::ClientOptions::new(id, scenario.seed ^ (u64::from(id) << 32))
    }
}

/// The longest pause between two operations of a client.
const THINK_TICKS_MAX: u64 = 4;

/// The longest pause between two operations of the quiet client.
const QUIET_CLIENT_THINK_TICKS_MAX: u64 = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Up,
    /// Stopped (SIGSTOP): messages to it wait; it neither ticks nor answers.
    Paused {
        until: u64,
    },
    /// Crashed: messages to it are lost; it restarts from its durable state.
    Down {
        until: u64,
    },
}

/// A server: its driver (the production one, around the real core and log code), its
/// disk, whether it runs, and what waits for it while it is paused.
struct ServerNode<D> {
    driver: D,
    /// Its disk: what a restart recovers from (a crash keeps what POSIX allows).
    disk: SimulatedFileSystem,
    life: Life,
    backlog: Vec<Envelope>,
}

type AcceptorNode = ServerNode<AcceptorDriver>;

struct ProposerNode {
    server: ServerNode<ProposerDriver>,
    starts: u64,
    leader_ballot: Option<Ballot>,
}

struct LearnerNode {
    server: ServerNode<LearnerDriver>,
    /// The log's size when the learner crashed: a shorter log after the restart lost its
    /// unsynced tail.
    log_bytes_at_crash: Option<u64>,
}

impl<D> ServerNode<D> {
    fn up(driver: D, disk: SimulatedFileSystem) -> Self {
        ServerNode {
            driver,
            disk,
            life: Life::Up,
            backlog: Vec::new(),
        }
    }

    /// Down until `until`, with what `keep` lets the disk keep of its unsynced changes.
    fn crash(&mut self, keep: &mut KeepRandomly, until: u64) {
        self.disk = self.disk.crash(keep);
        self.backlog.clear();
        self.life = Life::Down { until };
    }
}

/// A driver's batch, carried out; a failed write or sync on the simulated disk (which
/// never fails one) is a bug of the log code.
fn carry_out<C: Core, L: Log<C>>(
    driver: &mut NodeDriver<C, L, SimulatedPeers>,
    node: NodeId,
) -> Result<(), Violation> {
    driver.carry_out().map_err(|failure| {
        Violation::new(
            Property::CoreInvariant,
            format!(
                "{node}'s log failed to {}: {}",
                failure.action, failure.error
            ),
        )
    })
}

struct World<'a> {
    scenario: &'a Scenario,
    hooks: &'a Hooks,
    random: ChaCha8Rng,
    now: u64,
    /// The event clock of the history: one number per delivery or client action.
    time: u64,
    faulty: bool,
    network: Network,
    /// Who is in the cluster and who is down, as the nodes' simulated peers see it.
    membership: Rc<RefCell<Membership>>,
    acceptors: BTreeMap<u32, AcceptorNode>,
    proposers: BTreeMap<u32, ProposerNode>,
    learners: BTreeMap<u32, LearnerNode>,
    clients: Vec<Client>,
    /// Clients stall too (a client API on a machine that stalls): their life and backlog.
    client_lives: Vec<Life>,
    client_backlogs: Vec<Vec<Envelope>>,
    history: History,
    ledger: Ledger,
    faults: FaultCounts,
    partition_until: Option<u64>,
    /// A stalled group to cut off from the rest when it wakes up: (tick, group).
    wake_partition: Option<(u64, Vec<NodeId>)>,
    messages_delivered: u64,
    leader_changes: u64,
    /// The highest trim point an acceptor persisted.
    trimmed_slot_max: u64,
    /// Snapshots installed by learner incarnations that have since crashed.
    snapshots_installed_before_restarts: u64,
    /// Learners that lost their disk and do not yet hold every trimmed slot again.
    learners_without_disk: BTreeSet<u32>,
    digest: DefaultHasher,
    liveness_ticks: u64,
    /// With `SIM_TRACE=1`, every delivery, fault and client step is printed to stderr.
    trace: bool,
}

thread_local! {
    static QUIET_PANICS: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Panics inside a simulated run are violations to report, not noise: a hook keeps them
/// quiet on the simulating thread (and only there) and remembers where they happened.
fn install_quiet_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET_PANICS.with(Cell::get) {
                let location = info
                    .location()
                    .map(|location| format!("{}:{}", location.file(), location.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|last| *last.borrow_mut() = location);
            } else {
                default(info);
            }
        }));
    });
}

pub(crate) fn run(scenario: &Scenario, hooks: &Hooks) -> Result<Report, Violation> {
    install_quiet_panic_hook();
    let mut world = World::new(scenario, hooks);
    QUIET_PANICS.with(|quiet| quiet.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| world.run_all()));
    QUIET_PANICS.with(|quiet| quiet.set(false));
    let result = match outcome {
        Ok(result) => result,
        Err(payload) => {
            let message = common::panic_message(payload.as_ref());
            let location = LAST_PANIC.with(|last| last.borrow().clone());
            Err(Violation::new(
                Property::CoreInvariant,
                format!("panicked at {location}: {message}"),
            ))
        }
    };
    result.map_err(|mut violation| {
        violation.seed = scenario.seed;
        violation.steps = scenario.steps;
        violation.tick = world.now;
        violation
    })
}

fn proposer_options(scenario: &Scenario, id: u32, starts: u64) -> ProposerOptions {
    let mut options = ProposerOptions::new(
        id,
        scenario.quorum_size(),
        HEARTBEAT_TICKS,
        LEADER_TIMEOUT_TICKS,
    );
    options.max_slots_in_flight = 4;
    options.max_batch_commands = 4;
    options.retransmit_ticks = 6;
    options.seed = scenario.seed ^ (starts << 40);
    options.learner_count = scenario.learners as usize;
    options
}

impl<'a> World<'a> {
    fn new(scenario: &'a Scenario, hooks: &'a Hooks) -> Self {
        let keys = (0..scenario.keys).map(|key| format!("k{key}")).collect();
        let mut world = World {
            scenario,
            hooks,
            random: ChaCha8Rng::seed_from_u64(scenario.seed),
            now: 0,
            time: 0,
            faulty: true,
            network: Network::new(),
            membership: Rc::new(RefCell::new(Membership {
                nodes: [
                    (Role::Acceptor, scenario.acceptors),
                    (Role::Proposer, scenario.proposers),
                    (Role::Learner, scenario.learners),
                    (Role::Client, scenario.clients),
                ]
                .into_iter()
                .flat_map(|(role, count)| (1..=count).map(move |id| NodeId { role, id }))
                .collect(),
                down: BTreeSet::new(),
            })),
            acceptors: BTreeMap::new(),
            proposers: BTreeMap::new(),
            learners: BTreeMap::new(),
            clients: (1..=scenario.clients)
                .map(|id| {
                    // The last client is a quiet client API node: it keeps believing in
                    // a leader long after the others learned of a new one.
                    let quiet = id == scenario.clients && id > 1;
                    let think_ticks_max = match quiet {
                        true => QUIET_CLIENT_THINK_TICKS_MAX,
                        false => THINK_TICKS_MAX,
                    };
                    let options = client_options(scenario, id);
                    Client::new(id, options, think_ticks_max, hooks.start_client)
                })
                .collect(),
            client_lives: vec![Life::Up; scenario.clients as usize],
            client_backlogs: vec![Vec::new(); scenario.clients as usize],
            history: History::default(),
            ledger: Ledger::new(
                scenario.quorum_size(),
                keys,
                scenario.learners.min(2) as usize,
            ),
            faults: FaultCounts::default(),
            partition_until: None,
            wake_partition: None,
            messages_delivered: 0,
            leader_changes: 0,
            trimmed_slot_max: 0,
            snapshots_installed_before_restarts: 0,
            learners_without_disk: BTreeSet::new(),
            digest: DefaultHasher::new(),
            liveness_ticks: 0,
            trace: std::env::var("SIM_TRACE").is_ok_and(|value| value == "1"),
        };
        for id in 1..=scenario.acceptors {
            let disk = SimulatedFileSystem::new();
            let driver = world
                .start_acceptor(id, &disk)
                .expect("an acceptor starts on an empty disk");
            world.acceptors.insert(id, ServerNode::up(driver, disk));
        }
        for id in 1..=scenario.proposers {
            let disk = SimulatedFileSystem::new();
            let driver = world
                .start_proposer(id, 0, &disk)
                .expect("a proposer starts on an empty disk");
            world.proposers.insert(
                id,
                ProposerNode {
                    server: ServerNode::up(driver, disk),
                    starts: 0,
                    leader_ballot: None,
                },
            );
        }
        for id in 1..=scenario.learners {
            let disk = SimulatedFileSystem::new();
            let driver = nodes::start_learner(world.learner_options(id), &disk, &world.membership)
                .expect("a learner starts on an empty disk");
            world.learners.insert(
                id,
                LearnerNode {
                    server: ServerNode::up(driver, disk),
                    log_bytes_at_crash: None,
                },
            );
        }
        world
    }

    fn learner_options(&self, id: u32) -> LearnerOptions {
        let quorum_size = self
            .hooks
            .learner_quorum_size
            .unwrap_or(self.scenario.quorum_size());
        LearnerOptions {
            id,
            quorum_size,
            read_timeout_ticks: 40,
            progress_interval_ticks: 5,
            sync_interval_ticks: 8,
            log_sync_interval_ticks: LEARNER_LOG_SYNC_INTERVAL_TICKS,
            // A short history, so that a learner that was away or lost its disk needs a
            // peer's snapshot once the acceptors trimmed what it missed.
            retain_slots: LEARNER_RETAIN_SLOTS,
            // Small snapshot chunks, so that a snapshot (on disk and between learners)
            // takes several, each of which the network may lose, repeat or reorder and a
            // crash may cut.
            snapshot_chunk_bytes: LEARNER_SNAPSHOT_CHUNK_BYTES,
            ..LearnerOptions::new(id, quorum_size)
        }
    }

    fn start_acceptor(
        &self,
        id: u32,
        disk: &SimulatedFileSystem,
    ) -> Result<AcceptorDriver, Violation> {
        let rebuild = self.hooks.recover_acceptor.unwrap_or(Acceptor::recover);
        let mut driver = nodes::start_acceptor(
            id,
            self.scenario.acceptors as usize,
            disk,
            rebuild,
            &self.membership,
        )
        .map_err(|problem| Violation::new(Property::CoreInvariant, problem))?;
        if let Some(start) = self.hooks.start_acceptor {
            start(&mut driver);
        }
        Ok(driver)
    }

    fn start_proposer(
        &self,
        id: u32,
        starts: u64,
        disk: &SimulatedFileSystem,
    ) -> Result<ProposerDriver, Violation> {
        let options = proposer_options(self.scenario, id, starts);
        let mut driver = nodes::start_proposer(options, disk, &self.membership)
            .map_err(|problem| Violation::new(Property::CoreInvariant, problem))?;
        if let Some(start) = self.hooks.start_proposer {
            start(driver.core_mut());
        }
        Ok(driver)
    }

    /// The faulty ticks, then healing: liveness, final reads, convergence, history checks.
    fn run_all(&mut self) -> Result<Report, Violation> {
        for _ in 0..self.scenario.steps {
            self.step()?;
        }
        self.heal();
        let healed_at = self.now;
        self.run_until_clients_idle(healed_at, "running when faults stopped")?;
        self.liveness_ticks = self.now - healed_at;
        self.queue_final_reads();
        let final_reads_at = self.now;
        self.run_until_clients_idle(final_reads_at, "the final reads")?;
        self.settle()?;
        let learners: Vec<(u32, &Learner)> = self
            .learners
            .iter()
            .map(|(id, node)| (*id, node.server.driver.core()))
            .collect();
        check_history(&self.history, &self.ledger, &learners)?;
        Ok(self.report())
    }

    fn report(&self) -> Report {
        let mut digest = self.digest.clone();
        self.history.hash(&mut digest);
        let counts = self.network.counts;
        let mut faults = self.faults;
        faults.dropped = counts.dropped;
        faults.duplicated = counts.duplicated;
        faults.delayed = counts.delayed;
        faults.cut_messages = counts.cut;
        faults.held_messages = counts.held;
        Report {
            seed: self.scenario.seed,
            steps: self.scenario.steps,
            ticks: self.now,
            topology: (
                self.scenario.acceptors,
                self.scenario.proposers,
                self.scenario.learners,
            ),
            faults,
            messages_delivered: self.messages_delivered,
            leader_changes: self.leader_changes,
            chosen_slots: self.ledger.chosen_count() as u64,
            trimmed_slot_max: self.trimmed_slot_max,
            snapshots_installed: self.snapshots_installed_before_restarts
                + self
                    .learners
                    .values()
                    .map(|node| node.server.driver.core().snapshots_installed().0)
                    .sum::<u64>(),
            operations: self.history.counts(),
            liveness_ticks: self.liveness_ticks,
            trace_digest: digest.finish(),
        }
    }

    fn step(&mut self) -> Result<(), Violation> {
        self.now += 1;
        self.wake_nodes()?;
        for envelope in self.network.take_due(self.now) {
            self.time += 1;
            self.messages_delivered += 1;
            (self.now, envelope.from, envelope.to).hash(&mut self.digest);
            std::mem::discriminant(&envelope.message).hash(&mut self.digest);
            if self.trace {
                eprintln!(
                    "[{} {}] {} -> {} {:?}",
                    self.now, self.time, envelope.from, envelope.to, envelope.message
                );
            }
            self.deliver(envelope);
        }
        self.tick_nodes();
        self.tick_clients();
        if self.faulty {
            self.inject_faults();
        }
        self.carry_out_batches()?;
        for (id, node) in &self.learners {
            if !matches!(node.server.life, Life::Down { .. }) {
                self.ledger.check_learner(*id, node.server.driver.core())?;
            }
        }
        let trimmed_slot_max = self.trimmed_slot_max;
        let learners = &self.learners;
        self.learners_without_disk.retain(|id| {
            let node = &learners[id];
            matches!(node.server.life, Life::Down { .. })
                || node.server.driver.core().durable_slot() < trimmed_slot_max
        });
        self.check_no_alarms()
    }

    /// Every node of the simulation is honest: a core that raised an alarm refused honest
    /// traffic (its check is wrong) or saw another core break the protocol.
    fn check_no_alarms(&self) -> Result<(), Violation> {
        let alarms = self
            .acceptors
            .iter()
            .map(|(id, node)| (NodeId::acceptor(*id), node.driver.core().alarms()))
            .chain(
                self.proposers
                    .iter()
                    .map(|(id, node)| (NodeId::proposer(*id), node.server.driver.core().alarms())),
            )
            .chain(
                self.learners
                    .iter()
                    .map(|(id, node)| (NodeId::learner(*id), node.server.driver.core().alarms())),
            );
        for (node, alarms) in alarms {
            if let Some(alarm) = alarms.first() {
                return Err(Violation::new(
                    Property::CoreInvariant,
                    format!("{node} raised an alarm: {alarm}"),
                ));
            }
        }
        Ok(())
    }

    fn nodes_of(&self, role: Role) -> Vec<NodeId> {
        let count = match role {
            Role::Acceptor => self.scenario.acceptors,
            Role::Proposer => self.scenario.proposers,
            Role::Learner => self.scenario.learners,
            Role::Client => self.scenario.clients,
        };
        (1..=count).map(|id| NodeId { role, id }).collect()
    }

    fn servers(&self) -> Vec<NodeId> {
        [Role::Acceptor, Role::Proposer, Role::Learner]
            .into_iter()
            .flat_map(|role| self.nodes_of(role))
            .collect()
    }

    fn life_of(&self, node: NodeId) -> Life {
        match node.role {
            Role::Acceptor => self.acceptors[&node.id].life,
            Role::Proposer => self.proposers[&node.id].server.life,
            Role::Learner => self.learners[&node.id].server.life,
            Role::Client => self.client_lives[node.id as usize - 1],
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, message: Message) {
        if from == to {
            return;
        }
        let faults = self.faulty.then_some(&self.scenario.faults);
        self.network.send(
            Envelope { from, to, message },
            self.now,
            &mut self.random,
            faults,
        );
    }

    fn deliver(&mut self, envelope: Envelope) {
        let Envelope { from, to, message } = envelope;
        let life = self.life_of(to);
        match life {
            Life::Down { .. } => return,
            Life::Paused { .. } => {
                let backlog = match to.role {
                    Role::Acceptor => &mut self.acceptors.get_mut(&to.id).unwrap().backlog,
                    Role::Proposer => &mut self.proposers.get_mut(&to.id).unwrap().server.backlog,
                    Role::Learner => &mut self.learners.get_mut(&to.id).unwrap().server.backlog,
                    Role::Client => &mut self.client_backlogs[to.id as usize - 1],
                };
                backlog.push(Envelope { from, to, message });
                return;
            }
            Life::Up => {}
        }
        match to.role {
            Role::Acceptor => {
                let event = Event::Message(from, message);
                self.acceptors.get_mut(&to.id).unwrap().driver.handle(event);
            }
            Role::Proposer => {
                let event = Event::Message(from, message);
                let node = self.proposers.get_mut(&to.id).unwrap();
                node.server.driver.handle(event);
            }
            Role::Learner => {
                let event = Event::Message(from, message);
                let node = self.learners.get_mut(&to.id).unwrap();
                node.server.driver.handle(event);
            }
            Role::Client => {
                let view_nodes = self.client_view_nodes();
                let view = View {
                    now: self.now,
                    time: self.time,
                    proposers: &view_nodes.0,
                    learners: &view_nodes.1,
                };
                let mut outbox = Vec::new();
                self.clients[to.id as usize - 1].on_message(
                    from,
                    message,
                    &view,
                    &mut self.history,
                    &mut self.random,
                    &mut outbox,
                );
                self.send_from_client(outbox);
            }
        }
    }

    fn send_from_client(&mut self, outbox: Vec<Envelope>) {
        for envelope in outbox {
            if let Message::Write { command, .. } = &envelope.message {
                self.ledger.proposed(command);
            }
            self.send(envelope.from, envelope.to, envelope.message);
        }
    }

    /// The proposers and learners a client is connected to: those not crashed.
    fn client_view_nodes(&self) -> (Vec<u32>, Vec<u32>) {
        let proposers = self
            .proposers
            .iter()
            .filter(|(_, node)| !matches!(node.server.life, Life::Down { .. }))
            .map(|(id, _)| *id)
            .collect();
        let learners = self
            .learners
            .iter()
            .filter(|(_, node)| !matches!(node.server.life, Life::Down { .. }))
            .map(|(id, _)| *id)
            .collect();
        (proposers, learners)
    }

    fn tick_nodes(&mut self) {
        for node in self.proposers.values_mut() {
            if node.server.life != Life::Up {
                continue;
            }
            node.server.driver.tick();
            let ballot = node.server.driver.core().leader_ballot();
            if ballot.is_some() && ballot != node.leader_ballot {
                self.leader_changes += 1;
            }
            node.leader_ballot = ballot;
        }
        for node in self.learners.values_mut() {
            if node.server.life == Life::Up {
                node.server.driver.tick();
            }
        }
    }

    fn tick_clients(&mut self) {
        let view_nodes = self.client_view_nodes();
        let workload = self.faulty.then_some(self.scenario.keys);
        for index in 0..self.clients.len() {
            if self.client_lives[index] != Life::Up {
                continue;
            }
            self.time += 1;
            let view = View {
                now: self.now,
                time: self.time,
                proposers: &view_nodes.0,
                learners: &view_nodes.1,
            };
            let mut outbox = Vec::new();
            self.clients[index].tick(
                &view,
                workload,
                &mut self.history,
                &mut self.random,
                &mut outbox,
            );
            self.send_from_client(outbox);
        }
    }

    /// Every running server's driver carries out its batch of this tick (the events and the
    /// tick it handled): writes, sync, then sends, as in the services. An acceptor's synced
    /// votes enter the ledger of what was chosen.
    fn carry_out_batches(&mut self) -> Result<(), Violation> {
        let ids: Vec<u32> = self.acceptors.keys().copied().collect();
        for id in ids {
            let node = self.acceptors.get_mut(&id).unwrap();
            if node.life != Life::Up {
                continue;
            }
            carry_out(&mut node.driver, NodeId::acceptor(id))?;
            if let Some(sent) = node.driver.peers_mut().sent_before_sync.first() {
                return Err(Violation::new(
                    Property::CoreInvariant,
                    format!("acceptor{id} sent {sent}"),
                ));
            }
            let synced = std::mem::take(&mut node.driver.log_mut().synced);
            let outbox = std::mem::take(&mut node.driver.peers_mut().outbox);
            let mut promised = false;
            for record in &synced {
                match record {
                    Record::Accepted(entry) => self.ledger.accepted(id, entry)?,
                    Record::Promised(_) => promised = true,
                    Record::Trimmed(slot) => {
                        self.ledger.trimmed(id, *slot)?;
                        self.trimmed_slot_max = self.trimmed_slot_max.max(*slot);
                    }
                }
            }
            self.schedule(outbox);
            // A targeted fault (FoundationDB's "buggify"): crash right after a promise
            // left, when forgetting it would hurt most.
            if promised && self.faulty {
                let rate = self.scenario.faults.crash_after_promise_per_mille;
                if self.roll(rate) {
                    self.faults.crashes_after_promise += 1;
                    let until = self.now + self.random.random_range(1..=8);
                    self.crash(NodeId::acceptor(id), until);
                }
            }
        }
        let ids: Vec<u32> = self.proposers.keys().copied().collect();
        for id in ids {
            let node = &mut self.proposers.get_mut(&id).unwrap().server;
            if node.life == Life::Up {
                carry_out(&mut node.driver, NodeId::proposer(id))?;
                let outbox = std::mem::take(&mut node.driver.peers_mut().outbox);
                self.schedule(outbox);
            }
        }
        let ids: Vec<u32> = self.learners.keys().copied().collect();
        for id in ids {
            let node = &mut self.learners.get_mut(&id).unwrap().server;
            if node.life == Life::Up {
                carry_out(&mut node.driver, NodeId::learner(id))?;
                let outbox = std::mem::take(&mut node.driver.peers_mut().outbox);
                self.schedule(outbox);
            }
        }
        Ok(())
    }

    /// Puts what a node sent in its batch on the simulated network.
    fn schedule(&mut self, outbox: Vec<Envelope>) {
        for envelope in outbox {
            self.send(envelope.from, envelope.to, envelope.message);
        }
    }

    fn roll(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.random.random_range(0..1000) < per_mille
    }

    fn inject_faults(&mut self) {
        let rates = self.scenario.faults;

        match self.partition_until {
            Some(until) if self.now >= until => {
                self.network.heal(self.now, &mut self.random);
                self.partition_until = None;
            }
            Some(_) => {}
            None => {
                if self.roll(rates.partition_per_mille) {
                    self.start_partition();
                }
            }
        }
        if self.roll(rates.crash_per_mille) {
            self.crash_a_node();
        }
        if self.roll(rates.pause_per_mille) {
            self.pause_a_node();
        }
    }

    fn leader(&self) -> Option<NodeId> {
        self.proposers
            .iter()
            .filter(|(_, node)| {
                node.server.life == Life::Up && node.server.driver.core().is_leader()
            })
            .max_by_key(|(_, node)| node.server.driver.core().leader_ballot())
            .map(|(id, _)| NodeId::proposer(*id))
    }

    fn random_server(&mut self) -> NodeId {
        let servers = self.servers();
        servers[self.random.random_range(0..servers.len())]
    }

    fn start_partition(&mut self) {
        let servers = self.servers();
        let everyone: Vec<NodeId> = servers
            .iter()
            .copied()
            .chain(self.nodes_of(Role::Client))
            .collect();
        let hold = self.random.random_bool(0.5);
        self.network.set_cuts_hold(hold);
        match self.random.random_range(0..7) {
            kind @ (0 | 1) => {
                let victim = match (kind, self.leader()) {
                    (1, Some(leader)) => leader,
                    _ => self.random_server(),
                };
                for other in &everyone {
                    self.network.cut(victim, *other);
                    self.network.cut(*other, victim);
                }
            }
            2 => {
                // It hears everyone; nobody hears it.
                let victim = self.random_server();
                for other in &everyone {
                    self.network.cut(victim, *other);
                }
            }
            3 => {
                // Everyone hears it; it hears nobody.
                let victim = self.random_server();
                for other in &everyone {
                    self.network.cut(*other, victim);
                }
            }
            5 => {
                // The proposers lose each other but not the acceptors: a follower stops
                // hearing the leader and runs an election while the leader still leads.
                let proposers = self.nodes_of(Role::Proposer);
                for left in &proposers {
                    for right in &proposers {
                        self.network.cut(*left, *right);
                    }
                }
            }
            4 => {
                // Every directed link fails on its own: partial, overlapping partitions.
                for from in &everyone {
                    for to in &everyone {
                        if self.random.random_range(0..10) < 3 {
                            self.network.cut(*from, *to);
                        }
                    }
                }
            }
            _ => {
                let sides: Vec<bool> = everyone
                    .iter()
                    .map(|_| self.random.random_bool(0.5))
                    .collect();
                for (left, left_side) in everyone.iter().zip(&sides) {
                    for (right, right_side) in everyone.iter().zip(&sides) {
                        if left_side != right_side {
                            self.network.cut(*left, *right);
                        }
                    }
                }
            }
        }
        if self.network.is_partitioned() {
            self.faults.partitions += 1;
            let until = self.now + self.random.random_range(10..=80);
            self.partition_until = Some(until);
            self.trace_fault(format_args!(
                "partition until tick {until} ({}): {:?}",
                if hold { "holding" } else { "dropping" },
                self.network.cuts()
            ));
        }
    }

    fn trace_fault(&self, what: std::fmt::Arguments) {
        if self.trace {
            eprintln!("[{} {}] FAULT {what}", self.now, self.time);
        }
    }

    fn crash_a_node(&mut self) {
        if self.random.random_range(0..8) == 0 {
            // A client API process crashes and restarts at once, forgetting its sessions.
            let index = self.random.random_range(0..self.clients.len());
            if self.client_lives[index] == Life::Up {
                let client = NodeId::client(self.clients[index].id);
                self.faults.crashes += 1;
                self.faults.client_restarts += 1;
                self.trace_fault(format_args!("crash and restart {client}"));
                self.network.drop_messages_to(client);
                self.clients[index].restart(&mut self.history, self.now);
            }
            return;
        }
        let victim = self.random_server();
        let until = self.now + self.random.random_range(3..=60);
        self.crash(victim, until);
    }

    /// Crashes `victim` until tick `until`: it loses what it had not made durable, and
    /// every message on its way to it.
    fn crash(&mut self, victim: NodeId, until: u64) {
        if matches!(self.life_of(victim), Life::Down { .. }) {
            return;
        }
        self.faults.crashes += 1;
        self.trace_fault(format_args!("crash {victim} until tick {until}"));
        self.network.drop_messages_to(victim);
        self.membership.borrow_mut().down.insert(victim);
        // The disk keeps what was synced and any prefix of what was not (a torn write
        // included); the batch in hand was never carried out, so never answered.
        let mut keep = KeepRandomly(self.random.random());
        match victim.role {
            Role::Acceptor => {
                let node = self.acceptors.get_mut(&victim.id).unwrap();
                node.crash(&mut keep, until);
            }
            Role::Proposer => {
                let node = self.proposers.get_mut(&victim.id).unwrap();
                node.server.crash(&mut keep, until);
            }
            Role::Learner => {
                let lose_disk =
                    self.may_lose_learner_disk(victim.id) && self.roll(LEARNER_DISK_LOSS_PER_MILLE);
                let node = self.learners.get_mut(&victim.id).unwrap();
                node.log_bytes_at_crash = Some(node.server.driver.log().length_bytes());
                node.server.crash(&mut keep, until);
                if lose_disk {
                    node.server.disk = SimulatedFileSystem::new();
                    node.log_bytes_at_crash = None;
                    self.faults.learner_disks_lost += 1;
                    self.learners_without_disk.insert(victim.id);
                    self.trace_fault(format_args!("learner{} lost its disk", victim.id));
                }
            }
            Role::Client => unreachable!("clients are not servers"),
        }
    }

    /// Whether learner `id` may lose its disk without going beyond what the cluster
    /// tolerates (one learner's disk): only while every other learner durably holds every
    /// slot the acceptors forgot, so that one copy of each decided value remains.
    fn may_lose_learner_disk(&self, id: u32) -> bool {
        self.learners_without_disk.iter().all(|lost| *lost == id)
            && self
                .learners
                .iter()
                .filter(|(other, _)| **other != id)
                .all(|(_, node)| node.server.driver.core().durable_slot() >= self.trimmed_slot_max)
    }

    /// A stall: a node (usually the leader) stops for 2 to 10 election timeouts, then
    /// resumes believing what it believed before. Half the time the whole machine stalls:
    /// the leader with a learner and a client API node (preferably one that believes in
    /// that leader), and the group wakes up cut off from the rest for a while: the classic
    /// setting of a stale leader answering reads from a stale replica.
    fn pause_a_node(&mut self) {
        let victim = match self.leader() {
            Some(leader) if self.random.random_range(0..10) < 7 => {
                self.faults.leader_pauses += 1;
                leader
            }
            _ => self.random_server(),
        };
        if self.life_of(victim) != Life::Up {
            return;
        }
        let until = self.now
            + self
                .random
                .random_range(2 * LEADER_TIMEOUT_TICKS..=10 * LEADER_TIMEOUT_TICKS);
        let mut group = vec![victim];
        let machine = self.random.random_bool(0.5);
        if machine {
            let learner = NodeId::learner(self.random.random_range(1..=self.scenario.learners));
            if learner != victim && self.life_of(learner) == Life::Up {
                group.push(learner);
            }
            let believers: Vec<u32> = self
                .clients
                .iter()
                .filter(|client| {
                    victim.role == Role::Proposer && client.believed_leader() == Some(victim.id)
                })
                .map(|client| client.id)
                .collect();
            let client = match believers.is_empty() {
                true => self.random.random_range(1..=self.scenario.clients),
                false => believers[self.random.random_range(0..believers.len())],
            };
            if self.client_lives[client as usize - 1] == Life::Up {
                group.push(NodeId::client(client));
            }
        }
        for node in &group {
            self.faults.pauses += 1;
            self.trace_fault(format_args!("pause {node} until tick {until}"));
            let life = Life::Paused { until };
            match node.role {
                Role::Acceptor => self.acceptors.get_mut(&node.id).unwrap().life = life,
                Role::Proposer => self.proposers.get_mut(&node.id).unwrap().server.life = life,
                Role::Learner => self.learners.get_mut(&node.id).unwrap().server.life = life,
                Role::Client => self.client_lives[node.id as usize - 1] = life,
            }
        }
        if machine {
            self.wake_partition = Some((until, group));
        }
    }

    /// Cuts `group` off from every other node (both ways), for 10 to 40 ticks.
    fn isolate_group(&mut self, group: &[NodeId]) {
        let everyone: Vec<NodeId> = self
            .servers()
            .into_iter()
            .chain(self.nodes_of(Role::Client))
            .collect();
        let hold = self.random.random_bool(0.5);
        self.network.set_cuts_hold(hold);
        for inside in group {
            for outside in everyone.iter().filter(|node| !group.contains(node)) {
                self.network.cut(*inside, *outside);
                self.network.cut(*outside, *inside);
            }
        }
        self.faults.partitions += 1;
        let until = self.now + self.random.random_range(10..=40);
        self.partition_until = Some(self.partition_until.unwrap_or(0).max(until));
        self.trace_fault(format_args!("isolate {group:?} until tick {until}"));
    }

    /// Restarts crashed nodes and resumes paused ones whose time has come. A stalled group
    /// meant to wake up cut off is cut off first, so that even its backlog stays behind
    /// the cut.
    fn wake_nodes(&mut self) -> Result<(), Violation> {
        if let Some((at, group)) = self.wake_partition.take() {
            if self.now >= at {
                self.isolate_group(&group);
            } else {
                self.wake_partition = Some((at, group));
            }
        }
        for node in self
            .servers()
            .into_iter()
            .chain(self.nodes_of(Role::Client))
        {
            match self.life_of(node) {
                Life::Down { until } if until <= self.now => self.restart(node)?,
                Life::Paused { until } if until <= self.now => self.resume(node),
                _ => {}
            }
        }
        Ok(())
    }

    fn resume(&mut self, node: NodeId) {
        self.trace_fault(format_args!("resume {node}"));
        let backlog = match node.role {
            Role::Acceptor => {
                let state = self.acceptors.get_mut(&node.id).unwrap();
                state.life = Life::Up;
                std::mem::take(&mut state.backlog)
            }
            Role::Proposer => {
                let state = &mut self.proposers.get_mut(&node.id).unwrap().server;
                state.life = Life::Up;
                std::mem::take(&mut state.backlog)
            }
            Role::Learner => {
                let state = &mut self.learners.get_mut(&node.id).unwrap().server;
                state.life = Life::Up;
                std::mem::take(&mut state.backlog)
            }
            Role::Client => {
                self.client_lives[node.id as usize - 1] = Life::Up;
                std::mem::take(&mut self.client_backlogs[node.id as usize - 1])
            }
        };
        // What queued up in its sockets arrives at once.
        for envelope in backlog {
            self.network.schedule(envelope, self.now, &mut self.random);
        }
    }

    /// Restarts `node` from its disk, through the same recovery code as its service.
    fn restart(&mut self, node: NodeId) -> Result<(), Violation> {
        self.trace_fault(format_args!("restart {node}"));
        self.membership.borrow_mut().down.remove(&node);
        match node.role {
            Role::Acceptor => {
                let disk = self.acceptors[&node.id].disk.clone();
                let driver = self.start_acceptor(node.id, &disk)?;
                let state = self.acceptors.get_mut(&node.id).unwrap();
                state.driver = driver;
                state.life = Life::Up;
            }
            Role::Proposer => {
                let (disk, starts) = {
                    let state = &self.proposers[&node.id];
                    (state.server.disk.clone(), state.starts + 1)
                };
                let driver = self.start_proposer(node.id, starts, &disk)?;
                let state = self.proposers.get_mut(&node.id).unwrap();
                state.starts = starts;
                state.server.driver = driver;
                state.leader_ballot = None;
                state.server.life = Life::Up;
            }
            Role::Learner => {
                let disk = self.learners[&node.id].server.disk.clone();
                let driver =
                    nodes::start_learner(self.learner_options(node.id), &disk, &self.membership)
                        .map_err(|problem| Violation::new(Property::CoreInvariant, problem))?;
                let state = self.learners.get_mut(&node.id).unwrap();
                self.snapshots_installed_before_restarts +=
                    state.server.driver.core().snapshots_installed().0;
                if state
                    .log_bytes_at_crash
                    .take()
                    .is_some_and(|before| driver.log().length_bytes() < before)
                {
                    self.faults.learner_tails_lost += 1;
                }
                state.server.driver = driver;
                state.server.life = Life::Up;
                self.ledger.learner_restarted(node.id);
                // Its connections open: it asks its peers and the acceptors what it missed.
                for peer in self.servers() {
                    if peer != node && !matches!(self.life_of(peer), Life::Down { .. }) {
                        let state = self.learners.get_mut(&node.id).unwrap();
                        state.server.driver.handle(Event::Connected(peer));
                    }
                }
            }
            Role::Client => unreachable!("clients do not crash"),
        }
        // The other learners see a connection open to the node that came back.
        for (id, state) in self.learners.iter_mut() {
            if NodeId::learner(*id) != node && state.server.life == Life::Up {
                state.server.driver.handle(Event::Connected(node));
            }
        }
        Ok(())
    }

    /// Faults stop: links heal, crashed nodes restart and paused ones resume at the next
    /// tick, no message is lost any more, and running operations lose their deadline.
    fn heal(&mut self) {
        self.faulty = false;
        self.network.heal(self.now, &mut self.random);
        self.partition_until = None;
        self.wake_partition = None;
        for node in self.servers() {
            let life = match self.life_of(node) {
                Life::Down { .. } => Life::Down { until: self.now },
                Life::Paused { .. } => Life::Paused { until: self.now },
                Life::Up => Life::Up,
            };
            match node.role {
                Role::Acceptor => self.acceptors.get_mut(&node.id).unwrap().life = life,
                Role::Proposer => self.proposers.get_mut(&node.id).unwrap().server.life = life,
                Role::Learner => self.learners.get_mut(&node.id).unwrap().server.life = life,
                Role::Client => {}
            }
        }
        for client in &mut self.clients {
            client.remove_deadline();
        }
        for life in &mut self.client_lives {
            if *life != Life::Up {
                *life = Life::Paused { until: self.now };
            }
        }
    }

    /// Strong reads of every key at the first client, session reads at the second,
    /// eventual reads at the third: the history ends with what every key holds.
    fn queue_final_reads(&mut self) {
        let levels = [
            Consistency::Strong,
            Consistency::Session,
            Consistency::Eventual,
        ];
        for (client, consistency) in self.clients.iter_mut().zip(levels) {
            for key in 0..self.scenario.keys {
                client.queue(Request::Read {
                    key: format!("k{key}"),
                    consistency,
                });
            }
        }
    }

    /// Steps (without faults) until no client has anything to do; a violation of
    /// **liveness** if that takes more than [`LIVENESS_BOUND_TICKS`].
    fn run_until_clients_idle(&mut self, since: u64, what: &str) -> Result<(), Violation> {
        while !self.clients.iter().all(Client::is_idle) {
            if self.now - since > LIVENESS_BOUND_TICKS {
                let pending: Vec<String> = self
                    .history
                    .operations
                    .iter()
                    .filter(|operation| operation.completed_tick.is_none())
                    .map(|operation| format!("client{} {:?}", operation.client, operation.request))
                    .collect();
                return Err(Violation::new(
                    Property::Liveness,
                    format!(
                        "operations {what} did not complete within {LIVENESS_BOUND_TICKS} ticks \
                         of a healthy cluster: {pending:?}; leader: {:?}",
                        self.leader()
                    ),
                ));
            }
            self.step()?;
        }
        Ok(())
    }

    /// Steps until every learner applied every slot anyone decided or any quorum chose.
    fn settle(&mut self) -> Result<(), Violation> {
        let since = self.now;
        loop {
            let target = self
                .ledger
                .agreed_slot_max()
                .max(self.ledger.chosen_slot_max());
            let behind: Vec<(u32, u64)> = self
                .learners
                .iter()
                .filter(|(_, node)| node.server.driver.core().applied_slot() < target)
                .map(|(id, node)| (*id, node.server.driver.core().applied_slot()))
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if self.now - since > LIVENESS_BOUND_TICKS {
                let snapshots: Vec<String> = self
                    .learners
                    .iter()
                    .map(|(id, node)| {
                        let core = node.server.driver.core();
                        format!(
                            "learner{id}: installing {}, sending {:?}, installed {:?}, \
                             history from {}, known {}",
                            core.is_installing_snapshot(),
                            core.snapshots_sent(),
                            core.snapshots_installed(),
                            core.history_start_slot(),
                            core.known_slot_max()
                        )
                    })
                    .collect();
                return Err(Violation::new(
                    Property::Convergence,
                    format!(
                        "learners (id, applied slot) {behind:?} did not reach slot {target} \
                         within {LIVENESS_BOUND_TICKS} ticks of a healthy cluster \
                         (snapshots: {})",
                        snapshots.join("; ")
                    ),
                ));
            }
            self.step()?;
        }
    }
}
