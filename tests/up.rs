//! `paxos up` as a user runs it, and configuration errors as a user sees them.

mod support;

use serde_json::json;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::exclusive;

fn paxos() -> Command {
    Command::new(env!("CARGO_BIN_EXE_paxos"))
}

fn free_base_port() -> u16 {
    for _ in 0..50 {
        let base = 20000 + (rand::random::<u16>() % 400) * 100;
        let all_free = [1u16, 2, 3, 101, 102, 201, 202, 300]
            .iter()
            .all(|offset| std::net::TcpListener::bind(("127.0.0.1", base + offset)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no free ports");
}

async fn wait_for_write(http: &reqwest::Client, url: &str, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = http
            .post(format!("{url}/write"))
            .json(&json!({"key": key, "value": value}))
            .send()
            .await;
        if matches!(&response, Ok(response) if response.status() == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "paxos up never accepted a write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn terminate_and_wait(child: &mut std::process::Child) {
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "paxos up did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn paxos_up_runs_the_cluster_stops_on_sigterm_and_resumes_from_disk() {
    let _guard = exclusive();
    let data = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let client_port = base + 300;
    let url = format!("http://127.0.0.1:{client_port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let start = || {
        paxos()
            .args(["up", "--data-dir"])
            .arg(data.path())
            .args(["--base-port", &base.to_string()])
            .args(["--client-port", &client_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut up = start();
    wait_for_write(&http, &url, "greeting", "hello").await;
    let status: serde_json::Value = http
        .get(format!("{url}/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["nodes"].as_array().unwrap().len(),
        7,
        "3 acceptors, 2 proposers, 2 learners: {status}"
    );
    terminate_and_wait(&mut up);
    for port in [base + 1, base + 101, base + 201, client_port] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open after paxos up stopped"
        );
    }
    let mut up = start();
    wait_for_write(&http, &url, "second", "run").await;
    let read: serde_json::Value = http
        .post(format!("{url}/read"))
        .json(&json!({"key": "greeting", "consistency": "strong"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        read["value"], "hello",
        "the restarted cluster resumed from disk"
    );
    terminate_and_wait(&mut up);
}

#[test]
fn invalid_configuration_fails_at_start_naming_the_variable() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        ("acceptor", &[], "ACCEPTOR_ID"),
        ("acceptor", &[("ACCEPTOR_ID", "1")], "TLS_CA_FILE"),
        (
            "acceptor",
            &[("ACCEPTOR_ID", "1"), ("ACCEPTOR_PORT", "eighty")],
            "ACCEPTOR_PORT",
        ),
        (
            "learner",
            &[
                ("LEARNER_ID", "1"),
                ("ACCEPTOR_HOSTS", "a:1,b:2,c:3"),
                ("QUORUM_SIZE", "1"),
            ],
            "QUORUM_SIZE",
        ),
        ("proposer", &[("PROPOSER_ID", "1")], "ACCEPTOR_HOSTS"),
    ];
    for (role, environment, variable) in cases {
        let output = paxos()
            .arg(role)
            .env_clear()
            .envs(environment.iter().copied())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{role} {environment:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("invalid configuration: {variable}")),
            "{role}: {stderr}"
        );
    }
}
