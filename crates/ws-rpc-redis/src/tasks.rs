//! The adapter's tasks: one publishes the queue, one holds the
//! subscriptions and delivers what other nodes publish, one writes this
//! node's member counts. Each reconnects on its own, with backoff.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};
use redis::{AsyncConnectionConfig, Msg, RedisError};
use tokio::sync::{mpsc, watch};
use ws_rpc::{LocalRooms, RoomInfo};

use crate::envelope::{self, DecodeError};
use crate::{add, Inner, Link, Outgoing};

/// How often a still-failing reconnect is logged at WARN again.
const REMIND: Duration = Duration::from_secs(30);
/// Counts are written at most this soon after a change.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Channels per SUBSCRIBE or UNSUBSCRIBE command.
const CHANNELS_PER_COMMAND: usize = 512;
/// A node not heard from for this long is forgotten by the duplicate
/// check.
const FORGET_NODE: Duration = Duration::from_secs(600);

/// Exponential backoff with jitter.
struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    fn new(inner: &Inner) -> Self {
        let initial = inner.options.backoff_initial.max(Duration::from_millis(1));
        Self {
            next: initial,
            initial,
            max: inner.options.backoff_max.max(initial),
        }
    }

    /// The next delay: doubling up to `max`, ±25 %. Any `max` (up to
    /// `Duration::MAX`) gives a delay, never an overflow.
    fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = d.saturating_mul(2).min(self.max);
        Duration::try_from_secs_f64(d.as_secs_f64() * rand::random_range(0.75..=1.25)).unwrap_or(d)
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// A connection's outage, for the logs: since when, attempts made.
struct Outage {
    since: Instant,
    attempts: u64,
    reminded: Instant,
}

impl Outage {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            since: now,
            attempts: 0,
            reminded: now,
        }
    }

    /// A failed attempt: logged at DEBUG, and at WARN every [`REMIND`].
    fn failed(&mut self, inner: &Inner, what: &str, e: &dyn std::fmt::Display) {
        self.attempts += 1;
        if self.reminded.elapsed() >= REMIND {
            self.reminded = Instant::now();
            tracing::warn!(
                redis = %inner.addr,
                node = %inner.node,
                attempts = self.attempts,
                down_for = ?self.since.elapsed(),
                error = %e,
                "redis: still out of reach ({what}); retrying"
            );
        } else {
            tracing::debug!(redis = %inner.addr, attempts = self.attempts, error = %e, "redis: {what}: attempt failed");
        }
    }
}

fn connection_config(inner: &Inner) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(inner.options.connect_timeout))
        .set_response_timeout(Some(inner.options.response_timeout))
}

fn timeout_error() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no answer in time",
    ))
}

/// Sleep `d`, unless stopped first (then `false`). Messages queued
/// meanwhile are dropped (counted), when `queue` is given: they were for
/// other nodes, which cannot be reached.
async fn pause(
    inner: &Inner,
    d: Duration,
    stop: &mut watch::Receiver<bool>,
    mut queue: Option<&mut mpsc::Receiver<Outgoing>>,
) -> bool {
    let sleep = tokio::time::sleep(d);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return true,
            _ = stop.changed() => return false,
            item = async {
                match queue.as_deref_mut() {
                    Some(q) => q.recv().await,
                    None => std::future::pending().await,
                }
            } => match item {
                Some(o) => {
                    inner.queued_bytes.fetch_sub(o.body.len(), Ordering::AcqRel);
                    add(&inner.counters.dropped_unavailable, 1);
                }
                None => return false,
            },
        }
    }
}

/// Publish the queue, in order, on one connection.
pub(crate) async fn publisher(
    inner: Arc<Inner>,
    mut queue: mpsc::Receiver<Outgoing>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(&inner);
    let mut outage: Option<Outage> = None;
    let mut dropped_before = 0u64;
    let mut connected_before = false;
    let mut seq = 0u64;
    let config = connection_config(&inner);
    let mut batch: Vec<Outgoing> = Vec::with_capacity(inner.options.batch);
    loop {
        if *stop.borrow() {
            return;
        }
        let attempt = tokio::select! {
            _ = stop.changed() => return,
            r = inner.client.get_multiplexed_async_connection_with_config(&config) => r,
        };
        let mut conn = match attempt {
            Ok(c) => c,
            Err(e) => {
                match &mut outage {
                    Some(o) => o.failed(&inner, "publishing", &e),
                    None => {
                        tracing::warn!(
                            redis = %inner.addr,
                            node = %inner.node,
                            error = %e,
                            "redis: cannot connect to publish; broadcasts reach this node's \
                             members only until Redis is back (retrying with backoff)"
                        );
                        dropped_before = inner.counters.dropped_unavailable.load(Ordering::Relaxed);
                        outage = Some(Outage::new());
                    }
                }
                inner.publisher.send_replace(Link::Down);
                if !pause(&inner, backoff.delay(), &mut stop, Some(&mut queue)).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        inner.set_conn(Some(conn.clone()));
        inner.publisher.send_replace(Link::Up);
        inner.counts_changed.notify_one();
        match outage.take() {
            Some(o) => {
                if connected_before {
                    add(&inner.counters.reconnects, 1);
                }
                let dropped =
                    inner.counters.dropped_unavailable.load(Ordering::Relaxed) - dropped_before;
                let how = if connected_before {
                    "publishing again"
                } else {
                    "publishing, Redis reachable at last"
                };
                tracing::warn!(
                    redis = %inner.addr,
                    node = %inner.node,
                    down_for = ?o.since.elapsed(),
                    dropped,
                    "redis: {how}; {dropped} broadcasts were delivered on this node only while \
                     Redis was out of reach"
                );
            }
            None => tracing::info!(redis = %inner.addr, node = %inner.node, "redis: publishing"),
        }
        connected_before = true;
        // Publish until the connection fails.
        let failure = loop {
            batch.clear();
            let first = tokio::select! {
                _ = stop.changed() => return,
                item = queue.recv() => item,
                _ = tokio::time::sleep(inner.options.health_interval) => {
                    // Idle: is the connection still there?
                    let ping = redis::cmd("PING");
                    let ping = ping.query_async::<redis::Value>(&mut conn);
                    match tokio::time::timeout(inner.options.response_timeout, ping).await {
                        Ok(Ok(_)) => continue,
                        Ok(Err(e)) => break e,
                        Err(_) => break timeout_error(),
                    }
                }
            };
            let Some(first) = first else { return };
            batch.push(first);
            while batch.len() < inner.options.batch {
                match queue.try_recv() {
                    Ok(o) => batch.push(o),
                    Err(_) => break,
                }
            }
            let mut pipe = redis::pipe();
            let mut bytes = 0;
            for o in &batch {
                seq += 1;
                bytes += o.body.len();
                pipe.cmd("PUBLISH")
                    .arg(&o.channel)
                    .arg(envelope::message(&inner.node_json, seq, &o.body))
                    .ignore();
            }
            inner.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            let n = batch.len() as u64;
            let sent = pipe.exec_async(&mut conn);
            match tokio::time::timeout(inner.options.response_timeout, sent).await {
                Ok(Ok(())) => add(&inner.counters.published, n),
                Ok(Err(e)) => {
                    add(&inner.counters.failed, n);
                    break e;
                }
                Err(_) => {
                    add(&inner.counters.failed, n);
                    break timeout_error();
                }
            }
        };
        inner.set_conn(None);
        inner.publisher.send_replace(Link::Down);
        tracing::warn!(
            redis = %inner.addr,
            node = %inner.node,
            error = %failure,
            "redis: lost the publishing connection; broadcasts reach this node's members only \
             until Redis is back (reconnecting with backoff)"
        );
        dropped_before = inner.counters.dropped_unavailable.load(Ordering::Relaxed);
        outage = Some(Outage::new());
        if !pause(&inner, backoff.delay(), &mut stop, Some(&mut queue)).await {
            return;
        }
    }
}

/// The last sequence number delivered of each node in each room.
#[derive(Default)]
struct Seen {
    nodes: HashMap<Arc<str>, NodeSeen>,
}

struct NodeSeen {
    last: Instant,
    rooms: HashMap<Arc<str>, u64>,
}

impl Seen {
    /// Whether `seq` is new for `node` in `room` (then it is recorded).
    fn check(&mut self, node: &str, room: &str, seq: u64) -> bool {
        let entry = match self.nodes.get_mut(node) {
            Some(e) => e,
            None => self.nodes.entry(node.into()).or_insert_with(|| NodeSeen {
                last: Instant::now(),
                rooms: HashMap::new(),
            }),
        };
        entry.last = Instant::now();
        match entry.rooms.get_mut(room) {
            Some(last) if seq <= *last => false,
            Some(last) => {
                *last = seq;
                true
            }
            None => {
                entry.rooms.insert(room.into(), seq);
                true
            }
        }
    }

    fn forget_room(&mut self, room: &str) {
        for n in self.nodes.values_mut() {
            n.rooms.remove(room);
        }
    }

    fn prune(&mut self) {
        self.nodes
            .retain(|_, n| n.last.elapsed() < FORGET_NODE && !n.rooms.is_empty());
    }
}

/// SUBSCRIBE to the rooms that got members here, UNSUBSCRIBE from those
/// that have none left.
async fn reconcile(
    inner: &Inner,
    sink: &mut PubSubSink,
    subscribed: &mut HashSet<Arc<str>>,
    seen: &mut Seen,
) -> Result<(), RedisError> {
    let wanted: HashSet<Arc<str>> = inner.members().keys().cloned().collect();
    let add_rooms: Vec<Arc<str>> = wanted.difference(subscribed).cloned().collect();
    let drop_rooms: Vec<Arc<str>> = subscribed.difference(&wanted).cloned().collect();
    let bound = inner.options.response_timeout;
    for chunk in add_rooms.chunks(CHANNELS_PER_COMMAND) {
        let channels: Vec<String> = chunk
            .iter()
            .map(|r| format!("{}{r}", inner.room_prefix))
            .collect();
        match tokio::time::timeout(bound, sink.subscribe(channels)).await {
            Ok(r) => r?,
            Err(_) => return Err(timeout_error()),
        }
        subscribed.extend(chunk.iter().cloned());
    }
    for chunk in drop_rooms.chunks(CHANNELS_PER_COMMAND) {
        let channels: Vec<String> = chunk
            .iter()
            .map(|r| format!("{}{r}", inner.room_prefix))
            .collect();
        match tokio::time::timeout(bound, sink.unsubscribe(channels)).await {
            Ok(r) => r?,
            Err(_) => return Err(timeout_error()),
        }
        for r in chunk {
            subscribed.remove(r);
            seen.forget_room(r);
        }
    }
    if !add_rooms.is_empty() || !drop_rooms.is_empty() {
        tracing::debug!(
            node = %inner.node,
            subscribed = add_rooms.len(),
            unsubscribed = drop_rooms.len(),
            rooms = subscribed.len(),
            "redis: room subscriptions changed"
        );
    }
    Ok(())
}

/// Log a message dropped from Redis (throttled), then count it: whoever
/// sees the count can find the line.
fn dropped(inner: &Inner, channel: &str, payload: &[u8], why: &dyn std::fmt::Display) {
    if let Some(suppressed) = inner.bad_log.allow() {
        let excerpt = String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned();
        tracing::warn!(
            node = %inner.node,
            channel,
            bytes = payload.len(),
            excerpt = ?excerpt,
            suppressed,
            "redis: dropped a message from Redis: {why}"
        );
    }
    add(&inner.counters.malformed, 1);
}

/// A message from a room channel: deliver it here if another node sent it.
fn on_message(inner: &Inner, msg: &Msg, seen: &mut Seen) {
    let channel = msg.get_channel_name();
    let payload = msg.get_payload_bytes();
    let Some(room) = channel.strip_prefix(&inner.room_prefix) else {
        dropped(inner, channel, payload, &"not a room channel");
        return;
    };
    if payload.len() > inner.options.max_message_bytes {
        dropped(inner, channel, &[], &"too large");
        return;
    }
    let env = match envelope::decode(payload) {
        Ok(env) => env,
        Err(e) => {
            dropped(inner, channel, payload, &e);
            return;
        }
    };
    if env.room != room {
        dropped(
            inner,
            channel,
            payload,
            &DecodeError::Invalid("room is not the channel's"),
        );
        return;
    }
    if *env.node == *inner.node {
        // Delivered here when it was broadcast.
        add(&inner.counters.own, 1);
        return;
    }
    if !seen.check(&env.node, room, env.seq) {
        add(&inner.counters.duplicates, 1);
        if let Some(suppressed) = inner.bad_log.allow() {
            tracing::warn!(
                node = %inner.node,
                from = %env.node,
                room,
                seq = env.seq,
                suppressed,
                "redis: dropped a message already delivered (or out of order)"
            );
        }
        return;
    }
    let message = LocalRooms::prepare(&env.method, env.params);
    let delivery = inner.local.deliver(room, &message, None);
    add(&inner.counters.received, 1);
    if delivery.lagged > 0 {
        inner.recount(room);
    }
}

/// Hold the subscriptions and deliver what the other nodes publish.
pub(crate) async fn subscriber(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(&inner);
    let mut outage: Option<Outage> = None;
    let mut connected_before = false;
    let mut seen = Seen::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let attempt = tokio::select! {
            _ = stop.changed() => return,
            r = tokio::time::timeout(inner.options.connect_timeout, inner.client.get_async_pubsub()) => r,
        };
        let attempt = match attempt {
            Ok(Ok(pubsub)) => {
                let (mut sink, stream) = pubsub.split();
                let mut subscribed = HashSet::new();
                match reconcile(&inner, &mut sink, &mut subscribed, &mut seen).await {
                    Ok(()) => Ok((sink, stream, subscribed)),
                    Err(e) => Err(e),
                }
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(timeout_error()),
        };
        let (mut sink, mut stream, mut subscribed) = match attempt {
            Ok(parts) => parts,
            Err(e) => {
                match &mut outage {
                    Some(o) => o.failed(&inner, "subscribing", &e),
                    None => {
                        tracing::warn!(
                            redis = %inner.addr,
                            node = %inner.node,
                            error = %e,
                            "redis: cannot connect to subscribe; messages from other nodes are \
                             missed until Redis is back (retrying with backoff)"
                        );
                        outage = Some(Outage::new());
                    }
                }
                inner.subscriber.send_replace(Link::Down);
                if !pause(&inner, backoff.delay(), &mut stop, None).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        inner.subscriber.send_replace(Link::Up);
        match outage.take() {
            Some(o) => {
                if connected_before {
                    add(&inner.counters.reconnects, 1);
                }
                let how = if connected_before {
                    "subscribed again to"
                } else {
                    "Redis reachable at last: subscribed to"
                };
                tracing::warn!(
                    redis = %inner.addr,
                    node = %inner.node,
                    down_for = ?o.since.elapsed(),
                    rooms = subscribed.len(),
                    "redis: {how} {} rooms; messages other nodes published while Redis was out \
                     of reach are not delivered here",
                    subscribed.len()
                );
            }
            None => tracing::info!(
                redis = %inner.addr,
                node = %inner.node,
                rooms = subscribed.len(),
                "redis: subscribed"
            ),
        }
        connected_before = true;
        let mut health = tokio::time::interval(inner.options.health_interval);
        health.reset();
        let mut prune = tokio::time::interval(Duration::from_secs(60));
        prune.reset();
        let failure: RedisError = loop {
            tokio::select! {
                _ = stop.changed() => return,
                msg = stream.next() => match msg {
                    Some(m) => {
                        on_message(&inner, &m, &mut seen);
                        health.reset();
                    }
                    None => break RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "the connection ended",
                    )),
                },
                _ = inner.rooms_changed.notified() => {
                    if let Err(e) = reconcile(&inner, &mut sink, &mut subscribed, &mut seen).await {
                        break e;
                    }
                }
                _ = health.tick() => {
                    let ping = sink.ping::<redis::Value>();
                    match tokio::time::timeout(inner.options.response_timeout, ping).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break e,
                        Err(_) => break timeout_error(),
                    }
                }
                _ = prune.tick() => seen.prune(),
            }
        };
        inner.subscriber.send_replace(Link::Down);
        tracing::warn!(
            redis = %inner.addr,
            node = %inner.node,
            error = %failure,
            "redis: lost the subscription connection; messages from other nodes are missed \
             until Redis is back (reconnecting with backoff)"
        );
        outage = Some(Outage::new());
        if !pause(&inner, backoff.delay(), &mut stop, None).await {
            return;
        }
    }
}

/// This node's counts, as Redis gets them.
fn own_counts(inner: &Inner) -> Vec<(Arc<str>, usize)> {
    inner
        .members()
        .iter()
        .map(|(r, n)| (r.clone(), *n))
        .collect()
}

/// Write this node's counts: its hash (with the TTL) and its entry in the
/// set of nodes.
async fn write_counts(inner: &Inner, conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
    let counts = own_counts(inner);
    let key = inner.counts_key(&inner.node);
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("DEL").arg(&key).ignore();
    if counts.is_empty() {
        pipe.cmd("SREM")
            .arg(inner.nodes_key())
            .arg(&*inner.node)
            .ignore();
    } else {
        pipe.cmd("HSET").arg(&key);
        for (room, n) in &counts {
            pipe.arg(&**room).arg(*n);
        }
        pipe.ignore();
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(inner.options.counts_ttl.as_millis() as u64)
            .ignore();
        pipe.cmd("SADD")
            .arg(inner.nodes_key())
            .arg(&*inner.node)
            .ignore();
    }
    pipe.exec_async(conn).await
}

/// Remove this node's counts (it stops).
async fn remove_counts(inner: &Inner, conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("DEL").arg(inner.counts_key(&inner.node)).ignore();
    pipe.cmd("SREM")
        .arg(inner.nodes_key())
        .arg(&*inner.node)
        .ignore();
    pipe.exec_async(conn).await
}

/// Keep this node's counts in Redis: every `counts_refresh`, and soon after
/// a change.
pub(crate) async fn counts(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(inner.options.counts_refresh);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let bound = inner.options.list_timeout;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = every.tick() => {}
            _ = inner.counts_changed.notified() => {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(DEBOUNCE) => {}
                }
            }
        }
        let Some(mut conn) = inner.conn() else {
            continue;
        };
        match tokio::time::timeout(bound, write_counts(&inner, &mut conn)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(node = %inner.node, error = %e, "redis: counts not written")
            }
            Err(_) => tracing::debug!(node = %inner.node, "redis: counts not written in time"),
        }
    }
    if let Some(mut conn) = inner.conn() {
        if let Ok(Err(e)) = tokio::time::timeout(bound, remove_counts(&inner, &mut conn)).await {
            tracing::debug!(node = %inner.node, error = %e, "redis: counts not removed");
        }
    }
}

/// The other nodes' counts: node -> room -> members.
async fn remote_counts(
    inner: &Inner,
    conn: &mut MultiplexedConnection,
) -> Result<Vec<HashMap<String, String>>, RedisError> {
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(inner.nodes_key())
        .query_async(conn)
        .await?;
    let others: Vec<&String> = nodes.iter().filter(|n| ***n != *inner.node).collect();
    if others.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for n in &others {
        pipe.cmd("HGETALL").arg(inner.counts_key(n));
    }
    let maps: Vec<HashMap<String, String>> = pipe.query_async(conn).await?;
    // A node whose hash expired is gone: take it out of the set.
    let gone: Vec<&String> = others
        .iter()
        .zip(&maps)
        .filter(|(_, m)| m.is_empty())
        .map(|(n, _)| *n)
        .collect();
    if !gone.is_empty() {
        let _ = redis::cmd("SREM")
            .arg(inner.nodes_key())
            .arg(gone)
            .exec_async(conn)
            .await;
    }
    Ok(maps)
}

/// Every room with its members on all nodes (this node's own counts are
/// always current; the others' as of their last refresh).
pub(crate) async fn list(inner: Arc<Inner>) -> Vec<RoomInfo> {
    let mut totals: HashMap<String, usize> = own_counts(&inner)
        .into_iter()
        .map(|(r, n)| (r.to_string(), n))
        .collect();
    if let Some(mut conn) = inner.conn() {
        let remote = remote_counts(&inner, &mut conn);
        match tokio::time::timeout(inner.options.list_timeout, remote).await {
            Ok(Ok(maps)) => {
                for map in maps {
                    for (room, n) in map {
                        if let Ok(n) = n.parse::<usize>() {
                            *totals.entry(room).or_default() += n;
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(node = %inner.node, error = %e, "redis: other nodes' counts unavailable")
            }
            Err(_) => {
                tracing::debug!(node = %inner.node, "redis: other nodes' counts not read in time")
            }
        }
    }
    let mut list: Vec<RoomInfo> = totals
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, members)| RoomInfo { name, members })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Doubling without a cap (`backoff_max` of `Duration::MAX`) never
    /// overflows.
    #[test]
    fn backoff_without_a_cap_saturates() {
        let initial = Duration::from_millis(100);
        let mut b = Backoff {
            next: initial,
            initial,
            max: Duration::MAX,
        };
        let mut last = Duration::ZERO;
        for _ in 0..100 {
            let d = b.delay();
            assert!(d >= Duration::from_millis(75));
            last = d;
        }
        assert!(last > Duration::from_secs(1 << 60), "{last:?}");
        b.reset();
        assert!(b.delay() <= Duration::from_millis(125));
    }
}
