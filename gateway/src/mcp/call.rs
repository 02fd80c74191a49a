//! `tools/call`: a call through the engine and its answer as an MCP tool result.
//!
//! - executed → `structuredContent` (when the result is a JSON object) and the JSON as text;
//! - denied by the policy or a human, timed out, failed, refused (rate limit, invalid
//!   arguments) → `isError: true` with the reason as text and `{error, request_id}` as
//!   structured content, so the model can adapt;
//! - an unknown tool → the protocol error `-32602`;
//! - waiting for a human → held up to `mcp.hold_seconds` with progress notifications (when the
//!   client sent a progress token); then `isError: true` saying it waits, with its
//!   `request_id` and expiry. Calling again with the same arguments attaches to the same
//!   request (`ToolCall::same_call_attaches`): never a second request, never a second run.
//!
//! An outcome answered here is marked received, so it is not answered again.

use std::time::Duration;

use agent_gate_protocol::{ErrorCode, ErrorObject};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
    ProgressNotificationParam,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::Shared;
use super::catalog::REQUEST_STATUS_TOOL;
use crate::delivery::{Outcome, Progress, Timestamp, Waiting, rfc3339};
use crate::engine::{Submitted, ToolCall};
use crate::store::RequestState;

/// How often a held call reports progress: every 5 s, or ten times in a shorter hold.
pub(crate) fn progress_every(hold: Duration) -> Duration {
    (hold / 10).clamp(Duration::from_millis(200), Duration::from_secs(5))
}

/// Handles one `tools/call` of `agent`.
pub(super) async fn call_tool(
    shared: &Shared,
    agent: &str,
    request: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, McpError> {
    let args = request.arguments.unwrap_or_default();
    let name = request.name.to_string();
    if name == REQUEST_STATUS_TOOL {
        return request_status(shared, agent, &args).await.map(Into::into);
    }
    if shared.engine.manifest().tool(&name).is_none() {
        return Err(McpError::invalid_params(
            format!("Unknown tool `{name}`: tools/list shows the tools this gateway offers"),
            Some(json!({"tool": name})),
        ));
    }
    let call = ToolCall {
        tool: name,
        args,
        request_id: None,
        same_call_attaches: true,
    };
    let Submitted {
        request_id,
        progress,
        kept,
    } = match shared.engine.submit(agent, call).await {
        Ok(submitted) => submitted,
        Err(refused) => return refusal(refused).map(Into::into),
    };
    let result = match progress {
        Progress::Finished(outcome) if !kept => outcome_result(&request_id, outcome),
        Progress::Finished(outcome) => finished(shared, agent, &request_id, outcome).await,
        // A client that declared Tasks gets a task at once (the pending row is stored).
        Progress::Waiting(waiting) if wants_tasks(ctx) => {
            let expires_at = waiting.awaiting_approval;
            return Ok(super::tasks::created(&request_id, expires_at).into());
        }
        Progress::Waiting(waiting) => hold(shared, agent, &request_id, waiting, ctx).await?,
    };
    Ok(result.into())
}

/// Whether the client declared the Tasks extension on this request.
fn wants_tasks(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.client_capabilities()
        .is_some_and(|c| c.supports_tasks())
}

/// A refusal that belongs to no stored request, as a tool error (the model can fix the
/// arguments or wait), except an internal error, which is a protocol error.
pub(crate) fn refusal(error: ErrorObject) -> Result<CallToolResult, McpError> {
    if error.code == ErrorCode::InternalError {
        return Err(McpError::internal_error(error.message, None));
    }
    let mut text = error.message.clone();
    if let Some(suggestion) = error.suggestion() {
        text.push_str(&format!(" ({suggestion})"));
    }
    let structured = json!({"error": error});
    Ok(tool_error(text, structured))
}

/// A tool result with `isError: true`, `text` as its content and `structured` as its
/// structured content.
pub(crate) fn tool_error(text: String, structured: Value) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    result.structured_content = Some(structured);
    result
}

/// Marks the outcome of `request_id` received by `agent`, and waits for the write: a call with
/// the same arguments made after the answer is a new request, not this one again.
pub(super) async fn mark_received(shared: &Shared, agent: &str, request_id: &str) {
    let marking = shared
        .engine
        .delivery
        .mark_delivered(agent, vec![request_id.to_owned()]);
    if let Some(marking) = marking {
        let _ = marking.await;
    }
}

/// The answer of a finished call, marked received first.
async fn finished(
    shared: &Shared,
    agent: &str,
    request_id: &str,
    outcome: Outcome,
) -> CallToolResult {
    mark_received(shared, agent, request_id).await;
    outcome_result(request_id, outcome)
}

/// The tool result of a finished call.
pub(crate) fn outcome_result(request_id: &str, outcome: Outcome) -> CallToolResult {
    match outcome {
        Outcome::Executed(data @ Value::Object(_)) => CallToolResult::structured(data),
        Outcome::Executed(data) => {
            CallToolResult::success(vec![ContentBlock::text(data.to_string())])
        }
        Outcome::Failed {
            code,
            message,
            data,
        } => {
            let error = Outcome::error_object(code, message.clone(), data.as_ref());
            tool_error(message, json!({"error": error, "request_id": request_id}))
        }
    }
}

/// What a call still waiting for a human answers when the hold ends.
fn still_waiting(request_id: &str, expires_at: Option<Timestamp>) -> CallToolResult {
    still_waiting_until(request_id, expires_at.map(rfc3339).as_deref())
}

/// [`still_waiting`] with the expiry as RFC 3339 text (as the WebSocket protocol carries it).
pub(crate) fn still_waiting_until(request_id: &str, expires_at: Option<&str>) -> CallToolResult {
    let (status, text) = match expires_at {
        Some(at) => (
            "awaiting_approval",
            format!(
                "This call is waiting for a human to approve it (request_id {request_id}, until \
                 {at}). It has not run. To get its outcome, call this tool again with the same \
                 arguments (that attaches to this request: it never runs twice), or call \
                 {REQUEST_STATUS_TOOL} with request_id \"{request_id}\".",
            ),
        ),
        None => (
            "executing",
            format!(
                "This call was approved and is running (request_id {request_id}). To get its \
                 outcome, call this tool again with the same arguments, or call \
                 {REQUEST_STATUS_TOOL} with request_id \"{request_id}\"."
            ),
        ),
    };
    let mut structured = Map::new();
    structured.insert("status".to_owned(), Value::from(status));
    structured.insert("request_id".to_owned(), Value::from(request_id));
    if let Some(at) = expires_at {
        structured.insert("expires_at".to_owned(), Value::from(at));
    }
    tool_error(text, Value::Object(structured))
}

/// Waits for the outcome of a call up to the hold, reporting progress.
async fn hold(
    shared: &Shared,
    agent: &str,
    request_id: &str,
    waiting: Waiting,
    ctx: &RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let expires_at = waiting.awaiting_approval;
    let started = Instant::now();
    let deadline = started + shared.hold;
    let token = ctx.meta.get_progress_token();
    let outcome = waiting.outcome();
    tokio::pin!(outcome);
    let every = progress_every(shared.hold);
    let mut ticks = tokio::time::interval_at(started + every, every);
    loop {
        tokio::select! {
            outcome = &mut outcome => {
                return Ok(match outcome {
                    Some(outcome) => finished(shared, agent, request_id, outcome).await,
                    None => still_waiting(request_id, expires_at),
                });
            }
            _ = ticks.tick() => {
                if let Some(token) = token.clone() {
                    let waited = started.elapsed().as_secs_f64().floor();
                    let message = match expires_at {
                        Some(at) => format!("waiting for a human to approve request {request_id} (until {})", rfc3339(at)),
                        None => format!("request {request_id} approved, running"),
                    };
                    let progress = ProgressNotificationParam::new(token, waited)
                        .with_total(shared.hold.as_secs_f64())
                        .with_message(message);
                    // A client that went away just gets no progress; the call stays recorded.
                    let _ = ctx.peer.notify_progress(progress).await;
                }
            }
            () = tokio::time::sleep_until(deadline) => return Ok(still_waiting(request_id, expires_at)),
            () = ctx.ct.cancelled() => return Ok(still_waiting(request_id, expires_at)),
            () = shared.engine.shutdown.cancelled() => return Ok(still_waiting(request_id, expires_at)),
        }
    }
}

/// The built-in `gateway_request_status {request_id}`: the request's outcome (marked
/// received), or that it still waits.
async fn request_status(
    shared: &Shared,
    agent: &str,
    args: &Map<String, Value>,
) -> Result<CallToolResult, McpError> {
    let Some(request_id) = args.get("request_id").and_then(Value::as_str) else {
        return Ok(tool_error(
            format!("{REQUEST_STATUS_TOOL} needs a request_id (a string)"),
            json!({"error": {"message": "missing request_id"}}),
        ));
    };
    let record = shared
        .engine
        .store
        .get_request(agent, request_id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "store failure while reading a request's status");
            McpError::internal_error("the gateway could not read the request; retry later", None)
        })?;
    let Some(record) = record else {
        return Ok(tool_error(
            format!("No request {request_id:?} of this agent is known to the gateway"),
            json!({"error": {"message": "unknown request_id"}, "request_id": request_id}),
        ));
    };
    if let Some(outcome) = Outcome::of_record(&record) {
        return Ok(finished(shared, agent, request_id, outcome).await);
    }
    let mut status = still_waiting(
        request_id,
        match record.state {
            RequestState::Pending => record.expires_at,
            _ => None,
        },
    );
    // The status query itself succeeded.
    status.is_error = Some(false);
    Ok(status)
}
