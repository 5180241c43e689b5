//! Timers on real sockets and clocks: that the deadlines ws-proto asks for
//! fire (keepalive, close timeout), and ws-net's own handshake timeout.
//! The timer rules themselves are tested in ws-proto on simulated time.
//! Peers here are raw TCP sockets that misbehave on purpose.

mod common;

use std::time::{Duration, Instant};

use common::{ends_at_the_close_timeout, fill, listener, raw_client, within, REQUEST};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ws_net::{AcceptError, CloseCode, Config, Error, Message, ProtocolError};

#[tokio::test]
async fn dead_peer_is_detected_by_keepalive() {
    let (l, addr) = listener().await;
    let mut config = Config::default();
    config.protocol.ping_interval = Some(Duration::from_millis(200));
    config.protocol.ping_timeout = Duration::from_millis(300);
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = ws_net::server::accept(tcp, config).await.unwrap();
        let start = Instant::now();
        let mut pings = 0;
        loop {
            match ws.recv().await {
                Some(Err(e)) => return (e, start.elapsed(), pings),
                Some(Ok(Message::Ping(_))) => pings += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    let mut client = raw_client(addr).await;
    let (err, elapsed, _) = within(server).await.unwrap();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::KeepaliveTimeout)),
        "{err:?}"
    );
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // The peer saw a ping, then the end of the connection.
    let mut got = Vec::new();
    within(client.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got[0], 0x89, "a ping frame first");
}

/// Send numbered texts and check each echo, pausing between them, for
/// `how_long`; reading answers the peer's pings on the way.
async fn echo_texts_for(ws: &mut ws_net::WebSocket, how_long: Duration, pause: Duration) {
    let until = Instant::now() + how_long;
    let mut i = 0;
    while Instant::now() < until {
        ws.send(Message::text(format!("{i}"))).await.unwrap();
        assert_eq!(
            common::next_message(ws).await,
            Some(Message::text(format!("{i}")))
        );
        ws_net::time::sleep(pause).await;
        i += 1;
    }
}

#[tokio::test]
async fn close_handshake_times_out_when_peer_never_answers() {
    let (l, addr) = listener().await;
    let mut config = Config::default();
    config.protocol.close_timeout = Duration::from_millis(300);
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = ws_net::server::accept(tcp, config).await.unwrap();
        ws.close(CloseCode::NORMAL, "").await.unwrap();
        let start = Instant::now();
        let end = ws.recv().await;
        (end, start.elapsed())
    });
    let mut client = raw_client(addr).await;
    let (end, elapsed) = within(server).await.unwrap();
    assert!(
        matches!(end, Some(Err(Error::Protocol(ProtocolError::CloseTimeout)))),
        "{end:?}"
    );
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    // Our close frame, then the end of the stream.
    let mut got = Vec::new();
    within(client.read_to_end(&mut got)).await.unwrap();
    assert_eq!(&got[..4], &[0x88, 0x02, 0x03, 0xe8]);
}

#[tokio::test]
async fn slowloris_handshake_hits_the_timeout() {
    let (l, addr) = listener().await;
    let mut config = Config::default();
    config.handshake_timeout = Duration::from_millis(500);
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let start = Instant::now();
        let r = ws_net::server::accept(tcp, config).await;
        (r.map(|_| ()), start.elapsed())
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let sender = tokio::spawn(async move {
        for b in REQUEST {
            if tcp.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tcp
    });
    let (r, elapsed) = within(server).await.unwrap();
    assert!(matches!(r, Err(AcceptError::HandshakeTimeout)), "{r:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    let mut tcp = within(sender).await.unwrap();
    // The server dropped the socket: the client reads end of file or a reset.
    let mut buf = [0u8; 16];
    let n = within(tcp.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn garbage_and_huge_heads_get_errors_not_hangs() {
    let addr = common::echo_server(Config::default()).await;
    for request in [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n".to_vec(),
        [
            b"GET /".as_slice(),
            &vec![b'a'; 20_000],
            b" HTTP/1.1\r\n\r\n",
        ]
        .concat(),
        [
            b"GET / HTTP/1.1\r\n".as_slice(),
            &b"X-A: b\r\n".repeat(100),
            b"\r\n",
        ]
        .concat(),
    ] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let _ = tcp.write_all(&request).await;
        let mut out = Vec::new();
        let _ = within(tcp.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 400") || text.starts_with("HTTP/1.1 431"),
            "{text}"
        );
    }
}

/// A connection over an in-memory transport on a runtime built without
/// I/O (no reactor): its timers still run, and nothing panics. A client
/// that never answers pings is found dead by keepalive.
#[test]
fn timers_run_on_a_runtime_without_io() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let (server_io, mut client_io) = tokio::io::duplex(64 * 1024);
        let mut config = Config::default();
        config.protocol.ping_interval = Some(Duration::from_millis(100));
        config.protocol.ping_timeout = Duration::from_millis(150);
        let mut ws = ws_net::WebSocket::from_raw(server_io, ws_net::Role::Server, config);
        let start = Instant::now();
        // The client reads (so writes never block) and never answers.
        let drain = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while matches!(client_io.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        let end = match within(ws.recv()).await {
            Some(Err(e)) => e,
            Some(Ok(m)) => panic!("unexpected {m:?}"),
            None => panic!("ended without an error"),
        };
        assert!(
            matches!(end, Error::Protocol(ProtocolError::KeepaliveTimeout)),
            "{end:?}"
        );
        assert!(start.elapsed() >= Duration::from_millis(250));
        drain.abort();
    });
}

/// The runtime `ws echo` runs on: I/O but no tokio timer (which would
/// panic if anything used it). A server's handshake timeout, keepalive on
/// both sides, a client's connect and handshake, echoes and the closing
/// handshake all run on ws-net's own clocks.
#[test]
fn a_server_and_a_client_run_on_a_runtime_without_a_timer() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let (l, addr) = listener().await;
        let mut config = Config::default();
        config.handshake_timeout = Duration::from_millis(300);
        config.protocol.ping_interval = Some(Duration::from_millis(100));
        config.protocol.ping_timeout = Duration::from_millis(300);
        let server_config = config.clone();
        let server = tokio::spawn(async move {
            // A client that sends nothing hits the handshake timeout.
            let (tcp, _) = l.accept().await.unwrap();
            let start = Instant::now();
            let r = ws_net::server::accept(tcp, server_config.clone()).await;
            assert!(matches!(r, Err(AcceptError::HandshakeTimeout)), "{r:?}");
            let waited = start.elapsed();
            let (tcp, _) = l.accept().await.unwrap();
            let mut ws = ws_net::server::accept(tcp, server_config).await.unwrap();
            common::echo_loop(&mut ws).await;
            waited
        });
        let silent = TcpStream::connect(addr).await.unwrap();
        let (mut ws, _) = within(
            ws_net::ClientBuilder::new(&format!("ws://{addr}/"))
                .unwrap()
                .config(config)
                .connect(),
        )
        .await
        .unwrap();
        // Echoes for longer than a few ping intervals: the pings of both
        // sides are answered, so neither side's keepalive ends it.
        echo_texts_for(
            &mut ws,
            Duration::from_millis(700),
            Duration::from_millis(50),
        )
        .await;
        ws.close(CloseCode::NORMAL, "done").await.unwrap();
        while let Some(m) = within(ws.recv()).await {
            assert!(
                matches!(
                    m,
                    Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_))
                ),
                "{m:?}"
            );
        }
        let waited = within(server).await.unwrap();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        drop(silent);
    });
}

/// A peer that sends its close frame and then never reads: our answer
/// (behind what was already queued) cannot be written, and the connection
/// is dropped at the close timeout instead of waiting on the write for
/// ever.
#[tokio::test]
async fn a_peer_that_closes_and_never_reads_is_dropped_at_the_close_timeout() {
    let (l, addr) = listener().await;
    let mut config = Config::default();
    config.protocol.close_timeout = Duration::from_millis(300);
    config.write_buffer_limit = 64 * 1024;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        ws_net::server::accept(tcp, config).await.unwrap()
    });
    let mut client = raw_client(addr).await;
    let (reader, writer) = within(server).await.unwrap().split();
    fill(&writer).await;
    // The peer's close frame: masked, code 1000.
    client
        .write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])
        .await
        .unwrap();
    ends_at_the_close_timeout(reader, writer, Duration::from_millis(300)).await;
    drop(client);
}
