//! `paxos certs`: the cluster's CA and one certificate per node, for mutual TLS between
//! nodes (see `runtime::tls` and docs/SECURITY.md).

use common::node::NodeId;
use runtime::certificates::{self, CA_CERT_FILE, CA_KEY_FILE};
use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `paxos certs`.
#[derive(clap::Args, Debug)]
pub struct CertsOptions {
    /// The directory to write into (created if missing). A CA already there (ca.pem and
    /// ca.key) is used, and nodes that have a certificate keep it unless --reissue.
    #[arg(long, default_value = "paxos-certs")]
    out: PathBuf,
    #[command(flatten)]
    counts: paxos::cluster::RoleCounts,
    /// Number of client APIs.
    #[arg(long, default_value_t = 1)]
    clients: u32,
    /// A DNS domain the nodes are reached in: each certificate also names
    /// `<node>.<domain>` (as acceptor1.paxos.svc.cluster.local). Repeatable.
    #[arg(long = "domain")]
    domains: Vec<String>,
    /// A further host name or IP address written into every certificate. Repeatable.
    #[arg(long = "name")]
    names: Vec<String>,
    /// Issue new certificates for every node, even those that have one (rotation).
    #[arg(long)]
    reissue: bool,
}

/// Writes the certificates and says what it did.
pub fn run(options: CertsOptions) -> ExitCode {
    let nodes = certificates::topology(
        options.counts.acceptors,
        options.counts.proposers,
        options.counts.learners,
        options.clients,
    );
    let names = |node: NodeId| certificates::node_names(node, &options.domains, &options.names);
    match certificates::write_directory(&options.out, &nodes, &names, options.reissue) {
        Ok(written) => {
            let directory = options.out.display();
            if written.without_ca_key {
                println!("no CA key in {directory} (kept elsewhere): every node has its certificate, nothing to issue");
            } else if written.created_ca {
                println!("created a CA: {directory}/{CA_CERT_FILE} (its key {directory}/{CA_KEY_FILE} signs node certificates: keep it off the nodes)");
            } else {
                println!("used the CA in {directory}/{CA_CERT_FILE}");
            }
            for node in &written.issued {
                println!("issued {directory}/{node}.pem and {node}.key");
            }
            if !written.kept.is_empty() {
                let kept: Vec<String> = written.kept.iter().map(ToString::to_string).collect();
                println!(
                    "kept the certificates of {} (--reissue to replace them)",
                    kept.join(", ")
                );
            }
            println!(
                "each node needs TLS_CA_FILE={directory}/{CA_CERT_FILE}, TLS_CERT_FILE={directory}/<node>.pem, TLS_KEY_FILE={directory}/<node>.key"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("paxos certs: {error:#}");
            ExitCode::FAILURE
        }
    }
}
