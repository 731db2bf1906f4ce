//! `paxos put | get | watch | status` run as a user runs them, against the real cluster.

mod support;

use serde_json::Value as Json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::{exclusive, TestCluster};

fn paxos(cluster: &TestCluster, arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paxos"))
        .args(arguments)
        .args(["--endpoint", &cluster.base_url])
        .stdin(Stdio::null())
        .output()
        .expect("paxos runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_of(output: &Output) -> Json {
    serde_json::from_str(stdout(output).trim())
        .unwrap_or_else(|error| panic!("{:?} is not JSON: {error}", stdout(output)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn put_get_and_status_print_readable_text_or_json_and_exit_with_meaningful_codes() {
    let _guard = exclusive();
    let cluster = TestCluster::start().await;

    let put = paxos(
        &cluster,
        &["put", "colour", "blue", "--session-id", "alice"],
    );
    assert!(put.status.success(), "{}", stderr(&put));
    assert!(
        stdout(&put).starts_with("OK colour = blue (slot "),
        "{}",
        stdout(&put)
    );
    for level in ["strong", "eventual"] {
        let get = paxos(&cluster, &["get", "colour", "--consistency", level]);
        assert!(get.status.success(), "{level}: {}", stderr(&get));
        assert_eq!(stdout(&get), "blue\n", "{level}");
    }
    let session = paxos(
        &cluster,
        &[
            "get",
            "colour",
            "--consistency",
            "session",
            "--session-id",
            "alice",
        ],
    );
    assert_eq!(stdout(&session), "blue\n", "{}", stderr(&session));
    let get = paxos(&cluster, &["get", "colour", "--output", "json"]);
    let answer = json_of(&get);
    assert_eq!(answer["value"], "blue");
    assert_eq!(answer["consistency"], "strong");

    let put = paxos(&cluster, &["put", "shape", "round", "--output", "json"]);
    let answer = json_of(&put);
    assert_eq!(answer["key"], "shape");
    assert!(answer["slot"].as_u64().unwrap() >= 1);

    let missing = paxos(&cluster, &["get", "never-written"]);
    assert_eq!(missing.status.code(), Some(3), "a missing key exits with 3");
    assert_eq!(stdout(&missing), "");
    assert!(
        stderr(&missing).contains("has no value"),
        "{}",
        stderr(&missing)
    );

    let status = paxos(&cluster, &["status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let table = stdout(&status);
    assert!(table.starts_with("leader: proposer"), "{table}");
    for name in [
        "acceptor1",
        "acceptor3",
        "proposer2",
        "learner1",
        "learner2",
    ] {
        assert!(
            table
                .lines()
                .any(|line| line.starts_with(name) && line.contains(" up ")),
            "{name} in {table}"
        );
    }
    cluster.kill("acceptor3");
    let status = paxos(&cluster, &["status"]);
    let table = stdout(&status);
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("acceptor3") && line.contains("DOWN")),
        "{table}"
    );
    let status = paxos(&cluster, &["status", "--output", "json"]);
    assert!(json_of(&status)["nodes"].as_array().unwrap().len() >= 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn failures_print_a_clear_error_and_exit_non_zero() {
    let _guard = exclusive();
    let cluster = TestCluster::start().await;
    let refused = paxos(&cluster, &["put", "k", "v", "--request-id", "not-a-uuid"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("400 Bad Request") && stderr(&refused).contains("UUID"),
        "{}",
        stderr(&refused)
    );
    let refused = paxos(
        &cluster,
        &["put", "k", "v", "--request-id", "x", "--output", "json"],
    );
    assert_eq!(json_of(&refused)["status"], 400);
    let no_session = paxos(&cluster, &["get", "k", "--consistency", "session"]);
    assert_eq!(no_session.status.code(), Some(1));
    assert!(stderr(&no_session).contains("--session-id"));
    let bad_pattern = paxos(&cluster, &["watch", "key[0-9]"]);
    assert_eq!(bad_pattern.status.code(), Some(1));
    assert!(
        stderr(&bad_pattern).contains("reserved"),
        "{}",
        stderr(&bad_pattern)
    );
    let usage = paxos(&cluster, &["get", "k", "--consistency", "psychic"]);
    assert_eq!(usage.status.code(), Some(2), "wrong usage exits with 2");

    let nowhere = Command::new(env!("CARGO_BIN_EXE_paxos"))
        .args(["get", "k", "--endpoint", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(
        stderr(&nowhere).contains("http://127.0.0.1:9 did not answer"),
        "{}",
        stderr(&nowhere)
    );
}

/// Lines printed by a running `paxos watch`.
struct Watch {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(cluster: &TestCluster, arguments: &[&str]) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_paxos"))
            .arg("watch")
            .args(arguments)
            .args(["--endpoint", &cluster.base_url, "--output", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    fn next(&self) -> Json {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("paxos watch prints the write");
        serde_json::from_str(&line).unwrap()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn watch_prints_each_matching_write_and_resumes_after_the_client_api_restarts() {
    let _guard = exclusive();
    let cluster = TestCluster::start().await;
    let before = json_of(&paxos(
        &cluster,
        &["put", "w0", "before the watch", "--output", "json"],
    ));
    // Starting right after w0's slot, the watch misses nothing however long it takes to
    // open its stream.
    let after_w0 = before["slot"].to_string();
    let watch = Watch::start(&cluster, &["w*", "exact", "--from-slot", &after_w0]);
    let mut expected = Vec::new();
    for index in 1..=5 {
        let key = format!("w{index}");
        assert!(paxos(&cluster, &["put", &key, "v"]).status.success());
        assert!(paxos(&cluster, &["put", "other", "v"]).status.success());
        expected.push(key);
    }
    cluster.restart("client1");
    cluster.wait_until_writable(Duration::from_secs(30)).await;
    for index in 6..=10 {
        let key = format!("w{index}");
        assert!(paxos(&cluster, &["put", &key, "v"]).status.success());
        expected.push(key);
    }
    assert!(paxos(&cluster, &["put", "exact", "x"]).status.success());
    expected.push("exact".into());
    let mut last_slot = 0;
    for key in &expected {
        let line = watch.next();
        assert_eq!(line["key"], key.as_str(), "{line}");
        let slot = line["slot"].as_u64().unwrap();
        assert!(slot > last_slot, "in slot order: {line}");
        assert!(line["id"].is_string());
        last_slot = slot;
    }
    assert!(
        watch.lines.recv_timeout(Duration::from_secs(2)).is_err(),
        "nothing repeated after the restart"
    );

    // --from-slot 0 replays the writes the learners still hold, w0 first.
    let replay = Watch::start(&cluster, &["w*", "--from-slot", "0"]);
    assert_eq!(replay.next()["key"], "w0");
    assert_eq!(replay.next()["key"], "w1");
}
