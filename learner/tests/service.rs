//! The learner service over real sockets: fake acceptors push votes, a fake client reads,
//! and a restarted learner finds the decided value in its log.

use common::ballot::Ballot;
use common::message::{AcceptedEntry, Message, RoleStatus, VersionedValue};
use common::node::NodeId;
use common::value::{Command, RequestId, Value};
use learner::config::LearnerConfig;
use runtime::network::{Inbound, Network};
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
        runtime::network::Transport::Plaintext,
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
        security: runtime::config::Security::Insecure,
        id: 1,
        listen: "127.0.0.1:0".into(),
        total_acceptors: acceptor_hosts.len(),
        acceptor_hosts,
        proposer_hosts: Vec::new(),
        learner_hosts: Vec::new(),
        quorum_size: 2,
        data_dir: data_dir.to_path_buf(),
        retain_slots: learner::core::DEFAULT_RETAIN_SLOTS,
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
    let write = Value::Batch(vec![Command::put(RequestId(1), "colour", "blue")]);
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
            value: Some(VersionedValue {
                value: "blue".into(),
                create_revision: 1,
                mod_revision: 1,
                version: 1
            }),
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
            value: Some(VersionedValue {
                value: "blue".into(),
                create_revision: 1,
                mod_revision: 1,
                version: 1
            }),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_compacted_to_a_snapshot_and_the_history_and_restores_from_it() {
    const SLOTS: u64 = 300;
    const RETAIN_SLOTS: u64 = 10;
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
    let mut learner_config = config(data_dir.path(), acceptor_hosts.clone());
    learner_config.retain_slots = RETAIN_SLOTS;
    let handle = learner::service::start(learner_config.clone())
        .await
        .expect("the learner starts");
    for acceptor in &mut acceptors {
        acceptor.wait_connected(learner).await;
    }
    // Slot n writes key k<n mod 7>: slot 1's key k1 is last written in slot 295.
    let entries: Vec<AcceptedEntry> = (1..=SLOTS)
        .map(|slot| AcceptedEntry {
            slot,
            ballot: Ballot::new(1, 1),
            value: Value::Batch(vec![Command::put(
                RequestId(slot as u128),
                format!("k{}", slot % 7),
                format!("v{slot}"),
            )]),
        })
        .collect();
    for acceptor in &acceptors[..2] {
        for chunk in entries.chunks(16) {
            assert!(acceptor.network.send(
                learner,
                Message::AcceptedValues {
                    entries: chunk.to_vec()
                }
            ));
        }
    }
    assert!(matches!(
        read(handle.address(), "k1", SLOTS).await,
        Message::ReadReply { value: Some(value), .. } if value.value == "v295" && value.mod_revision == 295 && value.create_revision == 1 && value.version == 43
    ));
    // Compaction happens on a tick; give it a few.
    tokio::time::sleep(Duration::from_millis(200)).await;
    handle.shutdown();

    let log = runtime::wal::Wal::open(data_dir.path().join(learner::service::WAL_FILE_NAME))
        .expect("the log opens");
    assert!(
        (log.records.len() as u64) < 2 * RETAIN_SLOTS + 2,
        "{} records remain of {SLOTS} decided slots",
        log.records.len()
    );
    let first: learner::core::LearnerRecord = postcard::from_bytes(&log.records[0]).unwrap();
    let learner::core::LearnerRecord::SnapshotFile { applied_slot } = first else {
        panic!("a compacted log starts with its snapshot file, not {first:?}")
    };
    drop(log);
    // Beside the log: that snapshot file, and no other (nor a half-written one).
    let mut files: Vec<String> = std::fs::read_dir(data_dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with("snapshot-"))
        .collect();
    files.sort();
    assert_eq!(files, vec![learner::snapshot_file::file_name(applied_slot)]);

    // Restarted with silent acceptors, the state comes from the snapshot and the history.
    let restarted = learner::service::start(learner_config)
        .await
        .expect("the learner restarts");
    assert!(matches!(
        read(restarted.address(), "k1", SLOTS).await,
        Message::ReadReply { value: Some(value), applied_slot: SLOTS, .. }
            if value.value == "v295" && value.mod_revision == 295 && value.create_revision == 1 && value.version == 43
    ));
    let mut client = fake_node(NodeId::client(2), false, &[restarted.address().to_string()]).await;
    client.wait_connected(learner).await;
    client.network.send(
        learner,
        Message::Subscribe {
            stream_id: 1,
            from_slot: 1,
        },
    );
    assert_eq!(
        client.wait_message(learner).await,
        Message::SubscriptionTooOld {
            stream_id: 1,
            oldest_available_slot: SLOTS - RETAIN_SLOTS + 1,
            applied_slot: SLOTS
        }
    );
    client.network.send(
        learner,
        Message::Subscribe {
            stream_id: 2,
            from_slot: SLOTS - 1,
        },
    );
    match client.wait_message(learner).await {
        Message::Applied {
            stream_id: 2,
            from_slot,
            to_slot,
            slots,
            ..
        } => {
            assert_eq!((from_slot, to_slot), (SLOTS - 1, SLOTS + 1));
            assert_eq!(slots.len(), 2);
            assert_eq!(slots[1].writes[0].value, format!("v{SLOTS}"));
        }
        other => panic!("expected the history, got {other:?}"),
    }
    drop(restarted);
}
