//! `ws bench`: a closed-loop load generator for WebSocket echo servers.
//!
//! - `echo`: C connections each keep P messages in flight. Every echo is
//!   checked against what was sent: type, length and every byte. Each
//!   payload starts with the connection's number and the message's sequence
//!   number, so a stale, reordered or misrouted echo fails too. Any
//!   mismatch, unexpected close or missing echo fails the run.
//! - `idle`: open C connections in bounded bursts, one verified echo each,
//!   hold them for the duration, report how many are still open.
//! - `handshake`: C loops open a connection and close it, as fast as the
//!   server allows; reports handshakes per second.
//!
//! Only what happens between the warm-up and the end of the duration is
//! counted. With `--server-pid`, the server's CPU time over that window
//! (and its resident memory) is read from /proc; the generator's own CPU
//! time is always read, so a caller can tell when the generator, not the
//! server, is the bottleneck.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{watch, Notify, Semaphore};
use ws_net::{ClientBuilder, CloseCode, Config, Message, Utf8Bytes, WsReader, WsWriter};

#[derive(clap::Args)]
pub struct Args {
    /// The echo server's URL.
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// Connections (echo: each runs its own closed loop; idle: how many to
    /// hold; handshake: concurrent open/close loops).
    #[arg(short = 'c', long, default_value_t = 64)]
    connections: usize,
    /// Message size in bytes; k, m suffixes are powers of 1024 (16, 1k,
    /// 1KiB, 64k, 1m).
    #[arg(short = 's', long, default_value = "16", value_parser = parse_size)]
    size: usize,
    /// Messages in flight per connection.
    #[arg(short = 'p', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pipeline: u32,
    /// Seconds measured, after the warm-up (fractions allowed: 0.5).
    #[arg(short = 'd', long, default_value = "10", value_parser = parse_secs)]
    duration: Duration,
    /// Seconds of load before measuring starts (not counted; idle mode
    /// has none).
    #[arg(long, default_value = "2", value_parser = parse_secs)]
    warmup: Duration,
    /// Send binary messages (the default).
    #[arg(long, conflicts_with = "text")]
    binary: bool,
    /// Send text messages (the server validates UTF-8).
    #[arg(long)]
    text: bool,
    /// Threads of the generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    mode: Mode,
    /// Print the results as one JSON object on stdout (the summary goes
    /// to stderr).
    #[arg(long)]
    json: bool,
    /// The server's process id: report its CPU time over the measured
    /// window and its resident memory (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Most connection attempts in progress at once (keep it under the
    /// server's listen backlog).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    connect_burst: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Closed-loop echo: throughput and latency.
    Echo,
    /// Hold idle connections: how many stay open (and server memory).
    Idle,
    /// Open and close connections: handshakes per second.
    Handshake,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Idle => "idle",
            Mode::Handshake => "handshake",
        }
    }
}

/// Largest message size accepted (the client's default message limit).
const MAX_SIZE: usize = 64 << 20;
/// Bytes at the start of a payload that name its connection and sequence.
const HEADER: usize = 16;
/// Latencies a connection buffers before adding them to the histogram.
const LATENCY_BATCH: usize = 256;
/// How long connections get to receive their last echoes after the end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing handshake may take before the connection is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// How often the progress bar is updated.
const TICK: Duration = Duration::from_millis(250);
/// Clock ticks per second of /proc/PID/stat times (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;
const ABORT: u8 = 3;

pub fn run(args: Args) -> ExitCode {
    if args.connections == 0 {
        eprintln!("ws bench: --connections must be at least 1");
        return ExitCode::FAILURE;
    }
    raise_fd_limit(args.connections);
    let rt = match crate::runtime(args.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ws bench: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let builder = match ClientBuilder::new(&args.url) {
        Ok(b) => b.config(client_config()),
        Err(e) => {
            eprintln!("ws bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(async {
        match args.mode {
            Mode::Echo => echo_mode(&args, builder).await,
            Mode::Idle => idle_mode(&args, builder).await,
            Mode::Handshake => handshake_mode(&args, builder).await,
        }
    });
    // Connections that did not finish closing are dropped with the runtime.
    rt.shutdown_timeout(Duration::from_millis(100));
    match outcome {
        Ok(report) => {
            report.print(args.json);
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("ws bench: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn client_config() -> Config {
    let mut config = Config::default();
    // Keepalive pings would only add noise to a measurement.
    config.ping_interval = None;
    config
}

/// Raise the soft limit on open files to fit the connections (up to the
/// hard limit); warn when that is not enough.
fn raise_fd_limit(connections: usize) {
    let want = connections as u64 + 128;
    match rlimit::increase_nofile_limit(want) {
        Ok(got) if got >= want => {}
        Ok(got) => eprintln!(
            "ws bench: warning: the open-file limit is {got}, {want} wanted; \
             raise the hard limit (ulimit -Hn) for this many connections"
        ),
        Err(e) => eprintln!("ws bench: warning: cannot raise the open-file limit: {e}"),
    }
}

// ---------------------------------------------------------------------------
// Shared state, payloads and verification.

/// What the tasks of a run share.
struct Ctx {
    phase: AtomicU8,
    histogram: Mutex<Histogram<u64>>,
    failure: Mutex<Option<String>>,
    failed: Notify,
    payload: Payload,
    pipeline: usize,
}

impl Ctx {
    fn new(payload: Payload, pipeline: usize) -> Arc<Self> {
        // Nanoseconds, 1 ns to 100 s, 3 significant digits.
        let histogram = Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds");
        Arc::new(Self {
            phase: AtomicU8::new(WARMUP),
            histogram: Mutex::new(histogram),
            failure: Mutex::new(None),
            failed: Notify::new(),
            payload,
            pipeline,
        })
    }

    fn phase(&self) -> u8 {
        self.phase.load(Relaxed)
    }

    /// Record the first failure and stop the run.
    fn fail(&self, message: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_none() {
            *failure = Some(message);
        }
        drop(failure);
        self.phase.store(ABORT, Relaxed);
        self.failed.notify_one();
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn record(&self, latencies: &mut Vec<u64>) {
        if latencies.is_empty() {
            return;
        }
        let mut h = self.histogram.lock().unwrap_or_else(|p| p.into_inner());
        for &ns in latencies.iter() {
            h.saturating_record(ns.max(1));
        }
        latencies.clear();
    }
}

/// Payloads: a fixed pattern with a header naming the connection and the
/// sequence number (16 hex digits), so every message in flight differs.
struct Payload {
    template: Bytes,
    text: bool,
}

const PATTERN: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

impl Payload {
    fn new(size: usize, text: bool) -> Self {
        let template: Vec<u8> = (0..size).map(|i| PATTERN[(i + i / 64) % 64]).collect();
        Self {
            template: template.into(),
            text,
        }
    }

    fn size(&self) -> usize {
        self.template.len()
    }

    /// The header: connection number and the low 32 bits of the sequence,
    /// in hex. Payloads shorter than the header keep its last digits.
    fn header(conn: u32, seq: u64) -> [u8; HEADER] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let v = (u64::from(conn) << 32) | (seq & 0xffff_ffff);
        let mut h = [0u8; HEADER];
        for (i, b) in h.iter_mut().enumerate() {
            *b = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
        h
    }

    /// A message and the bytes its echo must carry. Binary payloads reuse
    /// a buffer from `free` (one whose echo was verified: it holds the
    /// pattern) when there is one, so only the header is rewritten.
    fn make(&self, conn: u32, seq: u64, free: &mut Vec<BytesMut>) -> (Message, Bytes) {
        let header = Self::header(conn, seq);
        let n = self.size().min(HEADER);
        let stamp = &header[HEADER - n..];
        if self.text {
            let mut s = String::with_capacity(self.size());
            s.push_str(std::str::from_utf8(stamp).expect("hex is ASCII"));
            s.push_str(std::str::from_utf8(&self.template[n..]).expect("the pattern is ASCII"));
            let text = Utf8Bytes::from(s);
            let expected = text.clone().into_bytes();
            (Message::Text(text), expected)
        } else {
            let mut buf = free
                .pop()
                .unwrap_or_else(|| BytesMut::from(&self.template[..]));
            buf[..n].copy_from_slice(stamp);
            let bytes = buf.freeze();
            (Message::Binary(bytes.clone()), bytes)
        }
    }
}

/// Check an echo against what was sent: type, length, every byte.
fn verify(
    conn: u32,
    seq: u64,
    got: &[u8],
    got_text: bool,
    expected: &[u8],
    text: bool,
) -> Result<(), String> {
    let kind = |t: bool| if t { "text" } else { "binary" };
    if got_text != text {
        return Err(format!(
            "connection {conn}, message {seq}: sent {}, the echo is {}",
            kind(text),
            kind(got_text)
        ));
    }
    if got.len() != expected.len() {
        return Err(format!(
            "connection {conn}, message {seq}: sent {} bytes, the echo has {}",
            expected.len(),
            got.len()
        ));
    }
    if got != expected {
        let at = got
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "connection {conn}, message {seq}: the echo differs from what was sent at byte {at} \
             (0x{:02x}, expected 0x{:02x})",
            got[at], expected[at]
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Echo mode.

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

/// Close with 1000 and wait (bounded) for the server's answer. Whether the
/// close finished in time.
async fn close(reader: &mut WsReader, writer: &WsWriter) -> bool {
    let _ = writer.close(CloseCode::NORMAL, "").await;
    tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = reader.recv().await {}
    })
    .await
    .is_ok()
}

async fn echo_mode(args: &Args, builder: ClientBuilder) -> Result<Report, String> {
    let pipeline = args.pipeline as usize;
    let ctx = Ctx::new(Payload::new(args.size, args.text), pipeline);
    let pb = progress_bar();
    let total = args.connections;

    // Connect everything first, in bounded bursts.
    let gate = Arc::new(Semaphore::new(args.connect_burst as usize));
    let connected = Arc::new(AtomicUsize::new(0));
    pb.set_length(total as u64);
    pb.set_message("connecting");
    let mut pending = tokio::task::JoinSet::new();
    for _ in 0..total {
        let permit = gate.clone().acquire_owned().await.expect("never closed");
        let (b, done) = (builder.clone(), connected.clone());
        pending.spawn(async move {
            let r = b.connect().await;
            drop(permit);
            done.fetch_add(1, Relaxed);
            r
        });
        pb.set_position(connected.load(Relaxed) as u64);
    }
    let mut sockets = Vec::with_capacity(total);
    let mut first_error = None;
    let mut errors = 0usize;
    while let Some(r) = pending.join_next().await {
        pb.set_position(connected.load(Relaxed) as u64);
        match r {
            Ok(Ok((ws, _))) => sockets.push(ws),
            Ok(Err(e)) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    if let Some(e) = first_error {
        pb.finish_and_clear();
        return Err(format!("{errors} of {total} connections failed: {e}"));
    }

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
    let mut report = Report::new(args, &window);
    let secs = window.wall.as_secs_f64();
    let h = ctx.histogram.lock().unwrap_or_else(|p| p.into_inner());
    report.ops = stats.messages;
    report.push("messages", Json::Int(stats.messages));
    report.push("msgs_per_s", Json::Num(stats.messages as f64 / secs));
    report.push("mb_per_s", Json::Num(stats.bytes as f64 / 1e6 / secs));
    report.push("verified", Json::Bool(true));
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

/// Wait for the tasks; after `timeout`, abort the rest and say how many.
async fn join_all<T: Send + 'static>(
    tasks: Vec<tokio::task::JoinHandle<Result<T, String>>>,
    ctx: &Ctx,
    timeout: Duration,
) -> Result<Vec<Option<T>>, usize> {
    let mut deadline = tokio::time::Instant::now() + timeout;
    let mut out = Vec::with_capacity(tasks.len());
    let mut stuck = 0;
    let mut aborting = false;
    for mut t in tasks {
        if ctx.phase() == ABORT && !aborting {
            // Failed: give the others a moment, not the whole timeout.
            aborting = true;
            deadline = deadline.min(tokio::time::Instant::now() + Duration::from_millis(100));
        }
        match tokio::time::timeout_at(deadline, &mut t).await {
            Ok(Ok(Ok(v))) => out.push(Some(v)),
            Ok(Ok(Err(_))) | Ok(Err(_)) => out.push(None),
            Err(_) => {
                t.abort();
                stuck += 1;
                out.push(None);
            }
        }
    }
    if stuck > 0 && ctx.phase() != ABORT {
        Err(stuck)
    } else {
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// The measured window, shared by the echo and handshake modes.

struct Window {
    wall: Duration,
    generator_cpu: Option<CpuTimes>,
    server_cpu: Option<CpuTimes>,
    server_rss_kb: Option<u64>,
    /// Seconds the generator's and the server's threads were runnable but
    /// waiting for a CPU (another process had it): contention.
    generator_wait: Option<f64>,
    server_wait: Option<f64>,
}

/// CPU and run-queue wait of this process and the server, at one moment.
struct Sample {
    generator_cpu: Option<CpuTimes>,
    server_cpu: Option<CpuTimes>,
    generator_wait: Option<f64>,
    server_wait: Option<f64>,
}

impl Sample {
    fn take(server_pid: Option<u32>) -> Self {
        let server = server_pid.map(|p| p.to_string());
        Self {
            generator_cpu: proc_cpu_secs("self"),
            server_cpu: server.as_deref().and_then(proc_cpu_secs),
            generator_wait: proc_runq_wait_secs("self"),
            server_wait: server.as_deref().and_then(proc_runq_wait_secs),
        }
    }

    fn window(&self, wall: Duration, server_pid: Option<u32>) -> Window {
        let end = Sample::take(server_pid);
        let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
        let cpu_delta = |a: Option<CpuTimes>, b: Option<CpuTimes>| {
            a.zip(b).map(|(a, b)| CpuTimes {
                user: b.user - a.user,
                system: b.system - a.system,
            })
        };
        Window {
            wall,
            generator_cpu: cpu_delta(self.generator_cpu, end.generator_cpu),
            server_cpu: cpu_delta(self.server_cpu, end.server_cpu),
            server_rss_kb: server_pid.and_then(proc_rss_kb),
            generator_wait: delta(self.generator_wait, end.generator_wait),
            server_wait: delta(self.server_wait, end.server_wait),
        }
    }
}

/// Warm up, then measure for the duration; the tasks read the phase.
async fn run_window(
    args: &Args,
    ctx: &Ctx,
    pb: &ProgressBar,
    counters: &[Arc<AtomicU64>],
    unit: &str,
) -> Window {
    let total = args.warmup + args.duration;
    pb.set_length(total.as_millis() as u64);
    pb.set_position(0);
    let started = Instant::now();
    let mut ticker = Ticker::new(counters);
    wait(ctx, args.warmup, || {
        let rate = ticker.rate();
        pb.set_position(started.elapsed().as_millis() as u64);
        pb.set_message(format!("warm-up, {rate:.0} {unit}"));
    })
    .await;
    let sample = Sample::take(args.server_pid);
    let t0 = Instant::now();
    if ctx.phase() != ABORT {
        ctx.phase.store(MEASURE, Relaxed);
    }
    wait(ctx, args.duration, || {
        let rate = ticker.rate();
        pb.set_position(started.elapsed().as_millis() as u64);
        pb.set_message(format!("measuring, {rate:.0} {unit}"));
    })
    .await;
    if ctx.phase() != ABORT {
        ctx.phase.store(STOP, Relaxed);
    }
    sample.window(t0.elapsed(), args.server_pid)
}

/// Sleep for `d`, calling `tick` now and then; return early on a failure.
async fn wait(ctx: &Ctx, d: Duration, mut tick: impl FnMut()) {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        if ctx.phase() == ABORT {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return;
        }
        let next = (now + TICK).min(deadline);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => tick(),
            _ = ctx.failed.notified() => return,
        }
    }
}

/// Rate of the counters' sum between calls.
struct Ticker<'a> {
    counters: &'a [Arc<AtomicU64>],
    last: u64,
    at: Instant,
}

impl<'a> Ticker<'a> {
    fn new(counters: &'a [Arc<AtomicU64>]) -> Self {
        let mut t = Self {
            counters,
            last: 0,
            at: Instant::now(),
        };
        t.last = t.sum();
        t
    }

    fn sum(&self) -> u64 {
        self.counters.iter().map(|c| c.load(Relaxed)).sum()
    }

    fn rate(&mut self) -> f64 {
        let now = Instant::now();
        let sum = self.sum();
        let secs = (now - self.at).as_secs_f64().max(1e-3);
        let rate = (sum - self.last) as f64 / secs;
        self.last = sum;
        self.at = now;
        rate
    }
}

// ---------------------------------------------------------------------------
// Handshake mode.

async fn handshake_loop(
    ctx: Arc<Ctx>,
    builder: ClientBuilder,
    progress: Arc<AtomicU64>,
    slow_closes: Arc<AtomicU64>,
) -> Result<u64, String> {
    let mut done = 0u64;
    let mut latencies = Vec::with_capacity(LATENCY_BATCH);
    while ctx.phase() <= MEASURE {
        let start = Instant::now();
        let ws = match builder.clone().connect().await {
            Ok((ws, _)) => ws,
            Err(e) => {
                if ctx.phase() >= STOP {
                    break;
                }
                return Err(format!("handshake failed: {e}"));
            }
        };
        if ctx.phase() == MEASURE {
            done += 1;
            latencies.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
            if latencies.len() >= LATENCY_BATCH {
                ctx.record(&mut latencies);
            }
        }
        progress.fetch_add(1, Relaxed);
        let (mut reader, writer) = ws.split();
        if !close(&mut reader, &writer).await {
            slow_closes.fetch_add(1, Relaxed);
        }
    }
    ctx.record(&mut latencies);
    Ok(done)
}

async fn handshake_mode(args: &Args, builder: ClientBuilder) -> Result<Report, String> {
    let ctx = Ctx::new(Payload::new(0, false), 1);
    let pb = progress_bar();
    let slow_closes = Arc::new(AtomicU64::new(0));
    let mut counters = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let progress = Arc::new(AtomicU64::new(0));
        counters.push(progress.clone());
        let (ctx2, b, slow) = (ctx.clone(), builder.clone(), slow_closes.clone());
        tasks.push(tokio::spawn(async move {
            let r = handshake_loop(ctx2.clone(), b, progress, slow).await;
            if let Err(e) = &r {
                ctx2.fail(e.clone());
            }
            r
        }));
    }
    let window = run_window(args, &ctx, &pb, &counters, "handshakes/s").await;
    pb.set_message("closing");
    // A loop may be in a handshake and a close when the window ends.
    let joined = join_all(tasks, &ctx, Duration::from_secs(25)).await;
    pb.finish_and_clear();
    if let Some(e) = ctx.failure() {
        return Err(e);
    }
    let results = joined.map_err(|n| format!("{n} connections did not finish in time"))?;
    let handshakes: u64 = results.into_iter().flatten().sum();
    let secs = window.wall.as_secs_f64();
    let slow = slow_closes.load(Relaxed);
    let mut report = Report::new(args, &window);
    report.ops = handshakes;
    report.push("handshakes", Json::Int(handshakes));
    report.push("handshakes_per_s", Json::Num(handshakes as f64 / secs));
    report.push("slow_closes", Json::Int(slow));
    report.lines.push(format!(
        "  handshakes   {:.0}/s ({handshakes} opened and closed; latency = connect + handshake)",
        handshakes as f64 / secs
    ));
    report.latencies(&ctx.histogram.lock().unwrap_or_else(|p| p.into_inner()));
    report.cpu(&window, handshakes, "handshake");
    if slow > 0 {
        report.lines.push(format!(
            "  warning      {slow} closing handshakes took over {}s",
            CLOSE_WAIT.as_secs()
        ));
    }
    Ok(report)
}

// ---------------------------------------------------------------------------
// Idle mode.

async fn idle_conn(
    id: u32,
    ctx: Arc<Ctx>,
    builder: ClientBuilder,
    permit: tokio::sync::OwnedSemaphorePermit,
    ready: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let (ws, _) = builder
        .connect()
        .await
        .map_err(|e| format!("connection {id}: {e}"))?;
    let (mut reader, writer) = ws.split();
    let mut free = Vec::new();
    let (message, expected) = ctx.payload.make(id, 0, &mut free);
    writer
        .send(message)
        .await
        .map_err(|e| format!("connection {id}: send: {e}"))?;
    let echo = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match reader.recv().await {
                Some(Ok(Message::Binary(b))) => return Ok((b, false)),
                Some(Ok(Message::Text(t))) => return Ok((t.into_bytes(), true)),
                Some(Ok(Message::Close(f))) => return Err(format!("closed by the server: {f:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("closed by the server".into()),
            }
        }
    })
    .await
    .map_err(|_| format!("connection {id}: no echo within 10s"))?
    .map_err(|e| format!("connection {id}: {e}"))?;
    verify(id, 0, &echo.0, echo.1, &expected, ctx.payload.text)?;
    drop(permit);
    open.fetch_add(1, Relaxed);
    ready.fetch_add(1, Relaxed);
    // Hold it until told to stop, answering pings meanwhile.
    let lost = tokio::select! {
        item = async { loop { match reader.recv().await { Some(Ok(m)) if !m.is_close() => {} other => return other } } } => Some(item),
        _ = stop.wait_for(|s| *s) => None,
    };
    open.fetch_sub(1, Relaxed);
    match lost {
        Some(item) => Err(format!("connection {id}: lost while idle: {item:?}")),
        None => {
            close(&mut reader, &writer).await;
            Ok(())
        }
    }
}

async fn idle_mode(args: &Args, builder: ClientBuilder) -> Result<Report, String> {
    let total = args.connections;
    let ctx = Ctx::new(Payload::new(args.size, args.text), 1);
    let pb = progress_bar();
    pb.set_length(total as u64);
    let rss_before = args.server_pid.and_then(proc_rss_kb);
    let gate = Arc::new(Semaphore::new(args.connect_burst as usize));
    let ready = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let permit = gate.clone().acquire_owned().await.expect("never closed");
        let (ctx, b, ready2, open2) = (ctx.clone(), builder.clone(), ready.clone(), open.clone());
        let (failed2, first, stop) = (failed.clone(), first_error.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            let r = idle_conn(i as u32, ctx, b, permit, ready2, open2, stop).await;
            if let Err(e) = &r {
                failed2.fetch_add(1, Relaxed);
                first
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e.clone());
            }
        }));
        if i % 64 == 0 {
            pb.set_position(ready.load(Relaxed) as u64);
            pb.set_message(format!("connecting, {} failed", failed.load(Relaxed)));
        }
    }
    // Every attempt settles within its connect, handshake and echo timeouts.
    let settle_deadline = Instant::now() + Duration::from_secs(35);
    while ready.load(Relaxed) + failed.load(Relaxed) < total && Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        pb.set_position(ready.load(Relaxed) as u64);
        pb.set_message(format!("connecting, {} failed", failed.load(Relaxed)));
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let opened = ready.load(Relaxed);
    pb.set_length(args.duration.as_millis() as u64);
    let hold_start = Instant::now();
    let sample = Sample::take(args.server_pid);
    wait(&ctx, args.duration, || {
        pb.set_position(hold_start.elapsed().as_millis() as u64);
        pb.set_message(format!("holding {} connections", open.load(Relaxed)));
    })
    .await;
    let still_open = open.load(Relaxed);
    let window = sample.window(hold_start.elapsed(), args.server_pid);
    let rss_held = window.server_rss_kb;
    pb.set_message("closing");
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + CLOSE_WAIT + Duration::from_secs(5);
    for mut t in tasks {
        if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
            t.abort();
        }
    }
    pb.finish_and_clear();

    let mut report = Report::new(args, &window);
    report.ok = still_open == total;
    report.ops = still_open as u64;
    report.push("requested", Json::Int(total as u64));
    report.push("opened", Json::Int(opened as u64));
    report.push("open", Json::Int(still_open as u64));
    report.push("failed", Json::Int(failed.load(Relaxed) as u64));
    report.push("connect_s", Json::Num(connect_secs));
    report.push("server_rss_before_kb", Json::opt_int(rss_before));
    report.push("server_rss_held_kb", Json::opt_int(rss_held));
    let per_conn = rss_before
        .zip(rss_held)
        .filter(|_| still_open > 0)
        .map(|(a, b)| (b as f64 - a as f64) * 1024.0 / still_open as f64);
    report.push("server_bytes_per_conn", Json::opt_num(per_conn));
    report.lines.push(format!(
        "  connections  {still_open} of {total} open after {:.1}s ({opened} opened in {connect_secs:.2}s, {} failed)",
        window.wall.as_secs_f64(),
        failed.load(Relaxed)
    ));
    if let (Some(a), Some(b)) = (rss_before, rss_held) {
        report.lines.push(format!(
            "  server RSS   {a} KiB before, {b} KiB holding; {:.0} bytes per connection",
            per_conn.unwrap_or(f64::NAN)
        ));
    }
    if let Some(e) = first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        report.lines.push(format!("  first error  {e}"));
    }
    report.cpu(&window, 0, "");
    Ok(report)
}

// ---------------------------------------------------------------------------
// Reporting.

enum Json {
    Int(u64),
    Num(f64),
    Str(String),
    Bool(bool),
    Null,
}

impl Json {
    fn opt_int(v: Option<u64>) -> Self {
        v.map_or(Json::Null, Json::Int)
    }
    fn opt_num(v: Option<f64>) -> Self {
        v.map_or(Json::Null, Json::Num)
    }
    fn write(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Json::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Json::Num(v) if v.is_finite() => {
                let _ = write!(out, "{v:.3}");
            }
            Json::Num(_) | Json::Null => out.push_str("null"),
            Json::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Json::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
        }
    }
}

struct Report {
    fields: Vec<(&'static str, Json)>,
    lines: Vec<String>,
    ok: bool,
    ops: u64,
}

impl Report {
    fn new(args: &Args, window: &Window) -> Self {
        let mut r = Self {
            fields: Vec::new(),
            lines: Vec::new(),
            ok: true,
            ops: 0,
        };
        let kind = if args.text { "text" } else { "binary" };
        r.push("mode", Json::Str(args.mode.name().into()));
        r.push("url", Json::Str(args.url.clone()));
        r.push("connections", Json::Int(args.connections as u64));
        r.push("size", Json::Int(args.size as u64));
        r.push("pipeline", Json::Int(u64::from(args.pipeline)));
        r.push("kind", Json::Str(kind.into()));
        r.push("threads", Json::Int(args.threads as u64));
        r.push("warmup_s", Json::Num(args.warmup.as_secs_f64()));
        r.push("duration_s", Json::Num(window.wall.as_secs_f64()));
        let what = match args.mode {
            Mode::Echo => format!(
                "echo, {} connections x {} in flight, {} B {kind}",
                args.connections, args.pipeline, args.size
            ),
            Mode::Idle => format!("idle, {} connections", args.connections),
            Mode::Handshake => format!("handshake, {} loops", args.connections),
        };
        let warmup = match args.mode {
            Mode::Idle => String::new(),
            _ => format!(" after {:.1}s warm-up", args.warmup.as_secs_f64()),
        };
        r.lines.push(format!(
            "ws bench: {what}, {:.1}s measured{warmup}, {} thread(s)",
            window.wall.as_secs_f64(),
            args.threads
        ));
        r
    }

    fn push(&mut self, key: &'static str, value: Json) {
        self.fields.push((key, value));
    }

    fn latencies(&mut self, h: &Histogram<u64>) {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            for k in ["lat_p50_us", "lat_p99_us", "lat_p999_us", "lat_max_us"] {
                self.push(k, Json::Null);
            }
            return;
        }
        let (p50, p99, p999, max) = (
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.max()),
        );
        self.push("lat_p50_us", Json::Num(p50));
        self.push("lat_p99_us", Json::Num(p99));
        self.push("lat_p999_us", Json::Num(p999));
        self.push("lat_max_us", Json::Num(max));
        self.lines.push(format!(
            "  latency      p50 {p50:.1} µs, p99 {p99:.1} µs, p99.9 {p999:.1} µs, max {max:.1} µs"
        ));
    }

    /// CPU of the generator and the server over the window; per operation
    /// when `ops` is not zero.
    fn cpu(&mut self, window: &Window, ops: u64, op: &str) {
        let secs = window.wall.as_secs_f64();
        let gen = window.generator_cpu.map(|c| c.total() / secs * 100.0);
        let server = window.server_cpu.map(|c| c.total() / secs * 100.0);
        let gen_wait = window.generator_wait.map(|c| c / secs * 100.0);
        let server_wait = window.server_wait.map(|c| c / secs * 100.0);
        let per_op = |part: fn(&CpuTimes) -> f64| {
            window
                .server_cpu
                .filter(|_| ops > 0)
                .map(|c| part(&c) * 1e6 / ops as f64)
        };
        let (per_op, sys_per_op) = (per_op(CpuTimes::total), per_op(|c| c.system));
        // The share of a core the generator spent in the kernel (system
        // calls, and on loopback the TCP work of the server's side too).
        let gen_sys = window.generator_cpu.map(|c| c.system / secs * 100.0);
        self.push("gen_cpu_pct", Json::opt_num(gen));
        self.push("gen_sys_pct", Json::opt_num(gen_sys));
        self.push("server_cpu_pct", Json::opt_num(server));
        self.push("server_cpu_us_per_op", Json::opt_num(per_op));
        self.push("server_sys_us_per_op", Json::opt_num(sys_per_op));
        self.push("server_rss_kb", Json::opt_int(window.server_rss_kb));
        self.push("gen_runq_wait_pct", Json::opt_num(gen_wait));
        self.push("server_runq_wait_pct", Json::opt_num(server_wait));
        let mut line = format!(
            "  CPU          generator {}",
            gen.map_or("?".into(), |g| format!("{g:.0}% of a core"))
        );
        if let Some(k) = gen_sys {
            line.push_str(&format!(" ({k:.0}% in the kernel)"));
        }
        if let Some(s) = server {
            line.push_str(&format!("; server {s:.0}%"));
            if let Some(p) = per_op {
                line.push_str(&format!(", {p:.2} µs per {op}"));
                if let Some(k) = sys_per_op {
                    line.push_str(&format!(" ({k:.2} in the kernel)"));
                }
            }
        }
        self.lines.push(line);
        let waits = [("generator", gen_wait), ("server", server_wait)];
        let waits: Vec<String> = waits
            .iter()
            .filter_map(|(who, w)| w.filter(|&w| w >= 1.0).map(|w| format!("{who} {w:.0}%")))
            .collect();
        if !waits.is_empty() {
            self.lines.push(format!(
                "  contention   runnable but waiting for a CPU: {} of the time \
                 (other processes are using these cores)",
                waits.join(", ")
            ));
        }
    }

    fn print(&self, json: bool) {
        for line in &self.lines {
            if json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
        if json {
            let mut out = String::from("{");
            for (i, (k, v)) in self.fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                Json::Str((*k).into()).write(&mut out);
                out.push(':');
                v.write(&mut out);
            }
            out.push_str(&format!(",\"ok\":{}}}", self.ok));
            println!("{out}");
        }
    }
}

fn progress_bar() -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr_with_hz(4)
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(Some(0), target);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

// ---------------------------------------------------------------------------
// /proc readers (Linux; `None` elsewhere).

/// CPU seconds of a process, all threads: in user space and in the kernel.
#[derive(Clone, Copy, Debug)]
struct CpuTimes {
    user: f64,
    system: f64,
}

impl CpuTimes {
    fn total(&self) -> f64 {
        self.user + self.system
    }
}

/// User and system CPU seconds of a process (`self` or a pid), all threads.
fn proc_cpu_secs(pid: &str) -> Option<CpuTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from its closing ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(CpuTimes {
        user: utime as f64 / USER_HZ,
        system: stime as f64 / USER_HZ,
    })
}

/// Seconds the threads of a process spent runnable but waiting for a CPU
/// (second field of /proc/PID/task/TID/schedstat), summed over its threads.
fn proc_runq_wait_secs(pid: &str) -> Option<f64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(path) {
            total += s.split_whitespace().nth(1)?.parse::<u64>().ok()?;
        }
    }
    Some(total as f64 / 1e9)
}

/// Resident memory of a process in KiB (`VmRSS`).
fn proc_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------
// Argument parsers.

/// `16`, `1k`, `1KiB`, `64k`, `1m`, `1MB`: k and m are 1024 and 1024².
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of bytes like 16, 1k, 64KiB, 1m"))?;
    let mult = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("{s:?}: unknown unit (use k or m)")),
    };
    let size = n
        .checked_mul(mult)
        .filter(|&v| v <= MAX_SIZE)
        .ok_or_else(|| format!("{s:?}: at most {} MiB", MAX_SIZE >> 20))?;
    Ok(size)
}

/// Seconds, fractions allowed, with an optional `s` (or `ms`) suffix.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else {
        (t.strip_suffix('s').unwrap_or(t), 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected seconds, like 10 or 0.5"))?;
    if !(0.0..=86_400.0).contains(&v) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16"), Ok(16));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("1MB"), Ok(1 << 20));
        assert!(parse_size("1x").is_err());
        assert!(parse_size("k").is_err());
        assert!(parse_size("65m").is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_secs("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("-1").is_err());
    }

    #[test]
    fn payloads_differ_and_verify() {
        for text in [false, true] {
            for size in [0, 1, 4, 16, 17, 1000] {
                let p = Payload::new(size, text);
                let mut free = Vec::new();
                let (m1, e1) = p.make(3, 7, &mut free);
                let (_, e2) = p.make(3, 8, &mut free);
                assert_eq!(m1.len(), size);
                assert_eq!(m1.is_text(), text);
                assert_eq!(m1.as_payload(), &e1[..]);
                if size > 0 {
                    assert_ne!(e1, e2);
                }
                assert!(verify(3, 7, &e1, text, &e1, text).is_ok());
                if size > 0 {
                    assert!(verify(3, 7, &e2, text, &e1, text).is_err());
                    assert!(verify(3, 7, &e1[1..], text, &e1, text).is_err());
                }
                assert!(verify(3, 7, &e1, !text, &e1, text).is_err());
            }
        }
    }

    #[test]
    fn reused_buffer_is_restamped() {
        let p = Payload::new(64, false);
        let mut free = Vec::new();
        let (_, first) = p.make(1, 1, &mut free);
        free.push(first.try_into_mut().expect("unique"));
        let (_, reused) = p.make(1, 2, &mut free);
        let (_, fresh) = p.make(1, 2, &mut Vec::new());
        assert_eq!(reused, fresh);
    }

    /// Parse `ws bench` arguments.
    fn args(list: &[&str]) -> Args {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let mut argv = vec!["bench"];
        argv.extend_from_slice(list);
        <Cli as clap::Parser>::parse_from(argv).args
    }

    /// An echo server on ws-net that passes each data message through
    /// `mangle` (by its index on the connection) before echoing it.
    async fn server(mangle: fn(usize, Message) -> Option<Message>) -> String {
        let listener = ws_net::server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = ws_net::server::accept(tcp, Config::default()).await else {
                        return;
                    };
                    let mut n = 0;
                    while let Some(Ok(msg)) = ws.recv().await {
                        if !msg.is_data() {
                            continue;
                        }
                        n += 1;
                        if let Some(reply) = mangle(n, msg) {
                            if ws.send(reply).await.is_err() {
                                break;
                            }
                        }
                    }
                });
            }
        });
        url
    }

    async fn bench(
        mangle: fn(usize, Message) -> Option<Message>,
        extra: &[&str],
    ) -> Result<Report, String> {
        let url = server(mangle).await;
        let mut list = vec!["--url", &url, "-d", "0.3", "--warmup", "0.1"];
        for (flag, default) in [("-c", "2"), ("-s", "100")] {
            if !extra.contains(&flag) {
                list.extend_from_slice(&[flag, default]);
            }
        }
        list.extend_from_slice(extra);
        let a = args(&list);
        let builder = ClientBuilder::new(&a.url).unwrap().config(client_config());
        match a.mode {
            Mode::Echo => echo_mode(&a, builder).await,
            Mode::Idle => idle_mode(&a, builder).await,
            Mode::Handshake => handshake_mode(&a, builder).await,
        }
    }

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

    #[tokio::test]
    async fn idle_and_handshake_modes() {
        let report = bench(|_, m| Some(m), &["--mode", "idle", "-c", "50"])
            .await
            .unwrap();
        assert!(report.ok);
        assert_eq!(report.ops, 50);
        let report = bench(|_, m| Some(m), &["--mode", "handshake", "-c", "2"])
            .await
            .unwrap();
        assert!(report.ops > 0);
    }

    #[test]
    fn proc_readers() {
        if cfg!(target_os = "linux") {
            assert!(proc_cpu_secs("self").is_some());
            assert!(proc_rss_kb(std::process::id()).is_some());
            assert!(proc_runq_wait_secs("self").is_some());
        }
    }
}
