//! Election, the paper's phase 1. A follower that hears no heartbeat for a leader timeout
//! (plus a seeded random backoff) becomes a candidate: a ballot above any seen, made
//! durable first, then Prepare to every acceptor. Promises from a quorum, each checked for
//! honesty, make it leader: it re-proposes per slot the value accepted with the highest
//! ballot and fills holes with no-ops. A higher ballot (Rejected, Heartbeat) deposes it.
//!
//! A Promise comes in pages (a long report would be one huge frame): the candidate asks
//! the same acceptor again from where a page ends, and counts an acceptor once its report
//! is complete. A Promise also carries the acceptor's trim point: slots at or below it are
//! decided and held by the learners, so the new leader starts after the highest trim
//! point reported and never fills a trimmed slot with a no-op.

use common::ballot::{is_plausible_slot, Ballot, Slot, MAX_PLAUSIBLE_SLOT};
use common::message::{AcceptedEntry, Message};
use common::node::{NodeId, Role};
use common::value::Value;
use rand::Rng;
use std::collections::{BTreeMap, VecDeque};

#[cfg(feature = "planted-bugs")]
use super::PlantedBug;
use super::{Effect, Leadership, Proposer, State};

/// The most slots above its `from_slot` a Promise may report. A new leader proposes every
/// slot from `from_slot` to the highest reported one at once (holes as no-ops), so a
/// report far above would make it propose billions of slots; honest reports stay within
/// the slots decided since a learner last reported progress, far below 2^24.
pub const MAX_PROMISE_SPAN_SLOTS: u64 = 1 << 24;

/// Why a Promise of `ballot` from acceptor `acceptor`, answering a Prepare from
/// `from_slot`, reporting `accepted`, cannot be honest, if it cannot: a slot outside
/// `[from_slot, from_slot + MAX_PROMISE_SPAN_SLOTS]` or above [`MAX_PLAUSIBLE_SLOT`], a
/// slot accepted at or above the promised ballot (an acceptor accepts a ballot only after
/// promising it, and would then have rejected this Prepare), or a second value for a slot
/// under a ballot that this or another Promise reports with another value.
fn promise_fault(
    acceptor: u32,
    ballot: Ballot,
    from_slot: Slot,
    page: &PromiseReport,
    promises: &BTreeMap<u32, PromiseReport>,
) -> Option<String> {
    // The span counts from the acceptor's trim point when it is further: the live window
    // above it is what the acceptor can report, however stale the candidate's view.
    let span_end = from_slot
        .max(page.trimmed_slot)
        .saturating_add(MAX_PROMISE_SPAN_SLOTS);
    let mut reported: BTreeMap<(Slot, Ballot), &Value> = BTreeMap::new();
    for (other, report) in promises {
        for entry in &report.entries {
            if *other != acceptor {
                reported.insert((entry.slot, entry.ballot), &entry.value);
            }
        }
    }
    let asked_from = promises
        .get(&acceptor)
        .and_then(|report| report.next_from_slot)
        .unwrap_or(from_slot);
    if page.trimmed_slot > MAX_PLAUSIBLE_SLOT {
        return Some(format!(
            "reports a trim point of slot {}, beyond {}",
            page.trimmed_slot,
            span_end.min(MAX_PLAUSIBLE_SLOT)
        ));
    }
    let page_end = page
        .entries
        .last()
        .map_or(asked_from, |entry| entry.slot.saturating_add(1));
    if let Some(next) = page.next_from_slot {
        if next < page_end.max(asked_from + 1) || next > span_end {
            return Some(format!(
                "says its report goes on from slot {next}, not after its page [{asked_from}, \
                 {page_end}) within [{from_slot}, {span_end}]"
            ));
        }
    }
    let mut previous_slot = None;
    for entry in &page.entries {
        if previous_slot.is_some_and(|previous| entry.slot < previous) || entry.slot < asked_from {
            return Some(format!(
                "reports slot {} out of order (the page starts at {asked_from})",
                entry.slot
            ));
        }
        previous_slot = Some(entry.slot);
        if !is_plausible_slot(entry.slot) || entry.slot < from_slot || entry.slot > span_end {
            return Some(format!(
                "reports slot {}, outside [{from_slot}, {}]",
                entry.slot,
                span_end.min(MAX_PLAUSIBLE_SLOT)
            ));
        }
        if entry.ballot >= ballot {
            return Some(format!(
                "reports slot {} accepted under {}, not below the promise",
                entry.slot, entry.ballot
            ));
        }
        match reported.insert((entry.slot, entry.ballot), &entry.value) {
            Some(known) if *known != entry.value => {
                return Some(format!(
                    "reports a second value for slot {} under ballot {}",
                    entry.slot, entry.ballot
                ));
            }
            _ => {}
        }
    }
    None
}

/// What one acceptor reported in its Promise so far: the pages received, in slot order.
#[derive(Debug, Default)]
pub(crate) struct PromiseReport {
    /// The accepted entries of every page received.
    pub(crate) entries: Vec<AcceptedEntry>,
    /// The acceptor's trim point.
    pub(crate) trimmed_slot: Slot,
    /// Where the next page starts; None once the report is complete.
    pub(crate) next_from_slot: Option<Slot>,
}

impl Proposer {
    fn election_backoff_ticks(&mut self) -> u64 {
        self.options.leader_timeout_ticks
            + self
                .random
                .random_range(0..self.options.leader_timeout_ticks.max(1))
    }

    fn observe_ballot(&mut self, ballot: Ballot) {
        self.highest_ballot_seen = self.highest_ballot_seen.max(ballot);
    }

    pub(super) fn on_learner_progress(
        &mut self,
        from: NodeId,
        applied_slot: Slot,
        durable_slot: Slot,
    ) {
        if from.role != Role::Learner
            || applied_slot > MAX_PLAUSIBLE_SLOT
            || durable_slot > applied_slot
        {
            self.raise_alarm(format!(
                "{from} sent a LearnerProgress of slot {applied_slot} (durable {durable_slot}): \
                 ignored (only learners send it, for slots up to {MAX_PLAUSIBLE_SLOT}, durable \
                 no further than applied)"
            ));
            return;
        }
        self.decided_prefix = self.decided_prefix.max(applied_slot);
        self.decided_slot_max = self.decided_slot_max.max(applied_slot);
        self.note_learner_durable_slot(from.id, durable_slot);
    }

    pub(super) fn start_election(&mut self, effects: &mut Vec<Effect>) {
        let highest = self.highest_round_known();
        let Some(round) = highest.checked_add(1) else {
            // Only a round refused as implausible could get here, or a corrupt round file:
            // no ballot is left above it, so campaigning would reuse one.
            self.raise_alarm(format!(
                "no round is left above {highest}: this proposer stops campaigning"
            ));
            self.state = State::Follower {
                leader: None,
                last_heard_tick: self.now_tick,
                election_tick: u64::MAX,
            };
            return;
        };
        let ballot = Ballot::new(round, self.options.id);
        self.persisted_round = round;
        self.observe_ballot(ballot);
        let from_slot = self.decided_prefix + 1;
        effects.push(Effect::PersistRound(round));
        effects.push(Effect::Broadcast {
            role: Role::Acceptor,
            message: Message::Prepare { ballot, from_slot },
        });
        self.state = State::Candidate {
            ballot,
            from_slot,
            promises: BTreeMap::new(),
            started_tick: self.now_tick,
        };
    }

    /// Leaves leadership or candidacy; every write and read waiting on us is refused so
    /// its client retries elsewhere (with the same request id).
    pub(super) fn become_follower(
        &mut self,
        leader: Option<(u32, Ballot)>,
        effects: &mut Vec<Effect>,
    ) {
        let previous = std::mem::replace(
            &mut self.state,
            State::Follower {
                leader,
                last_heard_tick: self.now_tick,
                election_tick: 0,
            },
        );
        let election_tick = self.now_tick + self.election_backoff_ticks();
        if let State::Follower {
            election_tick: tick,
            ..
        } = &mut self.state
        {
            *tick = election_tick;
        }
        if let State::Leader(leadership) = previous {
            let leader_hint = leader.map(|(id, _)| id);
            let Leadership {
                in_flight,
                queue,
                confirm_round,
                waiting_reads,
                ..
            } = *leadership;
            let writes = in_flight
                .into_values()
                .flat_map(|slot| slot.writes)
                .chain(queue);
            for write in writes {
                effects.push(write.answer(Message::WriteRefused {
                    request_id: write.command.request_id,
                    leader_hint,
                    client: write.client,
                }));
            }
            let reads = confirm_round
                .into_iter()
                .flat_map(|round| round.reads)
                .chain(waiting_reads);
            for read in reads {
                effects.push(Effect::Send {
                    to: read.reply_to,
                    message: Message::ReadIndexRefused {
                        read_id: read.read_id,
                        leader_hint,
                    },
                });
            }
        }
    }

    pub(super) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        page: PromiseReport,
        effects: &mut Vec<Effect>,
    ) {
        let State::Candidate {
            ballot: candidate_ballot,
            from_slot,
            promises,
            started_tick,
        } = &mut self.state
        else {
            return;
        };
        if ballot != *candidate_ballot || from.role != Role::Acceptor {
            return;
        }
        match promises.get(&from.id).map(|report| report.next_from_slot) {
            // Complete already: a retransmitted Prepare's second answer.
            Some(None) => return,
            // A page this report already holds (a duplicate, or the answer to a
            // retransmitted Prepare): ignored, and the report keeps every page it has, so
            // that a later page can never complete it without the earlier ones.
            Some(Some(expected))
                if page.next_from_slot.is_some_and(|next| next <= expected)
                    || page
                        .entries
                        .first()
                        .is_some_and(|entry| entry.slot < expected) =>
            {
                return;
            }
            _ => {}
        }
        if let Some(problem) = promise_fault(from.id, ballot, *from_slot, &page, promises) {
            // Not counted; the pages received before stay, so the report cannot be
            // completed by a later page without them.
            self.raise_alarm(format!(
                "acceptor {} sent a Promise of {ballot} that {problem}: not counted",
                from.id
            ));
            return;
        }
        if page.next_from_slot.is_some() {
            // A long report makes progress: the candidate waits for the rest rather than
            // give up after one leader timeout.
            *started_tick = self.now_tick;
        }
        let report = promises.entry(from.id).or_default();
        report.entries.extend(page.entries);
        report.trimmed_slot = report.trimmed_slot.max(page.trimmed_slot);
        report.next_from_slot = page.next_from_slot;
        if let Some(next_from_slot) = page.next_from_slot {
            effects.push(Effect::Send {
                to: from,
                message: Message::Prepare {
                    ballot,
                    from_slot: next_from_slot,
                },
            });
            return;
        }
        let complete = promises
            .values()
            .filter(|report| report.next_from_slot.is_none())
            .count();
        if complete >= self.options.quorum_size {
            self.become_leader(effects);
        }
    }

    fn become_leader(&mut self, effects: &mut Vec<Effect>) {
        let State::Candidate {
            ballot,
            from_slot,
            promises,
            ..
        } = std::mem::replace(
            &mut self.state,
            State::Follower {
                leader: None,
                last_heard_tick: self.now_tick,
                election_tick: u64::MAX,
            },
        )
        else {
            unreachable!("only a candidate becomes leader");
        };
        let mut trimmed_slot: Slot = 0;
        // Per slot, the value accepted with the highest ballot may have been chosen: it is
        // the only value this leader may propose there.
        // Only complete reports count (a quorum of them is why we lead).
        let promises: BTreeMap<u32, Vec<AcceptedEntry>> = promises
            .into_iter()
            .filter(|(_, report)| report.next_from_slot.is_none())
            .map(|(acceptor, report)| {
                trimmed_slot = trimmed_slot.max(report.trimmed_slot);
                (acceptor, report.entries)
            })
            .collect();
        // Slots at or below a trim point are decided and held by the learners: never
        // proposed again, least of all as no-ops.
        let from_slot = from_slot.max(trimmed_slot + 1);
        self.decided_prefix = self.decided_prefix.max(trimmed_slot);
        self.decided_slot_max = self.decided_slot_max.max(trimmed_slot);
        #[cfg(feature = "planted-bugs")]
        let promises = self.planted_skip_minority_values(promises);
        let mut highest: BTreeMap<Slot, (Ballot, Value)> = BTreeMap::new();
        for entry in promises.into_values().flatten() {
            if entry.slot < from_slot {
                continue;
            }
            match highest.get(&entry.slot) {
                Some((known, known_value)) if *known >= entry.ballot => {
                    debug_assert!(
                        *known != entry.ballot || *known_value == entry.value,
                        "on_promise refuses two values in slot {} under one ballot {}",
                        entry.slot,
                        entry.ballot
                    );
                }
                _ => {
                    highest.insert(entry.slot, (entry.ballot, entry.value));
                }
            }
        }
        let last_reported_slot = highest.keys().next_back().copied().unwrap_or(0);
        // Plausible by `promise_fault` and `on_learner_progress`: no overflow.
        let next_slot = last_reported_slot.max(from_slot - 1) + 1;
        let mut leadership = Leadership {
            ballot,
            next_slot,
            in_flight: BTreeMap::new(),
            queue: VecDeque::new(),
            last_heartbeat_tick: self.now_tick,
            last_confirmed_tick: self.now_tick,
            confirm_sequence: 0,
            confirm_round: None,
            waiting_reads: Vec::new(),
        };
        for slot in from_slot..next_slot {
            let value = highest
                .remove(&slot)
                .map(|(_, value)| value)
                .unwrap_or(Value::Noop);
            leadership.propose(slot, value, Vec::new(), self.now_tick, effects);
        }
        self.state = State::Leader(Box::new(leadership));
        self.send_heartbeat(effects);
    }

    /// The planted bug [`PlantedBug::SkipValueAcceptedByMinority`]: drops every reported
    /// value fewer than a quorum of the Promises carry, so its slot becomes a no-op.
    #[cfg(feature = "planted-bugs")]
    fn planted_skip_minority_values(
        &self,
        mut promises: BTreeMap<u32, Vec<AcceptedEntry>>,
    ) -> BTreeMap<u32, Vec<AcceptedEntry>> {
        if self.planted_bug != Some(PlantedBug::SkipValueAcceptedByMinority) {
            return promises;
        }
        let mut reports: BTreeMap<(Slot, Ballot), usize> = BTreeMap::new();
        for entry in promises.values().flatten() {
            *reports.entry((entry.slot, entry.ballot)).or_default() += 1;
        }
        for entries in promises.values_mut() {
            entries
                .retain(|entry| reports[&(entry.slot, entry.ballot)] >= self.options.quorum_size);
        }
        promises
    }

    pub(super) fn on_rejected(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        promised: Ballot,
        effects: &mut Vec<Effect>,
    ) {
        if from.role != Role::Acceptor {
            self.raise_alarm(format!("{from} sent a Rejected: ignored"));
            return;
        }
        if !self.accept_observed_ballot(from, "Rejected", promised) {
            return;
        }
        self.observe_ballot(promised);
        let ours = match &self.state {
            State::Candidate { ballot: ours, .. } => *ours,
            State::Leader(leadership) => leadership.ballot,
            State::Follower { .. } => return,
        };
        if ballot == ours && promised > ours {
            self.become_follower(None, effects);
        }
    }

    pub(super) fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot, effects: &mut Vec<Effect>) {
        if from.role != Role::Proposer || from.id == self.options.id {
            return;
        }
        if ballot.proposer_id != from.id {
            self.raise_alarm(format!(
                "proposer {} sent a Heartbeat under ballot {ballot}, which belongs to proposer \
                 {}: ignored",
                from.id, ballot.proposer_id
            ));
            return;
        }
        if !self.accept_observed_ballot(from, "Heartbeat", ballot) {
            return;
        }
        self.observe_ballot(ballot);
        let now_tick = self.now_tick;
        match &mut self.state {
            State::Leader(leadership) => {
                if ballot > leadership.ballot {
                    self.become_follower(Some((from.id, ballot)), effects);
                }
                // A lower ballot: a deposed leader that has not noticed yet; its Accepts
                // and Confirms are rejected, so it steps down on its own.
            }
            State::Candidate { .. } => {
                // A live leader: do not depose it, whatever our ballot.
                self.become_follower(Some((from.id, ballot)), effects);
            }
            State::Follower {
                leader,
                last_heard_tick,
                election_tick,
            } => {
                let leader_silent =
                    now_tick >= *last_heard_tick + self.options.leader_timeout_ticks;
                let follows = match leader {
                    None => true,
                    Some((_, leader_ballot)) => ballot >= *leader_ballot || leader_silent,
                };
                if follows {
                    *leader = Some((from.id, ballot));
                    *last_heard_tick = now_tick;
                    let backoff = self
                        .random
                        .random_range(0..self.options.leader_timeout_ticks.max(1));
                    *election_tick = now_tick + self.options.leader_timeout_ticks + backoff;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;

    #[test]
    fn follower_starts_an_election_after_the_leader_timeout_and_persists_the_round_first() {
        let mut proposer = proposer(1);
        for _ in 0..100 {
            assert!(proposer.tick().is_empty(), "no election before the timeout");
        }
        let (ballot, from_slot, effects) = tick_until_candidate(&mut proposer);
        assert_eq!(ballot, Ballot::new(1, 1));
        assert_eq!(from_slot, 1);
        assert_eq!(
            effects[0],
            Effect::PersistRound(1),
            "durable before Prepare leaves"
        );
    }

    #[test]
    fn a_leader_covers_in_its_next_phase_one_the_slots_it_decided_but_no_learner_applied() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        client_write(&mut proposer, 1);
        for acceptor in 1..=2 {
            proposer.handle(
                NodeId::acceptor(acceptor),
                Message::Accepted { ballot, slot: 1 },
            );
        }
        assert_eq!(
            proposer.status(),
            RoleStatus::Proposer {
                state: ProposerState::Leader,
                ballot,
                leader: Some(1),
                decided_slot_max: 1
            }
        );
        // Deposed before any learner reported slot 1 applied.
        proposer.handle(
            NodeId::acceptor(3),
            Message::Rejected {
                ballot,
                promised: Ballot::new(ballot.round + 1, 2),
            },
        );
        let (_, from_slot, _) = tick_until_candidate(&mut proposer);
        assert_eq!(
            from_slot, 1,
            "slot 1 may be unlearnable from the votes as they stand: phase 1 covers it"
        );
        // Once a learner applied it, phase 1 starts after it.
        proposer.handle(
            NodeId::learner(1),
            Message::LearnerProgress {
                applied_slot: 1,
                durable_slot: 0,
            },
        );
        proposer.handle(
            NodeId::acceptor(1),
            Message::Rejected {
                ballot: Ballot::new(ballot.round + 2, 1),
                promised: Ballot::new(ballot.round + 3, 2),
            },
        );
        for _ in 0..1000 {
            for effect in proposer.tick() {
                if let Effect::Broadcast {
                    message: Message::Prepare { from_slot, .. },
                    ..
                } = effect
                {
                    assert_eq!(from_slot, 2);
                    return;
                }
            }
        }
        panic!("no second election");
    }

    #[test]
    fn a_restarted_proposer_never_reuses_a_persisted_round() {
        let mut proposer = Proposer::new(ProposerOptions::new(2, QUORUM, 10, 100), 7);
        let (ballot, _, _) = tick_until_candidate(&mut proposer);
        assert_eq!(ballot, Ballot::new(8, 2));
    }

    #[test]
    fn new_leader_re_proposes_value_accepted_by_minority_and_fills_holes_with_noops() {
        let mut options = ProposerOptions::new(2, QUORUM, 10, 100);
        options.max_slots_in_flight = 2;
        let mut proposer = Proposer::new(options, 5);
        let minority_value = Value::Batch(vec![command(1, "k", "minority")]);
        let older_value = Value::Batch(vec![command(2, "k", "older")]);
        let promises = vec![
            vec![
                AcceptedEntry {
                    slot: 1,
                    ballot: Ballot::new(3, 1),
                    value: older_value,
                },
                AcceptedEntry {
                    slot: 3,
                    ballot: Ballot::new(3, 1),
                    value: Value::Noop,
                },
            ],
            vec![AcceptedEntry {
                slot: 1,
                ballot: Ballot::new(5, 3),
                value: minority_value.clone(),
            }],
        ];
        let (_, effects) = elect(&mut proposer, promises);
        let proposed = accepts(&effects);
        assert_eq!(
            proposed,
            vec![(1, minority_value), (2, Value::Noop), (3, Value::Noop)],
            "slot 1 takes the value of the highest ballot, slot 2 is a hole"
        );
    }

    #[test]
    fn a_higher_ballot_deposes_the_leader_and_its_pending_writes_are_refused() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        client_write(&mut proposer, 5);
        let effects = proposer.handle(
            NodeId::acceptor(1),
            Message::Rejected {
                ballot,
                promised: Ballot::new(4, 2),
            },
        );
        assert!(!proposer.is_leader());
        assert!(matches!(
            sent(&effects)[0].1,
            Message::WriteRefused {
                request_id: RequestId(5),
                ..
            }
        ));
        let (next, _, _) = tick_until_candidate(&mut proposer);
        assert!(
            next > Ballot::new(4, 2),
            "the next ballot is above the one seen"
        );
    }

    #[test]
    fn a_follower_that_hears_heartbeats_never_starts_an_election() {
        let mut proposer = proposer(2);
        for tick in 0..2000 {
            if tick % 10 == 0 {
                proposer.handle(
                    NodeId::proposer(1),
                    Message::Heartbeat {
                        ballot: Ballot::new(1, 1),
                        decided_slot_max: 0,
                    },
                );
            }
            let effects = proposer.tick();
            assert!(accepts(&effects).is_empty() && effects.is_empty());
        }
    }

    #[test]
    fn a_candidate_that_hears_a_live_leader_abandons_its_election() {
        let mut proposer = proposer(2);
        tick_until_candidate(&mut proposer);
        proposer.handle(
            NodeId::proposer(1),
            Message::Heartbeat {
                ballot: Ballot::new(1, 1),
                decided_slot_max: 0,
            },
        );
        assert_eq!(
            proposer.status(),
            RoleStatus::Proposer {
                state: ProposerState::Follower,
                ballot: Ballot::new(1, 2),
                leader: Some(1),
                decided_slot_max: 0
            }
        );
    }

    #[test]
    fn a_promise_reporting_a_value_accepted_at_the_promised_ballot_is_not_counted() {
        let (mut proposer, ballot) = candidate_1();
        for accepted in [
            vec![entry(1, ballot, "a")],
            vec![entry(1, Ballot::new(ballot.round + 1, 2), "a")],
        ] {
            proposer.handle(
                NodeId::acceptor(1),
                Message::Promise {
                    ballot,
                    accepted,
                    trimmed_slot: 0,
                    next_from_slot: None,
                },
            );
        }
        proposer.handle(
            NodeId::acceptor(2),
            Message::Promise {
                ballot,
                trimmed_slot: 0,
                next_from_slot: None,
                accepted: vec![],
            },
        );
        assert!(!proposer.is_leader(), "one honest Promise is no quorum");
        assert_eq!(
            proposer.alarms()[0],
            "acceptor 1 sent a Promise of 1.1 that reports slot 1 accepted under 1.1, not \
             below the promise: not counted (once)"
        );
    }

    #[test]
    fn a_promise_with_a_second_value_under_one_ballot_is_not_counted() {
        let (mut proposer, ballot) = candidate_1();
        let old = Ballot::new(0, 2);
        proposer.handle(
            NodeId::acceptor(1),
            Message::Promise {
                ballot,
                trimmed_slot: 0,
                next_from_slot: None,
                accepted: vec![entry(1, old, "a")],
            },
        );
        proposer.handle(
            NodeId::acceptor(2),
            Message::Promise {
                ballot,
                trimmed_slot: 0,
                next_from_slot: None,
                accepted: vec![entry(1, old, "b")],
            },
        );
        // Within one Promise too.
        proposer.handle(
            NodeId::acceptor(3),
            Message::Promise {
                ballot,
                trimmed_slot: 0,
                next_from_slot: None,
                accepted: vec![entry(2, old, "a"), entry(2, old, "b")],
            },
        );
        assert!(!proposer.is_leader());
        assert_eq!(
            proposer.alarms(),
            [
                "acceptor 2 sent a Promise of 1.1 that reports a second value for slot 1 under \
                 ballot 0.2: not counted (once)",
                "acceptor 3 sent a Promise of 1.1 that reports a second value for slot 2 under \
                 ballot 0.2: not counted (once)"
            ]
        );
    }

    #[test]
    fn a_promise_reporting_a_slot_far_beyond_its_from_slot_is_not_counted() {
        let (mut proposer, ballot) = candidate_1();
        let old = Ballot::new(0, 2);
        for slot in [u64::MAX, MAX_PLAUSIBLE_SLOT, 2 + MAX_PROMISE_SPAN_SLOTS] {
            proposer.handle(
                NodeId::acceptor(1),
                Message::Promise {
                    ballot,
                    trimmed_slot: 0,
                    next_from_slot: None,
                    accepted: vec![entry(slot, old, "a")],
                },
            );
        }
        assert_eq!(proposer.alarms().len(), 3);
        for acceptor in 1..=2 {
            proposer.handle(
                NodeId::acceptor(acceptor),
                Message::Promise {
                    ballot,
                    trimmed_slot: 0,
                    next_from_slot: None,
                    accepted: vec![entry(100, old, "a")],
                },
            );
        }
        assert!(proposer.is_leader(), "a report within the span is taken");
    }

    #[test]
    fn a_rejected_with_a_promised_round_of_u64_max_does_not_make_the_proposer_jump() {
        let mut proposer = proposer(1);
        let (ballot, _) = elect(&mut proposer, vec![vec![], vec![]]);
        proposer.handle(
            NodeId::acceptor(1),
            Message::Rejected {
                ballot,
                promised: Ballot::new(u64::MAX, 2),
            },
        );
        assert!(proposer.is_leader(), "an implausible ballot deposes nobody");
        assert_eq!(
            proposer.alarms(),
            [format!(
                "acceptor1 sent a Rejected naming ballot {}.2, more than 4294967296 rounds above \
                 the highest round known here (1): ignored (once)",
                u64::MAX
            )]
        );
        // A plausible higher ballot still deposes it, and the next round is one above.
        proposer.handle(
            NodeId::acceptor(1),
            Message::Rejected {
                ballot,
                promised: Ballot::new(5, 2),
            },
        );
        let (next, _, _) = tick_until_candidate(&mut proposer);
        assert_eq!(next, Ballot::new(6, 1));
    }

    #[test]
    fn a_heartbeat_under_another_proposers_or_an_implausible_ballot_is_ignored_with_an_alarm() {
        let mut proposer = proposer(2);
        for ballot in [Ballot::new(1, 3), Ballot::new(u64::MAX, 1)] {
            proposer.handle(
                NodeId::proposer(1),
                Message::Heartbeat {
                    ballot,
                    decided_slot_max: u64::MAX,
                },
            );
        }
        assert_eq!(
            proposer.leader_hint(),
            None,
            "no leader was taken from them"
        );
        assert_eq!(
            proposer.alarms()[0],
            "proposer 1 sent a Heartbeat under ballot 1.3, which belongs to proposer 3: \
             ignored (once)"
        );
        assert_eq!(proposer.alarms().len(), 2);
        let (ballot, _, _) = tick_until_candidate(&mut proposer);
        assert_eq!(ballot, Ballot::new(1, 2));
    }

    #[test]
    fn a_proposer_whose_rounds_are_exhausted_stops_campaigning_with_an_alarm() {
        let mut proposer = Proposer::new(ProposerOptions::new(1, QUORUM, 10, 100), u64::MAX);
        for _ in 0..1000 {
            assert!(proposer.tick().is_empty());
        }
        assert_eq!(
            proposer.alarms(),
            [format!(
                "no round is left above {}: this proposer stops campaigning (once)",
                u64::MAX
            )]
        );
    }

    #[test]
    fn learner_progress_beyond_the_plausible_slots_or_from_a_non_learner_is_ignored() {
        let mut proposer = proposer(1);
        proposer.handle(
            NodeId::learner(1),
            Message::LearnerProgress {
                applied_slot: u64::MAX,
                durable_slot: 0,
            },
        );
        proposer.handle(
            NodeId::client(1),
            Message::LearnerProgress {
                applied_slot: 5,
                durable_slot: 0,
            },
        );
        assert_eq!(proposer.alarms().len(), 2);
        let (_, from_slot, _) = tick_until_candidate(&mut proposer);
        assert_eq!(from_slot, 1);
    }

    #[test]
    fn a_paged_promise_counts_only_with_every_page_even_when_a_page_is_duplicated() {
        let (mut proposer, ballot) = candidate_1();
        let old = Ballot::new(0, 2);
        let page = |entries: Vec<AcceptedEntry>, next_from_slot: Option<Slot>| Message::Promise {
            ballot,
            accepted: entries,
            trimmed_slot: 0,
            next_from_slot,
        };
        let first = page(vec![entry(1, old, "chosen")], Some(2));
        let effects = proposer.handle(NodeId::acceptor(1), first.clone());
        assert_eq!(
            sent(&effects),
            vec![(
                NodeId::acceptor(1),
                Message::Prepare {
                    ballot,
                    from_slot: 2
                }
            )],
            "the candidate asks for the next page"
        );
        // A duplicate of the first page changes nothing and raises no alarm.
        assert!(proposer.handle(NodeId::acceptor(1), first).is_empty());
        assert!(proposer.alarms().is_empty());
        proposer.handle(NodeId::acceptor(1), page(vec![entry(2, old, "two")], None));
        let effects = proposer.handle(NodeId::acceptor(2), page(vec![], None));
        assert!(proposer.is_leader());
        let proposed = accepts(&effects);
        assert_eq!(proposed[0].0, 1);
        assert_eq!(
            proposed[0].1,
            entry(1, old, "chosen").value,
            "the first page's value is re-proposed, not lost"
        );
    }

    #[test]
    fn a_new_leader_starts_above_the_highest_trim_point_of_its_quorum() {
        let (mut proposer, ballot) = candidate_1();
        let old = Ballot::new(0, 2);
        proposer.handle(
            NodeId::acceptor(1),
            Message::Promise {
                ballot,
                accepted: vec![entry(6, old, "six")],
                trimmed_slot: 5,
                next_from_slot: None,
            },
        );
        let effects = proposer.handle(
            NodeId::acceptor(2),
            Message::Promise {
                ballot,
                accepted: vec![entry(3, old, "three"), entry(6, old, "six")],
                trimmed_slot: 2,
                next_from_slot: None,
            },
        );
        assert!(proposer.is_leader());
        let slots: Vec<Slot> = accepts(&effects)
            .into_iter()
            .map(|(slot, _)| slot)
            .collect();
        assert_eq!(
            slots,
            vec![6],
            "nothing at or below the trim point 5, no no-op there"
        );
    }
}
