//! The server: a [`Router`] (or any [`tower::Service`] over it) served on
//! a TCP listener or on connections another HTTP stack upgraded.

mod call;
pub(crate) mod connection;
mod context;
pub(crate) mod outbox;
mod rooms;
mod router;
mod subscription;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::{BoxError, Service};
use ws_net::server::{Accept, Reject, UpgradeRequest};
use ws_net::WebSocket;

pub use call::{Params, Request, Response};
pub use context::{Context, Identity, NotifyError};
pub use outbox::LagPolicy;
pub use rooms::{BoxFuture, Delivery, LocalRooms, Member, RoomInfo, Rooms};
pub use router::{Router, RouterFuture};
pub use subscription::{EndReason, SubscriptionClosed, SubscriptionSink};

use crate::error::RpcError;

/// The server's limits and defaults, for every connection. They protect a
/// service that never tunes them; the crate docs list them in one table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The WebSocket settings (ws-net's): keepalive (on: a ping after 20 s
    /// of silence, 20 s to answer), close timeout, write buffer, and the
    /// largest message (10 MiB here, as jsonrpsee).
    pub ws: ws_net::Config,
    /// Calls in flight on one connection (default 256, as jsonrpsee); past
    /// it the server stops reading the connection until one finishes:
    /// backpressure, not errors. A batch counts each of its calls.
    pub max_in_flight: usize,
    /// Calls in one batch (default 100); a larger batch gets one -32005
    /// answer.
    pub max_batch: usize,
    /// Subscriptions one connection may hold (default 1024, as jsonrpsee);
    /// past it, -32004.
    pub max_subscriptions: usize,
    /// Items one subscription may have waiting for a slow client (default
    /// 1024, as jsonrpsee), beyond the connection's write buffer.
    pub subscription_buffer: usize,
    /// What happens to a subscription whose client falls behind (default:
    /// it ends, with a final notification saying so).
    pub subscription_lag_policy: LagPolicy,
    /// Broadcasts of one room that may wait for a slow member (default
    /// 1024).
    pub room_buffer: usize,
    /// What happens to a room member that falls behind (default: it leaves
    /// the room and gets an `rpc.lagged` notification).
    pub room_lag_policy: LagPolicy,
    /// Messages waiting for one connection, in all (default 4096), and
    /// their bytes (default 16 MiB): a notification past them is refused.
    pub queue_items: usize,
    /// See [`queue_items`](Self::queue_items).
    pub queue_bytes: usize,
    /// With a first-message login configured, the time a connection has to
    /// log in (default 10 s); then it is closed with 1008.
    pub login_timeout: Duration,
    /// The subprotocol to select when a client offers it (default
    /// `ws-rpc`); other offers are ignored.
    pub protocol: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let mut ws = ws_net::Config::default();
        ws.protocol.max_message_size = 10 << 20;
        ws.protocol.max_frame_size = 10 << 20;
        Self {
            ws,
            max_in_flight: 256,
            max_batch: 100,
            max_subscriptions: 1024,
            subscription_buffer: 1024,
            subscription_lag_policy: LagPolicy::End,
            room_buffer: 1024,
            room_lag_policy: LagPolicy::End,
            queue_items: 4096,
            queue_bytes: 16 << 20,
            login_timeout: Duration::from_secs(10),
            protocol: Some("ws-rpc".into()),
        }
    }
}

type AuthFn = dyn Fn(&UpgradeRequest) -> Result<Option<Identity>, Reject> + Send + Sync;
type CloseFn = dyn Fn(&Context) + Send + Sync;
type LoginFn = dyn Fn(Params, Context) -> Pin<Box<dyn Future<Output = Result<Identity, RpcError>> + Send>>
    + Send
    + Sync;

pub(crate) struct Login {
    pub(crate) method: Arc<str>,
    pub(crate) handler: Arc<LoginFn>,
}

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) rooms: Arc<dyn Rooms>,
    pub(crate) auth: Option<Arc<AuthFn>>,
    pub(crate) login: Option<Arc<Login>>,
    pub(crate) on_close: Option<Arc<CloseFn>>,
    pub(crate) shutdown: watch::Sender<bool>,
    connections: AtomicUsize,
    idle: Notify,
}

/// Configures a [`Server`].
pub struct ServerBuilder {
    config: ServerConfig,
    rooms: Option<Arc<dyn Rooms>>,
    auth: Option<Arc<AuthFn>>,
    login: Option<Arc<Login>>,
    on_close: Option<Arc<CloseFn>>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// The limits and defaults.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// The room registry (default: [`LocalRooms`], this process only).
    pub fn rooms(mut self, rooms: Arc<dyn Rooms>) -> Self {
        self.rooms = Some(rooms);
        self
    }

    /// Authenticate at the opening handshake: `hook` sees the HTTP request
    /// (a token in the query string, the `Authorization` header, a cookie,
    /// or a token offered as a subprotocol, which keeps it out of URLs and
    /// logs) and accepts it, with the identity it proved or none, or
    /// refuses it with a status (401, 403) before any upgrade. With a
    /// login configured too, a connection the hook gave an identity needs
    /// no login.
    pub fn authenticate<F>(mut self, hook: F) -> Self
    where
        F: Fn(&UpgradeRequest) -> Result<Option<Identity>, Reject> + Send + Sync + 'static,
    {
        self.auth = Some(Arc::new(hook));
        self
    }

    /// Require a first-message login: `method` must be the first call of a
    /// connection, within [`ServerConfig::login_timeout`]; any other call
    /// before it gets -32001, and a connection that does not log in in time
    /// is closed with 1008. `handler` checks the parameters and gives the
    /// identity every later handler sees.
    pub fn login<P, F, Fut>(mut self, method: &str, handler: F) -> Self
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(P, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Identity, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let f = move |params: Params, cx: Context| {
            let handler = handler.clone();
            Box::pin(async move {
                let p = params.parse::<P>()?;
                handler(p, cx).await
            }) as Pin<Box<dyn Future<Output = _> + Send>>
        };
        self.login = Some(Arc::new(Login {
            method: method.into(),
            handler: Arc::new(f),
        }));
        self
    }

    /// Run `hook` when a connection ends, before it leaves its rooms and
    /// its subscriptions end (say goodbye to the rooms it was in).
    pub fn on_close<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Context) + Send + Sync + 'static,
    {
        self.on_close = Some(Arc::new(hook));
        self
    }

    /// The server, answering calls with `service`: a [`Router`], or a
    /// router wrapped in tower layers. A service's error is turned into an
    /// error object: its own if it is an [`RpcError`], -32000 for tower's
    /// timeout, -32002 for its load shedding, else -32603.
    pub fn build<S>(self, service: S) -> Server<S>
    where
        S: Service<Request, Response = Response> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        Server {
            service,
            shared: Arc::new(Shared {
                config: Arc::new(self.config),
                rooms: self.rooms.unwrap_or_else(|| Arc::new(LocalRooms::new())),
                auth: self.auth,
                login: self.login,
                on_close: self.on_close,
                shutdown: watch::Sender::new(false),
                connections: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        }
    }
}

/// A JSON-RPC server: serve it on a listener ([`serve`](Self::serve)), or
/// hand it connections ([`accept`](Self::accept) for a raw socket,
/// [`serve_websocket`](Self::serve_websocket) for one another HTTP stack
/// upgraded). Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use ws_rpc::{Router, RpcError, Server};
/// let router = Router::new().method("add", |(a, b): (i64, i64), _cx| async move {
///     Ok::<_, RpcError>(a + b)
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9944").await?;
/// Server::builder().build(router).serve(listener).await
/// # }
/// ```
pub struct Server<S = Router> {
    service: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Server<S> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Server<Router> {
    /// Configure a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: ServerConfig::default(),
            rooms: None,
            auth: None,
            login: None,
            on_close: None,
        }
    }
}

impl<S> Server<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A handle to shut the server down, reach its rooms, count its
    /// connections.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Accept connections on `listener` until [`ServerHandle::shutdown`];
    /// then close every connection with 1001 and return once they are all
    /// gone.
    ///
    /// Cancel-safe in the sense that dropping it stops accepting;
    /// connections already accepted go on in their own tasks.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        let mut shutdown = self.shared.shutdown.subscribe();
        if *shutdown.borrow_and_update() {
            return Ok(());
        }
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nodelay(self.shared.config.ws.nodelay);
                        tokio::spawn(self.clone().accept(tcp));
                    }
                    // Out of descriptors or the like: wait rather than spin.
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        ws_net::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = shutdown.changed() => break,
            }
        }
        drop(listener);
        self.handle().closed().await;
        Ok(())
    }

    /// Run the opening handshake on `stream` (the authentication hook
    /// decides first), then serve the connection in a task of its own. A
    /// refused or failed handshake is logged and dropped.
    ///
    /// Cancel-safe in the sense that dropping it drops the connection.
    pub async fn accept<T>(self, stream: T)
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let mut head = None;
        let mut identity = None;
        let auth = self.shared.auth.clone();
        let protocol = self.shared.config.protocol.clone();
        let accepted = ws_net::server::accept_with(stream, self.shared.config.ws.clone(), |req| {
            if let Some(auth) = &auth {
                identity = auth(req)?;
            }
            head = Some(req.request().clone());
            let mut accept = Accept::default();
            if let Some(p) = protocol {
                accept.protocol = req.select_protocol(&[p]).map(str::to_owned);
            }
            Ok(accept)
        })
        .await;
        match (accepted, head) {
            // A task of its own: this one (and its handshake's state) ends.
            (Ok(ws), Some(head)) => {
                tokio::spawn(self.serve_websocket(ws, head, identity));
            }
            (Err(e), _) => tracing::debug!(error = %e, "handshake failed"),
            (Ok(_), None) => {}
        }
    }

    /// Serve a connection another HTTP stack upgraded (axum, hyper):
    /// `request` is the upgrade request (for the handlers' context), and
    /// `identity` what its authentication proved, if anything. The future
    /// owns what it needs: spawn it.
    pub fn serve_websocket(
        &self,
        ws: WebSocket,
        request: http::Request<()>,
        identity: Option<Identity>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let guard = ConnectionGuard::new(self.shared.clone());
        connection::run(
            ws,
            request,
            identity,
            self.shared.clone(),
            self.service.clone(),
            guard,
        )
    }
}

/// Counts a connection while it lives.
pub(crate) struct ConnectionGuard(Arc<Shared>);

impl ConnectionGuard {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        shared.connections.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.connections.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Controls a running [`Server`]. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("connections", &self.connections())
            .finish()
    }
}

impl ServerHandle {
    /// Stop accepting, and close every connection with 1001.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// The connections being served.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The room registry: broadcast to a room from outside any handler.
    pub fn rooms(&self) -> &Arc<dyn Rooms> {
        &self.shared.rooms
    }

    /// Wait until no connection is left.
    ///
    /// Cancel-safe.
    pub async fn closed(&self) {
        loop {
            let idle = self.shared.idle.notified();
            if self.connections() == 0 {
                return;
            }
            idle.await;
        }
    }
}
