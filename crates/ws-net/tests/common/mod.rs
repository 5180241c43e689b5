//! Shared helpers for the loopback tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ws_net::{Config, Message, WebSocket};

/// Every test step is bounded by this.
pub const STEP: Duration = Duration::from_secs(20);

/// (On ws-net's clocks, so it works on a runtime without tokio's timer.)
pub async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    ws_net::time::timeout(STEP, fut)
        .await
        .expect("test step timed out")
}

/// An echo server on 127.0.0.1 with `config`; returns its address.
pub async fn echo_server(config: Config) -> SocketAddr {
    let listener = ws_net::server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let config = config.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = ws_net::server::accept(tcp, config).await else {
                    return;
                };
                echo_loop(&mut ws).await;
            });
        }
    });
    addr
}

pub async fn echo_loop(ws: &mut WebSocket) {
    while let Some(Ok(msg)) = ws.recv().await {
        if msg.is_data() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// Accept one connection on `l` and complete its handshake, default config.
pub async fn accept_one(l: &TcpListener) -> WebSocket {
    let (tcp, _) = l.accept().await.unwrap();
    ws_net::server::accept(tcp, Config::default())
        .await
        .unwrap()
}

/// Await `fut` and check it took less than `limit` (how long it took, if
/// it did not).
pub async fn done_within<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> T {
    let start = std::time::Instant::now();
    let out = within(fut).await;
    let took = start.elapsed();
    assert!(took < limit, "took {took:?}");
    out
}

/// A listener for tests that accept by hand.
pub async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// The next data or close message, skipping pings and pongs.
pub async fn next_message(ws: &mut WebSocket) -> Option<Message> {
    loop {
        match within(ws.recv()).await {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
            Some(Err(e)) => panic!("unexpected error: {e}"),
            None => return None,
        }
    }
}

/// A valid upgrade request, for raw-socket peers.
pub const REQUEST: &[u8] =
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A raw client that completes the handshake and is then left to the
/// test: it may send anything, or nothing.
pub async fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(REQUEST).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// Fill the socket and then the write buffer of a connection whose peer
/// reads nothing (`Config::write_buffer_limit` should be small): until the
/// write buffer stays full while the driver has had time to write. (A
/// socket that refused a write once may take more a moment later, as the
/// peer's kernel acknowledges what it received.)
pub async fn fill(writer: &ws_net::WsWriter) {
    let chunk = bytes::Bytes::from(vec![0u8; 32 * 1024]);
    let mut sent = 0;
    loop {
        while writer.try_send(Message::Binary(chunk.clone())).is_ok() {
            sent += 1;
            assert!(sent < 100_000, "the buffer never filled");
        }
        let before = writer.buffered_amount();
        tokio::time::sleep(Duration::from_millis(30)).await;
        if writer.buffered_amount() >= before {
            return;
        }
    }
}

/// After the peer's close frame, on a connection whose peer never reads:
/// the connection ends with `CloseTimeout`, no sooner than most of
/// `close_timeout` after the close arrived.
pub async fn ends_at_the_close_timeout(
    mut reader: ws_net::WsReader,
    writer: ws_net::WsWriter,
    close_timeout: Duration,
) {
    let start = std::time::Instant::now();
    loop {
        match within(reader.recv()).await {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    within(writer.closed()).await;
    let took = start.elapsed();
    assert!(took >= close_timeout * 5 / 6, "{took:?}");
    assert!(
        matches!(
            writer.error(),
            Some(ws_net::Error::Protocol(
                ws_proto::ProtocolError::CloseTimeout
            ))
        ),
        "{:?}",
        writer.error()
    );
}
