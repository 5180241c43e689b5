//! Read buffers of connections waiting for input, kept per thread for the
//! next read instead of being freed.
//!
//! A connection holds no read buffer while it waits (so an idle connection
//! costs no buffer memory), but freeing a buffer on every wait and
//! allocating a new one on every read cost a malloc/free pair per message,
//! and for large messages fresh pages (page faults) every time. Empty
//! buffers go here instead; the next read on this thread, by any
//! connection, takes one. The pool is bounded in count and bytes.

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers kept per thread, at most.
const MAX_BUFFERS: usize = 64;
/// Capacity kept per thread, at most.
const MAX_BYTES: usize = 4 * 1024 * 1024;
/// A buffer larger than this is freed, not kept.
const MAX_BUFFER: usize = 2 * 1024 * 1024;

#[derive(Default)]
struct Pool {
    buffers: Vec<BytesMut>,
    bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// An empty buffer: a kept one if there is one, else an unallocated one.
pub(crate) fn take() -> BytesMut {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        match p.buffers.pop() {
            Some(buf) => {
                p.bytes -= buf.capacity();
                buf
            }
            None => BytesMut::new(),
        }
    })
}

/// Keep an empty buffer for a later [`take`], or free it. `vetted`: the
/// buffer is one [`take`] returned, unchanged since.
pub(crate) fn give(mut buf: BytesMut, vetted: bool) {
    debug_assert!(buf.is_empty());
    let cap = buf.capacity();
    if cap == 0 || cap > MAX_BUFFER {
        return;
    }
    // Keep only a buffer whose allocation is ours alone: one still shared
    // with a message's payload would keep that payload's memory (of any
    // size) alive in the pool. Reclaiming succeeds only for an unshared
    // buffer, and makes its whole allocation available again.
    if !vetted && !buf.try_reclaim(cap + 1) {
        return;
    }
    let cap = buf.capacity();
    if cap > MAX_BUFFER {
        return;
    }
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.buffers.len() < MAX_BUFFERS && p.bytes + cap <= MAX_BYTES {
            p.bytes += cap;
            p.buffers.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read buffer after a message was decoded from it and the message
    /// dropped: its allocation is unshared again.
    fn used_buffer() -> BytesMut {
        let mut buf = BytesMut::with_capacity(8192);
        buf.extend_from_slice(b"frame");
        drop(buf.split_to(5).freeze());
        buf
    }

    #[test]
    fn reuses_an_unshared_buffer() {
        let buf = used_buffer();
        let ptr = buf.as_ptr();
        give(buf, false);
        let again = take();
        assert_eq!(again.as_ptr(), ptr.wrapping_sub(5), "reclaimed in place");
        assert!(again.capacity() >= 8192);
        let ptr = again.as_ptr();
        give(again, true);
        assert_eq!(take().as_ptr(), ptr);
        assert_eq!(take().capacity(), 0, "the pool had one buffer");
    }

    #[test]
    fn frees_a_buffer_shared_with_a_payload() {
        let mut buf = BytesMut::with_capacity(8192);
        buf.extend_from_slice(b"payload");
        let payload = buf.split_to(7).freeze();
        give(buf, false);
        assert_eq!(take().capacity(), 0);
        assert_eq!(&payload[..], b"payload");
    }

    #[test]
    fn is_bounded() {
        for _ in 0..MAX_BUFFERS * 2 {
            give(BytesMut::with_capacity(MAX_BUFFER), true);
        }
        give(BytesMut::with_capacity(MAX_BUFFER + 1), true);
        let kept = POOL.with(|p| p.borrow().bytes);
        assert!(kept <= MAX_BYTES, "{kept}");
        let mut n = 0;
        while take().capacity() > 0 {
            n += 1;
        }
        assert!(
            n > 0 && n <= MAX_BUFFERS && n * MAX_BUFFER <= MAX_BYTES,
            "{n}"
        );
    }
}
