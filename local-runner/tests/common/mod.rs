//! The local runner as a process, for tests that need what only a process shows: its
//! memory and open files (`/proc`), signals, `kill -9`, and a restart on the same data.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream as AsyncTcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a runner may take to start (a loaded machine, a cold cache).
pub const STARTUP: Duration = Duration::from_secs(30);
/// Waits for a frame.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

pub type Ws = WebSocketStream<MaybeTlsStream<AsyncTcpStream>>;

/// A running `local-runner` with its own data directory (unless given one).
pub struct Runner {
    child: Child,
    pub port: u16,
    pub data: PathBuf,
    _own_data: Option<tempfile::TempDir>,
    logs: Arc<Mutex<Vec<String>>>,
    args: Vec<String>,
}

impl Runner {
    /// Starts the runner with `args` (flags) on a fresh data directory.
    pub fn start(args: &[&str]) -> Runner {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().to_owned();
        let mut runner = Runner::start_on(&data, args);
        runner._own_data = Some(dir);
        runner
    }

    /// Starts the runner on `data` (kept by the caller, so a restart finds its files).
    pub fn start_on(data: &Path, args: &[&str]) -> Runner {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (child, port, logs) = spawn(data, &args);
        Runner {
            child,
            port,
            data: data.to_owned(),
            _own_data: None,
            logs,
            args,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_url(&self, room: &str) -> String {
        format!("ws://127.0.0.1:{}/api/room/{room}/websocket", self.port)
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.data.join("edge-chat.sqlite3")
    }

    /// `kill -9`, then start again on the same data directory and flags.
    pub fn crash_and_restart(&mut self) {
        self.kill9();
        let (child, port, logs) = spawn(&self.data, &self.args);
        self.child = child;
        self.port = port;
        self.logs = logs;
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts again on the same data directory and flags (after [`Runner::kill9`]).
    pub fn restart(&mut self) {
        let (child, port, logs) = spawn(&self.data, &self.args);
        self.child = child;
        self.port = port;
        self.logs = logs;
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits at most `bound` for the process to exit.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < bound {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Open file descriptors.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("/proc/<pid>/fd")
            .count()
    }

    /// Log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn spawn(data: &Path, args: &[String]) -> (Child, u16, Arc<Mutex<Vec<String>>>) {
    let static_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../static");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_local-runner"));
    // Only the flags below configure it.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("EDGE_CHAT_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("RUST_LOG", "info")
        .arg("--port")
        .arg("0")
        .arg("--data-dir")
        .arg(data)
        .arg("--static-dir")
        .arg(static_dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("start local-runner");
    let stdout = child.stdout.take().expect("stdout");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let lines = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let port = rest.rsplit(':').next().and_then(|p| p.trim().parse().ok());
                let _ = port_tx.send(port);
            }
            lines.lock().unwrap().push(line);
        }
    });
    let port: u16 = port_rx
        .recv_timeout(STARTUP)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the runner did not start; logs: {:?}", logs.lock().unwrap()));
    (child, port, logs)
}

/// A plain HTTP/1.1 request (`Connection: close`); returns the status and the whole
/// answer (head and body).
pub fn http(port: u16, request_line: &str, extra_headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(FRAME_WAIT)).unwrap();
    write!(
        s,
        "{request_line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra_headers}\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    (status_of(&answer), answer)
}

/// The status code of an HTTP answer (0 if it has none).
pub fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A WebSocket client with Nagle off.
pub async fn connect(url: &str) -> Result<Ws, tungstenite::Error> {
    tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map(|(ws, _)| ws)
}

pub async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// The next text frame, skipping control frames; `None` when the socket ends.
pub async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(FRAME_WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => return None,
            Ok(Some(Ok(_))) => continue,
            Err(_) => panic!("no frame within {FRAME_WAIT:?}"),
        }
    }
}

/// Reads frames until one contains `needle`; returns it.
pub async fn until(ws: &mut Ws, needle: &str) -> String {
    for _ in 0..10_000 {
        match next_text(ws).await {
            Some(t) if t.contains(needle) => return t,
            Some(_) => continue,
            None => panic!("socket ended before {needle:?}"),
        }
    }
    panic!("{needle:?} never came");
}

/// Reads to the end of the socket; returns the close frame, if one came.
pub async fn close_frame(ws: &mut Ws, within: Duration) -> Option<CloseFrame> {
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return None,
            Err(_) => panic!("the socket was not closed within {within:?}"),
        }
    }
}

/// Joins `room` with a hello; returns the socket and its `ready` frame.
pub async fn join(url: &str, hello: &str) -> (Ws, serde_json::Value) {
    let mut ws = connect(url).await.expect("connect");
    send(&mut ws, hello).await;
    let ready = until(&mut ws, r#""ready""#).await;
    (ws, serde_json::from_str(&ready).expect("JSON"))
}
