//! Starts the real cluster (separate `paxos` processes on 127.0.0.1) for integration
//! tests, and talks to it through the client API like a user would.
#![allow(dead_code)]

pub mod sse;
pub mod webdriver;

use paxos::cluster::{Layout, NodePlan};
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Cluster tests share two cores: run them one at a time, so timeouts mean faults, not load.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn exclusive() -> MutexGuard<'static, ()> {
    ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn ports_free(base: u16, client_port: u16) -> bool {
    let mut ports: Vec<u16> = vec![client_port];
    for offset in [1, 2, 3, 4, 5, 101, 102, 103, 201, 202, 203] {
        ports.push(base + offset);
    }
    ports
        .iter()
        .all(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
}

pub struct TestCluster {
    pub layout: Layout,
    pub data: tempfile::TempDir,
    nodes: Vec<NodePlan>,
    /// Extra environment variables per node name, on top of the layout's.
    extra_environment: Vec<(String, String, String)>,
    children: Mutex<HashMap<String, Child>>,
    pub http: reqwest::Client,
    pub base_url: String,
}

/// The outcome of one request through the client API.
#[derive(Debug)]
pub enum Outcome {
    Ok(Json),
    /// The API answered with an error status.
    Failed(u16, Json),
    /// No answer (connection refused, timeout).
    Unreachable(String),
}

impl Outcome {
    pub fn ok(self) -> Json {
        match self {
            Outcome::Ok(body) => body,
            other => panic!("expected success, got {other:?}"),
        }
    }
}

impl TestCluster {
    /// Starts the default topology (3 acceptors, 2 proposers, 2 learners, 1 client API).
    pub async fn start() -> TestCluster {
        Self::start_with(3).await
    }

    pub async fn start_with(acceptors: u32) -> TestCluster {
        Self::start_configured(acceptors, &[]).await
    }

    /// Starts `acceptors` acceptors and the default rest, with extra environment variables
    /// per node: `(node name, variable, value)`; the node name `*` means every node (each
    /// role reads only its own variables).
    pub async fn start_configured(acceptors: u32, extra: &[(&str, &str, &str)]) -> TestCluster {
        let data = tempfile::tempdir().expect("a temporary directory");
        let mut layout = None;
        for attempt in 0..50u32 {
            let base = 20000 + (rand::random::<u16>() % 400) * 100;
            let client_port = base + 300;
            if ports_free(base, client_port) {
                layout = Some(Layout {
                    acceptors,
                    base_port: base,
                    client_port,
                    data_dir: data.path().to_path_buf(),
                    ..Layout::default()
                });
                break;
            }
            assert!(attempt < 49, "no free ports found");
        }
        let layout = layout.expect("ports chosen");
        // Mutual TLS between the nodes, as in production.
        layout
            .ensure_certificates()
            .expect("the cluster's certificates are written");
        let nodes = layout.nodes();
        let base_url = format!("http://127.0.0.1:{}", layout.client_port);
        let cluster = TestCluster {
            layout,
            data,
            nodes,
            extra_environment: extra
                .iter()
                .map(|(node, key, value)| (node.to_string(), key.to_string(), value.to_string()))
                .collect(),
            children: Mutex::new(HashMap::new()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            base_url,
        };
        for name in cluster.node_names() {
            cluster.start_node(&name);
        }
        cluster.wait_until_writable(Duration::from_secs(30)).await;
        cluster
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.name.clone()).collect()
    }

    fn plan(&self, name: &str) -> &NodePlan {
        self.nodes
            .iter()
            .find(|node| node.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.data.path().join(format!("{name}.log"))
    }

    pub fn start_node(&self, name: &str) {
        assert!(!self.is_running(name), "{name} already runs");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .unwrap();
        let mut command = self
            .plan(name)
            .command(std::path::Path::new(env!("CARGO_BIN_EXE_paxos")));
        command
            .env("LOG_LEVEL", "info")
            .env(runtime::network::FAULT_FILE_VARIABLE, self.fault_file(name))
            .envs(
                self.extra_environment
                    .iter()
                    .filter(|(node, _, _)| node == name || node == "*")
                    .map(|(_, key, value)| (key, value)),
            )
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        let child = command.spawn().expect("the paxos binary starts");
        self.children
            .lock()
            .unwrap()
            .insert(name.to_string(), child);
    }

    fn signal(&self, name: &str, signal: libc::c_int) {
        let children = self.children.lock().unwrap();
        let child = children
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not running"));
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
    }

    /// kill -9 the node and wait for it to be gone.
    pub fn kill(&self, name: &str) {
        self.signal(name, libc::SIGKILL);
        let mut child = self.children.lock().unwrap().remove(name).unwrap();
        child.wait().unwrap();
    }

    pub fn restart(&self, name: &str) {
        if self.is_running(name) {
            self.kill(name);
        }
        self.start_node(name);
    }

    pub fn pause(&self, name: &str) {
        self.signal(name, libc::SIGSTOP);
    }

    pub fn resume(&self, name: &str) {
        self.signal(name, libc::SIGCONT);
    }

    /// The fault file `name`'s network reads (see `runtime::network::FAULT_FILE_VARIABLE`).
    pub fn fault_file(&self, name: &str) -> PathBuf {
        self.data.path().join(format!("{name}.faults"))
    }

    /// Replaces `name`'s fault rules ("both acceptor1", "in *", ...; "" for none). The
    /// node applies them within about 50 ms.
    pub fn set_fault_rules(&self, name: &str, rules: &str) {
        let path = self.fault_file(name);
        let staging = path.with_extension("faults-new");
        std::fs::write(&staging, rules).unwrap();
        std::fs::rename(&staging, &path).unwrap();
    }

    /// Cuts `name` off from every node, both ways.
    pub fn isolate(&self, name: &str) {
        self.set_fault_rules(name, "both *");
    }

    /// Cuts every link between a node of `side` and a node outside it, both ways.
    pub fn split(&self, side: &[String]) {
        for name in self.node_names() {
            let rules: Vec<String> = self
                .node_names()
                .into_iter()
                .filter(|other| side.contains(&name) != side.contains(other))
                .map(|other| format!("both {other}"))
                .collect();
            self.set_fault_rules(&name, &rules.join("\n"));
        }
    }

    /// Removes every fault rule.
    pub fn heal_network(&self) {
        for name in self.node_names() {
            self.set_fault_rules(&name, "");
        }
    }

    /// The process id of running node `name`.
    pub fn pid(&self, name: &str) -> u32 {
        self.children
            .lock()
            .unwrap()
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not running"))
            .id()
    }

    /// Whether node `name`'s process ended by itself (crashed or exited) since it was
    /// started.
    pub fn has_exited(&self, name: &str) -> bool {
        let mut children = self.children.lock().unwrap();
        let child = children
            .get_mut(name)
            .unwrap_or_else(|| panic!("{name} is not running"));
        !matches!(child.try_wait(), Ok(None))
    }

    pub fn is_running(&self, name: &str) -> bool {
        self.children.lock().unwrap().contains_key(name)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub async fn post(&self, path: &str, body: Json) -> Outcome {
        match self.http.post(self.url(path)).json(&body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Json = response.json().await.unwrap_or(Json::Null);
                if status == 200 {
                    Outcome::Ok(body)
                } else {
                    Outcome::Failed(status, body)
                }
            }
            Err(error) => Outcome::Unreachable(error.to_string()),
        }
    }

    pub async fn write(&self, key: &str, value: &str) -> Outcome {
        self.post("/write", json!({"key": key, "value": value}))
            .await
    }

    pub async fn read(&self, key: &str, consistency: &str) -> Outcome {
        self.post("/read", json!({"key": key, "consistency": consistency}))
            .await
    }

    /// The value of a strong read, panicking if the read fails.
    pub async fn strong_value(&self, key: &str) -> Option<String> {
        let body = self.read(key, "strong").await.ok();
        body["value"].as_str().map(String::from)
    }

    pub async fn status(&self) -> Json {
        match self.http.get(self.url("/status")).send().await {
            Ok(response) => response.json().await.unwrap_or(Json::Null),
            Err(_) => Json::Null,
        }
    }

    /// The id of the proposer the cluster reports as leader.
    pub async fn leader(&self) -> Option<u64> {
        self.status().await["leader"]["proposer"].as_u64()
    }

    /// Waits until a proposer leads and returns its node name.
    pub async fn wait_for_leader(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(id) = self.leader().await {
                return format!("proposer{id}");
            }
            assert!(Instant::now() < deadline, "no leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn learner_applied_slots(&self) -> HashMap<u64, u64> {
        let status = self.status().await;
        let mut slots = HashMap::new();
        if let Some(learners) = status["learners"].as_array() {
            for learner in learners {
                if let (Some(id), Some(slot)) =
                    (learner["id"].as_u64(), learner["applied_slot"].as_u64())
                {
                    slots.insert(id, slot);
                }
            }
        }
        slots
    }

    /// Writes until one succeeds; returns how long it took.
    pub async fn wait_until_writable(&self, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let key = format!("probe-{}", rand::random::<u32>());
            if let Outcome::Ok(_) = self.write(&key, "probe").await {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "the cluster accepted no write within {timeout:?}\n{}",
                self.logs_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The data directory of node `name`.
    pub fn data_dir_of(&self, name: &str) -> PathBuf {
        self.data.path().join(name)
    }

    pub fn logs_tail(&self) -> String {
        let mut text = String::new();
        for node in &self.nodes {
            let contents = std::fs::read_to_string(self.log_path(&node.name)).unwrap_or_default();
            let lines: Vec<&str> = contents.lines().collect();
            text.push_str(&format!("---- {} (last lines)\n", node.name));
            for line in &lines[lines.len().saturating_sub(15)..] {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    pub fn stop_all(&self) {
        let names: Vec<String> = self.children.lock().unwrap().keys().cloned().collect();
        for name in names {
            self.resume(&name);
            self.kill(&name);
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs_tail());
        }
        self.stop_all();
    }
}
