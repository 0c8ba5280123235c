//! The hello deadlines of the connections that have not sent their hello, kept in the
//! order they fall due, so the room's next deadline is the first entry rather than a
//! walk over every session after every event (in a room of 10,000 members that walk
//! was about 5 % of a join storm's CPU on the local runner).
//!
//! Entries are not removed at the hello or the close (the join and close paths stay as
//! they are): an entry is live while its session is still there, still without a hello,
//! and opened at the entry's time; the others are stale and are dropped once they reach
//! the front ([`HelloDeadlines::prune`], after every event). An entry behind a live one
//! waits at most `hello_timeout_ms` for that one to fall due, so the set holds no more
//! than the connections opened within one timeout.

use crate::room::session::{ConnId, Session};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub(crate) struct HelloDeadlines {
    /// `(opened_ms, conn)`: ordered by opening time, so by deadline.
    by_open: BTreeSet<(u64, ConnId)>,
}

fn live(sessions: &BTreeMap<ConnId, Session>, (opened, conn): (u64, ConnId)) -> bool {
    sessions
        .get(&conn)
        .is_some_and(|s| !s.is_joined() && s.opened_ms == opened)
}

impl HelloDeadlines {
    /// A connection opened without a hello yet (or was rebuilt so).
    pub(crate) fn add(&mut self, session: &Session) {
        if !session.is_joined() {
            self.by_open.insert((session.opened_ms, session.id));
        }
    }

    /// The opening time of the earliest connection still owing its hello.
    pub(crate) fn earliest(&self, sessions: &BTreeMap<ConnId, Session>) -> Option<u64> {
        // Stale entries are pruned after every event, so this finds the live one at
        // once, or after the few that changed since.
        self.by_open
            .iter()
            .find(|e| live(sessions, **e))
            .map(|(opened, _)| *opened)
    }

    /// Drops stale entries from the front.
    pub(crate) fn prune(&mut self, sessions: &BTreeMap<ConnId, Session>) {
        while let Some(first) = self.by_open.first().copied() {
            if live(sessions, first) {
                break;
            }
            self.by_open.pop_first();
        }
    }

    /// Takes out the connections whose deadline (`opened_ms + timeout_ms`) has come by
    /// `now_ms`, in connection order.
    pub(crate) fn take_due(
        &mut self,
        sessions: &BTreeMap<ConnId, Session>,
        timeout_ms: u64,
        now_ms: u64,
    ) -> Vec<ConnId> {
        let mut due = Vec::new();
        while let Some(first) = self.by_open.first().copied() {
            let (opened, conn) = first;
            if live(sessions, first) {
                if now_ms < opened.saturating_add(timeout_ms) {
                    break;
                }
                due.push(conn);
            }
            self.by_open.pop_first();
        }
        due.sort_unstable();
        due
    }

    /// Entries held, stale ones included (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::session::Peer;

    fn session(id: ConnId, opened: u64) -> Session {
        Session::new(
            id,
            Peer {
                addr: "10.0.0.1".into(),
            },
            opened,
        )
    }

    #[test]
    fn the_earliest_live_deadline_across_connect_hello_and_close() {
        let mut sessions = BTreeMap::new();
        let mut d = HelloDeadlines::default();
        for (id, opened) in [(1, 100), (2, 50), (3, 200)] {
            let s = session(id, opened);
            d.add(&s);
            sessions.insert(id, s);
        }
        assert_eq!(d.earliest(&sessions), Some(50));
        // 2 sends its hello: 1 is next.
        sessions.get_mut(&2).unwrap().name = Some("bob".into());
        assert_eq!(d.earliest(&sessions), Some(100));
        d.prune(&sessions);
        assert_eq!(d.len(), 2, "the joined one's entry is gone from the front");
        // 1 closes: 3 is next.
        sessions.remove(&1);
        assert_eq!(d.earliest(&sessions), Some(200));
        // An id back with a later opening is a new connection: the old entry is stale.
        let again = session(1, 300);
        d.add(&again);
        sessions.insert(1, again);
        assert_eq!(d.take_due(&sessions, 1000, 1199), Vec::<ConnId>::new());
        assert_eq!(d.take_due(&sessions, 1000, 1200), vec![3]);
        assert_eq!(d.earliest(&sessions), Some(300));
        assert_eq!(d.take_due(&sessions, 1000, u64::MAX), vec![1]);
        assert_eq!(d.earliest(&sessions), None);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn due_connections_come_in_connection_order_and_joined_ones_never() {
        let mut sessions = BTreeMap::new();
        let mut d = HelloDeadlines::default();
        for (id, opened) in [(9, 10), (4, 20), (7, 30)] {
            let s = session(id, opened);
            d.add(&s);
            sessions.insert(id, s);
        }
        sessions.get_mut(&4).unwrap().name = Some("d".into());
        assert_eq!(d.take_due(&sessions, 5, 100), vec![7, 9]);
        assert_eq!(d.len(), 0);
    }
}
