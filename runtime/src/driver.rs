//! The one driver every role's core runs in, in production and in the simulation.
//!
//! A [`NodeDriver`] hands a core ([`Core`]) the events of a batch and its ticks, gathering
//! what the core asks for in one [`Ready`]; at the end of the batch it carries the `Ready`
//! out, always in this order:
//! 1. the writes go to the log ([`Log::write`]);
//! 2. the messages that reveal nothing of them ([`Ready::messages`]) are queued;
//! 3. if the core asked for it ([`Ready::sync`]), the log is synced: one fsync for the
//!    whole batch (group commit);
//! 4. the messages that had to wait for durability ([`Ready::persisted_messages`]) are
//!    queued, and every peer's messages of the batch leave in one write ([`Peers::flush`]);
//! 5. the log does its housekeeping ([`Log::maintain`], e.g. compaction), after the
//!    answers have left, so that it never delays them: after a batch that wrote, and
//!    after every batch while the log says it has some under way
//!    ([`Log::wants_maintenance`], a compaction finishing in the background).
//!
//! **A full disk is not a crash.** When the log's write or sync fails for lack of space
//! ([`LogFailure::is_storage_full`]: `ENOSPC`, `EDQUOT`, or the log's quota), the driver
//! holds every message of the batch that has not left, in order, and raises an alarm in
//! [`NodeDriver::status`]. It goes on handing events to the core and appending their
//! writes, whose messages queue up behind the held ones (nothing that depends on a write
//! leaves before it is durable), and retries the sync on every tick; once one succeeds,
//! the held messages leave in order and the alarm clears. While held, a `StatusRequest`
//! is answered at once (a status report waits for no disk). The held messages are
//! bounded ([`HELD_MESSAGES_MAX`], [`HELD_BYTES_MAX`]): past that the oldest are dropped,
//! those that did not wait for a sync first; a dropped message is a lost one, which the
//! protocol tolerates, while one sent before its sync would not be. A failed replacement
//! of the log ([`Write::Replace`]) cannot be redone from what the driver keeps, and any
//! other error means the disk may have lost data: both stay fatal.
//!
//! The driver answers `StatusRequest`s itself, for every role, with the core's status and
//! alarms and the network's view of the peers: a status report is not protocol. It leaves
//! after the writes and answers of the batch so far, since it shows what they changed.
//!
//! The production service plugs in the real network ([`crate::network::Network`]) and a
//! log on the real disk; the simulation plugs in its simulated network and the same log
//! code over [`crate::file_system::SimulatedFileSystem`], so that batching, group commit
//! and compaction are the same code in both.

use crate::event_loop;
use crate::network::{Inbound, Network};
use common::message::{Message, NodeStatus, PeerStatus};
use common::node::{NodeId, Role};
use common::ready::{Core, Destination, Event, Outgoing, Ready, Write};
use std::collections::VecDeque;
use std::io;

/// A node's log, as the driver uses it.
pub trait Log<C: Core> {
    /// Carries out `writes` in order. A log that is not synced in the same batch must
    /// hand the records to the operating system before this returns (the learner's: its
    /// messages may then leave); one that is may keep them until [`Log::sync`].
    fn write(&mut self, writes: Vec<Write<C::Record>>) -> io::Result<()>;
    /// Makes every write so far durable. After a failure of kind
    /// [`io::ErrorKind::StorageFull`] (here or in [`Log::write`]) the log must still hold
    /// every appended record, so that the next successful sync makes them all durable:
    /// the driver then sends what waited for them (see the module's documentation).
    fn sync(&mut self) -> io::Result<()>;
    /// Housekeeping after a batch that wrote something (compaction), given the core's
    /// state; runs after the batch's messages left.
    fn maintain(&mut self, _core: &C) -> io::Result<()> {
        Ok(())
    }
    /// Whether housekeeping waits to be finished (a compaction written in the background):
    /// then [`Log::maintain`] runs after every batch, written or not.
    fn wants_maintenance(&self) -> bool {
        false
    }
}

/// The node's connections, as the driver uses them.
pub trait Peers {
    /// This node.
    fn me(&self) -> NodeId;
    /// Queues `message` for `to`; false (and nothing queued) when no connection to it is
    /// open.
    fn queue(&mut self, to: NodeId, message: &Message) -> bool;
    /// Queues `message` for every connected node of `role` but this one.
    fn queue_to_role(&mut self, role: Role, message: &Message);
    /// Writes everything queued.
    fn flush(&mut self);
    /// The configured peers and whether they are connected, for `/status`.
    fn peer_statuses(&self) -> Vec<PeerStatus>;
    /// The network's own alarms (refusals, insecure mode), for `/status`.
    fn alarms(&self) -> Vec<String>;
}

impl Peers for Network {
    fn me(&self) -> NodeId {
        Network::me(self)
    }
    fn queue(&mut self, to: NodeId, message: &Message) -> bool {
        Network::queue(self, to, message)
    }
    fn queue_to_role(&mut self, role: Role, message: &Message) {
        self.queue_broadcast_to(role, message)
    }
    fn flush(&mut self) {
        Network::flush(self)
    }
    fn peer_statuses(&self) -> Vec<PeerStatus> {
        Network::peer_statuses(self)
    }
    fn alarms(&self) -> Vec<String> {
        Network::alarms(self)
    }
}

/// What failed while a batch was carried out: the log cannot be trusted any more.
#[derive(Debug)]
pub struct LogFailure {
    /// What the driver was doing ("write", "sync", "maintain").
    pub action: &'static str,
    /// The error.
    pub error: io::Error,
}

impl LogFailure {
    /// Whether the disk (or the log's quota) is full: the driver then holds what waits for
    /// the log and retries, instead of stopping.
    pub fn is_storage_full(&self) -> bool {
        matches!(
            self.error.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
    }
}

/// While the disk is full, the log's housekeeping (compaction) is tried every this many
/// sync retries (ticks).
const MAINTAIN_RETRY_INTERVAL: u64 = 10;

/// At most this many messages are held while the disk is full...
pub const HELD_MESSAGES_MAX: usize = 65_536;
/// ...and at most this many bytes of them (encoded, plus their bookkeeping).
pub const HELD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A message waiting for a sync that the full disk refused.
struct HeldMessage {
    outgoing: Outgoing,
    /// Whether it waits for the writes to be durable (a persisted message); the others
    /// came after a failed write and are dropped first.
    persisted: bool,
    bytes: usize,
}

/// The log ran out of space: what waits for it, oldest first.
struct NoSpace {
    /// What failed last ("the log's sync failed: ...").
    failure: String,
    held: VecDeque<HeldMessage>,
    held_bytes: usize,
    dropped_messages: u64,
    /// A tick passed since the last attempt: the next batch retries the sync.
    retry_due: bool,
    /// Sync retries so far.
    retries: u64,
}

impl NoSpace {
    fn hold(&mut self, outgoing: Outgoing, persisted: bool) {
        let bytes = postcard::experimental::serialized_size(&outgoing.message).unwrap_or(0)
            + std::mem::size_of::<HeldMessage>();
        self.held.push_back(HeldMessage {
            outgoing,
            persisted,
            bytes,
        });
        self.held_bytes += bytes;
        if self.held.len() > HELD_MESSAGES_MAX || self.held_bytes > HELD_BYTES_MAX {
            // Down to three quarters of the bounds, so that this pass runs once per
            // quarter of them rather than for every message.
            self.drop_oldest_until(HELD_MESSAGES_MAX / 4 * 3, HELD_BYTES_MAX / 4 * 3);
        }
    }

    /// Drops the oldest messages that did not wait for the sync, then, if that is not
    /// enough, the oldest of the others, until at most `count` messages of at most
    /// `bytes` are held.
    fn drop_oldest_until(&mut self, count: usize, bytes: usize) {
        for drop_persisted in [false, true] {
            let mut remaining = self.held.len();
            let mut held_bytes = self.held_bytes;
            let mut dropped = 0u64;
            self.held.retain(|message| {
                let over = remaining > count || held_bytes > bytes;
                let dropping = over && message.persisted == drop_persisted;
                if dropping {
                    remaining -= 1;
                    held_bytes -= message.bytes;
                    dropped += 1;
                }
                !dropping
            });
            self.held_bytes = held_bytes;
            self.dropped_messages += dropped;
        }
    }

    fn alarm(&self) -> String {
        format!(
            "no space: {}; writes are held until space is freed ({} messages held, {} dropped)",
            self.failure,
            self.held.len(),
            self.dropped_messages
        )
    }
}

/// What [`NodeDriver::with_observer`] calls after every batch.
type Observer<C> = Box<dyn FnMut(&C)>;

/// A core, its log and its peers: the shape every role runs in.
pub struct NodeDriver<C: Core, L: Log<C>, P: Peers> {
    core: C,
    log: L,
    peers: P,
    /// What the batch's events and ticks asked for so far.
    ready: Ready<C::Record>,
    /// Called after every batch with the core (the proposer logs leadership changes).
    observer: Option<Observer<C>>,
    /// The disk is full: what waits for a sync that succeeds.
    no_space: Option<NoSpace>,
    /// The last maintenance failed for lack of space (it runs again after the next write).
    maintain_failure: Option<String>,
    /// PLANTED BUG (feature `planted-bugs`, the simulation only): persisted messages are
    /// queued before the sync.
    #[cfg(feature = "planted-bugs")]
    sends_before_sync: bool,
}

impl<C: Core, L: Log<C>, P: Peers> NodeDriver<C, L, P> {
    /// Drives `core` over `log` and `peers`.
    pub fn new(core: C, log: L, peers: P) -> Self {
        NodeDriver {
            core,
            log,
            peers,
            ready: Ready::default(),
            observer: None,
            no_space: None,
            maintain_failure: None,
            #[cfg(feature = "planted-bugs")]
            sends_before_sync: false,
        }
    }

    /// PLANTED BUG, for the simulation only (feature `planted-bugs`): from now on the
    /// messages that must wait for the sync are queued before it. A crash between the two
    /// would let a proposer hear of a promise the acceptor then forgets; `sim` must catch
    /// it.
    #[cfg(feature = "planted-bugs")]
    pub fn plant_sends_before_sync(&mut self) {
        self.sends_before_sync = true;
    }

    fn sends_before_sync(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.sends_before_sync
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            false
        }
    }

    /// Calls `observer` with the core after every batch (for logging only).
    pub fn with_observer(mut self, observer: impl FnMut(&C) + 'static) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// The core.
    pub fn core(&self) -> &C {
        &self.core
    }

    /// The core, for a harness that plants a bug in it.
    pub fn core_mut(&mut self) -> &mut C {
        &mut self.core
    }

    /// The log.
    pub fn log(&self) -> &L {
        &self.log
    }

    /// The log, for a harness that inspects what it wrote.
    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }

    /// The peers.
    pub fn peers_mut(&mut self) -> &mut P {
        &mut self.peers
    }

    /// Hands one event to the core (a `StatusRequest` is answered here); what it asks for
    /// waits for [`NodeDriver::carry_out`].
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Message(from, Message::StatusRequest { request_id }) => {
                let reply = Message::StatusReply {
                    request_id,
                    status: self.status(),
                };
                match self.no_space {
                    // At once: it shows the alarm, and holds no protocol state.
                    Some(_) => self.queue(&Outgoing {
                        to: Destination::Node(from),
                        message: reply,
                    }),
                    // Last of the batch so far: after its writes (the status shows what
                    // they changed) and after the answers to what came before it.
                    None => self.ready.send_after_persist(from, reply),
                }
            }
            event => self.core.on_event(event, &mut self.ready),
        }
    }

    /// One tick of the clock passed.
    pub fn tick(&mut self) {
        if let Some(no_space) = self.no_space.as_mut() {
            no_space.retry_due = true;
        }
        self.core.on_tick(&mut self.ready);
    }

    /// This node's `/status` report.
    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            node: self.peers.me(),
            detail: self.core.status(),
            peers: self.peers.peer_statuses(),
            alarms: self
                .peers
                .alarms()
                .into_iter()
                .chain(self.core.alarms())
                .chain(self.no_space.as_ref().map(NoSpace::alarm))
                .chain(self.maintain_failure.clone())
                .collect(),
        }
    }

    /// Carries out what the batch asked for, in the order of the module's documentation.
    /// A full disk is not an error (see the module's documentation); any other failure of
    /// the log is.
    pub fn carry_out(&mut self) -> Result<(), LogFailure> {
        let mut ready = std::mem::take(&mut self.ready);
        // What depends on no write leaves first, held or not.
        for outgoing in std::mem::take(&mut ready.unheld_messages) {
            self.queue(&outgoing);
        }
        if self.no_space.is_some() {
            return self.carry_out_held(ready);
        }
        let wrote = !ready.writes.is_empty();
        if wrote {
            let replaces = replaces(&ready.writes);
            if let Err(error) = self.log.write(ready.writes) {
                let failure = held_or_fatal("write", error, replaces)?;
                let unsent = ready.messages.into_iter().map(|outgoing| (outgoing, false));
                let persisted = ready.persisted_messages.into_iter();
                self.start_holding(
                    failure,
                    unsent.chain(persisted.map(|outgoing| (outgoing, true))),
                );
                self.end_batch();
                return Ok(());
            }
        }
        for outgoing in &ready.messages {
            self.queue(outgoing);
        }
        let sends_before_sync = self.sends_before_sync();
        if sends_before_sync {
            for outgoing in &ready.persisted_messages {
                self.queue(outgoing);
            }
        }
        if ready.sync {
            if let Err(error) = self.log.sync() {
                let failure = held_or_fatal("sync", error, false)?;
                let persisted = match sends_before_sync {
                    true => Vec::new(),
                    false => ready.persisted_messages,
                };
                self.start_holding(
                    failure,
                    persisted.into_iter().map(|outgoing| (outgoing, true)),
                );
                self.end_batch();
                return Ok(());
            }
            self.core.on_synced();
        }
        if !sends_before_sync {
            for outgoing in &ready.persisted_messages {
                self.queue(outgoing);
            }
        }
        self.peers.flush();
        if wrote || self.log.wants_maintenance() {
            self.maintain()?;
        }
        self.end_batch();
        Ok(())
    }

    /// A batch while the disk is full: its writes go behind the held ones, its messages
    /// too, and after a tick the sync is tried again.
    fn carry_out_held(&mut self, ready: Ready<C::Record>) -> Result<(), LogFailure> {
        if !ready.writes.is_empty() {
            let replaces = replaces(&ready.writes);
            if let Err(error) = self.log.write(ready.writes) {
                let failure = held_or_fatal("write", error, replaces)?;
                self.note_failure(&failure);
            }
        }
        let unsent = ready.messages.into_iter().map(|outgoing| (outgoing, false));
        let persisted = ready.persisted_messages.into_iter();
        self.hold(unsent.chain(persisted.map(|outgoing| (outgoing, true))));
        let retry_due = self
            .no_space
            .as_mut()
            .is_some_and(|no_space| std::mem::take(&mut no_space.retry_due));
        if retry_due {
            // Housekeeping may free the space (an acceptor compacts what it trimmed);
            // a log as large as its quota is not rewritten every tick.
            let no_space = self.no_space.as_mut().expect("held");
            no_space.retries += 1;
            if no_space.retries.is_multiple_of(MAINTAIN_RETRY_INTERVAL) {
                self.maintain()?;
            }
            match self.log.sync() {
                Ok(()) => return self.resume(),
                Err(error) => {
                    let failure = held_or_fatal("sync", error, false)?;
                    self.note_failure(&failure);
                }
            }
        }
        self.peers.flush();
        self.end_batch();
        Ok(())
    }

    /// The log's write or sync failed for lack of space: from now on what waits for the
    /// log is held.
    fn start_holding(
        &mut self,
        failure: LogFailure,
        unsent: impl Iterator<Item = (Outgoing, bool)>,
    ) {
        tracing::error!(
            node = %self.peers.me(),
            error = %failure.error,
            "no space: the log's {} failed; holding writes and their answers until a sync \
             succeeds (retried every tick)",
            failure.action
        );
        self.core.on_storage_full(true);
        self.no_space = Some(NoSpace {
            failure: String::new(),
            held: VecDeque::new(),
            held_bytes: 0,
            dropped_messages: 0,
            retry_due: false,
            retries: 0,
        });
        self.note_failure(&failure);
        self.hold(unsent);
        self.peers.flush();
    }

    fn note_failure(&mut self, failure: &LogFailure) {
        if let Some(no_space) = self.no_space.as_mut() {
            no_space.failure = format!("the log's {} failed: {}", failure.action, failure.error);
        }
    }

    /// Holds `messages` behind those already held; a status reply leaves at once instead,
    /// showing the alarm.
    fn hold(&mut self, messages: impl Iterator<Item = (Outgoing, bool)>) {
        for (outgoing, persisted) in messages {
            if let Message::StatusReply { request_id, .. } = outgoing.message {
                let reply = Outgoing {
                    to: outgoing.to,
                    message: Message::StatusReply {
                        request_id,
                        status: self.status(),
                    },
                };
                self.queue(&reply);
                continue;
            }
            if let Some(no_space) = self.no_space.as_mut() {
                no_space.hold(outgoing, persisted);
            }
        }
    }

    /// A sync succeeded after the disk was full: every write so far is durable, so the
    /// held messages leave, in order.
    fn resume(&mut self) -> Result<(), LogFailure> {
        let Some(no_space) = self.no_space.take() else {
            return Ok(());
        };
        self.core.on_storage_full(false);
        self.core.on_synced();
        tracing::info!(
            node = %self.peers.me(),
            held_messages = no_space.held.len(),
            dropped_messages = no_space.dropped_messages,
            "the log's sync succeeded again: writes resumed, held messages sent"
        );
        for held in &no_space.held {
            self.queue(&held.outgoing);
        }
        self.peers.flush();
        self.maintain()?;
        self.end_batch();
        Ok(())
    }

    /// The log's housekeeping; for lack of space it waits for the next write instead.
    fn maintain(&mut self) -> Result<(), LogFailure> {
        match self.log.maintain(&self.core) {
            Ok(()) => self.maintain_failure = None,
            Err(error) => {
                let failure = held_or_fatal("maintain", error, false)?;
                if self.maintain_failure.is_none() {
                    tracing::warn!(
                        node = %self.peers.me(),
                        error = %failure.error,
                        "no space for the log's maintenance; it runs again after the next write"
                    );
                }
                self.maintain_failure = Some(format!(
                    "no space: the log's maintain failed: {}; it runs again after the next \
                     write",
                    failure.error
                ));
            }
        }
        Ok(())
    }

    fn end_batch(&mut self) {
        if let Some(observer) = self.observer.as_mut() {
            observer(&self.core);
        }
    }

    /// The node stops: makes every write durable and sends what waited for it.
    pub fn finish(&mut self) -> Result<(), LogFailure> {
        if let Some(no_space) = self.no_space.as_mut() {
            no_space.retry_due = true;
        }
        self.carry_out()?;
        if let Some(no_space) = &self.no_space {
            return Err(LogFailure {
                action: "sync",
                error: io::Error::new(io::ErrorKind::StorageFull, no_space.alarm()),
            });
        }
        self.log.sync().map_err(|error| LogFailure {
            action: "sync",
            error,
        })
    }

    fn queue(&mut self, outgoing: &Outgoing) {
        match outgoing.to {
            Destination::Node(to) => {
                self.peers.queue(to, &outgoing.message);
            }
            Destination::Role(role) => self.peers.queue_to_role(role, &outgoing.message),
            Destination::FirstConnected { first, fallback } => {
                if !self.peers.queue(first, &outgoing.message) {
                    self.peers.queue(fallback, &outgoing.message);
                }
            }
        }
    }
}

/// Whether `writes` replace the log: a failed replacement is not redone by a later sync.
fn replaces<R>(writes: &[Write<R>]) -> bool {
    writes
        .iter()
        .any(|write| matches!(write, Write::Replace(_)))
}

/// The failure, if the driver can hold what waits for it (the disk is full, and the log
/// still has every write to redo: it keeps appends, not a replacement); else the error.
fn held_or_fatal(
    action: &'static str,
    error: io::Error,
    replaces: bool,
) -> Result<LogFailure, LogFailure> {
    let failure = LogFailure { action, error };
    match failure.is_storage_full() && !replaces {
        true => Ok(failure),
        false => Err(failure),
    }
}

/// A log that failed: the kernel may have dropped data, and a retried fsync may report
/// success over lost writes, so the only safe move is to stop and recover from the log on
/// restart.
fn fatal(node: NodeId, failure: &LogFailure) -> ! {
    tracing::error!(
        %node,
        error = %failure.error,
        "the log's {} failed; stopping (a restart recovers from the log)",
        failure.action
    );
    std::process::exit(1)
}

impl<C: Core, L: Log<C>> event_loop::Driver for NodeDriver<C, L, Network> {
    fn handle(&mut self, event: Inbound) {
        let event = match event {
            Inbound::Message(from, message) => Event::Message(from, message),
            Inbound::Connected(node) => {
                tracing::debug!(%node, "connected");
                Event::Connected(node)
            }
            Inbound::Disconnected(node) => {
                tracing::debug!(%node, "disconnected");
                Event::Disconnected(node)
            }
        };
        NodeDriver::handle(self, event);
    }

    fn tick(&mut self) {
        NodeDriver::tick(self);
    }

    fn end_batch(&mut self) {
        if let Err(failure) = self.carry_out() {
            fatal(self.peers.me(), &failure);
        }
    }

    fn stop(&mut self) {
        if let Err(failure) = self.finish() {
            fatal(self.peers.me(), &failure);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::message::RoleStatus;

    /// A core that persists a record for every `ReadIndex` and answers it after the sync.
    #[derive(Default)]
    struct Echo {
        ticks: u32,
    }

    impl Core for Echo {
        type Record = u64;
        fn on_event(&mut self, event: Event, ready: &mut Ready<u64>) {
            if let Event::Message(from, Message::ReadIndex { read_id }) = event {
                ready.append(read_id);
                ready.require_sync();
                ready.send_after_persist(from, Message::ReadIndex { read_id });
                ready.send(
                    Destination::FirstConnected {
                        first: NodeId::client(9),
                        fallback: from,
                    },
                    Message::ReadIndex { read_id },
                );
            }
        }
        fn on_tick(&mut self, _ready: &mut Ready<u64>) {
            self.ticks += 1;
        }
        fn status(&self) -> RoleStatus {
            RoleStatus::Acceptor {
                promised_ballot: common::ballot::Ballot::ZERO,
                accepted_slot_max: 0,
                accepted_slot_count: 0,
                trimmed_slot: 0,
                storage_fault: None,
            }
        }
        fn alarms(&self) -> Vec<String> {
            vec!["core alarm".into()]
        }
    }

    /// What happened, in order, across the log and the peers.
    type Journal = std::rc::Rc<std::cell::RefCell<Vec<String>>>;

    struct JournalLog {
        journal: Journal,
        /// The next this many syncs fail with `failure_kind`.
        sync_failures: u32,
        /// The next this many writes fail with `failure_kind`.
        write_failures: u32,
        failure_kind: io::ErrorKind,
    }

    impl JournalLog {
        fn fails(count: &mut u32, kind: io::ErrorKind) -> io::Result<()> {
            if *count == 0 {
                return Ok(());
            }
            *count -= 1;
            Err(io::Error::new(
                kind,
                "log quota of 100 bytes reached: no space",
            ))
        }
    }

    impl Log<Echo> for JournalLog {
        fn write(&mut self, writes: Vec<Write<u64>>) -> io::Result<()> {
            let result = JournalLog::fails(&mut self.write_failures, self.failure_kind);
            let outcome = if result.is_ok() { "" } else { " failed" };
            self.journal
                .borrow_mut()
                .push(format!("write {}{outcome}", writes.len()));
            result
        }
        fn sync(&mut self) -> io::Result<()> {
            let result = JournalLog::fails(&mut self.sync_failures, self.failure_kind);
            let outcome = if result.is_ok() {
                "sync"
            } else {
                "sync failed"
            };
            self.journal.borrow_mut().push(outcome.into());
            result
        }
        fn maintain(&mut self, _core: &Echo) -> io::Result<()> {
            self.journal.borrow_mut().push("maintain".into());
            Ok(())
        }
    }

    struct JournalPeers(Journal);
    impl Peers for JournalPeers {
        fn me(&self) -> NodeId {
            NodeId::acceptor(1)
        }
        fn queue(&mut self, to: NodeId, message: &Message) -> bool {
            let connected = to != NodeId::client(9);
            if connected {
                let kind = message.kind();
                let alarm = match message {
                    Message::StatusReply { status, .. }
                        if status
                            .alarms
                            .iter()
                            .any(|alarm| alarm.starts_with("no space")) =>
                    {
                        " showing no space"
                    }
                    _ => "",
                };
                self.0
                    .borrow_mut()
                    .push(format!("queue {kind:?} to {to}{alarm}"));
            }
            connected
        }
        fn queue_to_role(&mut self, role: Role, _message: &Message) {
            self.0.borrow_mut().push(format!("queue to {role:?}"));
        }
        fn flush(&mut self) {
            self.0.borrow_mut().push("flush".into());
        }
        fn peer_statuses(&self) -> Vec<PeerStatus> {
            Vec::new()
        }
        fn alarms(&self) -> Vec<String> {
            vec!["network alarm".into()]
        }
    }

    type EchoDriver = NodeDriver<Echo, JournalLog, JournalPeers>;

    fn driver() -> (EchoDriver, Journal) {
        failing_driver(0, 0, io::ErrorKind::StorageFull)
    }

    /// A driver whose log fails its next `write_failures` writes and `sync_failures`
    /// syncs with `failure_kind`.
    fn failing_driver(
        write_failures: u32,
        sync_failures: u32,
        failure_kind: io::ErrorKind,
    ) -> (EchoDriver, Journal) {
        let journal = Journal::default();
        let log = JournalLog {
            journal: journal.clone(),
            sync_failures,
            write_failures,
            failure_kind,
        };
        let driver = NodeDriver::new(Echo::default(), log, JournalPeers(journal.clone()));
        (driver, journal)
    }

    fn read_index(driver: &mut EchoDriver, proposer: u32) {
        let from = NodeId::proposer(proposer);
        driver.handle(Event::Message(from, Message::ReadIndex { read_id: 1 }));
    }

    fn taken(journal: &Journal) -> Vec<String> {
        std::mem::take(&mut *journal.borrow_mut())
    }

    fn no_space_alarm(driver: &EchoDriver) -> Option<String> {
        driver
            .status()
            .alarms
            .into_iter()
            .find(|alarm| alarm.starts_with("no space"))
    }

    #[test]
    fn a_batch_writes_then_sends_the_free_messages_then_syncs_once_then_sends_the_rest() {
        let (mut driver, journal) = driver();
        let proposer = NodeId::proposer(1);
        driver.handle(Event::Message(proposer, Message::ReadIndex { read_id: 1 }));
        driver.handle(Event::Message(proposer, Message::ReadIndex { read_id: 2 }));
        driver.tick();
        driver.carry_out().unwrap();
        assert_eq!(
            *journal.borrow(),
            vec![
                "write 2",
                "queue ReadIndex to proposer1", // the fallback: client9 is not connected
                "queue ReadIndex to proposer1",
                "sync",
                "queue ReadIndex to proposer1",
                "queue ReadIndex to proposer1",
                "flush",
                "maintain",
            ]
        );
        assert_eq!(driver.core().ticks, 1);
    }

    #[test]
    fn a_status_request_is_answered_by_the_driver_without_writing_or_syncing() {
        let (mut driver, journal) = driver();
        driver.handle(Event::Message(
            NodeId::client(1),
            Message::StatusRequest { request_id: 7 },
        ));
        driver.carry_out().unwrap();
        assert_eq!(
            *journal.borrow(),
            vec!["queue StatusReply to client1", "flush"]
        );
        assert_eq!(
            driver.status().alarms,
            vec!["network alarm".to_string(), "core alarm".to_string()]
        );
    }

    #[test]
    fn a_full_disk_holds_the_batch_answers_and_releases_them_in_order_once_a_sync_succeeds() {
        let (mut driver, journal) = failing_driver(0, 2, io::ErrorKind::StorageFull);
        read_index(&mut driver, 1);
        driver.carry_out().expect("a full disk is not fatal");
        assert_eq!(
            taken(&journal),
            vec![
                "write 1",
                "queue ReadIndex to proposer1",
                "sync failed",
                "flush"
            ],
            "the free message left, the persisted one is held"
        );
        let alarm = no_space_alarm(&driver).expect("an alarm");
        assert_eq!(
            alarm,
            "no space: the log's sync failed: log quota of 100 bytes reached: no space; \
             writes are held until space is freed (1 messages held, 0 dropped)"
        );
        // Later events still reach the core and their writes the log; nothing leaves.
        read_index(&mut driver, 2);
        driver.carry_out().unwrap();
        assert_eq!(taken(&journal), vec!["write 1", "flush"]);
        driver.tick();
        driver.carry_out().unwrap();
        assert_eq!(
            taken(&journal),
            vec!["sync failed", "flush"],
            "retried on the tick"
        );
        read_index(&mut driver, 3);
        driver.tick();
        driver.carry_out().unwrap();
        assert_eq!(
            taken(&journal),
            vec![
                "write 1",
                "sync",
                "queue ReadIndex to proposer1", // persisted, of the first batch
                "queue ReadIndex to proposer2", // free, of the second
                "queue ReadIndex to proposer2",
                "queue ReadIndex to proposer3",
                "queue ReadIndex to proposer3",
                "flush",
                "maintain",
            ]
        );
        assert_eq!(no_space_alarm(&driver), None, "the alarm cleared");
        read_index(&mut driver, 4);
        driver.carry_out().unwrap();
        assert_eq!(
            taken(&journal),
            vec![
                "write 1",
                "queue ReadIndex to proposer4",
                "sync",
                "queue ReadIndex to proposer4",
                "flush",
                "maintain",
            ],
            "back to the usual batch"
        );
    }

    #[test]
    fn a_failed_write_for_lack_of_space_holds_the_free_messages_after_it_too() {
        let (mut driver, journal) = failing_driver(1, 0, io::ErrorKind::StorageFull);
        read_index(&mut driver, 1);
        driver.carry_out().unwrap();
        assert_eq!(taken(&journal), vec!["write 1 failed", "flush"]);
        assert!(no_space_alarm(&driver)
            .unwrap()
            .contains("the log's write failed"));
        driver.tick();
        driver.carry_out().unwrap();
        assert_eq!(
            taken(&journal),
            vec![
                "sync",
                "queue ReadIndex to proposer1",
                "queue ReadIndex to proposer1",
                "flush",
                "maintain",
            ]
        );
    }

    #[test]
    fn a_status_request_is_answered_at_once_while_writes_are_held_and_shows_the_alarm() {
        let (mut driver, journal) = failing_driver(0, 5, io::ErrorKind::StorageFull);
        read_index(&mut driver, 1);
        driver.handle(Event::Message(
            NodeId::client(1),
            Message::StatusRequest { request_id: 7 },
        ));
        driver.carry_out().unwrap();
        assert_eq!(
            taken(&journal),
            vec![
                "write 1",
                "queue ReadIndex to proposer1",
                "sync failed",
                "queue StatusReply to client1 showing no space", // of this very batch
                "flush"
            ]
        );
        driver.handle(Event::Message(
            NodeId::client(1),
            Message::StatusRequest { request_id: 8 },
        ));
        driver.carry_out().unwrap();
        assert_eq!(
            taken(&journal),
            vec!["queue StatusReply to client1 showing no space", "flush"]
        );
        assert!(driver
            .status()
            .alarms
            .iter()
            .any(|alarm| alarm.starts_with("no space: the log's sync failed")));
    }

    #[test]
    fn a_log_error_other_than_a_full_disk_is_still_fatal() {
        for (write_failures, sync_failures, action) in [(1, 0, "write"), (0, 1, "sync")] {
            let (mut driver, journal) =
                failing_driver(write_failures, sync_failures, io::ErrorKind::Other);
            read_index(&mut driver, 1);
            let failure = driver.carry_out().expect_err("an I/O error is fatal");
            assert_eq!(failure.action, action);
            assert!(!failure.is_storage_full());
            assert!(
                !taken(&journal)
                    .iter()
                    .any(|entry| entry == "queue ReadIndex to proposer1" && action == "write"),
                "nothing left after a failed write"
            );
            assert_eq!(no_space_alarm(&driver), None);
        }
    }

    #[test]
    fn held_messages_are_bounded_by_dropping_the_oldest_free_ones_first() {
        let (mut driver, journal) = failing_driver(0, 1, io::ErrorKind::StorageFull);
        read_index(&mut driver, 1);
        driver.carry_out().unwrap();
        // Each request adds a free message and a persisted one.
        let requests = HELD_MESSAGES_MAX / 2 + 100;
        for index in 0..requests {
            read_index(&mut driver, 2 + (index % 2) as u32);
        }
        driver.carry_out().unwrap();
        let alarm = no_space_alarm(&driver).unwrap();
        // One pass when the bound was crossed drops down to three quarters of it; the
        // messages after it are held on top.
        let held_total = 1 + 2 * requests;
        let dropped = HELD_MESSAGES_MAX + 1 - HELD_MESSAGES_MAX / 4 * 3;
        let held = held_total - dropped;
        assert!(
            alarm.ends_with(&format!("({held} messages held, {dropped} dropped)")),
            "{alarm}"
        );
        assert!(dropped < requests, "only free messages had to be dropped");
        taken(&journal);
        driver.tick();
        driver.carry_out().unwrap();
        let sent = taken(&journal);
        let messages = sent
            .iter()
            .filter(|entry| entry.starts_with("queue ReadIndex"))
            .count();
        assert_eq!(messages, held);
        assert_eq!(
            sent[1], "queue ReadIndex to proposer1",
            "the oldest persisted message is still first"
        );
    }
}
