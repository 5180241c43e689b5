//! The chat: rooms with members and the last messages, over ws-rpc.
//!
//! Methods (JSON-RPC 2.0, params as an object):
//! - `chat.join {room, name}` -> `{room, name, members, messages}`: the
//!   members' names and the room's last messages (at most 100), oldest
//!   first; the others get `chat.joined {room, name, members}`.
//! - `chat.send {room, text}` -> `{seq, time}`: the message goes to every
//!   member (the sender too) as `chat.message {room, seq, sender, text,
//!   time}`, `seq` counting the room's messages from 1, `time` in
//!   milliseconds since the Unix epoch.
//! - `chat.leave {room}` -> `true` if the connection was in it; the others
//!   get `chat.left {room, name, members}` (also when a connection closes).
//! - `chat.rooms` -> `[{name, members}]`, by name.
//! - `subscribe_clock {interval_ms}` / `unsubscribe_clock [id]`: items
//!   `{n, time}` every `interval_ms` (10..=60000, default 1000) under
//!   `clock`.
//!
//! Limits: room names 1-32 of `a-z 0-9 - _`; names 1-32 characters, no
//! control characters; texts 1-2000 characters, not only spaces; 10
//! messages per second per connection; 10 rooms per connection; 1000
//! rooms.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use ws_net::ConnectionId;
use ws_rpc::{Context, Router, RpcError, SubscriptionSink};

/// Messages a room keeps for newcomers.
pub const HISTORY: usize = 100;
/// Messages per second a connection may send.
pub const RATE: usize = 10;
const MAX_NAME: usize = 32;
const MAX_TEXT: usize = 2000;
const MAX_ROOMS_PER_CONNECTION: usize = 10;
const MAX_ROOMS: usize = 1000;

/// Error codes of the chat (outside JSON-RPC's reserved range).
pub mod code {
    /// The connection is not in that room.
    pub const NOT_A_MEMBER: i32 = 4003;
    /// Too many messages: at most [`super::RATE`] per second.
    pub const RATE_LIMITED: i32 = 4029;
    /// Too many rooms (per connection, or in all).
    pub const TOO_MANY_ROOMS: i32 = 4030;
}

/// One message of a room.
#[derive(Debug, Clone, Serialize)]
pub struct ChatMessage {
    room: Arc<str>,
    seq: u64,
    sender: String,
    text: String,
    time: u64,
}

struct Room {
    name: Arc<str>,
    members: Vec<(ConnectionId, String)>,
    history: VecDeque<ChatMessage>,
    seq: u64,
}

impl Room {
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.members.iter().map(|(_, n)| n.clone()).collect();
        names.sort();
        names
    }
}

/// Every room of this server.
#[derive(Default)]
pub struct Chat {
    rooms: Mutex<HashMap<Arc<str>, Room>>,
}

impl Chat {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Room>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection is gone: it leaves every room it was in, and each is
    /// told.
    pub fn disconnected(&self, cx: &Context) {
        let id = cx.connection_id();
        let mut left = Vec::new();
        {
            let mut rooms = self.lock();
            rooms.retain(|name, room| {
                if let Some(i) = room.members.iter().position(|(c, _)| *c == id) {
                    let (_, who) = room.members.remove(i);
                    left.push((name.clone(), who, room.names()));
                }
                !room.members.is_empty()
            });
        }
        for (room, name, members) in left {
            let _ = cx.broadcast_others(
                &room,
                "chat.left",
                &serde_json::json!({ "room": &*room, "name": name, "members": members }),
            );
        }
    }
}

#[derive(Deserialize)]
struct JoinParams {
    room: String,
    name: String,
}

#[derive(Deserialize)]
struct SendParams {
    room: String,
    text: String,
}

#[derive(Deserialize)]
struct RoomParams {
    room: String,
}

#[derive(Deserialize, Default)]
struct ClockParams {
    #[serde(default)]
    interval_ms: Option<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn valid_room(room: &str) -> Result<(), RpcError> {
    let ok = !room.is_empty()
        && room.len() <= MAX_NAME
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(RpcError::invalid_params(
            "room: 1 to 32 characters of a-z, 0-9, - and _",
        ))
    }
}

fn valid_name(name: &str) -> Result<(), RpcError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME || name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(RpcError::invalid_params(
            "name: 1 to 32 characters, not only spaces, no control characters",
        ));
    }
    Ok(())
}

fn valid_text(text: &str) -> Result<(), RpcError> {
    let n = text.chars().count();
    if n == 0 || n > MAX_TEXT || text.trim().is_empty() {
        return Err(RpcError::invalid_params(
            "text: 1 to 2000 characters, not only spaces",
        ));
    }
    Ok(())
}

/// The times of a connection's last messages (kept in its context).
#[derive(Clone, Default)]
struct SentTimes(Arc<Mutex<VecDeque<Instant>>>);

/// Whether the connection may send one more message now.
fn allow_message(cx: &Context) -> bool {
    let times = cx.extensions().get_or_insert_default::<SentTimes>().clone();
    let mut times = times.0.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        times.pop_front();
    }
    if times.len() >= RATE {
        return false;
    }
    times.push_back(now);
    true
}

/// The chat's methods over `chat`.
pub fn router(chat: Arc<Chat>) -> Router {
    let join_chat = chat.clone();
    let send_chat = chat.clone();
    let leave_chat = chat;
    Router::new()
        .method("chat.join", move |p: JoinParams, cx: Context| {
            let chat = join_chat.clone();
            async move { join(&chat, p, &cx) }
        })
        .method("chat.send", move |p: SendParams, cx: Context| {
            let chat = send_chat.clone();
            async move { send(&chat, p, &cx) }
        })
        .method("chat.leave", move |p: RoomParams, cx: Context| {
            let chat = leave_chat.clone();
            async move { Ok::<_, RpcError>(leave(&chat, &p.room, &cx)) }
        })
        .method(
            "chat.rooms",
            move |_: serde_json::Value, cx: Context| async move {
                // The room registry's counts: this server's, or every node's
                // with `--redis`. By name.
                Ok::<_, RpcError>(cx.rooms().list().await)
            },
        )
        .subscription(
            "subscribe_clock",
            "clock",
            "unsubscribe_clock",
            |p: Option<ClockParams>, sink: SubscriptionSink, _cx: Context| async move {
                let ms = p
                    .unwrap_or_default()
                    .interval_ms
                    .unwrap_or(1000)
                    .clamp(10, 60_000);
                let mut every = tokio::time::interval(Duration::from_millis(ms));
                every.tick().await;
                for n in 1u64.. {
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = sink.closed() => return,
                    }
                    let item = serde_json::json!({ "n": n, "time": now_ms() });
                    if sink.send(&item).is_err() {
                        return;
                    }
                }
            },
        )
}

fn join(chat: &Chat, p: JoinParams, cx: &Context) -> Result<serde_json::Value, RpcError> {
    valid_room(&p.room)?;
    let name = p.name.trim().to_owned();
    valid_name(&name)?;
    let id = cx.connection_id();
    let (members, messages, fresh) = {
        let mut rooms = chat.lock();
        let mine = rooms
            .values()
            .filter(|r| r.members.iter().any(|(c, _)| *c == id))
            .count();
        let full = rooms.len() >= MAX_ROOMS;
        let room = match rooms.get_mut(p.room.as_str()) {
            Some(room) => room,
            None if full => {
                return Err(RpcError::new(
                    code::TOO_MANY_ROOMS,
                    "too many rooms on this server",
                ))
            }
            None => {
                let name: Arc<str> = p.room.as_str().into();
                rooms.entry(name.clone()).or_insert(Room {
                    name,
                    members: Vec::new(),
                    history: VecDeque::new(),
                    seq: 0,
                })
            }
        };
        let fresh = match room.members.iter().find(|(c, _)| *c == id) {
            Some((_, n)) if *n == name => false,
            Some((_, n)) => {
                return Err(RpcError::invalid_params(format!(
                    "already in this room as {n:?}"
                )))
            }
            None if mine >= MAX_ROOMS_PER_CONNECTION => {
                return Err(RpcError::new(
                    code::TOO_MANY_ROOMS,
                    "at most 10 rooms per connection",
                ))
            }
            None => {
                room.members.push((id, name.clone()));
                // Under the chat's lock: no message falls between the
                // history returned and the broadcasts this member gets.
                cx.join(&p.room);
                true
            }
        };
        (
            room.names(),
            room.history.iter().cloned().collect::<Vec<_>>(),
            fresh,
        )
    };
    if fresh {
        let _ = cx.broadcast_others(
            &p.room,
            "chat.joined",
            &serde_json::json!({ "room": p.room, "name": name, "members": members }),
        );
    }
    Ok(serde_json::json!({
        "room": p.room,
        "name": name,
        "members": members,
        "messages": messages,
    }))
}

fn send(chat: &Chat, p: SendParams, cx: &Context) -> Result<serde_json::Value, RpcError> {
    valid_text(&p.text)?;
    let id = cx.connection_id();
    let message = {
        let mut rooms = chat.lock();
        let Some(room) = rooms.get_mut(p.room.as_str()) else {
            return Err(RpcError::new(
                code::NOT_A_MEMBER,
                "not in this room: join it first",
            ));
        };
        let Some(sender) = room
            .members
            .iter()
            .find(|(c, _)| *c == id)
            .map(|(_, n)| n.clone())
        else {
            return Err(RpcError::new(
                code::NOT_A_MEMBER,
                "not in this room: join it first",
            ));
        };
        if !allow_message(cx) {
            return Err(RpcError::new(
                code::RATE_LIMITED,
                "too many messages: at most 10 per second",
            ));
        }
        room.seq += 1;
        let message = ChatMessage {
            room: room.name.clone(),
            seq: room.seq,
            sender,
            text: p.text,
            time: now_ms(),
        };
        if room.history.len() == HISTORY {
            room.history.pop_front();
        }
        room.history.push_back(message.clone());
        // Broadcast under the lock, so every member gets the room's
        // messages in sequence order.
        if let Ok(raw) = serde_json::value::to_raw_value(&message) {
            cx.rooms()
                .broadcast(&message.room, "chat.message", &raw, None);
        }
        message
    };
    Ok(serde_json::json!({ "seq": message.seq, "time": message.time }))
}

fn leave(chat: &Chat, room: &str, cx: &Context) -> bool {
    let id = cx.connection_id();
    let left = {
        let mut rooms = chat.lock();
        let Some(r) = rooms.get_mut(room) else {
            return false;
        };
        let Some(i) = r.members.iter().position(|(c, _)| *c == id) else {
            return false;
        };
        let (_, name) = r.members.remove(i);
        let members = r.names();
        if r.members.is_empty() {
            rooms.remove(room);
        }
        (name, members)
    };
    cx.leave(room);
    let _ = cx.broadcast_others(
        room,
        "chat.left",
        &serde_json::json!({ "room": room, "name": left.0, "members": left.1 }),
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_rooms_and_texts_are_checked() {
        assert!(valid_room("lobby").is_ok());
        assert!(valid_room("dev-ops_2").is_ok());
        for bad in ["", "Lobby", "a b", "x".repeat(33).as_str(), "ü"] {
            assert_eq!(valid_room(bad).unwrap_err().code, -32602, "{bad:?}");
        }
        assert!(valid_name("Zoë 🦀").is_ok());
        for bad in ["", "   ", "a\nb", &"n".repeat(33)] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
        assert!(valid_text("hello").is_ok());
        for bad in ["", "  \n", &"t".repeat(2001)] {
            assert!(valid_text(bad).is_err(), "{}", bad.len());
        }
    }
}
