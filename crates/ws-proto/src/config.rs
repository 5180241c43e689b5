//! Connection limits and options.

/// Options and limits of a [`Connection`](crate::Connection).
///
/// Every limit on what a peer controls has a safe default; a peer that
/// crosses one gets a close frame with the matching code (see
/// [`ProtocolError::close_code`](crate::ProtocolError::close_code)).
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
        }
    }
}
