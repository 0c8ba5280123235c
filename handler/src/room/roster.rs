//! The v2 roster of a big room, in pages.
//!
//! A v2 joiner used to get every member in one `roster` frame: a fill of 10,000 sent
//! each joiner the whole list, quadratic bytes. Now a joiner with at most
//! `roster_inline_max` other members gets them as before; past it, the first page plus
//! the count and a cursor, and it asks for the rest with `{"members": {"after", "limit"}}`.
//!
//! **Order and cursor.** Every member gets a *rank* at its hello: one more than the
//! highest rank among the members present. Pages list members by rank, and a cursor is
//! the rank of the last member a page listed, as decimal text. So:
//! - a member present during the whole paging keeps its rank and is listed exactly once;
//! - the rank lives in the session (a Durable Object's socket attachment), so a rebuilt
//!   room ([`crate::Room::restore`]) pages on exactly where it was;
//! - it names no connection and no address, only a place in the join order;
//! - a session's pages hold only members ranked below it (present before its hello);
//!   members who join later reach it as `joined` frames, which pages never repeat.
//!
//! **Quits while paging.** Names are not unique, and a `quit` carries only a name, so a
//! client cannot tell whether a `quit "al"` is for an "al" it was listed or for one its
//! pages have not reached (and now never will). The room knows: each session with an
//! unfinished paged roster keeps the rank it was listed through
//! (`Session::listed_through`), and when a member it has not been listed quits, it
//! gets `{"members": {"unlisted": name}}` right after the `quit`. A client thus keeps
//! a count per name: `+1` for each page entry, `joined` and `unlisted`, `-1` for each
//! `quit`; once its pages are done, the counts are the room's roster exactly.

use crate::protocol::server_frame::{Frame, MemberPage, RosterEntry, ServerFrame, UnlistedMember};
use crate::room::session::{ConnId, Session};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// The members in join order, and the sessions whose paged roster is unfinished.
/// Rebuilt from the sessions when a room is restored; nothing here is stored apart.
#[derive(Debug, Default)]
pub(crate) struct Roster {
    by_rank: BTreeMap<u64, Member>,
    paging: BTreeSet<ConnId>,
}

/// A member in the roster: its session, and its `{"joined": name}` frame, encoded once
/// at its join. A v1 joiner gets every member's (`Roster::joined_frames`): in a room
/// filling up that is quadratic in frames, so they are shared, not encoded per joiner.
#[derive(Debug)]
struct Member {
    id: ConnId,
    joined: Frame,
}

impl Roster {
    /// The roster of restored sessions. A joined session without a rank (saved before
    /// ranks existed) gets the next one, in connection order: deterministic, and only
    /// such a session's order among its peers is new.
    pub(crate) fn rebuild(sessions: &mut BTreeMap<ConnId, Session>) -> Roster {
        let mut roster = Roster::default();
        let mut unranked = Vec::new();
        for s in sessions.values() {
            match (s.is_joined(), s.rank) {
                (false, _) => {}
                // Two sessions never share a rank; should saved state say otherwise,
                // the second gets a new one rather than hide the first from pages.
                (true, rank) if rank == 0 || roster.by_rank.contains_key(&rank) => {
                    unranked.push(s.id)
                }
                (true, _) => roster.insert(s),
            }
        }
        for id in unranked {
            let rank = roster.next_rank();
            if let Some(s) = sessions.get_mut(&id) {
                s.rank = rank;
                roster.insert(s);
            }
        }
        roster
    }

    /// Lists `s` under its rank (encoding its `joined` frame unless it is listed
    /// already) and notes whether it is paging.
    fn insert(&mut self, s: &Session) {
        let listed = self.by_rank.get(&s.rank).is_some_and(|m| m.id == s.id);
        if !listed {
            let joined = joined_frame(s.name.as_deref().unwrap_or_default());
            self.by_rank.insert(s.rank, Member { id: s.id, joined });
        }
        if s.listed_through.is_some() {
            self.paging.insert(s.id);
        }
    }

    /// `session` joined, announced to the room with `joined` (its `{"joined": name}`,
    /// kept for later v1 joiners).
    pub(crate) fn add(&mut self, session: &Session, joined: Frame) {
        self.by_rank.insert(
            session.rank,
            Member {
                id: session.id,
                joined,
            },
        );
        self.update(session);
    }

    /// Every member's `{"joined": name}`, in join order: a v1 joiner's roster.
    pub(crate) fn joined_frames(&self) -> impl Iterator<Item = &Frame> {
        self.by_rank.values().map(|m| &m.joined)
    }

    /// The rank the next joiner gets: above every member present, so it never falls
    /// inside any session's pages (which hold only ranks below that session's own).
    pub(crate) fn next_rank(&self) -> u64 {
        self.by_rank
            .last_key_value()
            .map_or(1, |(rank, _)| rank.saturating_add(1))
    }

    /// `session` changed its paging state (or joined, through [`Roster::add`]).
    pub(crate) fn update(&mut self, session: &Session) {
        self.insert(session);
        if session.listed_through.is_none() {
            self.paging.remove(&session.id);
        }
    }

    /// The session left the room.
    pub(crate) fn remove(&mut self, session: &Session) {
        if self.by_rank.get(&session.rank).map(|m| m.id) == Some(session.id) {
            self.by_rank.remove(&session.rank);
        }
        self.paging.remove(&session.id);
    }

    /// Up to `limit` members ranked strictly between `after` and `below`, in rank
    /// order, and whether more follow.
    fn page<'s>(
        &self,
        sessions: &'s BTreeMap<ConnId, Session>,
        after: u64,
        below: u64,
        limit: usize,
    ) -> (Vec<(u64, &'s Session)>, bool) {
        if after >= below {
            // An empty range (and `BTreeMap::range` refuses an inverted one).
            return (Vec::new(), false);
        }
        let mut members = self
            .by_rank
            .range((Bound::Excluded(after), Bound::Excluded(below)))
            .filter_map(|(rank, m)| Some((*rank, sessions.get(&m.id)?)))
            .take(limit.saturating_add(1));
        let page: Vec<_> = members.by_ref().take(limit).collect();
        let more = members.next().is_some();
        (page, more)
    }

    /// The roster frame for a v2 joiner of rank `rank` with `others` members present,
    /// and the rank it is listed through when its roster is paged (`None`: sent whole).
    pub(crate) fn join_frame(
        &self,
        sessions: &BTreeMap<ConnId, Session>,
        rank: u64,
        others: usize,
        inline_max: usize,
    ) -> (Frame, Option<u64>) {
        // At least one entry, so that "more" always comes with a cursor (a validated
        // config has `roster_inline_max` ≥ 1 anyway).
        let (page, more) = self.page(sessions, 0, rank, inline_max.max(1));
        let last = page.last().map(|(r, _)| *r);
        let roster = page.into_iter().map(|(_, s)| entry(s)).collect();
        match (more, last) {
            (true, Some(last)) => (
                ServerFrame::RosterPage {
                    roster,
                    count: others as u64,
                    next: last.to_string(),
                }
                .encode(),
                Some(last),
            ),
            _ => (ServerFrame::Roster { roster }.encode(), None),
        }
    }

    /// The answer to `{"members": {"after", "limit"}}` from `session` in a room of
    /// `others` other members, and the session's paging state after it.
    pub(crate) fn members_page(
        &self,
        sessions: &BTreeMap<ConnId, Session>,
        session: &Session,
        after: Option<u64>,
        limit: usize,
        others: usize,
    ) -> (Frame, Option<u64>) {
        let (page, more) = self.page(sessions, after.unwrap_or(0), session.rank, limit);
        let last = page.last().map(|(r, _)| *r);
        let next = last.filter(|_| more);
        let listed_through = match (session.listed_through, next) {
            // Paged to its end: nothing is left unlisted.
            (_, None) => None,
            (Some(through), Some(next)) => Some(through.max(next)),
            (None, Some(_)) => None,
        };
        let frame = ServerFrame::Members {
            members: MemberPage {
                page: page.into_iter().map(|(_, s)| entry(s)).collect(),
                count: others as u64,
                next: next.map(|n| n.to_string()),
            },
        }
        .encode();
        (frame, listed_through)
    }

    /// The sessions that must hear `{"members": {"unlisted": name}}` now that `gone`
    /// (already removed from the room) has left: those paging a roster that has not
    /// listed it yet, and would have.
    pub(crate) fn unlisted_to(
        &self,
        sessions: &BTreeMap<ConnId, Session>,
        gone: &Session,
    ) -> Vec<ConnId> {
        self.paging
            .iter()
            .filter_map(|id| sessions.get(id))
            .filter(|p| {
                p.listed_through
                    .is_some_and(|through| through < gone.rank && gone.rank < p.rank)
            })
            .map(|p| p.id)
            .collect()
    }
}

/// `{"joined": name}`.
pub(crate) fn joined_frame(name: &str) -> Frame {
    ServerFrame::Joined { joined: name }.encode()
}

/// `{"members": {"unlisted": name}}`.
pub(crate) fn unlisted_frame(name: &str) -> Frame {
    ServerFrame::Unlisted {
        members: UnlistedMember { unlisted: name },
    }
    .encode()
}

/// A member as a roster entry: its name, and for a verified session its user and role.
fn entry(s: &Session) -> RosterEntry<'_> {
    let verified = s.verified.as_ref();
    RosterEntry {
        name: s.name.as_deref().unwrap_or_default(),
        user: verified.map(|v| v.user.as_str()),
        role: verified.and_then(|v| v.role),
    }
}
