//! The client API's protocol as a plain state machine: requests, ticks and network events
//! in; messages to send and answers out.
//!
//! It owns everything the client API decides on behalf of a REST request: which proposer
//! it believes leads (following hints: the first at once, later ones after a pause), the
//! attempts of a request (one request id per write across every attempt, so that learners
//! apply it at most once), attempt timeouts and the request's deadline, the three read
//! paths, the session table, the status fan-out and the upstream side of the change feed.
//! It has no `async`, no sockets, no clock and no global randomness: time is a count of
//! ticks ([`common::TICK_MILLISECONDS`] each in the service) and jitter comes from a
//! generator seeded at construction, so the simulation (`sim/`) runs this very code and
//! replays it from a seed.
//!
//! ```
//! use client::core::{Answer, ClientCore, ClientOptions, Effect, Request};
//! use common::message::{AppliedRequest, Message};
//! use common::node::NodeId;
//! use common::value::{Command, RequestId};
//!
//! let mut core = ClientCore::new(ClientOptions::new(1, 7));
//! core.on_connected(NodeId::proposer(1));
//! core.on_connected(NodeId::learner(1));
//! let command = Command::put(RequestId(9), "k", "v");
//! let fingerprint = command.operation.fingerprint();
//! let effects = core.request(1, Request::Write { command, session: None });
//! assert!(matches!(&effects[..], [Effect::Send { message: Message::Write { .. }, .. }]));
//! let decided = Message::WriteDecided {
//!     request_id: RequestId(9),
//!     slot: 4,
//!     client: NodeId::client(1),
//! };
//! // Decided in slot 4: a learner that applied it says at which revision it took effect.
//! let effects = core.on_message(NodeId::proposer(1), decided);
//! let [Effect::Send { message: Message::Outcome { read_id, .. }, .. }] = &effects[..] else {
//!     panic!("{effects:?}")
//! };
//! let applied = AppliedRequest { request_id: RequestId(9), slot: 4, fingerprint };
//! let reply = Message::OutcomeReply { read_id: *read_id, outcome: Some(applied), applied_slot: 4 };
//! let effects = core.on_message(NodeId::learner(1), reply);
//! assert!(matches!(&effects[..], [Effect::Answer { token: 1, answer: Answer::Written { revision: 4 } }]));
//! ```
#![deny(missing_docs)]

mod feed;
mod requests;
mod sessions;
mod status;

pub use feed::FeedOptions;
pub use sessions::Sessions;

use common::ballot::Slot;
use common::message::{AppliedSlot, Message, NodeStatus, VersionedValue};
use common::node::{NodeId, Role};
use common::value::RequestId;
use common::TICK_MILLISECONDS;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Names one request of the caller (an HTTP request, a simulated operation); every answer
/// carries it.
pub type Token = u64;

/// The longest wait for one node's answer before trying another node, in milliseconds.
pub const ATTEMPT_TIMEOUT_MILLISECONDS: u64 = 1000;
/// How long `/status` waits for the nodes' reports, in milliseconds.
pub const STATUS_TIMEOUT_MILLISECONDS: u64 = 500;
/// The pause before retrying on another node, in milliseconds, `[low, high]`: long enough
/// not to spin while an election runs, jittered so that many clients do not retry in step.
pub const RETRY_PAUSE_MILLISECONDS: (u64, u64) = (25, 50);
/// Sessions remembered at most. Forgetting a session is safe: its next session read
/// becomes a strong read, which observes at least as much.
pub const SESSION_CAPACITY: usize = 100_000;

/// Milliseconds as ticks, rounded up (at least one).
pub fn ticks(milliseconds: u64) -> u64 {
    milliseconds.div_ceil(TICK_MILLISECONDS).max(1)
}

/// How a client API behaves; every timing counts ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// This client API's id (node `client<id>`).
    pub id: u32,
    /// The longest wait for one node's answer before trying another (ATTEMPT_TIMEOUT).
    pub attempt_timeout_ticks: u64,
    /// The longest a request runs before it is given up (REQUEST_TIMEOUT).
    pub request_timeout_ticks: u64,
    /// The pause before a retry, `[low, high]`, drawn from the seeded generator.
    pub retry_pause_ticks: (u64, u64),
    /// How long a status fan-out waits for the nodes' reports.
    pub status_timeout_ticks: u64,
    /// Sessions remembered at most.
    pub session_capacity: usize,
    /// Seeds the generator of retry jitter and of where reads start.
    pub seed: u64,
    /// The change feed's timings.
    pub feed: FeedOptions,
}

impl ClientOptions {
    /// The production timings of client API `id`, with a request timeout of 5 s.
    pub fn new(id: u32, seed: u64) -> Self {
        ClientOptions {
            id,
            attempt_timeout_ticks: ticks(ATTEMPT_TIMEOUT_MILLISECONDS),
            request_timeout_ticks: ticks(5000),
            retry_pause_ticks: (
                ticks(RETRY_PAUSE_MILLISECONDS.0),
                ticks(RETRY_PAUSE_MILLISECONDS.1),
            ),
            status_timeout_ticks: ticks(STATUS_TIMEOUT_MILLISECONDS),
            session_capacity: SESSION_CAPACITY,
            seed,
            feed: FeedOptions::default(),
        }
    }
}

/// How a read must relate to earlier operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// Linearizable: observes every write completed before the read started.
    Strong,
    /// Observes its session's own writes and never goes back in time within the session.
    Session,
    /// Whatever a learner has applied now.
    Eventual,
}

impl Consistency {
    /// The name used in the REST API.
    pub fn name(&self) -> &'static str {
        match self {
            Consistency::Strong => "strong",
            Consistency::Session => "session",
            Consistency::Eventual => "eventual",
        }
    }
}

/// What a caller asks the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Write `command` through the leader; every attempt carries `command.request_id`.
    /// Once decided, a learner that applied it tells the revision it took effect at (or
    /// that its request id was another command's). With a session, the session then
    /// observes that revision.
    Write {
        /// The write.
        command: common::value::Command,
        /// The session it belongs to.
        session: Option<String>,
    },
    /// Read `key`. A session (required by [`Consistency::Session`]) moves forward to the
    /// slot the read observed, whatever the level.
    Read {
        /// The key.
        key: String,
        /// The read level.
        consistency: Consistency,
        /// The session, if any.
        session: Option<String>,
    },
}

/// The answer to a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The value with its revisions, or None for a key that does not exist.
    pub value: Option<VersionedValue>,
    /// The slot the answering learner had applied.
    pub applied_slot: Slot,
}

/// The cluster did not answer before the request's deadline. For a write the outcome is
/// unknown: the write may still be decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// What did not answer, for the 503 message.
    pub reason: String,
    /// Whether the write is known to be in no slot (refused for lack of space), rather
    /// than of unknown outcome.
    pub placed_nowhere: bool,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.reason)
    }
}

impl std::error::Error for Unavailable {}

/// What a catch-up fetch (`ReadApplied`, asked of the learners in turn) found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchAnswer {
    /// The writes of `[from_slot, to_slot)`; an empty range when no learner that answered
    /// has applied `from_slot` yet.
    Applied {
        /// One past the last slot covered.
        to_slot: Slot,
        /// The slots of the range that applied a write, in slot order.
        slots: Vec<AppliedSlot>,
    },
    /// Every learner that answered no longer holds `from_slot`; the oldest slot one does.
    TooOld {
        /// The oldest slot a learner still holds.
        oldest_available_slot: Slot,
    },
    /// No learner is connected, or none answered in time.
    Unavailable,
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The write took effect at `revision` (the slot that applied it; a retry decided
    /// again later took effect there all the same).
    Written {
        /// The revision of the state the write made.
        revision: Slot,
    },
    /// The write's request id was taken by another command, applied at `revision`: this
    /// write was not applied (409).
    RequestIdTaken {
        /// The revision at which the other command took effect.
        revision: Slot,
    },
    /// The read's value.
    Read(ReadOutcome),
    /// The deadline passed.
    Unavailable(Unavailable),
    /// The reports of the nodes that answered a status fan-out in time.
    Statuses(BTreeMap<NodeId, NodeStatus>),
    /// The answer to a catch-up fetch.
    Fetched(FetchAnswer),
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send `message` to `to`. If it cannot be sent, tell [`ClientCore::on_unsent`].
    Send {
        /// The node.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// Complete request `token`.
    Answer {
        /// The request.
        token: Token,
        /// Its outcome.
        answer: Answer,
    },
    /// The feed received the writes of every slot before `next_slot` (those in `slots`,
    /// none received before): hand them to the joined streams.
    FeedApplied {
        /// The slots with writes, in slot order.
        slots: Vec<AppliedSlot>,
        /// The first slot not received.
        next_slot: Slot,
    },
    /// No learner holds the feed's next slot any more: every joined stream ends as too old.
    FeedTooOld {
        /// The oldest slot a learner still holds.
        oldest_available_slot: Slot,
    },
}

/// What an answer from the network is the answer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnswerKey {
    /// A write (the same on every attempt).
    Write(RequestId),
    /// A ReadIndex or a Read.
    Read(u64),
    /// A StatusRequest.
    Status(u64),
    /// A feed subscription or a catch-up fetch.
    Stream(u64),
}

impl AnswerKey {
    /// The key of `message`, sent or received, if it belongs to a request.
    pub fn of(message: &Message) -> Option<AnswerKey> {
        match message {
            Message::Write { command, .. } => Some(AnswerKey::Write(command.request_id)),
            Message::WriteDecided { request_id, .. }
            | Message::WriteRefused { request_id, .. }
            | Message::WriteFailed { request_id, .. } => Some(AnswerKey::Write(*request_id)),
            Message::ReadIndex { read_id }
            | Message::Read { read_id, .. }
            | Message::ReadIndexGranted { read_id, .. }
            | Message::ReadIndexRefused { read_id, .. }
            | Message::ReadReply { read_id, .. }
            | Message::Outcome { read_id, .. }
            | Message::OutcomeReply { read_id, .. }
            | Message::ReadTimedOut { read_id, .. } => Some(AnswerKey::Read(*read_id)),
            Message::StatusRequest { request_id } | Message::StatusReply { request_id, .. } => {
                Some(AnswerKey::Status(*request_id))
            }
            Message::Subscribe { stream_id, .. }
            | Message::ReadApplied { stream_id, .. }
            | Message::Applied { stream_id, .. }
            | Message::SubscriptionTooOld { stream_id, .. } => Some(AnswerKey::Stream(*stream_id)),
            _ => None,
        }
    }
}

/// PLANTED BUGS, for the simulation only (feature `planted-bugs`): known ways to break the
/// client API's guarantees that `sim` must catch, so that its checks are shown not to be
/// vacuous. Without the feature no bug can be planted ([`ClientCore::plant_bug`] is absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// A write takes a new request id on every retry: a retry of a write that was in fact
    /// decided is applied a second time.
    RetryTakesNewRequestId,
    /// A strong read skips the read index and reads at a learner with `min_slot` 0.
    StrongReadSkipsReadIndex,
    /// A session read reads with `min_slot` 0 instead of the session's slot.
    SessionReadIgnoresItsSlot,
    /// A write answers the slot the leader decided it in as its revision, without asking a
    /// learner where it took effect (a retry decided twice took effect earlier).
    WriteAnswersTheDecidedSlot,
}

/// The client API's protocol state.
pub struct ClientCore {
    options: ClientOptions,
    me: NodeId,
    now: u64,
    random: ChaCha8Rng,
    /// The proposer believed to lead.
    believed_leader: Option<u32>,
    /// Read ids, status request ids and stream ids (from a random start, see `new`).
    next_id: u64,
    /// Spreads reads over the learners.
    learner_cursor: usize,
    /// Connected proposers and learners, in id order.
    proposers: Vec<NodeId>,
    learners: Vec<NodeId>,
    requests: BTreeMap<Token, requests::Pending>,
    /// Which requests wait for which answer (several may wait for one write's id).
    waiting: HashMap<AnswerKey, Vec<Token>>,
    sessions: Sessions,
    statuses: BTreeMap<Token, status::StatusPoll>,
    feed: feed::FeedState,
    effects: Vec<Effect>,
    #[cfg(feature = "planted-bugs")]
    planted_bug: Option<PlantedBug>,
}

impl ClientCore {
    /// A client API that knows no node and no session yet.
    pub fn new(options: ClientOptions) -> Self {
        assert!(
            options.retry_pause_ticks.0 <= options.retry_pause_ticks.1,
            "the retry pause is a range [low, high]"
        );
        let mut random = ChaCha8Rng::seed_from_u64(options.seed);
        // Ids start at a random point of a 63-bit space, so that a restarted client API does
        // not reuse the ids of its previous life: a learner that parked a read of the old
        // process answers it later, to the new one, and that answer must match nothing
        // (found by the simulation once it ran this core).
        let next_id = (random.random::<u64>() >> 1).max(1);
        ClientCore {
            options,
            me: NodeId::client(options.id),
            now: 0,
            random,
            believed_leader: None,
            next_id,
            learner_cursor: options.id as usize,
            proposers: Vec::new(),
            learners: Vec::new(),
            requests: BTreeMap::new(),
            waiting: HashMap::new(),
            sessions: Sessions::new(options.session_capacity),
            statuses: BTreeMap::new(),
            feed: feed::FeedState::default(),
            effects: Vec::new(),
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// Plants `bug` (simulation only).
    #[cfg(feature = "planted-bugs")]
    pub fn plant_bug(&mut self, bug: PlantedBug) {
        self.planted_bug = Some(bug);
    }

    #[inline(always)]
    fn has_bug(&self, bug: PlantedBug) -> bool {
        #[cfg(feature = "planted-bugs")]
        return self.planted_bug == Some(bug);
        #[cfg(not(feature = "planted-bugs"))]
        {
            let _ = bug;
            false
        }
    }

    /// The options this core runs with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Ticks since the start.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The proposer believed to lead, if any.
    pub fn believed_leader(&self) -> Option<u32> {
        self.believed_leader
    }

    /// Believes `leader` leads (a status report named it), or no one.
    pub fn believe_leader(&mut self, leader: Option<u32>) {
        self.believed_leader = leader;
    }

    /// The highest slot `session` has written or observed, if this core knows it.
    pub fn session_slot(&self, session: &str) -> Option<Slot> {
        self.sessions.slot(session)
    }

    /// Whether any request, status fan-out or fetch is running.
    pub fn is_busy(&self) -> bool {
        !self.requests.is_empty() || !self.statuses.is_empty() || self.feed.has_fetches()
    }

    /// Lets every running request take as long as it needs (the simulation's healing
    /// phase: once faults stop, what runs must complete).
    pub fn lift_deadlines(&mut self) {
        for pending in self.requests.values_mut() {
            pending.deadline = None;
        }
    }

    /// Starts request `token`; its answer comes as an [`Effect::Answer`] with `token`.
    pub fn request(&mut self, token: Token, request: Request) -> Vec<Effect> {
        self.start_request(token, request);
        std::mem::take(&mut self.effects)
    }

    /// Forgets request `token` (its caller went away): no answer will come.
    pub fn cancel(&mut self, token: Token) {
        if let Some(pending) = self.requests.remove(&token) {
            if let Some(key) = pending.waiting_key() {
                self.stop_waiting(key, token);
            }
        }
        self.cancel_status(token);
        self.feed_cancel_fetch(token);
    }

    /// One tick passed: gives up requests past their deadline, retries attempts that timed
    /// out or paused, ends status fan-outs and fetches that waited long enough, and keeps
    /// the feed's learner stream.
    pub fn tick(&mut self) -> Vec<Effect> {
        self.now += 1;
        let due: Vec<Token> = self
            .requests
            .iter()
            .filter(|(_, pending)| pending.is_due(self.now))
            .map(|(token, _)| *token)
            .collect();
        for token in due {
            self.drive(token);
        }
        self.tick_statuses();
        self.feed_tick();
        std::mem::take(&mut self.effects)
    }

    /// A message from `from` arrived.
    pub fn on_message(&mut self, from: NodeId, message: Message) -> Vec<Effect> {
        match (&message, AnswerKey::of(&message)) {
            (Message::Applied { .. } | Message::SubscriptionTooOld { .. }, _) => {
                self.feed_on_message(from, message)
            }
            (Message::StatusReply { .. }, _) => self.on_status_reply(from, message),
            (
                Message::WriteDecided { .. }
                | Message::WriteRefused { .. }
                | Message::WriteFailed { .. }
                | Message::ReadIndexGranted { .. }
                | Message::ReadIndexRefused { .. }
                | Message::ReadReply { .. }
                | Message::OutcomeReply { .. }
                | Message::ReadTimedOut { .. },
                Some(key),
            ) => self.on_answer(key, from, message),
            // Not an answer to anything a client API asks: nothing to do.
            _ => {}
        }
        std::mem::take(&mut self.effects)
    }

    /// A connection to `node` opened.
    pub fn on_connected(&mut self, node: NodeId) -> Vec<Effect> {
        if let Some(nodes) = self.nodes_mut(node.role) {
            if let Err(index) = nodes.binary_search(&node) {
                nodes.insert(index, node);
            }
        }
        if node.role == Role::Learner {
            self.feed_on_learner_connected();
        }
        std::mem::take(&mut self.effects)
    }

    /// The last connection to `node` closed: requests waiting on it retry elsewhere at
    /// once rather than wait out their attempt.
    pub fn on_disconnected(&mut self, node: NodeId) -> Vec<Effect> {
        if let Some(nodes) = self.nodes_mut(node.role) {
            nodes.retain(|known| *known != node);
        }
        let abandoned: Vec<Token> = self
            .requests
            .iter()
            .filter(|(_, pending)| pending.waits_on(node))
            .map(|(token, _)| *token)
            .collect();
        for token in abandoned {
            self.attempt_unanswered(token);
        }
        self.feed_on_disconnected(node);
        std::mem::take(&mut self.effects)
    }

    /// A message of an [`Effect::Send`] to `to` could not be sent (not connected, or its
    /// queue is full); `key` is [`AnswerKey::of`] that message.
    pub fn on_unsent(&mut self, to: NodeId, key: AnswerKey) -> Vec<Effect> {
        match key {
            AnswerKey::Stream(stream_id) => self.feed_on_unsent(to, stream_id),
            AnswerKey::Status(_) => self.status_unsent(to, key),
            AnswerKey::Write(_) | AnswerKey::Read(_) => {
                let tokens = self.waiting.get(&key).cloned().unwrap_or_default();
                for token in tokens {
                    if self.requests.get(&token).is_some_and(|p| p.waits_on(to)) {
                        self.attempt_unsent(token);
                    }
                }
            }
        }
        std::mem::take(&mut self.effects)
    }

    fn nodes_mut(&mut self, role: Role) -> Option<&mut Vec<NodeId>> {
        match role {
            Role::Proposer => Some(&mut self.proposers),
            Role::Learner => Some(&mut self.learners),
            _ => None,
        }
    }

    fn send(&mut self, to: NodeId, message: Message) {
        self.effects.push(Effect::Send { to, message });
    }

    fn answer(&mut self, token: Token, answer: Answer) {
        self.effects.push(Effect::Answer { token, answer });
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn wait_for(&mut self, key: AnswerKey, token: Token) {
        self.waiting.entry(key).or_default().push(token);
    }

    fn stop_waiting(&mut self, key: AnswerKey, token: Token) {
        if let Some(tokens) = self.waiting.get_mut(&key) {
            tokens.retain(|waiting| *waiting != token);
            if tokens.is_empty() {
                self.waiting.remove(&key);
            }
        }
    }

    /// The tick of the next attempt after a failed one: a short jittered pause.
    fn retry_at(&mut self) -> u64 {
        let (low, high) = self.options.retry_pause_ticks;
        self.now + self.random.random_range(low..=high)
    }

    fn request_timeout_milliseconds(&self) -> u64 {
        self.options.request_timeout_ticks * TICK_MILLISECONDS
    }
}

/// The node to try next: `preferred` if connected, else the connected node after
/// `last_tried` in id order (wrapping around), else the first connected node.
pub fn choose(
    connected: &[NodeId],
    preferred: Option<u32>,
    last_tried: Option<u32>,
) -> Option<NodeId> {
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

#[cfg(test)]
mod tests;
