//! `storage:`: where the SQLite database lives and how writes are synced to disk.

use std::path::PathBuf;

use crate::config::walk::{Ctx, Field};
use crate::store::SyncMode;

/// Default SQLite database path.
pub const DEFAULT_STORAGE_PATH: &str = "data/agent-gate.db";

/// `storage:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// SQLite database file (default `data/agent-gate.db`).
    pub path: PathBuf,
    /// `sync`: `background` (default: answers once a write is committed, which survives a crash
    /// or `kill -9`; the disk is synced every 50 ms) or `always` (answers only after the disk
    /// sync, which also survives a power cut).
    pub sync: SyncMode,
}

/// Reads `storage:` (defaults where it or a key is missing).
pub(super) fn load(ctx: &mut Ctx, f: &Field<'_>) -> StorageConfig {
    let mut s = StorageConfig {
        path: PathBuf::from(DEFAULT_STORAGE_PATH),
        sync: SyncMode::default(),
    };
    let Some(obj) = ctx.obj(f) else { return s };
    obj.check_keys(ctx, &["type", "path", "sync"]);
    if let Some(name) = ctx.string(&obj.field("sync")) {
        match SyncMode::ALL.into_iter().find(|mode| mode.as_str() == name) {
            Some(mode) => s.sync = mode,
            None => ctx.error(
                &obj.field("sync").path,
                format!(
                    "unknown sync mode {name:?}; expected one of: background (answer at commit, \
                     survives a crash), always (answer after the disk sync, survives a power cut)"
                ),
            ),
        }
    }
    if let Some(ty) = ctx.string(&obj.field("type"))
        && ty != "sqlite"
    {
        ctx.error(
            &obj.field("type").path,
            format!("unsupported storage type {ty:?}: only `sqlite` is supported"),
        );
    }
    if let Some(path) = ctx.string(&obj.field("path")) {
        if path.trim().is_empty() {
            ctx.error(&obj.field("path").path, "must not be empty");
        } else {
            s.path = PathBuf::from(path);
        }
    }
    s
}
