//! The server's message path without a socket, for benchmarks and fuzz
//! targets: a message in, its answer out (parse, dispatch through a
//! router, encode), and rooms of many members whose connections discard
//! what they are sent. Not a stable API.

use std::sync::Arc;

use ws_net::{Role, WebSocket, WsReader};

use crate::server::connection::{context, Connection};
use crate::server::outbox::{Bound, Outbox};
use crate::server::{LocalRooms, Member, Rooms, Router, Server, ServerConfig};

/// A connection that writes into nothing and reads nothing.
fn discarding_socket() -> WebSocket {
    let io = tokio::io::join(tokio::io::empty(), tokio::io::sink());
    let mut config = ws_net::Config::default();
    config.protocol.ping_interval = None;
    WebSocket::from_raw(io, Role::Server, config)
}

/// One server connection's call path, over a connection that discards
/// what it is sent.
pub struct Harness {
    rt: tokio::runtime::Runtime,
    conn: Connection<Router>,
    _reader: WsReader,
}

impl Harness {
    /// A connection of a server with `router` and the default config.
    pub fn new(router: Router) -> Self {
        Self::with_config(router, ServerConfig::default())
    }

    /// The same with `config`.
    pub fn with_config(router: Router, config: ServerConfig) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let server = Server::builder().config(config).build(router.clone());
        let (reader, conn) = rt.block_on(async {
            let ws = discarding_socket();
            let id = ws.id();
            let (reader, writer) = ws.split();
            let outbox = Arc::new(Outbox::new(writer, 4096, 16 << 20));
            let cx = context(
                &outbox,
                id,
                None,
                http::Request::new(()),
                None,
                server.shared(),
            );
            let conn = Connection::new(cx, server.shared().clone(), router, true);
            (reader, conn)
        });
        Self {
            rt,
            conn,
            _reader: reader,
        }
    }

    /// Handle one message: its answer, if it gets one.
    pub fn message(&mut self, text: &[u8]) -> Option<String> {
        let fut = match std::str::from_utf8(text) {
            Ok(text) => self.conn.handle(ws_net::Utf8Bytes::from(text))?,
            Err(_) => crate::server::connection::parse_error(),
        };
        self.rt.block_on(fut).text
    }
}

/// Rooms whose members' connections discard what they are sent.
pub struct Crowd {
    rt: tokio::runtime::Runtime,
    /// The registry.
    pub rooms: Arc<LocalRooms>,
    _sockets: Vec<WsReader>,
}

impl Crowd {
    /// `members` connections in the room `room`.
    pub fn new(room: &str, members: usize) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
        let rooms = Arc::new(LocalRooms::new());
        let sockets = rt.block_on(async {
            (0..members)
                .map(|_| {
                    let ws = discarding_socket();
                    let id = ws.id();
                    let (reader, writer) = ws.split();
                    let outbox = Arc::new(Outbox::new(writer, 4096, 16 << 20));
                    let bound = Bound {
                        items: 1024,
                        policy: Default::default(),
                    };
                    rooms.join(room, Member::new(id, outbox, bound));
                    reader
                })
                .collect()
        });
        Self {
            rt,
            rooms,
            _sockets: sockets,
        }
    }

    /// Broadcast once; how many members it reached. Runs the connections'
    /// tasks a little, so their writes happen.
    pub fn broadcast(
        &self,
        room: &str,
        method: &str,
        params: &serde_json::value::RawValue,
    ) -> usize {
        let d = self.rooms.broadcast(room, method, params, None);
        self.rt.block_on(tokio::task::yield_now());
        d.sent
    }
}
