//! Opening a connection as a client: over TCP (and TLS) to a URL, or over
//! any stream the caller already has.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, CONTENT_LENGTH};
use http::{HeaderValue, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use ws_proto::handshake::{ClientRequest, UpgradeResponse};
use ws_proto::Role;

use crate::clock::Deadline;
use crate::config::Config;
use crate::conn::{HandshakeInfo, WebSocket};
use crate::error::ConnectError;
use crate::transport::is_tcp_stream;

/// Most bytes of a refusal's body kept in [`ConnectError::Refused`].
const MAX_REFUSAL_BODY: usize = 64 * 1024;

/// Connect to a `ws://` or `wss://` URL with default settings.
///
/// ```no_run
/// # async fn demo() -> Result<(), ws_net::ConnectError> {
/// let (ws, response) = ws_net::connect("ws://127.0.0.1:9001/chat").await?;
/// println!("subprotocol: {:?}", response.protocol());
/// # drop(ws); Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<(WebSocket, UpgradeResponse), ConnectError> {
    ClientBuilder::new(url)?.connect().await
}

/// A client connection with options: subprotocols, headers (Authorization,
/// Cookie), Origin, timeouts, TLS roots. It is cheap to clone, and a clone
/// reuses the TLS configuration the original built: a reconnecting client
/// keeps one builder and connects with a clone of it each time.
///
/// ```no_run
/// # async fn demo() -> Result<(), ws_net::ConnectError> {
/// use http::{header, HeaderValue};
/// let (ws, response) = ws_net::ClientBuilder::new("wss://example.com/feed")?
///     .protocol("v2.feed")
///     .header(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"))
///     .origin(HeaderValue::from_static("https://example.com"))
///     .connect()
///     .await?;
/// # drop((ws, response)); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    uri: Uri,
    tls: bool,
    request: ClientRequest,
    config: Config,
    #[cfg(feature = "tls")]
    tls_options: crate::tls::TlsOptions,
}

impl ClientBuilder {
    /// Start from a `ws://` or `wss://` URL (`http://` and `https://` are
    /// taken as their WebSocket counterparts).
    pub fn new(url: &str) -> Result<Self, ConnectError> {
        let uri: Uri = url.parse()?;
        let tls = match uri.scheme_str() {
            Some("ws") | Some("http") => false,
            Some("wss") | Some("https") => true,
            _ => return Err(ConnectError::UnsupportedScheme),
        };
        if uri.host().is_none_or(str::is_empty) {
            return Err(ConnectError::NoHost);
        }
        if tls && !cfg!(feature = "tls") {
            return Err(ConnectError::TlsDisabled);
        }
        let request = ClientRequest::new(uri.clone()).map_err(ConnectError::Handshake)?;
        Ok(Self {
            uri,
            tls,
            request,
            config: Config::default(),
            #[cfg(feature = "tls")]
            tls_options: Default::default(),
        })
    }

    /// Offer a subprotocol; call again for more, in order of preference.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.request = self.request.protocol(protocol);
        self
    }

    /// Add a request header, such as `Authorization` or `Cookie`.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    /// Send an `Origin` header.
    pub fn origin(mut self, origin: HeaderValue) -> Self {
        self.request = self.request.origin(origin);
        self
    }

    /// Connection settings (timeouts, limits, keepalive).
    pub fn config(mut self, config: Config) -> Self {
        self.request = self.request.limits(config.handshake_limits);
        self.config = config;
        self
    }

    /// Trust this DER-encoded root certificate too (for tests and private
    /// CAs).
    #[cfg(feature = "tls")]
    pub fn add_root_certificate(mut self, der: Vec<u8>) -> Self {
        self.tls_options.add_root(der);
        self
    }

    /// Accept any server certificate. Only for testing: it defeats TLS.
    #[cfg(feature = "tls")]
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.tls_options.set_insecure(accept);
        self
    }

    /// Use this rustls configuration as is.
    #[cfg(feature = "tls")]
    pub fn tls_config(self, config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>) -> Self {
        self.tls_connector(crate::TlsConnector::from_config(config))
    }

    /// Use this TLS connector (built once, shared by many connects).
    /// Without one, `wss://` uses the webpki roots, built once per process,
    /// or, with [`add_root_certificate`](Self::add_root_certificate) or
    /// [`danger_accept_invalid_certs`](Self::danger_accept_invalid_certs),
    /// a configuration built at the first connect and kept by this builder
    /// and its clones.
    #[cfg(feature = "tls")]
    pub fn tls_connector(mut self, connector: crate::TlsConnector) -> Self {
        self.tls_options.set_connector(connector);
        self
    }

    /// Connect, run the opening handshake, and return the connection with
    /// the server's response (subprotocol, extensions, headers).
    ///
    /// Cancel-safe in the sense that dropping it drops the half-open
    /// connection; nothing is left running.
    pub async fn connect(self) -> Result<(WebSocket, UpgradeResponse), ConnectError> {
        // Boxed: the caller's task carries no room for the handshake state.
        Box::pin(self.connect_inner()).await
    }

    /// Run the opening handshake over a stream the caller connected (a
    /// proxy tunnel, a Unix socket, an in-memory pipe, a TLS stream of its
    /// own): the URL gives the request's path and `Host`, and is not
    /// connected to. Bounded by
    /// [`Config::handshake_timeout`](crate::Config::handshake_timeout).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), ws_net::ConnectError> {
    /// let stream = tokio::net::UnixStream::connect("/run/app.sock").await?;
    /// let (ws, _response) = ws_net::ClientBuilder::new("ws://localhost/events")?
    ///     .handshake(stream)
    ///     .await?;
    /// # drop(ws); Ok(()) }
    /// ```
    ///
    /// Cancel-safe in the sense that dropping it drops the stream.
    pub async fn handshake<S>(self, stream: S) -> Result<(WebSocket, UpgradeResponse), ConnectError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Box::pin(self.offer_extensions().handshake_inner(stream, None)).await
    }

    /// Add the permessage-deflate offer when it is configured.
    fn offer_extensions(mut self) -> Self {
        if let Some(deflate) = &self.config.deflate {
            self.request = self
                .request
                .extensions(ws_proto::deflate::client_offer(deflate));
        }
        self
    }

    async fn connect_inner(self) -> Result<(WebSocket, UpgradeResponse), ConnectError> {
        let this = self.offer_extensions();
        let host = this.uri.host().unwrap_or_default();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = this
            .uri
            .port_u16()
            .unwrap_or(if this.tls { 443 } else { 80 });
        // A tokio socket needs a reactor: the clock may use it (`clock.rs`).
        let connect_deadline = Deadline::after(this.config.connect_timeout, true);
        let tcp = connect_deadline
            .run(std::pin::pin!(TcpStream::connect((host.as_str(), port))))
            .await
            .map_err(|_| ConnectError::ConnectTimeout)??;
        tcp.set_nodelay(this.config.nodelay)?;
        let peer_addr = tcp.peer_addr().ok();
        if this.tls {
            #[cfg(feature = "tls")]
            {
                let connector = this.tls_options.connector()?.tokio();
                let name = crate::tls::server_name(&host)?;
                let stream = connect_deadline
                    .run(std::pin::pin!(connector.connect(name, tcp)))
                    .await
                    .map_err(|_| ConnectError::ConnectTimeout)??;
                return this.handshake_inner(stream, peer_addr).await;
            }
        }
        this.handshake_inner(tcp, peer_addr).await
    }

    /// Run the client handshake over a connected transport (TCP, TLS, or any
    /// other stream), then hand it to a [`WebSocket`].
    async fn handshake_inner<S>(
        self,
        mut stream: S,
        peer_addr: Option<std::net::SocketAddr>,
    ) -> Result<(WebSocket, UpgradeResponse), ConnectError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = self.config;
        let deadline = Deadline::after(config.handshake_timeout, is_tcp_stream(&stream));
        let exchange = async {
            let (bytes, pending) = self.request.into_handshake();
            stream.write_all(&bytes).await?;
            stream.flush().await?;
            let mut buf = BytesMut::with_capacity(1024);
            loop {
                let head = pending
                    .parse_response_head(&buf)
                    .map_err(ConnectError::Handshake)?;
                if let Some((head, len)) = head {
                    let _ = buf.split_to(len);
                    let response = match pending.validate(head) {
                        Ok(r) => r,
                        Err(ws_proto::HandshakeError::Refused(head)) => {
                            let body = read_body(&mut stream, &head, buf).await;
                            let (parts, ()) = head.into_parts();
                            return Err(ConnectError::Refused {
                                status: parts.status,
                                headers: Box::new(parts.headers),
                                body,
                            });
                        }
                        Err(e) => return Err(ConnectError::Handshake(e)),
                    };
                    let deflate = match &config.deflate {
                        Some(offered) => {
                            let answers = response
                                .headers()
                                .get_all(ws_proto::handshake::SEC_WEBSOCKET_EXTENSIONS)
                                .iter()
                                // `validate` failed any value that is not
                                // visible ASCII, so none is skipped here.
                                .filter_map(|v| v.to_str().ok());
                            ws_proto::deflate::client_accept(answers, offered)
                                .map_err(ConnectError::Handshake)?
                        }
                        None => None,
                    };
                    return Ok((response, deflate, buf));
                }
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
            }
        };
        let (response, deflate, leftover) = deadline
            .run(std::pin::pin!(exchange))
            .await
            .map_err(|_| ConnectError::HandshakeTimeout)??;
        let info = HandshakeInfo {
            protocol: response.protocol().map(str::to_owned),
            deflate,
            peer_addr,
        };
        let ws = WebSocket::from_parts(stream, Role::Client, config, &leftover, info);
        Ok((ws, response))
    }
}

/// Read a refusal's body: `Content-Length` bytes, or until the server
/// closes, at most [`MAX_REFUSAL_BODY`] either way. Errors end the body.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    head: &http::Response<()>,
    mut buf: BytesMut,
) -> Bytes {
    let want = head
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(MAX_REFUSAL_BODY)
        .min(MAX_REFUSAL_BODY);
    while buf.len() < want {
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    buf.truncate(want);
    buf.freeze()
}
