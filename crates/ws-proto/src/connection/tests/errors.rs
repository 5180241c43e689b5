//! Every way a peer can fail the connection: the raw bytes a hostile peer
//! would send, the exact error, its close code, and the close frame queued.

use super::*;
use crate::{
    CloseCode, Config, DataKind, Fragment, Initiator, PreparedMessage, ProtocolError, SendError,
    State,
};

const BOTH: [Role; 2] = [Role::Client, Role::Server];

/// What state a failure leaves the connection in: still reading to find the
/// peer's close frame (the error was in a payload and the framing is
/// intact), or closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Closing,
    Closed,
}

/// Feed `input` to a new connection and check that the first poll fails as
/// `expected` does, with close code `code`.
fn fails(
    role: Role,
    config: Config,
    input: &[u8],
    expected: ProtocolError,
    code: u16,
    after: After,
) -> Connection {
    let mut conn = Connection::new(role, config);
    conn.receive_data(input);
    let err = conn.poll_event().expect_err("the connection fails");
    check_failure(&mut conn, err, expected, code, after);
    conn
}

/// The error, its close code, the single close frame queued with that code,
/// the close record and the state; then that nothing more happens.
fn check_failure(
    conn: &mut Connection,
    err: ProtocolError,
    expected: ProtocolError,
    code: u16,
    after: After,
) {
    assert_eq!(err, expected);
    assert_eq!(err.close_code(), CloseCode::from(code));
    let sent = only_close_frame(conn.role(), &drain(conn)).expect("a close frame with a code");
    assert_eq!(sent.code.as_u16(), code, "close frame code for {err:?}");
    assert_eq!(conn.close_info().sent.as_ref(), Some(&sent));
    assert_eq!(conn.close_info().initiator, Some(Initiator::Local));
    // An invalid close frame is still the peer's close: it is recorded (as
    // 1005) and no second one is awaited.
    let peer_closed = matches!(
        expected,
        ProtocolError::InvalidCloseLength
            | ProtocolError::InvalidCloseCode(_)
            | ProtocolError::InvalidCloseReason
    );
    if peer_closed {
        let received = conn.close_info().received.clone().expect("recorded");
        assert_eq!(received.code, CloseCode::NO_STATUS);
    } else {
        assert_eq!(conn.close_info().received, None);
    }
    let state = match after {
        _ if peer_closed => State::Closed,
        After::Closing => State::Closing,
        After::Closed => State::Closed,
    };
    assert_eq!(conn.state(), state, "state after {err:?}");
    assert_quiet(conn);
}

/// After a failure: no more events or errors, nothing can be sent, and
/// nothing follows the close frame.
fn assert_quiet(conn: &mut Connection) {
    for _ in 0..3 {
        assert_eq!(conn.poll_event(), Ok(None));
    }
    assert_eq!(conn.send(Message::text("x")), Err(SendError::Closed));
    assert_eq!(conn.send(Message::binary(vec![1])), Err(SendError::Closed));
    assert_eq!(conn.send(Message::Ping("p".into())), Err(SendError::Closed));
    assert_eq!(conn.send(Message::Pong("p".into())), Err(SendError::Closed));
    let fragment = Fragment {
        kind: DataKind::Binary,
        data: "f".into(),
        fin: false,
    };
    assert_eq!(conn.send_fragment(fragment), Err(SendError::Closed));
    let prepared = PreparedMessage::new(Message::text("x"));
    assert_eq!(conn.send_prepared(&prepared), Err(SendError::Closed));
    assert_eq!(
        conn.close(Some(CloseFrame::new(CloseCode::NORMAL, ""))),
        Err(SendError::Closed)
    );
    assert_eq!(conn.close(None), Err(SendError::Closed));
    assert_eq!(conn.buffered_amount(), 0);
    assert_eq!(drain(conn), []);
}

/// A connection that failed with its framing intact reads on to the peer's
/// close frame, which closes it without a reply (ours was already sent).
fn finish_with_peer_close(conn: &mut Connection) {
    assert_eq!(conn.state(), State::Closing);
    assert!(!conn.wants_transport_closed());
    let close = peer_frame(conn.role(), 0x88, &close_body(1000, b"bye"));
    conn.receive_data(&close);
    assert_eq!(conn.poll_event(), Ok(None));
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(drain(conn), []);
    assert!(conn.wants_transport_closed());
    assert_quiet(conn);
}

/// A connection that failed in its framing reads nothing more.
fn ignores_more_input(conn: &mut Connection) {
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.wants_transport_closed());
    conn.receive_data(&peer_frame(conn.role(), 0x81, b"more"));
    conn.receive_data(&peer_frame(conn.role(), 0x88, &close_body(1000, b"")));
    assert_quiet(conn);
    assert_eq!(conn.close_info().received, None);
}

// ---- §5.2: framing ----

#[test]
fn reserved_opcodes() {
    for role in BOTH {
        for op in (0x3..=0x7).chain(0xb..=0xf) {
            for fin in [0x80, 0x00] {
                let input = peer_frame(role, fin | op, b"data");
                let mut conn = fails(
                    role,
                    Config::default(),
                    &input,
                    ProtocolError::ReservedOpcode(op),
                    1002,
                    After::Closed,
                );
                ignores_more_input(&mut conn);
            }
            // Two bytes of header are enough to fail.
            let input = peer_frame(role, 0x80 | op, b"data");
            fails(
                role,
                Config::default(),
                &input[..2],
                ProtocolError::ReservedOpcode(op),
                1002,
                After::Closed,
            );
        }
    }
}

#[test]
fn reserved_bits() {
    for role in BOTH {
        for rsv in [0b100, 0b010, 0b001, 0b111] {
            // On a data frame, a control frame and a continuation.
            for (b0, prefix) in [
                (0x81, vec![]),
                (0x89, vec![]),
                (0x80, peer_frame(role, 0x01, b"Hel")),
            ] {
                let mut input = prefix;
                input.extend(peer_frame(role, b0 | (rsv << 4), b"lo"));
                let mut conn = fails(
                    role,
                    Config::default(),
                    &input,
                    ProtocolError::ReservedBits(rsv),
                    1002,
                    After::Closed,
                );
                ignores_more_input(&mut conn);
            }
        }
    }
}

#[test]
fn msb_of_64_bit_length() {
    for role in BOTH {
        let mask_bit = if role == Role::Server { 0x80 } else { 0 };
        for top in [0x80, 0xff] {
            let input = [0x82, mask_bit | 127, top, 0, 0, 0, 0, 0, 0, 5];
            // Fails with the length, before any mask key or payload.
            let mut conn = fails(
                role,
                Config::default(),
                &input,
                ProtocolError::InvalidLength,
                1002,
                After::Closed,
            );
            ignores_more_input(&mut conn);
        }
    }
}

// ---- §5.5: control frames ----

#[test]
fn fragmented_control_frames() {
    for role in BOTH {
        for op in [0x8, 0x9, 0xa] {
            let body = if op == 0x8 {
                close_body(1000, b"")
            } else {
                b"Hello".to_vec()
            };
            let input = peer_frame(role, op, &body);
            let mut conn = fails(
                role,
                Config::default(),
                &input,
                ProtocolError::FragmentedControl,
                1002,
                After::Closed,
            );
            ignores_more_input(&mut conn);
        }
        // Also inside a fragmented message.
        let mut input = peer_frame(role, 0x01, b"Hel");
        input.extend(peer_frame(role, 0x09, b"ping"));
        fails(
            role,
            Config::default(),
            &input,
            ProtocolError::FragmentedControl,
            1002,
            After::Closed,
        );
    }
}

#[test]
fn control_frame_over_125_bytes() {
    for role in BOTH {
        for op in [0x88, 0x89, 0x8a] {
            for len in [126, 65535, 65536] {
                let input = peer_frame(role, op, &vec![b'a'; len]);
                let mut conn = fails(
                    role,
                    Config::default(),
                    &input,
                    ProtocolError::ControlTooLong(len as u64),
                    1002,
                    After::Closed,
                );
                ignores_more_input(&mut conn);
            }
            // The header is enough (4 bytes: no mask key needed yet).
            let input = peer_frame(role, op, &[b'a'; 126]);
            fails(
                role,
                Config::default(),
                &input[..4],
                ProtocolError::ControlTooLong(126),
                1002,
                After::Closed,
            );
        }
        // 125 bytes is fine.
        let mut conn = Connection::new(role, Config::default());
        conn.receive_data(&peer_frame(role, 0x89, &[b'a'; 125]));
        assert_eq!(
            poll_all(&mut conn),
            [msg(Message::Ping(vec![b'a'; 125].into()))]
        );
    }
}

// ---- §5.1: masking ----

#[test]
fn unmasked_frame_to_server() {
    for b0 in [0x81, 0x82, 0x89, 0x8a, 0x88] {
        let input = raw_frame(b0, None, &close_body(1000, b""));
        let mut conn = fails(
            Role::Server,
            Config::default(),
            &input,
            ProtocolError::UnmaskedFrame,
            1002,
            After::Closed,
        );
        ignores_more_input(&mut conn);
    }
}

#[test]
fn masked_frame_to_client() {
    for b0 in [0x81, 0x82, 0x89, 0x8a, 0x88] {
        let input = raw_frame(b0, Some(KEY), &close_body(1000, b""));
        let mut conn = fails(
            Role::Client,
            Config::default(),
            &input,
            ProtocolError::MaskedFrame,
            1002,
            After::Closed,
        );
        ignores_more_input(&mut conn);
    }
}

// ---- §5.4: fragmentation ----

#[test]
fn continuation_without_a_message() {
    for role in BOTH {
        for b0 in [0x80, 0x00] {
            let input = peer_frame(role, b0, b"lo");
            let mut conn = fails(
                role,
                Config::default(),
                &input,
                ProtocolError::UnexpectedContinuation,
                1002,
                After::Closing,
            );
            finish_with_peer_close(&mut conn);
        }

        // After a message that was complete.
        let mut conn = Connection::new(role, Config::default());
        conn.receive_data(&peer_frame(role, 0x81, b"Hello"));
        conn.receive_data(&peer_frame(role, 0x80, b"more"));
        assert_eq!(conn.poll_event(), Ok(Some(msg(Message::text("Hello")))));
        let err = conn.poll_event().unwrap_err();
        check_failure(
            &mut conn,
            err,
            ProtocolError::UnexpectedContinuation,
            1002,
            After::Closing,
        );
        finish_with_peer_close(&mut conn);
    }
}

#[test]
fn new_data_frame_inside_a_fragmented_message() {
    for role in BOTH {
        for first in [0x01, 0x02] {
            for second in [0x81, 0x82, 0x01, 0x02] {
                let mut input = peer_frame(role, first, b"Hel");
                input.extend(peer_frame(role, second, b"lo"));
                let mut conn = fails(
                    role,
                    Config::default(),
                    &input,
                    ProtocolError::ExpectedContinuation,
                    1002,
                    After::Closing,
                );
                finish_with_peer_close(&mut conn);
            }
        }
    }
}

// ---- §5.5.1, §7.4: close frames ----

#[test]
fn close_payload_of_one_byte() {
    for role in BOTH {
        let input = peer_frame(role, 0x88, &[0x03]);
        let conn = fails(
            role,
            Config::default(),
            &input,
            ProtocolError::InvalidCloseLength,
            1002,
            After::Closed,
        );
        // The peer closed already: nothing more to wait for.
        assert_eq!(conn.state(), State::Closed);
    }
}

#[test]
fn invalid_close_codes() {
    for role in BOTH {
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let input = peer_frame(role, 0x88, &close_body(code, b"reason"));
            let conn = fails(
                role,
                Config::default(),
                &input,
                ProtocolError::InvalidCloseCode(code),
                1002,
                After::Closed,
            );
            // The peer closed already: nothing more to wait for.
            assert_eq!(conn.state(), State::Closed);
        }
    }
}

#[test]
fn close_reason_not_utf8() {
    for role in BOTH {
        for reason in [&[0xff][..], &[b'o', b'k', 0xce], &[0xed, 0xa0, 0x80]] {
            let input = peer_frame(role, 0x88, &close_body(1000, reason));
            let conn = fails(
                role,
                Config::default(),
                &input,
                ProtocolError::InvalidCloseReason,
                1007,
                After::Closed,
            );
            // The peer closed already: nothing more to wait for.
            assert_eq!(conn.state(), State::Closed);
        }
    }
}

// ---- §8.1: UTF-8 ----

#[test]
fn invalid_utf8_in_a_single_text_frame() {
    for role in BOTH {
        for payload in [
            b"Hello\xffworld".to_vec(),
            b"\xc0\xaf".to_vec(),
            b"\xed\xa0\x80".to_vec(),
            b"\xf4\x90\x80\x80".to_vec(),
            ["κόσμε".as_bytes(), b"\xf8"].concat(),
        ] {
            let input = peer_frame(role, 0x81, &payload);
            let mut conn = fails(
                role,
                Config::default(),
                &input,
                ProtocolError::InvalidUtf8,
                1007,
                After::Closing,
            );
            finish_with_peer_close(&mut conn);
        }
    }
}

#[test]
fn invalid_utf8_split_across_frames_fails_on_its_frame() {
    let valid = "κόσμε".as_bytes();
    for role in BOTH {
        for deliver_fragments in [false, true] {
            // The invalid sequence whole in the second frame, or its lead byte
            // at the end of the first (a valid prefix so far).
            for (first, second) in [
                (valid.to_vec(), b"\xf4\x90\x80\x80".to_vec()),
                ([valid, b"\xf4"].concat(), b"\x90\x80\x80".to_vec()),
                ([valid, b"\xe2\x82"].concat(), b"a".to_vec()),
            ] {
                let config = Config {
                    deliver_fragments,
                    ..Config::default()
                };
                let mut conn = Connection::new(role, config);
                conn.receive_data(&peer_frame(role, 0x01, &first));
                let events = poll_all(&mut conn);
                if deliver_fragments {
                    let expect = Event::Fragment(Fragment {
                        kind: DataKind::Text,
                        data: first.clone().into(),
                        fin: false,
                    });
                    assert_eq!(events, [expect]);
                } else {
                    assert_eq!(events, []);
                }
                // The frame with the invalid bytes fails, though the message
                // goes on.
                conn.receive_data(&peer_frame(role, 0x00, &second));
                let err = conn.poll_event().unwrap_err();
                check_failure(
                    &mut conn,
                    err,
                    ProtocolError::InvalidUtf8,
                    1007,
                    After::Closing,
                );
                // The rest of the message is skipped, then the close read.
                conn.receive_data(&peer_frame(role, 0x80, b"edited"));
                assert_eq!(conn.poll_event(), Ok(None));
                finish_with_peer_close(&mut conn);
            }
        }
    }
}

/// Autobahn 6.4.3: one frame whose invalid bytes arrive in a later read
/// than its start fails as soon as they arrive, before the frame is whole.
#[test]
fn invalid_utf8_inside_one_frame_fails_before_the_frame_ends() {
    let payload = ["κόσμε".as_bytes(), b"\xf4\x90\x80\x80", b"edited"].concat();
    let bad = "κόσμε".len();
    for role in BOTH {
        let input = peer_frame(role, 0x81, &payload);
        let header = input.len() - payload.len();
        let mut conn = Connection::new(role, Config::default());
        conn.receive_data(&input[..header + bad]);
        assert_eq!(conn.poll_event(), Ok(None));
        assert_eq!(conn.buffered_amount(), 0);
        conn.receive_data(&input[header + bad..header + bad + 4]);
        let err = conn.poll_event().unwrap_err();
        check_failure(
            &mut conn,
            err,
            ProtocolError::InvalidUtf8,
            1007,
            After::Closed,
        );
        // The rest of the frame may never come (a peer that reads our close
        // stops sending it), so nothing after the failure is read: the
        // transport is closed at once.
        assert!(conn.wants_transport_closed());
        conn.receive_data(&input[header + bad + 4..]);
        assert_eq!(conn.poll_event(), Ok(None));
    }
}

/// Autobahn 6.4.4: the same, byte by byte: the byte that makes the
/// sequence invalid (0x90 after 0xf4) fails it.
#[test]
fn invalid_utf8_inside_one_frame_byte_by_byte() {
    let payload = ["κόσμε".as_bytes(), b"\xf4\x90\x80\x80", b"edited"].concat();
    let culprit = "κόσμε".len() + 1;
    for role in BOTH {
        let input = peer_frame(role, 0x81, &payload);
        let header = input.len() - payload.len();
        let mut conn = Connection::new(role, Config::default());
        for (i, byte) in input.iter().enumerate() {
            conn.receive_data(&[*byte]);
            let result = conn.poll_event();
            if i < header + culprit {
                assert_eq!(result, Ok(None), "byte {i}");
                continue;
            }
            let err = result.unwrap_err();
            assert_eq!(i, header + culprit);
            check_failure(
                &mut conn,
                err,
                ProtocolError::InvalidUtf8,
                1007,
                After::Closed,
            );
            conn.receive_data(&input[i + 1..]);
            assert_eq!(conn.poll_event(), Ok(None));
            break;
        }
        assert_eq!(conn.state(), State::Closed);
    }
}

#[test]
fn truncated_utf8_at_message_end() {
    for role in BOTH {
        // One frame ending inside a code point.
        let input = peer_frame(role, 0x81, b"a\xe2\x82");
        let mut conn = fails(
            role,
            Config::default(),
            &input,
            ProtocolError::InvalidUtf8,
            1007,
            After::Closing,
        );
        finish_with_peer_close(&mut conn);

        // A fragmented message: fine until its last frame ends it too soon.
        let mut conn = Connection::new(role, Config::default());
        conn.receive_data(&peer_frame(role, 0x01, b"a\xe2"));
        conn.receive_data(&peer_frame(role, 0x00, b"\x82"));
        assert_eq!(conn.poll_event(), Ok(None));
        conn.receive_data(&peer_frame(role, 0x80, b""));
        let err = conn.poll_event().unwrap_err();
        check_failure(
            &mut conn,
            err,
            ProtocolError::InvalidUtf8,
            1007,
            After::Closing,
        );
        finish_with_peer_close(&mut conn);
    }
}

#[test]
fn a_code_point_split_across_frames_and_reads_is_valid() {
    let text = "a€𝄞κ";
    for role in BOTH {
        let mut input = Vec::new();
        let bytes = text.as_bytes();
        // A frame per byte, delivered a byte at a time.
        for (i, b) in bytes.iter().enumerate() {
            let b0 = match (i, i + 1 == bytes.len()) {
                (0, _) => 0x01,
                (_, true) => 0x80,
                _ => 0x00,
            };
            input.extend(peer_frame(role, b0, &[*b]));
        }
        let mut conn = Connection::new(role, Config::default());
        let mut events = Vec::new();
        for b in &input {
            conn.receive_data(&[*b]);
            events.extend(poll_all(&mut conn));
        }
        assert_eq!(events, [msg(Message::text(text))]);
    }
}

// ---- limits ----

#[test]
fn frame_of_2_pow_63_minus_1_bytes_fails_at_its_header() {
    for role in BOTH {
        let mut input = vec![0x82];
        input.push(if role == Role::Server { 0xff } else { 0x7f });
        input.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        if role == Role::Server {
            input.extend_from_slice(&KEY);
        }
        let mut conn = fails(
            role,
            Config::default(),
            &input,
            ProtocolError::FrameTooBig {
                size: u64::MAX >> 1,
                max: 16 << 20,
            },
            1009,
            After::Closed,
        );
        // Nothing was reserved for the payload.
        assert!(conn.rbuf.capacity() < 4096);
        ignores_more_input(&mut conn);
    }
}

#[test]
fn frame_over_max_frame_size() {
    let config = Config {
        max_frame_size: 100,
        ..Config::default()
    };
    for role in BOTH {
        // At the limit: fine.
        let mut conn = Connection::new(role, config.clone());
        conn.receive_data(&peer_frame(role, 0x82, &[7; 100]));
        assert_eq!(poll_all(&mut conn), [msg(Message::binary(vec![7; 100]))]);

        for (b0, len) in [(0x82, 101), (0x81, 1000), (0x02, 65536), (0x89, 101)] {
            let input = peer_frame(role, b0, &vec![b'a'; len]);
            let header = input.len() - len;
            // The header alone fails.
            let mut conn = fails(
                role,
                config.clone(),
                &input[..header],
                ProtocolError::FrameTooBig {
                    size: len as u64,
                    max: 100,
                },
                1009,
                After::Closed,
            );
            ignores_more_input(&mut conn);
        }
    }
}

#[test]
fn message_over_max_message_size_across_frames() {
    let config = Config {
        max_message_size: 10,
        ..Config::default()
    };
    for role in BOTH {
        for deliver_fragments in [false, true] {
            let mut config = config.clone();
            config.deliver_fragments = deliver_fragments;
            let mut conn = Connection::new(role, config);
            conn.receive_data(&peer_frame(role, 0x02, b"12345"));
            // A control frame does not count.
            conn.receive_data(&peer_frame(role, 0x89, b"ping ping ping"));
            conn.receive_data(&peer_frame(role, 0x00, b"67890"));
            let events = poll_all(&mut conn);
            assert_eq!(events.len(), if deliver_fragments { 3 } else { 1 });
            assert!(events.contains(&msg(Message::Ping("ping ping ping".into()))));
            // Take out the pong.
            drain(&mut conn);
            // The header of the frame that crosses the limit fails.
            let last = peer_frame(role, 0x80, b"!");
            conn.receive_data(&last[..last.len() - 1]);
            let err = conn.poll_event().unwrap_err();
            check_failure(
                &mut conn,
                err,
                ProtocolError::MessageTooBig { size: 11, max: 10 },
                1009,
                After::Closed,
            );
            ignores_more_input(&mut conn);
        }

        // Exactly the limit, across frames, is fine.
        let mut conn = Connection::new(role, config.clone());
        conn.receive_data(&peer_frame(role, 0x01, b"12345"));
        conn.receive_data(&peer_frame(role, 0x80, b"67890"));
        assert_eq!(poll_all(&mut conn), [msg(Message::text("1234567890"))]);

        // One frame over the limit.
        let input = peer_frame(role, 0x81, b"12345678901");
        let mut conn = fails(
            role,
            config.clone(),
            &input,
            ProtocolError::MessageTooBig { size: 11, max: 10 },
            1009,
            After::Closed,
        );
        ignores_more_input(&mut conn);
    }
}

/// A peer that pings and never reads: pongs are queued up to the backlog
/// threshold, then coalesced, then the connection fails with 1008.
#[test]
fn ping_flood_without_reading() {
    let config = Config {
        pong_backlog_threshold: 1000,
        max_coalesced_pings: 4,
        ..Config::default()
    };
    for role in BOTH {
        let pong_len = 2 + 125 + if role == Role::Client { 4 } else { 0 };
        // Pongs are written while at most 1000 bytes are queued.
        let direct = 1000 / pong_len + 1;
        // Then one waits, and four replace it; the next is one too many.
        let failing_ping = direct + 1 + 4 + 1;
        let mut conn = Connection::new(role, config.clone());
        let mut pings = 0;
        let err = loop {
            let payload = [pings as u8; 125];
            conn.receive_data(&peer_frame(role, 0x89, &payload));
            match conn.poll_event() {
                Ok(Some(event)) => assert_eq!(event, msg(Message::Ping(payload.to_vec().into()))),
                Ok(None) => panic!("a whole ping was received"),
                Err(e) => break e,
            }
            pings += 1;
            // The queue, plus one pong waiting for it to drain.
            assert!(conn.buffered_amount() <= 1000 + 2 * pong_len);
        };
        assert_eq!(pings + 1, failing_ping);
        assert_eq!(
            err,
            ProtocolError::WriteBufferFull {
                queued: direct * pong_len
            }
        );
        assert_eq!(err.close_code(), CloseCode::POLICY_VIOLATION);
        // The pongs already queued, then the close frame; no coalesced pong.
        let bytes = drain(&mut conn);
        let frames = parse_frames(&bytes);
        assert_eq!(frames.len(), direct + 1);
        for (i, f) in frames[..direct].iter().enumerate() {
            assert_eq!(f.opcode, OpCode::Pong);
            assert_eq!(f.payload, [i as u8; 125]);
            assert_masking(role, f);
        }
        let close = frames.last().unwrap();
        assert_eq!(close.opcode, OpCode::Close);
        let close = CloseFrame::parse(close.payload.clone().into())
            .unwrap()
            .unwrap();
        assert_eq!(close.code, CloseCode::POLICY_VIOLATION);
        assert_eq!(conn.close_info().sent, Some(close));
        assert_eq!(conn.state(), State::Closed);
        assert_quiet(&mut conn);
        assert!(conn.wants_transport_closed());
    }
}

// ---- §7.1.5: the transport ends without a close ----

#[test]
fn eof_without_close_is_abnormal_once() {
    for role in BOTH {
        let hello = peer_frame(role, 0x81, b"Hello");
        // At a frame boundary, inside a header, inside a payload, inside a
        // fragmented message, with nothing received.
        for (input, first) in [
            (hello.clone(), Some(msg(Message::text("Hello")))),
            (hello[..1].to_vec(), None),
            (hello[..hello.len() - 2].to_vec(), None),
            (peer_frame(role, 0x01, b"Hel"), None),
            (Vec::new(), None),
        ] {
            let mut conn = Connection::new(role, Config::default());
            conn.receive_data(&input);
            conn.receive_eof();
            if let Some(first) = first {
                assert_eq!(conn.poll_event(), Ok(Some(first)));
            }
            let err = conn.poll_event().unwrap_err();
            assert_eq!(err, ProtocolError::AbnormalClosure);
            assert_eq!(err.close_code(), CloseCode::ABNORMAL);
            assert_eq!(conn.state(), State::Closed);
            // Nothing to send to a peer that is gone.
            assert_eq!(drain(&mut conn), []);
            assert_eq!(conn.close_info().sent, None);
            assert_eq!(conn.close_info().received, None);
            assert!(conn.wants_transport_closed());
            assert_quiet(&mut conn);
        }
    }
}

#[test]
fn eof_after_local_close_without_reply_is_abnormal() {
    let mut conn = Connection::new(Role::Server, Config::default());
    conn.close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "")))
        .unwrap();
    drain(&mut conn);
    conn.receive_eof();
    assert_eq!(conn.poll_event(), Err(ProtocolError::AbnormalClosure));
    assert_eq!(conn.state(), State::Closed);
    assert_quiet(&mut conn);
}

#[test]
fn eof_after_failure_is_not_reported() {
    let mut conn = fails(
        Role::Server,
        Config::default(),
        &peer_frame(Role::Server, 0x81, b"\xff"),
        ProtocolError::InvalidUtf8,
        1007,
        After::Closing,
    );
    conn.receive_eof();
    assert_eq!(conn.poll_event(), Ok(None));
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.wants_transport_closed());
    assert_quiet(&mut conn);
}

// ---- after a failure ----

/// A connection that failed with intact framing reads frames only to find
/// the peer's close: whatever else the peer sends, even garbage, is not
/// reported (an error is reported once).
#[test]
fn input_after_a_failure_is_not_reported() {
    for role in BOTH {
        let input = peer_frame(role, 0x81, b"\xff");
        let mut conn = fails(
            role,
            Config::default(),
            &input,
            ProtocolError::InvalidUtf8,
            1007,
            After::Closing,
        );
        // Valid frames, ignored (and no pong to the ping).
        conn.receive_data(&peer_frame(role, 0x81, b"Hello"));
        conn.receive_data(&peer_frame(role, 0x89, b"ping"));
        conn.receive_data(&peer_frame(role, 0x80, b"bad continuation"));
        assert_quiet(&mut conn);
        assert_eq!(conn.state(), State::Closing);
        // A frame that fails to decode: the stream cannot be read any more.
        conn.receive_data(&peer_frame(role, 0x83, b""));
        assert_eq!(conn.poll_event(), Ok(None));
        assert_eq!(conn.state(), State::Closed);
        assert!(conn.wants_transport_closed());
        assert_quiet(&mut conn);
    }
}

/// A peer that breaks the protocol after we started the closing handshake:
/// the error is reported, but no second close frame is sent.
#[test]
fn failure_while_closing_sends_no_second_close() {
    for role in BOTH {
        let mut conn = Connection::new(role, Config::default());
        let ours = CloseFrame::new(CloseCode::NORMAL, "done");
        conn.close(Some(ours.clone())).unwrap();
        assert_eq!(
            only_close_frame(role, &drain(&mut conn)),
            Some(ours.clone())
        );
        conn.receive_data(&peer_frame(role, 0xc1, b"x"));
        assert_eq!(conn.poll_event(), Err(ProtocolError::ReservedBits(0b100)));
        assert_eq!(conn.state(), State::Closed);
        assert_eq!(conn.close_info().sent, Some(ours));
        assert_eq!(conn.close_info().initiator, Some(Initiator::Local));
        assert_quiet(&mut conn);
    }
}

/// After a failure with intact framing, a frame too big to skip ends the
/// reading at once.
#[test]
fn huge_frame_after_a_failure_ends_reading() {
    for role in BOTH {
        let input = peer_frame(role, 0x81, &[0xff]);
        let mut conn = fails(
            role,
            Config::default(),
            &input,
            ProtocolError::InvalidUtf8,
            1007,
            After::Closing,
        );
        let mut huge = vec![0x82, if role == Role::Server { 0xff } else { 0x7f }];
        huge.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        huge.extend_from_slice(&KEY);
        conn.receive_data(&huge);
        assert_eq!(conn.poll_event(), Ok(None));
        assert_eq!(conn.state(), State::Closed);
        assert!(conn.wants_transport_closed());
        assert_quiet(&mut conn);
    }
}
