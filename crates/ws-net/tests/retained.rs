//! Messages an application keeps (a chat history, a cache) cost their own
//! size, not the size of the read buffer they arrived in.
//!
//! The test counts live heap bytes with a counting allocator, so it is alone
//! in its test binary: nothing else allocates while it measures.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use common::{accept_one, listener, next_message, within};
use ws_net::Message;

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

/// Messages received one per read (the sender waits for an answer before
/// sending the next), all kept by the receiver.
async fn keep_messages(count: usize, size: usize) -> (Vec<Message>, isize) {
    let (l, addr) = listener().await;
    let client = tokio::spawn(async move {
        let (mut ws, _) = ws_net::connect(&format!("ws://{addr}/")).await.unwrap();
        for i in 0..count {
            let payload = vec![(i % 251) as u8; size];
            ws.send(Message::binary(payload)).await.unwrap();
            assert_eq!(next_message(&mut ws).await, Some(Message::text("ok")));
        }
        ws
    });
    let mut server = within(accept_one(&l)).await;
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

#[tokio::test]
async fn kept_messages_do_not_pin_read_buffers() {
    for (size, count) in [(16, 2000), (1000, 2000), (100_000, 40)] {
        let (kept, grown) = keep_messages(count, size).await;
        for (i, m) in kept.iter().enumerate() {
            assert_eq!(m, &Message::binary(vec![(i % 251) as u8; size]));
        }
        // Each kept message costs about its payload. One sharing a read
        // buffer of 8 KiB would cost that much, 500 times a 16-byte
        // payload.
        let per_message = grown / count as isize;
        assert!(
            per_message < (size + size / 32 + 256) as isize,
            "{size} B messages: {per_message} bytes of heap per kept message"
        );
    }
}
