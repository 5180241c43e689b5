//! The client's streams: a subscription's items, and a server
//! notification's.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::SubGuard;
use crate::error::{ClientError, RpcError};

/// What the connection's task passes to a subscription stream.
#[derive(Debug)]
pub(crate) enum SubEvent {
    Item(Box<RawValue>),
    Dropped(u64),
    Resubscribed,
}

/// Why a subscription stream ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SubscriptionEnd {
    /// It was unsubscribed.
    Unsubscribed,
    /// It fell behind and was ended: by the server (its lag policy), or
    /// here (the stream was not read fast enough).
    Lagged,
    /// The server ended it with this error.
    Error(RpcError),
    /// The connection dropped and the client does not reconnect.
    Disconnected,
    /// After a reconnect, subscribing again failed.
    ResubscribeFailed(ClientError),
    /// The client was closed.
    Closed,
}

/// One event of a subscription stream.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SubscriptionItem<T> {
    /// An item.
    Item(T),
    /// The server dropped this many items before the next (its lag policy
    /// `DropOldest`).
    Dropped(u64),
    /// The connection dropped and the subscription was made again on the
    /// new one: items sent in between are missing.
    Resubscribed,
    /// An item that did not decode as `T` (skipped).
    Invalid(Arc<serde_json::Error>),
    /// The last event: why it ended.
    Ended(SubscriptionEnd),
}

impl PartialEq for SubscriptionEnd {
    fn eq(&self, other: &Self) -> bool {
        use SubscriptionEnd::*;
        match (self, other) {
            (Error(a), Error(b)) => a == b,
            (ResubscribeFailed(a), ResubscribeFailed(b)) => a.to_string() == b.to_string(),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl<T: PartialEq> PartialEq for SubscriptionItem<T> {
    fn eq(&self, other: &Self) -> bool {
        use SubscriptionItem::*;
        match (self, other) {
            (Item(a), Item(b)) => a == b,
            (Dropped(a), Dropped(b)) => a == b,
            (Resubscribed, Resubscribed) => true,
            (Invalid(a), Invalid(b)) => a.to_string() == b.to_string(),
            (Ended(a), Ended(b)) => a == b,
            _ => false,
        }
    }
}

impl<T> SubscriptionItem<T> {
    /// The item, if this is one.
    pub fn into_item(self) -> Option<T> {
        match self {
            Self::Item(t) => Some(t),
            _ => None,
        }
    }
}

/// A subscription: a [`Stream`] of [`SubscriptionItem`]s ending with
/// [`SubscriptionItem::Ended`]. Dropping it unsubscribes.
pub struct Subscription<T> {
    rx: mpsc::Receiver<SubEvent>,
    end: Arc<Mutex<Option<SubscriptionEnd>>>,
    guard: SubGuard,
    done: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> Subscription<T> {
    pub(crate) fn new(
        rx: mpsc::Receiver<SubEvent>,
        end: Arc<Mutex<Option<SubscriptionEnd>>>,
        guard: SubGuard,
    ) -> Self {
        Self {
            rx,
            end,
            guard,
            done: false,
            _t: PhantomData,
        }
    }

    /// The next event; `None` after [`SubscriptionItem::Ended`].
    ///
    /// Cancel-safe: no event is lost if the future is dropped.
    pub async fn next(&mut self) -> Option<SubscriptionItem<T>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Unsubscribe and wait for the server's answer; the stream then ends
    /// with [`SubscriptionEnd::Unsubscribed`].
    pub async fn unsubscribe(&mut self) -> Result<(), ClientError> {
        self.end
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(SubscriptionEnd::Unsubscribed);
        self.guard.unsubscribe().await
    }
}

impl<T: DeserializeOwned> Stream for Subscription<T> {
    type Item = SubscriptionItem<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let ended = self.end.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(SubscriptionEnd::Unsubscribed) = ended {
            self.done = true;
            return Poll::Ready(Some(SubscriptionItem::Ended(SubscriptionEnd::Unsubscribed)));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(SubEvent::Item(raw))) => {
                Poll::Ready(Some(match serde_json::from_str::<T>(raw.get()) {
                    Ok(t) => SubscriptionItem::Item(t),
                    Err(e) => SubscriptionItem::Invalid(Arc::new(e)),
                }))
            }
            Poll::Ready(Some(SubEvent::Dropped(n))) => {
                Poll::Ready(Some(SubscriptionItem::Dropped(n)))
            }
            Poll::Ready(Some(SubEvent::Resubscribed)) => {
                Poll::Ready(Some(SubscriptionItem::Resubscribed))
            }
            Poll::Ready(None) => {
                self.done = true;
                let why = self
                    .end
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .unwrap_or(SubscriptionEnd::Closed);
                Poll::Ready(Some(SubscriptionItem::Ended(why)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Why a notification stream skipped something.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NotificationError {
    /// The stream fell behind: this many notifications were missed.
    #[error("missed {0} notifications")]
    Lagged(u64),
    /// A notification's parameters did not decode (skipped).
    #[error("parameters did not decode: {0}")]
    Invalid(Arc<serde_json::Error>),
}

/// The server's notifications of one method: a [`Stream`] of their
/// decoded parameters. It ends when the client closes.
pub struct Notifications<T> {
    inner: BroadcastStream<Arc<RawValue>>,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Notifications<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications").finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> Notifications<T> {
    pub(crate) fn new(rx: broadcast::Receiver<Arc<RawValue>>) -> Self {
        Self {
            inner: BroadcastStream::new(rx),
            _t: PhantomData,
        }
    }

    /// The next notification; `None` once the client is closed.
    ///
    /// Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<T, NotificationError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl<T: DeserializeOwned> Stream for Notifications<T> {
    type Item = Result<T, NotificationError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(Pin::new(&mut self.inner).poll_next(cx));
        Poll::Ready(item.map(|r| match r {
            Ok(raw) => {
                serde_json::from_str(raw.get()).map_err(|e| NotificationError::Invalid(Arc::new(e)))
            }
            Err(BroadcastStreamRecvError::Lagged(n)) => Err(NotificationError::Lagged(n)),
        }))
    }
}
