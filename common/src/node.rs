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
    /// The identity of a node's own health probe (its admin listener asking for status on
    /// the node's protocol port): client id 0, which no client API has. The network gives
    /// it to a connection from the node itself, and it may only ask for status.
    pub const HEALTH_PROBE: NodeId = NodeId {
        role: Role::Client,
        id: 0,
    };

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

/// A node name that is not `<role><id>` (as `acceptor1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeNameError(pub String);

impl fmt::Display for NodeNameError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{:?} is not a node name such as acceptor1, proposer2, learner1 or client1",
            self.0
        )
    }
}

impl std::error::Error for NodeNameError {}

impl std::str::FromStr for NodeId {
    type Err = NodeNameError;

    /// Parses the names [`NodeId`]'s `Display` writes: `acceptor1`, `client2`, ...
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let error = || NodeNameError(name.to_string());
        let digits = name
            .find(|character: char| character.is_ascii_digit())
            .ok_or_else(error)?;
        let role = match &name[..digits] {
            "acceptor" => Role::Acceptor,
            "proposer" => Role::Proposer,
            "learner" => Role::Learner,
            "client" => Role::Client,
            _ => return Err(error()),
        };
        let id = name[digits..].parse().map_err(|_| error())?;
        Ok(NodeId { role, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_parse_back_to_their_node() {
        for node in [
            NodeId::acceptor(1),
            NodeId::proposer(12),
            NodeId::learner(2),
            NodeId::client(3),
        ] {
            assert_eq!(node.to_string().parse::<NodeId>(), Ok(node));
        }
        for bad in ["acceptor", "1", "leader1", "acceptor1x", ""] {
            assert!(bad.parse::<NodeId>().is_err(), "{bad}");
        }
    }
}
