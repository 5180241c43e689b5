//! A whole connection: both halves in one value.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use ws_proto::{CloseCode, Connection, Message, PreparedMessage, Role};

use super::{connection_getters, wait_finished, HandshakeInfo, Shared, WsReader, WsWriter};
use crate::config::Config;
use crate::error::Error;
use crate::transport::{split, tcp_peer_addr};

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
/// waits (at most [`close_timeout`](ws_proto::Config::close_timeout)) for
/// the peer's close.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
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
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("id", &self.shared().id)
            .field("protocol", &self.protocol())
            .finish_non_exhaustive()
    }
}

impl WebSocket {
    /// Wrap a transport whose opening handshake is already done, with no
    /// subprotocol and no extension in force. Must be called inside a tokio
    /// runtime: it spawns the driver task. For a server connection upgraded
    /// by another HTTP stack, [`server::upgrade`](crate::server::upgrade)
    /// negotiates the subprotocol and permessage-deflate and keeps them.
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
        mut info: HandshakeInfo,
    ) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        if info.peer_addr.is_none() {
            info.peer_addr = tcp_peer_addr(&stream);
        }
        // The message stream yields whole messages (`poll_message`).
        config.protocol.deliver_fragments = false;
        let (read, write) = split(stream);
        let mut core = Connection::new(role, config.protocol.clone());
        if let Some(negotiated) = info.deflate {
            core.set_deflate(negotiated);
        }
        core.receive_data(leftover);
        let shared = Shared::new(core, config, write, info);
        tokio::spawn(crate::driver::drive(shared.clone()));
        Self {
            reader: WsReader {
                shared: shared.clone(),
                io: Some(read),
                done: false,
                sizes: Default::default(),
            },
            writer: WsWriter { shared },
        }
    }

    /// The next message; `None` once the connection is closed. Ping and pong
    /// messages are yielded too (pings are answered automatically; the
    /// pongs of keepalive pings are not yielded), and the peer's close
    /// frame is yielded before the end. An error is the last item: after
    /// it the connection closes on its own (a protocol error sends the
    /// close frame with its code) and `recv` returns `None`.
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
    /// [`WsWriter::try_send`] never waits.
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
    /// answer; the transport is dropped after
    /// [`close_timeout`](ws_proto::Config::close_timeout) if none comes.
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
    ///
    /// Cancel-safe.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        wait_finished(self.writer.shared.clone())
    }

    /// A writer handle for other tasks (cheap to clone).
    pub fn writer(&self) -> WsWriter {
        self.writer.clone()
    }

    /// Split into a reader and a writer that can move to different tasks.
    pub fn split(self) -> (WsReader, WsWriter) {
        (self.reader, self.writer)
    }

    fn shared(&self) -> &Shared {
        &self.writer.shared
    }

    connection_getters!();
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
        self.writer.poll_ready(cx)
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
