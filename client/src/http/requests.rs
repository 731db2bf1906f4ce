//! Parsing and validating the bodies of `POST /write` and `POST /read`.
//!
//! Bodies are parsed by hand from bytes (through `serde_json::Value` when needed) so that
//! every problem is a 400 or 413 that names it.

use super::errors::{parse_object, ApiError};
use crate::core::Consistency;
use crate::limits::{KEY_LIMIT_BYTES, SESSION_ID_LIMIT_BYTES, VALUE_LIMIT_BYTES};
use common::value::RequestId;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Map, Value as JsonValue};
use std::borrow::Cow;

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
    /// The consistency asked for (strong by default; session reads have a session id).
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

/// Parses and validates the body of `PUT /v1/kv/{key}` (`{"value", "request_id"?,
/// "session_id"?}`), `key` being the one in the path; a body that names a key too is a 400.
pub fn parse_put(key: String, body: &[u8]) -> Result<WriteRequest, ApiError> {
    check_key(&key, "the key in the path")?;
    let named_key = match string_fields(body) {
        Some(fields) => {
            let request = put_from_fields(key, &fields)?;
            (fields.key.is_some(), request)
        }
        None => {
            let object = parse_object(body)?;
            let request = put_from_fields(key, &object)?;
            // A null counts as absent, as everywhere else.
            let named = object.get("key").is_some_and(|key| !key.is_null());
            (named, request)
        }
    };
    match named_key {
        (true, _) => Err(ApiError::bad_request(
            "the key of PUT /v1/kv/{key} is in its path, not in its body",
        )),
        (false, request) => Ok(request),
    }
}

fn write_from_fields(object: &impl BodyFields) -> Result<WriteRequest, ApiError> {
    let key = parse_key(object)?;
    put_from_fields(key, object)
}

fn put_from_fields(key: String, object: &impl BodyFields) -> Result<WriteRequest, ApiError> {
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
    let consistency = read_consistency(object, session_id.is_some())?;
    Ok(ReadRequest {
        key,
        consistency,
        session_id,
    })
}

fn read_consistency(object: &impl BodyFields, has_session: bool) -> Result<Consistency, ApiError> {
    Ok(match object.string("consistency")? {
        None | Some("strong") => Consistency::Strong,
        Some("eventual") => Consistency::Eventual,
        Some("session") if has_session => Consistency::Session,
        Some("session") => {
            return Err(ApiError::bad_request(
                "consistency \"session\" needs a \"session_id\"",
            ))
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "field \"consistency\" must be one of \"strong\", \"session\" or \"eventual\", not {other:?}"
            )))
        }
    })
}

fn parse_key(object: &impl BodyFields) -> Result<String, ApiError> {
    let key = required_string(object, "key")?;
    check_key(key, "field \"key\"")?;
    Ok(key.to_string())
}

/// A key is non-empty and at most [`KEY_LIMIT_BYTES`]; `shown` names where it came from.
pub(crate) fn check_key(key: &str, shown: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request(format!("{shown} must not be empty")));
    }
    if key.len() > KEY_LIMIT_BYTES {
        return Err(ApiError::too_large(format!(
            "{shown} is {} bytes, above the limit of {KEY_LIMIT_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// The read level and session of a query string's `consistency` and `session_id` (the
/// same rules as in a /read body).
pub(crate) fn parse_consistency(
    consistency: Option<&str>,
    session_id: Option<&str>,
) -> Result<(Consistency, Option<String>), ApiError> {
    let mut fields = Map::new();
    if let Some(consistency) = consistency {
        fields.insert("consistency".into(), JsonValue::from(consistency));
    }
    if let Some(session_id) = session_id {
        fields.insert("session_id".into(), JsonValue::from(session_id));
    }
    let session_id = parse_session_id(&fields)?;
    Ok((read_consistency(&fields, session_id.is_some())?, session_id))
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use serde_json::json;

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
