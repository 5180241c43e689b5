//! Regressions found by the fuzz targets in `fuzz/`.

use ws_proto::handshake::{parse_request_head, ClientRequest, Limits};
use ws_proto::HandshakeError;

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
