//! The learner service: the network and the decided log around [`Learner`], on one thread
//! (see [`runtime::event_loop`]).
//!
//! The loop hands the core every inbound event in batches, then the driver carries out
//! the effects: first every `Persist` (appended to `learner.wal` and written out once per
//! batch), then every `Send`.
//! Unlike an acceptor's votes, decided values can be fetched again from acceptors and peer
//! learners, so the log is synced at most every [`SYNC_INTERVAL`] instead of per batch: a
//! crash may lose the last moments of it, which the learner then fills like any gap.
//!
//! The log is bounded like the learner's history: when the core says so
//! (`PersistSnapshot`), the log is rewritten atomically as one snapshot record followed by
//! the decided slots the learner still holds.
//!
//! The service holds no protocol decisions; it only answers `StatusRequest`, which needs
//! the network's view of the peers.

use crate::config::LearnerConfig;
use crate::core::{Effect, Learner, LearnerOptions};
use anyhow::{anyhow, Context};
use common::message::{DecidedEntry, Message, NodeStatus, StateSnapshot};
use common::node::NodeId;
use runtime::event_loop::{self, Driver, LoopOptions, NodeThread};
use runtime::network::{Inbound, Network, Transport};
use runtime::wal::Wal;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The decided log's file name inside `DATA_DIR`.
pub const WAL_FILE_NAME: &str = "learner.wal";
/// The longest a written log record waits for `fdatasync`.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Inbound events handled per batch, after the one that woke the driver.
const MAX_BATCH_EVENTS: usize = 4096;

/// One record of the learner's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LearnerRecord {
    /// A slot this learner found decided.
    Decided(DecidedEntry),
    /// The state at a slot; the first record of a compacted log (or of a log replaced by a
    /// peer's snapshot). Records after it add history and later slots.
    Snapshot(StateSnapshot),
}

/// A running learner. Dropping it (or [`Handle::shutdown`]) stops it: the driver finishes
/// its batch and syncs the log, then every connection closes.
pub struct Handle {
    address: SocketAddr,
    node: NodeThread,
}

impl Handle {
    /// The address the learner listens on (the real port when configured with port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the learner: the driver finishes its batch and syncs the log, then the
    /// network's tasks and connections are dropped.
    pub fn shutdown(mut self) {
        self.node.stop_and_join();
    }
}

/// Runs the learner of `config` until the process is killed.
pub async fn run(config: LearnerConfig) -> anyhow::Result<()> {
    let handle = start(config).await?;
    tracing::info!(address = %handle.address(), "learner listening");
    handle.node.wait().await
}

/// Starts the learner of `config`: replays its log, listens on `config.listen` (port 0
/// picks a free port, see [`Handle::address`]) and connects to every acceptor, proposer
/// and learner configured.
pub async fn start(config: LearnerConfig) -> anyhow::Result<Handle> {
    let listen: SocketAddr = config
        .listen
        .parse()
        .with_context(|| format!("the learner's listen address {:?}", config.listen))?;
    let me = NodeId::learner(config.id);
    let transport = Transport::from_security(&config.security, me)
        .context("loading the node's TLS certificates")?;
    let mut options = LearnerOptions::new(config.id, config.quorum_size);
    options.retain_slots = config.retain_slots;
    let wal_path = config.data_dir.join(WAL_FILE_NAME);
    let (core, wal) = tokio::task::spawn_blocking(move || recover(options, &wal_path)).await??;

    let peers: Vec<String> = [
        &config.acceptor_hosts,
        &config.proposer_hosts,
        &config.learner_hosts,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    let loop_options = LoopOptions {
        tick: Duration::from_millis(common::TICK_MILLISECONDS),
        // After a stall, resume the cadence instead of firing a burst of ticks.
        max_catch_up_ticks: 1,
        max_batch_events: MAX_BATCH_EVENTS,
    };
    let node = event_loop::start(
        me,
        Some(listen),
        peers,
        transport,
        loop_options,
        move |network| LearnerDriver {
            me,
            core,
            wal,
            network,
            effects: Vec::new(),
            unsynced_since: None,
        },
    )
    .await?;
    Ok(Handle {
        address: node
            .address()
            .expect("a listening network reports its address"),
        node,
    })
}

/// Opens the log at `path` and rebuilds the learner from it. A corrupt log is an error:
/// the learner never starts from nothing over acknowledged data.
fn recover(options: LearnerOptions, path: &Path) -> anyhow::Result<(Learner, Wal)> {
    let recovered = Wal::open(path).map_err(|error| {
        tracing::error!(%error, "cannot open the learner's log");
        anyhow!(error)
    })?;
    if recovered.truncated_tail_bytes > 0 {
        tracing::warn!(
            path = %path.display(),
            bytes = recovered.truncated_tail_bytes,
            "truncated a torn tail of the learner's log (a crash during an append)"
        );
    }
    let mut entries = Vec::with_capacity(recovered.records.len());
    let mut snapshot: Option<StateSnapshot> = None;
    for (index, record) in recovered.records.iter().enumerate() {
        match postcard::from_bytes::<LearnerRecord>(record) {
            Ok(LearnerRecord::Decided(entry)) => entries.push(entry),
            Ok(LearnerRecord::Snapshot(state)) => {
                if snapshot
                    .as_ref()
                    .is_none_or(|known| known.applied_slot < state.applied_slot)
                {
                    snapshot = Some(state);
                }
            }
            Err(error) => {
                let problem = format!(
                    "learner log {} record {index} has a valid checksum but does not decode: {error}",
                    path.display()
                );
                tracing::error!("{problem}");
                return Err(anyhow!(problem));
            }
        }
    }
    let record_count = entries.len();
    let snapshot_slot = snapshot.as_ref().map(|snapshot| snapshot.applied_slot);
    let learner = Learner::recover_from_snapshot(options, snapshot, entries);
    tracing::info!(
        path = %path.display(),
        records = record_count,
        snapshot_slot,
        history_start_slot = learner.history_start_slot(),
        applied_slot = learner.applied_slot(),
        known_slot_max = learner.known_slot_max(),
        "learner recovered its log"
    );
    Ok((learner, recovered.wal))
}

/// The core, its log and the network, driven by [`runtime::event_loop::run`].
struct LearnerDriver {
    me: NodeId,
    core: Learner,
    wal: Wal,
    network: Network,
    /// The effects of the batch so far.
    effects: Vec<Effect>,
    /// When the oldest record written but not yet synced was written.
    unsynced_since: Option<Instant>,
}

impl Driver for LearnerDriver {
    fn handle(&mut self, event: Inbound) {
        match event {
            Inbound::Connected(node) => self.effects.extend(self.core.on_connected(node)),
            Inbound::Disconnected(node) => self.effects.extend(self.core.on_disconnected(node)),
            Inbound::Message(from, Message::StatusRequest { request_id }) => {
                self.effects.push(Effect::Send {
                    to: from,
                    message: Message::StatusReply {
                        request_id,
                        status: NodeStatus {
                            node: self.me,
                            detail: self.core.status(),
                            peers: self.network.peer_statuses(),
                            alarms: self
                                .network
                                .alarms()
                                .into_iter()
                                .chain(self.core.alarms())
                                .collect(),
                        },
                    },
                });
            }
            Inbound::Message(from, message) => {
                if let Message::Snapshot { snapshot } = &message {
                    tracing::info!(
                        %from,
                        snapshot_slot = snapshot.applied_slot,
                        applied_slot = self.core.applied_slot(),
                        keys = snapshot.key_values.len(),
                        "a peer sent its state as a snapshot"
                    );
                }
                self.effects.extend(self.core.handle(from, message))
            }
        }
    }

    fn tick(&mut self) {
        self.effects.extend(self.core.tick());
    }

    fn end_batch(&mut self) {
        let effects = std::mem::take(&mut self.effects);
        self.execute(effects);
    }

    fn stop(&mut self) {
        if let Err(error) = self.wal.sync() {
            fatal("sync", self.wal.path().to_path_buf(), error);
        }
    }
}

impl LearnerDriver {
    /// Carries out `effects`: every `Persist` and `PersistSnapshot` first (in order), then
    /// the sends.
    fn execute(&mut self, effects: Vec<Effect>) {
        let mut sends = Vec::with_capacity(effects.len());
        for effect in effects {
            match effect {
                Effect::Persist(entry) => {
                    let record = postcard::to_allocvec(&LearnerRecord::Decided(entry))
                        .expect("encoding into a Vec cannot fail");
                    self.wal.append(&record);
                }
                Effect::PersistSnapshot { snapshot, retained } => {
                    self.replace_log(snapshot, retained);
                }
                send => sends.push(send),
            }
        }
        if self.wal.has_pending() {
            if let Err(error) = self.wal.flush() {
                fatal("write", self.wal.path().to_path_buf(), error);
            }
            self.unsynced_since.get_or_insert_with(Instant::now);
        }
        if matches!(self.unsynced_since, Some(since) if since.elapsed() >= SYNC_INTERVAL) {
            if let Err(error) = self.wal.sync() {
                fatal("sync", self.wal.path().to_path_buf(), error);
            }
            self.unsynced_since = None;
        }
        for effect in sends {
            match effect {
                Effect::Send { to, message } => {
                    // A peer that is not connected misses it; gap filling covers the loss.
                    self.network.queue(to, &message);
                }
                Effect::Broadcast { role, message } => {
                    self.network.queue_broadcast_to(role, &message)
                }
                Effect::Persist(_) | Effect::PersistSnapshot { .. } => {
                    unreachable!("persists were taken out above")
                }
            }
        }
        // One write per peer for the whole batch.
        self.network.flush();
    }
}

impl LearnerDriver {
    /// Rewrites the log as `snapshot` followed by `retained` (atomically: a crash leaves the
    /// old log or the new one), which also syncs everything written before.
    fn replace_log(&mut self, snapshot: StateSnapshot, retained: Vec<DecidedEntry>) {
        let snapshot_slot = snapshot.applied_slot;
        let bytes_before = self.wal.length_bytes();
        let mut records = Vec::with_capacity(retained.len() + 1);
        records.push(
            postcard::to_allocvec(&LearnerRecord::Snapshot(snapshot))
                .expect("encoding into a Vec cannot fail"),
        );
        for entry in retained {
            records.push(
                postcard::to_allocvec(&LearnerRecord::Decided(entry))
                    .expect("encoding into a Vec cannot fail"),
            );
        }
        if let Err(error) = self.wal.rewrite(records.iter().map(Vec::as_slice)) {
            fatal("rewrite", self.wal.path().to_path_buf(), error);
        }
        self.unsynced_since = None;
        tracing::info!(
            snapshot_slot,
            records = records.len(),
            bytes_before,
            bytes_after = self.wal.length_bytes(),
            "learner log replaced by a snapshot and the retained history"
        );
    }
}

/// A failed write or sync leaves the log in an unknown state: stop rather than retry
/// (a retried fsync may report success over lost data).
fn fatal(action: &str, path: PathBuf, error: std::io::Error) -> ! {
    tracing::error!(
        path = %path.display(),
        %error,
        "learner log {action} failed; stopping"
    );
    std::process::exit(1)
}
