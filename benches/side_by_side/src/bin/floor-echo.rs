//! The floor: the least CPU an echo server that hands whole messages to
//! its application can spend per message with the sockets API, to tell
//! what no WebSocket library can go below.
//!
//! It is not a WebSocket library and not a server anyone should run: it
//! checks nothing a peer sends beyond what it needs to find the frames
//! (no UTF-8, no reserved bits), allocates nothing per message, and has no
//! timers. It makes the system calls an echo cannot do without: on
//! readiness (epoll, edge-triggered, through mio as tokio does) one read,
//! as much as the socket holds, into the connection's buffer (256 KiB, or
//! the size of the largest frame so far; its data starts half a page into
//! a page, see `Buffer`); then one write of every frame that read
//! completed (`send` when they are one piece, else `writev`: Linux's
//! `writev` costs more per call). Payloads are unmasked in place and the
//! server's frame header is written in place over the end of the client's
//! (it is 4 bytes shorter: no masking key), so nothing is copied in user
//! space unless the socket takes less than offered.
//!
//! With `FLOOR_STREAM=1` in its environment it echoes each frame's bytes
//! as they arrive instead, before the frame is complete (cut-through), as
//! no message-based library can: for large messages that is much cheaper,
//! since the data is sent on while it is still in the CPU's cache.
//!
//! With `FLOOR_RPC=1` it is the floor of a JSON-RPC server instead: each
//! complete text frame is a call, answered in one frame; the answers to
//! the frames of one read go out in one write. Per call it does what any
//! JSON-RPC 2.0 server must and nothing more: check the payload is UTF-8
//! (RFC 6455 §8.1), parse the whole request with serde_json (borrowing
//! `jsonrpc`, `method` and `id`, reading `params` as two integers), and
//! write `{"jsonrpc":"2.0","result":a+b,"id":<id as sent>}` (or an error
//! object) into the connection's output buffer. No task, no queue, no
//! allocation per call, nothing checked beyond that. With `FLOOR_RPC=each`
//! each answer is written at once instead, one `send` per call: what a
//! server that does not gather its answers does (at one connection with
//! calls pipelined, it keeps the client busy while it still answers).
//!
//! The handshake reads the request head and answers 101 with the accept
//! key (RFC 6455 §4.2.2); nothing else in it is checked. A close frame is
//! answered with the same payload, and the connection closed.

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use side_by_side_peers::floor::{
    client_header, find, next_frame, push_server_frame, server_header_in_place, upgrade_response,
    Buffer, Next, MAX_FRAME, MAX_HEAD, READ_BUFFER,
};
use ws_proto::frame::apply_mask_at;

const LISTENER: Token = Token(usize::MAX);
/// Unwritten bytes from which a connection stops reading until they drain.
const WRITE_LIMIT: usize = 4 * 1024 * 1024;

fn main() -> io::Result<()> {
    let addr = side_by_side_peers::listen_addr("floor-echo");
    let stream = std::env::var_os("FLOOR_STREAM").is_some_and(|v| v == "1");
    let rpc = std::env::var("FLOOR_RPC").unwrap_or_default();
    let mode = match (stream, rpc.as_str()) {
        (_, "1") => Mode::Rpc,
        (_, "each") => Mode::RpcEach,
        (true, _) => Mode::Stream,
        (false, _) => Mode::Echo,
    };
    let mut listener = bind(addr)?;
    println!("listening on ws://{}", listener.local_addr()?);
    io::stdout().flush()?;

    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut conns, &mut free, mode);
                continue;
            }
            let i = event.token().0;
            let Some(conn) = conns.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let mut alive = true;
            if event.is_writable() {
                alive = conn.on_writable();
            }
            if alive && (event.is_readable() || event.is_read_closed() || event.is_error()) {
                alive = conn.on_readable();
            }
            if !alive {
                if let Some(mut conn) = conns[i].take() {
                    let _ = poll.registry().deregister(&mut conn.sock);
                }
                free.push(i);
            }
        }
    }
}

/// The shared listener, non-blocking for mio.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = side_by_side_peers::floor::listener(addr)?;
    listener.set_nonblocking(true)?;
    Ok(TcpListener::from_std(listener))
}

fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    conns: &mut Vec<Option<Conn>>,
    free: &mut Vec<usize>,
    mode: Mode,
) {
    loop {
        match listener.accept() {
            Ok((mut sock, _)) => {
                let _ = sock.set_nodelay(true);
                let i = free.pop().unwrap_or_else(|| {
                    conns.push(None);
                    conns.len() - 1
                });
                if poll
                    .registry()
                    .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
                    .is_err()
                {
                    free.push(i);
                    continue;
                }
                conns[i] = Some(Conn::new(sock, mode));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of file descriptors: the next readiness event retries.
                eprintln!("accept: {e}");
                return;
            }
        }
    }
}

/// What the server does with frames.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Echo each once complete.
    Echo,
    /// Echo their bytes as they arrive (`FLOOR_STREAM=1`).
    Stream,
    /// Answer each text frame as a JSON-RPC call (`FLOOR_RPC=1`).
    Rpc,
    /// The same, each answer written at once (`FLOOR_RPC=each`).
    RpcEach,
}

/// The frame being echoed.
struct Frame {
    /// Payload bytes still to come.
    remaining: u64,
    key: [u8; 4],
    /// Payload bytes already passed.
    offset: usize,
    /// Echo it (not a pong).
    echo: bool,
    close: bool,
}

struct Conn {
    sock: TcpStream,
    buf: Buffer,
    /// Bytes at the front of `buf` kept from the last read: part of a
    /// request head, or of a frame (when streaming, of a frame header).
    kept: usize,
    open: bool,
    frame: Option<Frame>,
    /// What the socket did not take, to write before reading more.
    unwritten: Vec<u8>,
    /// Stopped reading for `unwritten` to drain (edge-triggered readiness
    /// will not be reported again for data already there).
    read_paused: bool,
    /// A close frame was answered: close once it is written.
    closing: bool,
    /// (start, end) in `buf` of the pieces to write, kept between reads.
    pieces: Vec<(usize, usize)>,
    /// What it does with the frames.
    mode: Mode,
    /// The answers to write (`FLOOR_RPC=1`), and one answer's payload.
    out: Vec<u8>,
    answer: Vec<u8>,
}

impl Conn {
    fn new(sock: TcpStream, mode: Mode) -> Self {
        Self {
            sock,
            buf: Buffer::new(READ_BUFFER),
            kept: 0,
            open: false,
            frame: None,
            unwritten: Vec::new(),
            read_paused: false,
            closing: false,
            pieces: Vec::with_capacity(64),
            mode,
            out: Vec::new(),
            answer: Vec::new(),
        }
    }

    /// Read and echo until the socket has no more; false to drop the
    /// connection.
    fn on_readable(&mut self) -> bool {
        loop {
            if self.unwritten.len() >= WRITE_LIMIT {
                self.read_paused = true;
                return true;
            }
            let space = self.buf.len() - self.kept;
            let n = match self.sock.read(&mut self.buf[self.kept..]) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            };
            let end = self.kept + n;
            let ok = if self.open {
                self.frames(end)
            } else {
                self.handshake(end)
            };
            if !ok || (self.closing && self.unwritten.is_empty()) {
                return false;
            }
            if self.closing {
                // Nothing more is read; dropped once the close is written.
                return true;
            }
            // A short read emptied the socket: new data raises a new edge.
            if n < space {
                return true;
            }
        }
    }

    fn on_writable(&mut self) -> bool {
        while !self.unwritten.is_empty() {
            match self.sock.write(&self.unwritten) {
                Ok(0) => return false,
                Ok(k) => {
                    self.unwritten.drain(..k);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if self.closing {
            return false;
        }
        if self.read_paused {
            self.read_paused = false;
            return self.on_readable();
        }
        true
    }

    fn handshake(&mut self, end: usize) -> bool {
        let Some(head_end) = find(&self.buf[..end], b"\r\n\r\n").map(|i| i + 4) else {
            self.kept = end;
            return end < MAX_HEAD;
        };
        let Some(response) = upgrade_response(&self.buf[..head_end]) else {
            return false;
        };
        if !write_pieces(
            &mut self.sock,
            &mut self.unwritten,
            response.as_bytes(),
            &[(0, response.len())],
        ) {
            return false;
        }
        self.open = true;
        self.buf.copy_within(head_end..end, 0);
        self.frames(end - head_end)
    }

    fn frames(&mut self, end: usize) -> bool {
        if matches!(self.mode, Mode::Rpc | Mode::RpcEach) {
            self.answer_calls(end)
        } else {
            self.echo(end)
        }
    }

    /// Answer the complete frames in `buf[..end]`, all in one write (one
    /// each with `FLOOR_RPC=each`); an incomplete frame is kept for the
    /// next read. A close frame is echoed
    /// and ends the connection; other control frames are dropped.
    fn answer_calls(&mut self, end: usize) -> bool {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let mut at = 0;
        loop {
            let (len, header_len) = match next_frame(&mut self.buf, at, end) {
                Next::Frame(len, header_len) => (len, header_len),
                Next::Wait => break,
                Next::TooBig => return false,
            };
            let size = header_len + len as usize;
            let opcode = self.buf[at] & 0x0f;
            let k = at + header_len - 4;
            let key = [
                self.buf[k],
                self.buf[k + 1],
                self.buf[k + 2],
                self.buf[k + 3],
            ];
            let payload = at + header_len..at + size;
            apply_mask_at(&mut self.buf[payload.clone()], key, 0);
            at += size;
            match opcode {
                0x1 => {
                    answer_call(&self.buf[payload], &mut self.answer);
                    push_server_frame(&mut out, 0x81, &self.answer);
                    if self.mode == Mode::RpcEach {
                        if !write_pieces(
                            &mut self.sock,
                            &mut self.unwritten,
                            &out,
                            &[(0, out.len())],
                        ) {
                            self.out = out;
                            return false;
                        }
                        out.clear();
                    }
                }
                0x8 => {
                    push_server_frame(&mut out, 0x88, &self.buf[payload]);
                    self.closing = true;
                    break;
                }
                _ => {}
            }
        }
        let ok = out.is_empty()
            || write_pieces(&mut self.sock, &mut self.unwritten, &out, &[(0, out.len())]);
        self.out = out;
        self.buf.copy_within(at..end, 0);
        self.kept = if self.closing { 0 } else { end - at };
        ok
    }

    /// Echo the frames in `buf[..end]`: unmask in place, write the server's
    /// header over the end of the client's, and send them in one write.
    /// An incomplete frame (when streaming, an incomplete header) is kept
    /// for the next read.
    fn echo(&mut self, end: usize) -> bool {
        let mut pieces = std::mem::take(&mut self.pieces);
        pieces.clear();
        let mut at = 0;
        // (A frame of no payload ends with no byte after its header.)
        while at < end || self.frame.as_ref().is_some_and(|f| f.remaining == 0) {
            if let Some(frame) = &mut self.frame {
                let n = (end - at).min(usize::try_from(frame.remaining).unwrap_or(usize::MAX));
                apply_mask_at(&mut self.buf[at..at + n], frame.key, frame.offset);
                if frame.echo {
                    extend(&mut pieces, at, at + n);
                }
                frame.offset += n;
                frame.remaining -= n as u64;
                at += n;
                if frame.remaining == 0 {
                    let close = frame.close;
                    self.frame = None;
                    if close {
                        self.closing = true;
                        break;
                    }
                }
                continue;
            }
            let Some((len, header_len)) = client_header(&self.buf[at..end]) else {
                break;
            };
            if len > MAX_FRAME {
                return false;
            }
            let size = header_len + len as usize;
            if self.mode != Mode::Stream && end - at < size {
                // Wait for the whole frame, in a buffer it fits in (moved
                // to the front below).
                if self.buf.len() < size {
                    self.buf.resize(size, 0);
                }
                break;
            }
            let (out, opcode, key) = server_header_in_place(&mut self.buf, at, header_len, len);
            let echo = opcode != 0xA;
            if echo {
                extend(&mut pieces, out, at + header_len);
            }
            at += header_len;
            self.frame = Some(Frame {
                remaining: len,
                key,
                offset: 0,
                echo,
                close: opcode == 0x8,
            });
        }
        let ok = write_pieces(&mut self.sock, &mut self.unwritten, &self.buf, &pieces);
        self.pieces = pieces;
        let kept = end - at;
        self.buf.copy_within(at..end, 0);
        self.kept = if self.closing { 0 } else { kept };
        ok
    }
}

/// Write `pieces` of `buf`, up to `IOVECS` per `writev` (one call unless a
/// read held more frames than that; one piece by `send`, which costs less
/// than a `writev` of one slice); once the socket takes less than
/// offered, the rest is copied to `unwritten`, to be written first when
/// the socket is writable again.
fn write_pieces(
    sock: &mut TcpStream,
    unwritten: &mut Vec<u8>,
    buf: &[u8],
    pieces: &[(usize, usize)],
) -> bool {
    for batch in pieces.chunks(IOVECS) {
        let mut written = 0;
        if unwritten.is_empty() {
            loop {
                match write_batch(sock, buf, batch) {
                    Ok(k) => {
                        written = k;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
        }
        for &(s, e) in batch {
            let skip = written.min(e - s);
            written -= skip;
            unwritten.extend_from_slice(&buf[s + skip..e]);
        }
    }
    true
}

/// Most pieces per `writev`.
const IOVECS: usize = 64;

/// One write of `batch` (at most `IOVECS` pieces of `buf`): `send` for one
/// piece, else `writev`, whose slice array is built only then.
fn write_batch(sock: &mut TcpStream, buf: &[u8], batch: &[(usize, usize)]) -> io::Result<usize> {
    if let [(s, e)] = batch {
        return sock.write(&buf[*s..*e]);
    }
    let mut slices = [IoSlice::new(&[]); IOVECS];
    for (slice, &(s, e)) in slices.iter_mut().zip(batch) {
        *slice = IoSlice::new(&buf[s..e]);
    }
    sock.write_vectored(&slices[..batch.len()])
}

/// Add `start..end` to the pieces, joined to the last one when adjacent.
fn extend(pieces: &mut Vec<(usize, usize)>, start: usize, end: usize) {
    match pieces.last_mut() {
        Some(last) if last.1 == start => last.1 = end,
        _ => pieces.push((start, end)),
    }
}

/// A call, its members borrowed from the payload.
#[derive(serde::Deserialize)]
struct Call<'a> {
    jsonrpc: &'a str,
    method: &'a str,
    params: (i64, i64),
    #[serde(borrow)]
    id: &'a serde_json::value::RawValue,
}

/// The answer to one call, into `answer` (cleared first).
fn answer_call(payload: &[u8], answer: &mut Vec<u8>) {
    answer.clear();
    let call = std::str::from_utf8(payload)
        .ok()
        .and_then(|text| serde_json::from_str::<Call<'_>>(text).ok());
    match call {
        Some(c) if c.jsonrpc == "2.0" && c.method == "add" => {
            answer.extend_from_slice(br#"{"jsonrpc":"2.0","result":"#);
            let sum = c.params.0.wrapping_add(c.params.1);
            answer.extend_from_slice(itoa::Buffer::new().format(sum).as_bytes());
            answer.extend_from_slice(br#","id":"#);
            answer.extend_from_slice(c.id.get().as_bytes());
            answer.push(b'}');
        }
        Some(c) => {
            answer.extend_from_slice(
                br#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":"#,
            );
            answer.extend_from_slice(c.id.get().as_bytes());
            answer.push(b'}');
        }
        None => answer.extend_from_slice(
            br#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}"#,
        ),
    }
}
