//! A small chat client over a real WebSocket, with every wait bounded and every server
//! frame checked against the exact shapes of docs/protocol.md.

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
    /// The source address to connect from (any of 127.0.0.0/8 reaches a server on
    /// 127.0.0.1), so one machine can be several clients for the rate limit.
    pub local_ip: Option<std::net::Ipv4Addr>,
    /// The local address to connect from (any of 127.0.0.0/8 reaches a loopback
    /// server), so that one test can be several client addresses.
    pub bind: Option<std::net::IpAddr>,
}

impl Options {
    /// Connect from `ip` (e.g. `127.0.0.2`).
    pub fn from_address(ip: &str) -> Result<Options> {
        Ok(Options {
            bind: Some(
                ip.parse()
                    .map_err(|e| Error(format!("bad address {ip:?}: {e}")))?,
            ),
            ..Options::default()
        })
    }
}

/// A refused handshake: the HTTP status and body instead of a 101.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub body: String,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
}

/// A chat message frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub name: String,
    pub message: String,
    pub timestamp: u64,
    pub seq: u64,
    /// The sender's verified user id (signed identity), if any.
    pub user: Option<String>,
    /// The sender's client id, if it gave one (retry-safe sends).
    pub cid: Option<String>,
    /// `service` for a server-side publish; absent otherwise.
    pub role: Option<String>,
    /// v2 edits: when its author last edited it (the text is the latest).
    pub edited_at: Option<u64>,
    /// v2 reactions: the counts, when it has any.
    pub reactions: Option<Value>,
}

/// Reaction counts: a non-empty object of positive integers (on a chat frame), or any
/// object of positive integers (in a `reactions` frame, `{}` when none are left).
fn check_counts(c: &Value, what: &str) -> Result<Value> {
    let Some(map) = c.as_object() else {
        bail!("reaction counts must be an object in {what}");
    };
    ensure!(
        map.values().all(|n| n.as_u64().is_some_and(|n| n > 0)),
        "reaction counts must be positive integers in {what}"
    );
    Ok(c.clone())
}

/// v2: `{"edited": {"seq", "message", "edited_at"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    pub seq: u64,
    pub message: String,
    pub edited_at: u64,
}

/// A v2 history page: `{"history": [...], "before", "more"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub history: Vec<Msg>,
    pub before: u64,
    pub more: bool,
}

impl Page {
    pub fn seqs(&self) -> Vec<u64> {
        self.history.iter().map(|m| m.seq).collect()
    }
}

/// The keys of a JSON object, sorted.
fn sorted_keys(map: &serde_json::Map<String, Value>) -> Vec<&str> {
    let mut k: Vec<&str> = map.keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// A chat frame, strictly: `name`, `message`, `timestamp`, `seq`, then `user` (a
/// verified sender), `cid` (retry-safe sends) and `role` (`service`, a server-side
/// publish) when present, each a non-empty string.
/// `what` says where it came from, for errors.
fn parse_msg(value: &Value, what: &str) -> Result<Msg> {
    let Value::Object(map) = value else {
        bail!("a chat frame must be an object in {what}");
    };
    let keys = sorted_keys(map);
    let core: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !matches!(*k, "user" | "cid" | "role" | "edited_at" | "reactions"))
        .collect();
    ensure!(
        core == ["message", "name", "seq", "timestamp"],
        "chat frame with unexpected fields {keys:?} in {what}"
    );
    let string = |key: &str| -> Result<String> {
        match map.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => bail!("{key:?} must be a string in {what}"),
        }
    };
    let optional = |key: &str| -> Result<Option<String>> {
        match map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(other) => bail!("{key:?} must be a non-empty string, got {other} in {what}"),
        }
    };
    let uint = |key: &str| -> Result<u64> {
        match map.get(key).and_then(Value::as_u64) {
            Some(n) => Ok(n),
            None => bail!("{key:?} must be a non-negative integer in {what}"),
        }
    };
    Ok(Msg {
        name: string("name")?,
        message: string("message")?,
        timestamp: uint("timestamp")?,
        seq: uint("seq")?,
        user: optional("user")?,
        cid: optional("cid")?,
        role: match optional("role")? {
            Some(r) if r != "service" => {
                bail!("a chat frame's role may only be \"service\" in {what}")
            }
            other => other,
        },
        edited_at: match map.get("edited_at") {
            None => None,
            Some(_) => Some(uint("edited_at")?),
        },
        reactions: match map.get("reactions") {
            None => None,
            Some(c) => Some(check_counts(c, what)?),
        },
    })
}

/// The `ready` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub epoch: String,
    pub seq: u64,
    pub recovered: bool,
    /// `Some(2)` for a v2 session.
    pub v: Option<u64>,
    /// The session's verified user id and role (signed identity).
    pub user: Option<String>,
    pub role: Option<String>,
}

/// One entry of a v2 `roster` frame.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub name: String,
    pub user: Option<String>,
    pub role: Option<String>,
}

/// A server frame, decoded strictly: exactly the documented fields, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Joined(String),
    Quit(String),
    Message(Msg),
    Ready(Ready),
    Error(String),
    /// v2: the members already in the room, at join.
    Roster(Vec<Member>),
    /// v2: a moderator deleted this message.
    Deleted(u64),
    /// v2: `{"deleted", "cid"}`, to a sender only: the answer to its retry of a `cid`
    /// whose message a moderator deleted.
    DeletedCid(u64, String),
    /// v2: the author of a message edited it.
    Edited(Edited),
    /// v2: `{"reactions": {"seq", "counts"}}`, a message's reaction counts changed.
    Reactions(u64, Value),
    /// v2: a history page.
    History(Page),
    /// v2: `{"roster", "count", "next"}`, the first page of a big room's roster at join.
    RosterPage(MemberPage),
    /// v2: `{"members": {"page", "count", "next"}}`, the answer to a member page request.
    Members(MemberPage),
    /// v2: `{"members": {"unlisted": name}}`, after a quit of a member not listed yet.
    Unlisted(String),
    /// v2: `{"typing": {"name", "user"?, "typer", "ttl_ms"}}`: a member started typing
    /// (`ttl_ms` is set).
    Typing(Typer),
    /// v2: `{"typing_stopped": {"name", "user"?, "typer"}}` (`ttl_ms` is `None`).
    TypingStopped(Typer),
    /// v2: `{"ok": true, "seq"?, "re"}`, the answer to a request with an `id` that has
    /// no result frame of its own; `seq` for a chat message.
    Ok(Option<u64>),
}

/// What v2 adds to any frame besides its kind: an error's `code`, an answer's `re`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags {
    pub code: Option<String>,
    pub re: Option<String>,
}

/// Who types, in a `typing` or `typing_stopped` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typer {
    pub name: String,
    pub user: Option<String>,
    pub typer: u64,
    pub ttl_ms: Option<u64>,
}

/// The body of a typing frame, checked strictly: `ttl_ms` in `typing` only.
fn parse_typer(v: Option<&Value>, started: bool, text: &str) -> Result<Typer> {
    let Some(t) = v.and_then(Value::as_object) else {
        bail!("a typing frame's body must be an object in {text}");
    };
    let allowed: &[&str] = if started {
        &["name", "ttl_ms", "typer", "user"]
    } else {
        &["name", "typer", "user"]
    };
    ensure!(
        t.keys().all(|k| allowed.contains(&k.as_str())),
        "unexpected field in a typing frame: {text}"
    );
    let Some(name) = t.get("name").and_then(Value::as_str) else {
        bail!("a typing frame needs a name in {text}");
    };
    let user = match t.get("user") {
        None => None,
        Some(Value::String(u)) if !u.is_empty() => Some(u.clone()),
        Some(_) => bail!("\"user\" must be a non-empty string in {text}"),
    };
    let Some(typer) = t.get("typer").and_then(Value::as_u64) else {
        bail!("\"typer\" must be a non-negative integer in {text}");
    };
    let ttl_ms = t.get("ttl_ms").map(Value::as_u64);
    ensure!(
        ttl_ms.is_none() || ttl_ms.flatten().is_some(),
        "\"ttl_ms\" must be a non-negative integer in {text}"
    );
    ensure!(
        !started || ttl_ms.is_some(),
        "a typing frame needs ttl_ms in {text}"
    );
    Ok(Typer {
        name: name.to_owned(),
        user,
        typer,
        ttl_ms: ttl_ms.flatten(),
    })
}

/// A page of the v2 roster: in the paged `roster` frame or a `members` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPage {
    pub members: Vec<Member>,
    /// The other members in the room when the page was sent.
    pub count: u64,
    /// The cursor of the next page; `None` after the last.
    pub next: Option<String>,
}

/// The entries of a `roster` array or a member page, checked strictly.
fn parse_members(entries: Option<&Value>, text: &str) -> Result<Vec<Member>> {
    let Some(entries) = entries.and_then(Value::as_array) else {
        bail!("roster entries must be an array in {text}");
    };
    let mut members = Vec::new();
    for e in entries {
        let Some(e) = e.as_object() else {
            bail!("a roster entry must be an object in {text}");
        };
        let field = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
        ensure!(
            e.keys()
                .all(|k| matches!(k.as_str(), "name" | "user" | "role")),
            "unexpected field in a roster entry of {text}"
        );
        let Some(name) = field("name") else {
            bail!("a roster entry needs a name in {text}");
        };
        let (user, role) = (field("user"), field("role"));
        ensure!(
            user.is_some() || role.is_none(),
            "a role without a user in {text}"
        );
        ensure!(
            role.as_deref().is_none_or(|r| r == "moderator"),
            "unknown role in {text}"
        );
        members.push(Member { name, user, role });
    }
    Ok(members)
}

/// A member cursor: a non-empty string of decimal digits (docs/protocol.md, "Member
/// pages", treats it as opaque; the suite checks only that it is a string).
fn parse_cursor(v: Option<&Value>, text: &str) -> Result<String> {
    match v {
        Some(Value::String(c)) if !c.is_empty() => Ok(c.clone()),
        _ => bail!("\"next\" must be a non-empty string in {text}"),
    }
}

impl Frame {
    pub fn parse(text: &str) -> Result<Frame> {
        Ok(Self::parse_tagged(text)?.0)
    }

    /// The frame and its v2 [`Tags`]: `re` (a non-empty string) on any frame, `code` (a
    /// non-empty snake_case string) on an error frame; the rest is matched exactly.
    pub fn parse_tagged(text: &str) -> Result<(Frame, Tags)> {
        let value: Value =
            serde_json::from_str(text).context(format!("server sent non-JSON text {text:?}"))?;
        let Value::Object(mut map) = value else {
            bail!("server sent a JSON non-object: {text}");
        };
        let tag = |map: &mut serde_json::Map<String, Value>, key: &str| -> Result<Option<String>> {
            match map.remove(key) {
                None => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
                Some(other) => bail!("{key:?} must be a non-empty string, got {other} in {text}"),
            }
        };
        let re = tag(&mut map, "re")?;
        let code = if map.contains_key("error") {
            tag(&mut map, "code")?
        } else {
            None
        };
        if let Some(code) = &code {
            ensure!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "error code {code:?} is not snake_case in {text}"
            );
        }
        let frame = Self::from_map(map, text)?;
        ensure!(
            !matches!(frame, Frame::Ok(_)) || re.is_some(),
            "an ok frame without re: {text}"
        );
        Ok((frame, Tags { code, re }))
    }

    fn from_map(map: serde_json::Map<String, Value>, text: &str) -> Result<Frame> {
        let keys = sorted_keys(&map);
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
        // Optional fields that later features add to a frame kind: present, they must
        // have their documented type; the rest of the frame is matched exactly.
        let optional = |key: &str| -> Result<Option<String>> {
            match map.get(key) {
                None => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(other) => bail!("{key:?} must be a non-empty string, got {other} in {text}"),
            }
        };
        let has = |key: &str| map.contains_key(key);
        let role = optional("role")?;
        if let Some(role) = &role {
            // A session's role is a moderator's; a chat frame's a service's (a
            // server-side publish, checked in `parse_msg`).
            ensure!(
                role == "moderator" || has("message"),
                "unknown role {role:?} in {text}"
            );
        }
        let core: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| !matches!(*k, "user" | "role" | "v"))
            .collect();
        Ok(match keys.as_slice() {
            _ if has("message") && has("seq") => {
                Frame::Message(parse_msg(&Value::Object(map.clone()), text)?)
            }
            ["before", "history", "more"] => {
                let Some(items) = map.get("history").and_then(Value::as_array) else {
                    bail!("history must be an array in {text}");
                };
                let history = items
                    .iter()
                    .map(|m| parse_msg(m, text))
                    .collect::<Result<Vec<_>>>()?;
                let Some(more) = map.get("more").and_then(Value::as_bool) else {
                    bail!("more must be a boolean in {text}");
                };
                Frame::History(Page {
                    history,
                    before: uint("before")?,
                    more,
                })
            }
            _ if core == ["epoch", "ready", "recovered", "seq"] => {
                ensure!(
                    map.get("ready") == Some(&Value::Bool(true)),
                    "ready must be true in {text}"
                );
                let epoch = string("epoch")?;
                ensure!(!epoch.is_empty(), "empty epoch in {text}");
                let Some(recovered) = map.get("recovered").and_then(Value::as_bool) else {
                    bail!("recovered must be a boolean in {text}");
                };
                let v = if has("v") { Some(uint("v")?) } else { None };
                ensure!(v.is_none() || v == Some(2), "ready.v must be 2 in {text}");
                let user = optional("user")?;
                ensure!(
                    user.is_some() || role.is_none(),
                    "a role without a user in {text}"
                );
                Frame::Ready(Ready {
                    epoch,
                    seq: uint("seq")?,
                    recovered,
                    v,
                    user,
                    role,
                })
            }
            ["deleted"] => Frame::Deleted(uint("deleted")?),
            ["reactions"] => {
                let inner = map.get("reactions").and_then(Value::as_object);
                let Some(inner) = inner.filter(|i| sorted_keys(i).as_slice() == ["counts", "seq"])
                else {
                    bail!("reactions must be {{seq, counts}} in {text}");
                };
                let counts = inner.get("counts").cloned().unwrap_or(Value::Null);
                ensure!(counts.is_object(), "counts must be an object in {text}");
                check_counts(&counts, text)?;
                match inner.get("seq").and_then(Value::as_u64) {
                    Some(seq) => Frame::Reactions(seq, counts),
                    None => bail!("reactions.seq must be a seq in {text}"),
                }
            }
            ["edited"] => {
                let inner = map.get("edited").and_then(Value::as_object);
                let Some(inner) =
                    inner.filter(|i| sorted_keys(i).as_slice() == ["edited_at", "message", "seq"])
                else {
                    bail!("edited must be {{seq, message, edited_at}} in {text}");
                };
                let n = |key: &str| inner.get(key).and_then(Value::as_u64);
                match (n("seq"), inner.get("message"), n("edited_at")) {
                    (Some(seq), Some(Value::String(message)), Some(edited_at)) => {
                        Frame::Edited(Edited {
                            seq,
                            message: message.clone(),
                            edited_at,
                        })
                    }
                    _ => bail!("edited fields of the wrong type in {text}"),
                }
            }
            ["cid", "deleted"] => Frame::DeletedCid(uint("deleted")?, string("cid")?),
            ["roster"] => Frame::Roster(parse_members(map.get("roster"), text)?),
            ["count", "next", "roster"] => Frame::RosterPage(MemberPage {
                members: parse_members(map.get("roster"), text)?,
                count: uint("count")?,
                next: Some(parse_cursor(map.get("next"), text)?),
            }),
            ["members"] => {
                let Some(inner) = map.get("members").and_then(Value::as_object) else {
                    bail!("members must be an object in {text}");
                };
                match sorted_keys(inner).as_slice() {
                    ["count", "next", "page"] => Frame::Members(MemberPage {
                        members: parse_members(inner.get("page"), text)?,
                        count: match inner.get("count").and_then(Value::as_u64) {
                            Some(n) => n,
                            None => bail!("count must be a non-negative integer in {text}"),
                        },
                        next: match inner.get("next") {
                            Some(Value::Null) => None,
                            next => Some(parse_cursor(next, text)?),
                        },
                    }),
                    ["unlisted"] => match inner.get("unlisted") {
                        Some(Value::String(n)) => Frame::Unlisted(n.clone()),
                        _ => bail!("unlisted must be a string in {text}"),
                    },
                    _ => bail!("members frame with unexpected fields: {text}"),
                }
            }
            ["typing"] => Frame::Typing(parse_typer(map.get("typing"), true, text)?),
            ["typing_stopped"] => {
                Frame::TypingStopped(parse_typer(map.get("typing_stopped"), false, text)?)
            }
            ["ok"] | ["ok", "seq"] => {
                ensure!(
                    map.get("ok") == Some(&Value::Bool(true)),
                    "ok must be true in {text}"
                );
                Frame::Ok(if has("seq") { Some(uint("seq")?) } else { None })
            }
            ["joined"] => Frame::Joined(string("joined")?),
            ["quit"] => Frame::Quit(string("quit")?),
            ["error"] => {
                let e = string("error")?;
                ensure!(!e.trim().is_empty(), "empty error text in {text}");
                Frame::Error(e)
            }
            _ => bail!("server frame with unexpected fields: {text}"),
        })
    }
}

/// Whether a hello asks for protocol v2: `"v"` is the number 2.
pub fn asks_v2(hello: &Value) -> bool {
    hello.get("v").and_then(Value::as_u64) == Some(2)
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
    /// The names of the other members: one `joined` frame each (v1), or the entries of
    /// the `roster` frame (v2), in the order sent.
    pub roster: Vec<String>,
    /// v2: the `roster` frame's entries (empty for v1).
    pub members: Vec<Member>,
    /// True when the roster came as one v2 `roster` frame.
    pub roster_frame: bool,
    /// v2, a big room: the paged `roster` frame's `count` and `next` (the roster holds
    /// only its first page then).
    pub roster_paged: Option<(u64, String)>,
    pub backlog: Vec<Msg>,
    /// v2: the `{"deleted": seq}` frames of a resumed gap, in the order sent.
    pub deleted: Vec<u64>,
    /// v2: the `{"edited": …}` frames before a resumed gap, in the order sent.
    pub edited: Vec<Edited>,
    /// v2: the `{"reactions": …}` frames before a resumed gap: (seq, counts).
    pub reacted: Vec<(u64, Value)>,
    /// v2: every backlog frame in order, as `Ok(message)` or `Err(deleted seq)`.
    pub history: Vec<std::result::Result<Msg, u64>>,
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

/// A connected WebSocket client.
/// What the session asked for in its hello, which decides what it may receive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Protocol {
    /// `"v": 2`: v2 frames (`roster`, `deleted`, `history`) and `ready.v` are allowed.
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
    /// The largest text message, in bytes (a batch counted whole).
    pub largest: usize,
    /// The bytes of every text message.
    pub bytes: usize,
}

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
    /// The v2 tags of the last frame handed out.
    last_tags: Tags,
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
            if let Some(ip) = options.bind {
                socket.bind(std::net::SocketAddr::new(ip, 0))?;
            } else if let Some(ip) = options.local_ip {
                socket.bind((ip, 0).into())?;
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
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                    Ok(Err(Refusal {
                        status,
                        body,
                        retry_after,
                    }))
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
            last_tags: Tags::default(),
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

    /// Sends a hello by hand: what it may receive from then on follows what it asked for
    /// (a refused hello that asked for v2 gets the v2 error, with its `code`).
    pub async fn send_hello(&mut self, hello: &Value) -> Result<()> {
        self.protocol = Protocol {
            v2: asks_v2(hello),
            batch: false,
        };
        self.send_json(hello).await
    }

    /// Sends `{"message": text}`.
    pub async fn say(&mut self, text: &str) -> Result<()> {
        self.send_json(&json!({ "message": text })).await
    }

    /// Sends `{"message": text, "cid": cid}` (a retry-safe send).
    pub async fn say_with_cid(&mut self, text: &str, cid: &str) -> Result<()> {
        self.send_json(&json!({ "message": text, "cid": cid }))
            .await
    }

    /// Sends `{"history": request}` (v2).
    pub async fn ask_history(&mut self, request: Value) -> Result<()> {
        self.send_json(&json!({ "history": request })).await
    }

    /// Sends `{"members": request}` (v2).
    pub async fn ask_members(&mut self, request: Value) -> Result<()> {
        self.send_json(&json!({ "members": request })).await
    }

    /// Expects a history page.
    pub async fn recv_page(&mut self) -> Result<Page> {
        match self.recv().await? {
            Frame::History(p) => Ok(p),
            other => bail!("{}: expected a history page, got {other:?}", self.label),
        }
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

    /// The v2 tags (`code`, `re`) of the frame [`Self::recv`] last returned.
    pub fn last_tags(&self) -> &Tags {
        &self.last_tags
    }

    /// The next frame's raw text, and the frame.
    pub async fn recv_raw(&mut self) -> Result<(String, Frame)> {
        let f = self.recv().await?;
        Ok((self.last_raw.clone(), f))
    }

    /// Checks a frame against the session's protocol: a v1 session never gets a v2
    /// frame kind or field.
    fn checked(&mut self, text: &str) -> Result<Frame> {
        let (f, tags) = Frame::parse_tagged(text).context(format!("{}: decoding", self.label))?;
        let v2_only = tags != Tags::default()
            || match &f {
                Frame::Ok(_)
                | Frame::Roster(_)
                | Frame::Deleted(_)
                | Frame::Edited(_)
                | Frame::Reactions(..)
                | Frame::DeletedCid(..)
                | Frame::History(_)
                | Frame::RosterPage(_)
                | Frame::Members(_)
                | Frame::Unlisted(_)
                | Frame::Typing(_)
                | Frame::TypingStopped(_) => true,
                Frame::Ready(r) => r.v.is_some(),
                _ => false,
            };
        ensure!(
            !v2_only || self.protocol.v2,
            "{}: a v1 session got a v2 frame: {text}",
            self.label
        );
        self.last_tags = tags;
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
                    self.received.largest = self.received.largest.max(t.len());
                    self.received.bytes += t.len();
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

    /// The next chat message, past any `joined` and `quit` frames (others coming and
    /// going meanwhile).
    pub async fn recv_message_past_presence(&mut self) -> Result<Msg> {
        for _ in 0..MAX_JOIN_FRAMES {
            match self.recv().await? {
                Frame::Message(m) => return Ok(m),
                Frame::Joined(_) | Frame::Quit(_) => continue,
                other => bail!("{}: expected a chat message, got {other:?}", self.label),
            }
        }
        bail!(
            "{}: no chat message in {MAX_JOIN_FRAMES} frames",
            self.label
        )
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
    /// announce for this session.
    pub async fn hello_with(&mut self, hello: &Value, own: &str) -> Result<Join> {
        // What the hello asks for (`"v": 2`, `"batch": true`) decides what the session
        // may receive from then on.
        let v2 = asks_v2(hello);
        self.protocol = Protocol {
            v2,
            batch: v2 && hello.get("batch") == Some(&json!(true)),
        };
        self.send_json(hello).await?;
        let join = self.read_join(own).await?;
        // A v2 hello gets the v2 join (one roster frame, ready.v = 2), any other the v1 one.
        ensure!(
            join.roster_frame == v2 && join.ready.v == v2.then_some(2),
            "{}: hello {hello} got the join of the other version (roster frame: {}, ready.v: {:?})",
            self.label,
            join.roster_frame,
            join.ready.v
        );
        Ok(join)
    }

    /// Sends a v2 hello, `{"name": name, "v": 2}`, and reads the join sequence.
    pub async fn hello_v2(&mut self, name: &str) -> Result<Join> {
        self.hello_with(&json!({ "name": name, "v": 2 }), name)
            .await
    }

    /// Reads frames up to `ready` and checks their order: the roster (`joined`s in v1,
    /// one `roster` frame first in v2), backlog messages, this session's own `joined`,
    /// `ready`.
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
        let v2 = ready.v == Some(2);
        let mut roster = Vec::new();
        let mut members = Vec::new();
        let mut backlog: Vec<Msg> = Vec::new();
        let mut deleted = Vec::new();
        let mut edited = Vec::new();
        let mut reacted = Vec::new();
        let mut history = Vec::new();
        let mut saw_roster = false;
        let mut roster_paged = None;
        for (i, f) in frames.into_iter().enumerate() {
            match f {
                Frame::Joined(n) if !v2 && history.is_empty() => roster.push(n),
                Frame::Roster(m) if v2 && i == 0 => {
                    saw_roster = true;
                    roster = m.iter().map(|e| e.name.clone()).collect();
                    members = m;
                }
                Frame::RosterPage(p) if v2 && i == 0 => {
                    saw_roster = true;
                    roster = p.members.iter().map(|e| e.name.clone()).collect();
                    members = p.members;
                    roster_paged = p.next.map(|next| (p.count, next));
                }
                Frame::Message(m) => {
                    backlog.push(m.clone());
                    history.push(Ok(m));
                }
                Frame::Deleted(seq) if v2 => {
                    deleted.push(seq);
                    history.push(Err(seq));
                }
                Frame::Edited(e) if v2 => edited.push(e),
                Frame::Reactions(seq, counts) if v2 => reacted.push((seq, counts)),
                other => bail!(
                    "{label}: unexpected {other:?} in the join sequence (roster, then backlog)"
                ),
            }
        }
        ensure!(
            !v2 || saw_roster,
            "{label}: a v2 join must start with a roster frame"
        );
        Ok(Join {
            roster,
            members,
            roster_frame: saw_roster,
            roster_paged,
            backlog,
            deleted,
            edited,
            reacted,
            history,
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
