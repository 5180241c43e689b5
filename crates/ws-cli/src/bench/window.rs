//! The measured window: warm-up, then the timed part, with the CPU and
//! run-queue samples taken at its ends and the progress bar's rate.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::proc::{proc_cpu_secs, proc_rss_kb, proc_runq_wait_secs, CpuTimes};
use super::{Args, Ctx, ABORT, MEASURE, STOP};

/// How often the progress bar is updated.
const TICK: Duration = Duration::from_millis(250);

/// What the window saw: its length, and the CPU time, resident memory and
/// run-queue wait of the generator and the server over it.
pub(super) struct Window {
    pub(super) wall: Duration,
    pub(super) generator_cpu: Option<CpuTimes>,
    pub(super) server_cpu: Option<CpuTimes>,
    pub(super) server_rss_kb: Option<u64>,
    /// Seconds the generator's and the server's threads were runnable but
    /// waiting for a CPU (another process had it): contention.
    pub(super) generator_wait: Option<f64>,
    pub(super) server_wait: Option<f64>,
}

/// CPU and run-queue wait of this process and the server, at one moment.
pub(super) struct Sample {
    generator_cpu: Option<CpuTimes>,
    server_cpu: Option<CpuTimes>,
    generator_wait: Option<f64>,
    server_wait: Option<f64>,
}

impl Sample {
    pub(super) fn take(server_pid: Option<u32>) -> Self {
        let server = server_pid.map(|p| p.to_string());
        Self {
            generator_cpu: proc_cpu_secs("self"),
            server_cpu: server.as_deref().and_then(proc_cpu_secs),
            generator_wait: proc_runq_wait_secs("self"),
            server_wait: server.as_deref().and_then(proc_runq_wait_secs),
        }
    }

    pub(super) fn window(&self, wall: Duration, server_pid: Option<u32>) -> Window {
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
pub(super) async fn run_window(
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
pub(super) async fn wait(ctx: &Ctx, d: Duration, mut tick: impl FnMut()) {
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
