//! The outgoing byte queue.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::apply_mask;

/// Payloads up to this size are copied next to their header, so small frames
/// go out in one slice; larger ones are queued by reference (no copy).
///
/// Queueing by reference is not free either: the header written so far is
/// split off the coalescing buffer into a chunk of its own, the payload's
/// `Bytes` is queued and dropped after the write, and the write takes
/// two slices. Up to this size the copy costs less than that (the README's
/// performance section has the measurement).
pub(crate) const COPY_MAX: usize = 2048;

/// Bytes waiting to be written to the transport, in order: a queue of
/// shared [`Bytes`] (large payloads, prepared broadcast frames) followed by a
/// coalescing buffer for headers and small frames.
///
/// It implements [`Buf`]: write [`chunks_vectored`](Buf::chunks_vectored)
/// with one vectored write, then [`advance`](Buf::advance) by what was
/// written.
///
/// ```
/// use bytes::Buf;
/// let mut conn = ws_proto::Connection::new(ws_proto::Role::Server, Default::default());
/// conn.send(ws_proto::Message::text("Hello")).unwrap();
/// let out = conn.transmit();
/// assert_eq!(out.chunk(), &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
/// let n = out.remaining();
/// out.advance(n);
/// assert_eq!(conn.buffered_amount(), 0);
/// ```
#[derive(Debug, Default)]
pub struct SendBuf {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    /// How much of `tail` is already written. The tail itself is not
    /// advanced, so once it is all written it is cleared in place and its
    /// whole capacity serves the next frames, without a reclaim.
    head: usize,
    len: usize,
}

impl SendBuf {
    pub(crate) fn push_slice(&mut self, data: &[u8]) {
        self.make_room(data.len());
        self.tail.extend_from_slice(data);
        self.len += data.len();
    }

    /// An unmasked frame: its header, then its payload as `push_bytes`
    /// would queue it. A small frame's room is made once for both.
    pub(crate) fn push_frame(&mut self, header: &[u8], payload: Bytes) {
        let n = header.len() + payload.len();
        if payload.len() > COPY_MAX {
            self.push_slice(header);
            self.push_bytes(payload);
            return;
        }
        self.make_room(n);
        self.tail.reserve(n);
        self.tail.extend_from_slice(header);
        self.tail.extend_from_slice(&payload);
        self.len += n;
    }

    pub(crate) fn push_bytes(&mut self, data: Bytes) {
        if data.len() <= COPY_MAX {
            self.push_slice(&data);
            return;
        }
        if self.tail.len() > self.head {
            let mut unwritten = self.tail.split();
            unwritten.advance(self.head);
            self.chunks.push_back(unwritten.freeze());
        } else {
            self.tail.clear();
        }
        self.head = 0;
        self.len += data.len();
        self.chunks.push_back(data);
    }

    /// As `push_bytes` for a payload the caller keeps (a prepared message
    /// sent to many connections): only a large one is cloned.
    pub(crate) fn push_shared(&mut self, data: &Bytes) {
        if data.len() <= COPY_MAX {
            self.push_slice(data);
        } else {
            self.push_bytes(data.clone());
        }
    }

    /// Bytes that must go out before everything queued: the unwritten rest
    /// of a frame the caller was writing itself.
    pub(crate) fn push_front(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        self.chunks.push_front(data);
    }

    pub(crate) fn push_masked(&mut self, data: &[u8], key: [u8; 4]) {
        self.make_room(data.len());
        let start = self.tail.len();
        self.tail.extend_from_slice(data);
        apply_mask(&mut self.tail[start..], key);
        self.len += data.len();
    }

    /// Before appending `n` bytes to a tail out of room: drop its written
    /// part, so the append reclaims that space instead of growing the
    /// buffer past it (a tail that never drains completely stays bounded).
    fn make_room(&mut self, n: usize) {
        if self.head > 0 && self.tail.capacity() - self.tail.len() < n {
            self.tail.advance(self.head);
            self.head = 0;
        }
    }

    /// Drop the memory of an empty queue (for idle connections).
    /// Drop everything queued.
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.tail.clear();
        self.head = 0;
        self.len = 0;
    }

    pub(crate) fn shrink(&mut self) {
        if self.len == 0 {
            self.tail = BytesMut::new();
            self.head = 0;
            self.chunks = VecDeque::new();
        }
    }
}

impl Buf for SendBuf {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        match self.chunks.front() {
            Some(c) => c,
            None => &self.tail[self.head..],
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "advance past the end of the send buffer");
        self.len -= cnt;
        while cnt > 0 {
            match self.chunks.front_mut() {
                Some(front) if front.len() <= cnt => {
                    cnt -= front.len();
                    self.chunks.pop_front();
                }
                Some(front) => {
                    front.advance(cnt);
                    cnt = 0;
                }
                None => {
                    self.head += cnt;
                    cnt = 0;
                }
            }
        }
        if self.len == 0 {
            // Keep the allocation for the next frames.
            self.tail.clear();
            self.head = 0;
        }
    }

    /// Zero-copy when `len` is within the first chunk: the I/O layer takes
    /// whole chunks out this way to write them without holding the
    /// connection.
    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        assert!(
            len <= self.len,
            "copy_to_bytes past the end of the send buffer"
        );
        let taken = match self.chunks.front_mut() {
            Some(front) if len < front.len() => front.split_to(len),
            Some(front) if len == front.len() => self.chunks.pop_front().unwrap_or_default(),
            None if len <= self.tail.len() - self.head => {
                let mut taken = self.tail.split_to(self.head + len);
                taken.advance(self.head);
                self.head = 0;
                taken.freeze()
            }
            _ => {
                // Spans chunks: copy (the I/O layer never asks for this).
                let mut out = BytesMut::with_capacity(len);
                while out.len() < len {
                    let chunk = self.chunk();
                    let n = chunk.len().min(len - out.len());
                    out.extend_from_slice(&chunk[..n]);
                    Buf::advance(self, n);
                }
                return out.freeze();
            }
        };
        self.len -= len;
        taken
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        // The common case: small frames only, all in the tail.
        if self.chunks.is_empty() {
            let tail = &self.tail[self.head..];
            if tail.is_empty() || dst.is_empty() {
                return 0;
            }
            dst[0] = IoSlice::new(tail);
            return 1;
        }
        let mut n = 0;
        for c in self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.tail[self.head..]))
        {
            if n == dst.len() {
                break;
            }
            if !c.is_empty() {
                dst[n] = IoSlice::new(c);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload queued by reference, not copied.
    const LARGE: usize = COPY_MAX + 88;

    #[test]
    fn keeps_order_across_chunks_and_tail() {
        let mut s = SendBuf::default();
        s.push_slice(b"ab");
        s.push_bytes(Bytes::from(vec![b'x'; 1000]));
        s.push_slice(b"cd");
        let mut all = Vec::new();
        while s.has_remaining() {
            let c = s.chunk().to_vec();
            all.extend_from_slice(&c);
            s.advance(c.len());
        }
        let mut expect = b"ab".to_vec();
        expect.extend(vec![b'x'; 1000]);
        expect.extend_from_slice(b"cd");
        assert_eq!(all, expect);
    }

    #[test]
    fn vectored_and_partial_advance() {
        let mut s = SendBuf::default();
        s.push_slice(b"head");
        s.push_bytes(Bytes::from(vec![1u8; LARGE]));
        s.push_slice(b"tail");
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(s.chunks_vectored(&mut slices), 3);
        s.advance(2);
        assert_eq!(s.chunk(), b"ad");
        s.advance(2 + LARGE - 1);
        assert_eq!(s.chunk(), &[1]);
        s.advance(1);
        assert_eq!(s.chunk(), b"tail");
        assert_eq!(s.remaining(), 4);
    }

    #[test]
    fn a_tail_that_never_drains_stays_bounded() {
        let mut s = SendBuf::default();
        s.push_slice(&[7; 50]);
        for i in 0..100_000u32 {
            let frame = i.to_be_bytes().repeat(25);
            s.push_slice(&frame);
            // Write all but the last 50 bytes: the queue is never empty.
            s.advance(100);
            assert_eq!(s.remaining(), 50);
        }
        assert!(s.tail.capacity() < 64 * 1024, "{}", s.tail.capacity());
        assert_eq!(s.chunk(), &99_999u32.to_be_bytes().repeat(25)[50..]);
    }

    #[test]
    fn written_tail_bytes_are_not_moved_into_chunks() {
        let mut s = SendBuf::default();
        s.push_slice(b"abcdef");
        s.advance(4);
        s.push_bytes(Bytes::from(vec![b'x'; LARGE]));
        assert_eq!(s.chunk(), b"ef");
        let taken = s.copy_to_bytes(2);
        assert_eq!(&taken[..], b"ef");
        assert_eq!(s.remaining(), LARGE);
        s.advance(LARGE);
        s.push_slice(b"gh");
        s.advance(1);
        assert_eq!(&s.copy_to_bytes(1)[..], b"h");
        assert_eq!(s.remaining(), 0);
    }

    /// Everything queued, through `chunks_vectored` as a writer sees it.
    fn drain_vectored(s: &mut SendBuf, slots: usize) -> Vec<u8> {
        let mut all = Vec::new();
        while s.has_remaining() {
            let first = {
                let mut slices = vec![IoSlice::new(&[]); slots];
                let n = s.chunks_vectored(&mut slices);
                assert!(n > 0, "data remains but no slice was given");
                slices[0].to_vec()
            };
            all.extend_from_slice(&first);
            s.advance(first.len());
        }
        all
    }

    #[test]
    fn frames_keep_header_and_payload_together_in_order() {
        let mut s = SendBuf::default();
        s.push_frame(&[0x82, 3], Bytes::from_static(b"abc"));
        // One slice for a tail-only queue, even partly written.
        s.advance(1);
        {
            let mut slices = [IoSlice::new(&[]); 4];
            assert_eq!(s.chunks_vectored(&mut slices), 1);
            assert_eq!(&*slices[0], &[3, b'a', b'b', b'c']);
            assert_eq!(s.chunks_vectored(&mut []), 0);
        }
        s.push_frame(&[0x82, 126, 0x08, 0x58], Bytes::from(vec![9u8; LARGE]));
        s.push_frame(&[0x81, 1], Bytes::from_static(b"z"));
        let mut expect = vec![3, b'a', b'b', b'c', 0x82, 126, 0x08, 0x58];
        expect.extend(vec![9u8; LARGE]);
        expect.extend_from_slice(&[0x81, 1, b'z']);
        assert_eq!(s.remaining(), expect.len());
        assert_eq!(drain_vectored(&mut s, 8), expect);
        assert_eq!(
            s.chunks_vectored(&mut [IoSlice::new(&[])]),
            0,
            "nothing left"
        );
    }
}
