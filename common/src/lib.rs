//! The vocabulary every role shares, taken from the Paxos paper: ballots, slots, values,
//! the messages nodes exchange, plus the pieces of plumbing each service wraps around its
//! protocol core (configuration from the environment, wire framing, the node-to-node
//! network, and a checksummed write-ahead log).
//!
//! The protocol cores (`acceptor::core`, `proposer::core`, `learner::core`) use only the
//! pure modules here ([`alarm`], [`ballot`], [`node`], [`value`], [`message`]); the I/O modules
//! ([`network`], [`event_loop`], [`wal`], [`file_system`], [`logging`]) belong to the
//! services.
//!
//! ```
//! use common::ballot::Ballot;
//! let first = Ballot::new(1, 1);
//! let rival = Ballot::new(1, 2);
//! assert!(rival > first, "ties in round are broken by proposer id");
//! assert!(Ballot::new(2, 1) > rival, "a higher round always wins");
//! ```
#![deny(missing_docs)]

pub mod alarm;
pub mod ballot;
pub mod certificates;
pub mod config;
pub mod event_loop;
pub mod file_system;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod linearizability;
pub mod logging;
pub mod message;
pub mod network;
pub mod node;
pub mod routes;
pub mod tls;
pub mod value;
pub mod wal;
pub mod wire;

/// How many milliseconds one protocol tick lasts in the services. The cores count ticks,
/// never milliseconds, so that a simulation can drive them without a clock.
pub const TICK_MILLISECONDS: u64 = 10;

/// The text of a caught panic (`std::panic::catch_unwind`'s payload), for the harnesses
/// that report a panic instead of dying of it (the fuzz loop, the simulation).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}
