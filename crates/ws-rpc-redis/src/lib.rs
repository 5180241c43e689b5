//! Rooms across server nodes, on Redis pub/sub: an implementation of
//! ws-rpc's [`Rooms`] registry, so that a broadcast on one node reaches
//! the room's members on every node (a chat, a trading feed or a dashboard
//! behind a load balancer).
//!
//! ```no_run
//! # async fn demo(router: ws_rpc::Router) -> Result<(), Box<dyn std::error::Error>> {
//! use ws_rpc::Server;
//! use ws_rpc_redis::{Options, RedisRooms};
//!
//! // Does not fail when Redis is down: it connects in the background.
//! let rooms = RedisRooms::connect("redis://127.0.0.1:6379/", Options::default()).await?;
//! let server = Server::builder().rooms(rooms.clone()).build(router);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9944").await?;
//! server.serve(listener).await?;
//! rooms.shutdown().await; // this node's member counts leave Redis at once
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! [`RedisRooms`] wraps a [`LocalRooms`], which holds this node's members.
//!
//! - **Join and leave** change the local registry. When a room gets its
//!   first member on this node, the node SUBSCRIBEs to the room's channel
//!   (`<prefix>room:<name>`, `ws-rpc:room:lobby` by default); when its last
//!   one leaves, it UNSUBSCRIBEs. The SUBSCRIBE takes a round trip to
//!   Redis: what other nodes publish in the room before it is confirmed
//!   does not reach the room's first member here (later members join a
//!   room already subscribed to).
//! - **A broadcast** is put in a bounded queue towards Redis and delivered
//!   to this node's members at once, encoded once (as with [`LocalRooms`],
//!   `except` honored); it never waits on Redis. One task takes the queue
//!   in order and PUBLISHes each message once to the room's channel, in
//!   pipelines of up to [`Options::batch`] on one connection. A broadcast
//!   to a room with no member here is published all the same.
//! - **A message from Redis** published by another node is encoded once on
//!   this node ([`LocalRooms::prepare`]) and delivered to the room's local
//!   members ([`LocalRooms::deliver`]). The node sees its own messages come
//!   back from Redis and skips them: its members already had them, so
//!   nothing is delivered twice.
//! - **Order.** One connection publishes, one connection receives, and
//!   Redis keeps the order of a connection's messages: a node's broadcasts
//!   (so one sender's) reach every node in the order they were made. Each
//!   message carries the node's sequence number, and a node drops (and
//!   logs) a message whose number is not above the last one it had from
//!   that node in that room: never a duplicate, never out of order.
//!
//! One Redis server (or a primary reached at one address) carries the
//! rooms of every node; Redis Cluster is not supported (the member counts
//! are plain keys).
//!
//! # Format on the channel
//!
//! A JSON object, format version 1:
//!
//! ```text
//! {"v":1,"node":"<node id>","seq":<n>,"room":"<room>","method":"<method>","params":<object or array>}
//! ```
//!
//! - `v`: the format version. A node drops (and logs) a message of another
//!   version: a rolling upgrade to a new format must publish both, or
//!   accept that old and new nodes do not hear each other.
//! - `node`: the publishing node's id, `<label>/<8 hex digits>`: the label
//!   ([`Options::node_id`], default `node-<pid>`) and a random part drawn at
//!   start, so a restarted node is a new node.
//! - `seq`: the node's message number, from 1, in the order published.
//! - `room`, `method`, `params`: the broadcast. The notification the
//!   members get is `{"jsonrpc":"2.0","method":M,"params":P}`.
//!
//! Unknown fields are ignored. Anything else on a room channel (not JSON,
//! missing fields, another version, `params` neither an object nor an
//! array, a method over 256 bytes, a `room` that is not the channel's,
//! over [`Options::max_message_bytes`]) is dropped and logged (`WARN`,
//! at most 10 lines per 10 s, then a count of those not logged), and
//! counted in [`Stats::malformed`]. Never a panic.
//!
//! # Cluster-wide counts
//!
//! [`Rooms::list`] gives every room with its members on all nodes. Each node
//! writes its own counts to a hash, `<prefix>counts:<node id>` (room ->
//! members), with a TTL ([`Options::counts_ttl`], 15 s), and lists its id in
//! the set `<prefix>nodes`. It rewrites them every
//! [`Options::counts_refresh`] (5 s), and within 200 ms of a change of its
//! rooms. A node that dies stops refreshing: its members vanish from every
//! list within the TTL. A node that stops with [`RedisRooms::shutdown`]
//! removes its counts at once. `list` reads the other nodes' hashes (one
//! round trip to Redis, at most [`Options::list_timeout`], 1 s) and adds
//! this node's own counts, always current; with Redis out of reach it
//! gives this node's rooms only.
//!
//! # Faults
//!
//! **Redis down or out of reach** (at start or later): local delivery goes
//! on as if Redis were not there. The node retries with exponential backoff
//! ([`Options::backoff_initial`] 100 ms, doubling, at most
//! [`Options::backoff_max`] 2 s, ±25% jitter) and logs it:
//!
//! - `WARN` when a connection is lost or cannot be made (once per outage;
//!   each further attempt at `DEBUG`, and a reminder every 30 s),
//! - `WARN` when it is back, with how long it was away and what was lost,
//! - then it SUBSCRIBEs again to every room that has members here, and
//!   rewrites its counts.
//!
//! *What is lost while Redis is down*: the messages for other nodes. A
//! broadcast made while this node cannot publish reaches this node's
//! members only; it is dropped for the other nodes (counted in
//! [`Stats::dropped_unavailable`]), not kept for later. Likewise a node
//! whose subscription connection is down misses what the others publish
//! meanwhile. Redis pub/sub keeps nothing for a subscriber that is not
//! there, and this crate does not replay: messages for other nodes are
//! delivered at most once. *Nothing is duplicated when it returns*: no
//! message is published twice (a pipeline that fails is not retried; it is
//! counted in [`Stats::failed`] and may or may not have reached the other
//! nodes), and the sequence numbers drop anything a node has already
//! delivered. Cross-node delivery resumes at most one backoff delay
//! (2 s, +25% jitter, by default) plus a connection's set-up after Redis
//! is back: in the tests, within 2.3 s of a restart. Member counts of
//! other nodes are missing from [`Rooms::list`] meanwhile.
//!
//! **Redis slow** (or stalled): a broadcast never waits on Redis. The queue
//! towards Redis is bounded ([`Options::queue_items`], 8192 messages, and
//! [`Options::queue_bytes`], 16 MiB); a broadcast that finds it full is
//! delivered locally and dropped for the other nodes, counted in
//! [`Stats::dropped_full`] and logged (at most one line per 5 s, with the
//! count). A pipeline with no answer within [`Options::response_timeout`]
//! (5 s) counts as a lost connection (above). An idle connection is
//! checked with a PING every [`Options::health_interval`] (5 s).
//!
//! # Options and defaults
//!
//! | Option | Default | What |
//! |---|---|---|
//! | [`node_id`](Options::node_id) | `node-<pid>` | label of this node's id (a random part is added) |
//! | [`prefix`](Options::prefix) | `ws-rpc:` | prefix of every channel and key |
//! | [`queue_items`](Options::queue_items), [`queue_bytes`](Options::queue_bytes) | 8192, 16 MiB | bound of the queue towards Redis |
//! | [`max_message_bytes`](Options::max_message_bytes) | 1 MiB | largest message published or accepted |
//! | [`batch`](Options::batch) | 256 | messages in one pipeline |
//! | [`backoff_initial`](Options::backoff_initial), [`backoff_max`](Options::backoff_max) | 100 ms, 2 s | reconnect delays (doubling, ±25% jitter) |
//! | [`connect_timeout`](Options::connect_timeout) | 2 s | one connection attempt |
//! | [`response_timeout`](Options::response_timeout) | 5 s | one pipeline or (un)subscribe; past it the connection is dropped |
//! | [`health_interval`](Options::health_interval) | 5 s | PING on an idle connection |
//! | [`counts_ttl`](Options::counts_ttl) | 15 s | life of a node's counts in Redis |
//! | [`counts_refresh`](Options::counts_refresh) | 5 s | how often a node rewrites them (at most a third of the TTL) |
//! | [`list_timeout`](Options::list_timeout) | 1 s | a cluster-wide [`Rooms::list`] |
//!
//! # Security
//!
//! Whoever can PUBLISH on the Redis server can send any notification to
//! the members of any room (the envelope is checked for shape, not for
//! origin), and whoever can read it sees every broadcast. Keep Redis on a
//! private network, with a password (`redis://:PASSWORD@host:6379/`, or
//! `redis://USER:PASSWORD@...` with ACLs); the password is never logged.
//! This build speaks plain TCP to Redis (no `rediss://`).

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod envelope;
mod tasks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch, Notify};
use ws_rpc::ws_net::ConnectionId;
use ws_rpc::{BoxFuture, Delivery, LocalRooms, Member, RoomInfo, Rooms};

/// Re-exported: the Redis client this crate uses (for its error type).
pub use redis;

/// The adapter's settings; the crate docs list the defaults in one table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// A label for this node's id (default `node-<pid>`); a random part is
    /// added, so that a restarted node is a new node.
    pub node_id: Option<String>,
    /// The prefix of every channel and key (default `ws-rpc:`): nodes share
    /// rooms when they use the same Redis and the same prefix.
    pub prefix: String,
    /// Messages waiting to be published (default 8192). A broadcast that
    /// finds the queue full is delivered locally only.
    pub queue_items: usize,
    /// Their bytes (default 16 MiB).
    pub queue_bytes: usize,
    /// The largest message published or accepted from Redis (default
    /// 1 MiB). A larger broadcast is delivered locally only.
    pub max_message_bytes: usize,
    /// Messages published in one pipeline (default 256).
    pub batch: usize,
    /// The first delay before reconnecting (default 100 ms); it doubles.
    pub backoff_initial: Duration,
    /// The longest delay between attempts (default 2 s).
    pub backoff_max: Duration,
    /// One connection attempt (default 2 s).
    pub connect_timeout: Duration,
    /// One pipeline, (un)subscribe or PING (default 5 s); past it the
    /// connection counts as lost.
    pub response_timeout: Duration,
    /// A PING on a connection idle this long (default 5 s).
    pub health_interval: Duration,
    /// How long a node's member counts live in Redis unless refreshed
    /// (default 15 s): a dead node's members vanish from the counts within
    /// it.
    pub counts_ttl: Duration,
    /// How often a node rewrites its counts (default 5 s; at most a third
    /// of `counts_ttl`), and within 200 ms of a change.
    pub counts_refresh: Duration,
    /// A cluster-wide [`Rooms::list`] (default 1 s); past it, this node's
    /// rooms only.
    pub list_timeout: Duration,
}

impl Options {
    /// The options as the node uses them: at least one item in the queue
    /// and per batch; timers of at least 10 ms (zero would spin, or panic,
    /// for an interval) and at most a year (tokio's timer arithmetic
    /// overflows on `Duration::MAX`); the refresh at most a third of the
    /// TTL.
    fn bounded(mut self) -> Self {
        self.queue_items = self.queue_items.max(1);
        self.batch = self.batch.max(1);
        let floor = Duration::from_millis(10);
        let ceiling = Duration::from_secs(365 * 86_400);
        self.counts_ttl = self.counts_ttl.clamp(floor * 3, ceiling);
        self.counts_refresh = self.counts_refresh.min(self.counts_ttl / 3).max(floor);
        self.health_interval = self.health_interval.clamp(floor, ceiling);
        self
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            node_id: None,
            prefix: "ws-rpc:".into(),
            queue_items: 8192,
            queue_bytes: 16 << 20,
            max_message_bytes: 1 << 20,
            batch: 256,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            health_interval: Duration::from_secs(5),
            counts_ttl: Duration::from_secs(15),
            counts_refresh: Duration::from_secs(5),
            list_timeout: Duration::from_secs(1),
        }
    }
}

/// What the adapter did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Broadcasts published to Redis.
    pub published: u64,
    /// Broadcasts not published because the queue towards Redis was full
    /// (Redis slow): delivered on this node only.
    pub dropped_full: u64,
    /// Broadcasts not published because Redis was out of reach: delivered
    /// on this node only.
    pub dropped_unavailable: u64,
    /// Broadcasts over [`Options::max_message_bytes`]: delivered on this
    /// node only.
    pub dropped_too_large: u64,
    /// Broadcasts in a pipeline that failed (not retried: they may or may
    /// not have reached the other nodes).
    pub failed: u64,
    /// Messages from other nodes delivered here.
    pub received: u64,
    /// This node's own messages seen on Redis and skipped.
    pub own: u64,
    /// Messages from Redis dropped as malformed, of an unknown version, or
    /// too large.
    pub malformed: u64,
    /// Messages from Redis dropped as already delivered (a sequence number
    /// not above the last one of their node and room).
    pub duplicates: u64,
    /// Connections made again after one was lost (publishing and
    /// subscribing each count).
    pub reconnects: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub published: AtomicU64,
    pub dropped_full: AtomicU64,
    pub dropped_unavailable: AtomicU64,
    pub dropped_too_large: AtomicU64,
    pub failed: AtomicU64,
    pub received: AtomicU64,
    pub own: AtomicU64,
    pub malformed: AtomicU64,
    pub duplicates: AtomicU64,
    pub reconnects: AtomicU64,
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Whether a connection is up, for [`RedisRooms::is_connected`] and for
/// `connect` to wait for the first attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    Connecting,
    Up,
    Down,
}

/// At most `burst` log lines per `window`; then one line with how many
/// were not logged.
pub(crate) struct Throttle {
    window: Duration,
    burst: u32,
    state: Mutex<(Option<Instant>, u32, u64)>,
}

impl Throttle {
    pub(crate) fn new(window: Duration, burst: u32) -> Self {
        Self {
            window,
            burst,
            state: Mutex::new((None, 0, 0)),
        }
    }

    /// `Some(n)` when a line may be logged now (`n` lines were suppressed
    /// since the last one), `None` when it is to be suppressed.
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let fresh = st.0.is_none_or(|t| now.duration_since(t) >= self.window);
        if fresh {
            let suppressed = st.2;
            *st = (Some(now), 1, 0);
            return Some(suppressed);
        }
        if st.1 < self.burst {
            st.1 += 1;
            Some(0)
        } else {
            st.2 += 1;
            None
        }
    }
}

/// A message waiting to be published: its channel and body (the header is
/// put in front when it is published).
pub(crate) struct Outgoing {
    pub channel: String,
    pub body: Vec<u8>,
}

pub(crate) struct Inner {
    pub local: LocalRooms,
    /// This node's id, and the same as a JSON string.
    pub node: Arc<str>,
    pub node_json: String,
    pub options: Options,
    pub client: redis::Client,
    /// Where Redis is, for the logs (no password).
    pub addr: String,
    /// `<prefix>room:`.
    pub room_prefix: String,
    /// Members here of each room that has some: the rooms to be
    /// subscribed to, and this node's counts.
    members: Mutex<HashMap<Arc<str>, usize>>,
    /// The rooms with members here changed: subscribe or unsubscribe.
    pub rooms_changed: Notify,
    /// The counts changed: write them soon.
    pub counts_changed: Notify,
    queue: mpsc::Sender<Outgoing>,
    pub queued_bytes: AtomicUsize,
    /// The publishing connection, shared with the counts and `list`.
    pub conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
    pub counters: Counters,
    pub publisher: watch::Sender<Link>,
    pub subscriber: watch::Sender<Link>,
    full_log: Throttle,
    pub bad_log: Throttle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    pub(crate) fn members(&self) -> MutexGuard<'_, HashMap<Arc<str>, usize>> {
        lock(&self.members)
    }

    /// The publishing connection, if it is up.
    pub(crate) fn conn(&self) -> Option<redis::aio::MultiplexedConnection> {
        lock(&self.conn).clone()
    }

    pub(crate) fn set_conn(&self, conn: Option<redis::aio::MultiplexedConnection>) {
        *lock(&self.conn) = conn;
    }

    /// `<prefix>counts:<node>`.
    pub(crate) fn counts_key(&self, node: &str) -> String {
        format!("{}counts:{node}", self.options.prefix)
    }

    /// `<prefix>nodes`.
    pub(crate) fn nodes_key(&self) -> String {
        format!("{}nodes", self.options.prefix)
    }

    /// One member more in `room` here.
    fn joined(members: &mut HashMap<Arc<str>, usize>, room: &str) -> bool {
        match members.get_mut(room) {
            Some(n) => {
                *n += 1;
                false
            }
            None => {
                members.insert(room.into(), 1);
                true
            }
        }
    }

    /// One member less in `room` here; whether the room has none left.
    fn left(members: &mut HashMap<Arc<str>, usize>, room: &str) -> bool {
        match members.get_mut(room) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                members.remove(room);
                true
            }
            None => false,
        }
    }

    /// Count `room`'s members here again (some left by lagging behind,
    /// inside the local registry).
    pub(crate) fn recount(&self, room: &str) {
        let mut members = self.members();
        let n = self.local.local_members(room).len();
        let before = members.get(room).copied().unwrap_or(0);
        if n == before {
            return;
        }
        if n == 0 {
            members.remove(room);
            self.rooms_changed.notify_one();
        } else {
            members.insert(room.into(), n);
        }
        self.counts_changed.notify_one();
    }

    /// Queue `method(params)` for the other nodes; never waits.
    fn publish(&self, room: &str, method: &str, params: &RawValue) {
        let body = envelope::body(room, method, params);
        let size = envelope::header_len(&self.node_json) + body.len();
        if size > self.options.max_message_bytes {
            add(&self.counters.dropped_too_large, 1);
            if let Some(suppressed) = self.bad_log.allow() {
                tracing::warn!(
                    room,
                    bytes = size,
                    max = self.options.max_message_bytes,
                    suppressed,
                    "redis: broadcast too large for Redis: delivered on this node only"
                );
            }
            return;
        }
        let before = self.queued_bytes.fetch_add(body.len(), Ordering::AcqRel);
        if before + body.len() > self.options.queue_bytes {
            self.queued_bytes.fetch_sub(body.len(), Ordering::AcqRel);
            self.dropped_full(room);
            return;
        }
        let len = body.len();
        let channel = format!("{}{room}", self.room_prefix);
        match self.queue.try_send(Outgoing { channel, body }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                self.dropped_full(room);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                add(&self.counters.dropped_unavailable, 1);
            }
        }
    }

    fn dropped_full(&self, room: &str) {
        add(&self.counters.dropped_full, 1);
        if self.full_log.allow().is_some() {
            tracing::warn!(
                room,
                dropped_full = self.counters.dropped_full.load(Ordering::Relaxed),
                queue_items = self.options.queue_items,
                "redis: the queue towards Redis is full (Redis slow or stalled): \
                 broadcasts are delivered on this node only"
            );
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            published: l(&c.published),
            dropped_full: l(&c.dropped_full),
            dropped_unavailable: l(&c.dropped_unavailable),
            dropped_too_large: l(&c.dropped_too_large),
            failed: l(&c.failed),
            received: l(&c.received),
            own: l(&c.own),
            malformed: l(&c.malformed),
            duplicates: l(&c.duplicates),
            reconnects: l(&c.reconnects),
        }
    }
}

/// A [`Rooms`] registry shared by every node on one Redis: see the crate
/// docs. Made by [`RedisRooms::connect`]; its tasks stop when it is
/// dropped or [shut down](RedisRooms::shutdown).
pub struct RedisRooms {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRooms")
            .field("node", &self.inner.node)
            .field("redis", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl RedisRooms {
    /// A registry on the Redis at `url` (`redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`).
    ///
    /// Fails only on a URL it cannot read. Redis need not be up: the
    /// adapter waits for its first attempts (at most
    /// [`Options::connect_timeout`]), then goes on connecting in the
    /// background while the rooms work on this node.
    pub async fn connect(url: &str, options: Options) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let addr = client.get_connection_info().addr().to_string();
        let label = options
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{}", std::process::id()));
        let node: Arc<str> = format!("{label}/{:08x}", rand::random::<u32>()).into();
        let node_json = serde_json::to_string(&*node).expect("a string serializes");
        let options = options.bounded();
        let (queue, rx) = mpsc::channel(options.queue_items);
        let room_prefix = format!("{}room:", options.prefix);
        let inner = Arc::new(Inner {
            local: LocalRooms::new(),
            node,
            node_json,
            client,
            addr,
            room_prefix,
            members: Mutex::new(HashMap::new()),
            rooms_changed: Notify::new(),
            counts_changed: Notify::new(),
            queue,
            queued_bytes: AtomicUsize::new(0),
            conn: Mutex::new(None),
            counters: Counters::default(),
            publisher: watch::channel(Link::Connecting).0,
            subscriber: watch::channel(Link::Connecting).0,
            full_log: Throttle::new(Duration::from_secs(5), 1),
            bad_log: Throttle::new(Duration::from_secs(10), 10),
            options,
        });
        let (stop, _) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(tasks::publisher(inner.clone(), rx, stop.subscribe())),
            tokio::spawn(tasks::subscriber(inner.clone(), stop.subscribe())),
            tokio::spawn(tasks::counts(inner.clone(), stop.subscribe())),
        ];
        let this = Arc::new(Self {
            inner,
            stop,
            tasks: Mutex::new(tasks),
        });
        // The first attempts, so that a node that starts with Redis up is
        // connected when it starts serving.
        let mut p = this.inner.publisher.subscribe();
        let mut s = this.inner.subscriber.subscribe();
        let first = async {
            let _ = p.wait_for(|l| *l != Link::Connecting).await;
            let _ = s.wait_for(|l| *l != Link::Connecting).await;
        };
        let bound = this.inner.options.connect_timeout + Duration::from_millis(500);
        let _ = tokio::time::timeout(bound, first).await;
        Ok(this)
    }

    /// This node's id on the channels and in the counts.
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    /// Where Redis is (host and port, no password).
    pub fn redis_addr(&self) -> &str {
        &self.inner.addr
    }

    /// Whether both connections to Redis (publishing and subscribed) are
    /// up.
    pub fn is_connected(&self) -> bool {
        *self.inner.publisher.borrow() == Link::Up && *self.inner.subscriber.borrow() == Link::Up
    }

    /// Wait (at most `bound`) until both connections are up; whether they
    /// are.
    pub async fn wait_connected(&self, bound: Duration) -> bool {
        let mut p = self.inner.publisher.subscribe();
        let mut s = self.inner.subscriber.subscribe();
        let both = async {
            let _ = p.wait_for(|l| *l == Link::Up).await;
            let _ = s.wait_for(|l| *l == Link::Up).await;
        };
        let _ = tokio::time::timeout(bound, both).await;
        self.is_connected()
    }

    /// What the adapter did so far.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// This node's registry (its members only).
    pub fn local(&self) -> &LocalRooms {
        &self.inner.local
    }

    /// Stop: remove this node's counts from Redis (at most
    /// [`Options::list_timeout`]), close the connections. Broadcasts after
    /// it are delivered on this node only.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> = lock(&self.tasks).drain(..).collect();
        let bound = self.inner.options.list_timeout + Duration::from_millis(500);
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(bound, t).await.is_err() {
                abort.abort();
            }
        }
        self.inner.set_conn(None);
    }
}

impl Drop for RedisRooms {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Rooms for RedisRooms {
    fn join(&self, room: &str, member: Member) {
        let id = member.id();
        let mut members = self.inner.members();
        let had = self.inner.local.rooms_of(id).iter().any(|r| r == room);
        self.inner.local.join(room, member);
        if !had {
            if Inner::joined(&mut members, room) {
                self.inner.rooms_changed.notify_one();
            }
            self.inner.counts_changed.notify_one();
        }
    }

    fn leave(&self, room: &str, id: ConnectionId) -> bool {
        let mut members = self.inner.members();
        if !self.inner.local.leave(room, id) {
            return false;
        }
        if Inner::left(&mut members, room) {
            self.inner.rooms_changed.notify_one();
        }
        self.inner.counts_changed.notify_one();
        true
    }

    fn leave_all(&self, id: ConnectionId) {
        let mut members = self.inner.members();
        let rooms = self.inner.local.rooms_of(id);
        if rooms.is_empty() {
            return;
        }
        self.inner.local.leave_all(id);
        let mut emptied = false;
        for room in &rooms {
            emptied |= Inner::left(&mut members, room);
        }
        if emptied {
            self.inner.rooms_changed.notify_one();
        }
        self.inner.counts_changed.notify_one();
    }

    fn broadcast(
        &self,
        room: &str,
        method: &str,
        params: &RawValue,
        except: Option<ConnectionId>,
    ) -> Delivery {
        // Queued first: the other nodes need not wait for this node's
        // members.
        self.inner.publish(room, method, params);
        let delivery = self.inner.local.broadcast(room, method, params, except);
        if delivery.lagged > 0 {
            self.inner.recount(room);
        }
        delivery
    }

    fn rooms_of(&self, id: ConnectionId) -> Vec<String> {
        self.inner.local.rooms_of(id)
    }

    fn local_members(&self, room: &str) -> Vec<ConnectionId> {
        self.inner.local.local_members(room)
    }

    fn list(&self) -> BoxFuture<'_, Vec<RoomInfo>> {
        Box::pin(tasks::list(self.inner.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_at_the_extremes_are_bounded() {
        let b = Options {
            queue_items: 0,
            batch: 0,
            counts_ttl: Duration::MAX,
            counts_refresh: Duration::MAX,
            health_interval: Duration::MAX,
            ..Options::default()
        }
        .bounded();
        let year = Duration::from_secs(365 * 86_400);
        assert_eq!((b.queue_items, b.batch), (1, 1));
        assert_eq!(b.counts_ttl, year);
        assert_eq!(b.counts_refresh, year / 3);
        assert_eq!(b.health_interval, year);
        let b = Options {
            counts_ttl: Duration::ZERO,
            counts_refresh: Duration::ZERO,
            health_interval: Duration::ZERO,
            ..Options::default()
        }
        .bounded();
        assert_eq!(b.counts_ttl, Duration::from_millis(30));
        assert_eq!(b.counts_refresh, Duration::from_millis(10));
        assert_eq!(b.health_interval, Duration::from_millis(10));
        // The defaults are kept.
        let d = Options::default();
        let b = d.clone().bounded();
        assert_eq!(
            (b.counts_ttl, b.counts_refresh, b.health_interval),
            (d.counts_ttl, d.counts_refresh, d.health_interval)
        );
    }
}
