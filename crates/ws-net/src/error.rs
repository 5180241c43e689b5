//! The error type of ws-net.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use ws_proto::{HandshakeError, ProtocolError};

/// What went wrong on a connection or while opening one.
///
/// A clean close is not an error: the message stream ends after yielding
/// the peer's close frame.
///
/// ```no_run
/// # async fn demo() {
/// match ws_net::connect("ws://127.0.0.1:9001/").await {
///     Ok((ws, _)) => drop(ws),
///     Err(ws_net::Error::Refused { status, body, .. }) => {
///         eprintln!("refused with {status}: {}", String::from_utf8_lossy(&body))
///     }
///     Err(e) => eprintln!("failed: {e}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol; a close frame with
    /// [`ProtocolError::close_code`] was sent to it.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The opening handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The server refused the upgrade with this status (client side).
    #[error("server refused the WebSocket upgrade with status {status}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// The response headers.
        headers: Box<HeaderMap>,
        /// The response body (at most 64 KiB of it).
        body: Bytes,
    },
    /// The server's accept callback refused the request with this status.
    #[error("request refused with status {0}")]
    Rejected(StatusCode),
    /// The connection is closing or closed: nothing more can be sent.
    #[error("connection closed")]
    Closed,
    /// The message cannot be sent (a control payload over 125 bytes, an
    /// invalid close code...).
    #[error("cannot send: {0}")]
    Send(ws_proto::SendError),
    /// The TCP connection did not open in time.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The opening handshake did not complete in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// No pong (nor anything else) came back from the peer within the
    /// keepalive timeout after a ping: the peer is gone.
    #[error("keepalive timeout: no answer to ping")]
    KeepaliveTimeout,
    /// The peer did not complete the closing handshake in time; the
    /// transport was dropped.
    #[error("close handshake timed out")]
    CloseTimeout,
    /// The URL is not a usable `ws://` or `wss://` URL.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// A TLS setting is invalid (certificate, server name).
    #[error("TLS: {0}")]
    Tls(String),
}

impl Error {
    /// The close code the peer got, for a protocol error.
    pub fn close_code(&self) -> Option<ws_proto::CloseCode> {
        match self {
            Self::Protocol(p) => Some(p.close_code()),
            _ => None,
        }
    }

    /// A copy for reporting the same failure to several handles; I/O errors
    /// keep their kind and message.
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::Io(e) => Self::Io(std::io::Error::new(e.kind(), e.to_string())),
            Self::Protocol(p) => Self::Protocol(p.clone()),
            Self::KeepaliveTimeout => Self::KeepaliveTimeout,
            Self::CloseTimeout => Self::CloseTimeout,
            _ => Self::Closed,
        }
    }
}

impl From<ws_proto::SendError> for Error {
    fn from(e: ws_proto::SendError) -> Self {
        match e {
            ws_proto::SendError::Closed => Self::Closed,
            other => Self::Send(other),
        }
    }
}
