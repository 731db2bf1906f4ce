//! The queue between a node's network and its driver thread: any thread pushes, the one
//! driver takes everything queued at once.
//!
//! A driver handles events in batches (the acceptor shares one fsync among a whole batch),
//! so it wants "all that is queued now" in one step, and it must sleep without burning
//! the CPU when nothing is queued. `std::sync::mpsc` hands out one event per call and,
//! before it sleeps, spins and yields the processor several times: on two cores shared by
//! eight processes those yields were most of the context switches of an idle-ish node.
//! Here the driver takes the whole queue under one lock and sleeps on a condition variable
//! at once; a push wakes it only if it sleeps.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A multi-producer queue drained in batches by one consumer.
pub struct Inbox<T> {
    state: Mutex<InboxState<T>>,
    /// Signalled when an item arrives while the consumer sleeps.
    arrived: Condvar,
}

struct InboxState<T> {
    items: Vec<T>,
    /// The consumer sleeps and must be woken by the next push.
    consumer_sleeps: bool,
    /// The consumer stopped: pushes are dropped.
    closed: bool,
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Inbox {
            state: Mutex::new(InboxState {
                items: Vec::new(),
                consumer_sleeps: false,
                closed: false,
            }),
            arrived: Condvar::new(),
        }
    }
}

impl<T> Inbox<T> {
    /// An empty inbox.
    pub fn new() -> Self {
        Inbox::default()
    }

    fn lock(&self) -> MutexGuard<'_, InboxState<T>> {
        // Pushing and draining leave the queue consistent whatever panics elsewhere.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item`; dropped if the consumer has closed the inbox.
    pub fn push(&self, item: T) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.items.push(item);
        if state.consumer_sleeps {
            state.consumer_sleeps = false;
            drop(state);
            self.arrived.notify_one();
        }
    }

    /// Waits until at least one item is queued or `timeout` has passed, then moves up to
    /// `limit` items, oldest first, to the end of `batch`. Returns how many it moved (0 on
    /// a timeout).
    pub fn take(&self, batch: &mut Vec<T>, limit: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while state.items.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                state.consumer_sleeps = false;
                return 0;
            }
            state.consumer_sleeps = true;
            state = self
                .arrived
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.consumer_sleeps = false;
        let count = state.items.len().min(limit);
        if count == state.items.len() && batch.is_empty() {
            // Swap the buffers: no copy, and both allocations are reused.
            std::mem::swap(&mut state.items, batch);
        } else {
            batch.extend(state.items.drain(..count));
        }
        count
    }

    /// Stops accepting items (the consumer is gone) and drops those queued.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.items = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn items_from_many_threads_arrive_once_each_and_in_order_per_thread() {
        let inbox = Arc::new(Inbox::new());
        let producers: Vec<_> = (0..4u64)
            .map(|producer| {
                let inbox = Arc::clone(&inbox);
                std::thread::spawn(move || {
                    for sequence in 0..10_000u64 {
                        inbox.push((producer, sequence));
                    }
                })
            })
            .collect();
        let mut next = [0u64; 4];
        let mut batch = Vec::new();
        while next.iter().sum::<u64>() < 40_000 {
            batch.clear();
            inbox.take(&mut batch, 1000, Duration::from_secs(10));
            assert!(batch.len() <= 1000, "a batch respects its limit");
            for (producer, sequence) in batch.drain(..) {
                assert_eq!(sequence, next[producer as usize], "per-producer order");
                next[producer as usize] += 1;
            }
        }
        for producer in producers {
            producer.join().unwrap();
        }
    }

    #[test]
    fn take_times_out_on_an_empty_inbox_and_a_closed_inbox_drops_pushes() {
        let inbox: Inbox<u32> = Inbox::new();
        let mut batch = Vec::new();
        let started = Instant::now();
        assert_eq!(inbox.take(&mut batch, 10, Duration::from_millis(30)), 0);
        assert!(started.elapsed() >= Duration::from_millis(30));
        inbox.close();
        inbox.push(7);
        assert_eq!(inbox.take(&mut batch, 10, Duration::from_millis(1)), 0);
    }

    #[test]
    fn a_sleeping_consumer_wakes_when_an_item_arrives() {
        let inbox = Arc::new(Inbox::new());
        let pusher = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                inbox.push(1u32);
            })
        };
        let mut batch = Vec::new();
        let started = Instant::now();
        assert_eq!(inbox.take(&mut batch, 10, Duration::from_secs(30)), 1);
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(batch, vec![1]);
        pusher.join().unwrap();
    }
}
