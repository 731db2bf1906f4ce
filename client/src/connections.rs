//! The HTTP side of the client API: an accept loop that serves the REST router over
//! HTTP/1.1 and keeps a few sockets from locking normal clients out.
//!
//! - **Header timeout** (CLIENT_HEADER_TIMEOUT): a request head must arrive whole within
//!   this time of its first byte, or the connection is closed (slowloris).
//! - **Idle timeout** (CLIENT_IDLE_TIMEOUT): a connection is *idle* while no request is in
//!   progress on it, that is from its accept, or from the end of its last response, until
//!   hyper hands over the next request. An idle connection that has not sent a byte of a
//!   next request within the idle timeout is closed. A request in progress (an event stream,
//!   a large upload) is never cut while bytes move; it is closed only once no byte moved
//!   either way for the stall timeout (a stalled upload would otherwise live forever).
//! - **Connection limit** (CLIENT_MAX_CONNECTIONS, capped by RLIMIT_NOFILE): at the limit a
//!   new connection closes the connection idle the longest; if none is idle it is answered
//!   503 and closed. A closed connection frees its descriptor only when its task runs, so
//!   the loop waits while [`MAX_CLOSING`] of them are still closing. Accept errors (out of
//!   descriptors, aborted handshakes) never stop the loop: it warns at most once a second;
//!   out of descriptors it closes the connection idle the longest and waits for it to close,
//!   and with nothing to close (or on other errors) it pauses 5 to 100 ms.
//!
//! hyper 1.12's own `header_read_timeout` starts when hyper begins waiting for a head, also
//! between keep-alive requests (its `notify_read` after each message), so it cannot tell a
//! quiet keep-alive connection from a slow head: with it alone every keep-alive connection
//! would be cut at the header timeout. It is kept as a backstop at idle + header timeout, a
//! bound the rules above never reach.

use crate::config::ClientConfig;
use axum::body::{Body, Bytes, HttpBody};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value as JsonValue};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

/// Descriptors kept out of the connection limit for the node's own sockets and files: the
/// listener, the links to every proposer and learner, the subscription store, the runtime,
/// standard streams, and connections still closing after being told to make room.
pub const RESERVED_DESCRIPTORS: u64 = 128;

/// Connections told to make room that may still hold their descriptor before the accept
/// loop waits for them: descriptors in use stay within the limit plus this.
pub const MAX_CLOSING: usize = 32;
/// The longest wait for closing connections to free their descriptors.
const CLOSING_WAIT_MAX: Duration = Duration::from_millis(100);

/// The shortest and longest pause after an accept error.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(5);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_millis(100);
/// At most one warning per this interval for each kind of trouble.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// How the HTTP side bounds connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request head must arrive whole within this time of its first byte.
    pub header_timeout: Duration,
    /// An idle connection sending no byte of a next request is closed after this time.
    pub idle_timeout: Duration,
    /// A request in progress that moved no byte either way for this long is closed:
    /// max(idle timeout, 2 x REQUEST_TIMEOUT), so a request waiting on the cluster is
    /// answered (503 at worst) before it could be cut.
    pub stall_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

impl HttpLimits {
    /// The limits of `config`, the connection limit capped by the process's
    /// file-descriptor soft limit minus [`RESERVED_DESCRIPTORS`].
    pub fn from_config(config: &ClientConfig) -> HttpLimits {
        let idle_timeout = Duration::from_millis(config.idle_timeout_milliseconds);
        let request_timeout = Duration::from_millis(config.request_timeout_milliseconds);
        let descriptors = descriptor_soft_limit();
        let max_connections = connection_limit(config.max_connections, descriptors);
        if max_connections < config.max_connections {
            tracing::warn!(
                configured = config.max_connections,
                max_connections,
                descriptor_limit = descriptors,
                reserved = RESERVED_DESCRIPTORS,
                "CLIENT_MAX_CONNECTIONS is capped by the file-descriptor limit (raise ulimit -n)"
            );
        }
        HttpLimits {
            header_timeout: Duration::from_millis(config.header_timeout_milliseconds),
            idle_timeout,
            stall_timeout: idle_timeout.max(2 * request_timeout),
            max_connections,
        }
    }
}

/// `configured`, capped at `descriptor_limit` minus [`RESERVED_DESCRIPTORS`] (at least 1).
pub fn connection_limit(configured: usize, descriptor_limit: Option<u64>) -> usize {
    match descriptor_limit {
        None => configured,
        Some(limit) => {
            let allowed = limit.saturating_sub(RESERVED_DESCRIPTORS).max(1);
            configured.min(usize::try_from(allowed).unwrap_or(usize::MAX))
        }
    }
}

/// The process's RLIMIT_NOFILE soft limit, or None when unlimited or unknown.
pub fn descriptor_soft_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if result != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(limit.rlim_cur)
}

/// Counts of the HTTP side, shown in the client API's `/status` under `http`.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    max_connections: AtomicUsize,
    open: AtomicUsize,
    accepted: AtomicU64,
    closed_idle: AtomicU64,
    closed_header_timeout: AtomicU64,
    closed_stalled: AtomicU64,
    closed_to_make_room: AtomicU64,
    refused: AtomicU64,
    accept_errors: AtomicU64,
}

impl ConnectionCounts {
    /// The counts as the `http` object of `/status`.
    pub fn to_json(&self) -> JsonValue {
        let load = |count: &AtomicU64| count.load(Ordering::Relaxed);
        json!({
            "max_connections": self.max_connections.load(Ordering::Relaxed),
            "open_connections": self.open.load(Ordering::Relaxed),
            "accepted": load(&self.accepted),
            "closed_idle": load(&self.closed_idle),
            "closed_header_timeout": load(&self.closed_header_timeout),
            "closed_stalled": load(&self.closed_stalled),
            "closed_to_make_room": load(&self.closed_to_make_room),
            "refused": load(&self.refused),
            "accept_errors": load(&self.accept_errors),
        })
    }

    fn count_close(&self, reason: Closing) {
        let count = match reason {
            Closing::Idle => &self.closed_idle,
            Closing::HeaderTimeout => &self.closed_header_timeout,
            Closing::Stalled => &self.closed_stalled,
            Closing::MakeRoom => &self.closed_to_make_room,
        };
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// Idle for the idle timeout without a byte of a next request.
    Idle,
    /// A request head did not arrive whole within the header timeout of its first byte.
    HeaderTimeout,
    /// A request in progress moved no byte for the stall timeout.
    Stalled,
    /// Closed, idle the longest, so that a new connection fits in the limit.
    MakeRoom,
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in progress since `since`; `head_started` is when the first byte after
    /// `since` arrived (the start of the next request head).
    Idle {
        since: Instant,
        head_started: Option<Instant>,
    },
    /// `requests` requests have been handed to the router and their responses have not ended.
    Busy { requests: usize },
}

#[derive(Debug)]
struct Activity {
    phase: Phase,
    /// The last time a byte was read from or written to the connection.
    last_byte: Instant,
    /// Since when the request in progress has been waiting for its response to start (its
    /// body still arriving, or its handler still working); None once the response began.
    awaiting_response_since: Option<Instant>,
}

/// One open connection, as the accept loop and its own task see it.
struct Connection {
    id: u64,
    activity: Mutex<Activity>,
    /// Told when the accept loop closes this connection to make room.
    evict: Notify,
    /// Told when the deadline moved earlier (a first byte, the end of a request), so that
    /// the connection's task re-arms its timer.
    deadline_moved: Notify,
}

impl Connection {
    fn new(id: u64) -> Connection {
        let now = Instant::now();
        Connection {
            id,
            activity: Mutex::new(Activity {
                phase: Phase::Idle {
                    since: now,
                    head_started: None,
                },
                last_byte: now,
                awaiting_response_since: None,
            }),
            evict: Notify::new(),
            deadline_moved: Notify::new(),
        }
    }

    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn on_read(&self) {
        let now = Instant::now();
        let mut activity = self.activity();
        activity.last_byte = now;
        if let Phase::Idle {
            head_started: head_started @ None,
            ..
        } = &mut activity.phase
        {
            *head_started = Some(now);
            self.deadline_moved.notify_one();
        }
    }

    fn on_write(&self) {
        self.activity().last_byte = Instant::now();
    }

    fn request_started(&self) {
        let mut activity = self.activity();
        activity.awaiting_response_since = Some(Instant::now());
        activity.phase = match activity.phase {
            Phase::Idle { .. } => Phase::Busy { requests: 1 },
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
        };
    }

    /// The router answered: the response's head leaves now (its body may stream on).
    fn response_started(&self) {
        self.activity().awaiting_response_since = None;
    }

    /// Since when a request has been waiting for its response, if one is.
    fn awaiting_response_since(&self) -> Option<Instant> {
        self.activity().awaiting_response_since
    }

    fn request_ended(&self) {
        let mut activity = self.activity();
        activity.awaiting_response_since = None;
        activity.phase = match activity.phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            _ => {
                self.deadline_moved.notify_one();
                Phase::Idle {
                    since: Instant::now(),
                    head_started: None,
                }
            }
        };
    }

    /// Since when the connection has been idle, or None while a request is in progress.
    fn idle_since(&self) -> Option<Instant> {
        match self.activity().phase {
            Phase::Idle { since, .. } => Some(since),
            Phase::Busy { .. } => None,
        }
    }

    /// When the connection is to be closed if nothing happens before then, and why.
    fn deadline(&self, limits: &HttpLimits) -> (Instant, Closing) {
        let activity = self.activity();
        match activity.phase {
            Phase::Idle {
                head_started: Some(started),
                ..
            } => (started + limits.header_timeout, Closing::HeaderTimeout),
            Phase::Idle { since, .. } => (since + limits.idle_timeout, Closing::Idle),
            Phase::Busy { .. } => (activity.last_byte + limits.stall_timeout, Closing::Stalled),
        }
    }
}

/// What the accept loop and every connection task share.
struct Shared {
    router: Router,
    limits: HttpLimits,
    counts: Arc<ConnectionCounts>,
    /// The open connections not yet told to close, by id.
    connections: Mutex<HashMap<u64, Arc<Connection>>>,
    /// Connections told to make room whose tasks have not ended yet.
    closing: AtomicUsize,
    next_id: AtomicU64,
}

impl Shared {
    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tells the connection idle the longest to close; if none is idle, the one whose
    /// request has waited longest for its response, once that is longer than the header
    /// timeout (a body trickled a byte at a time, the slow-POST form of slowloris, must not
    /// hold its place forever: honest requests get their answer within milliseconds, or
    /// within REQUEST_TIMEOUT while the cluster is unavailable). False if neither exists.
    /// A just-accepted connection whose head is not parsed yet counts as idle (the newest):
    /// during a flood the older flood connections go first, and when every other
    /// connection is busy one newcomer or the other loses either way.
    fn make_room(&self) -> bool {
        let mut connections = self.connections();
        let longest_idle = connections
            .values()
            .filter_map(|connection| Some((connection.idle_since()?, connection.id)))
            .min();
        let slowest_request = || {
            let waiting_since = Instant::now().checked_sub(self.limits.header_timeout)?;
            connections
                .values()
                .filter_map(|connection| {
                    let since = connection.awaiting_response_since()?;
                    (since <= waiting_since).then_some((since, connection.id))
                })
                .min()
        };
        let Some((_, id)) = longest_idle.or_else(slowest_request) else {
            return false;
        };
        if let Some(connection) = connections.remove(&id) {
            self.closing.fetch_add(1, Ordering::Relaxed);
            connection.evict.notify_one();
        }
        true
    }

    /// Waits (at most [`CLOSING_WAIT_MAX`]) until at most `bound` connections told to make
    /// room still hold their descriptors.
    async fn wait_for_closing(&self, bound: usize) {
        let deadline = Instant::now() + CLOSING_WAIT_MAX;
        while self.closing.load(Ordering::Relaxed) > bound && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Serves `router` on `listener` within `limits` until `stopped` resolves; then stops
/// accepting, lets every connection finish its request in progress (hyper's graceful
/// shutdown closes idle ones at once) and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    counts: Arc<ConnectionCounts>,
    stopped: impl Future<Output = ()>,
) -> io::Result<()> {
    counts
        .max_connections
        .store(limits.max_connections, Ordering::Relaxed);
    let shared = Arc::new(Shared {
        router,
        limits,
        counts,
        connections: Mutex::new(HashMap::new()),
        closing: AtomicUsize::new(0),
        next_id: AtomicU64::new(0),
    });
    let (stop_connections, stop) = watch::channel(false);
    // Every connection task holds a sender; recv() answers None once all have ended.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    let mut accept_errors = AcceptErrors::default();
    let mut limit_warning = RateLimitedWarning::default();
    tokio::pin!(stopped);
    loop {
        if shared.closing.load(Ordering::Relaxed) >= MAX_CLOSING {
            shared.wait_for_closing(MAX_CLOSING / 2).await;
        }
        let accepted = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                accept_errors.pause = Duration::ZERO;
                admit(&shared, stream, &stop, &alive, &mut limit_warning);
            }
            Err(error) => {
                shared.counts.accept_errors.fetch_add(1, Ordering::Relaxed);
                match accept_errors.on_error(&error, &shared) {
                    // The descriptor comes free once the closed connection's task runs.
                    AfterError::WaitForClosing => shared.wait_for_closing(0).await,
                    AfterError::Pause(pause) => tokio::time::sleep(pause).await,
                }
            }
        }
    }
    drop(listener);
    let _ = stop_connections.send(true);
    drop(alive);
    let _ = all_closed.recv().await;
    Ok(())
}

/// Serves `stream`, first making room for it (or refusing it) at the connection limit.
fn admit(
    shared: &Arc<Shared>,
    stream: TcpStream,
    stop: &watch::Receiver<bool>,
    alive: &mpsc::Sender<()>,
    limit_warning: &mut RateLimitedWarning,
) {
    shared.counts.accepted.fetch_add(1, Ordering::Relaxed);
    let full = shared.connections().len() >= shared.limits.max_connections;
    if full {
        let made_room = shared.make_room();
        if let Some(suppressed) = limit_warning.due() {
            tracing::warn!(
                max_connections = shared.limits.max_connections,
                made_room,
                suppressed,
                "the REST connection limit is reached (CLIENT_MAX_CONNECTIONS); \
                 closing the connection idle the longest, or refusing the new one if none is idle"
            );
        }
        if !made_room {
            shared.counts.refused.fetch_add(1, Ordering::Relaxed);
            refuse(stream);
            return;
        }
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let connection = Arc::new(Connection::new(id));
    shared.connections().insert(id, Arc::clone(&connection));
    shared.counts.open.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(serve_connection(
        Arc::clone(shared),
        stream,
        connection,
        stop.clone(),
        alive.clone(),
    ));
}

/// Answers 503 without waiting (a fresh socket has room for it) and closes.
fn refuse(stream: TcpStream) {
    const BODY: &str = r#"{"error":"the client API is at its connection limit (CLIENT_MAX_CONNECTIONS) and no connection is idle; retry shortly"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Serves one connection until it ends, is closed by a limit, or the server stops.
async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    connection: Arc<Connection>,
    mut stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let io = TokioIo::new(TrackedStream {
        stream,
        connection: Arc::clone(&connection),
    });
    let router = TowerToHyperService::new(shared.router.clone());
    let counts = Arc::clone(&shared.counts);
    let tracked = Arc::clone(&connection);
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        let in_progress = RequestInProgress::start(Arc::clone(&tracked));
        request.extensions_mut().insert(Arc::clone(&counts));
        let response = router.call(request);
        async move {
            let response = response.await?;
            in_progress.0.response_started();
            Ok::<_, Infallible>(response.map(|body| TrackedBody {
                body,
                _in_progress: in_progress,
            }))
        }
    });
    let limits = shared.limits;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout + limits.header_timeout);
    let mut served = Box::pin(builder.serve_connection(io, service));
    let mut stopping = false;
    let closed = loop {
        let (deadline, _) = connection.deadline(&limits);
        tokio::select! {
            result = served.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "REST connection ended with an error");
                }
                break None;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
            _ = connection.evict.notified() => break Some(Closing::MakeRoom),
            _ = connection.deadline_moved.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {
                // Activity may have moved the deadline while we slept.
                let (deadline, reason) = connection.deadline(&limits);
                if deadline <= Instant::now() {
                    break Some(reason);
                }
            }
        }
    };
    if let Some(reason) = closed {
        tracing::debug!(?reason, "closing a REST connection");
        shared.counts.count_close(reason);
    }
    // Frees the descriptor now rather than when the last Arc of the stream goes.
    drop(served);
    // Only make_room removes another task's connection, under the same lock: missing here
    // means it was counted as closing, even if it ended by itself at the same moment.
    let told_to_make_room = shared.connections().remove(&connection.id).is_none();
    if told_to_make_room {
        shared.closing.fetch_sub(1, Ordering::Relaxed);
    }
    shared.counts.open.fetch_sub(1, Ordering::Relaxed);
}

/// Marks a request in progress on its connection until dropped with its response body.
struct RequestInProgress(Arc<Connection>);

impl RequestInProgress {
    fn start(connection: Arc<Connection>) -> RequestInProgress {
        connection.request_started();
        RequestInProgress(connection)
    }
}

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response body that ends its request when hyper drops it (sent or abandoned).
struct TrackedBody {
    body: Body,
    _in_progress: RequestInProgress,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(context)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A TCP stream that records on its connection when bytes move.
struct TrackedStream {
    stream: TcpStream,
    connection: Arc<Connection>,
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buffer.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(context, buffer);
        if matches!(result, Poll::Ready(Ok(()))) && buffer.filled().len() > before {
            this.connection.on_read();
        }
        result
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(context, buffer);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            this.connection.on_write();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(context, buffers);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            this.connection.on_write();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}

/// What the accept loop does after an accept error.
#[derive(Debug, PartialEq, Eq)]
enum AfterError {
    /// A connection was told to close: wait until it freed its descriptor.
    WaitForClosing,
    /// Nothing to close, or not a descriptor problem: pause this long.
    Pause(Duration),
}

/// Accept errors: the pause before the next accept, and the rate-limited warning.
#[derive(Default)]
struct AcceptErrors {
    pause: Duration,
    warning: RateLimitedWarning,
}

impl AcceptErrors {
    /// Warns (at most once a second) and answers what to do. Out of descriptors, it closes
    /// the connection idle the longest, so that the next accept can succeed; with none idle
    /// the pause doubles from 5 to 100 ms while that lasts.
    fn on_error(&mut self, error: &io::Error, shared: &Shared) -> AfterError {
        let exhausted = matches!(
            error.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        self.pause = if exhausted {
            (self.pause * 2).clamp(ACCEPT_PAUSE_MIN, ACCEPT_PAUSE_MAX)
        } else {
            ACCEPT_PAUSE_MIN
        };
        let made_room = exhausted && shared.make_room();
        if let Some(suppressed) = self.warning.due() {
            tracing::warn!(
                %error,
                made_room,
                pause_milliseconds = self.pause.as_millis() as u64,
                suppressed,
                "cannot accept a REST connection"
            );
        }
        if made_room {
            AfterError::WaitForClosing
        } else {
            AfterError::Pause(self.pause)
        }
    }
}

/// Lets one warning through per [`WARNING_INTERVAL`] and counts the ones held back.
#[derive(Default)]
struct RateLimitedWarning {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedWarning {
    /// Some(number held back since the last one) when a warning may be logged now.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < WARNING_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(60),
            max_connections: 10,
        }
    }

    #[test]
    fn the_connection_limit_leaves_the_reserve_of_the_descriptor_limit() {
        assert_eq!(connection_limit(10_000, None), 10_000);
        assert_eq!(connection_limit(10_000, Some(1024)), 1024 - 128);
        assert_eq!(connection_limit(100, Some(1024)), 100);
        assert_eq!(connection_limit(100, Some(64)), 1);
    }

    #[test]
    fn a_first_byte_switches_an_idle_connection_from_the_idle_to_the_header_timeout() {
        let accepted = Instant::now();
        let connection = Connection::new(1);
        let (deadline, reason) = connection.deadline(&limits());
        assert_eq!(reason, Closing::Idle);
        assert!(deadline >= accepted + Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
        connection.on_read();
        let (deadline, reason) = connection.deadline(&limits());
        assert_eq!(reason, Closing::HeaderTimeout);
        assert!(deadline <= Instant::now() + Duration::from_secs(10));
        // More bytes of the same head do not extend it.
        std::thread::sleep(Duration::from_millis(20));
        connection.on_read();
        assert_eq!(connection.deadline(&limits()).0, deadline);
    }

    #[test]
    fn a_request_in_progress_is_closed_only_when_no_byte_moves() {
        let connection = Connection::new(1);
        connection.on_read();
        connection.request_started();
        assert_eq!(connection.idle_since(), None);
        let (first, reason) = connection.deadline(&limits());
        assert_eq!(reason, Closing::Stalled);
        std::thread::sleep(Duration::from_millis(20));
        connection.on_write();
        assert!(connection.deadline(&limits()).0 >= first + Duration::from_millis(20));
        let before_end = Instant::now();
        connection.request_ended();
        assert!(connection.idle_since().unwrap() >= before_end);
        assert_eq!(connection.deadline(&limits()).1, Closing::Idle);
    }

    #[test]
    fn a_rate_limited_warning_counts_what_it_held_back() {
        let mut warning = RateLimitedWarning::default();
        assert_eq!(warning.due(), Some(0));
        assert_eq!(warning.due(), None);
        assert_eq!(warning.due(), None);
        warning.last = Some(Instant::now() - WARNING_INTERVAL);
        assert_eq!(warning.due(), Some(2));
    }
}
