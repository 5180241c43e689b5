//! `ws echo`: the echo server (Autobahn testee, benchmark target).

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use ws_net::server::Accept;
use ws_net::{CloseCode, Config, WsWriter};

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
    /// A subprotocol to select when a client offers it (repeat for more;
    /// the client's order of preference decides). Without it, none is
    /// selected, and a browser that asks for one refuses the connection.
    #[arg(long = "protocol", value_name = "NAME")]
    protocols: Vec<String>,
}

pub fn run(args: Args) -> ExitCode {
    // No timer in the runtime: ws-net times connections on its own clocks,
    // and this server's two waits use them too (`ws_net::time`).
    let rt = match crate::runtime_without_timer(args.threads) {
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
    let protocols: Arc<[String]> = args.protocols.into();
    match rt.block_on(serve(args.listen, config, protocols)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws echo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The open connections' writers, so a shutdown can close them all. The
/// echo loop itself then has nothing to watch but its own messages.
#[derive(Default)]
struct Registry {
    stopping: bool,
    next: u64,
    writers: HashMap<u64, WsWriter>,
}

type Shared = Arc<Mutex<Registry>>;

fn lock(registry: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(|p| p.into_inner())
}

async fn serve(addr: SocketAddr, config: Config, protocols: Arc<[String]>) -> std::io::Result<()> {
    let listener = ws_net::server::bind(addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let registry = Shared::default();
    // Every connection's task holds a sender: once the last is dropped,
    // `all_done` sees the channel closed (nothing is ever sent on it).
    let (live, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
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
                        ws_net::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let config = config.clone();
                let protocols = protocols.clone();
                let registry = registry.clone();
                let live = live.clone();
                tokio::spawn(async move {
                    echo(tcp, config, &protocols, registry).await;
                    drop(live);
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    // Connections close with 1001 and get the close timeout to finish.
    let writers: Vec<WsWriter> = {
        let mut r = lock(&registry);
        r.stopping = true;
        r.writers.drain().map(|(_, w)| w).collect()
    };
    for w in &writers {
        let _ = w.close(CloseCode::GOING_AWAY, SHUTTING_DOWN).await;
    }
    drop(writers);
    drop(live);
    let _ = ws_net::time::timeout(
        config.protocol.close_timeout + Duration::from_secs(1),
        all_done.recv(),
    )
    .await;
    Ok(())
}

const SHUTTING_DOWN: &str = "server shutting down";

async fn echo(tcp: TcpStream, config: Config, protocols: &[String], registry: Shared) {
    let _ = tcp.set_nodelay(true);
    let accepted = ws_net::server::accept_with(tcp, config, |req| {
        let mut accept = Accept::default();
        accept.protocol = req.select_protocol(protocols).map(str::to_owned);
        Ok(accept)
    });
    let mut ws = match accepted.await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed");
            return;
        }
    };
    let id = {
        let mut r = lock(&registry);
        if r.stopping {
            None
        } else {
            let id = r.next;
            r.next += 1;
            r.writers.insert(id, ws.writer());
            Some(id)
        }
    };
    if id.is_none() {
        let _ = ws.close(CloseCode::GOING_AWAY, SHUTTING_DOWN).await;
    }
    loop {
        match ws.recv().await {
            Some(Ok(msg)) if msg.is_data() => {
                // After a shutdown's close frame, sending fails: the loop
                // ends and the driver finishes the closing handshake.
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
        }
    }
    if let Some(id) = id {
        lock(&registry).writers.remove(&id);
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
