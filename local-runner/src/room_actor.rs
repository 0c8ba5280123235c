//! One task per room. It owns the handler's `Room` (and through it the room's storage
//! connection), takes joins and socket events from its inboxes, and carries out the
//! actions the handler returns. It never waits on a connection: frames go into each
//! connection's bounded queue with `try_send`, and a full queue gets the connection
//! kicked as a slow consumer.

use crate::clock::now_ms;
use crate::link::{frame_bytes, ConnLink, Queued};
use crate::registry::{Join, RoomHandle, Rooms};
use crate::store::Store;
use axum::extract::ws::Utf8Bytes;
use chat_handler::edge;
use chat_handler::{Action, Close, ConnId, Room, Session};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

/// Socket events waiting for the actor. Readers wait when it is full, which slows
/// down whoever floods the room instead of growing memory: at most this many frames
/// (each up to `max_frame_bytes`) wait per room.
const EVENT_INBOX: usize = 256;

/// What a connection reports to its room.
#[derive(Debug)]
pub enum Event {
    Text {
        conn: ConnId,
        text: Utf8Bytes,
    },
    Binary {
        conn: ConnId,
        len: usize,
    },
    /// The WebSocket library refused a message over `max_frame_bytes`.
    TooBig {
        conn: ConnId,
    },
    /// The connection decided to go (missed pongs).
    Kick {
        conn: ConnId,
        close: Close,
    },
    Disconnect {
        conn: ConnId,
    },
}

/// The room's state: live, or dropped with its sessions serialized (hibernated, or
/// not opened yet when there are none).
enum State {
    Live(Box<Room<Store>>),
    Dropped { sessions: Vec<String> },
}

struct RoomActor {
    rooms: Arc<Rooms>,
    name: String,
    id: u64,
    state: State,
    links: HashMap<ConnId, ConnLink>,
    last_event: Instant,
    /// When the room next has something to do on its own (`Room::next_deadline`): a
    /// hello deadline, or a batch to flush. One timer for all of them.
    due: Option<Instant>,
    shutting_down: bool,
}

/// Starts the actor for `name`; the caller registers the returned handle.
pub fn spawn(rooms: Arc<Rooms>, name: String, id: u64) -> RoomHandle {
    let (joins_tx, joins) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::channel(EVENT_INBOX);
    let actor = RoomActor {
        rooms,
        name,
        id,
        state: State::Dropped {
            sessions: Vec::new(),
        },
        links: HashMap::new(),
        last_event: Instant::now(),
        due: None,
        shutting_down: false,
    };
    tokio::spawn(actor.run(joins, events));
    RoomHandle {
        id,
        joins: joins_tx,
        events: events_tx,
    }
}

/// A fresh random epoch candidate (see `edge::epoch_candidate`).
fn random_epoch() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness is close to impossible; a clock-based id still differs
        // from every earlier epoch, which is all an epoch must do.
        bytes = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default())
        .to_be_bytes();
    }
    edge::epoch_candidate(bytes)
}

/// The monotonic instant of a wall-clock time (ms since the Unix epoch); a time
/// already past is now. Recomputed at every event, so clock steps are caught up on.
fn instant_at(wall_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(wall_ms.saturating_sub(now_ms()))
}

// Storage calls run synchronously on the actor's task: in WAL mode with
// synchronous=NORMAL an append is a few microseconds of page writes with no fsync,
// cheaper than handing each one to a blocking thread. Only a long lock wait
// (busy_timeout) could hold a runtime worker, and rooms never hold write locks long.
impl RoomActor {
    async fn run(
        mut self,
        mut joins: mpsc::UnboundedReceiver<Join>,
        mut events: mpsc::Receiver<Event>,
    ) {
        debug!(room = %self.name, "room actor started");
        let mut shutdown = self.rooms.ctx.shutdown.clone();
        loop {
            let deadline = self.deadline();
            let due = self.due;
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|down| *down), if !self.shutting_down => {
                    self.shut_down();
                }
                // Ahead of the inboxes: with `biased`, a room that always has an event
                // waiting would otherwise never get to its deadline. Once handled, the
                // timer moves to a later deadline, so it cannot starve them in turn.
                _ = async { sleep_until(due.unwrap_or_else(Instant::now)).await },
                    if due.is_some() => self.tick(),
                join = joins.recv() => match join {
                    Some(join) => self.join(join),
                    None => break,
                },
                Some(event) = events.recv() => self.event(event),
                _ = async { sleep_until(deadline.unwrap_or_else(Instant::now)).await },
                    if deadline.is_some() => {
                    if self.links.is_empty() {
                        if self.try_retire(&mut joins) {
                            break;
                        }
                    } else {
                        self.hibernate();
                    }
                }
            }
            self.arm_timer();
            if self.shutting_down && self.links.is_empty() && self.try_retire(&mut joins) {
                break;
            }
        }
        debug!(room = %self.name, "room actor stopped");
    }

    /// When the actor next has something to do on its own: retire when empty, or
    /// hibernate when live, quiet and hibernation is on.
    fn deadline(&self) -> Option<Instant> {
        if self.links.is_empty() {
            return Some(self.last_event + self.rooms.ctx.idle_exit);
        }
        match (&self.state, self.rooms.ctx.hibernate_after) {
            (State::Live(_), Some(after)) => Some(self.last_event + after),
            _ => None,
        }
    }

    /// Sets the timer from the room, after anything that may have changed it.
    ///
    /// A hibernated room keeps the timer it had (its hello deadlines: `hibernate`
    /// flushed every batch), and when it fires, `tick` restores the room as any event
    /// would: the Durable Object's alarm wakes it the same way. That is simpler than
    /// keeping such a room awake (no special case in `deadline`, nothing to re-check when
    /// a hello arrives) and still correct, since nothing changes a dropped room's
    /// deadlines: any event restores it first.
    fn arm_timer(&mut self) {
        self.due = match &self.state {
            State::Live(room) => room.next_deadline().map(instant_at),
            State::Dropped { .. } if !self.links.is_empty() => self.due,
            // No connections (or storage failed and closed them): nothing to time.
            State::Dropped { .. } => None,
        };
    }

    /// A deadline passed: the handler closes the connections still unnamed, or flushes
    /// a batch. Waking a hibernated room does not count as activity, so a room with
    /// nothing else to do goes back to sleep on its usual schedule.
    fn tick(&mut self) {
        let now = now_ms();
        let Some(room) = self.room() else {
            return;
        };
        let actions = room.on_tick(now);
        self.apply(actions, now);
    }

    /// Leaves the registry if no join is waiting. A join found waiting is handled and
    /// the actor stays.
    fn try_retire(&mut self, joins: &mut mpsc::UnboundedReceiver<Join>) -> bool {
        let mut waiting = None;
        let retired = self.rooms.clone().retire_if(&self.name, self.id, || {
            match joins.try_recv() {
                Ok(join) => {
                    waiting = Some(join);
                    false
                }
                Err(_) => {
                    // Closed under the registry lock: any later join sees the closed
                    // inbox and starts a fresh actor.
                    joins.close();
                    true
                }
            }
        });
        if let Some(join) = waiting {
            self.join(join);
        }
        retired
    }

    /// The live room, rebuilding it from storage and the kept sessions if needed.
    /// `None` if storage cannot be opened; then every connection is closed with
    /// [`Close::Internal`] (a room that cannot read its history cannot serve anyone).
    fn room(&mut self) -> Option<&mut Room<Store>> {
        if let State::Dropped { sessions } = &mut self.state {
            let kept = std::mem::take(sessions);
            let count = kept.len();
            let restored: Vec<Session> = kept
                .iter()
                .filter_map(|s| match serde_json::from_str(s) {
                    Ok(session) => Some(session),
                    Err(e) => {
                        warn!(room = %self.name, error = %e, "dropping unreadable session");
                        None
                    }
                })
                .collect();
            let ctx = &self.rooms.ctx;
            let opened = ctx.store.open(&self.name).and_then(|storage| {
                Room::restore(ctx.config.clone(), storage, &random_epoch(), restored)
            });
            match opened {
                Ok(room) => {
                    if count > 0 {
                        info!(room = %self.name, sessions = count, "room restored");
                    }
                    self.state = State::Live(Box::new(room));
                }
                Err(e) => {
                    warn!(room = %self.name, error = %e, "cannot open room storage");
                    for (_, link) in self.links.drain() {
                        link.close(Close::Internal);
                    }
                    return None;
                }
            }
        }
        match &mut self.state {
            State::Live(room) => Some(room),
            State::Dropped { .. } => None,
        }
    }

    /// Emulates a Durable Object being evicted while its sockets stay open: keep the
    /// sessions exactly as a DO keeps socket attachments (JSON), drop the room and its
    /// storage connection.
    ///
    /// Frames pending for batch sessions live only in the room, so they go out first.
    /// (A Durable Object cannot be evicted with any pending: its flush timer keeps it in
    /// memory. Here the hibernation delay may be set shorter than the batch window.)
    fn hibernate(&mut self) {
        let now = now_ms();
        let State::Live(room) = &mut self.state else {
            return;
        };
        let flushed = room.flush(now);
        self.apply(flushed, now);
        let State::Live(room) = &self.state else {
            return;
        };
        // What is left to time are hello deadlines, which the dropped room keeps.
        self.due = room.next_deadline().map(instant_at);
        let sessions: Vec<String> = room
            .sessions()
            .filter_map(|s| serde_json::to_string(s).ok())
            .collect();
        let count = sessions.len();
        self.state = State::Dropped { sessions };
        info!(room = %self.name, sessions = count, "room hibernated");
    }

    fn join(&mut self, join: Join) {
        self.last_event = Instant::now();
        if self.shutting_down {
            join.link.close(Close::GoingAway);
            return;
        }
        let now = now_ms();
        let Some(room) = self.room() else {
            join.link.close(Close::Internal);
            return;
        };
        match room.connect(join.conn, join.peer, now) {
            Ok(actions) => {
                debug!(room = %self.name, conn = join.conn, "connected");
                self.links.insert(join.conn, join.link);
                self.apply(actions, now);
            }
            Err(close) => {
                debug!(room = %self.name, conn = join.conn, ?close, "connection refused");
                join.link.close(close);
            }
        }
    }

    fn event(&mut self, event: Event) {
        self.last_event = Instant::now();
        let now = now_ms();
        if let Event::Disconnect { conn } = event {
            if self.links.remove(&conn).is_some() {
                debug!(room = %self.name, conn, "disconnected");
            }
        }
        let Some(room) = self.room() else {
            return;
        };
        let actions = match event {
            Event::Text { conn, text } => room.on_text(conn, &text, now),
            Event::Binary { conn, len } => room.on_binary(conn, len, now),
            Event::TooBig { conn } => room.on_too_big(conn, now),
            Event::Kick { conn, close } => room.kick(conn, close, now),
            Event::Disconnect { conn } => room.disconnect(conn, now),
        };
        self.apply(actions, now);
    }

    /// Carries out the handler's actions in order. Kicking a slow consumer produces
    /// more actions (its close, its quit), which run after the current ones.
    fn apply(&mut self, actions: Vec<Action>, now: u64) {
        let mut todo = VecDeque::from(actions);
        let mut slow = Vec::new();
        while let Some(action) = todo.pop_front() {
            match action {
                Action::Send { to, frame } => {
                    if let Some(link) = self.links.get(&to) {
                        if let Queued::Full = link.send(frame_bytes(&frame)) {
                            slow.push(to);
                        }
                    }
                }
                Action::Broadcast { frame, audience } => {
                    let State::Live(room) = &self.state else {
                        continue;
                    };
                    // One encoding and one buffer for every recipient.
                    let bytes = frame_bytes(&frame);
                    for id in room.recipients(audience) {
                        if let Some(link) = self.links.get(&id) {
                            if let Queued::Full = link.send(bytes.clone()) {
                                slow.push(id);
                            }
                        }
                    }
                }
                Action::Multicast { to, frame } => {
                    let bytes = frame_bytes(&frame);
                    for id in to {
                        if let Some(link) = self.links.get(&id) {
                            if let Queued::Full = link.send(bytes.clone()) {
                                slow.push(id);
                            }
                        }
                    }
                }
                Action::Close { conn, close } => {
                    if let Some(link) = self.links.remove(&conn) {
                        debug!(room = %self.name, conn, ?close, "closing");
                        link.close(close);
                    }
                }
                // Only the Durable Object persists sessions as they change; here they
                // are serialized when the room hibernates.
                Action::Save { .. } => {}
            }
            if !slow.is_empty() {
                if let State::Live(room) = &mut self.state {
                    for conn in slow.drain(..) {
                        info!(room = %self.name, conn, "closing slow consumer");
                        todo.extend(room.kick(conn, Close::SlowConsumer, now));
                    }
                }
            }
        }
    }

    /// Closes every socket with [`Close::GoingAway`], then lets the room forget them (which keeps
    /// drained rate-limit buckets). Closing first spares each member the quit frames
    /// of everyone else.
    fn shut_down(&mut self) {
        self.shutting_down = true;
        let now = now_ms();
        // Pending batches first: everything the room said before the shutdown arrives,
        // as it would have unbatched.
        if let State::Live(room) = &mut self.state {
            let flushed = room.flush(now);
            self.apply(flushed, now);
        }
        let count = self.links.len();
        for (_, link) in self.links.drain() {
            link.close(Close::GoingAway);
        }
        let has_sessions = match &self.state {
            State::Live(room) => !room.is_empty(),
            State::Dropped { sessions } => !sessions.is_empty(),
        };
        if has_sessions {
            if let Some(room) = self.room() {
                let ids: Vec<ConnId> = room.sessions().map(|s| s.id).collect();
                for id in ids {
                    // Links are gone, so the resulting actions have no one to reach.
                    let _ = room.kick(id, Close::GoingAway, now);
                }
            }
        }
        if count > 0 {
            info!(room = %self.name, connections = count, "room closed for shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Out;
    use crate::registry::RoomContext;
    use crate::store::StoreFactory;
    use chat_handler::{Config, Peer};
    use std::time::Duration;
    use tokio::sync::{oneshot, watch};
    use tokio::time::timeout;

    struct Client {
        conn: ConnId,
        frames: mpsc::Receiver<Out>,
        urgent: oneshot::Receiver<Close>,
        events: mpsc::Sender<Event>,
    }

    fn rooms(config: Config, hibernate: Option<Duration>) -> (Arc<Rooms>, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let rooms = Rooms::new(RoomContext {
            config,
            store: StoreFactory::memory(),
            hibernate_after: hibernate,
            idle_exit: Duration::ZERO,
            shutdown: rx,
        });
        (rooms, tx)
    }

    async fn join(rooms: &Arc<Rooms>, room: &str, conn: ConnId, bound: usize) -> Client {
        let (tx, frames) = mpsc::channel(bound);
        let (utx, urgent) = oneshot::channel();
        let join = Join {
            conn,
            peer: Peer {
                addr: format!("10.0.0.{conn}"),
            },
            link: ConnLink::new(tx, utx),
        };
        let events = rooms.join(room, join).map_err(|_| "refused").unwrap();
        Client {
            conn,
            frames,
            urgent,
            events,
        }
    }

    impl Client {
        async fn text(&self, text: &str) {
            let event = Event::Text {
                conn: self.conn,
                text: text.into(),
            };
            self.events.send(event).await.unwrap();
        }

        /// The next frame's text, or the close it got.
        async fn next(&mut self) -> Result<String, Close> {
            match timeout(Duration::from_secs(5), self.frames.recv()).await {
                Ok(Some(Out::Text(t))) => Ok(t.to_string()),
                Ok(Some(Out::Close(close))) => Err(close),
                other => panic!("no frame: {other:?}"),
            }
        }

        async fn until(&mut self, needle: &str) -> String {
            loop {
                let f = self.next().await.unwrap();
                if f.contains(needle) {
                    return f;
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn joins_racing_a_retiring_actor_are_never_lost() {
        // idle_exit is zero, so the actor retires whenever the room empties: every
        // join below races a retirement.
        let (rooms, _shutdown) = rooms(Config::default(), None);
        for conn in 1..=300 {
            let mut c = join(&rooms, "race", conn, 64).await;
            c.text(r#"{"name":"a"}"#).await;
            c.until("ready").await;
            c.events.send(Event::Disconnect { conn }).await.unwrap();
            if conn % 3 == 0 {
                tokio::task::yield_now().await;
            }
        }
    }

    #[tokio::test]
    async fn slow_consumer_is_closed_and_the_room_goes_on() {
        let config = Config {
            room_capacity: 3,
            backlog: 0,
            resume_max: 0,
            send_queue_frames: 2,
            rate_burst: 1000,
            ..Config::default()
        };
        let bound = config.send_queue_bound();
        let (rooms, _shutdown) = rooms(config, None);
        let mut talker = join(&rooms, "r", 1, bound).await;
        let mut sloth = join(&rooms, "r", 2, bound).await;
        talker.text(r#"{"name":"talker"}"#).await;
        talker.until("ready").await;
        sloth.text(r#"{"name":"sloth"}"#).await;
        talker.until("sloth").await;
        let mut seen = Vec::new();
        for i in 0..20 {
            talker.text(&format!(r#"{{"message":"m{i}"}}"#)).await;
            loop {
                let f = talker.next().await.unwrap();
                seen.push(f.clone());
                if f.contains(&format!("m{i}")) {
                    break;
                }
            }
        }
        // The sloth never read: its queue filled, so its close came the urgent way.
        assert_eq!(sloth.urgent.try_recv().unwrap(), Close::SlowConsumer);
        assert!(seen.iter().any(|f| f == r#"{"quit":"sloth"}"#), "{seen:?}");
        // Its queue holds at most the bound, however much the room said.
        let mut queued = 0;
        while sloth.frames.try_recv().is_ok() {
            queued += 1;
        }
        assert!(queued <= bound, "{queued} > {bound}");
    }

    #[tokio::test]
    async fn an_error_frame_arrives_before_its_close() {
        let (rooms, _shutdown) = rooms(Config::default(), None);
        let mut c = join(&rooms, "r", 1, 64).await;
        c.text("[]").await;
        assert!(c.next().await.unwrap().contains("error"));
        assert_eq!(c.next().await, Err(Close::BadHello));
    }

    #[tokio::test]
    async fn a_hibernated_room_carries_on() {
        let (rooms, _shutdown) = rooms(Config::default(), Some(Duration::from_millis(20)));
        let mut a = join(&rooms, "h", 1, 64).await;
        let mut b = join(&rooms, "h", 2, 64).await;
        a.text(r#"{"name":"alice"}"#).await;
        a.until("ready").await;
        b.text(r#"{"name":"bob"}"#).await;
        b.until("ready").await;
        a.until("bob").await;
        a.text(r#"{"message":"one"}"#).await;
        assert!(b.until("one").await.contains(r#""seq":1"#));
        tokio::time::sleep(Duration::from_millis(80)).await;
        a.text(r#"{"message":"two"}"#).await;
        assert!(b.until("two").await.contains(r#""seq":2"#));
        tokio::time::sleep(Duration::from_millis(80)).await;
        b.events.send(Event::Disconnect { conn: 2 }).await.unwrap();
        assert_eq!(a.until("quit").await, r#"{"quit":"bob"}"#);
    }

    #[tokio::test]
    async fn a_batch_flushes_on_its_timer_and_before_the_room_hibernates() {
        // A budget of one send per second: the window is 1 s for any number of members.
        let config = Config {
            batch_window_ms: 1_000,
            batch_send_budget: 1,
            ..Config::default()
        };
        let hello = |name: &str| format!(r#"{{"name":"{name}","v":2,"batch":true}}"#);
        // Without hibernation, the actor's timer flushes at the window.
        let (rooms_awake, _s1) = rooms(config.clone(), None);
        let mut a = join(&rooms_awake, "t", 1, 64).await;
        a.text(&hello("alice")).await;
        a.until("ready").await;
        a.text(r#"{"message":"lead"}"#).await;
        assert!(
            a.next().await.unwrap().contains("lead"),
            "a lone frame goes at once"
        );
        a.text(r#"{"message":"held"}"#).await;
        let started = Instant::now();
        assert!(a.next().await.unwrap().contains("held"));
        assert!(
            started.elapsed() >= Duration::from_millis(800),
            "held for the window"
        );

        // A room that hibernates first sends what it holds, long before the window.
        let (rooms, _s2) = rooms(config, Some(Duration::from_millis(50)));
        let mut b = join(&rooms, "h", 2, 64).await;
        b.text(&hello("bob")).await;
        b.until("ready").await;
        b.text(r#"{"message":"lead"}"#).await;
        assert!(b.next().await.unwrap().contains("lead"));
        b.text(r#"{"message":"pending"}"#).await;
        let started = Instant::now();
        assert!(b.next().await.unwrap().contains("pending"));
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "flushed at hibernation"
        );
        // The woken room still batches for bob.
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.text(r#"{"message":"after"}"#).await;
        assert!(b.next().await.unwrap().contains("after"));
    }

    /// The client's frames until its close, within `within`.
    async fn until_closed(c: &mut Client, within: Duration) -> (Vec<String>, Close) {
        let mut frames = Vec::new();
        let closed = timeout(within, async {
            loop {
                match c.next().await {
                    Ok(f) => frames.push(f),
                    Err(close) => return close,
                }
            }
        })
        .await
        .expect("not closed in time");
        (frames, closed)
    }

    fn hello_timeout(ms: u64) -> Config {
        Config {
            hello_timeout_ms: ms,
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_at_its_hello_deadline() {
        let (rooms, _shutdown) = rooms(hello_timeout(150), None);
        let started = Instant::now();
        let mut named = join(&rooms, "t", 1, 64).await;
        named.text(r#"{"name":"alice"}"#).await;
        named.until("ready").await;
        let mut silent = join(&rooms, "t", 2, 64).await;
        let (frames, close) = until_closed(&mut silent, Duration::from_secs(5)).await;
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert!(frames[0].contains("error"), "{frames:?}");
        assert_eq!(close, Close::HelloTimeout);
        // The named one stays, and heard nothing of the silent one (no quit).
        named.text(r#"{"message":"still here"}"#).await;
        assert!(named.next().await.unwrap().contains("still here"));
    }

    #[tokio::test]
    async fn each_silent_connection_gets_its_own_deadline() {
        let (rooms, _shutdown) = rooms(hello_timeout(300), None);
        let mut first = join(&rooms, "d", 1, 64).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut second = join(&rooms, "d", 2, 64).await;
        let first_at = {
            until_closed(&mut first, Duration::from_secs(5)).await;
            Instant::now()
        };
        // The second connection is not closed along with the first, and its own
        // hello in time keeps it.
        assert!(second.frames.try_recv().is_err());
        second.text(r#"{"name":"bob"}"#).await;
        second.until("ready").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(second.frames.try_recv().is_err(), "closed after its hello");
        assert!(first_at.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_hello_deadline_wakes_a_hibernated_room() {
        // The room hibernates 20 ms after the join, long before the deadline.
        let (rooms, _shutdown) = rooms(hello_timeout(250), Some(Duration::from_millis(20)));
        let mut named = join(&rooms, "w", 1, 64).await;
        named.text(r#"{"name":"alice"}"#).await;
        named.until("ready").await;
        let mut silent = join(&rooms, "w", 2, 64).await;
        let (frames, close) = until_closed(&mut silent, Duration::from_secs(5)).await;
        assert!(frames[0].contains("error"), "{frames:?}");
        assert_eq!(close, Close::HelloTimeout);
        // The woken room still knows its member.
        named.text(r#"{"message":"after"}"#).await;
        assert!(named.until("after").await.contains(r#""seq":1"#));
    }

    #[tokio::test]
    async fn shutdown_closes_everyone_with_1001_and_refuses_joins() {
        let (rooms, shutdown) = rooms(Config::default(), None);
        let mut a = join(&rooms, "s", 1, 64).await;
        a.text(r#"{"name":"alice"}"#).await;
        a.until("ready").await;
        rooms.begin_shutdown();
        shutdown.send(true).unwrap();
        assert_eq!(a.next().await, Err(Close::GoingAway));
        let (tx, _rx) = mpsc::channel(1);
        let (utx, _urx) = oneshot::channel();
        let late = Join {
            conn: 9,
            peer: Peer { addr: "x".into() },
            link: ConnLink::new(tx, utx),
        };
        assert!(rooms.join("s", late).is_err());
    }
}
