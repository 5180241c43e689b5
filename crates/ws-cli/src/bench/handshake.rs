//! Handshake mode: loops that open a connection and close it again, as
//! fast as the server allows.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ws_net::ClientBuilder;

use super::payload::Payload;
use super::report::{HandshakeResults, Num, Report, Results};
use super::window::run_window;
use super::{close, join_all, progress_bar, Args, Ctx, CLOSE_WAIT, LATENCY_BATCH, MEASURE, STOP};

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

pub(super) async fn handshake_mode(args: &Args, builder: ClientBuilder) -> Result<Report, String> {
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
    let results = HandshakeResults {
        handshakes,
        handshakes_per_s: Num(handshakes as f64 / secs),
        slow_closes: slow,
    };
    let mut report = Report::new(args, &window, Results::Handshake(results));
    report.ops = handshakes;
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

#[cfg(test)]
mod tests {
    use super::super::testing::bench;

    #[tokio::test]
    async fn a_correct_server_completes_handshakes() {
        let report = bench(|_, m| Some(m), &["--mode", "handshake", "-c", "2"])
            .await
            .unwrap();
        assert!(report.ops > 0);
    }
}
