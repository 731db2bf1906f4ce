//! Framing on the wire: each message is a 4-byte big-endian length followed by the
//! message encoded with `postcard` (compact, varint-based, serde-driven).

use crate::message::Message;
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
mod tests {
    use super::*;
    use crate::ballot::Ballot;
    use crate::node::NodeId;

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
