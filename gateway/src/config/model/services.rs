//! `services:`: the HTTP services the tools call, how the gateway authenticates to them,
//! how their health is checked and how their errors are worded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use crate::config::secret::Secret;
use crate::config::walk::{Ctx, Field, Obj, describe, suggest};

/// Default timeout of a service HTTP call.
pub const DEFAULT_SERVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on concurrent requests (and so connections) to one service.
pub const DEFAULT_SERVICE_MAX_CONNECTIONS: usize = 32;

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

/// Reads `services:`; a service's own `tools:` manifest is added to `tools`.
pub(super) fn load(
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

/// An `http://` or `https://` URL without its trailing slash.
pub(super) fn url(ctx: &mut Ctx, f: &Field<'_>) -> Option<String> {
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
            let hint = suggest(other, TYPES.iter().copied())
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
