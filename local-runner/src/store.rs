//! Where room actors get their storage: the SQLite file through the storage thread, or
//! (with `--in-memory`) the handler's `MemoryStorage`, parked here while no actor holds
//! it so that history outlives idle actors and hibernation for the life of the process.
//! A room with no history is not parked: an empty room costs nothing once it is gone.

use crate::storage_thread::{RoomStorage, StorageThread};
use chat_handler::Bucket;
use chat_handler::StorageResult;
use chat_handler::{MemoryStorage, Storage, StoredMessage};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

/// One room's storage, whichever backend holds it.
pub(crate) enum Store {
    Sqlite(RoomStorage),
    Memory {
        room: String,
        storage: MemoryStorage,
        parking: Arc<Mutex<HashMap<String, MemoryStorage>>>,
    },
}

/// Hands out per-room storage.
#[derive(Clone)]
pub(crate) enum StoreFactory {
    Sqlite(Arc<StorageThread>),
    Memory(Arc<Mutex<HashMap<String, MemoryStorage>>>),
}

impl StoreFactory {
    pub(crate) fn memory() -> Self {
        StoreFactory::Memory(Arc::default())
    }

    pub(crate) fn open(&self, room: &str) -> StorageResult<Store> {
        match self {
            StoreFactory::Sqlite(thread) => Ok(Store::Sqlite(thread.room(room))),
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

#[cfg(test)]
impl StoreFactory {
    /// Whether `room`'s memory storage is parked: it was opened, and no room holds it
    /// any more (the room hibernated, or its actor retired). Tests use it to see a
    /// hibernation happen.
    pub(crate) fn is_parked(&self, room: &str) -> bool {
        match self {
            StoreFactory::Sqlite(_) => false,
            StoreFactory::Memory(parking) => parking
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(room),
        }
    }
}

impl Drop for Store {
    /// Memory storage with history goes back to the parking map when its actor lets it
    /// go. Without history there is nothing to keep: the handler stores no epoch and no
    /// rate bucket for such a room, as it leaves no row in SQLite.
    fn drop(&mut self) {
        if let Store::Memory {
            room,
            storage,
            parking,
        } = self
        {
            if storage.is_empty() {
                return;
            }
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

    /// Whether a message (or the epoch) was stored and not yet committed: nothing may be
    /// sent until [`Store::commit`] says it is durable. Memory storage has nothing to
    /// commit.
    pub(crate) fn has_uncommitted(&self) -> bool {
        match self {
            Store::Sqlite(s) => s.has_uncommitted(),
            Store::Memory { .. } => false,
        }
    }

    /// Commits what this room has stored (see `storage_thread`).
    pub(crate) fn commit(&mut self) -> impl Future<Output = StorageResult<()>> + Send + 'static {
        let sqlite = match self {
            Store::Sqlite(s) => Some(s.commit()),
            Store::Memory { .. } => None,
        };
        async move {
            match sqlite {
                Some(commit) => commit.await,
                None => Ok(()),
            }
        }
    }
}

impl Storage for Store {
    fn load_epoch(&mut self) -> StorageResult<Option<String>> {
        self.inner().load_epoch()
    }
    fn save_epoch(&mut self, epoch: &str) -> StorageResult<()> {
        self.inner().save_epoch(epoch)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_history_outlives_the_store() {
        let factory = StoreFactory::memory();
        {
            let mut s = factory.open("r").unwrap();
            assert_eq!(s.load_epoch().unwrap(), None);
            s.save_epoch("e1").unwrap();
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
        assert_eq!(s.load_epoch().unwrap().as_deref(), Some("e1"));
        assert_eq!(s.latest().unwrap().map(|m| m.seq), Some(1));
        assert_eq!(factory.open("other").unwrap().latest().unwrap(), None);
    }

    #[test]
    fn a_memory_room_without_history_is_not_kept() {
        let factory = StoreFactory::memory();
        {
            let mut s = factory.open("empty").unwrap();
            // Not a message: a room with none keeps nothing, as in SQLite.
            s.save_bucket("a", &Bucket::full(1, 0)).unwrap();
        }
        assert!(!factory.is_parked("empty"));
        drop(factory.open("kept").unwrap().append(&StoredMessage {
            seq: 1,
            ..Default::default()
        }));
        assert!(factory.is_parked("kept"));
    }
}
