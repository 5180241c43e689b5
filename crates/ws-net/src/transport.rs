//! The two halves of a connection's transport.
//!
//! A `TcpStream` splits into its owned halves: no lock, no box, and the
//! socket can be closed without a `shutdown` call first. Any other transport
//! (TLS, a unix socket, an in-memory pipe) is split by `tokio::io::split` and
//! boxed.

use std::any::Any;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub(crate) enum ReadHalf {
    Tcp(OwnedReadHalf),
    Boxed(Pin<Box<dyn AsyncRead + Send>>),
}

pub(crate) enum WriteHalf {
    Tcp(OwnedWriteHalf),
    Boxed(Pin<Box<dyn AsyncWrite + Send>>),
}

/// Split a transport; a `TcpStream` splits without a lock or a box.
pub(crate) fn split<S>(stream: S) -> (ReadHalf, WriteHalf)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut slot = Some(stream);
    if let Some(tcp) = (&mut slot as &mut dyn Any).downcast_mut::<Option<TcpStream>>() {
        if let Some(tcp) = tcp.take() {
            let (r, w) = tcp.into_split();
            return (ReadHalf::Tcp(r), WriteHalf::Tcp(w));
        }
    }
    let Some(stream) = slot else {
        unreachable!("only a TcpStream is taken out of the slot")
    };
    let (r, w) = tokio::io::split(stream);
    (ReadHalf::Boxed(Box::pin(r)), WriteHalf::Boxed(Box::pin(w)))
}

/// Whether `stream` is a tokio `TcpStream`: proof that the runtime polling
/// it has a reactor (see `clock::Alarm::new`).
pub(crate) fn is_tcp_stream<S: 'static>(stream: &S) -> bool {
    (stream as &dyn Any).is::<TcpStream>()
}

/// The peer's address, if `stream` is a tokio `TcpStream`.
pub(crate) fn tcp_peer_addr<S: 'static>(stream: &S) -> Option<std::net::SocketAddr> {
    (stream as &dyn Any)
        .downcast_ref::<TcpStream>()
        .and_then(|tcp| tcp.peer_addr().ok())
}

impl WriteHalf {
    /// Whether the transport is a plain TCP socket, which
    /// [`close_at_once`](Self::close_at_once) closes without a shutdown.
    pub(crate) fn is_tcp(&self) -> bool {
        matches!(self, WriteHalf::Tcp(_))
    }

    /// Write what the transport takes now, without a task to wake: Pending
    /// when it takes nothing.
    ///
    /// With `budgeted`, the write counts against tokio's cooperative budget
    /// of the calling task, as `poll_write` does: a task that sends to
    /// thousands of connections in one poll (a broadcast) writes to the
    /// first ones (128 operations) itself and gets Pending for the rest,
    /// which their connections' driver tasks then write. On a multi-thread
    /// runtime that spreads a broadcast over the worker threads. On a
    /// current-thread runtime there is no other thread: handing a write on
    /// to a driver only adds a wake-up, so `budgeted` is false there and a
    /// TCP socket is written directly (`send`, or `writev` for several
    /// slices), outside the budget and, on Linux, without tokio's readiness
    /// check (see `send_now`). Another transport is always polled (with a
    /// waker that does nothing).
    pub(crate) fn write_now(
        &mut self,
        bufs: &[IoSlice<'_>],
        budgeted: bool,
    ) -> Poll<std::io::Result<usize>> {
        let result = match self {
            WriteHalf::Tcp(w) if !budgeted => send_now(w.as_ref(), bufs),
            _ => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                return Pin::new(self).poll_write_vectored(&mut cx, bufs);
            }
        };
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Poll::Pending,
            r => Poll::Ready(r),
        }
    }

    /// The descriptor of a plain TCP socket (Unix).
    #[cfg(unix)]
    pub(crate) fn tcp_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            WriteHalf::Tcp(w) => Some(w.as_ref().as_raw_fd()),
            WriteHalf::Boxed(_) => None,
        }
    }

    /// Give up the write half without shutting it down first: a TCP socket
    /// is closed (one `close`, which sends the FIN) once its read half is
    /// dropped too. Another transport is just dropped.
    pub(crate) fn close_at_once(self) {
        match self {
            WriteHalf::Tcp(w) => w.forget(),
            WriteHalf::Boxed(w) => drop(w),
        }
    }
}

/// Write to a TCP socket with one system call, without tokio's readiness
/// check: a socket's readiness lives in the reactor's own memory, which a
/// broadcast to thousands of connections finds cold for each of them, while
/// the socket's descriptor sits in the connection. When the socket takes
/// nothing the call fails with `WouldBlock`; the caller then hands the write
/// to the connection's driver, whose `poll_write` goes through tokio and
/// registers for readiness as usual (a readiness tokio still believes in
/// costs it one `EAGAIN` before it registers).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn send_now(
    tcp: impl std::os::fd::AsFd,
    bufs: &[IoSlice<'_>],
) -> std::io::Result<usize> {
    use rustix::io::Errno;
    let tcp = tcp.as_fd();
    loop {
        let sent = match bufs {
            // MSG_NOSIGNAL: a peer that went away is an EPIPE error here, not
            // a SIGPIPE for a process that did not ignore it (as std's and
            // mio's `send` do).
            [one] => rustix::net::send(tcp, one, rustix::net::SendFlags::NOSIGNAL),
            _ => rustix::io::writev(tcp, bufs),
        };
        match sent {
            Err(Errno::INTR) => continue,
            r => return r.map_err(std::io::Error::from),
        }
    }
}

/// Write to a TCP socket now through tokio (elsewhere than Linux).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn send_now(tcp: &TcpStream, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
    match bufs {
        [one] => tcp.try_write(one),
        _ => tcp.try_write_vectored(bufs),
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Boxed(r) => r.as_mut().poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Boxed(w) => w.as_mut().poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            // One slice (a small message: its header and payload share a
            // buffer) goes out by `send`, not `writev`: Linux's `writev`
            // path (iovec import, file write checks and notification) costs
            // more per call, a good part of the call for a small message.
            WriteHalf::Tcp(w) => match bufs {
                [one] => Pin::new(w).poll_write(cx, one),
                _ => Pin::new(w).poll_write_vectored(cx, bufs),
            },
            WriteHalf::Boxed(w) => w.as_mut().poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteHalf::Tcp(w) => w.is_write_vectored(),
            WriteHalf::Boxed(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Boxed(w) => w.as_mut().poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Boxed(w) => w.as_mut().poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tcp_stream_splits_into_its_owned_halves() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, _server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (r, w) = split(client.unwrap());
        assert!(matches!(r, ReadHalf::Tcp(_)));
        assert!(w.is_tcp());
        let (a, _b) = tokio::io::duplex(64);
        let (r, w) = split(a);
        assert!(matches!(r, ReadHalf::Boxed(_)));
        assert!(!w.is_tcp());
    }

    /// A direct write to a TCP socket (outside tokio's readiness) returns
    /// Pending once the socket takes nothing more, after which tokio's own
    /// path still waits for room and writes; once the peer is gone, it
    /// fails with an error.
    #[tokio::test]
    async fn direct_writes_stop_when_the_socket_is_full_and_fail_when_the_peer_is_gone() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (_r, mut w) = split(client.unwrap());
        let (mut server, _) = server.unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut written = 0usize;
        loop {
            match w.write_now(&[IoSlice::new(&chunk)], false) {
                Poll::Ready(Ok(n)) => written += n,
                Poll::Pending => break,
                Poll::Ready(Err(e)) => panic!("a full socket is not an error: {e}"),
            }
            assert!(written < 1 << 30, "the socket never filled");
        }
        assert!(written > 0);
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; written + 3];
            server.read_exact(&mut got).await.unwrap();
            (server, got)
        });
        let wait = std::time::Duration::from_secs(10);
        tokio::time::timeout(wait, w.write_all(b"end"))
            .await
            .expect("room within 10 s")
            .unwrap();
        let (server, got) = tokio::time::timeout(wait, reader).await.unwrap().unwrap();
        assert!(got[..written].iter().all(|&b| b == 7));
        assert_eq!(&got[written..], b"end");

        // Unread bytes at the peer's close make it reset the connection.
        w.write_all(b"unread").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(server);
        let deadline = tokio::time::Instant::now() + wait;
        let err = loop {
            match w.write_now(&[IoSlice::new(b"more")], false) {
                Poll::Ready(Err(e)) => break e,
                _ => assert!(
                    tokio::time::Instant::now() < deadline,
                    "no error within 10 s"
                ),
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{err}"
        );
    }

    /// One slice takes the `send` path, several the `writev` path: both
    /// deliver every byte, in order.
    #[tokio::test]
    async fn vectored_writes_of_one_and_of_several_slices() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (_r, mut w) = split(client.unwrap());
        let (mut server, _) = server.unwrap();
        let one = [IoSlice::new(b"header+payload")];
        let n = w.write_vectored(&one).await.unwrap();
        assert_eq!(n, 14);
        let several = [
            IoSlice::new(b"head"),
            IoSlice::new(b"er+"),
            IoSlice::new(b"body"),
        ];
        let mut sent = w.write_vectored(&several).await.unwrap();
        while sent < 11 {
            // (A short write is allowed; the rest follows as one slice.)
            let rest = IoSlice::new(&b"header+body"[sent..]);
            sent += w.write_vectored(&[rest]).await.unwrap();
        }
        let mut got = vec![0; 25];
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            server.read_exact(&mut got),
        );
        read.await.expect("bytes within 5 s").unwrap();
        assert_eq!(&got, b"header+payloadheader+body");
    }
}
