//! One thread per node: a single-threaded Tokio runtime that runs the node's network and
//! its driver loop, shared by the acceptor, proposer and learner services.
//!
//! A message read from a socket reaches the core on the thread that read it: the network's
//! reader task hands it to the driver through an in-thread channel, which costs no system
//! call and no wake-up of another thread. On the two-vCPU machines this runs on, waking a
//! thread on the other CPU costs some 30 µs (an inter-processor interrupt and a halted vCPU
//! resuming), more than handling the message; a write used to cross two such hand-offs in
//! the proposer and one in each acceptor.
//!
//! The loop, [`run`]: wait for an event or the next tick; hand the event, and every event
//! already queued (up to [`LoopOptions::batch_events_max`]), to the driver; advance the
//! clock by the ticks that are due (at most [`LoopOptions::catch_up_ticks_max`] after a
//! stall); then let the driver carry out the batch ([`Driver::end_batch`]: persist, sync,
//! send). While the driver blocks in a sync, the network's tasks do not run, so what
//! arrives meanwhile waits in the socket buffers and forms the next batch (group commit).

use crate::network::{Inbound, InboundHandler, Network, Transport};
use anyhow::Context;
use common::node::NodeId;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A node's protocol side, driven by [`run`]. Implementations wrap a core (a state machine
/// without I/O) and carry out its effects.
pub trait Driver {
    /// Hands one inbound event to the core; effects may wait for [`Driver::end_batch`].
    fn handle(&mut self, event: Inbound);
    /// One tick of the clock passed.
    fn tick(&mut self);
    /// Carries out the effects of the events and ticks since the last call, in the order
    /// that keeps the protocol safe (durable before sent).
    fn end_batch(&mut self);
    /// The loop is stopping: make durable whatever may still be pending.
    fn stop(&mut self) {}
}

/// The most inbound events a driver handles in one batch, after the one that woke it: bounds
/// the delay of a batch's first answer while still sharing one fsync among many messages.
/// The same for every role.
pub const BATCH_EVENTS_MAX: usize = 4096;

/// How the loop batches events and keeps time.
#[derive(Clone, Copy, Debug)]
pub struct LoopOptions {
    /// The length of one tick.
    pub tick: Duration,
    /// Ticks replayed at most after a stall (then the clock jumps to now).
    pub catch_up_ticks_max: u32,
    /// Events handled in one batch after the one that woke the loop.
    pub batch_events_max: usize,
}

/// A node running on its own thread. Dropping it stops the node: its driver finishes the
/// batch at hand, then the runtime drops, closing the listener and every connection.
pub struct NodeThread {
    address: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts node `me` on a thread of its own: its network (listening on `listen`, dialling
/// `peers`, secured by `transport`) and the driver that `make_driver` builds around the
/// started network. Returns once the node listens, or the error that kept it from starting.
pub async fn start<D, M>(
    me: NodeId,
    listen: Option<SocketAddr>,
    peers: Vec<String>,
    transport: Transport,
    options: LoopOptions,
    make_driver: M,
) -> anyhow::Result<NodeThread>
where
    D: Driver,
    M: FnOnce(Network) -> D + Send + 'static,
{
    let (started_sender, started) = tokio::sync::oneshot::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name(me.to_string())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = started_sender.send(Err(anyhow::Error::new(error)));
                    return;
                }
            };
            runtime.block_on(async move {
                let (sender, mut inbox) = mpsc::unbounded_channel();
                let handler: InboundHandler = Arc::new(move |event| {
                    let _ = sender.send(event); // fails only once the loop has stopped
                });
                let (network, bound) =
                    match Network::start(me, listen, &peers, transport, handler).await {
                        Ok(started) => started,
                        Err(error) => {
                            let _ = started_sender.send(Err(anyhow::Error::new(error)));
                            return;
                        }
                    };
                let mut driver = make_driver(network);
                let _ = started_sender.send(Ok(bound));
                run(&mut driver, &mut inbox, &thread_stop, options).await;
                driver.stop();
            });
            // The runtime drops here, on its own thread: the node's sockets close.
        })
        .with_context(|| format!("starting the thread of {me}"))?;
    let mut node = NodeThread {
        address: None,
        stop,
        thread: Some(thread),
    };
    match started.await {
        Ok(Ok(address)) => {
            node.address = address;
            Ok(node)
        }
        Ok(Err(error)) => Err(error.context(match listen {
            Some(listen) => format!("{me} cannot listen on {listen}"),
            None => format!("{me} cannot start its network"),
        })),
        Err(_) => Err(node
            .join_reporting_panic()
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("{me} stopped before its network started"))),
    }
}

/// The loop: events in batches, ticks, then the batch's effects, until `stop` is set or
/// every sender is gone.
pub async fn run(
    driver: &mut impl Driver,
    inbox: &mut mpsc::UnboundedReceiver<Inbound>,
    stop: &AtomicBool,
    options: LoopOptions,
) {
    assert!(options.catch_up_ticks_max > 0, "a loop that never ticks");
    let mut next_tick = Instant::now() + options.tick;
    while !stop.load(Ordering::Acquire) {
        match tokio::time::timeout_at(next_tick, inbox.recv()).await {
            Ok(Some(event)) => {
                driver.handle(event);
                for _ in 0..options.batch_events_max {
                    match inbox.try_recv() {
                        Ok(event) => driver.handle(event),
                        Err(_) => break,
                    }
                }
            }
            Ok(None) => break,
            Err(_) => {} // the next tick is due
        }
        let now = Instant::now();
        let mut ticks = 0;
        while now >= next_tick && ticks < options.catch_up_ticks_max {
            driver.tick();
            next_tick += options.tick;
            ticks += 1;
        }
        if now >= next_tick {
            next_tick = now + options.tick; // fell far behind (paused): do not replay the past
        }
        driver.end_batch();
    }
}

impl NodeThread {
    /// Where the node listens (None for a node started without a listener).
    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// Asks the loop to stop after the batch at hand, and waits until the thread has
    /// ended and the node's sockets are closed.
    pub fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// [`NodeThread::stop_and_join`] without blocking the calling runtime.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Waits until the node stops, which it does only when stopped or when its driver
    /// panics (a broken invariant: an error naming it).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let outcome = tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("waiting for the node's thread")?;
        outcome.map_err(|panic| {
            anyhow::anyhow!(
                "the node stopped: {}",
                common::panic_message(panic.as_ref())
            )
        })
    }

    fn join_reporting_panic(&mut self) -> anyhow::Result<()> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Err(panic)) => Err(anyhow::anyhow!(
                "the node stopped while starting: {}",
                common::panic_message(panic.as_ref())
            )),
            _ => Ok(()),
        }
    }
}

impl Drop for NodeThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::message::Message;

    /// Counts what the loop hands it.
    #[derive(Default)]
    struct Counting {
        events: Vec<Inbound>,
        ticks: u32,
        batches: u32,
        events_at_batch_end: Vec<usize>,
    }

    impl Driver for Counting {
        fn handle(&mut self, event: Inbound) {
            self.events.push(event);
        }
        fn tick(&mut self) {
            self.ticks += 1;
        }
        fn end_batch(&mut self) {
            self.batches += 1;
            self.events_at_batch_end.push(self.events.len());
        }
    }

    fn options() -> LoopOptions {
        LoopOptions {
            tick: Duration::from_millis(10),
            catch_up_ticks_max: 3,
            batch_events_max: 100,
        }
    }

    fn event(read_id: u64) -> Inbound {
        Inbound::Message(NodeId::proposer(1), Message::ReadIndex { read_id })
    }

    #[tokio::test]
    async fn queued_events_form_one_batch_and_the_loop_ends_when_senders_are_gone() {
        let (sender, mut inbox) = mpsc::unbounded_channel();
        for read_id in 0..250 {
            sender.send(event(read_id)).unwrap();
        }
        drop(sender);
        let mut driver = Counting::default();
        run(&mut driver, &mut inbox, &AtomicBool::new(false), options()).await;
        assert_eq!(driver.events.len(), 250);
        // The first event woke the loop and 100 more joined it; then 101 and the last 48.
        assert_eq!(driver.events_at_batch_end, vec![101, 202, 250]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_loop_ticks_on_time_and_stops_when_asked() {
        let (sender, mut inbox) = mpsc::unbounded_channel::<Inbound>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = Arc::clone(&stop);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(105)).await;
            stopper.store(true, Ordering::Release);
        });
        let mut driver = Counting::default();
        run(&mut driver, &mut inbox, &stop, options()).await;
        drop(sender);
        assert!(driver.events.is_empty());
        assert!((9..=11).contains(&driver.ticks), "ticks: {}", driver.ticks);
    }

    /// A driver whose first batch stalls the thread 100 ms (ten ticks), as a long sync
    /// would, and that stops the loop after its third batch.
    struct Stalling {
        ticks_at_batch_end: Vec<u32>,
        ticks: u32,
        stop: Arc<AtomicBool>,
    }

    impl Driver for Stalling {
        fn handle(&mut self, _event: Inbound) {}
        fn tick(&mut self) {
            self.ticks += 1;
        }
        fn end_batch(&mut self) {
            self.ticks_at_batch_end.push(self.ticks);
            match self.ticks_at_batch_end.len() {
                1 => std::thread::sleep(Duration::from_millis(100)),
                3 => self.stop.store(true, Ordering::Release),
                _ => {}
            }
        }
    }

    #[tokio::test]
    async fn after_a_stall_at_most_the_catch_up_ticks_are_replayed() {
        let (sender, mut inbox) = mpsc::unbounded_channel();
        sender.send(event(1)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut driver = Stalling {
            ticks_at_batch_end: Vec::new(),
            ticks: 0,
            stop: Arc::clone(&stop),
        };
        run(&mut driver, &mut inbox, &stop, options()).await;
        drop(sender);
        let ticks = &driver.ticks_at_batch_end;
        assert_eq!(
            ticks[1] - ticks[0],
            3,
            "ten ticks were due, three replayed: {ticks:?}"
        );
    }
}
