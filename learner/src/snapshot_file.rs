//! Snapshot files: a learner's state at a slot, beside its log, as
//! `snapshot-<slot>.snap`, written and read one chunk at a time (the chunks of
//! [`crate::core::FrozenState::chunks`], the same that travel between learners), so that a
//! state of any size never sits in memory twice, as bytes or as a map.
//!
//! Layout: an 8-byte magic, then one record per chunk, `[length: u32 LE][crc32: u32
//! LE][postcard SnapshotChunk]`, the last chunk saying it is the last. A file is written
//! under a temporary name, synced, then renamed and its directory synced: a file under its
//! final name is complete, so a damaged or short one is corruption, never a torn write,
//! and recovery refuses it rather than start from less than it acknowledged.

use crate::core::{FrozenState, SnapshotAssembly, UnversionedSnapshotChunk};
use common::ballot::Slot;
use common::message::SnapshotChunk;
use runtime::file_system::{FileSystem, LogFile};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The first bytes of every snapshot file written today.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"PXSNAP02";

/// The first bytes of a snapshot file written before revisions were kept: its chunks are
/// [`UnversionedSnapshotChunk`]s. Still read.
pub const UNVERSIONED_SNAPSHOT_MAGIC: &[u8; 8] = b"PXSNAP01";

const RECORD_HEADER_BYTES: usize = 8;

/// A chunk record longer than this is damage (a chunk holds about
/// [`crate::core::SNAPSHOT_CHUNK_BYTES`], plus one pair at most).
pub const CHUNK_RECORD_BYTES_MAX: usize = 256 * 1024 * 1024;

const SUFFIX: &str = ".snap";
const PREFIX: &str = "snapshot-";

/// The file name of the snapshot at `slot`.
pub fn file_name(slot: Slot) -> String {
    format!("{PREFIX}{slot:020}{SUFFIX}")
}

/// Tells temporary files of concurrent writers apart.
static NEXT_WRITER: AtomicU64 = AtomicU64::new(1);

/// A snapshot file being written, under a temporary name until [`SnapshotFileWriter::finish`].
pub struct SnapshotFileWriter {
    file: Box<dyn LogFile>,
    written_bytes: u64,
    temporary: PathBuf,
    path: PathBuf,
    directory: PathBuf,
    applied_slot: Slot,
    next_index: u32,
    buffer: Vec<u8>,
}

impl SnapshotFileWriter {
    /// Starts the snapshot file of `applied_slot` in `directory`.
    pub fn create(
        file_system: &dyn FileSystem,
        directory: &Path,
        applied_slot: Slot,
    ) -> io::Result<Self> {
        let name = file_name(applied_slot);
        let writer = NEXT_WRITER.fetch_add(1, Ordering::Relaxed);
        let temporary = directory.join(format!("{name}.{writer}.partial"));
        let mut file = file_system.create(&temporary)?;
        file.write_at(0, SNAPSHOT_MAGIC)?;
        Ok(SnapshotFileWriter {
            file,
            written_bytes: SNAPSHOT_MAGIC.len() as u64,
            temporary,
            path: directory.join(name),
            directory: directory.to_path_buf(),
            applied_slot,
            next_index: 0,
            buffer: Vec::new(),
        })
    }

    /// The slot of the snapshot being written.
    pub fn applied_slot(&self) -> Slot {
        self.applied_slot
    }

    /// Appends the next chunk, which must be of this snapshot and in order.
    pub fn write_chunk(&mut self, chunk: &SnapshotChunk) -> io::Result<()> {
        if chunk.applied_slot != self.applied_slot || chunk.index != self.next_index {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "chunk {} of the snapshot at slot {} written where chunk {} at slot {} \
                     was due",
                    chunk.index, chunk.applied_slot, self.next_index, self.applied_slot
                ),
            ));
        }
        self.buffer.clear();
        self.buffer.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
        postcard::to_io(chunk, &mut self.buffer).map_err(io::Error::other)?;
        let payload_bytes = self.buffer.len() - RECORD_HEADER_BYTES;
        if payload_bytes > CHUNK_RECORD_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a snapshot chunk of {payload_bytes} bytes"),
            ));
        }
        let crc = crc32fast::hash(&self.buffer[RECORD_HEADER_BYTES..]);
        self.buffer[..4].copy_from_slice(&(payload_bytes as u32).to_le_bytes());
        self.buffer[4..8].copy_from_slice(&crc.to_le_bytes());
        self.file.write_at(self.written_bytes, &self.buffer)?;
        self.written_bytes += self.buffer.len() as u64;
        self.next_index += 1;
        Ok(())
    }

    /// Makes the file durable under its final name; returns that name.
    pub fn finish(mut self, file_system: &dyn FileSystem) -> io::Result<PathBuf> {
        self.file.sync()?;
        file_system.rename(&self.temporary, &self.path)?;
        file_system.sync_directory(&self.directory)?;
        Ok(self.path)
    }

    /// Gives up: the temporary file goes (best effort; recovery removes what is left).
    pub fn abandon(self, file_system: &dyn FileSystem) {
        let _ = file_system.remove_file(&self.temporary);
    }
}

/// Writes `state` as its snapshot file in `directory`, in chunks of about `chunk_bytes`;
/// stops early (with an `Interrupted` error, the temporary file removed) once `cancel`
/// is set.
pub fn write(
    file_system: &dyn FileSystem,
    directory: &Path,
    state: &FrozenState,
    chunk_bytes: usize,
    cancel: &AtomicBool,
) -> io::Result<PathBuf> {
    let mut writer = SnapshotFileWriter::create(file_system, directory, state.applied_slot)?;
    for chunk in state.chunks(chunk_bytes) {
        let written = match cancel.load(Ordering::Relaxed) {
            true => Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the snapshot is no longer wanted",
            )),
            false => writer.write_chunk(&chunk),
        };
        if let Err(error) = written {
            writer.abandon(file_system);
            return Err(error);
        }
    }
    writer.finish(file_system)
}

/// Reads the snapshot file of `applied_slot` in `directory`, chunk by chunk, into the
/// state it holds; any damage is an error that says where.
pub fn read(
    file_system: &dyn FileSystem,
    directory: &Path,
    applied_slot: Slot,
) -> Result<FrozenState, String> {
    let path = directory.join(file_name(applied_slot));
    let shown = path.display();
    if !file_system.exists(&path) {
        return Err(format!(
            "the snapshot file {shown} that the log refers to is missing"
        ));
    }
    let file = file_system
        .open(&path)
        .map_err(|error| format!("cannot open the snapshot file {shown}: {error}"))?;
    let mut reader = Reader {
        file,
        offset: 0,
        shown: shown.to_string(),
    };
    let mut buffer = Vec::new();
    reader.read_exactly(&mut buffer, SNAPSHOT_MAGIC.len(), "its magic")?;
    let unversioned = match &buffer[..] {
        magic if magic == SNAPSHOT_MAGIC => false,
        magic if magic == UNVERSIONED_SNAPSHOT_MAGIC => true,
        _ => return Err(format!("{shown} is not a snapshot file (bad magic)")),
    };
    let mut assembly: Option<SnapshotAssembly> = None;
    loop {
        let record_at = reader.offset;
        reader.read_exactly(&mut buffer, RECORD_HEADER_BYTES, "a record header")?;
        let length = u32::from_le_bytes(buffer[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(buffer[4..8].try_into().expect("4 bytes"));
        if length > CHUNK_RECORD_BYTES_MAX {
            return Err(format!(
                "the snapshot file {shown} has a record of {length} bytes at byte {record_at}"
            ));
        }
        reader.read_exactly(&mut buffer, length, "a record")?;
        if crc32fast::hash(&buffer) != crc {
            return Err(format!(
                "the snapshot file {shown} is damaged: the record at byte {record_at} fails \
                 its checksum"
            ));
        }
        let decoded = match unversioned {
            false => postcard::from_bytes::<SnapshotChunk>(&buffer),
            true => postcard::from_bytes::<UnversionedSnapshotChunk>(&buffer)
                .map(UnversionedSnapshotChunk::into_chunk),
        };
        let chunk = decoded.map_err(|error| {
            format!(
                "the snapshot file {shown}: the record at byte {record_at} does not decode: \
                 {error}"
            )
        })?;
        if chunk.applied_slot != applied_slot {
            return Err(format!(
                "the snapshot file {shown} holds a chunk of slot {}",
                chunk.applied_slot
            ));
        }
        let assembly = assembly.get_or_insert_with(|| SnapshotAssembly::new(&chunk));
        assembly
            .add(&chunk)
            .map_err(|problem| format!("the snapshot file {shown}: {problem}"))?;
        if assembly.is_complete() {
            break;
        }
    }
    let mut probe = [0u8; 1];
    if reader.file.read_at(reader.offset, &mut probe).unwrap_or(0) != 0 {
        return Err(format!(
            "the snapshot file {shown} holds bytes after its last chunk, at byte {}",
            reader.offset
        ));
    }
    Ok(assembly.expect("one chunk at least").finish())
}

/// Reads a snapshot file front to back.
struct Reader {
    file: Box<dyn LogFile>,
    offset: u64,
    shown: String,
}

impl Reader {
    /// Reads the next `length` bytes into `buffer`; a file that ends first is damaged.
    fn read_exactly(
        &mut self,
        buffer: &mut Vec<u8>,
        length: usize,
        what: &str,
    ) -> Result<(), String> {
        buffer.resize(length, 0);
        let read = self
            .file
            .read_at(self.offset, buffer)
            .map_err(|error| format!("cannot read the snapshot file {}: {error}", self.shown))?;
        if read < length {
            return Err(format!(
                "the snapshot file {} ends inside {what} at byte {}",
                self.shown,
                self.offset + read as u64
            ));
        }
        self.offset += length as u64;
        Ok(())
    }
}

/// Removes from `directory` every snapshot file but the one of `keep`, and every
/// temporary one (a write a crash interrupted); returns how many went.
pub fn remove_all_but(
    file_system: &dyn FileSystem,
    directory: &Path,
    keep: Option<Slot>,
) -> io::Result<usize> {
    let kept = keep.map(file_name);
    let mut removed = 0;
    for name in file_system.list_directory(directory)? {
        let Some(name) = name.to_str() else { continue };
        let ours =
            name.starts_with(PREFIX) && (name.ends_with(SUFFIX) || name.ends_with(".partial"));
        if ours && Some(name) != kept.as_deref() {
            file_system.remove_file(&directory.join(name))?;
            removed += 1;
        }
    }
    if removed > 0 {
        file_system.sync_directory(directory)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Learner, LearnerOptions};
    use common::message::{
        AcceptedEntry, AppliedRequest, Message, StateSnapshot, VersionedValue, FINGERPRINT_UNKNOWN,
    };
    use common::node::NodeId;
    use common::value::{Command, RequestId, Value};
    use runtime::file_system::{create_dir_all_durably, SimulatedFileSystem};

    fn learner_with(slots: u64) -> Learner {
        let mut learner = Learner::new(LearnerOptions::new(1, 2));
        for slot in 1..=slots {
            let value = Value::Batch(vec![Command::put(
                RequestId(slot as u128),
                format!("key{}", slot % 50),
                "x".repeat(slot as usize % 90),
            )]);
            for acceptor in [1, 2] {
                learner.handle(
                    NodeId::acceptor(acceptor),
                    Message::AcceptedValues {
                        entries: vec![AcceptedEntry {
                            slot,
                            ballot: common::ballot::Ballot::new(1, 1),
                            value: value.clone(),
                        }],
                    },
                );
            }
        }
        learner
    }

    #[test]
    fn a_written_snapshot_file_reads_back_as_the_same_state_and_damage_is_refused() {
        let file_system = SimulatedFileSystem::new();
        let directory = PathBuf::from("/data");
        create_dir_all_durably(&file_system, &directory).unwrap();
        let state = learner_with(200).freeze();
        let path = write(
            &file_system,
            &directory,
            &state,
            256,
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(read(&file_system, &directory, 200).unwrap(), state);
        let bytes = file_system.read(&path).unwrap();
        assert!(bytes.len() > 2000, "many chunks: {} bytes", bytes.len());
        for (at, change) in [(bytes.len() / 2, Some(0x40u8)), (bytes.len() - 3, None)] {
            let mut damaged = bytes.clone();
            match change {
                Some(bit) => damaged[at] ^= bit,
                None => damaged.truncate(at),
            }
            file_system.write_durably(&path, &damaged).unwrap();
            let problem = read(&file_system, &directory, 200).unwrap_err();
            assert!(problem.contains("snapshot file"), "{problem}");
        }
        assert!(read(&file_system, &directory, 7)
            .unwrap_err()
            .contains("missing"));
    }

    #[test]
    fn a_snapshot_file_written_before_revisions_reads_back_with_revisions_zero() {
        let file_system = SimulatedFileSystem::new();
        let directory = PathBuf::from("/data");
        create_dir_all_durably(&file_system, &directory).unwrap();
        let chunks = [
            UnversionedSnapshotChunk {
                applied_slot: 9,
                index: 0,
                key_count: 2,
                request_id_count: 1,
                key_values: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
                applied_request_ids: vec![],
                last: false,
            },
            UnversionedSnapshotChunk {
                applied_slot: 9,
                index: 1,
                key_count: 2,
                request_id_count: 1,
                key_values: vec![],
                applied_request_ids: vec![(RequestId(5), 8)],
                last: true,
            },
        ];
        let mut bytes = UNVERSIONED_SNAPSHOT_MAGIC.to_vec();
        for chunk in &chunks {
            let record = postcard::to_allocvec(chunk).unwrap();
            bytes.extend_from_slice(&(record.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(&record).to_le_bytes());
            bytes.extend_from_slice(&record);
        }
        file_system
            .write_durably(&directory.join(file_name(9)), &bytes)
            .unwrap();
        let state = read(&file_system, &directory, 9).unwrap().to_snapshot();
        let unversioned = |value: &str| VersionedValue {
            value: value.into(),
            create_revision: 0,
            mod_revision: 0,
            version: 0,
        };
        assert_eq!(
            state,
            StateSnapshot {
                applied_slot: 9,
                key_values: vec![
                    ("a".into(), unversioned("1")),
                    ("b".into(), unversioned("2"))
                ],
                applied_request_ids: vec![AppliedRequest {
                    request_id: RequestId(5),
                    slot: 8,
                    fingerprint: FINGERPRINT_UNKNOWN,
                }],
            }
        );
    }

    #[test]
    fn a_cancelled_write_leaves_nothing_and_leftovers_are_removed() {
        let file_system = SimulatedFileSystem::new();
        let directory = PathBuf::from("/data");
        create_dir_all_durably(&file_system, &directory).unwrap();
        let state = learner_with(50).freeze();
        let cancelled = write(&file_system, &directory, &state, 64, &AtomicBool::new(true));
        assert_eq!(cancelled.unwrap_err().kind(), io::ErrorKind::Interrupted);
        assert!(file_system.list_directory(&directory).unwrap().is_empty());
        write(
            &file_system,
            &directory,
            &state,
            64,
            &AtomicBool::new(false),
        )
        .unwrap();
        let older = learner_with(20).freeze();
        write(
            &file_system,
            &directory,
            &older,
            64,
            &AtomicBool::new(false),
        )
        .unwrap();
        SnapshotFileWriter::create(&file_system, &directory, 60).unwrap();
        assert_eq!(
            remove_all_but(&file_system, &directory, Some(50)).unwrap(),
            2
        );
        assert_eq!(
            file_system.list_directory(&directory).unwrap(),
            vec![std::ffi::OsString::from(file_name(50))]
        );
    }
}
