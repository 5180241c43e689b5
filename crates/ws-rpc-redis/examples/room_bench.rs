//! A benchmark of one room with many members: broadcasts delivered per
//! second and delivery latency, on one node (ws-rpc's in-process rooms) or
//! on several nodes sharing the room through Redis. `tests/redis/bench.sh`
//! runs it; by hand:
//!
//! ```text
//! room_bench node --listen 127.0.0.1:9001 [--redis redis://127.0.0.1:6379/] [--threads 1]
//! room_bench client --url ws://127.0.0.1:9001/ [--url ws://...] --members 10000 \
//!     --messages 1000 --rate 100 [--size 64]
//! room_bench free-port
//! ```
//!
//! A node serves `join {room}` and `publish {room, t, o, pad}`, which
//! broadcasts `tick {t, o, pad}` to the room (`o`: the node it was sent
//! to). The client connects the members
//! round-robin over the nodes (raw WebSocket connections), joins them, then
//! publishes `--messages` at `--rate` per second, alternating over the
//! nodes, each stamped with the time it was sent; every member measures the
//! delivery latency of each tick. Sender and members are in one process,
//! so one clock.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::task::JoinSet;
use ws_rpc::ws_net::{self, Message};
use ws_rpc::{Context, Router, RpcError, Server};

const ROOM: &str = "bench";

fn usage() -> ! {
    eprintln!(
        "usage:\n  room_bench node [--listen ADDR] [--redis URL] [--threads N]\n  \
         room_bench client --url URL [--url URL...] [--members N] [--messages N] [--rate R] \
         [--size BYTES]\n  room_bench free-port"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("node") => node(&args[1..]),
        Some("client") => client(&args[1..]),
        Some("free-port") => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            println!("{}", l.local_addr().unwrap().port());
        }
        _ => usage(),
    }
}

/// `--name value` pairs.
fn options(args: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let Some(name) = k.strip_prefix("--") else {
            usage()
        };
        let Some(v) = it.next() else { usage() };
        out.push((name.to_owned(), v.clone()));
    }
    out
}

fn one<T: std::str::FromStr>(opts: &[(String, String)], name: &str, default: T) -> T {
    match opts.iter().rev().find(|(k, _)| k == name) {
        Some((_, v)) => v.parse().unwrap_or_else(|_| {
            eprintln!("--{name}: cannot read {v:?}");
            std::process::exit(2)
        }),
        None => default,
    }
}

#[derive(Deserialize)]
struct JoinP {
    room: String,
}

#[derive(Deserialize)]
struct PublishP {
    room: String,
    t: u64,
    #[serde(default)]
    o: u64,
    #[serde(default)]
    pad: String,
}

fn node(args: &[String]) {
    let opts = options(args);
    let listen: SocketAddr = one(&opts, "listen", "127.0.0.1:0".parse().unwrap());
    let redis: String = one(&opts, "redis", String::new());
    let threads: usize = one(&opts, "threads", 1);
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .unwrap();
    rt.block_on(async move {
        let router = Router::new()
            .method("join", |p: JoinP, cx: Context| async move {
                cx.join(&p.room);
                Ok::<_, RpcError>(true)
            })
            .method("publish", |p: PublishP, cx: Context| async move {
                let params = serde_json::json!({ "t": p.t, "o": p.o, "pad": p.pad });
                let raw = serde_json::value::to_raw_value(&params).unwrap();
                let d = cx.rooms().broadcast(&p.room, "tick", &raw, None);
                Ok::<_, RpcError>(d.sent)
            });
        let mut builder = Server::builder();
        let mut redis_rooms = None;
        if !redis.is_empty() {
            let rooms = ws_rpc_redis::RedisRooms::connect(&redis, Default::default())
                .await
                .expect("a redis:// URL");
            assert!(rooms.is_connected(), "Redis at {redis} is not reachable");
            builder = builder.rooms(rooms.clone());
            redis_rooms = Some(rooms);
        }
        // ws-net's bind: a listen backlog of 1024 (a burst of connections is
        // not dropped and retried a second later).
        let listener = ws_net::server::bind(listen).await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        let server = builder.build(router);
        tokio::select! {
            r = server.serve(listener) => r.unwrap(),
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                // Ends with its standard input (the script that started it).
                let mut buf = [0u8; 1];
                let _ = tokio::io::AsyncReadExt::read(&mut tokio::io::stdin(), &mut buf).await;
            } => {}
        }
        if let Some(r) = redis_rooms {
            eprintln!("node: {:?}", r.stats());
        }
    });
}

/// The number after `key` (`"t":`) in a tick.
fn number(text: &str, key: &str) -> Option<u64> {
    let i = text.find(key)? + key.len();
    let digits: &str = &text[i..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

fn client(args: &[String]) {
    let opts = options(args);
    let urls: Vec<String> = opts
        .iter()
        .filter(|(k, _)| k == "url")
        .map(|(_, v)| v.clone())
        .collect();
    if urls.is_empty() {
        usage()
    }
    let members: usize = one(&opts, "members", 10_000);
    let messages: u64 = one(&opts, "messages", 1000);
    let rate: f64 = one(&opts, "rate", 100.0);
    let size: usize = one(&opts, "size", 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run_client(urls, members, messages, rate, size));
}

/// Connect from 127.0.0.`source` (spreading thousands of connections to
/// one port over source addresses keeps the kernel's choice of a local port
/// quick).
async fn connect(url: &str, source: u8) -> ws_net::WebSocket {
    let target: SocketAddr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .parse()
        .expect("a ws://IP:PORT/ URL");
    for attempt in 0..5 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::from(([127, 0, 0, source], 0)))
            .unwrap();
        let attempt_once = async {
            let stream = socket.connect(target).await?;
            stream.set_nodelay(true)?;
            ws_net::ClientBuilder::new(url)?
                .handshake(stream)
                .await
                .map(|(ws, _)| ws)
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt_once).await {
            Ok(Ok(ws)) => return ws,
            Ok(Err(e)) if attempt < 4 => {
                eprintln!("connect {url}: {e}; again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Err(e)) => panic!("connect {url}: {e}"),
            Err(_) => panic!("connect {url}: timed out"),
        }
    }
    unreachable!()
}

/// Send a request and wait for its answer (ignoring anything else).
async fn call(ws: &mut ws_net::WebSocket, text: String) -> String {
    ws.send(Message::text(text)).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.recv()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains("\"id\":") => {
                return t.as_str().to_owned()
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("no answer: {other:?}"),
        }
    }
}

/// One member's latencies, of the ticks sent through its own node and
/// through another.
struct Received {
    same: Vec<u32>,
    cross: Vec<u32>,
    lagged: bool,
}

async fn run_client(urls: Vec<String>, members: usize, messages: u64, rate: f64, size: usize) {
    let base = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let last_delivery = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    // Join the members, 200 at a time.
    let mut readers = JoinSet::new();
    let mut joined = 0;
    while joined < members {
        let n = (members - joined).min(200);
        let mut batch = JoinSet::new();
        for i in joined..joined + n {
            let url = urls[i % urls.len()].clone();
            batch.spawn(async move {
                let mut ws = connect(&url, 2 + (i % 64) as u8).await;
                let answer = call(
                    &mut ws,
                    format!(
                        r#"{{"jsonrpc":"2.0","id":1,"method":"join","params":{{"room":"{ROOM}"}}}}"#
                    ),
                )
                .await;
                assert!(answer.contains("true"), "join: {answer}");
                (i, ws)
            });
        }
        // (In the order they finished.)
        for (i, ws) in batch.join_all().await {
            let mine = (i % urls.len()) as u64;
            let delivered = delivered.clone();
            let last = last_delivery.clone();
            readers.spawn(async move {
                let mut ws = ws;
                let mut got = Received {
                    same: Vec::with_capacity(messages as usize),
                    cross: Vec::new(),
                    lagged: false,
                };
                while let Some(Ok(m)) = ws.recv().await {
                    let Message::Text(text) = m else { continue };
                    let text = text.as_str();
                    if text.contains("\"rpc.lagged\"") {
                        got.lagged = true;
                        break;
                    }
                    match number(text, "\"t\":") {
                        Some(0) => break, // the end
                        Some(sent) => {
                            let now = base.elapsed().as_micros() as u64;
                            let us = now.saturating_sub(sent) as u32;
                            if number(text, "\"o\":") == Some(mine) {
                                got.same.push(us);
                            } else {
                                got.cross.push(us);
                            }
                            delivered.fetch_add(1, Ordering::Relaxed);
                            last.fetch_max(now, Ordering::Relaxed);
                        }
                        None => {}
                    }
                }
                got
            });
        }
        joined += n;
    }
    let join_time = t.elapsed();
    eprintln!(
        "{members} members joined over {} node(s) in {join_time:.1?}",
        urls.len()
    );
    // Let subscriptions settle.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The publishers: one connection per node; answers are read apart.
    let mut publishers = Vec::new();
    for url in &urls {
        let ws = connect(url, 1).await;
        let (mut reader, writer) = ws.split();
        tokio::spawn(async move { while let Some(Ok(_)) = reader.recv().await {} });
        publishers.push(writer);
    }
    let pad = "x".repeat(size);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start_us = base.elapsed().as_micros() as u64;
    let start = Instant::now();
    for k in 0..messages {
        let due = start + interval.mul_f64(k as f64);
        tokio::time::sleep_until(due.into()).await;
        let now = base.elapsed().as_micros() as u64;
        let text = format!(
            r#"{{"jsonrpc":"2.0","id":{k},"method":"publish","params":{{"room":"{ROOM}","t":{now},"o":{o},"pad":"{pad}"}}}}"#,
            o = k as usize % publishers.len()
        );
        publishers[k as usize % publishers.len()]
            .send(Message::text(text))
            .await
            .unwrap();
    }
    let send_time = start.elapsed();
    // Wait until everything arrived (or nothing more comes for 5 s).
    let expected = messages * members as u64;
    let mut last_seen = (0, Instant::now());
    loop {
        let d = delivered.load(Ordering::Relaxed);
        if d >= expected {
            break;
        }
        if d != last_seen.0 {
            last_seen = (d, Instant::now());
        } else if last_seen.1.elapsed() > Duration::from_secs(5) {
            eprintln!("nothing more for 5 s: {d} of {expected} delivered");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let end_us = last_delivery.load(Ordering::Relaxed);
    // The end: t = 0 to every member.
    publishers[0]
        .send(Message::text(format!(
            r#"{{"jsonrpc":"2.0","id":"end","method":"publish","params":{{"room":"{ROOM}","t":0}}}}"#
        )))
        .await
        .unwrap();
    let mut same: Vec<u32> = Vec::with_capacity(expected as usize);
    let mut cross: Vec<u32> = Vec::new();
    let mut lagged = 0;
    let collect = async {
        while let Some(r) = readers.join_next().await {
            let r = r.unwrap();
            lagged += usize::from(r.lagged);
            same.extend(r.same);
            cross.extend(r.cross);
        }
    };
    if tokio::time::timeout(Duration::from_secs(20), collect)
        .await
        .is_err()
    {
        eprintln!("some members did not get the end in 20 s");
    }
    let mut all: Vec<u32> = same.iter().chain(&cross).copied().collect();
    all.sort_unstable();
    same.sort_unstable();
    cross.sort_unstable();
    let pct = |v: &[u32], p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] as f64 / 1000.0
    };
    let line = |v: &[u32]| {
        format!(
            "p50 {:.1} | p90 {:.1} | p99 {:.1} | p99.9 {:.1} | max {:.1}",
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 0.99),
            pct(v, 0.999),
            pct(v, 1.0)
        )
    };
    let got = all.len() as u64;
    let secs = (end_us.saturating_sub(start_us)) as f64 / 1e6;
    println!(
        "nodes {} | members {members} | messages {messages} at {rate}/s ({size} B pad) | sent in {:.2} s",
        urls.len(),
        send_time.as_secs_f64()
    );
    println!(
        "delivered {got} of {expected} ({:.2}%), members that lagged out: {lagged}",
        100.0 * got as f64 / expected as f64
    );
    println!(
        "throughput {:.0} deliveries/s ({:.1} broadcasts/s) over {secs:.2} s",
        got as f64 / secs,
        got as f64 / members as f64 / secs
    );
    println!("latency ms: {}", line(&all));
    if !cross.is_empty() {
        println!("  through the same node: {}", line(&same));
        println!("  through another node:  {}", line(&cross));
    }
}
