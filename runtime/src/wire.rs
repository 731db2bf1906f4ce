//! Framing on the wire: each message is a 4-byte big-endian length followed by the
//! message encoded with `postcard` (compact, varint-based, serde-driven).

use common::message::Message;
use std::io;

/// Frames above this size are refused as corrupt (a Promise after a long outage is the
/// largest message and stays far below it).
pub const MAX_FRAME_BYTES: usize = 512 * 1024 * 1024;

/// Appends `message` as one frame to `buffer`.
pub fn encode_frame(message: &Message, buffer: &mut Vec<u8>) {
    let start = buffer.len();
    buffer.extend_from_slice(&[0u8; 4]);
    let encoded = postcard::to_extend(message, std::mem::take(buffer))
        .expect("encoding into a Vec cannot fail");
    *buffer = encoded;
    let length = (buffer.len() - start - 4) as u32;
    buffer[start..start + 4].copy_from_slice(&length.to_be_bytes());
}

/// Decodes a frame's payload.
pub fn decode_payload(payload: &[u8]) -> io::Result<Message> {
    postcard::from_bytes(payload).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("undecodable message: {error}"),
        )
    })
}

#[cfg(test)]
pub(crate) mod allocation {
    //! A global allocator for this crate's tests that records, per thread, the most bytes
    //! live at once since a mark, so a test can bound what one decode allocates.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Counting;

    thread_local! {
        static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
        static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
    }

    fn record(change: isize) {
        let _ = LIVE_BYTES.try_with(|live| {
            let now = live.get() + change;
            live.set(now);
            let _ = PEAK_BYTES.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    // SAFETY: every call is forwarded to the system allocator unchanged; the counters are
    // thread-local cells that never allocate.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            record(layout.size() as isize);
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
            record(-(layout.size() as isize));
            unsafe { System.dealloc(pointer, layout) }
        }
        unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            record(new_size as isize - layout.size() as isize);
            unsafe { System.realloc(pointer, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// Runs `work` and returns its result with the most bytes it had allocated at once.
    pub fn peak_bytes_of<T>(work: impl FnOnce() -> T) -> (T, usize) {
        let start = LIVE_BYTES.with(Cell::get);
        PEAK_BYTES.with(|peak| peak.set(start));
        let result = work();
        let peak = PEAK_BYTES.with(Cell::get);
        (result, (peak - start).max(0) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::allocation::peak_bytes_of;
    use super::*;
    use common::ballot::Ballot;
    use common::fuzzing::{self, Anchors, HUGE_LENGTH_VARINT};
    use common::node::NodeId;

    /// What one decode may allocate before it fails: serde caps the capacity it reserves
    /// from a length prefix at 1 MiB per sequence, and a message nests few sequences.
    const DECODE_PEAK_BYTES_MAX: usize = 8 * 1024 * 1024;

    fn encoded(message: &Message) -> Vec<u8> {
        postcard::to_allocvec(message).expect("encoding into a Vec cannot fail")
    }

    #[test]
    fn random_and_damaged_payloads_decode_to_errors_without_panics_or_huge_allocations() {
        let mut peak_seen = 0;
        fuzzing::fuzz("runtime::wire::decode_payload", 20_000, |random| {
            let valid = encoded(&fuzzing::message(random, &Anchors::default()));
            let decoded = decode_payload(&valid).map_err(|error| format!("valid: {error}"))?;
            if encoded(&decoded) != valid {
                return Err("a valid payload does not round-trip".into());
            }
            for _ in 0..8 {
                let damaged = fuzzing::mutate(random, &valid);
                let (_, peak) = peak_bytes_of(|| decode_payload(&damaged));
                peak_seen = peak_seen.max(peak);
                if peak > DECODE_PEAK_BYTES_MAX {
                    return Err(format!(
                        "decoding {} damaged bytes allocated {peak} bytes: {damaged:?}",
                        damaged.len()
                    ));
                }
            }
            Ok(())
        });
        eprintln!("largest allocation peak of one damaged decode: {peak_seen} bytes");
    }

    fn varint(mut number: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        while number >= 0x80 {
            bytes.push((number as u8) | 0x80);
            number >>= 7;
        }
        bytes.push(number as u8);
        bytes
    }

    #[test]
    fn a_crafted_huge_length_prefix_allocates_nothing_beyond_the_input_before_failing() {
        // postcard gives serde no size hint when a sequence claims more elements than bytes
        // remain, so a huge count reserves nothing: Promise (variant 2), ballot 1.1, then
        // u64::MAX entries.
        let mut payload = vec![2, 1, 1];
        payload.extend_from_slice(&HUGE_LENGTH_VARINT);
        let (outcome, peak) = peak_bytes_of(|| decode_payload(&payload));
        assert!(outcome.is_err());
        eprintln!("a Promise claiming u64::MAX entries allocated {peak} bytes before failing");
        assert!(peak <= 4096, "{peak} bytes");
        // A count the input could hold reserves at most 1 MiB (serde's cautious hint),
        // then decoding stops at the first element that is not there.
        let mut payload = vec![2, 1, 1];
        payload.extend(varint(1_000_000));
        payload.extend(vec![0xFF; 1_000_000]);
        let (outcome, peak) = peak_bytes_of(|| decode_payload(&payload));
        assert!(outcome.is_err());
        eprintln!("a Promise claiming 10^6 entries over 10^6 bad bytes allocated {peak} bytes");
        assert!(peak <= 1024 * 1024 + 4096, "{peak} bytes");
    }

    #[test]
    fn the_memory_a_decoded_message_takes_is_a_bounded_multiple_of_its_bytes() {
        // The densest entry on the wire: slot 0, ballot 0.0, a no-op, 4 bytes each. This is
        // the amplification a frame of MAX_FRAME_BYTES can reach (reported, not enforced).
        let entries: u64 = 100_000;
        let mut payload = encoded(&Message::AcceptedValues { entries: vec![] });
        payload.pop(); // the empty count
        payload.extend(varint(entries));
        payload.extend(vec![0; 4 * entries as usize]);
        let (outcome, peak) = peak_bytes_of(|| decode_payload(&payload));
        assert!(
            matches!(outcome, Ok(Message::AcceptedValues { ref entries }) if entries.len() == 100_000)
        );
        let factor = peak as f64 / payload.len() as f64;
        eprintln!(
            "{} bytes of no-op entries decode into {peak} bytes at peak: {factor:.1}x",
            payload.len()
        );
        assert!(factor < 64.0, "{factor}");
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let first = Message::Hello {
            node: NodeId::acceptor(3),
        };
        let second = Message::Prepare {
            ballot: Ballot::new(7, 2),
            from_slot: 42,
        };
        let mut buffer = Vec::new();
        encode_frame(&first, &mut buffer);
        encode_frame(&second, &mut buffer);
        let first_length = u32::from_be_bytes(buffer[0..4].try_into().unwrap()) as usize;
        assert_eq!(decode_payload(&buffer[4..4 + first_length]).unwrap(), first);
        let rest = &buffer[4 + first_length..];
        let second_length = u32::from_be_bytes(rest[0..4].try_into().unwrap()) as usize;
        assert_eq!(second_length, rest.len() - 4);
        assert_eq!(decode_payload(&rest[4..]).unwrap(), second);
    }
}
