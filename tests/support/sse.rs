//! Reading Server-Sent Events streams the way a subscriber would, for the tests.

use reqwest::header::HeaderMap;
use serde_json::Value as Json;
use std::time::Duration;

/// One event of a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct SseEvent {
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `event:` field ("message" when absent).
    pub kind: String,
    /// The `data:` field, parsed as JSON.
    pub data: Json,
}

/// An open event stream.
pub struct EventStream {
    pub response: reqwest::Response,
    buffer: String,
}

/// How opening a stream went.
#[derive(Debug)]
pub enum Opened {
    Stream(EventStream),
    Failed(u16, Json),
    Unreachable(String),
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("EventStream")
    }
}

impl Opened {
    pub fn stream(self) -> EventStream {
        match self {
            Opened::Stream(stream) => stream,
            other => panic!("expected an event stream, got {other:?}"),
        }
    }
}

/// An HTTP client without an overall timeout (streams are long), connecting quickly.
pub fn streaming_http() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Opens `url` as an event stream, sending `last_event_id` if given.
pub async fn open(http: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> Opened {
    let mut headers = HeaderMap::new();
    headers.insert("accept", "text/event-stream".parse().unwrap());
    if let Some(id) = last_event_id {
        headers.insert("last-event-id", id.parse().unwrap());
    }
    match http.get(url).headers(headers).send().await {
        Ok(response) if response.status() == 200 => Opened::Stream(EventStream {
            response,
            buffer: String::new(),
        }),
        Ok(response) => {
            let status = response.status().as_u16();
            Opened::Failed(status, response.json().await.unwrap_or(Json::Null))
        }
        Err(error) => Opened::Unreachable(error.to_string()),
    }
}

impl EventStream {
    /// The next event; None when the stream ended (or broke), or nothing came in `patience`.
    pub async fn next(&mut self, patience: Duration) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_block(&block) {
                    return Some(event);
                }
                continue;
            }
            match tokio::time::timeout(patience, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }

    /// The next event that is not a progress event.
    pub async fn next_change(&mut self, patience: Duration) -> Option<SseEvent> {
        loop {
            let event = self.next(patience).await?;
            if event.kind != "progress" {
                return Some(event);
            }
        }
    }
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let mut id = None;
    let mut kind = "message".to_string();
    let mut data = String::new();
    let mut any = false;
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "id" => id = Some(value.to_string()),
            "event" => kind = value.to_string(),
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    any.then(|| SseEvent {
        id,
        kind,
        data: serde_json::from_str(&data).unwrap_or(Json::String(data)),
    })
}
