//! The downstream side of the change feed: the writes the learners apply, slot by slot,
//! fanned out to the event streams of subscribers.
//!
//! Which learner stream the client API follows, and the next slot it needs, is protocol
//! state, kept by the core ([`crate::core`]); what it receives comes here as slots to offer
//! every joined stream. Learners are the source because they apply decided slots in order
//! and apply each request id once: a subscriber sees exactly the writes that changed the
//! state, in slot order.
//!
//! A stream that starts behind the feed (it resumes from an older position) first catches
//! up on its own, fetching past slots from a learner's history (`ReadApplied`) one chunk at
//! a time as its subscriber reads them, then joins the feed. Joined, it has a bounded queue:
//! the feed never waits for a subscriber, and a stream whose queue fills up is ended with
//! the position to resume from.

use crate::pattern::{any_matches, Pattern};
use crate::sync::lock;
use common::ballot::Slot;
use common::message::AppliedSlot;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::time::Instant;

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

/// The joined streams of one client API, offered what the feed receives.
pub struct FanOut {
    streams: HashMap<u64, Arc<StreamQueue>>,
    next_id: u64,
    limits: BufferLimits,
}

impl FanOut {
    /// No stream yet; each joined stream's queue holds at most `limits`.
    pub fn new(limits: BufferLimits) -> FanOut {
        assert!(
            limits.events >= 1 && limits.bytes >= 1,
            "a queue holds something"
        );
        FanOut {
            streams: HashMap::new(),
            next_id: 1,
            limits,
        }
    }

    /// Joins a stream that needs `start` next to a feed at `next_slot` (0: unknown), if
    /// the feed has not moved past it (None: from wherever the feed is); else None and
    /// the stream must catch up first.
    pub fn join(
        &mut self,
        next_slot: Slot,
        patterns: &Arc<Vec<Pattern>>,
        start: Option<Position>,
    ) -> Option<(Arc<StreamQueue>, Position)> {
        if next_slot == 0 {
            return None;
        }
        let start = start.unwrap_or(Position::slot_start(next_slot));
        if start.slot < next_slot {
            return None;
        }
        let queue = StreamQueue::new(Arc::clone(patterns), start, self.limits);
        self.next_id += 1;
        self.streams.insert(self.next_id, Arc::clone(&queue));
        Some((queue, start))
    }

    /// Offers the writes of `slots` to every joined stream; every slot before
    /// `next_slot` is now in. Streams that ended are dropped.
    pub fn offer(&mut self, slots: Vec<AppliedSlot>, next_slot: Slot) {
        if self.streams.is_empty() {
            return;
        }
        let events = events_of(slots);
        self.streams
            .retain(|_, queue| queue.offer(&events, next_slot));
    }

    /// Ends every joined stream as too old: the learners no longer hold its next slot.
    pub fn end_all_too_old(&mut self, oldest_available_slot: Slot) {
        for (_, queue) in self.streams.drain() {
            queue.end(StreamEnd::TooOld {
                oldest_available_slot,
            });
        }
    }

    /// How many streams are joined.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is joined.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
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
}
