//! Fuzz targets of the acceptor: its core's `handle` fed random messages from random
//! senders of every role (crashes and compactions in between), and its log record decoder
//! fed random and damaged bytes. No input may panic, and after every step the acceptor's
//! own invariants hold. Replay a failure with the line it prints:
//! `FUZZ_SEED=<seed> FUZZ_ITERATIONS=1 cargo test -p acceptor --test fuzz`.

use acceptor::core::{Acceptor, Effect, Record};
use common::alarm::ALARMS_MAX;
use common::ballot::Ballot;
use common::fuzzing::{self, Anchors};
use common::message::Message;
use common::node::{NodeId, Role};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const STEPS_PER_CASE: usize = 300;

fn anchors(acceptor: &Acceptor) -> Anchors {
    let promised = acceptor.promised_ballot();
    Anchors {
        slots: vec![acceptor.accepted_slot_max(), 1],
        rounds: vec![promised.round],
        proposer_ids: vec![promised.proposer_id],
    }
}

/// A message, and a sender that is often the owner of its ballot so that most messages
/// get past the sender checks and reach the protocol.
fn next_input(random: &mut ChaCha8Rng, acceptor: &Acceptor) -> (NodeId, Message) {
    let message = fuzzing::message(random, &anchors(acceptor));
    let owner = match &message {
        Message::Prepare { ballot, .. }
        | Message::Accept { ballot, .. }
        | Message::Confirm { ballot, .. } => Some(NodeId::proposer(ballot.proposer_id)),
        _ => None,
    };
    match owner {
        Some(owner) if random.random_bool(0.7) => (owner, message),
        _ => (fuzzing::node(random), message),
    }
}

fn check_step(
    before: &Acceptor,
    after: &Acceptor,
    from: NodeId,
    message: &Message,
    effects: &[Effect],
    log: &[Record],
) -> Result<(), String> {
    if after.promised_ballot() < before.promised_ballot() {
        return Err("the promise went down".into());
    }
    for record in after.snapshot() {
        if let Record::Accepted(entry) = record {
            if entry.ballot > after.promised_ballot() {
                return Err(format!("slot {} accepted above the promise", entry.slot));
            }
        }
    }
    let first_send = effects
        .iter()
        .position(|effect| !matches!(effect, Effect::Persist(_)))
        .unwrap_or(effects.len());
    if effects[first_send..]
        .iter()
        .any(|effect| matches!(effect, Effect::Persist(_)))
    {
        return Err("a Persist after a send".into());
    }
    if Acceptor::recover(after.id(), log.iter().cloned()) != *after {
        return Err("the log does not reproduce the state".into());
    }
    let foreign_ballot = match message {
        Message::Prepare { ballot, .. }
        | Message::Accept { ballot, .. }
        | Message::Confirm { ballot, .. } => {
            from.role != Role::Proposer || ballot.proposer_id != from.id
        }
        _ => false,
    };
    if foreign_ballot && (!effects.is_empty() || after != before) {
        return Err("a message under another sender's ballot was acted on".into());
    }
    if after.alarms().len() > ALARMS_MAX + 1 {
        return Err(format!("{} alarm lines", after.alarms().len()));
    }
    Ok(())
}

/// One case: `STEPS_PER_CASE` inputs through `handle` (the real `Acceptor::handle`, or a
/// planted bug in the harness's own test).
fn acceptor_case(
    random: &mut ChaCha8Rng,
    handle: &mut dyn FnMut(&mut Acceptor, NodeId, Message) -> Vec<Effect>,
) -> Result<(), String> {
    let mut acceptor = Acceptor::new(random.random_range(1..=3));
    let mut log: Vec<Record> = Vec::new();
    for step in 0..STEPS_PER_CASE {
        let (from, message) = next_input(random, &acceptor);
        let before = acceptor.clone();
        let effects = handle(&mut acceptor, from, message.clone());
        log.extend(effects.iter().filter_map(|effect| match effect {
            Effect::Persist(record) => Some(record.clone()),
            _ => None,
        }));
        check_step(&before, &acceptor, from, &message, &effects, &log)
            .map_err(|problem| format!("step {step}, {message:?} from {from}: {problem}"))?;
        if random.random_bool(0.02) {
            acceptor = Acceptor::recover(acceptor.id(), log.iter().cloned());
        }
        if random.random_bool(0.02) {
            log = acceptor.snapshot();
        }
    }
    Ok(())
}

#[test]
fn random_messages_from_any_sender_never_panic_the_acceptor_or_break_its_invariants() {
    fuzzing::fuzz("acceptor::core::Acceptor::handle", 3000, |random| {
        acceptor_case(random, &mut |acceptor, from, message| {
            acceptor.handle(from, message)
        })
    });
}

#[test]
fn the_acceptor_harness_catches_a_planted_panic_on_an_accept_of_round_u64_max() {
    let mut planted = |acceptor: &mut Acceptor, from: NodeId, message: Message| {
        if matches!(message, Message::Accept { ballot, .. } if ballot.round == u64::MAX) {
            panic!("planted: an Accept of round u64::MAX");
        }
        acceptor.handle(from, message)
    };
    let failure = fuzzing::run_cases("planted", 1, 100, |random| {
        acceptor_case(random, &mut planted)
    })
    .expect_err("the harness reaches the planted input");
    assert!(failure.problem.contains("planted"), "{failure}");
}

#[test]
fn damaged_log_records_decode_to_errors_without_panics() {
    fuzzing::fuzz("acceptor::core::Record decode", 20_000, |random| {
        let record = if random.random_bool(0.3) {
            Record::Promised(fuzzing::ballot(random, &Anchors::default()))
        } else {
            Record::Accepted(fuzzing::accepted_entry(random, &Anchors::default()))
        };
        let valid = postcard::to_allocvec(&record).map_err(|error| error.to_string())?;
        if postcard::from_bytes::<Record>(&valid).ok() != Some(record) {
            return Err("a valid record does not round-trip".into());
        }
        for _ in 0..8 {
            let damaged = fuzzing::mutate(random, &valid);
            let _ = postcard::from_bytes::<Record>(&damaged);
        }
        Ok(())
    });
}

#[test]
fn the_acceptor_recovers_from_records_of_any_ballot_and_slot() {
    // Its own log is trusted, but a record at the edges must not break the arithmetic.
    let acceptor = Acceptor::recover(
        1,
        [
            Record::Promised(Ballot::new(u64::MAX, u32::MAX)),
            Record::Accepted(common::message::AcceptedEntry {
                slot: u64::MAX,
                ballot: Ballot::new(u64::MAX, 1),
                value: common::value::Value::Noop,
            }),
        ],
    );
    assert_eq!(acceptor.accepted_slot_max(), u64::MAX);
}
