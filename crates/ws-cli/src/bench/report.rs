//! The report of a run: its summary lines for people and its fields for
//! `--json`.

use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};

use super::proc::CpuTimes;
use super::window::Window;
use super::{Args, Mode};

/// The results of a run: the summary lines for people, and the fields of
/// the `--json` object, in its order (the settings, the mode's results, the
/// latencies, the CPU use, then `ok`).
#[derive(Serialize)]
pub(super) struct Report {
    #[serde(flatten)]
    settings: Settings,
    #[serde(flatten)]
    results: Results,
    #[serde(flatten)]
    latency: Option<Latency>,
    #[serde(flatten)]
    cpu: Option<Cpu>,
    pub(super) ok: bool,
    #[serde(skip)]
    pub(super) lines: Vec<String>,
    #[serde(skip)]
    pub(super) ops: u64,
}

/// A measured quantity in `--json`: rounded to three decimals (more digits
/// would be noise), `null` when it is not a number.
#[derive(Clone, Copy)]
pub(super) struct Num(pub(super) f64);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f64((self.0 * 1000.0).round() / 1000.0)
        } else {
            s.serialize_none()
        }
    }
}

/// What was asked for, first in every report.
#[derive(Serialize)]
struct Settings {
    mode: &'static str,
    url: String,
    connections: usize,
    size: usize,
    pipeline: u32,
    kind: &'static str,
    threads: usize,
    warmup_s: Num,
    duration_s: Num,
}

/// What a mode counted.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Results {
    Echo(EchoResults),
    Handshake(HandshakeResults),
    Idle(IdleResults),
    Rpc(RpcResults),
    Subscribe(SubscribeResults),
}

#[derive(Serialize)]
pub(super) struct RpcResults {
    pub(super) calls: u64,
    pub(super) calls_per_s: Num,
    /// Always true: a run with an answer that fails verification has no
    /// report.
    pub(super) verified: bool,
}

#[derive(Serialize)]
pub(super) struct SubscribeResults {
    pub(super) items: u64,
    pub(super) items_per_s: Num,
    /// Items the server skipped (gaps in their numbers).
    pub(super) lost: u64,
}

#[derive(Serialize)]
pub(super) struct EchoResults {
    pub(super) messages: u64,
    pub(super) msgs_per_s: Num,
    pub(super) mb_per_s: Num,
    /// Always true: a run with an echo that fails verification has no
    /// report.
    pub(super) verified: bool,
}

#[derive(Serialize)]
pub(super) struct HandshakeResults {
    pub(super) handshakes: u64,
    pub(super) handshakes_per_s: Num,
    pub(super) slow_closes: u64,
}

#[derive(Serialize)]
pub(super) struct IdleResults {
    pub(super) requested: usize,
    pub(super) opened: usize,
    pub(super) open: usize,
    pub(super) failed: usize,
    pub(super) connect_s: Num,
    pub(super) server_rss_before_kb: Option<u64>,
    pub(super) server_rss_held_kb: Option<u64>,
    pub(super) server_bytes_per_conn: Option<Num>,
}

/// Latency percentiles in microseconds; all `null` when nothing was timed.
#[derive(Serialize)]
struct Latency {
    lat_p50_us: Option<Num>,
    lat_p99_us: Option<Num>,
    lat_p999_us: Option<Num>,
    lat_max_us: Option<Num>,
}

/// CPU use over the window: percentages of one core, microseconds per
/// operation; `null` for what could not be read.
#[derive(Serialize)]
struct Cpu {
    gen_cpu_pct: Option<Num>,
    gen_sys_pct: Option<Num>,
    server_cpu_pct: Option<Num>,
    server_cpu_us_per_op: Option<Num>,
    server_sys_us_per_op: Option<Num>,
    server_rss_kb: Option<u64>,
    gen_runq_wait_pct: Option<Num>,
    server_runq_wait_pct: Option<Num>,
}

impl Report {
    pub(super) fn new(args: &Args, window: &Window, results: Results) -> Self {
        let kind = if args.text { "text" } else { "binary" };
        let settings = Settings {
            mode: args.mode.name(),
            url: args.url.clone(),
            connections: args.connections,
            size: args.size,
            pipeline: args.pipeline,
            kind,
            threads: args.threads,
            warmup_s: Num(args.warmup.as_secs_f64()),
            duration_s: Num(window.wall.as_secs_f64()),
        };
        let what = match args.mode {
            Mode::Echo => format!(
                "echo, {} connections x {} in flight, {} B {kind}",
                args.connections, args.pipeline, args.size
            ),
            Mode::Idle => format!("idle, {} connections", args.connections),
            Mode::Handshake => format!("handshake, {} loops", args.connections),
            Mode::Rpc => format!(
                "rpc, {} connections x {} calls in flight, {}",
                args.connections, args.pipeline, args.method
            ),
            Mode::Subscribe => format!(
                "subscribe, {} connections, {}",
                args.connections, args.subscribe_method
            ),
        };
        let warmup = match args.mode {
            Mode::Idle => String::new(),
            _ => format!(" after {:.1}s warm-up", args.warmup.as_secs_f64()),
        };
        let line = format!(
            "ws bench: {what}, {:.1}s measured{warmup}, {} thread(s)",
            window.wall.as_secs_f64(),
            args.threads
        );
        Self {
            settings,
            results,
            latency: None,
            cpu: None,
            ok: true,
            lines: vec![line],
            ops: 0,
        }
    }

    pub(super) fn latencies(&mut self, h: &Histogram<u64>) {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            self.latency = Some(Latency {
                lat_p50_us: None,
                lat_p99_us: None,
                lat_p999_us: None,
                lat_max_us: None,
            });
            return;
        }
        let (p50, p99, p999, max) = (
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.99)),
            us(h.value_at_quantile(0.999)),
            us(h.max()),
        );
        self.latency = Some(Latency {
            lat_p50_us: Some(Num(p50)),
            lat_p99_us: Some(Num(p99)),
            lat_p999_us: Some(Num(p999)),
            lat_max_us: Some(Num(max)),
        });
        self.lines.push(format!(
            "  latency      p50 {p50:.1} µs, p99 {p99:.1} µs, p99.9 {p999:.1} µs, max {max:.1} µs"
        ));
    }

    /// CPU of the generator and the server over the window; per operation
    /// when `ops` is not zero.
    pub(super) fn cpu(&mut self, window: &Window, ops: u64, op: &str) {
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
        self.cpu = Some(Cpu {
            gen_cpu_pct: gen.map(Num),
            gen_sys_pct: gen_sys.map(Num),
            server_cpu_pct: server.map(Num),
            server_cpu_us_per_op: per_op.map(Num),
            server_sys_us_per_op: sys_per_op.map(Num),
            server_rss_kb: window.server_rss_kb,
            gen_runq_wait_pct: gen_wait.map(Num),
            server_runq_wait_pct: server_wait.map(Num),
        });
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

    pub(super) fn print(&self, json: bool) {
        for line in &self.lines {
            if json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
        if json {
            let out = serde_json::to_string(self).expect("the report is plain fields");
            println!("{out}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::args;
    use super::*;

    fn window(server: bool) -> Window {
        Window {
            wall: Duration::from_millis(1500),
            generator_cpu: Some(CpuTimes {
                user: 0.5,
                system: 0.25,
            }),
            server_cpu: server.then_some(CpuTimes {
                user: 0.75,
                system: 0.5,
            }),
            server_rss_kb: server.then_some(4096),
            generator_wait: Some(0.0),
            server_wait: server.then_some(0.015),
        }
    }

    /// benches/side_by_side/run.sh reads the fields of this one flat line
    /// by name, and `null` for what was not measured.
    #[test]
    fn echo_json() {
        let a = args(&["--url", "ws://127.0.0.1:9/", "-c", "4", "-s", "1k"]);
        let w = window(true);
        let results = EchoResults {
            messages: 3000,
            msgs_per_s: Num(3000.0 / 1.5),
            mb_per_s: Num(3000.0 * 1024.0 / 1e6 / 1.5),
            verified: true,
        };
        let mut r = Report::new(&a, &w, Results::Echo(results));
        let mut h = Histogram::new_with_bounds(1, 100_000_000_000, 3).unwrap();
        h.record(1000).unwrap();
        h.record(2000).unwrap();
        r.latencies(&h);
        r.cpu(&w, 3000, "message");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            concat!(
                r#"{"mode":"echo","url":"ws://127.0.0.1:9/","connections":4,"size":1024,"#,
                r#""pipeline":1,"kind":"binary","threads":1,"warmup_s":2.0,"duration_s":1.5,"#,
                r#""messages":3000,"msgs_per_s":2000.0,"mb_per_s":2.048,"verified":true,"#,
                r#""lat_p50_us":1.0,"lat_p99_us":2.0,"lat_p999_us":2.0,"lat_max_us":2.0,"#,
                r#""gen_cpu_pct":50.0,"gen_sys_pct":16.667,"server_cpu_pct":83.333,"#,
                r#""server_cpu_us_per_op":416.667,"server_sys_us_per_op":166.667,"#,
                r#""server_rss_kb":4096,"gen_runq_wait_pct":0.0,"server_runq_wait_pct":1.0,"#,
                r#""ok":true}"#
            )
        );
    }

    #[test]
    fn handshake_json_without_server_or_latencies() {
        let a = args(&["--mode", "handshake", "-c", "2", "--warmup", "0.5"]);
        let w = window(false);
        let results = HandshakeResults {
            handshakes: 0,
            handshakes_per_s: Num(0.0),
            slow_closes: 0,
        };
        let mut r = Report::new(&a, &w, Results::Handshake(results));
        r.latencies(&Histogram::new(3).unwrap());
        r.cpu(&w, 0, "handshake");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            concat!(
                r#"{"mode":"handshake","url":"ws://127.0.0.1:9001/","connections":2,"#,
                r#""size":16,"pipeline":1,"kind":"binary","threads":1,"warmup_s":0.5,"#,
                r#""duration_s":1.5,"handshakes":0,"handshakes_per_s":0.0,"slow_closes":0,"#,
                r#""lat_p50_us":null,"lat_p99_us":null,"lat_p999_us":null,"lat_max_us":null,"#,
                r#""gen_cpu_pct":50.0,"gen_sys_pct":16.667,"server_cpu_pct":null,"#,
                r#""server_cpu_us_per_op":null,"server_sys_us_per_op":null,"#,
                r#""server_rss_kb":null,"gen_runq_wait_pct":0.0,"server_runq_wait_pct":null,"#,
                r#""ok":true}"#
            )
        );
    }

    #[test]
    fn idle_json_has_no_latencies() {
        let a = args(&["--mode", "idle", "-c", "3", "--text"]);
        let w = window(true);
        let results = IdleResults {
            requested: 3,
            opened: 3,
            open: 2,
            failed: 1,
            connect_s: Num(0.0125),
            server_rss_before_kb: Some(1000),
            server_rss_held_kb: Some(1003),
            server_bytes_per_conn: Some(Num(3.0 * 1024.0 / 2.0)),
        };
        let mut r = Report::new(&a, &w, Results::Idle(results));
        r.ok = false;
        r.cpu(&w, 0, "");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            concat!(
                r#"{"mode":"idle","url":"ws://127.0.0.1:9001/","connections":3,"size":16,"#,
                r#""pipeline":1,"kind":"text","threads":1,"warmup_s":2.0,"duration_s":1.5,"#,
                r#""requested":3,"opened":3,"open":2,"failed":1,"connect_s":0.013,"#,
                r#""server_rss_before_kb":1000,"server_rss_held_kb":1003,"#,
                r#""server_bytes_per_conn":1536.0,"#,
                r#""gen_cpu_pct":50.0,"gen_sys_pct":16.667,"server_cpu_pct":83.333,"#,
                r#""server_cpu_us_per_op":null,"server_sys_us_per_op":null,"#,
                r#""server_rss_kb":4096,"gen_runq_wait_pct":0.0,"server_runq_wait_pct":1.0,"#,
                r#""ok":false}"#
            )
        );
    }

    #[test]
    fn numbers_have_three_decimals_or_are_null() {
        let json = |v: f64| serde_json::to_string(&Num(v)).unwrap();
        assert_eq!(json(2.0 / 3.0), "0.667");
        assert_eq!(json(123_456.789_9), "123456.79");
        assert_eq!(json(0.000_4), "0.0");
        assert_eq!(json(f64::NAN), "null");
        assert_eq!(json(f64::INFINITY), "null");
    }
}
