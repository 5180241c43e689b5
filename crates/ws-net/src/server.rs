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
//! - [`upgrade_response`] and [`WebSocket::from_raw`]: for a request
//!   already parsed by another HTTP stack (hyper, axum), validate it and
//!   build the 101, then wrap the upgraded transport.
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

use crate::config::Config;
use crate::conn::{HandshakeInfo, WebSocket};
use crate::error::Error;
use crate::timer::Deadline;
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
}

/// Accept every valid upgrade request, with no subprotocol.
///
/// Cancel-safe in the sense that dropping it drops the transport.
pub async fn accept<S>(stream: S, config: Config) -> Result<WebSocket, Error>
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
/// # async fn demo(tcp: tokio::net::TcpStream) -> Result<(), ws_net::Error> {
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
pub async fn accept_with<S, F>(stream: S, config: Config, decide: F) -> Result<WebSocket, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(&UpgradeRequest) -> Result<Accept, Reject>,
{
    // The handshake's state (request, response, timers) lives in its own
    // allocation for the handshake's duration, so the caller's connection
    // task does not carry room for it while the connection is open.
    Box::pin(handshake(stream, config, decide)).await
}

async fn handshake<S, F>(mut stream: S, config: Config, decide: F) -> Result<WebSocket, Error>
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
                Err(e) => return Err(Error::Handshake(e)),
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    };
    let head = deadline
        .run(std::pin::pin!(read_head))
        .await
        .map_err(|_| Error::HandshakeTimeout);
    let (head, leftover) = match head {
        Ok(Ok(h)) => h,
        Ok(Err(Error::Handshake(e))) => return refuse(stream, deadline, e).await,
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
            return Err(Error::Rejected(reject.status));
        }
    };
    deadline
        .run(std::pin::pin!(stream.write_all(&bytes)))
        .await
        .map_err(|_| Error::HandshakeTimeout)??;
    let info = HandshakeInfo { protocol, deflate };
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

/// Validate a request parsed by another HTTP stack and build the 101
/// response to send back; then wrap the upgraded transport with
/// [`WebSocket::from_raw`] in the server role.
///
/// ```
/// let req = http::Request::get("/ws")
///     .header("host", "example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("sec-websocket-version", "13")
///     .body(())
///     .unwrap();
/// let response = ws_net::server::upgrade_response(&req, &Default::default()).unwrap();
/// assert_eq!(response.status(), 101);
/// ```
pub fn upgrade_response<B>(
    request: &http::Request<B>,
    accept: &Accept,
) -> Result<http::Response<()>, HandshakeError> {
    UpgradeRequest::from_http(request)?.accept(accept)
}

async fn refuse<S>(
    mut stream: S,
    deadline: Deadline,
    err: HandshakeError,
) -> Result<WebSocket, Error>
where
    S: AsyncWrite + Unpin,
{
    tracing::debug!(error = %err, "refusing handshake");
    let bytes = handshake::reject_error(&err);
    write_and_close(&mut stream, deadline, &bytes).await;
    Err(Error::Handshake(err))
}

async fn write_and_close<S: AsyncWrite + Unpin>(stream: &mut S, deadline: Deadline, bytes: &[u8]) {
    let _ = deadline
        .run(std::pin::pin!(async {
            stream.write_all(bytes).await?;
            stream.shutdown().await
        }))
        .await;
}
