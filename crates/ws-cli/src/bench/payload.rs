//! Payloads and their verification: every message carries its connection
//! and sequence number, and every echo is checked byte for byte.

use bytes::{Bytes, BytesMut};
use ws_net::{Message, Utf8Bytes};

/// Bytes at the start of a payload that name its connection and sequence.
const HEADER: usize = 16;

/// Payloads: a fixed pattern with a header naming the connection and the
/// sequence number (16 hex digits), so every message in flight differs.
pub(super) struct Payload {
    template: Bytes,
    pub(super) text: bool,
}

const PATTERN: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

impl Payload {
    pub(super) fn new(size: usize, text: bool) -> Self {
        let template: Vec<u8> = (0..size).map(|i| PATTERN[(i + i / 64) % 64]).collect();
        Self {
            template: template.into(),
            text,
        }
    }

    fn size(&self) -> usize {
        self.template.len()
    }

    /// The header: connection number and the low 32 bits of the sequence,
    /// in hex. Payloads shorter than the header keep its last digits.
    fn header(conn: u32, seq: u64) -> [u8; HEADER] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let v = (u64::from(conn) << 32) | (seq & 0xffff_ffff);
        let mut h = [0u8; HEADER];
        for (i, b) in h.iter_mut().enumerate() {
            *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
        h
    }

    /// A message and the bytes its echo must carry. Binary payloads reuse
    /// a buffer from `free` (one whose echo was verified: it holds the
    /// pattern) when there is one, so only the header is rewritten.
    pub(super) fn make(&self, conn: u32, seq: u64, free: &mut Vec<BytesMut>) -> (Message, Bytes) {
        let header = Self::header(conn, seq);
        let n = self.size().min(HEADER);
        let stamp = &header[HEADER - n..];
        if self.text {
            let mut s = String::with_capacity(self.size());
            s.push_str(std::str::from_utf8(stamp).expect("hex is ASCII"));
            s.push_str(std::str::from_utf8(&self.template[n..]).expect("the pattern is ASCII"));
            let text = Utf8Bytes::from(s);
            let expected = text.clone().into_bytes();
            (Message::Text(text), expected)
        } else {
            let mut buf = free
                .pop()
                .unwrap_or_else(|| BytesMut::from(&self.template[..]));
            buf[..n].copy_from_slice(stamp);
            let bytes = buf.freeze();
            (Message::Binary(bytes.clone()), bytes)
        }
    }
}

/// Check an echo against what was sent: type, length, every byte.
pub(super) fn verify(
    conn: u32,
    seq: u64,
    got: &[u8],
    got_text: bool,
    expected: &[u8],
    text: bool,
) -> Result<(), String> {
    let kind = |t: bool| if t { "text" } else { "binary" };
    if got_text != text {
        return Err(format!(
            "connection {conn}, message {seq}: sent {}, the echo is {}",
            kind(text),
            kind(got_text)
        ));
    }
    if got.len() != expected.len() {
        return Err(format!(
            "connection {conn}, message {seq}: sent {} bytes, the echo has {}",
            expected.len(),
            got.len()
        ));
    }
    if got != expected {
        let at = got
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "connection {conn}, message {seq}: the echo differs from what was sent at byte {at} \
             (0x{:02x}, expected 0x{:02x})",
            got[at], expected[at]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_differ_and_verify() {
        for text in [false, true] {
            for size in [0, 1, 4, 16, 17, 1000] {
                let p = Payload::new(size, text);
                let mut free = Vec::new();
                let (m1, e1) = p.make(3, 7, &mut free);
                let (_, e2) = p.make(3, 8, &mut free);
                assert_eq!(m1.len(), size);
                assert_eq!(m1.is_text(), text);
                assert_eq!(m1.as_payload(), &e1[..]);
                if size > 0 {
                    assert_ne!(e1, e2);
                }
                assert!(verify(3, 7, &e1, text, &e1, text).is_ok());
                if size > 0 {
                    assert!(verify(3, 7, &e2, text, &e1, text).is_err());
                    assert!(verify(3, 7, &e1[1..], text, &e1, text).is_err());
                }
                assert!(verify(3, 7, &e1, !text, &e1, text).is_err());
            }
        }
    }

    #[test]
    fn reused_buffer_is_restamped() {
        let p = Payload::new(64, false);
        let mut free = Vec::new();
        let (_, first) = p.make(1, 1, &mut free);
        free.push(first.try_into_mut().expect("unique"));
        let (_, reused) = p.make(1, 2, &mut free);
        let (_, fresh) = p.make(1, 2, &mut Vec::new());
        assert_eq!(reused, fresh);
    }
}
