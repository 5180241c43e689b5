//! The acceptance scenarios, end to end: `ws serve --redis` nodes (real
//! processes) on a redis-server of the test's own, and chat clients.
//!
//! - 3 nodes, 300 clients in one room, 1,000 messages from random senders:
//!   every member gets every message exactly once, in per-sender order,
//!   and `chat.rooms` counts the members of every node.
//! - Redis killed for 3 s and restarted during a run: local delivery never
//!   stops, cross-node delivery resumes within 5 s of Redis being back,
//!   nothing is duplicated, the logs say what happened.
//! - Garbage published on a room channel with `redis-cli publish` is
//!   dropped with a log line.
//! - A node stopped (SIGTERM) leaves `chat.rooms` at once; a node killed
//!   (SIGKILL) within the counts' TTL.
//!
//! The `ws` binary is `$WS_BIN`, else built by cargo when the tests start.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{client, eventually, serial, within, Node, Redis};
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinSet;
use ws_rpc::{Client, ClientError};

#[derive(Debug, Clone, Deserialize)]
struct ChatMessage {
    sender: String,
    text: String,
}

/// A chat member: what it got, when.
struct Member {
    node: usize,
    client: Client,
    got: Arc<Mutex<Vec<(ChatMessage, Instant)>>>,
}

impl Member {
    async fn join(nodes: &[Node], node: usize, room: &str, name: &str) -> Self {
        let client = client(&nodes[node].url()).await;
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut messages = client.notifications::<ChatMessage>("chat.message");
        let sink = got.clone();
        tokio::spawn(async move {
            while let Some(m) = messages.next().await {
                let m = m.expect("a chat.message notification, none missed");
                sink.lock().unwrap().push((m, Instant::now()));
            }
        });
        let joined: serde_json::Value =
            within(client.request("chat.join", json!({ "room": room, "name": name })))
                .await
                .unwrap();
        assert_eq!(joined["room"], room);
        Self { node, client, got }
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// The numbers `sender` sent, as this member got them, with when.
    fn from(&self, sender: &str) -> Vec<(u64, Instant)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m.sender == sender)
            .map(|(m, at)| {
                let n = m.text.rsplit(':').next().unwrap().parse().unwrap();
                (n, *at)
            })
            .collect()
    }
}

/// `chat.send`, again after a moment when rate-limited.
async fn send(client: &Client, room: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client
            .request::<serde_json::Value, _>("chat.send", json!({ "room": room, "text": text }))
            .await
        {
            Ok(_) => return,
            Err(ClientError::Rpc(e)) if e.code == 4029 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("chat.send {text}: {e}"),
        }
    }
}

/// `chat.rooms` on a node: room -> members.
async fn chat_rooms(client: &Client) -> HashMap<String, u64> {
    let list: Vec<serde_json::Value> = within(client.request("chat.rooms", json!({})))
        .await
        .unwrap();
    list.into_iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["members"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Join `count` members spread over the nodes, a few at a time.
async fn join_all(nodes: &Arc<Vec<Node>>, room: &str, count: usize) -> Vec<Arc<Member>> {
    let mut members = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(50) {
        let mut set = JoinSet::new();
        for &i in chunk {
            let nodes = nodes.clone();
            let room = room.to_owned();
            set.spawn(async move {
                let m = Member::join(&nodes, i % nodes.len(), &room, &format!("c{i}")).await;
                (i, m)
            });
        }
        let mut got: Vec<(usize, Member)> = set.join_all().await;
        got.sort_by_key(|(i, _)| *i);
        members.extend(got.into_iter().map(|(_, m)| Arc::new(m)));
    }
    members
}

fn start_nodes(redis: &Redis, n: usize) -> Arc<Vec<Node>> {
    Arc::new(
        (0..n)
            .map(|i| Node::start(&format!("node{i}"), Some(&redis.url())))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_300_members_1000_messages_each_once_in_sender_order() {
    let _serial = serial().await;
    let t0 = Instant::now();
    let redis = Redis::start();
    let nodes = start_nodes(&redis, 3);
    let room = "lobby";
    let members = join_all(&nodes, room, 300).await;
    eventually(Duration::from_secs(5), "3 nodes subscribed", || {
        let ok = redis.numsub("ws-rpc:room:lobby") == 3;
        async move { ok }
    })
    .await;
    // chat.rooms counts every node's members, on every node.
    for m in &members[..3] {
        let c = &m.client;
        eventually(Duration::from_secs(5), "chat.rooms: 300", || async move {
            chat_rooms(c).await.get(room) == Some(&300)
        })
        .await;
    }
    let joined = t0.elapsed();

    // 1,000 messages from random senders; each sender sends its own in
    // order, within the chat's rate limit.
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (SEED=... to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut plan = vec![0u64; members.len()];
    for _ in 0..1000 {
        plan[rng.random_range(0..members.len())] += 1;
    }
    let t1 = Instant::now();
    let mut senders = JoinSet::new();
    for (i, &count) in plan.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let client = members[i].client.clone();
        senders.spawn(async move {
            for n in 0..count {
                send(&client, room, &format!("c{i}:{n}")).await;
                tokio::time::sleep(Duration::from_millis(110)).await;
            }
        });
    }
    within(senders.join_all()).await;
    let sent = t1.elapsed();
    eventually(Duration::from_secs(60), "1000 messages each", || {
        let done = members.iter().all(|m| m.count() >= 1000);
        async move { done }
    })
    .await;
    let delivered = t1.elapsed();
    // Anything extra would come now.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (r, m) in members.iter().enumerate() {
        assert_eq!(m.count(), 1000, "member c{r} (node {})", m.node);
        for (s, &count) in plan.iter().enumerate() {
            let got: Vec<u64> = m.from(&format!("c{s}")).into_iter().map(|x| x.0).collect();
            let want: Vec<u64> = (0..count).collect();
            assert_eq!(got, want, "c{r} (node {}) from c{s}", m.node);
        }
    }
    eprintln!(
        "300 members joined in {joined:?}; 1000 messages sent in {sent:?}, all 300,000 \
         deliveries done {delivered:?} after the first was sent; whole test {:?}",
        t0.elapsed()
    );
    for n in nodes.iter() {
        assert_eq!(n.log_count("dropped"), 0, "{}: {:?}", n.name, n.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_for_3s_local_goes_on_cross_node_resumes_nothing_twice() {
    let _serial = serial().await;
    let mut redis = Redis::start();
    let nodes = start_nodes(&redis, 3);
    let room = "outage";
    let members = join_all(&nodes, room, 30).await;
    eventually(Duration::from_secs(5), "3 nodes subscribed", || {
        let ok = redis.numsub("ws-rpc:room:outage") == 3;
        async move { ok }
    })
    .await;

    // Members 0, 1 and 2 (one per node) send every 150 ms until told to
    // stop; each call's start time is kept.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = JoinSet::new();
    for (i, member) in members.iter().enumerate().take(3) {
        let client = member.client.clone();
        let stop = stop.clone();
        senders.spawn(async move {
            let mut sent = Vec::new();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let at = Instant::now();
                send(&client, room, &format!("c{i}:{n}")).await;
                sent.push((n, at));
                n += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            (i, sent)
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    redis.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart();
    let back = Instant::now();
    eprintln!("Redis down for {:?}", back - killed);
    tokio::time::sleep(Duration::from_secs(7)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent: HashMap<usize, Vec<(u64, Instant)>> =
        within(senders.join_all()).await.into_iter().collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut resumed = Duration::ZERO;
    let mut local_worst = Duration::ZERO;
    for (r, m) in members.iter().enumerate() {
        for (s, sent) in &sent {
            let got = m.from(&format!("c{s}"));
            let ns: Vec<u64> = got.iter().map(|x| x.0).collect();
            assert!(
                ns.windows(2).all(|w| w[0] < w[1]),
                "c{r} from c{s}: duplicated or out of order: {ns:?}"
            );
            let have: HashSet<u64> = ns.iter().copied().collect();
            if *s % 3 == m.node {
                // Same node: every message, promptly, outage or not.
                assert_eq!(have.len(), sent.len(), "c{r} lost local messages of c{s}");
                for ((n, at), (n2, got_at)) in sent.iter().zip(&got) {
                    assert_eq!(n, n2);
                    local_worst = local_worst.max(got_at.duration_since(*at));
                }
            } else {
                // Another node: all before the outage, all from 5 s after
                // Redis is back; none twice.
                for (n, at) in sent {
                    if *at + Duration::from_millis(500) < killed
                        || *at >= back + Duration::from_secs(5)
                    {
                        assert!(have.contains(n), "c{r} (node {}) missed c{s}:{n}", m.node);
                    }
                }
                // When cross-node delivery came back: the first message
                // after which none was missed.
                let first_ok = sent
                    .iter()
                    .rev()
                    .take_while(|(n, _)| have.contains(n))
                    .last()
                    .map(|(_, at)| *at)
                    .unwrap();
                resumed = resumed.max(first_ok.saturating_duration_since(back));
            }
        }
    }
    eprintln!(
        "cross-node delivery resumed at most {resumed:?} after Redis was back; local delivery \
         took at most {local_worst:?}"
    );
    assert!(resumed <= Duration::from_secs(5), "{resumed:?}");
    assert!(local_worst < Duration::from_secs(1), "{local_worst:?}");

    // The logs tell the story, on every node.
    for n in nodes.iter() {
        let log = n.log().join("\n");
        assert!(
            log.contains("lost the subscription connection"),
            "{}: {log}",
            n.name
        );
        assert!(
            log.contains("subscribed again to 1 rooms"),
            "{}: {log}",
            n.name
        );
        assert!(log.contains("publishing again"), "{}: {log}", n.name);
        eprintln!("--- {} ---\n{log}", n.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_published_with_redis_cli_is_dropped_with_a_log_line() {
    let _serial = serial().await;
    let redis = Redis::start();
    let nodes = start_nodes(&redis, 2);
    let room = "garbage";
    let members = join_all(&nodes, room, 4).await;
    eventually(Duration::from_secs(5), "2 nodes subscribed", || {
        let ok = redis.numsub("ws-rpc:room:garbage") == 2;
        async move { ok }
    })
    .await;
    let channel = "ws-rpc:room:garbage";
    let garbage = [
        "this is not json",
        r#"{"v":99,"hello":"from the future"}"#,
        r#"{"v":1,"node":"evil","seq":1,"room":"garbage","method":"chat.message","params":"not an object"}"#,
    ];
    for g in garbage {
        assert_eq!(
            redis.cli(&["publish", channel, g]),
            "2",
            "both nodes got it"
        );
    }
    for n in nodes.iter() {
        eventually(Duration::from_secs(5), "3 lines each", || {
            let ok = n.log_count("dropped a message from Redis") == 3;
            async move { ok }
        })
        .await;
        let log = n.log().join("\n");
        assert!(log.contains("unknown format version 99"), "{log}");
        assert!(log.contains("not a ws-rpc-redis envelope"), "{log}");
        assert!(
            log.contains("params neither an object nor an array"),
            "{log}"
        );
        eprintln!("--- {} ---\n{log}", n.name);
    }
    // The nodes go on; the members got the real message only.
    send(&members[0].client, room, "c0:0").await;
    eventually(Duration::from_secs(5), "the real message", || {
        let done = members.iter().all(|m| m.count() == 1);
        async move { done }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for m in &members {
        assert_eq!(m.count(), 1);
        assert_eq!(m.from("c0")[0].0, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_leaves_chat_rooms_at_once_a_killed_one_within_the_ttl() {
    let _serial = serial().await;
    let redis = Redis::start();
    let nodes = start_nodes(&redis, 3);
    let room = "counted";
    let members = join_all(&nodes, room, 9).await;
    let c = &members[0].client;
    eventually(Duration::from_secs(5), "chat.rooms: 9", || async move {
        chat_rooms(c).await.get(room) == Some(&9)
    })
    .await;
    // SIGTERM: it says goodbye.
    let term = std::process::Command::new("kill")
        .args(["-TERM", &nodes[1].pid().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let t = Instant::now();
    eventually(Duration::from_secs(8), "chat.rooms: 6", || async move {
        chat_rooms(c).await.get(room) == Some(&6)
    })
    .await;
    eprintln!(
        "a stopped node's members left chat.rooms in {:?}",
        t.elapsed()
    );
    // SIGKILL: its counts expire (TTL 15 s).
    let nodes = Arc::into_inner(nodes).unwrap();
    let mut nodes = nodes;
    nodes[2].kill();
    let t = Instant::now();
    eventually(Duration::from_secs(20), "chat.rooms: 3", || async move {
        chat_rooms(c).await.get(room) == Some(&3)
    })
    .await;
    let gone = t.elapsed();
    eprintln!("a killed node's members left chat.rooms in {gone:?} (TTL 15 s)");
    assert!(gone <= Duration::from_secs(16), "{gone:?}");
}
