//! Echo mode: connections each keep messages in flight in a closed loop;
//! every echo is verified and its round trip timed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ws_net::{ClientBuilder, Message, WsReader, WsWriter};

use super::payload::{verify, Payload};
use super::report::{EchoResults, Num, Report, Results};
use super::window::run_window;
use super::{close, join_all, progress_bar, Args, Ctx, ABORT, LATENCY_BATCH, MEASURE};

/// How long connections get to receive their last echoes after the end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

struct EchoConn {
    id: u32,
    ctx: Arc<Ctx>,
    /// Messages sent and not yet echoed: when sent, sequence, payload.
    inflight: VecDeque<(Instant, u64, Bytes)>,
    free: Vec<BytesMut>,
    seq: u64,
    stats: ConnStats,
    latencies: Vec<u64>,
    progress: Arc<AtomicU64>,
}

#[derive(Default, Clone, Copy)]
struct ConnStats {
    messages: u64,
    bytes: u64,
}

impl EchoConn {
    fn next(&mut self, now: Instant) -> Message {
        let (message, expected) = self.ctx.payload.make(self.id, self.seq, &mut self.free);
        self.inflight.push_back((now, self.seq, expected));
        self.seq += 1;
        message
    }

    /// Handle what the reader returned. `Some(now)` when it was an echo
    /// (a slot is free again), `None` for a ping or pong.
    fn on_recv(
        &mut self,
        item: Option<Result<Message, ws_net::Error>>,
    ) -> Result<Option<Instant>, String> {
        let id = self.id;
        let message = match item {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(format!("connection {id}: {e}")),
            None => {
                return Err(format!(
                    "connection {id}: closed with {} echoes missing",
                    self.inflight.len()
                ))
            }
        };
        let (got, got_text): (&[u8], bool) = match &message {
            Message::Binary(b) => (b, false),
            Message::Text(t) => (t.as_bytes(), true),
            Message::Close(frame) => {
                return Err(format!(
                    "connection {id}: the server closed it ({frame:?}) with {} echoes missing",
                    self.inflight.len()
                ))
            }
            _ => return Ok(None),
        };
        let Some((sent, seq, expected)) = self.inflight.pop_front() else {
            return Err(format!(
                "connection {id}: a {}-byte message arrived with nothing in flight",
                got.len()
            ));
        };
        verify(id, seq, got, got_text, &expected, self.ctx.payload.text)?;
        let now = Instant::now();
        if self.ctx.phase() == MEASURE {
            self.stats.messages += 1;
            self.stats.bytes += got.len() as u64;
            self.latencies
                .push(u64::try_from((now - sent).as_nanos()).unwrap_or(u64::MAX));
            if self.latencies.len() >= LATENCY_BATCH {
                self.ctx.record(&mut self.latencies);
            }
        }
        self.progress.fetch_add(1, Relaxed);
        drop(message);
        if !self.ctx.payload.text && self.free.len() < self.ctx.pipeline {
            if let Ok(buf) = expected.try_into_mut() {
                self.free.push(buf);
            }
        }
        Ok(Some(now))
    }

    async fn run(mut self, mut reader: WsReader, writer: WsWriter) -> Result<ConnStats, String> {
        let mut owed = self.ctx.pipeline;
        let mut now = Instant::now();
        loop {
            while owed > 0 && self.ctx.phase() <= MEASURE {
                owed -= 1;
                let message = self.next(now);
                let send = writer.send(message);
                tokio::pin!(send);
                // While the write buffer is full, keep reading: the server
                // may be waiting for us to read before it reads more.
                loop {
                    tokio::select! {
                        biased;
                        sent = &mut send => {
                            sent.map_err(|e| format!("connection {}: send: {e}", self.id))?;
                            break;
                        }
                        item = reader.recv() => {
                            if let Some(t) = self.on_recv(item)? {
                                now = t;
                                owed += 1;
                            }
                        }
                    }
                }
            }
            if self.ctx.phase() == ABORT || self.inflight.is_empty() {
                break;
            }
            if let Some(t) = self.on_recv(reader.recv().await)? {
                now = t;
                owed += 1;
            }
        }
        self.ctx.record(&mut self.latencies);
        if self.ctx.phase() != ABORT {
            close(&mut reader, &writer).await;
        }
        Ok(self.stats)
    }
}

pub(super) async fn echo_mode(args: &Args, builder: ClientBuilder) -> Result<Report, String> {
    let pipeline = args.pipeline as usize;
    let ctx = Ctx::new(Payload::new(args.size, args.text), pipeline);
    let pb = progress_bar();
    let total = args.connections;

    let sockets = super::connect_all(args, &builder, &pb).await?;
    let mut counters = Vec::with_capacity(total);
    let mut tasks = Vec::with_capacity(total);
    for (i, ws) in sockets.into_iter().enumerate() {
        let progress = Arc::new(AtomicU64::new(0));
        counters.push(progress.clone());
        let conn = EchoConn {
            id: i as u32,
            ctx: ctx.clone(),
            inflight: VecDeque::with_capacity(pipeline),
            free: Vec::new(),
            seq: 0,
            stats: ConnStats::default(),
            latencies: Vec::with_capacity(LATENCY_BATCH),
            progress,
        };
        let (reader, writer) = ws.split();
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let r = conn.run(reader, writer).await;
            if let Err(e) = &r {
                ctx.fail(e.clone());
            }
            r
        }));
    }

    let window = run_window(args, &ctx, &pb, &counters, "msg/s").await;
    pb.set_message("draining");
    let mut stats = ConnStats::default();
    let drained = join_all(tasks, &ctx, DRAIN_TIMEOUT).await;
    pb.finish_and_clear();
    let results = match drained {
        Ok(r) => r,
        Err(stuck) => {
            ctx.fail(format!(
                "{stuck} connections still had echoes missing {}s after the end",
                DRAIN_TIMEOUT.as_secs()
            ));
            Vec::new()
        }
    };
    if let Some(e) = ctx.failure() {
        return Err(e);
    }
    for s in results.into_iter().flatten() {
        stats.messages += s.messages;
        stats.bytes += s.bytes;
    }
    let secs = window.wall.as_secs_f64();
    let h = ctx.histogram.lock().unwrap_or_else(|p| p.into_inner());
    let results = EchoResults {
        messages: stats.messages,
        msgs_per_s: Num(stats.messages as f64 / secs),
        mb_per_s: Num(stats.bytes as f64 / 1e6 / secs),
        verified: true,
    };
    let mut report = Report::new(args, &window, Results::Echo(results));
    report.ops = stats.messages;
    report.lines.push(format!(
        "  throughput   {:.0} msg/s, {:.2} MB/s (payload, each way); {} echoes, all verified",
        stats.messages as f64 / secs,
        stats.bytes as f64 / 1e6 / secs,
        stats.messages
    ));
    report.latencies(&h);
    report.cpu(&window, stats.messages, "message");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use ws_net::Message;

    use super::super::testing::bench;

    #[tokio::test]
    async fn a_correct_server_scores() {
        for extra in [&[][..], &["--text", "-p", "4"], &["-s", "1m"], &["-s", "3"]] {
            let report = bench(|_, m| Some(m), extra).await.expect("verified");
            assert!(report.ops > 0, "{extra:?}");
        }
    }

    #[tokio::test]
    async fn a_corrupted_echo_fails() {
        let flip = |n, m: Message| {
            let mut v = m.into_payload().to_vec();
            if n == 20 {
                v[50] ^= 1;
            }
            Some(Message::binary(v))
        };
        let err = bench(flip, &[]).await.err().expect("must fail");
        assert!(err.contains("differs"), "{err}");
    }

    #[tokio::test]
    async fn a_truncated_echo_fails() {
        let cut = |n, m: Message| {
            let p = m.into_payload();
            Some(Message::binary(if n == 20 { p.slice(..99) } else { p }))
        };
        let err = bench(cut, &[]).await.err().expect("must fail");
        assert!(err.contains("bytes"), "{err}");
    }

    #[tokio::test]
    async fn a_stale_echo_fails() {
        // Echo the first message again instead of the 20th (right size,
        // right pattern, wrong sequence number).
        fn stale(n: usize, m: Message) -> Option<Message> {
            static FIRST: Mutex<Option<Message>> = Mutex::new(None);
            let mut first = FIRST.lock().unwrap();
            if n == 1 {
                *first = Some(m.clone());
            }
            if n == 20 {
                return first.clone();
            }
            Some(m)
        }
        let err = bench(stale, &[]).await.err().expect("must fail");
        assert!(err.contains("differs"), "{err}");
    }

    #[tokio::test]
    async fn a_wrong_type_fails() {
        let text = |_, m: Message| {
            Some(Message::text(
                String::from_utf8(m.into_payload().to_vec()).unwrap(),
            ))
        };
        let err = bench(text, &[]).await.err().expect("must fail");
        assert!(err.contains("text"), "{err}");
    }
}
