//! The searchable history of human decisions: requests that asked a human and were resolved,
//! filtered by agent, tool, decision and decider in SQL (every filter a bound parameter),
//! newest first, one page at a time.

use std::path::Path;

use rusqlite::{Connection, params};

use super::error::StoreResult;
use super::rows::{REQUEST_COLUMNS, query_requests};
use super::types::RequestRecord;

/// How a request that asked a human ended, as the history filters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistoryDecision {
    /// Approved (by a human or a grant): `approved`, `executing`, `executed` or `failed`.
    Approved,
    /// Denied by a human.
    Denied,
    /// Nobody decided in time.
    Expired,
    /// Withdrawn by its agent.
    Cancelled,
}

impl HistoryDecision {
    /// Every decision, in the order the page offers them.
    pub const ALL: [HistoryDecision; 4] = [
        HistoryDecision::Approved,
        HistoryDecision::Denied,
        HistoryDecision::Expired,
        HistoryDecision::Cancelled,
    ];

    /// The name in query strings (`approved`, `denied`, `expired`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryDecision::Approved => "approved",
            HistoryDecision::Denied => "denied",
            HistoryDecision::Expired => "expired",
            HistoryDecision::Cancelled => "cancelled",
        }
    }

    /// The decision called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

/// One page of the history (see [`super::Store::history`]); every filter is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only this agent's requests (exact id).
    pub agent_id: Option<String>,
    /// Only calls of this tool (exact name).
    pub tool: Option<String>,
    /// Only requests that ended this way.
    pub decision: Option<HistoryDecision>,
    /// Only requests whose decider (`resolved_by`: `web:alice`, `telegram:@bob`, `timeout`,
    /// `grant:3`) contains this text, ignoring ASCII case.
    pub decider: Option<String>,
    /// Page size (at most [`HistoryQuery::MAX_LIMIT`]).
    pub limit: u32,
    /// How many of the newest matches to skip.
    pub offset: u32,
}

impl HistoryQuery {
    /// The largest page size; larger limits are clamped to it.
    pub const MAX_LIMIT: u32 = 1000;

    /// Everything, newest first, `limit` per page.
    pub fn all(limit: u32) -> Self {
        Self {
            agent_id: None,
            tool: None,
            decision: None,
            decider: None,
            limit: limit.min(Self::MAX_LIMIT),
            offset: 0,
        }
    }
}

/// The page of resolved asks `query` selects, most recently resolved first.
pub(crate) fn history(
    conn: &Connection,
    path: &Path,
    query: &HistoryQuery,
) -> StoreResult<Vec<RequestRecord>> {
    // One statement shape whatever the filters (a NULL parameter disables its filter), so the
    // prepared-statement cache holds one entry. The states are OR chains, as elsewhere.
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE decision = 'ask' AND resolved_at IS NOT NULL \
         AND (?1 IS NULL OR requests.agent_id = ?1) AND (?2 IS NULL OR requests.tool = ?2) \
         AND (?3 IS NULL \
              OR (?3 = 'approved' AND (requests.state = 'approved' OR requests.state = 'executing' \
                                       OR requests.state = 'executed' OR requests.state = 'failed')) \
              OR (?3 <> 'approved' AND requests.state = ?3)) \
         AND (?4 IS NULL OR instr(lower(requests.resolved_by), lower(?4)) > 0) \
         ORDER BY resolved_at DESC, rowid DESC LIMIT ?5 OFFSET ?6"
    );
    query_requests(
        conn,
        path,
        "searching the history",
        &sql,
        params![
            query.agent_id,
            query.tool,
            query.decision.map(HistoryDecision::as_str),
            query.decider,
            i64::from(query.limit.min(HistoryQuery::MAX_LIMIT)),
            i64::from(query.offset),
        ],
    )
}
