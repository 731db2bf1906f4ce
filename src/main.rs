//! `paxos`: run one role of the cluster, or the whole default cluster on this machine.
//!
//! - `paxos acceptor | proposer | learner | client` runs one node, configured by the
//!   design's environment variables (see the README).
//! - `paxos up` starts 3 acceptors, 2 proposers, 2 learners and the client API as separate
//!   processes on 127.0.0.1, keeps their data under ./paxos-data, and stops them all on
//!   Ctrl-C or SIGTERM. Started again, it resumes from the data on disk.
//! - `paxos put | get | watch | status` are the command-line client of a running
//!   cluster's REST API (see `cli`).
//! - `paxos healthcheck [ADDRESS]` asks a node's `/health` and exits 0 only if it is
//!   healthy: the healthcheck of a container image that holds nothing but this program.
//!   `paxos node-status [ADDRESS]` prints the node's own `/status`.
//!
//! Every node stops cleanly on SIGTERM or SIGINT (a container's PID 1 gets no default
//! action for them): the learner syncs its log, the others just close their sockets, since
//! everything they acknowledged is already durable.

mod api;
mod certs;
mod cli;
mod up;
mod watch;

use acceptor::config::AcceptorConfig;
use clap::{Parser, Subcommand};
use client::config::ClientConfig;
use common::node::NodeId;
use learner::config::LearnerConfig;
use paxos::admin;
use proposer::config::ProposerConfig;
use runtime::config::{AdminConfig, ConfigError, Environment};
use std::process::ExitCode;
use std::time::Duration;

/// How long a node may take to stop after SIGTERM before it exits anyway.
const STOP_GRACE: Duration = Duration::from_secs(5);

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
    /// Run the node plane in plaintext, trusting every peer's Hello (the same as
    /// PAXOS_INSECURE=true). For experiments only: see docs/SECURITY.md.
    #[arg(long, global = true)]
    insecure: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an acceptor (ACCEPTOR_ID, ACCEPTOR_PORT, TOTAL_ACCEPTORS, DATA_DIR, CLUSTER_ID).
    Acceptor {
        /// Instead of running: start a new incarnation of the acceptor over an empty log
        /// (the old log is moved aside, not deleted), then exit. For an acceptor that
        /// refuses to vote with "amnesia"; safe only while a quorum of the other acceptors
        /// is intact and this acceptor's old votes are no longer needed. Stop it first.
        #[arg(long)]
        reset_identity: bool,
    },
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
    /// Write a cluster CA and one certificate per node of a topology (mutual TLS between
    /// nodes); an existing CA in the directory is kept and used.
    Certs(certs::CertsOptions),
    #[command(flatten)]
    Tool(cli::ClientCommand),
    /// Ask a node's GET /health; exit 0 if it answers 200, 1 otherwise (for container
    /// healthchecks: the image has no curl).
    Healthcheck {
        /// host:port of the node's admin listener or client API; default
        /// 127.0.0.1:$ADMIN_PORT, else 127.0.0.1:$CLIENT_PORT, else 127.0.0.1:8000.
        address: Option<String>,
        /// Milliseconds to wait for the answer.
        #[arg(long, default_value_t = 3000)]
        timeout: u64,
    },
    /// Print a node's GET /status (its own view: ballot, slots, links, checks); exit 0 if it
    /// is healthy. `docker compose exec learner2 /paxos node-status`, for instance.
    NodeStatus {
        /// host:port, defaulting as for `healthcheck`.
        address: Option<String>,
        /// Milliseconds to wait for the answer.
        #[arg(long, default_value_t = 3000)]
        timeout: u64,
    },
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
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = future => outcome,
            signal = termination_signal() => {
                tracing::info!(signal, "stopping");
                // The role stops as its future is dropped; never outlive the request.
                std::thread::spawn(|| {
                    std::thread::sleep(STOP_GRACE);
                    eprintln!("did not stop within {STOP_GRACE:?}; exiting");
                    std::process::exit(1);
                });
                Ok(())
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves with the signal's name on SIGTERM or SIGINT.
async fn termination_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot handle SIGTERM and SIGINT; they will kill the node");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}

/// Runs `role` with the admin listener of `node` beside it when ADMIN_PORT is set.
async fn with_admin<F>(
    admin: AdminConfig,
    node: NodeId,
    listen: String,
    data_dir: std::path::PathBuf,
    security: runtime::config::Security,
    role: F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    if let Some(admin_listen) = admin.listen {
        let transport = runtime::network::Transport::from_security(&security, node)?;
        let target = admin::Target::new(node, &listen, Some(data_dir), transport)?;
        admin::start(&admin_listen, target).await?;
    }
    role.await
}

/// The node of this container: 127.0.0.1:$ADMIN_PORT, else :$CLIENT_PORT, else :8000.
fn local_node_address(address: Option<String>) -> String {
    address.unwrap_or_else(|| {
        let port = ["ADMIN_PORT", "CLIENT_PORT"]
            .iter()
            .find_map(|name| {
                std::env::var(name)
                    .ok()
                    .filter(|port| !port.trim().is_empty())
            })
            .unwrap_or_else(|| "8000".to_string());
        format!("127.0.0.1:{}", port.trim())
    })
}

fn status(address: Option<String>, timeout_milliseconds: u64) -> ExitCode {
    let address = local_node_address(address);
    let timeout = Duration::from_millis(timeout_milliseconds);
    match admin::http_get(&address, "/status", timeout) {
        Ok((status, body)) => {
            println!("{body}");
            if status == 200 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(problem) => {
            eprintln!("{problem}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(address: Option<String>, timeout_milliseconds: u64) -> ExitCode {
    let address = local_node_address(address);
    match admin::healthcheck(&address, Duration::from_millis(timeout_milliseconds)) {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("unhealthy: {problem}");
            ExitCode::FAILURE
        }
    }
}

/// The process environment, with PAXOS_INSECURE=true when `--insecure` was given.
struct Settings {
    insecure: bool,
}

impl runtime::config::Lookup for Settings {
    fn get(&self, name: &str) -> Option<String> {
        if self.insecure && name == runtime::tls::INSECURE_VARIABLE {
            return Some("true".into());
        }
        runtime::config::Lookup::get(&Environment, name)
    }
}

/// `paxos acceptor --reset-identity`: prints what it did and why it may be unsafe.
fn reset_acceptor_identity(config: &AcceptorConfig) -> ExitCode {
    match acceptor::service::reset_identity(config) {
        Ok(reset) => {
            println!("{}", reset.report(&config.data_dir));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "error: cannot reset the identity of acceptor {}: {error}",
                config.id
            );
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    runtime::logging::init();
    let settings = Settings {
        insecure: cli.insecure,
    };
    let admin = match &cli.command {
        Command::Acceptor {
            reset_identity: false,
        }
        | Command::Proposer
        | Command::Learner => match AdminConfig::from_lookup(&Environment) {
            Ok(admin) => admin,
            Err(error) => return config_failure(error),
        },
        _ => AdminConfig { listen: None },
    };
    match cli.command {
        Command::Acceptor {
            reset_identity: true,
        } => match AcceptorConfig::from_lookup(&settings) {
            Ok(config) => reset_acceptor_identity(&config),
            Err(error) => config_failure(error),
        },
        Command::Acceptor {
            reset_identity: false,
        } => match AcceptorConfig::from_lookup(&settings) {
            Ok(config) => run_role(with_admin(
                admin,
                NodeId::acceptor(config.id),
                config.listen.clone(),
                config.data_dir.clone(),
                config.security.clone(),
                acceptor::service::run(config),
            )),
            Err(error) => config_failure(error),
        },
        Command::Proposer => match ProposerConfig::from_lookup(&settings) {
            Ok(config) => run_role(with_admin(
                admin,
                NodeId::proposer(config.id),
                config.listen.clone(),
                config.data_dir.clone(),
                config.security.clone(),
                proposer::service::run(config),
            )),
            Err(error) => config_failure(error),
        },
        Command::Learner => match LearnerConfig::from_lookup(&settings) {
            Ok(config) => run_role(with_admin(
                admin,
                NodeId::learner(config.id),
                config.listen.clone(),
                config.data_dir.clone(),
                config.security.clone(),
                learner::service::run(config),
            )),
            Err(error) => config_failure(error),
        },
        Command::Client => match ClientConfig::from_lookup(&settings) {
            Ok(config) => run_role(client::run(config)),
            Err(error) => config_failure(error),
        },
        Command::Up(mut options) => {
            options.insecure |= cli.insecure;
            up::run(options)
        }
        Command::Certs(options) => certs::run(options),
        Command::Tool(command) => cli::run(command),
        Command::Healthcheck { address, timeout } => healthcheck(address, timeout),
        Command::NodeStatus { address, timeout } => status(address, timeout),
        Command::Bench(options) => paxos::bench::run(options),
    }
}
