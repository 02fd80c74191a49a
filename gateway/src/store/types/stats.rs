//! [`StoreStats`]: the writer's counters, as the store reports them.

use serde::Serialize;

/// Counters of the writer (for benchmarks and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StoreStats {
    /// Transactions committed by the writer.
    pub transactions: u64,
    /// Write operations committed (inserts, transitions, audit appends, ...).
    pub writes: u64,
    /// The most operations committed in one transaction.
    pub largest_batch: u64,
    /// Syncs of the write-ahead log (each one makes every transaction committed before it durable).
    pub syncs: u64,
    /// How many of the first transactions are known to be on disk (covered by a finished sync).
    pub synced_transactions: u64,
    /// Passive checkpoints run (copying the write-ahead log into the database file): by the sync
    /// threads, or by the writer when the log has outgrown them.
    pub checkpoints: u64,
    /// Pages appended to the write-ahead log by commits (each commit writes every page it
    /// changed; divided by `transactions`, the size of a commit).
    pub wal_frames: u64,
    /// Transactions committed inline by the caller that found the writer idle, instead of by
    /// the writer thread (included in `transactions`).
    pub inline_commits: u64,
}
