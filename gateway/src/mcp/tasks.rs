//! The Tasks extension (`io.modelcontextprotocol/tasks`) for clients that declare it: a call
//! that waits for a human becomes a task whose id is its request id. The pending request is
//! stored before the task is returned, and `tasks/get` reads the stored request, so a task
//! survives a gateway restart; `tasks/cancel` withdraws the request (approvers are told it was
//! cancelled). A task is the agent's own: another agent's id is unknown to it.

use agent_gate_protocol::ErrorCode;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolResult, CreateTaskResult, DetailedTask, GetTaskResult, JsonObject, Task, TaskPayload,
    TaskStatus,
};
use serde_json::{Value, json};

use super::Shared;
use super::call::{mark_received, outcome_result};
use crate::approvals::{CANCELLED_BY_AGENT, DecideOutcome};
use crate::delivery::{Outcome, Timestamp, rfc3339};
use crate::store::{RequestRecord, RequestState};

/// How often clients are asked to poll a task.
const POLL_INTERVAL_MS: u64 = 2000;

fn waiting_message(request_id: &str, expires_at: Option<Timestamp>) -> String {
    match expires_at {
        Some(at) => format!(
            "waiting for a human to approve request {request_id} (until {})",
            rfc3339(at)
        ),
        None => format!("request {request_id} was approved and is running"),
    }
}

/// The task of a call that waits (just stored, so created and updated now).
pub(super) fn created(request_id: &str, expires_at: Option<Timestamp>) -> CreateTaskResult {
    let now = rfc3339(Timestamp::now());
    let task = Task::new(request_id, TaskStatus::Working, now.clone(), now)
        .with_status_message(waiting_message(request_id, expires_at))
        .with_poll_interval_ms(POLL_INTERVAL_MS);
    CreateTaskResult::new(task)
}

fn unknown(task_id: &str) -> McpError {
    McpError::invalid_params(
        format!("Unknown task `{task_id}`: no request of this agent has that id"),
        Some(json!({"taskId": task_id})),
    )
}

fn store_error(error: &crate::store::StoreError) -> McpError {
    tracing::error!(%error, "store failure while reading a task");
    McpError::internal_error("the gateway could not read the task; retry later", None)
}

async fn record(shared: &Shared, agent: &str, task_id: &str) -> Result<RequestRecord, McpError> {
    shared
        .engine
        .store
        .get_request(agent, task_id)
        .await
        .map_err(|e| store_error(&e))?
        .ok_or_else(|| unknown(task_id))
}

fn cancelled_by_agent(record: &RequestRecord) -> bool {
    record.state == RequestState::Cancelled
}

fn as_object(result: &CallToolResult) -> JsonObject {
    match serde_json::to_value(result) {
        Ok(Value::Object(map)) => map,
        _ => JsonObject::new(),
    }
}

/// `tasks/get`: the stored request as a task (its outcome once it has one, marked received).
pub(super) async fn get(
    shared: &Shared,
    agent: &str,
    task_id: &str,
) -> Result<GetTaskResult, McpError> {
    let record = record(shared, agent, task_id).await?;
    let created = rfc3339(record.created_at);
    let updated = rfc3339(record.resolved_at.unwrap_or(record.updated_at));
    let base = Task::new(task_id, TaskStatus::Working, created, updated)
        .with_poll_interval_ms(POLL_INTERVAL_MS);
    let detailed = if cancelled_by_agent(&record) {
        mark_received(shared, agent, task_id).await;
        DetailedTask::new(
            base.with_status_message(CANCELLED_BY_AGENT),
            TaskPayload::Cancelled,
        )
    } else if let Some(outcome) = Outcome::of_record(&record) {
        mark_received(shared, agent, task_id).await;
        let message = match &outcome {
            Outcome::Executed(_) => "executed".to_owned(),
            Outcome::Failed { message, .. } => message.clone(),
        };
        let result = as_object(&outcome_result(task_id, outcome));
        DetailedTask::new(
            base.with_status_message(message),
            TaskPayload::Completed { result },
        )
    } else {
        let expires_at = match record.state {
            RequestState::Pending => record.expires_at,
            _ => None,
        };
        DetailedTask::new(
            base.with_status_message(waiting_message(task_id, expires_at)),
            TaskPayload::Working,
        )
    };
    Ok(GetTaskResult::new(detailed))
}

/// `tasks/cancel`: withdraws the request while it waits for a human.
pub(super) async fn cancel(shared: &Shared, agent: &str, task_id: &str) -> Result<(), McpError> {
    match shared.engine.cancel(agent, task_id).await {
        DecideOutcome::Won => Ok(()),
        DecideOutcome::NotFound => Err(unknown(task_id)),
        DecideOutcome::AlreadyDecided | DecideOutcome::Expired | DecideOutcome::Cancelled => {
            let record = record(shared, agent, task_id).await?;
            let state = if record.state == RequestState::Approved
                || record.state == RequestState::Executing
            {
                "was approved and runs"
            } else {
                "has already ended"
            };
            Err(McpError::invalid_params(
                format!(
                    "Task `{task_id}` cannot be cancelled: it {state}; tasks/get shows its outcome"
                ),
                Some(json!({"taskId": task_id, "code": ErrorCode::InvalidRequest.code()})),
            ))
        }
    }
}
