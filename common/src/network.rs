//! The node-to-node network: persistent TCP connections carrying framed [`Message`]s.
//!
//! Each node listens on its port and keeps one outbound connection to every configured
//! peer address, reconnecting with backoff. Both ends start with `Hello`, so afterwards a
//! message is addressed to a [`NodeId`], whichever side opened the connection. Messages
//! to a node that is not connected are dropped: the protocols tolerate loss (proposers
//! retransmit, learners fill gaps, clients retry), and dropping keeps a dead peer from
//! growing memory.
//!
//! Sending costs no thread switch: a message is encoded into its connection's outbox and
//! written by the sending thread itself with a non-blocking `write` (a driver thread queues
//! every message of a batch with [`Network::queue`] and writes them with one
//! [`Network::flush`], so a burst of messages to one peer costs one system call). Only when
//! the socket is full does the connection's writer task take over the outbox and wait for
//! room; it then writes everything queued meanwhile in one call. A broadcast encodes its
//! message once for every receiver.
//!
//! For fault tests only, the network has a fault switch ([`FAULT_FILE_VARIABLE`]): when
//! `PAXOS_FAULT_FILE` names a file, the network reads it every 50 ms and silently drops the
//! messages it lists (to and/or from given nodes), so that a test can cut nodes off from
//! each other, one way or both, without touching the machine's network. Unset (always, in
//! production), nothing is read and nothing is dropped.

use crate::message::{Message, PeerStatus};
use crate::node::{NodeId, Role};
use crate::wire::{decode_payload, encode_frame, MAX_FRAME_BYTES};
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Bytes queued per connection before further messages are dropped (a peer that stopped
/// reading must not grow our memory without bound).
const OUTBOX_LIMIT_BYTES: usize = 256 << 20;
/// An idle outbox keeps at most this much buffer capacity.
const OUTBOX_KEPT_CAPACITY_BYTES: usize = 1 << 20;
/// How long to wait for the peer's `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer whose kernel acknowledges nothing for this long, neither our data nor keepalive
/// probes, is gone: the connection is closed and redialled, resolving the peer's name
/// again. Without it, a peer cut off by a partition, or re-created with a new address,
/// leaves a half-open connection that swallows every message until the kernel gives up
/// retransmitting (about 15 minutes). A merely slow or paused process is unaffected while
/// its kernel still acknowledges (until its receive buffer fills).
const PEER_SILENCE_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time before the first keepalive probe, and the time between probes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(1);

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

/// The bytes waiting to go out on one connection, and who may write them.
///
/// At most one party writes to the socket at a time, so frames never interleave: the
/// thread that finds the outbox idle writes it directly (non-blocking); if the socket
/// cannot take everything, the rest stays in `pending` and the connection's writer task
/// becomes the writer until the outbox is empty again.
struct Outbox {
    state: Mutex<OutboxState>,
    /// Wakes the writer task when it must take over.
    writer_needed: tokio::sync::Notify,
    socket: tokio::net::tcp::OwnedWriteHalf,
}

#[derive(Default)]
struct OutboxState {
    /// Encoded frames not yet written, in order.
    pending: Vec<u8>,
    /// Someone is writing (a sender, or the writer task): others only append.
    writing: bool,
    /// The socket failed: the connection is closing and nothing more is accepted.
    closed: bool,
}

impl Outbox {
    fn new(socket: tokio::net::tcp::OwnedWriteHalf) -> Outbox {
        Outbox {
            state: Mutex::new(OutboxState::default()),
            writer_needed: tokio::sync::Notify::new(),
            socket,
        }
    }

    /// Appends already-encoded frames; false if the connection closed or the outbox is full.
    fn append(&self, frames: &[u8]) -> bool {
        let mut state = self.state.lock().unwrap();
        if state.closed || state.pending.len() + frames.len() > OUTBOX_LIMIT_BYTES {
            return false;
        }
        state.pending.extend_from_slice(frames);
        true
    }

    /// Appends one message, encoded.
    fn append_message(&self, message: &Message) -> bool {
        self.append_locked(message).is_some()
    }

    /// Appends one message, encoded, and returns the still locked state; None (nothing
    /// appended) if the connection closed or the outbox is full.
    fn append_locked(&self, message: &Message) -> Option<std::sync::MutexGuard<'_, OutboxState>> {
        let mut state = self.state.lock().unwrap();
        if state.closed || state.pending.len() > OUTBOX_LIMIT_BYTES {
            return None;
        }
        encode_frame(message, &mut state.pending);
        Some(state)
    }

    /// Appends one message and, unless someone is writing already, makes the writer task
    /// the writer: it writes after yielding once, so that other tasks can append first.
    fn append_and_hand_to_writer(&self, message: &Message) -> bool {
        let wake_writer = match self.append_locked(message) {
            Some(mut state) => !std::mem::replace(&mut state.writing, true),
            None => return false,
        };
        if wake_writer {
            self.writer_needed.notify_one();
        }
        true
    }

    /// Writes what is pending from this thread, without blocking; hands any rest to the
    /// writer task. Does nothing if someone else is writing (they will write it).
    fn flush(&self) {
        let mut bytes = {
            let mut state = self.state.lock().unwrap();
            if state.writing || state.closed || state.pending.is_empty() {
                return;
            }
            state.writing = true;
            std::mem::take(&mut state.pending)
        };
        let mut written = 0;
        let mut failed = false;
        while written < bytes.len() {
            match self.socket.try_write(&bytes[written..]) {
                Ok(0) => {
                    failed = true; // a socket that takes nothing will never take more
                    break;
                }
                Ok(count) => written += count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    tracing::debug!(%error, "write failed");
                    failed = true;
                    break;
                }
            }
        }
        let mut state = self.state.lock().unwrap();
        if failed {
            state.closed = true;
            state.writing = false;
            state.pending = Vec::new();
            return;
        }
        if written < bytes.len() {
            // The socket is full: the rest goes first, then what others appended meanwhile.
            bytes.drain(..written);
            bytes.extend_from_slice(&state.pending);
            state.pending = bytes;
            drop(state);
            self.writer_needed.notify_one();
        } else if !state.pending.is_empty() {
            // Others appended while we wrote: the writer task writes it, so that this
            // thread does not loop on behalf of everyone.
            drop(state);
            self.writer_needed.notify_one();
        } else {
            state.writing = false;
            if bytes.capacity() <= OUTBOX_KEPT_CAPACITY_BYTES {
                bytes.clear();
                state.pending = bytes; // keep the allocation for the next frames
            }
        }
    }

    fn close(&self) {
        let mut state = self.state.lock().unwrap();
        state.closed = true;
        state.pending = Vec::new();
    }
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
}

impl Network {
    /// Starts the network of node `me`: listens on `listen` (if any; the bound address is
    /// returned) and connects to each of `peer_addresses` ("host:port").
    pub async fn start(
        me: NodeId,
        listen: Option<SocketAddr>,
        peer_addresses: &[String],
        handler: InboundHandler,
    ) -> io::Result<(Network, Option<SocketAddr>)> {
        let network = Network {
            me,
            shared: Arc::new(Mutex::new(Shared::default())),
            handler,
            next_connection_id: Arc::new(AtomicU64::new(1)),
            dirty: Arc::new(Mutex::new(Vec::new())),
            faults: Arc::new(Mutex::new(FaultRules::default())),
            fault_drops: Arc::new(AtomicU64::new(0)),
            faults_active: Arc::new(AtomicBool::new(
                std::env::var_os(FAULT_FILE_VARIABLE).is_some(),
            )),
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
                Ok((stream, _)) => {
                    let network = self.clone();
                    tokio::spawn(async move {
                        if let Err(error) = network.run_connection(stream, None).await {
                            tracing::debug!(%error, "inbound connection ended");
                        }
                    });
                }
                Err(error) => {
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
                    match self.run_connection(stream, Some(peer_index)).await {
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

    async fn run_connection(&self, stream: TcpStream, peer_index: Option<usize>) -> io::Result<()> {
        stream.set_nodelay(true)?;
        detect_silent_peer(&stream)?;
        let (read_half, mut write_half) = stream.into_split();
        let mut reader = BufReader::with_capacity(1 << 16, read_half);
        let mut hello = Vec::new();
        encode_frame(&Message::Hello { node: self.me }, &mut hello);
        write_half.write_all(&hello).await?;
        let remote = match tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut reader)).await {
            Ok(Ok(Message::Hello { node })) => node,
            Ok(Ok(other)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("expected Hello, got {other:?}"),
                ))
            }
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no Hello")),
        };
        if remote == self.me {
            // A node listed among its own peers (LEARNER_HOSTS may list every learner).
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "connected to itself",
            ));
        }
        let connection_id = self.next_connection_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(write_half));
        let first_route = {
            let mut shared = self.shared.lock().unwrap();
            let routes = shared.routes.entry(remote).or_default();
            routes.push(Route {
                connection_id,
                outbound: peer_index.is_some(),
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
        let writer = tokio::spawn(write_loop(Arc::clone(&outbox)));
        let result = loop {
            match read_frame(&mut reader).await {
                Ok(_)
                    if self.faults_active.load(Ordering::Relaxed)
                        && self.faults.lock().unwrap().drops_inbound(remote) =>
                {
                    self.fault_drops.fetch_add(1, Ordering::Relaxed);
                }
                Ok(message) => (self.handler)(Inbound::Message(remote, message)),
                Err(error) => break error,
            }
        };
        writer.abort();
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
        if result.kind() == io::ErrorKind::UnexpectedEof {
            Ok(())
        } else {
            Err(result)
        }
    }
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

/// The connection's writer: takes over the outbox when a sender could not write all of it
/// without blocking, and writes until the outbox is empty.
async fn write_loop(outbox: Arc<Outbox>) {
    loop {
        outbox.writer_needed.notified().await;
        // Tasks woken together with this one append before it writes (see `send_soon`).
        tokio::task::yield_now().await;
        loop {
            let bytes = {
                let mut state = outbox.state.lock().unwrap();
                if state.closed {
                    return;
                }
                if state.pending.is_empty() {
                    state.writing = false;
                    break;
                }
                state.writing = true;
                std::mem::take(&mut state.pending)
            };
            if let Err(error) = write_all(&outbox.socket, &bytes).await {
                tracing::debug!(%error, "write failed");
                outbox.close();
                return;
            }
        }
    }
}

async fn write_all(socket: &tokio::net::tcp::OwnedWriteHalf, bytes: &[u8]) -> io::Result<()> {
    let mut written = 0;
    while written < bytes.len() {
        socket.writable().await?;
        match socket.try_write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(count) => written += count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

async fn read_frame<R: AsyncReadExt + Unpin>(reader: &mut R) -> io::Result<Message> {
    let length = reader.read_u32().await? as usize;
    if length > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {length} bytes exceeds the limit"),
        ));
    }
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;
    decode_payload(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ballot::Ballot;
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
        let (sender_a, receiver_a) = mpsc::unbounded_channel();
        let (sender_b, receiver_b) = mpsc::unbounded_channel();
        let (network_a, bound) = Network::start(
            listening,
            Some("127.0.0.1:0".parse().unwrap()),
            &[],
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
            Arc::new(move |event| {
                let _ = sender_b.send(event);
            }),
        )
        .await
        .unwrap();
        (network_a, receiver_a, network_b, receiver_b)
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
            connected_pair(NodeId::acceptor(1), NodeId::proposer(1)).await;
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
                        assert!(network.send(NodeId::acceptor(1), message));
                    } else {
                        assert!(network.send_soon(NodeId::acceptor(1), message));
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
        let (network_a, mut receiver_a, network_b, mut receiver_b) =
            connected_pair(NodeId::learner(1), NodeId::acceptor(1)).await;
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
