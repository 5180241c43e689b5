//! Shared pieces of the ws-proto fuzz targets: input helpers, a reference
//! frame parser written independently of `ws_proto::frame`, a checker for
//! everything a connection queues for the wire, and a checker for the events
//! a connection hands to the application.
//!
//! Every check panics with a message saying which invariant broke, so that
//! libFuzzer records the input as a crash.

use std::collections::HashSet;

use arbitrary::{Arbitrary, Unstructured};
use ws_proto::bytes::Buf;
use ws_proto::{
    CloseFrame, Config, Connection, DataKind, Event, Message, ProtocolError, Role, State,
};

// ---------------------------------------------------------------------------
// Input helpers
// ---------------------------------------------------------------------------

/// A byte string in structured inputs: a little-endian `u16` length, then
/// that many bytes (fewer when the input runs out). Cheaper for the fuzzer
/// than `Vec<u8>`, which spends a continuation byte per element.
#[derive(Clone, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl<'a> Arbitrary<'a> for Blob {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = usize::from(u.arbitrary::<u16>()?);
        let n = len.min(u.len());
        Ok(Blob(u.bytes(n)?.to_vec()))
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (2, None)
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "{:02x?}", self.0),
        }
    }
}

impl Blob {
    /// The bytes as text (invalid sequences replaced), for text messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// At most `max` bytes (control payloads).
    pub fn truncated(&self, max: usize) -> Vec<u8> {
        self.0[..self.0.len().min(max)].to_vec()
    }
}

/// A size limit picked by one byte: small values (to hit limits with short
/// inputs), values around the 125/126 length-encoding boundary, or `default`.
pub fn size_sel(b: u8, default: usize) -> usize {
    let low = usize::from(b & 0x3f);
    match b >> 6 {
        0 => low,
        1 => 64 + low * 32,
        2 => 100 + low,
        _ => default,
    }
}

/// Connection options picked by the fuzzer.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Knobs {
    pub max_frame_size: u8,
    pub max_message_size: u8,
    pub deliver_fragments: bool,
    pub pong_backlog_threshold: u8,
    pub max_coalesced_pings: u8,
    pub fragment_size: u8,
}

impl Knobs {
    /// Read the knobs from six bytes (missing bytes read as zero).
    pub fn from_bytes(b: &[u8]) -> Self {
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        Self {
            max_frame_size: at(0),
            max_message_size: at(1),
            deliver_fragments: at(2) & 1 == 1,
            pong_backlog_threshold: at(3),
            max_coalesced_pings: at(4),
            fragment_size: at(5),
        }
    }

    pub fn config(&self) -> Config {
        let d = Config::default();
        let mut c = Config::default();
        c.max_frame_size = size_sel(self.max_frame_size, d.max_frame_size);
        c.max_message_size = size_sel(self.max_message_size, d.max_message_size);
        c.deliver_fragments = self.deliver_fragments;
        c.pong_backlog_threshold = size_sel(self.pong_backlog_threshold, d.pong_backlog_threshold);
        c.max_coalesced_pings = if self.max_coalesced_pings & 0x80 != 0 {
            d.max_coalesced_pings
        } else {
            u32::from(self.max_coalesced_pings & 0x0f)
        };
        c.fragment_size = size_sel(self.fragment_size, 0);
        c
    }
}

/// Chunk lengths from a small deterministic generator: lengths in
/// `1..=max`, where `max` 0 means one chunk for everything.
#[derive(Debug, Clone)]
pub struct Chunker {
    state: u64,
    max: usize,
}

impl Chunker {
    pub fn new(seed: u64, max: u8) -> Self {
        Self {
            // Never zero, or xorshift gets stuck.
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
            max: if max == 0 {
                usize::MAX
            } else {
                usize::from(max)
            },
        }
    }

    pub fn next_len(&mut self) -> usize {
        if self.max == usize::MAX {
            return usize::MAX;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        1 + (self.state % self.max as u64) as usize
    }

    /// Split `data` into chunks (at least one, possibly empty).
    pub fn split<'a>(&mut self, mut data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        loop {
            let n = self.next_len().min(data.len());
            let (a, b) = data.split_at(n);
            out.push(a);
            data = b;
            if data.is_empty() {
                return out;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reference frame parser
// ---------------------------------------------------------------------------

/// One frame as read off the wire by [`parse_frame`], payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload: Vec<u8>,
}

/// Parse one whole frame at the start of `buf`, strictly: the length must
/// use the shortest form and a 64-bit length must have its top bit clear.
/// `Ok(None)` when `buf` holds less than a whole frame.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(WireFrame, usize)>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let rsv = (buf[0] >> 4) & 7;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let mut pos = 2;
    let len: u64 = match buf[1] & 0x7f {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            pos = 4;
            let n = u64::from(b[0]) << 8 | u64::from(b[1]);
            if n < 126 {
                return Err(format!("16-bit length {n} should use the 7-bit form"));
            }
            n
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            pos = 10;
            let n = b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
            if n >> 63 != 0 {
                return Err("64-bit length with the top bit set".into());
            }
            if n <= 0xffff {
                return Err(format!("64-bit length {n} should use a shorter form"));
            }
            n
        }
        n => u64::from(n),
    };
    let mask = if masked {
        let Some(k) = buf.get(pos..pos + 4) else {
            return Ok(None);
        };
        pos += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    let rest = (buf.len() - pos) as u64;
    if rest < len {
        return Ok(None);
    }
    let len = len as usize;
    let mut payload = buf[pos..pos + len].to_vec();
    if let Some(k) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= k[i % 4];
        }
    }
    Ok(Some((
        WireFrame {
            fin,
            rsv,
            opcode,
            mask,
            payload,
        },
        pos + len,
    )))
}

/// Close codes an endpoint may put on the wire (RFC 6455 §7.4, IANA).
pub fn code_is_sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Check a close payload as the RFC requires of a sender (§5.5.1): empty, or
/// a sendable code and a UTF-8 reason, 125 bytes in all.
pub fn check_close_payload(p: &[u8]) -> Result<(), String> {
    match p.len() {
        0 => Ok(()),
        1 => Err("close payload of one byte".into()),
        n if n > 125 => Err(format!("close payload of {n} bytes")),
        _ => {
            let code = u16::from_be_bytes([p[0], p[1]]);
            if !code_is_sendable(code) {
                return Err(format!("close code {code} may not be sent"));
            }
            std::str::from_utf8(&p[2..]).map_err(|_| "close reason is not UTF-8".to_string())?;
            Ok(())
        }
    }
}

/// The encoded close payload for what `CloseInfo::sent` records (1005 means
/// an empty payload).
pub fn close_payload(frame: &CloseFrame) -> Vec<u8> {
    if frame.code.as_u16() == 1005 {
        return Vec::new();
    }
    let mut v = frame.code.as_u16().to_be_bytes().to_vec();
    v.extend_from_slice(frame.reason.as_bytes());
    v
}

/// A message (or control frame) as reassembled from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireMessage {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Vec<u8>),
}

/// Reads everything one endpoint queues for the wire and checks that it is
/// well formed (RFC 6455 §5): valid opcodes, no RSV bits (no extension is
/// negotiated), masked exactly when the sender is a client, control frames
/// final and at most 125 bytes, valid close payloads, a legal fragmentation
/// sequence, UTF-8 text, and nothing at all after a close frame.
#[derive(Debug)]
pub struct WireChecker {
    sender: Role,
    buf: Vec<u8>,
    /// Opcode and bytes of a fragmented data message in progress.
    partial: Option<(u8, Vec<u8>)>,
    /// Every frame, in order, payload unmasked and mask key dropped.
    pub frames: Vec<WireFrame>,
    /// Messages and control frames, in the order they completed.
    pub messages: Vec<WireMessage>,
    /// The payload of our close frame, once it went by.
    pub close: Option<Vec<u8>>,
    /// All bytes fed so far.
    pub total: usize,
}

impl WireChecker {
    pub fn new(sender: Role) -> Self {
        Self {
            sender,
            buf: Vec::new(),
            partial: None,
            frames: Vec::new(),
            messages: Vec::new(),
            close: None,
            total: 0,
        }
    }

    /// Take all the bytes a connection has queued, until `transmit` has
    /// nothing more (emptying the queue can release a held-back pong).
    pub fn drain(&mut self, conn: &mut Connection) {
        loop {
            let n = conn.transmit().remaining();
            if n == 0 {
                return;
            }
            self.drain_some(conn, n);
        }
    }

    /// Take up to `n` of the bytes a connection has queued, through the
    /// `Buf` interface the I/O layer uses (`chunk` + `advance`, and
    /// `copy_to_bytes` on odd steps).
    pub fn drain_some(&mut self, conn: &mut Connection, n: usize) {
        let out = conn.transmit();
        let mut left = n.min(out.remaining());
        let mut odd = false;
        while left > 0 {
            let before = out.remaining();
            if odd {
                let take = left.min(out.chunk().len().max(1) + 3).min(left);
                let b = out.copy_to_bytes(take);
                assert_eq!(b.len(), take, "copy_to_bytes returned the wrong length");
                self.feed(&b);
                left -= take;
                assert_eq!(out.remaining(), before - take, "copy_to_bytes miscounted");
            } else {
                let chunk = out.chunk();
                assert!(
                    !chunk.is_empty(),
                    "empty chunk with {} bytes remaining",
                    before
                );
                let take = chunk.len().min(left);
                let bytes = chunk[..take].to_vec();
                out.advance(take);
                self.feed(&bytes);
                left -= take;
                assert_eq!(out.remaining(), before - take, "advance miscounted");
            }
            odd = !odd;
        }
    }

    /// Feed bytes taken from the connection and check every whole frame.
    pub fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        assert!(
            self.close.is_none(),
            "{} bytes queued after our close frame",
            bytes.len()
        );
        self.total += bytes.len();
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            match parse_frame(&self.buf[at..]) {
                Ok(Some((frame, n))) => {
                    at += n;
                    self.check(frame);
                    if self.close.is_some() && at < self.buf.len() {
                        panic!("{} bytes queued after our close frame", self.buf.len() - at);
                    }
                }
                Ok(None) => break,
                Err(e) => panic!("malformed outgoing frame: {e}"),
            }
        }
        self.buf.drain(..at);
    }

    fn check(&mut self, mut f: WireFrame) {
        assert_eq!(f.rsv, 0, "outgoing frame with RSV bits {:#05b}", f.rsv);
        match self.sender {
            Role::Server => assert!(f.mask.is_none(), "server frame is masked"),
            Role::Client => assert!(f.mask.is_some(), "client frame is not masked"),
        }
        f.mask = None;
        match f.opcode {
            0x8..=0xa => {
                assert!(f.fin, "outgoing control frame without FIN");
                assert!(
                    f.payload.len() <= 125,
                    "outgoing control frame of {} bytes",
                    f.payload.len()
                );
                let p = f.payload.clone();
                match f.opcode {
                    0x8 => {
                        if let Err(e) = check_close_payload(&p) {
                            panic!("outgoing close frame: {e}");
                        }
                        self.close = Some(p.clone());
                        self.messages.push(WireMessage::Close(p));
                    }
                    0x9 => self.messages.push(WireMessage::Ping(p)),
                    _ => self.messages.push(WireMessage::Pong(p)),
                }
            }
            0x1 | 0x2 => {
                assert!(
                    self.partial.is_none(),
                    "outgoing data frame inside an unfinished fragmented message"
                );
                if f.fin {
                    self.messages
                        .push(data_message(f.opcode, f.payload.clone()));
                } else {
                    self.partial = Some((f.opcode, f.payload.clone()));
                }
            }
            0x0 => {
                let Some((op, mut data)) = self.partial.take() else {
                    panic!("outgoing continuation frame without a message in progress");
                };
                data.extend_from_slice(&f.payload);
                if f.fin {
                    self.messages.push(data_message(op, data));
                } else {
                    self.partial = Some((op, data));
                }
            }
            op => panic!("outgoing frame with reserved opcode {op:#x}"),
        }
        self.frames.push(f);
    }

    /// Everything queued was taken: nothing may be left half a frame.
    pub fn finish(&self) {
        assert!(
            self.buf.is_empty(),
            "{} bytes of an incomplete outgoing frame",
            self.buf.len()
        );
    }
}

fn data_message(op: u8, data: Vec<u8>) -> WireMessage {
    if op == 0x1 {
        assert!(
            std::str::from_utf8(&data).is_ok(),
            "outgoing text message is not UTF-8"
        );
        WireMessage::Text(data)
    } else {
        WireMessage::Binary(data)
    }
}

// ---------------------------------------------------------------------------
// Receive-side checks
// ---------------------------------------------------------------------------

/// Whether `from -> to` is a legal move of the closing handshake.
pub fn legal_transition(from: State, to: State) -> bool {
    use State::*;
    matches!(
        (from, to),
        (Open, Open)
            | (Open, Closing)
            | (Open, Closed)
            | (Closing, Closing)
            | (Closing, Closed)
            | (Closed, Closed)
    )
}

/// What came out of `poll_event`, in order.
pub type Outcome = Result<Event, ProtocolError>;

/// Polls a connection and checks what it hands to the application against
/// its configuration and the documented contract of `poll_event`.
#[derive(Debug)]
pub struct EventChecker {
    config: Config,
    state: State,
    error: bool,
    close_event: bool,
    /// Bytes of a fragmented message delivered so far (`deliver_fragments`).
    fragments: Option<(DataKind, Vec<u8>)>,
    /// Every outcome, in order.
    pub log: Vec<Outcome>,
    /// Payloads of received pings (the only payloads our pongs may carry).
    pub pings: HashSet<Vec<u8>>,
}

impl EventChecker {
    pub fn new(conn: &Connection) -> Self {
        Self {
            config: conn.config().clone(),
            state: conn.state(),
            error: false,
            close_event: false,
            fragments: None,
            log: Vec::new(),
            pings: HashSet::new(),
        }
    }

    /// Check the state against the last one seen.
    pub fn check_state(&mut self, conn: &Connection) {
        let s = conn.state();
        assert!(
            legal_transition(self.state, s),
            "illegal state transition {:?} -> {:?}",
            self.state,
            s
        );
        self.state = s;
        if conn.wants_transport_closed() {
            assert_eq!(s, State::Closed, "wants_transport_closed while not Closed");
            assert_eq!(
                conn.buffered_amount(),
                0,
                "wants_transport_closed with bytes queued"
            );
        }
    }

    /// Call `poll_event` until `Ok(None)`, checking each outcome.
    pub fn poll(&mut self, conn: &mut Connection) {
        // Each event or error consumes at least a frame header (two bytes),
        // except the one abnormal-closure error; anything more is a loop.
        let budget = conn.read_buffer().len() + 4;
        for _ in 0..budget {
            let was_open = conn.state() == State::Open;
            let r = conn.poll_event();
            self.check_state(conn);
            match r {
                Ok(None) => return,
                Ok(Some(ev)) => {
                    assert!(!self.error, "event {ev:?} after an error was reported");
                    assert!(
                        !self.close_event,
                        "event {ev:?} after the peer's close frame"
                    );
                    self.check_event(conn, &ev, was_open);
                    self.log.push(Ok(ev));
                }
                Err(e) => {
                    assert!(
                        !self.error,
                        "a second error was reported: {e:?} after {:?}",
                        self.log
                    );
                    self.error = true;
                    assert_ne!(conn.state(), State::Open, "still Open after error {e:?}");
                    self.log.push(Err(e));
                }
            }
        }
        panic!("poll_event did not return Ok(None) after {budget} calls");
    }

    fn check_event(&mut self, conn: &Connection, ev: &Event, was_open: bool) {
        let c = &self.config;
        match ev {
            Event::Message(m) => match m {
                Message::Text(t) => {
                    assert!(
                        !c.deliver_fragments,
                        "whole message with deliver_fragments on"
                    );
                    // `Utf8Bytes::as_str` trusts this without checking.
                    assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                    assert!(t.len() <= c.max_message_size, "text message over the limit");
                }
                Message::Binary(b) => {
                    assert!(
                        !c.deliver_fragments,
                        "whole message with deliver_fragments on"
                    );
                    assert!(
                        b.len() <= c.max_message_size,
                        "binary message over the limit"
                    );
                }
                Message::Ping(p) => {
                    assert!(p.len() <= 125, "ping of {} bytes", p.len());
                    self.pings.insert(p.to_vec());
                }
                Message::Pong(p) => assert!(p.len() <= 125, "pong of {} bytes", p.len()),
                Message::Close(f) => {
                    self.close_event = true;
                    assert_eq!(
                        conn.state(),
                        State::Closed,
                        "not Closed after the peer's close"
                    );
                    if let Some(f) = f {
                        assert!(
                            code_is_sendable(f.code.as_u16()),
                            "received close code {:?}",
                            f.code
                        );
                        assert!(
                            f.reason.len() <= 123,
                            "close reason of {} bytes",
                            f.reason.len()
                        );
                    }
                    let info = conn.close_info();
                    let expect = f
                        .clone()
                        .unwrap_or_else(|| CloseFrame::new(1005.into(), ""));
                    assert_eq!(info.received.as_ref(), Some(&expect), "close_info.received");
                    if was_open {
                        // §5.5.1: we answer, echoing the code.
                        let reply = f
                            .as_ref()
                            .map(|f| CloseFrame::new(f.code, ""))
                            .unwrap_or_else(|| CloseFrame::new(1005.into(), ""));
                        assert_eq!(info.sent.as_ref(), Some(&reply), "close reply");
                        assert_eq!(info.initiator, Some(ws_proto::Initiator::Peer));
                    } else {
                        assert!(info.sent.is_some(), "Closing without having sent a close");
                    }
                }
            },
            Event::Fragment(f) => {
                assert!(c.deliver_fragments, "fragment with deliver_fragments off");
                assert!(
                    f.data.len() <= c.max_frame_size,
                    "fragment over the frame limit"
                );
                let (kind, mut so_far) = match self.fragments.take() {
                    Some((k, v)) => (k, v),
                    None => (f.kind, Vec::new()),
                };
                assert_eq!(kind, f.kind, "fragment kind changed within a message");
                so_far.extend_from_slice(&f.data);
                assert!(
                    so_far.len() <= c.max_message_size,
                    "fragmented message over the limit"
                );
                if kind == DataKind::Text {
                    match std::str::from_utf8(&so_far) {
                        Ok(_) => {}
                        Err(e) if e.error_len().is_none() && !f.fin => {}
                        Err(_) => panic!("text fragments are not UTF-8 (fin: {})", f.fin),
                    }
                }
                if !f.fin {
                    self.fragments = Some((kind, so_far));
                }
            }
            _ => {}
        }
    }
}

/// Check what a connection sent on its own (pongs and close frames) against
/// what it received: pongs echo a received ping, and the close frame on the
/// wire is the one `close_info().sent` reports.
pub fn check_own_output(wire: &WireChecker, events: &EventChecker, conn: &Connection) {
    for m in &wire.messages {
        if let WireMessage::Pong(p) = m {
            assert!(
                events.pings.contains(p),
                "pong {p:02x?} answers no received ping"
            );
        }
    }
    let sent = conn.close_info().sent.as_ref().map(close_payload);
    assert_eq!(
        wire.close, sent,
        "close frame on the wire vs close_info().sent"
    );
}

/// Encode a frame by hand (not with ws_proto's encoder): masked with
/// `mask` (a client's frame, §5.3) or not.
pub fn client_frame(
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = vec![u8::from(fin) << 7 | (rsv & 7) << 4 | (opcode & 0x0f)];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}
