//! [`chat_handler::Storage`] over the Durable Object's SQLite (`state.storage().sql()`),
//! running exactly the handler's schema and statements so both backends share one
//! definition of the data.

use crate::storage_ops::StorageOps;
use chat_handler::{sql, MIGRATIONS, SCHEMA};
use chat_handler::{AuditEntry, Bucket, Restriction, Role};
use chat_handler::{Storage, StorageError, StoredMessage};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::rc::Rc;
use worker::{SqlStorage, SqlStorageValue};

/// The room key bound as `?1` in every statement. One Durable Object is one room and owns
/// its own database, so the key carries no information: a constant keeps rows valid
/// whichever way the object was addressed (`id_from_name` or `id_from_string`; an
/// object does not even learn its name in the latter case), and costs nothing.
const ROOM_KEY: &str = "";

/// The largest integer a JS number holds exactly. SQLite values cross into JS as
/// numbers, so seqs and timestamps (u64 in the handler) must stay at or below it. They
/// do by a wide margin (timestamps are ~2^41 ms; seq grows by one per message), but a
/// value beyond it is refused as a storage error instead of being silently rounded.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

pub struct DoSqlStorage {
    sql: SqlStorage,
    /// Every statement run is counted here (the object's report line).
    ops: Rc<StorageOps>,
}

#[derive(Deserialize)]
struct EpochRow {
    epoch: String,
}

#[derive(Deserialize)]
struct VersionRow {
    value: f64,
}

#[derive(Deserialize)]
struct SeqRow {
    seq: u64,
}

#[derive(Deserialize)]
struct CountRow {
    count: f64,
}

impl DoSqlStorage {
    /// Wraps the object's database, creating the tables and running the migrations it
    /// has not had yet. `CREATE ... IF NOT EXISTS` and one version read make this cheap
    /// on every construction of the object. A Durable Object runs a synchronous block of
    /// storage calls atomically (output gates), so a step and its version land together.
    pub fn open(sql: SqlStorage, ops: Rc<StorageOps>) -> Result<Self, StorageError> {
        for statement in SCHEMA {
            ops.sql();
            sql.exec(statement, None).map_err(err)?;
        }
        let storage = DoSqlStorage { sql, ops };
        let rows: Vec<VersionRow> = storage.rows(sql::SELECT_SCHEMA_VERSION, vec![])?;
        let done = rows.first().map_or(0, |r| r.value as usize);
        for (step, statements) in MIGRATIONS.iter().enumerate().skip(done) {
            for statement in *statements {
                storage.run(statement, vec![])?;
            }
            storage.run(sql::SET_SCHEMA_VERSION, vec![int(step as u64 + 1)?])?;
        }
        Ok(storage)
    }

    fn run(&self, query: &str, params: Vec<SqlStorageValue>) -> Result<(), StorageError> {
        // `exec` runs the statement eagerly; the cursor only matters for reads.
        self.ops.sql();
        self.sql.exec(query, params).map(drop).map_err(err)
    }

    fn rows<T: DeserializeOwned>(
        &self,
        query: &str,
        params: Vec<SqlStorageValue>,
    ) -> Result<Vec<T>, StorageError> {
        self.ops.sql();
        self.sql
            .exec(query, params)
            .and_then(|cursor| cursor.to_array())
            .map_err(err)
    }
}

fn err(e: worker::Error) -> StorageError {
    StorageError(e.to_string())
}

/// A u64 as an exact SQLite integer (see [`MAX_SAFE_INTEGER`]).
fn int(v: u64) -> Result<SqlStorageValue, StorageError> {
    if v > MAX_SAFE_INTEGER {
        return Err(StorageError(format!(
            "{v} exceeds the integer range JS numbers hold exactly"
        )));
    }
    Ok(SqlStorageValue::Integer(v as i64))
}

/// An optional u64: NULL when absent.
fn opt_int(v: Option<u64>) -> Result<SqlStorageValue, StorageError> {
    v.map_or(Ok(SqlStorageValue::Null), int)
}

fn key() -> SqlStorageValue {
    SqlStorageValue::from(ROOM_KEY)
}

impl Storage for DoSqlStorage {
    fn load_epoch(&mut self) -> Result<Option<String>, StorageError> {
        let rows: Vec<EpochRow> = self.rows(sql::SELECT_EPOCH, vec![key()])?;
        Ok(rows.into_iter().next().map(|r| r.epoch))
    }

    fn save_epoch(&mut self, epoch: &str) -> Result<(), StorageError> {
        self.run(sql::INIT_EPOCH, vec![key(), epoch.into()])
    }

    fn latest(&mut self) -> Result<Option<StoredMessage>, StorageError> {
        let rows: Vec<StoredMessage> = self.rows(sql::SELECT_LATEST, vec![key()])?;
        Ok(rows.into_iter().next())
    }

    fn append(&mut self, msg: &StoredMessage) -> Result<(), StorageError> {
        let params = vec![
            key(),
            int(msg.seq)?,
            int(msg.timestamp)?,
            msg.name.as_str().into(),
            msg.message.as_str().into(),
            msg.user.as_deref().into(),
            msg.cid.as_deref().into(),
            msg.sender.as_deref().into(),
            msg.role.map(Role::as_str).into(),
            msg.author.as_deref().into(),
        ];
        self.run(sql::INSERT_MESSAGE, params)
    }

    fn last_n(&mut self, n: usize) -> Result<Vec<StoredMessage>, StorageError> {
        let mut rows: Vec<StoredMessage> =
            self.rows(sql::SELECT_LAST_N, vec![key(), int(n as u64)?])?;
        rows.reverse();
        Ok(rows)
    }

    fn after(&mut self, seq: u64, limit: usize) -> Result<Vec<StoredMessage>, StorageError> {
        self.rows(
            sql::SELECT_AFTER,
            vec![key(), int(seq)?, int(limit as u64)?],
        )
    }

    fn before(&mut self, seq: u64, limit: usize) -> Result<Vec<StoredMessage>, StorageError> {
        let mut rows: Vec<StoredMessage> = self.rows(
            sql::SELECT_BEFORE,
            vec![key(), int(seq)?, int(limit as u64)?],
        )?;
        rows.reverse();
        Ok(rows)
    }

    fn find_cid(
        &mut self,
        sender: &str,
        cid: &str,
        after_seq: u64,
        since_ms: u64,
    ) -> Result<Option<StoredMessage>, StorageError> {
        let params = vec![
            key(),
            sender.into(),
            cid.into(),
            int(after_seq)?,
            int(since_ms)?,
        ];
        let rows: Vec<StoredMessage> = self.rows(sql::SELECT_BY_CID, params)?;
        Ok(rows.into_iter().next())
    }

    fn prune_through(&mut self, seq: u64) -> Result<(), StorageError> {
        self.run(sql::PRUNE_THROUGH, vec![key(), int(seq)?])?;
        self.run(sql::PRUNE_REACTIONS_THROUGH, vec![key(), int(seq)?])
    }

    fn save_bucket(&mut self, addr: &str, bucket: &Bucket) -> Result<(), StorageError> {
        let params = vec![
            key(),
            addr.into(),
            SqlStorageValue::Float(bucket.tokens),
            int(bucket.updated_ms)?,
        ];
        self.run(sql::UPSERT_BUCKET, params)
    }

    fn load_bucket(&mut self, addr: &str) -> Result<Option<Bucket>, StorageError> {
        let rows: Vec<Bucket> = self.rows(sql::SELECT_BUCKET, vec![key(), addr.into()])?;
        Ok(rows.into_iter().next())
    }

    fn prune_buckets(&mut self, before_ms: u64) -> Result<(), StorageError> {
        self.run(sql::PRUNE_BUCKETS, vec![key(), int(before_ms)?])
    }

    fn delete_message(&mut self, seq: u64, at_seq: u64) -> Result<bool, StorageError> {
        let rows: Vec<SeqRow> =
            self.rows(sql::DELETE_MESSAGE, vec![key(), int(seq)?, int(at_seq)?])?;
        if rows.is_empty() {
            return Ok(false);
        }
        self.run(sql::DELETE_REACTIONS_OF, vec![key(), int(seq)?])?;
        Ok(true)
    }

    fn deleted_since(&mut self, seq: u64, limit: usize) -> Result<Vec<u64>, StorageError> {
        let rows: Vec<SeqRow> = self.rows(
            sql::SELECT_DELETED_SINCE,
            vec![key(), int(seq)?, int(limit as u64)?],
        )?;
        Ok(rows.into_iter().map(|r| r.seq).collect())
    }

    fn edit_message(
        &mut self,
        seq: u64,
        message: &str,
        edited_at: u64,
        at_seq: u64,
    ) -> Result<bool, StorageError> {
        let params = vec![
            key(),
            int(seq)?,
            message.into(),
            int(edited_at)?,
            int(at_seq)?,
        ];
        let rows: Vec<SeqRow> = self.rows(sql::EDIT_MESSAGE, params)?;
        Ok(!rows.is_empty())
    }

    fn edited_since(&mut self, seq: u64, limit: usize) -> Result<Vec<StoredMessage>, StorageError> {
        self.rows(
            sql::SELECT_EDITED_SINCE,
            vec![key(), int(seq)?, int(limit as u64)?],
        )
    }

    fn has_reaction(&mut self, seq: u64, emoji: &str, reactor: &str) -> Result<bool, StorageError> {
        let params = vec![key(), int(seq)?, emoji.into(), reactor.into()];
        let rows: Vec<SeqRow> = self.rows(sql::SELECT_REACTION, params)?;
        Ok(!rows.is_empty())
    }

    fn set_reaction(
        &mut self,
        seq: u64,
        emoji: &str,
        reactor: &str,
        on: bool,
        counts: Option<&str>,
        at_seq: u64,
    ) -> Result<bool, StorageError> {
        let params = vec![key(), int(seq)?, counts.into(), int(at_seq)?];
        let rows: Vec<SeqRow> = self.rows(sql::SET_REACTIONS, params)?;
        if rows.is_empty() {
            return Ok(false);
        }
        let statement = if on {
            sql::INSERT_REACTION
        } else {
            sql::DELETE_REACTION
        };
        self.run(
            statement,
            vec![key(), int(seq)?, emoji.into(), reactor.into()],
        )?;
        Ok(true)
    }

    fn reacted_since(
        &mut self,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StorageError> {
        self.rows(
            sql::SELECT_REACTED_SINCE,
            vec![key(), int(seq)?, int(limit as u64)?],
        )
    }

    fn restriction(&mut self, user: &str) -> Result<Restriction, StorageError> {
        let rows: Vec<Restriction> =
            self.rows(sql::SELECT_RESTRICTION, vec![key(), user.into()])?;
        Ok(rows.into_iter().next().unwrap_or_default())
    }

    fn set_restriction(&mut self, user: &str, r: &Restriction) -> Result<(), StorageError> {
        if *r == Restriction::default() {
            return self.run(sql::DELETE_RESTRICTION, vec![key(), user.into()]);
        }
        let params = vec![
            key(),
            user.into(),
            int(r.kicked_until)?,
            int(r.muted_until)?,
            r.addrs.as_deref().into(),
        ];
        self.run(sql::UPSERT_RESTRICTION, params)
    }

    fn prune_restrictions(&mut self, now_ms: u64) -> Result<u64, StorageError> {
        self.run(sql::PRUNE_RESTRICTIONS, vec![key(), int(now_ms)?])?;
        let rows: Vec<CountRow> = self.rows(sql::COUNT_RESTRICTIONS, vec![key()])?;
        Ok(rows.first().map_or(0, |r| r.count as u64))
    }

    fn append_audit(&mut self, e: &AuditEntry, keep: usize) -> Result<(), StorageError> {
        let params = vec![
            key(),
            int(e.at_ms)?,
            e.moderator.as_str().into(),
            e.action.as_str().into(),
            e.user.as_deref().into(),
            opt_int(e.seq)?,
            opt_int(e.secs)?,
        ];
        // Both in one synchronous block, which a Durable Object commits together.
        self.run(sql::INSERT_AUDIT, params)?;
        self.run(sql::PRUNE_AUDIT, vec![key(), int(keep as u64)?])
    }
}
