//! The operations queued for the writer and the SQL that applies each one inside the writer's
//! transaction.

use std::path::Path;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::prepared::{PreparedAudit, PreparedInsert, PreparedTransition};
use crate::store::error::{StoreError, StoreResult};
use crate::store::rows::{self, REQUEST_COLUMNS};
use crate::store::types::{
    AuditEntry, AuditKind, EXECUTION_FAILED_CODE, InsertOutcome, RESTART_DURING_EXECUTION,
    RecoveryReport, RequestState, Timestamp,
};
use crate::store::{audit_chain, grants};
/// One unit of work for the writer.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Insert(Box<PreparedInsert>),
    Transition(Box<PreparedTransition>),
    Audit(Box<PreparedAudit>),
    MarkDelivered {
        agent_id: String,
        request_ids: Vec<String>,
    },
    SetApproverRefs {
        agent_id: String,
        request_id: String,
        refs: String,
    },
    Recover {
        now: Timestamp,
    },
    InsertGrant {
        grant: Box<crate::store::grants::NewGrant>,
        audit: Vec<PreparedAudit>,
    },
    /// Counts one use of a grant (if it is not revoked), with its audit.
    UseGrant {
        id: i64,
        audit: Box<PreparedAudit>,
    },
    RevokeGrant {
        id: i64,
        at: Timestamp,
        by: String,
        audit: Box<PreparedAudit>,
    },
    Close,
}

/// What a [`WriteOp`] produced.
#[derive(Debug)]
pub(crate) enum WriteOutput {
    Insert(InsertOutcome),
    Transition(bool),
    AuditId(i64),
    Count(usize),
    Recovery(Box<RecoveryReport>),
    Closed,
}

/// A queued operation and where to send its outcome.
pub(crate) struct Job {
    pub(crate) op: WriteOp,
    pub(crate) reply: oneshot::Sender<StoreResult<WriteOutput>>,
}

fn sqlite<'a>(
    path: &'a Path,
    operation: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sqlite {
        path: path.to_owned(),
        operation,
        source,
    }
}

/// The statements every call runs. None may use a temporary b-tree (see the test below and
/// the v2 migration): SQLite would build and free one for every row written.
const INSERT_AUDIT_SQL: &str = "INSERT INTO audit_log (id, at, agent_id, request_id, kind, signature, decision, rule, actor, detail, hash) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
const INSERT_REQUEST_SQL: &str = "INSERT INTO requests (agent_id, request_id, tool, args, args_digest, signature, decision, rule, \
    state, created_at, expires_at, resolved_by, resolved_at, error_code, error_message, approver_refs, updated_at, error_data) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?10, ?17) \
    ON CONFLICT (request_id, agent_id) DO NOTHING";
const TRANSITION_SQL: &str = "UPDATE requests SET state = ?4, updated_at = ?5, \
    resolved_by = coalesce(?6, resolved_by), \
    resolved_at = CASE WHEN ?7 THEN ?5 ELSE resolved_at END, \
    result = coalesce(?8, result), \
    error_code = coalesce(?9, error_code), \
    error_message = coalesce(?10, error_message), \
    error_data = CASE WHEN ?9 IS NULL THEN error_data ELSE ?11 END \
    WHERE agent_id = ?1 AND request_id = ?2 AND state = ?3";
/// A request that has just finished: its outcome waits for the agent.
const INSERT_UNDELIVERED_SQL: &str =
    "INSERT OR IGNORE INTO undelivered (agent_id, request_id) VALUES (?1, ?2)";
const MARK_DELIVERED_SQL: &str = "DELETE FROM undelivered WHERE agent_id = ?1 AND request_id = ?2";
const SET_APPROVER_REFS_SQL: &str =
    "UPDATE requests SET approver_refs = ?3 WHERE agent_id = ?1 AND request_id = ?2";

/// Appends one audit row chained to the newest one (see `store::audit_chain`); the writer is
/// the only writer, so the next id is the tip's plus one.
fn insert_audit(conn: &Connection, path: &Path, audit: &PreparedAudit) -> StoreResult<i64> {
    let (tip, previous) = audit_chain::chain_tip(conn, path)?;
    let id = tip + 1;
    let hash = audit_chain::chain_hash(
        &previous,
        &audit_chain::ChainedRow {
            id,
            at: audit.at,
            agent_id: &audit.agent_id,
            request_id: audit.request_id.as_deref(),
            kind: &audit.kind,
            signature: audit.signature.as_deref(),
            decision: audit.decision,
            rule: audit.rule.as_deref(),
            actor: audit.actor.as_deref(),
            detail: audit.detail.as_deref(),
        },
    );
    let mut statement = conn
        .prepare_cached(INSERT_AUDIT_SQL)
        .map_err(sqlite(path, "appending to the audit log"))?;
    statement
        .execute(params![
            id,
            audit.at,
            audit.agent_id,
            audit.request_id,
            audit.kind,
            audit.signature,
            audit.decision,
            audit.rule,
            audit.actor,
            audit.detail,
            hash,
        ])
        .map_err(sqlite(path, "appending to the audit log"))?;
    Ok(id)
}

fn insert_request(
    conn: &Connection,
    path: &Path,
    insert: &PreparedInsert,
) -> StoreResult<InsertOutcome> {
    const OPERATION: &str = "recording a request";
    let mut statement = conn
        .prepare_cached(INSERT_REQUEST_SQL)
        .map_err(sqlite(path, OPERATION))?;
    let inserted = statement
        .execute(params![
            insert.agent_id,
            insert.request_id,
            insert.tool,
            insert.args,
            insert.args_digest,
            insert.signature,
            insert.decision,
            insert.rule,
            insert.state,
            insert.created_at,
            insert.expires_at,
            insert.resolved_by,
            insert.resolved_at,
            insert.error_code,
            insert.error_message,
            insert.approver_refs,
            insert.error_data,
        ])
        .map_err(sqlite(path, OPERATION))?;
    if inserted == 1 {
        if insert.finished {
            insert_undelivered(conn, path, &insert.agent_id, &insert.request_id)?;
        }
        for audit in &insert.audit {
            insert_audit(conn, path, audit)?;
        }
        return Ok(InsertOutcome::Inserted);
    }
    let existing = rows::get_request(conn, path, &insert.agent_id, &insert.request_id)?
        .ok_or_else(|| StoreError::Corrupt {
            path: path.to_owned(),
            what: format!(
                "requests row ({}, {}) conflicted on insert but cannot be read back",
                insert.agent_id, insert.request_id
            ),
        })?;
    if existing.args_digest == insert.args_digest {
        Ok(InsertOutcome::Duplicate(Box::new(existing)))
    } else {
        Ok(InsertOutcome::Conflict(Box::new(existing)))
    }
}

fn transition(conn: &Connection, path: &Path, change: &PreparedTransition) -> StoreResult<bool> {
    const OPERATION: &str = "changing a request's state";
    let mut statement = conn
        .prepare_cached(TRANSITION_SQL)
        .map_err(sqlite(path, OPERATION))?;
    let changed = statement
        .execute(params![
            change.agent_id,
            change.request_id,
            change.from,
            change.to,
            change.at,
            change.resolved_by,
            change.resolves,
            change.result,
            change.error_code,
            change.error_message,
            change.error_data,
        ])
        .map_err(sqlite(path, OPERATION))?;
    if changed != 1 {
        return Ok(false);
    }
    if change.finishes {
        insert_undelivered(conn, path, &change.agent_id, &change.request_id)?;
    }
    for audit in &change.audit {
        insert_audit(conn, path, audit)?;
    }
    Ok(true)
}

fn insert_undelivered(
    conn: &Connection,
    path: &Path,
    agent_id: &str,
    request_id: &str,
) -> StoreResult<()> {
    const OPERATION: &str = "keeping an outcome for its agent";
    conn.prepare_cached(INSERT_UNDELIVERED_SQL)
        .map_err(sqlite(path, OPERATION))?
        .execute(params![agent_id, request_id])
        .map_err(sqlite(path, OPERATION))?;
    Ok(())
}

fn mark_delivered(
    conn: &Connection,
    path: &Path,
    agent_id: &str,
    request_ids: &[String],
) -> StoreResult<usize> {
    const OPERATION: &str = "marking results delivered";
    let mut statement = conn
        .prepare_cached(MARK_DELIVERED_SQL)
        .map_err(sqlite(path, OPERATION))?;
    let mut marked = 0;
    for request_id in request_ids {
        marked += statement
            .execute(params![agent_id, request_id])
            .map_err(sqlite(path, OPERATION))?;
    }
    Ok(marked)
}

fn set_approver_refs(
    conn: &Connection,
    path: &Path,
    agent_id: &str,
    request_id: &str,
    refs: &str,
) -> StoreResult<bool> {
    const OPERATION: &str = "saving approver message references";
    let changed = conn
        .prepare_cached(SET_APPROVER_REFS_SQL)
        .map_err(sqlite(path, OPERATION))?
        .execute(params![agent_id, request_id, refs])
        .map_err(sqlite(path, OPERATION))?;
    Ok(changed == 1)
}

fn recover(conn: &Connection, path: &Path, now: Timestamp) -> StoreResult<RecoveryReport> {
    // Their outcomes ("failed") wait for their agents.
    conn.execute(
        "INSERT OR IGNORE INTO undelivered (agent_id, request_id) \
         SELECT agent_id, request_id FROM requests WHERE state = 'executing'",
        [],
    )
    .map_err(sqlite(path, "keeping the outcomes of interrupted requests"))?;
    let sql = format!(
        "UPDATE requests SET state = 'failed', updated_at = ?1, error_code = ?2, error_message = ?3, \
         error_data = ?4 WHERE state = 'executing' RETURNING {REQUEST_COLUMNS}"
    );
    let mut failed = rows::query_requests(
        conn,
        path,
        "failing requests interrupted by a restart",
        &sql,
        params![
            now.as_millis(),
            EXECUTION_FAILED_CODE,
            RESTART_DURING_EXECUTION,
            r#"{"kind":"interrupted","may_have_executed":true}"#
        ],
    )?;
    failed.sort_by_key(|record| (record.created_at, record.key()));
    for record in &failed {
        let mut entry = AuditEntry::new(record.agent_id.clone(), AuditKind::Failed)
            .at(now)
            .request_id(record.request_id.clone())
            .signature(record.signature.clone())
            .decision(record.decision)
            .actor("gateway")
            .detail(serde_json::json!({
                "code": EXECUTION_FAILED_CODE,
                "message": RESTART_DURING_EXECUTION,
            }));
        if let Some(rule) = &record.rule {
            entry = entry.rule(rule.clone());
        }
        insert_audit(conn, path, &PreparedAudit::new(entry)?)?;
    }
    Ok(RecoveryReport {
        failed,
        approved: rows::requests_in_state(conn, path, RequestState::Approved)?,
        pending: rows::pending_by_expiry(conn, path, now, true)?,
        expired_pending: rows::pending_by_expiry(conn, path, now, false)?,
    })
}

/// Applies one operation on the writer's connection, inside the open transaction.
pub(super) fn apply(conn: &Connection, path: &Path, op: &WriteOp) -> StoreResult<WriteOutput> {
    match op {
        WriteOp::Insert(insert) => insert_request(conn, path, insert).map(WriteOutput::Insert),
        WriteOp::Transition(change) => transition(conn, path, change).map(WriteOutput::Transition),
        WriteOp::Audit(audit) => insert_audit(conn, path, audit).map(WriteOutput::AuditId),
        WriteOp::MarkDelivered {
            agent_id,
            request_ids,
        } => mark_delivered(conn, path, agent_id, request_ids).map(WriteOutput::Count),
        WriteOp::SetApproverRefs {
            agent_id,
            request_id,
            refs,
        } => set_approver_refs(conn, path, agent_id, request_id, refs).map(WriteOutput::Transition),
        WriteOp::Recover { now } => {
            recover(conn, path, *now).map(|report| WriteOutput::Recovery(Box::new(report)))
        }
        WriteOp::InsertGrant { grant, audit } => {
            insert_grant(conn, path, grant, audit).map(WriteOutput::AuditId)
        }
        WriteOp::UseGrant { id, audit } => {
            change_grant(conn, path, grants::USE_GRANT_SQL, params![id], audit)
                .map(WriteOutput::Transition)
        }
        WriteOp::RevokeGrant { id, at, by, audit } => change_grant(
            conn,
            path,
            grants::REVOKE_GRANT_SQL,
            params![id, at.as_millis(), by],
            audit,
        )
        .map(WriteOutput::Transition),
        WriteOp::Close => Ok(WriteOutput::Closed),
    }
}

/// Stores a grant and its audit entries; returns its id.
fn insert_grant(
    conn: &Connection,
    path: &Path,
    grant: &grants::NewGrant,
    audit: &[PreparedAudit],
) -> StoreResult<i64> {
    conn.prepare_cached(grants::INSERT_GRANT_SQL)
        .map_err(sqlite(path, "storing a grant"))?
        .execute(params![
            grant.agent_id,
            grant.scope,
            grant.tool,
            grant.request_id,
            grant.created_by,
            grant.created_at.as_millis(),
            grant.expires_at.map(Timestamp::as_millis),
        ])
        .map_err(sqlite(path, "storing a grant"))?;
    let id = conn.last_insert_rowid();
    for entry in audit {
        insert_audit(conn, path, entry)?;
    }
    Ok(id)
}

/// Applies a conditional change to a grant; its audit entry is written only if it changed.
fn change_grant(
    conn: &Connection,
    path: &Path,
    sql: &str,
    values: &[&dyn rusqlite::ToSql],
    audit: &PreparedAudit,
) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached(sql)
        .map_err(sqlite(path, "changing a grant"))?
        .execute(values)
        .map_err(sqlite(path, "changing a grant"))?;
    if changed == 1 {
        insert_audit(conn, path, audit)?;
    }
    Ok(changed == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer connection on a fresh file with the current schema.
    fn migrated() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.db");
        crate::store::schema::prepare_file(&path).unwrap();
        let conn = crate::store::schema::open_writer(&path, false).unwrap();
        (dir, conn)
    }

    /// The instructions of `sql`'s bytecode (`EXPLAIN`), as (opcode, P2), with every parameter
    /// bound to NULL. (P2 of an `OpenWrite` is the root page of the b-tree it opens.)
    fn explain(conn: &Connection, sql: &str) -> Vec<(String, i64)> {
        let mut explain = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Null; explain.parameter_count()];
        explain
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                Ok((row.get::<_, String>(1)?, row.get::<_, i64>(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The opcodes of `sql`'s bytecode.
    fn opcodes(conn: &Connection, sql: &str) -> Vec<String> {
        explain(conn, sql).into_iter().map(|(op, _)| op).collect()
    }

    /// Each hot statement's bytecode, against the current schema, opens no temporary b-tree.
    #[test]
    fn hot_statements_build_no_temporary_btree() {
        let (_dir, conn) = migrated();
        for sql in [
            INSERT_AUDIT_SQL,
            INSERT_REQUEST_SQL,
            TRANSITION_SQL,
            INSERT_UNDELIVERED_SQL,
            MARK_DELIVERED_SQL,
            SET_APPROVER_REFS_SQL,
        ] {
            let opcodes = opcodes(&conn, sql);
            assert!(
                opcodes.iter().any(|op| op == "Halt"),
                "no bytecode for {sql}"
            );
            assert!(
                !opcodes.iter().any(|op| op == "OpenEphemeral"),
                "{sql} builds a temporary b-tree on every run: {opcodes:?}"
            );
        }
    }

    /// Appending to the audit log writes the log's own b-tree and nothing else: no index
    /// to maintain on the hot path.
    #[test]
    fn an_audit_append_writes_one_btree() {
        let (_dir, conn) = migrated();
        let opcodes = opcodes(&conn, INSERT_AUDIT_SQL);
        let opened: Vec<&String> = opcodes.iter().filter(|op| *op == "OpenWrite").collect();
        assert_eq!(opened.len(), 1, "{opcodes:?}");
    }

    /// Marking an outcome received deletes its entry in `undelivered`, and writes nothing else:
    /// the request's row (on a page last written long before) is left alone.
    #[test]
    fn marking_delivered_writes_only_the_undelivered_table() {
        let (_dir, conn) = migrated();
        let instructions = explain(&conn, MARK_DELIVERED_SQL);
        let roots: Vec<i64> = instructions
            .iter()
            .filter(|(op, _)| op == "OpenWrite")
            .map(|&(_, root)| root)
            .collect();
        assert_eq!(roots.len(), 1, "{instructions:?}");
        let undelivered: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'undelivered'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(roots, vec![undelivered]);
    }

    /// The plan of `get_pending_results`: the agent's entries in `undelivered` by its key, each
    /// request by the primary key; no scan of `requests`.
    #[test]
    fn undelivered_results_are_read_by_key() {
        let (_dir, conn) = migrated();
        let sql = format!("EXPLAIN QUERY PLAN {}", rows::undelivered_sql());
        let mut plan = conn.prepare(&sql).unwrap();
        let steps: Vec<String> = plan
            .query_map(["pi"], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            steps
                .iter()
                .any(|step| step.starts_with("SEARCH pending USING PRIMARY KEY (agent_id=?)")),
            "{steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|step| step.starts_with("SEARCH requests USING INDEX")
                    && step.contains("(request_id=? AND agent_id=?)")),
            "{steps:?}"
        );
        assert!(
            !steps.iter().any(|step| step.starts_with("SCAN")),
            "{steps:?}"
        );
    }
}
