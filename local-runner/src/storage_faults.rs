//! Test only, with the cargo feature `test-faults` (which only the conformance build
//! turns on): storage calls that fail on purpose, so the conformance suite can see what
//! clients get when storage fails in a real backend. The hidden flag
//! `--test-storage-faults MARKER` sets them; the storage thread's room handles apply
//! them (`storage_thread::RoomStorage`). Without the feature neither exists.

use chat_handler::{StorageError, StoredMessage};

/// With marker `M`:
///
/// - storing a message whose text contains `M` fails (the handler then answers its
///   sender with an error and sends nothing);
/// - reading history (the backlog or a resume's gap) in a room whose name contains `M`
///   fails (the handler then refuses the join with 1011).
///
/// Everything else, including opening the room, works as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageFaults {
    marker: String,
}

impl StorageFaults {
    /// `None` for an empty marker, which would make every call fail.
    pub(crate) fn new(marker: &str) -> Option<Self> {
        (!marker.is_empty()).then(|| StorageFaults {
            marker: marker.to_owned(),
        })
    }

    pub(crate) fn fails_append(&self, msg: &StoredMessage) -> bool {
        msg.message.contains(&self.marker)
    }

    pub(crate) fn fails_history(&self, room: &str) -> bool {
        room.contains(&self.marker)
    }
}

/// The error of a call that failed on purpose.
pub(crate) fn injected(what: &str) -> StorageError {
    StorageError(format!("{what} failed on purpose (--test-storage-faults)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage_thread::{Database, StorageThread};
    use crate::stored_rooms::StoredRooms;
    use chat_handler::Storage;
    use prometheus_client::metrics::histogram::Histogram;
    use std::time::Duration;

    fn msg(seq: u64, message: &str) -> StoredMessage {
        StoredMessage {
            seq,
            timestamp: seq,
            name: "a".into(),
            message: message.into(),
            ..Default::default()
        }
    }

    fn thread(faults: Option<StorageFaults>) -> StorageThread {
        let histogram = Histogram::new(std::iter::empty());
        let thread = StorageThread::start(Database::Memory, StoredRooms::unbounded(), histogram);
        match faults {
            Some(faults) => thread.unwrap().with_faults(faults),
            None => thread.unwrap(),
        }
    }

    #[tokio::test]
    async fn faults_fail_only_marked_appends_and_marked_rooms_history() {
        assert_eq!(StorageFaults::new(""), None);
        let faulty = thread(StorageFaults::new("BOOM"));
        let mut s = faulty.room("plain");
        s.append(&msg(1, "fine")).unwrap();
        assert!(s.append(&msg(2, "a BOOM here")).is_err());
        s.append(&msg(2, "fine again")).unwrap();
        s.commit().await.unwrap();
        assert_eq!(s.last_n(10).unwrap().len(), 2);
        assert_eq!(s.after(0, 10).unwrap().len(), 2);

        let mut marked = faulty.room("room-BOOM-1");
        marked.save_epoch("e").unwrap();
        assert_eq!(marked.load_epoch().unwrap().as_deref(), Some("e"));
        marked.append(&msg(1, "stored")).unwrap();
        assert_eq!(marked.latest().unwrap().map(|m| m.seq), Some(1));
        assert!(marked.last_n(10).is_err());
        assert!(marked.after(0, 10).is_err());
        marked.commit().await.unwrap();
        faulty.stop(Duration::from_secs(5)).await;

        // Without the hook, nothing fails.
        let plain = thread(None);
        let mut s = plain.room("room-BOOM-1");
        s.append(&msg(1, "a BOOM here")).unwrap();
        assert_eq!(s.last_n(10).unwrap().len(), 1);
        s.commit().await.unwrap();
        plain.stop(Duration::from_secs(5)).await;
    }
}
