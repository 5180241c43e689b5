//! Opening a connection as a client.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, CONTENT_LENGTH};
use http::{HeaderValue, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use ws_proto::handshake::{ClientRequest, UpgradeResponse};
use ws_proto::Role;

use crate::config::Config;
use crate::conn::{HandshakeInfo, WebSocket};
use crate::error::Error;
use crate::timer::Deadline;
use crate::transport::is_tcp_stream;

/// Most bytes of a refusal's body kept in [`Error::Refused`].
const MAX_REFUSAL_BODY: usize = 64 * 1024;

/// Connect to a `ws://` or `wss://` URL with default settings.
///
/// ```no_run
/// # async fn demo() -> Result<(), ws_net::Error> {
/// let (ws, response) = ws_net::connect("ws://127.0.0.1:9001/chat").await?;
/// println!("subprotocol: {:?}", response.protocol());
/// # drop(ws); Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<(WebSocket, UpgradeResponse), Error> {
    ClientBuilder::new(url)?.connect().await
}

/// A client connection with options: subprotocols, headers (Authorization,
/// Cookie), Origin, timeouts, TLS roots.
///
/// ```no_run
/// # async fn demo() -> Result<(), ws_net::Error> {
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
    /// Start from a `ws://` or `wss://` URL.
    pub fn new(url: &str) -> Result<Self, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| Error::InvalidUrl(e.to_string()))?;
        let tls = match uri.scheme_str() {
            Some("ws") | Some("http") => false,
            Some("wss") | Some("https") => true,
            _ => {
                return Err(Error::InvalidUrl(format!(
                    "{url}: scheme must be ws or wss"
                )))
            }
        };
        if uri.host().is_none_or(str::is_empty) {
            return Err(Error::InvalidUrl(format!("{url}: no host")));
        }
        if tls && !cfg!(feature = "tls") {
            return Err(Error::InvalidUrl(
                "wss:// needs the `tls` feature of ws-net".into(),
            ));
        }
        let request = ClientRequest::new(uri.clone())?;
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
        self.tls_options.extra_roots.push(der);
        self
    }

    /// Accept any server certificate. Only for testing: it defeats TLS.
    #[cfg(feature = "tls")]
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.tls_options.insecure = accept;
        self
    }

    /// Use this rustls configuration as is.
    #[cfg(feature = "tls")]
    pub fn tls_config(
        mut self,
        config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    ) -> Self {
        self.tls_options.config = Some(config);
        self
    }

    /// Connect, run the opening handshake, and return the connection with
    /// the server's response (subprotocol, extensions, headers).
    ///
    /// Cancel-safe in the sense that dropping it drops the half-open
    /// connection; nothing is left running.
    pub async fn connect(self) -> Result<(WebSocket, UpgradeResponse), Error> {
        // Boxed: the caller's task carries no room for the handshake state.
        Box::pin(self.connect_inner()).await
    }

    async fn connect_inner(mut self) -> Result<(WebSocket, UpgradeResponse), Error> {
        if let Some(deflate) = &self.config.deflate {
            self.request = self
                .request
                .extensions(ws_proto::deflate::client_offer(deflate));
        }
        let host = self.uri.host().unwrap_or_default();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = self
            .uri
            .port_u16()
            .unwrap_or(if self.tls { 443 } else { 80 });
        // A tokio socket needs a reactor: the timer may use it (`timer.rs`).
        let connect_deadline = Deadline::after(self.config.connect_timeout, true);
        let tcp = connect_deadline
            .run(std::pin::pin!(TcpStream::connect((host.as_str(), port))))
            .await
            .map_err(|_| Error::ConnectTimeout)??;
        tcp.set_nodelay(self.config.nodelay)?;
        if self.tls {
            #[cfg(feature = "tls")]
            {
                let connector = self.tls_options.connector()?;
                let name = crate::tls::server_name(&host)?;
                let stream = connect_deadline
                    .run(std::pin::pin!(connector.connect(name, tcp)))
                    .await
                    .map_err(|_| Error::ConnectTimeout)??;
                return handshake(stream, self.request, self.config).await;
            }
        }
        handshake(tcp, self.request, self.config).await
    }
}

/// Run the client handshake over a connected transport (TCP, TLS, or any
/// other stream), then hand it to a [`WebSocket`].
pub(crate) async fn handshake<S>(
    mut stream: S,
    request: ClientRequest,
    config: Config,
) -> Result<(WebSocket, UpgradeResponse), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline = Deadline::after(config.handshake_timeout, is_tcp_stream(&stream));
    let exchange = async {
        let (bytes, pending) = request.into_handshake();
        stream.write_all(&bytes).await?;
        stream.flush().await?;
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            if let Some((head, len)) = pending.parse_response_head(&buf)? {
                let _ = buf.split_to(len);
                if head.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                    let body = read_body(&mut stream, &head, buf).await;
                    return Err(Error::Refused {
                        status: head.status(),
                        headers: Box::new(head.headers().clone()),
                        body,
                    });
                }
                let response = pending.validate(head)?;
                let deflate = match &config.deflate {
                    Some(offered) => {
                        let answers = response
                            .headers()
                            .get_all(ws_proto::handshake::SEC_WEBSOCKET_EXTENSIONS)
                            .iter()
                            // `validate` failed any value that is not
                            // visible ASCII, so none is skipped here.
                            .filter_map(|v| v.to_str().ok());
                        ws_proto::deflate::client_accept(answers, offered)?
                    }
                    None => None,
                };
                return Ok((response, deflate, buf));
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    };
    let (response, deflate, leftover) = deadline
        .run(std::pin::pin!(exchange))
        .await
        .map_err(|_| Error::HandshakeTimeout)??;
    let info = HandshakeInfo {
        protocol: response.protocol().map(str::to_owned),
        deflate,
    };
    let ws = WebSocket::from_parts(stream, Role::Client, config, &leftover, info);
    Ok((ws, response))
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

impl From<http::uri::InvalidUri> for Error {
    fn from(e: http::uri::InvalidUri) -> Self {
        Error::InvalidUrl(e.to_string())
    }
}
