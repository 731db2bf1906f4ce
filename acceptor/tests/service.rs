//! The acceptor process over real sockets: fake proposers and learners (plain
//! `runtime::network::Network`s) talk to it, and a restart on the same data directory and
//! port shows that what it answered was durable.

use acceptor::config::AcceptorConfig;
use acceptor::service::{start, Handle};
use common::ballot::Ballot;
use common::message::{AcceptedEntry, Message, RoleStatus};
use common::node::{NodeId, Role};
use common::value::{Command, RequestId, Value};
use runtime::network::{Inbound, Network};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

/// A node played by the test: a network and the events it received.
struct FakeNode {
    network: Network,
    events: mpsc::UnboundedReceiver<Inbound>,
}

impl FakeNode {
    async fn connect(me: NodeId, acceptor: &Handle) -> FakeNode {
        let (sender, events) = mpsc::unbounded_channel();
        let (network, _) = Network::start(
            me,
            None,
            &[acceptor.address().to_string()],
            runtime::network::Transport::Plaintext,
            Arc::new(move |event| {
                let _ = sender.send(event);
            }),
        )
        .await
        .expect("fake node starts");
        let mut node = FakeNode { network, events };
        node.wait_connected().await;
        node
    }

    async fn next_event(&mut self) -> Inbound {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an event in time")
            .expect("the network is alive")
    }

    async fn wait_connected(&mut self) {
        loop {
            if let Inbound::Connected(node) = self.next_event().await {
                assert_eq!(node, NodeId::acceptor(1));
                return;
            }
        }
    }

    async fn wait_disconnected(&mut self) {
        loop {
            if let Inbound::Disconnected(_) = self.next_event().await {
                return;
            }
        }
    }

    /// Sends `message` and returns the next message received.
    async fn ask(&mut self, message: Message) -> Message {
        assert!(
            self.network.send(NodeId::acceptor(1), message),
            "connected to the acceptor"
        );
        self.next_message().await
    }

    async fn next_message(&mut self) -> Message {
        loop {
            if let Inbound::Message(from, message) = self.next_event().await {
                assert_eq!(from, NodeId::acceptor(1));
                return message;
            }
        }
    }

    /// Returns once the acceptor has registered this node's connection (its answer
    /// travels on it), so broadcasts from then on reach it.
    async fn wait_known_to_acceptor(&mut self) -> RoleStatus {
        match self.ask(Message::StatusRequest { request_id: 7 }).await {
            Message::StatusReply { request_id, status } => {
                assert_eq!(request_id, 7);
                assert_eq!(status.node, NodeId::acceptor(1));
                status.detail
            }
            other => panic!("expected a StatusReply, got {other:?}"),
        }
    }
}

fn config(data_dir: &Path, listen: &str) -> AcceptorConfig {
    AcceptorConfig {
        security: runtime::config::Security::Insecure,
        id: 1,
        listen: listen.to_string(),
        total_acceptors: 3,
        data_dir: data_dir.to_path_buf(),
        cluster_id: "paxos".to_string(),
        log_quota_bytes: None,
    }
}

fn value() -> Value {
    Value::Batch(vec![Command::put(RequestId(42), "colour", "blue")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptor_answers_proposers_feeds_learners_and_keeps_its_promise_across_a_restart() {
    let directory = tempfile::tempdir().unwrap();
    let acceptor = start(config(directory.path(), "127.0.0.1:0"))
        .await
        .expect("acceptor starts");
    let address = acceptor.address();
    let mut proposer = FakeNode::connect(NodeId::proposer(2), &acceptor).await;
    let mut learner = FakeNode::connect(NodeId::learner(1), &acceptor).await;
    learner.wait_known_to_acceptor().await;

    let ballot = Ballot::new(5, 2);
    let promise = proposer
        .ask(Message::Prepare {
            ballot,
            from_slot: 1,
        })
        .await;
    assert_eq!(
        promise,
        Message::Promise {
            ballot,
            trimmed_slot: 0,
            next_from_slot: None,
            accepted: vec![]
        }
    );
    let accepted = proposer
        .ask(Message::Accept {
            ballot,
            slot: 1,
            value: value(),
        })
        .await;
    assert_eq!(accepted, Message::Accepted { ballot, slot: 1 });
    let entry = AcceptedEntry {
        slot: 1,
        ballot,
        value: value(),
    };
    assert_eq!(
        learner.next_message().await,
        Message::AcceptedValues {
            entries: vec![entry.clone()]
        }
    );
    assert_eq!(
        learner
            .ask(Message::SyncAccepted {
                from_slot: 1,
                to_slot: 10
            })
            .await,
        Message::AcceptedValues {
            entries: vec![entry.clone()]
        }
    );
    assert_eq!(
        proposer.wait_known_to_acceptor().await,
        RoleStatus::Acceptor {
            promised_ballot: ballot,
            accepted_slot_max: 1,
            accepted_slot_count: 1,
            trimmed_slot: 0,
            storage_fault: None
        }
    );

    // Stop it as a crash would, and start it again on the same directory and port.
    acceptor.shutdown().await;
    proposer.wait_disconnected().await;
    let acceptor = start(config(directory.path(), &address.to_string()))
        .await
        .expect("acceptor restarts on its port");
    assert_eq!(acceptor.address(), address);
    proposer.wait_connected().await;

    let lower = Ballot::new(4, 2);
    assert_eq!(
        proposer
            .ask(Message::Prepare {
                ballot: lower,
                from_slot: 1
            })
            .await,
        Message::Rejected {
            ballot: lower,
            promised: ballot
        },
        "the promise survived the restart"
    );
    let higher = Ballot::new(6, 2);
    assert_eq!(
        proposer
            .ask(Message::Prepare {
                ballot: higher,
                from_slot: 1
            })
            .await,
        Message::Promise {
            ballot: higher,
            trimmed_slot: 0,
            next_from_slot: None,
            accepted: vec![entry]
        },
        "the vote survived the restart"
    );
    assert!(matches!(
        proposer
            .ask(Message::Confirm {
                ballot: higher,
                sequence: 1
            })
            .await,
        Message::Confirmed { sequence: 1, .. }
    ));
    acceptor.shutdown().await;
    proposer.wait_disconnected().await;
    assert!(proposer.network.connected_nodes(Role::Acceptor).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptor_reports_a_port_in_use_as_an_error() {
    let directory = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let error = start(config(directory.path(), &address))
        .await
        .err()
        .expect("the port is taken");
    assert!(format!("{error:#}").contains(&address), "{error:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acceptor_with_a_corrupt_log_runs_but_refuses_to_vote_and_says_why() {
    let directory = tempfile::tempdir().unwrap();
    let log_path = directory.path().join(acceptor::storage::LOG_FILE_NAME);
    {
        let (mut storage, _) = acceptor::storage::Storage::open(directory.path()).unwrap();
        for round in 1..=2 {
            storage.append(&acceptor::core::Record::Promised(Ballot::new(round, 1)));
        }
        storage.sync().unwrap();
    }
    // Damage the first record: acknowledged data, not a torn tail.
    let mut bytes = std::fs::read(&log_path).unwrap();
    bytes[8 + 8] ^= 0xff;
    std::fs::write(&log_path, &bytes).unwrap();

    let acceptor = start(config(directory.path(), "127.0.0.1:0"))
        .await
        .expect("a corrupt log does not stop the acceptor");
    let mut proposer = FakeNode::connect(NodeId::proposer(1), &acceptor).await;
    for message in [
        Message::Prepare {
            ballot: Ballot::new(1, 1),
            from_slot: 1,
        },
        Message::Accept {
            ballot: Ballot::new(9, 1),
            slot: 1,
            value: value(),
        },
        Message::Confirm {
            ballot: Ballot::new(9, 1),
            sequence: 1,
        },
    ] {
        assert!(proposer.network.send(NodeId::acceptor(1), message));
    }
    // One connection delivers in order: the status reply coming first proves that the
    // Prepare, Accept and Confirm before it got no answer.
    match proposer.wait_known_to_acceptor().await {
        RoleStatus::Acceptor {
            storage_fault: Some(reason),
            promised_ballot,
            ..
        } => {
            assert!(reason.contains("corrupt"), "{reason}");
            assert_eq!(promised_ballot, Ballot::ZERO);
        }
        other => panic!("expected an acceptor refusing to vote, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&log_path).unwrap(),
        bytes,
        "the damaged log is left as found, for an operator"
    );
    acceptor.shutdown().await;
}

/// The child process of the test below: an acceptor whose disk fails every fsync gets a
/// Prepare, whose promise it cannot make durable. It must stop the process (exit 1) rather
/// than retry the fsync or answer.
async fn run_acceptor_whose_fsyncs_fail() {
    runtime::logging::init();
    let file_system = runtime::file_system::SimulatedFileSystem::new();
    let acceptor = acceptor::service::start_in(
        config(Path::new("/acceptor1"), "127.0.0.1:0"),
        Arc::new(file_system.clone()),
    )
    .await
    .expect("acceptor starts");
    file_system.fail_syncs();
    let mut proposer = FakeNode::connect(NodeId::proposer(1), &acceptor).await;
    let answer = proposer
        .ask(Message::Prepare {
            ballot: Ballot::new(1, 1),
            from_slot: 1,
        })
        .await;
    panic!("the acceptor answered {answer:?} although its promise could not be made durable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsync_error_stops_the_acceptor_process() {
    if std::env::var_os("ACCEPTOR_FSYNC_FAILURE_CHILD").is_some() {
        run_acceptor_whose_fsyncs_fail().await;
        return;
    }
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_fsync_error_stops_the_acceptor_process",
            "--nocapture",
        ])
        .env("ACCEPTOR_FSYNC_FAILURE_CHILD", "1")
        .env("LOG_LEVEL", "error")
        .output()
        .expect("the test binary runs");
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert_eq!(
        child.status.code(),
        Some(1),
        "the acceptor must exit with status 1 on an fsync error; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("the log's sync failed; stopping"),
        "the log says why:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_the_acceptor_and_frees_its_port() {
    let directory = tempfile::tempdir().unwrap();
    let acceptor = start(config(directory.path(), "127.0.0.1:0"))
        .await
        .unwrap();
    let address = acceptor.address();
    drop(acceptor);
    let mut bound = None;
    for _ in 0..100 {
        if let Ok(listener) = std::net::TcpListener::bind(address) {
            bound = Some(listener);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(bound.is_some(), "port {address} still held after drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acceptor_asked_for_two_values_under_one_ballot_refuses_the_second_and_keeps_serving() {
    let directory = tempfile::tempdir().unwrap();
    let acceptor = start(config(directory.path(), "127.0.0.1:0"))
        .await
        .unwrap();
    let mut proposer = FakeNode::connect(NodeId::proposer(1), &acceptor).await;
    let ballot = Ballot::new(1, 1);
    let answer = proposer
        .ask(Message::Accept {
            ballot,
            slot: 1,
            value: value(),
        })
        .await;
    assert_eq!(answer, Message::Accepted { ballot, slot: 1 });
    // The second value is refused (an alarm, no answer); the next message is served.
    assert!(proposer.network.send(
        NodeId::acceptor(1),
        Message::Accept {
            ballot,
            slot: 1,
            value: Value::Noop,
        }
    ));
    let answer = proposer
        .ask(Message::Accept {
            ballot,
            slot: 2,
            value: Value::Noop,
        })
        .await;
    assert_eq!(answer, Message::Accepted { ballot, slot: 2 });
    let answer = proposer
        .ask(Message::Prepare {
            ballot: Ballot::new(2, 1),
            from_slot: 1,
        })
        .await;
    let Message::Promise { accepted, .. } = answer else {
        panic!("expected a Promise, got {answer:?}");
    };
    assert_eq!(
        accepted[0].value,
        value(),
        "the first value of slot 1 is kept"
    );
}

// Amnesia: the data directory's identity says whose memory it is and whether it voted.

fn identity_in(data_dir: &Path) -> acceptor::identity::Identity {
    acceptor::identity::read(&runtime::file_system::RealFileSystem, data_dir)
        .expect("the identity reads")
        .expect("the data directory has an identity")
}

fn prepare(round: u64) -> Message {
    Message::Prepare {
        ballot: Ballot::new(round, 2),
        from_slot: 1,
    }
}

/// Starts acceptor 1 on `data_dir`, promises `round` to a proposer and stops it.
async fn promise_once(data_dir: &Path, round: u64) {
    let acceptor = start(config(data_dir, "127.0.0.1:0")).await.unwrap();
    let mut proposer = FakeNode::connect(NodeId::proposer(2), &acceptor).await;
    assert!(matches!(
        proposer.ask(prepare(round)).await,
        Message::Promise { .. }
    ));
    acceptor.shutdown().await;
}

/// Starts acceptor 1 on `data_dir` and returns its status and its answer to a Prepare
/// (None if it gave none before the status reply that follows the Prepare).
async fn status_and_answer(data_dir: &Path, round: u64) -> (RoleStatus, Option<Message>) {
    let acceptor = start(config(data_dir, "127.0.0.1:0")).await.unwrap();
    let mut proposer = FakeNode::connect(NodeId::proposer(2), &acceptor).await;
    assert!(proposer.network.send(NodeId::acceptor(1), prepare(round)));
    let first = proposer.ask(Message::StatusRequest { request_id: 8 }).await;
    let (answer, status) = match first {
        Message::StatusReply { status, .. } => (None, status.detail),
        answer => match proposer.next_message().await {
            Message::StatusReply { status, .. } => (Some(answer), status.detail),
            other => panic!("expected a StatusReply, got {other:?}"),
        },
    };
    acceptor.shutdown().await;
    (status, answer)
}

fn storage_fault(status: &RoleStatus) -> Option<&str> {
    match status {
        RoleStatus::Acceptor { storage_fault, .. } => storage_fault.as_deref(),
        other => panic!("expected an acceptor's status, got {other:?}"),
    }
}

fn assert_refuses_with_amnesia(status: &RoleStatus, answer: &Option<Message>) {
    let reason = storage_fault(status).expect("the acceptor refuses to vote");
    assert!(
        reason.starts_with("amnesia: identity of incarnation ")
            && reason.contains("says this acceptor voted, but its log")
            && reason.contains("holds no records")
            && reason.contains("paxos acceptor --reset-identity")
            && reason.contains("safe only while a quorum of the other acceptors is intact"),
        "{reason}"
    );
    assert_eq!(answer, &None, "an acceptor with amnesia answers nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_start_writes_an_identity_that_has_not_voted_until_its_first_promise() {
    let directory = tempfile::tempdir().unwrap();
    let acceptor = start(config(directory.path(), "127.0.0.1:0"))
        .await
        .unwrap();
    let fresh = identity_in(directory.path());
    assert_eq!(
        (
            fresh.cluster_id.as_str(),
            fresh.acceptor_id,
            fresh.has_voted
        ),
        ("paxos", 1, false)
    );
    let mut proposer = FakeNode::connect(NodeId::proposer(2), &acceptor).await;
    assert!(matches!(
        proposer.ask(prepare(1)).await,
        Message::Promise { .. }
    ));
    let voted = identity_in(directory.path());
    assert!(voted.has_voted, "recorded before the Promise left");
    assert_eq!(voted.incarnation, fresh.incarnation);
    acceptor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_its_log_intact_votes() {
    let directory = tempfile::tempdir().unwrap();
    promise_once(directory.path(), 1).await;
    let incarnation = identity_in(directory.path()).incarnation;
    let (status, answer) = status_and_answer(directory.path(), 2).await;
    assert_eq!(storage_fault(&status), None);
    assert!(
        matches!(answer, Some(Message::Promise { .. })),
        "{answer:?}"
    );
    assert_eq!(identity_in(directory.path()).incarnation, incarnation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acceptor_whose_log_was_deleted_after_voting_refuses_with_amnesia_in_its_status() {
    let directory = tempfile::tempdir().unwrap();
    promise_once(directory.path(), 1).await;
    let log = directory.path().join(acceptor::storage::LOG_FILE_NAME);
    std::fs::remove_file(&log).unwrap();
    let (status, answer) = status_and_answer(directory.path(), 2).await;
    assert_refuses_with_amnesia(&status, &answer);
    assert!(!log.exists(), "the directory is left as found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acceptor_whose_log_was_truncated_to_zero_bytes_after_voting_refuses_with_amnesia() {
    let directory = tempfile::tempdir().unwrap();
    promise_once(directory.path(), 1).await;
    let log = directory.path().join(acceptor::storage::LOG_FILE_NAME);
    std::fs::File::create(&log).unwrap();
    let (status, answer) = status_and_answer(directory.path(), 2).await;
    assert_refuses_with_amnesia(&status, &answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acceptor_that_never_voted_restarts_with_an_empty_log_and_votes() {
    let directory = tempfile::tempdir().unwrap();
    let acceptor = start(config(directory.path(), "127.0.0.1:0"))
        .await
        .unwrap();
    acceptor.shutdown().await;
    let log = directory.path().join(acceptor::storage::LOG_FILE_NAME);
    std::fs::File::create(&log).unwrap();
    let (status, answer) = status_and_answer(directory.path(), 1).await;
    assert_eq!(storage_fault(&status), None, "no false alarm");
    assert!(
        matches!(answer, Some(Message::Promise { .. })),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_another_acceptor_or_cluster_stops_the_start_naming_both() {
    let directory = tempfile::tempdir().unwrap();
    promise_once(directory.path(), 1).await;
    let mut other_acceptor = config(directory.path(), "127.0.0.1:0");
    other_acceptor.id = 2;
    let mut other_cluster = config(directory.path(), "127.0.0.1:0");
    other_cluster.cluster_id = "staging".into();
    for (wrong, expected) in [
        (other_acceptor, "this is acceptor 2 of cluster \"paxos\""),
        (other_cluster, "this is acceptor 1 of cluster \"staging\""),
    ] {
        let error = format!("{:#}", start(wrong).await.err().expect("refused"));
        let belongs = format!(
            "data directory {} belongs to acceptor 1 of cluster \"paxos\"",
            directory.path().display()
        );
        assert!(error.contains(&belongs), "{error}");
        assert!(error.contains(expected), "{error}");
        assert!(error.contains("wrong node"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_identity_keeps_the_old_log_aside_and_the_acceptor_votes_again() {
    let directory = tempfile::tempdir().unwrap();
    promise_once(directory.path(), 1).await;
    let log = directory.path().join(acceptor::storage::LOG_FILE_NAME);
    let old_log = std::fs::read(&log).unwrap();
    let old = identity_in(directory.path());
    std::fs::remove_file(&log).unwrap();
    std::fs::write(&log, &old_log[..8]).unwrap(); // the records lost, the header kept
    let (status, _) = status_and_answer(directory.path(), 2).await;
    assert!(storage_fault(&status).is_some_and(|reason| reason.starts_with("amnesia")));

    let at = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_999_500);
    let config = config(directory.path(), "127.0.0.1:0");
    let file_system = runtime::file_system::RealFileSystem;
    let reset = acceptor::service::reset_identity_in(&config, &file_system, at).unwrap();
    let aside = directory.path().join("acceptor.wal.reset-20261130T004500Z");
    assert_eq!(reset.moved_log.as_deref(), Some(aside.as_path()));
    assert_eq!(
        std::fs::read(&aside).unwrap(),
        &old_log[..8],
        "kept, not deleted"
    );
    let report = reset.report(directory.path());
    assert!(report.contains("moved the old log aside to"), "{report}");
    assert!(
        report.contains("safe only while a quorum of the other acceptors is intact"),
        "{report}"
    );
    let new = identity_in(directory.path());
    assert_ne!(new.incarnation, old.incarnation);
    assert!(!new.has_voted);

    let (status, answer) = status_and_answer(directory.path(), 3).await;
    assert_eq!(storage_fault(&status), None);
    assert!(
        matches!(answer, Some(Message::Promise { .. })),
        "{answer:?}"
    );
    // A second reset in the same second keeps both old logs.
    let again = acceptor::service::reset_identity_in(&config, &file_system, at).unwrap();
    assert_eq!(
        again.moved_log,
        Some(
            directory
                .path()
                .join("acceptor.wal.reset-20261130T004500Z-2")
        )
    );
    assert!(aside.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_data_directory_with_a_log_but_no_identity_is_taken_as_having_voted() {
    let directory = tempfile::tempdir().unwrap();
    promise_once(directory.path(), 1).await;
    std::fs::remove_file(
        directory
            .path()
            .join(acceptor::identity::IDENTITY_FILE_NAME),
    )
    .unwrap();
    let (status, answer) = status_and_answer(directory.path(), 0).await;
    assert_eq!(storage_fault(&status), None);
    assert!(
        matches!(answer, Some(Message::Rejected { .. })),
        "the promise of round 1 came back from the log: {answer:?}"
    );
    assert!(identity_in(directory.path()).has_voted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acceptor_with_a_corrupt_identity_refuses_to_vote_and_says_why() {
    let directory = tempfile::tempdir().unwrap();
    promise_once(directory.path(), 1).await;
    let path = directory
        .path()
        .join(acceptor::identity::IDENTITY_FILE_NAME);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("acceptor_id=1", "acceptor_id=7")).unwrap();
    let (status, answer) = status_and_answer(directory.path(), 2).await;
    let reason = storage_fault(&status).expect("refuses");
    assert!(reason.contains("checksum mismatch"), "{reason}");
    assert_eq!(answer, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_damaged_in_the_middle_says_how_many_intact_records_would_be_lost() {
    let directory = tempfile::tempdir().unwrap();
    let log_path = directory.path().join(acceptor::storage::LOG_FILE_NAME);
    {
        let (mut storage, _) = acceptor::storage::Storage::open(directory.path()).unwrap();
        for round in 1..=13 {
            storage.append(&acceptor::core::Record::Promised(Ballot::new(round, 1)));
        }
        storage.sync().unwrap();
    }
    // Damage the first record: twelve intact ones follow it.
    let mut bytes = std::fs::read(&log_path).unwrap();
    bytes[8 + 8] ^= 0xff;
    std::fs::write(&log_path, &bytes).unwrap();
    let (status, answer) = status_and_answer(directory.path(), 20).await;
    let reason = storage_fault(&status).expect("refuses");
    assert!(
        reason.contains(
            "is corrupt at byte 8: checksum mismatch; 12 intact records after it would be lost"
        ),
        "{reason}"
    );
    assert_eq!(answer, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn has_voted_is_durable_before_the_first_answer_leaves() {
    use runtime::file_system::{KeepNothing, SimulatedFileSystem};
    let file_system = SimulatedFileSystem::new();
    let data_dir = Path::new("/acceptor1");
    let acceptor = acceptor::service::start_in(
        config(data_dir, "127.0.0.1:0"),
        Arc::new(file_system.clone()),
    )
    .await
    .unwrap();
    let mut proposer = FakeNode::connect(NodeId::proposer(2), &acceptor).await;
    assert!(matches!(
        proposer.ask(prepare(1)).await,
        Message::Promise { .. }
    ));
    // A power cut the moment the Promise arrived: only what was synced survives.
    let crashed = file_system.crash(&mut KeepNothing);
    acceptor.shutdown().await;
    let identity = acceptor::identity::read(&crashed, data_dir)
        .unwrap()
        .unwrap();
    assert!(identity.has_voted);
    let (_, records) = acceptor::storage::Storage::open_in(Arc::new(crashed), data_dir).unwrap();
    assert_eq!(records.len(), 1, "the promise was synced too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acceptor_at_its_log_quota_holds_its_votes_behind_an_alarm_and_resumes_after_a_trim() {
    let directory = tempfile::tempdir().unwrap();
    let mut config = config(directory.path(), "127.0.0.1:0");
    let quota = 256 * 1024;
    config.log_quota_bytes = Some(quota);
    let acceptor = start(config).await.unwrap();
    let mut proposer = FakeNode::connect(NodeId::proposer(1), &acceptor).await;
    let ballot = Ballot::new(1, 1);
    let big = |slot: u64| {
        Value::Batch(vec![Command::put(
            RequestId(u128::from(slot)),
            format!("k{slot}"),
            "v".repeat(16 * 1024),
        )])
    };
    // Votes until one is held: the log reached its quota (compaction cannot help, every
    // slot is live).
    let mut held_slot = None;
    for slot in 1..=64u64 {
        proposer.network.send(
            NodeId::acceptor(1),
            Message::Accept {
                ballot,
                slot,
                value: big(slot),
            },
        );
        let answer = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                if let Inbound::Message(_, message) = proposer.events.recv().await.unwrap() {
                    return message;
                }
            }
        })
        .await;
        match answer {
            Ok(Message::Accepted { slot: answered, .. }) => assert_eq!(answered, slot),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {
                held_slot = Some(slot);
                break;
            }
        }
    }
    let held_slot = held_slot.expect("the quota was reached within 64 votes of 16 KiB");
    // Status is answered at once and says why.
    let status = match proposer.ask(Message::StatusRequest { request_id: 9 }).await {
        Message::StatusReply { status, .. } => status,
        other => panic!("expected a StatusReply, got {other:?}"),
    };
    assert!(
        status
            .alarms
            .iter()
            .any(|alarm| alarm.starts_with("no space") && alarm.contains("quota")),
        "{:?}",
        status.alarms
    );
    // While held, a new vote is refused at once for lack of space, and the leader's
    // ballot, durable before the disk filled, is still confirmed (strong reads go on).
    let refused = proposer
        .ask(Message::Accept {
            ballot,
            slot: held_slot + 1,
            value: big(held_slot + 1),
        })
        .await;
    assert_eq!(
        refused,
        Message::NoSpace {
            ballot,
            slot: held_slot + 1
        }
    );
    let confirmed = proposer
        .ask(Message::Confirm {
            ballot,
            sequence: 5,
        })
        .await;
    assert_eq!(
        confirmed,
        Message::Confirmed {
            ballot,
            sequence: 5
        }
    );
    // The learners hold the slots: the leader trims them, the acceptor compacts its log
    // and answers the held vote.
    proposer.network.send(
        NodeId::acceptor(1),
        Message::Trim {
            trimmed_slot: held_slot - 1,
        },
    );
    let released = loop {
        match proposer.next_message().await {
            Message::Accepted { slot, .. } => break slot,
            Message::StatusReply { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        released, held_slot,
        "the held answer leaves once the vote is durable"
    );
    let status = match proposer
        .ask(Message::StatusRequest { request_id: 10 })
        .await
    {
        Message::StatusReply { status, .. } => status,
        other => panic!("expected a StatusReply, got {other:?}"),
    };
    assert!(
        !status
            .alarms
            .iter()
            .any(|alarm| alarm.starts_with("no space")),
        "the alarm cleared: {:?}",
        status.alarms
    );
    assert!(
        matches!(status.detail, RoleStatus::Acceptor { trimmed_slot, .. }
        if trimmed_slot == held_slot - 1)
    );
    let log_bytes = std::fs::metadata(directory.path().join("acceptor.wal"))
        .unwrap()
        .len();
    assert!(log_bytes < quota, "compacted to {log_bytes} bytes");
}
