//! What the client commands (`cli`, `watch`) share: the client API over HTTP ([`Api`]),
//! why a request failed ([`Failure`]: the message for the user, and the API's JSON error),
//! and how answers are printed ([`Output`]). `cli` dispatches to `watch`, and both take
//! these from here, so the binary's modules import one another without a circle.

use clap::ValueEnum;
use serde_json::{json, Value as Json};
use std::time::Duration;

/// How the answers are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable text.
    Text,
    /// The API's JSON (one document per line).
    Json,
}

/// Why a command failed: what to tell the user, and the API's JSON error if there was one.
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) body: Option<Json>,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            body: None,
        }
    }
}

/// The client API, over HTTP.
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
}

impl Api {
    /// The client API at `endpoint` (an http:// base URL).
    pub(crate) fn new(endpoint: &str) -> Result<Api, Failure> {
        let base = endpoint.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(Failure::new(format!(
                "--endpoint must be an http:// URL, not {endpoint:?}"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| Failure::new(format!("cannot make an HTTP client: {error}")))?;
        Ok(Api { base, http })
    }

    pub(crate) async fn post(&self, path: &str, body: Json) -> Result<Json, Failure> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(60))
            .json(&body);
        self.answer(path, request.send().await).await
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Json, Failure> {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(60));
        self.answer(path, request.send().await).await
    }

    /// A POST whose answer is returned whatever its status (for callers that handle
    /// some errors themselves).
    pub(crate) async fn post_raw(&self, path: &str, body: Json) -> Result<(u16, Json), String> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(60))
            .json(&body)
            .send()
            .await
            .map_err(|error| self.unreachable(&error))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Json::Null);
        Ok((status, body))
    }

    async fn answer(
        &self,
        path: &str,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Json, Failure> {
        let response = sent.map_err(|error| Failure::new(self.unreachable(&error)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| Failure::new(format!("{path}: the answer broke off: {error}")))?;
        let body: Json = serde_json::from_str(&text).unwrap_or(Json::String(text));
        if status.is_success() {
            return Ok(body);
        }
        let message = body["error"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| body.to_string());
        Err(Failure {
            message: format!("{} {}: {message}", status.as_u16(), reason(status)),
            body: Some(json!({ "status": status.as_u16(), "error": message })),
        })
    }

    pub(crate) fn unreachable(&self, error: &reqwest::Error) -> String {
        let cause = if error.is_timeout() {
            "no answer in time".to_string()
        } else if error.is_connect() {
            "cannot connect (is the cluster running? `paxos up` starts one)".to_string()
        } else {
            error.to_string()
        };
        format!("the client API at {} did not answer: {cause}", self.base)
    }
}

fn reason(status: reqwest::StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("error")
}
