//! The real cluster, as separate processes on 127.0.0.1, driven through the client API:
//! reads at every consistency level, and the faults the design must survive (an acceptor,
//! the leader or a learner lost, every node killed at once).

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::{exclusive, Outcome, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn writes_are_read_back_at_every_consistency_level() {
    let _guard = exclusive();
    let cluster = TestCluster::start().await;
    let written = cluster
        .post(
            "/write",
            json!({"key": "colour", "value": "blue", "session_id": "alice"}),
        )
        .await
        .ok();
    assert!(written["slot"].as_u64().unwrap() >= 1);
    assert_eq!(
        cluster.strong_value("colour").await.as_deref(),
        Some("blue")
    );
    let session = cluster
        .post(
            "/read",
            json!({"key": "colour", "consistency": "session", "session_id": "alice"}),
        )
        .await
        .ok();
    assert_eq!(session["value"], "blue", "a session reads its own writes");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let eventual = cluster.read("colour", "eventual").await.ok();
        if eventual["value"] == "blue" {
            break;
        }
        assert!(Instant::now() < deadline, "eventual reads converge");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let missing = cluster.read("never-written", "strong").await.ok();
    assert!(
        missing["value"].is_null(),
        "a key never written reads as null"
    );
    match cluster.read("colour", "psychic").await {
        Outcome::Failed(400, body) => {
            assert!(body["error"].as_str().unwrap().contains("consistency"))
        }
        other => panic!("an unknown level is a 400, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn writes_continue_after_an_acceptor_is_killed() {
    let _guard = exclusive();
    let cluster = TestCluster::start().await;
    cluster.write("before", "1").await.ok();
    cluster.kill("acceptor1");
    let started = Instant::now();
    for index in 0..20 {
        cluster
            .write(&format!("key{index}"), &format!("value{index}"))
            .await
            .ok();
    }
    eprintln!("20 writes with acceptor1 down took {:?}", started.elapsed());
    for index in 0..20 {
        assert_eq!(
            cluster.strong_value(&format!("key{index}")).await,
            Some(format!("value{index}"))
        );
    }
    cluster.start_node("acceptor1");
    cluster.kill("acceptor2");
    cluster.write("after", "2").await.ok();
    assert_eq!(cluster.strong_value("before").await.as_deref(), Some("1"));
    assert_eq!(cluster.strong_value("after").await.as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn the_other_proposer_takes_over_when_the_leader_is_killed() {
    let _guard = exclusive();
    let cluster = TestCluster::start().await;
    cluster.write("stable", "yes").await.ok();
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    cluster.kill(&leader);
    let killed_at = Instant::now();
    let took = cluster.wait_until_writable(Duration::from_secs(30)).await;
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    eprintln!(
        "leader {leader} killed: {new_leader} took over; writes resumed after {:?} ({:?} since the kill)",
        took,
        killed_at.elapsed()
    );
    assert_ne!(leader, new_leader);
    assert_eq!(cluster.strong_value("stable").await.as_deref(), Some("yes"));
    cluster.start_node(&leader);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        cluster.wait_for_leader(Duration::from_secs(5)).await,
        new_leader,
        "a returning proposer does not depose a leader it hears"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn a_stopped_learner_catches_up_after_restart() {
    let _guard = exclusive();
    let cluster = TestCluster::start().await;
    cluster.kill("learner2");
    for index in 0..100 {
        cluster
            .write(&format!("k{index}"), &format!("v{index}"))
            .await
            .ok();
    }
    let target = cluster.learner_applied_slots().await[&1];
    cluster.start_node("learner2");
    let restarted = Instant::now();
    loop {
        let slots = cluster.learner_applied_slots().await;
        if slots.get(&2).copied().unwrap_or(0) >= target {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(20),
            "learner2 did not catch up to slot {target}: {slots:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "learner2 caught up to slot {target} in {:?}",
        restarted.elapsed()
    );
    // With learner1 down, every read is served by the caught-up learner.
    cluster.kill("learner1");
    for index in (0..100).step_by(7) {
        assert_eq!(
            cluster.strong_value(&format!("k{index}")).await,
            Some(format!("v{index}"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn every_acknowledged_write_survives_killing_every_node() {
    let _guard = exclusive();
    let cluster = TestCluster::start().await;
    let mut acknowledged = Vec::new();
    for index in 0..50 {
        let key = format!("durable{index}");
        if let Outcome::Ok(_) = cluster.write(&key, &format!("v{index}")).await {
            acknowledged.push(key);
        }
    }
    assert_eq!(acknowledged.len(), 50);
    for name in cluster.node_names() {
        cluster.kill(&name);
    }
    for name in cluster.node_names() {
        cluster.start_node(&name);
    }
    let took = cluster.wait_until_writable(Duration::from_secs(30)).await;
    eprintln!("after kill -9 of every node the cluster took writes again in {took:?}");
    for (index, key) in acknowledged.iter().enumerate() {
        assert_eq!(
            cluster.strong_value(key).await,
            Some(format!("v{index}")),
            "acknowledged write {key} lost"
        );
    }
}

/// Whether any node of `/status` lists an alarm that starts with `prefix`.
fn some_node_alarm(status: &serde_json::Value, prefix: &str) -> bool {
    status["nodes"].as_array().is_some_and(|nodes| {
        nodes.iter().any(|node| {
            node["alarms"].as_array().is_some_and(|alarms| {
                alarms
                    .iter()
                    .any(|alarm| alarm.as_str().is_some_and(|text| text.starts_with(prefix)))
            })
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn acceptors_at_their_log_quota_refuse_writes_with_no_space_keep_reads_and_recover() {
    let _guard = exclusive();
    // A quota of 192 KiB: with a learner down the acceptors cannot trim, and their logs
    // reach it after a few hundred writes of 1 KiB.
    let cluster = TestCluster::start_configured(3, &[("*", "LOG_QUOTA_BYTES", "196608")]).await;
    cluster.write("kept", "before").await.ok();
    cluster.kill("learner2");
    let value = "v".repeat(1024);
    let started = Instant::now();
    let no_space = loop {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no write was refused for lack of space within 90 s"
        );
        match cluster.write("filler", &value).await {
            Outcome::Ok(_) => continue,
            Outcome::Failed(503, body) => {
                let error = body["error"].as_str().unwrap_or("").to_string();
                if error.contains("no space") {
                    break error;
                }
            }
            other => eprintln!("while filling: {other:?}"),
        }
    };
    eprintln!("refused after {:?}: {no_space}", started.elapsed());
    // The refusal comes at once, not after the request deadline.
    let asked = Instant::now();
    let again = cluster.write("filler", &value).await;
    assert!(
        matches!(&again, Outcome::Failed(503, body)
            if body["error"].as_str().is_some_and(|error| error.contains("no space"))),
        "{again:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert!(no_space.contains("was not applied"), "{no_space}");
    // Eventual reads go on (a strong read would wait for the slot still in flight, which no quorum
    // can make durable), and /status says why writes fail.
    let read = cluster.read("kept", "eventual").await.ok();
    assert_eq!(read["value"].as_str(), Some("before"));
    assert!(some_node_alarm(&cluster.status().await, "no space"));
    // The learner comes back: the leader trims, the acceptors compact, writes resume.
    cluster.start_node("learner2");
    let restarted = Instant::now();
    loop {
        if let Outcome::Ok(_) = cluster.write("after", "space").await {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(60),
            "writes did not resume within 60 s of the learner's return:\n{}",
            cluster.logs_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "writes resumed {:?} after the learner returned",
        restarted.elapsed()
    );
    assert_eq!(
        cluster.strong_value("after").await.as_deref(),
        Some("space")
    );
    let status = cluster.status().await;
    assert!(!some_node_alarm(&status, "no space"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn keys_carry_revisions_and_a_reused_request_id_is_a_409() {
    let _guard = exclusive();
    let cluster = TestCluster::start().await;
    let put = |key: &str, body: serde_json::Value| {
        let request = cluster
            .http
            .put(cluster.url(&format!("/v1/kv/{key}")))
            .json(&body);
        status_tag_and_body(request)
    };
    let get =
        |key: &str| status_tag_and_body(cluster.http.get(cluster.url(&format!("/v1/kv/{key}"))));
    let (status, tag, first) = put("app%2Fcolour", json!({"value": "blue"})).await;
    assert_eq!(status, 200, "{first}");
    let created = first["revision"].as_u64().unwrap();
    assert_eq!(tag, Some(format!("\"{created}\"")));
    assert_eq!(first["key"], "app/colour", "the path is percent-decoded");
    let request_id = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
    let (status, _, second) = put(
        "app/colour",
        json!({"value": "green", "request_id": request_id}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let changed = second["revision"].as_u64().unwrap();
    assert!(changed > created, "{created} then {changed}");

    let (status, tag, read) = get("app/colour").await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["value"], "green");
    assert_eq!(read["create_revision"], created);
    assert_eq!(read["mod_revision"], changed);
    assert_eq!(read["version"], 2);
    assert!(read["revision"].as_u64().unwrap() >= changed);
    assert_eq!(tag, Some(format!("\"{changed}\"")));
    // The design's /read carries the same revisions.
    let legacy = cluster.read("app/colour", "strong").await.ok();
    assert_eq!(legacy["mod_revision"], changed);

    // A genuine retry answers the original revision; another command under the same
    // request id is a 409 and changes nothing.
    let (status, _, retry) = put(
        "app/colour",
        json!({"value": "green", "request_id": request_id}),
    )
    .await;
    assert_eq!(
        (status, retry["revision"].as_u64()),
        (200, Some(changed)),
        "{retry}"
    );
    let (status, _, reused) = put(
        "app/colour",
        json!({"value": "red", "request_id": request_id}),
    )
    .await;
    assert_eq!(status, 409, "{reused}");
    assert!(
        reused["error"].as_str().unwrap().contains("already used"),
        "{reused}"
    );
    assert_eq!(reused["request_id"], request_id);
    let legacy_reuse = cluster
        .post(
            "/write",
            json!({"key": "elsewhere", "value": "x", "request_id": request_id}),
        )
        .await;
    assert!(
        matches!(&legacy_reuse, Outcome::Failed(409, _)),
        "{legacy_reuse:?}"
    );
    let (_, _, still) = get("app/colour").await;
    assert_eq!(
        (still["value"].as_str(), still["version"].as_u64()),
        (Some("green"), Some(2))
    );

    let (status, tag, missing) = get("never-written").await;
    assert_eq!(status, 404, "{missing}");
    assert!(tag.is_none());
    assert!(missing["revision"].as_u64().is_some());
    let (status, _, refused) = put("k", json!({"value": "v", "key": "other"})).await;
    assert_eq!(status, 400, "{refused}");
}

/// Sends `request` and returns the answer's status, `ETag` and JSON body.
async fn status_tag_and_body(
    request: reqwest::RequestBuilder,
) -> (u16, Option<String>, serde_json::Value) {
    let response = request.send().await.expect("the client API answers");
    let status = response.status().as_u16();
    let tag = response
        .headers()
        .get("etag")
        .map(|tag| tag.to_str().unwrap().to_string());
    (status, tag, response.json().await.unwrap())
}
