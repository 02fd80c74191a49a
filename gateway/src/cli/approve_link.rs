//! `agent-gate approve-link`: asks the running gateway for a fresh one-time login link of its
//! web approval page and prints it.
//!
//! The gateway writes a random admin secret at start-up to `web-admin.secret` in its data
//! directory (beside `storage.path`), readable only by the gateway's user, and removes it at
//! shutdown. This command reads that file and presents the secret to
//! `POST http://health_host:health_port/approvals/admin/link`, which answers with a link
//! valid once for 10 minutes. So only the gateway's user (or root) on its machine can get
//! one. Exit 0 with the link on stdout; 1 with one line on stderr saying why not.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use crate::config::ConfigOutline;
use crate::messengers::web::{ADMIN_LINK_PATH, ADMIN_SECRET_FILE, admin_secret_path};

/// Arguments of `agent-gate approve-link`.
#[derive(Debug, Clone, Args)]
pub struct ApproveLinkArgs {
    /// The gateway configuration (for `storage.path`, `gateway.health_host` and
    /// `health_port`).
    #[arg(
        long,
        short = 'c',
        env = "AGENT_GATE_CONFIG",
        default_value = "config.yaml"
    )]
    pub config: PathBuf,
    /// Ask the gateway at this base URL instead of the one the configuration gives
    /// (e.g. `http://127.0.0.1:8080`).
    #[arg(long)]
    pub url: Option<String>,
    /// Read the admin secret from this data directory instead of the configuration's
    /// (`agent-gate demo --data-dir`); the configuration is then not read, and `--url`
    /// defaults to the demo's `http://127.0.0.1:8080`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How long to wait for the answer, in seconds.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

/// Runs `agent-gate approve-link`.
pub fn run(args: &ApproveLinkArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut err = std::io::stderr();
    let (base, secret_file) = match &args.data_dir {
        Some(dir) => (
            args.url.clone().unwrap_or_else(|| {
                format!("http://127.0.0.1:{}", crate::config::DEFAULT_HEALTH_PORT)
            }),
            dir.join(ADMIN_SECRET_FILE),
        ),
        None => match ConfigOutline::load(&args.config) {
            Ok(config) => (
                args.url
                    .clone()
                    .unwrap_or_else(|| super::healthcheck::http_base(&config.gateway)),
                admin_secret_path(&config.storage.path),
            ),
            Err(e) => {
                writeln!(err, "approve-link: cannot read the configuration: {e}")?;
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let base = base.trim_end_matches('/').to_owned();
    let secret = match std::fs::read_to_string(&secret_file) {
        Ok(secret) => secret.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            writeln!(
                err,
                "approve-link: {} does not exist: is the gateway running with a web approver (approvers: type web), with this configuration?",
                secret_file.display()
            )?;
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            writeln!(
                err,
                "approve-link: cannot read {}: {e} (run this as the gateway's user)",
                secret_file.display()
            )?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    match runtime.block_on(request_link(&base, &secret, timeout)) {
        Ok(link) => {
            writeln!(out, "{link}")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(line) => {
            writeln!(err, "approve-link: {line}")?;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Asks the gateway at `base` for a link; `Ok(full URL)` or `Err(why)`.
async fn request_link(base: &str, secret: &str, timeout: Duration) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
    let url = format!("{base}{ADMIN_LINK_PATH}");
    let response = client
        .post(&url)
        .bearer_auth(secret)
        .send()
        .await
        .map_err(|e| format!("{url} did not answer: {e}"))?;
    let status = response.status().as_u16();
    let body: Option<Value> = response.json().await.ok();
    let field = |name: &str| {
        body.as_ref()
            .and_then(|b| b.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match (status, field("path")) {
        (200, Some(path)) if path.starts_with('/') => Ok(format!("{base}{path}")),
        _ => Err(format!(
            "{url} answered {status}{}",
            field("error").map(|e| format!(": {e}")).unwrap_or_default()
        )),
    }
}
