//! The acceptor process over real sockets: fake proposers and learners (plain
//! `common::network::Network`s) talk to it, and a restart on the same data directory and
//! port shows that what it answered was durable.

use acceptor::service::{start, Handle};
use common::ballot::Ballot;
use common::config::AcceptorConfig;
use common::message::{AcceptedEntry, Message, RoleStatus};
use common::network::{Inbound, Network};
use common::node::{NodeId, Role};
use common::value::{Command, RequestId, Value};
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
        id: 1,
        listen: listen.to_string(),
        total_acceptors: 3,
        data_dir: data_dir.to_path_buf(),
        cluster_id: "paxos".to_string(),
    }
}

fn value() -> Value {
    Value::Batch(vec![Command {
        request_id: RequestId(42),
        key: "colour".into(),
        value: "blue".into(),
    }])
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

    let lower = Ballot::new(4, 3);
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
    common::logging::init();
    let file_system = common::file_system::SimulatedFileSystem::new();
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
        stderr.contains("syncing the log failed; stopping the acceptor"),
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
async fn an_acceptor_asked_for_two_values_under_one_ballot_stops_with_an_error() {
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
    assert!(proposer.network.send(
        NodeId::acceptor(1),
        Message::Accept {
            ballot,
            slot: 1,
            value: Value::Noop,
        }
    ));
    let error = tokio::time::timeout(WAIT, acceptor.wait())
        .await
        .expect("the driver stops")
        .expect_err("a broken invariant is an error");
    assert!(
        error.to_string().contains("one value per slot per ballot"),
        "{error}"
    );
}
