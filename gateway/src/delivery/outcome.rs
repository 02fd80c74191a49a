//! How a request ended ([`Outcome`]), read from its stored row, and the
//! `get_pending_results` row of a finished request (upstream-compatible; docs/ARCHITECTURE.md,
//! "Wire protocol").

use agent_gate_protocol::{ErrorCode, ErrorObject, PendingOutcome, PendingResult, ResultStatus};
use serde_json::{Map, Value};

use crate::store::{RequestRecord, RequestState};

/// How a request ended, as the agent sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Executed; the tool's data.
    Executed(Value),
    /// Denied, expired or failed.
    Failed {
        /// -32001, -32002, -32003 or -32004.
        code: ErrorCode,
        /// What happened.
        message: String,
        /// Structured `error.data` members (the denying rule, the kind of a failure), if any.
        data: Option<Value>,
    },
}

impl Outcome {
    /// The outcome of a stored request, if its life is over.
    pub(crate) fn of_record(record: &RequestRecord) -> Option<Outcome> {
        let default_code = match record.state {
            RequestState::Executed => {
                return Some(Outcome::Executed(
                    record.result.clone().unwrap_or(Value::Object(Map::new())),
                ));
            }
            RequestState::Failed => ErrorCode::ExecutionFailed,
            RequestState::Denied => ErrorCode::DeniedByPolicy,
            RequestState::Expired => ErrorCode::ApprovalTimeout,
            RequestState::Cancelled => ErrorCode::Cancelled,
            RequestState::Pending | RequestState::Approved | RequestState::Executing => {
                return None;
            }
        };
        let (code, message, data) = match &record.error {
            Some(e) => (
                ErrorCode::from_code(e.code),
                e.message.clone(),
                e.data.clone(),
            ),
            None => (default_code, default_code.description().to_owned(), None),
        };
        Some(Outcome::Failed {
            code,
            message,
            data,
        })
    }

    /// The error object of a failed outcome.
    pub(crate) fn error_object(
        code: ErrorCode,
        message: String,
        data: Option<&Value>,
    ) -> ErrorObject {
        let error = ErrorObject::new(code, message);
        match data {
            Some(data) => error.with_data_members(data),
            None => error,
        }
    }
}

/// The `get_pending_results` entry of a finished request (upstream's `result` shape,
/// `tool_name` and `args`, plus our `tool`, `signature` and typed `error`).
pub(crate) fn pending_result(record: &RequestRecord) -> Option<PendingResult> {
    let outcome = Outcome::of_record(record)?;
    let (result, error) = match outcome {
        Outcome::Executed(data) => (
            PendingOutcome {
                status: ResultStatus::Executed,
                data,
            },
            None,
        ),
        Outcome::Failed {
            code,
            message,
            data,
        } => {
            let status = match code {
                ErrorCode::DeniedByHuman
                | ErrorCode::DeniedByPolicy
                | ErrorCode::ApprovalTimeout
                | ErrorCode::Cancelled => ResultStatus::Denied,
                _ => ResultStatus::Error,
            };
            (
                PendingOutcome {
                    status,
                    data: Value::from(message.clone()),
                },
                Some(Outcome::error_object(code, message, data.as_ref())),
            )
        }
    };
    Some(PendingResult {
        request_id: record.request_id.clone(),
        tool: record.tool.clone(),
        tool_name: record.tool.clone(),
        args: record.args.clone(),
        signature: record.signature.clone(),
        result,
        error,
    })
}
