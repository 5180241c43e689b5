//! permessage-deflate: a server `Connection` with deflate negotiated is fed
//! arbitrary client frames (RSV1 set or not, any payload, any chunking).
//! Whatever the peer sends, no panic, and no message (or sum of fragments)
//! is ever delivered larger than `max_message_size`: the inflater's cap
//! holds against bombs. Then a round trip: arbitrary messages compressed by
//! a client `Connection` come out of a server `Connection` unchanged.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ws_proto::bytes::Buf;
use ws_proto::deflate::Negotiated;
use ws_proto::{Config, Connection, Event, Message, Role};
use ws_proto_fuzz::{Blob, Chunker};

#[derive(Debug, Arbitrary)]
struct Input {
    /// Limit in KiB (1..=64): small, so bombs are easy to find.
    max_kib: u8,
    local_no_context_takeover: bool,
    remote_no_context_takeover: bool,
    window_bits: u8,
    deliver_fragments: bool,
    chunk_max: u8,
    chunk_seed: u64,
    frames: Vec<RawFrame>,
    messages: Vec<(bool, Blob)>,
}

#[derive(Debug, Arbitrary)]
struct RawFrame {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
}

fn negotiated(input: &Input) -> Negotiated {
    Negotiated {
        local_no_context_takeover: input.local_no_context_takeover,
        remote_no_context_takeover: input.remote_no_context_takeover,
        local_max_window_bits: 8 + input.window_bits % 8,
        remote_max_window_bits: 15,
        level: u32::from(input.window_bits % 10),
        threshold: 0,
    }
}

/// A masked client frame (zero mask, so the payload reads as is).
fn encode(f: &RawFrame) -> Vec<u8> {
    let mut out = vec![(u8::from(f.fin) << 7) | (u8::from(f.rsv1) << 6) | (f.opcode & 0x0f)];
    let n = f.payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&f.payload);
    out
}

fuzz_target!(|input: Input| {
    let max = 1024 * (1 + usize::from(input.max_kib % 64));
    let mut config = Config::default();
    config.max_message_size = max;
    config.deliver_fragments = input.deliver_fragments;

    // Hostile frames against the inflater.
    let mut server = Connection::new(Role::Server, config.clone());
    server.set_deflate(negotiated(&input));
    let wire: Vec<u8> = input.frames.iter().flat_map(encode).collect();
    let mut chunker = Chunker::new(input.chunk_seed, input.chunk_max);
    let mut fragments_total = 0usize;
    'feed: for piece in chunker.split(&wire) {
        server.receive_data(piece);
        loop {
            match server.poll_event() {
                Ok(Some(Event::Message(m))) => {
                    assert!(m.len() <= max, "message of {} bytes over {max}", m.len());
                }
                Ok(Some(Event::Fragment(f))) => {
                    fragments_total += f.data.len();
                    assert!(
                        fragments_total <= max,
                        "fragments sum {fragments_total} over {max}"
                    );
                    if f.fin {
                        fragments_total = 0;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
        let out = server.transmit();
        out.advance(out.remaining());
    }

    // Round trip through a client and a server that both compress.
    let mut n = negotiated(&input);
    n.remote_max_window_bits = n.local_max_window_bits.max(9);
    let mut client = Connection::new(Role::Client, Config::default());
    client.set_deflate(n);
    let mut server = Connection::new(Role::Server, Config::default());
    server.set_deflate(Negotiated {
        local_no_context_takeover: n.remote_no_context_takeover,
        remote_no_context_takeover: n.local_no_context_takeover,
        local_max_window_bits: n.remote_max_window_bits,
        remote_max_window_bits: n.local_max_window_bits,
        ..n
    });
    let mut expected = Vec::new();
    for (text, blob) in &input.messages {
        let m = if *text {
            Message::text(blob.text())
        } else {
            Message::binary(blob.truncated(1 << 16))
        };
        client.send(m.clone()).unwrap();
        expected.push(m);
    }
    let out = client.transmit();
    let bytes = out.copy_to_bytes(out.remaining());
    let mut got = Vec::new();
    for piece in Chunker::new(input.chunk_seed, input.chunk_max).split(&bytes) {
        server.receive_data(piece);
        while let Some(ev) = server
            .poll_event()
            .expect("our own compressed stream decodes")
        {
            match ev {
                Event::Message(m) => got.push(m),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(got, expected);
});
