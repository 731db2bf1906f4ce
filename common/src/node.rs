//! Node identities. Every connection starts with a `Hello` naming the node on each end,
//! so the cores address messages to nodes, never to sockets.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The four roles of the design.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Votes on proposals and remembers them durably.
    Acceptor,
    /// Numbers proposals, elects a leader and drives Multi-Paxos.
    Proposer,
    /// Decides slots from acceptors' votes, applies them and serves reads.
    Learner,
    /// The client API: REST in front of the cluster.
    Client,
}

impl Role {
    /// The lower-case name used in logs, the REST API and the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::Acceptor => "acceptor",
            Role::Proposer => "proposer",
            Role::Learner => "learner",
            Role::Client => "client",
        }
    }
}

/// One node of the cluster: its role and its id within that role (ids start at 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// What the node does.
    pub role: Role,
    /// Its number among the nodes of that role.
    pub id: u32,
}

impl NodeId {
    /// Acceptor number `id`.
    pub fn acceptor(id: u32) -> Self {
        NodeId {
            role: Role::Acceptor,
            id,
        }
    }
    /// Proposer number `id`.
    pub fn proposer(id: u32) -> Self {
        NodeId {
            role: Role::Proposer,
            id,
        }
    }
    /// Learner number `id`.
    pub fn learner(id: u32) -> Self {
        NodeId {
            role: Role::Learner,
            id,
        }
    }
    /// Client API number `id`.
    pub fn client(id: u32) -> Self {
        NodeId {
            role: Role::Client,
            id,
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}{}", self.role.name(), self.id)
    }
}
