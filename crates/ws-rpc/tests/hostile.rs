//! A hostile peer: what it sends gets the right error, or backpressure;
//! nothing panics and memory stays bounded.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{serve, within, Raw};
use serde_json::{json, Value};
use ws_rpc::{Router, RpcError};

fn router(running: Arc<AtomicUsize>, most: Arc<AtomicUsize>) -> Router {
    Router::new()
        .method("echo", |p: Value, _cx| async move { Ok::<_, RpcError>(p) })
        .method("nums", |p: Vec<i64>, _cx| async move {
            Ok::<_, RpcError>(p.len())
        })
        .method("slow", move |(): (), _cx| {
            let (running, most) = (running.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, RpcError>(())
            }
        })
}

async fn peer() -> Raw {
    let (addr, _s) = serve(router(Default::default(), Default::default())).await;
    Raw::connect(addr).await
}

#[tokio::test]
async fn non_json_is_a_parse_error() {
    let mut p = peer().await;
    for garbage in [
        "",
        "{",
        "not json",
        "\u{0}\u{1}",
        "{\"jsonrpc\":\"2.0\",,}",
        "[{]",
    ] {
        let r = p.call(garbage).await;
        assert_eq!(r["error"]["code"], -32700, "{garbage:?}: {r}");
        assert_eq!(r["id"], Value::Null);
    }
    // Binary messages carry JSON too.
    p.0.send(ws_net::Message::binary(
        br#"{"jsonrpc":"2.0","method":"echo","params":[1],"id":1}"#.to_vec(),
    ))
    .await
    .unwrap();
    assert_eq!(p.recv().await.unwrap()["result"], json!([1]));
    // ...and one that is not UTF-8 is not JSON (RFC 8259 §8.1).
    let mut bad = br#"{"jsonrpc":"2.0","method":"echo","params":["#.to_vec();
    bad.extend_from_slice(b"\"\xff\"],\"id\":2}");
    p.0.send(ws_net::Message::binary(bad)).await.unwrap();
    let r = p.recv().await.unwrap();
    assert_eq!(r["error"]["code"], -32700, "{r}");
    assert_eq!(r["id"], Value::Null);
}

#[tokio::test]
async fn deep_nesting_gets_an_error_not_a_crash() {
    let mut p = peer().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = p
        .call(&format!(
            r#"{{"jsonrpc":"2.0","method":"nums","params":{deep},"id":1}}"#
        ))
        .await;
    let code = r["error"]["code"].as_i64().unwrap();
    assert!(code == -32602 || code == -32700, "{r}");
    let r = p.call(&deep).await;
    assert!(r.is_array() || r["error"]["code"] == -32700, "{r}");
    let r = p
        .call(&format!(
            r#"{{"jsonrpc":"2.0","method":"echo","params":{deep},"id":2}}"#
        ))
        .await;
    assert!(r.get("error").is_some(), "{r}");
    // Still serving.
    let r = p
        .call(r#"{"jsonrpc":"2.0","method":"echo","params":[3],"id":3}"#)
        .await;
    assert_eq!(r["result"], json!([3]));
}

#[tokio::test]
async fn ids_of_every_json_type() {
    let mut p = peer().await;
    for id in [
        r#""a""#,
        "1",
        "-7",
        "1.5",
        "0",
        "null",
        "18446744073709551615",
        "1e300",
    ] {
        let r = p
            .call(&format!(
                r#"{{"jsonrpc":"2.0","method":"echo","params":[1],"id":{id}}}"#
            ))
            .await;
        assert_eq!(r["id"], serde_json::from_str::<Value>(id).unwrap(), "{id}");
        assert_eq!(r["result"], json!([1]), "{id}");
    }
    // Not ids: other types, and numbers no double can hold (the reply
    // would carry them back to a client that cannot parse them).
    for id in [
        "true",
        "[1]",
        r#"{"a":1}"#,
        "1e400",
        "-1e400",
        "333335e369633333333333333",
    ] {
        let r = p
            .call(&format!(
                r#"{{"jsonrpc":"2.0","method":"echo","params":[1],"id":{id}}}"#
            ))
            .await;
        assert_eq!(r["error"]["code"], -32600, "{id}");
        assert_eq!(r["id"], Value::Null, "{id}");
    }
}

#[tokio::test]
async fn a_10000_item_batch_is_refused() {
    let mut p = peer().await;
    let item = r#"{"jsonrpc":"2.0","method":"echo","params":[1],"id":1}"#;
    let batch = format!("[{}]", vec![item; 10_000].join(","));
    let r = p.call(&batch).await;
    assert_eq!(r["error"]["code"], -32005);
}

#[tokio::test]
async fn a_1_mib_method_name_is_refused_without_echo() {
    let mut p = peer().await;
    let name = "m".repeat(1 << 20);
    p.send(&format!(r#"{{"jsonrpc":"2.0","method":"{name}","id":1}}"#))
        .await;
    let text = loop {
        match within(p.0.recv()).await {
            Some(Ok(ws_net::Message::Text(t))) => break t,
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert!(
        text.len() < 200,
        "the name is not echoed: {} bytes",
        text.len()
    );
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["error"]["code"], -32600);
    assert_eq!(r["id"], 1);
}

#[tokio::test]
async fn a_flood_of_slow_calls_gets_backpressure() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (addr, _s) = serve(router(running.clone(), most.clone())).await;
    let mut p = Raw::connect(addr).await;
    let n = 5_000;
    let (mut reader, writer) = {
        let Raw(ws) = p;
        ws.split()
    };
    let flood = tokio::spawn(async move {
        for i in 0..n {
            let m = format!(r#"{{"jsonrpc":"2.0","method":"slow","id":{i}}}"#);
            writer.send(ws_net::Message::text(m)).await.unwrap();
        }
        writer
    });
    let mut answers = 0;
    while answers < n {
        match within(reader.recv()).await {
            Some(Ok(ws_net::Message::Text(_))) => answers += 1,
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    within(flood).await.unwrap();
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 256, "at most max_in_flight at once: {most}");
    p = Raw::connect(addr).await;
    let r = p
        .call(r#"{"jsonrpc":"2.0","method":"echo","params":[1],"id":1}"#)
        .await;
    assert_eq!(r["result"], json!([1]));
}

#[tokio::test]
async fn a_message_over_the_limit_is_closed_with_1009() {
    let mut p = peer().await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","method":"echo","params":["{}"],"id":1}}"#,
        "x".repeat(11 << 20)
    );
    let _ = p.0.send(ws_net::Message::text(big)).await;
    loop {
        match within(p.0.recv()).await {
            Some(Ok(ws_net::Message::Close(Some(f)))) => {
                assert_eq!(f.code, ws_net::CloseCode::MESSAGE_TOO_BIG);
                break;
            }
            Some(Ok(ws_net::Message::Close(None))) => panic!("close without a code"),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => panic!("ended without a close frame"),
        }
    }
}

#[tokio::test]
async fn a_flood_from_a_peer_that_never_reads_stalls_both_ways() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (addr, _s) = serve(router(running.clone(), most.clone())).await;
    let Raw(ws) = Raw::connect(addr).await;
    // The reader is kept and never read: answers pile up, then stop.
    let (_reader, writer) = ws.split();
    let sent = Arc::new(AtomicUsize::new(0));
    let flood = tokio::spawn({
        let sent = sent.clone();
        async move {
            for i in 0..1_000_000u64 {
                let m = format!(
                    r#"{{"jsonrpc":"2.0","method":"echo","params":["{}"],"id":{i}}}"#,
                    "x".repeat(512)
                );
                if writer.send(ws_net::Message::text(m)).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    // Wait until the flood stalls: the count stops moving.
    let mut last = 0;
    let stalled = within(async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = sent.load(Ordering::SeqCst);
            if now == last && now > 0 {
                return now;
            }
            last = now;
        }
    })
    .await;
    assert!(stalled < 1_000_000, "the flood never stalled");
    assert!(most.load(Ordering::SeqCst) <= 256);
    flood.abort();
}
