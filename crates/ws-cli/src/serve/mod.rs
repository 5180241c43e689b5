//! `ws serve`: a chat-room app on one port, served by axum: the page at `/`,
//! the browser client at `/ws-rpc.js`, the JSON-RPC endpoint at `/rpc`
//! (ws-rpc through ws-net's axum extractor), and `/healthz`.

mod chat;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ws_net::axum::WebSocketUpgrade;
use ws_net::server::UpgradeRequest;
use ws_rpc::{Context, Identity, RpcError, Server, ServerConfig, ServerHandle};

/// The page, its script and style, and the browser client: in the binary.
const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");
const WS_RPC_JS: &str = include_str!("../../web/ws-rpc.js");

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Require this token: in the query string (`?token=`), as a
    /// subprotocol `token.<TOKEN>`, as `Authorization: Bearer`, or by a
    /// first call `auth.login {"token": ...}`. A wrong token gets 401
    /// before the upgrade.
    #[arg(long)]
    token: Option<String>,
    /// Worker threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Share rooms with the other nodes on this Redis
    /// (`redis://[:PASSWORD@]HOST:PORT/`): a message sent on one node
    /// reaches the room's members on every node. Without it, rooms are
    /// this process's own. Redis may be down at start: it is retried.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

#[derive(Clone)]
struct App {
    rpc: Server,
    token: Option<Arc<str>>,
    config: ServerConfig,
}

pub fn run(args: Args) -> ExitCode {
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    let rt = match crate::runtime(threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ws serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws serve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The token a request carries, wherever it put it.
fn offered_token(req: &UpgradeRequest) -> Option<String> {
    if let Some(q) = req.query() {
        for kv in q.split('&') {
            if let Some(t) = kv.strip_prefix("token=") {
                return Some(percent_decode(t));
            }
        }
    }
    if let Some(t) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.trim().to_owned());
    }
    req.protocols()
        .iter()
        .find_map(|p| p.strip_prefix("token."))
        .map(str::to_owned)
}

/// `%XX` and `+` decoded (a token is usually plain, but a URL may escape it).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equal, in a time that does not depend on where they differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn rpc_endpoint(State(app): State<App>, ws: WebSocketUpgrade) -> Response {
    let identity = match (&app.token, offered_token(ws.request())) {
        (None, _) => None,
        (Some(want), Some(got)) if same_token(want, &got) => Some(Identity::new("token")),
        (Some(_), Some(_)) => {
            return (StatusCode::UNAUTHORIZED, "wrong token\n").into_response();
        }
        // No token offered: the connection must log in first.
        (Some(_), None) => None,
    };
    let request = ws.request().request().clone();
    let server = app.rpc.clone();
    ws.config(app.config.ws.clone())
        .protocols(["ws-rpc"])
        .on_upgrade(move |socket| server.serve_websocket(socket, request, identity))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn serve(args: Args) -> std::io::Result<()> {
    let chat = Arc::new(chat::Chat::default());
    let config = ServerConfig::default();
    let mut builder = Server::builder().config(config.clone()).on_close({
        let chat = chat.clone();
        move |cx: &Context| chat.disconnected(cx)
    });
    let token: Option<Arc<str>> = args.token.as_deref().map(Into::into);
    if let Some(want) = token.clone() {
        builder = builder.login("auth.login", move |p: LoginParams, _cx: Context| {
            let want = want.clone();
            async move {
                if same_token(&want, p.token()) {
                    Ok(Identity::new("token"))
                } else {
                    Err(RpcError::new(4010, "wrong token"))
                }
            }
        });
    }
    let redis = match args.redis.as_deref() {
        Some(url) => {
            let rooms = ws_rpc_redis::RedisRooms::connect(url, ws_rpc_redis::Options::default())
                .await
                .map_err(|e| std::io::Error::other(format!("--redis {url}: {e}")))?;
            builder = builder.rooms(rooms.clone());
            Some(rooms)
        }
        None => None,
    };
    let rpc = builder.build(chat::router(chat));
    let handle = rpc.handle();
    let app = App { rpc, token, config };
    let router = axum::Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/ws-rpc.js",
            get(|| async { asset("text/javascript; charset=utf-8", WS_RPC_JS) }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/rpc", get(rpc_endpoint))
        .with_state(app);
    // A backlog of 1024: a burst of connections (a page of many tabs, a
    // load test) does not wait a second for a SYN retry.
    let listener = ws_net::server::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}");
    println!("open http://{addr}/ in a browser; JSON-RPC at ws://{addr}/rpc");
    if let Some(rooms) = &redis {
        let state = if rooms.is_connected() {
            "connected"
        } else {
            "not reachable yet, retrying"
        };
        println!(
            "rooms shared through Redis at {} as node {} ({state})",
            rooms.redis_addr(),
            rooms.node_id()
        );
    }
    let stopping = handle.clone();
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        eprintln!("ws serve: shutting down");
        stopping.shutdown();
    })
    .await?;
    close_connections(&handle).await;
    if let Some(rooms) = redis {
        rooms.shutdown().await;
    }
    Ok(())
}

/// Wait (at most 5 s) for every RPC connection to finish its closing
/// handshake (1001, sent by the shutdown).
async fn close_connections(handle: &ServerHandle) {
    handle.shutdown();
    if tokio::time::timeout(Duration::from_secs(5), handle.closed())
        .await
        .is_err()
    {
        eprintln!(
            "ws serve: {} connections did not close in time",
            handle.connections()
        );
    }
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum LoginParams {
    Named { token: String },
    Positional((String,)),
}

impl LoginParams {
    fn token(&self) -> &str {
        match self {
            LoginParams::Named { token } | LoginParams::Positional((token,)) => token,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
