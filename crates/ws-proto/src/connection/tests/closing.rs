//! The closing handshake (§7), pings (§5.5.2, §5.5.3), and the order of
//! what is sent and received.

use super::*;
use crate::{
    CloseCode, Config, DataKind, Fragment, Initiator, PreparedMessage, ProtocolError, SendError,
    State,
};

const BOTH: [Role; 2] = [Role::Client, Role::Server];

fn closed_for_sending(conn: &mut Connection) {
    assert_eq!(conn.send(Message::text("x")), Err(SendError::Closed));
    assert_eq!(conn.send(Message::binary(vec![1])), Err(SendError::Closed));
    assert_eq!(conn.send(Message::Ping("p".into())), Err(SendError::Closed));
    assert_eq!(conn.send(Message::Pong("p".into())), Err(SendError::Closed));
    assert_eq!(conn.send(Message::Close(None)), Err(SendError::Closed));
    assert_eq!(
        conn.close(Some(CloseFrame::new(CloseCode::NORMAL, ""))),
        Err(SendError::Closed)
    );
    let fragment = Fragment {
        kind: DataKind::Text,
        data: "f".into(),
        fin: true,
    };
    assert_eq!(conn.send_fragment(fragment), Err(SendError::Closed));
    let prepared = PreparedMessage::new(Message::text("x"));
    assert_eq!(conn.send_prepared(&prepared), Err(SendError::Closed));
    assert_eq!(drain(conn), []);
}

// ---- closing handshake ----

#[test]
fn peer_initiated_close() {
    for role in BOTH {
        let mut conn = Connection::new(role, Config::default());
        conn.receive_data(&peer_frame(role, 0x88, &close_body(1001, b"going away")));
        let theirs = CloseFrame::new(CloseCode::GOING_AWAY, "going away");
        assert_eq!(
            conn.poll_event(),
            Ok(Some(msg(Message::Close(Some(theirs.clone())))))
        );
        assert_eq!(conn.state(), State::Closed);
        // The reply is queued; the transport stays open until it is written.
        assert!(!conn.wants_transport_closed());
        let reply = only_close_frame(role, &drain(&mut conn));
        let echo = CloseFrame::new(CloseCode::GOING_AWAY, "");
        assert_eq!(reply, Some(echo.clone()));
        let info = conn.close_info();
        assert_eq!(info.received, Some(theirs));
        assert_eq!(info.sent, Some(echo));
        assert_eq!(info.initiator, Some(Initiator::Peer));
        // §7.1.1: the server closes the TCP connection first; a client waits
        // for it.
        assert_eq!(conn.wants_transport_closed(), role == Role::Server);
        assert_eq!(conn.poll_event(), Ok(None));
        closed_for_sending(&mut conn);
        conn.receive_eof();
        assert_eq!(conn.poll_event(), Ok(None), "a clean close is not abnormal");
        assert!(conn.wants_transport_closed());
    }
}

#[test]
fn every_valid_close_code_is_echoed() {
    for role in BOTH {
        for code in (1000..=1003)
            .chain(1007..=1014)
            .chain([3000, 3999, 4000, 4999])
        {
            let mut conn = Connection::new(role, Config::default());
            conn.receive_data(&peer_frame(role, 0x88, &close_body(code, b"")));
            let frame = CloseFrame::new(CloseCode::from(code), "");
            assert_eq!(
                poll_all(&mut conn),
                [msg(Message::Close(Some(frame.clone())))]
            );
            assert_eq!(only_close_frame(role, &drain(&mut conn)), Some(frame));
        }
    }
}

#[test]
fn empty_close_gets_an_empty_reply() {
    for role in BOTH {
        let mut conn = Connection::new(role, Config::default());
        conn.receive_data(&peer_frame(role, 0x88, b""));
        assert_eq!(poll_all(&mut conn), [msg(Message::Close(None))]);
        let bytes = drain(&mut conn);
        assert_eq!(only_close_frame(role, &bytes), None);
        if role == Role::Server {
            assert_eq!(bytes, [0x88, 0x00]);
        }
        let no_status = CloseFrame::new(CloseCode::NO_STATUS, "");
        assert_eq!(conn.close_info().received, Some(no_status.clone()));
        assert_eq!(conn.close_info().sent, Some(no_status));
        assert_eq!(conn.close_info().initiator, Some(Initiator::Peer));
        assert_eq!(conn.state(), State::Closed);
    }
}

#[test]
fn locally_initiated_close() {
    for role in BOTH {
        for ours in [Some(CloseFrame::new(CloseCode::NORMAL, "bye")), None] {
            let mut conn = Connection::new(role, Config::default());
            conn.close(ours.clone()).unwrap();
            assert_eq!(conn.state(), State::Closing);
            assert_eq!(only_close_frame(role, &drain(&mut conn)), ours);
            closed_for_sending(&mut conn);
            let sent = ours
                .clone()
                .unwrap_or_else(|| CloseFrame::new(CloseCode::NO_STATUS, ""));
            assert_eq!(conn.close_info().sent, Some(sent.clone()));
            assert_eq!(conn.close_info().initiator, Some(Initiator::Local));

            // Data still arrives; pings are seen but no longer answered.
            conn.receive_data(&peer_frame(role, 0x01, b"la"));
            conn.receive_data(&peer_frame(role, 0x89, b"ping"));
            conn.receive_data(&peer_frame(role, 0x80, b"te"));
            assert_eq!(
                poll_all(&mut conn),
                [
                    msg(Message::Ping("ping".into())),
                    msg(Message::text("late"))
                ]
            );
            assert_eq!(drain(&mut conn), []);
            assert_eq!(conn.state(), State::Closing);
            assert!(!conn.wants_transport_closed());

            // The peer's close ends it, with no second close from us.
            conn.receive_data(&peer_frame(role, 0x88, &close_body(1000, b"")));
            let theirs = CloseFrame::new(CloseCode::NORMAL, "");
            assert_eq!(
                poll_all(&mut conn),
                [msg(Message::Close(Some(theirs.clone())))]
            );
            assert_eq!(conn.state(), State::Closed);
            assert_eq!(drain(&mut conn), []);
            let info = conn.close_info();
            assert_eq!(info.sent, Some(sent));
            assert_eq!(info.received, Some(theirs));
            assert_eq!(info.initiator, Some(Initiator::Local));
            assert_eq!(conn.wants_transport_closed(), role == Role::Server);
            // Nothing after the close is read.
            conn.receive_data(&peer_frame(role, 0x81, b"after"));
            assert_eq!(conn.poll_event(), Ok(None));
        }
    }
}

#[test]
fn simultaneous_close() {
    let mut client = Connection::new(Role::Client, Config::default());
    let mut server = Connection::new(Role::Server, Config::default());
    client
        .close(Some(CloseFrame::new(CloseCode::NORMAL, "c")))
        .unwrap();
    server
        .close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "s")))
        .unwrap();
    let to_server = drain(&mut client);
    let to_client = drain(&mut server);
    client.receive_data(&to_client);
    server.receive_data(&to_server);
    assert_eq!(
        poll_all(&mut client),
        [msg(Message::Close(Some(CloseFrame::new(
            CloseCode::GOING_AWAY,
            "s"
        ))))]
    );
    assert_eq!(
        poll_all(&mut server),
        [msg(Message::Close(Some(CloseFrame::new(
            CloseCode::NORMAL,
            "c"
        ))))]
    );
    for conn in [&mut client, &mut server] {
        assert_eq!(conn.state(), State::Closed);
        assert_eq!(conn.close_info().initiator, Some(Initiator::Local));
        assert_eq!(drain(conn), []);
    }
    assert!(server.wants_transport_closed());
    assert!(!client.wants_transport_closed());
}

#[test]
fn close_rejects_unsendable_codes_and_long_reasons() {
    for role in BOTH {
        let mut conn = Connection::new(role, Config::default());
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            let frame = CloseFrame::new(CloseCode::from(code), "");
            assert_eq!(
                conn.close(Some(frame.clone())),
                Err(SendError::InvalidCloseCode(code))
            );
            assert_eq!(
                conn.send(Message::Close(Some(frame))),
                Err(SendError::InvalidCloseCode(code))
            );
        }
        let long = "é".repeat(62); // 124 bytes
        assert_eq!(
            conn.close(Some(CloseFrame::new(CloseCode::NORMAL, long))),
            Err(SendError::ReasonTooLong(124))
        );
        // Refusals leave the connection open, with nothing queued.
        assert_eq!(conn.state(), State::Open);
        assert_eq!(conn.close_info().sent, None);
        assert_eq!(drain(&mut conn), []);

        // 123 bytes is the most.
        let longest = CloseFrame::new(CloseCode::from(4999), "x".repeat(123));
        conn.close(Some(longest.clone())).unwrap();
        let bytes = drain(&mut conn);
        assert_eq!(parse_frames(&bytes)[0].payload.len(), 125);
        assert_eq!(only_close_frame(role, &bytes), Some(longest));
        closed_for_sending(&mut conn);
    }
}

// ---- pings ----

#[test]
fn ping_is_answered_and_seen() {
    for role in BOTH {
        for payload in [&b""[..], b"Hello", &[0xff; 125]] {
            let mut conn = Connection::new(role, Config::default());
            conn.receive_data(&peer_frame(role, 0x89, payload));
            assert_eq!(
                poll_all(&mut conn),
                [msg(Message::Ping(payload.to_vec().into()))]
            );
            let bytes = drain(&mut conn);
            let frames = parse_frames(&bytes);
            assert_eq!(frames.len(), 1);
            assert_eq!(frames[0].opcode, OpCode::Pong);
            assert!(frames[0].fin);
            assert_eq!(frames[0].payload, payload);
            assert_masking(role, &frames[0]);
            assert_eq!(conn.state(), State::Open);
        }
    }
}

#[test]
fn unsolicited_pong_is_fine() {
    for role in BOTH {
        let mut conn = Connection::new(role, Config::default());
        conn.receive_data(&peer_frame(role, 0x8a, b"heartbeat"));
        conn.receive_data(&peer_frame(role, 0x8a, b""));
        assert_eq!(
            poll_all(&mut conn),
            [
                msg(Message::Pong("heartbeat".into())),
                msg(Message::Pong("".into()))
            ]
        );
        assert_eq!(drain(&mut conn), []);
        assert_eq!(conn.state(), State::Open);
        conn.send(Message::text("still open")).unwrap();
    }
}

/// Autobahn 2.10: ten pings in one read get ten pongs, in order.
#[test]
fn ten_pings_in_one_read_get_ten_pongs() {
    for role in BOTH {
        let mut input = Vec::new();
        for i in 0..10 {
            input.extend(peer_frame(role, 0x89, format!("payload-{i}").as_bytes()));
        }
        let mut conn = Connection::new(role, Config::default());
        conn.receive_data(&input);
        let events = poll_all(&mut conn);
        let expect: Vec<_> = (0..10)
            .map(|i| msg(Message::Ping(format!("payload-{i}").into())))
            .collect();
        assert_eq!(events, expect);
        let frames = parse_frames(&drain(&mut conn));
        assert_eq!(frames.len(), 10);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.opcode, OpCode::Pong);
            assert_eq!(f.payload, format!("payload-{i}").as_bytes());
            assert_masking(role, f);
        }
    }
}

/// §5.5.3: while pongs wait for a backlog, only the most recent ping is
/// answered, once the backlog is written.
#[test]
fn waiting_pongs_answer_the_most_recent_ping() {
    let config = Config {
        pong_backlog_threshold: 0,
        ..Config::default()
    };
    let mut conn = Connection::new(Role::Server, config);
    for i in 0..3u8 {
        conn.receive_data(&peer_frame(Role::Server, 0x89, &[i]));
    }
    assert_eq!(poll_all(&mut conn).len(), 3);
    // The first pong went out at once; the others wait for it to be written.
    assert_eq!(drain(&mut conn), [0x8a, 0x01, 0x00]);
    assert_eq!(drain(&mut conn), [0x8a, 0x01, 0x02]);
    assert_eq!(drain(&mut conn), []);
    // The count of coalesced pings starts again: no failure.
    for i in 0..3u8 {
        conn.receive_data(&peer_frame(Role::Server, 0x89, &[i]));
        assert_eq!(poll_all(&mut conn), [msg(Message::Ping(vec![i].into()))]);
        assert_eq!(drain(&mut conn), [0x8a, 0x01, i]);
    }
}

#[test]
fn pong_is_not_sent_after_close() {
    let config = Config {
        pong_backlog_threshold: 0,
        ..Config::default()
    };
    let mut conn = Connection::new(Role::Server, config);
    conn.send(Message::text("backlog")).unwrap();
    conn.receive_data(&peer_frame(Role::Server, 0x89, b"late"));
    assert_eq!(poll_all(&mut conn), [msg(Message::Ping("late".into()))]);
    // The pong waits behind the backlog; the close overtakes it for good.
    conn.close(None).unwrap();
    let frames = parse_frames(&drain(&mut conn));
    let opcodes: Vec<_> = frames.iter().map(|f| f.opcode).collect();
    assert_eq!(opcodes, [OpCode::Text, OpCode::Close]);
    assert_eq!(drain(&mut conn), []);
}

#[test]
fn control_payload_over_125_bytes_cannot_be_sent() {
    for role in BOTH {
        let mut conn = Connection::new(role, Config::default());
        assert_eq!(
            conn.send(Message::Ping(vec![0; 126].into())),
            Err(SendError::ControlTooLong(126))
        );
        assert_eq!(
            conn.send(Message::Pong(vec![0; 1000].into())),
            Err(SendError::ControlTooLong(1000))
        );
        assert_eq!(drain(&mut conn), []);
        conn.send(Message::Ping(vec![0; 125].into())).unwrap();
        assert_eq!(parse_frames(&drain(&mut conn))[0].payload.len(), 125);
    }
}

// ---- ordering ----

/// A valid message followed by a frame that fails, in one read: the
/// message is delivered first, what the application sends in answer goes
/// out before the close frame, and the error comes next.
#[test]
fn echo_what_was_valid_before_failing() {
    for role in BOTH {
        let mut conn = Connection::new(role, Config::default());
        let mut input = peer_frame(role, 0x81, b"Hello");
        input.extend(peer_frame(role, 0xc1, b"compressed?"));
        conn.receive_data(&input);
        let Ok(Some(Event::Message(echo))) = conn.poll_event() else {
            panic!("the valid message comes first");
        };
        assert_eq!(echo, Message::text("Hello"));
        conn.send(echo).unwrap();
        assert_eq!(conn.poll_event(), Err(ProtocolError::ReservedBits(0b100)));
        let frames = parse_frames(&drain(&mut conn));
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].opcode, OpCode::Text);
        assert_eq!(frames[0].payload, b"Hello");
        assert_eq!(frames[1].opcode, OpCode::Close);
        let close = CloseFrame::parse(frames[1].payload.clone().into())
            .unwrap()
            .unwrap();
        assert_eq!(close.code, CloseCode::PROTOCOL_ERROR);
        for f in &frames {
            assert_masking(role, f);
        }
        assert_eq!(conn.poll_event(), Ok(None));
    }
}

/// Events are decoded lazily, so replies follow the order in which the
/// application consumes them.
#[test]
fn pong_and_application_data_keep_event_order() {
    let mut conn = Connection::new(Role::Server, Config::default());
    conn.receive_data(&peer_frame(Role::Server, 0x81, b"one"));
    conn.receive_data(&peer_frame(Role::Server, 0x89, b"p"));
    assert_eq!(conn.poll_event(), Ok(Some(msg(Message::text("one")))));
    conn.send(Message::text("reply one")).unwrap();
    assert_eq!(conn.poll_event(), Ok(Some(msg(Message::Ping("p".into())))));
    conn.send(Message::text("after ping")).unwrap();
    let mut expect = raw_frame(0x81, None, b"reply one");
    expect.extend(raw_frame(0x8a, None, b"p"));
    expect.extend(raw_frame(0x81, None, b"after ping"));
    assert_eq!(drain(&mut conn), expect);
}

#[test]
fn control_frames_inside_a_received_fragmented_message() {
    for role in BOTH {
        let mut conn = Connection::new(role, Config::default());
        conn.receive_data(&peer_frame(role, 0x01, b"Hel"));
        conn.receive_data(&peer_frame(role, 0x89, b"1"));
        conn.receive_data(&peer_frame(role, 0x00, b"l"));
        conn.receive_data(&peer_frame(role, 0x8a, b"2"));
        conn.receive_data(&peer_frame(role, 0x80, b"o"));
        assert_eq!(
            poll_all(&mut conn),
            [
                msg(Message::Ping("1".into())),
                msg(Message::Pong("2".into())),
                msg(Message::text("Hello")),
            ]
        );
        let frames = parse_frames(&drain(&mut conn));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].opcode, OpCode::Pong);
        assert_eq!(frames[0].payload, b"1");
    }
}

#[test]
fn control_frames_inside_a_sent_fragmented_message() {
    let mut conn = Connection::new(Role::Server, Config::default());
    let piece = |data: &'static str, fin| Fragment {
        kind: DataKind::Binary,
        data: data.into(),
        fin,
    };
    conn.send_fragment(piece("Hel", false)).unwrap();
    conn.send(Message::Ping("1".into())).unwrap();
    // No other data message until this one ends.
    assert_eq!(
        conn.send(Message::text("no")),
        Err(SendError::FragmentInProgress)
    );
    let prepared = PreparedMessage::new(Message::binary(vec![1]));
    assert_eq!(
        conn.send_prepared(&prepared),
        Err(SendError::FragmentInProgress)
    );
    // The kind of later fragments is ignored.
    conn.send_fragment(Fragment {
        kind: DataKind::Text,
        ..piece("l", false)
    })
    .unwrap();
    conn.send_prepared(&PreparedMessage::new(Message::Pong("2".into())))
        .unwrap();
    conn.send_fragment(piece("o", true)).unwrap();
    conn.send(Message::text("next")).unwrap();
    let mut expect = raw_frame(0x02, None, b"Hel");
    expect.extend(raw_frame(0x89, None, b"1"));
    expect.extend(raw_frame(0x00, None, b"l"));
    expect.extend(raw_frame(0x8a, None, b"2"));
    expect.extend(raw_frame(0x80, None, b"o"));
    expect.extend(raw_frame(0x81, None, b"next"));
    assert_eq!(drain(&mut conn), expect);
}

#[test]
fn prepared_messages_match_send() {
    let big = vec![9u8; 70_000];
    for message in [
        Message::text("tick"),
        Message::binary(big),
        Message::Ping("p".into()),
    ] {
        let prepared = PreparedMessage::new(message.clone());
        let mut a = Connection::new(Role::Server, Config::default());
        let mut b = Connection::new(Role::Server, Config::default());
        a.send_prepared(&prepared).unwrap();
        b.send(message.clone()).unwrap();
        assert_eq!(drain(&mut a), drain(&mut b));

        // A client masks it; a server reads it back.
        let mut client = Connection::new(Role::Client, Config::default());
        client.send_prepared(&prepared).unwrap();
        let mut server = Connection::new(Role::Server, Config::default());
        server.receive_data(&drain(&mut client));
        assert_eq!(poll_all(&mut server), [msg(message)]);
    }
    // A prepared control payload over 125 bytes is cut to 125.
    let prepared = PreparedMessage::new(Message::Ping(vec![1; 200].into()));
    assert_eq!(prepared.payload().len(), 125);
}

#[test]
fn unfinished_sent_message_may_still_be_closed() {
    let mut conn = Connection::new(Role::Server, Config::default());
    conn.send_fragment(Fragment {
        kind: DataKind::Text,
        data: "part".into(),
        fin: false,
    })
    .unwrap();
    conn.close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "")))
        .unwrap();
    let frames = parse_frames(&drain(&mut conn));
    assert_eq!(frames.len(), 2);
    assert!(!frames[0].fin);
    assert_eq!(frames[1].opcode, OpCode::Close);
}

#[test]
fn a_waiting_pong_counts_as_buffered_and_goes_out_once_drained() {
    let config = Config {
        pong_backlog_threshold: 0,
        max_coalesced_pings: 1,
        ..Config::default()
    };
    let mut conn = Connection::new(Role::Server, config);
    conn.receive_data(&peer_frame(Role::Server, 0x89, &[1]));
    conn.receive_data(&peer_frame(Role::Server, 0x89, &[2]));
    assert_eq!(poll_all(&mut conn).len(), 2);
    // One pong queued, one waiting: both count.
    assert_eq!(conn.buffered_amount(), 6);
    assert_eq!(drain(&mut conn), [0x8a, 0x01, 0x01]);
    // The backlog drained: the next ping first sends the waiting pong, so
    // it is not coalesced (one more coalesced ping would fail the
    // connection with max_coalesced_pings = 1).
    conn.receive_data(&peer_frame(Role::Server, 0x89, &[3]));
    assert_eq!(poll_all(&mut conn).len(), 1);
    conn.receive_data(&peer_frame(Role::Server, 0x89, &[4]));
    assert_eq!(poll_all(&mut conn).len(), 1);
    assert_eq!(drain(&mut conn), [0x8a, 0x01, 0x02]);
    assert_eq!(drain(&mut conn), [0x8a, 0x01, 0x04]);
}

#[test]
fn an_invalid_close_from_the_peer_ends_the_connection() {
    for body in [vec![0x03], close_body(1005, b""), close_body(1000, &[0xff])] {
        let mut conn = Connection::new(Role::Server, Config::default());
        conn.receive_data(&peer_frame(Role::Server, 0x88, &body));
        assert!(conn.poll_event().is_err());
        // The peer already closed: no second close frame will come.
        assert_eq!(conn.state(), State::Closed);
        assert!(conn.close_info().received.is_some());
        assert!(conn.close_info().sent.is_some());
        drain(&mut conn);
        assert!(conn.wants_transport_closed());
    }
}

#[test]
fn a_close_read_past_a_failure_is_recorded() {
    let mut conn = Connection::new(Role::Server, Config::default());
    // Invalid UTF-8 fails the connection; the framing stays readable.
    conn.receive_data(&peer_frame(Role::Server, 0x81, &[0xff]));
    assert!(conn.poll_event().is_err());
    assert_eq!(conn.state(), State::Closing);
    conn.receive_data(&peer_frame(Role::Server, 0x88, &close_body(1000, b"")));
    assert_eq!(conn.poll_event(), Ok(None));
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.close_info().received.is_some());
}

#[test]
fn prepared_close_reason_is_cut_at_a_character_boundary() {
    let reason = "€".repeat(60); // 180 bytes
    let prepared = PreparedMessage::new(Message::Close(Some(CloseFrame::new(
        CloseCode::GOING_AWAY,
        reason,
    ))));
    let payload = prepared.payload();
    assert!(payload.len() <= 125);
    assert_eq!(&payload[..2], &1001u16.to_be_bytes());
    let text = std::str::from_utf8(&payload[2..]).expect("whole characters");
    assert_eq!(text, "€".repeat(41));
}

#[test]
fn read_hint_tells_the_rest_of_a_frame() {
    let mut conn = Connection::new(Role::Server, Config::default());
    assert_eq!(conn.read_hint(), 0);
    let frame = peer_frame(Role::Server, 0x82, &vec![7u8; 70_000]);
    conn.receive_data(&frame[..1000]);
    assert_eq!(conn.poll_event(), Ok(None));
    // 14 header bytes were consumed; 986 payload bytes are here.
    assert_eq!(conn.read_hint(), 70_000 - 986);
    conn.receive_data(&frame[1000..]);
    assert!(matches!(conn.poll_event(), Ok(Some(_))));
    assert_eq!(conn.read_hint(), 0);
}

/// A prepared message taken by `send_prepared_direct` is the caller's to
/// write: nothing is queued; what the transport did not take goes back in
/// front of what was queued since. It is refused where it cannot apply.
#[test]
fn a_prepared_frame_written_by_the_caller_and_its_unwritten_rest() {
    let prepared = PreparedMessage::new(Message::text("hello"));
    let mut conn = Connection::new(Role::Server, Config::default());
    let frame = conn
        .send_prepared_direct(&prepared)
        .unwrap()
        .expect("a small message on an idle server connection")
        .clone();
    assert_eq!(&frame[..], b"\x81\x05hello");
    assert_eq!(conn.buffered_amount(), 0);
    conn.send(Message::text("x")).unwrap();
    // Bytes wait in the send buffer: they go first, so no direct write.
    assert_eq!(conn.send_prepared_direct(&prepared), Ok(None));
    conn.requeue_unwritten(frame.slice(3..));
    assert_eq!(drain(&mut conn), b"ello\x81\x01x");

    // A client masks each frame; a large message is queued by reference.
    let mut client = Connection::new(Role::Client, Config::default());
    assert_eq!(client.send_prepared_direct(&prepared), Ok(None));
    let large = PreparedMessage::new(Message::binary(vec![7u8; 64 * 1024]));
    let mut server = Connection::new(Role::Server, Config::default());
    assert_eq!(server.send_prepared_direct(&large), Ok(None));

    // Closed: refused like any send.
    server.close(None).unwrap();
    assert_eq!(
        server.send_prepared_direct(&prepared),
        Err(SendError::Closed)
    );
}
