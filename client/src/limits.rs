//! The sizes the REST API accepts: the HTTP layer refuses anything larger with 413, and
//! subscription patterns are bounded like the keys they match.

/// The largest request body accepted; larger ones get 413.
pub const BODY_LIMIT_BYTES: usize = 4 * 1024 * 1024;
/// The longest key, in bytes (UTF-8).
pub const KEY_LIMIT_BYTES: usize = 1024;
/// The longest value, in bytes (UTF-8).
pub const VALUE_LIMIT_BYTES: usize = 1024 * 1024;
/// The longest session id, in bytes (UTF-8).
pub const SESSION_ID_LIMIT_BYTES: usize = 1024;
