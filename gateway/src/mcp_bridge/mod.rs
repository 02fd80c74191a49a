//! The stdio MCP bridge (`agent-gate mcp`): a local MCP server on stdin/stdout (`rmcp`'s stdio
//! transport) that forwards to a remote gateway as an agent, with the SDK's
//! [`AgentGateClient`] (the WebSocket protocol, which reconnects and resumes by `request_id`),
//! for MCP clients that only launch stdio servers (Claude Desktop).
//!
//! - `tools/list`: the gateway's `list_tools` (name, description, input schema) and the
//!   built-in `gateway_request_status`.
//! - `tools/call`: answered as the HTTP front answers (`crate::mcp::call`'s mapping: structured
//!   content on success, `isError` with the reason on a denial or failure, `-32602` for an
//!   unknown tool or params that do not fit, see `crate::mcp::malformed`). A call waiting for
//!   a human is held up to the hold with progress notifications, then answered "still
//!   waiting" with its `request_id`.
//! - The open calls: each call is one SDK stream, driven by a task of its own so that it keeps
//!   following the request (across reconnections) after the hold has answered "still waiting".
//!   A call with the same tool and arguments (the store's digest) attaches to the open call
//!   instead of sending a new request; when the SDK gave up on it (connection lost for good,
//!   local timeout), the call is sent again with the same `request_id`, which the gateway
//!   attaches to the stored request. An outcome handed to the MCP client closes the open call:
//!   the same arguments afterwards are a new request, as on the HTTP front.
//!
//! Logs go to stderr (stdout is the protocol); the token is never logged.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agent_gate::protocol::{ErrorCode, ErrorObject, PendingResult, RequestStatus, ToolInfo};
use agent_gate::{AgentGateClient, CallEvent, CallOptions, ClientBuilder, ConnectionState};
use agent_gate::{Error, ErrorKind};
use futures_util::StreamExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CustomRequest, CustomResult,
    Implementation, JsonObject, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ProtocolVersion, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Map, Value, json};
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use crate::delivery::Outcome;
use crate::mcp::call::{outcome_result, progress_every, refusal, still_waiting_until, tool_error};
use crate::mcp::catalog::{REQUEST_STATUS_TOOL, request_status_tool};
use crate::mcp::malformed::{Served, unserved};
use crate::mcp::{INSTRUCTIONS, PROTOCOL_VERSIONS};

/// Why the bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The MCP client did not complete the start of the session.
    #[error("the MCP client did not start a session on stdin/stdout: {0}")]
    Initialize(String),
    /// The MCP session ended abnormally.
    #[error("the MCP session on stdin/stdout failed: {0}")]
    Session(String),
}

/// Where an open call stands, as its task last heard from the gateway.
#[derive(Debug, Clone)]
enum CallState {
    /// Sent; the gateway has not said anything yet (or the connection is being restored).
    Sent,
    /// A human has been asked, until `expires_at` (RFC 3339) if the gateway said.
    AwaitingApproval { expires_at: Option<String> },
    /// Approved (or another status the gateway reported): running.
    Running,
    /// The call ended: the tool's data or the error.
    Done(Result<Value, Error>),
}

/// One call of the bridge still open: sent to the gateway, its outcome not yet handed to the
/// MCP client.
#[derive(Debug)]
struct OpenCall {
    tool: String,
    request_id: String,
    state: watch::Receiver<CallState>,
}

impl OpenCall {
    /// Whether the SDK gave up on this call without an answer from the gateway (so the
    /// request may still be pending there): a call with its arguments re-sends its
    /// `request_id`.
    fn gave_up(&self) -> bool {
        matches!(&*self.state.borrow(), CallState::Done(Err(e)) if gave_up(e))
    }
}

/// An SDK error that is not the gateway's answer: the connection was lost for good, or the
/// local deadline passed.
fn gave_up(error: &Error) -> bool {
    error.code().is_none() && matches!(error.kind(), ErrorKind::Connection | ErrorKind::Timeout)
}

/// The connection to the gateway: one SDK client, replaced by a fresh one when it has given up
/// reconnecting (so a gateway that was down for longer than the retries is picked up again).
struct Upstream {
    builder: ClientBuilder,
    client: Mutex<AgentGateClient>,
}

impl Upstream {
    async fn client(&self) -> Result<AgentGateClient, Error> {
        let mut client = self.client.lock().await;
        if matches!(
            client.connection_state(),
            ConnectionState::Failed(_) | ConnectionState::Closed
        ) {
            tracing::info!(url = %client.config().url(), "reconnecting to the gateway");
            *client = self.builder.clone().connect().await?;
        }
        Ok(client.clone())
    }
}

struct Inner {
    upstream: Upstream,
    hold: Duration,
    /// Open calls by the digest of their tool and arguments.
    open: Mutex<HashMap<String, Arc<OpenCall>>>,
    /// Results fetched with `get_pending_results` for `gateway_request_status`, by request id,
    /// until they are asked for.
    fetched: Mutex<HashMap<String, PendingResult>>,
}

/// The bridge's MCP server handler (cheap to clone).
#[derive(Clone)]
pub struct Bridge {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("hold", &self.inner.hold)
            .finish_non_exhaustive()
    }
}

/// A fresh idempotency key for a call of the bridge.
fn new_request_id() -> String {
    format!(
        "mcp-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// The MCP tool of a gateway tool as `list_tools` describes it.
fn mcp_tool(info: ToolInfo) -> Tool {
    let schema: JsonObject = match info.input_schema {
        Value::Object(map) => map,
        _ => {
            let mut map = Map::new();
            map.insert("type".to_owned(), Value::from("object"));
            map
        }
    };
    let mut tool = Tool::new(info.name, info.description, Arc::new(schema));
    if let Some(Value::Object(output)) = info.output_schema {
        tool = tool.with_raw_output_schema(Arc::new(output));
    }
    if let Some(hints) = info.annotations {
        let mut annotations = ToolAnnotations::new();
        annotations.read_only_hint = hints.read_only;
        annotations.destructive_hint = hints.destructive;
        annotations.idempotent_hint = hints.idempotent;
        annotations.open_world_hint = hints.open_world;
        tool = tool.annotate(annotations);
    }
    tool
}

/// The error object an SDK error was made from (as far as the SDK keeps it).
fn error_object(error: &Error, code: ErrorCode) -> ErrorObject {
    let mut data = Map::new();
    if let Some(suggestion) = error.suggestion() {
        data.insert("suggestion".to_owned(), Value::from(suggestion));
    }
    if let Some(details) = error.details() {
        data.insert("details".to_owned(), details.clone());
    }
    if let Some(rule) = error.rule() {
        data.insert("rule".to_owned(), Value::from(rule));
    }
    if let Some(failure) = error.execution_failure() {
        data.insert("kind".to_owned(), Value::from(failure.kind.clone()));
        if let Some(status) = failure.status {
            data.insert("status".to_owned(), Value::from(status));
        }
        data.insert(
            "may_have_executed".to_owned(),
            Value::from(failure.may_have_executed),
        );
        if let Some(message) = &failure.service_message {
            data.insert("service_message".to_owned(), Value::from(message.clone()));
        }
    }
    let object = ErrorObject::new(code, error.message());
    if data.is_empty() {
        object
    } else {
        object.with_data_members(&Value::Object(data))
    }
}

/// What the MCP client gets when the bridge cannot reach the gateway (the call may be pending
/// there: the same arguments again attach to it).
fn unreachable(error: &Error, request_id: Option<&str>) -> CallToolResult {
    let again = match request_id {
        Some(id) => format!(
            " The call (request_id {id}) may be waiting at the gateway: call this tool again \
             with the same arguments later; that attaches to it and never runs it twice."
        ),
        None => " Nothing was sent: try again later.".to_owned(),
    };
    tool_error(
        format!("The agent-gate bridge cannot reach the gateway: {error}.{again}"),
        json!({"error": {"message": error.message()}, "request_id": request_id}),
    )
}

/// The MCP answer of a call's final event.
fn final_result(
    tool: &str,
    request_id: &str,
    result: &Result<Value, Error>,
) -> Result<CallToolResult, McpError> {
    let error = match result {
        Ok(data) => return Ok(outcome_result(request_id, Outcome::Executed(data.clone()))),
        Err(error) => error,
    };
    if matches!(error.kind(), ErrorKind::UnknownTool) {
        return Err(McpError::invalid_params(
            format!("Unknown tool `{tool}`: tools/list shows the tools this gateway offers"),
            Some(json!({"tool": tool})),
        ));
    }
    match error.code() {
        Some(
            code @ (ErrorCode::DeniedByHuman
            | ErrorCode::DeniedByPolicy
            | ErrorCode::ApprovalTimeout
            | ErrorCode::ExecutionFailed),
        ) => {
            let object = error_object(error, code);
            let data = object
                .data
                .as_deref()
                .and_then(|d| serde_json::to_value(d).ok());
            Ok(outcome_result(
                request_id,
                Outcome::Failed {
                    code,
                    message: object.message,
                    data,
                },
            ))
        }
        Some(code) => refusal(error_object(error, code)),
        None if gave_up(error) => Ok(unreachable(error, Some(request_id))),
        None => refusal(error_object(error, ErrorCode::InvalidRequest)),
    }
}

/// The outcome of a result fetched with `get_pending_results`.
fn pending_outcome(result: &PendingResult) -> Result<Value, Error> {
    match &result.error {
        Some(error) => Err(Error::from_error_object(error.clone())),
        None => Ok(result.result.data.clone()),
    }
}

impl Bridge {
    /// A bridge over `client` (connected with `builder`, which reconnects it when it has given
    /// up), holding calls that wait for a human up to `hold`.
    pub fn new(client: AgentGateClient, builder: ClientBuilder, hold: Duration) -> Self {
        Bridge {
            inner: Arc::new(Inner {
                upstream: Upstream {
                    builder,
                    client: Mutex::new(client),
                },
                hold,
                open: Mutex::new(HashMap::new()),
                fetched: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Serves MCP on stdin/stdout until the client closes them.
    pub async fn serve_stdio(self) -> Result<(), BridgeError> {
        let running = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| BridgeError::Initialize(e.to_string()))?;
        running
            .waiting()
            .await
            .map_err(|e| BridgeError::Session(e.to_string()))?;
        Ok(())
    }

    /// Starts the call `tool(args)` with `request_id`: a task follows its SDK stream and
    /// publishes where it stands.
    fn start(client: &AgentGateClient, tool: &str, args: Value, request_id: String) -> OpenCall {
        let (tx, rx) = watch::channel(CallState::Sent);
        let mut events = client.tool_request_stream(
            tool.to_owned(),
            args,
            CallOptions::new().request_id(request_id.clone()),
        );
        tokio::spawn(async move {
            let last = loop {
                match events.next().await {
                    Some(CallEvent::AwaitingApproval { expires_at, .. }) => {
                        let _ = tx.send(CallState::AwaitingApproval { expires_at });
                    }
                    Some(CallEvent::Status { status, .. }) => {
                        if status != RequestStatus::AwaitingApproval {
                            let _ = tx.send(CallState::Running);
                        }
                    }
                    Some(CallEvent::Result(data)) => break Ok(data),
                    Some(CallEvent::Error(error)) => break Err(error),
                    Some(_) => {}
                    None => {
                        break Err(Error::connection(
                            "the call ended without an answer from the gateway",
                            "call the tool again with the same arguments",
                        ));
                    }
                }
            };
            let _ = tx.send(CallState::Done(last));
        });
        OpenCall {
            tool: tool.to_owned(),
            request_id,
            state: rx,
        }
    }

    /// The open call of `tool(args)`: the one already open, or a new one (re-sending the
    /// `request_id` of one the SDK gave up on).
    async fn open_call(
        &self,
        digest: &str,
        tool: &str,
        args: Map<String, Value>,
    ) -> Result<Arc<OpenCall>, CallToolResult> {
        let mut open = self.inner.open.lock().await;
        let previous = match open.get(digest) {
            Some(call) if !call.gave_up() => return Ok(Arc::clone(call)),
            Some(call) => Some(call.request_id.clone()),
            None => None,
        };
        let client = match self.inner.upstream.client().await {
            Ok(client) => client,
            Err(error) => return Err(unreachable(&error, previous.as_deref())),
        };
        let resent = previous.is_some();
        let request_id = previous.unwrap_or_else(new_request_id);
        if resent {
            tracing::info!(%request_id, tool, "re-sending a call the connection lost");
        }
        let call = Arc::new(Self::start(&client, tool, Value::Object(args), request_id));
        open.insert(digest.to_owned(), Arc::clone(&call));
        Ok(call)
    }

    /// Closes the open call `call` (under `digest`) once its outcome is handed over.
    async fn close(&self, digest: &str, call: &Arc<OpenCall>) {
        let mut open = self.inner.open.lock().await;
        if open.get(digest).is_some_and(|c| Arc::ptr_eq(c, call)) {
            open.remove(digest);
        }
    }

    async fn call(
        &self,
        request: CallToolRequestParams,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let args = request.arguments.unwrap_or_default();
        let tool = request.name.to_string();
        if tool == REQUEST_STATUS_TOOL {
            return self.request_status(&args).await;
        }
        let digest = crate::store::args_digest(&tool, &Value::Object(args.clone()));
        let call = match self.open_call(&digest, &tool, args).await {
            Ok(call) => call,
            Err(answer) => return Ok(answer),
        };
        let answer = self.hold(&call, ctx).await;
        if let Hold::Done(result) = &answer {
            let keep = matches!(result, Err(e) if gave_up(e));
            if !keep {
                self.close(&digest, &call).await;
            }
        }
        answer.into_result(&call)
    }

    /// Waits for `call`'s outcome up to the hold, reporting progress.
    async fn hold(&self, call: &OpenCall, ctx: &RequestContext<RoleServer>) -> Hold {
        let mut state = call.state.clone();
        let hold = self.inner.hold;
        let started = Instant::now();
        let deadline = started + hold;
        let token = ctx.meta.get_progress_token();
        let every = progress_every(hold);
        let mut ticks = tokio::time::interval_at(started + every, every);
        loop {
            let now = state.borrow_and_update().clone();
            if let CallState::Done(result) = now {
                return Hold::Done(result);
            }
            tokio::select! {
                changed = state.changed() => {
                    if changed.is_err() && !matches!(&*state.borrow(), CallState::Done(_)) {
                        return Hold::Done(Err(Error::connection(
                            "the bridge stopped following the call",
                            "call the tool again with the same arguments",
                        )));
                    }
                }
                _ = ticks.tick() => {
                    if let Some(token) = token.clone() {
                        let waited = started.elapsed().as_secs_f64().floor();
                        let message = match &*state.borrow() {
                            CallState::AwaitingApproval { expires_at: Some(at) } => format!(
                                "waiting for a human to approve request {} (until {at})",
                                call.request_id
                            ),
                            CallState::AwaitingApproval { expires_at: None } => format!(
                                "waiting for a human to approve request {}",
                                call.request_id
                            ),
                            CallState::Running => format!("request {} approved, running", call.request_id),
                            _ => format!("request {} sent, waiting for the gateway", call.request_id),
                        };
                        let progress = ProgressNotificationParam::new(token, waited)
                            .with_total(hold.as_secs_f64())
                            .with_message(message);
                        // A client that went away just gets no progress; the call stays open.
                        let _ = ctx.peer.notify_progress(progress).await;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return Hold::Waiting(state.borrow().clone()),
                () = ctx.ct.cancelled() => return Hold::Waiting(state.borrow().clone()),
            }
        }
    }

    /// The built-in `gateway_request_status {request_id}`: an open call's state or outcome,
    /// else a result the gateway kept for this agent (`get_pending_results`).
    async fn request_status(&self, args: &JsonObject) -> Result<CallToolResult, McpError> {
        let Some(request_id) = args.get("request_id").and_then(Value::as_str) else {
            return Ok(tool_error(
                format!("{REQUEST_STATUS_TOOL} needs a request_id (a string)"),
                json!({"error": {"message": "missing request_id"}}),
            ));
        };
        let found = {
            let open = self.inner.open.lock().await;
            open.iter()
                .find(|(_, call)| call.request_id == request_id)
                .map(|(digest, call)| (digest.clone(), Arc::clone(call)))
        };
        if let Some((digest, call)) = found {
            let now = call.state.borrow().clone();
            return match now {
                CallState::Done(result) => {
                    if !matches!(&result, Err(e) if gave_up(e)) {
                        self.close(&digest, &call).await;
                    }
                    final_result(&call.tool, request_id, &result)
                }
                waiting => {
                    let mut status = Hold::Waiting(waiting).into_result(&call)?;
                    // The status query itself succeeded.
                    status.is_error = Some(false);
                    Ok(status)
                }
            };
        }
        if let Some(result) = self.fetched(request_id).await? {
            return final_result(&result.tool, request_id, &pending_outcome(&result));
        }
        Ok(tool_error(
            format!(
                "No request {request_id:?} is open in this bridge or waiting at the gateway to be \
                 fetched (an outcome already handed over is not kept)"
            ),
            json!({"error": {"message": "unknown request_id"}, "request_id": request_id}),
        ))
    }

    /// A result of `request_id` fetched from the gateway (once: it is removed).
    async fn fetched(&self, request_id: &str) -> Result<Option<PendingResult>, McpError> {
        let mut fetched = self.inner.fetched.lock().await;
        if let Some(result) = fetched.remove(request_id) {
            return Ok(Some(result));
        }
        let client = self.inner.upstream.client().await.map_err(|e| {
            McpError::internal_error(format!("the bridge cannot reach the gateway: {e}"), None)
        })?;
        let results = client.get_pending_results().await.map_err(|e| {
            McpError::internal_error(
                format!("the gateway did not list its pending results: {e}"),
                None,
            )
        })?;
        for result in results {
            fetched.insert(result.request_id.clone(), result);
        }
        Ok(fetched.remove(request_id))
    }
}

/// How a held call ended.
enum Hold {
    /// With the call's final event.
    Done(Result<Value, Error>),
    /// With the hold over (or the MCP client gone) while the call still waits.
    Waiting(CallState),
}

impl Hold {
    fn into_result(self, call: &OpenCall) -> Result<CallToolResult, McpError> {
        let id = &call.request_id;
        match self {
            Hold::Done(result) => final_result(&call.tool, id, &result),
            Hold::Waiting(CallState::AwaitingApproval {
                expires_at: Some(at),
            }) => Ok(still_waiting_until(id, Some(&at))),
            Hold::Waiting(CallState::AwaitingApproval { expires_at: None }) => Ok(tool_error(
                format!(
                    "This call is waiting for a human to approve it (request_id {id}). It has \
                     not run. To get its outcome, call this tool again with the same arguments \
                     (that attaches to this request: it never runs twice), or call \
                     {REQUEST_STATUS_TOOL} with request_id \"{id}\"."
                ),
                json!({"status": "awaiting_approval", "request_id": id}),
            )),
            Hold::Waiting(CallState::Running) => Ok(still_waiting_until(id, None)),
            Hold::Waiting(CallState::Done(result)) => final_result(&call.tool, id, &result),
            Hold::Waiting(CallState::Sent) => Ok(tool_error(
                format!(
                    "The gateway has not answered this call yet (request_id {id}; the bridge may \
                     be reconnecting). Call this tool again with the same arguments to keep \
                     waiting: that attaches to this request and never runs it twice."
                ),
                json!({"status": "sent", "request_id": id}),
            )),
        }
    }
}

impl ServerHandler for Bridge {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "agent-gate-bridge",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let client = self.inner.upstream.client().await.map_err(|e| {
            McpError::internal_error(format!("the bridge cannot reach the gateway: {e}"), None)
        })?;
        let tools = client.list_tools().await.map_err(|e| {
            McpError::internal_error(format!("the gateway did not list its tools: {e}"), None)
        })?;
        let mut listed: Vec<Tool> = tools.into_iter().map(mcp_tool).collect();
        listed.push(request_status_tool());
        Ok(ListToolsResult::with_all_items(listed))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.call(request, &ctx).await.map(Into::into)
    }

    /// Params that do not fit `tools/call` or `tools/list`, or a method not served (as the
    /// gateway's `/mcp` answers them).
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        Err(unserved(&request, Served::Tools))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_valid_idempotency_keys_and_differ() {
        let (a, b) = (new_request_id(), new_request_id());
        assert!(agent_gate::protocol::validate_request_id(&a).is_ok(), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn only_a_local_connection_loss_or_deadline_counts_as_given_up() {
        assert!(gave_up(&Error::connection("lost", "retry")));
        assert!(gave_up(&Error::new(ErrorKind::Timeout, "late")));
        let expired = Error::from_error_object(ErrorObject::new(
            ErrorCode::ApprovalTimeout,
            "nobody approved",
        ));
        assert!(!gave_up(&expired));
        assert!(!gave_up(&Error::validation("bad", None)));
    }

    #[test]
    fn a_policy_denial_keeps_its_rule() {
        let denied = Error::from_error_object(
            ErrorObject::new(ErrorCode::DeniedByPolicy, "Denied by policy: no")
                .with_data_members(&json!({"rule": "ha_call_service(lock.*)"})),
        );
        let result = final_result("ha_call_service", "r1", &Err(denied)).unwrap();
        assert_eq!(result.is_error, Some(true));
        let structured = result.structured_content.unwrap();
        assert_eq!(structured["error"]["code"], -32003);
        assert_eq!(
            structured["error"]["data"]["rule"],
            "ha_call_service(lock.*)"
        );
        assert_eq!(structured["request_id"], "r1");
    }

    #[test]
    fn an_unknown_tool_is_a_protocol_error() {
        let unknown = Error::from_error_object(ErrorObject::new(
            ErrorCode::MethodNotFound,
            "Unknown tool: ha_nope",
        ));
        let error = final_result("ha_nope", "r1", &Err(unknown)).unwrap_err();
        assert_eq!(error.code.0, -32602);
    }
}
