//! A request's values: its key, a new request to record, the stored record, its error outcome,
//! what an insert found and what recovery at start-up reports.

use serde::Serialize;
use serde_json::Value;

use super::audit::AuditEntry;
use super::state::{Decision, RequestState};
use super::timestamp::Timestamp;

/// JSON-RPC error code stored for a request whose execution outcome is unknown or failed
/// (`-32004`, "execution failed", docs/ARCHITECTURE.md "Wire protocol").
pub const EXECUTION_FAILED_CODE: i64 = -32004;

/// The error message stored for requests found `executing` at start-up.
pub const RESTART_DURING_EXECUTION: &str = "outcome unknown: gateway restarted during execution";

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
    /// A finished request's outcome waits in `undelivered` for its agent (see
    /// [`NewRequest::answered_in_band`]).
    pub(crate) kept_for_agent: bool,
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
            kept_for_agent: true,
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

    /// The outcome goes back in the answer to the call that made the request, and the agent
    /// has no way to ask for it again (an MCP call decided at once): a request inserted
    /// finished (denied) does not wait in `undelivered` for its agent.
    pub fn answered_in_band(mut self) -> Self {
        self.kept_for_agent = false;
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
