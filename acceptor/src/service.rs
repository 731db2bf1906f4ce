//! The acceptor process: the [`Acceptor`] core wired to the network and the disk.
//!
//! The core runs in the driver every role shares ([`runtime::driver`]), on one thread with
//! the network (see [`runtime::event_loop`]). The loop hands the core the inbound events
//! in batches (all that are queued, up to [`BATCH_EVENTS_MAX`]), then the driver carries
//! out the batch's `Ready` in the order that makes the protocol safe: every record is
//! appended to the log ([`storage::AcceptorLog`]), the log is synced once (group commit:
//! one fsync for the batch), and only then is any answer sent. So no proposer or learner
//! ever hears of a promise or vote that a crash could undo.
//!
//! The acceptor dials no one: proposers and learners connect to it, and votes for learners
//! go to every learner connected at the time (a learner that missed some asks again with
//! `SyncAccepted`).
//!
//! The first batch of an incarnation that persists anything also records `has_voted` in
//! the data directory's identity ([`crate::identity`]), after the log sync and before the
//! sends: one more durable write, once per incarnation, so that a log lost later is seen
//! as amnesia instead of a fresh start.
//!
//! A corrupt log (damage before its tail), a corrupt identity or amnesia (an identity that
//! says this acceptor voted over an empty or missing log) does not stop the acceptor: it
//! runs but refuses to vote ([`Acceptor::refusing`]), says why in its status and its log,
//! and writes nothing, so the damage stays for an operator to inspect. An identity of
//! another acceptor or cluster stops the start (a volume mounted on the wrong node). A
//! failed write or fsync stops the acceptor: after a failed fsync the kernel may have
//! dropped the data, and a retry could report success for writes that never reached the
//! disk.

use crate::config::AcceptorConfig;
use crate::core::Acceptor;
use crate::identity::{self, IdentityError};
use crate::storage::{self, incarnation_text, LOG_FILE_NAME};
use anyhow::Context;
use common::node::NodeId;
use runtime::driver::NodeDriver;
use runtime::event_loop::{self, LoopOptions, NodeThread, BATCH_EVENTS_MAX};
use runtime::file_system::{FileSystem, RealFileSystem};
use runtime::network::Transport;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Runs acceptor `config.id` until the process is killed. Returns an error if it cannot
/// start (bad listen address, unreadable log directory) or if its driver stops (a broken
/// invariant).
pub async fn run(config: AcceptorConfig) -> anyhow::Result<()> {
    start(config).await?.wait().await
}

/// Starts the acceptor and returns once it listens (on an ephemeral port if
/// `config.listen` ends in `:0`); see [`Handle`] to stop it.
pub async fn start(config: AcceptorConfig) -> anyhow::Result<Handle> {
    start_in(config, Arc::new(RealFileSystem)).await
}

/// [`start`], keeping the log in `file_system` (a simulated one, in tests of what the
/// acceptor does when its disk fails).
pub async fn start_in(
    config: AcceptorConfig,
    file_system: Arc<dyn FileSystem>,
) -> anyhow::Result<Handle> {
    let me = NodeId::acceptor(config.id);
    let transport = Transport::from_security(&config.security, me)
        .context("loading the node's TLS certificates")?;
    let listen: SocketAddr = config
        .listen
        .parse()
        .with_context(|| format!("acceptor listen address {:?} is not ip:port", config.listen))?;
    let blocking_config = config.clone();
    let (acceptor, log) = tokio::task::spawn_blocking(move || {
        storage::recover_in(&blocking_config, file_system, Acceptor::recover)
    })
    .await
    .context("opening the acceptor's log")??;
    let loop_options = LoopOptions {
        // The acceptor has no timers: the tick only bounds how long it takes to notice a
        // shutdown.
        tick: Duration::from_millis(common::TICK_MILLISECONDS),
        catch_up_ticks_max: 1,
        batch_events_max: BATCH_EVENTS_MAX,
    };
    let recovered_slots = acceptor.accepted_slot_count();
    let promised_ballot = acceptor.promised_ballot();
    let truncated_tail_bytes = log.storage().map_or(0, |log| log.truncated_tail_bytes());
    let log_path = log.storage().map(|log| log.path().to_path_buf());
    let incarnation = log.identity().map(incarnation_text);
    let node = event_loop::start(
        me,
        Some(listen),
        Vec::new(),
        transport,
        loop_options,
        move |network| NodeDriver::new(acceptor, log, network),
    )
    .await?;
    let address = node
        .address()
        .expect("the network returns the address it listens on");
    tracing::info!(
        acceptor = config.id,
        cluster = %config.cluster_id,
        incarnation = incarnation.as_deref().unwrap_or("none (refusing to vote)"),
        listen = %address,
        data_dir = %config.data_dir.display(),
        %promised_ballot,
        accepted_slots = recovered_slots,
        truncated_tail_bytes,
        "acceptor started"
    );
    if let (true, Some(log)) = (truncated_tail_bytes > 0, log_path) {
        tracing::warn!(
            truncated_tail_bytes,
            log = %log.display(),
            "truncated a torn tail of the log (an append cut by a crash, never acknowledged)"
        );
    }
    Ok(Handle { address, node })
}

/// `paxos acceptor --reset-identity`: a new incarnation over an empty log, the old log
/// kept aside as `acceptor.wal.reset-<UTC time>` (see [`identity::reset`] for when it is
/// safe). The acceptor must be stopped.
pub fn reset_identity(config: &AcceptorConfig) -> Result<identity::Reset, IdentityError> {
    reset_identity_in(config, &RealFileSystem, SystemTime::now())
}

/// [`reset_identity`] in `file_system`, naming the old log after `now`.
pub fn reset_identity_in(
    config: &AcceptorConfig,
    file_system: &dyn FileSystem,
    now: SystemTime,
) -> Result<identity::Reset, IdentityError> {
    let reset = identity::reset(
        file_system,
        &config.data_dir,
        LOG_FILE_NAME,
        &config.cluster_id,
        config.id,
        identity::random_incarnation(),
        &utc_timestamp(now),
    )?;
    tracing::warn!(
        acceptor = config.id,
        incarnation = %incarnation_text(&reset.identity),
        moved_log = ?reset.moved_log,
        "reset the acceptor's identity: it forgot every promise and vote it made"
    );
    Ok(reset)
}

/// `now` as `YYYYMMDDTHHMMSSZ` (UTC), for file names that sort by time.
fn utc_timestamp(now: SystemTime) -> String {
    let seconds = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let shifted = days as i64 + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// A running acceptor. Dropping it (or [`Handle::shutdown`]) stops the driver and closes
/// the network, as a crash would: everything acknowledged is already on disk.
pub struct Handle {
    address: SocketAddr,
    node: NodeThread,
}

impl Handle {
    /// The address the acceptor listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the acceptor and waits until its driver has ended and its sockets are closed.
    pub async fn shutdown(self) {
        self.node.shutdown().await;
    }

    /// Waits until the driver stops, which it does only on shutdown or when an invariant
    /// assertion fails (an error).
    pub async fn wait(self) -> anyhow::Result<()> {
        let outcome = self.node.wait().await;
        if let Err(error) = &outcome {
            tracing::error!(%error, "the acceptor's driver stopped");
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_timestamps_are_utc_calendar_times() {
        let at = |seconds| utc_timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(1_795_999_500), "20261130T004500Z");
    }
}
