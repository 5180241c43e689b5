//! Arbitrary bytes into a `Connection` of either role, in arbitrary chunks,
//! and into `FrameHeader::decode` directly.
//!
//! Input layout: byte 0 flags (bit 0 client role, bit 1 end of file after
//! the data, bit 2 append through `read_buffer`), bytes 1-6 the config knobs
//! (see `Knobs::from_bytes`), byte 7 the largest chunk (0: one chunk),
//! bytes 8-9 the chunking seed, then the received bytes.
//!
//! Checks: no panic; `poll_event` reaches `Ok(None)` after each chunk; the
//! events and errors obey the config and the documented contract (one error
//! at most, nothing after it, legal state moves); the same bytes in one
//! chunk and in many give the same events, errors, close info and output
//! (after invalid UTF-8 only up to the error: failing fast inside a frame
//! still arriving stops the reading);
//! everything the connection queued is well-formed; header decode/encode
//! round-trips and is consistent on prefixes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_proto::frame::FrameHeader;
use ws_proto::{CloseInfo, Connection, ProtocolError, Role, State};
use ws_proto_fuzz::{
    check_own_output, Chunker, EventChecker, Knobs, Outcome, WireChecker, WireFrame,
};

const HEADER: usize = 10;

#[derive(Debug, PartialEq)]
struct Run {
    log: Vec<Outcome>,
    state: State,
    close: CloseInfo,
    wants_closed: bool,
    frames: Vec<WireFrame>,
}

fuzz_target!(|data: &[u8]| {
    let at = |i: usize| data.get(i).copied().unwrap_or(0);
    let flags = at(0);
    let role = if flags & 1 == 1 {
        Role::Client
    } else {
        Role::Server
    };
    let eof = flags & 2 != 0;
    let via_read_buffer = flags & 4 != 0;
    let knobs = Knobs::from_bytes(data.get(1..7).unwrap_or(&[]));
    let chunk_max = at(7);
    let seed = u64::from(u16::from_le_bytes([at(8), at(9)]));
    let input = data.get(HEADER..).unwrap_or(&[]);

    headers(input);

    let whole = run(role, &knobs, &[input], eof, false);
    let chunks = Chunker::new(seed, chunk_max).split(input);
    let chunked = run(role, &knobs, &chunks, eof, via_read_buffer);
    if whole.log.contains(&Err(ProtocolError::InvalidUtf8)) {
        // Invalid UTF-8 found while its frame is still arriving stops the
        // reading (fail fast: the rest may never come), where a whole frame
        // lets the connection read on to the peer's close frame. So only
        // what happened up to the error must agree.
        assert_eq!(whole.log, chunked.log, "events, {} chunks", chunks.len());
        assert_eq!(whole.close.sent, chunked.close.sent, "close sent");
        assert_eq!(whole.frames, chunked.frames, "frames sent");
    } else {
        assert_eq!(
            whole,
            chunked,
            "one chunk and {} chunks disagree",
            chunks.len()
        );
    }
});

fn run(role: Role, knobs: &Knobs, chunks: &[&[u8]], eof: bool, via_read_buffer: bool) -> Run {
    let mut conn = Connection::new(role, knobs.config());
    let mut events = EventChecker::new(&conn);
    for (i, chunk) in chunks.iter().enumerate() {
        if via_read_buffer && i % 2 == 1 {
            conn.read_buffer().extend_from_slice(chunk);
        } else {
            conn.receive_data(chunk);
        }
        events.poll(&mut conn);
        if via_read_buffer {
            conn.shrink_buffers();
        }
    }
    if eof {
        conn.receive_eof();
        events.poll(&mut conn);
        assert_eq!(conn.state(), State::Closed, "not Closed after end of file");
    }
    // Nothing was taken from the send queue until now, so the pong backlog
    // logic saw the same queue in both runs.
    let mut wire = WireChecker::new(role);
    wire.drain(&mut conn);
    wire.finish();
    assert_eq!(conn.buffered_amount(), 0);
    check_own_output(&wire, &events, &conn);
    events.check_state(&conn);
    Run {
        log: events.log,
        state: conn.state(),
        close: conn.close_info().clone(),
        wants_closed: conn.wants_transport_closed(),
        frames: wire.frames,
    }
}

/// Walk the input as a sequence of frames with `FrameHeader::decode`.
fn headers(mut buf: &[u8]) {
    loop {
        let r = FrameHeader::decode(buf);
        // Shorter prefixes: not enough bytes yet, or the same error.
        let end = match &r {
            Ok(Some((_, n))) => *n,
            _ => buf.len().min(14),
        };
        for k in 0..end {
            match (FrameHeader::decode(&buf[..k]), &r) {
                (Ok(None), _) => {}
                (Err(e), Err(full)) => assert_eq!(&e, full, "prefix of {k} bytes"),
                (other, _) => panic!("prefix of {k} bytes decoded to {other:?}, whole to {r:?}"),
            }
        }
        let (h, n) = match r {
            Ok(Some(x)) => x,
            Ok(None) => {
                assert!(buf.len() < 14, "no header in {} bytes", buf.len());
                return;
            }
            Err(_) => return,
        };
        assert!((2..=14).contains(&n));
        assert_eq!(
            buf[0] & 0x7f,
            (u8::from(h.fin) << 7 | h.rsv << 4 | h.opcode.as_u8()) & 0x7f
        );
        let (enc, m) = h.encode();
        assert_eq!(m, h.encoded_len());
        assert!(
            m <= n,
            "re-encoded header is longer ({m}) than the input ({n})"
        );
        assert_eq!(enc[0], buf[0], "first header byte");
        assert_eq!(enc[1] & 0x80, buf[1] & 0x80, "mask bit");
        if m == n {
            assert_eq!(
                &enc[..m],
                &buf[..n],
                "minimal header does not re-encode byte for byte"
            );
        }
        assert_eq!(
            FrameHeader::decode(&enc[..m]),
            Ok(Some((h, m))),
            "decode(encode(h))"
        );
        if let Some(key) = h.mask {
            assert_eq!(&buf[n - 4..n], &key);
        }
        let Some(next) = (n as u64).checked_add(h.payload_len) else {
            return;
        };
        if next > buf.len() as u64 {
            return;
        }
        buf = &buf[next as usize..];
    }
}
