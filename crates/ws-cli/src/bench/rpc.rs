//! JSON-RPC modes.
//!
//! - `rpc` (`--rpc`): closed-loop calls. C connections keep P calls of
//!   `METHOD [c, k]` in flight (connection number, call number) and check
//!   every answer: the id of a call in flight, and the result `c + k` (the
//!   `add` method of the side-by-side servers and of `spec_server`'s
//!   peers). Replies may come in any order.
//! - `subscribe` (`--subscribe`): C connections subscribe (`SUBSCRIBE
//!   PARAMS`, answered with anything but an error), then count the
//!   notifications that follow: each item carries `n` (its number, counting
//!   up) and `t` (the server's wall clock in microseconds when it sent it;
//!   or `time` in milliseconds),
//!   either as a subscription item (`params.result`) or as a room
//!   notification (`params`). Delivery latency is the generator's clock
//!   minus `t` (same machine). An item that repeats or goes back fails the
//!   run; gaps (items the server dropped under its lag policy) are counted.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::value::RawValue;
use ws_net::{ClientBuilder, Message, WsReader, WsWriter};

use super::report::{Num, Report, Results, RpcResults, SubscribeResults};
use super::window::run_window;
use super::{close, join_all, progress_bar, Args, Ctx, ABORT, LATENCY_BATCH, MEASURE, STOP};

/// How long connections get to receive their last answers after the end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// An answer, as far as the generator reads it.
#[derive(Deserialize)]
struct Answer<'a> {
    id: Option<u64>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    calls: u64,
    lost: u64,
}

struct RpcConn {
    id: u32,
    ctx: Arc<Ctx>,
    method: Arc<str>,
    /// Calls in flight: their number and when they were sent.
    inflight: Vec<(u64, Instant)>,
    seq: u64,
    counts: Counts,
    latencies: Vec<u64>,
    progress: Arc<AtomicU64>,
}

impl RpcConn {
    fn next(&mut self, now: Instant) -> Message {
        let seq = self.seq;
        self.seq += 1;
        self.inflight.push((seq, now));
        Message::text(format!(
            r#"{{"jsonrpc":"2.0","id":{seq},"method":"{}","params":[{},{seq}]}}"#,
            self.method, self.id
        ))
    }

    /// An answer: `Some(now)` when it freed a slot.
    fn on_recv(
        &mut self,
        item: Option<Result<Message, ws_net::Error>>,
    ) -> Result<Option<Instant>, String> {
        let id = self.id;
        let text = match item {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => {
                return Err(format!("connection {id}: the server closed it ({f:?})"))
            }
            Some(Ok(_)) => return Ok(None),
            Some(Err(e)) => return Err(format!("connection {id}: {e}")),
            None => return Err(format!("connection {id}: closed with calls in flight")),
        };
        let answer: Answer<'_> = serde_json::from_str(&text)
            .map_err(|e| format!("connection {id}: unreadable answer {text:?}: {e}"))?;
        if answer.method.is_some() && answer.id.is_none() {
            // A notification the server chose to send: not an answer.
            return Ok(None);
        }
        let Some(seq) = answer.id else {
            return Err(format!(
                "connection {id}: an answer without a numeric id: {text}"
            ));
        };
        let Some(i) = self.inflight.iter().position(|(s, _)| *s == seq) else {
            return Err(format!(
                "connection {id}: an answer to id {seq}, not in flight"
            ));
        };
        let (_, sent) = self.inflight.swap_remove(i);
        if let Some(e) = answer.error {
            return Err(format!("connection {id}: call {seq} failed: {}", e.get()));
        }
        let want = u64::from(self.id) + seq;
        let got = answer.result.map(|r| r.get());
        if got != Some(want.to_string().as_str()) {
            return Err(format!(
                "connection {id}: call {seq} answered {got:?}, expected {want}"
            ));
        }
        let now = Instant::now();
        if self.ctx.phase() == MEASURE {
            self.counts.calls += 1;
            self.latencies
                .push(u64::try_from((now - sent).as_nanos()).unwrap_or(u64::MAX));
            if self.latencies.len() >= LATENCY_BATCH {
                self.ctx.record(&mut self.latencies);
            }
        }
        self.progress.fetch_add(1, Relaxed);
        Ok(Some(now))
    }

    async fn run(mut self, mut reader: WsReader, writer: WsWriter) -> Result<Counts, String> {
        let mut owed = self.ctx.pipeline;
        let mut now = Instant::now();
        loop {
            while owed > 0 && self.ctx.phase() <= MEASURE {
                owed -= 1;
                let message = self.next(now);
                let send = writer.send(message);
                tokio::pin!(send);
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
        Ok(self.counts)
    }
}

pub(super) async fn rpc_mode(args: &Args, builder: ClientBuilder) -> Result<Report, String> {
    let pipeline = args.pipeline as usize;
    let ctx = Ctx::new(super::payload::Payload::new(0, true), pipeline);
    let pb = progress_bar();
    let sockets = super::connect_all(args, &builder, &pb).await?;
    let method: Arc<str> = args.method.as_str().into();
    let mut counters = Vec::with_capacity(sockets.len());
    let mut tasks = Vec::with_capacity(sockets.len());
    for (i, ws) in sockets.into_iter().enumerate() {
        let progress = Arc::new(AtomicU64::new(0));
        counters.push(progress.clone());
        let conn = RpcConn {
            id: i as u32,
            ctx: ctx.clone(),
            method: method.clone(),
            inflight: Vec::with_capacity(pipeline),
            seq: 0,
            counts: Counts::default(),
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
    let window = run_window(args, &ctx, &pb, &counters, "calls/s").await;
    pb.set_message("draining");
    let drained = join_all(tasks, &ctx, DRAIN_TIMEOUT).await;
    pb.finish_and_clear();
    let results = match drained {
        Ok(r) => r,
        Err(stuck) => {
            ctx.fail(format!(
                "{stuck} connections still had calls unanswered {}s after the end",
                DRAIN_TIMEOUT.as_secs()
            ));
            Vec::new()
        }
    };
    if let Some(e) = ctx.failure() {
        return Err(e);
    }
    let calls: u64 = results.into_iter().flatten().map(|c| c.calls).sum();
    let secs = window.wall.as_secs_f64();
    let h = ctx.histogram.lock().unwrap_or_else(|p| p.into_inner());
    let mut report = Report::new(
        args,
        &window,
        Results::Rpc(RpcResults {
            calls,
            calls_per_s: Num(calls as f64 / secs),
            verified: true,
        }),
    );
    report.ops = calls;
    report.lines.push(format!(
        "  throughput   {:.0} calls/s; {calls} answers, all verified (id and result)",
        calls as f64 / secs
    ));
    report.latencies(&h);
    report.cpu(&window, calls, "call");
    Ok(report)
}

/// A subscription's notification, as far as the generator reads it.
#[derive(Deserialize)]
struct Notification {
    params: NotificationParams,
}

#[derive(Deserialize)]
struct NotificationParams {
    #[serde(default)]
    result: Option<Stamp>,
    #[serde(flatten)]
    direct: Stamp,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// An item's number and time stamp: `t` in microseconds, or `time` in
/// milliseconds (`ws serve`'s clock).
#[derive(Deserialize, Default)]
struct Stamp {
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    t: Option<u64>,
    #[serde(default)]
    time: Option<u64>,
}

impl Stamp {
    fn get(&self) -> Option<(u64, u64)> {
        Some((self.n?, self.t.or(self.time.map(|ms| ms * 1000))?))
    }
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

struct SubConn {
    id: u32,
    ctx: Arc<Ctx>,
    last: Option<u64>,
    counts: Counts,
    latencies: Vec<u64>,
    progress: Arc<AtomicU64>,
}

impl SubConn {
    fn on_item(&mut self, text: &str) -> Result<(), String> {
        let id = self.id;
        let Ok(note) = serde_json::from_str::<Notification>(text) else {
            return Ok(());
        };
        let p = note.params;
        if let Some(e) = p.error {
            return Err(format!("connection {id}: the subscription ended: {e}"));
        }
        let Some((n, t)) = p.result.as_ref().and_then(Stamp::get).or(p.direct.get()) else {
            return Ok(());
        };
        if let Some(last) = self.last {
            if n <= last {
                return Err(format!(
                    "connection {id}: item {n} after item {last}: repeated or out of order"
                ));
            }
        }
        let gap = self.last.map_or(0, |last| n - last - 1);
        self.last = Some(n);
        if self.ctx.phase() == MEASURE {
            self.counts.calls += 1;
            self.counts.lost += gap;
            self.latencies
                .push(now_us().saturating_sub(t).saturating_mul(1000));
            if self.latencies.len() >= LATENCY_BATCH {
                self.ctx.record(&mut self.latencies);
            }
        }
        self.progress.fetch_add(1, Relaxed);
        Ok(())
    }

    async fn run(
        mut self,
        mut reader: WsReader,
        writer: WsWriter,
        subscribe: Arc<str>,
    ) -> Result<Counts, String> {
        let id = self.id;
        writer
            .send(Message::text(subscribe.to_string()))
            .await
            .map_err(|e| format!("connection {id}: send: {e}"))?;
        // The answer to the subscribe call first (items may follow it).
        loop {
            let text = match reader.recv().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(f))) => {
                    return Err(format!(
                        "connection {id}: closed ({f:?}) before subscribing"
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("connection {id}: {e}")),
                None => return Err(format!("connection {id}: closed before subscribing")),
            };
            let answer: Answer<'_> = serde_json::from_str(&text)
                .map_err(|e| format!("connection {id}: unreadable answer: {e}"))?;
            if answer.id == Some(0) {
                if let Some(e) = answer.error {
                    return Err(format!("connection {id}: subscribing failed: {}", e.get()));
                }
                break;
            }
        }
        loop {
            if self.ctx.phase() >= STOP {
                break;
            }
            let item = tokio::select! {
                item = reader.recv() => item,
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
            };
            match item {
                Some(Ok(Message::Text(t))) => self.on_item(&t)?,
                Some(Ok(Message::Close(f))) => {
                    return Err(format!("connection {id}: the server closed it ({f:?})"))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("connection {id}: {e}")),
                None => return Err(format!("connection {id}: closed")),
            }
        }
        self.ctx.record(&mut self.latencies);
        if self.ctx.phase() != ABORT {
            close(&mut reader, &writer).await;
        }
        Ok(self.counts)
    }
}

pub(super) async fn subscribe_mode(args: &Args, builder: ClientBuilder) -> Result<Report, String> {
    let ctx = Ctx::new(super::payload::Payload::new(0, true), 1);
    let pb = progress_bar();
    let sockets = super::connect_all(args, &builder, &pb).await?;
    let params = match &args.params {
        Some(p) => {
            let raw = RawValue::from_string(p.clone()).map_err(|e| format!("--params: {e}"))?;
            format!(r#","params":{}"#, raw.get())
        }
        None => String::new(),
    };
    let subscribe: Arc<str> = format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"{}"{params}}}"#,
        args.subscribe_method
    )
    .into();
    let mut counters = Vec::with_capacity(sockets.len());
    let mut tasks = Vec::with_capacity(sockets.len());
    for (i, ws) in sockets.into_iter().enumerate() {
        let progress = Arc::new(AtomicU64::new(0));
        counters.push(progress.clone());
        let conn = SubConn {
            id: i as u32,
            ctx: ctx.clone(),
            last: None,
            counts: Counts::default(),
            latencies: Vec::with_capacity(LATENCY_BATCH),
            progress,
        };
        let (reader, writer) = ws.split();
        let (ctx, subscribe) = (ctx.clone(), subscribe.clone());
        tasks.push(tokio::spawn(async move {
            let r = conn.run(reader, writer, subscribe).await;
            if let Err(e) = &r {
                ctx.fail(e.clone());
            }
            r
        }));
    }
    let window = run_window(args, &ctx, &pb, &counters, "items/s").await;
    pb.set_message("closing");
    let drained = join_all(tasks, &ctx, DRAIN_TIMEOUT).await;
    pb.finish_and_clear();
    let results = match drained {
        Ok(r) => r,
        Err(stuck) => {
            ctx.fail(format!("{stuck} connections did not stop in time"));
            Vec::new()
        }
    };
    if let Some(e) = ctx.failure() {
        return Err(e);
    }
    let (mut items, mut lost) = (0, 0);
    for c in results.into_iter().flatten() {
        items += c.calls;
        lost += c.lost;
    }
    let secs = window.wall.as_secs_f64();
    let h = ctx.histogram.lock().unwrap_or_else(|p| p.into_inner());
    let mut report = Report::new(
        args,
        &window,
        Results::Subscribe(SubscribeResults {
            items,
            items_per_s: Num(items as f64 / secs),
            lost,
        }),
    );
    report.ops = items;
    report.lines.push(format!(
        "  delivered    {:.0} items/s to {} subscribers; {items} items, {lost} missing (dropped by the server), none repeated",
        items as f64 / secs,
        args.connections
    ));
    report.latencies(&h);
    report.cpu(&window, items, "item");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use ws_net::ClientBuilder;
    use ws_rpc::{Router, RpcError, Server};

    use super::super::testing::args;
    use super::super::{client_config, measure};

    /// A ws-rpc server whose `add` answers `a + b + skew`, and a room-free
    /// subscription of stamped items.
    async fn server(skew: i64) -> String {
        let router = Router::new()
            .method("add", move |(a, b): (i64, i64), _cx| async move {
                Ok::<_, RpcError>(a + b + skew)
            })
            .subscription(
                "subscribe_ticks",
                "ticks",
                "unsubscribe_ticks",
                |(): (), sink, _cx| async move {
                    for n in 1u64.. {
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        let item = serde_json::json!({ "n": n, "t": super::now_us() });
                        if sink.send(&item).is_err() {
                            return;
                        }
                    }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        tokio::spawn(Server::builder().build(router).serve(listener));
        url
    }

    async fn run(skew: i64, mode: &str) -> Result<super::super::report::Report, String> {
        let url = server(skew).await;
        let a = args(&[
            "--url", &url, "-d", "0.3", "--warmup", "0.1", "-c", "3", "-p", "4", mode,
        ]);
        let mut a = a;
        a.mode = if mode == "--rpc" {
            super::super::Mode::Rpc
        } else {
            super::super::Mode::Subscribe
        };
        let builder = ClientBuilder::new(&a.url).unwrap().config(client_config());
        measure(&a, builder).await
    }

    #[tokio::test]
    async fn a_correct_server_scores() {
        let report = run(0, "--rpc").await.expect("verified");
        assert!(report.ops > 0);
        let report = run(0, "--subscribe").await.expect("items");
        assert!(report.ops > 0);
    }

    #[tokio::test]
    async fn a_wrong_result_fails() {
        let err = run(1, "--rpc").await.err().expect("must fail");
        assert!(err.contains("expected"), "{err}");
    }
}
