//! The request history for log pipelines (`agent-gate audit export`: one JSON object per
//! request, with its decision, who decided, its outcome and its timings) and the audit rows
//! as they come (`agent-gate audit tail`), read from the database read-only.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, params};
use serde_json::{Value, json};

use super::error::{StoreError, StoreResult};
use super::rows::{REQUEST_COLUMNS, query_requests};
use super::types::{RequestRecord, Timestamp, rfc3339};

/// Which requests to export: created in `[since, until)`, of `agent` when given.
#[derive(Debug, Clone, Default)]
pub struct ExportQuery {
    /// Created at or after this time.
    pub since: Option<Timestamp>,
    /// Created before this time.
    pub until: Option<Timestamp>,
    /// Only this agent's requests.
    pub agent: Option<String>,
}

/// The requests of the database at `path` that `query` selects, oldest first, each as its
/// export object (see [`export_object`]).
pub fn export_requests(path: &Path, query: &ExportQuery) -> StoreResult<Vec<Value>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Sqlite {
        path: path.to_owned(),
        operation: "opening the database to export the history",
        source,
    })?;
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE created_at >= ?1 AND created_at < ?2 \
         AND (?3 IS NULL OR agent_id = ?3) ORDER BY created_at, agent_id, request_id"
    );
    let records = query_requests(
        &conn,
        path,
        "exporting the history",
        &sql,
        params![
            query.since.map_or(i64::MIN, Timestamp::as_millis),
            query.until.map_or(i64::MAX, Timestamp::as_millis),
            query.agent.as_deref(),
        ],
    )?;
    Ok(records.iter().map(export_object).collect())
}

/// One request as exported: `request_id`, `agent_id`, `tool`, `signature`, `decision` (the
/// policy's: allow, deny, ask), `rule`, `state` (where its life ended, or is), `decided_by`,
/// `created_at`, `decided_at`, `finished_at` (when its state last changed, for a finished
/// request), `decision_ms` and `total_ms`, and `error` (`{code, message}`) for one that did not
/// execute. Arguments and results are left out: they may hold personal data, and the audit log
/// keeps sizes.
pub fn export_object(record: &RequestRecord) -> Value {
    let finished = record.state.is_terminal();
    let created = record.created_at.as_millis();
    json!({
        "request_id": record.request_id,
        "agent_id": record.agent_id,
        "tool": record.tool,
        "signature": record.signature,
        "decision": record.decision.as_str(),
        "rule": record.rule,
        "state": record.state.as_str(),
        "decided_by": record.resolved_by,
        "created_at": rfc3339(record.created_at),
        "decided_at": record.resolved_at.map(rfc3339),
        "finished_at": finished.then(|| rfc3339(record.updated_at)),
        "decision_ms": record.resolved_at.map(|at| at.as_millis() - created),
        "total_ms": finished.then(|| record.updated_at.as_millis() - created),
        "error": record.error.as_ref().map(|e| json!({"code": e.code, "message": e.message})),
    })
}

/// Audit rows of the database behind `conn` with an id above `after`, oldest first, at most
/// `limit`, each as a JSON object (`id`, `at`, `agent_id`, `request_id`, `kind`, `signature`,
/// `decision`, `rule`, `actor`, `detail`, `hash`), with the highest id seen.
pub fn audit_rows_after(
    conn: &Connection,
    path: &Path,
    after: i64,
    limit: u32,
) -> StoreResult<(Vec<Value>, i64)> {
    let sqlite = |source| StoreError::Sqlite {
        path: path.to_owned(),
        operation: "reading the audit log",
        source,
    };
    let mut statement = conn
        .prepare_cached(
            "SELECT id, at, agent_id, request_id, kind, signature, decision, rule, actor, detail, hash \
             FROM audit_log WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .map_err(sqlite)?;
    let mut rows = statement.query(params![after, limit]).map_err(sqlite)?;
    let mut out = Vec::new();
    let mut last = after;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let id: i64 = row.get(0).map_err(sqlite)?;
        let at: i64 = row.get(1).map_err(sqlite)?;
        let detail: Option<String> = row.get(9).map_err(sqlite)?;
        let detail = detail.map(|text| serde_json::from_str(&text).unwrap_or(Value::String(text)));
        out.push(json!({
            "id": id,
            "at": rfc3339(Timestamp::from_millis(at)),
            "agent_id": row.get::<_, String>(2).map_err(sqlite)?,
            "request_id": row.get::<_, Option<String>>(3).map_err(sqlite)?,
            "kind": row.get::<_, String>(4).map_err(sqlite)?,
            "signature": row.get::<_, Option<String>>(5).map_err(sqlite)?,
            "decision": row.get::<_, Option<String>>(6).map_err(sqlite)?,
            "rule": row.get::<_, Option<String>>(7).map_err(sqlite)?,
            "actor": row.get::<_, Option<String>>(8).map_err(sqlite)?,
            "detail": detail,
            "hash": row.get::<_, Option<String>>(10).map_err(sqlite)?,
        }));
        last = id;
    }
    Ok((out, last))
}

/// A read-only connection to the database at `path`, for [`audit_rows_after`].
pub fn open_read_only(path: &Path) -> StoreResult<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Sqlite {
        path: path.to_owned(),
        operation: "opening the database read-only",
        source,
    })
}
