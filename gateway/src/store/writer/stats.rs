//! The writer's counters, shared with the store handles that report them.

use std::sync::atomic::{AtomicU64, Ordering};

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

    pub(super) fn record(&self, writes: usize) {
        let writes = u64::try_from(writes).unwrap_or(u64::MAX);
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes, Ordering::Relaxed);
        self.largest_batch.fetch_max(writes, Ordering::Relaxed);
    }
}
