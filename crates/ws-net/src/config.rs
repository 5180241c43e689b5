//! Connection settings.

use std::time::Duration;

/// Settings of a connection, for both roles. The defaults protect a
/// production service that never tunes them: keepalive pings on, a close
/// timeout, a bounded write buffer, and ws-proto's size limits.
///
/// The protocol's own settings, timers included, are in
/// [`protocol`](Self::protocol): keepalive (`ping_interval`, default 20 s,
/// and `ping_timeout`, 20 s), `idle_timeout` (off) and `close_timeout`
/// (10 s). ws-proto decides when they fire; ws-net keeps one deadline per
/// connection for it on clocks of its own, not the runtime's timer: on
/// Linux each runtime gets one timer descriptor, watched by its reactor
/// and read by a task of its own (started with the first connection on a
/// TCP socket); elsewhere, and before that, one clock thread serves the
/// process. They follow the real clock: tokio's paused test clock does not
/// move them.
///
/// ```
/// use std::time::Duration;
/// let mut config = ws_net::Config::default();
/// config.protocol.ping_interval = Some(Duration::from_secs(5));
/// config.protocol.max_message_size = 1 << 20;
/// assert_eq!(config.protocol.close_timeout, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Protocol limits, options and timers (frame and message size,
    /// keepalive, idle and close timeouts...).
    pub protocol: ws_proto::Config,
    /// Limits on the opening handshake's head (16 KiB, 64 headers).
    pub handshake_limits: ws_proto::handshake::Limits,
    /// Time allowed for the opening handshake, from connection to the end
    /// of the head (default 10 s). A slow or silent peer is dropped.
    pub handshake_timeout: Duration,
    /// Time allowed for a client's TCP connect (and TLS) (default 10 s).
    pub connect_timeout: Duration,
    /// `send` waits while at least this many bytes are queued and not yet
    /// written (default 128 KiB), and `try_send` fails with
    /// [`TrySendError::Full`](crate::TrySendError::Full). Memory per
    /// connection stays under this plus one message.
    pub write_buffer_limit: usize,
    /// Set `TCP_NODELAY` on TCP sockets this crate opens (default on).
    pub nodelay: bool,
    /// permessage-deflate (RFC 7692): `Some` to offer it (client) or accept
    /// it (server). Off by default: with context takeover each compressed
    /// connection holds about 300 KiB of zlib state and spends CPU on every
    /// message, a cost a server should choose knowingly (browsers offer it
    /// on every connection). Turn it on for text-heavy traffic such as JSON,
    /// where it cuts bandwidth several-fold; `server_no_context_takeover`
    /// and `client_no_context_takeover` free that memory between messages.
    pub deflate: Option<ws_proto::deflate::DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            protocol: ws_proto::Config::default(),
            handshake_limits: ws_proto::handshake::Limits::default(),
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            write_buffer_limit: 128 * 1024,
            nodelay: true,
            deflate: None,
        }
    }
}
