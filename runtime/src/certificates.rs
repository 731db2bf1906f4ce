//! Issuing the cluster's certificates: one CA, and one certificate per node naming it as
//! [`crate::tls`] expects (URI `paxos://<role>/<id>`, DNS `<role>-<id>.paxos`, plus any
//! host names the node is reached by). `paxos certs` and `paxos up` write them; tests
//! issue them in memory.

use crate::tls::{identity_dns_name, identity_uri};
use anyhow::Context;
use common::node::{NodeId, Role};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// How long a CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long a node's certificate is valid (rotate before: docs/SECURITY.md).
pub const NODE_VALIDITY_DAYS: i64 = 825;

/// The CA's certificate and key file names in a certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA's private key: keep it off the nodes (only `paxos certs` needs it).
pub const CA_KEY_FILE: &str = "ca.key";

/// A cluster CA that can issue node certificates.
pub struct CertificateAuthority {
    certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A node's certificate and private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct NodeCertificate {
    /// The node it names.
    pub node: NodeId,
    /// The certificate.
    pub certificate_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

fn now_minus_an_hour() -> OffsetDateTime {
    // A peer whose clock is a little behind must not see a certificate from the future.
    OffsetDateTime::now_utc() - Duration::hours(1)
}

impl CertificateAuthority {
    /// A new CA named `name` (its subject's common name), with a fresh key.
    pub fn generate(name: &str) -> anyhow::Result<(CertificateAuthority, String)> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let key_pem = key.serialize_pem();
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now_minus_an_hour();
        params.not_after = OffsetDateTime::now_utc() + Duration::days(CA_VALIDITY_DAYS);
        let certificate = params.self_signed(&key).context("self-signing the CA")?;
        Ok((
            CertificateAuthority {
                certificate_pem: certificate.pem(),
                issuer: Issuer::new(params, key),
            },
            key_pem,
        ))
    }

    /// The CA of an existing certificate and key.
    pub fn load(certificate_pem: &str, key_pem: &str) -> anyhow::Result<CertificateAuthority> {
        let key = KeyPair::from_pem(key_pem).context("the CA key is not a PEM private key")?;
        let issuer = Issuer::from_ca_cert_pem(certificate_pem, key)
            .context("the CA certificate is not a PEM certificate")?;
        Ok(CertificateAuthority {
            certificate_pem: certificate_pem.to_string(),
            issuer,
        })
    }

    /// The CA's certificate, which every node trusts.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// A certificate for `node`, valid for server and client use, also naming
    /// `extra_names` (host names or IP addresses the node is reached by).
    pub fn issue(&self, node: NodeId, extra_names: &[String]) -> anyhow::Result<NodeCertificate> {
        let key = KeyPair::generate().context("generating a node key")?;
        let mut params = CertificateParams::new(vec![identity_dns_name(node)])?;
        params.subject_alt_names.push(SanType::URI(
            identity_uri(node)
                .try_into()
                .context("the identity URI is ASCII")?,
        ));
        for name in extra_names {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            params.subject_alt_names.push(match name.parse() {
                Ok(address) => SanType::IpAddress(address),
                Err(_) => SanType::DnsName(
                    name.try_into()
                        .with_context(|| format!("{name:?} is not a DNS name"))?,
                ),
            });
        }
        params
            .distinguished_name
            .push(DnType::CommonName, node.to_string());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now_minus_an_hour();
        params.not_after = OffsetDateTime::now_utc() + Duration::days(NODE_VALIDITY_DAYS);
        let certificate = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("signing the certificate of {node}"))?;
        Ok(NodeCertificate {
            node,
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The nodes of a topology: acceptors, proposers, learners and client APIs, numbered from 1.
pub fn topology(acceptors: u32, proposers: u32, learners: u32, clients: u32) -> Vec<NodeId> {
    let role = |role: Role, count: u32| (1..=count).map(move |id| NodeId { role, id });
    role(Role::Acceptor, acceptors)
        .chain(role(Role::Proposer, proposers))
        .chain(role(Role::Learner, learners))
        .chain(role(Role::Client, clients))
        .collect()
}

/// The names a node's certificate carries besides its identity: its node name (the host
/// name docker compose gives it), localhost, 127.0.0.1, `<node>.<domain>` per domain, and
/// `names`.
pub fn node_names(node: NodeId, domains: &[String], names: &[String]) -> Vec<String> {
    let mut all = vec![node.to_string(), "localhost".into(), "127.0.0.1".into()];
    all.extend(
        domains
            .iter()
            .map(|domain| format!("{node}.{}", domain.trim_matches('.'))),
    );
    all.extend(names.iter().cloned());
    all
}

/// The files of one node in a certificate directory: `<node>.pem` and `<node>.key`.
pub fn node_files(directory: &Path, node: NodeId) -> (PathBuf, PathBuf) {
    (
        directory.join(format!("{node}.pem")),
        directory.join(format!("{node}.key")),
    )
}

/// What [`write_directory`] did.
#[derive(Debug, Default)]
pub struct Written {
    /// Whether the CA was created (false: an existing one was used).
    pub created_ca: bool,
    /// The nodes whose certificate was written.
    pub issued: Vec<NodeId>,
    /// The nodes whose certificate existed already and was kept.
    pub kept: Vec<NodeId>,
    /// Whether the directory holds the CA's certificate but not its key (taken off the
    /// machine on purpose, docs/SECURITY.md): nothing could be issued, and nothing was due.
    pub without_ca_key: bool,
}

/// Writes into `directory` a CA (unless `ca.pem` and `ca.key` exist there, which are then
/// used) and a certificate for each of `nodes` that has none yet (all of them when
/// `reissue`). `names_of` gives the extra names of each node. Keys are written with mode
/// 0600.
///
/// A directory with `ca.pem` but no `ca.key` is one whose CA key was moved off the machine:
/// it succeeds, writing nothing, if every node has its certificate (and not `reissue`), and
/// fails otherwise. It never makes a new CA over an existing `ca.pem`: that would replace
/// the trust of every node, which still trusts the old one, and split the cluster.
pub fn write_directory(
    directory: &Path,
    nodes: &[NodeId],
    names_of: &dyn Fn(NodeId) -> Vec<String>,
    reissue: bool,
) -> anyhow::Result<Written> {
    std::fs::create_dir_all(directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let ca_cert = directory.join(CA_CERT_FILE);
    let ca_key = directory.join(CA_KEY_FILE);
    let mut written = Written::default();
    let has_certificate = |node: NodeId| {
        let (cert_file, key_file) = node_files(directory, node);
        cert_file.exists() && key_file.exists()
    };
    if ca_cert.exists() && !ca_key.exists() {
        let due: Vec<String> = nodes
            .iter()
            .filter(|&&node| reissue || !has_certificate(node))
            .map(ToString::to_string)
            .collect();
        if !due.is_empty() {
            anyhow::bail!(
                "{} holds {CA_CERT_FILE} but not its key {CA_KEY_FILE}, which issuing \
                 certificates for {} needs: put the CA key back for this run (or remove \
                 {CA_CERT_FILE} to start a new CA, which every node must then be given)",
                directory.display(),
                due.join(", ")
            );
        }
        written.kept = nodes.to_vec();
        written.without_ca_key = true;
        return Ok(written);
    }
    let authority = if ca_cert.exists() && ca_key.exists() {
        let read = |path: &Path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        CertificateAuthority::load(&read(&ca_cert)?, &read(&ca_key)?)
            .with_context(|| format!("the CA in {}", directory.display()))?
    } else {
        let (authority, key_pem) = CertificateAuthority::generate("paxos cluster CA")?;
        write_file(&ca_key, &key_pem, true)?;
        write_file(&ca_cert, authority.certificate_pem(), false)?;
        written.created_ca = true;
        authority
    };
    for &node in nodes {
        let (cert_file, key_file) = node_files(directory, node);
        if !reissue && !written.created_ca && has_certificate(node) {
            written.kept.push(node);
            continue;
        }
        let issued = authority.issue(node, &names_of(node))?;
        write_file(&key_file, &issued.key_pem, true)?;
        write_file(&cert_file, &issued.certificate_pem, false)?;
        written.issued.push(node);
    }
    Ok(written)
}

/// Writes `contents` to `path` through a temporary file and a rename, so that a node never
/// reads half a certificate; keys are readable by their owner only.
fn write_file(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(&temporary)
        .with_context(|| format!("writing {}", temporary.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::node_identity;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn an_issued_certificate_names_its_node_and_verifies_against_its_ca() {
        let (authority, _) = CertificateAuthority::generate("test CA").unwrap();
        let issued = authority
            .issue(NodeId::learner(2), &["learner2".into(), "127.0.0.1".into()])
            .unwrap();
        let der = CertificateDer::from_pem_slice(issued.certificate_pem.as_bytes()).unwrap();
        assert_eq!(node_identity(&der).unwrap(), NodeId::learner(2));
        let ca = CertificateDer::from_pem_slice(authority.certificate_pem().as_bytes()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes());
        crate::tls::NodeTls::new(vec![ca], vec![der], key.unwrap()).unwrap();
    }

    #[test]
    fn a_directory_keeps_its_ca_and_issues_only_missing_certificates() {
        let directory = tempfile::tempdir().unwrap();
        let names = |node: NodeId| vec![node.to_string()];
        let first =
            write_directory(directory.path(), &topology(1, 1, 0, 0), &names, false).unwrap();
        assert!(first.created_ca);
        assert_eq!(first.issued.len(), 2);
        let ca_before = std::fs::read(directory.path().join(CA_CERT_FILE)).unwrap();
        let second =
            write_directory(directory.path(), &topology(2, 1, 0, 0), &names, false).unwrap();
        assert!(!second.created_ca);
        assert_eq!(second.issued, vec![NodeId::acceptor(2)]);
        assert_eq!(second.kept.len(), 2);
        assert_eq!(
            std::fs::read(directory.path().join(CA_CERT_FILE)).unwrap(),
            ca_before
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let (_, key) = node_files(directory.path(), NodeId::acceptor(2));
            let mode = std::fs::metadata(key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_directory_without_its_ca_key_issues_nothing_and_never_makes_a_new_ca() {
        let directory = tempfile::tempdir().unwrap();
        let names = |node: NodeId| vec![node.to_string()];
        write_directory(directory.path(), &topology(1, 1, 0, 0), &names, false).unwrap();
        std::fs::remove_file(directory.path().join(CA_KEY_FILE)).unwrap();
        let ca_before = std::fs::read(directory.path().join(CA_CERT_FILE)).unwrap();
        let kept = write_directory(directory.path(), &topology(1, 1, 0, 0), &names, false).unwrap();
        assert!(kept.without_ca_key && kept.issued.is_empty() && kept.kept.len() == 2);
        let error = write_directory(directory.path(), &topology(2, 1, 0, 0), &names, false)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("acceptor2") && error.contains(CA_KEY_FILE),
            "{error}"
        );
        assert!(write_directory(directory.path(), &topology(1, 1, 0, 0), &names, true).is_err());
        assert_eq!(
            std::fs::read(directory.path().join(CA_CERT_FILE)).unwrap(),
            ca_before
        );
        assert!(!directory.path().join(CA_KEY_FILE).exists());
    }
}
