//! JSON-RPC 2.0 over WebSocket, on ws-net: a server and a client.
//!
//! - **Server**: a [`Router`] of methods with typed parameters (a positional
//!   array or a named object, decoded by serde), notification handlers,
//!   batches (run concurrently, bounded), subscriptions wire-compatible with
//!   jsonrpsee, rooms with broadcasts encoded once, the `rpc.ping`
//!   heartbeat, authentication at the handshake or by a first-message
//!   login, and [`tower`] middleware: the router is a `tower::Service`, so
//!   stock layers (timeout, concurrency limit, rate limit, tracing) wrap
//!   every call. Served on a TCP listener ([`Server::serve`]) or on a
//!   connection axum or hyper upgraded ([`Server::serve_websocket`]).
//! - **Client**: calls matched to answers by id, notifications both ways,
//!   subscriptions as streams, server notifications as streams, tower
//!   middleware over every call, and a connection that reconnects with
//!   backoff and jitter, queues calls while away (bounded), fails the calls
//!   in flight when it drops ([`ClientError::Disconnected`]) and makes its
//!   subscriptions again.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ws_rpc::{Client, Router, RpcError, Server};
//!
//! #[derive(serde::Deserialize)]
//! struct Subtract { minuend: i64, subtrahend: i64 }
//!
//! let router = Router::new()
//!     .method("subtract", |p: Subtract, _cx| async move {
//!         Ok::<_, RpcError>(p.minuend - p.subtrahend)
//!     })
//!     .subscription("subscribe_ticks", "ticks", "unsubscribe_ticks", |(): (), sink, _cx| async move {
//!         for n in 1.. {
//!             tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//!             if sink.send(&serde_json::json!({ "n": n })).is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9944").await?;
//! tokio::spawn(Server::builder().build(router).serve(listener));
//!
//! let client = Client::builder("ws://127.0.0.1:9944/").connect().await?;
//! let d: i64 = client.request("subtract", [42, 23]).await?;
//! assert_eq!(d, 19);
//! let mut ticks = client.subscribe::<serde_json::Value, _>("subscribe_ticks", (), "unsubscribe_ticks").await?;
//! while let Some(item) = ticks.next().await {
//!     println!("{item:?}");
//! }
//! # Ok(()) }
//! ```
//!
//! # Error codes
//!
//! | Code | Message | When |
//! |---:|---|---|
//! | -32700 | Parse error | the message is not JSON (id null) |
//! | -32600 | Invalid Request | not a request object: `jsonrpc` not `"2.0"`, a method that is not a string or is longer than 256 bytes, `params` not an array or object, an id that is not a string, number or null or is a number beyond the range of a double (answered with the id when it could be read, else null); an empty batch; a subscription asked for in a notification |
//! | -32601 | Method not found | no such method, or a request for a method registered as a notification |
//! | -32602 | Invalid params | the parameters do not decode into the handler's type; the message says what was wrong |
//! | -32603 | Internal error | a result that does not serialize; a middleware's own error |
//! | -32000 | Request timed out | a timeout layer's deadline passed |
//! | -32001 | Login required | a call before the first-message login (`data.method` names the login method) |
//! | -32002 | Refused | a middleware refused the call (tower's load shedding: "Server overloaded") |
//! | -32003 | Subscription lagged | the final notification of a subscription that fell behind (`params.error`, `data.dropped`) |
//! | -32004 | Too many subscriptions | the connection holds [`ServerConfig::max_subscriptions`] |
//! | -32005 | Batch too large | a batch of more than [`ServerConfig::max_batch`] calls (id null) |
//! | -32006 | Shutting down | reserved for a server that refuses calls while it stops |
//!
//! # Defaults
//!
//! Every limit a peer can reach has a default that protects a production
//! service that never tunes it.
//!
//! | Setting | Default | Anchor | Past it |
//! |---|---|---|---|
//! | request timeout ([`ClientConfig::request_timeout`]) | 30 s | jsonrpsee 60 s | [`ClientError::Timeout`] |
//! | connect timeout (`ws.connect_timeout`) | 10 s | jsonrpsee 10 s | the attempt fails; reconnect goes on |
//! | reconnect ([`ClientConfig::reconnect`], [`Backoff`]) | on: 1 s, ×2, at most 5 s, jitter 0.5, unlimited | socket.io | — |
//! | offline queue ([`ClientConfig::queue_items`], `queue_bytes`) | 1024 calls, 4 MiB | socket.io: unbounded | [`ClientError::QueueFull`] at once |
//! | client stream buffer ([`ClientConfig::stream_buffer`]) | 1024 items | jsonrpsee 1024 | subscription ends [`SubscriptionEnd::Lagged`]; notifications report [`NotificationError::Lagged`] |
//! | calls in flight per connection ([`ServerConfig::max_in_flight`]) | 256 | jsonrpsee 256 | the server stops reading the connection (backpressure) |
//! | batch size ([`ServerConfig::max_batch`]) | 100 | jsonrpsee: unlimited | -32005 |
//! | subscriptions per connection ([`ServerConfig::max_subscriptions`]) | 1024 | jsonrpsee 1024 | -32004 |
//! | subscription buffer ([`ServerConfig::subscription_buffer`]) | 1024 items | jsonrpsee 1024 | lag policy: ends with -32003 (or drops the oldest and says how many) |
//! | room buffer ([`ServerConfig::room_buffer`]) | 1024 messages per member | — | lag policy: the member leaves, with `rpc.lagged` |
//! | connection queue ([`ServerConfig::queue_items`], `queue_bytes`) | 4096 messages, 16 MiB | — | [`Context::notify`] fails with [`NotifyError::Full`] |
//! | login timeout ([`ServerConfig::login_timeout`]) | 10 s | graphql-ws 3 s | close 1008 |
//! | message size (`ws.protocol.max_message_size`) | 10 MiB | jsonrpsee 10 MiB | close 1009 |
//! | keepalive (`ws.protocol.ping_interval`, `ping_timeout`) | on: 20 s, 20 s | jsonrpsee: off | the connection is dropped; the client reconnects |
//!
//! The server also answers the reserved method `rpc.ping` with `"pong"`, so
//! a client that cannot send WebSocket pings (a browser) can tell a dead
//! server.
//!
//! # When answers are written
//!
//! The answers to the calls one read brought go out together, in one write
//! (a system call per read, not per call), as soon as the last of them is
//! ready. On a current-thread runtime there is one exception: once the
//! runtime's thread has been idle (it parked), the first connection to
//! answer writes each answer as soon as it is ready, for up to
//! [`ServerConfig::max_in_flight`] answers. Spare CPU pays for the extra
//! writes, and a client that pipelines calls reads answers and sends new
//! calls while the server still answers, instead of the two taking turns:
//! at one connection with 16 calls in flight, 1.4-1.6 times the calls per
//! second (the repository's README has the measurement).
//!
//! # Middleware
//!
//! The server's calls go through a `tower::Service<`[`Request`]`>` whose
//! response is a [`Response`]: the [`Router`] is one, and
//! `tower::ServiceBuilder` puts layers around it. A layer sees and may
//! change every request (method, parameters, the connection's
//! [`Context`] with its identity, extensions) and every response, or answer
//! itself (refuse, rate-limit). Notifications go through it too; their
//! answer is dropped. The client's calls go through a
//! `tower::Service<`[`ClientRequest`]`>` the same way
//! ([`ClientBuilder::layer`]).
//!
//! # Cancel safety
//!
//! [`Client::request`], [`Client::notify`] and [`Subscription::next`] are
//! cancel-safe: dropping a request's future forgets the call (a queued call
//! is not sent, an answer that comes later is ignored). Dropping a
//! [`Subscription`] unsubscribes. [`SubscriptionSink::send_wait`] and
//! [`SubscriptionSink::closed`] are cancel-safe. [`Server::serve`] stops
//! accepting when dropped; connections already accepted go on.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod error;
#[doc(hidden)]
pub mod harness;
mod server;
mod wire;

pub use client::{
    Backoff, CallService, Client, ClientBuilder, ClientConfig, ClientRequest, ConnectionState,
    NotificationError, Notifications, Subscription, SubscriptionEnd, SubscriptionItem,
};
pub use error::{code, ClientError, RpcError};
pub use server::{
    BoxFuture, Context, Delivery, EndReason, Identity, LagPolicy, LocalRooms, Member, NotifyError,
    Params, Request, Response, RoomInfo, Rooms, Router, RouterFuture, Server, ServerBuilder,
    ServerConfig, ServerHandle, SubscriptionClosed, SubscriptionSink,
};
pub use wire::Id;

/// Re-exported: the WebSocket layer under this crate.
pub use ws_net;
