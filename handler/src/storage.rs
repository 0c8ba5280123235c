//! The room's persistent state behind a small synchronous trait, plus the SQL that both
//! real backends (the Durable Object's `storage.sql` and rusqlite) run, so the schema is
//! defined once. Every statement is parameterised by the room key (`?1`): the local
//! runner keeps all rooms in one database, a Durable Object keeps one room per database.

use crate::ratelimit::Bucket;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// One stored chat message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub seq: u64,
    /// Milliseconds since the Unix epoch, strictly increasing within a room.
    pub timestamp: u64,
    pub name: String,
    pub message: String,
    /// v2: the verified user id of the sender (identity), if any.
    #[serde(default)]
    pub user: Option<String>,
    /// v2: the client's id for a retry-safe send, if it gave one.
    #[serde(default)]
    pub cid: Option<String>,
    /// Who sent it, as far as retry deduplication is concerned (the verified user id, or
    /// the client address plus name); kept only with a `cid`. Never sent to clients.
    #[serde(default)]
    pub sender: Option<String>,
}

/// A storage failure. The text goes to logs only, never to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError(pub String);

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage error: {}", self.0)
    }
}

impl std::error::Error for StorageError {}

pub type StorageResult<T> = Result<T, StorageError>;

/// What the handler needs from storage, for one room. Synchronous because both real
/// backends are synchronous SQLite.
pub trait Storage {
    /// The room's stored epoch, if it has one. A room gets one with its first stored
    /// message ([`Storage::save_epoch`]), so a room that never stored a message has none
    /// and leaves no row behind.
    fn load_epoch(&mut self) -> StorageResult<Option<String>>;
    /// Stores the room's epoch unless it already has one. The room calls it just before
    /// appending its first message, so the epoch and that message land together.
    fn save_epoch(&mut self, epoch: &str) -> StorageResult<()>;
    /// The newest stored message, if any.
    fn latest(&mut self) -> StorageResult<Option<StoredMessage>>;
    /// Appends a message. Its seq is one more than the latest.
    fn append(&mut self, msg: &StoredMessage) -> StorageResult<()>;
    /// Up to `n` newest messages, oldest first.
    fn last_n(&mut self, n: usize) -> StorageResult<Vec<StoredMessage>>;
    /// Up to `limit` messages with seq greater than `seq`, oldest first.
    fn after(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>>;
    /// Deletes every message with seq at or below `seq`.
    fn prune_through(&mut self, seq: u64) -> StorageResult<()>;
    /// Keeps the rate-limit bucket of a client address whose last connection left, so
    /// that reconnecting does not refill it.
    fn save_bucket(&mut self, addr: &str, bucket: &Bucket) -> StorageResult<()>;
    /// Takes (reads and forgets) a kept bucket.
    fn take_bucket(&mut self, addr: &str) -> StorageResult<Option<Bucket>>;
    /// Forgets kept buckets last updated before `before_ms`: they have refilled by now,
    /// and a full bucket is what an unknown address gets anyway.
    fn prune_buckets(&mut self, before_ms: u64) -> StorageResult<()>;
}

/// The schema as first released (version 0), one statement per entry (the Durable
/// Object runs them one at a time). Run on every open: each statement is idempotent.
/// Later changes are [`MIGRATIONS`], never edits here, so an existing database (a
/// self-hosted `./data`, a deployed Durable Object) keeps its history.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS chat_messages (
        room TEXT NOT NULL,
        seq INTEGER NOT NULL,
        timestamp INTEGER NOT NULL,
        name TEXT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (room, seq)
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS chat_rooms (
        room TEXT PRIMARY KEY,
        epoch TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS chat_buckets (
        room TEXT NOT NULL,
        addr TEXT NOT NULL,
        tokens REAL NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (room, addr)
    )",
    "CREATE TABLE IF NOT EXISTS chat_meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )",
];

/// Schema changes after [`SCHEMA`]: entry `i` takes the database from version `i` to
/// `i + 1`. A backend reads the version ([`sql::SELECT_SCHEMA_VERSION`], 0 when absent),
/// runs every later entry's statements in order, then stores the new version
/// ([`sql::SET_SCHEMA_VERSION`]). Append only: released entries never change.
pub const MIGRATIONS: &[&[&str]] = &[
    // 1: v2 columns of a message (verified user, client id and dedupe key).
    &[
        "ALTER TABLE chat_messages ADD COLUMN user TEXT",
        "ALTER TABLE chat_messages ADD COLUMN cid TEXT",
        "ALTER TABLE chat_messages ADD COLUMN sender TEXT",
        "CREATE INDEX IF NOT EXISTS chat_messages_by_cid
            ON chat_messages (room, sender, cid) WHERE cid IS NOT NULL",
    ],
];

/// SQL statements, each with the room key as `?1`. Result columns are named as the
/// fields of [`StoredMessage`] / [`Bucket`] so backends can deserialize rows directly.
pub mod sql {
    /// `?2` = the epoch. Inserts only if the room has none.
    pub const INIT_EPOCH: &str =
        "INSERT INTO chat_rooms (room, epoch) VALUES (?1, ?2) ON CONFLICT(room) DO NOTHING";
    pub const SELECT_EPOCH: &str = "SELECT epoch FROM chat_rooms WHERE room = ?1";
    pub const SELECT_LATEST: &str = "SELECT seq, timestamp, name, message, user, cid, sender
        FROM chat_messages WHERE room = ?1 ORDER BY seq DESC LIMIT 1";
    /// `?2` seq, `?3` timestamp, `?4` name, `?5` message, `?6` user, `?7` cid, `?8` sender
    /// (the last three may be NULL).
    pub const INSERT_MESSAGE: &str = "INSERT INTO chat_messages
        (room, seq, timestamp, name, message, user, cid, sender)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    /// `?2` = n. Newest first; the caller reverses.
    pub const SELECT_LAST_N: &str = "SELECT seq, timestamp, name, message, user, cid, sender
        FROM chat_messages WHERE room = ?1 ORDER BY seq DESC LIMIT ?2";
    /// `?2` = after this seq, `?3` = limit.
    pub const SELECT_AFTER: &str = "SELECT seq, timestamp, name, message, user, cid, sender
        FROM chat_messages WHERE room = ?1 AND seq > ?2 ORDER BY seq ASC LIMIT ?3";
    /// The schema version (see `MIGRATIONS`); no row means 0. Not keyed by room.
    pub const SELECT_SCHEMA_VERSION: &str =
        "SELECT value FROM chat_meta WHERE key = 'schema_version'";
    /// `?1` = the version now reached.
    pub const SET_SCHEMA_VERSION: &str = "INSERT INTO chat_meta (key, value)
        VALUES ('schema_version', ?1)
        ON CONFLICT(key) DO UPDATE SET value = excluded.value";
    /// `?2` = through this seq.
    pub const PRUNE_THROUGH: &str = "DELETE FROM chat_messages WHERE room = ?1 AND seq <= ?2";
    /// `?2` addr, `?3` tokens, `?4` updated_ms.
    pub const UPSERT_BUCKET: &str = "INSERT INTO chat_buckets (room, addr, tokens, updated_ms)
        VALUES (?1, ?2, ?3, ?4)
        ON CONFLICT(room, addr) DO UPDATE SET tokens = excluded.tokens, updated_ms = excluded.updated_ms";
    /// `?2` addr.
    pub const SELECT_BUCKET: &str =
        "SELECT tokens, updated_ms FROM chat_buckets WHERE room = ?1 AND addr = ?2";
    /// `?2` addr.
    pub const DELETE_BUCKET: &str = "DELETE FROM chat_buckets WHERE room = ?1 AND addr = ?2";
    /// `?2` = updated before this time (ms).
    pub const PRUNE_BUCKETS: &str = "DELETE FROM chat_buckets WHERE room = ?1 AND updated_ms < ?2";
}

/// In-memory storage for tests and for the local runner's `--in-memory` mode.
/// Cloning it snapshots the room (used to test rebuilds).
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    epoch: Option<String>,
    messages: BTreeMap<u64, StoredMessage>,
    buckets: HashMap<String, Bucket>,
    /// When set, `append` fails: lets tests prove nothing unstored is broadcast. A test
    /// hook, so only with the `testing` feature.
    #[cfg(feature = "testing")]
    pub fail_appends: bool,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of messages retained.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

impl Storage for MemoryStorage {
    fn load_epoch(&mut self) -> StorageResult<Option<String>> {
        Ok(self.epoch.clone())
    }

    fn save_epoch(&mut self, epoch: &str) -> StorageResult<()> {
        self.epoch.get_or_insert_with(|| epoch.to_owned());
        Ok(())
    }

    fn latest(&mut self) -> StorageResult<Option<StoredMessage>> {
        Ok(self.messages.values().next_back().cloned())
    }

    fn append(&mut self, msg: &StoredMessage) -> StorageResult<()> {
        #[cfg(feature = "testing")]
        if self.fail_appends {
            return Err(StorageError("append refused (test)".into()));
        }
        if self.messages.contains_key(&msg.seq) {
            return Err(StorageError(format!("seq {} already stored", msg.seq)));
        }
        self.messages.insert(msg.seq, msg.clone());
        Ok(())
    }

    fn last_n(&mut self, n: usize) -> StorageResult<Vec<StoredMessage>> {
        let mut v: Vec<_> = self.messages.values().rev().take(n).cloned().collect();
        v.reverse();
        Ok(v)
    }

    fn after(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        Ok(self
            .messages
            .range(seq.saturating_add(1)..)
            .take(limit)
            .map(|(_, m)| m.clone())
            .collect())
    }

    fn prune_through(&mut self, seq: u64) -> StorageResult<()> {
        self.messages = self.messages.split_off(&seq.saturating_add(1));
        Ok(())
    }

    fn save_bucket(&mut self, addr: &str, bucket: &Bucket) -> StorageResult<()> {
        self.buckets.insert(addr.to_owned(), bucket.clone());
        Ok(())
    }

    fn take_bucket(&mut self, addr: &str) -> StorageResult<Option<Bucket>> {
        Ok(self.buckets.remove(addr))
    }

    fn prune_buckets(&mut self, before_ms: u64) -> StorageResult<()> {
        self.buckets.retain(|_, b| b.updated_ms >= before_ms);
        Ok(())
    }
}

impl MemoryStorage {
    /// Number of kept rate-limit buckets.
    pub fn kept_buckets(&self) -> usize {
        self.buckets.len()
    }
}
