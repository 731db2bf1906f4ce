//! Catch-up: a learner that missed slots (it was down, or a vote was lost) learns of higher
//! slots from leaders' heartbeats, peers and reads, and fills the gap: first from peer
//! learners (`SyncDecided` / `Decided`), then from the acceptors' votes (`SyncAccepted`).
//! A peer that needs slots older than the history gets the whole state, in chunks (see
//! `snapshots`).
//! Acceptors forget slots the learners hold durably (trimming): asked for one, an acceptor
//! answers `Trimmed`, and such slots come from a peer learner only, as its snapshot if
//! need be. Answers are paged ([`common::value::PAGE_BYTES_MAX`]), never one frame that
//! grows with the log.

use common::ballot::Slot;
use common::message::{DecidedEntry, Message};
use common::node::{NodeId, Role};
use common::value::fits_in_page;

use super::{Effect, Learner};

/// The most slots one gap-filling exchange covers: a `Decided` answer holds at most this
/// many entries and a `SyncAccepted` asks for at most this many slots, so one answer stays
/// a reasonable frame however far behind a learner is.
pub const SYNC_BATCH_SLOTS: u64 = 4096;

impl Learner {
    /// What a learner asks its peers for: the decided slots after its applied slot.
    pub(super) fn sync_from_next_slot(&self) -> Message {
        Message::SyncDecided {
            from_slot: self.applied_slot + 1,
            limit: SYNC_BATCH_SLOTS as u32,
        }
    }

    pub(super) fn on_heartbeat(&mut self, from: NodeId, decided_slot_max: Slot) -> Vec<Effect> {
        if from.role != Role::Proposer {
            self.raise_alarm(format!("{from} sent a Heartbeat: ignored"));
        } else if decided_slot_max == 0
            || self.plausible_slot_from(from, "Heartbeat", decided_slot_max)
        {
            self.known_slot_max = self.known_slot_max.max(decided_slot_max);
        }
        Vec::new()
    }

    pub(super) fn on_decided(
        &mut self,
        from: NodeId,
        entries: Vec<DecidedEntry>,
        peer_applied_slot: Slot,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        if from.role != Role::Learner {
            self.raise_alarm(format!("{from} sent Decided values: ignored"));
            return effects;
        }
        if peer_applied_slot == 0 || self.plausible_slot_from(from, "Decided", peer_applied_slot) {
            self.known_slot_max = self.known_slot_max.max(peer_applied_slot);
        }
        let full_batch = entries.len() as u64 >= SYNC_BATCH_SLOTS;
        let source = format!("{from}");
        for DecidedEntry { slot, value } in entries {
            if self.plausible_slot_from(from, "Decided", slot) {
                self.decide(slot, value, &source, &mut effects);
            }
        }
        let applied_before = self.applied_slot;
        self.apply_contiguous(&mut effects);
        // A full answer means the peer probably holds more: ask for the next batch now
        // rather than after another sync interval, so a far-behind learner catches up fast.
        if full_batch
            && self.applied_slot > applied_before
            && self.known_slot_max > self.applied_slot
        {
            effects.push(Effect::Send {
                to: from,
                message: self.sync_from_next_slot(),
            });
        }
        effects
    }

    pub(super) fn on_sync_decided(
        &mut self,
        from: NodeId,
        from_slot: Slot,
        limit: u32,
    ) -> Vec<Effect> {
        if from.role != Role::Learner {
            self.raise_alarm(format!("{from} sent a SyncDecided: ignored"));
            return Vec::new();
        }
        let limit = u64::from(limit).min(SYNC_BATCH_SLOTS) as usize;
        let from_slot = from_slot.max(1);
        self.release_history_floor(from, from_slot);
        let mut effects = Vec::new();
        if from_slot < self.history_start && from_slot <= self.applied_slot && !self.installing {
            // The peer needs slots this learner no longer holds: it gets the whole state, in
            // chunks, then asks for the slots above it.
            return self.start_sending_snapshot(from);
        }
        let mut used_bytes = 0;
        let entries = self
            .decided
            .range(from_slot..)
            .take(limit)
            .take_while(|(_, value)| {
                let size_bytes = value.size_bytes();
                let fits = fits_in_page(used_bytes, size_bytes);
                used_bytes += size_bytes;
                fits
            })
            .map(|(slot, value)| DecidedEntry {
                slot: *slot,
                value: value.clone(),
            })
            .collect();
        effects.push(Effect::Send {
            to: from,
            message: Message::Decided {
                entries,
                applied_slot: self.applied_slot,
            },
        });
        effects
    }

    /// An acceptor forgot every slot `<= trimmed_slot`: this learner asks its peers at once
    /// if it needs one of them, and asks acceptors only for later slots from now on.
    pub(super) fn on_trimmed(&mut self, from: NodeId, trimmed_slot: Slot) -> Vec<Effect> {
        if from.role != Role::Acceptor {
            self.raise_alarm(format!("{from} sent a Trimmed: ignored"));
            return Vec::new();
        }
        if !self.plausible_slot_from(from, "Trimmed", trimmed_slot)
            || trimmed_slot <= self.acceptors_trimmed_slot
        {
            return Vec::new();
        }
        self.acceptors_trimmed_slot = trimmed_slot;
        self.known_slot_max = self.known_slot_max.max(trimmed_slot);
        if trimmed_slot <= self.applied_slot || self.is_receiving_snapshot() {
            return Vec::new();
        }
        vec![Effect::Broadcast {
            role: Role::Learner,
            message: self.sync_from_next_slot(),
        }]
    }

    /// While the applied slot stays behind a known slot: after one interval ask the peer
    /// learners, from the second interval on also ask the acceptors for their votes.
    pub(super) fn fill_gaps(&mut self, effects: &mut Vec<Effect>) {
        if self.installing {
            // No state: only a whole one helps. Asked for every sync interval while no
            // transfer is arriving (the one that made this learner drop its state failed).
            self.stalled_ticks += 1;
            if self
                .stalled_ticks
                .is_multiple_of(self.options.sync_interval_ticks)
                && !self.is_receiving_snapshot()
            {
                effects.push(Effect::Broadcast {
                    role: Role::Learner,
                    message: Message::SnapshotRequest,
                });
            }
            return;
        }
        if self.known_slot_max <= self.applied_slot {
            self.stalled_ticks = 0;
            return;
        }
        self.stalled_ticks += 1;
        let interval = self.options.sync_interval_ticks;
        if !self.stalled_ticks.is_multiple_of(interval) {
            return;
        }
        let from_slot = self.applied_slot + 1;
        if !self.is_receiving_snapshot() {
            effects.push(Effect::Broadcast {
                role: Role::Learner,
                message: self.sync_from_next_slot(),
            });
        }
        // Acceptors forgot the slots up to their trim point: asked only for later ones.
        let acceptor_from_slot = from_slot.max(self.acceptors_trimmed_slot.saturating_add(1));
        if self.stalled_ticks >= 2 * interval && acceptor_from_slot <= self.known_slot_max {
            effects.push(Effect::Broadcast {
                role: Role::Acceptor,
                message: Message::SyncAccepted {
                    from_slot: acceptor_from_slot,
                    to_slot: self
                        .known_slot_max
                        .saturating_add(1)
                        .min(acceptor_from_slot.saturating_add(SYNC_BATCH_SLOTS)),
                },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;

    #[test]
    fn a_peers_decided_value_that_differs_from_the_one_decided_here_is_refused_with_an_alarm() {
        let mut learner = learner();
        let ballot = Ballot::new(1, 1);
        let (decided, other) = (write(1, "k", "a"), write(2, "k", "b"));
        vote(&mut learner, 2, 2, ballot, &decided);
        vote(&mut learner, 3, 2, ballot, &decided);
        let effects = learner.handle(
            NodeId::learner(2),
            Message::Decided {
                entries: vec![DecidedEntry {
                    slot: 2,
                    value: other,
                }],
                applied_slot: 2,
            },
        );
        assert!(persisted_slots(&effects).is_empty());
        assert_eq!(learner.decided_value(2), Some(&decided));
        assert_eq!(
            learner.alarms(),
            ["learner2 gave slot 2 a value that differs from the one decided here: ignored (once)"]
        );
    }

    #[test]
    fn decided_values_and_snapshots_from_a_node_that_is_not_a_learner_are_ignored() {
        let mut learner = learner();
        let decided = Message::Decided {
            entries: vec![DecidedEntry {
                slot: 1,
                value: write(1, "k", "v"),
            }],
            applied_slot: 1,
        };
        assert!(learner.handle(NodeId::client(1), decided).is_empty());
        let snapshot = Message::SnapshotChunk {
            chunk: Learner::new(LearnerOptions::new(2, 2))
                .freeze()
                .chunks(100)
                .next()
                .unwrap(),
        };
        assert!(learner.handle(NodeId::acceptor(1), snapshot).is_empty());
        assert_eq!(learner.applied_slot(), 0);
        assert_eq!(learner.alarms().len(), 2);
    }

    #[test]
    fn a_learner_that_missed_slots_asks_its_peers_after_the_interval_and_catches_up() {
        let mut behind = learner();
        let mut ahead = learner();
        let ballot = Ballot::new(1, 1);
        let values: Vec<Value> = (1..=3)
            .map(|slot| write(slot, "k", &slot.to_string()))
            .collect();
        for acceptor in [1, 2] {
            for (index, value) in values.iter().enumerate() {
                vote(&mut ahead, acceptor, index as Slot + 1, ballot, value);
            }
        }
        // The behind learner only heard slot 3's votes: slots 1 and 2 are a gap.
        for acceptor in [1, 2] {
            vote(&mut behind, acceptor, 3, ballot, &values[2]);
        }
        assert_eq!((behind.applied_slot(), behind.known_slot_max()), (0, 3));
        let early = ticks(&mut behind, 19);
        assert!(
            broadcasts_to(&early, Role::Learner).is_empty(),
            "waits one interval"
        );
        let asked = broadcasts_to(&behind.tick(), Role::Learner);
        assert_eq!(
            asked,
            vec![Message::SyncDecided {
                from_slot: 1,
                limit: SYNC_BATCH_SLOTS as u32
            }]
        );
        let reply = ahead.handle(NodeId::learner(1), asked[0].clone());
        let [Effect::Send { to, message }] = reply.as_slice() else {
            panic!("expected one reply, got {reply:?}")
        };
        assert_eq!(*to, NodeId::learner(1));
        let effects = behind.handle(NodeId::learner(2), message.clone());
        assert_eq!(
            persisted_slots(&effects),
            vec![1, 2],
            "slot 3 was already known"
        );
        assert_eq!(behind.applied_slot(), 3);
        assert_eq!(behind.value_of("k"), Some("3"));
        let quiet = ticks(&mut behind, 100);
        assert!(
            broadcasts_to(&quiet, Role::Learner).is_empty(),
            "no gap, no sync"
        );
    }

    #[test]
    fn a_learner_still_stuck_after_a_second_interval_asks_the_acceptors() {
        let mut learner = learner();
        learner.handle(
            NodeId::proposer(1),
            Message::Heartbeat {
                ballot: Ballot::new(1, 1),
                decided_slot_max: 7,
            },
        );
        assert_eq!(learner.known_slot_max(), 7);
        let first = ticks(&mut learner, 20);
        assert_eq!(broadcasts_to(&first, Role::Learner).len(), 1);
        assert!(broadcasts_to(&first, Role::Acceptor).is_empty());
        let second = ticks(&mut learner, 20);
        assert_eq!(broadcasts_to(&second, Role::Learner).len(), 1);
        assert_eq!(
            broadcasts_to(&second, Role::Acceptor),
            vec![Message::SyncAccepted {
                from_slot: 1,
                to_slot: 8
            }]
        );
        // The acceptors' answer fills the gap.
        let entries: Vec<(Slot, Ballot, Value)> = (1..=7)
            .map(|slot| {
                (
                    slot,
                    Ballot::new(1, 1),
                    write(slot as u128, "k", &slot.to_string()),
                )
            })
            .collect();
        let borrowed: Vec<(Slot, Ballot, &Value)> = entries
            .iter()
            .map(|(slot, ballot, value)| (*slot, *ballot, value))
            .collect();
        learner.handle(NodeId::acceptor(1), votes(&borrowed));
        learner.handle(NodeId::acceptor(3), votes(&borrowed));
        assert_eq!(learner.applied_slot(), 7);
    }

    #[test]
    fn a_learner_without_a_gap_sends_only_its_progress() {
        let mut learner = learner();
        let effects = ticks(&mut learner, 50);
        assert_eq!(effects.len(), 10, "progress every 5 ticks and nothing else");
        assert!(effects.iter().all(|effect| *effect
            == Effect::Broadcast {
                role: Role::Proposer,
                message: Message::LearnerProgress {
                    applied_slot: 0,
                    durable_slot: 0
                }
            }));
    }

    #[test]
    fn sync_decided_is_answered_from_the_slot_asked_within_the_limit() {
        let mut learner = learner();
        let ballot = Ballot::new(1, 1);
        for acceptor in [1, 2] {
            for slot in 1..=5 {
                vote(&mut learner, acceptor, slot, ballot, &Value::Noop);
            }
        }
        let reply = learner.handle(
            NodeId::learner(2),
            Message::SyncDecided {
                from_slot: 2,
                limit: 3,
            },
        );
        assert_eq!(
            reply,
            vec![Effect::Send {
                to: NodeId::learner(2),
                message: Message::Decided {
                    entries: (2..=4)
                        .map(|slot| DecidedEntry {
                            slot,
                            value: Value::Noop
                        })
                        .collect(),
                    applied_slot: 5
                }
            }]
        );
    }

    #[test]
    fn a_new_connection_is_asked_for_what_was_missed() {
        let mut learner = Learner::recover(
            LearnerOptions::new(1, 2),
            [DecidedEntry {
                slot: 1,
                value: Value::Noop,
            }],
        );
        let send = |to: NodeId, message: Message| vec![Effect::Send { to, message }];
        assert_eq!(
            learner.on_connected(NodeId::learner(2)),
            send(
                NodeId::learner(2),
                Message::SyncDecided {
                    from_slot: 2,
                    limit: SYNC_BATCH_SLOTS as u32
                }
            )
        );
        assert_eq!(
            learner.on_connected(NodeId::acceptor(3)),
            send(
                NodeId::acceptor(3),
                Message::SyncAccepted {
                    from_slot: 2,
                    to_slot: 2 + SYNC_BATCH_SLOTS
                }
            )
        );
        assert_eq!(
            learner.on_connected(NodeId::proposer(1)),
            send(
                NodeId::proposer(1),
                Message::LearnerProgress {
                    applied_slot: 1,
                    durable_slot: 0
                }
            )
        );
        assert!(learner.on_connected(NodeId::client(1)).is_empty());
    }

    const SYNC_FROM_ONE: Message = Message::SyncDecided {
        from_slot: 1,
        limit: 100,
    };

    #[test]
    fn a_peer_behind_the_history_gets_a_snapshot_in_acknowledged_chunks_and_continues_after_it() {
        let mut options = LearnerOptions::new(1, 2);
        options.retain_slots = 2;
        options.snapshot_chunk_bytes = 20; // about one key per chunk
        let mut ahead = applied_learner(options, 6);
        // Slot 9 is decided at the peer but not applied: slots 7 and 8 are missing.
        let nine = write(9, "k9", "v9");
        vote(&mut ahead, 1, 9, Ballot::new(1, 1), &nine);
        vote(&mut ahead, 2, 9, Ballot::new(1, 1), &nine);
        let mut behind = Learner::new(LearnerOptions::new(2, 2));
        let client = NodeId::client(1);
        // A subscriber of the behind learner waits for slot 1: the snapshot skips it.
        behind.handle(
            client,
            Message::Subscribe {
                stream_id: 5,
                from_slot: 1,
            },
        );
        let (me, peer) = (NodeId::learner(2), NodeId::learner(1));
        let mut to_behind = applied_messages(
            &ahead.handle(
                me,
                Message::SyncDecided {
                    from_slot: 1,
                    limit: 100,
                },
            ),
            me,
        );
        assert_eq!(
            to_behind.len(),
            SNAPSHOT_WINDOW_CHUNKS as usize,
            "a window of chunks, nothing else: {to_behind:?}"
        );
        // Asked again at once (a request that arrived late), the peer goes on; asked once
        // the transfer went silent, it starts over: the asker lost it (a learner receiving
        // a snapshot asks nobody).
        let again = SYNC_FROM_ONE;
        assert!(applied_messages(&ahead.handle(me, again.clone()), me).is_empty());
        ticks(&mut ahead, SNAPSHOT_RESEND_TICKS);
        to_behind = applied_messages(&ahead.handle(me, again), me);
        assert!(matches!(&to_behind[0], Message::SnapshotChunk { chunk } if chunk.index == 0));
        assert_eq!(
            ahead.snapshots_sent(),
            (2, 1),
            "one transfer at a time per peer"
        );
        let mut effects = Vec::new();
        let mut chunks = 0;
        while !to_behind.is_empty() {
            let mut to_ahead = Vec::new();
            for message in std::mem::take(&mut to_behind) {
                if matches!(message, Message::SnapshotChunk { .. }) {
                    chunks += 1;
                }
                let answer = behind.handle(peer, message);
                to_ahead.extend(applied_messages(&answer, peer));
                effects.extend(answer);
            }
            for message in to_ahead {
                to_behind.extend(applied_messages(&ahead.handle(me, message), me));
            }
        }
        assert!(chunks > 6, "{chunks} chunks");
        assert_eq!(
            effects
                .iter()
                .filter(|effect| matches!(effect, Effect::PersistSnapshotChunk(_)))
                .count(),
            chunks,
            "every chunk written"
        );
        assert!(effects.iter().any(|effect| matches!(effect,
            Effect::InstallSnapshot { applied_slot: 6, retained } if retained.is_empty())));
        assert_eq!(ahead.snapshots_sent(), (2, 0), "the transfer ended");
        assert_eq!(behind.history_start_slot(), 7);
        assert_eq!(behind.value_of("k3"), Some("v3"));
        assert_eq!(
            behind.decided_value(9),
            Some(&nine),
            "what follows came after"
        );
        assert_eq!(behind.freeze().to_snapshot().key_values.len(), 6);
        assert!(!behind.is_installing_snapshot());
        assert_eq!(
            applied_messages(&effects, client),
            vec![Message::SubscriptionTooOld {
                stream_id: 5,
                oldest_available_slot: 7,
                applied_slot: 6,
            }],
            "the subscriber is told, not skipped past slots 1 to 6"
        );
        // A snapshot no newer than the learner's state is ignored.
        let old = ahead.freeze().chunks(1 << 20).next().unwrap();
        assert!(behind
            .handle(peer, Message::SnapshotChunk { chunk: old })
            .is_empty());
        assert_eq!(behind.value_of("k3"), Some("v3"));
    }

    #[test]
    fn a_learner_receiving_a_snapshot_serves_no_reads_and_a_stalled_transfer_gives_way() {
        let mut options = LearnerOptions::new(1, 2);
        options.snapshot_chunk_bytes = 20;
        let ahead = applied_learner(options.clone(), 6);
        let mut behind = applied_learner(options, 2);
        let chunks: Vec<SnapshotChunk> = ahead.freeze().chunks(20).collect();
        let (first, second) = (NodeId::learner(2), NodeId::learner(3));
        behind.handle(
            first,
            Message::SnapshotChunk {
                chunk: chunks[0].clone(),
            },
        );
        assert!(behind.is_installing_snapshot(), "the old state went");
        assert_eq!(behind.value_of("k1"), None);
        let read = behind.handle(
            NodeId::client(1),
            Message::Read {
                read_id: 1,
                key: "k1".into(),
                min_slot: 0,
            },
        );
        assert!(matches!(
            &read[..],
            [Effect::Send {
                message: Message::ReadTimedOut { .. },
                ..
            }]
        ));
        // Another peer's transfer waits while the first one lives...
        assert!(behind
            .handle(
                second,
                Message::SnapshotChunk {
                    chunk: chunks[0].clone()
                }
            )
            .is_empty());
        // ...and takes over once it stalled. Meanwhile the learner, without a state or a
        // transfer, asks every peer for a whole state.
        let asked = ticks(&mut behind, SNAPSHOT_TRANSFER_TIMEOUT_TICKS + 20);
        assert!(broadcasts_to(&asked, Role::Learner).contains(&Message::SnapshotRequest));
        assert!(!broadcasts_to(&asked, Role::Learner)
            .iter()
            .any(|message| matches!(message, Message::SyncDecided { .. })));
        for chunk in &chunks {
            behind.handle(
                second,
                Message::SnapshotChunk {
                    chunk: chunk.clone(),
                },
            );
        }
        assert!(!behind.is_installing_snapshot());
        assert_eq!(behind.applied_slot(), 6);
        assert_eq!(behind.freeze(), ahead.freeze());
        assert_eq!(behind.snapshots_installed(), (1, Some((second, 6))));
    }

    #[test]
    fn an_acceptor_that_trimmed_the_slots_needed_sends_the_learner_to_its_peers() {
        let mut learner = learner();
        let effects = learner.handle(NodeId::acceptor(1), Message::Trimmed { trimmed_slot: 50 });
        assert_eq!(
            broadcasts_to(&effects, Role::Learner),
            vec![Message::SyncDecided {
                from_slot: 1,
                limit: SYNC_BATCH_SLOTS as u32
            }]
        );
        assert_eq!(learner.acceptors_trimmed_slot(), 50);
        assert_eq!(learner.known_slot_max(), 50);
        // Acceptors are then asked only for slots above their trim point.
        learner.handle(
            NodeId::proposer(1),
            Message::Heartbeat {
                ballot: Ballot::new(1, 1),
                decided_slot_max: 60,
            },
        );
        let asked = broadcasts_to(&ticks(&mut learner, 40), Role::Acceptor);
        assert_eq!(
            asked,
            vec![Message::SyncAccepted {
                from_slot: 51,
                to_slot: 61
            }]
        );
        // Only acceptors say so.
        assert!(learner
            .handle(NodeId::learner(2), Message::Trimmed { trimmed_slot: 80 })
            .is_empty());
        assert_eq!(learner.acceptors_trimmed_slot(), 50);
    }

    #[test]
    fn progress_promises_a_durable_slot_only_after_the_sync_that_makes_it_durable() {
        use common::ready::{Core, Destination, Ready};
        let mut learner = learner();
        let ballot = Ballot::new(1, 1);
        let mut ready = Ready::default();
        for slot in 1..=3 {
            let value = write(slot as u128, "k", "v");
            for acceptor in [1, 2] {
                learner.on_event(
                    common::ready::Event::Message(
                        NodeId::acceptor(acceptor),
                        votes(&[(slot, ballot, &value)]),
                    ),
                    &mut ready,
                );
            }
        }
        assert_eq!(learner.applied_slot(), 3);
        let mut synced_at = None;
        for tick in 1..=10 {
            let mut ready = Ready::default();
            learner.on_tick(&mut ready);
            let progress: Vec<&Message> = ready
                .persisted_messages
                .iter()
                .filter(|outgoing| outgoing.to == Destination::Role(Role::Proposer))
                .map(|outgoing| &outgoing.message)
                .collect();
            assert!(
                !ready
                    .messages
                    .iter()
                    .any(|outgoing| matches!(outgoing.message, Message::LearnerProgress { .. })),
                "progress never leaves before the batch's sync"
            );
            if ready.sync {
                synced_at = Some(tick);
            }
            for message in progress {
                let Message::LearnerProgress { durable_slot, .. } = message else {
                    continue;
                };
                match synced_at {
                    Some(_) => assert!(*durable_slot <= 3),
                    None => assert_eq!(*durable_slot, 0, "nothing synced yet at tick {tick}"),
                }
            }
        }
        assert!(synced_at.is_some(), "a sync within the interval");
        assert_eq!(learner.durable_slot(), 3);
    }

    #[test]
    fn a_peer_asked_for_its_state_sends_it_whatever_its_history() {
        let mut ahead = applied_learner(LearnerOptions::new(1, 2), 6);
        assert_eq!(ahead.history_start_slot(), 1, "the whole history is held");
        let answer = ahead.handle(NodeId::learner(2), Message::SnapshotRequest);
        assert!(matches!(&applied_messages(&answer, NodeId::learner(2))[..],
            [Message::SnapshotChunk { chunk }] if chunk.index == 0 && chunk.last));
        assert!(ahead
            .handle(NodeId::client(1), Message::SnapshotRequest)
            .is_empty());
        assert_eq!(ahead.alarms().len(), 1, "only learners ask");
    }

    #[test]
    fn the_history_after_a_snapshot_stays_until_its_receiver_asked_for_it() {
        let mut options = LearnerOptions::new(1, 2);
        options.retain_slots = 2;
        let mut ahead = applied_learner(options, 6);
        let me = NodeId::learner(2);
        let chunks = applied_messages(&ahead.handle(me, SYNC_FROM_ONE), me);
        let [Message::SnapshotChunk { chunk }] = &chunks[..] else {
            panic!("one chunk: {chunks:?}")
        };
        // Many slots are applied while the transfer runs: the history keeps slot 7 on.
        for slot in 7..=20 {
            let value = write(slot as u128, "k", "v");
            vote(&mut ahead, 1, slot, Ballot::new(1, 1), &value);
            vote(&mut ahead, 2, slot, Ballot::new(1, 1), &value);
        }
        assert_eq!(ahead.history_start_slot(), 7);
        ahead.handle(
            me,
            Message::SnapshotAck {
                applied_slot: chunk.applied_slot,
                index: 0,
            },
        );
        let next = ahead.handle(
            me,
            Message::SyncDecided {
                from_slot: 7,
                limit: 100,
            },
        );
        assert!(
            matches!(&applied_messages(&next, me)[..],
                [Message::Decided { entries, .. }] if entries.first().map(|entry| entry.slot) == Some(7)),
            "the slots after the snapshot, not another snapshot: {next:?}"
        );
        // Asked, the floor goes: the history shrinks back to its size at the next apply.
        let value = write(21, "k", "v");
        vote(&mut ahead, 1, 21, Ballot::new(1, 1), &value);
        vote(&mut ahead, 2, 21, Ballot::new(1, 1), &value);
        assert_eq!(ahead.history_start_slot(), 20);
    }

    #[test]
    fn an_oversized_snapshot_chunk_is_refused_with_an_alarm() {
        let mut learner = learner();
        let chunk = SnapshotChunk {
            applied_slot: 5,
            index: 0,
            key_count: 1,
            request_id_count: 0,
            key_values: vec![(
                "k".into(),
                VersionedValue {
                    value: "v".repeat(65 * 1024 * 1024),
                    create_revision: 1,
                    mod_revision: 1,
                    version: 1,
                },
            )],
            applied_request_ids: vec![],
            last: true,
        };
        assert!(learner
            .handle(NodeId::learner(2), Message::SnapshotChunk { chunk })
            .is_empty());
        assert!(!learner.is_installing_snapshot());
        assert!(
            learner.alarms()[0].contains("above"),
            "{:?}",
            learner.alarms()
        );
    }
}
