//! The `paxos` program's library part: how a whole cluster is laid out on one machine, so
//! that `paxos up` and the integration tests start exactly the same processes.
#![deny(missing_docs)]

pub mod cluster;
