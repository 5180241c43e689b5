//! One connection's task: read messages, turn them into calls through the
//! service, write the answers, move the outbox, enforce the login and the
//! limits.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tower::{BoxError, Service, ServiceExt};
use ws_net::{CloseCode, Message, Utf8Bytes, WebSocket};

use super::call::{Params, Request, Response};
use super::context::{Context, ContextInner, Identity};
use super::outbox::Outbox;
use super::Shared;
use crate::error::{code, RpcError};
use crate::wire::{self, Call, Id, Incoming};

/// The reserved heartbeat method (§8 reserves the `rpc.` prefix).
pub(crate) const PING: &str = "rpc.ping";

/// What a finished call (or batch) leaves to do.
pub(crate) struct Done {
    /// The answer to write, if any (notifications have none).
    pub(crate) text: Option<String>,
    /// Run once the answer is queued.
    after: Vec<After>,
    /// Calls it counted in flight.
    calls: usize,
    /// The login it ran, if it ran one: the identity when it succeeded.
    login: Option<Option<Identity>>,
}

/// What runs once a call's answer is queued.
type After = Box<dyn FnOnce() + Send>;

pub(crate) type DoneFuture = Pin<Box<dyn Future<Output = Done> + Send>>;

/// Serve one upgraded connection until it ends.
pub(crate) async fn run<S>(
    ws: WebSocket,
    request: http::Request<()>,
    identity: Option<Identity>,
    shared: Arc<Shared>,
    service: S,
    guard: super::ConnectionGuard,
) where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let config = shared.config.clone();
    let id = ws.id();
    let peer_addr = ws.peer_addr();
    let (mut reader, writer) = ws.split();
    let outbox = Arc::new(Outbox::new(
        writer.clone(),
        config.queue_items,
        config.queue_bytes,
    ));
    let logged_in = identity.is_some() || shared.login.is_none();
    let cx = context(&outbox, id, peer_addr, request, identity, &shared);
    let mut conn = Connection::new(cx.clone(), shared.clone(), service, logged_in);
    let mut in_flight: FuturesUnordered<DoneFuture> = FuturesUnordered::new();
    let drain = outbox.run();
    tokio::pin!(drain);
    // Boxed, and only with a login to wait for: every connection's task
    // would carry its room otherwise.
    let mut login_deadline: Option<Pin<Box<dyn Future<Output = ()> + Send>>> =
        (!logged_in).then(|| Box::pin(ws_net::time::sleep(config.login_timeout)) as _);
    let mut shutdown = shared.shutdown.subscribe();
    let mut closing = false;
    let mut eager = Eager::new(config.max_in_flight);
    loop {
        // One place awaits the answer's send: the task's future keeps one
        // such state, not one per branch.
        let turn = tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => Turn::Done(done),
            msg = reader.recv(), if conn.calls < config.max_in_flight => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => Ok(t),
                    Some(Ok(Message::Binary(b))) => Utf8Bytes::try_from(b),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        tracing::debug!(connection = %id, error = %e, "connection failed");
                        break;
                    }
                    None => break,
                };
                if closing {
                    continue;
                }
                let fut = match text {
                    Ok(text) => conn.handle(text),
                    // Not UTF-8, so not JSON (RFC 8259 §8.1).
                    Err(_) => Some(parse_error()),
                };
                let Some(mut fut) = fut else {
                    continue;
                };
                // Most calls are ready at once: answer them here, without
                // the set of calls in flight (a task allocation and two more
                // polls each). A call that waits joins the set, which polls
                // it again with the task's waker.
                match (&mut fut).now_or_never() {
                    Some(done) => Turn::Done(done),
                    None => {
                        in_flight.push(fut);
                        continue;
                    }
                }
            }
            _ = &mut drain => {
                // The outbox ends only with the connection.
                break;
            }
            _ = until(&mut login_deadline), if !conn.logged_in && !closing => {
                tracing::debug!(connection = %id, "no login in time: closing with 1008");
                Turn::Close(CloseCode::POLICY_VIOLATION, "login timeout")
            }
            _ = shutdown.changed(), if !closing => {
                Turn::Close(CloseCode::GOING_AWAY, "server shutting down")
            }
        };
        match turn {
            Turn::Done(done) => {
                let (text, after) = conn.settle(done);
                if let Some(text) = text {
                    if writer
                        .send(Message::Text(Utf8Bytes::from(text)))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    if eager.now() {
                        // Cannot wait: what the socket does not take now,
                        // the connection's driver writes.
                        let _ = writer.flush().now_or_never();
                    }
                }
                for after in after {
                    after();
                }
            }
            Turn::Close(code, reason) => {
                closing = true;
                let _ = writer.close(code, reason).await;
            }
        }
    }
    if let Some(hook) = &shared.on_close {
        hook(&cx);
    }
    cx.close();
    drop(conn);
    drop(reader);
    writer.closed().await;
    drop(guard);
}

/// When an answer is written at once, rather than with the answers to the
/// other requests read with it (ws-net writes once per read).
///
/// A write per answer costs a system call each. That is free when the
/// runtime has had nothing else to do (its thread parked since an answer
/// was last written on it), and it lets a client that pipelines calls read
/// answers and send new calls while the server still answers, instead of
/// the two taking turns and waking each other. While the thread stays
/// busy, one write per read keeps the system calls down. After a park, only
/// the first connection to answer on the thread writes its answers one by
/// one, up to a window of calls in flight, so that a burst of wake-ups
/// after an idle spell does not make every connection pay.
///
/// On a current-thread runtime only: on a multi-thread one, telling
/// whether some worker parked means reading every worker's counters (one
/// cache miss each, on every answer), and it is unmeasured.
struct Eager {
    metrics: Option<tokio::runtime::RuntimeMetrics>,
    window: usize,
    /// Answers left to write one by one.
    left: usize,
}

thread_local! {
    /// The runtime's park count when an answer was last written on this
    /// thread.
    static PARKS_SEEN: Cell<u64> = const { Cell::new(0) };
}

impl Eager {
    fn new(window: usize) -> Self {
        let metrics = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
            .map(|h| h.metrics());
        Self {
            metrics,
            window,
            left: 0,
        }
    }

    /// Whether to write the answer just queued at once.
    fn now(&mut self) -> bool {
        match self.parks() {
            Some(parks) => PARKS_SEEN.with(|seen| self.observe(parks, seen)),
            None => false,
        }
    }

    /// The decision, given the runtime's park count and the one last seen
    /// on this thread.
    fn observe(&mut self, parks: u64, seen: &Cell<u64>) -> bool {
        if seen.replace(parks) != parks {
            self.left = self.window;
        }
        let eager = self.left > 0;
        self.left = self.left.saturating_sub(1);
        eager
    }

    #[cfg(target_has_atomic = "64")]
    fn parks(&self) -> Option<u64> {
        self.metrics.as_ref().map(|m| m.worker_park_count(0))
    }

    #[cfg(not(target_has_atomic = "64"))]
    fn parks(&self) -> Option<u64> {
        None
    }
}

/// What a turn of a connection's loop leaves to do.
enum Turn {
    /// A call (or batch) finished.
    Done(Done),
    /// Start the closing handshake.
    Close(CloseCode, &'static str),
}

/// The boxed deadline, if there is one; else never.
async fn until(deadline: &mut Option<Pin<Box<dyn Future<Output = ()> + Send>>>) {
    match deadline {
        Some(d) => d.await,
        None => std::future::pending().await,
    }
}

/// A connection's context.
pub(crate) fn context(
    outbox: &Arc<Outbox>,
    id: ws_net::ConnectionId,
    peer_addr: Option<std::net::SocketAddr>,
    request: http::Request<()>,
    identity: Option<Identity>,
    shared: &Arc<Shared>,
) -> Context {
    Context {
        inner: Arc::new(ContextInner {
            id,
            peer_addr,
            request,
            identity: Mutex::new(identity),
            outbox: outbox.clone(),
            config: shared.config.clone(),
            rooms: shared.rooms.clone(),
            subscriptions: Mutex::new(HashMap::new()),
            extensions: Mutex::new(http::Extensions::new()),
        }),
    }
}

/// A connection's calls: what its task runs them with.
pub(crate) struct Connection<S> {
    cx: Context,
    shared: Arc<Shared>,
    service: S,
    logged_in: bool,
    login_pending: bool,
    /// Calls in flight (a batch counts each of its calls).
    calls: usize,
}

impl<S> Connection<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    pub(crate) fn new(cx: Context, shared: Arc<Shared>, service: S, logged_in: bool) -> Self {
        Self {
            cx,
            shared,
            service,
            logged_in,
            login_pending: false,
            calls: 0,
        }
    }

    /// A call (or batch) is done: count it and record its login. Returns
    /// the answer to write and what to run once it is queued.
    fn settle(&mut self, done: Done) -> (Option<String>, Vec<After>) {
        self.calls -= done.calls;
        if let Some(outcome) = done.login {
            self.login_pending = false;
            if let Some(identity) = outcome {
                self.cx.set_identity(identity);
                self.logged_in = true;
            }
        }
        (done.text, done.after)
    }

    /// One message: a call, a batch, or something to refuse. Returns the
    /// future of its answer, or `None` when nothing is to be done.
    pub(crate) fn handle(&mut self, text: Utf8Bytes) -> Option<DoneFuture> {
        match wire::parse_incoming(text.as_str()) {
            Incoming::ParseError => Some(parse_error()),
            Incoming::EmptyBatch => Some(answer(wire::error_text(
                &Id::null(),
                &RpcError::invalid_request(),
            ))),
            Incoming::Single(Err(id)) => {
                Some(answer(wire::error_text(&id, &RpcError::invalid_request())))
            }
            Incoming::Single(Ok(call)) => {
                self.calls += 1;
                Some(self.call(&text, call))
            }
            Incoming::Batch(items) if items.len() > self.shared.config.max_batch => {
                let e = RpcError::new(code::BATCH_TOO_LARGE, "Batch too large")
                    .with_data(&serde_json::json!({ "max": self.shared.config.max_batch }));
                Some(answer(wire::error_text(&Id::null(), &e)))
            }
            Incoming::Batch(items) => {
                let n = items.len();
                self.calls += n;
                let futures: Vec<DoneFuture> = items
                    .into_iter()
                    .map(|item| match item {
                        Ok(call) => self.call(&text, call),
                        Err(id) => answer(wire::error_text(&id, &RpcError::invalid_request())),
                    })
                    .collect();
                Some(Box::pin(async move {
                    let dones = futures_util::future::join_all(futures).await;
                    let mut text = String::new();
                    let mut after = Vec::new();
                    // At most one login: a second one is refused while the
                    // first is pending.
                    let mut login = None;
                    for done in dones {
                        login = login.or(done.login);
                        if let Some(t) = done.text {
                            text.push(if text.is_empty() { '[' } else { ',' });
                            text.push_str(&t);
                        }
                        after.extend(done.after);
                    }
                    // §6: a batch of notifications gets no answer at all.
                    let text = (!text.is_empty()).then(|| {
                        text.push(']');
                        text
                    });
                    Done {
                        text,
                        after,
                        calls: n,
                        login,
                    }
                }))
            }
        }
    }

    /// One call: the heartbeat and the login here, everything else through
    /// the service.
    fn call(&mut self, text: &Utf8Bytes, call: Call<'_>) -> DoneFuture {
        let Call { method, params, id } = call;
        if method == PING {
            return counted(id.map(|id| Response::answer("pong", Some(id.clone())).into_text(&id)));
        }
        let params = Params::new(params.map(|p| wire::subslice(text, p.get())));
        if let Some(login) = self.shared.login.clone() {
            if method == *login.method {
                if self.logged_in || self.login_pending {
                    let e = RpcError::new(code::INVALID_REQUEST, "Already logged in");
                    return counted(id.map(|id| wire::error_text(&id, &e)));
                }
                self.login_pending = true;
                let fut = (login.handler)(params, self.cx.clone());
                return Box::pin(async move {
                    let outcome = fut.await;
                    let text = id.map(|id| match &outcome {
                        Ok(who) => {
                            let subject = serde_json::json!({ "subject": who.subject() });
                            Response::answer(&subject, Some(id.clone())).into_text(&id)
                        }
                        Err(e) => wire::error_text(&id, e),
                    });
                    Done {
                        text,
                        after: Vec::new(),
                        calls: 1,
                        login: Some(outcome.ok()),
                    }
                });
            }
            if !self.logged_in {
                let e = RpcError::new(code::LOGIN_REQUIRED, "Login required")
                    .with_data(&serde_json::json!({ "method": &*login.method }));
                return counted(id.map(|id| wire::error_text(&id, &e)));
            }
        }
        let method = match method {
            Cow::Borrowed(m) => wire::subslice(text, m),
            Cow::Owned(m) => Utf8Bytes::from(m),
        };
        let request = Request {
            method,
            params,
            id: id.clone(),
            cx: self.cx.clone(),
            extensions: http::Extensions::new(),
        };
        let fut = self.service.clone().oneshot(request);
        Box::pin(async move {
            let mut response = match fut.await {
                Ok(r) => r,
                Err(e) => Response::error(service_error(e.into())),
            };
            // A notification's answer is dropped (§4.1), and so is what it
            // would have started.
            let (text, after) = match id {
                Some(id) => {
                    let after = response.after.take().into_iter().collect();
                    (Some(response.into_text(&id)), after)
                }
                None => (None, Vec::new()),
            };
            Done {
                text,
                after,
                calls: 1,
                login: None,
            }
        })
    }
}

/// An answer that needs no work.
fn answer(text: String) -> DoneFuture {
    Box::pin(std::future::ready(Done {
        text: Some(text),
        after: Vec::new(),
        calls: 0,
        login: None,
    }))
}

/// The answer to a message that is not JSON (§5.1: -32700, id null).
pub(crate) fn parse_error() -> DoneFuture {
    answer(wire::error_text(&Id::null(), &RpcError::parse_error()))
}

/// A call answered at once (counted in flight like any call).
fn counted(text: Option<String>) -> DoneFuture {
    Box::pin(std::future::ready(Done {
        text,
        after: Vec::new(),
        calls: 1,
        login: None,
    }))
}

/// The error object for a service's error: its own if it is one, -32000 for
/// a timeout layer's, -32002 for a load-shedding layer's, else -32603.
pub(crate) fn service_error(e: BoxError) -> RpcError {
    if let Some(rpc) = e.downcast_ref::<RpcError>() {
        return rpc.clone();
    }
    if e.is::<tower::timeout::error::Elapsed>() {
        return RpcError::new(code::TIMED_OUT, "Request timed out");
    }
    if e.is::<tower::load_shed::error::Overloaded>() {
        return RpcError::new(code::REFUSED, "Server overloaded, try again later");
    }
    tracing::warn!(error = %e, "service failed");
    RpcError::internal_error()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Router, Server};

    /// Every connection holds one of these futures for its whole life.
    #[tokio::test]
    async fn the_connection_future_is_small() {
        let server = Server::builder().build(Router::new());
        let (io, _other) = tokio::io::duplex(64);
        let ws = WebSocket::from_raw(io, ws_net::Role::Server, Default::default());
        let guard = crate::server::ConnectionGuard::new(server.shared().clone());
        let fut = run(
            ws,
            http::Request::new(()),
            None,
            server.shared().clone(),
            Router::new(),
            guard,
        );
        let size = std::mem::size_of_val(&fut);
        let serve = server.serve_websocket(
            WebSocket::from_raw(
                tokio::io::duplex(64).0,
                ws_net::Role::Server,
                Default::default(),
            ),
            http::Request::new(()),
            None,
        );
        eprintln!(
            "connection future {size} bytes, serve_websocket {} bytes",
            std::mem::size_of_val(&serve)
        );
        assert!(size <= 4096, "{size}");
    }

    #[test]
    fn after_a_park_the_first_connection_to_answer_writes_a_window_of_answers_at_once() {
        let seen = Cell::new(0);
        let mut first = Eager {
            metrics: None,
            window: 3,
            left: 0,
        };
        let mut other = Eager {
            metrics: None,
            window: 3,
            left: 0,
        };
        // The thread parked (count 1): the first connection to answer
        // writes its next three answers at once; another connection that
        // answers after it sees no new park and coalesces.
        assert!(first.observe(1, &seen));
        assert!(!other.observe(1, &seen));
        assert!(first.observe(1, &seen));
        assert!(first.observe(1, &seen));
        assert!(!first.observe(1, &seen), "past the window");
        // A new park opens a new window, for whoever answers first.
        assert!(other.observe(2, &seen));
        assert!(!first.observe(2, &seen));
        assert!(other.observe(2, &seen));
    }

    /// The policy above reads tokio's park count: it must move when a
    /// current-thread runtime runs out of work, and only then.
    #[test]
    fn a_current_thread_runtime_counts_its_parks() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut eager = Eager::new(4);
            let before = eager
                .parks()
                .expect("a current-thread runtime has park counts");
            // Busy: ready futures, no park.
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            let busy = eager.parks().expect("counts");
            // Idle: the thread parks while it waits for the timer.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let idle = eager.parks().expect("counts");
            assert!(idle > busy, "parked while sleeping: {busy} -> {idle}");
            assert!(
                busy - before <= 1,
                "yielding is not idling: {before} -> {busy}"
            );
            assert!(eager.now(), "first answer after the park");
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut eager = Eager::new(4);
            assert!(eager.parks().is_none());
            assert!(!eager.now(), "never at once on a multi-thread runtime");
        });
    }
}
