//! An axum 0.8 extractor for WebSocket upgrades (feature `axum`).
//!
//! [`WebSocketUpgrade`] checks the request as it is extracted (a bad one is
//! refused with its status: 400, 405, 426 with `Sec-WebSocket-Version: 13`),
//! takes builder settings (the [`Config`], the subprotocols the server
//! speaks, extra response headers), and [`on_upgrade`] answers 101 and runs
//! a callback with the [`WebSocket`] once axum hands the connection over.
//! The subprotocol and permessage-deflate agreed are in force on it, and
//! every limit of the `Config`. A handler that refuses (no token, a bad
//! origin) returns its own response before calling `on_upgrade`.
//!
//! ```no_run
//! use axum::{response::Response, routing::get, Router};
//! use ws_net::axum::WebSocketUpgrade;
//!
//! async fn chat(ws: WebSocketUpgrade) -> Response {
//!     ws.protocols(["chat.v1"]).on_upgrade(|mut ws| async move {
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if msg.is_data() && ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! # async fn serve() {
//! let app = Router::new().route("/chat", get(chat));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! axum::serve(
//!     listener,
//!     app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
//! )
//! .await
//! .unwrap();
//! # }
//! ```
//!
//! [`on_upgrade`]: WebSocketUpgrade::on_upgrade

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use hyper::upgrade::OnUpgrade;

use crate::config::Config;
use crate::conn::WebSocket;
use crate::server::{Accept, UpgradeRequest};
use ws_proto::HandshakeError;

/// The WebSocket upgrade of a request, as an axum extractor; see the
/// [module docs](self).
pub struct WebSocketUpgrade {
    /// The request's head, for the handshake.
    head: http::Request<()>,
    /// The request, checked as an upgrade.
    request: UpgradeRequest,
    on_upgrade: OnUpgrade,
    peer_addr: Option<SocketAddr>,
    config: Config,
    protocols: Vec<String>,
    headers: HeaderMap,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("request", &self.request)
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = UpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut head = http::Request::new(());
        *head.method_mut() = parts.method.clone();
        *head.uri_mut() = parts.uri.clone();
        *head.version_mut() = parts.version;
        *head.headers_mut() = parts.headers.clone();
        let request = UpgradeRequest::from_http(&head).map_err(UpgradeRejection::Invalid)?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(UpgradeRejection::NotUpgradable)?;
        let peer_addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(Self {
            head,
            request,
            on_upgrade,
            peer_addr,
            config: Config::default(),
            protocols: Vec::new(),
            headers: HeaderMap::new(),
        })
    }
}

impl WebSocketUpgrade {
    /// The connection's settings (limits, timers, write buffer,
    /// permessage-deflate).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The subprotocols this server speaks: the first of the client's
    /// offers that is among them is chosen (none if none is).
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Add a header to the 101 response (a cookie, for example).
    pub fn response_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// The upgrade request: path, query, headers, the subprotocols offered.
    pub fn request(&self) -> &UpgradeRequest {
        &self.request
    }

    /// The subprotocol that will be chosen.
    pub fn selected_protocol(&self) -> Option<&str> {
        self.request.select_protocol(&self.protocols)
    }

    /// The client's address, when the app is served with
    /// `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// Answer 101 and run `callback` with the connection once axum hands it
    /// over (in a task of its own). A request the settings refuse (a header
    /// count or size over the config's handshake limits) gets its error
    /// status instead, and `callback` does not run.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let protocol = self.selected_protocol().map(str::to_owned);
        let headers = self.headers;
        let decided = crate::server::upgrade(&self.head, &self.config, |_| {
            let mut accept = Accept::default();
            accept.protocol = protocol;
            accept.headers = headers;
            Ok(accept)
        });
        let (response, mut upgrade) = match decided {
            Ok(ok) => ok,
            Err(e) => return e.into_response().into_response(),
        };
        if let Some(addr) = self.peer_addr {
            upgrade = upgrade.peer_addr(addr);
        }
        let pending = crate::hyper::PendingUpgrade::from_parts(self.on_upgrade, upgrade);
        tokio::spawn(async move {
            match pending.await {
                Ok(ws) => callback(ws).await,
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        response.map(|()| axum::body::Body::empty())
    }
}

/// Why a request is not a WebSocket upgrade: answered with the matching
/// status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeRejection {
    /// Not a valid upgrade request (400, 405, 426...).
    #[error("invalid WebSocket upgrade: {0}")]
    Invalid(HandshakeError),
    /// The connection cannot be upgraded (not served by hyper with upgrades,
    /// or HTTP/2): 426.
    #[error("connection cannot be upgraded")]
    NotUpgradable,
}

impl UpgradeRejection {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(e) => e.status(),
            Self::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
        }
    }
}

impl IntoResponse for UpgradeRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid(e) => ws_proto::handshake::error_refusal(&e).into_response(),
            Self::NotUpgradable => (
                StatusCode::UPGRADE_REQUIRED,
                "connection cannot be upgraded\n",
            )
                .into_response(),
        }
    }
}
