//! The client's connection task: connect, subscribe again and run the
//! reconnect hook, send what waited, read answers and notifications, and
//! on a drop fail what was in flight and start over after a backoff.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use ws_net::{ClientBuilder as WsClientBuilder, Message, WsReader, WsWriter};

use super::streams::{SubEvent, SubscriptionEnd};
use super::{Client, ConnectionState, Inner, ReconnectHook};
use crate::error::{code, ClientError, RpcError};
use crate::wire::{self, RawObject};

pub(super) async fn run(client: Client, ws: WsClientBuilder, hook: Option<ReconnectHook>) {
    let inner = client.inner.clone();
    let backoff = inner.config.backoff.clone();
    let mut attempt: u32 = 0;
    let mut reconnecting = false;
    loop {
        if inner.lock().closed {
            break;
        }
        let connected = tokio::select! {
            r = ws.clone().connect() => r,
            _ = inner.wake.notified() => continue,
        };
        let socket = match connected {
            Ok((socket, _)) => socket,
            Err(e) => {
                tracing::debug!(error = %e, attempt, "connect failed");
                inner.lock().last_error = Some(e);
                let give_up = !inner.config.reconnect
                    || backoff.max_attempts.is_some_and(|m| attempt + 1 >= m);
                if give_up {
                    break;
                }
                if !wait(&inner, attempt).await {
                    break;
                }
                attempt += 1;
                continue;
            }
        };
        let (mut reader, writer) = socket.split();
        {
            let mut st = inner.lock();
            if st.closed {
                break;
            }
            st.priority_writer = Some(writer.clone());
        }
        let setup = setup(&client, &writer, hook.as_ref(), reconnecting);
        let read = read_loop(&inner, &mut reader);
        tokio::pin!(read);
        let open = tokio::select! {
            _ = setup => true,
            _ = &mut read => false,
        };
        if open {
            tokio::select! {
                _ = &mut read => {}
                _ = closed(&inner) => {
                    let _ = writer.close(ws_net::CloseCode::NORMAL, "").await;
                    // Read the server's close reply, for a clean close.
                    let _ = ws_net::time::timeout(
                        std::time::Duration::from_secs(2),
                        &mut read,
                    )
                    .await;
                }
            }
        }
        disconnected(&inner);
        reconnecting = true;
        if inner.lock().closed || !inner.config.reconnect {
            break;
        }
        tracing::debug!("connection dropped; reconnecting");
        if !wait(&inner, 0).await {
            break;
        }
        attempt = 1;
    }
    shut(&inner);
}

/// Wait out the backoff before attempt `attempt + 1`; false if the client
/// was closed meanwhile.
async fn wait(inner: &Inner, attempt: u32) -> bool {
    let delay = inner.config.backoff.delay(attempt);
    inner.status.send_replace(ConnectionState::Reconnecting {
        attempt: attempt + 1,
        retry_in: delay,
    });
    tokio::select! {
        _ = ws_net::time::sleep(delay) => !inner.lock().closed,
        _ = closed(inner) => false,
    }
}

/// Resolves once the client is closed.
async fn closed(inner: &Inner) {
    loop {
        let woken = inner.wake.notified();
        if inner.lock().closed {
            return;
        }
        woken.await;
    }
}

/// A new connection: subscriptions again, the hook, then what waited, in
/// order; then the client is open.
async fn setup(
    client: &Client,
    writer: &WsWriter,
    hook: Option<&ReconnectHook>,
    reconnecting: bool,
) {
    let inner = &client.inner;
    if reconnecting {
        resubscribe(client).await;
        if let Some(hook) = hook {
            hook(client.priority()).await;
        }
    }
    loop {
        let next = {
            let mut st = inner.lock();
            match st.queue.pop_front() {
                Some(q) => {
                    st.queued_bytes -= q.text.len();
                    if let Some(p) = q.id.and_then(|id| st.pending.get_mut(&id)) {
                        p.sent = true;
                    }
                    q.text
                }
                None => {
                    st.writer = Some(writer.clone());
                    st.priority_writer = None;
                    break;
                }
            }
        };
        if writer.send(Message::Text(next)).await.is_err() {
            // The connection dropped; the read loop sees it.
            std::future::pending::<()>().await;
        }
    }
    inner.status.send_replace(ConnectionState::Open);
}

/// Make every subscription again on the new connection.
async fn resubscribe(client: &Client) {
    let todo: Vec<(u64, String, Option<Box<RawValue>>)> = {
        let st = client.inner.lock();
        st.subs
            .iter()
            .filter(|(_, e)| e.resubscribe)
            .map(|(local, e)| (*local, e.subscribe.clone(), e.params.clone()))
            .collect()
    };
    let priority = client.priority();
    for (local, method, params) in todo {
        let r = priority.subscribe_raw(local, &method, params).await;
        let mut st = client.inner.lock();
        match r {
            Ok(()) => {}
            Err(e) => {
                if let Some(entry) = st.remove_sub(local) {
                    end(&entry.end, SubscriptionEnd::ResubscribeFailed(e));
                }
            }
        }
    }
}

/// Read until the connection ends, handing answers and notifications on.
async fn read_loop(inner: &Inner, reader: &mut WsReader) {
    while let Some(msg) = reader.recv().await {
        match msg {
            Ok(Message::Text(t)) => dispatch(inner, t.as_str()),
            Ok(Message::Binary(b)) => match std::str::from_utf8(&b) {
                Ok(text) => dispatch(inner, text),
                Err(_) => tracing::debug!("a binary message from the server that is not UTF-8"),
            },
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "connection failed");
                break;
            }
        }
    }
}

/// One message from the server: an answer, a batch of answers, or a
/// notification. Anything else is logged and dropped (never fatal).
fn dispatch(inner: &Inner, text: &str) {
    if text.bytes().find(|b| !b.is_ascii_whitespace()) == Some(b'[') {
        match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(items) => {
                for item in items {
                    dispatch(inner, item.get());
                }
            }
            Err(e) => tracing::debug!(error = %e, "unreadable message from the server"),
        }
        return;
    }
    let object = match serde_json::from_str::<RawObject<'_>>(text) {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(error = %e, "unreadable message from the server");
            return;
        }
    };
    if let Some(method) = object.method {
        if object.id.is_none() {
            notification(inner, method, object.params);
        } else {
            tracing::debug!("the server sent a request; this client answers none");
        }
        return;
    }
    let Some(id) = object
        .id
        .and_then(|i| serde_json::from_str::<u64>(i.get()).ok())
    else {
        tracing::debug!("an answer without a usable id");
        return;
    };
    let mut st = inner.lock();
    let Some(pending) = st.pending.remove(&id) else {
        return;
    };
    let outcome = match (object.result, object.error) {
        (Some(r), None) => Ok(r.to_owned()),
        (_, Some(e)) => Err(ClientError::Rpc(
            serde_json::from_str::<RpcError>(e.get())
                .unwrap_or_else(|_| RpcError::new(code::INTERNAL_ERROR, "unreadable error object")),
        )),
        (None, None) => Err(ClientError::Rpc(RpcError::new(
            code::INTERNAL_ERROR,
            "an answer with neither result nor error",
        ))),
    };
    // A subscription's id is bound here, before the next message (maybe
    // its first item) is read.
    if let (Some(local), Ok(result)) = (pending.subscription, &outcome) {
        match serde_json::from_str::<serde_json::Value>(result.get()) {
            Ok(id) => st.set_server_id(local, id),
            Err(e) => tracing::debug!(error = %e, "a subscription id that is not JSON"),
        }
    }
    drop(st);
    let _ = pending.tx.send(outcome);
}

/// The parameters of a subscription's notification.
#[derive(Deserialize)]
struct SubParams<'a> {
    subscription: serde_json::Value,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(default)]
    dropped: Option<u64>,
}

fn notification(inner: &Inner, method: &RawValue, params: Option<&RawValue>) {
    if let Some(p) = params {
        if let Ok(sp) = serde_json::from_str::<SubParams<'_>>(p.get()) {
            if subscription_item(inner, sp) {
                return;
            }
        }
    }
    let Some(method) = wire::json_str(method) else {
        return;
    };
    let st = inner.lock();
    if let Some(tx) = st.notifications.get(&*method) {
        let params = params
            .map(|p| Arc::from(p.to_owned()))
            .unwrap_or_else(|| Arc::from(RawValue::NULL.to_owned()));
        // No receiver left is not an error: nobody listens now.
        let _ = tx.send(params);
    }
}

/// Hand a subscription's notification to its stream; false if no
/// subscription of this client has that id.
fn subscription_item(inner: &Inner, sp: SubParams<'_>) -> bool {
    let mut st = inner.lock();
    let Some(&local) = st.by_server.get(&sp.subscription.to_string()) else {
        return false;
    };
    let Some(entry) = st.subs.get(&local) else {
        return false;
    };
    let event = match (sp.result, sp.error, sp.dropped) {
        (Some(r), _, _) => SubEvent::Item(r.to_owned()),
        (None, None, Some(n)) => SubEvent::Dropped(n),
        (None, Some(e), _) => {
            let error = serde_json::from_str::<RpcError>(e.get())
                .unwrap_or_else(|_| RpcError::new(code::INTERNAL_ERROR, e.get().to_owned()));
            let why = if error.code == code::SUBSCRIPTION_LAGGED {
                SubscriptionEnd::Lagged
            } else {
                SubscriptionEnd::Error(error)
            };
            if let Some(entry) = st.remove_sub(local) {
                end(&entry.end, why);
            }
            return true;
        }
        (None, None, None) => return true,
    };
    if entry.tx.try_send(event).is_err() {
        // The stream is not read fast enough: it ends, and the server is
        // told (its answer is not waited for).
        if let Some(entry) = st.remove_sub(local) {
            end(&entry.end, SubscriptionEnd::Lagged);
            tracing::debug!(
                method = entry.unsubscribe,
                "subscription stream lagged; ended"
            );
            if let (Some(id), Some(w)) = (entry.server_id, st.writer.clone()) {
                let n = st.next_id();
                let mut out = String::new();
                let params = wire::to_raw(&[id]).ok();
                wire::write_request(&mut out, n, &entry.unsubscribe, params.as_deref());
                let _ = w.try_send(Message::Text(out.into()));
            }
        }
    }
    true
}

fn end(slot: &std::sync::Mutex<Option<SubscriptionEnd>>, why: SubscriptionEnd) {
    slot.lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert(why);
}

/// The connection dropped: calls that went out fail (they may or may not
/// have run), queued ones stay; subscriptions wait to be made again.
fn disconnected(inner: &Inner) {
    let mut st = inner.lock();
    st.writer = None;
    st.priority_writer = None;
    let sent: Vec<u64> = st
        .pending
        .iter()
        .filter(|(_, p)| p.sent)
        .map(|(id, _)| *id)
        .collect();
    for id in sent {
        if let Some(p) = st.pending.remove(&id) {
            let _ = p.tx.send(Err(ClientError::Disconnected));
        }
    }
    st.by_server.clear();
    for entry in st.subs.values_mut() {
        if entry.server_id.take().is_some() {
            entry.resubscribe = true;
        }
    }
}

/// The client is over: everything waiting fails, every stream ends.
fn shut(inner: &Inner) {
    let mut st = inner.lock();
    st.closed = true;
    st.writer = None;
    st.priority_writer = None;
    for (_, p) in st.pending.drain() {
        let _ = p.tx.send(Err(ClientError::Closed));
    }
    st.queue.clear();
    st.queued_bytes = 0;
    let why = if inner.config.reconnect {
        SubscriptionEnd::Closed
    } else {
        SubscriptionEnd::Disconnected
    };
    for (_, entry) in st.subs.drain() {
        end(&entry.end, why.clone());
    }
    st.by_server.clear();
    st.notifications.clear();
    drop(st);
    inner.status.send_replace(ConnectionState::Closed);
}
