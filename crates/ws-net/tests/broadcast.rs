//! `Broadcast`: one prepared message to many connections, the sockets
//! written in a second pass. What it must keep: every connection gets the
//! message, in order with what is sent to it while the broadcast holds its
//! socket, and whole when the socket takes only part of it.
#![cfg(any(target_os = "linux", target_os = "android"))]

mod common;

use std::time::Duration;

use common::{accept_one, listener, next_message, within};
use ws_net::{Broadcast, CloseCode, Message, PreparedMessage, TrySendError, WebSocket};

/// `n` connections: (server side, client side).
async fn pairs(n: usize) -> Vec<(WebSocket, WebSocket)> {
    let (l, addr) = listener().await;
    let mut out = Vec::new();
    for _ in 0..n {
        let url = format!("ws://{addr}/");
        let (client, server) = tokio::join!(ws_net::connect(&url), accept_one(&l));
        out.push((server, client.unwrap().0));
    }
    out
}

fn text(m: Option<Message>) -> String {
    match m {
        Some(Message::Text(t)) => t.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Sent while the broadcast holds the sockets, and with the drivers given
/// time to run meanwhile: the broadcast's message still comes first.
#[tokio::test]
async fn every_connection_gets_the_message_before_what_was_sent_during_it() {
    let mut conns = pairs(5).await;
    let (writers, mut clients): (Vec<_>, Vec<_>) = conns
        .drain(..)
        .map(|(server, client)| (server.split().1, client))
        .unzip();
    let one = PreparedMessage::new(Message::text("one"));
    let mut broadcast = Broadcast::new(&one);
    for w in &writers {
        broadcast.try_send(w).unwrap();
    }
    for w in &writers {
        w.try_send(Message::text("two")).unwrap();
    }
    // The drivers run now (a current-thread runtime runs them while this
    // task sleeps): they must wait for the broadcast.
    tokio::time::sleep(Duration::from_millis(20)).await;
    broadcast.finish();
    for c in &mut clients {
        assert_eq!(text(next_message(c).await), "one");
        assert_eq!(text(next_message(c).await), "two");
    }
}

/// On a multi-thread runtime the sockets are not held (each connection
/// is written as `try_send_prepared` writes it); the outcome is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_multi_thread_runtime_every_connection_gets_it_too() {
    let mut conns = pairs(3).await;
    let one = PreparedMessage::new(Message::text("one"));
    let writers: Vec<_> = conns.iter().map(|(s, _)| s.writer()).collect();
    let mut broadcast = Broadcast::new(&one);
    for w in &writers {
        broadcast.try_send(w).unwrap();
    }
    drop(broadcast);
    for (_, c) in &mut conns {
        assert_eq!(text(next_message(c).await), "one");
    }
}

/// A connection that is over refuses the message with its error.
#[tokio::test]
async fn a_closed_connection_refuses_it() {
    let mut conns = pairs(1).await;
    let (server, mut client) = conns.pop().unwrap();
    let w = server.writer();
    w.close(CloseCode::NORMAL, "bye").await.unwrap();
    let one = PreparedMessage::new(Message::text("one"));
    let mut broadcast = Broadcast::new(&one);
    assert!(matches!(
        broadcast.try_send(&w),
        Err(TrySendError::Failed((), _))
    ));
    broadcast.finish();
    assert!(matches!(
        next_message(&mut client).await,
        Some(Message::Close(_))
    ));
}

/// Thousands of broadcasts of near-2 KiB messages to a client that reads
/// slowly: sockets that take part of a frame, or none, put the rest back
/// in front of the queue. Every message arrives whole and in order.
#[tokio::test]
async fn a_socket_that_takes_part_of_a_frame_gets_the_rest_in_order() {
    let mut conns = pairs(1).await;
    let (server, mut client) = conns.pop().unwrap();
    let (_reader, w) = server.split();
    const N: usize = 3000;
    let reading = tokio::spawn(async move {
        for i in 0..N {
            let got = text(next_message(&mut client).await);
            assert_eq!(got.len(), 2000, "message {i}");
            assert!(got.starts_with(&format!("{i:06}:")), "message {i}");
            if i % 200 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let mut full = 0;
    for i in 0..N {
        let body = format!("{i:06}:{}", "x".repeat(2000 - 7));
        let m = PreparedMessage::new(Message::text(body));
        loop {
            let mut broadcast = Broadcast::new(&m);
            match broadcast.try_send(&w) {
                Ok(()) => break,
                Err(TrySendError::Full(())) => {
                    full += 1;
                    broadcast.finish();
                    within(w.ready()).await.unwrap();
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    within(reading).await.unwrap();
    assert!(full > 0, "the write buffer never filled");
}

/// A peer that is gone when the broadcast writes (its socket reset): the
/// send's error becomes the connection's error, on every handle.
#[tokio::test]
async fn a_peer_gone_before_the_write_ends_the_connection_with_its_error() {
    let (l, addr) = listener().await;
    let (raw, server) = tokio::join!(common::raw_client(addr), accept_one(&l));
    let w = server.writer();
    // Closed with a message unread: the peer's kernel answers with a reset.
    w.try_send(Message::text("unread")).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(raw);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let m = PreparedMessage::new(Message::text("one"));
    let mut refused = false;
    for _ in 0..100 {
        let mut broadcast = Broadcast::new(&m);
        if broadcast.try_send(&w).is_err() {
            refused = true;
            break;
        }
        broadcast.finish();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused, "a reset connection kept taking messages");
    within(w.closed()).await;
    assert!(
        matches!(w.error(), Some(ws_net::Error::Io(_))),
        "{:?}",
        w.error()
    );
}
