//! The runner's one storage layer: every room's history through one SQLite connection
//! on a thread of its own, with group commit. The connection is the database file, or
//! with `--in-memory` a private in-memory database that lives as long as the process
//! (so history outlives idle actors and hibernation all the same).
//!
//! Room actors never hold a connection (an empty room costs no file handle). Each room
//! has a [`RoomStorage`], the handler's `Storage` for it, which sends every call here as
//! a job; clones of it are the same room's storage. The thread runs jobs in the order
//! they arrive inside one open transaction, and commits when no job is waiting (or after
//! [`MAX_JOBS_PER_COMMIT`]): one commit, and with `synchronous=FULL` one sync of the log,
//! for whatever all rooms wrote meanwhile.
//!
//! - Writes do not wait: they return `Ok` at once, and do not even wake the thread. What
//!   waits on them does: the next read or commit (the actor commits after every event
//!   that made a durable write) wakes it, and it runs every job queued before. So one
//!   message costs the thread one wake and one transaction, however many statements it
//!   takes; a write nothing waits on runs within [`IDLE_CHECK`].
//! - A durable write (a message, the epoch)
//!   must be committed before anything based on it is sent, and its failure is reported
//!   by the room's next [`RoomStorage::commit`] (from any clone: the thread keeps
//!   failures by room), which the room actor asks for when the handler returns a commit
//!   barrier. The other writes (pruning, kept rate buckets) are best effort,
//!   as the handler already treats them: a failure is logged.
//! - Reads wait for their answer, in a way that does not stall the async runtime
//!   (`block_in_place`). They run on the same connection after every job sent before
//!   them, so a room reads its own writes even before they are committed.
//! - A room actor holds everything it would send after a durable write (the broadcast of
//!   that message, and anything a later read built on it) until its commit says the
//!   transaction holding the write is on disk. So a message is durable before anyone sees
//!   it, and no seq a client has seen can be lost and reused, after `kill -9` or power
//!   loss alike; a commit that fails sends nothing (see `room_actor`).
//!
//! What sits around the jobs rather than in a layer of its own: the time of each append
//! on this thread (`edge_chat_storage_append_seconds`), the bound on rooms stored
//! (`--max-rooms-stored`, checked when a room stores its epoch), and with the cargo
//! feature `test-faults` the conformance suite's storage failures.
//!
//! A new `Storage` method goes in nine places: the handler's trait and its
//! `MemoryStorage`; `SqliteStorage` (the statements run here); one forwarding line in
//! `impl Storage for RoomStorage` below (a read, a durable write or a best-effort
//! write); the Worker's `DoSqlStorage`; and the four storage doubles of the handler's
//! tests that forward every call (`Unreadable`, `Broken`, `NoEpoch`, `Counting`).

use crate::sqlite_storage::SqliteStorage;
#[cfg(feature = "test-faults")]
use crate::storage_faults::{self, StorageFaults};
use crate::stored_rooms::StoredRooms;
use chat_handler::{AuditEntry, Bucket, Restriction};
use chat_handler::{Storage, StorageError, StorageResult, StoredMessage};
use prometheus_client::metrics::histogram::Histogram;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

/// Most jobs in one transaction. Under a flood of writes a commit still comes this
/// often, so one transaction (and the log) cannot grow without bound, nor can the rooms
/// waiting for it.
const MAX_JOBS_PER_COMMIT: usize = 4096;

/// How often an idle thread looks at its queue without being woken: the longest a write
/// that nothing waits on (a kept rate bucket, a prune) stays queued, and how soon the
/// thread notices that no handle is left.
const IDLE_CHECK: Duration = Duration::from_millis(50);

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
        /// An append: its time on this thread goes into the append histogram.
        timed: bool,
        work: Work,
    },
    /// Answers once everything `room` sent before it is committed.
    Commit {
        room: Arc<str>,
        reply: oneshot::Sender<StorageResult<()>>,
    },
    Stop,
}

/// The jobs waiting for the thread, in arrival order: one queue for every room, so a
/// read runs after everything sent before it.
struct Queue {
    inner: Mutex<Waiting>,
    /// Notified by whatever waits for the thread: a read, a commit, a stop.
    wake: Condvar,
}

struct Waiting {
    jobs: VecDeque<Job>,
    /// The thread is gone: nothing queued now would ever run.
    closed: bool,
}

impl Queue {
    fn new() -> Arc<Self> {
        Arc::new(Queue {
            inner: Mutex::new(Waiting {
                jobs: VecDeque::new(),
                closed: false,
            }),
            wake: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Each change is one push or one drain, so a poisoned lock still holds a whole
        // queue.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job`, waking the thread if `wake` (someone waits for it). Fails once the
    /// thread has stopped.
    fn push(&self, job: Job, wake: bool) -> StorageResult<()> {
        let mut waiting = self.lock();
        if waiting.closed {
            return Err(stopped());
        }
        waiting.jobs.push_back(job);
        drop(waiting);
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Moves up to `most` queued jobs into `into`; with `block`, first waits until there
    /// is one. False when there is none and never will be: no handle is left.
    fn take(self: &Arc<Self>, into: &mut Vec<Job>, most: usize, block: bool) -> bool {
        let mut waiting = self.lock();
        while block && waiting.jobs.is_empty() {
            // The thread's own reference is the last: nobody can send a job any more.
            if Arc::strong_count(self) == 1 {
                return false;
            }
            waiting = self
                .wake
                .wait_timeout(waiting, IDLE_CHECK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let n = most.min(waiting.jobs.len());
        into.extend(waiting.jobs.drain(..n));
        n > 0
    }

    /// The thread stops: later jobs fail, and those still queued are dropped (their
    /// readers and committers get the stopped error).
    fn close(&self) {
        let left = {
            let mut waiting = self.lock();
            waiting.closed = true;
            std::mem::take(&mut waiting.jobs)
        };
        drop(left);
    }
}

/// The database the thread keeps every room in.
pub(crate) enum Database<'a> {
    /// The SQLite file; its schema must exist (see `sqlite_storage::init_database`).
    File(&'a Path),
    /// A private in-memory database (`--in-memory`): the same schema and statements,
    /// gone when the process exits.
    Memory,
}

/// The storage thread. Once this and every [`RoomStorage`] are dropped it runs what is
/// queued and ends on its own; [`StorageThread::stop`] ends it now and waits for it.
pub(crate) struct StorageThread {
    jobs: Arc<Queue>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The rooms stored, under `--max-rooms-stored`.
    stored: Arc<StoredRooms>,
    /// Test only: storage calls that fail on purpose (`--test-storage-faults`).
    #[cfg(feature = "test-faults")]
    faults: Option<Arc<StorageFaults>>,
}

impl StorageThread {
    /// Opens `database` and starts the thread. `stored` bounds the rooms kept (a room
    /// counts once it stores its epoch); each append's time on the thread goes into
    /// `append_seconds`.
    pub(crate) fn start(
        database: Database<'_>,
        stored: Arc<StoredRooms>,
        append_seconds: Histogram,
    ) -> Result<Self, String> {
        let storage = match database {
            Database::File(path) => SqliteStorage::open(path, "")
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
            Database::Memory => SqliteStorage::in_memory()
                .map_err(|e| format!("cannot open an in-memory database: {e}"))?,
        };
        let jobs = Queue::new();
        let queue = jobs.clone();
        let thread = std::thread::Builder::new()
            .name("storage".to_owned())
            .spawn(move || run(storage, queue, append_seconds))
            .map_err(|e| format!("cannot start the storage thread: {e}"))?;
        Ok(StorageThread {
            jobs,
            thread: Mutex::new(Some(thread)),
            stored,
            #[cfg(feature = "test-faults")]
            faults: None,
        })
    }

    /// An in-memory database with no bound on rooms and a histogram nobody reads: what
    /// most tests need.
    #[cfg(test)]
    pub(crate) fn in_memory() -> Arc<Self> {
        let histogram = Histogram::new(std::iter::empty());
        let thread = Self::start(Database::Memory, StoredRooms::unbounded(), histogram);
        Arc::new(thread.expect("an in-memory database"))
    }

    /// Test only: every room's storage fails as `faults` says.
    #[cfg(feature = "test-faults")]
    pub(crate) fn with_faults(self, faults: StorageFaults) -> Self {
        StorageThread {
            faults: Some(Arc::new(faults)),
            ..self
        }
    }

    /// The rooms stored, and their bound.
    pub(crate) fn stored_rooms(&self) -> &Arc<StoredRooms> {
        &self.stored
    }

    /// The storage of one room. Costs nothing until used: no connection, no I/O.
    pub(crate) fn room(&self, room: &str) -> RoomStorage {
        RoomStorage {
            room: Arc::from(room),
            jobs: self.jobs.clone(),
            stored: self.stored.clone(),
            #[cfg(feature = "test-faults")]
            faults: self.faults.clone(),
        }
    }

    /// Runs the jobs already sent, commits them and stops the thread, waiting at most
    /// `bound` for it. Anything sent later fails with a storage error.
    pub(crate) async fn stop(&self, bound: Duration) {
        let _ = self.jobs.push(Job::Stop, true);
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
fn run(mut storage: SqliteStorage, queue: Arc<Queue>, append_seconds: Histogram) {
    // Rooms whose durable writes failed, until their next commit reports it.
    let mut failed: HashMap<Arc<str>, StorageError> = HashMap::new();
    let mut chunk = Vec::new();
    while queue.take(&mut chunk, MAX_JOBS_PER_COMMIT, true) {
        let mut batch = Batch::begin(&storage);
        let mut jobs = 0;
        let mut stop = false;
        loop {
            for job in chunk.drain(..) {
                jobs += 1;
                match job {
                    // Whatever was queued after the stop is dropped with it.
                    _ if stop => {}
                    Job::Run {
                        room,
                        kind,
                        timed,
                        work,
                    } => {
                        storage.set_room(&room);
                        let started = timed.then(Instant::now);
                        let result = work(&mut storage);
                        if let Some(started) = started {
                            append_seconds.observe(started.elapsed().as_secs_f64());
                        }
                        batch.ran(&storage, &room, kind, result, &mut failed);
                    }
                    Job::Commit { room, reply } => batch.waiting.push((room, reply)),
                    Job::Stop => stop = true,
                }
            }
            // What arrived meanwhile joins this transaction, up to the bound.
            if stop || !queue.take(&mut chunk, MAX_JOBS_PER_COMMIT.saturating_sub(jobs), false) {
                break;
            }
        }
        batch.commit(&storage, &mut failed);
        if stop {
            break;
        }
    }
    queue.close();
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
/// Clones are the same room's storage.
#[derive(Clone)]
pub(crate) struct RoomStorage {
    room: Arc<str>,
    jobs: Arc<Queue>,
    stored: Arc<StoredRooms>,
    #[cfg(feature = "test-faults")]
    faults: Option<Arc<StorageFaults>>,
}

impl RoomStorage {
    /// Asks for everything this room sent so far (through any clone) to be committed;
    /// the future resolves when it is on disk (`Ok`), or could not be put there (`Err`:
    /// some of this room's durable writes since its last commit may be missing).
    pub(crate) fn commit(&self) -> impl Future<Output = StorageResult<()>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let job = Job::Commit {
            room: self.room.clone(),
            reply,
        };
        let sent = self.jobs.push(job, true);
        async move {
            sent?;
            answer.await.unwrap_or_else(|_| Err(stopped()))
        }
    }

    /// Queues a job; a read wakes the thread, a write waits for whatever does.
    fn send(
        &self,
        kind: Kind,
        timed: bool,
        work: impl FnOnce(&mut SqliteStorage) -> StorageResult<()> + Send + 'static,
    ) -> StorageResult<()> {
        let job = Job::Run {
            room: self.room.clone(),
            kind,
            timed,
            work: Box::new(work),
        };
        self.jobs.push(job, kind == Kind::Read)
    }

    fn write(
        &mut self,
        kind: Kind,
        work: impl FnOnce(&mut SqliteStorage) -> StorageResult<()> + Send + 'static,
    ) -> StorageResult<()> {
        self.send(kind, false, work)
    }

    fn read<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut SqliteStorage) -> StorageResult<T> + Send + 'static,
    ) -> StorageResult<T> {
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.send(Kind::Read, false, move |s| {
            let _ = tx.send(work(s));
            Ok(())
        })?;
        wait(rx).unwrap_or_else(|| Err(stopped()))
    }

    /// Test only: fails a history read of a room the faults name.
    fn check_history(&self) -> StorageResult<()> {
        #[cfg(feature = "test-faults")]
        if let Some(f) = &self.faults {
            if f.fails_history(&self.room) {
                return Err(storage_faults::injected("reading history"));
            }
        }
        Ok(())
    }
}

/// The name of the runtime's threads, workers and waiting ones alike.
const RUNTIME_THREAD: &str = "chat-runtime";

/// The runner's async runtime, with at most `max_blocking_threads` threads beside its
/// workers (`--max-blocking-threads`). A read that waits hands its worker to one of
/// those ([`wait`]); unbounded (tokio's default is 512), a join burst in many rooms,
/// each join reading the backlog, left over 100 threads behind, each with its stack
/// and its own allocator arena: `scripts/bench idle 100x100` measured 8.5 KiB per idle
/// connection with them and 7.6 KiB with 8 (docs/BENCHMARKS.md). Reads queue on this
/// one thread anyway, so more waiting threads would only wait longer. No blocking task
/// here waits for an async one, so a full pool delays a handover but cannot deadlock.
pub(crate) fn runtime(max_blocking_threads: usize) -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(max_blocking_threads.max(1))
        .thread_name(RUNTIME_THREAD)
        .enable_all()
        .build()
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
        let epoch = epoch.to_owned();
        self.write(Kind::Durable, move |s| s.save_epoch(&epoch))
    }
    fn latest(&mut self) -> StorageResult<Option<StoredMessage>> {
        self.read(|s| s.latest())
    }
    fn append(&mut self, msg: &StoredMessage) -> StorageResult<()> {
        self.append_owned(msg.clone())
    }
    /// The room's own path: the message moves into the job, no copy.
    fn append_owned(&mut self, msg: StoredMessage) -> StorageResult<()> {
        // Test only. Here rather than in the job: a failed append must reach the handler
        // now (its sender gets an error, nobody else anything), where a durable job's
        // failure only fails the room's next commit.
        #[cfg(feature = "test-faults")]
        if self.faults.as_ref().is_some_and(|f| f.fails_append(&msg)) {
            return Err(storage_faults::injected("storing the message"));
        }
        self.send(Kind::Durable, true, move |s| s.append(&msg))
    }
    fn last_n(&mut self, n: usize) -> StorageResult<Vec<StoredMessage>> {
        self.check_history()?;
        self.read(move |s| s.last_n(n))
    }
    fn after(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        self.check_history()?;
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
    fn edit_message(
        &mut self,
        seq: u64,
        message: &str,
        edited_at: u64,
        at_seq: u64,
    ) -> StorageResult<bool> {
        // Like a deletion: the handler needs the answer, and what is sent about the edit
        // waits for its commit.
        let message = message.to_owned();
        self.read(move |s| s.edit_message(seq, &message, edited_at, at_seq))
    }
    fn edited_since(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        self.read(move |s| s.edited_since(seq, limit))
    }
    fn has_reaction(&mut self, seq: u64, emoji: &str, reactor: &str) -> StorageResult<bool> {
        let (emoji, reactor) = (emoji.to_owned(), reactor.to_owned());
        self.read(move |s| s.has_reaction(seq, &emoji, &reactor))
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
        // Like an edit: the answer is needed, and the counts frame waits for the commit.
        let (emoji, reactor) = (emoji.to_owned(), reactor.to_owned());
        let counts = counts.map(str::to_owned);
        self.read(move |s| s.set_reaction(seq, &emoji, &reactor, on, counts.as_deref(), at_seq))
    }
    fn reacted_since(&mut self, seq: u64, limit: usize) -> StorageResult<Vec<StoredMessage>> {
        self.read(move |s| s.reacted_since(seq, limit))
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
        let histogram = Histogram::new(std::iter::empty());
        let thread =
            StorageThread::start(Database::File(&path), StoredRooms::unbounded(), histogram);
        (dir, path, Arc::new(thread.unwrap()))
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
        // Committed by a clone: the same room's storage.
        a.clone().commit().await.unwrap();
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
        // The same seq again breaks the primary key: refused at the commit, for `a` only,
        // and reported to whichever of its clones commits.
        let a_too = a.clone();
        a.append(&msg(1, "again")).unwrap();
        b.append(&msg(1, "b's")).unwrap();
        let (ra, rb) = tokio::join!(a_too.commit(), b.commit());
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

    /// A write wakes nobody, but it is not left behind: the idle thread finds it, runs
    /// it and commits it.
    #[tokio::test]
    async fn a_write_nothing_waits_on_is_committed_all_the_same() {
        let (_dir, path, thread) = fresh();
        let mut a = thread.room("a");
        a.save_bucket("1.2.3.4", &Bucket::full(3, 5)).unwrap();
        let committed = tokio::time::timeout(Duration::from_secs(5), async {
            while count(&path, "chat_buckets") == 0 {
                tokio::time::sleep(IDLE_CHECK / 2).await;
            }
        });
        committed.await.expect("the write was never committed");
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

    /// Rows of every table (history, epochs, buckets, restrictions, audit), through the
    /// thread's own connection: an in-memory database has no other.
    fn rows(room: &mut RoomStorage) -> i64 {
        room.read(|s| {
            s.conn()
                .query_row(
                    "SELECT (SELECT COUNT(*) FROM chat_messages) + (SELECT COUNT(*) FROM chat_rooms)
                     + (SELECT COUNT(*) FROM chat_buckets) + (SELECT COUNT(*) FROM chat_restrictions)
                     + (SELECT COUNT(*) FROM chat_audit)",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| StorageError(e.to_string()))
        })
        .unwrap()
    }

    #[tokio::test]
    async fn in_memory_history_outlives_every_handle_of_its_room() {
        let thread = StorageThread::in_memory();
        {
            let mut r = thread.room("r");
            r.save_epoch("e1").unwrap();
            r.append(&msg(1, "m")).unwrap();
            r.commit().await.unwrap();
        }
        // No handle of "r" is left, as when its actor retires or its room hibernates:
        // the next one reads what it stored, for as long as the process runs.
        let mut r = thread.room("r");
        assert_eq!(r.load_epoch().unwrap().as_deref(), Some("e1"));
        assert_eq!(r.latest().unwrap(), Some(msg(1, "m")));
        assert_eq!(thread.room("other").latest().unwrap(), None);
        thread.stop(Duration::from_secs(5)).await;
    }

    /// The handler's rule, kept by the in-memory database as by the file: a room that
    /// never stored a message leaves nothing behind, not even its rate buckets.
    #[tokio::test]
    async fn an_in_memory_room_without_history_keeps_nothing() {
        use chat_handler::{Config, Peer, Room};
        let thread = StorageThread::in_memory();
        let mut room = Room::open(Config::default(), thread.room("empty"), "e").unwrap();
        room.try_connect(1, Peer { addr: "a".into() }, 1).unwrap();
        room.on_text(1, r#"{"name":"alice"}"#, 2);
        assert!(
            rows(&mut thread.room("empty")) > 0,
            "a bucket while she is in"
        );
        room.disconnect(1, 3);
        drop(room);
        assert_eq!(rows(&mut thread.room("empty")), 0);
        thread.stop(Duration::from_secs(5)).await;
    }

    /// Threads of this process named `name`.
    #[cfg(target_os = "linux")]
    fn threads_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.trim_end() == name)
            .count()
    }

    /// More rooms read at once than the runtime may add threads, all queued behind a
    /// slow job: every read is answered, and the threads stay within the bound (tokio's
    /// default would start one per waiting read).
    #[cfg(target_os = "linux")]
    #[test]
    fn reads_beyond_the_blocking_threads_all_finish_within_the_bound() {
        const ROOMS: usize = 24;
        let thread = StorageThread::in_memory();
        let rt = runtime(2).unwrap();
        let workers = rt.metrics().num_workers();
        let most = rt.block_on(async {
            let mut busy = thread.room("busy");
            let slow = tokio::spawn(async move {
                busy.read(|_| {
                    std::thread::sleep(Duration::from_millis(300));
                    Ok(())
                })
            });
            let readers: Vec<_> = (0..ROOMS)
                .map(|r| {
                    let mut room = thread.room(&format!("room-{r}"));
                    tokio::spawn(async move { room.latest() })
                })
                .collect();
            let mut most = 0;
            while !slow.is_finished() {
                most = most.max(threads_named(RUNTIME_THREAD));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            slow.await.unwrap().unwrap();
            for reader in readers {
                let answered = tokio::time::timeout(Duration::from_secs(10), reader).await;
                assert_eq!(answered.expect("a read never finished").unwrap(), Ok(None));
            }
            most
        });
        assert!(most <= workers + 2, "{most} threads for {workers} workers");
        rt.block_on(thread.stop(Duration::from_secs(5)));
    }

    #[tokio::test]
    async fn a_new_room_cannot_store_its_epoch_past_the_bound() {
        use prometheus_client::metrics::gauge::Gauge;
        let stored = StoredRooms::new(1, Default::default(), Gauge::default());
        let histogram = Histogram::new(std::iter::empty());
        let thread = StorageThread::start(Database::Memory, stored.clone(), histogram).unwrap();
        let mut first = thread.room("first");
        first.save_epoch("e1").unwrap();
        first.append(&msg(1, "kept")).unwrap();
        let mut second = thread.room("second");
        assert!(second.save_epoch("e2").is_err());
        assert_eq!(second.load_epoch().unwrap(), None, "nothing stored");
        // The stored room goes on storing.
        first.save_epoch("e1").unwrap();
        first.append(&msg(2, "more")).unwrap();
        first.commit().await.unwrap();
        assert_eq!(stored.count(), 1);
        thread.stop(Duration::from_secs(5)).await;
    }
}
