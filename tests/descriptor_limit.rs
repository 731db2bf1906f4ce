//! The client API under a low file-descriptor limit: a real `paxos client` process started
//! with RLIMIT_NOFILE 256 caps its connections below the limit, so a flood of idle
//! connections makes room (the one idle the longest is closed) instead of exhausting the
//! descriptors, and normal requests keep being answered.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The descriptor limit the client API runs with.
const DESCRIPTOR_LIMIT: u64 = 256;
/// Idle connections opened at once: more than the whole descriptor limit.
const FLOOD: usize = 600;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_client(port: u16, data_dir: &std::path::Path) -> Node {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paxos"));
    command
        .arg("client")
        .env("CLIENT_PORT", port.to_string())
        // Nothing listens there: /health does not need the cluster.
        .env("PROPOSER_HOSTS", format!("127.0.0.1:{}", free_port()))
        .env("LEARNER_HOSTS", format!("127.0.0.1:{}", free_port()))
        .env("REQUEST_TIMEOUT", "500")
        .env("DATA_DIR", data_dir)
        .env("LOG_LEVEL", "warn")
        // No cluster behind it: only the HTTP side is under test.
        .env("PAXOS_INSECURE", "true")
        .stdin(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: DESCRIPTOR_LIMIT,
                rlim_max: DESCRIPTOR_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Node(command.spawn().expect("the paxos binary starts"))
}

/// Lowers the running process `pid`'s soft descriptor limit to `soft`, below what its
/// connection limit was computed from, so that accepts fail with EMFILE.
fn lower_soft_limit(pid: u32, soft: u64) {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: DESCRIPTOR_LIMIT,
    };
    // SAFETY: prlimit reads one rlimit we own and writes none (old limit pointer null).
    let result = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(result, 0, "prlimit: {}", std::io::Error::last_os_error());
}

async fn wait_until_answering(base: &str) {
    for _ in 0..200 {
        if health(base).await.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the client API did not answer within 10 s");
}

/// Opens `count` connections at once, in batches of 100.
async fn connect_many(port: u16, count: usize) -> Vec<tokio::net::TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count.div_ceil(100) {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..100.min(count - streams.len()) {
            batch.spawn(tokio::net::TcpStream::connect(("127.0.0.1", port)));
        }
        while let Some(stream) = batch.join_next().await {
            streams.push(stream.unwrap().expect("the kernel accepts the connection"));
        }
    }
    streams
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// GET /health on a new connection; answers how long it took, or None on failure.
async fn health(base: &str) -> Option<Duration> {
    let started = Instant::now();
    let response = http().get(format!("{base}/health")).send().await.ok()?;
    (response.status() == 200).then(|| started.elapsed())
}

async fn http_counts(base: &str) -> serde_json::Value {
    let response = http().get(format!("{base}/status")).send().await.unwrap();
    let document: serde_json::Value = response.json().await.unwrap();
    document["http"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_beyond_the_descriptor_limit_does_not_stop_normal_requests() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut node = start_client(port, data.path());
    let base = format!("http://127.0.0.1:{port}");
    wait_until_answering(&base).await;
    let counts = http_counts(&base).await;
    let max_connections = counts["max_connections"].as_u64().unwrap();
    assert!(max_connections < DESCRIPTOR_LIMIT, "{counts}");

    let flood = connect_many(port, FLOOD).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let took = health(&base)
            .await
            .expect("answered during the flood (the longest idle connection makes room)");
        slowest = slowest.max(took);
    }
    let counts = http_counts(&base).await;
    println!(
        "{FLOOD} idle connections against a limit of {max_connections} \
         (RLIMIT_NOFILE {DESCRIPTOR_LIMIT}): 20 GET /health answered, slowest {slowest:?}; {counts}"
    );
    assert!(slowest < Duration::from_secs(1), "slowest {slowest:?}");
    assert!(
        counts["closed_to_make_room"].as_u64().unwrap() >= FLOOD as u64 - max_connections,
        "{counts}"
    );
    assert_eq!(counts["accept_errors"], 0, "{counts}");
    assert!(node.0.try_wait().unwrap().is_none(), "the client API died");

    drop(flood);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let took = health(&base).await.expect("answered after the flood");
    println!("after the flood: GET /health in {took:?}");
    assert!(node.0.try_wait().unwrap().is_none(), "the client API died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_accept_loop_makes_room_backs_off_and_recovers() {
    use tokio::io::AsyncWriteExt;
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let node = start_client(port, data.path());
    let base = format!("http://127.0.0.1:{port}");
    wait_until_answering(&base).await;
    // The connection limit (128) now exceeds what the descriptors allow: accepts fail.
    lower_soft_limit(node.0.id(), 64);

    // Idle connections: each EMFILE closes the one idle the longest, so requests go on.
    let flood = connect_many(port, 300).await;
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let took = health(&base)
            .await
            .expect("answered while out of descriptors");
        slowest = slowest.max(took);
    }
    let counts = http_counts(&base).await;
    println!(
        "300 idle connections, soft limit 64: 10 GET /health answered in {:?}, slowest {slowest:?}; {counts}",
        started.elapsed()
    );
    assert!(counts["accept_errors"].as_u64().unwrap() > 0, "{counts}");
    assert!(slowest < Duration::from_secs(1), "slowest {slowest:?}");
    drop(flood);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = http_counts(&base).await["accept_errors"].as_u64().unwrap();

    // Uploads in progress on every descriptor: nothing to close, so accepts keep failing;
    // the loop must pause (up to 100 ms) rather than spin.
    let mut uploads = connect_many(port, 100).await;
    for upload in &mut uploads {
        let head = b"POST /write HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100\r\n\r\n{";
        let _ = upload.write_all(head).await;
    }
    let held = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = held.elapsed();
    drop(uploads);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    wait_until_answering(&base).await;
    let recovered = started.elapsed();
    let counts = http_counts(&base).await;
    let errors = counts["accept_errors"].as_u64().unwrap() - before;
    println!(
        "100 uploads held {held:?}: {errors} accept errors meanwhile; answering again after {recovered:?}; {counts}"
    );
    assert!(
        errors <= 100,
        "{errors} accept errors in {held:?}: the loop spins"
    );
    assert!(
        recovered < Duration::from_secs(2),
        "recovered after {recovered:?}"
    );
    drop(node);
}
