//! The method registry: a [`tower::Service`] from [`Request`] to
//! [`Response`], so stock tower layers wrap it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::call::{Params, Request, Response};
use super::context::Context;
use super::outbox::Bound;
use super::subscription::{EndReason, SubscriptionSink, SubscriptionSlot};
use crate::error::{code, RpcError};

/// A boxed future, as the router's handlers return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

type MethodFn = dyn Fn(Request) -> BoxFuture<Response> + Send + Sync;
type NotificationFn = dyn Fn(Request) -> BoxFuture<()> + Send + Sync;
type SubscribeFn =
    dyn Fn(Params, SubscriptionSink, Context) -> Result<BoxFuture<()>, RpcError> + Send + Sync;

#[derive(Clone)]
enum Entry {
    Method(Arc<MethodFn>),
    Notification(Arc<NotificationFn>),
    Subscribe {
        notification: Arc<str>,
        start: Arc<SubscribeFn>,
    },
    Unsubscribe {
        notification: Arc<str>,
    },
}

/// The methods a server answers, by name: calls, notifications and
/// subscriptions. A [`tower::Service`]: wrap it in layers (timeout,
/// concurrency limit, rate limit, tracing) with `tower::ServiceBuilder`.
///
/// ```
/// use ws_rpc::{Router, RpcError};
///
/// #[derive(serde::Deserialize)]
/// struct Subtract { minuend: i64, subtrahend: i64 }
///
/// let router = Router::new()
///     .method("subtract", |p: Subtract, _cx| async move { Ok::<_, RpcError>(p.minuend - p.subtrahend) })
///     .method("sum", |p: Vec<i64>, _cx| async move { Ok::<_, RpcError>(p.iter().sum::<i64>()) })
///     .notification("update", |_p: serde_json::Value, _cx| async move {});
/// assert!(router.has_method("subtract"));
/// ```
#[derive(Clone, Default)]
pub struct Router {
    /// FNV rather than SipHash: the table is the server's own (a peer only
    /// looks names up, it never adds one, so it cannot make the probes
    /// longer), and method names are short.
    methods: Arc<HashMap<Arc<str>, Entry, fnv::FnvBuildHasher>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.methods.keys().collect();
        names.sort();
        f.debug_struct("Router").field("methods", &names).finish()
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(mut self, name: &str, entry: Entry) -> Self {
        assert!(
            !name.starts_with("rpc."),
            "method names beginning with rpc. are reserved (JSON-RPC 2.0 §8): {name}"
        );
        Arc::make_mut(&mut self.methods).insert(name.into(), entry);
        self
    }

    /// Whether `name` is registered.
    pub fn has_method(&self, name: &str) -> bool {
        self.methods.contains_key(name)
    }

    /// A method: `handler(params, context)` answers with a result or an
    /// error object. Its parameters are decoded into `P` (a failure is
    /// -32602 with what was wrong); absent parameters decode as `null`.
    /// Called as a notification, it runs and its answer is dropped (§4.1).
    pub fn method<P, R, F, Fut>(self, name: &str, handler: F) -> Self
    where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(P, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let f = move |req: Request| -> BoxFuture<Response> {
            let params = match req.params.parse::<P>() {
                Ok(p) => p,
                Err(e) => return Box::pin(std::future::ready(Response::error(e))),
            };
            let fut = handler(params, req.cx);
            let id = req.id;
            Box::pin(async move {
                match fut.await {
                    Ok(r) => Response::answer(&r, id),
                    Err(e) => Response::error(e),
                }
            })
        };
        self.insert(name, Entry::Method(Arc::new(f)))
    }

    /// A method that takes the whole [`Request`] and makes the whole
    /// [`Response`] (raw parameters, extensions set by middleware).
    pub fn raw_method<F, Fut>(self, name: &str, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        self.insert(
            name,
            Entry::Method(Arc::new(move |req| Box::pin(handler(req)))),
        )
    }

    /// A notification handler: runs for each notification of `name`, and
    /// nothing is ever sent back. A request (with an id) for it gets
    /// -32601: it is not a method. Parameters that do not decode are
    /// logged and the notification dropped.
    pub fn notification<P, F, Fut>(self, name: &str, handler: F) -> Self
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(P, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let f = move |req: Request| -> BoxFuture<()> {
            match req.params.parse::<P>() {
                Ok(p) => Box::pin(handler(p, req.cx)),
                Err(e) => {
                    tracing::debug!(method = req.method(), error = %e, "notification dropped");
                    Box::pin(std::future::ready(()))
                }
            }
        };
        self.insert(name, Entry::Notification(Arc::new(f)))
    }

    /// A subscription, jsonrpsee's triple: `subscribe` answers with the new
    /// subscription's id, then `handler(params, sink, context)` runs in a
    /// task of its own and sends items with the sink; they go out as
    /// `notification` messages. `unsubscribe` with `[id]` ends it (answer
    /// `true`, or `false` for an unknown id). A connection may hold
    /// [`ServerConfig::max_subscriptions`](crate::ServerConfig::max_subscriptions)
    /// (-32004 past it). When the handler returns, the subscription ends
    /// and nothing more is sent.
    pub fn subscription<P, F, Fut>(
        self,
        subscribe: &str,
        notification: &str,
        unsubscribe: &str,
        handler: F,
    ) -> Self
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(P, SubscriptionSink, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let notification: Arc<str> = notification.into();
        let handler = Arc::new(handler);
        let start = move |params: Params, sink: SubscriptionSink, cx: Context| {
            let p = params.parse::<P>()?;
            Ok(Box::pin(handler(p, sink, cx)) as BoxFuture<()>)
        };
        self.insert(
            subscribe,
            Entry::Subscribe {
                notification: notification.clone(),
                start: Arc::new(start),
            },
        )
        .insert(unsubscribe, Entry::Unsubscribe { notification })
    }

    /// Handle a call: its answer, or `None` for a notification.
    fn dispatch(&self, req: Request) -> BoxFuture<Response> {
        let Some(entry) = self.methods.get(req.method.as_str()) else {
            return ready(Response::error(RpcError::method_not_found()));
        };
        match entry {
            Entry::Method(f) => f(req),
            Entry::Notification(f) if req.id.is_none() => {
                let fut = f(req);
                Box::pin(async move {
                    fut.await;
                    Response::ok(&())
                })
            }
            Entry::Notification(_) => ready(Response::error(RpcError::new(
                code::METHOD_NOT_FOUND,
                "Method not found: a notification, not a method",
            ))),
            Entry::Subscribe {
                notification,
                start,
            } => ready(subscribe(req, notification, start)),
            Entry::Unsubscribe { notification } => ready(unsubscribe(req, notification)),
        }
    }
}

fn ready(r: Response) -> BoxFuture<Response> {
    Box::pin(std::future::ready(r))
}

/// A new subscription: its id now, its handler once the id went out.
fn subscribe(req: Request, notification: &Arc<str>, start: &Arc<SubscribeFn>) -> Response {
    if req.id.is_none() {
        // A notification: nobody would learn the subscription's id.
        return Response::error(RpcError::invalid_request());
    }
    let cx = req.cx;
    let config = &cx.inner.config;
    let slot = {
        let mut subs = cx
            .inner
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if subs.len() >= config.max_subscriptions {
            return Response::error(RpcError::new(
                code::TOO_MANY_SUBSCRIPTIONS,
                "Too many subscriptions on the connection",
            ));
        }
        // Numbers a JavaScript client holds exactly (below 2^53), as
        // jsonrpsee gives.
        let mut id = rand::random::<u64>() & ((1 << 53) - 1);
        while subs.contains_key(&id) {
            id = rand::random::<u64>() & ((1 << 53) - 1);
        }
        let bound = Bound {
            items: config.subscription_buffer,
            policy: config.subscription_lag_policy,
        };
        let slot = SubscriptionSlot::new(
            id,
            notification.clone(),
            cx.inner.outbox.clone(),
            bound,
            Arc::downgrade(&cx.inner),
        );
        subs.insert(id, slot.clone());
        slot
    };
    let sink = SubscriptionSink::new(&slot);
    let id = sink.id();
    let fut = match start(req.params, sink, cx.clone()) {
        Ok(fut) => fut,
        Err(e) => {
            slot.end(EndReason::ClosedByServer);
            return Response::error(e);
        }
    };
    Response::ok(&id).then(move || {
        tokio::spawn(async move {
            fut.await;
            slot.end(EndReason::ClosedByServer);
        });
    })
}

/// `unsubscribe [id]`: `true` if it ended a subscription of this kind.
fn unsubscribe(req: Request, notification: &str) -> Response {
    let id = match req.params.parse::<(serde_json::Value,)>() {
        Ok((serde_json::Value::Number(n),)) => n.as_u64(),
        Ok((serde_json::Value::String(s),)) => s.parse().ok(),
        Ok(_) => None,
        Err(e) => return Response::error(e),
    };
    let slot = id.and_then(|id| {
        let mut subs = req
            .cx
            .inner
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match subs.get(&id) {
            Some(s) if s.notification() == notification => subs.remove(&id),
            _ => None,
        }
    });
    match slot {
        Some(slot) => {
            slot.end(EndReason::Unsubscribed);
            Response::ok(&true)
        }
        None => Response::ok(&false),
    }
}

impl tower::Service<Request> for Router {
    type Response = Response;
    type Error = Infallible;
    type Future = RouterFuture;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        RouterFuture(self.dispatch(req))
    }
}

/// The future of a [`Router`] call.
pub struct RouterFuture(BoxFuture<Response>);

impl Future for RouterFuture {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx).map(Ok)
    }
}
