//! The typed `config.yaml` and its loader: [`Config`] and the top-level keys here, each section
//! (its types, defaults and loader) in a module of its own.

mod agents;
mod approvers;
mod gateway;
mod mcp;
mod outline;
mod rate_limit;
mod services;
mod storage;

use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use subtle::{ConditionallySelectable, ConstantTimeEq};

pub use agents::AgentConfig;
pub(crate) use agents::valid_agent_id;
pub use approvers::{
    ApproverConfig, DEFAULT_HOME_ASSISTANT_APPROVER_NAME, DEFAULT_PHONE_GRANT,
    DEFAULT_TELEGRAM_API_URL, DEFAULT_WEB_APPROVER_NAME, HOME_ASSISTANT_SERVICE,
    HomeAssistantApproverConfig, TelegramConfig, WebApproverConfig,
};
pub use gateway::{
    DEFAULT_GATEWAY_HOST, DEFAULT_GATEWAY_PORT, DEFAULT_HEALTH_HOST, DEFAULT_HEALTH_PORT,
    DEFAULT_MAX_UNAUTHENTICATED, DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS, GatewayConfig, TlsConfig,
};
pub use mcp::{DEFAULT_MCP_HOLD_SECONDS, DEFAULT_MCP_PATH, McpConfig};
pub use outline::ConfigOutline;
pub use rate_limit::RateLimitConfig;
pub use services::{
    DEFAULT_SERVICE_MAX_CONNECTIONS, DEFAULT_SERVICE_TIMEOUT, HealthCheck, ServiceAuth,
    ServiceConfig,
};
pub use storage::{DEFAULT_STORAGE_PATH, StorageConfig};

use super::env::{EnvLookup, ProcessEnv};
use super::error::{ConfigError, Issue};
use super::token::TokenDigest;
use super::walk::{Ctx, Field, Obj, describe, parse_yaml, read_yaml};

/// Default `approval_timeout` in seconds.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 900;
/// Default tool manifest path (relative to the config file).
pub const DEFAULT_TOOLS_PATH: &str = "tools.toml";

/// The whole `config.yaml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from.
    pub file: PathBuf,
    /// The agent-facing WebSocket listener and the HTTP side.
    pub gateway: GatewayConfig,
    /// Agents and their tokens (at least one). The upstream `agent: {token}` form yields one
    /// agent with id `default`.
    pub agents: Vec<AgentConfig>,
    /// Tool manifest paths, resolved against the config file's directory.
    pub tools: Vec<PathBuf>,
    /// Services by name (the `service` of a tool in the manifest).
    pub services: IndexMap<String, ServiceConfig>,
    /// Where the SQLite database lives.
    pub storage: StorageConfig,
    /// Who is asked when a policy says `ask` (may be empty: such requests then expire).
    pub approvers: Vec<ApproverConfig>,
    /// How long a request waits for a human decision (default 900 s).
    pub approval_timeout: Duration,
    /// Per-agent rate limits.
    pub rate_limit: RateLimitConfig,
    /// The MCP front (`/mcp` on the agent listener).
    pub mcp: McpConfig,
    /// Non-fatal remarks found while loading (short tokens, no approvers, ...).
    pub warnings: Vec<Issue>,
}

impl Config {
    /// Loads `path`, substituting `${VAR}` from the process environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, &ProcessEnv)
    }

    /// Loads `path`, substituting `${VAR}` from `env`.
    pub fn load_with_env(
        path: impl AsRef<Path>,
        env: &dyn EnvLookup,
    ) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let (value, ctx) = read_yaml(path, env)?;
        build(value, ctx)
    }

    /// Parses YAML text as if read from `path` (relative paths resolve against its directory).
    pub fn parse(
        text: &str,
        path: impl AsRef<Path>,
        env: &dyn EnvLookup,
    ) -> Result<Config, ConfigError> {
        let (value, ctx) = parse_yaml(text, path.as_ref(), env)?;
        build(value, ctx)
    }

    /// The agent one of whose tokens is `presented`, if any.
    ///
    /// The presented token is hashed once and its digest compared with every token of every
    /// agent in constant time, without stopping at a match, so the answer's timing says neither
    /// which agent matched nor anything about the stored tokens (their length included). Every
    /// front that authenticates agents (the WebSocket `auth`, MCP's bearer token) asks here.
    pub fn agent_by_token(&self, presented: &str) -> Option<&AgentConfig> {
        let presented = TokenDigest::of(presented);
        // 1 + the index of the first agent that accepts it; 0 for none.
        let mut found = 0u64;
        for (index, agent) in (1u64..).zip(&self.agents) {
            let first = agent.accepts(&presented) & found.ct_eq(&0);
            found.conditional_assign(&index, first);
        }
        let index = usize::try_from(found.checked_sub(1)?).ok()?;
        self.agents.get(index)
    }

    /// The agent with this id.
    pub fn agent(&self, id: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|a| a.id == id)
    }
}

const TOP_KEYS: &[&str] = &[
    "gateway",
    "agent",
    "agents",
    "tools",
    "services",
    "storage",
    "messenger",
    "approvers",
    "approval_timeout",
    "rate_limit",
    "mcp",
];

fn build(value: serde_yaml_ng::Value, mut ctx: Ctx) -> Result<Config, ConfigError> {
    let file = ctx.file().to_path_buf();
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let Some(root) = Obj::root(&mut ctx, &value) else {
        return Err(ctx
            .finish(())
            .err()
            .unwrap_or_else(|| unreachable_invalid(&file)));
    };
    root.check_keys(&mut ctx, TOP_KEYS);

    let gateway = gateway::load(&mut ctx, &root);
    let agents = agents::load(&mut ctx, &root);
    let mut tools = tool_paths(&mut ctx, &root.field("tools"), &base);
    let services = services::load(&mut ctx, &root.field("services"), &base, &mut tools);
    if tools.is_empty() {
        tools.push(base.join(DEFAULT_TOOLS_PATH));
    }
    let storage = storage::load(&mut ctx, &root.field("storage"));
    let approvers = approvers::load(&mut ctx, &root, &services);
    let approval_timeout = ctx
        .int(&root.field("approval_timeout"), 1, 7 * 24 * 3600)
        .and_then(|n| u64::try_from(n).ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(DEFAULT_APPROVAL_TIMEOUT_SECS));
    let rate_limit = rate_limit::load(&mut ctx, &root.field("rate_limit"));
    let mcp = mcp::load(&mut ctx, &root.field("mcp"), &gateway.host);

    if approvers.is_empty() && !ctx_has_approver_error(&ctx) {
        ctx.warn(
            "approvers",
            "no approver configured: requests that a policy sends to `ask` will expire after approval_timeout",
        );
    }

    let config = Config {
        file,
        gateway,
        agents,
        tools,
        services,
        storage,
        approvers,
        approval_timeout,
        rate_limit,
        mcp,
        warnings: Vec::new(),
    };
    let (mut config, warnings) = ctx.finish(config)?;
    config.warnings = warnings;
    Ok(config)
}

fn ctx_has_approver_error(ctx: &Ctx) -> bool {
    ctx.issues
        .iter()
        .any(|i| i.key.starts_with("approvers") || i.key.starts_with("messenger"))
}

// Only reached if Obj::root failed without recording an error, which it never does.
fn unreachable_invalid(file: &Path) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        issues: Vec::new(),
    }
}

fn tool_paths(ctx: &mut Ctx, f: &Field<'_>, base: &Path) -> Vec<PathBuf> {
    let Some(value) = f.value else {
        return Vec::new();
    };
    let fields: Vec<Field<'_>> = match value {
        serde_yaml_ng::Value::String(_) => vec![Field {
            path: f.path.clone(),
            value: Some(value),
        }],
        serde_yaml_ng::Value::Sequence(_) => ctx.list(f).unwrap_or_default(),
        other => {
            ctx.error(
                &f.path,
                format!(
                    "expected a manifest path or a list of paths, got {}",
                    describe(other)
                ),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for field in fields {
        if let Some(p) = ctx.req_nonempty(&field) {
            out.push(base.join(p));
        }
    }
    out
}
