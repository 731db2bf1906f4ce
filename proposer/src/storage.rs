//! The proposer's durable memory: the highest round it has used, in a small checksummed
//! log (`<data dir>/proposer-round.wal`; the last record counts).
//!
//! A round is synced before any message that carries a ballot of that round leaves
//! (the core asks for it, see [`crate::core`]), so a restarted proposer never reuses a
//! ballot, which could let two values be chosen for a slot. The log is rewritten as one
//! record once it outgrows [`REWRITE_THRESHOLD_BYTES`].

use crate::core::Proposer;
use anyhow::Context;
use common::ready::Write;
use runtime::driver::Log;
use runtime::file_system::FileSystem;
use runtime::wal::Wal;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The log's file name inside the data directory.
pub const ROUND_FILE_NAME: &str = "proposer-round.wal";

/// Past this size, the log is rewritten as its last round.
pub const REWRITE_THRESHOLD_BYTES: u64 = 1 << 20;

/// The durable highest round, as the driver of every role uses it.
pub struct RoundStore {
    wal: Wal,
    /// The highest round written.
    round: u64,
}

impl RoundStore {
    /// Opens (or creates) the round log in `directory` of `file_system` and returns it with
    /// the highest round it holds (0 for a new one).
    pub fn open_in(
        file_system: Arc<dyn FileSystem>,
        directory: &Path,
    ) -> anyhow::Result<(RoundStore, u64)> {
        let recovered = Wal::open_in(file_system, directory.join(ROUND_FILE_NAME))
            .with_context(|| format!("opening {}", directory.display()))?;
        let mut round = 0;
        for record in &recovered.records {
            let bytes: [u8; 8] = record
                .as_slice()
                .try_into()
                .context("proposer round record is not 8 bytes: corrupt")?;
            round = round.max(u64::from_le_bytes(bytes));
        }
        Ok((
            RoundStore {
                wal: recovered.wal,
                round,
            },
            round,
        ))
    }
}

impl Log<Proposer> for RoundStore {
    fn write(&mut self, writes: Vec<Write<u64>>) -> io::Result<()> {
        for write in writes {
            match write {
                Write::Append(round) => {
                    self.round = self.round.max(round);
                    self.wal.append(&round.to_le_bytes());
                }
                Write::Replace(_) => unreachable!("the proposer's core only appends"),
            }
        }
        self.wal.flush()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.wal.sync()
    }

    fn maintain(&mut self, _proposer: &Proposer) -> io::Result<()> {
        if self.wal.length_bytes() > REWRITE_THRESHOLD_BYTES {
            self.wal.rewrite([&self.round.to_le_bytes()[..]])?;
        }
        Ok(())
    }
}
