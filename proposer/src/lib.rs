//! The proposer role.
//!
//! [`core`] is the protocol (election, Multi-Paxos phase 2 with batching and pipelining,
//! heartbeats, read-index confirmation) as a state machine without I/O; [`service`] runs
//! it on the network, with a driver thread that feeds it messages and ticks and makes the
//! proposer's highest round durable before any Prepare that uses it leaves.
#![deny(missing_docs)]

pub mod config;
pub mod core;
pub mod service;
pub mod storage;
