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
//! writes queued bytes in batches. The driver also passes time to the
//! connection's timers (keepalive, idle, close) and closes the transport.
//! The lock is never held across an await.
//!
//! Decoding runs under the lock too, so a sender on another thread waits
//! while the reader decodes. That wait is bounded by one frame: unmasking
//! and UTF-8 checks run on the bytes of one read as they arrive, and a
//! compressed frame (permessage-deflate, off by default) is inflated whole,
//! at most [`ws_proto::Config::max_frame_size`] in and
//! [`ws_proto::Config::max_message_size`] out. It is accepted because the
//! connection is one state machine whose order matters: the pong or close
//! reply the reader queues must land between the application's messages
//! in the order the application saw the ping or close, and the inflater,
//! the close state and the send queue are all read by both sides. Taking
//! the decode out of the lock would need a second lock (or a copy of the
//! received bytes) on every message, a cost every connection pays, for a
//! wait that only a compressed multi-megabyte frame makes long. A server
//! that takes such frames and broadcasts from other threads can lower
//! `max_frame_size` to bound the wait.

#[cfg(any(target_os = "linux", target_os = "android"))]
mod broadcast;
mod reader;
mod websocket;
mod writer;

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Buf;
use tokio::io::AsyncWrite;
use tokio::sync::Notify;
use ws_proto::{Connection, SendError};

#[cfg(any(target_os = "linux", target_os = "android"))]
pub use broadcast::Broadcast;
pub use reader::WsReader;
pub use websocket::WebSocket;
pub use writer::WsWriter;

use crate::config::Config;
use crate::error::Error;
use crate::transport::{ReadHalf, WriteHalf};

/// Most slices handed to one vectored write by the driver.
pub(crate) const MAX_SLICES: usize = 64;

/// Most slices handed to one vectored write made by a sender.
const DIRECT_SLICES: usize = 8;

/// A connection's identity: unique in the process, cheap to copy, hash and
/// compare; the same on every handle of the connection.
///
/// ```
/// # async fn demo(ws: ws_net::WebSocket) {
/// let (reader, writer) = ws.split();
/// assert_eq!(reader.id(), writer.id());
/// println!("connection {}", writer.id());
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(NonZeroU64);

impl ConnectionId {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // 2^64 connections are not made in a process's life.
        Self(NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN))
    }

    /// The number: connections are numbered from 1 in the order they open.
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What the opening handshake established, and where the peer is.
#[derive(Debug, Clone, Default)]
pub(crate) struct HandshakeInfo {
    pub(crate) protocol: Option<String>,
    pub(crate) deflate: Option<ws_proto::deflate::Negotiated>,
    pub(crate) peer_addr: Option<SocketAddr>,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the driver task: bytes to write, a state change, a handle gone.
    pub(crate) notify: Notify,
    pub(crate) config: Config,
    pub(crate) id: ConnectionId,
    pub(crate) info: HandshakeInfo,
}

pub(crate) struct Inner {
    pub(crate) core: Connection,
    /// Bytes taken by the driver and not yet written.
    pub(crate) in_flight: usize,
    /// Tasks waiting for write-buffer space or for a flush.
    send_wakers: Vec<Waker>,
    /// Tasks waiting for the end of the connection (`closed()`), woken
    /// only then.
    closed_wakers: Vec<Waker>,
    reader_waker: Option<Waker>,
    /// The first error that ended the connection; every handle reports it.
    pub(crate) fatal: Option<Error>,
    /// The transport failed: nothing more can be written or read.
    io_failed: bool,
    /// The driver closed the transport.
    pub(crate) terminated: bool,
    /// The driver is done: transport shut down and drained.
    pub(crate) finished: bool,
    /// Live writer handles.
    pub(crate) senders: usize,
    /// The reader handle was dropped.
    pub(crate) reader_gone: bool,
    /// The read half of the transport once the reader stopped reading it
    /// (dropped, or its stream ended), until the driver takes it to read
    /// the rest of the closing handshake.
    pub(crate) unread: Option<ReadHalf>,
    /// The write half of the transport while nobody is writing to it:
    /// senders write through it directly; the driver takes it out for a
    /// write that has to wait, and for the shutdown.
    pub(crate) io: Option<WriteHalf>,
    /// A direct write could not finish its flush: the driver must.
    pub(crate) flush_pending: bool,
    /// A direct write stopped short (the transport took nothing more, or
    /// the task's cooperative budget was spent): no sender tries again until
    /// the driver has written (it waits for the transport to be ready). A
    /// TCP socket is written without tokio's readiness check (see
    /// `WriteHalf::write_now`), so this is what spares a full socket a
    /// failing system call per message.
    pub(crate) transport_full: bool,
    /// Direct writes count against the sending task's cooperative budget,
    /// so a broadcast leaves most of its writes to the connections' driver
    /// tasks: true on a multi-thread runtime, where other worker threads
    /// run them (see `WriteHalf::write_now`).
    pub(crate) budgeted_writes: bool,
    /// A broadcast took the socket for a write of its own (see
    /// `Broadcast`): while its lease is active nobody else writes.
    pub(crate) lease: Option<Arc<Lease>>,
}

/// A broadcast's claim on the sockets it writes: active from its first
/// pass until its writes are done. Meanwhile senders only queue, and a
/// driver that wants to write or close waits here.
#[derive(Debug, Default)]
pub(crate) struct Lease {
    pub(crate) active: std::sync::atomic::AtomicBool,
    waiters: Mutex<Vec<Waker>>,
}

impl Lease {
    /// Wait until the lease ends. Cancel-safe.
    pub(crate) async fn ended(&self) {
        std::future::poll_fn(|cx| {
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            if !self.active.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// End the lease and wake whoever waits for it.
    pub(crate) fn end(&self) {
        self.active.store(false, Ordering::Release);
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|p| p.into_inner()));
        for w in waiters {
            w.wake();
        }
    }
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
    pub(crate) fn new(
        core: Connection,
        config: Config,
        io: WriteHalf,
        info: HandshakeInfo,
    ) -> Arc<Self> {
        Arc::new(Shared {
            inner: Mutex::new(Inner {
                core,
                in_flight: 0,
                send_wakers: Vec::new(),
                closed_wakers: Vec::new(),
                reader_waker: None,
                fatal: None,
                io_failed: false,
                terminated: false,
                finished: false,
                senders: 1,
                reader_gone: false,
                unread: None,
                io: Some(io),
                flush_pending: false,
                transport_full: false,
                budgeted_writes: multi_thread_runtime(),
                lease: None,
            }),
            notify: Notify::new(),
            config,
            id: ConnectionId::next(),
            info,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether the calling task runs on a multi-thread tokio runtime.
fn multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread)
}

impl Inner {
    pub(crate) fn buffered(&self) -> usize {
        self.core.buffered_amount() + self.in_flight
    }

    /// Whether a sender may write to the transport itself now: it has not
    /// failed or been closed, it took the last direct write whole, and no
    /// broadcast holds it.
    pub(crate) fn may_write_directly(&mut self) -> bool {
        !(self.broken() || self.terminated || self.transport_full || self.leased())
    }

    /// The active lease of a broadcast holding the socket, if any.
    pub(crate) fn active_lease(&mut self) -> Option<Arc<Lease>> {
        if self.leased() {
            self.lease.clone()
        } else {
            None
        }
    }

    /// A broadcast holds the socket for its writes (see `Broadcast`). An
    /// ended lease is forgotten here.
    pub(crate) fn leased(&mut self) -> bool {
        match &self.lease {
            None => false,
            Some(l) if l.active.load(Ordering::Acquire) => true,
            Some(_) => {
                self.lease = None;
                false
            }
        }
    }

    /// The transport failed (an I/O error): nothing more can be written or
    /// read, and the driver shuts it down at once. (After a protocol error
    /// the close frame still goes out and the peer's is awaited.)
    pub(crate) fn broken(&self) -> bool {
        self.io_failed
    }

    /// The transport failed: record it (the connection's error, unless
    /// one came first) and return the connection's error.
    pub(crate) fn io_error(&mut self, e: std::io::Error) -> Error {
        self.io_failed = true;
        self.fail(e.into())
    }

    /// Record the error that ends the connection, unless one already did;
    /// returns the one that did.
    pub(crate) fn fail(&mut self, err: Error) -> Error {
        self.fatal.get_or_insert(err).clone()
    }

    /// The error for a send the connection refused: the connection's own
    /// end when it is over, else why this message cannot go.
    pub(crate) fn send_error(&self, e: SendError) -> Error {
        match (e, &self.fatal) {
            (SendError::Closed, Some(fatal)) => fatal.clone(),
            (SendError::Closed, None) => Error::Closed,
            (other, _) => Error::Send(other),
        }
    }

    /// Why nothing more can be sent, if nothing can.
    fn closed_error(&self) -> Option<Error> {
        if let Some(e) = &self.fatal {
            return Some(e.clone());
        }
        let open = !self.terminated && self.core.state() == ws_proto::State::Open;
        (!open).then_some(Error::Closed)
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

    /// Wake every waiting task: the state changed for all of them.
    pub(crate) fn wake_all(&mut self) {
        self.wake_senders();
        if let Some(w) = self.reader_waker.take() {
            w.wake();
        }
        if self.finished {
            for w in self.closed_wakers.drain(..) {
                w.wake();
            }
        }
    }

    /// Write what is queued straight to the transport, if no write is in
    /// progress, without waiting: as far as the socket takes it now. The
    /// lock is held for the system call, which does not block.
    fn write_now(&mut self) -> Written {
        if !self.may_write_directly() {
            return Written::Rest;
        }
        let Some(io) = self.io.as_mut() else {
            return Written::Rest;
        };
        let core = &mut self.core;
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
            match io.write_now(&slices[..n], self.budgeted_writes) {
                Poll::Ready(Ok(0)) => {
                    self.io_error(std::io::ErrorKind::WriteZero.into());
                    return Written::Rest;
                }
                Poll::Ready(Ok(k)) => out.advance(k),
                Poll::Ready(Err(e)) => {
                    self.io_error(e);
                    return Written::Rest;
                }
                Poll::Pending => {
                    self.transport_full = true;
                    break;
                }
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
                self.io_error(e);
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

/// Resolves once the driver has shut the transport down.
async fn wait_finished(shared: Arc<Shared>) {
    std::future::poll_fn(|cx| {
        let mut inner = shared.lock();
        if inner.finished {
            return Poll::Ready(());
        }
        if !inner.closed_wakers.iter().any(|w| w.will_wake(cx.waker())) {
            inner.closed_wakers.push(cx.waker().clone());
        }
        Poll::Pending
    })
    .await
}

/// The getters every handle of a connection has, read from its shared
/// state.
macro_rules! connection_getters {
    () => {
        /// The connection's identity, the same on all its handles.
        pub fn id(&self) -> $crate::conn::ConnectionId {
            self.shared().id
        }

        /// The peer's address, where the transport has one (a TCP socket,
        /// or one given by the upgrade that made the connection).
        pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
            self.shared().info.peer_addr
        }

        /// The subprotocol agreed in the opening handshake.
        pub fn protocol(&self) -> Option<&str> {
            self.shared().info.protocol.as_deref()
        }

        /// The permessage-deflate parameters agreed in the handshake, if any.
        pub fn deflate(&self) -> Option<ws_proto::deflate::Negotiated> {
            self.shared().info.deflate
        }

        /// The closing-handshake state.
        pub fn state(&self) -> ws_proto::State {
            self.shared().lock().core.state()
        }

        /// The close frames exchanged so far: once the connection is over,
        /// who closed it, and with which code and reason.
        pub fn close_info(&self) -> ws_proto::CloseInfo {
            self.shared().lock().core.close_info().clone()
        }

        /// The error that ended the connection, if it ended in one: the same
        /// for every handle (see [`Error`](crate::Error)).
        pub fn error(&self) -> Option<$crate::Error> {
            self.shared().lock().fatal.clone()
        }

        /// The round trip of the last answered keepalive ping (see
        /// [`ws_proto::Config::ping_interval`]).
        pub fn rtt(&self) -> Option<std::time::Duration> {
            self.shared().lock().core.rtt()
        }
    };
}
pub(crate) use connection_getters;
