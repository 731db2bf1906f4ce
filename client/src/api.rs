//! The REST API: routes, request parsing and JSON errors.
//!
//! Bodies are parsed by hand from bytes (through `serde_json::Value`) so that every
//! problem, including a malformed or oversized body, is answered with `{"error": "..."}`
//! and a status that names it: 400 for a malformed request, 413 for something too large,
//! 503 when the cluster did not answer within REQUEST_TIMEOUT.

use crate::cluster::{Cluster, ClusterStatus, Consistency, NodeReport, Unavailable};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::message::{PeerStatus, ProposerState, RoleStatus};
use common::node::Role;
use common::value::{Command, RequestId};
use serde_json::{json, Map, Value as JsonValue};
use std::sync::Arc;
use std::time::Instant as StdInstant;
use tokio::time::Instant;

/// The largest request body accepted; larger ones get 413.
pub const BODY_LIMIT_BYTES: usize = 4 * 1024 * 1024;
/// The longest key, in bytes (UTF-8).
pub const KEY_LIMIT_BYTES: usize = 1024;
/// The longest value, in bytes (UTF-8).
pub const VALUE_LIMIT_BYTES: usize = 1024 * 1024;
/// The longest session id, in bytes (UTF-8).
pub const SESSION_ID_LIMIT_BYTES: usize = 1024;

/// What every handler can reach.
#[derive(Clone)]
struct AppState {
    cluster: Arc<Cluster>,
    /// This client API's name, such as "client1".
    node_name: String,
}

/// The router of the REST API in front of `cluster`; `node_name` is reported by /health.
pub fn router(cluster: Arc<Cluster>, node_name: String) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/write", post(write))
        .route("/read", post(read))
        .route("/subscribe", post(not_implemented))
        .route("/unsubscribe", post(not_implemented))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn(log_request))
        .with_state(AppState { cluster, node_name })
}

/// An error answered as `{"error": message}` (with the request id of a write, if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the caller.
    pub message: String,
    /// The write concerned, so the caller can retry it exactly-once.
    pub request_id: Option<RequestId>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            request_id: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "request failed");
        }
        let mut body = json!({ "error": self.message });
        if let Some(request_id) = self.request_id {
            body["request_id"] = json!(request_id.to_string());
        }
        (self.status, Json(body)).into_response()
    }
}

async fn log_request(request: Request, next: Next) -> Response {
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

async fn health(State(state): State<AppState>) -> Json<JsonValue> {
    Json(json!({ "status": "ok", "node": state.node_name }))
}

async fn not_implemented() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "subscriptions are not implemented yet",
    )
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

/// A parsed POST /write body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    /// The key (non-empty, at most [`KEY_LIMIT_BYTES`]).
    pub key: String,
    /// The value (at most [`VALUE_LIMIT_BYTES`]).
    pub value: String,
    /// The session the write belongs to, if any.
    pub session_id: Option<String>,
    /// The caller's request id, or a fresh one.
    pub request_id: RequestId,
}

/// A parsed POST /read body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// The key.
    pub key: String,
    /// The consistency asked for (strong by default).
    pub consistency: Consistency,
    /// The session, if any (required by session reads).
    pub session_id: Option<String>,
}

/// Parses and validates a /write body.
pub fn parse_write(body: &[u8]) -> Result<WriteRequest, ApiError> {
    let object = parse_object(body)?;
    let key = parse_key(&object)?;
    let value = required_string(&object, "value")?;
    if value.len() > VALUE_LIMIT_BYTES {
        return Err(ApiError::too_large(format!(
            "field \"value\" is {} bytes, above the limit of {VALUE_LIMIT_BYTES} bytes",
            value.len()
        )));
    }
    let session_id = parse_session_id(&object)?;
    let request_id = match optional_string(&object, "request_id")? {
        None => RequestId::random(),
        Some(text) => uuid::Uuid::parse_str(text)
            .map(|uuid| RequestId(uuid.as_u128()))
            .map_err(|_| {
                ApiError::bad_request(format!("field \"request_id\" is not a UUID: {text:?}"))
            })?,
    };
    Ok(WriteRequest {
        key,
        value: value.to_string(),
        session_id,
        request_id,
    })
}

/// Parses and validates a /read body.
pub fn parse_read(body: &[u8]) -> Result<ReadRequest, ApiError> {
    let object = parse_object(body)?;
    let key = parse_key(&object)?;
    let session_id = parse_session_id(&object)?;
    let consistency = match optional_string(&object, "consistency")? {
        None | Some("strong") => Consistency::Strong,
        Some("eventual") => Consistency::Eventual,
        Some("session") => match &session_id {
            Some(session_id) => Consistency::Session(session_id.clone()),
            None => {
                return Err(ApiError::bad_request(
                    "consistency \"session\" needs a \"session_id\"",
                ))
            }
        },
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "field \"consistency\" must be one of \"strong\", \"session\" or \"eventual\", not {other:?}"
            )))
        }
    };
    Ok(ReadRequest {
        key,
        consistency,
        session_id,
    })
}

fn parse_object(body: &[u8]) -> Result<Map<String, JsonValue>, ApiError> {
    let value: JsonValue = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("the body is not valid JSON: {error}")))?;
    match value {
        JsonValue::Object(object) => Ok(object),
        _ => Err(ApiError::bad_request("the body must be a JSON object")),
    }
}

fn parse_key(object: &Map<String, JsonValue>) -> Result<String, ApiError> {
    let key = required_string(object, "key")?;
    if key.is_empty() {
        return Err(ApiError::bad_request("field \"key\" must not be empty"));
    }
    if key.len() > KEY_LIMIT_BYTES {
        return Err(ApiError::too_large(format!(
            "field \"key\" is {} bytes, above the limit of {KEY_LIMIT_BYTES} bytes",
            key.len()
        )));
    }
    Ok(key.to_string())
}

fn parse_session_id(object: &Map<String, JsonValue>) -> Result<Option<String>, ApiError> {
    match optional_string(object, "session_id")? {
        None => Ok(None),
        Some("") => Err(ApiError::bad_request(
            "field \"session_id\" must not be empty",
        )),
        Some(session_id) if session_id.len() > SESSION_ID_LIMIT_BYTES => {
            Err(ApiError::too_large(format!(
                "field \"session_id\" is {} bytes, above the limit of {SESSION_ID_LIMIT_BYTES} bytes",
                session_id.len()
            )))
        }
        Some(session_id) => Ok(Some(session_id.to_string())),
    }
}

fn required_string<'a>(
    object: &'a Map<String, JsonValue>,
    field: &str,
) -> Result<&'a str, ApiError> {
    optional_string(object, field)?.ok_or_else(|| {
        ApiError::bad_request(format!(
            "field \"{field}\" is required and must be a string"
        ))
    })
}

/// A string field; absent or null is None, any other type is a 400 naming the field.
fn optional_string<'a>(
    object: &'a Map<String, JsonValue>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match object.get(field) {
        None | Some(JsonValue::Null) => Ok(None),
        Some(JsonValue::String(text)) => Ok(Some(text)),
        Some(_) => Err(ApiError::bad_request(format!(
            "field \"{field}\" must be a string"
        ))),
    }
}

/// The body, or the extractor's rejection as a JSON error (413 above [`BODY_LIMIT_BYTES`]).
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!(
                "the body is above the limit of {BODY_LIMIT_BYTES} bytes"
            ))
        } else {
            ApiError::new(
                rejection.status(),
                format!("the body could not be read: {}", rejection.body_text()),
            )
        }
    })
}

async fn write(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let deadline = Instant::now() + state.cluster.request_timeout();
    let request = parse_write(&body_bytes(body)?)?;
    let command = Command {
        request_id: request.request_id,
        key: request.key,
        value: request.value,
    };
    let slot = state
        .cluster
        .write(command.clone(), request.session_id.as_deref(), deadline)
        .await
        .map_err(|unavailable: Unavailable| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "the outcome of write {} is unknown: {unavailable}; retrying with the same \
                 request_id applies it at most once",
                command.request_id
            ),
            request_id: Some(command.request_id),
        })?;
    let mut answer = json!({
        "key": command.key,
        "value": command.value,
        "slot": slot,
        "request_id": command.request_id.to_string(),
    });
    if let Some(session_id) = request.session_id {
        answer["session_id"] = json!(session_id);
    }
    Ok(Json(answer))
}

async fn read(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let deadline = Instant::now() + state.cluster.request_timeout();
    let request = parse_read(&body_bytes(body)?)?;
    let outcome = state
        .cluster
        .read(&request.key, &request.consistency, deadline)
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
    // A session id on a strong or eventual read moves the session forward too.
    if let Some(session_id) = &request.session_id {
        state.cluster.observe(session_id, outcome.applied_slot);
    }
    let mut answer = json!({
        "key": request.key,
        "value": outcome.value,
        "consistency": request.consistency.name(),
        "slot": outcome.applied_slot,
    });
    if let Some(session_id) = request.session_id {
        answer["session_id"] = json!(session_id);
    }
    Ok(Json(answer))
}

async fn status(State(state): State<AppState>) -> Json<JsonValue> {
    Json(status_json(&state.cluster.status().await))
}

/// The /status document.
pub fn status_json(status: &ClusterStatus) -> JsonValue {
    let leader = status
        .leader
        .as_ref()
        .and_then(|leader| match &leader.status.as_ref()?.detail {
            RoleStatus::Proposer { ballot, .. } => Some(json!({
                "proposer": leader.id,
                "ballot": ballot.to_string(),
            })),
            _ => None,
        });
    let learners: Vec<JsonValue> = status
        .nodes
        .iter()
        .filter_map(
            |node| match node.status.as_ref().map(|status| &status.detail) {
                Some(RoleStatus::Learner { applied_slot, .. }) => {
                    Some(json!({ "id": node.id, "applied_slot": applied_slot }))
                }
                _ => None,
            },
        )
        .collect();
    let acceptors: Vec<&NodeReport> = status
        .nodes
        .iter()
        .filter(|node| node.role == Role::Acceptor)
        .collect();
    let healthy_acceptors = acceptors.iter().filter(|node| is_healthy(node)).count();
    let majority = acceptors.len() / 2 + 1;
    json!({
        "leader": leader,
        "nodes": status.nodes.iter().map(node_json).collect::<Vec<_>>(),
        "learners": learners,
        "quorum": {
            "acceptors": acceptors.len(),
            "healthy_acceptors": healthy_acceptors,
            "majority": majority,
            "available": !acceptors.is_empty() && healthy_acceptors >= majority,
        },
    })
}

/// A node is healthy if it answered in time and, for an acceptor, votes (its log is not
/// corrupt).
fn is_healthy(node: &NodeReport) -> bool {
    match &node.status {
        None => false,
        Some(status) => !matches!(
            status.detail,
            RoleStatus::Acceptor {
                storage_fault: Some(_),
                ..
            }
        ),
    }
}

fn node_json(node: &NodeReport) -> JsonValue {
    let name = match node.id {
        Some(id) => format!("{}{id}", node.role.name()),
        None => format!("{}@{}", node.role.name(), node.address),
    };
    let mut entry = json!({
        "name": name,
        "role": node.role.name(),
        "id": node.id,
        "address": node.address,
        "healthy": is_healthy(node),
    });
    let Some(status) = &node.status else {
        return entry;
    };
    let fields = match &status.detail {
        RoleStatus::Acceptor {
            promised_ballot,
            accepted_slot_max,
            accepted_slot_count,
            storage_fault,
        } => json!({
            "promised_ballot": promised_ballot.to_string(),
            "accepted_slot_max": accepted_slot_max,
            "accepted_slot_count": accepted_slot_count,
            "storage": match storage_fault {
                None => "ok".to_string(),
                Some(reason) => format!("corrupt: {reason}"),
            },
        }),
        RoleStatus::Proposer {
            state,
            ballot,
            leader,
            decided_slot_max,
        } => json!({
            "state": proposer_state_name(*state),
            "ballot": ballot.to_string(),
            "leader": leader,
            "decided_slot_max": decided_slot_max,
        }),
        RoleStatus::Learner {
            applied_slot,
            known_slot_max,
            key_count,
        } => json!({
            "applied_slot": applied_slot,
            "known_slot_max": known_slot_max,
            "key_count": key_count,
        }),
    };
    if let (JsonValue::Object(entry), JsonValue::Object(fields)) = (&mut entry, fields) {
        entry.extend(fields);
        entry.insert(
            "peers".to_string(),
            status.peers.iter().map(peer_json).collect(),
        );
    }
    entry
}

fn peer_json(peer: &PeerStatus) -> JsonValue {
    json!({
        "address": peer.address,
        "node": peer.node.map(|node| node.to_string()),
        "connected": peer.connected,
    })
}

fn proposer_state_name(state: ProposerState) -> &'static str {
    match state {
        ProposerState::Leader => "leader",
        ProposerState::Follower => "follower",
        ProposerState::Candidate => "candidate",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_body_without_a_request_id_gets_a_fresh_one() {
        let first = parse_write(br#"{"key":"k","value":"v"}"#).unwrap();
        let second = parse_write(br#"{"key":"k","value":"v"}"#).unwrap();
        assert_ne!(first.request_id, second.request_id);
        assert_eq!(first.session_id, None);
    }

    #[test]
    fn a_caller_request_id_is_kept() {
        let request = parse_write(
            br#"{"key":"k","value":"v","request_id":"6f1c2b1e-8a62-4c1b-9a53-0f1e2d3c4b5a"}"#,
        )
        .unwrap();
        assert_eq!(
            request.request_id.to_string(),
            "6f1c2b1e-8a62-4c1b-9a53-0f1e2d3c4b5a"
        );
    }

    #[test]
    fn a_read_defaults_to_strong_and_null_fields_count_as_absent() {
        let request = parse_read(br#"{"key":"k","session_id":null}"#).unwrap();
        assert_eq!(request.consistency, Consistency::Strong);
        assert_eq!(request.session_id, None);
    }

    #[test]
    fn a_key_of_exactly_the_limit_is_accepted_and_one_byte_more_is_too_large() {
        let body = |length: usize| json!({"key": "k".repeat(length), "value": ""}).to_string();
        assert!(parse_write(body(KEY_LIMIT_BYTES).as_bytes()).is_ok());
        let error = parse_write(body(KEY_LIMIT_BYTES + 1).as_bytes()).unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
