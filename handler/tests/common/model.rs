//! The model of a room's traffic that the property suites and the fuzz target share:
//! an [`Op`] for each thing a client or the backend can do, the small [`config`] that
//! generated cases reach the limits of, [`apply`] (an op into a room, as a backend
//! would feed it) and [`rebuilt`] (a room as a Durable Object rebuilds it after
//! hibernation).
//!
//! `Op`'s fields are raw choices (small integers, any string) that [`apply`] maps onto
//! the lists below, so that any value is valid: proptest generates them in range (see
//! `common::ops`), and the fuzzer anything. `fuzz/fuzz_targets/room_events.rs` includes
//! this file by its path, and cargo-fuzz's `cfg(fuzzing)` derives `Arbitrary` for `Op`;
//! so this file uses only `chat_handler`'s public API and `serde_json`.

#![allow(dead_code)]

use chat_handler::{Action, Close, Config, ConnId, MemoryStorage, Peer, Room, Session};
use serde_json::json;

/// The epoch rooms open with.
pub const EPOCH: &str = "epoch-1";

/// Connection ids in use: few, so that ops keep meeting the same connections.
pub const CONNS: u8 = 6;
/// Client addresses (`10.0.0.0` to `10.0.0.2`), shared by the connections.
pub const ADDRS: u8 = 3;
/// Resume seqs go up to this: past what any case stores, retention and `resume_max`.
pub const RESUME_SEQS: u8 = 40;

/// Hello names: valid, trimmed, anonymous, and refused (bidi control, control
/// character, too long).
pub const NAMES: &[&str] = &[
    "alice",
    "bob",
    "  carol ",
    "",
    "x\u{202e}y",
    "a\tb",
    "ddddddddddddddddddddddddddddddddd",
];
/// Message texts: valid, trimmed, and empty once trimmed.
pub const TEXTS: &[&str] = &["hi", "  spaced  ", "", "   ", "<img src=x>", "ü😀", "\n"];
/// Hello fields besides the name: v1, v2, v2 with batching (twice, so batch sessions
/// are common), and the ignored or refused shapes of `batch`. `0..2` is v1 or v2.
pub const OPT_INS: &[&str] = &[
    "",
    r#""v":2"#,
    r#""v":2,"batch":true"#,
    r#""v":2,"batch":true"#,
    r#""v":2,"batch":false"#,
    r#""batch":true"#,
    r#""v":2,"batch":"yes""#,
];
/// Client ids of retry-safe sends: two valid, one refused.
pub const CIDS: &[&str] = &["k-1", "k-2", "bad cid"];

#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone)]
pub enum Op {
    /// A connection opens (a live id is not opened again: backends never reuse one).
    Connect {
        conn: u8,
        addr: u8,
    },
    /// A hello: a name, maybe a resume (`true`: under the room's epoch), an opt-in.
    Hello {
        conn: u8,
        name: u8,
        resume: Option<(bool, u8)>,
        opt_in: u8,
    },
    /// A chat message, maybe with a client id.
    Chat {
        conn: u8,
        text: u8,
        cid: Option<u8>,
    },
    /// A message of `len` characters that JSON escapes as `\u00XX` (6 bytes each).
    Spam {
        conn: u8,
        len: u16,
    },
    /// A v2 history request.
    History {
        conn: u8,
        before: Option<u8>,
        limit: u8,
    },
    /// A typing frame (`{"typing": on}`), as clients send it.
    Typing {
        conn: u8,
        on: bool,
    },
    /// Anything at all as a text frame.
    Text {
        conn: u8,
        raw: String,
    },
    Binary {
        conn: u8,
        len: u16,
    },
    /// The backend's own size cap refused a message.
    TooBig {
        conn: u8,
    },
    /// The backend gives up on the connection (a slow consumer).
    Kick {
        conn: u8,
    },
    /// The peer closes.
    Close {
        conn: u8,
    },
    /// The clock moves by `ms` - 500: it may step back (see [`advance`]).
    Advance {
        ms: u16,
    },
    Tick,
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

fn id(conn: u8) -> ConnId {
    ConnId::from(conn % CONNS)
}

impl Op {
    /// The connection the op is about, if any.
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Op::Connect { conn, .. }
            | Op::Hello { conn, .. }
            | Op::Chat { conn, .. }
            | Op::Spam { conn, .. }
            | Op::History { conn, .. }
            | Op::Typing { conn, .. }
            | Op::Text { conn, .. }
            | Op::Binary { conn, .. }
            | Op::TooBig { conn }
            | Op::Kick { conn }
            | Op::Close { conn } => Some(id(*conn)),
            Op::Advance { .. } | Op::Tick => None,
        }
    }

    /// A hello's resume as sent: (under the room's epoch, seq).
    pub fn resume(&self) -> Option<(bool, u64)> {
        match self {
            Op::Hello {
                resume: Some((good, seq)),
                ..
            } => Some((*good, u64::from(seq % RESUME_SEQS))),
            _ => None,
        }
    }

    /// The hello frame of a `Hello`.
    pub fn hello_text(&self) -> Option<String> {
        let Op::Hello { name, opt_in, .. } = self else {
            return None;
        };
        let mut hello = json!({ "name": pick(NAMES, *name) });
        if let Some((good_epoch, seq)) = self.resume() {
            hello["resume"] =
                json!({"epoch": if good_epoch { EPOCH } else { "stale" }, "seq": seq});
        }
        let text = hello.to_string();
        let opt_in = pick(OPT_INS, *opt_in);
        Some(if opt_in.is_empty() {
            text
        } else {
            format!("{},{opt_in}}}", &text[..text.len() - 1])
        })
    }

    /// The cid a `Chat` sends.
    pub fn cid(&self) -> Option<&'static str> {
        match self {
            Op::Chat { cid: Some(cid), .. } => Some(pick(CIDS, *cid)),
            _ => None,
        }
    }
}

/// Small limits, so that generated cases reach them: a room of 4, a burst of 3 frames
/// refilled at 1 a second and 4 strikes, backlog 5 < resume_max 10 < retention 20, and
/// frames of at most 200 bytes.
pub fn config() -> Config {
    Config {
        room_capacity: 4,
        rate_burst: 3,
        rate_per_sec: 1.0,
        rate_strikes: 4,
        retention: 20,
        backlog: 5,
        resume_max: 10,
        max_frame_bytes: 200,
        hello_timeout_ms: 2000,
        ..Config::default()
    }
}

/// The clock after `op`: an `Advance` moves it by `ms` - 500 (so it steps back a little
/// at times); other ops take no time.
pub fn advance(now: u64, op: &Op) -> u64 {
    match op {
        Op::Advance { ms } => (now + u64::from(*ms)).saturating_sub(500),
        _ => now,
    }
}

/// One event a backend feeds a room.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    Open { conn: ConnId, addr: &'a str },
    Text { conn: ConnId, text: &'a str },
    Binary { conn: ConnId, len: usize },
    TooBig { conn: ConnId },
    Kick { conn: ConnId },
    Close { conn: ConnId },
    Tick,
}

/// Feeds `input` to the room at `now`. (A refused connection's actions are its error
/// frame and its close.)
pub fn feed(room: &mut Room<MemoryStorage>, input: Input, now: u64) -> Vec<Action> {
    match input {
        Input::Open { conn, addr } => {
            let peer = Peer {
                addr: addr.to_owned(),
            };
            room.connect(conn, peer, now)
        }
        Input::Text { conn, text } => room.on_text(conn, text, now),
        Input::Binary { conn, len } => room.on_binary(conn, len, now),
        Input::TooBig { conn } => room.on_too_big(conn, now),
        Input::Kick { conn } => room.kick(conn, Close::SlowConsumer, now),
        Input::Close { conn } => room.disconnect(conn, now),
        Input::Tick => room.on_tick(now),
    }
}

/// Applies `op` to the room at `now` (the clock already moved by [`advance`]).
pub fn apply(room: &mut Room<MemoryStorage>, op: &Op, now: u64) -> Vec<Action> {
    // What the input borrows.
    let (addr, text): (String, String);
    let input = match op {
        Op::Connect { conn, addr: a } => {
            if room.session(id(*conn)).is_some() {
                return Vec::new(); // a backend never reuses a live id
            }
            addr = format!("10.0.0.{}", a % ADDRS);
            Input::Open {
                conn: id(*conn),
                addr: &addr,
            }
        }
        Op::Hello { conn, .. } => {
            text = op.hello_text().unwrap_or_default();
            Input::Text {
                conn: id(*conn),
                text: &text,
            }
        }
        Op::Chat { conn, text: t, .. } => {
            let mut frame = json!({ "message": pick(TEXTS, *t) });
            if let Some(cid) = op.cid() {
                frame["cid"] = json!(cid);
            }
            text = frame.to_string();
            Input::Text {
                conn: id(*conn),
                text: &text,
            }
        }
        Op::Spam { conn, len } => {
            let message: String = (0..*len)
                .map(|i| char::from(0x0E + (i % 14) as u8))
                .collect();
            text = json!({ "message": message }).to_string();
            Input::Text {
                conn: id(*conn),
                text: &text,
            }
        }
        Op::History {
            conn,
            before,
            limit,
        } => {
            let mut request = json!({ "limit": limit });
            if let Some(before) = before {
                request["before"] = json!(before);
            }
            text = json!({ "history": request }).to_string();
            Input::Text {
                conn: id(*conn),
                text: &text,
            }
        }
        Op::Typing { conn, on } => {
            text = json!({ "typing": on }).to_string();
            Input::Text {
                conn: id(*conn),
                text: &text,
            }
        }
        Op::Text { conn, raw } => Input::Text {
            conn: id(*conn),
            text: raw,
        },
        Op::Binary { conn, len } => Input::Binary {
            conn: id(*conn),
            len: usize::from(*len),
        },
        Op::TooBig { conn } => Input::TooBig { conn: id(*conn) },
        Op::Kick { conn } => Input::Kick { conn: id(*conn) },
        Op::Close { conn } => Input::Close { conn: id(*conn) },
        Op::Advance { .. } => return Vec::new(),
        Op::Tick => Input::Tick,
    };
    feed(room, input, now)
}

/// `room` rebuilt the way a Durable Object rebuilds one after hibernation: its sessions
/// through their serialized form, plus a copy of its storage.
pub fn rebuilt(room: &Room<MemoryStorage>) -> Room<MemoryStorage> {
    let sessions: Vec<Session> = room
        .sessions()
        .map(|s| serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap())
        .collect();
    // A room with sessions or history keeps its epoch, so the candidate must go
    // unused; an empty room without history may take any (the backend's choice), and
    // its new sessions carry it in their saved state, so it takes the same one here.
    let candidate = if room.is_empty() && room.last_seq() == 0 {
        room.epoch().to_owned()
    } else {
        "never-used".to_owned()
    };
    Room::restore(
        room.config().clone(),
        room.storage().clone(),
        &candidate,
        sessions,
    )
    .unwrap()
}
