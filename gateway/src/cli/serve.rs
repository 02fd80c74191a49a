//! `agent-gate serve` (also what `agent-gate` runs without a subcommand): load the
//! configuration, policy and manifest, start the gateway, run until SIGTERM or SIGINT, then
//! shut down gracefully (pending approvals are kept for the next start).
//!
//! SIGHUP reloads the agents of `config.yaml` and `permissions.yaml` without a restart
//! ([`RunningGateway::reload`]); a file with errors is refused whole (logged, shown on
//! `/healthz`) and the gateway keeps running as it was. The signal handlers are installed
//! before the gateway says "ready", so an early SIGHUP never kills it.
//!
//! Logging: `LOG_LEVEL` (`error`, `warn`, `info` (default), `debug`, `trace`, or a
//! `tracing` filter such as `agent_gate_gateway=debug`) and `LOG_FORMAT=json` for one JSON
//! object per line (default: human-readable). Logs go to stderr and never contain tokens.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use super::ConfigPaths;
use crate::app::{Gateway, RunningGateway};
use crate::approvals::Approver;
use crate::config::{ApproverConfig, Config};
use crate::messengers::home_assistant::HomeAssistantApprover;
use crate::messengers::telegram::TelegramApprover;
use crate::policy::Policy;

/// Arguments of `agent-gate serve`.
#[derive(Debug, Clone, Parser)]
#[command(name = "serve")]
pub struct ServeArgs {
    /// Where the configuration files are.
    #[command(flatten)]
    pub paths: ConfigPaths,
    /// Accept plaintext ws:// connections when gateway.tls is not set (local testing only:
    /// agent tokens cross the network unencrypted).
    #[arg(long)]
    pub insecure: bool,
}

impl ServeArgs {
    /// The arguments `agent-gate` uses when no subcommand is given (defaults and environment).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::try_parse_from(["serve"])
            .context("reading AGENT_GATE_CONFIG / AGENT_GATE_PERMISSIONS")
    }
}

/// The log filter for a `LOG_LEVEL` value (`tracing` `EnvFilter` syntax: `info`,
/// `warn,agent_gate_gateway=debug`, ...), or why the value is not one.
///
/// The MCP SDK (`rmcp`) logs each request it serves at `info` (the front serves every request
/// as its own short session: three lines per call), so it is held at `warn` unless the value
/// names `rmcp` itself (`LOG_LEVEL=info,rmcp=info` brings those lines back).
pub fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    let level = level.to_ascii_lowercase();
    let filter =
        tracing_subscriber::EnvFilter::try_new(&level).map_err(|error| error.to_string())?;
    if level.contains("rmcp") {
        return Ok(filter);
    }
    let quiet_sdk = "rmcp=warn"
        .parse()
        .map_err(|error: tracing_subscriber::filter::ParseError| error.to_string())?;
    Ok(filter.add_directive(quiet_sdk))
}

/// Installs the global log subscriber from `LOG_LEVEL` (see [`log_filter`]; default `info`)
/// and `LOG_FORMAT` (once per process). A `LOG_LEVEL` that is not a filter logs at `info`, and
/// says so.
pub fn init_logging() {
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".to_owned());
    let (filter, invalid) = match log_filter(&level) {
        Ok(filter) => (filter, None),
        Err(error) => (
            log_filter("info").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            Some(error),
        ),
    };
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A subscriber installed earlier (tests, embedding) wins.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Some(error) = invalid {
        tracing::warn!(
            log_level = %level,
            %error,
            "LOG_LEVEL is not a log filter (e.g. info, or warn,agent_gate_gateway=debug); logging at info"
        );
    }
}

/// The approvers of `config.yaml` that `serve` builds: the Telegram bots and the Home
/// Assistant phone app approvers. (The web approval page is set up by the gateway itself,
/// since it needs the store.)
pub fn approvers_from_config(config: &Config) -> anyhow::Result<Vec<Arc<dyn Approver>>> {
    let mut approvers: Vec<Arc<dyn Approver>> = Vec::new();
    for approver in &config.approvers {
        match approver {
            ApproverConfig::Telegram(telegram) => {
                let bot = TelegramApprover::from_config(telegram)
                    .build()
                    .context("setting up the Telegram approver (approvers: type telegram)")?;
                approvers.push(Arc::new(bot));
            }
            ApproverConfig::HomeAssistant(ha) => {
                let phone = HomeAssistantApprover::from_config(ha).build().context(
                    "setting up the Home Assistant phone app approver (approvers: type home_assistant)",
                )?;
                approvers.push(Arc::new(phone));
            }
            ApproverConfig::Web(_) => {}
        }
    }
    Ok(approvers)
}

/// Runs `agent-gate serve` until a signal stops it.
pub fn run(args: &ServeArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    init_logging();
    let runtime = crate::runtime::multi_thread("agent-gate")
        .worker_threads(crate::runtime::worker_threads()?)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, out))?;
    writeln!(out, "agent-gate stopped")?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: &ServeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = Config::load(&args.paths.config)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // load_for also refuses rules scoped to agents the config does not define.
    let policy = Policy::load_for(&config, &args.paths.permissions)?;
    let loaded = agent_gate_manifest::Manifest::load(&config.tools)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let approvers = approvers_from_config(&config)?;
    let mut signals = Signals::install()?;
    let mut builder = Gateway::builder(config, policy, loaded.manifest).insecure(args.insecure);
    for approver in approvers {
        builder = builder.approver(approver);
    }
    let gateway = builder.start().await?;
    // A web page without a token is opened only through a one-time link: print one (on
    // stdout, not in the logs).
    if gateway.web_page().is_some_and(|page| !page.has_token())
        && let Some(link) = gateway.approval_link()
    {
        writeln!(
            out,
            "Approval page (one-time link, valid 10 minutes; `agent-gate approve-link` prints a new one): {link}"
        )?;
        out.flush()?;
    }
    signals.serve_until_stopped(&gateway).await?;
    gateway.shutdown().await?;
    Ok(())
}

/// The signals `serve` handles: SIGTERM and SIGINT stop it, SIGHUP reloads.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
                hangup: signal(SignalKind::hangup()).context("listening for SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Reloads on each SIGHUP until SIGTERM or SIGINT.
    async fn serve_until_stopped(&mut self, gateway: &RunningGateway) -> anyhow::Result<()> {
        #[cfg(unix)]
        loop {
            tokio::select! {
                _ = self.terminate.recv() => {
                    tracing::info!("SIGTERM received");
                    return Ok(());
                }
                result = tokio::signal::ctrl_c() => {
                    result.context("listening for SIGINT")?;
                    tracing::info!("SIGINT received");
                    return Ok(());
                }
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP received: reloading agents and permissions");
                    // The outcome is logged, audited and shown on /healthz by the reload.
                    let _ = gateway.reload("SIGHUP").await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = gateway;
            tokio::signal::ctrl_c()
                .await
                .context("listening for Ctrl-C")?;
            tracing::info!("Ctrl-C received");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn the_mcp_sdk_is_held_at_warn_unless_named() {
        let default = log_filter("info").unwrap().to_string();
        assert!(default.contains("rmcp=warn"), "{default}");
        let debug = log_filter("DEBUG").unwrap().to_string();
        assert!(
            debug.contains("rmcp=warn") && debug.contains("debug"),
            "{debug}"
        );
        let named = log_filter("info,rmcp=debug").unwrap().to_string();
        assert!(named.contains("rmcp=debug"), "{named}");
        assert!(!named.contains("rmcp=warn"), "{named}");
    }

    #[test]
    fn a_value_that_is_not_a_filter_is_refused_with_the_reason() {
        let error = log_filter("info,[unclosed").unwrap_err();
        assert!(!error.is_empty());
    }
}
