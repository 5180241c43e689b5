//! permessage-deflate between our client and server, and a bomb from a raw
//! peer.

mod common;

use common::{listener, next_message, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ws_net::{ClientBuilder, Config, Message};
use ws_proto::deflate::DeflateConfig;

fn with_deflate() -> Config {
    let mut c = Config::default();
    c.deflate = Some(DeflateConfig::default());
    c
}

#[tokio::test]
async fn client_and_server_negotiate_and_echo_compressed() {
    let addr = common::echo_server(with_deflate()).await;
    let (mut ws, response) = within(
        ClientBuilder::new(&format!("ws://{addr}/"))
            .unwrap()
            .config(with_deflate())
            .connect(),
    )
    .await
    .unwrap();
    assert_eq!(response.extensions().unwrap(), "permessage-deflate");
    assert!(ws.deflate().is_some());
    let json = r#"{"event":"update","id":12345,"fields":{"a":1,"b":"two"}}"#.repeat(100);
    let random: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for _ in 0..3 {
        ws.send(Message::text(json.clone())).await.unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            Some(Message::text(json.clone()))
        );
        ws.send(Message::binary(random.clone())).await.unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            Some(Message::binary(random.clone()))
        );
    }
}

#[tokio::test]
async fn no_deflate_when_the_server_does_not_accept_it() {
    let addr = common::echo_server(Config::default()).await;
    let (mut ws, response) = within(
        ClientBuilder::new(&format!("ws://{addr}/"))
            .unwrap()
            .config(with_deflate())
            .connect(),
    )
    .await
    .unwrap();
    assert!(response.extensions().is_none());
    assert!(ws.deflate().is_none());
    ws.send(Message::text("plain")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::text("plain")));
}

/// A raw peer negotiates permessage-deflate, then sends one small frame
/// (about 16 KiB) that inflates to 16 MiB, past a 1 MiB message limit: the
/// server answers 1009 without inflating past the limit.
#[tokio::test]
async fn compression_bomb_gets_1009() {
    let (l, addr) = listener().await;
    let mut config = with_deflate();
    config.protocol.max_message_size = 1 << 20;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = ws_net::server::accept(tcp, config).await.unwrap();
        ws.recv().await
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(String::from_utf8_lossy(&head).contains("permessage-deflate"));
    let mut z = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut bomb = Vec::with_capacity(1 << 20);
    z.compress_vec(&vec![0u8; 16 << 20], &mut bomb, flate2::FlushCompress::Sync)
        .unwrap();
    let mut frame = vec![0xc2, 0x80 | 126];
    frame.extend_from_slice(&(bomb.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(&bomb);
    tcp.write_all(&frame).await.unwrap();
    let result = within(server).await.unwrap();
    match result {
        Some(Err(e)) => assert_eq!(e.close_code(), Some(ws_net::CloseCode::MESSAGE_TOO_BIG)),
        other => panic!("expected 1009 failure, got {other:?}"),
    }
    let mut reply = [0u8; 4];
    within(tcp.read_exact(&mut reply)).await.unwrap();
    assert_eq!(reply[0], 0x88);
    assert_eq!(u16::from_be_bytes([reply[2], reply[3]]), 1009);
}
