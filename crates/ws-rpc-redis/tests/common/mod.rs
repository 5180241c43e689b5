//! Helpers for the Redis-backed tests: a `redis-server` of the test's own on
//! a free 127.0.0.1 port (no persistence, stopped at the end), `ws serve`
//! nodes, bounded waits. A machine without `redis-server` fails these tests
//! loudly: they never skip.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Every test step is bounded by this.
pub const STEP: Duration = Duration::from_secs(30);

pub async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .expect("test step timed out")
}

/// Poll `check` every 50 ms until it holds, for at most `bound`.
pub async fn eventually<F, Fut>(bound: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {bound:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The tests of one binary run one at a time: the machine is small, and
/// the fault tests are about timing.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_server_bin() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// A `redis-server` of this test's own: 127.0.0.1, a free port, no
/// persistence. Killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// On `port` (again, after [`kill`](Self::kill)).
    pub fn start_on(port: u16) -> Self {
        let mut r = Self {
            port,
            child: None,
            log: std::env::temp_dir().join(format!("ws-rpc-redis-test-{port}.log")),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let child = Command::new(redis_server_bin())
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .args(["--daemonize", "no"])
                .args(["--protected-mode", "yes"])
                .args(["--loglevel", "warning"])
                .args(["--logfile", self.log.to_str().unwrap()])
                .args(["--dir", std::env::temp_dir().to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "redis-server not found ({}): these tests need a real Redis and do not \
                     skip. Install it: apt-get install -y redis-server",
                    redis_server_bin()
                ),
                Err(e) => panic!("cannot start redis-server: {e}"),
            };
            // Up when it answers PING; exited early if the port was taken
            // (then try again, the port may be free in a moment).
            loop {
                if ping(self.port) {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!("redis-server on port {} exited: {status}", self.port);
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "redis-server did not answer on port {} within 10 s",
                    self.port
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                Instant::now() < deadline,
                "redis-server could not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL: the connections drop at once, nothing is saved.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    /// SIGSTOP: the server stalls, connections stay open.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// `redis-cli -p PORT ARGS...`: its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("redis-cli (apt-get install -y redis-server): {e}"));
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Subscribers of `channel`.
    pub fn numsub(&self, channel: &str) -> usize {
        let out = self.cli(&["pubsub", "numsub", channel]);
        out.lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("PUBSUB NUMSUB: {out:?}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused server does not die of SIGKILL until continued.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Whether a Redis answers PING on `port`.
pub fn ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// The `ws` binary: `$WS_BIN`, else built now (once per test binary) by
/// cargo, in this test's profile and target directory.
pub fn ws_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("WS_BIN") {
            let p = PathBuf::from(p);
            assert!(p.exists(), "WS_BIN={} does not exist", p.display());
            return p;
        }
        // This test is <target>/<profile>/deps/<name>-<hash>.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_owned();
        let target_dir = profile_dir.parent().unwrap().to_owned();
        let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
            "debug" => "dev".to_owned(),
            other => other.to_owned(),
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        eprintln!("building ws (cargo build -p ws-cli --bin ws --profile {profile}); set WS_BIN to skip this");
        let status = Command::new(cargo)
            .args(["build", "-p", "ws-cli", "--bin", "ws", "--profile", &profile])
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo to build ws");
        assert!(status.success(), "cargo build -p ws-cli failed");
        let bin = profile_dir.join("ws");
        assert!(bin.exists(), "{} not built", bin.display());
        bin
    })
    .clone()
}

/// A `ws serve` node: its address, its log (stderr), killed when dropped
/// (the log is printed then if the test failed).
pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// `ws serve --listen 127.0.0.1:0 --threads 1 [--redis URL]`.
    pub fn start(name: &str, redis: Option<&str>) -> Self {
        let mut cmd = Command::new(ws_bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--threads", "1"]);
        if let Some(url) = redis {
            cmd.args(["--redis", url]);
        }
        let mut child = cmd
            .env("RUST_LOG", "warn,ws_rpc_redis=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ws serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            while let Some(Ok(line)) = lines.next() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{name}: ws serve printed nothing within 20 s"));
        let addr = first
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("{name}: unexpected first line {first:?}"))
            .parse()
            .unwrap();
        // The rest of stdout is read (and dropped) so the node never blocks.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Self {
            name: name.to_owned(),
            addr,
            child,
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/rpc", self.addr)
    }

    /// Its log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Log lines containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (a node that dies).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of {} ({}) ---", self.name, self.addr);
            for l in self.log.lock().unwrap().iter() {
                eprintln!("{l}");
            }
        }
    }
}

/// A ws-rpc client config for tests: no reconnect, a deep notification
/// buffer.
pub fn client_config() -> ws_rpc::ClientConfig {
    let mut c = ws_rpc::ClientConfig::default();
    c.reconnect = false;
    c.stream_buffer = 1 << 16;
    c.request_timeout = Duration::from_secs(20);
    c
}

pub async fn client(url: &str) -> ws_rpc::Client {
    within(
        ws_rpc::Client::builder(url)
            .config(client_config())
            .connect(),
    )
    .await
    .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}
