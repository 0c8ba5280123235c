//! The runner's figures, for `GET /metrics` in the Prometheus text format (0.0.4). The
//! docs/operating.md ("Observability") lists every series.
//!
//! One [`Metrics`] per process, shared (`Arc`) by the registry, the room actors and the
//! connections; no global registry, so tests build their own. Each figure is recorded
//! where its event happens, by a one-line hook:
//!
//! - what only the handler knows (rejections by [`ErrorKind`], join outcomes, stored
//!   messages and their recipients) arrives as the handler's [`Event`]s, through the
//!   [`Observer`] each room gets ([`Metrics::observer`]), so the Worker's log lines count
//!   exactly the same things;
//! - closes are counted where every close of a socket goes through
//!   (`ConnLink::close`), by the [`Close`] named;
//! - connections, rooms and restores where sockets and actors come and go; the time of
//!   each append on the storage thread, which records it into
//!   [`Metrics::append_seconds`]; the runtime's live task count is read when the page is
//!   rendered.

use chat_handler::{Close, ErrorKind, Event, JoinOutcome, Observer};
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Every series is named `edge_chat_…`.
const PREFIX: &str = "edge_chat";

/// The `Content-Type` of the page.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Bucket bounds of the append latency, in seconds: 50 µs doubling to about 0.8 s. An
/// append is its statement on the storage thread, inside the open transaction, so it
/// mostly falls in the first few; one that waits on the disk (a page read, a full log),
/// in the milliseconds.
fn append_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.0, 15)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    code: u16,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Every figure of the process.
pub(crate) struct Metrics {
    registry: Registry,
    connections: Gauge,
    rooms: Gauge,
    tasks: Gauge,
    messages_in: Counter,
    messages_delivered: Counter,
    rejections: Family<ReasonLabel, Counter>,
    closes: Family<CloseLabels, Counter>,
    joins: Family<OutcomeLabel, Counter>,
    restores: Counter,
    /// Rooms hibernated: not on the page (tests wait for a hibernation with it).
    hibernations: Counter,
    append_seconds: Histogram,
    storage_rooms: Gauge,
    storage_rooms_max: Gauge,
    storage_bytes: Gauge,
    /// The database file, whose size (with its log) is `storage_bytes`; none in memory.
    database: OnceLock<PathBuf>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix(PREFIX),
            connections: Gauge::default(),
            rooms: Gauge::default(),
            tasks: Gauge::default(),
            messages_in: Counter::default(),
            messages_delivered: Counter::default(),
            rejections: Family::default(),
            closes: Family::default(),
            joins: Family::default(),
            restores: Counter::default(),
            hibernations: Counter::default(),
            append_seconds: Histogram::new(append_buckets()),
            storage_rooms: Gauge::default(),
            storage_rooms_max: Gauge::default(),
            storage_bytes: Gauge::default(),
            database: OnceLock::new(),
        };
        let r = &mut m.registry;
        r.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        r.register(
            "rooms",
            "Rooms in memory: an actor running, live or hibernated (an empty room's \
             actor stays 30 s)",
            m.rooms.clone(),
        );
        r.register(
            "runtime_alive_tasks",
            "Tasks alive in the async runtime (two per connection, one per room, a few \
             more)",
            m.tasks.clone(),
        );
        r.register(
            "messages_in",
            "Chat messages stored and broadcast",
            m.messages_in.clone(),
        );
        r.register(
            "messages_delivered",
            "Chat messages sent to members, one per recipient (the sender included)",
            m.messages_delivered.clone(),
        );
        r.register(
            "rejections",
            "Error frames sent, by reason (the handler's ErrorKind)",
            m.rejections.clone(),
        );
        r.register(
            "closes",
            "Connections closed by the server, by close code and reason; \
             reason=\"slow_consumer\" counts slow consumers",
            m.closes.clone(),
        );
        r.register(
            "joins",
            "Hellos accepted, by outcome: fresh (no resume), recovered, not_recovered",
            m.joins.clone(),
        );
        r.register(
            "room_restores",
            "Hibernated rooms rebuilt from storage and their sessions",
            m.restores.clone(),
        );
        r.register_with_unit(
            "storage_append",
            "Time to store one chat message (its statement on the storage thread, before \
             the commit)",
            Unit::Seconds,
            m.append_seconds.clone(),
        );
        r.register(
            "storage_rooms",
            "Rooms kept in storage (with history); new rooms are refused once it reaches \
             storage_rooms_max",
            m.storage_rooms.clone(),
        );
        r.register(
            "storage_rooms_max",
            "The bound on rooms kept in storage (--max-rooms-stored)",
            m.storage_rooms_max.clone(),
        );
        r.register_with_unit(
            "storage",
            "Size of the SQLite database file and its write-ahead log (0 with --in-memory)",
            Unit::Bytes,
            m.storage_bytes.clone(),
        );
        // Every known label value from the start, at 0, so that a rate over a series
        // that has not happened yet reads 0 rather than nothing.
        for kind in ErrorKind::ALL {
            let _ = m.rejections.get_or_create(&ReasonLabel {
                reason: kind.label(),
            });
        }
        for close in Close::ALL {
            let _ = m.closes.get_or_create(&close_labels(close));
        }
        for outcome in JoinOutcome::ALL {
            let _ = m.joins.get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            });
        }
        m
    }

    /// The observer of one room: the handler's events become counts here.
    pub(crate) fn observer(self: &Arc<Self>) -> Box<dyn Observer> {
        Box::new(RoomObserver(self.clone()))
    }

    /// The server closed a connection with `close`.
    pub(crate) fn closed(&self, close: Close) {
        self.closes.get_or_create(&close_labels(close)).inc();
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub(crate) fn connection(&self) -> OpenConnection {
        self.connections.inc();
        OpenConnection(self.connections.clone())
    }

    /// The number of room actors, set by the registry whenever it changes.
    pub(crate) fn set_rooms(&self, rooms: usize) {
        self.rooms.set(i64::try_from(rooms).unwrap_or(i64::MAX));
    }

    /// The gauge of rooms kept in storage, for `StoredRooms` to keep, and their bound.
    pub(crate) fn storage_rooms(&self, max: usize) -> Gauge {
        self.storage_rooms_max
            .set(i64::try_from(max).unwrap_or(i64::MAX));
        self.storage_rooms.clone()
    }

    /// The database file, whose size the page reports.
    pub(crate) fn set_database(&self, path: PathBuf) {
        let _ = self.database.set(path);
    }

    /// A hibernated room was rebuilt.
    pub(crate) fn room_restored(&self) {
        self.restores.inc();
    }

    /// A room hibernated (`--hibernate-after-secs`).
    pub(crate) fn room_hibernated(&self) {
        self.hibernations.inc();
    }

    /// Rooms hibernated so far.
    #[cfg(test)]
    pub(crate) fn hibernations(&self) -> u64 {
        self.hibernations.get()
    }

    /// The append latency histogram, for the storage thread to record each append's
    /// time into.
    pub(crate) fn append_seconds(&self) -> Histogram {
        self.append_seconds.clone()
    }

    /// The page: every series in the Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let tasks = tokio::runtime::Handle::try_current()
            .map(|rt| rt.metrics().num_alive_tasks())
            .unwrap_or(0);
        self.tasks.set(i64::try_from(tasks).unwrap_or(i64::MAX));
        if let Some(path) = self.database.get() {
            self.storage_bytes
                .set(i64::try_from(database_bytes(path)).unwrap_or(i64::MAX));
        }
        let mut page = String::new();
        if let Err(e) = prometheus_text::encode(&mut page, &self.registry) {
            // Writing to a String cannot fail; should the encoder, say so in the page.
            page.push_str(&format!("# encoding failed: {e}\n"));
        }
        page
    }
}

/// The database file's size plus its write-ahead log's (`<file>-wal`), as the file
/// system reports them; a file that cannot be read counts 0.
fn database_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    size(path) + size(Path::new(&wal))
}

fn close_labels(close: Close) -> CloseLabels {
    CloseLabels {
        code: close.code(),
        reason: close.label(),
    }
}

/// One open connection in the connections gauge.
pub(crate) struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Turns one room's handler events into counts.
struct RoomObserver(Arc<Metrics>);

impl Observer for RoomObserver {
    fn observe(&mut self, event: Event) {
        let m = &self.0;
        match event {
            Event::Rejected { kind, .. } => {
                let reason = kind.label();
                let _ = m.rejections.get_or_create(&ReasonLabel { reason }).inc();
            }
            Event::Joined { outcome, .. } => {
                let outcome = outcome.label();
                let _ = m.joins.get_or_create(&OutcomeLabel { outcome }).inc();
            }
            Event::Stored { recipients, .. } | Event::Published { recipients, .. } => {
                m.messages_in.inc();
                m.messages_delivered
                    .inc_by(u64::try_from(recipients).unwrap_or(u64::MAX));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage_thread::{Database, StorageThread};
    use crate::stored_rooms::StoredRooms;
    use chat_handler::{Config, Peer, Room};

    /// The value of the series `name` (with its labels, exactly as on the page).
    fn value(page: &str, series: &str) -> Option<f64> {
        page.lines().find_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            (name == series).then(|| v.parse().ok())?
        })
    }

    #[test]
    fn every_label_value_is_on_the_page_from_the_start() {
        let page = Metrics::new().render();
        for kind in ErrorKind::ALL {
            let series = format!("edge_chat_rejections_total{{reason=\"{}\"}}", kind.label());
            assert_eq!(value(&page, &series), Some(0.0), "{series} in\n{page}");
        }
        for close in Close::ALL {
            let series = format!(
                "edge_chat_closes_total{{code=\"{}\",reason=\"{}\"}}",
                close.code(),
                close.label()
            );
            assert_eq!(value(&page, &series), Some(0.0), "{series} in\n{page}");
        }
        for outcome in JoinOutcome::ALL {
            let series = format!("edge_chat_joins_total{{outcome=\"{}\"}}", outcome.label());
            assert_eq!(value(&page, &series), Some(0.0), "{series}");
        }
        for (series, kind) in [
            ("edge_chat_connections", "gauge"),
            ("edge_chat_rooms", "gauge"),
            ("edge_chat_runtime_alive_tasks", "gauge"),
            ("edge_chat_messages_in_total", "counter"),
            ("edge_chat_messages_delivered_total", "counter"),
            ("edge_chat_room_restores_total", "counter"),
            ("edge_chat_storage_append_seconds", "histogram"),
            ("edge_chat_storage_rooms", "gauge"),
            ("edge_chat_storage_rooms_max", "gauge"),
            ("edge_chat_storage_bytes", "gauge"),
        ] {
            assert!(
                page.contains(&format!("\n# TYPE {series} {kind}\n")),
                "{series} {kind} in\n{page}"
            );
        }
    }

    #[tokio::test]
    async fn a_room_reports_through_its_observer_and_the_storage_thread() {
        let metrics = Arc::new(Metrics::new());
        let stored = StoredRooms::unbounded();
        let thread = StorageThread::start(Database::Memory, stored, metrics.append_seconds());
        let thread = thread.unwrap();
        let storage = thread.room("r");
        let mut room = Room::open(Config::default(), storage.clone(), "e").unwrap();
        room.set_observer(metrics.observer());
        for (conn, name) in [(1, "alice"), (2, "bob")] {
            room.try_connect(conn, Peer { addr: "a".into() }, 1)
                .unwrap();
            room.on_text(conn, &format!(r#"{{"name":"{name}"}}"#), 1);
        }
        room.on_text(1, r#"{"message":"hi"}"#, 2);
        room.on_text(1, r#"{"message":" "}"#, 3);
        room.on_text(2, "not json", 4);
        metrics.closed(Close::SlowConsumer);
        // Every job sent before the commit has run.
        storage.commit().await.unwrap();
        let page = metrics.render();
        let v = |series: &str| value(&page, series).unwrap_or(-1.0);
        assert_eq!(v("edge_chat_messages_in_total"), 1.0);
        assert_eq!(v("edge_chat_messages_delivered_total"), 2.0);
        assert_eq!(v(r#"edge_chat_joins_total{outcome="fresh"}"#), 2.0);
        assert_eq!(
            v(r#"edge_chat_rejections_total{reason="message_empty"}"#),
            1.0
        );
        assert_eq!(v(r#"edge_chat_rejections_total{reason="not_json"}"#), 1.0);
        assert_eq!(
            v(r#"edge_chat_closes_total{code="1013",reason="slow_consumer"}"#),
            1.0
        );
        assert_eq!(v("edge_chat_storage_append_seconds_count"), 1.0);
        assert_eq!(
            v(r#"edge_chat_storage_append_seconds_bucket{le="+Inf"}"#),
            1.0
        );
    }

    #[test]
    fn connections_count_until_their_guard_drops() {
        let metrics = Metrics::new();
        let a = metrics.connection();
        let b = metrics.connection();
        assert_eq!(value(&metrics.render(), "edge_chat_connections"), Some(2.0));
        drop(a);
        drop(b);
        assert_eq!(value(&metrics.render(), "edge_chat_connections"), Some(0.0));
        metrics.set_rooms(3);
        assert_eq!(value(&metrics.render(), "edge_chat_rooms"), Some(3.0));
    }

    #[tokio::test]
    async fn the_task_count_is_the_runtimes() {
        let metrics = Metrics::new();
        let before = value(&metrics.render(), "edge_chat_runtime_alive_tasks").unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = rx.await;
        });
        let during = value(&metrics.render(), "edge_chat_runtime_alive_tasks").unwrap();
        assert_eq!(during, before + 1.0);
        tx.send(()).unwrap();
        task.await.unwrap();
        let after = value(&metrics.render(), "edge_chat_runtime_alive_tasks").unwrap();
        assert_eq!(after, before);
    }
}
