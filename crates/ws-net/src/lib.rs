//! tokio I/O for the [`ws_proto`] WebSocket core.
//!
//! - [`connect`] / [`ClientBuilder`]: open a `ws://` or `wss://` connection.
//! - [`server`]: accept connections on a `TcpListener` or any
//!   `AsyncRead + AsyncWrite`, with an accept callback that sees the
//!   request, or complete an upgrade parsed by another HTTP stack: the
//!   `hyper` feature does it for hyper 1.x (`ws_net::hyper::upgrade`), the
//!   `axum` feature with an axum extractor (`ws_net::axum::WebSocketUpgrade`),
//!   both off by default.
//! - [`WebSocket`]: a `Stream` of messages and a `Sink` of messages, with
//!   split halves ([`WsReader`], [`WsWriter`]); the writer is cloneable, so
//!   many tasks can send on one connection, and [`PreparedMessage`] sends
//!   one encoded frame to many connections.
//!
//! No protocol rule lives here: ws-proto decides (keepalive, idle and
//! close timeouts included: it says when, this crate fires the deadline),
//! this crate moves bytes and keeps the clocks (those deadlines, and the
//! connect and handshake timeouts). The clocks are its own, not tokio's
//! timer: a runtime built with `enable_io()` alone runs everything here,
//! and [`time`] offers the same clocks to an application on such a
//! runtime.
// Two places may use `unsafe`, each with its safety argument there:
// registering a timer descriptor with the runtime (`clock.rs`) and a
// broadcast's writes to the descriptors it leased (`conn/broadcast.rs`);
// nothing else.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "axum")]
pub mod axum;
mod client;
mod clock;
mod config;
mod conn;
mod driver;
mod error;
#[cfg(feature = "hyper")]
pub mod hyper;
mod pool;
pub mod server;
pub mod time;
#[cfg(feature = "tls")]
mod tls;
mod transport;

pub use client::{connect, ClientBuilder};
pub use config::Config;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use conn::Broadcast;
pub use conn::{ConnectionId, WebSocket, WsReader, WsWriter};
pub use error::{AcceptError, ConnectError, Error, TrySendError};
#[cfg(feature = "tls")]
pub use tls::{TlsConnector, TlsError};
pub use ws_proto::{
    CloseCode, CloseFrame, CloseInfo, Initiator, Message, PreparedMessage, ProtocolError, Role,
    SendError, State, Utf8Bytes,
};

/// Re-exported for users of the types above.
pub use ws_proto;
