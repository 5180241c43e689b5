//! Echo server on fastwebsockets, in the style of its `echo_server`
//! example: hyper serves the HTTP/1.1 upgrade (`upgrade` feature), and each
//! connection runs a `FragmentCollector` read/write loop, `unconstrained`
//! as in that example.

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};

fn main() -> std::io::Result<()> {
    let addr = side_by_side_peers::listen_addr("fastwebsockets-echo");
    side_by_side_peers::runtime().block_on(async move {
        let listener = side_by_side_peers::bind(addr)?;
        loop {
            let tcp = side_by_side_peers::accept(&listener).await;
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(tcp);
                let _ = http1::Builder::new()
                    .serve_connection(io, service_fn(upgrade_request))
                    .with_upgrades()
                    .await;
            });
        }
    })
}

async fn upgrade_request(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = tokio::task::unconstrained(echo(fut)).await;
    });
    Ok(response)
}

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}
