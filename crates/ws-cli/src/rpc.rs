//! `ws rpc`: JSON-RPC 2.0 calls, notifications and subscriptions from the
//! command line, with ws-rpc's client.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use serde_json::value::RawValue;
use ws_rpc::{Client, ClientConfig, ClientError, SubscriptionItem};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Call METHOD and print its result as JSON; an error object goes to
    /// stderr and the exit status is 1.
    Call(CallArgs),
    /// Send the notification METHOD (no answer).
    Notify(CallArgs),
    /// Subscribe with METHOD and print each item as one JSON line, until
    /// Ctrl-C or the subscription ends.
    Subscribe(SubscribeArgs),
}

#[derive(clap::Args)]
struct Common {
    /// The server URL, ws:// or wss://.
    url: String,
    /// Add a request header, 'Name: value' (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Send `Authorization: Bearer TOKEN`.
    #[arg(long)]
    token: Option<String>,
    /// Seconds to wait for the answer (and for the connection).
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

#[derive(clap::Args)]
struct CallArgs {
    #[command(flatten)]
    common: Common,
    /// The method.
    method: String,
    /// The parameters, as JSON (an array or an object).
    params: Option<String>,
}

#[derive(clap::Args)]
struct SubscribeArgs {
    #[command(flatten)]
    common: Common,
    /// The subscribe method (e.g. subscribe_ticks).
    method: String,
    /// The parameters, as JSON.
    params: Option<String>,
    /// The unsubscribe method (default: the subscribe method with
    /// "subscribe" replaced by "unsubscribe").
    #[arg(long)]
    unsubscribe: Option<String>,
}

pub fn run(args: Args) -> ExitCode {
    let rt = match crate::runtime(1) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ws rpc: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
        match args.command {
            Command::Call(a) => call(a, false).await,
            Command::Notify(a) => call(a, true).await,
            Command::Subscribe(a) => subscribe(a).await,
        }
    });
    let _ = std::io::stdout().flush();
    match code {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ws rpc: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(c: &Common) -> Result<Client, Box<dyn std::error::Error>> {
    let mut config = ClientConfig::default();
    // One command, one connection: a refusal or a drop is an error.
    config.reconnect = false;
    config.request_timeout = Duration::from_secs_f64(c.timeout);
    config.ws.connect_timeout = Duration::from_secs_f64(c.timeout);
    let mut builder = Client::builder(c.url.clone()).config(config);
    for h in &c.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("header {h:?} is not 'Name: value'"))?;
        builder = builder.header(
            HeaderName::from_bytes(name.trim().as_bytes())?,
            HeaderValue::from_str(value.trim())?,
        );
    }
    if let Some(t) = &c.token {
        builder = builder.header(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}"))?,
        );
    }
    Ok(builder.connect().await?)
}

/// The parameters: JSON text, checked.
fn params(text: Option<&str>) -> Result<Option<Box<RawValue>>, Box<dyn std::error::Error>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let raw = RawValue::from_string(text.to_owned()).map_err(|e| format!("PARAMS_JSON: {e}"))?;
    if !raw.get().trim_start().starts_with(['[', '{']) {
        return Err("PARAMS_JSON must be an array or an object".into());
    }
    Ok(Some(raw))
}

async fn call(a: CallArgs, notify: bool) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let p = params(a.params.as_deref())?;
    let client = connect(&a.common).await?;
    if notify {
        client.notify(&a.method, &p).await?;
        client.close();
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = client.request::<Box<RawValue>, _>(&a.method, &p).await;
    client.close();
    match outcome {
        Ok(result) => {
            println!("{}", result.get());
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Rpc(e)) => {
            eprintln!("{}", serde_json::to_string(&e)?);
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

async fn subscribe(a: SubscribeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let p = params(a.params.as_deref())?;
    let unsubscribe = a
        .unsubscribe
        .clone()
        .unwrap_or_else(|| a.method.replacen("subscribe", "unsubscribe", 1));
    let client = connect(&a.common).await?;
    let mut sub = client
        .subscribe::<Box<RawValue>, _>(&a.method, &p, &unsubscribe)
        .await?;
    let mut out = std::io::stdout();
    loop {
        tokio::select! {
            item = sub.next() => match item {
                Some(SubscriptionItem::Item(raw)) => {
                    writeln!(out, "{}", raw.get())?;
                    out.flush()?;
                }
                Some(SubscriptionItem::Ended(why)) => {
                    eprintln!("ws rpc: subscription ended: {why:?}");
                    return Ok(ExitCode::FAILURE);
                }
                Some(other) => eprintln!("ws rpc: {other:?}"),
                None => return Ok(ExitCode::FAILURE),
            },
            _ = tokio::signal::ctrl_c() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), sub.unsubscribe()).await;
                client.close();
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}
