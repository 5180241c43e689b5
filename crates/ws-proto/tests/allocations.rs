//! Heap allocations on the hot path: a server that echoes a small message
//! allocates once per message (the message itself, copied out of the read
//! buffer so that keeping it does not pin the buffer), and a message
//! prepared once for many connections costs no allocation per connection
//! (a client, which must mask it, copies it into its send buffer).
//!
//! A counting allocator counts the allocations of the calling thread only,
//! so tests running beside each other do not disturb the counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Buf, Bytes};
use ws_proto::{Config, Connection, Event, Message, PreparedMessage, Role};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the allocator also runs while thread locals are torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// thread-local counter (a `Cell`, which never allocates) only counts them.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// Take everything the connection has to send, as a transport would
/// (chunk by chunk); `keep` collects it. Returns how many bytes it was.
fn take_output(conn: &mut Connection, mut keep: impl FnMut(&[u8])) -> usize {
    let out = conn.transmit();
    let mut sent = 0;
    while out.has_remaining() {
        let n = out.chunk().len();
        keep(out.chunk());
        sent += n;
        out.advance(n);
    }
    sent
}

fn drain(conn: &mut Connection) -> Vec<u8> {
    let mut all = Vec::new();
    take_output(conn, |chunk| all.extend_from_slice(chunk));
    all
}

/// Masked frames of `size` bytes each, as a client sends them.
fn client_frames(size: usize, count: usize) -> Vec<Vec<u8>> {
    let mut client = Connection::new(Role::Client, Config::default());
    (0..count)
        .map(|i| {
            client
                .send(Message::Binary(Bytes::from(vec![i as u8; size])))
                .unwrap();
            drain(&mut client)
        })
        .collect()
}

/// Feed one frame to the server and echo the message it yields; returns
/// the server's output.
fn echo_one(server: &mut Connection, frame: &[u8]) -> usize {
    server.read_buffer().extend_from_slice(frame);
    let message = match server.poll_event().unwrap() {
        Some(Event::Message(m)) => m,
        other => panic!("expected a message, got {other:?}"),
    };
    server.send(message).unwrap();
    take_output(server, |_| {})
}

#[test]
fn echoing_a_small_message_allocates_only_the_message() {
    for size in [16, 125, 512, 1024, 4096] {
        let frames = client_frames(size, 40);
        let mut server = Connection::new(Role::Server, Config::default());
        // Warm up: the read and send buffers reach their working size.
        for frame in &frames[..8] {
            echo_one(&mut server, frame);
        }
        let mut sent = 0;
        let n = allocations(|| {
            for frame in &frames[8..] {
                sent += echo_one(&mut server, frame);
            }
        });
        assert!(sent >= 32 * size);
        let echoes = frames.len() - 8;
        assert_eq!(
            n, echoes,
            "{size}-byte echoes: {n} allocations for {echoes} messages"
        );
    }
}

#[test]
fn a_prepared_message_costs_no_allocation_per_connection() {
    for (size, role) in [16, 512, 4096]
        .into_iter()
        .flat_map(|size| [(size, Role::Server), (size, Role::Client)])
    {
        let prepared = PreparedMessage::new(Message::Binary(Bytes::from(vec![7u8; size])));
        let mut conns: Vec<Connection> = (0..16)
            .map(|_| Connection::new(role, Config::default()))
            .collect();
        // Warm up: each send buffer reaches its working size, and a large
        // payload's `Bytes` becomes shared on its first clone.
        for conn in &mut conns {
            conn.send_prepared(&prepared).unwrap();
            take_output(conn, |_| {});
        }
        let n = allocations(|| {
            for conn in &mut conns {
                conn.send_prepared(&prepared).unwrap();
                take_output(conn, |_| {});
            }
        });
        assert_eq!(
            n, 0,
            "{size}-byte prepared message, {role:?}: {n} allocations"
        );
    }
}
