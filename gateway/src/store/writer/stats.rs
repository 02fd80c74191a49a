//! The writer's counters, shared with the store handles that report them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::StoreMetrics;

use crate::store::types::StoreStats;

/// Writer counters shared with the [`Store`](crate::store::Store) handles.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(super) transactions: AtomicU64,
    pub(super) writes: AtomicU64,
    pub(super) largest_batch: AtomicU64,
    pub(super) syncs: AtomicU64,
    pub(super) synced_transactions: AtomicU64,
    pub(super) checkpoints: AtomicU64,
    pub(super) wal_frames: AtomicU64,
    pub(super) inline_commits: AtomicU64,
    /// The commit latency and batch size histograms `/metrics` shows.
    pub(crate) metrics: StoreMetrics,
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
            inline_commits: self.inline_commits.load(Ordering::Relaxed),
        }
    }

    pub(super) fn record(&self, writes: usize, took: Duration) {
        self.metrics.commit.observe(took.as_secs_f64());
        self.metrics.batch.observe(writes as f64);
        let writes = u64::try_from(writes).unwrap_or(u64::MAX);
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes, Ordering::Relaxed);
        self.largest_batch.fetch_max(writes, Ordering::Relaxed);
    }
}
