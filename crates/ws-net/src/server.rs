//! Accepting connections as a server.
//!
//! - [`bind`]: a `TcpListener` with a listen backlog of 1024 (tokio's
//!   default of 128 makes clients wait a second for a SYN retry during
//!   connection bursts).
//! - [`accept`] / [`accept_with`]: run the opening handshake on any
//!   `AsyncRead + AsyncWrite` (TCP, TLS, a unix socket), the second with a
//!   callback that decides from the request (path, query, headers, Origin,
//!   Authorization) to accept, choosing a subprotocol and adding headers, or
//!   to refuse with a status.
//! - [`upgrade`]: for a request already parsed by another HTTP stack
//!   (hyper, axum), validate it, let a callback decide, negotiate
//!   permessage-deflate, and build the 101; then
//!   [`Upgrade::into_websocket`] wraps the upgraded transport with what was
//!   negotiated in force. The `hyper` and `axum` features of this crate do
//!   it for those stacks.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let listener = ws_net::server::bind("127.0.0.1:9001".parse().unwrap()).await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = ws_net::server::accept(tcp, Default::default()).await else { return };
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if msg.is_data() && ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! }
//! # }
//! ```

use std::net::SocketAddr;

use bytes::BytesMut;
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use ws_proto::handshake::{self, parse_request_head};
use ws_proto::{HandshakeError, Role};

pub use ws_proto::handshake::{Accept, UpgradeRequest};

use crate::clock::Deadline;
use crate::config::Config;
use crate::conn::{HandshakeInfo, WebSocket};
use crate::error::AcceptError;
use crate::transport::is_tcp_stream;

/// The listen backlog of [`bind`].
pub const LISTEN_BACKLOG: u32 = 1024;

/// Bind a TCP listener with `SO_REUSEADDR` and a backlog of
/// [`LISTEN_BACKLOG`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A refusal from an accept callback.
///
/// ```
/// let r = ws_net::server::Reject::new(http::StatusCode::FORBIDDEN, "origin not allowed");
/// assert_eq!(r.status, 403);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Reject {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short reason, sent as the plain-text body.
    pub reason: String,
    /// Extra response headers (`WWW-Authenticate`, for example).
    pub headers: Box<HeaderMap>,
}

impl Reject {
    /// A refusal with a status and reason.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            headers: Box::default(),
        }
    }

    /// Add a response header (`WWW-Authenticate`, for example).
    pub fn header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// The HTTP response: the status, the reason as a plain-text body, and
    /// the headers.
    pub fn into_response(self) -> http::Response<String> {
        handshake::refusal(self.status, &self.reason, &self.headers)
    }
}

/// Accept every valid upgrade request, with no subprotocol.
///
/// Cancel-safe in the sense that dropping it drops the transport.
pub async fn accept<S>(stream: S, config: Config) -> Result<WebSocket, AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    accept_with(stream, config, |_| Ok(Accept::default())).await
}

/// Run the server handshake and let `decide` accept or refuse the request.
///
/// An invalid request gets its HTTP error (400, 405, 426 with
/// `Sec-WebSocket-Version: 13`, 431) and the transport is closed; so does a
/// plain HTTP request that is not an upgrade. The whole handshake is
/// bounded by [`Config::handshake_timeout`].
///
/// ```no_run
/// # async fn demo(tcp: tokio::net::TcpStream) -> Result<(), ws_net::AcceptError> {
/// use ws_net::server::{accept_with, Accept, Reject};
/// let ws = accept_with(tcp, Default::default(), |req| {
///     if req.origin() != Some("https://app.example") {
///         return Err(Reject::new(http::StatusCode::FORBIDDEN, "origin not allowed"));
///     }
///     let mut accept = Accept::default();
///     accept.protocol = req.select_protocol(&["chat.v2"]).map(str::to_owned);
///     Ok(accept)
/// })
/// .await?;
/// # drop(ws); Ok(()) }
/// ```
pub async fn accept_with<S, F>(
    stream: S,
    config: Config,
    decide: F,
) -> Result<WebSocket, AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(&UpgradeRequest) -> Result<Accept, Reject>,
{
    // The handshake's state (request, response, timers) lives in its own
    // allocation for the handshake's duration, so the caller's connection
    // task does not carry room for it while the connection is open.
    Box::pin(handshake(stream, config, decide)).await
}

async fn handshake<S, F>(mut stream: S, config: Config, decide: F) -> Result<WebSocket, AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(&UpgradeRequest) -> Result<Accept, Reject>,
{
    // On the connections' clock, not the runtime's timer: a server needs
    // no timer in its runtime (see `timer.rs`).
    let deadline = Deadline::after(config.handshake_timeout, is_tcp_stream(&stream));
    let limits = config.handshake_limits;
    let read_head = async {
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            match parse_request_head(&buf, &limits) {
                Ok(Some((head, len))) => {
                    let _ = buf.split_to(len);
                    return Ok((head, buf));
                }
                Ok(None) => {}
                Err(e) => return Err(AcceptError::Handshake(e)),
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    };
    let head = deadline
        .run(std::pin::pin!(read_head))
        .await
        .map_err(|_| AcceptError::HandshakeTimeout);
    let (head, leftover) = match head {
        Ok(Ok(h)) => h,
        Ok(Err(AcceptError::Handshake(e))) => return refuse(stream, deadline, e).await,
        Ok(Err(e)) | Err(e) => return Err(e),
    };
    let request = match UpgradeRequest::from_request(head) {
        Ok(r) => r,
        Err(e) => return refuse(stream, deadline, e).await,
    };
    let (bytes, protocol, deflate) = match decide(&request) {
        Ok(mut accept) => {
            let deflate = negotiate_deflate(&request, &config, &mut accept);
            match request.accept_bytes(&accept) {
                Ok(bytes) => (bytes, accept.protocol, deflate),
                Err(e) => return refuse(stream, deadline, e).await,
            }
        }
        Err(reject) => {
            let bytes = handshake::reject(reject.status, &reject.reason, &reject.headers);
            write_and_close(&mut stream, deadline, &bytes).await;
            return Err(AcceptError::Refused(reject.status));
        }
    };
    deadline
        .run(std::pin::pin!(stream.write_all(&bytes)))
        .await
        .map_err(|_| AcceptError::HandshakeTimeout)??;
    let info = HandshakeInfo {
        protocol,
        deflate,
        peer_addr: None,
    };
    Ok(WebSocket::from_parts(
        stream,
        Role::Server,
        config,
        &leftover,
        info,
    ))
}

/// Accept permessage-deflate if configured and offered; the answer header
/// goes into `accept`.
fn negotiate_deflate(
    request: &UpgradeRequest,
    config: &Config,
    accept: &mut Accept,
) -> Option<ws_proto::deflate::Negotiated> {
    let deflate = config.deflate.as_ref()?;
    let (answer, negotiated) =
        ws_proto::deflate::server_negotiate(request.extension_offers(), deflate)?;
    accept.extensions = Some(answer);
    Some(negotiated)
}

/// Validate a request parsed by another HTTP stack, let `decide` accept it
/// (choosing a subprotocol, adding headers) or refuse it, negotiate
/// permessage-deflate as `config` says, and build the 101 response. Send
/// the response, then wrap the upgraded transport with
/// [`Upgrade::into_websocket`]: the subprotocol and deflate parameters
/// agreed here are in force on it, and `config`'s limits apply.
///
/// The request's head was read by the other stack, under its own limits;
/// [`Config::handshake_limits`]' header count and size are checked here
/// too (431).
///
/// ```
/// use ws_net::server::{upgrade, Accept};
/// let req = http::Request::get("/ws")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-protocol", "chat.v2")
///     .body(())
///     .unwrap();
/// let config = ws_net::Config::default();
/// let (response, upgrade) = upgrade(&req, &config, |r| {
///     Ok(Accept::default().protocol(r.select_protocol(&["chat.v2"]).unwrap_or_default()))
/// })
/// .unwrap();
/// assert_eq!(response.status(), 101);
/// assert_eq!(upgrade.protocol(), Some("chat.v2"));
/// // Then, with the transport hyper hands over after sending the 101:
/// // let ws = upgrade.into_websocket(io);
/// ```
pub fn upgrade<B, F>(
    request: &http::Request<B>,
    config: &Config,
    decide: F,
) -> Result<(http::Response<()>, Upgrade), UpgradeError>
where
    F: FnOnce(&UpgradeRequest) -> Result<Accept, Reject>,
{
    check_head_limits(request.headers(), &config.handshake_limits)?;
    let request = UpgradeRequest::from_http(request)?;
    let mut accept = decide(&request).map_err(UpgradeError::Refused)?;
    if accept.protocol.as_deref() == Some("") {
        accept.protocol = None;
    }
    let deflate = negotiate_deflate(&request, config, &mut accept);
    let response = request.accept(&accept)?;
    let upgrade = Upgrade {
        config: config.clone(),
        info: HandshakeInfo {
            protocol: accept.protocol,
            deflate,
            peer_addr: None,
        },
    };
    Ok((response, upgrade))
}

/// The header limits of [`Config::handshake_limits`], for a head another
/// stack parsed: the count, and the size as the head would have on the wire.
fn check_head_limits(
    headers: &http::HeaderMap,
    limits: &ws_proto::handshake::Limits,
) -> Result<(), HandshakeError> {
    if headers.len() > limits.max_headers {
        return Err(HandshakeError::TooManyHeaders {
            limit: limits.max_headers,
        });
    }
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if size > limits.max_head_bytes {
        return Err(HandshakeError::HeadTooLarge {
            limit: limits.max_head_bytes,
        });
    }
    Ok(())
}

/// An accepted upgrade, waiting for its transport: what the handshake
/// agreed and the connection's settings. Made by [`upgrade`].
#[derive(Debug, Clone)]
pub struct Upgrade {
    config: Config,
    info: HandshakeInfo,
}

impl Upgrade {
    /// The subprotocol agreed.
    pub fn protocol(&self) -> Option<&str> {
        self.info.protocol.as_deref()
    }

    /// The permessage-deflate parameters agreed, if any.
    pub fn deflate(&self) -> Option<ws_proto::deflate::Negotiated> {
        self.info.deflate
    }

    /// Record the peer's address (the other stack knows it; the upgraded
    /// transport may not tell).
    pub fn peer_addr(mut self, addr: SocketAddr) -> Self {
        self.info.peer_addr = Some(addr);
        self
    }

    /// Wrap the upgraded transport, after the 101 was sent. Must be called
    /// inside a tokio runtime: it spawns the connection's driver task.
    pub fn into_websocket<S>(self, stream: S) -> WebSocket
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        WebSocket::from_parts(stream, Role::Server, self.config, &[], self.info)
    }
}

/// Why [`upgrade`] did not accept a request; answer it with
/// [`into_response`](Self::into_response).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The request is not a valid upgrade.
    #[error("invalid upgrade request: {0}")]
    Invalid(#[from] HandshakeError),
    /// The callback refused it.
    #[error("upgrade refused with status {}", .0.status)]
    Refused(Reject),
}

impl UpgradeError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(e) => e.status(),
            Self::Refused(r) => r.status,
        }
    }

    /// The answer: the status, a plain-text reason, and the headers the
    /// status calls for (`Sec-WebSocket-Version: 13` on a 426).
    pub fn into_response(self) -> http::Response<String> {
        match self {
            Self::Invalid(e) => handshake::error_refusal(&e),
            Self::Refused(r) => r.into_response(),
        }
    }
}

async fn refuse<S>(
    mut stream: S,
    deadline: Deadline,
    err: HandshakeError,
) -> Result<WebSocket, AcceptError>
where
    S: AsyncWrite + Unpin,
{
    tracing::debug!(error = %err, "refusing handshake");
    let bytes = handshake::reject_error(&err);
    write_and_close(&mut stream, deadline, &bytes).await;
    Err(AcceptError::Handshake(err))
}

async fn write_and_close<S: AsyncWrite + Unpin>(stream: &mut S, deadline: Deadline, bytes: &[u8]) {
    let _ = deadline
        .run(std::pin::pin!(async {
            stream.write_all(bytes).await?;
            stream.shutdown().await
        }))
        .await;
}
