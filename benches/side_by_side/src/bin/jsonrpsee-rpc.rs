//! A JSON-RPC server on jsonrpsee 0.26, single-threaded like the echo
//! servers: `add [a, b]` answers `a + b`; `subscribe_ticks` /
//! `unsubscribe_ticks` is a subscription whose items (`{"n", "t"}`, from
//! one ticker every `RPC_TICK_US`) go out as notifications `ticks`, each
//! encoded for its subscriber (jsonrpsee's only way: the subscription id is
//! in every item). Default settings, except as many connections as come.

use std::sync::Arc;

use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::server::{PendingSubscriptionSink, RpcModule, Server, ServerConfig};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::Value;
use tokio::sync::broadcast;

fn main() -> std::io::Result<()> {
    let addr = side_by_side_peers::listen_addr("jsonrpsee-rpc");
    side_by_side_peers::runtime().block_on(async move {
        let (tx, _) = broadcast::channel::<Value>(1024);
        let mut module = RpcModule::new(Arc::new(tx.clone()));
        module
            .register_method("add", |params: Params, _, _| {
                let (a, b): (i64, i64) = params.parse()?;
                Ok::<_, ErrorObjectOwned>(a + b)
            })
            .map_err(std::io::Error::other)?;
        module
            .register_subscription(
                "subscribe_ticks",
                "ticks",
                "unsubscribe_ticks",
                |_, pending: PendingSubscriptionSink, tx: Arc<Arc<broadcast::Sender<Value>>>, _| async move {
                    let mut rx = tx.subscribe();
                    let sink = pending.accept().await?;
                    while let Ok(item) = rx.recv().await {
                        let msg = serde_json::value::to_raw_value(&item)?;
                        if sink.send(msg).await.is_err() {
                            break;
                        }
                    }
                    SubscriptionResult::Ok(())
                },
            )
            .map_err(std::io::Error::other)?;
        let config = ServerConfig::builder().max_connections(50_000).build();
        // The same listener as every other server (backlog 1024).
        let listener = side_by_side_peers::bind(addr)?.into_std()?;
        let server = Server::builder()
            .set_config(config)
            .build_from_tcp(listener)?;
        let handle = server.start(module);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(side_by_side_peers::rpc::tick_period());
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 1u64.. {
                every.tick().await;
                let _ = tx.send(side_by_side_peers::rpc::item(n));
            }
        });
        handle.stopped().await;
        Ok(())
    })
}
