//! The client: calls matched to answers by id, notifications both ways,
//! subscriptions, and a connection that comes back by itself.

mod driver;
mod streams;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};
use ws_net::{ClientBuilder as WsClientBuilder, ConnectError, Message, Utf8Bytes, WsWriter};

pub use streams::{
    NotificationError, Notifications, Subscription, SubscriptionEnd, SubscriptionItem,
};

use crate::error::ClientError;
use crate::wire;

/// The state of a client's connection, like a browser's `readyState`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// The first connection is being made.
    Connecting,
    /// Connected: calls go out at once.
    Open,
    /// The connection dropped (or an attempt failed); the next attempt is
    /// in `retry_in`. Calls wait in the offline queue.
    Reconnecting {
        /// Attempts made since the connection was last open.
        attempt: u32,
        /// Until the next attempt.
        retry_in: Duration,
    },
    /// Closed for good (by [`Client::close`], or reconnecting is off or
    /// gave up).
    Closed,
}

/// Exponential backoff with jitter between connection attempts: the n-th
/// delay is `initial * factor^n`, at most `max`, then moved by up to
/// `jitter` of itself either way (socket.io's defaults: 1 s, 2, 5 s, 0.5).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first delay (default 1 s).
    pub initial: Duration,
    /// The growth per attempt (default 2).
    pub factor: f64,
    /// The longest delay (default 5 s).
    pub max: Duration,
    /// The random share, 0 to 1 (default 0.5).
    pub jitter: f64,
    /// Attempts before giving up; `None` (the default) never gives up.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(5),
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (0-based), jitter included.
    ///
    /// Any settings give a delay: a factor or jitter that is not a number
    /// counts as 1 and 0, and a delay beyond what a `Duration` holds is
    /// `max`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let mut b = ws_rpc::Backoff::default();
    /// b.jitter = 0.0;
    /// assert_eq!(b.delay(0), Duration::from_secs(1));
    /// assert_eq!(b.delay(1), Duration::from_secs(2));
    /// assert_eq!(b.delay(9), Duration::from_secs(5));
    /// ```
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = if self.factor.is_nan() {
            1.0
        } else {
            self.factor
        };
        let base = self.initial.as_secs_f64() * factor.powi(attempt.min(64) as i32);
        let base = base.min(self.max.as_secs_f64());
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let spread = if jitter > 0.0 {
            rand::random_range(-jitter..=jitter)
        } else {
            0.0
        };
        Duration::try_from_secs_f64((base * (1.0 + spread)).max(0.0)).unwrap_or(self.max)
    }
}

/// The client's limits and defaults; the crate docs list them in one table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The WebSocket settings (ws-net's: keepalive on, connect timeout
    /// 10 s, message size 10 MiB here).
    pub ws: ws_net::Config,
    /// How long a call waits for its answer (default 30 s).
    pub request_timeout: Duration,
    /// Reconnect when the connection drops (default on).
    pub reconnect: bool,
    /// Delays between attempts.
    pub backoff: Backoff,
    /// Calls and notifications that may wait for a connection (default
    /// 1024), and their bytes (default 4 MiB). Past either, a call fails
    /// at once with [`ClientError::QueueFull`].
    pub queue_items: usize,
    /// See [`queue_items`](Self::queue_items).
    pub queue_bytes: usize,
    /// Items one subscription or notification stream holds for a slow
    /// reader (default 1024, as jsonrpsee). A subscription that overflows
    /// ends ([`SubscriptionEnd::Lagged`]); a notification stream reports
    /// how many it missed.
    pub stream_buffer: usize,
    /// Subprotocols to offer (default `ws-rpc`).
    pub protocols: Vec<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        let mut ws = ws_net::Config::default();
        ws.protocol.max_message_size = 10 << 20;
        ws.protocol.max_frame_size = 10 << 20;
        Self {
            ws,
            request_timeout: Duration::from_secs(30),
            reconnect: true,
            backoff: Backoff::default(),
            queue_items: 1024,
            queue_bytes: 4 << 20,
            stream_buffer: 1024,
            protocols: vec!["ws-rpc".into()],
        }
    }
}

/// One call as the client's middleware sees it.
#[derive(Debug)]
pub struct ClientRequest {
    method: String,
    params: Option<Box<RawValue>>,
    notification: bool,
    /// How long to wait for the answer.
    pub timeout: Duration,
    /// Values for the layers after this one.
    pub extensions: http::Extensions,
}

impl ClientRequest {
    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The parameters, as JSON.
    pub fn params(&self) -> Option<&RawValue> {
        self.params.as_deref()
    }

    /// Replace the parameters.
    pub fn set_params(&mut self, params: Option<Box<RawValue>>) {
        self.params = params;
    }

    /// Whether it is a notification (no answer; the service's result is
    /// `null`).
    pub fn is_notification(&self) -> bool {
        self.notification
    }
}

/// The client's call path as a service: middleware wraps it.
pub type CallService = BoxCloneSyncService<ClientRequest, Box<RawValue>, ClientError>;

type LayerFn = Arc<dyn Fn(CallService) -> CallService + Send + Sync>;
type ReconnectHook = Arc<dyn Fn(Client) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Configures and starts a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    url: String,
    config: ClientConfig,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    layers: Vec<LayerFn>,
    on_reconnect: Option<ReconnectHook>,
    #[cfg(feature = "tls")]
    tls: Option<ws_net::TlsConnector>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The limits and defaults.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Send this header with the opening handshake (an `Authorization`, a
    /// cookie).
    pub fn header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Use this TLS configuration for `wss://` (built once, reused by every
    /// reconnect).
    #[cfg(feature = "tls")]
    pub fn tls_connector(mut self, tls: ws_net::TlsConnector) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Wrap every call in a tower layer: it sees and may change or refuse
    /// each request (a [`ClientRequest`]) and each result, and stock tower
    /// layers (timeout, concurrency limit, rate limit) apply.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<CallService> + Send + Sync + 'static,
        L::Service: Service<ClientRequest, Response = Box<RawValue>, Error = ClientError>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<ClientRequest>>::Future: Send + 'static,
    {
        self.layers.push(Arc::new(move |inner| {
            BoxCloneSyncService::new(layer.layer(inner))
        }));
        self
    }

    /// Run `hook` after each reconnect, before the calls that waited go out
    /// (log in again, join rooms again). Calls the hook makes go out first.
    pub fn on_reconnect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Client) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_reconnect = Some(Arc::new(move |c| Box::pin(hook(c))));
        self
    }

    /// Start the client and wait for its first connection. With reconnect
    /// on, a first attempt that fails is retried like any other (the error
    /// is returned only once attempts run out, or at once with reconnect
    /// off).
    ///
    /// Cancel-safe in the sense that dropping it closes the client.
    pub async fn connect(self) -> Result<Client, ConnectError> {
        let client = self.build()?;
        let mut state = client.state();
        loop {
            match &*state.borrow_and_update() {
                ConnectionState::Open => return Ok(client),
                ConnectionState::Closed => {
                    let e = client.inner.lock().last_error.take();
                    return Err(
                        e.unwrap_or(ConnectError::Io(std::io::ErrorKind::NotConnected.into()))
                    );
                }
                _ => {}
            }
            if state.changed().await.is_err() {
                return Err(ConnectError::Io(std::io::ErrorKind::NotConnected.into()));
            }
        }
    }

    /// Start the client without waiting: calls queue until it connects.
    /// Must be called in a tokio runtime (it spawns the connection's task).
    pub fn build(self) -> Result<Client, ConnectError> {
        let mut ws = WsClientBuilder::new(&self.url)?.config(self.config.ws.clone());
        for p in &self.config.protocols {
            ws = ws.protocol(p.clone());
        }
        for (name, value) in &self.headers {
            ws = ws.header(name.clone(), value.clone());
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            ws = ws.tls_connector(tls.clone());
        }
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            status: watch::Sender::new(ConnectionState::Connecting),
            config: self.config,
            wake: Notify::new(),
        });
        let raw = RawCalls {
            inner: inner.clone(),
            priority: false,
        };
        let mut service = BoxCloneSyncService::new(raw);
        for layer in &self.layers {
            service = layer(service);
        }
        let client = Client {
            inner: inner.clone(),
            service,
            layers: Arc::new(self.layers),
        };
        tokio::spawn(driver::run(client.clone(), ws, self.on_reconnect));
        Ok(client)
    }
}

/// A JSON-RPC client over one WebSocket connection that reconnects by
/// itself. Cheap to clone; every clone shares the connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ws_rpc::Client::builder("ws://127.0.0.1:9944/").connect().await?;
/// let sum: i64 = client.request("add", (2, 3)).await?;
/// assert_eq!(sum, 5);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    service: CallService,
    layers: Arc<Vec<LayerFn>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &*self.inner.status.borrow())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    state: Mutex<State>,
    status: watch::Sender<ConnectionState>,
    config: ClientConfig,
    /// Wakes the connection's task: close asked.
    wake: Notify,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A call waiting for its answer.
struct Pending {
    tx: oneshot::Sender<Result<Box<RawValue>, ClientError>>,
    /// It went out on the current connection (else it waits in the queue).
    sent: bool,
    /// A subscribe call: the local subscription its answer's id is for.
    subscription: Option<u64>,
}

/// Marks a call as the subscribe call of a local subscription.
#[derive(Clone, Copy)]
struct SubscriptionFor(u64);

/// A message waiting for a connection.
struct Queued {
    id: Option<u64>,
    text: Utf8Bytes,
}

/// A subscription as the client tracks it.
struct SubEntry {
    subscribe: String,
    unsubscribe: String,
    params: Option<Box<RawValue>>,
    /// Its id on the server, while subscribed.
    server_id: Option<serde_json::Value>,
    /// It was subscribed when the connection dropped: it is made again on
    /// the next one, and its stream told.
    resubscribe: bool,
    tx: mpsc::Sender<streams::SubEvent>,
    end: Arc<Mutex<Option<SubscriptionEnd>>>,
}

#[derive(Default)]
struct State {
    writer: Option<WsWriter>,
    /// The reconnect hook runs: its calls go out before the queue.
    priority_writer: Option<WsWriter>,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    subs: HashMap<u64, SubEntry>,
    /// Server subscription id (as JSON text) to local id.
    by_server: HashMap<String, u64>,
    notifications: HashMap<String, broadcast::Sender<Arc<RawValue>>>,
    closed: bool,
    last_error: Option<ConnectError>,
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

impl Client {
    /// Configure a client of `url` (`ws://` or `wss://`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            config: ClientConfig::default(),
            headers: Vec::new(),
            layers: Vec::new(),
            on_reconnect: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The connection's state, as a watch: `borrow()` for now, `changed()`
    /// to wait for the next.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.status.subscribe()
    }

    /// Call `method` with `params` (anything that serializes to an array or
    /// object; `()` for none) and decode its result into `R`. Waits at most
    /// [`ClientConfig::request_timeout`].
    ///
    /// While the client is (re)connecting the call waits in the offline
    /// queue and goes out, in order, once connected; a full queue fails it
    /// at once ([`ClientError::QueueFull`]). If the connection drops after
    /// the call went out, it fails with [`ClientError::Disconnected`]: it
    /// may or may not have run, and it is not sent again.
    ///
    /// Cancel-safe: dropping the future forgets the call (an answer that
    /// comes later is ignored; a call still queued is not sent).
    pub async fn request<R, P>(&self, method: &str, params: P) -> Result<R, ClientError>
    where
        R: DeserializeOwned,
        P: Serialize,
    {
        self.request_with_timeout(method, params, self.inner.config.request_timeout)
            .await
    }

    /// [`request`](Self::request) with its own timeout.
    pub async fn request_with_timeout<R, P>(
        &self,
        method: &str,
        params: P,
        timeout: Duration,
    ) -> Result<R, ClientError>
    where
        R: DeserializeOwned,
        P: Serialize,
    {
        let params = params_json(&params)?;
        let raw = self
            .call_raw(method, params, timeout, http::Extensions::new())
            .await?;
        serde_json::from_str(raw.get()).map_err(|e| ClientError::Decode(Arc::new(e)))
    }

    async fn call_raw(
        &self,
        method: &str,
        params: Option<Box<RawValue>>,
        timeout: Duration,
        extensions: http::Extensions,
    ) -> Result<Box<RawValue>, ClientError> {
        let req = ClientRequest {
            method: method.to_owned(),
            params,
            notification: false,
            timeout,
            extensions,
        };
        self.service.clone().oneshot(req).await
    }

    /// Subscribe on the connection: the answer's id is bound to the local
    /// subscription by the connection's task, before any item that follows
    /// the answer is read.
    pub(crate) async fn subscribe_raw(
        &self,
        local: u64,
        method: &str,
        params: Option<Box<RawValue>>,
    ) -> Result<(), ClientError> {
        let mut extensions = http::Extensions::new();
        extensions.insert(SubscriptionFor(local));
        self.call_raw(
            method,
            params,
            self.inner.config.request_timeout,
            extensions,
        )
        .await
        .map(drop)
    }

    /// Send a notification: no answer. Queued while (re)connecting, like
    /// a call.
    ///
    /// Cancel-safe: if the future is dropped, the notification was not sent
    /// or queued.
    pub async fn notify<P: Serialize>(&self, method: &str, params: P) -> Result<(), ClientError> {
        let params = params_json(&params)?;
        let req = ClientRequest {
            method: method.to_owned(),
            params,
            notification: true,
            timeout: self.inner.config.request_timeout,
            extensions: http::Extensions::new(),
        };
        self.service.clone().oneshot(req).await.map(drop)
    }

    /// Subscribe: call `subscribe` with `params`, then receive the items
    /// the server sends for the subscription id it answered, decoded as
    /// `T`. After a reconnect the subscription is made again, and the
    /// stream says so ([`SubscriptionItem::Resubscribed`]). The stream ends
    /// with a reason ([`SubscriptionItem::Ended`]). Dropping it unsubscribes
    /// (with `unsubscribe [id]`).
    pub async fn subscribe<T, P>(
        &self,
        subscribe: &str,
        params: P,
        unsubscribe: &str,
    ) -> Result<Subscription<T>, ClientError>
    where
        T: DeserializeOwned,
        P: Serialize,
    {
        let params = params_json(&params)?;
        let (tx, rx) = mpsc::channel(self.inner.config.stream_buffer.max(1));
        let end = Arc::new(Mutex::new(None));
        let local = {
            let mut st = self.inner.lock();
            if st.closed {
                return Err(ClientError::Closed);
            }
            let local = st.next_id();
            st.subs.insert(
                local,
                SubEntry {
                    subscribe: subscribe.to_owned(),
                    unsubscribe: unsubscribe.to_owned(),
                    params: params.clone(),
                    server_id: None,
                    resubscribe: false,
                    tx,
                    end: end.clone(),
                },
            );
            local
        };
        let guard = SubGuard {
            client: self.clone(),
            local: Some(local),
        };
        self.subscribe_raw(local, subscribe, params).await?;
        Ok(Subscription::new(rx, end, guard))
    }

    /// The server's notifications of `method`, decoded as `T` (the
    /// browser client's `notify:<method>` events). Every stream of one
    /// method gets every notification; a stream that falls more than
    /// [`ClientConfig::stream_buffer`] behind is told how many it missed.
    pub fn notifications<T: DeserializeOwned>(&self, method: &str) -> Notifications<T> {
        let mut st = self.inner.lock();
        let tx = st
            .notifications
            .entry(method.to_owned())
            .or_insert_with(|| broadcast::channel(self.inner.config.stream_buffer.max(1)).0);
        Notifications::new(tx.subscribe())
    }

    /// Close the connection (1000) and stop reconnecting: every call still
    /// waiting fails with [`ClientError::Closed`], and so does every later
    /// one.
    pub fn close(&self) {
        let writer = {
            let mut st = self.inner.lock();
            st.closed = true;
            st.writer.take()
        };
        if let Some(w) = writer {
            tokio::spawn(async move {
                let _ = w.close(ws_net::CloseCode::NORMAL, "").await;
            });
        }
        self.inner.wake.notify_one();
    }

    /// A clone whose calls go out before the offline queue: the reconnect
    /// hook's.
    fn priority(&self) -> Client {
        let raw = RawCalls {
            inner: self.inner.clone(),
            priority: true,
        };
        let mut service = BoxCloneSyncService::new(raw);
        for layer in self.layers.iter() {
            service = layer(service);
        }
        Client {
            inner: self.inner.clone(),
            service,
            layers: self.layers.clone(),
        }
    }
}

impl State {
    fn set_server_id(&mut self, local: u64, id: serde_json::Value) {
        let Some(entry) = self.subs.get_mut(&local) else {
            return;
        };
        if let Some(old) = entry.server_id.take() {
            self.by_server.remove(&old.to_string());
        }
        self.by_server.insert(id.to_string(), local);
        entry.server_id = Some(id);
        if std::mem::take(&mut entry.resubscribe) {
            // Before any item of the new subscription.
            let _ = entry.tx.try_send(streams::SubEvent::Resubscribed);
        }
    }
}

/// Parameters as JSON: `null` (from `()`) means none.
fn params_json<P: Serialize>(params: &P) -> Result<Option<Box<RawValue>>, ClientError> {
    let raw = wire::to_raw(params).map_err(|e| ClientError::Params(Arc::new(e)))?;
    Ok((raw.get() != "null").then_some(raw))
}

/// Unsubscribes when the subscription is dropped.
pub(crate) struct SubGuard {
    client: Client,
    local: Option<u64>,
}

impl SubGuard {
    /// Unsubscribe now, waiting for the answer.
    pub(crate) async fn unsubscribe(&mut self) -> Result<(), ClientError> {
        let Some(local) = self.local.take() else {
            return Ok(());
        };
        let entry = self.client.inner.lock().remove_sub(local);
        let Some(entry) = entry else {
            return Ok(());
        };
        if let Some(id) = entry.server_id {
            let _: serde_json::Value = self.client.request(&entry.unsubscribe, [id]).await?;
        }
        Ok(())
    }
}

impl Drop for SubGuard {
    fn drop(&mut self) {
        let Some(local) = self.local.take() else {
            return;
        };
        let entry = self.client.inner.lock().remove_sub(local);
        if let Some(SubEntry {
            unsubscribe,
            server_id: Some(id),
            ..
        }) = entry
        {
            let client = self.client.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _: Result<serde_json::Value, _> = client.request(&unsubscribe, [id]).await;
                });
            }
        }
    }
}

impl State {
    fn remove_sub(&mut self, local: u64) -> Option<SubEntry> {
        let entry = self.subs.remove(&local)?;
        if let Some(id) = &entry.server_id {
            self.by_server.remove(&id.to_string());
        }
        Some(entry)
    }
}

/// The innermost call service: encode, send or queue, wait for the answer.
#[derive(Clone)]
struct RawCalls {
    inner: Arc<Inner>,
    priority: bool,
}

impl Service<ClientRequest> for RawCalls {
    type Response = Box<RawValue>;
    type Error = ClientError;
    type Future = Pin<Box<dyn Future<Output = Result<Box<RawValue>, ClientError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), ClientError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ClientRequest) -> Self::Future {
        let inner = self.inner.clone();
        let priority = self.priority;
        Box::pin(async move { send_call(&inner, req, priority).await })
    }
}

/// Removes a call's entry if its future is dropped.
struct PendingGuard<'a> {
    inner: &'a Inner,
    id: Option<u64>,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let mut st = self.inner.lock();
            st.pending.remove(&id);
            if let Some(i) = st.queue.iter().position(|q| q.id == Some(id)) {
                if let Some(q) = st.queue.remove(i) {
                    st.queued_bytes -= q.text.len();
                }
            }
        }
    }
}

async fn send_call(
    inner: &Inner,
    req: ClientRequest,
    priority: bool,
) -> Result<Box<RawValue>, ClientError> {
    let (tx, rx) = oneshot::channel();
    let (id, writer, text) = {
        let mut st = inner.lock();
        if st.closed {
            return Err(ClientError::Closed);
        }
        let id = (!req.notification).then(|| st.next_id());
        let mut out = String::with_capacity(64 + req.params.as_ref().map_or(0, |p| p.get().len()));
        match id {
            Some(id) => wire::write_request(&mut out, id, &req.method, req.params.as_deref()),
            None => wire::write_notification(&mut out, &req.method, req.params.as_deref()),
        }
        let text = Utf8Bytes::from(out);
        let writer = if priority {
            st.priority_writer.clone().or_else(|| st.writer.clone())
        } else {
            st.writer.clone()
        };
        if writer.is_none() {
            if st.queue.len() >= inner.config.queue_items
                || st.queued_bytes + text.len() > inner.config.queue_bytes
            {
                return Err(ClientError::QueueFull);
            }
            st.queued_bytes += text.len();
            st.queue.push_back(Queued {
                id,
                text: text.clone(),
            });
        }
        if let Some(id) = id {
            st.pending.insert(
                id,
                Pending {
                    tx,
                    sent: writer.is_some(),
                    subscription: req.extensions.get::<SubscriptionFor>().map(|s| s.0),
                },
            );
        }
        (id, writer, text)
    };
    let guard = PendingGuard { inner, id };
    if let Some(w) = writer {
        if let Err(e) = w.send(Message::Text(text)).await {
            tracing::debug!(error = %e, "call not sent: the connection is over");
            if id.is_none() {
                return Err(ClientError::Disconnected);
            }
        }
    }
    let Some(_) = id else {
        // A notification has no answer.
        drop(guard);
        return Ok(RawValue::NULL.to_owned());
    };
    let outcome = ws_net::time::timeout(req.timeout, rx).await;
    let result = match outcome {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(ClientError::Closed),
        Err(_) => Err(ClientError::Timeout),
    };
    drop(guard);
    result
}
