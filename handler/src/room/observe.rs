//! What happens in a room, reported as it happens, so that every backend counts the
//! same things the same way (the local runner's `/metrics`, the Worker's JSON log lines)
//! without reading its own frames back.
//!
//! A backend gives the room an [`Observer`] ([`Room::set_observer`]); the room calls it
//! synchronously at the moment of each [`Event`]. The handler stays sans-IO: what an
//! observer does (bump a counter, print a line) is the backend's business, and a room
//! without one reports to [`Unobserved`].
//!
//! Closes are not events. Each is either an [`Action::Close`] or a [`Close`] a backend
//! issues on its own (shutdown, unreadable storage, a refused connection), so a backend
//! counts them where it closes sockets, which sees all of them.
//!
//! [`Room::set_observer`]: crate::Room::set_observer
//! [`Action::Close`]: crate::Action::Close
//! [`Close`]: crate::Close

use crate::protocol::error_kind::ErrorKind;
use crate::room::session::ConnId;

/// Something a backend may want to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An `{"error": …}` frame went to `conn`. The session may stay open; if it is also
    /// closed, that close is its own action.
    Rejected { conn: ConnId, kind: ErrorKind },
    /// `conn` joined: its `ready` is on its way.
    Joined { conn: ConnId, outcome: JoinOutcome },
    /// A chat message from `conn` was stored as `seq` and broadcast to `recipients`
    /// members (the sender included).
    Stored {
        conn: ConnId,
        seq: u64,
        recipients: usize,
    },
    /// A server-side publish was stored as `seq` and broadcast to `recipients` members.
    Published { seq: u64, recipients: usize },
}

/// How a join went, as its `ready` frame tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinOutcome {
    /// No resume asked: the joiner got the last `backlog` messages.
    Fresh,
    /// A resume filled the exact gap (`recovered: true`).
    Recovered,
    /// A resume could not be honoured (another epoch, a gap over `resume_max` or
    /// pruned): the joiner got the last `backlog` messages (`recovered: false`).
    NotRecovered,
}

impl JoinOutcome {
    /// Every outcome, for tables and for series that should exist from the start.
    pub const ALL: [JoinOutcome; 3] = [
        JoinOutcome::Fresh,
        JoinOutcome::Recovered,
        JoinOutcome::NotRecovered,
    ];

    /// A stable snake_case name, for metric labels and log fields.
    pub const fn label(self) -> &'static str {
        match self {
            JoinOutcome::Fresh => "fresh",
            JoinOutcome::Recovered => "recovered",
            JoinOutcome::NotRecovered => "not_recovered",
        }
    }
}

/// Receives a room's [`Event`]s. `Send`, because the local runner moves rooms between
/// threads; it is called inside the room's event handlers, so it must be quick and must
/// not call back into the room.
pub trait Observer: Send {
    fn observe(&mut self, event: Event);
}

/// The observer of a room whose backend has not set one: it drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl Observer for Unobserved {
    fn observe(&mut self, _event: Event) {}
}

/// A closure observes too, which is handy in tests.
impl<F: FnMut(Event) + Send> Observer for F {
    fn observe(&mut self, event: Event) {
        self(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn labels_are_distinct_snake_case() {
        let labels: HashSet<&str> = JoinOutcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(labels.len(), JoinOutcome::ALL.len());
        for l in labels {
            assert!(
                l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{l}"
            );
        }
    }
}
