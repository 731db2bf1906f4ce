//! Crash consistency of the acceptor's storage: a workload of promises, votes and
//! compactions runs over a simulated file system that stops the process at every write and
//! sync point in turn; the file system then crashes, keeping what was synced plus any
//! prefix of the rest (a torn last write, a rename whose directory was never synced, a
//! data directory whose parent was never synced), and the acceptor recovers.
//!
//! Recovery must always succeed (a crash is not corruption) and give the state after some
//! prefix of the records written: never less than what was acknowledged (synced before an
//! answer could leave), never more than what was written, never a mix of the old log and
//! a compacted one.

use acceptor::core::{Acceptor, Effect, Record};
use acceptor::storage::Storage;
use common::ballot::{Ballot, Slot};
use common::message::Message;
use common::node::NodeId;
use common::value::{Command, RequestId, Value};
use runtime::file_system::{
    CrashChoice, FileSystem, KeepEverything, KeepNothing, KeepRandomly, LogFile,
    SimulatedFileSystem,
};
use std::io;
use std::path::Path;
use std::sync::Arc;

const DATA_DIRECTORY: &str = "/var/lib/paxos/acceptor1";
/// Random crash choices tried at every crash point, besides keeping nothing and everything.
const RANDOM_CHOICES: u64 = 12;

fn value(slot: Slot, round: u64) -> Value {
    Value::Batch(vec![Command::put(
        RequestId(u128::from(slot) << 64 | u128::from(round)),
        format!("key{}", slot % 3),
        format!("slot {slot} round {round}"),
    )])
}

/// The batches of messages the workload hands to the acceptor: each round a Prepare with a
/// higher ballot, then Accepts over a few slots (some rewritten by later rounds, so that
/// compaction shrinks the log).
fn batches() -> Vec<Vec<Message>> {
    let mut batches = Vec::new();
    for round in 1..=8u64 {
        let ballot = Ballot::new(round, (round % 3) as u32 + 1);
        batches.push(vec![Message::Prepare {
            ballot,
            from_slot: 1,
        }]);
        let accepts: Vec<Message> = (0..3)
            .map(|offset| {
                let slot = (round + offset) % 6 + 1;
                Message::Accept {
                    ballot,
                    slot,
                    value: value(slot, round),
                }
            })
            .collect();
        batches.push(accepts);
    }
    batches
}

/// What the workload wrote before it stopped.
struct Written {
    /// Every record appended, in order.
    records: Vec<Record>,
    /// How many of them were synced (acknowledged) before the stop.
    acknowledged: usize,
    /// Compactions completed.
    compactions: u32,
}

/// Runs the workload as the acceptor service does (a batch: the core's records appended,
/// one sync, then the answers, then a compaction if the log outgrew its threshold) until
/// the file system stops the process or the workload ends.
fn run_workload(file_system: Arc<dyn FileSystem>) -> Written {
    let mut written = Written {
        records: Vec::new(),
        acknowledged: 0,
        compactions: 0,
    };
    let Ok((mut storage, recovered)) = Storage::open_in(file_system, DATA_DIRECTORY) else {
        return written;
    };
    assert!(recovered.is_empty());
    storage.set_compaction_minimum_bytes(400);
    let mut acceptor = Acceptor::new(1);
    for batch in batches() {
        for message in batch {
            // Sent by the proposer that owns the ballot: the acceptor refuses any other.
            let owner = match &message {
                Message::Prepare { ballot, .. } | Message::Accept { ballot, .. } => {
                    ballot.proposer_id
                }
                _ => 1,
            };
            for effect in acceptor.handle(NodeId::proposer(owner), message) {
                if let Effect::Persist(record) = effect {
                    storage.append(&record);
                    written.records.push(record);
                }
            }
        }
        if storage.sync().is_err() {
            return written;
        }
        written.acknowledged = written.records.len();
        match storage.compact_if_needed(&acceptor) {
            Ok(true) => written.compactions += 1,
            Ok(false) => {}
            Err(_) => return written,
        }
    }
    written
}

/// Recovers from `file_system` and checks the state is one the workload allowed.
fn check_recovery(file_system: &SimulatedFileSystem, written: &Written) -> Result<(), String> {
    let (mut storage, records) = Storage::open_in(Arc::new(file_system.clone()), DATA_DIRECTORY)
        .map_err(|error| format!("a crash must not look like corruption: {error}"))?;
    let recovered = Acceptor::recover(1, records);
    let allowed = (written.acknowledged..=written.records.len())
        .any(|prefix| Acceptor::recover(1, written.records[..prefix].to_vec()) == recovered);
    if !allowed {
        return Err(format!(
            "recovered {recovered:?}, which is not the state after any prefix of {} written \
             records from the {} acknowledged",
            written.records.len(),
            written.acknowledged
        ));
    }
    // The recovered log keeps working: a new promise is durable across another crash.
    let promise = Ballot::new(1_000, 9);
    let mut acceptor = recovered.clone();
    for effect in acceptor.handle(
        NodeId::proposer(9),
        Message::Prepare {
            ballot: promise,
            from_slot: 1,
        },
    ) {
        if let Effect::Persist(record) = effect {
            storage.append(&record);
        }
    }
    storage
        .sync()
        .map_err(|error| format!("the recovered log refuses writes: {error}"))?;
    drop(storage);
    let again = file_system.crash(&mut KeepNothing);
    let (_, records) = Storage::open_in(Arc::new(again), DATA_DIRECTORY)
        .map_err(|error| format!("second recovery failed: {error}"))?;
    if Acceptor::recover(1, records) != acceptor {
        return Err("a promise synced after recovery was lost".into());
    }
    Ok(())
}

/// Crashes the workload at every operation, in every way tried, over the file system
/// `wrap` makes of each fresh simulated one; returns the failures and how many
/// recoveries were checked.
fn crash_everywhere(
    wrap: impl Fn(&SimulatedFileSystem) -> Arc<dyn FileSystem>,
) -> (Vec<String>, u64, Written) {
    let complete = SimulatedFileSystem::new();
    let full = run_workload(wrap(&complete));
    let total_operations = complete.operation_count();
    let mut failures = Vec::new();
    let mut recoveries = 0;
    for stop_at in 0..=total_operations {
        let file_system = SimulatedFileSystem::new();
        file_system.stop_after(stop_at);
        let written = run_workload(wrap(&file_system));
        let mut choices: Vec<(String, Box<dyn CrashChoice>)> = vec![
            ("keeping nothing unsynced".into(), Box::new(KeepNothing)),
            (
                "keeping everything written".into(),
                Box::new(KeepEverything),
            ),
        ];
        for seed in 0..RANDOM_CHOICES {
            choices.push((
                format!("keeping a random prefix (seed {seed})"),
                Box::new(KeepRandomly(seed * 7919 + stop_at)),
            ));
        }
        for (name, mut choice) in choices {
            let crashed = file_system.crash(choice.as_mut());
            recoveries += 1;
            if let Err(failure) = check_recovery(&crashed, &written) {
                failures.push(format!(
                    "crash after {stop_at} of {total_operations} operations, {name}: {failure}"
                ));
            }
        }
    }
    (failures, recoveries, full)
}

#[test]
fn after_a_crash_at_every_write_and_sync_point_the_acceptor_recovers_a_state_it_acknowledged_or_wrote(
) {
    let (failures, recoveries, full) =
        crash_everywhere(|file_system| Arc::new(file_system.clone()));
    assert_eq!(full.acknowledged, full.records.len());
    assert!(
        full.compactions >= 2,
        "the workload must compact ({} compactions): crashes during compaction are the point",
        full.compactions
    );
    eprintln!(
        "{recoveries} recoveries checked ({} records, {} compactions in the full run)",
        full.records.len(),
        full.compactions
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A file system that lies: it reports syncs done without doing them (of files, of
/// directories, or both), as a misconfigured disk cache or a buggy log would.
struct Lying {
    inner: SimulatedFileSystem,
    ignores_file_syncs: bool,
    ignores_directory_syncs: bool,
}

struct LyingFile {
    inner: Box<dyn LogFile>,
    ignores_syncs: bool,
}

impl LogFile for LyingFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        self.inner.read_all()
    }
    fn read_at(&mut self, offset: u64, buffer: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(offset, buffer)
    }
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, bytes)
    }
    fn set_len(&mut self, length: u64) -> io::Result<()> {
        self.inner.set_len(length)
    }
    fn sync(&mut self) -> io::Result<()> {
        match self.ignores_syncs {
            true => Ok(()),
            false => self.inner.sync(),
        }
    }
}

impl FileSystem for Lying {
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir(path)
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(LyingFile {
            inner: self.inner.open(path)?,
            ignores_syncs: self.ignores_file_syncs,
        }))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(LyingFile {
            inner: self.inner.create(path)?,
            ignores_syncs: self.ignores_file_syncs,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_directory(&self, path: &Path) -> io::Result<()> {
        match self.ignores_directory_syncs {
            true => Ok(()),
            false => self.inner.sync_directory(path),
        }
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn list_directory(&self, path: &Path) -> io::Result<Vec<std::ffi::OsString>> {
        self.inner.list_directory(path)
    }
}

#[test]
fn the_crash_check_catches_a_storage_that_skips_file_or_directory_syncs() {
    for (ignores_file_syncs, ignores_directory_syncs) in [(true, false), (false, true)] {
        let (failures, _, _) = crash_everywhere(|file_system| {
            Arc::new(Lying {
                inner: file_system.clone(),
                ignores_file_syncs,
                ignores_directory_syncs,
            })
        });
        assert!(
            !failures.is_empty(),
            "skipping syncs (files: {ignores_file_syncs}, directories: \
             {ignores_directory_syncs}) went unnoticed"
        );
        eprintln!(
            "skipping syncs (files: {ignores_file_syncs}, directories: \
             {ignores_directory_syncs}): {} failed recoveries, e.g. {}",
            failures.len(),
            failures[0]
        );
    }
}
