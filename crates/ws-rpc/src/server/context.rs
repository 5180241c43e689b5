//! The per-connection context every handler gets: who the connection is,
//! what it asked for when it opened, who it logged in as, and a handle to
//! push notifications to it, join rooms and broadcast.

use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use ws_net::ConnectionId;

use super::outbox::{Bound, Item, Outbox, Pushed};
use super::rooms::{Member, Rooms};
use super::subscription::SubscriptionSlot;
use super::ServerConfig;
use crate::wire;

/// Who a connection authenticated as: set by the handshake hook or by the
/// first-message login, and seen by every handler after it.
///
/// ```
/// let who = ws_rpc::Identity::new("alice").with_data(vec!["admin"]);
/// assert_eq!(who.subject(), "alice");
/// assert_eq!(who.data::<Vec<&str>>(), Some(&vec!["admin"]));
/// ```
#[derive(Clone)]
pub struct Identity {
    subject: Arc<str>,
    data: Option<Arc<dyn Any + Send + Sync>>,
}

impl Identity {
    /// An identity named `subject` (a user name, an account id).
    pub fn new(subject: impl Into<Arc<str>>) -> Self {
        Self {
            subject: subject.into(),
            data: None,
        }
    }

    /// Attach application data (roles, claims).
    pub fn with_data<T: Any + Send + Sync>(mut self, data: T) -> Self {
        self.data = Some(Arc::new(data));
        self
    }

    /// The subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The attached data, if it is a `T`.
    pub fn data<T: Any>(&self) -> Option<&T> {
        self.data.as_deref().and_then(|d| d.downcast_ref())
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Why a notification to a connection was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The connection's queue is full: its peer does not read.
    #[error("the connection's queue is full")]
    Full,
    /// The connection is over.
    #[error("the connection is closed")]
    Closed,
    /// The parameters could not be serialized.
    #[error("parameters could not be serialized")]
    Params,
}

/// The connection a call came on: cheap to clone, the same for every call
/// of one connection.
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<ContextInner>,
}

pub(crate) struct ContextInner {
    pub(crate) id: ConnectionId,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) request: http::Request<()>,
    pub(crate) identity: Mutex<Option<Identity>>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) rooms: Arc<dyn Rooms>,
    /// Live subscriptions, by id.
    pub(crate) subscriptions: Mutex<HashMap<u64, SubscriptionSlot>>,
    pub(crate) extensions: Mutex<http::Extensions>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.inner.id)
            .field("peer_addr", &self.inner.peer_addr)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The connection's id (ws-net's).
    pub fn connection_id(&self) -> ConnectionId {
        self.inner.id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_addr
    }

    /// The opening handshake's request: path, query, headers.
    pub fn request(&self) -> &http::Request<()> {
        &self.inner.request
    }

    /// The request's headers.
    pub fn headers(&self) -> &http::HeaderMap {
        self.inner.request.headers()
    }

    /// The request's query string.
    pub fn query(&self) -> Option<&str> {
        self.inner.request.uri().query()
    }

    /// Who the connection authenticated as, if it did.
    pub fn identity(&self) -> Option<Identity> {
        lock(&self.inner.identity).clone()
    }

    pub(crate) fn set_identity(&self, identity: Identity) {
        *lock(&self.inner.identity) = Some(identity);
    }

    /// Per-connection application values.
    pub fn extensions(&self) -> MutexGuard<'_, http::Extensions> {
        lock(&self.inner.extensions)
    }

    /// Send a notification to this connection without waiting: written at
    /// once when the connection has room, else queued (within the
    /// connection's queue bound).
    pub fn notify<P: Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<(), NotifyError> {
        let raw = wire::to_raw(params).map_err(|_| NotifyError::Params)?;
        let mut out = String::with_capacity(raw.get().len() + method.len() + 48);
        wire::write_notification(&mut out, method, Some(&raw));
        let bound = Bound {
            items: usize::MAX,
            policy: Default::default(),
        };
        match self.inner.outbox.push(None, Item::Text(out.into()), bound) {
            Pushed::Ok => Ok(()),
            Pushed::Full | Pushed::Ended(_) => Err(NotifyError::Full),
            Pushed::Closed => Err(NotifyError::Closed),
        }
    }

    /// Join `room`: this connection gets the room's broadcasts until it
    /// leaves, closes, or lags behind (see
    /// [`ServerConfig::room_lag_policy`](crate::ServerConfig::room_lag_policy)).
    /// Joining twice is joining once.
    pub fn join(&self, room: &str) {
        self.inner.rooms.join(room, self.member());
    }

    /// Leave `room`; whether this connection was in it.
    pub fn leave(&self, room: &str) -> bool {
        self.inner.rooms.leave(room, self.inner.id)
    }

    /// The rooms this connection is in.
    pub fn joined(&self) -> Vec<String> {
        self.inner.rooms.rooms_of(self.inner.id)
    }

    /// The server's rooms (to broadcast, or to list them).
    pub fn rooms(&self) -> &Arc<dyn Rooms> {
        &self.inner.rooms
    }

    /// Broadcast a notification to `room`, this connection excepted (the
    /// chat-message shape: the sender has its own answer).
    pub fn broadcast_others<P: Serialize + ?Sized>(
        &self,
        room: &str,
        method: &str,
        params: &P,
    ) -> Result<(), NotifyError> {
        let raw = wire::to_raw(params).map_err(|_| NotifyError::Params)?;
        self.inner
            .rooms
            .broadcast(room, method, &raw, Some(self.inner.id));
        Ok(())
    }

    /// This connection as a room member.
    pub(crate) fn member(&self) -> Member {
        Member::new(
            self.inner.id,
            self.inner.outbox.clone(),
            Bound {
                items: self.inner.config.room_buffer,
                policy: self.inner.config.room_lag_policy,
            },
        )
    }

    /// Leave every room and end every subscription: the connection is over.
    pub(crate) fn close(&self) {
        self.inner.rooms.leave_all(self.inner.id);
        let subs: Vec<_> = lock(&self.inner.subscriptions).drain().collect();
        for (_, slot) in subs {
            slot.end(super::subscription::EndReason::ConnectionClosed);
        }
        self.inner.outbox.close();
    }
}
