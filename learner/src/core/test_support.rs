//! Builders and filters the learner core's unit tests share.

pub(super) use super::{
    Effect, Learner, LearnerOptions, SNAPSHOT_RESEND_TICKS, SNAPSHOT_TRANSFER_TIMEOUT_TICKS,
    SNAPSHOT_WINDOW_CHUNKS, SYNC_BATCH_SLOTS,
};
pub(super) use common::ballot::{Ballot, Slot};
pub(super) use common::message::{
    AcceptedEntry, AppliedRequest, AppliedSlot, AppliedWrite, DecidedEntry, Message, RoleStatus,
    SnapshotChunk, VersionedValue,
};
pub(super) use common::node::{NodeId, Role};
pub(super) use common::value::{Command, RequestId, Value};

pub(super) fn learner() -> Learner {
    Learner::new(LearnerOptions::new(1, 2))
}

pub(super) fn write(request_id: u128, key: &str, value: &str) -> Value {
    Value::Batch(vec![Command::put(
        RequestId(request_id),
        key.to_string(),
        value.to_string(),
    )])
}

pub(super) fn votes(entries: &[(Slot, Ballot, &Value)]) -> Message {
    Message::AcceptedValues {
        entries: entries
            .iter()
            .map(|(slot, ballot, value)| AcceptedEntry {
                slot: *slot,
                ballot: *ballot,
                value: (*value).clone(),
            })
            .collect(),
    }
}

pub(super) fn vote(
    learner: &mut Learner,
    acceptor: u32,
    slot: Slot,
    ballot: Ballot,
    value: &Value,
) -> Vec<Effect> {
    learner.handle(NodeId::acceptor(acceptor), votes(&[(slot, ballot, value)]))
}

pub(super) fn persisted_slots(effects: &[Effect]) -> Vec<Slot> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Persist(entry) => Some(entry.slot),
            _ => None,
        })
        .collect()
}

pub(super) fn ticks(learner: &mut Learner, count: u64) -> Vec<Effect> {
    (0..count).flat_map(|_| learner.tick()).collect()
}

pub(super) fn broadcasts_to(effects: &[Effect], wanted: Role) -> Vec<Message> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Broadcast { role, message } if *role == wanted => Some(message.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn applied_messages(effects: &[Effect], wanted: NodeId) -> Vec<Message> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send { to, message } if *to == wanted => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// A learner that applied slots `1..=count`, slot `n` writing `k<n>` (slot 3 also
/// retries slot 1's request, which must not count as a write).
pub(super) fn applied_learner(options: LearnerOptions, count: Slot) -> Learner {
    let mut learner = Learner::new(options);
    for slot in 1..=count {
        let mut commands = vec![Command::put(
            RequestId(slot as u128),
            format!("k{slot}"),
            format!("v{slot}"),
        )];
        if slot == 3 {
            commands.push(Command::put(RequestId(1), "k1", "v1"));
        }
        for acceptor in [1, 2] {
            vote(
                &mut learner,
                acceptor,
                slot,
                Ballot::new(1, 1),
                &Value::Batch(commands.clone()),
            );
        }
    }
    assert_eq!(learner.applied_slot(), count);
    learner
}

pub(super) fn applied_write(slot: Slot, command_count: u32) -> AppliedSlot {
    AppliedSlot {
        slot,
        command_count,
        writes: vec![AppliedWrite {
            index: 0,
            key: format!("k{slot}"),
            value: format!("v{slot}"),
        }],
    }
}
