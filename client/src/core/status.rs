//! The status fan-out: a `StatusRequest` to each node asked, the replies collected until
//! every node answered or the status timeout passed.

use super::{Answer, AnswerKey, ClientCore, Effect, Token};
use common::message::{Message, NodeStatus};
use common::node::NodeId;
use std::collections::BTreeMap;

/// One running fan-out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct StatusPoll {
    /// Request id -> the node asked, for the requests not answered yet.
    asked: BTreeMap<u64, NodeId>,
    replies: BTreeMap<NodeId, NodeStatus>,
    until: u64,
}

impl ClientCore {
    /// Asks each of `nodes` for its status; [`Answer::Statuses`] with `token` comes once
    /// every node answered, or after the status timeout with the replies in by then.
    pub fn poll_statuses(&mut self, token: Token, nodes: &[NodeId]) -> Vec<Effect> {
        let mut poll = StatusPoll {
            asked: BTreeMap::new(),
            replies: BTreeMap::new(),
            until: self.now + self.options.status_timeout_ticks,
        };
        for node in nodes {
            let request_id = self.fresh_id();
            poll.asked.insert(request_id, *node);
            self.wait_for(AnswerKey::Status(request_id), token);
            self.send(*node, Message::StatusRequest { request_id });
        }
        self.statuses.insert(token, poll);
        self.finish_status_if_complete(token);
        std::mem::take(&mut self.effects)
    }

    pub(super) fn on_status_reply(&mut self, _from: NodeId, message: Message) {
        let Message::StatusReply { request_id, status } = message else {
            return;
        };
        let key = AnswerKey::Status(request_id);
        let Some(tokens) = self.waiting.remove(&key) else {
            return;
        };
        for token in tokens {
            if let Some(poll) = self.statuses.get_mut(&token) {
                if let Some(node) = poll.asked.remove(&request_id) {
                    poll.replies.insert(node, status.clone());
                }
            }
            self.finish_status_if_complete(token);
        }
    }

    pub(super) fn tick_statuses(&mut self) {
        let now = self.now;
        let expired: Vec<Token> = self
            .statuses
            .iter()
            .filter(|(_, poll)| now >= poll.until)
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            self.finish_status(token);
        }
    }

    /// A StatusRequest could not be sent: its node is not waited for.
    pub(super) fn status_unsent(&mut self, _to: NodeId, key: AnswerKey) {
        let AnswerKey::Status(request_id) = key else {
            return;
        };
        let Some(tokens) = self.waiting.remove(&key) else {
            return;
        };
        for token in tokens {
            if let Some(poll) = self.statuses.get_mut(&token) {
                poll.asked.remove(&request_id);
            }
            self.finish_status_if_complete(token);
        }
    }

    pub(super) fn cancel_status(&mut self, token: Token) {
        if let Some(poll) = self.statuses.remove(&token) {
            for request_id in poll.asked.keys() {
                self.waiting.remove(&AnswerKey::Status(*request_id));
            }
        }
    }

    fn finish_status_if_complete(&mut self, token: Token) {
        if self
            .statuses
            .get(&token)
            .is_some_and(|poll| poll.asked.is_empty())
        {
            self.finish_status(token);
        }
    }

    fn finish_status(&mut self, token: Token) {
        if let Some(poll) = self.statuses.remove(&token) {
            for request_id in poll.asked.keys() {
                self.waiting.remove(&AnswerKey::Status(*request_id));
            }
            self.answer(token, Answer::Statuses(poll.replies));
        }
    }
}
