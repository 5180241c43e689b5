//! permessage-deflate throughput on JSON-like text.
//!
//! - `connection/*`: our real path, a server `Connection` compressing (send)
//!   and a client `Connection` inflating (receive) 1,000 small JSON messages
//!   with context takeover, as a trading feed or chat would.
//! - `backend/*`: one-shot raw DEFLATE of 64 KiB of JSON with the backend we
//!   use (zlib-rs through flate2) against miniz_oxide (flate2's default), at
//!   the level we use (1) and at 6.

use bytes::Buf;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use ws_proto::deflate::Negotiated;
use ws_proto::{Config, Connection, Event, Message, Role};

fn json(i: usize) -> String {
    format!(
        r#"{{"type":"trade","seq":{i},"symbol":"{}","price":"{}.{:02}","size":"{}","side":"{}","ts":{}}}"#,
        ["BTC-USD", "ETH-USD", "SOL-USD", "ACME"][i % 4],
        40_000 + (i * 7919) % 5000,
        i % 100,
        (i * 31) % 1000,
        if i.is_multiple_of(3) { "buy" } else { "sell" },
        1_700_000_000_000u64 + i as u64 * 13
    )
}

fn negotiated() -> Negotiated {
    Negotiated {
        local_no_context_takeover: false,
        remote_no_context_takeover: false,
        local_max_window_bits: 15,
        remote_max_window_bits: 15,
        level: 1,
        threshold: 0,
    }
}

fn connection(c: &mut Criterion) {
    let messages: Vec<String> = (0..1000).map(json).collect();
    let bytes: usize = messages.iter().map(String::len).sum();
    let mut g = c.benchmark_group("deflate_connection");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("compress_1000_json", |b| {
        b.iter(|| {
            let mut server = Connection::new(Role::Server, Config::default());
            server.set_deflate(negotiated());
            for m in &messages {
                server.send(Message::text(m.as_str())).unwrap();
            }
            black_box(server.buffered_amount())
        })
    });
    // The wire bytes once, then inflate them each iteration.
    let mut server = Connection::new(Role::Server, Config::default());
    server.set_deflate(negotiated());
    for m in &messages {
        server.send(Message::text(m.as_str())).unwrap();
    }
    let out = server.transmit();
    let wire = out.copy_to_bytes(out.remaining());
    eprintln!(
        "1000 JSON messages: {bytes} bytes of text, {} bytes on the wire ({:.1}x)",
        wire.len(),
        bytes as f64 / wire.len() as f64
    );
    g.bench_function("decompress_1000_json", |b| {
        b.iter(|| {
            let mut client = Connection::new(Role::Client, Config::default());
            client.set_deflate(negotiated());
            client.receive_data(&wire);
            let mut n = 0;
            while let Some(Event::Message(m)) = client.poll_event().unwrap() {
                black_box(&m);
                n += 1;
            }
            assert_eq!(n, 1000);
        })
    });
    g.finish();
}

fn backends(c: &mut Criterion) {
    let text: String = (0..600).map(json).collect::<Vec<_>>().join("\n");
    let text = &text.as_bytes()[..text.len().min(64 * 1024)];
    let mut g = c.benchmark_group("deflate_backend");
    g.throughput(Throughput::Bytes(text.len() as u64));
    for level in [1u8, 6] {
        g.bench_function(format!("zlib_rs_compress_level{level}"), |b| {
            b.iter(|| {
                let mut z = Compress::new(Compression::new(u32::from(level)), false);
                let mut out = Vec::with_capacity(text.len());
                z.compress_vec(black_box(text), &mut out, FlushCompress::Finish)
                    .unwrap();
                out
            })
        });
        g.bench_function(format!("miniz_oxide_compress_level{level}"), |b| {
            b.iter(|| miniz_oxide::deflate::compress_to_vec(black_box(text), level))
        });
    }
    let compressed = miniz_oxide::deflate::compress_to_vec(text, 6);
    g.bench_function("zlib_rs_decompress", |b| {
        b.iter(|| {
            let mut z = Decompress::new(false);
            let mut out = Vec::with_capacity(text.len() + 64);
            z.decompress_vec(black_box(&compressed), &mut out, FlushDecompress::Finish)
                .unwrap();
            assert_eq!(out.len(), text.len());
            out
        })
    });
    g.bench_function("miniz_oxide_decompress", |b| {
        b.iter(|| {
            let out = miniz_oxide::inflate::decompress_to_vec(black_box(&compressed)).unwrap();
            assert_eq!(out.len(), text.len());
            out
        })
    });
    g.finish();
}

criterion_group!(benches, connection, backends);
criterion_main!(benches);
