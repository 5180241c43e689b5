//! A peer that never reads cannot grow our memory: `send` waits once the
//! write buffer is full. Its own test binary, so RSS is not shared with
//! other tests.

mod common;

use std::time::Duration;

use common::{listener, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ws_net::{Config, Message};

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The bound we state: queued bytes never pass the write-buffer limit plus
/// one message, and the process grows by less than 32 MiB while trying to
/// push 1 GiB at a peer that reads nothing.
#[tokio::test]
async fn peer_that_never_reads_keeps_memory_bounded() {
    const MESSAGE: usize = 64 * 1024;
    const TOTAL: usize = 1 << 30;
    let (l, addr) = listener().await;
    let config = Config::default();
    let limit = config.write_buffer_limit;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = ws_net::server::accept(tcp, config).await.unwrap();
        let payload = bytes::Bytes::from(vec![7u8; MESSAGE]);
        let before = rss_bytes();
        let mut sent = 0usize;
        let mut max_buffered = 0;
        while sent < TOTAL {
            match tokio::time::timeout(
                Duration::from_millis(500),
                ws.send(Message::Binary(payload.clone())),
            )
            .await
            {
                Ok(Ok(())) => sent += MESSAGE,
                Ok(Err(e)) => panic!("send failed: {e}"),
                Err(_) => break, // blocked: backpressure holds
            }
            max_buffered = max_buffered.max(ws.buffered_amount());
        }
        let grown = rss_bytes().saturating_sub(before);
        (sent, max_buffered, grown)
    });
    // Handshake by hand, then never read again.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut b = [0u8; 1];
    tcp.read_exact(&mut b).await.unwrap();
    let (sent, max_buffered, grown) = within(server).await.unwrap();
    assert!(sent < TOTAL, "sends never blocked: {sent} bytes sent");
    assert!(
        max_buffered <= limit + MESSAGE,
        "buffered {max_buffered} > {limit} + {MESSAGE}"
    );
    assert!(grown < 32 << 20, "RSS grew by {grown} bytes");
    eprintln!("sent {sent} bytes before blocking; max buffered {max_buffered}; RSS +{grown}");
    drop(tcp);
}
