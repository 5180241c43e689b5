//! Echo server on tokio-websockets (`server` feature, `sha1_smol` for the
//! handshake), in the style of its `echo_server` example: the handshake
//! and a next/send loop in one `unconstrained` task per connection. Default
//! `Config` and `Limits` (64 MiB messages), like the other servers.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_websockets::ServerBuilder;

fn main() -> std::io::Result<()> {
    let addr = side_by_side_peers::listen_addr("tokio-websockets-echo");
    side_by_side_peers::runtime().block_on(async move {
        let listener = side_by_side_peers::bind(addr)?;
        loop {
            let tcp = side_by_side_peers::accept(&listener).await;
            tokio::spawn(tokio::task::unconstrained(echo(tcp)));
        }
    })
}

async fn echo(tcp: TcpStream) {
    let Ok((_request, mut ws)) = ServerBuilder::new().accept(tcp).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}
