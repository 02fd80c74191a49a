//! The writer thread, its group commit, and the sync thread that makes commits durable.
//!
//! All writes go through the one writing connection, owned by a dedicated OS thread. It
//! blocks on a channel, drains everything queued (up to a batch limit), applies every operation
//! inside ONE `BEGIN IMMEDIATE … COMMIT` transaction, and hands the commit to the sync threads,
//! which `fdatasync` the write-ahead log. SQLite runs with `synchronous=NORMAL` (it writes the
//! WAL without syncing it on commit): a commit survives a crash of the process at once, and the
//! disk once synced.
//!
//! With [`SyncMode::Background`] (the default) the writer answers the callers right after the
//! commit and the sync thread syncs every 50 ms in the background. Checkpoints (copying the
//! log into the database file) also run on the sync threads, not inside the writer's commits.
//! With [`SyncMode::Always`] the sync thread answers the callers of every batch a sync
//! covered, only after it: a caller's future resolves
//! only after its own write is on disk, and a read that saw a commit waits for that commit's
//! sync before it returns. Either way concurrent callers share both the transaction and the
//! sync, and the writer applies the next batch while the previous one is being synced. With
//! [`super::StoreOptions::sync_in_commit`] SQLite syncs inside every commit (`synchronous=FULL`)
//! instead, and the writer answers by itself after each commit.
//!
//! The writer's state sits behind a mutex ([`WriterSlot`]) that its thread holds only while it
//! gathers and commits a batch. A caller whose write finds the queue empty and the mutex free
//! commits that write itself ([`commit_inline`]): the same transaction code, on the caller's
//! thread, without the two thread wake-ups of the hand-off. It does so only while at most one
//! call is in progress (`Store::call_in_progress`); concurrent calls' writes queue and share the
//! thread's transactions.
//!
//! If one operation fails, the transaction is rolled back, that caller gets the error, and the
//! rest of the batch is replayed in a fresh transaction (operations are deterministic functions of
//! the database state, so the replay is exact). If the commit itself fails, every caller of the
//! batch gets [`StoreError::BatchFailed`]. If a sync fails, the store refuses all further work
//! ([`StoreError::SyncFailed`]): after a failed `fsync` the kernel may have dropped the data.

mod checkpoint;
mod durability;
mod ops;
mod prepared;
mod stats;
mod sync;

use std::ffi::c_int;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::mpsc;

pub(crate) use durability::Durability;
pub(crate) use ops::{Job, WriteOp, WriteOutput};
pub(crate) use prepared::{PreparedAudit, PreparedInsert, PreparedTransition};
pub(crate) use stats::Stats;

use super::SyncMode;
use super::error::{StoreError, StoreResult};
use super::schema::BUSY_TIMEOUT;
use checkpoint::{CHECKPOINT_PAGES, WRITER_CHECKPOINT_PAGES, passive_checkpoint};
use ops::apply;
use sync::{Committed, Reply, SYNC_THREADS, SyncQueue};

/// The state of the writer thread.
pub(crate) struct Writer {
    conn: Connection,
    path: PathBuf,
    stats: Arc<Stats>,
    durability: Arc<Durability>,
    max_batch: usize,
    next_number: u64,
    sync: Arc<SyncQueue>,
    sync_threads: Vec<JoinHandle<()>>,
}

/// Whether the write-ahead log is long enough for the writer to checkpoint it when idle, read
/// from the sync queue's page count without the writer's lock ([`Writer::checkpoint_due`]).
pub(crate) struct CheckpointDue(Arc<SyncQueue>);

impl CheckpointDue {
    /// Whether a checkpoint is due now.
    fn now(&self) -> bool {
        checkpoint_due(&self.0)
    }
}

/// Whether the log `sync` syncs is long enough for [`Writer::checkpoint_when_idle`].
fn checkpoint_due(sync: &SyncQueue) -> bool {
    sync.wal.is_some() && sync.wal_pages.load(Ordering::Relaxed) >= CHECKPOINT_PAGES
}

impl Writer {
    /// A writer on `conn`; starts the sync thread, which syncs `wal` (a handle on the database's
    /// -wal file) unless SQLite syncs inside each commit (`None`).
    pub(crate) fn new(
        conn: Connection,
        wal: Option<File>,
        path: PathBuf,
        stats: Arc<Stats>,
        durability: Arc<Durability>,
        max_batch: usize,
        mode: SyncMode,
    ) -> StoreResult<Self> {
        // When SQLite syncs inside each commit, the writer answers by itself (and SQLite
        // checkpoints inside commits too).
        let threads = match (&wal, mode) {
            (None, _) => 0,
            (Some(_), SyncMode::Background) => 1,
            (Some(_), SyncMode::Always) => SYNC_THREADS,
        };
        let mut conn = conn;
        let wal_pages = Arc::new(AtomicU64::new(0));
        let checkpointer = if wal.is_some() {
            // Installing a WAL hook also turns SQLite's automatic checkpoint off: the sync
            // threads checkpoint instead.
            let pages = Arc::clone(&wal_pages);
            let counters = Arc::clone(&stats);
            // The log's length after the previous commit: a shorter log has restarted.
            let mut previous = 0;
            conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, in_log: c_int| {
                let in_log = u64::try_from(in_log).unwrap_or(0);
                pages.store(in_log, Ordering::Relaxed);
                let appended = in_log.checked_sub(previous).unwrap_or(in_log);
                counters.wal_frames.fetch_add(appended, Ordering::Relaxed);
                previous = in_log;
                Ok(())
            }))
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                operation: "installing the write-ahead log hook",
                source,
            })?;
            Some(super::schema::open_checkpointer(&path)?)
        } else {
            None
        };
        let sync = Arc::new(SyncQueue::new(
            wal,
            mode,
            wal_pages,
            checkpointer,
            Arc::clone(&durability),
            Arc::clone(&stats),
            path.clone(),
        ));
        let mut sync_threads = Vec::with_capacity(threads);
        for _ in 0..threads {
            let queue = Arc::clone(&sync);
            let spawned = std::thread::Builder::new()
                .name("agent-gate-store-sync".to_owned())
                .spawn(move || queue.run());
            match spawned {
                Ok(handle) => sync_threads.push(handle),
                Err(error) => {
                    sync.close();
                    return Err(StoreError::Worker {
                        path,
                        detail: format!("starting a sync thread: {error}"),
                    });
                }
            }
        }
        Ok(Self {
            conn,
            path,
            stats,
            durability,
            max_batch: max_batch.max(1),
            next_number: 0,
            sync,
            sync_threads,
        })
    }

    /// Runs until a close request arrives or every sender is gone, then closes the connection
    /// (which checkpoints the WAL into the database file) and stops the sync thread.
    ///
    /// The writer lives in `slot` so that a caller finding it idle can commit its own write
    /// inline ([`commit_inline`]); the thread holds the lock only while it gathers and commits,
    /// and, when `due` says the log is long, while it checkpoints before waiting for work.
    pub(crate) fn run(slot: &WriterSlot, mut receiver: mpsc::Receiver<Job>, due: CheckpointDue) {
        let mut close_replies = Vec::new();
        let mut batch = Vec::new();
        // Whether the last transaction had company: then writes are arriving concurrently.
        let mut busy = false;
        // Read without the lock: taking it only to find nothing due would turn away a caller's
        // inline commit that came at that moment.
        let idle = || {
            if due.now()
                && let Some(writer) = lock_slot(slot).as_ref()
            {
                writer.checkpoint_when_idle();
            }
        };
        while let Some(first) = next_job(&mut receiver, busy, idle) {
            let mut guard = lock_slot(slot);
            let Some(writer) = guard.as_mut() else {
                // Only this thread empties the slot, after this loop.
                let _ = first.reply.send(Err(StoreError::Worker {
                    path: PathBuf::new(),
                    detail: "the writer is gone".to_owned(),
                }));
                break;
            };
            batch.push(first);
            writer.gather(&mut receiver, &mut batch, busy);
            busy = batch.len() > 1;
            let mut work = Vec::with_capacity(batch.len());
            for job in batch.drain(..) {
                if !close_replies.is_empty() {
                    let _ = job.reply.send(Err(writer.closed()));
                } else if matches!(job.op, WriteOp::Close) {
                    close_replies.push(job.reply);
                } else {
                    work.push(job);
                }
            }
            if !work.is_empty() {
                writer.commit_batch(work);
            }
            if !close_replies.is_empty() {
                break;
            }
        }
        let Some(writer) = lock_slot(slot).take() else {
            return;
        };
        // Refuse whatever is still queued, then stop accepting.
        receiver.close();
        while let Ok(job) = receiver.try_recv() {
            let _ = job.reply.send(Err(writer.closed()));
        }
        let Self {
            conn,
            path,
            durability,
            sync,
            sync_threads,
            ..
        } = writer;
        // The sync threads sync and answer everything handed to them, then end.
        sync.close();
        let mut joined = Ok(());
        for handle in sync_threads {
            if handle.join().is_err() {
                joined = Err(StoreError::Worker {
                    path: path.clone(),
                    detail: "a sync thread panicked".to_owned(),
                });
            }
        }
        drop(
            sync.checkpointer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        // Closing the last connection checkpoints the WAL into the database file (syncing both).
        let closed = conn.close().map_err(|(_conn, source)| StoreError::Sqlite {
            path: path.clone(),
            operation: "closing the database",
            source,
        });
        // Release any reader still waiting (everything announced has been answered).
        durability
            .synced
            .send_modify(|synced| *synced = (*synced).max(durability.visible()));
        // If -wal/-shm files remain (another connection is open), keep them private.
        let outcome = closed
            .and(joined)
            .and_then(|()| durability.check(&path))
            .and_then(|()| super::schema::restrict_modes(&path));
        for reply in close_replies {
            let _ = reply.send(match &outcome {
                Ok(()) => Ok(WriteOutput::Closed),
                Err(error) => Err(StoreError::BatchFailed {
                    path: path.clone(),
                    detail: error.to_string(),
                }),
            });
        }
    }

    /// Adds queued jobs to `batch`. Under concurrent load (`busy`: the last transaction had more
    /// than one write, or more than one is waiting now) it then sleeps for [`GATHER_WINDOW`] and
    /// adds what arrived meanwhile. A write arriving alone after a lone write is not held back,
    /// so sequential calls pay no gathering delay.
    fn gather(&self, receiver: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, busy: bool) {
        drain_into(receiver, batch, self.max_batch);
        if (busy || batch.len() > 1) && batch.len() < self.max_batch {
            std::thread::sleep(GATHER_WINDOW);
            drain_into(receiver, batch, self.max_batch);
        }
    }

    fn closed(&self) -> StoreError {
        StoreError::Closed {
            path: self.path.clone(),
        }
    }

    /// Hands transaction `number` to the sync threads with the answers they must give after
    /// syncing ([`SyncMode::Always`]), or answers at once: after the commit when the sync follows
    /// in the background, after the commit that synced when SQLite synced inside it.
    fn hand_over(&self, number: u64, replies: Vec<Reply>) {
        if self.sync.wal.is_some() {
            if self.sync.mode == SyncMode::Always {
                self.sync.push(Committed { number, replies });
                return;
            }
            self.sync.push(Committed {
                number,
                replies: Vec::new(),
            });
        } else {
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            self.stats
                .synced_transactions
                .fetch_max(number, Ordering::SeqCst);
        }
        // Readers need not wait for the sync of what they see (it is committed).
        self.durability
            .synced
            .send_modify(|synced| *synced = (*synced).max(number));
        for (reply, output) in replies {
            let _ = reply.send(output);
        }
    }

    /// Begins a transaction for an inline commit if that needs no waiting: not when another
    /// connection (another process) holds the database's write lock, which the writer thread
    /// waits out instead of a runtime thread, and not once a sync has failed (the thread
    /// answers that).
    fn begin_without_waiting(&mut self) -> bool {
        if self.durability.check(&self.path).is_err() {
            return false;
        }
        let instant = self.conn.busy_timeout(Duration::ZERO);
        let began = instant.and_then(|()| self.run_cached("BEGIN IMMEDIATE"));
        if let Err(error) = self.conn.busy_timeout(BUSY_TIMEOUT) {
            // Without its timeout the writer would fail where it should wait: leave the work
            // to a thread that reports it.
            tracing::error!(path = %self.path.display(), %error, "restoring the writer's busy timeout failed");
            self.rollback();
            return false;
        }
        began.is_ok()
    }

    /// Applies `jobs` in one transaction; their callers are answered once it is synced.
    fn commit_batch(&mut self, jobs: Vec<Job>) {
        if let Err(error) = self.durability.check(&self.path) {
            for job in jobs {
                let _ = job.reply.send(Err(StoreError::SyncFailed {
                    path: self.path.clone(),
                    detail: error.to_string(),
                }));
            }
            return;
        }
        if let Err(source) = self.run_cached("BEGIN IMMEDIATE") {
            self.fail_all(jobs, &source);
            return;
        }
        self.commit_begun(jobs);
    }

    /// [`Self::commit_batch`] once its transaction has begun.
    fn commit_begun(&mut self, mut jobs: Vec<Job>) {
        let mut begun = true;
        loop {
            let began = Instant::now();
            if !std::mem::take(&mut begun)
                && let Err(source) = self.run_cached("BEGIN IMMEDIATE")
            {
                self.fail_all(jobs, &source);
                return;
            }
            let mut outputs = Vec::with_capacity(jobs.len());
            let mut failure = None;
            for (index, job) in jobs.iter().enumerate() {
                match apply(&self.conn, &self.path, &job.op) {
                    Ok(output) => outputs.push(output),
                    Err(error) => {
                        failure = Some((index, error));
                        break;
                    }
                }
            }
            match failure {
                Some((index, error)) => {
                    self.rollback();
                    // Nothing of it was written, so it can be answered at once.
                    let failed = jobs.remove(index);
                    let _ = failed.reply.send(Err(error));
                    if jobs.is_empty() {
                        return;
                    }
                }
                None => {
                    self.next_number += 1;
                    let number = self.next_number;
                    // Announce before COMMIT: from the moment readers can see this transaction,
                    // they wait for its sync.
                    self.durability.announced.store(number, Ordering::SeqCst);
                    let mut replies = Vec::with_capacity(jobs.len());
                    if let Err(source) = self.run_cached("COMMIT") {
                        self.rollback();
                        tracing::error!(path = %self.path.display(), error = %source, writes = jobs.len(), "committing a batch of writes failed");
                        replies.extend(jobs.into_iter().map(|job| {
                            let error = StoreError::BatchFailed {
                                path: self.path.clone(),
                                detail: source.to_string(),
                            };
                            (job.reply, Err(error))
                        }));
                    } else {
                        self.stats.record(jobs.len(), began.elapsed());
                        replies.extend(
                            jobs.into_iter()
                                .map(|job| job.reply)
                                .zip(outputs.into_iter().map(Ok)),
                        );
                    }
                    self.hand_over(number, replies);
                    self.checkpoint_if_overgrown();
                    return;
                }
            }
        }
    }

    /// When the writer has nothing to do and the log is [`CHECKPOINT_PAGES`] long, it copies the
    /// log itself. A sync thread's checkpoint races the next write, and when writes follow one
    /// another closely (light but steady traffic: each waits for its answer) the log never
    /// restarts, because a restart needs every frame copied when a write begins; a checkpoint on
    /// the idle writer cannot be overtaken, so the next write restarts the log.
    fn checkpoint_when_idle(&self) {
        if !self.due_for_checkpoint() {
            return;
        }
        if let Some((log, checkpointed)) = passive_checkpoint(&self.conn, &self.stats, &self.path)
            && log == checkpointed
        {
            self.sync.wal_pages.store(0, Ordering::Relaxed);
        }
    }

    /// Whether the log is long enough for [`Self::checkpoint_when_idle`].
    fn due_for_checkpoint(&self) -> bool {
        checkpoint_due(&self.sync)
    }

    /// What tells, without the writer's lock, whether the log is long enough for
    /// [`Self::checkpoint_when_idle`].
    pub(crate) fn checkpoint_due(&self) -> CheckpointDue {
        CheckpointDue(Arc::clone(&self.sync))
    }

    /// See [`WRITER_CHECKPOINT_PAGES`]. (Without sync threads SQLite checkpoints by itself.)
    fn checkpoint_if_overgrown(&self) {
        if self.sync.wal.is_none()
            || self.sync.wal_pages.load(Ordering::Relaxed) < WRITER_CHECKPOINT_PAGES
        {
            return;
        }
        if passive_checkpoint(&self.conn, &self.stats, &self.path).is_some() {
            self.sync.wal_pages.store(0, Ordering::Relaxed);
        }
    }

    /// Runs `BEGIN IMMEDIATE` or `COMMIT` from the connection's statement cache: parsing
    /// them afresh for every transaction cost a sequential call some 8,000 instructions of
    /// its 326,000 (counted by `bench_gateway` with `BENCH_ONLY=instructions`).
    fn run_cached(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit()
            && let Err(error) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(path = %self.path.display(), %error, "rolling back a failed batch failed");
        }
    }

    fn fail_all(&self, jobs: Vec<Job>, source: &rusqlite::Error) {
        tracing::error!(path = %self.path.display(), error = %source, writes = jobs.len(), "a batch of writes failed");
        for job in jobs {
            let _ = job.reply.send(Err(StoreError::BatchFailed {
                path: self.path.clone(),
                detail: source.to_string(),
            }));
        }
    }
}

/// Under concurrent writes the writer sleeps this long before each commit, so that the calls
/// arriving meanwhile share the transaction. Every transaction rewrites whole pages of the table
/// and its indexes, so fewer, larger transactions cost less CPU per call; sleeping instead of
/// polling leaves the CPU to the calls themselves, and writes queued while the writer sleeps
/// cost their senders no wake-up.
const GATHER_WINDOW: Duration = Duration::from_micros(100);

/// Moves queued jobs into `batch` until it holds `max` or the queue is empty.
fn drain_into(receiver: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, max: usize) {
    while batch.len() < max {
        match receiver.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// How long the writer keeps polling its queue after a lone write before it sleeps. Writes
/// reach the thread only while several calls are in progress (a lone call commits inline); a
/// transaction of one write among them means the next write is a few microseconds away, and
/// waking a sleeping thread costs more than that on a virtual machine, so the writer stays
/// awake for a moment (yielding the CPU between polls). After a transaction with company it
/// sleeps until a write arrives, then gathers (see [`GATHER_WINDOW`]).
const SPIN_WINDOW: Duration = Duration::from_micros(100);

/// The next job. After a lone write it polls the queue for [`SPIN_WINDOW`], then calls
/// `idle` and blocks; when `busy` it blocks at once.
fn next_job(receiver: &mut mpsc::Receiver<Job>, busy: bool, idle: impl FnOnce()) -> Option<Job> {
    if busy {
        return receiver.blocking_recv();
    }
    let until = Instant::now() + SPIN_WINDOW;
    loop {
        match receiver.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) if Instant::now() >= until => {
                idle();
                return receiver.blocking_recv();
            }
            Err(mpsc::error::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
}

/// Where the writer lives: shared by its thread and the callers that commit inline; emptied
/// when the writer closes.
pub(crate) type WriterSlot = Mutex<Option<Writer>>;

fn lock_slot(slot: &WriterSlot) -> MutexGuard<'_, Option<Writer>> {
    // A panic inside a commit unwinds through `commit_batch`, whose transaction SQLite rolls
    // back when the next one begins; the writer's state stays consistent.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Commits `job` on the calling thread when the writer is idle: nothing is queued for it and
/// no one holds it. A lone write then costs no hand-off to the writer thread and back (two
/// thread wake-ups, which on a virtual machine cost more than the commit itself). Returns the
/// job when it must go through the queue instead: the writer is busy (concurrent writes share
/// its next transaction), the job is a close, or the log is due for the idle checkpoint, which
/// the writer thread runs off the callers' path.
///
/// The commit runs on an async runtime's thread, so only commits without a sync run here: the
/// sync threads make them durable (in [`SyncMode::Always`] the caller's answer still waits for
/// that sync), and a store opened with `sync_in_commit` always uses the writer thread.
pub(crate) fn commit_inline(
    slot: &WriterSlot,
    queue: &mpsc::Sender<Job>,
    job: Job,
) -> Result<(), Job> {
    if matches!(job.op, WriteOp::Close) || queue.capacity() < queue.max_capacity() {
        return Err(job);
    }
    let mut guard = match slot.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return Err(job),
    };
    let Some(writer) = guard.as_mut() else {
        return Err(job);
    };
    // With `sync_in_commit` (no sync threads, `wal` is `None`) every commit is an `fsync`:
    // milliseconds that must not stall a runtime thread.
    if writer.sync.wal.is_none() || writer.due_for_checkpoint() || !writer.begin_without_waiting() {
        return Err(job);
    }
    writer.stats.inline_commits.fetch_add(1, Ordering::Relaxed);
    writer.commit_begun(vec![job]);
    Ok(())
}
