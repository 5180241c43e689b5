//! Upgrades carried out by other HTTP stacks: hyper 1.x (`ws_net::hyper`)
//! and axum 0.8 (`ws_net::axum`). Each is accepted with the subprotocol and
//! permessage-deflate in force, refused with the right status, and runs
//! with the limits of its `Config`.
#![cfg(all(feature = "hyper", feature = "axum"))]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{next_message, within};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ws_net::{ClientBuilder, CloseCode, Config, ConnectError, Message};

/// The server's settings in these tests: deflate on, a small message
/// limit, a fast keepalive.
fn server_config() -> Config {
    let mut config = Config::default();
    config.deflate = Some(Default::default());
    config.protocol.max_message_size = 1024;
    config.protocol.ping_interval = Some(Duration::from_millis(100));
    config
}

async fn echo(mut ws: ws_net::WebSocket) {
    while let Some(Ok(msg)) = ws.recv().await {
        if msg.is_data() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// An axum app: `/ws` upgrades (refusing without `?token=t`), speaking
/// `chat.v2`; the peer address comes from `ConnectInfo`.
async fn axum_server() -> SocketAddr {
    async fn handler(
        ws: ws_net::axum::WebSocketUpgrade,
        axum::extract::RawQuery(query): axum::extract::RawQuery,
    ) -> Response {
        if query.as_deref() != Some("token=t") {
            return (StatusCode::UNAUTHORIZED, "no token").into_response();
        }
        assert!(ws.peer_addr().is_some());
        let peer = ws.peer_addr();
        ws.config(server_config())
            .protocols(["chat.v1", "chat.v2"])
            .response_header(
                http::header::SET_COOKIE,
                http::HeaderValue::from_static("s=1"),
            )
            .on_upgrade(move |ws| async move {
                assert_eq!(ws.peer_addr(), peer);
                echo(ws).await
            })
    }
    let app = axum::Router::new().route("/ws", get(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// A hyper server with the same behaviour, through `ws_net::hyper`.
async fn hyper_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(move |mut req| async move {
                if req.uri().query() != Some("token=t") {
                    let r = ws_net::server::Reject::new(StatusCode::UNAUTHORIZED, "no token");
                    return Ok::<_, hyper::Error>(r.into_response());
                }
                let config = server_config();
                let upgraded = ws_net::hyper::upgrade(&mut req, &config, |r| {
                    let mut accept = ws_net::server::Accept::default().header(
                        http::header::SET_COOKIE,
                        http::HeaderValue::from_static("s=1"),
                    );
                    accept.protocol = r.select_protocol(&["chat.v1", "chat.v2"]).map(Into::into);
                    Ok(accept)
                });
                match upgraded {
                    Ok((response, pending)) => {
                        tokio::spawn(async move {
                            let ws = pending.peer_addr(peer).await.unwrap();
                            assert_eq!(ws.peer_addr(), Some(peer));
                            echo(ws).await
                        });
                        Ok(response)
                    }
                    Err(e) => Ok(e.into_response()),
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .with_upgrades(),
            );
        }
    });
    addr
}

/// Accepted: subprotocol and deflate in force on both ends, the response
/// header sent, messages echoed, the server's limits and keepalive applied.
async fn check_accepted(addr: SocketAddr) {
    let mut client_config = Config::default();
    client_config.deflate = Some(Default::default());
    client_config.protocol.ping_interval = None;
    let (mut ws, response) = within(
        ClientBuilder::new(&format!("ws://{addr}/ws?token=t"))
            .unwrap()
            .protocol("chat.v2")
            .config(client_config)
            .connect(),
    )
    .await
    .unwrap();
    assert_eq!(response.protocol(), Some("chat.v2"));
    assert_eq!(ws.protocol(), Some("chat.v2"));
    assert!(ws.deflate().is_some(), "permessage-deflate agreed");
    assert!(response
        .headers()
        .get("sec-websocket-extensions")
        .is_some_and(|v| v.to_str().unwrap().contains("permessage-deflate")));
    assert_eq!(response.headers()["set-cookie"], "s=1");
    let text = "compressible text, ".repeat(40);
    assert!(text.len() < 1024);
    ws.send(Message::text(text.clone())).await.unwrap();
    // The server's keepalive pings (every 100 ms) reach us.
    let mut pinged = false;
    let echoed = loop {
        match within(ws.recv()).await {
            Some(Ok(Message::Ping(_))) => pinged = true,
            Some(Ok(m)) => break m,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(echoed, Message::text(text));
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !pinged && std::time::Instant::now() < until {
        if let Ok(Some(Ok(Message::Ping(_)))) =
            ws_net::time::timeout(Duration::from_millis(200), ws.recv()).await
        {
            pinged = true;
        }
    }
    assert!(pinged, "the server's keepalive ran");
    // Over the server's message limit: closed with 1009.
    ws.send(Message::binary(vec![0u8; 2000])).await.unwrap();
    match next_message(&mut ws).await {
        Some(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::MESSAGE_TOO_BIG),
        other => panic!("expected 1009, got {other:?}"),
    }
}

/// Refused: no token (the handler's 401), an old version (426 with the
/// version header), a plain GET (400), too many headers (431).
async fn check_refused(addr: SocketAddr) {
    match within(ws_net::connect(&format!("ws://{addr}/ws"))).await {
        Err(ConnectError::Refused { status, .. }) => assert_eq!(status, StatusCode::UNAUTHORIZED),
        other => panic!("{other:?}"),
    }
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let head = raw(
        addr,
        &format!(
            "GET /ws?token=t HTTP/1.1\r\nHost: a\r\n{upgrade}Sec-WebSocket-Version: 8\r\n\r\n"
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{head}"
    );
    let head = raw(addr, "GET /ws?token=t HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
    let head = raw(
        addr,
        &format!(
            "GET /ws?token=t HTTP/1.1\r\nHost: a\r\n{upgrade}Sec-WebSocket-Version: 13\r\n{many}\r\n"
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
}

/// Send a raw request and read the response head.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let n = within(tcp.read(&mut chunk)).await.unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn axum_upgrades_keep_what_was_negotiated() {
    check_accepted(axum_server().await).await;
}

#[tokio::test]
async fn axum_refuses_with_the_right_status() {
    check_refused(axum_server().await).await;
}

#[tokio::test]
async fn hyper_upgrades_keep_what_was_negotiated() {
    check_accepted(hyper_server().await).await;
}

#[tokio::test]
async fn hyper_refuses_with_the_right_status() {
    check_refused(hyper_server().await).await;
}
