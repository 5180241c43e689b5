//! Helpers for ws-rpc's tests: a server on 127.0.0.1 with a port chosen by
//! the kernel, a raw WebSocket peer, bounded waits.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use ws_net::Message;
use ws_rpc::{Router, Server, ServerBuilder, ServerHandle};

/// Every test step is bounded by this.
pub const STEP: Duration = Duration::from_secs(20);

pub async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .expect("test step timed out")
}

/// Serve `router` with `builder` on 127.0.0.1; the address and a handle.
pub async fn serve_with(builder: ServerBuilder, router: Router) -> (SocketAddr, ServerHandle) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = builder.build(router);
    let handle = server.handle();
    tokio::spawn(server.serve(listener));
    (addr, handle)
}

pub async fn serve(router: Router) -> (SocketAddr, ServerHandle) {
    serve_with(Server::builder(), router).await
}

pub fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

/// A raw WebSocket peer: sends text, reads the next text message.
pub struct Raw(pub ws_net::WebSocket);

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        let (ws, _) = within(ws_net::connect(&url(addr))).await.unwrap();
        Self(ws)
    }

    pub async fn send(&mut self, text: &str) {
        self.0.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// The next text message, as JSON; `None` if the connection ends.
    pub async fn recv(&mut self) -> Option<serde_json::Value> {
        loop {
            match within(self.0.recv()).await {
                Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Nothing arrives within `d`.
    pub async fn silent_for(&mut self, d: Duration) -> bool {
        loop {
            match tokio::time::timeout(d, self.0.recv()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(_) => return false,
            }
        }
    }

    pub async fn call(&mut self, text: &str) -> serde_json::Value {
        self.send(text).await;
        self.recv().await.expect("an answer")
    }
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}
