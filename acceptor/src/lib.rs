//! The acceptor role of Multi-Paxos: the durable memory of the protocol.
//!
//! An acceptor promises ballots (phase 1: `Prepare` -> `Promise` or `Rejected`) and votes
//! for values slot by slot (phase 2: `Accept` -> `Accepted` to the proposer and
//! `AcceptedValues` to the learners). It never answers before the change behind the answer
//! is on disk, so a crash cannot make it break a promise or forget a vote.
//!
//! - [`core`]: the protocol as a plain state machine (no I/O): a message in, effects out.
//! - [`storage`]: the checksummed write-ahead log of the core's records, with compaction.
//! - [`identity`]: whose memory the data directory is, and whether it voted, so that a
//!   lost log is detected (amnesia) rather than served as a fresh start.
//! - [`service`]: the process: network, driver thread, group commit, `/status` answers.
//!
//! ```
//! use acceptor::core::{Acceptor, Effect, Record};
//! use common::ballot::Ballot;
//! use common::message::Message;
//! use common::node::NodeId;
//!
//! let mut acceptor = Acceptor::new(1);
//! let ballot = Ballot::new(1, 2);
//! let effects = acceptor.handle(NodeId::proposer(2), Message::Prepare { ballot, from_slot: 1 });
//! // The promise is persisted before the Promise is sent.
//! assert_eq!(effects[0], Effect::Persist(Record::Promised(ballot)));
//! assert!(matches!(&effects[1], Effect::Send { message: Message::Promise { .. }, .. }));
//!
//! // After a crash, replaying what was persisted restores the promise.
//! let recovered = Acceptor::recover(1, [Record::Promised(ballot)]);
//! assert_eq!(recovered.promised_ballot(), ballot);
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod core;
pub mod identity;
pub mod service;
pub mod storage;

pub use crate::core::{Acceptor, Effect, Record};
pub use crate::service::{run, start, start_in, Handle};
pub use crate::storage::{Storage, StorageError};
