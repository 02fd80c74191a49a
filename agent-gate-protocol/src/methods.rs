//! The four methods of the protocol (`auth`, `tool_request`, `list_tools`,
//! `get_pending_results`) and the `request_status` notification, with typed
//! params and results.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::envelope::{ErrorObject, Id, Notification, Request};
use super::error_code::ErrorCode;
use super::request_id::validate_request_id;

/// `auth`: must be the first frame, within 10 s of connecting.
pub const METHOD_AUTH: &str = "auth";
/// `tool_request`: ask the gateway to run a tool.
pub const METHOD_TOOL_REQUEST: &str = "tool_request";
/// `list_tools`: the tools the gateway offers.
pub const METHOD_LIST_TOOLS: &str = "list_tools";
/// `get_pending_results`: results decided while the agent was away.
pub const METHOD_GET_PENDING_RESULTS: &str = "get_pending_results";
/// `cancel_request`: withdraw one of the agent's requests while it waits for a human.
pub const METHOD_CANCEL_REQUEST: &str = "cancel_request";
/// `request_status`: a notification about a request that waits for a human.
pub const NOTIFICATION_REQUEST_STATUS: &str = "request_status";
/// Every method a client may call.
pub const METHODS: [&str; 5] = [
    METHOD_AUTH,
    METHOD_TOOL_REQUEST,
    METHOD_LIST_TOOLS,
    METHOD_GET_PENDING_RESULTS,
    METHOD_CANCEL_REQUEST,
];
/// The error for a method not in [`METHODS`]; it lives here, next to the list it
/// suggests from, so the envelope types need not know the methods.
impl ErrorObject {
    /// `-32601` naming the unknown method, suggesting the [`METHODS`].
    pub fn method_not_found(method: &str) -> Self {
        ErrorObject::new(
            ErrorCode::MethodNotFound,
            format!("Method not found: {method:?}"),
        )
        .with_suggestion(format!("use one of the methods {}", METHODS.join(", ")))
    }
}

/// The id the client uses for its `auth` frame.
pub const AUTH_REQUEST_ID: &str = "auth-1";
/// `AuthResult::status` on success.
pub const STATUS_AUTHENTICATED: &str = "authenticated";

/// Params of `auth`: `{"token": "..."}`. `Debug` hides the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthParams {
    /// The agent's gateway token.
    pub token: String,
}

impl fmt::Debug for AuthParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthParams")
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Result of `auth`: `{"status": "authenticated", "request_ids": "idempotent"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResult {
    /// `"authenticated"` on success.
    pub status: String,
    /// `"idempotent"` from agent-gate: a re-sent `request_id` attaches to its request and
    /// never runs twice. Upstream's gateway (agentpass) does not send it and ignores
    /// `request_id`, so a client must not re-send a call that may have run there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_ids: Option<String>,
}

/// The `request_ids` value of a gateway that honours `request_id`.
pub const REQUEST_IDS_IDEMPOTENT: &str = "idempotent";

impl AuthResult {
    /// agent-gate's answer: `{"status": "authenticated", "request_ids": "idempotent"}`.
    pub fn authenticated() -> Self {
        AuthResult {
            status: STATUS_AUTHENTICATED.to_owned(),
            request_ids: Some(REQUEST_IDS_IDEMPOTENT.to_owned()),
        }
    }

    /// True when the gateway says a re-sent `request_id` never runs twice.
    pub fn honours_request_ids(&self) -> bool {
        self.request_ids.as_deref() == Some(REQUEST_IDS_IDEMPOTENT)
    }

    /// True when the status says `"authenticated"`.
    pub fn is_authenticated(&self) -> bool {
        self.status == STATUS_AUTHENTICATED
    }
}

/// Params of `tool_request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolRequestParams {
    /// The tool name, for example `"ha_get_state"`.
    pub tool: String,
    /// The tool's arguments (a JSON object; absent means `{}`).
    #[serde(default)]
    pub args: Map<String, Value>,
    /// The client's idempotency key (1–64 of `[A-Za-z0-9_-]`); see
    /// [`validate_request_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ToolRequestParams {
    /// Params for `tool` with `args` and no request id.
    pub fn new(tool: impl Into<String>, args: Map<String, Value>) -> Self {
        ToolRequestParams {
            tool: tool.into(),
            args,
            request_id: None,
        }
    }

    /// Set the idempotency key.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }
}

/// The status of a finished request, as in upstream's result objects.
///
/// Unknown statuses are preserved in [`ResultStatus::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResultStatus {
    /// `"executed"`: the tool ran and `data` is its output.
    Executed,
    /// `"denied"`: a human or a policy said no; `data` is the message.
    Denied,
    /// `"error"`: it failed or timed out; `data` is the message.
    Error,
    /// Any other status string.
    Other(String),
}

impl ResultStatus {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            ResultStatus::Executed => "executed",
            ResultStatus::Denied => "denied",
            ResultStatus::Error => "error",
            ResultStatus::Other(s) => s,
        }
    }

    fn from_wire(s: String) -> Self {
        match s.as_str() {
            "executed" => ResultStatus::Executed,
            "denied" => ResultStatus::Denied,
            "error" => ResultStatus::Error,
            _ => ResultStatus::Other(s),
        }
    }
}

impl Serialize for ResultStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ResultStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(ResultStatus::from_wire)
    }
}

/// Result of `tool_request`: `{"status": "executed", "data": {...}, "request_id": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// `"executed"`.
    pub status: ResultStatus,
    /// The tool's output (a JSON object from the gateway).
    #[serde(default)]
    pub data: Value,
    /// The request's id at the gateway (the client's key, or one the gateway assigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ToolResult {
    /// An `executed` result with `data`.
    pub fn executed(data: Value, request_id: impl Into<String>) -> Self {
        ToolResult {
            status: ResultStatus::Executed,
            data,
            request_id: Some(request_id.into()),
        }
    }
}

/// One tool as listed by `list_tools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// The tool name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// The service it belongs to (for example `"home_assistant"`).
    #[serde(default)]
    pub service: String,
    /// Its arguments, in the gateway's descriptive form.
    #[serde(default)]
    pub args: Value,
    /// A JSON Schema of the `args` object.
    #[serde(default)]
    pub input_schema: Value,
    /// A JSON Schema of a successful call's `data`, when the tool declares its output shape
    /// (agent-gate gateways; upstream lists none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// What the tool's manifest says about its effects, when it says anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<ToolAnnotations>,
}

/// Hints about a tool's effects, from its manifest (`read_only`, `destructive`, `idempotent`,
/// `open_world`). Hints for clients and models only: the gateway's policy never trusts them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolAnnotations {
    /// It changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// It may destroy or overwrite something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destructive: Option<bool>,
    /// Calling it twice with the same arguments does no more than once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent: Option<bool>,
    /// It reaches things outside the gateway's own world.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_world: Option<bool>,
}

/// Result of `list_tools`: `{"tools": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListToolsResult {
    /// The tools the gateway offers to this agent.
    pub tools: Vec<ToolInfo>,
}

/// The upstream-shaped outcome inside a pending result: `{"status", "data"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOutcome {
    /// `executed`, `denied` or `error`.
    pub status: ResultStatus,
    /// The tool output when executed, otherwise the message.
    #[serde(default)]
    pub data: Value,
}

/// One result decided while the agent was away.
///
/// Upstream-compatible both ways: it is written with upstream's `tool_name` and `args` beside
/// our `tool`, `signature` and typed `error`; it is read from our rows and from upstream's
/// (where `result` and `args` are JSON text and the tool is only under `tool_name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "PendingResultWire")]
pub struct PendingResult {
    /// The request's id (the client's idempotency key when it sent one).
    pub request_id: String,
    /// The tool that was requested.
    #[serde(default)]
    pub tool: String,
    /// The tool that was requested, under upstream's name (the same as `tool`).
    #[serde(default)]
    pub tool_name: String,
    /// The call's arguments (`null` when the gateway did not say).
    #[serde(default)]
    pub args: Value,
    /// The request's signature, for example `ha_call_service(light.turn_on, light.bedroom)`.
    #[serde(default)]
    pub signature: String,
    /// The upstream-shaped outcome.
    pub result: PendingOutcome,
    /// For typed clients: the error a live call would have received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
}

/// A `get_pending_results` row as either gateway writes it.
#[derive(Deserialize)]
struct PendingResultWire {
    request_id: String,
    #[serde(default)]
    tool: String,
    #[serde(default)]
    tool_name: String,
    #[serde(default, deserialize_with = "json_or_json_text")]
    args: Value,
    #[serde(default)]
    signature: String,
    #[serde(deserialize_with = "outcome_or_json_text")]
    result: PendingOutcome,
    #[serde(default)]
    error: Option<ErrorObject>,
}

impl From<PendingResultWire> for PendingResult {
    fn from(wire: PendingResultWire) -> Self {
        let tool = if wire.tool.is_empty() {
            wire.tool_name.clone()
        } else {
            wire.tool
        };
        let tool_name = if wire.tool_name.is_empty() {
            tool.clone()
        } else {
            wire.tool_name
        };
        PendingResult {
            request_id: wire.request_id,
            tool,
            tool_name,
            args: wire.args,
            signature: wire.signature,
            result: wire.result,
            error: wire.error,
        }
    }
}

/// A JSON value, or JSON text holding one (upstream stores `args` as text).
fn json_or_json_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(text) => Ok(serde_json::from_str(&text).unwrap_or(Value::String(text))),
        other => Ok(other),
    }
}

/// The outcome object, or JSON text holding it (upstream's `result` column).
fn outcome_or_json_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<PendingOutcome, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(text) => serde_json::from_str(&text).map_err(|e| {
            serde::de::Error::custom(format!("`result` is text but not a JSON outcome: {e}"))
        }),
        other => serde_json::from_value(other).map_err(serde::de::Error::custom),
    }
}

impl PendingResult {
    /// The outcome as a live call would have seen it: `Ok(data)` when executed,
    /// otherwise the error (from `error`, or built from the upstream shape).
    pub fn outcome(&self) -> Result<&Value, ErrorObject> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        match &self.result.status {
            ResultStatus::Executed => Ok(&self.result.data),
            status => {
                let message = match &self.result.data {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let code = match status {
                    ResultStatus::Denied => ErrorCode::DeniedByHuman,
                    _ => ErrorCode::ExecutionFailed,
                };
                Err(ErrorObject::new(code, message))
            }
        }
    }
}

/// Result of `get_pending_results`: `{"results": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingResults {
    /// Every undelivered result for this agent.
    pub results: Vec<PendingResult>,
}

/// The status in a `request_status` notification. Unknown values are preserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    /// `"awaiting_approval"`: a human has been asked.
    AwaitingApproval,
    /// Any other status string.
    Other(String),
}

impl RequestStatus {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            RequestStatus::AwaitingApproval => "awaiting_approval",
            RequestStatus::Other(s) => s,
        }
    }
}

impl Serialize for RequestStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RequestStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(match s.as_str() {
            "awaiting_approval" => RequestStatus::AwaitingApproval,
            _ => RequestStatus::Other(s),
        })
    }
}

/// Params of the `request_status` notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestStatusParams {
    /// The request this is about.
    pub request_id: String,
    /// Its new status.
    pub status: RequestStatus,
    /// When the approval times out, as an RFC 3339 UTC timestamp
    /// (`"2026-01-01T12:15:00Z"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl RequestStatusParams {
    /// An `awaiting_approval` status for `request_id` expiring at `expires_at`.
    pub fn awaiting_approval(request_id: impl Into<String>, expires_at: impl Into<String>) -> Self {
        RequestStatusParams {
            request_id: request_id.into(),
            status: RequestStatus::AwaitingApproval,
            expires_at: Some(expires_at.into()),
        }
    }

    /// This status as a notification frame.
    pub fn into_notification(self) -> Notification<RequestStatusParams> {
        Notification::new(NOTIFICATION_REQUEST_STATUS, self)
    }
}

/// Params of the methods that take none: `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyParams {}

/// Params of `cancel_request`: `{"request_id": ...}`, one of the agent's own requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequestParams {
    /// The request to withdraw.
    pub request_id: String,
}

/// Result of `cancel_request`.
///
/// `cancelled: true` when this call withdrew the request (it is `cancelled` now, approvers
/// are told, a call waiting for it ends with `-32007`); otherwise the request had already
/// ended or been decided, `state` says where it is and `message` what happened. A request of
/// another agent, or none at all, is an error (`-32600`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequestResult {
    /// The request.
    pub request_id: String,
    /// Whether this call cancelled it.
    pub cancelled: bool,
    /// Its state now (`cancelled`, `approved`, `executing`, `executed`, `failed`, `denied`,
    /// `expired`).
    pub state: String,
    /// What happened, when it was not cancelled by this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Typed constructors for the client's requests.
impl Request<AuthParams> {
    /// `{"jsonrpc":"2.0","method":"auth","params":{"token":...},"id":"auth-1"}`.
    pub fn auth(token: impl Into<String>) -> Self {
        Request::new(
            AUTH_REQUEST_ID,
            METHOD_AUTH,
            AuthParams {
                token: token.into(),
            },
        )
    }
}

impl Request<ToolRequestParams> {
    /// A `tool_request` frame.
    pub fn tool_request(id: impl Into<Id>, params: ToolRequestParams) -> Self {
        Request::new(id, METHOD_TOOL_REQUEST, params)
    }
}

impl Request<CancelRequestParams> {
    /// A `cancel_request` frame.
    pub fn cancel_request(id: impl Into<Id>, request_id: impl Into<String>) -> Self {
        Request::new(
            id,
            METHOD_CANCEL_REQUEST,
            CancelRequestParams {
                request_id: request_id.into(),
            },
        )
    }
}

impl Request<EmptyParams> {
    /// A `list_tools` frame.
    pub fn list_tools(id: impl Into<Id>) -> Self {
        Request::new(id, METHOD_LIST_TOOLS, EmptyParams {})
    }

    /// A `get_pending_results` frame.
    pub fn get_pending_results(id: impl Into<Id>) -> Self {
        Request::new(id, METHOD_GET_PENDING_RESULTS, EmptyParams {})
    }
}

/// A received request, decoded into one of the protocol's methods (server side).
#[derive(Debug, Clone, PartialEq)]
pub enum MethodCall {
    /// `auth`.
    Auth(AuthParams),
    /// `tool_request` (its `request_id`, if any, has been validated).
    ToolRequest(ToolRequestParams),
    /// `list_tools`.
    ListTools,
    /// `get_pending_results`.
    GetPendingResults,
    /// `cancel_request` (its `request_id` has been validated).
    CancelRequest(CancelRequestParams),
}

impl Request {
    /// Decode the method and its params. Unknown methods give `-32601`; bad params
    /// (missing or mistyped fields, an invalid `request_id`) give `-32600` with a
    /// message naming the problem.
    pub fn method_call(&self) -> Result<MethodCall, ErrorObject> {
        fn params<'a, T: Deserialize<'a>>(
            method: &str,
            params: &'a Map<String, Value>,
        ) -> Result<T, ErrorObject> {
            T::deserialize(params).map_err(|e| {
                ErrorObject::invalid_request(format!("Invalid params for {method}: {e}"))
            })
        }
        match self.method.as_str() {
            METHOD_AUTH => params(METHOD_AUTH, &self.params).map(MethodCall::Auth),
            METHOD_TOOL_REQUEST => {
                let p: ToolRequestParams = params(METHOD_TOOL_REQUEST, &self.params)?;
                if p.tool.is_empty() {
                    return Err(ErrorObject::invalid_request(
                        "Invalid params for tool_request: \"tool\" must not be empty",
                    ));
                }
                if let Some(rid) = &p.request_id {
                    validate_request_id(rid).map_err(|e| {
                        ErrorObject::invalid_request(format!(
                            "Invalid params for tool_request: {e}"
                        ))
                    })?;
                }
                Ok(MethodCall::ToolRequest(p))
            }
            METHOD_LIST_TOOLS => Ok(MethodCall::ListTools),
            METHOD_GET_PENDING_RESULTS => Ok(MethodCall::GetPendingResults),
            METHOD_CANCEL_REQUEST => {
                let p: CancelRequestParams = params(METHOD_CANCEL_REQUEST, &self.params)?;
                validate_request_id(&p.request_id).map_err(|e| {
                    ErrorObject::invalid_request(format!("Invalid params for cancel_request: {e}"))
                })?;
                Ok(MethodCall::CancelRequest(p))
            }
            other => Err(ErrorObject::method_not_found(other)),
        }
    }
}
