//! `agent-gate reload`: asks a running gateway to re-read the agents of `config.yaml` and
//! `permissions.yaml` (as SIGHUP does), through its HTTP side: `POST /admin/reload` with
//! `Authorization: Bearer <gateway.admin_token>`. Useful where signalling the process is
//! awkward (another container, another user).
//!
//! The address comes from `gateway.health_host` / `health_port` of `config.yaml` (or
//! `--url`); the token from `--token` / `AGENT_GATE_ADMIN_TOKEN`, else from
//! `gateway.admin_token` of `config.yaml`. Only `gateway:` is read ([`ConfigOutline`]).
//!
//! Exit 0 when the gateway applied the files (a summary on stdout); 1 when it refused them
//! (every problem on stderr; the gateway keeps its previous agents and permissions), when
//! the token is wrong, or when the gateway cannot be reached.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use super::healthcheck::http_base;
use crate::admin::RELOAD_PATH;
use crate::config::{ConfigOutline, ProcessEnv};

/// Arguments of `agent-gate reload`.
#[derive(Debug, Clone, Args)]
pub struct ReloadArgs {
    /// The gateway configuration (for `gateway.health_host`, `health_port` and `admin_token`).
    #[arg(
        long,
        short = 'c',
        env = "AGENT_GATE_CONFIG",
        default_value = "config.yaml"
    )]
    pub config: PathBuf,
    /// The HTTP side's base URL instead of the one the configuration gives
    /// (e.g. `http://127.0.0.1:8080`).
    #[arg(long)]
    pub url: Option<String>,
    /// The admin token (default: `gateway.admin_token` of the configuration).
    #[arg(long, env = "AGENT_GATE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How long to wait for the answer, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// Runs `agent-gate reload`.
pub fn run(args: &ReloadArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut err = std::io::stderr();
    let (base, token) = match (&args.url, &args.token) {
        (Some(url), Some(token)) => (url.trim_end_matches('/').to_owned(), token.clone()),
        (url, token) => {
            // With --token, gateway.admin_token (and its variable) is not needed.
            let outline = if token.is_some() {
                ConfigOutline::load(&args.config)
            } else {
                ConfigOutline::load_with_admin_token(&args.config, &ProcessEnv)
            };
            let outline = match outline {
                Ok(outline) => outline,
                Err(e) => {
                    writeln!(err, "reload: cannot read the configuration: {e}")?;
                    return Ok(ExitCode::FAILURE);
                }
            };
            let base = match url {
                Some(url) => url.trim_end_matches('/').to_owned(),
                None => http_base(&outline.gateway),
            };
            let token = match (token, &outline.gateway.admin_token) {
                (Some(token), _) => token.clone(),
                (None, Some(token)) => token.expose().to_owned(),
                (None, None) => {
                    writeln!(
                        err,
                        "reload: no admin token: set gateway.admin_token in {} (and restart the gateway), or pass --token / AGENT_GATE_ADMIN_TOKEN; without one, send the gateway SIGHUP",
                        args.config.display()
                    )?;
                    return Ok(ExitCode::FAILURE);
                }
            };
            (base, token)
        }
    };
    let url = format!("{base}{RELOAD_PATH}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match runtime.block_on(ask(&url, &token, Duration::from_secs(args.timeout.max(1)))) {
        Ok(lines) => {
            for line in lines {
                writeln!(out, "{line}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(lines) => {
            for line in lines {
                writeln!(err, "{line}")?;
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `Ok(summary lines)` when the gateway reloaded, `Err(lines)` otherwise.
async fn ask(url: &str, token: &str, timeout: Duration) -> Result<Vec<String>, Vec<String>> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| vec![format!("reload: cannot set up the HTTP client: {e}")])?;
    let response = client
        .post(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| {
            vec![format!(
                "reload: {url} did not answer: {e}; is the gateway running, and are gateway.health_host / health_port right?"
            )]
        })?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let error = body["error"].as_str().unwrap_or("").to_owned();
    match status {
        200 => Ok(summary(&body)),
        401 => Err(vec![format!(
            "reload: the gateway refused the admin token (401): {error}"
        )]),
        404 if !error.is_empty() => Err(vec![format!("reload: {error}")]),
        422 => {
            let mut lines = vec![format!("reload: {error}")];
            lines.extend(
                body["problems"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|p| format!("  {p}")),
            );
            Err(lines)
        }
        _ if !error.is_empty() => Err(vec![format!("reload: {url} answered {status}: {error}")]),
        _ => Err(vec![format!(
            "reload: {url} answered {status}; is this agent-gate's HTTP side?"
        )]),
    }
}

/// The lines printed after a successful reload.
fn summary(body: &Value) -> Vec<String> {
    let list = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let mut lines = vec![format!(
        "reloaded: {} rules and defaults",
        body["rules"].as_u64().unwrap_or(0)
    )];
    for (key, what) in [
        ("agents_added", "agents added"),
        ("agents_removed", "agents removed"),
        ("tokens_changed", "agents with changed tokens"),
    ] {
        let names = list(key);
        if !names.is_empty() {
            lines.push(format!("{what}: {}", names.join(", ")));
        }
    }
    let closed = body["connections_closed"].as_u64().unwrap_or(0);
    if closed > 0 {
        lines.push(format!("connections closed: {closed}"));
    }
    let restart = list("restart_needed");
    if !restart.is_empty() {
        lines.push(format!(
            "changed but applied only at a restart: {}",
            restart.join(", ")
        ));
    }
    for warning in list("warnings") {
        lines.push(format!("warning: {warning}"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_summary_names_what_changed() {
        let body = json!({
            "reloaded": true, "rules": 4, "agents_added": ["den"], "agents_removed": [],
            "tokens_changed": ["pi"], "connections_closed": 2, "restart_needed": ["services"],
            "warnings": []
        });
        assert_eq!(
            summary(&body),
            vec![
                "reloaded: 4 rules and defaults",
                "agents added: den",
                "agents with changed tokens: pi",
                "connections closed: 2",
                "changed but applied only at a restart: services",
            ]
        );
    }
}
