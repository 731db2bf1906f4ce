//! Reads: a client reads a key as of a slot it names (`Read { min_slot }`, learned from the
//! leader's read index), or asks what a command it wrote did (`Outcome { min_slot }`, the
//! slot the leader decided it in). If this learner has applied that slot it answers at
//! once; else the question waits until the slot is applied, and gives up with
//! `ReadTimedOut` after `read_timeout_ticks` so the client can try elsewhere.

use common::ballot::Slot;
use common::message::Message;
use common::node::NodeId;
use common::value::RequestId;

use super::{Effect, Learner};

/// What a client asks of the applied state.
#[derive(Clone, Debug)]
pub(super) enum Question {
    /// The value of a key.
    Key(String),
    /// What the command of a request id did.
    Outcome(RequestId),
}

/// A client question waiting for its slot to be applied.
#[derive(Clone, Debug)]
pub(super) struct ParkedRead {
    client: NodeId,
    read_id: u64,
    question: Question,
    expires_at_tick: u64,
}

impl ParkedRead {
    /// The answer that sends the reader elsewhere.
    pub(super) fn timed_out(&self, applied_slot: Slot) -> Effect {
        Effect::Send {
            to: self.client,
            message: Message::ReadTimedOut {
                read_id: self.read_id,
                applied_slot,
            },
        }
    }
}

impl Learner {
    pub(super) fn on_read(
        &mut self,
        client: NodeId,
        read_id: u64,
        question: Question,
        min_slot: Slot,
    ) -> Vec<Effect> {
        if self.installing {
            // No state to read until a snapshot is installed: the client tries elsewhere.
            return vec![Effect::Send {
                to: client,
                message: Message::ReadTimedOut {
                    read_id,
                    applied_slot: self.applied_slot,
                },
            }];
        }
        if self.applied_slot >= min_slot {
            return vec![self.read_reply(client, read_id, &question)];
        }
        if !self.plausible_slot_from(client, "Read", min_slot) {
            // Answered at once, so the client tries elsewhere rather than wait it out.
            return vec![Effect::Send {
                to: client,
                message: Message::ReadTimedOut {
                    read_id,
                    applied_slot: self.applied_slot,
                },
            }];
        }
        // The reader learned from the leader that `min_slot` is decided: this learner is
        // behind, and gap filling starts if the slot does not arrive by itself.
        self.known_slot_max = self.known_slot_max.max(min_slot);
        self.parked_reads
            .entry(min_slot)
            .or_default()
            .push(ParkedRead {
                client,
                read_id,
                question,
                expires_at_tick: self.now_tick + self.options.read_timeout_ticks,
            });
        Vec::new()
    }

    fn read_reply(&self, client: NodeId, read_id: u64, question: &Question) -> Effect {
        let applied_slot = self.applied_slot;
        let message = match question {
            Question::Key(key) => Message::ReadReply {
                read_id,
                value: self
                    .key_values
                    .get(key.as_str())
                    .map(|value| value.to_versioned()),
                applied_slot,
            },
            Question::Outcome(request_id) => Message::OutcomeReply {
                read_id,
                outcome: self.applied_requests.get(request_id).copied(),
                applied_slot,
            },
        };
        Effect::Send {
            to: client,
            message,
        }
    }

    /// Answers the reads waiting for a slot that is now applied.
    pub(super) fn answer_parked_reads(&mut self, effects: &mut Vec<Effect>) {
        let still_waiting = self.parked_reads.split_off(&(self.applied_slot + 1));
        let ready = std::mem::replace(&mut self.parked_reads, still_waiting);
        for read in ready.into_values().flatten() {
            effects.push(self.read_reply(read.client, read.read_id, &read.question));
        }
    }

    pub(super) fn expire_reads(&mut self, effects: &mut Vec<Effect>) {
        if self.parked_reads.is_empty() {
            return;
        }
        let now_tick = self.now_tick;
        let applied_slot = self.applied_slot;
        self.parked_reads.retain(|_, reads| {
            reads.retain(|read| {
                if read.expires_at_tick > now_tick {
                    return true;
                }
                effects.push(read.timed_out(applied_slot));
                false
            });
            !reads.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;

    #[test]
    fn a_read_of_an_applied_slot_is_answered_at_once() {
        let mut learner = learner();
        let client = NodeId::client(1);
        let effects = learner.handle(
            client,
            Message::Read {
                read_id: 5,
                key: "k".into(),
                min_slot: 0,
            },
        );
        assert_eq!(
            effects,
            vec![Effect::Send {
                to: client,
                message: Message::ReadReply {
                    read_id: 5,
                    value: None,
                    applied_slot: 0
                }
            }]
        );
    }

    #[test]
    fn a_parked_read_is_answered_when_its_slot_is_applied() {
        let mut learner = learner();
        let client = NodeId::client(2);
        let read = Message::Read {
            read_id: 9,
            key: "k".into(),
            min_slot: 1,
        };
        assert!(
            learner.handle(client, read).is_empty(),
            "slot 1 is not applied yet"
        );
        assert_eq!(learner.known_slot_max(), 1, "the read names a decided slot");
        ticks(&mut learner, 10);
        let value = write(1, "k", "v");
        vote(&mut learner, 1, 1, Ballot::new(1, 1), &value);
        let effects = vote(&mut learner, 2, 1, Ballot::new(1, 1), &value);
        assert_eq!(
            effects,
            vec![
                Effect::Persist(DecidedEntry { slot: 1, value }),
                Effect::Send {
                    to: client,
                    message: Message::ReadReply {
                        read_id: 9,
                        value: Some(VersionedValue {
                            value: "v".into(),
                            create_revision: 1,
                            mod_revision: 1,
                            version: 1
                        }),
                        applied_slot: 1
                    }
                }
            ]
        );
        let later: Vec<Effect> = ticks(&mut learner, 400);
        assert!(
            !later.iter().any(|effect| matches!(
                effect,
                Effect::Send {
                    message: Message::ReadTimedOut { .. },
                    ..
                }
            )),
            "an answered read does not time out"
        );
    }

    #[test]
    fn a_parked_read_times_out_when_its_slot_never_arrives() {
        let mut options = LearnerOptions::new(1, 2);
        options.read_timeout_ticks = 30;
        let mut learner = Learner::new(options);
        let client = NodeId::client(1);
        learner.handle(
            client,
            Message::Read {
                read_id: 3,
                key: "k".into(),
                min_slot: 4,
            },
        );
        let timed_out = |effects: &[Effect]| {
            effects.iter().any(|effect| {
                *effect
                    == Effect::Send {
                        to: client,
                        message: Message::ReadTimedOut {
                            read_id: 3,
                            applied_slot: 0,
                        },
                    }
            })
        };
        assert!(!timed_out(&ticks(&mut learner, 29)));
        assert!(timed_out(&learner.tick()));
        assert!(!timed_out(&ticks(&mut learner, 100)), "answered once");
    }
}
