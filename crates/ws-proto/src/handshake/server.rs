//! The server side of the opening handshake (§4.2).

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};

use super::{
    accept_value, check_partial, has_token, single, to_header_map, tokens, with_header_slots,
    write_field, write_headers, Limits, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
};
use crate::error::HandshakeError;

/// Parse a request head from the start of `buf`, which may hold a partial
/// head (bytes arriving one at a time are fine: call again with more).
///
/// Returns `Ok(None)` while incomplete, else the request and the length of
/// its head; bytes after it belong to the WebSocket stream. Fails when the
/// head passes [`Limits`] or is not HTTP.
///
/// ```
/// use ws_proto::handshake::{parse_request_head, Limits};
/// let raw = b"GET /chat HTTP/1.1\r\nHost: example.com\r\n\r\n";
/// assert!(parse_request_head(&raw[..10], &Limits::default()).unwrap().is_none());
/// let (req, len) = parse_request_head(raw, &Limits::default()).unwrap().unwrap();
/// assert_eq!(len, raw.len());
/// assert_eq!(req.uri().path(), "/chat");
/// ```
pub fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(http::Request<()>, usize)>, HandshakeError> {
    with_header_slots(limits.max_headers, |headers| {
        let mut req = httparse::Request::new(headers);
        // Look at no more than the limit: the outcome then depends only on
        // the first `max_head_bytes` bytes, the same whether the head
        // arrives at once or in pieces.
        let status = req.parse(&buf[..buf.len().min(limits.max_head_bytes)]);
        let Some(len) = check_partial(status, buf.len(), limits)? else {
            return Ok(None);
        };
        let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
            .map_err(|_| HandshakeError::Malformed(httparse::Error::Token))?;
        let uri: Uri = req
            .path
            .unwrap_or_default()
            .parse()
            .map_err(|_| HandshakeError::InvalidUri)?;
        let version = match req.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let headers = to_header_map(&buf[..len], req.headers)?;
        let mut request = http::Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        *request.headers_mut() = headers;
        Ok(Some((request, len)))
    })
}

/// A validated WebSocket upgrade request: what the server's accept decision
/// looks at (path, query, headers, Origin, offered subprotocols).
///
/// ```
/// use ws_proto::handshake::{parse_request_head, Accept, Limits, UpgradeRequest};
/// let raw = b"GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
///             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///             Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
///             Sec-WebSocket-Version: 13\r\n\r\n";
/// let (head, _) = parse_request_head(raw, &Limits::default()).unwrap().unwrap();
/// let req = UpgradeRequest::from_http(&head).unwrap();
/// assert_eq!(req.path(), "/chat");
/// assert_eq!(req.query(), Some("room=1"));
/// assert_eq!(req.origin(), Some("http://example.com"));
/// assert_eq!(req.protocols(), ["chat", "superchat"]);
/// let response = req.accept(&Accept::default().protocol("chat")).unwrap();
/// assert_eq!(response.status(), 101);
/// assert_eq!(response.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    request: http::Request<()>,
    key: String,
    protocols: Vec<String>,
}

impl UpgradeRequest {
    /// Validate a request as a WebSocket upgrade (§4.2.1). Works on a
    /// request parsed by [`parse_request_head`] or by another HTTP stack
    /// (hyper, axum); the body is ignored.
    pub fn from_http<B>(req: &http::Request<B>) -> Result<Self, HandshakeError> {
        let (key, protocols) = Self::validate(req)?;
        let mut request = http::Request::new(());
        *request.method_mut() = req.method().clone();
        *request.uri_mut() = req.uri().clone();
        *request.version_mut() = req.version();
        *request.headers_mut() = req.headers().clone();
        Ok(Self {
            key,
            protocols,
            request,
        })
    }

    /// Like [`from_http`](Self::from_http), keeping the request without
    /// copying it (what a server that parsed the head itself wants).
    ///
    /// ```
    /// use ws_proto::handshake::{parse_request_head, Limits, UpgradeRequest};
    /// let raw = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    ///             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    /// let (head, _) = parse_request_head(raw, &Limits::default()).unwrap().unwrap();
    /// let req = UpgradeRequest::from_request(head).unwrap();
    /// assert_eq!(req.key(), "dGhlIHNhbXBsZSBub25jZQ==");
    /// ```
    pub fn from_request(request: http::Request<()>) -> Result<Self, HandshakeError> {
        let (key, protocols) = Self::validate(&request)?;
        Ok(Self {
            key,
            protocols,
            request,
        })
    }

    /// §4.2.1: the checks; returns the key and the offered subprotocols.
    fn validate<B>(req: &http::Request<B>) -> Result<(String, Vec<String>), HandshakeError> {
        // §4.2.1 item 1: an HTTP/1.1 or higher GET request.
        if req.method() != Method::GET {
            return Err(HandshakeError::MethodNotGet(req.method().to_string()));
        }
        if req.version() < Version::HTTP_11 {
            return Err(HandshakeError::HttpVersion);
        }
        let headers = req.headers();
        // Item 3: an |Upgrade| header field containing "websocket".
        if !has_token(headers, &header::UPGRADE, "websocket") {
            return Err(HandshakeError::NotUpgrade);
        }
        // Item 2: a |Host| header field.
        if !headers.contains_key(header::HOST) {
            return Err(HandshakeError::MissingHeader("Host"));
        }
        // Item 4: a |Connection| header field including the token "Upgrade".
        if !has_token(headers, &header::CONNECTION, "upgrade") {
            return Err(HandshakeError::InvalidHeader("Connection"));
        }
        // Item 6: |Sec-WebSocket-Version| 13; otherwise §4.4 asks for 426.
        let version = single(headers, &SEC_WEBSOCKET_VERSION, "sec-websocket-version")
            .map_err(|_| HandshakeError::UnsupportedVersion(String::new()))?;
        if version != "13" {
            return Err(HandshakeError::UnsupportedVersion(version.to_owned()));
        }
        // Item 5: a |Sec-WebSocket-Key| that decodes to 16 bytes.
        let key = single(headers, &SEC_WEBSOCKET_KEY, "sec-websocket-key")?;
        use base64::Engine as _;
        // Room for a little more than 16 bytes, so a longer key is told
        // apart from a 16-byte one rather than failing to fit.
        let mut decoded = [0u8; 24];
        match base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded) {
            Ok(16) => {}
            _ => return Err(HandshakeError::InvalidKey),
        }
        Ok((key.to_owned(), tokens(headers, &SEC_WEBSOCKET_PROTOCOL)))
    }

    /// The request.
    pub fn request(&self) -> &http::Request<()> {
        &self.request
    }

    /// The request target.
    pub fn uri(&self) -> &Uri {
        self.request.uri()
    }

    /// The path of the request target.
    pub fn path(&self) -> &str {
        self.request.uri().path()
    }

    /// The query of the request target, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.request.uri().query()
    }

    /// All header fields.
    pub fn headers(&self) -> &HeaderMap {
        self.request.headers()
    }

    /// The `Origin` header (§4.2.1 item 7, §10.2), for the accept decision.
    pub fn origin(&self) -> Option<&str> {
        self.headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
    }

    /// The `Sec-WebSocket-Key`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The values of `Sec-WebSocket-Extensions`, for extension negotiation.
    pub fn extension_offers(&self) -> impl Iterator<Item = &str> {
        self.headers()
            .get_all(super::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok())
    }

    /// The first subprotocol the client offered that is in `supported`.
    pub fn select_protocol<S: AsRef<str>>(&self, supported: &[S]) -> Option<&str> {
        self.protocols
            .iter()
            .find(|p| supported.iter().any(|s| s.as_ref() == p.as_str()))
            .map(String::as_str)
    }

    /// The 101 response that accepts this request (§4.2.2 item 5).
    pub fn accept(&self, accept: &Accept) -> Result<http::Response<()>, HandshakeError> {
        let protocol = self.chosen_protocol(accept)?;
        let mut headers = HeaderMap::with_capacity(4 + accept.headers.len());
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        let accept_value = HeaderValue::from_bytes(&accept_value(self.key.as_bytes()))
            .map_err(|_| HandshakeError::InvalidKey)?;
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept_value);
        if let Some(p) = protocol {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, p);
        }
        if let Some(ext) = &accept.extensions {
            headers.insert(super::SEC_WEBSOCKET_EXTENSIONS, ext.clone());
        }
        for (name, value) in &accept.headers {
            headers.append(name.clone(), value.clone());
        }
        let mut response = http::Response::new(());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *response.headers_mut() = headers;
        Ok(response)
    }

    /// The response of [`accept`](Self::accept), serialized, for a server
    /// that writes it to the connection itself: the same status and header
    /// fields as `write_response(&req.accept(accept)?, b"")`, without
    /// building the `http::Response` on the way (one allocation instead of
    /// several per handshake).
    ///
    /// ```
    /// use ws_proto::handshake::{parse_request_head, write_response, Accept, Limits, UpgradeRequest};
    /// let raw = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    ///             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    /// let (head, _) = parse_request_head(raw, &Limits::default()).unwrap().unwrap();
    /// let req = UpgradeRequest::from_request(head).unwrap();
    /// let bytes = req.accept_bytes(&Accept::default()).unwrap();
    /// assert_eq!(bytes, write_response(&req.accept(&Accept::default()).unwrap(), b""));
    /// ```
    pub fn accept_bytes(&self, accept: &Accept) -> Result<Vec<u8>, HandshakeError> {
        let protocol = self.chosen_protocol(accept)?;
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
              connection: Upgrade\r\nsec-websocket-accept: ",
        );
        out.extend_from_slice(&accept_value(self.key.as_bytes()));
        out.extend_from_slice(b"\r\n");
        if let Some(p) = &protocol {
            write_field(&SEC_WEBSOCKET_PROTOCOL, p, &mut out);
        }
        if let Some(ext) = &accept.extensions {
            write_field(&super::SEC_WEBSOCKET_EXTENSIONS, ext, &mut out);
        }
        write_headers(&accept.headers, &mut out);
        Ok(out)
    }

    /// The `Sec-WebSocket-Protocol` answer for `accept`, checked: §4.2.2
    /// item 5.4, the server selects one of the client's values.
    fn chosen_protocol(&self, accept: &Accept) -> Result<Option<HeaderValue>, HandshakeError> {
        let Some(p) = &accept.protocol else {
            return Ok(None);
        };
        if !self.protocols.iter().any(|o| o == p) {
            return Err(HandshakeError::ProtocolNotOffered(p.clone()));
        }
        HeaderValue::from_str(p)
            .map(Some)
            .map_err(|_| HandshakeError::InvalidCallerHeader)
    }
}

/// The server's decision to accept a request: the subprotocol it chose and
/// headers to add to the 101 response (cookies, for example).
///
/// ```
/// use ws_proto::handshake::Accept;
/// let accept = Accept::default()
///     .protocol("chat")
///     .header(http::header::SET_COOKIE, http::HeaderValue::from_static("id=1"));
/// assert_eq!(accept.protocol.as_deref(), Some("chat"));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Accept {
    /// The chosen subprotocol; it must be one the client offered.
    pub protocol: Option<String>,
    /// Extra response headers.
    pub headers: HeaderMap,
    /// The `Sec-WebSocket-Extensions` answer, set by extension negotiation.
    pub extensions: Option<HeaderValue>,
}

impl Accept {
    /// Choose a subprotocol.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Add a response header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
}

/// Serialize a response head (the 101 of [`UpgradeRequest::accept`], or
/// any other) followed by `body`.
pub fn write_response(response: &http::Response<()>, body: &[u8]) -> Vec<u8> {
    let status = response.status();
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    write_headers(response.headers(), &mut out);
    out.extend_from_slice(body);
    out
}

/// A refusal: `status` with a short plain-text `reason` as the body and
/// `Connection: close`, plus `extra` headers, as an `http::Response` for a
/// server built on another HTTP stack.
///
/// ```
/// let r = ws_proto::handshake::refusal(http::StatusCode::FORBIDDEN, "origin not allowed", &Default::default());
/// assert_eq!(r.status(), 403);
/// assert_eq!(r.body(), "origin not allowed\n");
/// ```
pub fn refusal(status: StatusCode, reason: &str, extra: &HeaderMap) -> http::Response<String> {
    let body = format!("{reason}\n");
    let mut response = http::Response::new(String::new());
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    for (name, value) in extra {
        h.append(name.clone(), value.clone());
    }
    *response.body_mut() = body;
    response
}

/// The refusal for a handshake error: its [`status`](HandshakeError::status)
/// and message, with `Sec-WebSocket-Version: 13` on a 426 (§4.4) and
/// `Allow: GET` on a 405.
pub fn error_refusal(err: &HandshakeError) -> http::Response<String> {
    let mut extra = HeaderMap::new();
    match err.status() {
        StatusCode::UPGRADE_REQUIRED => {
            extra.insert(super::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            extra.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            extra.insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        _ => {}
    }
    refusal(err.status(), &err.to_string(), &extra)
}

/// [`refusal`], serialized, for a server that writes it to the connection
/// itself.
///
/// ```
/// let bytes = ws_proto::handshake::reject(http::StatusCode::FORBIDDEN, "origin not allowed", &Default::default());
/// assert!(bytes.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
/// assert!(bytes.ends_with(b"\r\n\r\norigin not allowed\n"));
/// ```
pub fn reject(status: StatusCode, reason: &str, extra: &HeaderMap) -> Vec<u8> {
    serialize(refusal(status, reason, extra))
}

/// [`error_refusal`], serialized.
pub fn reject_error(err: &HandshakeError) -> Vec<u8> {
    serialize(error_refusal(err))
}

fn serialize(response: http::Response<String>) -> Vec<u8> {
    let (parts, body) = response.into_parts();
    write_response(&http::Response::from_parts(parts, ()), body.as_bytes())
}
