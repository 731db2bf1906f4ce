//! The REST API over HTTP: it parses, asks the client-API core through the
//! [`crate::driver`], and renders.
//!
//! - [`errors`]: `{"error": ...}` answers and the body parsing every route shares;
//! - [`requests`]: the bodies of `/write` and `/read`;
//! - `handlers`: `/health`, `/status`, `/write`, `/read`;
//! - `kv`: the resource routes `/v1/kv/{key}`;
//! - [`status`]: the `/status` document;
//! - [`events`]: subscriptions and their Server-Sent Events streams.

pub mod errors;
pub mod events;
mod handlers;
mod kv;
pub mod requests;
mod state;
pub mod status;

pub use errors::ApiError;
pub use requests::{parse_put, parse_read, parse_write, ReadRequest, WriteRequest};
pub use status::{node_json, status_json};

use crate::driver::Driver;
use crate::limits::BODY_LIMIT_BYTES;
use crate::subscriptions::Subscriptions;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use state::AppState;
use std::sync::Arc;
use std::time::Instant as StdInstant;

/// The router of the REST API in front of `driver`; `node_name` is reported by /health.
/// Subscriptions are kept in memory only (see [`router_with_subscriptions`]).
pub fn router(driver: Arc<Driver>, node_name: String) -> Router {
    router_with_subscriptions(driver, node_name, Arc::new(Subscriptions::in_memory()))
}

/// The router of the REST API, the web interface and the change notifications.
pub fn router_with_subscriptions(
    driver: Arc<Driver>,
    node_name: String,
    subscriptions: Arc<Subscriptions>,
) -> Router {
    Router::new()
        .route("/health", get(handlers::health))
        .route("/status", get(handlers::status))
        .route("/write", post(handlers::write))
        .route("/read", post(handlers::read))
        .route("/v1/kv/{*key}", get(kv::get).put(kv::put))
        .route("/v1/kv/", get(kv::missing_key).put(kv::missing_key))
        .route("/subscribe", post(events::subscribe))
        .route("/unsubscribe", post(events::unsubscribe))
        .route("/subscriptions/{id}", get(events::describe))
        .route("/subscriptions/{id}/events", get(events::events))
        .merge(crate::web::routes::<AppState>())
        .fallback(handlers::unknown_route)
        .method_not_allowed_fallback(handlers::wrong_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn(log_request))
        .with_state(AppState {
            driver,
            node_name,
            subscriptions,
        })
}

async fn log_request(request: Request, next: Next) -> Response {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = StdInstant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_milliseconds = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}
