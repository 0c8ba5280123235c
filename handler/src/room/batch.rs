//! Batched delivery, for v2 sessions that opted in with `"batch": true`.
//!
//! A batch session gets several server frames in one WebSocket message,
//! `{"batch": [<frame>, …]}`, each frame byte-for-byte what it would have got alone, in
//! the same order. On the edge the number of `send` calls is what costs (see
//! docs/BENCHMARKS.md), so a big room sends one message per member per window instead of
//! one per frame.
//!
//! How frames flow:
//! - Broadcast frames stay [`crate::Action::Broadcast`] for the sessions that take frames one by
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
//! - Every run of frames to one recipient is cut into messages of at most `batch_max`
//!   frames and `batch_max_bytes` bytes ([`split`]), so no message outgrows a write
//!   buffer or Cloudflare's 1 MiB: a frame that cannot share a message within the bound
//!   goes alone, as itself.
//! - A flush sends each member the log from its cursor. Members with the same cursor
//!   share ONE encoded message (one [`crate::Action::Broadcast`]), so a flush costs the bytes of
//!   its distinct batches plus one entry per recipient, never recipients × bytes.
//!
//! When to flush (all times are the room's `now`, so this is deterministic and tested
//! without a clock): the room's window is `w = min(⌈members × 1000 / batch_send_budget⌉,
//! batch_window_ms)` ms, where members counts batch sessions. Pending frames go out at
//! `min(last flush + w, first pending frame + batch_window_ms)`, or at once when
//! `batch_max` frames or `batch_max_bytes` bytes of frames are pending. Flushes are thus at least `w` apart, which keeps
//! batched sends near `members × 1000 / w ≤ batch_send_budget` per second while the room
//! sends fewer than `batch_max` frames per window; a frame after a quiet spell (no flush
//! within `w`) goes out at once, so a quiet or small room adds no latency.
//!
//! The log lives only in memory. Backends flush it before they drop a room
//! ([`crate::Room::flush`]; a Durable Object keeps a timer pending while anything is
//! pending, which keeps it from hibernating), so a rebuilt room starts with nothing
//! pending and loses nothing.

use crate::protocol::config::Config;
use crate::protocol::server_frame::Frame;
use crate::room::action::{Audience, Effect};
use crate::room::session::{ConnId, Session};

/// The opening and closing text of a batch message.
const OPEN: &str = r#"{"batch":["#;
const CLOSE: &str = "]}";

/// The room's batching state. In memory only (see the module comment).
pub(crate) struct Batcher {
    window_max_ms: u64,
    budget: u64,
    max: usize,
    max_bytes: usize,
    /// Joined v2 sessions with batching on, sorted by id. A sorted `Vec` rather than a
    /// map: lookups are binary searches, a flush walks it in order, and it keeps the
    /// Worker's wasm small; a join or leave moves at most one entry per member, a few
    /// microseconds even in a room of 10,000.
    members: Vec<(ConnId, Member)>,
    /// Members the room forgot during the event being handled, kept until its actions
    /// are routed: a closed session still gets what was pending for it before its close.
    leaving: Vec<(ConnId, Member)>,
    /// Broadcast frames queued since the last flush, oldest first, each with its
    /// audience. At most `batch_max` frames (or `batch_max_bytes` bytes) plus the
    /// frames of one event.
    log: Vec<Logged>,
    /// The bytes of `log` as one batch would hold them: each frame and its comma.
    log_bytes: usize,
    /// When the oldest frame in `log` was queued; `None` when the log is empty.
    first_at: Option<u64>,
    /// When a flush last sent something; the window counts from here.
    last_flush: Option<u64>,
}

/// A broadcast frame held for batch sessions: for the members of `audience`, but not
/// `except` (a member's own typing, see `typing.rs`).
#[derive(Debug, Clone, PartialEq)]
struct Logged {
    frame: Frame,
    audience: Audience,
    except: Option<ConnId>,
}

impl Logged {
    /// Whether a member with `audiences` (bits), connection `conn`, gets this frame.
    fn is_for(&self, audiences: u8, conn: ConnId) -> bool {
        audiences & self.audience.bit() != 0 && self.except != Some(conn)
    }
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
            max_bytes: config.batch_max_bytes,
            // The room's sessions come sorted by id.
            members: sessions
                .filter(|s| s.is_batched())
                .map(|s| (s.id, Member::of(s, 0)))
                .collect(),
            leaving: Vec::new(),
            log: Vec::new(),
            log_bytes: 0,
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
    /// flushes if the window, `batch_max` or `batch_max_bytes` says so. Without batch sessions the actions
    /// pass through untouched.
    pub(crate) fn route(&mut self, actions: Vec<Effect>, now: u64) -> Vec<Effect> {
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
                Effect::Send { to, frame } => {
                    // A leaving session gets no broadcast of this event (it is not in the
                    // room when the event ends), so its pending frames stop at the
                    // event's start; a member's include this event's so far.
                    let found = self.find(to).ok();
                    let (member, end) = match found.and_then(|i| self.members.get_mut(i)) {
                        Some((_, m)) => (m, self.log.len()),
                        None => match self.leaving.iter_mut().find(|(c, _)| *c == to) {
                            Some((_, m)) => (m, event_start),
                            None => {
                                out.push(Effect::Send { to, frame });
                                continue;
                            }
                        },
                    };
                    let frames = entry(&mut direct, to);
                    take(&self.log, to, member, end, frames);
                    frames.push(frame);
                }
                Effect::Broadcast { frame, audience } => {
                    self.log(&frame, audience, None, now);
                    out.push(Effect::Broadcast { frame, audience });
                }
                Effect::BroadcastOthers {
                    frame,
                    audience,
                    except,
                } => {
                    self.log(&frame, audience, Some(except), now);
                    out.push(Effect::BroadcastOthers {
                        frame,
                        audience,
                        except,
                    });
                }
                Effect::Close { conn, close } => {
                    if let Some(i) = self.leaving.iter().position(|(c, _)| *c == conn) {
                        let (_, mut member) = self.leaving.swap_remove(i);
                        let mut frames = match direct.iter().position(|(c, _)| *c == conn) {
                            Some(j) => direct.swap_remove(j).1,
                            None => Vec::new(),
                        };
                        take(&self.log, conn, &mut member, event_start, &mut frames);
                        self.push_messages(&mut out, vec![conn], &frames);
                    }
                    out.push(Effect::Close { conn, close });
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
        } else if self.due().is_some_and(|due| now >= due || self.is_full()) {
            self.flush(now, &mut out);
        }
        out
    }

    /// Sends every member what is pending for it, whatever the window. Members with
    /// the same cursor and audiences share one encoded message.
    pub(crate) fn flush(&mut self, now: u64, out: &mut Vec<Effect>) {
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
        for (start, audiences, mut to) in groups {
            let logged = &self.log[start..];
            // Members a frame of theirs leaves out (typing, rare) get their own batch;
            // the others of the group share one.
            let mut excepted: Vec<ConnId> = logged
                .iter()
                .filter(|l| audiences & l.audience.bit() != 0)
                .filter_map(|l| l.except)
                .collect();
            excepted.sort_unstable();
            excepted.dedup();
            let mut own = Vec::new();
            if !excepted.is_empty() {
                to.retain(|c| {
                    let mine = excepted.binary_search(c).is_ok();
                    if mine {
                        own.push(*c);
                    }
                    !mine
                });
            }
            for conn in own {
                let frames: Vec<Frame> = logged
                    .iter()
                    .filter(|l| l.is_for(audiences, conn))
                    .map(|l| l.frame.clone())
                    .collect();
                sent |= !frames.is_empty();
                self.push_messages(out, vec![conn], &frames);
            }
            let frames: Vec<Frame> = logged
                .iter()
                .filter(|l| audiences & l.audience.bit() != 0)
                .map(|l| l.frame.clone())
                .collect();
            if !to.is_empty() {
                sent |= !frames.is_empty();
            }
            self.push_messages(out, to, &frames);
        }
        self.drop_log();
        // A flush that had nothing to send (every member already had its frames, as
        // a lone joiner does) does not start a window.
        if sent {
            self.last_flush = Some(now);
        }
    }

    /// `batch_max` frames, or a full batch's bytes, are pending: no reason to wait.
    fn is_full(&self) -> bool {
        self.log.len() >= self.max || OPEN.len() + self.log_bytes + CLOSE.len() > self.max_bytes
    }

    /// Holds a broadcast frame for the batch members.
    fn log(&mut self, frame: &Frame, audience: Audience, except: Option<ConnId>, now: u64) {
        if self.log.is_empty() {
            self.first_at = Some(now);
        }
        self.log_bytes += frame.len() + 1;
        self.log.push(Logged {
            frame: frame.clone(),
            audience,
            except,
        });
    }

    fn drop_log(&mut self) {
        self.log.clear();
        self.log_bytes = 0;
        self.first_at = None;
    }

    /// `frames` to every connection in `to`, as the messages of [`split`].
    fn push_messages(&self, out: &mut Vec<Effect>, to: Vec<ConnId>, frames: &[Frame]) {
        let mut messages = split(frames, self.max, self.max_bytes);
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
fn push_message(out: &mut Vec<Effect>, to: Vec<ConnId>, frame: Frame) {
    match to.as_slice() {
        [] => {}
        [one] => out.push(Effect::Send { to: *one, frame }),
        _ => out.push(Effect::Multicast { to, frame }),
    }
}

/// The frames of `log` from `member.start` to `end` that are the member's, appended to
/// `frames`; the member's cursor moves to `end`.
fn take(log: &[Logged], conn: ConnId, member: &mut Member, end: usize, frames: &mut Vec<Frame>) {
    if member.start < end {
        frames.extend(
            log[member.start..end]
                .iter()
                .filter(|l| l.is_for(member.audiences, conn))
                .map(|l| l.frame.clone()),
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

/// `frames` as WebSocket messages, in order: each a batch of consecutive frames, as
/// many as fit in `max_bytes` bytes and `max` frames, or a frame alone (as itself) when
/// no second frame fits with it. So a message holds 2 or more frames and at most
/// `max_bytes` bytes, or is one frame, whatever its size: a frame is never cut.
pub(crate) fn split(frames: &[Frame], max: usize, max_bytes: usize) -> Vec<Frame> {
    let mut messages = Vec::new();
    let mut rest = frames;
    while let Some((first, more)) = rest.split_first() {
        let mut bytes = OPEN.len() + first.len() + CLOSE.len();
        let mut n = 1;
        for f in more.iter().take(max.saturating_sub(1)) {
            let next = bytes + 1 + f.len();
            if next > max_bytes {
                break;
            }
            bytes = next;
            n += 1;
        }
        let (chunk, after) = rest.split_at(n);
        messages.push(match chunk {
            [one] => one.clone(),
            many => encode(many),
        });
        rest = after;
    }
    messages
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(lens: &[usize]) -> Vec<Frame> {
        lens.iter()
            .enumerate()
            .map(|(i, &len)| format!(r#"{{"n":{i},"p":"{}"}}"#, "x".repeat(len)).into())
            .collect()
    }

    /// The frames of each message, as the client unwraps them.
    fn unwrap(message: &Frame) -> Vec<String> {
        match message
            .strip_prefix(OPEN)
            .and_then(|m| m.strip_suffix(CLOSE))
        {
            Some(_) => serde_json::from_str::<serde_json::Value>(message).unwrap()["batch"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.to_string())
                .collect(),
            None => vec![message.to_string()],
        }
    }

    #[test]
    fn frames_are_packed_up_to_the_byte_bound() {
        // {"n":0,"p":""} is 14 bytes, so each frame is 24.
        let fs = frames(&[10, 10, 10, 10]);
        assert!(fs.iter().all(|f| f.len() == 24));
        // A batch of two is 10 + 24 + 1 + 24 + 2 = 61 bytes, of three 86.
        let sizes = |max_bytes| -> Vec<usize> {
            split(&fs, 100, max_bytes)
                .iter()
                .map(|m| unwrap(m).len())
                .collect()
        };
        assert_eq!(sizes(86), vec![3, 1]);
        assert_eq!(sizes(85), vec![2, 2]);
        assert_eq!(sizes(61), vec![2, 2]);
        assert_eq!(sizes(60), vec![1, 1, 1, 1]);
        // The count bound still holds.
        assert_eq!(
            split(&fs, 3, 10_000)
                .iter()
                .map(|m| unwrap(m).len())
                .collect::<Vec<_>>(),
            vec![3, 1]
        );
    }

    #[test]
    fn a_frame_over_the_bound_goes_alone_as_itself() {
        let fs = frames(&[5, 500, 5, 5]);
        let messages = split(&fs, 100, 100);
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0], fs[0]);
        assert_eq!(messages[1], fs[1]);
        assert_eq!(&*messages[2], &*encode(&fs[2..]));
        assert!(split(&[], 100, 100).is_empty());
    }

    proptest! {
        /// Every frame once, in order; every message a lone frame, or a batch of 2 to
        /// `max` frames within `max_bytes`; and no batch could have taken the frame
        /// that follows it (the split packs as much as the bounds allow).
        #[test]
        fn split_keeps_every_frame_in_order_within_the_bounds(
            lens in proptest::collection::vec(0usize..300, 0..60),
            max in 1usize..8,
            max_bytes in 16usize..700,
        ) {
            let fs = frames(&lens);
            let messages = split(&fs, max, max_bytes);
            let mut all = Vec::new();
            for (i, m) in messages.iter().enumerate() {
                let inside = unwrap(m);
                if inside.len() > 1 {
                    prop_assert!(inside.len() <= max, "{} frames", inside.len());
                    prop_assert!(m.len() <= max_bytes, "{} bytes over {}", m.len(), max_bytes);
                    prop_assert_eq!(&**m, &*encode(&fs[all.len()..all.len() + inside.len()]));
                }
                let next = all.len() + inside.len();
                all.extend(inside.iter().cloned());
                if let Some(following) = fs.get(next) {
                    let batch_bytes = if inside.len() > 1 {
                        m.len()
                    } else {
                        OPEN.len() + m.len() + CLOSE.len()
                    };
                    prop_assert!(
                        inside.len() == max || batch_bytes + 1 + following.len() > max_bytes,
                        "message {} could have taken the next frame", i
                    );
                }
            }
            let want: Vec<String> = fs.iter().map(|f| f.to_string()).collect();
            prop_assert_eq!(all, want);
        }
    }
}
