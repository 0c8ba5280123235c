//! Where room actors get their storage: the SQLite file, or (with `--in-memory`) the
//! handler's `MemoryStorage`, parked here while no actor holds it so that history
//! outlives idle actors and hibernation for the life of the process.

use crate::sqlite_storage::SqliteStorage;
use chat_handler::StorageResult;
use chat_handler::{AuditEntry, Bucket, Restriction};
use chat_handler::{MemoryStorage, Storage, StoredMessage};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

/// One room's storage, whichever backend holds it.
pub enum Store {
    Sqlite(SqliteStorage),
    Memory {
        room: String,
        storage: MemoryStorage,
        parking: Arc<Mutex<HashMap<String, MemoryStorage>>>,
    },
}

/// Hands out per-room storage.
#[derive(Clone)]
pub enum StoreFactory {
    Sqlite(PathBuf),
    Memory(Arc<Mutex<HashMap<String, MemoryStorage>>>),
}

impl StoreFactory {
    pub fn memory() -> Self {
        StoreFactory::Memory(Arc::default())
    }

    pub fn open(&self, room: &str) -> StorageResult<Store> {
        match self {
            StoreFactory::Sqlite(path) => SqliteStorage::open(path, room).map(Store::Sqlite),
            StoreFactory::Memory(parking) => {
                let storage = parking
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(room)
                    .unwrap_or_default();
                Ok(Store::Memory {
                    room: room.to_owned(),
                    storage,
                    parking: parking.clone(),
                })
            }
        }
    }
}

impl Drop for Store {
    /// Memory storage goes back to the parking map when its actor lets it go.
    fn drop(&mut self) {
        if let Store::Memory {
            room,
            storage,
            parking,
        } = self
        {
            parking
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(std::mem::take(room), std::mem::take(storage));
        }
    }
}

impl Store {
    fn inner(&mut self) -> &mut dyn Storage {
        match self {
            Store::Sqlite(s) => s,
            Store::Memory { storage, .. } => storage,
        }
    }
}

impl Storage for Store {
    fn load_or_init_epoch(&mut self, candidate: &str) -> StorageResult<String> {
        self.inner().load_or_init_epoch(candidate)
    }
    fn latest(&mut self) -> StorageResult<Option<StoredMessage>> {
        self.inner().latest()
    }
    fn append(&mut self, msg: &StoredMessage) -> StorageResult<()> {
        self.inner().append(msg)
    }
    fn last_n(&mut self, n: usize) -> StorageResult<Vec<StoredMessage>> {
        self.inner().last_n(n)
    }
    fn after(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        self.inner().after(seq, limit)
    }
    fn prune_through(&mut self, seq: u64) -> StorageResult<()> {
        self.inner().prune_through(seq)
    }
    fn save_bucket(&mut self, addr: &str, bucket: &Bucket) -> StorageResult<()> {
        self.inner().save_bucket(addr, bucket)
    }
    fn take_bucket(&mut self, addr: &str) -> StorageResult<Option<Bucket>> {
        self.inner().take_bucket(addr)
    }
    fn prune_buckets(&mut self, before_ms: u64) -> StorageResult<()> {
        self.inner().prune_buckets(before_ms)
    }
    fn delete_message(&mut self, seq: u64, at_seq: u64) -> StorageResult<bool> {
        self.inner().delete_message(seq, at_seq)
    }
    fn deleted_since(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<u64>> {
        self.inner().deleted_since(seq, limit)
    }
    fn restriction(&mut self, user: &str) -> StorageResult<Restriction> {
        self.inner().restriction(user)
    }
    fn set_restriction(&mut self, user: &str, r: &Restriction) -> StorageResult<()> {
        self.inner().set_restriction(user, r)
    }
    fn prune_restrictions(&mut self, now_ms: u64) -> StorageResult<()> {
        self.inner().prune_restrictions(now_ms)
    }
    fn restricted_users(&mut self) -> StorageResult<u64> {
        self.inner().restricted_users()
    }
    fn append_audit(&mut self, entry: &AuditEntry, keep: usize) -> StorageResult<()> {
        self.inner().append_audit(entry, keep)
    }
    fn recent_audit(&mut self, n: usize) -> StorageResult<Vec<AuditEntry>> {
        self.inner().recent_audit(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_history_outlives_the_store() {
        let factory = StoreFactory::memory();
        {
            let mut s = factory.open("r").unwrap();
            assert_eq!(s.load_or_init_epoch("e1").unwrap(), "e1");
            s.append(&StoredMessage {
                seq: 1,
                timestamp: 1,
                name: "a".into(),
                message: "m".into(),
                ..Default::default()
            })
            .unwrap();
        }
        let mut s = factory.open("r").unwrap();
        assert_eq!(s.load_or_init_epoch("e2").unwrap(), "e1");
        assert_eq!(s.latest().unwrap().map(|m| m.seq), Some(1));
        assert_eq!(factory.open("other").unwrap().latest().unwrap(), None);
    }
}
