//! The I/O a role's service runs its protocol core on, shared by every role: configuration
//! from the environment ([`config`]), mutual TLS identities ([`tls`], [`certificates`]),
//! wire framing ([`wire`]), the node-to-node network ([`network`]), the one-thread event
//! loop ([`event_loop`]), the checksummed write-ahead log ([`wal`]) over a file-system trait
//! with a simulated implementation ([`file_system`]), and logging ([`logging`]).
//!
//! The cores never see any of it: they depend on `common` alone, which has no I/O.
#![deny(missing_docs)]

pub mod certificates;
pub mod config;
pub mod driver;
pub mod event_loop;
pub mod file_system;
pub mod logging;
pub mod network;
pub mod tls;
pub mod wal;
pub mod wire;
