//! The map from room name to its actor. Touched only when a connection opens (and when
//! an idle actor retires), never per message: after joining, a connection talks to its
//! room actor through the channel it got back.

use crate::link::ConnLink;
use crate::room_actor::{self, Event};
use crate::store::StoreFactory;
use chat_handler::{AuthSecret, Config, ConnId, Peer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A connection asking to enter a room.
pub struct Join {
    pub conn: ConnId,
    pub peer: Peer,
    pub link: ConnLink,
}

/// Everything a room actor needs besides its name.
pub struct RoomContext {
    pub config: Config,
    /// Verifies join tokens when set (`--auth-secret-file`, `EDGE_CHAT_AUTH_SECRET`).
    pub auth_secret: Option<AuthSecret>,
    pub store: StoreFactory,
    /// `Some` emulates Durable Object hibernation after this much quiet.
    pub hibernate_after: Option<Duration>,
    /// How long an empty room's actor lingers before it retires.
    pub idle_exit: Duration,
    /// Becomes `true` when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// A running actor's inboxes. Joins get an unbounded channel of their own so that
/// joining never waits while the registry lock is held; they are bounded in practice
/// by the number of sockets.
#[derive(Clone)]
pub struct RoomHandle {
    /// Tells actors apart, so a retiring actor removes its own entry only.
    pub id: u64,
    pub joins: mpsc::UnboundedSender<Join>,
    pub events: mpsc::Sender<Event>,
}

struct Inner {
    rooms: HashMap<String, RoomHandle>,
    next_id: u64,
    shutting_down: bool,
}

/// All rooms of this process.
pub struct Rooms {
    inner: Mutex<Inner>,
    pub ctx: RoomContext,
}

impl Rooms {
    pub fn new(ctx: RoomContext) -> Arc<Self> {
        Arc::new(Rooms {
            inner: Mutex::new(Inner {
                rooms: HashMap::new(),
                next_id: 1,
                shutting_down: false,
            }),
            ctx,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing under this lock can leave the map half-updated, so a poisoned lock
        // (a panic elsewhere while holding it) is still safe to use.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands the connection to its room's actor, starting one if needed. Returns the
    /// room's event inbox, or the join back if the server is shutting down.
    pub fn join(self: &Arc<Self>, room: &str, join: Join) -> Result<mpsc::Sender<Event>, Join> {
        let mut inner = self.lock();
        if inner.shutting_down {
            return Err(join);
        }
        let join = match inner.rooms.get(room) {
            Some(handle) => match handle.joins.send(join) {
                Ok(()) => return Ok(handle.events.clone()),
                // The actor closed its inbox to retire but has not removed its entry
                // yet (it will not: the entry is ours to replace now).
                Err(mpsc::error::SendError(join)) => join,
            },
            None => join,
        };
        let id = inner.next_id;
        inner.next_id += 1;
        let handle = room_actor::spawn(self.clone(), room.to_owned(), id);
        let events = handle.events.clone();
        let sent = handle.joins.send(join);
        inner.rooms.insert(room.to_owned(), handle);
        // A brand-new actor's inbox is open; should it not be, give the join back.
        sent.map(|()| events).map_err(|e| e.0)
    }

    /// Removes actor `id`'s entry if it is still the registered one, after `check`
    /// (run under the lock) agrees. Joins are sent under the same lock, so an actor
    /// that finds its inbox empty here and closes it cannot lose a join.
    pub fn retire_if(&self, room: &str, id: u64, check: impl FnOnce() -> bool) -> bool {
        let mut inner = self.lock();
        if !check() {
            return false;
        }
        if inner.rooms.get(room).is_some_and(|h| h.id == id) {
            inner.rooms.remove(room);
        }
        true
    }

    /// Refuses new joins from now on; actors see `ctx.shutdown` and close their sockets.
    pub fn begin_shutdown(&self) {
        self.lock().shutting_down = true;
    }

    /// Rooms with a running actor.
    pub fn active_rooms(&self) -> usize {
        self.lock().rooms.len()
    }
}
