//! The REST API's errors and the body parsing every route shares.
//!
//! Every problem, including a malformed or oversized body, is answered with
//! `{"error": "..."}` and a status that names it: 400 for a malformed request, 413 for
//! something too large, 503 when the cluster did not answer within REQUEST_TIMEOUT.

use crate::limits::BODY_LIMIT_BYTES;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use common::value::RequestId;
use serde_json::{json, Map, Value as JsonValue};

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

    pub(crate) fn too_large(message: impl Into<String>) -> Self {
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

pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, JsonValue>, ApiError> {
    let value: JsonValue = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("the body is not valid JSON: {error}")))?;
    match value {
        JsonValue::Object(object) => Ok(object),
        _ => Err(ApiError::bad_request("the body must be a JSON object")),
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
