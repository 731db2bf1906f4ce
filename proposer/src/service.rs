//! The proposer service: the [`Proposer`] core in the driver every role shares
//! ([`runtime::driver`]) over its round log ([`RoundStore`]) and the network, on one thread
//! (see [`runtime::event_loop`]).

use crate::config::ProposerConfig;
use crate::core::{Proposer, ProposerOptions};
use crate::storage::RoundStore;
use anyhow::Context;
use common::node::NodeId;
use common::TICK_MILLISECONDS;
use runtime::driver::NodeDriver;
use runtime::event_loop::{self, LoopOptions, NodeThread, BATCH_EVENTS_MAX};
use runtime::file_system::RealFileSystem;
use runtime::network::Transport;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A running proposer; dropping it stops it and closes its connections.
pub struct ProposerHandle {
    address: SocketAddr,
    node: NodeThread,
}

impl ProposerHandle {
    /// Where the proposer listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the proposer and waits until its sockets are closed.
    pub fn shutdown(mut self) {
        self.node.stop_and_join();
    }
}

/// Runs a proposer until the process ends, or until its driver fails (a broken invariant).
pub async fn run(config: ProposerConfig) -> anyhow::Result<()> {
    start(config).await?.node.wait().await
}

fn milliseconds_to_ticks(milliseconds: u64) -> u64 {
    milliseconds.div_ceil(TICK_MILLISECONDS).max(1)
}

/// Starts a proposer on `config.listen` (port 0 picks a free port), on a thread of its own
/// (see [`runtime::event_loop`]).
pub async fn start(config: ProposerConfig) -> anyhow::Result<ProposerHandle> {
    let (round_store, persisted_round) =
        RoundStore::open_in(Arc::new(RealFileSystem), &config.data_dir)?;
    let mut options = ProposerOptions::new(
        config.id,
        config.quorum_size,
        milliseconds_to_ticks(config.heartbeat_interval_milliseconds),
        milliseconds_to_ticks(config.leader_timeout_milliseconds),
    );
    options.seed = rand::random();
    options.max_slots_in_flight = config.max_slots_in_flight as usize;
    options.max_batch_commands = config.max_batch_commands as usize;
    // Learners are numbered from 1 in the order of LEARNER_HOSTS; their durable slots set
    // the trim point of the acceptors' logs.
    options.learner_count = config.learner_hosts.len();
    options.acceptor_count = config.acceptor_hosts.len();
    let me = NodeId::proposer(config.id);
    let transport = Transport::from_security(&config.security, me)
        .context("loading the node's TLS certificates")?;
    let listen: SocketAddr = config
        .listen
        .parse()
        .with_context(|| format!("PROPOSER_PORT/BIND_ADDRESS: bad address {}", config.listen))?;
    let peers: Vec<String> = config
        .acceptor_hosts
        .iter()
        .chain(&config.learner_hosts)
        .chain(&config.proposer_hosts)
        .cloned()
        .collect();
    let seed = options.seed;
    let proposer = Proposer::new(options, persisted_round);
    let loop_options = LoopOptions {
        tick: Duration::from_millis(TICK_MILLISECONDS),
        // Timers (heartbeats, retransmissions, the leader timeout) catch up after a stall.
        catch_up_ticks_max: 100,
        batch_events_max: BATCH_EVENTS_MAX,
    };
    let node = event_loop::start(
        me,
        Some(listen),
        peers,
        transport,
        loop_options,
        move |network| {
            let mut was_leader = false;
            NodeDriver::new(proposer, round_store, network).with_observer(
                move |proposer: &Proposer| {
                    if proposer.is_leader() == was_leader {
                        return;
                    }
                    was_leader = proposer.is_leader();
                    match proposer.leader_ballot() {
                        Some(ballot) => {
                            tracing::info!(proposer = proposer.id(), %ballot, "became leader")
                        }
                        None => tracing::info!(proposer = proposer.id(), "no longer leader"),
                    }
                },
            )
        },
    )
    .await?;
    let address = node.address().expect("a listener was requested");
    tracing::info!(
        proposer = config.id,
        %address,
        persisted_round,
        seed,
        quorum = config.quorum_size,
        "proposer started"
    );
    Ok(ProposerHandle { address, node })
}
