//! Errors of the SQLite store: what went wrong, on which file, and what to do about it.

use std::path::PathBuf;

use super::types::RequestState;

/// Everything that can go wrong while opening or using the store.
///
/// Every message names the database file (where relevant) and says how to fix the problem.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `storage.path` cannot hold the database (found before anything is created).
    #[error(
        "storage.path: {path} cannot hold the database: {problem}; point storage.path at a file in a writable directory"
    )]
    UnusablePath {
        /// The database path.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The database file could not be created or opened on the file system.
    #[error(
        "cannot create database file {path}: {source} — check that the directory exists and is writable by the gateway user"
    )]
    CreateFile {
        /// The database path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The permissions of the database (or its -wal/-shm companion) could not be checked or set to 0600.
    #[error(
        "cannot restrict permissions of {path} to 0600: {source} — make sure the gateway user owns the file"
    )]
    Permissions {
        /// The file whose mode could not be set.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// SQLite refused to open or configure the database.
    #[error(
        "cannot open database at {path}: {source} — check that the directory exists and is writable, and that the file is an agent-gate database"
    )]
    Open {
        /// The database path.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer agent-gate than this one.
    #[error(
        "database at {path} has schema version {found}, but this gateway only knows versions up to {supported} — it was written by a newer agent-gate; upgrade the gateway or point it at another database file"
    )]
    NewerSchema {
        /// The database path.
        path: PathBuf,
        /// The version stored in the file.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },
    /// The file is an SQLite database, but not one made by agent-gate.
    #[error(
        "{path} is an SQLite database that agent-gate did not create (it has tables but no agent-gate schema version) — point the gateway at a new file instead of reusing another program's database"
    )]
    ForeignDatabase {
        /// The database path.
        path: PathBuf,
    },
    /// A schema migration failed; the database was left at the previous version.
    #[error(
        "cannot migrate database at {path} from schema version {from} to {to}: {source} — the file was left unchanged at version {from}; check free disk space and permissions"
    )]
    Migration {
        /// The database path.
        path: PathBuf,
        /// The version before the failed step.
        from: i64,
        /// The version the failed step would have produced.
        to: i64,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A query or write failed at run time.
    #[error(
        "database {path}: {operation} failed: {source} — check free disk space and that the file is still writable"
    )]
    Sqlite {
        /// The database path.
        path: PathBuf,
        /// What the store was doing.
        operation: &'static str,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A shared transaction (group commit) could not be committed: none of its writes were saved.
    #[error(
        "database {path}: committing a batch of writes failed: {detail} — none of them were saved; check free disk space and that the file is still writable"
    )]
    BatchFailed {
        /// The database path.
        path: PathBuf,
        /// The SQLite error, as text (it is shared by every write of the batch).
        detail: String,
    },
    /// Syncing the write-ahead log to disk failed; the store refuses all further work.
    #[error(
        "database {path}: syncing the write-ahead log to disk failed: {detail} — writes since the last successful sync may be lost; check the disk and restart the gateway"
    )]
    SyncFailed {
        /// The database path.
        path: PathBuf,
        /// The I/O error, as text.
        detail: String,
    },
    /// The requested transition is not an edge of the request state machine.
    #[error(
        "a request cannot move from `{from}` to `{to}`: allowed transitions are pending → approved | denied | expired, approved → executing | failed, executing → executed | failed"
    )]
    InvalidTransition {
        /// The state the caller expected the request to be in.
        from: RequestState,
        /// The state the caller asked for.
        to: RequestState,
    },
    /// A value read from the database cannot be interpreted.
    #[error(
        "database {path} holds an unreadable value in {what} — the file was modified outside agent-gate; restore it from a backup"
    )]
    Corrupt {
        /// The database path.
        path: PathBuf,
        /// Which table/column/row was unreadable.
        what: String,
    },
    /// A JSON value could not be serialised for storage.
    #[error("cannot serialise {what} as JSON for the database: {source}")]
    Json {
        /// Which value failed.
        what: &'static str,
        /// The serde_json error.
        source: serde_json::Error,
    },
    /// The store was closed (or its writer stopped); no more work is accepted.
    #[error(
        "the store for {path} is closed — it accepts no work after Store::close (or after its writer thread stopped); open it again"
    )]
    Closed {
        /// The database path.
        path: PathBuf,
    },
    /// The store's background thread could not be started, or a blocking task failed.
    #[error(
        "database {path}: the store's background worker failed: {detail} — this is a bug or the system is out of resources; restart the gateway"
    )]
    Worker {
        /// The database path.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

/// Result alias of the store.
pub type StoreResult<T> = Result<T, StoreError>;
