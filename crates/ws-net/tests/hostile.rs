//! Hostile peers against the server: every byte sequence ends in a message
//! or a close with the right code, in bounded time and memory.

mod common;

use std::time::Duration;

use common::{done_within, ends_at_the_close_timeout, fill, listener, raw_client, within, REQUEST};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ws_net::{CloseCode, Config, Error, Message};
use ws_proto::ProtocolError;

/// A masked client frame (mask 0, so the payload reads as is).
fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

/// Start a server that reports how its connection ended.
async fn server(config: Config) -> (std::net::SocketAddr, tokio::task::JoinHandle<Option<Error>>) {
    let (l, addr) = listener().await;
    let task = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = ws_net::server::accept(tcp, config).await.unwrap();
        loop {
            match ws.recv().await {
                Some(Ok(m)) if m.is_data() => {
                    let _ = ws.send(m).await;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    });
    (addr, task)
}

/// Read frames until a close frame; return its code.
async fn read_close_code(tcp: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    within(async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.unwrap_or(0);
            assert!(n > 0, "connection ended without a close frame: {buf:x?}");
            buf.extend_from_slice(&chunk[..n]);
            // Walk unmasked server frames.
            let mut at = 0;
            while buf.len() >= at + 2 {
                let len = match buf[at + 1] & 0x7f {
                    126 if buf.len() >= at + 4 => {
                        (u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize, 4)
                    }
                    127 if buf.len() >= at + 10 => {
                        let mut l = [0u8; 8];
                        l.copy_from_slice(&buf[at + 2..at + 10]);
                        (u64::from_be_bytes(l) as usize, 10)
                    }
                    126 | 127 => break,
                    n => (n as usize, 2),
                };
                if buf.len() < at + len.1 + len.0 {
                    break;
                }
                if buf[at] & 0x0f == 0x8 {
                    let p = &buf[at + len.1..];
                    return u16::from_be_bytes([p[0], p[1]]);
                }
                at += len.1 + len.0;
            }
        }
    })
    .await
}

#[tokio::test]
async fn header_announcing_2_pow_63_gets_1009_at_once() {
    let (addr, server) = server(Config::default()).await;
    let mut tcp = raw_client(addr).await;
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.unwrap();
    assert_eq!(read_close_code(&mut tcp).await, 1009);
    let err = within(server).await.unwrap().unwrap();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::FrameTooBig { .. })),
        "{err:?}"
    );
}

/// A peer still sending when the server fails the connection (a browser
/// uploading a message over the limit) reads the close frame and a clean
/// end: the server shuts down its side and discards input for a while.
/// Closing the socket with input unread would make the kernel answer with
/// a reset, and a browser then reports 1006 instead of the 1009 sent.
#[tokio::test]
async fn a_peer_still_sending_when_failed_gets_the_close_and_no_reset() {
    let (addr, server) = server(Config::default()).await;
    let mut tcp = raw_client(addr).await;
    // A frame over the 16 MiB frame limit, and the start of its payload.
    let mut data = vec![0x82, 0xff];
    data.extend_from_slice(&(32u64 << 20).to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, 0]);
    data.extend(vec![0u8; 256 * 1024]);
    tcp.write_all(&data).await.unwrap();
    assert_eq!(read_close_code(&mut tcp).await, 1009);
    let err = within(server).await.unwrap().unwrap();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::FrameTooBig { .. })),
        "{err:?}"
    );
    // Still sending, as the peer has not read the close yet: no reset.
    tokio::time::sleep(Duration::from_millis(100)).await;
    within(tcp.write_all(&vec![0u8; 256 * 1024]))
        .await
        .expect("the server discards input after its close frame");
    tcp.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(tcp.read_to_end(&mut rest))
        .await
        .expect("a clean end of file, not a reset");
    assert!(rest.is_empty(), "{rest:x?}");
}

#[tokio::test]
async fn endless_fragmented_message_gets_1009_past_the_limit() {
    let mut config = Config::default();
    config.protocol.max_message_size = 1 << 20;
    let (addr, server) = server(config).await;
    let mut tcp = raw_client(addr).await;
    let piece = vec![b'x'; 64 * 1024];
    let writer = tokio::spawn(async move {
        let _ = tcp.write_all(&frame(0x02, &piece)).await;
        // 40 more pieces: 2.6 MiB in all, well past the 1 MiB limit.
        for _ in 0..40 {
            if tcp.write_all(&frame(0x00, &piece)).await.is_err() {
                break;
            }
        }
        tcp
    });
    let err = within(server).await.unwrap().unwrap();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::MessageTooBig { .. })),
        "{err:?}"
    );
    assert_eq!(err.close_code(), Some(CloseCode::MESSAGE_TOO_BIG));
    let mut tcp = within(writer).await.unwrap();
    assert_eq!(read_close_code(&mut tcp).await, 1009);
}

#[tokio::test]
async fn invalid_utf8_split_across_frames_fails_at_that_frame() {
    let (addr, server) = server(Config::default()).await;
    let mut tcp = raw_client(addr).await;
    // "a" and the first byte of a 4-byte sequence: still valid so far.
    tcp.write_all(&frame(0x01, &[b'a', 0xf4])).await.unwrap();
    // 0x90 after 0xf4 is past U+10FFFF: invalid in this frame, which does
    // not end the message. The third frame is never sent.
    tcp.write_all(&frame(0x00, &[0x90, 0x80, 0x80]))
        .await
        .unwrap();
    assert_eq!(read_close_code(&mut tcp).await, 1007);
    let err = within(server).await.unwrap().unwrap();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::InvalidUtf8)),
        "{err:?}"
    );
}

#[tokio::test]
async fn ping_flood_from_a_peer_that_never_reads_is_capped_then_closed() {
    let (l, addr) = listener().await;
    let config = Config::default();
    let threshold = config.protocol.pong_backlog_threshold;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = ws_net::server::accept(tcp, config).await.unwrap();
        let mut max_buffered = 0;
        loop {
            max_buffered = max_buffered.max(ws.buffered_amount());
            match ws.recv().await {
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(other)) => panic!("unexpected {other:?}"),
                Some(Err(e)) => return (e, max_buffered),
                None => panic!("ended without an error"),
            }
        }
    });
    let mut tcp = raw_client(addr).await;
    let ping = frame(0x89, &[7u8; 125]);
    let batch: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 1000)
        .collect();
    let flood = tokio::spawn(async move {
        // At most 400k pings (52 MB), never reading a byte.
        for _ in 0..400 {
            if tokio::time::timeout(Duration::from_secs(5), tcp.write_all(&batch))
                .await
                .is_err()
            {
                break;
            }
        }
        tcp
    });
    let (err, max_buffered) = within(server).await.unwrap();
    assert!(
        matches!(err, Error::Protocol(ProtocolError::WriteBufferFull { .. })),
        "{err:?}"
    );
    assert_eq!(err.close_code(), Some(CloseCode::POLICY_VIOLATION));
    // Queued replies never passed twice the pong backlog threshold (the
    // queue plus one batch being written) and a frame.
    assert!(max_buffered <= 2 * threshold + 256, "{max_buffered}");
    flood.abort();
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// 10,000 connections dropped abruptly at every stage: before the
/// handshake ends, right after it, and in the middle of a frame. Afterwards
/// the server holds no more tasks, file descriptors or memory than before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_abrupt_drops_leak_nothing() {
    let (l, addr) = listener().await;
    let mut config = Config::default();
    config.handshake_timeout = Duration::from_secs(5);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(mut ws) = ws_net::server::accept(tcp, config).await {
                    common::echo_loop(&mut ws).await;
                }
            });
        }
    });
    // Warm up allocator and runtime before the baseline.
    for _ in 0..50 {
        drop(raw_client(addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let (fds0, tasks0, rss0) = (open_fds(), metrics.num_alive_tasks(), rss());
    let partial_frame = frame(0x82, &[9u8; 1000])[..500].to_vec();
    for batch in 0..50 {
        let mut clients = Vec::new();
        for i in 0..200 {
            let partial_frame = partial_frame.clone();
            clients.push(tokio::spawn(async move {
                let Ok(mut tcp) = TcpStream::connect(addr).await else {
                    return;
                };
                match (batch * 200 + i) % 3 {
                    0 => {
                        let _ = tcp.write_all(&REQUEST[..40]).await;
                    }
                    1 => {
                        let _ = tcp.write_all(REQUEST).await;
                    }
                    _ => {
                        let _ = tcp.write_all(REQUEST).await;
                        let _ = tcp.write_all(&partial_frame).await;
                    }
                }
                // Linger 0 would send a reset; a plain drop sends FIN
                // without reading the reply: both are abrupt for the server.
                if i % 2 == 0 {
                    // A zero linger makes the drop send a reset; it does not
                    // block here because nothing is left unsent.
                    #[allow(deprecated)]
                    let _ = tcp.set_linger(Some(Duration::ZERO));
                }
                drop(tcp);
            }));
        }
        for c in clients {
            within(c).await.unwrap();
        }
    }
    // Let every server task notice the end of its connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let tasks = metrics.num_alive_tasks();
        if (tasks <= tasks0 && open_fds() <= fds0 + 2) || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (fds1, tasks1, rss1) = (open_fds(), metrics.num_alive_tasks(), rss());
    eprintln!("fds {fds0} -> {fds1}, tasks {tasks0} -> {tasks1}, rss {rss0} -> {rss1}");
    assert!(tasks1 <= tasks0, "tasks leaked: {tasks0} -> {tasks1}");
    assert!(
        fds1 <= fds0 + 2,
        "file descriptors leaked: {fds0} -> {fds1}"
    );
    assert!(rss1 < rss0 + (32 << 20), "memory grew: {rss0} -> {rss1}");
}

#[tokio::test]
async fn a_protocol_error_ends_the_stream_and_the_close_completes_unread() {
    // A raw server: it answers the handshake, sends an invalid frame, reads
    // the client's close frame, replies, and closes.
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut tcp = accept_raw(&l).await;
        // A continuation frame with nothing to continue (RFC 6455 §5.4): a
        // protocol error after which the framing is still sound, so the
        // client waits for the server's close reply. Unmasked, as a
        // server's frames are.
        tcp.write_all(&[0x80, 0x01, b'x']).await.unwrap();
        let mut got = [0u8; 8];
        tcp.read_exact(&mut got).await.unwrap();
        let code = u16::from_be_bytes([got[6] ^ got[2], got[7] ^ got[3]]);
        tcp.write_all(&[0x88, 0x02, 0x03, 0xea]).await.unwrap();
        // Like the Autobahn fuzzing server, wait for the client to close.
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        (got[0], code)
    });
    let (mut ws, _) = within(ws_net::connect(&format!("ws://{addr}/")))
        .await
        .unwrap();
    let err = within(ws.recv()).await;
    assert!(matches!(err, Some(Err(Error::Protocol(_)))), "{err:?}");
    // The client waits for the server's reply and end of file (§7.1.1).
    // The application stopped reading at the error, as most loops do: that
    // must not make the connection wait for the close timeout.
    done_within(Duration::from_secs(3), ws.closed()).await;
    let after = within(ws.recv()).await;
    assert!(after.is_none(), "the error was the last item: {after:?}");
    assert_eq!(within(server).await.unwrap(), (0x88, 1002));
}

/// Accept one connection and answer its opening handshake by hand: a raw
/// server, left to the test after the 101.
async fn accept_raw(l: &tokio::net::TcpListener) -> TcpStream {
    let (mut tcp, _) = l.accept().await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .unwrap();
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        ws_proto::handshake::accept_key(key.as_bytes())
    );
    tcp.write_all(response.as_bytes()).await.unwrap();
    tcp
}

/// The client's side of a peer that closes and never reads: a server
/// sends its close frame and reads nothing more, with the client's socket
/// and write buffer full. The client's answer cannot be written; the
/// connection ends at the close timeout instead of waiting on the write
/// for ever.
#[tokio::test]
async fn a_server_that_closes_and_never_reads_is_dropped_at_the_close_timeout() {
    let (l, addr) = listener().await;
    let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let mut tcp = accept_raw(&l).await;
        // Wait until the client has filled its buffers, then close (an
        // unmasked server frame, code 1000) and never read again.
        let _ = closed_rx.await;
        tcp.write_all(&[0x88, 0x02, 0x03, 0xe8]).await.unwrap();
        // Keep the socket open (and unread) until the test is done.
        let _ = hold_rx.await;
        drop(tcp);
    });
    let mut config = Config::default();
    config.protocol.close_timeout = Duration::from_millis(300);
    config.write_buffer_limit = 64 * 1024;
    let builder = ws_net::ClientBuilder::new(&format!("ws://{addr}/"))
        .unwrap()
        .config(config);
    let (ws, _) = within(builder.connect()).await.unwrap();
    let (reader, writer) = ws.split();
    fill(&writer).await;
    closed_tx.send(()).unwrap();
    ends_at_the_close_timeout(reader, writer, Duration::from_millis(300)).await;
    let _ = hold_tx.send(());
    within(server).await.unwrap();
}

#[tokio::test]
async fn a_client_dropped_after_the_close_closes_its_socket_at_once() {
    // Reading the stream to its end and dropping the connection at once is
    // the common way to finish; the socket must still be closed as soon as
    // the server's end of file arrives, not after the close timeout.
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut tcp = accept_raw(&l).await;
        tcp.write_all(&[0x88, 0x02, 0x03, 0xe8]).await.unwrap();
        let mut reply = [0u8; 8];
        tcp.read_exact(&mut reply).await.unwrap();
        tcp.shutdown().await.unwrap();
        let start = std::time::Instant::now();
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        (reply[0], start.elapsed())
    });
    let (mut ws, _) = within(ws_net::connect(&format!("ws://{addr}/")))
        .await
        .unwrap();
    while let Some(Ok(_)) = within(ws.recv()).await {}
    drop(ws);
    let (opcode, waited) = within(server).await.unwrap();
    assert_eq!(opcode, 0x88);
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}
