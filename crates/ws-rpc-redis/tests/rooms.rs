//! RedisRooms between ws-rpc servers in this process, on a redis-server of
//! the test's own: delivery across nodes exactly once and in order,
//! subscriptions that follow the local members, Redis down at start, Redis
//! restarted, Redis stalled, garbage and duplicates on a room channel,
//! cluster-wide counts and a dead node's counts expiring.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{client, eventually, serial, within, Redis};
use serde::Deserialize;
use serde_json::json;
use ws_rpc::{Client, Context, Rooms, Router, RpcError, Server, ServerHandle};
use ws_rpc_redis::{Options, RedisRooms};

/// Log lines of every node of this test binary (ws_rpc_redis at DEBUG).
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        struct W;
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                logs().lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter("ws_rpc_redis=debug")
            .with_ansi(false)
            .with_writer(|| W)
            .try_init();
        Mutex::new(Vec::new())
    })
}

/// Log lines that contain every one of `needles`.
fn log_lines(needles: &[&str]) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// Options for tests: short delays.
fn fast() -> Options {
    let mut o = Options::default();
    o.backoff_initial = Duration::from_millis(50);
    o.backoff_max = Duration::from_millis(500);
    o.health_interval = Duration::from_secs(1);
    o.response_timeout = Duration::from_secs(2);
    o.counts_ttl = Duration::from_millis(1500);
    o.counts_refresh = Duration::from_millis(300);
    o
}

#[derive(Deserialize)]
struct RoomP {
    room: String,
}

#[derive(Deserialize)]
struct SayP {
    room: String,
    from: String,
    n: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
struct Said {
    room: String,
    from: String,
    n: u64,
}

fn router() -> Router {
    Router::new()
        .method("join", |p: RoomP, cx: Context| async move {
            cx.join(&p.room);
            Ok::<_, RpcError>(true)
        })
        .method("leave", |p: RoomP, cx: Context| async move {
            Ok::<_, RpcError>(cx.leave(&p.room))
        })
        .method("say", |p: SayP, cx: Context| async move {
            let params = json!({ "room": p.room, "from": p.from, "n": p.n });
            let raw = serde_json::value::to_raw_value(&params).unwrap();
            let d = cx.rooms().broadcast(&p.room, "said", &raw, None);
            Ok::<_, RpcError>(d.sent)
        })
        .method("say_others", |p: SayP, cx: Context| async move {
            let params = json!({ "room": p.room, "from": p.from, "n": p.n });
            cx.broadcast_others(&p.room, "said", &params).unwrap();
            Ok::<_, RpcError>(true)
        })
        .method("rooms", |_: serde_json::Value, cx: Context| async move {
            Ok::<_, RpcError>(cx.rooms().list().await)
        })
}

/// A ws-rpc server on 127.0.0.1 with RedisRooms.
struct TestNode {
    addr: SocketAddr,
    rooms: Arc<RedisRooms>,
    _handle: ServerHandle,
}

impl TestNode {
    async fn start(url: &str, options: Options) -> Self {
        let _ = logs();
        let t = Instant::now();
        let rooms = RedisRooms::connect(url, options).await.unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "connect took {:?}",
            t.elapsed()
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::builder().rooms(rooms.clone()).build(router());
        let handle = server.handle();
        tokio::spawn(server.serve(listener));
        Self {
            addr,
            rooms,
            _handle: handle,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }
}

/// A client that keeps every `said` notification it gets.
struct Member {
    client: Client,
    got: Arc<Mutex<Vec<Said>>>,
}

impl Member {
    async fn join(node: &TestNode, room: &str) -> Self {
        let client = client(&node.url()).await;
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut said = client.notifications::<Said>("said");
        let sink = got.clone();
        tokio::spawn(async move {
            while let Some(item) = said.next().await {
                sink.lock()
                    .unwrap()
                    .push(item.expect("a said notification"));
            }
        });
        let ok: bool = within(client.request("join", json!({ "room": room })))
            .await
            .unwrap();
        assert!(ok);
        Self { client, got }
    }

    async fn say(&self, room: &str, from: &str, n: u64) -> usize {
        within(
            self.client
                .request("say", json!({ "room": room, "from": from, "n": n })),
        )
        .await
        .unwrap()
    }

    fn got(&self) -> Vec<Said> {
        self.got.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// The numbers it got from `from`, in the order it got them.
    fn from(&self, from: &str) -> Vec<u64> {
        self.got()
            .into_iter()
            .filter(|s| s.from == from)
            .map(|s| s.n)
            .collect()
    }
}

/// `rooms` on a node: room -> members.
async fn room_counts(client: &Client) -> HashMap<String, u64> {
    let list: Vec<serde_json::Value> = within(client.request("rooms", ())).await.unwrap();
    list.into_iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["members"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn channel(room: &str) -> String {
    format!("ws-rpc:room:{room}")
}

async fn numsub_is(redis: &Redis, room: &str, n: usize) {
    let ch = channel(room);
    eventually(
        Duration::from_secs(5),
        &format!("{n} subscribers of {ch}"),
        || {
            let ok = redis.numsub(&ch) == n;
            async move { ok }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_every_node_once_in_order_and_except_holds() {
    let _serial = serial().await;
    let redis = Redis::start();
    let a = TestNode::start(&redis.url(), fast()).await;
    let b = TestNode::start(&redis.url(), fast()).await;
    assert!(a.rooms.is_connected() && b.rooms.is_connected());
    assert_ne!(a.rooms.node_id(), b.rooms.node_id());
    let a1 = Member::join(&a, "lobby").await;
    let a2 = Member::join(&a, "lobby").await;
    let b1 = Member::join(&b, "lobby").await;
    let b2 = Member::join(&b, "lobby").await;
    numsub_is(&redis, "lobby", 2).await;

    // 300 from a1 (on A), 300 from b1 (on B), interleaved.
    for n in 0..300 {
        assert_eq!(
            a1.say("lobby", "a1", n).await,
            2,
            "delivered locally at once"
        );
        b1.say("lobby", "b1", n).await;
    }
    let all = [&a1, &a2, &b1, &b2];
    eventually(Duration::from_secs(10), "600 messages each", || {
        let done = all.iter().all(|m| m.count() >= 600);
        async move { done }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let want: Vec<u64> = (0..300).collect();
    for m in all {
        assert_eq!(m.count(), 600, "exactly once");
        assert_eq!(m.from("a1"), want);
        assert_eq!(m.from("b1"), want);
    }

    // Except: the sender's connection only, on its own node.
    let ok: bool = within(a1.client.request(
        "say_others",
        json!({ "room": "lobby", "from": "a1-others", "n": 0 }),
    ))
    .await
    .unwrap();
    assert!(ok);
    eventually(Duration::from_secs(5), "the others get it", || {
        let done = [&a2, &b1, &b2].iter().all(|m| m.count() == 601);
        async move { done }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(a1.count(), 600, "not the sender");

    let (sa, sb) = (a.rooms.stats(), b.rooms.stats());
    assert_eq!(sa.published, 301);
    assert_eq!(sb.published, 300);
    assert_eq!(sa.received, 300);
    assert_eq!(sb.received, 301);
    assert_eq!(sa.own, 301, "A's own messages came back and were skipped");
    assert_eq!(sb.own, 300);
    for s in [sa, sb] {
        assert_eq!(s.malformed + s.duplicates + s.failed + s.dropped_full, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_is_subscribed_while_it_has_members_here() {
    let _serial = serial().await;
    let redis = Redis::start();
    let a = TestNode::start(&redis.url(), fast()).await;
    assert_eq!(redis.numsub(&channel("r1")), 0);
    let m1 = Member::join(&a, "r1").await;
    let m2 = Member::join(&a, "r1").await;
    numsub_is(&redis, "r1", 1).await;
    let left: bool = within(m1.client.request("leave", json!({ "room": "r1" })))
        .await
        .unwrap();
    assert!(left);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(redis.numsub(&channel("r1")), 1, "m2 is still here");
    // The last member's connection closes: unsubscribed.
    m2.client.close();
    numsub_is(&redis, "r1", 0).await;
    assert!(a.rooms.local().local_members("r1").is_empty());
    // And again.
    let _m3 = Member::join(&a, "r1").await;
    numsub_is(&redis, "r1", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_local_rooms_work_then_it_connects() {
    let _serial = serial().await;
    let port = common::free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let t = Instant::now();
    let a = TestNode::start(&url, fast()).await;
    let b = TestNode::start(&url, fast()).await;
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(!a.rooms.is_connected());
    let a1 = Member::join(&a, "r").await;
    let a2 = Member::join(&a, "r").await;
    let b1 = Member::join(&b, "r").await;
    for n in 0..5 {
        assert_eq!(a1.say("r", "a1", n).await, 2);
    }
    eventually(Duration::from_secs(5), "local delivery", || {
        let done = a2.count() == 5;
        async move { done }
    })
    .await;
    assert_eq!(b1.count(), 0);
    eventually(Duration::from_secs(5), "dropped for other nodes", || {
        let n = a.rooms.stats().dropped_unavailable;
        async move { n == 5 }
    })
    .await;
    assert!(!log_lines(&["cannot connect to publish", a.rooms.node_id()]).is_empty());

    let redis = Redis::start_on(port);
    let up = Instant::now();
    assert!(a.rooms.wait_connected(Duration::from_secs(5)).await);
    assert!(b.rooms.wait_connected(Duration::from_secs(5)).await);
    numsub_is(&redis, "r", 2).await;
    eprintln!("connected {:?} after Redis came up", up.elapsed());
    for n in 5..10 {
        a1.say("r", "a1", n).await;
    }
    eventually(Duration::from_secs(5), "cross-node delivery", || {
        let done = b1.count() == 5;
        async move { done }
    })
    .await;
    assert_eq!(
        b1.from("a1"),
        vec![5, 6, 7, 8, 9],
        "nothing from the outage"
    );
    assert_eq!(a2.from("a1"), (0..10).collect::<Vec<_>>());
    assert!(!log_lines(&["publishing, Redis reachable at last", a.rooms.node_id()]).is_empty());
    assert!(!log_lines(&[
        "Redis reachable at last: subscribed to 1 rooms",
        b.rooms.node_id()
    ])
    .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_local_delivery_goes_on_nothing_duplicated() {
    let _serial = serial().await;
    let mut redis = Redis::start();
    let a = TestNode::start(&redis.url(), fast()).await;
    let b = TestNode::start(&redis.url(), fast()).await;
    let a1 = Member::join(&a, "r").await;
    let a2 = Member::join(&a, "r").await;
    let b1 = Member::join(&b, "r").await;
    numsub_is(&redis, "r", 2).await;

    let mut n = 0;
    let mut say = |k: u64| {
        let range = n..n + k;
        n += k;
        range
    };
    for i in say(20) {
        a1.say("r", "a1", i).await;
    }
    eventually(Duration::from_secs(5), "B has the first 20", || {
        let done = b1.count() == 20;
        async move { done }
    })
    .await;
    redis.kill();
    for i in say(20) {
        a1.say("r", "a1", i).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.restart();
    let back = Instant::now();
    assert!(a.rooms.wait_connected(Duration::from_secs(5)).await);
    assert!(b.rooms.wait_connected(Duration::from_secs(5)).await);
    numsub_is(&redis, "r", 2).await;
    eprintln!("both nodes back {:?} after Redis", back.elapsed());
    for i in say(20) {
        a1.say("r", "a1", i).await;
    }
    eventually(Duration::from_secs(5), "all delivered", || {
        let done = a2.count() == 60 && b1.from("a1").last() == Some(&59);
        async move { done }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a2.from("a1"), (0..60).collect::<Vec<_>>(), "local: all");
    let got = b1.from("a1");
    assert_eq!(&got[..20], &(0..20).collect::<Vec<_>>()[..]);
    assert_eq!(&got[got.len() - 20..], &(40..60).collect::<Vec<_>>()[..]);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {got:?}"
    );
    let s = a.rooms.stats();
    assert!(s.reconnects >= 1, "{s:?}");
    assert_eq!(b.rooms.stats().duplicates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_does_not_stall_local_delivery() {
    let _serial = serial().await;
    let redis = Redis::start();
    // Connections stay up through the stall (no PING gives up on them).
    let mut o = fast();
    o.queue_items = 100;
    o.response_timeout = Duration::from_secs(30);
    o.health_interval = Duration::from_secs(60);
    let a = TestNode::start(&redis.url(), o.clone()).await;
    let b = TestNode::start(&redis.url(), o).await;
    let a1 = Member::join(&a, "r").await;
    let a2 = Member::join(&a, "r").await;
    let b1 = Member::join(&b, "r").await;
    numsub_is(&redis, "r", 2).await;

    redis.pause();
    let t = Instant::now();
    for n in 0..1000 {
        a1.say("r", "a1", n).await;
    }
    eventually(Duration::from_secs(5), "local delivery", || {
        let done = a2.count() == 1000;
        async move { done }
    })
    .await;
    let took = t.elapsed();
    let s = a.rooms.stats();
    eprintln!("1000 broadcasts with Redis stalled: {took:?}, {s:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(s.dropped_full >= 800, "{s:?}");
    assert!(!log_lines(&["queue towards Redis is full"]).is_empty());
    redis.resume();
    // What was queued goes out; then new messages again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    a1.say("r", "a1", 1000).await;
    eventually(Duration::from_secs(5), "cross-node again", || {
        let done = b1.from("a1").last() == Some(&1000);
        async move { done }
    })
    .await;
    let got = b1.from("a1");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, once");
    assert!(got.len() <= 1 + 100 + 10, "{} got through", got.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_a_room_channel_is_dropped_and_logged() {
    let _serial = serial().await;
    let redis = Redis::start();
    let a = TestNode::start(&redis.url(), fast()).await;
    let a1 = Member::join(&a, "g").await;
    numsub_is(&redis, "g", 1).await;
    let ch = channel("g");
    let bad = [
        "garbage".to_owned(),
        String::new(),
        r#"{"v":2,"node":"x/1","seq":1,"room":"g","method":"said","params":{}}"#.to_owned(),
        r#"{"v":1,"node":"x/1","seq":1,"room":"other","method":"said","params":{}}"#.to_owned(),
        r#"{"v":1,"node":"x/1","seq":1,"room":"g","method":"said","params":"text"}"#.to_owned(),
        r#"{"v":1,"node":"x/1","seq":1,"room":"g","method":"said"}"#.to_owned(),
        "\u{1}\u{2}binary".to_owned(),
    ];
    for b in &bad {
        assert_eq!(redis.cli(&["publish", &ch, b]), "1");
    }
    // Counted, and logged (the line is written on another thread).
    eventually(Duration::from_secs(5), "all dropped and logged", || {
        let done = a.rooms.stats().malformed == bad.len() as u64
            && log_lines(&["dropped a message from Redis", a.rooms.node_id()]).len() >= bad.len();
        async move { done }
    })
    .await;
    let lines = log_lines(&["dropped a message from Redis", a.rooms.node_id()]);
    assert_eq!(lines.len(), bad.len(), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("unknown format version 2")));
    assert!(lines
        .iter()
        .any(|l| l.contains("room is not the channel's")));
    assert!(lines
        .iter()
        .any(|l| l.contains("not a ws-rpc-redis envelope")));
    // A well-formed message of another node is delivered; again, it is not.
    let good = r#"{"v":1,"node":"x/1","seq":7,"room":"g","method":"said","params":{"room":"g","from":"x","n":7}}"#;
    redis.cli(&["publish", &ch, good]);
    redis.cli(&["publish", &ch, good]);
    let older = r#"{"v":1,"node":"x/1","seq":6,"room":"g","method":"said","params":{"room":"g","from":"x","n":6}}"#;
    redis.cli(&["publish", &ch, older]);
    eventually(Duration::from_secs(5), "duplicates dropped", || {
        let n = a.rooms.stats().duplicates;
        async move { n == 2 }
    })
    .await;
    assert_eq!(a1.from("x"), vec![7]);
    assert_eq!(a1.count(), 1, "none of the garbage reached the member");
    assert_eq!(a.rooms.stats().received, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_span_nodes_and_a_dead_nodes_members_vanish_within_the_ttl() {
    let _serial = serial().await;
    let redis = Redis::start();
    let url = redis.url();
    let a = TestNode::start(&url, fast()).await;
    let _a1 = Member::join(&a, "r").await;
    let _a2 = Member::join(&a, "r").await;

    // B runs on a runtime of its own, dropped at once (a node that dies:
    // no goodbye to Redis).
    let (tx, rx) = std::sync::mpsc::channel();
    let b_url = url.clone();
    let b_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (die, died) = std::sync::mpsc::channel::<()>();
        rt.block_on(async {
            let b = TestNode::start(&b_url, fast()).await;
            let mut members = Vec::new();
            for room in ["r", "r", "r", "s"] {
                members.push(Member::join(&b, room).await);
            }
            tx.send((b.rooms.node_id().to_owned(), die)).unwrap();
            // Hold everything until told to die.
            tokio::task::spawn_blocking(move || died.recv()).await.ok();
            std::mem::forget(members);
            std::mem::forget(b);
        });
        rt.shutdown_background();
    });
    let (b_node, die) = rx.recv_timeout(Duration::from_secs(20)).unwrap();

    // C stops cleanly: its counts leave Redis at once.
    let c = TestNode::start(&url, fast()).await;
    let _c1 = Member::join(&c, "s").await;

    let lister = client(&a.url()).await;
    let lister = &lister;
    let rooms = || room_counts(lister);
    let want = |pairs: &[(&str, u64)]| {
        pairs
            .iter()
            .map(|(n, c)| (n.to_string(), *c))
            .collect::<HashMap<_, _>>()
    };
    let all = &want(&[("r", 5), ("s", 2)]);
    eventually(
        Duration::from_secs(5),
        "cluster-wide counts",
        || async move { rooms().await == *all },
    )
    .await;
    let keys = redis.cli(&["smembers", "ws-rpc:nodes"]);
    assert!(keys.contains(&b_node), "{keys}");

    c.rooms.shutdown().await;
    let gone = Instant::now();
    assert_eq!(
        rooms().await,
        want(&[("r", 5), ("s", 1)]),
        "C's counts left with it"
    );
    eprintln!("C's members gone {:?} after its shutdown", gone.elapsed());

    die.send(()).unwrap();
    b_thread.join().unwrap();
    let died = Instant::now();
    let left = &want(&[("r", 2)]);
    eventually(
        Duration::from_secs(4),
        "B's members vanish",
        || async move { rooms().await == *left },
    )
    .await;
    let after = died.elapsed();
    eprintln!("B's members gone {after:?} after it died (TTL 1.5 s)");
    assert!(after <= Duration::from_millis(2500), "{after:?}");
    // And the set of nodes forgets B.
    eventually(Duration::from_secs(3), "B leaves the set", || {
        let keys = redis.cli(&["smembers", "ws-rpc:nodes"]);
        let b = b_node.clone();
        async move { !keys.contains(&b) }
    })
    .await;
}
