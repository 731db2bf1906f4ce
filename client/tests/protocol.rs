//! The client API against scripted fake proposers and learners: what it sends, how it
//! retries, and what it answers.

mod support;

use common::ballot::Ballot;
use common::message::{
    AppliedRequest, Message, NodeStatus, PeerStatus, ProposerState, RoleStatus, VersionedValue,
};
use common::node::NodeId;
use common::value::Operation;
use serde_json::json;
use std::time::{Duration, Instant};
use support::{applying_learner, config, get, outcome_reply, post, FakeNode};

/// A proposer that decides every write in `slot` and grants every read index at `slot`.
fn leader_script(slot: u64) -> impl FnMut(NodeId, &Message) -> Vec<Message> + Send {
    move |_, message| match message {
        Message::Write { command, client } => vec![Message::WriteDecided {
            request_id: command.request_id,
            slot,
            client: *client,
        }],
        Message::ReadIndex { read_id } => vec![Message::ReadIndexGranted {
            read_id: *read_id,
            slot,
        }],
        _ => Vec::new(),
    }
}

/// A learner holding `value` for every key, having applied `applied_slot`.
fn learner_script(
    value: &'static str,
    applied_slot: u64,
) -> impl FnMut(NodeId, &Message) -> Vec<Message> + Send {
    move |_, message| match message {
        Message::Read { read_id, .. } => vec![Message::ReadReply {
            read_id: *read_id,
            value: Some(VersionedValue {
                value: value.to_string(),
                create_revision: 1,
                mod_revision: applied_slot,
                version: 2,
            }),
            applied_slot,
        }],
        _ => outcome_reply(message, 0).into_iter().collect(),
    }
}

fn writes(node: &FakeNode) -> Vec<common::value::Command> {
    node.received()
        .into_iter()
        .filter_map(|message| match message {
            Message::Write { command, .. } => Some(command),
            _ => None,
        })
        .collect()
}

/// The min_slot of every Read a learner received.
fn read_min_slots(node: &FakeNode) -> Vec<u64> {
    node.received()
        .into_iter()
        .filter_map(|message| match message {
            Message::Read { min_slot, .. } => Some(min_slot),
            _ => None,
        })
        .collect()
}

fn read_indexes(node: &FakeNode) -> usize {
    node.received()
        .iter()
        .filter(|message| matches!(message, Message::ReadIndex { .. }))
        .count()
}

#[tokio::test]
async fn a_write_answers_the_revision_a_learner_applied_it_at_and_its_request_id() {
    let proposer = FakeNode::start(NodeId::proposer(1), leader_script(9)).await;
    // Decided in slot 9 (a retry decided twice, say), applied at slot 7.
    let learner = FakeNode::start(NodeId::learner(1), applying_learner(2)).await;
    let handle = client::start(config(&[&proposer], &[&learner], 5000))
        .await
        .unwrap();
    let (status, answer) = post(
        format!("http://{}/write", handle.address()),
        json!({"key": "colour", "value": "blue", "session_id": "s1"}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["key"], "colour");
    assert_eq!(answer["value"], "blue");
    assert_eq!(answer["revision"], 7);
    assert_eq!(answer["slot"], 7);
    assert_eq!(answer["session_id"], "s1");
    let sent = writes(&proposer);
    assert_eq!(sent.len(), 1);
    assert_eq!(answer["request_id"], sent[0].request_id.to_string());
    assert_eq!(sent[0].operation.as_put(), Some(("colour", "blue")));
    // The learner was asked about that request, once slot 9 is applied.
    let asked: Vec<Message> = learner
        .received()
        .into_iter()
        .filter(|message| matches!(message, Message::Outcome { .. }))
        .collect();
    assert!(
        matches!(&asked[..], [Message::Outcome { request_id, min_slot: 9, .. }] if *request_id == sent[0].request_id),
        "{asked:?}"
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refused_write_is_retried_on_the_hinted_leader_with_the_same_request_id() {
    let follower = FakeNode::start(NodeId::proposer(1), |_, message| match message {
        Message::Write { command, client } => vec![Message::WriteRefused {
            request_id: command.request_id,
            leader_hint: Some(2),
            client: *client,
        }],
        _ => Vec::new(),
    })
    .await;
    let leader = FakeNode::start(NodeId::proposer(2), leader_script(4)).await;
    let learner = FakeNode::start(NodeId::learner(1), applying_learner(0)).await;
    let handle = client::start(config(&[&follower, &leader], &[&learner], 5000))
        .await
        .unwrap();
    // With both connected, the first attempt goes to proposer 1 (no leader known yet, so
    // the lowest id).
    follower.wait_for_client().await;
    leader.wait_for_client().await;
    let request_id = "0b7e2c9a-5d4f-4e21-8c3b-6a1f0e9d8c7b";
    let (status, answer) = post(
        format!("http://{}/write", handle.address()),
        json!({"key": "k", "value": "v", "request_id": request_id}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["slot"], 4);
    assert_eq!(answer["request_id"], request_id);
    let refused = writes(&follower);
    let decided = writes(&leader);
    assert_eq!(refused.len(), 1, "one attempt at the follower");
    assert_eq!(decided.len(), 1, "one attempt at the hinted leader");
    assert_eq!(refused[0].request_id.to_string(), request_id);
    assert_eq!(decided[0].request_id, refused[0].request_id);

    // The leader is now known: the next write goes straight to it.
    let (status, _) = post(
        format!("http://{}/write", handle.address()),
        json!({"key": "k", "value": "w"}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        writes(&follower).len(),
        1,
        "the follower is not asked again"
    );
    assert_eq!(writes(&leader).len(), 2);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_id_taken_by_another_command_is_a_409_and_a_true_retry_its_revision() {
    let proposer = FakeNode::start(NodeId::proposer(1), leader_script(5)).await;
    // The learner applied, at slot 3, a put of "k" = "first" under that request id.
    let first = Operation::Put {
        key: "k".into(),
        value: "first".into(),
    };
    let learner = FakeNode::start(NodeId::learner(1), move |_, message| match message {
        Message::Outcome {
            read_id,
            request_id,
            min_slot,
        } => vec![Message::OutcomeReply {
            read_id: *read_id,
            outcome: Some(AppliedRequest {
                request_id: *request_id,
                slot: 3,
                fingerprint: first.fingerprint(),
            }),
            applied_slot: *min_slot,
        }],
        _ => Vec::new(),
    })
    .await;
    let handle = client::start(config(&[&proposer], &[&learner], 5000))
        .await
        .unwrap();
    let url = format!("http://{}/write", handle.address());
    let request_id = "3e1f0c2a-7b6d-4a59-9c8e-0d1f2e3a4b5c";
    let (status, answer) = post(
        url.clone(),
        json!({"key": "k", "value": "second", "request_id": request_id}).to_string(),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("already used"), "{error}");
    assert!(error.contains("revision 3"), "{error}");
    assert_eq!(answer["request_id"], request_id);
    let (status, answer) = post(
        url,
        json!({"key": "k", "value": "first", "request_id": request_id}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "a true retry: {answer}");
    assert_eq!(answer["revision"], 3, "the original outcome");
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_write_nobody_decides_is_a_503_naming_the_request_id_after_the_timeout() {
    let silent = FakeNode::silent(NodeId::proposer(1)).await;
    let learner = FakeNode::silent(NodeId::learner(1)).await;
    let handle = client::start(config(&[&silent], &[&learner], 400))
        .await
        .unwrap();
    let request_id = "1c9d3e7f-2a4b-4c6d-8e0f-123456789abc";
    let started = Instant::now();
    let (status, answer) = post(
        format!("http://{}/write", handle.address()),
        json!({"key": "k", "value": "v", "request_id": request_id}).to_string(),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(status, 503, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains(request_id), "{error}");
    assert!(error.contains("unknown"), "{error}");
    assert!(error.contains("at most once"), "{error}");
    assert_eq!(answer["request_id"], request_id);
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2000), "{elapsed:?}");
    assert!(writes(&silent)
        .iter()
        .all(|command| command.request_id.to_string() == request_id));
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn reads_and_writes_are_a_503_when_no_node_is_reachable() {
    // Ports that were just free: nothing listens there.
    let unreachable = || {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let config = client::config::ClientConfig {
        security: runtime::config::Security::Insecure,
        id: 1,
        listen: "127.0.0.1:0".to_string(),
        proposer_hosts: vec![unreachable()],
        learner_hosts: vec![unreachable()],
        request_timeout_milliseconds: 200,
        data_dir: None,
        subscription_buffer_events: 1024,
        subscription_buffer_bytes: 1 << 20,
        header_timeout_milliseconds: 10_000,
        idle_timeout_milliseconds: 60_000,
        max_connections: 10_000,
    };
    let handle = client::start(config).await.unwrap();
    let base = format!("http://{}", handle.address());
    let (status, answer) = post(
        format!("{base}/write"),
        json!({"key": "k", "value": "v"}).to_string(),
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("no proposer is connected"));
    for consistency in ["strong", "eventual"] {
        let (status, answer) = post(
            format!("{base}/read"),
            json!({"key": "k", "consistency": consistency}).to_string(),
        )
        .await;
        assert_eq!(status, 503, "{consistency}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(consistency));
    }
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_strong_read_asks_the_leader_for_a_read_index_then_reads_at_that_slot() {
    let proposer = FakeNode::start(NodeId::proposer(1), leader_script(7)).await;
    let learner = FakeNode::start(NodeId::learner(1), learner_script("blue", 7)).await;
    let handle = client::start(config(&[&proposer], &[&learner], 5000))
        .await
        .unwrap();
    let (status, answer) = post(
        format!("http://{}/read", handle.address()),
        json!({"key": "colour"}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "key": "colour",
            "value": "blue",
            "consistency": "strong",
            "slot": 7,
            "revision": 7,
            "create_revision": 1,
            "mod_revision": 7,
            "version": 2
        })
    );
    assert_eq!(read_indexes(&proposer), 1);
    assert_eq!(read_min_slots(&learner), vec![7]);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refused_read_index_is_retried_on_the_hinted_leader() {
    let follower = FakeNode::start(NodeId::proposer(1), |_, message| match message {
        Message::ReadIndex { read_id } => vec![Message::ReadIndexRefused {
            read_id: *read_id,
            leader_hint: Some(2),
        }],
        _ => Vec::new(),
    })
    .await;
    let leader = FakeNode::start(NodeId::proposer(2), leader_script(11)).await;
    let learner = FakeNode::start(NodeId::learner(1), learner_script("v", 11)).await;
    let handle = client::start(config(&[&follower, &leader], &[&learner], 5000))
        .await
        .unwrap();
    follower.wait_for_client().await;
    leader.wait_for_client().await;
    let (status, answer) = post(
        format!("http://{}/read", handle.address()),
        json!({"key": "k", "consistency": "strong"}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(read_indexes(&follower), 1);
    assert_eq!(read_indexes(&leader), 1);
    assert_eq!(read_min_slots(&learner), vec![11]);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_read_the_first_learner_times_out_is_answered_by_the_other() {
    let proposer = FakeNode::start(NodeId::proposer(1), leader_script(5)).await;
    let lagging = FakeNode::start(NodeId::learner(1), |_, message| match message {
        Message::Read { read_id, .. } => vec![Message::ReadTimedOut {
            read_id: *read_id,
            applied_slot: 2,
        }],
        _ => Vec::new(),
    })
    .await;
    let current = FakeNode::start(NodeId::learner(2), learner_script("v", 6)).await;
    let handle = client::start(config(&[&proposer], &[&lagging, &current], 5000))
        .await
        .unwrap();
    lagging.wait_for_client().await;
    current.wait_for_client().await;
    // Reads start at a different learner each time: two reads reach the lagging one once.
    for _ in 0..2 {
        let (status, answer) = post(
            format!("http://{}/read", handle.address()),
            json!({"key": "k"}).to_string(),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["slot"], 6);
    }
    assert_eq!(read_min_slots(&lagging), vec![5]);
    assert_eq!(read_min_slots(&current), vec![5, 5]);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_session_read_waits_for_the_slot_of_the_sessions_write() {
    let proposer = FakeNode::start(NodeId::proposer(1), leader_script(12)).await;
    let learner = FakeNode::start(NodeId::learner(1), learner_script("mine", 12)).await;
    let handle = client::start(config(&[&proposer], &[&learner], 5000))
        .await
        .unwrap();
    let base = format!("http://{}", handle.address());
    let (status, _) = post(
        format!("{base}/write"),
        json!({"key": "k", "value": "mine", "session_id": "alice"}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, answer) = post(
        format!("{base}/read"),
        json!({"key": "k", "consistency": "session", "session_id": "alice"}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["value"], "mine");
    assert_eq!(answer["consistency"], "session");
    assert_eq!(answer["slot"], 12);
    assert_eq!(read_min_slots(&learner), vec![12]);
    assert_eq!(
        read_indexes(&proposer),
        0,
        "a known session needs no read index"
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_session_this_client_api_does_not_know_reads_strongly_then_is_remembered() {
    let proposer = FakeNode::start(NodeId::proposer(1), leader_script(3)).await;
    let learner = FakeNode::start(NodeId::learner(1), learner_script("v", 8)).await;
    let handle = client::start(config(&[&proposer], &[&learner], 5000))
        .await
        .unwrap();
    let read = json!({"key": "k", "consistency": "session", "session_id": "bob"}).to_string();
    let url = format!("http://{}/read", handle.address());
    let (status, answer) = post(url.clone(), read.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        read_indexes(&proposer),
        1,
        "an unknown session reads strongly"
    );
    let (status, _) = post(url, read).await;
    assert_eq!(status, 200);
    assert_eq!(read_indexes(&proposer), 1, "the session is known now");
    // The second read must not go below what the first one observed (slot 8).
    assert_eq!(read_min_slots(&learner), vec![3, 8]);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_eventual_read_asks_a_learner_with_min_slot_zero() {
    let proposer = FakeNode::silent(NodeId::proposer(1)).await;
    let learner = FakeNode::start(NodeId::learner(1), |_, message| match message {
        Message::Read { read_id, .. } => vec![Message::ReadReply {
            read_id: *read_id,
            value: None,
            applied_slot: 2,
        }],
        _ => Vec::new(),
    })
    .await;
    let handle = client::start(config(&[&proposer], &[&learner], 5000))
        .await
        .unwrap();
    let (status, answer) = post(
        format!("http://{}/read", handle.address()),
        json!({"key": "absent", "consistency": "eventual"}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"key": "absent", "value": null, "consistency": "eventual", "slot": 2, "revision": 2}),
        "a missing key has no revisions of its own"
    );
    assert_eq!(read_min_slots(&learner), vec![0]);
    assert!(
        proposer.received().is_empty(),
        "an eventual read skips the leader"
    );
    handle.shutdown().await.unwrap();
}

fn status_reply(
    request_id: u64,
    node: NodeId,
    detail: RoleStatus,
    peers: Vec<PeerStatus>,
) -> Message {
    Message::StatusReply {
        request_id,
        status: NodeStatus {
            node,
            detail,
            peers,
            alarms: Vec::new(),
        },
    }
}

#[tokio::test]
async fn status_lists_every_node_and_the_leader_and_marks_a_silent_node_unhealthy() {
    let acceptor = FakeNode::start(NodeId::acceptor(1), |_, message| match message {
        Message::StatusRequest { request_id } => vec![status_reply(
            *request_id,
            NodeId::acceptor(1),
            RoleStatus::Acceptor {
                promised_ballot: Ballot::new(3, 1),
                accepted_slot_max: 40,
                accepted_slot_count: 40,
                trimmed_slot: 0,
                storage_fault: None,
            },
            Vec::new(),
        )],
        _ => Vec::new(),
    })
    .await;
    let acceptor_address = acceptor.address.clone();
    let proposer = FakeNode::start(NodeId::proposer(1), move |_, message| match message {
        Message::StatusRequest { request_id } => vec![status_reply(
            *request_id,
            NodeId::proposer(1),
            RoleStatus::Proposer {
                state: ProposerState::Leader,
                ballot: Ballot::new(3, 1),
                leader: Some(1),
                decided_slot_max: 42,
            },
            vec![PeerStatus {
                address: acceptor_address.clone(),
                node: Some(NodeId::acceptor(1)),
                connected: true,
            }],
        )],
        _ => Vec::new(),
    })
    .await;
    let learner = FakeNode::start(NodeId::learner(1), |_, message| match message {
        Message::StatusRequest { request_id } => vec![status_reply(
            *request_id,
            NodeId::learner(1),
            RoleStatus::Learner {
                applied_slot: 42,
                known_slot_max: 42,
                key_count: 5,
            },
            Vec::new(),
        )],
        _ => Vec::new(),
    })
    .await;
    let silent_learner = FakeNode::silent(NodeId::learner(2)).await;
    let handle = client::start(config(&[&proposer], &[&learner, &silent_learner], 5000))
        .await
        .unwrap();
    let url = format!("http://{}/status", handle.address());
    let mut answer = json!(null);
    // The first polls may precede the connections and the acceptor's discovery.
    for _ in 0..20 {
        let (status, body) = get(url.clone()).await;
        assert_eq!(status, 200, "{body}");
        answer = body;
        let healthy = answer["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|node| node["healthy"] == true)
            .count();
        if healthy == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        answer["leader"],
        json!({"proposer": 1, "ballot": "3.1"}),
        "{answer}"
    );
    let nodes = answer["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes
        .iter()
        .map(|node| node["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["acceptor1", "proposer1", "learner1", "learner2"],
        "{answer}"
    );
    let acceptor_entry = &nodes[0];
    assert_eq!(acceptor_entry["healthy"], true, "{answer}");
    assert_eq!(acceptor_entry["role"], "acceptor");
    assert_eq!(acceptor_entry["address"], acceptor.address);
    assert_eq!(acceptor_entry["promised_ballot"], "3.1");
    assert_eq!(acceptor_entry["accepted_slot_max"], 40);
    assert_eq!(acceptor_entry["storage"], "ok");
    let proposer_entry = &nodes[1];
    assert_eq!(proposer_entry["healthy"], true);
    assert_eq!(proposer_entry["state"], "leader");
    assert_eq!(proposer_entry["ballot"], "3.1");
    assert_eq!(proposer_entry["leader"], 1);
    let learner_entry = &nodes[2];
    assert_eq!(learner_entry["healthy"], true);
    assert_eq!(learner_entry["id"], 1);
    assert_eq!(learner_entry["applied_slot"], 42);
    assert_eq!(learner_entry["key_count"], 5);
    let silent_entry = &nodes[3];
    assert_eq!(silent_entry["healthy"], false, "{answer}");
    assert_eq!(silent_entry["role"], "learner");
    assert_eq!(silent_entry["address"], silent_learner.address);
    assert!(silent_entry.get("applied_slot").is_none());
    assert_eq!(answer["learners"], json!([{"id": 1, "applied_slot": 42}]));
    assert_eq!(answer["quorum"]["available"], true, "{answer}");
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn status_shows_an_acceptor_with_a_corrupt_log_as_refusing_to_vote() {
    let acceptor = FakeNode::start(NodeId::acceptor(1), |_, message| match message {
        Message::StatusRequest { request_id } => vec![status_reply(
            *request_id,
            NodeId::acceptor(1),
            RoleStatus::Acceptor {
                promised_ballot: Ballot::ZERO,
                accepted_slot_max: 0,
                accepted_slot_count: 0,
                trimmed_slot: 0,
                storage_fault: Some("log /data/acceptor.wal is corrupt at byte 16".into()),
            },
            Vec::new(),
        )],
        _ => Vec::new(),
    })
    .await;
    let acceptor_address = acceptor.address.clone();
    let proposer = FakeNode::start(NodeId::proposer(1), move |_, message| match message {
        Message::StatusRequest { request_id } => vec![status_reply(
            *request_id,
            NodeId::proposer(1),
            RoleStatus::Proposer {
                state: ProposerState::Follower,
                ballot: Ballot::ZERO,
                leader: None,
                decided_slot_max: 0,
            },
            vec![PeerStatus {
                address: acceptor_address.clone(),
                node: Some(NodeId::acceptor(1)),
                connected: true,
            }],
        )],
        _ => Vec::new(),
    })
    .await;
    let learner = FakeNode::silent(NodeId::learner(1)).await;
    let handle = client::start(config(&[&proposer], &[&learner], 5000))
        .await
        .unwrap();
    let url = format!("http://{}/status", handle.address());
    let mut acceptor_entry = json!(null);
    for _ in 0..40 {
        let (_, answer) = get(url.clone()).await;
        if let Some(entry) = answer["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|node| node["role"] == "acceptor"))
            .filter(|entry| entry.get("storage").is_some())
        {
            acceptor_entry = entry.clone();
            assert_eq!(answer["quorum"]["available"], false, "{answer}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        acceptor_entry["storage"], "refusing to vote: log /data/acceptor.wal is corrupt at byte 16",
        "{acceptor_entry}"
    );
    assert_eq!(
        acceptor_entry["healthy"], false,
        "an acceptor that cannot vote is not healthy"
    );
    handle.shutdown().await.unwrap();
}
