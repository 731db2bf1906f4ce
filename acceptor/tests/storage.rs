//! The acceptor's log: what was synced comes back after a reopen, a compaction or a
//! crash in the middle of an append, and damaged acknowledged data stops the acceptor.

use acceptor::core::{Acceptor, Effect, Record};
use acceptor::storage::{Storage, StorageError, LOG_FILE_NAME};
use common::ballot::{Ballot, Slot};
use common::message::Message;
use common::node::NodeId;
use common::value::{Command, RequestId, Value};
use runtime::wal::{Wal, WalError};
use std::fs;

fn value(slot: Slot, round: u64) -> Value {
    Value::Batch(vec![Command::put(
        RequestId((slot as u128) << 64 | round as u128),
        format!("key{slot}"),
        format!("value of slot {slot} in round {round}"),
    )])
}

/// Hands `message` to the core, appends its records and syncs, as the service does.
fn handle_durably(acceptor: &mut Acceptor, storage: &mut Storage, message: Message) {
    let effects = acceptor.handle(NodeId::proposer(1), message);
    for effect in &effects {
        if let Effect::Persist(record) = effect {
            storage.append(record);
        }
    }
    storage.sync().expect("sync");
}

fn prepare(round: u64) -> Message {
    Message::Prepare {
        ballot: Ballot::new(round, 1),
        from_slot: 1,
    }
}

fn accept(round: u64, slot: Slot) -> Message {
    Message::Accept {
        ballot: Ballot::new(round, 1),
        slot,
        value: value(slot, round),
    }
}

#[test]
fn records_survive_reopening_the_log() {
    let directory = tempfile::tempdir().unwrap();
    let (mut storage, records) = Storage::open(directory.path()).unwrap();
    assert!(records.is_empty());
    let mut acceptor = Acceptor::new(1);
    handle_durably(&mut acceptor, &mut storage, prepare(1));
    for slot in 1..=5 {
        handle_durably(&mut acceptor, &mut storage, accept(1, slot));
    }
    handle_durably(&mut acceptor, &mut storage, prepare(2));
    drop(storage);

    let (storage, records) = Storage::open(directory.path()).unwrap();
    assert_eq!(records.len(), 7);
    assert_eq!(records[0], Record::Promised(Ballot::new(1, 1)));
    assert_eq!(storage.truncated_tail_bytes(), 0);
    assert_eq!(storage.path(), directory.path().join(LOG_FILE_NAME));
    assert_eq!(Acceptor::recover(1, records), acceptor);
}

#[test]
fn compaction_keeps_the_state_and_bounds_the_log() {
    let directory = tempfile::tempdir().unwrap();
    let (mut storage, _) = Storage::open(directory.path()).unwrap();
    storage.set_compaction_minimum_bytes(4096);
    let mut acceptor = Acceptor::new(1);
    let mut compactions = 0;
    let mut largest_log_bytes = 0;
    // Ten slots rewritten by ever higher ballots: the state stays small, the log does not.
    for round in 1..=200 {
        handle_durably(&mut acceptor, &mut storage, accept(round, round % 10 + 1));
        largest_log_bytes = largest_log_bytes.max(storage.length_bytes());
        if storage.compact_if_needed(&acceptor).unwrap() {
            compactions += 1;
        }
    }
    assert!(compactions > 0, "the log was never compacted");
    assert!(
        largest_log_bytes <= 4096 + 512,
        "the log grew to {largest_log_bytes} bytes"
    );
    handle_durably(&mut acceptor, &mut storage, prepare(300));
    drop(storage);

    let (_, records) = Storage::open(directory.path()).unwrap();
    // A snapshot (the promise and ten slots) plus what came after it, not 201 records.
    assert!(
        records.len() < 60,
        "{} records after compaction",
        records.len()
    );
    let recovered = Acceptor::recover(1, records);
    assert_eq!(recovered, acceptor);
    assert_eq!(recovered.promised_ballot(), Ballot::new(300, 1));
}

#[test]
fn compaction_waits_for_twice_the_size_left_by_the_last_one() {
    let directory = tempfile::tempdir().unwrap();
    let (mut storage, _) = Storage::open(directory.path()).unwrap();
    storage.set_compaction_minimum_bytes(0);
    let mut acceptor = Acceptor::new(1);
    for slot in 1..=50 {
        handle_durably(&mut acceptor, &mut storage, accept(1, slot));
    }
    assert!(storage.compact_if_needed(&acceptor).unwrap());
    let compacted_bytes = storage.length_bytes();
    // Fifty distinct slots: the snapshot is as big as the log, so it must not be
    // rewritten again until it has doubled.
    handle_durably(&mut acceptor, &mut storage, accept(1, 51));
    assert!(!storage.compact_if_needed(&acceptor).unwrap());
    let mut slot = 52;
    while storage.length_bytes() <= 2 * compacted_bytes {
        assert!(!storage.needs_compaction());
        handle_durably(&mut acceptor, &mut storage, accept(1, slot));
        slot += 1;
    }
    assert!(storage.compact_if_needed(&acceptor).unwrap());
}

#[test]
fn a_torn_tail_after_a_crash_leaves_the_acknowledged_state_intact() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join(LOG_FILE_NAME);
    let (mut storage, _) = Storage::open(directory.path()).unwrap();
    let mut acceptor = Acceptor::new(1);
    handle_durably(&mut acceptor, &mut storage, prepare(1));
    handle_durably(&mut acceptor, &mut storage, accept(1, 1));
    let acknowledged = acceptor.clone();
    let acknowledged_bytes = storage.length_bytes();
    // The crash: the next append reached the file only in part, and was never answered.
    handle_durably(&mut acceptor, &mut storage, accept(2, 2));
    let records_end = storage.length_bytes();
    drop(storage);
    let full = fs::read(&path).unwrap();
    assert!(records_end > acknowledged_bytes + 1);
    for cut in [
        acknowledged_bytes + 1,
        (acknowledged_bytes + records_end) / 2,
    ] {
        // The file ends at the cut, or (grown ahead) holds zeros from there on, the
        // 16-byte commit marker after the records included: an append never synced has
        // no marker after it (one after damage says the damage was acknowledged).
        let mut inside = full.clone();
        inside[cut as usize..records_end as usize + 16].fill(0);
        for damaged in [full[..cut as usize].to_vec(), inside] {
            fs::write(&path, &damaged).unwrap();
            let (storage, records) = Storage::open(directory.path()).unwrap();
            // Zeros at the very end of the cut are not counted as damage.
            let truncated = storage.truncated_tail_bytes();
            assert!(
                (1..=cut - acknowledged_bytes).contains(&truncated),
                "cut at {cut}: {truncated}"
            );
            assert_eq!(Acceptor::recover(1, records), acknowledged, "cut at {cut}");
        }
    }
}

#[test]
fn a_record_that_passes_its_checksum_but_does_not_decode_is_corruption() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join(LOG_FILE_NAME);
    let mut wal = Wal::open(&path).unwrap().wal;
    wal.append(&postcard::to_allocvec(&Record::Promised(Ballot::new(1, 1))).unwrap());
    wal.append(&[0x7f, 0x7f, 0x7f]);
    wal.sync().unwrap();
    drop(wal);
    match Storage::open(directory.path()) {
        Err(StorageError::Undecodable { record_index, .. }) => assert_eq!(record_index, 1),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("an undecodable record must not be skipped"),
    }
}

#[test]
fn damage_before_the_tail_is_corruption_not_a_fresh_start() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join(LOG_FILE_NAME);
    let (mut storage, _) = Storage::open(directory.path()).unwrap();
    let mut acceptor = Acceptor::new(1);
    handle_durably(&mut acceptor, &mut storage, prepare(1));
    handle_durably(&mut acceptor, &mut storage, accept(1, 1));
    drop(storage);
    let mut bytes = fs::read(&path).unwrap();
    bytes[8 + 8] ^= 0xff; // the first record's payload
    fs::write(&path, &bytes).unwrap();
    let error = Storage::open(directory.path())
        .err()
        .expect("must not open");
    assert!(
        matches!(error, StorageError::Wal(WalError::Corrupt { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("corrupt"), "{error}");
}

#[test]
fn the_acceptors_of_a_cluster_compact_at_different_sizes() {
    // Three acceptors fed the same votes: with equal thresholds they would all rewrite
    // their logs at the same moment and no quorum would answer meanwhile.
    let mut first_compaction_sizes = Vec::new();
    let mut second_compaction_sizes = Vec::new();
    for id in 1..=3 {
        let directory = tempfile::tempdir().unwrap();
        let (mut storage, _) = Storage::open(directory.path()).unwrap();
        storage.set_compaction_minimum_bytes(16 * 1024);
        storage.stagger_compaction(id);
        let mut acceptor = Acceptor::new(id);
        let mut compactions = Vec::new();
        let mut slot = 1;
        while compactions.len() < 2 {
            handle_durably(&mut acceptor, &mut storage, accept(1, slot));
            let length = storage.length_bytes();
            if storage.compact_if_needed(&acceptor).unwrap() {
                compactions.push(length);
            }
            slot += 1;
        }
        first_compaction_sizes.push(compactions[0]);
        second_compaction_sizes.push(compactions[1]);
    }
    for sizes in [&first_compaction_sizes, &second_compaction_sizes] {
        assert!(
            sizes[0] < sizes[1] && sizes[1] < sizes[2],
            "staggered compaction sizes: {sizes:?}"
        );
    }
    // Acceptor 1 keeps the usual rule: the minimum, then twice the compacted size.
    assert!(first_compaction_sizes[0] > 16 * 1024 && first_compaction_sizes[0] < 17 * 1024);
}
