//! Ballots and slots.
//!
//! A ballot (the paper's "proposal number") is a pair (round, proposer id), ordered by
//! round first, so two proposers never use the same ballot and every proposer can always
//! pick a ballot above any it has seen.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A position in the replicated log. Slots start at 1; 0 means "no slot yet".
pub type Slot = u64;

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

    /// The smallest ballot owned by `proposer_id` that is above `self`.
    pub fn next_for(self, proposer_id: u32) -> Ballot {
        Ballot::new(self.round + 1, proposer_id)
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
}
