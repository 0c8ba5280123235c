//! Structured log lines, so that `wrangler tail` and Logpush users can count what the
//! local runner counts on `GET /metrics`: one JSON object per line, its kind in
//! `"event"` (format in docs/operating.md, "Observability"):
//!
//! - `{"event":"close","code":1008,"reason":"bad_hello"}`: every close the object
//!   orders (by the handler, a refused connection, unreadable storage);
//! - `{"event":"rejection","reason":"rate_limited"}`: every `{"error": …}` frame;
//! - `{"event":"resume","recovered":true}`: every hello that asked to resume;
//! - `{"event":"restore","sessions":3,"seq":42}`: the room rebuilt with open sockets
//!   after an eviction;
//! - `{"event":"storage","room":"lobby","connects":100,"alarms":0,"sql":9,"alarm_sets":1}`:
//!   every 100th connect attempt, what this instance has cost its storage so far
//!   ([`crate::storage_ops`]). The one line that names its room, by its log tag only.
//!
//! Labels are the handler's (`Close::label`, `ErrorKind::label`), as on `/metrics`. No
//! line shows a private room's id, its only secret: the storage line names its room
//! by the log tag, the others not at all. Fresh joins and
//! messages get no line: one per message would cost more than it tells.

use crate::storage_ops::Counts;
use chat_handler::{Close, Event, JoinOutcome, Observer};
use serde::Serialize;
use worker::{console_error, console_log};

/// One line.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Line<'a> {
    Close {
        code: u16,
        reason: &'static str,
    },
    Rejection {
        reason: &'static str,
    },
    Resume {
        recovered: bool,
    },
    Restore {
        sessions: usize,
        seq: u64,
    },
    Storage {
        room: &'a str,
        connects: u64,
        alarms: u64,
        sql: u64,
        alarm_sets: u64,
    },
}

fn log(line: Line<'_>) {
    match serde_json::to_string(&line) {
        Ok(text) => console_log!("{text}"),
        Err(e) => console_error!("edge-chat: cannot encode a log line: {e}"),
    }
}

/// The object closed a socket with `close`.
pub(crate) fn closed(close: Close) {
    log(Line::Close {
        code: close.code(),
        reason: close.label(),
    });
}

/// The room was rebuilt from storage with `sessions` open sockets, its latest seq `seq`.
pub(crate) fn restored(sessions: usize, seq: u64) {
    if sessions > 0 {
        log(Line::Restore { sessions, seq });
    }
}

/// What the object of the room tagged `room` ([`chat_handler::edge::log_tag`]) has cost
/// its storage since it was constructed.
pub(crate) fn storage(room: &str, counts: Counts) {
    log(Line::Storage {
        room,
        connects: counts.connects,
        alarms: counts.alarms,
        sql: counts.sql,
        alarm_sets: counts.alarm_sets,
    });
}

/// The observer of every room: the handler's events as lines.
pub(crate) struct LogEvents;

impl Observer for LogEvents {
    fn observe(&mut self, event: Event) {
        match event {
            Event::Rejected { kind, .. } => log(Line::Rejection {
                reason: kind.label(),
            }),
            Event::Joined { outcome, .. } => match outcome {
                JoinOutcome::Fresh => {}
                JoinOutcome::Recovered => log(Line::Resume { recovered: true }),
                JoinOutcome::NotRecovered => log(Line::Resume { recovered: false }),
            },
            Event::Stored { .. } | Event::Published { .. } => {}
        }
    }
}
