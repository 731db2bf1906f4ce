//! Votes: the acceptors push every vote they cast (`AcceptedValues`), and a slot is chosen
//! once `quorum_size` distinct acceptors report the same ballot with the same value (the
//! paper's definition of *chosen*). Only acceptors vote; a report that contradicts another
//! under one ballot raises an alarm and is counted apart, so it cannot wedge the slot.

use common::ballot::{Ballot, Slot};
use common::message::AcceptedEntry;
use common::node::{NodeId, Role};
use common::value::Value;
use std::collections::BTreeMap;

use super::{Effect, Learner};

/// The votes counted so far for one slot that is not decided yet.
#[derive(Default)]
pub(super) struct SlotVotes {
    /// Each acceptor's latest report: the highest ballot it accepted for the slot, with
    /// the value. An acceptor's accepted ballot for a slot only grows, so a lower report
    /// that arrives late is stale and ignored.
    report_by_acceptor: BTreeMap<u32, (Ballot, Value)>,
}

/// What counting one report gave.
struct VoteOutcome {
    /// The value, once a quorum of acceptors reported it under one ballot.
    decided: Option<Value>,
    /// Why the report breaks the protocol, if it does.
    alarm: Option<String>,
}

impl SlotVotes {
    /// Counts `acceptor`'s report of `value` under `ballot`; decides the value once a
    /// quorum of acceptors report that same ballot with that same value.
    ///
    /// A ballot carries one value per slot, so two values under one ballot mean a peer
    /// broke the protocol. An acceptor that changes its value under its latest ballot is
    /// refused. Two acceptors reporting different values under one ballot (a proposer that
    /// sent each its own) are both kept and counted apart, with an alarm: only a quorum
    /// of the same (ballot, value) is a chosen value, so neither report can wedge the slot.
    fn record(
        &mut self,
        slot: Slot,
        acceptor: u32,
        ballot: Ballot,
        value: Value,
        quorum_size: usize,
    ) -> VoteOutcome {
        let mut outcome = VoteOutcome {
            decided: None,
            alarm: None,
        };
        match self.report_by_acceptor.get(&acceptor) {
            Some((latest, _)) if *latest > ballot => return outcome,
            Some((latest, latest_value)) if *latest == ballot && *latest_value != value => {
                outcome.alarm = Some(format!(
                    "acceptor {acceptor} reported a second value for slot {slot} under ballot \
                     {ballot}: ignored"
                ));
                return outcome;
            }
            _ => {}
        }
        if let Some((other, _)) =
            self.report_by_acceptor
                .iter()
                .find(|(other, (reported, reported_value))| {
                    **other != acceptor && *reported == ballot && *reported_value != value
                })
        {
            outcome.alarm = Some(format!(
                "acceptors {other} and {acceptor} reported different values for slot {slot} \
                 under ballot {ballot}"
            ));
        }
        let votes = 1 + self
            .report_by_acceptor
            .iter()
            .filter(|(other, (reported, reported_value))| {
                **other != acceptor && *reported == ballot && *reported_value == value
            })
            .count();
        if votes >= quorum_size {
            outcome.decided = Some(value);
        } else {
            self.report_by_acceptor.insert(acceptor, (ballot, value));
        }
        outcome
    }
}

impl Learner {
    pub(super) fn on_accepted_values(
        &mut self,
        from: NodeId,
        entries: Vec<AcceptedEntry>,
    ) -> Vec<Effect> {
        if from.role != Role::Acceptor {
            return Vec::new(); // only acceptors vote; counting anyone else could decide wrongly
        }
        let mut effects = Vec::new();
        for AcceptedEntry {
            slot,
            ballot,
            value,
        } in entries
        {
            if slot <= self.applied_slot || self.decided.contains_key(&slot) {
                continue;
            }
            if !self.plausible_slot_from(from, "vote", slot) {
                continue;
            }
            self.known_slot_max = self.known_slot_max.max(slot);
            let quorum_size = self.options.quorum_size;
            let votes = self.votes.entry(slot).or_default();
            let outcome = votes.record(slot, from.id, ballot, value, quorum_size);
            if let Some(alarm) = outcome.alarm {
                self.raise_alarm(alarm);
            }
            if let Some(value) = outcome.decided {
                self.decide(slot, value, "a quorum of acceptors", &mut effects);
            }
        }
        self.apply_contiguous(&mut effects);
        effects
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;

    #[test]
    fn a_slot_is_decided_only_by_a_quorum_reporting_the_same_ballot() {
        let mut learner = learner();
        let first = write(1, "k", "first");
        let second = write(2, "k", "second");
        assert!(vote(&mut learner, 1, 1, Ballot::new(1, 1), &first).is_empty());
        // A vote under another ballot does not add up with the first one.
        assert!(vote(&mut learner, 2, 1, Ballot::new(2, 2), &second).is_empty());
        assert_eq!(learner.decided_value(1), None);
        assert_eq!(learner.applied_slot(), 0);
        // The same acceptor repeating itself is still one vote.
        assert!(vote(&mut learner, 2, 1, Ballot::new(2, 2), &second).is_empty());
        let effects = vote(&mut learner, 3, 1, Ballot::new(2, 2), &second);
        assert_eq!(
            effects,
            vec![Effect::Persist(DecidedEntry {
                slot: 1,
                value: second.clone()
            })]
        );
        assert_eq!(learner.decided_value(1), Some(&second));
        assert_eq!(learner.applied_slot(), 1);
        assert_eq!(learner.value_of("k"), Some("second"));
    }

    #[test]
    fn an_acceptors_higher_ballot_report_replaces_its_earlier_one() {
        let mut learner = learner();
        let old = write(1, "k", "old");
        let new = write(2, "k", "new");
        vote(&mut learner, 1, 1, Ballot::new(1, 1), &old);
        vote(&mut learner, 1, 1, Ballot::new(2, 2), &new);
        // Acceptor 1 no longer stands behind ballot 1.1, so acceptor 2 alone is no quorum.
        assert!(vote(&mut learner, 2, 1, Ballot::new(1, 1), &old).is_empty());
        // A stale report arriving after the newer one changes nothing either.
        assert!(vote(&mut learner, 1, 1, Ballot::new(1, 1), &old).is_empty());
        assert_eq!(learner.applied_slot(), 0);
        vote(&mut learner, 3, 1, Ballot::new(2, 2), &new);
        assert_eq!(learner.value_of("k"), Some("new"));
    }

    #[test]
    fn duplicated_and_reordered_votes_decide_each_slot_once() {
        let mut learner = learner();
        let ballot = Ballot::new(3, 2);
        let values: Vec<Value> = (1..=3)
            .map(|slot| write(slot, "k", &slot.to_string()))
            .collect();
        let mut persisted = Vec::new();
        let order = [
            (2, 3),
            (1, 3),
            (2, 3),
            (3, 1),
            (1, 2),
            (3, 1),
            (1, 3),
            (2, 1),
            (3, 2),
            (1, 1),
        ];
        for (acceptor, slot) in order {
            let effects = vote(
                &mut learner,
                acceptor,
                slot,
                ballot,
                &values[slot as usize - 1],
            );
            persisted.extend(persisted_slots(&effects));
        }
        assert_eq!(
            persisted,
            vec![3, 1, 2],
            "each slot persisted once, when decided"
        );
        assert_eq!(learner.applied_slot(), 3);
        assert_eq!(learner.value_of("k"), Some("3"));
        // Votes for applied slots are ignored.
        assert!(vote(&mut learner, 3, 1, ballot, &values[0]).is_empty());
    }

    #[test]
    fn two_acceptors_reporting_different_values_under_one_ballot_raise_an_alarm_and_count_apart() {
        let mut learner = learner();
        let ballot = Ballot::new(1, 1);
        let (first, second) = (write(1, "k", "a"), write(2, "k", "b"));
        assert!(vote(&mut learner, 1, 1, ballot, &first).is_empty());
        assert!(vote(&mut learner, 2, 1, ballot, &second).is_empty());
        assert_eq!(learner.decided_value(1), None, "no quorum of one value");
        assert_eq!(
            learner.alarms(),
            ["acceptors 1 and 2 reported different values for slot 1 under ballot 1.1 (once)"]
        );
        // The slot is not wedged: a quorum of the same value still decides it.
        vote(&mut learner, 3, 1, ballot, &second);
        assert_eq!(learner.decided_value(1), Some(&second));
    }

    #[test]
    fn an_acceptor_reporting_a_second_value_under_its_ballot_is_ignored_with_an_alarm() {
        let mut learner = learner();
        let ballot = Ballot::new(1, 1);
        let (first, second) = (write(1, "k", "a"), write(2, "k", "b"));
        vote(&mut learner, 1, 1, ballot, &first);
        vote(&mut learner, 1, 1, ballot, &second);
        vote(&mut learner, 2, 1, ballot, &second);
        assert_eq!(
            learner.decided_value(1),
            None,
            "acceptor 1 still stands for the first"
        );
        assert_eq!(
            learner.alarms()[0],
            "acceptor 1 reported a second value for slot 1 under ballot 1.1: ignored (once)"
        );
        vote(&mut learner, 2, 1, Ballot::new(2, 2), &first);
        vote(&mut learner, 3, 1, Ballot::new(2, 2), &first);
        assert_eq!(learner.decided_value(1), Some(&first));
    }

    #[test]
    fn only_acceptors_votes_count() {
        let mut learner = learner();
        let value = write(1, "k", "v");
        learner.handle(
            NodeId::proposer(1),
            votes(&[(1, Ballot::new(1, 1), &value)]),
        );
        vote(&mut learner, 1, 1, Ballot::new(1, 1), &value);
        assert_eq!(learner.applied_slot(), 0);
    }
}
