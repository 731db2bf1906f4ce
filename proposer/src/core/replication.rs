//! Replication, the paper's phase 2. The leader proposes each slot with Accept to every
//! acceptor and decides it on a quorum of Accepted votes under its ballot. Up to
//! `max_slots_in_flight` slots are in flight at once (pipelining); while the pipeline is
//! full, client writes queue, and each freed slot carries a batch of them.

use common::ballot::{Ballot, Slot};
use common::message::Message;
use common::node::{NodeId, Role};
use common::value::{Command, RequestId, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use super::{ConfirmRound, Effect, PendingRead, PendingWrite, Proposer, State};

#[derive(Debug)]
pub(super) struct InFlightSlot {
    pub(super) value: Value,
    pub(super) accepted_by: BTreeSet<u32>,
    pub(super) writes: Vec<PendingWrite>,
    pub(super) sent_tick: u64,
}

#[derive(Debug)]
pub(super) struct Leadership {
    pub(super) ballot: Ballot,
    pub(super) next_slot: Slot,
    pub(super) in_flight: BTreeMap<Slot, InFlightSlot>,
    pub(super) queue: VecDeque<PendingWrite>,
    pub(super) last_heartbeat_tick: u64,
    pub(super) last_confirmed_tick: u64,
    pub(super) confirm_sequence: u64,
    pub(super) confirm_round: Option<ConfirmRound>,
    pub(super) waiting_reads: Vec<PendingRead>,
}

impl Leadership {
    /// Phase 2a for one slot: send Accept to every acceptor and track the votes.
    pub(super) fn propose(
        &mut self,
        slot: Slot,
        value: Value,
        writes: Vec<PendingWrite>,
        now_tick: u64,
        effects: &mut Vec<Effect>,
    ) {
        effects.push(Effect::Broadcast {
            role: Role::Acceptor,
            message: Message::Accept {
                ballot: self.ballot,
                slot,
                value: value.clone(),
            },
        });
        let previous = self.in_flight.insert(
            slot,
            InFlightSlot {
                value,
                accepted_by: BTreeSet::new(),
                writes,
                sent_tick: now_tick,
            },
        );
        assert!(
            previous.is_none(),
            "a leader proposes at most one value per slot under its ballot"
        );
    }
}

impl Proposer {
    pub(super) fn on_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        effects: &mut Vec<Effect>,
    ) {
        let quorum_size = self.options.quorum_size;
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        if ballot != leadership.ballot || from.role != Role::Acceptor {
            return;
        }
        let Some(in_flight) = leadership.in_flight.get_mut(&slot) else {
            return; // already decided: a duplicate or late vote
        };
        in_flight.accepted_by.insert(from.id);
        if in_flight.accepted_by.len() < quorum_size {
            return;
        }
        let decided = leadership.in_flight.remove(&slot).expect("present above");
        for write in decided.writes {
            effects.push(write.answer(Message::WriteDecided {
                request_id: write.command.request_id,
                slot,
                client: write.client,
            }));
        }
        self.decided_slot_max = self.decided_slot_max.max(slot);
        self.propose_queued(effects);
    }

    /// Acceptor `from` could not make its vote for `slot` durable (its log is at its quota
    /// or its disk is full). Once too few acceptors have space for a quorum, the queued
    /// writes fail at once with the reason (they were placed in no slot); the slots in
    /// flight are retransmitted as usual and decided once space is freed, which an
    /// `Accepted` from the acceptor tells.
    pub(super) fn on_no_space(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        slot: Slot,
        effects: &mut Vec<Effect>,
    ) {
        if from.role != Role::Acceptor {
            self.raise_alarm(format!("{from} sent a NoSpace: ignored"));
            return;
        }
        let State::Leader(leadership) = &self.state else {
            return;
        };
        if ballot != leadership.ballot || !leadership.in_flight.contains_key(&slot) {
            return; // an old answer
        }
        self.acceptors_without_space.insert(from.id);
        let Some(reason) = self.no_space_reason() else {
            return;
        };
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        for write in leadership.queue.drain(..) {
            effects.push(write.answer(Message::WriteFailed {
                request_id: write.command.request_id,
                reason: reason.clone(),
                client: write.client,
            }));
        }
    }

    /// Why a write cannot be placed now, if too few acceptors have space for a quorum
    /// and slots wait in flight (their retransmissions tell when space is back; with none
    /// in flight, the next write is proposed and serves as the probe).
    pub(super) fn no_space_reason(&self) -> Option<String> {
        let State::Leader(leadership) = &self.state else {
            return None;
        };
        let with_space = self
            .options
            .acceptor_count
            .saturating_sub(self.acceptors_without_space.len());
        if with_space >= self.options.quorum_size || leadership.in_flight.is_empty() {
            return None;
        }
        let names: Vec<String> = self
            .acceptors_without_space
            .iter()
            .map(|id| format!("acceptor{id}"))
            .collect();
        Some(format!(
            "no space: {} cannot make votes durable (log quota reached or disk full), so no \
             quorum of acceptors can accept a write; eventual reads go on, and writes resume on \
             their own once space is freed (see the alarms in /status)",
            names.join(", ")
        ))
    }

    /// Moves queued commands into new slots while the pipeline has room. Under light load
    /// each command gets its own slot at once; under heavy load the pipeline fills and the
    /// queue grows, so each freed slot carries a larger batch.
    pub(super) fn propose_queued(&mut self, effects: &mut Vec<Effect>) {
        let now_tick = self.now_tick;
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        while !leadership.queue.is_empty()
            && leadership.in_flight.len() < self.options.max_slots_in_flight
        {
            let count = leadership.queue.len().min(self.options.max_batch_commands);
            let mut seen: HashSet<RequestId> = HashSet::with_capacity(count);
            let writes: Vec<PendingWrite> = leadership.queue.drain(..count).collect();
            let commands: Vec<Command> = writes
                .iter()
                .filter(|write| seen.insert(write.command.request_id))
                .map(|write| write.command.clone())
                .collect();
            let slot = leadership.next_slot;
            leadership.next_slot += 1;
            leadership.propose(slot, Value::Batch(commands), writes, now_tick, effects);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;

    #[test]
    fn leader_decides_a_slot_on_a_quorum_and_ignores_duplicate_votes() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        let client = NodeId::client(1);
        let effects = proposer.handle(
            client,
            Message::Write {
                command: command(9, "a", "1"),
                client,
            },
        );
        assert_eq!(accepts(&effects).len(), 1);
        let vote = Message::Accepted { ballot, slot: 1 };
        assert!(sent(&proposer.handle(NodeId::acceptor(1), vote.clone())).is_empty());
        assert!(
            sent(&proposer.handle(NodeId::acceptor(1), vote.clone())).is_empty(),
            "a duplicated vote is not a second acceptor"
        );
        let decided = sent(&proposer.handle(NodeId::acceptor(2), vote.clone()));
        assert_eq!(
            decided,
            vec![(
                client,
                Message::WriteDecided {
                    request_id: RequestId(9),
                    slot: 1,
                    client
                }
            )]
        );
        assert!(sent(&proposer.handle(NodeId::acceptor(3), vote)).is_empty());
    }

    #[test]
    fn leader_batches_writes_while_the_pipeline_is_full() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        let client = NodeId::client(1);
        let mut proposed = Vec::new();
        for number in 0..10 {
            let effects = proposer.handle(
                client,
                Message::Write {
                    command: command(number, "k", &number.to_string()),
                    client,
                },
            );
            proposed.extend(accepts(&effects));
        }
        assert_eq!(proposed.len(), 2, "two slots in flight at most");
        let mut freed = Vec::new();
        for acceptor in 1..=2 {
            freed.extend(proposer.handle(
                NodeId::acceptor(acceptor),
                Message::Accepted { ballot, slot: 1 },
            ));
        }
        let batch = accepts(&freed);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].0, 3);
        assert_eq!(
            batch[0].1.commands().len(),
            8,
            "the queued writes share one slot"
        );
    }

    #[test]
    fn writes_fail_with_the_reason_once_too_few_acceptors_have_space_and_resume_after() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        for number in 1..=3 {
            client_write(&mut proposer, number); // two in flight, one queued
        }
        let failed = |effects: &[Effect]| -> Vec<(RequestId, String)> {
            sent(effects)
                .into_iter()
                .filter_map(|(_, message)| match message {
                    Message::WriteFailed {
                        request_id, reason, ..
                    } => Some((request_id, reason)),
                    _ => None,
                })
                .collect()
        };
        // One acceptor without space: a quorum still has it.
        let effects = proposer.handle(NodeId::acceptor(1), Message::NoSpace { ballot, slot: 1 });
        assert!(failed(&effects).is_empty());
        // Two of three: the queued write fails at once, and so does a new one.
        let effects = proposer.handle(NodeId::acceptor(2), Message::NoSpace { ballot, slot: 1 });
        let queued = failed(&effects);
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].0, RequestId(3));
        assert!(
            queued[0]
                .1
                .starts_with("no space: acceptor1, acceptor2 cannot make votes durable"),
            "{}",
            queued[0].1
        );
        assert_eq!(failed(&client_write(&mut proposer, 4)).len(), 1);
        // Space is back: an acceptor votes again, and writes are placed.
        proposer.handle(NodeId::acceptor(1), Message::Accepted { ballot, slot: 1 });
        let effects = client_write(&mut proposer, 5);
        assert!(failed(&effects).is_empty());
        // A NoSpace from a node that is not an acceptor changes nothing.
        proposer.handle(NodeId::learner(1), Message::NoSpace { ballot, slot: 2 });
        assert_eq!(proposer.alarms().len(), 1);
    }
}
