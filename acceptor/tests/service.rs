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
            accepted_slot_count: 1
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
async fn acceptor_refuses_to_start_from_a_corrupt_log() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join(acceptor::storage::LOG_FILE_NAME),
        b"not a log at all",
    )
    .unwrap();
    let error = start(config(directory.path(), "127.0.0.1:0"))
        .await
        .err()
        .expect("a corrupt log must stop the acceptor");
    let message = format!("{error:#}");
    assert!(message.contains("corrupt"), "{message}");
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
