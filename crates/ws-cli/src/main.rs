//! `ws`: a WebSocket echo server, interactive client, Autobahn testee, load
//! generator and JSON-RPC client.
#![forbid(unsafe_code)]

mod autobahn;
mod bench;
mod connect;
mod echo;
mod rpc;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ws",
    version,
    about = "WebSocket tools: echo server, client, Autobahn testee, load generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the chat-room app: the page at /, JSON-RPC (ws-rpc) at /rpc.
    #[command(
        after_help = "Example:\n  ws serve --listen 127.0.0.1:8080\n  ws serve --listen 127.0.0.1:8080 --token s3cret"
    )]
    Serve(serve::Args),
    /// Run a server that echoes every text and binary message back.
    #[command(
        after_help = "Example:\n  ws echo --listen 127.0.0.1:9001\n  ws echo --listen 127.0.0.1:9001 --threads 2"
    )]
    Echo(echo::Args),
    /// Connect to a server: each stdin line is sent as a message, each
    /// received message printed on its own line.
    #[command(
        after_help = "Example:\n  ws connect ws://127.0.0.1:9001/\n  ws connect wss://example.com/feed --protocol v2 --header 'Authorization: Bearer t'"
    )]
    Connect(connect::Args),
    /// Run the Autobahn|Testsuite client cases against a fuzzing server.
    #[command(
        name = "autobahn-client",
        after_help = "Example:\n  wstest -m fuzzingserver -s autobahn/fuzzingserver.json &\n  ws autobahn-client --url ws://127.0.0.1:9002 --agent ws-rs"
    )]
    AutobahnClient(autobahn::Args),
    /// Load-test an echo server: closed-loop echo throughput and latency
    /// (every echo verified), idle connections, or handshakes per second.
    #[command(
        after_help = "Example:\n  ws echo --listen 127.0.0.1:9001 &\n  ws bench --url ws://127.0.0.1:9001/ -c 64 -s 1k -d 10 --warmup 2\n  ws bench -c 64 -s 16 -p 16 --json --server-pid \"$(pgrep -nx ws)\"\n  ws bench --mode idle -c 10000 -d 5\n  ws bench --mode handshake -c 16 -d 5"
    )]
    Bench(bench::Args),
    /// JSON-RPC 2.0 from the command line: call a method, send a
    /// notification, or print a subscription's items.
    #[command(
        after_help = "Example:\n  ws rpc call ws://127.0.0.1:9944/ subtract '[42, 23]'\n  ws rpc notify ws://127.0.0.1:9944/ update '[1, 2]'\n  ws rpc subscribe ws://127.0.0.1:9944/ subscribe_ticks"
    )]
    Rpc(rpc::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Echo(args) => echo::run(args),
        Command::Connect(args) => connect::run(args),
        Command::AutobahnClient(args) => autobahn::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Rpc(args) => rpc::run(args),
    }
}

/// A tokio runtime: current-thread for one thread, else multi-thread.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    builder(threads).enable_all().build()
}

/// A runtime with I/O (and signals) but not tokio's timer, for a server
/// that times everything with `ws_net::time`: each wait for I/O then skips
/// the timer wheel.
fn runtime_without_timer(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    builder(threads).enable_io().build()
}

fn builder(threads: usize) -> tokio::runtime::Builder {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    }
}
