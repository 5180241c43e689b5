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
//! The handshake reads the request head and answers 101 with the accept
//! key (RFC 6455 §4.2.2); nothing else in it is checked. A close frame is
//! answered with the same payload, and the connection closed.

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use ws_proto::frame::apply_mask_at;

const LISTENER: Token = Token(usize::MAX);
const READ_BUFFER: usize = 256 * 1024;
/// Unwritten bytes from which a connection stops reading until they drain.
const WRITE_LIMIT: usize = 4 * 1024 * 1024;
/// Longest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest frame accepted (the connection is dropped beyond it).
const MAX_FRAME: u64 = 64 * 1024 * 1024;

fn main() -> io::Result<()> {
    let addr = side_by_side_peers::listen_addr("floor-echo");
    let stream = std::env::var_os("FLOOR_STREAM").is_some_and(|v| v == "1");
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
                accept_all(&listener, &poll, &mut conns, &mut free, stream);
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

/// A listener with `SO_REUSEADDR` and a backlog of 1024, as every server
/// in the benchmark (mio's own `bind` uses 128).
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(side_by_side_peers::BACKLOG as i32)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    conns: &mut Vec<Option<Conn>>,
    free: &mut Vec<usize>,
    stream: bool,
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
                conns[i] = Some(Conn::new(sock, stream));
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
    /// Echo frames as they arrive (`FLOOR_STREAM=1`), not once complete.
    stream: bool,
}

impl Conn {
    fn new(sock: TcpStream, stream: bool) -> Self {
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
            stream,
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
                self.echo(end)
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
        let Some(key) = header_value(&self.buf[..head_end], b"sec-websocket-key") else {
            return false;
        };
        let accept = ws_proto::handshake::accept_key(key);
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
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
        self.echo(end - head_end)
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
            if !self.stream && end - at < size {
                // Wait for the whole frame, in a buffer it fits in (moved
                // to the front below).
                if self.buf.len() < size {
                    self.buf.resize(size, 0);
                }
                break;
            }
            let first = self.buf[at];
            let opcode = first & 0x0f;
            let key_at = at + header_len - 4;
            let key = [
                self.buf[key_at],
                self.buf[key_at + 1],
                self.buf[key_at + 2],
                self.buf[key_at + 3],
            ];
            // The server's header: the same first byte, the same length
            // encoding without the mask bit, ending where the payload starts.
            let out_len = header_len - 4;
            let out = at + header_len - out_len;
            self.buf[out] = first;
            match out_len {
                2 => self.buf[out + 1] = len as u8,
                4 => {
                    self.buf[out + 1] = 126;
                    self.buf[out + 2..out + 4].copy_from_slice(&(len as u16).to_be_bytes());
                }
                _ => {
                    self.buf[out + 1] = 127;
                    self.buf[out + 2..out + 10].copy_from_slice(&len.to_be_bytes());
                }
            }
            let echo = opcode != 0xA;
            if opcode == 0x9 {
                self.buf[out] = (first & 0xf0) | 0xA; // a ping's pong
            }
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

/// The read buffer. Its data starts half a page into a page: on AMD Zen
/// CPUs the kernel's copy (`rep movsb`) from a received packet into a
/// buffer is about twice as slow when the two addresses are within a few
/// dozen bytes of each other modulo 4 KiB (glibc's `memcpy` avoids
/// `rep movsb` for such copies for this reason), and an allocation as large
/// as this one is mapped on its own, 16 bytes into a page. Measured here at
/// 64 KiB x 1: a buffer starting 4-30 bytes into a page, or 8-60 bytes
/// before its end, made the floor spend 52-62 us of kernel time per message
/// instead of 31-38 us; so did every run with the buffer as `vec!` gave it.
struct Buffer {
    vec: Vec<u8>,
    base: usize,
    len: usize,
}

const PAGE: usize = 4096;
const PAGE_OFFSET: usize = PAGE / 2;

impl Buffer {
    fn new(len: usize) -> Self {
        let mut b = Buffer {
            vec: Vec::new(),
            base: 0,
            len: 0,
        };
        b.resize(len, 0);
        b
    }

    /// As `Vec::resize`: the contents are kept.
    fn resize(&mut self, len: usize, value: u8) {
        let (old_base, old_len) = (self.base, self.len);
        self.vec.resize(len + PAGE, value);
        let base = (PAGE_OFFSET + PAGE - self.vec.as_ptr() as usize % PAGE) % PAGE;
        if base != old_base {
            self.vec
                .copy_within(old_base..old_base + old_len.min(len), base);
        }
        self.base = base;
        self.len = len;
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.vec[self.base..self.base + self.len]
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.vec[self.base..self.base + self.len]
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

/// A masked client frame's payload length and header length (§5.2), once
/// the whole header is in `b`.
fn client_header(b: &[u8]) -> Option<(u64, usize)> {
    if b.len() < 2 {
        return None;
    }
    let (len, n) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?), 10),
        126 | 127 => return None,
        l => (u64::from(l), 2),
    };
    // Client frames are masked (§5.3); this floor takes nothing else.
    (b.len() >= n + 4).then_some((len, n + 4))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The trimmed value of the first header named `name` (lower case).
fn header_value<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        if !line[..colon].eq_ignore_ascii_case(name) {
            return None;
        }
        Some(line[colon + 1..].trim_ascii())
    })
}
