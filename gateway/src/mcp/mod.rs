//! The Model Context Protocol front: `/mcp` on the agent listener (Streamable HTTP, with the
//! official Rust SDK `rmcp`), serving the 2026-07-28 revision statelessly and 2025-11-25
//! clients too, over the same request engine, policy, approvals and audit as the WebSocket
//! front.
//!
//! - `auth`: `Authorization: Bearer <agent token>` → the agent (401 with `WWW-Authenticate`
//!   otherwise; failures throttled per client address like the WebSocket `auth`).
//! - `catalog`: `tools/list`, the tools each agent could ever be permitted.
//! - `call`: `tools/call` through [`crate::engine::Engine::submit`]; a call that waits for a
//!   human is held (with progress notifications) up to `mcp.hold_seconds`, then answered
//!   "still waiting" with what to do; calling again with the same arguments attaches to the
//!   same request.
//!
//! - `tasks`: the Tasks extension, for clients that declare it: a call waiting for a human is a
//!   task (its request id), read from the store by `tasks/get`, withdrawn by `tasks/cancel`.
//! - `malformed`: what a client that sends something wrong gets: a 400 with a JSON-RPC error
//!   for a body that is not one message, `-32602` naming the field for params that do not fit.
//!
//! `Host` and `Origin` are checked by `rmcp` against `mcp.allowed_hosts` and
//! `mcp.allowed_origins` (Origin checks are on: with no origins listed, any request carrying
//! an `Origin` is refused).

mod auth;
pub(crate) mod call;
pub(crate) mod catalog;
pub(crate) mod malformed;
mod tasks;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, CustomRequest, CustomResult,
    GetTaskParams, GetTaskResult, Implementation, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

pub(crate) use self::auth::{Authenticated, PeerAddr};
use crate::config::McpConfig;
use crate::engine::Engine;

/// Largest request body accepted on `/mcp` (the WebSocket front's message limit).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What an MCP client is told about this server (shared with the stdio bridge).
pub(crate) const INSTRUCTIONS: &str = "Tools of an agent-gate gateway: every call is checked by \
     the gateway's policy; some wait for a human to approve them. A call that comes back saying \
     it is waiting for a human has not run: call the same tool again with the same arguments \
     later (it attaches to the same request and never runs twice), or ask \
     gateway_request_status with its request_id.";

/// The protocol revisions served (shared with the stdio bridge).
pub(crate) const PROTOCOL_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2026_07_28,
];

/// The agent a request authenticated as (set by `auth`, read by the handlers).
#[derive(Debug, Clone)]
pub(crate) struct AgentId(pub(crate) Arc<str>);

/// What every `/mcp` request shares: the engine, the tool lists, the hold.
#[derive(Debug)]
struct Shared {
    engine: Arc<Engine>,
    hold: Duration,
}

/// The MCP server handler; `rmcp` makes one per request (cheap: it holds an `Arc`).
#[derive(Debug, Clone)]
pub(crate) struct McpFront {
    shared: Arc<Shared>,
}

/// The agent of a request, as `auth` resolved it.
fn agent_of(ctx: &RequestContext<RoleServer>) -> Result<Arc<str>, McpError> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<AgentId>())
        .map(|agent| Arc::clone(&agent.0))
        .ok_or_else(|| McpError::invalid_request("not authenticated", None))
}

impl ServerHandler for McpFront {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new("agent-gate", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let agent = agent_of(&ctx)?;
        // The tool lists under the policy in force now (a reload rebuilds them).
        let tools = self.shared.engine.catalog().tools(&agent);
        Ok(ListToolsResult::with_all_items((*tools).clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let agent = agent_of(&ctx)?;
        // Boxed, as `Engine::submit` is: `rmcp` spawns a task per request whose future holds
        // this one, and tokio copies a task's future when it starts and when it finishes.
        Box::pin(call::call_tool(&self.shared, &agent, request, &ctx)).await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let agent = agent_of(&ctx)?;
        tasks::get(&self.shared, &agent, &request.task_id).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let agent = agent_of(&ctx)?;
        tasks::cancel(&self.shared, &agent, &request.task_id).await
    }

    /// `rmcp` hands over as custom both methods it does not know and requests to methods it
    /// knows whose params it could not read: say which it was.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        Err(malformed::unserved(
            &request,
            malformed::Served::ToolsAndTasks,
        ))
    }
}

/// The `/mcp` endpoint: an axum router serving `config.path`, its requests authenticated
/// against the engine's agents.
pub(crate) fn router(engine: Arc<Engine>, config: &McpConfig) -> axum::Router {
    let shared = Arc::new(Shared {
        engine: Arc::clone(&engine),
        hold: config.hold,
    });
    let front = McpFront { shared };
    let mut http = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(MAX_BODY_BYTES)
        .with_allowed_hosts(config.allowed_hosts.iter().cloned())
        .with_cancellation_token(engine.shutdown.child_token());
    http = if config.allowed_origins.is_empty() {
        http.enforce_origin_validation()
    } else {
        http.with_allowed_origins(config.allowed_origins.iter().cloned())
    };
    let service: Arc<StreamableHttpService<McpFront, NeverSessionManager>> = Arc::new(
        StreamableHttpService::new(move || Ok(front.clone()), Default::default(), http),
    );
    // A handler sharing one service rather than `route_service`: as a tower service, `rmcp`'s
    // is cloned twice per request (by axum, then by its own `call`), and each clone copies the
    // configuration's host and origin lists, string by string.
    let serve = move |request: axum::extract::Request| {
        let service = Arc::clone(&service);
        malformed::serve(request, MAX_BODY_BYTES, async move |request| {
            service.handle(request).await
        })
    };
    axum::Router::new()
        .route(&config.path, axum::routing::any(serve))
        .layer(axum::middleware::from_fn_with_state(
            engine,
            auth::authenticate,
        ))
}
