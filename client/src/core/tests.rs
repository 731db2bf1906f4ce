//! The core on its own: seeded, every run the same.

use super::*;
use common::message::{AppliedRequest, AppliedWrite};
use common::value::Command;

/// The simulation's timings: attempt 20 ticks, request 120, retry pause 1..=3.
fn options(seed: u64) -> ClientOptions {
    ClientOptions {
        attempt_timeout_ticks: 20,
        request_timeout_ticks: 120,
        retry_pause_ticks: (1, 3),
        ..ClientOptions::new(1, seed)
    }
}

/// A core connected to proposers 1 and 2 and learners 1 and 2.
fn connected_core(seed: u64) -> ClientCore {
    let mut core = ClientCore::new(options(seed));
    for node in [
        NodeId::proposer(1),
        NodeId::proposer(2),
        NodeId::learner(1),
        NodeId::learner(2),
    ] {
        assert!(core.on_connected(node).is_empty());
    }
    core
}

fn write(request_id: u128, session: Option<&str>) -> Request {
    Request::Write {
        command: Command::put(RequestId(request_id), "k", format!("v{request_id}")),
        session: session.map(str::to_string),
    }
}

fn read(consistency: Consistency, session: Option<&str>) -> Request {
    Request::Read {
        key: "k".into(),
        consistency,
        session: session.map(str::to_string),
    }
}

fn sends(effects: &[Effect]) -> Vec<(NodeId, Message)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send { to, message } => Some((*to, message.clone())),
            _ => None,
        })
        .collect()
}

fn answers(effects: &[Effect]) -> Vec<(Token, Answer)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Answer { token, answer } => Some((*token, answer.clone())),
            _ => None,
        })
        .collect()
}

/// Ticks until something is sent or answered (at most `limit` ticks).
fn tick_until_effect(core: &mut ClientCore, limit: u64) -> Vec<Effect> {
    for _ in 0..limit {
        let effects = core.tick();
        if !effects.is_empty() {
            return effects;
        }
    }
    Vec::new()
}

fn the_read(message: &Message) -> (u64, Slot) {
    match message {
        Message::Read {
            read_id, min_slot, ..
        } => (*read_id, *min_slot),
        other => panic!("expected a Read, got {other:?}"),
    }
}

fn the_read_index(message: &Message) -> u64 {
    match message {
        Message::ReadIndex { read_id } => *read_id,
        other => panic!("expected a ReadIndex, got {other:?}"),
    }
}

#[test]
fn a_retried_write_keeps_its_request_id_on_every_attempt() {
    let mut core = connected_core(1);
    let mut request_ids = Vec::new();
    let mut effects = core.request(1, write(42, None));
    for _ in 0..4 {
        let sent = sends(&effects);
        assert_eq!(sent.len(), 1, "{effects:?}");
        match &sent[0].1 {
            Message::Write { command, .. } => request_ids.push(command.request_id),
            other => panic!("expected a Write, got {other:?}"),
        }
        // Nobody answers: the attempt times out and the next goes out after a pause.
        effects = tick_until_effect(&mut core, 30);
        if sends(&effects).is_empty() {
            effects = tick_until_effect(&mut core, 5);
        }
    }
    assert!(
        request_ids.iter().all(|id| *id == RequestId(42)),
        "{request_ids:?}"
    );
}

#[test]
fn a_first_leader_hint_is_followed_at_once_and_a_second_after_a_pause() {
    let mut core = connected_core(2);
    let effects = core.request(1, write(7, None));
    assert_eq!(sends(&effects)[0].0, NodeId::proposer(1));
    let refused = |hint| Message::WriteRefused {
        request_id: RequestId(7),
        leader_hint: Some(hint),
        client: NodeId::client(1),
    };
    let effects = core.on_message(NodeId::proposer(1), refused(2));
    assert_eq!(
        sends(&effects)[0].0,
        NodeId::proposer(2),
        "followed at once"
    );
    assert_eq!(core.believed_leader(), Some(2));
    let effects = core.on_message(NodeId::proposer(2), refused(1));
    assert!(
        sends(&effects).is_empty(),
        "a second hint waits for a pause"
    );
    let effects = tick_until_effect(&mut core, 5);
    assert_eq!(sends(&effects)[0].0, NodeId::proposer(1));
    let decided = Message::WriteDecided {
        request_id: RequestId(7),
        slot: 3,
        client: NodeId::client(1),
    };
    let effects = core.on_message(NodeId::proposer(1), decided);
    assert!(answers(&effects).is_empty(), "not before a learner says");
    assert_eq!(core.believed_leader(), Some(1));
    let effects = answer_outcome(&mut core, &effects, 7, 3, fingerprint_of(7));
    assert_eq!(answers(&effects), [(1, Answer::Written { revision: 3 })]);
    assert!(!core.is_busy());
}

/// The fingerprint of `write(request_id, ..)`'s command.
fn fingerprint_of(request_id: u128) -> u64 {
    let Request::Write { command, .. } = write(request_id, None) else {
        unreachable!()
    };
    command.operation.fingerprint()
}

/// Answers the `Outcome` question among `effects` (asked of a learner once a write was
/// decided): `request_id` was applied at `revision` with `fingerprint`.
fn answer_outcome(
    core: &mut ClientCore,
    effects: &[Effect],
    request_id: u128,
    revision: Slot,
    fingerprint: u64,
) -> Vec<Effect> {
    let Some((learner, read_id, min_slot)) =
        sends(effects)
            .into_iter()
            .find_map(|(to, message)| match message {
                Message::Outcome {
                    read_id, min_slot, ..
                } => Some((to, read_id, min_slot)),
                _ => None,
            })
    else {
        panic!("no Outcome asked in {effects:?}")
    };
    assert_eq!(learner.role, Role::Learner);
    core.on_message(
        learner,
        Message::OutcomeReply {
            read_id,
            outcome: Some(AppliedRequest {
                request_id: RequestId(request_id),
                slot: revision,
                fingerprint,
            }),
            applied_slot: min_slot,
        },
    )
}

#[test]
fn a_write_takes_the_revision_a_learner_applied_it_at_or_a_conflict() {
    let mut core = connected_core(10);
    let decided = |request_id| Message::WriteDecided {
        request_id: RequestId(request_id),
        slot: 9,
        client: NodeId::client(1),
    };
    // Decided again in slot 9 after a leader change, applied at slot 6.
    core.request(1, write(21, None));
    let effects = core.on_message(NodeId::proposer(1), decided(21));
    let effects = answer_outcome(&mut core, &effects, 21, 6, fingerprint_of(21));
    assert_eq!(answers(&effects), [(1, Answer::Written { revision: 6 })]);
    // The request id was another command's: a conflict, not a success.
    core.request(2, write(22, None));
    let effects = core.on_message(NodeId::proposer(1), decided(22));
    let effects = answer_outcome(&mut core, &effects, 22, 4, fingerprint_of(23));
    assert_eq!(
        answers(&effects),
        [(2, Answer::RequestIdTaken { revision: 4 })]
    );
    // A revision after the slot it was decided in is not believed: the next learner is
    // asked.
    core.request(4, write(25, None));
    let effects = core.on_message(NodeId::proposer(1), decided(25));
    let effects = answer_outcome(&mut core, &effects, 25, 10, fingerprint_of(25));
    assert!(answers(&effects).is_empty(), "{effects:?}");
    core.cancel(4);
    // A learner that applied the slot but forgot the request id (beyond the window): the
    // write is not sent again, and the caller hears why.
    core.request(3, write(24, None));
    let effects = core.on_message(NodeId::proposer(1), decided(24));
    let (learner, read_id) = sends(&effects)
        .into_iter()
        .find_map(|(to, message)| match message {
            Message::Outcome { read_id, .. } => Some((to, read_id)),
            _ => None,
        })
        .unwrap();
    let forgot = Message::OutcomeReply {
        read_id,
        outcome: None,
        applied_slot: 9,
    };
    let effects = core.on_message(learner, forgot);
    assert!(
        matches!(
            &answers(&effects)[..],
            [(3, Answer::Unavailable(Unavailable { reason, placed_nowhere: false }))]
                if reason.contains("decided in slot 9")
        ),
        "{effects:?}"
    );
    assert!(
        sends(&effects).is_empty(),
        "not proposed again: {effects:?}"
    );
    assert!(!core.is_busy());
}

#[test]
fn a_write_nobody_answers_is_given_up_at_its_deadline_as_unavailable() {
    let mut core = connected_core(3);
    core.request(5, write(9, None));
    let mut given_up = None;
    for tick in 1..=200 {
        if let Some((token, answer)) = answers(&core.tick()).pop() {
            given_up = Some((tick, token, answer));
            break;
        }
    }
    let (tick, token, answer) = given_up.expect("given up");
    assert_eq!(
        (tick, token),
        (121, 5),
        "the whole request timeout, then give up"
    );
    match answer {
        Answer::Unavailable(unavailable) => assert!(
            unavailable
                .reason
                .starts_with("no proposer decided the write within 1200 ms"),
            "{unavailable}"
        ),
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[test]
fn a_strong_read_asks_the_leader_for_a_read_index_then_reads_at_that_slot() {
    let mut core = connected_core(4);
    let effects = core.request(1, read(Consistency::Strong, None));
    let read_id = the_read_index(&sends(&effects)[0].1);
    let granted = Message::ReadIndexGranted { read_id, slot: 8 };
    let effects = core.on_message(NodeId::proposer(1), granted);
    let (to, message) = sends(&effects).remove(0);
    assert_eq!(to.role, Role::Learner);
    let (read_id, min_slot) = the_read(&message);
    assert_eq!(min_slot, 8);
    let blue = VersionedValue {
        value: "blue".into(),
        create_revision: 2,
        mod_revision: 7,
        version: 3,
    };
    let reply = Message::ReadReply {
        read_id,
        value: Some(blue.clone()),
        applied_slot: 9,
    };
    let effects = core.on_message(to, reply);
    assert_eq!(
        answers(&effects),
        [(
            1,
            Answer::Read(ReadOutcome {
                value: Some(blue),
                applied_slot: 9
            })
        )]
    );
}

#[test]
fn a_strong_read_asks_a_fresh_read_index_after_every_learner_tried_once() {
    let mut core = connected_core(5);
    let effects = core.request(1, read(Consistency::Strong, None));
    let read_id = the_read_index(&sends(&effects)[0].1);
    let effects = core.on_message(
        NodeId::proposer(1),
        Message::ReadIndexGranted { read_id, slot: 8 },
    );
    let mut learner_reads = vec![sends(&effects).remove(0)];
    for _ in 0..2 {
        let (to, message) = learner_reads.last().unwrap().clone();
        let (read_id, _) = the_read(&message);
        let timed_out = Message::ReadTimedOut {
            read_id,
            applied_slot: 5,
        };
        let mut effects = core.on_message(to, timed_out);
        if sends(&effects).is_empty() {
            effects = tick_until_effect(&mut core, 5);
        }
        learner_reads.push(sends(&effects).remove(0));
    }
    let learners: Vec<NodeId> = learner_reads[..2].iter().map(|(to, _)| *to).collect();
    assert_ne!(learners[0], learners[1], "each learner once");
    assert_eq!(
        learner_reads[2].0.role,
        Role::Proposer,
        "then a fresh read index"
    );
    the_read_index(&learner_reads[2].1);
}

#[test]
fn a_session_read_waits_for_the_sessions_slot_and_an_unknown_session_reads_strongly() {
    let mut core = connected_core(6);
    let effects = core.request(1, read(Consistency::Session, Some("s")));
    the_read_index(&sends(&effects)[0].1);
    core.cancel(1);
    core.request(2, write(11, Some("s")));
    let effects = core.on_message(
        NodeId::proposer(1),
        Message::WriteDecided {
            request_id: RequestId(11),
            slot: 13,
            client: NodeId::client(1),
        },
    );
    answer_outcome(&mut core, &effects, 11, 12, fingerprint_of(11));
    assert_eq!(core.session_slot("s"), Some(12), "the write's revision");
    let effects = core.request(3, read(Consistency::Session, Some("s")));
    let (to, message) = sends(&effects).remove(0);
    let (read_id, min_slot) = the_read(&message);
    assert_eq!(min_slot, 12);
    core.on_message(
        to,
        Message::ReadReply {
            read_id,
            value: None,
            applied_slot: 15,
        },
    );
    assert_eq!(
        core.session_slot("s"),
        Some(15),
        "the read moved the session"
    );
}

#[test]
fn an_eventual_read_asks_a_learner_with_min_slot_zero_and_reads_start_at_different_learners() {
    let mut core = connected_core(7);
    let first = sends(&core.request(1, read(Consistency::Eventual, None))).remove(0);
    let second = sends(&core.request(2, read(Consistency::Eventual, None))).remove(0);
    assert_eq!(the_read(&first.1).1, 0);
    assert_ne!(first.0, second.0);
}

#[test]
fn a_disconnection_sends_the_attempt_elsewhere_without_waiting_out_its_timeout() {
    let mut core = connected_core(8);
    let effects = core.request(1, write(3, None));
    assert_eq!(sends(&effects)[0].0, NodeId::proposer(1));
    assert!(core.on_disconnected(NodeId::proposer(1)).is_empty());
    let effects = tick_until_effect(&mut core, 5);
    assert_eq!(sends(&effects)[0].0, NodeId::proposer(2));
}

#[test]
fn an_unsent_attempt_is_retried_after_a_pause_and_counted_in_the_503() {
    let mut core = ClientCore::new(options(9));
    core.on_connected(NodeId::proposer(1));
    let effects = core.request(1, write(4, None));
    let (to, message) = sends(&effects).remove(0);
    core.on_unsent(to, AnswerKey::of(&message).unwrap());
    let effects = tick_until_effect(&mut core, 5);
    assert_eq!(sends(&effects).len(), 1, "tried again");
}

#[test]
fn the_session_table_forgets_the_oldest_session_past_its_capacity() {
    let mut sessions = Sessions::new(2);
    sessions.observe("a", 1);
    sessions.observe("b", 2);
    sessions.observe("a", 5);
    sessions.observe("c", 3);
    assert_eq!(sessions.slot("a"), None);
    assert_eq!(sessions.slot("b"), Some(2));
    assert_eq!(sessions.slot("c"), Some(3));
    assert_eq!(sessions.len(), 2);
}

#[test]
fn a_status_fan_out_answers_with_the_replies_in_by_its_timeout() {
    let mut core = connected_core(10);
    let effects = core.poll_statuses(1, &[NodeId::proposer(1), NodeId::learner(1)]);
    let sent = sends(&effects);
    assert_eq!(sent.len(), 2);
    let Message::StatusRequest { request_id } = sent[1].1 else {
        panic!("expected a status request");
    };
    let status = NodeStatus {
        node: NodeId::learner(1),
        detail: common::message::RoleStatus::Learner {
            applied_slot: 3,
            known_slot_max: 3,
            key_count: 1,
        },
        peers: Vec::new(),
        alarms: Vec::new(),
    };
    let reply = Message::StatusReply { request_id, status };
    assert!(core.on_message(NodeId::learner(1), reply).is_empty());
    let effects = tick_until_effect(&mut core, 100);
    match answers(&effects).pop() {
        Some((1, Answer::Statuses(replies))) => {
            assert_eq!(
                replies.keys().copied().collect::<Vec<_>>(),
                [NodeId::learner(1)]
            )
        }
        other => panic!("expected the statuses, got {other:?}"),
    }
}

fn applied(from_slot: Slot, to_slot: Slot, slots: Vec<AppliedSlot>, stream_id: u64) -> Message {
    Message::Applied {
        stream_id,
        from_slot,
        to_slot,
        slots,
        applied_slot: to_slot - 1,
    }
}

fn applied_slot(slot: Slot, key: &str) -> AppliedSlot {
    AppliedSlot {
        slot,
        command_count: 1,
        writes: vec![AppliedWrite {
            index: 0,
            key: key.into(),
            value: "v".into(),
        }],
    }
}

#[test]
fn the_feed_follows_pushes_and_subscribes_again_when_one_is_missing() {
    let mut core = connected_core(11);
    let effects = core.feed_stream_opened();
    let (learner, subscribe) = sends(&effects).remove(0);
    let Message::Subscribe {
        stream_id,
        from_slot: 0,
    } = subscribe
    else {
        panic!("expected a subscription from the next slot, got {subscribe:?}");
    };
    assert!(core
        .on_message(learner, applied(3, 3, vec![], stream_id))
        .is_empty());
    assert_eq!(
        core.feed_next_slot(),
        3,
        "the first push names the position"
    );
    let effects = core.on_message(
        learner,
        applied(
            3,
            5,
            vec![applied_slot(3, "a"), applied_slot(4, "b")],
            stream_id,
        ),
    );
    assert!(
        matches!(&effects[..], [Effect::FeedApplied { next_slot: 5, slots }] if slots.len() == 2)
    );
    let effects = core.on_message(
        learner,
        applied(
            4,
            6,
            vec![applied_slot(4, "b"), applied_slot(5, "c")],
            stream_id,
        ),
    );
    assert!(
        matches!(&effects[..], [Effect::FeedApplied { next_slot: 6, slots }] if slots.len() == 1),
        "slot 4 was pushed twice, handed on once: {effects:?}"
    );
    // A push that skips slot 6 means one was lost: the feed subscribes again from 6.
    let effects = core.on_message(
        learner,
        applied(7, 8, vec![applied_slot(7, "d")], stream_id),
    );
    let sent = sends(&effects);
    assert!(matches!(sent[0].1, Message::Unsubscribe { .. }), "{sent:?}");
    assert!(
        matches!(sent[1].1, Message::Subscribe { from_slot: 6, .. }),
        "{sent:?}"
    );
    assert_eq!(core.feed_next_slot(), 6);
}

#[test]
fn the_feed_subscribes_elsewhere_when_its_learner_disconnects() {
    let mut core = connected_core(12);
    let (learner, _) = sends(&core.feed_stream_opened()).remove(0);
    let effects = core.on_disconnected(learner);
    let (other, message) = sends(&effects).remove(0);
    assert_ne!(other, learner);
    assert!(matches!(message, Message::Subscribe { .. }));
}

/// Runs a fixed script of requests, silences and refusals; returns every effect.
fn scripted_run(seed: u64) -> Vec<Effect> {
    let mut core = connected_core(seed);
    let mut all = Vec::new();
    for token in 1..=5 {
        all.extend(core.request(token, write(u128::from(token), Some("s"))));
        all.extend(core.request(100 + token, read(Consistency::Eventual, None)));
    }
    for _ in 0..300 {
        all.extend(core.tick());
    }
    all
}

#[test]
fn the_same_seed_replays_the_same_messages_and_another_seed_jitters_differently() {
    assert_eq!(scripted_run(21), scripted_run(21));
    let runs: Vec<Vec<Effect>> = (22..26).map(scripted_run).collect();
    assert!(
        runs.windows(2).any(|pair| pair[0] != pair[1]),
        "the retry pauses come from the seed"
    );
}

#[test]
fn a_restarted_core_does_not_reuse_the_read_ids_of_its_previous_life() {
    let first_read_id = |seed| {
        let mut core = connected_core(seed);
        the_read(&sends(&core.request(1, read(Consistency::Eventual, None)))[0].1).0
    };
    assert_ne!(first_read_id(31), first_read_id(32));
    assert_eq!(
        first_read_id(31),
        first_read_id(31),
        "and the seed replays it"
    );
}

fn proposers(ids: &[u32]) -> Vec<NodeId> {
    ids.iter().map(|id| NodeId::proposer(*id)).collect()
}

#[test]
fn choose_prefers_the_believed_leader_when_it_is_connected() {
    let connected = proposers(&[1, 2, 3]);
    assert_eq!(choose(&connected, Some(2), None), Some(NodeId::proposer(2)));
    assert_eq!(choose(&connected, Some(9), None), Some(NodeId::proposer(1)));
}

#[test]
fn choose_rotates_after_the_last_tried_and_wraps_around() {
    let connected = proposers(&[1, 3]);
    assert_eq!(choose(&connected, None, Some(1)), Some(NodeId::proposer(3)));
    assert_eq!(choose(&connected, None, Some(3)), Some(NodeId::proposer(1)));
    assert_eq!(choose(&[], Some(1), Some(1)), None);
}

/// The `ReadApplied` of a fetch sent in `effects`: to whom, and its stream id.
fn read_applied(effects: &[Effect]) -> (NodeId, u64) {
    match sends(effects).as_slice() {
        [(
            to,
            Message::ReadApplied {
                stream_id,
                from_slot: 5,
                ..
            },
        )] => (*to, *stream_id),
        other => panic!("expected one ReadApplied from slot 5, got {other:?}"),
    }
}

#[test]
fn a_fetch_asks_the_next_learner_after_a_too_old_answer_and_a_silent_one_and_says_too_old() {
    let mut core = connected_core(11);
    let (first, stream_id) = read_applied(&core.fetch(7, 5, 1));
    assert_eq!(
        first,
        NodeId::learner(2),
        "turn 1 starts at the second learner"
    );
    let too_old = Message::SubscriptionTooOld {
        stream_id,
        oldest_available_slot: 9,
        applied_slot: 20,
    };
    let (second, _) = read_applied(&core.on_message(first, too_old));
    assert_eq!(second, NodeId::learner(1));
    let effects = tick_until_effect(&mut core, 1_000);
    assert_eq!(
        answers(&effects),
        vec![(
            7,
            Answer::Fetched(FetchAnswer::TooOld {
                oldest_available_slot: 9
            })
        )],
        "the second learner stayed silent: the first one's verdict stands"
    );
}

#[test]
fn a_fetch_passes_a_learner_that_has_not_applied_the_slot_and_takes_the_next_ones_writes() {
    let mut core = connected_core(12);
    let (first, stream_id) = read_applied(&core.fetch(3, 5, 0));
    let not_yet = Message::Applied {
        stream_id,
        from_slot: 5,
        to_slot: 5,
        slots: Vec::new(),
        applied_slot: 4,
    };
    let (second, stream_id) = read_applied(&core.on_message(first, not_yet));
    assert_ne!(second, first);
    let writes = Message::Applied {
        stream_id,
        from_slot: 5,
        to_slot: 8,
        slots: Vec::new(),
        applied_slot: 7,
    };
    assert_eq!(
        answers(&core.on_message(second, writes)),
        vec![(
            3,
            Answer::Fetched(FetchAnswer::Applied {
                to_slot: 8,
                slots: Vec::new()
            })
        )]
    );
}

#[test]
fn a_fetch_without_a_connected_learner_is_unavailable_at_once() {
    let mut core = ClientCore::new(options(13));
    assert_eq!(
        answers(&core.fetch(1, 5, 0)),
        vec![(1, Answer::Fetched(FetchAnswer::Unavailable))]
    );
}

#[test]
fn a_write_that_failed_for_lack_of_space_is_answered_unavailable_at_once_with_the_reason() {
    let mut core = connected_core(2);
    core.request(1, write(7, None));
    let effects = core.on_message(
        NodeId::proposer(1),
        Message::WriteFailed {
            request_id: RequestId(7),
            reason: "no space: acceptor1, acceptor2 cannot make votes durable".into(),
            client: NodeId::client(1),
        },
    );
    assert_eq!(
        answers(&effects),
        [(
            1,
            Answer::Unavailable(Unavailable {
                reason: "no space: acceptor1, acceptor2 cannot make votes durable".into(),
                placed_nowhere: true,
            })
        )]
    );
    assert!(!core.is_busy());
}
