//! Property tests over generated traffic that reaches deep room states: mostly valid
//! hellos (resuming from `(epoch, seq)` pairs that clients really saw), valid messages,
//! clock steps that respect or cross the deadlines (hello timeout, rate refill), some
//! malformed, oversized and rate-limited frames, and restarts that raise or lower the
//! retention. The config is small (backlog 5 < resume_max 12 < retention 20), so cases
//! store tens of messages and reach backlog truncation, retention pruning and
//! `resume_max`.
//!
//! Every event is applied to the room and to a room rebuilt from serialized sessions plus
//! a copy of storage (what a Durable Object does after hibernation): the two must agree.
//! A model of the room, written from the rules and not from the code, predicts every
//! close (capacity, hello deadline, strikes in a row, frame size, bad hello), every error
//! sentence, every stored message, each member's roster and each resume's backlog.
//!
//! The test prints one line with the depth the cases reached and fails if the generator
//! stops reaching it.

mod common;

use chat_handler::{
    Action, Close, Config, ConnId, ErrorKind, MemoryStorage, Room, Session, Storage, ANONYMOUS,
};
use common::model::{self, feed, Input, ADDRS};
use common::{peer, EPOCH};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;

/// The shared small config (backlog 5 < resume_max < retention 20), with a faster
/// refill, fewer strikes, a longer `resume_max` and a message limit the odd texts
/// cross.
fn config() -> Config {
    Config {
        rate_per_sec: 2.0,
        rate_strikes: 3,
        resume_max: 12,
        max_message_chars: 50,
        // Seats and the join bucket are not in this model (tests/abuse.rs checks them):
        // out of the way here.
        seats_per_address: 1000,
        join_burst: 1_000_000,
        join_per_sec: 1_000_000.0,
        // Frame buckets written through: this model rebuilds the room from storage
        // before every event, which only a written-through bucket survives exactly. The
        // delayed writes (a room is rebuilt only once flushed or quiet) are checked by
        // properties_batching.rs and tests/abuse.rs.
        rate_persist_ms: 0,
        ..model::config()
    }
}

/// The config after a restart that raised the retention: `resume_max` now reaches past
/// what the smaller retention pruned, so resumes meet missing messages that are gone.
fn raised_config() -> Config {
    Config {
        retention: 40,
        resume_max: 30,
        backlog: 8,
        ..config()
    }
}

const STALE_EPOCH: &str = "an-older-epoch";

/// Hello names and what the room makes of them.
const NAMES: &[(&str, Result<&str, ErrorKind>)] = &[
    ("alice", Ok("alice")),
    ("bob", Ok("bob")),
    ("  carol ", Ok("carol")),
    ("ü😀", Ok("ü😀")),
    ("", Ok(ANONYMOUS)),
    ("x\u{202e}y", Err(ErrorKind::NameBidi)),
    ("a\tb", Err(ErrorKind::NameControl)),
    (
        "ddddddddddddddddddddddddddddddddd",
        Err(ErrorKind::NameTooLong),
    ),
];
const VALID_NAMES: usize = 5;

/// Valid messages and their trimmed text.
const TEXTS: &[(&str, &str)] = &[
    ("hi", "hi"),
    ("  spaced  ", "spaced"),
    ("<img src=x>", "<img src=x>"),
    ("ü😀", "ü😀"),
    ("two\nlines", "two\nlines"),
];

/// Other text frames: the text, what it is as a first frame (a hello: the name, or the
/// error), and what it is as a later frame (a message: its text, or the error).
type OddText = (String, Result<String, ErrorKind>, Result<String, ErrorKind>);

fn odd_text(i: usize) -> OddText {
    use ErrorKind::*;
    let anonymous = || Ok(ANONYMOUS.to_owned());
    match i {
        0 => ("nope".into(), Err(HelloNotObject), Err(NotJson)),
        1 => ("[1]".into(), Err(HelloNotObject), Err(WrongShape)),
        2 => (
            r#"{"message":5}"#.into(),
            anonymous(),
            Err(MessageNotString),
        ),
        3 => (
            r#"{"message":"   "}"#.into(),
            anonymous(),
            Err(MessageEmpty),
        ),
        4 => (r#"{"name":7}"#.into(), Err(NameNotString), Err(WrongShape)),
        5 => (
            json!({ "message": "y".repeat(51) }).to_string(),
            anonymous(),
            Err(MessageTooLong),
        ),
        _ => (
            json!({ "message": "z".repeat(50) }).to_string(),
            anonymous(),
            Ok("z".repeat(50)),
        ),
    }
}
const ODD_TEXTS: usize = 7;

#[derive(Debug, Clone)]
enum Op {
    /// A connection opens from one of `ADDRS` client addresses.
    Connect {
        addr: u8,
    },
    /// A connection without a hello sends one; a new connection opens first when none
    /// is waiting.
    Hello {
        pick: usize,
        addr: u8,
        name: usize,
        resume: ResumeFrom,
    },
    /// A member sends `repeat` valid messages at the same instant.
    Chat {
        pick: usize,
        text: usize,
        repeat: usize,
    },
    /// Any open connection sends something else.
    Odd {
        pick: usize,
        frame: Odd,
    },
    /// The peer closes.
    Leave {
        pick: usize,
    },
    Advance(Step),
    Tick,
    /// The room is evicted and rebuilt from its sessions and storage, with the retention
    /// raised (or back to normal).
    Restart {
        raised: bool,
    },
}

/// Where a hello's resume comes from.
#[derive(Debug, Clone, Copy)]
enum ResumeFrom {
    Nothing,
    /// The newest pair clients saw that is at least this many messages old: from a
    /// client that just lost its socket to one beyond `resume_max` and retention.
    Behind(u64),
    /// Any pair clients saw.
    Any(usize),
    /// A seq clients saw, under another epoch.
    Stale(usize),
    /// A seq the room has not reached.
    Ahead(u64),
}

#[derive(Debug, Clone, Copy)]
enum Odd {
    /// One of `odd_text`.
    Text(usize),
    /// A small binary frame.
    Binary,
    /// A valid message frame padded to `max_frame_bytes` plus this many bytes.
    TextAtLimit(i64),
    /// A binary frame of `max_frame_bytes` plus this many bytes.
    BinaryAtLimit(i64),
    /// The backend's own size cap refused a message (`on_too_big`).
    BackendTooBig,
    /// The backend gives up on the connection (a slow consumer).
    Kick,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// A few milliseconds to a few hundred.
    Jitter(u64),
    /// Exactly the time `n` tokens take to refill.
    Refill(u64),
    /// To the earliest hello deadline plus this (-1, 0 or 1 ms), then a tick.
    Deadline(i64),
    /// The clock steps backwards.
    Back(u64),
    /// Long enough for every bucket to refill.
    Idle(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let pick = any::<usize>();
    let addr = 0..ADDRS;
    let name = prop_oneof![9 => 0..VALID_NAMES, 1 => VALID_NAMES..NAMES.len()];
    let resume = prop_oneof![
        3 => Just(ResumeFrom::Nothing),
        6 => (0u64..=32).prop_map(ResumeFrom::Behind),
        2 => any::<usize>().prop_map(ResumeFrom::Any),
        1 => any::<usize>().prop_map(ResumeFrom::Stale),
        1 => (0u64..3).prop_map(ResumeFrom::Ahead),
    ];
    let repeat = prop_oneof![6 => Just(1usize), 3 => 2usize..4, 1 => 4usize..7];
    let odd = prop_oneof![
        4 => (0..ODD_TEXTS).prop_map(Odd::Text),
        1 => Just(Odd::Binary),
        2 => (-1i64..=1).prop_map(Odd::TextAtLimit),
        1 => (-1i64..=1).prop_map(Odd::BinaryAtLimit),
        1 => Just(Odd::BackendTooBig),
        1 => Just(Odd::Kick),
    ];
    let step = prop_oneof![
        2 => (1u64..400).prop_map(Step::Jitter),
        5 => (1u64..=3).prop_map(Step::Refill),
        2 => (-1i64..=1).prop_map(Step::Deadline),
        1 => (1u64..=500).prop_map(Step::Back),
        1 => (3_000u64..6_000).prop_map(Step::Idle),
    ];
    prop_oneof![
        2 => addr.clone().prop_map(|addr| Op::Connect { addr }),
        5 => (pick, addr, name, resume)
            .prop_map(|(pick, addr, name, resume)| Op::Hello { pick, addr, name, resume }),
        12 => (pick, 0..TEXTS.len(), repeat)
            .prop_map(|(pick, text, repeat)| Op::Chat { pick, text, repeat }),
        3 => (pick, odd).prop_map(|(pick, frame)| Op::Odd { pick, frame }),
        2 => pick.prop_map(|pick| Op::Leave { pick }),
        7 => step.prop_map(Op::Advance),
        1 => Just(Op::Tick),
        1 => any::<bool>().prop_map(|raised| Op::Restart { raised }),
    ]
}

/// A resume's `(epoch, seq)`.
type Pair = (String, u64);

/// One event for the room, with what the generator meant by it.
#[derive(Debug, Clone)]
enum Event {
    Connect {
        conn: ConnId,
        addr: String,
    },
    Text {
        conn: ConnId,
        text: String,
        /// As a hello: the name and the resume pair sent, or the error.
        hello: Result<(String, Option<Pair>), ErrorKind>,
        /// As a later frame: the stored text, or the error.
        chat: Result<String, ErrorKind>,
    },
    Binary {
        conn: ConnId,
        len: usize,
    },
    TooBig {
        conn: ConnId,
    },
    Kick {
        conn: ConnId,
    },
    Disconnect {
        conn: ConnId,
    },
    Tick,
}

impl Event {
    /// What the backend feeds the room.
    fn input(&self) -> Input<'_> {
        match self {
            Event::Connect { conn, addr } => Input::Open { conn: *conn, addr },
            Event::Text { conn, text, .. } => Input::Text { conn: *conn, text },
            Event::Binary { conn, len } => Input::Binary {
                conn: *conn,
                len: *len,
            },
            Event::TooBig { conn } => Input::TooBig { conn: *conn },
            Event::Kick { conn } => Input::Kick { conn: *conn },
            Event::Disconnect { conn } => Input::Close { conn: *conn },
            Event::Tick => Input::Tick,
        }
    }
}

fn apply(room: &mut Room<MemoryStorage>, ev: &Event, now: u64) -> Vec<Action> {
    feed(room, ev.input(), now)
}

fn serialized_sessions(room: &Room<MemoryStorage>) -> Vec<Session> {
    room.sessions()
        .map(|s| serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap())
        .collect()
}

/// The room rebuilt from its storage and serialized sessions, with `candidate` as the
/// backend's new random epoch: used only by a room that never stored a message and has
/// no session that was told its epoch.
fn rebuilt(room: &Room<MemoryStorage>, config: Config, candidate: &str) -> Room<MemoryStorage> {
    Room::restore(
        config,
        room.storage().clone(),
        candidate,
        serialized_sessions(room),
    )
    .unwrap()
}

fn parse(frame: &str) -> Value {
    serde_json::from_str(frame).expect("every server frame is JSON")
}

/// Applies a `joined`/`quit` frame to a roster view (a multiset of names).
fn apply_roster_frame(view: &mut Vec<String>, v: &Value) {
    if let Some(name) = v.get("joined").and_then(Value::as_str) {
        view.push(name.to_owned());
    } else if let Some(name) = v.get("quit").and_then(Value::as_str) {
        if let Some(i) = view.iter().position(|n| n == name) {
            view.remove(i);
        }
    }
}

/// The model's view of one open connection.
#[derive(Debug, Clone)]
struct Conn {
    addr: String,
    opened: u64,
    name: Option<String>,
    /// Rate-limited frames in a row.
    strikes: u32,
    /// The roster as told by the joined/quit frames this connection got.
    view: Vec<String>,
}

/// The model of an address's frame bucket, as the room's storage holds it: `burst`
/// tokens, refilled at `rate_per_sec` (a clock going backwards refills nothing), one per
/// address and shared by its connections. It changes only when a token is taken (a
/// refused frame leaves it as it was, refill time included), survives the address's
/// connections leaving and the room's restarts, and is forgotten only by the pruning
/// at an address's last leave (see [`Case::leave`]); a forgotten bucket starts again
/// full. The arithmetic is the documented one, in f64 like the room's, so the two agree
/// on every boundary. (The join bucket, lifted in this config, is not modelled; only its
/// refill time counts, for pruning.)
#[derive(Debug, Clone, Copy)]
struct Tokens {
    tokens: f64,
    /// When the last token was taken: what pruning goes by.
    updated: u64,
}

impl Tokens {
    fn full(cfg: &Config, now: u64) -> Tokens {
        Tokens {
            tokens: f64::from(cfg.rate_burst),
            updated: now,
        }
    }

    fn refilled(self, cfg: &Config, now: u64) -> Tokens {
        let elapsed = now.saturating_sub(self.updated) as f64 / 1000.0;
        Tokens {
            tokens: (self.tokens + elapsed * cfg.rate_per_sec).min(f64::from(cfg.rate_burst)),
            updated: self.updated.max(now),
        }
    }
}

/// Milliseconds an empty bucket of `burst` at `per_sec` takes to refill, rounded up.
fn full_refill_ms(burst: u32, per_sec: f64) -> u64 {
    (f64::from(burst) / per_sec * 1000.0).ceil() as u64
}

/// What the model predicts an event does.
#[derive(Debug, Default)]
struct Expected {
    closes: Vec<(ConnId, Close)>,
    errors: Vec<(ConnId, ErrorKind)>,
    /// A stored and broadcast message: sender's name, text.
    message: Option<(String, String)>,
    /// A completed join: the connection, its name, its resume.
    join: Option<(ConnId, String, Option<Pair>)>,
}

/// How deep one case went.
#[derive(Debug, Default)]
struct Depth {
    resumes: u32,
    recovered: u32,
    truncated: u32,
    pruned_resumes: u32,
    closes: BTreeMap<String, u32>,
}

struct Case {
    room: Room<MemoryStorage>,
    now: u64,
    next_conn: ConnId,
    conns: BTreeMap<ConnId, Conn>,
    buckets: BTreeMap<String, Tokens>,
    /// When the room last pruned its stored buckets (`None`: not since it was built).
    buckets_pruned: Option<u64>,
    /// Every message ever broadcast, by seq: the model of history.
    history: BTreeMap<u64, Value>,
    last_seq: u64,
    last_ts: u64,
    /// Messages at or below this seq have been pruned.
    pruned_through: u64,
    /// Every (epoch, seq) a client learned, oldest first: where resumes come from.
    seen: Vec<Pair>,
    /// The room's epoch: `EPOCH` until a restart of a room with no history and no
    /// session picks a new one (nothing could be resumed from it anyway).
    epoch: String,
    depth: Depth,
}

impl Case {
    fn new() -> Self {
        Case {
            room: Room::open(config(), MemoryStorage::new(), EPOCH).unwrap(),
            now: 1_000,
            next_conn: 1,
            conns: BTreeMap::new(),
            buckets: BTreeMap::new(),
            buckets_pruned: None,
            history: BTreeMap::new(),
            last_seq: 0,
            last_ts: 0,
            pruned_through: 0,
            seen: Vec::new(),
            epoch: EPOCH.to_owned(),
            depth: Depth::default(),
        }
    }

    fn cfg(&self) -> Config {
        self.room.config().clone()
    }

    fn pick(&self, pick: usize, filter: impl Fn(&Conn) -> bool) -> Option<ConnId> {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| filter(c))
            .map(|(id, _)| *id)
            .collect();
        (!ids.is_empty()).then(|| ids[pick % ids.len()])
    }

    /// The earliest hello deadline, from the model.
    fn deadline(&self) -> Option<u64> {
        let timeout = self.cfg().hello_timeout_ms;
        self.conns
            .values()
            .filter(|c| c.name.is_none())
            .map(|c| c.opened + timeout)
            .min()
    }

    fn connect(&mut self, addr: u8) -> Result<Option<ConnId>, TestCaseError> {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.event(Event::Connect {
            conn,
            addr: format!("10.0.0.{addr}"),
        })?;
        Ok(self.conns.contains_key(&conn).then_some(conn))
    }

    fn resume_pair(&self, from: ResumeFrom) -> Option<Pair> {
        let seen = |i: usize| {
            self.seen
                .get(i % self.seen.len().max(1))
                .cloned()
                .unwrap_or_else(|| (self.epoch.clone(), 0))
        };
        match from {
            ResumeFrom::Nothing => None,
            ResumeFrom::Behind(k) => {
                let newest = self.last_seq.saturating_sub(k);
                let i = self.seen.partition_point(|(_, seq)| *seq <= newest);
                Some(seen(i.saturating_sub(1)))
            }
            ResumeFrom::Any(i) => Some(seen(i)),
            ResumeFrom::Stale(i) => Some((STALE_EPOCH.to_owned(), seen(i).1)),
            ResumeFrom::Ahead(k) => Some((self.epoch.clone(), self.last_seq + 1 + k)),
        }
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let cfg = self.cfg();
        match *op {
            Op::Connect { addr } => {
                self.connect(addr)?;
            }
            Op::Hello {
                pick,
                addr,
                name,
                resume,
            } => {
                let conn = match self.pick(pick, |c| c.name.is_none()) {
                    Some(c) => c,
                    None => match self.connect(addr)? {
                        Some(c) => c,
                        None => return Ok(()),
                    },
                };
                let (raw, result) = NAMES[name];
                let pair = self.resume_pair(resume);
                let mut hello = json!({ "name": raw });
                if let Some((epoch, seq)) = &pair {
                    hello["resume"] = json!({ "epoch": epoch, "seq": seq });
                }
                self.event(Event::Text {
                    conn,
                    text: hello.to_string(),
                    hello: result.map(|n| (n.to_owned(), pair)),
                    chat: Err(ErrorKind::WrongShape),
                })?;
            }
            Op::Chat { pick, text, repeat } => {
                let Some(conn) = self.pick(pick, |c| c.name.is_some()) else {
                    return Ok(());
                };
                let (raw, trimmed) = TEXTS[text];
                for _ in 0..repeat {
                    if !self.conns.contains_key(&conn) {
                        break; // closed for flooding
                    }
                    self.event(Event::Text {
                        conn,
                        text: json!({ "message": raw }).to_string(),
                        hello: Ok((ANONYMOUS.to_owned(), None)),
                        chat: Ok(trimmed.to_owned()),
                    })?;
                }
            }
            Op::Odd { pick, frame } => {
                let Some(conn) = self.pick(pick, |_| true) else {
                    return Ok(());
                };
                let at_limit = |delta: i64| (cfg.max_frame_bytes as i64 + delta) as usize;
                let ev = match frame {
                    Odd::Text(i) => {
                        let (text, hello, chat) = odd_text(i);
                        Event::Text {
                            conn,
                            text,
                            hello: hello.map(|n| (n, None)),
                            chat,
                        }
                    }
                    Odd::Binary => Event::Binary { conn, len: 10 },
                    Odd::TextAtLimit(delta) => {
                        // JSON allows white space: pad a valid message to the exact size.
                        let core = json!({ "message": "edge" }).to_string();
                        let len = at_limit(delta);
                        let text = format!(
                            "{}{}}}",
                            &core[..core.len() - 1],
                            " ".repeat(len - core.len())
                        );
                        assert_eq!(text.len(), len);
                        Event::Text {
                            conn,
                            text,
                            hello: Ok((ANONYMOUS.to_owned(), None)),
                            chat: Ok("edge".to_owned()),
                        }
                    }
                    Odd::BinaryAtLimit(delta) => Event::Binary {
                        conn,
                        len: at_limit(delta),
                    },
                    Odd::BackendTooBig => Event::TooBig { conn },
                    Odd::Kick => Event::Kick { conn },
                };
                self.event(ev)?;
            }
            Op::Leave { pick } => {
                if let Some(conn) = self.pick(pick, |_| true) {
                    self.event(Event::Disconnect { conn })?;
                }
            }
            Op::Advance(step) => match step {
                Step::Jitter(ms) | Step::Idle(ms) => self.now += ms,
                Step::Refill(n) => {
                    self.now += (n as f64 * 1000.0 / cfg.rate_per_sec).ceil() as u64;
                }
                Step::Back(ms) => self.now = self.now.saturating_sub(ms),
                Step::Deadline(delta) => {
                    if let Some(d) = self.deadline() {
                        let at = d.saturating_add_signed(delta);
                        if at > self.now {
                            self.now = at;
                        }
                        self.event(Event::Tick)?;
                    }
                }
            },
            Op::Tick => self.event(Event::Tick)?,
            Op::Restart { raised } => {
                let cfg = if raised { raised_config() } else { config() };
                // Buckets are in storage, read back when first needed: the model's stay
                // as they are.
                let keeps_epoch = self.room.storage().clone().load_epoch().unwrap().is_some()
                    || self.room.sessions().next().is_some();
                self.room = rebuilt(&self.room, cfg, "never-used");
                self.buckets_pruned = None;
                if keeps_epoch {
                    prop_assert_eq!(self.room.epoch(), self.epoch.as_str());
                } else {
                    self.epoch = self.room.epoch().to_owned();
                }
                self.check_state()?;
            }
        }
        Ok(())
    }

    /// Charges one token to the connection's address; false (and no change) if the
    /// bucket is empty.
    fn charge(&mut self, conn: ConnId) -> bool {
        let cfg = self.cfg();
        let addr = self.conns[&conn].addr.clone();
        let now = self.now;
        let current = self
            .buckets
            .get(&addr)
            .copied()
            .unwrap_or_else(|| Tokens::full(&cfg, now));
        let next = current.refilled(&cfg, now);
        if next.tokens < 1.0 {
            return false;
        }
        self.buckets.insert(
            addr,
            Tokens {
                tokens: next.tokens - 1.0,
                ..next
            },
        );
        true
    }

    /// The connection goes (closed by the room, or by its peer).
    fn leave(&mut self, conn: ConnId) {
        let cfg = self.cfg();
        let Some(gone) = self.conns.remove(&conn) else {
            return;
        };
        if self.conns.values().any(|c| c.addr == gone.addr) {
            return;
        }
        // The address's last connection: its bucket stays (reconnecting does not refill
        // it), and every stored bucket, of any address, connected or not, that has
        // refilled by now is pruned. "Refilled" is judged by the slowest kind of bucket
        // (frames, joins or a service's publishes, which share the table): pruned are the buckets whose last token was taken more than
        // that kind's full refill time ago (exactly that long ago is still kept). A
        // pruned bucket is read back full, which it is while the clock goes forward;
        // only a clock stepping back tells a pruned bucket from a kept one. The prune
        // is lazy: only if the last one is that refill time old (at least 1 s), or the
        // clock stepped back before it, or the room was built since.
        let refill_ms = full_refill_ms(cfg.rate_burst, cfg.rate_per_sec)
            .max(full_refill_ms(cfg.join_burst, cfg.join_per_sec))
            .max(full_refill_ms(cfg.publish_burst, cfg.publish_per_sec));
        let every = refill_ms.max(1_000);
        let now = self.now;
        let due = match self.buckets_pruned {
            None => true,
            Some(at) => now < at || now - at >= every,
        };
        if due {
            self.buckets_pruned = Some(now);
            let before = now.saturating_sub(refill_ms);
            self.buckets.retain(|_, b| b.updated >= before);
        }
        // The last connection left a room that never stored a message: it keeps no
        // bucket at all (an empty room leaves no row).
        if self.conns.is_empty() && self.last_seq == 0 {
            self.buckets.clear();
        }
    }

    fn close(&mut self, expect: &mut Expected, conn: ConnId, close: Close) {
        expect.closes.push((conn, close));
        self.leave(conn);
    }

    /// A frame from a member costs a token; refusals in a row count as strikes.
    fn charged(&mut self, expect: &mut Expected, conn: ConnId) -> bool {
        let strikes = self.cfg().rate_strikes;
        if self.charge(conn) {
            self.conns.get_mut(&conn).unwrap().strikes = 0;
            return true;
        }
        let c = self.conns.get_mut(&conn).unwrap();
        c.strikes += 1;
        expect.errors.push((conn, ErrorKind::RateLimited));
        if c.strikes >= strikes {
            self.close(expect, conn, Close::Flooding);
        }
        false
    }

    /// The model: what the event must do, from the rules. Updates the model's
    /// connections and buckets.
    fn predict(&mut self, ev: &Event) -> Expected {
        let cfg = self.cfg();
        let mut expect = Expected::default();
        let joined = |s: &Self, conn: ConnId| s.conns.get(&conn).map(|c| c.name.is_some());
        match ev {
            Event::Connect { conn, addr } => {
                if self.conns.len() >= cfg.room_capacity {
                    // The reason as an error frame, then the close.
                    expect.errors.push((*conn, ErrorKind::RoomFull));
                    expect.closes.push((*conn, Close::RoomFull));
                } else {
                    let c = Conn {
                        addr: addr.clone(),
                        opened: self.now,
                        name: None,
                        strikes: 0,
                        view: Vec::new(),
                    };
                    self.conns.insert(*conn, c);
                }
            }
            Event::Text {
                conn,
                text,
                hello,
                chat,
            } => match joined(self, *conn) {
                None => {}
                Some(_) if text.len() > cfg.max_frame_bytes => {
                    self.close(&mut expect, *conn, Close::TooBig)
                }
                // A frame after the hello costs a token before it is read.
                Some(true) => match (self.charged(&mut expect, *conn), chat) {
                    (false, _) => {}
                    (true, Ok(text)) => {
                        let name = self.conns[conn].name.clone().unwrap();
                        expect.message = Some((name, text.clone()));
                    }
                    (true, Err(e)) => expect.errors.push((*conn, *e)),
                },
                Some(false) => match hello {
                    Ok((name, resume)) => {
                        self.conns.get_mut(conn).unwrap().name = Some(name.clone());
                        expect.join = Some((*conn, name.clone(), resume.clone()));
                    }
                    Err(e) => {
                        expect.errors.push((*conn, *e));
                        self.close(&mut expect, *conn, Close::BadHello);
                    }
                },
            },
            Event::Binary { conn, len } => match joined(self, *conn) {
                None => {}
                Some(_) if *len > cfg.max_frame_bytes => {
                    self.close(&mut expect, *conn, Close::TooBig)
                }
                Some(true) => {
                    let accepted = self.charged(&mut expect, *conn);
                    if accepted {
                        expect.errors.push((*conn, ErrorKind::Binary));
                    }
                }
                Some(false) => {
                    expect.errors.push((*conn, ErrorKind::Binary));
                    self.close(&mut expect, *conn, Close::BadHello);
                }
            },
            Event::TooBig { conn } => self.close(&mut expect, *conn, Close::TooBig),
            Event::Kick { conn } => self.close(&mut expect, *conn, Close::SlowConsumer),
            Event::Disconnect { conn } => self.leave(*conn),
            Event::Tick => {
                let late: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| {
                        c.name.is_none() && self.now >= c.opened + cfg.hello_timeout_ms
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for conn in late {
                    expect.errors.push((conn, ErrorKind::HelloTimeout));
                    self.close(&mut expect, conn, Close::HelloTimeout);
                }
            }
        }
        expect
    }

    /// Applies one event to the room and to a rebuilt copy, and checks both against the
    /// model.
    fn event(&mut self, ev: Event) -> Result<(), TestCaseError> {
        let cfg = self.cfg();
        let now = self.now;
        // The epoch a room without history picks is the backend's choice; the shadow
        // picks the same one, so everything else must match.
        let mut shadow = rebuilt(&self.room, cfg.clone(), self.room.epoch());
        let actions = apply(&mut self.room, &ev, now);
        let shadow_actions = apply(&mut shadow, &ev, now);
        prop_assert_eq!(
            &actions,
            &shadow_actions,
            "a rebuilt room must behave the same"
        );

        let mut expect = self.predict(&ev);

        // Closes: exactly the predicted ones.
        let mut closes: Vec<(ConnId, Close)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Close { conn, close } => Some((*conn, *close)),
                _ => None,
            })
            .collect();
        closes.sort_by_key(|(c, _)| *c);
        expect.closes.sort_by_key(|(c, _)| *c);
        prop_assert_eq!(&closes, &expect.closes, "closes after {:?}", ev);
        for (_, close) in &closes {
            *self.depth.closes.entry(format!("{close:?}")).or_default() += 1;
        }

        // Errors: exactly the predicted sentences, to the predicted connections.
        let mut errors: Vec<(ConnId, String)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { to, frame } => parse(frame)
                    .get("error")
                    .and_then(Value::as_str)
                    .map(|e| (*to, e.to_owned())),
                _ => None,
            })
            .collect();
        let mut expected_errors: Vec<(ConnId, String)> = expect
            .errors
            .iter()
            .map(|(c, k)| (*c, k.sentence().to_owned()))
            .collect();
        errors.sort();
        expected_errors.sort();
        prop_assert_eq!(&errors, &expected_errors, "errors after {:?}", ev);

        // The model's roster is the room's.
        let members: Vec<ConnId> = self.room.members().collect();
        let model_members: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.name.is_some())
            .map(|(id, _)| *id)
            .collect();
        prop_assert_eq!(&members, &model_members);

        // Frames: no lurking, roster views, stored messages in order.
        let mut new_messages = Vec::new();
        for a in &actions {
            match a {
                Action::Send { to, frame } => {
                    let v = parse(frame);
                    if !members.contains(to) {
                        prop_assert!(v.get("error").is_some(), "non-member got {}", frame);
                    } else if let Some(c) = self.conns.get_mut(to) {
                        apply_roster_frame(&mut c.view, &v);
                    }
                }
                Action::Broadcast { frame, .. } => {
                    let v = parse(frame);
                    for m in &members {
                        apply_roster_frame(&mut self.conns.get_mut(m).unwrap().view, &v);
                    }
                    if v.get("seq").is_some() {
                        new_messages.push(v);
                    }
                }
                _ => {}
            }
        }
        match (&expect.message, new_messages.as_slice()) {
            (None, []) => {}
            (Some((name, text)), [v]) => {
                let seq = self.last_seq + 1;
                let ts = now.max(self.last_ts + 1);
                prop_assert_eq!(
                    v,
                    &json!({"name": name, "message": text, "timestamp": ts, "seq": seq}),
                    "seq has no gaps, timestamps strictly increase"
                );
                self.last_seq = seq;
                self.last_ts = ts;
                self.history.insert(seq, v.clone());
                self.pruned_through = self
                    .pruned_through
                    .max(seq.saturating_sub(cfg.retention as u64));
                if !members.is_empty() {
                    self.seen.push((self.epoch.clone(), seq));
                }
            }
            (expected, got) => {
                prop_assert!(
                    false,
                    "expected message {:?}, broadcast {:?}",
                    expected,
                    got
                )
            }
        }

        if let Some((conn, name, resume)) = expect.join.take() {
            self.check_join(&actions, &cfg, conn, &name, resume)?;
        }
        self.check_state()
    }

    /// A completed join: the joiner's own name announced, then `ready` after exactly
    /// the missing messages of a valid resume, or else after the last `backlog`.
    fn check_join(
        &mut self,
        actions: &[Action],
        cfg: &Config,
        conn: ConnId,
        name: &str,
        resume: Option<Pair>,
    ) -> Result<(), TestCaseError> {
        let mine: Vec<Value> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { to, frame } if *to == conn => Some(parse(frame)),
                _ => None,
            })
            .collect();
        let announced = actions.iter().any(|a| match a {
            Action::Broadcast { frame, .. } => parse(frame) == json!({ "joined": name }),
            _ => false,
        });
        prop_assert!(announced, "{} joined without its joined broadcast", conn);
        let ready = mine
            .iter()
            .find(|v| v.get("ready").is_some())
            .expect("ready");
        let backlog: Vec<&Value> = mine.iter().filter(|v| v.get("message").is_some()).collect();
        prop_assert_eq!(ready["epoch"].as_str(), Some(self.epoch.as_str()));
        prop_assert_eq!(ready["seq"].as_u64(), Some(self.last_seq));
        let recovered = ready["recovered"].as_bool().unwrap();

        let last = self.last_seq;
        let expect_recovered = match &resume {
            Some((epoch, seq)) => {
                let valid =
                    *epoch == self.epoch && *seq <= last && last - seq <= cfg.resume_max as u64;
                if valid && *seq < self.pruned_through {
                    self.depth.pruned_resumes += 1;
                }
                valid && *seq >= self.pruned_through
            }
            None => false,
        };
        prop_assert_eq!(
            recovered,
            expect_recovered,
            "resume {:?} at {}",
            resume,
            last
        );
        let from = match (&resume, recovered) {
            (Some((_, seq)), true) => seq + 1,
            _ => {
                let from = last.saturating_sub(cfg.backlog as u64) + 1;
                if from > self.pruned_through + 1 {
                    self.depth.truncated += 1;
                }
                from.max(self.pruned_through + 1)
            }
        };
        let expected: Vec<&Value> = self.history.range(from..).map(|(_, v)| v).collect();
        prop_assert_eq!(backlog, expected);

        if resume.is_some() {
            self.depth.resumes += 1;
        }
        if recovered {
            self.depth.recovered += 1;
        }
        self.seen.push((self.epoch.clone(), last));
        Ok(())
    }

    /// State the room exposes agrees with the model after every event.
    fn check_state(&self) -> Result<(), TestCaseError> {
        let room = &self.room;
        prop_assert_eq!(room.next_deadline(), self.deadline());
        prop_assert_eq!(room.connection_count(), self.conns.len());
        prop_assert_eq!(room.last_seq(), self.last_seq);
        prop_assert_eq!(
            room.storage().len() as u64,
            self.last_seq - self.pruned_through,
            "retained messages"
        );
        // (Which buckets storage holds is no longer modelled here: since buckets are
        // stored once per address as they change, rather than kept only when an
        // address's last connection leaves, `handler/tests/abuse.rs` checks them, and
        // the rebuild equivalence above shows a rebuilt room charges the same.)
        let mut roster: Vec<String> = self.conns.values().filter_map(|c| c.name.clone()).collect();
        roster.sort();
        for (id, c) in &self.conns {
            let s = room
                .session(*id)
                .expect("open in the model, open in the room");
            prop_assert_eq!(s.name(), c.name.as_deref());
            prop_assert_eq!(s.strikes(), c.strikes, "strikes of {}", id);
            if c.name.is_some() {
                // Every member's roster, as told by the frames it got, is the room's.
                let mut view = c.view.clone();
                view.sort();
                prop_assert_eq!(&view, &roster, "roster seen by {}", id);
            }
        }
        Ok(())
    }
}

/// Depth reached by all cases, printed once and checked.
#[derive(Default)]
struct Summary {
    stored: Vec<u64>,
    recovered: usize,
    truncated: usize,
    pruned: usize,
    pruned_resumes: usize,
    closes: BTreeMap<String, usize>,
}

impl Summary {
    fn add(&mut self, case: &Case) {
        self.stored.push(case.last_seq);
        self.recovered += usize::from(case.depth.recovered > 0);
        self.truncated += usize::from(case.depth.truncated > 0);
        self.pruned += usize::from(case.pruned_through > 0);
        self.pruned_resumes += usize::from(case.depth.pruned_resumes > 0);
        for close in case.depth.closes.keys() {
            *self.closes.entry(close.clone()).or_default() += 1;
        }
    }

    fn line(&mut self) -> String {
        self.stored.sort_unstable();
        let n = self.stored.len();
        let closes: Vec<String> = self
            .closes
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        format!(
            "room_invariants_hold: {n} cases; messages stored per case min/median/max {}/{}/{}, \
             >= 10 in {}; cases that recovered a resume {}, hit backlog truncation {}, \
             hit retention pruning {}, refused a resume over pruned messages {}; \
             cases closing by rule: {}",
            self.stored[0],
            self.stored[n / 2],
            self.stored[n - 1],
            self.stored.iter().filter(|s| **s >= 10).count(),
            self.recovered,
            self.truncated,
            self.pruned,
            self.pruned_resumes,
            closes.join(", "),
        )
    }
}

#[test]
fn room_invariants_hold() {
    // PROPTEST_CASES overrides the number of cases (256 by default).
    let mut runner = TestRunner::new(ProptestConfig {
        source_file: Some(file!()),
        ..ProptestConfig::default()
    });
    let summary = RefCell::new(Summary::default());
    let result = runner.run(&proptest::collection::vec(op(), 1..200), |ops| {
        let mut case = Case::new();
        for op in &ops {
            case.run(op)?;
        }
        summary.borrow_mut().add(&case);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\n{runner}");
    }
    let mut summary = summary.into_inner();
    // Straight to stderr, past the test harness's capture: the depth is part of the
    // result.
    let _ = writeln!(std::io::stderr(), "{}", summary.line());

    // The generator must keep reaching deep states. Typical shares (256 cases): 80% store
    // 10 messages or more, 95% recover a resume, 75% truncate a backlog, 50% prune, 5%
    // refuse a resume over pruned messages, and each close rule is hit in 40% or more.
    let n = summary.stored.len();
    let share = |cases: usize, percent: usize| cases * 100 >= n * percent;
    let deep = summary.stored.iter().filter(|s| **s >= 10).count();
    assert!(share(deep, 60), "under 60% of the cases store 10 messages");
    assert!(share(summary.recovered, 75), "under 75% recover a resume");
    assert!(share(summary.truncated, 50), "under 50% truncate a backlog");
    assert!(share(summary.pruned, 25), "under 25% prune by retention");
    assert!(summary.pruned_resumes >= 1, "no resume met pruned messages");
    for close in [
        Close::RoomFull,
        Close::HelloTimeout,
        Close::Flooding,
        Close::TooBig,
        Close::BadHello,
        Close::SlowConsumer,
    ] {
        let cases = summary
            .closes
            .get(&format!("{close:?}"))
            .copied()
            .unwrap_or(0);
        assert!(
            share(cases, 10),
            "under 10% of the cases close with {close:?}"
        );
    }
}

proptest! {
    #[test]
    fn decoding_arbitrary_text_never_panics(s in ".*") {
        let cfg = Config::default();
        let _ = chat_handler::ClientFrame::decode(&s, false, &cfg);
        let _ = chat_handler::ClientFrame::decode(&s, true, &cfg);
        let _ = chat_handler::edge::validate_room(&s);
        let _ = chat_handler::edge::route("GET", &s);
        let _ = chat_handler::edge::normalize_origin(&s);
        let _ = chat_handler::edge::origin_allowed(Some(&s), Some(&s), "http", &[]);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        let mut room = Room::open(Config::default(), MemoryStorage::new(), EPOCH).unwrap();
        room.try_connect(1, peer("a"), 0).unwrap();
        room.on_text(1, r#"{"name":"a"}"#, 0);
        for a in room.on_text(1, &text, 1) {
            if let Action::Send { frame, .. } | Action::Broadcast { frame, .. } = a {
                parse(&frame);
            }
        }
    }
}
