//! The attacker's view of the node plane: black-box tests against the real `paxos`
//! processes that forge messages with the project's own encoder, present the wrong
//! certificates, and flood ports with oversized or stalled frames. Each case checks that
//! the attack is refused (and counted in the node's `/status` alarms where the node can
//! tell), that no node crashes or wedges, and that every acknowledged write survives: the
//! cluster stays writable and strong reads return what was written.
//!
//! The attacker holds what an insider could steal: the cluster CA (to issue certificates
//! of any role) and the ports. It only ever talks to 127.0.0.1.

mod support;

use common::ballot::Ballot;
use common::message::{DecidedEntry, Message, NodeStatus, RoleStatus};
use common::node::NodeId;
use common::routes::MessageKind;
use common::value::{Command, RequestId, Value};
use runtime::certificates::{CertificateAuthority, NodeCertificate, CA_CERT_FILE, CA_KEY_FILE};
use runtime::tls::{dial_name, NodeTls};
use runtime::wire::{decode_payload, encode_frame, MAX_FRAME_BYTES};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{exclusive, Outcome, TestCluster};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Longest a node may take to close a connection it refuses outright.
const PROMPT_CLOSE: Duration = Duration::from_secs(2);
/// How long the attacker listens for an answer that must not come.
const SILENCE: Duration = Duration::from_millis(1500);
/// The handshake and Hello timeout of the node plane (runtime::network).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

// ---- the attacker's tools -------------------------------------------------------------

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One connection the attacker opened to a node's protocol port, plaintext or TLS.
struct Connection {
    stream: Box<dyn Stream>,
    received: Vec<u8>,
    /// The node sent bytes that are no frame (a TLS alert to a plaintext peer): nothing
    /// more is parsed.
    garbled: bool,
    opened: Instant,
}

/// How a connection looked when the attacker stopped listening.
#[derive(Debug, PartialEq)]
enum Ending {
    /// The node closed it, this long after it was opened.
    Closed(Duration),
    /// Still open.
    Open,
}

impl Ending {
    fn closed_within(&self, limit: Duration) -> bool {
        matches!(self, Ending::Closed(after) if *after <= limit)
    }
}

fn frame(messages: &[Message]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for message in messages {
        encode_frame(message, &mut bytes);
    }
    bytes
}

impl Connection {
    async fn plaintext(port: u16) -> Connection {
        Connection::over(Box::new(connect_soon(port).await))
    }

    /// A TLS connection presenting the certificate of `config`. The handshake completes on
    /// the attacker's side before the node has judged the certificate (TLS 1.3): a refusal
    /// shows as the connection closing.
    async fn tls(port: u16, config: Arc<rustls::ClientConfig>) -> Connection {
        let tcp = connect_soon(port).await;
        let connector = tokio_rustls::TlsConnector::from(config);
        let stream =
            tokio::time::timeout(Duration::from_secs(5), connector.connect(dial_name(), tcp))
                .await
                .expect("a TLS handshake within 5 s")
                .expect("the node's certificate verifies against the cluster CA");
        Connection::over(Box::new(stream))
    }

    fn over(stream: Box<dyn Stream>) -> Connection {
        Connection {
            stream,
            received: Vec::new(),
            garbled: false,
            opened: Instant::now(),
        }
    }

    /// Sends raw bytes; false if the node has closed the connection.
    async fn send_bytes(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok() && self.stream.flush().await.is_ok()
    }

    async fn send(&mut self, messages: &[Message]) -> bool {
        self.send_bytes(&frame(messages)).await
    }

    /// Every message the node sends within `wait`, and whether it closed the connection.
    async fn listen(&mut self, wait: Duration) -> (Vec<Message>, Ending) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut heard = Vec::new();
        loop {
            while let Some(message) = self.next_frame() {
                heard.push(message);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return (heard, Ending::Open),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return (heard, Ending::Closed(self.opened.elapsed()));
                }
                Ok(Ok(count)) => self.received.extend_from_slice(&chunk[..count]),
            }
        }
    }

    /// Listens until a message of `kind` arrives (returned) or `wait` passes.
    async fn wait_for(&mut self, kind: MessageKind, wait: Duration) -> Option<Message> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let (heard, ending) = self.listen(Duration::from_millis(100)).await;
            if let Some(message) = heard.into_iter().find(|message| message.kind() == kind) {
                return Some(message);
            }
            if ending != Ending::Open {
                return None;
            }
        }
        None
    }

    fn next_frame(&mut self) -> Option<Message> {
        if self.garbled || self.received.len() < 4 {
            return None;
        }
        let length = u32::from_be_bytes(self.received[..4].try_into().unwrap()) as usize;
        if length > 16 << 20 {
            self.garbled = true;
            return None;
        }
        if self.received.len() < 4 + length {
            return None;
        }
        let frame: Vec<u8> = self.received.drain(..4 + length).collect();
        match decode_payload(&frame[4..]) {
            Ok(message) => Some(message),
            Err(_) => {
                self.garbled = true;
                None
            }
        }
    }
}

/// A TCP connection to `port`, retried for a while in case the node is just starting.
async fn connect_soon(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout(
            Duration::from_secs(5),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            Ok(Ok(stream)) => return stream,
            outcome => assert!(
                Instant::now() < deadline,
                "port {port} accepts no connection: {outcome:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kinds(messages: &[Message]) -> Vec<MessageKind> {
    messages.iter().map(Message::kind).collect()
}

fn client_config(trusted_ca_pem: &str, certificate: &NodeCertificate) -> Arc<rustls::ClientConfig> {
    let certificates = |pem: &str| {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("PEM certificates")
    };
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes()).expect("a PEM key");
    NodeTls::new(
        certificates(trusted_ca_pem),
        certificates(&certificate.certificate_pem),
        key,
    )
    .expect("a TLS configuration")
    .client
}

/// Certificates at the attacker's disposal: any role, from the cluster's own CA (read
/// from `<data>/certs`, as a thief of `ca.key` would), or from a CA of its own.
struct Attacker {
    ca_pem: String,
    authority: CertificateAuthority,
}

impl Attacker {
    fn of(cluster: &TestCluster) -> Attacker {
        let directory = cluster.layout.certificates_dir();
        let read = |file: &str| std::fs::read_to_string(directory.join(file)).unwrap();
        let ca_pem = read(CA_CERT_FILE);
        let authority = CertificateAuthority::load(&ca_pem, &read(CA_KEY_FILE)).unwrap();
        Attacker { ca_pem, authority }
    }

    /// A certificate of the cluster's CA naming `node`.
    fn certified_as(&self, node: NodeId) -> Arc<rustls::ClientConfig> {
        client_config(&self.ca_pem, &self.authority.issue(node, &[]).unwrap())
    }

    /// A certificate naming `node` from a CA the cluster never heard of (while trusting
    /// the cluster's CA, so that the attacker's side of the handshake completes).
    fn foreign_as(&self, node: NodeId) -> Arc<rustls::ClientConfig> {
        let (foreign, _) = CertificateAuthority::generate("the attacker's CA").unwrap();
        client_config(&self.ca_pem, &foreign.issue(node, &[]).unwrap())
    }

    /// `node`'s own report, asked for as a client API would (an honest observer).
    async fn status_of(&self, cluster: &TestCluster, name: &str) -> NodeStatus {
        let observer = NodeId::client(8);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut connection =
                Connection::tls(port_of(cluster, name), self.certified_as(observer)).await;
            connection
                .send(&[
                    Message::Hello { node: observer },
                    Message::StatusRequest { request_id: 1 },
                ])
                .await;
            if let Some(Message::StatusReply { status, .. }) = connection
                .wait_for(MessageKind::StatusReply, Duration::from_secs(3))
                .await
            {
                return status;
            }
            assert!(Instant::now() < deadline, "{name} gave no status");
        }
    }
}

fn port_of(cluster: &TestCluster, name: &str) -> u16 {
    cluster
        .layout
        .nodes()
        .into_iter()
        .find(|node| node.name == name)
        .unwrap_or_else(|| panic!("no node {name}"))
        .port
}

/// Node `name`'s alarms as the client API's `/status` shows them.
async fn alarms_of(cluster: &TestCluster, name: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = cluster.status().await;
        let node = status["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|node| node["name"] == name);
        if let Some(alarms) = node.and_then(|node| node["alarms"].as_array()) {
            return alarms
                .iter()
                .map(|alarm| alarm.as_str().unwrap_or_default().to_string())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "/status shows no alarms of {name}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How often the alarms containing `needle` happened ("... (3 times)" counts 3).
fn occurrences(alarms: &[String], needle: &str) -> u64 {
    alarms
        .iter()
        .filter(|alarm| alarm.contains(needle))
        .map(|alarm| {
            alarm
                .rsplit_once(" (")
                .and_then(|(_, count)| count.strip_suffix(" times)"))
                .and_then(|count| count.parse().ok())
                .unwrap_or(1)
        })
        .sum()
}

/// Waits until `name`'s alarms count `needle` more than `before` times; returns them.
async fn wait_for_alarm(
    cluster: &TestCluster,
    name: &str,
    needle: &str,
    before: u64,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alarms = alarms_of(cluster, name).await;
        if occurrences(&alarms, needle) > before {
            return alarms;
        }
        assert!(
            Instant::now() < deadline,
            "{name} counted no more {needle:?} than {before}: {alarms:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn connection_refusals_of(alarms: &[String]) -> u64 {
    occurrences(alarms, "refused a connection from 127.0.0.1")
}

/// The writes the cluster acknowledged, to be read back after the attacks.
#[derive(Default)]
struct Ledger {
    acknowledged: Vec<(String, String)>,
}

impl Ledger {
    /// Writes until the cluster acknowledges (a leader change may refuse a few).
    async fn write(&mut self, cluster: &TestCluster, key: &str, value: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match cluster.write(key, value).await {
                Outcome::Ok(_) => break,
                other => assert!(
                    Instant::now() < deadline,
                    "write {key}={value} not acknowledged within 30 s: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.acknowledged.retain(|(known, _)| known != key);
        self.acknowledged.push((key.to_string(), value.to_string()));
    }

    async fn write_several(&mut self, cluster: &TestCluster, prefix: &str, count: usize) {
        for index in 0..count {
            self.write(
                cluster,
                &format!("{prefix}-{index}"),
                &format!("value-{index}"),
            )
            .await;
        }
    }

    /// Every acknowledged write reads back strongly.
    async fn verify(&self, cluster: &TestCluster) {
        for (key, value) in &self.acknowledged {
            assert_eq!(
                strong_read(cluster, key).await.as_deref(),
                Some(value.as_str()),
                "acknowledged write {key}={value} lost"
            );
        }
    }
}

/// A strong read, retried while the cluster recovers from an attack.
async fn strong_read(cluster: &TestCluster, key: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match cluster.read(key, "strong").await {
            Outcome::Ok(body) => return body["value"].as_str().map(String::from),
            other => assert!(
                Instant::now() < deadline,
                "no strong read of {key} within 30 s: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn batch(key: &str, value: &str) -> Value {
    Value::Batch(vec![Command::put(
        RequestId::random(),
        key.to_string(),
        value.to_string(),
    )])
}

/// Decided entries that would set `key` to `value` in the next few slots after `applied`.
fn forged_decided(applied: u64, key: &str, value: &str) -> Message {
    Message::Decided {
        entries: (applied + 1..=applied + 3)
            .map(|slot| DecidedEntry {
                slot,
                value: batch(key, value),
            })
            .collect(),
        applied_slot: applied + 3,
    }
}

async fn applied_slot_max(cluster: &TestCluster) -> u64 {
    cluster
        .learner_applied_slots()
        .await
        .values()
        .copied()
        .max()
        .unwrap_or(0)
}

fn acceptor_state(status: &NodeStatus) -> (Ballot, u64) {
    match status.detail {
        RoleStatus::Acceptor {
            promised_ballot,
            accepted_slot_max,
            ..
        } => (promised_ballot, accepted_slot_max),
        ref other => panic!("not an acceptor: {other:?}"),
    }
}

fn rss_kibibytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

// ---- forged messages and foreign identities --------------------------------------------

async fn a_forged_decided_over_plaintext_never_reaches_a_learner(
    cluster: &TestCluster,
    ledger: &mut Ledger,
) {
    ledger.write(cluster, "case1", "real").await;
    let applied = applied_slot_max(cluster).await;
    for (target, claimed) in [("learner1", 2), ("learner2", 1)] {
        let before = connection_refusals_of(&alarms_of(cluster, target).await);
        let mut connection = Connection::plaintext(port_of(cluster, target)).await;
        connection
            .send(&[
                Message::Hello {
                    node: NodeId::learner(claimed),
                },
                forged_decided(applied, "case1", "forged"),
            ])
            .await;
        let (heard, ending) = connection.listen(Duration::from_secs(3)).await;
        eprintln!("case 1: plaintext Decided to {target}: heard {heard:?}, {ending:?}");
        assert!(heard.is_empty(), "{target} answered plaintext: {heard:?}");
        assert!(ending.closed_within(PROMPT_CLOSE), "{ending:?}");
        wait_for_alarm(
            cluster,
            target,
            "refused a connection from 127.0.0.1",
            before,
        )
        .await;
    }
    // The forged slots are taken by real writes, and the learners keep the real value,
    // also once they recover from their own disks.
    ledger.write_several(cluster, "case1-after", 4).await;
    assert_eq!(strong_read(cluster, "case1").await.as_deref(), Some("real"));
    for learner in ["learner1", "learner2"] {
        cluster.restart(learner);
        cluster.wait_until_writable(Duration::from_secs(30)).await;
        assert_eq!(strong_read(cluster, "case1").await.as_deref(), Some("real"));
    }
}

async fn a_forged_decided_under_a_client_certificate_is_refused_by_the_table_and_counted(
    cluster: &TestCluster,
    attacker: &Attacker,
    ledger: &mut Ledger,
    admin_port: u16,
) {
    ledger.write(cluster, "case2", "real").await;
    let applied = applied_slot_max(cluster).await;
    let mut connection = Connection::tls(
        port_of(cluster, "learner1"),
        attacker.certified_as(NodeId::client(7)),
    )
    .await;
    connection
        .send(&[
            Message::Hello {
                node: NodeId::learner(2),
            },
            forged_decided(applied, "case2", "forged"),
        ])
        .await;
    let (heard, ending) = connection.listen(SILENCE).await;
    assert_eq!(kinds(&heard), [MessageKind::Hello], "{heard:?}");
    assert_eq!(
        ending,
        Ending::Open,
        "a refused message does not end the connection"
    );
    let alarms = wait_for_alarm(
        cluster,
        "learner1",
        "refused Decided from client7: a client may not send it to a learner",
        0,
    )
    .await;
    eprintln!("case 2: learner1 alarms {alarms:#?}");
    // The node's own admin listener shows the same alarm.
    let admin_status: serde_json::Value = cluster
        .http
        .get(format!("http://127.0.0.1:{admin_port}/status"))
        .send()
        .await
        .expect("learner1's admin listener answers")
        .json()
        .await
        .expect("a JSON status");
    let admin_alarms: Vec<String> = admin_status["alarms"]
        .as_array()
        .unwrap_or_else(|| panic!("no alarms in learner1's admin /status: {admin_status}"))
        .iter()
        .map(|alarm| alarm.as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        occurrences(&admin_alarms, "refused Decided from client7") >= 1,
        "{admin_status}"
    );
    drop(connection);
    ledger.write_several(cluster, "case2-after", 3).await;
    assert_eq!(strong_read(cluster, "case2").await.as_deref(), Some("real"));
}

async fn votes_are_never_exfiltrated_to_a_client_certificate_or_to_plaintext(
    cluster: &TestCluster,
    attacker: &Attacker,
) {
    let (promised, _) = acceptor_state(&attacker.status_of(cluster, "acceptor1").await);
    let questions = |claimed: NodeId| {
        vec![
            Message::Hello { node: claimed },
            Message::SyncAccepted {
                from_slot: 1,
                to_slot: 1 << 20,
            },
            Message::Prepare {
                ballot: Ballot::new(promised.round + 1, 7),
                from_slot: 1,
            },
        ]
    };
    let port = port_of(cluster, "acceptor1");
    let mut certified = Connection::tls(port, attacker.certified_as(NodeId::client(7))).await;
    certified.send(&questions(NodeId::learner(1))).await;
    let (heard, ending) = certified.listen(SILENCE).await;
    assert_eq!(kinds(&heard), [MessageKind::Hello], "{heard:?}");
    assert_eq!(ending, Ending::Open);
    for kind in ["SyncAccepted", "Prepare"] {
        let needle = format!("refused {kind} from client7: a client may not send it");
        wait_for_alarm(cluster, "acceptor1", &needle, 0).await;
    }
    let mut plaintext = Connection::plaintext(port).await;
    plaintext.send(&questions(NodeId::proposer(1))).await;
    let (heard, ending) = plaintext.listen(Duration::from_secs(3)).await;
    assert!(heard.is_empty(), "{heard:?}");
    assert!(ending.closed_within(PROMPT_CLOSE), "{ending:?}");
    let (after, _) = acceptor_state(&attacker.status_of(cluster, "acceptor1").await);
    assert_ne!(after.proposer_id, 7, "a client's Prepare was promised");
}

async fn no_plaintext_foreign_or_wrong_role_peer_gets_an_answer(
    cluster: &TestCluster,
    attacker: &Attacker,
) {
    let port = port_of(cluster, "acceptor1");
    let ask = |node: NodeId| {
        [
            Message::Hello { node },
            Message::StatusRequest { request_id: 99 },
        ]
    };
    let before = connection_refusals_of(&alarms_of(cluster, "acceptor1").await);
    let mut plaintext = Connection::plaintext(port).await;
    plaintext.send(&ask(NodeId::client(1))).await;
    let (heard, ending) = plaintext.listen(Duration::from_secs(3)).await;
    assert!(heard.is_empty(), "plaintext: {heard:?}");
    assert!(ending.closed_within(PROMPT_CLOSE), "plaintext: {ending:?}");
    let after_plaintext = connection_refusals_of(
        &wait_for_alarm(cluster, "acceptor1", "refused a connection", before).await,
    );

    let mut foreign = Connection::tls(port, attacker.foreign_as(NodeId::client(1))).await;
    foreign.send(&ask(NodeId::client(1))).await;
    let (heard, ending) = foreign.listen(Duration::from_secs(3)).await;
    assert!(heard.is_empty(), "another CA: {heard:?}");
    assert!(ending.closed_within(PROMPT_CLOSE), "another CA: {ending:?}");
    let alarms = wait_for_alarm(
        cluster,
        "acceptor1",
        "refused a connection",
        after_plaintext,
    )
    .await;
    eprintln!("case 7: acceptor1 alarms after plaintext and another CA {alarms:#?}");
    assert!(
        occurrences(&alarms, "invalid peer certificate: UnknownIssuer") >= 1,
        "{alarms:#?}"
    );

    // A wrong role connects (the certificate is genuine) but what it may not send is
    // never answered: a learner's Prepare gets no Promise. (Status may pass between any
    // two nodes: it is metadata, never a value.)
    let mut wrong_role = Connection::tls(port, attacker.certified_as(NodeId::learner(9))).await;
    wrong_role
        .send(&[
            Message::Hello {
                node: NodeId::proposer(1),
            },
            Message::Prepare {
                ballot: common::ballot::Ballot::new(1 << 20, 9),
                from_slot: 1,
            },
        ])
        .await;
    let (heard, _) = wrong_role.listen(SILENCE).await;
    assert_eq!(kinds(&heard), [MessageKind::Hello], "wrong role: {heard:?}");
    wait_for_alarm(
        cluster,
        "acceptor1",
        "refused Prepare from learner9: a learner may not send it to an acceptor",
        0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)] // one cluster at a time, held for the whole test
async fn forged_messages_and_foreign_identities_are_refused_counted_and_change_nothing() {
    let _one = exclusive();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let cluster =
        TestCluster::start_configured(3, &[("learner1", "ADMIN_PORT", &admin_port)]).await;
    let attacker = Attacker::of(&cluster);
    let mut ledger = Ledger::default();
    ledger.write_several(&cluster, "before", 5).await;

    a_forged_decided_over_plaintext_never_reaches_a_learner(&cluster, &mut ledger).await;
    a_forged_decided_under_a_client_certificate_is_refused_by_the_table_and_counted(
        &cluster,
        &attacker,
        &mut ledger,
        admin_port.parse().unwrap(),
    )
    .await;
    votes_are_never_exfiltrated_to_a_client_certificate_or_to_plaintext(&cluster, &attacker).await;
    no_plaintext_foreign_or_wrong_role_peer_gets_an_answer(&cluster, &attacker).await;

    for name in cluster.node_names() {
        assert!(!cluster.has_exited(&name), "{name} stopped");
    }
    ledger.write_several(&cluster, "end", 3).await;
    ledger.verify(&cluster).await;
    assert_eq!(
        strong_read(&cluster, "case1").await.as_deref(),
        Some("real")
    );
}

// ---- hostile ballots --------------------------------------------------------------------

/// The attacker's proposer identity: a certificate of the cluster's CA for a proposer the
/// cluster does not run, so that the acceptors' answers come back to the attacker alone.
const ROGUE_PROPOSER: u32 = 9;

async fn a_second_value_under_one_ballot_raises_an_alarm_and_crashes_no_acceptor(
    cluster: &TestCluster,
    attacker: &Attacker,
    ledger: &mut Ledger,
) {
    let (promised, accepted_slot_max) =
        acceptor_state(&attacker.status_of(cluster, "acceptor1").await);
    let ballot = Ballot::new(promised.round + 10, ROGUE_PROPOSER);
    let slot = accepted_slot_max + 20;
    let rogue = NodeId::proposer(ROGUE_PROPOSER);
    let mut connection =
        Connection::tls(port_of(cluster, "acceptor1"), attacker.certified_as(rogue)).await;
    // Under the leader's ballot, the attacker could slip a second value into a slot the
    // leader fills: refused, since a proposer may only use its own ballots.
    connection
        .send(&[
            Message::Hello { node: rogue },
            Message::Accept {
                ballot: promised,
                slot: accepted_slot_max + 1,
                value: batch("case3-impersonated", "forged"),
            },
        ])
        .await;
    let (heard, _) = connection.listen(SILENCE).await;
    assert_eq!(kinds(&heard), [MessageKind::Hello], "{heard:?}");
    let needle = format!(
        "proposer {ROGUE_PROPOSER} sent a Accept under ballot {promised}, which belongs to \
         proposer {}",
        promised.proposer_id
    );
    wait_for_alarm(cluster, "acceptor1", &needle, 0).await;
    connection
        .send(&[Message::Prepare {
            ballot,
            from_slot: slot,
        }])
        .await;
    let promise = connection
        .wait_for(MessageKind::Promise, Duration::from_secs(5))
        .await;
    assert!(
        matches!(promise, Some(Message::Promise { ballot: promised, .. }) if promised == ballot),
        "{promise:?}"
    );
    // A no-op first, so that if a new leader adopts it nothing changes; then a write.
    connection
        .send(&[Message::Accept {
            ballot,
            slot,
            value: Value::Noop,
        }])
        .await;
    let accepted = connection
        .wait_for(MessageKind::Accepted, Duration::from_secs(5))
        .await;
    assert_eq!(accepted, Some(Message::Accepted { ballot, slot }));
    connection
        .send(&[Message::Accept {
            ballot,
            slot,
            value: batch("case3-second", "forged"),
        }])
        .await;
    let (heard, ending) = connection.listen(SILENCE).await;
    assert!(heard.is_empty(), "the second value was answered: {heard:?}");
    assert_eq!(ending, Ending::Open);
    let needle = format!(
        "proposer {ROGUE_PROPOSER} sent a second value for slot {slot} under ballot {ballot}"
    );
    let alarms = wait_for_alarm(cluster, "acceptor1", &needle, 0).await;
    eprintln!("case 3: acceptor1 alarms {alarms:#?}");
    drop(connection);
    assert!(!cluster.has_exited("acceptor1"), "acceptor1 crashed");
    // The leader finds acceptor1 promised higher and wins a new election.
    ledger.write_several(cluster, "case3-after", 3).await;
    assert_eq!(strong_read(cluster, "case3-second").await, None);
    assert_eq!(strong_read(cluster, "case3-impersonated").await, None);
}

async fn prepares_of_the_highest_rounds_are_refused_and_elections_still_succeed(
    cluster: &TestCluster,
    attacker: &Attacker,
    ledger: &mut Ledger,
) {
    let rogue = NodeId::proposer(ROGUE_PROPOSER);
    for acceptor in ["acceptor1", "acceptor2", "acceptor3"] {
        let mut connection =
            Connection::tls(port_of(cluster, acceptor), attacker.certified_as(rogue)).await;
        connection.send(&[Message::Hello { node: rogue }]).await;
        for round in [u64::MAX, u64::MAX - 1] {
            connection
                .send(&[Message::Prepare {
                    ballot: Ballot::new(round, ROGUE_PROPOSER),
                    from_slot: 1,
                }])
                .await;
        }
        let (heard, ending) = connection.listen(SILENCE).await;
        assert_eq!(kinds(&heard), [MessageKind::Hello], "{acceptor}: {heard:?}");
        assert_eq!(ending, Ending::Open);
        let (promised, _) = acceptor_state(&attacker.status_of(cluster, acceptor).await);
        assert!(promised.round < 1 << 32, "{acceptor} promised {promised}");
        let alarms = alarms_of(cluster, acceptor).await;
        assert!(
            alarms
                .iter()
                .any(|alarm| alarm.contains(&u64::MAX.to_string())),
            "{acceptor} has no alarm naming round u64::MAX: {alarms:#?}"
        );
        if acceptor == "acceptor1" {
            eprintln!("case 4: acceptor1 alarms {alarms:#?}");
        }
    }
    ledger.write_several(cluster, "case4-before-kill", 2).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    cluster.kill(&leader);
    let started = Instant::now();
    ledger.write(cluster, "case4-after-kill", "written").await;
    let successor = cluster.wait_for_leader(Duration::from_secs(10)).await;
    eprintln!(
        "case 4: {leader} killed, {successor} leads, first write after {:?}",
        started.elapsed()
    );
    assert_ne!(successor, leader);
    cluster.start_node(&leader);
    for acceptor in ["acceptor1", "acceptor2", "acceptor3"] {
        cluster.restart(acceptor);
        ledger
            .write(
                cluster,
                &format!("case4-after-restart-{acceptor}"),
                "written",
            )
            .await;
        // Nothing of the refused rounds was persisted.
        let (promised, _) = acceptor_state(&attacker.status_of(cluster, acceptor).await);
        assert!(promised.round < 1 << 32, "{acceptor} recovered {promised}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)] // one cluster at a time, held for the whole test
async fn hostile_ballots_neither_crash_nor_wedge_the_acceptors() {
    let _one = exclusive();
    let cluster = TestCluster::start().await;
    let attacker = Attacker::of(&cluster);
    let mut ledger = Ledger::default();
    ledger.write_several(&cluster, "before", 5).await;

    a_second_value_under_one_ballot_raises_an_alarm_and_crashes_no_acceptor(
        &cluster,
        &attacker,
        &mut ledger,
    )
    .await;
    prepares_of_the_highest_rounds_are_refused_and_elections_still_succeed(
        &cluster,
        &attacker,
        &mut ledger,
    )
    .await;

    for name in cluster.node_names() {
        assert!(!cluster.has_exited(&name), "{name} stopped");
    }
    ledger.write_several(&cluster, "end", 3).await;
    ledger.verify(&cluster).await;
}

// ---- oversized and stalled frames ------------------------------------------------------

/// RSS growth the node may show while attackers hold oversized frames half-sent.
const RSS_GROWTH_MAX_KIBIBYTES: u64 = 64 * 1024;
/// Half-sent frames held at once, each by its own identity (at most 4 per identity).
const HALF_SENT_FRAMES: u32 = 8;
/// What each of them sends of its announced frame.
const HALF_SENT_BYTES: usize = 256 * 1024;

async fn a_plaintext_frame_announcing_512_mib_before_hello_is_closed_at_once(
    cluster: &TestCluster,
) {
    let mut connection = Connection::plaintext(port_of(cluster, "acceptor1")).await;
    let mut bytes = (MAX_FRAME_BYTES as u32).to_be_bytes().to_vec();
    bytes.extend(vec![0u8; 4096]);
    connection.send_bytes(&bytes).await;
    let (heard, ending) = connection.listen(Duration::from_secs(3)).await;
    eprintln!("case 6: plaintext 512 MiB announcement: {ending:?}");
    assert!(heard.is_empty(), "{heard:?}");
    assert!(ending.closed_within(PROMPT_CLOSE), "{ending:?}");
}

async fn half_sent_frames_of_512_mib_cost_only_the_bytes_received(
    cluster: &TestCluster,
    attacker: &Attacker,
) {
    let pid = cluster.pid("acceptor1");
    let before = rss_kibibytes(pid);
    let mut connections = Vec::new();
    for index in 0..HALF_SENT_FRAMES {
        let node = NodeId::client(20 + index);
        let mut connection =
            Connection::tls(port_of(cluster, "acceptor1"), attacker.certified_as(node)).await;
        connection.send(&[Message::Hello { node }]).await;
        let mut bytes = (MAX_FRAME_BYTES as u32).to_be_bytes().to_vec();
        bytes.extend(vec![7u8; HALF_SENT_BYTES]);
        assert!(connection.send_bytes(&bytes).await, "closed while sending");
        connections.push(connection);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kibibytes(pid);
    let growth = after.saturating_sub(before);
    eprintln!(
        "case 6: acceptor1 RSS {before} KiB -> {after} KiB (+{growth} KiB) holding \
         {HALF_SENT_FRAMES} frames announcing 512 MiB, {} KiB sent each",
        HALF_SENT_BYTES / 1024
    );
    assert!(growth < RSS_GROWTH_MAX_KIBIBYTES, "+{growth} KiB");
    for connection in &mut connections {
        let (_, ending) = connection.listen(Duration::from_millis(10)).await;
        assert_eq!(ending, Ending::Open, "its deadline is 10 s + 512 s");
    }
}

/// A certified peer starts a frame of 512 KiB (deadline 10 s) and stalls: closed at the
/// deadline. Returns when it was closed.
async fn a_stalled_frame_is_closed_at_its_deadline(
    cluster: &TestCluster,
    attacker: &Attacker,
) -> Duration {
    let node = NodeId::client(40);
    let mut connection =
        Connection::tls(port_of(cluster, "acceptor1"), attacker.certified_as(node)).await;
    connection.send(&[Message::Hello { node }]).await;
    let mut bytes = (512u32 * 1024).to_be_bytes().to_vec();
    bytes.extend(vec![7u8; 4096]);
    connection.send_bytes(&bytes).await;
    let started = Instant::now();
    let (_, ending) = connection.listen(Duration::from_secs(20)).await;
    let closed_after = started.elapsed();
    assert!(matches!(ending, Ending::Closed(_)), "{ending:?}");
    closed_after
}

/// 200 connections send 3 bytes each and stall; returns the latest close, measured from
/// each connection's open.
async fn stalled_handshakes_are_closed_within_the_handshake_timeout(port: u16) -> Duration {
    let stalls: Vec<_> = (0..200)
        .map(|_| {
            tokio::spawn(async move {
                let mut connection = Connection::plaintext(port).await;
                connection.send_bytes(&[0x16, 0x03, 0x01]).await;
                connection.listen(Duration::from_secs(15)).await.1
            })
        })
        .collect();
    let mut latest = Duration::ZERO;
    let mut refused_at_once = 0;
    for stall in stalls {
        match stall.await.unwrap() {
            Ending::Closed(after) => {
                latest = latest.max(after);
                if after < Duration::from_secs(1) {
                    refused_at_once += 1;
                }
            }
            Ending::Open => panic!("a stalled handshake was still open after 15 s"),
        }
    }
    eprintln!(
        "case 6: 200 stalled handshakes: {refused_at_once} closed within 1 s (evicted by newer \
         ones beyond the handshake cap), the last after {latest:?}"
    );
    latest
}

/// Writes one key after another for `duration`; returns how many were acknowledged and
/// the slowest.
async fn write_meanwhile(
    cluster: &TestCluster,
    ledger: &mut Ledger,
    duration: Duration,
) -> (usize, Duration) {
    let started = Instant::now();
    let mut count = 0;
    let mut slowest = Duration::ZERO;
    while started.elapsed() < duration {
        let began = Instant::now();
        ledger
            .write(cluster, &format!("during-stalls-{count}"), "written")
            .await;
        slowest = slowest.max(began.elapsed());
        count += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (count, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)] // one cluster at a time, held for the whole test
async fn oversized_and_stalled_frames_cost_little_memory_and_are_closed_in_time() {
    let _one = exclusive();
    let cluster = TestCluster::start().await;
    let attacker = Attacker::of(&cluster);
    let mut ledger = Ledger::default();
    ledger.write_several(&cluster, "before", 5).await;

    a_plaintext_frame_announcing_512_mib_before_hello_is_closed_at_once(&cluster).await;
    half_sent_frames_of_512_mib_cost_only_the_bytes_received(&cluster, &attacker).await;

    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let leader_alarms_before = connection_refusals_of(&alarms_of(&cluster, &leader).await);
    let leader_rss_before = rss_kibibytes(cluster.pid(&leader));
    let (stalled_frame_closed, latest_handshake_close, (writes, slowest_write)) = tokio::join!(
        a_stalled_frame_is_closed_at_its_deadline(&cluster, &attacker),
        stalled_handshakes_are_closed_within_the_handshake_timeout(port_of(&cluster, &leader)),
        write_meanwhile(&cluster, &mut ledger, Duration::from_secs(6)),
    );
    let leader_rss_after = rss_kibibytes(cluster.pid(&leader));
    eprintln!(
        "case 6: a stalled 512 KiB frame closed after {stalled_frame_closed:?}; {writes} \
         writes acknowledged meanwhile, the slowest in {slowest_write:?}; {leader} RSS \
         {leader_rss_before} KiB -> {leader_rss_after} KiB"
    );
    assert!(
        (Duration::from_millis(9_500)..=Duration::from_secs(12)).contains(&stalled_frame_closed),
        "{stalled_frame_closed:?}"
    );
    assert!(
        latest_handshake_close <= HANDSHAKE_TIMEOUT + Duration::from_millis(1500),
        "{latest_handshake_close:?}"
    );
    assert!(writes >= 10, "only {writes} writes during the stalls");
    // Below the handshake timeout: no write waited for the stalls to end.
    assert!(slowest_write < Duration::from_secs(4), "{slowest_write:?}");
    let alarms = wait_for_alarm(
        &cluster,
        &leader,
        "refused a connection from 127.0.0.1",
        leader_alarms_before + 199,
    )
    .await;
    eprintln!("case 6: {leader} alarms {alarms:#?}");

    for name in cluster.node_names() {
        assert!(!cluster.has_exited(&name), "{name} stopped");
    }
    ledger.write_several(&cluster, "end", 3).await;
    ledger.verify(&cluster).await;
}
