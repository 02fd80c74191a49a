//! When and how the write-ahead log is copied into the database file (passive checkpoints), by
//! the sync threads and by the writer.

use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::Ordering;

use rusqlite::Connection;

use super::stats::Stats;

/// When the write-ahead log holds this many pages, a sync thread copies it into the database
/// file (a passive checkpoint, which never blocks the writer) so that the log restarts from its
/// beginning. SQLite's own automatic checkpoint (same size) would run inside a commit, with two
/// `fsync`s, on the writer's critical path.
pub(super) const CHECKPOINT_PAGES: u64 = 1000;

/// A passive checkpoint running beside the writer copies what was committed before it started;
/// the log restarts only when a write begins with everything copied, which under sustained
/// load never happens. So when the log reaches this many pages anyway, the writer checkpoints
/// the remainder itself (after answering its batch), as SQLite would: the log stays bounded
/// (about 16 MiB) and the writer pauses for that once per this many pages, not per 1,000.
pub(super) const WRITER_CHECKPOINT_PAGES: u64 = 4 * CHECKPOINT_PAGES;
/// Runs a passive checkpoint on `conn` and counts it; returns the log's frames and how many of
/// them are now copied, or `None` when it could not run (busy, because the other side is
/// checkpointing right now, or failed: logged, and retried after the next commit or sync).
pub(super) fn passive_checkpoint(
    conn: &Connection,
    stats: &Stats,
    path: &Path,
) -> Option<(c_int, c_int)> {
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
