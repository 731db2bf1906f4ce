//! The acceptor process: the [`Acceptor`] core wired to the network and the disk.
//!
//! The network's handler pushes every inbound event into a channel. One driver thread takes
//! the events in batches (all that are queued, up to [`BATCH_MESSAGES_MAX`]), hands each to
//! the core, then carries out the effects of the whole batch in the order that makes the
//! protocol safe: every `Persist` is appended to the log, the log is synced once (group
//! commit: one fsync for the batch), and only then is any message sent. So no proposer or
//! learner ever hears of a promise or vote that a crash could undo.
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
use common::file_system::{FileSystem, RealFileSystem};
use common::message::{Message, NodeStatus};
use common::network::{Inbound, InboundHandler, Network};
use common::node::{NodeId, Role};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// The most inbound events the driver handles before it syncs and sends: bounds the delay
/// of the first answer of a batch while still sharing one fsync among many messages.
pub const BATCH_MESSAGES_MAX: usize = 4096;

/// How long the network is given to close its sockets on [`Handle::shutdown`].
const NETWORK_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

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
    let listen: SocketAddr = config
        .listen
        .parse()
        .with_context(|| format!("acceptor listen address {:?} is not ip:port", config.listen))?;
    let (acceptor, storage) = recover(&config, file_system).await?;
    let (sender, receiver) = mpsc::channel();
    let handler: InboundHandler = Arc::new(move |event| {
        // Fails only once the driver has stopped, when nothing needs the event.
        let _ = sender.send(event);
    });
    let (runtime, network, address) = start_network(me, listen, handler).await?;
    tracing::info!(
        acceptor = config.id,
        listen = %address,
        data_dir = %config.data_dir.display(),
        promised_ballot = %acceptor.promised_ballot(),
        accepted_slots = acceptor.accepted_slot_count(),
        truncated_tail_bytes = storage.as_ref().map_or(0, Storage::truncated_tail_bytes),
        "acceptor started"
    );
    if let Some(storage) = storage
        .as_ref()
        .filter(|storage| storage.truncated_tail_bytes() > 0)
    {
        tracing::warn!(
            truncated_tail_bytes = storage.truncated_tail_bytes(),
            log = %storage.path().display(),
            "truncated a torn tail of the log (an append cut by a crash, never acknowledged)"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let driver = Driver {
        me,
        acceptor,
        storage,
        network,
        inbound: receiver,
        stop: stop.clone(),
    };
    let driver = std::thread::Builder::new()
        .name(format!("{me}-driver"))
        .spawn(move || driver.run())
        .context("starting the acceptor's driver thread")?;
    Ok(Handle {
        address,
        stop,
        driver: Some(driver),
        runtime,
    })
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

/// Starts the network on a runtime of its own, so that stopping the acceptor closes its
/// listener and connections, as a crash would, and a restart can bind the same port.
async fn start_network(
    me: NodeId,
    listen: SocketAddr,
    handler: InboundHandler,
) -> anyhow::Result<(NetworkRuntime, Network, SocketAddr)> {
    let runtime = NetworkRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("{me}-network"))
            .enable_all()
            .build()
            .context("starting the acceptor's network runtime")?,
    ));
    let (network, bound) = runtime
        .handle()
        .spawn(async move { Network::start(me, Some(listen), &[], handler).await })
        .await
        .context("starting the acceptor's network")?
        .with_context(|| format!("acceptor cannot listen on {listen}"))?;
    let address = bound.expect("the network returns the address it listens on");
    Ok((runtime, network, address))
}

/// A running acceptor. Dropping it (or [`Handle::shutdown`]) stops the driver and closes
/// the network, as a crash would: everything acknowledged is already on disk.
pub struct Handle {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    driver: Option<JoinHandle<()>>,
    runtime: NetworkRuntime,
}

/// The network's runtime; dropping it stops every connection without blocking, which is
/// allowed even inside another runtime (a plain `Runtime` panics when dropped there).
struct NetworkRuntime(Option<tokio::runtime::Runtime>);

impl NetworkRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime is taken only on shutdown")
            .handle()
    }
}

impl Drop for NetworkRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Handle {
    /// The address the acceptor listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the acceptor and waits until its driver has ended and its sockets are closed.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        let driver = self.driver.take();
        let runtime = self.runtime.0.take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(driver) = driver {
                let _ = driver.join();
            }
            if let Some(runtime) = runtime {
                runtime.shutdown_timeout(NETWORK_SHUTDOWN_TIMEOUT);
            }
        })
        .await;
    }

    /// Waits until the driver stops, which it does only on shutdown or when an invariant
    /// assertion fails (an error).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let Some(driver) = self.driver.take() else {
            return Ok(());
        };
        let outcome = tokio::task::spawn_blocking(move || driver.join())
            .await
            .context("waiting for the acceptor's driver")?;
        match outcome {
            Ok(()) => Ok(()),
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                tracing::error!(reason, "the acceptor's driver stopped");
                anyhow::bail!("the acceptor's driver stopped: {reason}")
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(driver) = self.driver.take() {
            // The driver notices the flag within one tick; joining keeps the log closed
            // before anyone (a restart in a test) reopens it.
            let _ = driver.join();
        }
        // The network runtime then shuts down as `self.runtime` drops.
    }
}

/// Owns the core, the log and the network handle; runs on its own thread.
struct Driver {
    me: NodeId,
    acceptor: Acceptor,
    /// None while the acceptor refuses to vote (a corrupt log): it persists nothing.
    storage: Option<Storage>,
    network: Network,
    inbound: mpsc::Receiver<Inbound>,
    stop: Arc<AtomicBool>,
}

/// A message to send once the batch is durable.
enum Outgoing {
    To(NodeId, Message),
    Learners(Message),
}

impl Driver {
    fn run(mut self) {
        // The acceptor has no timers: the tick only bounds how long the driver takes to
        // notice a shutdown.
        let tick = Duration::from_millis(common::TICK_MILLISECONDS);
        let mut batch = Vec::with_capacity(BATCH_MESSAGES_MAX);
        while !self.stop.load(Ordering::Acquire) {
            match self.inbound.recv_timeout(tick) {
                Ok(event) => batch.push(event),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < BATCH_MESSAGES_MAX {
                match self.inbound.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            self.handle_batch(&mut batch);
        }
        tracing::debug!(node = %self.me, "acceptor driver stopped");
    }

    /// Feeds a batch to the core, then persists (one sync) and only then sends.
    fn handle_batch(&mut self, batch: &mut Vec<Inbound>) {
        let mut outgoing = Vec::with_capacity(batch.len() * 2);
        let mut persisted_records = 0usize;
        for event in batch.drain(..) {
            persisted_records += self.handle_event(event, &mut outgoing);
        }
        if persisted_records > 0 {
            if let Err(error) = self.storage().sync() {
                fatal("syncing the log", &error);
            }
        }
        // Votes for the learners leave as one AcceptedValues per batch (the learners count
        // entries, not messages), and every peer gets its messages in one write.
        let mut votes = Vec::new();
        for message in outgoing {
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

    /// Hands one event to the core: appends its records to the log (not yet synced) and
    /// queues its messages in `outgoing`. Returns how many records it appended.
    fn handle_event(&mut self, event: Inbound, outgoing: &mut Vec<Outgoing>) -> usize {
        let (from, message) = match event {
            Inbound::Message(from, Message::StatusRequest { request_id }) => {
                outgoing.push(Outgoing::To(from, self.status_reply(request_id)));
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
                Effect::Send { to, message } => outgoing.push(Outgoing::To(to, message)),
                Effect::SendToLearners(message) => outgoing.push(Outgoing::Learners(message)),
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
