//! The chat: rooms with members and the last messages, over ws-rpc.
//!
//! Methods (JSON-RPC 2.0, params as an object):
//! - `chat.join {room, name}` -> `{room, name, node, members, messages}`:
//!   the members' names and the room's last messages (at most 100), oldest
//!   first, as this node has them; the others get `chat.joined {room,
//!   name, node, members}` (`members`: the joiner's node's list; with
//!   several nodes, a client adds `name` to what it has instead).
//! - `chat.send {room, text, client_id?}` -> `{seq, time, node}`: the
//!   message goes to every member (the sender too) as `chat.message {room,
//!   node, seq, sender, text, time, client_id?}`, `seq` counting the room's
//!   messages from 1 on the node that took it (`node`: that server
//!   process's id, new at each start), `time` in milliseconds since the
//!   Unix epoch, and the sender's `client_id` (at most 64 characters)
//!   echoed, so a client can tell its own message apart exactly. A message
//!   is known by `node` and `seq` together: with several nodes (`--redis`)
//!   each numbers its own, and a restarted node starts again from 1 under a
//!   new id.
//! - `chat.leave {room}` -> `true` if the connection was in it; the others
//!   get `chat.left {room, name, node, members}` (also when a connection
//!   closes).
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
    node: Arc<str>,
    seq: u64,
    sender: String,
    text: String,
    time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
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
pub struct Chat {
    rooms: Mutex<HashMap<Arc<str>, Room>>,
    /// This process's id: new at each start.
    node: Arc<str>,
}

impl Default for Chat {
    fn default() -> Self {
        Self {
            rooms: Mutex::default(),
            node: format!("{:08x}", random_u32()).into(),
        }
    }
}

/// 32 random bits from the standard library's hash keys, which it draws
/// from the operating system's random source.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.finish() as u32
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
                &serde_json::json!({ "room": &*room, "name": name, "node": &*self.node, "members": members }),
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
    #[serde(default)]
    client_id: Option<String>,
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
            &serde_json::json!({ "room": p.room, "name": name, "node": &*chat.node, "members": members }),
        );
    }
    Ok(serde_json::json!({
        "room": p.room,
        "name": name,
        "node": &*chat.node,
        "members": members,
        "messages": messages,
    }))
}

fn send(chat: &Chat, p: SendParams, cx: &Context) -> Result<serde_json::Value, RpcError> {
    valid_text(&p.text)?;
    if p.client_id.as_ref().is_some_and(|c| c.chars().count() > 64) {
        return Err(RpcError::invalid_params("client_id: at most 64 characters"));
    }
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
            node: chat.node.clone(),
            seq: room.seq,
            sender,
            text: p.text,
            time: now_ms(),
            client_id: p.client_id,
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
    Ok(serde_json::json!({ "seq": message.seq, "time": message.time, "node": &*message.node }))
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
        &serde_json::json!({ "room": room, "name": left.0, "node": &*chat.node, "members": left.1 }),
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

    async fn next(s: &mut ws_rpc::Notifications<serde_json::Value>) -> serde_json::Value {
        tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("a notification within 5 s")
            .expect("the stream open")
            .expect("nothing missed")
    }

    /// A message is known by its node and seq; the sender's `client_id`
    /// comes back to every member; the events name the node.
    #[tokio::test]
    async fn messages_carry_their_node_and_the_senders_client_id() {
        use serde_json::{json, Value};

        let chat = Arc::new(Chat::default());
        let node = chat.node.to_string();
        let server = ws_rpc::Server::builder().build(router(chat));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        tokio::spawn(server.clone().serve(listener));
        let ann = ws_rpc::Client::builder(&url).connect().await.unwrap();
        let bob = ws_rpc::Client::builder(&url).connect().await.unwrap();
        let mut ann_events = ann.notifications::<Value>("chat.joined");
        let mut bob_messages = bob.notifications::<Value>("chat.message");

        let r: Value = ann
            .request("chat.join", json!({"room": "lobby", "name": "Ann"}))
            .await
            .unwrap();
        assert_eq!(r["node"], json!(node));
        assert_eq!(r["members"], json!(["Ann"]));
        let r: Value = bob
            .request("chat.join", json!({"room": "lobby", "name": "Bob"}))
            .await
            .unwrap();
        assert_eq!(r["members"], json!(["Ann", "Bob"]));
        let joined = next(&mut ann_events).await;
        assert_eq!(
            joined,
            json!({"room": "lobby", "name": "Bob", "node": node, "members": ["Ann", "Bob"]})
        );

        let r: Value = ann
            .request(
                "chat.send",
                json!({"room": "lobby", "text": "hi", "client_id": "page-1"}),
            )
            .await
            .unwrap();
        assert_eq!((&r["seq"], &r["node"]), (&json!(1), &json!(node)));
        let m = next(&mut bob_messages).await;
        assert_eq!(m["seq"], 1);
        assert_eq!(m["node"], json!(node));
        assert_eq!(m["sender"], "Ann");
        assert_eq!(m["client_id"], "page-1");
        // Without one, none is sent; a long one is refused.
        let _: Value = ann
            .request("chat.send", json!({"room": "lobby", "text": "again"}))
            .await
            .unwrap();
        let m = next(&mut bob_messages).await;
        assert_eq!(m["seq"], 2);
        assert!(m.get("client_id").is_none(), "{m}");
        let long = "x".repeat(65);
        let e = ann
            .request::<Value, _>(
                "chat.send",
                json!({"room": "lobby", "text": "no", "client_id": long}),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, ws_rpc::ClientError::Rpc(ref o) if o.code == -32602),
            "{e:?}"
        );

        // A newcomer gets the history with the same identities.
        let cat = ws_rpc::Client::builder(&url).connect().await.unwrap();
        let r: Value = cat
            .request("chat.join", json!({"room": "lobby", "name": "Cat"}))
            .await
            .unwrap();
        let ids: Vec<_> = r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["node"].clone(),
                    m["seq"].clone(),
                    m.get("client_id").cloned(),
                )
            })
            .collect();
        assert_eq!(
            ids,
            [
                (json!(node), json!(1), Some(json!("page-1"))),
                (json!(node), json!(2), None)
            ]
        );
        // Another process's chat has another id.
        assert_ne!(&*Chat::default().node, node.as_str());
    }
}
