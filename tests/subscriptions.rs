//! Change notifications on the real cluster: subscribers see every matching write once, in
//! slot order, resume exactly after their last event, are told explicitly when their
//! position is older than the learners hold, are cut off (with the position to resume
//! from) when they read too slowly, and keep all of that across a leader change, learner
//! restarts and a restart of the client API.

mod support;

use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::sse::{open, streaming_http, EventStream, Opened, SseEvent};
use support::{exclusive, Outcome, TestCluster};

const PATIENCE: Duration = Duration::from_secs(20);

/// A write as a subscriber sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    slot: u64,
    key: String,
    value: String,
}

fn seen(event: &SseEvent) -> Seen {
    assert_eq!(event.kind, "message", "{event:?}");
    Seen {
        slot: event.data["slot"].as_u64().expect("a slot"),
        key: event.data["key"].as_str().expect("a key").to_string(),
        value: event.data["value"].as_str().expect("a value").to_string(),
    }
}

/// The (slot, index) an event id names, for ordering.
fn id_position(id: &str) -> (u64, u64) {
    match id.split_once('.') {
        Some((slot, index)) => (slot.parse().unwrap(), index.parse().unwrap()),
        None => (id.parse().unwrap(), 0),
    }
}

/// Checks a subscriber's events against the acknowledged writes (key -> (value, slot)):
/// each exactly once, nothing else, in strictly increasing id order, ids agreeing with
/// the slots.
fn check_stream(
    events: &[SseEvent],
    acknowledged: &BTreeMap<String, (String, u64)>,
) -> Result<(), String> {
    let mut last: Option<(u64, u64)> = None;
    let mut delivered: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for event in events {
        let id = event.id.as_deref().ok_or(format!("{event:?} has no id"))?;
        let position = id_position(id);
        if last.is_some_and(|last| position <= last) {
            return Err(format!(
                "event {id} comes after {last:?}: out of order or repeated"
            ));
        }
        last = Some(position);
        let write = seen(event);
        if write.slot != position.0 {
            return Err(format!("event {id} carries slot {}", write.slot));
        }
        if delivered
            .insert(write.key.clone(), (write.value.clone(), write.slot))
            .is_some()
        {
            return Err(format!("key {} delivered twice", write.key));
        }
    }
    for (key, expected) in acknowledged {
        match delivered.get(key) {
            None => return Err(format!("the write of {key} was never delivered")),
            Some(got) if got != expected => {
                return Err(format!(
                    "{key}: delivered {got:?}, acknowledged {expected:?}"
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = delivered
        .keys()
        .find(|key| !acknowledged.contains_key(*key))
    {
        return Err(format!("{extra} was delivered but never written"));
    }
    Ok(())
}

async fn subscribe(cluster: &TestCluster, patterns: Json) -> String {
    let made = cluster
        .post("/subscribe", json!({ "patterns": patterns }))
        .await
        .ok();
    made["subscription_id"].as_str().unwrap().to_string()
}

fn events_url(cluster: &TestCluster, id: &str, query: &str) -> String {
    cluster.url(&format!("/subscriptions/{id}/events{query}"))
}

/// Writes `key` = `value`, retrying with the same request id until it is acknowledged;
/// returns the slot.
async fn write_surely(cluster: &TestCluster, key: &str, value: &str) -> u64 {
    let request_id = uuid_like(key);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = json!({"key": key, "value": value, "request_id": request_id});
        match cluster.post("/write", body).await {
            Outcome::Ok(answer) => return answer["slot"].as_u64().unwrap(),
            other => {
                assert!(
                    Instant::now() < deadline,
                    "{key} was not written: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A request id that is the same for every attempt of one key's write.
fn uuid_like(key: &str) -> String {
    let mut hash: u128 = 0xcbf29ce484222325;
    for byte in key.bytes() {
        hash = (hash ^ byte as u128).wrapping_mul(0x100000001b3);
    }
    let hex = format!("{hash:032x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Reads changes until `count` writes arrived (failing after `PATIENCE` of silence).
async fn read_writes(stream: &mut EventStream, count: usize) -> Vec<SseEvent> {
    let mut events = Vec::new();
    while events.len() < count {
        match stream.next_change(PATIENCE).await {
            Some(event) if event.kind == "message" => events.push(event),
            other => panic!(
                "expected {} more writes, got {other:?}",
                count - events.len()
            ),
        }
    }
    events
}

#[test]
fn the_stream_checker_catches_gaps_repeats_disorder_and_strangers() {
    let event = |id: &str, key: &str, slot: u64| SseEvent {
        id: Some(id.to_string()),
        kind: "message".into(),
        data: json!({"key": key, "value": "v", "slot": slot}),
    };
    let acknowledged: BTreeMap<String, (String, u64)> = [
        ("a".to_string(), ("v".to_string(), 1)),
        ("b".to_string(), ("v".to_string(), 2)),
    ]
    .into();
    let good = [event("1", "a", 1), event("2", "b", 2)];
    assert!(check_stream(&good, &acknowledged).is_ok());
    let gap = [event("1", "a", 1)];
    let repeat = [event("1", "a", 1), event("1", "a", 1), event("2", "b", 2)];
    let disorder = [event("2", "b", 2), event("1", "a", 1)];
    let stranger = [event("1", "a", 1), event("2", "b", 2), event("3", "c", 3)];
    let wrong_slot = [event("1", "a", 1), event("3", "b", 2)];
    for bad in [&gap[..], &repeat, &disorder, &stranger, &wrong_slot] {
        assert!(check_stream(bad, &acknowledged).is_err(), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn subscribers_see_each_matching_write_once_in_slot_order_and_resume_after_their_last_event()
{
    let _guard = exclusive();
    let cluster = TestCluster::start().await;
    let http = streaming_http();
    let id = subscribe(&cluster, json!(["user/*", "exact"])).await;
    let mut stream = open(&http, &events_url(&cluster, &id, ""), None)
        .await
        .stream();
    let first = stream.next(PATIENCE).await.expect("a first event");
    assert_eq!(first.kind, "progress", "a new stream says where it stands");
    assert!(first.data["applied_slot"].as_u64().is_some());

    // Four writers at once, so that slots hold batches; half the keys do not match.
    let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
    let mut writers = Vec::new();
    let cluster = Arc::new(cluster);
    for writer in 0..4 {
        let cluster = Arc::clone(&cluster);
        let acknowledged = Arc::clone(&acknowledged);
        writers.push(tokio::spawn(async move {
            for index in 0..15 {
                let key = format!("user/{writer}/{index}");
                let slot = write_surely(&cluster, &key, &format!("v{index}")).await;
                acknowledged
                    .lock()
                    .unwrap()
                    .insert(key, (format!("v{index}"), slot));
                write_surely(&cluster, &format!("other/{writer}/{index}"), "x").await;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let slot = write_surely(&cluster, "exact", "match").await;
    let mut acknowledged = acknowledged.lock().unwrap().clone();
    acknowledged.insert("exact".into(), ("match".into(), slot));
    let events = read_writes(&mut stream, acknowledged.len()).await;
    check_stream(&events, &acknowledged).unwrap();
    let batched = events
        .iter()
        .filter(|event| event.id.as_deref().unwrap().contains('.'))
        .count();
    eprintln!(
        "{} writes delivered, {batched} of them from batched slots",
        events.len()
    );
    drop(stream);

    // Reconnecting after the 20th event delivers exactly the rest.
    let twentieth = events[19].id.clone().unwrap();
    let mut resumed = open(&http, &events_url(&cluster, &id, ""), Some(&twentieth))
        .await
        .stream();
    let rest = read_writes(&mut resumed, events.len() - 20).await;
    assert_eq!(rest, events[20..], "resumed after event {twentieth}");
    // ?from_slot=0 replays from the beginning, the same events again.
    let mut replay = open(&http, &events_url(&cluster, &id, "?from_slot=0"), None)
        .await
        .stream();
    assert_eq!(read_writes(&mut replay, events.len()).await, events);
    // An idle stream shows it is alive with progress events naming the applied slot.
    let idle = resumed.next(PATIENCE).await.expect("a progress event");
    assert_eq!(idle.kind, "progress");
    assert!(idle.data["applied_slot"].as_u64().unwrap() >= slot);
    assert_eq!(
        idle.id.as_deref(),
        Some(idle.data["slot"].to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn unsubscribing_ends_the_open_streams_of_the_subscription() {
    let _guard = exclusive();
    let cluster = TestCluster::start().await;
    let http = streaming_http();
    let id = subscribe(&cluster, json!(["*"])).await;
    let url = events_url(&cluster, &id, "");
    let mut streams = vec![
        open(&http, &url, None).await.stream(),
        open(&http, &url, None).await.stream(),
    ];
    for stream in &mut streams {
        assert_eq!(stream.next(PATIENCE).await.unwrap().kind, "progress");
    }
    cluster
        .post("/unsubscribe", json!({ "subscription_id": id }))
        .await
        .ok();
    for stream in &mut streams {
        let last = stream.next_change(PATIENCE).await.expect("a last event");
        assert_eq!(last.kind, "unsubscribed");
        assert_eq!(last.data["subscription_id"], id);
        assert!(stream.next(PATIENCE).await.is_none(), "the stream ends");
    }
    match open(&http, &url, None).await {
        Opened::Failed(404, body) => assert!(body["error"].is_string()),
        other => panic!("expected 404 after unsubscribing, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn a_position_older_than_the_learners_hold_is_refused_naming_the_oldest_slot() {
    let _guard = exclusive();
    let cluster = TestCluster::start_configured(3, &[("*", "LEARNER_RETAIN_SLOTS", "20")]).await;
    let http = streaming_http();
    for index in 0..60 {
        write_surely(&cluster, &format!("k{index}"), "v").await;
    }
    let id = subscribe(&cluster, json!(["k*"])).await;
    let mut stream = open(&http, &events_url(&cluster, &id, "?from_slot=0"), None)
        .await
        .stream();
    let refused = stream.next_change(PATIENCE).await.expect("an answer");
    assert_eq!(refused.kind, "too_old", "{refused:?}");
    let oldest = refused.data["oldest_available_slot"].as_u64().unwrap();
    assert!(oldest > 1, "{refused:?}");
    assert!(refused.data["error"]
        .as_str()
        .unwrap()
        .contains("from_slot"));
    assert!(stream.next(PATIENCE).await.is_none(), "the stream ends");

    // From the oldest slot held, the writes are all there.
    let query = format!("?from_slot={}", oldest - 1);
    let mut stream = open(&http, &events_url(&cluster, &id, &query), None)
        .await
        .stream();
    let first = stream.next_change(PATIENCE).await.unwrap();
    assert_eq!(first.kind, "message", "{first:?}");
    assert_eq!(first.data["slot"].as_u64(), Some(oldest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn a_wiped_learner_catches_up_though_its_peer_no_longer_holds_the_slots() {
    let _guard = exclusive();
    let cluster = TestCluster::start_configured(3, &[("*", "LEARNER_RETAIN_SLOTS", "20")]).await;
    for index in 0..30 {
        write_surely(&cluster, &format!("before{index}"), &format!("b{index}")).await;
    }
    cluster.kill("learner2");
    std::fs::remove_dir_all(cluster.data_dir_of("learner2")).unwrap();
    let mut last_slot = 0;
    for index in 0..60 {
        last_slot = write_surely(&cluster, &format!("after{index}"), &format!("a{index}")).await;
    }
    cluster.start_node("learner2");
    let deadline = Instant::now() + PATIENCE;
    while cluster
        .learner_applied_slots()
        .await
        .get(&2)
        .copied()
        .unwrap_or(0)
        < last_slot
    {
        assert!(Instant::now() < deadline, "learner2 did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Only learner2 answers now: slots 1..30 are no longer held by anyone as slots.
    cluster.kill("learner1");
    for (key, value) in [("before0", "b0"), ("before29", "b29"), ("after59", "a59")] {
        let read = cluster.read(key, "eventual").await.ok();
        assert_eq!(read["value"], value, "{key}: {read}");
    }
    // How learner2 caught up is a race: learner1 answers its SyncDecided with its state
    // (`Snapshot`, logged as "a peer sent its state as a snapshot"), while the acceptors,
    // which still hold every slot they accepted, answer its SyncAccepted with the votes.
    // Either path is correct; the reads above are what must hold. (The snapshot path alone
    // is tested in learner/src/core/catch_up.rs.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn a_slow_subscriber_is_disconnected_with_the_position_to_resume_from() {
    let _guard = exclusive();
    let cluster =
        TestCluster::start_configured(3, &[("*", "SUBSCRIPTION_BUFFER_EVENTS", "4")]).await;
    let http = streaming_http();
    let id = subscribe(&cluster, json!(["big*"])).await;
    let url = events_url(&cluster, &id, "");
    let mut slow = open(&http, &url, None).await.stream();
    assert_eq!(slow.next(PATIENCE).await.unwrap().kind, "progress");
    // The subscriber stops reading; socket buffers (a few MiB) fill, then its queue.
    let value = "x".repeat(512 * 1024);
    let mut acknowledged = BTreeMap::new();
    for index in 0..64 {
        let key = format!("big{index:02}");
        let slot = write_surely(&cluster, &key, &value).await;
        acknowledged.insert(key, (value.clone(), slot));
    }
    let mut events = Vec::new();
    let resume_from = loop {
        match slow.next_change(PATIENCE).await {
            Some(event) if event.kind == "message" => events.push(event),
            Some(event) if event.kind == "lagged" => {
                assert!(event.data["error"]
                    .as_str()
                    .unwrap()
                    .contains("fell behind"));
                assert_eq!(
                    event.id.as_ref(),
                    event.data["resume_from"]
                        .as_str()
                        .map(String::from)
                        .as_ref()
                );
                break event.data["resume_from"].as_str().unwrap().to_string();
            }
            other => panic!("expected the writes then a lagged event, got {other:?}"),
        }
    };
    assert!(slow.next(PATIENCE).await.is_none(), "the slow stream ends");
    assert!(events.len() < 64, "the subscriber was cut off early");
    eprintln!(
        "the slow subscriber got {} writes before it was cut off",
        events.len()
    );
    if let Some(last) = events.last() {
        assert_eq!(last.id.as_deref(), Some(resume_from.as_str()));
    }
    let mut resumed = open(&http, &url, Some(&resume_from)).await.stream();
    let rest = read_writes(&mut resumed, 64 - events.len()).await;
    events.extend(rest);
    check_stream(&events, &acknowledged).unwrap();
}

/// Follows a subscription like a client would: reconnects after any disconnection with
/// the last id seen, until `stop` is set; collects the writes.
async fn follow(
    url: String,
    events: Arc<Mutex<Vec<SseEvent>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> u32 {
    let http = streaming_http();
    let mut last_id: Option<String> = Some("0".into());
    let mut reconnections = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut stream = match open(&http, &url, last_id.as_deref()).await {
            Opened::Stream(stream) => stream,
            Opened::Failed(status, body) if status >= 500 => {
                eprintln!("reconnect failed: {status} {body}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Opened::Failed(status, body) => panic!("the stream was refused: {status} {body}"),
            Opened::Unreachable(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        reconnections += 1;
        while let Some(event) = stream.next(Duration::from_secs(5)).await {
            if event.id.is_some() {
                last_id = event.id.clone();
            }
            match event.kind.as_str() {
                "message" => events.lock().unwrap().push(event),
                "progress" => {}
                other => panic!("unexpected {other} event: {event:?}"),
            }
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
        }
    }
    reconnections
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn streams_keep_their_guarantees_across_a_leader_change_learner_restarts_and_a_client_restart(
) {
    let _guard = exclusive();
    let cluster = TestCluster::start().await;
    let id = subscribe(&cluster, json!(["k*"])).await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = tokio::spawn(follow(
        events_url(&cluster, &id, ""),
        Arc::clone(&events),
        Arc::clone(&stop),
    ));
    let mut acknowledged = BTreeMap::new();
    let mut next = 0;
    let mut write_some = async |cluster: &TestCluster, count: usize| {
        for _ in 0..count {
            let key = format!("k{next:03}");
            let slot = write_surely(cluster, &key, "v").await;
            acknowledged.insert(key, ("v".to_string(), slot));
            write_surely(cluster, &format!("skip{next}"), "v").await;
            next += 1;
        }
    };
    write_some(&cluster, 10).await;
    let leader = cluster.wait_for_leader(PATIENCE).await;
    cluster.kill(&leader);
    write_some(&cluster, 10).await;
    cluster.start_node(&leader);
    cluster.restart("learner1");
    write_some(&cluster, 10).await;
    cluster.restart("learner2");
    write_some(&cluster, 10).await;
    cluster.restart("client1");
    cluster.wait_until_writable(PATIENCE).await;
    write_some(&cluster, 10).await;

    let deadline = Instant::now() + PATIENCE;
    while events.lock().unwrap().len() < acknowledged.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} writes arrived",
            events.lock().unwrap().len(),
            acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Anything extra (a repeat) would arrive right behind: give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reconnections = tokio::time::timeout(PATIENCE, follower)
        .await
        .expect("the follower stops")
        .unwrap();
    assert!(
        reconnections >= 2,
        "the client API restart broke the stream"
    );
    let events = events.lock().unwrap().clone();
    check_stream(&events, &acknowledged).unwrap();
}
