//! Structured log lines, so that `wrangler tail` and Logpush users can count what the
//! local runner counts on `GET /metrics`: one JSON object per line, its kind in
//! `"event"` (format in docs/PROTOCOL.md, "Observability"):
//!
//! - `{"event":"close","code":1008,"reason":"bad_hello"}`: every close the object
//!   orders (by the handler, a refused connection, unreadable storage);
//! - `{"event":"rejection","reason":"rate_limited"}`: every `{"error": …}` frame;
//! - `{"event":"resume","recovered":true}`: every hello that asked to resume;
//! - `{"event":"restore","sessions":3,"seq":42}`: the room rebuilt with open sockets
//!   after an eviction.
//!
//! Labels are the handler's (`Close::label`, `ErrorKind::label`), as on `/metrics`. No
//! line names the room: a private room's id is its only secret. Fresh joins and
//! messages get no line: one per message would cost more than it tells.

use chat_handler::{Close, Event, JoinOutcome, Observer};
use serde::Serialize;
use worker::{console_error, console_log};

/// One line.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Line {
    Close { code: u16, reason: &'static str },
    Rejection { reason: &'static str },
    Resume { recovered: bool },
    Restore { sessions: usize, seq: u64 },
}

fn log(line: Line) {
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
            Event::Stored { .. } => {}
        }
    }
}
