//! The identity of an acceptor's data directory, so that amnesia is detected, not served.
//!
//! An acceptor that lost its log (a volume swapped, a file deleted or truncated to nothing)
//! looks like a fresh one, and a fresh acceptor may promise and vote anything: it could
//! break promises it no longer remembers and let two values be chosen for one slot. So the
//! data directory holds, beside the log, a small record of whose memory it is:
//!
//! - the cluster id (`CLUSTER_ID`) and the acceptor id (`ACCEPTOR_ID`): a directory of
//!   another cluster or another acceptor (a volume mounted on the wrong node) is refused;
//! - the incarnation, a random 128-bit number drawn at the first start and at each reset;
//! - `has_voted`: whether this incarnation may have answered a promise or a vote. It is made
//!   durable once per incarnation, after the first records reach the log and before their
//!   answers leave, so a log found empty under `has_voted` is a lost memory (amnesia) and
//!   the acceptor refuses to vote until an operator resets it ([`reset`]).
//!
//! The record is a few lines of text ending in a CRC-32 (see [`Identity::encode`]), replaced
//! atomically (temporary file, fsync, rename, directory fsync). [`assess`] is the decision
//! on start, a plain function of what was found; the rest is its I/O.

use runtime::file_system::{create_dir_all_durably, FileSystem};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The identity's file name inside the data directory.
pub const IDENTITY_FILE_NAME: &str = "acceptor.identity";

/// The first line of the file: what it is, and the version of its format.
const FORMAT_LINE: &str = "paxos acceptor identity 1";

/// Whose memory a data directory is, and whether that memory may have been revealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster (`CLUSTER_ID`).
    pub cluster_id: String,
    /// The acceptor (`ACCEPTOR_ID`).
    pub acceptor_id: u32,
    /// Random, new at the first start and at each reset: tells one life of the data
    /// directory from the next in logs and reports.
    pub incarnation: u128,
    /// Whether a promise or a vote of this incarnation may have been answered (its
    /// records were synced to the log). The log of such an acceptor is never empty.
    pub has_voted: bool,
}

impl Identity {
    /// A new incarnation that has not voted.
    pub fn new(cluster_id: &str, acceptor_id: u32, incarnation: u128) -> Self {
        Identity {
            cluster_id: cluster_id.to_string(),
            acceptor_id,
            incarnation,
            has_voted: false,
        }
    }

    /// The file's content: one `key=value` line per field after the format line, then
    /// `checksum=<crc32 of every byte before this line, 8 hex digits>`.
    pub fn encode(&self) -> Vec<u8> {
        assert!(
            !self.cluster_id.chars().any(char::is_control),
            "invariant violated: a cluster id is one line (the configuration refuses others)"
        );
        let body = format!(
            "{FORMAT_LINE}\ncluster_id={}\nacceptor_id={}\nincarnation={:032x}\nhas_voted={}\n",
            self.cluster_id, self.acceptor_id, self.incarnation, self.has_voted
        );
        let checksum = crc32fast::hash(body.as_bytes());
        format!("{body}checksum={checksum:08x}\n").into_bytes()
    }

    /// Reads what [`Identity::encode`] wrote; anything else (a failed checksum, a missing
    /// or extra line) is an error saying what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Identity, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let checksum_at = text
            .rfind("checksum=")
            .ok_or_else(|| "no checksum line".to_string())?;
        let (body, checksum_line) = text.split_at(checksum_at);
        let written = checksum_line
            .trim_end_matches('\n')
            .strip_prefix("checksum=")
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .ok_or_else(|| format!("unreadable checksum line {checksum_line:?}"))?;
        if crc32fast::hash(body.as_bytes()) != written {
            return Err("checksum mismatch".to_string());
        }
        let mut lines = body.lines();
        if lines.next() != Some(FORMAT_LINE) {
            return Err(format!("the first line is not {FORMAT_LINE:?}"));
        }
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|line| line.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| format!("no {name} line where expected"))
        };
        let cluster_id = field("cluster_id")?.to_string();
        let acceptor_id = field("acceptor_id")?;
        let incarnation = field("incarnation")?;
        let has_voted = field("has_voted")?;
        let identity = Identity {
            cluster_id,
            acceptor_id: acceptor_id
                .parse()
                .map_err(|_| format!("acceptor_id {acceptor_id:?} is not a number"))?,
            incarnation: u128::from_str_radix(incarnation, 16)
                .map_err(|_| format!("incarnation {incarnation:?} is not hexadecimal"))?,
            has_voted: has_voted
                .parse()
                .map_err(|_| format!("has_voted {has_voted:?} is not true or false"))?,
        };
        if lines.next().is_some() {
            return Err("extra lines before the checksum".to_string());
        }
        Ok(identity)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "acceptor {} of cluster {:?}",
            self.acceptor_id, self.cluster_id
        )
    }
}

/// A fresh incarnation: 128 random bits from the operating system's generator. The only
/// randomness of identities; everything else takes the incarnation as an input.
pub fn random_incarnation() -> u128 {
    rand::random()
}

/// Why an identity cannot be used.
#[derive(Debug)]
pub enum IdentityError {
    /// The file system failed.
    Io(io::Error),
    /// The file exists but is not a valid identity (checksum, format).
    Corrupt {
        /// The identity file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The directory belongs to another acceptor or another cluster.
    WrongOwner {
        /// The data directory.
        data_dir: PathBuf,
        /// The identity found there.
        found: Identity,
        /// The configured cluster id.
        cluster_id: String,
        /// The configured acceptor id.
        acceptor_id: u32,
    },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::Io(error) => write!(formatter, "identity I/O error: {error}"),
            IdentityError::Corrupt { path, reason } => write!(
                formatter,
                "identity {} is corrupt: {reason}; the acceptor cannot tell whose data \
                 directory this is and refuses to vote",
                path.display()
            ),
            IdentityError::WrongOwner {
                data_dir,
                found,
                cluster_id,
                acceptor_id,
            } => write!(
                formatter,
                "data directory {} belongs to {found} (incarnation {:032x}), but this is \
                 acceptor {acceptor_id} of cluster {cluster_id:?}: a volume mounted on the \
                 wrong node? Refusing to use it; mount the right volume or fix ACCEPTOR_ID \
                 and CLUSTER_ID",
                data_dir.display(),
                found.incarnation
            ),
        }
    }
}

impl std::error::Error for IdentityError {}

impl From<io::Error> for IdentityError {
    fn from(error: io::Error) -> Self {
        IdentityError::Io(error)
    }
}

/// Reads the identity of `data_dir`, if it has one.
pub fn read(
    file_system: &dyn FileSystem,
    data_dir: &Path,
) -> Result<Option<Identity>, IdentityError> {
    let path = data_dir.join(IDENTITY_FILE_NAME);
    if !file_system.exists(&path) {
        return Ok(None);
    }
    let bytes = file_system.open(&path)?.read_all()?;
    Identity::decode(&bytes)
        .map(Some)
        .map_err(|reason| IdentityError::Corrupt { path, reason })
}

/// Replaces the identity of `data_dir` with `identity`, atomically and durably: a
/// temporary file written and synced, renamed over the identity, the directory synced.
/// After a crash the directory holds the old identity or the new one, whole.
pub fn write(file_system: &dyn FileSystem, data_dir: &Path, identity: &Identity) -> io::Result<()> {
    create_dir_all_durably(file_system, data_dir)?;
    let path = data_dir.join(IDENTITY_FILE_NAME);
    let temporary = data_dir.join(format!("{IDENTITY_FILE_NAME}.new"));
    {
        let mut file = file_system.create(&temporary)?;
        file.write_at(0, &identity.encode())?;
        file.sync()?;
    }
    file_system.rename(&temporary, &path)?;
    file_system.sync_directory(data_dir)
}

/// The identity of an acceptor that votes, with the file it lives in, for the driver to
/// record `has_voted` once per incarnation.
pub struct IdentityFile {
    file_system: Arc<dyn FileSystem>,
    data_dir: PathBuf,
    identity: Identity,
}

impl IdentityFile {
    /// `identity`, already durable in `data_dir`.
    pub fn new(file_system: Arc<dyn FileSystem>, data_dir: &Path, identity: Identity) -> Self {
        IdentityFile {
            file_system,
            data_dir: data_dir.to_path_buf(),
            identity,
        }
    }

    /// The identity as it is on disk.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Makes `has_voted` durable unless it already is (one atomic rewrite of the file:
    /// a file fsync and a directory fsync, once per incarnation); returns whether it
    /// wrote. The driver calls it after the log is synced and before any answer leaves.
    pub fn record_voted(&mut self) -> io::Result<bool> {
        if self.identity.has_voted {
            return Ok(false);
        }
        let voted = Identity {
            has_voted: true,
            ..self.identity.clone()
        };
        write(self.file_system.as_ref(), &self.data_dir, &voted)?;
        self.identity = voted;
        Ok(true)
    }
}

/// Refuses an identity of another acceptor or another cluster.
pub fn check_owner(
    found: &Identity,
    data_dir: &Path,
    cluster_id: &str,
    acceptor_id: u32,
) -> Result<(), IdentityError> {
    if found.acceptor_id == acceptor_id && found.cluster_id == cluster_id {
        return Ok(());
    }
    Err(IdentityError::WrongOwner {
        data_dir: data_dir.to_path_buf(),
        found: found.clone(),
        cluster_id: cluster_id.to_string(),
        acceptor_id,
    })
}

/// What to do on start, given the identity found (of the right owner, see
/// [`check_owner`]) and how many records the log holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Startup {
    /// Neither an identity nor records: a new acceptor. Write a new incarnation that has
    /// not voted, then vote.
    Fresh,
    /// The identity agrees with the log: vote.
    Known,
    /// Records without an identity that says so: a data directory older than identities,
    /// or a crash after the first records were synced and before `has_voted` was (nothing
    /// was answered then). The log is the memory: record `has_voted` (in a new incarnation
    /// if there was no identity), then vote.
    RecordVoted,
    /// The identity says this acceptor voted, but the log holds nothing: its memory is
    /// lost. Refuse to vote, for this reason.
    Amnesia(String),
}

/// The decision on start (no I/O): see [`Startup`]. `log` names the log in the reason.
pub fn assess(found: Option<&Identity>, log_records: usize, log: &Path) -> Startup {
    match (found, log_records) {
        (None, 0) => Startup::Fresh,
        (None, _) => Startup::RecordVoted,
        (Some(identity), 0) if identity.has_voted => {
            Startup::Amnesia(amnesia_reason(identity, log))
        }
        (Some(_), 0) => Startup::Known,
        (Some(identity), _) if identity.has_voted => Startup::Known,
        (Some(_), _) => Startup::RecordVoted,
    }
}

/// The reason an acceptor with amnesia gives, in its status and its log.
pub fn amnesia_reason(identity: &Identity, log: &Path) -> String {
    format!(
        "amnesia: identity of incarnation {:032x} says this acceptor voted, but its log {} \
         holds no records (lost or truncated to nothing); it refuses to vote until reset \
         with `paxos acceptor --reset-identity`, safe only while a quorum of the other \
         acceptors is intact",
        identity.incarnation,
        log.display()
    )
}

/// What [`reset`] did.
#[derive(Debug)]
pub struct Reset {
    /// The identity replaced, if one was readable.
    pub previous: Option<Identity>,
    /// Where the old log went, if there was one.
    pub moved_log: Option<PathBuf>,
    /// The identity written.
    pub identity: Identity,
}

impl Reset {
    /// What the reset did and why it may be unsafe, for the operator who ran it.
    pub fn report(&self, data_dir: &Path) -> String {
        let previous = match &self.previous {
            Some(previous) => format!(
                "replaced incarnation {:032x} (has_voted={})",
                previous.incarnation, previous.has_voted
            ),
            None => "no readable identity was there".to_string(),
        };
        let moved_log = match &self.moved_log {
            Some(path) => format!(
                "moved the old log aside to {} (kept, not deleted)",
                path.display()
            ),
            None => "there was no log to move aside".to_string(),
        };
        format!(
            "reset the identity of {} in {}: {previous}; {moved_log}; wrote incarnation \
             {:032x} with has_voted=false over an empty log.\n\
             WARNING: this acceptor has forgotten every promise and vote it made. The reset \
             is safe only while a quorum of the other acceptors is intact (their logs hold \
             what was chosen) and the reset acceptor's old votes are no longer needed. Start \
             the acceptor again and it votes.",
            self.identity,
            data_dir.display(),
            self.identity.incarnation
        )
    }
}

/// Starts a new incarnation of acceptor `acceptor_id` of `cluster_id` in `data_dir`, over
/// an empty log: the log `log_file_name` is renamed to `<log>.reset-<suffix>` (never
/// deleted) and a new identity with `incarnation` that has not voted replaces the old.
///
/// Safe only while a quorum of the other acceptors is intact: the reset acceptor forgets
/// every promise and vote it made. A directory of another owner is refused; a corrupt
/// identity is replaced (this is its repair). The acceptor must be stopped.
pub fn reset(
    file_system: &dyn FileSystem,
    data_dir: &Path,
    log_file_name: &str,
    cluster_id: &str,
    acceptor_id: u32,
    incarnation: u128,
    suffix: &str,
) -> Result<Reset, IdentityError> {
    create_dir_all_durably(file_system, data_dir)?;
    let previous = match read(file_system, data_dir) {
        Ok(found) => found,
        Err(IdentityError::Corrupt { .. }) => None,
        Err(error) => return Err(error),
    };
    if let Some(found) = &previous {
        check_owner(found, data_dir, cluster_id, acceptor_id)?;
    }
    let log = data_dir.join(log_file_name);
    let mut moved_log = None;
    if file_system.exists(&log) {
        let mut aside = data_dir.join(format!("{log_file_name}.reset-{suffix}"));
        let mut attempt = 1;
        while file_system.exists(&aside) {
            attempt += 1;
            aside = data_dir.join(format!("{log_file_name}.reset-{suffix}-{attempt}"));
        }
        // Moved first: a crash before the new identity leaves the old one over no log,
        // which the next start reports as amnesia, and the reset is simply run again.
        file_system.rename(&log, &aside)?;
        file_system.sync_directory(data_dir)?;
        moved_log = Some(aside);
    }
    let identity = Identity::new(cluster_id, acceptor_id, incarnation);
    write(file_system, data_dir, &identity)?;
    Ok(Reset {
        previous,
        moved_log,
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            cluster_id: "production east".into(),
            acceptor_id: 3,
            incarnation: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            has_voted: true,
        }
    }

    #[test]
    fn an_identity_reads_back_as_written() {
        let encoded = identity().encode();
        assert_eq!(Identity::decode(&encoded), Ok(identity()));
        let text = String::from_utf8(encoded).unwrap();
        assert!(text.starts_with("paxos acceptor identity 1\ncluster_id=production east\n"));
        assert!(text.contains("\nincarnation=0123456789abcdef0011223344556677\n"));
    }

    #[test]
    fn a_changed_byte_of_an_identity_fails_its_checksum() {
        let encoded = identity().encode();
        for index in 0..encoded.len() {
            let mut damaged = encoded.clone();
            damaged[index] ^= 0x01;
            assert!(
                Identity::decode(&damaged).is_err(),
                "byte {index} changed unnoticed"
            );
        }
        assert!(Identity::decode(&encoded[..encoded.len() / 2]).is_err());
    }

    #[test]
    fn the_start_decision_covers_every_identity_and_log() {
        let log = Path::new("/data/acceptor.wal");
        let voted = identity();
        let not_voted = Identity {
            has_voted: false,
            ..identity()
        };
        assert_eq!(assess(None, 0, log), Startup::Fresh);
        assert_eq!(assess(None, 5, log), Startup::RecordVoted);
        assert_eq!(assess(Some(&not_voted), 0, log), Startup::Known);
        assert_eq!(assess(Some(&not_voted), 5, log), Startup::RecordVoted);
        assert_eq!(assess(Some(&voted), 5, log), Startup::Known);
        match assess(Some(&voted), 0, log) {
            Startup::Amnesia(reason) => {
                assert!(reason.starts_with("amnesia: identity of incarnation 0123"));
                assert!(reason.contains("/data/acceptor.wal holds no records"));
                assert!(reason.contains("paxos acceptor --reset-identity"));
            }
            other => panic!("expected amnesia, got {other:?}"),
        }
    }

    #[test]
    fn an_identity_of_another_acceptor_or_cluster_names_both() {
        let found = identity();
        let data_dir = Path::new("/data");
        assert!(check_owner(&found, data_dir, "production east", 3).is_ok());
        for (cluster_id, acceptor_id) in [("production east", 1), ("staging", 3)] {
            let error = check_owner(&found, data_dir, cluster_id, acceptor_id)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(
                    "data directory /data belongs to acceptor 3 of cluster \"production east\""
                ),
                "{error}"
            );
            assert!(
                error.contains(&format!(
                    "this is acceptor {acceptor_id} of cluster {cluster_id:?}"
                )),
                "{error}"
            );
        }
    }
}
