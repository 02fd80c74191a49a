//! Grants: "allow this for a while", bound to one agent and the exact set of signatures an
//! approved call had (its scope), with an expiry, a use count and a revocation. The rows
//! (`grants` table, schema v8), how they are read, and the values passed in and out.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::error::{StoreError, StoreResult};
use super::types::{AuditEntry, Timestamp};

/// A grant to be stored (see [`super::Store::insert_grant`]).
#[derive(Debug, Clone)]
pub struct NewGrant {
    /// The agent it is for.
    pub agent_id: String,
    /// The exact set of signatures it covers (see [`grant_scope`]).
    pub scope: String,
    /// The tool of the approved call.
    pub tool: String,
    /// The request whose approval created it.
    pub request_id: String,
    /// Who granted it (e.g. `telegram:@alice`).
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// Until when it allows; `None`: until revoked ("always allow").
    pub expires_at: Option<Timestamp>,
    /// Audit entries committed with it.
    pub audit: Vec<AuditEntry>,
}

/// A stored grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// Its id (shown on the web page, named in audits: `grant:<id>`).
    pub id: i64,
    /// The agent it is for.
    pub agent_id: String,
    /// The signatures it covers, one per line.
    pub scope: String,
    /// The tool of the approved call.
    pub tool: String,
    /// The request whose approval created it.
    pub request_id: String,
    /// Who granted it.
    pub created_by: String,
    /// When.
    #[serde(serialize_with = "as_rfc3339")]
    pub created_at: Timestamp,
    /// Until when it allows; `None`: until revoked ("always allow").
    #[serde(serialize_with = "as_optional_rfc3339")]
    pub expires_at: Option<Timestamp>,
    /// How many calls it has allowed.
    pub uses: i64,
    /// Who revoked it, if someone did.
    pub revoked_by: Option<String>,
}

fn as_rfc3339<S: serde::Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&super::types::rfc3339(*at))
}

fn as_optional_rfc3339<S: serde::Serializer>(
    at: &Option<Timestamp>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serializer.serialize_str(&super::types::rfc3339(*at)),
        None => serializer.serialize_none(),
    }
}

/// The scope of a call judged by the policy: its signatures (one per target), sorted, each
/// once, one per line. Two calls have the same scope exactly when they affect the same
/// entities the same way.
pub fn grant_scope<'a>(signatures: impl IntoIterator<Item = &'a str>) -> String {
    let mut all: Vec<&str> = signatures.into_iter().collect();
    all.sort_unstable();
    all.dedup();
    all.join("\n")
}

pub(crate) const GRANT_COLUMNS: &str =
    "id, agent_id, scope, tool, request_id, created_by, created_at, expires_at, uses, revoked_by";

pub(crate) const INSERT_GRANT_SQL: &str = "INSERT INTO grants (agent_id, scope, tool, request_id, created_by, created_at, expires_at) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
pub(crate) const USE_GRANT_SQL: &str =
    "UPDATE grants SET uses = uses + 1 WHERE id = ?1 AND revoked_at IS NULL";
pub(crate) const REVOKE_GRANT_SQL: &str =
    "UPDATE grants SET revoked_at = ?2, revoked_by = ?3 WHERE id = ?1 AND revoked_at IS NULL";

fn grant_from_row(row: &Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: row.get(0)?,
        agent_id: row.get(1)?,
        scope: row.get(2)?,
        tool: row.get(3)?,
        request_id: row.get(4)?,
        created_by: row.get(5)?,
        created_at: Timestamp::from_millis(row.get(6)?),
        expires_at: row.get::<_, Option<i64>>(7)?.map(Timestamp::from_millis),
        uses: row.get(8)?,
        revoked_by: row.get(9)?,
    })
}

fn read_error<'a>(
    path: &'a Path,
    operation: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sqlite {
        path: path.to_owned(),
        operation,
        source,
    }
}

/// The live grant (unexpired at `now`, not revoked) of `agent_id` for `scope`, the one that
/// lasts longest.
pub(crate) fn live_grant(
    conn: &Connection,
    path: &Path,
    agent_id: &str,
    scope: &str,
    now: Timestamp,
) -> StoreResult<Option<Grant>> {
    const OPERATION: &str = "finding a grant";
    let sql = format!(
        "SELECT {GRANT_COLUMNS} FROM grants WHERE agent_id = ?1 AND scope = ?2 \
         AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?3) \
         ORDER BY expires_at IS NULL DESC, expires_at DESC LIMIT 1"
    );
    conn.prepare_cached(&sql)
        .map_err(read_error(path, OPERATION))?
        .query_row(params![agent_id, scope, now.as_millis()], grant_from_row)
        .optional()
        .map_err(read_error(path, OPERATION))
}

/// Every live grant at `now`, soonest to expire first.
pub(crate) fn live_grants(
    conn: &Connection,
    path: &Path,
    now: Timestamp,
) -> StoreResult<Vec<Grant>> {
    const OPERATION: &str = "listing grants";
    let sql = format!(
        "SELECT {GRANT_COLUMNS} FROM grants WHERE revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > ?1) ORDER BY expires_at IS NULL, expires_at, id"
    );
    let mut statement = conn
        .prepare_cached(&sql)
        .map_err(read_error(path, OPERATION))?;
    let rows = statement
        .query_map(params![now.as_millis()], grant_from_row)
        .map_err(read_error(path, OPERATION))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(read_error(path, OPERATION))
}

/// The grant `id`, revoked or not.
pub(crate) fn grant_by_id(conn: &Connection, path: &Path, id: i64) -> StoreResult<Option<Grant>> {
    const OPERATION: &str = "reading a grant";
    let sql = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1");
    conn.prepare_cached(&sql)
        .map_err(read_error(path, OPERATION))?
        .query_row(params![id], grant_from_row)
        .optional()
        .map_err(read_error(path, OPERATION))
}
