//! `sim`: run the deterministic simulation outside the test suite.
//!
//! ```sh
//! cargo run -p sim --release -- soak --seeds 100000 --steps 2000   # as many seeds as asked
//! cargo run -p sim --release -- replay --seed 42 --steps 1000      # one seed, with its report
//! ```
//!
//! `soak` runs seeds on every core, prints progress and a summary (seeds, steps, faults
//! injected, violations with their replay commands), and exits 1 if any seed failed.

use clap::{Parser, Subcommand};
use sim::{run, FaultCounts, Hooks, Report, Scenario, Violation};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "sim",
    about = "Deterministic simulation of the Paxos cores under faults"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run many seeds and report seeds, steps, faults injected and violations.
    Soak {
        /// How many seeds to run.
        #[arg(long, default_value_t = 10_000)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        /// Faulty ticks per seed.
        #[arg(long, default_value_t = 1_000)]
        steps: u64,
        /// Worker threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Run one seed and print its report (or its violation).
    Replay {
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Faulty ticks.
        #[arg(long, default_value_t = 1_000)]
        steps: u64,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Soak {
            seeds,
            first_seed,
            steps,
            threads,
        } => soak(first_seed, seeds, steps, threads),
        Command::Replay { seed, steps } => {
            let scenario = Scenario::from_seed(seed, steps);
            println!("{scenario:?}");
            match run(&scenario, &Hooks::default()) {
                Ok(report) => {
                    println!("{report:#?}");
                    ExitCode::SUCCESS
                }
                Err(violation) => {
                    println!("{violation}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    ticks: u64,
    faults: FaultCounts,
    messages: u64,
    writes_acknowledged: u64,
    writes_unknown: u64,
    reads: u64,
    leader_changes: u64,
    trims: u64,
    snapshots_installed: u64,
    liveness_ticks_max: u64,
    violations: Vec<Violation>,
}

impl Totals {
    fn add(&mut self, report: &Report) {
        self.seeds += 1;
        self.ticks += report.ticks;
        let faults = &report.faults;
        self.faults.dropped += faults.dropped;
        self.faults.duplicated += faults.duplicated;
        self.faults.delayed += faults.delayed;
        self.faults.partitions += faults.partitions;
        self.faults.cut_messages += faults.cut_messages;
        self.faults.crashes += faults.crashes;
        self.faults.crashes_after_promise += faults.crashes_after_promise;
        self.faults.client_restarts += faults.client_restarts;
        self.faults.held_messages += faults.held_messages;
        self.faults.learner_tails_lost += faults.learner_tails_lost;
        self.faults.learner_disks_lost += faults.learner_disks_lost;
        self.faults.pauses += faults.pauses;
        self.faults.leader_pauses += faults.leader_pauses;
        self.messages += report.messages_delivered;
        self.writes_acknowledged += report.operations.writes_acknowledged;
        self.writes_unknown += report.operations.writes_unknown;
        self.reads += report.operations.strong_reads
            + report.operations.session_reads
            + report.operations.eventual_reads;
        self.leader_changes += report.leader_changes;
        self.trims += u64::from(report.trimmed_slot_max > 0);
        self.snapshots_installed += report.snapshots_installed;
        self.liveness_ticks_max = self.liveness_ticks_max.max(report.liveness_ticks);
    }
}

fn soak(first_seed: u64, seeds: u64, steps: u64, threads: Option<usize>) -> ExitCode {
    let threads = threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .max(1);
    println!(
        "soak: seeds {first_seed}..{} ({seeds} seeds), {steps} faulty steps each, {threads} threads",
        first_seed + seeds
    );
    let next = AtomicU64::new(first_seed);
    let totals = Mutex::new(Totals::default());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= first_seed + seeds {
                    return;
                }
                let outcome = run(&Scenario::from_seed(seed, steps), &Hooks::default());
                let mut totals = totals.lock().unwrap();
                match outcome {
                    Ok(report) => totals.add(&report),
                    Err(violation) => {
                        totals.seeds += 1;
                        println!("VIOLATION {violation}");
                        totals.violations.push(violation);
                    }
                }
                if totals.seeds.is_multiple_of(1000) {
                    println!(
                        "  {} seeds, {} violations, {:.0} s",
                        totals.seeds,
                        totals.violations.len(),
                        started.elapsed().as_secs_f64()
                    );
                }
            });
        }
    });
    let totals = totals.into_inner().unwrap();
    let faults = &totals.faults;
    println!(
        "soak done in {:.1} s: {} seeds, {} steps ({} ticks with healing), {} messages delivered",
        started.elapsed().as_secs_f64(),
        totals.seeds,
        totals.seeds * steps,
        totals.ticks,
        totals.messages
    );
    println!("faults injected: {faults}");
    println!(
        "operations: {} writes acknowledged, {} of unknown outcome, {} reads; {} leader changes; \
         slowest recovery after healing: {} ticks",
        totals.writes_acknowledged,
        totals.writes_unknown,
        totals.reads,
        totals.leader_changes,
        totals.liveness_ticks_max
    );
    println!(
        "trimming: {} of {} seeds trimmed the acceptors' logs; learners installed {} peer \
         snapshots",
        totals.trims, totals.seeds, totals.snapshots_installed
    );
    println!("violations: {}", totals.violations.len());
    for violation in &totals.violations {
        println!("  {violation}");
    }
    if totals.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
