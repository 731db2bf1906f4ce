//! Trimming: the leader keeps the acceptors' logs to the live window. Learners report the
//! slot up to which their synced log restores their state (`LearnerProgress`'s
//! `durable_slot`); the trim point is the highest slot that [`ProposerOptions::trim_copies`]
//! learners hold durably. The leader sends it to the acceptors (`Trim`) whenever it rises,
//! and again every [`TRIM_RESEND_TICKS`] for an acceptor that was away; they persist it,
//! forget the slots at or below it, and answer an Accept of such a slot with `Trimmed`.
//! docs/PROTOCOL.md ("Trimming") argues why no decided value is lost.
//!
//! [`ProposerOptions::trim_copies`]: super::ProposerOptions::trim_copies

use common::ballot::{is_plausible_slot, Slot};
use common::message::Message;
use common::node::{NodeId, Role};

use super::{Effect, Proposer, State};

/// How often the leader repeats its trim point while it does not change, for acceptors
/// that missed it (100 ticks: a second).
pub const TRIM_RESEND_TICKS: u64 = 100;

impl Proposer {
    /// Notes learner `learner`'s durable slot as it last reported it. A learner that
    /// restarted reports less until its first sync, and one whose disk was replaced
    /// reports 0 until a peer's snapshot made it whole again: the trim point waits for
    /// them rather than count a copy that may be gone. Learners are numbered from 1 to
    /// `learner_count`; another id is not one of the cluster's learners and does not count.
    pub(super) fn note_learner_durable_slot(&mut self, learner: u32, durable_slot: Slot) {
        if learner == 0 || learner as usize > self.options.learner_count {
            return;
        }
        self.learner_durable_slots.insert(learner, durable_slot);
    }

    /// The slot up to which the acceptors may forget: the `trim_copies`-th highest durable
    /// slot among the learners (0 while fewer learners have reported).
    pub fn trim_point(&self) -> Slot {
        let copies = self.options.trim_copies();
        if copies == 0 {
            return 0;
        }
        let mut durable: Vec<Slot> = self.learner_durable_slots.values().copied().collect();
        durable.sort_unstable_by(|left, right| right.cmp(left));
        let point = durable.get(copies - 1).copied().unwrap_or(0);
        #[cfg(feature = "planted-bugs")]
        if self.planted_bug == Some(super::PlantedBug::TrimOneSlotTooFar) && point > 0 {
            return point + 1;
        }
        point
    }

    /// The leader's share of trimming, each tick: sends the trim point to the acceptors
    /// when it rose, or when it was last sent [`TRIM_RESEND_TICKS`] ago.
    pub(super) fn send_trim_if_due(&mut self, effects: &mut Vec<Effect>) {
        if !matches!(self.state, State::Leader(_)) {
            return;
        }
        let trimmed_slot = self.trim_point();
        if trimmed_slot == 0 {
            return;
        }
        let due = match self.trim_sent {
            None => true,
            Some((sent, tick)) => trimmed_slot > sent || self.now_tick >= tick + TRIM_RESEND_TICKS,
        };
        if !due {
            return;
        }
        self.trim_sent = Some((trimmed_slot, self.now_tick));
        effects.push(Effect::Broadcast {
            role: Role::Acceptor,
            message: Message::Trim { trimmed_slot },
        });
    }

    /// An acceptor forgot every slot `<= trimmed_slot` (it answered our Accept of one).
    /// Those slots are decided, but maybe not with the value this leader proposed there (a
    /// later leader may have chosen another before we noticed), so their writes are
    /// answered as of unknown outcome; the client retries with the same request id, which
    /// learners apply at most once. The leader then proposes only above the trim point.
    pub(super) fn on_trimmed(
        &mut self,
        from: NodeId,
        trimmed_slot: Slot,
        effects: &mut Vec<Effect>,
    ) {
        if from.role != Role::Acceptor || !is_plausible_slot(trimmed_slot) {
            self.raise_alarm(format!(
                "{from} sent a Trimmed of slot {trimmed_slot}: ignored (only acceptors send \
                 it, for plausible slots)"
            ));
            return;
        }
        let leader_hint = Some(self.options.id);
        let State::Leader(leadership) = &mut self.state else {
            return;
        };
        let still_in_flight = leadership.in_flight.split_off(&(trimmed_slot + 1));
        let forgotten = std::mem::replace(&mut leadership.in_flight, still_in_flight);
        for write in forgotten.into_values().flat_map(|slot| slot.writes) {
            effects.push(write.answer(Message::WriteRefused {
                request_id: write.command.request_id,
                leader_hint,
                client: write.client,
            }));
        }
        leadership.next_slot = leadership.next_slot.max(trimmed_slot + 1);
        self.decided_prefix = self.decided_prefix.max(trimmed_slot);
        self.decided_slot_max = self.decided_slot_max.max(trimmed_slot);
        self.propose_queued(effects);
    }
}

#[cfg(test)]
mod tests {
    use crate::core::test_support::*;
    use crate::core::TRIM_RESEND_TICKS;

    fn progress(proposer: &mut Proposer, learner: u32, applied: Slot, durable: Slot) {
        proposer.handle(
            NodeId::learner(learner),
            Message::LearnerProgress {
                applied_slot: applied,
                durable_slot: durable,
            },
        );
    }

    fn trims(effects: &[Effect]) -> Vec<Slot> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Broadcast {
                    message: Message::Trim { trimmed_slot },
                    ..
                } => Some(*trimmed_slot),
                _ => None,
            })
            .collect()
    }

    fn leader_with_learners(learner_count: usize) -> Proposer {
        // A long leader timeout: no acceptor confirms this leader in these tests.
        let mut options = ProposerOptions::new(1, QUORUM, 10, 400);
        options.learner_count = learner_count;
        let mut proposer = Proposer::new(options, 0);
        elect(&mut proposer, vec![vec![], vec![]]);
        proposer
    }

    #[test]
    fn the_trim_point_waits_for_two_learners_to_hold_a_slot_durably() {
        let mut leader = leader_with_learners(2);
        progress(&mut leader, 1, 90, 80);
        assert_eq!(leader.trim_point(), 0, "one learner's disk is not enough");
        let mut effects = Vec::new();
        for _ in 0..5 {
            effects.extend(leader.tick());
        }
        assert!(trims(&effects).is_empty());
        progress(&mut leader, 2, 70, 60);
        assert_eq!(
            leader.trim_point(),
            60,
            "the lower of the two durable slots"
        );
        let effects = leader.tick();
        assert_eq!(trims(&effects), vec![60]);
        assert!(
            trims(&leader.tick()).is_empty(),
            "sent once while unchanged"
        );
        progress(&mut leader, 2, 95, 85);
        assert_eq!(trims(&leader.tick()), vec![80]);
        // Repeated for acceptors that missed it.
        let mut later = Vec::new();
        for _ in 0..TRIM_RESEND_TICKS {
            later.extend(leader.tick());
        }
        assert_eq!(trims(&later), vec![80]);
        // A learner that restarted reports less: the trim point waits for it.
        progress(&mut leader, 1, 90, 10);
        assert_eq!(leader.trim_point(), 10);
        assert!(
            trims(&leader.tick()).is_empty(),
            "a lower point is not news"
        );
    }

    #[test]
    fn progress_from_a_learner_outside_the_cluster_or_durable_beyond_applied_does_not_count() {
        let mut leader = leader_with_learners(2);
        progress(&mut leader, 1, 50, 50);
        progress(&mut leader, 3, 50, 50);
        assert_eq!(leader.trim_point(), 0, "learner 3 is not one of the two");
        progress(&mut leader, 2, 50, 60);
        assert_eq!(leader.trim_point(), 0, "durable beyond applied is refused");
        assert!(leader.alarms()[0].contains("durable no further than applied"));
    }

    #[test]
    fn a_single_learner_is_enough_when_it_is_the_only_one() {
        let mut leader = leader_with_learners(1);
        progress(&mut leader, 1, 9, 7);
        assert_eq!(leader.trim_point(), 7);
        let mut none = leader_with_learners(0);
        progress(&mut none, 1, 9, 7);
        assert_eq!(none.trim_point(), 0, "no learners configured: no trimming");
    }

    #[test]
    fn a_trimmed_answer_refuses_the_writes_of_forgotten_slots_and_moves_past_them() {
        let mut leader = leader_with_learners(2);
        for number in 1..=2 {
            client_write(&mut leader, number);
        }
        let effects = leader.handle(NodeId::acceptor(1), Message::Trimmed { trimmed_slot: 40 });
        let refused: Vec<RequestId> = sent(&effects)
            .into_iter()
            .filter_map(|(_, message)| match message {
                Message::WriteRefused { request_id, .. } => Some(request_id),
                _ => None,
            })
            .collect();
        assert_eq!(refused, vec![RequestId(1), RequestId(2)]);
        // The next write goes above the trim point.
        let effects = client_write(&mut leader, 3);
        assert_eq!(accepts(&effects)[0].0, 41);
    }
}
