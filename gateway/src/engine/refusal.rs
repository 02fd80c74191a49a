//! The error objects of refused calls (rate limits, unknown tools, invalid arguments, a
//! `request_id` reused for another call, store failures) and the audit details of policy
//! decisions: what the agent is told and what the audit log keeps.

use agent_gate_manifest::Manifest;
use agent_gate_protocol::{ErrorCode, ErrorObject};
use serde_json::{Value, json};

use crate::policy::{DecidedBy, Reason};
use crate::store::{RequestRecord, StoreError};

/// A store failure while handling a request (logged; the agent is told to retry).
pub(super) fn store_failure(error: &StoreError) -> ErrorObject {
    tracing::error!(%error, "store failure while handling a request");
    ErrorObject::new(
        ErrorCode::InternalError,
        "Internal error: the gateway could not record the request; retry later",
    )
}

/// `max_requests_per_minute` reached; retry after `retry_after` seconds.
pub(super) fn rate_limited(max: u32, retry_after: f64) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::RateLimited,
        format!("Rate limit exceeded: at most {max} requests per minute"),
    )
    .with_suggestion("wait and retry; retry_after says how long")
    .with_retry_after(retry_after)
    .with_details(json!({"limit": "max_requests_per_minute", "max": max}))
}

/// `max_pending_approvals` reached.
pub(super) fn too_many_pending(pending: usize, max: u32, retry_after: f64) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::RateLimited,
        format!("Too many pending approvals: {pending} of at most {max} are waiting for a human"),
    )
    .with_suggestion("wait until a pending approval is decided or expires")
    .with_retry_after(retry_after)
    .with_details(json!({"limit": "max_pending_approvals", "max": max, "pending": pending}))
}

/// A `request_id` already used for a different call.
pub(super) fn conflict(record: &RequestRecord) -> ErrorObject {
    ErrorObject::invalid_request(format!(
        "request_id `{}` was already used for a different call (tool `{}` with other arguments)",
        record.request_id, record.tool
    ))
    .with_suggestion(
        "use a new request_id for a new call; re-send the same tool and args to resume",
    )
    .with_details(json!({"request_id": record.request_id, "tool": record.tool}))
}

/// The rule that decided, as the audit log names it (`list[index] pattern -> action`).
pub(super) fn rule_name(reason: &Reason<'_>) -> Option<String> {
    match reason {
        Reason::Policy(explanation) => match explanation.decided_by {
            DecidedBy::Rule(r) => Some(format!(
                "{}[{}] {} -> {}",
                r.rule.list, r.rule.index, r.rule.pattern, r.rule.action
            )),
            DecidedBy::Fallback => None,
        },
        _ => None,
    }
}

/// What an agent is told of a policy denial: `Denied by policy: <the rule's description>`
/// (or its pattern, for a rule without one) and `error.data` with the rule's pattern and the
/// signature it matched.
pub(super) fn policy_denial(reason: &Reason<'_>, signature: &str) -> (String, Value) {
    if let Reason::Policy(explanation) = reason
        && let DecidedBy::Rule(r) = explanation.decided_by
    {
        let why = match &r.rule.description {
            Some(description) => description.clone(),
            None => format!("rule \"{}\"", r.rule.pattern),
        };
        return (
            format!("Denied by policy: {why}"),
            json!({"rule": r.rule.pattern.to_string(), "signature": signature}),
        );
    }
    (
        "Denied by policy".to_owned(),
        json!({"signature": signature}),
    )
}

/// The audit detail of a decision on a call that affects several things: every target and
/// every signature judged with its action. `None` for a call judged once.
pub(super) fn judgement_detail(decision: &crate::policy::Decision<'_>) -> Option<Value> {
    if decision.judged.len() < 2 && decision.targets.len() < 2 {
        return None;
    }
    let judged: Vec<Value> = decision
        .judged
        .iter()
        .map(|(signature, e)| json!({"signature": signature, "action": e.action.as_str()}))
        .collect();
    Some(json!({"targets": decision.targets, "judged": judged}))
}

/// A call refused before the policy could judge it: what the agent is told, and the audit
/// detail.
pub(super) fn invalid_call(
    manifest: &Manifest,
    tool: &str,
    reason: &Reason<'_>,
) -> (ErrorObject, Value) {
    match reason {
        Reason::UnknownTool { tool, nearest } => {
            let mut available: Vec<String> = nearest.clone();
            let all = manifest
                .nearest_tools(tool, manifest.tools().len())
                .into_iter()
                .map(str::to_owned);
            for name in all {
                if !available.contains(&name) {
                    available.push(name);
                }
            }
            for t in manifest.tools() {
                if !available.contains(&t.name) {
                    available.push(t.name.clone());
                }
            }
            let suggestion = match nearest.first() {
                Some(first) => format!("did you mean `{first}`? list_tools shows every tool"),
                None => "call list_tools to see the tools this gateway offers".to_owned(),
            };
            (
                ErrorObject::invalid_request(format!("Unknown tool `{tool}`"))
                    .with_suggestion(suggestion)
                    .with_details(json!({
                        "tool": tool,
                        "nearest": nearest,
                        "available_tools": available,
                    })),
                json!({"reason": "unknown_tool", "tool": tool}),
            )
        }
        Reason::InvalidArguments(e) => (
            ErrorObject::invalid_request(format!("Invalid arguments for `{}`: {e}", e.tool))
                .with_suggestion("fix the arguments; list_tools shows each tool's input_schema")
                .with_details(json!({"tool": e.tool, "errors": e.details()})),
            json!({"reason": "invalid_arguments", "tool": e.tool, "errors": e.details()}),
        ),
        Reason::Policy(_) => (
            ErrorObject::invalid_request("Invalid request"),
            json!({"reason": "invalid", "tool": tool}),
        ),
    }
}
