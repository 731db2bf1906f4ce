//! The REST API: routes, request parsing and JSON errors.
//!
//! Bodies are parsed by hand from bytes (through `serde_json::Value`) so that every
//! problem, including a malformed or oversized body, is answered with `{"error": "..."}`
//! and a status that names it: 400 for a malformed request, 413 for something too large,
//! 503 when the cluster did not answer within REQUEST_TIMEOUT.

use crate::cluster::{Cluster, ClusterStatus, Consistency, NodeReport, Unavailable};
use crate::connections::ConnectionCounts;
use crate::events;
use crate::subscriptions::Subscriptions;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use common::message::{PeerStatus, ProposerState, RoleStatus};
use common::node::Role;
use common::value::{Command, RequestId};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as JsonValue};
use std::borrow::Cow;
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
pub(crate) struct AppState {
    pub(crate) cluster: Arc<Cluster>,
    /// This client API's name, such as "client1".
    pub(crate) node_name: String,
    /// The change-notification subscriptions.
    pub(crate) subscriptions: Arc<Subscriptions>,
}

/// The router of the REST API in front of `cluster`; `node_name` is reported by /health.
/// Subscriptions are kept in memory only (see [`router_with_subscriptions`]).
pub fn router(cluster: Arc<Cluster>, node_name: String) -> Router {
    router_with_subscriptions(cluster, node_name, Arc::new(Subscriptions::in_memory()))
}

/// The router of the REST API, the web interface and the change notifications.
pub fn router_with_subscriptions(
    cluster: Arc<Cluster>,
    node_name: String,
    subscriptions: Arc<Subscriptions>,
) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/write", post(write))
        .route("/read", post(read))
        .route("/subscribe", post(events::subscribe))
        .route("/unsubscribe", post(events::unsubscribe))
        .route("/subscriptions/{id}", get(events::describe))
        .route("/subscriptions/{id}/events", get(events::events))
        .merge(crate::web::routes())
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn(log_request))
        .with_state(AppState {
            cluster,
            node_name,
            subscriptions,
        })
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
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            request_id: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
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

async fn health(State(state): State<AppState>) -> Json<JsonValue> {
    Json(json!({ "status": "ok", "node": state.node_name }))
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

/// The string fields of a request body, however it was parsed.
trait BodyFields {
    /// The field as a string; absent or null is None, any other type is a 400 naming it.
    fn string(&self, field: &str) -> Result<Option<&str>, ApiError>;
}

impl BodyFields for Map<String, JsonValue> {
    fn string(&self, field: &str) -> Result<Option<&str>, ApiError> {
        optional_string(self, field)
    }
}

/// A body whose known fields are all strings, null or absent: the usual request, parsed
/// without building a JSON tree and borrowing from the body where it can. Anything else
/// (a field of another type, a duplicate field, invalid JSON) goes through the general
/// parser, whose errors name the problem; both parsers accept exactly the same bodies.
#[derive(Deserialize)]
struct StringFields<'a> {
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    value: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    request_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    consistency: Option<Cow<'a, str>>,
}

impl BodyFields for StringFields<'_> {
    fn string(&self, field: &str) -> Result<Option<&str>, ApiError> {
        let value = match field {
            "key" => &self.key,
            "value" => &self.value,
            "session_id" => &self.session_id,
            "request_id" => &self.request_id,
            "consistency" => &self.consistency,
            _ => return Ok(None),
        };
        Ok(value.as_deref())
    }
}

/// The fast parse of `body`, if it is a JSON object whose known fields are strings.
fn string_fields(body: &[u8]) -> Option<StringFields<'_>> {
    // A derived struct would also accept a JSON array: only objects take this path.
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// Parses and validates a /write body.
pub fn parse_write(body: &[u8]) -> Result<WriteRequest, ApiError> {
    match string_fields(body) {
        Some(fields) => write_from_fields(&fields),
        None => write_from_fields(&parse_object(body)?),
    }
}

fn write_from_fields(object: &impl BodyFields) -> Result<WriteRequest, ApiError> {
    let key = parse_key(object)?;
    let value = required_string(object, "value")?;
    if value.len() > VALUE_LIMIT_BYTES {
        return Err(ApiError::too_large(format!(
            "field \"value\" is {} bytes, above the limit of {VALUE_LIMIT_BYTES} bytes",
            value.len()
        )));
    }
    let session_id = parse_session_id(object)?;
    let request_id = match object.string("request_id")? {
        None => fresh_request_id(),
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

/// A random version-4 UUID from the thread's generator: as unique as `Uuid::new_v4` (122
/// random bits from a generator seeded by the operating system) without a system call per
/// write.
fn fresh_request_id() -> RequestId {
    let random: u128 = rand::rng().random();
    RequestId(
        uuid::Builder::from_random_bytes(random.to_le_bytes())
            .into_uuid()
            .as_u128(),
    )
}

/// Parses and validates a /read body.
pub fn parse_read(body: &[u8]) -> Result<ReadRequest, ApiError> {
    match string_fields(body) {
        Some(fields) => read_from_fields(&fields),
        None => read_from_fields(&parse_object(body)?),
    }
}

fn read_from_fields(object: &impl BodyFields) -> Result<ReadRequest, ApiError> {
    let key = parse_key(object)?;
    let session_id = parse_session_id(object)?;
    let consistency = match object.string("consistency")? {
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

pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, JsonValue>, ApiError> {
    let value: JsonValue = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("the body is not valid JSON: {error}")))?;
    match value {
        JsonValue::Object(object) => Ok(object),
        _ => Err(ApiError::bad_request("the body must be a JSON object")),
    }
}

fn parse_key(object: &impl BodyFields) -> Result<String, ApiError> {
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

fn parse_session_id(object: &impl BodyFields) -> Result<Option<String>, ApiError> {
    match object.string("session_id")? {
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

fn required_string<'a>(object: &'a impl BodyFields, field: &str) -> Result<&'a str, ApiError> {
    object.string(field)?.ok_or_else(|| {
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
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
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
) -> Result<Response, ApiError> {
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

async fn read(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
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
async fn status(
    State(state): State<AppState>,
    counts: Option<Extension<Arc<ConnectionCounts>>>,
) -> Json<JsonValue> {
    let mut document = status_json(&state.cluster.status().await);
    if let Some(Extension(counts)) = counts {
        document["http"] = counts.to_json();
    }
    Json(document)
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
    let insecure_nodes: Vec<String> = status
        .nodes
        .iter()
        .filter(|node| {
            node.status.as_ref().is_some_and(|status| {
                status
                    .alarms
                    .iter()
                    .any(|alarm| alarm.starts_with(runtime::network::INSECURE_ALARM_PREFIX))
            })
        })
        .map(node_name)
        .collect();
    json!({
        // Mutual TLS between nodes, or the insecure mode's warning (docs/SECURITY.md).
        "node_plane": if status.insecure || !insecure_nodes.is_empty() {
            json!({
                "security": "insecure",
                "warning": "nodes talk in plaintext and trust every peer's Hello (PAXOS_INSECURE=true)",
                "insecure_nodes": insecure_nodes,
            })
        } else {
            json!({ "security": "mutual TLS" })
        },
        "alarms": status.alarms,
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

fn node_name(node: &NodeReport) -> String {
    match node.id {
        Some(id) => format!("{}{id}", node.role.name()),
        None => format!("{}@{}", node.role.name(), node.address),
    }
}

/// One node's entry in the `/status` document (also the body of a node's own admin
/// `/status`).
pub fn node_json(node: &NodeReport) -> JsonValue {
    let name = node_name(node);
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
                Some(reason) => format!("refusing to vote: {reason}"),
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
        // What the node refused from peers (its core's and its network's alarms): the
        // only place an operator sees an attack or a misconfigured peer.
        entry.insert("alarms".to_string(), json!(status.alarms));
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
    fn fresh_request_ids_are_version_4_uuids() {
        let uuid = uuid::Uuid::from_u128(fresh_request_id().0);
        assert_eq!(uuid.get_version_num(), 4);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn the_fast_and_the_general_parser_agree_on_every_body() {
        let bodies: &[&[u8]] = &[
            br#"{"key":"k","value":"v"}"#,
            br#" {"key":"k\u00e9","value":"v\n","session_id":"s","extra":[1,{"a":2}]}"#,
            br#"{"key":"k","value":"v","request_id":"6f1c2b1e-8a62-4c1b-9a53-0f1e2d3c4b5a"}"#,
            br#"{"key":"k","value":"v","request_id":"nope"}"#,
            br#"{"key":"k","key":"again","value":"v"}"#,
            br#"{"key":"","value":"v"}"#,
            br#"{"key":5,"value":"v"}"#,
            br#"{"key":"k","value":null}"#,
            br#"{"key":"k","consistency":"eventual"}"#,
            br#"{"key":"k","consistency":"session","session_id":"s"}"#,
            br#"{"key":"k","consistency":"session"}"#,
            br#"{"key":"k","consistency":7}"#,
            br#"{"key":"k","consistency":"weird"}"#,
            br#"{"key":"k","session_id":""}"#,
            br#"["k","v"]"#,
            br#""k""#,
            br#"{"key":"k","value":"v"} trailing"#,
            b"{not json",
        ];
        for body in bodies {
            let general_write = parse_object(body).and_then(|object| write_from_fields(&object));
            let general_read = parse_object(body).and_then(|object| read_from_fields(&object));
            let fast_write = parse_write(body);
            let fast_read = parse_read(body);
            let text = String::from_utf8_lossy(body);
            // Request ids made up for the write differ; everything else must match.
            match (&general_write, &fast_write) {
                (Ok(general), Ok(fast)) => {
                    assert_eq!(
                        (&general.key, &general.value),
                        (&fast.key, &fast.value),
                        "{text}"
                    );
                    assert_eq!(general.session_id, fast.session_id, "{text}");
                    if body.windows(10).any(|window| window == b"request_id") {
                        assert_eq!(general.request_id, fast.request_id, "{text}");
                    }
                }
                (Err(general), Err(fast)) => assert_eq!(general, fast, "{text}"),
                _ => panic!("the parsers disagree on {text}: {general_write:?} / {fast_write:?}"),
            }
            assert_eq!(general_read, fast_read, "{text}");
        }
    }

    #[test]
    fn a_key_of_exactly_the_limit_is_accepted_and_one_byte_more_is_too_large() {
        let body = |length: usize| json!({"key": "k".repeat(length), "value": ""}).to_string();
        assert!(parse_write(body(KEY_LIMIT_BYTES).as_bytes()).is_ok());
        let error = parse_write(body(KEY_LIMIT_BYTES + 1).as_bytes()).unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
