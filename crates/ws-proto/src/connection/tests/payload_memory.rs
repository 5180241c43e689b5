//! What a received payload keeps alive: an application may hold messages
//! for as long as it likes, so a small payload must not hold the read
//! buffer it arrived in.

use bytes::{Bytes, BytesMut};

use super::*;

fn binary_payload(event: Event) -> Bytes {
    match event {
        Event::Message(Message::Binary(b)) => b,
        other => panic!("expected a binary message, got {other:?}"),
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

#[test]
fn small_payloads_are_copied_out_of_the_read_buffer() {
    let mut conn = Connection::new(Role::Server, Default::default());
    let mut input = Vec::new();
    for len in [0, 16, 4096] {
        input.extend(peer_frame(Role::Server, 0x82, &pattern(len)));
    }
    // Half of another frame stays in the buffer, which stays alive.
    input.extend_from_slice(&peer_frame(Role::Server, 0x82, &[1; 100])[..50]);
    conn.receive_data(&input);
    for len in [0, 16, 4096] {
        let payload = binary_payload(conn.poll_event().unwrap().unwrap());
        assert_eq!(payload, pattern(len));
        // (An empty payload is a static empty `Bytes`: it holds nothing.)
        assert!(
            len == 0 || payload.is_unique(),
            "{len} B payload shares the buffer"
        );
    }
    assert_eq!(conn.poll_event().unwrap(), None);
}

#[test]
fn a_large_payload_is_split_off_the_buffer_without_a_copy() {
    let mut conn = Connection::new(Role::Server, Default::default());
    let mut input = peer_frame(Role::Server, 0x82, &pattern(10_000));
    input.extend(peer_frame(Role::Server, 0x82, b"next"));
    conn.receive_data(&input);
    let payload = binary_payload(conn.poll_event().unwrap().unwrap());
    assert_eq!(payload, pattern(10_000));
    assert!(!payload.is_unique(), "shares the read buffer's allocation");
    let next = binary_payload(conn.poll_event().unwrap().unwrap());
    assert_eq!(next, &b"next"[..]);
}

/// What ws-net does with `read_hint`: a buffer of the frame's size, or a
/// little more (so that the read that completes the frame does not fill
/// it), read into in pieces, becomes the payload itself.
#[test]
fn a_buffer_sized_to_the_frame_becomes_the_payload() {
    for room in [0, 256] {
        let mut conn = Connection::new(Role::Server, Default::default());
        let frame = peer_frame(Role::Server, 0x82, &pattern(100_000));
        conn.receive_data(&frame[..3000]);
        assert_eq!(conn.poll_event().unwrap(), None);
        let hint = conn.read_hint();
        let buf = conn.read_buffer();
        assert_eq!(buf.len() + hint, 100_000, "the header was consumed");
        let mut sized = BytesMut::with_capacity(buf.len() + hint + room);
        sized.extend_from_slice(buf);
        *buf = sized;
        let base = buf.as_ptr();
        for piece in frame[3000..].chunks(30_000) {
            assert_eq!(conn.poll_event().unwrap(), None);
            conn.read_buffer().extend_from_slice(piece);
        }
        let payload = binary_payload(conn.poll_event().unwrap().unwrap());
        assert_eq!(payload, pattern(100_000));
        assert_eq!(payload.as_ptr(), base, "no copy (room {room})");
        assert!(payload.is_unique(), "room {room}");
        assert_eq!(
            conn.read_buffer().capacity(),
            0,
            "the buffer went with it (room {room})"
        );
    }
}

/// When the room after a frame holds the start of the next one, the
/// payload is split off and the rest stays for the next frame.
#[test]
fn a_frame_followed_by_more_input_is_split_off() {
    let mut conn = Connection::new(Role::Server, Default::default());
    let mut input = peer_frame(Role::Server, 0x82, &pattern(10_000));
    let next = peer_frame(Role::Server, 0x82, b"next");
    input.extend_from_slice(&next[..3]);
    let buf = conn.read_buffer();
    *buf = BytesMut::with_capacity(input.len() + 100);
    buf.extend_from_slice(&input);
    let payload = binary_payload(conn.poll_event().unwrap().unwrap());
    assert_eq!(payload, pattern(10_000));
    assert_eq!(conn.read_buffer().len(), 3, "the next frame's start stays");
    conn.receive_data(&next[3..]);
    let payload = binary_payload(conn.poll_event().unwrap().unwrap());
    assert_eq!(payload, &b"next"[..]);
}

/// A buffer an I/O layer sized for a larger frame than came: the payload,
/// even with nothing after it, is copied out rather than keep a buffer of
/// more than twice its size alive.
#[test]
fn a_payload_in_a_much_larger_buffer_is_copied_out() {
    let mut conn = Connection::new(Role::Server, Default::default());
    let buf = conn.read_buffer();
    *buf = BytesMut::with_capacity(100_000);
    buf.extend_from_slice(&peer_frame(Role::Server, 0x82, &pattern(30_000)));
    let payload = binary_payload(conn.poll_event().unwrap().unwrap());
    assert_eq!(payload, pattern(30_000));
    assert!(payload.is_unique(), "a copy of its own");
    assert!(
        conn.read_buffer().capacity() > 60_000,
        "the buffer stays for the next read"
    );
}
