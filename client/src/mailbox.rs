//! Hands answers from the network to the requests waiting for them.
//!
//! The network calls [`Mailbox::deliver`] for every inbound event, on its own tasks; a
//! request registers the key of the answer it waits for (a write's request id, a read id,
//! a status request id) and the node it asked. An answer nobody waits for (say, to an
//! attempt that already timed out) is dropped, and a node's disconnection wakes the
//! requests waiting on it at once, so they retry elsewhere without waiting out a timeout.

use common::message::Message;
use common::node::NodeId;
use common::value::RequestId;
use runtime::network::Inbound;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// What a waiting request waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum WaiterKey {
    /// The answer to a write (the same on every attempt).
    Write(RequestId),
    /// The answer to a ReadIndex or a Read.
    Read(u64),
    /// A StatusReply.
    Status(u64),
}

fn waiter_key(message: &Message) -> Option<WaiterKey> {
    match message {
        Message::WriteDecided { request_id, .. } | Message::WriteRefused { request_id, .. } => {
            Some(WaiterKey::Write(*request_id))
        }
        Message::ReadIndexGranted { read_id, .. }
        | Message::ReadIndexRefused { read_id, .. }
        | Message::ReadReply { read_id, .. }
        | Message::ReadTimedOut { read_id, .. } => Some(WaiterKey::Read(*read_id)),
        Message::StatusReply { request_id, .. } => Some(WaiterKey::Status(*request_id)),
        _ => None,
    }
}

/// What a waiting request receives.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The answer, and the node that sent it.
    Message(NodeId, Message),
    /// The node the request went to disconnected: no answer will come from it.
    Disconnected,
}

struct Waiter {
    token: u64,
    target: NodeId,
    sender: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct MailboxState {
    next_token: u64,
    waiters: HashMap<WaiterKey, Vec<Waiter>>,
}

/// Hands answers from the network to the requests waiting for them.
#[derive(Default)]
pub(crate) struct Mailbox {
    state: Mutex<MailboxState>,
}

impl Mailbox {
    /// Waits for the answer with `key` to a request sent to `target`. Several requests may
    /// wait for one key (a caller retrying a write with the same request id while the
    /// first attempt still runs): each receives the answer.
    pub(crate) fn register(self: &Arc<Self>, key: WaiterKey, target: NodeId) -> Registration {
        let (sender, receiver) = oneshot::channel();
        let mut state = lock(&self.state);
        state.next_token += 1;
        let token = state.next_token;
        state.waiters.entry(key).or_default().push(Waiter {
            token,
            target,
            sender,
        });
        Registration {
            mailbox: Arc::clone(self),
            key,
            token,
            receiver,
        }
    }

    /// Called by the network for every inbound event.
    pub(crate) fn deliver(&self, inbound: Inbound) {
        match inbound {
            Inbound::Message(from, message) => {
                let Some(key) = waiter_key(&message) else {
                    tracing::trace!(%from, ?message, "ignored a message not meant for a client");
                    return;
                };
                let waiters = lock(&self.state).waiters.remove(&key);
                let Some(mut waiters) = waiters else {
                    tracing::debug!(%from, ?key, "dropped an answer nobody waits for");
                    return;
                };
                let last = waiters.pop();
                for waiter in waiters {
                    let _ = waiter.sender.send(Answer::Message(from, message.clone()));
                }
                if let Some(waiter) = last {
                    let _ = waiter.sender.send(Answer::Message(from, message));
                }
            }
            Inbound::Disconnected(node) => {
                let mut abandoned = Vec::new();
                {
                    let mut state = lock(&self.state);
                    for waiters in state.waiters.values_mut() {
                        let mut index = 0;
                        while index < waiters.len() {
                            if waiters[index].target == node {
                                abandoned.push(waiters.swap_remove(index));
                            } else {
                                index += 1;
                            }
                        }
                    }
                    state.waiters.retain(|_, waiters| !waiters.is_empty());
                }
                for waiter in abandoned {
                    let _ = waiter.sender.send(Answer::Disconnected);
                }
            }
            Inbound::Connected(_) => {}
        }
    }

    fn cancel(&self, key: WaiterKey, token: u64) {
        let mut state = lock(&self.state);
        if let Some(waiters) = state.waiters.get_mut(&key) {
            waiters.retain(|waiter| waiter.token != token);
            if waiters.is_empty() {
                state.waiters.remove(&key);
            }
        }
    }
}

/// One request's place in the mailbox; leaving it (drop) stops waiting, so an abandoned
/// HTTP request leaves nothing behind.
pub(crate) struct Registration {
    mailbox: Arc<Mailbox>,
    key: WaiterKey,
    token: u64,
    receiver: oneshot::Receiver<Answer>,
}

impl Registration {
    /// The answer, or None if none came before `deadline`.
    pub(crate) async fn wait_until(&mut self, deadline: Instant) -> Option<Answer> {
        match tokio::time::timeout_at(deadline, &mut self.receiver).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.mailbox.cancel(self.key, self.token);
    }
}

/// Locks `mutex`, ignoring poisoning: every critical section here leaves the data
/// consistent, so a panic elsewhere must not take the client API down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn mailbox_hands_an_answer_to_every_waiter_of_its_key_once() {
        let mailbox = Arc::new(Mailbox::default());
        let request_id = RequestId(7);
        let mut first = mailbox.register(WaiterKey::Write(request_id), NodeId::proposer(1));
        let mut second = mailbox.register(WaiterKey::Write(request_id), NodeId::proposer(2));
        let decided = Message::WriteDecided {
            request_id,
            slot: 4,
            client: NodeId::client(1),
        };
        mailbox.deliver(Inbound::Message(NodeId::proposer(1), decided.clone()));
        let deadline = Instant::now() + Duration::from_secs(1);
        for registration in [&mut first, &mut second] {
            match registration.wait_until(deadline).await {
                Some(Answer::Message(from, message)) => {
                    assert_eq!(from, NodeId::proposer(1));
                    assert_eq!(message, decided);
                }
                other => panic!("expected the decision, got {other:?}"),
            }
        }
        assert!(lock(&mailbox.state).waiters.is_empty());
    }

    #[tokio::test]
    async fn mailbox_wakes_waiters_whose_node_disconnected_and_forgets_dropped_ones() {
        let mailbox = Arc::new(Mailbox::default());
        let mut waiting = mailbox.register(WaiterKey::Read(1), NodeId::learner(1));
        let abandoned = mailbox.register(WaiterKey::Read(2), NodeId::learner(2));
        drop(abandoned);
        mailbox.deliver(Inbound::Disconnected(NodeId::learner(1)));
        let deadline = Instant::now() + Duration::from_secs(1);
        assert!(matches!(
            waiting.wait_until(deadline).await,
            Some(Answer::Disconnected)
        ));
        assert!(lock(&mailbox.state).waiters.is_empty());
    }
}
