//! Forwarding: a follower that knows a reachable leader forwards a client's write to it, once
//! (a forwarded write is never forwarded again); else it refuses with a hint. The leader's
//! answer goes to the client API directly if connected, else back through the follower.

use common::message::Message;
use common::node::{NodeId, Role};
use common::value::Command;

use super::{Effect, Proposer, State};

/// A client write waiting for its slot to be decided.
#[derive(Clone, Debug)]
pub(super) struct PendingWrite {
    pub(super) command: Command,
    /// Who sent it to us: the client API, or a follower proposer that forwarded it.
    pub(super) reply_to: NodeId,
    /// The client API waiting for the answer.
    pub(super) client: NodeId,
}

impl PendingWrite {
    /// The effect that delivers `message`, this write's answer, to its client API.
    pub(super) fn answer(&self, message: Message) -> Effect {
        if self.reply_to == self.client {
            Effect::Send {
                to: self.client,
                message,
            }
        } else {
            Effect::Answer {
                client: self.client,
                relay: self.reply_to,
                message,
            }
        }
    }
}

/// The definite failure of `command`, received from `from` for `client`, for `reason`.
fn write_failed(command: Command, from: NodeId, client: NodeId, reason: String) -> Effect {
    let request_id = command.request_id;
    let write = PendingWrite {
        command,
        reply_to: from,
        client,
    };
    write.answer(Message::WriteFailed {
        request_id,
        reason,
        client,
    })
}

impl Proposer {
    pub(super) fn on_write(
        &mut self,
        from: NodeId,
        command: Command,
        client: NodeId,
        effects: &mut Vec<Effect>,
    ) {
        if !command.operation.may_come_from_a_client() {
            self.raise_alarm(format!(
                "{from} sent a Write of an operation only old logs hold: refused"
            ));
            let reason = "an unversioned put cannot be written, only read from old logs";
            effects.push(write_failed(command, from, client, reason.into()));
            return;
        }
        // Forward once; a write forwarded to us is never forwarded again, so two proposers
        // with stale views cannot bounce it forever.
        let forward_to = match &self.state {
            State::Follower {
                leader: Some((leader_id, _)),
                ..
            } if from.role != Role::Proposer
                && *leader_id != self.options.id
                && !self.unreachable_proposers.contains(leader_id) =>
            {
                Some(*leader_id)
            }
            _ => None,
        };
        if let (State::Leader(_), Some(reason)) = (&self.state, self.no_space_reason()) {
            // No quorum of acceptors can make a vote durable: a definite failure now
            // rather than a write that waits out its deadline.
            effects.push(write_failed(command, from, client, reason));
            return;
        }
        match (&mut self.state, forward_to) {
            (State::Leader(leadership), _) => {
                leadership.queue.push_back(PendingWrite {
                    command,
                    reply_to: from,
                    client,
                });
                self.propose_queued(effects);
            }
            (_, Some(leader_id)) => {
                effects.push(Effect::Send {
                    to: NodeId::proposer(leader_id),
                    message: Message::Write { command, client },
                });
            }
            (_, None) => {
                // Unreachable leader: no hint either, so the client pauses and retries
                // rather than chase a proposer it cannot reach.
                let leader_hint = self
                    .leader_hint()
                    .filter(|leader| !self.unreachable_proposers.contains(leader));
                effects.push(Effect::Send {
                    to: from,
                    message: Message::WriteRefused {
                        request_id: command.request_id,
                        leader_hint,
                        client,
                    },
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;
    use common::value::{Command, Operation};

    #[test]
    fn a_leader_answers_a_forwarded_write_to_the_client_with_the_follower_as_relay() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        let client = NodeId::client(1);
        let follower = NodeId::proposer(2);
        proposer.handle(
            follower,
            Message::Write {
                command: command(4, "k", "v"),
                client,
            },
        );
        let mut effects = Vec::new();
        for acceptor in 1..=2 {
            effects.extend(proposer.handle(
                NodeId::acceptor(acceptor),
                Message::Accepted { ballot, slot: 1 },
            ));
        }
        assert_eq!(
            effects,
            vec![Effect::Answer {
                client,
                relay: follower,
                message: Message::WriteDecided {
                    request_id: RequestId(4),
                    slot: 1,
                    client
                }
            }]
        );
    }

    #[test]
    fn a_write_of_an_unversioned_put_is_refused_and_never_proposed() {
        let mut proposer = proposer(1);
        elect(&mut proposer, vec![vec![], vec![]]);
        let client = NodeId::client(1);
        let command = Command {
            request_id: RequestId(8),
            operation: Operation::UnversionedPut {
                key: "k".into(),
                value: "v".into(),
            },
        };
        let answers = sent(&proposer.handle(client, Message::Write { command, client }));
        assert!(
            matches!(
                &answers[..],
                [(to, Message::WriteFailed { request_id: RequestId(8), .. })] if *to == client
            ),
            "{answers:?}"
        );
        assert!(!proposer.alarms().is_empty());
    }

    #[test]
    fn followers_forward_writes_once_and_relay_the_answer() {
        let (mut proposer, client, write) = follower_of_proposer_1_and_a_write();
        let forwarded = sent(&proposer.handle(client, write.clone()));
        assert_eq!(forwarded, vec![(NodeId::proposer(1), write.clone())]);
        let bounced = sent(&proposer.handle(NodeId::proposer(3), write));
        assert!(
            matches!(bounced[0].1, Message::WriteRefused { .. }),
            "a forwarded write is not forwarded again"
        );
        let answer = Message::WriteDecided {
            request_id: RequestId(1),
            slot: 4,
            client,
        };
        let relayed = sent(&proposer.handle(NodeId::proposer(1), answer.clone()));
        assert_eq!(relayed, vec![(client, answer)]);
    }

    #[test]
    fn a_follower_cut_off_from_its_leader_refuses_writes_instead_of_forwarding_them() {
        let (mut proposer, client, write) = follower_of_proposer_1_and_a_write();
        proposer.on_disconnected(NodeId::proposer(1));
        proposer.on_disconnected(NodeId::acceptor(1)); // other roles do not matter
        let refused = sent(&proposer.handle(client, write.clone()));
        assert_eq!(
            refused,
            vec![(
                client,
                Message::WriteRefused {
                    request_id: RequestId(1),
                    leader_hint: None,
                    client,
                }
            )],
            "no forward into a closed connection, and no hint to chase it"
        );
        assert_eq!(
            proposer.leader_hint(),
            Some(1),
            "it still believes proposer 1 leads"
        );
        proposer.on_connected(NodeId::proposer(1));
        let forwarded = sent(&proposer.handle(client, write.clone()));
        assert_eq!(forwarded, vec![(NodeId::proposer(1), write)]);
    }

    #[test]
    fn a_write_from_a_client_is_answered_to_that_client_whatever_it_claims() {
        let mut proposer = proposer(2);
        let client = NodeId::client(1);
        let effects = proposer.handle(
            client,
            Message::Write {
                command: command(1, "k", "v"),
                client: NodeId::client(7),
            },
        );
        assert_eq!(
            sent(&effects),
            vec![(
                client,
                Message::WriteRefused {
                    request_id: RequestId(1),
                    leader_hint: None,
                    client,
                }
            )]
        );
        // Forwarded to a leader, the write names the real client.
        let (mut follower, _, _) = follower_of_proposer_1_and_a_write();
        let forwarded = sent(&follower.handle(
            client,
            Message::Write {
                command: command(1, "k", "v"),
                client: NodeId::client(7),
            },
        ));
        assert_eq!(
            forwarded,
            vec![(
                NodeId::proposer(1),
                Message::Write {
                    command: command(1, "k", "v"),
                    client
                }
            )]
        );
    }
}
