//! The writes as the writer applies them: audit entries, new requests and state transitions,
//! checked and serialised on the caller's thread so that the writer thread only binds them.

use crate::store::error::{StoreError, StoreResult};
use crate::store::rows;
use crate::store::types::{
    AuditEntry, NewRequest, RequestState, StoredError, Timestamp, Transition,
};

/// An audit entry, serialised on the caller's thread.
#[derive(Debug)]
pub(crate) struct PreparedAudit {
    pub(super) at: i64,
    pub(super) agent_id: String,
    pub(super) request_id: Option<String>,
    pub(super) kind: String,
    pub(super) signature: Option<String>,
    pub(super) decision: Option<&'static str>,
    pub(super) rule: Option<String>,
    pub(super) actor: Option<String>,
    pub(super) detail: Option<String>,
}

impl PreparedAudit {
    pub(crate) fn new(entry: AuditEntry) -> StoreResult<Self> {
        let detail = match &entry.detail {
            Some(value) => Some(rows::json_text(value, "audit detail")?),
            None => None,
        };
        Ok(Self {
            at: entry.at.as_millis(),
            kind: entry.kind.as_str().to_owned(),
            agent_id: entry.agent_id,
            request_id: entry.request_id,
            signature: entry.signature,
            decision: entry.decision.map(|d| d.as_str()),
            rule: entry.rule,
            actor: entry.actor,
            detail,
        })
    }

    fn prepare_all(entries: Vec<AuditEntry>) -> StoreResult<Vec<Self>> {
        entries.into_iter().map(Self::new).collect()
    }
}

/// A new request, serialised (and digested) on the caller's thread.
#[derive(Debug)]
pub(crate) struct PreparedInsert {
    pub(super) agent_id: String,
    pub(super) request_id: String,
    pub(super) tool: String,
    pub(super) args: String,
    pub(super) args_digest: String,
    pub(super) signature: String,
    pub(super) decision: &'static str,
    pub(super) rule: Option<String>,
    pub(super) state: &'static str,
    /// The request is inserted already finished (denied by the policy) and its outcome waits
    /// for the agent.
    pub(super) finished: bool,
    pub(super) created_at: i64,
    pub(super) expires_at: Option<i64>,
    pub(super) resolved_by: Option<String>,
    pub(super) resolved_at: Option<i64>,
    pub(super) error_code: Option<i64>,
    pub(super) error_message: Option<String>,
    pub(super) error_data: Option<String>,
    pub(super) approver_refs: Option<String>,
    pub(super) audit: Vec<PreparedAudit>,
}

impl PreparedInsert {
    pub(crate) fn new(request: NewRequest) -> StoreResult<Self> {
        let state = request.state();
        let args = rows::json_text(&request.args, "request arguments")?;
        let args_digest = rows::args_digest(&request.tool, &request.args);
        let approver_refs = match &request.approver_refs {
            Some(value) => Some(rows::json_text(value, "approver message references")?),
            None => None,
        };
        let (error_code, error_message, error_data) = error_columns(request.error)?;
        Ok(Self {
            state: state.as_str(),
            finished: state.is_terminal() && request.kept_for_agent,
            resolved_at: (state != RequestState::Pending).then_some(request.created_at.as_millis()),
            audit: PreparedAudit::prepare_all(request.audit)?,
            agent_id: request.agent_id,
            request_id: request.request_id,
            tool: request.tool,
            args,
            args_digest,
            signature: request.signature,
            decision: request.decision.as_str(),
            rule: request.rule,
            created_at: request.created_at.as_millis(),
            expires_at: request.expires_at.map(Timestamp::as_millis),
            resolved_by: request.resolved_by,
            error_code,
            error_message,
            error_data,
            approver_refs,
        })
    }
}

/// The `error_code`, `error_message` and `error_data` columns of an error outcome.
type ErrorColumns = (Option<i64>, Option<String>, Option<String>);

fn error_columns(error: Option<StoredError>) -> StoreResult<ErrorColumns> {
    let Some(error) = error else {
        return Ok((None, None, None));
    };
    let data = match &error.data {
        Some(data) => Some(rows::json_text(data, "error data")?),
        None => None,
    };
    Ok((Some(error.code), Some(error.message), data))
}

/// A state transition, checked against the state machine and serialised on the caller's thread.
#[derive(Debug)]
pub(crate) struct PreparedTransition {
    pub(super) agent_id: String,
    pub(super) request_id: String,
    pub(super) from: &'static str,
    pub(super) to: &'static str,
    /// `to` ends the request's life and its outcome waits for the agent.
    pub(super) finishes: bool,
    pub(super) at: i64,
    pub(super) resolves: bool,
    pub(super) resolved_by: Option<String>,
    pub(super) result: Option<String>,
    pub(super) error_code: Option<i64>,
    pub(super) error_message: Option<String>,
    pub(super) error_data: Option<String>,
    pub(super) audit: Vec<PreparedAudit>,
}

impl PreparedTransition {
    pub(crate) fn new(transition: Transition) -> StoreResult<Self> {
        if !transition.from.can_transition_to(transition.to) {
            return Err(StoreError::InvalidTransition {
                from: transition.from,
                to: transition.to,
            });
        }
        let result = match &transition.result {
            Some(value) => Some(rows::json_text(value, "request result")?),
            None => None,
        };
        let (error_code, error_message, error_data) = error_columns(transition.error)?;
        Ok(Self {
            from: transition.from.as_str(),
            to: transition.to.as_str(),
            finishes: transition.to.is_terminal() && transition.kept_for_agent,
            at: transition.at.as_millis(),
            resolves: transition.from == RequestState::Pending,
            audit: PreparedAudit::prepare_all(transition.audit)?,
            agent_id: transition.agent_id,
            request_id: transition.request_id,
            resolved_by: transition.resolved_by,
            result,
            error_code,
            error_message,
            error_data,
        })
    }
}
