//! The `paxos` program's library part: how a whole cluster is laid out on one machine, so
//! that `paxos up` and the integration tests start exactly the same processes; the admin
//! listener (`/health`, `/status`) each node serves on ADMIN_PORT; and the load generator
//! behind `paxos bench`.
#![deny(missing_docs)]

pub mod admin;
pub mod bench;
pub mod cluster;
