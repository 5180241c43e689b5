//! Tests of the connection state machine, through its public API: the
//! examples of RFC 6455 §5.7, every way a peer can fail the connection, the
//! closing handshake, pings, and the order of what is sent and received.
//!
//! The property tests (any messages, any chunking) are in `tests/roundtrip.rs`.

mod closing;
mod errors;
mod payload_memory;
mod rfc_examples;
mod timers;

use bytes::Buf;

use crate::frame::{apply_mask, FrameHeader, OpCode};
use crate::{CloseFrame, Connection, Event, Message, Role};

/// The masking key of the RFC's examples (§5.7).
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Encode a frame by hand, so that a test can build what no well-behaved
/// encoder would: `b0` is the first byte as on the wire (FIN, RSV, opcode).
/// The length uses the minimal encoding.
fn raw_frame(b0: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            let start = out.len();
            out.extend_from_slice(payload);
            apply_mask(&mut out[start..], key);
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A frame as the peer of `role` sends it: masked towards a server,
/// unmasked towards a client.
fn peer_frame(role: Role, b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = match role {
        Role::Server => Some(KEY),
        Role::Client => None,
    };
    raw_frame(b0, mask, payload)
}

/// A close frame body: the code, big-endian, then the reason.
fn close_body(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(reason);
    body
}

/// Everything the connection queued for the transport, taken out of it.
fn drain(conn: &mut Connection) -> Vec<u8> {
    let out = conn.transmit();
    let mut all = Vec::with_capacity(out.remaining());
    while out.has_remaining() {
        let n = {
            let chunk = out.chunk();
            all.extend_from_slice(chunk);
            chunk.len()
        };
        out.advance(n);
    }
    all
}

/// A frame read back from bytes a connection produced, payload unmasked.
#[derive(Debug)]
struct SentFrame {
    fin: bool,
    rsv: u8,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: Vec<u8>,
}

/// Split bytes into whole frames; panics on anything else (a partial frame
/// at the end, a header that does not decode).
fn parse_frames(mut bytes: &[u8]) -> Vec<SentFrame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (h, n) = FrameHeader::decode(bytes)
            .expect("valid header")
            .expect("complete header");
        let len = usize::try_from(h.payload_len).unwrap();
        assert!(bytes.len() >= n + len, "truncated frame");
        let mut payload = bytes[n..n + len].to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key);
        }
        frames.push(SentFrame {
            fin: h.fin,
            rsv: h.rsv,
            opcode: h.opcode,
            mask: h.mask,
            payload,
        });
        bytes = &bytes[n + len..];
    }
    frames
}

/// Check that a frame sent by a connection of `role` is masked as the role
/// requires (§5.1, §5.3).
fn assert_masking(role: Role, frame: &SentFrame) {
    match role {
        Role::Client => assert!(frame.mask.is_some(), "client frames are masked"),
        Role::Server => assert!(frame.mask.is_none(), "server frames are not masked"),
    }
}

/// The close frame that `bytes` consists of, exactly: one final close frame,
/// masked as `role` must, with a valid body.
fn only_close_frame(role: Role, bytes: &[u8]) -> Option<CloseFrame> {
    let frames = parse_frames(bytes);
    assert_eq!(
        frames.len(),
        1,
        "expected exactly one frame, got {frames:?}"
    );
    let f = &frames[0];
    assert_eq!(f.opcode, OpCode::Close);
    assert!(f.fin);
    assert_eq!(f.rsv, 0);
    assert_masking(role, f);
    CloseFrame::parse(f.payload.clone().into()).expect("a valid close body")
}

/// Poll until more input is needed, panicking on an error.
fn poll_all(conn: &mut Connection) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(event) = conn.poll_event().expect("no protocol error") {
        events.push(event);
    }
    events
}

/// Shorthand for a message event.
fn msg(message: Message) -> Event {
    Event::Message(message)
}

/// `poll_message` reassembles whatever `deliver_fragments` says.
#[test]
fn poll_message_yields_whole_messages() {
    let config = crate::Config {
        deliver_fragments: true,
        ..crate::Config::default()
    };
    let mut conn = Connection::new(Role::Server, config);
    conn.receive_data(&peer_frame(Role::Server, 0x01, b"Hel"));
    conn.receive_data(&peer_frame(Role::Server, 0x89, b"p"));
    conn.receive_data(&peer_frame(Role::Server, 0x80, b"lo"));
    assert_eq!(conn.poll_message(), Ok(Some(Message::Ping("p".into()))));
    assert_eq!(conn.poll_message(), Ok(Some(Message::text("Hello"))));
    assert_eq!(conn.poll_message(), Ok(None));
}

/// `check_send` returns what `send` would, without queueing.
#[test]
fn check_send_agrees_with_send() {
    use crate::{CloseCode, SendError};
    let long = bytes::Bytes::from(vec![b'x'; 126]);
    let cases = [
        Message::text("t"),
        Message::binary(vec![1]),
        Message::Ping(long.clone()),
        Message::Pong(long),
        Message::Ping("p".into()),
        Message::Close(Some(CloseFrame::new(CloseCode::ABNORMAL, ""))),
        Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "r".repeat(124)))),
        Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "bye"))),
        Message::text("after close"),
    ];
    let mut conn = Connection::new(Role::Server, Default::default());
    for m in cases {
        let queued = conn.buffered_amount();
        let checked = conn.check_send(&m);
        assert_eq!(conn.buffered_amount(), queued, "nothing queued by a check");
        assert_eq!(conn.send(m.clone()), checked, "{m:?}");
    }
    assert_eq!(conn.check_send(&Message::text("x")), Err(SendError::Closed));
}
