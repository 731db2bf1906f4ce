//! Reads: the read index. A leader answers `ReadIndex` with the highest slot assigned so
//! far only after a quorum of acceptors confirms it still holds the highest promise
//! (`Confirm` / `Confirmed`), so a deposed leader cannot grant a stale read; non-leaders
//! refuse with a hint of who leads.

use common::ballot::{Ballot, Slot};
use common::message::Message;
use common::node::{NodeId, Role};
use std::collections::BTreeSet;

#[cfg(feature = "planted-bugs")]
use super::PlantedBug;
use super::{Effect, Proposer, State};

/// A read-index request waiting for a confirmation round.
#[derive(Clone, Copy, Debug)]
pub(super) struct PendingRead {
    pub(super) read_id: u64,
    pub(super) reply_to: NodeId,
}

#[derive(Debug)]
pub(super) struct ConfirmRound {
    pub(super) sequence: u64,
    /// Every write completed before the round started lies in a slot `<= read_slot`.
    pub(super) read_slot: Slot,
    pub(super) confirmed_by: BTreeSet<u32>,
    pub(super) reads: Vec<PendingRead>,
    pub(super) started_tick: u64,
}

impl Proposer {
    pub(super) fn on_read_index(&mut self, from: NodeId, read_id: u64, effects: &mut Vec<Effect>) {
        let read = PendingRead {
            read_id,
            reply_to: from,
        };
        #[cfg(feature = "planted-bugs")]
        if let (Some(PlantedBug::ReadIndexWithoutConfirmation), State::Leader(leadership)) =
            (self.planted_bug, &self.state)
        {
            effects.push(Effect::Send {
                to: from,
                message: Message::ReadIndexGranted {
                    read_id,
                    slot: leadership.next_slot - 1,
                },
            });
            return;
        }
        match &mut self.state {
            State::Leader(leadership) => {
                leadership.waiting_reads.push(read);
                if leadership.confirm_round.is_none() {
                    self.start_confirm_round(effects);
                }
            }
            _ => {
                let leader_hint = self.leader_hint();
                effects.push(Effect::Send {
                    to: from,
                    message: Message::ReadIndexRefused {
                        read_id,
                        leader_hint,
                    },
                });
            }
        }
    }

    /// Asks the acceptors to confirm our ballot. Reads waiting now are answered with the
    /// slots assigned so far once a quorum confirms: a write completed before this point
    /// was decided either by us (so its slot is below `next_slot`) or by an earlier leader
    /// (whose slots our phase 1 took over), and no later leader can have decided anything
    /// while a quorum still confirms us.
    pub(super) fn start_confirm_round(&mut self, effects: &mut Vec<Effect>) {
        let now_tick = self.now_tick;
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        leadership.confirm_sequence += 1;
        let mut reads = std::mem::take(&mut leadership.waiting_reads);
        if let Some(previous) = leadership.confirm_round.take() {
            reads.extend(previous.reads);
        }
        leadership.confirm_round = Some(ConfirmRound {
            sequence: leadership.confirm_sequence,
            read_slot: leadership.next_slot - 1,
            confirmed_by: BTreeSet::new(),
            reads,
            started_tick: now_tick,
        });
        effects.push(Effect::Broadcast {
            role: Role::Acceptor,
            message: Message::Confirm {
                ballot: leadership.ballot,
                sequence: leadership.confirm_sequence,
            },
        });
    }

    pub(super) fn on_confirmed(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        sequence: u64,
        effects: &mut Vec<Effect>,
    ) {
        let now_tick = self.now_tick;
        let quorum_size = self.options.quorum_size;
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        let Some(round) = &mut leadership.confirm_round else {
            return;
        };
        if ballot != leadership.ballot || sequence != round.sequence || from.role != Role::Acceptor
        {
            return;
        }
        round.confirmed_by.insert(from.id);
        if round.confirmed_by.len() < quorum_size {
            return;
        }
        let round = leadership.confirm_round.take().expect("present above");
        leadership.last_confirmed_tick = now_tick;
        for read in round.reads {
            effects.push(Effect::Send {
                to: read.reply_to,
                message: Message::ReadIndexGranted {
                    read_id: read.read_id,
                    slot: round.read_slot,
                },
            });
        }
        if !leadership.waiting_reads.is_empty() {
            self.start_confirm_round(effects);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;

    #[test]
    fn read_index_is_granted_after_a_quorum_confirms_with_the_slots_assigned_before() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        let client = NodeId::client(1);
        client_write(&mut proposer, 1);
        let effects = proposer.handle(client, Message::ReadIndex { read_id: 7 });
        let sequence = effects
            .iter()
            .find_map(|effect| match effect {
                Effect::Broadcast {
                    message: Message::Confirm { sequence, .. },
                    ..
                } => Some(*sequence),
                _ => None,
            })
            .expect("a confirmation round starts");
        let confirmed = Message::Confirmed { ballot, sequence };
        assert!(sent(&proposer.handle(NodeId::acceptor(1), confirmed.clone())).is_empty());
        let granted = sent(&proposer.handle(NodeId::acceptor(3), confirmed));
        assert_eq!(
            granted,
            vec![(
                client,
                Message::ReadIndexGranted {
                    read_id: 7,
                    slot: 1
                }
            )],
            "the read waits for the write in slot 1, which was assigned before it arrived"
        );
    }

    #[test]
    fn non_leaders_refuse_read_index_with_a_hint() {
        let mut proposer = proposer(2);
        proposer.handle(
            NodeId::proposer(1),
            Message::Heartbeat {
                ballot: Ballot::new(1, 1),
                decided_slot_max: 0,
            },
        );
        let answer = sent(&proposer.handle(NodeId::client(1), Message::ReadIndex { read_id: 3 }));
        assert_eq!(
            answer[0].1,
            Message::ReadIndexRefused {
                read_id: 3,
                leader_hint: Some(1)
            }
        );
    }
}
