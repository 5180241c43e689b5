//! Regressions found by the fuzz targets in `fuzz/`.

use ws_proto::bytes::Buf;
use ws_proto::handshake::{parse_request_head, ClientRequest, Limits};
use ws_proto::{Config, Connection, HandshakeError, Message, Role, State};

/// handshake_request: a head that passes `max_head_bytes` and is malformed
/// only after the limit. A server reading it in pieces fails with
/// `HeadTooLarge` as soon as the buffer passes the limit; parsing the whole
/// buffer at once gave `Malformed` instead. The outcome must not depend on
/// how the bytes arrive.
#[test]
fn request_error_past_the_limit_is_head_too_large_however_it_arrives() {
    let mut limits = Limits::default();
    limits.max_head_bytes = 64;
    let mut raw = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nX: ".to_vec();
    raw.extend_from_slice(&[b'a'; 60]);
    raw.extend_from_slice(b"\r\nBad Name: x\r\n\r\n");
    assert!(raw.len() > 64);
    for end in 0..=raw.len() {
        match parse_request_head(&raw[..end], &limits) {
            Ok(None) => assert!(end <= 64, "incomplete at {end} bytes"),
            Err(HandshakeError::HeadTooLarge { limit: 64 }) => assert!(end > 64),
            other => panic!("prefix of {end} bytes: {other:?}"),
        }
    }
}

/// handshake_response: the same for the client, with too many headers
/// after the limit (`TooManyHeaders` at once, `HeadTooLarge` in pieces).
#[test]
fn response_error_past_the_limit_is_head_too_large_however_it_arrives() {
    let mut limits = Limits::default();
    limits.max_head_bytes = 40;
    limits.max_headers = 1;
    let (_, hs) = ClientRequest::new("ws://example.com/".parse().unwrap())
        .unwrap()
        .limits(limits)
        .into_handshake();
    let raw =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    for end in 0..=raw.len() {
        match hs.parse_response_head(&raw[..end]) {
            Ok(None) => assert!(end <= 40, "incomplete at {end} bytes"),
            Err(HandshakeError::HeadTooLarge { limit: 40 }) => assert!(end > 40),
            other => panic!("prefix of {end} bytes: {other:?}"),
        }
    }
}

/// server_connection: a pong held back by the backlog counted in
/// `buffered_amount` after the connection closed, although it can never be
/// sent then: `wants_transport_closed` said everything was written while
/// `buffered_amount` still reported the pong.
#[test]
fn held_back_pong_is_not_buffered_once_closed() {
    // A masked ping with payload "ab", and a masked close without status.
    let ping = [0x89, 0x82, 1, 2, 3, 4, b'a' ^ 1, b'b' ^ 2];
    let close = [0x88, 0x80, 1, 2, 3, 4];
    for end_by_close in [false, true] {
        let mut config = Config::default();
        config.pong_backlog_threshold = 2;
        let mut conn = Connection::new(Role::Server, config);
        conn.send(Message::binary(vec![0u8; 100])).unwrap();
        conn.receive_data(&ping);
        assert!(conn.poll_event().unwrap().is_some());
        // The pong waits behind the 102 bytes queued, and counts.
        assert_eq!(conn.buffered_amount(), 102 + 4);
        if end_by_close {
            conn.receive_data(&close);
            assert!(conn.poll_event().unwrap().is_some());
        } else {
            conn.receive_eof();
            assert!(conn.poll_event().is_err());
        }
        assert_eq!(conn.state(), State::Closed);
        let out = conn.transmit();
        let n = out.remaining();
        out.advance(n);
        assert!(conn.wants_transport_closed());
        assert_eq!(
            conn.buffered_amount(),
            0,
            "closed by close frame: {end_by_close}"
        );
    }
}
