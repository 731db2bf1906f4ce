//! The few file-system operations the write-ahead log needs, behind a trait, so that the
//! same log code runs over the real disk ([`RealFileSystem`]) and over a simulated one
//! ([`SimulatedFileSystem`]) that knows exactly what a crash may keep.
//!
//! The simulated file system follows POSIX, not the kindest journaling file system: data
//! written to a file is durable only once that file is synced, and a file's (or a
//! directory's) existence under its name only once its *directory* is synced. A crash keeps
//! what was durable plus any prefix of the changes made since (writes, truncations,
//! directory entries), and may tear the first change it drops: part of a write reaches
//! the disk. So a test can stop the program at every write and sync point, crash, and
//! check that recovery finds a state it was allowed to find.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// An open file of a [`FileSystem`].
pub trait LogFile: Send {
    /// The whole content.
    fn read_all(&mut self) -> io::Result<Vec<u8>>;
    /// Reads up to `buffer.len()` bytes at `offset` into `buffer`, returning how many
    /// (fewer only at the end of the file): for files too large to read whole.
    fn read_at(&mut self, offset: u64, buffer: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `bytes` at `offset` (extending the file if needed); not durable
    /// until [`LogFile::sync`].
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Cuts (or extends with zeros) the file to `length` bytes; not durable until synced.
    fn set_len(&mut self, length: u64) -> io::Result<()>;
    /// Makes every change to the file's data and length durable (`fdatasync`). An error
    /// means some may be lost, whatever a retry says.
    fn sync(&mut self) -> io::Result<()>;
}

/// Where the log lives.
pub trait FileSystem: Send + Sync {
    /// Whether `path` names a file or directory.
    fn exists(&self, path: &Path) -> bool;
    /// Creates the directory `path` (its parent must exist); not durable until its parent
    /// directory is synced.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Opens the file at `path` for reading and writing, creating it empty if missing (a
    /// new file's name is durable only once its directory is synced).
    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    /// Creates the file at `path`, or empties it if it exists.
    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    /// Renames `from` to `to` (in the same directory), replacing `to`; durable once the
    /// directory is synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable (new names, renames, removals).
    fn sync_directory(&self, path: &Path) -> io::Result<()>;
    /// Removes the file at `path`; durable once the directory is synced.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of the directory `path`, in no particular order.
    fn list_directory(&self, path: &Path) -> io::Result<Vec<OsString>>;
}

/// Creates `directory` and any missing ancestors, and makes each new one durable by
/// syncing its parent: without that, a crash may lose a freshly made data directory with
/// everything synced inside it.
pub fn create_dir_all_durably(file_system: &dyn FileSystem, directory: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut current = Some(directory);
    while let Some(path) = current.filter(|path| !path.as_os_str().is_empty()) {
        if file_system.exists(path) {
            break;
        }
        missing.push(path.to_path_buf());
        current = path.parent();
    }
    for path in missing.iter().rev() {
        file_system.create_dir(path)?;
        file_system.sync_directory(parent_of(path))?;
    }
    Ok(())
}

/// The directory holding `path` ("." for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The real disk, through `std::fs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFileSystem;

struct RealFile(File);

impl LogFile for RealFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        self.0.seek(SeekFrom::Start(0))?;
        let mut contents = Vec::new();
        self.0.read_to_end(&mut contents)?;
        Ok(contents)
    }

    fn read_at(&mut self, offset: u64, buffer: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buffer.len() {
            match std::os::unix::fs::FileExt::read_at(
                &self.0,
                &mut buffer[filled..],
                offset + filled as u64,
            ) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(filled)
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, bytes, offset)
    }

    fn set_len(&mut self, length: u64) -> io::Result<()> {
        self.0.set_len(length)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl FileSystem for RealFileSystem {
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        match fs::create_dir(path) {
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Box::new(RealFile(file)))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(RealFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_directory(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list_directory(&self, path: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(path)?
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect()
    }
}

/// A change to a file since its last sync.
#[derive(Clone, Debug)]
enum FileChange {
    Write { offset: u64, bytes: Vec<u8> },
    SetLength(u64),
}

impl FileChange {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            FileChange::Write { offset, bytes } => {
                let end = *offset as usize + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[*offset as usize..end].copy_from_slice(bytes);
            }
            FileChange::SetLength(length) => data.resize(*length as usize, 0),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    unsynced: Vec<FileChange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    File(usize),
    Directory,
}

/// A change to a directory's entries since its last sync.
#[derive(Clone, Debug)]
enum EntryChange {
    Link(OsString, Entry),
    Rename { from: OsString, to: OsString },
    Unlink(OsString),
}

impl EntryChange {
    fn apply(&self, entries: &mut BTreeMap<OsString, Entry>) {
        match self {
            EntryChange::Link(name, entry) => {
                entries.insert(name.clone(), *entry);
            }
            EntryChange::Rename { from, to } => {
                if let Some(entry) = entries.remove(from) {
                    entries.insert(to.clone(), entry);
                }
            }
            EntryChange::Unlink(name) => {
                entries.remove(name);
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Directory {
    durable: BTreeMap<OsString, Entry>,
    current: BTreeMap<OsString, Entry>,
    unsynced: Vec<EntryChange>,
}

#[derive(Clone, Debug, Default)]
struct State {
    inodes: Vec<Inode>,
    /// Every directory ever made, by absolute path; the root `/` always exists.
    directories: BTreeMap<PathBuf, Directory>,
    /// Mutating operations so far (writes, truncations, syncs, creations, renames).
    operations: u64,
    /// Operations beyond this many fail: the process died there.
    operations_allowed: Option<u64>,
    /// Every sync fails with an I/O error (a failing disk).
    syncs_fail: bool,
    /// The next this many file writes fail with this kind, writing nothing.
    writes_to_fail: Option<(u64, io::ErrorKind)>,
    /// The next this many file syncs fail with this kind, and drop the file's unsynced
    /// changes, as Linux may drop the dirty pages of a file whose writeback failed.
    syncs_to_fail: Option<(u64, io::ErrorKind)>,
}

/// An in-memory file system that remembers, per file and per directory, what is durable
/// and what is not yet, so that [`SimulatedFileSystem::crash`] can keep exactly what a
/// crash may keep. Paths must be absolute. Cloning shares the file system.
#[derive(Clone, Debug)]
pub struct SimulatedFileSystem {
    state: Arc<Mutex<State>>,
}

impl Default for SimulatedFileSystem {
    fn default() -> Self {
        SimulatedFileSystem::new()
    }
}

/// What a crash keeps of the changes not yet synced: given how many changes are pending
/// (or how many bytes a torn write holds), the choice returns how many survive, from 0 to
/// that number.
pub trait CrashChoice {
    /// How many of `pending` survive, in `[0, pending]`.
    fn keep(&mut self, pending: u64) -> u64;
}

/// Keeps nothing that was not synced.
pub struct KeepNothing;

impl CrashChoice for KeepNothing {
    fn keep(&mut self, _pending: u64) -> u64 {
        0
    }
}

/// Keeps everything written, synced or not (as a process crash without a power loss).
pub struct KeepEverything;

impl CrashChoice for KeepEverything {
    fn keep(&mut self, pending: u64) -> u64 {
        pending
    }
}

/// Keeps a random prefix of what was not synced, drawn from a seed (splitmix64).
pub struct KeepRandomly(pub u64);

impl CrashChoice for KeepRandomly {
    fn keep(&mut self, pending: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^= mixed >> 31;
        mixed % (pending + 1)
    }
}

fn split(path: &Path) -> io::Result<(PathBuf, OsString)> {
    if !path.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the simulated file system wants absolute paths, not {path:?}"),
        ));
    }
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    Ok((normalize(parent_of(path)), name.to_os_string()))
}

fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::from("/");
    for component in path.components() {
        if let Component::Normal(name) = component {
            normal.push(name);
        }
    }
    normal
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{path:?} does not exist"))
}

impl State {
    /// Counts one mutating operation; fails once the process is meant to be gone.
    fn operation(&mut self) -> io::Result<()> {
        if self
            .operations_allowed
            .is_some_and(|allowed| self.operations >= allowed)
        {
            return Err(io::Error::other(
                "simulated crash: the process stopped here",
            ));
        }
        self.operations += 1;
        Ok(())
    }

    fn lookup(&self, path: &Path) -> Option<Entry> {
        let path = normalize(path);
        if path == Path::new("/") {
            return Some(Entry::Directory);
        }
        let (parent, name) = split(&path).ok()?;
        self.directories.get(&parent)?.current.get(&name).copied()
    }

    fn link(&mut self, path: &Path, entry: Entry) -> io::Result<()> {
        let (parent, name) = split(path)?;
        let directory = self
            .directories
            .get_mut(&parent)
            .ok_or_else(|| not_found(&parent))?;
        directory.current.insert(name.clone(), entry);
        directory.unsynced.push(EntryChange::Link(name, entry));
        Ok(())
    }

    /// The error of an injected failure of `failures`, counting it down.
    fn injected(failures: &mut Option<(u64, io::ErrorKind)>, what: &str) -> Option<io::Error> {
        let (count, kind) = failures.as_mut().filter(|(count, _)| *count > 0)?;
        *count -= 1;
        Some(io::Error::new(
            *kind,
            format!("simulated {what} failure ({kind})"),
        ))
    }

    fn new_inode(&mut self) -> usize {
        self.inodes.push(Inode::default());
        self.inodes.len() - 1
    }
}

impl SimulatedFileSystem {
    /// An empty file system: only `/`.
    pub fn new() -> Self {
        let mut state = State::default();
        state
            .directories
            .insert(PathBuf::from("/"), Directory::default());
        SimulatedFileSystem {
            state: Arc::new(Mutex::new(state)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Mutating operations so far: the crash points of a workload are 0..=this.
    pub fn operation_count(&self) -> u64 {
        self.lock().operations
    }

    /// Lets only `count` more operations succeed; the later ones fail, as if the process
    /// died at that point.
    pub fn stop_after(&self, count: u64) {
        let mut state = self.lock();
        state.operations_allowed = Some(state.operations + count);
    }

    /// Makes every later sync fail with an I/O error, as a failing disk does.
    pub fn fail_syncs(&self) {
        self.lock().syncs_fail = true;
    }

    /// Makes the next `count` file writes fail with an error of `kind` (e.g.
    /// [`io::ErrorKind::StorageFull`], a full disk), writing nothing.
    pub fn fail_next_writes(&self, count: u64, kind: io::ErrorKind) {
        self.lock().writes_to_fail = Some((count, kind));
    }

    /// Makes the next `count` file syncs fail with an error of `kind`; each also drops the
    /// file's changes since its last sync, as Linux may after a failed writeback (a
    /// retried fsync then succeeds over the lost writes).
    pub fn fail_next_syncs(&self, count: u64, kind: io::ErrorKind) {
        self.lock().syncs_to_fail = Some((count, kind));
    }

    /// The content of the file at `path` as the program sees it now.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        match state.lookup(path)? {
            Entry::File(inode) => Some(state.inodes[inode].current.clone()),
            Entry::Directory => None,
        }
    }

    /// Replaces the content of the file at `path` (creating it), durably: for planting
    /// damage in tests.
    pub fn write_durably(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        let inode = match state.lookup(path) {
            Some(Entry::File(inode)) => inode,
            Some(Entry::Directory) => return Err(io::Error::other("a directory")),
            None => {
                let inode = state.new_inode();
                let (parent, name) = split(path)?;
                let directory = state
                    .directories
                    .get_mut(&parent)
                    .ok_or_else(|| not_found(&parent))?;
                directory.current.insert(name.clone(), Entry::File(inode));
                directory.durable.insert(name, Entry::File(inode));
                inode
            }
        };
        let file = &mut state.inodes[inode];
        file.current = bytes.to_vec();
        file.durable = bytes.to_vec();
        file.unsynced.clear();
        Ok(())
    }

    /// The file system after a crash now: what was durable, plus, per file and per
    /// directory, the prefix of the later changes that `choice` keeps (the first change
    /// dropped may be a write torn to a prefix of its bytes). Everything else is lost,
    /// including files and directories whose names were never made durable.
    pub fn crash(&self, choice: &mut dyn CrashChoice) -> SimulatedFileSystem {
        let state = self.lock();
        let mut directories: BTreeMap<PathBuf, BTreeMap<OsString, Entry>> = BTreeMap::new();
        for (path, directory) in &state.directories {
            let mut entries = directory.durable.clone();
            let kept = choice.keep(directory.unsynced.len() as u64) as usize;
            for change in &directory.unsynced[..kept] {
                change.apply(&mut entries);
            }
            directories.insert(path.clone(), entries);
        }
        let inodes: Vec<Inode> = state
            .inodes
            .iter()
            .map(|inode| {
                let mut data = inode.durable.clone();
                let kept = choice.keep(inode.unsynced.len() as u64) as usize;
                for change in &inode.unsynced[..kept] {
                    change.apply(&mut data);
                }
                if let Some(FileChange::Write { offset, bytes }) = inode.unsynced.get(kept) {
                    let torn = choice.keep(bytes.len() as u64) as usize;
                    FileChange::Write {
                        offset: *offset,
                        bytes: bytes[..torn].to_vec(),
                    }
                    .apply(&mut data);
                }
                Inode {
                    durable: data.clone(),
                    current: data,
                    unsynced: Vec::new(),
                }
            })
            .collect();
        // Only what is reachable from the root through durable names survives.
        let mut reachable = State {
            inodes,
            ..State::default()
        };
        let mut stack = vec![PathBuf::from("/")];
        while let Some(path) = stack.pop() {
            let entries = directories.remove(&path).unwrap_or_default();
            for (name, entry) in &entries {
                if *entry == Entry::Directory {
                    stack.push(path.join(name));
                }
            }
            reachable.directories.insert(
                path,
                Directory {
                    durable: entries.clone(),
                    current: entries,
                    unsynced: Vec::new(),
                },
            );
        }
        SimulatedFileSystem {
            state: Arc::new(Mutex::new(reachable)),
        }
    }
}

struct SimulatedFile {
    state: Arc<Mutex<State>>,
    inode: usize,
}

impl SimulatedFile {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn change(&mut self, change: FileChange) -> io::Result<()> {
        let mut state = self.lock();
        state.operation()?;
        if let Some(error) = State::injected(&mut state.writes_to_fail, "write") {
            return Err(error);
        }
        let inode = &mut state.inodes[self.inode];
        change.apply(&mut inode.current);
        inode.unsynced.push(change);
        Ok(())
    }
}

impl LogFile for SimulatedFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        Ok(self.lock().inodes[self.inode].current.clone())
    }

    fn read_at(&mut self, offset: u64, buffer: &mut [u8]) -> io::Result<usize> {
        let state = self.lock();
        let data = &state.inodes[self.inode].current;
        let start = (offset as usize).min(data.len());
        let end = (start + buffer.len()).min(data.len());
        buffer[..end - start].copy_from_slice(&data[start..end]);
        Ok(end - start)
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.change(FileChange::Write {
            offset,
            bytes: bytes.to_vec(),
        })
    }

    fn set_len(&mut self, length: u64) -> io::Result<()> {
        self.change(FileChange::SetLength(length))
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut state = self.lock();
        state.operation()?;
        if state.syncs_fail {
            return Err(io::Error::other("simulated fsync failure (EIO)"));
        }
        if let Some(error) = State::injected(&mut state.syncs_to_fail, "fsync") {
            let inode = &mut state.inodes[self.inode];
            inode.current = inode.durable.clone();
            inode.unsynced.clear();
            return Err(error);
        }
        let inode = &mut state.inodes[self.inode];
        inode.durable = inode.current.clone();
        inode.unsynced.clear();
        Ok(())
    }
}

impl FileSystem for SimulatedFileSystem {
    fn exists(&self, path: &Path) -> bool {
        self.lock().lookup(path).is_some()
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.operation()?;
        match state.lookup(path) {
            Some(Entry::Directory) => return Ok(()),
            Some(Entry::File(_)) => return Err(io::Error::other("a file is in the way")),
            None => {}
        }
        state.link(path, Entry::Directory)?;
        state
            .directories
            .insert(normalize(path), Directory::default());
        Ok(())
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let mut state = self.lock();
        let inode = match state.lookup(path) {
            Some(Entry::File(inode)) => inode,
            Some(Entry::Directory) => return Err(io::Error::other("a directory")),
            None => {
                state.operation()?;
                let inode = state.new_inode();
                state.link(path, Entry::File(inode))?;
                inode
            }
        };
        Ok(Box::new(SimulatedFile {
            state: self.state.clone(),
            inode,
        }))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let mut file = self.open(path)?;
        file.set_len(0)?;
        Ok(file)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.operation()?;
        let (from_parent, from_name) = split(from)?;
        let (to_parent, to_name) = split(to)?;
        if from_parent != to_parent {
            return Err(io::Error::other(
                "the simulated file system renames within a directory only",
            ));
        }
        let directory = state
            .directories
            .get_mut(&from_parent)
            .ok_or_else(|| not_found(from))?;
        let change = EntryChange::Rename {
            from: from_name,
            to: to_name,
        };
        if let EntryChange::Rename { from: name, .. } = &change {
            if !directory.current.contains_key(name) {
                return Err(not_found(from));
            }
        }
        change.apply(&mut directory.current);
        directory.unsynced.push(change);
        Ok(())
    }

    fn sync_directory(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.operation()?;
        if state.syncs_fail {
            return Err(io::Error::other("simulated fsync failure (EIO)"));
        }
        let directory = state
            .directories
            .get_mut(&normalize(path))
            .ok_or_else(|| not_found(path))?;
        directory.durable = directory.current.clone();
        directory.unsynced.clear();
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.operation()?;
        match state.lookup(path) {
            Some(Entry::File(_)) => {}
            Some(Entry::Directory) => return Err(io::Error::other("a directory")),
            None => return Err(not_found(path)),
        }
        let (parent, name) = split(path)?;
        let directory = state
            .directories
            .get_mut(&parent)
            .ok_or_else(|| not_found(&parent))?;
        let change = EntryChange::Unlink(name);
        change.apply(&mut directory.current);
        directory.unsynced.push(change);
        Ok(())
    }

    fn list_directory(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let state = self.lock();
        let directory = state
            .directories
            .get(&normalize(path))
            .ok_or_else(|| not_found(path))?;
        Ok(directory.current.keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> PathBuf {
        PathBuf::from(text)
    }

    #[test]
    fn synced_data_survives_a_crash_and_unsynced_data_may_not() {
        let file_system = SimulatedFileSystem::new();
        create_dir_all_durably(&file_system, &path("/data")).unwrap();
        let mut file = file_system.open(&path("/data/log")).unwrap();
        file_system.sync_directory(&path("/data")).unwrap();
        file.write_at(0, b"durable").unwrap();
        file.sync().unwrap();
        file.write_at(7, b" and not").unwrap();
        let kept_nothing = file_system.crash(&mut KeepNothing);
        assert_eq!(kept_nothing.read(&path("/data/log")).unwrap(), b"durable");
        let kept_everything = file_system.crash(&mut KeepEverything);
        assert_eq!(
            kept_everything.read(&path("/data/log")).unwrap(),
            b"durable and not"
        );
    }

    #[test]
    fn a_crash_may_tear_the_first_write_it_drops() {
        let file_system = SimulatedFileSystem::new();
        let mut file = file_system.open(&path("/log")).unwrap();
        file_system.sync_directory(&path("/")).unwrap();
        file.write_at(0, b"0123456789").unwrap();
        struct Tear;
        impl CrashChoice for Tear {
            fn keep(&mut self, pending: u64) -> u64 {
                if pending == 10 {
                    4 // of the write's bytes
                } else {
                    0 // of the changes
                }
            }
        }
        let torn = file_system.crash(&mut Tear);
        assert_eq!(torn.read(&path("/log")).unwrap(), b"0123");
    }

    #[test]
    fn a_new_name_is_lost_unless_its_directory_is_synced() {
        let file_system = SimulatedFileSystem::new();
        file_system.create_dir(&path("/data")).unwrap();
        let mut file = file_system.open(&path("/data/log")).unwrap();
        file.write_at(0, b"synced").unwrap();
        file.sync().unwrap();
        // Neither /data in / nor log in /data was made durable.
        assert!(!file_system
            .crash(&mut KeepNothing)
            .exists(&path("/data/log")));
        file_system.sync_directory(&path("/")).unwrap();
        assert!(file_system.crash(&mut KeepNothing).exists(&path("/data")));
        assert!(!file_system
            .crash(&mut KeepNothing)
            .exists(&path("/data/log")));
        file_system.sync_directory(&path("/data")).unwrap();
        let crashed = file_system.crash(&mut KeepNothing);
        assert_eq!(crashed.read(&path("/data/log")).unwrap(), b"synced");
    }

    #[test]
    fn a_rename_is_lost_unless_its_directory_is_synced() {
        let file_system = SimulatedFileSystem::new();
        file_system.write_durably(&path("/log"), b"old").unwrap();
        let mut new = file_system.create(&path("/log.new")).unwrap();
        new.write_at(0, b"new").unwrap();
        new.sync().unwrap();
        file_system
            .rename(&path("/log.new"), &path("/log"))
            .unwrap();
        assert_eq!(file_system.read(&path("/log")).unwrap(), b"new");
        assert_eq!(
            file_system
                .crash(&mut KeepNothing)
                .read(&path("/log"))
                .unwrap(),
            b"old"
        );
        file_system.sync_directory(&path("/")).unwrap();
        assert_eq!(
            file_system
                .crash(&mut KeepNothing)
                .read(&path("/log"))
                .unwrap(),
            b"new"
        );
    }

    #[test]
    fn a_stopped_process_changes_nothing_more_and_failing_syncs_fail() {
        let file_system = SimulatedFileSystem::new();
        let mut file = file_system.open(&path("/log")).unwrap();
        file_system.stop_after(1);
        file.write_at(0, b"a").unwrap();
        assert!(file.write_at(1, b"b").is_err());
        assert_eq!(file_system.read(&path("/log")).unwrap(), b"a");
        let failing = SimulatedFileSystem::new();
        let mut file = failing.open(&path("/log")).unwrap();
        failing.fail_syncs();
        file.write_at(0, b"a").unwrap();
        assert!(file.sync().is_err());
    }

    #[test]
    fn injected_failures_fail_as_many_operations_as_asked_and_a_failed_sync_drops_changes() {
        let file_system = SimulatedFileSystem::new();
        let mut file = file_system.open(&path("/log")).unwrap();
        file_system.sync_directory(&path("/")).unwrap();
        file.write_at(0, b"durable").unwrap();
        file.sync().unwrap();
        file_system.fail_next_writes(1, io::ErrorKind::StorageFull);
        let error = file.write_at(7, b" lost").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        file.write_at(7, b" dropped").unwrap();
        file_system.fail_next_syncs(1, io::ErrorKind::StorageFull);
        assert_eq!(file.sync().unwrap_err().kind(), io::ErrorKind::StorageFull);
        assert_eq!(file_system.read(&path("/log")).unwrap(), b"durable");
        file.write_at(7, b" kept").unwrap();
        file.sync().unwrap();
        assert_eq!(
            file_system
                .crash(&mut KeepNothing)
                .read(&path("/log"))
                .unwrap(),
            b"durable kept"
        );
    }

    #[test]
    fn the_real_file_system_writes_at_offsets_and_creates_directories() {
        let directory = tempfile::tempdir().unwrap();
        let nested = directory.path().join("a/b");
        create_dir_all_durably(&RealFileSystem, &nested).unwrap();
        let mut file = RealFileSystem.open(&nested.join("log")).unwrap();
        file.write_at(0, b"hello").unwrap();
        file.write_at(5, b" world").unwrap();
        file.sync().unwrap();
        assert_eq!(file.read_all().unwrap(), b"hello world");
        file.set_len(5).unwrap();
        assert_eq!(file.read_all().unwrap(), b"hello");
    }
}
