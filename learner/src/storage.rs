//! The learner's log: the slots it found decided ([`LearnerRecord::Decided`]), and, once
//! compacted or replaced by a peer's state, a snapshot first ([`LearnerRecord::Snapshot`]),
//! in a checksummed write-ahead log (`<data dir>/learner.wal`).
//!
//! The core says when to append, when to replace the whole log (atomically: a crash leaves
//! the old log or the new one) and when to sync (see [`crate::core`]); [`LearnerLog`]
//! carries that out for the driver of every role. [`recover_in`] rebuilds the learner from
//! the log, in the service and in the simulation alike. A corrupt log is an error: the
//! learner never starts from nothing over acknowledged data.

use crate::core::{Learner, LearnerOptions, LearnerRecord};
use anyhow::anyhow;
use common::message::StateSnapshot;
use common::ready::Write;
use runtime::driver::Log;
use runtime::file_system::FileSystem;
use runtime::wal::Wal;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The decided log's file name inside `DATA_DIR`.
pub const WAL_FILE_NAME: &str = "learner.wal";

/// The learner's log, as the driver of every role uses it.
pub struct LearnerLog {
    wal: Wal,
}

/// Opens the log at `path` in `file_system` and rebuilds the learner from it.
pub fn recover_in(
    file_system: Arc<dyn FileSystem>,
    options: LearnerOptions,
    path: &Path,
) -> anyhow::Result<(Learner, LearnerLog)> {
    let recovered = Wal::open_in(file_system, path).map_err(|error| {
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
    let mut entries = Vec::with_capacity(recovered.records.len());
    let mut snapshot: Option<StateSnapshot> = None;
    for (index, record) in recovered.records.iter().enumerate() {
        match postcard::from_bytes::<LearnerRecord>(record) {
            Ok(LearnerRecord::Decided(entry)) => entries.push(entry),
            Ok(LearnerRecord::Snapshot(state)) => {
                if snapshot
                    .as_ref()
                    .is_none_or(|known| known.applied_slot < state.applied_slot)
                {
                    snapshot = Some(state);
                }
            }
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
    let record_count = entries.len();
    let snapshot_slot = snapshot.as_ref().map(|snapshot| snapshot.applied_slot);
    let learner = Learner::recover_from_snapshot(options, snapshot, entries);
    tracing::info!(
        path = %path.display(),
        records = record_count,
        snapshot_slot,
        history_start_slot = learner.history_start_slot(),
        applied_slot = learner.applied_slot(),
        known_slot_max = learner.known_slot_max(),
        "learner recovered its log"
    );
    Ok((learner, LearnerLog { wal: recovered.wal }))
}

impl LearnerLog {
    /// The log's size, in bytes.
    pub fn length_bytes(&self) -> u64 {
        self.wal.length_bytes()
    }

    /// Rewrites the log as `records`, atomically (which also makes everything durable).
    fn replace(&mut self, records: Vec<LearnerRecord>) -> io::Result<()> {
        let bytes_before = self.wal.length_bytes();
        let count = records.len();
        let snapshot_slot = match records.first() {
            Some(LearnerRecord::Snapshot(snapshot)) => Some(snapshot.applied_slot),
            _ => None,
        };
        self.wal.rewrite(records.iter().map(encode))?;
        tracing::info!(
            snapshot_slot,
            records = count,
            bytes_before,
            bytes_after = self.wal.length_bytes(),
            "learner log replaced by a snapshot and the retained history"
        );
        Ok(())
    }
}

impl Log<Learner> for LearnerLog {
    fn write(&mut self, writes: Vec<Write<LearnerRecord>>) -> io::Result<()> {
        for write in writes {
            match write {
                Write::Append(record) => self.wal.append(&encode(&record)),
                Write::Replace(records) => self.replace(records)?,
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
}

fn encode(record: &LearnerRecord) -> Vec<u8> {
    postcard::to_allocvec(record).expect("encoding into a Vec cannot fail")
}
