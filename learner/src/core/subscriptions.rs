//! Subscriptions: the change feed of the client APIs. A subscriber (`Subscribe`) is pushed
//! the writes of the retained slots it asked for, then those of each slot as it is applied
//! (`Applied`), in bounded chunks; `ReadApplied` pages through the same history on demand.
//! A position older than the history is refused (`SubscriptionTooOld`), never skipped.

use common::ballot::Slot;
use common::message::{AppliedSlot, AppliedWrite, Message};
use common::node::NodeId;
use common::value::Operation;
use std::collections::BTreeSet;

use super::{Effect, Learner, SYNC_BATCH_SLOTS};

/// An `Applied` message carries at most about this many bytes of keys and values (and at
/// least one slot), so that catching up a subscriber never builds one huge frame.
pub const APPLIED_CHUNK_BYTES: usize = 4 * 1024 * 1024;

impl Learner {
    pub(super) fn on_subscribe(
        &mut self,
        subscriber: NodeId,
        stream_id: u64,
        from_slot: Slot,
    ) -> Vec<Effect> {
        if from_slot != 0 && !self.plausible_slot_from(subscriber, "Subscribe", from_slot) {
            return Vec::new();
        }
        let next_slot = if from_slot == 0 {
            self.applied_slot + 1
        } else {
            from_slot
        };
        if next_slot <= self.applied_slot && next_slot < self.history_start {
            self.subscribers.remove(&(subscriber, stream_id));
            return vec![self.too_old(subscriber, stream_id)];
        }
        let mut effects = Vec::new();
        if next_slot > self.applied_slot {
            // Nothing to catch up: an empty push acknowledges the position.
            effects.push(self.applied_message(subscriber, stream_id, next_slot, next_slot));
        } else {
            self.push_range(subscriber, stream_id, next_slot, &mut effects);
        }
        let pushed_through = next_slot.max(self.applied_slot + 1);
        self.subscribers
            .insert((subscriber, stream_id), pushed_through);
        effects
    }

    pub(super) fn on_read_applied(
        &mut self,
        asker: NodeId,
        stream_id: u64,
        from_slot: Slot,
        limit: u32,
    ) -> Vec<Effect> {
        if from_slot != 0 && !self.plausible_slot_from(asker, "ReadApplied", from_slot) {
            return Vec::new();
        }
        let from_slot = from_slot.max(1);
        if from_slot <= self.applied_slot && from_slot < self.history_start {
            return vec![self.too_old(asker, stream_id)];
        }
        if from_slot > self.applied_slot {
            return vec![self.applied_message(asker, stream_id, from_slot, from_slot)];
        }
        let limit = u64::from(limit.max(1)).min(SYNC_BATCH_SLOTS);
        let end_slot = (self.applied_slot + 1).min(from_slot.saturating_add(limit));
        let (to_slot, slots) = self.applied_chunk(from_slot, end_slot);
        vec![Effect::Send {
            to: asker,
            message: Message::Applied {
                stream_id,
                from_slot,
                to_slot,
                slots,
                applied_slot: self.applied_slot,
            },
        }]
    }

    pub(super) fn too_old(&self, to: NodeId, stream_id: u64) -> Effect {
        Effect::Send {
            to,
            message: Message::SubscriptionTooOld {
                stream_id,
                oldest_available_slot: self.history_start,
                applied_slot: self.applied_slot,
            },
        }
    }

    /// An `Applied` message for `[from_slot, to_slot)`, with the writes of those slots.
    fn applied_message(
        &self,
        to: NodeId,
        stream_id: u64,
        from_slot: Slot,
        to_slot: Slot,
    ) -> Effect {
        let slots = (from_slot..to_slot)
            .filter(|slot| *slot <= self.applied_slot)
            .filter_map(|slot| self.applied_writes(slot))
            .collect();
        Effect::Send {
            to,
            message: Message::Applied {
                stream_id,
                from_slot,
                to_slot,
                slots,
                applied_slot: self.applied_slot,
            },
        }
    }

    /// Pushes the writes of slots `[from_slot, applied_slot]` to one subscriber, in
    /// messages of at most [`SYNC_BATCH_SLOTS`] slots and about [`APPLIED_CHUNK_BYTES`].
    fn push_range(&self, to: NodeId, stream_id: u64, from_slot: Slot, effects: &mut Vec<Effect>) {
        let mut next_slot = from_slot;
        while next_slot <= self.applied_slot {
            let end_slot = (self.applied_slot + 1).min(next_slot + SYNC_BATCH_SLOTS);
            let (to_slot, slots) = self.applied_chunk(next_slot, end_slot);
            effects.push(Effect::Send {
                to,
                message: Message::Applied {
                    stream_id,
                    from_slot: next_slot,
                    to_slot,
                    slots,
                    applied_slot: self.applied_slot,
                },
            });
            next_slot = to_slot;
        }
    }

    /// The writes of the applied slots from `from_slot` up to `end_slot` (excluded), cut
    /// short after about [`APPLIED_CHUNK_BYTES`]; returns where the chunk ends.
    fn applied_chunk(&self, from_slot: Slot, end_slot: Slot) -> (Slot, Vec<AppliedSlot>) {
        debug_assert!(
            from_slot >= self.history_start && end_slot <= self.applied_slot + 1,
            "history: only retained applied slots are sent"
        );
        let mut slots = Vec::new();
        let mut bytes = 0;
        let mut slot = from_slot;
        while slot < end_slot && (slot == from_slot || bytes < APPLIED_CHUNK_BYTES) {
            if let Some(applied) = self.applied_writes(slot) {
                bytes += applied
                    .writes
                    .iter()
                    .map(|write| write.key.len() + write.value.len())
                    .sum::<usize>();
                slots.push(applied);
            }
            slot += 1;
        }
        (slot, slots)
    }

    /// The commands of applied `slot` that took effect (a request already applied in an
    /// earlier slot, or earlier in the same batch, did not), or None if there were none.
    fn applied_writes(&self, slot: Slot) -> Option<AppliedSlot> {
        let value = self.decided.get(&slot)?;
        let commands = value.commands();
        let mut seen = BTreeSet::new();
        let writes: Vec<AppliedWrite> = commands
            .iter()
            .enumerate()
            .filter(|(_, command)| {
                // An id forgotten since (more than the window ago) took effect here as far
                // as anyone can tell: a retry is decided within the window.
                self.applied_requests
                    .slot_of(&command.request_id)
                    .is_none_or(|applied| applied == slot)
                    && seen.insert(command.request_id)
            })
            .map(|(index, command)| {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                match &command.operation {
                    Operation::Put { key, value } | Operation::UnversionedPut { key, value } => {
                        AppliedWrite {
                            index,
                            key: key.clone(),
                            value: value.clone(),
                        }
                    }
                }
            })
            .collect();
        (!writes.is_empty()).then_some(AppliedSlot {
            slot,
            command_count: u32::try_from(commands.len()).unwrap_or(u32::MAX),
            writes,
        })
    }

    /// Pushes what each subscriber has not been sent yet of the applied slots.
    pub(super) fn push_to_subscribers(&mut self, effects: &mut Vec<Effect>) {
        let applied_slot = self.applied_slot;
        for ((subscriber, stream_id), next_slot) in &self.subscribers {
            if *next_slot <= applied_slot {
                self.push_range(*subscriber, *stream_id, *next_slot, effects);
            }
        }
        for next_slot in self.subscribers.values_mut() {
            *next_slot = (*next_slot).max(applied_slot + 1);
        }
    }

    /// An empty push to every subscriber: the stream is alive, and where it stands.
    pub(super) fn heartbeat_subscribers(&self, effects: &mut Vec<Effect>) {
        for ((subscriber, stream_id), next_slot) in &self.subscribers {
            effects.push(Effect::Send {
                to: *subscriber,
                message: Message::Applied {
                    stream_id: *stream_id,
                    from_slot: *next_slot,
                    to_slot: *next_slot,
                    slots: Vec::new(),
                    applied_slot: self.applied_slot,
                },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;

    #[test]
    fn a_subscriber_gets_the_retained_slots_then_each_slot_as_it_is_applied() {
        let mut learner = applied_learner(LearnerOptions::new(1, 2), 3);
        let client = NodeId::client(1);
        let effects = learner.handle(
            client,
            Message::Subscribe {
                stream_id: 9,
                from_slot: 2,
            },
        );
        assert_eq!(
            applied_messages(&effects, client),
            vec![Message::Applied {
                stream_id: 9,
                from_slot: 2,
                to_slot: 4,
                slots: vec![applied_write(2, 1), applied_write(3, 2)],
                applied_slot: 3,
            }],
            "slot 3's retry of slot 1's request is not a write"
        );
        let value = write(4, "k4", "v4");
        vote(&mut learner, 1, 4, Ballot::new(1, 1), &value);
        let effects = vote(&mut learner, 2, 4, Ballot::new(1, 1), &value);
        assert_eq!(
            applied_messages(&effects, client),
            vec![Message::Applied {
                stream_id: 9,
                from_slot: 4,
                to_slot: 5,
                slots: vec![applied_write(4, 1)],
                applied_slot: 4,
            }]
        );
        let heartbeat = applied_messages(&ticks(&mut learner, 50), client);
        assert_eq!(
            heartbeat,
            vec![Message::Applied {
                stream_id: 9,
                from_slot: 5,
                to_slot: 5,
                slots: vec![],
                applied_slot: 4,
            }],
            "an idle subscriber hears where the stream stands"
        );
        learner.handle(client, Message::Unsubscribe { stream_id: 9 });
        assert_eq!(learner.subscriber_count(), 0);
    }

    #[test]
    fn a_subscription_from_zero_starts_at_the_next_slot_and_ends_when_its_client_leaves() {
        let mut learner = applied_learner(LearnerOptions::new(1, 2), 2);
        let client = NodeId::client(3);
        let effects = learner.handle(
            client,
            Message::Subscribe {
                stream_id: 1,
                from_slot: 0,
            },
        );
        assert_eq!(
            applied_messages(&effects, client),
            vec![Message::Applied {
                stream_id: 1,
                from_slot: 3,
                to_slot: 3,
                slots: vec![],
                applied_slot: 2,
            }]
        );
        assert_eq!(learner.subscriber_count(), 1);
        learner.on_disconnected(client);
        assert_eq!(learner.subscriber_count(), 0);
    }

    #[test]
    fn a_position_older_than_the_history_is_refused_naming_the_oldest_slot() {
        let mut options = LearnerOptions::new(1, 2);
        options.retain_slots = 3;
        let mut learner = applied_learner(options, 10);
        assert_eq!(
            learner.history_start_slot(),
            8,
            "slots 8, 9 and 10 are kept"
        );
        assert_eq!(learner.decided_value(7), None);
        let client = NodeId::client(1);
        let too_old = Message::SubscriptionTooOld {
            stream_id: 4,
            oldest_available_slot: 8,
            applied_slot: 10,
        };
        let subscribe = |from_slot| Message::Subscribe {
            stream_id: 4,
            from_slot,
        };
        assert_eq!(
            applied_messages(&learner.handle(client, subscribe(7)), client),
            vec![too_old.clone()]
        );
        assert_eq!(learner.subscriber_count(), 0);
        let read = Message::ReadApplied {
            stream_id: 4,
            from_slot: 1,
            limit: 10,
        };
        assert_eq!(
            applied_messages(&learner.handle(client, read), client),
            vec![too_old]
        );
        let effects = learner.handle(client, subscribe(8));
        let [Message::Applied {
            from_slot, to_slot, ..
        }] = applied_messages(&effects, client)[..]
        else {
            panic!("expected one push, got {effects:?}")
        };
        assert_eq!((from_slot, to_slot), (8, 11));
    }

    #[test]
    fn read_applied_answers_at_most_the_limit_and_an_empty_range_past_the_applied_slot() {
        let mut learner = applied_learner(LearnerOptions::new(1, 2), 5);
        let client = NodeId::client(1);
        let read = |from_slot, limit| Message::ReadApplied {
            stream_id: 2,
            from_slot,
            limit,
        };
        assert_eq!(
            applied_messages(&learner.handle(client, read(1, 2)), client),
            vec![Message::Applied {
                stream_id: 2,
                from_slot: 1,
                to_slot: 3,
                slots: vec![applied_write(1, 1), applied_write(2, 1)],
                applied_slot: 5,
            }]
        );
        assert_eq!(
            applied_messages(&learner.handle(client, read(9, 2)), client),
            vec![Message::Applied {
                stream_id: 2,
                from_slot: 9,
                to_slot: 9,
                slots: vec![],
                applied_slot: 5,
            }]
        );
        assert_eq!(
            learner.subscriber_count(),
            0,
            "a read is not a subscription"
        );
    }
}
