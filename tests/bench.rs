//! `paxos bench` against a real cluster, for a few seconds, so that the load generator
//! keeps working: it sends what the client API accepts, counts what it measured, keeps an
//! open-loop schedule, and reports errors by kind instead of hiding them.

mod support;

use serde_json::Value as Json;
use std::process::Command;
use support::{exclusive, TestCluster};

fn bench(arguments: &[&str]) -> Json {
    let output = Command::new(env!("CARGO_BIN_EXE_paxos"))
        .arg("bench")
        .args(["--output", "json", "--quiet"])
        .args(arguments)
        .output()
        .expect("paxos bench runs");
    assert!(
        output.status.success(),
        "paxos bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "paxos bench printed no JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn bench_measures_mixed_and_open_loop_loads_against_a_real_cluster() {
    let _guard = exclusive();
    let cluster = TestCluster::start().await;
    let endpoint = cluster.base_url.clone();

    let mixed = tokio::task::spawn_blocking({
        let endpoint = endpoint.clone();
        move || {
            bench(&[
                "--endpoint",
                &endpoint,
                "--clients",
                "4",
                "--duration",
                "2s",
                "--warmup",
                "500ms",
                "--write-ratio",
                "0.5",
                "--consistency",
                "strong",
                "--keys",
                "50",
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(mixed["error_count"], 0, "{mixed:#}");
    let writes = mixed["writes"]["latency_milliseconds"]["count"]
        .as_u64()
        .unwrap();
    let reads = mixed["reads"]["latency_milliseconds"]["count"]
        .as_u64()
        .unwrap();
    assert!(writes > 0 && reads > 0, "both kinds measured: {mixed:#}");
    assert_eq!(mixed["requests"].as_u64().unwrap(), writes + reads);
    let latency = &mixed["latency_milliseconds"];
    assert!(latency["p50"].as_f64().unwrap() > 0.0, "{mixed:#}");
    assert!(latency["p50"].as_f64() <= latency["p99"].as_f64());
    assert!(latency["p99"].as_f64() <= latency["max"].as_f64());

    // The keys written above are readable: the bench's key space is fixed by its seed.
    let eventual = tokio::task::spawn_blocking({
        let endpoint = endpoint.clone();
        move || {
            bench(&[
                "--endpoint",
                &endpoint,
                "--clients",
                "2",
                "--duration",
                "1s",
                "--write-ratio",
                "0",
                "--consistency",
                "eventual",
                "--keys",
                "50",
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(eventual["error_count"], 0, "{eventual:#}");
    assert!(eventual["reads"]["throughput"].as_f64().unwrap() > 0.0);
    assert_eq!(eventual["writes"]["latency_milliseconds"]["count"], 0);

    // Open loop at 40 requests per second for 2 seconds schedules 80 requests, whether or
    // not the cluster keeps up (those it could not send are reported as unsent).
    let open_loop = tokio::task::spawn_blocking(move || {
        bench(&[
            "--endpoint",
            &endpoint,
            "--clients",
            "4",
            "--duration",
            "2s",
            "--rate",
            "40",
            "--write-ratio",
            "1",
        ])
    })
    .await
    .unwrap();
    let scheduled = open_loop["requests"].as_u64().unwrap()
        + open_loop["error_count"].as_u64().unwrap()
        + open_loop["unsent"].as_u64().unwrap();
    assert!(
        (79..=81).contains(&scheduled),
        "80 requests scheduled, {scheduled} accounted for: {open_loop:#}"
    );
}

#[test]
fn bench_reports_a_refused_endpoint_as_errors_by_kind() {
    let unused_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let report = bench(&[
        "--endpoint",
        &format!("http://127.0.0.1:{unused_port}"),
        "--clients",
        "2",
        "--duration",
        "300ms",
    ]);
    assert_eq!(report["requests"], 0, "{report:#}");
    let errors = report["errors"].as_object().unwrap();
    assert!(
        errors.keys().any(|kind| kind.starts_with("connection")),
        "{report:#}"
    );
    assert!(report["error_count"].as_u64().unwrap() > 0);
}

#[test]
fn bench_refuses_meaningless_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_paxos"))
        .args(["bench", "--write-ratio", "1.5", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--write-ratio"));
    let output = Command::new(env!("CARGO_BIN_EXE_paxos"))
        .args(["bench", "--target", "etcd", "--consistency", "session"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
