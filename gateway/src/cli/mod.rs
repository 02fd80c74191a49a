//! The `agent-gate` command line: the clap tree and its subcommands (`serve`, the default;
//! `check`; `policy explain`; `approve-link`; `mcp`; `token new`; `reload`; ...).
//!
//! Adding a subcommand: add a variant to [`Command`] (its arguments as an `Args` struct, with
//! [`ConfigPaths`] flattened in if it reads the config files), a module with a
//! `run(args, out) -> anyhow::Result<ExitCode>` function, and a match arm in [`run`].

pub mod approve_link;
pub mod audit;
pub mod check;
pub mod client;
#[cfg(feature = "demo")]
pub mod demo;
pub mod explain;
pub mod healthcheck;
pub mod mcp;
pub mod reload;
pub mod schema;
pub mod serve;
pub mod token;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// `agent-gate`: the execution gateway for AI agents.
#[derive(Debug, Parser)]
#[command(name = "agent-gate", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default when no subcommand is given).
    Serve(serve::ServeArgs),
    /// Check config.yaml, permissions.yaml and the tool manifests; report every problem.
    Check(check::CheckArgs),
    /// Work with the permission policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Work with the audit log (`verify` checks its hash chain).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Print the JSON Schema of every tool's arguments (for clients in other languages).
    Schema(schema::SchemaArgs),
    /// Run a tool through a gateway as an agent; prints the result as JSON.
    Request(client::RequestArgs),
    /// List the tools a gateway offers (JSON).
    Tools(client::ListArgs),
    /// Fetch results decided while this agent was away (JSON).
    Pending(client::ListArgs),
    /// Withdraw one of this agent's requests while it waits for a human (exit 0 when
    /// cancelled, 1 when it had already been decided).
    Cancel(client::CancelArgs),
    /// Serve MCP on stdin/stdout, forwarding to a gateway (for MCP clients that launch local
    /// servers, such as Claude Desktop).
    Mcp(mcp::McpArgs),
    /// Check that a running gateway is healthy (exit 0) or not (exit 1).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Make a running gateway re-read its agents and permissions (as SIGHUP does), through
    /// its HTTP side with gateway.admin_token (exit 0 when applied, 1 when refused).
    Reload(reload::ReloadArgs),
    /// Try agent-gate: a gateway with a simulated Home Assistant and a web approval page.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Print a one-time login link of the running gateway's web approval page.
    ApproveLink(approve_link::ApproveLinkArgs),
    /// Make agent tokens (`token new --agent ID`: a token and its `token_sha256` line).
    #[command(subcommand)]
    Token(token::TokenCommand),
}

/// `agent-gate policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the signature of a tool call and which rule decides it.
    Explain(explain::ExplainArgs),
}

/// Where the configuration files are (shared by every subcommand that reads them).
#[derive(Debug, Clone, Args)]
pub struct ConfigPaths {
    /// The gateway configuration.
    #[arg(
        long,
        short = 'c',
        env = "AGENT_GATE_CONFIG",
        default_value = "config.yaml"
    )]
    pub config: PathBuf,
    /// The permission rules.
    #[arg(
        long,
        short = 'p',
        env = "AGENT_GATE_PERMISSIONS",
        default_value = "permissions.yaml"
    )]
    pub permissions: PathBuf,
}

/// Runs the parsed command line, writing its report to `out`. Returns the process exit code;
/// an `Err` is a failure to report at the edge (exit 1).
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Serve(args)) => serve::run(&args, out),
        Some(Command::Check(args)) => check::run(&args, out),
        Some(Command::Policy(PolicyCommand::Explain(args))) => explain::run(&args, out),
        Some(Command::Schema(args)) => schema::run(&args, out),
        Some(Command::Audit(command)) => audit::run(&command, out),
        Some(Command::Request(args)) => client::run_request(&args, out),
        Some(Command::Tools(args)) => client::run_tools(&args, out),
        Some(Command::Pending(args)) => client::run_pending(&args, out),
        Some(Command::Cancel(args)) => client::run_cancel(&args, out),
        Some(Command::Mcp(args)) => mcp::run(&args, out),
        Some(Command::Healthcheck(args)) => healthcheck::run(&args, out),
        Some(Command::Reload(args)) => reload::run(&args, out),
        #[cfg(feature = "demo")]
        Some(Command::Demo(args)) => demo::run(&args, out),
        Some(Command::ApproveLink(args)) => approve_link::run(&args, out),
        Some(Command::Token(command)) => token::run(&command, out),
        None => serve::run(&serve::ServeArgs::from_env()?, out),
    }
}
