//! `paxos bench`: a load generator for the client API, and for etcd's JSON gateway, so that
//! one tool measures both systems the same way.
//!
//! Each of `--clients` tasks owns one persistent HTTP/1.1 connection and sends one request
//! at a time on it, a write with probability `--write-ratio` and a read otherwise, for a
//! random key of a fixed key space (`--keys` keys of `--key-size` random bytes, the same for
//! one `--seed`, so a read run finds the keys a write run wrote).
//!
//! Without `--rate` the load is closed: each client sends its next request as soon as the
//! previous one is answered, and latency is measured from the send. With `--rate R` the load
//! is open: client `i` of `N` is scheduled to send at `start + (k + i/N) * N/R` for
//! k = 0, 1, ..., and latency is measured from the *scheduled* time, not the actual send. A
//! stalled server therefore shows up as the long latencies its callers would have seen,
//! instead of as fewer, fast samples (coordinated omission, as in wrk2).
//!
//! Latencies go into HDR histograms (microsecond resolution, 3 significant digits), one per
//! client merged at the end; the report gives throughput, p50/p90/p99/p99.9/max and errors
//! by kind, as a table or as JSON.

use base64::Engine;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The longest latency the histograms hold; longer ones are clamped to it.
const HISTOGRAM_MAX_MICROSECONDS: u64 = 3_600_000_000;
/// Distinct values generated; each request picks one.
const VALUE_POOL_SIZE: usize = 1024;

/// Which system the load is aimed at.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// This cluster's client API (POST /write, POST /read).
    Paxos,
    /// etcd's JSON gateway (POST /v3/kv/put, POST /v3/kv/range, base64 keys and values).
    Etcd,
}

/// How the results are printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// A human-readable table.
    Table,
    /// One JSON document.
    Json,
}

/// Options of `paxos bench`.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchOptions {
    /// Where to send requests: the client API (`http://127.0.0.1:8000`) or, with `--target
    /// etcd`, etcd client URLs. A comma-separated list spreads the clients over them.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub endpoint: String,
    /// The system behind the endpoint.
    #[arg(long, value_enum, default_value_t = Target::Paxos)]
    pub target: Target,
    /// Concurrent clients, each with its own connection and one request in flight.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// How long to measure, after the warm-up ("10s", "500ms", "2m"; a bare number is
    /// seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long to run the load before measuring (not counted).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Fraction of requests that are writes, in [0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub write_ratio: f64,
    /// Consistency of reads: strong, session or eventual (etcd: strong is a linearizable
    /// range, eventual a serializable one; etcd has no session level).
    #[arg(long, default_value = "strong")]
    pub consistency: String,
    /// Bytes per value written.
    #[arg(long, default_value_t = 128)]
    pub value_size: usize,
    /// Bytes per key.
    #[arg(long, default_value_t = 12)]
    pub key_size: usize,
    /// Size of the key space.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Open loop: requests per second over all clients, at fixed intervals; latency is
    /// measured from each request's scheduled time. Without it the load is closed.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Stop after this many requests in all (measured ones and warm-up ones), even before
    /// the duration ends.
    #[arg(long)]
    pub requests: Option<u64>,
    /// A request without an answer after this long counts as a `timeout` error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Seeds the key space, the values and each client's choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How to print the results.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Do not print progress every second (on stderr).
    #[arg(long)]
    pub quiet: bool,
}

/// Parses "10", "10s", "250ms", "2m" or "1.5s".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|character: char| character.is_ascii_alphabetic()) {
        Some(index) => text.split_at(index),
        None => (text, "s"),
    };
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!("{text:?} is not a non-negative duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The read consistency asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadLevel {
    Strong,
    Session,
    Eventual,
}

impl ReadLevel {
    fn parse(text: &str, target: Target) -> Result<ReadLevel, String> {
        match (text, target) {
            ("strong" | "linearizable", _) => Ok(ReadLevel::Strong),
            ("eventual" | "serializable", _) => Ok(ReadLevel::Eventual),
            ("session", Target::Paxos) => Ok(ReadLevel::Session),
            ("session", Target::Etcd) => Err("etcd has no session consistency".to_string()),
            (other, _) => Err(format!(
                "--consistency must be strong, session or eventual, not {other:?}"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ReadLevel::Strong => "strong",
            ReadLevel::Session => "session",
            ReadLevel::Eventual => "eventual",
        }
    }
}

/// Checks the options and runs the benchmark; the exit code is 0 when it ran (errors
/// reported by the servers are results, not failures of the tool).
pub fn run(options: BenchOptions) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    match runtime.block_on(run_async(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("paxos bench: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run_async(options: BenchOptions) -> Result<(), String> {
    let plan = Plan::new(&options).await?;
    let report = execute(plan, &options).await;
    match options.output {
        OutputFormat::Table => print!("{}", report.table()),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report.json()).expect("JSON encodes")
        ),
    }
    Ok(())
}

/// Everything decided before the first request: endpoints, key space, payloads.
struct Plan {
    target: Target,
    endpoints: Vec<Endpoint>,
    read_level: ReadLevel,
    workload: Arc<Workload>,
}

#[derive(Clone, Debug)]
struct Endpoint {
    address: SocketAddr,
    /// The Host header.
    authority: String,
}

/// The key space and the values, each kept both as text (this cluster's API takes JSON
/// strings) and base64 (etcd's gateway takes bytes as base64).
struct Workload {
    keys: Vec<String>,
    keys_base64: Vec<String>,
    values: Vec<String>,
    values_base64: Vec<String>,
}

/// Random bytes from a 62-letter alphabet, so keys and values are JSON strings without
/// escapes and the same bytes on both systems.
fn random_text(random: &mut ChaCha8Rng, length: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..length)
        .map(|_| ALPHABET[random.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Workload {
    fn new(options: &BenchOptions) -> Workload {
        let mut random = ChaCha8Rng::seed_from_u64(options.seed);
        let mut seen = std::collections::HashSet::new();
        let mut keys = Vec::with_capacity(options.keys);
        while keys.len() < options.keys {
            let key = random_text(&mut random, options.key_size);
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
        let values: Vec<String> = (0..VALUE_POOL_SIZE)
            .map(|_| random_text(&mut random, options.value_size))
            .collect();
        let encode = |texts: &[String]| -> Vec<String> {
            texts
                .iter()
                .map(|text| base64::engine::general_purpose::STANDARD.encode(text))
                .collect()
        };
        Workload {
            keys_base64: encode(&keys),
            values_base64: encode(&values),
            keys,
            values,
        }
    }
}

impl Plan {
    async fn new(options: &BenchOptions) -> Result<Plan, String> {
        if options.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&options.write_ratio) {
            return Err("--write-ratio must be within [0, 1]".into());
        }
        if options.keys == 0 || options.key_size == 0 {
            return Err("--keys and --key-size must be at least 1".into());
        }
        // Enough distinct keys must exist for the alphabet and size asked for.
        if (options.key_size as f64) * 62f64.log2() < (options.keys as f64).log2() + 1.0 {
            return Err(format!(
                "{} distinct keys of {} bytes do not exist",
                options.keys, options.key_size
            ));
        }
        if options.duration.is_zero() {
            return Err("--duration must be above zero".into());
        }
        if let Some(rate) = options.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err("--rate must be a positive number of requests per second".into());
            }
        }
        let read_level = ReadLevel::parse(&options.consistency, options.target)?;
        let mut endpoints = Vec::new();
        for text in options.endpoint.split(',').filter(|text| !text.is_empty()) {
            endpoints.push(resolve(text).await?);
        }
        if endpoints.is_empty() {
            return Err("--endpoint names no endpoint".into());
        }
        Ok(Plan {
            target: options.target,
            endpoints,
            read_level,
            workload: Arc::new(Workload::new(options)),
        })
    }
}

async fn resolve(text: &str) -> Result<Endpoint, String> {
    let authority = text
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    if authority.contains('/') || text.starts_with("https://") {
        return Err(format!(
            "endpoint {text:?}: give http://host:port (no path, no TLS)"
        ));
    }
    let address = tokio::net::lookup_host(&authority)
        .await
        .map_err(|error| format!("endpoint {text:?}: {error}"))?
        .next()
        .ok_or_else(|| format!("endpoint {text:?} resolves to no address"))?;
    Ok(Endpoint { address, authority })
}

/// Counters shared with the progress printer.
#[derive(Default)]
struct Progress {
    /// Requests started; with `--requests`, no client starts one past the limit.
    started: AtomicU64,
    completed: AtomicU64,
    errors: AtomicU64,
    latency_sum_microseconds: AtomicU64,
}

/// What one client measured.
struct ClientResult {
    writes: Histogram<u64>,
    reads: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    /// Open loop only: requests scheduled within the run but never sent, because the
    /// client was still waiting for earlier answers when the run ended.
    unsent: u64,
}

impl ClientResult {
    fn new() -> ClientResult {
        let histogram = || {
            Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROSECONDS, 3)
                .expect("valid histogram bounds")
        };
        ClientResult {
            writes: histogram(),
            reads: histogram(),
            errors: BTreeMap::new(),
            unsent: 0,
        }
    }
}

/// When the clients run and when they measure.
#[derive(Clone, Copy)]
struct Window {
    measure_from: Instant,
    end: Instant,
}

async fn execute(plan: Plan, options: &BenchOptions) -> Report {
    let progress = Arc::new(Progress::default());
    let start = Instant::now() + Duration::from_millis(50);
    let window = Window {
        measure_from: start + options.warmup,
        end: start + options.warmup + options.duration,
    };
    let mut tasks = Vec::with_capacity(options.clients);
    for index in 0..options.clients {
        let client = Client {
            index,
            target: plan.target,
            endpoint: plan.endpoints[index % plan.endpoints.len()].clone(),
            workload: Arc::clone(&plan.workload),
            read_level: plan.read_level,
            write_ratio: options.write_ratio,
            timeout: options.timeout,
            random: ChaCha8Rng::seed_from_u64(options.seed.wrapping_add(1 + index as u64)),
            progress: Arc::clone(&progress),
            request_limit: options.requests.unwrap_or(u64::MAX),
            connection: None,
        };
        let schedule = options.rate.map(|rate| {
            let interval = Duration::from_secs_f64(options.clients as f64 / rate);
            let offset = interval.mul_f64(index as f64 / options.clients as f64);
            (start + offset, interval)
        });
        tasks.push(tokio::spawn(client.run(start, schedule, window)));
    }
    let printer = (!options.quiet).then(|| {
        tokio::spawn(print_progress(
            Arc::clone(&progress),
            start,
            window,
            options.warmup,
        ))
    });
    let mut total = ClientResult::new();
    for task in tasks {
        let result = task.await.expect("a client task does not panic");
        total.writes.add(&result.writes).expect("same bounds");
        total.reads.add(&result.reads).expect("same bounds");
        for (kind, count) in result.errors {
            *total.errors.entry(kind).or_default() += count;
        }
        total.unsent += result.unsent;
    }
    if let Some(printer) = printer {
        printer.abort();
    }
    // With --requests the run may end before its duration.
    let elapsed = Instant::now()
        .min(window.end)
        .saturating_duration_since(window.measure_from);
    Report {
        target: plan.target,
        endpoint: options.endpoint.clone(),
        clients: options.clients,
        duration: elapsed.max(Duration::from_millis(1)),
        write_ratio: options.write_ratio,
        read_level: plan.read_level,
        rate: options.rate,
        value_size: options.value_size,
        key_size: options.key_size,
        keys: options.keys,
        result: total,
    }
}

async fn print_progress(progress: Arc<Progress>, start: Instant, window: Window, warmup: Duration) {
    let mut ticker =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_completed = 0;
    let mut last_sum = 0;
    loop {
        let now = ticker.tick().await;
        if now > window.end + Duration::from_millis(500) {
            return;
        }
        let completed = progress.completed.load(Ordering::Relaxed);
        let sum = progress.latency_sum_microseconds.load(Ordering::Relaxed);
        let errors = progress.errors.load(Ordering::Relaxed);
        let done = completed - last_completed;
        let mean_milliseconds = if done > 0 {
            (sum - last_sum) as f64 / done as f64 / 1000.0
        } else {
            0.0
        };
        let elapsed = now.duration_since(start).as_secs_f64();
        let phase = if elapsed <= warmup.as_secs_f64() {
            " (warm-up)"
        } else {
            ""
        };
        eprintln!(
            "[{elapsed:6.1}s] {done:>8} req/s  mean {mean_milliseconds:8.2} ms  errors {errors}{phase}"
        );
        last_completed = completed;
        last_sum = sum;
    }
}

/// One simulated user: one connection, one request at a time.
struct Client {
    index: usize,
    target: Target,
    endpoint: Endpoint,
    workload: Arc<Workload>,
    read_level: ReadLevel,
    write_ratio: f64,
    timeout: Duration,
    random: ChaCha8Rng,
    progress: Arc<Progress>,
    request_limit: u64,
    connection: Option<SendRequest<Full<Bytes>>>,
}

/// Why a request did not succeed.
enum Failure {
    /// The server answered with this status.
    Status(u16),
    /// No answer within the timeout.
    Timeout,
    /// The connection could not be opened or broke.
    Connection(String),
}

impl Failure {
    fn kind(&self) -> String {
        match self {
            Failure::Status(status) => format!("http {status}"),
            Failure::Timeout => "timeout".to_string(),
            Failure::Connection(reason) => format!("connection: {reason}"),
        }
    }
}

impl Client {
    async fn run(
        mut self,
        start: Instant,
        schedule: Option<(Instant, Duration)>,
        window: Window,
    ) -> ClientResult {
        let mut result = ClientResult::new();
        tokio::time::sleep_until(start).await;
        let mut next_scheduled = schedule.map(|(first, _)| first);
        loop {
            let intended = match (next_scheduled, schedule) {
                (Some(at), Some((_, interval))) => {
                    if at >= window.end {
                        break;
                    }
                    next_scheduled = Some(at + interval);
                    if Instant::now() >= window.end {
                        // Scheduled in the run but the answers came too slowly to send it.
                        if at >= window.measure_from {
                            result.unsent += 1;
                        }
                        continue;
                    }
                    tokio::time::sleep_until(at).await;
                    at
                }
                _ => {
                    let now = Instant::now();
                    if now >= window.end {
                        break;
                    }
                    now
                }
            };
            if self.progress.started.fetch_add(1, Ordering::Relaxed) >= self.request_limit {
                break;
            }
            let is_write = self.random.random_bool(self.write_ratio);
            let outcome = tokio::time::timeout(self.timeout, self.request(is_write)).await;
            let latency_microseconds = intended.elapsed().as_micros() as u64;
            let outcome = outcome.unwrap_or(Err(Failure::Timeout));
            if matches!(outcome, Err(Failure::Timeout)) {
                self.connection = None; // an answer may still come on it: start afresh
            }
            self.progress.completed.fetch_add(1, Ordering::Relaxed);
            self.progress
                .latency_sum_microseconds
                .fetch_add(latency_microseconds, Ordering::Relaxed);
            let measured = intended >= window.measure_from;
            match outcome {
                Ok(()) if measured => {
                    let histogram = if is_write {
                        &mut result.writes
                    } else {
                        &mut result.reads
                    };
                    histogram.saturating_record(latency_microseconds.max(1));
                }
                Ok(()) => {}
                Err(failure) => {
                    self.progress.errors.fetch_add(1, Ordering::Relaxed);
                    if measured {
                        *result.errors.entry(failure.kind()).or_default() += 1;
                    }
                    if matches!(failure, Failure::Connection(_)) {
                        // Do not spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        result
    }

    /// Sends one request and reads the whole answer.
    async fn request(&mut self, is_write: bool) -> Result<(), Failure> {
        let (path, body) = self.request_body(is_write);
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, self.endpoint.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a well-formed request");
        let sender = self.connect().await?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(error) => {
                self.connection = None;
                return Err(Failure::Connection(connection_error_kind(&error)));
            }
        };
        let status = response.status();
        if let Err(error) = response.into_body().collect().await {
            self.connection = None;
            return Err(Failure::Connection(format!("reading the body: {error}")));
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::Status(status.as_u16()))
        }
    }

    /// The path and JSON body of the next request.
    fn request_body(&mut self, is_write: bool) -> (&'static str, String) {
        let workload = &self.workload;
        let key = self.random.random_range(0..workload.keys.len());
        let value = self.random.random_range(0..workload.values.len());
        // Only session reads need the session: writes then advance it.
        let session = match self.read_level {
            ReadLevel::Session => format!(r#","session_id":"bench-{}""#, self.index),
            _ => String::new(),
        };
        match (self.target, is_write) {
            (Target::Paxos, true) => (
                "/write",
                format!(
                    r#"{{"key":"{}","value":"{}"{session}}}"#,
                    workload.keys[key], workload.values[value]
                ),
            ),
            (Target::Paxos, false) => (
                "/read",
                format!(
                    r#"{{"key":"{}","consistency":"{}"{session}}}"#,
                    workload.keys[key],
                    self.read_level.name()
                ),
            ),
            (Target::Etcd, true) => (
                "/v3/kv/put",
                format!(
                    r#"{{"key":"{}","value":"{}"}}"#,
                    workload.keys_base64[key], workload.values_base64[value]
                ),
            ),
            (Target::Etcd, false) => (
                "/v3/kv/range",
                format!(
                    r#"{{"key":"{}","serializable":{}}}"#,
                    workload.keys_base64[key],
                    self.read_level == ReadLevel::Eventual
                ),
            ),
        }
    }

    /// The open connection, or a new one.
    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, Failure> {
        if let Some(sender) = &self.connection {
            if sender.is_closed() {
                self.connection = None;
            }
        }
        if self.connection.is_none() {
            let stream = tokio::net::TcpStream::connect(self.endpoint.address)
                .await
                .map_err(|error| Failure::Connection(format!("{:?}", error.kind())))?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|error| Failure::Connection(connection_error_kind(&error)))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.connection = Some(sender);
        }
        let sender = self.connection.as_mut().expect("connected above");
        if sender.ready().await.is_err() {
            self.connection = None;
            return Err(Failure::Connection("closed".to_string()));
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }
}

fn connection_error_kind(error: &hyper::Error) -> String {
    if error.is_closed() || error.is_incomplete_message() {
        "closed".to_string()
    } else if error.is_timeout() {
        "timeout".to_string()
    } else {
        error.to_string()
    }
}

/// The results of a run.
struct Report {
    target: Target,
    endpoint: String,
    clients: usize,
    /// How long the measurement lasted.
    duration: Duration,
    write_ratio: f64,
    read_level: ReadLevel,
    rate: Option<f64>,
    value_size: usize,
    key_size: usize,
    keys: usize,
    result: ClientResult,
}

/// The latency summary of one histogram, in milliseconds.
fn latency_json(histogram: &Histogram<u64>) -> Json {
    let at = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    json!({
        "count": histogram.len(),
        "mean": histogram.mean() / 1000.0,
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "p99.9": at(0.999),
        "max": histogram.max() as f64 / 1000.0,
    })
}

impl Report {
    fn all(&self) -> Histogram<u64> {
        let mut all = self.result.writes.clone();
        all.add(&self.result.reads).expect("same bounds");
        all
    }

    fn throughput(&self, histogram: &Histogram<u64>) -> f64 {
        histogram.len() as f64 / self.duration.as_secs_f64()
    }

    fn error_count(&self) -> u64 {
        self.result.errors.values().sum()
    }

    fn json(&self) -> Json {
        let all = self.all();
        json!({
            "target": match self.target { Target::Paxos => "paxos", Target::Etcd => "etcd" },
            "endpoint": self.endpoint,
            "clients": self.clients,
            "duration_seconds": self.duration.as_secs_f64(),
            "write_ratio": self.write_ratio,
            "consistency": self.read_level.name(),
            "rate": self.rate,
            "value_size": self.value_size,
            "key_size": self.key_size,
            "keys": self.keys,
            "requests": all.len(),
            "throughput": self.throughput(&all),
            "latency_milliseconds": latency_json(&all),
            "writes": {
                "throughput": self.throughput(&self.result.writes),
                "latency_milliseconds": latency_json(&self.result.writes),
            },
            "reads": {
                "throughput": self.throughput(&self.result.reads),
                "latency_milliseconds": latency_json(&self.result.reads),
            },
            "errors": self.result.errors,
            "error_count": self.error_count(),
            "unsent": self.result.unsent,
        })
    }

    fn table(&self) -> String {
        let mut text = String::new();
        let load = match self.rate {
            Some(rate) => format!("open loop at {rate} req/s"),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(
            text,
            "{:?} at {}: {} clients, {load}, {:.1}s, {:.0}% writes, {} reads, {} keys of {} B, values of {} B",
            self.target,
            self.endpoint,
            self.clients,
            self.duration.as_secs_f64(),
            self.write_ratio * 100.0,
            self.read_level.name(),
            self.keys,
            self.key_size,
            self.value_size,
        );
        let _ = writeln!(
            text,
            "{:<8} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "", "requests", "req/s", "mean ms", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        let all = self.all();
        for (name, histogram) in [
            ("writes", &self.result.writes),
            ("reads", &self.result.reads),
            ("all", &all),
        ] {
            if histogram.is_empty() && name != "all" {
                continue;
            }
            let at = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
            let _ = writeln!(
                text,
                "{name:<8} {:>10} {:>12.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                histogram.len(),
                self.throughput(histogram),
                histogram.mean() / 1000.0,
                at(0.50),
                at(0.90),
                at(0.99),
                at(0.999),
                histogram.max() as f64 / 1000.0,
            );
        }
        if self.result.errors.is_empty() {
            let _ = writeln!(text, "errors: none");
        } else {
            let _ = writeln!(text, "errors: {}", self.error_count());
            for (kind, count) in &self.result.errors {
                let _ = writeln!(text, "  {kind:<40} {count}");
            }
        }
        if self.result.unsent > 0 {
            let _ = writeln!(
                text,
                "unsent: {} requests scheduled but not sent before the end (the target rate was not sustained)",
                self.result.unsent
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_or_without_a_unit() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn the_key_space_is_the_same_for_one_seed_and_distinct() {
        let options = |seed| BenchOptions {
            endpoint: String::new(),
            target: Target::Paxos,
            clients: 1,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            write_ratio: 1.0,
            consistency: "strong".into(),
            value_size: 128,
            key_size: 12,
            keys: 500,
            rate: None,
            requests: None,
            timeout: Duration::from_secs(1),
            seed,
            output: OutputFormat::Table,
            quiet: true,
        };
        let first = Workload::new(&options(7));
        let again = Workload::new(&options(7));
        let other = Workload::new(&options(8));
        assert_eq!(first.keys, again.keys);
        assert_ne!(first.keys, other.keys);
        let distinct: std::collections::HashSet<&String> = first.keys.iter().collect();
        assert_eq!(distinct.len(), 500);
        assert!(first.keys.iter().all(|key| key.len() == 12));
        assert!(first.values.iter().all(|value| value.len() == 128));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&first.keys_base64[0])
            .unwrap();
        assert_eq!(decoded, first.keys[0].as_bytes());
    }

    #[test]
    fn etcd_has_no_session_reads_and_unknown_levels_are_refused() {
        assert_eq!(
            ReadLevel::parse("eventual", Target::Etcd),
            Ok(ReadLevel::Eventual)
        );
        assert!(ReadLevel::parse("session", Target::Etcd).is_err());
        assert!(ReadLevel::parse("weak", Target::Paxos).is_err());
    }
}
