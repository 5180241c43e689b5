//! Arbitrary bytes as one message to a ws-rpc server connection: parsed,
//! dispatched through a router (a method, a notification handler, a
//! subscription, the heartbeat), answered.
//!
//! Checks: no panic; an answer, when there is one, is JSON: an object with
//! `"jsonrpc": "2.0"` and an `id`, and exactly one of `result` and `error`
//! (an `error` with an integer code and a string message), or a non-empty
//! array of such objects.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use ws_rpc::harness::Harness;
use ws_rpc::{Router, RpcError};

fn router() -> Router {
    Router::new()
        .method("add", |(a, b): (i64, i64), _cx| async move {
            a.checked_add(b)
                .ok_or_else(|| RpcError::invalid_params("overflow"))
        })
        .method("echo", |p: Value, _cx| async move { Ok::<_, RpcError>(p) })
        .notification("log", |_: Value, _cx| async move {})
        .subscription("sub", "item", "unsub", |_: Value, sink, _cx| async move {
            let _ = sink.send(&1);
        })
}

thread_local! {
    static HARNESS: RefCell<Harness> = RefCell::new(Harness::new(router()));
}

fn check_response(v: &Value) {
    let o = v.as_object().expect("an answer is an object");
    assert_eq!(o.get("jsonrpc"), Some(&Value::from("2.0")));
    assert!(o.contains_key("id"));
    match (o.get("result"), o.get("error")) {
        (Some(_), None) => {}
        (None, Some(e)) => {
            assert!(e["code"].is_i64(), "{e}");
            assert!(e["message"].is_string(), "{e}");
        }
        other => panic!("result and error: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let answer = HARNESS.with(|h| h.borrow_mut().message(data));
    if let Some(text) = answer {
        let v: Value = serde_json::from_str(&text).expect("the answer is JSON");
        match &v {
            Value::Array(items) => {
                assert!(!items.is_empty(), "an empty batch answer");
                items.iter().for_each(check_response);
            }
            other => check_response(other),
        }
    }
});
