//! Scripted fake cluster nodes and helpers shared by the client API's tests.
//!
//! A fake node is a real `runtime::network::Network` listening on 127.0.0.1:0 whose
//! inbound messages are recorded and answered by a script, so a test decides exactly what
//! the proposers and learners say and checks exactly what the client API sent.

#![allow(dead_code)]

use client::config::ClientConfig;
use common::message::{AppliedRequest, Message, FINGERPRINT_UNKNOWN};
use common::node::NodeId;
use runtime::network::{Inbound, Network};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Answers one inbound message (from `sender`) with messages sent back to the sender.
pub type Script = Box<dyn FnMut(NodeId, &Message) -> Vec<Message> + Send>;

/// A learner's answer to an `Outcome`: the command took effect `earlier` slots before the
/// slot asked about (a retry decided twice), its fingerprint unknown, so that whatever the
/// client API wrote counts as that command. None for any other message.
pub fn outcome_reply(message: &Message, earlier: u64) -> Option<Message> {
    let Message::Outcome {
        read_id,
        request_id,
        min_slot,
    } = message
    else {
        return None;
    };
    Some(Message::OutcomeReply {
        read_id: *read_id,
        outcome: Some(AppliedRequest {
            request_id: *request_id,
            slot: min_slot.saturating_sub(earlier),
            fingerprint: FINGERPRINT_UNKNOWN,
        }),
        applied_slot: *min_slot,
    })
}

/// A learner that answers every `Outcome` (see [`outcome_reply`]) and nothing else.
pub fn applying_learner(earlier: u64) -> impl FnMut(NodeId, &Message) -> Vec<Message> + Send {
    move |_, message| outcome_reply(message, earlier).into_iter().collect()
}

/// A fake node answering by script.
pub struct FakeNode {
    /// Who it claims to be.
    pub node: NodeId,
    /// Where it listens.
    pub address: String,
    received: Arc<Mutex<Vec<Message>>>,
    clients_connected: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl FakeNode {
    /// Starts `node` on 127.0.0.1:0, answering with `script`.
    pub async fn start(
        node: NodeId,
        mut script: impl FnMut(NodeId, &Message) -> Vec<Message> + Send + 'static,
    ) -> FakeNode {
        let (sender, mut inbox) = mpsc::unbounded_channel();
        let (network, bound) = Network::start(
            node,
            Some("127.0.0.1:0".parse().unwrap()),
            &[],
            runtime::network::Transport::Plaintext,
            Arc::new(move |event| {
                let _ = sender.send(event);
            }),
        )
        .await
        .expect("a fake node can listen on 127.0.0.1:0");
        let received = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&received);
        let clients_connected = Arc::new(AtomicUsize::new(0));
        let connections = Arc::clone(&clients_connected);
        let task = tokio::spawn(async move {
            while let Some(event) = inbox.recv().await {
                match event {
                    Inbound::Connected(_) => {
                        connections.fetch_add(1, Ordering::SeqCst);
                    }
                    Inbound::Message(from, message) => {
                        let replies = script(from, &message);
                        recorded.lock().unwrap().push(message);
                        for reply in replies {
                            network.send(from, reply);
                        }
                    }
                    Inbound::Disconnected(_) => {}
                }
            }
        });
        FakeNode {
            node,
            address: bound.unwrap().to_string(),
            received,
            clients_connected,
            task,
        }
    }

    /// Waits (at most 5 s) until a client API has connected to this node, so that a test
    /// knows which nodes the client API can reach.
    pub async fn wait_for_client(&self) {
        for _ in 0..1000 {
            if self.clients_connected.load(Ordering::SeqCst) > 0 {
                // The client API registers its end of the connection at about the same
                // time; give it a moment.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no client API connected to {} within 5 s", self.node);
    }

    /// A node that never answers anything.
    pub async fn silent(node: NodeId) -> FakeNode {
        FakeNode::start(node, |_, _| Vec::new()).await
    }

    /// Every message received so far, in order.
    pub fn received(&self) -> Vec<Message> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client API configuration towards the given nodes, on 127.0.0.1:0.
pub fn config(
    proposers: &[&FakeNode],
    learners: &[&FakeNode],
    request_timeout_milliseconds: u64,
) -> ClientConfig {
    ClientConfig {
        security: runtime::config::Security::Insecure,
        id: 1,
        listen: "127.0.0.1:0".to_string(),
        proposer_hosts: proposers.iter().map(|node| node.address.clone()).collect(),
        learner_hosts: learners.iter().map(|node| node.address.clone()).collect(),
        request_timeout_milliseconds,
        data_dir: None,
        subscription_buffer_events: 1024,
        subscription_buffer_bytes: 1 << 20,
        header_timeout_milliseconds: 10_000,
        idle_timeout_milliseconds: 60_000,
        max_connections: 10_000,
    }
}

/// An HTTP client that never waits forever.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// POSTs `body` (raw text) to `url`; returns the status and the JSON answer.
pub async fn post(url: String, body: String) -> (u16, Value) {
    let response = http().post(url).body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("the answer {text:?} is not JSON: {error}"));
    (status, json)
}

/// GETs `url`; returns the status and the JSON answer.
pub async fn get(url: String) -> (u16, Value) {
    let response = http().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("the answer {text:?} is not JSON: {error}"));
    (status, json)
}
