//! Messages: what the application sends and receives.

use bytes::Bytes;

use crate::frame::CloseFrame;
use crate::utf8::Utf8Bytes;

/// A WebSocket message (RFC 6455 §5.6 data, §5.5 control).
///
/// Payloads are [`Bytes`], so a message can be sent to many connections
/// without copying it, and a large received message that arrived in one
/// frame is a view into the read buffer (no copy). A received payload of
/// 4 KiB or less is copied into an allocation of its own size, so keeping
/// messages (a chat history, a cache) costs what they hold, never the read
/// buffers they arrived in.
///
/// ```
/// use ws_proto::Message;
/// let m = Message::text("hello");
/// assert!(m.is_text());
/// assert_eq!(m.as_payload(), b"hello");
/// let m = Message::binary(vec![1, 2, 3]);
/// assert_eq!(m.len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message: valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping. A received ping has already been answered by the connection.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: `None` when it carried no status code. Receiving one
    /// means the peer started or answered the closing handshake.
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::Binary(data.into())
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }

    /// Whether this is a text or binary message.
    pub fn is_data(&self) -> bool {
        self.is_text() || self.is_binary()
    }

    /// Whether this is a ping, pong or close.
    pub fn is_control(&self) -> bool {
        !self.is_data()
    }

    /// Whether this is a close.
    pub fn is_close(&self) -> bool {
        matches!(self, Self::Close(_))
    }

    /// Payload length in bytes: the length of
    /// [`as_payload`](Self::as_payload) (for a close: of the reason).
    pub fn len(&self) -> usize {
        self.as_payload().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload bytes (for a close: the reason).
    pub fn as_payload(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) | Self::Ping(b) | Self::Pong(b) => b,
            Self::Close(None) => &[],
            Self::Close(Some(f)) => f.reason.as_bytes(),
        }
    }

    /// The payload (for a close: the reason).
    pub fn into_payload(self) -> Bytes {
        match self {
            Self::Text(t) => t.into_bytes(),
            Self::Binary(b) | Self::Ping(b) | Self::Pong(b) => b,
            Self::Close(None) => Bytes::new(),
            Self::Close(Some(f)) => f.reason.into_bytes(),
        }
    }

    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Self::text(s)
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Self::text(s)
    }
}

impl From<Utf8Bytes> for Message {
    fn from(s: Utf8Bytes) -> Self {
        Self::Text(s)
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Self::Binary(b)
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Self::binary(b)
    }
}

/// The type of a data message.
///
/// ```
/// use ws_proto::{DataKind, Fragment};
/// let piece = Fragment { kind: DataKind::Text, data: "he".into(), fin: false };
/// assert_eq!(piece.kind, DataKind::Text);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// UTF-8 text.
    Text,
    /// Binary data.
    Binary,
}

/// One frame's worth of a data message, delivered as it arrives when
/// [`Config::deliver_fragments`](crate::Config::deliver_fragments) is on.
///
/// The pieces of a message, concatenated, are the message. For text, each
/// piece has been validated so far, but a piece may end inside a code point.
///
/// ```
/// use ws_proto::{DataKind, Fragment};
/// let f = Fragment { kind: DataKind::Binary, data: bytes::Bytes::from_static(b"abc"), fin: true };
/// assert!(f.fin);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// The type of the message this piece belongs to.
    pub kind: DataKind,
    /// The piece.
    pub data: Bytes,
    /// Whether this is the last piece of the message.
    pub fin: bool,
}
