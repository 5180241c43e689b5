//! Close codes and the close frame body (RFC 6455 §5.5.1, §7.4).

use std::fmt;

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::utf8::Utf8Bytes;

/// A close status code (RFC 6455 §7.4).
///
/// ```
/// use ws_proto::CloseCode;
/// assert_eq!(CloseCode::NORMAL.as_u16(), 1000);
/// assert!(CloseCode::from(4000).is_sendable());
/// assert!(!CloseCode::from(1005).is_sendable()); // reserved for "no status"
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present. Never sent on the wire.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection closed without a close frame. Never sent on the wire.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: data inconsistent with the message type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: the message violates the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: the message is too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: an unexpected condition on the server.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: service restart (IANA registry).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: bad gateway (IANA registry).
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: TLS handshake failure. Never sent on the wire.
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// The numeric value.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether this code may appear in a close frame on the wire.
    ///
    /// §7.4.1 defines 1000-1003 and 1007-1011; the IANA registry (§11.7) adds
    /// 1012-1014; 3000-3999 are registered for libraries and frameworks and
    /// 4000-4999 are private. 1004 is reserved; 1005, 1006 and 1015 must not
    /// be sent; everything below 1000 and in 1016-2999 is unassigned or
    /// reserved for the standard, and 5000 and up is undefined.
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The body of a close frame: a status code and a UTF-8 reason of at most
/// 123 bytes (§5.5.1: a control frame carries at most 125 bytes, two of which
/// are the code).
///
/// ```
/// use ws_proto::{CloseCode, CloseFrame};
/// let frame = CloseFrame::new(CloseCode::GOING_AWAY, "server restart");
/// assert_eq!(frame.code, CloseCode::GOING_AWAY);
/// assert_eq!(frame.reason.as_str(), "server restart");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, possibly empty.
    pub reason: Utf8Bytes,
}

/// Largest close reason in bytes.
pub const MAX_CLOSE_REASON: usize = 123;

impl CloseFrame {
    /// A close frame with the given code and reason.
    pub fn new(code: CloseCode, reason: impl Into<Utf8Bytes>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// Parse a received close payload (§5.5.1).
    ///
    /// An empty payload is a close without a status (`Ok(None)`). One byte is
    /// a protocol error; a code that may not be sent is a protocol error
    /// (§7.4); a reason that is not UTF-8 is invalid payload data (§8.1).
    pub fn parse(payload: Bytes) -> Result<Option<Self>, ProtocolError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ProtocolError::InvalidCloseLength),
            _ => {
                let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_sendable() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason = Utf8Bytes::try_from(payload.slice(2..))
                    .map_err(|_| ProtocolError::InvalidCloseReason)?;
                Ok(Some(Self { code, reason }))
            }
        }
    }

    /// The encoded payload in a fixed array, without allocating: the code,
    /// then the reason cut to the last whole character within
    /// [`MAX_CLOSE_REASON`] bytes (§5.5 limits control payloads to 125
    /// bytes, and §5.5.1 wants the reason UTF-8). Returns the array and the
    /// payload's length.
    pub(crate) fn encode(&self) -> ([u8; 2 + MAX_CLOSE_REASON], usize) {
        let mut out = [0u8; 2 + MAX_CLOSE_REASON];
        out[..2].copy_from_slice(&self.code.0.to_be_bytes());
        let n = utf8_cut(&self.reason, MAX_CLOSE_REASON);
        out[2..2 + n].copy_from_slice(&self.reason.as_bytes()[..n]);
        (out, 2 + n)
    }
}

/// The length of the longest prefix of `s` that is at most `max` bytes and
/// ends on a character boundary.
pub(crate) fn utf8_cut(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};

    use super::*;

    #[test]
    fn autobahn_7_7_valid_codes() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            let mut p = BytesMut::new();
            p.put_u16(code);
            let f = CloseFrame::parse(p.freeze()).unwrap().unwrap();
            assert_eq!(f.code.as_u16(), code);
        }
    }

    #[test]
    fn autobahn_7_9_invalid_codes() {
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let mut p = BytesMut::new();
            p.put_u16(code);
            let err = CloseFrame::parse(p.freeze()).unwrap_err();
            assert_eq!(err, ProtocolError::InvalidCloseCode(code));
            assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn one_byte_payload_is_protocol_error() {
        let err = CloseFrame::parse(Bytes::from_static(&[0x03])).unwrap_err();
        assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn invalid_reason_is_1007() {
        let err = CloseFrame::parse(Bytes::from_static(&[0x03, 0xe8, 0xff])).unwrap_err();
        assert_eq!(err, ProtocolError::InvalidCloseReason);
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn empty_payload_has_no_status() {
        assert_eq!(CloseFrame::parse(Bytes::new()).unwrap(), None);
    }

    #[test]
    fn encodes_code_then_reason() {
        for reason in ["", "bye", &"é".repeat(61), &"r".repeat(MAX_CLOSE_REASON)] {
            let frame = CloseFrame::new(CloseCode::GOING_AWAY, reason.to_owned());
            let (body, n) = frame.encode();
            let mut expect = 1001u16.to_be_bytes().to_vec();
            expect.extend_from_slice(reason.as_bytes());
            assert_eq!(&body[..n], &expect[..]);
            let parsed = CloseFrame::parse(Bytes::copy_from_slice(&body[..n])).unwrap();
            assert_eq!(parsed, Some(frame));
        }
        // A longer reason is cut to whole characters, not a panic.
        let long = CloseFrame::new(CloseCode::NORMAL, "x".repeat(300));
        assert_eq!(long.encode().1, 2 + MAX_CLOSE_REASON);
        let long = CloseFrame::new(CloseCode::NORMAL, "é".repeat(100));
        let (body, n) = long.encode();
        assert_eq!(n, 2 + 122);
        assert_eq!(std::str::from_utf8(&body[2..n]).unwrap(), "é".repeat(61));
    }
}
