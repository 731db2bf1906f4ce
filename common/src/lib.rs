//! The vocabulary every role's protocol core shares, taken from the Paxos paper: ballots,
//! slots, nodes, values, the messages nodes exchange and which role may send which
//! ([`routes`]), and the bounded alarms a core raises when it refuses input.
//!
//! Nothing here does I/O, and this crate does not depend on tokio, sockets or a clock, so
//! no protocol core (`acceptor::core`, `proposer::core`, `learner::core`, `client::core`)
//! can reach them even by accident. The I/O every service runs its core on (network,
//! framing, event loop, write-ahead log, file systems, configuration, logging) is the
//! `runtime` crate.
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
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod linearizability;
pub mod message;
pub mod node;
pub mod ready;
pub mod routes;
pub mod value;

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
