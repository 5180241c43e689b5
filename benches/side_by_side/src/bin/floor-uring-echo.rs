//! The floor on io_uring: `floor-echo`'s work with completion-based I/O
//! instead of readiness, to tell whether what the floor spends per message
//! is the system calls or the kernel's TCP work behind them.
//!
//! One ring (single issuer, task work deferred to the wait), one operation
//! in flight per connection: a receive into the connection's buffer (the
//! same `Buffer` as `floor-echo`'s); on its completion every complete frame
//! is unmasked in place and given the server's header in place, the frames
//! are moved together, and one send takes them all; once it completes, the
//! next receive. Submissions and completions of all connections go through
//! one `io_uring_enter` per loop: a handful of system calls per thousand
//! messages when many connections are busy, where an epoll server makes
//! two per message (a receive and a send).
//!
//! Like `floor-echo` it is not a WebSocket library and not a server to run:
//! it checks nothing a peer sends beyond finding the frames, and has no
//! timers. A close frame is answered with the same payload, and the
//! connection closed. Linux 6.1 or later (deferred task work).

#[cfg(target_os = "linux")]
fn main() -> std::io::Result<()> {
    uring::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("floor-uring-echo: io_uring is Linux only");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
mod uring {
    use std::io::{self, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use io_uring::{opcode, squeue, types, IoUring};
    use side_by_side_peers::floor::{
        find, next_frame, server_header_in_place, upgrade_response, Buffer, Next, MAX_HEAD,
        READ_BUFFER,
    };
    use ws_proto::frame::apply_mask;

    /// The accept operation's `user_data`; a connection's is its slot.
    const ACCEPT: u64 = u64::MAX;

    /// The `user_data` of the wait after a failed accept.
    const ACCEPT_RETRY: u64 = u64::MAX - 1;

    /// How long a failed accept (out of descriptors) waits before the next
    /// try: retrying at once would spin while the error lasts.
    static RETRY_AFTER: types::Timespec = types::Timespec::new().nsec(10_000_000);

    pub fn main() -> io::Result<()> {
        let addr = side_by_side_peers::listen_addr("floor-uring-echo");
        let listener = side_by_side_peers::floor::listener(addr)?;
        // The ring first: where io_uring is missing or disabled, the
        // server fails before it says it listens (run.sh then skips it).
        let mut ring = Ring::new()?;
        println!("listening on ws://{}", listener.local_addr()?);
        io::stdout().flush()?;

        let mut conns: Vec<Option<Box<Conn>>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut done: Vec<(u64, i32)> = Vec::with_capacity(1024);
        ring.push(accept(&listener))?;
        loop {
            match ring.ring.submit_and_wait(1) {
                Ok(_) => {}
                // (Busy: completions are waiting to be reaped.)
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ResourceBusy
                    ) => {}
                Err(e) => return Err(e),
            }
            done.clear();
            done.extend(ring.ring.completion().map(|c| (c.user_data(), c.result())));
            for &(user_data, result) in &done {
                if user_data == ACCEPT_RETRY {
                    ring.push(accept(&listener))?;
                    continue;
                }
                if user_data == ACCEPT {
                    if result >= 0 {
                        // SAFETY: a completed accept's result is a new
                        // descriptor, owned by nothing else.
                        let fd = unsafe { OwnedFd::from_raw_fd(result) };
                        let _ = socket2::SockRef::from(&fd).set_tcp_nodelay(true);
                        let i = free.pop().unwrap_or_else(|| {
                            conns.push(None);
                            conns.len() - 1
                        });
                        let conn = conns[i].insert(Box::new(Conn::new(fd)));
                        ring.recv(conn, i)?;
                        ring.push(accept(&listener))?;
                    } else {
                        // Out of file descriptors, say: accept again after
                        // a pause, when connections may have closed.
                        eprintln!("accept: {}", io::Error::from_raw_os_error(-result));
                        let wait = opcode::Timeout::new(&RETRY_AFTER).build();
                        ring.push(wait.user_data(ACCEPT_RETRY))?;
                    }
                    continue;
                }
                let i = user_data as usize;
                let Some(conn) = conns.get_mut(i).and_then(Option::as_mut) else {
                    continue;
                };
                let alive = if conn.sending {
                    conn.on_sent(result, &mut ring, i)?
                } else {
                    conn.on_received(result, &mut ring, i)?
                };
                if !alive {
                    conns[i] = None;
                    free.push(i);
                }
            }
        }
    }

    /// The next accept on `listener`.
    fn accept(listener: &std::net::TcpListener) -> squeue::Entry {
        opcode::Accept::new(
            types::Fd(listener.as_raw_fd()),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .build()
        .user_data(ACCEPT)
    }

    struct Ring {
        ring: IoUring,
    }

    impl Ring {
        fn new() -> io::Result<Self> {
            let ring = IoUring::builder()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_cqsize(16 * 1024)
                .build(4096)?;
            Ok(Ring { ring })
        }

        /// Queue an operation that points at no memory of ours, or at
        /// memory that stays put until its completion (see `recv`, `send`).
        fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
            loop {
                // SAFETY: every buffer an entry points at belongs to a
                // `Conn` in a `Box` that is neither moved, resized nor
                // dropped while the entry is in flight: a connection has
                // one operation in flight at a time (`sending` says
                // which), touches its buffers only when that operation has
                // completed, and is dropped only on a completion, never
                // with an operation in flight. Accept entries point at
                // nothing, the retry wait at a static.
                if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                    return Ok(());
                }
                // The submission queue is full: hand it to the kernel.
                self.ring.submit()?;
            }
        }

        fn recv(&mut self, conn: &mut Conn, i: usize) -> io::Result<()> {
            conn.sending = false;
            let room = &mut conn.buf[conn.kept..];
            let len = u32::try_from(room.len()).unwrap_or(u32::MAX);
            let entry = opcode::Recv::new(types::Fd(conn.fd.as_raw_fd()), room.as_mut_ptr(), len)
                .build()
                .user_data(i as u64);
            self.push(entry)
        }

        fn send(&mut self, conn: &mut Conn, i: usize) -> io::Result<()> {
            conn.sending = true;
            let rest: &[u8] = match &conn.head {
                Some((head, at)) => &head[*at..],
                None => &conn.buf[conn.out.0..conn.out.1],
            };
            let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
            let entry = opcode::Send::new(types::Fd(conn.fd.as_raw_fd()), rest.as_ptr(), len)
                .build()
                .user_data(i as u64);
            self.push(entry)
        }
    }

    struct Conn {
        fd: OwnedFd,
        buf: Buffer,
        /// Bytes at the front of `buf` before the next receive: part of a
        /// request head, or of a frame.
        kept: usize,
        /// The handshake is done.
        open: bool,
        /// The handshake's response while it is sent, and how much went.
        head: Option<(Vec<u8>, usize)>,
        /// The echoed frames in `buf` while they are sent.
        out: (usize, usize),
        /// Where the bytes after the echoed frames (an incomplete frame)
        /// start and end in `buf`, to move to the front once sent.
        rest: (usize, usize),
        /// The operation in flight is a send (else a receive).
        sending: bool,
        /// A close frame was answered: close once it is sent.
        closing: bool,
    }

    impl Conn {
        fn new(fd: OwnedFd) -> Self {
            Conn {
                fd,
                buf: Buffer::new(READ_BUFFER),
                kept: 0,
                open: false,
                head: None,
                out: (0, 0),
                rest: (0, 0),
                sending: false,
                closing: false,
            }
        }

        /// A receive completed: echo what it completed; false to drop the
        /// connection.
        fn on_received(&mut self, result: i32, ring: &mut Ring, i: usize) -> io::Result<bool> {
            if result <= 0 {
                return Ok(false);
            }
            let mut start = 0;
            let end = self.kept + result as usize;
            if !self.open {
                let Some(head_end) = find(&self.buf[..end], b"\r\n\r\n").map(|i| i + 4) else {
                    self.kept = end;
                    if end >= MAX_HEAD {
                        return Ok(false);
                    }
                    ring.recv(self, i)?;
                    return Ok(true);
                };
                let Some(response) = upgrade_response(&self.buf[..head_end]) else {
                    return Ok(false);
                };
                self.head = Some((response.into_bytes(), 0));
                self.open = true;
                start = head_end;
            }
            if !self.frames(start, end) {
                return Ok(false);
            }
            self.next(ring, i)?;
            Ok(true)
        }

        /// A send completed: send the rest, or go on receiving.
        fn on_sent(&mut self, result: i32, ring: &mut Ring, i: usize) -> io::Result<bool> {
            if result < 0 {
                return Ok(false);
            }
            let n = result as usize;
            match &mut self.head {
                Some((head, at)) => {
                    *at += n;
                    if *at == head.len() {
                        self.head = None;
                    }
                }
                None => self.out.0 += n,
            }
            if self.head.is_none() && self.out.0 == self.out.1 && self.closing {
                return Ok(false);
            }
            self.next(ring, i)?;
            Ok(true)
        }

        /// Send what is left to send, else receive: the incomplete frame
        /// moves to the front first.
        fn next(&mut self, ring: &mut Ring, i: usize) -> io::Result<()> {
            if self.head.is_some() || self.out.0 < self.out.1 {
                return ring.send(self, i);
            }
            let (s, e) = self.rest;
            self.buf.copy_within(s..e, 0);
            self.kept = e - s;
            self.rest = (0, 0);
            ring.recv(self, i)
        }

        /// Turn the complete frames in `buf[start..end]` into the server's,
        /// in place, and move them together into `out`; the bytes after
        /// them go to `rest`. False for a frame over `MAX_FRAME`.
        fn frames(&mut self, start: usize, end: usize) -> bool {
            let mut at = start;
            // Where the next echoed frame is moved to (frames shrink by
            // their masking key, so each moves down a little).
            let mut out_end = None::<(usize, usize)>;
            loop {
                let (len, header_len) = match next_frame(&mut self.buf, at, end) {
                    Next::Frame(len, header_len) => (len, header_len),
                    Next::Wait => break,
                    Next::TooBig => return false,
                };
                let size = header_len + len as usize;
                let (out, opcode, key) = server_header_in_place(&mut self.buf, at, header_len, len);
                apply_mask(&mut self.buf[at + header_len..at + size], key);
                if opcode != 0xA {
                    out_end = Some(match out_end {
                        None => (out, at + size),
                        Some((s, e)) => {
                            self.buf.copy_within(out..at + size, e);
                            (s, e + (at + size - out))
                        }
                    });
                }
                at += size;
                if opcode == 0x8 {
                    self.closing = true;
                    break;
                }
            }
            self.out = out_end.unwrap_or((0, 0));
            self.rest = if self.closing { (0, 0) } else { (at, end) };
            true
        }
    }
}
