//! What a room's Durable Object costs its storage, counted so that an operator (and
//! the conformance suite) can see it: every SQL statement run, every alarm set, and
//! the events that caused them (connect attempts, alarms fired). The counts are this
//! instance's, since it was constructed; every [`REPORT_EVERY_CONNECTS`] connect
//! attempts the object prints them as one `{"event":"storage",…}` log line
//! (docs/operating.md, "Observability"). Two lines of one instance, subtracted, give
//! the cost of exactly that many connects.
//!
//! The object never deletes its alarm (a stale one fires once, finds nothing due and
//! is not set again), so there is no delete to count.

use std::cell::Cell;

/// How many connect attempts between two report lines. Per room, so a room's line
/// is a few per minute at most under heavy churn, and none for a quiet room.
pub(crate) const REPORT_EVERY_CONNECTS: u64 = 100;

/// The counters of one object instance. Cells: the object is single-threaded, and the
/// storage wrapper and the object share one set.
#[derive(Debug, Default)]
pub(crate) struct StorageOps {
    connects: Cell<u64>,
    alarms: Cell<u64>,
    sql: Cell<u64>,
    alarm_sets: Cell<u64>,
}

/// The counts at one moment, as the log line gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub connects: u64,
    pub alarms: u64,
    pub sql: u64,
    pub alarm_sets: u64,
}

fn bump(cell: &Cell<u64>) {
    cell.set(cell.get().saturating_add(1));
}

impl StorageOps {
    /// A connect attempt reached the object (whatever its outcome). True if it is one
    /// that should be followed by a report line, once it has been handled.
    pub(crate) fn connect(&self) -> bool {
        bump(&self.connects);
        // (Not `is_multiple_of`: the workspace builds on Rust 1.85.)
        self.connects.get().checked_rem(REPORT_EVERY_CONNECTS) == Some(0)
    }

    /// The alarm fired.
    pub(crate) fn alarm(&self) {
        bump(&self.alarms);
    }

    /// One SQL statement was run (`sql.exec`), read or write.
    pub(crate) fn sql(&self) {
        bump(&self.sql);
    }

    /// The alarm was set (attempted: a failure costs the call all the same).
    pub(crate) fn alarm_set(&self) {
        bump(&self.alarm_sets);
    }

    pub(crate) fn counts(&self) -> Counts {
        Counts {
            connects: self.connects.get(),
            alarms: self.alarms.get(),
            sql: self.sql.get(),
            alarm_sets: self.alarm_sets.get(),
        }
    }
}
