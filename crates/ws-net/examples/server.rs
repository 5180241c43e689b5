//! An echo server that checks each request before it accepts it: the
//! `Origin` and the subprotocol, refusing with a status otherwise.
//!
//!     cargo run -p ws-net --example server -- 127.0.0.1:9001
use http::StatusCode;
use ws_net::server::{Accept, Reject};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener =
        ws_net::server::bind(addr.parse().expect("an address such as 127.0.0.1:9001")).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    loop {
        let (tcp, peer) = listener.accept().await?;
        tokio::spawn(async move {
            let accepted = ws_net::server::accept_with(tcp, ws_net::Config::default(), |req| {
                if req
                    .origin()
                    .is_some_and(|o| !o.starts_with("http://127.0.0.1"))
                {
                    return Err(Reject::new(StatusCode::FORBIDDEN, "origin not allowed"));
                }
                let mut accept = Accept::default();
                accept.protocol = req.select_protocol(&["echo.v1"]).map(str::to_owned);
                Ok(accept)
            })
            .await;
            let mut ws = match accepted {
                Ok(ws) => ws,
                Err(e) => return eprintln!("{peer}: {e}"),
            };
            while let Some(msg) = ws.recv().await {
                match msg {
                    Ok(msg) if msg.is_data() => {
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("{peer}: {e}"),
                }
            }
        });
    }
}
