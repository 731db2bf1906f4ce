//! The client API: a REST front end to the replicated key-value store.
//!
//! It writes through the proposer believed to lead (following leader hints, retrying with
//! the same request id so that a write is applied at most once) and reads from learners at
//! three consistency levels:
//!
//! - `strong` (linearizable): the leader grants a read index after a quorum of acceptors
//!   confirms its leadership, and a learner answers once it has applied that slot;
//! - `session`: a learner answers once it has applied the highest slot the session has
//!   written or observed (read-your-writes, monotonic reads);
//! - `eventual`: any learner answers at once.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /health` | | `{"status":"ok","node":"client1"}` |
//! | `GET /status` | | every node's report, the leader, the learners' applied slots |
//! | `POST /write` | `{"key","value","session_id"?,"request_id"?}` | `{"key","value","slot","request_id"}` |
//! | `POST /read` | `{"key","consistency"?,"session_id"?}` | `{"key","value","consistency","slot"}` |
//! | `POST /subscribe` | `{"patterns":[...]}` | `{"subscription_id","patterns","events"}` |
//! | `POST /unsubscribe` | `{"subscription_id"}` | `{"subscription_id","unsubscribed"}` |
//! | `GET /subscriptions/{id}/events` | | Server-Sent Events: the matching writes, in slot order (see [`http::events`]) |
//! | `GET /` | | the web interface |
//!
//! Every error is `{"error": "..."}`; 503 means the cluster did not answer within
//! REQUEST_TIMEOUT.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! let config = client::config::ClientConfig::from_lookup(&runtime::config::Environment)?;
//! let handle = client::start(config).await?;
//! println!("REST API on http://{}", handle.address());
//! handle.wait().await
//! # }
//! ```
#![deny(missing_docs)]

pub mod config;
pub mod connections;
pub mod core;
pub mod driver;
pub mod feed;
pub mod http;
pub mod limits;
pub mod pattern;
pub mod service;
pub mod subscriptions;
mod sync;
mod web;

pub use service::{run, start, ClientHandle};
