//! A small chat client over a real WebSocket, with every wait bounded and every server
//! frame checked against the exact shapes of docs/PROTOCOL.md.

use crate::error::Context;
use crate::{bail, ensure, Error, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// The longest wait for any one frame.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);
/// The most frames a join sequence may have (roster + resume backlog + 2, with margin).
const MAX_JOIN_FRAMES: usize = 5000;

/// `ws://127.0.0.1:PORT/api/room/{room}/websocket` for a base `http://127.0.0.1:PORT`.
pub fn ws_url(base: &str, room: &str) -> String {
    format!(
        "{}/api/room/{room}/websocket",
        base.replacen("http://", "ws://", 1)
    )
}

/// How to open a socket.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// An `Origin` header to send (none by default, like a non-browser client).
    pub origin: Option<String>,
    /// A small SO_RCVBUF makes a client that stops reading back up quickly.
    pub recv_buffer: Option<u32>,
}

/// A refused handshake: the HTTP status and body instead of a 101.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub body: String,
}

/// A chat message frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub name: String,
    pub message: String,
    pub timestamp: u64,
    pub seq: u64,
}

/// The `ready` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub epoch: String,
    pub seq: u64,
    pub recovered: bool,
    /// `"v"`: 2 for a v2 session, absent for v1.
    pub v: Option<u64>,
}

/// A server frame, decoded strictly: exactly the documented fields, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Joined(String),
    /// v2: `{"roster": [{"name": …}, …]}`, the names in the order sent.
    Roster(Vec<String>),
    Quit(String),
    Message(Msg),
    Ready(Ready),
    Error(String),
}

impl Frame {
    pub fn parse(text: &str) -> Result<Frame> {
        let value: Value =
            serde_json::from_str(text).context(format!("server sent non-JSON text {text:?}"))?;
        let Value::Object(map) = value else {
            bail!("server sent a JSON non-object: {text}");
        };
        let keys: Vec<&str> = {
            let mut k: Vec<&str> = map.keys().map(String::as_str).collect();
            k.sort_unstable();
            k
        };
        let string = |key: &str| -> Result<String> {
            match map.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => bail!("{key:?} must be a string in {text}"),
            }
        };
        let uint = |key: &str| -> Result<u64> {
            match map.get(key).and_then(Value::as_u64) {
                Some(n) => Ok(n),
                None => bail!("{key:?} must be a non-negative integer in {text}"),
            }
        };
        Ok(match keys.as_slice() {
            ["joined"] => Frame::Joined(string("joined")?),
            ["quit"] => Frame::Quit(string("quit")?),
            ["error"] => {
                let e = string("error")?;
                ensure!(!e.trim().is_empty(), "empty error text in {text}");
                Frame::Error(e)
            }
            ["message", "name", "seq", "timestamp"] => Frame::Message(Msg {
                name: string("name")?,
                message: string("message")?,
                timestamp: uint("timestamp")?,
                seq: uint("seq")?,
            }),
            ["roster"] => {
                let Some(Value::Array(entries)) = map.get("roster") else {
                    bail!("roster must be an array in {text}");
                };
                let mut names = Vec::with_capacity(entries.len());
                for e in entries {
                    match e.as_object().map(|o| (o.len(), o.get("name"))) {
                        Some((1, Some(Value::String(n)))) => names.push(n.clone()),
                        _ => bail!("a roster entry must be exactly {{\"name\": …}} in {text}"),
                    }
                }
                Frame::Roster(names)
            }
            ["epoch", "ready", "recovered", "seq"]
            | ["epoch", "ready", "recovered", "seq", "v"] => {
                ensure!(
                    map.get("ready") == Some(&Value::Bool(true)),
                    "ready must be true in {text}"
                );
                let epoch = string("epoch")?;
                ensure!(!epoch.is_empty(), "empty epoch in {text}");
                let Some(recovered) = map.get("recovered").and_then(Value::as_bool) else {
                    bail!("recovered must be a boolean in {text}");
                };
                let v = match map.get("v") {
                    None => None,
                    Some(Value::Number(n)) if n.as_u64() == Some(2) => Some(2),
                    Some(other) => bail!("ready's v must be 2, got {other} in {text}"),
                };
                Frame::Ready(Ready {
                    epoch,
                    seq: uint("seq")?,
                    recovered,
                    v,
                })
            }
            _ => bail!("server frame with unexpected fields: {text}"),
        })
    }
}

/// One thing that arrived on a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Frame(Frame),
    /// A binary frame (the server never sends one) and its length.
    Binary(usize),
    /// A close frame: code and reason (`None` when the frame had no code).
    Close(Option<(u16, String)>),
    /// The connection ended without a close frame, or failed.
    Ended(String),
}

/// What a joiner received between its hello and `ready`.
#[derive(Debug, Clone)]
pub struct Join {
    /// The other members: v1's `joined` frames, or v2's roster entries, in the order sent.
    pub roster: Vec<String>,
    pub backlog: Vec<Msg>,
    pub ready: Ready,
}

impl Join {
    pub fn backlog_seqs(&self) -> Vec<u64> {
        self.backlog.iter().map(|m| m.seq).collect()
    }

    /// The roster as a sorted list (the order of the roster is not specified).
    pub fn roster_sorted(&self) -> Vec<String> {
        let mut r = self.roster.clone();
        r.sort();
        r
    }
}

/// What the session asked for in its hello, which decides what it may receive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Protocol {
    /// `"v": 2`: the roster frame and `ready.v` are allowed.
    pub v2: bool,
    /// `"batch": true` with v2: `{"batch": […]}` messages are allowed.
    pub batch: bool,
}

/// What arrived, counted per WebSocket message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Text messages, a batch counting as one.
    pub messages: usize,
    /// The number of frames in each batch, in order.
    pub batches: Vec<usize>,
}

/// A connected WebSocket client.
pub struct Client {
    ws: WebSocketStream<TcpStream>,
    /// Shown in failure messages.
    pub label: String,
    closed: bool,
    protocol: Protocol,
    /// Frames of a batch not handed out yet, as their raw text.
    pending: VecDeque<String>,
    /// The raw text of the last frame handed out (one from a batch, or a message).
    last_raw: String,
    received: Received,
}

impl Client {
    /// Connects to `room`; fails if the handshake is refused.
    pub async fn connect(base: &str, room: &str, label: &str) -> Result<Client> {
        Self::connect_with(base, room, label, &Options::default()).await
    }

    pub async fn connect_with(
        base: &str,
        room: &str,
        label: &str,
        options: &Options,
    ) -> Result<Client> {
        match Self::try_connect(base, room, label, options).await? {
            Ok(c) => Ok(c),
            Err(r) => bail!(
                "{label}: handshake to room {room:?} refused with HTTP {}: {:?}",
                r.status,
                r.body
            ),
        }
    }

    /// Connects, telling a refused handshake (`Err(Refusal)`) from other failures.
    pub async fn try_connect(
        base: &str,
        room: &str,
        label: &str,
        options: &Options,
    ) -> Result<Result<Client, Refusal>> {
        let url = ws_url(base, room);
        let mut request = url.as_str().into_client_request()?;
        if let Some(origin) = &options.origin {
            request
                .headers_mut()
                .insert("origin", HeaderValue::from_str(origin)?);
        }
        let addr = base.strip_prefix("http://").unwrap_or(base);
        let connect = async {
            let addr: std::net::SocketAddr = addr
                .parse()
                .map_err(|e| Error(format!("bad address {addr:?}: {e}")))?;
            let socket = TcpSocket::new_v4()?;
            if let Some(size) = options.recv_buffer {
                socket.set_recv_buffer_size(size)?;
            }
            let stream = socket.connect(addr).await?;
            stream.set_nodelay(true)?;
            match tokio_tungstenite::client_async(request, stream).await {
                Ok((ws, _)) => Ok(Ok(ws)),
                Err(tungstenite::Error::Http(resp)) => {
                    let status = resp.status().as_u16();
                    let body = resp
                        .body()
                        .as_deref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    Ok(Err(Refusal { status, body }))
                }
                Err(e) => Err(Error::from(e)),
            }
        };
        let ws = match tokio::time::timeout(RECV_TIMEOUT, connect).await {
            Ok(r) => r.context(format!("{label}: connecting to {url}"))?,
            Err(_) => bail!("{label}: connecting to {url} took over {RECV_TIMEOUT:?}"),
        };
        Ok(ws.map(|ws| Client {
            ws,
            label: label.to_owned(),
            closed: false,
            protocol: Protocol::default(),
            pending: VecDeque::new(),
            last_raw: String::new(),
            received: Received::default(),
        }))
    }

    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<()> {
        self.send(Message::text(text.into())).await
    }

    pub async fn send_json(&mut self, value: &Value) -> Result<()> {
        self.send_text(value.to_string()).await
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.send(Message::binary(bytes)).await
    }

    /// Sends `{"message": text}`.
    pub async fn say(&mut self, text: &str) -> Result<()> {
        self.send_json(&json!({ "message": text })).await
    }

    /// Queues a message without flushing, for bursts; [`Self::flush`] sends them.
    pub async fn feed_text(&mut self, text: impl Into<String>) -> Result<()> {
        let label = &self.label;
        match tokio::time::timeout(RECV_TIMEOUT, self.ws.feed(Message::text(text.into()))).await {
            Ok(r) => r.context(format!("{label}: sending")),
            Err(_) => bail!("{label}: sending took over {RECV_TIMEOUT:?}"),
        }
    }

    pub async fn flush(&mut self) -> Result<()> {
        let label = &self.label;
        match tokio::time::timeout(RECV_TIMEOUT, self.ws.flush()).await {
            Ok(r) => r.context(format!("{label}: flushing")),
            Err(_) => bail!("{label}: flushing took over {RECV_TIMEOUT:?}"),
        }
    }

    async fn send(&mut self, msg: Message) -> Result<()> {
        let label = &self.label;
        match tokio::time::timeout(RECV_TIMEOUT, self.ws.send(msg)).await {
            Ok(r) => r.context(format!("{label}: sending")),
            Err(_) => bail!("{label}: sending took over {RECV_TIMEOUT:?}"),
        }
    }

    /// What the session asked for in its hello (set by [`Self::hello_with`]).
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Sets what the session may receive, for a hello sent by hand.
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = protocol;
    }

    /// What arrived so far, per WebSocket message.
    pub fn received(&self) -> &Received {
        &self.received
    }

    /// The raw text of the frame [`Self::recv`] last returned: byte for byte as the
    /// server sent it, alone or inside a batch.
    pub fn last_raw(&self) -> &str {
        &self.last_raw
    }

    /// The next frame's raw text, and the frame.
    pub async fn recv_raw(&mut self) -> Result<(String, Frame)> {
        let f = self.recv().await?;
        Ok((self.last_raw.clone(), f))
    }

    /// Checks a frame against the session's protocol: a v1 session never gets a v2
    /// frame kind or field.
    fn checked(&self, text: &str) -> Result<Frame> {
        let f = Frame::parse(text).context(format!("{}: decoding", self.label))?;
        let v2_only = match &f {
            Frame::Roster(_) => true,
            Frame::Ready(r) => r.v.is_some(),
            _ => false,
        };
        ensure!(
            !v2_only || self.protocol.v2,
            "{}: a v1 session got a v2 frame: {text}",
            self.label
        );
        Ok(f)
    }

    /// Splits a batch into its frames' raw text, checking its shape: only for a batch
    /// session, 2 or more frames, none itself a batch.
    fn unbatch(&self, text: &str) -> Result<Option<VecDeque<String>>> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Batch<'a> {
            #[serde(borrow)]
            batch: Vec<&'a RawValue>,
        }
        if !text.trim_start().starts_with("{\"batch\"") {
            return Ok(None);
        }
        let label = &self.label;
        ensure!(
            self.protocol.batch,
            "{label}: a batch for a session that did not opt in: {text}"
        );
        let b: Batch = serde_json::from_str(text).context(format!(
            "{label}: a batch must be exactly {{\"batch\": [frames]}}: {text}"
        ))?;
        ensure!(
            b.batch.len() >= 2,
            "{label}: a batch of {} frame(s): {text}",
            b.batch.len()
        );
        let mut frames = VecDeque::with_capacity(b.batch.len());
        for f in b.batch {
            ensure!(
                !f.get().starts_with("{\"batch\""),
                "{label}: a batch inside a batch: {text}"
            );
            frames.push_back(f.get().to_owned());
        }
        Ok(Some(frames))
    }

    /// The next event, waiting at most `timeout`. Pings and pongs are skipped (the
    /// library answers pings itself). A batch is handed out one frame at a time.
    /// `Ok(None)` on timeout.
    pub async fn next_event_within(&mut self, timeout: Duration) -> Result<Option<Event>> {
        if let Some(raw) = self.pending.pop_front() {
            let f = self.checked(&raw)?;
            self.last_raw = raw;
            return Ok(Some(Event::Frame(f)));
        }
        if self.closed {
            return Ok(Some(Event::Ended("already closed".into())));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(n) => n,
            };
            let event = match next {
                None => Event::Ended("stream ended".into()),
                Some(Err(e)) => Event::Ended(e.to_string()),
                Some(Ok(Message::Text(t))) => {
                    self.received.messages += 1;
                    match self.unbatch(t.as_str())? {
                        Some(mut frames) => {
                            self.received.batches.push(frames.len());
                            let first = frames.pop_front().unwrap_or_default();
                            self.pending = frames;
                            let f = self.checked(&first)?;
                            self.last_raw = first;
                            Event::Frame(f)
                        }
                        None => {
                            let f = self.checked(t.as_str())?;
                            self.last_raw = t.as_str().to_owned();
                            Event::Frame(f)
                        }
                    }
                }
                Some(Ok(Message::Binary(b))) => Event::Binary(b.len()),
                Some(Ok(Message::Close(frame))) => Event::Close(
                    frame.map(|CloseFrame { code, reason }| (u16::from(code), reason.to_string())),
                ),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            };
            if matches!(event, Event::Close(_) | Event::Ended(_)) {
                self.closed = true;
            }
            return Ok(Some(event));
        }
    }

    /// The next event, waiting at most [`RECV_TIMEOUT`].
    pub async fn next_event(&mut self) -> Result<Event> {
        match self.next_event_within(RECV_TIMEOUT).await? {
            Some(e) => Ok(e),
            None => bail!("{}: nothing arrived within {RECV_TIMEOUT:?}", self.label),
        }
    }

    /// The next frame; a close or the end of the connection is a failure.
    pub async fn recv(&mut self) -> Result<Frame> {
        match self.next_event().await? {
            Event::Frame(f) => Ok(f),
            other => bail!("{}: expected a frame, got {other:?}", self.label),
        }
    }

    pub async fn recv_message(&mut self) -> Result<Msg> {
        match self.recv().await? {
            Frame::Message(m) => Ok(m),
            other => bail!("{}: expected a chat message, got {other:?}", self.label),
        }
    }

    /// Expects `{"error": …}` and returns its text.
    pub async fn recv_error(&mut self) -> Result<String> {
        match self.recv().await? {
            Frame::Error(e) => Ok(e),
            other => bail!("{}: expected an error frame, got {other:?}", self.label),
        }
    }

    /// Expects exactly `{"error": text}`.
    pub async fn expect_error(&mut self, text: &str) -> Result<()> {
        let got = self.recv_error().await?;
        ensure!(
            got == text,
            "{}: error text\n  got:      {got:?}\n  expected: {text:?}",
            self.label
        );
        Ok(())
    }

    pub async fn expect_frame(&mut self, expected: Frame) -> Result<()> {
        let got = self.recv().await?;
        ensure!(
            got == expected,
            "{}: unexpected frame\n  got:      {got:?}\n  expected: {expected:?}",
            self.label
        );
        Ok(())
    }

    /// Expects the next event to be a close frame with `code` (and `reason`, if given).
    pub async fn expect_close(&mut self, code: u16, reason: Option<&str>) -> Result<()> {
        match self.next_event().await? {
            Event::Close(Some((c, r))) => {
                ensure!(
                    c == code,
                    "{}: close code {c} ({r:?}), expected {code}",
                    self.label
                );
                if let Some(reason) = reason {
                    ensure!(
                        r == reason,
                        "{}: close reason {r:?}, expected {reason:?}",
                        self.label
                    );
                }
                Ok(())
            }
            other => bail!("{}: expected close {code}, got {other:?}", self.label),
        }
    }

    /// Fails if anything but pings arrives within `wait`: a bounded negative check.
    pub async fn expect_silence(&mut self, wait: Duration) -> Result<()> {
        match self.next_event_within(wait).await? {
            None => Ok(()),
            Some(e) => bail!("{}: expected nothing, got {e:?}", self.label),
        }
    }

    /// Sends `{"name": name}` and reads the join sequence.
    pub async fn hello(&mut self, name: &str) -> Result<Join> {
        self.hello_with(&json!({ "name": name }), name).await
    }

    /// Sends `hello` and reads the join sequence; `own` is the name the server should
    /// announce for this session. What the hello asks for (`"v": 2`, `"batch": true`)
    /// decides what the session may receive from then on.
    pub async fn hello_with(&mut self, hello: &Value, own: &str) -> Result<Join> {
        let v2 = hello.get("v") == Some(&json!(2));
        self.protocol = Protocol {
            v2,
            batch: v2 && hello.get("batch") == Some(&json!(true)),
        };
        self.send_json(hello).await?;
        self.read_join(own).await
    }

    /// Reads frames up to `ready` and checks their order: the roster (one `roster`
    /// frame in v2, `joined`s in v1), backlog messages, this session's own `joined`,
    /// `ready` (with `"v": 2` exactly for a v2 session).
    pub async fn read_join(&mut self, own: &str) -> Result<Join> {
        let mut frames = Vec::new();
        let ready = loop {
            ensure!(
                frames.len() < MAX_JOIN_FRAMES,
                "{}: no ready after {MAX_JOIN_FRAMES} frames",
                self.label
            );
            match self.recv().await.context("reading the join sequence")? {
                Frame::Ready(r) => break r,
                f => frames.push(f),
            }
        };
        let label = &self.label;
        match frames.pop() {
            Some(Frame::Joined(n)) if n == own => {}
            other => bail!(
                "{label}: the frame before ready must be {{\"joined\": {own:?}}}, got {other:?}"
            ),
        }
        let v2 = self.protocol.v2;
        ensure!(
            ready.v == v2.then_some(2),
            "{label}: ready.v is {:?} for a {} session",
            ready.v,
            if v2 { "v2" } else { "v1" }
        );
        let mut frames = frames.into_iter();
        let mut roster = Vec::new();
        if v2 {
            match frames.next() {
                Some(Frame::Roster(names)) => roster = names,
                other => bail!("{label}: a v2 join must start with the roster, got {other:?}"),
            }
        }
        let mut backlog: Vec<Msg> = Vec::new();
        for f in frames {
            match f {
                Frame::Joined(n) if !v2 && backlog.is_empty() => roster.push(n),
                Frame::Message(m) => backlog.push(m),
                other => bail!(
                    "{label}: unexpected {other:?} in the join sequence (roster, then backlog)"
                ),
            }
        }
        Ok(Join {
            roster,
            backlog,
            ready,
        })
    }

    /// Closes with 1000 and waits (bounded) for the server's answer.
    pub async fn close(mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        let _ = tokio::time::timeout(RECV_TIMEOUT, self.ws.close(None)).await;
        for _ in 0..10_000 {
            match self.next_event_within(RECV_TIMEOUT).await? {
                Some(Event::Close(_) | Event::Ended(_)) | None => return Ok(()),
                Some(_) => continue,
            }
        }
        Ok(())
    }
}
