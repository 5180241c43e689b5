//! Idle mode: open connections in bounded bursts, one verified echo each
//! (or, with `--idle-rpc`, one verified JSON-RPC call), hold them for the
//! duration and count how many stay open.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};
use ws_net::{ClientBuilder, Message};

use super::payload::{verify, Payload};
use super::proc::proc_rss_kb;
use super::report::{IdleResults, Num, Report, Results};
use super::window::{wait, Sample};
use super::{close, progress_bar, Args, Ctx, CLOSE_WAIT};

async fn idle_conn(
    id: u32,
    ctx: Arc<Ctx>,
    builder: ClientBuilder,
    permit: tokio::sync::OwnedSemaphorePermit,
    (ready, open): (Arc<AtomicUsize>, Arc<AtomicUsize>),
    mut stop: watch::Receiver<bool>,
    rpc: Option<Arc<str>>,
) -> Result<(), String> {
    let (ws, _) = builder
        .connect()
        .await
        .map_err(|e| format!("connection {id}: {e}"))?;
    let (mut reader, writer) = ws.split();
    let mut free = Vec::new();
    let (message, expected) = match &rpc {
        // One JSON-RPC call instead of an echo: METHOD [id, 0] gives id.
        Some(method) => (
            Message::text(format!(
                r#"{{"jsonrpc":"2.0","id":0,"method":"{method}","params":[{id},0]}}"#
            )),
            bytes::Bytes::new(),
        ),
        None => ctx.payload.make(id, 0, &mut free),
    };
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
    .map_err(|_| format!("connection {id}: no answer within 10s"))?
    .map_err(|e| format!("connection {id}: {e}"))?;
    match &rpc {
        Some(_) => {
            let answer: serde_json::Value = serde_json::from_slice(&echo.0)
                .map_err(|e| format!("connection {id}: unreadable answer: {e}"))?;
            if answer["id"] != 0 || answer["result"] != id {
                return Err(format!("connection {id}: wrong answer {answer}"));
            }
        }
        None => verify(id, 0, &echo.0, echo.1, &expected, ctx.payload.text)?,
    }
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

pub(super) async fn idle_mode(args: &Args, builder: ClientBuilder) -> Result<Report, String> {
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
    let rpc: Option<Arc<str>> = args.idle_rpc.then(|| args.method.as_str().into());
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let permit = gate.clone().acquire_owned().await.expect("never closed");
        let (ctx, b, ready2, open2) = (ctx.clone(), builder.clone(), ready.clone(), open.clone());
        let (failed2, first, stop) = (failed.clone(), first_error.clone(), stop_rx.clone());
        let rpc = rpc.clone();
        tasks.push(tokio::spawn(async move {
            let r = idle_conn(i as u32, ctx, b, permit, (ready2, open2), stop, rpc).await;
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

    let per_conn = rss_before
        .zip(rss_held)
        .filter(|_| still_open > 0)
        .map(|(a, b)| (b as f64 - a as f64) * 1024.0 / still_open as f64);
    let results = IdleResults {
        requested: total,
        opened,
        open: still_open,
        failed: failed.load(Relaxed),
        connect_s: Num(connect_secs),
        server_rss_before_kb: rss_before,
        server_rss_held_kb: rss_held,
        server_bytes_per_conn: per_conn.map(Num),
    };
    let mut report = Report::new(args, &window, Results::Idle(results));
    report.ok = still_open == total;
    report.ops = still_open as u64;
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

#[cfg(test)]
mod tests {
    use super::super::testing::bench;

    #[tokio::test]
    async fn a_correct_server_holds_every_connection() {
        let report = bench(|_, m| Some(m), &["--mode", "idle", "-c", "50"])
            .await
            .unwrap();
        assert!(report.ok);
        assert_eq!(report.ops, 50);
    }
}
