//! Error types.
//!
//! Each layer has a small error type whose variants say what happened:
//! [`ProtocolError`] for what a peer sent on an open connection (each variant
//! maps to the close code the peer gets, [`ProtocolError::close_code`]),
//! [`HandshakeError`] for the opening handshake (each maps to an HTTP status
//! on the server side, [`HandshakeError::status`]), and [`SendError`] for a
//! message the caller may not send now.

use http::StatusCode;

use crate::frame::CloseCode;

/// Why an open connection failed: the peer broke a rule of RFC 6455 or a
/// limit of ours, the transport ended without a closing handshake, or a
/// timer ran out. The peer gets a close frame with
/// [`close_code`](Self::close_code) where one can still be sent.
///
/// ```
/// use ws_proto::{CloseCode, Connection, ProtocolError, Role};
/// let mut server = Connection::new(Role::Server, Default::default());
/// server.receive_data(&[0x81, 0x01, b'x']); // unmasked: clients must mask
/// let err = server.poll_event().unwrap_err();
/// assert_eq!(err, ProtocolError::UnmaskedFrame);
/// assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A reserved opcode (0x3-0x7, 0xB-0xF), §5.2.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// An RSV bit was set that no negotiated extension defines, §5.2.
    #[error("reserved bits {0:#05b} set without a negotiated extension")]
    ReservedBits(u8),
    /// The most significant bit of a 64-bit payload length was set, §5.2.
    #[error("payload length has its most significant bit set")]
    InvalidLength,
    /// A control frame without FIN, §5.5.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload, §5.5.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(u64),
    /// A server received an unmasked frame, §5.1.
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// A client received a masked frame, §5.1.
    #[error("server frame is masked")]
    MaskedFrame,
    /// A continuation frame with no message to continue, §5.4.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new data frame while a fragmented message was in progress, §5.4.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A close frame with a one-byte payload, §5.5.1.
    #[error("close frame payload of one byte")]
    InvalidCloseLength,
    /// A close code that may not be sent, §7.4.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A close reason that is not UTF-8, §5.5.1.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// A text message that is not UTF-8, §8.1.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A frame larger than [`Config::max_frame_size`](crate::Config::max_frame_size).
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooBig {
        /// Announced payload length.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A message larger than [`Config::max_message_size`](crate::Config::max_message_size).
    #[error("message of at least {size} bytes exceeds the limit of {max}")]
    MessageTooBig {
        /// Size reached so far.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// The peer made us queue more control replies (pongs) than the write
    /// buffer limit allows without reading them.
    #[error("peer does not read: {queued} bytes of replies queued")]
    WriteBufferFull {
        /// Bytes waiting to be written.
        queued: usize,
    },
    /// A compressed message could not be inflated (RFC 7692 §6.2).
    #[error("invalid compressed data: {0}")]
    InvalidCompressedData(String),
    /// The transport ended without a closing handshake (§7.1.5, code 1006).
    #[error("connection closed without a closing handshake")]
    AbnormalClosure,
    /// Nothing came back from the peer within
    /// [`Config::ping_timeout`](crate::Config::ping_timeout) of a keepalive
    /// ping: the peer is gone. No close frame is sent (code 1006).
    #[error("keepalive timeout: no answer to ping")]
    KeepaliveTimeout,
    /// The closing handshake did not finish within
    /// [`Config::close_timeout`](crate::Config::close_timeout): the
    /// transport is to be dropped (code 1006).
    #[error("closing handshake timed out")]
    CloseTimeout,
}

impl ProtocolError {
    /// The close code the peer gets for this error (§7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason | Self::InvalidCompressedData(_) => {
                CloseCode::INVALID_PAYLOAD
            }
            Self::FrameTooBig { .. } | Self::MessageTooBig { .. } => CloseCode::MESSAGE_TOO_BIG,
            Self::WriteBufferFull { .. } => CloseCode::POLICY_VIOLATION,
            Self::AbnormalClosure | Self::KeepaliveTimeout | Self::CloseTimeout => {
                CloseCode::ABNORMAL
            }
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// Whether the byte stream can still be read as frames after this error
    /// (the error was in a payload, not in the framing).
    pub(crate) fn framing_intact(&self) -> bool {
        matches!(
            self,
            Self::InvalidUtf8
                | Self::InvalidCloseReason
                | Self::InvalidCloseCode(_)
                | Self::InvalidCloseLength
                | Self::UnexpectedContinuation
                | Self::ExpectedContinuation
                | Self::InvalidCompressedData(_)
        )
    }
}

/// The opening handshake failed (§4).
///
/// ```
/// use ws_proto::handshake::{parse_request_head, Limits, UpgradeRequest};
/// let (head, _) = parse_request_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &Limits::default())
///     .unwrap()
///     .unwrap();
/// let err = UpgradeRequest::from_http(&head).unwrap_err();
/// assert_eq!(err.status(), 400); // a plain GET, not an upgrade
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request or response head is larger than the configured limit.
    #[error("handshake head exceeds {limit} bytes")]
    HeadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// More header fields than the configured limit.
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// The head is not valid HTTP.
    #[error("malformed HTTP: {0}")]
    Malformed(httparse::Error),
    /// The request method is not GET (§4.2.1 item 1).
    #[error("method {0} is not GET")]
    MethodNotGet(String),
    /// The HTTP version is older than 1.1 (§4.2.1 item 1).
    #[error("HTTP version older than 1.1")]
    HttpVersion,
    /// A plain HTTP request, not a WebSocket upgrade (no `Upgrade: websocket`).
    #[error("not a WebSocket upgrade request")]
    NotUpgrade,
    /// A required header is missing.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header has a value that is not allowed.
    #[error("invalid value in header {0}")]
    InvalidHeader(&'static str),
    /// `Sec-WebSocket-Key` does not decode to 16 bytes (§4.2.1 item 5).
    #[error("Sec-WebSocket-Key is not 16 bytes in base64")]
    InvalidKey,
    /// `Sec-WebSocket-Version` is not 13 (§4.2.1 item 6).
    #[error("unsupported WebSocket version {0:?}")]
    UnsupportedVersion(String),
    /// The server refused the upgrade: it answered with a status other
    /// than 101 (§4.1).
    #[error("server refused the upgrade with status {}", .0.status())]
    Refused(Box<http::Response<()>>),
    /// `Sec-WebSocket-Accept` does not match our key (§4.1 item 4).
    #[error("Sec-WebSocket-Accept does not match the key")]
    AcceptMismatch,
    /// The server chose a subprotocol we did not offer (§4.1 item 6).
    #[error("server chose subprotocol {0:?} that was not offered")]
    UnofferedProtocol(String),
    /// The server named an extension we did not offer (§4.1 item 5).
    #[error("server answered with extension {0:?} that was not offered")]
    UnofferedExtension(String),
    /// The caller's accept decision chose a subprotocol the client did not
    /// offer.
    #[error("subprotocol {0:?} was not offered by the client")]
    ProtocolNotOffered(String),
    /// The caller supplied a header name or value that is not valid HTTP.
    #[error("invalid header supplied by the caller")]
    InvalidCallerHeader,
    /// The request target is not a valid URI.
    #[error("invalid request target")]
    InvalidUri,
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::HeadTooLarge { .. } | Self::TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::MethodNotGet(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::HttpVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Self::UnsupportedVersion(_) => StatusCode::UPGRADE_REQUIRED,
            Self::ProtocolNotOffered(_) | Self::InvalidCallerHeader => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A message that cannot be sent now.
///
/// ```
/// use ws_proto::{Connection, Message, Role, SendError};
/// let mut conn = Connection::new(Role::Server, Default::default());
/// conn.close(None).unwrap();
/// assert_eq!(conn.send(Message::text("late")), Err(SendError::Closed));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// We already sent a close frame; nothing may follow it (§5.5.1).
    #[error("the connection is closing or closed")]
    Closed,
    /// A ping or pong payload over 125 bytes (§5.5).
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(usize),
    /// A close reason over 123 bytes (§5.5.1).
    #[error("close reason of {0} bytes exceeds 123")]
    ReasonTooLong(usize),
    /// A close code that may not be sent (§7.4).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// A new message was started while a fragmented one is unfinished.
    #[error("a fragmented message is in progress")]
    FragmentInProgress,
}
