//! The session table: for each session, the highest slot it has written or observed.
//!
//! A session read must not observe less. The table is bounded: past its capacity the
//! session remembered longest ago is forgotten, which is safe, because a session this
//! client API does not know reads strongly and a strong read observes at least as much.

use common::ballot::Slot;
use std::collections::{HashMap, VecDeque};

/// Sessions and their highest written or observed slot, at most `capacity` of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    capacity: usize,
    slots: HashMap<String, Slot>,
    /// Sessions in the order they were first remembered: the first is forgotten first.
    order: VecDeque<String>,
}

impl Sessions {
    /// An empty table of at most `capacity` sessions (at least one).
    pub fn new(capacity: usize) -> Self {
        Sessions {
            capacity: capacity.max(1),
            slots: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The highest slot `session` has written or observed, if it is remembered.
    pub fn slot(&self, session: &str) -> Option<Slot> {
        self.slots.get(session).copied()
    }

    /// Records that `session` has written or observed `slot`.
    pub fn observe(&mut self, session: &str, slot: Slot) {
        if let Some(highest) = self.slots.get_mut(session) {
            *highest = (*highest).max(slot);
            return;
        }
        while self.slots.len() >= self.capacity {
            match self.order.pop_front() {
                Some(forgotten) => {
                    self.slots.remove(&forgotten);
                }
                None => break,
            }
        }
        self.slots.insert(session.to_string(), slot);
        self.order.push_back(session.to_string());
    }

    /// How many sessions are remembered.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no session is remembered.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}
