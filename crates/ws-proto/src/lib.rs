//! A sans-I/O WebSocket protocol core (RFC 6455).
//!
//! This crate has no networking code and reads no clock. The caller feeds it
//! received bytes and takes out events and the bytes to write; timeouts,
//! sockets and tasks belong to the I/O layer on top (`ws-net` for tokio).
//! That keeps the protocol deterministic, testable without sockets, and
//! usable with any runtime.
//!
//! - [`handshake`]: the opening handshake for both roles (§4).
//! - [`Connection`]: the state machine of an open connection, one per
//!   WebSocket and either [`Role`]: framing, masking, fragmentation, control
//!   frames, the closing handshake, UTF-8 validation and size limits.
//! - [`frame`]: the header codec, masking and close codes underneath.
//!
//! ```
//! use bytes::Buf;
//! use ws_proto::{Connection, Event, Message, Role};
//!
//! let mut server = Connection::new(Role::Server, Default::default());
//! // A masked "Hello" from a client (RFC 6455 §5.7).
//! server.receive_data(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
//! let Some(Event::Message(msg)) = server.poll_event().unwrap() else { panic!() };
//! assert_eq!(msg, Message::text("Hello"));
//! server.send(msg).unwrap(); // echo it
//! assert_eq!(server.transmit().chunk(), &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
//! ```
// One function may use `unsafe`: `Utf8Bytes::as_str`, which hands out the
// text a `Utf8Bytes` was built from valid UTF-8 without checking it again
// (its safety argument is there). Checking it on every call cost a JSON-RPC
// server, which reads a request's text three times, 4 % of its
// instructions per call; and an application reading a large text message
// as `&str` paid a full pass over it each time.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod connection;
pub mod deflate;
mod error;
pub mod frame;
pub mod handshake;
mod message;
pub mod utf8;

pub use config::Config;
pub use connection::{
    CloseInfo, Connection, Event, Initiator, PreparedMessage, Role, SendBuf, State,
};
pub use error::{HandshakeError, ProtocolError, SendError};
pub use frame::{CloseCode, CloseFrame};
pub use message::{DataKind, Fragment, Message};
pub use utf8::Utf8Bytes;

/// Re-exported so users need not depend on `bytes` and `http` themselves.
pub use bytes;
pub use http;
