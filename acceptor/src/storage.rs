//! The acceptor's durable memory: its [`Record`]s in a checksummed write-ahead log.
//!
//! The log lives at `<data dir>/acceptor.wal`. The service appends the records of a batch,
//! syncs once (group commit) and only then sends the answers, so whatever a proposer or
//! learner has heard survives a crash. A damaged tail is an append that was never synced,
//! hence never acknowledged, and [`runtime::wal::Wal`] truncates it; damage anywhere else,
//! or a record whose checksum passes but which does not decode, is corruption
//! ([`StorageError::is_corruption`]): the acceptor then runs but refuses to vote, because
//! starting from defaults would let it break promises it made.
//!
//! The log only grows (each Accept adds a record), so it is compacted: once it exceeds
//! `max(16 MiB, 2 × its size right after the last compaction)` it is rewritten atomically
//! with [`Acceptor::snapshot`]: the trim point, the promise and one record per slot above
//! the trim point. Since the leader trims what the learners hold durably, the rewritten
//! log holds the live window, and the file stays bounded whatever the history.
//!
//! [`recover_in`] checks the data directory's identity and replays the log (the same code
//! in the service and in the simulation); [`AcceptorLog`] is the log as the driver of
//! every role uses it: appends, one sync per batch that also records the first vote of an
//! incarnation in the identity, and compaction after the batch's answers left.

use crate::config::AcceptorConfig;
use crate::core::{Acceptor, Record};
use crate::identity::{self, Identity, IdentityError, IdentityFile, Startup};
use common::ready::Write;
use runtime::driver::Log;
use runtime::file_system::{FileSystem, RealFileSystem};
use runtime::wal::{Wal, WalError};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The log's file name inside the data directory.
pub const LOG_FILE_NAME: &str = "acceptor.wal";

/// The log is never compacted below this size: rewriting a small log buys nothing.
pub const COMPACTION_MINIMUM_BYTES: u64 = 16 * 1024 * 1024;

/// Why the acceptor's log cannot be used.
#[derive(Debug)]
pub enum StorageError {
    /// The log could not be opened or is damaged (see [`WalError`]).
    Wal(WalError),
    /// A record passed its checksum but is not a [`Record`]: acknowledged data that this
    /// acceptor cannot read (written by another program or version).
    Undecodable {
        /// The log file.
        path: PathBuf,
        /// Position of the record in the log, from 0.
        record_index: usize,
        /// The decoder's complaint.
        reason: String,
    },
}

impl fmt::Display for StorageError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Wal(error) => write!(formatter, "{error}"),
            StorageError::Undecodable {
                path,
                record_index,
                reason,
            } => write!(
                formatter,
                "log {} is corrupt: record {record_index} passed its checksum but does not \
                 decode as an acceptor record: {reason}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StorageError {}

impl StorageError {
    /// Whether acknowledged data is damaged (as opposed to the disk failing to open it):
    /// the acceptor must then never vote from what it could read.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            StorageError::Wal(WalError::Corrupt { .. }) | StorageError::Undecodable { .. }
        )
    }
}

impl From<WalError> for StorageError {
    fn from(error: WalError) -> Self {
        StorageError::Wal(error)
    }
}

/// The acceptor's open log.
pub struct Storage {
    wal: Wal,
    truncated_tail_bytes: u64,
    /// The log's size right after the last compaction; 0 until the first one in this
    /// process, so a large log inherited from a previous run is compacted once.
    compacted_length_bytes: u64,
    compaction_minimum_bytes: u64,
    /// The log is compacted once it outgrows its compacted size times this, in quarters
    /// (8: twice the size).
    compaction_growth_quarters: u64,
    /// The trim point the last compaction wrote.
    compacted_trimmed_slot: u64,
}

impl Storage {
    /// Opens (or creates) `directory/acceptor.wal` and returns it with every record it
    /// holds, in the order written, for [`Acceptor::recover`].
    pub fn open(directory: impl AsRef<Path>) -> Result<(Storage, Vec<Record>), StorageError> {
        Storage::open_in(Arc::new(RealFileSystem), directory)
    }

    /// [`Storage::open`] in `file_system` (a simulated one, in crash tests).
    pub fn open_in(
        file_system: Arc<dyn FileSystem>,
        directory: impl AsRef<Path>,
    ) -> Result<(Storage, Vec<Record>), StorageError> {
        let path = directory.as_ref().join(LOG_FILE_NAME);
        let recovered = Wal::open_in(file_system, &path)?;
        let records = recovered
            .records
            .iter()
            .enumerate()
            .map(|(record_index, payload)| {
                postcard::from_bytes::<Record>(payload).map_err(|error| StorageError::Undecodable {
                    path: path.clone(),
                    record_index,
                    reason: error.to_string(),
                })
            })
            .collect::<Result<Vec<Record>, StorageError>>()?;
        let storage = Storage {
            wal: recovered.wal,
            truncated_tail_bytes: recovered.truncated_tail_bytes,
            compacted_length_bytes: 0,
            compaction_minimum_bytes: COMPACTION_MINIMUM_BYTES,
            compaction_growth_quarters: 8,
            compacted_trimmed_slot: 0,
        };
        Ok((storage, records))
    }

    /// Limits the log to `quota_bytes` on disk: past it, appends fail as on a full disk
    /// (the driver holds the answers). The log is compacted from half the quota on, so
    /// that the live window is rewritten long before the quota is reached.
    pub fn set_quota_bytes(&mut self, quota_bytes: Option<u64>) {
        self.wal.set_quota_bytes(quota_bytes);
        if let Some(quota) = quota_bytes {
            self.compaction_minimum_bytes = self.compaction_minimum_bytes.min(quota / 2);
        }
    }

    /// Lowers (or raises) the size below which the log is never compacted; for tests.
    pub fn set_compaction_minimum_bytes(&mut self, bytes: u64) {
        self.compaction_minimum_bytes = bytes;
    }

    /// Spreads the compactions of the acceptors of one cluster apart: acceptor `id`
    /// compacts at `(1 + (id - 1) mod 3 / 4)` times the usual sizes. Acceptors hold nearly
    /// the same log, so with equal thresholds they compacted at the same moment, and while
    /// two of three rewrite their logs no quorum answers (seconds without any write
    /// decided under load). Staggered, at most one of three pauses at a time.
    pub fn stagger_compaction(&mut self, id: u32) {
        let quarters = 4 + u64::from(id.saturating_sub(1) % 3);
        self.compaction_minimum_bytes = self.compaction_minimum_bytes / 4 * quarters;
        self.compaction_growth_quarters = 2 * quarters;
    }

    /// Queues `record`; it is durable only after [`Storage::sync`].
    pub fn append(&mut self, record: &Record) {
        self.wal.append(&encode(record));
    }

    /// Writes the queued records and waits for the disk. An error here must stop the
    /// acceptor: after a failed fsync the kernel may have dropped the data, and retrying
    /// can report success for writes that never reached the disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.wal.sync()
    }

    /// Whether the log has outgrown `max(minimum, 2 × size after the last compaction)`
    /// (see [`Storage::stagger_compaction`] for the factors of a cluster's acceptors).
    pub fn needs_compaction(&self) -> bool {
        let threshold = self.compaction_minimum_bytes.max(
            self.compacted_length_bytes
                .saturating_mul(self.compaction_growth_quarters)
                / 4,
        );
        self.wal.length_bytes() > threshold
    }

    /// Rewrites the log as `acceptor`'s snapshot if it has outgrown its threshold; returns
    /// whether it did. `acceptor` must hold every record appended so far (it does: the
    /// core changes state as it emits each record). An error leaves the log in an unknown
    /// state (the old file or the new one) and must stop the acceptor.
    ///
    /// Near its quota (three quarters), or while appends are held (the disk or the quota
    /// refused them), the log is also compacted once the trim point has risen by a quarter
    /// of the live slots since the last compaction: that is what frees space once the
    /// learners caught up, while the usual threshold (twice the last compacted size) may
    /// lie past the quota or the disk.
    pub fn compact_if_needed(&mut self, acceptor: &Acceptor) -> io::Result<bool> {
        let near_quota = self
            .wal
            .quota_bytes()
            .is_some_and(|quota| self.wal.length_bytes() >= quota / 4 * 3);
        // Appends still pending after a batch: the disk or the quota refused them.
        let held = self.wal.has_pending();
        // Forgotten since the last compaction: at least a quarter of what is live, so that
        // a rewrite near the quota frees a real share of the log (no rewrite per tick).
        let forgotten_slots = acceptor
            .trimmed_slot()
            .saturating_sub(self.compacted_trimmed_slot);
        let worth_it =
            forgotten_slots > 0 && forgotten_slots >= acceptor.accepted_slot_count() as u64 / 4;
        let freeing_space = (near_quota || held) && worth_it;
        if !(self.needs_compaction() || freeing_space) {
            return Ok(false);
        }
        self.compact(acceptor)?;
        Ok(true)
    }

    /// Rewrites the log as `acceptor`'s snapshot, atomically, encoding and writing one
    /// record at a time (the whole state is never copied at once).
    pub fn compact(&mut self, acceptor: &Acceptor) -> io::Result<()> {
        self.wal
            .rewrite(acceptor.snapshot_records().map(|record| encode(&record)))?;
        self.compacted_length_bytes = self.wal.length_bytes();
        self.compacted_trimmed_slot = acceptor.trimmed_slot();
        Ok(())
    }

    /// Bytes of damaged tail truncated when the log was opened (0 if it was clean).
    pub fn truncated_tail_bytes(&self) -> u64 {
        self.truncated_tail_bytes
    }

    /// The log's size on disk, in bytes.
    pub fn length_bytes(&self) -> u64 {
        self.wal.length_bytes()
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        self.wal.path()
    }
}

/// The acceptor's log under the driver of every role ([`runtime::driver`]): its records
/// and its identity, or nothing for an acceptor that refuses to vote (corruption,
/// amnesia), which writes nothing.
pub struct AcceptorLog {
    durable: Option<Durable>,
    /// Whether records were appended since the last sync.
    appended_since_sync: bool,
}

/// The log and the identity of an acceptor that votes.
struct Durable {
    log: Storage,
    identity: IdentityFile,
}

/// An incarnation as the logs show it: 32 hex digits.
pub fn incarnation_text(identity: &Identity) -> String {
    format!("{:032x}", identity.incarnation)
}

/// Checks whose data directory this is, opens the log and replays it. A directory of
/// another acceptor or cluster, or a log or identity that cannot be read at all, is an
/// error. A corrupt log or identity, or amnesia, is never a fresh start (an acceptor that
/// forgot its promises could let two values be chosen): the acceptor then runs refusing
/// to vote, without storage.
///
/// `rebuild` replays the records (it is [`Acceptor::recover`] but for the simulation's
/// planted bugs). Runs in production and in the simulation alike.
pub fn recover_in(
    config: &AcceptorConfig,
    file_system: Arc<dyn FileSystem>,
    rebuild: fn(u32, Vec<Record>) -> Acceptor,
) -> anyhow::Result<(Acceptor, AcceptorLog)> {
    let data_dir = &config.data_dir;
    let cannot_start = |error: anyhow::Error| {
        tracing::error!("{error:#}; refusing to start");
        error.context(format!(
            "acceptor {} cannot recover its state from {}",
            config.id,
            data_dir.display()
        ))
    };
    let found = match identity::read(file_system.as_ref(), data_dir) {
        Ok(found) => found,
        Err(error @ IdentityError::Corrupt { .. }) => return Ok(refusing(config, &error)),
        Err(error) => return Err(cannot_start(error.into())),
    };
    if let Some(found) = &found {
        identity::check_owner(found, data_dir, &config.cluster_id, config.id)
            .map_err(|error| cannot_start(error.into()))?;
    }
    let log = data_dir.join(LOG_FILE_NAME);
    if let Some(voted) = found.as_ref().filter(|found| found.has_voted) {
        if !file_system.exists(&log) {
            // Not even created: the directory stays as found, for the operator.
            return Ok(amnesia(config, identity::amnesia_reason(voted, &log)));
        }
    }
    let (mut storage, records) = match Storage::open_in(file_system.clone(), data_dir) {
        Ok(opened) => opened,
        Err(error) if error.is_corruption() => return Ok(refusing(config, &error)),
        Err(error) => return Err(cannot_start(error.into())),
    };
    let identity = match identity::assess(found.as_ref(), records.len(), &log) {
        Startup::Amnesia(reason) => return Ok(amnesia(config, reason)),
        startup => identity_to_vote_with(config, found.clone(), startup),
    };
    if Some(&identity) != found.as_ref() {
        identity::write(file_system.as_ref(), data_dir, &identity).map_err(|error| {
            cannot_start(anyhow::Error::new(error).context("writing the identity"))
        })?;
        tracing::info!(
            incarnation = %incarnation_text(&identity),
            has_voted = identity.has_voted,
            "wrote the data directory's identity"
        );
    }
    storage.set_quota_bytes(config.log_quota_bytes);
    storage.stagger_compaction(config.id);
    let acceptor = rebuild(config.id, records);
    let identity = IdentityFile::new(file_system, data_dir, identity);
    Ok((
        acceptor,
        AcceptorLog {
            durable: Some(Durable {
                log: storage,
                identity,
            }),
            appended_since_sync: false,
        },
    ))
}

/// The identity an acceptor that votes keeps, for a `startup` other than amnesia.
fn identity_to_vote_with(
    config: &AcceptorConfig,
    found: Option<Identity>,
    startup: Startup,
) -> Identity {
    let new_incarnation = || {
        Identity::new(
            &config.cluster_id,
            config.id,
            identity::random_incarnation(),
        )
    };
    match startup {
        Startup::Known => found.expect("assess knows an identity only if one was found"),
        Startup::Fresh => new_incarnation(),
        Startup::RecordVoted => Identity {
            has_voted: true,
            ..found.unwrap_or_else(new_incarnation)
        },
        Startup::Amnesia(_) => unreachable!("an acceptor with amnesia keeps no identity"),
    }
}

/// An acceptor whose log or identity is corrupt, refusing to vote.
fn refusing(config: &AcceptorConfig, error: &dyn std::error::Error) -> (Acceptor, AcceptorLog) {
    tracing::error!(
        %error,
        "the acceptor's data directory is corrupt: running, but refusing to vote until an \
         operator repairs or replaces it"
    );
    (
        Acceptor::refusing(config.id, error.to_string()),
        AcceptorLog {
            durable: None,
            appended_since_sync: false,
        },
    )
}

/// An acceptor that lost its memory, refusing to vote.
fn amnesia(config: &AcceptorConfig, reason: String) -> (Acceptor, AcceptorLog) {
    tracing::warn!(data_dir = %config.data_dir.display(), "{reason}");
    (
        Acceptor::refusing(config.id, reason),
        AcceptorLog {
            durable: None,
            appended_since_sync: false,
        },
    )
}

impl AcceptorLog {
    /// Whether the acceptor votes (it has a log); false while it refuses to.
    pub fn votes(&self) -> bool {
        self.durable.is_some()
    }

    /// The log's storage, if the acceptor votes.
    pub fn storage(&self) -> Option<&Storage> {
        self.durable.as_ref().map(|durable| &durable.log)
    }

    /// The log's storage, for a harness that lowers its compaction threshold.
    pub fn storage_mut(&mut self) -> Option<&mut Storage> {
        self.durable.as_mut().map(|durable| &mut durable.log)
    }

    /// The identity this acceptor votes with.
    pub fn identity(&self) -> Option<&Identity> {
        self.durable
            .as_ref()
            .map(|durable| durable.identity.identity())
    }

    fn durable(&mut self) -> &mut Durable {
        self.durable
            .as_mut()
            .expect("invariant violated: an acceptor refusing to vote persists nothing")
    }
}

impl Log<Acceptor> for AcceptorLog {
    fn write(&mut self, writes: Vec<Write<Record>>) -> io::Result<()> {
        self.appended_since_sync |= !writes.is_empty();
        let log = &mut self.durable().log;
        for write in writes {
            match write {
                Write::Append(record) => log.append(&record),
                Write::Replace(_) => unreachable!("the acceptor's core only appends"),
            }
        }
        Ok(())
    }

    /// Syncs the log (once per batch), then, once per incarnation, records in the identity
    /// that it has voted. After the log sync: a crash before it leaves records that the
    /// next start trusts (nothing was answered). Before the answers: once anything is
    /// answered, a log found empty is amnesia. Nothing to do when nothing was appended
    /// (a stop, or an acceptor refusing to vote).
    fn sync(&mut self) -> io::Result<()> {
        if !self.appended_since_sync {
            return Ok(());
        }
        let durable = self.durable();
        durable.log.sync()?;
        if durable.identity.record_voted()? {
            tracing::info!(
                incarnation = %incarnation_text(durable.identity.identity()),
                "recorded in the identity that this incarnation has voted"
            );
        }
        // Only once both are durable: after a failure (a full disk) the driver retries.
        self.appended_since_sync = false;
        Ok(())
    }

    /// Compacts the log once it outgrew its threshold.
    fn maintain(&mut self, acceptor: &Acceptor) -> io::Result<()> {
        let Some(durable) = self.durable.as_mut() else {
            return Ok(());
        };
        if durable.log.compact_if_needed(acceptor)? {
            tracing::info!(
                log_bytes = durable.log.length_bytes(),
                accepted_slots = acceptor.accepted_slot_count(),
                "compacted the log"
            );
        }
        Ok(())
    }
}

fn encode(record: &Record) -> Vec<u8> {
    postcard::to_allocvec(record).expect("encoding a record into a Vec cannot fail")
}
