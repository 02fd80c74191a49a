//! The audit log's values: the kind of an event, an entry to append, a record as stored and a
//! query over the log.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::state::Decision;
use super::timestamp::Timestamp;

/// The kind of an audit event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub enum AuditKind {
    /// The policy decided (allow, deny or ask) for a new request.
    Decision,
    /// An approval request was sent to a human.
    ApprovalRequested,
    /// A human approved.
    Approved,
    /// A human (or the gateway) denied.
    Denied,
    /// The approval timed out.
    Expired,
    /// Execution started.
    Executing,
    /// Execution completed.
    Executed,
    /// Execution failed (or its outcome is unknown after a restart).
    Failed,
    /// The outcome reached the agent.
    Delivered,
    /// Any other event (authentication failures, rate limiting, ...), by name.
    Other(String),
}

impl AuditKind {
    /// The name stored in the database.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Decision => "decision",
            Self::ApprovalRequested => "approval_requested",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Executing => "executing",
            Self::Executed => "executed",
            Self::Failed => "failed",
            Self::Delivered => "delivered",
            Self::Other(name) => name,
        }
    }

    /// The kind for a stored name (unknown names become [`AuditKind::Other`]).
    pub fn from_name(name: &str) -> Self {
        match name {
            "decision" => Self::Decision,
            "approval_requested" => Self::ApprovalRequested,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "expired" => Self::Expired,
            "executing" => Self::Executing,
            "executed" => Self::Executed,
            "failed" => Self::Failed,
            "delivered" => Self::Delivered,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<AuditKind> for String {
    fn from(kind: AuditKind) -> Self {
        kind.as_str().to_owned()
    }
}

/// An audit entry to append (see [`crate::store::Store::append_audit`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub(crate) at: Timestamp,
    pub(crate) agent_id: String,
    pub(crate) request_id: Option<String>,
    pub(crate) kind: AuditKind,
    pub(crate) signature: Option<String>,
    pub(crate) decision: Option<Decision>,
    pub(crate) rule: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) detail: Option<Value>,
}

impl AuditEntry {
    /// A new entry of `kind` for `agent_id`, timestamped now.
    pub fn new(agent_id: impl Into<String>, kind: AuditKind) -> Self {
        Self {
            at: Timestamp::now(),
            agent_id: agent_id.into(),
            request_id: None,
            kind,
            signature: None,
            decision: None,
            rule: None,
            actor: None,
            detail: None,
        }
    }

    /// Sets the time of the event.
    pub fn at(mut self, at: Timestamp) -> Self {
        self.at = at;
        self
    }

    /// Sets the request the event belongs to.
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Sets the request's signature.
    pub fn signature(mut self, signature: impl Into<String>) -> Self {
        self.signature = Some(signature.into());
        self
    }

    /// Sets the policy decision.
    pub fn decision(mut self, decision: Decision) -> Self {
        self.decision = Some(decision);
        self
    }

    /// Sets the rule that decided.
    pub fn rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }

    /// Sets who acted (e.g. `policy`, `telegram:12345`, `gateway`).
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Sets free-form details (a JSON value). Never put secrets here.
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// An audit record as stored (with its id, which only grows).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// Position in the log (strictly increasing; never reused).
    pub id: i64,
    /// When the event happened.
    pub at: Timestamp,
    /// The agent.
    pub agent_id: String,
    /// The request, if the event belongs to one.
    pub request_id: Option<String>,
    /// What happened.
    pub kind: AuditKind,
    /// The request's signature.
    pub signature: Option<String>,
    /// The policy decision.
    pub decision: Option<Decision>,
    /// The deciding rule.
    pub rule: Option<String>,
    /// Who acted.
    pub actor: Option<String>,
    /// Free-form details.
    pub detail: Option<Value>,
}

/// A filter and page over the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub(crate) agent_id: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) since: Option<Timestamp>,
    pub(crate) until: Option<Timestamp>,
    pub(crate) before_id: Option<i64>,
    pub(crate) limit: u32,
    pub(crate) offset: u32,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditQuery {
    /// The largest page size; larger limits are clamped to it.
    pub const MAX_LIMIT: u32 = 1000;

    /// All records, newest first, 100 per page.
    pub fn new() -> Self {
        Self {
            agent_id: None,
            request_id: None,
            kind: None,
            since: None,
            until: None,
            before_id: None,
            limit: 100,
            offset: 0,
        }
    }

    /// Only records of this agent.
    pub fn agent(mut self, agent_id: impl Into<String>) -> Self {
        self.agent_id = Some(agent_id.into());
        self
    }

    /// Only records of this request id.
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Only records of this kind.
    pub fn kind(mut self, kind: AuditKind) -> Self {
        self.kind = Some(kind.as_str().to_owned());
        self
    }

    /// Only records at or after this time.
    pub fn since(mut self, since: Timestamp) -> Self {
        self.since = Some(since);
        self
    }

    /// Only records strictly before this time.
    pub fn until(mut self, until: Timestamp) -> Self {
        self.until = Some(until);
        self
    }

    /// Keyset paging: only records with an id below this one (pass the last id of the previous page).
    pub fn before_id(mut self, id: i64) -> Self {
        self.before_id = Some(id);
        self
    }

    /// Page size (at most [`AuditQuery::MAX_LIMIT`]).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit.min(Self::MAX_LIMIT);
        self
    }

    /// Skip this many matching records (offset paging; prefer [`AuditQuery::before_id`]).
    pub fn offset(mut self, offset: u32) -> Self {
        self.offset = offset;
        self
    }
}
