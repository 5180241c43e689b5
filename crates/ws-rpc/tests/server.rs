//! The server's behaviour, seen from a raw WebSocket peer: methods with
//! typed parameters, the context, notifications, batches, subscriptions
//! and their lag policies, rooms, the heartbeat, backpressure.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{json, serve, serve_with, within, Raw};
use serde::Deserialize;
use serde_json::json;
use ws_rpc::{LagPolicy, Router, RpcError, Server, ServerConfig};

#[derive(Deserialize)]
struct Pair {
    a: i64,
    b: i64,
}

fn arith() -> Router {
    Router::new().method(
        "add",
        |p: Pair, _cx| async move { Ok::<_, RpcError>(p.a + p.b) },
    )
}

#[tokio::test]
async fn params_positional_or_named_and_what_was_wrong() {
    let (addr, _s) = serve(arith()).await;
    let mut peer = Raw::connect(addr).await;
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}"#)
        .await;
    assert_eq!(r, json!({"jsonrpc":"2.0","result":5,"id":1}));
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"add","params":{"b":3,"a":2},"id":2}"#)
        .await;
    assert_eq!(r["result"], 5);
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"add","params":{"a":"x","b":3},"id":3}"#)
        .await;
    assert_eq!(r["error"]["code"], -32602);
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("invalid type") && message.contains("i64"),
        "{message}"
    );
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"add","params":{"a":1},"id":4}"#)
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing field `b`"),
        "{r}"
    );
    // Absent parameters decode as null: a struct wants more.
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"add","id":5}"#)
        .await;
    assert_eq!(r["error"]["code"], -32602);
}

#[tokio::test]
async fn the_context_knows_the_connection() {
    let router = Router::new().method("whoami", |(): (), cx: ws_rpc::Context| async move {
        Ok::<_, RpcError>(json!({
            "id": cx.connection_id().get(),
            "peer": cx.peer_addr().map(|a| a.to_string()),
            "query": cx.query(),
            "agent": cx.headers().get("x-agent").and_then(|v| v.to_str().ok()),
            "path": cx.request().uri().path(),
        }))
    });
    let (addr, _s) = serve(router).await;
    let (ws, _) = within(
        ws_net::ClientBuilder::new(&format!("ws://{addr}/rpc?room=7"))
            .unwrap()
            .header(
                http::HeaderName::from_static("x-agent"),
                http::HeaderValue::from_static("test"),
            )
            .connect(),
    )
    .await
    .unwrap();
    let local = ws.peer_addr();
    let mut peer = Raw(ws);
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"whoami","id":1}"#)
        .await;
    let v = &r["result"];
    assert!(v["id"].as_u64().unwrap() > 0);
    assert!(v["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(v["query"], "room=7");
    assert_eq!(v["agent"], "test");
    assert_eq!(v["path"], "/rpc");
    assert!(local.is_some());
}

#[tokio::test]
async fn notifications_both_ways_and_never_an_answer() {
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let router = Router::new()
        .notification("log", move |(line,): (String,), cx: ws_rpc::Context| {
            let s = s.clone();
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                // Push one back to the connection.
                cx.notify("logged", &json!({ "line": line })).unwrap();
            }
        })
        .method("count", {
            let seen = seen.clone();
            move |(): (), _cx| {
                let seen = seen.clone();
                async move { Ok::<_, RpcError>(seen.load(Ordering::SeqCst)) }
            }
        });
    let (addr, _s) = serve(router).await;
    let mut peer = Raw::connect(addr).await;
    peer.send(r#"{"jsonrpc":"2.0","method":"log","params":["hello"]}"#)
        .await;
    let pushed = peer.recv().await.unwrap();
    assert_eq!(
        pushed,
        json!({"jsonrpc":"2.0","method":"logged","params":{"line":"hello"}})
    );
    // A request to a notification handler: it is not a method.
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"log","params":["x"],"id":1}"#)
        .await;
    assert_eq!(r["error"]["code"], -32601);
    // A method called as a notification runs, and gets no answer.
    peer.send(r#"{"jsonrpc":"2.0","method":"count"}"#).await;
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"count","id":2}"#)
        .await;
    assert_eq!(r["result"], 1);
    assert!(peer.silent_for(Duration::from_millis(100)).await);
}

#[tokio::test]
async fn batch_items_run_concurrently() {
    // Each call waits at a barrier for the other: run one after the
    // other, the batch would never finish.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let router = Router::new().method("meet", move |n: (u32,), _cx| {
        let b = barrier.clone();
        async move {
            b.wait().await;
            Ok::<_, RpcError>(n.0)
        }
    });
    let (addr, _s) = serve(router).await;
    let mut peer = Raw::connect(addr).await;
    let r = peer
        .call(
            r#"[{"jsonrpc":"2.0","method":"meet","params":[1],"id":1},
                {"jsonrpc":"2.0","method":"meet","params":[2],"id":2}]"#,
        )
        .await;
    let mut got: Vec<u64> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["result"].as_u64().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, [1, 2]);
}

#[tokio::test]
async fn batches_are_bounded() {
    let mut config = ServerConfig::default();
    config.max_batch = 3;
    let (addr, _s) = serve_with(Server::builder().config(config), arith()).await;
    let mut peer = Raw::connect(addr).await;
    let item = r#"{"jsonrpc":"2.0","method":"add","params":[1,1],"id":1}"#;
    let r = peer.call(&format!("[{item},{item},{item},{item}]")).await;
    assert_eq!(r["error"]["code"], -32005);
    assert_eq!(r["id"], serde_json::Value::Null);
    let r = peer.call(&format!("[{item},{item},{item}]")).await;
    assert_eq!(r.as_array().unwrap().len(), 3);
}

fn counting_subscription() -> Router {
    Router::new().subscription(
        "subscribe_count",
        "count",
        "unsubscribe_count",
        |(policy,): (String,), sink: ws_rpc::SubscriptionSink, _cx| async move {
            if policy == "drop" {
                sink.set_lag_policy(LagPolicy::DropOldest);
            }
            sink.set_buffer(4);
            // As fast as possible, until the policy ends it (or 200,000).
            for n in 0..200_000u32 {
                if sink.send(&n).is_err() {
                    break;
                }
                if n % 256 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            sink.closed().await;
        },
    )
}

fn small_buffers() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.ws.write_buffer_limit = 1024;
    config
}

#[tokio::test]
async fn a_subscriber_that_lags_is_ended_and_told() {
    let (addr, _s) = serve_with(
        Server::builder().config(small_buffers()),
        counting_subscription(),
    )
    .await;
    let mut peer = Raw::connect(addr).await;
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"subscribe_count","params":["end"],"id":1}"#)
        .await;
    let id = r["result"].clone();
    // Do not read for a while: the socket and the buffers fill.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut items = 0u64;
    let last = loop {
        let m = peer.recv().await.expect("the final notification");
        assert_eq!(m["params"]["subscription"], id);
        if m["params"].get("error").is_some() {
            break m;
        }
        assert_eq!(m["params"]["result"], items, "items in order, none skipped");
        items += 1;
    };
    assert_eq!(last["params"]["error"]["code"], -32003);
    let dropped = last["params"]["error"]["data"]["dropped"].as_u64().unwrap();
    assert!(dropped > 0);
    assert!(items < 200_000, "it did lag");
    assert!(peer.silent_for(Duration::from_millis(100)).await);
    // Unsubscribing a subscription that ended: false.
    let r = peer
        .call(&format!(
            r#"{{"jsonrpc":"2.0","method":"unsubscribe_count","params":[{id}],"id":2}}"#
        ))
        .await;
    assert_eq!(r["result"], false);
}

#[tokio::test]
async fn drop_oldest_says_how_many_were_dropped() {
    let (addr, _s) = serve_with(
        Server::builder().config(small_buffers()),
        counting_subscription(),
    )
    .await;
    let mut peer = Raw::connect(addr).await;
    peer.call(r#"{"jsonrpc":"2.0","method":"subscribe_count","params":["drop"],"id":1}"#)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut received = 0u64;
    let mut dropped = 0u64;
    let mut last = None;
    while received + dropped < 200_000 {
        let m = peer.recv().await.unwrap();
        let p = &m["params"];
        if let Some(n) = p.get("dropped") {
            dropped += n.as_u64().unwrap();
            continue;
        }
        let n = p["result"].as_u64().unwrap();
        if let Some(prev) = last {
            assert!(n > prev, "in order");
        }
        last = Some(n);
        received += 1;
    }
    assert_eq!(
        received + dropped,
        200_000,
        "every item received or counted"
    );
    assert!(dropped > 0, "the reader was slow: some were dropped");
}

#[tokio::test]
async fn subscriptions_per_connection_are_bounded() {
    let mut config = ServerConfig::default();
    config.max_subscriptions = 2;
    let router = Router::new().subscription(
        "sub",
        "item",
        "unsub",
        |(): (), sink: ws_rpc::SubscriptionSink, _cx| async move {
            sink.closed().await;
        },
    );
    let (addr, _s) = serve_with(Server::builder().config(config), router).await;
    let mut peer = Raw::connect(addr).await;
    let a = peer
        .call(r#"{"jsonrpc":"2.0","method":"sub","id":1}"#)
        .await;
    peer.call(r#"{"jsonrpc":"2.0","method":"sub","id":2}"#)
        .await;
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"sub","id":3}"#)
        .await;
    assert_eq!(r["error"]["code"], -32004);
    let id = &a["result"];
    let r = peer
        .call(&format!(
            r#"{{"jsonrpc":"2.0","method":"unsub","params":[{id}],"id":4}}"#
        ))
        .await;
    assert_eq!(r["result"], true);
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"sub","id":5}"#)
        .await;
    assert!(r["result"].is_u64(), "{r}");
}

fn chat() -> Router {
    Router::new()
        .method("join", |(room,): (String,), cx: ws_rpc::Context| async move {
            cx.join(&room);
            Ok::<_, RpcError>(cx.joined())
        })
        .method("leave", |(room,): (String,), cx: ws_rpc::Context| async move {
            Ok::<_, RpcError>(cx.leave(&room))
        })
        .method("say", |(room, text): (String, String), cx: ws_rpc::Context| async move {
            cx.broadcast_others(&room, "said", &json!({ "text": text }))
                .map_err(|_| RpcError::internal_error())?;
            Ok::<_, RpcError>(true)
        })
        .method("rooms", |(): (), cx: ws_rpc::Context| async move {
            Ok::<_, RpcError>(cx.rooms().list().await)
        })
}

#[tokio::test]
async fn rooms_broadcast_to_the_others_and_end_with_the_connection() {
    let (addr, server) = serve(chat()).await;
    let mut a = Raw::connect(addr).await;
    let mut b = Raw::connect(addr).await;
    let mut c = Raw::connect(addr).await;
    for p in [&mut a, &mut b] {
        let r = p
            .call(r#"{"jsonrpc":"2.0","method":"join","params":["lobby"],"id":1}"#)
            .await;
        assert_eq!(r["result"], json!(["lobby"]));
    }
    let r = a
        .call(r#"{"jsonrpc":"2.0","method":"say","params":["lobby","hi"],"id":2}"#)
        .await;
    assert_eq!(r["result"], true);
    assert_eq!(
        b.recv().await.unwrap(),
        json!({"jsonrpc":"2.0","method":"said","params":{"text":"hi"}})
    );
    assert!(
        a.silent_for(Duration::from_millis(100)).await,
        "not to the sender"
    );
    assert!(
        c.silent_for(Duration::from_millis(100)).await,
        "not outside the room"
    );
    let r = c.call(r#"{"jsonrpc":"2.0","method":"rooms","id":3}"#).await;
    assert_eq!(r["result"], json!([{"name":"lobby","members":2}]));
    // Membership ends with the connection.
    drop(b);
    let list = async {
        loop {
            let r = c.call(r#"{"jsonrpc":"2.0","method":"rooms","id":4}"#).await;
            if r["result"] == json!([{"name":"lobby","members":1}]) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    within(list).await;
    let r = a
        .call(r#"{"jsonrpc":"2.0","method":"leave","params":["lobby"],"id":5}"#)
        .await;
    assert_eq!(r["result"], true);
    assert!(server.rooms().list().await.is_empty());
}

#[tokio::test]
async fn a_room_member_that_lags_leaves_and_is_told() {
    let mut config = small_buffers();
    config.room_buffer = 4;
    let (addr, server) = serve_with(Server::builder().config(config), chat()).await;
    let mut slow = Raw::connect(addr).await;
    slow.call(r#"{"jsonrpc":"2.0","method":"join","params":["feed"],"id":1}"#)
        .await;
    // Broadcast far more than the slow member's buffers hold, never
    // waiting on it.
    let params = serde_json::value::to_raw_value(&json!({ "pad": "x".repeat(200) })).unwrap();
    let mut lagged = 0;
    for _ in 0..100_000 {
        let d = server.rooms().broadcast("feed", "tick", &params, None);
        lagged += d.lagged;
        if d.sent == 0 && d.lagged == 0 {
            break;
        }
    }
    assert_eq!(lagged, 1);
    assert!(server.rooms().list().await.is_empty(), "it left the room");
    let notice = loop {
        let m = slow.recv().await.unwrap();
        if m["method"] == "rpc.lagged" {
            break m;
        }
        assert_eq!(m["method"], "tick");
    };
    assert_eq!(notice["params"]["room"], "feed");
    assert_eq!(notice["params"]["left"], true);
    assert!(notice["params"]["dropped"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn the_heartbeat_answers_pong() {
    let (addr, _s) = serve(Router::new()).await;
    let mut peer = Raw::connect(addr).await;
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"rpc.ping","id":"hb"}"#)
        .await;
    assert_eq!(r, json!({"jsonrpc":"2.0","result":"pong","id":"hb"}));
}

#[tokio::test]
async fn calls_in_flight_are_bounded_by_not_reading() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let router = Router::new().method("slow", {
        let (running, most, release) = (running.clone(), most.clone(), release.clone());
        move |(): (), _cx| {
            let (running, most, release) = (running.clone(), most.clone(), release.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                release.acquire().await.unwrap().forget();
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, RpcError>(())
            }
        }
    });
    let mut config = ServerConfig::default();
    config.max_in_flight = 3;
    let (addr, _s) = serve_with(Server::builder().config(config), router).await;
    let mut peer = Raw::connect(addr).await;
    for i in 0..20 {
        peer.send(&format!(r#"{{"jsonrpc":"2.0","method":"slow","id":{i}}}"#))
            .await;
    }
    within(async {
        while running.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(most.load(Ordering::SeqCst), 3, "never more than 3 at once");
    release.add_permits(20);
    for _ in 0..20 {
        let r = peer.recv().await.unwrap();
        assert!(r.get("result").is_some(), "{r}");
    }
    assert_eq!(most.load(Ordering::SeqCst), 3);
}

#[test]
fn defaults_protect_a_user_who_reads_nothing() {
    let c = ServerConfig::default();
    assert_eq!(c.max_in_flight, 256);
    assert_eq!(c.max_batch, 100);
    assert_eq!(c.max_subscriptions, 1024);
    assert_eq!(c.subscription_buffer, 1024);
    assert_eq!(c.subscription_lag_policy, LagPolicy::End);
    assert_eq!(c.login_timeout, Duration::from_secs(10));
    assert_eq!(c.ws.protocol.max_message_size, 10 << 20);
    assert!(c.ws.protocol.ping_interval.is_some(), "keepalive on");
    let c = ws_rpc::ClientConfig::default();
    assert!(c.reconnect);
    assert_eq!(c.request_timeout, Duration::from_secs(30));
    assert_eq!(c.backoff.initial, Duration::from_secs(1));
    assert_eq!(c.backoff.max, Duration::from_secs(5));
    assert_eq!(c.backoff.jitter, 0.5);
    assert_eq!(c.queue_items, 1024);
    assert!(c.ws.protocol.ping_interval.is_some(), "keepalive on");
    let _ = json("{}");
}
