//! The timers (keepalive, idle, close) on simulated time: every instant is
//! made by adding to one taken at the start, and nothing sleeps.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::{CloseCode, Config, ProtocolError, SendError, State};

const BOTH: [Role; 2] = [Role::Client, Role::Server];

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A connection with the default timers (ping every 20 s, 20 s to answer,
/// close timeout 10 s, no idle timeout), started at `t0`.
fn started(role: Role, config: Config) -> (Connection, Instant) {
    let mut conn = Connection::new(role, config);
    let t0 = Instant::now();
    conn.handle_timeout(t0);
    (conn, t0)
}

/// The keepalive ping a connection sent: its payload.
fn sent_ping(role: Role, conn: &mut Connection) -> Vec<u8> {
    let frames = parse_frames(&drain(conn));
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].opcode, OpCode::Ping);
    assert_masking(role, &frames[0]);
    assert_eq!(frames[0].payload.len(), 8);
    frames[0].payload.clone()
}

#[test]
fn no_timer_runs_before_the_first_call() {
    let conn = Connection::new(Role::Server, Config::default());
    assert_eq!(conn.poll_timeout(), None);
}

#[test]
fn a_ping_goes_out_after_an_interval_of_silence() {
    for role in BOTH {
        let (mut conn, t0) = started(role, Config::default());
        assert_eq!(conn.poll_timeout(), Some(t0 + secs(20.0)));
        conn.handle_timeout(t0 + secs(19.9));
        assert_eq!(drain(&mut conn), [], "not due yet");
        conn.handle_timeout(t0 + secs(20.0));
        sent_ping(role, &mut conn);
        // Now the ping's answer is awaited.
        assert_eq!(conn.poll_timeout(), Some(t0 + secs(40.0)));
        // No second ping while one is out.
        conn.handle_timeout(t0 + secs(30.0));
        assert_eq!(drain(&mut conn), []);
    }
}

#[test]
fn received_bytes_put_the_ping_off() {
    let (mut conn, t0) = started(Role::Server, Config::default());
    conn.handle_received(t0 + secs(15.0));
    assert_eq!(conn.poll_timeout(), Some(t0 + secs(35.0)));
    conn.handle_timeout(t0 + secs(20.0));
    assert_eq!(drain(&mut conn), []);
    conn.handle_timeout(t0 + secs(35.0));
    sent_ping(Role::Server, &mut conn);
}

#[test]
fn the_keepalive_pong_is_not_delivered_and_gives_the_round_trip() {
    for role in BOTH {
        let (mut conn, t0) = started(role, Config::default());
        assert_eq!(conn.rtt(), None);
        conn.handle_timeout(t0 + secs(20.0));
        let payload = sent_ping(role, &mut conn);
        conn.handle_received(t0 + secs(20.25));
        conn.receive_data(&peer_frame(role, 0x8a, &payload));
        assert_eq!(poll_all(&mut conn), [], "our pong is ours");
        assert_eq!(conn.rtt(), Some(secs(0.25)));
        // Answered: no failure at the ping's deadline, and the next ping
        // comes an interval after the pong.
        conn.handle_timeout(t0 + secs(40.0));
        assert_eq!(conn.failure(), None);
        assert_eq!(conn.state(), State::Open);
        assert_eq!(conn.poll_timeout(), Some(t0 + secs(40.25)));
        conn.handle_timeout(t0 + secs(40.25));
        sent_ping(role, &mut conn);
    }
}

#[test]
fn the_applications_pongs_are_delivered() {
    let role = Role::Client;
    let (mut conn, t0) = started(role, Config::default());
    conn.handle_timeout(t0 + secs(20.0));
    let ours = sent_ping(role, &mut conn);
    conn.send(Message::Ping(Bytes::from_static(b"app")))
        .unwrap();
    drain(&mut conn);
    conn.handle_received(t0 + secs(20.1));
    conn.receive_data(&peer_frame(role, 0x8a, b"app"));
    // An unsolicited pong with another payload is the application's too.
    conn.receive_data(&peer_frame(role, 0x8a, b"12345678"));
    conn.receive_data(&peer_frame(role, 0x8a, &ours));
    assert_eq!(
        poll_all(&mut conn),
        [
            msg(Message::Pong(Bytes::from_static(b"app"))),
            msg(Message::Pong(Bytes::from_static(b"12345678")))
        ]
    );
}

#[test]
fn a_late_pong_of_an_answered_ping_is_still_ours() {
    let role = Role::Server;
    let (mut conn, t0) = started(role, Config::default());
    conn.handle_timeout(t0 + secs(20.0));
    let payload = sent_ping(role, &mut conn);
    // Data arrives first, which answers the ping; its pong comes later.
    conn.handle_received(t0 + secs(21.0));
    conn.receive_data(&peer_frame(role, 0x81, b"hi"));
    assert_eq!(poll_all(&mut conn), [msg(Message::text("hi"))]);
    conn.handle_timeout(t0 + secs(22.0));
    conn.receive_data(&peer_frame(role, 0x8a, &payload));
    assert_eq!(poll_all(&mut conn), []);
}

#[test]
fn a_silent_peer_fails_the_connection() {
    for role in BOTH {
        let (mut conn, t0) = started(role, Config::default());
        conn.handle_timeout(t0 + secs(20.0));
        sent_ping(role, &mut conn);
        conn.send(Message::text("never written")).unwrap();
        conn.handle_timeout(t0 + secs(39.9));
        assert_eq!(conn.failure(), None);
        conn.handle_timeout(t0 + secs(40.0));
        assert_eq!(conn.failure(), Some(&ProtocolError::KeepaliveTimeout));
        assert_eq!(conn.state(), State::Closed);
        // No close frame: the peer is gone. What was queued is dropped.
        assert_eq!(conn.buffered_amount(), 0);
        assert!(conn.wants_transport_closed());
        assert_eq!(conn.poll_timeout(), None);
        // Reported once by poll_event, then the stream is over.
        assert_eq!(conn.poll_event(), Err(ProtocolError::KeepaliveTimeout));
        assert_eq!(conn.poll_event(), Ok(None));
        assert_eq!(conn.send(Message::text("x")), Err(SendError::Closed));
        assert_eq!(
            ProtocolError::KeepaliveTimeout.close_code(),
            CloseCode::ABNORMAL
        );
        // The error stays.
        conn.handle_timeout(t0 + secs(100.0));
        assert_eq!(conn.failure(), Some(&ProtocolError::KeepaliveTimeout));
    }
}

#[test]
fn keepalive_off_runs_no_timer_while_open() {
    let config = Config {
        ping_interval: None,
        ..Config::default()
    };
    let (mut conn, t0) = started(Role::Server, config);
    assert_eq!(conn.poll_timeout(), None);
    conn.handle_timeout(t0 + secs(3600.0));
    assert_eq!(drain(&mut conn), []);
    assert_eq!(conn.state(), State::Open);
}

#[test]
fn an_idle_connection_is_closed_with_1001() {
    let config = Config {
        ping_interval: None,
        idle_timeout: Some(secs(60.0)),
        ..Config::default()
    };
    let (mut conn, t0) = started(Role::Server, config);
    assert_eq!(conn.poll_timeout(), Some(t0 + secs(60.0)));
    // A message sent meanwhile: not idle at the first check.
    conn.send(Message::text("x")).unwrap();
    drain(&mut conn);
    conn.handle_timeout(t0 + secs(60.0));
    assert_eq!(conn.state(), State::Open);
    assert_eq!(conn.poll_timeout(), Some(t0 + secs(120.0)));
    // A message received: the same.
    conn.receive_data(&peer_frame(Role::Server, 0x82, b"y"));
    poll_all(&mut conn);
    conn.handle_timeout(t0 + secs(120.0));
    assert_eq!(conn.state(), State::Open);
    // Pings and pongs are not data.
    conn.receive_data(&peer_frame(Role::Server, 0x89, b"p"));
    poll_all(&mut conn);
    drain(&mut conn);
    conn.handle_timeout(t0 + secs(180.0));
    assert_eq!(conn.state(), State::Closing);
    let frame = only_close_frame(Role::Server, &drain(&mut conn)).unwrap();
    assert_eq!(
        frame,
        CloseFrame::new(CloseCode::GOING_AWAY, "idle timeout")
    );
    // The close timeout runs from here.
    assert_eq!(conn.poll_timeout(), Some(t0 + secs(190.0)));
}

#[test]
fn a_closing_handshake_that_never_ends_times_out() {
    for role in BOTH {
        let (mut conn, t0) = started(role, Config::default());
        conn.close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
            .unwrap();
        // The state changed since the last call: call again now.
        assert_eq!(conn.poll_timeout(), Some(t0));
        let t1 = t0 + secs(5.0);
        conn.handle_timeout(t1);
        assert_eq!(conn.poll_timeout(), Some(t1 + secs(10.0)));
        conn.handle_timeout(t1 + secs(9.9));
        assert_eq!(conn.failure(), None);
        conn.handle_timeout(t1 + secs(10.0));
        assert_eq!(conn.failure(), Some(&ProtocolError::CloseTimeout));
        assert!(conn.wants_transport_closed());
        assert_eq!(conn.buffered_amount(), 0, "the close frame is dropped");
        assert_eq!(conn.poll_event(), Err(ProtocolError::CloseTimeout));
        assert_eq!(conn.poll_event(), Ok(None));
    }
}

#[test]
fn no_ping_while_closing() {
    let (mut conn, t0) = started(Role::Server, Config::default());
    conn.close(None).unwrap();
    drain(&mut conn);
    conn.handle_timeout(t0 + secs(1.0));
    conn.handle_timeout(t0 + secs(10.9));
    assert_eq!(drain(&mut conn), []);
    assert_eq!(conn.poll_timeout(), Some(t0 + secs(11.0)));
}

#[test]
fn a_client_stops_waiting_for_the_servers_end_of_file() {
    let role = Role::Client;
    let (mut conn, t0) = started(role, Config::default());
    conn.close(None).unwrap();
    drain(&mut conn);
    conn.handle_timeout(t0);
    conn.receive_data(&peer_frame(role, 0x88, &[]));
    poll_all(&mut conn);
    assert_eq!(conn.state(), State::Closed);
    // A client waits for the server to close the transport (§7.1.1)...
    assert!(!conn.wants_transport_closed());
    conn.handle_timeout(t0 + secs(9.0));
    assert!(!conn.wants_transport_closed());
    // ...but not for ever; the handshake itself completed: no failure.
    conn.handle_timeout(t0 + secs(10.0));
    assert!(conn.wants_transport_closed());
    assert_eq!(conn.failure(), None);
    assert_eq!(conn.poll_event(), Ok(None));
}

/// The peer closed, our answer is queued, and the peer never reads it: at
/// the close timeout the connection drops it and asks for the transport to
/// be closed, rather than leaving a deadline that stays passed (an I/O
/// layer waiting on it would spin).
#[test]
fn an_unread_close_answer_is_dropped_at_the_close_timeout() {
    for role in BOTH {
        let (mut conn, t0) = started(role, Config::default());
        conn.send(Message::text("queued, never read")).unwrap();
        conn.receive_data(&peer_frame(role, 0x88, &1000u16.to_be_bytes()));
        poll_all(&mut conn);
        assert_eq!(conn.state(), State::Closed);
        assert!(conn.buffered_amount() > 0, "our answer waits");
        conn.handle_timeout(t0 + secs(1.0));
        assert_eq!(conn.poll_timeout(), Some(t0 + secs(11.0)));
        conn.handle_timeout(t0 + secs(11.0));
        assert!(conn.wants_transport_closed());
        assert_eq!(conn.poll_timeout(), None);
        assert_eq!(conn.failure(), Some(&ProtocolError::CloseTimeout));
        assert_eq!(conn.buffered_amount(), 0);
    }
}

#[test]
fn a_protocol_error_is_sticky() {
    let role = Role::Server;
    let (mut conn, _) = started(role, Config::default());
    conn.receive_data(&[0x81, 0x01, b'x']); // unmasked
    assert_eq!(conn.poll_event(), Err(ProtocolError::UnmaskedFrame));
    assert_eq!(conn.failure(), Some(&ProtocolError::UnmaskedFrame));
    assert_eq!(conn.poll_event(), Ok(None));
    assert_eq!(conn.failure(), Some(&ProtocolError::UnmaskedFrame));
}

/// Timeouts of `Duration::MAX` (a user's "never") reach past what an
/// `Instant` can hold: they never fire, and nothing panics.
#[test]
fn timeouts_of_duration_max_never_fire() {
    let config = Config {
        ping_interval: Some(Duration::MAX),
        ping_timeout: Duration::MAX,
        idle_timeout: Some(Duration::MAX),
        close_timeout: Duration::MAX,
        ..Config::default()
    };
    for role in BOTH {
        let (mut conn, t0) = started(role, config.clone());
        assert_eq!(conn.poll_timeout(), None);
        conn.handle_timeout(t0 + secs(1e6));
        assert_eq!(drain(&mut conn), [], "no ping");
        assert_eq!(conn.state(), State::Open);
        // While closing: the close timeout never ends it.
        conn.close(None).unwrap();
        drain(&mut conn);
        conn.handle_timeout(t0 + secs(2e6));
        assert_eq!(conn.poll_timeout(), None);
        conn.handle_timeout(t0 + secs(3e6));
        assert_eq!(conn.failure(), None);
        assert!(!conn.wants_transport_closed());
    }
    // A ping in flight whose answer may take forever.
    let config = Config {
        ping_interval: Some(secs(1.0)),
        ping_timeout: Duration::MAX,
        ..Config::default()
    };
    let (mut conn, t0) = started(Role::Server, config);
    conn.handle_timeout(t0 + secs(1.0));
    sent_ping(Role::Server, &mut conn);
    assert_eq!(conn.poll_timeout(), None);
    conn.handle_timeout(t0 + secs(1e6));
    assert_eq!(conn.failure(), None);
}

/// Timers of zero: each `handle_timeout` at one instant makes progress (a
/// ping, then its timeout; the idle close, then the close timeout), so a
/// driver that calls it whenever the deadline has passed never spins.
#[test]
fn timers_of_zero_do_not_spin_at_one_instant() {
    let zero = Duration::ZERO;
    for (interval, idle) in [
        (Some(zero), None),
        (None, Some(zero)),
        (Some(zero), Some(zero)),
    ] {
        for role in BOTH {
            let config = Config {
                ping_interval: interval,
                ping_timeout: zero,
                idle_timeout: idle,
                close_timeout: zero,
                ..Config::default()
            };
            let mut conn = Connection::new(role, config);
            let t0 = Instant::now();
            let mut calls = 0;
            loop {
                conn.handle_timeout(t0);
                calls += 1;
                match conn.poll_timeout() {
                    Some(d) if d <= t0 => assert!(calls < 5, "{interval:?} {idle:?}: spins"),
                    _ => break,
                }
            }
            assert!(conn.failure().is_some() || conn.state() != State::Open);
        }
    }
}
