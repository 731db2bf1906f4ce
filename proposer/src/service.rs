//! The proposer service: the network and the round file around [`crate::core::Proposer`],
//! on one thread (see [`runtime::event_loop`]).

use crate::config::ProposerConfig;
use crate::core::{Effect, Proposer, ProposerOptions};
use anyhow::Context;
use common::message::{Message, NodeStatus};
use common::node::NodeId;
use common::TICK_MILLISECONDS;
use runtime::event_loop::{self, Driver, LoopOptions, NodeThread};
use runtime::network::{Inbound, Network, Transport};
use runtime::wal::Wal;
use std::net::SocketAddr;
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

/// The durable highest round: a log of rounds, the last one counts.
struct RoundStore {
    wal: Wal,
}

impl RoundStore {
    fn open(config: &ProposerConfig) -> anyhow::Result<(RoundStore, u64)> {
        let recovered = Wal::open(config.data_dir.join("proposer-round.wal"))
            .with_context(|| format!("opening {}", config.data_dir.display()))?;
        let mut round = 0;
        for record in &recovered.records {
            let bytes: [u8; 8] = record
                .as_slice()
                .try_into()
                .context("proposer round record is not 8 bytes: corrupt")?;
            round = round.max(u64::from_le_bytes(bytes));
        }
        Ok((RoundStore { wal: recovered.wal }, round))
    }

    fn persist(&mut self, round: u64) -> std::io::Result<()> {
        if self.wal.length_bytes() > 1 << 20 {
            self.wal.rewrite([&round.to_le_bytes()[..]])?;
            return Ok(());
        }
        self.wal.append(&round.to_le_bytes());
        self.wal.sync()
    }
}

/// Starts a proposer on `config.listen` (port 0 picks a free port), on a thread of its own
/// (see [`runtime::event_loop`]).
pub async fn start(config: ProposerConfig) -> anyhow::Result<ProposerHandle> {
    let (round_store, persisted_round) = RoundStore::open(&config)?;
    let mut options = ProposerOptions::new(
        config.id,
        config.quorum_size,
        milliseconds_to_ticks(config.heartbeat_interval_milliseconds),
        milliseconds_to_ticks(config.leader_timeout_milliseconds),
    );
    options.seed = rand::random();
    options.max_slots_in_flight = config.max_slots_in_flight as usize;
    options.max_batch_commands = config.max_batch_commands as usize;
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
        max_catch_up_ticks: 100,
        max_batch_events: MAX_BATCH_MESSAGES,
    };
    let node = event_loop::start(
        me,
        Some(listen),
        peers,
        transport,
        loop_options,
        move |network| ProposerDriver {
            proposer,
            network,
            round_store,
            effects: Vec::new(),
            was_leader: false,
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

/// Most messages handled before the effects of a batch are carried out.
const MAX_BATCH_MESSAGES: usize = 4096;

/// The core, its round file and the network, driven by [`runtime::event_loop::run`].
struct ProposerDriver {
    proposer: Proposer,
    network: Network,
    round_store: RoundStore,
    /// The effects of the batch so far.
    effects: Vec<Effect>,
    was_leader: bool,
}

impl Driver for ProposerDriver {
    fn handle(&mut self, event: Inbound) {
        match event {
            Inbound::Message(from, Message::StatusRequest { request_id }) => {
                self.network.send(
                    from,
                    Message::StatusReply {
                        request_id,
                        status: NodeStatus {
                            node: self.network.me(),
                            detail: self.proposer.status(),
                            peers: self.network.peer_statuses(),
                            alarms: self
                                .network
                                .alarms()
                                .into_iter()
                                .chain(self.proposer.alarms())
                                .collect(),
                        },
                    },
                );
            }
            Inbound::Message(from, message) => {
                self.effects.extend(self.proposer.handle(from, message))
            }
            Inbound::Connected(node) => {
                tracing::debug!(%node, "connected");
                self.proposer.on_connected(node);
            }
            Inbound::Disconnected(node) => {
                tracing::debug!(%node, "disconnected");
                self.proposer.on_disconnected(node);
            }
        }
    }

    fn tick(&mut self) {
        self.effects.extend(self.proposer.tick());
    }

    /// Carries out the batch's effects in order. Messages are queued and written together
    /// at the end (one write per peer for the whole batch); a `PersistRound` is durable
    /// before any message queued after it is written.
    fn end_batch(&mut self) {
        for effect in self.effects.drain(..) {
            match effect {
                Effect::PersistRound(round) => {
                    if let Err(error) = self.round_store.persist(round) {
                        tracing::error!(%error, round, "cannot make the round durable; stopping");
                        std::process::exit(1);
                    }
                }
                Effect::Send { to, message } => {
                    self.network.queue(to, &message);
                }
                Effect::Answer {
                    client,
                    relay,
                    message,
                } => {
                    if !self.network.queue(client, &message) {
                        self.network.queue(relay, &message);
                    }
                }
                Effect::Broadcast { role, message } => {
                    self.network.queue_broadcast_to(role, &message)
                }
            }
        }
        self.network.flush();
        if self.proposer.is_leader() != self.was_leader {
            self.was_leader = self.proposer.is_leader();
            match self.proposer.leader_ballot() {
                Some(ballot) => {
                    tracing::info!(proposer = self.proposer.id(), %ballot, "became leader")
                }
                None => tracing::info!(proposer = self.proposer.id(), "no longer leader"),
            }
        }
    }
}
