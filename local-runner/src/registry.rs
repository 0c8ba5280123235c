//! The map from room name to its actor. Touched only when a connection opens (and when
//! an idle actor retires), never per message: after joining, a connection talks to its
//! room actor through the channel it got back.
//!
//! The registry starts actors (`room_actor::spawn`) and is what they retire from
//! (`room_actor::Retire`), so it depends on the actor and never the other way round.

use crate::open_limit::OpenLimit;
use crate::room_actor::{self, Retire, RoomContext};
use crate::room_inbox::{Arrival, Event, Join, Publish, RoomHandle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::mpsc;

struct Inner {
    rooms: HashMap<String, RoomHandle>,
    next_id: u64,
    shutting_down: bool,
    /// Who may start rooms that are not open.
    opens: OpenLimit,
}

/// Why a connection may not open its room.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The address opened too many rooms lately: the milliseconds until it may again.
    TooManyOpens(u64),
    /// Storage holds `--max-rooms-stored` rooms, and this one is not among them.
    StorageFull,
    /// The server is shutting down (a publish only: a join gets its close).
    ShuttingDown,
}

/// All rooms of this process.
pub(crate) struct Rooms {
    inner: Mutex<Inner>,
    /// Shared with every actor.
    ctx: Arc<RoomContext>,
}

impl Rooms {
    pub(crate) fn new(ctx: RoomContext) -> Arc<Self> {
        Arc::new(Rooms {
            inner: Mutex::new(Inner {
                rooms: HashMap::new(),
                next_id: 1,
                shutting_down: false,
                opens: OpenLimit::new(&ctx.config),
            }),
            ctx: Arc::new(ctx),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing under this lock can leave the map half-updated, so a poisoned lock
        // (a panic elsewhere while holding it) is still safe to use.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides, before the upgrade, whether a connection from client address `addr` may
    /// enter `room`: always if the room is open (has an actor), else if storage may
    /// keep it (it is stored, or `--max-rooms-stored` is not reached) and the address
    /// has a room opening left (`room_open_burst`; a refusal for storage charges
    /// none). A room whose actor retires between this check and the join is reopened
    /// without a charge: a narrow race, worth at most one room per admitted connection.
    pub(crate) fn admit(&self, room: &str, addr: &str, now_ms: u64) -> Result<(), Refused> {
        let mut inner = self.lock();
        if inner.rooms.contains_key(room) {
            return Ok(());
        }
        if !self.ctx.store.stored_rooms().may_open(room) {
            return Err(Refused::StorageFull);
        }
        inner
            .opens
            .charge(addr, now_ms)
            .map_err(Refused::TooManyOpens)
    }

    /// Hands the connection to its room's actor, starting one if needed. Returns the
    /// room's event inbox, or the join back if the server is shutting down.
    pub(crate) fn join(
        self: &Arc<Self>,
        room: &str,
        join: Join,
    ) -> Result<mpsc::Sender<Event>, Join> {
        match self.enter(room, Arrival::Join(join)) {
            Ok(events) => Ok(events),
            Err(Arrival::Join(join)) => Err(join),
            // Never: what is given back is what was given.
            Err(Arrival::Publish(_)) => unreachable!("a join comes back as a join"),
        }
    }

    /// Hands a publish to its room's actor, starting one if needed; `Err` gives it back
    /// when the server is shutting down, or when the room is not open and storage may
    /// not keep another (`--max-rooms-stored`). Unlike a connection, a publish is not
    /// charged a room opening: it carries a verified service token, checked before.
    pub(crate) fn publish(self: &Arc<Self>, room: &str, publish: Publish) -> Result<(), Refused> {
        {
            let inner = self.lock();
            if !inner.rooms.contains_key(room) && !self.ctx.store.stored_rooms().may_open(room) {
                return Err(Refused::StorageFull);
            }
        }
        self.enter(room, Arrival::Publish(publish))
            .map(drop)
            .map_err(|_| Refused::ShuttingDown)
    }

    /// The join secret of every room, for the checks made before a room is entered.
    pub(crate) fn auth_secret(&self) -> Option<&chat_handler::AuthSecret> {
        self.ctx.auth_secret.as_ref()
    }

    fn enter(
        self: &Arc<Self>,
        room: &str,
        arrival: Arrival,
    ) -> Result<mpsc::Sender<Event>, Arrival> {
        let mut inner = self.lock();
        if inner.shutting_down {
            return Err(arrival);
        }
        let arrival = match inner.rooms.get(room) {
            Some(handle) => match handle.joins.send(arrival) {
                Ok(()) => return Ok(handle.events.clone()),
                // The actor closed its inbox to retire but has not removed its entry
                // yet (it will not: the entry is ours to replace now).
                Err(mpsc::error::SendError(arrival)) => arrival,
            },
            None => arrival,
        };
        let id = inner.next_id;
        inner.next_id += 1;
        let handle = room_actor::spawn(self.ctx.clone(), self.clone(), room.to_owned(), id);
        let events = handle.events.clone();
        let sent = handle.joins.send(arrival);
        inner.rooms.insert(room.to_owned(), handle);
        self.ctx.metrics.set_rooms(inner.rooms.len());
        // A brand-new actor's inbox is open; should it not be, give the arrival back.
        sent.map(|()| events).map_err(|e| e.0)
    }

    /// Refuses new joins from now on; actors see `ctx.shutdown` and close their sockets.
    pub(crate) fn begin_shutdown(&self) {
        self.lock().shutting_down = true;
    }

    /// Rooms with a running actor.
    pub(crate) fn active_rooms(&self) -> usize {
        self.lock().rooms.len()
    }
}

impl Retire for Rooms {
    /// `check` runs under the lock that [`Rooms::join`] sends joins under, so an actor
    /// that finds its inbox empty there and closes it cannot lose a join.
    fn retire_if(&self, room: &str, id: u64, check: &mut dyn FnMut() -> bool) -> bool {
        let mut inner = self.lock();
        if !check() {
            return false;
        }
        if inner.rooms.get(room).is_some_and(|h| h.id == id) {
            inner.rooms.remove(room);
            self.ctx.metrics.set_rooms(inner.rooms.len());
        }
        true
    }
}
