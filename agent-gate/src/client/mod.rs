//! `AgentGateClient`: a cheap-to-clone handle on one multiplexed, reconnecting
//! WebSocket connection to the gateway.
//!
//! Calls register a pending entry keyed by their JSON-RPC id (and their
//! `request_id`), hand their frame to the writer task and wait; the reader task
//! delivers each response to its entry. While the connection is down, calls
//! wait; after reconnecting, every outstanding call is re-sent with its
//! `request_id` (the gateway attaches instead of executing twice) and
//! `get_pending_results` resolves the ones decided meanwhile.

mod config;
mod connection;
mod deadline;
mod reconnect;
mod request_ids;
mod slot;
mod stream;

use request_ids::RequestIds;
use slot::{Entry, Generation, Slot};

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use config::{
    ClientBuilder, ClientConfig, DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_JITTER,
    DEFAULT_BACKOFF_MAX, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_PING_INTERVAL,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_URL, ENV_CA_CERT, ENV_TOKEN, ENV_URL, GATEWAY_MAX_IN_FLIGHT,
};
pub use deadline::APPROVAL_DEADLINE_MARGIN;
pub use stream::{CallEvent, CallStream};

use crate::error::{Error, ErrorKind, rank_tools};
use crate::protocol::{
    CancelRequestResult, Id, Incoming, ListToolsResult, NOTIFICATION_REQUEST_STATUS, PendingResult,
    PendingResults, Request, RequestStatusParams, ResultStatus, ToolInfo, ToolRequestParams,
    ToolResult, parse_incoming, validate_request_id,
};

/// The connection's state, published on every change.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connected and authenticated; calls are sent at once.
    Connected,
    /// The connection was lost; waiting `delay` before reconnection attempt
    /// `attempt` (1-based). Calls wait.
    Reconnecting {
        /// Which attempt comes next (1 for the first after a loss).
        attempt: u32,
        /// How long the client waits before it.
        delay: Duration,
    },
    /// `close()` was called (or every handle was dropped).
    Closed,
    /// Reconnection gave up (retries exhausted, or the token was rejected);
    /// every call fails with this error.
    Failed(Error),
}

/// Per-call options for [`AgentGateClient::tool_request_with`] and
/// [`AgentGateClient::tool_request_stream`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallOptions {
    timeout: Option<Duration>,
    request_id: Option<String>,
}

impl CallOptions {
    /// Options with the client's defaults.
    pub fn new() -> Self {
        CallOptions::default()
    }

    /// How long this call may take in total (including waiting for a human
    /// and for reconnections) instead of the client's request timeout. An
    /// explicit timeout applies as given: the gateway's `expires_at` does not
    /// extend or shorten it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Use this idempotency key (1–64 of `[A-Za-z0-9_-]`) instead of a
    /// generated one. Sending the same key again attaches to the same request.
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }
}

/// What a pending call receives.
pub(crate) enum Answer {
    /// The JSON-RPC `result` of a live response.
    Result(Value),
    /// The tool's `data`, from `get_pending_results`.
    Data(Value),
}

pub(crate) type Reply = Result<Answer, Error>;

/// Messages for a streaming call.
pub(crate) enum Delivery {
    Status(RequestStatusParams),
    Final(Reply),
}

pub(crate) enum Responder {
    Once(oneshot::Sender<Reply>),
    Stream(mpsc::UnboundedSender<Delivery>),
}

impl Responder {
    fn deliver(self, reply: Reply) {
        // A receiver that is gone was cancelled: nothing to do.
        match self {
            Responder::Once(tx) => {
                let _ = tx.send(reply);
            }
            Responder::Stream(tx) => {
                let _ = tx.send(Delivery::Final(reply));
            }
        }
    }
}

/// State shared by the handles, the supervisor and the connection tasks.
pub(crate) struct Shared {
    config: ClientConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    slot: Mutex<Slot>,
    next_id: AtomicI64,
    request_prefix: String,
    request_counter: AtomicU64,
    permits: Arc<Semaphore>,
    state: watch::Sender<ConnectionState>,
    events: broadcast::Sender<ConnectionState>,
    reconnects: AtomicU64,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every mutation is a single insert/remove), so recover from poison.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_state(&self, state: ConnectionState) {
        self.state.send_replace(state.clone());
        let _ = self.events.send(state);
    }

    fn next_request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.request_prefix)
    }

    /// Handle one text frame from the gateway (called by the reader task).
    fn dispatch(&self, text: &str, from: Generation) {
        match parse_incoming(text) {
            Ok(Incoming::Response(response)) => {
                let Some(Id::Number(id)) = response.id else {
                    if let Some(e) = response.error_object() {
                        tracing::warn!(code = e.code.code(), message = %e.message, "agent-gate: the gateway sent an error that answers no request");
                    }
                    return;
                };
                let mut slot = self.lock();
                let entry = slot.answered(id, from);
                if let Some(entry) = entry {
                    let reply = response.into_result();
                    if entry.is_paced()
                        && let Some(seen) = RequestIds::from_answer(&reply)
                    {
                        slot.request_ids = seen;
                    }
                    drop(slot);
                    let reply = reply.map(Answer::Result).map_err(Error::from_error_object);
                    entry.into_responder().deliver(reply);
                }
            }
            Ok(Incoming::Notification(n)) if n.method == NOTIFICATION_REQUEST_STATUS => {
                let Ok(params) = serde_json::from_value::<RequestStatusParams>(n.params) else {
                    tracing::warn!("agent-gate: ignoring a malformed request_status notification");
                    return;
                };
                let mut slot = self.lock();
                // Only agent-gate sends these, and each names its call's request_id.
                slot.request_ids = RequestIds::Honoured;
                if let Some(Responder::Stream(tx)) =
                    slot.by_request_id(&params.request_id).map(Entry::responder)
                {
                    let _ = tx.send(Delivery::Status(params));
                }
            }
            Ok(Incoming::Notification(n)) => {
                tracing::debug!(method = %n.method, "agent-gate: ignoring an unknown notification");
            }
            Err(e) => tracing::warn!("agent-gate: {e}"),
        }
    }

    pub(crate) async fn fetch_pending(
        self: &Arc<Self>,
        use_permit: bool,
    ) -> Result<Vec<PendingResult>, Error> {
        let (tx, rx) = oneshot::channel();
        let call = async {
            let _guard = self
                .start_call(
                    crate::protocol::METHOD_GET_PENDING_RESULTS,
                    |id| Request::get_pending_results(id).to_json(),
                    None,
                    Responder::Once(tx),
                    use_permit,
                )
                .await?;
            rx.await.unwrap_or_else(|_| Err(self.lost_error()))
        };
        let timeout = self.config.request_timeout;
        let reply = tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(simple_timeout_error("get_pending_results", timeout)))?;
        let (Answer::Result(value) | Answer::Data(value)) = reply;
        let results: PendingResults = serde_json::from_value(value).map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                format!("the gateway's get_pending_results result is malformed: {e}"),
            )
        })?;
        self.resolve_pending(&results.results);
        Ok(results.results)
    }

    fn lost_error(&self) -> Error {
        self.lock().terminal().cloned().unwrap_or_else(|| {
            Error::connection("the call was abandoned by the client", "retry the call")
        })
    }

    /// Register a call and hand its frame to the writer, waiting for a
    /// connection (and a free in-flight slot when `use_permit`).
    pub(crate) async fn start_call(
        self: &Arc<Self>,
        method: &str,
        build: impl FnOnce(i64) -> Result<String, serde_json::Error>,
        request_id: Option<String>,
        responder: Responder,
        use_permit: bool,
    ) -> Result<CallGuard, Error> {
        let shared = self;
        let permit = if use_permit {
            let permit = Arc::clone(&shared.permits)
                .acquire_owned()
                .await
                .map_err(|_| Error::connection("the client is closed", "create a new client"))?;
            Some(permit)
        } else {
            None
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = build(id).map_err(|e| {
            Error::validation(format!("cannot encode the {method} request: {e}"), None)
        })?;
        let frame = Utf8Bytes::from(frame);
        let mut state = shared.state.subscribe();
        let mut responder = Some(responder);
        loop {
            {
                let mut slot = shared.lock();
                if let Some(error) = slot.terminal() {
                    return Err(error.clone());
                }
                if slot.is_attached() {
                    let Some(responder) = responder.take() else {
                        return Err(Error::new(
                            ErrorKind::Protocol,
                            "internal: responder used twice",
                        ));
                    };
                    slot.insert(
                        id,
                        Entry::new(
                            request_id,
                            frame.clone(),
                            responder,
                            method == crate::protocol::METHOD_TOOL_REQUEST,
                        ),
                    );
                    return Ok(CallGuard {
                        shared: Arc::clone(self),
                        id,
                        _permit: permit,
                    });
                }
            }
            if state.changed().await.is_err() {
                return Err(Error::connection(
                    "the client is closed",
                    "create a new client",
                ));
            }
        }
    }

    /// Deliver results fetched with `get_pending_results` to the calls waiting
    /// for them.
    fn resolve_pending(&self, results: &[PendingResult]) {
        let mut slot = self.lock();
        for result in results {
            if let Some(entry) = slot.resolved(&result.request_id) {
                let reply = result
                    .outcome()
                    .map(|data| Answer::Data(data.clone()))
                    .map_err(Error::from_error_object);
                entry.into_responder().deliver(reply);
            }
        }
    }
}

/// Removes a call's pending entry when the call finishes or is dropped.
pub(crate) struct CallGuard {
    shared: Arc<Shared>,
    id: i64,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.shared.lock().abandon(self.id);
    }
}

struct ClientInner {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        // The last handle is gone: stop the background tasks.
        self.shared.shutdown.send_replace(true);
    }
}

/// A client for the agent-gate gateway. Cheap to clone; all clones share one
/// connection. Dropping the last clone closes it; [`close`](Self::close)
/// closes it explicitly and waits until it is done.
///
/// ```no_run
/// use agent_gate::{AgentGateClient, ErrorKind};
/// use serde_json::json;
///
/// # async fn run() -> Result<(), agent_gate::Error> {
/// let client = AgentGateClient::connect("wss://gateway.local:8443", "agent-token").await?;
/// let state = client
///     .tool_request("ha_get_state", json!({"entity_id": "sensor.temperature"}))
///     .await?;
/// println!("{state}");
/// match client.tool_request("ha_call_service", json!({
///     "domain": "lock", "service": "unlock", "entity_id": "lock.front_door"
/// })).await {
///     Ok(data) => println!("unlocked: {data}"),
///     Err(e) if e.is_denied() => println!("not allowed: {e}"),
///     Err(e) => return Err(e),
/// }
/// client.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AgentGateClient {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for AgentGateClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentGateClient")
            .field("url", &self.inner.shared.config.url)
            .field("state", &*self.inner.shared.state.borrow())
            .finish_non_exhaustive()
    }
}

impl AgentGateClient {
    /// A builder for a client (explicit settings > environment > defaults).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// Connect to `url` with `token`, other settings from the environment or
    /// defaults.
    pub async fn connect(url: impl Into<String>, token: impl Into<String>) -> Result<Self, Error> {
        ClientBuilder::new().url(url).token(token).connect().await
    }

    /// Connect with `AGENT_GATE_URL` and `AGENT_GATE_TOKEN` (and optional
    /// `AGENT_GATE_CA_CERT`), defaults for the rest.
    pub async fn from_env() -> Result<Self, Error> {
        ClientBuilder::new().connect().await
    }

    pub(crate) async fn connect_with_config(config: ClientConfig) -> Result<Self, Error> {
        let tls = if config.url.starts_with("wss://") {
            Some(Arc::new(config.tls_config()?))
        } else {
            None
        };
        let ws = reconnect::initial_connect(&config, tls.as_ref()).await?;
        let (state, _) = watch::channel(ConnectionState::Connected);
        let (events, _) = broadcast::channel(64);
        let (shutdown, _) = watch::channel(false);
        let prefix = format!("ag{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let window = config.max_in_flight.min(GATEWAY_MAX_IN_FLIGHT);
        let shared = Arc::new(Shared {
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
            config,
            tls,
            slot: Mutex::new(Slot::new(window)),
            next_id: AtomicI64::new(1),
            request_prefix: prefix,
            request_counter: AtomicU64::new(1),
            state,
            events,
            reconnects: AtomicU64::new(0),
            shutdown,
        });
        let supervisor = reconnect::spawn_supervisor(Arc::clone(&shared), ws);
        Ok(AgentGateClient {
            inner: Arc::new(ClientInner {
                shared,
                supervisor: Mutex::new(Some(supervisor)),
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The resolved configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.shared().config
    }

    /// How many times the client has reconnected after losing the connection.
    pub fn reconnect_count(&self) -> u64 {
        self.shared().reconnects.load(Ordering::Relaxed)
    }

    /// Whether the gateway honours `request_id`, as its answers have shown so far: `Some(true)`
    /// when one echoed a call's `request_id` (agent-gate), `Some(false)` when a successful
    /// answer did not (upstream's agentpass gateway, which would run a re-sent call again),
    /// `None` before any answer showed it. While it is not `Some(true)`, a call that was sent
    /// on a connection lost before its answer is not re-sent after reconnecting: it fails
    /// with an "outcome unknown" execution error instead.
    pub fn honours_request_id(&self) -> Option<bool> {
        match self.shared().lock().request_ids {
            RequestIds::Unknown => None,
            RequestIds::Honoured => Some(true),
            RequestIds::Ignored => Some(false),
        }
    }

    /// How many calls are waiting for an answer right now.
    pub fn in_flight(&self) -> usize {
        self.shared().lock().len()
    }

    /// The current connection state.
    pub fn connection_state(&self) -> ConnectionState {
        self.shared().state.borrow().clone()
    }

    /// A watch on the connection state (latest value; `changed().await` to wait).
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.shared().state.subscribe()
    }

    /// Every state change from now on, in order (a hook for logging or metrics).
    pub fn subscribe(&self) -> broadcast::Receiver<ConnectionState> {
        self.shared().events.subscribe()
    }

    /// Close the connection: outstanding calls fail with a connection error, no
    /// reconnection happens, and this returns once the background tasks have
    /// stopped. Closing twice is harmless.
    pub async fn close(&self) {
        self.shared().shutdown.send_replace(true);
        let handle = self
            .inner
            .supervisor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.await;
        } else {
            let mut rx = self.watch_state();
            let _ = rx
                .wait_for(|s| matches!(s, ConnectionState::Closed | ConnectionState::Failed(_)))
                .await;
        }
    }

    /// Run `tool` with `args` (a JSON object) and return the tool's `data`.
    ///
    /// Waits while a human decides and across reconnections: up to the
    /// request timeout, or, once the gateway reports that a human has been
    /// asked, until the approval's `expires_at` plus [`APPROVAL_DEADLINE_MARGIN`]
    /// (unless a timeout was set explicitly, see [`CallStream::deadline`]).
    pub async fn tool_request(&self, tool: impl Into<String>, args: Value) -> Result<Value, Error> {
        self.tool_request_with(tool, args, CallOptions::default())
            .await
    }

    /// [`tool_request`](Self::tool_request) with per-call options.
    pub async fn tool_request_with(
        &self,
        tool: impl Into<String>,
        args: Value,
        options: CallOptions,
    ) -> Result<Value, Error> {
        // The streaming call without its status events: one deadline logic for both.
        let mut events = self.tool_request_stream(tool, args, options);
        while let Some(event) = events.next().await {
            match event {
                CallEvent::Result(data) => return Ok(data),
                CallEvent::Error(error) => return Err(error),
                CallEvent::AwaitingApproval { .. } | CallEvent::Status { .. } => {}
            }
        }
        Err(self.shared().lost_error())
    }

    /// Like [`tool_request_with`](Self::tool_request_with), but yields status
    /// events: [`CallEvent::AwaitingApproval`] when a human has been asked,
    /// then exactly one [`CallEvent::Result`] or [`CallEvent::Error`].
    pub fn tool_request_stream(
        &self,
        tool: impl Into<String>,
        args: Value,
        options: CallOptions,
    ) -> CallStream {
        stream::start(self.clone(), tool.into(), args, options)
    }

    /// The tools the gateway offers to this agent.
    pub async fn list_tools(&self) -> Result<Vec<ToolInfo>, Error> {
        let value = self
            .simple_call(crate::protocol::METHOD_LIST_TOOLS, |id| {
                Request::list_tools(id).to_json()
            })
            .await?;
        let result: ListToolsResult = serde_json::from_value(value).map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                format!("the gateway's list_tools result is malformed: {e}"),
            )
        })?;
        Ok(result.tools)
    }

    /// Results decided while this agent was disconnected. Calls still waiting
    /// for one of them (same `request_id`) are resolved with it as well.
    pub async fn get_pending_results(&self) -> Result<Vec<PendingResult>, Error> {
        let results = self.shared().fetch_pending(true).await?;
        Ok(results)
    }

    /// Withdraws this agent's request `request_id` while it waits for a human. `cancelled`
    /// in the answer says whether this call did it: the request is then `cancelled`, the
    /// approvers are told, and a call waiting for it fails with [`ErrorKind::Cancelled`].
    /// Otherwise the request had already been decided or ended, and `state` and `message`
    /// say where it is; nothing changes. A request id this agent never used is an error
    /// ([`ErrorKind::Validation`]).
    pub async fn cancel_request(
        &self,
        request_id: impl Into<String>,
    ) -> Result<CancelRequestResult, Error> {
        let request_id = request_id.into();
        validate_request_id(&request_id).map_err(|e| {
            Error::validation(
                format!("cannot cancel `{request_id}`: {e}"),
                Some("pass the request_id of one of this agent's requests".into()),
            )
        })?;
        let value = self
            .simple_call(crate::protocol::METHOD_CANCEL_REQUEST, |id| {
                Request::cancel_request(id, request_id.clone()).to_json()
            })
            .await?;
        serde_json::from_value(value).map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                format!("the gateway's cancel_request result is malformed: {e}"),
            )
        })
    }

    async fn simple_call(
        &self,
        method: &'static str,
        build: impl FnOnce(i64) -> Result<String, serde_json::Error>,
    ) -> Result<Value, Error> {
        let (tx, rx) = oneshot::channel();
        let call = async {
            let _guard = self
                .shared()
                .start_call(method, build, None, Responder::Once(tx), true)
                .await?;
            rx.await.unwrap_or_else(|_| Err(self.shared().lost_error()))
        };
        let timeout = self.config().request_timeout;
        let reply = tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(simple_timeout_error(method, timeout)))?;
        let (Answer::Result(v) | Answer::Data(v)) = reply;
        Ok(v)
    }

    /// Check the arguments and build the params; returns the request id used.
    pub(crate) fn tool_params(
        &self,
        tool: &str,
        args: Value,
        request_id: Option<String>,
    ) -> Result<(ToolRequestParams, String), Error> {
        if tool.is_empty() {
            return Err(Error::validation(
                "the tool name is empty",
                Some(
                    "pass a tool name such as \"ha_get_state\"; list_tools() shows them all".into(),
                ),
            ));
        }
        let args = match args {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                return Err(Error::validation(
                    format!("the arguments of {tool:?} must be a JSON object, got {other}"),
                    Some("pass e.g. json!({\"entity_id\": \"sensor.temp\"})".into()),
                ));
            }
        };
        let request_id = match request_id {
            Some(rid) => {
                validate_request_id(&rid).map_err(|e| {
                    Error::validation(e.to_string(), Some("use CallOptions::request_id with 1-64 characters of A-Z, a-z, 0-9, '_' and '-'".into()))
                })?;
                rid
            }
            None => self.shared().next_request_id(),
        };
        let params = ToolRequestParams {
            tool: tool.to_owned(),
            args,
            request_id: Some(request_id.clone()),
        };
        Ok((params, request_id))
    }

    /// Turn a tool_request reply into the tool's data, enriching unknown-tool
    /// errors with the gateway's tools (nearest first).
    pub(crate) async fn finish_tool_reply(&self, tool: &str, reply: Reply) -> Result<Value, Error> {
        match reply {
            Ok(Answer::Data(data)) => Ok(data),
            Ok(Answer::Result(value)) => {
                let result: ToolResult = serde_json::from_value(value).map_err(|e| {
                    Error::new(
                        ErrorKind::Protocol,
                        format!("the gateway's tool_request result is malformed: {e}"),
                    )
                })?;
                match result.status {
                    ResultStatus::Executed => Ok(result.data),
                    other => Err(Error::new(
                        ErrorKind::Execution,
                        format!(
                            "{tool} was not executed (status {:?}): {}",
                            other.as_str(),
                            result.data
                        ),
                    )),
                }
            }
            Err(e)
                if e.kind() == &ErrorKind::UnknownTool
                    || e.code() == Some(crate::protocol::ErrorCode::MethodNotFound) =>
            {
                Err(self.unknown_tool_error(tool, e).await)
            }
            Err(e) => Err(e),
        }
    }

    async fn unknown_tool_error(&self, tool: &str, error: Error) -> Error {
        let mut tools = error.available_tools().to_vec();
        if tools.is_empty()
            && let Ok(list) = self.list_tools().await
        {
            tools = list.into_iter().map(|t| t.name).collect();
        }
        rank_tools(tool, &mut tools);
        let suggestion = match (error.suggestion(), tools.first()) {
            (Some(s), _) => s.to_owned(),
            (None, Some(best)) => format!(
                "did you mean {best:?}? The gateway offers: {}",
                tools.join(", ")
            ),
            (None, None) => "call list_tools() to see the tools the gateway offers".to_owned(),
        };
        let mut out = Error::new(ErrorKind::UnknownTool, error.message().to_owned())
            .with_suggestion(suggestion)
            .with_available_tools(tools);
        if let Some(code) = error.code() {
            out = out.with_code(code);
        }
        if let Some(d) = error.details() {
            out = out.with_details(d.clone());
        }
        out
    }
}

fn timeout_error(tool: &str, request_id: &str, timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("no answer to {tool} (request_id {request_id}) within {timeout:?}"),
    )
    .with_suggestion(format!(
        "raise the timeout (CallOptions::timeout or ClientBuilder::request_timeout); the request may still be decided at the gateway: fetch it later with get_pending_results or re-send it with CallOptions::request_id({request_id:?})"
    ))
}

fn simple_timeout_error(method: &str, timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("no answer to {method} within {timeout:?}"),
    )
    .with_suggestion("check the connection to the gateway, or raise ClientBuilder::request_timeout")
}
