//! The learner's log: the slots it found decided ([`LearnerRecord::Decided`]), and, once
//! compacted or replaced by a peer's state, first a reference to a snapshot file
//! ([`LearnerRecord::SnapshotFile`], see [`crate::snapshot_file`]), in a checksummed
//! write-ahead log (`<data dir>/learner.wal`).
//!
//! The core says when to append, when to compact, which snapshot chunks to write and when
//! to sync (see [`crate::core`]); [`LearnerLog`] carries that out for the driver of every
//! role:
//! - **Compaction** ([`LearnerWrite::Compact`]) writes the frozen state as a snapshot file,
//!   chunk by chunk, then rewrites the log as a reference to it, the history, and every
//!   slot appended meanwhile. The service does the snapshot file on a thread of its own
//!   ([`LearnerLog::compact_in_background`]), so that the node's loop never waits for a
//!   large state to be written and synced; the old log stays until the file is durable,
//!   and restores the same state meanwhile. The simulation does it in place, so that its
//!   runs stay deterministic. A compaction that fails (a full disk) is given up with a
//!   warning, the old log kept: nothing is lost, the next one tries again.
//! - **A snapshot received** from a peer is written chunk by chunk as it arrives
//!   ([`LearnerWrite::SnapshotChunk`]); once complete its file is synced and the log
//!   replaced by a reference to it ([`LearnerWrite::InstallSnapshot`]), atomically.
//!
//! [`recover_in`] rebuilds the learner from the log and its snapshot file, in the service
//! and in the simulation alike, and removes snapshot files nothing refers to. A corrupt log
//! or snapshot file is an error: the learner never starts from nothing over acknowledged
//! data.

use crate::core::{FrozenState, Learner, LearnerOptions, LearnerRecord, LearnerWrite};
use crate::snapshot_file::{self, SnapshotFileWriter};
use anyhow::anyhow;
use common::ballot::Slot;
use common::message::{DecidedEntry, SnapshotChunk};
use common::ready::Write;
use runtime::driver::Log;
use runtime::file_system::{parent_of, FileSystem};
use runtime::wal::Wal;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The decided log's file name inside `DATA_DIR`.
pub const WAL_FILE_NAME: &str = "learner.wal";

/// The learner's log, as the driver of every role uses it.
pub struct LearnerLog {
    wal: Wal,
    file_system: Arc<dyn FileSystem>,
    directory: PathBuf,
    chunk_bytes: usize,
    /// The snapshot file the log refers to, if any.
    snapshot_slot: Option<Slot>,
    /// Snapshot files are written on a thread of their own.
    background: bool,
    /// The compaction under way, if any.
    compaction: Option<Compaction>,
    /// The snapshot file of a state being received from a peer.
    receiving: Option<SnapshotFileWriter>,
    /// Why the file of the snapshot being received (of this slot) could not be written:
    /// its later chunks are skipped and its installation fails.
    receiving_failure: Option<(Slot, io::Error)>,
}

/// A compaction under way: its snapshot file is being written; the log is rewritten once
/// the file is durable.
struct Compaction {
    applied_slot: Slot,
    retained: Vec<DecidedEntry>,
    /// Slots appended to the log since the compaction started: the rewritten log keeps
    /// them too.
    appended_since: Vec<DecidedEntry>,
    /// The thread writing the file (None: written already, in place).
    writer: Option<JoinHandle<io::Result<PathBuf>>>,
    /// The outcome of a file written in place.
    written: Option<io::Result<PathBuf>>,
    cancel: Arc<AtomicBool>,
}

/// Opens the log at `path` in `file_system` and rebuilds the learner from it (and from the
/// snapshot file it refers to).
pub fn recover_in(
    file_system: Arc<dyn FileSystem>,
    options: LearnerOptions,
    path: &Path,
) -> anyhow::Result<(Learner, LearnerLog)> {
    let recovered = Wal::open_in(file_system.clone(), path).map_err(|error| {
        tracing::error!(%error, "cannot open the learner's log");
        anyhow!(error)
    })?;
    if recovered.truncated_tail_bytes > 0 {
        tracing::warn!(
            path = %path.display(),
            bytes = recovered.truncated_tail_bytes,
            "truncated a torn tail of the learner's log (a crash during an append)"
        );
    }
    let directory = parent_of(path).to_path_buf();
    let mut entries = Vec::with_capacity(recovered.records.len());
    let mut whole_snapshot = None;
    let mut snapshot_slot: Option<Slot> = None;
    for (index, record) in recovered.records.iter().enumerate() {
        match postcard::from_bytes::<LearnerRecord>(record) {
            Ok(LearnerRecord::Decided(entry)) => entries.push(entry),
            Ok(LearnerRecord::Snapshot(state)) => whole_snapshot = Some(state),
            Ok(LearnerRecord::SnapshotFile { applied_slot }) => snapshot_slot = Some(applied_slot),
            Err(error) => {
                let problem = format!(
                    "learner log {} record {index} has a valid checksum but does not decode: {error}",
                    path.display()
                );
                tracing::error!("{problem}");
                return Err(anyhow!(problem));
            }
        }
    }
    let state = match (snapshot_slot, whole_snapshot) {
        (Some(slot), _) => Some(
            snapshot_file::read(file_system.as_ref(), &directory, slot).map_err(|problem| {
                tracing::error!("{problem}");
                anyhow!(problem)
            })?,
        ),
        // A log compacted before snapshots had files: its next compaction writes one.
        (None, Some(snapshot)) => Some(FrozenState::from_snapshot(snapshot.into_state_snapshot())),
        (None, None) => None,
    };
    match snapshot_file::remove_all_but(file_system.as_ref(), &directory, snapshot_slot) {
        Ok(0) => {}
        Ok(removed) => tracing::info!(
            removed,
            "removed snapshot files the log no longer refers to (an interrupted compaction)"
        ),
        Err(error) => tracing::warn!(%error, "cannot remove unused snapshot files"),
    }
    let record_count = entries.len();
    let chunk_bytes = options.snapshot_chunk_bytes;
    let learner = Learner::recover_from_state(options, state, entries);
    tracing::info!(
        path = %path.display(),
        records = record_count,
        snapshot_slot,
        history_start_slot = learner.history_start_slot(),
        applied_slot = learner.applied_slot(),
        known_slot_max = learner.known_slot_max(),
        "learner recovered its log"
    );
    let log = LearnerLog {
        wal: recovered.wal,
        file_system,
        directory,
        chunk_bytes,
        snapshot_slot,
        background: false,
        compaction: None,
        receiving: None,
        receiving_failure: None,
    };
    Ok((learner, log))
}

impl LearnerLog {
    /// The log's size, in bytes (without its snapshot file).
    pub fn length_bytes(&self) -> u64 {
        self.wal.length_bytes()
    }

    /// The slot of the snapshot file the log refers to.
    pub fn snapshot_slot(&self) -> Option<Slot> {
        self.snapshot_slot
    }

    /// Whether a compaction is under way.
    pub fn is_compacting(&self) -> bool {
        self.compaction.is_some()
    }

    /// From now on, snapshot files of compactions are written on a thread of their own.
    pub fn compact_in_background(mut self) -> Self {
        self.background = true;
        self
    }

    fn append_decided(&mut self, entry: DecidedEntry) {
        let record = LearnerRecord::Decided(entry);
        self.wal.append(&encode(&record));
        if let (Some(compaction), LearnerRecord::Decided(entry)) =
            (self.compaction.as_mut(), record)
        {
            compaction.appended_since.push(entry);
        }
    }

    /// Rewrites the log as a reference to the snapshot file of `applied_slot` followed by
    /// `decided` (encoded records), atomically; then the previous file goes.
    fn rewrite_onto_snapshot(
        &mut self,
        applied_slot: Slot,
        decided: impl Iterator<Item = Vec<u8>>,
    ) -> io::Result<()> {
        let head = encode(&LearnerRecord::SnapshotFile { applied_slot });
        self.wal.rewrite(std::iter::once(head).chain(decided))?;
        self.replace_snapshot_slot(applied_slot);
        Ok(())
    }

    /// Starts writing `state` as a snapshot file, unless a compaction is under way.
    fn start_compaction(&mut self, state: FrozenState, retained: Vec<DecidedEntry>) {
        if self.compaction.is_some() {
            tracing::debug!(
                snapshot_slot = state.applied_slot,
                "a compaction is under way: this one waits for the next"
            );
            return;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let applied_slot = state.applied_slot;
        let (writer, written) = match self.background {
            true => {
                let (file_system, directory) = (self.file_system.clone(), self.directory.clone());
                let (chunk_bytes, cancel) = (self.chunk_bytes, cancel.clone());
                let spawned = std::thread::Builder::new()
                    .name("learner-snapshot".into())
                    .spawn(move || {
                        snapshot_file::write(
                            file_system.as_ref(),
                            &directory,
                            &state,
                            chunk_bytes,
                            &cancel,
                        )
                    });
                match spawned {
                    Ok(handle) => (Some(handle), None),
                    Err(error) => (None, Some(Err(error))),
                }
            }
            false => (
                None,
                Some(snapshot_file::write(
                    self.file_system.as_ref(),
                    &self.directory,
                    &state,
                    self.chunk_bytes,
                    &cancel,
                )),
            ),
        };
        self.compaction = Some(Compaction {
            applied_slot,
            retained,
            appended_since: Vec::new(),
            writer,
            written,
            cancel,
        });
    }

    /// Once the compaction's snapshot file is written: rewrites the log as a reference to
    /// it, the history and what was appended since. A failure leaves the old log.
    fn finish_compaction_if_written(&mut self) {
        let Some(compaction) = self.compaction.as_mut() else {
            return;
        };
        if let Some(writer) = compaction.writer.take_if(|writer| writer.is_finished()) {
            compaction.written = Some(writer.join().unwrap_or_else(|_| {
                Err(io::Error::other("the thread writing the snapshot panicked"))
            }));
        }
        if compaction.written.is_none() {
            return; // still writing
        }
        let compaction = self.compaction.take().expect("checked above");
        let applied_slot = compaction.applied_slot;
        if let Some(Err(error)) = compaction.written {
            tracing::warn!(
                snapshot_slot = applied_slot,
                %error,
                "the compaction's snapshot file could not be written: the log stays as it is \
                 (nothing is lost) and the next compaction tries again"
            );
            return;
        }
        let bytes_before = self.wal.length_bytes();
        let decided = compaction
            .retained
            .iter()
            .chain(&compaction.appended_since)
            .map(|entry| encode(&LearnerRecord::Decided(entry.clone())));
        if let Err(error) = self.rewrite_onto_snapshot(applied_slot, decided) {
            // The new file stays (if the log refers to it after all, it is needed; if not,
            // the next start removes it), and so does the old one.
            tracing::warn!(
                snapshot_slot = applied_slot,
                %error,
                "the compacted log could not be written: the log stays as it is and the next \
                 compaction tries again"
            );
            return;
        }
        tracing::info!(
            snapshot_slot = applied_slot,
            records = compaction.retained.len() + compaction.appended_since.len(),
            bytes_before,
            bytes_after = self.wal.length_bytes(),
            "learner log compacted: a snapshot file and the retained history"
        );
    }

    /// The log now refers to the snapshot of `applied_slot`: the previous file goes.
    fn replace_snapshot_slot(&mut self, applied_slot: Slot) {
        let previous = self.snapshot_slot.replace(applied_slot);
        if let Some(previous) = previous.filter(|previous| *previous != applied_slot) {
            let path = self.directory.join(snapshot_file::file_name(previous));
            if let Err(error) = self.file_system.remove_file(&path) {
                tracing::warn!(%error, path = %path.display(), "cannot remove an old snapshot file");
            }
        }
    }

    /// Gives up the compaction under way, if any (a newer state was installed).
    fn cancel_compaction(&mut self) {
        if let Some(compaction) = self.compaction.take() {
            compaction.cancel.store(true, Ordering::Relaxed);
            // Its thread stops at its next chunk; whatever file it leaves, nothing refers
            // to it and the next start removes it.
        }
    }

    /// Writes a chunk of the snapshot being received. A failure (a full disk) does not
    /// stop the batch's other writes: the snapshot's later chunks are skipped and its
    /// installation fails, which stops the learner with its old log intact.
    fn write_received_chunk(&mut self, chunk: &SnapshotChunk) {
        if chunk.index == 0 {
            if let Some(abandoned) = self.receiving.take() {
                abandoned.abandon(self.file_system.as_ref());
            }
            self.receiving_failure = None;
            match SnapshotFileWriter::create(
                self.file_system.as_ref(),
                &self.directory,
                chunk.applied_slot,
            ) {
                Ok(writer) => self.receiving = Some(writer),
                Err(error) => self.receiving_failure = Some((chunk.applied_slot, error)),
            }
        }
        if self.receiving_failure.is_some() {
            return;
        }
        let written = match self.receiving.as_mut() {
            Some(writer) => writer.write_chunk(chunk),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "chunk {} of the snapshot at slot {} without its first",
                    chunk.index, chunk.applied_slot
                ),
            )),
        };
        if let Err(error) = written {
            tracing::warn!(
                snapshot_slot = chunk.applied_slot,
                %error,
                "cannot write a received snapshot chunk: its installation will fail"
            );
            if let Some(abandoned) = self.receiving.take() {
                abandoned.abandon(self.file_system.as_ref());
            }
            self.receiving_failure = Some((chunk.applied_slot, error));
        }
    }

    /// The received snapshot is complete: its file is made durable, then the log replaced
    /// by a reference to it and `retained`.
    fn install(&mut self, applied_slot: Slot, retained: Vec<DecidedEntry>) -> io::Result<()> {
        if let Some((slot, error)) = self.receiving_failure.take() {
            return Err(io::Error::new(
                error.kind(),
                format!("the snapshot at slot {slot} could not be written: {error}"),
            ));
        }
        let writer = self
            .receiving
            .take()
            .filter(|writer| writer.applied_slot() == applied_slot)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the snapshot at slot {applied_slot} was installed but not received"),
                )
            })?;
        writer.finish(self.file_system.as_ref())?;
        self.cancel_compaction();
        let bytes_before = self.wal.length_bytes();
        let count = retained.len();
        let decided = retained
            .into_iter()
            .map(|entry| encode(&LearnerRecord::Decided(entry)));
        self.rewrite_onto_snapshot(applied_slot, decided)?;
        tracing::info!(
            snapshot_slot = applied_slot,
            records = count,
            bytes_before,
            bytes_after = self.wal.length_bytes(),
            "learner log replaced by a peer's snapshot and the slots after it"
        );
        Ok(())
    }

    fn carry_out(&mut self, write: LearnerWrite) -> io::Result<()> {
        match write {
            LearnerWrite::Decided(entry) => self.append_decided(entry),
            LearnerWrite::Compact { state, retained } => {
                self.start_compaction(state, retained);
                self.finish_compaction_if_written();
            }
            LearnerWrite::SnapshotChunk(chunk) => self.write_received_chunk(&chunk),
            LearnerWrite::InstallSnapshot {
                applied_slot,
                retained,
            } => self.install(applied_slot, retained)?,
        }
        Ok(())
    }
}

impl Log<Learner> for LearnerLog {
    fn write(&mut self, writes: Vec<Write<LearnerWrite>>) -> io::Result<()> {
        for write in writes {
            match write {
                Write::Append(write) => self.carry_out(write)?,
                Write::Replace(writes) => {
                    for write in writes {
                        self.carry_out(write)?;
                    }
                }
            }
        }
        if self.wal.has_pending() {
            self.wal.flush()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.wal.sync()
    }

    fn maintain(&mut self, _core: &Learner) -> io::Result<()> {
        self.finish_compaction_if_written();
        Ok(())
    }

    fn wants_maintenance(&self) -> bool {
        self.compaction.is_some()
    }
}

impl Drop for LearnerLog {
    fn drop(&mut self) {
        // A node that stops does not leave a thread writing into its data directory.
        if let Some(compaction) = self.compaction.take() {
            compaction.cancel.store(true, Ordering::Relaxed);
            if let Some(writer) = compaction.writer {
                let _ = writer.join();
            }
        }
    }
}

fn encode(record: &LearnerRecord) -> Vec<u8> {
    postcard::to_allocvec(record).expect("encoding into a Vec cannot fail")
}
