//! What the two floor servers share (`floor-echo` on epoll,
//! `floor-uring-echo` on io_uring): the read buffer, finding frames and
//! turning a client's frame into the server's in place, and the handshake.

use std::net::SocketAddr;

/// A blocking listener with `SO_REUSEADDR` and a backlog of
/// [`BACKLOG`](crate::BACKLOG), as every server in the benchmark has (mio's
/// own `bind` uses 128).
pub fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(crate::BACKLOG as i32)?;
    Ok(socket.into())
}

/// A connection's read buffer, in bytes.
pub const READ_BUFFER: usize = 256 * 1024;
/// Longest request head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest frame accepted (the connection is dropped beyond it).
pub const MAX_FRAME: u64 = 64 * 1024 * 1024;

/// The read buffer. Its data starts half a page into a page: on AMD Zen
/// CPUs the kernel's copy (`rep movsb`) from a received packet into a
/// buffer is about twice as slow when the two addresses are within a few
/// dozen bytes of each other modulo 4 KiB (glibc's `memcpy` avoids
/// `rep movsb` for such copies for this reason), and an allocation as large
/// as this one is mapped on its own, 16 bytes into a page (the README's
/// performance section has the measurement at 64 KiB x 1).
pub struct Buffer {
    vec: Vec<u8>,
    base: usize,
    len: usize,
}

const PAGE: usize = 4096;
const PAGE_OFFSET: usize = PAGE / 2;

impl Buffer {
    pub fn new(len: usize) -> Self {
        let mut b = Buffer {
            vec: Vec::new(),
            base: 0,
            len: 0,
        };
        b.resize(len, 0);
        b
    }

    /// As `Vec::resize`: the contents are kept. The buffer may move.
    pub fn resize(&mut self, len: usize, value: u8) {
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

/// A masked client frame's payload length and header length (§5.2), once
/// the whole header is in `b`.
pub fn client_header(b: &[u8]) -> Option<(u64, usize)> {
    if b.len() < 2 {
        return None;
    }
    let (len, n) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?), 10),
        126 | 127 => return None,
        l => (u64::from(l), 2),
    };
    // Client frames are masked (§5.3); a floor takes nothing else.
    (b.len() >= n + 4).then_some((len, n + 4))
}

/// What is at `at` in a buffer read up to `end`.
pub enum Next {
    /// A whole client frame: its payload length and header length.
    Frame(u64, usize),
    /// Part of one: read more (`buf` was grown to hold it whole).
    Wait,
    /// One over `MAX_FRAME`: drop the connection.
    TooBig,
}

/// The client frame at `at` in `buf[..end]`, once all of it is there.
pub fn next_frame(buf: &mut Buffer, at: usize, end: usize) -> Next {
    let Some((len, header_len)) = client_header(&buf[at..end]) else {
        return Next::Wait;
    };
    if len > MAX_FRAME {
        return Next::TooBig;
    }
    let size = header_len + len as usize;
    if end - at < size {
        // Wait for the whole frame, in a buffer it fits in (moved to the
        // front before the next read).
        if buf.len() < size {
            buf.resize(size, 0);
        }
        return Next::Wait;
    }
    Next::Frame(len, header_len)
}

/// A server frame (unmasked, final, §5.2) with first byte `first` (FIN and
/// opcode), onto `out`.
pub fn push_server_frame(out: &mut Vec<u8>, first: u8, payload: &[u8]) {
    out.push(first);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// The client frame header of `header_len` bytes at `at`, for a payload of
/// `len`, becomes the server's: the same first byte (a ping's turned into a
/// pong's), the same length encoding without the mask bit, ending where the
/// payload starts (it is 4 bytes shorter: no masking key). Returns where
/// the server's header starts, the frame's opcode and its masking key.
pub fn server_header_in_place(
    buf: &mut [u8],
    at: usize,
    header_len: usize,
    len: u64,
) -> (usize, u8, [u8; 4]) {
    let first = buf[at];
    let opcode = first & 0x0f;
    let key_at = at + header_len - 4;
    let key = [
        buf[key_at],
        buf[key_at + 1],
        buf[key_at + 2],
        buf[key_at + 3],
    ];
    let out_len = header_len - 4;
    let out = at + header_len - out_len;
    buf[out] = if opcode == 0x9 {
        (first & 0xf0) | 0xA
    } else {
        first
    };
    match out_len {
        2 => buf[out + 1] = len as u8,
        4 => {
            buf[out + 1] = 126;
            buf[out + 2..out + 4].copy_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            buf[out + 1] = 127;
            buf[out + 2..out + 10].copy_from_slice(&len.to_be_bytes());
        }
    }
    (out, opcode, key)
}

/// The answer to a complete request head (RFC 6455 §4.2.2: 101 with the
/// accept key; nothing else is checked), or `None` without a key.
pub fn upgrade_response(head: &[u8]) -> Option<String> {
    let key = header_value(head, b"sec-websocket-key")?;
    let accept = ws_proto::handshake::accept_key(key);
    Some(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    ))
}

/// Where `needle` starts in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
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
