//! The handlers of `/health`, `/status`, `POST /write` and `POST /read`: parse, ask the
//! core through the driver, render.

use super::errors::{body_bytes, ApiError};
use super::requests::{parse_read, parse_write};
use super::state::AppState;
use super::status::status_json;
use crate::connections::ConnectionCounts;
use crate::core::Unavailable;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use common::value::Command;
use serde::Serialize;
use serde_json::{json, Value as JsonValue};
use std::sync::Arc;

pub(crate) async fn health(State(state): State<AppState>) -> Json<JsonValue> {
    Json(json!({ "status": "ok", "node": state.node_name }))
}

pub(crate) async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

pub(crate) async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

pub(crate) async fn write(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = parse_write(&body_bytes(body)?)?;
    let command = Command {
        request_id: request.request_id,
        key: request.key,
        value: request.value,
    };
    let slot = state
        .driver
        .write(command.clone(), request.session_id.clone())
        .await
        .map_err(|unavailable: Unavailable| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: match unavailable.placed_nowhere {
                true => format!(
                    "write {} was not applied: {unavailable}",
                    command.request_id
                ),
                false => format!(
                    "the outcome of write {} is unknown: {unavailable}; retrying with the \
                     same request_id applies it at most once",
                    command.request_id
                ),
            },
            request_id: Some(command.request_id),
        })?;
    Ok(Json(WriteAnswer {
        key: &command.key,
        request_id: command.request_id.to_string(),
        session_id: request.session_id.as_deref(),
        slot,
        value: &command.value,
    })
    .into_response())
}

/// The answer to a write. Fields in name order, as the JSON object they replace printed.
#[derive(Serialize)]
struct WriteAnswer<'a> {
    key: &'a str,
    request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    slot: u64,
    value: &'a str,
}

/// The answer to a read. Fields in name order.
#[derive(Serialize)]
struct ReadAnswer<'a> {
    consistency: &'static str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    slot: u64,
    value: Option<&'a str>,
}

pub(crate) async fn read(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = parse_read(&body_bytes(body)?)?;
    // A session id on a strong or eventual read moves the session forward too.
    let outcome = state
        .driver
        .read(
            request.key.clone(),
            request.consistency,
            request.session_id.clone(),
        )
        .await
        .map_err(|unavailable| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the {} read of {:?} failed: {unavailable}",
                    request.consistency.name(),
                    request.key
                ),
            )
        })?;
    Ok(Json(ReadAnswer {
        consistency: request.consistency.name(),
        key: &request.key,
        session_id: request.session_id.as_deref(),
        slot: outcome.applied_slot,
        value: outcome.value.as_deref(),
    })
    .into_response())
}

/// The cluster's status, and the counts of this client API's connections when it is served
/// by [`crate::connections::serve`] (which puts them in every request).
pub(crate) async fn status(
    State(state): State<AppState>,
    counts: Option<Extension<Arc<ConnectionCounts>>>,
) -> Json<JsonValue> {
    let mut document = status_json(&state.driver.status().await);
    if let Some(Extension(counts)) = counts {
        document["http"] = counts.to_json();
    }
    Json(document)
}
