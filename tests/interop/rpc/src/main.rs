//! Interop tests of ws-rpc with jsonrpsee 0.26, a JSON-RPC stack nobody
//! here wrote:
//!
//! - jsonrpsee's WebSocket client calls and subscribes on ws-rpc's
//!   `spec_server` example (started as a process per test);
//! - ws-rpc's `Client` calls and subscribes on a jsonrpsee server started
//!   in this process.
//!
//! Run through tests/interop/run.sh, which builds this and `spec_server`.
//! Standalone:
//!
//!     WS_RPC_SPEC_SERVER=path/to/examples/spec_server \
//!       cargo run --release --manifest-path tests/interop/rpc/Cargo.toml
//!
//! Prints one line per test, `ok NAME` or `FAIL NAME: reason`, and exits 1
//! if any test failed. Every test is bounded by WS_INTEROP_TEST_TIMEOUT
//! seconds (default 20). Only 127.0.0.1 is used; ports are kernel-chosen.
//! WS_INTEROP_FILTER=substring runs only the matching tests.

use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonrpsee::core::client::{ClientT, Error as JError, SubscriptionClientT};
use jsonrpsee::core::params::ObjectParams;
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::rpc_params;
use jsonrpsee::server::{PendingSubscriptionSink, RpcModule, Server, ServerHandle};
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned, Params};
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use ws_rpc::{Client, ClientConfig, ClientError, SubscriptionItem};

const HOST: &str = "127.0.0.1";
/// Items a subscription test waits for.
const ITEMS: u64 = 5;

type Outcome = Result<(), String>;
type TestFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;
type TestFn = fn() -> TestFuture;

// ---------------------------------------------------------------------------
// The runner: steps, per-test limit, one line per test
// ---------------------------------------------------------------------------

static STEP: Mutex<String> = Mutex::new(String::new());

/// Name what the test is doing now; a timeout reports it.
fn step(s: impl Into<String>) {
    *STEP.lock().unwrap_or_else(|p| p.into_inner()) = s.into();
}

fn step_now() -> String {
    STEP.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn expect(cond: bool, text: impl FnOnce() -> String) -> Outcome {
    if cond {
        Ok(())
    } else {
        Err(text())
    }
}

/// `fut` within `secs` seconds, or a failure naming `what`.
async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .map_err(|_| format!("{what}: nothing within {secs} s"))
}

fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("rpc/jsonrpsee-client/calls", || {
            Box::pin(jsonrpsee_client_calls())
        }),
        ("rpc/jsonrpsee-client/string-ids", || {
            Box::pin(jsonrpsee_client_string_ids())
        }),
        ("rpc/jsonrpsee-client/subscribe", || {
            Box::pin(jsonrpsee_client_subscribe())
        }),
        (
            "rpc/ws-rpc-client/calls",
            || Box::pin(ws_rpc_client_calls()),
        ),
        ("rpc/ws-rpc-client/subscribe", || {
            Box::pin(ws_rpc_client_subscribe())
        }),
    ]
}

#[tokio::main]
async fn main() {
    let filter = std::env::var("WS_INTEROP_FILTER").unwrap_or_default();
    let limit: u64 = std::env::var("WS_INTEROP_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    if let Err(why) = spec_server_path() {
        println!("FAIL rpc/jsonrpsee/setup: {why}");
        std::process::exit(1);
    }
    let mut failed = 0;
    for (name, test) in tests() {
        if !filter.is_empty() && !name.contains(&filter) {
            continue;
        }
        step("start");
        // Each test runs as a task: a panic is a failure, and whatever it
        // left (processes, servers, connections) is dropped with it.
        let task = tokio::spawn(test());
        let abort = task.abort_handle();
        let outcome = match tokio::time::timeout(Duration::from_secs(limit), task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Err(format!("panicked while {}: {e}", step_now())),
            Err(_) => {
                abort.abort();
                Err(format!("timed out after {limit} s while {}", step_now()))
            }
        };
        match outcome {
            Ok(()) => println!("ok {name}"),
            Err(why) => {
                failed += 1;
                println!("FAIL {name}: {}", why.replace('\n', " "));
            }
        }
        // Let aborted tasks drop what they hold (kill_on_drop processes).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::process::exit(if failed > 0 { 1 } else { 0 });
}

// ---------------------------------------------------------------------------
// ws-rpc's spec_server, as a process
// ---------------------------------------------------------------------------

fn spec_server_path() -> Result<String, String> {
    let path = std::env::var("WS_RPC_SPEC_SERVER")
        .map_err(|_| "WS_RPC_SPEC_SERVER is not set (the spec_server example of ws-rpc)")?;
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        _ => Err(format!("WS_RPC_SPEC_SERVER={path} is not a file")),
    }
}

/// A running `spec_server --listen 127.0.0.1:0`; killed when dropped.
struct SpecServer {
    child: Child,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl SpecServer {
    async fn start() -> Result<SpecServer, String> {
        step("starting spec_server");
        let path = spec_server_path()?;
        let mut child = Command::new(&path)
            .args(["--listen", &format!("{HOST}:0")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {path}: {e}"))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped");
        let keep = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut s = keep.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.len() > 2000 {
                    let cut = s.len() - 1000;
                    let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                    s.replace_range(..cut, "");
                }
            }
        });
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let line = within(10, "spec_server's 'listening on' line", lines.next_line())
            .await?
            .map_err(|e| format!("reading spec_server's stdout: {e}"))?;
        let server = SpecServer {
            child,
            url: String::new(),
            stderr,
        };
        let Some(line) = line else {
            return Err(format!(
                "spec_server exited before listening; {}",
                server.log()
            ));
        };
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            return Err(format!(
                "spec_server printed {line:?} instead of 'listening on ws://...'"
            ));
        };
        // Drain stdout so the server never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(SpecServer {
            url: url.to_owned(),
            ..server
        })
    }

    /// Its stderr so far (and whether it is still running), for failures.
    fn log(&self) -> String {
        let err = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        format!("spec_server stderr: {:?}", err.trim())
    }

    /// Fail if it exited.
    fn check_running(&mut self) -> Outcome {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("spec_server exited ({status}); {}", self.log())),
            Err(e) => Err(format!("spec_server: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------
// jsonrpsee's client against ws-rpc's spec_server
// ---------------------------------------------------------------------------

async fn jsonrpsee_connect(
    url: &str,
    id_kind: jsonrpsee::core::client::IdKind,
) -> Result<WsClient, String> {
    step(format!("connecting jsonrpsee's WsClient to {url}"));
    within(
        10,
        "jsonrpsee connect",
        WsClientBuilder::default()
            .request_timeout(Duration::from_secs(5))
            .connection_timeout(Duration::from_secs(5))
            .id_format(id_kind)
            .build(url),
    )
    .await?
    .map_err(|e| format!("jsonrpsee could not connect to {url}: {e}"))
}

/// A jsonrpsee error, with the reason its connection died if it did.
async fn describe_jerror(client: &WsClient, server: &SpecServer, e: JError) -> String {
    let mut text = format!("jsonrpsee error: {e}");
    if !client.is_connected() {
        if let Ok(reason) = within(2, "disconnect reason", client.on_disconnect()).await {
            text.push_str(&format!("; its connection died: {reason}"));
        }
    }
    format!("{text}; {}", server.log())
}

/// `client.request(method, params)`, expecting `want`.
async fn jcall<P>(
    client: &WsClient,
    server: &SpecServer,
    method: &str,
    params: P,
    shown: &str,
    want: Value,
) -> Outcome
where
    P: jsonrpsee::core::traits::ToRpcParams + Send,
{
    step(format!("calling {method} {shown}"));
    match client.request::<Value, _>(method, params).await {
        Ok(got) => expect(got == want, || {
            format!("{method} {shown}: expected {want}, got {got}")
        }),
        Err(e) => Err(format!(
            "{method} {shown}: {}",
            describe_jerror(client, server, e).await
        )),
    }
}

/// The calls every jsonrpsee client makes, whatever its id format.
async fn jsonrpsee_calls(client: &WsClient, server: &SpecServer) -> Outcome {
    jcall(
        client,
        server,
        "subtract",
        rpc_params![42, 23],
        "[42, 23]",
        json!(19),
    )
    .await?;
    let mut named = ObjectParams::new();
    named.insert("minuend", 42).map_err(|e| e.to_string())?;
    named.insert("subtrahend", 23).map_err(|e| e.to_string())?;
    jcall(
        client,
        server,
        "subtract",
        named,
        "{minuend: 42, subtrahend: 23}",
        json!(19),
    )
    .await?;
    jcall(
        client,
        server,
        "sum",
        rpc_params![1, 2, 4],
        "[1, 2, 4]",
        json!(7),
    )
    .await?;
    jcall(
        client,
        server,
        "get_data",
        rpc_params![],
        "(no params)",
        json!(["hello", 5]),
    )
    .await?;

    step("calling a missing method");
    match client.request::<Value, _>("foobar", rpc_params![]).await {
        Err(JError::Call(e)) => expect(e.code() == -32601, || {
            format!(
                "foobar: expected error code -32601, got {} ({:?})",
                e.code(),
                e.message()
            )
        })?,
        Ok(v) => return Err(format!("foobar: expected error -32601, got result {v}")),
        Err(e) => {
            return Err(format!(
                "foobar: expected error -32601, got {}",
                describe_jerror(client, server, e).await
            ))
        }
    }

    step("sending the notification update [1, 2]");
    if let Err(e) = client.notification("update", rpc_params![1, 2]).await {
        return Err(format!(
            "notification update: {}",
            describe_jerror(client, server, e).await
        ));
    }
    jcall(
        client,
        server,
        "subtract",
        rpc_params![23, 42],
        "[23, 42] after a notification",
        json!(-19),
    )
    .await?;
    expect(client.is_connected(), || {
        "jsonrpsee's client is no longer connected after the calls".into()
    })
}

async fn jsonrpsee_client_calls() -> Outcome {
    let mut server = SpecServer::start().await?;
    let client = jsonrpsee_connect(&server.url, jsonrpsee::core::client::IdKind::Number).await?;
    jsonrpsee_calls(&client, &server).await?;
    server.check_running()
}

async fn jsonrpsee_client_string_ids() -> Outcome {
    let mut server = SpecServer::start().await?;
    let client = jsonrpsee_connect(&server.url, jsonrpsee::core::client::IdKind::String).await?;
    jsonrpsee_calls(&client, &server).await?;
    server.check_running()
}

async fn jsonrpsee_client_subscribe() -> Outcome {
    let mut server = SpecServer::start().await?;
    let client = jsonrpsee_connect(&server.url, jsonrpsee::core::client::IdKind::Number).await?;
    step("subscribing with subscribe_ticks");
    let mut sub = match client
        .subscribe::<Value, _>("subscribe_ticks", rpc_params![], "unsubscribe_ticks")
        .await
    {
        Ok(sub) => sub,
        Err(e) => {
            return Err(format!(
                "subscribe_ticks: {}",
                describe_jerror(&client, &server, e).await
            ))
        }
    };
    step(format!("subscribed ({:?}); waiting for items", sub.kind()));
    let mut last: Option<u64> = None;
    for i in 0..ITEMS {
        step(format!("waiting for item {} of {ITEMS}", i + 1));
        let item = within(5, "the next ticks item", sub.next()).await?;
        let item = match item {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(format!("item {} did not decode: {e}", i + 1)),
            None => {
                let why = match client.is_connected() {
                    true => "the subscription ended".to_owned(),
                    false => format!(
                        "the connection died: {}",
                        within(2, "disconnect reason", client.on_disconnect())
                            .await
                            .map(|e| e.to_string())
                            .unwrap_or_else(|e| e)
                    ),
                };
                return Err(format!("after {i} items {why}; {}", server.log()));
            }
        };
        let n = item.get("n").and_then(Value::as_u64);
        let Some(n) = n else {
            return Err(format!("item {} is {item}, not {{\"n\": k}}", i + 1));
        };
        if let Some(prev) = last {
            expect(n == prev + 1, || {
                format!("item after {{\"n\": {prev}}} is {item}")
            })?;
        }
        last = Some(n);
    }
    step("unsubscribing with unsubscribe_ticks");
    if let Err(e) = sub.unsubscribe().await {
        return Err(format!(
            "unsubscribe_ticks: {}",
            describe_jerror(&client, &server, e).await
        ));
    }
    // Items the server had in flight must not upset the client: it treats
    // anything it cannot place as fatal.
    tokio::time::sleep(Duration::from_millis(100)).await;
    jcall(
        &client,
        &server,
        "subtract",
        rpc_params![42, 23],
        "[42, 23] after unsubscribing",
        json!(19),
    )
    .await?;
    expect(client.is_connected(), || {
        "jsonrpsee's client is no longer connected after unsubscribing".into()
    })?;
    server.check_running()
}

// ---------------------------------------------------------------------------
// ws-rpc's client against a jsonrpsee server
// ---------------------------------------------------------------------------

/// A jsonrpsee 0.26 server on 127.0.0.1, kernel-chosen port; stopped when
/// dropped.
struct JServer {
    url: String,
    handle: ServerHandle,
    /// Subscriptions of `subscribe_count` still running on the server.
    live: Arc<AtomicUsize>,
}

impl Drop for JServer {
    fn drop(&mut self) {
        let _ = self.handle.stop();
    }
}

/// Decrements `live` when a subscription task ends, however it ends.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn jsonrpsee_server() -> Result<JServer, String> {
    step("starting a jsonrpsee server");
    let live = Arc::new(AtomicUsize::new(0));
    let mut module = RpcModule::new(live.clone());
    module
        .register_method("add", |params: Params, _, _| {
            let (a, b): (i64, i64) = params.parse()?;
            Ok::<_, ErrorObjectOwned>(a + b)
        })
        .map_err(|e| e.to_string())?;
    module
        .register_method("hello", |_, _, _| "hello")
        .map_err(|e| e.to_string())?;
    module
        .register_method("fail", |_, _, _| {
            Err::<(), _>(ErrorObject::owned(
                4000,
                "failed on purpose",
                Some(json!({"why": "test"})),
            ))
        })
        .map_err(|e| e.to_string())?;
    module
        .register_subscription(
            "subscribe_count",
            "count",
            "unsubscribe_count",
            |_, pending: PendingSubscriptionSink, ctx: Arc<Arc<AtomicUsize>>, _| async move {
                let live: &Arc<AtomicUsize> = &ctx;
                let sink = pending.accept().await?;
                live.fetch_add(1, Ordering::SeqCst);
                let _live = Live(Arc::clone(live));
                let mut every = tokio::time::interval(Duration::from_millis(10));
                for n in 0u64.. {
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = sink.closed() => break,
                    }
                    let msg = serde_json::value::to_raw_value(&n)?;
                    if sink.send(msg).await.is_err() {
                        break;
                    }
                }
                SubscriptionResult::Ok(())
            },
        )
        .map_err(|e| e.to_string())?;
    let server = Server::builder()
        .build(format!("{HOST}:0"))
        .await
        .map_err(|e| format!("jsonrpsee server: {e}"))?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let handle = server.start(module);
    Ok(JServer {
        url: format!("ws://{addr}"),
        handle,
        live,
    })
}

async fn ws_rpc_connect(url: &str) -> Result<Client, String> {
    step(format!("connecting ws-rpc's Client to {url}"));
    let mut config = ClientConfig::default();
    config.reconnect = false;
    config.request_timeout = Duration::from_secs(5);
    within(
        10,
        "ws-rpc connect",
        Client::builder(url).config(config).connect(),
    )
    .await?
    .map_err(|e| format!("ws-rpc's Client could not connect to {url}: {e}"))
}

fn expect_rpc_error<T: std::fmt::Debug>(
    what: &str,
    got: Result<T, ClientError>,
    code: i32,
) -> Result<ws_rpc::RpcError, String> {
    match got {
        Err(ClientError::Rpc(e)) if e.code == code => Ok(e),
        Err(ClientError::Rpc(e)) => Err(format!(
            "{what}: expected error code {code}, got {} ({:?})",
            e.code, e.message
        )),
        Err(e) => Err(format!("{what}: expected error code {code}, got {e}")),
        Ok(v) => Err(format!(
            "{what}: expected error code {code}, got result {v:?}"
        )),
    }
}

async fn ws_rpc_client_calls() -> Outcome {
    let server = jsonrpsee_server().await?;
    let client = ws_rpc_connect(&server.url).await?;

    step("calling add [2, 3]");
    let sum: i64 = client
        .request("add", (2, 3))
        .await
        .map_err(|e| format!("add [2, 3]: {e}"))?;
    expect(sum == 5, || format!("add [2, 3]: expected 5, got {sum}"))?;

    step("calling add [-7, 1000000000000]");
    let sum: i64 = client
        .request("add", [-7i64, 1_000_000_000_000])
        .await
        .map_err(|e| format!("add [-7, 1000000000000]: {e}"))?;
    expect(sum == 999_999_999_993, || {
        format!("add [-7, 1000000000000]: expected 999999999993, got {sum}")
    })?;

    step("calling hello with no params");
    let hello: String = client
        .request("hello", ())
        .await
        .map_err(|e| format!("hello (no params): {e}"))?;
    expect(hello == "hello", || {
        format!("hello: expected \"hello\", got {hello:?}")
    })?;

    step("calling fail");
    let e = expect_rpc_error("fail", client.request::<Value, _>("fail", ()).await, 4000)?;
    expect(e.message == "failed on purpose", || {
        format!(
            "fail: expected message \"failed on purpose\", got {:?}",
            e.message
        )
    })?;
    let data: Option<Value> = e
        .data
        .as_ref()
        .and_then(|d| serde_json::from_str(d.get()).ok());
    expect(data == Some(json!({"why": "test"})), || {
        format!(
            "fail: expected data {{\"why\": \"test\"}}, got {:?}",
            e.data
        )
    })?;

    step("calling a missing method");
    expect_rpc_error(
        "foobar",
        client.request::<Value, _>("foobar", [1]).await,
        -32601,
    )?;

    step("calling add with bad params");
    expect_rpc_error(
        "add [\"x\"]",
        client.request::<Value, _>("add", ["x"]).await,
        -32602,
    )?;

    step("sending a notification, then calling add [20, 22]");
    client
        .notify("add", (1, 2))
        .await
        .map_err(|e| format!("notification add: {e}"))?;
    let sum: i64 = client
        .request("add", (20, 22))
        .await
        .map_err(|e| format!("add [20, 22] after a notification: {e}"))?;
    expect(sum == 42, || {
        format!("add [20, 22]: expected 42, got {sum}")
    })?;
    client.close();
    Ok(())
}

async fn ws_rpc_client_subscribe() -> Outcome {
    let server = jsonrpsee_server().await?;
    let client = ws_rpc_connect(&server.url).await?;
    step("subscribing with subscribe_count");
    let mut sub = client
        .subscribe::<u64, _>("subscribe_count", (), "unsubscribe_count")
        .await
        .map_err(|e| format!("subscribe_count: {e}"))?;
    for want in 0..ITEMS {
        step(format!("waiting for count item {want}"));
        match within(5, "the next count item", sub.next()).await? {
            Some(SubscriptionItem::Item(n)) => {
                expect(n == want, || format!("expected count item {want}, got {n}"))?
            }
            Some(SubscriptionItem::Ended(why)) => {
                return Err(format!(
                    "the subscription ended after {want} items: {why:?}"
                ))
            }
            Some(SubscriptionItem::Invalid(e)) => {
                return Err(format!("count item {want} did not decode as u64: {e}"))
            }
            Some(other) => return Err(format!("expected count item {want}, got {other:?}")),
            None => return Err(format!("the subscription stream ended after {want} items")),
        }
    }
    expect(server.live.load(Ordering::SeqCst) == 1, || {
        format!(
            "{} subscriptions running on the server, expected 1",
            server.live.load(Ordering::SeqCst)
        )
    })?;
    step("unsubscribing with unsubscribe_count");
    within(5, "unsubscribe_count", sub.unsubscribe())
        .await?
        .map_err(|e| format!("unsubscribe_count: {e}"))?;
    step("waiting for the stream to end");
    loop {
        match within(5, "the end of the subscription stream", sub.next()).await? {
            Some(SubscriptionItem::Item(_)) => {} // in flight before the unsubscribe
            Some(SubscriptionItem::Ended(ws_rpc::SubscriptionEnd::Unsubscribed)) | None => break,
            Some(other) => return Err(format!("after unsubscribing the stream gave {other:?}")),
        }
    }
    step("waiting for the server's subscription task to end");
    within(5, "the server's subscription to end", async {
        while server.live.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .map_err(|_| {
        "the jsonrpsee server still runs the subscription 5 s after unsubscribing".to_owned()
    })?;
    step("calling add [1, 1] after unsubscribing");
    let sum: i64 = client
        .request("add", (1, 1))
        .await
        .map_err(|e| format!("add [1, 1] after unsubscribing: {e}"))?;
    expect(sum == 2, || format!("add [1, 1]: expected 2, got {sum}"))?;
    client.close();
    Ok(())
}
