//! Batched delivery, for v2 sessions that opted in with `"batch": true`.
//!
//! A batch session gets several server frames in one WebSocket message,
//! `{"batch": [<frame>, …]}`, each frame byte-for-byte what it would have got alone, in
//! the same order. On the edge the number of `send` calls is what costs (see
//! docs/BENCHMARKS.md), so a big room sends one message per member per window instead of
//! one per frame.
//!
//! How frames flow:
//! - Broadcast frames stay [`Action::Broadcast`] for the sessions that take frames one by
//!   one, and are also appended to the room's pending `log` for batch sessions. Each
//!   batch member has a cursor (`start`) into the log: the first pending frame that is
//!   its. A member that joins mid-window starts at the end of the log as it was before
//!   its join event, so it never gets frames from before its join (its roster and
//!   backlog already cover them).
//! - A frame addressed to one batch session (its join burst, an error, any answer to its
//!   own request) goes out at the end of the event that produced it, behind that
//!   session's pending log frames, all in one message: a direct frame never overtakes a
//!   broadcast still pending for its recipient, and a joiner gets its whole join burst
//!   (roster, backlog, own `joined`, `ready`) as one batch.
//! - A session the room closes first gets what was pending for it, then the close.
//! - A flush sends each member the log from its cursor. Members with the same cursor
//!   share ONE encoded message ([`Action::Multicast`]), so a flush costs the bytes of
//!   its distinct batches plus one entry per recipient, never recipients × bytes.
//!
//! When to flush (all times are the room's `now`, so this is deterministic and tested
//! without a clock): the room's window is `w = min(⌈members × 1000 / batch_send_budget⌉,
//! batch_window_ms)` ms, where members counts batch sessions. Pending frames go out at
//! `min(last flush + w, first pending frame + batch_window_ms)`, or at once when
//! `batch_max` frames are pending. Flushes are thus at least `w` apart, which keeps
//! batched sends near `members × 1000 / w ≤ batch_send_budget` per second while the room
//! sends fewer than `batch_max` frames per window; a frame after a quiet spell (no flush
//! within `w`) goes out at once, so a quiet or small room adds no latency.
//!
//! The log lives only in memory. Backends flush it before they drop a room
//! ([`crate::Room::flush`]; a Durable Object keeps a timer pending while anything is
//! pending, which keeps it from hibernating), so a rebuilt room starts with nothing
//! pending and loses nothing.

use crate::config::Config;
use crate::room::{Action, Audience};
use crate::server_frame::Frame;
use crate::session::{ConnId, Session};

/// The opening and closing text of a batch message.
const OPEN: &str = r#"{"batch":["#;
const CLOSE: &str = "]}";

/// The room's batching state. In memory only (see the module comment).
pub(crate) struct Batcher {
    window_max_ms: u64,
    budget: u64,
    max: usize,
    /// Joined v2 sessions with batching on, sorted by id. A sorted `Vec` rather than a
    /// map: lookups are binary searches, a flush walks it in order, and it keeps the
    /// Worker's wasm small; a join or leave moves at most one entry per member, a few
    /// microseconds even in a room of 10,000.
    members: Vec<(ConnId, Member)>,
    /// Members the room forgot during the event being handled, kept until its actions
    /// are routed: a closed session still gets what was pending for it before its close.
    leaving: Vec<(ConnId, Member)>,
    /// Broadcast frames queued since the last flush, oldest first, each with its
    /// audience. At most `batch_max` plus the frames of one event.
    log: Vec<(Frame, Audience)>,
    /// When the oldest frame in `log` was queued; `None` when the log is empty.
    first_at: Option<u64>,
    /// When a flush last sent something; the window counts from here.
    last_flush: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member {
    /// Index in the log of the first frame the member has not been given.
    start: usize,
    /// The audiences ([`Audience::bit`]) the session belongs to, fixed at its join.
    audiences: u8,
}

impl Member {
    fn of(session: &Session, start: usize) -> Self {
        let audiences = Audience::ALL
            .iter()
            .filter(|a| a.includes(session))
            .fold(0, |bits, a| bits | a.bit());
        Member { start, audiences }
    }
}

impl Batcher {
    /// A batcher for a room whose batch sessions (if rebuilt) are `sessions`.
    pub(crate) fn new<'a>(config: &Config, sessions: impl Iterator<Item = &'a Session>) -> Self {
        Batcher {
            window_max_ms: config.batch_window_ms,
            budget: config.batch_send_budget.max(1),
            max: config.batch_max.max(1),
            // The room's sessions come sorted by id.
            members: sessions
                .filter(|s| s.is_batched())
                .map(|s| (s.id, Member::of(s, 0)))
                .collect(),
            leaving: Vec::new(),
            log: Vec::new(),
            first_at: None,
            last_flush: None,
        }
    }

    /// `session` just joined with batching on. Called while its join event is handled,
    /// before that event's actions are routed: the log's current end is where its own
    /// frames start.
    pub(crate) fn add(&mut self, session: &Session) {
        let member = Member::of(session, self.log.len());
        match self.find(session.id) {
            Ok(i) => self.members[i].1 = member,
            Err(i) => self.members.insert(i, (session.id, member)),
        }
    }

    /// The room forgot `conn` (closed or disconnected) during the current event.
    pub(crate) fn remove(&mut self, conn: ConnId) {
        if let Ok(i) = self.find(conn) {
            let (_, member) = self.members.remove(i);
            self.leaving.push((conn, member));
        }
    }

    fn find(&self, conn: ConnId) -> Result<usize, usize> {
        self.members.binary_search_by_key(&conn, |(c, _)| *c)
    }

    /// Batch sessions in the room.
    pub(crate) fn member_count(&self) -> usize {
        self.members.len()
    }

    /// The room's current window: `members × 1000 / budget` ms rounded up (so that
    /// `members` sends per window stay within the budget), at most `batch_window_ms`.
    pub(crate) fn window_ms(&self) -> u64 {
        (self.members.len() as u64)
            .saturating_mul(1000)
            .div_ceil(self.budget)
            .min(self.window_max_ms)
    }

    /// When the pending frames must be flushed; `None` when nothing is pending.
    pub(crate) fn due(&self) -> Option<u64> {
        let first = self.first_at?;
        let by_window = self
            .last_flush
            .map_or(first, |at| at.saturating_add(self.window_ms()));
        // The cap counts from the first pending frame, so a clock that stepped back
        // since the last flush cannot stretch the wait past `batch_window_ms`.
        Some(by_window.min(first.saturating_add(self.window_max_ms)))
    }

    /// True when nothing is pending and the last flush is at least `batch_window_ms`
    /// old: a batcher rebuilt now (empty) would act exactly like this one.
    pub(crate) fn is_idle(&self, now: u64) -> bool {
        self.first_at.is_none()
            && self
                .last_flush
                .is_none_or(|at| now >= at.saturating_add(self.window_max_ms))
    }

    /// Rewrites one event's actions for batch sessions (see the module comment), then
    /// flushes if the window or `batch_max` says so. Without batch sessions the actions
    /// pass through untouched.
    pub(crate) fn route(&mut self, actions: Vec<Action>, now: u64) -> Vec<Action> {
        if self.members.is_empty() && self.leaving.is_empty() {
            self.drop_log();
            return actions;
        }
        let event_start = self.log.len();
        let mut out = Vec::with_capacity(actions.len());
        // Per batch session addressed in this event, in order of first address: what
        // it gets at the end of the event.
        let mut direct: Vec<(ConnId, Vec<Frame>)> = Vec::new();
        for action in actions {
            match action {
                Action::Send { to, frame } => {
                    // A leaving session gets no broadcast of this event (it is not in the
                    // room when the event ends), so its pending frames stop at the
                    // event's start; a member's include this event's so far.
                    let found = self.find(to).ok();
                    let (member, end) = match found.and_then(|i| self.members.get_mut(i)) {
                        Some((_, m)) => (m, self.log.len()),
                        None => match self.leaving.iter_mut().find(|(c, _)| *c == to) {
                            Some((_, m)) => (m, event_start),
                            None => {
                                out.push(Action::Send { to, frame });
                                continue;
                            }
                        },
                    };
                    let frames = entry(&mut direct, to);
                    take(&self.log, member, end, frames);
                    frames.push(frame);
                }
                Action::Broadcast { frame, audience } => {
                    if self.log.is_empty() {
                        self.first_at = Some(now);
                    }
                    self.log.push((frame.clone(), audience));
                    out.push(Action::Broadcast { frame, audience });
                }
                Action::Close { conn, close } => {
                    if let Some(i) = self.leaving.iter().position(|(c, _)| *c == conn) {
                        let (_, mut member) = self.leaving.swap_remove(i);
                        let mut frames = match direct.iter().position(|(c, _)| *c == conn) {
                            Some(j) => direct.swap_remove(j).1,
                            None => Vec::new(),
                        };
                        take(&self.log, &mut member, event_start, &mut frames);
                        self.push_messages(&mut out, vec![conn], &frames);
                    }
                    out.push(Action::Close { conn, close });
                }
                other => out.push(other),
            }
        }
        for (conn, frames) in direct {
            self.push_messages(&mut out, vec![conn], &frames);
        }
        self.leaving.clear();
        if self.members.is_empty() {
            self.drop_log();
        } else if self
            .due()
            .is_some_and(|due| now >= due || self.log.len() >= self.max)
        {
            self.flush(now, &mut out);
        }
        out
    }

    /// Sends every member what is pending for it, whatever the window. Members with
    /// the same cursor and audiences share one encoded message.
    pub(crate) fn flush(&mut self, now: u64, out: &mut Vec<Action>) {
        if self.log.is_empty() {
            return;
        }
        let len = self.log.len();
        // Members grouped by where their pending frames start (a log index), then by
        // audiences (a handful of distinct values at most): one list per distinct batch.
        let mut groups: Vec<Vec<(u8, Vec<ConnId>)>> = vec![Vec::new(); len];
        for (conn, member) in &mut self.members {
            if let Some(by_audiences) = groups.get_mut(member.start) {
                match by_audiences
                    .iter_mut()
                    .find(|(a, _)| *a == member.audiences)
                {
                    Some((_, to)) => to.push(*conn),
                    None => by_audiences.push((member.audiences, vec![*conn])),
                }
            }
            member.start = 0;
        }
        let mut sent = false;
        let groups = groups
            .into_iter()
            .enumerate()
            .flat_map(|(start, by_audiences)| {
                by_audiences
                    .into_iter()
                    .map(move |(audiences, to)| (start, audiences, to))
            });
        for (start, audiences, to) in groups {
            let frames: Vec<Frame> = self.log[start..]
                .iter()
                .filter(|(_, a)| audiences & a.bit() != 0)
                .map(|(f, _)| f.clone())
                .collect();
            sent |= !frames.is_empty();
            self.push_messages(out, to, &frames);
        }
        self.log.clear();
        self.first_at = None;
        // A flush that had nothing to send (every member already had its frames, as
        // a lone joiner does) does not start a window.
        if sent {
            self.last_flush = Some(now);
        }
    }

    fn drop_log(&mut self) {
        self.log.clear();
        self.first_at = None;
    }

    /// `frames` to every connection in `to`, as messages of at most `batch_max` frames;
    /// a message of one frame is that frame alone.
    fn push_messages(&self, out: &mut Vec<Action>, to: Vec<ConnId>, frames: &[Frame]) {
        let mut messages: Vec<Frame> = frames
            .chunks(self.max)
            .map(|chunk| match chunk {
                [one] => one.clone(),
                many => encode(many),
            })
            .collect();
        let Some(last) = messages.pop() else {
            return;
        };
        for frame in messages {
            push_message(out, to.clone(), frame);
        }
        push_message(out, to, last);
    }
}

/// One message to `to`: a plain send for one recipient, a multicast for several.
fn push_message(out: &mut Vec<Action>, to: Vec<ConnId>, frame: Frame) {
    match to.as_slice() {
        [] => {}
        [one] => out.push(Action::Send { to: *one, frame }),
        _ => out.push(Action::Multicast { to, frame }),
    }
}

/// The frames of `log` from `member.start` to `end` that are the member's, appended to
/// `frames`; the member's cursor moves to `end`.
fn take(log: &[(Frame, Audience)], member: &mut Member, end: usize, frames: &mut Vec<Frame>) {
    if member.start < end {
        frames.extend(
            log[member.start..end]
                .iter()
                .filter(|(_, a)| member.audiences & a.bit() != 0)
                .map(|(f, _)| f.clone()),
        );
        member.start = end;
    }
}

fn entry(direct: &mut Vec<(ConnId, Vec<Frame>)>, conn: ConnId) -> &mut Vec<Frame> {
    let i = match direct.iter().position(|(c, _)| *c == conn) {
        Some(i) => i,
        None => {
            direct.push((conn, Vec::new()));
            direct.len() - 1
        }
    };
    &mut direct[i].1
}

/// `{"batch":[f1,f2,…]}` from already encoded frames: each frame's bytes are copied as
/// they are, never decoded or serialized again.
pub(crate) fn encode(frames: &[Frame]) -> Frame {
    let body: usize = frames.iter().map(|f| f.len() + 1).sum();
    let mut text = String::with_capacity(OPEN.len() + body + CLOSE.len());
    text.push_str(OPEN);
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(f);
    }
    text.push_str(CLOSE);
    text.into()
}
