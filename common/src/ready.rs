//! The one contract between a role's protocol core and the driver that runs it, in the
//! spirit of raft-rs's `Ready` and etcd-raft's `msgsAfterAppend`.
//!
//! A core ([`Core`]) takes events (a message, a peer's connection opening or closing, a
//! tick) and adds to a [`Ready`] what must happen: which records to write to its log
//! ([`Ready::writes`]), whether they must be durable before anything that reveals them
//! leaves ([`Ready::sync`]), the messages that may leave at once ([`Ready::messages`]) and
//! those that may leave only once the writes are durable ([`Ready::persisted_messages`]).
//!
//! One generic driver (`runtime::driver`) carries a `Ready` out for every role, in this
//! order: write, send the messages that need nothing, sync if asked, send the rest; the
//! deterministic simulation (`sim`) runs that same driver over a simulated disk and
//! network. So what the simulation's seeds check, batching and group commit included, is
//! what runs in production.
//!
//! ```
//! use common::message::Message;
//! use common::node::{NodeId, Role};
//! use common::ready::{Destination, Ready};
//!
//! let mut ready: Ready<&str> = Ready::default();
//! ready.append("promised 3.1");
//! ready.require_sync();
//! ready.send_after_persist(NodeId::proposer(1), Message::ReadIndex { read_id: 1 });
//! ready.send(Destination::Role(Role::Learner), Message::ReadIndex { read_id: 2 });
//! assert!(ready.sync && ready.writes.len() == 1);
//! assert_eq!(ready.persisted_messages.len(), 1);
//! ```

use crate::message::{Message, RoleStatus};
use crate::node::{NodeId, Role};

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// One node, if a connection to it is open (otherwise the message is lost, which
    /// every protocol here tolerates: retransmission or gap filling covers it).
    Node(NodeId),
    /// Every node of a role to which a connection is open.
    Role(Role),
    /// `first` if a connection to it is open, else `fallback`: a forwarded write's answer
    /// goes to the client API directly when possible (one hop fewer, and it tells the
    /// client API who really leads), else back through the follower that forwarded it.
    FirstConnected {
        /// Tried first.
        first: NodeId,
        /// Used when `first` is not connected.
        fallback: NodeId,
    },
}

/// A message and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The receivers.
    pub to: Destination,
    /// The message.
    pub message: Message,
}

/// A change to a node's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write<R> {
    /// Add this record at the end.
    Append(R),
    /// Replace the whole log by these records, atomically (a crash leaves the old log or
    /// the new one): a compaction, or a state installed from a peer.
    Replace(Vec<R>),
}

/// What a core asks its driver to do, for the events of one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready<R> {
    /// Changes to the log, in order.
    pub writes: Vec<Write<R>>,
    /// Whether `writes` must be durable (synced) before `persisted_messages` leave. When
    /// false, the writes still reach the operating system before any message leaves, and
    /// become durable later (when some later `Ready` asks for a sync, or at shutdown).
    pub sync: bool,
    /// Messages that reveal nothing of `writes`: they may leave before the writes are
    /// durable.
    pub messages: Vec<Outgoing>,
    /// Messages that may leave only once `writes` are durable (or, if `sync` is false,
    /// written): a promise or a vote is never heard of before a crash can no longer undo it.
    pub persisted_messages: Vec<Outgoing>,
    /// Messages that depend on no write at all, not even on writes of earlier batches the
    /// driver could not make durable yet: they leave at once, even while the driver holds
    /// answers for lack of space (a refusal for lack of space, the confirmation of a
    /// promise already durable).
    pub unheld_messages: Vec<Outgoing>,
}

impl<R> Default for Ready<R> {
    fn default() -> Self {
        Ready {
            writes: Vec::new(),
            sync: false,
            messages: Vec::new(),
            persisted_messages: Vec::new(),
            unheld_messages: Vec::new(),
        }
    }
}

impl<R> Ready<R> {
    /// Appends `record` to the log.
    pub fn append(&mut self, record: R) {
        self.writes.push(Write::Append(record));
    }

    /// Replaces the whole log by `records`.
    pub fn replace(&mut self, records: Vec<R>) {
        self.writes.push(Write::Replace(records));
    }

    /// The writes must be durable before the persisted messages leave.
    pub fn require_sync(&mut self) {
        self.sync = true;
    }

    /// `message` may leave at once.
    pub fn send(&mut self, to: Destination, message: Message) {
        self.messages.push(Outgoing { to, message });
    }

    /// `message` to `to` may leave only once the writes are durable.
    pub fn send_after_persist(&mut self, to: NodeId, message: Message) {
        self.persisted_messages.push(Outgoing {
            to: Destination::Node(to),
            message,
        });
    }

    /// `message` may leave once every write asked for so far is done (durable if a sync
    /// is required): at once if there is none. For a core whose effects are ordered
    /// ("persist, then everything after it").
    pub fn send_after_earlier_writes(&mut self, to: Destination, message: Message) {
        let outgoing = Outgoing { to, message };
        match self.writes.is_empty() {
            true => self.messages.push(outgoing),
            false => self.persisted_messages.push(outgoing),
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && !self.sync
            && self.messages.is_empty()
            && self.persisted_messages.is_empty()
            && self.unheld_messages.is_empty()
    }

    /// `message` leaves at once, even while earlier writes wait for space: only for what
    /// reveals nothing that is not already durable.
    pub fn send_unheld(&mut self, to: NodeId, message: Message) {
        self.unheld_messages.push(Outgoing {
            to: Destination::Node(to),
            message,
        });
    }
}

/// What happened to a node, as its driver tells its core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `message` arrived from the authenticated node `from`.
    Message(NodeId, Message),
    /// A connection to `node` opened.
    Connected(NodeId),
    /// The last connection to `node` closed.
    Disconnected(NodeId),
}

/// A role's protocol core as its driver sees it: no I/O, no clock; events in, a [`Ready`]
/// out. Implemented by the acceptor, proposer and learner cores.
pub trait Core {
    /// One record of the role's log.
    type Record;

    /// Handles `event`, adding what must be done to `ready`. `StatusRequest`s never reach
    /// the core: the driver answers them with [`Core::status`] and [`Core::alarms`].
    fn on_event(&mut self, event: Event, ready: &mut Ready<Self::Record>);

    /// One tick of the clock passed.
    fn on_tick(&mut self, ready: &mut Ready<Self::Record>);

    /// The role's part of the node's `/status` report.
    fn status(&self) -> RoleStatus;

    /// What the core refused from the network, and why (newest last).
    fn alarms(&self) -> Vec<String>;

    /// The log cannot make writes durable for lack of space (`true`: the driver holds what
    /// waits for them), or can again (`false`). An acceptor then refuses new votes with
    /// `NoSpace` instead of accepting what it cannot make durable.
    fn on_storage_full(&mut self, _full: bool) {}

    /// Every write so far is durable (a sync succeeded).
    fn on_synced(&mut self) {}
}
