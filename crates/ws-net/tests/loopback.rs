//! Our client against our server over 127.0.0.1.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{accept_one, done_within, echo_server, listener, next_message, raw_client, within};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ws_net::server::{accept_with, Accept, Reject};
use ws_net::{ClientBuilder, CloseCode, Config, Error, Message, PreparedMessage};

fn url(addr: std::net::SocketAddr) -> String {
    format!("ws://{addr}/")
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn echoes_text_and_binary_of_every_length_class() {
    let addr = echo_server(Config::default()).await;
    let (mut ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    for len in [0, 125, 126, 65535, 65536, 16 << 20] {
        let data = pattern(len);
        within(ws.send(Message::binary(data.clone())))
            .await
            .unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            Some(Message::binary(data)),
            "binary {len}"
        );
        let text: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        within(ws.send(Message::text(text.clone()))).await.unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            Some(Message::text(text)),
            "text {len}"
        );
    }
    let unicode = "κόσμε € 𝄞 ✓";
    within(ws.send(Message::text(unicode))).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::text(unicode)));
}

#[tokio::test]
async fn fragmented_sends_are_reassembled() {
    let addr = echo_server(Config::default()).await;
    let mut config = Config::default();
    config.protocol.fragment_size = 1000;
    let (mut ws, _) = within(
        ClientBuilder::new(&url(addr))
            .unwrap()
            .config(config)
            .connect(),
    )
    .await
    .unwrap();
    let data = pattern(100_000);
    within(ws.send(Message::binary(data.clone())))
        .await
        .unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::binary(data)));
}

#[tokio::test]
async fn ping_gets_pong_with_same_payload() {
    let addr = echo_server(Config::default()).await;
    let (mut ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    within(ws.send(Message::Ping(Bytes::from_static(b"are you there"))))
        .await
        .unwrap();
    match within(ws.recv()).await {
        Some(Ok(Message::Pong(p))) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected pong, got {other:?}"),
    }
    // An oversized ping is refused locally.
    let err = ws
        .send(Message::Ping(Bytes::from(vec![0; 126])))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Send(_)), "{err:?}");
}

#[tokio::test]
async fn client_close_code_reaches_server_and_is_echoed() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut ws = accept_one(&l).await;
        let msg = next_message(&mut ws).await;
        assert_eq!(next_message(&mut ws).await, None);
        (msg, ws.close_info())
    });
    let (mut ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    within(ws.close(CloseCode::from(4000), "bye"))
        .await
        .unwrap();
    match next_message(&mut ws).await {
        Some(Message::Close(Some(f))) => assert_eq!(f.code.as_u16(), 4000),
        other => panic!("expected close echo, got {other:?}"),
    }
    assert_eq!(next_message(&mut ws).await, None);
    assert!(matches!(
        ws.send(Message::text("late")).await,
        Err(Error::Closed)
    ));
    let (msg, info) = within(server).await.unwrap();
    match msg {
        Some(Message::Close(Some(f))) => {
            assert_eq!(f.code.as_u16(), 4000);
            assert_eq!(f.reason.as_str(), "bye");
        }
        other => panic!("server expected close, got {other:?}"),
    }
    assert_eq!(info.initiator, Some(ws_net::Initiator::Peer));
}

#[tokio::test]
async fn server_close_code_reaches_client() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let mut ws = accept_one(&l).await;
        ws.close(CloseCode::GOING_AWAY, "maintenance")
            .await
            .unwrap();
        while ws.recv().await.is_some() {}
    });
    let (mut ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    match next_message(&mut ws).await {
        Some(Message::Close(Some(f))) => {
            assert_eq!(f.code, CloseCode::GOING_AWAY);
            assert_eq!(f.reason.as_str(), "maintenance");
        }
        other => panic!("expected close, got {other:?}"),
    }
    assert_eq!(next_message(&mut ws).await, None);
}

#[tokio::test]
async fn subprotocol_is_negotiated_and_headers_reach_the_callback() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept_with(tcp, Config::default(), |req| {
            assert_eq!(req.path(), "/chat");
            assert_eq!(req.query(), Some("room=7"));
            assert_eq!(req.origin(), Some("http://app.test"));
            assert_eq!(req.headers()["authorization"], "Bearer t0k3n");
            let mut accept = Accept::default();
            accept.protocol = req.select_protocol(&["v2", "v1"]).map(str::to_owned);
            Ok(accept.header(
                http::header::SET_COOKIE,
                HeaderValue::from_static("session=1"),
            ))
        })
        .await
        .unwrap();
        let p = ws.protocol().unwrap_or("").to_owned();
        ws.send(Message::text(p)).await.unwrap();
        while ws.recv().await.is_some() {}
    });
    let (mut ws, response) = within(
        ClientBuilder::new(&format!("ws://{addr}/chat?room=7"))
            .unwrap()
            .protocol("v3")
            .protocol("v1")
            .protocol("v2")
            .origin(HeaderValue::from_static("http://app.test"))
            .header(
                http::header::AUTHORIZATION,
                HeaderValue::from_static("Bearer t0k3n"),
            )
            .connect(),
    )
    .await
    .unwrap();
    // The client's preference order wins among what the server supports.
    assert_eq!(response.protocol(), Some("v1"));
    assert_eq!(ws.protocol(), Some("v1"));
    assert_eq!(response.headers()["set-cookie"], "session=1");
    assert_eq!(next_message(&mut ws).await, Some(Message::text("v1")));
}

#[tokio::test]
async fn callback_refusal_gives_403_with_body() {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let r = accept_with(tcp, Config::default(), |_| {
            Err(Reject::new(StatusCode::FORBIDDEN, "origin not allowed"))
        })
        .await;
        assert!(matches!(
            r,
            Err(ws_net::AcceptError::Refused(StatusCode::FORBIDDEN))
        ));
    });
    match within(ws_net::connect(&url(addr))).await {
        Err(ws_net::ConnectError::Refused { status, body, .. }) => {
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(&body[..], b"origin not allowed\n");
        }
        other => panic!("expected refusal, got {other:?}"),
    }
}

/// Send a raw request to a `ws_net` server and return the whole response.
async fn raw_exchange(request: &[u8]) -> String {
    let addr = echo_server(Config::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    within(tcp.read_to_end(&mut out)).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn version_8_gets_426_with_supported_version() {
    let response = raw_exchange(
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13\r\n"),
        "{response}"
    );
}

#[tokio::test]
async fn plain_get_gets_400_and_a_closed_socket() {
    let response = raw_exchange(b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
}

#[tokio::test]
async fn non_get_gets_405() {
    let response = raw_exchange(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 405 "), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("allow: get"),
        "{response}"
    );
}

#[tokio::test]
async fn split_halves_work_from_many_tasks() {
    let addr = echo_server(Config::default()).await;
    let (ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    let (mut reader, writer) = ws.split();
    let mut tasks = Vec::new();
    for t in 0..4u8 {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250u32 {
                let mut payload = vec![t];
                payload.extend_from_slice(&i.to_be_bytes());
                w.send(Message::binary(payload)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        within(t).await.unwrap();
    }
    // Each sender's messages arrive in its order.
    let mut next = [0u32; 4];
    for _ in 0..1000 {
        let Some(Ok(Message::Binary(b))) = within(reader.recv()).await else {
            panic!("expected binary")
        };
        let t = usize::from(b[0]);
        assert_eq!(u32::from_be_bytes([b[1], b[2], b[3], b[4]]), next[t]);
        next[t] += 1;
    }
    assert_eq!(next, [250; 4]);
}

#[tokio::test]
async fn stream_and_sink_traits() {
    let addr = echo_server(Config::default()).await;
    let (mut ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    for i in 0..16 {
        ws.feed(Message::text(format!("m{i}"))).await.unwrap();
    }
    ws.flush().await.unwrap();
    assert_eq!(ws.buffered_amount(), 0);
    for i in 0..16 {
        let msg = within(ws.next()).await.unwrap().unwrap();
        assert_eq!(msg, Message::text(format!("m{i}")));
    }
    within(SinkExt::close(&mut ws)).await.unwrap();
    match next_message(&mut ws).await {
        Some(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::NORMAL),
        other => panic!("expected close, got {other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_connection_flushes_then_closes() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut ws = accept_one(&l).await;
        let mut got = Vec::new();
        while let Some(m) = next_message(&mut ws).await {
            got.push(m);
        }
        got
    });
    let (mut ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    for i in 0..100 {
        ws.send(Message::binary(vec![i as u8; 10_000]))
            .await
            .unwrap();
    }
    drop(ws);
    let got = within(server).await.unwrap();
    assert_eq!(got.len(), 101, "100 messages and a close");
    for (i, m) in got[..100].iter().enumerate() {
        assert_eq!(m, &Message::binary(vec![i as u8; 10_000]));
    }
    assert!(matches!(&got[100], Message::Close(Some(f)) if f.code == CloseCode::NORMAL));
}

#[tokio::test]
async fn prepared_message_goes_to_many_connections() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut conns = Vec::new();
        for _ in 0..5 {
            let (tcp, _) = l.accept().await.unwrap();
            conns.push(
                ws_net::server::accept(tcp, Config::default())
                    .await
                    .unwrap(),
            );
        }
        let prepared = PreparedMessage::new(Message::text("tick"));
        for c in &mut conns {
            c.send_prepared(&prepared).await.unwrap();
        }
        for c in &mut conns {
            c.flush().await.unwrap();
        }
        conns
    });
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(within(ws_net::connect(&url(addr))).await.unwrap().0);
    }
    let _conns = within(server).await.unwrap();
    for c in &mut clients {
        assert_eq!(next_message(c).await, Some(Message::text("tick")));
    }
}

#[tokio::test]
async fn upgrade_from_an_already_parsed_request_keeps_what_was_negotiated() {
    // What a hyper/axum handler does: parse the request elsewhere, answer
    // with `server::upgrade`'s 101, then wrap the upgraded transport.
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        let (mut tcp, _) = l.accept().await.unwrap();
        let mut buf = bytes::BytesMut::new();
        let head = loop {
            tcp.read_buf(&mut buf).await.unwrap();
            if let Some((head, _)) =
                ws_proto::handshake::parse_request_head(&buf, &Default::default()).unwrap()
            {
                break head;
            }
        };
        let mut config = Config::default();
        config.deflate = Some(Default::default());
        let (response, upgrade) = ws_net::server::upgrade(&head, &config, |req| {
            let chosen = req.select_protocol(&["b", "a"]).unwrap();
            Ok(Accept::default().protocol(chosen))
        })
        .unwrap();
        assert_eq!(upgrade.protocol(), Some("b"));
        assert!(upgrade.deflate().is_some());
        tcp.write_all(&ws_proto::handshake::write_response(&response, b""))
            .await
            .unwrap();
        let mut ws = upgrade.into_websocket(tcp);
        assert_eq!(ws.protocol(), Some("b"));
        assert!(ws.deflate().is_some());
        common::echo_loop(&mut ws).await;
    });
    let mut config = Config::default();
    config.deflate = Some(Default::default());
    let (mut ws, response) = within(
        ClientBuilder::new(&url(addr))
            .unwrap()
            .protocol("x")
            .protocol("b")
            .config(config)
            .connect(),
    )
    .await
    .unwrap();
    assert_eq!(response.protocol(), Some("b"));
    assert!(ws.deflate().is_some(), "deflate in force on both ends");
    let text = "through a hyper-style upgrade, compressed ".repeat(20);
    ws.send(Message::text(text.clone())).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::text(text)));
}

#[test]
fn an_invalid_or_refused_upgrade_is_answered_with_its_status() {
    let config = Config::default();
    let plain = http::Request::get("/").body(()).unwrap();
    let err = ws_net::server::upgrade(&plain, &config, |_| Ok(Accept::default())).unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    let old = http::Request::get("/")
        .header("host", "a")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "8")
        .body(())
        .unwrap();
    let response = ws_net::server::upgrade(&old, &config, |_| Ok(Accept::default()))
        .unwrap_err()
        .into_response();
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(response.headers()["sec-websocket-version"], "13");
    let mut ok = old.clone();
    ok.headers_mut().insert(
        "sec-websocket-version",
        http::HeaderValue::from_static("13"),
    );
    let refused = ws_net::server::upgrade(&ok, &config, |_| {
        Err(Reject::new(StatusCode::UNAUTHORIZED, "no token"))
    })
    .unwrap_err()
    .into_response();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.body(), "no token\n");
    // The handshake limits of the config apply to a head parsed elsewhere.
    let mut many = ok.clone();
    for i in 0..70 {
        many.headers_mut().insert(
            http::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
            http::HeaderValue::from_static("v"),
        );
    }
    let err = ws_net::server::upgrade(&many, &config, |_| Ok(Accept::default())).unwrap_err();
    assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[tokio::test]
async fn bad_urls_are_refused() {
    use ws_net::ConnectError;
    assert!(matches!(
        ClientBuilder::new("http//nope"),
        Err(ConnectError::UnsupportedScheme | ConnectError::InvalidUrl(_))
    ));
    assert!(matches!(
        ClientBuilder::new("ftp://a/"),
        Err(ConnectError::UnsupportedScheme)
    ));
    assert!(matches!(
        ClientBuilder::new("ws:///path"),
        Err(ConnectError::NoHost | ConnectError::InvalidUrl(_))
    ));
    // Nothing listens on port 1: the connection fails quickly.
    let err = within(ws_net::connect("ws://127.0.0.1:1/"))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn idle_timeout_closes_with_1001() {
    let mut config = Config::default();
    config.protocol.idle_timeout = Some(Duration::from_millis(300));
    let addr = echo_server(config).await;
    let (mut ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    match next_message(&mut ws).await {
        Some(Message::Close(Some(f))) => {
            assert_eq!(f.code, CloseCode::GOING_AWAY);
            assert_eq!(f.reason.as_str(), "idle timeout");
        }
        other => panic!("expected close, got {other:?}"),
    }
}

#[tokio::test]
async fn closed_resolves_after_the_close_reply_is_delivered() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut ws = accept_one(&l).await;
        ws.close(CloseCode::GOING_AWAY, "bye").await.unwrap();
        // The client's reply arrives as the end of our closing handshake.
        let reply = next_message(&mut ws).await;
        (reply, ws.close_info())
    });
    let (ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    let (mut reader, writer) = ws.split();
    assert!(matches!(
        within(reader.recv()).await,
        Some(Ok(Message::Close(Some(_))))
    ));
    drop(reader);
    done_within(Duration::from_secs(3), writer.closed()).await;
    let (reply, info) = within(server).await.unwrap();
    assert!(matches!(reply, Some(Message::Close(Some(f))) if f.code == CloseCode::GOING_AWAY));
    assert_eq!(info.initiator, Some(ws_net::Initiator::Local));
}

#[tokio::test]
async fn closed_resolves_once_the_stream_has_ended_without_dropping_it() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut ws = accept_one(&l).await;
        ws.close(CloseCode::NORMAL, "done").await.unwrap();
        while let Some(Ok(_)) = ws.recv().await {}
        ws.closed().await;
    });
    let (mut ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    while let Some(Ok(_)) = within(ws.recv()).await {}
    // The client must see the server's end of file before it is done
    // (RFC 6455 §7.1.1): nothing reads the stream any more, yet this must
    // not wait for the close timeout (10 s).
    done_within(Duration::from_secs(3), ws.closed()).await;
    within(server).await.unwrap();
}

#[tokio::test]
async fn a_server_closes_its_socket_as_soon_as_the_closing_handshake_is_done() {
    // RFC 6455 §7.1.1: the server closes the TCP connection first. Once it
    // has the client's close frame and has answered it, it closes at once:
    // it does not wait for the client's end of file, and the client reads
    // the close reply then a clean end of file (no reset).
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut ws = accept_one(&l).await;
        while let Some(Ok(_)) = ws.recv().await {}
        // Not the 2 s a server lingering for the client's end of file takes.
        done_within(Duration::from_secs(1), ws.closed()).await;
        ws.close_info()
    });
    let mut tcp = raw_client(addr).await;
    // A masked close frame, 1000, mask 0.
    tcp.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])
        .await
        .unwrap();
    let mut reply = Vec::new();
    within(tcp.read_to_end(&mut reply)).await.unwrap();
    assert_eq!(reply, [0x88, 0x02, 0x03, 0xe8]);
    let info = within(server).await.unwrap();
    assert_eq!(info.initiator, Some(ws_net::Initiator::Peer));
    // The client still has its side open: the server did not wait for it.
    tcp.shutdown().await.unwrap();
}

// How sends reach the socket. These tests run on a current-thread runtime:
// between an await returning and the next await, the driver task cannot
// run, so `buffered_amount() == 0` right after `send` means the send wrote
// the frame itself.

#[tokio::test]
async fn send_on_an_idle_connection_writes_in_the_call() {
    let addr = echo_server(Config::default()).await;
    let (mut ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    for len in [3, 1000, 200_000] {
        within(ws.send(Message::binary(pattern(len))))
            .await
            .unwrap();
        // A large frame may not fit the socket buffer at once: the driver
        // finishes it. A small one is gone already.
        if len < 64 * 1024 {
            assert_eq!(ws.buffered_amount(), 0, "len {len}");
        }
        match next_message(&mut ws).await {
            Some(Message::Binary(b)) => assert_eq!(b.len(), len),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn sink_feed_queues_and_flush_writes_the_batch() {
    let addr = echo_server(Config::default()).await;
    let (mut ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    for i in 0..10u8 {
        within(ws.feed(Message::binary(vec![i; 10]))).await.unwrap();
    }
    assert!(ws.buffered_amount() > 0, "feed only queues");
    within(SinkExt::flush(&mut ws)).await.unwrap();
    assert_eq!(ws.buffered_amount(), 0);
    for i in 0..10u8 {
        match next_message(&mut ws).await {
            Some(Message::Binary(b)) => assert_eq!(&b[..], &[i; 10]),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn replies_to_requests_read_together_go_out_together() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut ws = accept_one(&l).await;
        let mut queued_while_input_waited = Vec::new();
        for _ in 0..3 {
            let msg = next_message(&mut ws).await.unwrap();
            ws.send(msg).await.unwrap();
            queued_while_input_waited.push(ws.buffered_amount() > 0);
        }
        ws.flush().await.unwrap();
        queued_while_input_waited
    });
    let (mut ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    // Three messages in one write: the server reads them together.
    for i in 0..3u8 {
        within(ws.feed(Message::binary(vec![i]))).await.unwrap();
    }
    within(SinkExt::flush(&mut ws)).await.unwrap();
    for i in 0..3u8 {
        match next_message(&mut ws).await {
            Some(Message::Binary(b)) => assert_eq!(&b[..], &[i]),
            other => panic!("{other:?}"),
        }
    }
    // The first two replies waited for the third (more input was already
    // received); the last one went out with them, at once.
    assert_eq!(within(server).await.unwrap(), [true, true, false]);
}
