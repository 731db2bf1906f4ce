//! Random sequences of Prepare, Accept, Confirm and SyncAccepted from several proposers,
//! duplicated and reordered, with crashes and log compactions in between. After every step
//! the acceptor's safety properties are checked. One seed replays one run:
//! `SIM_SEED=42 cargo test -p acceptor --test randomised`.

use acceptor::core::{Acceptor, Effect, Record};
use common::ballot::{Ballot, Slot};
use common::message::Message;
use common::node::NodeId;
use common::value::{Command, RequestId, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

const PROPOSERS: u32 = 3;
/// Ballots stay within this many rounds of the current one, so old proposers keep
/// showing up late next to new ones.
const ROUND_SPREAD: u64 = 3;
const SLOTS: Slot = 8;
const STEPS_PER_RUN: usize = 300;
const DEFAULT_SEEDS: std::ops::Range<u64> = 0..100;

/// One step as observed from outside: the state before and after, what came in, what
/// came out, and every record persisted so far (the log).
struct Step<'a> {
    before: &'a Acceptor,
    after: &'a Acceptor,
    message: &'a Message,
    effects: &'a [Effect],
    log: &'a [Record],
}

fn sent_messages(effects: &[Effect]) -> impl Iterator<Item = &Message> {
    effects.iter().filter_map(|effect| match effect {
        Effect::Send { message, .. } | Effect::SendUnheld { message, .. } => Some(message),
        Effect::SendToLearners(message) => Some(message),
        Effect::Persist(_) => None,
    })
}

/// Promised never decreases.
fn promise_never_decreases(step: &Step) -> Result<(), String> {
    if step.after.promised_ballot() < step.before.promised_ballot() {
        return Err(format!(
            "promise went down from {} to {}",
            step.before.promised_ballot(),
            step.after.promised_ballot()
        ));
    }
    Ok(())
}

/// No accepted ballot lies above the promise.
fn accepted_ballots_within_promise(step: &Step) -> Result<(), String> {
    for slot in 0..=SLOTS {
        if let Some((ballot, _)) = step.after.accepted(slot) {
            if ballot > step.after.promised_ballot() {
                return Err(format!(
                    "slot {slot} accepted under {ballot} above the promise {}",
                    step.after.promised_ballot()
                ));
            }
        }
    }
    Ok(())
}

/// Every Persist comes before every message.
fn persists_precede_sends(step: &Step) -> Result<(), String> {
    let first_send = step
        .effects
        .iter()
        .position(|effect| !matches!(effect, Effect::Persist(_)))
        .unwrap_or(step.effects.len());
    if step.effects[first_send..]
        .iter()
        .any(|effect| matches!(effect, Effect::Persist(_)))
    {
        return Err(format!("a Persist after a send: {:?}", step.effects));
    }
    Ok(())
}

/// A crash right after this step loses nothing: the log rebuilds the acceptor exactly,
/// and so does its snapshot (what compaction writes).
fn log_reproduces_state(step: &Step) -> Result<(), String> {
    let id = step.after.id();
    if Acceptor::recover(id, step.log.iter().cloned()) != *step.after {
        return Err("recovering from the persisted records gives another acceptor".into());
    }
    if Acceptor::recover(id, step.after.snapshot()) != *step.after {
        return Err("recovering from the snapshot gives another acceptor".into());
    }
    Ok(())
}

/// Answers agree with the state: a Promise or Accepted only at or above the promise held
/// before, a Rejected names the current promise, an Accepted leaves the vote in place, and
/// a Promise reports exactly the votes from its first slot on.
fn answers_agree_with_state(step: &Step) -> Result<(), String> {
    let promised_before = step.before.promised_ballot();
    for sent in sent_messages(step.effects) {
        match (step.message, sent) {
            (_, Message::Rejected { ballot, promised })
                if *ballot >= promised_before || *promised != step.after.promised_ballot() =>
            {
                return Err(format!(
                    "wrong rejection {sent:?} (promised {promised_before})"
                ));
            }
            (
                Message::Prepare { from_slot, .. },
                Message::Promise {
                    ballot, accepted, ..
                },
            ) => {
                if *ballot < promised_before || *ballot != step.after.promised_ballot() {
                    return Err(format!(
                        "Promise {ballot} against promise {promised_before}"
                    ));
                }
                let expected: Vec<(Slot, Ballot, Value)> = (*from_slot..=SLOTS)
                    .filter_map(|slot| {
                        step.after
                            .accepted(slot)
                            .map(|(ballot, value)| (slot, ballot, value.clone()))
                    })
                    .collect();
                let reported: Vec<(Slot, Ballot, Value)> = accepted
                    .iter()
                    .map(|entry| (entry.slot, entry.ballot, entry.value.clone()))
                    .collect();
                if expected != reported {
                    return Err(format!(
                        "Promise reports {reported:?}, state is {expected:?}"
                    ));
                }
            }
            (Message::Accept { value, .. }, Message::Accepted { ballot, slot })
                if *ballot < promised_before
                    || step.after.accepted(*slot) != Some((*ballot, value)) =>
            {
                return Err(format!(
                    "Accepted {ballot} in {slot} not reflected in state"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A named safety property, checked after every step.
type Check = fn(&Step) -> Result<(), String>;

const CHECKS: [(&str, Check); 5] = [
    ("promise never decreases", promise_never_decreases),
    (
        "accepted ballots within promise",
        accepted_ballots_within_promise,
    ),
    ("persists precede sends", persists_precede_sends),
    ("log reproduces state", log_reproduces_state),
    ("answers agree with state", answers_agree_with_state),
];

fn check_step(step: &Step) -> Result<(), String> {
    for (name, check) in CHECKS {
        check(step).map_err(|problem| format!("{name}: {problem}"))?;
    }
    Ok(())
}

/// Proposers never send two values for one slot under one ballot: the value of a
/// (slot, ballot) is drawn once and remembered.
struct Workload {
    rng: ChaCha8Rng,
    values: HashMap<(Slot, Ballot), Value>,
    sent: Vec<(NodeId, Message)>,
    sequence: u64,
    /// The ballot of the proposer that leads now; rises with each election.
    leader_ballot: Ballot,
}

impl Workload {
    fn new(seed: u64) -> Self {
        Workload {
            rng: ChaCha8Rng::seed_from_u64(seed),
            values: HashMap::new(),
            sent: Vec::new(),
            sequence: 0,
            leader_ballot: Ballot::new(1, 1),
        }
    }

    /// Mostly the current leader's ballot; sometimes an election moves it up, and
    /// sometimes a stale or rival proposer speaks with a ballot of a recent round.
    fn proposer_and_ballot(&mut self) -> (u32, Ballot) {
        if self.rng.random_bool(0.03) {
            let leader = self.rng.random_range(1..=PROPOSERS);
            self.leader_ballot = self.leader_ballot.next_for(leader);
        }
        if self.rng.random_bool(0.7) {
            return (self.leader_ballot.proposer_id, self.leader_ballot);
        }
        let proposer_id = self.rng.random_range(1..=PROPOSERS);
        let newest = self.leader_ballot.round;
        let round = self
            .rng
            .random_range(newest.saturating_sub(ROUND_SPREAD).max(1)..=newest);
        (proposer_id, Ballot::new(round, proposer_id))
    }

    fn value(&mut self, slot: Slot, ballot: Ballot) -> Value {
        let noop = self.rng.random_bool(0.2);
        let request = self.rng.random::<u64>() as u128;
        self.values
            .entry((slot, ballot))
            .or_insert_with(|| {
                if noop {
                    Value::Noop
                } else {
                    Value::Batch(vec![Command::put(
                        RequestId(request),
                        format!("key{slot}"),
                        format!("{slot}@{ballot}"),
                    )])
                }
            })
            .clone()
    }

    /// A fresh message, or (one time in five) an old one again: duplicated and late.
    fn next(&mut self) -> (NodeId, Message) {
        if !self.sent.is_empty() && self.rng.random_bool(0.2) {
            let index = self.rng.random_range(0..self.sent.len());
            return self.sent[index].clone();
        }
        let (proposer_id, ballot) = self.proposer_and_ballot();
        let from = NodeId::proposer(proposer_id);
        let message = match self.rng.random_range(0..10) {
            0..=2 => Message::Prepare {
                ballot,
                from_slot: self.rng.random_range(1..=SLOTS),
            },
            3..=7 => {
                let slot = self.rng.random_range(1..=SLOTS);
                Message::Accept {
                    ballot,
                    slot,
                    value: self.value(slot, ballot),
                }
            }
            8 => {
                self.sequence += 1;
                Message::Confirm {
                    ballot,
                    sequence: self.sequence,
                }
            }
            _ => {
                let from_slot = self.rng.random_range(1..=SLOTS);
                let to_slot = self.rng.random_range(1..=SLOTS + 1);
                let learner = NodeId::learner(1);
                let message = Message::SyncAccepted { from_slot, to_slot };
                self.sent.push((learner, message.clone()));
                return (learner, message);
            }
        };
        self.sent.push((from, message.clone()));
        (from, message)
    }
}

/// How often each interesting case came up, so a workload that stops exercising one is
/// noticed.
#[derive(Default, Debug)]
struct Coverage {
    promises_with_votes: usize,
    accepted: usize,
    rejected: usize,
    confirmed: usize,
    crashes: usize,
}

impl Coverage {
    fn count(&mut self, effects: &[Effect]) {
        for message in sent_messages(effects) {
            match message {
                Message::Promise { accepted, .. } if !accepted.is_empty() => {
                    self.promises_with_votes += 1
                }
                Message::Accepted { .. } => self.accepted += 1,
                Message::Rejected { .. } => self.rejected += 1,
                Message::Confirmed { .. } => self.confirmed += 1,
                _ => {}
            }
        }
    }
}

fn simulate(seed: u64, coverage: &mut Coverage) -> Result<(), String> {
    let mut workload = Workload::new(seed);
    let mut acceptor = Acceptor::new(1);
    let mut log: Vec<Record> = Vec::new();
    for step_number in 0..STEPS_PER_RUN {
        let (from, message) = workload.next();
        let before = acceptor.clone();
        let effects = acceptor.handle(from, message.clone());
        log.extend(effects.iter().filter_map(|effect| match effect {
            Effect::Persist(record) => Some(record.clone()),
            _ => None,
        }));
        coverage.count(&effects);
        let step = Step {
            before: &before,
            after: &acceptor,
            message: &message,
            effects: &effects,
            log: &log,
        };
        check_step(&step)
            .map_err(|problem| format!("step {step_number}, {message:?} from {from}: {problem}"))?;
        if workload.rng.random_bool(0.05) {
            // A crash: only what was persisted comes back.
            coverage.crashes += 1;
            acceptor = Acceptor::recover(1, log.iter().cloned());
        }
        if workload.rng.random_bool(0.02) {
            // A compaction: the log becomes the snapshot.
            log = acceptor.snapshot();
        }
    }
    Ok(())
}

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(text) => vec![text.trim().parse().expect("SIM_SEED is a u64")],
        Err(_) => DEFAULT_SEEDS.collect(),
    }
}

#[test]
fn random_histories_keep_every_acceptor_invariant() {
    let mut coverage = Coverage::default();
    for seed in seeds() {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            simulate(seed, &mut coverage)
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => panic!("SIM_SEED={seed}: {problem}"),
            Err(panic) => {
                eprintln!("SIM_SEED={seed} panicked");
                std::panic::resume_unwind(panic);
            }
        }
    }
    eprintln!("{coverage:?}");
    assert!(
        coverage.promises_with_votes > 0
            && coverage.accepted > 0
            && coverage.rejected > 0
            && coverage.confirmed > 0
            && coverage.crashes > 0,
        "the workload no longer exercises every case: {coverage:?}"
    );
}

/// A checker that never fails proves nothing: plant known bugs and expect them caught.
#[test]
fn the_checker_catches_a_lost_persist_and_a_forgotten_promise() {
    let mut acceptor = Acceptor::new(1);
    let before = acceptor.clone();
    let message = Message::Prepare {
        ballot: Ballot::new(3, 1),
        from_slot: 1,
    };
    let effects = acceptor.handle(NodeId::proposer(1), message.clone());
    let honest_log: Vec<Record> = vec![Record::Promised(Ballot::new(3, 1))];
    let honest = Step {
        before: &before,
        after: &acceptor,
        message: &message,
        effects: &effects,
        log: &honest_log,
    };
    assert_eq!(check_step(&honest), Ok(()));

    let lost_persist = Step { log: &[], ..honest };
    let problem = check_step(&lost_persist).unwrap_err();
    assert!(problem.starts_with("log reproduces state"), "{problem}");

    let forgetful = Acceptor::recover(1, [Record::Promised(Ballot::new(1, 1))]);
    let forgotten_promise = Step {
        before: &acceptor,
        after: &forgetful,
        message: &message,
        effects: &[],
        log: &[Record::Promised(Ballot::new(1, 1))],
    };
    let problem = check_step(&forgotten_promise).unwrap_err();
    assert!(problem.starts_with("promise never decreases"), "{problem}");

    let late_persist: Vec<Effect> = effects.iter().rev().cloned().collect();
    let reordered = Step {
        effects: &late_persist,
        ..honest
    };
    let problem = check_step(&reordered).unwrap_err();
    assert!(problem.starts_with("persists precede sends"), "{problem}");
}
