//! `ws autobahn-client`: the client testee of the Autobahn|Testsuite.

use std::process::ExitCode;
use std::time::Duration;

use ws_net::{ClientBuilder, Config, Message};

#[derive(clap::Args)]
pub struct Args {
    /// The fuzzing server's URL.
    #[arg(long, default_value = "ws://127.0.0.1:9001")]
    url: String,
    /// The agent name the reports are filed under.
    #[arg(long, default_value = "ws-rs")]
    agent: String,
    /// Do not offer permessage-deflate (offered by default).
    #[arg(long)]
    no_deflate: bool,
}

pub fn run(args: Args) -> ExitCode {
    let rt = match crate::runtime(1) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ws autobahn-client: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_all(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws autobahn-client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config(deflate: bool) -> Config {
    let mut config = Config::default();
    // The suite measures protocol behaviour, not liveness.
    config.protocol.ping_interval = None;
    if deflate {
        config.deflate = Some(Default::default());
    }
    config
}

async fn run_all(args: &Args) -> Result<(), AutobahnError> {
    let base = args.url.trim_end_matches('/');
    let deflate = !args.no_deflate;
    let count = case_count(base, deflate).await?;
    eprintln!("{count} cases");
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={}", args.agent);
        if let Err(e) = run_case(&url, deflate).await {
            tracing::debug!(case, error = %e, "case ended with an error");
        }
        if case % 50 == 0 {
            eprintln!("{case}/{count}");
        }
    }
    let url = format!("{base}/updateReports?agent={}", args.agent);
    let (mut ws, _) = ClientBuilder::new(&url)?
        .config(config(deflate))
        .connect()
        .await?;
    while let Some(Ok(_)) = ws.recv().await {}
    ws.closed().await;
    eprintln!("reports updated");
    Ok(())
}

async fn case_count(base: &str, deflate: bool) -> Result<u32, AutobahnError> {
    let (mut ws, _) = ClientBuilder::new(&format!("{base}/getCaseCount"))?
        .config(config(deflate))
        .connect()
        .await?;
    let mut count = None;
    while let Some(msg) = ws.recv().await {
        if let Message::Text(t) = msg? {
            count = t.trim().parse().ok();
        }
    }
    ws.closed().await;
    count.ok_or(AutobahnError::NoCaseCount)
}

async fn run_case(url: &str, deflate: bool) -> Result<(), AutobahnError> {
    let (mut ws, _) = ClientBuilder::new(url)?
        .config(config(deflate))
        .connect()
        .await?;
    let result = echo(&mut ws).await.map_err(AutobahnError::from);
    // The suite records a case when its TCP connection ends: wait for that
    // (bounded by the close timeout) even after an error, or the next case,
    // or updateReports after the last one, can overtake it and the case
    // goes missing from the report. The driver ends every connection within
    // the close timeout; the outer bound only guards against a bug there.
    let _ = tokio::time::timeout(Duration::from_secs(30), ws.closed()).await;
    result
}

async fn echo(ws: &mut ws_net::WebSocket) -> Result<(), ws_net::Error> {
    while let Some(msg) = ws.recv().await {
        let msg = msg?;
        if msg.is_data() {
            ws.send(msg).await?;
        }
    }
    Ok(())
}

/// Why a run of the client cases failed.
#[derive(Debug, thiserror::Error)]
enum AutobahnError {
    #[error("connecting to the fuzzing server: {0}")]
    Connect(#[from] ws_net::ConnectError),
    #[error(transparent)]
    Connection(#[from] ws_net::Error),
    #[error("the fuzzing server sent no case count")]
    NoCaseCount,
}
