//! The typed `config.yaml` and its loader.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use super::env::{EnvLookup, ProcessEnv};
use super::error::{ConfigError, Issue};
use super::secret::Secret;
use super::walk::{Ctx, Field, Obj, describe, parse_yaml, read_yaml};
use crate::store::SyncMode;

/// Default `approval_timeout` in seconds.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 900;
/// Default gateway (WebSocket) port.
pub const DEFAULT_GATEWAY_PORT: u16 = 8443;
/// Default gateway host.
pub const DEFAULT_GATEWAY_HOST: &str = "0.0.0.0";
/// Default host of the HTTP side (health, metrics, web approvals).
pub const DEFAULT_HEALTH_HOST: &str = "127.0.0.1";
/// Default port of the HTTP side.
pub const DEFAULT_HEALTH_PORT: u16 = 8080;
/// Default SQLite database path.
pub const DEFAULT_STORAGE_PATH: &str = "data/agent-gate.db";
/// Default tool manifest path (relative to the config file).
pub const DEFAULT_TOOLS_PATH: &str = "tools.toml";
/// Default timeout of a service HTTP call.
pub const DEFAULT_SERVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on connections that have not authenticated yet, in total (see
/// [`GatewayConfig::max_unauthenticated_connections`]).
pub const DEFAULT_MAX_UNAUTHENTICATED: usize = 512;
/// Default cap on connections that have not authenticated yet, per client address.
pub const DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS: usize = 128;
/// Default cap on concurrent requests (and so connections) to one service.
pub const DEFAULT_SERVICE_MAX_CONNECTIONS: usize = 32;
/// Default Telegram Bot API base URL.
pub const DEFAULT_TELEGRAM_API_URL: &str = "https://api.telegram.org";
/// Default name of the web approver (decisions are attributed `web:web`).
pub const DEFAULT_WEB_APPROVER_NAME: &str = "web";
/// Tokens shorter than this draw a warning.
const MIN_TOKEN_LEN: usize = 16;

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
    /// Non-fatal remarks found while loading (short tokens, no approvers, ...).
    pub warnings: Vec<Issue>,
}

/// `gateway:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Listen address of the WebSocket endpoint (default `0.0.0.0`).
    pub host: String,
    /// Listen port of the WebSocket endpoint (default 8443).
    pub port: u16,
    /// TLS certificate and key; required by `serve` unless `--insecure`.
    pub tls: Option<TlsConfig>,
    /// Listen address of the HTTP side (default `127.0.0.1`).
    pub health_host: String,
    /// Listen port of the HTTP side (default 8080).
    pub health_port: u16,
    /// Most connections that have not authenticated yet, in total (default 512). When a new
    /// connection would exceed it, the oldest unauthenticated connection is dropped.
    /// Authenticated agents do not count.
    pub max_unauthenticated_connections: usize,
    /// Most connections that have not authenticated yet from one client address (default
    /// 128); the address's oldest is dropped first.
    pub max_unauthenticated_per_address: usize,
}

impl GatewayConfig {
    /// Whether the WebSocket listener and the HTTP side would bind the same address: the
    /// same port (other than 0, an ephemeral port) on the same host, or on hosts of which one
    /// is a wildcard (`0.0.0.0`, `::`) that covers the other. The second bind would fail.
    pub fn listeners_overlap(&self) -> bool {
        fn normal(host: &str) -> String {
            let host = host.trim().trim_start_matches('[').trim_end_matches(']');
            match host.to_ascii_lowercase().as_str() {
                "localhost" => "127.0.0.1".to_owned(),
                other => other.to_owned(),
            }
        }
        fn wildcard(host: &str) -> bool {
            matches!(host, "0.0.0.0" | "::" | "")
        }
        if self.port == 0 || self.port != self.health_port {
            return false;
        }
        let (a, b) = (normal(&self.host), normal(&self.health_host));
        a == b || wildcard(&a) || wildcard(&b)
    }
}

/// `gateway.tls:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// One agent allowed to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The agent's id (`[A-Za-z0-9_.-]`, 1-64 characters), used in audit records and rule scoping.
    pub id: String,
    /// The token the agent authenticates with.
    pub token: Secret,
}

/// `services.<name>:`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// The service name (its key under `services:`).
    pub name: String,
    /// Base URL, `http://` or `https://`, without a trailing slash.
    pub url: String,
    /// How the gateway authenticates to the service.
    pub auth: Option<ServiceAuth>,
    /// Timeout of one HTTP call (default 10 s).
    pub timeout: Duration,
    /// How to check that the service is up.
    pub health: HealthCheck,
    /// Error message templates by HTTP status; `{status}` and `{body}` are replaced.
    pub errors: BTreeMap<u16, String>,
    /// Most requests (and so connections) to this service at once (default 32); further
    /// calls wait their turn.
    pub max_connections: usize,
}

/// Credentials for a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAuth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// A custom header.
    Header {
        /// Header name.
        name: String,
        /// Header value.
        value: Secret,
    },
    /// A query parameter appended to every request.
    Query {
        /// Parameter name.
        name: String,
        /// Parameter value.
        value: Secret,
    },
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
}

/// `services.<name>.health:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// HTTP method (upper case, default `GET`).
    pub method: String,
    /// Path appended to the service URL (default `/`).
    pub path: String,
    /// Status that means healthy (default 200).
    pub expect_status: u16,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            method: "GET".to_string(),
            path: "/".to_string(),
            expect_status: 200,
        }
    }
}

/// `storage:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// SQLite database file (default `data/agent-gate.db`).
    pub path: PathBuf,
    /// `sync`: `background` (default: answers once a write is committed, which survives a crash
    /// or `kill -9`; the disk is synced every 50 ms) or `always` (answers only after the disk
    /// sync, which also survives a power cut).
    pub sync: SyncMode,
}

/// One approver (who is asked when a policy says `ask`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproverConfig {
    /// A Telegram bot.
    Telegram(TelegramConfig),
    /// The web approval page on the HTTP side.
    Web(WebApproverConfig),
}

impl ApproverConfig {
    /// `telegram` or `web`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApproverConfig::Telegram(_) => "telegram",
            ApproverConfig::Web(_) => "web",
        }
    }
}

/// A Telegram approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramConfig {
    /// Bot token.
    pub token: Secret,
    /// Chat the approval messages go to (negative for groups).
    pub chat_id: i64,
    /// Telegram user ids whose button presses count (at least one).
    pub allowed_users: Vec<i64>,
    /// Bot API base URL (default `https://api.telegram.org`; tests point it elsewhere).
    pub api_url: String,
}

/// The web approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebApproverConfig {
    /// Token required to use the approval page; without one the page relies on the HTTP side
    /// listening on a private address only.
    pub token: Option<Secret>,
    /// Who decides through the page: decisions are attributed `web:<name>` (default `web`).
    pub name: String,
}

/// `rate_limit:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Requests per minute per agent (default 60).
    pub max_requests_per_minute: u32,
    /// Requests waiting for approval per agent (default 10).
    pub max_pending_approvals: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            max_requests_per_minute: 60,
            max_pending_approvals: 10,
        }
    }
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

    /// The agent whose token matches `presented` (constant-time per agent), if any.
    pub fn agent_by_token(&self, presented: &str) -> Option<&AgentConfig> {
        let mut found = None;
        for agent in &self.agents {
            if agent.token.matches(presented) && found.is_none() {
                found = Some(agent);
            }
        }
        found
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

    let gateway = gateway(&mut ctx, &root);
    let agents = agents(&mut ctx, &root);
    let mut tools = tool_paths(&mut ctx, &root.field("tools"), &base);
    let services = services(&mut ctx, &root.field("services"), &base, &mut tools);
    if tools.is_empty() {
        tools.push(base.join(DEFAULT_TOOLS_PATH));
    }
    let storage = storage(&mut ctx, &root.field("storage"));
    let approvers = approvers(&mut ctx, &root);
    let approval_timeout = ctx
        .int(&root.field("approval_timeout"), 1, 7 * 24 * 3600)
        .and_then(|n| u64::try_from(n).ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(DEFAULT_APPROVAL_TIMEOUT_SECS));
    let rate_limit = rate_limit(&mut ctx, &root.field("rate_limit"));

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

fn gateway(ctx: &mut Ctx, root: &Obj<'_>) -> GatewayConfig {
    let mut gw = GatewayConfig {
        host: DEFAULT_GATEWAY_HOST.to_string(),
        port: DEFAULT_GATEWAY_PORT,
        tls: None,
        health_host: DEFAULT_HEALTH_HOST.to_string(),
        health_port: DEFAULT_HEALTH_PORT,
        max_unauthenticated_connections: DEFAULT_MAX_UNAUTHENTICATED,
        max_unauthenticated_per_address: DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
    };
    let Some(obj) = ctx.obj(&root.field("gateway")) else {
        return gw;
    };
    obj.check_keys(
        ctx,
        &[
            "host",
            "port",
            "tls",
            "health_host",
            "health_port",
            "max_unauthenticated_connections",
            "max_unauthenticated_per_address",
        ],
    );
    if let Some(n) = ctx
        .int(&obj.field("max_unauthenticated_connections"), 1, 1_000_000)
        .and_then(|n| usize::try_from(n).ok())
    {
        gw.max_unauthenticated_connections = n;
    }
    if let Some(n) = ctx
        .int(&obj.field("max_unauthenticated_per_address"), 1, 1_000_000)
        .and_then(|n| usize::try_from(n).ok())
    {
        gw.max_unauthenticated_per_address = n;
    }
    if let Some(host) = host(ctx, &obj.field("host")) {
        gw.host = host;
    }
    if let Some(port) = ctx.port(&obj.field("port")) {
        gw.port = port;
    }
    if let Some(host) = host(ctx, &obj.field("health_host")) {
        gw.health_host = host;
    }
    if let Some(port) = ctx.port(&obj.field("health_port")) {
        gw.health_port = port;
    }
    if gw.listeners_overlap() {
        ctx.error(
            &obj.field("health_port").path,
            format!(
                "the HTTP side ({}:{}) would listen on the agents' port ({}:{}); give gateway.health_port another port",
                gw.health_host, gw.health_port, gw.host, gw.port
            ),
        );
    }
    if let Some(tls) = ctx.obj(&obj.field("tls")) {
        tls.check_keys(ctx, &["cert", "key"]);
        let cert = ctx.req_nonempty(&tls.field("cert"));
        let key = ctx.req_nonempty(&tls.field("key"));
        if let (Some(cert), Some(key)) = (cert, key) {
            gw.tls = Some(TlsConfig {
                cert: cert.into(),
                key: key.into(),
            });
        }
    }
    gw
}

fn host(ctx: &mut Ctx, f: &Field<'_>) -> Option<String> {
    let s = ctx.string(f)?;
    let s = s.trim();
    if s.is_empty() || s.contains(char::is_whitespace) || s.contains('/') {
        ctx.error(
            &f.path,
            format!("expected a host name or IP address such as 0.0.0.0 or 127.0.0.1, got {s:?}"),
        );
        return None;
    }
    Some(s.to_string())
}

fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn agents(ctx: &mut Ctx, root: &Obj<'_>) -> Vec<AgentConfig> {
    let mut agents: Vec<(String, AgentConfig)> = Vec::new();
    let single = root.has("agent");
    let list = root.has("agents");
    if single && list {
        ctx.error(
            "agent",
            "both `agent:` and `agents:` are given; use `agents:` (a list of {id, token}) and move this token into it with id `default`",
        );
        return Vec::new();
    }
    if single {
        if let Some(obj) = ctx.obj(&root.field("agent")) {
            obj.check_keys(ctx, &["token", "id"]);
            let id = ctx
                .string(&obj.field("id"))
                .unwrap_or_else(|| "default".to_string());
            if let Some(token) = ctx.secret(&obj.field("token")) {
                agents.push((obj.field("token").path, AgentConfig { id, token }));
            }
        }
    } else if list {
        if let Some(items) = ctx.list(&root.field("agents")) {
            for item in items {
                if item.value.is_none() {
                    ctx.error(&item.path, "expected a mapping {id, token}, got nothing");
                    continue;
                }
                let Some(obj) = ctx.obj(&item) else { continue };
                obj.check_keys(ctx, &["id", "token"]);
                let id_field = obj.field("id");
                let id = ctx.req_string(&id_field);
                if let Some(id) = &id
                    && !valid_agent_id(id)
                {
                    ctx.error(
                        &id_field.path,
                        format!("expected an agent id of 1-64 letters, digits, `_`, `-` or `.`, got {id:?}"),
                    );
                }
                let token = ctx.secret(&obj.field("token"));
                if let (Some(id), Some(token)) = (id, token) {
                    agents.push((obj.field("token").path, AgentConfig { id, token }));
                }
            }
        }
    } else {
        ctx.error(
            "agents",
            "missing: expected a list of agents, e.g. `agents: [{id: default, token: \"${AGENT_TOKEN}\"}]` (or the upstream `agent: {token: ...}`)",
        );
    }
    for i in 0..agents.len() {
        for j in 0..i {
            if agents[i].1.id == agents[j].1.id {
                let path = agents[i].0.trim_end_matches(".token").to_string();
                let msg = format!(
                    "duplicate agent id {:?} (also at {}); every agent needs its own id",
                    agents[i].1.id,
                    agents[j].0.trim_end_matches(".token")
                );
                ctx.error(&format!("{path}.id"), msg);
            }
            if agents[i].1.token == agents[j].1.token {
                let msg = format!(
                    "the same token as {}; every agent needs its own token (the token identifies the agent)",
                    agents[j].0
                );
                ctx.error(&agents[i].0, msg);
            }
        }
        if agents[i].1.token.expose().chars().count() < MIN_TOKEN_LEN {
            let msg = format!(
                "this token is shorter than {MIN_TOKEN_LEN} characters; use a long random token (e.g. `openssl rand -hex 32`)"
            );
            ctx.warn(&agents[i].0, msg);
        }
    }
    agents.into_iter().map(|(_, a)| a).collect()
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

const SERVICE_KEYS: &[&str] = &[
    "url",
    "token",
    "auth",
    "timeout",
    "health",
    "errors",
    "max_connections",
    "handler",
    "handler_class",
    "tools",
];

fn services(
    ctx: &mut Ctx,
    f: &Field<'_>,
    base: &Path,
    tools: &mut Vec<PathBuf>,
) -> IndexMap<String, ServiceConfig> {
    let mut out = IndexMap::new();
    let Some(obj) = ctx.obj(f) else {
        return out;
    };
    for (name, field) in obj.entries(ctx) {
        if field.value.is_none() {
            ctx.error(
                &field.path,
                "expected a mapping with at least `url`, got nothing",
            );
            continue;
        }
        let Some(svc) = ctx.obj(&field) else { continue };
        svc.check_keys(ctx, SERVICE_KEYS);
        let url = url(ctx, &svc.field("url"));
        let auth = if svc.has("token") && svc.has("auth") {
            ctx.error(
                &svc.field("token").path,
                "both `token` and `auth` are given; `token` is short for `auth: {type: bearer, token: ...}`, keep one",
            );
            None
        } else if svc.has("token") {
            ctx.secret(&svc.field("token"))
                .map(|token| ServiceAuth::Bearer { token })
        } else {
            ctx.obj(&svc.field("auth")).and_then(|a| auth(ctx, &a))
        };
        let timeout = ctx
            .seconds(&svc.field("timeout"))
            .unwrap_or(DEFAULT_SERVICE_TIMEOUT);
        let health = ctx
            .obj(&svc.field("health"))
            .map(|h| health(ctx, &h))
            .unwrap_or_default();
        let errors = errors(ctx, &svc.field("errors"));
        let max_connections = ctx
            .int(&svc.field("max_connections"), 1, 100_000)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_SERVICE_MAX_CONNECTIONS);
        if let Some(handler) = ctx.string(&svc.field("handler"))
            && handler != "http"
        {
            ctx.error(
                &svc.field("handler").path,
                format!("unsupported handler {handler:?}: only `http` is supported (describe the service's tools in a tool manifest)"),
            );
        }
        let class_field = svc.field("handler_class");
        if let Some(class) = ctx.string(&class_field)
            && !class.trim().is_empty()
        {
            ctx.error(
                &class_field.path,
                format!("custom handler classes of the Python gateway are not supported (got {class:?}); describe the service's tools in a tool manifest"),
            );
        }
        let tools_field = svc.field("tools");
        if let Some(p) = ctx.string(&tools_field) {
            if p.ends_with(".yaml") || p.ends_with(".yml") {
                ctx.error(
                    &tools_field.path,
                    "YAML tool files of the Python gateway are not supported; describe the tools in a TOML manifest and list it under the top-level `tools:`",
                );
            } else if !p.trim().is_empty() {
                tools.push(base.join(p));
            }
        }
        if let Some(url) = url {
            out.insert(
                name.clone(),
                ServiceConfig {
                    name,
                    url,
                    auth,
                    timeout,
                    health,
                    errors,
                    max_connections,
                },
            );
        }
    }
    out
}

fn url(ctx: &mut Ctx, f: &Field<'_>) -> Option<String> {
    let s = ctx.req_string(f)?;
    let trimmed = s.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Some(trimmed.to_string())
        }
        _ => {
            ctx.error(
                &f.path,
                format!(
                    "expected an http:// or https:// URL such as http://homeassistant.local:8123, got {:?}",
                    redact_userinfo(&s)
                ),
            );
            None
        }
    }
}

/// The URL with any `user:password@` part replaced by `***@`, for error messages.
fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest.get(..authority_end).and_then(|a| a.rfind('@')) {
        Some(at) => format!("{scheme}***{}", rest.get(at..).unwrap_or_default()),
        None => url.to_string(),
    }
}

fn auth(ctx: &mut Ctx, obj: &Obj<'_>) -> Option<ServiceAuth> {
    const TYPES: &[&str] = &["bearer", "header", "query", "basic"];
    let ty = ctx.req_string(&obj.field("type"))?;
    // Our names first, then the upstream spellings they replace.
    let pick = |ours: &str, upstream: &str| -> Field<'_> {
        if obj.has(ours) || !obj.has(upstream) {
            obj.field(ours)
        } else {
            obj.field(upstream)
        }
    };
    match ty.as_str() {
        "bearer" => {
            obj.check_keys(ctx, &["type", "token"]);
            ctx.secret(&obj.field("token"))
                .map(|token| ServiceAuth::Bearer { token })
        }
        "header" | "query" => {
            let (name_key, upstream_name) = if ty == "header" {
                ("name", "header_name")
            } else {
                ("name", "query_param")
            };
            obj.check_keys(ctx, &["type", name_key, upstream_name, "value", "token"]);
            let name_f = pick(name_key, upstream_name);
            let value_f = pick("value", "token");
            let name = ctx.req_nonempty(&name_f);
            let value = ctx.secret(&value_f);
            let (name, value) = (name?, value?);
            Some(if ty == "header" {
                ServiceAuth::Header { name, value }
            } else {
                ServiceAuth::Query { name, value }
            })
        }
        "basic" => {
            obj.check_keys(ctx, &["type", "username", "password"]);
            let username = ctx.req_string(&obj.field("username"));
            let password = ctx.secret(&obj.field("password"));
            Some(ServiceAuth::Basic {
                username: username?,
                password: password?,
            })
        }
        other => {
            let hint = super::walk::suggest(other, TYPES.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            ctx.error(
                &obj.field("type").path,
                format!("unknown auth type {other:?}{hint}; expected one of: bearer, header, query, basic"),
            );
            None
        }
    }
}

fn health(ctx: &mut Ctx, obj: &Obj<'_>) -> HealthCheck {
    obj.check_keys(ctx, &["method", "path", "expect_status", "expected_status"]);
    let mut h = HealthCheck::default();
    if let Some(m) = ctx.string(&obj.field("method")) {
        let upper = m.trim().to_ascii_uppercase();
        if ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].contains(&upper.as_str()) {
            h.method = upper;
        } else {
            ctx.error(
                &obj.field("method").path,
                format!("expected an HTTP method (GET, HEAD, POST, ...), got {m:?}"),
            );
        }
    }
    if let Some(p) = ctx.string(&obj.field("path")) {
        if p.starts_with('/') {
            h.path = p;
        } else {
            ctx.error(
                &obj.field("path").path,
                format!("expected a path starting with `/`, got {p:?}"),
            );
        }
    }
    let status_field = if obj.has("expected_status") {
        obj.field("expected_status")
    } else {
        obj.field("expect_status")
    };
    if let Some(s) = ctx.int(&status_field, 100, 599) {
        h.expect_status = u16::try_from(s).unwrap_or(200);
    }
    h
}

fn errors(ctx: &mut Ctx, f: &Field<'_>) -> BTreeMap<u16, String> {
    let mut out = BTreeMap::new();
    let Some(value) = f.value else {
        return out;
    };
    // (path of the status, the status if given, the message field)
    let mut entries: Vec<(String, Option<i64>, Field<'_>)> = Vec::new();
    match value {
        // Ours: `errors: {404: "..."}`.
        serde_yaml_ng::Value::Mapping(_) => {
            if let Some(obj) = ctx.obj(f) {
                for (key, field) in obj.entries(ctx) {
                    let status = key
                        .trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|s| (100..=599).contains(s));
                    if status.is_none() {
                        ctx.error(
                            &field.path,
                            format!("expected an HTTP status 100-599 as the key, got {key:?}"),
                        );
                        continue;
                    }
                    entries.push((field.path.clone(), status, field));
                }
            }
        }
        // Upstream: `errors: [{status: 404, message: "..."}]`.
        serde_yaml_ng::Value::Sequence(_) => {
            for item in ctx.list(f).unwrap_or_default() {
                let Some(obj) = ctx.req_obj(&item) else {
                    continue;
                };
                obj.check_keys(ctx, &["status", "message"]);
                let status_f = obj.field("status");
                if status_f.value.is_none() {
                    ctx.error(&status_f.path, "missing: expected an HTTP status 100-599");
                    continue;
                }
                let Some(status) = ctx.int(&status_f, 100, 599) else {
                    continue;
                };
                entries.push((status_f.path.clone(), Some(status), obj.field("message")));
            }
        }
        other => {
            ctx.error(
                &f.path,
                format!(
                    "expected a mapping of HTTP status to message, e.g. `404: \"not found: {{body}}\"`, got {}",
                    describe(other)
                ),
            );
        }
    }
    for (status_path, status, message_f) in entries {
        let Some(message) = ctx.req_string(&message_f) else {
            continue;
        };
        check_template(ctx, &message_f.path, &message);
        match status.and_then(|s| u16::try_from(s).ok()) {
            Some(status) => {
                if out.insert(status, message).is_some() {
                    ctx.error(&status_path, format!("status {status} is given twice"));
                }
            }
            None => ctx.error(&status_path, "expected an HTTP status 100-599"),
        }
    }
    out
}

fn check_template(ctx: &mut Ctx, path: &str, template: &str) {
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if name != "status" && name != "body" {
            ctx.error(
                path,
                format!("unknown placeholder `{{{name}}}`; only `{{status}}` and `{{body}}` are replaced"),
            );
        }
        rest = &after[end + 1..];
    }
}

fn storage(ctx: &mut Ctx, f: &Field<'_>) -> StorageConfig {
    let mut s = StorageConfig {
        path: PathBuf::from(DEFAULT_STORAGE_PATH),
        sync: SyncMode::default(),
    };
    let Some(obj) = ctx.obj(f) else { return s };
    obj.check_keys(ctx, &["type", "path", "sync"]);
    if let Some(name) = ctx.string(&obj.field("sync")) {
        match SyncMode::ALL.into_iter().find(|mode| mode.as_str() == name) {
            Some(mode) => s.sync = mode,
            None => ctx.error(
                &obj.field("sync").path,
                format!(
                    "unknown sync mode {name:?}; expected one of: background (answer at commit, \
                     survives a crash), always (answer after the disk sync, survives a power cut)"
                ),
            ),
        }
    }
    if let Some(ty) = ctx.string(&obj.field("type"))
        && ty != "sqlite"
    {
        ctx.error(
            &obj.field("type").path,
            format!("unsupported storage type {ty:?}: only `sqlite` is supported"),
        );
    }
    if let Some(path) = ctx.string(&obj.field("path")) {
        if path.trim().is_empty() {
            ctx.error(&obj.field("path").path, "must not be empty");
        } else {
            s.path = PathBuf::from(path);
        }
    }
    s
}

const APPROVER_TYPES: &[&str] = &["telegram", "web"];

fn approvers(ctx: &mut Ctx, root: &Obj<'_>) -> Vec<ApproverConfig> {
    let mut out = Vec::new();
    if root.has("messenger") && root.has("approvers") {
        ctx.error(
            "messenger",
            "both `messenger:` and `approvers:` are given; keep one (`approvers:` is the list form)",
        );
        return out;
    }
    if let Some(m) = ctx.obj(&root.field("messenger")) {
        // Upstream: `messenger: {type: telegram, telegram: {token, chat_id, allowed_users}}`.
        m.check_keys(ctx, &["type", "telegram", "web"]);
        let Some(ty) = ctx.req_string(&m.field("type")) else {
            return out;
        };
        match ty.as_str() {
            "telegram" => {
                if let Some(tg) = ctx.req_obj(&m.field("telegram")) {
                    tg.check_keys(ctx, &["token", "chat_id", "allowed_users", "api_url"]);
                    if let Some(t) = telegram(ctx, &tg) {
                        out.push(ApproverConfig::Telegram(t));
                    }
                }
            }
            "web" => {
                let web = ctx.obj(&m.field("web"));
                if let Some(w) = &web {
                    w.check_keys(ctx, &["token", "name"]);
                }
                let token = web.as_ref().and_then(|w| {
                    let f = w.field("token");
                    if f.value.is_some() {
                        ctx.secret(&f)
                    } else {
                        None
                    }
                });
                let name = web_name(ctx, web.as_ref());
                out.push(ApproverConfig::Web(WebApproverConfig { token, name }));
            }
            other => unknown_approver(ctx, &m.field("type").path, other),
        }
        return out;
    }
    let Some(items) = ctx.list(&root.field("approvers")) else {
        return out;
    };
    for item in items {
        let Some(obj) = ctx.req_obj(&item) else {
            continue;
        };
        let Some(ty) = ctx.req_string(&obj.field("type")) else {
            continue;
        };
        match ty.as_str() {
            "telegram" => {
                obj.check_keys(
                    ctx,
                    &["type", "token", "chat_id", "allowed_users", "api_url"],
                );
                if let Some(t) = telegram(ctx, &obj) {
                    out.push(ApproverConfig::Telegram(t));
                }
            }
            "web" => {
                obj.check_keys(ctx, &["type", "token", "name"]);
                let f = obj.field("token");
                let token = if f.value.is_some() {
                    ctx.secret(&f)
                } else {
                    None
                };
                let name = web_name(ctx, Some(&obj));
                out.push(ApproverConfig::Web(WebApproverConfig { token, name }));
            }
            other => unknown_approver(ctx, &obj.field("type").path, other),
        }
    }
    if out
        .iter()
        .filter(|a| matches!(a, ApproverConfig::Web(_)))
        .count()
        > 1
    {
        ctx.error(
            "approvers",
            "more than one `type: web` approver; there is one web approval page",
        );
    }
    out
}

/// The optional `name:` of a web approver (default `web`): letters, digits, `_`, `-`, `.`
/// and `@` only, as it becomes part of the `web:<name>` actor in the audit log.
fn web_name(ctx: &mut Ctx, obj: Option<&Obj<'_>>) -> String {
    let Some(obj) = obj else {
        return DEFAULT_WEB_APPROVER_NAME.to_string();
    };
    let f = obj.field("name");
    if f.value.is_none() {
        return DEFAULT_WEB_APPROVER_NAME.to_string();
    }
    let Some(name) = ctx.req_nonempty(&f) else {
        return DEFAULT_WEB_APPROVER_NAME.to_string();
    };
    let valid = name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if !valid {
        ctx.error(
            &f.path,
            format!(
                "invalid web approver name {name:?}: use at most 64 letters, digits, `_`, `-`, `.` or `@` (it is recorded as `web:<name>`)"
            ),
        );
        return DEFAULT_WEB_APPROVER_NAME.to_string();
    }
    name
}

fn unknown_approver(ctx: &mut Ctx, path: &str, ty: &str) {
    let hint = super::walk::suggest(ty, APPROVER_TYPES.iter().copied())
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    ctx.error(
        path,
        format!("unsupported approver type {ty:?}{hint}; expected one of: telegram, web"),
    );
}

fn telegram(ctx: &mut Ctx, obj: &Obj<'_>) -> Option<TelegramConfig> {
    let token = ctx.secret(&obj.field("token"));
    let chat_id = ctx.req_int(&obj.field("chat_id"), i64::MIN, i64::MAX);
    let users_field = obj.field("allowed_users");
    let mut allowed_users = Vec::new();
    if users_field.value.is_none() {
        ctx.error(
            &users_field.path,
            "missing: expected a non-empty list of Telegram user ids who may approve",
        );
    } else if let Some(items) = ctx.list(&users_field) {
        if items.is_empty() {
            ctx.error(
                &users_field.path,
                "must be a non-empty list of Telegram user ids (nobody could approve)",
            );
        }
        for item in items {
            if item.value.is_none() {
                ctx.error(&item.path, "expected a Telegram user id, got nothing");
            } else if let Some(id) = ctx.int(&item, 1, i64::MAX) {
                allowed_users.push(id);
            }
        }
    }
    let api_url = match obj.field("api_url") {
        f if f.value.is_some() => url(ctx, &f)?,
        _ => DEFAULT_TELEGRAM_API_URL.to_string(),
    };
    let (token, chat_id) = (token?, chat_id?);
    if allowed_users.is_empty() {
        return None;
    }
    Some(TelegramConfig {
        token,
        chat_id,
        allowed_users,
        api_url,
    })
}

fn rate_limit(ctx: &mut Ctx, f: &Field<'_>) -> RateLimitConfig {
    let mut r = RateLimitConfig::default();
    let Some(obj) = ctx.obj(f) else { return r };
    obj.check_keys(ctx, &["max_requests_per_minute", "max_pending_approvals"]);
    if let Some(n) = ctx.int(&obj.field("max_requests_per_minute"), 1, 1_000_000) {
        r.max_requests_per_minute = u32::try_from(n).unwrap_or(r.max_requests_per_minute);
    }
    if let Some(n) = ctx.int(&obj.field("max_pending_approvals"), 1, 100_000) {
        r.max_pending_approvals = u32::try_from(n).unwrap_or(r.max_pending_approvals);
    }
    r
}
