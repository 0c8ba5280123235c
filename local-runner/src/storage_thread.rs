//! Every room's history through one SQLite connection on a thread of its own, with group
//! commit.
//!
//! Room actors never hold a connection (an empty room costs no file handle). Each has a
//! [`RoomStorage`], the handler's `Storage` for its room, which sends every call here as
//! a job. The thread runs jobs in the order they arrive inside one open transaction, and
//! commits when no job is waiting (or after [`MAX_JOBS_PER_COMMIT`]): one commit, and
//! with `synchronous=FULL` one sync of the log, for whatever all rooms wrote meanwhile.
//!
//! - Writes do not wait: they return `Ok` at once. A durable write's failure (a message,
//!   the epoch) is reported by the room's next [`RoomStorage::commit`], which the room
//!   actor asks for when the handler returns a commit barrier. The other writes (pruning, kept rate
//!   buckets) are best effort, as the handler already treats them: a failure is logged.
//! - Reads wait for their answer, in a way that does not stall the async runtime
//!   (`block_in_place`). They run on the same connection after every job sent before
//!   them, so a room reads its own writes even before they are committed.
//! - A room actor holds everything it would send after a durable write (the broadcast of
//!   that message, and anything a later read built on it) until its commit says the
//!   transaction holding the write is on disk. So a message is durable before anyone sees
//!   it, and no seq a client has seen can be lost and reused, after `kill -9` or power
//!   loss alike; a commit that fails sends nothing (see `room_actor`).
//!
//! A new `Storage` method goes in two places: the statements in `SqliteStorage` (run
//! here), and one forwarding line in `impl Storage for RoomStorage` below (a read, a
//! durable write or a best-effort write).

use crate::sqlite_storage::SqliteStorage;
use chat_handler::{AuditEntry, Bucket, Restriction};
use chat_handler::{Storage, StorageError, StorageResult, StoredMessage};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

/// Most jobs in one transaction. Under a flood of writes a commit still comes this
/// often, so one transaction (and the log) cannot grow without bound, nor can the rooms
/// waiting for it.
const MAX_JOBS_PER_COMMIT: usize = 4096;

/// The storage's answer when its thread has stopped (only during shutdown).
fn stopped() -> StorageError {
    StorageError("the storage thread has stopped".to_owned())
}

type Work = Box<dyn FnOnce(&mut SqliteStorage) -> StorageResult<()> + Send>;

/// What a write's failure means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A read: its result goes back to the caller inside the job.
    Read,
    /// Must be on disk before anything based on it is sent (a message, the epoch).
    Durable,
    /// Losing it only forgives a client or keeps extra history.
    BestEffort,
}

enum Job {
    Run {
        room: Arc<str>,
        kind: Kind,
        work: Work,
    },
    /// Answers once everything `room` sent before it is committed.
    Commit {
        room: Arc<str>,
        reply: oneshot::Sender<StorageResult<()>>,
    },
    Stop,
}

/// The storage thread. Dropping every [`RoomStorage`] and this does not stop it; call
/// [`StorageThread::stop`].
pub(crate) struct StorageThread {
    jobs: std_mpsc::Sender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl StorageThread {
    /// Opens the database (its schema must exist, see `sqlite_storage::init_database`)
    /// and starts the thread.
    pub(crate) fn start(path: &Path) -> Result<Arc<Self>, String> {
        let storage = SqliteStorage::open(path, "")
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let (jobs, inbox) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("storage".to_owned())
            .spawn(move || run(storage, inbox))
            .map_err(|e| format!("cannot start the storage thread: {e}"))?;
        Ok(Arc::new(StorageThread {
            jobs,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// The storage of one room. Costs nothing until used: no connection, no I/O.
    pub(crate) fn room(&self, room: &str) -> RoomStorage {
        RoomStorage {
            room: Arc::from(room),
            jobs: self.jobs.clone(),
        }
    }

    /// Runs the jobs already sent, commits them and stops the thread, waiting at most
    /// `bound` for it. Anything sent later fails with a storage error.
    pub(crate) async fn stop(&self, bound: Duration) {
        let _ = self.jobs.send(Job::Stop);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(thread) = thread else {
            return;
        };
        let joined = tokio::task::spawn_blocking(move || thread.join());
        match tokio::time::timeout(bound, joined).await {
            Ok(Ok(Ok(()))) => debug!("storage thread stopped"),
            Ok(_) => error!("the storage thread panicked"),
            Err(_) => warn!("the storage thread did not stop in time"),
        }
    }
}

/// The thread: jobs in arrival order, in transactions of whatever is waiting.
fn run(mut storage: SqliteStorage, inbox: std_mpsc::Receiver<Job>) {
    // Rooms whose durable writes failed, until their next commit reports it.
    let mut failed: HashMap<Arc<str>, StorageError> = HashMap::new();
    while let Ok(first) = inbox.recv() {
        let mut batch = Batch::begin(&storage);
        let mut next = Some(first);
        let mut jobs = 0;
        let mut stop = false;
        while let Some(job) = next.take() {
            match job {
                Job::Run { room, kind, work } => {
                    storage.set_room(&room);
                    let result = work(&mut storage);
                    batch.ran(&storage, &room, kind, result, &mut failed);
                }
                Job::Commit { room, reply } => batch.waiting.push((room, reply)),
                Job::Stop => stop = true,
            }
            jobs += 1;
            if !stop && jobs < MAX_JOBS_PER_COMMIT {
                next = inbox.try_recv().ok();
            }
        }
        batch.commit(&storage, &mut failed);
        if stop {
            break;
        }
    }
    debug!("storage thread done");
}

/// One transaction's bookkeeping.
struct Batch {
    /// Rooms with a durable write in this transaction: they all lose it if it fails.
    durable: HashSet<Arc<str>>,
    /// Commit requests, answered after the commit.
    waiting: Vec<(Arc<str>, oneshot::Sender<StorageResult<()>>)>,
    /// Whether `BEGIN` succeeded; without it each statement commits on its own, which is
    /// slower but just as durable.
    open: bool,
}

impl Batch {
    fn begin(storage: &SqliteStorage) -> Self {
        let open = match storage.conn().execute_batch("BEGIN") {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "cannot begin a transaction");
                false
            }
        };
        Batch {
            durable: HashSet::new(),
            waiting: Vec::new(),
            open,
        }
    }

    /// Records a job's outcome.
    fn ran(
        &mut self,
        storage: &SqliteStorage,
        room: &Arc<str>,
        kind: Kind,
        result: StorageResult<()>,
        failed: &mut HashMap<Arc<str>, StorageError>,
    ) {
        match (kind, result) {
            (Kind::Durable, Ok(())) => {
                self.durable.insert(room.clone());
            }
            (Kind::Durable, Err(e)) => {
                failed.entry(room.clone()).or_insert(e);
            }
            (Kind::BestEffort, Err(e)) => debug!(error = %e, "best-effort write failed"),
            _ => {}
        }
        // Some errors (a full disk, I/O) roll the whole transaction back: every room
        // that wrote in it lost its writes. Carry on in a new one.
        if self.open && storage.conn().is_autocommit() {
            warn!("the transaction was rolled back by an error");
            self.lose_all(failed, "the transaction was rolled back");
            *self = Batch {
                waiting: std::mem::take(&mut self.waiting),
                ..Batch::begin(storage)
            };
        }
    }

    fn lose_all(&mut self, failed: &mut HashMap<Arc<str>, StorageError>, why: &str) {
        for room in self.durable.drain() {
            failed
                .entry(room)
                .or_insert_with(|| StorageError(why.to_owned()));
        }
    }

    /// Commits, then answers every commit request of the batch.
    fn commit(mut self, storage: &SqliteStorage, failed: &mut HashMap<Arc<str>, StorageError>) {
        if self.open {
            if let Err(e) = storage.conn().execute_batch("COMMIT") {
                error!(error = %e, "commit failed");
                self.lose_all(failed, &format!("commit failed: {e}"));
                if !storage.conn().is_autocommit() {
                    let _ = storage.conn().execute_batch("ROLLBACK");
                }
            }
        }
        for (room, reply) in self.waiting {
            let _ = reply.send(failed.remove(&room).map_or(Ok(()), Err));
        }
    }
}

/// One room's storage: the handler's `Storage`, each call a job for the storage thread.
pub(crate) struct RoomStorage {
    room: Arc<str>,
    jobs: std_mpsc::Sender<Job>,
}

impl RoomStorage {
    /// Asks for everything sent so far to be committed; the future resolves when it is
    /// on disk (`Ok`), or could not be put there (`Err`: some of this room's durable
    /// writes since its last commit may be missing).
    pub(crate) fn commit(&mut self) -> impl Future<Output = StorageResult<()>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.jobs.send(Job::Commit {
            room: self.room.clone(),
            reply,
        });
        async move {
            sent.map_err(|_| stopped())?;
            answer.await.unwrap_or_else(|_| Err(stopped()))
        }
    }

    fn write(
        &mut self,
        kind: Kind,
        work: impl FnOnce(&mut SqliteStorage) -> StorageResult<()> + Send + 'static,
    ) -> StorageResult<()> {
        self.jobs
            .send(Job::Run {
                room: self.room.clone(),
                kind,
                work: Box::new(work),
            })
            .map_err(|_| stopped())
    }

    fn read<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut SqliteStorage) -> StorageResult<T> + Send + 'static,
    ) -> StorageResult<T> {
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.jobs
            .send(Job::Run {
                room: self.room.clone(),
                kind: Kind::Read,
                work: Box::new(move |s| {
                    let _ = tx.send(work(s));
                    Ok(())
                }),
            })
            .map_err(|_| stopped())?;
        wait(rx).unwrap_or_else(|| Err(stopped()))
    }
}

/// Waits for a reply from the storage thread. On the multi-threaded runtime the wait
/// hands this worker's other tasks to another thread first, so a read that queues
/// behind a commit's sync never stalls sockets or other rooms. Elsewhere (tests on a
/// current-thread runtime, no runtime) a plain wait: the storage thread needs nothing
/// from the caller to answer.
fn wait<T>(rx: std_mpsc::Receiver<T>) -> Option<T> {
    let multi_thread = Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(|| rx.recv().ok())
    } else {
        rx.recv().ok()
    }
}

impl Storage for RoomStorage {
    fn load_epoch(&mut self) -> StorageResult<Option<String>> {
        self.read(|s| s.load_epoch())
    }
    fn save_epoch(&mut self, epoch: &str) -> StorageResult<()> {
        let epoch = epoch.to_owned();
        self.write(Kind::Durable, move |s| s.save_epoch(&epoch))
    }
    fn latest(&mut self) -> StorageResult<Option<StoredMessage>> {
        self.read(|s| s.latest())
    }
    fn append(&mut self, msg: &StoredMessage) -> StorageResult<()> {
        let msg = msg.clone();
        self.write(Kind::Durable, move |s| s.append(&msg))
    }
    fn last_n(&mut self, n: usize) -> StorageResult<Vec<StoredMessage>> {
        self.read(move |s| s.last_n(n))
    }
    fn after(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        self.read(move |s| s.after(seq, limit))
    }
    fn prune_through(&mut self, seq: u64) -> StorageResult<()> {
        self.write(Kind::BestEffort, move |s| s.prune_through(seq))
    }
    fn save_bucket(&mut self, addr: &str, bucket: &Bucket) -> StorageResult<()> {
        let (addr, bucket) = (addr.to_owned(), bucket.clone());
        self.write(Kind::BestEffort, move |s| s.save_bucket(&addr, &bucket))
    }
    fn prune_buckets(&mut self, before_ms: u64) -> StorageResult<()> {
        self.write(Kind::BestEffort, move |s| s.prune_buckets(before_ms))
    }
    fn before(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        self.read(move |s| s.before(seq, limit))
    }
    fn find_cid(
        &mut self,
        sender: &str,
        cid: &str,
        after_seq: u64,
        since_ms: u64,
    ) -> StorageResult<Option<StoredMessage>> {
        let (sender, cid) = (sender.to_owned(), cid.to_owned());
        self.read(move |s| s.find_cid(&sender, &cid, after_seq, since_ms))
    }
    fn load_bucket(&mut self, addr: &str) -> StorageResult<Option<Bucket>> {
        let addr = addr.to_owned();
        self.read(move |s| s.load_bucket(&addr))
    }
    fn delete_message(&mut self, seq: u64, at_seq: u64) -> StorageResult<bool> {
        // The handler needs the answer, so this waits like a read; the tombstone is a
        // durable write all the same: what is sent about it waits for its commit.
        self.read(move |s| s.delete_message(seq, at_seq))
    }
    fn deleted_since(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<u64>> {
        self.read(move |s| s.deleted_since(seq, limit))
    }
    fn restriction(&mut self, user: &str) -> StorageResult<Restriction> {
        let user = user.to_owned();
        self.read(move |s| s.restriction(&user))
    }
    fn set_restriction(&mut self, user: &str, r: &Restriction) -> StorageResult<()> {
        let (user, r) = (user.to_owned(), r.clone());
        self.write(Kind::Durable, move |s| s.set_restriction(&user, &r))
    }
    fn prune_restrictions(&mut self, now_ms: u64) -> StorageResult<u64> {
        // The count is an answer, so this waits like a read; losing the pruning itself
        // would only keep rows that are over.
        self.read(move |s| s.prune_restrictions(now_ms))
    }
    fn append_audit(&mut self, entry: &AuditEntry, keep: usize) -> StorageResult<()> {
        let entry = entry.clone();
        self.write(Kind::Durable, move |s| s.append_audit(&entry, keep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite_storage::{init_database, open_connection};

    fn msg(seq: u64, text: &str) -> StoredMessage {
        StoredMessage {
            seq,
            timestamp: 1_000 + seq,
            name: "alice".to_owned(),
            message: text.to_owned(),
            ..Default::default()
        }
    }

    fn fresh() -> (tempfile::TempDir, std::path::PathBuf, Arc<StorageThread>) {
        let dir = tempfile::tempdir().unwrap();
        let path = init_database(dir.path()).unwrap();
        let thread = StorageThread::start(&path).unwrap();
        (dir, path, thread)
    }

    fn count(path: &Path, table: &str) -> i64 {
        open_connection(path)
            .unwrap()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_room_reads_its_writes_before_the_commit_and_others_see_them_after() {
        let (_dir, path, thread) = fresh();
        let mut a = thread.room("a");
        a.save_epoch("e").unwrap();
        a.append(&msg(1, "one")).unwrap();
        // The same connection, in order: the room sees its own write at once.
        assert_eq!(a.latest().unwrap(), Some(msg(1, "one")));
        assert_eq!(a.load_epoch().unwrap().as_deref(), Some("e"));
        a.commit().await.unwrap();
        // Committed: another connection (another process after a crash) sees it.
        assert_eq!(count(&path, "chat_messages"), 1);
        let mut b = thread.room("b");
        assert_eq!(b.latest().unwrap(), None);
        assert_eq!(b.load_epoch().unwrap(), None);
        thread.stop(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn a_failed_durable_write_fails_the_rooms_commit_only() {
        let (_dir, path, thread) = fresh();
        let mut a = thread.room("a");
        let mut b = thread.room("b");
        a.append(&msg(1, "one")).unwrap();
        a.commit().await.unwrap();
        // The same seq again breaks the primary key: refused at the commit, for `a` only.
        a.append(&msg(1, "again")).unwrap();
        b.append(&msg(1, "b's")).unwrap();
        let (ra, rb) = tokio::join!(a.commit(), b.commit());
        assert!(ra.is_err());
        rb.unwrap();
        // The failure is reported once; the next commit of `a` is clean.
        a.commit().await.unwrap();
        assert_eq!(count(&path, "chat_messages"), 2);
        thread.stop(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn best_effort_writes_never_fail_a_commit() {
        let (_dir, path, thread) = fresh();
        let mut a = thread.room("a");
        a.save_bucket("1.2.3.4", &Bucket::full(3, 5)).unwrap();
        a.commit().await.unwrap();
        assert_eq!(a.load_bucket("1.2.3.4").unwrap(), Some(Bucket::full(3, 5)));
        a.prune_buckets(u64::MAX).unwrap();
        a.prune_through(10).unwrap();
        a.commit().await.unwrap();
        assert_eq!(count(&path, "chat_buckets"), 0);
        thread.stop(Duration::from_secs(5)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_rooms_commit_together_and_stop_commits_what_was_sent() {
        let (_dir, path, thread) = fresh();
        let mut tasks = Vec::new();
        for r in 0..20 {
            let mut room = thread.room(&format!("room-{r}"));
            tasks.push(tokio::spawn(async move {
                for seq in 1..=50 {
                    room.append(&msg(seq, "x")).unwrap();
                    if seq % 5 == 0 {
                        room.commit().await.unwrap();
                    }
                }
                // Reads from a runtime worker do not need a blocking thread of their own.
                room.latest().unwrap().map(|m| m.seq)
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Some(50));
        }
        // Sent but never committed by its room: the thread commits it when it stops.
        let mut late = thread.room("late");
        late.append(&msg(1, "late")).unwrap();
        thread.stop(Duration::from_secs(5)).await;
        assert_eq!(count(&path, "chat_messages"), 20 * 50 + 1);
        assert!(late.latest().is_err(), "the thread is gone");
        assert!(late.commit().await.is_err());
    }
}
