//! What the writer, the sync threads and the readers share about which commits are on disk.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::watch;

use crate::store::error::{StoreError, StoreResult};

/// What the writer, the sync thread and the readers share about durability.
///
/// Commits are numbered. `announced` is the number of the newest commit that may be visible to
/// readers (set before `COMMIT` runs); `synced` is the newest number whose WAL frames are on disk.
#[derive(Debug)]
pub(crate) struct Durability {
    pub(super) announced: AtomicU64,
    pub(super) synced: watch::Sender<u64>,
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

    pub(super) fn poison(&self, detail: String) {
        *self
            .sync_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(detail);
        self.poisoned.store(true, Ordering::SeqCst);
    }
}
