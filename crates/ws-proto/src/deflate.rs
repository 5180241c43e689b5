//! permessage-deflate (RFC 7692): negotiation and the per-message codec.
//!
//! Negotiation is pure: [`server_negotiate`] picks the first acceptable
//! offer and builds the answer, [`client_offer`] builds a client's offer
//! and [`client_accept`] checks the server's answer. The result,
//! [`Negotiated`], is handed to
//! [`Connection::set_deflate`](crate::Connection::set_deflate).
//!
//! Compression and decompression contexts are allocated when first used,
//! and released after each message when context takeover is off, so an
//! idle connection without context takeover holds no zlib memory.
//!
//! zlib cannot compress with an 8-bit window (256 bytes). When the peer
//! limits our window to 8 bits we accept, and send our messages
//! uncompressed, which §6 always allows. We inflate with a 15-bit window,
//! which reads what any smaller window produced.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http::HeaderValue;

use crate::error::HandshakeError;

/// The extension token (§7).
pub const EXTENSION: &str = "permessage-deflate";

/// What one side is willing to negotiate, and how it compresses.
///
/// The `server_*`/`client_*` fields are as RFC 7692 names them: a server
/// uses them to answer, a client to offer.
///
/// ```
/// let mut config = ws_proto::deflate::DeflateConfig::default();
/// config.client_no_context_takeover = true; // peers compress each message alone
/// config.threshold = 128;
/// assert_eq!(config.server_max_window_bits, 15);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// The server compresses each message alone (default off). Saves the
    /// server's compression memory between messages.
    pub server_no_context_takeover: bool,
    /// The client compresses each message alone (default off).
    pub client_no_context_takeover: bool,
    /// Largest window the server compresses with, 8-15 (default 15).
    pub server_max_window_bits: u8,
    /// Largest window the client compresses with, 8-15 (default 15).
    pub client_max_window_bits: u8,
    /// zlib level 0-9 (default 1: most of the gain for JSON-like text at a
    /// fraction of the CPU of higher levels).
    pub level: u32,
    /// Messages shorter than this are sent uncompressed (default 32 bytes).
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 1,
            threshold: 32,
        }
    }
}

/// The agreed parameters of one connection, from our side.
///
/// ```
/// use ws_proto::deflate::{server_negotiate, DeflateConfig};
/// let (_, agreed) = server_negotiate(["permessage-deflate; server_no_context_takeover"], &DeflateConfig::default()).unwrap();
/// assert!(agreed.local_no_context_takeover);
/// let mut conn = ws_proto::Connection::new(ws_proto::Role::Server, Default::default());
/// conn.set_deflate(agreed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// We reset our compressor after each message.
    pub local_no_context_takeover: bool,
    /// The peer resets its compressor after each message.
    pub remote_no_context_takeover: bool,
    /// Our compressor's window bits (8 means we send uncompressed).
    pub local_max_window_bits: u8,
    /// The peer's compressor's window bits.
    pub remote_max_window_bits: u8,
    /// zlib level.
    pub level: u32,
    /// Messages shorter than this are sent uncompressed.
    pub threshold: usize,
}

/// One parsed extension: its name and parameters (values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// The extension token.
    pub name: String,
    /// `(name, value)` pairs in order.
    pub params: Vec<(String, Option<String>)>,
}

/// Parse `Sec-WebSocket-Extensions` values (RFC 6455 §9.1): a comma list of
/// extensions, each with `;`-separated parameters whose values may be
/// tokens or quoted strings. Returns `None` if the syntax is broken.
///
/// ```
/// let offers = ws_proto::deflate::parse_extensions(
///     ["permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=\"10\""],
/// ).unwrap();
/// assert_eq!(offers.len(), 2);
/// assert_eq!(offers[1].params[0], ("server_max_window_bits".into(), Some("10".into())));
/// ```
pub fn parse_extensions<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Option<Vec<ExtensionOffer>> {
    let mut out = Vec::new();
    for value in values {
        for item in split_outside_quotes(value, ',')? {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let mut parts = split_outside_quotes(item, ';')?.into_iter();
            let name = parts.next()?.trim();
            if !is_token(name) {
                return None;
            }
            let mut params = Vec::new();
            for p in parts {
                let p = p.trim();
                let (k, v) = match p.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
                    None => (p, None),
                };
                if !is_token(k) {
                    return None;
                }
                params.push((k.to_ascii_lowercase(), v));
            }
            out.push(ExtensionOffer {
                name: name.to_ascii_lowercase(),
                params,
            });
        }
    }
    Some(out)
}

fn split_outside_quotes(s: &str, sep: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    parts.push(&s[start..]);
    Some(parts)
}

fn unquote(v: &str) -> Option<String> {
    let inner = match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => return is_token(v).then(|| v.to_owned()),
    };
    let mut out = String::new();
    let mut escaped = false;
    for c in inner.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            c => {
                out.push(c);
                escaped = false;
            }
        }
    }
    // §9.1: a quoted value must be a token once unescaped.
    is_token(&out).then_some(out)
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Window bits: a decimal 8-15 without leading zeros (§7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    match v.parse::<u8>() {
        Ok(n @ 8..=15) if !v.starts_with('0') => Some(n),
        _ => None,
    }
}

/// The parameters of one permessage-deflate offer or answer.
#[derive(Debug, Default)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

/// Read the parameters, rejecting unknown names, bad values and
/// duplicates (§7).
fn read_params(params: &[(String, Option<String>)], offer: bool) -> Option<Params> {
    let mut p = Params::default();
    let mut seen = Vec::with_capacity(params.len());
    for (name, value) in params {
        if seen.contains(&name.as_str()) {
            return None;
        }
        seen.push(name.as_str());
        match (name.as_str(), value.as_deref()) {
            ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => p.server_max_window_bits = Some(window_bits(v)?),
            ("client_max_window_bits", None) if offer => p.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => {
                p.client_max_window_bits = Some(Some(window_bits(v)?))
            }
            _ => return None,
        }
    }
    Some(p)
}

/// Server side: accept the first acceptable permessage-deflate offer among
/// the `Sec-WebSocket-Extensions` values, within `config` (§5, §7.1).
/// Other extensions are ignored; an offer with an unknown or invalid
/// parameter is declined and the next one tried. Returns the answer header
/// and the agreed parameters, or `None` to go without compression.
///
/// ```
/// use ws_proto::deflate::{server_negotiate, DeflateConfig};
/// let (answer, agreed) = server_negotiate(
///     ["x-unknown, permessage-deflate; foo, permessage-deflate; server_max_window_bits=10; client_max_window_bits"],
///     &DeflateConfig::default(),
/// ).unwrap();
/// assert_eq!(answer, "permessage-deflate; server_max_window_bits=10");
/// assert_eq!(agreed.local_max_window_bits, 10);
/// ```
pub fn server_negotiate<'a>(
    offers: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Option<(HeaderValue, Negotiated)> {
    let offers = parse_extensions(offers)?;
    for offer in offers.iter().filter(|o| o.name == EXTENSION) {
        let Some(p) = read_params(&offer.params, true) else {
            continue;
        };
        let mut answer = String::from(EXTENSION);
        let server_nct = p.server_no_context_takeover || config.server_no_context_takeover;
        if server_nct {
            answer.push_str("; server_no_context_takeover");
        }
        let client_nct = p.client_no_context_takeover || config.client_no_context_takeover;
        if client_nct {
            answer.push_str("; client_no_context_takeover");
        }
        let ours = clamp_bits(config.server_max_window_bits);
        let server_bits = p
            .server_max_window_bits
            .map_or(ours, |asked| asked.min(ours));
        if p.server_max_window_bits.is_some() || server_bits < 15 {
            answer.push_str(&format!("; server_max_window_bits={server_bits}"));
        }
        // §7.1.2.2: only answer client_max_window_bits if it was offered.
        let client_bits = match p.client_max_window_bits {
            None => 15,
            Some(hint) => {
                let want = clamp_bits(config.client_max_window_bits);
                let bits = hint.map_or(want, |h| h.min(want));
                if bits < 15 || hint.is_some() {
                    answer.push_str(&format!("; client_max_window_bits={bits}"));
                }
                bits
            }
        };
        let header = HeaderValue::from_str(&answer).ok()?;
        return Some((
            header,
            Negotiated {
                local_no_context_takeover: server_nct,
                remote_no_context_takeover: client_nct,
                local_max_window_bits: server_bits,
                remote_max_window_bits: client_bits,
                level: config.level,
                threshold: config.threshold,
            },
        ));
    }
    None
}

fn clamp_bits(b: u8) -> u8 {
    b.clamp(8, 15)
}

/// Client side: the offer for `Sec-WebSocket-Extensions`.
///
/// ```
/// let offer = ws_proto::deflate::client_offer(&Default::default());
/// assert_eq!(offer, "permessage-deflate; client_max_window_bits");
/// ```
pub fn client_offer(config: &DeflateConfig) -> HeaderValue {
    let mut offer = String::from(EXTENSION);
    if config.server_no_context_takeover {
        offer.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        offer.push_str("; client_no_context_takeover");
    }
    let server_bits = clamp_bits(config.server_max_window_bits);
    if server_bits < 15 {
        offer.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    let client_bits = clamp_bits(config.client_max_window_bits);
    if client_bits < 15 {
        offer.push_str(&format!("; client_max_window_bits={client_bits}"));
    } else {
        offer.push_str("; client_max_window_bits");
    }
    HeaderValue::from_str(&offer).unwrap_or(HeaderValue::from_static(EXTENSION))
}

/// Client side: check the server's answer to [`client_offer`] (§7). `None`
/// answers mean no compression. Anything the offer did not allow fails the
/// handshake.
pub fn client_accept<'a>(
    answers: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Result<Option<Negotiated>, HandshakeError> {
    let bad = || HandshakeError::InvalidHeader("Sec-WebSocket-Extensions");
    let answers = parse_extensions(answers).ok_or_else(bad)?;
    let Some(first) = answers.first() else {
        return Ok(None);
    };
    if answers.len() > 1 || first.name != EXTENSION {
        return Err(HandshakeError::UnofferedExtension(first.name.clone()));
    }
    let p = read_params(&first.params, false).ok_or_else(bad)?;
    let offered_server = clamp_bits(config.server_max_window_bits);
    let server_bits = p.server_max_window_bits.unwrap_or(15);
    if config.server_no_context_takeover && !p.server_no_context_takeover {
        return Err(bad());
    }
    if server_bits > offered_server {
        return Err(bad());
    }
    let offered_client = clamp_bits(config.client_max_window_bits);
    let client_bits = match p.client_max_window_bits {
        Some(Some(b)) => b,
        _ => offered_client,
    };
    if client_bits > offered_client {
        return Err(bad());
    }
    Ok(Some(Negotiated {
        local_no_context_takeover: p.client_no_context_takeover
            || config.client_no_context_takeover,
        remote_no_context_takeover: p.server_no_context_takeover,
        local_max_window_bits: client_bits,
        remote_max_window_bits: server_bits,
        level: config.level,
        threshold: config.threshold,
    }))
}

/// Inflating failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The data is not DEFLATE.
    Corrupt(String),
    /// The output passed the cap.
    TooBig,
}

/// The compression state of one connection.
#[derive(Debug)]
pub(crate) struct Codec {
    params: Negotiated,
    compressor: Option<Box<Compress>>,
    decompressor: Option<Box<Decompress>>,
}

/// The tail every message's compressed data loses on the wire (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

impl Codec {
    pub(crate) fn new(params: Negotiated) -> Self {
        Self {
            params,
            compressor: None,
            decompressor: None,
        }
    }

    pub(crate) fn negotiated(&self) -> Negotiated {
        self.params
    }

    /// Compress a whole message (§7.2.1), or `None` to send it as is
    /// (below the threshold, or an 8-bit window we cannot produce).
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Option<Bytes> {
        let bits = self.params.local_max_window_bits;
        if payload.len() < self.params.threshold || bits < 9 {
            return None;
        }
        let level = Compression::new(self.params.level.min(9));
        let c = self
            .compressor
            .get_or_insert_with(|| Box::new(Compress::new_with_window_bits(level, false, bits)));
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let start = c.total_in();
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let done = (c.total_in() - start) as usize;
            if c.compress_vec(&payload[done..], &mut out, FlushCompress::Sync)
                .is_err()
            {
                self.compressor = None;
                return None;
            }
            let consumed = (c.total_in() - start) as usize == payload.len();
            if consumed && out.len() < out.capacity() {
                break;
            }
        }
        // §7.2.1: the data ends with an empty stored block whose last four
        // bytes are dropped. When zlib had nothing to emit (an empty message
        // right after a sync flush), that block is built by hand: its header
        // byte alone, 0x00 (§7.2.3.6).
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        } else if out.is_empty() {
            out.push(0x00);
        } else {
            self.compressor = None;
            return None;
        }
        if self.params.local_no_context_takeover {
            self.compressor = None;
        }
        Some(Bytes::from(out))
    }

    /// Inflate one frame's compressed payload into `out`, failing once
    /// `out` would pass `cap` bytes. With `last`, the message's tail is
    /// inflated too and the context is kept or dropped per negotiation.
    pub(crate) fn decompress(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        cap: usize,
    ) -> Result<(), InflateError> {
        let d = self
            .decompressor
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, 15)));
        let result = inflate(d, input, out, cap).and_then(|ended| {
            if last && !ended {
                inflate(d, &TAIL, out, cap).map(|_| ())
            } else {
                Ok(())
            }
        });
        if result.is_err() || (last && self.params.remote_no_context_takeover) {
            self.decompressor = None;
        }
        result
    }
}

/// Inflate all of `input`; returns whether the DEFLATE stream ended (a
/// block with BFINAL), after which the context starts afresh.
fn inflate(
    d: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    cap: usize,
) -> Result<bool, InflateError> {
    let start = d.total_in();
    loop {
        let done = (d.total_in() - start) as usize;
        if out.len() == out.capacity() {
            if out.len() > cap {
                return Err(InflateError::TooBig);
            }
            // Grow geometrically, never past one byte over the cap.
            let room = (cap + 1 - out.len()).min(out.capacity().max(input.len() * 2).max(4096));
            out.reserve_exact(room);
        }
        let before_out = out.len();
        let status = d
            .decompress_vec(&input[done..], out, FlushDecompress::Sync)
            .map_err(|e| InflateError::Corrupt(e.to_string()))?;
        if out.len() > cap {
            return Err(InflateError::TooBig);
        }
        let consumed = (d.total_in() - start) as usize == input.len();
        match status {
            Status::StreamEnd => {
                d.reset(false);
                return Ok(true);
            }
            _ if consumed && out.len() < out.capacity() => return Ok(false),
            _ if out.len() == before_out
                && (d.total_in() - start) as usize == done
                && out.len() < out.capacity() =>
            {
                // No progress with room to spare: the input is exhausted.
                return Ok(false);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
