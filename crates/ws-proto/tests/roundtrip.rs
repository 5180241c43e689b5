//! Property tests: whatever one end sends, the other decodes to the same
//! messages in the same order, for either role as sender, any fragment size,
//! any way the byte stream is cut into reads, and with messages delivered
//! whole or as fragments.

use bytes::{Buf, Bytes};
use proptest::prelude::*;
use proptest::sample::Index;
use ws_proto::frame::{apply_mask, FrameHeader, OpCode};
use ws_proto::{
    CloseCode, CloseFrame, Config, Connection, DataKind, Event, Fragment, Initiator, Message, Role,
    State,
};

// ---- helpers ----

/// How a test takes bytes out of a connection's send buffer: chunk by
/// chunk, or with `copy_to_bytes` of at most this many bytes at a time.
#[derive(Debug, Clone, Copy)]
enum Take {
    Chunks,
    CopyToBytes(usize),
}

fn drain(conn: &mut Connection, take: Take) -> Vec<u8> {
    let out = conn.transmit();
    let mut all = Vec::with_capacity(out.remaining());
    while out.has_remaining() {
        match take {
            Take::Chunks => {
                let n = {
                    let chunk = out.chunk();
                    all.extend_from_slice(chunk);
                    chunk.len()
                };
                out.advance(n);
            }
            Take::CopyToBytes(max) => {
                let n = max.min(out.remaining());
                let bytes = out.copy_to_bytes(n);
                assert_eq!(bytes.len(), n);
                all.extend_from_slice(&bytes);
            }
        }
    }
    assert_eq!(conn.buffered_amount(), 0);
    all
}

/// A frame read back from the wire, payload unmasked.
struct WireFrame {
    fin: bool,
    opcode: OpCode,
    masked: bool,
    payload: Vec<u8>,
}

fn parse_frames(mut bytes: &[u8]) -> Vec<WireFrame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (h, n) = FrameHeader::decode(bytes).unwrap().expect("whole header");
        assert_eq!(h.rsv, 0);
        let len = h.payload_len as usize;
        // The length has its minimal encoding (§5.2).
        assert_eq!(n, h.encoded_len());
        let mut payload = bytes[n..n + len].to_vec();
        if let Some(key) = h.mask {
            apply_mask(&mut payload, key);
        }
        frames.push(WireFrame {
            fin: h.fin,
            opcode: h.opcode,
            masked: h.mask.is_some(),
            payload,
        });
        bytes = &bytes[n + len..];
    }
    frames
}

/// Feed `bytes` to `conn` in reads of the sizes in `reads` (repeated as
/// needed), polling after each read; all the events.
fn deliver(conn: &mut Connection, bytes: &[u8], reads: &[usize]) -> Vec<Event> {
    let mut events = Vec::new();
    let mut rest = bytes;
    let mut sizes = reads.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).clamp(1, rest.len());
        conn.receive_data(&rest[..n]);
        rest = &rest[n..];
        while let Some(event) = conn.poll_event().expect("no protocol error") {
            events.push(event);
        }
    }
    events
}

/// Events as messages: fragments concatenated into the message they are
/// pieces of. Checks that data arrives whole or in fragments as configured.
fn reassemble(events: Vec<Event>, deliver_fragments: bool) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut current: Option<(DataKind, Vec<u8>)> = None;
    for event in events {
        match event {
            Event::Message(m) => {
                assert!(
                    !(deliver_fragments && m.is_data()),
                    "data must come as fragments"
                );
                messages.push(m);
            }
            Event::Fragment(f) => {
                assert!(deliver_fragments, "data must come whole");
                let (kind, data) = current.get_or_insert_with(|| (f.kind, Vec::new()));
                assert_eq!(*kind, f.kind);
                data.extend_from_slice(&f.data);
                if f.fin {
                    let (kind, data) = current.take().unwrap();
                    messages.push(match kind {
                        DataKind::Text => Message::text(String::from_utf8(data).unwrap()),
                        DataKind::Binary => Message::binary(data),
                    });
                }
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(current.is_none(), "a fragmented message did not end");
    messages
}

fn roles(sender_is_client: bool) -> (Role, Role) {
    if sender_is_client {
        (Role::Client, Role::Server)
    } else {
        (Role::Server, Role::Client)
    }
}

fn ping_payloads(messages: &[Message]) -> Vec<Vec<u8>> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Ping(p) => Some(p.to_vec()),
            _ => None,
        })
        .collect()
}

/// The receiver answered every ping, in order, with the ping's payload.
fn check_pongs(receiver: &mut Connection, sent: &[Message]) {
    let frames = parse_frames(&drain(receiver, Take::Chunks));
    let pongs: Vec<_> = frames
        .iter()
        .filter(|f| f.opcode == OpCode::Pong)
        .map(|f| f.payload.clone())
        .collect();
    assert_eq!(pongs, ping_payloads(sent));
}

// ---- strategies ----

fn bytes_up_to(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

fn control() -> impl Strategy<Value = Message> {
    prop_oneof![
        bytes_up_to(125).prop_map(|p| Message::Ping(p.into())),
        bytes_up_to(125).prop_map(|p| Message::Pong(p.into())),
    ]
}

fn data() -> impl Strategy<Value = Message> {
    prop_oneof![
        4 => any::<String>().prop_map(Message::text),
        4 => bytes_up_to(1500).prop_map(Message::binary),
        // Around the 16-bit length boundary, and large enough to be queued
        // by reference.
        1 => (65_530usize..65_545).prop_map(|n| Message::binary(vec![0xa5; n])),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![3 => data(), 1 => control()]
}

fn fragment_size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0usize), 1usize..50, 100usize..3000]
}

/// Read sizes: one byte at a time, small reads, or large ones.
fn reads() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        Just(vec![1usize]),
        proptest::collection::vec(1usize..64, 1..16),
        proptest::collection::vec(1usize..100_000, 1..4),
    ]
}

fn take() -> impl Strategy<Value = Take> {
    prop_oneof![
        Just(Take::Chunks),
        (1usize..2000).prop_map(Take::CopyToBytes),
    ]
}

/// A close frame a sender may send: a sendable code and a reason of at
/// most 123 bytes, or no status.
fn close_frame() -> impl Strategy<Value = Option<CloseFrame>> {
    let code = prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999];
    proptest::option::of((code, "\\PC{0,50}").prop_map(|(code, mut reason)| {
        while reason.len() > 123 {
            reason.pop();
        }
        CloseFrame::new(CloseCode::from(code), reason)
    }))
}

/// A data message sent in pieces cut at `cuts`, with control messages
/// sent after some of the pieces.
#[derive(Debug, Clone)]
struct Pieces {
    message: Message,
    cuts: Vec<Index>,
    controls: Vec<Option<Message>>,
}

fn pieces() -> impl Strategy<Value = Pieces> {
    (
        prop_oneof![
            any::<String>().prop_map(Message::text),
            bytes_up_to(300).prop_map(Message::binary),
        ],
        proptest::collection::vec(any::<Index>(), 0..6),
        proptest::collection::vec(proptest::option::of(control()), 0..6),
    )
        .prop_map(|(message, cuts, controls)| Pieces {
            message,
            cuts,
            controls,
        })
}

impl Pieces {
    /// Send it; the messages the receiver must see, in order.
    fn send(&self, conn: &mut Connection) -> Vec<Message> {
        let kind = if self.message.is_text() {
            DataKind::Text
        } else {
            DataKind::Binary
        };
        let payload = self.message.clone().into_payload();
        let mut cuts: Vec<usize> = self
            .cuts
            .iter()
            .map(|i| i.index(payload.len() + 1))
            .collect();
        cuts.sort_unstable();
        cuts.push(payload.len());
        let mut expect = Vec::new();
        let mut start = 0;
        for (i, &end) in cuts.iter().enumerate() {
            // A text piece may end inside a code point.
            let fin = i + 1 == cuts.len();
            let fragment = Fragment {
                kind,
                data: payload.slice(start..end),
                fin,
            };
            conn.send_fragment(fragment).unwrap();
            start = end;
            if let (false, Some(Some(control))) = (fin, self.controls.get(i)) {
                conn.send(control.clone()).unwrap();
                expect.push(control.clone());
            }
        }
        expect.push(self.message.clone());
        expect
    }
}

// ---- properties ----

proptest! {
    #[test]
    fn messages_round_trip(
        messages in proptest::collection::vec(message(), 0..8),
        sender_is_client: bool,
        fragment_size in fragment_size(),
        deliver_fragments: bool,
        reads in reads(),
        take in take(),
    ) {
        let (sender_role, receiver_role) = roles(sender_is_client);
        let mut config = Config::default();
        config.fragment_size = fragment_size;
        let mut sender = Connection::new(sender_role, config);
        let mut config = Config::default();
        config.deliver_fragments = deliver_fragments;
        let mut receiver = Connection::new(receiver_role, config);

        for m in &messages {
            sender.send(m.clone()).unwrap();
        }
        let bytes = drain(&mut sender, take);

        // The frames: masked by a client only, data split by fragment_size.
        let frames = parse_frames(&bytes);
        let mut data_frames = 0;
        for f in &frames {
            prop_assert_eq!(f.masked, sender_is_client);
            if !f.opcode.is_control() {
                data_frames += 1;
                if fragment_size > 0 {
                    prop_assert!(f.payload.len() <= fragment_size);
                }
            }
        }
        let data_messages = messages.iter().filter(|m| m.is_data()).count();
        if fragment_size == 0 {
            prop_assert_eq!(data_frames, data_messages);
        }
        prop_assert_eq!(frames.iter().filter(|f| f.fin).count(), messages.len());

        let events = deliver(&mut receiver, &bytes, &reads);
        prop_assert_eq!(reassemble(events, deliver_fragments), messages.clone());
        prop_assert_eq!(receiver.state(), State::Open);
        check_pongs(&mut receiver, &messages);
    }

    #[test]
    fn control_frames_between_fragments(
        parts in proptest::collection::vec(pieces(), 1..4),
        sender_is_client: bool,
        deliver_fragments: bool,
        reads in reads(),
    ) {
        let (sender_role, receiver_role) = roles(sender_is_client);
        let mut sender = Connection::new(sender_role, Config::default());
        let mut config = Config::default();
        config.deliver_fragments = deliver_fragments;
        let mut receiver = Connection::new(receiver_role, config);

        let mut expect = Vec::new();
        for p in &parts {
            expect.extend(p.send(&mut sender));
        }
        let bytes = drain(&mut sender, Take::Chunks);
        let events = deliver(&mut receiver, &bytes, &reads);
        if deliver_fragments {
            // Fragments and controls arrive in the order they were sent.
            let mut sent = parse_frames(&bytes).into_iter();
            for event in &events {
                let frame = sent.next().unwrap();
                match event {
                    Event::Fragment(f) => {
                        prop_assert!(!frame.opcode.is_control());
                        prop_assert_eq!(&f.data[..], &frame.payload[..]);
                        prop_assert_eq!(f.fin, frame.fin);
                    }
                    Event::Message(m) => prop_assert_eq!(m.as_payload(), &frame.payload[..]),
                    other => panic!("unexpected event {other:?}"),
                }
            }
            prop_assert!(sent.next().is_none());
        }
        prop_assert_eq!(reassemble(events, deliver_fragments), expect.clone());
        check_pongs(&mut receiver, &expect);
    }

    #[test]
    fn messages_then_closing_handshake(
        messages in proptest::collection::vec(message(), 0..6),
        close in close_frame(),
        sender_is_client: bool,
        fragment_size in fragment_size(),
        deliver_fragments: bool,
        reads in reads(),
    ) {
        let (sender_role, receiver_role) = roles(sender_is_client);
        let mut config = Config::default();
        config.fragment_size = fragment_size;
        config.deliver_fragments = deliver_fragments;
        let mut sender = Connection::new(sender_role, config.clone());
        let mut receiver = Connection::new(receiver_role, config);

        for m in &messages {
            sender.send(m.clone()).unwrap();
        }
        sender.close(close.clone()).unwrap();
        prop_assert_eq!(sender.state(), State::Closing);
        let bytes = drain(&mut sender, Take::Chunks);

        // The receiver gets everything, then the close, and answers it.
        let events = deliver(&mut receiver, &bytes, &reads);
        let mut expect = messages.clone();
        expect.push(Message::Close(close.clone()));
        prop_assert_eq!(reassemble(events, deliver_fragments), expect);
        prop_assert_eq!(receiver.state(), State::Closed);
        let reply = drain(&mut receiver, Take::Chunks);
        let frames = parse_frames(&reply);
        let last = frames.last().unwrap();
        prop_assert_eq!(last.opcode, OpCode::Close);
        let echo = close.as_ref().map(|f| CloseFrame::new(f.code, ""));
        prop_assert_eq!(&CloseFrame::parse(Bytes::from(last.payload.clone())).unwrap(), &echo);

        // The sender gets the pongs, then the reply.
        let events = deliver(&mut sender, &reply, &reads);
        let mut expect: Vec<_> = ping_payloads(&messages)
            .into_iter()
            .map(|p| Message::Pong(p.into()))
            .collect();
        expect.push(Message::Close(echo.clone()));
        prop_assert_eq!(reassemble(events, deliver_fragments), expect);
        prop_assert_eq!(sender.state(), State::Closed);
        prop_assert_eq!(drain(&mut sender, Take::Chunks), Vec::<u8>::new());

        // Both ends agree on what happened.
        let no_status = CloseFrame::new(CloseCode::NO_STATUS, "");
        let sent = close.clone().unwrap_or_else(|| no_status.clone());
        let answered = echo.unwrap_or(no_status);
        let s = sender.close_info();
        prop_assert_eq!(s.sent.as_ref(), Some(&sent));
        prop_assert_eq!(s.received.as_ref(), Some(&answered));
        prop_assert_eq!(s.initiator, Some(Initiator::Local));
        let r = receiver.close_info();
        prop_assert_eq!(r.received.as_ref(), Some(&sent));
        prop_assert_eq!(r.sent.as_ref(), Some(&answered));
        prop_assert_eq!(r.initiator, Some(Initiator::Peer));

        // The server closes the transport; the client waits for it to.
        let (server, client) = if sender_is_client {
            (&mut receiver, &mut sender)
        } else {
            (&mut sender, &mut receiver)
        };
        prop_assert!(server.wants_transport_closed());
        prop_assert!(!client.wants_transport_closed());
        client.receive_eof();
        prop_assert_eq!(client.poll_event(), Ok(None));
        prop_assert!(client.wants_transport_closed());
    }
}
