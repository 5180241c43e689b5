//! Echo server on tokio-tungstenite, in the style of its `echo-server`
//! example: split the stream and forward text and binary messages to the
//! sink (`forward` feeds while messages are ready and flushes when the
//! stream would block, so writes are batched).

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::TcpStream;

fn main() -> std::io::Result<()> {
    let addr = side_by_side_peers::listen_addr("tungstenite-echo");
    side_by_side_peers::runtime().block_on(async move {
        let listener = side_by_side_peers::bind(addr)?;
        loop {
            let tcp = side_by_side_peers::accept(&listener).await;
            tokio::spawn(echo(tcp));
        }
    })
}

async fn echo(tcp: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}
