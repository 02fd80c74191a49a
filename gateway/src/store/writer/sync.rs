//! The sync threads: they `fdatasync` the write-ahead log after the writer's commits, answer
//! the callers waiting for that sync ([`SyncMode::Always`]) and run the passive checkpoints.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::checkpoint::{CHECKPOINT_PAGES, passive_checkpoint};
use super::durability::Durability;
use super::ops::WriteOutput;
use super::stats::Stats;
use crate::store::SyncMode;
use crate::store::error::{StoreError, StoreResult};

/// A caller's reply channel and the outcome to send on it.
pub(super) type Reply = (
    oneshot::Sender<StoreResult<WriteOutput>>,
    StoreResult<WriteOutput>,
);

/// The answers of one committed (or failed) transaction, waiting for a sync that covers it.
pub(super) struct Committed {
    pub(super) number: u64,
    pub(super) replies: Vec<Reply>,
}

/// How many `fdatasync` calls may run at once. A sync covers every transaction committed before
/// it started; letting a new one start while the previous one is still in the kernel means a
/// fresh commit waits for one sync, not for the rest of the running one plus its own.
pub(super) const SYNC_THREADS: usize = 3;

/// With [`SyncMode::Background`], the pause after each sync before the next one: at most this
/// much (plus one sync) of acknowledged writes is only in the page cache at any time. Syncing
/// continuously instead makes every `fdatasync` compete with the writer's next appends (on ext4
/// they wait for the journal commit), for no gain a crash could see.
const BACKGROUND_SYNC_INTERVAL: Duration = Duration::from_millis(50);

/// The queue between the writer and the sync threads.
pub(super) struct SyncQueue {
    state: std::sync::Mutex<SyncState>,
    wake: std::sync::Condvar,
    /// The -wal file; `None` when SQLite syncs inside each commit.
    pub(super) wal: Option<File>,
    pub(super) mode: SyncMode,
    /// Pages in the write-ahead log after the latest commit (from the writer's WAL hook).
    pub(super) wal_pages: Arc<AtomicU64>,
    /// The connection that runs checkpoints; `None` when SQLite checkpoints inside commits, and
    /// once the writer has stopped.
    pub(super) checkpointer: std::sync::Mutex<Option<Connection>>,
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
    /// A queue with nothing committed yet; see the fields for the arguments.
    pub(super) fn new(
        wal: Option<File>,
        mode: SyncMode,
        wal_pages: Arc<AtomicU64>,
        checkpointer: Option<Connection>,
        durability: Arc<Durability>,
        stats: Arc<Stats>,
        path: PathBuf,
    ) -> Self {
        Self {
            state: std::sync::Mutex::new(SyncState::default()),
            wake: std::sync::Condvar::new(),
            wal,
            mode,
            wal_pages,
            checkpointer: std::sync::Mutex::new(checkpointer),
            durability,
            stats,
            path,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn push(&self, committed: Committed) {
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

    pub(super) fn close(&self) {
        self.lock().closing = true;
        self.wake.notify_all();
    }

    /// One sync thread: sync whatever was committed since the last sync started, then answer
    /// every transaction that sync covered.
    pub(super) fn run(&self) {
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
