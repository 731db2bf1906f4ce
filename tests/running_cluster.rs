//! A history recorded against a cluster that is already running, such as the docker compose
//! cluster of `scripts/drills.sh`: concurrent clients write unique values and read them
//! strongly through the client API for HISTORY_SECONDS while the drill script injects a
//! fault (it pauses the leader); the history must be linearizable.
//!
//! Ignored by `cargo test`, which starts its own processes instead (`tests/linearizable.rs`):
//!
//! ```sh
//! PAXOS_URL=http://127.0.0.1:8000 HISTORY_SECONDS=20 \
//!   cargo test --test running_cluster -- --ignored --nocapture
//! ```

use common::linearizability::{check, Event, Operation};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;
const KEYS_PER_RUN: usize = 3;

/// What one request came to.
enum Outcome {
    /// 200, with the body.
    Answered(Json),
    /// 503, a timeout or a refused connection: a write may or may not have taken effect.
    Unknown,
}

async fn post(http: &reqwest::Client, url: &str, body: Json) -> Outcome {
    match http.post(url).json(&body).send().await {
        Ok(response) if response.status().is_success() => match response.json().await {
            Ok(body) => Outcome::Answered(body),
            Err(_) => Outcome::Unknown,
        },
        Ok(response) if response.status().is_client_error() => {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            panic!("the client API refused a well-formed request: {status} {text}")
        }
        _ => Outcome::Unknown,
    }
}

struct Recorder {
    http: reqwest::Client,
    base_url: String,
    keys: Vec<String>,
    started: Instant,
    history: Mutex<Vec<Event>>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    async fn client_loop(self: Arc<Self>, client: usize, seed: u64, until: Instant) {
        let mut random = rand::rngs::StdRng::seed_from_u64(seed ^ client as u64);
        let mut count = 0u64;
        while Instant::now() < until {
            let key = self.keys[random.random_range(0..self.keys.len())].clone();
            let invoked_at = self.now();
            let (operation, outcome) = if random.random_bool(0.5) {
                count += 1;
                let value = format!("c{client}-{count}");
                let body = json!({"key": key, "value": value});
                let outcome = post(&self.http, &format!("{}/write", self.base_url), body).await;
                (Operation::Write { key, value }, outcome)
            } else {
                let body = json!({"key": key, "consistency": "strong"});
                let outcome = post(&self.http, &format!("{}/read", self.base_url), body).await;
                let value = match &outcome {
                    Outcome::Answered(body) => body["value"].as_str().map(String::from),
                    Outcome::Unknown => None,
                };
                (Operation::Read { key, value }, outcome)
            };
            let completed_at = match outcome {
                Outcome::Answered(_) => Some(self.now()),
                Outcome::Unknown => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    None
                }
            };
            self.history.lock().unwrap().push(Event {
                operation,
                invoked_at,
                completed_at,
            });
        }
    }
}

fn environment<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running cluster: PAXOS_URL=http://host:port, run with --ignored"]
async fn strong_reads_and_writes_against_a_running_cluster_are_linearizable() {
    let base_url = std::env::var("PAXOS_URL")
        .expect("PAXOS_URL must name the client API of a running cluster")
        .trim_end_matches('/')
        .to_string();
    let seconds: u64 = environment("HISTORY_SECONDS", 20);
    let seed: u64 = environment("HISTORY_SEED", rand::random());
    // Keys of their own, so that an earlier run's values never appear in this history.
    let keys = (0..KEYS_PER_RUN)
        .map(|index| format!("linearizable-{seed:016x}-{index}"))
        .collect();
    eprintln!(
        "recording a history against {base_url} for {seconds} s \
         (seed {seed}; HISTORY_SEED={seed} replays the clients' choices)"
    );
    let recorder = Arc::new(Recorder {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        base_url,
        keys,
        started: Instant::now(),
        history: Mutex::new(Vec::new()),
    });
    let until = Instant::now() + Duration::from_secs(seconds);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| tokio::spawn(recorder.clone().client_loop(client, seed, until)))
        .collect();
    for client in clients {
        client.await.unwrap();
    }

    let history = recorder.history.lock().unwrap().clone();
    let completed = |write: bool| {
        history
            .iter()
            .filter(|event| {
                event.completed_at.is_some()
                    && matches!(event.operation, Operation::Write { .. }) == write
            })
            .count()
    };
    let (writes, reads) = (completed(true), completed(false));
    eprintln!(
        "history: {} operations: {writes} acknowledged writes, {reads} strong reads, {} \
         with an unknown outcome",
        history.len(),
        history.len() - writes - reads
    );
    assert!(
        writes >= 20 && reads >= 20,
        "too few operations completed to mean anything ({writes} writes, {reads} reads)"
    );
    if let Err(violation) = check(&history) {
        panic!("seed {seed}: {violation}");
    }
    eprintln!("the history is linearizable");
}
