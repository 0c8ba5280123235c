//! One task per room. It owns the handler's `Room` (and through it the room's storage
//! connection), takes joins and socket events from its inboxes, and carries out the
//! actions the handler returns. It never waits on a connection: frames go into each
//! connection's bounded queue with `try_send`, and a full queue gets the connection
//! kicked as a slow consumer.
//!
//! The actor knows nothing of the registry that starts it beyond [`Retire`], its one
//! call back into it; the room itself, live or hibernated, is a [`HibernatingRoom`].
//!
//! Group commit: when an event's actions hold a commit barrier ([`Action::Commit`]), the
//! actor takes whatever else is waiting in its inboxes, then asks for one commit of all
//! of it (which the storage thread shares with every other room that wrote meanwhile)
//! and holds every action from the barrier on in its [`HeldActions`] until the commit
//! is on disk (see `storage_thread`).

use crate::clock::now_ms;
use crate::hibernation::log_tag;
use crate::hibernation::{HibernatingRoom, RoomStorage};
use crate::link::{frame_bytes, ConnLink, Queued};
use crate::metrics::Metrics;
use crate::room_inbox::{Arrival, Event, Join, Publish, RoomHandle};
use crate::storage_thread::StorageThread;
use chat_handler::{Action, AuthSecret, Close, Config, ConnId, ErrorKind, PublishAnswer, Room};
use held_actions::HeldActions;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

mod held_actions;
#[cfg(test)]
mod tests;

/// Socket events waiting for the actor. Readers wait when it is full, which slows
/// down whoever floods the room instead of growing memory: at most this many frames
/// (each up to `max_frame_bytes`) wait per room.
const EVENT_INBOX: usize = 256;

/// Most events gathered into one commit beyond the one that stored a message: a full
/// inbox's worth, so a busy room commits once per inbox rather than once per message.
const MAX_GATHER: usize = EVENT_INBOX;

/// Everything a room actor needs besides its name.
pub(crate) struct RoomContext {
    pub(crate) config: Config,
    /// Verifies join tokens when set (`--auth-secret-file`, `EDGE_CHAT_AUTH_SECRET`).
    pub(crate) auth_secret: Option<AuthSecret>,
    pub(crate) store: Arc<StorageThread>,
    /// The process's figures (`GET /metrics`).
    pub(crate) metrics: Arc<Metrics>,
    /// `Some` emulates Durable Object hibernation after this much quiet.
    pub(crate) hibernate_after: Option<Duration>,
    /// How long an empty room's actor lingers before it retires.
    pub(crate) idle_exit: Duration,
    /// Becomes `true` when the server shuts down.
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// How an actor leaves the registry that started it. The registry depends on the actor
/// (it spawns them); the actor sees only this, so the dependency runs one way.
pub(crate) trait Retire: Send + Sync {
    /// Removes actor `id`'s entry for `room` if it is still the registered one, after
    /// `check` (run under the registry lock) agrees; returns whether `check` agreed.
    /// Joins are sent under the same lock, so an actor that finds its inbox empty in
    /// `check` and closes it cannot lose a join.
    fn retire_if(&self, room: &str, id: u64, check: &mut dyn FnMut() -> bool) -> bool;
}

struct RoomActor {
    ctx: Arc<RoomContext>,
    registry: Arc<dyn Retire>,
    name: String,
    /// The name as logs show it (`edge::log_tag`).
    tag: String,
    id: u64,
    /// The handler's room, live or hibernated; opened by the first event that needs it.
    state: HibernatingRoom,
    links: HashMap<ConnId, ConnLink>,
    last_event: Instant,
    /// When the room next has something to do on its own (`Room::next_deadline`): a
    /// hello deadline, or a batch to flush. One timer for all of them.
    due: Option<Instant>,
    shutting_down: bool,
    /// Actions waiting for the room's stored messages to be committed.
    held: HeldActions,
    /// Commits the room's storage when a barrier asks for it.
    committer: RoomStorage,
    /// Publish answers waiting for the commit, like the held actions.
    replies: Vec<(oneshot::Sender<PublishAnswer>, PublishAnswer)>,
}

/// Starts the actor for `name`; the caller registers the returned handle, and the
/// actor leaves `registry` through [`Retire::retire_if`] with this `id`.
pub(crate) fn spawn(
    ctx: Arc<RoomContext>,
    registry: Arc<dyn Retire>,
    name: String,
    id: u64,
) -> RoomHandle {
    let (joins_tx, joins) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::channel(EVENT_INBOX);
    let actor = RoomActor::new(ctx, registry, name, id);
    tokio::spawn(actor.run(joins, events));
    RoomHandle {
        id,
        joins: joins_tx,
        events: events_tx,
    }
}

/// The monotonic instant of a wall-clock time (ms since the Unix epoch); a time
/// already past is now. Recomputed at every event, so clock steps are caught up on.
fn instant_at(wall_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(wall_ms.saturating_sub(now_ms()))
}

// Storage calls are jobs for the storage thread: writes are queued without waiting,
// reads wait without stalling the runtime (`storage_thread`), and what depends on a
// write is held until `commit`.
impl RoomActor {
    fn new(ctx: Arc<RoomContext>, registry: Arc<dyn Retire>, name: String, id: u64) -> Self {
        let state = HibernatingRoom::new(
            name.clone(),
            ctx.config.clone(),
            ctx.store.clone(),
            ctx.metrics.clone(),
        )
        .with_auth_secret(ctx.auth_secret.clone());
        RoomActor {
            committer: ctx.store.room(&name),
            ctx,
            registry,
            tag: log_tag(&name),
            name,
            id,
            state,
            links: HashMap::new(),
            last_event: Instant::now(),
            due: None,
            shutting_down: false,
            held: HeldActions::default(),
            replies: Vec::new(),
        }
    }

    async fn run(
        mut self,
        mut joins: mpsc::UnboundedReceiver<Arrival>,
        mut events: mpsc::Receiver<Event>,
    ) {
        debug!(room = %self.tag, "room actor started");
        let mut shutdown = self.ctx.shutdown.clone();
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
                arrival = joins.recv() => match arrival {
                    Some(arrival) => self.arrive(arrival),
                    None => break,
                },
                Some(event) = events.recv() => self.event(event, &mut joins),
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
            if self.held.awaiting_commit() {
                self.gather(&mut joins, &mut events);
                self.commit().await;
            }
            self.arm_timer();
            if self.shutting_down && self.links.is_empty() && self.try_retire(&mut joins) {
                break;
            }
        }
        debug!(room = %self.tag, "room actor stopped");
    }

    /// When the actor next has something to do on its own: retire when empty, or
    /// hibernate when live, quiet and hibernation is on.
    fn deadline(&self) -> Option<Instant> {
        if self.links.is_empty() {
            return Some(self.last_event + self.ctx.idle_exit);
        }
        match (self.state.live(), self.ctx.hibernate_after) {
            (Some(_), Some(after)) => Some(self.last_event + after),
            _ => None,
        }
    }

    /// Sets the timer from the room, after anything that may have changed it: a hello
    /// deadline, or a batch to flush (`Room::next_deadline`).
    ///
    /// A hibernated room keeps the timer it had (its hello deadlines: `hibernate`
    /// flushed every batch), and when it fires, `tick` restores the room as any event
    /// would: the Durable Object's alarm wakes it the same way. That is simpler than
    /// keeping such a room awake (no special case in `deadline`, nothing to re-check when
    /// a hello arrives) and still correct, since nothing changes a dropped room's
    /// deadlines: any event restores it first.
    fn arm_timer(&mut self) {
        self.due = match self.state.live() {
            Some(room) => room.next_deadline().map(instant_at),
            None if !self.links.is_empty() => self.due,
            // No connections (or storage failed and closed them): nothing to time.
            None => None,
        };
    }

    /// A deadline passed: the handler closes the connections still unnamed, or flushes
    /// a batch. Waking a hibernated room does not count as activity, so a room with nothing
    /// else to do goes back to sleep on its usual schedule.
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
    fn try_retire(&mut self, joins: &mut mpsc::UnboundedReceiver<Arrival>) -> bool {
        let mut waiting = None;
        let retired = self.registry.retire_if(&self.name, self.id, &mut || {
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
        if let Some(arrival) = waiting {
            self.arrive(arrival);
        }
        retired
    }

    /// Handles the joins and events already waiting (at most [`MAX_GATHER`]), so that
    /// they share the coming commit.
    fn gather(
        &mut self,
        joins: &mut mpsc::UnboundedReceiver<Arrival>,
        events: &mut mpsc::Receiver<Event>,
    ) {
        for _ in 0..MAX_GATHER {
            if let Ok(arrival) = joins.try_recv() {
                self.arrive(arrival);
            } else if let Ok(event) = events.try_recv() {
                self.event(event, joins);
            } else {
                break;
            }
        }
    }

    /// Commits what the room stored, then sends what was held for it. If the commit
    /// fails, nothing held goes out: the room cannot tell which of its messages are on
    /// disk, so it closes every connection with [`Close::Internal`] (clients reconnect
    /// and resume) and reopens from storage on the next event. A message that is stored
    /// but was never sent reaches clients then, in their backlog; a seq that is not
    /// stored was seen by no one, so it is free to be used again.
    async fn commit(&mut self) {
        let committed = self.committer.commit().await;
        match committed {
            Ok(()) => {
                let held = self.held.release();
                self.deliver(held, now_ms());
                for (reply, answer) in self.replies.drain(..) {
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                // Whether the published messages are on disk is unknown: the publisher
                // retries (with its cid, the retry is stored once).
                for (reply, _) in self.replies.drain(..) {
                    let _ = reply.send(PublishAnswer::refused(ErrorKind::NotStored));
                }
                let dropped = self.held.discard();
                warn!(room = %self.tag, error = %e, frames = dropped,
                      "commit failed; closing the room's connections");
                for (_, link) in self.links.drain() {
                    link.close(Close::Internal);
                }
                self.state.discard();
            }
        }
    }

    /// Hibernates the room (see [`HibernatingRoom::hibernate`]). Frames pending for
    /// batch sessions live only in the room, so they go out first. (A Durable Object
    /// is not evicted with any pending: its flush timer keeps it in memory. Here the
    /// hibernation delay may be shorter than the batch window.) Nothing is uncommitted
    /// here: every event's stores are committed before the actor waits again.
    fn hibernate(&mut self) {
        let now = now_ms();
        let Some(room) = self.state.live_mut() else {
            return;
        };
        let flushed = room.flush(now);
        // What is left to time are hello deadlines, which the dropped room keeps.
        self.due = room.next_deadline().map(instant_at);
        self.apply(flushed, now);
        self.state.hibernate();
    }

    /// The live room, rebuilt if it hibernated (see [`HibernatingRoom::room`]). `None`
    /// if storage cannot be opened; every connection has been closed then.
    fn room(&mut self) -> Option<&mut Room<RoomStorage>> {
        self.state.room(&mut self.links)
    }

    fn arrive(&mut self, arrival: Arrival) {
        match arrival {
            Arrival::Join(join) => self.join(join),
            Arrival::Publish(publish) => self.publish(publish),
        }
    }

    /// A server-side publish: the room answers it; the answer waits for the commit of
    /// what it stored, as the broadcast does, so a 201 is never given for a message a
    /// crash could take back.
    fn publish(&mut self, publish: Publish) {
        self.last_event = Instant::now();
        let Publish {
            authorization,
            body,
            reply,
        } = publish;
        let now = now_ms();
        let room = if self.shutting_down {
            None
        } else {
            self.room()
        };
        let Some(room) = room else {
            let _ = reply.send(PublishAnswer::refused(ErrorKind::NotStored));
            return;
        };
        let (answer, actions) = room.publish(authorization.as_deref(), &body, now);
        self.apply(actions, now);
        if self.held.awaiting_commit() {
            self.replies.push((reply, answer));
        } else {
            let _ = reply.send(answer);
        }
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
        // A refusal is actions too (its error frame, then its close), carried out
        // like any others: the link is the room's until then.
        let actions = room.connect(join.conn, join.peer, now);
        debug!(room = %self.tag, conn = join.conn, "connection opened");
        self.links.insert(join.conn, join.link);
        self.apply(actions, now);
    }

    fn event(&mut self, event: Event, joins: &mut mpsc::UnboundedReceiver<Arrival>) {
        let conn = event.conn();
        if !self.links.contains_key(&conn) {
            // A connection is joined before it reports anything, but joins and events
            // come through two channels, and `select!` polls one, then the other: a
            // join that arrives between the two polls is still waiting when the
            // connection's first frame (its hello, sent after the join) is taken. Its
            // join is in the inbox by now, so take the waiting joins first. Without
            // this the hello reached a room that did not know the connection, which
            // dropped it, and the client waited out its hello deadline (10 s) to be
            // closed: the "stall" of `joins_racing_a_retiring_actor_are_never_lost`.
            while let Ok(arrival) = joins.try_recv() {
                self.arrive(arrival);
            }
        }
        self.last_event = Instant::now();
        let now = now_ms();
        if let Event::Disconnect { conn } | Event::Leave { conn, .. } = &event {
            if self.links.remove(conn).is_some() {
                debug!(room = %self.tag, conn, "disconnected");
            }
        }
        let (actions, done) = match self.room() {
            None => (Vec::new(), None),
            Some(room) => match event {
                Event::Text { conn, text } => (room.on_text(conn, &text, now), None),
                Event::Binary { conn, len } => (room.on_binary(conn, len, now), None),
                Event::TooBig { conn } => (room.on_too_big(conn, now), None),
                Event::Kick { conn, close } => (room.kick(conn, close, now), None),
                Event::Disconnect { conn } => (room.disconnect(conn, now), None),
                Event::Leave { conn, done } => (room.disconnect(conn, now), Some(done)),
            },
        };
        self.apply(actions, now);
        // The quit is queued for every member (or held, in order, for the commit):
        // the connection may answer its client's close now.
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// Carries out the handler's actions in order, up to a commit barrier; holds the
    /// rest (and everything while a commit is awaited) until the commit.
    fn apply(&mut self, actions: Vec<Action>, now: u64) {
        let ready = self.held.split(actions);
        self.deliver(ready, now);
    }

    /// Carries out actions in order. Kicking a slow consumer produces more actions (its
    /// close, its quit), which run after the current ones.
    fn deliver(&mut self, actions: Vec<Action>, now: u64) {
        let mut todo: VecDeque<Action> = actions.into();
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
                Action::Broadcast { to, frame } => {
                    // One encoding and one buffer for every recipient.
                    let bytes = frame_bytes(&frame);
                    for id in to.iter() {
                        if let Some(link) = self.links.get(id) {
                            if let Queued::Full = link.send(bytes.clone()) {
                                slow.push(*id);
                            }
                        }
                    }
                }
                Action::Close { conn, close } => {
                    if let Some(link) = self.links.remove(&conn) {
                        debug!(room = %self.tag, conn, ?close, "closing");
                        link.close(close);
                    }
                }
                // The moderator action, already in the room's audit table, as one JSON
                // line under its own target (`RUST_LOG=edge_chat::audit=info` keeps it).
                Action::Audit { line } => info!(target: "edge_chat::audit", "{line}"),
                // Only the Durable Object persists sessions as they change; here they
                // are serialized when the room hibernates.
                Action::Save { .. } => {}
                // Never here: `HeldActions::split` takes the barriers out of what it
                // lets through (a slow consumer's kick goes through it too).
                Action::Commit => {}
            }
            if !slow.is_empty() {
                if let Some(room) = self.state.live_mut() {
                    for conn in slow.drain(..) {
                        info!(room = %self.tag, conn, "closing slow consumer");
                        let kicked = room.kick(conn, Close::SlowConsumer, now);
                        todo.extend(self.held.split(kicked));
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
        // Pending batches first: everything the room said before the shutdown arrives,
        // as it would have unbatched.
        let now = now_ms();
        if let Some(room) = self.state.live_mut() {
            let flushed = room.flush(now);
            self.apply(flushed, now);
        }
        let count = self.links.len();
        for (_, link) in self.links.drain() {
            link.close(Close::GoingAway);
        }
        if self.state.has_sessions() {
            if let Some(room) = self.room() {
                let ids: Vec<ConnId> = room.sessions().map(|s| s.id()).collect();
                for id in ids {
                    // Links are gone, so the resulting actions have no one to reach.
                    let _ = room.kick(id, Close::GoingAway, now);
                }
            }
        }
        if count > 0 {
            info!(room = %self.tag, connections = count, "room closed for shutdown");
        }
    }
}
