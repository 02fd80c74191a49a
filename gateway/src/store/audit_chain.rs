//! The audit log's hash chain: each row written since schema v9 carries
//! `hash = SHA-256(previous row's hash ‖ canonical encoding of this row)`, so changing,
//! removing or reordering any chained row breaks every hash after it. [`verify`] walks the log
//! and names the first row that does not match.
//!
//! The canonical encoding is the row's columns in table order (`id`, `at`, `agent_id`,
//! `request_id`, `kind`, `signature`, `decision`, `rule`, `actor`, `detail`), each as a tag byte
//! (0 for NULL, 1 for a value) followed, for a value, by its length as 8 big-endian bytes and its
//! UTF-8 text (integers in decimal). The first chained row's previous hash is empty.

use std::path::Path;

use rusqlite::{Connection, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::{StoreError, StoreResult};

/// The columns of one audit row, in table order, as they are hashed.
pub(crate) struct ChainedRow<'a> {
    pub(crate) id: i64,
    pub(crate) at: i64,
    pub(crate) agent_id: &'a str,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) kind: &'a str,
    pub(crate) signature: Option<&'a str>,
    pub(crate) decision: Option<&'a str>,
    pub(crate) rule: Option<&'a str>,
    pub(crate) actor: Option<&'a str>,
    pub(crate) detail: Option<&'a str>,
}

fn field(hasher: &mut Sha256, value: Option<&str>) {
    match value {
        None => hasher.update([0u8]),
        Some(text) => {
            hasher.update([1u8]);
            hasher.update((text.len() as u64).to_be_bytes());
            hasher.update(text.as_bytes());
        }
    }
}

/// The chain hash of `row` after a row whose hash is `previous` (`""` for the first), in
/// lower-case hex.
pub(crate) fn chain_hash(previous: &str, row: &ChainedRow<'_>) -> String {
    let mut hasher = Sha256::new();
    field(&mut hasher, Some(previous));
    field(&mut hasher, Some(&row.id.to_string()));
    field(&mut hasher, Some(&row.at.to_string()));
    field(&mut hasher, Some(row.agent_id));
    field(&mut hasher, row.request_id);
    field(&mut hasher, Some(row.kind));
    field(&mut hasher, row.signature);
    field(&mut hasher, row.decision);
    field(&mut hasher, row.rule);
    field(&mut hasher, row.actor);
    field(&mut hasher, row.detail);
    super::rows::sha256_hex(&hasher.finalize().into())
}

/// The id and hash of the newest audit row, for the next row to chain to (`(0, "")` for an
/// empty log; an unchained newest row, written before v9, starts the chain afresh).
pub(crate) fn chain_tip(conn: &Connection, path: &Path) -> StoreResult<(i64, String)> {
    let tip = conn
        .prepare_cached("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        .and_then(|mut statement| {
            let mut rows = statement.query([])?;
            match rows.next()? {
                Some(row) => Ok((row.get::<_, i64>(0)?, row.get::<_, Option<String>>(1)?)),
                None => Ok((0, None)),
            }
        })
        .map_err(|source| StoreError::Sqlite {
            path: path.to_owned(),
            operation: "reading the audit chain's tip",
            source,
        })?;
    Ok((tip.0, tip.1.unwrap_or_default()))
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Rows in the log.
    pub rows: u64,
    /// Rows written before the chain existed (schema v9), at the start of the log; they are
    /// not covered.
    pub unchained: u64,
    /// The first row that does not match the chain, if any.
    pub first_broken: Option<BrokenRow>,
}

impl ChainReport {
    /// Whether every chained row matches.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// A row that breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenRow {
    /// Its id.
    pub id: i64,
    /// What is wrong with it.
    pub problem: String,
}

/// Walks the audit log of the database at `path` (opened read-only) in id order and checks
/// every chained row against the chain.
pub fn verify(path: &Path) -> StoreResult<ChainReport> {
    let sqlite = |operation: &'static str| {
        move |source| StoreError::Sqlite {
            path: path.to_owned(),
            operation,
            source,
        }
    };
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite("opening the database to verify the audit log"))?;
    let mut statement = conn
        .prepare(
            "SELECT id, at, agent_id, request_id, kind, signature, decision, rule, actor, detail, hash \
             FROM audit_log ORDER BY id",
        )
        .map_err(sqlite("reading the audit log"))?;
    let mut rows = statement
        .query(params![])
        .map_err(sqlite("reading the audit log"))?;
    let mut report = ChainReport {
        rows: 0,
        unchained: 0,
        first_broken: None,
    };
    let mut previous: Option<(i64, String)> = None;
    while let Some(row) = rows.next().map_err(sqlite("reading the audit log"))? {
        report.rows += 1;
        let get = |row: &rusqlite::Row<'_>| -> rusqlite::Result<_> {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<String>>(6)?,
                row.get::<_, Option<String>>(7)?,
                row.get::<_, Option<String>>(8)?,
                row.get::<_, Option<String>>(9)?,
                row.get::<_, Option<String>>(10)?,
            ))
        };
        let (id, at, agent, rid, kind, sig, decision, rule, actor, detail, hash) = match get(row) {
            Ok(values) => values,
            Err(error) => {
                report.first_broken = Some(BrokenRow {
                    id: row.get::<_, i64>(0).unwrap_or(-1),
                    problem: format!("a column has the wrong type: {error}"),
                });
                break;
            }
        };
        let Some(hash) = hash else {
            if previous.is_none() {
                report.unchained += 1;
                continue;
            }
            report.first_broken = Some(BrokenRow {
                id,
                problem: "it has no hash, but rows before it are chained".to_owned(),
            });
            break;
        };
        let prev_hash = match &previous {
            Some((prev_id, prev_hash)) => {
                if id != prev_id + 1 {
                    report.first_broken = Some(BrokenRow {
                        id,
                        problem: format!(
                            "rows {} to {} are missing before it",
                            prev_id + 1,
                            id - 1
                        ),
                    });
                    break;
                }
                prev_hash.clone()
            }
            None => String::new(),
        };
        let expected = chain_hash(
            &prev_hash,
            &ChainedRow {
                id,
                at,
                agent_id: &agent,
                request_id: rid.as_deref(),
                kind: &kind,
                signature: sig.as_deref(),
                decision: decision.as_deref(),
                rule: rule.as_deref(),
                actor: actor.as_deref(),
                detail: detail.as_deref(),
            },
        );
        if expected != hash {
            report.first_broken = Some(BrokenRow {
                id,
                problem:
                    "its content does not match its hash (the row, or one before it, was changed)"
                        .to_owned(),
            });
            break;
        }
        previous = Some((id, hash));
    }
    Ok(report)
}
