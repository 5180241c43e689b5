//! Encode then decode: one `Connection` sends an arbitrary sequence of
//! messages (whole, split by an arbitrary `fragment_size`, sent fragment by
//! fragment with pings in between, or prepared), the bytes go in arbitrary
//! chunks to a `Connection` of the other role, which must yield exactly the
//! same messages (or, with `deliver_fragments`, exactly the frames sent);
//! its pongs and its answer to our close go back and must arrive as well.
//! Both directions: client to server, then server to client.
//!
//! Also checks everything on the wire with the reference parser (masking by
//! role, well-formed frames, nothing after the close frame).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ws_proto::bytes::{Buf, Bytes};
use ws_proto::{
    CloseFrame, Config, Connection, DataKind, Event, Fragment, Message, PreparedMessage, Role,
    SendError, State,
};
use ws_proto_fuzz::{code_is_sendable, size_sel, Blob, Chunker, EventChecker, WireChecker};

#[derive(Debug, Arbitrary)]
struct Input {
    fragment_size: u8,
    deliver_fragments: bool,
    chunk_max: u8,
    chunk_seed: u64,
    /// Close at the end: `Some(None)` without a status.
    close: Option<Option<(u16, Blob)>>,
    items: Vec<Item>,
}

#[derive(Debug, Arbitrary)]
enum Item {
    Text(Blob),
    Binary(Blob),
    Ping(Blob),
    Pong(Blob),
    /// Sent with `send_fragment`, each piece followed by an optional ping.
    Fragmented {
        text: bool,
        parts: Vec<(Blob, Option<Blob>)>,
    },
    Prepared {
        text: bool,
        data: Blob,
    },
    /// Move the bytes queued so far to the peer now.
    Transfer,
}

/// One end sending, the other receiving.
struct Pair {
    sender: Connection,
    receiver: Connection,
    sender_events: EventChecker,
    receiver_events: EventChecker,
    wire: WireChecker,
    back_wire: WireChecker,
    chunker: Chunker,
    /// What the receiver must yield.
    expect: Vec<Event>,
    /// What the sender must get back (pongs, the close answer).
    expect_back: Vec<Event>,
}

impl Pair {
    fn transfer(&mut self) {
        let out = self.sender.transmit();
        let bytes = out.copy_to_bytes(out.remaining());
        self.wire.feed(&bytes);
        for chunk in self.chunker.split(&bytes) {
            self.receiver.receive_data(chunk);
            self.receiver_events.poll(&mut self.receiver);
        }
    }

    fn transfer_back(&mut self) {
        let out = self.receiver.transmit();
        let bytes = out.copy_to_bytes(out.remaining());
        self.back_wire.feed(&bytes);
        for chunk in self.chunker.split(&bytes) {
            self.sender.receive_data(chunk);
            self.sender_events.poll(&mut self.sender);
        }
    }

    /// The events a data message sent with `send` arrives as.
    fn data(&mut self, kind: DataKind, payload: Vec<u8>, size: usize, deliver: bool) {
        let payload = Bytes::from(payload);
        if !deliver {
            self.expect.push(Event::Message(match kind {
                DataKind::Text => {
                    Message::Text(String::from_utf8(payload.to_vec()).expect("text").into())
                }
                DataKind::Binary => Message::Binary(payload),
            }));
            return;
        }
        if size == 0 || payload.len() <= size {
            self.expect.push(Event::Fragment(Fragment {
                kind,
                data: payload,
                fin: true,
            }));
            return;
        }
        let mut at = 0;
        while at < payload.len() {
            let end = (at + size).min(payload.len());
            self.expect.push(Event::Fragment(Fragment {
                kind,
                data: payload.slice(at..end),
                fin: end == payload.len(),
            }));
            at = end;
        }
    }

    fn ping(&mut self, p: Vec<u8>) {
        let p = Bytes::from(p);
        self.sender.send(Message::Ping(p.clone())).expect("ping");
        self.expect.push(Event::Message(Message::Ping(p.clone())));
        self.expect_back.push(Event::Message(Message::Pong(p)));
    }
}

fn run(input: &Input, sender_role: Role) {
    let receiver_role = match sender_role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let size = size_sel(input.fragment_size, 0);
    let deliver = input.deliver_fragments;
    let mut sender_config = Config::default();
    sender_config.fragment_size = size;
    let mut receiver_config = Config::default();
    receiver_config.deliver_fragments = deliver;
    // Answer every ping at once: this target checks each pong arrives.
    receiver_config.pong_backlog_threshold = usize::MAX;
    let sender = Connection::new(sender_role, sender_config);
    let receiver = Connection::new(receiver_role, receiver_config);
    let mut p = Pair {
        sender_events: EventChecker::new(&sender),
        receiver_events: EventChecker::new(&receiver),
        sender,
        receiver,
        wire: WireChecker::new(sender_role),
        back_wire: WireChecker::new(receiver_role),
        chunker: Chunker::new(input.chunk_seed, input.chunk_max),
        expect: Vec::new(),
        expect_back: Vec::new(),
    };

    for item in &input.items {
        match item {
            Item::Text(b) => {
                let t = b.text();
                p.sender.send(Message::text(t.clone())).expect("text");
                p.data(DataKind::Text, t.into_bytes(), size, deliver);
            }
            Item::Binary(b) => {
                p.sender.send(Message::binary(b.0.clone())).expect("binary");
                p.data(DataKind::Binary, b.0.clone(), size, deliver);
            }
            Item::Ping(b) => p.ping(b.truncated(125)),
            Item::Pong(b) => {
                let payload = Bytes::from(b.truncated(125));
                p.sender.send(Message::Pong(payload.clone())).expect("pong");
                p.expect.push(Event::Message(Message::Pong(payload)));
            }
            Item::Fragmented { text, parts } => {
                let kind = if *text {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                let empty = [(Blob(Vec::new()), None)];
                let parts = if parts.is_empty() {
                    &empty[..]
                } else {
                    &parts[..]
                };
                let mut whole = Vec::new();
                for (i, (data, ping)) in parts.iter().enumerate() {
                    let fin = i + 1 == parts.len();
                    let bytes = match kind {
                        DataKind::Text => data.text().into_bytes(),
                        DataKind::Binary => data.0.clone(),
                    };
                    whole.extend_from_slice(&bytes);
                    let data = Bytes::from(bytes);
                    p.sender
                        .send_fragment(Fragment {
                            kind,
                            data: data.clone(),
                            fin,
                        })
                        .expect("fragment");
                    if deliver {
                        p.expect.push(Event::Fragment(Fragment { kind, data, fin }));
                    } else if fin {
                        p.data(kind, std::mem::take(&mut whole), 0, false);
                    }
                    if !fin {
                        // No other data message may start mid-message.
                        assert_eq!(
                            p.sender.send(Message::binary(Vec::new())),
                            Err(SendError::FragmentInProgress)
                        );
                    }
                    if let Some(ping) = ping {
                        p.ping(ping.truncated(125));
                    }
                }
            }
            Item::Prepared { text, data } => {
                let (msg, kind, bytes) = if *text {
                    let t = data.text();
                    (Message::text(t.clone()), DataKind::Text, t.into_bytes())
                } else {
                    (
                        Message::binary(data.0.clone()),
                        DataKind::Binary,
                        data.0.clone(),
                    )
                };
                p.sender
                    .send_prepared(&PreparedMessage::new(msg))
                    .expect("prepared");
                p.data(kind, bytes, 0, deliver);
            }
            Item::Transfer => p.transfer(),
        }
    }

    if let Some(close) = &input.close {
        let frame = close.as_ref().map(|(code, reason)| {
            let mut r = reason.text();
            let mut end = r.len().min(123);
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r.truncate(end);
            CloseFrame::new((*code).into(), r)
        });
        let result = p.sender.close(frame.clone());
        match &frame {
            Some(f) if !code_is_sendable(f.code.as_u16()) => {
                assert_eq!(result, Err(SendError::InvalidCloseCode(f.code.as_u16())));
            }
            _ => {
                assert_eq!(result, Ok(()));
                assert_eq!(p.sender.state(), State::Closing);
                p.expect.push(Event::Message(Message::Close(frame.clone())));
                let answer = frame.map(|f| CloseFrame::new(f.code, ""));
                p.expect_back.push(Event::Message(Message::Close(answer)));
            }
        }
    }

    p.transfer();
    let got: Vec<_> = p
        .receiver_events
        .log
        .iter()
        .cloned()
        .map(|r| r.expect("receiver error"))
        .collect();
    assert_eq!(got, p.expect, "{sender_role:?} -> {receiver_role:?}");
    p.transfer_back();
    let back: Vec<_> = p
        .sender_events
        .log
        .iter()
        .cloned()
        .map(|r| r.expect("sender error"))
        .collect();
    assert_eq!(
        back, p.expect_back,
        "answers of {receiver_role:?} -> {sender_role:?}"
    );
    p.wire.finish();
    p.back_wire.finish();
    if p.expect_back
        .iter()
        .any(|e| matches!(e, Event::Message(Message::Close(_))))
    {
        assert_eq!(p.sender.state(), State::Closed);
        assert_eq!(p.receiver.state(), State::Closed);
    } else {
        assert_eq!(p.sender.state(), State::Open);
        assert_eq!(p.receiver.state(), State::Open);
    }
}

fuzz_target!(|input: Input| {
    run(&input, Role::Client);
    run(&input, Role::Server);
});
