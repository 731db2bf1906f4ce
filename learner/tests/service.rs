//! The learner service over real sockets: fake acceptors push votes, a fake client reads,
//! and a restarted learner finds the decided value in its log.

use common::ballot::Ballot;
use common::config::LearnerConfig;
use common::message::{AcceptedEntry, Message, RoleStatus};
use common::network::{Inbound, Network};
use common::node::NodeId;
use common::value::{Command, RequestId, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::timeout;

const PATIENCE: Duration = Duration::from_secs(10);

/// A node played by the test: its network and what arrives on it.
struct FakeNode {
    network: Network,
    address: Option<SocketAddr>,
    inbound: UnboundedReceiver<Inbound>,
}

async fn fake_node(me: NodeId, listen: bool, peers: &[String]) -> FakeNode {
    let (sender, inbound) = unbounded_channel();
    let listen = listen.then(|| "127.0.0.1:0".parse().unwrap());
    let (network, address) = Network::start(
        me,
        listen,
        peers,
        Arc::new(move |event| {
            let _ = sender.send(event);
        }),
    )
    .await
    .expect("the fake node starts");
    FakeNode {
        network,
        address,
        inbound,
    }
}

impl FakeNode {
    /// Waits for an event that `wanted` accepts, skipping others.
    async fn wait_for<T>(&mut self, mut wanted: impl FnMut(Inbound) -> Option<T>) -> T {
        timeout(PATIENCE, async {
            loop {
                let event = self.inbound.recv().await.expect("the network runs");
                if let Some(found) = wanted(event) {
                    return found;
                }
            }
        })
        .await
        .expect("the awaited event arrives in time")
    }

    async fn wait_connected(&mut self, node: NodeId) {
        self.wait_for(|event| {
            matches!(event, Inbound::Connected(peer) if peer == node).then_some(())
        })
        .await;
    }

    async fn wait_disconnected(&mut self, node: NodeId) {
        self.wait_for(|event| {
            matches!(event, Inbound::Disconnected(peer) if peer == node).then_some(())
        })
        .await;
    }

    async fn wait_message(&mut self, from: NodeId) -> Message {
        self.wait_for(|event| match event {
            Inbound::Message(sender, message) if sender == from => Some(message),
            _ => None,
        })
        .await
    }
}

fn config(data_dir: &Path, acceptor_hosts: Vec<String>) -> LearnerConfig {
    LearnerConfig {
        id: 1,
        listen: "127.0.0.1:0".into(),
        total_acceptors: acceptor_hosts.len(),
        acceptor_hosts,
        proposer_hosts: Vec::new(),
        learner_hosts: Vec::new(),
        quorum_size: 2,
        data_dir: data_dir.to_path_buf(),
    }
}

/// A fresh client connects to the learner at `address` and reads `key` once slot
/// `min_slot` is applied.
async fn read(address: SocketAddr, key: &str, min_slot: u64) -> Message {
    let learner = NodeId::learner(1);
    let mut client = fake_node(NodeId::client(1), false, &[address.to_string()]).await;
    client.wait_connected(learner).await;
    let read = Message::Read {
        read_id: 42,
        key: key.into(),
        min_slot,
    };
    assert!(client.network.send(learner, read));
    client.wait_message(learner).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_serves_a_value_decided_by_a_quorum_and_keeps_it_across_a_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    let learner = NodeId::learner(1);
    let mut acceptors = Vec::new();
    for id in 1..=3 {
        acceptors.push(fake_node(NodeId::acceptor(id), true, &[]).await);
    }
    let acceptor_hosts: Vec<String> = acceptors
        .iter()
        .map(|acceptor| acceptor.address.unwrap().to_string())
        .collect();
    let handle = learner::service::start(config(data_dir.path(), acceptor_hosts.clone()))
        .await
        .expect("the learner starts");

    for acceptor in &mut acceptors {
        acceptor.wait_connected(learner).await;
        // On connecting, the learner asks each acceptor for the votes it missed.
        let asked = acceptor.wait_message(learner).await;
        assert!(
            matches!(asked, Message::SyncAccepted { from_slot: 1, .. }),
            "{asked:?}"
        );
    }
    let write = Value::Batch(vec![Command {
        request_id: RequestId(1),
        key: "colour".into(),
        value: "blue".into(),
    }]);
    let votes = Message::AcceptedValues {
        entries: vec![AcceptedEntry {
            slot: 1,
            ballot: Ballot::new(1, 1),
            value: write,
        }],
    };
    for acceptor in &acceptors[..2] {
        assert!(acceptor.network.send(learner, votes.clone()));
    }
    // The read waits until slot 1 is applied.
    assert_eq!(
        read(handle.address(), "colour", 1).await,
        Message::ReadReply {
            read_id: 42,
            value: Some("blue".into()),
            applied_slot: 1
        }
    );

    let mut client = fake_node(NodeId::client(2), false, &[handle.address().to_string()]).await;
    client.wait_connected(learner).await;
    assert!(client
        .network
        .send(learner, Message::StatusRequest { request_id: 7 }));
    match client.wait_message(learner).await {
        Message::StatusReply { request_id, status } => {
            assert_eq!(request_id, 7);
            assert_eq!(status.node, learner);
            assert_eq!(
                status.detail,
                RoleStatus::Learner {
                    applied_slot: 1,
                    known_slot_max: 1,
                    key_count: 1
                }
            );
            assert_eq!(status.peers.len(), 3);
            assert!(status.peers.iter().all(|peer| peer.connected));
        }
        other => panic!("expected a status reply, got {other:?}"),
    }

    handle.shutdown();
    for acceptor in &mut acceptors {
        acceptor.wait_disconnected(learner).await;
    }

    // The acceptors stay silent now: the value can only come from the learner's own log.
    let restarted = learner::service::start(config(data_dir.path(), acceptor_hosts))
        .await
        .expect("the learner restarts");
    assert_eq!(
        read(restarted.address(), "colour", 1).await,
        Message::ReadReply {
            read_id: 42,
            value: Some("blue".into()),
            applied_slot: 1
        }
    );
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_refuses_to_start_from_a_corrupt_log() {
    let data_dir = tempfile::tempdir().unwrap();
    let log = data_dir.path().join(learner::service::WAL_FILE_NAME);
    std::fs::write(&log, b"NOT A LOG FILE AT ALL").unwrap();
    let problem =
        match learner::service::start(config(data_dir.path(), vec!["127.0.0.1:9".into()])).await {
            Ok(_) => panic!("a corrupt log must not be used"),
            Err(problem) => problem,
        };
    assert!(problem.to_string().contains("corrupt"), "{problem}");
}
