//! The driver task of a connection: writes what the handles queued and
//! could not write at once themselves (the socket was full, more input was
//! waiting, or a pong or close frame was queued by the reader), passes
//! time to the connection's timers and keeps their one deadline on the
//! clock, and closes the transport when the protocol says so.
//!
//! It takes queued bytes out of the shared connection under the lock (the
//! chunks themselves, no copy), writes them with vectored writes outside
//! the lock, and so batches everything queued while the previous write was
//! in progress into one system call.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use ws_proto::{CloseCode, CloseFrame, ProtocolError, Role, State};

use crate::clock::{deadline_after, Alarm, Deadline};
use crate::conn::{Inner, Shared, MAX_SLICES};
use crate::error::Error;
use crate::transport::{ReadHalf, WriteHalf};

/// How long the driver waits for a transport shutdown (TLS close_notify).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// How long a closing connection reads for the peer's end of file.
const LINGER: Duration = Duration::from_secs(2);

/// What the driver decided under the lock.
enum Step {
    /// Write the batch (new bytes may have been added to it).
    Write,
    /// Nothing to write: wait for a notification or the deadline.
    Wait,
    /// Close the transport, reporting this error to the handles if any.
    Finish(Option<Error>),
    /// A broadcast holds the socket (see `Broadcast`): wait until it is
    /// done, then plan again. Its frame goes first (what the socket does
    /// not take comes back to the front of the queue), and the socket stays
    /// open until then.
    Leased(Arc<crate::conn::Lease>),
}

pub(crate) async fn drive(shared: Arc<Shared>) {
    let mut batch: VecDeque<Bytes> = VecDeque::new();
    // The write half while a write of ours is in progress; otherwise it
    // stays in the shared state, where senders write through it directly.
    let mut io: Option<WriteHalf> = None;
    // The read half, once the reader stopped reading.
    let mut unread: Option<ReadHalf> = None;
    let mut unread_buf = BytesMut::new();
    // The timers' next deadline, on the connections' own clock (see
    // `clock`): the runtime's timer would make every wait of the runtime
    // for I/O a wait with a timeout. A tokio TCP socket shows that this
    // runtime has a reactor, which can then keep the clock.
    let tcp = shared.lock().io.as_ref().is_some_and(WriteHalf::is_tcp);
    let mut alarm = Alarm::new(tcp);
    // Once the protocol is done with bytes of ours still unwritten: how
    // long the peer has to take them.
    let mut drain_by: Option<Instant> = None;
    loop {
        let mut deadline: Option<Instant> = None;
        let step = {
            let mut inner = shared.lock();
            if let Some(lease) = inner.active_lease() {
                Step::Leased(lease)
            } else {
                if unread.is_none() {
                    unread = inner.unread.take();
                }
                let step = plan(&mut inner, &mut deadline, &mut batch, &mut drain_by);
                match step {
                    Step::Wait => {
                        if let Some(w) = io.take() {
                            inner.io = Some(w);
                        }
                    }
                    Step::Write | Step::Finish(_) => {
                        if io.is_none() {
                            io = inner.io.take();
                        }
                    }
                    Step::Leased(_) => {}
                }
                step
            }
        };
        match step {
            Step::Leased(lease) => lease.ended().await,
            Step::Finish(err) => {
                if unread.is_none() {
                    unread = shared.lock().unread.take();
                }
                finish(&shared, io.take(), err, unread.take(), &mut unread_buf, tcp).await;
                return;
            }
            Step::Write => {
                let Some(w) = io.as_mut() else {
                    // Only the driver removes the write half for good.
                    finish(&shared, None, None, unread.take(), &mut unread_buf, tcp).await;
                    return;
                };
                let result = tokio::select! {
                    biased;
                    r = write_batch(w, &mut batch) => r,
                    // A timer is due, or more was queued or the state
                    // changed: plan again. The batch keeps what is unwritten
                    // (a vectored write that returned Pending wrote nothing).
                    _ = alarm.until(deadline) => continue,
                    _ = shared.notify.notified() => continue,
                };
                let mut inner = shared.lock();
                inner.in_flight = 0;
                match result {
                    Ok(()) => {
                        inner.flush_pending = false;
                        inner.transport_full = false;
                        inner.wake_senders();
                    }
                    Err(e) => {
                        inner.io_error(e);
                    }
                }
            }
            Step::Wait => {
                tokio::select! {
                    _ = shared.notify.notified() => {}
                    _ = alarm.until(deadline) => {}
                    read = read_unread(&mut unread, &mut unread_buf) => {
                        on_unread_read(&shared, read, &mut unread_buf);
                    }
                }
            }
        }
    }
}

/// Decide the next step: timers, graceful close, and taking queued bytes.
fn plan(
    inner: &mut Inner,
    deadline: &mut Option<Instant>,
    batch: &mut VecDeque<Bytes>,
    drain_by: &mut Option<Instant>,
) -> Step {
    if inner.broken() {
        return Step::Finish(inner.fatal.clone());
    }
    // Every handle is gone: close normally after what was sent.
    if inner.senders == 0 && inner.reader_gone && inner.core.state() == State::Open {
        let _ = inner
            .core
            .close(Some(CloseFrame::new(CloseCode::NORMAL, "")));
    }
    // The timers are the connection's; the driver passes the time and
    // keeps their next deadline.
    inner.core.handle_timeout(Instant::now());
    *deadline = inner.core.poll_timeout();
    if let Some(e @ (ProtocolError::KeepaliveTimeout | ProtocolError::CloseTimeout)) =
        inner.core.failure()
    {
        // The peer is gone or does not read: what is unwritten is dropped.
        return Step::Finish(Some(Error::Protocol(e.clone())));
    }
    if inner.core.wants_transport_closed() {
        if batch.is_empty() {
            return Step::Finish(None);
        }
        // The connection took these bytes as written when they left it for
        // the batch; a peer that does not read them (our answer to its
        // close among them) gets one more close timeout, not for ever.
        let by = *drain_by.get_or_insert_with(|| deadline_after(inner.core.config().close_timeout));
        if Instant::now() >= by {
            return Step::Finish(Some(Error::Protocol(ProtocolError::CloseTimeout)));
        }
        *deadline = Some(by);
    }
    let out = inner.core.transmit();
    while out.has_remaining() {
        let n = out.chunk().len();
        let chunk = out.copy_to_bytes(n);
        inner.in_flight += n;
        batch.push_back(chunk);
    }
    if batch.is_empty() && !inner.flush_pending {
        Step::Wait
    } else {
        Step::Write
    }
}

/// Write the batch with vectored writes, then flush. The slice array lives
/// only inside each poll, so it takes no room in the driver's future.
async fn write_batch(io: &mut WriteHalf, batch: &mut VecDeque<Bytes>) -> std::io::Result<()> {
    std::future::poll_fn(|cx| {
        while !batch.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut k = 0;
            for b in batch.iter().take(MAX_SLICES) {
                slices[k] = IoSlice::new(b);
                k += 1;
            }
            let n = std::task::ready!(
                std::pin::Pin::new(&mut *io).poll_write_vectored(cx, &slices[..k])
            )?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            let mut left = n;
            while left > 0 {
                let Some(front) = batch.front_mut() else {
                    break;
                };
                if front.len() <= left {
                    left -= front.len();
                    batch.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        std::pin::Pin::new(&mut *io).poll_flush(cx)
    })
    .await
}

async fn read_unread(
    unread: &mut Option<ReadHalf>,
    buf: &mut BytesMut,
) -> Option<std::io::Result<usize>> {
    match unread.as_mut() {
        Some(io) => {
            buf.reserve(4096);
            Some(tokio::io::AsyncReadExt::read_buf(io, buf).await)
        }
        None => std::future::pending().await,
    }
}

/// The driver reads for a reader that stopped: control frames are handled
/// by the connection, data messages are discarded.
fn on_unread_read(shared: &Shared, read: Option<std::io::Result<usize>>, buf: &mut BytesMut) {
    let mut inner = shared.lock();
    match read {
        Some(Ok(0)) => inner.core.receive_eof(),
        Some(Ok(_)) => {
            inner.core.receive_data(buf);
            buf.clear();
            inner.core.handle_received(Instant::now());
        }
        Some(Err(_)) => inner.core.receive_eof(),
        None => return,
    }
    loop {
        match inner.core.poll_message() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                inner.fail(Error::Protocol(e));
                break;
            }
        }
    }
}

/// Close the transport.
///
/// A server whose closing handshake is complete on a plain TCP socket, with
/// both halves in hand, closes the socket at once: §7.1.1 has the server
/// close the TCP connection first, and the peer, having sent its close
/// frame, sends nothing more, so no unread input can turn the close into a
/// reset. One `close` call, as a server that simply drops its socket makes.
///
/// Otherwise (a client, a connection we failed, whose peer may be in the
/// middle of a message, a timeout, TLS): shut down our sending side (FIN
/// after the close frame, or a TLS close_notify), then, if the driver holds
/// the read half, linger: read and discard until the peer closes too, for
/// at most [`LINGER`]. Closing a socket with unread input makes the kernel
/// send a reset, which can destroy our close frame before the peer has read
/// it (a browser then reports 1006, not our code); and a client waits for
/// the server's end of file (§7.1.1).
async fn finish(
    shared: &Shared,
    io: Option<WriteHalf>,
    err: Option<Error>,
    read: Option<ReadHalf>,
    scratch: &mut BytesMut,
    // The transport is a tokio TCP socket (see `clock::Alarm::new`).
    tcp: bool,
) {
    let at_once = {
        let mut inner = shared.lock();
        inner.terminated = true;
        // Only once the peer's close frame arrived: a connection we failed
        // is closed without it, while the peer may still be sending.
        let at_once = err.is_none()
            && inner.core.role() == Role::Server
            && inner.core.state() == State::Closed
            && inner.core.close_info().received.is_some();
        if let Some(e) = err {
            tracing::debug!(error = %e, "closing transport");
            inner.fail(e);
        }
        inner.wake_all();
        at_once
    };
    match (io, read) {
        (Some(io), Some(read)) if at_once && io.is_tcp() => {
            io.close_at_once();
            drop(read);
        }
        (io, read) => {
            if let Some(mut io) = io {
                let _ = Deadline::after(SHUTDOWN_WAIT, tcp)
                    .run(std::pin::pin!(io.shutdown()))
                    .await;
            }
            if let Some(mut read) = read {
                let drain = async {
                    // Usually one read, of the end of file. Into the unread
                    // half's buffer: uninitialised and reused (zeroing a
                    // buffer here costs much of a whole handshake-and-close),
                    // and on the heap (on the stack it would grow every
                    // driver future).
                    loop {
                        scratch.clear();
                        scratch.reserve(4096);
                        match tokio::io::AsyncReadExt::read_buf(&mut read, scratch).await {
                            Ok(n) if n > 0 => {}
                            _ => break,
                        }
                    }
                };
                let _ = Deadline::after(LINGER, tcp)
                    .run(std::pin::pin!(drain))
                    .await;
            }
        }
    }
    let mut inner = shared.lock();
    inner.finished = true;
    inner.wake_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open connection holds one driver future, idle or not: keep it
    /// small (no buffer held across an await, no `async fn` timeout in its
    /// closing steps: see `clock::Timeout`).
    #[tokio::test]
    async fn driver_future_is_small() {
        let (_, stream) = tokio::io::duplex(64);
        let (_, write) = crate::transport::split(stream);
        let core = ws_proto::Connection::new(ws_proto::Role::Server, Default::default());
        let shared = Shared::new(core, Default::default(), write, Default::default());
        let future = drive(shared);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 800, "driver future is {size} bytes");
    }
}
