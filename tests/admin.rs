//! A node's admin listener (ADMIN_PORT), `paxos healthcheck` and the stop on SIGTERM, as a
//! container runs them: the real `paxos` program, one process per node.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn paxos() -> Command {
    Command::new(env!("CARGO_BIN_EXE_paxos"))
}

/// Ports free now (a race with other processes is possible but unlikely; the test then
/// fails at start, naming the port).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts acceptor 1 with a certificate of its own (the health probe speaks TLS too).
fn start_acceptor(data_dir: &Path, port: u16, admin_port: u16) -> Node {
    let certificates = data_dir.join("certs");
    let written = paxos()
        .args([
            "certs",
            "--acceptors",
            "1",
            "--proposers",
            "0",
            "--learners",
            "0",
        ])
        .args(["--clients", "0", "--out"])
        .arg(&certificates)
        .output()
        .unwrap();
    assert!(written.status.success(), "{written:?}");
    let child = paxos()
        .arg("acceptor")
        .env("TLS_CA_FILE", certificates.join("ca.pem"))
        .env("TLS_CERT_FILE", certificates.join("acceptor1.pem"))
        .env("TLS_KEY_FILE", certificates.join("acceptor1.key"))
        .env("ACCEPTOR_ID", "1")
        .env("ACCEPTOR_PORT", port.to_string())
        .env("ADMIN_PORT", admin_port.to_string())
        .env("DATA_DIR", data_dir)
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("the paxos binary starts");
    Node(child)
}

fn healthcheck(admin_port: u16) -> (bool, String) {
    let output = paxos()
        .args(["healthcheck", &format!("127.0.0.1:{admin_port}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

async fn get(url: &str) -> Option<(u16, serde_json::Value)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acceptor_reports_its_health_and_turns_unhealthy_when_its_storage_breaks() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("acceptor1");
    let ports = free_ports(2);
    let (port, admin_port) = (ports[0], ports[1]);
    let mut node = start_acceptor(&data_dir, port, admin_port);
    let health_url = format!("http://127.0.0.1:{admin_port}/health");

    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        if let Some((200, body)) = get(&health_url).await {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the acceptor never reported healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["node"], "acceptor1");
    assert_eq!(health["checks"]["protocol"], "ok");
    assert_eq!(health["checks"]["storage"], "ok");
    let (healthy, text) = healthcheck(admin_port);
    assert!(healthy, "paxos healthcheck: {text}");

    let (status, document) = get(&format!("http://127.0.0.1:{admin_port}/status"))
        .await
        .expect("/status answers");
    assert_eq!(status, 200);
    assert_eq!(document["name"], "acceptor1");
    assert_eq!(document["promised_ballot"], "0.0");
    let output = paxos()
        .args(["node-status", &format!("127.0.0.1:{admin_port}")])
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["name"], "acceptor1");
    assert_eq!(printed["checks"]["storage"], "ok");

    // The volume vanishes under the running acceptor: it could no longer make a vote durable.
    std::fs::remove_dir_all(&data_dir).unwrap();
    let (status, health) = get(&health_url).await.expect("/health answers");
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "unhealthy");
    assert!(health["checks"]["storage"]
        .as_str()
        .unwrap()
        .contains("cannot write and sync"));
    let (healthy, text) = healthcheck(admin_port);
    assert!(
        !healthy,
        "paxos healthcheck passed an unhealthy node: {text}"
    );
    assert!(text.contains("503"), "{text}");

    unsafe {
        libc::kill(node.0.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = wait_for_exit(&mut node.0, Duration::from_secs(10))
        .expect("the acceptor did not stop on SIGTERM");
    assert!(status.success(), "SIGTERM is a clean stop, not {status}");
    let (healthy, _) = healthcheck(admin_port);
    assert!(!healthy, "a stopped node passed its healthcheck");
}

#[test]
fn an_invalid_admin_port_stops_the_node_naming_the_variable() {
    let output = paxos()
        .arg("learner")
        .env("LEARNER_ID", "1")
        .env("ACCEPTOR_HOSTS", "127.0.0.1:1")
        .env("ADMIN_PORT", "health")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("invalid configuration: ADMIN_PORT"),
        "{message}"
    );
}
