//! Fuzz target of the proposer core: random messages from random senders of every role,
//! interleaved with ticks and connections opening and closing, with helpful answers
//! (Promises and votes under its own ballot) mixed in so that it also leads. No input may
//! panic it, and after every step its own invariants hold. Replay a failure with the line
//! it prints: `FUZZ_SEED=<seed> FUZZ_ITERATIONS=1 cargo test -p proposer --test fuzz`.
//!
//! The proposer's round file holds fixed 8-byte records decoded by a length check in the
//! service (`RoundStore::open`), with no decoder to fuzz.

use common::ballot::Ballot;
use common::fuzzing::{self, Anchors};
use common::message::{Message, ProposerState, RoleStatus};
use common::node::{NodeId, Role};
use proposer::core::{Effect, Proposer, ProposerOptions};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const STEPS_PER_CASE: usize = 400;
const ID: u32 = 2;

fn status(proposer: &Proposer) -> (ProposerState, Ballot, u64) {
    match proposer.status() {
        RoleStatus::Proposer {
            state,
            ballot,
            decided_slot_max,
            ..
        } => (state, ballot, decided_slot_max),
        other => panic!("a proposer reported {other:?}"),
    }
}

/// A hostile message, or one an honest acceptor would send now (so that elections and
/// phase 2 make progress), from a sender of any role.
fn next_message(random: &mut ChaCha8Rng, proposer: &Proposer) -> (NodeId, Message) {
    let (state, ballot, decided_slot_max) = status(proposer);
    let anchors = Anchors {
        slots: vec![decided_slot_max, decided_slot_max + 1],
        rounds: vec![ballot.round],
        proposer_ids: vec![ballot.proposer_id, ID],
    };
    let acceptor = NodeId::acceptor(random.random_range(1..=3));
    if random.random_bool(0.4) {
        let message = match state {
            ProposerState::Candidate => Message::Promise {
                ballot,
                trimmed_slot: 0,
                next_from_slot: None,
                accepted: (0..random.random_range(0..3))
                    .map(|_| {
                        let mut entry = fuzzing::accepted_entry(random, &anchors);
                        entry.ballot = Ballot::new(ballot.round.saturating_sub(1), 1);
                        entry
                    })
                    .collect(),
            },
            ProposerState::Leader if random.random_bool(0.8) => Message::Accepted {
                ballot,
                slot: decided_slot_max + random.random_range(1..4),
            },
            ProposerState::Leader => Message::Confirmed {
                ballot,
                sequence: random.random_range(0..4),
            },
            ProposerState::Follower => Message::Heartbeat {
                ballot: Ballot::new(ballot.round, 1),
                decided_slot_max,
            },
        };
        let from = match message {
            Message::Heartbeat { .. } => NodeId::proposer(1),
            _ => acceptor,
        };
        return (from, message);
    }
    (fuzzing::node(random), fuzzing::message(random, &anchors))
}

fn check_effects(
    effects: &[Effect],
    persisted_round: &mut u64,
    proposer: &Proposer,
) -> Result<(), String> {
    for effect in effects {
        match effect {
            Effect::PersistRound(round) => {
                if *round <= *persisted_round {
                    return Err(format!("round {round} persisted after {persisted_round}"));
                }
                *persisted_round = *round;
            }
            Effect::Broadcast {
                message:
                    Message::Prepare { ballot, .. }
                    | Message::Accept { ballot, .. }
                    | Message::Confirm { ballot, .. }
                    | Message::Heartbeat { ballot, .. },
                ..
            } if ballot.proposer_id != ID || ballot.round > *persisted_round => {
                return Err(format!(
                    "sent ballot {ballot}, not its own below the persisted round \
                     {persisted_round}"
                ));
            }
            Effect::Send {
                to,
                message: Message::WriteDecided { client, .. } | Message::WriteRefused { client, .. },
            } if to.role == Role::Client && to != client => {
                return Err(format!("a write's answer to {to} names client {client}"));
            }
            _ => {}
        }
    }
    let (state, ballot, _) = status(proposer);
    if state == ProposerState::Leader && ballot.proposer_id != ID {
        return Err(format!("leads with ballot {ballot}, not its own"));
    }
    if proposer.alarms().len() > common::alarm::ALARMS_MAX + 1 {
        return Err("the alarms are not bounded".into());
    }
    Ok(())
}

fn proposer_case(
    random: &mut ChaCha8Rng,
    handle: &mut dyn FnMut(&mut Proposer, NodeId, Message) -> Vec<Effect>,
) -> Result<(), String> {
    let mut options = ProposerOptions::new(ID, 2, 2, 10);
    options.retransmit_ticks = 5;
    options.max_slots_in_flight = 4;
    options.seed = random.random();
    let mut persisted_round = random.random_range(0..3);
    let mut proposer = Proposer::new(options, persisted_round);
    for step in 0..STEPS_PER_CASE {
        let (description, effects) = match random.random_range(0..10) {
            0..=2 => ("a tick".to_string(), proposer.tick()),
            3 => {
                let node = fuzzing::node(random);
                if random.random_bool(0.5) {
                    proposer.on_connected(node);
                } else {
                    proposer.on_disconnected(node);
                }
                (format!("a connection change of {node}"), Vec::new())
            }
            _ => {
                let (from, message) = next_message(random, &proposer);
                let description = format!("{message:?} from {from}");
                (description, handle(&mut proposer, from, message))
            }
        };
        check_effects(&effects, &mut persisted_round, &proposer)
            .map_err(|problem| format!("step {step}, {description}: {problem}"))?;
    }
    Ok(())
}

#[test]
fn random_messages_ticks_and_connections_never_panic_the_proposer_or_break_its_invariants() {
    let mut leaders = 0;
    fuzzing::fuzz("proposer::core::Proposer::handle", 1500, |random| {
        proposer_case(random, &mut |proposer, from, message| {
            let effects = proposer.handle(from, message);
            leaders += usize::from(proposer.is_leader());
            effects
        })
    });
    assert!(leaders > 0, "the workload never made the proposer lead");
}

#[test]
fn the_proposer_harness_catches_a_planted_panic_on_a_heartbeat_of_round_u64_max() {
    let mut planted = |proposer: &mut Proposer, from: NodeId, message: Message| {
        if matches!(message, Message::Heartbeat { ballot, .. } if ballot.round == u64::MAX) {
            panic!("planted: a Heartbeat of round u64::MAX");
        }
        proposer.handle(from, message)
    };
    let failure = fuzzing::run_cases("planted", 1, 100, |random| {
        proposer_case(random, &mut planted)
    })
    .expect_err("the harness reaches the planted input");
    assert!(failure.problem.contains("planted"), "{failure}");
}
