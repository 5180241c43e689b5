//! What a connection sends that no request waits for: subscription items,
//! room broadcasts, notifications to the connection. Each goes to the
//! socket at once when the connection's write buffer has room (no queue, no
//! task switch); otherwise it waits here, in a queue bounded per source (a
//! subscription, a room) and in all, and the connection's task moves it on
//! as the peer reads. A source over its bound gets its lag policy; nothing
//! is dropped without its sender and the client being told.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use ws_net::{Message, PreparedMessage, TrySendError, Utf8Bytes, WsWriter};

use crate::wire;

/// What a source does when its queue is full: its peer is not reading fast
/// enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LagPolicy {
    /// End it (the default): a subscription ends with a final notification
    /// carrying error -32003; a room member leaves the room and gets an
    /// `rpc.lagged` notification. Its queued items are dropped, and the
    /// client is told how many.
    #[default]
    End,
    /// Drop the oldest queued item for each new one, and tell the client
    /// how many were dropped before the next item it gets (a subscription
    /// item with `"dropped": N`; an `rpc.lagged` notification for a room).
    DropOldest,
}

/// Who queued an item, for its bound and its lag policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// A subscription: its id and notification method.
    Subscription(u64, Arc<str>),
    /// A room's broadcasts.
    Room(Arc<str>),
}

impl Source {
    /// The notice that `n` items of this source were dropped.
    fn dropped_notice(&self, n: u64, left: bool) -> Utf8Bytes {
        let mut out = String::with_capacity(96);
        match self {
            Source::Subscription(id, method) => wire::write_subscription_item(
                &mut out,
                method,
                *id,
                wire::SubscriptionPayload::Dropped(n),
            ),
            Source::Room(room) => {
                let params = serde_json::json!({ "room": &**room, "dropped": n, "left": left });
                let raw = wire::to_raw(&params).ok();
                wire::write_notification(&mut out, "rpc.lagged", raw.as_deref());
            }
        }
        Utf8Bytes::from(out)
    }
}

/// One message to send.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// JSON text, for this connection alone.
    Text(Utf8Bytes),
    /// Encoded once for many connections.
    Prepared(PreparedMessage),
}

impl Outgoing {
    fn len(&self) -> usize {
        match self {
            Outgoing::Text(b) => b.len(),
            Outgoing::Prepared(p) => p.payload().len(),
        }
    }
}

/// One message to push: JSON text, or a message encoded once for many
/// connections (cloned only if it has to wait).
#[derive(Debug)]
pub(crate) enum Item<'a> {
    Text(Utf8Bytes),
    Prepared(&'a PreparedMessage),
}

impl Item<'_> {
    fn len(&self) -> usize {
        match self {
            Item::Text(t) => t.len(),
            Item::Prepared(p) => p.payload().len(),
        }
    }

    fn into_owned(self) -> Outgoing {
        match self {
            Item::Text(t) => Outgoing::Text(t),
            Item::Prepared(p) => Outgoing::Prepared(p.clone()),
        }
    }
}

/// The outcome of a push.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Written to the connection, or queued.
    Ok,
    /// The source lagged and its policy is `End`: the item and the
    /// source's queued items were dropped (how many in all).
    Ended(u64),
    /// An item without a source did not fit in the queue: not sent.
    Full,
    /// The connection is over.
    Closed,
}

/// Bounds of one source's queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    pub(crate) items: usize,
    pub(crate) policy: LagPolicy,
}

#[derive(Default)]
struct SourceState {
    queued: usize,
    dropped: u64,
    /// Woken when an item of this source leaves the queue.
    room: Option<Arc<Notify>>,
}

struct Queued {
    source: Option<Source>,
    item: Outgoing,
}

// The fields a push reads first come first (`repr(C)` keeps the order):
// the connection's writer, the lock, whether the outbox is closed and
// whether its queue is empty, so that one line (see `Outbox::warm`) holds
// what a push to an idle connection needs of the outbox.
#[derive(Default)]
#[repr(C)]
struct State {
    closed: bool,
    queue: VecDeque<Queued>,
    bytes: usize,
    sources: HashMap<Source, SourceState>,
}

#[repr(C)]
pub(crate) struct Outbox {
    writer: WsWriter,
    state: Mutex<State>,
    /// Wakes the connection's task: the queue has items.
    wake: Notify,
    max_items: usize,
    max_bytes: usize,
}

impl Outbox {
    pub(crate) fn new(writer: WsWriter, max_items: usize, max_bytes: usize) -> Self {
        Self {
            writer,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            max_items,
            max_bytes,
        }
    }

    /// Bring the outbox's first line (its writer, its lock) into the cache
    /// ahead of a push: a plain load, which takes no lock and whose value
    /// nothing after it waits for.
    pub(crate) fn warm(&self) {
        std::hint::black_box(self.state.is_poisoned());
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a source's wake-up for room in its queue.
    pub(crate) fn watch_source(&self, source: &Source, notify: Arc<Notify>) {
        self.lock().sources.entry(source.clone()).or_default().room = Some(notify);
    }

    /// Forget a source: its queued items are dropped (how many).
    pub(crate) fn remove_source(&self, source: &Source) -> usize {
        let mut st = self.lock();
        let dropped = drop_items(&mut st, source, usize::MAX);
        st.sources.remove(source);
        dropped
    }

    /// Items of `source` waiting in the queue.
    pub(crate) fn queued(&self, source: &Source) -> usize {
        self.lock().sources.get(source).map_or(0, |s| s.queued)
    }

    /// Send `item` now if the connection can take it, else queue it. A
    /// source's items beyond `bound` get its lag policy; an item without a
    /// source beyond the queue's own bounds is refused.
    pub(crate) fn push(&self, source: Option<&Source>, item: Item<'_>, bound: Bound) -> Pushed {
        let mut st = self.lock();
        if st.closed {
            return Pushed::Closed;
        }
        let item = if st.queue.is_empty() {
            match self.try_write_item(item) {
                Ok(()) => return Pushed::Ok,
                Err(Some(back)) => back,
                Err(None) => {
                    st.closed = true;
                    return Pushed::Closed;
                }
            }
        } else {
            item
        };
        self.queue_item(&mut st, source, item, bound)
    }

    /// [`push`](Self::push) of a room's broadcast: written in the
    /// broadcast's pass over the sockets when the connection can take it
    /// now, else queued as `push` queues it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn push_broadcast<'a>(
        &'a self,
        source: &Source,
        broadcast: &mut ws_net::Broadcast<'a>,
        bound: Bound,
    ) -> Pushed {
        let mut st = self.lock();
        if st.closed {
            return Pushed::Closed;
        }
        if st.queue.is_empty() {
            match broadcast.try_send(&self.writer) {
                Ok(()) => return Pushed::Ok,
                Err(e) if e.is_full() => {}
                Err(_) => {
                    st.closed = true;
                    return Pushed::Closed;
                }
            }
        }
        let item = Item::Prepared(broadcast.message());
        self.queue_item(&mut st, Some(source), item, bound)
    }

    /// Queue an item that could not be written now, under the bounds and
    /// lag policies of [`push`](Self::push).
    fn queue_item(
        &self,
        st: &mut State,
        source: Option<&Source>,
        item: Item<'_>,
        bound: Bound,
    ) -> Pushed {
        let len = item.len();
        let over_all = st.queue.len() >= self.max_items || st.bytes + len > self.max_bytes;
        let Some(source) = source else {
            if over_all {
                return Pushed::Full;
            }
            self.enqueue(st, None, item.into_owned());
            return Pushed::Ok;
        };
        let queued = st.sources.get(source).map_or(0, |s| s.queued);
        if queued >= bound.items || over_all {
            match bound.policy {
                LagPolicy::End => {
                    let n = drop_items(st, source, usize::MAX) as u64 + 1;
                    return Pushed::Ended(n);
                }
                LagPolicy::DropOldest => {
                    let dropped = drop_items(st, source, 1);
                    st.sources.entry(source.clone()).or_default().dropped += 1;
                    if dropped == 0 {
                        // Over the queue's own bound with nothing of this
                        // source queued: this item is the one dropped.
                        return Pushed::Ok;
                    }
                }
            }
        }
        self.enqueue(st, Some(source.clone()), item.into_owned());
        Pushed::Ok
    }

    /// [`try_write`](Self::try_write) of a borrowed item: `Err(Some(item))`
    /// when the connection is full, `Err(None)` when it is over.
    fn try_write_item<'a>(&self, item: Item<'a>) -> Result<(), Option<Item<'a>>> {
        match item {
            Item::Text(t) => match self.writer.try_send(Message::Text(t)) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(Message::Text(t))) => Err(Some(Item::Text(t))),
                Err(_) => Err(None),
            },
            Item::Prepared(p) => match self.writer.try_send_prepared(p) {
                Ok(()) => Ok(()),
                Err(e) if e.is_full() => Err(Some(Item::Prepared(p))),
                Err(_) => Err(None),
            },
        }
    }

    /// Queue an item past every bound: a source's last word (the notice
    /// that it ended), which must not be lost to the bound that ended it.
    pub(crate) fn push_final(&self, item: Outgoing) -> Pushed {
        let mut st = self.lock();
        if st.closed {
            return Pushed::Closed;
        }
        if st.queue.is_empty() {
            match self.try_write(item) {
                Ok(()) => return Pushed::Ok,
                Err(Some(back)) => {
                    self.enqueue(&mut st, None, back);
                    return Pushed::Ok;
                }
                Err(None) => {
                    st.closed = true;
                    return Pushed::Closed;
                }
            }
        }
        self.enqueue(&mut st, None, item);
        Pushed::Ok
    }

    /// The notice that `n` items of `source` were dropped and it ended.
    pub(crate) fn ended_notice(source: &Source, n: u64) -> Outgoing {
        Outgoing::Text(source.dropped_notice(n, true))
    }

    fn enqueue(&self, st: &mut State, source: Option<Source>, item: Outgoing) {
        st.bytes += item.len();
        if let Some(s) = &source {
            st.sources.entry(s.clone()).or_default().queued += 1;
        }
        let was_empty = st.queue.is_empty();
        st.queue.push_back(Queued { source, item });
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Hand an item to the connection without waiting: `Err(Some(item))`
    /// when its buffer is full, `Err(None)` when it is over.
    fn try_write(&self, item: Outgoing) -> Result<(), Option<Outgoing>> {
        match item {
            Outgoing::Text(text) => match self.writer.try_send(Message::Text(text)) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(Message::Text(t))) => Err(Some(Outgoing::Text(t))),
                Err(_) => Err(None),
            },
            Outgoing::Prepared(p) => match self.writer.try_send_prepared(&p) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(())) => Err(Some(Outgoing::Prepared(p))),
                Err(_) => Err(None),
            },
        }
    }

    /// Move queued items to the connection as it takes them, for as long as
    /// the connection lasts. Run by the connection's task. Cancel-safe: an
    /// item leaves the queue only once the connection has taken it.
    pub(crate) async fn run(&self) {
        loop {
            let notified = self.wake.notified();
            if self.lock().queue.is_empty() {
                notified.await;
                continue;
            }
            if self.writer.ready().await.is_err() {
                self.close();
                return;
            }
            let mut woken = Vec::new();
            {
                let mut st = self.lock();
                while let Some(front) = st.queue.pop_front() {
                    // A source that lost items says so before its next one.
                    let dropped = front
                        .source
                        .as_ref()
                        .and_then(|s| st.sources.get_mut(s))
                        .map_or(0, |state| std::mem::take(&mut state.dropped));
                    if let (true, Some(source)) = (dropped > 0, front.source.as_ref()) {
                        match self.try_write(Outgoing::Text(source.dropped_notice(dropped, false)))
                        {
                            Ok(()) => {}
                            Err(Some(_)) => {
                                // Not now: the count waits with the item.
                                if let Some(state) = st.sources.get_mut(source) {
                                    state.dropped += dropped;
                                }
                                st.queue.push_front(front);
                                break;
                            }
                            Err(None) => {
                                drop(st);
                                self.close();
                                return;
                            }
                        }
                    }
                    let len = front.item.len();
                    match self.try_write(front.item.clone()) {
                        Ok(()) => {
                            st.bytes -= len;
                            if let Some(s) = &front.source {
                                if let Some(state) = st.sources.get_mut(s) {
                                    state.queued -= 1;
                                    if let Some(n) = &state.room {
                                        woken.push(n.clone());
                                    }
                                }
                            }
                        }
                        Err(Some(_)) => {
                            st.queue.push_front(front);
                            break;
                        }
                        Err(None) => {
                            drop(st);
                            self.close();
                            return;
                        }
                    }
                }
            }
            for n in woken {
                n.notify_one();
            }
        }
    }

    /// The connection is over: drop everything queued, wake every waiting
    /// source.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.queue.clear();
        st.bytes = 0;
        for s in st.sources.values() {
            if let Some(n) = &s.room {
                n.notify_one();
            }
        }
    }
}

/// Drop up to `max` of `source`'s queued items, oldest first; how many.
fn drop_items(st: &mut State, source: &Source, max: usize) -> usize {
    let mut dropped = 0;
    let mut bytes = 0;
    st.queue.retain(|q| {
        if dropped < max && q.source.as_ref() == Some(source) {
            dropped += 1;
            bytes += q.item.len();
            false
        } else {
            true
        }
    });
    st.bytes -= bytes;
    if let Some(s) = st.sources.get_mut(source) {
        s.queued -= dropped;
    }
    dropped
}
