//! The report of a run: its summary lines for people and its fields for
//! `--json`.

use hdrhistogram::Histogram;

use super::proc::CpuTimes;
use super::window::Window;
use super::{Args, Mode};

pub(super) enum Json {
    Int(u64),
    Num(f64),
    Str(String),
    Bool(bool),
    Null,
}

impl Json {
    pub(super) fn opt_int(v: Option<u64>) -> Self {
        v.map_or(Json::Null, Json::Int)
    }
    pub(super) fn opt_num(v: Option<f64>) -> Self {
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

pub(super) struct Report {
    fields: Vec<(&'static str, Json)>,
    pub(super) lines: Vec<String>,
    pub(super) ok: bool,
    pub(super) ops: u64,
}

impl Report {
    pub(super) fn new(args: &Args, window: &Window) -> Self {
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

    pub(super) fn push(&mut self, key: &'static str, value: Json) {
        self.fields.push((key, value));
    }

    pub(super) fn latencies(&mut self, h: &Histogram<u64>) {
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

    pub(super) fn print(&self, json: bool) {
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
