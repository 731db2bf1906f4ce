//! The simulated servers run exactly what the services run: each role's real core inside
//! the one driver of every role ([`runtime::driver::NodeDriver`]), over the role's real
//! log code (`acceptor::storage`, `proposer::storage`, `learner::storage`) on a simulated
//! disk ([`SimulatedFileSystem`], which knows what a crash may keep), and a simulated
//! network ([`SimulatedPeers`]). Only sockets, disks and clocks are simulated: batching,
//! group commit, the order of persist and send, compaction, the relay fallback of a
//! forwarded answer and the answers to `StatusRequest` are the production code.

use crate::network::Envelope;
use acceptor::config::AcceptorConfig;
use acceptor::core::{Acceptor, Record};
use acceptor::storage::AcceptorLog;
use common::message::{Message, PeerStatus};
use common::node::{NodeId, Role};
use common::ready::Write;
use learner::core::{Learner, LearnerOptions};
use learner::storage::LearnerLog;
use proposer::core::{Proposer, ProposerOptions};
use proposer::storage::RoundStore;
use runtime::driver::{Log, NodeDriver, Peers};
use runtime::file_system::SimulatedFileSystem;
use runtime::tls::Security;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

/// The acceptor's log is compacted past this size in the simulation (64 MiB in
/// production): small, so that runs of a thousand ticks compact many times.
pub const ACCEPTOR_COMPACTION_MINIMUM_BYTES: u64 = 4 * 1024;

/// Who is in the cluster and who is down (a crashed node has no open connection).
#[derive(Debug, Default)]
pub struct Membership {
    /// Every node, by role.
    pub nodes: Vec<NodeId>,
    /// The nodes crashed now.
    pub down: BTreeSet<NodeId>,
}

/// The simulated network as a node's driver sees it: a message to a node that is up (or
/// paused: its connections stay open) is queued in `outbox`, which the world schedules
/// after the batch; a message to a crashed node is refused, as a closed connection would.
pub struct SimulatedPeers {
    me: NodeId,
    membership: Rc<RefCell<Membership>>,
    /// What the node sent in its last batch, for the world to schedule.
    pub outbox: Vec<Envelope>,
    /// For an acceptor: whether its log holds a record not yet synced. Every answer of an
    /// acceptor reveals its log, so none may be queued then.
    unsynced: Option<Rc<Cell<bool>>>,
    /// Messages queued while `unsynced` was set: each one a broken persist-before-send.
    pub sent_before_sync: Vec<String>,
}

impl SimulatedPeers {
    /// The peers of `me` in `membership`.
    pub fn new(me: NodeId, membership: Rc<RefCell<Membership>>) -> Self {
        SimulatedPeers {
            me,
            membership,
            outbox: Vec::new(),
            unsynced: None,
            sent_before_sync: Vec::new(),
        }
    }
}

impl Peers for SimulatedPeers {
    fn me(&self) -> NodeId {
        self.me
    }

    fn queue(&mut self, to: NodeId, message: &Message) -> bool {
        if self
            .unsynced
            .as_ref()
            .is_some_and(|unsynced| unsynced.get())
        {
            self.sent_before_sync.push(format!(
                "{:?} to {to} before its log was synced",
                message.kind()
            ));
        }
        if to == self.me || self.membership.borrow().down.contains(&to) {
            return false;
        }
        self.outbox.push(Envelope {
            from: self.me,
            to,
            message: message.clone(),
        });
        true
    }

    fn queue_to_role(&mut self, role: Role, message: &Message) {
        let receivers: Vec<NodeId> = {
            let membership = self.membership.borrow();
            membership
                .nodes
                .iter()
                .filter(|node| node.role == role && !membership.down.contains(node))
                .copied()
                .collect()
        };
        for to in receivers {
            self.queue(to, message);
        }
    }

    fn flush(&mut self) {}

    fn peer_statuses(&self) -> Vec<PeerStatus> {
        Vec::new()
    }

    fn alarms(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The acceptor's real log, watched: the records it synced, for the simulation's ledger
/// of what acceptors accepted (and its crash right after a promise).
pub struct WatchedAcceptorLog {
    log: AcceptorLog,
    written: Vec<Record>,
    /// Shared with the acceptor's peers: set from a write to its sync.
    unsynced: Rc<Cell<bool>>,
    /// Records made durable since the world last took them.
    pub synced: Vec<Record>,
}

impl Log<Acceptor> for WatchedAcceptorLog {
    fn write(&mut self, writes: Vec<Write<Record>>) -> io::Result<()> {
        for write in &writes {
            if let Write::Append(record) = write {
                self.written.push(record.clone());
                self.unsynced.set(true);
            }
        }
        self.log.write(writes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.log.sync()?;
        self.unsynced.set(false);
        self.synced.append(&mut self.written);
        Ok(())
    }

    fn maintain(&mut self, acceptor: &Acceptor) -> io::Result<()> {
        self.log.maintain(acceptor)
    }
}

/// A simulated acceptor's driver.
pub type AcceptorDriver = NodeDriver<Acceptor, WatchedAcceptorLog, SimulatedPeers>;
/// A simulated proposer's driver.
pub type ProposerDriver = NodeDriver<Proposer, RoundStore, SimulatedPeers>;
/// A simulated learner's driver.
pub type LearnerDriver = NodeDriver<Learner, LearnerLog, SimulatedPeers>;

fn data_dir(node: NodeId) -> PathBuf {
    PathBuf::from(format!("/{node}"))
}

/// Starts acceptor `id` from what `disk` holds, as the service does (identity checks
/// included), rebuilding its state with `rebuild`. An acceptor that would refuse to vote
/// (its disk corrupt, or amnesia) is an error: the simulated disk only loses what POSIX
/// allows, so that would be a bug of the log code.
pub fn start_acceptor(
    id: u32,
    total_acceptors: usize,
    disk: &SimulatedFileSystem,
    rebuild: fn(u32, Vec<Record>) -> Acceptor,
    membership: &Rc<RefCell<Membership>>,
) -> Result<AcceptorDriver, String> {
    let me = NodeId::acceptor(id);
    let config = AcceptorConfig {
        id,
        listen: "simulated".into(),
        total_acceptors,
        data_dir: data_dir(me),
        security: Security::Insecure,
        cluster_id: "simulation".into(),
        log_quota_bytes: None,
    };
    let (core, mut log) = acceptor::storage::recover_in(&config, Arc::new(disk.clone()), rebuild)
        .map_err(|error| format!("{me} cannot start: {error:#}"))?;
    let Some(storage) = log.storage_mut() else {
        return Err(format!(
            "{me} refuses to vote after a restart: {:?}",
            core.storage_fault()
        ));
    };
    storage.set_compaction_minimum_bytes(ACCEPTOR_COMPACTION_MINIMUM_BYTES);
    let unsynced = Rc::new(Cell::new(false));
    let log = WatchedAcceptorLog {
        log,
        written: Vec::new(),
        unsynced: Rc::clone(&unsynced),
        synced: Vec::new(),
    };
    let mut peers = SimulatedPeers::new(me, Rc::clone(membership));
    peers.unsynced = Some(unsynced);
    Ok(NodeDriver::new(core, log, peers))
}

/// Starts a proposer with `options` from the round `disk` holds.
pub fn start_proposer(
    options: ProposerOptions,
    disk: &SimulatedFileSystem,
    membership: &Rc<RefCell<Membership>>,
) -> Result<ProposerDriver, String> {
    let me = NodeId::proposer(options.id);
    let (store, round) = RoundStore::open_in(Arc::new(disk.clone()), &data_dir(me))
        .map_err(|error| format!("{me} cannot start: {error:#}"))?;
    Ok(NodeDriver::new(
        Proposer::new(options, round),
        store,
        SimulatedPeers::new(me, Rc::clone(membership)),
    ))
}

/// Starts a learner with `options` from the log `disk` holds.
pub fn start_learner(
    options: LearnerOptions,
    disk: &SimulatedFileSystem,
    membership: &Rc<RefCell<Membership>>,
) -> Result<LearnerDriver, String> {
    let me = NodeId::learner(options.id);
    let path = data_dir(me).join(learner::storage::WAL_FILE_NAME);
    let (core, log) = learner::storage::recover_in(Arc::new(disk.clone()), options, &path)
        .map_err(|error| format!("{me} cannot start: {error:#}"))?;
    Ok(NodeDriver::new(
        core,
        log,
        SimulatedPeers::new(me, Rc::clone(membership)),
    ))
}
