//! `mcp:`: the Model Context Protocol front on the agent listener (Streamable HTTP).

use std::time::Duration;

use crate::config::walk::{Ctx, Field};

/// Default `mcp.path`.
pub const DEFAULT_MCP_PATH: &str = "/mcp";
/// Default `mcp.hold_seconds`: common MCP clients give up on a call after 60 s.
pub const DEFAULT_MCP_HOLD_SECONDS: u64 = 50;

/// `mcp:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpConfig {
    /// Whether `/mcp` is served (default true).
    pub enabled: bool,
    /// The endpoint's path on the agent listener (default `/mcp`).
    pub path: String,
    /// How long a call waiting for a human is held open, with progress notifications, before
    /// it is answered "still waiting" (default 50 s), for clients that do not declare Tasks.
    pub hold: Duration,
    /// `Host` values accepted (a name or address, with or without `:port`). Default: the
    /// loopback names and `gateway.host` when it is a specific address. A gateway reached by
    /// another name (a LAN address, a DNS name, a proxy) must list it here.
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted (`https://app.example.com`, with a scheme; `:*` for any port).
    /// Default: pages served from this machine (`http://localhost:*`, `http://127.0.0.1:*`,
    /// `http://[::1]:*`, e.g. a local MCP inspector); a request with any other `Origin` is
    /// refused (403), one without is served (agents are not browsers). An empty list refuses
    /// every `Origin`.
    pub allowed_origins: Vec<String>,
}

impl McpConfig {
    /// The defaults for an agent listener on `gateway_host`.
    pub fn defaults_for(gateway_host: &str) -> Self {
        let mut allowed_hosts: Vec<String> = ["localhost", "127.0.0.1", "::1", "[::1]"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let specific = !matches!(gateway_host, "0.0.0.0" | "::" | "[::]" | "");
        if specific && !allowed_hosts.iter().any(|h| h == gateway_host) {
            allowed_hosts.push(gateway_host.to_owned());
        }
        McpConfig {
            enabled: true,
            path: DEFAULT_MCP_PATH.to_owned(),
            hold: Duration::from_secs(DEFAULT_MCP_HOLD_SECONDS),
            allowed_hosts,
            allowed_origins: ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }
    }
}

fn string_list(ctx: &mut Ctx, f: &Field<'_>) -> Option<Vec<String>> {
    let items = ctx.list(f)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(text) = ctx.req_nonempty(&item) {
            out.push(text);
        }
    }
    Some(out)
}

/// Reads `mcp:` (defaults where it or a key is missing).
pub(super) fn load(ctx: &mut Ctx, f: &Field<'_>, gateway_host: &str) -> McpConfig {
    let mut m = McpConfig::defaults_for(gateway_host);
    let Some(obj) = ctx.obj(f) else { return m };
    obj.check_keys(
        ctx,
        &[
            "enabled",
            "path",
            "hold_seconds",
            "allowed_hosts",
            "allowed_origins",
        ],
    );
    if let Some(enabled) = ctx.boolean(&obj.field("enabled")) {
        m.enabled = enabled;
    }
    let path_field = obj.field("path");
    if let Some(path) = ctx.string(&path_field) {
        let valid = path.starts_with('/')
            && path.len() > 1
            && !path.ends_with('/')
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
        if valid {
            m.path = path;
        } else {
            ctx.error(
                &path_field.path,
                format!(
                    "{path:?} is not a usable path: write it like \"/mcp\" (a leading /, no \
                     trailing /, letters, digits, - _ . and /)"
                ),
            );
        }
    }
    if let Some(seconds) = ctx.int(&obj.field("hold_seconds"), 1, 3600) {
        m.hold = Duration::from_secs(u64::try_from(seconds).unwrap_or(DEFAULT_MCP_HOLD_SECONDS));
    }
    let hosts_field = obj.field("allowed_hosts");
    if let Some(hosts) = string_list(ctx, &hosts_field) {
        if hosts.is_empty() {
            ctx.error(
                &hosts_field.path,
                "must list at least one host (an empty list would accept every Host header and \
                 open the endpoint to DNS rebinding); omit the key for the loopback defaults",
            );
        } else {
            m.allowed_hosts = hosts;
        }
    }
    let origins_field = obj.field("allowed_origins");
    if let Some(origins) = string_list(ctx, &origins_field) {
        for (i, origin) in origins.iter().enumerate() {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                ctx.error(
                    &format!("{}[{i}]", origins_field.path),
                    format!("{origin:?} needs a scheme, e.g. \"https://{origin}\""),
                );
            }
        }
        m.allowed_origins = origins;
    }
    m
}
