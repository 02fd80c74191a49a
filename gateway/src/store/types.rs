//! The values the store takes and returns: timestamps, request states, decisions, new requests,
//! transitions, stored records, audit entries and audit queries.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

/// JSON-RPC error code stored for a request whose execution outcome is unknown or failed
/// (`-32004`, "execution failed", docs/ARCHITECTURE.md "Wire protocol").
pub const EXECUTION_FAILED_CODE: i64 = -32004;

/// The error message stored for requests found `executing` at start-up.
pub const RESTART_DURING_EXECUTION: &str = "outcome unknown: gateway restarted during execution";

/// A point in time: milliseconds since the Unix epoch (UTC), as stored in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// A timestamp from milliseconds since the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This timestamp moved `duration` later (saturating at the end of the representable range).
    pub fn saturating_add(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// This timestamp moved `duration` earlier (saturating at the start of the representable range).
    pub fn saturating_sub(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(millis))
    }

    /// This instant as a UTC date and time, truncated to whole seconds, for writing it as a
    /// calendar date. Instants outside years -9999..=9999 are clamped to that range.
    pub(crate) fn utc_seconds(self) -> time::OffsetDateTime {
        let seconds = self.0.div_euclid(1000);
        time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or_else(|_| {
            let bound = if seconds < 0 {
                time::PrimitiveDateTime::MIN
            } else {
                time::PrimitiveDateTime::MAX
            };
            bound.assume_utc()
        })
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Self(i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
            Err(before) => Self(
                i64::try_from(before.duration().as_millis())
                    .map(|m| -m)
                    .unwrap_or(i64::MIN),
            ),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(ts: Timestamp) -> Self {
        let magnitude = Duration::from_millis(ts.0.unsigned_abs());
        if ts.0 >= 0 {
            UNIX_EPOCH + magnitude
        } else {
            UNIX_EPOCH - magnitude
        }
    }
}

/// Where a request is in its life (docs/ARCHITECTURE.md, "The life of a request").
///
/// ```text
/// pending ──▶ approved ──▶ executing ──▶ executed | failed
///    │            └──────────────────▶ failed
///    └──▶ denied | expired
/// ```
///
/// Requests allowed by policy are inserted `executing`, requests denied by policy `denied`,
/// requests that need a human `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for a human decision (or the timeout).
    Pending,
    /// Approved by a human, not yet started.
    Approved,
    /// The call to the service is in flight.
    Executing,
    /// The call completed; `result` holds the data.
    Executed,
    /// The call failed, or its outcome is unknown; `error` says why.
    Failed,
    /// Denied by policy or by a human.
    Denied,
    /// No decision before the approval timeout.
    Expired,
}

impl RequestState {
    /// Every state, in life order.
    pub const ALL: [RequestState; 7] = [
        Self::Pending,
        Self::Approved,
        Self::Executing,
        Self::Executed,
        Self::Failed,
        Self::Denied,
        Self::Expired,
    ];

    /// The name stored in the database and shown to users.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Executing => "executing",
            Self::Executed => "executed",
            Self::Failed => "failed",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }

    /// Whether the request's life is over (its outcome can be delivered to the agent).
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Executed | Self::Failed | Self::Denied | Self::Expired
        )
    }

    /// Whether `self → to` is an edge of the state machine.
    pub const fn can_transition_to(self, to: RequestState) -> bool {
        matches!(
            (self, to),
            (Self::Pending, Self::Approved)
                | (Self::Pending, Self::Denied)
                | (Self::Pending, Self::Expired)
                | (Self::Approved, Self::Executing)
                | (Self::Approved, Self::Failed)
                | (Self::Executing, Self::Executed)
                | (Self::Executing, Self::Failed)
        )
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestState {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// A name read from the database that this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name `{0}`")]
pub struct UnknownName(pub String);

/// What the policy decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Execute without asking.
    Allow,
    /// Refuse.
    Deny,
    /// Ask a human.
    Ask,
}

impl Decision {
    /// The name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Ask => "ask",
        }
    }

    /// The state a request with this decision starts in.
    pub const fn initial_state(self) -> RequestState {
        match self {
            Self::Allow => RequestState::Executing,
            Self::Deny => RequestState::Denied,
            Self::Ask => RequestState::Pending,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Decision {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            "ask" => Ok(Self::Ask),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

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

/// An error outcome stored with a request: the JSON-RPC code, a message and the structured
/// `error.data` the agent gets with it (the deciding rule of a policy denial, the kind and
/// status of an execution failure).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredError {
    /// JSON-RPC error code (e.g. -32004).
    pub code: i64,
    /// Human-readable message.
    pub message: String,
    /// Structured detail for `error.data` (a JSON object), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Identifies a request: the agent and its request id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RequestKey {
    /// The agent's id.
    pub agent_id: String,
    /// The request id (the agent's idempotency key, or one the gateway assigned).
    pub request_id: String,
}

impl RequestKey {
    /// A key from its parts.
    pub fn new(agent_id: impl Into<String>, request_id: impl Into<String>) -> Self {
        Self {
            agent_id: agent_id.into(),
            request_id: request_id.into(),
        }
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

/// A request to record (see [`crate::store::Store::insert_request`]).
///
/// The decision fixes the initial state: allow → `executing`, deny → `denied`, ask → `pending`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRequest {
    pub(crate) agent_id: String,
    pub(crate) request_id: String,
    pub(crate) tool: String,
    pub(crate) args: Value,
    pub(crate) signature: String,
    pub(crate) decision: Decision,
    pub(crate) rule: Option<String>,
    pub(crate) created_at: Timestamp,
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) resolved_by: Option<String>,
    pub(crate) error: Option<StoredError>,
    pub(crate) approver_refs: Option<Value>,
    pub(crate) audit: Vec<AuditEntry>,
}

impl NewRequest {
    fn with_decision(
        agent_id: impl Into<String>,
        request_id: impl Into<String>,
        tool: impl Into<String>,
        args: Value,
        signature: impl Into<String>,
        decision: Decision,
    ) -> Self {
        Self {
            agent_id: agent_id.into(),
            request_id: request_id.into(),
            tool: tool.into(),
            args,
            signature: signature.into(),
            decision,
            rule: None,
            created_at: Timestamp::now(),
            expires_at: None,
            resolved_by: None,
            error: None,
            approver_refs: None,
            audit: Vec::new(),
        }
    }

    /// A request the policy allowed: it starts `executing`, resolved by `policy`.
    pub fn allowed(
        agent_id: impl Into<String>,
        request_id: impl Into<String>,
        tool: impl Into<String>,
        args: Value,
        signature: impl Into<String>,
    ) -> Self {
        Self::with_decision(agent_id, request_id, tool, args, signature, Decision::Allow)
            .resolved_by("policy")
    }

    /// A request the policy denied: it starts (and stays) `denied` with error -32003.
    pub fn denied(
        agent_id: impl Into<String>,
        request_id: impl Into<String>,
        tool: impl Into<String>,
        args: Value,
        signature: impl Into<String>,
    ) -> Self {
        Self::with_decision(agent_id, request_id, tool, args, signature, Decision::Deny)
            .resolved_by("policy")
            .error(-32003, "denied by policy")
    }

    /// A request waiting for a human: it starts `pending` and expires at `expires_at`.
    pub fn pending(
        agent_id: impl Into<String>,
        request_id: impl Into<String>,
        tool: impl Into<String>,
        args: Value,
        signature: impl Into<String>,
        expires_at: Timestamp,
    ) -> Self {
        let mut request =
            Self::with_decision(agent_id, request_id, tool, args, signature, Decision::Ask);
        request.expires_at = Some(expires_at);
        request
    }

    /// Sets the rule that decided.
    pub fn rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }

    /// Sets the creation time (default: now).
    pub fn created_at(mut self, at: Timestamp) -> Self {
        self.created_at = at;
        self
    }

    /// Sets who resolved the request at creation (default `policy` for allowed and denied requests).
    pub fn resolved_by(mut self, actor: impl Into<String>) -> Self {
        self.resolved_by = Some(actor.into());
        self
    }

    /// Sets the stored error (default for denied requests: -32003 "denied by policy").
    pub fn error(mut self, code: i64, message: impl Into<String>) -> Self {
        self.error = Some(StoredError {
            code,
            message: message.into(),
            data: None,
        });
        self
    }

    /// Sets the structured `error.data` of the stored error (set the error first).
    pub fn error_data(mut self, data: Value) -> Self {
        if let Some(error) = &mut self.error {
            error.data = Some(data);
        }
        self
    }

    /// Sets the approver message references (e.g. Telegram chat and message ids).
    pub fn approver_refs(mut self, refs: Value) -> Self {
        self.approver_refs = Some(refs);
        self
    }

    /// Appends an audit entry, committed in the same transaction as the row (only if it was inserted).
    pub fn audit(mut self, entry: AuditEntry) -> Self {
        self.audit.push(entry);
        self
    }

    /// The state the request will be stored in.
    pub fn state(&self) -> RequestState {
        self.decision.initial_state()
    }

    /// The key of the request.
    pub fn key(&self) -> RequestKey {
        RequestKey::new(self.agent_id.clone(), self.request_id.clone())
    }
}

/// What [`crate::store::Store::insert_request`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// The request is new and was stored.
    Inserted,
    /// A request with this key and the same tool and arguments exists (a retry): attach to it.
    Duplicate(Box<RequestRecord>),
    /// A request with this key exists with a different tool or arguments: the caller must refuse (-32600).
    Conflict(Box<RequestRecord>),
}

/// A state change (see [`crate::store::Store::transition`]): one conditional UPDATE on the current state.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub(crate) agent_id: String,
    pub(crate) request_id: String,
    pub(crate) from: RequestState,
    pub(crate) to: RequestState,
    pub(crate) at: Timestamp,
    pub(crate) resolved_by: Option<String>,
    pub(crate) result: Option<Value>,
    pub(crate) error: Option<StoredError>,
    pub(crate) audit: Vec<AuditEntry>,
}

impl Transition {
    /// Moves the request from `from` to `to` (checked against the state machine when applied).
    pub fn new(
        agent_id: impl Into<String>,
        request_id: impl Into<String>,
        from: RequestState,
        to: RequestState,
    ) -> Self {
        Self {
            agent_id: agent_id.into(),
            request_id: request_id.into(),
            from,
            to,
            at: Timestamp::now(),
            resolved_by: None,
            result: None,
            error: None,
            audit: Vec::new(),
        }
    }

    /// `pending → approved`, by `actor`.
    pub fn approve(
        agent_id: impl Into<String>,
        request_id: impl Into<String>,
        actor: impl Into<String>,
    ) -> Self {
        Self::new(
            agent_id,
            request_id,
            RequestState::Pending,
            RequestState::Approved,
        )
        .resolved_by(actor)
    }

    /// `pending → denied`, by `actor` (error -32001 "denied by the approver").
    pub fn deny(
        agent_id: impl Into<String>,
        request_id: impl Into<String>,
        actor: impl Into<String>,
    ) -> Self {
        Self::new(
            agent_id,
            request_id,
            RequestState::Pending,
            RequestState::Denied,
        )
        .resolved_by(actor)
        .error(-32001, "denied by the approver")
    }

    /// `pending → expired` (error -32002 "approval timed out").
    pub fn expire(agent_id: impl Into<String>, request_id: impl Into<String>) -> Self {
        Self::new(
            agent_id,
            request_id,
            RequestState::Pending,
            RequestState::Expired,
        )
        .resolved_by("timeout")
        .error(-32002, "approval timed out")
    }

    /// `approved → executing`.
    pub fn start(agent_id: impl Into<String>, request_id: impl Into<String>) -> Self {
        Self::new(
            agent_id,
            request_id,
            RequestState::Approved,
            RequestState::Executing,
        )
    }

    /// `executing → executed` with the result data.
    pub fn executed(
        agent_id: impl Into<String>,
        request_id: impl Into<String>,
        result: Value,
    ) -> Self {
        Self::new(
            agent_id,
            request_id,
            RequestState::Executing,
            RequestState::Executed,
        )
        .result(result)
    }

    /// `executing → failed` with an error (e.g. -32004 and the service's message).
    pub fn failed(
        agent_id: impl Into<String>,
        request_id: impl Into<String>,
        code: i64,
        message: impl Into<String>,
    ) -> Self {
        Self::new(
            agent_id,
            request_id,
            RequestState::Executing,
            RequestState::Failed,
        )
        .error(code, message)
    }

    /// Sets the time of the transition (default: now).
    pub fn at(mut self, at: Timestamp) -> Self {
        self.at = at;
        self
    }

    /// Sets who decided (stored in `resolved_by`; `resolved_at` is set for transitions out of `pending`).
    pub fn resolved_by(mut self, actor: impl Into<String>) -> Self {
        self.resolved_by = Some(actor.into());
        self
    }

    /// Sets the result data.
    pub fn result(mut self, result: Value) -> Self {
        self.result = Some(result);
        self
    }

    /// Sets the error outcome.
    pub fn error(mut self, code: i64, message: impl Into<String>) -> Self {
        self.error = Some(StoredError {
            code,
            message: message.into(),
            data: None,
        });
        self
    }

    /// Sets the structured `error.data` of the error outcome (set the error first).
    pub fn error_data(mut self, data: Value) -> Self {
        if let Some(error) = &mut self.error {
            error.data = Some(data);
        }
        self
    }

    /// Appends an audit entry, committed in the same transaction, only if this transition wins.
    pub fn audit(mut self, entry: AuditEntry) -> Self {
        self.audit.push(entry);
        self
    }

    /// The state the request must be in for the transition to win.
    pub fn from_state(&self) -> RequestState {
        self.from
    }

    /// The state the request moves to.
    pub fn to_state(&self) -> RequestState {
        self.to
    }
}

/// A request as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRecord {
    /// The agent.
    pub agent_id: String,
    /// The request id.
    pub request_id: String,
    /// The tool name.
    pub tool: String,
    /// The arguments.
    pub args: Value,
    /// SHA-256 (hex) of the tool and the canonical JSON of the arguments.
    pub args_digest: String,
    /// The signature the policy judged.
    pub signature: String,
    /// The policy decision.
    pub decision: Decision,
    /// The deciding rule.
    pub rule: Option<String>,
    /// The current state.
    pub state: RequestState,
    /// When the request was recorded.
    pub created_at: Timestamp,
    /// When a pending request expires.
    pub expires_at: Option<Timestamp>,
    /// Who decided (`policy`, an approver, `timeout`, `gateway`).
    pub resolved_by: Option<String>,
    /// When it was decided.
    pub resolved_at: Option<Timestamp>,
    /// The result data of an executed request.
    pub result: Option<Value>,
    /// The error outcome of a failed, denied or expired request.
    pub error: Option<StoredError>,
    /// Whether the agent has received the outcome.
    pub delivered: bool,
    /// Approver message references (e.g. Telegram chat and message ids).
    pub approver_refs: Option<Value>,
    /// When the row last changed.
    pub updated_at: Timestamp,
}

impl RequestRecord {
    /// The key of the request.
    pub fn key(&self) -> RequestKey {
        RequestKey::new(self.agent_id.clone(), self.request_id.clone())
    }
}

/// What [`crate::store::Store::recover_on_startup`] did and found.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RecoveryReport {
    /// Requests found `executing`, now `failed` with [`RESTART_DURING_EXECUTION`]; never re-run.
    pub failed: Vec<RequestRecord>,
    /// Requests approved but not started before the restart (safe to execute: not yet `executing`).
    pub approved: Vec<RequestRecord>,
    /// Requests still pending and not expired: resume their timers and approval messages.
    pub pending: Vec<RequestRecord>,
    /// Requests still pending but past their expiry: the timeout sweeper should expire them.
    pub expired_pending: Vec<RequestRecord>,
}

/// Counters of the writer (for benchmarks and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StoreStats {
    /// Transactions committed by the writer.
    pub transactions: u64,
    /// Write operations committed (inserts, transitions, audit appends, ...).
    pub writes: u64,
    /// The most operations committed in one transaction.
    pub largest_batch: u64,
    /// Syncs of the write-ahead log (each one makes every transaction committed before it durable).
    pub syncs: u64,
    /// How many of the first transactions are known to be on disk (covered by a finished sync).
    pub synced_transactions: u64,
    /// Passive checkpoints run (copying the write-ahead log into the database file): by the sync
    /// threads, or by the writer when the log has outgrown them.
    pub checkpoints: u64,
    /// Pages appended to the write-ahead log by commits (each commit writes every page it
    /// changed; divided by `transactions`, the size of a commit).
    pub wal_frames: u64,
}

/// `2026-11-21T16:47:40Z`: a timestamp as upstream writes `expires_at`.
pub(crate) fn rfc3339(at: Timestamp) -> String {
    let t = at.utc_seconds();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps_like_upstream() {
        assert_eq!(rfc3339(Timestamp::from_millis(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Timestamp::from_millis(1_795_279_660_999)),
            "2026-11-21T16:47:40Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_millis(951_782_400_000)),
            "2000-02-29T00:00:00Z"
        );
    }
}
