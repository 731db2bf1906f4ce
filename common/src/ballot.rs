//! Ballots and slots.
//!
//! A ballot (the paper's "proposal number") is a pair (round, proposer id), ordered by
//! round first, so two proposers never use the same ballot and every proposer can always
//! pick a ballot above any it has seen.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A position in the replicated log. Slots start at 1; 0 means "no slot yet".
pub type Slot = u64;

/// How far above the highest round a node has seen a ballot's round may lie before the
/// node refuses it as implausible.
///
/// A round grows by at most 1 per election (a candidate picks the highest round it has
/// seen plus one), so an honest ballot is never more than the number of elections ahead of
/// what any node saw. 2^32 elections at one per 10 ms is over a year of continuous
/// elections, so no honest ballot is refused; while a peer that wants to exhaust the u64
/// rounds (leaving no ballot above its own) must now climb in steps of at most 2^32, and
/// every step above a node's promise is refused until honest rounds reach it: exhausting
/// u64 at that step takes 2^32 refused steps.
pub const MAX_ROUND_LEAD: u64 = 1 << 32;

/// The highest slot a node takes from the network; a higher one is refused as implausible.
///
/// At a million slots per second an honest cluster needs about 146,000 years to reach
/// 2^62, while every `slot + n` computed from a plausible slot and a count `n` below 2^62
/// (batch sizes, sync windows) then fits in a u64.
pub const MAX_PLAUSIBLE_SLOT: Slot = 1 << 62;

/// Whether `slot` is a slot an honest node can send: in `[1, MAX_PLAUSIBLE_SLOT]`.
pub fn is_plausible_slot(slot: Slot) -> bool {
    (1..=MAX_PLAUSIBLE_SLOT).contains(&slot)
}

/// A proposal number: totally ordered and unique per proposer.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    /// Compared first: a proposer that wants to lead picks a round above any it has seen.
    pub round: u64,
    /// Breaks ties between proposers using the same round. Proposer ids start at 1.
    pub proposer_id: u32,
}

impl Ballot {
    /// The ballot below every real ballot; an acceptor that never promised holds it.
    pub const ZERO: Ballot = Ballot {
        round: 0,
        proposer_id: 0,
    };

    /// A ballot of `round` owned by `proposer_id`.
    pub fn new(round: u64, proposer_id: u32) -> Self {
        Ballot { round, proposer_id }
    }

    /// The smallest ballot owned by `proposer_id` whose round is above `self`'s.
    ///
    /// Panics if `self.round` is `u64::MAX`; see [`Ballot::checked_next_for`] for rounds
    /// that come from the network.
    pub fn next_for(self, proposer_id: u32) -> Ballot {
        self.checked_next_for(proposer_id)
            .expect("a round below u64::MAX has a next round")
    }

    /// [`Ballot::next_for`], or None when no round is left above `self.round`.
    pub fn checked_next_for(self, proposer_id: u32) -> Option<Ballot> {
        Some(Ballot::new(self.round.checked_add(1)?, proposer_id))
    }

    /// Whether a node that has seen rounds up to `highest_round_seen` may take `self` as
    /// honest: its round is at most [`MAX_ROUND_LEAD`] above. Checked arithmetic: near
    /// `u64::MAX` every round above `highest_round_seen` stays plausible.
    pub fn is_plausible_after(self, highest_round_seen: u64) -> bool {
        match highest_round_seen.checked_add(MAX_ROUND_LEAD) {
            Some(limit) => self.round <= limit,
            None => true,
        }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}.{}", self.round, self.proposer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_proposer() {
        assert!(Ballot::new(1, 2) > Ballot::new(1, 1));
        assert!(Ballot::new(2, 1) > Ballot::new(1, 9));
        assert!(Ballot::new(1, 1) > Ballot::ZERO);
        assert_eq!(Ballot::new(3, 1).next_for(2), Ballot::new(4, 2));
    }

    #[test]
    fn no_round_is_left_above_the_last_one() {
        assert_eq!(Ballot::new(u64::MAX, 1).checked_next_for(2), None);
        assert_eq!(
            Ballot::new(u64::MAX - 1, 1).checked_next_for(2),
            Some(Ballot::new(u64::MAX, 2))
        );
    }

    #[test]
    fn a_round_more_than_the_maximum_lead_above_the_highest_seen_is_implausible() {
        assert!(Ballot::new(MAX_ROUND_LEAD, 1).is_plausible_after(0));
        assert!(!Ballot::new(MAX_ROUND_LEAD + 1, 1).is_plausible_after(0));
        assert!(Ballot::new(7 + MAX_ROUND_LEAD, 1).is_plausible_after(7));
        assert!(!Ballot::new(u64::MAX, 1).is_plausible_after(7));
        assert!(Ballot::new(u64::MAX, 1).is_plausible_after(u64::MAX - 1));
        assert!(Ballot::new(3, 1).is_plausible_after(u64::MAX));
    }

    #[test]
    fn slots_zero_and_beyond_the_plausible_maximum_are_implausible() {
        assert!(!is_plausible_slot(0));
        assert!(is_plausible_slot(1));
        assert!(is_plausible_slot(MAX_PLAUSIBLE_SLOT));
        assert!(!is_plausible_slot(MAX_PLAUSIBLE_SLOT + 1));
        assert!(!is_plausible_slot(Slot::MAX));
    }
}
