//! The data API's resource routes, in etcd's names, beside the design's `/write` and
//! `/read` (which keep their shapes):
//!
//! - `PUT /v1/kv/{key}` with `{"value", "request_id"?, "session_id"?}`: 200
//!   `{"key", "request_id", "revision"}` and an `ETag` of the revision the put took
//!   effect at (the key's `mod_revision` right after it; a retry answers the original's);
//!   409 when the request id is another
//!   command's, 503 when the cluster did not answer (the outcome is then unknown, and a
//!   retry with the same request id applies it at most once).
//! - `GET /v1/kv/{key}?consistency=strong|session|eventual&session_id=`: 200 `{"key",
//!   "value", "create_revision", "mod_revision", "version", "revision"}` and an `ETag` of
//!   the mod revision (none for a key written before revisions were kept, whose mod
//!   revision is 0); 404 `{"error", "key", "revision"}` for a key that does not exist.
//!
//! `revision` is the revision of the state the answer reflects: the slot the answering
//! learner had applied. The key is the rest of the path, percent-decoded, `/` included.

use super::errors::{body_bytes, ApiError};
use super::handlers::{read_key, write_command};
use super::requests::{check_key, parse_consistency, parse_put};
use super::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use common::value::Command;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;

/// The key of a `/v1/kv/{key}` path, or a 400 naming what is wrong with it.
fn path_key(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = path.map_err(|rejection| {
        ApiError::bad_request(format!(
            "the key in the path is invalid: {}",
            rejection.body_text()
        ))
    })?;
    check_key(&key, "the key in the path")?;
    Ok(key)
}

/// The query parameters, each named at most once and each one of `allowed`.
fn query_parameters(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    allowed: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let Query(pairs) = query.map_err(|rejection| {
        ApiError::bad_request(format!(
            "the query string is invalid: {}",
            rejection.body_text()
        ))
    })?;
    let mut parameters = HashMap::new();
    for (name, value) in pairs {
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {name:?}; this route takes {}",
                allowed.join(", ")
            )));
        }
        if parameters.insert(name.clone(), value).is_some() {
            return Err(ApiError::bad_request(format!(
                "query parameter {name:?} is given twice"
            )));
        }
    }
    Ok(parameters)
}

/// A quoted entity tag of a revision.
fn entity_tag(revision: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{revision}\"")).expect("digits and quotes")
}

/// Conditional requests need compare-and-swap, which the data API does not have yet: a
/// precondition is refused rather than ignored, since ignoring it would write blindly.
fn refuse_preconditions(headers: &HeaderMap) -> Result<(), ApiError> {
    for name in [header::IF_MATCH, header::IF_NONE_MATCH] {
        if headers.contains_key(&name) {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                format!("conditional writes ({name}) are not supported yet: nothing was written"),
            ));
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct PutAnswer<'a> {
    key: &'a str,
    request_id: String,
    revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
}

/// `PUT /v1/kv/{key}`.
pub(crate) async fn put(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = path_key(path)?;
    query_parameters(query, &[])?;
    refuse_preconditions(&headers)?;
    let request = parse_put(key, &body_bytes(body)?)?;
    let command = Command::put(request.request_id, request.key.clone(), request.value);
    let revision = write_command(&state, command, request.session_id.clone()).await?;
    let answer = PutAnswer {
        key: &request.key,
        request_id: request.request_id.to_string(),
        revision,
        session_id: request.session_id.as_deref(),
    };
    Ok(([(header::ETAG, entity_tag(revision))], Json(answer)).into_response())
}

#[derive(Serialize)]
struct GetAnswer<'a> {
    create_revision: u64,
    key: &'a str,
    mod_revision: u64,
    revision: u64,
    value: &'a str,
    version: u64,
}

/// `GET /v1/kv/{key}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = path_key(path)?;
    let parameters = query_parameters(query, &["consistency", "session_id"])?;
    let (consistency, session_id) = parse_consistency(
        parameters.get("consistency").map(String::as_str),
        parameters.get("session_id").map(String::as_str),
    )?;
    let outcome = read_key(&state, &key, consistency, session_id).await?;
    let revision = outcome.applied_slot;
    let Some(versioned) = outcome.value else {
        let body = json!({
            "error": format!("key {key:?} not found"),
            "key": key,
            "revision": revision,
        });
        return Ok((StatusCode::NOT_FOUND, Json(body)).into_response());
    };
    let answer = GetAnswer {
        create_revision: versioned.create_revision,
        key: &key,
        mod_revision: versioned.mod_revision,
        revision,
        value: &versioned.value,
        version: versioned.version,
    };
    let mut response = Json(answer).into_response();
    // A key written before revisions were kept has mod revision 0 whatever its value: no
    // tag rather than one that does not change with it.
    if versioned.mod_revision > 0 {
        response
            .headers_mut()
            .insert(header::ETAG, entity_tag(versioned.mod_revision));
    }
    Ok(response)
}

/// `/v1/kv/` without a key.
pub(crate) async fn missing_key() -> ApiError {
    ApiError::bad_request("the key is missing: the route is /v1/kv/{key}")
}
