//! The acceptor process: the [`Acceptor`] core wired to the network and the disk.
//!
//! The network and the driver share one thread (see [`runtime::event_loop`]). The loop
//! hands the core the inbound events in batches (all that are queued, up to
//! [`BATCH_MESSAGES_MAX`]), then the driver carries out the effects of the whole batch in
//! the order that makes the protocol safe: every `Persist` is appended to the log, the log
//! is synced once (group commit: one fsync for the batch), and only then is any message
//! sent. So no proposer or learner ever hears of a promise or vote that a crash could undo.
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
use crate::core::{Acceptor, Effect};
use crate::identity::{self, Identity, IdentityError, IdentityFile, Startup};
use crate::storage::{Storage, LOG_FILE_NAME};
use anyhow::Context;
use common::message::{Message, NodeStatus};
use common::node::{NodeId, Role};
use runtime::event_loop::{self, Driver, LoopOptions, NodeThread};
use runtime::file_system::{FileSystem, RealFileSystem};
use runtime::network::{Inbound, Network, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The most inbound events the driver handles before it syncs and sends: bounds the delay
/// of the first answer of a batch while still sharing one fsync among many messages.
pub const BATCH_MESSAGES_MAX: usize = 4096;

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
    let (acceptor, durable) = recover(&config, file_system).await?;
    let loop_options = LoopOptions {
        // The acceptor has no timers: the tick only bounds how long it takes to notice a
        // shutdown.
        tick: Duration::from_millis(common::TICK_MILLISECONDS),
        max_catch_up_ticks: 1,
        max_batch_events: BATCH_MESSAGES_MAX,
    };
    let recovered_slots = acceptor.accepted_slot_count();
    let promised_ballot = acceptor.promised_ballot();
    let truncated_tail_bytes = durable
        .as_ref()
        .map_or(0, |durable| durable.log.truncated_tail_bytes());
    let log_path = durable
        .as_ref()
        .map(|durable| durable.log.path().to_path_buf());
    let incarnation = durable
        .as_ref()
        .map(|durable| incarnation_text(durable.identity.identity()));
    let node = event_loop::start(
        me,
        Some(listen),
        Vec::new(),
        transport,
        loop_options,
        move |network| AcceptorDriver {
            me,
            acceptor,
            durable,
            network,
            outgoing: Vec::new(),
            persisted_records: 0,
        },
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

/// The log and the identity of an acceptor that votes.
struct Durable {
    log: Storage,
    identity: IdentityFile,
}

fn incarnation_text(identity: &Identity) -> String {
    format!("{:032x}", identity.incarnation)
}

/// Checks the identity, opens the log and replays it (see [`recover_blocking`]).
async fn recover(
    config: &AcceptorConfig,
    file_system: Arc<dyn FileSystem>,
) -> anyhow::Result<(Acceptor, Option<Durable>)> {
    let blocking_config = config.clone();
    tokio::task::spawn_blocking(move || recover_blocking(&blocking_config, file_system))
        .await
        .context("opening the acceptor's log")?
}

/// Checks whose data directory this is, opens the log and replays it. A directory of
/// another acceptor or cluster, or a log or identity that cannot be read at all, is an
/// error. A corrupt log or identity, or amnesia, is never a fresh start (an acceptor that
/// forgot its promises could let two values be chosen): the acceptor then runs refusing
/// to vote, without storage.
fn recover_blocking(
    config: &AcceptorConfig,
    file_system: Arc<dyn FileSystem>,
) -> anyhow::Result<(Acceptor, Option<Durable>)> {
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
    storage.stagger_compaction(config.id);
    let acceptor = Acceptor::recover(config.id, records);
    let identity = IdentityFile::new(file_system, data_dir, identity);
    Ok((
        acceptor,
        Some(Durable {
            log: storage,
            identity,
        }),
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
fn refusing(config: &AcceptorConfig, error: &dyn std::error::Error) -> (Acceptor, Option<Durable>) {
    tracing::error!(
        %error,
        "the acceptor's data directory is corrupt: running, but refusing to vote until an \
         operator repairs or replaces it"
    );
    (Acceptor::refusing(config.id, error.to_string()), None)
}

/// An acceptor that lost its memory, refusing to vote.
fn amnesia(config: &AcceptorConfig, reason: String) -> (Acceptor, Option<Durable>) {
    tracing::warn!(data_dir = %config.data_dir.display(), "{reason}");
    (Acceptor::refusing(config.id, reason), None)
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

/// The core, its log and the network, driven by [`runtime::event_loop::run`].
struct AcceptorDriver {
    me: NodeId,
    acceptor: Acceptor,
    /// None while the acceptor refuses to vote (corruption, amnesia): it persists nothing.
    durable: Option<Durable>,
    network: Network,
    /// Messages of the batch, to send once it is durable.
    outgoing: Vec<Outgoing>,
    /// Records of the batch appended to the log, not yet synced.
    persisted_records: usize,
}

/// A message to send once the batch is durable.
enum Outgoing {
    To(NodeId, Message),
    Learners(Message),
}

impl Driver for AcceptorDriver {
    fn handle(&mut self, event: Inbound) {
        self.persisted_records += self.handle_event(event);
    }

    fn tick(&mut self) {}

    /// Persists the batch (one sync), records the first vote of the incarnation in the
    /// identity, then sends its messages.
    fn end_batch(&mut self) {
        let persisted_records = std::mem::take(&mut self.persisted_records);
        if persisted_records > 0 {
            let durable = self.durable();
            if let Err(error) = durable.log.sync() {
                fatal("syncing the log", &error);
            }
            // Once per incarnation. After the log sync: a crash before it leaves records
            // that the next start trusts (nothing was answered). Before the sends: once
            // anything is answered, a log found empty is amnesia.
            match durable.identity.record_voted() {
                Ok(true) => tracing::info!(
                    incarnation = %incarnation_text(durable.identity.identity()),
                    "recorded in the identity that this incarnation has voted"
                ),
                Ok(false) => {}
                Err(error) => fatal("recording the first vote in the identity", &error),
            }
        }
        // Votes for the learners leave as one AcceptedValues per batch (the learners count
        // entries, not messages), and every peer gets its messages in one write.
        let mut votes = Vec::new();
        for message in std::mem::take(&mut self.outgoing) {
            match message {
                Outgoing::To(node, message) => {
                    self.network.queue(node, &message);
                }
                Outgoing::Learners(Message::AcceptedValues { entries }) => votes.extend(entries),
                Outgoing::Learners(message) => {
                    self.network.queue_broadcast_to(Role::Learner, &message)
                }
            }
        }
        if !votes.is_empty() {
            let message = Message::AcceptedValues { entries: votes };
            self.network.queue_broadcast_to(Role::Learner, &message);
        }
        self.network.flush();
        if persisted_records > 0 {
            self.compact_if_needed();
        }
    }
}

impl AcceptorDriver {
    /// Hands one event to the core: appends its records to the log (not yet synced) and
    /// queues its messages in `outgoing`. Returns how many records it appended.
    fn handle_event(&mut self, event: Inbound) -> usize {
        let (from, message) = match event {
            Inbound::Message(from, Message::StatusRequest { request_id }) => {
                self.outgoing
                    .push(Outgoing::To(from, self.status_reply(request_id)));
                return 0;
            }
            Inbound::Message(from, message) => (from, message),
            Inbound::Connected(node) => {
                tracing::debug!(%node, "connected");
                return 0;
            }
            Inbound::Disconnected(node) => {
                tracing::debug!(%node, "disconnected");
                return 0;
            }
        };
        let ignored_copy = tracing::enabled!(tracing::Level::DEBUG).then(|| message.clone());
        let effects = self.acceptor.handle(from, message);
        if let (true, Some(message)) = (effects.is_empty(), ignored_copy) {
            tracing::debug!(%from, ?message, "ignored a message an acceptor does not serve");
        }
        let mut persisted_records = 0;
        for effect in effects {
            match effect {
                Effect::Persist(record) => {
                    self.durable().log.append(&record);
                    persisted_records += 1;
                }
                Effect::Send { to, message } => self.outgoing.push(Outgoing::To(to, message)),
                Effect::SendToLearners(message) => self.outgoing.push(Outgoing::Learners(message)),
            }
        }
        persisted_records
    }

    fn durable(&mut self) -> &mut Durable {
        self.durable
            .as_mut()
            .expect("invariant violated: an acceptor refusing to vote persists nothing")
    }

    /// Runs after the sends, so a compaction never delays the answers of its batch.
    fn compact_if_needed(&mut self) {
        let Some(Durable { log: storage, .. }) = self.durable.as_mut() else {
            return;
        };
        match storage.compact_if_needed(&self.acceptor) {
            Ok(true) => tracing::info!(
                log_bytes = storage.length_bytes(),
                accepted_slots = self.acceptor.accepted_slot_count(),
                "compacted the log"
            ),
            Ok(false) => {}
            Err(error) => fatal("compacting the log", &error),
        }
    }

    fn status_reply(&self, request_id: u64) -> Message {
        Message::StatusReply {
            request_id,
            status: NodeStatus {
                node: self.me,
                detail: self.acceptor.status(),
                peers: self.network.peer_statuses(),
                alarms: self
                    .network
                    .alarms()
                    .into_iter()
                    .chain(self.acceptor.alarms())
                    .collect(),
            },
        }
    }
}

/// A failed write or fsync: the kernel may have dropped the data and a retry could falsely
/// succeed, so the only safe move is to stop and recover from the log on restart.
fn fatal(action: &str, error: &std::io::Error) -> ! {
    tracing::error!(%error, "{action} failed; stopping the acceptor (restart recovers from the log)");
    std::process::exit(1)
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
