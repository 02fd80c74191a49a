//! The SDK's error type: every failure carries a kind, an optional JSON-RPC
//! code, a message, a suggestion and optional details.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::protocol::{ErrorCode, ErrorObject};

/// Who denied a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeniedBy {
    /// A human approver pressed Deny (`-32001`).
    Human,
    /// A policy rule denied it (`-32003`).
    Policy,
}

/// What kind of failure an [`Error`] is; `match` on it to decide what to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request was denied (`-32001` by a human, `-32003` by policy).
    Denied {
        /// Who said no.
        by: DeniedBy,
    },
    /// Nobody approved in time (`-32002`), or no answer arrived within the
    /// call's timeout (no code).
    Timeout,
    /// The gateway could not be reached, the connection was lost for good, or
    /// the client was closed.
    Connection,
    /// The token was missing or rejected, or the gateway did not answer `auth`
    /// properly (`-32005`).
    Authentication,
    /// The request was invalid: bad arguments or configuration (`-32600`, or
    /// checked locally before sending).
    Validation,
    /// Too many requests (`-32006`); wait `retry_after` if the gateway said how long.
    RateLimited {
        /// How long the gateway asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The gateway tried to run the tool and it failed (`-32004`, `-32603`, or an
    /// unknown code).
    Execution,
    /// The gateway sent something that does not follow the protocol (`-32700`,
    /// or a malformed frame).
    Protocol,
    /// The tool does not exist; [`Error::available_tools`] lists the gateway's
    /// tools, nearest name first.
    UnknownTool,
    /// The agent withdrew the request ([`AgentGateClient::cancel_request`](crate::AgentGateClient::cancel_request),
    /// `-32007`) before a human decided; nothing ran.
    Cancelled,
}

impl ErrorKind {
    fn label(&self) -> &'static str {
        match self {
            ErrorKind::Denied {
                by: DeniedBy::Human,
            } => "denied by a human approver",
            ErrorKind::Denied {
                by: DeniedBy::Policy,
            } => "denied by policy",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Connection => "connection error",
            ErrorKind::Authentication => "authentication failed",
            ErrorKind::Validation => "invalid request",
            ErrorKind::RateLimited { .. } => "rate limited",
            ErrorKind::Execution => "execution failed",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::UnknownTool => "unknown tool",
            ErrorKind::Cancelled => "cancelled by the agent",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Inner {
    kind: ErrorKind,
    code: Option<ErrorCode>,
    message: String,
    suggestion: Option<String>,
    details: Option<Value>,
    available_tools: Vec<String>,
    rule: Option<String>,
    reason: Option<String>,
    execution: Option<ExecutionFailure>,
}

/// An error from the agent-gate client or the gateway.
///
/// ```
/// use agent_gate::{DeniedBy, Error, ErrorKind};
///
/// fn explain(err: &Error) -> String {
///     match err.kind() {
///         ErrorKind::Denied { by: DeniedBy::Human } => "the approver said no".into(),
///         ErrorKind::Denied { by: DeniedBy::Policy } => "a rule forbids this".into(),
///         ErrorKind::Timeout => "nobody answered in time".into(),
///         ErrorKind::UnknownTool => format!("try one of {:?}", err.available_tools()),
///         _ => err.to_string(),
///     }
/// }
/// let err = Error::validation("entity_id is required", Some("pass entity_id".into()));
/// assert_eq!(explain(&err), err.to_string());
/// ```
#[derive(Clone, PartialEq, thiserror::Error)]
#[error("{}", Self::render(inner))]
pub struct Error {
    inner: Box<Inner>,
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        let mut d = f.debug_struct("Error");
        d.field("kind", &i.kind)
            .field("code", &i.code.map(ErrorCode::code))
            .field("message", &i.message);
        if let Some(s) = &i.suggestion {
            d.field("suggestion", s);
        }
        if let Some(v) = &i.details {
            d.field("details", v);
        }
        if !i.available_tools.is_empty() {
            d.field("available_tools", &i.available_tools);
        }
        d.finish()
    }
}

impl Error {
    fn render(inner: &Inner) -> String {
        let mut out = format!("{}: {}", inner.kind.label(), inner.message);
        if let Some(code) = inner.code {
            out.push_str(&format!(" (code {})", code.code()));
        }
        if let Some(s) = &inner.suggestion {
            out.push_str(" — ");
            out.push_str(s);
        }
        out
    }

    /// A new error of `kind` with `message` and no code.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                code: None,
                message: message.into(),
                suggestion: None,
                details: None,
                available_tools: Vec::new(),
                rule: None,
                reason: None,
                execution: None,
            }),
        }
    }

    /// A local validation failure (for example from generated typed methods):
    /// nothing was sent to the gateway.
    pub fn validation(message: impl Into<String>, suggestion: Option<String>) -> Self {
        let mut e = Error::new(ErrorKind::Validation, message);
        e.inner.suggestion = suggestion;
        e
    }

    /// A connection failure with `message` and `suggestion`.
    pub fn connection(message: impl Into<String>, suggestion: impl Into<String>) -> Self {
        Error::new(ErrorKind::Connection, message).with_suggestion(suggestion)
    }

    /// A call whose outcome cannot be known: it was sent, the connection was lost before its
    /// answer, and the gateway does not honour `request_id` (or has not shown that it does),
    /// so re-sending it could run it a second time. The client did not re-send it.
    pub(crate) fn outcome_unknown(url: &str, evidence: &str) -> Self {
        let mut e = Error::new(
            ErrorKind::Execution,
            format!(
                "outcome unknown: the connection to {url} was lost after the call was sent, and {evidence}, so re-sending it could run it twice; it was not re-sent"
            ),
        )
        .with_suggestion(
            "check whether the action happened (for example in Home Assistant) before calling again",
        );
        e.inner.execution = Some(ExecutionFailure {
            kind: "outcome_unknown".to_owned(),
            status: None,
            may_have_executed: true,
            service_message: None,
        });
        e
    }

    /// Set the suggestion.
    pub fn with_suggestion(mut self, suggestion: impl Into<String>) -> Self {
        self.inner.suggestion = Some(suggestion.into());
        self
    }

    /// Set the details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.inner.details = Some(details);
        self
    }

    pub(crate) fn with_code(mut self, code: ErrorCode) -> Self {
        self.inner.code = Some(code);
        self
    }

    pub(crate) fn with_available_tools(mut self, tools: Vec<String>) -> Self {
        self.inner.available_tools = tools;
        self
    }

    /// Translate an error object received from the gateway.
    ///
    /// `-32601` and `-32600` become [`ErrorKind::UnknownTool`] when the details
    /// list the available tools or the message says the tool is unknown.
    pub fn from_error_object(error: ErrorObject) -> Self {
        let retry_after = error
            .retry_after()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let tools = error.details().map(tools_from_details).unwrap_or_default();
        let mentions_unknown_tool = error.message.to_ascii_lowercase().contains("unknown tool");
        let kind = match error.code {
            ErrorCode::DeniedByHuman => ErrorKind::Denied {
                by: DeniedBy::Human,
            },
            ErrorCode::DeniedByPolicy => ErrorKind::Denied {
                by: DeniedBy::Policy,
            },
            ErrorCode::ApprovalTimeout => ErrorKind::Timeout,
            ErrorCode::NotAuthenticated => ErrorKind::Authentication,
            ErrorCode::RateLimited => ErrorKind::RateLimited { retry_after },
            ErrorCode::Cancelled => ErrorKind::Cancelled,
            ErrorCode::InvalidRequest | ErrorCode::MethodNotFound
                if !tools.is_empty() || mentions_unknown_tool =>
            {
                ErrorKind::UnknownTool
            }
            ErrorCode::InvalidRequest => ErrorKind::Validation,
            ErrorCode::MethodNotFound | ErrorCode::ParseError => ErrorKind::Protocol,
            ErrorCode::ExecutionFailed | ErrorCode::InternalError | ErrorCode::Other(_) => {
                ErrorKind::Execution
            }
        };
        let suggestion = error
            .suggestion()
            .map(str::to_owned)
            .or_else(|| default_suggestion(&kind).map(str::to_owned));
        let details = error.details().cloned();
        let rule = error.rule().map(str::to_owned);
        let reason = error.reason().map(str::to_owned);
        let execution = error.data.as_deref().and_then(|data| {
            data.kind.as_ref().map(|kind| ExecutionFailure {
                kind: kind.clone(),
                status: data.status,
                may_have_executed: data.may_have_executed.unwrap_or(true),
                service_message: data.service_message.clone(),
            })
        });
        Error {
            inner: Box::new(Inner {
                kind,
                code: Some(error.code),
                message: error.message,
                suggestion,
                details,
                available_tools: tools,
                rule,
                reason,
                execution,
            }),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> &ErrorKind {
        &self.inner.kind
    }

    /// The JSON-RPC code when the gateway sent one; `None` for failures detected
    /// by the client (connection lost, local timeout, local validation).
    pub fn code(&self) -> Option<ErrorCode> {
        self.inner.code
    }

    /// The message (from the gateway, or the client's own).
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// What to do about it, if known.
    pub fn suggestion(&self) -> Option<&str> {
        self.inner.suggestion.as_deref()
    }

    /// Machine-readable details, if any.
    pub fn details(&self) -> Option<&Value> {
        self.inner.details.as_ref()
    }

    /// For a policy denial: the pattern of the rule that denied (`error.data.rule`).
    pub fn rule(&self) -> Option<&str> {
        self.inner.rule.as_deref()
    }

    /// For a human's denial: why, when they said (`error.data.reason`).
    pub fn reason(&self) -> Option<&str> {
        self.inner.reason.as_deref()
    }

    /// For [`ErrorKind::Execution`]: how the service call failed, when the gateway said.
    pub fn execution_failure(&self) -> Option<&ExecutionFailure> {
        self.inner.execution.as_ref()
    }

    /// For [`ErrorKind::UnknownTool`]: the gateway's tools, nearest name first.
    pub fn available_tools(&self) -> &[String] {
        &self.inner.available_tools
    }

    /// True for denials by a human or a policy.
    pub fn is_denied(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Denied { .. })
    }

    /// True for approval timeouts and local call timeouts.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Timeout)
    }

    /// True for connection failures.
    pub fn is_connection(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Connection)
    }
}

/// How a service call failed (`error.data` of a `-32004`), see [`Error::execution_failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionFailure {
    /// `timeout`, `connect`, `http`, `decode` or `interrupted` (from the gateway), or
    /// `outcome_unknown` (from the client: lost before the answer, and not re-sent because
    /// the gateway does not honour `request_id`).
    pub kind: String,
    /// The service's HTTP status, when it answered.
    pub status: Option<u16>,
    /// True when the request may have reached the service, so the action may have happened
    /// (true when the gateway did not say).
    pub may_have_executed: bool,
    /// The service's own message (its response body, at most 4 KiB), when it gave one.
    pub service_message: Option<String>,
}

fn default_suggestion(kind: &ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::Authentication => Some(
            "check the token: pass it with ClientBuilder::token or set AGENT_GATE_TOKEN to the agent's token from the gateway's config.yaml",
        ),
        ErrorKind::RateLimited { .. } => Some("wait a moment and retry, or send fewer requests"),
        _ => None,
    }
}

/// Tool names from `details`: `{"available_tools": [...]}` (or `"tools"`), or a
/// bare array of names.
pub(crate) fn tools_from_details(details: &Value) -> Vec<String> {
    let list = match details {
        Value::Array(a) => Some(a),
        Value::Object(o) => o
            .get("available_tools")
            .or_else(|| o.get("tools"))
            .and_then(Value::as_array),
        _ => None,
    };
    list.map(|a| {
        a.iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("name").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Sort `tools` so the names nearest to `wanted` come first.
pub(crate) fn rank_tools(wanted: &str, tools: &mut [String]) {
    tools.sort_by(|a, b| {
        let da = strsim::jaro_winkler(wanted, a);
        let db = strsim::jaro_winkler(wanted, b);
        db.total_cmp(&da).then_with(|| a.cmp(b))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes_map_to_kinds() {
        let kind = |code: ErrorCode| {
            Error::from_error_object(ErrorObject::new(code, "m"))
                .kind()
                .clone()
        };
        assert_eq!(
            kind(ErrorCode::DeniedByHuman),
            ErrorKind::Denied {
                by: DeniedBy::Human
            }
        );
        assert_eq!(
            kind(ErrorCode::DeniedByPolicy),
            ErrorKind::Denied {
                by: DeniedBy::Policy
            }
        );
        assert_eq!(kind(ErrorCode::ApprovalTimeout), ErrorKind::Timeout);
        assert_eq!(kind(ErrorCode::ExecutionFailed), ErrorKind::Execution);
        assert_eq!(kind(ErrorCode::NotAuthenticated), ErrorKind::Authentication);
        assert_eq!(
            kind(ErrorCode::RateLimited),
            ErrorKind::RateLimited { retry_after: None }
        );
        assert_eq!(kind(ErrorCode::InvalidRequest), ErrorKind::Validation);
        assert_eq!(kind(ErrorCode::MethodNotFound), ErrorKind::Protocol);
        assert_eq!(kind(ErrorCode::ParseError), ErrorKind::Protocol);
        assert_eq!(kind(ErrorCode::Other(-1)), ErrorKind::Execution);
    }

    #[test]
    fn unknown_tool_and_retry_after_are_read_from_data() {
        let e = Error::from_error_object(
            ErrorObject::new(ErrorCode::InvalidRequest, "bad tool")
                .with_details(json!({"available_tools": ["a", {"name": "b"}]})),
        );
        assert_eq!(e.kind(), &ErrorKind::UnknownTool);
        assert_eq!(e.available_tools(), ["a", "b"]);
        let e = Error::from_error_object(
            ErrorObject::new(ErrorCode::RateLimited, "slow").with_retry_after(2.5),
        );
        assert_eq!(
            e.kind(),
            &ErrorKind::RateLimited {
                retry_after: Some(Duration::from_millis(2500))
            }
        );
        assert!(e.to_string().contains("wait"), "{e}");
    }

    #[test]
    fn ranking_puts_the_nearest_name_first() {
        let mut tools = vec![
            "ha_call_service".to_owned(),
            "ha_get_states".to_owned(),
            "ha_get_state".to_owned(),
            "ha_render_template".to_owned(),
        ];
        rank_tools("ha_get_stat", &mut tools);
        assert_eq!(tools[0], "ha_get_state");
        assert_eq!(tools[1], "ha_get_states");
    }

    #[test]
    fn display_says_what_and_how() {
        let e = Error::from_error_object(
            ErrorObject::new(ErrorCode::DeniedByPolicy, "Denied by policy: x")
                .with_suggestion("ask the admin"),
        );
        assert_eq!(
            e.to_string(),
            "denied by policy: Denied by policy: x (code -32003) — ask the admin"
        );
    }
}
