//! `ChatRoom`: one Durable Object per room, on the WebSocket Hibernation API.
//!
//! The object is a thin shell around [`chat_handler::Room`]: it turns runtime events into
//! handler calls and carries out the returned [`Action`]s. Because the runtime evicts an
//! idle object while keeping its sockets open, nothing lives only in memory: each
//! socket's [`Session`] is its attachment and history is in SQLite, and the room is
//! rebuilt from both ([`Room::restore`]) the first time an event needs it.
//!
//! Invariant: a socket's attachment holds its session exactly while the room counts the
//! session as live. Whenever the room forgets a connection (a close it ordered, or the
//! peer's close/error) the attachment is cleared, so a rebuild never resurrects a
//! session, and a late or repeated close event finds nothing to announce twice.
//!
//! Hello deadline: a connection that sends no hello within `hello_timeout_ms` is closed
//! by [`Room::on_tick`], which the Durable Object alarm runs. After every event the
//! object makes sure an alarm is set at or before [`Room::next_durable_deadline`]. It
//! sets one only when there is no alarm or the earliest deadline moved before it, and
//! never deletes one: a deadline is always `hello_timeout_ms` after its connect, so a
//! later connect never needs an earlier alarm, and a connect-then-close loop into an open
//! room costs one alarm set at most per alarm fired, not a set and a delete per socket.
//! An alarm whose socket has gone fires once, closes nothing and is not set again (or is
//! set for the next deadline). The alarm is stored with the object, so it also wakes an
//! evicted one, which then rebuilds the room like any other event does.
//!
//! Storage operations (SQL statements, alarm sets) are counted and reported every
//! [`crate::storage_ops::REPORT_EVERY_CONNECTS`] connect attempts (see [`crate::storage_ops`]).
//!
//! Batch flushes: frames held for batch sessions ([`Room::next_flush`]) live only in
//! memory, so they are timed with a `setTimeout` ([`worker::Delay`] in a spawned task),
//! never the alarm. An alarm survives an eviction but the frames would not, and setting
//! one is a storage write per flush; a pending timer, on the other hand, keeps the
//! runtime from hibernating the object, so it cannot be evicted with frames pending. An
//! idle room has no timer and hibernates as before.
//!
//! Storage failure: if the room cannot be opened, every socket of the object is closed
//! with [`Close::Internal`] (as the local runner does), rather than left waiting in a room that can
//! serve no one.
//!
//! Opening a room: an upgrade that finds the object with no room in memory and no
//! socket (a room nobody is in, about to be read from storage or created) is an open.
//! Opens are limited per client address by the Workers rate-limiting binding
//! `ROOM_OPENS` (wrangler.toml); a refused one is answered 429 with `Retry-After`
//! before any storage is touched. Joining a room that is open costs no limiter call.
//!
//! Logs never show a private room's id (the room's secret), only [`edge::log_tag`].

use crate::event_log::{self, LogEvents};
use crate::storage_ops::StorageOps;
use crate::{config, random, sql_storage::DoSqlStorage};
use chat_handler::edge;
use chat_handler::{
    Action, Auth, AuthSecret, Close, Config, ConnId, ErrorKind, Frame, Peer, PublishAnswer, Room,
    Session,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use wasm_bindgen::prelude::*;
use worker::web_sys;
use worker::{
    console_error, console_log, durable_object, Date, Delay, Env, RateLimiter, Request, Response,
    Result, ScheduledTime, State, WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

/// Printed by the constructor, followed by ` room=<edge::log_tag>`: a named room's name,
/// or `private:` and 8 hex digits of a hash for a private one, never its id. The
/// runtime constructs the object again after evicting it (the sockets stay open), so
/// under `wrangler dev` a second such line for the same room in stdout is how a test sees
/// that an eviction really happened. Neither workerd nor wrangler logs evictions itself.
pub const CONSTRUCTED_LOG: &str = "edge-chat: room constructed";

/// The rate-limiting binding that limits room opens per client address (wrangler.toml
/// `[[ratelimits]]`). Without it, opens are not limited (and the constructor says so).
const ROOM_OPENS_BINDING: &str = "ROOM_OPENS";

/// The binding that limits room opens per IPv6 /48, with a higher limit than
/// [`ROOM_OPENS_BINDING`]'s. Optional: without it, /48 keys are charged on
/// `ROOM_OPENS` (so a /48 gets the cap of one address).
const ROOM_OPENS_48_BINDING: &str = "ROOM_OPENS_48";

/// The binding's `period` in wrangler.toml, in seconds: its counters are fixed windows
/// of this length, so a refused open may succeed again at most this long after.
const ROOM_OPENS_PERIOD_SECS: u32 = 60;

#[wasm_bindgen]
extern "C" {
    /// A WebSocket seen through `send(any)`. A broadcast converts its frame to a JS string
    /// once and hands that same string to every socket, instead of copying the UTF-8
    /// out of wasm memory once per recipient as `send_with_str` would.
    type AnySend;

    #[wasm_bindgen(method, catch, js_name = send)]
    fn send(this: &AnySend, data: &JsValue) -> std::result::Result<(), JsValue>;
}

/// The in-memory half of the room, rebuilt after every eviction.
struct Live {
    room: Room<DoSqlStorage>,
    /// The open sockets by connection id (from `state.get_websockets()` on rebuild).
    sockets: HashMap<ConnId, WebSocket>,
    /// The object's alarm as far as this instance knows (see [`Live::alarm_change`]).
    alarm: Alarm,
    /// When the pending flush timer fires, if one is pending (see the module comment).
    flush_timer: Option<u64>,
}

/// The room, shared with the flush timer's task (which outlives the event that armed it).
type Slot = Rc<RefCell<Option<Live>>>;

/// The object's alarm as this instance last left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alarm {
    /// Just rebuilt: an alarm may be pending from before the eviction.
    Unknown,
    /// None pending.
    Unset,
    /// Pending at this time (ms since the Unix epoch).
    At(u64),
}

/// What an event requires of the object's alarm: set it at this time (ms since the Unix
/// epoch). It is never deleted (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AlarmChange(u64);

// Exports fetch and the WebSocket handlers; `alarm` is exported below by hand. (The bare
// `#[durable_object]` would export it too, but also `connect`, unused here, for ~5 KB of
// wasm.)
#[durable_object(websocket)]
pub struct ChatRoom {
    state: State,
    /// Loaded once per construction, with the join-token secret. The Worker refuses
    /// requests with a bad configuration before they get here, so an error is only a
    /// safety net.
    config: std::result::Result<(Config, Option<AuthSecret>), String>,
    /// The room's id, which a join token's `room` claim must equal: the name for a room
    /// reached by name (`ctx.id.name`, which workerd gives the object even when an alarm
    /// or a hibernated socket wakes it), else the 64-hex id of a private room.
    room_id: String,
    /// `None` until an event needs the room. Borrowed only inside synchronous code: no
    /// handler or timer awaits while holding it.
    live: Slot,
    /// The room-open limiter, if the binding is configured.
    opens: Option<RateLimiter>,
    /// The room's [`edge::log_tag`], for the lines that name the room.
    tag: String,
    /// What this instance has cost its storage (shared with its [`DoSqlStorage`]).
    ops: Rc<StorageOps>,
    /// [`ROOM_OPENS_48_BINDING`], if configured.
    opens_48: Option<RateLimiter>,
}

impl worker::DurableObject for ChatRoom {
    fn new(state: State, env: Env) -> Self {
        // The name is known for rooms addressed by name, so a test can match the line
        // to its room. A private room's object id is its secret (`id_from_string`), and
        // so is the name of one mapped by name: both appear only as a tag.
        let id = state.id();
        let name = id.name();
        let room = match name.clone() {
            Some(name) => match edge::validate_room(&name) {
                Ok(room) => edge::log_tag(&room),
                Err(_) => edge::private_tag(&name),
            },
            None => edge::private_tag(&id.to_string()),
        };
        console_log!("{CONSTRUCTED_LOG} room={room}");
        let opens = env.rate_limiter(ROOM_OPENS_BINDING).ok();
        let opens_48 = env.rate_limiter(ROOM_OPENS_48_BINDING).ok();
        if opens.is_none() {
            console_log!("edge-chat: no {ROOM_OPENS_BINDING} binding: room opens are not limited");
        }
        ChatRoom {
            room_id: name.unwrap_or_else(|| id.to_string()),
            state,
            config: config::load_with_secret(&env),
            live: Rc::new(RefCell::new(None)),
            opens,
            tag: room,
            ops: Rc::new(StorageOps::default()),
            opens_48,
        }
    }

    /// The upgrade request, already checked by the Worker (method, room, Origin, Upgrade).
    /// Every one is a connect attempt for the storage report, counted whatever its fate.
    async fn fetch(&self, req: Request) -> Result<Response> {
        // Upgrades are GETs; the one POST the Worker forwards is a publish.
        if req.method() == worker::Method::Post {
            return self.publish(req).await;
        }
        let report = self.ops.connect();
        let response = self.upgrade(req).await;
        if report {
            event_log::storage(&self.tag, self.ops.counts());
        }
        response
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        let alarm = self.received(&ws, message);
        self.update_alarm(alarm).await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        reason: String,
        _was_clean: bool,
    ) -> Result<()> {
        // The room lets the member go first (its quit goes out to everyone), then the
        // handshake completes: a client that rejoins once its close is answered always
        // comes after its quit (docs/protocol.md, "Closing"; wrangler.toml's date).
        let alarm = self.gone(&ws);
        // Complete the closing handshake with the peer's code, where it may be sent back.
        // A close reason is at most 123 bytes on the wire; the peer's fits by definition.
        let _ = ws.close(Some(Close::echo_code(code)), Some(reason));
        self.update_alarm(alarm).await;
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, error: worker::Error) -> Result<()> {
        console_error!("edge-chat: socket error: {error}");
        let alarm = self.gone(&ws);
        self.update_alarm(alarm).await;
        Ok(())
    }
}

#[wasm_bindgen(wasm_bindgen_futures = ::worker::wasm_bindgen_futures)]
impl ChatRoom {
    /// The alarm handler: the hello deadline (see the module comment). Also runs for an
    /// evicted object, which the runtime constructs again first. Always succeeds: a
    /// room that cannot be opened has closed its sockets, so a retry has nothing to do.
    #[wasm_bindgen(js_name = alarm)]
    pub async fn alarm_event(&self) -> std::result::Result<JsValue, JsValue> {
        self.ops.alarm();
        let alarm = self.ticked();
        self.update_alarm(alarm).await;
        Ok(JsValue::UNDEFINED)
    }
}

/// The events, handled synchronously (the room is borrowed only here, never across an
/// `.await`). Each returns the change to make to the alarm afterwards, if any
/// ([`Live::alarm_change`]), which the caller applies with [`ChatRoom::update_alarm`].
impl ChatRoom {
    /// A new socket (the server end of the upgrade) from `addr`.
    fn connected(&self, server: WebSocket, addr: String) -> Result<Option<AlarmChange>> {
        let now = now_ms();
        let mut guard = self.live.borrow_mut();
        let alarm = match self.live(&mut guard, None) {
            Some(live) => {
                let conn = live.fresh_conn_id();
                let actions = live.room.connect(conn, Peer { addr }, now);
                if actions.iter().any(|a| a.closes(conn)) {
                    // Refused (its error frame, then its close). A close on a
                    // hibernatable socket before this response is returned never reaches
                    // the client (seen in workerd), while a plainly accepted one delivers
                    // it; the socket needs no hibernation, and the room does not keep it.
                    server.accept()?;
                } else {
                    self.state.accept_web_socket(&server);
                }
                ConnTag::write(&server, conn);
                live.sockets.insert(conn, server);
                live.apply(actions);
                arm_flush_timer(&self.live, live, now);
                live.alarm_change()
            }
            None => {
                // Storage unreadable: the protocol answers with a close on the socket,
                // which a browser client can show, rather than a failed upgrade.
                server.accept()?;
                close_socket(&server, Close::Internal);
                None
            }
        };
        Ok(alarm)
    }

    /// A frame from a socket.
    fn received(&self, ws: &WebSocket, message: WebSocketIncomingMessage) -> Option<AlarmChange> {
        let now = now_ms();
        let mut guard = self.live.borrow_mut();
        // The usual case: the room is awake and knows this socket by its tag, so the
        // attachment need not be read and parsed for every frame (see `ConnTag`).
        let known = guard
            .as_ref()
            .and_then(|live| ConnTag::read(ws).filter(|&conn| live.room.session(conn).is_some()));
        let (live, conn) = match (known, guard.as_mut()) {
            (Some(conn), Some(live)) => (live, conn),
            _ => {
                let Some(session) = attachment(ws) else {
                    // Already forgotten by the room (e.g. a frame racing our close).
                    return None;
                };
                let Some(live) = self.live(&mut guard, Some((ws, &session))) else {
                    // `live` closed the room's sockets (internal error); this one too,
                    // should the runtime not have listed it.
                    if attachment(ws).is_some() {
                        close_internal(ws);
                    }
                    return None;
                };
                ConnTag::write(ws, session.id());
                (live, session.id())
            }
        };
        let actions = match message {
            WebSocketIncomingMessage::String(text) => live.room.on_text(conn, &text, now),
            WebSocketIncomingMessage::Binary(bytes) => live.room.on_binary(conn, bytes.len(), now),
        };
        live.apply(actions);
        arm_flush_timer(&self.live, live, now);
        live.alarm_change()
    }

    /// The peer closed the socket or it failed: the room forgets the session once.
    fn gone(&self, ws: &WebSocket) -> Option<AlarmChange> {
        let session = attachment(ws)?;
        clear_attachment(ws);
        let now = now_ms();
        let mut guard = self.live.borrow_mut();
        // On failure `live` has closed the other sockets; this one is closing.
        let live = self.live(&mut guard, Some((ws, &session)))?;
        live.sockets.remove(&session.id());
        let actions = live.room.disconnect(session.id(), now);
        live.apply(actions);
        arm_flush_timer(&self.live, live, now);
        live.alarm_change()
    }

    /// The alarm fired: close the connections past their hello deadline.
    fn ticked(&self) -> Option<AlarmChange> {
        let now = now_ms();
        let mut guard = self.live.borrow_mut();
        let live = self.live(&mut guard, None)?;
        // The alarm that fired is no longer pending.
        live.alarm = Alarm::Unset;
        let actions = live.room.on_tick(now);
        live.apply(actions);
        arm_flush_timer(&self.live, live, now);
        live.alarm_change()
    }
}

/// Makes sure a timer will flush what the room holds for batch sessions by
/// [`Room::next_flush`]: arms one unless one already fires at or before it.
fn arm_flush_timer(slot: &Slot, live: &mut Live, now: u64) {
    let Some(due) = live.room.next_flush() else {
        return;
    };
    if live.flush_timer.is_some_and(|at| at <= due) {
        return;
    }
    live.flush_timer = Some(due);
    let slot = Rc::clone(slot);
    let wait = Duration::from_millis(due.saturating_sub(now));
    worker::wasm_bindgen_futures::spawn_local(async move {
        Delay::from(wait).await;
        flush_timer_fired(&slot, due);
    });
}

/// A flush timer armed for `due` fired: flush what is due (and close connections past
/// their hello deadline, if any are: `on_tick` does both), then arm for what is left.
/// A timer superseded by an earlier one finds nothing due, or the next batch.
fn flush_timer_fired(slot: &Slot, due: u64) {
    let Ok(mut guard) = slot.try_borrow_mut() else {
        // Cannot happen (borrows never span an await), but frames must not be
        // stranded: try again shortly rather than give up.
        let slot = Rc::clone(slot);
        worker::wasm_bindgen_futures::spawn_local(async move {
            Delay::from(Duration::from_millis(1)).await;
            flush_timer_fired(&slot, due);
        });
        return;
    };
    // The object may have been rebuilt since (after a storage failure): its room arms
    // its own timers.
    let Some(live) = guard.as_mut() else {
        return;
    };
    if live.flush_timer == Some(due) {
        live.flush_timer = None;
    }
    let now = now_ms();
    let actions = live.room.on_tick(now);
    live.apply(actions);
    // Hello closes can only move the durable deadline later, so the alarm, set at or
    // before it, stays valid; it needs no update here.
    arm_flush_timer(slot, live, now);
}

impl ChatRoom {
    /// [`ChatRoom::fetch`]: the upgrade, unless the room is refused or cannot open.
    async fn upgrade(&self, req: Request) -> Result<Response> {
        if let Err(e) = &self.config {
            return Response::error(e.clone(), 500);
        }
        let addr = req
            .headers()
            .get("CF-Connecting-IP")
            .ok()
            .flatten()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        if let Some(refusal) = self.refuse_open(&addr).await {
            return refusal;
        }
        let pair = WebSocketPair::new()?;
        let alarm = self.connected(pair.server, addr)?;
        self.update_alarm(alarm).await;
        Response::from_websocket(pair.client)
    }

    /// A server-side publish, its token already checked by the Worker (the room checks
    /// it again). The body's length was declared and checked too, so reading it whole
    /// is bounded. The answer leaves the object through the runtime's output gate, so
    /// a 201 is never seen before the message is durable, like its broadcast. What
    /// the publish changes is in SQLite (the message, the `sub`'s bucket), so the
    /// object may hibernate or be evicted right after, as after any event.
    async fn publish(&self, mut req: Request) -> Result<Response> {
        if let Err(e) = &self.config {
            return Response::error(e.clone(), 500);
        }
        let authorization = req.headers().get("Authorization").ok().flatten();
        let body = req.text().await?;
        let now = now_ms();
        let (answer, alarm) = {
            let mut guard = self.live.borrow_mut();
            match self.live(&mut guard, None) {
                Some(live) => {
                    let (answer, actions) = live.room.publish(authorization.as_deref(), &body, now);
                    live.apply(actions);
                    arm_flush_timer(&self.live, live, now);
                    (answer, live.alarm_change())
                }
                None => (PublishAnswer::refused(ErrorKind::NotStored), None),
            }
        };
        self.update_alarm(alarm).await;
        crate::publish_response(&answer)
    }

    /// The live room, rebuilt from the sockets' attachments and SQLite if the object was
    /// just constructed. `event` is the socket (and its session) the current event is
    /// about: after an eviction a closing socket may already be missing from
    /// `get_websockets()`, yet its quit must still be announced, so its session joins
    /// the rebuild. Returns `None` if storage cannot be read (or the configuration is
    /// invalid), after logging and closing every socket of the room with
    /// [`Close::Internal`].
    fn live<'a>(
        &self,
        slot: &'a mut Option<Live>,
        event: Option<(&WebSocket, &Session)>,
    ) -> Option<&'a mut Live> {
        let Ok((config, _)) = self.config.as_ref() else {
            self.close_all_internal();
            return None;
        };
        if slot.is_none() {
            let mut sockets = HashMap::new();
            let mut sessions = Vec::new();
            for ws in self.state.get_websockets() {
                if let Some(s) = attachment(&ws) {
                    ConnTag::write(&ws, s.id());
                    sockets.insert(s.id(), ws);
                    sessions.push(s);
                }
            }
            let count = sessions.len();
            let epoch = edge::epoch_candidate(random::bytes::<16>());
            match self.open(config.clone(), &epoch, sessions) {
                Ok(room) => {
                    event_log::restored(count, room.last_seq());
                    *slot = Some(Live {
                        room,
                        sockets,
                        alarm: Alarm::Unknown,
                        flush_timer: None,
                    });
                }
                Err(e) => {
                    console_error!("edge-chat: cannot open room: {e}");
                    self.close_all_internal();
                    return None;
                }
            }
        }
        if let (Some((ws, s)), Some(live)) = (event, slot.as_mut()) {
            if live.room.session(s.id()).is_none() {
                // The socket's attachment says the room counts it, but the rebuild did not
                // see it (absent from get_websockets(), e.g. closing while the object was
                // evicted). Rebuild once more with its session added, so its frame is
                // handled and its quit announced. Storage already holds the epoch, so
                // passing the current one changes nothing.
                // What the room holds for batch sessions would go with it: out first.
                let flushed = live.room.flush(now_ms());
                live.apply(flushed);
                let mut sessions: Vec<Session> = live.room.sessions().cloned().collect();
                sessions.push(s.clone());
                let epoch = live.room.epoch().to_owned();
                match self.open(config.clone(), &epoch, sessions) {
                    Ok(room) => {
                        live.room = room;
                        live.sockets.insert(s.id(), ws.clone());
                    }
                    Err(e) => {
                        console_error!("edge-chat: cannot reopen room: {e}");
                        // The sockets are all closed, so the next event starts afresh.
                        *slot = None;
                        self.close_all_internal();
                        return None;
                    }
                }
            }
        }
        slot.as_mut()
    }

    /// Closes every socket the room counts (those with a session attachment) with
    /// [`Close::Internal`],
    /// clearing the attachments: the room cannot be opened, so it serves no one.
    fn close_all_internal(&self) {
        for ws in self.state.get_websockets() {
            if attachment(&ws).is_some() {
                close_internal(&ws);
            }
        }
    }

    /// 429 with `Retry-After` if this upgrade opens the room (see the module comment) and
    /// `addr` has used up its opens; `None` lets it through. A limiter that fails lets
    /// it through too: refusing everyone because the limiter is down would be worse.
    ///
    /// An IPv6 client is charged for its /64 and then for its /48 (65,536 /64s), on
    /// `ROOM_OPENS_48` when that binding exists (its limit set `address_48_factor` times
    /// `ROOM_OPENS`'s in wrangler.toml), else on `ROOM_OPENS` itself under the /48 key.
    async fn refuse_open(&self, addr: &str) -> Option<Result<Response>> {
        let limiter = self.opens.as_ref()?;
        let opening = self.live.borrow().is_none() && self.state.get_websockets().is_empty();
        if !opening {
            return None;
        }
        let key = edge::address_key(addr);
        let mut outcome = limiter.limit(key.clone()).await;
        if let (Ok(o), Some(wide)) = (&outcome, edge::wide_key(&key)) {
            if o.success {
                let wide_limiter = self.opens_48.as_ref().unwrap_or(limiter);
                outcome = wide_limiter.limit(wide).await;
            }
        }
        match outcome {
            Ok(outcome) if !outcome.success => {
                let refusal = edge::TOO_MANY_ROOM_OPENS;
                let retry_after = ROOM_OPENS_PERIOD_SECS.to_string();
                Some(
                    Response::error(refusal.reason, refusal.status).and_then(|mut r| {
                        r.headers_mut().set("Retry-After", &retry_after)?;
                        r.headers_mut()
                            .set("Content-Type", "text/plain; charset=utf-8")?;
                        Ok(r)
                    }),
                )
            }
            Ok(_) => None,
            Err(e) => {
                console_error!("edge-chat: room-open limiter failed: {e}");
                None
            }
        }
    }

    /// Sets the object's alarm, if an event requires it. On failure the room no longer
    /// knows its alarm, so the next event tries again.
    async fn update_alarm(&self, change: Option<AlarmChange>) {
        let Some(AlarmChange(at)) = change else {
            return;
        };
        self.ops.alarm_set();
        let date = js_sys::Date::new(&JsValue::from_f64(at as f64));
        let done = self
            .state
            .storage()
            .set_alarm(ScheduledTime::new(date))
            .await;
        if let Err(e) = done {
            console_error!("edge-chat: cannot update alarm ({change:?}): {e}");
            if let Some(live) = self.live.borrow_mut().as_mut() {
                live.alarm = Alarm::Unknown;
            }
        }
    }

    fn open(
        &self,
        config: Config,
        epoch_candidate: &str,
        sessions: Vec<Session>,
    ) -> std::result::Result<Room<DoSqlStorage>, chat_handler::StorageError> {
        let storage = DoSqlStorage::open(self.state.storage().sql(), Rc::clone(&self.ops))?;
        let auth = self.config.as_ref().ok().and_then(|(_, secret)| {
            secret.clone().map(|secret| Auth {
                secret,
                room: self.room_id.clone(),
            })
        });
        let mut room = Room::restore(config, storage, epoch_candidate, sessions)?.with_auth(auth);
        room.set_observer(Box::new(LogEvents));
        Ok(room)
    }
}

impl Live {
    /// What the alarm needs after an event, and records it as done. With a hello
    /// deadline ([`Room::next_durable_deadline`]; batch flushes use a timer): an alarm
    /// at it, unless one is already set at or before it (so most events change
    /// nothing: deadlines only come later than the ones before). Without one: nothing.
    /// An alarm left pending wakes the room once for nothing, which costs less than a
    /// delete on every close of a socket that never said hello; a pending alarm does
    /// not keep the object from hibernating.
    fn alarm_change(&mut self) -> Option<AlarmChange> {
        let deadline = self.room.next_durable_deadline()?;
        if let Alarm::At(at) = self.alarm {
            if at <= deadline {
                return None;
            }
        }
        self.alarm = Alarm::At(deadline);
        Some(AlarmChange(deadline))
    }

    /// A random connection id not in use. Random rather than counted, so ids stay unique
    /// across evictions without a stored counter; 64 bits make a clash with a live
    /// session vanishingly rare, and the loop rules it out.
    fn fresh_conn_id(&self) -> ConnId {
        loop {
            let id = random::u64();
            if !self.sockets.contains_key(&id) && self.room.session(id).is_none() {
                return id;
            }
        }
    }

    /// Carries out the handler's actions in order. Send failures are ignored: they mean
    /// the socket is closing, and its close event will reach the room.
    ///
    /// There is no [`Close::SlowConsumer`] here, unlike the local runner: workerd
    /// queues outgoing frames for a peer that stops reading without bound, `send` never
    /// fails or blocks for it, and hibernatable sockets expose no `bufferedAmount`, so
    /// the object cannot see a backlog to cap (`send_queue_frames` goes unused).
    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { to, frame } => {
                    if let Some(ws) = self.sockets.get(&to) {
                        let _ = ws.send_with_str(&*frame);
                    }
                }
                Action::Broadcast { to, frame } => self.send_each(&frame, &to),
                Action::Close { conn, close } => {
                    if let Some(ws) = self.sockets.remove(&conn) {
                        clear_attachment(&ws);
                        close_socket(&ws, close);
                    }
                }
                Action::Save { conn, session } => {
                    if let Some(ws) = self.sockets.get(&conn) {
                        save_attachment(ws, &session);
                    }
                }
                // Already in the room's audit table; this is the log line.
                Action::Audit { line } => console_log!("{line}"),
                // Storage writes are held by the runtime's output gate: no message leaves
                // the object before what it depends on is durable.
                Action::Commit => {}
            }
        }
    }

    /// One frame, encoded once (and converted to a JS string once), to every recipient.
    fn send_each(&self, frame: &Frame, recipients: &[ConnId]) {
        let text = JsValue::from_str(frame);
        for conn in recipients {
            if let Some(ws) = self.sockets.get(conn) {
                let socket: &web_sys::WebSocket = ws.as_ref();
                let _ = socket.unchecked_ref::<AnySend>().send(&text);
            }
        }
    }
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}

/// The session stored on a socket, if the room still counts it. Attachments are JSON
/// text: serde_json round-trips every u64 exactly, where a JS number would not hold a
/// random 64-bit conn id.
fn attachment(ws: &WebSocket) -> Option<Session> {
    let text: String = ws.deserialize_attachment().ok().flatten()?;
    serde_json::from_str(&text).ok()
}

fn save_attachment(ws: &WebSocket, session: &Session) {
    match serde_json::to_string(session) {
        Ok(text) => {
            if let Err(e) = ws.serialize_attachment(text) {
                console_error!("edge-chat: cannot save session: {e}");
            }
        }
        Err(e) => console_error!("edge-chat: cannot encode session: {e}"),
    }
}

/// Marks the socket as forgotten by the room (see the module comment).
fn clear_attachment(ws: &WebSocket) {
    let _ = ws.serialize_attachment(());
    ConnTag::clear(ws);
}

/// A socket's connection id, kept as a property of its JS object while the object is
/// in memory, so a frame finds its session without reading the attachment back
/// (a structured-clone read and a JSON parse per frame). workerd hands every event
/// the same JS object for a socket while the object lives (Cloudflare's own chat
/// demo keys a `Map` by it), and an evicted object starts with fresh JS objects and
/// no tags. A tag is only trusted for a connection the live room counts; connection
/// ids are random and never reused, so a stale tag can match no other session, and
/// any miss falls back to the attachment.
struct ConnTag;

impl ConnTag {
    const KEY: &'static str = "edgeChatConn";

    fn write(ws: &WebSocket, conn: ConnId) {
        let obj: &JsValue = ws.as_ref();
        let _ = js_sys::Reflect::set(
            obj,
            &JsValue::from_str(Self::KEY),
            &JsValue::from_str(&conn.to_string()),
        );
    }

    fn read(ws: &WebSocket) -> Option<ConnId> {
        let obj: &JsValue = ws.as_ref();
        js_sys::Reflect::get(obj, &JsValue::from_str(Self::KEY))
            .ok()?
            .as_string()?
            .parse()
            .ok()
    }

    fn clear(ws: &WebSocket) {
        let obj: &JsValue = ws.as_ref();
        if let Ok(obj) = obj.clone().dyn_into::<js_sys::Object>() {
            let _ = js_sys::Reflect::delete_property(&obj, &JsValue::from_str(Self::KEY));
        }
    }
}

/// Forgets the socket and closes it: the room cannot be opened.
fn close_internal(ws: &WebSocket) {
    clear_attachment(ws);
    close_socket(ws, Close::Internal);
}

/// Closes the socket with the close's code and reason; a failure means it is closing
/// already. Every close the object orders goes through here, so here it is logged.
fn close_socket(ws: &WebSocket, close: Close) {
    event_log::closed(close);
    if let Err(e) = ws.close(Some(close.code()), Some(close.reason())) {
        console_error!("edge-chat: close {close:?} failed: {e}");
    }
}
