//! `paxos watch PATTERN...`: subscribes, then prints each matching write as it is decided.
//!
//! The position is the id of the last event seen: after any disconnection (the client API
//! restarted, the network broke, the stream was ended because this reader fell behind) the
//! watch reconnects with `Last-Event-ID` set to it and continues exactly after it. A client
//! API that forgot the subscription (it restarted without its data) is subscribed to again
//! with the same patterns, and the stream still resumes from that position.

use crate::api::{Api, Output};
use serde_json::{json, Value as Json};
use std::time::Duration;

/// The longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A stream silent this long (progress events come every second) is reopened.
const SILENCE: Duration = Duration::from_secs(10);

/// One event of the stream.
struct ServerEvent {
    id: Option<String>,
    kind: String,
    data: Json,
}

/// How one connection ended.
enum Ended {
    /// Reconnect (after a pause unless `at_once`).
    Reconnect { at_once: bool, reason: String },
    /// The subscription is gone: subscribe again.
    Forgotten,
    /// Stop watching, successfully.
    Done,
}

/// Watches `patterns` until Ctrl-C (Ok) or an error that retrying cannot fix.
pub(crate) async fn watch(
    api: Api,
    patterns: Vec<String>,
    from_slot: Option<String>,
    output: Output,
) -> Result<(), String> {
    let mut subscription = subscribe(&api, &patterns).await?;
    let watching = async {
        let mut last_id = from_slot;
        let mut backoff = Duration::from_millis(200);
        let mut first = true;
        loop {
            match follow(&api, &subscription, &mut last_id, output, first).await? {
                Ended::Done => return Ok(()),
                Ended::Forgotten => {
                    eprintln!(
                        "the client API no longer knows subscription {subscription}; subscribing again"
                    );
                    subscription = subscribe(&api, &patterns).await?;
                }
                Ended::Reconnect { at_once, reason } => {
                    eprintln!(
                        "{reason}; reconnecting after {}",
                        last_id.as_deref().unwrap_or("the start")
                    );
                    if !at_once {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            first = false;
        }
    };
    tokio::select! {
        outcome = watching => outcome,
        _ = tokio::signal::ctrl_c() => {
            // Best effort: the subscription is of no use once nobody watches.
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                api.post_raw("/unsubscribe", json!({ "subscription_id": subscription })),
            )
            .await;
            Ok(())
        }
    }
}

async fn subscribe(api: &Api, patterns: &[String]) -> Result<String, String> {
    let (status, body) = api
        .post_raw("/subscribe", json!({ "patterns": patterns }))
        .await?;
    match body["subscription_id"].as_str() {
        Some(id) if status == 200 => Ok(id.to_string()),
        _ => Err(format!(
            "{status}: {}",
            body["error"]
                .as_str()
                .unwrap_or("the subscription was refused")
        )),
    }
}

/// Follows one connection of the stream, printing writes and moving `last_id`.
async fn follow(
    api: &Api,
    subscription: &str,
    last_id: &mut Option<String>,
    output: Output,
    first: bool,
) -> Result<Ended, String> {
    let mut request = api
        .http
        .get(format!("{}/subscriptions/{subscription}/events", api.base))
        .header("accept", "text/event-stream");
    if let Some(id) = last_id.as_deref() {
        request = request.header("last-event-id", id);
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) if first => return Err(api.unreachable(&error)),
        Err(error) => {
            return Ok(Ended::Reconnect {
                at_once: false,
                reason: api.unreachable(&error),
            })
        }
    };
    let status = response.status().as_u16();
    if status == 404 {
        return Ok(Ended::Forgotten);
    }
    if status != 200 {
        let body: Json = response.json().await.unwrap_or(Json::Null);
        let message = body["error"].as_str().unwrap_or("no reason given");
        if (400..500).contains(&status) {
            return Err(format!("{status}: {message}"));
        }
        return Ok(Ended::Reconnect {
            at_once: false,
            reason: format!("the stream was refused ({status}: {message})"),
        });
    }
    let mut buffer = String::new();
    let mut announced = false;
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let Some(event) = parse(&block) else {
                continue;
            };
            if let Some(ended) = handle(event, last_id, output, &mut announced)? {
                return Ok(ended);
            }
        }
        match tokio::time::timeout(SILENCE, response.chunk()).await {
            Ok(Ok(Some(chunk))) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) | Ok(Err(_)) => {
                return Ok(Ended::Reconnect {
                    at_once: false,
                    reason: "the stream was cut".into(),
                })
            }
            Err(_) => {
                return Ok(Ended::Reconnect {
                    at_once: true,
                    reason: format!("nothing heard for {} s", SILENCE.as_secs()),
                })
            }
        }
    }
}

/// Prints one event; returns how the connection ends, if it does.
fn handle(
    event: ServerEvent,
    last_id: &mut Option<String>,
    output: Output,
    announced: &mut bool,
) -> Result<Option<Ended>, String> {
    let error = || {
        event.data["error"]
            .as_str()
            .unwrap_or("no reason given")
            .to_string()
    };
    match event.kind.as_str() {
        "message" => {
            let id = event.id.clone().unwrap_or_default();
            match output {
                Output::Json => {
                    let mut line = event.data.clone();
                    line["id"] = json!(id);
                    println!("{line}");
                }
                Output::Text => println!(
                    "{id}  {} = {}",
                    event.data["key"].as_str().unwrap_or_default(),
                    event.data["value"].as_str().unwrap_or_default()
                ),
            }
            *last_id = event.id;
            Ok(None)
        }
        "progress" => {
            if !*announced && output == Output::Text {
                eprintln!(
                    "watching from slot {} (the cluster has applied slot {}); Ctrl-C stops",
                    event.data["slot"], event.data["applied_slot"]
                );
            }
            *announced = true;
            if event.id.is_some() {
                *last_id = event.id;
            }
            Ok(None)
        }
        "lagged" => {
            *last_id = event.data["resume_from"]
                .as_str()
                .map(String::from)
                .or(last_id.take());
            Ok(Some(Ended::Reconnect {
                at_once: true,
                reason: "this watch fell behind the writes".into(),
            }))
        }
        "too_old" => Err(error()),
        "unsubscribed" => {
            eprintln!("the subscription was removed");
            Ok(Some(Ended::Done))
        }
        _ => Ok(None), // a newer server's event: nothing to do with it
    }
}

fn parse(block: &str) -> Option<ServerEvent> {
    let mut event = ServerEvent {
        id: None,
        kind: "message".into(),
        data: Json::Null,
    };
    let mut data = String::new();
    let mut any = false;
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        any = true;
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => event.id = Some(value.to_string()),
            "event" => event.kind = value.to_string(),
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    event.data = serde_json::from_str(&data).unwrap_or(Json::String(data));
    any.then_some(event)
}
