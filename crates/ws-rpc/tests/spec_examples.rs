//! Every example of the JSON-RPC 2.0 specification's section 7, sent byte
//! for byte to the spec server over a real socket, gets the answer the
//! specification gives (batch answers compared as sets).

mod common;

#[path = "../examples/spec_server.rs"]
#[allow(dead_code)]
mod spec_server;

use std::time::Duration;

use common::{json, serve, Raw};
use serde_json::Value;

/// (request as the spec writes it, the answer it gives, or None).
const EXAMPLES: &[(&str, Option<&str>)] = &[
    (
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}"#,
        Some(r#"{"jsonrpc": "2.0", "result": 19, "id": 1}"#),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}"#,
        Some(r#"{"jsonrpc": "2.0", "result": -19, "id": 2}"#),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}"#,
        Some(r#"{"jsonrpc": "2.0", "result": 19, "id": 3}"#),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}"#,
        Some(r#"{"jsonrpc": "2.0", "result": 19, "id": 4}"#),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}"#,
        None,
    ),
    (r#"{"jsonrpc": "2.0", "method": "foobar"}"#, None),
    (
        r#"{"jsonrpc": "2.0", "method": "foobar", "id": "1"}"#,
        Some(
            r#"{"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"}"#,
        ),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#,
        Some(
            r#"{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}"#,
        ),
    ),
    (
        r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#,
        Some(
            r#"{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}"#,
        ),
    ),
    (
        r#"[
  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
  {"jsonrpc": "2.0", "method"
]"#,
        Some(
            r#"{"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}"#,
        ),
    ),
    (
        r#"[]"#,
        Some(
            r#"{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}"#,
        ),
    ),
    (
        r#"[1]"#,
        Some(
            r#"[
  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}
]"#,
        ),
    ),
    (
        r#"[1,2,3]"#,
        Some(
            r#"[
  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
  {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null}
]"#,
        ),
    ),
    (
        r#"[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"} 
    ]"#,
        Some(
            r#"[
        {"jsonrpc": "2.0", "result": 7, "id": "1"},
        {"jsonrpc": "2.0", "result": 19, "id": "2"},
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": null},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
        {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"}
    ]"#,
        ),
    ),
    (
        r#"[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]"#,
        None,
    ),
];

/// Batch answers as a multiset: sorted by their text.
fn normalize(v: Value) -> Value {
    match v {
        Value::Array(mut items) => {
            items.sort_by_key(|i| i.to_string());
            Value::Array(items)
        }
        other => other,
    }
}

#[tokio::test]
async fn every_example_of_section_7_gets_the_specified_answer() {
    let (addr, _server) = serve(spec_server::router()).await;
    let mut peer = Raw::connect(addr).await;
    for (request, answer) in EXAMPLES {
        peer.send(request).await;
        match answer {
            Some(expected) => {
                let got = peer.recv().await.expect("an answer");
                assert_eq!(normalize(got), normalize(json(expected)), "for {request}");
            }
            None => assert!(
                peer.silent_for(Duration::from_millis(200)).await,
                "no answer expected for {request}"
            ),
        }
    }
}

#[tokio::test]
async fn ticks_arrive_every_10_ms_and_stop_when_unsubscribed() {
    let (addr, _server) = serve(spec_server::router()).await;
    let mut peer = Raw::connect(addr).await;
    let reply = peer
        .call(r#"{"jsonrpc":"2.0","method":"subscribe_ticks","id":1}"#)
        .await;
    let id = reply["result"].clone();
    assert!(id.is_u64(), "{reply}");
    for k in 1..=5 {
        let item = peer.recv().await.unwrap();
        assert_eq!(item["method"], "ticks");
        assert_eq!(item["params"]["subscription"], id);
        assert_eq!(item["params"]["result"], serde_json::json!({ "n": k }));
    }
    peer.send(&format!(
        r#"{{"jsonrpc":"2.0","method":"unsubscribe_ticks","params":[{id}],"id":2}}"#
    ))
    .await;
    // Ticks already on their way may come before the answer.
    loop {
        let m = peer.recv().await.unwrap();
        if m.get("id") == Some(&serde_json::json!(2)) {
            assert_eq!(m["result"], true);
            break;
        }
    }
    assert!(peer.silent_for(Duration::from_millis(100)).await);
}
