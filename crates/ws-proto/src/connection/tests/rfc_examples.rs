//! The frame examples of RFC 6455 §5.7, decoded by the role that receives
//! them and encoded by the role that sends them.

use super::*;
use crate::{Config, DataKind, Fragment};

const HELLO_UNMASKED: [u8; 7] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
const HELLO_MASKED: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];
const HEL: [u8; 5] = [0x01, 0x03, 0x48, 0x65, 0x6c];
const LO: [u8; 4] = [0x80, 0x02, 0x6c, 0x6f];
const PING_UNMASKED: [u8; 7] = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
const PONG_MASKED: [u8; 11] = [
    0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];

fn binary_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

/// `0x82 0x7E 0x0100 [256 bytes]` and `0x82 0x7F 0x0000000000010000 [64 KiB]`.
fn binary_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x82];
    match payload.len() {
        256 => out.extend_from_slice(&[0x7e, 0x01, 0x00]),
        65536 => out.extend_from_slice(&[0x7f, 0, 0, 0, 0, 0, 0x01, 0, 0]),
        n => unreachable!("no RFC example of {n} bytes"),
    }
    out.extend_from_slice(payload);
    out
}

/// A client frame: the expected first byte and length, a key, and a payload
/// that unmasks to `payload`.
fn assert_client_frame(bytes: &[u8], opcode: OpCode, payload: &[u8]) {
    let frames = parse_frames(bytes);
    assert_eq!(frames.len(), 1);
    let f = &frames[0];
    assert!(f.fin);
    assert_eq!(f.rsv, 0);
    assert_eq!(f.opcode, opcode);
    assert!(f.mask.is_some());
    assert_eq!(f.payload, payload);
    // The header is the server's with the mask bit set, then the key.
    let (header, n) = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: f.mask,
        payload_len: payload.len() as u64,
    }
    .encode();
    assert_eq!(&bytes[..n], &header[..n]);
    assert_eq!(bytes[1] & 0x80, 0x80);
    assert_eq!(bytes.len(), n + payload.len());
}

#[test]
fn single_frame_unmasked_text() {
    let mut client = Connection::new(Role::Client, Config::default());
    client.receive_data(&HELLO_UNMASKED);
    assert_eq!(poll_all(&mut client), [msg(Message::text("Hello"))]);

    let mut server = Connection::new(Role::Server, Config::default());
    server.send(Message::text("Hello")).unwrap();
    assert_eq!(drain(&mut server), HELLO_UNMASKED);
}

#[test]
fn single_frame_masked_text() {
    let mut server = Connection::new(Role::Server, Config::default());
    server.receive_data(&HELLO_MASKED);
    assert_eq!(poll_all(&mut server), [msg(Message::text("Hello"))]);

    let mut client = Connection::new(Role::Client, Config::default());
    let mut keys = Vec::new();
    for _ in 0..8 {
        client.send(Message::text("Hello")).unwrap();
        let bytes = drain(&mut client);
        assert_eq!(bytes[..2], [0x81, 0x85]);
        assert_client_frame(&bytes, OpCode::Text, b"Hello");
        keys.push(bytes[2..6].to_vec());
    }
    // §5.3: a fresh key for each frame.
    keys.dedup();
    assert!(keys.len() > 1, "the masking key never changes");
}

#[test]
fn fragmented_unmasked_text() {
    let mut client = Connection::new(Role::Client, Config::default());
    client.receive_data(&HEL);
    assert_eq!(poll_all(&mut client), []);
    client.receive_data(&LO);
    assert_eq!(poll_all(&mut client), [msg(Message::text("Hello"))]);

    // The same frames as fragments.
    let config = Config {
        deliver_fragments: true,
        ..Config::default()
    };
    let mut client = Connection::new(Role::Client, config);
    client.receive_data(&[HEL.as_slice(), &LO].concat());
    let fragment = |data: &'static [u8], fin| {
        Event::Fragment(Fragment {
            kind: DataKind::Text,
            data: data.into(),
            fin,
        })
    };
    assert_eq!(
        poll_all(&mut client),
        [fragment(b"Hel", false), fragment(b"lo", true)]
    );

    // Sent piece by piece...
    let mut server = Connection::new(Role::Server, Config::default());
    server
        .send_fragment(Fragment {
            kind: DataKind::Text,
            data: "Hel".into(),
            fin: false,
        })
        .unwrap();
    server
        .send_fragment(Fragment {
            kind: DataKind::Text,
            data: "lo".into(),
            fin: true,
        })
        .unwrap();
    assert_eq!(drain(&mut server), [HEL.as_slice(), &LO].concat());

    // ...or split by `fragment_size`.
    let config = Config {
        fragment_size: 3,
        ..Config::default()
    };
    let mut server = Connection::new(Role::Server, config);
    server.send(Message::text("Hello")).unwrap();
    assert_eq!(drain(&mut server), [HEL.as_slice(), &LO].concat());
}

#[test]
fn unmasked_ping_and_masked_pong() {
    // A client receives the unmasked ping, sees it, and answers with a
    // masked pong carrying the same body.
    let mut client = Connection::new(Role::Client, Config::default());
    client.receive_data(&PING_UNMASKED);
    assert_eq!(poll_all(&mut client), [msg(Message::Ping("Hello".into()))]);
    let pong = drain(&mut client);
    assert_eq!(pong[..2], [0x8a, 0x85]);
    assert_client_frame(&pong, OpCode::Pong, b"Hello");

    // The server decodes the RFC's masked pong.
    let mut server = Connection::new(Role::Server, Config::default());
    server.receive_data(&PONG_MASKED);
    assert_eq!(poll_all(&mut server), [msg(Message::Pong("Hello".into()))]);
    assert_eq!(drain(&mut server), [], "a pong is not answered");

    // A server's ping is exactly the RFC's bytes.
    server.send(Message::Ping("Hello".into())).unwrap();
    assert_eq!(drain(&mut server), PING_UNMASKED);

    // A client's pong, sent by hand, has the RFC's structure.
    client.send(Message::Pong("Hello".into())).unwrap();
    assert_client_frame(&drain(&mut client), OpCode::Pong, b"Hello");
}

#[test]
fn binary_256_bytes_single_unmasked_frame() {
    check_binary_example(256);
}

#[test]
fn binary_64_kib_single_unmasked_frame() {
    check_binary_example(64 * 1024);
}

fn check_binary_example(len: usize) {
    let payload = binary_payload(len);
    let wire = binary_frame(&payload);

    let mut client = Connection::new(Role::Client, Config::default());
    client.receive_data(&wire);
    assert_eq!(
        poll_all(&mut client),
        [msg(Message::binary(payload.clone()))]
    );

    let mut server = Connection::new(Role::Server, Config::default());
    server.send(Message::binary(payload.clone())).unwrap();
    assert_eq!(server.buffered_amount(), wire.len());
    assert_eq!(drain(&mut server), wire);

    let mut client = Connection::new(Role::Client, Config::default());
    client.send(Message::binary(payload.clone())).unwrap();
    let bytes = drain(&mut client);
    assert_eq!(bytes[0], 0x82);
    assert_eq!(bytes[1], 0x80 | wire[1]);
    assert_client_frame(&bytes, OpCode::Binary, &payload);
    // And a server reads the client's frame back.
    let mut server = Connection::new(Role::Server, Config::default());
    server.receive_data(&bytes);
    assert_eq!(poll_all(&mut server), [msg(Message::binary(payload))]);
}
