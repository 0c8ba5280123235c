//! The room's persistent state behind a synchronous trait (what the handler needs, and
//! nothing only tests need), plus the SQL that both real backends (the Durable Object's `storage.sql` and rusqlite) run, so the schema is
//! defined once. Every statement is parameterised by the room key (`?1`): the local
//! runner keeps all rooms in one database, a Durable Object keeps one room per database.

use crate::protocol::user::Role;
use crate::room::ratelimit::Bucket;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
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
    /// The sender's role when it was not a plain user's: `service` for a server-side
    /// publish (migration 4). Sent on the chat frame, in history and resumes too.
    #[serde(default)]
    pub role: Option<Role>,
    /// A tombstone: a moderator deleted the message, and its `message` is blank in
    /// storage. Whatever sends history sends no text for it (`{"deleted": seq}` to v2
    /// sessions, nothing to v1 ones). Rows read from SQLite may give it as 0 or 1.
    #[serde(default, deserialize_with = "flag")]
    pub deleted: bool,
    /// Who may edit an anonymous message: its sending connection's key (see
    /// `Session::author_key`). `None` for a verified sender, whose `user` decides.
    /// Never sent to clients.
    #[serde(default)]
    pub author: Option<String>,
    /// v2: when its author last edited it (ms since the Unix epoch); `None` if never.
    /// `message` is then the latest text.
    #[serde(default)]
    pub edited_at: Option<u64>,
    /// v2 reactions: the message's counts as a JSON object (`{"👍": 2}`), kept with the
    /// message so that every read of it has them; `None` (or `{}`) when it has none.
    /// Who reacted is in the reactions table ([`Storage::has_reaction`]).
    #[serde(default)]
    pub reactions: Option<String>,
}

/// A boolean that SQLite stores as an integer: rows that cross into JavaScript (the
/// Durable Object's cursor) give `0`/`1` as numbers, serde-made values give `false`/`true`.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Flag;
    impl Visitor<'_> for Flag {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a boolean, or 0 or 1")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
            Ok(v != 0.0)
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_none<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    d.deserialize_any(Flag)
}

/// The kick and the mute in force for one user of a room: until when (ms since the Unix
/// epoch) the user may not join, and may not send. 0, or any time past, is none.
///
/// The same table holds the kicks and mutes of client addresses
/// (`moderation_binds_address`), under keys no user id can be (see
/// `moderation::address_row`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restriction {
    pub kicked_until: u64,
    pub muted_until: u64,
    /// A user's row only: the address keys its kick or mute was bound to, as a JSON
    /// array of strings, so that lifting it lifts theirs too even when the user is
    /// not in the room. `None` for none (and in an address's row).
    #[serde(default)]
    pub addrs: Option<String>,
}

impl Restriction {
    /// True when neither is in force at `now_ms`: the row can go.
    pub fn is_over(&self, now_ms: u64) -> bool {
        self.kicked_until <= now_ms && self.muted_until <= now_ms
    }
}

/// One stored moderator action (the room's audit table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// The moderator's user id.
    pub moderator: String,
    /// `delete`, `kick` or `mute`.
    pub action: String,
    /// The target user of a kick or mute.
    #[serde(default)]
    pub user: Option<String>,
    /// The deleted message.
    #[serde(default)]
    pub seq: Option<u64>,
    /// The kick's or mute's duration.
    #[serde(default)]
    pub secs: Option<u64>,
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
    /// [`Storage::append`] of a message the caller no longer needs (what the room
    /// does): a store that keeps the value itself overrides it to keep it without a copy.
    fn append_owned(&mut self, msg: StoredMessage) -> StorageResult<()> {
        self.append(&msg)
    }
    /// Up to `n` newest messages that are not deleted, oldest first.
    fn last_n(&mut self, n: usize) -> StorageResult<Vec<StoredMessage>>;
    /// Up to `limit` messages with seq greater than `seq`, oldest first, tombstones
    /// included (so a resume can count the gap).
    fn after(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>>;
    /// Up to `limit` messages with seq below `seq`: the newest such ones, oldest first
    /// (a page of history).
    fn before(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>>;
    /// The newest message that `sender` stored with `cid`, if it is within the retry
    /// window: its seq above `after_seq`, or its timestamp at or after `since_ms`.
    /// Served by the `(room, sender, cid)` index of migration 1.
    fn find_cid(
        &mut self,
        sender: &str,
        cid: &str,
        after_seq: u64,
        since_ms: u64,
    ) -> StorageResult<Option<StoredMessage>>;
    /// Deletes every message with seq at or below `seq`.
    fn prune_through(&mut self, seq: u64) -> StorageResult<()>;
    /// Keeps the current state of a rate-limit bucket, by its key (a client address
    /// key, or `join ` and the address key for the join bucket), so that a rebuilt
    /// room and a reconnecting address go on from it. Written on every token taken.
    fn save_bucket(&mut self, addr: &str, bucket: &Bucket) -> StorageResult<()>;
    /// A kept bucket, if there is one (it stays kept).
    fn load_bucket(&mut self, addr: &str) -> StorageResult<Option<Bucket>>;
    /// Forgets kept buckets last updated before `before_ms`: they have refilled by now,
    /// and a full bucket is what an unknown address gets anyway.
    fn prune_buckets(&mut self, before_ms: u64) -> StorageResult<()>;
    /// Tombstones message `seq`: blanks its text and marks it deleted, recording
    /// `at_seq` (the room's latest seq now) for resumes. False when there is no such
    /// message, or it is deleted already.
    fn delete_message(&mut self, seq: u64, at_seq: u64) -> StorageResult<bool>;
    /// The seqs, at or below `seq`, of messages deleted while the room's latest seq was
    /// `seq` or more, ascending, at most `limit`: what a client that has every message
    /// up to `seq` may not have heard of.
    fn deleted_since(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<u64>>;
    /// Replaces the text of live message `seq` and marks it edited at `edited_at`,
    /// recording `at_seq` (the room's latest seq now) for resumes. False when there is
    /// no such live message.
    fn edit_message(
        &mut self,
        seq: u64,
        message: &str,
        edited_at: u64,
        at_seq: u64,
    ) -> StorageResult<bool>;
    /// The live messages, at or below `seq`, last edited while the room's latest seq
    /// was `seq` or more, ascending, at most `limit`: the edits a client that has every
    /// message up to `seq` may not have heard of.
    fn edited_since(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>>;
    /// Whether `reactor` reacted to message `seq` with `emoji`.
    fn has_reaction(&mut self, seq: u64, emoji: &str, reactor: &str) -> StorageResult<bool>;
    /// Adds (`on`) or removes the reaction of `reactor` with `emoji` to live message
    /// `seq`, and stores the message's new `counts` (JSON; `None` for none left),
    /// recording `at_seq` (the room's latest seq now) for resumes. False when there is
    /// no such live message (nothing is changed then).
    fn set_reaction(
        &mut self,
        seq: u64,
        emoji: &str,
        reactor: &str,
        on: bool,
        counts: Option<&str>,
        at_seq: u64,
    ) -> StorageResult<bool>;
    /// The live messages, at or below `seq`, whose reactions last changed while the
    /// room's latest seq was `seq` or more, ascending, at most `limit`.
    fn reacted_since(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>>;
    /// The kick and mute stored for `user` (all zero when none).
    fn restriction(&mut self, user: &str) -> StorageResult<Restriction>;
    /// Stores the kick and mute of `user`, replacing the previous ones; all zero
    /// removes the user's row.
    fn set_restriction(&mut self, user: &str, r: &Restriction) -> StorageResult<()>;
    /// Removes the rows of users whose kick and mute are both over at `now_ms`, and
    /// returns how many rows are left (kicks and mutes in force).
    fn prune_restrictions(&mut self, now_ms: u64) -> StorageResult<u64>;
    /// Appends a moderator action to the audit table, keeping the newest `keep`.
    fn append_audit(&mut self, entry: &AuditEntry, keep: usize) -> StorageResult<()>;
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
    // 2: moderation. Tombstones (`deleted`, with the room's latest seq at the time in
    // `deleted_at`, which resumes look up through the partial index), kicks and mutes
    // per user, and the audit table of moderator actions.
    &[
        "ALTER TABLE chat_messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE chat_messages ADD COLUMN deleted_at INTEGER",
        "CREATE INDEX IF NOT EXISTS chat_messages_deletions
            ON chat_messages (room, deleted_at) WHERE deleted_at IS NOT NULL",
        "CREATE TABLE IF NOT EXISTS chat_restrictions (
            room TEXT NOT NULL,
            user TEXT NOT NULL,
            kicked_until INTEGER NOT NULL,
            muted_until INTEGER NOT NULL,
            PRIMARY KEY (room, user)
        ) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS chat_audit (
            room TEXT NOT NULL,
            id INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            moderator TEXT NOT NULL,
            action TEXT NOT NULL,
            user TEXT,
            seq INTEGER,
            secs INTEGER,
            PRIMARY KEY (room, id)
        ) WITHOUT ROWID",
    ],
    // 3: kicks and mutes bound to client addresses: the addresses a user's row bound.
    &["ALTER TABLE chat_restrictions ADD COLUMN addrs TEXT"],
    // 4: the sender's role on a message (`service` for a server-side publish).
    &["ALTER TABLE chat_messages ADD COLUMN role TEXT"],
    // 5: edits. The author key of an anonymous message, when it was last edited, and
    // the room's latest seq at that edit (`edited_seq`, which resumes look up through
    // the partial index, as `deleted_at` for deletions).
    &[
        "ALTER TABLE chat_messages ADD COLUMN author TEXT",
        "ALTER TABLE chat_messages ADD COLUMN edited_at INTEGER",
        "ALTER TABLE chat_messages ADD COLUMN edited_seq INTEGER",
        "CREATE INDEX IF NOT EXISTS chat_messages_edits
            ON chat_messages (room, edited_seq) WHERE edited_seq IS NOT NULL",
    ],
    // 6: reactions. Their counts on the message row (`reactions`, JSON), the room's
    // latest seq at the last change (`reacted_seq`, for resumes, as `edited_seq`), and
    // one row per reaction: who reacted with which emoji.
    &[
        "ALTER TABLE chat_messages ADD COLUMN reactions TEXT",
        "ALTER TABLE chat_messages ADD COLUMN reacted_seq INTEGER",
        "CREATE INDEX IF NOT EXISTS chat_messages_reacted
            ON chat_messages (room, reacted_seq) WHERE reacted_seq IS NOT NULL",
        "CREATE TABLE IF NOT EXISTS chat_reactions (
            room TEXT NOT NULL,
            seq INTEGER NOT NULL,
            emoji TEXT NOT NULL,
            reactor TEXT NOT NULL,
            PRIMARY KEY (room, seq, emoji, reactor)
        ) WITHOUT ROWID",
    ],
];

/// SQL statements, each with the room key as `?1`. Result columns are named as the
/// fields of [`StoredMessage`] / [`Bucket`] so backends can deserialize rows directly.
pub mod sql {
    /// `?2` = the epoch. Inserts only if the room has none.
    pub const INIT_EPOCH: &str =
        "INSERT INTO chat_rooms (room, epoch) VALUES (?1, ?2) ON CONFLICT(room) DO NOTHING";
    pub const SELECT_EPOCH: &str = "SELECT epoch FROM chat_rooms WHERE room = ?1";
    pub const SELECT_LATEST: &str = "SELECT seq, timestamp, name, message, user, cid, sender,
        role, deleted, author, edited_at, reactions FROM chat_messages WHERE room = ?1 ORDER BY seq DESC LIMIT 1";
    /// `?2` seq, `?3` timestamp, `?4` name, `?5` message, `?6` user, `?7` cid, `?8` sender,
    /// `?9` role, `?10` author (the last five may be NULL).
    pub const INSERT_MESSAGE: &str = "INSERT INTO chat_messages
        (room, seq, timestamp, name, message, user, cid, sender, role, author)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
    /// `?2` = n. Newest first; the caller reverses. Tombstones are left out.
    pub const SELECT_LAST_N: &str = "SELECT seq, timestamp, name, message, user, cid, sender,
        role, deleted, author, edited_at, reactions FROM chat_messages WHERE room = ?1 AND deleted = 0
        ORDER BY seq DESC LIMIT ?2";
    /// `?2` = after this seq, `?3` = limit. Tombstones included.
    pub const SELECT_AFTER: &str = "SELECT seq, timestamp, name, message, user, cid, sender,
        role, deleted, author, edited_at, reactions FROM chat_messages WHERE room = ?1 AND seq > ?2 ORDER BY seq ASC LIMIT ?3";
    /// `?2` = before this seq, `?3` = limit. Newest first; the caller reverses.
    /// Tombstones are left out, so a page holds `limit` messages whenever the room has
    /// that many older live ones.
    pub const SELECT_BEFORE: &str = "SELECT seq, timestamp, name, message, user, cid, sender,
        role, deleted, author, edited_at, reactions FROM chat_messages WHERE room = ?1 AND seq < ?2 AND deleted = 0
        ORDER BY seq DESC LIMIT ?3";
    /// `?2` sender, `?3` cid, `?4` = seq above this, or `?5` = timestamp at or after this
    /// (the retry window). The newest message with that sender and cid, if it is in the
    /// window (older ones with the same pair never are). The inner query is answered
    /// from the partial index `chat_messages_by_cid` alone (`cid = ?3` implies the
    /// index's `cid IS NOT NULL`), the outer one by the primary key: written as one
    /// query with `ORDER BY seq DESC`, SQLite would rather walk the room's messages.
    pub const SELECT_BY_CID: &str = "SELECT seq, timestamp, name, message, user, cid, sender,
        role, deleted, author, edited_at, reactions FROM chat_messages
        WHERE room = ?1 AND (seq > ?4 OR timestamp >= ?5) AND seq = (
            SELECT max(seq) FROM chat_messages WHERE room = ?1 AND sender = ?2 AND cid = ?3
        )";
    /// `?2` seq, `?3` the room's latest seq now. Returns the seq when a live message was
    /// tombstoned; the text is overwritten, so it is gone, not hidden.
    pub const DELETE_MESSAGE: &str = "UPDATE chat_messages
        SET message = '', deleted = 1, deleted_at = ?3, reactions = NULL, reacted_seq = NULL
        WHERE room = ?1 AND seq = ?2 AND deleted = 0 RETURNING seq";
    /// `?2` seq, `?3` the new text, `?4` edited_at (ms), `?5` the room's latest seq now.
    /// Returns the seq when a live message was edited.
    pub const EDIT_MESSAGE: &str = "UPDATE chat_messages
        SET message = ?3, edited_at = ?4, edited_seq = ?5
        WHERE room = ?1 AND seq = ?2 AND deleted = 0 RETURNING seq";
    /// `?2` seq, `?3` limit: live messages at or below seq, last edited while the room's
    /// latest seq was seq or later, ascending.
    pub const SELECT_EDITED_SINCE: &str = "SELECT seq, timestamp, name, message, user, cid,
        sender, role, deleted, author, edited_at, reactions FROM chat_messages
        WHERE room = ?1 AND edited_seq >= ?2 AND seq <= ?2 AND deleted = 0
        ORDER BY seq ASC LIMIT ?3";
    /// `?2` seq: the reactions of a deleted message go with its text.
    pub const DELETE_REACTIONS_OF: &str = "DELETE FROM chat_reactions WHERE room = ?1 AND seq = ?2";
    /// `?2` = through this seq: the reactions of pruned messages go with them.
    pub const PRUNE_REACTIONS_THROUGH: &str =
        "DELETE FROM chat_reactions WHERE room = ?1 AND seq <= ?2";
    /// `?2` seq, `?3` emoji, `?4` reactor.
    pub const SELECT_REACTION: &str = "SELECT seq FROM chat_reactions
        WHERE room = ?1 AND seq = ?2 AND emoji = ?3 AND reactor = ?4";
    /// `?2` seq, `?3` emoji, `?4` reactor.
    pub const INSERT_REACTION: &str = "INSERT OR IGNORE INTO chat_reactions
        (room, seq, emoji, reactor) VALUES (?1, ?2, ?3, ?4)";
    /// `?2` seq, `?3` emoji, `?4` reactor.
    pub const DELETE_REACTION: &str = "DELETE FROM chat_reactions
        WHERE room = ?1 AND seq = ?2 AND emoji = ?3 AND reactor = ?4";
    /// `?2` seq, `?3` the counts (JSON, or NULL for none), `?4` the room's latest seq
    /// now. Returns the seq when the message is live.
    pub const SET_REACTIONS: &str = "UPDATE chat_messages SET reactions = ?3, reacted_seq = ?4
        WHERE room = ?1 AND seq = ?2 AND deleted = 0 RETURNING seq";
    /// `?2` seq, `?3` limit: live messages at or below seq whose reactions last changed
    /// while the room's latest seq was seq or later, ascending.
    pub const SELECT_REACTED_SINCE: &str = "SELECT seq, timestamp, name, message, user, cid,
        sender, role, deleted, author, edited_at, reactions FROM chat_messages
        WHERE room = ?1 AND reacted_seq >= ?2 AND seq <= ?2 AND deleted = 0
        ORDER BY seq ASC LIMIT ?3";
    /// `?2` seq, `?3` limit: tombstones at or below seq, deleted at seq or later.
    pub const SELECT_DELETED_SINCE: &str = "SELECT seq FROM chat_messages
        WHERE room = ?1 AND deleted_at >= ?2 AND seq <= ?2 ORDER BY seq ASC LIMIT ?3";
    /// `?2` user (or address row key).
    pub const SELECT_RESTRICTION: &str = "SELECT kicked_until, muted_until, addrs
        FROM chat_restrictions WHERE room = ?1 AND user = ?2";
    /// `?2` user, `?3` kicked_until, `?4` muted_until, `?5` addrs (may be NULL).
    pub const UPSERT_RESTRICTION: &str = "INSERT INTO chat_restrictions
        (room, user, kicked_until, muted_until, addrs) VALUES (?1, ?2, ?3, ?4, ?5)
        ON CONFLICT(room, user) DO UPDATE SET kicked_until = excluded.kicked_until,
        muted_until = excluded.muted_until, addrs = excluded.addrs";
    /// `?2` user.
    pub const DELETE_RESTRICTION: &str =
        "DELETE FROM chat_restrictions WHERE room = ?1 AND user = ?2";
    /// `?2` now (ms): rows whose kick and mute are both over.
    pub const PRUNE_RESTRICTIONS: &str = "DELETE FROM chat_restrictions
        WHERE room = ?1 AND kicked_until <= ?2 AND muted_until <= ?2";
    pub const COUNT_RESTRICTIONS: &str =
        "SELECT COUNT(*) AS count FROM chat_restrictions WHERE room = ?1";
    /// `?2` at_ms, `?3` moderator, `?4` action, `?5` user, `?6` seq, `?7` secs (the
    /// last three may be NULL). The id is the room's next one.
    pub const INSERT_AUDIT: &str = "INSERT INTO chat_audit
        (room, id, at_ms, moderator, action, user, seq, secs)
        SELECT ?1, COALESCE(MAX(id), 0) + 1, ?2, ?3, ?4, ?5, ?6, ?7
        FROM chat_audit WHERE room = ?1";
    /// `?2` = how many of the newest to keep.
    pub const PRUNE_AUDIT: &str = "DELETE FROM chat_audit WHERE room = ?1
        AND id <= (SELECT MAX(id) FROM chat_audit WHERE room = ?1) - ?2";
    /// `?2` = n. Newest first.
    pub const SELECT_AUDIT: &str = "SELECT at_ms, moderator, action, user, seq, secs
        FROM chat_audit WHERE room = ?1 ORDER BY id DESC LIMIT ?2";
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
    /// `?2` = updated before this time (ms).
    pub const PRUNE_BUCKETS: &str = "DELETE FROM chat_buckets WHERE room = ?1 AND updated_ms < ?2";
}

/// In-memory storage, for tests (the local runner's `--in-memory` keeps an in-memory
/// SQLite database instead). Cloning it snapshots the room (used to test rebuilds).
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    epoch: Option<String>,
    /// Sorted by seq. A deque rather than a map: a room appends at the back and, once
    /// it holds `retention` messages, prunes one from the front per append, which a
    /// B-tree pays for with a shift of its first leaf every time.
    messages: VecDeque<StoredMessage>,
    /// The `deleted_at` of each tombstone (see [`Storage::delete_message`]).
    deleted_at: BTreeMap<u64, u64>,
    /// The `edited_seq` of each edited message (see [`Storage::edit_message`]).
    edited_seq: BTreeMap<u64, u64>,
    /// The `reacted_seq` of each message whose reactions changed.
    reacted_seq: BTreeMap<u64, u64>,
    /// Who reacted with what: (seq, emoji, reactor).
    reactions: std::collections::BTreeSet<(u64, String, String)>,
    buckets: HashMap<String, Bucket>,
    restrictions: HashMap<String, Restriction>,
    audit: VecDeque<AuditEntry>,
    /// When set, `append` fails: lets tests prove nothing unstored is broadcast. A test
    /// hook, so only with the `testing` feature.
    #[cfg(feature = "testing")]
    pub fail_appends: bool,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of the first message with a seq at or above `seq`.
    fn first_at_or_after(&self, seq: u64) -> usize {
        self.messages.partition_point(|m| m.seq < seq)
    }

    /// The live messages at or below `seq` that `changed_at` (seq → the room's latest
    /// seq at their last change) says changed while the room stood at `seq` or later,
    /// ascending, at most `limit`: what SQL's partial indexes answer for edits and
    /// reactions.
    fn changed_since(
        &self,
        changed_at: &BTreeMap<u64, u64>,
        seq: u64,
        limit: usize,
    ) -> Vec<StoredMessage> {
        changed_at
            .range(..=seq)
            .filter(|(_, at)| **at >= seq)
            .filter_map(|(s, _)| {
                let i = self.messages.binary_search_by_key(s, |m| m.seq).ok()?;
                self.messages.get(i).filter(|m| !m.deleted).cloned()
            })
            .take(limit)
            .collect()
    }

    /// Number of messages retained.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Up to `n` newest audit entries, newest first. Only tests read the audit table
    /// back (the backends keep it for operators).
    #[cfg(feature = "testing")]
    pub fn recent_audit(&self, n: usize) -> Vec<AuditEntry> {
        self.audit.iter().rev().take(n).cloned().collect()
    }

    /// How many users (and addresses) have a kick or mute row, possibly expired.
    #[cfg(feature = "testing")]
    pub fn restricted_users(&self) -> u64 {
        self.restrictions.len() as u64
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
        Ok(self.messages.back().cloned())
    }

    fn append(&mut self, msg: &StoredMessage) -> StorageResult<()> {
        self.append_owned(msg.clone())
    }

    fn append_owned(&mut self, msg: StoredMessage) -> StorageResult<()> {
        #[cfg(feature = "testing")]
        if self.fail_appends {
            return Err(StorageError("append refused (test)".into()));
        }
        // The room appends the next seq: no search for it.
        if self.messages.back().is_none_or(|last| last.seq < msg.seq) {
            self.messages.push_back(msg);
            return Ok(());
        }
        match self.messages.binary_search_by_key(&msg.seq, |m| m.seq) {
            Ok(_) => Err(StorageError(format!("seq {} already stored", msg.seq))),
            Err(i) => {
                self.messages.insert(i, msg);
                Ok(())
            }
        }
    }

    fn last_n(&mut self, n: usize) -> StorageResult<Vec<StoredMessage>> {
        let mut v: Vec<_> = self
            .messages
            .iter()
            .rev()
            .filter(|m| !m.deleted)
            .take(n)
            .cloned()
            .collect();
        v.reverse();
        Ok(v)
    }

    fn after(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        let start = self.first_at_or_after(seq.saturating_add(1));
        Ok(self.messages.range(start..).take(limit).cloned().collect())
    }

    fn before(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        let mut v: Vec<_> = self
            .messages
            .range(..self.first_at_or_after(seq))
            .rev()
            // As in SQL (`sql::SELECT_BEFORE`): tombstones are not part of a page.
            .filter(|m| !m.deleted)
            .take(limit)
            .cloned()
            .collect();
        v.reverse();
        Ok(v)
    }

    fn find_cid(
        &mut self,
        sender: &str,
        cid: &str,
        after_seq: u64,
        since_ms: u64,
    ) -> StorageResult<Option<StoredMessage>> {
        // Newest first, and only through the window: timestamps grow with seqs, so once
        // a message is outside both bounds every older one is too.
        Ok(self
            .messages
            .iter()
            .rev()
            .take_while(|m| m.seq > after_seq || m.timestamp >= since_ms)
            .find(|m| m.sender.as_deref() == Some(sender) && m.cid.as_deref() == Some(cid))
            .cloned())
    }

    fn prune_through(&mut self, seq: u64) -> StorageResult<()> {
        let cut = seq.saturating_add(1);
        // From the front, one at a time: a full room prunes one per append, and a
        // binary search would touch a dozen messages to find it.
        while self.messages.front().is_some_and(|m| m.seq < cut) {
            self.messages.pop_front();
        }
        // Rarely any: `split_off` would rebuild the map on every prune.
        while self
            .deleted_at
            .first_key_value()
            .is_some_and(|(&s, _)| s < cut)
        {
            self.deleted_at.pop_first();
        }
        while self
            .edited_seq
            .first_key_value()
            .is_some_and(|(&s, _)| s < cut)
        {
            self.edited_seq.pop_first();
        }
        while self
            .reacted_seq
            .first_key_value()
            .is_some_and(|(&s, _)| s < cut)
        {
            self.reacted_seq.pop_first();
        }
        while self.reactions.first().is_some_and(|(s, _, _)| *s < cut) {
            self.reactions.pop_first();
        }
        Ok(())
    }

    fn save_bucket(&mut self, addr: &str, bucket: &Bucket) -> StorageResult<()> {
        // Written on every frame: a kept bucket is updated in place, without a new key.
        match self.buckets.get_mut(addr) {
            Some(kept) => kept.clone_from(bucket),
            None => {
                self.buckets.insert(addr.to_owned(), bucket.clone());
            }
        }
        Ok(())
    }

    fn load_bucket(&mut self, addr: &str) -> StorageResult<Option<Bucket>> {
        Ok(self.buckets.get(addr).cloned())
    }

    fn prune_buckets(&mut self, before_ms: u64) -> StorageResult<()> {
        self.buckets.retain(|_, b| b.updated_ms >= before_ms);
        Ok(())
    }

    fn delete_message(&mut self, seq: u64, at_seq: u64) -> StorageResult<bool> {
        let found = self.messages.binary_search_by_key(&seq, |m| m.seq).ok();
        match found.and_then(|i| self.messages.get_mut(i)) {
            Some(m) if !m.deleted => {
                m.deleted = true;
                m.message.clear();
                m.reactions = None;
                self.deleted_at.insert(seq, at_seq);
                self.reacted_seq.remove(&seq);
                self.reactions.retain(|(s, _, _)| *s != seq);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn deleted_since(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<u64>> {
        Ok(self
            .deleted_at
            .range(..=seq)
            .filter(|(_, at)| **at >= seq)
            .map(|(s, _)| *s)
            .take(limit)
            .collect())
    }

    fn edit_message(
        &mut self,
        seq: u64,
        message: &str,
        edited_at: u64,
        at_seq: u64,
    ) -> StorageResult<bool> {
        let found = self.messages.binary_search_by_key(&seq, |m| m.seq).ok();
        match found.and_then(|i| self.messages.get_mut(i)) {
            Some(m) if !m.deleted => {
                message.clone_into(&mut m.message);
                m.edited_at = Some(edited_at);
                self.edited_seq.insert(seq, at_seq);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn edited_since(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        Ok(self.changed_since(&self.edited_seq, seq, limit))
    }

    fn has_reaction(&mut self, seq: u64, emoji: &str, reactor: &str) -> StorageResult<bool> {
        Ok(self
            .reactions
            .contains(&(seq, emoji.to_owned(), reactor.to_owned())))
    }

    fn set_reaction(
        &mut self,
        seq: u64,
        emoji: &str,
        reactor: &str,
        on: bool,
        counts: Option<&str>,
        at_seq: u64,
    ) -> StorageResult<bool> {
        let found = self.messages.binary_search_by_key(&seq, |m| m.seq).ok();
        let Some(m) = found.and_then(|i| self.messages.get_mut(i)) else {
            return Ok(false);
        };
        if m.deleted {
            return Ok(false);
        }
        m.reactions = counts.map(str::to_owned);
        self.reacted_seq.insert(seq, at_seq);
        let row = (seq, emoji.to_owned(), reactor.to_owned());
        if on {
            self.reactions.insert(row);
        } else {
            self.reactions.remove(&row);
        }
        Ok(true)
    }

    fn reacted_since(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        Ok(self.changed_since(&self.reacted_seq, seq, limit))
    }

    fn restriction(&mut self, user: &str) -> StorageResult<Restriction> {
        Ok(self.restrictions.get(user).cloned().unwrap_or_default())
    }

    fn set_restriction(&mut self, user: &str, r: &Restriction) -> StorageResult<()> {
        if *r == Restriction::default() {
            self.restrictions.remove(user);
        } else {
            self.restrictions.insert(user.to_owned(), r.clone());
        }
        Ok(())
    }

    fn prune_restrictions(&mut self, now_ms: u64) -> StorageResult<u64> {
        self.restrictions.retain(|_, r| !r.is_over(now_ms));
        Ok(self.restrictions.len() as u64)
    }

    fn append_audit(&mut self, entry: &AuditEntry, keep: usize) -> StorageResult<()> {
        self.audit.push_back(entry.clone());
        while self.audit.len() > keep {
            self.audit.pop_front();
        }
        Ok(())
    }
}

impl MemoryStorage {
    /// Number of kept rate-limit buckets.
    pub fn kept_buckets(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> StoredMessage {
        StoredMessage {
            seq,
            timestamp: 1000 + seq,
            name: "a".into(),
            message: format!("m{seq}"),
            ..StoredMessage::default()
        }
    }

    #[test]
    fn errors_name_storage() {
        let e = StorageError("disk full".into());
        assert_eq!(e.to_string(), "storage error: disk full");
    }

    #[test]
    fn memory_storage_keeps_messages_in_seq_order() {
        let mut s = MemoryStorage::new();
        assert!(s.is_empty());
        assert_eq!(s.latest().unwrap(), None);
        for seq in 1..=5 {
            s.append(&msg(seq)).unwrap();
        }
        assert!(s.append(&msg(3)).is_err(), "a seq is stored once");
        assert!(!s.is_empty());
        assert_eq!(s.len(), 5);
        assert_eq!(s.latest().unwrap(), Some(msg(5)));
        let seqs = |v: Vec<StoredMessage>| v.iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(seqs(s.last_n(2).unwrap()), [4, 5]);
        assert_eq!(seqs(s.last_n(9).unwrap()), [1, 2, 3, 4, 5]);
        assert_eq!(seqs(s.after(2, 2).unwrap()), [3, 4]);
        assert_eq!(seqs(s.after(u64::MAX, 2).unwrap()), Vec::<u64>::new());
        s.prune_through(3).unwrap();
        assert_eq!(seqs(s.last_n(9).unwrap()), [4, 5]);
        s.prune_through(9).unwrap();
        assert!(s.is_empty());
        // Out of order (no room does it) still keeps seq order.
        for seq in [12, 10, 11] {
            s.append(&msg(seq)).unwrap();
        }
        assert!(s.append(&msg(10)).is_err(), "a seq is stored once");
        assert_eq!(seqs(s.after(0, 9).unwrap()), [10, 11, 12]);
        assert_eq!(seqs(s.before(12, 9).unwrap()), [10, 11]);
    }

    #[test]
    fn memory_storage_epoch_and_buckets() {
        let mut s = MemoryStorage::new();
        assert_eq!(s.load_epoch().unwrap(), None);
        s.save_epoch("first").unwrap();
        assert_eq!(s.load_epoch().unwrap().as_deref(), Some("first"));
        let b = |updated_ms| Bucket {
            tokens: 0.5,
            updated_ms,
        };
        s.save_bucket("a", &b(100)).unwrap();
        s.save_bucket("b", &b(200)).unwrap();
        assert_eq!(s.kept_buckets(), 2);
        // Updated before 200: only "a" goes.
        s.prune_buckets(200).unwrap();
        assert_eq!(s.load_bucket("a").unwrap(), None);
        assert_eq!(s.load_bucket("b").unwrap(), Some(b(200)));
        assert_eq!(
            s.load_bucket("b").unwrap(),
            Some(b(200)),
            "reading keeps it"
        );
        assert_eq!(s.kept_buckets(), 1);
    }
}
