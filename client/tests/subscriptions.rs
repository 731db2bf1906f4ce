//! Change notifications against a scripted learner: a stream catches up from the learner's
//! history, names batched writes `<slot>.<index>`, joins the live feed, and ends when the
//! client API stops.

mod support;

use common::message::{AppliedSlot, AppliedWrite, Message};
use common::node::NodeId;
use std::time::Duration;
use support::{config, post, FakeNode};

/// The learner's history: slot 1 writes a, slot 2 (a batch) writes b then c, slot 3
/// writes nothing (a no-op), slot 4 writes other; it has applied slot 4.
fn history() -> Vec<AppliedSlot> {
    let write = |index: u32, key: &str| AppliedWrite {
        index,
        key: key.to_string(),
        value: format!("{key}-value"),
    };
    vec![
        AppliedSlot {
            slot: 1,
            command_count: 1,
            writes: vec![write(0, "k/a")],
        },
        AppliedSlot {
            slot: 2,
            command_count: 2,
            writes: vec![write(0, "k/b"), write(1, "k/c")],
        },
        AppliedSlot {
            slot: 4,
            command_count: 1,
            writes: vec![write(0, "other")],
        },
    ]
}

fn learner_script(_: NodeId, message: &Message) -> Vec<Message> {
    match message {
        Message::Subscribe { stream_id, .. } => vec![Message::Applied {
            stream_id: *stream_id,
            from_slot: 5,
            to_slot: 5,
            slots: vec![],
            applied_slot: 4,
        }],
        Message::ReadApplied {
            stream_id,
            from_slot,
            ..
        } => vec![Message::Applied {
            stream_id: *stream_id,
            from_slot: *from_slot,
            to_slot: 5.max(*from_slot),
            slots: history()
                .into_iter()
                .filter(|slot| slot.slot >= *from_slot)
                .collect(),
            applied_slot: 4,
        }],
        _ => Vec::new(),
    }
}

/// Reads the stream until `count` blocks arrived; returns them as text.
async fn read_blocks(response: &mut reqwest::Response, count: usize) -> Vec<String> {
    let mut text = String::new();
    loop {
        let blocks: Vec<String> = text
            .split("\n\n")
            .filter(|block| !block.trim().is_empty())
            .map(String::from)
            .collect();
        if blocks.len() >= count && text.ends_with("\n\n") {
            return blocks;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("the stream goes on")
            .unwrap()
            .expect("the stream is open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn a_stream_catches_up_from_history_names_batched_writes_and_joins_the_feed() {
    let proposer = FakeNode::silent(NodeId::proposer(1)).await;
    let learner = FakeNode::start(NodeId::learner(1), learner_script).await;
    let handle = client::start(config(&[&proposer], &[&learner], 2000))
        .await
        .unwrap();
    learner.wait_for_client().await;
    let base = format!("http://{}", handle.address());
    let (status, made) = post(
        format!("{base}/subscribe"),
        r#"{"patterns":["k/*"]}"#.into(),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let events = made["events"].as_str().unwrap();
    let mut response = reqwest::Client::new()
        .get(format!("{base}{events}?from_slot=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "a Server-Sent Events stream"
    );
    let blocks = read_blocks(&mut response, 4).await;
    let expected_writes = [("1", "k/a", 1), ("2.0", "k/b", 2), ("2.1", "k/c", 2)];
    for (block, (id, key, slot)) in blocks.iter().zip(expected_writes) {
        assert!(block.contains(&format!("id: {id}\n")), "{block}");
        let data = block
            .lines()
            .find_map(|line| line.strip_prefix("data: "))
            .unwrap();
        let data: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["key"], key);
        assert_eq!(data["value"], format!("{key}-value"));
        assert_eq!(data["slot"], slot);
    }
    // Slot 4's write does not match; the stream is then live at slot 4.
    assert!(blocks[3].contains("event: progress"), "{}", blocks[3]);
    assert!(blocks[3].contains("id: 4\n"), "{}", blocks[3]);
    assert!(blocks[3].contains(r#""slot":4"#), "{}", blocks[3]);
    assert!(
        learner
            .received()
            .iter()
            .any(|message| matches!(message, Message::ReadApplied { from_slot: 1, .. })),
        "the stream caught up from the learner's history"
    );
    assert!(
        learner
            .received()
            .iter()
            .any(|message| matches!(message, Message::Subscribe { .. })),
        "the feed follows the learner"
    );

    // Stopping the client API ends open streams instead of waiting for them forever.
    tokio::time::timeout(Duration::from_secs(10), handle.shutdown())
        .await
        .expect("the client API stops with a stream open")
        .unwrap();
}
