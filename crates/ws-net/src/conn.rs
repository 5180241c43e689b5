//! The connection handles: [`WebSocket`], and its halves [`WsReader`] and
//! [`WsWriter`].
//!
//! One ws-proto [`Connection`] sits behind a mutex shared by the handles and
//! a driver task. The reader decodes in the caller's task, as messages are
//! consumed (so replies and errors keep the order in which the application
//! sees messages); senders queue frames into the connection. When no write
//! is in progress and the reader has consumed everything received, `send`
//! writes the queue to the socket itself (one non-blocking vectored write
//! under the lock: no task switch per message); otherwise the driver task
//! writes queued bytes in batches. The driver also runs the timers
//! (keepalive, idle, close). The lock is never held across an await.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Buf;
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use ws_proto::{CloseCode, CloseFrame, Connection, Event, Message, PreparedMessage, Role, State};

use crate::config::Config;
use crate::error::Error;
use crate::transport::{split, ReadHalf, WriteHalf};

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

/// Most slices handed to one vectored write by the driver.
pub(crate) const MAX_SLICES: usize = 64;

/// Most slices handed to one vectored write made by a sender.
const DIRECT_SLICES: usize = 8;

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the driver task: bytes to write, a state change, a handle gone.
    pub(crate) notify: Notify,
    pub(crate) config: Config,
}

pub(crate) struct Inner {
    pub(crate) core: Connection,
    /// Bytes taken by the driver and not yet written.
    pub(crate) in_flight: usize,
    /// Tasks waiting for write-buffer space or for a flush.
    send_wakers: Vec<Waker>,
    reader_waker: Option<Waker>,
    /// The transport failed or timed out; every handle reports it.
    pub(crate) fatal: Option<Error>,
    /// The driver closed the transport.
    pub(crate) terminated: bool,
    /// The driver is done: transport shut down and drained.
    pub(crate) finished: bool,
    /// When bytes last arrived (keepalive).
    pub(crate) last_recv: Instant,
    /// When a data message last went either way (idle timeout).
    pub(crate) last_data: Instant,
    /// Live writer handles.
    pub(crate) senders: usize,
    /// The reader handle was dropped; its half of the transport, if not yet
    /// taken by the driver.
    pub(crate) reader_gone: bool,
    pub(crate) orphan: Option<ReadHalf>,
    /// The write half of the transport while nobody is writing to it:
    /// senders write through it directly; the driver takes it out for a
    /// write that has to wait, and for the shutdown.
    pub(crate) io: Option<WriteHalf>,
    /// A direct write could not finish its flush: the driver must.
    pub(crate) flush_pending: bool,
}

/// What a direct write left to do.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    /// Everything queued is written and flushed.
    All,
    /// Bytes or a flush remain, or the transport failed: the driver takes
    /// over (it waits for the transport, or reports the failure).
    Rest,
}

impl Shared {
    pub(crate) fn new(core: Connection, config: Config, io: WriteHalf) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Shared {
            inner: Mutex::new(Inner {
                core,
                in_flight: 0,
                send_wakers: Vec::new(),
                reader_waker: None,
                fatal: None,
                terminated: false,
                finished: false,
                last_recv: now,
                last_data: now,
                senders: 1,
                reader_gone: false,
                orphan: None,
                io: Some(io),
                flush_pending: false,
            }),
            notify: Notify::new(),
            config,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    pub(crate) fn buffered(&self) -> usize {
        self.core.buffered_amount() + self.in_flight
    }

    pub(crate) fn wake_senders(&mut self) {
        for w in self.send_wakers.drain(..) {
            w.wake();
        }
    }

    /// Remember the reading task, to wake it when the driver changes the
    /// state (a close, a failure).
    fn store_reader_waker(&mut self, cx: &Context<'_>) {
        match &self.reader_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.reader_waker = Some(cx.waker().clone()),
        }
    }

    pub(crate) fn wake_all(&mut self) {
        self.wake_senders();
        if let Some(w) = self.reader_waker.take() {
            w.wake();
        }
    }

    /// Write what is queued straight to the transport, if no write is in
    /// progress, without waiting: as far as the socket takes it now. The
    /// lock is held for the system call, which does not block.
    fn write_now(&mut self) -> Written {
        if self.fatal.is_some() || self.terminated {
            return Written::Rest;
        }
        let Inner {
            core, io, fatal, ..
        } = self;
        let Some(io) = io.as_mut() else {
            return Written::Rest;
        };
        // Nothing waits on this context: when the transport is not ready,
        // the driver takes over and polls it with its own.
        let mut cx = Context::from_waker(Waker::noop());
        let out = core.transmit();
        let before = out.remaining();
        while out.has_remaining() {
            // Small: the array is initialised on every call, and a direct
            // write rarely has more than a header and a payload.
            let mut slices = [std::io::IoSlice::new(&[]); DIRECT_SLICES];
            let n = out.chunks_vectored(&mut slices);
            match Pin::new(&mut *io).poll_write_vectored(&mut cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => {
                    fatal.get_or_insert(Error::Io(std::io::ErrorKind::WriteZero.into()));
                    return Written::Rest;
                }
                Poll::Ready(Ok(k)) => out.advance(k),
                Poll::Ready(Err(e)) => {
                    fatal.get_or_insert(Error::Io(e));
                    return Written::Rest;
                }
                Poll::Pending => break,
            }
        }
        let wrote = out.remaining() < before;
        if out.has_remaining() {
            if wrote {
                self.wake_senders();
            }
            return Written::Rest;
        }
        match Pin::new(&mut *io).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => {
                self.flush_pending = false;
                self.wake_senders();
                Written::All
            }
            Poll::Ready(Err(e)) => {
                self.fatal.get_or_insert(Error::Io(e));
                Written::Rest
            }
            Poll::Pending => {
                self.flush_pending = true;
                Written::Rest
            }
        }
    }

    fn register_sender(&mut self, waker: &Waker) {
        if !self.send_wakers.iter().any(|w| w.will_wake(waker)) {
            self.send_wakers.push(waker.clone());
        }
    }
}

/// Information from the opening handshake.
#[derive(Debug, Clone, Default)]
pub(crate) struct HandshakeInfo {
    pub(crate) protocol: Option<String>,
    pub(crate) deflate: Option<ws_proto::deflate::Negotiated>,
}

/// A WebSocket connection: a [`Stream`] of received messages and a
/// [`Sink`] of messages to send, with [`recv`](Self::recv),
/// [`send`](Self::send) and [`close`](Self::close) as plain async methods.
///
/// A driver task, spawned on the current tokio runtime when the connection
/// is made, writes what is sent and runs keepalive pings and timeouts.
/// Received messages are decoded as they are consumed: keep polling
/// [`recv`](Self::recv) (or the reader half) so pings are answered and the
/// close handshake completes.
///
/// Dropping every handle flushes what was sent, then closes with 1000 and
/// waits (at most [`Config::close_timeout`]) for the peer's close.
///
/// ```no_run
/// # async fn demo() -> Result<(), ws_net::Error> {
/// let (mut ws, _response) = ws_net::connect("ws://127.0.0.1:9001/").await?;
/// ws.send(ws_net::Message::text("hello")).await?;
/// while let Some(msg) = ws.recv().await {
///     println!("{:?}", msg?);
/// }
/// # Ok(()) }
/// ```
pub struct WebSocket {
    reader: WsReader,
    writer: WsWriter,
    info: HandshakeInfo,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("protocol", &self.info.protocol)
            .finish_non_exhaustive()
    }
}

impl WebSocket {
    /// Wrap a transport whose opening handshake is already done (for
    /// example a connection upgraded by hyper). Must be called inside a
    /// tokio runtime: it spawns the driver task.
    pub fn from_raw<S>(stream: S, role: Role, config: Config) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::from_parts(stream, role, config, &[], HandshakeInfo::default())
    }

    pub(crate) fn from_parts<S>(
        stream: S,
        role: Role,
        mut config: Config,
        leftover: &[u8],
        info: HandshakeInfo,
    ) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        // The message stream yields whole messages.
        config.protocol.deliver_fragments = false;
        let (read, write) = split(stream);
        let mut core = Connection::new(role, config.protocol.clone());
        if let Some(negotiated) = info.deflate {
            core.set_deflate(negotiated);
        }
        core.receive_data(leftover);
        let shared = Shared::new(core, config, write);
        tokio::spawn(crate::driver::drive(shared.clone()));
        Self {
            reader: WsReader {
                shared: shared.clone(),
                io: Some(read),
                done: false,
                sizes: SizeGuess::default(),
            },
            writer: WsWriter { shared },
            info,
        }
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.info.protocol.as_deref()
    }

    /// The permessage-deflate parameters agreed in the handshake, if any.
    pub fn deflate(&self) -> Option<ws_proto::deflate::Negotiated> {
        self.info.deflate
    }

    /// The next message; `None` once the connection is closed. Ping and pong
    /// messages are yielded too (pings are answered automatically), and the
    /// peer's close frame is yielded before the end. An error is the last
    /// item: after it the connection closes on its own (a protocol error
    /// sends the close frame with its code) and `recv` returns `None`.
    ///
    /// Cancel-safe: if the future is dropped, no message is lost.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        self.reader.recv().await
    }

    /// Send a message. Waits while the write buffer holds
    /// [`Config::write_buffer_limit`] bytes or more (backpressure), then
    /// queues the message and returns. When no write is in progress and no
    /// more received data waits to be read, the message is written to the
    /// socket at once, in this call, with anything else queued; otherwise
    /// the driver task writes it, batched with what follows. Use
    /// [`flush`](Self::flush) to wait until it is written. (Through the
    /// [`Sink`] API, `start_send` only queues and `poll_flush` writes, so
    /// `feed` then `flush` sends a batch in one system call.)
    ///
    /// Cancel-safe: if the future is dropped, the message was not queued.
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        self.writer.send(message).await
    }

    /// Queue a message encoded once for many connections.
    ///
    /// Cancel-safe, like [`send`](Self::send).
    pub async fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), Error> {
        self.writer.send_prepared(message).await
    }

    /// Wait until everything queued has been written to the transport.
    ///
    /// Cancel-safe: dropping the future only stops waiting.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.writer.flush().await
    }

    /// Start the closing handshake with `code` and `reason` (at most 123
    /// bytes), after everything already sent. Keep calling
    /// [`recv`](Self::recv) until it returns `None` to see the peer's
    /// answer; the transport is dropped after [`Config::close_timeout`] if
    /// none comes.
    ///
    /// Cancel-safe: the close frame is queued before the first await.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.writer.close(code, reason).await
    }

    /// Bytes queued and not yet written (like a browser's `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.writer.buffered_amount()
    }

    /// Wait until the connection is over; see [`WsWriter::closed`]. The
    /// future does not borrow the connection, so it can be awaited in a
    /// spawned task.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        wait_finished(self.writer.shared.clone())
    }

    /// The closing-handshake state.
    pub fn state(&self) -> State {
        self.writer.shared.lock().core.state()
    }

    /// The close frames exchanged so far.
    pub fn close_info(&self) -> ws_proto::CloseInfo {
        self.writer.shared.lock().core.close_info().clone()
    }

    /// A writer handle for other tasks (cheap to clone).
    pub fn writer(&self) -> WsWriter {
        self.writer.clone()
    }

    /// Split into a reader and a writer that can move to different tasks.
    pub fn split(self) -> (WsReader, WsWriter) {
        (self.reader, self.writer)
    }
}

impl Stream for WebSocket {
    type Item = Result<Message, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().reader).poll_next(cx)
    }
}

impl Sink<Message> for WebSocket {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.writer.poll_send_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.writer.queue(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.writer.poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.get_mut().writer).poll_close(cx)
    }
}

/// The receiving half of a [`WebSocket`]: a [`Stream`] of messages.
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
    shared: Arc<Shared>,
    io: Option<ReadHalf>,
    done: bool,
    /// The size of the next frame, when messages come in one size.
    sizes: SizeGuess,
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
struct SizeGuess {
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
    /// The next message; see [`WebSocket::recv`]. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
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
            match inner.core.poll_event() {
                Ok(Some(Event::Message(message))) => {
                    if message.is_data() {
                        if this.shared.config.idle_timeout.is_some() {
                            inner.last_data = Instant::now();
                        }
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
                Ok(Some(_)) => continue,
                Err(e) => {
                    // The connection is failed (§7.1.7): this was the last
                    // item. The driver reads the peer's close reply.
                    this.done = true;
                    inner.orphan = this.io.take();
                    drop(inner);
                    this.shared.notify.notify_one();
                    return Poll::Ready(Some(Err(Error::Protocol(e))));
                }
                Ok(None) => {}
            }
            if let Some(err) = &inner.fatal {
                this.done = true;
                return Poll::Ready(Some(Err(err.duplicate())));
            }
            if inner.core.state() == State::Closed || inner.terminated {
                this.done = true;
                // The stream has ended, but the transport may still have to
                // be read (a client waits for the server's end of file,
                // §7.1.1): the driver reads it from now on, so `closed()`
                // resolves without the caller dropping the reader.
                if !inner.terminated {
                    inner.orphan = this.io.take();
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
                Poll::Ready(Ok(_)) => inner.last_recv = Instant::now(),
                Poll::Ready(Err(e)) => {
                    this.done = true;
                    inner.fatal.get_or_insert(Error::Io(e.kind().into()));
                    drop(inner);
                    this.shared.notify.notify_one();
                    return Poll::Ready(Some(Err(Error::Io(e))));
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
            inner.orphan = Some(io);
        }
        drop(inner);
        self.shared.notify.notify_one();
    }
}

/// The sending half of a [`WebSocket`]: a [`Sink`] of messages. Clone it to
/// send from many tasks; messages from one handle keep their order.
///
/// ```no_run
/// # async fn demo(ws: ws_net::WebSocket) {
/// let (_reader, writer) = ws.split();
/// for i in 0..4 {
///     let w = writer.clone();
///     tokio::spawn(async move { w.send(ws_net::Message::text(format!("task {i}"))).await });
/// }
/// println!("{} bytes waiting", writer.buffered_amount());
/// # }
/// ```
pub struct WsWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsWriter").finish_non_exhaustive()
    }
}

impl Clone for WsWriter {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for WsWriter {
    fn drop(&mut self) {
        let last = {
            let mut inner = self.shared.lock();
            inner.senders -= 1;
            inner.senders == 0
        };
        if last {
            self.shared.notify.notify_one();
        }
    }
}

impl WsWriter {
    /// Queue a message; see [`WebSocket::send`]. Cancel-safe.
    pub async fn send(&self, message: Message) -> Result<(), Error> {
        // One lock: check for room, queue, write.
        let mut message = Some(message);
        std::future::poll_fn(|cx| {
            let mut inner = self.shared.lock();
            std::task::ready!(self.poll_room(&mut inner, cx))?;
            if let Some(message) = message.take() {
                self.queue_locked(&mut inner, message)?;
                self.dispatch(inner, true);
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Queue a prepared message; see [`WebSocket::send_prepared`]. Cancel-safe.
    pub async fn send_prepared(&self, message: &PreparedMessage) -> Result<(), Error> {
        std::future::poll_fn(|cx| {
            let mut inner = self.shared.lock();
            std::task::ready!(self.poll_room(&mut inner, cx))?;
            inner.core.send_prepared(message)?;
            self.dispatch(inner, true);
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// After queueing: write now when that is the best moment, else wake
    /// the driver. The best moment is when no write is in progress and the
    /// reader has consumed everything received: a reply to the last request
    /// read goes out at once, while replies to a batch of requests read
    /// together go out together, after the last one.
    fn dispatch(&self, mut inner: MutexGuard<'_, Inner>, direct: bool) {
        let now = direct && inner.io.is_some() && inner.core.read_buffer().is_empty();
        if now && inner.write_now() == Written::All {
            return;
        }
        drop(inner);
        self.shared.notify.notify_one();
    }

    /// Wait until everything queued is written; see [`WebSocket::flush`].
    pub async fn flush(&self) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Start the closing handshake; see [`WebSocket::close`].
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        {
            let mut inner = self.shared.lock();
            inner
                .core
                .close(Some(CloseFrame::new(code, reason)))
                .map_err(Error::from)?;
        }
        self.shared.notify.notify_one();
        Ok(())
    }

    /// Bytes queued and not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.shared.lock().buffered()
    }

    /// Wait until the connection is over: the closing handshake finished,
    /// failed or timed out, and the transport is shut down. Use it before a
    /// process exits, so the close frame is not lost. Drop the reader first
    /// (or keep reading it): the peer's answer must be read for the closing
    /// handshake to finish before [`Config::close_timeout`].
    ///
    /// Cancel-safe.
    pub async fn closed(&self) {
        wait_finished(self.shared.clone()).await
    }

    fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_room(&mut self.shared.lock(), cx)
    }

    /// Ready when the connection is open and the write buffer has room;
    /// otherwise registers the task for a wake-up.
    fn poll_room(&self, inner: &mut Inner, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Some(e) = &inner.fatal {
            return Poll::Ready(Err(e.duplicate()));
        }
        if inner.terminated || inner.core.state() != State::Open {
            return Poll::Ready(Err(Error::Closed));
        }
        if inner.buffered() < self.shared.config.write_buffer_limit {
            return Poll::Ready(Ok(()));
        }
        inner.register_sender(cx.waker());
        Poll::Pending
    }

    fn queue_locked(&self, inner: &mut Inner, message: Message) -> Result<(), Error> {
        if inner.terminated {
            return Err(Error::Closed);
        }
        if message.is_data() && self.shared.config.idle_timeout.is_some() {
            inner.last_data = Instant::now();
        }
        inner.core.send(message)?;
        Ok(())
    }

    /// Queue only; the driver (or the next flush) writes it.
    fn queue(&self, message: Message) -> Result<(), Error> {
        let mut inner = self.shared.lock();
        self.queue_locked(&mut inner, message)?;
        self.dispatch(inner, false);
        Ok(())
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut inner = self.shared.lock();
        if inner.buffered() == 0 && !inner.flush_pending {
            return Poll::Ready(Ok(()));
        }
        if inner.write_now() == Written::All && inner.buffered() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &inner.fatal {
            return Poll::Ready(Err(e.duplicate()));
        }
        if inner.terminated {
            return Poll::Ready(Err(Error::Closed));
        }
        inner.register_sender(cx.waker());
        drop(inner);
        self.shared.notify.notify_one();
        Poll::Pending
    }
}

impl Sink<Message> for WsWriter {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_send_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.queue(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        WsWriter::poll_flush(&self, cx)
    }
    /// Starts the closing handshake with 1000 (if not started) and waits
    /// until the close frame is written.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let started = {
            let mut inner = self.shared.lock();
            inner.core.state() == State::Open
                && inner
                    .core
                    .close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
                    .is_ok()
        };
        if started {
            self.shared.notify.notify_one();
        }
        match WsWriter::poll_flush(&self, cx) {
            Poll::Ready(Err(Error::Closed)) => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

/// Resolves once the driver has shut the transport down.
async fn wait_finished(shared: Arc<Shared>) {
    std::future::poll_fn(|cx| {
        let mut inner = shared.lock();
        if inner.finished {
            Poll::Ready(())
        } else {
            inner.register_sender(cx.waker());
            Poll::Pending
        }
    })
    .await
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
