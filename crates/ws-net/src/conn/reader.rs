//! The receiving half of a connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_core::Stream;
use ws_proto::{Message, State};

use super::{connection_getters, Shared};
use crate::error::Error;
use crate::transport::ReadHalf;

/// Spare room the read buffer gets before each read. Reads go into
/// uninitialised capacity (no zero-filling), and an empty buffer goes back
/// to the thread's pool while the connection waits, so an idle connection
/// holds no read buffer.
const READ_RESERVE: usize = 8 * 1024;

/// The most a frame's own buffer gets before its bytes arrive. A frame may
/// announce up to `max_frame_size` (16 MiB by default) and then send a
/// little, or nothing: its buffer starts at a fraction of the frame's size
/// of at most this much and doubles as the buffer fills, so what a
/// connection holds follows what its peer sent.
const FRAME_BUFFER_FIRST: usize = 1 << 20;

/// The first capacity of the buffer for a frame of `total` payload bytes:
/// `total` halved (rounding up) until it is at most [`FRAME_BUFFER_FIRST`].
/// Doubled as often as it was halved, it comes back to `total` (or a few
/// bytes more: fewer than 2 to the number of halvings), so a large frame's
/// payload ends up in a buffer of its own size.
fn first_frame_buffer(total: usize) -> usize {
    let mut first = total;
    while first > FRAME_BUFFER_FIRST {
        first = first.div_ceil(2);
    }
    first
}

/// Room a frame's own buffer gets beyond the frame. A read that fills the
/// room it was given may have left more in the socket, so the next one
/// must ask again (a system call that finds nothing, after every large
/// message); one that fills less has emptied it, and waits for readiness
/// without that call. A few bytes suffice; these hold a control frame or
/// the start of the next frame.
const FRAME_SLACK: usize = 256;

/// The receiving half of a [`WebSocket`](crate::WebSocket): a [`Stream`] of messages.
///
/// Dropping it hands its half of the transport to the driver task, which
/// keeps answering pings and completes the close handshake, discarding data
/// messages.
///
/// ```no_run
/// # async fn demo(ws: ws_net::WebSocket) {
/// let (mut reader, writer) = ws.split();
/// tokio::spawn(async move {
///     while let Some(Ok(msg)) = reader.recv().await {
///         println!("got {msg:?}");
///     }
/// });
/// writer.send(ws_net::Message::text("from another task")).await.unwrap();
/// # }
/// ```
pub struct WsReader {
    pub(super) shared: Arc<Shared>,
    pub(super) io: Option<ReadHalf>,
    pub(super) done: bool,
    /// The size of the next frame, when messages come in one size.
    pub(super) sizes: SizeGuess,
}

/// What the next frame's size will likely be: the size of the last message,
/// when the last two larger than [`READ_RESERVE`] had nearly the same size
/// (within 1/64). A read that starts a frame then gets room for one like it
/// (and 1/64 more), when the socket has data waiting, so a feed of
/// equal-sized messages arrives with one read per message into a buffer
/// of its size, instead of a small read, a copy into a buffer of the
/// frame's size, and a second read. A message of another size is copied
/// out of that buffer or, when at least half its size, takes it (see
/// ws-proto's `take_payload`), and turns the guess off.
#[derive(Default)]
pub(super) struct SizeGuess {
    /// The guess, 0 for none.
    expect: usize,
    /// The size of the last message larger than [`READ_RESERVE`], 0 after
    /// a smaller one.
    last_large: usize,
}

impl SizeGuess {
    /// A data message of `len` bytes was received.
    fn learn(&mut self, len: usize) {
        if len <= READ_RESERVE {
            *self = Self::default();
            return;
        }
        let alike = self.last_large.abs_diff(len) <= len / 64;
        self.expect = if alike { len } else { 0 };
        self.last_large = len;
    }

    /// The room for a read that starts a frame, when the socket has data:
    /// 0 for no guess (the usual [`READ_RESERVE`]).
    fn room(&self) -> usize {
        if self.expect == 0 {
            return 0;
        }
        let like = self.expect + self.expect / 64;
        first_frame_buffer(like) + ws_proto::frame::MAX_HEADER_LEN + FRAME_SLACK
    }
}

impl std::fmt::Debug for WsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsReader").finish_non_exhaustive()
    }
}

impl WsReader {
    /// The next message; see [`WebSocket::recv`](crate::WebSocket::recv).
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    connection_getters!();
}

impl Stream for WsReader {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(None);
        };
        // One lock for the whole poll: decode, and when more input is
        // needed, read into the connection's buffer under it (the socket is
        // non-blocking: the lock is held for the system call, never across
        // a wait), then decode again.
        let mut inner = this.shared.lock();
        loop {
            match inner.core.poll_message() {
                Ok(Some(message)) => {
                    if message.is_data() {
                        this.sizes.learn(message.len());
                    }
                    // A pong or close reply was queued: let the driver write it.
                    let wake = inner.core.buffered_amount() > 0 || message.is_close();
                    drop(inner);
                    if wake {
                        this.shared.notify.notify_one();
                    }
                    return Poll::Ready(Some(Ok(message)));
                }
                Err(e) => {
                    // The connection is failed (§7.1.7): this was the last
                    // item. The driver reads the peer's close reply.
                    this.done = true;
                    inner.unread = this.io.take();
                    let err = inner.fail(Error::Protocol(e));
                    drop(inner);
                    this.shared.notify.notify_one();
                    return Poll::Ready(Some(Err(err)));
                }
                Ok(None) => {}
            }
            if let Some(err) = &inner.fatal {
                this.done = true;
                return Poll::Ready(Some(Err(err.clone())));
            }
            if inner.core.state() == State::Closed || inner.terminated {
                this.done = true;
                // The stream has ended, but the transport may still have to
                // be read (a client waits for the server's end of file,
                // §7.1.1): the driver reads it from now on, so `closed()`
                // resolves without the caller dropping the reader.
                if !inner.terminated {
                    inner.unread = this.io.take();
                }
                drop(inner);
                this.shared.notify.notify_one();
                return Poll::Ready(None);
            }
            let hint = inner.core.read_hint();
            let buf = inner.core.read_buffer();
            // The next read starts a frame. When messages come in one
            // size, it gets room for all of the frame, if there is data to
            // read. (Readiness is known for a TCP socket only; a buffer
            // taken while the socket has nothing would only go back to the
            // pool.)
            let mut want = 0;
            let guess = this.sizes.room();
            if guess > 0 && hint == 0 && buf.is_empty() {
                if let ReadHalf::Tcp(tcp) = &*io {
                    match tcp.as_ref().poll_read_ready(cx) {
                        Poll::Pending => {
                            if buf.capacity() > 0 {
                                crate::pool::give(std::mem::take(buf), false);
                            }
                            inner.store_reader_waker(cx);
                            return Poll::Pending;
                        }
                        // (An error is the read's to report.)
                        Poll::Ready(_) => want = guess,
                    }
                }
            }
            let mut pooled = None;
            if buf.capacity() == 0 {
                *buf = crate::pool::take();
                pooled = Some(buf.as_ptr());
            }
            if buf.capacity() < want {
                let old = std::mem::replace(buf, bytes::BytesMut::with_capacity(want));
                crate::pool::give(old, pooled.is_some());
                pooled = None;
            }
            let spare = buf.capacity() - buf.len();
            let total = buf.len() + hint;
            if hint > 0 && total > READ_RESERVE {
                // A frame of known length that gets a buffer of its own:
                // its payload will be that whole buffer, without another
                // copy (ws-proto takes a buffer holding the frame and
                // nothing after it).
                let first = first_frame_buffer(total) + FRAME_SLACK;
                if buf.capacity() < first {
                    // Move the part received into the frame's first
                    // buffer; the old one goes back to the pool for the
                    // next frames.
                    let mut frame = bytes::BytesMut::with_capacity(first);
                    frame.extend_from_slice(buf);
                    let mut old = std::mem::replace(buf, frame);
                    old.clear();
                    let vetted = pooled.is_some_and(|p| p == old.as_ptr());
                    crate::pool::give(old, vetted);
                    pooled = None;
                } else if hint > spare && spare < READ_RESERVE / 2 {
                    // Nearly full and the frame goes on: double it (in
                    // place where the allocator can). The buffer is not
                    // shared, so this is exactly twice its capacity.
                    buf.reserve(2 * buf.capacity() - buf.len());
                }
                // Otherwise read into the room left, which is at most what
                // the frame still needs once the buffer reached its size:
                // growing then would double a buffer the frame fits.
            } else if spare < hint.max(READ_RESERVE / 2) {
                buf.reserve(READ_RESERVE);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf) {
                Poll::Pending => {
                    // (A buffer sized for a frame under way is kept.)
                    if buf.is_empty() && hint == 0 {
                        let vetted = pooled == Some(buf.as_ptr());
                        crate::pool::give(std::mem::take(buf), vetted);
                    }
                    inner.store_reader_waker(cx);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => inner.core.receive_eof(),
                Poll::Ready(Ok(_)) => {
                    // (Only keepalive needs the time of arrival.)
                    if this.shared.config.protocol.ping_interval.is_some() {
                        inner.core.handle_received(Instant::now());
                    }
                }
                Poll::Ready(Err(e)) => {
                    this.done = true;
                    let err = inner.io_error(e);
                    drop(inner);
                    this.shared.notify.notify_one();
                    return Poll::Ready(Some(Err(err)));
                }
            }
        }
    }
}

impl Drop for WsReader {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.reader_gone = true;
        // The stream may have handed its half over already, when it ended.
        if let Some(io) = self.io.take() {
            inner.unread = Some(io);
        }
        drop(inner);
        self.shared.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_is_guessed_after_two_alike_messages() {
        let mut g = SizeGuess::default();
        g.learn(100_000);
        assert_eq!(g.room(), 0, "one message sets no guess");
        g.learn(100_500);
        let room = g.room();
        assert!(room >= 100_500 + 100_500 / 64 + 14, "{room}");
        assert!(room <= 100_500 + 100_500 / 32, "{room}");
        g.learn(100_500);
        assert_eq!(g.room(), room, "still alike");
        g.learn(30_000);
        assert_eq!(g.room(), 0, "another size turns it off");
        g.learn(30_000);
        assert!(g.room() > 30_000);
        g.learn(16);
        assert_eq!(g.room(), 0, "a small message turns it off");
        g.learn(30_000);
        assert_eq!(g.room(), 0, "and forgets the last large size");
    }

    #[test]
    fn a_guessed_room_is_at_most_a_frame_buffer() {
        let mut g = SizeGuess::default();
        g.learn(16 << 20);
        g.learn(16 << 20);
        assert!(g.room() <= FRAME_BUFFER_FIRST + 1024, "{}", g.room());
    }
}
