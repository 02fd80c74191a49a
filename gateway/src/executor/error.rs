//! What can go wrong when the gateway executes a tool call or checks a service, with
//! messages that say what happened and what to change. No message ever contains a
//! service credential or a URL (a URL can carry a query-parameter token).

use std::time::Duration;

use agent_gate_manifest::ArgsError;

/// Why building the [`Executor`](super::Executor) failed (at start-up).
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The service URL cannot be parsed, is not http(s), or has a query or fragment.
    #[error(
        "services.{service}.url is not a valid http:// or https:// URL without a query; write it like `http://homeassistant.local:8123`"
    )]
    InvalidUrl {
        /// The service name.
        service: String,
    },
    /// A header credential has a name or value HTTP does not allow.
    #[error(
        "services.{service}.auth: the header name or value is not valid in HTTP (no spaces or control characters in the name, no newlines in the value)"
    )]
    InvalidHeader {
        /// The service name.
        service: String,
    },
    /// The health check's method is not an HTTP method.
    #[error(
        "services.{service}.health.method `{method}` is not an HTTP method; use GET, HEAD or POST"
    )]
    InvalidHealthMethod {
        /// The service name.
        service: String,
        /// The configured method.
        method: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot set up the HTTP client for service `{service}`: {detail}")]
    Client {
        /// The service name.
        service: String,
        /// What failed (credential- and URL-free).
        detail: String,
    },
}

/// Why a tool call could not be executed, or failed at the service.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    /// The arguments do not match the tool's manifest entry.
    #[error(transparent)]
    InvalidArguments(#[from] ArgsError),
    /// The tool's service is not in `config.yaml`.
    #[error(
        "tool `{tool}` uses service `{service}`, which is not configured; add `services.{service}` (url, auth) to config.yaml"
    )]
    UnknownService {
        /// The tool.
        tool: String,
        /// The service it names.
        service: String,
    },
    /// The service answered 401 or 403: it does not accept the gateway's credentials.
    #[error(
        "service `{service}` rejected the gateway's credentials (HTTP {status}); check services.{service}.auth (the token) in config.yaml"
    )]
    Unauthorized {
        /// The service name.
        service: String,
        /// 401 or 403.
        status: u16,
    },
    /// The service answered with an error status (4xx or 5xx).
    #[error("{message}")]
    Status {
        /// The service name.
        service: String,
        /// The HTTP status.
        status: u16,
        /// The configured message for this status (from `services.<name>.errors`), or a
        /// default naming the status with an excerpt of the body.
        message: String,
        /// The service's own message in full (the `message` of a JSON error body, else the
        /// body), secret-free and at most [`SERVICE_MESSAGE_BYTES`](super::SERVICE_MESSAGE_BYTES).
        service_message: Option<String>,
    },
    /// The service answered with a redirect, which the gateway does not follow (it would
    /// carry the credentials to another address).
    #[error(
        "service `{service}` answered with a redirect (HTTP {status}); set services.{service}.url to the address the service really answers on"
    )]
    Redirect {
        /// The service name.
        service: String,
        /// The HTTP status.
        status: u16,
    },
    /// A success status, but a body the tool cannot use (not JSON, or too large).
    #[error(
        "service `{service}` answered HTTP {status} but {problem}; check that services.{service}.url points at the service's API"
    )]
    InvalidResponse {
        /// The service name.
        service: String,
        /// The HTTP status.
        status: u16,
        /// What is wrong with the body (with a short, sanitized excerpt).
        problem: String,
    },
    /// No answer within the service's timeout. The service may still have acted.
    #[error(
        "service `{service}` did not answer within {} (services.{service}.timeout); the action may or may not have happened",
        format_duration(*timeout)
    )]
    Timeout {
        /// The service name.
        service: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The connection could not be made (refused, unknown host, TLS failure).
    #[error(
        "cannot connect to service `{service}` ({detail}); check services.{service}.url in config.yaml and that the service is running"
    )]
    Connect {
        /// The service name.
        service: String,
        /// The cause (credential- and URL-free).
        detail: String,
    },
    /// The request failed in transit for another reason.
    #[error("request to service `{service}` failed ({detail})")]
    Transport {
        /// The service name.
        service: String,
        /// The cause (credential- and URL-free).
        detail: String,
    },
}

impl ExecutionError {
    /// A stable, machine-readable name of the error kind (for the `details` of a
    /// JSON-RPC error and for the audit log): `invalid_arguments`, `unknown_service`,
    /// `unauthorized`, `http_status`, `redirect`, `invalid_response`, `timeout`,
    /// `connect` or `transport`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidArguments(_) => "invalid_arguments",
            Self::UnknownService { .. } => "unknown_service",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Status { .. } => "http_status",
            Self::Redirect { .. } => "redirect",
            Self::InvalidResponse { .. } => "invalid_response",
            Self::Timeout { .. } => "timeout",
            Self::Connect { .. } => "connect",
            Self::Transport { .. } => "transport",
        }
    }

    /// The HTTP status the service answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { status, .. }
            | Self::Status { status, .. }
            | Self::Redirect { status, .. }
            | Self::InvalidResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the service may have performed the action despite the error: the request
    /// reached it and the outcome is unknown (timeout, broken connection, 5xx) or it
    /// succeeded but the answer was unusable. Never for errors raised before sending
    /// (arguments, configuration, connection refused) or for 4xx refusals.
    pub fn may_have_executed(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Transport { .. } | Self::InvalidResponse { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            Self::InvalidArguments(_)
            | Self::UnknownService { .. }
            | Self::Unauthorized { .. }
            | Self::Redirect { .. }
            | Self::Connect { .. } => false,
        }
    }
}

impl ExecutionError {
    /// How the call failed, as agents see it in `error.data.kind`: `timeout`, `connect`
    /// (no connection, or it broke), `http` (the service answered with an error status),
    /// `decode` (a success status with an unusable body) or `invalid` (refused before
    /// anything was sent: arguments or configuration).
    pub fn wire_kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Connect { .. } | Self::Transport { .. } => "connect",
            Self::Unauthorized { .. } | Self::Status { .. } | Self::Redirect { .. } => "http",
            Self::InvalidResponse { .. } => "decode",
            Self::InvalidArguments(_) | Self::UnknownService { .. } => "invalid",
        }
    }

    /// The service's own message, when it answered with one.
    pub fn service_message(&self) -> Option<&str> {
        match self {
            Self::Status {
                service_message, ..
            } => service_message.as_deref(),
            _ => None,
        }
    }

    /// The structured `error.data` members of the failure: `kind`, `status` (when the
    /// service answered), `may_have_executed` and `service_message` (when it gave one).
    pub fn data(&self) -> serde_json::Value {
        let mut data = serde_json::Map::new();
        data.insert("kind".to_owned(), self.wire_kind().into());
        if let Some(status) = self.status() {
            data.insert("status".to_owned(), status.into());
        }
        data.insert(
            "may_have_executed".to_owned(),
            self.may_have_executed().into(),
        );
        if let Some(message) = self.service_message() {
            data.insert("service_message".to_owned(), message.into());
        }
        serde_json::Value::Object(data)
    }
}

/// `10 s`, `250 ms`, `1.5 s`.
pub(crate) fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{} s", duration.as_secs())
    } else if duration.as_secs() == 0 {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}
