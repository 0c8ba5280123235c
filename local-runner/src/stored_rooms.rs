//! The bound on rooms kept in storage (`--max-rooms-stored`). Each room with history
//! keeps up to `retention` messages for good, and one address may open a room a second
//! (`room_open_per_sec`), so without a bound on the number of rooms the database (or,
//! with `--in-memory`, the process) would grow for as long as someone keeps opening
//! rooms and writing one message in each.
//!
//! A room counts once it has stored its epoch, which it does with its first message (a
//! room without history stores nothing). Once the bound is reached:
//!
//! - an upgrade that would open a room that is neither open nor stored is refused before
//!   the upgrade ([`StoredRooms::may_open`], checked by the registry), with the
//!   handler's `STORAGE_FULL` (507);
//! - should a room that opened before that store its first message afterwards, its
//!   epoch is refused here ([`StoredRooms::mark`], called by the room's storage in
//!   `storage_thread`), so the handler
//!   answers that message with its not-stored error: the bound is never passed.
//!
//! Rooms already stored keep working, messages and all. The names are kept in memory
//! (loaded from the database at start), so a check costs no I/O.

use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub(crate) struct StoredRooms {
    max: usize,
    rooms: Mutex<HashSet<String>>,
    /// `edge_chat_storage_rooms`.
    gauge: Gauge,
}

impl StoredRooms {
    /// `rooms`: the rooms storage holds already. The gauge is kept at their number.
    pub(crate) fn new(max: usize, rooms: HashSet<String>, gauge: Gauge) -> Arc<Self> {
        gauge.set(i64::try_from(rooms.len()).unwrap_or(i64::MAX));
        Arc::new(StoredRooms {
            max,
            rooms: Mutex::new(rooms),
            gauge,
        })
    }

    /// No bound (tests).
    #[cfg(test)]
    pub(crate) fn unbounded() -> Arc<Self> {
        Self::new(usize::MAX, HashSet::new(), Gauge::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        // Each change is one insert, so a poisoned lock still holds a whole set.
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `room` may be opened: it is stored already, or there is room for one
    /// more.
    pub(crate) fn may_open(&self, room: &str) -> bool {
        let rooms = self.lock();
        rooms.contains(room) || rooms.len() < self.max
    }

    /// Counts `room` as stored, unless that would pass the bound (then `false`, and the
    /// room must not store its epoch).
    pub(crate) fn mark(&self, room: &str) -> bool {
        let mut rooms = self.lock();
        if rooms.contains(room) {
            return true;
        }
        if rooms.len() >= self.max {
            return false;
        }
        rooms.insert(room.to_owned());
        self.gauge
            .set(i64::try_from(rooms.len()).unwrap_or(i64::MAX));
        true
    }

    /// Rooms stored.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_rooms_stay_open_and_new_ones_stop_at_the_bound() {
        let gauge = Gauge::default();
        let rooms = StoredRooms::new(2, HashSet::from(["old".to_owned()]), gauge.clone());
        assert_eq!(gauge.get(), 1);
        assert!(rooms.may_open("new"));
        assert!(rooms.mark("new"));
        assert!(rooms.mark("new"), "marking twice is the same room");
        assert_eq!((rooms.count(), gauge.get()), (2, 2));
        assert!(!rooms.may_open("third"));
        assert!(!rooms.mark("third"));
        assert!(rooms.may_open("old") && rooms.may_open("new"));
        assert_eq!(rooms.count(), 2);
    }
}
