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
//! - `rpc` (`--rpc`): closed-loop JSON-RPC calls, every answer checked
//!   (its id and its result); `subscribe` (`--subscribe`): notifications
//!   delivered per second and their delivery latency. See `rpc.rs`.
//!
//! Only what happens between the warm-up and the end of the duration is
//! counted. With `--server-pid`, the server's CPU time over that window
//! (and its resident memory) is read from /proc; the generator's own CPU
//! time is always read, so a caller can tell when the generator, not the
//! server, is the bottleneck.

mod echo;
mod handshake;
mod idle;
mod parse;
mod payload;
mod proc;
mod report;
mod rpc;
mod window;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::Notify;
use ws_net::{ClientBuilder, CloseCode, Config, WsReader, WsWriter};

use parse::{parse_secs, parse_size};
use payload::Payload;
use report::Report;

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
    /// JSON-RPC calls instead of echoes (`--mode rpc`): `METHOD [c, k]`
    /// answered with `c + k`, every answer checked.
    #[arg(long, conflicts_with = "subscribe")]
    rpc: bool,
    /// JSON-RPC notifications (`--mode subscribe`): subscribe on every
    /// connection, then count the items (each with `n` and a server time
    /// stamp `t` in microseconds).
    #[arg(long)]
    subscribe: bool,
    /// The method of `--rpc` calls.
    #[arg(long, default_value = "add")]
    method: String,
    /// The method `--subscribe` calls on each connection.
    #[arg(long, default_value = "subscribe_ticks")]
    subscribe_method: String,
    /// The parameters of the subscribe call, as JSON.
    #[arg(long)]
    params: Option<String>,
    /// Idle mode: each connection makes one JSON-RPC call (`METHOD [c,
    /// 0]`, answered with `c`) instead of an echo, for JSON-RPC servers.
    #[arg(long)]
    idle_rpc: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Closed-loop echo: throughput and latency.
    Echo,
    /// Hold idle connections: how many stay open (and server memory).
    Idle,
    /// Open and close connections: handshakes per second.
    Handshake,
    /// Closed-loop JSON-RPC calls.
    Rpc,
    /// JSON-RPC notifications delivered.
    Subscribe,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Idle => "idle",
            Mode::Handshake => "handshake",
            Mode::Rpc => "rpc",
            Mode::Subscribe => "subscribe",
        }
    }
}

/// Latencies a connection buffers before adding them to the histogram.
const LATENCY_BATCH: usize = 256;
/// How long a closing handshake may take before the connection is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

// The phases of a run, in `Ctx::phase`.
const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;
const ABORT: u8 = 3;

pub fn run(mut args: Args) -> ExitCode {
    if args.rpc {
        args.mode = Mode::Rpc;
    }
    if args.subscribe {
        args.mode = Mode::Subscribe;
    }
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
    let outcome = rt.block_on(measure(&args, builder));
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

/// Run the mode the arguments ask for.
async fn measure(args: &Args, builder: ClientBuilder) -> Result<Report, String> {
    match args.mode {
        Mode::Echo => echo::echo_mode(args, builder).await,
        Mode::Idle => idle::idle_mode(args, builder).await,
        Mode::Handshake => handshake::handshake_mode(args, builder).await,
        Mode::Rpc => rpc::rpc_mode(args, builder).await,
        Mode::Subscribe => rpc::subscribe_mode(args, builder).await,
    }
}

fn client_config() -> Config {
    let mut config = Config::default();
    // Keepalive pings would only add noise to a measurement.
    config.protocol.ping_interval = None;
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

/// Open every connection first, in bounded bursts; all or an error.
async fn connect_all(
    args: &Args,
    builder: &ClientBuilder,
    pb: &ProgressBar,
) -> Result<Vec<ws_net::WebSocket>, String> {
    use std::sync::atomic::AtomicUsize;
    let total = args.connections;
    let gate = Arc::new(tokio::sync::Semaphore::new(args.connect_burst as usize));
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
    Ok(sockets)
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

/// An echo server to run the modes against in their tests, and a run.
#[cfg(test)]
mod testing {
    use ws_net::{ClientBuilder, Config, Message};

    use super::{client_config, measure, report::Report, Args};

    /// Parse `ws bench` arguments.
    pub(super) fn args(list: &[&str]) -> Args {
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

    /// Run `ws bench` with `extra` arguments against a fresh [`server`].
    pub(super) async fn bench(
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
        measure(&a, builder).await
    }
}
