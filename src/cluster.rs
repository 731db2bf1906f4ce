//! The layout of a cluster on one machine: which nodes exist, their ports, data
//! directories and environment variables. `paxos up` starts it; tests start it too, node by
//! node, so that they can kill and restart any one of them.

use common::node::{NodeId, Role};
use runtime::certificates;
use runtime::tls;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// How many nodes of each replicated role: the options `paxos up` and `paxos certs` share.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct RoleCounts {
    /// Number of acceptors.
    #[arg(long, default_value_t = 3)]
    pub acceptors: u32,
    /// Number of proposers.
    #[arg(long, default_value_t = 2)]
    pub proposers: u32,
    /// Number of learners.
    #[arg(long, default_value_t = 2)]
    pub learners: u32,
}

/// The shape of the cluster.
#[derive(Clone, Debug)]
pub struct Layout {
    /// How many acceptors (the design's default: 3).
    pub acceptors: u32,
    /// How many proposers (default 2).
    pub proposers: u32,
    /// How many learners (default 2).
    pub learners: u32,
    /// Acceptors listen on base_port+1.., proposers on base_port+101.., learners on
    /// base_port+201...
    pub base_port: u16,
    /// The client API's port (default 8000).
    pub client_port: u16,
    /// Each node keeps its data in a subdirectory of this one.
    pub data_dir: PathBuf,
    /// HEARTBEAT_INTERVAL in milliseconds.
    pub heartbeat_interval_milliseconds: u64,
    /// LEADER_TIMEOUT in milliseconds.
    pub leader_timeout_milliseconds: u64,
    /// Mutual TLS between the nodes, with certificates in [`Layout::certificates_dir`]
    /// (default); false runs the node plane in plaintext (PAXOS_INSECURE=true).
    pub tls: bool,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            acceptors: 3,
            proposers: 2,
            learners: 2,
            base_port: 7000,
            client_port: 8000,
            data_dir: PathBuf::from("paxos-data"),
            heartbeat_interval_milliseconds: 100,
            leader_timeout_milliseconds: 1000,
            tls: true,
        }
    }
}

/// One node of the layout.
#[derive(Clone, Debug)]
pub struct NodePlan {
    /// "acceptor1", "client1", ...
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its id within the role.
    pub id: u32,
    /// The port it listens on.
    pub port: u16,
    /// The environment variables that configure it.
    pub environment: Vec<(String, String)>,
}

impl NodePlan {
    /// `host:port` of the node.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The command that runs this node from the `paxos` executable at `program`.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .arg(self.role.name())
            // One machine has one ADMIN_PORT: inherited by every node, all but one would
            // fail to bind it.
            .env_remove("ADMIN_PORT")
            .envs(self.environment.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null());
        command
    }

    /// Starts the node.
    pub fn spawn(&self, program: &Path) -> std::io::Result<Child> {
        self.command(program).spawn()
    }
}

fn hosts(base_port: u16, offset: u16, count: u32) -> String {
    (1..=count)
        .map(|id| format!("127.0.0.1:{}", base_port + offset + id as u16))
        .collect::<Vec<_>>()
        .join(",")
}

impl Layout {
    /// Where the cluster's CA and node certificates live: `certs/` in the data directory.
    pub fn certificates_dir(&self) -> PathBuf {
        self.data_dir.join("certs")
    }

    /// Every node of the layout.
    pub fn node_ids(&self) -> Vec<NodeId> {
        certificates::topology(self.acceptors, self.proposers, self.learners, 1)
    }

    /// Makes sure every node has a certificate (creating the CA on first use); does
    /// nothing in plaintext. Existing certificates are kept.
    pub fn ensure_certificates(&self) -> anyhow::Result<()> {
        if !self.tls {
            return Ok(());
        }
        let names = |node: NodeId| certificates::node_names(node, &[], &[]);
        certificates::write_directory(&self.certificates_dir(), &self.node_ids(), &names, false)?;
        Ok(())
    }

    /// The variables that secure `node`'s connections.
    fn security_environment(&self, name: &str) -> Vec<(String, String)> {
        if !self.tls {
            return vec![(tls::INSECURE_VARIABLE.into(), "true".into())];
        }
        let directory = self.certificates_dir();
        let file = |file: String| directory.join(file).display().to_string();
        vec![
            (
                tls::CA_FILE_VARIABLE.into(),
                file(certificates::CA_CERT_FILE.into()),
            ),
            (tls::CERT_FILE_VARIABLE.into(), file(format!("{name}.pem"))),
            (tls::KEY_FILE_VARIABLE.into(), file(format!("{name}.key"))),
        ]
    }

    /// Every node, acceptors first, client API last.
    pub fn nodes(&self) -> Vec<NodePlan> {
        let acceptor_hosts = hosts(self.base_port, 0, self.acceptors);
        let proposer_hosts = hosts(self.base_port, 100, self.proposers);
        let learner_hosts = hosts(self.base_port, 200, self.learners);
        let data_dir = |name: &str| self.data_dir.join(name).display().to_string();
        let mut nodes = Vec::new();
        let mut add = |role: Role, id: u32, port: u16, pairs: Vec<(&str, String)>| {
            let name = format!("{}{id}", role.name());
            let mut environment: Vec<(String, String)> = pairs
                .into_iter()
                .map(|(key, value)| (key.to_string(), value))
                .collect();
            environment.push(("BIND_ADDRESS".into(), "127.0.0.1".into()));
            environment.extend(self.security_environment(&name));
            // The client API keeps its subscriptions there.
            environment.push(("DATA_DIR".into(), data_dir(&name)));
            nodes.push(NodePlan {
                name,
                role,
                id,
                port,
                environment,
            });
        };
        for id in 1..=self.acceptors {
            let port = self.base_port + id as u16;
            add(
                Role::Acceptor,
                id,
                port,
                vec![
                    ("ACCEPTOR_ID", id.to_string()),
                    ("ACCEPTOR_PORT", port.to_string()),
                    ("TOTAL_ACCEPTORS", self.acceptors.to_string()),
                ],
            );
        }
        for id in 1..=self.proposers {
            let port = self.base_port + 100 + id as u16;
            add(
                Role::Proposer,
                id,
                port,
                vec![
                    ("PROPOSER_ID", id.to_string()),
                    ("PROPOSER_PORT", port.to_string()),
                    ("ACCEPTOR_HOSTS", acceptor_hosts.clone()),
                    ("LEARNER_HOSTS", learner_hosts.clone()),
                    ("PROPOSER_HOSTS", proposer_hosts.clone()),
                    (
                        "HEARTBEAT_INTERVAL",
                        self.heartbeat_interval_milliseconds.to_string(),
                    ),
                    (
                        "LEADER_TIMEOUT",
                        self.leader_timeout_milliseconds.to_string(),
                    ),
                ],
            );
        }
        for id in 1..=self.learners {
            let port = self.base_port + 200 + id as u16;
            add(
                Role::Learner,
                id,
                port,
                vec![
                    ("LEARNER_ID", id.to_string()),
                    ("LEARNER_PORT", port.to_string()),
                    ("ACCEPTOR_HOSTS", acceptor_hosts.clone()),
                    ("PROPOSER_HOSTS", proposer_hosts.clone()),
                    ("LEARNER_HOSTS", learner_hosts.clone()),
                    ("TOTAL_ACCEPTORS", self.acceptors.to_string()),
                    ("QUORUM_SIZE", (self.acceptors / 2 + 1).to_string()),
                ],
            );
        }
        add(
            Role::Client,
            1,
            self.client_port,
            vec![
                ("CLIENT_ID", "1".to_string()),
                ("CLIENT_PORT", self.client_port.to_string()),
                ("PROPOSER_HOSTS", proposer_hosts),
                ("LEARNER_HOSTS", learner_hosts),
            ],
        );
        nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_layout_is_the_designs_topology() {
        let nodes = Layout::default().nodes();
        let names: Vec<&str> = nodes.iter().map(|node| node.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "acceptor1",
                "acceptor2",
                "acceptor3",
                "proposer1",
                "proposer2",
                "learner1",
                "learner2",
                "client1"
            ]
        );
        assert_eq!(nodes.last().unwrap().port, 8000);
    }
}
