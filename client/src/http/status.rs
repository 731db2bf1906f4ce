//! The `/status` document: every node's report, the leader, the learners' applied slots
//! and whether a quorum of acceptors is available.

use crate::driver::{ClusterStatus, NodeReport};
use common::message::{PeerStatus, ProposerState, RoleStatus};
use common::node::Role;
use serde_json::{json, Value as JsonValue};

/// The /status document.
pub fn status_json(status: &ClusterStatus) -> JsonValue {
    let leader = status
        .leader
        .as_ref()
        .and_then(|leader| match &leader.status.as_ref()?.detail {
            RoleStatus::Proposer { ballot, .. } => Some(json!({
                "proposer": leader.id,
                "ballot": ballot.to_string(),
            })),
            _ => None,
        });
    let learners: Vec<JsonValue> = status
        .nodes
        .iter()
        .filter_map(
            |node| match node.status.as_ref().map(|status| &status.detail) {
                Some(RoleStatus::Learner { applied_slot, .. }) => {
                    Some(json!({ "id": node.id, "applied_slot": applied_slot }))
                }
                _ => None,
            },
        )
        .collect();
    let acceptors: Vec<&NodeReport> = status
        .nodes
        .iter()
        .filter(|node| node.role == Role::Acceptor)
        .collect();
    let healthy_acceptors = acceptors.iter().filter(|node| is_healthy(node)).count();
    let majority = acceptors.len() / 2 + 1;
    let insecure_nodes: Vec<String> = status
        .nodes
        .iter()
        .filter(|node| {
            node.status.as_ref().is_some_and(|status| {
                status
                    .alarms
                    .iter()
                    .any(|alarm| alarm.starts_with(runtime::network::INSECURE_ALARM_PREFIX))
            })
        })
        .map(node_name)
        .collect();
    json!({
        // Mutual TLS between nodes, or the insecure mode's warning (docs/SECURITY.md).
        "node_plane": if status.insecure || !insecure_nodes.is_empty() {
            json!({
                "security": "insecure",
                "warning": "nodes talk in plaintext and trust every peer's Hello (PAXOS_INSECURE=true)",
                "insecure_nodes": insecure_nodes,
            })
        } else {
            json!({ "security": "mutual TLS" })
        },
        "alarms": status.alarms,
        "leader": leader,
        "nodes": status.nodes.iter().map(node_json).collect::<Vec<_>>(),
        "learners": learners,
        "quorum": {
            "acceptors": acceptors.len(),
            "healthy_acceptors": healthy_acceptors,
            "majority": majority,
            "available": !acceptors.is_empty() && healthy_acceptors >= majority,
        },
    })
}

/// A node is healthy if it answered in time and, for an acceptor, votes (its log is not
/// corrupt).
fn is_healthy(node: &NodeReport) -> bool {
    match &node.status {
        None => false,
        Some(status) => !matches!(
            status.detail,
            RoleStatus::Acceptor {
                storage_fault: Some(_),
                ..
            }
        ),
    }
}

fn node_name(node: &NodeReport) -> String {
    match node.id {
        Some(id) => format!("{}{id}", node.role.name()),
        None => format!("{}@{}", node.role.name(), node.address),
    }
}

/// One node's entry in the `/status` document (also the body of a node's own admin
/// `/status`).
pub fn node_json(node: &NodeReport) -> JsonValue {
    let name = node_name(node);
    let mut entry = json!({
        "name": name,
        "role": node.role.name(),
        "id": node.id,
        "address": node.address,
        "healthy": is_healthy(node),
    });
    let Some(status) = &node.status else {
        return entry;
    };
    let fields = match &status.detail {
        RoleStatus::Acceptor {
            promised_ballot,
            accepted_slot_max,
            accepted_slot_count,
            trimmed_slot,
            storage_fault,
        } => json!({
            "promised_ballot": promised_ballot.to_string(),
            "accepted_slot_max": accepted_slot_max,
            "accepted_slot_count": accepted_slot_count,
            "trimmed_slot": trimmed_slot,
            "storage": match storage_fault {
                None => "ok".to_string(),
                Some(reason) => format!("refusing to vote: {reason}"),
            },
        }),
        RoleStatus::Proposer {
            state,
            ballot,
            leader,
            decided_slot_max,
        } => json!({
            "state": proposer_state_name(*state),
            "ballot": ballot.to_string(),
            "leader": leader,
            "decided_slot_max": decided_slot_max,
        }),
        RoleStatus::Learner {
            applied_slot,
            known_slot_max,
            key_count,
        } => json!({
            "applied_slot": applied_slot,
            "known_slot_max": known_slot_max,
            "key_count": key_count,
        }),
    };
    if let (JsonValue::Object(entry), JsonValue::Object(fields)) = (&mut entry, fields) {
        entry.extend(fields);
        entry.insert(
            "peers".to_string(),
            status.peers.iter().map(peer_json).collect(),
        );
        // What the node refused from peers (its core's and its network's alarms): the
        // only place an operator sees an attack or a misconfigured peer.
        entry.insert("alarms".to_string(), json!(status.alarms));
    }
    entry
}

fn peer_json(peer: &PeerStatus) -> JsonValue {
    json!({
        "address": peer.address,
        "node": peer.node.map(|node| node.to_string()),
        "connected": peer.connected,
    })
}

fn proposer_state_name(state: ProposerState) -> &'static str {
    match state {
        ProposerState::Leader => "leader",
        ProposerState::Follower => "follower",
        ProposerState::Candidate => "candidate",
    }
}
