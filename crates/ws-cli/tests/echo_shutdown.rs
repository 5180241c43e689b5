//! `ws echo` on SIGTERM: every open connection is closed with 1001, and the
//! server exits as soon as they are closed, not after its close timeout.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ws_net::{CloseCode, Message, WebSocket};

/// Every wait of this test is bounded by this.
const BOUND: Duration = Duration::from_secs(5);

/// Kills the server if the test fails before it exits.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn next(ws: &mut WebSocket) -> Option<Message> {
    loop {
        match tokio::time::timeout(BOUND, ws.recv()).await {
            Err(_) => panic!("no message within {BOUND:?}"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(m))) => return Some(m),
            Ok(Some(Err(e))) => panic!("connection failed: {e}"),
            Ok(None) => return None,
        }
    }
}

#[tokio::test]
async fn sigterm_closes_every_connection_with_1001_then_exits() {
    let child = Command::new(env!("CARGO_BIN_EXE_ws"))
        .args(["echo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ws echo");
    let mut server = Server(child);
    // Kept open to the end: the server may still write to it.
    let mut stdout = BufReader::new(server.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();

    let mut clients = Vec::new();
    for i in 0..3 {
        let (mut ws, _) = tokio::time::timeout(BOUND, ws_net::connect(&url))
            .await
            .expect("connect in time")
            .expect("connect");
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(next(&mut ws).await, Some(Message::text(text)));
        clients.push(ws);
    }

    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    for ws in &mut clients {
        match next(ws).await {
            Some(Message::Close(Some(f))) => {
                assert_eq!(f.code, CloseCode::GOING_AWAY);
                assert_eq!(f.reason.as_str(), "server shutting down");
            }
            other => panic!("expected a 1001 close, got {other:?}"),
        }
        // The client's reply completes the closing handshake.
        assert_eq!(next(ws).await, None);
    }

    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        // Its close timeout is 10 s: it must not wait for that.
        assert!(started.elapsed() < BOUND, "ws echo did not exit in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(status.success(), "ws echo exited with {status}");
    drop(stdout);
}
