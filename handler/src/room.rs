//! The room state machine: events in, actions out.

use crate::batch::Batcher;
use crate::client_frame::{self, ClientFrame, Hello, Resume};
use crate::close::Close;
use crate::config::Config;
use crate::error_kind::ErrorKind;
use crate::ratelimit::Bucket;
use crate::server_frame::{Frame, RosterEntry, ServerFrame, True};
use crate::session::{ConnId, Peer, Session, Version};
use crate::storage::{Storage, StorageResult, StoredMessage};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What the backend must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a frame to one connection.
    Send { to: ConnId, frame: Frame },
    /// Send one frame to every recipient in `audience` ([`Room::recipients`]) as the
    /// room is after the event. The frame is encoded once; backends send the same bytes
    /// to each recipient. Batch sessions are not among the recipients: they get the
    /// frame through [`Action::Multicast`] or [`Action::Send`] (see `batch.rs`).
    Broadcast { frame: Frame, audience: Audience },
    /// Send one frame (usually a `{"batch": […]}` shared by sessions that had the same
    /// frames pending) to each listed connection, in the listed order. Encoded once.
    Multicast { to: Vec<ConnId>, frame: Frame },
    /// Close a connection. The room has already forgotten it (and announced its quit).
    Close { conn: ConnId, close: Close },
    /// The session's state changed: backends that persist sessions (the Durable
    /// Object's socket attachments) save [`Room::session`] again.
    Save { conn: ConnId },
}

/// Who receives a [`Action::Broadcast`]. The room decides membership; a backend only
/// iterates [`Room::recipients`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Every member (a session that sent its hello), whatever its protocol version.
    Members,
    /// Members that opted in to protocol v2: frame kinds v1 does not have.
    V2Members,
}

impl Audience {
    /// Every audience, for per-audience bookkeeping.
    pub const ALL: [Audience; 2] = [Audience::Members, Audience::V2Members];

    /// Whether `session` is in the audience (batched or not).
    pub fn includes(self, session: &Session) -> bool {
        match self {
            Audience::Members => session.is_joined(),
            Audience::V2Members => session.is_joined() && session.version == Version::V2,
        }
    }

    /// A distinct bit per audience (the batcher keeps each member's audiences as bits).
    pub(crate) const fn bit(self) -> u8 {
        match self {
            Audience::Members => 1,
            Audience::V2Members => 2,
        }
    }
}

/// One chat room.
pub struct Room<S> {
    config: Config,
    storage: S,
    epoch: String,
    last_seq: u64,
    last_timestamp: u64,
    sessions: BTreeMap<ConnId, Session>,
    /// Client addresses with at least one open session. Indexed so that charging a
    /// token touches only that address's sessions, never the whole room.
    addresses: HashMap<String, Address>,
    /// Frames held for batch sessions (see `batch.rs`).
    batcher: Batcher,
}

/// The open connections of one client address and their shared rate-limit bucket.
#[derive(Default)]
struct Address {
    conns: BTreeSet<ConnId>,
    bucket: Option<Bucket>,
}

impl<S: Storage> Room<S> {
    /// Opens a room over its storage. `epoch_candidate` (random, from the backend)
    /// becomes the epoch if the room has none yet.
    pub fn open(config: Config, storage: S, epoch_candidate: &str) -> StorageResult<Self> {
        Self::restore(config, storage, epoch_candidate, Vec::new())
    }

    /// Rebuilds a room from its storage plus the sessions of its still-open connections
    /// (for example a Durable Object's socket attachments after hibernation). The result
    /// behaves exactly like the room that was never evicted.
    pub fn restore(
        config: Config,
        mut storage: S,
        epoch_candidate: &str,
        sessions: impl IntoIterator<Item = Session>,
    ) -> StorageResult<Self> {
        let epoch = storage.load_or_init_epoch(epoch_candidate)?;
        let (last_seq, last_timestamp) = storage.latest()?.map_or((0, 0), |m| (m.seq, m.timestamp));
        let mut room = Room {
            batcher: Batcher::new(&config, std::iter::empty()),
            config,
            storage,
            epoch,
            last_seq,
            last_timestamp,
            sessions: BTreeMap::new(),
            addresses: HashMap::new(),
        };
        for s in sessions {
            let address = room.addresses.entry(s.addr.clone()).or_default();
            address.conns.insert(s.id);
            if let Some(b) = &s.bucket {
                // All sessions of an address hold the same copy; prefer the newest anyway.
                if address
                    .bucket
                    .as_ref()
                    .is_none_or(|old| old.updated_ms < b.updated_ms)
                {
                    address.bucket = Some(b.clone());
                }
            }
            room.sessions.insert(s.id, s);
        }
        // Batch members are known once every session is in.
        room.batcher = Batcher::new(&room.config, room.sessions.values());
        Ok(room)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The seq of the newest stored message (0 for an empty room).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    pub fn session(&self, conn: ConnId) -> Option<&Session> {
        self.sessions.get(&conn)
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// Connections that have sent their hello, batched or not.
    pub fn members(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.sessions
            .values()
            .filter(|s| s.is_joined())
            .map(|s| s.id)
    }

    /// The recipients of a broadcast to `audience`: its sessions that take frames one
    /// by one. Batch sessions get theirs through the batcher.
    pub fn recipients(&self, audience: Audience) -> impl Iterator<Item = ConnId> + '_ {
        self.sessions
            .values()
            .filter(move |s| audience.includes(s) && !s.is_batched())
            .map(|s| s.id)
    }

    /// Open connections, named or not.
    pub fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// A connection opened. `conn` must be new to this room. `Err` refuses it: the
    /// backend closes the socket with that [`Close`], and the room does not keep it.
    pub fn connect(&mut self, conn: ConnId, peer: Peer, now_ms: u64) -> Result<Vec<Action>, Close> {
        if self.sessions.contains_key(&conn) {
            // A backend bug, not a client's doing: refuse the newcomer, keep the room.
            return Err(Close::Internal);
        }
        if self.sessions.len() >= self.config.room_capacity {
            return Err(Close::RoomFull);
        }
        let mut session = Session::new(conn, peer, now_ms);
        let storage = &mut self.storage;
        let address = self
            .addresses
            .entry(session.addr.clone())
            .or_insert_with(|| Address {
                conns: BTreeSet::new(),
                // A drained bucket kept when the address's last connection left: reconnecting
                // must not refill it. A storage failure here only forgives the client.
                bucket: storage.take_bucket(&session.addr).ok().flatten(),
            });
        address.conns.insert(conn);
        session.bucket = address.bucket.clone();
        self.sessions.insert(conn, session);
        Ok(vec![Action::Save { conn }])
    }

    /// A text frame arrived.
    pub fn on_text(&mut self, conn: ConnId, text: &str, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.text(conn, text, now_ms, &mut out);
        // Every return of `text` goes through here: batch sessions get their frames
        // from the batcher (and a direct frame must not overtake what it holds).
        self.batcher.route(out, now_ms)
    }

    fn text(&mut self, conn: ConnId, text: &str, now_ms: u64, out: &mut Vec<Action>) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let joined = session.is_joined();
        if text.len() > self.config.max_frame_bytes {
            self.close(conn, Close::TooBig, now_ms, out);
            return;
        }
        // Every frame after the hello costs a token, garbage included, before decoding.
        if joined && !self.take_token(conn, now_ms, out) {
            return;
        }
        match ClientFrame::decode(text, joined, &self.config) {
            Ok(ClientFrame::Hello(hello)) => self.join(conn, hello, now_ms, out),
            Ok(ClientFrame::Chat { message }) => self.chat(conn, &message, now_ms, out),
            Err(e) if !joined => self.refuse_hello(conn, e, now_ms, out),
            Err(e) => send_error(out, conn, e),
        }
    }

    /// A binary frame of `len` bytes arrived. The protocol is text-only.
    pub fn on_binary(&mut self, conn: ConnId, len: usize, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(session) = self.sessions.get(&conn) else {
            return out;
        };
        if len > self.config.max_frame_bytes {
            self.close(conn, Close::TooBig, now_ms, &mut out);
        } else if !session.is_joined() {
            self.refuse_hello(conn, ErrorKind::Binary, now_ms, &mut out);
        } else if self.take_token(conn, now_ms, &mut out) {
            send_error(&mut out, conn, ErrorKind::Binary);
        }
        self.batcher.route(out, now_ms)
    }

    /// The backend refused an incoming message for exceeding `max_frame_bytes` before
    /// handing it over (e.g. the WebSocket library's own cap): close with 1009.
    pub fn on_too_big(&mut self, conn: ConnId, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.close(conn, Close::TooBig, now_ms, &mut out);
        self.batcher.route(out, now_ms)
    }

    /// The backend closes a connection for its own reasons (slow consumer, missed
    /// pongs, shutdown): the room forgets it and the actions include the close.
    pub fn kick(&mut self, conn: ConnId, close: Close, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.close(conn, close, now_ms, &mut out);
        self.batcher.route(out, now_ms)
    }

    /// The connection closed (by the peer, or after a [`Action::Close`]). Unknown or
    /// already-forgotten connections are ignored.
    pub fn disconnect(&mut self, conn: ConnId, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.forget(conn, now_ms, &mut out);
        self.batcher.route(out, now_ms)
    }

    /// Time passed: closes connections that have not sent their hello within
    /// `hello_timeout_ms` (error, then 1008), and flushes pending batches whose time has
    /// come. Backends call it at [`Room::next_deadline`] (a timer, or a Durable Object
    /// alarm); calling it at any other time is harmless.
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Action> {
        let timeout = self.config.hello_timeout_ms;
        let late: Vec<ConnId> = self
            .sessions
            .values()
            .filter(|s| !s.is_joined() && now_ms >= s.opened_ms.saturating_add(timeout))
            .map(|s| s.id)
            .collect();
        let mut out = Vec::new();
        for conn in late {
            send_error(&mut out, conn, ErrorKind::HelloTimeout);
            self.close(conn, Close::HelloTimeout, now_ms, &mut out);
        }
        // Routing flushes the batches that are due.
        self.batcher.route(out, now_ms)
    }

    /// When [`Room::on_tick`] next has something to do: the earlier of
    /// [`Room::next_durable_deadline`] and [`Room::next_flush`]. `None` when there is
    /// nothing to time.
    pub fn next_deadline(&self) -> Option<u64> {
        match (self.next_durable_deadline(), self.next_flush()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The deadlines that still hold for a room rebuilt from its sessions
    /// ([`Room::restore`]): the earliest hello deadline of the connections still without
    /// a hello. A Durable Object sets its alarm for these.
    pub fn next_durable_deadline(&self) -> Option<u64> {
        self.sessions
            .values()
            .filter(|s| !s.is_joined())
            .map(|s| s.opened_ms.saturating_add(self.config.hello_timeout_ms))
            .min()
    }

    /// When the frames pending for batch sessions must be flushed; `None` when nothing
    /// is pending. They live only in memory: a backend keeps the room in memory until
    /// then (a timer), or flushes them with [`Room::flush`] before dropping it.
    pub fn next_flush(&self) -> Option<u64> {
        self.batcher.due()
    }

    /// Flushes every pending batch now, whatever the window: for a backend about to
    /// drop the room (hibernation, shutdown), which would otherwise lose them.
    pub fn flush(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.batcher.flush(now_ms, &mut out);
        out
    }

    /// True when no batch is pending and none was flushed within `batch_window_ms`: a
    /// room rebuilt now from its sessions and storage behaves exactly like this one.
    pub fn is_quiet(&self, now_ms: u64) -> bool {
        self.batcher.is_idle(now_ms)
    }

    /// Batch sessions in the room, and the current batch window in ms
    /// (`batch sessions × 1000 / batch_send_budget` rounded up, at most
    /// `batch_window_ms`).
    pub fn batch_window(&self) -> (usize, u64) {
        (self.batcher.member_count(), self.batcher.window_ms())
    }

    fn refuse_hello(&mut self, conn: ConnId, error: ErrorKind, now_ms: u64, out: &mut Vec<Action>) {
        send_error(out, conn, error);
        self.close(conn, Close::BadHello, now_ms, out);
    }

    fn join(&mut self, conn: ConnId, hello: Hello, now_ms: u64, out: &mut Vec<Action>) {
        let (backlog, recovered) = match self.backlog_for(hello.resume.as_ref()) {
            Ok(b) => b,
            Err(_) => {
                send_error(out, conn, ErrorKind::Internal);
                // Not joined yet, so closing announces no quit.
                self.close(conn, Close::Internal, now_ms, out);
                return;
            }
        };
        // The members already here: one `joined` each in v1, one `roster` frame in v2.
        let present = self.sessions.values().filter_map(|s| s.name.as_deref());
        if hello.version == Version::V2 {
            let roster = present.map(|name| RosterEntry { name }).collect();
            out.push(Action::Send {
                to: conn,
                frame: ServerFrame::Roster { roster }.encode(),
            });
        } else {
            for name in present {
                out.push(Action::Send {
                    to: conn,
                    frame: ServerFrame::Joined { joined: name }.encode(),
                });
            }
        }
        for m in &backlog {
            out.push(Action::Send {
                to: conn,
                frame: chat_frame(m),
            });
        }
        let frame = ServerFrame::Joined {
            joined: &hello.name,
        }
        .encode();
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.name = Some(hello.name);
            s.version = hello.version;
            s.batch = hello.batch;
            if s.is_batched() {
                self.batcher.add(s);
            }
        }
        out.push(Action::Broadcast {
            frame,
            audience: Audience::Members,
        });
        out.push(Action::Send {
            to: conn,
            frame: ServerFrame::Ready {
                ready: True,
                epoch: &self.epoch,
                seq: self.last_seq,
                recovered,
                v: (hello.version != Version::V1).then_some(hello.version.number()),
            }
            .encode(),
        });
        out.push(Action::Save { conn });
    }

    /// The backlog for a joiner: exactly the missing messages on a valid resume, else
    /// the last `backlog`. Resume is never partial.
    fn backlog_for(
        &mut self,
        resume: Option<&Resume>,
    ) -> StorageResult<(Vec<StoredMessage>, bool)> {
        if let Some(r) = resume {
            let missing = self.last_seq.checked_sub(r.seq);
            if let (true, Some(missing)) = (r.epoch == self.epoch, missing) {
                if missing <= self.config.resume_max as u64 {
                    let msgs = self.storage.after(r.seq, missing as usize)?;
                    // Seqs are gap-free, so a full count means nothing was pruned.
                    if msgs.len() as u64 == missing {
                        return Ok((msgs, true));
                    }
                }
            }
        }
        Ok((self.storage.last_n(self.config.backlog)?, false))
    }

    /// Charges one token to the session's address. On refusal, answers the frame and
    /// closes the session after `rate_strikes` refusals in a row.
    fn take_token(&mut self, conn: ConnId, now_ms: u64, out: &mut Vec<Action>) -> bool {
        let Some(addr) = self.sessions.get(&conn).map(|s| s.addr.clone()) else {
            return false;
        };
        let (burst, rate) = (self.config.rate_burst, self.config.rate_per_sec);
        let Some(address) = self.addresses.get_mut(&addr) else {
            return false;
        };
        let bucket = address
            .bucket
            .get_or_insert_with(|| Bucket::full(burst, now_ms));
        let allowed = bucket.try_take(burst, rate, now_ms);
        let snapshot = bucket.clone();
        // Every session of the address carries the same copy (see Session::bucket).
        for id in &address.conns {
            if let Some(s) = self.sessions.get_mut(id) {
                s.bucket = Some(snapshot.clone());
                if *id != conn {
                    out.push(Action::Save { conn: *id });
                }
            }
        }
        let strikes = match self.sessions.get_mut(&conn) {
            Some(s) if allowed => {
                s.strikes = 0;
                0
            }
            Some(s) => {
                s.strikes += 1;
                s.strikes
            }
            None => 0,
        };
        out.push(Action::Save { conn });
        if allowed {
            return true;
        }
        send_error(out, conn, ErrorKind::RateLimited);
        if strikes >= self.config.rate_strikes {
            self.close(conn, Close::Flooding, now_ms, out);
        }
        false
    }

    fn chat(&mut self, conn: ConnId, raw: &str, now_ms: u64, out: &mut Vec<Action>) {
        let text = match client_frame::validate_message(raw, &self.config) {
            Ok(t) => t,
            Err(e) => return send_error(out, conn, e),
        };
        let Some(name) = self.sessions.get(&conn).and_then(|s| s.name.clone()) else {
            return;
        };
        let msg = StoredMessage {
            seq: self.last_seq + 1,
            timestamp: now_ms.max(self.last_timestamp + 1),
            name,
            message: text.to_owned(),
            user: None,
            cid: None,
            sender: None,
        };
        // Stored before broadcast: a message that is not stored is not sent, and its
        // seq is not used up.
        if self.storage.append(&msg).is_err() {
            return send_error(out, conn, ErrorKind::NotStored);
        }
        self.last_seq = msg.seq;
        self.last_timestamp = msg.timestamp;
        if let Some(cut) = msg.seq.checked_sub(self.config.retention as u64) {
            // A failed prune only keeps extra history; the next append prunes again.
            let _ = self.storage.prune_through(cut);
        }
        out.push(Action::Broadcast {
            frame: chat_frame(&msg),
            audience: Audience::Members,
        });
    }

    /// Forgets the connection, then tells the backend to close it.
    fn close(&mut self, conn: ConnId, close: Close, now_ms: u64, out: &mut Vec<Action>) {
        if self.sessions.contains_key(&conn) {
            out.push(Action::Close { conn, close });
            self.forget(conn, now_ms, out);
        }
    }

    fn forget(&mut self, conn: ConnId, now_ms: u64, out: &mut Vec<Action>) {
        let Some(session) = self.sessions.remove(&conn) else {
            return;
        };
        self.batcher.remove(conn);
        if let Some(name) = &session.name {
            out.push(Action::Broadcast {
                frame: ServerFrame::Quit { quit: name }.encode(),
                audience: Audience::Members,
            });
        }
        let Some(address) = self.addresses.get_mut(&session.addr) else {
            return;
        };
        address.conns.remove(&conn);
        if address.conns.is_empty() {
            let bucket = self.addresses.remove(&session.addr).and_then(|a| a.bucket);
            if let Some(bucket) = bucket {
                let (burst, rate) = (self.config.rate_burst, self.config.rate_per_sec);
                // A full bucket is the default; only a drained one needs keeping. Kept
                // ones that have refilled since go, so the table stays small. Failures
                // here only forgive a client, so they are not worth an error.
                if !bucket.is_full_at(burst, rate, now_ms) {
                    let refilled_before =
                        now_ms.saturating_sub(Bucket::full_refill_ms(burst, rate));
                    let _ = self.storage.prune_buckets(refilled_before);
                    let _ = self.storage.save_bucket(&session.addr, &bucket);
                }
            }
        }
    }
}

/// `{"error": …}` to one connection.
fn send_error(out: &mut Vec<Action>, conn: ConnId, kind: ErrorKind) {
    out.push(Action::Send {
        to: conn,
        frame: ServerFrame::error(kind).encode(),
    });
}

/// A stored message as its chat frame.
fn chat_frame(m: &StoredMessage) -> Frame {
    ServerFrame::Chat {
        name: &m.name,
        message: &m.message,
        timestamp: m.timestamp,
        seq: m.seq,
    }
    .encode()
}
