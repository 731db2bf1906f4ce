//! The learner role of Multi-Paxos: it finds out which value each slot chose, applies the
//! chosen values in slot order to a key-value map, and serves reads from that map.
//!
//! - [`core`]: the protocol as a plain state machine ([`core::Learner`]) that takes a
//!   message or a tick and returns [`core::Effect`]s. No I/O, so tests and simulations
//!   drive it directly.
//! - [`service`]: the thin shell around it: the node-to-node network, a driver thread, and
//!   a log of decided slots (`learner.wal`) for a fast restart.
//!
//! A slot is decided when a quorum of acceptors report the same ballot for it:
//!
//! ```
//! use common::ballot::Ballot;
//! use common::message::{AcceptedEntry, Message};
//! use common::node::NodeId;
//! use common::value::{Command, RequestId, Value};
//! use learner::core::{Effect, Learner, LearnerOptions};
//!
//! let mut learner = Learner::new(LearnerOptions::new(1, 2));
//! let write = Value::Batch(vec![Command::put(RequestId(7), "colour", "blue")]);
//! let vote = Message::AcceptedValues {
//!     entries: vec![AcceptedEntry { slot: 1, ballot: Ballot::new(1, 1), value: write }],
//! };
//! learner.handle(NodeId::acceptor(1), vote.clone());
//! assert_eq!(learner.applied_slot(), 0, "one vote of three is not a quorum");
//!
//! let effects = learner.handle(NodeId::acceptor(2), vote);
//! assert!(matches!(effects[0], Effect::Persist(_)), "a decided slot is logged first");
//! assert_eq!(learner.applied_slot(), 1);
//! assert_eq!(learner.value_of("colour"), Some("blue"));
//! // Slot 1 is the key's revision: it created it and last changed it.
//! let versioned = learner.versioned_value_of("colour").unwrap();
//! assert_eq!((versioned.create_revision, versioned.mod_revision, versioned.version), (1, 1, 1));
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod core;
pub mod service;
pub mod snapshot_file;
pub mod storage;
