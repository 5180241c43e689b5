//! A client: connect, send each line of standard input as a text message,
//! print every message that comes back.
//!
//!     cargo run -p ws-net --example client -- ws://127.0.0.1:9001/
use tokio::io::AsyncBufReadExt;
use ws_net::{ClientBuilder, CloseCode, Message};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".into());
    let (ws, response) = ClientBuilder::new(&url)?.connect().await?;
    eprintln!("connected to {url} (subprotocol {:?})", response.protocol());
    let (mut reader, writer) = ws.split();
    // Print what arrives, in a task of its own.
    let printer = tokio::spawn(async move {
        while let Some(msg) = reader.recv().await {
            match msg {
                Ok(Message::Text(t)) => println!("{t}"),
                Ok(Message::Binary(b)) => println!("<{} bytes>", b.len()),
                Ok(Message::Close(frame)) => eprintln!("closed by the server: {frame:?}"),
                Ok(_) => {}
                Err(e) => eprintln!("connection failed: {e}"),
            }
        }
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        writer.send(Message::text(line)).await?;
    }
    writer.close(CloseCode::NORMAL, "done").await?;
    printer.await?;
    Ok(())
}
