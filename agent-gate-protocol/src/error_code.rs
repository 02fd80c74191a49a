//! The JSON-RPC error-code table of the agent-gate protocol.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A JSON-RPC error code as used by agent-gate.
///
/// Known codes get their own variant; any other integer is preserved in
/// [`ErrorCode::Other`] so a newer gateway's codes survive a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `-32700`: the frame was not valid JSON.
    ParseError,
    /// `-32600`: the frame was not a valid request, or the arguments were bad or missing.
    InvalidRequest,
    /// `-32601`: the method (or tool) does not exist.
    MethodNotFound,
    /// `-32603`: the gateway failed internally (standard JSON-RPC code).
    InternalError,
    /// `-32001`: a human approver denied the request.
    DeniedByHuman,
    /// `-32002`: nobody decided before the approval timeout.
    ApprovalTimeout,
    /// `-32003`: a policy rule denied the request.
    DeniedByPolicy,
    /// `-32004`: the gateway tried to execute the tool and it failed.
    ExecutionFailed,
    /// `-32005`: the connection is not (or could not be) authenticated.
    NotAuthenticated,
    /// `-32006`: the agent sent too many requests.
    RateLimited,
    /// `-32007`: the agent withdrew the request (`cancel_request`) before a human decided.
    Cancelled,
    /// Any other code, preserved as received.
    Other(i64),
}

impl ErrorCode {
    /// Every known code, in table order (useful for exhaustive tests and docs).
    pub const KNOWN: [ErrorCode; 11] = [
        ErrorCode::ParseError,
        ErrorCode::InvalidRequest,
        ErrorCode::MethodNotFound,
        ErrorCode::InternalError,
        ErrorCode::DeniedByHuman,
        ErrorCode::ApprovalTimeout,
        ErrorCode::DeniedByPolicy,
        ErrorCode::ExecutionFailed,
        ErrorCode::NotAuthenticated,
        ErrorCode::RateLimited,
        ErrorCode::Cancelled,
    ];

    /// The integer sent on the wire.
    pub const fn code(self) -> i64 {
        match self {
            ErrorCode::ParseError => -32700,
            ErrorCode::InvalidRequest => -32600,
            ErrorCode::MethodNotFound => -32601,
            ErrorCode::InternalError => -32603,
            ErrorCode::DeniedByHuman => -32001,
            ErrorCode::ApprovalTimeout => -32002,
            ErrorCode::DeniedByPolicy => -32003,
            ErrorCode::ExecutionFailed => -32004,
            ErrorCode::NotAuthenticated => -32005,
            ErrorCode::RateLimited => -32006,
            ErrorCode::Cancelled => -32007,
            ErrorCode::Other(code) => code,
        }
    }

    /// The variant for a wire integer; unknown integers become [`ErrorCode::Other`].
    pub const fn from_code(code: i64) -> Self {
        match code {
            -32700 => ErrorCode::ParseError,
            -32600 => ErrorCode::InvalidRequest,
            -32601 => ErrorCode::MethodNotFound,
            -32603 => ErrorCode::InternalError,
            -32001 => ErrorCode::DeniedByHuman,
            -32002 => ErrorCode::ApprovalTimeout,
            -32003 => ErrorCode::DeniedByPolicy,
            -32004 => ErrorCode::ExecutionFailed,
            -32005 => ErrorCode::NotAuthenticated,
            -32006 => ErrorCode::RateLimited,
            -32007 => ErrorCode::Cancelled,
            other => ErrorCode::Other(other),
        }
    }

    /// A short human-readable name for the code (`"denied by policy"`).
    pub const fn description(self) -> &'static str {
        match self {
            ErrorCode::ParseError => "parse error",
            ErrorCode::InvalidRequest => "invalid request",
            ErrorCode::MethodNotFound => "method not found",
            ErrorCode::InternalError => "internal error",
            ErrorCode::DeniedByHuman => "denied by human",
            ErrorCode::ApprovalTimeout => "approval timed out",
            ErrorCode::DeniedByPolicy => "denied by policy",
            ErrorCode::ExecutionFailed => "execution failed",
            ErrorCode::NotAuthenticated => "not authenticated",
            ErrorCode::RateLimited => "rate limited",
            ErrorCode::Cancelled => "cancelled by the agent",
            ErrorCode::Other(_) => "unknown error code",
        }
    }
}

impl From<i64> for ErrorCode {
    fn from(code: i64) -> Self {
        ErrorCode::from_code(code)
    }
}

impl From<ErrorCode> for i64 {
    fn from(code: ErrorCode) -> Self {
        code.code()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.description())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.code())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        i64::deserialize(deserializer).map(ErrorCode::from_code)
    }
}
