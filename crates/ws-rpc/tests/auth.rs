//! Authentication: at the handshake (a token in the query string, a header,
//! a cookie, or a subprotocol), and by a first-message login.

mod common;

use std::time::Duration;

use common::{serve_with, url, within, Raw};
use http::StatusCode;
use serde_json::json;
use ws_net::server::{Reject, UpgradeRequest};
use ws_rpc::{Context, Identity, Router, RpcError, Server, ServerConfig};

fn whoami() -> Router {
    Router::new().method("whoami", |(): (), cx: Context| async move {
        Ok::<_, RpcError>(cx.identity().map(|i| i.subject().to_owned()))
    })
}

/// The token `secret`, wherever the client put it: the query string, the
/// `Authorization` header, a cookie, or a subprotocol `token.<t>` (the
/// server then selects `ws-rpc`).
fn check(req: &UpgradeRequest) -> Result<Option<Identity>, Reject> {
    let query = req.query().unwrap_or("");
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let cookie = req
        .headers()
        .get(http::header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = query.split('&').any(|kv| kv == "token=secret")
        || header == Some("Bearer secret")
        || cookie.split("; ").any(|kv| kv == "token=secret")
        || req.protocols().iter().any(|p| p == "token.secret");
    if ok {
        Ok(Some(Identity::new("alice")))
    } else {
        Err(Reject::new(
            StatusCode::UNAUTHORIZED,
            "bad or missing token",
        ))
    }
}

async fn whoami_via(
    builder: ws_net::ClientBuilder,
) -> Result<serde_json::Value, ws_net::ConnectError> {
    let (ws, _) = within(builder.connect()).await?;
    let mut peer = Raw(ws);
    Ok(peer
        .call(r#"{"jsonrpc":"2.0","method":"whoami","id":1}"#)
        .await)
}

#[tokio::test]
async fn the_handshake_hook_accepts_a_token_four_ways_and_refuses_with_401() {
    let (addr, _s) = serve_with(Server::builder().authenticate(check), whoami()).await;
    let base = url(addr);
    let ways = [
        ws_net::ClientBuilder::new(&format!("{base}?token=secret")).unwrap(),
        ws_net::ClientBuilder::new(&base).unwrap().header(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer secret"),
        ),
        ws_net::ClientBuilder::new(&base).unwrap().header(
            http::header::COOKIE,
            http::HeaderValue::from_static("theme=dark; token=secret"),
        ),
        ws_net::ClientBuilder::new(&base)
            .unwrap()
            .protocol("ws-rpc")
            .protocol("token.secret"),
    ];
    for builder in ways {
        let r = whoami_via(builder).await.unwrap();
        assert_eq!(r["result"], "alice", "the identity reaches the handler");
    }
    for builder in [
        ws_net::ClientBuilder::new(&base).unwrap(),
        ws_net::ClientBuilder::new(&format!("{base}?token=wrong")).unwrap(),
    ] {
        match whoami_via(builder).await {
            Err(ws_net::ConnectError::Refused { status, .. }) => {
                assert_eq!(status, StatusCode::UNAUTHORIZED)
            }
            other => panic!("{other:?}"),
        }
    }
}

fn with_login(timeout: Duration) -> ws_rpc::ServerBuilder {
    let mut config = ServerConfig::default();
    config.login_timeout = timeout;
    Server::builder().config(config).login(
        "auth.login",
        |(token,): (String,), _cx: Context| async move {
            if token == "secret" {
                Ok(Identity::new("bob"))
            } else {
                Err(RpcError::new(4001, "wrong token"))
            }
        },
    )
}

#[tokio::test]
async fn a_first_message_login_gates_every_call() {
    let (addr, _s) = serve_with(with_login(Duration::from_secs(10)), whoami()).await;
    let mut peer = Raw::connect(addr).await;
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"whoami","id":1}"#)
        .await;
    assert_eq!(r["error"]["code"], -32001);
    assert_eq!(r["error"]["data"]["method"], "auth.login");
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"auth.login","params":["nope"],"id":2}"#)
        .await;
    assert_eq!(r["error"]["code"], 4001);
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"auth.login","params":["secret"],"id":3}"#)
        .await;
    assert_eq!(r["result"], json!({"subject":"bob"}));
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"whoami","id":4}"#)
        .await;
    assert_eq!(r["result"], "bob");
    // The heartbeat needs no login.
    let mut other = Raw::connect(addr).await;
    let r = other
        .call(r#"{"jsonrpc":"2.0","method":"rpc.ping","id":1}"#)
        .await;
    assert_eq!(r["result"], "pong");
}

/// A login in a batch logs the connection in, and a second login sent
/// while the first is pending is refused, whatever else finishes between.
#[tokio::test]
async fn a_login_in_a_batch_counts_and_a_pending_one_is_not_repeated() {
    let builder = Server::builder().login(
        "auth.login",
        |(token,): (String,), _cx: Context| async move {
            // Slow enough for other calls to finish while it runs.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if token == "secret" {
                Ok(Identity::new("bob"))
            } else {
                Err(RpcError::new(4001, "wrong token"))
            }
        },
    );
    let (addr, _s) = serve_with(builder, whoami()).await;
    let mut peer = Raw::connect(addr).await;
    let r = peer
        .call(r#"[{"jsonrpc":"2.0","method":"auth.login","params":["secret"],"id":1}]"#)
        .await;
    assert_eq!(r[0]["result"], json!({"subject":"bob"}), "{r}");
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"whoami","id":2}"#)
        .await;
    assert_eq!(r["result"], "bob", "{r}");

    let mut peer = Raw::connect(addr).await;
    peer.send(r#"{"jsonrpc":"2.0","method":"auth.login","params":["nope"],"id":1}"#)
        .await;
    // Answered at once (login required) while the login runs.
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"whoami","id":2}"#)
        .await;
    assert_eq!(r["error"]["code"], -32001, "{r}");
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"auth.login","params":["secret"],"id":3}"#)
        .await;
    assert_eq!(r["error"]["message"], "Already logged in", "{r}");
    let r = peer.recv().await.unwrap();
    assert_eq!(r["error"]["code"], 4001, "{r}");
}

#[tokio::test]
async fn no_login_in_time_closes_with_1008() {
    let (addr, _s) = serve_with(with_login(Duration::from_millis(200)), whoami()).await;
    let (mut ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
    loop {
        match within(ws.recv()).await {
            Some(Ok(ws_net::Message::Close(Some(f)))) => {
                assert_eq!(f.code, ws_net::CloseCode::POLICY_VIOLATION);
                assert_eq!(f.reason.as_str(), "login timeout");
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn the_hooks_identity_skips_the_login() {
    let builder = with_login(Duration::from_secs(10)).authenticate(check);
    let (addr, _s) = serve_with(builder, whoami()).await;
    let r = whoami_via(ws_net::ClientBuilder::new(&format!("{}?token=secret", url(addr))).unwrap())
        .await
        .unwrap();
    assert_eq!(r["result"], "alice");
}
