//! Fuzz targets of the learner: its core's `handle` fed random messages from random
//! senders of every role (with honest votes mixed in so that slots get decided and
//! applied), interleaved with ticks and connections opening and closing; and the decoder
//! of its log records fed random and damaged bytes. No input may panic, and after every
//! step the learner's own invariants hold. Replay a failure with the line it prints:
//! `FUZZ_SEED=<seed> FUZZ_ITERATIONS=1 cargo test -p learner --test fuzz`.

use common::ballot::{Ballot, Slot};
use common::fuzzing::{self, Anchors};
use common::message::{AcceptedEntry, DecidedEntry, Message, SnapshotChunk};
use common::node::NodeId;
use common::value::Value;
use learner::core::LearnerRecord;
use learner::core::{Effect, FrozenState, Learner, LearnerOptions, SnapshotAssembly};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

const STEPS_PER_CASE: usize = 400;

fn options() -> LearnerOptions {
    let mut options = LearnerOptions::new(1, 2);
    options.retain_slots = 8;
    options.sync_interval_ticks = 3;
    options.read_timeout_ticks = 10;
    options.subscriber_heartbeat_ticks = 7;
    options
}

/// The learner's log as the service keeps it: the latest snapshot and the entries after,
/// and the chunks of a snapshot being received.
#[derive(Default)]
struct Log {
    snapshot: Option<FrozenState>,
    entries: Vec<DecidedEntry>,
    receiving: Vec<SnapshotChunk>,
}

impl Log {
    fn apply(&mut self, effects: &[Effect]) {
        for effect in effects {
            match effect {
                Effect::Persist(entry) => self.entries.push(entry.clone()),
                Effect::Compact { state, retained } => {
                    self.snapshot = Some(state.clone());
                    self.entries = retained.clone();
                }
                Effect::PersistSnapshotChunk(chunk) => {
                    if chunk.index == 0 {
                        self.receiving.clear();
                    }
                    self.receiving.push(chunk.clone());
                }
                Effect::InstallSnapshot { retained, .. } => {
                    let chunks = std::mem::take(&mut self.receiving);
                    let mut assembly = SnapshotAssembly::new(&chunks[0]);
                    for chunk in &chunks {
                        assembly
                            .add(chunk)
                            .expect("the core wrote only chunks it accepted");
                    }
                    self.snapshot = Some(assembly.finish());
                    self.entries = retained.clone();
                }
                _ => {}
            }
        }
    }
}

/// A hostile message, or an honest vote for a slot just above the applied one.
fn next_message(
    random: &mut ChaCha8Rng,
    learner: &Learner,
    honest_values: &mut BTreeMap<Slot, Value>,
) -> (NodeId, Message) {
    let applied = learner.applied_slot();
    if random.random_bool(0.4) {
        let slot = applied + random.random_range(1..4);
        let value = honest_values
            .entry(slot)
            .or_insert_with(|| fuzzing::value(random))
            .clone();
        let entry = AcceptedEntry {
            slot,
            ballot: Ballot::new(1, 1),
            value,
        };
        return (
            NodeId::acceptor(random.random_range(1..=3)),
            Message::AcceptedValues {
                entries: vec![entry],
            },
        );
    }
    let anchors = Anchors {
        slots: vec![
            applied,
            learner.known_slot_max(),
            learner.history_start_slot(),
        ],
        rounds: vec![1],
        proposer_ids: vec![1],
    };
    (fuzzing::node(random), fuzzing::message(random, &anchors))
}

fn check_step(before_applied: Slot, learner: &Learner, log: &Log) -> Result<(), String> {
    if learner.applied_slot() < before_applied {
        return Err("the applied slot went down".into());
    }
    if learner.known_slot_max() < learner.applied_slot() {
        return Err("the known slot is below the applied slot".into());
    }
    if learner.alarms().len() > common::alarm::ALARMS_MAX + 1 {
        return Err("the alarms are not bounded".into());
    }
    if learner.is_installing_snapshot() {
        return Ok(()); // the state was dropped for a snapshot; the log keeps the old one
    }
    let recovered =
        Learner::recover_from_state(options(), log.snapshot.clone(), log.entries.clone());
    if recovered.snapshot() != learner.snapshot() {
        return Err(format!(
            "the log recovers applied slot {}, the learner is at {}",
            recovered.applied_slot(),
            learner.applied_slot()
        ));
    }
    Ok(())
}

fn learner_case(
    random: &mut ChaCha8Rng,
    handle: &mut dyn FnMut(&mut Learner, NodeId, Message) -> Vec<Effect>,
) -> Result<(), String> {
    let mut learner = Learner::new(options());
    let mut log = Log::default();
    let mut honest_values = BTreeMap::new();
    for step in 0..STEPS_PER_CASE {
        let before_applied = learner.applied_slot();
        let (description, effects) = match random.random_range(0..10) {
            0..=1 => ("a tick".to_string(), learner.tick()),
            2 => {
                let node = fuzzing::node(random);
                let effects = if random.random_bool(0.5) {
                    learner.on_connected(node)
                } else {
                    learner.on_disconnected(node)
                };
                (format!("a connection change of {node}"), effects)
            }
            _ => {
                let (from, message) = next_message(random, &learner, &mut honest_values);
                let description = format!("{message:?} from {from}");
                (description, handle(&mut learner, from, message))
            }
        };
        log.apply(&effects);
        check_step(before_applied, &learner, &log)
            .map_err(|problem| format!("step {step}, {description}: {problem}"))?;
    }
    Ok(())
}

#[test]
fn random_messages_ticks_and_connections_never_panic_the_learner_or_break_its_invariants() {
    fuzzing::fuzz("learner::core::Learner::handle", 600, |random| {
        learner_case(random, &mut |learner, from, message| {
            learner.handle(from, message)
        })
    });
}

#[test]
fn the_learner_harness_catches_a_planted_panic_on_a_read_of_slot_u64_max() {
    let mut planted = |learner: &mut Learner, from: NodeId, message: Message| {
        if matches!(message, Message::Read { min_slot, .. } if min_slot == u64::MAX) {
            panic!("planted: a Read of slot u64::MAX");
        }
        learner.handle(from, message)
    };
    let failure = fuzzing::run_cases("planted", 1, 100, |random| {
        learner_case(random, &mut planted)
    })
    .expect_err("the harness reaches the planted input");
    assert!(failure.problem.contains("planted"), "{failure}");
}

#[test]
fn damaged_log_records_decode_to_errors_without_panics() {
    fuzzing::fuzz("learner::core::LearnerRecord decode", 20_000, |random| {
        let anchors = Anchors::default();
        let record = match random.random_range(0..3) {
            0 => LearnerRecord::Decided(fuzzing::decided_entry(random, &anchors)),
            1 => {
                let state = fuzzing::state_snapshot(random, &anchors);
                LearnerRecord::Snapshot(learner::core::UnversionedStateSnapshot {
                    applied_slot: state.applied_slot,
                    key_values: state
                        .key_values
                        .into_iter()
                        .map(|(key, value)| (key, value.value))
                        .collect(),
                    applied_request_ids: state
                        .applied_request_ids
                        .into_iter()
                        .map(|applied| (applied.request_id, applied.slot))
                        .collect(),
                })
            }
            _ => LearnerRecord::SnapshotFile {
                applied_slot: fuzzing::snapshot_chunk(random, &anchors).applied_slot,
            },
        };
        let valid = postcard::to_allocvec(&record).map_err(|error| error.to_string())?;
        if postcard::from_bytes::<LearnerRecord>(&valid).ok() != Some(record) {
            return Err("a valid record does not round-trip".into());
        }
        for _ in 0..8 {
            let damaged = fuzzing::mutate(random, &valid);
            let _ = postcard::from_bytes::<LearnerRecord>(&damaged);
        }
        Ok(())
    });
}
