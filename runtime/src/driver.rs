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
//!    answers have left, so that it never delays them.
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
use std::io;

/// A node's log, as the driver uses it.
pub trait Log<C: Core> {
    /// Carries out `writes` in order. A log that is not synced in the same batch must
    /// hand the records to the operating system before this returns (the learner's: its
    /// messages may then leave); one that is may keep them until [`Log::sync`].
    fn write(&mut self, writes: Vec<Write<C::Record>>) -> io::Result<()>;
    /// Makes every write so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Housekeeping after a batch that wrote something (compaction), given the core's
    /// state; runs after the batch's messages left.
    fn maintain(&mut self, _core: &C) -> io::Result<()> {
        Ok(())
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
                // Last of the batch so far: after its writes (the status shows what they
                // changed) and after the answers to what came before it.
                let status = self.status();
                self.ready
                    .send_after_persist(from, Message::StatusReply { request_id, status });
            }
            event => self.core.on_event(event, &mut self.ready),
        }
    }

    /// One tick of the clock passed.
    pub fn tick(&mut self) {
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
                .collect(),
        }
    }

    /// Carries out what the batch asked for, in the order of the module's documentation.
    pub fn carry_out(&mut self) -> Result<(), LogFailure> {
        let ready = std::mem::take(&mut self.ready);
        let wrote = !ready.writes.is_empty();
        if wrote {
            self.log.write(ready.writes).map_err(|error| LogFailure {
                action: "write",
                error,
            })?;
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
            self.log.sync().map_err(|error| LogFailure {
                action: "sync",
                error,
            })?;
        }
        if !sends_before_sync {
            for outgoing in &ready.persisted_messages {
                self.queue(outgoing);
            }
        }
        self.peers.flush();
        if wrote {
            self.log.maintain(&self.core).map_err(|error| LogFailure {
                action: "maintain",
                error,
            })?;
        }
        if let Some(observer) = self.observer.as_mut() {
            observer(&self.core);
        }
        Ok(())
    }

    /// The node stops: makes every write durable.
    pub fn finish(&mut self) -> Result<(), LogFailure> {
        self.carry_out()?;
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

    struct JournalLog(Journal);
    impl Log<Echo> for JournalLog {
        fn write(&mut self, writes: Vec<Write<u64>>) -> io::Result<()> {
            self.0.borrow_mut().push(format!("write {}", writes.len()));
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            self.0.borrow_mut().push("sync".into());
            Ok(())
        }
        fn maintain(&mut self, _core: &Echo) -> io::Result<()> {
            self.0.borrow_mut().push("maintain".into());
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
                self.0.borrow_mut().push(format!("queue {kind:?} to {to}"));
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

    fn driver() -> (NodeDriver<Echo, JournalLog, JournalPeers>, Journal) {
        let journal = Journal::default();
        let driver = NodeDriver::new(
            Echo::default(),
            JournalLog(journal.clone()),
            JournalPeers(journal.clone()),
        );
        (driver, journal)
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
}
