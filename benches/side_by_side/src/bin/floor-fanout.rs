//! The fan-out floor: the least CPU a server can spend to deliver one
//! notification to each of its subscribers with the sockets API, to tell
//! what no JSON-RPC server can go below in the fan-out cells.
//!
//! Not a WebSocket library nor a JSON-RPC server: after the opening
//! handshake (101 with the accept key, nothing checked) it takes the
//! client's first frame as a subscribe call and answers it
//! (`{"jsonrpc":"2.0","id":0,"result":true}`), then sends every item of
//! its ticker (every `RPC_TICK_US`, as the RPC servers: `{"jsonrpc":"2.0",
//! "method":"ticks","params":{"n":N,"t":T}}`), encoded once, to every
//! subscriber with one `send` each. An item a socket cannot take at once
//! is not sent to it (the benchmark counts it missing). It reads only to
//! find the first frame and to see a connection end; epoll through mio, as
//! tokio does.
//!
//! `FLOOR_COLD_LINES=k` (default 0) makes it read k cache lines of
//! per-connection memory before each `send`, each line's address depending
//! on the one read before, as a library's path through its per-connection
//! state does (a queue, then a connection, then the socket's readiness):
//! what such a chain costs per item with many subscribers.

use std::io::{self, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use side_by_side_peers::floor::{
    client_header, find, push_server_frame, upgrade_response, MAX_HEAD,
};

const LISTENER: Token = Token(usize::MAX);

enum Phase {
    /// Reading the request head.
    Handshake,
    /// Waiting for the subscribe call.
    Subscribing,
    /// Gets the ticks.
    Subscribed,
}

struct Conn {
    /// `FLOOR_COLD_LINES` lines, each in a page of its own.
    cold: Box<[u64]>,
    tcp: TcpStream,
    phase: Phase,
    buf: Vec<u8>,
}

fn main() -> io::Result<()> {
    let addr = side_by_side_peers::listen_addr("floor-fanout");
    let period = side_by_side_peers::rpc::tick_period();
    let std_listener = side_by_side_peers::floor::listener(addr)?;
    std_listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(std_listener);
    println!("listening on ws://{}", listener.local_addr()?);
    io::stdout().flush()?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut next_tick = std::time::Instant::now() + period;
    let mut n = 0u64;
    let mut frame = Vec::with_capacity(128);
    let cold_lines: usize = std::env::var("FLOOR_COLD_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    loop {
        let now = std::time::Instant::now();
        if now >= next_tick {
            n += 1;
            next_tick += period;
            if next_tick < now {
                next_tick = now + period;
            }
            let payload = format!(
                r#"{{"jsonrpc":"2.0","method":"ticks","params":{{"n":{n},"t":{}}}}}"#,
                side_by_side_peers::rpc::now_us()
            );
            frame.clear();
            push_server_frame(&mut frame, 0x81, payload.as_bytes());
            for conn in conns.iter_mut().flatten() {
                if matches!(conn.phase, Phase::Subscribed) {
                    std::hint::black_box(read_chain(&conn.cold));
                    // One send; what the socket does not take is dropped.
                    let _ = conn.tcp.write(&frame);
                }
            }
            continue;
        }
        if let Err(e) = poll.poll(&mut events, Some(next_tick - now)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((mut tcp, _)) = listener.accept() {
                    let _ = tcp.set_nodelay(true);
                    let i = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    if poll
                        .registry()
                        .register(&mut tcp, Token(i), Interest::READABLE)
                        .is_ok()
                    {
                        conns[i] = Some(Conn {
                            cold: cold_chain(cold_lines),
                            tcp,
                            phase: Phase::Handshake,
                            buf: Vec::new(),
                        });
                    } else {
                        free.push(i);
                    }
                }
                continue;
            }
            let i = event.token().0;
            let alive = conns
                .get_mut(i)
                .and_then(Option::as_mut)
                .is_some_and(on_readable);
            if !alive {
                if let Some(mut c) = conns.get_mut(i).and_then(Option::take) {
                    let _ = poll.registry().deregister(&mut c.tcp);
                    free.push(i);
                }
            }
        }
    }
}

/// Read what the socket has; false when the connection is over.
fn on_readable(conn: &mut Conn) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match conn.tcp.read(&mut chunk) {
            Ok(0) => return false,
            Ok(k) => {
                if !matches!(conn.phase, Phase::Subscribed) {
                    conn.buf.extend_from_slice(&chunk[..k]);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    loop {
        match conn.phase {
            Phase::Handshake => {
                let Some(end) = find(&conn.buf, b"\r\n\r\n") else {
                    return conn.buf.len() <= MAX_HEAD;
                };
                let Some(answer) = upgrade_response(&conn.buf[..end + 4]) else {
                    return false;
                };
                if conn.tcp.write_all(answer.as_bytes()).is_err() {
                    return false;
                }
                conn.buf.drain(..end + 4);
                conn.phase = Phase::Subscribing;
            }
            Phase::Subscribing => {
                let Some((len, header)) = client_header(&conn.buf) else {
                    return true;
                };
                if conn.buf.len() < header + len as usize {
                    return true;
                }
                let mut answer = Vec::with_capacity(64);
                push_server_frame(
                    &mut answer,
                    0x81,
                    br#"{"jsonrpc":"2.0","id":0,"result":true}"#,
                );
                if conn.tcp.write_all(&answer).is_err() {
                    return false;
                }
                conn.buf = Vec::new();
                conn.phase = Phase::Subscribed;
            }
            Phase::Subscribed => return true,
        }
    }
}

/// Words between two lines of a chain: a page, so that no two share a
/// line or a hardware prefetch.
const STRIDE: usize = 4096 / 8;

/// `lines` lines, each holding the index of the next one's first word.
fn cold_chain(lines: usize) -> Box<[u64]> {
    let mut chain = vec![0u64; lines * STRIDE];
    for l in 0..lines {
        chain[l * STRIDE] = ((l + 1) * STRIDE) as u64;
    }
    chain.into_boxed_slice()
}

/// Read the chain, each line's address from the line before.
fn read_chain(chain: &[u64]) -> u64 {
    let mut at = 0usize;
    while let Some(&next) = chain.get(at) {
        at = next as usize;
    }
    at as u64
}
