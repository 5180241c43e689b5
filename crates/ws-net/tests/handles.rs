//! What the layers above need of a connection's handles: a send that never
//! waits, readiness, identity and state on both halves, `closed()` waiters
//! woken only at the end, sticky errors the same on every handle, internal
//! keepalive pongs, and the client handshake over any stream.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use common::{accept_one, listener, next_message, raw_client, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ws_net::{
    ClientBuilder, CloseCode, Config, Error, Message, PreparedMessage, ProtocolError, State,
    TrySendError,
};

fn url(addr: std::net::SocketAddr) -> String {
    format!("ws://{addr}/")
}

/// A server connection whose raw peer never reads, with a small write
/// buffer.
async fn stalled_server(limit: usize) -> (ws_net::WebSocket, tokio::net::TcpStream) {
    let (l, addr) = listener().await;
    let mut config = Config::default();
    config.write_buffer_limit = limit;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        ws_net::server::accept(tcp, config).await.unwrap()
    });
    let peer = raw_client(addr).await;
    (within(server).await.unwrap(), peer)
}

#[tokio::test]
async fn try_send_hands_the_message_back_when_the_buffer_is_full() {
    let (ws, mut peer) = stalled_server(64 * 1024).await;
    let (_reader, writer) = ws.split();
    let chunk = bytes::Bytes::from(vec![1u8; 32 * 1024]);
    // Fill the socket and then the write buffer, never waiting.
    let mut sent = 0;
    let full = loop {
        match writer.try_send(Message::Binary(chunk.clone())) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 100_000, "the buffer never filled");
    };
    assert!(full.is_full(), "{full:?}");
    let back = full.into_inner();
    assert_eq!(
        back,
        Message::Binary(chunk.clone()),
        "the message comes back"
    );
    assert!(writer.buffered_amount() >= 64 * 1024);
    // A prepared message is refused the same way.
    let prepared = PreparedMessage::new(Message::text("tick"));
    assert!(matches!(
        writer.try_send_prepared(&prepared),
        Err(TrySendError::Full(()))
    ));
    // Not ready while full...
    let waker = Waker::from(Arc::new(Counter::default()));
    let mut cx = Context::from_waker(&waker);
    assert!(writer.poll_ready(&mut cx).is_pending());
    // ...and ready once the peer reads everything.
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        while peer.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    within(writer.ready()).await.unwrap();
    writer.try_send(Message::Binary(chunk)).unwrap();
    writer.try_send_prepared(&prepared).unwrap();
    drain.abort();
}

#[tokio::test]
async fn try_send_fails_with_the_connections_end() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move { accept_one(&l).await });
    let (client, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    let mut server = within(server).await.unwrap();
    // An invalid message is handed back with why; the connection goes on.
    let long = Message::Ping(vec![0u8; 126].into());
    match server.writer().try_send(long.clone()) {
        Err(TrySendError::Failed(m, Error::Send(_))) => assert_eq!(m, long),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.state(), State::Open);
    // After a clean close: Closed, the message handed back.
    drop(client);
    assert!(matches!(
        next_message(&mut server).await,
        Some(Message::Close(_))
    ));
    match server.writer().try_send(Message::text("late")) {
        Err(TrySendError::Failed(m, Error::Closed)) => assert_eq!(m, Message::text("late")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        server
            .writer()
            .try_send_prepared(&PreparedMessage::new(Message::text("x"))),
        Err(TrySendError::Failed((), Error::Closed))
    ));
    assert!(matches!(
        within(server.writer().ready()).await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn both_halves_know_the_connection() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, peer) = l.accept().await.unwrap();
        let ws = ws_net::server::accept_with(tcp, Config::default(), |req| {
            Ok(ws_net::server::Accept::default().protocol(req.select_protocol(&["p2"]).unwrap()))
        })
        .await
        .unwrap();
        (ws, peer)
    });
    let (client, _) = within(
        ClientBuilder::new(&url(addr))
            .unwrap()
            .protocol("p2")
            .connect(),
    )
    .await
    .unwrap();
    let (server, client_addr) = within(server).await.unwrap();
    assert_ne!(client.id(), server.id(), "each connection has its own id");
    assert_eq!(server.peer_addr(), Some(client_addr));
    assert_eq!(client.peer_addr(), Some(addr));
    let server_id = server.id();
    let (reader, writer) = server.split();
    assert_eq!(reader.id(), server_id);
    assert_eq!(writer.id(), server_id);
    assert_eq!(writer.clone().id(), server_id);
    assert_eq!(reader.peer_addr(), Some(client_addr));
    assert_eq!(reader.protocol(), Some("p2"));
    assert_eq!(writer.protocol(), Some("p2"));
    assert_eq!(reader.state(), State::Open);
    // The writer learns how the connection ended, without the reader.
    writer.close(CloseCode::GOING_AWAY, "bye").await.unwrap();
    assert_eq!(writer.state(), State::Closing);
    let mut client = client;
    while within(client.recv()).await.is_some() {}
    drop(reader);
    within(writer.closed()).await;
    assert_eq!(writer.state(), State::Closed);
    let info = writer.close_info();
    assert_eq!(info.sent.unwrap().code, CloseCode::GOING_AWAY);
    assert_eq!(info.received.unwrap().code, CloseCode::GOING_AWAY);
    assert_eq!(info.initiator, Some(ws_net::Initiator::Local));
    assert!(writer.error().is_none(), "a clean close is no error");
}

/// Counts its wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn closed_waiters_are_woken_only_at_the_end() {
    let (ws, mut peer) = stalled_server(16 * 1024).await;
    let writer = ws.writer();
    let counter = Arc::new(Counter::default());
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let mut closed = std::pin::pin!(ws.closed());
    assert!(closed.as_mut().poll(&mut cx).is_pending());
    // A sender waits for room, then the peer reads: the sender is woken,
    // the closed() waiter is not.
    let payload = bytes::Bytes::from(vec![2u8; 8 * 1024]);
    while writer.try_send(Message::Binary(payload.clone())).is_ok() {}
    let sender = {
        let writer = writer.clone();
        let payload = payload.clone();
        tokio::spawn(async move {
            for _ in 0..64 {
                writer.send(Message::Binary(payload.clone())).await.unwrap();
            }
        })
    };
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0;
    while !sender.is_finished() {
        got += within(peer.read(&mut buf)).await.unwrap();
    }
    assert!(got > 0);
    within(sender).await.unwrap();
    assert_eq!(counter.0.load(Ordering::SeqCst), 0, "woken by sends");
    assert!(closed.as_mut().poll(&mut cx).is_pending());
    // The end wakes it.
    drop(peer);
    drop(writer);
    drop(ws);
    within(async {
        while counter.0.load(Ordering::SeqCst) == 0 {
            ws_net::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(closed.as_mut().poll(&mut cx).is_ready());
}

#[tokio::test]
async fn a_protocol_error_is_the_same_on_every_handle() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move { accept_one(&l).await });
    let mut peer = raw_client(addr).await;
    let server = within(server).await.unwrap();
    let (mut reader, writer) = server.split();
    let other_writer = writer.clone();
    // An unmasked frame from a client (§5.1).
    peer.write_all(&[0x81, 0x01, b'x']).await.unwrap();
    let err = match within(reader.recv()).await {
        Some(Err(e)) => e,
        other => panic!("{other:?}"),
    };
    assert!(
        matches!(err, Error::Protocol(ProtocolError::UnmaskedFrame)),
        "{err:?}"
    );
    assert!(within(reader.recv()).await.is_none(), "the error was last");
    for w in [&writer, &other_writer] {
        match w.send(Message::text("after")).await {
            Err(Error::Protocol(ProtocolError::UnmaskedFrame)) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            w.error(),
            Some(Error::Protocol(ProtocolError::UnmaskedFrame))
        ));
        assert!(matches!(
            w.try_send(Message::text("x")),
            Err(TrySendError::Failed(
                _,
                Error::Protocol(ProtocolError::UnmaskedFrame)
            ))
        ));
    }
    assert!(matches!(
        reader.error(),
        Some(Error::Protocol(ProtocolError::UnmaskedFrame))
    ));
    // The peer was told: a close frame with 1002.
    let mut reply = [0u8; 4];
    within(peer.read_exact(&mut reply)).await.unwrap();
    assert_eq!(reply[0], 0x88);
    assert_eq!(u16::from_be_bytes([reply[2], reply[3]]), 1002);
}

#[tokio::test]
async fn a_transport_error_is_shared_by_every_handle() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move { accept_one(&l).await });
    let peer = raw_client(addr).await;
    let server = within(server).await.unwrap();
    let (mut reader, writer) = server.split();
    // The peer resets the connection.
    peer.set_zero_linger().unwrap();
    drop(peer);
    let err = match within(reader.recv()).await {
        Some(Err(e)) => e,
        other => panic!("{other:?}"),
    };
    let seen = writer.error().expect("the writer sees it");
    match (&err, &seen) {
        (Error::Io(a), Error::Io(b)) => assert!(Arc::ptr_eq(a, b), "one shared error"),
        (Error::Protocol(a), Error::Protocol(b)) => assert_eq!(a, b),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn keepalive_pongs_are_not_messages_and_give_the_round_trip() {
    let mut config = Config::default();
    config.protocol.ping_interval = Some(Duration::from_millis(50));
    let addr = common::echo_server(Config::default()).await;
    let (mut ws, _) = within(
        ClientBuilder::new(&url(addr))
            .unwrap()
            .config(config)
            .connect(),
    )
    .await
    .unwrap();
    assert_eq!(ws.rtt(), None);
    // Our own ping's pong is ours; the keepalive ones are not delivered.
    ws.send(Message::Ping("mine".into())).await.unwrap();
    let until = std::time::Instant::now() + Duration::from_millis(400);
    let mut pongs = Vec::new();
    while std::time::Instant::now() < until {
        if let Ok(Some(m)) = ws_net::time::timeout(Duration::from_millis(50), ws.recv()).await {
            pongs.push(m.unwrap());
        }
    }
    assert_eq!(pongs, [Message::Pong("mine".into())]);
    let rtt = ws.rtt().expect("a keepalive ping was answered");
    assert!(rtt < Duration::from_secs(5), "{rtt:?}");
}

#[tokio::test]
async fn a_client_handshake_over_any_stream() {
    // An in-memory pipe: the server accepts one end, the client the other.
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let mut ws = ws_net::server::accept_with(a, Config::default(), |req| {
            assert_eq!(req.path(), "/over/pipe");
            assert_eq!(req.headers()["host"], "example.test");
            Ok(Default::default())
        })
        .await
        .unwrap();
        common::echo_loop(&mut ws).await;
    });
    let (mut ws, response) = within(
        ClientBuilder::new("ws://example.test/over/pipe")
            .unwrap()
            .handshake(b),
    )
    .await
    .unwrap();
    assert_eq!(response.response().status(), 101);
    assert_eq!(ws.peer_addr(), None, "a pipe has no address");
    ws.send(Message::text("through the pipe")).await.unwrap();
    assert_eq!(
        next_message(&mut ws).await,
        Some(Message::text("through the pipe"))
    );
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    while within(ws.recv()).await.is_some() {}
    within(server).await.unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn a_client_handshake_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("ws-net-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = ws_net::server::accept(stream, Config::default())
            .await
            .unwrap();
        common::echo_loop(&mut ws).await;
    });
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let (mut ws, _) = within(
        ClientBuilder::new("ws://localhost/")
            .unwrap()
            .handshake(stream),
    )
    .await
    .unwrap();
    ws.send(Message::text("unix")).await.unwrap();
    assert_eq!(next_message(&mut ws).await, Some(Message::text("unix")));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `n` server connections, each with its raw peer.
async fn many_connections(
    n: usize,
) -> (
    Vec<(ws_net::WsReader, ws_net::WsWriter)>,
    Vec<tokio::net::TcpStream>,
) {
    let (l, addr) = listener().await;
    let mut halves = Vec::with_capacity(n);
    let mut peers = Vec::with_capacity(n);
    for _ in 0..n {
        let (ws, peer) = tokio::join!(accept_one(&l), raw_client(addr));
        halves.push(ws.split());
        peers.push(peer);
    }
    (halves, peers)
}

async fn each_peer_gets_a_tick(peers: &mut [tokio::net::TcpStream]) {
    for peer in peers {
        let mut frame = [0u8; 6];
        within(peer.read_exact(&mut frame)).await.unwrap();
        assert_eq!(&frame, b"\x81\x04tick");
    }
}

/// On a current-thread runtime, a task that sends to many connections in
/// one poll (a broadcast) writes to each socket itself: tokio's cooperative
/// budget, which makes a task's I/O report Pending after 128 operations in
/// one poll, does not hand the rest to the connections' driver tasks (there
/// is no other thread to run them).
#[tokio::test]
async fn a_send_to_many_connections_in_one_poll_writes_to_each_at_once() {
    let (halves, mut peers) = many_connections(300).await;
    // (An await before it gives this poll a fresh budget.)
    tokio::task::yield_now().await;
    let tick = PreparedMessage::new(Message::text("tick"));
    for (_, w) in &halves {
        w.try_send_prepared(&tick).unwrap();
    }
    let waiting = halves
        .iter()
        .filter(|(_, w)| w.buffered_amount() > 0)
        .count();
    assert_eq!(waiting, 0, "sends left to the driver tasks");
    each_peer_gets_a_tick(&mut peers).await;
}

/// On a multi-thread runtime the same broadcast writes to the first
/// connections itself and leaves the rest to their driver tasks, which the
/// other worker threads run: every connection still gets its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_many_connections_on_several_threads_reaches_each() {
    let (halves, mut peers) = many_connections(300).await;
    tokio::task::yield_now().await;
    let tick = PreparedMessage::new(Message::text("tick"));
    for (_, w) in &halves {
        w.try_send_prepared(&tick).unwrap();
    }
    each_peer_gets_a_tick(&mut peers).await;
    for (_, w) in &halves {
        within(w.flush()).await.unwrap();
        assert_eq!(w.buffered_amount(), 0);
    }
}
