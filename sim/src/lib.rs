//! Deterministic simulation of the real protocol cores under faults.
//!
//! One thread, one seed: the real [`acceptor::core::Acceptor`], [`proposer::core::Proposer`]
//! and [`learner::core::Learner`] (3 or 5 acceptors, 2 or 3 proposers, 2 learners) and
//! the real [`client::core::ClientCore`] of each client API node, driven by a simulated
//! workload ([`workload`]), over a simulated
//! network that drops, duplicates, delays and reorders messages and cuts links (asymmetric
//! cuts included). Nodes crash and restart with exactly what they made durable (an
//! acceptor's synced records, a proposer's round, a learner's synced log plus any prefix of
//! what it had written but not synced), and a node (usually the leader) pauses for many
//! election timeouts, then wakes up believing what it believed before.
//!
//! A run has `steps` faulty ticks, then faults stop: every node restarts or resumes, links
//! heal, and every operation still running must complete within [`LIVENESS_BOUND_TICKS`].
//! The checks of [`checks`] run after every tick and at the end. Everything random comes
//! from the seed, so `run(&Scenario::from_seed(seed, steps), &Hooks::default())` replays a
//! run exactly; a violation names its seed and the command that replays it.
//!
//! ```
//! use sim::{run, Hooks, Scenario};
//! let report = run(&Scenario::from_seed(7, 300), &Hooks::default()).expect("no violation");
//! assert_eq!(report.seed, 7);
//! assert_eq!(report.steps, 300);
//! // The same seed replays the same run, message for message.
//! let again = run(&Scenario::from_seed(7, 300), &Hooks::default()).unwrap();
//! assert_eq!(report.trace_digest, again.trace_digest);
//! ```
#![deny(missing_docs)]

pub mod checks;
pub mod history;
pub mod network;
pub mod nodes;
pub mod workload;
mod world;

use acceptor::core::{Acceptor, Record};
use proposer::core::Proposer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// Ticks without a heartbeat before a follower runs an election, in the simulation (the
/// services' 1 s, compressed: a heartbeat is every 2 ticks).
pub const LEADER_TIMEOUT_TICKS: u64 = 16;

/// Once faults stop (every node up, every link healed, no more loss), every operation
/// still running must complete within this many ticks: 20 leader timeouts. An election
/// takes at most two leader timeouts plus a round trip; the rest is room for duelling
/// candidates, a learner catching up and the clients' retry pauses. The slowest seen over
/// 100,000 seeds is 184 ticks.
pub const LIVENESS_BOUND_TICKS: u64 = 20 * LEADER_TIMEOUT_TICKS;

/// How often faults strike during the faulty ticks of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRates {
    /// Per mille of messages dropped.
    pub drop_per_mille: u32,
    /// Per mille of messages delivered twice.
    pub duplicate_per_mille: u32,
    /// Per mille of messages held back by up to `delay_ticks_max` extra ticks.
    pub delay_per_mille: u32,
    /// The longest extra delay, in ticks.
    pub delay_ticks_max: u64,
    /// Per mille chance, each tick without a partition, that one starts.
    pub partition_per_mille: u32,
    /// Per mille chance, each tick, that a node crashes.
    pub crash_per_mille: u32,
    /// Per mille chance, each tick, that a node (usually the leader) pauses.
    pub pause_per_mille: u32,
    /// Per mille chance that an acceptor crashes right after a promise left it (a
    /// targeted fault: the moment forgetting a promise would do harm).
    pub crash_after_promise_per_mille: u32,
}

impl FaultRates {
    /// No faults at all.
    pub const NONE: FaultRates = FaultRates {
        drop_per_mille: 0,
        duplicate_per_mille: 0,
        delay_per_mille: 0,
        delay_ticks_max: 0,
        partition_per_mille: 0,
        crash_per_mille: 0,
        pause_per_mille: 0,
        crash_after_promise_per_mille: 0,
    };
}

/// The shape of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Everything random derives from it.
    pub seed: u64,
    /// Ticks with faults, before the healing phase.
    pub steps: u64,
    /// Acceptors (3 or 5).
    pub acceptors: u32,
    /// Proposers (2 or 3).
    pub proposers: u32,
    /// Learners.
    pub learners: u32,
    /// Client API nodes, each one session running one operation at a time.
    pub clients: u32,
    /// Keys the clients use (few, so that operations collide).
    pub keys: u32,
    /// How hard the faults strike.
    pub faults: FaultRates,
}

impl Scenario {
    /// The scenario of `seed`: the topology and the fault mix both vary with the seed, from
    /// almost calm to very hostile, so that a batch of seeds covers both progress and
    /// adversity.
    pub fn from_seed(seed: u64, steps: u64) -> Scenario {
        let mut random = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5ce7_a210_0001);
        let acceptors = if random.random_range(0..3) == 0 { 5 } else { 3 };
        let proposers = random.random_range(2..=3);
        let intensity = random.random_range(0..=4);
        let mut rate = |high: u32| random.random_range(0..=high * intensity / 4);
        let faults = FaultRates {
            drop_per_mille: rate(80),
            duplicate_per_mille: rate(50),
            delay_per_mille: rate(80),
            delay_ticks_max: 30,
            partition_per_mille: rate(20),
            crash_per_mille: rate(20),
            pause_per_mille: rate(15),
            crash_after_promise_per_mille: rate(1000),
        };
        Scenario {
            seed,
            steps,
            acceptors,
            proposers,
            learners: 2,
            clients: 3,
            keys: 3,
            faults,
        }
    }

    /// Acceptors that make a quorum: a majority.
    pub fn quorum_size(&self) -> usize {
        self.acceptors as usize / 2 + 1
    }
}

/// Test-only ways to change the real code's behaviour, used to plant known bugs and show
/// that the checks catch them. The default changes nothing.
#[derive(Clone, Copy, Default)]
pub struct Hooks {
    /// Rebuilds a restarted acceptor from its durable records, instead of
    /// [`Acceptor::recover`].
    pub recover_acceptor: Option<fn(u32, Vec<Record>) -> Acceptor>,
    /// Runs on every proposer when it starts or restarts.
    pub start_proposer: Option<fn(&mut Proposer)>,
    /// The learners' quorum, instead of the acceptors' majority.
    pub learner_quorum_size: Option<usize>,
    /// Runs on every client API core when its node starts or restarts.
    pub start_client: Option<fn(&mut client::core::ClientCore)>,
    /// Runs on every acceptor's driver when it starts or restarts.
    pub start_acceptor: Option<fn(&mut nodes::AcceptorDriver)>,
}

/// The properties the simulation checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Property {
    /// One value per slot: chosen by the acceptors, decided by every learner.
    Agreement,
    /// Only proposed commands or no-ops are decided.
    Validity,
    /// Every learner's applied state is the state after a prefix of the one agreed log.
    InOrderApplication,
    /// No write takes effect twice.
    ExactlyOnce,
    /// Every acknowledged write is in the agreed log.
    LostAcknowledgedWrite,
    /// A write reports the revision at which it took effect, exactly; a key's revisions
    /// (create, mod, version) are those the agreed log gives it, on every learner and in
    /// every read.
    Revisions,
    /// Writes and strong reads are linearizable per key.
    Linearizability,
    /// Session reads see the session's writes and never go back.
    SessionGuarantee,
    /// Eventual reads return only values written before them.
    EventualRead,
    /// After faults stop, every learner reaches the same final state.
    Convergence,
    /// No acceptor forgets a slot (trimming) before enough learners hold it durably.
    Recoverability,
    /// After faults stop, every running operation completes within the bound.
    Liveness,
    /// A core's own invariant assertion failed (it panicked).
    CoreInvariant,
}

impl fmt::Display for Property {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Property::Agreement => "agreement",
            Property::Validity => "validity",
            Property::InOrderApplication => "in-order application",
            Property::ExactlyOnce => "exactly-once",
            Property::LostAcknowledgedWrite => "no lost acknowledged write",
            Property::Revisions => "revisions",
            Property::Linearizability => "linearizability",
            Property::SessionGuarantee => "session guarantee",
            Property::EventualRead => "eventual read validity",
            Property::Convergence => "convergence",
            Property::Recoverability => "recoverability",
            Property::Liveness => "liveness",
            Property::CoreInvariant => "core invariant",
        };
        formatter.write_str(name)
    }
}

/// A property that did not hold, with where and how to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which property.
    pub property: Property,
    /// What was seen.
    pub detail: String,
    /// The run's seed (filled in by [`run`]).
    pub seed: u64,
    /// The run's faulty ticks (filled in by [`run`]).
    pub steps: u64,
    /// The tick at which the check failed (filled in by [`run`]).
    pub tick: u64,
}

impl Violation {
    /// A violation of `property`; [`run`] adds the seed and tick.
    pub fn new(property: Property, detail: String) -> Self {
        Violation {
            property,
            detail,
            seed: 0,
            steps: 0,
            tick: 0,
        }
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!(
            "SIM_SEED={} SIM_STEPS={} cargo test -p sim --test seeds -- --nocapture   \
             (or: cargo run -p sim --release -- replay --seed {} --steps {})",
            self.seed, self.steps, self.seed, self.steps
        )
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "seed {}: {} violated at tick {}: {}\nreplay: {}",
            self.seed,
            self.property,
            self.tick,
            self.detail,
            self.replay_command()
        )
    }
}

impl std::error::Error for Violation {}

/// Faults injected during a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FaultCounts {
    /// Messages dropped at random.
    pub dropped: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
    /// Messages held back (reordered).
    pub delayed: u64,
    /// Partitions started (each cuts one or more links, maybe one way only).
    pub partitions: u64,
    /// Messages lost to cut links.
    pub cut_messages: u64,
    /// Messages held by cut links and delivered late, when the cut healed.
    pub held_messages: u64,
    /// Node crashes (each followed by a restart from durable state).
    pub crashes: u64,
    /// Of those, acceptors crashed right after a promise left them.
    pub crashes_after_promise: u64,
    /// Of those, client API nodes that restarted and forgot their sessions.
    pub client_restarts: u64,
    /// Learner crashes that lost an unsynced tail of the learner's log.
    pub learner_tails_lost: u64,
    /// Learner crashes that lost the whole disk (the learner restarts empty and must take
    /// a peer's snapshot of what the acceptors trimmed).
    pub learner_disks_lost: u64,
    /// Long pauses of a node (a process stopped, then resumed).
    pub pauses: u64,
    /// Pauses that stopped the leader.
    pub leader_pauses: u64,
}

impl FaultCounts {
    /// Every fault injected, of any kind (dropped, duplicated and delayed messages count
    /// one each).
    pub fn total(&self) -> u64 {
        self.dropped + self.duplicated + self.delayed + self.partitions + self.crashes + self.pauses
    }
}

impl fmt::Display for FaultCounts {
    /// The one-line summary the soak command and the seed test print.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} = {} dropped, {} duplicated, {} delayed messages, {} partitions ({} messages \
             cut, {} held), {} crashes ({} right after a promise, {} client API restarts, {} \
             learner tails lost, {} learner disks lost), {} pauses ({} of the leader)",
            self.total(),
            self.dropped,
            self.duplicated,
            self.delayed,
            self.partitions,
            self.cut_messages,
            self.held_messages,
            self.crashes,
            self.crashes_after_promise,
            self.client_restarts,
            self.learner_tails_lost,
            self.learner_disks_lost,
            self.pauses,
            self.leader_pauses
        )
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Faulty ticks.
    pub steps: u64,
    /// All ticks, the healing phase included.
    pub ticks: u64,
    /// The topology: acceptors, proposers, learners.
    pub topology: (u32, u32, u32),
    /// Faults injected.
    pub faults: FaultCounts,
    /// Messages delivered.
    pub messages_delivered: u64,
    /// Times a proposer became leader with a new ballot.
    pub leader_changes: u64,
    /// Slots chosen by a quorum of acceptors.
    pub chosen_slots: u64,
    /// The highest trim point an acceptor made durable (slots up to it forgotten).
    pub trimmed_slot_max: u64,
    /// States learners installed from a peer's snapshot.
    pub snapshots_installed: u64,
    /// The client-visible operations, by outcome.
    pub operations: history::HistoryCounts,
    /// Ticks the operations running when faults stopped took to complete.
    pub liveness_ticks: u64,
    /// A digest of every delivery and of the history: equal digests mean equal runs.
    pub trace_digest: u64,
}

/// Runs `scenario` with `hooks` and checks every property. A panic in a core (a broken
/// invariant assertion) is reported as a [`Property::CoreInvariant`] violation.
pub fn run(scenario: &Scenario, hooks: &Hooks) -> Result<Report, Violation> {
    world::run(scenario, hooks)
}
