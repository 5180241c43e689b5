//! Broadcast: every message a client sends goes to every connected client,
//! encoded once (`PreparedMessage`) and queued without waiting
//! (`try_send_prepared`), so one slow client never stalls the others: a
//! client whose write buffer is full is closed with 1008.
//!
//!     cargo run -p ws-net --example broadcast -- 127.0.0.1:9001
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ws_net::{CloseCode, ConnectionId, PreparedMessage, TrySendError, WsWriter};

type Clients = Arc<Mutex<HashMap<ConnectionId, WsWriter>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener =
        ws_net::server::bind(addr.parse().expect("an address such as 127.0.0.1:9001")).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    let clients = Clients::default();
    loop {
        let (tcp, _) = listener.accept().await?;
        let clients = clients.clone();
        tokio::spawn(async move {
            let Ok(ws) = ws_net::server::accept(tcp, Default::default()).await else {
                return;
            };
            let (mut reader, writer) = ws.split();
            let id = writer.id();
            clients.lock().unwrap().insert(id, writer);
            while let Some(Ok(msg)) = reader.recv().await {
                if msg.is_data() {
                    broadcast(&clients, PreparedMessage::new(msg));
                }
            }
            clients.lock().unwrap().remove(&id);
        });
    }
}

/// Queue `message` to every client, never waiting on one.
fn broadcast(clients: &Clients, message: PreparedMessage) {
    let mut gone = Vec::new();
    let mut slow = Vec::new();
    for (id, writer) in clients.lock().unwrap().iter() {
        match writer.try_send_prepared(&message) {
            Ok(()) => {}
            Err(TrySendError::Full(())) => slow.push(writer.clone()),
            Err(_) => gone.push(*id),
        }
    }
    let mut clients = clients.lock().unwrap();
    for id in gone {
        clients.remove(&id);
    }
    for writer in slow {
        clients.remove(&writer.id());
        tokio::spawn(async move {
            let _ = writer.close(CloseCode::POLICY_VIOLATION, "too slow").await;
        });
    }
}
