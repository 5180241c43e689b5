//! Messages an application keeps (a chat history, a cache) cost their own
//! size, not the size of the buffer they arrived or were assembled in; a
//! frame a peer announces but does not send costs what arrived of it.
//!
//! The tests count live heap bytes with a counting allocator, so they are
//! alone in their test binary and take turns: nothing else allocates while
//! one measures.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use common::{accept_one, listener, next_message, within};
use ws_net::{ClientBuilder, Config, Message};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The tests take turns: one test's allocations would count in another's.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Messages of `sizes` received one per read (the sender waits for an
/// answer before sending the next), all kept by the receiver; both ends use
/// `config`. Message `i` is `sizes[i]` bytes of `i % 251`. The first message
/// is not counted: it makes the connection's lasting state (compression
/// contexts, for one).
async fn keep_messages(sizes: Vec<usize>, config: Config) -> (Vec<Message>, isize) {
    let count = sizes.len() - 1;
    let (l, addr) = listener().await;
    let client_config = config.clone();
    let client = tokio::spawn(async move {
        let (mut ws, _) = ClientBuilder::new(&format!("ws://{addr}/"))
            .unwrap()
            .config(client_config)
            .connect()
            .await
            .unwrap();
        for (i, &size) in sizes.iter().enumerate() {
            let payload = vec![(i % 251) as u8; size];
            ws.send(Message::binary(payload)).await.unwrap();
            assert_eq!(next_message(&mut ws).await, Some(Message::text("ok")));
        }
        ws
    });
    let (tcp, _) = within(l.accept()).await.unwrap();
    let mut server = within(ws_net::server::accept(tcp, config)).await.unwrap();
    let first = next_message(&mut server).await.unwrap();
    server.send(Message::text("ok")).await.unwrap();
    drop(first);
    let mut kept = Vec::with_capacity(count);
    let before = LIVE.load(Ordering::Relaxed);
    for _ in 0..count {
        let m = next_message(&mut server).await.unwrap();
        server.send(Message::text("ok")).await.unwrap();
        kept.push(m);
    }
    let grown = LIVE.load(Ordering::Relaxed) - before;
    let _client = within(client).await.unwrap();
    (kept, grown)
}

/// Keeps messages of each `(size, count)` and checks that each costs
/// about its payload.
async fn check_kept(what: &str, config: Config, cases: &[(usize, usize)]) {
    for &(size, count) in cases {
        let (kept, grown) = keep_messages(vec![size; count + 1], config.clone()).await;
        for (i, m) in kept.iter().enumerate() {
            assert_eq!(m, &Message::binary(vec![((i + 1) % 251) as u8; size]));
        }
        let per_message = grown / count as isize;
        assert!(
            per_message < (size + size / 32 + 256) as isize,
            "{what}, {size} B messages: {per_message} bytes of heap per kept message"
        );
    }
}

#[tokio::test]
async fn kept_messages_do_not_pin_read_buffers() {
    let _turn = SERIAL.lock().await;
    // One sharing a read buffer of 8 KiB would cost that much, 500 times a
    // 16-byte payload.
    check_kept(
        "one frame each",
        Config::default(),
        &[(16, 2000), (1000, 2000), (100_000, 40)],
    )
    .await;
}

#[tokio::test]
async fn kept_messages_of_changing_sizes_cost_their_size() {
    let _turn = SERIAL.lock().await;
    // After two messages of one size the next read gets room for a third
    // like them; a smaller one that arrives instead must not keep that
    // room alive (30 kB would hold 100 kB).
    let mut sizes = vec![100_000];
    for _ in 0..20 {
        sizes.extend([100_000, 100_000, 30_000]);
    }
    let (kept, grown) = keep_messages(sizes.clone(), Config::default()).await;
    for (i, (m, &size)) in kept.iter().zip(&sizes[1..]).enumerate() {
        assert_eq!(m, &Message::binary(vec![((i + 1) % 251) as u8; size]));
    }
    // (Plus the read buffer the connection holds at the end, sized for
    // the messages of 100 kB.)
    let payload: usize = sizes[1..].iter().sum();
    let bound = payload + payload / 32 + 256 * kept.len() + 110_000;
    assert!(
        grown < bound as isize,
        "{} kept messages of {payload} B in all hold {grown} bytes of heap",
        kept.len()
    );
}

#[tokio::test]
async fn kept_reassembled_and_inflated_messages_cost_their_size() {
    let _turn = SERIAL.lock().await;
    // Built by appending, a buffer may be up to twice the message: 70 kB
    // from 1000-byte fragments grows to 128 KiB, and inflating starts with
    // 4 KiB of room, 250 times a 16-byte message.
    let mut fragmented = Config::default();
    fragmented.protocol.fragment_size = 1000;
    check_kept("in fragments", fragmented, &[(3000, 200), (70_000, 40)]).await;
    let mut compressed = Config::default();
    compressed.deflate = Some(Default::default());
    check_kept(
        "compressed",
        compressed,
        &[(16, 2000), (1000, 2000), (100_000, 40)],
    )
    .await;
}

/// A masked binary frame header for `len` payload bytes, with a zero masking
/// key (allowed, §5.3), so the payload goes on the wire as it is.
fn binary_header(len: u64) -> Vec<u8> {
    let mut h = vec![0x82, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0; 4]);
    h
}

/// A raw client sends a binary frame announcing `len` payload bytes in two
/// parts with a pause between them, so the server reads the first part
/// alone. Returns the heap the server holds then and, when the second part
/// completes the frame, the message with the heap held once it is kept.
async fn frame_in_two_parts(
    len: u64,
    first: Vec<u8>,
    rest: Vec<u8>,
) -> (isize, Option<(Message, isize)>) {
    use tokio::io::AsyncWriteExt;
    let whole = (first.len() + rest.len()) as u64 == len;
    let (l, addr) = listener().await;
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let client = tokio::spawn(async move {
        let mut tcp = common::raw_client(addr).await;
        tcp.write_all(&binary_header(len)).await.unwrap();
        tcp.write_all(&first).await.unwrap();
        wait.await.unwrap();
        tcp.write_all(&rest).await.unwrap();
        // Freed after the measurements, not in them.
        (tcp, first, rest)
    });
    let mut server = within(accept_one(&l)).await;
    let before = LIVE.load(Ordering::Relaxed);
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), async {
        next_message(&mut server).await
    })
    .await;
    assert!(early.is_err(), "the frame cannot be whole yet");
    let stalled = LIVE.load(Ordering::Relaxed) - before;
    go.send(()).unwrap();
    let done = if whole {
        let m = within(next_message(&mut server)).await.unwrap();
        Some((m, LIVE.load(Ordering::Relaxed) - before))
    } else {
        None
    };
    drop(within(client).await.unwrap());
    (stalled, done)
}

#[tokio::test]
async fn large_frame_whose_last_bytes_arrive_late_costs_its_size() {
    let _turn = SERIAL.lock().await;
    // The frame's buffer is sized for the frame (1 MB), or grows to its
    // size from a part of it (5 MB, an odd length); a read that leaves a
    // few bytes to come must not make it grow again (it would double).
    for n in [1_000_000, 5_000_003] {
        let mut payload: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
        let tail = payload.split_off(n - 100);
        let (_, done) = frame_in_two_parts(n as u64, payload, tail).await;
        let (m, grown) = done.unwrap();
        let expected: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
        assert_eq!(m, Message::binary(expected));
        assert!(
            grown < (n + 64 * 1024) as isize,
            "a kept {n} B message costs {grown} bytes of heap"
        );
    }
}

#[tokio::test]
async fn a_frame_announced_but_not_sent_costs_what_arrived() {
    let _turn = SERIAL.lock().await;
    // A peer may announce a frame of max_frame_size (16 MiB by default)
    // and send a little of it. The buffer for it follows what arrives
    // (within a factor of two, at least 1 MiB), not what was announced.
    let (stalled, _) = frame_in_two_parts(16 << 20, vec![7; 64 * 1024], Vec::new()).await;
    assert!(
        stalled < (2 << 20) as isize,
        "64 KiB of an announced 16 MiB frame hold {stalled} bytes of heap"
    );
}
