//! One prepared message to many connections in two passes: first the
//! bookkeeping of every connection, then the writes, one `send` each, in a
//! tight loop.
//!
//! Sending to each connection in turn interleaves each connection's state
//! (its lock, its protocol state, its send buffer) with the kernel's work
//! for its socket; in a large room both are out of the cache and each
//! evicts the other. Two passes keep the second one to the socket calls
//! alone, over a compact list of descriptors.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use ws_proto::PreparedMessage;

use super::{Lease, WsWriter};
use crate::error::TrySendError;

/// A broadcast of one [`PreparedMessage`]: [`try_send`](Self::try_send) to
/// each connection, then [`finish`](Self::finish) (or drop it), which
/// writes.
///
/// A connection that can be written at once (a plain TCP socket, nothing
/// else waiting to be written, a current-thread runtime) is leased: the
/// message counts as sent on it, nobody else writes to its socket until
/// the broadcast finishes (senders queue, its driver waits), and `finish`
/// writes the frame with one `send`. What the
/// socket does not take is queued ahead of anything queued since, and the
/// connection's driver writes it. Any other connection gets the message as
/// [`WsWriter::try_send_prepared`] would send it. Either way the outcome
/// of `try_send` is the outcome of the send.
///
/// Finish it soon, and not across an `.await`: until then the leased
/// connections' drivers wait (their timers too) and what else is sent to
/// them only queues.
///
/// ```no_run
/// # fn demo(peers: &[ws_net::WsWriter]) {
/// let message = ws_net::PreparedMessage::new(ws_net::Message::text("tick"));
/// let mut broadcast = ws_net::Broadcast::new(&message);
/// for peer in peers {
///     if let Err(e) = broadcast.try_send(peer) {
///         println!("{}: {e:?}", peer.id());
///     }
/// }
/// broadcast.finish();
/// # }
/// ```
#[derive(Debug)]
pub struct Broadcast<'a> {
    message: &'a PreparedMessage,
    lease: Arc<Lease>,
    /// Leased connections and their sockets, in order; the frame is the
    /// same for all.
    leased: Vec<(&'a WsWriter, RawFd)>,
    frame: Option<&'a Bytes>,
}

impl<'a> Broadcast<'a> {
    /// A broadcast of `message`.
    pub fn new(message: &'a PreparedMessage) -> Self {
        let lease = Lease::default();
        lease.active.store(true, Ordering::Relaxed);
        Self {
            message,
            lease: Arc::new(lease),
            leased: Vec::new(),
            frame: None,
        }
    }

    /// The message.
    pub fn message(&self) -> &'a PreparedMessage {
        self.message
    }

    /// Send the message to `writer`'s connection, now or at
    /// [`finish`](Self::finish); see [`Broadcast`]. The errors are those of
    /// [`WsWriter::try_send_prepared`]: [`TrySendError::Full`] when the
    /// write buffer is at its limit, [`TrySendError::Failed`] when the
    /// connection is over.
    pub fn try_send(&mut self, writer: &'a WsWriter) -> Result<(), TrySendError<()>> {
        let mut inner = writer.shared.lock();
        writer.try_room(&inner).map_err(|e| e.with(()))?;
        // Leased: a TCP socket in the connection's state (no write in
        // progress) that a sender could write directly now, nothing waiting
        // to be written (in flight, or a flush; ws-proto checks its own
        // queue), the reader done with what it received (as for a direct
        // write), and a current-thread runtime (on a multi-thread one the
        // connections' drivers share a broadcast's writes out over the
        // workers).
        let fd = inner.io.as_ref().and_then(|io| io.tcp_fd());
        let leasable = fd.is_some()
            && !inner.budgeted_writes
            && inner.in_flight == 0
            && !inner.flush_pending
            && inner.core.read_buffer().is_empty()
            && inner.may_write_directly();
        if let (true, Some(fd)) = (leasable, fd) {
            match inner.core.send_prepared_direct(self.message) {
                Ok(Some(frame)) => {
                    self.frame = Some(frame);
                    inner.lease = Some(self.lease.clone());
                    self.leased.push((writer, fd));
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => {
                    let err = inner.send_error(e);
                    return Err(TrySendError::Failed((), err));
                }
            }
        }
        writer.queue_prepared(inner, self.message)
    }

    /// Write the message to the leased connections and end the lease.
    pub fn finish(mut self) {
        self.write_leased();
    }

    fn write_leased(&mut self) {
        let leased = std::mem::take(&mut self.leased);
        if let Some(frame) = self.frame {
            for (writer, fd) in leased {
                // SAFETY: `fd` is the socket of the write half in the
                // connection's state, read under its lock in `try_send`,
                // where the lease was set. Only the connection's driver
                // takes that half out of the state or drops it (which
                // closes the socket), and the driver waits for an active
                // lease before either (driver.rs), so the descriptor is
                // still open and still this socket until `end` below.
                // `writer`, borrowed for `'a`, keeps the state alive.
                #[allow(unsafe_code)]
                let socket = unsafe { BorrowedFd::borrow_raw(fd) };
                let sent = crate::transport::send_now(socket, &[std::io::IoSlice::new(frame)]);
                let (rest, error) = match sent {
                    Ok(n) if n == frame.len() => continue,
                    Ok(n) => (frame.slice(n..), None),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => (frame.clone(), None),
                    Err(e) => (Bytes::new(), Some(e)),
                };
                let mut inner = writer.shared.lock();
                match error {
                    Some(e) => {
                        inner.io_error(e);
                    }
                    None => {
                        inner.core.requeue_unwritten(rest);
                        inner.transport_full = true;
                    }
                }
                drop(inner);
                writer.shared.notify.notify_one();
            }
        }
        self.lease.end();
    }
}

impl Drop for Broadcast<'_> {
    fn drop(&mut self) {
        self.write_leased();
    }
}
