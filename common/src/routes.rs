//! Who may send what to whom: the one table the network checks every inbound message
//! against, before any core sees it.
//!
//! The sender's role is the one its certificate proves (see `runtime::tls`), so a learner
//! cannot forge an acceptor's vote, nor anyone but a learner a `Decided`. A message whose
//! (kind, sender role, receiver role) is not in [`ROUTES`] is dropped, counted and logged
//! by the network (once per peer and kind), never handled. The health probe of a node's
//! own admin listener ([`NodeId::HEALTH_PROBE`]) may only ask for status. Status itself may
//! pass between any two nodes: it is metadata, never a value.

use crate::message::Message;
use crate::node::{NodeId, Role};

/// The kind of a [`Message`], without its contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // each variant is the message of the same name
pub enum MessageKind {
    Hello,
    Prepare,
    Promise,
    Accept,
    Accepted,
    Rejected,
    AcceptedValues,
    SyncAccepted,
    Confirm,
    Confirmed,
    Heartbeat,
    Write,
    WriteDecided,
    WriteRefused,
    WriteFailed,
    NoSpace,
    ReadIndex,
    ReadIndexGranted,
    ReadIndexRefused,
    Read,
    ReadReply,
    ReadTimedOut,
    Outcome,
    OutcomeReply,
    SyncDecided,
    Decided,
    LearnerProgress,
    Trim,
    Trimmed,
    StatusRequest,
    StatusReply,
    Subscribe,
    Unsubscribe,
    ReadApplied,
    Applied,
    SubscriptionTooOld,
    SnapshotChunk,
    SnapshotRequest,
    SnapshotAck,
}

impl Message {
    /// This message's kind.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Hello { .. } => MessageKind::Hello,
            Message::Prepare { .. } => MessageKind::Prepare,
            Message::Promise { .. } => MessageKind::Promise,
            Message::Accept { .. } => MessageKind::Accept,
            Message::Accepted { .. } => MessageKind::Accepted,
            Message::Rejected { .. } => MessageKind::Rejected,
            Message::AcceptedValues { .. } => MessageKind::AcceptedValues,
            Message::SyncAccepted { .. } => MessageKind::SyncAccepted,
            Message::Confirm { .. } => MessageKind::Confirm,
            Message::Confirmed { .. } => MessageKind::Confirmed,
            Message::Heartbeat { .. } => MessageKind::Heartbeat,
            Message::Write { .. } => MessageKind::Write,
            Message::WriteDecided { .. } => MessageKind::WriteDecided,
            Message::WriteRefused { .. } => MessageKind::WriteRefused,
            Message::WriteFailed { .. } => MessageKind::WriteFailed,
            Message::NoSpace { .. } => MessageKind::NoSpace,
            Message::ReadIndex { .. } => MessageKind::ReadIndex,
            Message::ReadIndexGranted { .. } => MessageKind::ReadIndexGranted,
            Message::ReadIndexRefused { .. } => MessageKind::ReadIndexRefused,
            Message::Read { .. } => MessageKind::Read,
            Message::ReadReply { .. } => MessageKind::ReadReply,
            Message::ReadTimedOut { .. } => MessageKind::ReadTimedOut,
            Message::Outcome { .. } => MessageKind::Outcome,
            Message::OutcomeReply { .. } => MessageKind::OutcomeReply,
            Message::SyncDecided { .. } => MessageKind::SyncDecided,
            Message::Decided { .. } => MessageKind::Decided,
            Message::LearnerProgress { .. } => MessageKind::LearnerProgress,
            Message::Trim { .. } => MessageKind::Trim,
            Message::Trimmed { .. } => MessageKind::Trimmed,
            Message::StatusRequest { .. } => MessageKind::StatusRequest,
            Message::StatusReply { .. } => MessageKind::StatusReply,
            Message::Subscribe { .. } => MessageKind::Subscribe,
            Message::Unsubscribe { .. } => MessageKind::Unsubscribe,
            Message::ReadApplied { .. } => MessageKind::ReadApplied,
            Message::Applied { .. } => MessageKind::Applied,
            Message::SubscriptionTooOld { .. } => MessageKind::SubscriptionTooOld,
            Message::SnapshotChunk { .. } => MessageKind::SnapshotChunk,
            Message::SnapshotRequest => MessageKind::SnapshotRequest,
            Message::SnapshotAck { .. } => MessageKind::SnapshotAck,
        }
    }
}

use MessageKind as K;
use Role::{Acceptor as A, Client as C, Learner as L, Proposer as P};

/// Every permitted (message, sender role, receiver role). docs/PROTOCOL.md has the same
/// table in words.
pub const ROUTES: &[(MessageKind, Role, Role)] = &[
    // Phase 1 and 2, and leadership confirmation for strong reads.
    (K::Prepare, P, A),
    (K::Accept, P, A),
    (K::Confirm, P, A),
    (K::Promise, A, P),
    (K::Accepted, A, P),
    (K::Rejected, A, P),
    (K::Confirmed, A, P),
    (K::NoSpace, A, P),
    // Votes to the learners, and the learners asking for them again.
    (K::AcceptedValues, A, L),
    (K::SyncAccepted, L, A),
    // Leadership and progress.
    (K::Heartbeat, P, P),
    (K::Heartbeat, P, L),
    (K::LearnerProgress, L, P),
    // Trimming: the leader tells the acceptors what they may forget; asked for a
    // forgotten slot, an acceptor says so.
    (K::Trim, P, A),
    (K::Trimmed, A, P),
    (K::Trimmed, A, L),
    // Writes: a client API to any proposer, a follower forwards to the leader, and the
    // answer comes back the same way.
    (K::Write, C, P),
    (K::Write, P, P),
    (K::WriteDecided, P, C),
    (K::WriteDecided, P, P),
    (K::WriteRefused, P, C),
    (K::WriteRefused, P, P),
    (K::WriteFailed, P, C),
    (K::WriteFailed, P, P),
    // Reads.
    (K::ReadIndex, C, P),
    (K::ReadIndexGranted, P, C),
    (K::ReadIndexRefused, P, C),
    (K::Read, C, L),
    (K::ReadReply, L, C),
    (K::ReadTimedOut, L, C),
    (K::Outcome, C, L),
    (K::OutcomeReply, L, C),
    // Gap filling between learners.
    (K::SyncDecided, L, L),
    (K::Decided, L, L),
    (K::SnapshotChunk, L, L),
    (K::SnapshotRequest, L, L),
    (K::SnapshotAck, L, L),
    // Change notifications.
    (K::Subscribe, C, L),
    (K::Unsubscribe, C, L),
    (K::ReadApplied, C, L),
    (K::Applied, L, C),
    (K::SubscriptionTooOld, L, C),
    // Status (StatusRequest / StatusReply) is not listed: any node may ask any other, as it
    // carries only metadata (ballots, slot numbers, counts, links, alarms), never a value.
];

/// Whether `sender` may send a message of `kind` to a node of role `receiver`. `Hello`
/// belongs to the network itself and never reaches this check.
pub fn permitted(kind: MessageKind, sender: NodeId, receiver: Role) -> bool {
    if sender == NodeId::HEALTH_PROBE {
        return kind == MessageKind::StatusRequest;
    }
    if matches!(kind, MessageKind::StatusRequest | MessageKind::StatusReply) {
        return true;
    }
    ROUTES
        .iter()
        .any(|&(route_kind, from, to)| route_kind == kind && from == sender.role && to == receiver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_learners_send_decided_and_only_proposers_prepare() {
        assert!(permitted(K::Decided, NodeId::learner(2), L));
        assert!(!permitted(K::Decided, NodeId::client(1), L));
        assert!(!permitted(K::Decided, NodeId::acceptor(1), L));
        assert!(!permitted(K::Decided, NodeId::proposer(1), L));
        assert!(permitted(K::Prepare, NodeId::proposer(1), A));
        assert!(!permitted(K::Prepare, NodeId::learner(1), A));
        assert!(!permitted(K::SyncAccepted, NodeId::client(1), A));
        assert!(!permitted(K::AcceptedValues, NodeId::learner(1), L));
    }

    #[test]
    fn the_health_probe_may_only_ask_for_status() {
        assert!(permitted(K::StatusRequest, NodeId::HEALTH_PROBE, A));
        assert!(!permitted(K::Write, NodeId::HEALTH_PROBE, P));
        assert!(!permitted(K::Read, NodeId::HEALTH_PROBE, L));
    }

    #[test]
    fn no_route_carries_hello_and_every_route_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for route in ROUTES {
            assert_ne!(route.0, K::Hello);
            assert!(seen.insert(*route), "{route:?} is listed twice");
        }
    }
}
