//! The client side of the opening handshake (§4.1).

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, Version};

use super::{
    accept_key, check_partial, generate_key, has_token, strict_tokens, to_header_map,
    with_header_slots, write_headers, Limits, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_PROTOCOL,
};
use crate::error::HandshakeError;

/// A client's opening handshake request (§4.1), built step by step.
///
/// ```
/// use ws_proto::handshake::ClientRequest;
/// let (bytes, handshake) = ClientRequest::new("ws://example.com/chat".parse().unwrap())
///     .unwrap()
///     .protocol("chat")
///     .origin(http::HeaderValue::from_static("http://example.com"))
///     .header(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer t"))
///     .into_handshake();
/// let text = String::from_utf8(bytes).unwrap();
/// assert!(text.starts_with("GET /chat HTTP/1.1\r\nhost: example.com\r\n"));
/// assert!(text.contains("sec-websocket-version: 13\r\n"));
/// assert!(text.contains("authorization: Bearer t\r\n"));
/// # let _ = handshake;
/// ```
#[derive(Debug, Clone)]
pub struct ClientRequest {
    uri: Uri,
    protocols: Vec<String>,
    origin: Option<HeaderValue>,
    extensions: Option<HeaderValue>,
    headers: HeaderMap,
    limits: Limits,
}

impl ClientRequest {
    /// A request for `uri` (`ws://`, `wss://`, `http://` or `https://`, with
    /// a host). Only the host, port, path and query are used here; the I/O
    /// layer picks TCP or TLS from the scheme.
    pub fn new(uri: Uri) -> Result<Self, HandshakeError> {
        if uri.authority().is_none() {
            return Err(HandshakeError::InvalidUri);
        }
        Ok(Self {
            uri,
            protocols: Vec::new(),
            origin: None,
            extensions: None,
            headers: HeaderMap::new(),
            limits: Limits::default(),
        })
    }

    /// The target.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Offer a subprotocol; call again for more, in order of preference.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Send an `Origin` header (browsers always do; §4.1 item 8).
    pub fn origin(mut self, origin: HeaderValue) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Offer extensions: the value of `Sec-WebSocket-Extensions`.
    pub fn extensions(mut self, offer: HeaderValue) -> Self {
        self.extensions = Some(offer);
        self
    }

    /// Add a header, such as `Authorization` or `Cookie`. The handshake's
    /// own headers (Host, Upgrade, Connection, Sec-WebSocket-*) are set by
    /// this type and should not be added here.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Limits for the response head.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The request bytes to send, and the state that checks the response.
    pub fn into_handshake(self) -> (Vec<u8>, ClientHandshake) {
        let key = generate_key();
        let mut headers = HeaderMap::with_capacity(8 + self.headers.len());
        let authority = self.uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or(authority);
        if let Ok(host) = HeaderValue::from_str(host) {
            headers.insert(header::HOST, host);
        }
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(k) = HeaderValue::from_str(&key) {
            headers.insert(super::SEC_WEBSOCKET_KEY, k);
        }
        headers.insert(super::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        if !self.protocols.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&self.protocols.join(", ")) {
                headers.insert(SEC_WEBSOCKET_PROTOCOL, v);
            }
        }
        if let Some(origin) = self.origin {
            headers.insert(header::ORIGIN, origin);
        }
        if let Some(ext) = &self.extensions {
            headers.insert(SEC_WEBSOCKET_EXTENSIONS, ext.clone());
        }
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        let target = self
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        write_headers(&headers, &mut out);
        let handshake = ClientHandshake {
            expected_accept: accept_key(key.as_bytes()),
            protocols: self.protocols,
            extensions_offered: self.extensions.is_some(),
            limits: self.limits,
        };
        (out, handshake)
    }
}

/// A client waiting for the server's answer.
///
/// ```
/// use ws_proto::handshake::ClientRequest;
/// let (_, pending) = ClientRequest::new("ws://a/".parse().unwrap()).unwrap().into_handshake();
/// let (head, len) = pending.parse_response_head(b"HTTP/1.1 403 Forbidden\r\n\r\n").unwrap().unwrap();
/// assert_eq!(len, 26);
/// assert!(pending.validate(head).is_err()); // not 101
/// ```
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    expected_accept: String,
    protocols: Vec<String>,
    extensions_offered: bool,
    limits: Limits,
}

impl ClientHandshake {
    /// Parse the response head from the start of `buf`; `Ok(None)` while
    /// incomplete, else the response and the length of its head. Bytes after
    /// the head of a 101 are the first WebSocket bytes; after another status
    /// they are its body.
    pub fn parse_response_head(
        &self,
        buf: &[u8],
    ) -> Result<Option<(http::Response<()>, usize)>, HandshakeError> {
        with_header_slots(self.limits.max_headers, |headers| {
            let mut resp = httparse::Response::new(headers);
            // As for requests: look at no more than the limit.
            let status = resp.parse(&buf[..buf.len().min(self.limits.max_head_bytes)]);
            let Some(len) = check_partial(status, buf.len(), &self.limits)? else {
                return Ok(None);
            };
            let code = StatusCode::from_u16(resp.code.unwrap_or_default())
                .map_err(|_| HandshakeError::Malformed(httparse::Error::Status))?;
            let mut response = http::Response::new(());
            *response.status_mut() = code;
            *response.version_mut() = match resp.version {
                Some(0) => Version::HTTP_10,
                _ => Version::HTTP_11,
            };
            *response.headers_mut() = to_header_map(&buf[..len], resp.headers)?;
            Ok(Some((response, len)))
        })
    }

    /// Validate the response (§4.1, the client's checks of the server's
    /// handshake). A status other than 101 is [`HandshakeError::Refused`].
    pub fn validate(
        &self,
        response: http::Response<()>,
    ) -> Result<UpgradeResponse, HandshakeError> {
        // Item 1: the status code must be 101.
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(HandshakeError::Refused(Box::new(response)));
        }
        let headers = response.headers();
        // Items 2 and 3: Upgrade "websocket" and Connection "Upgrade".
        if !has_token(headers, &header::UPGRADE, "websocket") {
            return Err(HandshakeError::InvalidHeader("Upgrade"));
        }
        if !has_token(headers, &header::CONNECTION, "upgrade") {
            return Err(HandshakeError::InvalidHeader("Connection"));
        }
        // Item 4: the exact accept value.
        let accept = super::single(headers, &SEC_WEBSOCKET_ACCEPT, "sec-websocket-accept")?;
        if accept != self.expected_accept {
            return Err(HandshakeError::AcceptMismatch);
        }
        // Item 5: no extension we did not offer. The caller that offered
        // extensions checks the answer's parameters itself.
        let extensions = strict_tokens(
            headers,
            &SEC_WEBSOCKET_EXTENSIONS,
            "Sec-WebSocket-Extensions",
        )?;
        if let (Some(first), false) = (extensions.first(), self.extensions_offered) {
            return Err(HandshakeError::UnofferedExtension(first.clone()));
        }
        // Item 6: one subprotocol, and one we offered.
        let mut protocols =
            strict_tokens(headers, &SEC_WEBSOCKET_PROTOCOL, "Sec-WebSocket-Protocol")?;
        let protocol = match protocols.len() {
            0 => None,
            1 => {
                let p = protocols.remove(0);
                if !self.protocols.contains(&p) {
                    return Err(HandshakeError::UnofferedProtocol(p));
                }
                Some(p)
            }
            _ => return Err(HandshakeError::InvalidHeader("Sec-WebSocket-Protocol")),
        };
        Ok(UpgradeResponse { response, protocol })
    }

    /// The subprotocols offered.
    pub fn offered_protocols(&self) -> &[String] {
        &self.protocols
    }
}

/// The server's accepted answer.
///
/// ```
/// use ws_proto::handshake::{parse_request_head, Accept, ClientRequest, Limits, UpgradeRequest};
/// let (request, pending) = ClientRequest::new("ws://a/".parse().unwrap()).unwrap().protocol("chat").into_handshake();
/// let (head, _) = parse_request_head(&request, &Limits::default()).unwrap().unwrap();
/// let response = UpgradeRequest::from_http(&head).unwrap().accept(&Accept::default().protocol("chat")).unwrap();
/// let accepted = pending.validate(response).unwrap();
/// assert_eq!(accepted.protocol(), Some("chat"));
/// ```
#[derive(Debug, Clone)]
pub struct UpgradeResponse {
    response: http::Response<()>,
    protocol: Option<String>,
}

impl UpgradeResponse {
    /// The response head.
    pub fn response(&self) -> &http::Response<()> {
        &self.response
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The subprotocol the server chose.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The `Sec-WebSocket-Extensions` answer, if any.
    pub fn extensions(&self) -> Option<&HeaderValue> {
        self.response.headers().get(SEC_WEBSOCKET_EXTENSIONS)
    }
}
