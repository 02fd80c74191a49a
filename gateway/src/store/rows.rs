//! Mapping between SQL rows and the store's types, the canonical argument digest, and the
//! read queries shared by the reader pool and the writer (which reads inside its transactions).

use std::path::Path;

use rusqlite::{Connection, Row, params};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::{StoreError, StoreResult};
use super::types::{
    AuditKind, AuditQuery, AuditRecord, Decision, RequestRecord, RequestState, StoredError,
    Timestamp,
};

/// The SQL condition "the request is finished" (its outcome is for the agent), as an OR chain,
/// not an `IN` list (see the v2 migration).
macro_rules! finished_state_condition {
    () => {
        "(requests.state = 'executed' OR requests.state = 'failed' OR requests.state = 'denied' \
          OR requests.state = 'expired')"
    };
}

/// The columns of `requests`, in the order [`raw_request`] reads them. `delivered` is derived:
/// a finished request whose outcome is not waiting in `undelivered`.
pub(crate) const REQUEST_COLUMNS: &str = concat!(
    "requests.agent_id, requests.request_id, requests.tool, requests.args, requests.args_digest, \
     requests.signature, requests.decision, requests.rule, requests.state, requests.created_at, \
     requests.expires_at, requests.resolved_by, requests.resolved_at, requests.result, \
     requests.error_code, requests.error_message, (",
    finished_state_condition!(),
    " AND NOT EXISTS (SELECT 1 FROM undelivered AS waiting \
     WHERE waiting.agent_id = requests.agent_id AND waiting.request_id = requests.request_id)), \
     requests.approver_refs, requests.updated_at, requests.error_data"
);

/// SHA-256 (hex) over the tool name and the canonical JSON (object keys sorted) of the arguments,
/// so the same call always has the same digest whatever the key order on the wire.
pub(crate) fn args_digest(tool: &str, args: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(args, &mut canonical);
    let mut hasher = Sha256::new();
    hasher.update(tool.as_bytes());
    hasher.update([0u8]);
    hasher.update(canonical.as_bytes());
    sha256_hex(&hasher.finalize().into())
}

/// A SHA-256 digest as 64 lower-case hex digits, written in one pass: `hex::encode` collects
/// one `char` at a time, about 2,400 instructions per digest, and a call hashes three times
/// (its arguments and two audit rows).
pub(crate) fn sha256_hex(digest: &[u8; 32]) -> String {
    let mut out = [0u8; 64];
    match hex::encode_to_slice(digest, &mut out) {
        // Hex digits are ASCII, so the conversion cannot fail either.
        Ok(()) => std::str::from_utf8(&out).map_or_else(|_| hex::encode(digest), str::to_owned),
        Err(_) => hex::encode(digest),
    }
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Serialises a JSON value for a TEXT column.
pub(crate) fn json_text(value: &Value, what: &'static str) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|source| StoreError::Json { what, source })
}

fn corrupt(path: &Path, what: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        what: what.into(),
    }
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

/// The raw column values of one `requests` row (decoded in a second step so decoding errors can
/// name the row).
struct RawRequest {
    agent_id: String,
    request_id: String,
    tool: String,
    args: String,
    args_digest: String,
    signature: String,
    decision: String,
    rule: Option<String>,
    state: String,
    created_at: i64,
    expires_at: Option<i64>,
    resolved_by: Option<String>,
    resolved_at: Option<i64>,
    result: Option<String>,
    error_code: Option<i64>,
    error_message: Option<String>,
    delivered: bool,
    approver_refs: Option<String>,
    updated_at: i64,
    error_data: Option<String>,
}

fn raw_request(row: &Row<'_>) -> rusqlite::Result<RawRequest> {
    Ok(RawRequest {
        agent_id: row.get(0)?,
        request_id: row.get(1)?,
        tool: row.get(2)?,
        args: row.get(3)?,
        args_digest: row.get(4)?,
        signature: row.get(5)?,
        decision: row.get(6)?,
        rule: row.get(7)?,
        state: row.get(8)?,
        created_at: row.get(9)?,
        expires_at: row.get(10)?,
        resolved_by: row.get(11)?,
        resolved_at: row.get(12)?,
        result: row.get(13)?,
        error_code: row.get(14)?,
        error_message: row.get(15)?,
        delivered: row.get(16)?,
        approver_refs: row.get(17)?,
        updated_at: row.get(18)?,
        error_data: row.get(19)?,
    })
}

fn parse_json(path: &Path, text: &str, column: &str, raw: &RawRequest) -> StoreResult<Value> {
    serde_json::from_str(text).map_err(|error| {
        corrupt(
            path,
            format!(
                "requests.{column} of ({}, {}): {error}",
                raw.agent_id, raw.request_id
            ),
        )
    })
}

fn decode_request(path: &Path, raw: RawRequest) -> StoreResult<RequestRecord> {
    let state: RequestState = raw.state.parse().map_err(|error| {
        corrupt(
            path,
            format!(
                "requests.state of ({}, {}): {error}",
                raw.agent_id, raw.request_id
            ),
        )
    })?;
    let decision: Decision = raw.decision.parse().map_err(|error| {
        corrupt(
            path,
            format!(
                "requests.decision of ({}, {}): {error}",
                raw.agent_id, raw.request_id
            ),
        )
    })?;
    let args = parse_json(path, &raw.args, "args", &raw)?;
    let result = match &raw.result {
        Some(text) => Some(parse_json(path, text, "result", &raw)?),
        None => None,
    };
    let approver_refs = match &raw.approver_refs {
        Some(text) => Some(parse_json(path, text, "approver_refs", &raw)?),
        None => None,
    };
    let data = match &raw.error_data {
        Some(text) => Some(parse_json(path, text, "error_data", &raw)?),
        None => None,
    };
    let error = match (raw.error_code, raw.error_message) {
        (Some(code), message) => Some(StoredError {
            code,
            message: message.unwrap_or_default(),
            data,
        }),
        (None, Some(message)) => Some(StoredError {
            code: super::types::EXECUTION_FAILED_CODE,
            message,
            data,
        }),
        (None, None) => None,
    };
    Ok(RequestRecord {
        agent_id: raw.agent_id,
        request_id: raw.request_id,
        tool: raw.tool,
        args,
        args_digest: raw.args_digest,
        signature: raw.signature,
        decision,
        rule: raw.rule,
        state,
        created_at: Timestamp::from_millis(raw.created_at),
        expires_at: raw.expires_at.map(Timestamp::from_millis),
        resolved_by: raw.resolved_by,
        resolved_at: raw.resolved_at.map(Timestamp::from_millis),
        result,
        error,
        delivered: raw.delivered,
        approver_refs,
        updated_at: Timestamp::from_millis(raw.updated_at),
    })
}

/// Runs a query returning `requests` rows and decodes them.
pub(crate) fn query_requests(
    conn: &Connection,
    path: &Path,
    operation: &'static str,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<RequestRecord>> {
    let mut statement = conn.prepare_cached(sql).map_err(sqlite(path, operation))?;
    let raws = statement
        .query_map(params, raw_request)
        .map_err(sqlite(path, operation))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sqlite(path, operation))?;
    raws.into_iter()
        .map(|raw| decode_request(path, raw))
        .collect()
}

/// Looks one request up by key.
pub(crate) fn get_request(
    conn: &Connection,
    path: &Path,
    agent_id: &str,
    request_id: &str,
) -> StoreResult<Option<RequestRecord>> {
    let sql =
        format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE agent_id = ?1 AND request_id = ?2");
    Ok(query_requests(
        conn,
        path,
        "looking up a request",
        &sql,
        params![agent_id, request_id],
    )?
    .into_iter()
    .next())
}

/// Requests in `state`, oldest first.
pub(crate) fn requests_in_state(
    conn: &Connection,
    path: &Path,
    state: RequestState,
) -> StoreResult<Vec<RequestRecord>> {
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE state = ?1 ORDER BY created_at, agent_id, request_id"
    );
    query_requests(
        conn,
        path,
        "listing requests by state",
        &sql,
        params![state.as_str()],
    )
}

/// Pending requests whose expiry is after `now` (`unexpired == true`) or at/before it.
pub(crate) fn pending_by_expiry(
    conn: &Connection,
    path: &Path,
    now: Timestamp,
    unexpired: bool,
) -> StoreResult<Vec<RequestRecord>> {
    let condition = if unexpired {
        "(expires_at IS NULL OR expires_at > ?1)"
    } else {
        "expires_at <= ?1"
    };
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE state = 'pending' AND {condition} \
         ORDER BY expires_at, agent_id, request_id"
    );
    query_requests(
        conn,
        path,
        "listing pending requests",
        &sql,
        params![now.as_millis()],
    )
}

/// The query of [`undelivered`]: the agent's entries in `undelivered`, each with its request.
pub(crate) fn undelivered_sql() -> String {
    format!(
        "SELECT {REQUEST_COLUMNS} FROM undelivered AS pending \
         JOIN requests ON requests.request_id = pending.request_id AND requests.agent_id = pending.agent_id \
         WHERE pending.agent_id = ?1 ORDER BY requests.updated_at, requests.request_id"
    )
}

/// Finished requests of `agent_id` whose outcome the agent has not received, oldest first.
pub(crate) fn undelivered(
    conn: &Connection,
    path: &Path,
    agent_id: &str,
) -> StoreResult<Vec<RequestRecord>> {
    query_requests(
        conn,
        path,
        "listing undelivered results",
        &undelivered_sql(),
        params![agent_id],
    )
}

/// The newest request of `agent_id` that asked a human about the call with `digest` and is still
/// open: waiting, approved or running, or finished with an outcome the agent has not received.
pub(crate) fn open_ask_by_digest(
    conn: &Connection,
    path: &Path,
    agent_id: &str,
    digest: &str,
) -> StoreResult<Option<RequestRecord>> {
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM requests \
         WHERE requests.agent_id = ?1 AND requests.args_digest = ?2 AND requests.decision = 'ask' \
         AND (requests.state = 'pending' OR requests.state = 'approved' OR requests.state = 'executing' \
              OR EXISTS (SELECT 1 FROM undelivered AS u \
                         WHERE u.agent_id = requests.agent_id AND u.request_id = requests.request_id)) \
         ORDER BY requests.created_at DESC LIMIT 1"
    );
    let mut found = query_requests(
        conn,
        path,
        "finding a waiting call",
        &sql,
        params![agent_id, digest],
    )?;
    Ok(found.pop())
}

/// Requests that asked a human and were resolved (approved, denied or expired), most recently
/// resolved first.
pub(crate) fn recently_resolved_asks(
    conn: &Connection,
    path: &Path,
    limit: u32,
) -> StoreResult<Vec<RequestRecord>> {
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE decision = 'ask' AND resolved_at IS NOT NULL \
         ORDER BY resolved_at DESC, rowid DESC LIMIT ?1"
    );
    query_requests(
        conn,
        path,
        "listing recent approvals",
        &sql,
        params![i64::from(limit)],
    )
}

/// One page of the audit log, newest first.
pub(crate) fn audit_page(
    conn: &Connection,
    path: &Path,
    query: &AuditQuery,
) -> StoreResult<Vec<AuditRecord>> {
    const OPERATION: &str = "reading the audit log";
    // Every filter is always bound; a NULL parameter disables it. One statement shape keeps the
    // prepared-statement cache small.
    let sql = "SELECT id, at, agent_id, request_id, kind, signature, decision, rule, actor, detail \
               FROM audit_log \
               WHERE (?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR request_id = ?2) \
               AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR at >= ?4) \
               AND (?5 IS NULL OR at < ?5) AND (?6 IS NULL OR id < ?6) \
               ORDER BY id DESC LIMIT ?7 OFFSET ?8";
    let mut statement = conn.prepare_cached(sql).map_err(sqlite(path, OPERATION))?;
    type RawAudit = (
        i64,
        i64,
        String,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let raws = statement
        .query_map(
            params![
                query.agent_id,
                query.request_id,
                query.kind,
                query.since.map(Timestamp::as_millis),
                query.until.map(Timestamp::as_millis),
                query.before_id,
                i64::from(query.limit),
                i64::from(query.offset),
            ],
            |row| -> rusqlite::Result<RawAudit> {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                    row.get(8)?,
                    row.get(9)?,
                ))
            },
        )
        .map_err(sqlite(path, OPERATION))?
        .collect::<rusqlite::Result<Vec<RawAudit>>>()
        .map_err(sqlite(path, OPERATION))?;
    raws.into_iter()
        .map(
            |(id, at, agent_id, request_id, kind, signature, decision, rule, actor, detail)| {
                let decision = match decision {
                    Some(text) => Some(text.parse::<Decision>().map_err(|error| {
                        corrupt(path, format!("audit_log.decision of record {id}: {error}"))
                    })?),
                    None => None,
                };
                let detail = match detail {
                    Some(text) => Some(serde_json::from_str(&text).map_err(|error| {
                        corrupt(path, format!("audit_log.detail of record {id}: {error}"))
                    })?),
                    None => None,
                };
                Ok(AuditRecord {
                    id,
                    at: Timestamp::from_millis(at),
                    agent_id,
                    request_id,
                    kind: AuditKind::from_name(&kind),
                    signature,
                    decision,
                    rule,
                    actor,
                    detail,
                })
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    #[test]
    fn a_digest_is_written_as_lower_case_hex() {
        let digest: [u8; 32] = Sha256::digest(b"abc").into();
        assert_eq!(
            super::sha256_hex(&digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(super::sha256_hex(&[0xAB; 32]), "ab".repeat(32));
    }
}
