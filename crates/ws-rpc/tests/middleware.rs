//! Middleware on both sides: stock tower layers and interceptors that see,
//! change or refuse every request and response.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use common::{url, within, Raw};
use tower::{Layer, Service, ServiceBuilder};
use ws_rpc::{
    Client, ClientError, ClientRequest, Params, Request, Response, Router, RpcError, Server,
};

fn router() -> Router {
    Router::new()
        .method("echo", |p: serde_json::Value, _cx| async move {
            Ok::<_, RpcError>(p)
        })
        .method("sleep", |(ms,): (u64,), _cx| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, RpcError>("slept")
        })
        .method("secret", |(): (), _cx| async move {
            Ok::<_, RpcError>("the secret")
        })
}

/// An interceptor: refuses `secret`, rewrites `echo`'s parameters, counts
/// every call (notifications included) and tags every result.
#[derive(Clone)]
struct Interceptor<S> {
    inner: S,
    seen: Arc<AtomicUsize>,
}

impl<S> Service<Request> for Interceptor<S>
where
    S: Service<Request, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        self.seen.fetch_add(1, Ordering::SeqCst);
        if req.method() == "secret" {
            let refused = Response::error(RpcError::new(-32002, "forbidden"));
            return Box::pin(async move { Ok(refused) });
        }
        if req.method() == "echo" {
            req.set_params(Params::from_json(r#"{"rewritten":true}"#));
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = fut.await?;
            Ok(match response.result() {
                Ok(r) => Response::ok(
                    &serde_json::json!({ "tagged": serde_json::from_str::<serde_json::Value>(r.get()).unwrap() }),
                ),
                Err(_) => response,
            })
        })
    }
}

#[tokio::test]
async fn server_interceptors_and_stock_tower_layers() {
    let seen = Arc::new(AtomicUsize::new(0));
    let service = ServiceBuilder::new()
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            100,
        )))
        .layer(tower::limit::ConcurrencyLimitLayer::new(64))
        .layer_fn({
            let seen = seen.clone();
            move |inner| Interceptor {
                inner,
                seen: seen.clone(),
            }
        })
        .service(router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Server::builder().build(service).serve(listener));
    let mut peer = Raw::connect(addr).await;
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"echo","params":[1],"id":1}"#)
        .await;
    assert_eq!(
        r["result"],
        serde_json::json!({"tagged":{"rewritten":true}})
    );
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"secret","id":2}"#)
        .await;
    assert_eq!(r["error"]["code"], -32002);
    // tower's timeout: -32000.
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"sleep","params":[1000],"id":3}"#)
        .await;
    assert_eq!(r["error"]["code"], -32000, "{r}");
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"sleep","params":[1],"id":4}"#)
        .await;
    assert_eq!(r["result"], serde_json::json!({"tagged":"slept"}));
    peer.send(r#"{"jsonrpc":"2.0","method":"echo","params":[2]}"#)
        .await;
    let r = peer
        .call(r#"{"jsonrpc":"2.0","method":"nope","id":5}"#)
        .await;
    assert_eq!(r["error"]["code"], -32601);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        6,
        "every call, the notification too"
    );
}

/// A client interceptor: adds a parameter to every call, refuses one
/// method, and sees every result.
#[derive(Clone)]
struct ClientInterceptor<S> {
    inner: S,
    results: Arc<AtomicUsize>,
}

impl<S> Service<ClientRequest> for ClientInterceptor<S>
where
    S: Service<ClientRequest, Response = Box<serde_json::value::RawValue>, Error = ClientError>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Box<serde_json::value::RawValue>;
    type Error = ClientError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ClientError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), ClientError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: ClientRequest) -> Self::Future {
        if req.method() == "secret" {
            return Box::pin(async {
                Err(ClientError::Middleware(Arc::new(std::io::Error::other(
                    "not from here",
                ))))
            });
        }
        if req.method() == "echo" {
            req.set_params(serde_json::value::to_raw_value(&["from the interceptor"]).ok());
        }
        let results = self.results.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            results.fetch_add(1, Ordering::SeqCst);
            r
        })
    }
}

struct ClientInterceptorLayer(Arc<AtomicUsize>);

impl<S> Layer<S> for ClientInterceptorLayer {
    type Service = ClientInterceptor<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ClientInterceptor {
            inner,
            results: self.0.clone(),
        }
    }
}

#[tokio::test]
async fn client_interceptors_see_change_and_refuse_calls() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Server::builder().build(router()).serve(listener));
    let results = Arc::new(AtomicUsize::new(0));
    let client = within(
        Client::builder(url(addr))
            .layer(ClientInterceptorLayer(results.clone()))
            .connect(),
    )
    .await
    .unwrap();
    let r: serde_json::Value = client.request("echo", ["original"]).await.unwrap();
    assert_eq!(r, serde_json::json!(["from the interceptor"]));
    let e = client.request::<String, _>("secret", ()).await.unwrap_err();
    assert!(matches!(e, ClientError::Middleware(_)), "{e:?}");
    let _: String = client.request("sleep", [1]).await.unwrap();
    assert_eq!(results.load(Ordering::SeqCst), 2);
}
