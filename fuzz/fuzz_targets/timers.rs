//! The timers on fuzzed time: a `Connection` of either role with fuzzed
//! keepalive, idle and close timeouts (zero, milliseconds, seconds, up to
//! `Duration::MAX`), driven by arbitrary steps of time interleaved with
//! bytes and frames from the peer, pongs to its keepalive pings, sends,
//! closes, draining and end of file.
//!
//! Checks, after every step: no panic; legal state moves; every byte the
//! connection queues is a well-formed frame (the reference parser), nothing
//! after our close frame; events obey `poll_event`'s contract; a deadline
//! at or before the time passed in is gone after a few `handle_timeout`
//! calls at that same time (a driver that calls it when the deadline passes
//! never spins); a keepalive timeout only with keepalive on, a close
//! timeout only once the closing handshake started.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ws_proto::{Config, Connection, Message, ProtocolError, Role, State};
use ws_proto_fuzz::{client_frame, Blob, EventChecker, WireChecker};

/// A duration from the fuzzer: mostly short, sometimes huge.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum Dur {
    Zero,
    Millis(u16),
    Secs(u32),
    Max,
}

impl Dur {
    fn get(self) -> Duration {
        match self {
            Dur::Zero => Duration::ZERO,
            Dur::Millis(m) => Duration::from_millis(u64::from(m)),
            Dur::Secs(s) => Duration::from_secs(u64::from(s)),
            Dur::Max => Duration::MAX,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    client: bool,
    ping_interval: Option<Dur>,
    ping_timeout: Dur,
    idle_timeout: Option<Dur>,
    close_timeout: Dur,
    steps: Vec<Step>,
}

#[derive(Debug, Arbitrary)]
enum Step {
    /// Time passes (a step that would leave what an `Instant` holds is
    /// skipped).
    Advance(Dur),
    /// `handle_timeout` now, whether a deadline is due or not.
    Timeout,
    /// Time moves to the next deadline, and `handle_timeout` runs there.
    FireDeadline,
    /// Raw bytes from the peer.
    Peer(Blob),
    /// A whole data frame from the peer.
    PeerText(Blob),
    /// The peer answers our last keepalive ping.
    PeerPong,
    /// The peer pings us.
    PeerPing(Blob),
    /// The peer's close frame.
    PeerClose,
    Send(Blob),
    Close,
    Drain,
    Eof,
}

/// A final frame from the peer: masked when we are the server (§5.3).
fn peer_frame(we_are: Role, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = (we_are == Role::Server).then_some([0x11, 0x22, 0x33, 0x44]);
    client_frame(true, 0, opcode, mask, payload)
}

struct Run {
    role: Role,
    conn: Connection,
    now: Instant,
    wire: WireChecker,
    events: EventChecker,
    keepalive: bool,
    /// When the closing handshake was first seen started.
    closing_seen: bool,
}

impl Run {
    /// `handle_timeout` at `now`, then again while the deadline stays at or
    /// before `now`: each call must make progress, so a few are enough.
    fn timeout(&mut self) {
        for _ in 0..4 {
            self.conn.handle_timeout(self.now);
            self.after_step();
            match self.conn.poll_timeout() {
                Some(d) if d <= self.now => continue,
                _ => return,
            }
        }
        panic!(
            "the deadline stays at or before the time passed in: {:?}",
            self.conn.poll_timeout().map(|d| d.duration_since(self.now))
        );
    }

    fn receive(&mut self, bytes: &[u8]) {
        self.conn.receive_data(bytes);
        self.conn.handle_received(self.now);
        self.events.poll(&mut self.conn);
        self.after_step();
    }

    fn after_step(&mut self) {
        self.events.check_state(&self.conn);
        if self.conn.state() != State::Open {
            self.closing_seen = true;
        }
        match self.conn.failure() {
            Some(ProtocolError::KeepaliveTimeout) => {
                assert!(self.keepalive, "a keepalive timeout with keepalive off")
            }
            Some(ProtocolError::CloseTimeout) => {
                assert!(self.closing_seen, "a close timeout before any close")
            }
            _ => {}
        }
    }
}

fuzz_target!(|input: Input| {
    let role = if input.client {
        Role::Client
    } else {
        Role::Server
    };
    let mut config = Config::default();
    config.ping_interval = input.ping_interval.map(Dur::get);
    config.ping_timeout = input.ping_timeout.get();
    config.idle_timeout = input.idle_timeout.map(Dur::get);
    config.close_timeout = input.close_timeout.get();
    let keepalive = config.ping_interval.is_some();
    let conn = Connection::new(role, config);
    let events = EventChecker::new(&conn);
    let mut run = Run {
        role,
        conn,
        now: Instant::now(),
        wire: WireChecker::new(role),
        events,
        keepalive,
        closing_seen: false,
    };
    run.timeout();
    for step in input.steps.iter().take(256) {
        match step {
            Step::Advance(d) => {
                if let Some(t) = run.now.checked_add(d.get()) {
                    run.now = t;
                }
            }
            Step::Timeout => run.timeout(),
            Step::FireDeadline => {
                if let Some(d) = run.conn.poll_timeout() {
                    run.now = run.now.max(d);
                    run.timeout();
                }
            }
            Step::Peer(b) => run.receive(&b.0),
            Step::PeerText(b) => {
                let frame = peer_frame(run.role, 0x1, b.text().as_bytes());
                run.receive(&frame);
            }
            Step::PeerPong => {
                let ping = run
                    .wire
                    .frames
                    .iter()
                    .rev()
                    .find(|f| f.opcode == 0x9)
                    .map(|f| f.payload.clone());
                if let Some(p) = ping {
                    let frame = peer_frame(run.role, 0xa, &p);
                    run.receive(&frame);
                }
            }
            Step::PeerPing(b) => {
                let frame = peer_frame(run.role, 0x9, &b.truncated(125));
                run.receive(&frame);
            }
            Step::PeerClose => {
                let frame = peer_frame(run.role, 0x8, &1000u16.to_be_bytes());
                run.receive(&frame);
            }
            Step::Send(b) => {
                let _ = run.conn.send(Message::text(b.text()));
                run.after_step();
            }
            Step::Close => {
                let _ = run.conn.close(None);
                run.after_step();
            }
            Step::Drain => {
                run.wire.drain(&mut run.conn);
                run.after_step();
            }
            Step::Eof => {
                run.conn.receive_eof();
                run.events.poll(&mut run.conn);
                run.after_step();
            }
        }
    }
    run.wire.drain(&mut run.conn);
    run.events.check_state(&run.conn);
});
