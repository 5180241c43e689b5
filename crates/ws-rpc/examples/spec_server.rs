//! The JSON-RPC 2.0 specification's own methods (its section 7), served
//! over WebSocket, with a subscription:
//!
//! - `subtract`: `[minuend, subtrahend]` or `{"minuend", "subtrahend"}`
//! - `sum`: the sum of an array of numbers
//! - `get_data`: `["hello", 5]`
//! - notifications `update`, `notify_hello`, `notify_sum` (no answer)
//! - `subscribe_ticks` / `unsubscribe_ticks`: items `{"n": k}`, k = 1, 2,
//!   3, ..., every 10 ms, under the notification method `ticks`
//!
//!     cargo run --release -p ws-rpc --example spec_server -- --listen 127.0.0.1:9944
use std::time::Duration;

use serde::Deserialize;
use ws_rpc::{Router, RpcError, Server};

#[derive(Deserialize)]
struct Subtract {
    minuend: f64,
    subtrahend: f64,
}

/// A number as the spec's examples show it: an integer when it is one.
fn number(x: f64) -> serde_json::Value {
    if x.fract() == 0.0 && x.abs() < 9e15 {
        serde_json::json!(x as i64)
    } else {
        serde_json::json!(x)
    }
}

/// The methods.
pub fn router() -> Router {
    Router::new()
        .method("subtract", |p: Subtract, _cx| async move {
            Ok::<_, RpcError>(number(p.minuend - p.subtrahend))
        })
        .method("sum", |p: Vec<f64>, _cx| async move {
            Ok::<_, RpcError>(number(p.iter().sum()))
        })
        .method("get_data", |_: serde_json::Value, _cx| async move {
            Ok::<_, RpcError>(serde_json::json!(["hello", 5]))
        })
        .notification("update", |_: serde_json::Value, _cx| async move {})
        .notification("notify_hello", |_: serde_json::Value, _cx| async move {})
        .notification("notify_sum", |_: serde_json::Value, _cx| async move {})
        .subscription(
            "subscribe_ticks",
            "ticks",
            "unsubscribe_ticks",
            |_: serde_json::Value, sink, _cx| async move {
                let mut every = tokio::time::interval(Duration::from_millis(10));
                every.tick().await;
                for n in 1u64.. {
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = sink.closed() => return,
                    }
                    if sink.send(&serde_json::json!({ "n": n })).is_err() {
                        return;
                    }
                }
            },
        )
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:9944".to_owned();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().expect("--listen ADDR"),
            other => panic!("unknown argument {other}; usage: spec_server --listen ADDR"),
        }
    }
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    let server = Server::builder().build(router());
    let handle = server.handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        handle.shutdown();
    });
    server.serve(listener).await
}
