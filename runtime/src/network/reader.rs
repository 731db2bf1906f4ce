//! Reading frames off one connection, with bounds a hostile peer cannot stretch.
//!
//! - A frame may announce at most the caller's limit: a few KiB before the peer is known
//!   (`Hello`), [`MAX_FRAME_BYTES`](crate::wire::MAX_FRAME_BYTES) after.
//! - The buffer grows with the bytes actually received (at most [`READ_CHUNK_BYTES`] ahead
//!   of them), never with the length a header announces, and shrinks back once a large
//!   frame has been handled.
//! - Once a frame has begun, the rest must arrive within [`FRAME_DEADLINE_BASE`] plus one
//!   second per [`FRAME_MIN_BYTES_PER_SECOND`] bytes it announced: a half-sent frame does
//!   not hold memory forever. Waiting *between* frames has no deadline (an idle peer is
//!   fine; a dead one is found by TCP keepalive).
//!
//! Under TLS, ciphertext is read from the socket and fed to the connection's session; the
//! frames are cut from the plaintext it yields.

use super::TlsSession;
use crate::wire::decode_payload;
use common::message::Message;
use std::io::{self, Read};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::Instant;

/// Bytes read from the socket at a time, and how far the buffer may grow ahead of the
/// bytes received.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A buffer larger than this is given back once it holds no partial frame.
const KEPT_CAPACITY_BYTES: usize = 1 << 20;
/// The time any frame has to arrive once its first byte has.
pub const FRAME_DEADLINE_BASE: Duration = Duration::from_secs(10);
/// The slowest rate a large frame may arrive at: its deadline grows by one second per
/// this many bytes it announces.
pub const FRAME_MIN_BYTES_PER_SECOND: u64 = 1 << 20;

pub(super) struct FrameReader {
    socket: OwnedReadHalf,
    tls: Option<TlsSession>,
    /// Received plaintext; `[start, buffer.len())` is not consumed yet.
    buffer: Vec<u8>,
    start: usize,
    /// Under TLS, ciphertext read from the socket before the session takes it.
    ciphertext: Vec<u8>,
    /// The TLS peer sent close_notify.
    peer_closed: bool,
    /// Reading made the TLS session want to write (a key update): flush the outbox.
    tls_output_waiting: bool,
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the peer closed the connection",
    )
}

impl FrameReader {
    pub(super) fn new(socket: OwnedReadHalf, tls: Option<TlsSession>) -> FrameReader {
        FrameReader {
            socket,
            ciphertext: if tls.is_some() {
                vec![0; READ_CHUNK_BYTES]
            } else {
                Vec::new()
            },
            tls,
            buffer: Vec::new(),
            start: 0,
            peer_closed: false,
            tls_output_waiting: false,
        }
    }

    fn available(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// Whether reading left TLS records to send (then the caller flushes the outbox).
    pub(super) fn take_tls_output_waiting(&mut self) -> bool {
        std::mem::take(&mut self.tls_output_waiting)
    }

    /// The next frame, announcing at most `limit` bytes, decoded.
    pub(super) async fn read_frame(&mut self, limit: usize) -> io::Result<Message> {
        if self.available() == 0 {
            self.fill().await?; // between frames: no deadline
        }
        let started = Instant::now();
        self.fill_before(4, started + FRAME_DEADLINE_BASE).await?;
        let header: [u8; 4] = self.buffer[self.start..self.start + 4]
            .try_into()
            .expect("four bytes are available");
        let length = u32::from_be_bytes(header) as usize;
        if length > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a frame of {length} bytes exceeds the limit of {limit} bytes"),
            ));
        }
        let deadline = started
            + FRAME_DEADLINE_BASE
            + Duration::from_secs(length as u64 / FRAME_MIN_BYTES_PER_SECOND);
        self.fill_before(4 + length, deadline).await?;
        let payload_start = self.start + 4;
        let message = decode_payload(&self.buffer[payload_start..payload_start + length]);
        self.start = payload_start + length;
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
            if self.buffer.capacity() > KEPT_CAPACITY_BYTES {
                self.buffer = Vec::new();
            }
        }
        message
    }

    async fn fill_before(&mut self, wanted: usize, deadline: Instant) -> io::Result<()> {
        while self.available() < wanted {
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "a frame did not arrive in time ({} of {wanted} bytes)",
                            self.available()
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Reads at least one more byte into the buffer.
    async fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 && self.buffer.capacity() - self.buffer.len() < READ_CHUNK_BYTES {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        match self.tls.clone() {
            None => {
                self.buffer.reserve(READ_CHUNK_BYTES);
                let spare = self.buffer.capacity() - self.buffer.len();
                let read = (&mut self.socket)
                    .take(spare.min(READ_CHUNK_BYTES) as u64)
                    .read_buf(&mut self.buffer)
                    .await?;
                if read == 0 {
                    return Err(eof());
                }
                Ok(())
            }
            Some(tls) => self.fill_from_tls(&tls).await,
        }
    }

    async fn fill_from_tls(&mut self, tls: &TlsSession) -> io::Result<()> {
        loop {
            if self.drain_plaintext(tls)? > 0 {
                return Ok(());
            }
            if self.peer_closed {
                return Err(eof());
            }
            let read = self.socket.read(&mut self.ciphertext).await?;
            if read == 0 {
                return Err(eof());
            }
            let mut session = tls.lock().unwrap();
            let mut received = &self.ciphertext[..read];
            let mut decrypted = 0;
            while !received.is_empty() {
                if session.read_tls(&mut received)? == 0 {
                    break;
                }
                let state = session
                    .process_new_packets()
                    .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
                self.peer_closed |= state.peer_has_closed();
                // The session holds little plaintext: take it before feeding more.
                decrypted += drain_session(&mut session, &mut self.buffer)?;
            }
            self.tls_output_waiting |= session.wants_write();
            if decrypted > 0 {
                return Ok(());
            }
        }
    }

    /// Takes the plaintext the session holds. Every record the session has read is
    /// processed already: by `fill_from_tls` right after reading it, and for records read
    /// with the end of the handshake by the network before this reader starts.
    fn drain_plaintext(&mut self, tls: &TlsSession) -> io::Result<usize> {
        let mut session = tls.lock().unwrap();
        drain_session(&mut session, &mut self.buffer)
    }
}

/// Moves the plaintext `session` has decrypted into `buffer`; returns how many bytes.
fn drain_session(session: &mut rustls::Connection, buffer: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let mut total = 0;
    loop {
        match session.reader().read(&mut chunk) {
            Ok(0) => return Ok(total),
            Ok(count) => {
                buffer.extend_from_slice(&chunk[..count]);
                total += count;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(total),
            Err(error) => return Err(error),
        }
    }
}
