//! [`Transition`]: a change of a request's state, with what it records on the way.

use serde_json::Value;

use super::audit::AuditEntry;
use super::request::StoredError;
use super::state::RequestState;
use super::timestamp::Timestamp;

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
    /// A finishing transition leaves the outcome in `undelivered` for its agent (see
    /// [`Transition::answered_in_band`]).
    pub(crate) kept_for_agent: bool,
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
            kept_for_agent: true,
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

    /// `pending → cancelled`, by `actor` (the agent; error -32007 "Cancelled by the agent").
    pub fn cancel(
        agent_id: impl Into<String>,
        request_id: impl Into<String>,
        actor: impl Into<String>,
    ) -> Self {
        Self::new(
            agent_id,
            request_id,
            RequestState::Pending,
            RequestState::Cancelled,
        )
        .resolved_by(actor)
        .error(-32007, "Cancelled by the agent")
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

    /// The outcome goes back in the answer to the call that made the request, and the agent
    /// has no way to ask for it again (an MCP call decided at once): it does not wait in
    /// `undelivered` for its agent.
    pub fn answered_in_band(mut self) -> Self {
        self.kept_for_agent = false;
        self
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
