//! Upgrades of requests served by hyper 1.x (feature `hyper`).
//!
//! [`upgrade`] checks the request, lets a callback accept or refuse it,
//! negotiates the subprotocol and permessage-deflate, and returns the 101
//! response for the service to return, with a [`PendingUpgrade`] that
//! resolves to the [`WebSocket`] once hyper hands the connection over. The
//! connection then has what was negotiated in force and every limit of the
//! [`Config`] given. Serve the connection with upgrades enabled
//! (`http1::Builder::serve_connection(..).with_upgrades()`).
//!
//! ```no_run
//! use http::{Request, Response};
//! use hyper::body::Incoming;
//! use ws_net::server::Accept;
//!
//! async fn service(mut req: Request<Incoming>) -> Result<Response<String>, hyper::Error> {
//!     let config = ws_net::Config::default();
//!     let (response, pending) = match ws_net::hyper::upgrade(&mut req, &config, |r| {
//!         Ok(Accept::default().protocol(r.select_protocol(&["chat"]).unwrap_or("chat")))
//!     }) {
//!         Ok(ok) => ok,
//!         Err(refused) => return Ok(refused.into_response()),
//!     };
//!     tokio::spawn(async move {
//!         let Ok(mut ws) = pending.await else { return };
//!         while let Some(Ok(msg)) = ws.recv().await {
//!             if msg.is_data() && ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//!     Ok(response)
//! }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::config::Config;
use crate::conn::WebSocket;
use crate::server::{Accept, Reject, Upgrade, UpgradeError, UpgradeRequest};

/// Accept or refuse an upgrade request served by hyper; see the [module
/// docs](self). On success, return the response from the service and await
/// the [`PendingUpgrade`] (in a spawned task: hyper sends the response
/// only once the service returns). On failure, return
/// [`UpgradeError::into_response`]: the request's error status (400, 405,
/// 426 with `Sec-WebSocket-Version: 13`, 431) or the callback's refusal.
pub fn upgrade<B, F>(
    request: &mut http::Request<B>,
    config: &Config,
    decide: F,
) -> Result<(http::Response<String>, PendingUpgrade), UpgradeError>
where
    F: FnOnce(&UpgradeRequest) -> Result<Accept, Reject>,
{
    let (response, upgrade) = crate::server::upgrade(request, config, decide)?;
    let on_upgrade = hyper::upgrade::on(request);
    let response = response.map(|()| String::new());
    Ok((
        response,
        PendingUpgrade {
            on_upgrade,
            upgrade: Some(upgrade),
        },
    ))
}

/// The connection of an accepted upgrade, once hyper has sent the 101 and
/// handed the transport over. Fails when the connection was not served
/// with upgrades enabled, or closed before the upgrade.
#[must_use = "the connection is only made when this is awaited"]
pub struct PendingUpgrade {
    on_upgrade: OnUpgrade,
    upgrade: Option<Upgrade>,
}

impl PendingUpgrade {
    /// Record the peer's address on the connection to be made.
    pub fn peer_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.upgrade = self.upgrade.map(|u| u.peer_addr(addr));
        self
    }

    /// What the handshake agreed: the subprotocol.
    pub fn protocol(&self) -> Option<&str> {
        self.upgrade.as_ref().and_then(Upgrade::protocol)
    }

    pub(crate) fn from_parts(on_upgrade: OnUpgrade, upgrade: Upgrade) -> Self {
        Self {
            on_upgrade,
            upgrade: Some(upgrade),
        }
    }
}

impl std::fmt::Debug for PendingUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingUpgrade")
            .field("upgrade", &self.upgrade)
            .finish_non_exhaustive()
    }
}

impl Future for PendingUpgrade {
    type Output = Result<WebSocket, hyper::Error>;

    /// Cancel-safe in the sense that dropping it drops the connection.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.upgrade.is_none() {
            // Polled again after it completed.
            return Poll::Pending;
        }
        let upgraded = match std::task::ready!(Pin::new(&mut self.on_upgrade).poll(cx)) {
            Ok(upgraded) => upgraded,
            Err(e) => {
                self.upgrade = None;
                return Poll::Ready(Err(e));
            }
        };
        match self.upgrade.take() {
            Some(upgrade) => Poll::Ready(Ok(upgrade.into_websocket(TokioIo::new(upgraded)))),
            None => Poll::Pending,
        }
    }
}
