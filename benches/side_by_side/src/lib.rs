//! What the three peer echo servers share: the command line, the listener
//! (backlog 1024, like `ws echo`), and the runtime (one thread); and, in
//! [`floor`], what the two floor servers share.

use std::io::Write;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

pub mod floor;
pub mod rpc;

/// The listen backlog, the same as `ws_net::server::bind`.
pub const BACKLOG: u32 = 1024;

/// `NAME --listen ADDR`; exits with a usage message otherwise.
pub fn listen_addr(name: &str) -> SocketAddr {
    let usage = || -> ! {
        eprintln!("usage: {name} --listen ADDR   (example: {name} --listen 127.0.0.1:9001)");
        std::process::exit(2)
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, addr] if flag == "--listen" => addr.parse().unwrap_or_else(|_| usage()),
        [flag] if flag.starts_with("--listen=") => flag["--listen=".len()..]
            .parse()
            .unwrap_or_else(|_| usage()),
        _ => usage(),
    }
}

/// A single-threaded tokio runtime.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Bind with `SO_REUSEADDR` and a backlog of [`BACKLOG`], and print
/// `listening on ws://ADDR` (the benchmark script waits for that line).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(BACKLOG)?;
    println!("listening on ws://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    Ok(listener)
}

/// Accept the next connection with `TCP_NODELAY` set. Accept errors (out of
/// file descriptors) are reported and retried after a short pause.
pub async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                return tcp;
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
