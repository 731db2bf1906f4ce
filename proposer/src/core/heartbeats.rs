//! Heartbeats: the leader's share of each tick. Heartbeats keep followers from campaigning
//! and tell learners the highest decided slot; the confirmation round they start doubles as
//! the leader's liveness check (no quorum for a leader timeout: step down). Accepts not yet
//! decided are retransmitted.

use common::message::Message;
use common::node::Role;

use super::{Effect, Proposer, State};

impl Proposer {
    pub(super) fn send_heartbeat(&mut self, effects: &mut Vec<Effect>) {
        let decided_slot_max = self.decided_slot_max;
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        leadership.last_heartbeat_tick = self.now_tick;
        let message = Message::Heartbeat {
            ballot: leadership.ballot,
            decided_slot_max,
        };
        effects.push(Effect::Broadcast {
            role: Role::Proposer,
            message: message.clone(),
        });
        effects.push(Effect::Broadcast {
            role: Role::Learner,
            message,
        });
    }

    pub(super) fn leader_tick(&mut self, effects: &mut Vec<Effect>) {
        let now_tick = self.now_tick;
        let options = self.options.clone();
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        if now_tick >= leadership.last_confirmed_tick + options.leader_timeout_ticks {
            // No quorum has confirmed us for a whole leader timeout: we may be cut off.
            // Stop heartbeats so that a proposer that can reach the acceptors takes over.
            self.become_follower(None, effects);
            return;
        }
        for (slot, in_flight) in leadership.in_flight.iter_mut() {
            if now_tick >= in_flight.sent_tick + options.retransmit_ticks {
                in_flight.sent_tick = now_tick;
                effects.push(Effect::Broadcast {
                    role: Role::Acceptor,
                    message: Message::Accept {
                        ballot: leadership.ballot,
                        slot: *slot,
                        value: in_flight.value.clone(),
                    },
                });
            }
        }
        let confirm_stale = leadership
            .confirm_round
            .as_ref()
            .is_some_and(|round| now_tick >= round.started_tick + options.retransmit_ticks);
        let heartbeat_due =
            now_tick >= leadership.last_heartbeat_tick + options.heartbeat_interval_ticks;
        if heartbeat_due {
            self.send_heartbeat(effects);
        }
        self.send_trim_if_due(effects);
        let State::Leader(leadership) = &self.state else {
            return;
        };
        if confirm_stale || (heartbeat_due && leadership.confirm_round.is_none()) {
            // The heartbeat's confirmation round doubles as the leader's liveness check.
            self.start_confirm_round(effects);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;

    #[test]
    fn a_leader_that_no_quorum_confirms_steps_down() {
        let mut proposer = proposer(1);
        elect(&mut proposer, vec![vec![], vec![]]);
        for _ in 0..=100 {
            proposer.tick();
        }
        assert!(
            !proposer.is_leader(),
            "cut off from the acceptors, it stops leading"
        );
    }
}
