//! An axum app with a WebSocket route: `/echo` speaks the `chat`
//! subprotocol, accepts permessage-deflate, and echoes messages of up to
//! 1 MiB (a larger one is closed with 1009).
//!
//!     cargo run -p ws-net --features axum --example axum -- 127.0.0.1:3000
use std::net::SocketAddr;

use axum::response::Response;
use axum::routing::get;
use ws_net::axum::WebSocketUpgrade;

async fn echo(ws: WebSocketUpgrade) -> Response {
    let mut config = ws_net::Config::default();
    config.deflate = Some(Default::default());
    config.protocol.max_message_size = 1 << 20;
    ws.config(config)
        .protocols(["chat"])
        .on_upgrade(|mut ws| async move {
            while let Some(Ok(msg)) = ws.recv().await {
                if msg.is_data() && ws.send(msg).await.is_err() {
                    break;
                }
            }
        })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let app = axum::Router::new().route("/echo", get(echo));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on ws://{}/echo", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
