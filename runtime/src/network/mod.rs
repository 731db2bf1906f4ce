//! The node-to-node network: persistent connections carrying framed [`Message`]s, over
//! mutual TLS unless the node runs insecure.
//!
//! Each node listens on its port and keeps one outbound connection to every configured
//! peer address, reconnecting with backoff. A connection starts with the TLS handshake, in
//! which both ends prove who they are with a certificate of the cluster's CA; then both
//! send `Hello`. The peer's [`NodeId`] is the one its certificate names (see
//! [`crate::tls`]); only in insecure mode is it the one `Hello` claims. Afterwards a message
//! is addressed to a [`NodeId`], whichever side opened the connection. Messages to a node
//! that is not connected are dropped: the protocols tolerate loss (proposers retransmit,
//! learners fill gaps, clients retry), and dropping keeps a dead peer from growing memory.
//!
//! The network is the edge where the outside is checked, before any core sees it:
//! - every inbound message must be one its sender's role may send to this node's role
//!   ([`common::routes`]); others are dropped, counted and logged once per peer and kind;
//! - before a peer is authenticated its frames are limited to
//!   [`PRE_AUTHENTICATION_FRAME_BYTES_MAX`], a frame must arrive within a deadline, and
//!   read buffers grow with the bytes received, not with the length announced (see
//!   `reader`);
//! - at most [`MAX_INBOUND_CONNECTIONS`] inbound connections at once, of which at most
//!   [`MAX_HANDSHAKING_CONNECTIONS`] not yet authenticated (a new one evicts the oldest, so
//!   silent connections cannot keep a real peer out), and at most
//!   [`MAX_CONNECTIONS_PER_PEER`] per authenticated node.
//!
//! Sending costs no thread switch: a message is encoded into its connection's outbox and
//! written by the sending thread itself with a non-blocking `write` (a driver thread queues
//! every message of a batch with [`Network::queue`] and writes them with one
//! [`Network::flush`], so a burst of messages to one peer costs one system call). Only when
//! the socket is full does the connection's writer task take over the outbox and wait for
//! room; it then writes everything queued meanwhile in one call. A broadcast encodes its
//! message once for every receiver (and encrypts it once per connection).
//!
//! For fault tests only, the network has a fault switch ([`FAULT_FILE_VARIABLE`]): when
//! `PAXOS_FAULT_FILE` names a file, the network reads it every 50 ms and silently drops the
//! messages it lists (to and/or from given nodes), so that a test can cut nodes off from
//! each other, one way or both, without touching the machine's network. Unset (always, in
//! production), nothing is read and nothing is dropped.

mod outbox;
mod reader;

use crate::tls::{self, NodeTls, Security};
use crate::wire::{encode_frame, MAX_FRAME_BYTES};
use common::alarm::Alarms;
use common::message::{Message, PeerStatus};
use common::node::{NodeId, Role};
use common::routes::{self, MessageKind};
use outbox::{write_loop, Outbox};
use reader::FrameReader;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long the TLS handshake and the peer's `Hello` may take together.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest frame a peer may send before it is authenticated (its `Hello`).
pub const PRE_AUTHENTICATION_FRAME_BYTES_MAX: usize = 4 * 1024;
/// Inbound connections a node holds at once; more are closed as they arrive.
pub const MAX_INBOUND_CONNECTIONS: usize = 512;
/// Inbound connections still in their handshake at once; a new one evicts the oldest.
pub const MAX_HANDSHAKING_CONNECTIONS: usize = 64;
/// Connections one authenticated node may hold to this node (normally one each way).
pub const MAX_CONNECTIONS_PER_PEER: usize = 4;
/// A peer whose kernel acknowledges nothing for this long, neither our data nor keepalive
/// probes, is gone: the connection is closed and redialled, resolving the peer's name
/// again. Without it, a peer cut off by a partition, or re-created with a new address,
/// leaves a half-open connection that swallows every message until the kernel gives up
/// retransmitting (about 15 minutes). A merely slow or paused process is unaffected while
/// its kernel still acknowledges (until its receive buffer fills).
const PEER_SILENCE_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time before the first keepalive probe, and the time between probes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(1);

/// How the alarm of insecure mode begins in `/status`, so that a reader of a node's alarms
/// (the client API's summary) can tell that node runs in plaintext.
pub const INSECURE_ALARM_PREFIX: &str = "insecure:";

/// A connection's TLS session, shared by its reader and its writer.
type TlsSession = Arc<Mutex<rustls::Connection>>;

/// How a node's connections are secured.
#[derive(Clone, Debug)]
pub enum Transport {
    /// Mutual TLS: peers are who their certificates say.
    Tls(Arc<NodeTls>),
    /// Plaintext: peers are who their `Hello` says (insecure mode, and tests of the
    /// protocol that play other nodes).
    Plaintext,
}

impl Transport {
    /// The transport `security` asks for, with its files loaded for node `me`.
    pub fn from_security(security: &Security, me: NodeId) -> anyhow::Result<Transport> {
        match security {
            Security::Insecure => Ok(Transport::Plaintext),
            Security::Tls(files) => Ok(Transport::Tls(Arc::new(NodeTls::load(files, me)?))),
        }
    }

    /// Whether this is plaintext.
    pub fn is_insecure(&self) -> bool {
        matches!(self, Transport::Plaintext)
    }
}

/// The environment variable naming the fault file of a node, for fault tests. Each line of
/// the file is `<direction> <node>`: `in` drops messages from that node, `out` drops
/// messages to it, `both` does both; `*` stands for every node; `#` starts a comment. A
/// missing or empty file drops nothing.
pub const FAULT_FILE_VARIABLE: &str = "PAXOS_FAULT_FILE";
/// How often the fault file is read.
const FAULT_FILE_POLL: Duration = Duration::from_millis(50);

/// What the network hands to the node.
#[derive(Debug)]
pub enum Inbound {
    /// A connection to `node` is open.
    Connected(NodeId),
    /// The last connection to `node` closed.
    Disconnected(NodeId),
    /// `message` arrived from `node`.
    Message(NodeId, Message),
}

/// Where inbound events go (a channel into the node's driver).
pub type InboundHandler = Arc<dyn Fn(Inbound) + Send + Sync>;

struct Route {
    connection_id: u64,
    outbound: bool,
    outbox: Arc<Outbox>,
}

#[derive(Default)]
struct Shared {
    routes: HashMap<NodeId, Vec<Route>>,
    peers: Vec<PeerStatus>,
}

/// The nodes whose messages the fault switch drops, as the fault file lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultRules {
    /// Messages from these nodes are dropped on arrival.
    pub drop_inbound: HashSet<NodeId>,
    /// Messages to these nodes are dropped instead of sent.
    pub drop_outbound: HashSet<NodeId>,
    /// `in *`: messages from every node are dropped.
    pub drop_all_inbound: bool,
    /// `out *`: messages to every node are dropped.
    pub drop_all_outbound: bool,
}

impl FaultRules {
    /// Parses a fault file (see [`FAULT_FILE_VARIABLE`]); a malformed line is an error
    /// naming it.
    pub fn parse(text: &str) -> Result<FaultRules, String> {
        let mut rules = FaultRules::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(direction), Some(node), None) = (words.next(), words.next(), words.next())
            else {
                return Err(format!(
                    "fault rule {line:?} is not '<in|out|both> <node|*>'"
                ));
            };
            let (inbound, outbound) = match direction {
                "in" => (true, false),
                "out" => (false, true),
                "both" => (true, true),
                _ => {
                    return Err(format!(
                        "fault rule {line:?}: direction must be in, out or both"
                    ))
                }
            };
            if node == "*" {
                rules.drop_all_inbound |= inbound;
                rules.drop_all_outbound |= outbound;
                continue;
            }
            let node: NodeId = node
                .parse()
                .map_err(|error| format!("fault rule {line:?}: {error}"))?;
            if inbound {
                rules.drop_inbound.insert(node);
            }
            if outbound {
                rules.drop_outbound.insert(node);
            }
        }
        Ok(rules)
    }

    fn drops_inbound(&self, from: NodeId) -> bool {
        self.drop_all_inbound || self.drop_inbound.contains(&from)
    }

    fn drops_outbound(&self, to: NodeId) -> bool {
        self.drop_all_outbound || self.drop_outbound.contains(&to)
    }
}

/// A handle on the node's network; cheap to clone.
#[derive(Clone)]
pub struct Network {
    me: NodeId,
    transport: Transport,
    shared: Arc<Mutex<Shared>>,
    handler: InboundHandler,
    next_connection_id: Arc<AtomicU64>,
    /// Outboxes with messages queued since the last flush.
    dirty: Arc<Mutex<Vec<Arc<Outbox>>>>,
    /// The fault switch's rules (empty unless a fault file is configured).
    faults: Arc<Mutex<FaultRules>>,
    /// Messages the fault switch dropped, both ways.
    fault_drops: Arc<AtomicU64>,
    /// Whether a fault switch is in use at all, so that production sends skip its lock.
    faults_active: Arc<AtomicBool>,
    /// What the edge refused, for logs and `/status`.
    refusals: Arc<Mutex<Refusals>>,
    /// Inbound connections open, and of those still in their handshake.
    inbound_connections: Arc<AtomicUsize>,
    handshakes: Arc<Handshakes>,
}

/// What the network refused: messages its table forbids, connections that failed to
/// authenticate or broke a bound.
#[derive(Default)]
struct Refusals {
    /// Messages dropped because their sender's role may not send them here.
    messages: u64,
    /// Connections closed before or after authentication for breaking a rule.
    connections: u64,
    /// (peer, kind) pairs already logged, so that a flood logs once.
    logged: HashSet<(NodeId, MessageKind)>,
    /// The refusals as alarms, bounded; their clock counts refusals.
    alarms: Alarms,
}

impl Refusals {
    /// Keeps `text` as an alarm; true if it is new (then it deserves a log line).
    fn alarm(&mut self, text: String) -> bool {
        let new = !self.alarms.entries().iter().any(|alarm| alarm.text == text);
        let clock = self.messages + self.connections;
        self.alarms.raise(clock, text);
        new
    }
}

/// Decrements a connection counter when the connection it counts ends.
struct CountedConnection(Arc<AtomicUsize>);

impl CountedConnection {
    /// Counts one more connection unless `limit` are counted already.
    fn try_new(counter: &Arc<AtomicUsize>, limit: usize) -> Option<CountedConnection> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count < limit).then_some(count + 1)
            })
            .ok()
            .map(|_| CountedConnection(Arc::clone(counter)))
    }
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The inbound connections still in their handshake, oldest first. At most
/// [`MAX_HANDSHAKING_CONNECTIONS`]: a new one evicts the oldest, so that connections that
/// open and say nothing cannot keep a peer that completes its handshake in milliseconds
/// out for long (each must wait out at most [`HELLO_TIMEOUT`] anyway).
#[derive(Default)]
struct Handshakes {
    waiting: Mutex<std::collections::VecDeque<(u64, SocketAddr, Arc<tokio::sync::Notify>)>>,
    next_id: AtomicU64,
}

/// One connection's place among the handshakes; gives it up when dropped.
struct HandshakeSlot {
    id: u64,
    evicted: Arc<tokio::sync::Notify>,
    handshakes: Arc<Handshakes>,
}

impl Handshakes {
    /// A place for a new handshake from `address`, evicting the oldest when all are taken
    /// (its task is told through its `evicted`); the second member is the address of the
    /// connection evicted, if one was.
    fn admit(self: &Arc<Self>, address: SocketAddr) -> (HandshakeSlot, Option<SocketAddr>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evicted = Arc::new(tokio::sync::Notify::new());
        let mut waiting = self.waiting.lock().unwrap();
        let mut evicted_one = None;
        if waiting.len() >= MAX_HANDSHAKING_CONNECTIONS {
            if let Some((_, oldest_address, oldest)) = waiting.pop_front() {
                oldest.notify_one();
                evicted_one = Some(oldest_address);
            }
        }
        waiting.push_back((id, address, Arc::clone(&evicted)));
        let slot = HandshakeSlot {
            id,
            evicted,
            handshakes: Arc::clone(self),
        };
        (slot, evicted_one)
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut waiting = self.handshakes.waiting.lock().unwrap();
        waiting.retain(|(id, _, _)| *id != self.id);
    }
}

/// Aborts a task when dropped: a connection's writer ends with its connection.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Network {
    /// Starts the network of node `me`: listens on `listen` (if any; the bound address is
    /// returned) and connects to each of `peer_addresses` ("host:port"), secured by
    /// `transport`.
    pub async fn start(
        me: NodeId,
        listen: Option<SocketAddr>,
        peer_addresses: &[String],
        transport: Transport,
        handler: InboundHandler,
    ) -> io::Result<(Network, Option<SocketAddr>)> {
        if transport.is_insecure() {
            tracing::warn!(
                node = %me,
                "the node-to-node network runs in plaintext ({}=true): anyone who reaches \
                 this node's port can pose as any node",
                tls::INSECURE_VARIABLE
            );
        }
        let network = Network {
            me,
            transport,
            shared: Arc::new(Mutex::new(Shared::default())),
            handler,
            next_connection_id: Arc::new(AtomicU64::new(1)),
            dirty: Arc::new(Mutex::new(Vec::new())),
            faults: Arc::new(Mutex::new(FaultRules::default())),
            fault_drops: Arc::new(AtomicU64::new(0)),
            faults_active: Arc::new(AtomicBool::new(
                std::env::var_os(FAULT_FILE_VARIABLE).is_some(),
            )),
            refusals: Arc::new(Mutex::new(Refusals::default())),
            inbound_connections: Arc::new(AtomicUsize::new(0)),
            handshakes: Arc::new(Handshakes::default()),
        };
        if let Some(path) = std::env::var_os(FAULT_FILE_VARIABLE) {
            tokio::spawn(watch_fault_file(
                me,
                std::path::PathBuf::from(path),
                network.faults.clone(),
            ));
        }
        let bound = match listen {
            Some(address) => {
                let listener = TcpListener::bind(address).await?;
                let bound = listener.local_addr()?;
                tokio::spawn(network.clone().accept_loop(listener));
                Some(bound)
            }
            None => None,
        };
        for address in peer_addresses {
            network.add_peer(address);
        }
        Ok((network, bound))
    }

    /// Whether this network runs in plaintext, trusting every `Hello`.
    pub fn is_insecure(&self) -> bool {
        self.transport.is_insecure()
    }

    /// Messages dropped at the edge because their sender may not send them here.
    pub fn refused_messages(&self) -> u64 {
        self.refusals.lock().unwrap().messages
    }

    /// Connections closed for failing authentication or breaking a bound.
    pub fn refused_connections(&self) -> u64 {
        self.refusals.lock().unwrap().connections
    }

    /// What the edge refused, as lines for `/status` (with how often), and the insecure
    /// mode's warning when it is on.
    pub fn alarms(&self) -> Vec<String> {
        let refusals = self.refusals.lock().unwrap();
        let mut alarms: Vec<String> = Vec::new();
        if self.is_insecure() {
            alarms.push(format!(
                "{INSECURE_ALARM_PREFIX} the node-to-node network runs in plaintext ({}=true); peers are \
                 who they say they are",
                tls::INSECURE_VARIABLE
            ));
        }
        alarms.extend(refusals.alarms.texts());
        alarms
    }

    /// Drops `kind` from `peer`: counted, logged once per peer and kind, kept as an alarm.
    fn refuse_message(&self, peer: NodeId, kind: MessageKind) {
        let mut refusals = self.refusals.lock().unwrap();
        refusals.messages += 1;
        let text = format!(
            "refused {kind:?} from {peer}: {} may not send it to {}",
            with_article(peer.role),
            with_article(self.me.role)
        );
        if refusals.logged.len() < 4096 && refusals.logged.insert((peer, kind)) {
            tracing::warn!(%peer, message = ?kind, "{text}; dropped (logged once per peer)");
        }
        refusals.alarm(text);
    }

    /// Counts a connection closed for breaking a rule, and keeps why.
    fn refuse_connection(&self, from: Option<SocketAddr>, problem: &str) {
        let mut refusals = self.refusals.lock().unwrap();
        refusals.connections += 1;
        let from = from.map_or_else(|| "a peer".to_string(), |address| address.ip().to_string());
        let text = format!("refused a connection from {from}: {problem}");
        if refusals.alarm(text.clone()) {
            tracing::warn!("{text} (logged once per address and reason)");
        } else {
            tracing::debug!("{text}");
        }
    }

    /// Starts keeping a connection to `address` ("host:port"), unless it is already a
    /// peer. Must be called within the Tokio runtime.
    pub fn add_peer(&self, address: &str) {
        let index = {
            let mut shared = self.shared.lock().unwrap();
            if shared.peers.iter().any(|peer| peer.address == address) {
                return;
            }
            shared.peers.push(PeerStatus {
                address: address.to_string(),
                node: None,
                connected: false,
            });
            shared.peers.len() - 1
        };
        tokio::spawn(self.clone().connect_loop(index, address.to_string()));
    }

    /// Replaces the fault switch's rules (the fault file's watcher does this; tests may
    /// too).
    pub fn set_fault_rules(&self, rules: FaultRules) {
        self.faults_active.store(true, Ordering::Relaxed);
        *self.faults.lock().unwrap() = rules;
    }

    /// Messages the fault switch has dropped so far, both ways.
    pub fn messages_dropped_by_faults(&self) -> u64 {
        self.fault_drops.load(Ordering::Relaxed)
    }

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Whether the fault switch cuts messages to `to` (counting each one it drops).
    fn cut_outbound(&self, to: NodeId) -> bool {
        let cut = self.faults_active.load(Ordering::Relaxed)
            && self.faults.lock().unwrap().drops_outbound(to);
        if cut {
            self.fault_drops.fetch_add(1, Ordering::Relaxed);
        }
        cut
    }

    /// The outbox of the connection that carries messages to `to`: the one we opened if
    /// any, else the one `to` opened.
    fn outbox(&self, to: NodeId) -> Option<Arc<Outbox>> {
        let shared = self.shared.lock().unwrap();
        let routes = shared.routes.get(&to)?;
        routes
            .iter()
            .find(|route| route.outbound)
            .or_else(|| routes.first())
            .map(|route| Arc::clone(&route.outbox))
    }

    /// The outboxes of every connected node of `role`, in node order.
    fn outboxes(&self, role: Role) -> Vec<Arc<Outbox>> {
        self.connected_nodes(role)
            .into_iter()
            .filter(|node| !self.cut_outbound(*node))
            .filter_map(|node| self.outbox(node))
            .collect()
    }

    /// Sends `message` to `to` now; returns false (and drops it) if `to` is not connected
    /// or its outbox is full.
    pub fn send(&self, to: NodeId, message: Message) -> bool {
        if self.cut_outbound(to) {
            return true; // lost on a cut link: as silent as a real one
        }
        match self.outbox(to) {
            Some(outbox) => {
                let queued = outbox.append_message(&message);
                outbox.flush();
                queued
            }
            None => false,
        }
    }

    /// Sends `message` to `to` soon: it is queued, and the connection's writer task writes
    /// it after the tasks ready now have run, together with whatever they queue meanwhile.
    /// For many concurrent tasks that each send one message (the client API's requests):
    /// one `write` carries the messages of all of them instead of one each. Call it from
    /// within the Tokio runtime that runs the network. Returns false (and drops the message)
    /// like [`Network::send`].
    pub fn send_soon(&self, to: NodeId, message: Message) -> bool {
        if self.cut_outbound(to) {
            return true; // lost on a cut link: as silent as a real one
        }
        match self.outbox(to) {
            Some(outbox) => outbox.append_and_hand_to_writer(&message),
            None => false,
        }
    }

    /// Sends `message` to every connected node of `role`.
    pub fn broadcast(&self, role: Role, message: &Message) {
        let outboxes = self.queue_broadcast(role, message);
        for outbox in outboxes {
            outbox.flush();
        }
    }

    /// Queues `message` for `to` without writing it yet: it leaves at the next
    /// [`Network::flush`] (or earlier, if the connection's writer is busy). For a driver
    /// that sends many messages per batch, so that each peer gets them in one write.
    /// Returns false (and drops it) like [`Network::send`].
    pub fn queue(&self, to: NodeId, message: &Message) -> bool {
        if self.cut_outbound(to) {
            return true; // lost on a cut link: as silent as a real one
        }
        match self.outbox(to) {
            Some(outbox) => {
                let queued = outbox.append_message(message);
                self.mark_dirty(outbox);
                queued
            }
            None => false,
        }
    }

    /// Queues `message` for every connected node of `role`, encoded once; it leaves at the
    /// next [`Network::flush`].
    pub fn queue_broadcast_to(&self, role: Role, message: &Message) {
        for outbox in self.queue_broadcast(role, message) {
            self.mark_dirty(outbox);
        }
    }

    /// Writes everything queued with [`Network::queue`] since the last flush.
    pub fn flush(&self) {
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap());
        for outbox in dirty {
            outbox.flush();
        }
    }

    fn queue_broadcast(&self, role: Role, message: &Message) -> Vec<Arc<Outbox>> {
        let outboxes = self.outboxes(role);
        if outboxes.is_empty() {
            return outboxes;
        }
        let mut frame = Vec::new();
        encode_frame(message, &mut frame);
        outboxes
            .into_iter()
            .filter(|outbox| outbox.append(&frame))
            .collect()
    }

    fn mark_dirty(&self, outbox: Arc<Outbox>) {
        let mut dirty = self.dirty.lock().unwrap();
        if !dirty.iter().any(|known| Arc::ptr_eq(known, &outbox)) {
            dirty.push(outbox);
        }
    }

    /// The nodes of `role` connected now.
    pub fn connected_nodes(&self, role: Role) -> Vec<NodeId> {
        let shared = self.shared.lock().unwrap();
        let mut nodes: Vec<NodeId> = shared
            .routes
            .keys()
            .filter(|node| node.role == role)
            .copied()
            .collect();
        nodes.sort();
        nodes
    }

    /// The configured outbound peers and whether each is connected.
    pub fn peer_statuses(&self) -> Vec<PeerStatus> {
        self.shared.lock().unwrap().peers.clone()
    }

    async fn accept_loop(self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, address)) => {
                    let Some(open) = CountedConnection::try_new(
                        &self.inbound_connections,
                        MAX_INBOUND_CONNECTIONS,
                    ) else {
                        self.refuse_connection(Some(address), "too many connections open");
                        continue;
                    };
                    let (handshaking, evicted) = self.handshakes.admit(address);
                    if let Some(evicted) = evicted {
                        self.refuse_connection(
                            Some(evicted),
                            "evicted, the oldest of too many handshakes at once",
                        );
                    }
                    let network = self.clone();
                    tokio::spawn(async move {
                        let _open = open;
                        let result = network
                            .run_connection(stream, None, Some(address), Some(handshaking))
                            .await;
                        if let Err(error) = result {
                            tracing::debug!(%error, %address, "inbound connection ended");
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn connect_loop(self, peer_index: usize, address: String) {
        let mut backoff = Duration::from_millis(20);
        loop {
            match TcpStream::connect(address.as_str()).await {
                Ok(stream) => {
                    backoff = Duration::from_millis(20);
                    let peer_address = stream.peer_addr().ok();
                    match self
                        .run_connection(stream, Some(peer_index), peer_address, None)
                        .await
                    {
                        Err(error) if error.kind() == io::ErrorKind::AddrInUse => {
                            tracing::debug!(%address, "this address is the node itself");
                            return;
                        }
                        Err(error) => tracing::debug!(%address, %error, "connection ended"),
                        Ok(()) => {}
                    }
                    self.set_peer(peer_index, None, false);
                }
                Err(error) => {
                    tracing::trace!(%address, %error, "connect failed");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    fn set_peer(&self, peer_index: usize, node: Option<NodeId>, connected: bool) {
        let mut shared = self.shared.lock().unwrap();
        let peer = &mut shared.peers[peer_index];
        if node.is_some() {
            peer.node = node;
        }
        peer.connected = connected;
    }

    /// The TLS handshake: both ends verify each other's certificate against the CA; the
    /// peer is the node its certificate names. None in plaintext.
    async fn handshake(
        &self,
        stream: TcpStream,
        outbound: bool,
    ) -> io::Result<(TcpStream, Option<(TlsSession, NodeId)>)> {
        let Transport::Tls(config) = &self.transport else {
            return Ok((stream, None));
        };
        let (stream, mut session) = if outbound {
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config.client));
            let (stream, session) = connector
                .connect(tls::dial_name(), stream)
                .await?
                .into_inner();
            (stream, rustls::Connection::Client(session))
        } else {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&config.server));
            let (stream, session) = acceptor.accept(stream).await?.into_inner();
            (stream, rustls::Connection::Server(session))
        };
        let certificate = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .ok_or_else(|| invalid("the peer presented no certificate"))?;
        let node = tls::node_identity(certificate).map_err(|error| invalid(&error.0))?;
        // The outbox bounds what is queued; the session must not refuse plaintext.
        session.set_buffer_limit(None);
        // Records the handshake read along with its end (the peer's Hello, often) are
        // buffered unprocessed: process them once now, so that the reader, which processes
        // whatever it reads itself, finds their plaintext.
        session
            .process_new_packets()
            .map_err(|error| invalid(&error.to_string()))?;
        Ok((stream, Some((Arc::new(Mutex::new(session)), node))))
    }

    /// The first steps of a connection, under [`HELLO_TIMEOUT`]: the TLS handshake, then
    /// `Hello` both ways (at most [`PRE_AUTHENTICATION_FRAME_BYTES_MAX`] from the peer).
    /// Returns who the peer is, and the connection's reader, outbox and writer.
    async fn open_connection(
        &self,
        stream: TcpStream,
        outbound: bool,
    ) -> io::Result<(NodeId, FrameReader, Arc<Outbox>, AbortOnDrop)> {
        let (stream, tls) = self.handshake(stream, outbound).await?;
        let (session, certified) = match tls {
            Some((session, node)) => (Some(session), Some(node)),
            None => (None, None),
        };
        let (read_half, write_half) = stream.into_split();
        let outbox = Arc::new(Outbox::new(write_half, session.clone()));
        let writer = AbortOnDrop(tokio::spawn(write_loop(Arc::clone(&outbox))));
        outbox.append_message(&Message::Hello { node: self.me });
        outbox.flush();
        let mut reader = FrameReader::new(read_half, session);
        let claimed = match reader
            .read_frame(PRE_AUTHENTICATION_FRAME_BYTES_MAX)
            .await?
        {
            Message::Hello { node } => node,
            other => return Err(invalid(&format!("expected Hello, got {:?}", other.kind()))),
        };
        let remote = match certified {
            Some(node) => {
                if node != claimed {
                    tracing::debug!(%node, %claimed, "a peer's Hello names another node; its certificate counts");
                }
                node
            }
            None => claimed,
        };
        Ok((remote, reader, outbox, writer))
    }

    async fn run_connection(
        &self,
        stream: TcpStream,
        peer_index: Option<usize>,
        address: Option<SocketAddr>,
        handshaking: Option<HandshakeSlot>,
    ) -> io::Result<()> {
        stream.set_nodelay(true)?;
        detect_silent_peer(&stream)?;
        let outbound = peer_index.is_some();
        let evicted = handshaking.as_ref().map(|slot| Arc::clone(&slot.evicted));
        let opened = tokio::select! {
            opened = tokio::time::timeout(HELLO_TIMEOUT, self.open_connection(stream, outbound)) => opened,
            () = async {
                match &evicted {
                    Some(evicted) => evicted.notified().await,
                    None => std::future::pending().await,
                }
            } => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "evicted: the oldest of too many handshakes at once",
                ));
            }
        };
        drop(handshaking);
        let (mut remote, mut reader, outbox, _writer) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(error)) => {
                // A connection closed before a word (a port probe, a peer stopping or
                // restarting) is no refusal.
                let closed = matches!(
                    error.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                );
                if !closed {
                    self.refuse_connection(address, &error.to_string());
                }
                return Err(error);
            }
            Err(_) => {
                self.refuse_connection(address, "no handshake and Hello within 5 s");
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no Hello"));
            }
        };
        if remote == self.me {
            if outbound {
                // A node listed among its own peers (LEARNER_HOSTS may list every learner).
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "connected to itself",
                ));
            }
            // The node's own admin listener asking for status (see `NodeId::HEALTH_PROBE`).
            remote = NodeId::HEALTH_PROBE;
        }
        let connection_id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
        let first_route = {
            let mut shared = self.shared.lock().unwrap();
            let routes = shared.routes.entry(remote).or_default();
            if routes.len() >= MAX_CONNECTIONS_PER_PEER {
                drop(shared);
                let problem =
                    format!("{remote} holds {MAX_CONNECTIONS_PER_PEER} connections already");
                self.refuse_connection(address, &problem);
                return Err(invalid(&problem));
            }
            routes.push(Route {
                connection_id,
                outbound,
                outbox: Arc::clone(&outbox),
            });
            routes.len() == 1
        };
        if let Some(index) = peer_index {
            self.set_peer(index, Some(remote), true);
        }
        tracing::debug!(%remote, connection_id, "connected");
        if first_route {
            (self.handler)(Inbound::Connected(remote));
        }
        let result = loop {
            let frame = reader.read_frame(MAX_FRAME_BYTES).await;
            if reader.take_tls_output_waiting() {
                outbox.flush();
            }
            match frame {
                Ok(_)
                    if self.faults_active.load(Ordering::Relaxed)
                        && self.faults.lock().unwrap().drops_inbound(remote) =>
                {
                    self.fault_drops.fetch_add(1, Ordering::Relaxed);
                }
                Ok(message) => {
                    let kind = message.kind();
                    if routes::permitted(kind, remote, self.me.role) {
                        (self.handler)(Inbound::Message(remote, message));
                    } else {
                        self.refuse_message(remote, kind);
                    }
                }
                Err(error) => break error,
            }
        };
        outbox.close();
        let last_route = {
            let mut shared = self.shared.lock().unwrap();
            let routes = shared.routes.entry(remote).or_default();
            routes.retain(|route| route.connection_id != connection_id);
            let empty = routes.is_empty();
            if empty {
                shared.routes.remove(&remote);
            }
            empty
        };
        if last_route {
            (self.handler)(Inbound::Disconnected(remote));
        }
        match result.kind() {
            io::ErrorKind::UnexpectedEof => Ok(()),
            io::ErrorKind::InvalidData | io::ErrorKind::TimedOut => {
                self.refuse_connection(address, &format!("{remote}: {result}"));
                Err(result)
            }
            _ => Err(result),
        }
    }
}

/// "an acceptor", "a proposer", ...
fn with_article(role: Role) -> String {
    match role {
        Role::Acceptor => format!("an {}", role.name()),
        _ => format!("a {}", role.name()),
    }
}

fn invalid(problem: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, problem.to_string())
}

/// Reads the fault file every [`FAULT_FILE_POLL`] and installs its rules; a missing file
/// means no faults, an unreadable or malformed one keeps the last rules (and says why).
async fn watch_fault_file(me: NodeId, path: std::path::PathBuf, faults: Arc<Mutex<FaultRules>>) {
    let mut last_text = None;
    loop {
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(text) => Some(text),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Some(String::new()),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the fault file");
                None
            }
        };
        if let Some(text) = text.filter(|text| last_text.as_ref() != Some(text)) {
            match FaultRules::parse(&text) {
                Ok(rules) => {
                    tracing::info!(node = %me, rules = ?text.trim(), "fault switch: new rules");
                    *faults.lock().unwrap() = rules;
                }
                Err(error) => tracing::warn!(path = %path.display(), %error, "bad fault file"),
            }
            last_text = Some(text);
        }
        tokio::time::sleep(FAULT_FILE_POLL).await;
    }
}

/// Makes the kernel close the connection once the peer has acknowledged nothing for
/// [`PEER_SILENCE_TIMEOUT`]: keepalive probes while idle, a user timeout while sending.
fn detect_silent_peer(stream: &TcpStream) -> io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    socket.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_IDLE)
            .with_retries(
                (PEER_SILENCE_TIMEOUT.as_secs() / KEEPALIVE_IDLE.as_secs()).max(1) as u32,
            ),
    )?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(PEER_SILENCE_TIMEOUT))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::ballot::Ballot;
    use tokio::sync::mpsc;

    /// `listening` on 127.0.0.1 and `dialling` connecting to it, each with a channel of
    /// the events its network hands to the node.
    async fn connected_pair(
        listening: NodeId,
        dialling: NodeId,
    ) -> (
        Network,
        mpsc::UnboundedReceiver<Inbound>,
        Network,
        mpsc::UnboundedReceiver<Inbound>,
    ) {
        connected_pair_over(
            (listening, Transport::Plaintext),
            (dialling, Transport::Plaintext),
        )
        .await
    }

    /// [`connected_pair`], each node with its own transport.
    async fn connected_pair_over(
        (listening, listening_transport): (NodeId, Transport),
        (dialling, dialling_transport): (NodeId, Transport),
    ) -> (
        Network,
        mpsc::UnboundedReceiver<Inbound>,
        Network,
        mpsc::UnboundedReceiver<Inbound>,
    ) {
        let (sender_a, receiver_a) = mpsc::unbounded_channel();
        let (sender_b, receiver_b) = mpsc::unbounded_channel();
        let (network_a, bound) = Network::start(
            listening,
            Some("127.0.0.1:0".parse().unwrap()),
            &[],
            listening_transport,
            Arc::new(move |event| {
                let _ = sender_a.send(event);
            }),
        )
        .await
        .unwrap();
        let (network_b, _) = Network::start(
            dialling,
            None,
            &[bound.unwrap().to_string()],
            dialling_transport,
            Arc::new(move |event| {
                let _ = sender_b.send(event);
            }),
        )
        .await
        .unwrap();
        (network_a, receiver_a, network_b, receiver_b)
    }

    /// A TLS transport presenting a certificate of `authority` for `node`.
    fn tls_of(authority: &crate::certificates::CertificateAuthority, node: NodeId) -> Transport {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let issued = authority.issue(node, &[]).unwrap();
        let ca = CertificateDer::from_pem_slice(authority.certificate_pem().as_bytes()).unwrap();
        let chain = CertificateDer::from_pem_slice(issued.certificate_pem.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
        Transport::Tls(Arc::new(NodeTls::new(vec![ca], vec![chain], key).unwrap()))
    }

    /// The first event within `limit`, if any.
    async fn next_event(
        receiver: &mut mpsc::UnboundedReceiver<Inbound>,
        limit: Duration,
    ) -> Option<Inbound> {
        tokio::time::timeout(limit, receiver.recv())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn over_mutual_tls_a_peer_is_the_node_its_certificate_names_whatever_its_hello_says() {
        let (authority, _) = crate::certificates::CertificateAuthority::generate("test").unwrap();
        // The dialler says Hello as acceptor 1 but holds the certificate of client 1.
        let (network_a, mut receiver_a, network_b, mut receiver_b) = connected_pair_over(
            (NodeId::learner(1), tls_of(&authority, NodeId::learner(1))),
            (NodeId::acceptor(1), tls_of(&authority, NodeId::client(1))),
        )
        .await;
        match next_event(&mut receiver_a, Duration::from_secs(10)).await {
            Some(Inbound::Connected(node)) => assert_eq!(node, NodeId::client(1)),
            other => panic!("expected the client to connect, got {other:?}"),
        }
        match next_event(&mut receiver_b, Duration::from_secs(10)).await {
            Some(Inbound::Connected(node)) => assert_eq!(node, NodeId::learner(1)),
            other => panic!("expected the learner to connect, got {other:?}"),
        }
        let read = Message::Read {
            read_id: 7,
            key: "k".into(),
            min_slot: 0,
        };
        assert!(network_b.send(NodeId::learner(1), read.clone()));
        match next_event(&mut receiver_a, Duration::from_secs(10)).await {
            Some(Inbound::Message(from, message)) => {
                assert_eq!(from, NodeId::client(1));
                assert_eq!(message, read);
            }
            other => panic!("expected the read, got {other:?}"),
        }
        // What an acceptor may send, a client may not: dropped and counted, never handled.
        let votes = Message::AcceptedValues { entries: vec![] };
        assert!(network_b.send(NodeId::learner(1), votes));
        assert!(network_b.send(NodeId::learner(1), read.clone()));
        match next_event(&mut receiver_a, Duration::from_secs(10)).await {
            Some(Inbound::Message(_, message)) => assert_eq!(message, read),
            other => panic!("expected only the read, got {other:?}"),
        }
        assert_eq!(network_a.refused_messages(), 1);
        assert!(
            network_a.alarms()[0].contains("refused AcceptedValues from client1"),
            "{:?}",
            network_a.alarms()
        );
        assert!(!network_a.is_insecure() && network_a.alarms().len() == 1);
    }

    #[tokio::test]
    async fn silent_connections_filling_every_handshake_place_do_not_keep_a_real_peer_out() {
        let (authority, _) = crate::certificates::CertificateAuthority::generate("test").unwrap();
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let (network, bound) = Network::start(
            NodeId::acceptor(1),
            Some("127.0.0.1:0".parse().unwrap()),
            &[],
            tls_of(&authority, NodeId::acceptor(1)),
            Arc::new(move |event| {
                let _ = sender.send(event);
            }),
        )
        .await
        .unwrap();
        let bound = bound.unwrap();
        let mut silent = Vec::new();
        for _ in 0..MAX_HANDSHAKING_CONNECTIONS + 6 {
            silent.push(TcpStream::connect(bound).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        let (_peer, _) = Network::start(
            NodeId::proposer(1),
            None,
            &[bound.to_string()],
            tls_of(&authority, NodeId::proposer(1)),
            Arc::new(|_| {}),
        )
        .await
        .unwrap();
        match next_event(&mut receiver, Duration::from_secs(2)).await {
            Some(Inbound::Connected(node)) => assert_eq!(node, NodeId::proposer(1)),
            other => panic!("the proposer did not get in within 2 s: {other:?}"),
        }
        println!("connected past the silent ones in {:?}", started.elapsed());
        assert!(network.refused_connections() >= 6);
        drop(silent);
    }

    #[tokio::test]
    async fn a_certificate_of_another_ca_or_plaintext_never_gets_a_tls_node_connected() {
        let (authority, _) = crate::certificates::CertificateAuthority::generate("ours").unwrap();
        let (stranger, _) = crate::certificates::CertificateAuthority::generate("theirs").unwrap();
        let (network_a, mut receiver_a, _network_b, _) = connected_pair_over(
            (NodeId::acceptor(1), tls_of(&authority, NodeId::acceptor(1))),
            (NodeId::proposer(1), tls_of(&stranger, NodeId::proposer(1))),
        )
        .await;
        let (_network_c, _, _network_d, mut receiver_d) = connected_pair_over(
            (NodeId::acceptor(2), tls_of(&authority, NodeId::acceptor(2))),
            (NodeId::proposer(2), Transport::Plaintext),
        )
        .await;
        assert!(next_event(&mut receiver_a, Duration::from_secs(2))
            .await
            .is_none());
        assert!(next_event(&mut receiver_d, Duration::from_secs(1))
            .await
            .is_none());
        assert!(network_a.refused_connections() > 0);
        assert!(network_a.connected_nodes(Role::Proposer).is_empty());
    }

    #[test]
    fn fault_rules_parse_directions_nodes_and_wildcards() {
        let rules = FaultRules::parse(
            "# cut acceptor1 off, and stop hearing proposer2\nboth acceptor1\nin proposer2\n\n",
        )
        .unwrap();
        assert!(rules.drops_inbound(NodeId::acceptor(1)));
        assert!(rules.drops_outbound(NodeId::acceptor(1)));
        assert!(rules.drops_inbound(NodeId::proposer(2)));
        assert!(!rules.drops_outbound(NodeId::proposer(2)));
        assert!(!rules.drops_inbound(NodeId::learner(1)));
        let everything_out = FaultRules::parse("out *").unwrap();
        assert!(everything_out.drops_outbound(NodeId::client(1)));
        assert!(!everything_out.drops_inbound(NodeId::client(1)));
        assert_eq!(FaultRules::parse("").unwrap(), FaultRules::default());
        assert!(FaultRules::parse("sideways acceptor1").is_err());
        assert!(FaultRules::parse("in leader").is_err());
        assert!(FaultRules::parse("in acceptor1 acceptor2").is_err());
    }

    #[tokio::test]
    async fn the_fault_switch_drops_messages_one_way_or_both_until_cleared() {
        let (network_a, mut receiver_a, network_b, _) =
            connected_pair(NodeId::acceptor(1), NodeId::proposer(1)).await;
        let wait_until = |condition: Box<dyn Fn() -> bool + Send>| async move {
            tokio::time::timeout(Duration::from_secs(10), async {
                while !condition() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("the condition holds in time");
        };
        let network = network_b.clone();
        wait_until(Box::new(move || {
            !network.connected_nodes(Role::Acceptor).is_empty()
        }))
        .await;
        let confirm = |sequence| Message::Confirm {
            ballot: Ballot::new(1, 1),
            sequence,
        };
        // B cannot send to A; then A does not hear B; then the link heals.
        network_b.set_fault_rules(FaultRules::parse("out acceptor1").unwrap());
        assert!(
            network_b.send(NodeId::acceptor(1), confirm(1)),
            "silently lost"
        );
        network_b.set_fault_rules(FaultRules::default());
        network_a.set_fault_rules(FaultRules::parse("in *").unwrap());
        assert!(network_b.send(NodeId::acceptor(1), confirm(2)));
        let network = network_a.clone();
        wait_until(Box::new(move || network.messages_dropped_by_faults() > 0)).await;
        assert_eq!(network_b.messages_dropped_by_faults(), 1);
        network_a.set_fault_rules(FaultRules::default());
        assert!(network_b.send(NodeId::acceptor(1), confirm(3)));
        loop {
            match tokio::time::timeout(Duration::from_secs(5), receiver_a.recv())
                .await
                .expect("the healed link delivers")
                .unwrap()
            {
                Inbound::Message(_, message) => {
                    assert_eq!(message, confirm(3), "messages 1 and 2 were cut");
                    break;
                }
                _ => continue,
            }
        }
    }

    #[tokio::test]
    async fn messages_flow_both_ways_over_one_connection() {
        let (network_a, mut receiver_a, network_b, mut receiver_b) =
            connected_pair(NodeId::acceptor(1), NodeId::proposer(1)).await;
        match receiver_b.recv().await.unwrap() {
            Inbound::Connected(node) => assert_eq!(node, NodeId::acceptor(1)),
            other => panic!("unexpected {other:?}"),
        }
        let prepare = Message::Prepare {
            ballot: Ballot::new(1, 1),
            from_slot: 1,
        };
        assert!(network_b.send(NodeId::acceptor(1), prepare.clone()));
        loop {
            match receiver_a.recv().await.unwrap() {
                Inbound::Connected(_) => continue,
                Inbound::Message(from, message) => {
                    assert_eq!(from, NodeId::proposer(1));
                    assert_eq!(message, prepare);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let promise = Message::Promise {
            ballot: Ballot::new(1, 1),
            accepted: vec![],
            trimmed_slot: 0,
            next_from_slot: None,
        };
        assert!(network_a.send(NodeId::proposer(1), promise.clone()));
        match receiver_b.recv().await.unwrap() {
            Inbound::Message(from, message) => {
                assert_eq!(from, NodeId::acceptor(1));
                assert_eq!(message, promise);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(network_b.peer_statuses()[0].connected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_sent_soon_by_many_tasks_all_arrive_each_task_in_order() {
        let (network_a, mut receiver_a, network_b, mut receiver_b) =
            connected_pair(NodeId::learner(1), NodeId::client(1)).await;
        assert!(matches!(
            receiver_b.recv().await.unwrap(),
            Inbound::Connected(_)
        ));
        let network_b = Arc::new(network_b);
        const TASKS: u64 = 64;
        const PER_TASK: u64 = 200;
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let network = Arc::clone(&network_b);
            tasks.push(tokio::spawn(async move {
                for sequence in 0..PER_TASK {
                    let message = Message::Read {
                        read_id: task * PER_TASK + sequence,
                        key: "k".repeat(100),
                        min_slot: sequence,
                    };
                    // Direct sends interleave with deferred ones on the same connection.
                    if sequence % 7 == 0 {
                        assert!(network.send(NodeId::learner(1), message));
                    } else {
                        assert!(network.send_soon(NodeId::learner(1), message));
                    }
                    if sequence % 10 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut next = vec![0u64; TASKS as usize];
        let mut received = 0;
        while received < TASKS * PER_TASK {
            let event = tokio::time::timeout(Duration::from_secs(10), receiver_a.recv())
                .await
                .expect("every message arrives")
                .unwrap();
            match event {
                Inbound::Connected(_) => {}
                Inbound::Message(_, Message::Read { read_id, .. }) => {
                    let task = (read_id / PER_TASK) as usize;
                    assert_eq!(
                        read_id % PER_TASK,
                        next[task],
                        "a task's messages stay in order"
                    );
                    next[task] += 1;
                    received += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        drop(network_a);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_larger_than_the_socket_arrives_complete_and_in_order_from_any_thread() {
        burst_arrives_complete_and_in_order(Transport::Plaintext, Transport::Plaintext).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_larger_than_the_socket_arrives_complete_and_in_order_over_tls() {
        let (authority, _) = crate::certificates::CertificateAuthority::generate("test").unwrap();
        burst_arrives_complete_and_in_order(
            tls_of(&authority, NodeId::learner(1)),
            tls_of(&authority, NodeId::client(1)),
        )
        .await;
    }

    async fn burst_arrives_complete_and_in_order(listening: Transport, dialling: Transport) {
        let (network_a, mut receiver_a, network_b, mut receiver_b) = connected_pair_over(
            (NodeId::learner(1), listening),
            (NodeId::client(1), dialling),
        )
        .await;
        assert!(matches!(
            receiver_b.recv().await.unwrap(),
            Inbound::Connected(_)
        ));
        // About 40 MB: far more than a socket buffer holds, so the senders find the socket
        // full and the writer task must take over without reordering anything.
        const MESSAGES: u64 = 20_000;
        let payload = "v".repeat(2000);
        let sending = std::thread::spawn(move || {
            for slot in 1..=MESSAGES {
                let message = Message::Read {
                    read_id: slot,
                    key: payload.clone(),
                    min_slot: slot,
                };
                if slot % 3 == 0 {
                    assert!(network_b.send(NodeId::learner(1), message));
                } else {
                    assert!(network_b.queue(NodeId::learner(1), &message));
                }
                if slot % 5000 == 0 {
                    network_b.flush();
                }
            }
            network_b.flush();
            network_b
        });
        let mut expected = 1;
        while expected <= MESSAGES {
            match receiver_a.recv().await.unwrap() {
                Inbound::Connected(_) => {}
                Inbound::Message(_, Message::Read { read_id, .. }) => {
                    assert_eq!(read_id, expected, "messages arrive in the order sent");
                    expected += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        drop(sending.join().unwrap());
        drop(network_a);
    }
}
