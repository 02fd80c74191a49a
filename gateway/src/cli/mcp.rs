//! `agent-gate mcp`: the stdio MCP bridge. An MCP client that only launches local stdio
//! servers (Claude Desktop) runs this command; it serves MCP on stdin/stdout and forwards every
//! call to a gateway over the WebSocket protocol, as the agent whose token it is given (see
//! the bridge's module docs, `crate::mcp_bridge`).
//!
//! ```text
//! agent-gate mcp --url wss://gateway:8443 --token "$AGENT_TOKEN" --ca-cert ca.pem
//! ```
//!
//! stdout carries the MCP protocol only; logs and errors go to stderr. Exit codes: 0 when the
//! MCP client closes stdin, [`exit::CONNECTION`](super::client::exit::CONNECTION) (3) when the
//! gateway cannot be reached at start or rejects the token, 1 when the MCP session fails.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::client::{exit, write_error};
use crate::config::DEFAULT_MCP_HOLD_SECONDS;
use crate::mcp_bridge::Bridge;
use agent_gate::{AgentGateClient, Error, ErrorKind};

/// Arguments of `agent-gate mcp`.
#[derive(Debug, Clone, Args)]
pub struct McpArgs {
    /// The gateway's WebSocket URL (`wss://host:port`, or `ws://` for a local insecure one).
    #[arg(long, env = "AGENT_GATE_URL", default_value = agent_gate::client::DEFAULT_URL)]
    pub url: String,
    /// The agent's token (from the gateway's config.yaml).
    #[arg(long, env = "AGENT_GATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM file of CA certificates to trust (for a gateway with a self-signed certificate).
    #[arg(long, env = "AGENT_GATE_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// How long a call waiting for a human is held open (with progress) before it is answered
    /// "still waiting"; calling again with the same arguments picks it up. Keep it below the
    /// MCP client's own call timeout (often 60 s).
    #[arg(long, default_value_t = DEFAULT_MCP_HOLD_SECONDS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub hold_seconds: u64,
    /// Reconnection attempts after losing the gateway (at start too) before a call fails;
    /// the next call tries again.
    #[arg(long, default_value_t = 10)]
    pub retries: u32,
}

/// The client builder of `args`: explicit values only (clap already read the environment).
fn builder(args: &McpArgs) -> Result<agent_gate::ClientBuilder, Error> {
    let Some(token) = args.token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(
            Error::new(ErrorKind::Authentication, "no agent token given").with_suggestion(
                "pass --token or set AGENT_GATE_TOKEN to the agent's token from the gateway's config.yaml \
                 (in claude_desktop_config.json: \"env\": {\"AGENT_GATE_TOKEN\": \"...\"})",
            ),
        );
    };
    let mut builder = AgentGateClient::builder()
        .ignore_env()
        .url(args.url.clone())
        .token(token)
        .max_retries(Some(args.retries))
        .backoff(Duration::from_millis(250), Duration::from_secs(5));
    if let Some(path) = &args.ca_cert {
        builder = builder.ca_cert_file(path.clone());
    }
    Ok(builder)
}

/// Runs `agent-gate mcp` until the MCP client closes stdin. `out` is unused: stdout belongs to
/// the MCP protocol.
pub fn run(args: &McpArgs, _out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    super::serve::init_logging();
    let mut err = std::io::stderr();
    let runtime = crate::runtime::multi_thread("agent-gate-mcp")
        .worker_threads(2)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let connected = match builder(args) {
            Ok(builder) => builder
                .clone()
                .connect()
                .await
                .map(|client| (client, builder)),
            Err(e) => Err(e),
        };
        let (client, builder) = match connected {
            Ok(connected) => connected,
            Err(error) => {
                writeln!(err, "error: cannot connect to the gateway at {}", args.url)?;
                write_error(&mut err, &error).context("writing to stderr")?;
                return Ok(ExitCode::from(exit::CONNECTION));
            }
        };
        tracing::info!(url = %args.url, hold_seconds = args.hold_seconds, "serving MCP on stdin/stdout");
        let bridge = Bridge::new(
            client.clone(),
            builder,
            Duration::from_secs(args.hold_seconds),
        );
        let served = bridge.serve_stdio().await;
        client.close().await;
        match served {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                writeln!(err, "error: {e}")?;
                Ok(ExitCode::FAILURE)
            }
        }
    })
}
