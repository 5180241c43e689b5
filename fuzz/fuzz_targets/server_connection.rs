//! A whole server: the opening handshake of RFC 6455 §1.2, then a server
//! `Connection` fed arbitrary bytes and frames from the client, interleaved
//! with arbitrary application actions (send text, binary, ping, fragments,
//! prepared messages, close; drain the send queue partly or wholly; poll;
//! end of file).
//!
//! Checks, after every step: no panic; legal state moves (Open -> Closing ->
//! Closed, or Open -> Closed); every send returns what the rules say
//! (`Closed` once closing, `FragmentInProgress`, `ControlTooLong`, bad close
//! codes and reasons); once our close frame is queued nothing more is queued;
//! `buffered_amount` stays within what the application queued plus the pong
//! backlog threshold plus our own control frames (see `OWN_FRAMES`); the
//! events obey the config and `poll_event`'s contract. Everything queued is
//! decoded with the reference parser: well-formed unmasked frames, valid
//! close payloads, nothing after our close frame, the application's messages
//! in order and unchanged, pongs that echo received pings, and the close
//! frame that `close_info().sent` reports.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ws_proto::bytes::Bytes;
use ws_proto::handshake::{parse_request_head, write_response, Accept, Limits, UpgradeRequest};
use ws_proto::{
    CloseFrame, Connection, DataKind, Fragment, Initiator, Message, PreparedMessage, Role,
    SendError, State,
};
use ws_proto_fuzz::{
    check_own_output, client_frame, code_is_sendable, Blob, EventChecker, Knobs, WireChecker,
    WireMessage,
};

/// The client's opening handshake of RFC 6455 §1.2.
const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// Largest frame a server sends on its own: a pong or a close, each at most
/// 2 header bytes and 125 payload bytes.
const CONTROL_FRAME: usize = 127;

/// How far `buffered_amount` may exceed the pong backlog threshold plus what
/// the application queued: a pong written while the queue was at the
/// threshold, a held-back pong (counted in `buffered_amount` before it is
/// queued) and our close frame.
const OWN_FRAMES: usize = 3 * CONTROL_FRAME;

#[derive(Debug, Arbitrary)]
struct Input {
    knobs: Knobs,
    /// Poll events after every batch of received bytes.
    auto_poll: bool,
    /// Bytes that arrive in the same read as the handshake request.
    first: Blob,
    actions: Vec<Action>,
}

#[derive(Debug, Arbitrary)]
enum Action {
    /// Raw bytes from the client.
    Peer(Blob),
    /// A frame from the client, delivered in two pieces.
    PeerFrame(PeerFrame),
    /// A masked close frame from the client.
    PeerClose {
        code: u16,
        reason: Blob,
        key: [u8; 4],
    },
    Poll,
    Text(Blob),
    Binary(Blob),
    Ping(Blob),
    Fragment {
        text: bool,
        data: Blob,
        fin: bool,
    },
    Prepared {
        text: bool,
        data: Blob,
    },
    Close(Option<(u16, Blob)>),
    Drain(u16),
    DrainAll,
    Eof,
}

#[derive(Debug, Arbitrary)]
struct PeerFrame {
    fin: bool,
    opcode: Op,
    rsv: Option<u8>,
    unmasked: bool,
    key: [u8; 4],
    payload: Blob,
    split: u16,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Op {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
    Other(u8),
}

impl Op {
    fn bits(self) -> u8 {
        match self {
            Op::Continuation => 0,
            Op::Text => 1,
            Op::Binary => 2,
            Op::Close => 8,
            Op::Ping => 9,
            Op::Pong => 10,
            Op::Other(b) => b & 0x0f,
        }
    }
}

struct Harness {
    conn: Connection,
    events: EventChecker,
    wire: WireChecker,
    auto_poll: bool,
    /// The application's messages, in the order they complete on the wire.
    expected: Vec<WireMessage>,
    /// The application's fragmented message in progress.
    fragment: Option<(DataKind, Vec<u8>)>,
    /// Bytes the application queued since `buffered_amount` was last seen
    /// at or under the pong backlog threshold.
    app_since_low: usize,
    /// Bytes queued in all (taken + buffered) when our close was queued.
    total_at_close: Option<usize>,
}

impl Harness {
    fn receive(&mut self, bytes: &[u8]) {
        self.conn.receive_data(bytes);
        if self.auto_poll {
            self.events.poll(&mut self.conn);
        }
    }

    /// An application command: check its result against the expected one
    /// and account for the bytes it queued.
    fn command(
        &mut self,
        expect: Result<(), SendError>,
        f: impl FnOnce(&mut Connection) -> Result<(), SendError>,
    ) -> bool {
        let before = self.conn.buffered_amount();
        let r = f(&mut self.conn);
        assert_eq!(r, expect, "send result");
        let after = self.conn.buffered_amount();
        if r.is_ok() && self.conn.state() == State::Open {
            assert!(after > before, "a successful send queued nothing");
            self.app_since_low += after - before;
        } else if r.is_ok() {
            // Our close: a held-back pong stops counting (it will never be
            // sent), so count the close frame itself: 2 header bytes and at
            // most 125 of payload.
            self.app_since_low += CONTROL_FRAME;
        } else {
            assert_eq!(after, before, "a refused send queued bytes");
        }
        r.is_ok()
    }

    fn data_expect(&self) -> Result<(), SendError> {
        if self.conn.state() != State::Open {
            Err(SendError::Closed)
        } else if self.fragment.is_some() {
            Err(SendError::FragmentInProgress)
        } else {
            Ok(())
        }
    }

    fn step(&mut self, action: Action) {
        let open = self.conn.state() == State::Open;
        match action {
            Action::Peer(b) => self.receive(&b.0),
            Action::PeerFrame(f) => {
                let rsv = f.rsv.map_or(0, |r| r & 7);
                let mask = (!f.unmasked).then_some(f.key);
                let bytes = client_frame(f.fin, rsv, f.opcode.bits(), mask, &f.payload.0);
                let at = usize::from(f.split) % (bytes.len() + 1);
                self.receive(&bytes[..at]);
                self.receive(&bytes[at..]);
            }
            Action::PeerClose { code, reason, key } => {
                let mut payload = code.to_be_bytes().to_vec();
                payload.extend_from_slice(&reason.truncated(123));
                self.receive(&client_frame(true, 0, 8, Some(key), &payload));
            }
            Action::Poll => self.events.poll(&mut self.conn),
            Action::Text(b) => {
                let text = b.text();
                if self.command(self.data_expect(), |c| c.send(Message::text(text.clone()))) {
                    self.expected.push(WireMessage::Text(text.into_bytes()));
                }
            }
            Action::Binary(b) => {
                if self.command(self.data_expect(), |c| c.send(Message::binary(b.0.clone()))) {
                    self.expected.push(WireMessage::Binary(b.0));
                }
            }
            Action::Ping(b) => {
                let expect = if !open {
                    Err(SendError::Closed)
                } else if b.0.len() > 125 {
                    Err(SendError::ControlTooLong(b.0.len()))
                } else {
                    Ok(())
                };
                if self.command(expect, |c| c.send(Message::Ping(Bytes::from(b.0.clone())))) {
                    self.expected.push(WireMessage::Ping(b.0));
                }
            }
            Action::Fragment { text, data, fin } => {
                let kind = if text {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                // Later fragments' kind is ignored: keep a text message UTF-8.
                let kind_so_far = self.fragment.as_ref().map_or(kind, |(k, _)| *k);
                let bytes = match kind_so_far {
                    DataKind::Text => data.text().into_bytes(),
                    DataKind::Binary => data.0,
                };
                let expect = if open { Ok(()) } else { Err(SendError::Closed) };
                let frag = Fragment {
                    kind,
                    data: Bytes::from(bytes.clone()),
                    fin,
                };
                if self.command(expect, |c| c.send_fragment(frag)) {
                    let (k, mut so_far) = self.fragment.take().unwrap_or((kind, Vec::new()));
                    so_far.extend_from_slice(&bytes);
                    if fin {
                        self.expected.push(match k {
                            DataKind::Text => WireMessage::Text(so_far),
                            DataKind::Binary => WireMessage::Binary(so_far),
                        });
                    } else {
                        self.fragment = Some((k, so_far));
                    }
                }
            }
            Action::Prepared { text, data } => {
                let (msg, wire) = if text {
                    let t = data.text();
                    (Message::text(t.clone()), WireMessage::Text(t.into_bytes()))
                } else {
                    (Message::binary(data.0.clone()), WireMessage::Binary(data.0))
                };
                let prepared = PreparedMessage::new(msg);
                if self.command(self.data_expect(), |c| c.send_prepared(&prepared)) {
                    self.expected.push(wire);
                }
            }
            Action::Close(frame) => {
                let frame = frame.map(|(code, reason)| CloseFrame::new(code.into(), reason.text()));
                let expect = match &frame {
                    _ if !open => Err(SendError::Closed),
                    Some(f) if !code_is_sendable(f.code.as_u16()) => {
                        Err(SendError::InvalidCloseCode(f.code.as_u16()))
                    }
                    Some(f) if f.reason.len() > 123 => {
                        Err(SendError::ReasonTooLong(f.reason.len()))
                    }
                    _ => Ok(()),
                };
                if self.command(expect, |c| c.close(frame.clone())) {
                    assert_eq!(self.conn.state(), State::Closing);
                    let info = self.conn.close_info();
                    let sent = frame.unwrap_or_else(|| CloseFrame::new(1005.into(), ""));
                    assert_eq!(info.sent.as_ref(), Some(&sent));
                    assert_eq!(info.initiator, Some(Initiator::Local));
                }
            }
            Action::Drain(n) => self.wire.drain_some(&mut self.conn, usize::from(n)),
            Action::DrainAll => self.wire.drain(&mut self.conn),
            Action::Eof => {
                self.conn.receive_eof();
                if self.auto_poll {
                    self.events.poll(&mut self.conn);
                    assert_eq!(
                        self.conn.state(),
                        State::Closed,
                        "not Closed after end of file"
                    );
                }
            }
        }
        self.check();
    }

    /// The invariants that hold between any two steps.
    fn check(&mut self) {
        self.events.check_state(&self.conn);
        let buffered = self.conn.buffered_amount();
        let total = self.wire.total + buffered;
        match self.total_at_close {
            // `<=`: a held-back pong counted in `buffered_amount` is dropped
            // once we have sent our close.
            Some(t) => assert!(
                total <= t,
                "{} bytes queued after our close frame",
                total - t
            ),
            None if self.conn.close_info().sent.is_some() => self.total_at_close = Some(total),
            None => {}
        }
        let threshold = self.conn.config().pong_backlog_threshold;
        let bound = threshold
            .saturating_add(self.app_since_low)
            .saturating_add(OWN_FRAMES);
        assert!(
            buffered <= bound,
            "buffered_amount {buffered} over {bound} (threshold {threshold}, app {})",
            self.app_since_low
        );
        if buffered <= threshold {
            self.app_since_low = 0;
        }
    }
}

fuzz_target!(|input: Input| {
    // The opening handshake, with the first WebSocket bytes in the same read.
    let mut read = REQUEST.to_vec();
    read.extend_from_slice(&input.first.0);
    let (req, n) = parse_request_head(&read, &Limits::default())
        .expect("RFC request parses")
        .expect("RFC request is complete");
    assert_eq!(n, REQUEST.len());
    let up = UpgradeRequest::from_http(&req).expect("RFC request is an upgrade");
    let protocol = up.select_protocol(&["superchat"]).map(str::to_owned);
    assert_eq!(protocol.as_deref(), Some("superchat"));
    let resp = up
        .accept(&Accept::default().protocol("superchat"))
        .expect("accept");
    let head = write_response(&resp, b"");
    assert!(head.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));

    let conn = Connection::new(Role::Server, input.knobs.config());
    let mut h = Harness {
        events: EventChecker::new(&conn),
        conn,
        wire: WireChecker::new(Role::Server),
        auto_poll: input.auto_poll,
        expected: Vec::new(),
        fragment: None,
        app_since_low: 0,
        total_at_close: None,
    };
    h.receive(&read[n..]);
    h.check();
    for action in input.actions {
        h.step(action);
    }
    h.step(Action::Poll);
    h.step(Action::DrainAll);
    h.wire.finish();
    assert_eq!(h.conn.buffered_amount(), 0);
    check_own_output(&h.wire, &h.events, &h.conn);
    let sent_by_app: Vec<_> = h
        .wire
        .messages
        .iter()
        .filter(|m| !matches!(m, WireMessage::Pong(_) | WireMessage::Close(_)))
        .cloned()
        .collect();
    assert_eq!(
        sent_by_app, h.expected,
        "the application's messages on the wire"
    );
});
