//! Every malformed request gets its status and a JSON error, without touching the cluster.

mod support;

use serde_json::json;
use support::{get, http, post, FakeNode};

/// A client API in front of silent nodes (validation never reaches them).
async fn client_api() -> (client::ClientHandle, Vec<FakeNode>) {
    let proposer = FakeNode::silent(common::node::NodeId::proposer(1)).await;
    let learner = FakeNode::silent(common::node::NodeId::learner(1)).await;
    let handle = client::start(support::config(&[&proposer], &[&learner], 300))
        .await
        .unwrap();
    (handle, vec![proposer, learner])
}

fn error_text(body: &serde_json::Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{body} has no \"error\" string"))
}

#[tokio::test]
async fn health_reports_ok_and_the_node_name() {
    let (handle, _nodes) = client_api().await;
    let (status, body) = get(format!("http://{}/health", handle.address())).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ok", "node": "client1"}));
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_invalid_body_gets_its_status_and_a_json_error_naming_the_problem() {
    let (handle, _nodes) = client_api().await;
    let long_key = "k".repeat(1025);
    let long_value = "v".repeat(1_048_577);
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "malformed JSON",
            "/write",
            "{\"key\":".into(),
            400,
            "not valid JSON",
        ),
        (
            "an array body",
            "/write",
            "[1,2]".into(),
            400,
            "JSON object",
        ),
        (
            "a string body",
            "/read",
            "\"key\"".into(),
            400,
            "JSON object",
        ),
        ("an empty body", "/read", "".into(), 400, "not valid JSON"),
        (
            "a missing key",
            "/write",
            r#"{"value":"v"}"#.into(),
            400,
            "\"key\"",
        ),
        (
            "a numeric key",
            "/write",
            r#"{"key":1,"value":"v"}"#.into(),
            400,
            "\"key\"",
        ),
        (
            "a missing value",
            "/write",
            r#"{"key":"k"}"#.into(),
            400,
            "\"value\"",
        ),
        (
            "a null value",
            "/write",
            r#"{"key":"k","value":null}"#.into(),
            400,
            "\"value\"",
        ),
        (
            "an object value",
            "/write",
            r#"{"key":"k","value":{}}"#.into(),
            400,
            "\"value\"",
        ),
        (
            "an empty key",
            "/write",
            r#"{"key":"","value":"v"}"#.into(),
            400,
            "empty",
        ),
        (
            "an empty key on read",
            "/read",
            r#"{"key":""}"#.into(),
            400,
            "empty",
        ),
        (
            "a missing key on read",
            "/read",
            r#"{}"#.into(),
            400,
            "\"key\"",
        ),
        (
            "a key over 1024 bytes",
            "/write",
            json!({"key": long_key, "value": "v"}).to_string(),
            413,
            "\"key\"",
        ),
        (
            "a key over 1024 bytes on read",
            "/read",
            json!({"key": long_key}).to_string(),
            413,
            "\"key\"",
        ),
        (
            "a value over 1 MiB",
            "/write",
            json!({"key": "k", "value": long_value}).to_string(),
            413,
            "\"value\"",
        ),
        (
            "an unknown consistency",
            "/read",
            r#"{"key":"k","consistency":"linear"}"#.into(),
            400,
            "\"strong\", \"session\" or \"eventual\"",
        ),
        (
            "a numeric consistency",
            "/read",
            r#"{"key":"k","consistency":3}"#.into(),
            400,
            "\"consistency\"",
        ),
        (
            "a session read without a session",
            "/read",
            r#"{"key":"k","consistency":"session"}"#.into(),
            400,
            "session_id",
        ),
        (
            "a numeric session id",
            "/write",
            r#"{"key":"k","value":"v","session_id":7}"#.into(),
            400,
            "\"session_id\"",
        ),
        (
            "a request id that is not a UUID",
            "/write",
            r#"{"key":"k","value":"v","request_id":"twelve"}"#.into(),
            400,
            "\"request_id\"",
        ),
    ];
    for (name, path, body, expected_status, expected_text) in cases {
        let (status, answer) = post(format!("http://{}{path}", handle.address()), body).await;
        assert_eq!(status, expected_status, "{name}: {answer}");
        let text = error_text(&answer);
        assert!(
            text.contains(expected_text),
            "{name}: {text:?} should mention {expected_text:?}"
        );
    }
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_body_over_four_mebibytes_is_a_json_413() {
    let (handle, _nodes) = client_api().await;
    let body = json!({"key": "k", "value": "v".repeat(5 * 1024 * 1024)}).to_string();
    let (status, answer) = post(format!("http://{}/write", handle.address()), body).await;
    assert_eq!(status, 413);
    assert!(error_text(&answer).contains("limit"), "{answer}");
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_json_errors() {
    let (handle, _nodes) = client_api().await;
    let base = format!("http://{}", handle.address());
    let (status, answer) = get(format!("{base}/nowhere")).await;
    assert_eq!(status, 404, "{answer}");
    error_text(&answer);
    let (status, answer) = get(format!("{base}/write")).await;
    assert_eq!(status, 405, "{answer}");
    error_text(&answer);
    let (status, answer) = post(format!("{base}/health"), String::new()).await;
    assert_eq!(status, 405, "{answer}");
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn subscription_requests_get_json_errors_naming_the_problem() {
    let (handle, _nodes) = client_api().await;
    let base = format!("http://{}", handle.address());
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        ("/subscribe", "{}", 400, "patterns"),
        ("/subscribe", r#"{"patterns":[]}"#, 400, "at least one"),
        ("/subscribe", r#"{"patterns":["a[0-9]"]}"#, 400, "reserved"),
        ("/subscribe", r#"{"patterns":["ok", 3]}"#, 400, "strings"),
        ("/subscribe", "not json", 400, "JSON"),
        ("/unsubscribe", "{}", 400, "subscription_id"),
        ("/unsubscribe", r#"{"subscription_id":"nope"}"#, 400, "UUID"),
        (
            "/unsubscribe",
            r#"{"subscription_id":"6f1c2b1e-8a62-4c1b-9a53-0f1e2d3c4b5a"}"#,
            404,
            "no subscription",
        ),
    ];
    for (path, body, expected_status, problem) in cases {
        let (status, answer) = post(format!("{base}{path}"), body.into()).await;
        assert_eq!(status, expected_status, "{path} {body}: {answer}");
        assert!(
            error_text(&answer).contains(problem),
            "{path} {body}: {answer}"
        );
    }
    for path in [
        "/subscriptions/6f1c2b1e-8a62-4c1b-9a53-0f1e2d3c4b5a/events",
        "/subscriptions/not-a-uuid/events",
        "/subscriptions/6f1c2b1e-8a62-4c1b-9a53-0f1e2d3c4b5a",
    ] {
        let (status, answer) = get(format!("{base}{path}")).await;
        assert_eq!(status, 404, "{path}: {answer}");
        assert!(error_text(&answer).contains("no subscription"), "{answer}");
    }
    let (status, made) = post(format!("{base}/subscribe"), r#"{"patterns":["k*"]}"#.into()).await;
    assert_eq!(status, 200, "{made}");
    let id = made["subscription_id"].as_str().unwrap();
    assert_eq!(made["events"], format!("/subscriptions/{id}/events"));
    let (status, described) = get(format!("{base}/subscriptions/{id}")).await;
    assert_eq!((status, &described["patterns"]), (200, &json!(["k*"])));
    for query in ["from_slot=x", "from_slot=3.", "since=4"] {
        let (status, answer) = get(format!("{base}/subscriptions/{id}/events?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
        error_text(&answer);
    }
    let (status, answer) = post(
        format!("{base}/unsubscribe"),
        json!({"subscription_id": id}).to_string(),
    )
    .await;
    assert_eq!((status, &answer["unsubscribed"]), (200, &json!(true)));
    let (status, _) = post(
        format!("{base}/unsubscribe"),
        json!({"subscription_id": id}).to_string(),
    )
    .await;
    assert_eq!(status, 404, "a second unsubscribe finds nothing");
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dropped_handle_stops_the_rest_server() {
    let (handle, _nodes) = client_api().await;
    let address = handle.address();
    drop(handle);
    let mut stopped = false;
    for _ in 0..100 {
        if http()
            .get(format!("http://{address}/health"))
            .send()
            .await
            .is_err()
        {
            stopped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        stopped,
        "the REST server still answers after its handle was dropped"
    );
}

#[tokio::test]
async fn malformed_kv_requests_get_json_errors_and_reach_no_node() {
    let (handle, nodes) = client_api().await;
    let base = format!("http://{}", handle.address());
    let client = http();
    let put = |path: &str, body: &str, header: Option<(&str, &str)>| {
        let mut request = client.put(format!("{base}{path}")).body(body.to_string());
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let long_key = format!("/v1/kv/{}", "k".repeat(1025));
    let cases = [
        ("/v1/kv/", r#"{"value":"v"}"#, None, 400, "missing"),
        ("/v1/kv/k", r#"{"value":"v","key":"k"}"#, None, 400, "path"),
        ("/v1/kv/k", r#"{"value":5}"#, None, 400, "value"),
        ("/v1/kv/k", "{not json", None, 400, "JSON"),
        (
            "/v1/kv/k?prefix=true",
            r#"{"value":"v"}"#,
            None,
            400,
            "prefix",
        ),
        (long_key.as_str(), r#"{"value":"v"}"#, None, 413, "limit"),
        (
            "/v1/kv/k",
            r#"{"value":"v"}"#,
            Some(("if-match", "\"3\"")),
            501,
            "if-match",
        ),
        (
            "/v1/kv/k",
            r#"{"value":"v"}"#,
            Some(("if-none-match", "*")),
            501,
            "not supported",
        ),
    ];
    for (path, body, header, expected_status, expected_text) in cases {
        let (status, answer) = put(path, body, header).await;
        assert_eq!(status, expected_status, "PUT {path} {body}: {answer}");
        assert!(
            error_text(&answer).contains(expected_text),
            "PUT {path}: {answer} should mention {expected_text:?}"
        );
    }
    for (query, expected_text) in [
        ("?consistency=psychic", "consistency"),
        ("?consistency=session", "session_id"),
        ("?consistency=strong&consistency=eventual", "twice"),
        ("?limit=3", "limit"),
    ] {
        let (status, answer) = get(format!("{base}/v1/kv/k{query}")).await;
        assert_eq!(status, 400, "GET {query}: {answer}");
        assert!(error_text(&answer).contains(expected_text), "{answer}");
    }
    let (status, answer) = get(format!("{base}/v1/kv/")).await;
    assert_eq!(status, 400, "{answer}");
    for node in &nodes {
        assert!(
            node.received()
                .iter()
                .all(|message| !matches!(message, common::message::Message::Write { .. })),
            "nothing was written"
        );
    }
    handle.shutdown().await.unwrap();
}
