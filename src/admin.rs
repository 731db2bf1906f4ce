//! The admin listener of one acceptor, proposer or learner: `GET /health` and `GET /status`
//! over HTTP on ADMIN_PORT, for container healthchecks, load balancers and operators; and
//! [`healthcheck`], the client side that `paxos healthcheck` runs inside a container that
//! has no curl.
//!
//! Health must mean "this node can do its part of the protocol", not "this process is
//! alive", so every `/health` request runs two checks:
//!
//! - **protocol**: the node answers a `StatusRequest` on its own protocol port within
//!   [`PROBE_TIMEOUT`], through the same listener, network tasks and driver thread that carry
//!   Prepare and Accept. A dead listener or a wedged driver fails it.
//! - **storage** (nodes with a DATA_DIR): a probe file can be created, written, fsynced and
//!   removed in DATA_DIR, next to the node's log. A vanished volume, a read-only or a full
//!   filesystem fails it: the states in which an acceptor could not make a promise durable.
//!
//! Under TLS the probe presents the node's own certificate (it runs in the node's process),
//! and checks that the certificate answering is the node's; the node's network takes a
//! connection from itself for its health probe ([`NodeId::HEALTH_PROBE`]), which may only
//! ask for status. In insecure mode the probe says `Hello` as [`HEALTH_PROBE`], client id
//! 0, which no real client API has (CLIENT_ID starts at 1), so a probe never takes over a
//! real client's route.

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use client::driver::NodeReport;
use common::message::{Message, NodeStatus};
use common::node::NodeId;
use runtime::network::Transport;
use runtime::wire::{decode_payload, encode_frame};
use serde_json::{json, Value as JsonValue};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The identity a health probe gives in its `Hello`: client id 0, which no client API uses.
pub const HEALTH_PROBE: NodeId = NodeId::HEALTH_PROBE;

/// How long the node has to answer the protocol probe. Generous: a healthcheck that fails
/// under load would restart healthy nodes; a wedged driver never answers at all.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Status replies are small; anything larger on the probe's connection is a protocol error.
const PROBE_FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The node an admin listener reports on.
#[derive(Clone, Debug)]
pub struct Target {
    /// The node itself.
    pub node: NodeId,
    /// Where to reach its protocol port from this process (a wildcard bind address is
    /// reached through loopback).
    pub protocol_address: SocketAddr,
    /// Its DATA_DIR, if it keeps one.
    pub data_dir: Option<PathBuf>,
    /// How the node's protocol port is secured (the probe speaks the same).
    pub transport: Transport,
}

impl Target {
    /// The target for `node`, which listens on `listen` ("ip:port", as in its config).
    pub fn new(
        node: NodeId,
        listen: &str,
        data_dir: Option<PathBuf>,
        transport: Transport,
    ) -> anyhow::Result<Target> {
        let mut protocol_address: SocketAddr = listen
            .parse()
            .with_context(|| format!("the node's listen address {listen:?} is not ip:port"))?;
        match protocol_address.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                protocol_address.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                protocol_address.set_ip(IpAddr::V6(Ipv6Addr::LOCALHOST))
            }
            _ => {}
        }
        Ok(Target {
            node,
            protocol_address,
            data_dir,
            transport,
        })
    }
}

/// The outcome of one check: `Ok` or why it failed.
pub type CheckOutcome = Result<(), String>;

/// What `/health` and `/status` report.
#[derive(Clone, Debug)]
pub struct Report {
    /// The node examined.
    pub node: NodeId,
    /// Its own status report, when the protocol probe got one.
    pub status: Option<NodeStatus>,
    /// Each check by name ("protocol", "storage") with its outcome.
    pub checks: Vec<(&'static str, CheckOutcome)>,
}

impl Report {
    /// Healthy when every check passed.
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|(_, outcome)| outcome.is_ok())
    }

    fn checks_json(&self) -> JsonValue {
        self.checks
            .iter()
            .map(|(name, outcome)| {
                let text = match outcome {
                    Ok(()) => "ok".to_string(),
                    Err(problem) => problem.clone(),
                };
                (name.to_string(), JsonValue::String(text))
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// The `/health` document.
    pub fn health_json(&self) -> JsonValue {
        json!({
            "status": if self.healthy() { "ok" } else { "unhealthy" },
            "node": self.node.to_string(),
            "checks": self.checks_json(),
        })
    }
}

/// Runs every check on `target`.
pub async fn examine(target: &Target) -> Report {
    let mut checks = Vec::new();
    let status = match probe_protocol(target).await {
        Ok(status) => {
            checks.push(("protocol", Ok(())));
            Some(status)
        }
        Err(problem) => {
            checks.push(("protocol", Err(problem)));
            None
        }
    };
    if let Some(data_dir) = target.data_dir.clone() {
        let mut outcome = tokio::task::spawn_blocking(move || probe_storage(&data_dir))
            .await
            .unwrap_or_else(|panic| Err(format!("the storage probe panicked: {panic}")));
        // An acceptor whose log is corrupt runs but refuses to vote: not healthy.
        if let Some(common::message::RoleStatus::Acceptor {
            storage_fault: Some(fault),
            ..
        }) = status.as_ref().map(|status| &status.detail)
        {
            outcome = Err(format!("refusing to vote: {fault}"));
        }
        checks.push(("storage", outcome));
    }
    Report {
        node: target.node,
        status,
        checks,
    }
}

/// Asks the node for its status over its own protocol port.
async fn probe_protocol(target: &Target) -> Result<NodeStatus, String> {
    let address = target.protocol_address;
    match tokio::time::timeout(
        PROBE_TIMEOUT,
        exchange_status(address, target.node, &target.transport),
    )
    .await
    {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(problem)) => Err(format!("protocol port {address}: {problem}")),
        Err(_) => Err(format!(
            "protocol port {address}: no status reply within {} ms",
            PROBE_TIMEOUT.as_millis()
        )),
    }
}

async fn exchange_status(
    address: SocketAddr,
    expected: NodeId,
    transport: &Transport,
) -> Result<NodeStatus, String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|error| error.to_string())?;
    match transport {
        Transport::Plaintext => exchange_status_over(stream, expected).await,
        Transport::Tls(config) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config.client));
            let stream = connector
                .connect(runtime::tls::dial_name(), stream)
                .await
                .map_err(|error| format!("TLS handshake: {error}"))?;
            let answering = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|certificate| runtime::tls::node_identity(certificate).map_err(|e| e.0));
            match answering {
                Some(Ok(node)) if node == expected => {}
                Some(Ok(node)) => return Err(format!("{node} answers there, not {expected}")),
                Some(Err(problem)) => return Err(problem),
                None => return Err("no certificate answered".into()),
            }
            exchange_status_over(stream, expected).await
        }
    }
}

async fn exchange_status_over<S>(mut stream: S, expected: NodeId) -> Result<NodeStatus, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut frames = Vec::new();
    encode_frame(&Message::Hello { node: HEALTH_PROBE }, &mut frames);
    encode_frame(&Message::StatusRequest { request_id: 1 }, &mut frames);
    stream
        .write_all(&frames)
        .await
        .map_err(|error| error.to_string())?;
    stream.flush().await.map_err(|error| error.to_string())?;
    loop {
        let length = stream
            .read_u32()
            .await
            .map_err(|error| format!("connection closed before a status reply: {error}"))?
            as usize;
        if length > PROBE_FRAME_BYTES_MAX {
            return Err(format!("a frame of {length} bytes is not a status reply"));
        }
        let mut payload = vec![0u8; length];
        stream
            .read_exact(&mut payload)
            .await
            .map_err(|error| error.to_string())?;
        match decode_payload(&payload).map_err(|error| error.to_string())? {
            // Only in plaintext does a Hello name the node; under TLS the certificate did.
            Message::Hello { node } if node != expected && node != HEALTH_PROBE => {
                return Err(format!("{node} answers there, not {expected}"));
            }
            Message::StatusReply { status, .. } => return Ok(status),
            _ => continue,
        }
    }
}

/// Creates, writes, fsyncs and removes a probe file in `data_dir`.
pub fn probe_storage(data_dir: &Path) -> CheckOutcome {
    let path = data_dir.join(format!(".health-probe-{:016x}", rand::random::<u64>()));
    let outcome = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all(b"health probe\n")?;
        file.sync_all()?;
        std::fs::remove_file(&path)
    })();
    outcome.map_err(|error| {
        let _ = std::fs::remove_file(&path);
        format!(
            "cannot write and sync a file in {}: {error}",
            data_dir.display()
        )
    })
}

/// Serves `/health` and `/status` about `target` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, target: Target) -> anyhow::Result<()> {
    let router = Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "the admin listener serves GET /health and GET /status"})),
            )
        })
        .with_state(target);
    axum::serve(listener, router)
        .await
        .context("the admin listener stopped")
}

/// Binds `listen` and serves the admin routes about `target` in the background.
pub async fn start(listen: &str, target: Target) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (ADMIN_PORT)"))?;
    let address = listener.local_addr()?;
    tracing::info!(node = %target.node, %address, "admin listener serving /health and /status");
    tokio::spawn(async move {
        if let Err(error) = serve(listener, target).await {
            tracing::error!("{error:#}");
        }
    });
    Ok(address)
}

fn status_code(report: &Report) -> StatusCode {
    if report.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn health(State(target): State<Target>) -> Response {
    let report = examine(&target).await;
    if !report.healthy() {
        tracing::warn!(checks = %report.checks_json(), "health check failed");
    }
    (status_code(&report), Json(report.health_json())).into_response()
}

async fn status(State(target): State<Target>) -> Response {
    let report = examine(&target).await;
    let node = NodeReport {
        role: target.node.role,
        id: Some(target.node.id),
        address: target.protocol_address.to_string(),
        status: report.status.clone(),
    };
    let mut document = client::http::node_json(&node);
    document["checks"] = report.checks_json();
    document["healthy"] = json!(report.healthy());
    (status_code(&report), Json(document)).into_response()
}

/// `GET http://{address}/health`: Ok with the body on 200, Err with the reason otherwise.
pub fn healthcheck(address: &str, timeout: Duration) -> Result<String, String> {
    match http_get(address, "/health", timeout)? {
        (200, body) => Ok(body),
        (status, body) => Err(format!("{address}: HTTP {status} {body}")),
    }
}

/// `GET http://{address}{path}`: the status code and the body. Plain HTTP/1.1 over std, so
/// that `paxos healthcheck` and `paxos status` need no HTTP client library and the
/// container image no tool.
pub fn http_get(address: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let socket_address = std::net::ToSocketAddrs::to_socket_addrs(address)
        .map_err(|error| format!("{address}: {error}"))?
        .next()
        .ok_or_else(|| format!("{address}: no address"))?;
    let mut stream = StdTcpStream::connect_timeout(&socket_address, timeout)
        .map_err(|error| format!("{address}: {error}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|error| error.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|error| format!("{address}: {error}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|error| format!("{address}: no complete answer: {error}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status_line = head.lines().next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{address}: not an HTTP answer: {status_line:?}"))?;
    Ok((status, body.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use acceptor::config::AcceptorConfig;

    async fn acceptor(data_dir: &Path) -> (acceptor::service::Handle, Target) {
        let config = AcceptorConfig {
            security: runtime::config::Security::Insecure,
            id: 1,
            listen: "127.0.0.1:0".to_string(),
            total_acceptors: 3,
            data_dir: data_dir.to_path_buf(),
            cluster_id: "paxos".to_string(),
            log_quota_bytes: None,
        };
        let handle = acceptor::service::start(config).await.unwrap();
        let target = Target::new(
            NodeId::acceptor(1),
            &handle.address().to_string(),
            Some(data_dir.to_path_buf()),
            Transport::Plaintext,
        )
        .unwrap();
        (handle, target)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_running_acceptor_with_working_storage_is_healthy() {
        let data = tempfile::tempdir().unwrap();
        let (handle, target) = acceptor(data.path()).await;
        let report = examine(&target).await;
        assert!(report.healthy(), "{report:?}");
        assert_eq!(report.status.as_ref().unwrap().node, NodeId::acceptor(1));
        assert_eq!(report.health_json()["checks"]["storage"], "ok");
        let leftovers: Vec<_> = std::fs::read_dir(data.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(".health"))
            .collect();
        assert!(leftovers.is_empty(), "the probe file was not removed");
        handle.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_acceptor_whose_data_directory_vanished_is_unhealthy() {
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().join("acceptor1");
        let (handle, target) = acceptor(&data_dir).await;
        std::fs::remove_dir_all(&data_dir).unwrap();
        let report = examine(&target).await;
        assert!(!report.healthy());
        let storage = report.health_json()["checks"]["storage"].clone();
        assert!(
            storage.as_str().unwrap().contains("cannot write and sync"),
            "{storage}"
        );
        assert_eq!(report.health_json()["checks"]["protocol"], "ok");
        handle.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_acceptor_fails_the_protocol_check() {
        let data = tempfile::tempdir().unwrap();
        let (handle, target) = acceptor(data.path()).await;
        handle.shutdown().await;
        let report = examine(&target).await;
        assert!(!report.healthy());
        assert!(report.status.is_none());
        assert_eq!(report.health_json()["status"], "unhealthy");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_different_node_on_the_port_fails_the_protocol_check() {
        let data = tempfile::tempdir().unwrap();
        let (handle, mut target) = acceptor(data.path()).await;
        target.node = NodeId::acceptor(2);
        let report = examine(&target).await;
        let protocol = report.health_json()["checks"]["protocol"].clone();
        assert!(
            protocol
                .as_str()
                .unwrap()
                .contains("acceptor1 answers there"),
            "{protocol}"
        );
        handle.shutdown().await;
    }

    #[test]
    fn a_wildcard_bind_address_is_probed_through_loopback() {
        let target = Target::new(
            NodeId::learner(2),
            "0.0.0.0:7201",
            None,
            Transport::Plaintext,
        )
        .unwrap();
        assert_eq!(target.protocol_address.to_string(), "127.0.0.1:7201");
        let target =
            Target::new(NodeId::learner(2), "[::]:7201", None, Transport::Plaintext).unwrap();
        assert_eq!(target.protocol_address.to_string(), "[::1]:7201");
    }
}
