//! The database file and its schema: creating the file with mode 0600, configuring connections
//! (WAL, `synchronous=NORMAL` or `FULL`), and the versioned migrations kept in
//! `PRAGMA user_version`.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::error::{StoreError, StoreResult};

/// Each entry migrates the schema from version `index` to `index + 1`, inside one transaction.
///
/// Never edit a shipped entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // v1: requests (the state machine) and the append-only audit log.
    r#"
CREATE TABLE requests (
    agent_id      TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    tool          TEXT    NOT NULL,
    args          TEXT    NOT NULL,
    args_digest   TEXT    NOT NULL,
    signature     TEXT    NOT NULL,
    decision      TEXT    NOT NULL CHECK (decision IN ('allow', 'deny', 'ask')),
    rule          TEXT,
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'executing', 'executed', 'failed', 'denied', 'expired')),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    resolved_by   TEXT,
    resolved_at   INTEGER,
    result        TEXT,
    error_code    INTEGER,
    error_message TEXT,
    delivered     INTEGER NOT NULL DEFAULT 0 CHECK (delivered IN (0, 1)),
    approver_refs TEXT,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (agent_id, request_id)
);
CREATE INDEX requests_pending_expiry ON requests (expires_at) WHERE state = 'pending';
CREATE INDEX requests_undelivered ON requests (agent_id, updated_at)
    WHERE delivered = 0 AND state IN ('executed', 'failed', 'denied', 'expired');
CREATE INDEX requests_resolved ON requests (resolved_at) WHERE resolved_at IS NOT NULL;
CREATE INDEX requests_approved ON requests (created_at) WHERE state = 'approved';

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    agent_id   TEXT    NOT NULL,
    request_id TEXT,
    kind       TEXT    NOT NULL,
    signature  TEXT,
    decision   TEXT,
    rule       TEXT,
    actor      TEXT,
    detail     TEXT
);
CREATE INDEX audit_at ON audit_log (at);
CREATE INDEX audit_agent ON audit_log (agent_id, request_id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
"#,
    // v2: the same `requests` table with its constraints written as OR chains. SQLite evaluates
    // a constant `IN` list of more than two values through a temporary b-tree that it builds
    // and frees for every row written; v1's CHECK constraints and partial index made every
    // insert and state change build three of them, which was most of a write's cost.
    r#"
CREATE TABLE requests_v2 (
    agent_id      TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    tool          TEXT    NOT NULL,
    args          TEXT    NOT NULL,
    args_digest   TEXT    NOT NULL,
    signature     TEXT    NOT NULL,
    decision      TEXT    NOT NULL CHECK (decision = 'allow' OR decision = 'deny' OR decision = 'ask'),
    rule          TEXT,
    state         TEXT    NOT NULL CHECK (state = 'pending' OR state = 'approved' OR state = 'executing'
                                          OR state = 'executed' OR state = 'failed' OR state = 'denied'
                                          OR state = 'expired'),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    resolved_by   TEXT,
    resolved_at   INTEGER,
    result        TEXT,
    error_code    INTEGER,
    error_message TEXT,
    delivered     INTEGER NOT NULL DEFAULT 0 CHECK (delivered = 0 OR delivered = 1),
    approver_refs TEXT,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (agent_id, request_id)
);
INSERT INTO requests_v2 SELECT * FROM requests;
DROP TABLE requests;
ALTER TABLE requests_v2 RENAME TO requests;
CREATE INDEX requests_pending_expiry ON requests (expires_at) WHERE state = 'pending';
CREATE INDEX requests_undelivered ON requests (agent_id, updated_at)
    WHERE delivered = 0 AND (state = 'executed' OR state = 'failed' OR state = 'denied' OR state = 'expired');
CREATE INDEX requests_resolved ON requests (resolved_at) WHERE resolved_at IS NOT NULL;
CREATE INDEX requests_approved ON requests (created_at) WHERE state = 'approved';
"#,
    // v3: the audit log without indexes. No query used them (the audit reader pages through the
    // log by id, newest first, and filters as it goes), yet every appended record paid for both,
    // and `(agent_id, request_id)` put records of random request ids on random pages.
    r#"
DROP INDEX audit_at;
DROP INDEX audit_agent;
"#,
    // v4: `requests` rebuilt so that a call's writes touch few pages (each changed page is
    // written whole to the log at every commit):
    // - the key is `(request_id, agent_id)`: gateway-assigned ids begin with the time, so new
    //   keys go to the end of the index instead of one place per agent;
    // - whether an outcome reached its agent moves to the small `undelivered` table (a row per
    //   finished, unreceived outcome, deleted when the agent receives it) instead of a column:
    //   marking an answer received no longer rewrites the request's row, long after the page
    //   holding it was last written;
    // - the index of resolved requests covers only those that asked a human (the approval
    //   history), not every request the policy decided.
    r#"
CREATE TABLE requests_v4 (
    agent_id      TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    tool          TEXT    NOT NULL,
    args          TEXT    NOT NULL,
    args_digest   TEXT    NOT NULL,
    signature     TEXT    NOT NULL,
    decision      TEXT    NOT NULL CHECK (decision = 'allow' OR decision = 'deny' OR decision = 'ask'),
    rule          TEXT,
    state         TEXT    NOT NULL CHECK (state = 'pending' OR state = 'approved' OR state = 'executing'
                                          OR state = 'executed' OR state = 'failed' OR state = 'denied'
                                          OR state = 'expired'),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    resolved_by   TEXT,
    resolved_at   INTEGER,
    result        TEXT,
    error_code    INTEGER,
    error_message TEXT,
    approver_refs TEXT,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (request_id, agent_id)
);
INSERT INTO requests_v4
SELECT agent_id, request_id, tool, args, args_digest, signature, decision, rule, state, created_at,
       expires_at, resolved_by, resolved_at, result, error_code, error_message, approver_refs,
       updated_at
FROM requests ORDER BY rowid;
CREATE TABLE undelivered (
    agent_id   TEXT NOT NULL,
    request_id TEXT NOT NULL,
    PRIMARY KEY (agent_id, request_id)
) WITHOUT ROWID;
INSERT INTO undelivered
SELECT agent_id, request_id FROM requests
WHERE delivered = 0 AND (state = 'executed' OR state = 'failed' OR state = 'denied' OR state = 'expired');
DROP TABLE requests;
ALTER TABLE requests_v4 RENAME TO requests;
CREATE INDEX requests_pending_expiry ON requests (expires_at) WHERE state = 'pending';
CREATE INDEX requests_approved ON requests (created_at) WHERE state = 'approved';
CREATE INDEX requests_asks_resolved ON requests (resolved_at)
    WHERE decision = 'ask' AND resolved_at IS NOT NULL;
"#,
    // v5: the structured `error.data` of an error outcome (a JSON object: the rule that denied,
    // the kind, HTTP status and service message of a failed execution), so that an agent that
    // fetches the outcome later gets the same error as one that waited for it.
    r#"
ALTER TABLE requests ADD COLUMN error_data TEXT;
"#,
    // v6: requests that asked a human, by agent and digest of the call, so that a front whose
    // clients send no request id (MCP) finds the same call again when it is re-sent while it
    // waits (or before its outcome was received) instead of asking twice. Partial: the writes
    // of calls the policy decided alone do not pay for it.
    r#"
CREATE INDEX requests_asked_by_digest ON requests (agent_id, args_digest) WHERE decision = 'ask';
"#,
    // v7: the `cancelled` state (a request its agent withdrew before a human decided). The
    // state's CHECK is part of the table, so the table is rebuilt (as v4 did); requests that
    // builds before v7 stored as denied with "Cancelled by the agent" become `cancelled`,
    // with the cancellation's code.
    r#"
CREATE TABLE requests_v7 (
    agent_id      TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    tool          TEXT    NOT NULL,
    args          TEXT    NOT NULL,
    args_digest   TEXT    NOT NULL,
    signature     TEXT    NOT NULL,
    decision      TEXT    NOT NULL CHECK (decision = 'allow' OR decision = 'deny' OR decision = 'ask'),
    rule          TEXT,
    state         TEXT    NOT NULL CHECK (state = 'pending' OR state = 'approved' OR state = 'executing'
                                          OR state = 'executed' OR state = 'failed' OR state = 'denied'
                                          OR state = 'expired' OR state = 'cancelled'),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    resolved_by   TEXT,
    resolved_at   INTEGER,
    result        TEXT,
    error_code    INTEGER,
    error_message TEXT,
    approver_refs TEXT,
    updated_at    INTEGER NOT NULL,
    error_data    TEXT,
    PRIMARY KEY (request_id, agent_id)
);
INSERT INTO requests_v7
SELECT agent_id, request_id, tool, args, args_digest, signature, decision, rule,
       CASE WHEN state = 'denied' AND error_message = 'Cancelled by the agent'
            THEN 'cancelled' ELSE state END,
       created_at, expires_at, resolved_by, resolved_at, result,
       CASE WHEN state = 'denied' AND error_message = 'Cancelled by the agent'
            THEN -32007 ELSE error_code END,
       error_message, approver_refs, updated_at, error_data
FROM requests ORDER BY rowid;
DROP TABLE requests;
ALTER TABLE requests_v7 RENAME TO requests;
CREATE INDEX requests_pending_expiry ON requests (expires_at) WHERE state = 'pending';
CREATE INDEX requests_approved ON requests (created_at) WHERE state = 'approved';
CREATE INDEX requests_asks_resolved ON requests (resolved_at)
    WHERE decision = 'ask' AND resolved_at IS NOT NULL;
CREATE INDEX requests_asked_by_digest ON requests (agent_id, args_digest) WHERE decision = 'ask';
"#,
    // v8: grants ("allow this for a while", "always allow"): one agent, the exact set of
    // signatures of the approved call (`scope`), an expiry (none: until revoked), a use count,
    // a revocation. Found by agent and scope.
    r#"
CREATE TABLE grants (
    id         INTEGER PRIMARY KEY,
    agent_id   TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    tool       TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    uses       INTEGER NOT NULL DEFAULT 0,
    revoked_at INTEGER,
    revoked_by TEXT
);
CREATE INDEX grants_by_scope ON grants (agent_id, scope) WHERE revoked_at IS NULL;
"#,
    // v9: the audit log's hash chain (`store::audit_chain`): each row written from now on
    // carries the hash of the previous row's hash and its own columns. Older rows stay
    // unchained (NULL).
    r#"
ALTER TABLE audit_log ADD COLUMN hash TEXT;
"#,
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a connection waits for a lock held by another connection before failing.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `path` can hold the database, without creating anything: not a directory or other
/// non-file, readable and writable if it exists, and its directory writable (or, when the
/// directory is missing, creatable: its nearest existing ancestor a writable directory).
/// `serve` runs this before opening the store and `check` reports the same problems.
pub(crate) fn check_path(path: &Path) -> StoreResult<()> {
    let unusable = |problem: String| StoreError::UnusablePath {
        path: path.to_owned(),
        problem,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(unusable("it is a directory".to_owned())),
        Ok(meta) if !meta.is_file() => return Err(unusable("it is not a regular file".to_owned())),
        Ok(_) => {
            if !accessible(path, Access::ReadWrite) {
                return Err(unusable("the file is not readable and writable".to_owned()));
            }
        }
        Err(error) if missing(&error) => {}
        Err(error) => return Err(unusable(format!("it cannot be inspected: {error}"))),
    }
    let parent = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // The nearest existing ancestor: the directory itself, or where it would be created.
    let mut existing = parent;
    loop {
        match std::fs::metadata(existing) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(unusable(format!(
                    "{} is not a directory",
                    existing.display()
                )));
            }
            Err(error) if missing(&error) => match existing.parent() {
                Some(up) if !up.as_os_str().is_empty() => existing = up,
                _ => {
                    existing = Path::new(".");
                    break;
                }
            },
            Err(error) => {
                return Err(unusable(format!(
                    "{} cannot be inspected: {error}",
                    existing.display()
                )));
            }
        }
    }
    if !accessible(existing, Access::WriteSearch) {
        let what = if existing == parent {
            format!(
                "the directory {} is not writable (the database and its -wal/-shm files are created there)",
                existing.display()
            )
        } else {
            format!(
                "the directory {} does not exist and cannot be created ({} is not writable)",
                parent.display(),
                existing.display()
            )
        };
        return Err(unusable(what));
    }
    Ok(())
}

/// Not there, or under a file where a directory should be (found walking up).
fn missing(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

enum Access {
    ReadWrite,
    WriteSearch,
}

/// `access(2)` for the gateway's user (always `true` off Unix: opening reports problems).
fn accessible(path: &Path, access: Access) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return false;
        };
        let mode = match access {
            Access::ReadWrite => libc::R_OK | libc::W_OK,
            Access::WriteSearch => libc::W_OK | libc::X_OK,
        };
        // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
        unsafe { libc::access(c_path.as_ptr(), mode) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, access);
        true
    }
}

/// Creates the database file with mode 0600 if it is missing, and narrows the mode of an
/// existing file (and its -wal/-shm companions) to 0600.
pub(crate) fn prepare_file(path: &Path) -> StoreResult<()> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map_err(|source| StoreError::CreateFile {
            path: path.to_owned(),
            source,
        })?;
    restrict_modes(path)
}

/// The -wal and -shm files SQLite keeps beside the database in WAL mode.
pub(crate) fn companion_paths(path: &Path) -> [PathBuf; 2] {
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [with_suffix("-wal"), with_suffix("-shm")]
}

/// Sets mode 0600 on the database and any existing -wal/-shm file whose mode differs.
pub(crate) fn restrict_modes(path: &Path) -> StoreResult<()> {
    restrict_mode(path, true)?;
    for companion in companion_paths(path) {
        restrict_mode(&companion, false)?;
    }
    Ok(())
}

#[cfg(unix)]
fn restrict_mode(path: &Path, must_exist: bool) -> StoreResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if !must_exist && error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Permissions {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode != 0o600 {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{mode:o}"),
            "database file was not private; setting its mode to 0600"
        );
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| StoreError::Permissions {
                path: path.to_owned(),
                source,
            },
        )?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_mode(_path: &Path, _must_exist: bool) -> StoreResult<()> {
    Ok(())
}

fn open_error(path: &Path) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Open {
        path: path.to_owned(),
        source,
    }
}

/// Opens the writer connection: WAL journal, schema migrated to [`SCHEMA_VERSION`].
///
/// With `sync_in_commit`, SQLite syncs the WAL inside every commit (`synchronous=FULL`);
/// otherwise (`synchronous=NORMAL`) the store's sync threads sync it (see the `writer` module).
pub(crate) fn open_writer(path: &Path, sync_in_commit: bool) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(open_error(path))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error(path))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(open_error(path))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Open {
            path: path.to_owned(),
            source: rusqlite::Error::InvalidParameterName(format!(
                "journal_mode: SQLite kept `{mode}` instead of `wal` (is the file on a network file system?)"
            )),
        });
    }
    let synchronous = if sync_in_commit { "FULL" } else { "NORMAL" };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(open_error(path))?;
    conn.set_prepared_statement_cache_capacity(32);
    migrate(&mut conn, path)?;
    restrict_modes(path)?;
    Ok(conn)
}

/// Opens a handle on the database's -wal file for the sync thread (`fdatasync` works on any
/// handle of the file). The writer connection has already created it.
pub(crate) fn open_wal(path: &Path) -> StoreResult<std::fs::File> {
    let [wal, _shm] = companion_paths(path);
    std::fs::File::open(&wal).map_err(|source| StoreError::CreateFile { path: wal, source })
}

/// Opens the connection the sync threads run checkpoints on.
pub(crate) fn open_checkpointer(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_error(path))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error(path))?;
    // A connection learns that the file is in WAL mode (and opens the log) only when it first
    // reads it; until then `sqlite3_wal_checkpoint_v2` does nothing and reports -1 frames, so
    // the sync threads' checkpoints never ran and only the writer's (at 4,000 pages) did.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| {
        row.get::<_, i64>(0)
    })
    .map_err(open_error(path))?;
    Ok(conn)
}

/// Opens a reader connection (query-only; sees every committed write).
pub(crate) fn open_reader(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_error(path))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error(path))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(open_error(path))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Reads the schema version stored in the file.
pub(crate) fn schema_version(conn: &Connection, path: &Path) -> StoreResult<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(open_error(path))
}

/// Brings the schema up to [`SCHEMA_VERSION`], one transaction per step; refuses newer files.
fn migrate(conn: &mut Connection, path: &Path) -> StoreResult<()> {
    let found = schema_version(conn, path)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == 0 {
        let objects: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
                [],
                |row| row.get(0),
            )
            .map_err(open_error(path))?;
        if objects > 0 {
            return Err(StoreError::ForeignDatabase {
                path: path.to_owned(),
            });
        }
    }
    for (from, sql) in (found..).zip(MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0))) {
        let to = from + 1;
        let step = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
            // Re-check inside the lock: another process may have migrated meanwhile.
            let current: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
            if current != from {
                return Ok(());
            }
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", to)?;
            tx.commit()
        };
        step(conn).map_err(|source| StoreError::Migration {
            path: path.to_owned(),
            from,
            to,
            source,
        })?;
        tracing::info!(path = %path.display(), from, to, "migrated database schema");
    }
    Ok(())
}
