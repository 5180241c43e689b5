//! The connection's timers: keepalive pings, the idle timeout and the close
//! timeout, as a policy with time passed in.
//!
//! The connection reads no clock. The I/O layer passes the time with
//! [`Connection::handle_timeout`] (when the deadline of
//! [`Connection::poll_timeout`] passes, and whenever else it likes: early
//! calls do nothing but start what a state change needs) and tells when
//! bytes arrived with [`Connection::handle_received`]. So these rules run
//! the same on simulated time, in tests, as on a real clock.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Connection, State};
use crate::error::ProtocolError;
use crate::frame::{CloseCode, CloseFrame, OpCode};

/// The state of the timers.
#[derive(Debug, Default)]
pub(super) struct Timers {
    /// The first `handle_timeout` has been seen: the timers run.
    started: bool,
    /// The latest time passed in.
    now: Option<Instant>,
    /// When bytes last arrived from the peer.
    received: Option<Instant>,
    /// The keepalive ping in flight: when it was sent.
    ping_sent: Option<Instant>,
    /// The payload of the last keepalive ping: its pong is ours, not the
    /// application's.
    ping_payload: Option<[u8; 8]>,
    /// The round trip of the last answered keepalive ping.
    rtt: Option<Duration>,
    /// A data message went either way since the idle clock last looked.
    data_moved: bool,
    /// Since when no data message is known to have moved.
    idle_since: Option<Instant>,
    /// When the closing handshake started (seen by the timers).
    closing_since: Option<Instant>,
    /// The close timeout ran out on a connection whose handshake was done:
    /// the transport may be dropped without waiting any longer.
    linger_over: bool,
}

impl Timers {
    /// A data message was sent or received (the idle timeout's input).
    pub(super) fn data_moved(&mut self) {
        self.data_moved = true;
    }

    /// Whether the waiting for the peer's end of file is over.
    pub(super) fn linger_over(&self) -> bool {
        self.linger_over
    }

    /// Whether `payload` answers our last keepalive ping. A pong that does
    /// arrives at the time of the latest [`Connection::handle_received`]:
    /// its round trip is recorded.
    fn take_pong(&mut self, payload: &[u8]) -> bool {
        if self.ping_payload.is_none_or(|p| p != payload) {
            return false;
        }
        if let (Some(sent), Some(at)) = (self.ping_sent, self.received) {
            if at >= sent {
                self.rtt = Some(at - sent);
            }
        }
        true
    }
}

impl Connection {
    /// Bytes from the peer arrived at `now` (after they went into
    /// [`read_buffer`](Self::read_buffer) or through
    /// [`receive_data`](Self::receive_data)): the peer is alive. With
    /// keepalive on, an I/O layer must call it on every read that returned
    /// data, or the connection is declared dead.
    pub fn handle_received(&mut self, now: Instant) {
        self.timers.received = Some(now);
        self.timers.now = Some(self.timers.now.map_or(now, |t| t.max(now)));
    }

    /// Run the timers at `now`: send a keepalive ping when one is due, fail
    /// the connection when the peer did not answer one in time
    /// ([`ProtocolError::KeepaliveTimeout`]), close it with 1001 when it
    /// was idle too long, and end a closing handshake that took too long
    /// ([`ProtocolError::CloseTimeout`]). A failure is reported by the next
    /// [`poll_event`](Self::poll_event) and by [`failure`](Self::failure),
    /// and [`wants_transport_closed`](Self::wants_transport_closed) turns
    /// true: what is still queued is dropped, the peer being gone or not
    /// reading.
    ///
    /// The first call starts the timers. Call it again when
    /// [`poll_timeout`](Self::poll_timeout)'s deadline passes; calling it
    /// at other times is harmless, and after the state changed (a close
    /// frame sent or received, a failure) it starts the close timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        let t = &mut self.timers;
        t.now = Some(t.now.map_or(now, |t| t.max(now)));
        if !t.started {
            t.started = true;
            t.received.get_or_insert(now);
            t.idle_since = Some(now);
        }
        if self.state == State::Open && !self.failed {
            if self.keepalive(now).is_err() {
                return;
            }
            self.idle(now);
        }
        if self.state != State::Open || self.failed {
            let t = &mut self.timers;
            let since = *t.closing_since.get_or_insert(now);
            if passed(now, since, self.config.close_timeout) && !self.wants_transport_closed() {
                if self.state == State::Closed && self.buffered_amount() == 0 {
                    // Both close frames were exchanged and ours is written;
                    // the peer did not close the transport in time (a
                    // client waits for the server to, §7.1.1).
                    self.timers.linger_over = true;
                } else {
                    // Still closing, or closed with bytes the peer has not
                    // read in time (our close among them): drop them, or
                    // the deadline would stay passed while the I/O layer
                    // waits for a peer that never reads.
                    self.abort(ProtocolError::CloseTimeout);
                }
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next:
    /// the earliest deadline of the running timers. `None` when no timer
    /// runs (before the first `handle_timeout`, with every timer off, or
    /// once the transport is to be closed). A deadline at or before the
    /// latest time passed in means: call it now.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.timers;
        if !t.started || self.wants_transport_closed() {
            return None;
        }
        let c = &self.config;
        let mut next: Option<Instant> = None;
        // A deadline past what an `Instant` can hold (a timeout of
        // `Duration::MAX`) never comes.
        let mut at = |d: Option<Instant>| {
            if let Some(d) = d {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        };
        if self.state == State::Open && !self.failed {
            if let Some(interval) = c.ping_interval {
                match (t.ping_sent, t.received) {
                    (Some(sent), _) => at(sent.checked_add(c.ping_timeout)),
                    (None, Some(received)) => at(received.checked_add(interval)),
                    (None, None) => {}
                }
            }
            if let (Some(idle), Some(since)) = (c.idle_timeout, t.idle_since) {
                at(since.checked_add(idle));
            }
        } else {
            match t.closing_since {
                Some(since) => at(since.checked_add(c.close_timeout)),
                // The closing handshake started since the last call: its
                // timeout starts at the next one.
                None => at(t.now),
            }
        }
        next
    }

    /// The round trip of the last keepalive ping that was answered: from
    /// the time it was queued to the [`handle_received`](Self::handle_received)
    /// of its pong.
    pub fn rtt(&self) -> Option<Duration> {
        self.timers.rtt
    }

    /// The keepalive rules (§5.5.2 allows a ping at any time while open).
    fn keepalive(&mut self, now: Instant) -> Result<(), ProtocolError> {
        let Some(interval) = self.config.ping_interval else {
            return Ok(());
        };
        let t = &mut self.timers;
        let received = *t.received.get_or_insert(now);
        if let Some(sent) = t.ping_sent {
            if received > sent {
                // Anything from the peer after the ping answers it. (Not
                // bytes of the very instant it was sent: with a ping
                // interval of zero, each call at one instant would
                // otherwise take the last bytes as the answer and ping
                // again, without end.)
                t.ping_sent = None;
            } else if passed(now, sent, self.config.ping_timeout) {
                return Err(self.abort(ProtocolError::KeepaliveTimeout));
            } else {
                return Ok(());
            }
        }
        if passed(now, received, interval) {
            let payload = rand::random::<[u8; 8]>();
            t.ping_payload = Some(payload);
            t.ping_sent = Some(now);
            self.write_frame(true, OpCode::Ping, Bytes::copy_from_slice(&payload));
        }
        Ok(())
    }

    /// The idle timeout.
    fn idle(&mut self, now: Instant) {
        let Some(idle) = self.config.idle_timeout else {
            return;
        };
        let t = &mut self.timers;
        if std::mem::take(&mut t.data_moved) {
            t.idle_since = Some(now);
        }
        let since = *t.idle_since.get_or_insert(now);
        if passed(now, since, idle) {
            // Cannot fail: the connection is open.
            let _ = self.close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "idle timeout")));
        }
    }

    /// Whether a received pong answers our keepalive ping (then it is not
    /// delivered).
    pub(super) fn is_keepalive_pong(&mut self, payload: &[u8]) -> bool {
        self.timers.take_pong(payload)
    }
}

/// Whether `timeout` from `since` has passed at `now`. A timeout that
/// reaches past what an `Instant` can hold (`Duration::MAX`) never passes.
fn passed(now: Instant, since: Instant, timeout: Duration) -> bool {
    since.checked_add(timeout).is_some_and(|end| now >= end)
}
