//! The learner service: the [`crate::core::Learner`] core in the driver every role shares
//! ([`runtime::driver`]) over its decided log ([`crate::storage::LearnerLog`]) and the
//! network, on one thread (see [`runtime::event_loop`]).
//!
//! The loop hands the core every inbound event in batches, then the driver carries out
//! the batch's `Ready`: the decided slots are appended to `learner.wal` and written out
//! once per batch, then the messages leave. The core asks for a sync at most
//! `LearnerOptions::log_sync_interval_ticks` after a write, and for the log to be replaced
//! (atomically) by a snapshot file and the retained history when it compacts (the file is
//! written on a thread of its own, see `crate::storage`) or installs a peer's state. The
//! service holds no protocol decisions.

use crate::config::LearnerConfig;
use crate::core::{Learner, LearnerOptions};
use crate::storage;
use anyhow::Context;
use common::node::NodeId;
use runtime::driver::NodeDriver;
use runtime::event_loop::{self, LoopOptions, NodeThread, BATCH_EVENTS_MAX};
use runtime::file_system::RealFileSystem;
use runtime::network::Transport;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use crate::storage::WAL_FILE_NAME;

/// A running learner. Dropping it (or [`Handle::shutdown`]) stops it: the driver finishes
/// its batch and syncs the log, then every connection closes.
pub struct Handle {
    address: SocketAddr,
    node: NodeThread,
}

impl Handle {
    /// The address the learner listens on (the real port when configured with port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the learner: the driver finishes its batch and syncs the log, then the
    /// network's tasks and connections are dropped.
    pub fn shutdown(mut self) {
        self.node.stop_and_join();
    }
}

/// Runs the learner of `config` until the process is killed.
pub async fn run(config: LearnerConfig) -> anyhow::Result<()> {
    let handle = start(config).await?;
    tracing::info!(address = %handle.address(), "learner listening");
    handle.node.wait().await
}

/// Starts the learner of `config`: replays its log, listens on `config.listen` (port 0
/// picks a free port, see [`Handle::address`]) and connects to every acceptor, proposer
/// and learner configured.
pub async fn start(config: LearnerConfig) -> anyhow::Result<Handle> {
    let listen: SocketAddr = config
        .listen
        .parse()
        .with_context(|| format!("the learner's listen address {:?}", config.listen))?;
    let me = NodeId::learner(config.id);
    let transport = Transport::from_security(&config.security, me)
        .context("loading the node's TLS certificates")?;
    let mut options = LearnerOptions::new(config.id, config.quorum_size);
    options.retain_slots = config.retain_slots;
    let wal_path = config.data_dir.join(WAL_FILE_NAME);
    let (core, log) = tokio::task::spawn_blocking(move || {
        storage::recover_in(Arc::new(RealFileSystem), options, &wal_path)
    })
    .await??;

    let peers: Vec<String> = [
        &config.acceptor_hosts,
        &config.proposer_hosts,
        &config.learner_hosts,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    let loop_options = LoopOptions {
        tick: Duration::from_millis(common::TICK_MILLISECONDS),
        // After a stall, resume the cadence instead of firing a burst of ticks.
        catch_up_ticks_max: 1,
        batch_events_max: BATCH_EVENTS_MAX,
    };
    let node = event_loop::start(
        me,
        Some(listen),
        peers,
        transport,
        loop_options,
        move |network| {
            let mut snapshots_logged = 0;
            NodeDriver::new(core, log.compact_in_background(), network).with_observer(
                move |learner: &Learner| {
                    let (installed, last) = learner.snapshots_installed();
                    if installed == snapshots_logged {
                        return;
                    }
                    snapshots_logged = installed;
                    if let Some((from, snapshot_slot)) = last {
                        tracing::info!(
                            %from,
                            snapshot_slot,
                            applied_slot = learner.applied_slot(),
                            "a peer sent its state as a snapshot"
                        );
                    }
                },
            )
        },
    )
    .await?;
    Ok(Handle {
        address: node
            .address()
            .expect("a listening network reports its address"),
        node,
    })
}
