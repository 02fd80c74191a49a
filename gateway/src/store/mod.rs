//! The gateway's SQLite store: the request state machine (docs/ARCHITECTURE.md) and the append-only
//! audit log, behind an async API that blocks the tokio runtime for at most one short commit.
//!
//! # Design
//!
//! - One database file, created with mode 0600 before SQLite opens it, WAL journal. When a
//!   write's future resolves, the write is committed to the write-ahead log: it survives a crash
//!   or `kill -9` of the gateway (docs/ARCHITECTURE.md, "Durability rules"). How it relates to the disk is the
//!   [`SyncMode`]: by default ([`SyncMode::Background`]) a sync thread `fdatasync`s the WAL every
//!   50 ms without holding answers back, so a power cut can lose only the last interval; with
//!   [`SyncMode::Always`] nobody is answered, and no read returns a commit, before the sync
//!   covering it finished (the durability of `synchronous=FULL`;
//!   [`StoreOptions::sync_in_commit`] sets that in SQLite itself instead).
//! - Schema versions live in `PRAGMA user_version`; [`Store::open`] migrates an empty or older
//!   file and refuses a file written by a newer agent-gate ([`StoreError::NewerSchema`]).
//! - Writes go to one writer thread that **group-commits**: everything queued is applied in one
//!   transaction and every caller is answered after that commit (and, with [`SyncMode::Always`],
//!   its sync; see the `writer` module). While at most one call is in progress
//!   ([`Store::call_in_progress`]), a write that finds the writer idle (nothing queued, no commit
//!   running) is committed by its caller on the spot, with the same connection and the same
//!   rules, which saves two thread hand-offs per write when calls arrive one at a time.
//! - Reads use a small pool of separate connections on tokio's blocking threads; in WAL mode they
//!   never wait for the writer's lock (only, if they may have seen a commit still being synced,
//!   for that sync).
//! - Every state change is ONE conditional `UPDATE … WHERE agent_id = ? AND request_id = ? AND
//!   state = ?`; [`Store::transition`] returns whether it won. That write decides races (a
//!   button press against a timeout against a restart), not an in-memory lock.
//! - A finished request whose outcome its agent has not received is listed in the small
//!   `undelivered` table (added in the transaction that finishes the request, removed by
//!   [`Store::mark_delivered`]), so that marking an answer received never rewrites the
//!   request's row.
//!
//! ```no_run
//! # async fn demo() -> Result<(), agent_gate_gateway::store::StoreError> {
//! use agent_gate_gateway::store::{AuditEntry, AuditKind, Decision, NewRequest, Store, Transition};
//! use serde_json::json;
//!
//! let store = Store::open("/var/lib/agent-gate/agent-gate.db").await?;
//! let report = store.recover_on_startup().await?;
//! println!("{} requests were interrupted by the restart", report.failed.len());
//!
//! let args = json!({"entity_id": "light.kitchen"});
//! store
//!     .insert_request(
//!         NewRequest::allowed("pi", "r1", "ha_get_state", args, "ha_get_state(light.kitchen)")
//!             .audit(AuditEntry::new("pi", AuditKind::Decision).request_id("r1").decision(Decision::Allow)),
//!     )
//!     .await?;
//! let won = store.transition(Transition::executed("pi", "r1", json!({"state": "on"}))).await?;
//! assert!(won);
//! store.close().await?;
//! # Ok(())
//! # }
//! ```

mod audit_chain;
mod error;
mod export;
mod grants;
mod history;
mod rows;
mod schema;
mod types;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

pub use audit_chain::{BrokenRow, ChainReport, verify as verify_audit_chain};
pub use error::{StoreError, StoreResult};
pub use export::{ExportQuery, audit_rows_after, export_object, export_requests, open_read_only};
pub use grants::{Grant, NewGrant, grant_scope};
pub use history::{HistoryDecision, HistoryQuery};
pub(crate) use rows::args_digest;
pub use schema::SCHEMA_VERSION;
pub(crate) use types::rfc3339;
pub use types::{
    AuditEntry, AuditKind, AuditQuery, AuditRecord, Decision, EXECUTION_FAILED_CODE, InsertOutcome,
    NewRequest, RESTART_DURING_EXECUTION, RecoveryReport, RequestKey, RequestRecord, RequestState,
    StoreStats, StoredError, Timestamp, Transition, UnknownName,
};

use writer::{
    Durability, Job, PreparedAudit, PreparedInsert, PreparedTransition, Stats, WriteOp,
    WriteOutput, Writer, WriterSlot,
};

/// When a write counts as done, relative to the disk.
///
/// Either way a write is committed to SQLite's write-ahead log before its caller is answered, so
/// a crash or `kill -9` of the gateway loses nothing acknowledged (docs/ARCHITECTURE.md,
/// "Durability rules").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Answer at commit; a sync thread `fdatasync`s the log in the background, every 50 ms while
    /// there are new commits. A power cut or kernel crash can lose the writes of the last
    /// interval. This is what `synchronous=NORMAL` promises, plus a bounded interval between
    /// syncs instead of syncs only at checkpoints.
    #[default]
    Background,
    /// Answer only after the `fdatasync` covering the write; a read never returns a commit that
    /// is not on disk. Survives a power cut too, at the price of one disk sync in every answer's
    /// latency (shared by concurrent writes).
    Always,
}

impl SyncMode {
    /// Every mode, in the order the documentation lists them.
    pub const ALL: [SyncMode; 2] = [SyncMode::Background, SyncMode::Always];

    /// The name used in `config.yaml` (`storage.sync`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Background => "background",
            Self::Always => "always",
        }
    }
}

/// Tuning knobs of [`Store::open_with`]; the defaults suit a home gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    readers: usize,
    max_batch: usize,
    queue_capacity: usize,
    sync_in_commit: bool,
    sync: SyncMode,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            readers: 2,
            max_batch: 1024,
            queue_capacity: 4096,
            sync_in_commit: false,
            sync: SyncMode::default(),
        }
    }
}

impl StoreOptions {
    /// The defaults: 2 reader connections, batches of up to 1024 writes, a queue of 4096 writes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of read connections (at least 1).
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers.max(1);
        self
    }

    /// The most writes committed in one transaction (at least 1; 1 disables group commit).
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// How many writes may wait for the writer before callers wait to enqueue (at least 1).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// When a write counts as done: at commit with a sync right after (the default) or after its
    /// sync. See [`SyncMode`].
    pub fn sync(mut self, mode: SyncMode) -> Self {
        self.sync = mode;
        self
    }

    /// Let SQLite sync the WAL inside every commit (`synchronous=FULL`) instead of the store's
    /// sync threads (`synchronous=NORMAL` plus an `fdatasync` after each commit). Implies
    /// [`SyncMode::Always`]-like durability: the writer answers after each synced commit, but
    /// cannot apply the next batch while the previous one is being synced.
    pub fn sync_in_commit(mut self, on: bool) -> Self {
        self.sync_in_commit = on;
        self
    }
}

/// A cheap, cloneable handle on the store. See the [module docs](self).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Inner {
    path: PathBuf,
    sender: mpsc::Sender<Job>,
    /// The writer, shared with its thread so that an idle one can commit a caller's write inline.
    writer: Arc<WriterSlot>,
    /// Calls in progress ([`Store::call_in_progress`]): with company, writes go to the writer
    /// thread to share its transactions.
    calls: Arc<AtomicUsize>,
    readers: Vec<Mutex<Option<Connection>>>,
    next_reader: AtomicUsize,
    stats: Arc<Stats>,
    durability: Arc<Durability>,
    closed: AtomicBool,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
}

/// A call in progress, counted until it drops (see [`Store::call_in_progress`]).
#[derive(Debug)]
pub struct CallInProgress(Arc<AtomicUsize>);

impl Drop for CallInProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a reader leaves the connection usable (SQLite state is per statement).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Opens (creating if missing) the database at `path` with the default [`StoreOptions`].
    ///
    /// The file is created with mode 0600 (an existing file's mode is narrowed to 0600), switched
    /// to WAL, and migrated to [`SCHEMA_VERSION`]. The directory must exist.
    pub async fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_with(path, StoreOptions::default()).await
    }

    /// Opens the database at `path` with `options`.
    pub async fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> StoreResult<Self> {
        let path = path.as_ref().to_owned();
        let for_error = path.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(path, options))
            .await
            .map_err(|error| StoreError::Worker {
                path: for_error,
                detail: format!("opening the database: {error}"),
            })?
    }

    fn open_blocking(path: PathBuf, options: StoreOptions) -> StoreResult<Self> {
        schema::prepare_file(&path)?;
        let conn = schema::open_writer(&path, options.sync_in_commit)?;
        let wal = if options.sync_in_commit {
            None
        } else {
            Some(schema::open_wal(&path)?)
        };
        let readers = (0..options.readers.max(1))
            .map(|_| schema::open_reader(&path).map(|conn| Mutex::new(Some(conn))))
            .collect::<StoreResult<Vec<_>>>()?;
        let (sender, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let stats = Arc::new(Stats::default());
        let durability = Arc::new(Durability::default());
        let writer = Writer::new(
            conn,
            wal,
            path.clone(),
            Arc::clone(&stats),
            Arc::clone(&durability),
            options.max_batch,
            options.sync,
        )?;
        let due = writer.checkpoint_due();
        let writer = Arc::new(Mutex::new(Some(writer)));
        let slot = Arc::clone(&writer);
        let writer_thread = std::thread::Builder::new()
            .name("agent-gate-store".to_owned())
            .spawn(move || Writer::run(&slot, receiver, due))
            .map_err(|error| StoreError::Worker {
                path: path.clone(),
                detail: format!("starting the writer thread: {error}"),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                sender,
                writer,
                readers,
                calls: Arc::new(AtomicUsize::new(0)),
                next_reader: AtomicUsize::new(0),
                stats,
                durability,
                closed: AtomicBool::new(false),
                writer_thread: Mutex::new(Some(writer_thread)),
            }),
        })
    }

    /// Checks, without creating anything, that `path` can hold the database: not a directory,
    /// readable and writable if it exists, in a writable directory or one that can be created.
    /// The gateway runs this before opening its store; `agent-gate check` reports the same.
    pub fn check_path(path: impl AsRef<Path>) -> StoreResult<()> {
        schema::check_path(path.as_ref())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The writer's histograms (commit latency, batch size), for `/metrics`.
    pub(crate) fn metrics(&self) -> &crate::metrics::StoreMetrics {
        &self.inner.stats.metrics
    }

    /// Writer counters: transactions committed, writes committed, largest batch.
    pub fn stats(&self) -> StoreStats {
        self.inner.stats.snapshot()
    }

    fn closed_error(&self) -> StoreError {
        StoreError::Closed {
            path: self.inner.path.clone(),
        }
    }

    fn unexpected(&self, what: &str) -> StoreError {
        StoreError::Worker {
            path: self.inner.path.clone(),
            detail: format!("the writer answered {what} with an unexpected reply"),
        }
    }

    /// Counts a call as in progress until the returned guard drops. A write commits inline
    /// (on its caller's thread, see `writer::commit_inline`) only while at most one call is in
    /// progress: with company it goes to the writer thread, whose transactions the concurrent
    /// calls share. The count has to come from the calls: a runtime with one worker thread
    /// hands the store one write at a time however many calls are in flight, and committing
    /// them inline would stall every other call on that thread.
    pub fn call_in_progress(&self) -> CallInProgress {
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        CallInProgress(Arc::clone(&self.inner.calls))
    }

    async fn write(&self, op: WriteOp) -> StoreResult<WriteOutput> {
        let (reply, answer) = oneshot::channel();
        let job = Job { op, reply };
        let queued = if self.inner.calls.load(Ordering::Relaxed) <= 1 {
            writer::commit_inline(&self.inner.writer, &self.inner.sender, job)
        } else {
            Err(job)
        };
        if let Err(job) = queued {
            self.inner
                .sender
                .send(job)
                .await
                .map_err(|_| self.closed_error())?;
        }
        answer.await.map_err(|_| self.closed_error())?
    }

    async fn read<T, F>(&self, query: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Path) -> StoreResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let result = tokio::task::spawn_blocking(move || {
            let count = inner.readers.len();
            let start = inner.next_reader.fetch_add(1, Ordering::Relaxed);
            let run = |guard: MutexGuard<'_, Option<Connection>>| match guard.as_ref() {
                // Any commit this read saw was announced before it finished.
                Some(conn) => {
                    query(conn, &inner.path).map(|value| (value, inner.durability.visible()))
                }
                None => Err(StoreError::Closed {
                    path: inner.path.clone(),
                }),
            };
            // Take the first idle connection; if all are busy, wait for this call's turn.
            let slots =
                (0..count).filter_map(|offset| inner.readers.get((start + offset) % count.max(1)));
            let mut idle = None;
            for slot in slots {
                if let Ok(guard) = slot.try_lock() {
                    idle = Some(guard);
                    break;
                }
            }
            match idle {
                Some(guard) => run(guard),
                None => match inner.readers.get(start % count.max(1)) {
                    Some(slot) => run(lock(slot)),
                    None => Err(StoreError::Closed {
                        path: inner.path.clone(),
                    }),
                },
            }
        })
        .await
        .map_err(|error| StoreError::Worker {
            path: self.inner.path.clone(),
            detail: format!("a read task failed: {error}"),
        })?;
        let (value, seen) = result?;
        // Never show a commit that is not on disk yet: wait for the sync covering it.
        self.inner
            .durability
            .wait_synced(seen, &self.inner.path)
            .await?;
        Ok(value)
    }

    /// Records a new request (and its audit entries, in the same transaction).
    ///
    /// If the agent already has a request with this id, nothing is written: the outcome says
    /// whether the stored one is the same call (same tool and arguments, whatever their key order:
    /// attach to it) or a different one (refuse with -32600).
    pub async fn insert_request(&self, request: NewRequest) -> StoreResult<InsertOutcome> {
        let insert = PreparedInsert::new(request)?;
        match self.write(WriteOp::Insert(Box::new(insert))).await? {
            WriteOutput::Insert(outcome) => Ok(outcome),
            _ => Err(self.unexpected("insert_request")),
        }
    }

    /// Applies a state change if the request is still in the transition's `from` state.
    ///
    /// Returns `true` if this call won (exactly one row changed; its audit entries were committed
    /// with it), `false` if the request does not exist or is no longer in `from` (someone else
    /// won). A transition that is not an edge of the state machine is refused with
    /// [`StoreError::InvalidTransition`].
    pub async fn transition(&self, transition: Transition) -> StoreResult<bool> {
        let change = PreparedTransition::new(transition)?;
        match self.write(WriteOp::Transition(Box::new(change))).await? {
            WriteOutput::Transition(won) => Ok(won),
            _ => Err(self.unexpected("transition")),
        }
    }

    /// Appends one audit record; returns its id once it is committed.
    pub async fn append_audit(&self, entry: AuditEntry) -> StoreResult<i64> {
        let audit = PreparedAudit::new(entry)?;
        match self.write(WriteOp::Audit(Box::new(audit))).await? {
            WriteOutput::AuditId(id) => Ok(id),
            _ => Err(self.unexpected("append_audit")),
        }
    }

    /// Marks finished requests of `agent_id` as received by the agent; returns how many changed
    /// (requests that are unknown, not finished, or already delivered are skipped).
    pub async fn mark_delivered<I, S>(
        &self,
        agent_id: impl Into<String>,
        request_ids: I,
    ) -> StoreResult<usize>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let op = WriteOp::MarkDelivered {
            agent_id: agent_id.into(),
            request_ids: request_ids.into_iter().map(Into::into).collect(),
        };
        match self.write(op).await? {
            WriteOutput::Count(count) => Ok(count),
            _ => Err(self.unexpected("mark_delivered")),
        }
    }

    /// Stores the approver message references of a request (e.g. Telegram chat and message ids,
    /// so the messages can be edited after a restart). Returns whether the request exists.
    pub async fn set_approver_refs(
        &self,
        agent_id: impl Into<String>,
        request_id: impl Into<String>,
        refs: Value,
    ) -> StoreResult<bool> {
        let op = WriteOp::SetApproverRefs {
            agent_id: agent_id.into(),
            request_id: request_id.into(),
            refs: rows::json_text(&refs, "approver message references")?,
        };
        match self.write(op).await? {
            WriteOutput::Transition(found) => Ok(found),
            _ => Err(self.unexpected("set_approver_refs")),
        }
    }

    /// Stores `grant` (and its audit entries, in the same transaction); returns its id.
    pub async fn insert_grant(&self, mut grant: NewGrant) -> StoreResult<i64> {
        let audit = std::mem::take(&mut grant.audit)
            .into_iter()
            .map(PreparedAudit::new)
            .collect::<StoreResult<Vec<_>>>()?;
        let op = WriteOp::InsertGrant {
            grant: Box::new(grant),
            audit,
        };
        match self.write(op).await? {
            WriteOutput::AuditId(id) => Ok(id),
            _ => Err(self.unexpected("insert_grant")),
        }
    }

    /// Counts one use of grant `id` with its audit entry; `false` if it was revoked meanwhile.
    pub async fn use_grant(&self, id: i64, audit: AuditEntry) -> StoreResult<bool> {
        let op = WriteOp::UseGrant {
            id,
            audit: Box::new(PreparedAudit::new(audit)?),
        };
        match self.write(op).await? {
            WriteOutput::Transition(changed) => Ok(changed),
            _ => Err(self.unexpected("use_grant")),
        }
    }

    /// Revokes grant `id` by `by`, with its audit entry; `false` if it was already revoked or
    /// does not exist.
    pub async fn revoke_grant(
        &self,
        id: i64,
        by: impl Into<String>,
        audit: AuditEntry,
    ) -> StoreResult<bool> {
        let op = WriteOp::RevokeGrant {
            id,
            at: Timestamp::now(),
            by: by.into(),
            audit: Box::new(PreparedAudit::new(audit)?),
        };
        match self.write(op).await? {
            WriteOutput::Transition(changed) => Ok(changed),
            _ => Err(self.unexpected("revoke_grant")),
        }
    }

    /// The live grant of `agent_id` for `scope` at `now` (the longest-lasting one), if any.
    pub async fn live_grant(
        &self,
        agent_id: impl Into<String>,
        scope: impl Into<String>,
        now: Timestamp,
    ) -> StoreResult<Option<Grant>> {
        let (agent_id, scope) = (agent_id.into(), scope.into());
        self.read(move |conn, path| grants::live_grant(conn, path, &agent_id, &scope, now))
            .await
    }

    /// Every grant live at `now`, soonest to expire first.
    pub async fn live_grants(&self, now: Timestamp) -> StoreResult<Vec<Grant>> {
        self.read(move |conn, path| grants::live_grants(conn, path, now))
            .await
    }

    /// Grant `id`, revoked or not.
    pub async fn grant(&self, id: i64) -> StoreResult<Option<Grant>> {
        self.read(move |conn, path| grants::grant_by_id(conn, path, id))
            .await
    }

    /// Start-up recovery, as of now: see [`Store::recover_on_startup_at`].
    pub async fn recover_on_startup(&self) -> StoreResult<RecoveryReport> {
        self.recover_on_startup_at(Timestamp::now()).await
    }

    /// Start-up recovery: every request found `executing` is marked `failed` with error -32004
    /// [`RESTART_DURING_EXECUTION`] and audited (actor `gateway`) — never re-run. Returns those,
    /// plus the approved-but-not-started, pending and expired-but-pending requests found, all in
    /// one transaction.
    pub async fn recover_on_startup_at(&self, now: Timestamp) -> StoreResult<RecoveryReport> {
        let report = match self.write(WriteOp::Recover { now }).await? {
            WriteOutput::Recovery(report) => *report,
            _ => return Err(self.unexpected("recover_on_startup")),
        };
        for record in &report.failed {
            tracing::warn!(
                agent = %record.agent_id,
                request_id = %record.request_id,
                signature = %record.signature,
                "request was executing when the gateway stopped; marked failed (outcome unknown)"
            );
        }
        tracing::info!(
            failed = report.failed.len(),
            approved = report.approved.len(),
            pending = report.pending.len(),
            expired_pending = report.expired_pending.len(),
            "store recovery after start-up"
        );
        Ok(report)
    }

    /// The request `request_id` of `agent_id`, if any.
    pub async fn get_request(
        &self,
        agent_id: impl Into<String>,
        request_id: impl Into<String>,
    ) -> StoreResult<Option<RequestRecord>> {
        let (agent_id, request_id) = (agent_id.into(), request_id.into());
        self.read(move |conn, path| rows::get_request(conn, path, &agent_id, &request_id))
            .await
    }

    /// Pending requests that have not expired at `now` (all agents), soonest expiry first.
    pub async fn pending_unexpired(&self, now: Timestamp) -> StoreResult<Vec<RequestRecord>> {
        self.read(move |conn, path| rows::pending_by_expiry(conn, path, now, true))
            .await
    }

    /// Requests still `pending` whose expiry is at or before `now` (for the timeout sweeper).
    pub async fn expired_pending(&self, now: Timestamp) -> StoreResult<Vec<RequestRecord>> {
        self.read(move |conn, path| rows::pending_by_expiry(conn, path, now, false))
            .await
    }

    /// Finished requests of `agent_id` (only that agent) whose outcome it has not received,
    /// oldest first.
    pub async fn undelivered(
        &self,
        agent_id: impl Into<String>,
    ) -> StoreResult<Vec<RequestRecord>> {
        let agent_id = agent_id.into();
        self.read(move |conn, path| rows::undelivered(conn, path, &agent_id))
            .await
    }

    /// The newest request of `agent_id` that asked a human about the same call (`tool` with
    /// `args`, by the digest that also decides idempotency) and is still open: waiting,
    /// approved or running, or finished with an outcome not yet received. `None` otherwise.
    pub async fn open_ask_for(
        &self,
        agent_id: impl Into<String>,
        tool: &str,
        args: &serde_json::Value,
    ) -> StoreResult<Option<RequestRecord>> {
        let agent_id = agent_id.into();
        let digest = rows::args_digest(tool, args);
        self.read(move |conn, path| rows::open_ask_by_digest(conn, path, &agent_id, &digest))
            .await
    }

    /// The `limit` requests that asked a human and were resolved (approved, denied or expired)
    /// most recently, newest first. Requests the policy decided alone, and those still pending,
    /// are not included.
    pub async fn recently_resolved_asks(&self, limit: u32) -> StoreResult<Vec<RequestRecord>> {
        let limit = limit.min(AuditQuery::MAX_LIMIT);
        self.read(move |conn, path| rows::recently_resolved_asks(conn, path, limit))
            .await
    }

    /// One page of the requests that asked a human and were resolved, most recently resolved
    /// first, filtered by agent, tool, decision and decider (see [`HistoryQuery`]).
    pub async fn history(&self, query: HistoryQuery) -> StoreResult<Vec<RequestRecord>> {
        self.read(move |conn, path| history::history(conn, path, &query))
            .await
    }

    /// One page of the audit log, newest first, filtered by `query`.
    pub async fn audit_page(&self, query: AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        self.read(move |conn, path| rows::audit_page(conn, path, &query))
            .await
    }

    /// Flushes every queued write, stops the writer and closes all connections (checkpointing
    /// the WAL into the database file). Other handles get [`StoreError::Closed`] afterwards.
    /// Closing twice is harmless.
    pub async fn close(&self) -> StoreResult<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        let path = inner.path.clone();
        // Readers first, so the writer's connection is the last one and removes the WAL.
        tokio::task::spawn_blocking(move || {
            for slot in &inner.readers {
                drop(lock(slot).take());
            }
        })
        .await
        .map_err(|error| StoreError::Worker {
            path: path.clone(),
            detail: format!("closing the readers: {error}"),
        })?;
        match self.write(WriteOp::Close).await? {
            WriteOutput::Closed => {}
            _ => return Err(self.unexpected("close")),
        }
        let handle = lock(&self.inner.writer_thread).take();
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|error| StoreError::Worker {
                    path: path.clone(),
                    detail: format!("joining the writer thread: {error}"),
                })?
                .map_err(|_| StoreError::Worker {
                    path,
                    detail: "the writer thread panicked".to_owned(),
                })?;
        }
        Ok(())
    }
}
