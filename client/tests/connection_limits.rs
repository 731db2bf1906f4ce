//! The REST API's HTTP side under attack: slow request heads, thousands of idle sockets and
//! quiet keep-alive connections must not stop normal requests, and event streams and slow
//! uploads that make progress must not be cut.

mod support;

use client::config::ClientConfig;
use common::message::{Message, VersionedValue};
use common::node::NodeId;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{config, get, http, post, FakeNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proposer deciding every write in slot 7 and granting every read index at 7, and a
/// learner that has applied slot 7 holding "v" for every key and answering subscriptions.
async fn cluster() -> (FakeNode, FakeNode) {
    let proposer = FakeNode::start(NodeId::proposer(1), |_, message| match message {
        Message::Write { command, client } => vec![Message::WriteDecided {
            request_id: command.request_id,
            slot: 7,
            client: *client,
        }],
        Message::ReadIndex { read_id } => vec![Message::ReadIndexGranted {
            read_id: *read_id,
            slot: 7,
        }],
        _ => Vec::new(),
    })
    .await;
    let learner = FakeNode::start(NodeId::learner(1), |_, message| match message {
        Message::Read { read_id, .. } => vec![Message::ReadReply {
            read_id: *read_id,
            value: Some(VersionedValue {
                value: "v".to_string(),
                create_revision: 7,
                mod_revision: 7,
                version: 1,
            }),
            applied_slot: 7,
        }],
        Message::Outcome { .. } => support::outcome_reply(message, 0).into_iter().collect(),
        Message::Subscribe { stream_id, .. } => vec![Message::Applied {
            stream_id: *stream_id,
            from_slot: 8,
            to_slot: 8,
            slots: vec![],
            applied_slot: 7,
        }],
        _ => Vec::new(),
    })
    .await;
    (proposer, learner)
}

/// Starts the client API of `config` and waits until it reaches both nodes.
async fn start(config: ClientConfig, nodes: &(FakeNode, FakeNode)) -> client::ClientHandle {
    let handle = client::start(config).await.unwrap();
    nodes.0.wait_for_client().await;
    nodes.1.wait_for_client().await;
    handle
}

fn limited(
    proposer: &FakeNode,
    learner: &FakeNode,
    header_timeout_milliseconds: u64,
    idle_timeout_milliseconds: u64,
) -> ClientConfig {
    ClientConfig {
        header_timeout_milliseconds,
        idle_timeout_milliseconds,
        ..config(&[proposer], &[learner], 2000)
    }
}

/// Raises this process's descriptor soft limit to the hard limit; answers the new limit.
fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write one rlimit we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// One normal client's round: GET /health, a write, a strong read, each on a new
/// connection; answers the slowest of the three.
async fn normal_round(base: &str) -> Duration {
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    let (status, answer) = get(format!("{base}/health")).await;
    assert_eq!(status, 200, "{answer}");
    slowest = slowest.max(started.elapsed());
    let started = Instant::now();
    let (status, answer) = post(
        format!("{base}/write"),
        json!({"key": "k", "value": "v"}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    slowest = slowest.max(started.elapsed());
    let started = Instant::now();
    let (status, answer) = post(format!("{base}/read"), json!({"key": "k"}).to_string()).await;
    assert_eq!(
        (status, answer["value"].clone()),
        (200, json!("v")),
        "{answer}"
    );
    slowest.max(started.elapsed())
}

/// Normal rounds every 50 ms for `duration`; answers how many and the slowest request.
async fn normal_rounds_for(base: &str, duration: Duration) -> (usize, Duration) {
    let deadline = Instant::now() + duration;
    let (mut rounds, mut slowest) = (0, Duration::ZERO);
    while Instant::now() < deadline {
        slowest = slowest.max(normal_round(base).await);
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (rounds, slowest)
}

async fn http_counts(base: &str) -> Value {
    let (status, answer) = get(format!("{base}/status")).await;
    assert_eq!(status, 200, "{answer}");
    answer["http"].clone()
}

/// Waits (at most 10 s) until `/status` shows `field` at least `at_least`.
async fn wait_for_count(base: &str, field: &str, at_least: u64) -> Value {
    for _ in 0..200 {
        let counts = http_counts(base).await;
        if counts[field].as_u64().unwrap() >= at_least {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{field} never reached {at_least}: {}",
        http_counts(base).await
    );
}

/// Waits until the server closes `stream` (EOF or an error) within `limit`; answers when.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Instant> {
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(Instant::now()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends a request head that never ends, one byte every 100 ms; answers how long after its
/// first byte the server closed the connection (None: not within 10 s).
async fn slowloris(address: std::net::SocketAddr) -> Option<Duration> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ";
    let first_byte = Instant::now();
    let mut buffer = [0u8; 64];
    for index in 0..100 {
        let byte = head.get(index).copied().unwrap_or(b'a');
        if stream.write_all(&[byte]).await.is_err() {
            return Some(first_byte.elapsed());
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(first_byte.elapsed()),
            _ => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_closed_after_the_header_timeout_while_normal_requests_answer() {
    raise_descriptor_limit();
    let nodes = cluster().await;
    let (proposer, learner) = (&nodes.0, &nodes.1);
    let handle = start(limited(proposer, learner, 1000, 60_000), &nodes).await;
    let address = handle.address();
    let base = format!("http://{address}");
    const SLOW: usize = 300;
    let slow: Vec<_> = (0..SLOW)
        .map(|_| tokio::spawn(slowloris(address)))
        .collect();
    let (rounds, slowest) = normal_rounds_for(&base, Duration::from_secs(3)).await;
    let mut closed_after = Vec::new();
    for task in slow {
        closed_after.push(task.await.unwrap().expect("closed within 10 s"));
    }
    let earliest = closed_after.iter().min().unwrap();
    let latest = closed_after.iter().max().unwrap();
    println!(
        "{SLOW} slow heads closed {earliest:?}..{latest:?} after their first byte; \
         {rounds} normal rounds meanwhile, slowest request {slowest:?}"
    );
    assert!(
        *earliest >= Duration::from_millis(900),
        "closed too early: {earliest:?}"
    );
    assert!(
        *latest <= Duration::from_millis(2500),
        "closed too late: {latest:?}"
    );
    assert!(rounds >= 5, "only {rounds} normal rounds in 3 s");
    assert!(slowest < Duration::from_secs(1), "slowest {slowest:?}");
    let counts = http_counts(&base).await;
    assert!(
        counts["closed_header_timeout"].as_u64().unwrap() >= SLOW as u64,
        "{counts}"
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_idle_connections_do_not_stop_normal_requests() {
    const IDLE: usize = 5000;
    let limit = raise_descriptor_limit();
    // Both ends of every connection live in this process, plus the other tests' sockets.
    if limit < 2 * IDLE as u64 + 2000 {
        println!(
            "skipped: RLIMIT_NOFILE hard limit {limit} is below {}",
            2 * IDLE + 2000
        );
        return;
    }
    let nodes = cluster().await;
    let (proposer, learner) = (&nodes.0, &nodes.1);
    let handle = start(limited(proposer, learner, 10_000, 60_000), &nodes).await;
    let address = handle.address();
    let base = format!("http://{address}");
    let opening = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    // In batches, so that the accept backlog never overflows into SYN retransmissions.
    for _ in 0..IDLE / 250 {
        let batch = (0..250).map(|_| TcpStream::connect(address));
        for stream in futures::future::join_all(batch).await {
            idle.push(stream.expect("an idle connection is accepted"));
        }
    }
    let counts = wait_for_count(&base, "open_connections", IDLE as u64).await;
    println!("{IDLE} idle connections open in {:?}", opening.elapsed());
    let (rounds, slowest) = normal_rounds_for(&base, Duration::from_secs(2)).await;
    println!("{rounds} normal rounds with {IDLE} idle connections open, slowest {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "slowest {slowest:?}");
    assert_eq!(counts["closed_to_make_room"], 0, "{counts}");
    assert_eq!(counts["refused"], 0, "{counts}");
    drop(idle);
    for _ in 0..200 {
        if http_counts(&base).await["open_connections"]
            .as_u64()
            .unwrap()
            < 10
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = http_counts(&base).await;
    assert!(
        counts["open_connections"].as_u64().unwrap() < 10,
        "{counts}"
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_connections_are_closed_after_the_idle_timeout_but_not_before() {
    let nodes = cluster().await;
    let (proposer, learner) = (&nodes.0, &nodes.1);
    let handle = start(limited(proposer, learner, 10_000, 500), &nodes).await;
    let address = handle.address();
    // One connection that never sends a byte, one quiet after a request on keep-alive.
    let mut silent = TcpStream::connect(address).await.unwrap();
    let silent_opened = Instant::now();
    let mut kept_alive = TcpStream::connect(address).await.unwrap();
    kept_alive
        .write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), kept_alive.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answered = Instant::now();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    let silent_closed = closed_within(&mut silent, Duration::from_secs(5)).await;
    let kept_alive_closed = closed_within(&mut kept_alive, Duration::from_secs(5)).await;
    let silent_after = silent_closed.expect("closed").duration_since(silent_opened);
    let kept_alive_after = kept_alive_closed.expect("closed").duration_since(answered);
    println!("silent closed after {silent_after:?}, kept-alive after {kept_alive_after:?}");
    for after in [silent_after, kept_alive_after] {
        assert!(after >= Duration::from_millis(450), "{after:?}");
        assert!(after <= Duration::from_millis(1500), "{after:?}");
    }
    let counts = http_counts(&format!("http://{address}")).await;
    assert!(counts["closed_idle"].as_u64().unwrap() >= 2, "{counts}");
    handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_and_a_slow_upload_outlive_the_idle_and_header_timeouts() {
    let nodes = cluster().await;
    let (proposer, learner) = (&nodes.0, &nodes.1);
    let handle = start(limited(proposer, learner, 300, 300), &nodes).await;
    let address = handle.address();
    let base = format!("http://{address}");
    let (status, subscribed) = post(
        format!("{base}/subscribe"),
        json!({"patterns": ["k*"]}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{subscribed}");
    let events = subscribed["events"].as_str().unwrap();
    let mut stream = http().get(format!("{base}{events}")).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    // A 256 KiB write sent in 32 pieces 100 ms apart: 3.2 s, ten idle timeouts.
    let upload = tokio::spawn(async move {
        let value = "x".repeat(256 * 1024);
        let body = json!({"key": "k", "value": value}).to_string();
        let mut connection = TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST /write HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        connection.write_all(head.as_bytes()).await.unwrap();
        for piece in body.as_bytes().chunks(body.len().div_ceil(32)) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            connection.write_all(piece).await.unwrap();
        }
        let mut answer = vec![0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(5), connection.read(&mut answer))
            .await
            .expect("the upload is answered")
            .unwrap();
        String::from_utf8_lossy(&answer[..read]).to_string()
    });
    // The stream sends progress every second; it must go on for 3 s (ten idle timeouts).
    let started = Instant::now();
    let mut progress_events = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let chunk = tokio::time::timeout(Duration::from_secs(3), stream.chunk())
            .await
            .expect("the stream goes on")
            .unwrap()
            .expect("the stream is not cut");
        progress_events += String::from_utf8_lossy(&chunk)
            .matches("event: progress")
            .count();
    }
    let answer = upload.await.unwrap();
    println!("{progress_events} progress events in 3 s; upload answered {answer:.40}");
    assert!(progress_events >= 2, "{progress_events}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(stream);
    tokio::time::timeout(Duration::from_secs(10), handle.shutdown())
        .await
        .expect("shutdown ends")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_the_longest_idle_connection_makes_room_or_the_new_one_gets_503() {
    const LIMIT: usize = 20;
    let nodes = cluster().await;
    let (proposer, learner) = (&nodes.0, &nodes.1);
    let config = ClientConfig {
        max_connections: LIMIT,
        ..limited(proposer, learner, 10_000, 60_000)
    };
    let handle = start(config, &nodes).await;
    let address = handle.address();
    let base = format!("http://{address}");
    let mut oldest = TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut idle = Vec::new();
    for _ in 1..LIMIT {
        idle.push(TcpStream::connect(address).await.unwrap());
    }
    // No /status probe here: it would take the last place itself.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A normal request at the limit closes the connection idle the longest.
    let started = Instant::now();
    let (status, answer) = get(format!("{base}/health")).await;
    assert_eq!(status, 200, "{answer}");
    println!("answered at the limit in {:?}", started.elapsed());
    assert!(closed_within(&mut oldest, Duration::from_secs(2))
        .await
        .is_some());
    let counts = http_counts(&base).await;
    assert!(
        counts["closed_to_make_room"].as_u64().unwrap() >= 1,
        "{counts}"
    );
    assert_eq!(counts["refused"], 0, "{counts}");
    drop(idle);
    for _ in 0..100 {
        if http_counts(&base).await["open_connections"]
            .as_u64()
            .unwrap()
            <= 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The last probe's connection closes too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Uploads in progress on every connection leave nothing idle: the next one gets 503.
    let mut busy = Vec::new();
    for _ in 0..LIMIT {
        let mut connection = TcpStream::connect(address).await.unwrap();
        connection
            .write_all(b"POST /write HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100\r\n\r\n{")
            .await
            .unwrap();
        // Until the head is parsed the connection counts as idle.
        tokio::time::sleep(Duration::from_millis(20)).await;
        busy.push(connection);
    }
    let mut refused = TcpStream::connect(address).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(2), refused.read(&mut answer))
        .await
        .expect("answered at once")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("CLIENT_MAX_CONNECTIONS"), "{answer}");
    // The uploads in progress were not closed to make room.
    for connection in &mut busy {
        assert!(closed_within(connection, Duration::from_millis(20))
            .await
            .is_none());
    }
    drop(busy);
    // Once the uploads are gone, requests are answered again.
    let mut answered = false;
    for _ in 0..100 {
        match http().get(format!("{base}/health")).send().await {
            Ok(response) if response.status() == 200 => {
                answered = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(answered, "no answer once the uploads are gone");
    let counts = http_counts(&base).await;
    assert!(counts["refused"].as_u64().unwrap() >= 1, "{counts}");
    handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_trickled_past_the_header_timeout_make_room_for_normal_requests_at_the_limit() {
    const LIMIT: usize = 20;
    let nodes = cluster().await;
    let (proposer, learner) = (&nodes.0, &nodes.1);
    let config = ClientConfig {
        max_connections: LIMIT,
        ..limited(proposer, learner, 300, 60_000)
    };
    let handle = start(config, &nodes).await;
    let address = handle.address();
    let base = format!("http://{address}");
    // Slow POST: every place holds a request whose body never completes.
    let mut trickling = Vec::new();
    for _ in 0..LIMIT {
        let mut connection = TcpStream::connect(address).await.unwrap();
        connection
            .write_all(
                b"POST /write HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100000\r\n\r\n{",
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        trickling.push(connection);
    }
    // Past the header timeout, they no longer keep a normal request out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (status, answer) = get(format!("{base}/health")).await;
    assert_eq!(status, 200, "{answer}");
    println!("answered past trickled bodies in {:?}", started.elapsed());
    let mut closed = 0;
    for connection in &mut trickling {
        if closed_within(connection, Duration::from_millis(20))
            .await
            .is_some()
        {
            closed += 1;
        }
    }
    assert!(closed >= 1, "a trickled upload made room");
    let counts = http_counts(&base).await;
    assert!(
        counts["closed_to_make_room"].as_u64().unwrap() >= 1,
        "{counts}"
    );
    drop(trickling);
    handle.shutdown().await.unwrap();
}
