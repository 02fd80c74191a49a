//! `agent-gate healthcheck`: asks a running gateway's HTTP side whether it is healthy
//! (`GET http://health_host:health_port/healthz`, the host and port from `config.yaml`).
//! Exit 0 when it answers 200, 1 otherwise, with one short line saying why. This is the
//! Docker image's `HEALTHCHECK` (the image has no shell, curl or wget).
//!
//! A `health_host` of `0.0.0.0` or `::` (listen on every interface) is probed on the
//! loopback address of the same family.
//!
//! Only `gateway:` is read ([`ConfigOutline`]): the variables of tokens need not be set.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use crate::config::{ConfigOutline, GatewayConfig};

/// Arguments of `agent-gate healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The gateway configuration (for `gateway.health_host` and `health_port`).
    #[arg(
        long,
        short = 'c',
        env = "AGENT_GATE_CONFIG",
        default_value = "config.yaml"
    )]
    pub config: PathBuf,
    /// Probe this URL instead of the one the configuration gives
    /// (e.g. `http://127.0.0.1:8080/healthz`).
    #[arg(long)]
    pub url: Option<String>,
    /// How long to wait for the answer, in seconds.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

/// The URL of the health endpoint of a gateway with this `gateway:` configuration.
pub fn health_url(gateway: &GatewayConfig) -> String {
    format!("{}/healthz", http_base(gateway))
}

/// `http://host:port` of the HTTP side of a gateway with this `gateway:` configuration (a
/// listener on every interface is reached by its loopback address).
pub fn http_base(gateway: &GatewayConfig) -> String {
    let host = match gateway.health_host.as_str() {
        "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" | "[::]" => "[::1]".to_owned(),
        host if host.contains(':') && !host.starts_with('[') => format!("[{host}]"),
        host => host.to_owned(),
    };
    format!("http://{host}:{}", gateway.health_port)
}

/// Runs `agent-gate healthcheck`: 0 when the gateway answers 200, 1 otherwise.
pub fn run(args: &HealthcheckArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut err = std::io::stderr();
    let url = match &args.url {
        Some(url) => url.clone(),
        None => match ConfigOutline::load(&args.config) {
            Ok(config) => health_url(&config.gateway),
            Err(e) => {
                writeln!(err, "unhealthy: cannot read the configuration: {e}")?;
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match runtime.block_on(probe(&url, Duration::from_secs(args.timeout.max(1)))) {
        Ok(line) => {
            writeln!(out, "{line}")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(line) => {
            writeln!(err, "{line}")?;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `Ok(message)` when `url` answers 200, `Err(message)` otherwise.
async fn probe(url: &str, timeout: Duration) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("unhealthy: cannot set up the HTTP client: {e}"))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("unhealthy: {url} did not answer: {e}"))?;
    let status = response.status();
    let body: Option<Value> = response.json().await.ok();
    let summary = body
        .as_ref()
        .and_then(|b| b.get("status"))
        .and_then(Value::as_str)
        .map(|s| format!(" (status {s})"))
        .unwrap_or_default();
    if status.as_u16() == 200 {
        Ok(format!("healthy: {url} answered 200{summary}"))
    } else {
        let failing = body.as_ref().map(failing_parts).unwrap_or_default();
        Err(format!(
            "unhealthy: {url} answered {}{summary}{failing}",
            status.as_u16()
        ))
    }
}

/// `; failing: store, telegram` from a `/healthz` body.
fn failing_parts(body: &Value) -> String {
    let mut parts = Vec::new();
    if body["store"]["ok"] == Value::Bool(false) {
        parts.push("store".to_owned());
    }
    if body["config"]["ok"] == Value::Bool(false) {
        parts.push("config (last reload refused)".to_owned());
    }
    for key in ["approvers", "services"] {
        for item in body[key].as_array().into_iter().flatten() {
            if item["ok"] == Value::Bool(false) {
                parts.push(item["name"].as_str().unwrap_or("?").to_owned());
            }
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; failing: {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcard_hosts_are_probed_on_loopback() {
        let text = "agents: [{id: a, token: aaaaaaaaaaaaaaaaaaaa}]\ngateway: {health_host: 0.0.0.0, health_port: 9090}\n";
        let config =
            crate::config::Config::parse(text, "/tmp/config.yaml", &crate::config::ProcessEnv)
                .unwrap()
                .gateway;
        assert_eq!(health_url(&config), "http://127.0.0.1:9090/healthz");
        let mut v6 = config.clone();
        v6.health_host = "::".into();
        assert_eq!(health_url(&v6), "http://[::1]:9090/healthz");
        v6.health_host = "fd00::1".into();
        assert_eq!(health_url(&v6), "http://[fd00::1]:9090/healthz");
    }

    #[test]
    fn failing_parts_are_named() {
        let body = json!({
            "status": "unhealthy",
            "store": {"ok": true},
            "approvers": [{"name": "telegram", "ok": false}, {"name": "web", "ok": true}],
            "services": [{"name": "homeassistant", "ok": false}]
        });
        assert_eq!(failing_parts(&body), "; failing: telegram, homeassistant");
        assert_eq!(failing_parts(&json!({"status": "ok"})), "");
    }
}
