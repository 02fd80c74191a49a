//! `gateway:`: where the agents' WebSocket endpoint and the HTTP side listen, and TLS.

use std::path::PathBuf;

use crate::config::Secret;
use crate::config::walk::{Ctx, Field, Obj};

/// Admin tokens shorter than this draw a warning.
const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Default gateway (WebSocket) port.
pub const DEFAULT_GATEWAY_PORT: u16 = 8443;
/// Default gateway host.
pub const DEFAULT_GATEWAY_HOST: &str = "0.0.0.0";
/// Default host of the HTTP side (health, metrics, web approvals).
pub const DEFAULT_HEALTH_HOST: &str = "127.0.0.1";
/// Default port of the HTTP side.
pub const DEFAULT_HEALTH_PORT: u16 = 8080;
/// Default cap on connections that have not authenticated yet, in total (see
/// [`GatewayConfig::max_unauthenticated_connections`]).
pub const DEFAULT_MAX_UNAUTHENTICATED: usize = 512;
/// Default cap on connections that have not authenticated yet, per client address.
pub const DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS: usize = 128;
/// Default cap on authenticated connections per agent.
pub const DEFAULT_MAX_CONNECTIONS_PER_AGENT: usize = 8;

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
    /// Most authenticated connections one agent may hold at once (default 8); one more is
    /// refused with close code 4000.
    pub max_connections_per_agent: usize,
    /// The admin token (`gateway.admin_token`, often `"${AGENT_GATE_ADMIN_TOKEN}"`): what
    /// `agent-gate reload` presents to `POST /admin/reload` on the HTTP side as
    /// `Authorization: Bearer`. Without it the admin endpoint is off (SIGHUP still reloads).
    pub admin_token: Option<Secret>,
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

/// Reads `gateway:` (defaults where it or a key is missing).
pub(super) fn load(ctx: &mut Ctx, root: &Obj<'_>) -> GatewayConfig {
    let mut gw = GatewayConfig {
        host: DEFAULT_GATEWAY_HOST.to_string(),
        port: DEFAULT_GATEWAY_PORT,
        tls: None,
        health_host: DEFAULT_HEALTH_HOST.to_string(),
        health_port: DEFAULT_HEALTH_PORT,
        max_unauthenticated_connections: DEFAULT_MAX_UNAUTHENTICATED,
        max_unauthenticated_per_address: DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS,
        max_connections_per_agent: DEFAULT_MAX_CONNECTIONS_PER_AGENT,
        admin_token: None,
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
            "max_connections_per_agent",
            "admin_token",
        ],
    );
    if obj.has("admin_token") {
        let field = obj.field("admin_token");
        gw.admin_token = ctx.secret(&field);
        if gw
            .admin_token
            .as_ref()
            .is_some_and(|t| t.expose().chars().count() < MIN_ADMIN_TOKEN_LEN)
        {
            ctx.warn(
                &field.path,
                format!(
                    "the admin token is shorter than {MIN_ADMIN_TOKEN_LEN} characters; use a long random one (`agent-gate token new --agent admin` prints one)"
                ),
            );
        }
    }
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
    if let Some(n) = ctx
        .int(&obj.field("max_connections_per_agent"), 1, 10_000)
        .and_then(|n| usize::try_from(n).ok())
    {
        gw.max_connections_per_agent = n;
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
