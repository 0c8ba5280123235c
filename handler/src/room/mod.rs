//! The room state machine: events in, actions out.

pub(crate) mod action;
pub(crate) mod address_limits;
pub(crate) mod batch;
pub(crate) mod edit;
pub(crate) mod hello_deadlines;
pub(crate) mod history;
pub(crate) mod message_changes;
pub mod moderation;
pub(crate) mod observe;
pub mod publish;
pub(crate) mod ratelimit;
pub(crate) mod react;
pub(crate) mod retry;
pub(crate) mod roster;
pub(crate) mod session;
pub(crate) mod storage;
pub(crate) mod typing;

use crate::edge::identity::Auth;
use crate::protocol::client_frame::{self, ClientFrame, Hello, Resume};
use crate::protocol::close::Close;
use crate::protocol::config::Config;
use crate::protocol::error_kind::ErrorKind;
use crate::protocol::request_id::{self, RequestId};
use crate::protocol::server_frame::{Frame, ServerFrame, True};
use crate::protocol::version::Version;
use crate::room::action::{Action, Audience, Effect};
use crate::room::address_limits::{Addresses, Limit};
use crate::room::batch::Batcher;
use crate::room::hello_deadlines::HelloDeadlines;
use crate::room::moderation::history_frame;
use crate::room::observe::{Event, JoinOutcome, Observer, Unobserved};
use crate::room::retry::Retry;
use crate::room::roster::Roster;
use crate::room::session::{ConnId, Peer, Session};
use crate::room::storage::{Storage, StorageResult, StoredMessage};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One chat room.
pub struct Room<S> {
    pub(crate) config: Config,
    pub(crate) storage: S,
    epoch: String,
    /// Whether storage holds `epoch`. It does not until the room stores its first
    /// message (see `epoch_persisted`), so an empty room costs no row.
    epoch_stored: bool,
    pub(crate) last_seq: u64,
    last_timestamp: u64,
    pub(crate) sessions: BTreeMap<ConnId, Session>,
    /// Client addresses with at least one open session: their seats and rate buckets.
    addresses: Addresses,
    /// Join tokens are verified when set (see [`Room::with_auth`]); identity is off
    /// without it.
    pub(crate) auth: Option<Auth>,
    /// Sessions that have sent their hello, kept so that reporting a message's
    /// recipients does not cost a walk over the room.
    members: usize,
    /// Told about each [`Event`] (see [`Room::set_observer`]).
    observer: Box<dyn Observer>,
    /// Frames held for batch sessions (see `batch.rs`).
    batcher: Batcher,
    /// The recipients of a broadcast to each audience ([`Audience::index`]), built when
    /// first needed and dropped when someone joins or leaves: every broadcast in
    /// between shares one list, so a broadcast to 10,000 allocates nothing.
    recipients: [Option<Arc<[ConnId]>>; 2],
    /// The members in join order, for v2 roster pages (see `roster.rs`).
    roster: Roster,
    /// The connections still owing their hello, by deadline.
    hello_deadlines: HelloDeadlines,
    /// Who is typing, and the typing buckets (v2; in memory only, see `typing.rs`).
    typing: typing::Typing,
    /// While a v2 frame with a valid `id` is handled: its sender and the id, until a
    /// frame answers it ([`Room::reply`]). Whatever is left when the frame is done gets
    /// `{"ok": true}`, so every id is answered exactly once (see `request_id.rs`).
    answering: Option<(ConnId, RequestId)>,
}

impl<S: Storage> Room<S> {
    /// Opens a room over its storage. `epoch_candidate` (random, from the backend)
    /// becomes the epoch if the room has none yet; it is stored with the room's first
    /// message.
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
        let sessions: Vec<Session> = sessions.into_iter().collect();
        let stored = storage.load_epoch()?;
        let epoch_stored = stored.is_some();
        // Not stored yet: the epoch the open sessions were told, if any, else the new
        // candidate (no client knows an epoch of this room then).
        let epoch = stored
            .or_else(|| sessions.iter().find_map(|s| s.room_epoch.clone()))
            .unwrap_or_else(|| epoch_candidate.to_owned());
        let (last_seq, last_timestamp) = storage.latest()?.map_or((0, 0), |m| (m.seq, m.timestamp));
        let mut room = Room {
            batcher: Batcher::new(&config, std::iter::empty()),
            config,
            storage,
            epoch,
            epoch_stored,
            last_seq,
            last_timestamp,
            sessions: BTreeMap::new(),
            addresses: Addresses::default(),
            auth: None,
            members: 0,
            observer: Box::new(Unobserved),
            recipients: [None, None],
            roster: Roster::default(),
            hello_deadlines: HelloDeadlines::default(),
            typing: typing::Typing::default(),
            answering: None,
        };
        for s in sessions {
            room.hello_deadlines.add(&s);
            // The buckets are read from storage when first needed.
            room.addresses.add(&s.addr, s.id);
            room.members += usize::from(s.is_joined());
            room.sessions.insert(s.id, s);
        }
        // Batch members and the join order are known once every session is in.
        room.batcher = Batcher::new(&room.config, room.sessions.values());
        room.roster = Roster::rebuild(&mut room.sessions);
        Ok(room)
    }

    /// Turns identity on: hellos with a join token are verified with the secret, for
    /// the room id in `auth` (a token's `room` claim must equal it). `None` keeps
    /// identity off: tokens are ignored and every session is anonymous.
    pub fn with_auth(mut self, auth: Option<Auth>) -> Self {
        self.auth = auth;
        self
    }

    /// Reports the room's [`Event`]s to `observer` from now on (a backend sets it after
    /// opening or restoring the room).
    pub fn set_observer(&mut self, observer: Box<dyn Observer>) {
        self.observer = observer;
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

    /// Test only: the room's storage, to inspect it or make it fail.
    #[cfg(feature = "testing")]
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
    /// by one (batch sessions get theirs through the batcher). Shared until the
    /// membership changes ([`Room::members_changed`]).
    fn recipients(&mut self, audience: Audience) -> Arc<[ConnId]> {
        // Every audience is of members; when each of them is batched there is no one
        // to send to one by one, and no walk over the room to find that out (a join
        // storm into a batched room changes the membership at every event).
        if self.batcher.member_count() == self.members {
            return Arc::from([]);
        }
        let sessions = &self.sessions;
        self.recipients[audience.index()]
            .get_or_insert_with(|| {
                sessions
                    .values()
                    .filter(|s| audience.includes(s) && !s.is_batched())
                    .map(|s| s.id)
                    .collect()
            })
            .clone()
    }

    /// Someone joined or left: the cached recipient lists are stale.
    fn members_changed(&mut self) {
        self.recipients = [None, None];
    }

    /// The event is done: routes its effects through the batcher (batch sessions get
    /// their frames from it, and a direct frame must not overtake what it holds), then
    /// makes each one a self-contained [`Action`], resolving audiences to the room's
    /// members as they are now.
    fn finish(&mut self, effects: Vec<Effect>, now_ms: u64) -> Vec<Action> {
        // Changed frame buckets that are due go to storage (see `address_limits`).
        self.addresses
            .persist_due(&self.config, &mut self.storage, now_ms);
        self.hello_deadlines.prune(&self.sessions);
        let routed = self.batcher.route(effects, now_ms);
        self.actions(routed)
    }

    fn actions(&mut self, effects: Vec<Effect>) -> Vec<Action> {
        // `into_iter().filter_map().collect()`: the standard library builds the actions
        // in the effects' own allocation, with no second `Vec` per event (an `Action`
        // takes an `Effect`'s place; see the test in `action.rs`).
        effects
            .into_iter()
            .filter_map(|effect| self.action(effect))
            .collect()
    }

    /// The action of one effect; `None` for a save of a session closed during the event.
    fn action(&mut self, effect: Effect) -> Option<Action> {
        Some(match effect {
            Effect::Send { to, frame } => Action::Send { to, frame },
            Effect::Broadcast { frame, audience } => Action::Broadcast {
                to: self.recipients(audience),
                frame,
            },
            Effect::BroadcastOthers {
                frame,
                audience,
                except,
            } => {
                let all = self.recipients(audience);
                let to = if all.contains(&except) {
                    all.iter().copied().filter(|c| *c != except).collect()
                } else {
                    all
                };
                Action::Broadcast { to, frame }
            }
            Effect::Multicast { to, frame } => Action::Broadcast {
                to: to.into(),
                frame,
            },
            Effect::Close { conn, close } => Action::Close { conn, close },
            Effect::Save { conn } => Action::Save {
                conn,
                // Closed during the event: nothing to save.
                session: Box::new(self.sessions.get(&conn)?.clone()),
            },
            Effect::Audit { line } => Action::Audit { line },
            Effect::Commit => Action::Commit,
        })
    }

    /// Open connections, named or not.
    pub fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// A connection opened. `conn` must be new to this room. A refusal (the room is
    /// full, the address holds too many seats) is actions too: the reason as an error
    /// frame, then [`Action::Close`] of `conn` (see [`Action::closes`]); the room does
    /// not keep the connection, and reports the refusal as [`Event::Rejected`] like
    /// every other `{"error"}` frame, so both backends count it.
    pub fn connect(&mut self, conn: ConnId, peer: Peer, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.sessions.contains_key(&conn) {
            // A backend bug, not a client's doing: refuse the newcomer, keep the room.
            out.push(Effect::Close {
                conn,
                close: Close::Internal,
            });
            return self.actions(out);
        }
        let mut session = Session::new(conn, peer, now_ms);
        session.room_epoch = (!self.epoch_stored).then(|| self.epoch.clone());
        let refusal = if self.sessions.len() >= self.config.room_capacity {
            Some(Close::RoomFull)
        } else if self.addresses.seats_full(&session.addr, &self.config) {
            Some(Close::TooManySeats)
        } else {
            None
        };
        match refusal {
            Some(close) => {
                if let Some(kind) = close.refusal_error() {
                    self.send_error(&mut out, conn, kind);
                }
                out.push(Effect::Close { conn, close });
            }
            None => {
                self.addresses.add(&session.addr, conn);
                self.hello_deadlines.add(&session);
                self.sessions.insert(conn, session);
                out.push(Effect::Save { conn });
            }
        }
        // No broadcast, and the connection is no member yet: nothing for the batcher.
        self.actions(out)
    }

    /// Test only: [`Room::connect`] as a `Result`, `Err` with the close of a refusal.
    #[cfg(feature = "testing")]
    pub fn try_connect(
        &mut self,
        conn: ConnId,
        peer: Peer,
        now_ms: u64,
    ) -> Result<Vec<Action>, Close> {
        let actions = self.connect(conn, peer, now_ms);
        match actions.iter().find_map(|a| match a {
            Action::Close { conn: c, close } if *c == conn => Some(*close),
            _ => None,
        }) {
            Some(close) => Err(close),
            None => Ok(actions),
        }
    }

    /// A text frame arrived.
    pub fn on_text(&mut self, conn: ConnId, text: &str, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.text(conn, text, now_ms, &mut out);
        self.finish(out, now_ms)
    }

    fn text(&mut self, conn: ConnId, text: &str, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let joined = session.is_joined();
        // Only a v2 session's ids mean anything; v1 ignores the field like any other.
        let ids = joined && session.version == Version::V2;
        if text.len() > self.config.max_frame_bytes {
            self.close(conn, Close::TooBig, now_ms, out);
            return;
        }
        // A v2 member's plain typing frame has a bucket of its own (`typing.rs`).
        if joined && session.version == Version::V2 {
            if let Some(on) = client_frame::plain_typing(text) {
                return self.typing(conn, on, false, now_ms, out);
            }
        }
        // Every frame after the hello costs a token, garbage included, before decoding.
        if joined && !self.take_token(conn, now_ms, out, ids.then_some(text)) {
            return;
        }
        let (frame, id) = ClientFrame::decode_request(text, joined, &self.config);
        match id.filter(|_| ids) {
            // A malformed id: the request is not carried out.
            Some(Err(e)) => return self.send_error(out, conn, e),
            Some(Ok(id)) => self.answering = Some((conn, id)),
            None => {}
        }
        match frame {
            Ok(ClientFrame::Hello(hello)) => self.join(conn, hello, now_ms, out),
            Ok(ClientFrame::Chat { message, cid }) => self.chat(conn, message, cid, now_ms, out),
            Ok(ClientFrame::History { before, limit }) => self.history(conn, before, limit, out),
            Ok(ClientFrame::Members { after, limit }) => self.member_page(conn, after, limit, out),
            Ok(ClientFrame::Moderate(request)) => self.moderate(conn, request, now_ms, out),
            Ok(ClientFrame::Edit { seq, message }) => self.edit(conn, seq, message, now_ms, out),
            Ok(ClientFrame::React { seq, emoji }) => self.react(conn, seq, emoji, now_ms, out),
            Ok(ClientFrame::Typing(on)) => self.typing(conn, on, true, now_ms, out),
            // A v1 session gets what it got before typing existed.
            Err(ErrorKind::TypingInvalid) if !self.is_v2(conn) => {
                self.send_error(out, conn, ErrorKind::WrongShape)
            }
            Err(e) if !joined => {
                // A refused hello that asked for v2 is told why with the v2 code.
                if client_frame::hello_asks_v2(text) {
                    if let Some(s) = self.sessions.get_mut(&conn) {
                        s.version = Version::V2;
                    }
                }
                self.refuse_hello(conn, e, now_ms, out)
            }
            Err(e) => self.send_error(out, conn, e),
        }
        // Done, and nothing answered the id: the request succeeded without a frame of its
        // own (or its effect was a broadcast). Unless its sender is gone (closed by it).
        self.answer_ok(out, conn, None);
    }

    /// A binary frame of `len` bytes arrived. The protocol is text-only.
    pub fn on_binary(&mut self, conn: ConnId, len: usize, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(session) = self.sessions.get(&conn) else {
            return Vec::new();
        };
        if len > self.config.max_frame_bytes {
            self.close(conn, Close::TooBig, now_ms, &mut out);
        } else if !session.is_joined() {
            self.refuse_hello(conn, ErrorKind::Binary, now_ms, &mut out);
        } else if self.take_token(conn, now_ms, &mut out, None) {
            self.send_error(&mut out, conn, ErrorKind::Binary);
        }
        self.finish(out, now_ms)
    }

    /// The backend refused an incoming message for exceeding `max_frame_bytes` before
    /// handing it over (e.g. the WebSocket library's own cap): close with 1009.
    pub fn on_too_big(&mut self, conn: ConnId, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.close(conn, Close::TooBig, now_ms, &mut out);
        self.finish(out, now_ms)
    }

    /// The backend closes a connection for its own reasons (slow consumer, missed
    /// pongs, shutdown): the room forgets it and the actions include the close.
    pub fn kick(&mut self, conn: ConnId, close: Close, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.close(conn, close, now_ms, &mut out);
        self.finish(out, now_ms)
    }

    /// The connection closed (by the peer, or after a [`Effect::Close`]). Unknown or
    /// already-forgotten connections are ignored.
    pub fn disconnect(&mut self, conn: ConnId, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.forget(conn, now_ms, &mut out);
        self.finish(out, now_ms)
    }

    /// Time passed: closes connections that have not sent their hello within
    /// `hello_timeout_ms` (error, then 1008), stops the typers not refreshed within
    /// `typing_ttl_ms` (`typing.rs`), and flushes pending batches whose time has
    /// come. Backends call it at [`Room::next_deadline`] (a timer, or a Durable Object
    /// alarm); calling it at any other time is harmless.
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Action> {
        let late =
            self.hello_deadlines
                .take_due(&self.sessions, self.config.hello_timeout_ms, now_ms);
        let mut out = Vec::new();
        for conn in late {
            self.send_error(&mut out, conn, ErrorKind::HelloTimeout);
            self.close(conn, Close::HelloTimeout, now_ms, &mut out);
        }
        self.typing_expired(now_ms, &mut out);
        // Routing flushes the batches that are due.
        self.finish(out, now_ms)
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
        self.hello_deadlines
            .earliest(&self.sessions)
            .map(|opened| opened.saturating_add(self.config.hello_timeout_ms))
    }

    /// When the frames pending for batch sessions must be flushed; `None` when nothing
    /// is pending. They live only in memory: a backend keeps the room in memory until
    /// then (a timer), or flushes them with [`Room::flush`] before dropping it.
    /// Also when the rate buckets changed by recent frames are due to be written
    /// (`rate_persist_ms` after the first change; they too live only in memory until then).
    /// Also when the earliest typer expires (typing state, too, is in memory only).
    pub fn next_flush(&self) -> Option<u64> {
        [
            self.batcher.due(),
            self.addresses.persist_at(&self.config),
            self.typing.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Flushes every pending batch now, whatever the window: for a backend about to
    /// drop the room (hibernation, shutdown), which would otherwise lose them. Typers
    /// are stopped first (`typing_stopped`): the rebuilt room will not know them.
    pub fn flush(&mut self, now_ms: u64) -> Vec<Action> {
        self.addresses.persist(&mut self.storage);
        let mut stopped = Vec::new();
        self.typing_all_stopped(&mut stopped);
        let mut out = self.batcher.route(stopped, now_ms);
        self.batcher.flush(now_ms, &mut out);
        self.actions(out)
    }

    /// True when no batch is pending, none was flushed within `batch_window_ms`, no
    /// changed rate bucket waits to be written and nobody types: a room rebuilt now from
    /// its sessions and storage behaves exactly like this one (but for the typing
    /// buckets, which start full again).
    pub fn is_quiet(&self, now_ms: u64) -> bool {
        self.batcher.is_idle(now_ms) && !self.addresses.has_unwritten() && self.typing.is_idle()
    }

    /// Batch sessions in the room, and the current batch window in ms
    /// (`batch sessions × 1000 / batch_send_budget` rounded up, at most
    /// `batch_window_ms`).
    pub fn batch_window(&self) -> (usize, u64) {
        (self.batcher.member_count(), self.batcher.window_ms())
    }

    fn refuse_hello(&mut self, conn: ConnId, error: ErrorKind, now_ms: u64, out: &mut Vec<Effect>) {
        self.send_error(out, conn, error);
        self.close(conn, Close::BadHello, now_ms, out);
    }

    fn join(&mut self, conn: ConnId, mut hello: Hello, now_ms: u64, out: &mut Vec<Effect>) {
        // Known from here: a refused hello's error has the v2 code if it asked for v2.
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.version = hello.version;
        }
        let joins = self
            .sessions
            .get(&conn)
            .map(|s| s.addr.clone())
            .is_some_and(|addr| {
                self.addresses
                    .take_join(&addr, &self.config, &mut self.storage, now_ms)
            });
        if !joins {
            // Refused before anything is sent to anyone (and before a token costs a
            // signature check): churn costs members nothing.
            self.send_error(out, conn, ErrorKind::JoiningTooFast);
            self.close(conn, Close::JoiningTooFast, now_ms, out);
            return;
        }
        let verified = match self.admit(&hello, now_ms) {
            Ok(Some((name, verified))) => {
                // The token's name wins over the hello's.
                hello.name = name;
                Some(verified)
            }
            Ok(None) => None,
            Err((error, close)) => {
                self.send_error(out, conn, error);
                self.close(conn, close, now_ms, out);
                return;
            }
        };
        let addr_muted_until = match self.address_restriction(conn, verified.as_ref(), now_ms) {
            Ok(until) => until,
            Err((error, close)) => {
                self.send_error(out, conn, error);
                self.close(conn, close, now_ms, out);
                return;
            }
        };
        if verified.is_none() && self.auth.is_some() && self.is_name_of_verified(&hello.name) {
            return self.refuse_hello(conn, ErrorKind::NameOfVerified, now_ms, out);
        }
        let (backlog, recovered) = match self.backlog_for(hello.resume.as_ref(), hello.version) {
            Ok(b) => b,
            Err(_) => {
                self.send_error(out, conn, ErrorKind::Internal);
                // Not joined yet, so closing announces no quit.
                self.close(conn, Close::Internal, now_ms, out);
                return;
            }
        };
        // The members already here: one `joined` each in v1; in v2 one `roster` frame,
        // the first page of them in a big room (see `roster.rs`).
        let rank = self.roster.next_rank();
        let mut listed_through = None;
        if hello.version == Version::V2 {
            let (frame, listed) = self.roster.join_frame(
                &self.sessions,
                rank,
                self.members,
                self.config.roster_inline_max,
            );
            listed_through = listed;
            out.push(Effect::Send { to: conn, frame });
        } else {
            // Each member's frame as encoded at its join, shared: a room filling up with
            // v1 clients sends quadratically many of them.
            out.extend(self.roster.joined_frames().map(|frame| Effect::Send {
                to: conn,
                frame: frame.clone(),
            }));
        }
        for frame in backlog {
            out.push(Effect::Send { to: conn, frame });
        }
        let frame = roster::joined_frame(&hello.name);
        let (user, role) = match &verified {
            Some(v) => (Some(v.user.clone()), v.role),
            None => (None, None),
        };
        if let Some(s) = self.sessions.get_mut(&conn) {
            s.name = Some(hello.name);
            s.version = hello.version;
            s.verified = verified;
            s.addr_muted_until = addr_muted_until;
            self.members += 1;
            s.batch = hello.batch;
            s.rank = rank;
            s.listed_through = listed_through;
            self.roster.add(s, frame.clone());
            if s.is_batched() {
                self.batcher.add(s);
            }
        }
        self.members_changed();
        let outcome = match (&hello.resume, recovered) {
            (None, _) => JoinOutcome::Fresh,
            (Some(_), true) => JoinOutcome::Recovered,
            (Some(_), false) => JoinOutcome::NotRecovered,
        };
        self.observer.observe(Event::Joined { conn, outcome });
        out.push(Effect::Broadcast {
            frame,
            audience: Audience::Members,
        });
        out.push(Effect::Send {
            to: conn,
            frame: ServerFrame::Ready {
                ready: True,
                epoch: &self.epoch,
                seq: self.last_seq,
                recovered,
                v: (hello.version != Version::V1).then_some(hello.version.number()),
                user: user.as_deref(),
                role,
            }
            .encode(),
        });
        if hello.version == Version::V2 {
            self.typing_for_joiner(conn, out);
        }
        out.push(Effect::Save { conn });
    }

    /// The backlog for a joiner, as the frames a session of `version` may see
    /// ([`history_frame`]): exactly the missing messages on a valid resume, else the
    /// last `backlog` that are not deleted. Resume is never partial.
    ///
    /// A v2 resume is exact about deletions too: it first gets `{"deleted": seq}` for
    /// each message at or below its `seq` deleted since the room reached that `seq`
    /// (which the client may hold), then the gap, a tombstone in it as `{"deleted"}`.
    /// Those frames count toward `resume_max` with the gap.
    fn backlog_for(
        &mut self,
        resume: Option<&Resume>,
        version: Version,
    ) -> StorageResult<(Vec<Frame>, bool)> {
        if let Some(r) = resume {
            let missing = self.last_seq.checked_sub(r.seq);
            if let (true, Some(missing)) = (r.epoch == self.epoch, missing) {
                let max = self.config.resume_max as u64;
                if missing <= max {
                    let msgs = self.storage.after(r.seq, missing as usize)?;
                    // Seqs are gap-free, so a full count means nothing was pruned.
                    if msgs.len() as u64 == missing {
                        let mut frames = Vec::new();
                        if version == Version::V2 {
                            let room_left = (max - missing) as usize;
                            let deleted = self.storage.deleted_since(r.seq, room_left + 1)?;
                            if deleted.len() > room_left {
                                // More to tell than a resume may replay: start afresh.
                                return self.last_backlog(version);
                            }
                            let deleted_count = deleted.len();
                            frames.extend(deleted.into_iter().map(|seq| {
                                ServerFrame::Deleted {
                                    deleted: seq,
                                    cid: None,
                                }
                                .encode()
                            }));
                            // Then the edits of messages it has (the gap itself
                            // carries the latest text of the rest).
                            let room_left = room_left - deleted_count;
                            let edited = self.storage.edited_since(r.seq, room_left + 1)?;
                            if edited.len() > room_left {
                                return self.last_backlog(version);
                            }
                            let room_left = room_left - edited.len();
                            frames.extend(edited.iter().filter_map(edit::edited_frame));
                            // And the reaction counts that changed on them.
                            let reacted = self.storage.reacted_since(r.seq, room_left + 1)?;
                            if reacted.len() > room_left {
                                return self.last_backlog(version);
                            }
                            frames.extend(reacted.iter().filter_map(react::resumed_frame));
                        }
                        frames.extend(msgs.iter().filter_map(|m| history_frame(m, version)));
                        return Ok((frames, true));
                    }
                }
            }
        }
        self.last_backlog(version)
    }

    /// The last `backlog` messages that are not deleted, not recovered.
    fn last_backlog(&mut self, version: Version) -> StorageResult<(Vec<Frame>, bool)> {
        let msgs = self.storage.last_n(self.config.backlog)?;
        let frames = msgs.iter().filter_map(|m| history_frame(m, version));
        Ok((frames.collect(), false))
    }

    /// Takes a token from the bucket `limit` of the session's address.
    fn take(&mut self, limit: Limit, conn: ConnId, now_ms: u64) -> bool {
        let Some(session) = self.sessions.get(&conn) else {
            return false;
        };
        self.addresses.take(
            limit,
            &session.addr,
            &self.config,
            &mut self.storage,
            now_ms,
        )
    }

    /// Charges one token to the session's address. On refusal, answers the frame and
    /// closes the session after `rate_strikes` refusals in a row. Only the sender's
    /// session is saved, and only when its strikes change: the bucket is the address's,
    /// written to storage once (see `address_limits`). `text` is the refused frame of a
    /// v2 session: its id, if it has one, is answered by the refusal.
    fn take_token(
        &mut self,
        conn: ConnId,
        now_ms: u64,
        out: &mut Vec<Effect>,
        text: Option<&str>,
    ) -> bool {
        let allowed = self.take(Limit::Frames, conn, now_ms);
        let Some(session) = self.sessions.get_mut(&conn) else {
            return false;
        };
        if allowed {
            if session.strikes != 0 {
                session.strikes = 0;
                out.push(Effect::Save { conn });
            }
            return true;
        }
        session.strikes += 1;
        let strikes = session.strikes;
        out.push(Effect::Save { conn });
        // Read only now, from a frame that is otherwise never decoded.
        self.answering = text.and_then(request_id::peek).map(|id| (conn, id));
        self.send_error(out, conn, ErrorKind::RateLimited);
        self.answering = None;
        if strikes >= self.config.rate_strikes {
            self.close(conn, Close::Flooding, now_ms, out);
        }
        false
    }

    fn chat(
        &mut self,
        conn: ConnId,
        raw: String,
        cid: Option<String>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let text = match client_frame::validate_message(&raw, &self.config) {
            // Nothing trimmed (the usual case): the decoded string is the stored one.
            Ok(t) if t.len() == raw.len() => None,
            Ok(t) => Some(t.to_owned()),
            Err(e) => return self.send_error(out, conn, e),
        };
        let text = text.unwrap_or(raw);
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let Some(name) = session.name.clone() else {
            return;
        };
        let user = session.verified.as_ref().map(|v| v.user.clone());
        if session.is_muted(now_ms) {
            return self.send_error(out, conn, ErrorKind::Muted);
        }
        // Who may edit it (see `edit.rs`): the user decides for a verified sender, and a
        // v1 connection can never edit (edits are v2), so only a v2 anonymous message
        // keeps its connection's key: v1 traffic pays nothing for edits.
        let author =
            (user.is_none() && session.version == Version::V2).then(|| session.author_key());
        // Retry-safe send: the same sender and cid within the window is the message
        // already stored, answered again to its sender only.
        let checked = retry::check(
            &mut self.storage,
            &self.config,
            session,
            cid.as_deref(),
            (self.last_seq, now_ms),
        );
        let sender = match checked {
            Ok(Retry::New { sender }) => sender,
            Ok(Retry::Stored(original)) => {
                let version = session.version;
                return self.answer_retry(conn, &original, version, out);
            }
            Err(e) => return self.send_error(out, conn, e),
        };
        let (seq, timestamp) = self.next_stamp(now_ms);
        let msg = StoredMessage {
            seq,
            timestamp,
            name,
            message: text,
            user,
            cid,
            sender,
            role: None,
            deleted: false,
            author,
            edited_at: None,
            reactions: None,
        };
        let Some((seq, _)) = self.store_and_broadcast(msg, Some(conn), out) else {
            return self.send_error(out, conn, ErrorKind::NotStored);
        };
        self.observer.observe(Event::Stored {
            conn,
            seq,
            recipients: self.members,
        });
        // Behind the broadcast: the sender sees its message, then the answer.
        self.answer_ok(out, conn, Some(seq));
    }

    /// Stores `msg` (its seq and timestamp the room's next: `last_seq + 1`, and a
    /// timestamp above `last_timestamp`) and broadcasts it to the members once it is
    /// durable. `None` when storage refused it: nothing is sent, and its seq is not
    /// used up. Every chat message goes through here, whoever sent it.
    /// `sender` is the member that sent it, whose typing it ends (none for a publish).
    pub(crate) fn store_and_broadcast(
        &mut self,
        msg: StoredMessage,
        sender: Option<ConnId>,
        out: &mut Vec<Effect>,
    ) -> Option<(u64, u64)> {
        // Encoded first so that storage can take the message itself; sent only once
        // stored: a message that is not stored is not sent, and its seq is not used up.
        let frame = chat_frame(&msg);
        let (seq, timestamp) = (msg.seq, msg.timestamp);
        if !self.epoch_persisted() || self.storage.append_owned(msg).is_err() {
            return None;
        }
        // Durable before anyone sees it (see `Action::Commit`).
        out.push(Effect::Commit);
        self.last_seq = seq;
        self.last_timestamp = timestamp;
        if let Some(cut) = seq.checked_sub(self.config.retention as u64) {
            // A failed prune only keeps extra history; the next append prunes again.
            let _ = self.storage.prune_through(cut);
        }
        if let Some(conn) = sender {
            // The sender's message ends its typing, announced first.
            self.typing_ended(conn, out);
        }
        out.push(Effect::Broadcast {
            frame,
            audience: Audience::Members,
        });
        Some((seq, timestamp))
    }

    /// The seq and timestamp the next stored message gets at `now_ms`.
    pub(crate) fn next_stamp(&self, now_ms: u64) -> (u64, u64) {
        (self.last_seq + 1, now_ms.max(self.last_timestamp + 1))
    }

    /// Answers a retried chat frame whose original is stored: its chat frame again; for
    /// an original a moderator deleted, never its chat frame (its text is gone, and an
    /// empty message is no message) but its tombstone with the cid, `{"deleted": seq,
    /// "cid"}`, to a v2 session, and an error to a v1 one (which never sees a v2 frame).
    /// Either way one frame answers the retry, as for any frame.
    fn answer_retry(
        &mut self,
        conn: ConnId,
        original: &StoredMessage,
        version: Version,
        out: &mut Vec<Effect>,
    ) {
        let frame = match (original.deleted, version) {
            (false, _) => chat_frame(original),
            (true, Version::V2) => ServerFrame::Deleted {
                deleted: original.seq,
                cid: original.cid.as_deref(),
            }
            .encode(),
            (true, Version::V1) => return self.send_error(out, conn, ErrorKind::MessageDeleted),
        };
        out.push(Effect::Send { to: conn, frame });
        // A request id is answered as for the first send: with the stored seq.
        self.answer_ok(out, conn, Some(original.seq));
    }

    /// Stores the epoch if storage does not hold it yet. Only a room with history needs
    /// one: a client can resume nothing from an empty room, so an empty room's epoch may
    /// change (a restart, an evicted Durable Object) at no cost, and a room that never
    /// stored a message leaves no row.
    fn epoch_persisted(&mut self) -> bool {
        if !self.epoch_stored {
            self.epoch_stored = self.storage.save_epoch(&self.epoch).is_ok();
        }
        self.epoch_stored
    }

    /// A history request: a page for a v2 session, an error for a v1 one (which never
    /// receives a v2 frame kind).
    fn history(&mut self, conn: ConnId, before: Option<u64>, limit: usize, out: &mut Vec<Effect>) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        if session.version != Version::V2 {
            return self.send_error(out, conn, ErrorKind::HistoryNeedsV2);
        }
        match history::page(&mut self.storage, before, limit, self.last_seq) {
            Ok(frame) => self.reply(out, conn, frame),
            Err(e) => self.send_error(out, conn, e),
        }
    }

    /// A member page request: a page for a v2 session, an error for a v1 one (which
    /// never receives a v2 frame kind). See `roster.rs`.
    fn member_page(
        &mut self,
        conn: ConnId,
        after: Option<u64>,
        limit: usize,
        out: &mut Vec<Effect>,
    ) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        if session.version != Version::V2 {
            return self.send_error(out, conn, ErrorKind::MembersNeedsV2);
        }
        let others = self.members.saturating_sub(1);
        let (frame, listed_through) =
            self.roster
                .members_page(&self.sessions, session, after, limit, others);
        self.reply(out, conn, frame);
        if let Some(s) = self.sessions.get_mut(&conn) {
            if s.listed_through != listed_through {
                s.listed_through = listed_through;
                self.roster.update(s);
                out.push(Effect::Save { conn });
            }
        }
    }

    /// Forgets the connection, then tells the backend to close it.
    pub(crate) fn close(&mut self, conn: ConnId, close: Close, now_ms: u64, out: &mut Vec<Effect>) {
        if self.sessions.contains_key(&conn) {
            out.push(Effect::Close { conn, close });
            self.forget(conn, now_ms, out);
        }
    }

    fn forget(&mut self, conn: ConnId, now_ms: u64, out: &mut Vec<Effect>) {
        let Some(session) = self.sessions.remove(&conn) else {
            return;
        };
        self.batcher.remove(conn);
        self.members_changed();
        // Ahead of the quit.
        self.typing_left(conn, out);
        if let Some(name) = &session.name {
            self.members = self.members.saturating_sub(1);
            out.push(Effect::Broadcast {
                frame: ServerFrame::Quit { quit: name }.encode(),
                audience: Audience::Members,
            });
            self.roster.remove(&session);
            // Right behind the quit, for those whose pages never listed it.
            let unlisted = self.roster.unlisted_to(&self.sessions, &session);
            if !unlisted.is_empty() {
                let frame = roster::unlisted_frame(name);
                out.extend(unlisted.into_iter().map(|to| Effect::Send {
                    to,
                    frame: frame.clone(),
                }));
            }
        }
        self.addresses
            .remove(&session.addr, conn, &self.config, &mut self.storage, now_ms);
        if self.sessions.is_empty() && !self.epoch_stored {
            // The last one left a room that never stored a message: it leaves no row,
            // kept rate buckets included. Nobody is left for a reconnecting client's
            // frames or joins to cost anything, and reopening the room is limited per
            // address on its own (`room_open_burst`, or the Worker's binding). Every
            // stored time is below `i64::MAX`, which both backends take as an integer.
            // A failure only leaves a bucket that forgives nobody.
            let _ = self.storage.prune_buckets(i64::MAX as u64);
        }
    }

    fn is_v2(&self, conn: ConnId) -> bool {
        self.sessions
            .get(&conn)
            .is_some_and(|s| s.version == Version::V2)
    }

    /// `{"error": …}` to one connection, reported as [`Event::Rejected`]: the answer to
    /// its request, if it is the sender of the one being handled.
    pub(crate) fn send_error(&mut self, out: &mut Vec<Effect>, conn: ConnId, kind: ErrorKind) {
        let frame = self.error_frame(conn, kind);
        self.reply(out, conn, frame);
    }

    /// The error frame for `conn` (with the v2 `code` if the session asked for v2),
    /// reported as [`Event::Rejected`]. For an error that answers no request of its
    /// own (a kick), sent as it is.
    pub(crate) fn error_frame(&mut self, conn: ConnId, kind: ErrorKind) -> Frame {
        self.observer.observe(Event::Rejected { conn, kind });
        let version = self.sessions.get(&conn).map_or(Version::V1, |s| s.version);
        ServerFrame::error_for(kind, version).encode()
    }

    /// A frame to one connection. The first one to the sender of the request being
    /// handled answers it: it gets `"re"`, encoded for that session alone.
    pub(crate) fn reply(&mut self, out: &mut Vec<Effect>, conn: ConnId, frame: Frame) {
        let frame = match self.answering.take_if(|(to, _)| *to == conn) {
            Some((_, id)) => request_id::with_re(&frame, &id),
            None => frame,
        };
        out.push(Effect::Send { to: conn, frame });
    }

    /// `{"ok": true, "re"}` (with `seq` for a chat message) to `conn` if its request is
    /// still unanswered and it is still here.
    pub(crate) fn answer_ok(&mut self, out: &mut Vec<Effect>, conn: ConnId, seq: Option<u64>) {
        if let Some((to, id)) = self.answering.take_if(|(to, _)| *to == conn) {
            if self.sessions.contains_key(&to) {
                let frame = request_id::ok_frame(&id, seq);
                out.push(Effect::Send { to, frame });
            }
        }
    }
}

/// A stored message as its chat frame. (History goes through
/// [`history_frame`], which never sends a tombstone's text.)
pub(crate) fn chat_frame(m: &StoredMessage) -> Frame {
    history::chat(m).encode()
}
