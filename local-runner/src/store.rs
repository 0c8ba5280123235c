//! Where room actors get their storage: the SQLite file through the storage thread, or
//! (with `--in-memory`) the handler's `MemoryStorage`, parked here while no actor holds
//! it so that history outlives idle actors and hibernation for the life of the process.
//! A room with no history is not parked: an empty room costs nothing once it is gone.
//!
//! Test only: [`StorageFaults`] (the hidden `--test-storage-faults MARKER` flag) makes
//! chosen storage calls fail, so the conformance suite can see what clients get when
//! storage fails in a real backend.

use crate::storage_thread::{RoomStorage, StorageThread};
use crate::stored_rooms::StoredRooms;
use chat_handler::{AuditEntry, Bucket, Restriction};
use chat_handler::{MemoryStorage, Storage, StoredMessage};
use chat_handler::{StorageError, StorageResult};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

/// One room's storage, whichever backend holds it.
pub struct Store {
    room: String,
    backing: Backing,
    faults: Option<Arc<StorageFaults>>,
    stored: Arc<StoredRooms>,
}

enum Backing {
    Sqlite(RoomStorage),
    Memory {
        storage: MemoryStorage,
        parking: Arc<Mutex<HashMap<String, MemoryStorage>>>,
    },
}

#[derive(Clone)]
enum Source {
    Sqlite(Arc<StorageThread>),
    Memory(Arc<Mutex<HashMap<String, MemoryStorage>>>),
}

/// Hands out per-room storage.
#[derive(Clone)]
pub struct StoreFactory {
    source: Source,
    faults: Option<Arc<StorageFaults>>,
    /// The rooms kept, under `--max-rooms-stored`.
    stored: Arc<StoredRooms>,
}

/// Test only: storage calls that fail on purpose. With marker `M`:
///
/// - storing a message whose text contains `M` fails (the handler then answers its
///   sender with an error and sends nothing);
/// - reading history (the backlog or a resume's gap) in a room whose name contains `M`
///   fails (the handler then refuses the join with 1011).
///
/// Everything else, including opening the room, works as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageFaults {
    marker: String,
}

impl StorageFaults {
    /// `None` for an empty marker, which would make every call fail.
    pub fn new(marker: &str) -> Option<Self> {
        (!marker.is_empty()).then(|| StorageFaults {
            marker: marker.to_owned(),
        })
    }

    fn fails_append(&self, msg: &StoredMessage) -> bool {
        msg.message.contains(&self.marker)
    }

    fn fails_history(&self, room: &str) -> bool {
        room.contains(&self.marker)
    }
}

fn injected(what: &str) -> StorageError {
    StorageError(format!("{what} failed on purpose (--test-storage-faults)"))
}

impl StoreFactory {
    pub(crate) fn sqlite(thread: Arc<StorageThread>) -> Self {
        StoreFactory {
            source: Source::Sqlite(thread),
            faults: None,
            stored: StoredRooms::unbounded(),
        }
    }

    pub fn memory() -> Self {
        StoreFactory {
            source: Source::Memory(Arc::default()),
            faults: None,
            stored: StoredRooms::unbounded(),
        }
    }

    /// The same, with the rooms it holds counted (and bounded) by `stored`.
    pub(crate) fn with_stored_rooms(self, stored: Arc<StoredRooms>) -> Self {
        StoreFactory { stored, ..self }
    }

    /// The rooms stored, and their bound.
    pub(crate) fn stored_rooms(&self) -> &Arc<StoredRooms> {
        &self.stored
    }

    /// Whether `room`'s memory storage is parked: it was opened, and no room holds it
    /// any more (the room hibernated, or its actor retired). Tests use it to see a
    /// hibernation happen.
    #[cfg(test)]
    pub(crate) fn is_parked(&self, room: &str) -> bool {
        match &self.source {
            Source::Sqlite(_) => false,
            Source::Memory(parking) => parking
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(room),
        }
    }

    /// Test only: every store from this factory fails as `faults` says.
    pub fn with_faults(self, faults: StorageFaults) -> Self {
        StoreFactory {
            faults: Some(Arc::new(faults)),
            ..self
        }
    }

    /// The commit handle of `room`'s storage.
    pub(crate) fn committer(&self, room: &str) -> Committer {
        Committer(match &self.source {
            Source::Sqlite(thread) => Some(thread.room(room)),
            Source::Memory(_) => None,
        })
    }

    pub fn open(&self, room: &str) -> StorageResult<Store> {
        let backing = match &self.source {
            Source::Sqlite(thread) => Backing::Sqlite(thread.room(room)),
            Source::Memory(parking) => {
                let storage = parking
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(room)
                    .unwrap_or_default();
                Backing::Memory {
                    storage,
                    parking: parking.clone(),
                }
            }
        };
        Ok(Store {
            room: room.to_owned(),
            backing,
            faults: self.faults.clone(),
            stored: self.stored.clone(),
        })
    }
}

impl Drop for Store {
    /// Memory storage with history (or restrictions, or an audit) goes back to the
    /// parking map when its actor lets it go. Without any there is nothing to keep: the
    /// handler stores no epoch for such a room, as it leaves no row in SQLite.
    fn drop(&mut self) {
        if let Backing::Memory { storage, parking } = &mut self.backing {
            if !storage.holds_room_state() {
                return;
            }
            parking
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(std::mem::take(&mut self.room), std::mem::take(storage));
        }
    }
}

impl Store {
    fn inner(&mut self) -> &mut dyn Storage {
        match &mut self.backing {
            Backing::Sqlite(s) => s,
            Backing::Memory { storage, .. } => storage,
        }
    }

    /// Test only: fails a history read if the faults say so.
    fn check_history(&self) -> StorageResult<()> {
        match &self.faults {
            Some(f) if f.fails_history(&self.room) => Err(injected("reading history")),
            _ => Ok(()),
        }
    }
}

/// Commits what one room has stored (see `storage_thread`), for the actor to call when
/// the handler returns a commit barrier. A handle of its own: the storage thread tracks
/// each room's failed writes by name, so it need not be the room's storage itself.
pub(crate) struct Committer(Option<RoomStorage>);

impl Committer {
    pub(crate) fn commit(&mut self) -> impl Future<Output = StorageResult<()>> + Send + 'static {
        // Memory storage has nothing to commit.
        let sqlite = self.0.as_mut().map(RoomStorage::commit);
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
    /// A room's epoch is stored with its first message: from then on the room counts
    /// under `--max-rooms-stored`, and past the bound it cannot start (see
    /// `stored_rooms`).
    fn save_epoch(&mut self, epoch: &str) -> StorageResult<()> {
        if !self.stored.mark(&self.room) {
            return Err(StorageError(format!(
                "--max-rooms-stored ({}) reached: a new room stores nothing",
                self.stored.max()
            )));
        }
        self.inner().save_epoch(epoch)
    }
    fn latest(&mut self) -> StorageResult<Option<StoredMessage>> {
        self.inner().latest()
    }
    fn append(&mut self, msg: &StoredMessage) -> StorageResult<()> {
        if self.faults.as_ref().is_some_and(|f| f.fails_append(msg)) {
            return Err(injected("storing the message"));
        }
        self.inner().append(msg)
    }
    fn last_n(&mut self, n: usize) -> StorageResult<Vec<StoredMessage>> {
        self.check_history()?;
        self.inner().last_n(n)
    }
    fn after(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        self.check_history()?;
        self.inner().after(seq, limit)
    }
    fn before(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        self.inner().before(seq, limit)
    }
    fn find_cid(
        &mut self,
        sender: &str,
        cid: &str,
        after_seq: u64,
        since_ms: u64,
    ) -> StorageResult<Option<StoredMessage>> {
        self.inner().find_cid(sender, cid, after_seq, since_ms)
    }
    fn prune_through(&mut self, seq: u64) -> StorageResult<()> {
        self.inner().prune_through(seq)
    }
    fn save_bucket(&mut self, addr: &str, bucket: &Bucket) -> StorageResult<()> {
        self.inner().save_bucket(addr, bucket)
    }
    fn load_bucket(&mut self, addr: &str) -> StorageResult<Option<Bucket>> {
        self.inner().load_bucket(addr)
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
    fn prune_restrictions(&mut self, now_ms: u64) -> StorageResult<u64> {
        self.inner().prune_restrictions(now_ms)
    }
    fn append_audit(&mut self, entry: &AuditEntry, keep: usize) -> StorageResult<()> {
        self.inner().append_audit(entry, keep)
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

    #[test]
    fn a_new_room_cannot_store_its_epoch_past_the_bound() {
        use prometheus_client::metrics::gauge::Gauge;
        let stored = StoredRooms::new(1, Default::default(), Gauge::default());
        let factory = StoreFactory::memory().with_stored_rooms(stored.clone());
        let mut first = factory.open("first").unwrap();
        first.save_epoch("e1").unwrap();
        first.append(&msg(1, "kept")).unwrap();
        let mut second = factory.open("second").unwrap();
        assert!(second.save_epoch("e2").is_err());
        assert_eq!(second.load_epoch().unwrap(), None, "nothing stored");
        // The stored room goes on storing.
        first.save_epoch("e1").unwrap();
        first.append(&msg(2, "more")).unwrap();
        assert_eq!(stored.count(), 1);
    }

    fn msg(seq: u64, message: &str) -> StoredMessage {
        StoredMessage {
            seq,
            timestamp: seq,
            name: "a".into(),
            message: message.into(),
            ..Default::default()
        }
    }

    #[test]
    fn faults_fail_only_marked_appends_and_marked_rooms_history() {
        assert_eq!(StorageFaults::new(""), None);
        let faults = StorageFaults::new("BOOM").unwrap();
        let factory = StoreFactory::memory().with_faults(faults);
        let mut s = factory.open("plain").unwrap();
        s.append(&msg(1, "fine")).unwrap();
        assert!(s.append(&msg(2, "a BOOM here")).is_err());
        s.append(&msg(2, "fine again")).unwrap();
        assert_eq!(s.last_n(10).unwrap().len(), 2);
        assert_eq!(s.after(0, 10).unwrap().len(), 2);

        let mut marked = factory.open("room-BOOM-1").unwrap();
        marked.save_epoch("e").unwrap();
        assert_eq!(marked.load_epoch().unwrap().as_deref(), Some("e"));
        marked.append(&msg(1, "stored")).unwrap();
        assert_eq!(marked.latest().unwrap().map(|m| m.seq), Some(1));
        assert!(marked.last_n(10).is_err());
        assert!(marked.after(0, 10).is_err());
        // Without the hook, nothing fails.
        let mut s = StoreFactory::memory().open("room-BOOM-1").unwrap();
        s.append(&msg(1, "a BOOM here")).unwrap();
        assert_eq!(s.last_n(10).unwrap().len(), 1);
    }
}
