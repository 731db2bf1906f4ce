//! Mutual TLS between nodes: who a peer is, proven by its certificate.
//!
//! Every node (the client API included) holds a certificate signed by the cluster's CA
//! whose subject alternative names say which node it is: the URI `paxos://<role>/<id>`
//! (as `paxos://acceptor/2`), which is the identity, and the DNS name `<role>-<id>.paxos`.
//! Both ends of a connection present their certificate and verify the other's against the
//! CA; the receiver then takes the peer's [`NodeId`] from the verified certificate, never
//! from what the peer says in `Hello`. A certificate without exactly one `paxos://` URI,
//! or signed by another CA, ends the handshake.
//!
//! Configuration is by environment, like the rest ([`Security::from_lookup`]):
//! `TLS_CA_FILE`, `TLS_CERT_FILE` and `TLS_KEY_FILE` (PEM). A node without them refuses to
//! start unless `PAXOS_INSECURE=true`, which runs plaintext: then `Hello` is believed, so
//! anyone who reaches a port can act as any node (docs/SECURITY.md).

use crate::config::{ConfigError, Lookup};
use anyhow::Context;
use common::node::{NodeId, Role};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The variable naming the cluster CA's certificate (PEM).
pub const CA_FILE_VARIABLE: &str = "TLS_CA_FILE";
/// The variable naming this node's certificate chain (PEM).
pub const CERT_FILE_VARIABLE: &str = "TLS_CERT_FILE";
/// The variable naming this node's private key (PEM, PKCS#8).
pub const KEY_FILE_VARIABLE: &str = "TLS_KEY_FILE";
/// The variable that, set to `true`, runs the node plane in plaintext.
pub const INSECURE_VARIABLE: &str = "PAXOS_INSECURE";

/// The scheme of the URI subject alternative name that carries a node's identity.
const IDENTITY_URI_PREFIX: &str = "paxos://";

/// How a node secures its connections to the other nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Security {
    /// Mutual TLS with the certificates in these files.
    Tls(TlsFiles),
    /// Plaintext, and every peer is who its `Hello` says (`PAXOS_INSECURE=true`).
    Insecure,
}

/// Where a node's TLS material lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// TLS_CA_FILE: the cluster CA, the only issuer a peer's certificate may have.
    pub ca_file: PathBuf,
    /// TLS_CERT_FILE: this node's certificate, then any intermediates.
    pub cert_file: PathBuf,
    /// TLS_KEY_FILE: this node's private key.
    pub key_file: PathBuf,
}

impl Security {
    /// Reads `TLS_CA_FILE`, `TLS_CERT_FILE`, `TLS_KEY_FILE` and `PAXOS_INSECURE`. All three
    /// files, or insecure mode, or an error naming what is missing.
    pub fn from_lookup(lookup: &dyn Lookup) -> Result<Security, ConfigError> {
        let set = |name: &str| lookup.get(name).filter(|value| !value.trim().is_empty());
        let insecure = match set(INSECURE_VARIABLE).map(|value| value.trim().to_lowercase()) {
            None => false,
            Some(value) if matches!(value.as_str(), "true" | "1" | "yes") => true,
            Some(value) if matches!(value.as_str(), "false" | "0" | "no") => false,
            Some(value) => {
                return Err(ConfigError {
                    variable: INSECURE_VARIABLE,
                    problem: format!("{value:?} is not true or false"),
                })
            }
        };
        let files = [CA_FILE_VARIABLE, CERT_FILE_VARIABLE, KEY_FILE_VARIABLE].map(set);
        match files {
            [Some(ca), Some(cert), Some(key)] => Ok(Security::Tls(TlsFiles {
                ca_file: PathBuf::from(ca.trim()),
                cert_file: PathBuf::from(cert.trim()),
                key_file: PathBuf::from(key.trim()),
            })),
            [None, None, None] if insecure => Ok(Security::Insecure),
            _ => {
                let missing = [CA_FILE_VARIABLE, CERT_FILE_VARIABLE, KEY_FILE_VARIABLE]
                    .into_iter()
                    .zip(&files)
                    .find(|(_, value)| value.is_none())
                    .map_or(CA_FILE_VARIABLE, |(name, _)| name);
                Err(ConfigError {
                    variable: missing,
                    problem: format!(
                        "is not set: nodes talk over mutual TLS and need {CA_FILE_VARIABLE}, \
                         {CERT_FILE_VARIABLE} and {KEY_FILE_VARIABLE} (PEM files, as `paxos \
                         certs` writes them); or set {INSECURE_VARIABLE}=true to run in \
                         plaintext, trusting every peer"
                    ),
                })
            }
        }
    }

    /// Whether this runs without TLS.
    pub fn is_insecure(&self) -> bool {
        matches!(self, Security::Insecure)
    }
}

/// The URI subject alternative name naming `node`: `paxos://acceptor/2`.
pub fn identity_uri(node: NodeId) -> String {
    format!("{IDENTITY_URI_PREFIX}{}/{}", node.role.name(), node.id)
}

/// The DNS subject alternative name of `node`: `acceptor-2.paxos`.
pub fn identity_dns_name(node: NodeId) -> String {
    format!("{}-{}.paxos", node.role.name(), node.id)
}

/// Why a certificate names no node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityError(pub String);

impl fmt::Display for IdentityError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for IdentityError {}

/// The node a certificate names: its one `paxos://<role>/<id>` URI. Says nothing about
/// whether the certificate is genuine; call it on verified certificates only.
pub fn node_identity(certificate: &CertificateDer<'_>) -> Result<NodeId, IdentityError> {
    let parsed = webpki::EndEntityCert::try_from(certificate)
        .map_err(|error| IdentityError(format!("unreadable certificate: {error}")))?;
    let mut identities = parsed
        .valid_uri_names()
        .filter(|uri| uri.starts_with(IDENTITY_URI_PREFIX));
    let uri = identities
        .next()
        .ok_or_else(|| IdentityError("the certificate names no paxos:// node".into()))?;
    if identities.next().is_some() {
        return Err(IdentityError(
            "the certificate names more than one paxos:// node".into(),
        ));
    }
    parse_identity_uri(uri)
}

fn parse_identity_uri(uri: &str) -> Result<NodeId, IdentityError> {
    let error = || IdentityError(format!("{uri:?} is not paxos://<role>/<id>"));
    let path = uri.strip_prefix(IDENTITY_URI_PREFIX).ok_or_else(error)?;
    let (role, id) = path.split_once('/').ok_or_else(error)?;
    let role = match role {
        "acceptor" => Role::Acceptor,
        "proposer" => Role::Proposer,
        "learner" => Role::Learner,
        "client" => Role::Client,
        _ => return Err(error()),
    };
    // Digits only: `u32::from_str` would also take "+2".
    if id.is_empty() || !id.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(error());
    }
    let id: u32 = id.parse().map_err(|_| error())?;
    if id == 0 {
        return Err(error());
    }
    Ok(NodeId { role, id })
}

/// A node's loaded TLS configuration, for both ends of a connection.
pub struct NodeTls {
    /// For connections this node opens.
    pub client: Arc<rustls::ClientConfig>,
    /// For connections this node accepts.
    pub server: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for NodeTls {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("NodeTls")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl NodeTls {
    /// Loads the files of `files` for node `me`: refuses a certificate that does not name
    /// `me`, so that a node started with another node's certificate stops at once.
    pub fn load(files: &TlsFiles, me: NodeId) -> anyhow::Result<NodeTls> {
        let ca = read_certificates(&files.ca_file, CA_FILE_VARIABLE)?;
        let chain = read_certificates(&files.cert_file, CERT_FILE_VARIABLE)?;
        let key = PrivateKeyDer::from_pem_file(&files.key_file).with_context(|| {
            format!(
                "{KEY_FILE_VARIABLE}={}: no private key in PEM",
                files.key_file.display()
            )
        })?;
        let named = node_identity(&chain[0])
            .with_context(|| format!("{CERT_FILE_VARIABLE}={}", files.cert_file.display()))?;
        if named != me {
            anyhow::bail!(
                "{CERT_FILE_VARIABLE}={} is the certificate of {named}, not of {me}",
                files.cert_file.display()
            );
        }
        NodeTls::new(ca, chain, key)
    }

    /// A configuration from certificates in memory: trust `ca`, present `chain` with `key`.
    pub fn new(
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> anyhow::Result<NodeTls> {
        let mut roots = RootCertStore::empty();
        for certificate in ca {
            roots
                .add(certificate)
                .context("the CA certificate is not a usable trust anchor")?;
        }
        let roots = Arc::new(roots);
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
                .build()
                .context("building the verifier of peers' certificates")?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS 1.3")?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .context("the node's certificate and key do not match")?;
        // Connections live for hours and reconnect cheaply: no tickets, no resumption
        // state to keep.
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        let server_verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .context("building the verifier of servers' certificates")?;
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS 1.3")?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NodeServerVerifier {
                inner: server_verifier,
            }))
            .with_client_auth_cert(chain, key)
            .context("the node's certificate and key do not match")?;
        client.resumption = rustls::client::Resumption::disabled();
        Ok(NodeTls {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }
}

fn read_certificates(path: &Path, variable: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{variable}={}: cannot read", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{variable}={}: not PEM certificates", path.display()))?;
    if certificates.is_empty() {
        anyhow::bail!("{variable}={}: holds no certificate", path.display());
    }
    Ok(certificates)
}

/// Verifies a server's certificate against the CA for the node the certificate itself
/// names: a node dials addresses, not identities, and learns who answered from the
/// verified certificate (the network then routes by that identity).
#[derive(Debug)]
struct NodeServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for NodeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let node = node_identity(end_entity).map_err(|error| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(error),
            )))
        })?;
        let name = ServerName::try_from(identity_dns_name(node))
            .map_err(|_| rustls::Error::General("unrepresentable node name".into()))?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The name a node dials with; unused by [`NodeServerVerifier`], which checks the name
/// the certificate claims instead.
pub fn dial_name() -> ServerName<'static> {
    ServerName::try_from("node.paxos").expect("a valid DNS name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uris_parse_back_to_their_node_and_nothing_else() {
        for node in [
            NodeId::acceptor(2),
            NodeId::proposer(1),
            NodeId::learner(17),
            NodeId::client(1),
        ] {
            assert_eq!(parse_identity_uri(&identity_uri(node)), Ok(node));
        }
        for bad in [
            "paxos://acceptor/0",
            "paxos://acceptor/",
            "paxos://acceptor/+2",
            "paxos://leader/1",
            "paxos://acceptor/1/2",
            "paxos://acceptor",
            "http://acceptor/1",
            "paxos://acceptor/99999999999",
        ] {
            assert!(parse_identity_uri(bad).is_err(), "{bad}");
        }
    }

    /// Runs a handshake between `client` and `server` in memory; the error, if any.
    fn handshake(client: &NodeTls, server: &NodeTls) -> Result<NodeId, rustls::Error> {
        let mut client =
            rustls::ClientConnection::new(Arc::clone(&client.client), dial_name()).unwrap();
        let mut server = rustls::ServerConnection::new(Arc::clone(&server.server)).unwrap();
        for _ in 0..10 {
            let mut bytes = Vec::new();
            client.write_tls(&mut bytes).unwrap();
            server.read_tls(&mut bytes.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut bytes = Vec::new();
            server.write_tls(&mut bytes).unwrap();
            client.read_tls(&mut bytes.as_slice()).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                let peer = server.peer_certificates().expect("a client certificate");
                return Ok(node_identity(&peer[0]).unwrap());
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn a_bundle_of_two_cas_trusts_nodes_of_either_during_a_ca_rotation() {
        use crate::certificates::CertificateAuthority;
        let pem = |text: &str| CertificateDer::from_pem_slice(text.as_bytes()).unwrap();
        let (old, _) = CertificateAuthority::generate("old CA").unwrap();
        let (new, _) = CertificateAuthority::generate("new CA").unwrap();
        let node = |authority: &CertificateAuthority, node: NodeId, trusted: &[&str]| {
            let issued = authority.issue(node, &[]).unwrap();
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
            let ca = trusted.iter().map(|text| pem(text)).collect();
            NodeTls::new(ca, vec![pem(&issued.certificate_pem)], key).unwrap()
        };
        let bundle = [old.certificate_pem(), new.certificate_pem()];
        let moved = node(&new, NodeId::proposer(1), &bundle);
        let not_yet = node(&old, NodeId::acceptor(1), &bundle);
        let old_only = node(&old, NodeId::acceptor(2), &[old.certificate_pem()]);
        assert_eq!(handshake(&moved, &not_yet), Ok(NodeId::proposer(1)));
        assert_eq!(handshake(&not_yet, &moved), Ok(NodeId::acceptor(1)));
        // Without the bundle (step 2 of the rotation skipped) the new certificate is refused.
        assert!(handshake(&moved, &old_only).is_err());
        assert!(handshake(&old_only, &moved).is_err());
    }

    #[test]
    fn a_node_needs_all_three_files_or_insecure_mode() {
        let lookup = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            }
        };
        let error = Security::from_lookup(&lookup(&[])).unwrap_err();
        assert_eq!(error.variable, CA_FILE_VARIABLE);
        assert!(error.problem.contains("PAXOS_INSECURE=true"), "{error}");
        let error =
            Security::from_lookup(&lookup(&[("TLS_CA_FILE", "ca.pem"), ("TLS_KEY_FILE", "k")]))
                .unwrap_err();
        assert_eq!(error.variable, CERT_FILE_VARIABLE);
        assert_eq!(
            Security::from_lookup(&lookup(&[("PAXOS_INSECURE", "true")])),
            Ok(Security::Insecure)
        );
        assert!(Security::from_lookup(&lookup(&[("PAXOS_INSECURE", "maybe")])).is_err());
        assert_eq!(
            Security::from_lookup(&lookup(&[
                ("TLS_CA_FILE", "ca.pem"),
                ("TLS_CERT_FILE", "node.pem"),
                ("TLS_KEY_FILE", "node.key"),
                ("PAXOS_INSECURE", "true"),
            ])),
            Ok(Security::Tls(TlsFiles {
                ca_file: "ca.pem".into(),
                cert_file: "node.pem".into(),
                key_file: "node.key".into(),
            })),
            "files given win over insecure mode"
        );
    }
}
