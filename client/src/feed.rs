//! The change feed: the writes the learners apply, slot by slot, fanned out to the event
//! streams of subscribers.
//!
//! Learners are the source because they apply decided slots in order and apply each
//! request id once: a subscriber sees exactly the writes that changed the state, in slot
//! order. One learner stream (`Subscribe` → `Applied` pushes) feeds every live event
//! stream of this client API. Each push covers a slot range `[from_slot, to_slot)`
//! completely, so the feed knows the next slot it needs (`next_slot`): a push that does not
//! start there means one was lost, and the feed subscribes again from `next_slot`, at the
//! same learner or another one. A learner that disconnects or falls silent is replaced the
//! same way, so nothing is skipped and nothing repeated across a learner restart.
//!
//! A stream that starts behind the feed (it resumes from an older position) first catches
//! up on its own, fetching past slots from a learner's history (`ReadApplied`) one chunk at
//! a time as its subscriber reads them, then joins the feed. Joined, it has a bounded queue:
//! the feed never waits for a subscriber, and a stream whose queue fills up is ended with
//! the position to resume from.

use crate::mailbox::lock;
use crate::pattern::{any_matches, Pattern};
use common::ballot::Slot;
use common::message::{AppliedSlot, Message};
use common::node::{NodeId, Role};
use runtime::network::{Inbound, Network};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// How often the feed checks its learner stream.
const MAINTAIN_INTERVAL: Duration = Duration::from_millis(100);
/// A learner stream silent this long is replaced (learners send a heartbeat every 500 ms).
const UPSTREAM_SILENCE: Duration = Duration::from_secs(3);
/// After the last event stream closed, the learner stream is kept this long.
const IDLE_GRACE: Duration = Duration::from_secs(30);
/// How long a catch-up fetch waits for a learner's answer before asking another.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Slots asked for per catch-up fetch.
const FETCH_SLOTS: u32 = 1024;

/// How large a stream's queue may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferLimits {
    /// Events queued at most (SUBSCRIPTION_BUFFER_EVENTS).
    pub events: usize,
    /// Bytes of event data queued at most (SUBSCRIPTION_BUFFER_BYTES).
    pub bytes: usize,
}

/// Where a stream stands: the next write it must deliver is the command at `index` (or
/// later) of `slot`. Everything before was delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// The slot.
    pub slot: Slot,
    /// The first command index of `slot` still to deliver.
    pub index: u32,
}

impl Position {
    /// The start of `slot`.
    pub fn slot_start(slot: Slot) -> Position {
        Position { slot, index: 0 }
    }

    /// Parses an event id (or `from_slot`): `S` means all of slot `S` was seen, `S.I` the
    /// write at index `I` of slot `S`; the stream continues right after it.
    pub fn after_event_id(text: &str) -> Option<Position> {
        let text = text.trim();
        let (slot, index) = match text.split_once('.') {
            Some((slot, index)) => (slot, Some(index)),
            None => (text, None),
        };
        if slot.is_empty() || !slot.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let slot: Slot = slot.parse().ok()?;
        match index {
            None => Some(Position::slot_start(slot.checked_add(1)?)),
            Some(index) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
                let index: u32 = index.parse().ok()?;
                Some(Position {
                    slot,
                    index: index.checked_add(1)?,
                })
            }
            Some(_) => None,
        }
    }

    /// The event id that resumes here (the inverse of [`Position::after_event_id`]).
    pub fn resume_id(&self) -> String {
        match self.index {
            0 => (self.slot.saturating_sub(1)).to_string(),
            index => format!("{}.{}", self.slot, index - 1),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.resume_id())
    }
}

/// One write, ready to send to any stream whose patterns match its key.
#[derive(Debug)]
pub struct FeedEvent {
    /// Where the write is.
    pub slot: Slot,
    /// Its command index in the slot.
    pub index: u32,
    /// How many commands the slot holds (for the id: a plain slot when it is one).
    pub command_count: u32,
    /// The key written (matched against patterns).
    pub key: String,
    /// The SSE data: `{"key","value","slot"}`.
    pub data: String,
}

impl FeedEvent {
    fn position(&self) -> Position {
        Position {
            slot: self.slot,
            index: self.index,
        }
    }

    /// The SSE id: the slot when the slot holds this one write, else `slot.index`.
    pub fn id(&self) -> String {
        if self.command_count <= 1 {
            self.slot.to_string()
        } else {
            format!("{}.{}", self.slot, self.index)
        }
    }

    /// Where a stream stands after delivering this event.
    pub fn next_position(&self) -> Position {
        if self.index + 1 >= self.command_count {
            Position::slot_start(self.slot + 1)
        } else {
            Position {
                slot: self.slot,
                index: self.index + 1,
            }
        }
    }

    fn size_bytes(&self) -> usize {
        self.data.len() + self.key.len() + 64
    }
}

/// The events of `slots`, in order.
pub fn events_of(slots: Vec<AppliedSlot>) -> Vec<Arc<FeedEvent>> {
    let mut events = Vec::new();
    for applied in slots {
        for write in applied.writes {
            let data = json!({"key": write.key, "value": write.value, "slot": applied.slot});
            events.push(Arc::new(FeedEvent {
                slot: applied.slot,
                index: write.index,
                command_count: applied.command_count,
                key: write.key,
                data: data.to_string(),
            }));
        }
    }
    events
}

/// Why a joined stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// Its queue filled up: the subscriber reads slower than writes arrive.
    Lagged,
    /// The learners no longer hold the slots this stream needs next.
    TooOld {
        /// The oldest slot still held.
        oldest_available_slot: Slot,
    },
}

struct QueueState {
    events: VecDeque<Arc<FeedEvent>>,
    bytes: usize,
    /// Every matching write in slots `<= delivered_through` is in `events` or was taken.
    delivered_through: Slot,
    end: Option<StreamEnd>,
}

/// The bounded queue between the feed and one joined stream.
pub struct StreamQueue {
    patterns: Arc<Vec<Pattern>>,
    /// The first position this stream wants (it may have caught up past the feed).
    start: Position,
    limits: BufferLimits,
    state: Mutex<QueueState>,
    /// Woken when events arrive, the position moves or the stream ends (one waiter).
    changed: Notify,
}

/// What a joined stream takes from its queue.
pub enum QueueItem {
    /// The next write.
    Event(Arc<FeedEvent>),
    /// Nothing queued; every matching write through this slot was delivered.
    Idle(Slot),
    /// The queue ended (after everything queued before was taken).
    End(StreamEnd),
}

impl StreamQueue {
    fn new(patterns: Arc<Vec<Pattern>>, start: Position, limits: BufferLimits) -> Arc<StreamQueue> {
        Arc::new(StreamQueue {
            patterns,
            start,
            limits,
            state: Mutex::new(QueueState {
                events: VecDeque::new(),
                bytes: 0,
                delivered_through: start.slot.saturating_sub(1),
                end: None,
            }),
            changed: Notify::new(),
        })
    }

    /// Queues the matching `events`, then records that slots before `next_slot` are all
    /// in. Returns false once the stream has ended (it no longer takes events).
    fn offer(&self, events: &[Arc<FeedEvent>], next_slot: Slot) -> bool {
        let mut state = lock(&self.state);
        if state.end.is_some() {
            return false;
        }
        for event in events {
            if event.position() < self.start || !any_matches(&self.patterns, &event.key) {
                continue;
            }
            let size = event.size_bytes();
            if state.events.len() >= self.limits.events
                || state.bytes + size > self.limits.bytes && !state.events.is_empty()
            {
                state.end = Some(StreamEnd::Lagged);
                drop(state);
                self.changed.notify_one();
                return false;
            }
            state.bytes += size;
            state.events.push_back(Arc::clone(event));
        }
        state.delivered_through = state.delivered_through.max(next_slot.saturating_sub(1));
        drop(state);
        self.changed.notify_one();
        true
    }

    fn end(&self, end: StreamEnd) {
        lock(&self.state).end.get_or_insert(end);
        self.changed.notify_one();
    }

    /// The next item, without waiting.
    pub fn take(&self) -> QueueItem {
        let mut state = lock(&self.state);
        if let Some(event) = state.events.pop_front() {
            state.bytes -= event.size_bytes();
            return QueueItem::Event(event);
        }
        match &state.end {
            Some(end) => QueueItem::End(end.clone()),
            None => QueueItem::Idle(state.delivered_through),
        }
    }

    /// Waits until something may have changed (or `deadline`).
    pub async fn changed_or(&self, deadline: Instant) {
        let _ = tokio::time::timeout_at(deadline, self.changed.notified()).await;
    }

    /// How many events wait in the queue.
    pub fn len(&self) -> usize {
        lock(&self.state).events.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The learner stream the feed follows.
struct Upstream {
    learner: NodeId,
    stream_id: u64,
    last_heard: Instant,
}

struct FeedState {
    upstream: Option<Upstream>,
    /// The first slot the feed has not received (0 until a learner named its position).
    next_slot: Slot,
    /// The highest applied slot a learner reported.
    applied_slot: Slot,
    /// Joined streams, by a local id.
    streams: HashMap<u64, Arc<StreamQueue>>,
    /// Learners that no longer hold `next_slot`, with the oldest slot each still holds.
    refused_by: BTreeMap<NodeId, Slot>,
    /// Event streams open (joined or catching up); the learner stream runs while any is.
    interested: usize,
    /// When the last event stream closed.
    idle_since: Option<Instant>,
    /// Rotates the choice of learner.
    turn: usize,
}

/// The answer to a catch-up fetch.
pub enum Fetched {
    /// The writes of `[from_slot, to_slot)` (an empty range: the learner is not there yet).
    Applied {
        /// One past the last slot covered.
        to_slot: Slot,
        /// The writes.
        events: Vec<Arc<FeedEvent>>,
    },
    /// No learner holds the slot any more; the oldest slot one does.
    TooOld {
        /// The oldest slot a learner still holds.
        oldest_available_slot: Slot,
    },
    /// No learner answered (none connected, or all silent).
    Unavailable,
}

/// The change feed of one client API.
pub struct Feed {
    network: OnceLock<Network>,
    state: Mutex<FeedState>,
    fetches: Mutex<HashMap<u64, oneshot::Sender<(NodeId, Message)>>>,
    next_id: AtomicU64,
    limits: BufferLimits,
}

impl Feed {
    /// A feed whose joined streams queue at most `limits`; it starts working once
    /// [`Feed::attach`] gives it the network.
    pub fn new(limits: BufferLimits) -> Feed {
        assert!(
            limits.events >= 1 && limits.bytes >= 1,
            "a queue holds something"
        );
        Feed {
            network: OnceLock::new(),
            state: Mutex::new(FeedState {
                upstream: None,
                next_slot: 0,
                applied_slot: 0,
                streams: HashMap::new(),
                refused_by: BTreeMap::new(),
                interested: 0,
                idle_since: None,
                turn: 0,
            }),
            fetches: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            limits,
        }
    }

    /// Gives the feed the client API's network and starts keeping its learner stream.
    pub fn attach(self: &Arc<Self>, network: Network) {
        if self.network.set(network).is_err() {
            return;
        }
        let feed = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(MAINTAIN_INTERVAL);
            loop {
                interval.tick().await;
                match feed.upgrade() {
                    Some(feed) => feed.maintain(),
                    None => return,
                }
            }
        });
    }

    /// Whether `message` is for the feed (the network hands it over instead of the mailbox).
    pub fn handles(message: &Message) -> bool {
        matches!(
            message,
            Message::Applied { .. } | Message::SubscriptionTooOld { .. }
        )
    }

    /// A link event from the network.
    pub fn on_link(&self, inbound: &Inbound) {
        let mut state = lock(&self.state);
        match inbound {
            Inbound::Disconnected(node) => {
                if matches!(&state.upstream, Some(upstream) if upstream.learner == *node) {
                    tracing::info!(learner = %node, "the learner feeding subscriptions disconnected; switching");
                    state.upstream = None;
                    self.subscribe_upstream(&mut state);
                }
                state.refused_by.remove(node);
            }
            Inbound::Connected(node)
                if node.role == Role::Learner
                    && state.upstream.is_none()
                    && self.wanted(&state) =>
            {
                self.subscribe_upstream(&mut state);
            }
            _ => {}
        }
    }

    /// An `Applied` or `SubscriptionTooOld` from learner `from`.
    pub fn deliver(&self, from: NodeId, message: Message) {
        let stream_id = match &message {
            Message::Applied { stream_id, .. } | Message::SubscriptionTooOld { stream_id, .. } => {
                *stream_id
            }
            _ => return,
        };
        if let Some(waiter) = lock(&self.fetches).remove(&stream_id) {
            let _ = waiter.send((from, message));
            return;
        }
        let mut state = lock(&self.state);
        let current = matches!(&state.upstream,
            Some(upstream) if upstream.stream_id == stream_id && upstream.learner == from);
        if !current {
            drop(state);
            // A stream the feed gave up (or a fetch answered too late): stop its pushes.
            if matches!(message, Message::Applied { .. }) {
                self.send(from, Message::Unsubscribe { stream_id });
            }
            return;
        }
        match message {
            Message::Applied {
                from_slot,
                to_slot,
                slots,
                applied_slot,
                ..
            } => self.on_applied(&mut state, from_slot, to_slot, slots, applied_slot),
            Message::SubscriptionTooOld {
                oldest_available_slot,
                ..
            } => self.on_too_old(&mut state, from, oldest_available_slot),
            _ => {}
        }
    }

    fn on_applied(
        &self,
        state: &mut FeedState,
        from_slot: Slot,
        to_slot: Slot,
        slots: Vec<AppliedSlot>,
        applied_slot: Slot,
    ) {
        if let Some(upstream) = &mut state.upstream {
            upstream.last_heard = Instant::now();
        }
        state.applied_slot = state.applied_slot.max(applied_slot);
        if state.next_slot == 0 {
            state.next_slot = from_slot.max(1); // the first push names the position
        }
        if from_slot > state.next_slot {
            // A push was lost (a full queue on the way): ask again from where the feed is.
            tracing::warn!(
                from_slot,
                expected_slot = state.next_slot,
                "a push of applied slots is missing; subscribing again"
            );
            self.abandon_upstream(state);
            self.subscribe_upstream(state);
            return;
        }
        state.refused_by.clear();
        if to_slot <= state.next_slot {
            return; // a heartbeat, or slots already received
        }
        let next_slot = state.next_slot;
        let fresh: Vec<AppliedSlot> = slots
            .into_iter()
            .filter(|applied| applied.slot >= next_slot)
            .collect();
        let events = events_of(fresh);
        state.next_slot = to_slot;
        state
            .streams
            .retain(|_, queue| queue.offer(&events, to_slot));
    }

    fn on_too_old(&self, state: &mut FeedState, learner: NodeId, oldest_available_slot: Slot) {
        state.upstream = None;
        state.refused_by.insert(learner, oldest_available_slot);
        let learners = self.connected_learners();
        // A learner that is not connected might still hold the slot: only a refusal by
        // every learner there is, with at least one there, ends the streams.
        let everyone_refused = !learners.is_empty()
            && learners
                .iter()
                .all(|learner| state.refused_by.contains_key(learner));
        if everyone_refused {
            // No learner holds the next slot any more (they all moved past it by
            // snapshots): the joined streams cannot continue without a gap, so they end
            // saying so, and the feed starts again from where the learners are.
            let oldest = state
                .refused_by
                .values()
                .copied()
                .min()
                .unwrap_or(oldest_available_slot);
            tracing::warn!(
                next_slot = state.next_slot,
                oldest_available_slot = oldest,
                "no learner holds the next slot of the feed; its streams end as too old"
            );
            for (_, queue) in state.streams.drain() {
                queue.end(StreamEnd::TooOld {
                    oldest_available_slot: oldest,
                });
            }
            state.next_slot = 0;
            state.refused_by.clear();
        }
        self.subscribe_upstream(state);
    }

    /// Checks the learner stream: replaced when its learner is gone or silent, opened when
    /// streams need it, closed after the last stream has been gone a while.
    fn maintain(&self) {
        let mut state = lock(&self.state);
        let connected = self.connected_learners();
        let stale = match &state.upstream {
            Some(upstream) => {
                !connected.contains(&upstream.learner)
                    || upstream.last_heard.elapsed() > UPSTREAM_SILENCE
            }
            None => false,
        };
        if stale {
            tracing::info!("the learner feeding subscriptions went silent; switching");
            self.abandon_upstream(&mut state);
        }
        let wanted = self.wanted(&state);
        if !wanted && state.upstream.is_some() {
            self.abandon_upstream(&mut state);
            state.next_slot = 0; // nobody listens: the position is no longer followed
        }
        if wanted && state.upstream.is_none() {
            self.subscribe_upstream(&mut state);
        }
    }

    fn wanted(&self, state: &FeedState) -> bool {
        state.interested > 0
            || matches!(state.idle_since, Some(since) if since.elapsed() < IDLE_GRACE)
    }

    /// Opens the learner stream at a connected learner (one that did not refuse the
    /// position), from `next_slot`.
    fn subscribe_upstream(&self, state: &mut FeedState) {
        let mut learners = self.connected_learners();
        learners.retain(|learner| !state.refused_by.contains_key(learner));
        if learners.is_empty() {
            return;
        }
        state.turn += 1;
        let learner = learners[state.turn % learners.len()];
        let stream_id = self.fresh_id();
        let subscribe = Message::Subscribe {
            stream_id,
            from_slot: state.next_slot,
        };
        if self.send(learner, subscribe) {
            tracing::debug!(%learner, stream_id, from_slot = state.next_slot, "subscribed to a learner");
            state.upstream = Some(Upstream {
                learner,
                stream_id,
                last_heard: Instant::now(),
            });
        }
    }

    fn abandon_upstream(&self, state: &mut FeedState) {
        if let Some(upstream) = state.upstream.take() {
            self.send(
                upstream.learner,
                Message::Unsubscribe {
                    stream_id: upstream.stream_id,
                },
            );
        }
    }

    /// Registers an open event stream (the learner stream runs while any is); dropping the
    /// returned guard unregisters it.
    pub fn interest(self: &Arc<Self>) -> Interest {
        let mut state = lock(&self.state);
        state.interested += 1;
        state.idle_since = None;
        if state.upstream.is_none() {
            self.subscribe_upstream(&mut state);
        }
        Interest {
            feed: Arc::clone(self),
        }
    }

    /// Joins a stream that needs `start` next (None: from wherever the feed is) to the
    /// feed, if the feed has not moved past it; else returns None and the stream must
    /// catch up first. Also None while the feed's position is unknown.
    pub fn join(
        &self,
        patterns: &Arc<Vec<Pattern>>,
        start: Option<Position>,
    ) -> Option<(Arc<StreamQueue>, Position)> {
        let mut state = lock(&self.state);
        if state.next_slot == 0 {
            return None;
        }
        let start = start.unwrap_or(Position::slot_start(state.next_slot));
        if start.slot < state.next_slot {
            return None;
        }
        let queue = StreamQueue::new(Arc::clone(patterns), start, self.limits);
        let id = self.fresh_id();
        state.streams.insert(id, Arc::clone(&queue));
        Some((queue, start))
    }

    /// How many event streams are open (joined or catching up).
    pub fn open_streams(&self) -> usize {
        lock(&self.state).interested
    }

    /// The highest applied slot a learner reported.
    pub fn applied_slot(&self) -> Slot {
        lock(&self.state).applied_slot
    }

    /// The first slot the feed has not received (0 while unknown).
    pub fn next_slot(&self) -> Slot {
        lock(&self.state).next_slot
    }

    /// Fetches the writes of slots from `from_slot` on from a learner's history, trying the
    /// connected learners in turn (starting at `turn`).
    pub async fn fetch(&self, from_slot: Slot, turn: usize) -> Fetched {
        let learners = self.connected_learners();
        let mut oldest_available: Option<Slot> = None;
        let mut any_answered_empty = false;
        for attempt in 0..learners.len() {
            let learner = learners[(turn + attempt) % learners.len()];
            let stream_id = self.fresh_id();
            let (sender, receiver) = oneshot::channel();
            lock(&self.fetches).insert(stream_id, sender);
            let asked = self.send(
                learner,
                Message::ReadApplied {
                    stream_id,
                    from_slot,
                    limit: FETCH_SLOTS,
                },
            );
            let answer = if asked {
                tokio::time::timeout(FETCH_TIMEOUT, receiver).await.ok()
            } else {
                None
            };
            lock(&self.fetches).remove(&stream_id);
            match answer {
                Some(Ok((
                    _,
                    Message::Applied {
                        from_slot: answered_from,
                        to_slot,
                        slots,
                        applied_slot,
                        ..
                    },
                ))) if answered_from == from_slot => {
                    {
                        let mut state = lock(&self.state);
                        state.applied_slot = state.applied_slot.max(applied_slot);
                    }
                    if to_slot > from_slot {
                        return Fetched::Applied {
                            to_slot,
                            events: events_of(slots),
                        };
                    }
                    any_answered_empty = true; // that learner has not applied it yet
                }
                Some(Ok((
                    _,
                    Message::SubscriptionTooOld {
                        oldest_available_slot,
                        ..
                    },
                ))) => {
                    oldest_available =
                        Some(oldest_available.map_or(oldest_available_slot, |oldest| {
                            oldest.min(oldest_available_slot)
                        }));
                }
                _ => {}
            }
        }
        match oldest_available {
            Some(oldest_available_slot) if !any_answered_empty => Fetched::TooOld {
                oldest_available_slot,
            },
            _ if any_answered_empty => Fetched::Applied {
                to_slot: from_slot,
                events: Vec::new(),
            },
            _ => Fetched::Unavailable,
        }
    }

    fn connected_learners(&self) -> Vec<NodeId> {
        self.network
            .get()
            .map(|network| network.connected_nodes(Role::Learner))
            .unwrap_or_default()
    }

    fn send(&self, to: NodeId, message: Message) -> bool {
        self.network
            .get()
            .is_some_and(|network| network.send(to, message))
    }

    fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// An open event stream's claim on the feed (see [`Feed::interest`]).
pub struct Interest {
    feed: Arc<Feed>,
}

impl Drop for Interest {
    fn drop(&mut self) {
        let mut state = lock(&self.feed.state);
        state.interested -= 1;
        if state.interested == 0 {
            state.idle_since = Some(Instant::now());
        }
    }
}

/// Leaves the feed when a joined stream closes.
pub struct Joined {
    /// The stream's queue.
    pub queue: Arc<StreamQueue>,
}

impl Drop for Joined {
    fn drop(&mut self) {
        // The feed drops a queue the next time it offers it events after it ended; an
        // abandoned one is ended here so that happens.
        self.queue.end(StreamEnd::Lagged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::message::AppliedWrite;

    fn patterns(texts: &[&str]) -> Arc<Vec<Pattern>> {
        Arc::new(
            texts
                .iter()
                .map(|text| Pattern::parse(text).unwrap())
                .collect(),
        )
    }

    fn slot(slot: Slot, keys: &[&str]) -> AppliedSlot {
        AppliedSlot {
            slot,
            command_count: keys.len() as u32,
            writes: keys
                .iter()
                .enumerate()
                .map(|(index, key)| AppliedWrite {
                    index: index as u32,
                    key: key.to_string(),
                    value: format!("v{slot}.{index}"),
                })
                .collect(),
        }
    }

    #[test]
    fn event_ids_name_the_slot_or_the_write_in_a_batched_slot_and_resume_after_it() {
        let events = events_of(vec![slot(4, &["a"]), slot(5, &["a", "b", "c"])]);
        let ids: Vec<String> = events.iter().map(|event| event.id()).collect();
        assert_eq!(ids, ["4", "5.0", "5.1", "5.2"]);
        assert_eq!(Position::after_event_id("4"), Some(Position::slot_start(5)));
        assert_eq!(
            Position::after_event_id("5.1"),
            Some(Position { slot: 5, index: 2 })
        );
        assert_eq!(events[0].next_position(), Position::slot_start(5));
        assert_eq!(events[3].next_position(), Position::slot_start(6));
        for text in [
            "",
            "x",
            "5.",
            ".1",
            "5.1.2",
            "-1",
            "5.x",
            "99999999999999999999",
        ] {
            assert_eq!(Position::after_event_id(text), None, "{text:?}");
        }
        for position in [
            Position::slot_start(1),
            Position::slot_start(9),
            Position { slot: 5, index: 2 },
        ] {
            assert_eq!(
                Position::after_event_id(&position.resume_id()),
                Some(position)
            );
        }
    }

    #[test]
    fn a_queue_takes_only_matching_writes_from_its_start_and_reports_its_position() {
        let limits = BufferLimits {
            events: 10,
            bytes: 1 << 20,
        };
        let queue = StreamQueue::new(patterns(&["a*"]), Position { slot: 5, index: 1 }, limits);
        let events = events_of(vec![slot(4, &["a"]), slot(5, &["a", "ab", "b"])]);
        assert!(queue.offer(&events, 8));
        let mut taken = Vec::new();
        while let QueueItem::Event(event) = queue.take() {
            taken.push(event.id());
        }
        assert_eq!(taken, ["5.1"]);
        assert!(matches!(queue.take(), QueueItem::Idle(7)));
    }

    #[test]
    fn a_full_queue_ends_the_stream_as_lagged_after_what_it_holds() {
        let limits = BufferLimits {
            events: 2,
            bytes: 1 << 20,
        };
        let queue = StreamQueue::new(patterns(&["*"]), Position::slot_start(1), limits);
        let events = events_of(vec![slot(1, &["a"]), slot(2, &["b"]), slot(3, &["c"])]);
        assert!(!queue.offer(&events, 4), "the third write does not fit");
        assert!(matches!(queue.take(), QueueItem::Event(event) if event.slot == 1));
        assert!(matches!(queue.take(), QueueItem::Event(event) if event.slot == 2));
        assert!(matches!(queue.take(), QueueItem::End(StreamEnd::Lagged)));
        assert!(
            !queue.offer(&events, 4),
            "an ended queue takes nothing more"
        );
    }

    #[test]
    fn the_byte_limit_bounds_a_queue_too() {
        let limits = BufferLimits {
            events: 1000,
            bytes: 300,
        };
        let queue = StreamQueue::new(patterns(&["*"]), Position::slot_start(1), limits);
        let events: Vec<Arc<FeedEvent>> = (1..=10)
            .flat_map(|number| events_of(vec![slot(number, &["key"])]))
            .collect();
        assert!(!queue.offer(&events, 11));
        assert!(queue.len() < 10, "{} events queued", queue.len());
    }

    #[tokio::test]
    async fn the_feed_follows_pushes_and_resubscribes_when_one_is_missing() {
        let feed = Arc::new(Feed::new(BufferLimits {
            events: 100,
            bytes: 1 << 20,
        }));
        let learner = NodeId::learner(1);
        {
            let mut state = lock(&feed.state);
            state.upstream = Some(Upstream {
                learner,
                stream_id: 1,
                last_heard: Instant::now(),
            });
        }
        let push = |from_slot, to_slot, slots| Message::Applied {
            stream_id: 1,
            from_slot,
            to_slot,
            slots,
            applied_slot: to_slot - 1,
        };
        feed.deliver(learner, push(3, 3, vec![]));
        assert_eq!(feed.next_slot(), 3, "the first push names the position");
        let (queue, start) = feed.join(&patterns(&["k*"]), None).unwrap();
        assert_eq!(start, Position::slot_start(3));
        assert!(
            feed.join(&patterns(&["k*"]), Some(Position::slot_start(2)))
                .is_none(),
            "a stream behind the feed catches up first"
        );
        feed.deliver(learner, push(3, 5, vec![slot(3, &["k1"]), slot(4, &["x"])]));
        feed.deliver(learner, push(4, 6, vec![slot(4, &["x"]), slot(5, &["k2"])]));
        assert_eq!(feed.next_slot(), 6);
        let mut taken = Vec::new();
        while let QueueItem::Event(event) = queue.take() {
            taken.push(event.id());
        }
        assert_eq!(taken, ["3", "5"], "slot 4 was pushed twice, delivered once");
        // A push that skips slot 6 means one was lost: the feed does not jump the gap.
        feed.deliver(learner, push(7, 8, vec![slot(7, &["k3"])]));
        assert_eq!(feed.next_slot(), 6);
        assert!(matches!(queue.take(), QueueItem::Idle(5)));
        assert!(
            lock(&feed.state).upstream.is_none(),
            "the feed gave up that stream (no learner is connected to resubscribe)"
        );
    }
}
