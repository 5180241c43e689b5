//! Subscriptions, wire-compatible with jsonrpsee: `subscribe_x` answers
//! with an id, items go out as `{"method": NOTIF, "params": {"subscription":
//! ID, "result": ITEM}}`, `unsubscribe_x [ID]` ends it. Each subscription
//! has a bounded buffer and a lag policy ([`LagPolicy`]).

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde::Serialize;
use tokio::sync::{watch, Notify};

use super::context::ContextInner;
use super::outbox::{Bound, Item, LagPolicy, Outbox, Pushed, Source};
use crate::error::{code, RpcError};
use crate::wire;

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The client unsubscribed.
    Unsubscribed,
    /// The client did not keep up and the policy was `End`: this many items
    /// were not sent (the client got a final notification saying so).
    Lagged {
        /// Items dropped.
        dropped: u64,
    },
    /// The connection closed.
    ConnectionClosed,
    /// The server ended it ([`SubscriptionSink::close`] or
    /// [`close_with_error`](SubscriptionSink::close_with_error)).
    ClosedByServer,
}

/// The item was not sent: the subscription is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("subscription ended: {0:?}")]
pub struct SubscriptionClosed(pub EndReason);

pub(crate) struct SubShared {
    id: u64,
    source: Source,
    outbox: Arc<Outbox>,
    state: Mutex<SubState>,
    ended: watch::Sender<Option<EndReason>>,
    /// Room in the buffer, for `send_wait`.
    room: Arc<Notify>,
    context: Weak<ContextInner>,
}

struct SubState {
    bound: Bound,
}

/// A subscription as the connection's table holds it.
#[derive(Clone)]
pub(crate) struct SubscriptionSlot(pub(crate) Arc<SubShared>);

impl SubscriptionSlot {
    pub(crate) fn new(
        id: u64,
        notification: Arc<str>,
        outbox: Arc<Outbox>,
        bound: Bound,
        context: Weak<ContextInner>,
    ) -> Self {
        let source = Source::Subscription(id, notification);
        let room = Arc::new(Notify::new());
        outbox.watch_source(&source, room.clone());
        Self(Arc::new(SubShared {
            id,
            source,
            outbox,
            state: Mutex::new(SubState { bound }),
            ended: watch::Sender::new(None),
            room,
            context,
        }))
    }

    /// The notification method its items go out under.
    pub(crate) fn notification(&self) -> &str {
        match &self.0.source {
            Source::Subscription(_, m) => m,
            Source::Room(_) => "",
        }
    }

    /// End it (once): its queued items are dropped, and whoever waits on
    /// it is told why.
    pub(crate) fn end(&self, reason: EndReason) {
        self.0.end(reason);
    }
}

impl SubShared {
    fn lock(&self) -> MutexGuard<'_, SubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn end(&self, reason: EndReason) -> bool {
        let mut first = false;
        self.ended.send_if_modified(|e| {
            if e.is_none() {
                *e = Some(reason);
                first = true;
            }
            first
        });
        if !first {
            return false;
        }
        self.outbox.remove_source(&self.source);
        if let Some(cx) = self.context.upgrade() {
            cx.subscriptions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.id);
        }
        self.room.notify_waiters();
        true
    }

    fn end_reason(&self) -> Option<EndReason> {
        *self.ended.borrow()
    }
}

/// The sending end of one subscription, handed to the subscription's
/// handler once its id has gone out to the client. Cheap to clone.
///
/// ```no_run
/// # async fn demo(sink: ws_rpc::SubscriptionSink) {
/// let mut n = 0;
/// loop {
///     tokio::select! {
///         _ = sink.closed() => break,
///         _ = tokio::time::sleep(std::time::Duration::from_millis(10)) => {
///             n += 1;
///             if sink.send(&serde_json::json!({ "n": n })).is_err() {
///                 break;
///             }
///         }
///     }
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct SubscriptionSink {
    shared: Arc<SubShared>,
}

impl std::fmt::Debug for SubscriptionSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionSink")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl SubscriptionSink {
    pub(crate) fn new(slot: &SubscriptionSlot) -> Self {
        Self {
            shared: slot.0.clone(),
        }
    }

    /// The subscription's id, as the client got it.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// What to do when the client falls behind (default from
    /// [`ServerConfig::subscription_lag_policy`](crate::ServerConfig::subscription_lag_policy)).
    pub fn set_lag_policy(&self, policy: LagPolicy) {
        self.shared.lock().bound.policy = policy;
    }

    /// How many items may wait for the client before the lag policy
    /// applies (default from
    /// [`ServerConfig::subscription_buffer`](crate::ServerConfig::subscription_buffer)).
    pub fn set_buffer(&self, items: usize) {
        self.shared.lock().bound.items = items.max(1);
    }

    /// Send an item without waiting: written at once when the connection
    /// has room, else queued; beyond the buffer, the lag policy applies
    /// (with `End`, this item and the queued ones are dropped, the client
    /// gets a final notification with error -32003, and this returns
    /// `Err`). An item that does not serialize is logged and skipped.
    pub fn send<T: Serialize + ?Sized>(&self, item: &T) -> Result<(), SubscriptionClosed> {
        if let Some(reason) = self.shared.end_reason() {
            return Err(SubscriptionClosed(reason));
        }
        let raw = match wire::to_raw(item) {
            Ok(raw) => raw,
            Err(e) => {
                tracing::warn!(error = %e, "subscription item cannot be serialized; skipped");
                return Ok(());
            }
        };
        let Source::Subscription(id, method) = &self.shared.source else {
            return Ok(());
        };
        let mut out = String::with_capacity(raw.get().len() + method.len() + 64);
        wire::write_subscription_item(
            &mut out,
            method,
            *id,
            wire::SubscriptionPayload::Result(&raw),
        );
        let bound = self.shared.lock().bound;
        match self
            .shared
            .outbox
            .push(Some(&self.shared.source), Item::Text(out.into()), bound)
        {
            Pushed::Ok | Pushed::Full => Ok(()),
            Pushed::Ended(dropped) => {
                let reason = EndReason::Lagged { dropped };
                if self.shared.end(reason) {
                    let error = RpcError::new(
                        code::SUBSCRIPTION_LAGGED,
                        format!("subscription lagged behind: {dropped} items were not sent"),
                    )
                    .with_data(&serde_json::json!({ "dropped": dropped }));
                    self.final_error(&error);
                    tracing::debug!(subscription = id, dropped, "subscription lagged and ended");
                }
                Err(SubscriptionClosed(reason))
            }
            Pushed::Closed => {
                self.shared.end(EndReason::ConnectionClosed);
                Err(SubscriptionClosed(EndReason::ConnectionClosed))
            }
        }
    }

    /// Send an item, waiting while the buffer is full instead of applying
    /// the lag policy: for a producer that can go at the client's pace.
    ///
    /// Cancel-safe: if the future is dropped, the item was not sent.
    pub async fn send_wait<T: Serialize + ?Sized>(
        &self,
        item: &T,
    ) -> Result<(), SubscriptionClosed> {
        loop {
            let room = self.shared.room.notified();
            if let Some(reason) = self.shared.end_reason() {
                return Err(SubscriptionClosed(reason));
            }
            let limit = self.shared.lock().bound.items;
            if self.shared.outbox.queued(&self.shared.source) < limit {
                return self.send(item);
            }
            room.await;
        }
    }

    /// Why it ended, if it did.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.shared.end_reason()
    }

    /// Whether it ended.
    pub fn is_closed(&self) -> bool {
        self.end_reason().is_some()
    }

    /// Wait until it ends (unsubscribed, lagged, connection closed, closed
    /// by the server), and say why.
    ///
    /// Cancel-safe.
    pub async fn closed(&self) -> EndReason {
        let mut rx = self.shared.ended.subscribe();
        loop {
            if let Some(reason) = *rx.borrow_and_update() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return EndReason::ConnectionClosed;
            }
        }
    }

    /// End the subscription from the server side, sending nothing more
    /// (jsonrpsee's clients see their stream end).
    pub fn close(self) {
        self.shared.end(EndReason::ClosedByServer);
    }

    /// End the subscription with a final notification carrying `error`
    /// (`params.error` instead of `params.result`).
    pub fn close_with_error(self, error: RpcError) {
        if self.shared.end(EndReason::ClosedByServer) {
            self.final_error(&error);
        }
    }

    fn final_error(&self, error: &RpcError) {
        let Source::Subscription(id, method) = &self.shared.source else {
            return;
        };
        let mut out = String::with_capacity(128);
        wire::write_subscription_item(
            &mut out,
            method,
            *id,
            wire::SubscriptionPayload::Error(error),
        );
        let _ = self
            .shared
            .outbox
            .push_final(super::outbox::Outgoing::Text(out.into()));
    }
}
