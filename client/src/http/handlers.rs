//! The handlers of `/health`, `/status`, `POST /write` and `POST /read`: parse, ask the
//! core through the driver, render.

use super::errors::{body_bytes, ApiError};
use super::requests::{parse_read, parse_write};
use super::state::AppState;
use super::status::status_json;
use crate::connections::ConnectionCounts;
use crate::core::{Consistency, ReadOutcome};
use crate::driver::WriteError;
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
    let command = Command::put(
        request.request_id,
        request.key.clone(),
        request.value.clone(),
    );
    let revision = write_command(&state, command, request.session_id.clone()).await?;
    Ok(Json(WriteAnswer {
        key: &request.key,
        request_id: request.request_id.to_string(),
        revision,
        session_id: request.session_id.as_deref(),
        slot: revision,
        value: &request.value,
    })
    .into_response())
}

/// Writes `command` and returns the revision at which it took effect, or the error a
/// client gets: 503 when the cluster did not answer (saying whether a retry with the same
/// request id is safe), 409 when the request id is another command's.
pub(crate) async fn write_command(
    state: &AppState,
    command: Command,
    session_id: Option<String>,
) -> Result<u64, ApiError> {
    let request_id = command.request_id;
    state
        .driver
        .write(command, session_id)
        .await
        .map_err(|error| match error {
            WriteError::Unavailable(unavailable) => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: match unavailable.placed_nowhere {
                    true => format!("write {request_id} was not applied: {unavailable}"),
                    false => format!(
                        "the outcome of write {request_id} is unknown: {unavailable}; retrying \
                         with the same request_id applies it at most once"
                    ),
                },
                request_id: Some(request_id),
            },
            WriteError::RequestIdTaken { revision } => ApiError {
                status: StatusCode::CONFLICT,
                message: format!(
                    "request_id {request_id} was already used by a different command, applied \
                     at revision {revision}: this write was not applied; use a new request_id \
                     for a new write (a retry must repeat the same key and value)"
                ),
                request_id: Some(request_id),
            },
        })
}

/// The answer to a write. Fields in name order, as the JSON object they replace printed.
/// `slot` is the revision again, under the design's name for it.
#[derive(Serialize)]
struct WriteAnswer<'a> {
    key: &'a str,
    request_id: String,
    revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    slot: u64,
    value: &'a str,
}

/// The answer to a read. Fields in name order. `revision` is the revision of the state
/// read (`slot` again, under the design's name); the key's own revisions come with it when
/// it exists.
#[derive(Serialize)]
struct ReadAnswer<'a> {
    consistency: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    create_revision: Option<u64>,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mod_revision: Option<u64>,
    revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    slot: u64,
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
}

/// Reads `key` at `consistency` (with `session_id`, if any), or the 503 a client gets
/// when the cluster did not answer.
pub(crate) async fn read_key(
    state: &AppState,
    key: &str,
    consistency: Consistency,
    session_id: Option<String>,
) -> Result<ReadOutcome, ApiError> {
    state
        .driver
        .read(key.to_string(), consistency, session_id)
        .await
        .map_err(|unavailable| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the {} read of {key:?} failed: {unavailable}",
                    consistency.name()
                ),
            )
        })
}

pub(crate) async fn read(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = parse_read(&body_bytes(body)?)?;
    // A session id on a strong or eventual read moves the session forward too.
    let outcome = read_key(
        &state,
        &request.key,
        request.consistency,
        request.session_id.clone(),
    )
    .await?;
    let versioned = outcome.value.as_ref();
    Ok(Json(ReadAnswer {
        consistency: request.consistency.name(),
        create_revision: versioned.map(|value| value.create_revision),
        key: &request.key,
        mod_revision: versioned.map(|value| value.mod_revision),
        revision: outcome.applied_slot,
        session_id: request.session_id.as_deref(),
        slot: outcome.applied_slot,
        value: versioned.map(|value| value.value.as_str()),
        version: versioned.map(|value| value.version),
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
