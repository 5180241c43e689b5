//! The connection state machine: one per WebSocket, either role.

mod send;
mod timers;

pub use send::SendBuf;

use bytes::{Buf, Bytes, BytesMut};

use crate::config::Config;
use crate::deflate::{Codec, InflateError, Negotiated};
use crate::error::{ProtocolError, SendError};
use crate::frame::{
    apply_mask_at, CloseCode, CloseFrame, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, RSV1,
};
use crate::message::{DataKind, Fragment, Message};
use crate::utf8::{Utf8Bytes, Utf8Validator};

/// Payloads up to this size are copied out of the read buffer into an
/// allocation of their own. A payload split off the buffer instead shares
/// the buffer's whole allocation for as long as the application keeps it:
/// a kept 16-byte message would hold a read buffer of several KiB. Copying
/// a few KiB costs less than the allocation it comes with.
const COPY_OUT_MAX: usize = 4096;

/// Which end of the connection we are. Clients mask what they send and
/// expect unmasked frames; servers the reverse (§5.1).
///
/// ```
/// use bytes::Buf;
/// use ws_proto::{Connection, Message, Role};
/// let mut client = Connection::new(Role::Client, Default::default());
/// client.send(Message::text("hi")).unwrap();
/// assert_eq!(client.transmit().chunk()[1] & 0x80, 0x80); // masked
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sent the opening handshake request.
    Client,
    /// The end that accepted it.
    Server,
}

/// The closing-handshake state (§7).
///
/// ```
/// use ws_proto::{CloseCode, CloseFrame, Connection, Role, State};
/// let mut conn = Connection::new(Role::Server, Default::default());
/// assert_eq!(conn.state(), State::Open);
/// conn.close(Some(CloseFrame::new(CloseCode::NORMAL, "bye"))).unwrap();
/// assert_eq!(conn.state(), State::Closing);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's. Nothing more is sent;
    /// received data messages are still delivered.
    Closing,
    /// Both close frames were exchanged, or the connection failed or its
    /// transport ended. See [`Connection::wants_transport_closed`].
    Closed,
}

/// Which end started the closing handshake.
///
/// ```
/// use ws_proto::{Connection, Role, Initiator};
/// let mut conn = Connection::new(Role::Server, Default::default());
/// conn.close(None).unwrap();
/// assert_eq!(conn.close_info().initiator, Some(Initiator::Local));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// We did (by [`Connection::close`], by failing the connection, or by a
    /// timer).
    Local,
    /// The peer did.
    Peer,
}

/// What is known of how the connection closed.
///
/// A close frame without a status is recorded with code 1005
/// ([`CloseCode::NO_STATUS`]).
///
/// ```
/// use ws_proto::{CloseCode, Connection, Role};
/// let mut conn = Connection::new(Role::Client, Default::default());
/// conn.receive_data(&[0x88, 0x02, 0x03, 0xe9]); // the server closes: 1001
/// conn.poll_event().unwrap();
/// let info = conn.close_info();
/// assert_eq!(info.received.as_ref().unwrap().code, CloseCode::GOING_AWAY);
/// assert_eq!(info.sent.as_ref().unwrap().code, CloseCode::GOING_AWAY); // echoed
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close frame we sent.
    pub sent: Option<CloseFrame>,
    /// The close frame we received.
    pub received: Option<CloseFrame>,
    /// Which end sent the first close frame.
    pub initiator: Option<Initiator>,
}

/// What the connection hands to the application.
///
/// ```
/// use ws_proto::{Connection, Event, Message, Role};
/// let mut conn = Connection::new(Role::Client, Default::default());
/// conn.receive_data(&[0x89, 0x00]); // a ping
/// assert_eq!(conn.poll_event().unwrap(), Some(Event::Message(Message::Ping(Default::default()))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A whole message, or a control frame.
    Message(Message),
    /// A piece of a data message, with [`Config::deliver_fragments`] on.
    Fragment(Fragment),
}

/// A message encoded once, to be sent on many connections (broadcast)
/// without encoding it again: on a server connection, sending it queues a
/// copy of a few header bytes and a reference to the payload.
///
/// ```
/// use ws_proto::{Connection, Message, PreparedMessage, Role};
/// let prepared = PreparedMessage::new(Message::text("tick"));
/// let mut conns: Vec<_> = (0..3).map(|_| Connection::new(Role::Server, Default::default())).collect();
/// for c in &mut conns {
///     c.send_prepared(&prepared).unwrap();
///     assert_eq!(c.buffered_amount(), 6);
/// }
/// ```
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    opcode: OpCode,
    header: [u8; crate::frame::MAX_HEADER_LEN],
    header_len: u8,
    payload: Bytes,
    /// A small message's whole unmasked frame, header and payload in one
    /// buffer (the payload is a slice of it); empty for a large one.
    frame: Bytes,
}

impl PreparedMessage {
    /// Encode a data or control message as one unmasked frame.
    ///
    /// Sending a prepared close does not start the closing handshake; use
    /// [`Connection::close`] for that. A ping or pong payload over 125 bytes
    /// is truncated to 125, a close reason over 123 bytes to the last whole
    /// character that fits.
    pub fn new(message: Message) -> Self {
        let (opcode, mut payload) = match message {
            Message::Text(t) => (OpCode::Text, t.into_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
            Message::Ping(p) => (OpCode::Ping, p),
            Message::Pong(p) => (OpCode::Pong, p),
            Message::Close(f) => {
                let body = match f {
                    // Encoding cuts a long reason to whole characters.
                    Some(f) => {
                        let (body, n) = f.encode();
                        Bytes::copy_from_slice(&body[..n])
                    }
                    None => Bytes::new(),
                };
                (OpCode::Close, body)
            }
        };
        if opcode.is_control() {
            payload.truncate(MAX_CONTROL_PAYLOAD);
        }
        let (header, n) = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        }
        .encode();
        let mut frame = Bytes::new();
        if payload.len() <= send::COPY_MAX {
            let mut whole = BytesMut::with_capacity(n + payload.len());
            whole.extend_from_slice(&header[..n]);
            whole.extend_from_slice(&payload);
            frame = whole.freeze();
            payload = frame.slice(n..);
        }
        Self {
            opcode,
            header,
            header_len: n as u8,
            payload,
            frame,
        }
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
}

/// A frame whose header was read and whose payload is arriving.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    header: FrameHeader,
    /// Payload bytes already unmasked and checked, at the front of the
    /// read buffer (or already discarded, when `discard`).
    done: usize,
    /// The connection failed: skip this payload as it arrives.
    discard: bool,
}

/// A fragmented message being received.
#[derive(Debug)]
struct InMessage {
    kind: DataKind,
    /// Payload bytes received on the wire so far.
    size: u64,
    /// Compressed with permessage-deflate (RSV1 on its first frame).
    compressed: bool,
    /// The frames so far, uncompressed messages.
    parts: Vec<u8>,
    /// The inflated output so far, compressed messages.
    inflated: Vec<u8>,
    /// Bytes inflated so far (also those already delivered as fragments).
    inflated_len: usize,
}

/// A WebSocket connection after the opening handshake: the RFC 6455
/// protocol as a state machine, with no I/O and no clock.
///
/// The caller moves bytes. Received bytes go in with
/// [`receive_data`](Self::receive_data) (or straight into
/// [`read_buffer`](Self::read_buffer)), and events come out of
/// [`poll_event`](Self::poll_event). Messages go in with
/// [`send`](Self::send), and the bytes to write come out of
/// [`transmit`](Self::transmit). The connection answers pings and close
/// frames by itself, and fails with the right close code on anything a peer
/// must not send.
///
/// Methods fall into four groups: getters (`state`, `role`,
/// `buffered_amount`, `close_info`, `failure`, `rtt`,
/// `wants_transport_closed`), inputs (`receive_data`, `read_buffer`,
/// `receive_eof`, and time: `handle_received`, `handle_timeout`), commands
/// (`send`, `send_fragment`, `send_prepared`, `close`) and outputs
/// (`poll_event` or `poll_message`, `transmit`, `poll_timeout`). Messages
/// are decoded lazily, as `poll_event` is called, so the order of what the
/// application sends and what the connection answers follows the order in
/// which the application consumes events.
///
/// The connection reads no clock: its timers (keepalive pings, idle and
/// close timeouts, see [`Config`]) run on the time the I/O layer passes to
/// [`handle_timeout`](Self::handle_timeout), at the deadline
/// [`poll_timeout`](Self::poll_timeout) gives.
///
/// ```
/// use bytes::Buf;
/// use ws_proto::{Connection, Event, Message, Role};
///
/// let mut client = Connection::new(Role::Client, Default::default());
/// let mut server = Connection::new(Role::Server, Default::default());
/// client.send(Message::text("Hello")).unwrap();
///
/// // Move the client's bytes to the server.
/// let out = client.transmit();
/// let bytes = out.copy_to_bytes(out.remaining());
/// server.receive_data(&bytes);
/// assert_eq!(server.poll_event().unwrap(), Some(Event::Message(Message::text("Hello"))));
/// assert_eq!(server.poll_event().unwrap(), None); // needs more bytes
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    state: State,
    /// Received bytes not yet consumed.
    rbuf: BytesMut,
    frame: Option<InFrame>,
    message: Option<InMessage>,
    utf8: Utf8Validator,
    send: SendBuf,
    /// An outgoing fragmented message is unfinished.
    sending_fragments: bool,
    pending_pong: Option<Bytes>,
    coalesced_pings: u32,
    /// permessage-deflate, when negotiated.
    deflate: Option<Codec>,
    close: CloseInfo,
    /// We failed the connection; input is read only to find the peer's close.
    failed: bool,
    /// The transport reached end of file.
    eof: bool,
    /// The abnormal end was already reported.
    eof_reported: bool,
    /// The first error that ended the connection (sticky).
    failure: Option<ProtocolError>,
    /// An error raised outside `poll_event` (a timer), which the next
    /// `poll_event` reports.
    unreported: Option<ProtocolError>,
    /// The mode of the current `poll_*` call: deliver fragments.
    fragments: bool,
    timers: timers::Timers,
}

impl Connection {
    /// A connection whose opening handshake has completed.
    pub fn new(role: Role, config: Config) -> Self {
        Self {
            role,
            config,
            state: State::Open,
            rbuf: BytesMut::new(),
            frame: None,
            message: None,
            utf8: Utf8Validator::default(),
            send: SendBuf::default(),
            sending_fragments: false,
            pending_pong: None,
            coalesced_pings: 0,
            deflate: None,
            close: CloseInfo::default(),
            failed: false,
            eof: false,
            eof_reported: false,
            failure: None,
            unreported: None,
            fragments: false,
            timers: Default::default(),
        }
    }

    // ---- getters ----

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The closing-handshake state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The close frames exchanged so far.
    pub fn close_info(&self) -> &CloseInfo {
        &self.close
    }

    /// Bytes queued for the transport and not yet written (like a browser's
    /// `bufferedAmount`), including a pong waiting for the backlog to drain.
    pub fn buffered_amount(&self) -> usize {
        // A waiting pong is only ever sent while Open (`flush_pending_pong`).
        let pending = self
            .pending_pong
            .as_ref()
            .filter(|_| self.state == State::Open);
        let pong = pending.map_or(0, |p| {
            let mask = if self.role == Role::Client { 4 } else { 0 };
            2 + mask + p.len()
        });
        self.send.remaining() + pong
    }

    /// Whether the caller should now close the transport: the connection is
    /// closed and everything queued was written, and either we are the
    /// server (which closes TCP first, §7.1.1), or the connection failed, or
    /// the peer already closed its side. A client whose closing handshake
    /// completed should wait a while for the server to close, then close.
    pub fn wants_transport_closed(&self) -> bool {
        self.state == State::Closed
            && self.send.remaining() == 0
            && (self.role == Role::Server || self.failed || self.eof || self.timers.linger_over())
    }

    /// The first error that ended the connection, if one did: a rule the
    /// peer broke, an end of the transport without a closing handshake, a
    /// timer that ran out. It stays: every later call returns the same.
    pub fn failure(&self) -> Option<&ProtocolError> {
        self.failure.as_ref()
    }

    // ---- inputs ----

    /// Hand over bytes received from the transport.
    pub fn receive_data(&mut self, data: &[u8]) {
        if self.state != State::Closed {
            self.rbuf.extend_from_slice(data);
        }
    }

    /// The read buffer, for an I/O layer that reads straight into it
    /// (saving a copy). Only append to it: the bytes already in it are the
    /// connection's. It may also be replaced by a buffer holding the same
    /// bytes, for example one with room for exactly the rest of the frame
    /// (see [`read_hint`](Self::read_hint)), or an empty one by another
    /// empty one (a pool of buffers for idle connections).
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    /// How many more bytes the frame being received still needs, when its
    /// header has arrived (0 otherwise): an I/O layer can make room for all
    /// of it at once instead of growing its buffer read by read. Never more
    /// than [`Config::max_frame_size`]. When the read buffer holds nothing
    /// after the frame once it is complete (give it room for exactly what
    /// it holds plus this hint, or a little more), the frame's payload
    /// becomes that whole buffer, with no copy.
    pub fn read_hint(&self) -> usize {
        match self.frame {
            Some(f) if !f.discard && self.state != State::Closed => {
                (f.header.payload_len as usize).saturating_sub(self.rbuf.len())
            }
            _ => 0,
        }
    }

    /// The transport reached end of file: the peer will send nothing more.
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    /// Release the memory of empty buffers (for idle connections).
    pub fn shrink_buffers(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        self.send.shrink();
    }

    /// Use permessage-deflate as negotiated in the handshake (see
    /// [`crate::deflate`]). Call it before any data moves.
    pub fn set_deflate(&mut self, negotiated: Negotiated) {
        self.deflate = Some(Codec::new(negotiated));
    }

    /// The permessage-deflate parameters in use, if any.
    pub fn deflate(&self) -> Option<Negotiated> {
        self.deflate.as_ref().map(Codec::negotiated)
    }

    // ---- outputs ----

    /// The next event, decoding as much of the received bytes as needed.
    ///
    /// `Ok(None)` means more bytes are needed (or the connection is closed).
    /// An error means the peer broke the protocol: a close frame with
    /// [`ProtocolError::close_code`] is queued, the state is
    /// [`Closing`](State::Closing) (still reading, to find the peer's close
    /// frame) or [`Closed`](State::Closed), and later calls return
    /// `Ok(None)`. An error is reported once.
    #[inline]
    pub fn poll_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        // Nothing buffered between frames, the common case when an I/O
        // layer asks before reading: answered without the decoder's call.
        if self.rbuf.is_empty() && self.frame.is_none() && !self.eof && self.state != State::Closed
        {
            return Ok(None);
        }
        self.fragments = self.config.deliver_fragments;
        self.decode_event()
    }

    /// The next whole message: [`poll_event`](Self::poll_event) with data
    /// messages always reassembled, whatever
    /// [`Config::deliver_fragments`] says. For an I/O layer that hands
    /// whole messages on; use one of the two for a connection's life.
    #[inline]
    pub fn poll_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        if self.rbuf.is_empty() && self.frame.is_none() && !self.eof && self.state != State::Closed
        {
            return Ok(None);
        }
        self.fragments = false;
        match self.decode_event()? {
            Some(Event::Message(m)) => Ok(Some(m)),
            // Not produced with `fragments` off.
            Some(Event::Fragment(_)) | None => Ok(None),
        }
    }

    fn decode_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        if let Some(e) = self.unreported.take() {
            return Err(e);
        }
        loop {
            if self.state == State::Closed {
                self.rbuf.clear();
                return self.check_eof();
            }
            let Some(mut frame) = self.frame else {
                match FrameHeader::decode(&self.rbuf) {
                    Ok(Some((header, n))) => {
                        self.rbuf.advance(n);
                        let mut frame = InFrame {
                            header,
                            done: 0,
                            discard: self.failed,
                        };
                        if !self.failed {
                            if let Err(e) = self.check_header(&header) {
                                frame.discard = true;
                                self.frame = Some(frame);
                                return Err(self.fail(e));
                            }
                        } else if header.payload_len > self.config.max_frame_size as u64 {
                            self.state = State::Closed;
                        }
                        self.frame = Some(frame);
                        continue;
                    }
                    Ok(None) => return self.check_eof(),
                    // Already failed and reported once: the stream can no
                    // longer be read to the peer's close frame.
                    Err(_) if self.failed => {
                        self.state = State::Closed;
                        continue;
                    }
                    Err(e) => return Err(self.fail(e)),
                }
            };
            let len = frame.header.payload_len as usize;
            if frame.discard {
                let n = self.rbuf.len().min(len - frame.done);
                self.rbuf.advance(n);
                frame.done += n;
                if frame.done < len {
                    self.frame = Some(frame);
                    return self.check_eof();
                }
                self.frame = None;
                if frame.header.opcode == OpCode::Close {
                    // Read past a failure: its content no longer matters.
                    self.close.received.get_or_insert_with(no_status);
                    self.state = State::Closed;
                }
                continue;
            }
            let avail = self.rbuf.len().min(len);
            if avail > frame.done {
                let text = self.is_text(&frame.header);
                let new = &mut self.rbuf[frame.done..avail];
                if let Some(key) = frame.header.mask {
                    apply_mask_at(new, key, frame.done);
                }
                if text && self.utf8.feed(new).is_err() {
                    frame.discard = true;
                    frame.done = 0;
                    self.frame = Some(frame);
                    let err = self.fail(ProtocolError::InvalidUtf8);
                    if avail < len {
                        // Failed inside a frame still arriving (fail fast,
                        // §8.1): a peer that reads our close may never send
                        // the rest of it, so what follows cannot be read as
                        // frames. Stop reading.
                        self.state = State::Closed;
                        self.frame = None;
                        self.rbuf.clear();
                    }
                    return Err(err);
                }
                frame.done = avail;
            }
            if avail < len {
                self.frame = Some(frame);
                return self.check_eof();
            }
            self.frame = None;
            let kept = self.payload_is_delivered(&frame.header);
            let payload = self.take_payload(len, kept);
            match self.on_frame(frame.header, payload) {
                Ok(Some(event)) => return Ok(Some(event)),
                Ok(None) => {}
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// Whether a frame's payload reaches the application as it is, where it
    /// may be kept: control frames, a whole uncompressed message in one
    /// frame, uncompressed fragments when fragments are delivered. Other
    /// payloads are inflated or appended to a message, then dropped.
    fn payload_is_delivered(&self, h: &FrameHeader) -> bool {
        let whole = h.fin && h.opcode != OpCode::Continuation;
        h.opcode.is_control() || (!self.is_compressed(h) && (whole || self.fragments))
    }

    /// Whether a data frame carries permessage-deflate data: RSV1 on a
    /// message's first frame marks the whole message (RFC 7692 §6).
    fn is_compressed(&self, h: &FrameHeader) -> bool {
        match h.opcode {
            OpCode::Continuation => self.message.as_ref().is_some_and(|m| m.compressed),
            _ => h.rsv & RSV1 != 0,
        }
    }

    /// The next `len` received bytes, as a payload. One the application
    /// may keep (`kept`) holds little else alive: the whole buffer when it
    /// holds exactly this payload (an I/O layer sized it to the frame, see
    /// [`read_hint`](Self::read_hint)); a copy when it is small, or when
    /// the buffer has more than twice its size of room from it on (all of
    /// which it would keep alive); the whole
    /// buffer again when nothing follows the payload in it (the room left
    /// would only be kept alive by it, and a read into that room would
    /// need a new buffer anyway); else split off the buffer without a copy.
    /// One used and dropped at once is split off: the buffer is whole again
    /// when it is dropped.
    fn take_payload(&mut self, len: usize, kept: bool) -> Bytes {
        if len == self.rbuf.capacity() {
            std::mem::take(&mut self.rbuf).freeze()
        } else if kept && (len <= COPY_OUT_MAX || self.rbuf.capacity() > 2 * len) {
            let payload = Bytes::copy_from_slice(&self.rbuf[..len]);
            self.rbuf.advance(len);
            payload
        } else if kept && len == self.rbuf.len() {
            std::mem::take(&mut self.rbuf).freeze()
        } else {
            self.rbuf.split_to(len).freeze()
        }
    }

    /// The bytes to write to the transport. Write what you can, then
    /// [`advance`](Buf::advance) it by the number of bytes written.
    pub fn transmit(&mut self) -> &mut SendBuf {
        self.flush_pending_pong();
        &mut self.send
    }

    // ---- commands ----

    /// Queue a message: text, binary, ping, pong, or close (as
    /// [`close`](Self::close)). Data messages are split into frames of
    /// [`Config::fragment_size`] when it is set.
    pub fn send(&mut self, message: Message) -> Result<(), SendError> {
        match message {
            Message::Text(t) => self.send_data(OpCode::Text, t.into_bytes()),
            Message::Binary(b) => self.send_data(OpCode::Binary, b),
            Message::Ping(p) => self.send_control(OpCode::Ping, p),
            Message::Pong(p) => self.send_control(OpCode::Pong, p),
            Message::Close(f) => self.close(f),
        }
    }

    /// The error [`send`](Self::send) would return for `message` now,
    /// without queueing anything: lets a caller keep a message it could not
    /// send.
    pub fn check_send(&self, message: &Message) -> Result<(), SendError> {
        self.check_open()?;
        match message {
            Message::Text(_) | Message::Binary(_) if self.sending_fragments => {
                Err(SendError::FragmentInProgress)
            }
            Message::Text(_) | Message::Binary(_) => Ok(()),
            Message::Ping(p) | Message::Pong(p) if p.len() > MAX_CONTROL_PAYLOAD => {
                Err(SendError::ControlTooLong(p.len()))
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(None) => Ok(()),
            Message::Close(Some(f)) => check_close_frame(f),
        }
    }

    /// Queue one frame of a data message, for messages produced piece by
    /// piece. The first fragment's `kind` sets the message type (later
    /// fragments' `kind` is ignored); `fin` ends the message. No other data
    /// message may be sent until it ends; control messages may.
    pub fn send_fragment(&mut self, fragment: Fragment) -> Result<(), SendError> {
        self.check_open()?;
        let opcode = if self.sending_fragments {
            OpCode::Continuation
        } else {
            match fragment.kind {
                DataKind::Text => OpCode::Text,
                DataKind::Binary => OpCode::Binary,
            }
        };
        self.write_frame(fragment.fin, opcode, fragment.data);
        self.sending_fragments = !fragment.fin;
        if fragment.fin {
            self.timers.data_moved();
        }
        Ok(())
    }

    /// Queue a message encoded by [`PreparedMessage::new`]. On a server
    /// connection nothing is encoded again; a client must mask, so it
    /// encodes the frame with a fresh mask.
    pub fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<(), SendError> {
        self.check_prepared(prepared)?;
        if prepared.opcode.is_data() {
            self.timers.data_moved();
        }
        // A server sends the header encoded once; a client masks.
        let mask = match self.role {
            Role::Server => {
                self.send
                    .push_slice(&prepared.header[..usize::from(prepared.header_len)]);
                None
            }
            Role::Client => self.write_header(true, 0, prepared.opcode, prepared.payload.len()),
        };
        match mask {
            Some(key) => self.send.push_masked(&prepared.payload, key),
            None => self.send.push_shared(&prepared.payload),
        }
        Ok(())
    }

    /// Take a prepared message as sent without queueing it, for a caller
    /// that writes the frame to the transport itself (a broadcast writing to
    /// many sockets in one pass). Returns the frame to write, or `Ok(None)`
    /// when the message must go through [`send_prepared`](Self::send_prepared)
    /// instead: on a client connection (which masks each frame), for a
    /// large message, or when bytes already wait in the send buffer (they
    /// go first). Whatever of the frame the transport does not take goes
    /// back with [`requeue_unwritten`](Self::requeue_unwritten), before
    /// anything queued since.
    pub fn send_prepared_direct<'p>(
        &mut self,
        prepared: &'p PreparedMessage,
    ) -> Result<Option<&'p Bytes>, SendError> {
        self.check_prepared(prepared)?;
        if self.role != Role::Server || prepared.frame.is_empty() || self.send.remaining() > 0 {
            return Ok(None);
        }
        if prepared.opcode.is_data() {
            self.timers.data_moved();
        }
        Ok(Some(&prepared.frame))
    }

    /// The part of a frame taken by
    /// [`send_prepared_direct`](Self::send_prepared_direct) that the
    /// transport did not take: queued ahead of everything queued since.
    pub fn requeue_unwritten(&mut self, rest: Bytes) {
        self.send.push_front(rest);
    }

    /// Start the closing handshake (§7.1.2) by queueing a close frame, with
    /// a status code and reason or (`None`) without. Nothing can be sent
    /// after it; received messages are still delivered until the peer's
    /// close frame arrives.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
        self.check_open()?;
        if let Some(f) = &frame {
            check_close_frame(f)?;
        }
        self.write_close(frame.as_ref());
        self.close.sent = Some(frame.unwrap_or_else(no_status));
        self.close.initiator.get_or_insert(Initiator::Local);
        self.state = State::Closing;
        Ok(())
    }

    // ---- internals ----

    /// Whether a prepared message can be sent now: the connection is open,
    /// and a data message does not cut into a fragmented one.
    fn check_prepared(&self, prepared: &PreparedMessage) -> Result<(), SendError> {
        self.check_open()?;
        if prepared.opcode.is_data() && self.sending_fragments {
            return Err(SendError::FragmentInProgress);
        }
        Ok(())
    }

    fn check_open(&self) -> Result<(), SendError> {
        if self.state == State::Open && !self.failed {
            Ok(())
        } else {
            Err(SendError::Closed)
        }
    }

    fn send_data(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), SendError> {
        self.check_open()?;
        if self.sending_fragments {
            return Err(SendError::FragmentInProgress);
        }
        self.timers.data_moved();
        // RFC 7692 §6.1: a compressed message has RSV1 on its first frame.
        let (payload, mut rsv) = match self.deflate.as_mut().and_then(|c| c.compress(&payload)) {
            Some(compressed) => (compressed, RSV1),
            None => (payload, 0),
        };
        let size = self.config.fragment_size;
        if size == 0 || payload.len() <= size {
            self.write_frame_rsv(true, rsv, opcode, payload);
            return Ok(());
        }
        let mut opcode = opcode;
        let mut rest = payload;
        while !rest.is_empty() {
            let piece = rest.split_to(size.min(rest.len()));
            self.write_frame_rsv(rest.is_empty(), rsv, opcode, piece);
            opcode = OpCode::Continuation;
            rsv = 0;
        }
        Ok(())
    }

    fn send_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), SendError> {
        self.check_open()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong(payload.len()));
        }
        self.write_frame(true, opcode, payload);
        Ok(())
    }

    fn write_frame(&mut self, fin: bool, opcode: OpCode, payload: Bytes) {
        self.write_frame_rsv(fin, 0, opcode, payload);
    }

    /// Takes the payload by value: cloning a `Bytes` built from a `Vec`
    /// allocates, and a small payload is copied into the send buffer anyway.
    fn write_frame_rsv(&mut self, fin: bool, rsv: u8, opcode: OpCode, payload: Bytes) {
        if self.role == Role::Server {
            // Unmasked: header and payload are queued in one step.
            let (header, n) = FrameHeader {
                fin,
                rsv,
                opcode,
                mask: None,
                payload_len: payload.len() as u64,
            }
            .encode();
            self.send.push_frame(&header[..n], payload);
            return;
        }
        match self.write_header(fin, rsv, opcode, payload.len()) {
            None => self.send.push_bytes(payload),
            Some(key) => self.send.push_masked(&payload, key),
        }
    }

    /// Queue a frame header; returns the masking key the payload that
    /// follows must be masked with, if any.
    fn write_header(&mut self, fin: bool, rsv: u8, opcode: OpCode, len: usize) -> Option<[u8; 4]> {
        // §5.3: a client masks every frame with a fresh key from a strong
        // source of entropy (a thread-local ChaCha CSPRNG seeded by the OS).
        let mask = match self.role {
            Role::Client => Some(rand::random::<[u8; 4]>()),
            Role::Server => None,
        };
        let (header, n) = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len: len as u64,
        }
        .encode();
        self.send.push_slice(&header[..n]);
        mask
    }

    /// Queue a close frame (§5.5.1), its payload built on the stack: every
    /// connection writes one, so it costs no allocation.
    fn write_close(&mut self, frame: Option<&CloseFrame>) {
        let (body, n) = match frame {
            Some(f) => f.encode(),
            None => ([0; 2 + crate::frame::MAX_CLOSE_REASON], 0),
        };
        let body = &body[..n];
        match self.write_header(true, 0, OpCode::Close, n) {
            None => self.send.push_slice(body),
            Some(key) => self.send.push_masked(body, key),
        }
    }

    /// Header checks that need connection state (§5.1, §5.2, §5.4) and the
    /// size limits.
    fn check_header(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        // §5.2: RSV bits only as a negotiated extension defines them.
        // permessage-deflate sets RSV1 on the first frame of a data message
        // (RFC 7692 §6), never on continuations or control frames.
        let allowed = match h.opcode {
            OpCode::Text | OpCode::Binary if self.deflate.is_some() => RSV1,
            _ => 0,
        };
        if h.rsv & !allowed != 0 {
            return Err(ProtocolError::ReservedBits(h.rsv));
        }
        if h.payload_len > self.config.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooBig {
                size: h.payload_len,
                max: self.config.max_frame_size,
            });
        }
        let (so_far, compressed) = match (h.opcode, &self.message) {
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Continuation, Some(m)) => (m.size, m.compressed),
            _ => (0, h.rsv & RSV1 != 0),
        };
        // A compressed message is limited by its inflated size, checked
        // while inflating.
        let size = so_far + h.payload_len;
        if !h.opcode.is_control() && !compressed && size > self.config.max_message_size as u64 {
            return Err(ProtocolError::MessageTooBig {
                size,
                max: self.config.max_message_size,
            });
        }
        Ok(())
    }

    /// Whether the frame's payload is text to validate as it arrives.
    /// Compressed text is checked after inflating instead.
    fn is_text(&self, h: &FrameHeader) -> bool {
        let text = match h.opcode {
            OpCode::Text => true,
            OpCode::Continuation => matches!(&self.message, Some(m) if m.kind == DataKind::Text),
            _ => false,
        };
        text && !self.is_compressed(h)
    }

    fn on_frame(
        &mut self,
        header: FrameHeader,
        payload: Bytes,
    ) -> Result<Option<Event>, ProtocolError> {
        match header.opcode {
            OpCode::Ping => {
                // §5.5.2: answer with a pong carrying the same payload, unless
                // we already sent a close frame.
                if self.state == State::Open {
                    self.queue_pong(payload.clone())?;
                }
                Ok(Some(Event::Message(Message::Ping(payload))))
            }
            OpCode::Pong if self.is_keepalive_pong(&payload) => Ok(None),
            OpCode::Pong => Ok(Some(Event::Message(Message::Pong(payload)))),
            OpCode::Close => self.on_close(payload).map(Some),
            OpCode::Text | OpCode::Binary | OpCode::Continuation => self.on_data(header, payload),
        }
    }

    /// A data frame (§5.4, §5.6), compressed or not (RFC 7692 §6.2).
    fn on_data(
        &mut self,
        header: FrameHeader,
        payload: Bytes,
    ) -> Result<Option<Event>, ProtocolError> {
        let fin = header.fin;
        let deliver = self.fragments;
        if fin {
            self.timers.data_moved();
        }
        let kind_of = |op| {
            if op == OpCode::Text {
                DataKind::Text
            } else {
                DataKind::Binary
            }
        };
        // The common case: a whole uncompressed message in one frame, handed
        // over as it is (see `take_payload`). Its UTF-8 was checked as it
        // arrived.
        if fin && header.opcode != OpCode::Continuation && header.rsv == 0 {
            let kind = kind_of(header.opcode);
            if kind == DataKind::Text {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            return Ok(Some(if deliver {
                Event::Fragment(Fragment {
                    kind,
                    data: payload,
                    fin,
                })
            } else {
                Event::Message(data_message(kind, payload))
            }));
        }
        let mut message = match header.opcode {
            OpCode::Continuation => self
                .message
                .take()
                .ok_or(ProtocolError::UnexpectedContinuation)?,
            op => InMessage {
                kind: kind_of(op),
                size: 0,
                compressed: header.rsv & RSV1 != 0,
                parts: Vec::new(),
                inflated: Vec::new(),
                inflated_len: 0,
            },
        };
        message.size += payload.len() as u64;
        let kind = message.kind;
        let mut piece = Bytes::new();
        if message.compressed {
            // Inflate this frame now, with the message size limit applied to
            // the inflated size as it grows (a bomb stops at the limit).
            let mut out = if deliver {
                Vec::new()
            } else {
                std::mem::take(&mut message.inflated)
            };
            let before = out.len();
            let base = message.inflated_len - before;
            let max = self.config.max_message_size;
            let codec = self
                .deflate
                .as_mut()
                .ok_or(ProtocolError::ReservedBits(RSV1))?;
            codec
                .decompress(&payload, fin, &mut out, max.saturating_sub(base))
                .map_err(|e| match e {
                    InflateError::TooBig => ProtocolError::MessageTooBig {
                        size: (base + out.len()) as u64,
                        max,
                    },
                    InflateError::Corrupt(why) => ProtocolError::InvalidCompressedData(why),
                })?;
            if kind == DataKind::Text {
                self.utf8
                    .feed(&out[before..])
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            message.inflated_len = base + out.len();
            if deliver {
                piece = Bytes::from(out);
            } else {
                message.inflated = out;
            }
        } else if deliver {
            piece = payload;
        } else {
            message.parts.extend_from_slice(&payload);
        }
        if !fin {
            self.message = Some(message);
            return Ok(deliver.then_some(Event::Fragment(Fragment {
                kind,
                data: piece,
                fin,
            })));
        }
        if kind == DataKind::Text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if deliver {
            return Ok(Some(Event::Fragment(Fragment {
                kind,
                data: piece,
                fin,
            })));
        }
        let mut data = if message.compressed {
            message.inflated
        } else {
            message.parts
        };
        // Built by appending, the buffer may be up to twice the message's
        // size. Give the spare room back (allocators shrink in place), so
        // a message the application keeps costs its own size.
        data.shrink_to_fit();
        let data = Bytes::from(data);
        Ok(Some(Event::Message(data_message(kind, data))))
    }

    fn on_close(&mut self, payload: Bytes) -> Result<Event, ProtocolError> {
        let frame = CloseFrame::parse(payload).inspect_err(|_| {
            // The peer closed, badly: `fail` answers and no second close
            // frame will come.
            self.close.received = Some(no_status());
        })?;
        self.close.received = Some(frame.clone().unwrap_or_else(no_status));
        if self.state == State::Open {
            // §5.5.1: answer with a close frame, typically echoing the code.
            self.close.initiator = Some(Initiator::Peer);
            let reply = frame.as_ref().map(|f| CloseFrame::new(f.code, ""));
            self.write_close(reply.as_ref());
            self.close.sent = Some(reply.unwrap_or_else(no_status));
        }
        self.state = State::Closed;
        self.message = None;
        Ok(Event::Message(Message::Close(frame)))
    }

    fn queue_pong(&mut self, payload: Bytes) -> Result<(), ProtocolError> {
        // A waiting pong goes out first if the backlog has drained meanwhile,
        // so only pings that really find the backlog full are coalesced.
        self.flush_pending_pong();
        if self.pending_pong.is_none()
            && self.send.remaining() <= self.config.pong_backlog_threshold
        {
            self.write_frame(true, OpCode::Pong, payload);
            return Ok(());
        }
        if self.pending_pong.replace(payload).is_some() {
            self.coalesced_pings += 1;
            if self.coalesced_pings > self.config.max_coalesced_pings {
                return Err(ProtocolError::WriteBufferFull {
                    queued: self.send.remaining(),
                });
            }
        }
        Ok(())
    }

    #[inline]
    fn flush_pending_pong(&mut self) {
        // Checked inline on every `transmit`; the write is out of line.
        if self.pending_pong.is_some()
            && self.send.remaining() <= self.config.pong_backlog_threshold
        {
            self.write_pending_pong();
        }
    }

    #[cold]
    fn write_pending_pong(&mut self) {
        if let Some(p) = self.pending_pong.take() {
            if self.state == State::Open {
                self.write_frame(true, OpCode::Pong, p);
            }
            self.coalesced_pings = 0;
        }
    }

    /// Fail the connection (§7.1.7): queue a close frame with the error's
    /// code, and keep reading only to find the peer's close frame, if the
    /// framing still makes sense.
    fn fail(&mut self, err: ProtocolError) -> ProtocolError {
        if self.state == State::Open {
            let mut reason = err.to_string();
            reason.truncate(crate::frame::utf8_cut(
                &reason,
                crate::frame::MAX_CLOSE_REASON,
            ));
            let frame = CloseFrame::new(err.close_code(), reason);
            self.write_close(Some(&frame));
            self.close.sent = Some(frame);
            self.close.initiator.get_or_insert(Initiator::Local);
            self.state = State::Closing;
        }
        if self.close.received.is_some() {
            // The peer already sent its close frame: nothing more to wait for.
            self.state = State::Closed;
        }
        self.failed = true;
        self.failure.get_or_insert_with(|| err.clone());
        self.pending_pong = None;
        self.message = None;
        self.utf8.reset();
        if !err.framing_intact() {
            self.state = State::Closed;
            self.frame = None;
            self.rbuf.clear();
        }
        err
    }

    /// Called when no more can be decoded from what was received.
    fn check_eof(&mut self) -> Result<Option<Event>, ProtocolError> {
        if !self.eof {
            return Ok(None);
        }
        let clean = self.close.received.is_some();
        self.state = State::Closed;
        self.frame = None;
        self.rbuf.clear();
        if clean || self.failed || self.eof_reported {
            return Ok(None);
        }
        self.eof_reported = true;
        self.failure.get_or_insert(ProtocolError::AbnormalClosure);
        Err(ProtocolError::AbnormalClosure)
    }

    /// End the connection at once, without a closing handshake (a timer
    /// ran out: the peer is gone or does not read): nothing more is sent or
    /// read, and `err` is reported by the next `poll_event`.
    fn abort(&mut self, err: ProtocolError) -> ProtocolError {
        self.state = State::Closed;
        self.failed = true;
        self.send.clear();
        self.pending_pong = None;
        self.frame = None;
        self.message = None;
        self.rbuf.clear();
        if self.failure.is_none() {
            self.failure = Some(err.clone());
            self.unreported = Some(err.clone());
        }
        err
    }
}

impl OpCode {
    fn is_data(self) -> bool {
        !self.is_control()
    }
}

fn data_message(kind: DataKind, payload: Bytes) -> Message {
    match kind {
        DataKind::Text => Message::Text(Utf8Bytes::from_validated(payload)),
        DataKind::Binary => Message::Binary(payload),
    }
}

/// Whether a close frame may be sent (§5.5.1, §7.4).
fn check_close_frame(f: &CloseFrame) -> Result<(), SendError> {
    if !f.code.is_sendable() {
        return Err(SendError::InvalidCloseCode(f.code.as_u16()));
    }
    if f.reason.len() > crate::frame::MAX_CLOSE_REASON {
        return Err(SendError::ReasonTooLong(f.reason.len()));
    }
    Ok(())
}

fn no_status() -> CloseFrame {
    CloseFrame::new(CloseCode::NO_STATUS, "")
}

#[cfg(test)]
mod tests;
