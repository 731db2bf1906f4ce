//! Crash consistency of the identity's `has_voted`: the first batches of an incarnation
//! run as the acceptor's driver runs them (records appended, the log synced, `has_voted`
//! recorded, then the answers), over a simulated file system stopped at every write and
//! sync point and crashed in every way tried. After each crash the start decision must
//! not see amnesia where nothing was lost, and once an answer could have left, the
//! identity must say the acceptor voted (so that a log lost later is detected).
//!
//! The same check run with the two steps the other way round, or with the identity step
//! left out, must fail: a check that never fails proves nothing.

use acceptor::core::{Acceptor, Effect};
use acceptor::identity::{self, Identity, IdentityFile, Startup};
use acceptor::storage::{Storage, LOG_FILE_NAME};
use common::ballot::Ballot;
use common::message::Message;
use common::node::NodeId;
use common::value::Value;
use runtime::file_system::{
    CrashChoice, FileSystem, KeepEverything, KeepNothing, KeepRandomly, SimulatedFileSystem,
};
use std::path::Path;
use std::sync::Arc;

const DATA_DIRECTORY: &str = "/var/lib/paxos/acceptor1";

/// How a batch is made durable before its answers leave.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// The driver's: the log synced, then `has_voted` recorded.
    LogThenIdentity,
    /// `has_voted` recorded, then the log synced.
    IdentityThenLog,
    /// The log synced, `has_voted` never recorded (a planted bug).
    LogOnly,
}

fn batches() -> Vec<Message> {
    vec![
        Message::Prepare {
            ballot: Ballot::new(1, 1),
            from_slot: 1,
        },
        Message::Accept {
            ballot: Ballot::new(1, 1),
            slot: 1,
            value: Value::Noop,
        },
        Message::Prepare {
            ballot: Ballot::new(2, 1),
            from_slot: 1,
        },
    ]
}

/// A fresh start (log opened, new identity written) and the batches, each made durable
/// in `order`; returns whether an answer could have left before the file system stopped.
fn run(file_system: &SimulatedFileSystem, order: Order) -> bool {
    let shared: Arc<dyn FileSystem> = Arc::new(file_system.clone());
    let data_dir = Path::new(DATA_DIRECTORY);
    let Ok((mut storage, _)) = Storage::open_in(shared.clone(), data_dir) else {
        return false;
    };
    let fresh = Identity::new("paxos", 1, 42);
    if identity::write(shared.as_ref(), data_dir, &fresh).is_err() {
        return false;
    }
    let mut identity = IdentityFile::new(shared, data_dir, fresh);
    let mut acceptor = Acceptor::new(1);
    let mut answered = false;
    for message in batches() {
        for effect in acceptor.handle(NodeId::proposer(1), message) {
            if let Effect::Persist(record) = effect {
                storage.append(&record);
            }
        }
        let durable = match order {
            Order::LogThenIdentity => storage.sync().is_ok() && identity.record_voted().is_ok(),
            Order::IdentityThenLog => identity.record_voted().is_ok() && storage.sync().is_ok(),
            Order::LogOnly => storage.sync().is_ok(),
        };
        if !durable {
            return answered;
        }
        answered = true; // the batch's answers leave here
    }
    answered
}

fn check(crashed: SimulatedFileSystem, answered: bool) -> Result<(), String> {
    let data_dir = Path::new(DATA_DIRECTORY);
    let found = identity::read(&crashed, data_dir)
        .map_err(|error| format!("a crash must not damage the identity: {error}"))?;
    let (_, records) = Storage::open_in(Arc::new(crashed), data_dir)
        .map_err(|error| format!("a crash must not look like corruption: {error}"))?;
    if let Startup::Amnesia(reason) =
        identity::assess(found.as_ref(), records.len(), &data_dir.join(LOG_FILE_NAME))
    {
        return Err(format!("false amnesia (nothing was lost): {reason}"));
    }
    if answered && !found.is_some_and(|found| found.has_voted) {
        return Err("an answer left, but has_voted is not durable".into());
    }
    Ok(())
}

/// Every failure of the check over every crash point and crash choice.
fn crash_everywhere(order: Order) -> Vec<String> {
    let complete = SimulatedFileSystem::new();
    assert!(run(&complete, order));
    let mut failures = Vec::new();
    for stop_at in 0..=complete.operation_count() {
        let file_system = SimulatedFileSystem::new();
        file_system.stop_after(stop_at);
        let answered = run(&file_system, order);
        let mut choices: Vec<Box<dyn CrashChoice>> =
            vec![Box::new(KeepNothing), Box::new(KeepEverything)];
        for seed in 0..8 {
            choices.push(Box::new(KeepRandomly(seed * 7919 + stop_at)));
        }
        for mut choice in choices {
            if let Err(failure) = check(file_system.crash(choice.as_mut()), answered) {
                failures.push(format!("stopped after {stop_at} operations: {failure}"));
            }
        }
    }
    failures
}

#[test]
fn after_a_crash_anywhere_in_the_first_votes_has_voted_is_durable_and_no_amnesia_is_invented() {
    let failures = crash_everywhere(Order::LogThenIdentity);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_check_catches_has_voted_recorded_before_the_log_or_never() {
    let before = crash_everywhere(Order::IdentityThenLog);
    assert!(
        before
            .iter()
            .any(|failure| failure.contains("false amnesia")),
        "recording has_voted before the log sync leaves a crash window where an empty log \
         under has_voted looks like amnesia though nothing was answered"
    );
    let never = crash_everywhere(Order::LogOnly);
    assert!(
        never
            .iter()
            .any(|failure| failure.contains("has_voted is not durable")),
        "leaving has_voted out went unnoticed"
    );
}
