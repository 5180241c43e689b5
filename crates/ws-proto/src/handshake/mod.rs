//! The opening handshake (RFC 6455 §4), pure functions over bytes.
//!
//! Server: [`parse_request_head`] reads a request head from bytes as they
//! arrive, [`UpgradeRequest::from_http`] validates it (and is also the entry
//! point for a request already parsed by another HTTP stack; a server that
//! parsed it itself keeps it with [`UpgradeRequest::from_request`]), then
//! [`UpgradeRequest::accept`] (or [`UpgradeRequest::accept_bytes`], the same
//! answer serialized) or [`reject`] produce the answer.
//!
//! Client: [`ClientRequest`] builds the request, and the [`ClientHandshake`]
//! it returns reads and validates the server's answer.

mod client;
mod server;

pub use client::{ClientHandshake, ClientRequest, UpgradeResponse};
pub use server::{
    error_refusal, parse_request_head, refusal, reject, reject_error, write_response, Accept,
    UpgradeRequest,
};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};
use sha1::{Digest, Sha1};

use crate::error::HandshakeError;

/// The GUID of §1.3 that the accept value is derived with.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The header `Sec-WebSocket-Key`.
pub const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
/// The header `Sec-WebSocket-Accept`.
pub const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");
/// The header `Sec-WebSocket-Version`.
pub const SEC_WEBSOCKET_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");
/// The header `Sec-WebSocket-Protocol`.
pub const SEC_WEBSOCKET_PROTOCOL: HeaderName = HeaderName::from_static("sec-websocket-protocol");
/// The header `Sec-WebSocket-Extensions`.
pub const SEC_WEBSOCKET_EXTENSIONS: HeaderName =
    HeaderName::from_static("sec-websocket-extensions");

/// The `Sec-WebSocket-Accept` value for a key (§4.2.2 item 5.4): base64 of
/// the SHA-1 of the key followed by the GUID.
///
/// ```
/// // RFC 6455 §1.3
/// assert_eq!(
///     ws_proto::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let value = accept_value(key);
    // Base64 is ASCII.
    String::from_utf8_lossy(&value).into_owned()
}

/// [`accept_key`] into a fixed array: base64 of a 20-byte digest is 28
/// bytes, so no allocation is needed.
pub(crate) fn accept_value(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    let mut out = [0u8; 28];
    // 20 bytes encode to exactly 28 with padding: the slice always fits.
    let n = BASE64
        .encode_slice(sha.finalize(), &mut out)
        .unwrap_or_default();
    debug_assert_eq!(n, out.len());
    out
}

/// A fresh `Sec-WebSocket-Key`: 16 bytes from a CSPRNG, base64 (§4.1).
pub fn generate_key() -> String {
    let nonce: [u8; 16] = rand::random();
    BASE64.encode(nonce)
}

/// Limits on a handshake head, against peers that send endless headers.
///
/// ```
/// let mut limits = ws_proto::handshake::Limits::default();
/// limits.max_head_bytes = 4096;
/// assert_eq!(limits.max_headers, 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest request or response head, request line and headers included
    /// (default 16 KiB). Beyond it: [`HandshakeError::HeadTooLarge`], 431.
    pub max_head_bytes: usize,
    /// Most header fields (default 64). Beyond it:
    /// [`HandshakeError::TooManyHeaders`], 431.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// Whether any value of header `name` holds `token` in its comma-separated
/// list, compared case-insensitively (§4.2.1 items 3 and 4).
pub(crate) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    // On bytes: a value with obs-text elsewhere in its list still carries
    // the token, and skipping the UTF-8 check keeps the hot handshake
    // path short.
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Every comma-separated token of every value of `name`, trimmed, empty ones
/// dropped.
pub(crate) fn tokens(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(list_items)
        .collect()
}

/// The comma-separated items of one header value, trimmed, empty ones
/// dropped.
fn list_items(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// Like [`tokens`], for a header the client must understand: a value that
/// is not visible ASCII fails with [`HandshakeError::InvalidHeader`]
/// instead of being skipped, since skipping it could hide an extension or
/// subprotocol the server selected (§4.1, the client's items 5 and 6).
pub(crate) fn strict_tokens(
    headers: &HeaderMap,
    name: &HeaderName,
    label: &'static str,
) -> Result<Vec<String>, HandshakeError> {
    let mut out = Vec::new();
    for value in headers.get_all(name) {
        let value = value
            .to_str()
            .map_err(|_| HandshakeError::InvalidHeader(label))?;
        out.extend(list_items(value));
    }
    Ok(out)
}

/// The single value of header `name` as a trimmed string.
pub(crate) fn single<'a>(
    headers: &'a HeaderMap,
    header: &HeaderName,
    name: &'static str,
) -> Result<&'a str, HandshakeError> {
    let mut values = headers.get_all(header).iter();
    let value = values.next().ok_or(HandshakeError::MissingHeader(name))?;
    if values.next().is_some() {
        return Err(HandshakeError::InvalidHeader(name));
    }
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| HandshakeError::InvalidHeader(name))
}

/// Copy httparse's headers, parsed from `head`, into a `HeaderMap`.
///
/// The head is copied once and every value is a slice of that copy, rather
/// than one allocation per value (a browser sends a dozen headers). A value
/// kept on its own keeps that copy alive: at most
/// [`Limits::max_head_bytes`].
pub(crate) fn to_header_map(
    head: &[u8],
    parsed: &[httparse::Header<'_>],
) -> Result<HeaderMap, HandshakeError> {
    let shared = Bytes::copy_from_slice(head);
    let base = head.as_ptr() as usize;
    let mut map = HeaderMap::with_capacity(parsed.len());
    for h in parsed {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HandshakeError::Malformed(httparse::Error::HeaderName))?;
        // httparse's values are slices of `head`; the offset is computed,
        // and checked, rather than trusted.
        let start = (h.value.as_ptr() as usize).wrapping_sub(base);
        let value = match start.checked_add(h.value.len()) {
            _ if h.value.is_empty() => Ok(HeaderValue::from_static("")),
            Some(end) if end <= shared.len() => {
                HeaderValue::from_maybe_shared(shared.slice(start..end))
            }
            _ => HeaderValue::from_bytes(h.value),
        }
        .map_err(|_| HandshakeError::Malformed(httparse::Error::HeaderValue))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Run `f` with `max` empty header slots for httparse: on the stack for the
/// default limit, on the heap for a larger configured one.
pub(crate) fn with_header_slots<'b, R>(
    max: usize,
    f: impl FnOnce(&mut [httparse::Header<'b>]) -> R,
) -> R {
    let mut on_stack = [httparse::EMPTY_HEADER; 64];
    if max <= on_stack.len() {
        f(&mut on_stack[..max])
    } else {
        f(&mut vec![httparse::EMPTY_HEADER; max])
    }
}

/// Map an httparse result for a head of `buf.len()` bytes so far, applying
/// the size limit to heads still incomplete.
pub(crate) fn check_partial(
    status: Result<httparse::Status<usize>, httparse::Error>,
    buf_len: usize,
    limits: &Limits,
) -> Result<Option<usize>, HandshakeError> {
    match status {
        Ok(httparse::Status::Complete(n)) if n <= limits.max_head_bytes => Ok(Some(n)),
        Ok(httparse::Status::Complete(_)) => Err(HandshakeError::HeadTooLarge {
            limit: limits.max_head_bytes,
        }),
        Ok(httparse::Status::Partial) if buf_len > limits.max_head_bytes => {
            Err(HandshakeError::HeadTooLarge {
                limit: limits.max_head_bytes,
            })
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::TooManyHeaders {
            limit: limits.max_headers,
        }),
        Err(e) => Err(HandshakeError::Malformed(e)),
    }
}

/// Serialize a head: status or request line already in `out`, then headers
/// and the blank line.
pub(crate) fn write_headers(headers: &HeaderMap, out: &mut Vec<u8>) {
    for (name, value) in headers {
        write_field(name, value, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// Serialize one header field line.
pub(crate) fn write_field(name: &HeaderName, value: &HeaderValue, out: &mut Vec<u8>) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
