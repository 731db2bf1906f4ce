//! The proposer service: the network, the round file, and a driver thread around
//! [`crate::core::Proposer`].

use crate::core::{Effect, Proposer, ProposerOptions};
use anyhow::Context;
use common::config::ProposerConfig;
use common::message::{Message, NodeStatus};
use common::network::{Inbound, Network};
use common::node::NodeId;
use common::wal::Wal;
use common::TICK_MILLISECONDS;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running proposer; dropping it stops the driver.
pub struct ProposerHandle {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    driver: Option<JoinHandle<()>>,
}

impl ProposerHandle {
    /// Where the proposer listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the driver thread (the network tasks end with the runtime).
    pub fn shutdown(mut self) {
        self.stop_driver();
    }

    fn stop_driver(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
    }
}

impl Drop for ProposerHandle {
    fn drop(&mut self) {
        self.stop_driver();
    }
}

/// Runs a proposer until the process ends.
pub async fn run(config: ProposerConfig) -> anyhow::Result<()> {
    let handle = start(config).await?;
    std::future::pending::<()>().await;
    drop(handle);
    Ok(())
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

/// Starts a proposer on `config.listen` (port 0 picks a free port).
pub async fn start(config: ProposerConfig) -> anyhow::Result<ProposerHandle> {
    let (mut round_store, persisted_round) = RoundStore::open(&config)?;
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
    let (sender, inbox) = mpsc::channel::<Inbound>();
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
    let handler = Arc::new(move |event| {
        let _ = sender.send(event);
    });
    let (network, bound) = Network::start(me, Some(listen), &peers, handler)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = bound.expect("a listener was requested");
    tracing::info!(
        proposer = config.id,
        %address,
        persisted_round,
        seed = options.seed,
        quorum = config.quorum_size,
        "proposer started"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let driver_stop = stop.clone();
    let proposer = Proposer::new(options, persisted_round);
    let driver = std::thread::Builder::new()
        .name(format!("proposer{}-driver", config.id))
        .spawn(move || drive(proposer, inbox, network, &mut round_store, &driver_stop))?;
    Ok(ProposerHandle {
        address,
        stop,
        driver: Some(driver),
    })
}

/// Most messages handled before the effects of a batch are carried out.
const MAX_BATCH_MESSAGES: usize = 4096;

fn drive(
    mut proposer: Proposer,
    inbox: mpsc::Receiver<Inbound>,
    network: Network,
    round_store: &mut RoundStore,
    stop: &AtomicBool,
) {
    let tick = Duration::from_millis(TICK_MILLISECONDS);
    let mut next_tick = Instant::now() + tick;
    let mut was_leader = false;
    while !stop.load(Ordering::Relaxed) {
        let mut effects = Vec::new();
        let wait = next_tick.saturating_duration_since(Instant::now());
        match inbox.recv_timeout(wait) {
            Ok(event) => {
                handle_event(&mut proposer, &network, event, &mut effects);
                for event in inbox.try_iter().take(MAX_BATCH_MESSAGES) {
                    handle_event(&mut proposer, &network, event, &mut effects);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        let mut ticks = 0;
        while now >= next_tick && ticks < 100 {
            effects.extend(proposer.tick());
            next_tick += tick;
            ticks += 1;
        }
        if now >= next_tick {
            next_tick = now + tick; // we fell far behind (paused): do not replay the past
        }
        execute(&network, round_store, effects);
        if proposer.is_leader() != was_leader {
            was_leader = proposer.is_leader();
            match proposer.leader_ballot() {
                Some(ballot) => tracing::info!(proposer = proposer.id(), %ballot, "became leader"),
                None => tracing::info!(proposer = proposer.id(), "no longer leader"),
            }
        }
    }
}

fn handle_event(
    proposer: &mut Proposer,
    network: &Network,
    event: Inbound,
    effects: &mut Vec<Effect>,
) {
    match event {
        Inbound::Message(from, Message::StatusRequest { request_id }) => {
            network.send(
                from,
                Message::StatusReply {
                    request_id,
                    status: NodeStatus {
                        node: network.me(),
                        detail: proposer.status(),
                        peers: network.peer_statuses(),
                    },
                },
            );
        }
        Inbound::Message(from, message) => effects.extend(proposer.handle(from, message)),
        Inbound::Connected(node) => tracing::debug!(%node, "connected"),
        Inbound::Disconnected(node) => tracing::debug!(%node, "disconnected"),
    }
}

/// Carries out `effects` in order. Messages are queued and written together at the end
/// (one write per peer for the whole batch); a `PersistRound` is durable before any
/// message queued after it is written.
fn execute(network: &Network, round_store: &mut RoundStore, effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::PersistRound(round) => {
                if let Err(error) = round_store.persist(round) {
                    tracing::error!(%error, round, "cannot make the round durable; stopping");
                    std::process::exit(1);
                }
            }
            Effect::Send { to, message } => {
                network.queue(to, &message);
            }
            Effect::Answer {
                client,
                relay,
                message,
            } => {
                if !network.queue(client, &message) {
                    network.queue(relay, &message);
                }
            }
            Effect::Broadcast { role, message } => network.queue_broadcast_to(role, &message),
        }
    }
    network.flush();
}
