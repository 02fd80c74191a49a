//! The writer thread, its group commit, and the sync thread that makes commits durable.
//!
//! All writes go through one dedicated OS thread that owns the only writing connection. It
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
//! If one operation fails, the transaction is rolled back, that caller gets the error, and the
//! rest of the batch is replayed in a fresh transaction (operations are deterministic functions of
//! the database state, so the replay is exact). If the commit itself fails, every caller of the
//! batch gets [`StoreError::BatchFailed`]. If a sync fails, the store refuses all further work
//! ([`StoreError::SyncFailed`]): after a failed `fsync` the kernel may have dropped the data.

use std::ffi::c_int;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::{mpsc, oneshot, watch};

use super::SyncMode;
use super::error::{StoreError, StoreResult};
use super::rows::{self, REQUEST_COLUMNS};
use super::types::{
    AuditEntry, AuditKind, EXECUTION_FAILED_CODE, InsertOutcome, NewRequest,
    RESTART_DURING_EXECUTION, RecoveryReport, RequestState, StoreStats, Timestamp, Transition,
};

/// An audit entry, serialised on the caller's thread.
#[derive(Debug)]
pub(crate) struct PreparedAudit {
    at: i64,
    agent_id: String,
    request_id: Option<String>,
    kind: String,
    signature: Option<String>,
    decision: Option<&'static str>,
    rule: Option<String>,
    actor: Option<String>,
    detail: Option<String>,
}

impl PreparedAudit {
    pub(crate) fn new(entry: AuditEntry) -> StoreResult<Self> {
        let detail = match &entry.detail {
            Some(value) => Some(rows::json_text(value, "audit detail")?),
            None => None,
        };
        Ok(Self {
            at: entry.at.as_millis(),
            kind: entry.kind.as_str().to_owned(),
            agent_id: entry.agent_id,
            request_id: entry.request_id,
            signature: entry.signature,
            decision: entry.decision.map(|d| d.as_str()),
            rule: entry.rule,
            actor: entry.actor,
            detail,
        })
    }

    fn prepare_all(entries: Vec<AuditEntry>) -> StoreResult<Vec<Self>> {
        entries.into_iter().map(Self::new).collect()
    }
}

/// A new request, serialised (and digested) on the caller's thread.
#[derive(Debug)]
pub(crate) struct PreparedInsert {
    agent_id: String,
    request_id: String,
    tool: String,
    args: String,
    args_digest: String,
    signature: String,
    decision: &'static str,
    rule: Option<String>,
    state: &'static str,
    /// The request is inserted already finished (denied by the policy): its outcome waits for
    /// the agent.
    finished: bool,
    created_at: i64,
    expires_at: Option<i64>,
    resolved_by: Option<String>,
    resolved_at: Option<i64>,
    error_code: Option<i64>,
    error_message: Option<String>,
    error_data: Option<String>,
    approver_refs: Option<String>,
    audit: Vec<PreparedAudit>,
}

impl PreparedInsert {
    pub(crate) fn new(request: NewRequest) -> StoreResult<Self> {
        let state = request.state();
        let args = rows::json_text(&request.args, "request arguments")?;
        let args_digest = rows::args_digest(&request.tool, &request.args);
        let approver_refs = match &request.approver_refs {
            Some(value) => Some(rows::json_text(value, "approver message references")?),
            None => None,
        };
        let (error_code, error_message, error_data) = error_columns(request.error)?;
        Ok(Self {
            state: state.as_str(),
            finished: state.is_terminal(),
            resolved_at: (state != RequestState::Pending).then_some(request.created_at.as_millis()),
            audit: PreparedAudit::prepare_all(request.audit)?,
            agent_id: request.agent_id,
            request_id: request.request_id,
            tool: request.tool,
            args,
            args_digest,
            signature: request.signature,
            decision: request.decision.as_str(),
            rule: request.rule,
            created_at: request.created_at.as_millis(),
            expires_at: request.expires_at.map(Timestamp::as_millis),
            resolved_by: request.resolved_by,
            error_code,
            error_message,
            error_data,
            approver_refs,
        })
    }
}

/// The `error_code`, `error_message` and `error_data` columns of an error outcome.
type ErrorColumns = (Option<i64>, Option<String>, Option<String>);

fn error_columns(error: Option<super::types::StoredError>) -> StoreResult<ErrorColumns> {
    let Some(error) = error else {
        return Ok((None, None, None));
    };
    let data = match &error.data {
        Some(data) => Some(rows::json_text(data, "error data")?),
        None => None,
    };
    Ok((Some(error.code), Some(error.message), data))
}

/// A state transition, checked against the state machine and serialised on the caller's thread.
#[derive(Debug)]
pub(crate) struct PreparedTransition {
    agent_id: String,
    request_id: String,
    from: &'static str,
    to: &'static str,
    /// `to` ends the request's life: its outcome waits for the agent.
    finishes: bool,
    at: i64,
    resolves: bool,
    resolved_by: Option<String>,
    result: Option<String>,
    error_code: Option<i64>,
    error_message: Option<String>,
    error_data: Option<String>,
    audit: Vec<PreparedAudit>,
}

impl PreparedTransition {
    pub(crate) fn new(transition: Transition) -> StoreResult<Self> {
        if !transition.from.can_transition_to(transition.to) {
            return Err(StoreError::InvalidTransition {
                from: transition.from,
                to: transition.to,
            });
        }
        let result = match &transition.result {
            Some(value) => Some(rows::json_text(value, "request result")?),
            None => None,
        };
        let (error_code, error_message, error_data) = error_columns(transition.error)?;
        Ok(Self {
            from: transition.from.as_str(),
            to: transition.to.as_str(),
            finishes: transition.to.is_terminal(),
            at: transition.at.as_millis(),
            resolves: transition.from == RequestState::Pending,
            audit: PreparedAudit::prepare_all(transition.audit)?,
            agent_id: transition.agent_id,
            request_id: transition.request_id,
            resolved_by: transition.resolved_by,
            result,
            error_code,
            error_message,
            error_data,
        })
    }
}

/// One unit of work for the writer.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Insert(Box<PreparedInsert>),
    Transition(Box<PreparedTransition>),
    Audit(Box<PreparedAudit>),
    MarkDelivered {
        agent_id: String,
        request_ids: Vec<String>,
    },
    SetApproverRefs {
        agent_id: String,
        request_id: String,
        refs: String,
    },
    Recover {
        now: Timestamp,
    },
    Close,
}

/// What a [`WriteOp`] produced.
#[derive(Debug)]
pub(crate) enum WriteOutput {
    Insert(InsertOutcome),
    Transition(bool),
    AuditId(i64),
    Count(usize),
    Recovery(Box<RecoveryReport>),
    Closed,
}

/// A queued operation and where to send its outcome.
pub(crate) struct Job {
    pub(crate) op: WriteOp,
    pub(crate) reply: oneshot::Sender<StoreResult<WriteOutput>>,
}

/// Writer counters shared with the [`super::Store`] handles.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    transactions: AtomicU64,
    writes: AtomicU64,
    largest_batch: AtomicU64,
    syncs: AtomicU64,
    synced_transactions: AtomicU64,
    checkpoints: AtomicU64,
    wal_frames: AtomicU64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            synced_transactions: self.synced_transactions.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            wal_frames: self.wal_frames.load(Ordering::Relaxed),
        }
    }

    fn record(&self, writes: usize) {
        let writes = u64::try_from(writes).unwrap_or(u64::MAX);
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes, Ordering::Relaxed);
        self.largest_batch.fetch_max(writes, Ordering::Relaxed);
    }
}

/// What the writer, the sync thread and the readers share about durability.
///
/// Commits are numbered. `announced` is the number of the newest commit that may be visible to
/// readers (set before `COMMIT` runs); `synced` is the newest number whose WAL frames are on disk.
#[derive(Debug)]
pub(crate) struct Durability {
    announced: AtomicU64,
    synced: watch::Sender<u64>,
    poisoned: AtomicBool,
    sync_error: std::sync::Mutex<Option<String>>,
}

impl Default for Durability {
    fn default() -> Self {
        Self {
            announced: AtomicU64::new(0),
            synced: watch::Sender::new(0),
            poisoned: AtomicBool::new(false),
            sync_error: std::sync::Mutex::new(None),
        }
    }
}

impl Durability {
    /// The newest commit a read that has just finished may have seen.
    pub(crate) fn visible(&self) -> u64 {
        self.announced.load(Ordering::SeqCst)
    }

    /// Waits until commit `target` is on disk; fails if a sync failed.
    pub(crate) async fn wait_synced(&self, target: u64, path: &Path) -> StoreResult<()> {
        if *self.synced.borrow() < target {
            let mut synced = self.synced.subscribe();
            // The sender lives as long as `self`, so this only ends when the target is reached.
            let _ = synced.wait_for(|synced| *synced >= target).await;
        }
        self.check(path)
    }

    /// Fails with [`StoreError::SyncFailed`] once a sync has failed.
    pub(crate) fn check(&self, path: &Path) -> StoreResult<()> {
        if self.poisoned.load(Ordering::SeqCst) {
            let detail = self
                .sync_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .unwrap_or_default();
            return Err(StoreError::SyncFailed {
                path: path.to_owned(),
                detail,
            });
        }
        Ok(())
    }

    fn poison(&self, detail: String) {
        *self
            .sync_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(detail);
        self.poisoned.store(true, Ordering::SeqCst);
    }
}

type Reply = (
    oneshot::Sender<StoreResult<WriteOutput>>,
    StoreResult<WriteOutput>,
);

/// The answers of one committed (or failed) transaction, waiting for a sync that covers it.
struct Committed {
    number: u64,
    replies: Vec<Reply>,
}

/// How many `fdatasync` calls may run at once. A sync covers every transaction committed before
/// it started; letting a new one start while the previous one is still in the kernel means a
/// fresh commit waits for one sync, not for the rest of the running one plus its own.
const SYNC_THREADS: usize = 3;

/// With [`SyncMode::Background`], the pause after each sync before the next one: at most this
/// much (plus one sync) of acknowledged writes is only in the page cache at any time. Syncing
/// continuously instead makes every `fdatasync` compete with the writer's next appends (on ext4
/// they wait for the journal commit), for no gain a crash could see.
const BACKGROUND_SYNC_INTERVAL: Duration = Duration::from_millis(50);

/// When the write-ahead log holds this many pages, a sync thread copies it into the database
/// file (a passive checkpoint, which never blocks the writer) so that the log restarts from its
/// beginning. SQLite's own automatic checkpoint (same size) would run inside a commit, with two
/// `fsync`s, on the writer's critical path.
const CHECKPOINT_PAGES: u64 = 1000;

/// A passive checkpoint running beside the writer copies what was committed before it started;
/// the log restarts only when a write begins with everything copied, which under sustained
/// load never happens. So when the log reaches this many pages anyway, the writer checkpoints
/// the remainder itself (after answering its batch), as SQLite would: the log stays bounded
/// (about 16 MiB) and the writer pauses for that once per this many pages, not per 1,000.
const WRITER_CHECKPOINT_PAGES: u64 = 4 * CHECKPOINT_PAGES;

/// The queue between the writer and the sync threads.
struct SyncQueue {
    state: std::sync::Mutex<SyncState>,
    wake: std::sync::Condvar,
    /// The -wal file; `None` when SQLite syncs inside each commit.
    wal: Option<File>,
    mode: SyncMode,
    /// Pages in the write-ahead log after the latest commit (from the writer's WAL hook).
    wal_pages: Arc<AtomicU64>,
    /// The connection that runs checkpoints; `None` when SQLite checkpoints inside commits, and
    /// once the writer has stopped.
    checkpointer: std::sync::Mutex<Option<Connection>>,
    durability: Arc<Durability>,
    stats: Arc<Stats>,
    path: PathBuf,
}

#[derive(Default)]
struct SyncState {
    /// Transactions not answered yet, oldest first.
    pending: std::collections::VecDeque<Committed>,
    /// The newest transaction handed over.
    committed: u64,
    /// The newest transaction covered by a sync that has started.
    started: u64,
    /// The newest transaction covered by a sync that has finished.
    done: u64,
    /// A background sync thread is pausing between syncs (commits need not wake it).
    pausing: bool,
    closing: bool,
}

impl SyncQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, committed: Committed) {
        let mut state = self.lock();
        state.committed = state.committed.max(committed.number);
        if !committed.replies.is_empty() {
            state.pending.push_back(committed);
        }
        let pausing = state.pausing;
        drop(state);
        if !pausing {
            self.wake.notify_one();
        }
    }

    fn close(&self) {
        self.lock().closing = true;
        self.wake.notify_all();
    }

    /// One sync thread: sync whatever was committed since the last sync started, then answer
    /// every transaction that sync covered.
    fn run(&self) {
        loop {
            let target = {
                let mut state = self.lock();
                loop {
                    if state.committed > state.started {
                        break;
                    }
                    if state.closing {
                        return;
                    }
                    state = self
                        .wake
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                state.started = state.committed;
                state.committed
            };
            let outcome = self.durability.check(&self.path).and_then(|()| self.sync());
            let ready: Vec<Committed> = {
                let mut state = self.lock();
                state.done = state.done.max(target);
                let done = state.done;
                let count = state
                    .pending
                    .iter()
                    .take_while(|committed| committed.number <= done)
                    .count();
                state.pending.drain(..count).collect()
            };
            self.durability
                .synced
                .send_modify(|synced| *synced = (*synced).max(target));
            if outcome.is_ok() {
                self.stats
                    .synced_transactions
                    .fetch_max(target, Ordering::SeqCst);
            }
            for (reply, output) in ready.into_iter().flat_map(|committed| committed.replies) {
                let _ = reply.send(match &outcome {
                    Ok(()) => output,
                    Err(error) => Err(StoreError::SyncFailed {
                        path: self.path.clone(),
                        detail: error.to_string(),
                    }),
                });
            }
            if outcome.is_ok() {
                self.checkpoint_if_due();
            }
            if self.mode == SyncMode::Background {
                self.pause();
            }
        }
    }

    /// Waits [`BACKGROUND_SYNC_INTERVAL`], or until the store closes.
    fn pause(&self) {
        let deadline = Instant::now() + BACKGROUND_SYNC_INTERVAL;
        let mut state = self.lock();
        state.pausing = true;
        while !state.closing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        state.pausing = false;
    }

    /// Copies the write-ahead log into the database file once it is [`CHECKPOINT_PAGES`] long.
    /// A failure is logged and retried after the next sync: the log only grows meanwhile.
    fn checkpoint_if_due(&self) {
        if self.wal_pages.load(Ordering::Relaxed) < CHECKPOINT_PAGES {
            return;
        }
        // Another sync thread is already checkpointing.
        let Ok(guard) = self.checkpointer.try_lock() else {
            return;
        };
        let Some(conn) = guard.as_ref() else { return };
        if let Some((log, checkpointed)) = passive_checkpoint(conn, &self.stats, &self.path)
            && log == checkpointed
        {
            // Everything is copied: the writer restarts the log with its next commit.
            self.wal_pages.store(0, Ordering::Relaxed);
        }
    }

    fn sync(&self) -> StoreResult<()> {
        let Some(wal) = &self.wal else {
            // Not reached: without a -wal handle no sync thread runs (SQLite syncs in COMMIT).
            return Ok(());
        };
        match wal.sync_data() {
            Ok(()) => {
                self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                let detail = format!("fdatasync of the write-ahead log: {error}");
                tracing::error!(path = %self.path.display(), %detail, "syncing the database failed; refusing further work");
                self.durability.poison(detail.clone());
                Err(StoreError::SyncFailed {
                    path: self.path.clone(),
                    detail,
                })
            }
        }
    }
}

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
        let sync = Arc::new(SyncQueue {
            state: std::sync::Mutex::new(SyncState::default()),
            wake: std::sync::Condvar::new(),
            wal,
            mode,
            wal_pages,
            checkpointer: std::sync::Mutex::new(checkpointer),
            durability: Arc::clone(&durability),
            stats: Arc::clone(&stats),
            path: path.clone(),
        });
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
    pub(crate) fn run(mut self, mut receiver: mpsc::Receiver<Job>) {
        let mut close_replies = Vec::new();
        let mut batch = Vec::with_capacity(self.max_batch);
        // Whether the last transaction had company: then writes are arriving concurrently.
        let mut busy = false;
        while let Some(first) = next_job(&mut receiver, busy, || self.checkpoint_when_idle()) {
            batch.push(first);
            self.gather(&mut receiver, &mut batch, busy);
            busy = batch.len() > 1;
            let mut work = Vec::with_capacity(batch.len());
            for job in batch.drain(..) {
                if !close_replies.is_empty() {
                    let _ = job.reply.send(Err(self.closed()));
                } else if matches!(job.op, WriteOp::Close) {
                    close_replies.push(job.reply);
                } else {
                    work.push(job);
                }
            }
            if !work.is_empty() {
                self.commit_batch(work);
            }
            if !close_replies.is_empty() {
                break;
            }
        }
        // Refuse whatever is still queued, then stop accepting.
        receiver.close();
        while let Ok(job) = receiver.try_recv() {
            let _ = job.reply.send(Err(self.closed()));
        }
        let Self {
            conn,
            path,
            durability,
            sync,
            sync_threads,
            ..
        } = self;
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

    /// Applies `jobs` in one transaction; their callers are answered once it is synced.
    fn commit_batch(&mut self, mut jobs: Vec<Job>) {
        if let Err(error) = self.durability.check(&self.path) {
            for job in jobs {
                let _ = job.reply.send(Err(StoreError::SyncFailed {
                    path: self.path.clone(),
                    detail: error.to_string(),
                }));
            }
            return;
        }
        loop {
            if let Err(source) = self.conn.execute_batch("BEGIN IMMEDIATE") {
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
                    if let Err(source) = self.conn.execute_batch("COMMIT") {
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
                        self.stats.record(jobs.len());
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
        if self.sync.wal.is_none() || self.sync.wal_pages.load(Ordering::Relaxed) < CHECKPOINT_PAGES
        {
            return;
        }
        if let Some((log, checkpointed)) = passive_checkpoint(&self.conn, &self.stats, &self.path)
            && log == checkpointed
        {
            self.sync.wal_pages.store(0, Ordering::Relaxed);
        }
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

/// How long the writer keeps polling its queue after a lone write before it sleeps. A call
/// writes twice, before and after its execution, tens of microseconds apart; waking a sleeping
/// thread costs about as much again on a virtual machine, so the writer stays awake for a moment
/// (yielding the CPU between polls). Under concurrent load it does not poll: it sleeps until a
/// write arrives, then gathers (see [`GATHER_WINDOW`]).
const SPIN_WINDOW: Duration = Duration::from_micros(100);

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

/// Runs a passive checkpoint on `conn` and counts it; returns the log's frames and how many of
/// them are now copied, or `None` when it could not run (busy, because the other side is
/// checkpointing right now, or failed: logged, and retried after the next commit or sync).
fn passive_checkpoint(conn: &Connection, stats: &Stats, path: &Path) -> Option<(c_int, c_int)> {
    match conn.wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE) {
        Ok(frames) => {
            stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            Some(frames)
        }
        Err(error) if is_busy(&error) => None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "checkpointing the write-ahead log failed; will retry");
            None
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn sqlite<'a>(
    path: &'a Path,
    operation: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sqlite {
        path: path.to_owned(),
        operation,
        source,
    }
}

/// The statements every call runs. None may use a temporary b-tree (see the test below and
/// the v2 migration): SQLite would build and free one for every row written.
const INSERT_AUDIT_SQL: &str = "INSERT INTO audit_log (at, agent_id, request_id, kind, signature, decision, rule, actor, detail) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const INSERT_REQUEST_SQL: &str = "INSERT INTO requests (agent_id, request_id, tool, args, args_digest, signature, decision, rule, \
    state, created_at, expires_at, resolved_by, resolved_at, error_code, error_message, approver_refs, updated_at, error_data) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?10, ?17) \
    ON CONFLICT (request_id, agent_id) DO NOTHING";
const TRANSITION_SQL: &str = "UPDATE requests SET state = ?4, updated_at = ?5, \
    resolved_by = coalesce(?6, resolved_by), \
    resolved_at = CASE WHEN ?7 THEN ?5 ELSE resolved_at END, \
    result = coalesce(?8, result), \
    error_code = coalesce(?9, error_code), \
    error_message = coalesce(?10, error_message), \
    error_data = CASE WHEN ?9 IS NULL THEN error_data ELSE ?11 END \
    WHERE agent_id = ?1 AND request_id = ?2 AND state = ?3";
/// A request that has just finished: its outcome waits for the agent.
const INSERT_UNDELIVERED_SQL: &str =
    "INSERT OR IGNORE INTO undelivered (agent_id, request_id) VALUES (?1, ?2)";
const MARK_DELIVERED_SQL: &str = "DELETE FROM undelivered WHERE agent_id = ?1 AND request_id = ?2";
const SET_APPROVER_REFS_SQL: &str =
    "UPDATE requests SET approver_refs = ?3 WHERE agent_id = ?1 AND request_id = ?2";

fn insert_audit(conn: &Connection, path: &Path, audit: &PreparedAudit) -> StoreResult<i64> {
    let mut statement = conn
        .prepare_cached(INSERT_AUDIT_SQL)
        .map_err(sqlite(path, "appending to the audit log"))?;
    statement
        .execute(params![
            audit.at,
            audit.agent_id,
            audit.request_id,
            audit.kind,
            audit.signature,
            audit.decision,
            audit.rule,
            audit.actor,
            audit.detail,
        ])
        .map_err(sqlite(path, "appending to the audit log"))?;
    Ok(conn.last_insert_rowid())
}

fn insert_request(
    conn: &Connection,
    path: &Path,
    insert: &PreparedInsert,
) -> StoreResult<InsertOutcome> {
    const OPERATION: &str = "recording a request";
    let mut statement = conn
        .prepare_cached(INSERT_REQUEST_SQL)
        .map_err(sqlite(path, OPERATION))?;
    let inserted = statement
        .execute(params![
            insert.agent_id,
            insert.request_id,
            insert.tool,
            insert.args,
            insert.args_digest,
            insert.signature,
            insert.decision,
            insert.rule,
            insert.state,
            insert.created_at,
            insert.expires_at,
            insert.resolved_by,
            insert.resolved_at,
            insert.error_code,
            insert.error_message,
            insert.approver_refs,
            insert.error_data,
        ])
        .map_err(sqlite(path, OPERATION))?;
    if inserted == 1 {
        if insert.finished {
            insert_undelivered(conn, path, &insert.agent_id, &insert.request_id)?;
        }
        for audit in &insert.audit {
            insert_audit(conn, path, audit)?;
        }
        return Ok(InsertOutcome::Inserted);
    }
    let existing = rows::get_request(conn, path, &insert.agent_id, &insert.request_id)?
        .ok_or_else(|| StoreError::Corrupt {
            path: path.to_owned(),
            what: format!(
                "requests row ({}, {}) conflicted on insert but cannot be read back",
                insert.agent_id, insert.request_id
            ),
        })?;
    if existing.args_digest == insert.args_digest {
        Ok(InsertOutcome::Duplicate(Box::new(existing)))
    } else {
        Ok(InsertOutcome::Conflict(Box::new(existing)))
    }
}

fn transition(conn: &Connection, path: &Path, change: &PreparedTransition) -> StoreResult<bool> {
    const OPERATION: &str = "changing a request's state";
    let mut statement = conn
        .prepare_cached(TRANSITION_SQL)
        .map_err(sqlite(path, OPERATION))?;
    let changed = statement
        .execute(params![
            change.agent_id,
            change.request_id,
            change.from,
            change.to,
            change.at,
            change.resolved_by,
            change.resolves,
            change.result,
            change.error_code,
            change.error_message,
            change.error_data,
        ])
        .map_err(sqlite(path, OPERATION))?;
    if changed != 1 {
        return Ok(false);
    }
    if change.finishes {
        insert_undelivered(conn, path, &change.agent_id, &change.request_id)?;
    }
    for audit in &change.audit {
        insert_audit(conn, path, audit)?;
    }
    Ok(true)
}

fn insert_undelivered(
    conn: &Connection,
    path: &Path,
    agent_id: &str,
    request_id: &str,
) -> StoreResult<()> {
    const OPERATION: &str = "keeping an outcome for its agent";
    conn.prepare_cached(INSERT_UNDELIVERED_SQL)
        .map_err(sqlite(path, OPERATION))?
        .execute(params![agent_id, request_id])
        .map_err(sqlite(path, OPERATION))?;
    Ok(())
}

fn mark_delivered(
    conn: &Connection,
    path: &Path,
    agent_id: &str,
    request_ids: &[String],
) -> StoreResult<usize> {
    const OPERATION: &str = "marking results delivered";
    let mut statement = conn
        .prepare_cached(MARK_DELIVERED_SQL)
        .map_err(sqlite(path, OPERATION))?;
    let mut marked = 0;
    for request_id in request_ids {
        marked += statement
            .execute(params![agent_id, request_id])
            .map_err(sqlite(path, OPERATION))?;
    }
    Ok(marked)
}

fn set_approver_refs(
    conn: &Connection,
    path: &Path,
    agent_id: &str,
    request_id: &str,
    refs: &str,
) -> StoreResult<bool> {
    const OPERATION: &str = "saving approver message references";
    let changed = conn
        .prepare_cached(SET_APPROVER_REFS_SQL)
        .map_err(sqlite(path, OPERATION))?
        .execute(params![agent_id, request_id, refs])
        .map_err(sqlite(path, OPERATION))?;
    Ok(changed == 1)
}

fn recover(conn: &Connection, path: &Path, now: Timestamp) -> StoreResult<RecoveryReport> {
    // Their outcomes ("failed") wait for their agents.
    conn.execute(
        "INSERT OR IGNORE INTO undelivered (agent_id, request_id) \
         SELECT agent_id, request_id FROM requests WHERE state = 'executing'",
        [],
    )
    .map_err(sqlite(path, "keeping the outcomes of interrupted requests"))?;
    let sql = format!(
        "UPDATE requests SET state = 'failed', updated_at = ?1, error_code = ?2, error_message = ?3, \
         error_data = ?4 WHERE state = 'executing' RETURNING {REQUEST_COLUMNS}"
    );
    let mut failed = rows::query_requests(
        conn,
        path,
        "failing requests interrupted by a restart",
        &sql,
        params![
            now.as_millis(),
            EXECUTION_FAILED_CODE,
            RESTART_DURING_EXECUTION,
            r#"{"kind":"interrupted","may_have_executed":true}"#
        ],
    )?;
    failed.sort_by_key(|record| (record.created_at, record.key()));
    for record in &failed {
        let mut entry = AuditEntry::new(record.agent_id.clone(), AuditKind::Failed)
            .at(now)
            .request_id(record.request_id.clone())
            .signature(record.signature.clone())
            .decision(record.decision)
            .actor("gateway")
            .detail(serde_json::json!({
                "code": EXECUTION_FAILED_CODE,
                "message": RESTART_DURING_EXECUTION,
            }));
        if let Some(rule) = &record.rule {
            entry = entry.rule(rule.clone());
        }
        insert_audit(conn, path, &PreparedAudit::new(entry)?)?;
    }
    Ok(RecoveryReport {
        failed,
        approved: rows::requests_in_state(conn, path, RequestState::Approved)?,
        pending: rows::pending_by_expiry(conn, path, now, true)?,
        expired_pending: rows::pending_by_expiry(conn, path, now, false)?,
    })
}

fn apply(conn: &Connection, path: &Path, op: &WriteOp) -> StoreResult<WriteOutput> {
    match op {
        WriteOp::Insert(insert) => insert_request(conn, path, insert).map(WriteOutput::Insert),
        WriteOp::Transition(change) => transition(conn, path, change).map(WriteOutput::Transition),
        WriteOp::Audit(audit) => insert_audit(conn, path, audit).map(WriteOutput::AuditId),
        WriteOp::MarkDelivered {
            agent_id,
            request_ids,
        } => mark_delivered(conn, path, agent_id, request_ids).map(WriteOutput::Count),
        WriteOp::SetApproverRefs {
            agent_id,
            request_id,
            refs,
        } => set_approver_refs(conn, path, agent_id, request_id, refs).map(WriteOutput::Transition),
        WriteOp::Recover { now } => {
            recover(conn, path, *now).map(|report| WriteOutput::Recovery(Box::new(report)))
        }
        WriteOp::Close => Ok(WriteOutput::Closed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer connection on a fresh file with the current schema.
    fn migrated() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.db");
        super::super::schema::prepare_file(&path).unwrap();
        let conn = super::super::schema::open_writer(&path, false).unwrap();
        (dir, conn)
    }

    /// The instructions of `sql`'s bytecode (`EXPLAIN`), as (opcode, P2), with every parameter
    /// bound to NULL. (P2 of an `OpenWrite` is the root page of the b-tree it opens.)
    fn explain(conn: &Connection, sql: &str) -> Vec<(String, i64)> {
        let mut explain = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Null; explain.parameter_count()];
        explain
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                Ok((row.get::<_, String>(1)?, row.get::<_, i64>(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The opcodes of `sql`'s bytecode.
    fn opcodes(conn: &Connection, sql: &str) -> Vec<String> {
        explain(conn, sql).into_iter().map(|(op, _)| op).collect()
    }

    /// Each hot statement's bytecode, against the current schema, opens no temporary b-tree.
    #[test]
    fn hot_statements_build_no_temporary_btree() {
        let (_dir, conn) = migrated();
        for sql in [
            INSERT_AUDIT_SQL,
            INSERT_REQUEST_SQL,
            TRANSITION_SQL,
            INSERT_UNDELIVERED_SQL,
            MARK_DELIVERED_SQL,
            SET_APPROVER_REFS_SQL,
        ] {
            let opcodes = opcodes(&conn, sql);
            assert!(
                opcodes.iter().any(|op| op == "Halt"),
                "no bytecode for {sql}"
            );
            assert!(
                !opcodes.iter().any(|op| op == "OpenEphemeral"),
                "{sql} builds a temporary b-tree on every run: {opcodes:?}"
            );
        }
    }

    /// Appending to the audit log writes the log's own b-tree and nothing else: no index
    /// to maintain on the hot path.
    #[test]
    fn an_audit_append_writes_one_btree() {
        let (_dir, conn) = migrated();
        let opcodes = opcodes(&conn, INSERT_AUDIT_SQL);
        let opened: Vec<&String> = opcodes.iter().filter(|op| *op == "OpenWrite").collect();
        assert_eq!(opened.len(), 1, "{opcodes:?}");
    }

    /// Marking an outcome received deletes its entry in `undelivered`, and writes nothing else:
    /// the request's row (on a page last written long before) is left alone.
    #[test]
    fn marking_delivered_writes_only_the_undelivered_table() {
        let (_dir, conn) = migrated();
        let instructions = explain(&conn, MARK_DELIVERED_SQL);
        let roots: Vec<i64> = instructions
            .iter()
            .filter(|(op, _)| op == "OpenWrite")
            .map(|&(_, root)| root)
            .collect();
        assert_eq!(roots.len(), 1, "{instructions:?}");
        let undelivered: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'undelivered'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(roots, vec![undelivered]);
    }

    /// The plan of `get_pending_results`: the agent's entries in `undelivered` by its key, each
    /// request by the primary key; no scan of `requests`.
    #[test]
    fn undelivered_results_are_read_by_key() {
        let (_dir, conn) = migrated();
        let sql = format!("EXPLAIN QUERY PLAN {}", rows::undelivered_sql());
        let mut plan = conn.prepare(&sql).unwrap();
        let steps: Vec<String> = plan
            .query_map(["pi"], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            steps
                .iter()
                .any(|step| step.starts_with("SEARCH pending USING PRIMARY KEY (agent_id=?)")),
            "{steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|step| step.starts_with("SEARCH requests USING INDEX")
                    && step.contains("(request_id=? AND agent_id=?)")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|step| step.starts_with("SCAN")),
            "{steps:?}"
        );
    }
}
