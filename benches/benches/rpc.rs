//! Micro-benchmarks of ws-rpc: one small call through the server's whole
//! message path (parse, dispatch through the router, encode the answer),
//! and one broadcast to a room of 10,000 members (encoded once, queued to
//! each member's connection).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ws_rpc::harness::{Crowd, Harness};
use ws_rpc::{Router, RpcError};

fn call(c: &mut Criterion) {
    let router = Router::new().method("add", |(a, b): (i64, i64), _cx| async move {
        Ok::<_, RpcError>(a + b)
    });
    let mut h = Harness::new(router);
    let request = br#"{"jsonrpc":"2.0","method":"add","params":[40,2],"id":7}"#;
    assert_eq!(
        h.message(request).as_deref(),
        Some(r#"{"jsonrpc":"2.0","result":42,"id":7}"#)
    );
    let mut g = c.benchmark_group("rpc");
    g.throughput(Throughput::Elements(1));
    g.bench_function("call_add", |b| b.iter(|| h.message(black_box(request))));
    g.finish();
}

fn broadcast(c: &mut Criterion) {
    const MEMBERS: usize = 10_000;
    let crowd = Crowd::new("room", MEMBERS);
    let params = serde_json::value::to_raw_value(&serde_json::json!({
        "sender": "alice", "text": "hello, room", "seq": 1
    }))
    .unwrap();
    assert_eq!(crowd.broadcast("room", "chat.message", &params), MEMBERS);
    let mut g = c.benchmark_group("rpc");
    g.throughput(Throughput::Elements(MEMBERS as u64));
    g.sample_size(20);
    g.bench_function("broadcast_10000", |b| {
        b.iter(|| crowd.broadcast("room", "chat.message", black_box(&params)))
    });
    g.finish();
}

criterion_group!(benches, call, broadcast);
criterion_main!(benches);
