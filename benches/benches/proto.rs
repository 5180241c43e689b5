//! Micro-benchmarks of ws-proto: frame header codec, unmasking (against a
//! byte loop), UTF-8 validation and reading text as `&str`, handshake parse + accept, whole-frame
//! decoding through a server `Connection`, and masked encoding through a
//! client `Connection`.

use bytes::Buf;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ws_proto::frame::{apply_mask, apply_mask_bytewise, FrameHeader, OpCode};
use ws_proto::handshake::{parse_request_head, Accept, Limits, UpgradeRequest};
use ws_proto::utf8::{Utf8Bytes, Utf8Validator};
use ws_proto::{Connection, Event, Message, Role};

fn header(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header");
    for len in [16u64, 70_000] {
        let h = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: OpCode::Binary,
            mask: Some([1, 2, 3, 4]),
            payload_len: len,
        };
        let (bytes, n) = h.encode();
        g.bench_with_input(BenchmarkId::new("decode", len), &bytes[..n], |b, buf| {
            b.iter(|| FrameHeader::decode(black_box(buf)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("encode", len), &h, |b, h| {
            b.iter(|| black_box(h).encode())
        });
    }
    g.finish();
}

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for len in [125usize, 4096, 1 << 20] {
        let mut data = vec![0x5au8; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("word", len), &len, |b, _| {
            b.iter(|| apply_mask(black_box(&mut data), [0x37, 0xfa, 0x21, 0x3d]))
        });
        g.bench_with_input(BenchmarkId::new("bytewise", len), &len, |b, _| {
            b.iter(|| apply_mask_bytewise(black_box(&mut data), [0x37, 0xfa, 0x21, 0x3d], 0))
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    let text = "The quick brown fox — κόσμε — 𝄞 jumps over the lazy dog. ".repeat(1000);
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("validator_whole", |b| {
        b.iter(|| {
            let mut v = Utf8Validator::default();
            v.feed(black_box(text.as_bytes())).unwrap();
            v.finish().unwrap();
        })
    });
    g.bench_function("validator_4k_pieces", |b| {
        b.iter(|| {
            let mut v = Utf8Validator::default();
            for piece in black_box(text.as_bytes()).chunks(4093) {
                v.feed(piece).unwrap();
            }
            v.finish().unwrap();
        })
    });
    g.finish();
    // Reading a received text message as `&str`: a JSON-RPC request of
    // the `add` benchmark's size, and a large message.
    let mut g = c.benchmark_group("utf8_as_str");
    for text in [
        r#"{"jsonrpc":"2.0","id":7,"method":"add","params":[1,2]}"#.to_string(),
        text,
    ] {
        let len = text.len();
        let bytes = Utf8Bytes::from(text);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::from_parameter(len), |b| {
            b.iter(|| black_box(&bytes).as_str().len())
        });
    }
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let raw = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\nUser-Agent: bench\r\nAccept-Encoding: gzip\r\n\r\n";
    c.bench_function("handshake_parse_accept", |b| {
        b.iter(|| {
            let (head, _) = parse_request_head(black_box(raw), &Limits::default())
                .unwrap()
                .unwrap();
            let req = UpgradeRequest::from_http(&head).unwrap();
            req.accept(&Accept::default().protocol("chat")).unwrap()
        })
    });
    // What ws-net's server does with a request from Chromium: parse, keep
    // the request without copying it, write the 101 straight to bytes.
    let chromium = b"GET /chat HTTP/1.1\r\nHost: localhost:9001\r\nConnection: Upgrade\r\n\
Pragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) \
AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\n\
Origin: http://localhost:8000\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    c.bench_function("handshake_server_chromium", |b| {
        b.iter(|| {
            let (head, _) = parse_request_head(black_box(chromium), &Limits::default())
                .unwrap()
                .unwrap();
            let req = UpgradeRequest::from_request(head).unwrap();
            req.accept_bytes(&Accept::default()).unwrap()
        })
    });
}

/// Masked client frames of `size` bytes, `count` of them, as one buffer.
fn client_stream(size: usize, count: usize) -> Vec<u8> {
    let mut client = Connection::new(Role::Client, Default::default());
    for _ in 0..count {
        client.send(Message::binary(vec![0xabu8; size])).unwrap();
    }
    let out = client.transmit();
    out.copy_to_bytes(out.remaining()).to_vec()
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("server_decode");
    for (size, count) in [(16usize, 1000usize), (1024, 100), (65536, 4)] {
        let stream = client_stream(size, count);
        g.throughput(Throughput::Bytes((size * count) as u64));
        g.bench_with_input(BenchmarkId::new("messages", size), &stream, |b, stream| {
            b.iter(|| {
                let mut server = Connection::new(Role::Server, Default::default());
                server.receive_data(stream);
                let mut n = 0;
                while let Some(Event::Message(m)) = server.poll_event().unwrap() {
                    black_box(&m);
                    n += 1;
                }
                assert_eq!(n, count);
            })
        });
    }
    g.finish();
}

/// A client queues a message (header, and the payload masked into its send
/// buffer) and the transport takes all of it.
fn send_and_drain(client: &mut Connection, payload: bytes::Bytes) {
    client.send(Message::Binary(payload)).unwrap();
    let out = client.transmit();
    black_box(out.chunk());
    let n = out.remaining();
    out.advance(n);
}

fn client_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("client_encode");
    for size in [16usize, 1024, 65536, 1 << 20] {
        let payload = bytes::Bytes::from(vec![0xabu8; size]);
        let mut client = Connection::new(Role::Client, Default::default());
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("binary", size), &payload, |b, payload| {
            b.iter(|| send_and_drain(&mut client, payload.clone()))
        });
    }
    // Many connections' payloads do not fit in the cache: rotate through
    // 64 MiB of them, as a load generator with 64 connections does.
    let size = 1 << 20;
    let payloads: Vec<bytes::Bytes> = (0..64u8).map(|i| vec![i; size].into()).collect();
    let mut client = Connection::new(Role::Client, Default::default());
    let mut next = payloads.iter().cycle();
    g.throughput(Throughput::Bytes(size as u64));
    g.bench_function(BenchmarkId::new("binary_uncached", size), |b| {
        b.iter(|| send_and_drain(&mut client, next.next().expect("endless").clone()))
    });
    g.finish();
}

criterion_group!(
    benches,
    header,
    unmask,
    utf8,
    handshake,
    decode,
    client_encode
);
criterion_main!(benches);
