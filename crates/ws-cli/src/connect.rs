//! `ws connect`: an interactive client.

use std::io::Write;
use std::process::ExitCode;

use http::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncBufReadExt, BufReader};
use ws_net::{ClientBuilder, CloseCode, Message};

#[derive(clap::Args)]
pub struct Args {
    /// The server URL, ws:// or wss://.
    url: String,
    /// Offer a subprotocol (repeatable).
    #[arg(long = "protocol")]
    protocols: Vec<String>,
    /// Add a request header, 'Name: value' (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Send an Origin header.
    #[arg(long)]
    origin: Option<String>,
    /// Send each line as a binary message instead of text.
    #[arg(long)]
    binary: bool,
    /// Accept any TLS certificate (testing only).
    #[arg(long)]
    insecure: bool,
    /// Do not offer permessage-deflate (offered by default).
    #[arg(long)]
    no_deflate: bool,
}

pub fn run(args: Args) -> ExitCode {
    let rt = match crate::runtime(1) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ws connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match rt.block_on(session(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ws connect: {e}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    // Standard input is read on a blocking thread that cannot be
    // interrupted; leave without waiting for it.
    std::process::exit(code);
}

async fn session(args: Args) -> Result<i32, Box<dyn std::error::Error>> {
    let mut builder = ClientBuilder::new(&args.url)?;
    for p in &args.protocols {
        builder = builder.protocol(p.clone());
    }
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("header {h:?} is not 'Name: value'"))?;
        builder = builder.header(
            HeaderName::from_bytes(name.trim().as_bytes())?,
            HeaderValue::from_str(value.trim())?,
        );
    }
    if let Some(origin) = &args.origin {
        builder = builder.origin(HeaderValue::from_str(origin)?);
    }
    if args.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if !args.no_deflate {
        let mut config = ws_net::Config::default();
        config.deflate = Some(Default::default());
        builder = builder.config(config);
    }
    let (ws, response) = builder.connect().await?;
    match response.protocol() {
        Some(p) => eprintln!("connected to {} (subprotocol {p})", args.url),
        None => eprintln!("connected to {}", args.url),
    }
    if let Some(ext) = response.extensions().and_then(|v| v.to_str().ok()) {
        eprintln!("extensions: {ext}");
    }
    let (mut reader, writer) = ws.split();
    let done = writer.clone();
    let binary = args.binary;
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let msg = if binary {
                Message::binary(line.into_bytes())
            } else {
                Message::text(line)
            };
            if writer.send(msg).await.is_err() {
                return;
            }
        }
        let _ = writer.close(CloseCode::NORMAL, "").await;
    });
    let outcome = print_messages(&mut reader).await;
    // Let the connection answer the close (or send ours after an error)
    // and shut down before the process exits; it reads the peer's end of
    // file once the reader is gone.
    drop(reader);
    let _ = tokio::time::timeout(
        ws_net::Config::default().protocol.close_timeout + std::time::Duration::from_secs(3),
        done.closed(),
    )
    .await;
    outcome
}

/// Print every message; the exit status once the connection ends.
async fn print_messages(reader: &mut ws_net::WsReader) -> Result<i32, Box<dyn std::error::Error>> {
    let mut stdout = std::io::stdout();
    while let Some(msg) = reader.recv().await {
        match msg? {
            Message::Text(t) => writeln!(stdout, "{t}")?,
            Message::Binary(b) => writeln!(stdout, "{}", String::from_utf8_lossy(&b))?,
            Message::Close(frame) => {
                stdout.flush()?;
                return Ok(match frame {
                    Some(f) => {
                        eprintln!("closed: {} {}", f.code, f.reason);
                        i32::from(f.code != CloseCode::NORMAL && f.code != CloseCode::GOING_AWAY)
                    }
                    None => {
                        eprintln!("closed: {} (no status)", CloseCode::NO_STATUS);
                        0
                    }
                });
            }
            Message::Ping(_) | Message::Pong(_) => {}
        }
        stdout.flush()?;
    }
    eprintln!("closed: connection ended without a close frame");
    Ok(1)
}
