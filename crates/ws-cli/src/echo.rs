//! `ws echo`: the echo server (Autobahn testee, benchmark target).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use ws_net::{CloseCode, Config};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Worker threads (1 runs everything on one thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Do not accept permessage-deflate (compression is on by default).
    #[arg(long)]
    no_deflate: bool,
}

pub fn run(args: Args) -> ExitCode {
    let rt = match crate::runtime(args.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ws echo: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = Config::default();
    if !args.no_deflate {
        config.deflate = Some(Default::default());
    }
    match rt.block_on(serve(args.listen, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws echo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: SocketAddr, config: Config) -> std::io::Result<()> {
    let listener = ws_net::server::bind(addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let live = Arc::new(());
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: pause, go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let config = config.clone();
                let stop_rx = stop_rx.clone();
                let live = live.clone();
                tokio::spawn(async move {
                    echo(tcp, config, stop_rx).await;
                    drop(live);
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Connections close with 1001 and get the close timeout to finish.
    let deadline = tokio::time::Instant::now() + config.close_timeout + Duration::from_secs(1);
    while Arc::strong_count(&live) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn echo(tcp: TcpStream, config: Config, mut stop: watch::Receiver<bool>) {
    let _ = tcp.set_nodelay(true);
    let mut ws = match ws_net::server::accept(tcp, config).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed");
            return;
        }
    };
    // One shutdown future for the whole connection, not one per message.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            msg = ws.recv() => match msg {
                Some(Ok(msg)) if msg.is_data() => {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "connection failed");
                    break;
                }
                None => break,
            },
            _ = &mut stopped => {
                let _ = ws.close(CloseCode::GOING_AWAY, "server shutting down").await;
                while let Some(Ok(_)) = ws.recv().await {}
                break;
            }
        }
    }
    // Dropping the connection lets its driver finish the closing handshake.
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
