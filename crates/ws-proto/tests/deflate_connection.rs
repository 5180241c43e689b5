//! permessage-deflate through whole connections: round trips, fragments,
//! context takeover, and the failures a peer can cause.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ws_proto::deflate::{client_accept, client_offer, server_negotiate, DeflateConfig, Negotiated};
use ws_proto::{CloseCode, Config, Connection, Event, Message, ProtocolError, Role};

fn pair(
    server_cfg: DeflateConfig,
    client_cfg: DeflateConfig,
    config: Config,
) -> (Connection, Connection) {
    let offer = client_offer(&client_cfg);
    let (answer, server_params) =
        server_negotiate([offer.to_str().unwrap()], &server_cfg).expect("server accepts");
    let client_params = client_accept([answer.to_str().unwrap()], &client_cfg)
        .unwrap()
        .expect("client accepts");
    let mut client = Connection::new(Role::Client, config.clone());
    client.set_deflate(client_params);
    let mut server = Connection::new(Role::Server, config);
    server.set_deflate(server_params);
    (client, server)
}

fn drain(from: &mut Connection) -> Bytes {
    let out = from.transmit();
    out.copy_to_bytes(out.remaining())
}

fn messages(to: &mut Connection, bytes: &[u8]) -> Vec<Message> {
    to.receive_data(bytes);
    let mut got = Vec::new();
    while let Some(ev) = to.poll_event().unwrap() {
        match ev {
            Event::Message(m) => got.push(m),
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

fn json(i: usize) -> String {
    format!(
        r#"{{"id":{i},"type":"quote","symbol":"ACME","bid":"101.25","ask":"101.27","venue":"XNAS"}}"#
    )
}

#[test]
fn compressed_round_trip_both_ways_with_takeover() {
    let (mut client, mut server) = pair(
        DeflateConfig::default(),
        DeflateConfig::default(),
        Config::default(),
    );
    let mut wire_sizes = Vec::new();
    for i in 0..20 {
        client.send(Message::text(json(i))).unwrap();
        let wire = drain(&mut client);
        assert_eq!(wire[0] & 0x40, 0x40, "RSV1 set on a compressed message");
        wire_sizes.push(wire.len());
        assert_eq!(messages(&mut server, &wire), vec![Message::text(json(i))]);
        server.send(Message::binary(json(i).into_bytes())).unwrap();
        let wire = drain(&mut server);
        assert_eq!(
            messages(&mut client, &wire),
            vec![Message::binary(json(i).into_bytes())]
        );
    }
    // Context takeover: later messages cost a fraction of the first.
    assert!(wire_sizes[10] * 2 < wire_sizes[0], "{wire_sizes:?}");
}

#[test]
fn no_context_takeover_each_message_alone() {
    let mut c = DeflateConfig::default();
    c.server_no_context_takeover = true;
    c.client_no_context_takeover = true;
    let (mut client, mut server) = pair(c, c, Config::default());
    assert!(client.deflate().unwrap().local_no_context_takeover);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        client.send(Message::text(json(1))).unwrap();
        let wire = drain(&mut client);
        sizes.push(wire.len());
        assert_eq!(messages(&mut server, &wire), vec![Message::text(json(1))]);
    }
    assert_eq!(sizes[0], sizes[2]);
}

#[test]
fn fragmented_compressed_messages_inflate_frame_by_frame() {
    let mut config = Config::default();
    config.fragment_size = 7;
    let (mut client, mut server) = pair(DeflateConfig::default(), DeflateConfig::default(), config);
    let text = json(42).repeat(30);
    client.send(Message::text(text.clone())).unwrap();
    let wire = drain(&mut client);
    // Fed one byte at a time, it still decodes to the message.
    let mut got = Vec::new();
    for b in wire.iter() {
        got.extend(messages(&mut server, &[*b]));
    }
    assert_eq!(got, vec![Message::text(text)]);
}

#[test]
fn small_messages_below_threshold_go_uncompressed() {
    let (mut client, mut server) = pair(
        DeflateConfig::default(),
        DeflateConfig::default(),
        Config::default(),
    );
    client.send(Message::text("hi")).unwrap();
    let wire = drain(&mut client);
    assert_eq!(wire[0] & 0x40, 0, "no RSV1");
    assert_eq!(messages(&mut server, &wire), vec![Message::text("hi")]);
}

/// A masked frame from a client, with arbitrary first byte.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(b0);
    match payload.len() {
        n @ 0..=125 => out.put_u8(0x80 | n as u8),
        n @ 126..=65535 => {
            out.put_u8(0x80 | 126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(0x80 | 127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(&[0, 0, 0, 0]); // zero mask: payload as is
    out.put_slice(payload);
    out.to_vec()
}

fn server_with_deflate(config: Config) -> Connection {
    let mut s = Connection::new(Role::Server, config);
    s.set_deflate(Negotiated {
        local_no_context_takeover: false,
        remote_no_context_takeover: false,
        local_max_window_bits: 15,
        remote_max_window_bits: 15,
        level: 1,
        threshold: 0,
    });
    s
}

fn expect_failure(server: &mut Connection, bytes: &[u8]) -> ProtocolError {
    server.receive_data(bytes);
    loop {
        match server.poll_event() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no error"),
            Err(e) => return e,
        }
    }
}

fn queued_close_code(conn: &mut Connection) -> u16 {
    let wire = drain(conn);
    let at = wire.iter().position(|b| *b == 0x88).expect("a close frame");
    u16::from_be_bytes([wire[at + 2], wire[at + 3]])
}

#[test]
fn bomb_closes_with_1009_and_bounded_memory() {
    let mut config = Config::default();
    config.max_message_size = 1 << 20;
    let mut server = server_with_deflate(config);
    // 16 MiB of zeros compress to about 16 KiB: one frame, far over the limit.
    let mut z = flate2::Compress::new(flate2::Compression::best(), false);
    let zeros = vec![0u8; 16 << 20];
    let mut bomb = Vec::with_capacity(1 << 20);
    z.compress_vec(&zeros, &mut bomb, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(bomb.len() < 200_000, "{}", bomb.len());
    let err = expect_failure(&mut server, &client_frame(0xc2, &bomb));
    assert!(
        matches!(err, ProtocolError::MessageTooBig { max, .. } if max == 1 << 20),
        "{err:?}"
    );
    assert_eq!(err.close_code(), CloseCode::MESSAGE_TOO_BIG);
    assert_eq!(queued_close_code(&mut server), 1009);
}

#[test]
fn rsv1_on_a_continuation_is_a_protocol_error() {
    let mut server = server_with_deflate(Config::default());
    let mut bytes = client_frame(0x41, b"\xf2\x48\xcd"); // compressed text, not final
    bytes.extend(client_frame(0xc0, b"\xc9\xc9\x07\x00")); // RSV1 on continuation
    let err = expect_failure(&mut server, &bytes);
    assert_eq!(err, ProtocolError::ReservedBits(0b100));
    assert_eq!(queued_close_code(&mut server), 1002);
}

#[test]
fn rsv1_without_negotiation_or_on_control_is_a_protocol_error() {
    let mut plain = Connection::new(Role::Server, Config::default());
    let err = expect_failure(
        &mut plain,
        &client_frame(0xc1, b"\xf2\x48\xcd\xc9\xc9\x07\x00"),
    );
    assert_eq!(err, ProtocolError::ReservedBits(0b100));
    let mut server = server_with_deflate(Config::default());
    let err = expect_failure(&mut server, &client_frame(0xc9, b""));
    assert_eq!(err, ProtocolError::ReservedBits(0b100));
}

#[test]
fn rfc_example_decodes_and_corrupt_data_is_1007() {
    let mut server = server_with_deflate(Config::default());
    // RFC 7692 §7.2.3.1, "Hello" as a compressed text message.
    assert_eq!(
        messages(
            &mut server,
            &client_frame(0xc1, b"\xf2\x48\xcd\xc9\xc9\x07\x00")
        ),
        vec![Message::text("Hello")]
    );
    let err = expect_failure(&mut server, &client_frame(0xc1, b"\xff\xff\xff\xff"));
    assert!(
        matches!(err, ProtocolError::InvalidCompressedData(_)),
        "{err:?}"
    );
    assert_eq!(queued_close_code(&mut server), 1007);
}

#[test]
fn invalid_utf8_inside_compressed_text_is_1007() {
    let mut z = flate2::Compress::new(flate2::Compression::default(), false);
    let mut data = Vec::with_capacity(64);
    z.compress_vec(&[b'a', 0xff, b'b'], &mut data, flate2::FlushCompress::Sync)
        .unwrap();
    data.truncate(data.len() - 4);
    let mut server = server_with_deflate(Config::default());
    let err = expect_failure(&mut server, &client_frame(0xc1, &data));
    assert_eq!(err, ProtocolError::InvalidUtf8);
    assert_eq!(queued_close_code(&mut server), 1007);
}
