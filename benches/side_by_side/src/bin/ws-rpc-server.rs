//! A JSON-RPC server on ws-rpc, single-threaded like the echo servers:
//! `add [a, b]` answers `a + b`; `subscribe_ticks` joins the room `ticks`,
//! whose items (`{"n", "t"}`, from one ticker every `RPC_TICK_US`) are
//! broadcast encoded once as notifications `ticks`; `subscribe_each` is a
//! subscription (jsonrpsee's shape, one encoding per subscriber) fed by
//! the same ticker. Default limits, except as many connections as come.

use serde_json::Value;
use tokio::sync::broadcast;
use ws_rpc::{Context, Router, RpcError, Server, SubscriptionSink};

fn main() -> std::io::Result<()> {
    let addr = side_by_side_peers::listen_addr("ws-rpc-server");
    side_by_side_peers::runtime().block_on(async move {
        let listener = side_by_side_peers::bind(addr)?;
        let (tx, _) = broadcast::channel::<Value>(1024);
        let each = tx.clone();
        let router = Router::new()
            .method("add", |(a, b): (i64, i64), _cx| async move {
                Ok::<_, RpcError>(a + b)
            })
            .method("subscribe_ticks", |_: Value, cx: Context| async move {
                cx.join("ticks");
                Ok::<_, RpcError>(true)
            })
            .subscription(
                "subscribe_each",
                "ticks",
                "unsubscribe_each",
                move |_: Value, sink: SubscriptionSink, _cx: Context| {
                    let mut rx = each.subscribe();
                    async move {
                        while let Ok(item) = rx.recv().await {
                            if sink.send(&item).is_err() {
                                return;
                            }
                        }
                    }
                },
            );
        let server = Server::builder().build(router);
        let rooms = server.handle().rooms().clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(side_by_side_peers::rpc::tick_period());
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 1u64.. {
                every.tick().await;
                let item = side_by_side_peers::rpc::item(n);
                if let Ok(raw) = serde_json::value::to_raw_value(&item) {
                    rooms.broadcast("ticks", "ticks", &raw, None);
                }
                let _ = tx.send(item);
            }
        });
        server.serve(listener).await
    })
}
