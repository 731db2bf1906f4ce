//! Talking to the cluster on behalf of REST requests.
//!
//! Writes and the read index of a strong read go to the proposer believed to lead; reads
//! go to a learner, which answers once it has applied the slot the read must observe. Every
//! request runs until a deadline (REQUEST_TIMEOUT from the start of the HTTP request),
//! retrying on another node after a refusal, a disconnection or a silent attempt. A write
//! keeps its request id on every attempt: learners apply a request id at most once, so
//! retries, ours or the caller's, are exactly-once.
//!
//! Answers arrive through the [`crate::mailbox`], which hands each to the request
//! waiting for it.

use crate::config::ClientConfig;
use crate::feed::{BufferLimits, Feed};
use crate::mailbox::{lock, Answer, Mailbox, WaiterKey};
use anyhow::Context;
use common::ballot::Slot;
use common::message::{Message, NodeStatus, ProposerState, RoleStatus};
use common::node::{NodeId, Role};
use common::value::Command;
use rand::Rng;
use runtime::network::{Inbound, Network, Transport};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The longest wait for one node's answer before trying another node.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long `/status` waits for the nodes' reports.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// The pause before retrying on another node, in milliseconds, `[low, high]`: long enough
/// not to spin while an election runs, jittered so that many clients do not retry in step.
const RETRY_PAUSE_MILLISECONDS: (u64, u64) = (25, 50);
/// How often a `/status` request checks whether newly learned acceptors are connected.
const CONNECT_POLL: Duration = Duration::from_millis(10);
/// Sessions remembered at most. Forgetting a session is safe: its next session read
/// becomes a strong read, which observes at least as much.
const SESSION_CAPACITY: usize = 100_000;

/// How a read must relate to earlier operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable: observes every write completed before the read started.
    Strong,
    /// Observes this session's own writes and never goes back in time within the session.
    Session(String),
    /// Whatever a learner has applied now.
    Eventual,
}

impl Consistency {
    /// The name used in the REST API.
    pub fn name(&self) -> &'static str {
        match self {
            Consistency::Strong => "strong",
            Consistency::Session(_) => "session",
            Consistency::Eventual => "eventual",
        }
    }
}

/// The answer to a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The value, or None for a key never written.
    pub value: Option<String>,
    /// The slot the answering learner had applied.
    pub applied_slot: Slot,
}

/// The cluster did not answer before the request's deadline. For a write the outcome is
/// unknown: the write may still be decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// What did not answer, for the 503 message.
    pub reason: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.reason)
    }
}

impl std::error::Error for Unavailable {}

/// One node in a `/status` report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeReport {
    /// The node's role.
    pub role: Role,
    /// Its id, once the network learned it (a node never reached has none).
    pub id: Option<u32>,
    /// Its address.
    pub address: String,
    /// Its own report, if it answered in time (None: unhealthy).
    pub status: Option<NodeStatus>,
}

/// What `/status` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Every node known, ordered by role then id.
    pub nodes: Vec<NodeReport>,
    /// The proposer that reports itself leader (the highest ballot if several do).
    pub leader: Option<NodeReport>,
    /// Whether this client API's own node-plane network runs in plaintext.
    pub insecure: bool,
    /// This client API's own network alarms (refusals, insecure mode).
    pub alarms: Vec<String>,
}

/// The client API's view of the cluster: its network, the leader it believes in, and the
/// sessions it serves.
pub struct Cluster {
    network: Network,
    mailbox: Arc<Mailbox>,
    request_timeout: Duration,
    /// The proposer believed to lead; 0 when unknown (proposer ids start at 1).
    believed_leader: AtomicU32,
    /// Read ids and status request ids.
    next_id: AtomicU64,
    /// Spreads reads over the learners.
    learner_cursor: AtomicUsize,
    /// session id -> the highest slot the session has written or observed.
    sessions: Mutex<HashMap<String, Slot>>,
    proposer_addresses: Vec<String>,
    learner_addresses: Vec<String>,
    /// Acceptors learned from the proposers' status reports: address -> node.
    acceptors: Mutex<BTreeMap<String, NodeId>>,
    /// The change feed: learners' applied writes for subscribers.
    feed: Arc<Feed>,
}

impl Cluster {
    /// Starts the network of client API `config.id` towards every proposer and learner.
    pub async fn connect(config: &ClientConfig) -> anyhow::Result<Arc<Cluster>> {
        let mailbox = Arc::new(Mailbox::default());
        let handler_mailbox = Arc::clone(&mailbox);
        let feed = Arc::new(Feed::new(BufferLimits {
            events: config.subscription_buffer_events,
            bytes: config.subscription_buffer_bytes,
        }));
        let handler_feed = Arc::clone(&feed);
        let peers: Vec<String> = config
            .proposer_hosts
            .iter()
            .chain(&config.learner_hosts)
            .cloned()
            .collect();
        let me = NodeId::client(config.id);
        let transport = Transport::from_security(&config.security, me)
            .context("loading the client API's TLS certificates")?;
        let (network, _) = Network::start(
            me,
            None,
            &peers,
            transport,
            Arc::new(move |inbound| match inbound {
                Inbound::Message(from, message) if Feed::handles(&message) => {
                    handler_feed.deliver(from, message)
                }
                link => {
                    handler_feed.on_link(&link);
                    handler_mailbox.deliver(link)
                }
            }),
        )
        .await?;
        feed.attach(network.clone());
        Ok(Arc::new(Cluster {
            network,
            mailbox,
            request_timeout: Duration::from_millis(config.request_timeout_milliseconds),
            believed_leader: AtomicU32::new(0),
            next_id: AtomicU64::new(1),
            learner_cursor: AtomicUsize::new(0),
            sessions: Mutex::new(HashMap::new()),
            proposer_addresses: config.proposer_hosts.clone(),
            learner_addresses: config.learner_hosts.clone(),
            acceptors: Mutex::new(BTreeMap::new()),
            feed,
        }))
    }

    /// The change feed that serves subscriptions.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// REQUEST_TIMEOUT: how long a request may take before it gets 503.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The proposer believed to lead, if any.
    pub fn believed_leader(&self) -> Option<u32> {
        match self.believed_leader.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    /// Writes `command` through the leader and returns the slot that holds it. Every
    /// attempt carries `command.request_id`. With a session, the session then observes
    /// that slot.
    pub async fn write(
        &self,
        command: Command,
        session: Option<&str>,
        deadline: Instant,
    ) -> Result<Slot, Unavailable> {
        let request_id = command.request_id;
        let message = Message::Write {
            command,
            client: self.network.me(),
        };
        let slot = self
            .ask_leader(deadline, || (WaiterKey::Write(request_id), message.clone()))
            .await
            .map_err(|attempts| Unavailable {
                reason: format!(
                    "no proposer decided the write within {} ms ({attempts})",
                    self.request_timeout.as_millis()
                ),
            })?;
        if let Some(session) = session {
            self.observe(session, slot);
        }
        Ok(slot)
    }

    /// Reads `key` with the given consistency.
    pub async fn read(
        &self,
        key: &str,
        consistency: &Consistency,
        deadline: Instant,
    ) -> Result<ReadOutcome, Unavailable> {
        let outcome = match consistency {
            Consistency::Strong => self.strong_read(key, deadline).await?,
            Consistency::Session(session) => match self.session_slot(session) {
                Some(slot) => self.read_from_learner(key, slot, deadline).await?,
                // A session this process does not know (it may have restarted): a strong
                // read observes everything the session could have seen.
                None => self.strong_read(key, deadline).await?,
            },
            Consistency::Eventual => self.read_from_learner(key, 0, deadline).await?,
        };
        if let Consistency::Session(session) = consistency {
            self.observe(session, outcome.applied_slot);
        }
        Ok(outcome)
    }

    /// Records that `session` has observed `slot` (a session read must not go below it).
    pub fn observe(&self, session: &str, slot: Slot) {
        let mut sessions = lock(&self.sessions);
        if let Some(highest) = sessions.get_mut(session) {
            *highest = (*highest).max(slot);
            return;
        }
        if sessions.len() >= SESSION_CAPACITY {
            if let Some(evicted) = sessions.keys().next().cloned() {
                sessions.remove(&evicted);
            }
        }
        sessions.insert(session.to_string(), slot);
    }

    /// The highest slot `session` has written or observed, if this process knows it.
    pub fn session_slot(&self, session: &str) -> Option<Slot> {
        lock(&self.sessions).get(session).copied()
    }

    /// A linearizable read: the leader names a slot covering every completed write (after
    /// confirming with a quorum that it still leads), then a learner that applied it reads.
    ///
    /// Each learner gets one attempt at a read index. If none reaches it, the leader that
    /// named it may have been deposed before deciding every slot up to it, and its
    /// successor decides those slots only with its next writes: rather than wait for
    /// writes that may never come, the read asks for a fresh read index, which is just as
    /// valid for it (found by the simulation, `sim/`).
    async fn strong_read(&self, key: &str, deadline: Instant) -> Result<ReadOutcome, Unavailable> {
        loop {
            let slot = self
                .ask_leader(deadline, || {
                    let read_id = self.fresh_id();
                    (WaiterKey::Read(read_id), Message::ReadIndex { read_id })
                })
                .await
                .map_err(|attempts| Unavailable {
                    reason: format!(
                        "no leader granted a read index within {} ms ({attempts})",
                        self.request_timeout.as_millis()
                    ),
                })?;
            let learners = self.network.connected_nodes(Role::Learner).len().max(1);
            if let Some(outcome) = self
                .read_from_learner_within(key, slot, deadline, Some(learners))
                .await?
            {
                return Ok(outcome);
            }
        }
    }

    /// Sends the request made by `attempt` to the proposer believed to lead until one
    /// grants it, following leader hints and rotating over the connected proposers.
    /// Returns the granted slot (where the write was decided, or the read index), or on
    /// the deadline a summary of the attempts.
    async fn ask_leader(
        &self,
        deadline: Instant,
        mut attempt: impl FnMut() -> (WaiterKey, Message),
    ) -> Result<Slot, String> {
        let mut preferred: Option<u32> = None;
        let mut last_tried: Option<u32> = None;
        let mut hints_followed = 0u32;
        let mut attempts = Attempts::default();
        loop {
            if Instant::now() >= deadline {
                return Err(attempts.summary("proposer"));
            }
            let connected = self.network.connected_nodes(Role::Proposer);
            // A hint just received comes first; then the leader believed now (another
            // request may have learned it), unless that is the proposer that just failed.
            let target = preferred
                .take()
                .or_else(|| self.believed_leader().filter(|id| Some(*id) != last_tried));
            let Some(proposer) = choose(&connected, target, last_tried) else {
                pause_before_retry(deadline).await;
                continue;
            };
            last_tried = Some(proposer.id);
            let (key, message) = attempt();
            let waiter = key;
            let mut registration = self.mailbox.register(key, proposer);
            if !self.network.send_soon(proposer, message) {
                attempts.unsent += 1;
                pause_before_retry(deadline).await;
                continue;
            }
            let attempt_deadline = deadline.min(Instant::now() + ATTEMPT_TIMEOUT);
            match registration.wait_until(attempt_deadline).await {
                Some(Answer::Message(from, answer)) => match leader_verdict(&answer) {
                    LeaderVerdict::Granted(slot) => {
                        if from.role == Role::Proposer {
                            self.believe_leader(Some(from.id));
                        }
                        return Ok(slot);
                    }
                    LeaderVerdict::Refused(Some(hint)) => {
                        attempts.refused += 1;
                        self.believe_leader(Some(hint));
                        preferred = Some(hint);
                        hints_followed += 1;
                        // A first hint is followed at once; hints that keep pointing around
                        // (an election in progress) are followed after a pause.
                        if hint == proposer.id || hints_followed > 1 {
                            pause_before_retry(deadline).await;
                        }
                    }
                    LeaderVerdict::Refused(None) | LeaderVerdict::Unrelated => {
                        attempts.refused += 1;
                        self.forget_leader(proposer.id);
                        pause_before_retry(deadline).await;
                    }
                },
                silence @ (Some(Answer::Disconnected) | None) => {
                    attempts.silent += 1;
                    if silence.is_none() {
                        tracing::warn!(
                            %proposer,
                            timeout_milliseconds = ATTEMPT_TIMEOUT.as_millis() as u64,
                            request = ?waiter,
                            "no answer from the proposer in time; asking again"
                        );
                    }
                    self.forget_leader(proposer.id);
                    pause_before_retry(deadline).await;
                }
            }
        }
    }

    /// Reads `key` from a learner that has applied at least `min_slot`, trying the learners
    /// in turn until the deadline.
    async fn read_from_learner(
        &self,
        key: &str,
        min_slot: Slot,
        deadline: Instant,
    ) -> Result<ReadOutcome, Unavailable> {
        let outcome = self
            .read_from_learner_within(key, min_slot, deadline, None)
            .await?;
        Ok(outcome.expect("without an attempt limit, only the deadline ends the reads"))
    }

    /// Like [`Cluster::read_from_learner`], but gives up with `Ok(None)` after
    /// `attempts_max` learners were asked in vain (if given).
    async fn read_from_learner_within(
        &self,
        key: &str,
        min_slot: Slot,
        deadline: Instant,
        attempts_max: Option<usize>,
    ) -> Result<Option<ReadOutcome>, Unavailable> {
        let mut last_tried: Option<u32> = None;
        let mut attempts = Attempts::default();
        loop {
            if attempts_max.is_some_and(|max| (attempts.refused + attempts.silent) as usize >= max)
            {
                return Ok(None);
            }
            if Instant::now() >= deadline {
                return Err(Unavailable {
                    reason: format!(
                        "no learner answered the read at slot {min_slot} or later within {} ms ({})",
                        self.request_timeout.as_millis(),
                        attempts.summary("learner")
                    ),
                });
            }
            let connected = self.network.connected_nodes(Role::Learner);
            let learner = match last_tried {
                Some(_) => choose(&connected, None, last_tried),
                // Start each read at a different learner to spread the load.
                None if connected.is_empty() => None,
                None => {
                    let turn = self.learner_cursor.fetch_add(1, Ordering::Relaxed);
                    Some(connected[turn % connected.len()])
                }
            };
            let Some(learner) = learner else {
                pause_before_retry(deadline).await;
                continue;
            };
            last_tried = Some(learner.id);
            let read_id = self.fresh_id();
            let mut registration = self.mailbox.register(WaiterKey::Read(read_id), learner);
            let read = Message::Read {
                read_id,
                key: key.to_string(),
                min_slot,
            };
            if !self.network.send_soon(learner, read) {
                attempts.unsent += 1;
                pause_before_retry(deadline).await;
                continue;
            }
            let attempt_deadline = deadline.min(Instant::now() + ATTEMPT_TIMEOUT);
            match registration.wait_until(attempt_deadline).await {
                Some(Answer::Message(
                    _,
                    Message::ReadReply {
                        value,
                        applied_slot,
                        ..
                    },
                )) if applied_slot >= min_slot => {
                    return Ok(Some(ReadOutcome {
                        value,
                        applied_slot,
                    }))
                }
                Some(Answer::Message(from, answer)) => {
                    if let Message::ReadReply { applied_slot, .. } = answer {
                        // A learner must not answer below min_slot; such an answer could
                        // be stale, so it is not used.
                        tracing::warn!(%from, applied_slot, min_slot, "learner answered a read below its min_slot");
                    }
                    attempts.refused += 1;
                    pause_before_retry(deadline).await;
                }
                Some(Answer::Disconnected) | None => {
                    attempts.silent += 1;
                    pause_before_retry(deadline).await;
                }
            }
        }
    }

    /// Asks every node for its state, waiting at most [`STATUS_TIMEOUT`]. Acceptors are
    /// learned from the proposers' reports and queried too (they are not configured here).
    pub async fn status(&self) -> ClusterStatus {
        let every_role = [Role::Acceptor, Role::Proposer, Role::Learner];
        let connected: Vec<NodeId> = every_role
            .iter()
            .flat_map(|role| self.network.connected_nodes(*role))
            .collect();
        let mut replies = self
            .poll_statuses(&connected, Instant::now() + STATUS_TIMEOUT)
            .await;
        let learned = self.learn_acceptors(&replies);
        if !learned.is_empty() {
            let ready = self.wait_connected(&learned, STATUS_TIMEOUT).await;
            let more = self
                .poll_statuses(&ready, Instant::now() + STATUS_TIMEOUT)
                .await;
            replies.extend(more);
        }
        let mut nodes = self.listed_nodes();
        for node in &mut nodes {
            if let Some(id) = node.id {
                node.status = replies.remove(&NodeId {
                    role: node.role,
                    id,
                });
            }
        }
        nodes.sort_by(|left, right| {
            (left.role, left.id, &left.address).cmp(&(right.role, right.id, &right.address))
        });
        let leader = nodes
            .iter()
            .filter_map(|node| match &node.status {
                Some(NodeStatus {
                    detail:
                        RoleStatus::Proposer {
                            state: ProposerState::Leader,
                            ballot,
                            ..
                        },
                    ..
                }) => Some((*ballot, node)),
                _ => None,
            })
            .max_by_key(|(ballot, _)| *ballot)
            .map(|(_, node)| node.clone());
        if let Some(leader) = &leader {
            self.believe_leader(leader.id);
        }
        ClusterStatus {
            nodes,
            leader,
            insecure: self.network.is_insecure(),
            alarms: self.network.alarms(),
        }
    }

    /// Sends a StatusRequest to each of `nodes` and collects the replies until `deadline`.
    async fn poll_statuses(
        &self,
        nodes: &[NodeId],
        deadline: Instant,
    ) -> HashMap<NodeId, NodeStatus> {
        let mut pending = Vec::new();
        for node in nodes {
            let request_id = self.fresh_id();
            let registration = self.mailbox.register(WaiterKey::Status(request_id), *node);
            if self
                .network
                .send(*node, Message::StatusRequest { request_id })
            {
                pending.push((*node, registration));
            }
        }
        let mut replies = HashMap::new();
        // Every request is already sent, so waiting in turn waits for all at once.
        for (node, mut registration) in pending {
            if let Some(Answer::Message(_, Message::StatusReply { status, .. })) =
                registration.wait_until(deadline).await
            {
                replies.insert(node, status);
            }
        }
        replies
    }

    /// Adds the acceptors named in proposers' reports as peers; returns the new ones.
    fn learn_acceptors(&self, replies: &HashMap<NodeId, NodeStatus>) -> Vec<NodeId> {
        let mut learned = Vec::new();
        let mut acceptors = lock(&self.acceptors);
        for status in replies.values() {
            if !matches!(status.detail, RoleStatus::Proposer { .. }) {
                continue;
            }
            for peer in &status.peers {
                let Some(node) = peer.node.filter(|node| node.role == Role::Acceptor) else {
                    continue;
                };
                if acceptors.insert(peer.address.clone(), node).is_none() {
                    self.network.add_peer(&peer.address);
                    learned.push(node);
                }
            }
        }
        learned
    }

    /// Waits up to `timeout` for `nodes` to connect; returns those connected.
    async fn wait_connected(&self, nodes: &[NodeId], timeout: Duration) -> Vec<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            let connected = self.network.connected_nodes(Role::Acceptor);
            let ready: Vec<NodeId> = nodes
                .iter()
                .filter(|node| connected.contains(node))
                .copied()
                .collect();
            if ready.len() == nodes.len() || Instant::now() + CONNECT_POLL >= deadline {
                return ready;
            }
            tokio::time::sleep(CONNECT_POLL).await;
        }
    }

    /// Every node this process knows of: the configured proposers and learners (with the
    /// id their connection revealed) and the learned acceptors. No status yet.
    fn listed_nodes(&self) -> Vec<NodeReport> {
        let peers = self.network.peer_statuses();
        let node_at = |address: &str| {
            peers
                .iter()
                .find(|peer| peer.address == address)
                .and_then(|peer| peer.node)
        };
        let configured = self
            .proposer_addresses
            .iter()
            .map(|address| (Role::Proposer, address))
            .chain(
                self.learner_addresses
                    .iter()
                    .map(|address| (Role::Learner, address)),
            );
        let mut nodes: Vec<NodeReport> = configured
            .map(|(role, address)| {
                let node = node_at(address);
                NodeReport {
                    role: node.map_or(role, |node| node.role),
                    id: node.map(|node| node.id),
                    address: address.clone(),
                    status: None,
                }
            })
            .collect();
        for (address, node) in lock(&self.acceptors).iter() {
            nodes.push(NodeReport {
                role: node.role,
                id: Some(node.id),
                address: address.clone(),
                status: None,
            });
        }
        nodes
    }

    fn believe_leader(&self, leader: Option<u32>) {
        self.believed_leader
            .store(leader.unwrap_or(0), Ordering::Relaxed);
    }

    /// Stops believing `proposer` leads after it refused without a hint or fell silent.
    fn forget_leader(&self, proposer: u32) {
        let _ = self.believed_leader.compare_exchange(
            proposer,
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Counts what went wrong, for the 503 message.
#[derive(Default)]
struct Attempts {
    refused: u32,
    silent: u32,
    unsent: u32,
}

impl Attempts {
    fn summary(&self, role: &str) -> String {
        let sent = self.refused + self.silent;
        if sent == 0 && self.unsent == 0 {
            return format!("no {role} is connected");
        }
        format!(
            "{sent} attempts: {} refused, {} unanswered; {} could not be sent",
            self.refused, self.silent, self.unsent
        )
    }
}

/// The node to try next: `preferred` if connected, else the connected node after
/// `last_tried` in id order (wrapping around), else the first connected node.
fn choose(connected: &[NodeId], preferred: Option<u32>, last_tried: Option<u32>) -> Option<NodeId> {
    if let Some(node) = preferred.and_then(|id| connected.iter().find(|node| node.id == id)) {
        return Some(*node);
    }
    let after = last_tried.unwrap_or(0);
    connected
        .iter()
        .find(|node| node.id > after)
        .or_else(|| connected.first())
        .copied()
}

/// Sleeps a short jittered pause, never past `deadline`.
async fn pause_before_retry(deadline: Instant) {
    let (low, high) = RETRY_PAUSE_MILLISECONDS;
    let pause = Duration::from_millis(rand::rng().random_range(low..=high));
    tokio::time::sleep_until(deadline.min(Instant::now() + pause)).await;
}

/// How a proposer answered a write or a read index.
enum LeaderVerdict {
    Granted(Slot),
    Refused(Option<u32>),
    Unrelated,
}

fn leader_verdict(message: &Message) -> LeaderVerdict {
    match message {
        Message::WriteDecided { slot, .. } | Message::ReadIndexGranted { slot, .. } => {
            LeaderVerdict::Granted(*slot)
        }
        Message::WriteRefused { leader_hint, .. }
        | Message::ReadIndexRefused { leader_hint, .. } => LeaderVerdict::Refused(*leader_hint),
        _ => LeaderVerdict::Unrelated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposers(ids: &[u32]) -> Vec<NodeId> {
        ids.iter().map(|id| NodeId::proposer(*id)).collect()
    }

    #[test]
    fn choose_prefers_the_believed_leader_when_it_is_connected() {
        let connected = proposers(&[1, 2, 3]);
        assert_eq!(choose(&connected, Some(2), None), Some(NodeId::proposer(2)));
        assert_eq!(choose(&connected, Some(9), None), Some(NodeId::proposer(1)));
    }

    #[test]
    fn choose_rotates_after_the_last_tried_and_wraps_around() {
        let connected = proposers(&[1, 3]);
        assert_eq!(choose(&connected, None, Some(1)), Some(NodeId::proposer(3)));
        assert_eq!(choose(&connected, None, Some(3)), Some(NodeId::proposer(1)));
        assert_eq!(choose(&[], Some(1), Some(1)), None);
    }
}
