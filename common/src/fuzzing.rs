//! Test support (feature `fuzzing`, for dev-dependencies only): a seeded, replayable fuzz
//! loop and generators of hostile input for the protocol cores and the decoders.
//!
//! Every case runs from its own seed, so a failure prints the one line that replays it:
//! `FUZZ_SEED=<case seed> FUZZ_ITERATIONS=1 cargo test -p <crate> <test>`. `FUZZ_SEED`
//! sets the first case's seed (default: from the clock, printed on failure) and
//! `FUZZ_ITERATIONS` how many cases run (default: each target's own, a few seconds).
//!
//! The generators are biased to the edges, where integer bugs live: 0, 1, `u32::MAX`,
//! `u64::MAX`, [`MAX_PLAUSIBLE_SLOT`], [`MAX_ROUND_LEAD`] steps, and values near the
//! slots and rounds the core under test holds now (its "anchors").

use crate::ballot::{Ballot, Slot, MAX_PLAUSIBLE_SLOT, MAX_ROUND_LEAD};
use crate::message::{
    AcceptedEntry, AppliedRequest, AppliedSlot, AppliedWrite, DecidedEntry, Message, NodeStatus,
    PeerStatus, ProposerState, RoleStatus, SnapshotChunk, StateSnapshot, VersionedValue,
};
use crate::node::{NodeId, Role};
use crate::value::{Command, Operation, RequestId, Value};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::{self, AssertUnwindSafe};

/// A case that failed: the seed that replays it and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzFailure {
    /// The fuzz target's name.
    pub target: String,
    /// The seed of the failing case: `FUZZ_SEED=<seed> FUZZ_ITERATIONS=1` replays it.
    pub seed: u64,
    /// The panic message or the broken invariant.
    pub problem: String,
}

impl std::fmt::Display for FuzzFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "fuzz target {} failed at seed {}: {}\n(replay: FUZZ_SEED={} FUZZ_ITERATIONS=1)",
            self.target, self.seed, self.problem, self.seed
        )
    }
}

fn environment_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {text:?}")),
    )
}

/// The first case's seed and the number of cases, from `FUZZ_SEED` and `FUZZ_ITERATIONS`.
pub fn seed_and_cases(default_cases: u64) -> (u64, u64) {
    let seed = environment_number("FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(1)
    });
    let cases = environment_number("FUZZ_ITERATIONS").unwrap_or(default_cases);
    (seed, cases)
}

/// Runs `cases` cases of `case`, case `n` with seed `first_seed + n`, and returns the
/// first failure: a panic (caught) or an `Err` the case returned.
pub fn run_cases(
    target: &str,
    first_seed: u64,
    cases: u64,
    mut case: impl FnMut(&mut ChaCha8Rng) -> Result<(), String>,
) -> Result<(), FuzzFailure> {
    for index in 0..cases {
        let seed = first_seed.wrapping_add(index);
        let mut random = ChaCha8Rng::seed_from_u64(seed);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| case(&mut random)));
        let problem = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(problem)) => problem,
            Err(payload) => {
                let message = crate::panic_message(payload.as_ref());
                format!("panicked: {message}")
            }
        };
        return Err(FuzzFailure {
            target: target.to_string(),
            seed,
            problem,
        });
    }
    Ok(())
}

/// [`run_cases`] with the seed and count from the environment; panics with the replay
/// line on failure. The usual body of a fuzz test.
pub fn fuzz(
    target: &str,
    default_cases: u64,
    case: impl FnMut(&mut ChaCha8Rng) -> Result<(), String>,
) {
    let (seed, cases) = seed_and_cases(default_cases);
    if let Err(failure) = run_cases(target, seed, cases, case) {
        panic!("{failure}");
    }
    eprintln!("fuzz target {target}: {cases} cases from FUZZ_SEED={seed} passed");
}

/// A u64 biased to the edges and to `anchors` (values the core holds now).
pub fn edge_u64(random: &mut ChaCha8Rng, anchors: &[u64]) -> u64 {
    const EDGES: [u64; 12] = [
        0,
        1,
        2,
        u32::MAX as u64,
        u32::MAX as u64 + 1,
        u64::MAX,
        u64::MAX - 1,
        MAX_PLAUSIBLE_SLOT,
        MAX_PLAUSIBLE_SLOT + 1,
        MAX_ROUND_LEAD,
        MAX_ROUND_LEAD + 1,
        i64::MAX as u64,
    ];
    match random.random_range(0..10) {
        0..=2 => *EDGES.choose(random).expect("not empty"),
        3..=6 if !anchors.is_empty() => {
            let anchor = *anchors.choose(random).expect("not empty");
            match random.random_range(0..4) {
                0 => anchor.wrapping_add(MAX_ROUND_LEAD),
                1 => anchor.wrapping_add(MAX_ROUND_LEAD + 1),
                _ => anchor
                    .wrapping_add(random.random_range(0..5))
                    .wrapping_sub(2),
            }
        }
        7 => random.random(),
        _ => random.random_range(0..16),
    }
}

/// A u32 biased to the edges.
pub fn edge_u32(random: &mut ChaCha8Rng) -> u32 {
    match random.random_range(0..6) {
        0 => 0,
        1 => u32::MAX,
        2 => random.random(),
        3 => 4096,
        _ => random.random_range(1..8),
    }
}

/// A node of any role, with a small id (often one the cluster has) or an edge id.
pub fn node(random: &mut ChaCha8Rng) -> NodeId {
    let role = *[Role::Acceptor, Role::Proposer, Role::Learner, Role::Client]
        .choose(random)
        .expect("not empty");
    let id = match random.random_range(0..10) {
        0 => 0,
        1 => u32::MAX,
        _ => random.random_range(1..=4),
    };
    NodeId { role, id }
}

/// What the generators aim at: values near the core's present state.
#[derive(Clone, Debug, Default)]
pub struct Anchors {
    /// Slots the core holds or expects (applied, accepted, next).
    pub slots: Vec<Slot>,
    /// Rounds the core holds (promised, its own, highest seen).
    pub rounds: Vec<u64>,
    /// Proposer ids of ballots the core holds.
    pub proposer_ids: Vec<u32>,
}

/// A slot near the anchors or at an edge.
pub fn slot(random: &mut ChaCha8Rng, anchors: &Anchors) -> Slot {
    edge_u64(random, &anchors.slots)
}

/// A ballot near the anchors or at an edge; its proposer id is often a small one.
pub fn ballot(random: &mut ChaCha8Rng, anchors: &Anchors) -> Ballot {
    let round = edge_u64(random, &anchors.rounds);
    let proposer_id = match random.random_range(0..6) {
        0 => edge_u32(random),
        1 if !anchors.proposer_ids.is_empty() => {
            *anchors.proposer_ids.choose(random).expect("not empty")
        }
        _ => random.random_range(1..=4),
    };
    Ballot::new(round, proposer_id)
}

/// A short string from a small pool (so that keys collide), sometimes empty or odd.
pub fn text(random: &mut ChaCha8Rng) -> String {
    ["", "k", "key", "other", "ü", "a\0b"]
        .choose(random)
        .expect("not empty")
        .to_string()
}

/// A request id from a small pool, so that retries and duplicates happen.
pub fn request_id(random: &mut ChaCha8Rng) -> RequestId {
    match random.random_range(0..8) {
        0 => RequestId(u128::MAX),
        1 => RequestId(random.random()),
        _ => RequestId(random.random_range(0..6)),
    }
}

/// A command with pooled id, key and value.
pub fn command(random: &mut ChaCha8Rng) -> Command {
    let request_id = request_id(random);
    let (key, value) = (text(random), text(random));
    let operation = match random.random_range(0..8) {
        0 => Operation::UnversionedPut { key, value },
        _ => Operation::Put { key, value },
    };
    Command {
        request_id,
        operation,
    }
}

/// A value with revisions near the anchors, not necessarily plausible.
pub fn versioned_value(random: &mut ChaCha8Rng, anchors: &Anchors) -> VersionedValue {
    VersionedValue {
        value: text(random),
        create_revision: edge_u64(random, &anchors.slots),
        mod_revision: edge_u64(random, &anchors.slots),
        version: edge_u64(random, &[]),
    }
}

/// An applied request near the anchors.
pub fn applied_request(random: &mut ChaCha8Rng, anchors: &Anchors) -> AppliedRequest {
    AppliedRequest {
        request_id: request_id(random),
        slot: edge_u64(random, &anchors.slots),
        fingerprint: edge_u64(random, &[]),
    }
}

/// A no-op or a small batch (sometimes empty, sometimes repeating a request id).
pub fn value(random: &mut ChaCha8Rng) -> Value {
    if random.random_bool(0.25) {
        return Value::Noop;
    }
    let count = random.random_range(0..4);
    Value::Batch((0..count).map(|_| command(random)).collect())
}

fn short_vec<T>(random: &mut ChaCha8Rng, mut item: impl FnMut(&mut ChaCha8Rng) -> T) -> Vec<T> {
    let count = random.random_range(0..5);
    (0..count).map(|_| item(random)).collect()
}

/// An accepted entry near the anchors.
pub fn accepted_entry(random: &mut ChaCha8Rng, anchors: &Anchors) -> AcceptedEntry {
    AcceptedEntry {
        slot: slot(random, anchors),
        ballot: ballot(random, anchors),
        value: value(random),
    }
}

/// A decided entry near the anchors.
pub fn decided_entry(random: &mut ChaCha8Rng, anchors: &Anchors) -> DecidedEntry {
    DecidedEntry {
        slot: slot(random, anchors),
        value: value(random),
    }
}

/// A learner state at a slot near the anchors, not necessarily consistent.
pub fn state_snapshot(random: &mut ChaCha8Rng, anchors: &Anchors) -> StateSnapshot {
    StateSnapshot {
        applied_slot: slot(random, anchors),
        key_values: short_vec(random, |random| {
            (text(random), versioned_value(random, anchors))
        }),
        applied_request_ids: short_vec(random, |random| applied_request(random, anchors)),
    }
}

/// A chunk of a learner state near the anchors, not necessarily consistent.
pub fn snapshot_chunk(random: &mut ChaCha8Rng, anchors: &Anchors) -> SnapshotChunk {
    let state = state_snapshot(random, anchors);
    SnapshotChunk {
        applied_slot: state.applied_slot,
        index: edge_u32(random),
        key_count: edge_u64(random, &[]),
        request_id_count: edge_u64(random, &[]),
        key_values: state.key_values,
        applied_request_ids: state.applied_request_ids,
        last: random.random_bool(0.5),
    }
}

fn node_status(random: &mut ChaCha8Rng, anchors: &Anchors) -> NodeStatus {
    let detail = match random.random_range(0..3) {
        0 => RoleStatus::Acceptor {
            promised_ballot: ballot(random, anchors),
            accepted_slot_max: slot(random, anchors),
            accepted_slot_count: edge_u64(random, &[]),
            trimmed_slot: slot(random, anchors),
            storage_fault: random.random_bool(0.5).then(|| text(random)),
        },
        1 => RoleStatus::Proposer {
            state: *[
                ProposerState::Follower,
                ProposerState::Candidate,
                ProposerState::Leader,
            ]
            .choose(random)
            .expect("not empty"),
            ballot: ballot(random, anchors),
            leader: random.random_bool(0.5).then(|| edge_u32(random)),
            decided_slot_max: slot(random, anchors),
        },
        _ => RoleStatus::Learner {
            applied_slot: slot(random, anchors),
            known_slot_max: slot(random, anchors),
            key_count: edge_u64(random, &[]),
        },
    };
    NodeStatus {
        node: node(random),
        detail,
        peers: short_vec(random, |random| PeerStatus {
            address: text(random),
            node: random.random_bool(0.5).then(|| node(random)),
            connected: random.random(),
        }),
        alarms: short_vec(random, text),
    }
}

fn applied_slot(random: &mut ChaCha8Rng, anchors: &Anchors) -> AppliedSlot {
    AppliedSlot {
        slot: slot(random, anchors),
        command_count: edge_u32(random),
        writes: short_vec(random, |random| AppliedWrite {
            index: edge_u32(random),
            key: text(random),
            value: text(random),
        }),
    }
}

/// Any message, of any variant, with fields near the anchors or at the edges.
pub fn message(random: &mut ChaCha8Rng, anchors: &Anchors) -> Message {
    let leader_hint = |random: &mut ChaCha8Rng| random.random_bool(0.7).then(|| edge_u32(random));
    match random.random_range(0..31) {
        0 => Message::Hello { node: node(random) },
        1 | 2 => Message::Prepare {
            ballot: ballot(random, anchors),
            from_slot: slot(random, anchors),
        },
        3 | 4 => Message::Promise {
            ballot: ballot(random, anchors),
            accepted: short_vec(random, |random| accepted_entry(random, anchors)),
            trimmed_slot: slot(random, anchors),
            next_from_slot: random.random_bool(0.3).then(|| slot(random, anchors)),
        },
        5 | 6 => Message::Accept {
            ballot: ballot(random, anchors),
            slot: slot(random, anchors),
            value: value(random),
        },
        7 => Message::Accepted {
            ballot: ballot(random, anchors),
            slot: slot(random, anchors),
        },
        8 => Message::Rejected {
            ballot: ballot(random, anchors),
            promised: ballot(random, anchors),
        },
        9 | 10 => Message::AcceptedValues {
            entries: short_vec(random, |random| accepted_entry(random, anchors)),
        },
        11 => Message::SyncAccepted {
            from_slot: slot(random, anchors),
            to_slot: slot(random, anchors),
        },
        12 => Message::Confirm {
            ballot: ballot(random, anchors),
            sequence: edge_u64(random, &[]),
        },
        13 => Message::Confirmed {
            ballot: ballot(random, anchors),
            sequence: edge_u64(random, &[0, 1, 2]),
        },
        14 => Message::Heartbeat {
            ballot: ballot(random, anchors),
            decided_slot_max: slot(random, anchors),
        },
        15 => Message::Write {
            command: command(random),
            client: node(random),
        },
        16 => Message::WriteDecided {
            request_id: request_id(random),
            slot: slot(random, anchors),
            client: node(random),
        },
        17 => Message::WriteRefused {
            request_id: request_id(random),
            leader_hint: leader_hint(random),
            client: node(random),
        },
        18 => Message::ReadIndex {
            read_id: edge_u64(random, &[]),
        },
        19 => Message::ReadIndexGranted {
            read_id: edge_u64(random, &[]),
            slot: slot(random, anchors),
        },
        20 => Message::ReadIndexRefused {
            read_id: edge_u64(random, &[]),
            leader_hint: leader_hint(random),
        },
        21 => Message::Read {
            read_id: edge_u64(random, &[]),
            key: text(random),
            min_slot: slot(random, anchors),
        },
        22 => Message::SyncDecided {
            from_slot: slot(random, anchors),
            limit: edge_u32(random),
        },
        23 | 24 => Message::Decided {
            entries: short_vec(random, |random| decided_entry(random, anchors)),
            applied_slot: slot(random, anchors),
        },
        25 => match random.random_range(0..3) {
            0 => Message::LearnerProgress {
                applied_slot: slot(random, anchors),
                durable_slot: slot(random, anchors),
            },
            1 => match random.random_range(0..3) {
                0 => Message::Trim {
                    trimmed_slot: slot(random, anchors),
                },
                1 => Message::NoSpace {
                    ballot: ballot(random, anchors),
                    slot: slot(random, anchors),
                },
                _ => Message::WriteFailed {
                    request_id: request_id(random),
                    reason: text(random),
                    client: node(random),
                },
            },
            _ => Message::Trimmed {
                trimmed_slot: slot(random, anchors),
            },
        },
        26 => Message::Subscribe {
            stream_id: edge_u64(random, &[]),
            from_slot: slot(random, anchors),
        },
        27 => match random.random_range(0..3) {
            0 => Message::Unsubscribe {
                stream_id: edge_u64(random, &[]),
            },
            1 => Message::StatusRequest {
                request_id: edge_u64(random, &[]),
            },
            _ => Message::StatusReply {
                request_id: edge_u64(random, &[]),
                status: node_status(random, anchors),
            },
        },
        28 => Message::ReadApplied {
            stream_id: edge_u64(random, &[]),
            from_slot: slot(random, anchors),
            limit: edge_u32(random),
        },
        29 => match random.random_range(0..6) {
            0 => Message::ReadReply {
                read_id: edge_u64(random, &[]),
                value: random
                    .random_bool(0.5)
                    .then(|| versioned_value(random, anchors)),
                applied_slot: slot(random, anchors),
            },
            3 => Message::Outcome {
                read_id: edge_u64(random, &[]),
                request_id: request_id(random),
                min_slot: slot(random, anchors),
            },
            4 => Message::OutcomeReply {
                read_id: edge_u64(random, &[]),
                outcome: random
                    .random_bool(0.7)
                    .then(|| applied_request(random, anchors)),
                applied_slot: slot(random, anchors),
            },
            1 => Message::ReadTimedOut {
                read_id: edge_u64(random, &[]),
                applied_slot: slot(random, anchors),
            },
            2 => Message::Applied {
                stream_id: edge_u64(random, &[]),
                from_slot: slot(random, anchors),
                to_slot: slot(random, anchors),
                slots: short_vec(random, |random| applied_slot(random, anchors)),
                applied_slot: slot(random, anchors),
            },
            _ => Message::SubscriptionTooOld {
                stream_id: edge_u64(random, &[]),
                oldest_available_slot: slot(random, anchors),
                applied_slot: slot(random, anchors),
            },
        },
        _ => match random.random_range(0..3) {
            0 => Message::SnapshotChunk {
                chunk: snapshot_chunk(random, anchors),
            },
            1 => Message::SnapshotRequest,
            _ => Message::SnapshotAck {
                applied_slot: slot(random, anchors),
                index: edge_u32(random),
            },
        },
    }
}

/// The largest length prefix postcard can read: a 10-byte varint of `u64::MAX`.
pub const HUGE_LENGTH_VARINT: [u8; 10] =
    [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];

/// `bytes` damaged the ways a hostile peer or a bad disk would: bits flipped, bytes
/// replaced, the end cut off, a length prefix made huge, bytes inserted, or random bytes
/// outright. Applies one to three of them.
pub fn mutate(random: &mut ChaCha8Rng, bytes: &[u8]) -> Vec<u8> {
    if bytes.is_empty() || random.random_bool(0.1) {
        let length = random.random_range(0..64);
        return (0..length).map(|_| random.random()).collect();
    }
    let mut mutated = bytes.to_vec();
    for _ in 0..random.random_range(1..=3) {
        if mutated.is_empty() {
            break;
        }
        let position = random.random_range(0..mutated.len());
        match random.random_range(0..6) {
            0 => mutated[position] ^= 1 << random.random_range(0..8),
            1 => mutated[position] = random.random(),
            2 => mutated.truncate(position),
            3 => {
                // A length or count prefix made as large as a varint can say.
                let width = random.random_range(1..=HUGE_LENGTH_VARINT.len());
                let mut prefix = HUGE_LENGTH_VARINT[..width].to_vec();
                if let Some(last) = prefix.last_mut() {
                    *last &= 0x7F; // ends the varint here
                    *last |= 0x01;
                }
                mutated.splice(position..position, prefix);
            }
            4 => mutated.insert(position, random.random()),
            _ => mutated[position] = *[0x00, 0x7F, 0x80, 0xFF].choose(random).expect("not empty"),
        }
    }
    mutated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_harness_reports_a_planted_panic_with_a_seed_that_replays_it() {
        let panics_on_a_prepare_of_round_max = |random: &mut ChaCha8Rng| {
            let anchors = Anchors::default();
            for _ in 0..50 {
                if let Message::Prepare { ballot, .. } = message(random, &anchors) {
                    if ballot.round == u64::MAX {
                        panic!("planted: a Prepare of round u64::MAX");
                    }
                }
            }
            Ok(())
        };
        let failure = run_cases("planted", 1, 1000, panics_on_a_prepare_of_round_max)
            .expect_err("the planted panic is found within 1000 cases");
        assert!(
            failure
                .problem
                .contains("planted: a Prepare of round u64::MAX"),
            "{failure}"
        );
        assert!(failure
            .to_string()
            .contains(&format!("FUZZ_SEED={} FUZZ_ITERATIONS=1", failure.seed)));
        let replay = run_cases("planted", failure.seed, 1, panics_on_a_prepare_of_round_max)
            .expect_err("the printed seed fails again");
        assert_eq!(replay, failure);
    }

    #[test]
    fn the_harness_reports_a_broken_invariant_returned_as_an_error() {
        let failure = run_cases("broken", 7, 3, |_| Err("invariant".into())).unwrap_err();
        assert_eq!(failure.seed, 7);
        assert_eq!(failure.problem, "invariant");
        assert_eq!(run_cases("fine", 7, 3, |_| Ok(())), Ok(()));
    }
}
