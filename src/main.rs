//! `paxos`: run one role of the cluster, or the whole default cluster on this machine.
//!
//! - `paxos acceptor | proposer | learner | client` runs one node, configured by the
//!   design's environment variables (see the README).
//! - `paxos up` starts 3 acceptors, 2 proposers, 2 learners and the client API as separate
//!   processes on 127.0.0.1, keeps their data under ./paxos-data, and stops them all on
//!   Ctrl-C or SIGTERM. Started again, it resumes from the data on disk.

mod up;

use clap::{Parser, Subcommand};
use common::config::{
    AcceptorConfig, ClientConfig, ConfigError, Environment, LearnerConfig, ProposerConfig,
};
use std::process::ExitCode;

/// Every role allocates per message and per request (frames, values, HTTP bodies) from
/// several threads; glibc's allocator spent about a sixth of the client API's time under
/// load, mimalloc a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "paxos",
    version,
    about = "A replicated key-value store kept consistent by Multi-Paxos"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an acceptor (ACCEPTOR_ID, ACCEPTOR_PORT, TOTAL_ACCEPTORS, DATA_DIR).
    Acceptor,
    /// Run a proposer (PROPOSER_ID, PROPOSER_PORT, ACCEPTOR_HOSTS, LEARNER_HOSTS,
    /// PROPOSER_HOSTS, HEARTBEAT_INTERVAL, LEADER_TIMEOUT, DATA_DIR).
    Proposer,
    /// Run a learner (LEARNER_ID, LEARNER_PORT, ACCEPTOR_HOSTS, PROPOSER_HOSTS,
    /// LEARNER_HOSTS, TOTAL_ACCEPTORS, QUORUM_SIZE, DATA_DIR).
    Learner,
    /// Run the client API (CLIENT_ID, CLIENT_PORT, PROPOSER_HOSTS, LEARNER_HOSTS).
    Client,
    /// Start the whole default cluster on 127.0.0.1 and stop it on Ctrl-C or SIGTERM.
    Up(up::UpOptions),
    /// Load the client API (or etcd's JSON gateway) and report throughput and latency.
    Bench(paxos::bench::BenchOptions),
}

fn config_failure(error: ConfigError) -> ExitCode {
    eprintln!("{error}");
    ExitCode::from(2)
}

fn run_role<F>(future: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    common::logging::init();
    match cli.command {
        Command::Acceptor => match AcceptorConfig::from_lookup(&Environment) {
            Ok(config) => run_role(acceptor::service::run(config)),
            Err(error) => config_failure(error),
        },
        Command::Proposer => match ProposerConfig::from_lookup(&Environment) {
            Ok(config) => run_role(proposer::service::run(config)),
            Err(error) => config_failure(error),
        },
        Command::Learner => match LearnerConfig::from_lookup(&Environment) {
            Ok(config) => run_role(learner::service::run(config)),
            Err(error) => config_failure(error),
        },
        Command::Client => match ClientConfig::from_lookup(&Environment) {
            Ok(config) => run_role(client::run(config)),
            Err(error) => config_failure(error),
        },
        Command::Up(options) => up::run(options),
        Command::Bench(options) => paxos::bench::run(options),
    }
}
