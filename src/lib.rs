//! The `paxos` program's library part: how a whole cluster is laid out on one machine, so
//! that `paxos up` and the integration tests start exactly the same processes, and the
//! load generator behind `paxos bench`.
#![deny(missing_docs)]

pub mod bench;
pub mod cluster;
