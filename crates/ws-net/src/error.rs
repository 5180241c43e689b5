//! The error types of ws-net, one per phase: [`ConnectError`] while a
//! client opens a connection, [`AcceptError`] while a server accepts one,
//! [`Error`] on an open connection, and [`TrySendError`] for a send that
//! cannot wait.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use ws_proto::{CloseCode, HandshakeError, ProtocolError, SendError};

/// Why an open connection ended, or why a call on it failed.
///
/// The first error that ends a connection is sticky: every handle (the
/// reader, each writer) sees the same one from then on, and it is cheap to
/// clone (an I/O error is shared behind an [`Arc`]). A clean close is not
/// an error: the message stream ends after yielding the peer's close frame,
/// and sends fail with [`Error::Closed`].
///
/// ```no_run
/// # async fn demo(mut ws: ws_net::WebSocket) {
/// use ws_net::{Error, ProtocolError};
/// while let Some(item) = ws.recv().await {
///     match item {
///         Ok(msg) => println!("{msg:?}"),
///         Err(Error::Protocol(ProtocolError::KeepaliveTimeout)) => eprintln!("peer gone"),
///         Err(e) => eprintln!("connection failed: {e}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(Arc<std::io::Error>),
    /// The connection failed: the peer broke the protocol (it was sent a
    /// close frame with [`ProtocolError::close_code`]), the transport ended
    /// without a closing handshake, or a timer ran out (keepalive, close).
    #[error("{0}")]
    Protocol(ProtocolError),
    /// The connection is closing or closed: nothing more can be sent.
    #[error("connection closed")]
    Closed,
    /// This message cannot be sent (a control payload over 125 bytes, an
    /// invalid close code...); the connection is not affected.
    #[error("cannot send: {0}")]
    Send(SendError),
}

impl Error {
    /// The close code the connection ended with, for a failure: the code
    /// the peer was sent, or 1006 when none could be.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::Protocol(p) => Some(p.close_code()),
            Self::Io(_) => Some(CloseCode::ABNORMAL),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Io(Arc::new(e))
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

/// A client could not open a connection.
///
/// ```no_run
/// # async fn demo() {
/// match ws_net::connect("ws://127.0.0.1:9001/").await {
///     Ok((ws, _)) => drop(ws),
///     Err(ws_net::ConnectError::Refused { status, body, .. }) => {
///         eprintln!("refused with {status}: {}", String::from_utf8_lossy(&body))
///     }
///     Err(e) => eprintln!("failed: {e}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL does not parse.
    #[error("invalid URL: {0}")]
    InvalidUrl(#[from] http::uri::InvalidUri),
    /// The URL's scheme is not `ws`, `wss` (or `http`, `https`).
    #[error("URL scheme must be ws or wss")]
    UnsupportedScheme,
    /// The URL has no host.
    #[error("URL has no host")]
    NoHost,
    /// A `wss://` URL, and ws-net was built without its `tls` feature.
    #[error("wss:// needs the `tls` feature of ws-net")]
    TlsDisabled,
    /// A TLS setting is unusable (a root certificate that does not parse,
    /// a host that is not a valid server name).
    #[cfg(feature = "tls")]
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The transport failed (connect, TLS handshake, read, write).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The TCP connection (and TLS) did not open within
    /// [`Config::connect_timeout`](crate::Config::connect_timeout).
    #[error("connect timed out")]
    ConnectTimeout,
    /// The opening handshake did not complete within
    /// [`Config::handshake_timeout`](crate::Config::handshake_timeout).
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The server's answer is not a valid upgrade.
    #[error("handshake failed: {0}")]
    Handshake(HandshakeError),
    /// The server refused the upgrade with this status.
    #[error("server refused the WebSocket upgrade with status {status}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// The response headers.
        headers: Box<HeaderMap>,
        /// The response body (at most 64 KiB of it).
        body: Bytes,
    },
}

/// A server could not accept a connection. The client was answered with
/// an HTTP error where the transport still worked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The request head did not arrive within
    /// [`Config::handshake_timeout`](crate::Config::handshake_timeout).
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The request is not a valid upgrade; it was answered with
    /// [`HandshakeError::status`].
    #[error("invalid upgrade request: {0}")]
    Handshake(#[from] HandshakeError),
    /// The accept callback refused the request with this status.
    #[error("upgrade refused with status {0}")]
    Refused(StatusCode),
}

/// A send that could not be done at once; the message is handed back.
#[derive(Clone)]
#[non_exhaustive]
pub enum TrySendError<M> {
    /// The write buffer holds
    /// [`Config::write_buffer_limit`](crate::Config::write_buffer_limit)
    /// bytes or more: wait for [`WsWriter::ready`](crate::WsWriter::ready)
    /// and try again, or give up on this peer.
    Full(M),
    /// The connection is over, or this message cannot be sent: the error
    /// says which.
    Failed(M, Error),
}

impl<M> TrySendError<M> {
    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            Self::Full(m) | Self::Failed(m, _) => m,
        }
    }

    /// Whether the write buffer was full (the connection may recover).
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }
}

impl<M> std::fmt::Debug for TrySendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Failed(_, e) => f.debug_tuple("Failed").field(&"..").field(e).finish(),
        }
    }
}

impl<M> std::fmt::Display for TrySendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(_) => f.write_str("write buffer full"),
            Self::Failed(_, e) => e.fmt(f),
        }
    }
}

impl<M> std::error::Error for TrySendError<M> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Full(_) => None,
            Self::Failed(_, e) => Some(e),
        }
    }
}
