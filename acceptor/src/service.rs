//! The acceptor process: the [`Acceptor`] core wired to the network and the disk.
//!
//! The network and the driver share one thread (see [`common::event_loop`]). The loop
//! hands the core the inbound events in batches (all that are queued, up to
//! [`BATCH_MESSAGES_MAX`]), then the driver carries out the effects of the whole batch in
//! the order that makes the protocol safe: every `Persist` is appended to the log, the log
//! is synced once (group commit: one fsync for the batch), and only then is any message
//! sent. So no proposer or learner ever hears of a promise or vote that a crash could undo.
//!
//! The acceptor dials no one: proposers and learners connect to it, and votes for learners
//! go to every learner connected at the time (a learner that missed some asks again with
//! `SyncAccepted`).
//!
//! A corrupt log (damage before its tail) does not stop the acceptor: it runs but refuses
//! to vote ([`Acceptor::refusing`]), says why in its status and its log, and writes
//! nothing, so the damage stays for an operator to inspect. A failed write or fsync does
//! stop it: after a failed fsync the kernel may have dropped the data, and a retry could
//! report success for writes that never reached the disk.

use crate::core::{Acceptor, Effect};
use crate::storage::Storage;
use anyhow::Context;
use common::config::AcceptorConfig;
use common::event_loop::{self, Driver, LoopOptions, NodeThread};
use common::file_system::{FileSystem, RealFileSystem};
use common::message::{Message, NodeStatus};
use common::network::{Inbound, Network, Transport};
use common::node::{NodeId, Role};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The most inbound events the driver handles before it syncs and sends: bounds the delay
/// of the first answer of a batch while still sharing one fsync among many messages.
pub const BATCH_MESSAGES_MAX: usize = 4096;

/// Runs acceptor `config.id` until the process is killed. Returns an error if it cannot
/// start (bad listen address, unreadable log directory) or if its driver stops (a broken
/// invariant).
pub async fn run(config: AcceptorConfig) -> anyhow::Result<()> {
    start(config).await?.wait().await
}

/// Starts the acceptor and returns once it listens (on an ephemeral port if
/// `config.listen` ends in `:0`); see [`Handle`] to stop it.
pub async fn start(config: AcceptorConfig) -> anyhow::Result<Handle> {
    start_in(config, Arc::new(RealFileSystem)).await
}

/// [`start`], keeping the log in `file_system` (a simulated one, in tests of what the
/// acceptor does when its disk fails).
pub async fn start_in(
    config: AcceptorConfig,
    file_system: Arc<dyn FileSystem>,
) -> anyhow::Result<Handle> {
    let me = NodeId::acceptor(config.id);
    let transport = Transport::from_security(&config.security, me)
        .context("loading the node's TLS certificates")?;
    let listen: SocketAddr = config
        .listen
        .parse()
        .with_context(|| format!("acceptor listen address {:?} is not ip:port", config.listen))?;
    let (acceptor, storage) = recover(&config, file_system).await?;
    let loop_options = LoopOptions {
        // The acceptor has no timers: the tick only bounds how long it takes to notice a
        // shutdown.
        tick: Duration::from_millis(common::TICK_MILLISECONDS),
        max_catch_up_ticks: 1,
        max_batch_events: BATCH_MESSAGES_MAX,
    };
    let recovered_slots = acceptor.accepted_slot_count();
    let promised_ballot = acceptor.promised_ballot();
    let truncated_tail_bytes = storage.as_ref().map_or(0, Storage::truncated_tail_bytes);
    let log_path = storage.as_ref().map(|storage| storage.path().to_path_buf());
    let node = event_loop::start(
        me,
        Some(listen),
        Vec::new(),
        transport,
        loop_options,
        move |network| AcceptorDriver {
            me,
            acceptor,
            storage,
            network,
            outgoing: Vec::new(),
            persisted_records: 0,
        },
    )
    .await?;
    let address = node
        .address()
        .expect("the network returns the address it listens on");
    tracing::info!(
        acceptor = config.id,
        listen = %address,
        data_dir = %config.data_dir.display(),
        %promised_ballot,
        accepted_slots = recovered_slots,
        truncated_tail_bytes,
        "acceptor started"
    );
    if let (true, Some(log)) = (truncated_tail_bytes > 0, log_path) {
        tracing::warn!(
            truncated_tail_bytes,
            log = %log.display(),
            "truncated a torn tail of the log (an append cut by a crash, never acknowledged)"
        );
    }
    Ok(Handle { address, node })
}

/// Opens the log and replays it. A corrupt log is never a fresh start (an acceptor that
/// forgot its promises could let two values be chosen): the acceptor then runs refusing
/// to vote, without storage. A log that cannot be opened at all is an error.
async fn recover(
    config: &AcceptorConfig,
    file_system: Arc<dyn FileSystem>,
) -> anyhow::Result<(Acceptor, Option<Storage>)> {
    let data_dir = config.data_dir.clone();
    let opened = tokio::task::spawn_blocking(move || Storage::open_in(file_system, &data_dir))
        .await
        .context("opening the acceptor's log")?;
    match opened {
        Ok((mut storage, records)) => {
            storage.stagger_compaction(config.id);
            Ok((Acceptor::recover(config.id, records), Some(storage)))
        }
        Err(error) if error.is_corruption() => {
            tracing::error!(
                %error,
                "the acceptor's log is corrupt: running, but refusing to vote until an \
                 operator repairs or replaces the data directory"
            );
            Ok((Acceptor::refusing(config.id, error.to_string()), None))
        }
        Err(error) => {
            tracing::error!(%error, "cannot recover the acceptor's state; refusing to start");
            Err(anyhow::Error::new(error).context(format!(
                "acceptor {} cannot recover its state from {}",
                config.id,
                config.data_dir.display()
            )))
        }
    }
}

/// A running acceptor. Dropping it (or [`Handle::shutdown`]) stops the driver and closes
/// the network, as a crash would: everything acknowledged is already on disk.
pub struct Handle {
    address: SocketAddr,
    node: NodeThread,
}

impl Handle {
    /// The address the acceptor listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the acceptor and waits until its driver has ended and its sockets are closed.
    pub async fn shutdown(self) {
        self.node.shutdown().await;
    }

    /// Waits until the driver stops, which it does only on shutdown or when an invariant
    /// assertion fails (an error).
    pub async fn wait(self) -> anyhow::Result<()> {
        let outcome = self.node.wait().await;
        if let Err(error) = &outcome {
            tracing::error!(%error, "the acceptor's driver stopped");
        }
        outcome
    }
}

/// The core, its log and the network, driven by [`common::event_loop::run`].
struct AcceptorDriver {
    me: NodeId,
    acceptor: Acceptor,
    /// None while the acceptor refuses to vote (a corrupt log): it persists nothing.
    storage: Option<Storage>,
    network: Network,
    /// Messages of the batch, to send once it is durable.
    outgoing: Vec<Outgoing>,
    /// Records of the batch appended to the log, not yet synced.
    persisted_records: usize,
}

/// A message to send once the batch is durable.
enum Outgoing {
    To(NodeId, Message),
    Learners(Message),
}

impl Driver for AcceptorDriver {
    fn handle(&mut self, event: Inbound) {
        self.persisted_records += self.handle_event(event);
    }

    fn tick(&mut self) {}

    /// Persists the batch (one sync), then sends its messages.
    fn end_batch(&mut self) {
        let persisted_records = std::mem::take(&mut self.persisted_records);
        if persisted_records > 0 {
            if let Err(error) = self.storage().sync() {
                fatal("syncing the log", &error);
            }
        }
        // Votes for the learners leave as one AcceptedValues per batch (the learners count
        // entries, not messages), and every peer gets its messages in one write.
        let mut votes = Vec::new();
        for message in std::mem::take(&mut self.outgoing) {
            match message {
                Outgoing::To(node, message) => {
                    self.network.queue(node, &message);
                }
                Outgoing::Learners(Message::AcceptedValues { entries }) => votes.extend(entries),
                Outgoing::Learners(message) => {
                    self.network.queue_broadcast_to(Role::Learner, &message)
                }
            }
        }
        if !votes.is_empty() {
            let message = Message::AcceptedValues { entries: votes };
            self.network.queue_broadcast_to(Role::Learner, &message);
        }
        self.network.flush();
        if persisted_records > 0 {
            self.compact_if_needed();
        }
    }
}

impl AcceptorDriver {
    /// Hands one event to the core: appends its records to the log (not yet synced) and
    /// queues its messages in `outgoing`. Returns how many records it appended.
    fn handle_event(&mut self, event: Inbound) -> usize {
        let (from, message) = match event {
            Inbound::Message(from, Message::StatusRequest { request_id }) => {
                self.outgoing
                    .push(Outgoing::To(from, self.status_reply(request_id)));
                return 0;
            }
            Inbound::Message(from, message) => (from, message),
            Inbound::Connected(node) => {
                tracing::debug!(%node, "connected");
                return 0;
            }
            Inbound::Disconnected(node) => {
                tracing::debug!(%node, "disconnected");
                return 0;
            }
        };
        let ignored_copy = tracing::enabled!(tracing::Level::DEBUG).then(|| message.clone());
        let effects = self.acceptor.handle(from, message);
        if let (true, Some(message)) = (effects.is_empty(), ignored_copy) {
            tracing::debug!(%from, ?message, "ignored a message an acceptor does not serve");
        }
        let mut persisted_records = 0;
        for effect in effects {
            match effect {
                Effect::Persist(record) => {
                    self.storage().append(&record);
                    persisted_records += 1;
                }
                Effect::Send { to, message } => self.outgoing.push(Outgoing::To(to, message)),
                Effect::SendToLearners(message) => self.outgoing.push(Outgoing::Learners(message)),
            }
        }
        persisted_records
    }

    fn storage(&mut self) -> &mut Storage {
        self.storage
            .as_mut()
            .expect("invariant violated: an acceptor refusing to vote persists nothing")
    }

    /// Runs after the sends, so a compaction never delays the answers of its batch.
    fn compact_if_needed(&mut self) {
        let Some(storage) = self.storage.as_mut() else {
            return;
        };
        match storage.compact_if_needed(&self.acceptor) {
            Ok(true) => tracing::info!(
                log_bytes = storage.length_bytes(),
                accepted_slots = self.acceptor.accepted_slot_count(),
                "compacted the log"
            ),
            Ok(false) => {}
            Err(error) => fatal("compacting the log", &error),
        }
    }

    fn status_reply(&self, request_id: u64) -> Message {
        Message::StatusReply {
            request_id,
            status: NodeStatus {
                node: self.me,
                detail: self.acceptor.status(),
                peers: self.network.peer_statuses(),
                alarms: self
                    .network
                    .alarms()
                    .into_iter()
                    .chain(self.acceptor.alarms())
                    .collect(),
            },
        }
    }
}

/// A failed write or fsync: the kernel may have dropped the data and a retry could falsely
/// succeed, so the only safe move is to stop and recover from the log on restart.
fn fatal(action: &str, error: &std::io::Error) -> ! {
    tracing::error!(%error, "{action} failed; stopping the acceptor (restart recovers from the log)");
    std::process::exit(1)
}
