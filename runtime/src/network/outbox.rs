//! The bytes waiting to go out on one connection, and who may write them.
//!
//! At most one party writes to the socket at a time, so frames never interleave: the
//! thread that finds the outbox idle writes it directly (non-blocking); if the socket
//! cannot take everything, the rest stays in `unsent` and the connection's writer task
//! becomes the writer until the outbox is empty again.
//!
//! Senders append encoded frames to `pending`. Whoever writes turns `pending` into bytes
//! for the wire: as they are in plaintext, or encrypted by the connection's TLS session
//! (records are produced and written by one writer at a time, so they stay in order).

use super::TlsSession;
use crate::wire::encode_frame;
use common::message::Message;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes queued per connection before further messages are dropped (a peer that stopped
/// reading must not grow our memory without bound).
const OUTBOX_LIMIT_BYTES: usize = 256 << 20;
/// An idle outbox keeps at most this much buffer capacity.
const OUTBOX_KEPT_CAPACITY_BYTES: usize = 1 << 20;

pub(super) struct Outbox {
    state: Mutex<OutboxState>,
    /// Wakes the writer task when it must take over.
    writer_needed: tokio::sync::Notify,
    socket: tokio::net::tcp::OwnedWriteHalf,
    /// The connection's TLS session, shared with its reader; None in plaintext.
    tls: Option<TlsSession>,
}

#[derive(Default)]
struct OutboxState {
    /// Encoded frames not yet handed to the wire (plaintext), in order.
    pending: Vec<u8>,
    /// Bytes for the wire that a full socket did not take yet; they go first.
    unsent: Vec<u8>,
    /// Someone is writing (a sender, or the writer task): others only append.
    writing: bool,
    /// The socket failed: the connection is closing and nothing more is accepted.
    closed: bool,
}

impl Outbox {
    pub(super) fn new(socket: tokio::net::tcp::OwnedWriteHalf, tls: Option<TlsSession>) -> Outbox {
        Outbox {
            state: Mutex::new(OutboxState::default()),
            writer_needed: tokio::sync::Notify::new(),
            socket,
            tls,
        }
    }

    /// Appends already-encoded frames; false if the connection closed or the outbox is full.
    pub(super) fn append(&self, frames: &[u8]) -> bool {
        let mut state = self.state.lock().unwrap();
        if state.closed || state.queued_bytes() + frames.len() > OUTBOX_LIMIT_BYTES {
            return false;
        }
        state.pending.extend_from_slice(frames);
        true
    }

    /// Appends one message, encoded.
    pub(super) fn append_message(&self, message: &Message) -> bool {
        self.append_locked(message).is_some()
    }

    /// Appends one message, encoded, and returns the still locked state; None (nothing
    /// appended) if the connection closed or the outbox is full.
    fn append_locked(&self, message: &Message) -> Option<MutexGuard<'_, OutboxState>> {
        let mut state = self.state.lock().unwrap();
        if state.closed || state.queued_bytes() > OUTBOX_LIMIT_BYTES {
            return None;
        }
        encode_frame(message, &mut state.pending);
        Some(state)
    }

    /// Appends one message and, unless someone is writing already, makes the writer task
    /// the writer: it writes after yielding once, so that other tasks can append first.
    pub(super) fn append_and_hand_to_writer(&self, message: &Message) -> bool {
        let wake_writer = match self.append_locked(message) {
            Some(mut state) => !std::mem::replace(&mut state.writing, true),
            None => return false,
        };
        if wake_writer {
            self.writer_needed.notify_one();
        }
        true
    }

    /// Whether anything waits to be written: frames, unsent bytes, or TLS records the
    /// session produced by itself (a key update).
    fn has_output(&self, state: &OutboxState) -> bool {
        !state.pending.is_empty()
            || !state.unsent.is_empty()
            || self
                .tls
                .as_ref()
                .is_some_and(|tls| tls.lock().unwrap().wants_write())
    }

    /// Everything there is to write, as bytes for the wire: the unsent rest first, then the
    /// pending frames (encrypted, under TLS).
    fn take_wire_bytes(&self, state: &mut OutboxState) -> io::Result<Vec<u8>> {
        let mut bytes = std::mem::take(&mut state.unsent);
        match &self.tls {
            None if bytes.is_empty() => bytes = std::mem::take(&mut state.pending),
            None => {
                bytes.extend_from_slice(&state.pending);
                state.pending.clear();
            }
            Some(tls) => {
                let mut tls = tls.lock().unwrap();
                if !state.pending.is_empty() {
                    tls.writer().write_all(&state.pending)?;
                    state.pending.clear();
                    if state.pending.capacity() > OUTBOX_KEPT_CAPACITY_BYTES {
                        state.pending = Vec::new();
                    }
                }
                while tls.wants_write() {
                    tls.write_tls(&mut bytes)?;
                }
            }
        }
        Ok(bytes)
    }

    /// Writes what is pending from this thread, without blocking; hands any rest to the
    /// writer task. Does nothing if someone else is writing (they will write it).
    pub(super) fn flush(&self) {
        let mut bytes = {
            let mut state = self.state.lock().unwrap();
            if state.writing || state.closed || !self.has_output(&state) {
                return;
            }
            match self.take_wire_bytes(&mut state) {
                Ok(bytes) => {
                    state.writing = true;
                    bytes
                }
                Err(error) => {
                    tracing::debug!(%error, "encryption failed");
                    state.close();
                    return;
                }
            }
        };
        let mut written = 0;
        let mut failed = false;
        while written < bytes.len() {
            match self.socket.try_write(&bytes[written..]) {
                Ok(0) => {
                    failed = true; // a socket that takes nothing will never take more
                    break;
                }
                Ok(count) => written += count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    tracing::debug!(%error, "write failed");
                    failed = true;
                    break;
                }
            }
        }
        let mut state = self.state.lock().unwrap();
        if failed {
            state.close();
            return;
        }
        if written < bytes.len() {
            // The socket is full: the rest goes first, then what others appended meanwhile.
            bytes.drain(..written);
            state.unsent = bytes;
            drop(state);
            self.writer_needed.notify_one();
        } else if self.has_output(&state) {
            // Others appended while we wrote: the writer task writes it, so that this
            // thread does not loop on behalf of everyone.
            drop(state);
            self.writer_needed.notify_one();
        } else {
            state.writing = false;
            if self.tls.is_none()
                && state.pending.capacity() == 0
                && bytes.capacity() <= OUTBOX_KEPT_CAPACITY_BYTES
            {
                bytes.clear();
                state.pending = bytes; // keep the allocation for the next frames
            }
        }
    }

    pub(super) fn close(&self) {
        self.state.lock().unwrap().close();
    }
}

impl OutboxState {
    fn queued_bytes(&self) -> usize {
        self.pending.len() + self.unsent.len()
    }

    fn close(&mut self) {
        self.closed = true;
        self.writing = false;
        self.pending = Vec::new();
        self.unsent = Vec::new();
    }
}

/// The connection's writer: takes over the outbox when a sender could not write all of it
/// without blocking, and writes until the outbox is empty.
pub(super) async fn write_loop(outbox: Arc<Outbox>) {
    loop {
        outbox.writer_needed.notified().await;
        // Tasks woken together with this one append before it writes (see `send_soon`).
        tokio::task::yield_now().await;
        loop {
            let bytes = {
                let mut state = outbox.state.lock().unwrap();
                if state.closed {
                    return;
                }
                if !outbox.has_output(&state) {
                    state.writing = false;
                    break;
                }
                state.writing = true;
                match outbox.take_wire_bytes(&mut state) {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        tracing::debug!(%error, "encryption failed");
                        state.close();
                        return;
                    }
                }
            };
            if let Err(error) = write_all(&outbox.socket, &bytes).await {
                tracing::debug!(%error, "write failed");
                outbox.close();
                return;
            }
        }
    }
}

async fn write_all(socket: &tokio::net::tcp::OwnedWriteHalf, bytes: &[u8]) -> io::Result<()> {
    let mut written = 0;
    while written < bytes.len() {
        socket.writable().await?;
        match socket.try_write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(count) => written += count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
