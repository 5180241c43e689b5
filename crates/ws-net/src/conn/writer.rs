//! The sending half of a connection.

use std::pin::Pin;
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll};

use futures_sink::Sink;
use ws_proto::{CloseCode, CloseFrame, Message, PreparedMessage, State};

use super::{connection_getters, wait_finished, Inner, Shared, Written};
use crate::error::{Error, TrySendError};

/// The sending half of a [`WebSocket`](crate::WebSocket): a [`Sink`] of
/// messages. Clone it to send from many tasks; messages from one handle
/// keep their order.
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
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for WsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsWriter")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
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
    /// Queue a message; see [`WebSocket::send`](crate::WebSocket::send).
    ///
    /// Cancel-safe: if the future is dropped, the message was not queued.
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

    /// Queue a prepared message; see
    /// [`WebSocket::send_prepared`](crate::WebSocket::send_prepared).
    ///
    /// Cancel-safe: if the future is dropped, the message was not queued.
    pub async fn send_prepared(&self, message: &PreparedMessage) -> Result<(), Error> {
        std::future::poll_fn(|cx| {
            let mut inner = self.shared.lock();
            std::task::ready!(self.poll_room(&mut inner, cx))?;
            if let Err(e) = inner.core.send_prepared(message) {
                return Poll::Ready(Err(inner.send_error(e)));
            }
            self.dispatch(inner, true);
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Queue a message now, or hand it back at once: when the write buffer
    /// holds [`Config::write_buffer_limit`](crate::Config::write_buffer_limit)
    /// bytes or more ([`TrySendError::Full`]), or when the connection is
    /// over or the message cannot be sent ([`TrySendError::Failed`], with
    /// the connection's sticky error or the reason). For a broadcaster that
    /// must not wait on one slow peer. Like [`send`](Self::send), it writes
    /// the message to the socket at once when nothing else is in progress.
    ///
    /// ```no_run
    /// # fn demo(peers: &[ws_net::WsWriter]) {
    /// use ws_net::{Message, TrySendError};
    /// for peer in peers {
    ///     match peer.try_send(Message::text("tick")) {
    ///         Ok(()) => {}
    ///         Err(TrySendError::Full(_)) => println!("{} lags behind", peer.id()),
    ///         Err(TrySendError::Failed(_, e)) => println!("{} is gone: {e}", peer.id()),
    ///         Err(_) => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn try_send(&self, message: Message) -> Result<(), TrySendError<Message>> {
        let mut inner = self.shared.lock();
        if let Err(e) = self.try_room(&inner) {
            return Err(e.with(message));
        }
        if let Err(e) = inner.core.check_send(&message) {
            let err = inner.send_error(e);
            return Err(TrySendError::Failed(message, err));
        }
        // Cannot fail: checked above, under the same lock.
        let _ = inner.core.send(message);
        self.dispatch(inner, true);
        Ok(())
    }

    /// [`try_send`](Self::try_send) for a message encoded once for many
    /// connections: the broadcast step that never waits.
    pub fn try_send_prepared(&self, message: &PreparedMessage) -> Result<(), TrySendError<()>> {
        let inner = self.shared.lock();
        self.try_room(&inner).map_err(|e| e.with(()))?;
        self.queue_prepared(inner, message)
    }

    /// Queue a prepared message on a connection that has room, and write
    /// it now if that is the moment (see `dispatch`).
    pub(super) fn queue_prepared(
        &self,
        mut inner: MutexGuard<'_, Inner>,
        message: &PreparedMessage,
    ) -> Result<(), TrySendError<()>> {
        if let Err(e) = inner.core.send_prepared(message) {
            let err = inner.send_error(e);
            return Err(TrySendError::Failed((), err));
        }
        self.dispatch(inner, true);
        Ok(())
    }

    /// Ready when a message can be queued without waiting: the connection
    /// is open and the write buffer is under its limit. Otherwise the task
    /// is woken when that changes. An error means the connection is over
    /// (its sticky error, or [`Error::Closed`]).
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_room(&mut self.shared.lock(), cx)
    }

    /// Wait until a message can be queued without waiting (see
    /// [`poll_ready`](Self::poll_ready)).
    ///
    /// Cancel-safe: dropping the future only stops waiting.
    pub async fn ready(&self) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// After queueing: write now when that is the best moment, else wake
    /// the driver. The best moment is when no write is in progress and the
    /// reader has consumed everything received: a reply to the last request
    /// read goes out at once, while replies to a batch of requests read
    /// together go out together, after the last one.
    pub(super) fn dispatch(&self, mut inner: MutexGuard<'_, Inner>, direct: bool) {
        let now = direct && inner.io.is_some() && inner.core.read_buffer().is_empty();
        if now && inner.write_now() == Written::All {
            return;
        }
        drop(inner);
        self.shared.notify.notify_one();
    }

    /// Wait until everything queued is written; see
    /// [`WebSocket::flush`](crate::WebSocket::flush).
    ///
    /// Cancel-safe: dropping the future only stops waiting.
    pub async fn flush(&self) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Start the closing handshake; see
    /// [`WebSocket::close`](crate::WebSocket::close).
    ///
    /// Cancel-safe: the close frame is queued before the first await.
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        {
            let mut inner = self.shared.lock();
            if let Err(e) = inner.core.close(Some(CloseFrame::new(code, reason))) {
                return Err(inner.send_error(e));
            }
        }
        self.shared.notify.notify_one();
        Ok(())
    }

    /// Bytes queued and not yet written (like a browser's `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.shared.lock().buffered()
    }

    /// Wait until the connection is over: the closing handshake finished,
    /// failed or timed out, and the transport is shut down. Use it before a
    /// process exits, so the close frame is not lost. Drop the reader first
    /// (or keep reading it): the peer's answer must be read for the closing
    /// handshake to finish before
    /// [`close_timeout`](ws_proto::Config::close_timeout). Then
    /// [`close_info`](Self::close_info) and [`error`](Self::error) say how
    /// it ended.
    ///
    /// Cancel-safe.
    pub async fn closed(&self) {
        wait_finished(self.shared.clone()).await
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    connection_getters!();

    /// Ready when the connection is open and the write buffer has room;
    /// otherwise registers the task for a wake-up.
    fn poll_room(&self, inner: &mut Inner, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Some(e) = inner.closed_error() {
            return Poll::Ready(Err(e));
        }
        if inner.buffered() < self.shared.config.write_buffer_limit {
            return Poll::Ready(Ok(()));
        }
        inner.register_sender(cx.waker());
        Poll::Pending
    }

    /// [`poll_room`](Self::poll_room) without waiting.
    pub(super) fn try_room(&self, inner: &Inner) -> Result<(), Refused> {
        if let Some(e) = inner.closed_error() {
            return Err(Refused::Failed(e));
        }
        if inner.buffered() >= self.shared.config.write_buffer_limit {
            return Err(Refused::Full);
        }
        Ok(())
    }

    fn queue_locked(&self, inner: &mut Inner, message: Message) -> Result<(), Error> {
        if inner.terminated {
            return Err(inner.closed_error().unwrap_or(Error::Closed));
        }
        inner.core.send(message).map_err(|e| inner.send_error(e))
    }

    /// Queue only; the driver (or the next flush) writes it.
    pub(super) fn queue(&self, message: Message) -> Result<(), Error> {
        let mut inner = self.shared.lock();
        self.queue_locked(&mut inner, message)?;
        self.dispatch(inner, false);
        Ok(())
    }

    pub(super) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut inner = self.shared.lock();
        if inner.buffered() == 0 && !inner.flush_pending {
            return Poll::Ready(Ok(()));
        }
        if inner.write_now() == Written::All && inner.buffered() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &inner.fatal {
            return Poll::Ready(Err(e.clone()));
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

/// Why a message could not be queued at once (before it is handed back).
pub(super) enum Refused {
    Full,
    Failed(Error),
}

impl Refused {
    pub(super) fn with<M>(self, message: M) -> TrySendError<M> {
        match self {
            Refused::Full => TrySendError::Full(message),
            Refused::Failed(e) => TrySendError::Failed(message, e),
        }
    }
}

impl Sink<Message> for WsWriter {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        WsWriter::poll_ready(&self, cx)
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
