//! Room history in one SQLite file, through the handler's own schema and SQL text, so
//! the local runner stores exactly what the Durable Object stores.

use chat_handler::{sql, StorageResult, MIGRATIONS, SCHEMA};
use chat_handler::{AuditEntry, Bucket, Restriction, Role};
use chat_handler::{Storage, StorageError, StoredMessage};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The database file inside `--data-dir`.
pub(crate) const DATABASE_FILE: &str = "edge-chat.sqlite3";

/// How long a connection waits for another connection's write before giving up. The
/// storage thread's connection is the only writer while the server runs, so this only
/// matters at start-up (or with an outside tool holding the file).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn storage_error(e: rusqlite::Error) -> StorageError {
    StorageError(e.to_string())
}

/// SQLite integers are signed; seqs and limits never get near `i64::MAX`, but a bad
/// value must become an error rather than wrap.
fn to_i64(v: impl TryInto<i64>) -> StorageResult<i64> {
    v.try_into()
        .map_err(|_| StorageError("integer out of range for SQLite".to_owned()))
}

/// Opens a connection to the database file with the pragmas every connection needs.
pub(crate) fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: a commit appends to the log and syncs that alone. FULL syncs the log at
    // every commit, so a commit survives power loss; a message is broadcast only after
    // the commit holding it (see `storage_thread`), so no seq that anyone has seen can
    // be lost and reused. Group commit keeps that to one sync per batch of messages.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Creates the data directory and the schema. Returns the database path.
pub(crate) fn init_database(data_dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
    let path = data_dir.join(DATABASE_FILE);
    let conn =
        open_connection(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    migrate(&conn).map_err(|e| format!("cannot create schema in {}: {e}", path.display()))?;
    Ok(path)
}

/// The rooms the database keeps (a room has a row once it stored a message): the
/// runner's own query, for `--max-rooms-stored` (see `stored_rooms`).
const SELECT_STORED_ROOMS: &str = "SELECT room FROM chat_rooms";

/// The rooms stored in the database at `path` (its schema must exist).
pub(crate) fn stored_rooms(path: &Path) -> Result<HashSet<String>, String> {
    let read = || -> rusqlite::Result<HashSet<String>> {
        let conn = open_connection(path)?;
        let mut stmt = conn.prepare(SELECT_STORED_ROOMS)?;
        let rooms = stmt.query_map([], |r| r.get(0))?;
        rooms.collect()
    };
    read().map_err(|e| format!("cannot read the rooms in {}: {e}", path.display()))
}

/// Creates the first schema, then runs the migrations the database has not had yet, each
/// step in one transaction with its new version, so a crash leaves a whole step or none.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for statement in SCHEMA {
        conn.execute_batch(statement)?;
    }
    let version: i64 = conn
        .query_row(sql::SELECT_SCHEMA_VERSION, [], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let done = usize::try_from(version).unwrap_or(0);
    for (step, statements) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.unchecked_transaction()?;
        for statement in *statements {
            tx.execute_batch(statement)?;
        }
        tx.execute(sql::SET_SCHEMA_VERSION, params![step as i64 + 1])?;
        tx.commit()?;
    }
    Ok(())
}

/// The handler's `Storage` over a connection, for one room at a time: every statement
/// is keyed by `room`. The storage thread keeps one of these for all rooms and points it
/// at each job's room ([`SqliteStorage::set_room`]); it runs inside the thread's open
/// transaction, so nothing here begins or commits one of its own.
pub(crate) struct SqliteStorage {
    conn: Connection,
    room: String,
}

impl SqliteStorage {
    /// Opens a connection for `room`. The schema must already exist (see
    /// [`init_database`]).
    pub(crate) fn open(path: &Path, room: &str) -> StorageResult<Self> {
        Ok(SqliteStorage {
            conn: open_connection(path).map_err(storage_error)?,
            room: room.to_owned(),
        })
    }

    /// A private in-memory database with the schema (`--in-memory`): the storage
    /// thread's one connection is all there is of it, so it lasts as long as that.
    pub(crate) fn in_memory() -> StorageResult<Self> {
        let conn = Connection::open_in_memory().map_err(storage_error)?;
        migrate(&conn).map_err(storage_error)?;
        Ok(SqliteStorage {
            conn,
            room: String::new(),
        })
    }

    /// Points the statements at another room.
    pub(crate) fn set_room(&mut self, room: &str) {
        if self.room != room {
            self.room.clear();
            self.room.push_str(room);
        }
    }

    /// The connection, for the storage thread's transactions.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs one statement that returns no rows.
    fn run(&self, statement: &str, args: impl rusqlite::Params) -> StorageResult<()> {
        self.conn
            .prepare_cached(statement)
            .and_then(|mut s| s.execute(args))
            .map(drop)
            .map_err(storage_error)
    }

    fn messages(&self, sql: &str, extra: &[i64]) -> StorageResult<Vec<StoredMessage>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(storage_error)?;
        let mut args: Vec<&dyn rusqlite::ToSql> = vec![&self.room];
        args.extend(extra.iter().map(|v| v as &dyn rusqlite::ToSql));
        let rows = stmt
            .query_map(args.as_slice(), message_from_row)
            .map_err(storage_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(storage_error)
    }
}

/// Column names follow [`StoredMessage`]'s fields (see `chat_handler::storage::sql`).
fn message_from_row(row: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        seq: row.get("seq")?,
        timestamp: row.get("timestamp")?,
        name: row.get("name")?,
        message: row.get("message")?,
        user: row.get("user")?,
        cid: row.get("cid")?,
        sender: row.get("sender")?,
        role: row
            .get::<_, Option<String>>("role")?
            .and_then(|r| Role::parse(&r)),
        deleted: row.get("deleted")?,
        author: row.get("author")?,
        edited_at: row.get("edited_at")?,
        reactions: row.get("reactions")?,
    })
}

/// Only tests read audit rows back (see [`SqliteStorage::recent_audit`]).
#[cfg(test)]
fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        at_ms: row.get("at_ms")?,
        moderator: row.get("moderator")?,
        action: row.get("action")?,
        user: row.get("user")?,
        seq: row.get("seq")?,
        secs: row.get("secs")?,
    })
}

impl Storage for SqliteStorage {
    fn load_epoch(&mut self) -> StorageResult<Option<String>> {
        self.conn
            .prepare_cached(sql::SELECT_EPOCH)
            .and_then(|mut s| s.query_row(params![self.room], |r| r.get(0)).optional())
            .map_err(storage_error)
    }

    fn save_epoch(&mut self, epoch: &str) -> StorageResult<()> {
        self.conn
            .prepare_cached(sql::INIT_EPOCH)
            .and_then(|mut s| s.execute(params![self.room, epoch]))
            .map(drop)
            .map_err(storage_error)
    }

    fn latest(&mut self) -> StorageResult<Option<StoredMessage>> {
        Ok(self.messages(sql::SELECT_LATEST, &[])?.pop())
    }

    fn append(&mut self, msg: &StoredMessage) -> StorageResult<()> {
        let (seq, timestamp) = (to_i64(msg.seq)?, to_i64(msg.timestamp)?);
        self.conn
            .prepare_cached(sql::INSERT_MESSAGE)
            .and_then(|mut s| {
                s.execute(params![
                    self.room,
                    seq,
                    timestamp,
                    msg.name,
                    msg.message,
                    msg.user,
                    msg.cid,
                    msg.sender,
                    msg.role.map(Role::as_str),
                    msg.author
                ])
            })
            .map(drop)
            .map_err(storage_error)
    }

    fn last_n(&mut self, n: usize) -> StorageResult<Vec<StoredMessage>> {
        let mut v = self.messages(sql::SELECT_LAST_N, &[to_i64(n)?])?;
        // The statement returns newest first.
        v.reverse();
        Ok(v)
    }

    fn after(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        self.messages(sql::SELECT_AFTER, &[to_i64(seq)?, to_i64(limit)?])
    }

    fn before(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        let mut v = self.messages(sql::SELECT_BEFORE, &[to_i64(seq)?, to_i64(limit)?])?;
        // The statement returns newest first.
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
        let (after_seq, since_ms) = (to_i64(after_seq)?, to_i64(since_ms)?);
        let mut stmt = self
            .conn
            .prepare_cached(sql::SELECT_BY_CID)
            .map_err(storage_error)?;
        stmt.query_row(
            params![self.room, sender, cid, after_seq, since_ms],
            message_from_row,
        )
        .optional()
        .map_err(storage_error)
    }

    fn prune_through(&mut self, seq: u64) -> StorageResult<()> {
        let seq = to_i64(seq)?;
        self.run(sql::PRUNE_THROUGH, params![self.room, seq])?;
        self.run(sql::PRUNE_REACTIONS_THROUGH, params![self.room, seq])
    }

    fn save_bucket(&mut self, addr: &str, bucket: &Bucket) -> StorageResult<()> {
        let updated = to_i64(bucket.updated_ms)?;
        self.conn
            .prepare_cached(sql::UPSERT_BUCKET)
            .and_then(|mut s| s.execute(params![self.room, addr, bucket.tokens, updated]))
            .map(drop)
            .map_err(storage_error)
    }

    fn load_bucket(&mut self, addr: &str) -> StorageResult<Option<Bucket>> {
        self.conn
            .prepare_cached(sql::SELECT_BUCKET)
            .and_then(|mut s| {
                s.query_row(params![self.room, addr], |r| {
                    Ok(Bucket {
                        tokens: r.get("tokens")?,
                        updated_ms: r.get("updated_ms")?,
                    })
                })
                .optional()
            })
            .map_err(storage_error)
    }

    fn prune_buckets(&mut self, before_ms: u64) -> StorageResult<()> {
        // Clamping is exact here: no stored time exceeds i64::MAX (save_bucket refuses
        // one), so "before" any larger value still means every bucket.
        let before = i64::try_from(before_ms).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(sql::PRUNE_BUCKETS)
            .and_then(|mut s| s.execute(params![self.room, before]))
            .map(drop)
            .map_err(storage_error)
    }

    fn delete_message(&mut self, seq: u64, at_seq: u64) -> StorageResult<bool> {
        let (seq, at_seq) = (to_i64(seq)?, to_i64(at_seq)?);
        let deleted = self
            .conn
            .prepare_cached(sql::DELETE_MESSAGE)
            .and_then(|mut s| {
                s.query_row(params![self.room, seq, at_seq], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .map(|row| row.is_some())
            .map_err(storage_error)?;
        if deleted {
            self.run(sql::DELETE_REACTIONS_OF, params![self.room, seq])?;
        }
        Ok(deleted)
    }

    fn deleted_since(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<u64>> {
        let (seq, limit) = (to_i64(seq)?, to_i64(limit)?);
        let mut stmt = self
            .conn
            .prepare_cached(sql::SELECT_DELETED_SINCE)
            .map_err(storage_error)?;
        let rows = stmt
            .query_map(params![self.room, seq, limit], |r| r.get::<_, u64>(0))
            .map_err(storage_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(storage_error)
    }

    fn edit_message(
        &mut self,
        seq: u64,
        message: &str,
        edited_at: u64,
        at_seq: u64,
    ) -> StorageResult<bool> {
        let (seq, edited_at, at_seq) = (to_i64(seq)?, to_i64(edited_at)?, to_i64(at_seq)?);
        self.conn
            .prepare_cached(sql::EDIT_MESSAGE)
            .and_then(|mut s| {
                s.query_row(params![self.room, seq, message, edited_at, at_seq], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()
            })
            .map(|row| row.is_some())
            .map_err(storage_error)
    }

    fn edited_since(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        self.messages(sql::SELECT_EDITED_SINCE, &[to_i64(seq)?, to_i64(limit)?])
    }

    fn has_reaction(&mut self, seq: u64, emoji: &str, reactor: &str) -> StorageResult<bool> {
        let seq = to_i64(seq)?;
        self.conn
            .prepare_cached(sql::SELECT_REACTION)
            .and_then(|mut s| {
                s.query_row(params![self.room, seq, emoji, reactor], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()
            })
            .map(|row| row.is_some())
            .map_err(storage_error)
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
        let (seq, at_seq) = (to_i64(seq)?, to_i64(at_seq)?);
        let live = self
            .conn
            .prepare_cached(sql::SET_REACTIONS)
            .and_then(|mut s| {
                s.query_row(params![self.room, seq, counts, at_seq], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()
            })
            .map(|row| row.is_some())
            .map_err(storage_error)?;
        if live {
            let statement = if on {
                sql::INSERT_REACTION
            } else {
                sql::DELETE_REACTION
            };
            self.run(statement, params![self.room, seq, emoji, reactor])?;
        }
        Ok(live)
    }

    fn reacted_since(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        self.messages(sql::SELECT_REACTED_SINCE, &[to_i64(seq)?, to_i64(limit)?])
    }

    fn restriction(&mut self, user: &str) -> StorageResult<Restriction> {
        self.conn
            .prepare_cached(sql::SELECT_RESTRICTION)
            .and_then(|mut s| {
                s.query_row(params![self.room, user], |r| {
                    Ok(Restriction {
                        kicked_until: r.get("kicked_until")?,
                        muted_until: r.get("muted_until")?,
                        addrs: r.get("addrs")?,
                    })
                })
                .optional()
            })
            .map(Option::unwrap_or_default)
            .map_err(storage_error)
    }

    fn set_restriction(&mut self, user: &str, r: &Restriction) -> StorageResult<()> {
        if *r == Restriction::default() {
            return self
                .conn
                .prepare_cached(sql::DELETE_RESTRICTION)
                .and_then(|mut s| s.execute(params![self.room, user]))
                .map(drop)
                .map_err(storage_error);
        }
        let (kicked, muted) = (to_i64(r.kicked_until)?, to_i64(r.muted_until)?);
        self.conn
            .prepare_cached(sql::UPSERT_RESTRICTION)
            .and_then(|mut s| s.execute(params![self.room, user, kicked, muted, r.addrs]))
            .map(drop)
            .map_err(storage_error)
    }

    fn prune_restrictions(&mut self, now_ms: u64) -> StorageResult<u64> {
        let now = to_i64(now_ms)?;
        self.conn
            .prepare_cached(sql::PRUNE_RESTRICTIONS)
            .and_then(|mut s| s.execute(params![self.room, now]))
            .map_err(storage_error)?;
        self.conn
            .prepare_cached(sql::COUNT_RESTRICTIONS)
            .and_then(|mut s| s.query_row(params![self.room], |r| r.get("count")))
            .map_err(storage_error)
    }

    fn append_audit(&mut self, e: &AuditEntry, keep: usize) -> StorageResult<()> {
        let at = to_i64(e.at_ms)?;
        let seq = e.seq.map(to_i64).transpose()?;
        let secs = e.secs.map(to_i64).transpose()?;
        let keep = to_i64(keep)?;
        // Insert and prune together, so the table never holds more than `keep`. A
        // savepoint, as this runs inside the storage thread's transaction.
        let tx = self.conn.savepoint().map_err(storage_error)?;
        tx.prepare_cached(sql::INSERT_AUDIT)
            .and_then(|mut s| {
                s.execute(params![
                    self.room,
                    at,
                    e.moderator,
                    e.action,
                    e.user,
                    seq,
                    secs
                ])
            })
            .map_err(storage_error)?;
        tx.prepare_cached(sql::PRUNE_AUDIT)
            .and_then(|mut s| s.execute(params![self.room, keep]))
            .map_err(storage_error)?;
        tx.commit().map_err(storage_error)
    }
}

impl SqliteStorage {
    /// Up to `n` newest audit entries, newest first. Not the handler's: only tests read
    /// the audit table back (operators read it with `sqlite3`).
    #[cfg(test)]
    fn recent_audit(&mut self, n: usize) -> StorageResult<Vec<AuditEntry>> {
        let n = to_i64(n)?;
        let mut stmt = self
            .conn
            .prepare_cached(sql::SELECT_AUDIT)
            .map_err(storage_error)?;
        let rows = stmt
            .query_map(params![self.room, n], audit_from_row)
            .map_err(storage_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(storage_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_handler::{Action, Config, Peer, Room};

    #[test]
    fn a_database_from_the_first_release_is_migrated_with_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        {
            // The schema as the first release created it, with one message.
            let conn = open_connection(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE chat_messages (room TEXT NOT NULL, seq INTEGER NOT NULL,
                    timestamp INTEGER NOT NULL, name TEXT NOT NULL, message TEXT NOT NULL,
                    PRIMARY KEY (room, seq)) WITHOUT ROWID;
                 CREATE TABLE chat_rooms (room TEXT PRIMARY KEY, epoch TEXT NOT NULL);
                 INSERT INTO chat_rooms VALUES ('lobby', 'old-epoch');
                 INSERT INTO chat_messages VALUES ('lobby', 1, 1500, 'alice', 'kept');",
            )
            .unwrap();
        }
        // Twice: the second run finds every migration done.
        init_database(dir.path()).unwrap();
        init_database(dir.path()).unwrap();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        assert_eq!(s.load_epoch().unwrap().as_deref(), Some("old-epoch"));
        let kept = s.latest().unwrap().unwrap();
        assert_eq!(
            (kept.seq, kept.message.as_str(), kept.user),
            (1, "kept", None)
        );
        let v2 = StoredMessage {
            user: Some("u1".into()),
            cid: Some("c-1".into()),
            sender: Some("u1".into()),
            ..msg(2, "new")
        };
        s.append(&v2).unwrap();
        assert_eq!(s.latest().unwrap(), Some(v2));
        let conn = open_connection(&path).unwrap();
        let version: i64 = conn
            .query_row(sql::SELECT_SCHEMA_VERSION, [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
    }

    fn msg(seq: u64, text: &str) -> StoredMessage {
        StoredMessage {
            seq,
            timestamp: 1_000 + seq,
            name: "alice".to_owned(),
            message: text.to_owned(),
            ..Default::default()
        }
    }

    fn fresh() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = init_database(&dir.path().join("data")).unwrap();
        (dir, path)
    }

    #[test]
    fn messages_round_trip_and_query_in_order() {
        let (_dir, path) = fresh();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        assert_eq!(s.latest().unwrap(), None);
        assert!(s.last_n(10).unwrap().is_empty());
        for seq in 1..=5 {
            s.append(&msg(seq, &format!("m{seq} \u{1F600} \n\"quoted\"")))
                .unwrap();
        }
        assert_eq!(s.latest().unwrap().unwrap().seq, 5);
        let last: Vec<u64> = s.last_n(3).unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(last, [3, 4, 5]);
        assert_eq!(s.last_n(100).unwrap().len(), 5);
        let after: Vec<u64> = s.after(2, 2).unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(after, [3, 4]);
        assert!(s.after(5, 10).unwrap().is_empty());
        assert_eq!(
            s.after(0, 1).unwrap()[0],
            msg(1, "m1 \u{1F600} \n\"quoted\"")
        );
        // A seq stored twice is refused, not overwritten.
        assert!(s.append(&msg(5, "again")).is_err());
    }

    #[test]
    fn pages_before_a_seq_are_the_newest_ones_oldest_first() {
        let (_dir, path) = fresh();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        let mut other_room = SqliteStorage::open(&path, "other").unwrap();
        for seq in 1..=6 {
            s.append(&msg(seq, "x")).unwrap();
            other_room.append(&msg(seq, "y")).unwrap();
        }
        let page = |s: &mut SqliteStorage, before, limit| -> Vec<u64> {
            s.before(before, limit)
                .unwrap()
                .iter()
                .map(|m| m.seq)
                .collect()
        };
        assert_eq!(page(&mut s, 5, 2), [3, 4]);
        assert_eq!(page(&mut s, 3, 10), [1, 2]);
        assert_eq!(page(&mut s, 1, 10), Vec::<u64>::new());
        assert_eq!(page(&mut s, 7, 3), [4, 5, 6]);
        assert!(s.before(7, 1).unwrap().iter().all(|m| m.message == "x"));
    }

    fn with_cid(seq: u64, sender: &str, cid: &str) -> StoredMessage {
        StoredMessage {
            cid: Some(cid.to_owned()),
            sender: Some(sender.to_owned()),
            ..msg(seq, &format!("{sender} {cid}"))
        }
    }

    #[test]
    fn a_cid_is_found_for_its_sender_within_the_window() {
        let (_dir, path) = fresh();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        s.append(&with_cid(1, "ana", "k1")).unwrap();
        s.append(&with_cid(2, "bob", "k1")).unwrap();
        s.append(&msg(3, "no cid")).unwrap();
        s.append(&with_cid(4, "ana", "k2")).unwrap();
        let found = |s: &mut SqliteStorage, sender, cid, after, since| {
            s.find_cid(sender, cid, after, since)
                .unwrap()
                .map(|m| m.seq)
        };
        // Timestamps are 1000 + seq.
        assert_eq!(found(&mut s, "ana", "k1", 0, u64::MAX >> 1), Some(1));
        assert_eq!(found(&mut s, "bob", "k1", 0, u64::MAX >> 1), Some(2));
        assert_eq!(found(&mut s, "carol", "k1", 0, 0), None);
        assert_eq!(found(&mut s, "ana", "k3", 0, 0), None);
        // Outside both bounds: seq 1 is not above 1 and 1001 is before 1002.
        assert_eq!(found(&mut s, "ana", "k1", 1, 1002), None);
        // Inside either one.
        assert_eq!(found(&mut s, "ana", "k1", 0, 1002), Some(1));
        assert_eq!(found(&mut s, "ana", "k1", 1, 1001), Some(1));
        let mut other_room = SqliteStorage::open(&path, "other").unwrap();
        assert_eq!(found(&mut other_room, "ana", "k1", 0, 0), None);
    }

    #[test]
    fn the_cid_lookup_uses_the_cid_index() {
        let (_dir, path) = fresh();
        let conn = open_connection(&path).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", sql::SELECT_BY_CID))
            .unwrap()
            .query_map(params!["r", "s", "c", 0, 0], |r| {
                r.get::<_, String>("detail")
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        // The index answers the (sender, cid) part, the primary key the row: no step
        // walks the room's messages.
        assert!(
            plan.iter().any(|d| d.contains("chat_messages_by_cid")),
            "{plan:?}"
        );
        assert!(plan.iter().all(|d| !d.starts_with("SCAN")), "{plan:?}");
        assert!(
            plan.iter()
                .filter(|d| d.contains("PRIMARY KEY"))
                .all(|d| d.contains("seq=?")),
            "{plan:?}"
        );
    }

    #[test]
    fn prune_keeps_newer_messages() {
        let (_dir, path) = fresh();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        for seq in 1..=10 {
            s.append(&msg(seq, "x")).unwrap();
        }
        s.prune_through(7).unwrap();
        let left: Vec<u64> = s.last_n(100).unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(left, [8, 9, 10]);
        assert_eq!(s.after(0, 100).unwrap().len(), 3);
    }

    #[test]
    fn rooms_are_kept_apart() {
        let (_dir, path) = fresh();
        let mut a = SqliteStorage::open(&path, "a").unwrap();
        let mut b = SqliteStorage::open(&path, "b").unwrap();
        a.append(&msg(1, "in a")).unwrap();
        assert_eq!(b.latest().unwrap(), None);
        b.append(&msg(1, "in b")).unwrap();
        b.prune_through(1).unwrap();
        assert_eq!(a.latest().unwrap().unwrap().message, "in a");
        a.save_epoch("epoch-a").unwrap();
        b.save_epoch("epoch-b").unwrap();
        let (ea, eb) = (a.load_epoch().unwrap(), b.load_epoch().unwrap());
        assert_eq!(
            (ea.as_deref(), eb.as_deref()),
            (Some("epoch-a"), Some("epoch-b"))
        );
    }

    #[test]
    fn epoch_is_stored_once() {
        let (_dir, path) = fresh();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        assert_eq!(s.load_epoch().unwrap(), None);
        s.save_epoch("first").unwrap();
        s.save_epoch("second").unwrap();
        assert_eq!(s.load_epoch().unwrap().as_deref(), Some("first"));
        let mut again = SqliteStorage::open(&path, "lobby").unwrap();
        assert_eq!(again.load_epoch().unwrap().as_deref(), Some("first"));
    }

    #[test]
    fn connections_sync_every_commit() {
        let (_dir, path) = fresh();
        let conn = open_connection(&path).unwrap();
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        // 2 is FULL.
        assert_eq!(sync, 2);
    }

    #[test]
    fn a_bucket_is_kept_per_room_until_replaced() {
        let (_dir, path) = fresh();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        assert_eq!(s.load_bucket("127.0.0.1").unwrap(), None);
        let b = Bucket {
            tokens: 2.5,
            updated_ms: 1_764_000_000_000,
        };
        s.save_bucket("127.0.0.1", &b).unwrap();
        let newer = Bucket {
            tokens: 0.25,
            ..b.clone()
        };
        s.save_bucket("127.0.0.1", &newer).unwrap();
        let mut other_room = SqliteStorage::open(&path, "other").unwrap();
        assert_eq!(other_room.load_bucket("127.0.0.1").unwrap(), None);
        assert_eq!(s.load_bucket("127.0.0.1").unwrap(), Some(newer.clone()));
        assert_eq!(
            s.load_bucket("127.0.0.1").unwrap(),
            Some(newer),
            "still kept"
        );
    }

    #[test]
    fn pruning_forgets_only_older_buckets_of_this_room() {
        let (_dir, path) = fresh();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        let mut other_room = SqliteStorage::open(&path, "other").unwrap();
        let at = |updated_ms| Bucket {
            tokens: 1.0,
            updated_ms,
        };
        s.save_bucket("old", &at(1_000)).unwrap();
        s.save_bucket("edge", &at(2_000)).unwrap();
        s.save_bucket("new", &at(3_000)).unwrap();
        other_room.save_bucket("old", &at(1_000)).unwrap();
        s.prune_buckets(2_000).unwrap();
        assert_eq!(s.load_bucket("old").unwrap(), None);
        // "Before" is strict: a bucket updated at the cut-off stays.
        assert_eq!(s.load_bucket("edge").unwrap(), Some(at(2_000)));
        assert_eq!(s.load_bucket("new").unwrap(), Some(at(3_000)));
        assert_eq!(other_room.load_bucket("old").unwrap(), Some(at(1_000)));
        // A cut-off beyond SQLite's integers still means "everything before it".
        s.prune_buckets(u64::MAX).unwrap();
        assert_eq!(s.load_bucket("new").unwrap(), None);
        assert_eq!(s.load_bucket("edge").unwrap(), None);
    }

    #[test]
    fn schema_init_is_idempotent() {
        let (dir, path) = fresh();
        SqliteStorage::open(&path, "r")
            .unwrap()
            .append(&msg(1, "kept"))
            .unwrap();
        let again = init_database(&dir.path().join("data")).unwrap();
        assert_eq!(again, path);
        let mut s = SqliteStorage::open(&path, "r").unwrap();
        assert_eq!(s.latest().unwrap().unwrap().message, "kept");
    }

    fn frames(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { frame, .. } | Action::Broadcast { frame, .. } => {
                    Some(frame.to_string())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_room_survives_a_reopen() {
        let (_dir, path) = fresh();
        let peer = || Peer {
            addr: "127.0.0.1".to_owned(),
        };
        let epoch = {
            let storage = SqliteStorage::open(&path, "lobby").unwrap();
            let mut room = Room::open(Config::default(), storage, "epoch-1").unwrap();
            room.try_connect(1, peer(), 10).unwrap();
            room.on_text(1, r#"{"name":"alice"}"#, 10);
            for i in 0..3 {
                let out = room.on_text(1, &format!(r#"{{"message":"hi {i}"}}"#), 20 + i);
                assert!(frames(&out).iter().any(|f| f.contains(&format!("hi {i}"))));
            }
            assert_eq!(room.last_seq(), 3);
            room.epoch().to_owned()
        };
        let storage = SqliteStorage::open(&path, "lobby").unwrap();
        let mut room = Room::open(Config::default(), storage, "epoch-2").unwrap();
        assert_eq!(room.epoch(), epoch);
        assert_eq!(room.last_seq(), 3);
        room.try_connect(2, peer(), 100).unwrap();
        let hello = format!(r#"{{"name":"bob","resume":{{"epoch":"{epoch}","seq":1}}}}"#);
        let out = frames(&room.on_text(2, &hello, 100));
        assert!(
            out[0].contains("hi 1") && out[1].contains("hi 2"),
            "{out:?}"
        );
        assert!(
            out.last().unwrap().contains(r#""recovered":true"#),
            "{out:?}"
        );
        let out = frames(&room.on_text(2, r#"{"message":"after"}"#, 5));
        // Timestamps keep increasing across the reopen even if the clock went back.
        assert!(out[0].contains(r#""seq":4"#), "{out:?}");
        let after: serde_json::Value = serde_json::from_str(&out[0]).unwrap();
        assert!(after["timestamp"].as_u64().unwrap() > 22, "{after}");
    }

    #[test]
    fn a_tombstone_has_no_text_and_is_reported_to_resumes() {
        let (_dir, path) = fresh();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        let mut other = SqliteStorage::open(&path, "other").unwrap();
        for seq in 1..=5 {
            s.append(&msg(seq, &format!("secret {seq}"))).unwrap();
            other.append(&msg(seq, "other room")).unwrap();
        }
        assert!(s.delete_message(2, 5).unwrap());
        assert!(!s.delete_message(2, 5).unwrap(), "already deleted");
        assert!(!s.delete_message(9, 5).unwrap(), "never stored");
        assert!(s.delete_message(4, 6).unwrap());
        // The text is overwritten in the row itself, not filtered on the way out.
        let conn = open_connection(&path).unwrap();
        let raw: String = conn
            .query_row(
                "SELECT message FROM chat_messages WHERE room = 'lobby' AND seq = 2",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(raw, "");
        let gap = s.after(1, 10).unwrap();
        let flags: Vec<(u64, bool, &str)> = gap
            .iter()
            .map(|m| (m.seq, m.deleted, m.message.as_str()))
            .collect();
        assert_eq!(
            flags,
            [
                (2, true, ""),
                (3, false, "secret 3"),
                (4, true, ""),
                (5, false, "secret 5")
            ]
        );
        let backlog: Vec<u64> = s.last_n(3).unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(backlog, [1, 3, 5], "the backlog skips tombstones");
        assert_eq!(s.deleted_since(5, 10).unwrap(), [2, 4]);
        assert_eq!(s.deleted_since(3, 10).unwrap(), [2]);
        assert_eq!(
            s.deleted_since(6, 10).unwrap(),
            [4],
            "deleted when the room stood at 6"
        );
        assert_eq!(s.deleted_since(7, 10).unwrap(), Vec::<u64>::new());
        assert_eq!(s.deleted_since(5, 1).unwrap(), [2]);
        assert!(other.deleted_since(5, 10).unwrap().is_empty());
        assert_eq!(other.after(1, 1).unwrap()[0].message, "other room");
        s.prune_through(2).unwrap();
        assert_eq!(s.deleted_since(5, 10).unwrap(), [4]);
    }

    #[test]
    fn an_edit_replaces_the_text_and_is_reported_to_resumes() {
        let (_dir, path) = fresh();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        let mut other = SqliteStorage::open(&path, "other").unwrap();
        for seq in 1..=4 {
            let mut m = msg(seq, &format!("text {seq}"));
            m.author = Some(format!("c{seq}.1"));
            s.append(&m).unwrap();
            other.append(&msg(seq, "other room")).unwrap();
        }
        assert!(s.edit_message(2, "two!", 7_000, 4).unwrap());
        assert!(s.edit_message(3, "three!", 8_000, 6).unwrap());
        assert!(!s.edit_message(9, "x", 1, 4).unwrap(), "never stored");
        let two = &s.after(1, 1).unwrap()[0];
        assert_eq!(
            (two.message.as_str(), two.edited_at, two.author.as_deref()),
            ("two!", Some(7_000), Some("c2.1"))
        );
        let edited = |s: &mut SqliteStorage, seq, limit| -> Vec<(u64, String)> {
            s.edited_since(seq, limit)
                .unwrap()
                .into_iter()
                .map(|m| (m.seq, m.message))
                .collect()
        };
        assert_eq!(
            edited(&mut s, 4, 10),
            [(2, "two!".into()), (3, "three!".into())]
        );
        assert_eq!(edited(&mut s, 5, 10), [(3, "three!".into())], "edited at 6");
        assert_eq!(
            edited(&mut s, 2, 10),
            [(2, "two!".into())],
            "3 is in the gap"
        );
        assert_eq!(edited(&mut s, 4, 1), [(2, "two!".into())]);
        assert!(other.edited_since(4, 10).unwrap().is_empty());
        assert_eq!(other.after(1, 1).unwrap()[0].edited_at, None);
        // A deleted message is neither editable nor replayed as an edit.
        assert!(s.delete_message(2, 4).unwrap());
        assert!(!s.edit_message(2, "back", 9_000, 4).unwrap());
        assert_eq!(edited(&mut s, 4, 10), [(3, "three!".into())]);
    }

    #[test]
    fn restrictions_are_per_user_per_room_and_pruned_when_over() {
        let (_dir, path) = fresh();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        let mut other = SqliteStorage::open(&path, "other").unwrap();
        assert_eq!(s.restriction("u9").unwrap(), Restriction::default());
        // The addresses a user's row bound round-trip; an address's own row has a key
        // no user id can have (a control character).
        let r = Restriction {
            kicked_until: 5_000,
            muted_until: 9_000,
            addrs: Some(r#"["10.0.0.9","2001:db8::/64"]"#.into()),
        };
        s.set_restriction("u9", &r).unwrap();
        s.set_restriction(
            "u8",
            &Restriction {
                kicked_until: 1_000,
                muted_until: 0,
                addrs: None,
            },
        )
        .unwrap();
        other.set_restriction("u9", &r).unwrap();
        assert_eq!(s.restriction("u9").unwrap(), r);
        assert_eq!(s.prune_restrictions(0).unwrap(), 2, "both in force");
        assert_eq!(
            s.prune_restrictions(5_000).unwrap(),
            1,
            "u8 is over, u9 still muted"
        );
        assert_eq!(s.prune_restrictions(9_000).unwrap(), 0);
        assert_eq!(other.restriction("u9").unwrap(), r);
        other
            .set_restriction("u9", &Restriction::default())
            .unwrap();
        assert_eq!(
            other.prune_restrictions(0).unwrap(),
            0,
            "all zero removes the row"
        );
    }

    #[test]
    fn the_audit_table_keeps_the_newest_entries() {
        let (_dir, path) = fresh();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        let mut other = SqliteStorage::open(&path, "other").unwrap();
        let entry = |at_ms, action: &str| AuditEntry {
            at_ms,
            moderator: "mod".into(),
            action: action.into(),
            user: (action != "delete").then(|| "u9".to_owned()),
            seq: (action == "delete").then_some(at_ms),
            secs: (action != "delete").then_some(60),
        };
        other.append_audit(&entry(1, "kick"), 10).unwrap();
        for at in 1..=5 {
            let action = if at % 2 == 0 { "mute" } else { "delete" };
            s.append_audit(&entry(at, action), 3).unwrap();
        }
        let kept = s.recent_audit(10).unwrap();
        assert_eq!(
            kept,
            vec![entry(5, "delete"), entry(4, "mute"), entry(3, "delete")]
        );
        assert_eq!(other.recent_audit(10).unwrap(), vec![entry(1, "kick")]);
    }

    #[test]
    fn a_version_1_database_gets_the_moderation_tables_and_keeps_its_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        {
            let conn = open_connection(&path).unwrap();
            for statement in SCHEMA.iter().chain(MIGRATIONS[0].iter()) {
                conn.execute_batch(statement).unwrap();
            }
            conn.execute(sql::SET_SCHEMA_VERSION, params![1]).unwrap();
            conn.execute_batch(
                "INSERT INTO chat_messages (room, seq, timestamp, name, message, user)
                 VALUES ('lobby', 1, 1000, 'ana', 'before', 'u1')",
            )
            .unwrap();
        }
        init_database(dir.path()).unwrap();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        let m = s.latest().unwrap().unwrap();
        assert_eq!(
            (m.message.as_str(), m.user.as_deref(), m.deleted),
            ("before", Some("u1"), false)
        );
        assert!(s.delete_message(1, 1).unwrap());
        s.set_restriction(
            "u1",
            &Restriction {
                kicked_until: 1,
                muted_until: 2,
                addrs: None,
            },
        )
        .unwrap();
    }

    #[test]
    fn a_version_3_database_gets_the_role_column_and_keeps_its_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        {
            let conn = open_connection(&path).unwrap();
            let before_role = MIGRATIONS[..3].iter().flat_map(|m| m.iter());
            for statement in SCHEMA.iter().chain(before_role) {
                conn.execute_batch(statement).unwrap();
            }
            conn.execute(sql::SET_SCHEMA_VERSION, params![3]).unwrap();
            conn.execute_batch(
                "INSERT INTO chat_messages (room, seq, timestamp, name, message, user)
                 VALUES ('lobby', 1, 1000, 'ana', 'before', 'u1')",
            )
            .unwrap();
        }
        init_database(dir.path()).unwrap();
        let mut s = SqliteStorage::open(&path, "lobby").unwrap();
        let m = s.latest().unwrap().unwrap();
        assert_eq!((m.message.as_str(), m.role), ("before", None));
        let published = StoredMessage {
            user: Some("bot".into()),
            role: Some(Role::Service),
            ..msg(2, "published")
        };
        s.append(&published).unwrap();
        assert_eq!(s.latest().unwrap(), Some(published));
    }
}
