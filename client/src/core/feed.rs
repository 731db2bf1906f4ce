//! The upstream side of the change feed: which learner stream the client API follows, the
//! next slot it needs, and the catch-up fetches of streams behind it.
//!
//! One learner stream (`Subscribe` → `Applied` pushes) feeds every event stream of this
//! client API. Each push covers a slot range `[from_slot, to_slot)` completely, so the feed
//! knows the next slot it needs: a push that does not start there means one was lost, and
//! the feed subscribes again from that slot, at the same learner or another one. A learner
//! that disconnects or stays silent is replaced the same way, so nothing is skipped and
//! nothing repeated across a learner restart. What the feed receives leaves as
//! [`Effect::FeedApplied`]; the queues of the event streams live in the service.

use super::{Answer, AnswerKey, ClientCore, Effect, FetchAnswer, Token};
use common::ballot::Slot;
use common::message::{AppliedSlot, Message};
use common::node::NodeId;
use std::collections::BTreeMap;

/// The change feed's timings, in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedOptions {
    /// How often the learner stream is checked.
    pub maintain_interval_ticks: u64,
    /// A learner stream silent this long is replaced (learners send a heartbeat every
    /// 500 ms).
    pub upstream_silence_ticks: u64,
    /// After the last event stream closed, the learner stream is kept this long.
    pub idle_grace_ticks: u64,
    /// How long a catch-up fetch waits for a learner's answer.
    pub fetch_timeout_ticks: u64,
    /// Slots asked for per catch-up fetch.
    pub fetch_slots: u32,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            maintain_interval_ticks: super::ticks(100),
            upstream_silence_ticks: super::ticks(3_000),
            idle_grace_ticks: super::ticks(30_000),
            fetch_timeout_ticks: super::ticks(2_000),
            fetch_slots: 1024,
        }
    }
}

/// The learner stream the feed follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Upstream {
    learner: NodeId,
    stream_id: u64,
    last_heard: u64,
}

/// A catch-up fetch: asks the connected learners in turn until one holds the slots.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fetch {
    token: Token,
    /// The learner asked now.
    learner: NodeId,
    until: u64,
    /// The first slot wanted.
    from_slot: Slot,
    /// The learners still to ask, the next one last.
    remaining: Vec<NodeId>,
    /// The oldest slot a learner that no longer holds `from_slot` still holds.
    oldest_available: Option<Slot>,
    /// Whether a learner answered that it has not applied `from_slot` yet.
    answered_empty: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct FeedState {
    upstream: Option<Upstream>,
    /// The first slot the feed has not received (0 until a learner named its position).
    next_slot: Slot,
    /// The highest applied slot a learner reported.
    applied_slot: Slot,
    /// Learners that no longer hold `next_slot`, with the oldest slot each still holds.
    refused_by: BTreeMap<NodeId, Slot>,
    /// Event streams open (joined or catching up); the learner stream runs while any is.
    interested: usize,
    /// When the last event stream closed.
    idle_since: Option<u64>,
    /// Rotates the choice of learner.
    turn: usize,
    /// Catch-up fetches by stream id.
    fetches: BTreeMap<u64, Fetch>,
}

impl FeedState {
    pub(super) fn has_fetches(&self) -> bool {
        !self.fetches.is_empty()
    }
}

impl ClientCore {
    /// The learners connected now, in id order.
    pub fn connected_learners(&self) -> &[NodeId] {
        &self.learners
    }

    /// The proposers connected now, in id order.
    pub fn connected_proposers(&self) -> &[NodeId] {
        &self.proposers
    }

    /// The first slot the feed has not received (0 while unknown).
    pub fn feed_next_slot(&self) -> Slot {
        self.feed.next_slot
    }

    /// The highest applied slot a learner reported.
    pub fn feed_applied_slot(&self) -> Slot {
        self.feed.applied_slot
    }

    /// How many event streams are open (joined or catching up).
    pub fn feed_open_streams(&self) -> usize {
        self.feed.interested
    }

    /// An event stream opened: the learner stream runs while any is open.
    pub fn feed_stream_opened(&mut self) -> Vec<Effect> {
        self.feed.interested += 1;
        self.feed.idle_since = None;
        if self.feed.upstream.is_none() {
            self.subscribe_upstream();
        }
        std::mem::take(&mut self.effects)
    }

    /// An event stream closed.
    pub fn feed_stream_closed(&mut self) {
        self.feed.interested = self.feed.interested.saturating_sub(1);
        if self.feed.interested == 0 {
            self.feed.idle_since = Some(self.now);
        }
    }

    /// Fetches the writes of slots from `from_slot` on from a learner's history, asking
    /// the connected learners in turn (starting at the `turn`-th) until one holds them
    /// (`ReadApplied`); [`Answer::Fetched`] with `token` brings the verdict: the writes
    /// (an empty range when a learner has not applied `from_slot` yet), too old for every
    /// learner that answered, or unavailable (none connected, or all silent).
    pub fn fetch(&mut self, token: Token, from_slot: Slot, turn: usize) -> Vec<Effect> {
        let count = self.learners.len();
        let mut remaining: Vec<NodeId> = (0..count)
            .map(|index| self.learners[(turn + index) % count.max(1)])
            .collect();
        remaining.reverse();
        let fetch = Fetch {
            token,
            learner: NodeId::learner(0),
            until: 0,
            from_slot,
            remaining,
            oldest_available: None,
            answered_empty: false,
        };
        self.fetch_from_next_learner(fetch);
        std::mem::take(&mut self.effects)
    }

    /// Asks the next learner of `fetch`, or gives its verdict when none is left.
    fn fetch_from_next_learner(&mut self, mut fetch: Fetch) {
        let Some(learner) = fetch.remaining.pop() else {
            let verdict = match (fetch.oldest_available, fetch.answered_empty) {
                (_, true) => FetchAnswer::Applied {
                    to_slot: fetch.from_slot,
                    slots: Vec::new(),
                },
                (Some(oldest_available_slot), false) => FetchAnswer::TooOld {
                    oldest_available_slot,
                },
                (None, false) => FetchAnswer::Unavailable,
            };
            self.answer(fetch.token, Answer::Fetched(verdict));
            return;
        };
        let stream_id = self.fresh_id();
        let from_slot = fetch.from_slot;
        fetch.learner = learner;
        fetch.until = self.now + self.options.feed.fetch_timeout_ticks;
        self.feed.fetches.insert(stream_id, fetch);
        self.send(
            learner,
            Message::ReadApplied {
                stream_id,
                from_slot,
                limit: self.options.feed.fetch_slots,
            },
        );
    }

    /// A learner answered `fetch`: the writes end it; otherwise the next learner is asked.
    fn on_fetch_answer(&mut self, mut fetch: Fetch, message: Message) {
        match message {
            Message::Applied {
                from_slot,
                to_slot,
                slots,
                applied_slot,
                ..
            } if from_slot == fetch.from_slot => {
                self.feed.applied_slot = self.feed.applied_slot.max(applied_slot);
                if to_slot > from_slot {
                    let answer = FetchAnswer::Applied { to_slot, slots };
                    self.answer(fetch.token, Answer::Fetched(answer));
                    return;
                }
                fetch.answered_empty = true; // that learner has not applied it yet
            }
            Message::SubscriptionTooOld {
                oldest_available_slot,
                ..
            } => {
                fetch.oldest_available = Some(
                    fetch
                        .oldest_available
                        .map_or(oldest_available_slot, |oldest| {
                            oldest.min(oldest_available_slot)
                        }),
                );
            }
            _ => {}
        }
        self.fetch_from_next_learner(fetch);
    }

    pub(super) fn feed_cancel_fetch(&mut self, token: Token) {
        self.feed.fetches.retain(|_, fetch| fetch.token != token);
    }

    pub(super) fn feed_on_message(&mut self, from: NodeId, message: Message) {
        let Some(AnswerKey::Stream(stream_id)) = AnswerKey::of(&message) else {
            return;
        };
        if !matches!(
            message,
            Message::Applied { .. } | Message::SubscriptionTooOld { .. }
        ) {
            return;
        }
        if let Some(fetch) = self.feed.fetches.remove(&stream_id) {
            self.on_fetch_answer(fetch, message);
            return;
        }
        let current = matches!(&self.feed.upstream,
            Some(upstream) if upstream.stream_id == stream_id && upstream.learner == from);
        if !current {
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
            } => self.on_applied(from_slot, to_slot, slots, applied_slot),
            Message::SubscriptionTooOld {
                oldest_available_slot,
                ..
            } => self.on_too_old(from, oldest_available_slot),
            _ => {}
        }
    }

    fn on_applied(
        &mut self,
        from_slot: Slot,
        to_slot: Slot,
        slots: Vec<AppliedSlot>,
        applied_slot: Slot,
    ) {
        let now = self.now;
        let feed = &mut self.feed;
        if let Some(upstream) = &mut feed.upstream {
            upstream.last_heard = now;
        }
        feed.applied_slot = feed.applied_slot.max(applied_slot);
        if feed.next_slot == 0 {
            feed.next_slot = from_slot.max(1); // the first push names the position
        }
        if from_slot > feed.next_slot {
            // A push was lost (a full queue on the way): ask again from where the feed is.
            self.abandon_upstream();
            self.subscribe_upstream();
            return;
        }
        feed.refused_by.clear();
        if to_slot <= feed.next_slot {
            return; // a heartbeat, or slots already received
        }
        let next_slot = feed.next_slot;
        let fresh: Vec<AppliedSlot> = slots
            .into_iter()
            .filter(|applied| applied.slot >= next_slot)
            .collect();
        feed.next_slot = to_slot;
        self.effects.push(Effect::FeedApplied {
            slots: fresh,
            next_slot: to_slot,
        });
    }

    fn on_too_old(&mut self, learner: NodeId, oldest_available_slot: Slot) {
        let feed = &mut self.feed;
        feed.upstream = None;
        feed.refused_by.insert(learner, oldest_available_slot);
        // A learner that is not connected might still hold the slot: only a refusal by
        // every learner there is, with at least one there, ends the streams.
        let everyone_refused = !self.learners.is_empty()
            && self
                .learners
                .iter()
                .all(|learner| feed.refused_by.contains_key(learner));
        if everyone_refused {
            // No learner holds the next slot any more (they all moved past it by
            // snapshots): the joined streams cannot continue without a gap, so they end
            // saying so, and the feed starts again from where the learners are.
            let oldest = feed
                .refused_by
                .values()
                .copied()
                .min()
                .unwrap_or(oldest_available_slot);
            feed.next_slot = 0;
            feed.refused_by.clear();
            self.effects.push(Effect::FeedTooOld {
                oldest_available_slot: oldest,
            });
        }
        self.subscribe_upstream();
    }

    pub(super) fn feed_on_learner_connected(&mut self) {
        if self.feed.upstream.is_none() && self.feed_wanted() {
            self.subscribe_upstream();
        }
    }

    pub(super) fn feed_on_disconnected(&mut self, node: NodeId) {
        if matches!(&self.feed.upstream, Some(upstream) if upstream.learner == node) {
            self.feed.upstream = None;
            self.subscribe_upstream();
        }
        self.feed.refused_by.remove(&node);
        let silent: Vec<u64> = self
            .feed
            .fetches
            .iter()
            .filter(|(_, fetch)| fetch.learner == node)
            .map(|(stream_id, _)| *stream_id)
            .collect();
        for stream_id in silent {
            self.fetch_silent(stream_id);
        }
    }

    pub(super) fn feed_on_unsent(&mut self, to: NodeId, stream_id: u64) {
        if matches!(&self.feed.upstream,
            Some(upstream) if upstream.stream_id == stream_id && upstream.learner == to)
        {
            self.feed.upstream = None; // the next check subscribes again
        }
        if self.feed.fetches.contains_key(&stream_id) {
            self.fetch_silent(stream_id);
        }
    }

    /// The learner asked by a fetch stayed silent or could not be asked: the next is.
    fn fetch_silent(&mut self, stream_id: u64) {
        if let Some(fetch) = self.feed.fetches.remove(&stream_id) {
            self.fetch_from_next_learner(fetch);
        }
    }

    pub(super) fn feed_tick(&mut self) {
        let now = self.now;
        let expired: Vec<u64> = self
            .feed
            .fetches
            .iter()
            .filter(|(_, fetch)| now >= fetch.until)
            .map(|(stream_id, _)| *stream_id)
            .collect();
        for stream_id in expired {
            self.fetch_silent(stream_id);
        }
        if now.is_multiple_of(self.options.feed.maintain_interval_ticks.max(1)) {
            self.maintain_upstream();
        }
    }

    /// Checks the learner stream: replaced when its learner is gone or silent, opened when
    /// streams need it, closed after the last stream has been gone a while.
    fn maintain_upstream(&mut self) {
        let stale = match &self.feed.upstream {
            Some(upstream) => {
                !self.learners.contains(&upstream.learner)
                    || self.now - upstream.last_heard > self.options.feed.upstream_silence_ticks
            }
            None => false,
        };
        if stale {
            self.abandon_upstream();
        }
        let wanted = self.feed_wanted();
        if !wanted && self.feed.upstream.is_some() {
            self.abandon_upstream();
            self.feed.next_slot = 0; // nobody listens: the position is no longer followed
        }
        if wanted && self.feed.upstream.is_none() {
            self.subscribe_upstream();
        }
    }

    fn feed_wanted(&self) -> bool {
        self.feed.interested > 0
            || matches!(self.feed.idle_since,
                Some(since) if self.now - since < self.options.feed.idle_grace_ticks)
    }

    /// Opens the learner stream at a connected learner (one that did not refuse the
    /// position), from `next_slot`.
    fn subscribe_upstream(&mut self) {
        let learners: Vec<NodeId> = self
            .learners
            .iter()
            .filter(|learner| !self.feed.refused_by.contains_key(learner))
            .copied()
            .collect();
        if learners.is_empty() {
            return;
        }
        self.feed.turn += 1;
        let learner = learners[self.feed.turn % learners.len()];
        let stream_id = self.fresh_id();
        self.send(
            learner,
            Message::Subscribe {
                stream_id,
                from_slot: self.feed.next_slot,
            },
        );
        self.feed.upstream = Some(Upstream {
            learner,
            stream_id,
            last_heard: self.now,
        });
    }

    fn abandon_upstream(&mut self) {
        if let Some(upstream) = self.feed.upstream.take() {
            self.send(
                upstream.learner,
                Message::Unsubscribe {
                    stream_id: upstream.stream_id,
                },
            );
        }
    }
}
