//! The request history for log pipelines (`agent-gate audit export`): one JSON object per
//! request, with its decision, who decided, its outcome and its timings, read from the
//! database read-only.

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
