//! Rooms: named groups of connections that get the same broadcasts (the
//! chat-room shape). A broadcast is encoded once and queued to every member
//! without waiting on any; a member that does not keep up gets the lag
//! policy. Membership ends with the connection.
//!
//! The registry is a trait, [`Rooms`], so that another implementation can
//! carry broadcasts between server nodes; [`LocalRooms`] is the one for a
//! single process, and such an implementation delivers to its own
//! connections through it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use serde_json::value::RawValue;
use ws_net::{ConnectionId, Message, PreparedMessage};

#[cfg(not(any(target_os = "linux", target_os = "android")))]
use super::outbox::Item;
use super::outbox::{Bound, Outbox, Pushed, Source};
use crate::wire;

/// A connection in a room: where its broadcasts go, and how much of them
/// may wait for it.
#[derive(Clone)]
pub struct Member {
    id: ConnectionId,
    outbox: Arc<Outbox>,
    bound: Bound,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member").field("id", &self.id).finish()
    }
}

impl Member {
    pub(crate) fn new(id: ConnectionId, outbox: Arc<Outbox>, bound: Bound) -> Self {
        Self { id, outbox, bound }
    }

    /// The member's connection.
    pub fn id(&self) -> ConnectionId {
        self.id
    }
}

/// A room and how many members it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomInfo {
    /// The room's name.
    pub name: String,
    /// Its members (across every node, for a registry that spans nodes).
    pub members: usize,
}

/// What a broadcast reached here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Members it was written or queued to.
    pub sent: usize,
    /// Members that lagged behind and left the room (policy `End`).
    pub lagged: usize,
}

/// A boxed future, for the one async method of [`Rooms`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A room registry. The methods that change membership and broadcast are
/// not async and never wait on a connection: a registry that spans nodes
/// delivers locally at once and publishes in the background.
pub trait Rooms: Send + Sync + 'static {
    /// Add a member to `room` (again is a no-op).
    fn join(&self, room: &str, member: Member);
    /// Remove a connection from `room`; whether it was in it.
    fn leave(&self, room: &str, id: ConnectionId) -> bool;
    /// Remove a connection from every room (it closed).
    fn leave_all(&self, id: ConnectionId);
    /// Send the notification `method(params)` to every member of `room`,
    /// `except` one, encoded once.
    fn broadcast(
        &self,
        room: &str,
        method: &str,
        params: &RawValue,
        except: Option<ConnectionId>,
    ) -> Delivery;
    /// The rooms a connection is in.
    fn rooms_of(&self, id: ConnectionId) -> Vec<String>;
    /// The members of `room` connected here.
    fn local_members(&self, room: &str) -> Vec<ConnectionId>;
    /// Every room with its member count.
    fn list(&self) -> BoxFuture<'_, Vec<RoomInfo>>;
}

/// The rooms of one process.
///
/// ```
/// use ws_rpc::{LocalRooms, Rooms};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let rooms = LocalRooms::new();
/// assert!(rooms.list().await.is_empty());
/// # }
/// ```
#[derive(Default)]
pub struct LocalRooms {
    rooms: RwLock<HashMap<Arc<str>, Room>>,
    /// The rooms of each connection, for `leave_all` and `rooms_of`.
    by_connection: Mutex<HashMap<ConnectionId, Vec<Arc<str>>>>,
}

#[derive(Default)]
struct Room {
    members: Vec<Member>,
}

impl std::fmt::Debug for LocalRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRooms").finish_non_exhaustive()
    }
}

/// How many members ahead a broadcast reads a member's outbox before it
/// sends to it. Each member's outbox and connection are elsewhere in memory
/// and, in a large room, not in the cache: read only when its turn comes,
/// the outbox is waited for and then the connection it names; read ahead,
/// the outbox is on its way while the members before it are served.
const WARM_AHEAD: usize = 8;

impl LocalRooms {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Deliver an encoded broadcast to the members of `room` here, except
    /// one: what [`Rooms::broadcast`] does locally, for registries that
    /// receive broadcasts from other nodes.
    pub fn deliver(
        &self,
        room: &str,
        message: &PreparedMessage,
        except: Option<ConnectionId>,
    ) -> Delivery {
        let source = Source::Room(room.into());
        let mut delivery = Delivery::default();
        let mut lagged = Vec::new();
        {
            let rooms = self.rooms.read().unwrap_or_else(|p| p.into_inner());
            let Some(r) = rooms.get(room) else {
                return delivery;
            };
            // Two passes (see ws_net::Broadcast): each member's queue and
            // connection first, then the sockets that can take the message
            // now, one `send` each.
            #[cfg(any(target_os = "linux", target_os = "android"))]
            let mut broadcast = ws_net::Broadcast::new(message);
            for (i, m) in r.members.iter().enumerate() {
                if let Some(ahead) = r.members.get(i + WARM_AHEAD) {
                    ahead.outbox.warm();
                }
                if Some(m.id) == except {
                    continue;
                }
                #[cfg(any(target_os = "linux", target_os = "android"))]
                let pushed = m.outbox.push_broadcast(&source, &mut broadcast, m.bound);
                #[cfg(not(any(target_os = "linux", target_os = "android")))]
                let pushed = m
                    .outbox
                    .push(Some(&source), Item::Prepared(message), m.bound);
                match pushed {
                    Pushed::Ok => delivery.sent += 1,
                    Pushed::Ended(n) => lagged.push((m.clone(), n)),
                    Pushed::Full | Pushed::Closed => {}
                }
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            broadcast.finish();
        }
        for (m, n) in lagged {
            // It leaves, and is told how many broadcasts it missed.
            self.leave(room, m.id);
            m.outbox.remove_source(&source);
            let _ = m.outbox.push_final(Outbox::ended_notice(&source, n));
            tracing::debug!(room, connection = %m.id, dropped = n, "room member lagged and left");
            delivery.lagged += 1;
        }
        delivery
    }

    /// Encode `method(params)` once, as a prepared message.
    pub fn prepare(method: &str, params: &RawValue) -> PreparedMessage {
        let mut out = String::with_capacity(params.get().len() + method.len() + 40);
        wire::write_notification(&mut out, method, Some(params));
        PreparedMessage::new(Message::text(out))
    }
}

impl Rooms for LocalRooms {
    fn join(&self, room: &str, member: Member) {
        let id = member.id;
        let mut by_conn = self.by_connection.lock().unwrap_or_else(|p| p.into_inner());
        let mine = by_conn.entry(id).or_default();
        if mine.iter().any(|r| &**r == room) {
            return;
        }
        let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
        let (name, r) = match rooms.get_key_value(room) {
            Some((k, _)) => {
                let k = k.clone();
                let r = rooms.get_mut(room).expect("present");
                (k, r)
            }
            None => {
                let k: Arc<str> = room.into();
                (k.clone(), rooms.entry(k).or_default())
            }
        };
        r.members.push(member);
        mine.push(name);
    }

    fn leave(&self, room: &str, id: ConnectionId) -> bool {
        let mut by_conn = self.by_connection.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mine) = by_conn.get_mut(&id) else {
            return false;
        };
        let Some(i) = mine.iter().position(|r| &**r == room) else {
            return false;
        };
        mine.swap_remove(i);
        if mine.is_empty() {
            by_conn.remove(&id);
        }
        let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = rooms.get_mut(room) {
            r.members.retain(|m| m.id != id);
            if r.members.is_empty() {
                rooms.remove(room);
            }
        }
        true
    }

    fn leave_all(&self, id: ConnectionId) {
        let mine = self
            .by_connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
            .unwrap_or_default();
        if mine.is_empty() {
            return;
        }
        let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
        for room in mine {
            if let Some(r) = rooms.get_mut(&room) {
                r.members.retain(|m| m.id != id);
                if r.members.is_empty() {
                    rooms.remove(&room);
                }
            }
        }
    }

    fn broadcast(
        &self,
        room: &str,
        method: &str,
        params: &RawValue,
        except: Option<ConnectionId>,
    ) -> Delivery {
        if !self
            .rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(room)
        {
            return Delivery::default();
        }
        self.deliver(room, &Self::prepare(method, params), except)
    }

    fn rooms_of(&self, id: ConnectionId) -> Vec<String> {
        self.by_connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|v| v.iter().map(|r| r.to_string()).collect())
            .unwrap_or_default()
    }

    fn local_members(&self, room: &str) -> Vec<ConnectionId> {
        self.rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(room)
            .map(|r| r.members.iter().map(|m| m.id).collect())
            .unwrap_or_default()
    }

    fn list(&self) -> BoxFuture<'_, Vec<RoomInfo>> {
        let mut list: Vec<RoomInfo> = self
            .rooms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, r)| RoomInfo {
                name: name.to_string(),
                members: r.members.len(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Box::pin(std::future::ready(list))
    }
}
