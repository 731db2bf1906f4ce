//! The thin service around the client-API core: it owns the network, feeds it into the
//! core, sends what the core says, completes the waiting requests and ticks the core every
//! [`common::TICK_MILLISECONDS`].
//!
//! The core sits behind one mutex, locked briefly from the HTTP handlers (a request in) and
//! from the network's inbound handler (a message in), so an answer goes from the socket to
//! the waiting HTTP request without another thread hop. Each request waits on a oneshot
//! channel named by its token; a request whose caller goes away is cancelled in the core.
//! Effects are carried out after the lock is released, in order (the feed's slots under a
//! second lock taken before the first is released, so that pushes reach the streams in
//! the order the core accepted them).

use crate::config::ClientConfig;
use crate::core::{
    self, Answer, AnswerKey, ClientCore, ClientOptions, Consistency, Effect, FetchAnswer,
    ReadOutcome, Request, Token, Unavailable,
};
use crate::feed::{events_of, BufferLimits, FanOut, Fetched, Position, StreamQueue};
use crate::pattern::Pattern;
use crate::sync::lock;
use anyhow::Context;
use common::ballot::Slot;
use common::message::{NodeStatus, ProposerState, RoleStatus};
use common::node::{NodeId, Role};
use common::value::Command;
use runtime::network::{Inbound, Network, Transport};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How a `/status` request checks whether newly learned acceptors are connected.
const CONNECT_POLL: Duration = Duration::from_millis(10);

/// Why a write did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The cluster did not answer in time, or refused the write for lack of space.
    Unavailable(Unavailable),
    /// The request id belongs to another command, applied at `revision`: this write was
    /// not applied.
    RequestIdTaken {
        /// The revision at which the other command took effect.
        revision: Slot,
    },
}

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

struct Inner {
    core: ClientCore,
    next_token: Token,
    waiters: HashMap<Token, oneshot::Sender<Answer>>,
}

/// The client API's view of the cluster: its network and its core.
pub struct Driver {
    inner: Mutex<Inner>,
    fan_out: Mutex<FanOut>,
    network: OnceLock<Network>,
    proposer_addresses: Vec<String>,
    learner_addresses: Vec<String>,
    /// Acceptors learned from the proposers' status reports: address -> node.
    acceptors: Mutex<BTreeMap<String, NodeId>>,
}

impl Driver {
    /// Starts the network of client API `config.id` towards every proposer and learner,
    /// and the ticks of its core.
    pub async fn connect(config: &ClientConfig) -> anyhow::Result<Arc<Driver>> {
        let mut options = ClientOptions::new(config.id, rand::random());
        options.request_timeout_ticks = core::ticks(config.request_timeout_milliseconds);
        let driver = Arc::new(Driver {
            inner: Mutex::new(Inner {
                core: ClientCore::new(options),
                next_token: 1,
                waiters: HashMap::new(),
            }),
            fan_out: Mutex::new(FanOut::new(BufferLimits {
                events: config.subscription_buffer_events,
                bytes: config.subscription_buffer_bytes,
            })),
            network: OnceLock::new(),
            proposer_addresses: config.proposer_hosts.clone(),
            learner_addresses: config.learner_hosts.clone(),
            acceptors: Mutex::new(BTreeMap::new()),
        });
        let peers: Vec<String> = config
            .proposer_hosts
            .iter()
            .chain(&config.learner_hosts)
            .cloned()
            .collect();
        let me = NodeId::client(config.id);
        let transport = Transport::from_security(&config.security, me)
            .context("loading the client API's TLS certificates")?;
        let handler_driver = Arc::downgrade(&driver);
        let (network, _) = Network::start(
            me,
            None,
            &peers,
            transport,
            Arc::new(move |inbound| {
                if let Some(driver) = handler_driver.upgrade() {
                    driver.on_inbound(inbound);
                }
            }),
        )
        .await?;
        let _ = driver.network.set(network);
        tokio::spawn(tick_loop(Arc::downgrade(&driver)));
        Ok(driver)
    }

    fn network(&self) -> Option<&Network> {
        self.network.get()
    }

    /// The proposer believed to lead, if any.
    pub fn believed_leader(&self) -> Option<u32> {
        lock(&self.inner).core.believed_leader()
    }

    fn on_inbound(&self, inbound: Inbound) {
        let mut inner = lock(&self.inner);
        let effects = match inbound {
            Inbound::Message(from, message) => inner.core.on_message(from, message),
            Inbound::Connected(node) => inner.core.on_connected(node),
            Inbound::Disconnected(node) => inner.core.on_disconnected(node),
        };
        self.carry_out(inner, effects);
    }

    fn tick(&self) {
        let mut inner = lock(&self.inner);
        let effects = inner.core.tick();
        self.carry_out(inner, effects);
    }

    /// Carries out `effects` of the core behind `inner`: the feed's slots, then the
    /// messages, then the answers; a message that cannot be sent goes back to the core.
    fn carry_out(&self, mut inner: std::sync::MutexGuard<'_, Inner>, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let mut sends = Vec::new();
        let mut answers = Vec::new();
        let mut feed = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send { to, message } => sends.push((to, message)),
                Effect::Answer { token, answer } => {
                    if let Some(waiter) = inner.waiters.remove(&token) {
                        answers.push((waiter, answer));
                    }
                }
                feed_effect => feed.push(feed_effect),
            }
        }
        let fan_out = (!feed.is_empty()).then(|| lock(&self.fan_out));
        drop(inner);
        if let Some(mut fan_out) = fan_out {
            for effect in feed {
                match effect {
                    Effect::FeedApplied { slots, next_slot } => fan_out.offer(slots, next_slot),
                    Effect::FeedTooOld {
                        oldest_available_slot,
                    } => fan_out.end_all_too_old(oldest_available_slot),
                    _ => {}
                }
            }
        }
        let mut unsent = Vec::new();
        for (to, message) in sends {
            let key = AnswerKey::of(&message);
            let sent = self
                .network()
                .is_some_and(|network| network.send_soon(to, message));
            if let (false, Some(key)) = (sent, key) {
                unsent.push((to, key));
            }
        }
        for (waiter, answer) in answers {
            let _ = waiter.send(answer);
        }
        if !unsent.is_empty() {
            let mut inner = lock(&self.inner);
            let mut effects = Vec::new();
            for (to, key) in unsent {
                effects.extend(inner.core.on_unsent(to, key));
            }
            self.carry_out(inner, effects);
        }
    }

    /// Starts a request in the core with a fresh token and waits for its answer; a caller
    /// that goes away cancels it.
    async fn call(&self, start: impl FnOnce(&mut ClientCore, Token) -> Vec<Effect>) -> Answer {
        let (sender, receiver) = oneshot::channel();
        let token = {
            let mut inner = lock(&self.inner);
            let token = inner.next_token;
            inner.next_token += 1;
            inner.waiters.insert(token, sender);
            let effects = start(&mut inner.core, token);
            self.carry_out(inner, effects);
            token
        };
        let mut cancel = CancelOnDrop {
            driver: self,
            token,
            armed: true,
        };
        let answer = receiver.await;
        cancel.armed = false;
        // The core answers every request it has not cancelled; a sender dropped anyway
        // (the service stopping) is an unavailable cluster, not a panic.
        answer.unwrap_or_else(|_| {
            Answer::Unavailable(Unavailable {
                reason: "the client API is stopping".to_string(),
                placed_nowhere: false,
            })
        })
    }

    /// Writes `command` through the leader and returns the revision at which it took
    /// effect. Every attempt carries `command.request_id`. With a session, the session
    /// then observes that revision.
    pub async fn write(
        &self,
        command: Command,
        session: Option<String>,
    ) -> Result<Slot, WriteError> {
        let request = Request::Write { command, session };
        match self.call(|core, token| core.request(token, request)).await {
            Answer::Written { revision } => Ok(revision),
            Answer::RequestIdTaken { revision } => Err(WriteError::RequestIdTaken { revision }),
            Answer::Unavailable(unavailable) => Err(WriteError::Unavailable(unavailable)),
            other => Err(WriteError::Unavailable(unexpected(other))),
        }
    }

    /// Reads `key` with `consistency`; a session moves forward to the slot observed.
    pub async fn read(
        &self,
        key: String,
        consistency: Consistency,
        session: Option<String>,
    ) -> Result<ReadOutcome, Unavailable> {
        let request = Request::Read {
            key,
            consistency,
            session,
        };
        match self.call(|core, token| core.request(token, request)).await {
            Answer::Read(outcome) => Ok(outcome),
            Answer::Unavailable(unavailable) => Err(unavailable),
            other => Err(unexpected(other)),
        }
    }

    /// Asks every node for its state, waiting at most the status timeout. Acceptors are
    /// learned from the proposers' reports and queried too (they are not configured here).
    pub async fn status(&self) -> ClusterStatus {
        let Some(network) = self.network() else {
            return ClusterStatus {
                nodes: self.listed_nodes(&[]),
                leader: None,
                insecure: false,
                alarms: Vec::new(),
            };
        };
        let connected: Vec<NodeId> = [Role::Acceptor, Role::Proposer, Role::Learner]
            .iter()
            .flat_map(|role| network.connected_nodes(*role))
            .collect();
        let mut replies = self.poll_statuses(connected).await;
        let learned = self.learn_acceptors(network, &replies);
        if !learned.is_empty() {
            let status_timeout = Duration::from_millis(core::STATUS_TIMEOUT_MILLISECONDS);
            let ready = wait_connected(network, &learned, status_timeout).await;
            replies.extend(self.poll_statuses(ready).await);
        }
        let mut nodes = self.listed_nodes(&network.peer_statuses());
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
            lock(&self.inner).core.believe_leader(leader.id);
        }
        ClusterStatus {
            nodes,
            leader,
            insecure: network.is_insecure(),
            alarms: network.alarms(),
        }
    }

    async fn poll_statuses(&self, nodes: Vec<NodeId>) -> BTreeMap<NodeId, NodeStatus> {
        match self
            .call(|core, token| core.poll_statuses(token, &nodes))
            .await
        {
            Answer::Statuses(replies) => replies,
            _ => BTreeMap::new(),
        }
    }

    /// Adds the acceptors named in proposers' reports as peers; returns the new ones.
    fn learn_acceptors(
        &self,
        network: &Network,
        replies: &BTreeMap<NodeId, NodeStatus>,
    ) -> Vec<NodeId> {
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
                    network.add_peer(&peer.address);
                    learned.push(node);
                }
            }
        }
        learned
    }

    /// Every node this process knows of: the configured proposers and learners (with the
    /// id their connection revealed) and the learned acceptors. No status yet.
    fn listed_nodes(&self, peers: &[common::message::PeerStatus]) -> Vec<NodeReport> {
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

    /// Registers an open event stream (the learner stream runs while any is); dropping the
    /// returned guard unregisters it.
    pub fn interest(self: &Arc<Self>) -> Interest {
        let mut inner = lock(&self.inner);
        let effects = inner.core.feed_stream_opened();
        self.carry_out(inner, effects);
        Interest {
            driver: Arc::clone(self),
        }
    }

    /// How many event streams are open (joined or catching up).
    pub fn open_streams(&self) -> usize {
        lock(&self.inner).core.feed_open_streams()
    }

    /// The highest applied slot a learner reported.
    pub fn applied_slot(&self) -> Slot {
        lock(&self.inner).core.feed_applied_slot()
    }

    /// Joins a stream that needs `start` next (None: from wherever the feed is) to the
    /// feed, if the feed has not moved past it; else None and the stream must catch up
    /// first. Also None while the feed's position is unknown.
    pub fn join(
        &self,
        patterns: &Arc<Vec<Pattern>>,
        start: Option<Position>,
    ) -> Option<(Arc<StreamQueue>, Position)> {
        let inner = lock(&self.inner);
        let next_slot = inner.core.feed_next_slot();
        let mut fan_out = lock(&self.fan_out);
        drop(inner);
        fan_out.join(next_slot, patterns, start)
    }

    /// Fetches the writes of slots from `from_slot` on from a learner's history, trying the
    /// connected learners in turn (starting at `turn`); the core decides.
    pub async fn fetch(&self, from_slot: Slot, turn: usize) -> Fetched {
        match self
            .call(|core, token| core.fetch(token, from_slot, turn))
            .await
        {
            Answer::Fetched(FetchAnswer::Applied { to_slot, slots }) => Fetched::Applied {
                to_slot,
                events: events_of(slots),
            },
            Answer::Fetched(FetchAnswer::TooOld {
                oldest_available_slot,
            }) => Fetched::TooOld {
                oldest_available_slot,
            },
            _ => Fetched::Unavailable,
        }
    }
}

/// An answer of the wrong kind (a bug of the core) as a 503 rather than a panic.
fn unexpected(answer: Answer) -> Unavailable {
    debug_assert!(false, "an answer of the wrong kind: {answer:?}");
    Unavailable {
        reason: format!("the client API's core gave an answer of the wrong kind: {answer:?}"),
        placed_nowhere: false,
    }
}

/// Cancels a request in the core when its caller goes away before the answer.
struct CancelOnDrop<'a> {
    driver: &'a Driver,
    token: Token,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut inner = lock(&self.driver.inner);
            inner.core.cancel(self.token);
            inner.waiters.remove(&self.token);
        }
    }
}

/// An open event stream's claim on the feed (see [`Driver::interest`]).
pub struct Interest {
    driver: Arc<Driver>,
}

impl Drop for Interest {
    fn drop(&mut self) {
        lock(&self.driver.inner).core.feed_stream_closed();
    }
}

/// Ticks the core every [`common::TICK_MILLISECONDS`] until the driver is gone.
async fn tick_loop(driver: Weak<Driver>) {
    let mut interval = tokio::time::interval(Duration::from_millis(common::TICK_MILLISECONDS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match driver.upgrade() {
            Some(driver) => driver.tick(),
            None => return,
        }
    }
}

/// Waits up to `timeout` for `nodes` to connect; returns those connected.
async fn wait_connected(network: &Network, nodes: &[NodeId], timeout: Duration) -> Vec<NodeId> {
    let deadline = Instant::now() + timeout;
    loop {
        let connected = network.connected_nodes(Role::Acceptor);
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
