//! Change notifications over HTTP: `POST /subscribe`, `POST /unsubscribe`,
//! `GET /subscriptions/{id}` and the Server-Sent Events stream
//! `GET /subscriptions/{id}/events`.
//!
//! A stream sends one event per applied write whose key matches the subscription's
//! patterns, in slot order, with the write's position as its SSE id (`<slot>`, or
//! `<slot>.<index>` when batching put several writes in the slot). A reconnect with
//! `Last-Event-ID` (or `?from_slot=`, either form) continues right after that write, so
//! nothing is skipped and nothing repeated. Named events tell the rest:
//!
//! | event | data | when |
//! |---|---|---|
//! | (none) | `{"key","value","slot"}` | a matching write |
//! | `progress` | `{"slot","applied_slot"}` | idle for a second; its id resumes after `slot` |
//! | `lagged` | `{"error","resume_from"}` | the subscriber read too slowly: the stream ends |
//! | `too_old` | `{"error","oldest_available_slot"}` | the resume point is older than the learners hold: the stream ends |
//! | `unsubscribed` | `{"subscription_id"}` | the subscription was removed: the stream ends |

use super::errors::{body_bytes, parse_object, ApiError};
use super::state::AppState;
use crate::driver::{Driver, Interest};
use crate::feed::{FeedEvent, Fetched, Joined, Position, QueueItem, StreamEnd};
use crate::pattern::{any_matches, Pattern};
use crate::subscriptions::{SubscribeError, MAX_PATTERNS};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use common::ballot::Slot;
use futures::Stream;
use serde_json::{json, Value as JsonValue};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

/// Event streams open at once at most (each may queue up to its buffer limits); more get
/// `429`.
pub const MAX_STREAMS: usize = 1000;
/// An idle stream sends a `progress` event this often.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How long a catching-up stream waits before asking the learners again when they have
/// not reached its position yet.
const CATCH_UP_PAUSE: Duration = Duration::from_millis(50);

/// `POST /subscribe {"patterns": [...]}`.
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let patterns = parse_patterns(&body_bytes(body)?)?;
    let texts: Vec<String> = patterns
        .iter()
        .map(|pattern| pattern.as_str().to_string())
        .collect();
    let subscriptions = Arc::clone(&state.subscriptions);
    let made = tokio::task::spawn_blocking(move || subscriptions.subscribe(patterns))
        .await
        .map_err(|error| internal(format!("the subscription task failed: {error}")))?;
    let id = match made {
        Ok(id) => id,
        Err(SubscribeError::Full) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                "this client API holds {} subscriptions, the most it keeps; unsubscribe some first",
                crate::subscriptions::MAX_SUBSCRIPTIONS
            ),
            ))
        }
        Err(SubscribeError::Storage(error)) => {
            return Err(internal(format!(
                "the subscription could not be stored: {error}"
            )))
        }
    };
    Ok(Json(json!({
        "subscription_id": id.to_string(),
        "patterns": texts,
        "events": format!("/subscriptions/{id}/events"),
    })))
}

/// Parses a /subscribe body: `patterns` is a non-empty list of at most [`MAX_PATTERNS`]
/// well-formed patterns.
pub fn parse_patterns(body: &[u8]) -> Result<Vec<Pattern>, ApiError> {
    let object = parse_object(body)?;
    let Some(JsonValue::Array(items)) = object.get("patterns") else {
        return Err(ApiError::bad_request(
            "field \"patterns\" is required and must be a list of strings",
        ));
    };
    if items.is_empty() {
        return Err(ApiError::bad_request(
            "field \"patterns\" must hold at least one pattern",
        ));
    }
    if items.len() > MAX_PATTERNS {
        return Err(ApiError::bad_request(format!(
            "field \"patterns\" holds {} patterns, more than the {MAX_PATTERNS} allowed",
            items.len()
        )));
    }
    items
        .iter()
        .map(|item| match item {
            JsonValue::String(text) => {
                Pattern::parse(text).map_err(|error| ApiError::bad_request(error.to_string()))
            }
            other => Err(ApiError::bad_request(format!(
                "field \"patterns\" must hold strings, not {other}"
            ))),
        })
        .collect()
}

/// `POST /unsubscribe {"subscription_id": "..."}`.
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<JsonValue>, ApiError> {
    let object = parse_object(&body_bytes(body)?)?;
    let Some(JsonValue::String(text)) = object.get("subscription_id") else {
        return Err(ApiError::bad_request(
            "field \"subscription_id\" is required and must be a string",
        ));
    };
    let id = Uuid::parse_str(text).map_err(|_| {
        ApiError::bad_request(format!("field \"subscription_id\" is not a UUID: {text:?}"))
    })?;
    let subscriptions = Arc::clone(&state.subscriptions);
    let removed = tokio::task::spawn_blocking(move || subscriptions.unsubscribe(id))
        .await
        .map_err(|error| internal(format!("the unsubscription task failed: {error}")))?
        .map_err(|error| internal(format!("the unsubscription could not be stored: {error}")))?;
    if !removed {
        return Err(unknown_subscription(text));
    }
    Ok(Json(
        json!({ "subscription_id": id.to_string(), "unsubscribed": true }),
    ))
}

/// `GET /subscriptions/{id}`: the subscription's patterns.
pub(crate) async fn describe(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JsonValue>, ApiError> {
    let uuid = Uuid::parse_str(&id).map_err(|_| unknown_subscription(&id))?;
    let view = state
        .subscriptions
        .get(uuid)
        .ok_or_else(|| unknown_subscription(&id))?;
    let patterns: Vec<&str> = view.patterns.iter().map(Pattern::as_str).collect();
    Ok(Json(json!({
        "subscription_id": uuid.to_string(),
        "patterns": patterns,
        "events": format!("/subscriptions/{uuid}/events"),
    })))
}

/// `GET /subscriptions/{id}/events[?from_slot=N]`, honouring `Last-Event-ID`.
pub(crate) async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let uuid = Uuid::parse_str(&id).map_err(|_| unknown_subscription(&id))?;
    let view = state
        .subscriptions
        .get(uuid)
        .ok_or_else(|| unknown_subscription(&id))?;
    let start = resume_position(query.as_deref(), &headers)?;
    if state.driver.open_streams() >= MAX_STREAMS {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("this client API serves {MAX_STREAMS} event streams, the most it keeps open"),
        ));
    }
    let stream = EventStream::new(
        Arc::clone(&state.driver),
        view.patterns,
        view.cancelled,
        uuid,
        start,
    );
    let mut response = Sse::new(stream.into_stream()).into_response();
    // Proxies must pass events on at once rather than buffer them.
    response
        .headers_mut()
        .insert("x-accel-buffering", "no".parse().expect("a valid header"));
    Ok(response)
}

/// Where a stream starts: after `Last-Event-ID` if the client sent one (a reconnecting
/// EventSource does, keeping the original URL), else after `?from_slot=`, else at the
/// feed's present position (None).
pub fn resume_position(
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Option<Position>, ApiError> {
    if let Some(value) = headers.get("last-event-id") {
        let text = value
            .to_str()
            .map_err(|_| ApiError::bad_request("header Last-Event-ID is not text"))?;
        if !text.trim().is_empty() {
            return Position::after_event_id(text).map(Some).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "header Last-Event-ID must be an event id (<slot> or <slot>.<index>), not {text:?}"
                ))
            });
        }
    }
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "" => {}
            "from_slot" => {
                return Position::after_event_id(value).map(Some).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "from_slot must be a slot or an event id (<slot> or <slot>.<index>), not {value:?}"
                    ))
                })
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?} (only from_slot is known)"
                )))
            }
        }
    }
    Ok(None)
}

fn unknown_subscription(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no subscription {id:?}"))
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// Where a stream is in its life.
enum Phase {
    /// Behind the feed: fetching past slots from the learners.
    CatchingUp,
    /// Taking the feed's writes from its queue.
    Joined(Joined),
}

/// One subscriber's stream of events.
struct EventStream {
    feed: Arc<Driver>,
    patterns: Arc<Vec<Pattern>>,
    cancelled: watch::Receiver<bool>,
    subscription_id: Uuid,
    /// The next write to deliver (None until a stream "from now" learns the feed's).
    position: Option<Position>,
    phase: Phase,
    pending: VecDeque<Event>,
    last_sent: Instant,
    /// Which learner a catch-up fetch asks first.
    turn: usize,
    finished: bool,
    _interest: Interest,
}

impl EventStream {
    fn new(
        feed: Arc<Driver>,
        patterns: Arc<Vec<Pattern>>,
        cancelled: watch::Receiver<bool>,
        subscription_id: Uuid,
        start: Option<Position>,
    ) -> EventStream {
        let interest = feed.interest();
        EventStream {
            feed,
            patterns,
            cancelled,
            subscription_id,
            position: start,
            phase: Phase::CatchingUp,
            pending: VecDeque::new(),
            // The first idle moment sends a progress event at once: the stream is open.
            last_sent: Instant::now() - PROGRESS_INTERVAL,
            turn: rand::random::<u8>() as usize,
            finished: false,
            _interest: interest,
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send {
        futures::stream::unfold(self, |mut stream| async move {
            let event = stream.next_event().await?;
            Some((Ok(event), stream))
        })
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last_sent = Instant::now();
                return Some(event);
            }
            if self.finished {
                return None;
            }
            if *self.cancelled.borrow() {
                self.finish(Event::default().event("unsubscribed").data(
                    json!({"subscription_id": self.subscription_id.to_string()}).to_string(),
                ));
                continue;
            }
            if matches!(self.phase, Phase::CatchingUp) {
                self.catch_up().await;
            } else {
                self.follow().await;
            }
        }
    }

    /// One step of a stream behind the feed (or before it knows where "now" is).
    async fn catch_up(&mut self) {
        if let Some((queue, start)) = self.feed.join(&self.patterns, self.position) {
            self.position = Some(start);
            self.phase = Phase::Joined(Joined { queue });
            return;
        }
        let Some(position) = self.position else {
            self.pause(CATCH_UP_PAUSE).await; // the feed's position is not known yet
            return;
        };
        match self.feed.fetch(position.slot, self.turn).await {
            Fetched::Applied { to_slot, events } if to_slot > position.slot => {
                let mut position = position;
                for event in events {
                    if event_after(&event, position) && any_matches(&self.patterns, &event.key) {
                        position = event.next_position();
                        self.pending.push_back(write_event(&event));
                    }
                }
                let position = position.max(Position::slot_start(to_slot));
                self.position = Some(position);
                if self.pending.is_empty() && self.progress_due() {
                    self.pending.push_back(self.progress(position));
                }
            }
            Fetched::Applied { .. } => self.pause(CATCH_UP_PAUSE).await,
            Fetched::TooOld {
                oldest_available_slot,
            } => self.finish(too_old_event(position, oldest_available_slot)),
            Fetched::Unavailable => {
                self.turn += 1;
                self.pause(Duration::from_millis(200)).await;
            }
        }
    }

    /// One step of a stream that joined the feed.
    async fn follow(&mut self) {
        let Phase::Joined(joined) = &self.phase else {
            return;
        };
        let queue = Arc::clone(&joined.queue);
        let position = self.position.expect("a joined stream knows its position");
        match queue.take() {
            QueueItem::Event(event) => {
                self.position = Some(event.next_position());
                self.pending.push_back(write_event(&event));
            }
            QueueItem::Idle(delivered_through) => {
                let position = position.max(Position::slot_start(delivered_through + 1));
                self.position = Some(position);
                if self.progress_due() {
                    self.pending.push_back(self.progress(position));
                    return;
                }
                let deadline = self.last_sent + PROGRESS_INTERVAL;
                tokio::select! {
                    _ = queue.changed_or(deadline) => {}
                    changed = self.cancelled.changed() => self.end_if_gone(changed.is_err()),
                }
            }
            QueueItem::End(StreamEnd::Lagged) => self.finish(
                Event::default()
                    .event("lagged")
                    .id(position.resume_id())
                    .data(
                        json!({
                            "error": "this subscriber fell behind: its buffer filled up, so the \
                                      stream ends; reconnect with Last-Event-ID (or from_slot) set \
                                      to resume_from to continue without a gap",
                            "resume_from": position.resume_id(),
                        })
                        .to_string(),
                    ),
            ),
            QueueItem::End(StreamEnd::TooOld {
                oldest_available_slot,
            }) => self.finish(too_old_event(position, oldest_available_slot)),
        }
    }

    fn progress_due(&self) -> bool {
        self.last_sent.elapsed() >= PROGRESS_INTERVAL
    }

    /// A progress event at `position`: every matching write before it was delivered.
    fn progress(&self, position: Position) -> Event {
        let slot: Slot = if position.index == 0 {
            position.slot.saturating_sub(1)
        } else {
            position.slot - 1
        };
        Event::default()
            .event("progress")
            .id(position.resume_id())
            .data(
                json!({
                    "slot": slot,
                    "applied_slot": self.feed.applied_slot().max(slot),
                })
                .to_string(),
            )
    }

    fn finish(&mut self, last: Event) {
        self.pending.push_back(last);
        self.finished = true;
    }

    async fn pause(&mut self, duration: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            changed = self.cancelled.changed() => self.end_if_gone(changed.is_err()),
        }
    }

    /// The subscription's registry went away (the service is stopping): end quietly.
    fn end_if_gone(&mut self, gone: bool) {
        if gone {
            self.finished = true;
        }
    }
}

fn event_after(event: &FeedEvent, position: Position) -> bool {
    (event.slot, event.index) >= (position.slot, position.index)
}

fn write_event(event: &FeedEvent) -> Event {
    Event::default().id(event.id()).data(&event.data)
}

fn too_old_event(position: Position, oldest_available_slot: Slot) -> Event {
    Event::default().event("too_old").data(
        json!({
            "error": format!(
                "the stream cannot resume at slot {}: the learners keep the writes of slot {} \
                 and later only (older ones are folded into their state); no event was skipped: \
                 to continue anyway, reconnect with from_slot={}",
                position.slot,
                oldest_available_slot,
                oldest_available_slot.saturating_sub(1),
            ),
            "oldest_available_slot": oldest_available_slot,
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscribe_body_needs_a_non_empty_list_of_well_formed_patterns() {
        assert_eq!(
            parse_patterns(br#"{"patterns":["a*","b"]}"#).unwrap().len(),
            2
        );
        for (body, problem) in [
            (&br#"{"patterns":[]}"#[..], "at least one"),
            (br#"{"patterns":"a*"}"#, "list of strings"),
            (br#"{}"#, "required"),
            (br#"{"patterns":[1]}"#, "strings"),
            (br#"{"patterns":["ok","x[1]"]}"#, "reserved"),
            (br#"{"patterns":[""]}"#, "empty"),
            (br#"["a"]"#, "object"),
            (br#"{"patterns":["a"#, "JSON"),
        ] {
            let error = parse_patterns(body).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert!(error.message.contains(problem), "{error:?}");
        }
    }

    #[test]
    fn last_event_id_wins_over_from_slot_and_both_are_checked() {
        let mut headers = HeaderMap::new();
        assert_eq!(resume_position(None, &headers).unwrap(), None);
        assert_eq!(
            resume_position(Some("from_slot=0"), &headers).unwrap(),
            Some(Position::slot_start(1))
        );
        headers.insert("last-event-id", "7.1".parse().unwrap());
        assert_eq!(
            resume_position(Some("from_slot=3"), &headers).unwrap(),
            Some(Position { slot: 7, index: 2 })
        );
        headers.insert("last-event-id", "seven".parse().unwrap());
        assert!(resume_position(None, &headers).is_err());
        let headers = HeaderMap::new();
        assert!(resume_position(Some("from_slot=-1"), &headers).is_err());
        assert!(resume_position(Some("since=4"), &headers).is_err());
    }
}
