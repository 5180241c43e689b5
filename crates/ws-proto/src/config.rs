//! Connection limits, options and timers.

use std::time::Duration;

/// Options and limits of a [`Connection`](crate::Connection).
///
/// Every limit on what a peer controls has a safe default; a peer that
/// crosses one gets a close frame with the matching code (see
/// [`ProtocolError::close_code`](crate::ProtocolError::close_code)).
///
/// The timers (keepalive, idle, close) run only for an I/O layer that
/// passes time in (see [`Connection::handle_timeout`]); the connection
/// itself reads no clock.
///
/// [`Connection::handle_timeout`]: crate::Connection::handle_timeout
///
/// ```
/// let mut config = ws_proto::Config::default();
/// config.max_message_size = 1 << 20;
/// config.fragment_size = 64 * 1024;
/// assert_eq!(config.max_frame_size, 16 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame payload accepted (default 16 MiB). A larger frame
    /// header fails the connection with 1009 before its payload is read.
    pub max_frame_size: usize,
    /// Largest message accepted, summed over its frames, after
    /// decompression (default 64 MiB). Crossing it fails the connection
    /// with 1009 as soon as a frame header announces it.
    pub max_message_size: usize,
    /// Split outgoing data messages into frames of at most this many
    /// payload bytes; 0 (the default) sends each message as one frame.
    pub fragment_size: usize,
    /// Deliver data messages frame by frame as [`Event::Fragment`]s instead
    /// of reassembled (default off). Size limits still apply to the whole
    /// message.
    ///
    /// [`Event::Fragment`]: crate::Event::Fragment
    pub deliver_fragments: bool,
    /// Automatic pongs wait while more than this many bytes are queued for
    /// the peer (default 64 KiB); while they wait, a newer ping replaces an
    /// older one (§5.5.3 allows answering only the most recent ping).
    pub pong_backlog_threshold: usize,
    /// How many pings may be coalesced that way before the connection is
    /// failed with 1008, because the peer pings but never reads (default 64).
    pub max_coalesced_pings: u32,
    /// Send a keepalive ping once nothing was received for this long
    /// (default 20 s); `None` turns keepalive off. Its pong is not
    /// delivered as a message; [`Connection::rtt`] reports its round trip.
    ///
    /// [`Connection::rtt`]: crate::Connection::rtt
    pub ping_interval: Option<Duration>,
    /// After a keepalive ping, how long to wait for any data from the peer
    /// before the connection is declared dead (default 20 s):
    /// [`ProtocolError::KeepaliveTimeout`](crate::ProtocolError::KeepaliveTimeout).
    pub ping_timeout: Duration,
    /// Close the connection (1001) once no data message went either way
    /// for this long (default: off). Checked when the timer fires, so the
    /// close comes between one and two idle timeouts after the last data
    /// message.
    pub idle_timeout: Option<Duration>,
    /// Once the closing handshake starts, how long it may take before the
    /// transport is to be dropped (default 10 s):
    /// [`ProtocolError::CloseTimeout`](crate::ProtocolError::CloseTimeout).
    pub close_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            fragment_size: 0,
            deliver_fragments: false,
            pong_backlog_threshold: 64 << 10,
            max_coalesced_pings: 64,
            ping_interval: Some(Duration::from_secs(20)),
            ping_timeout: Duration::from_secs(20),
            idle_timeout: None,
            close_timeout: Duration::from_secs(10),
        }
    }
}
