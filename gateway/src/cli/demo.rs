//! `agent-gate demo`: runs [demo mode](crate::demo) until Ctrl-C (or SIGTERM), printing the
//! URLs, the token and what to try first.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::demo::{self, DEFAULT_PORT, DEFAULT_WEB_PORT, DemoOptions};

/// Arguments of `agent-gate demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// WebSocket port on 127.0.0.1 for agents (0: any free port).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Port on 127.0.0.1 of the approval page and /healthz (0: any free port).
    #[arg(long, default_value_t = DEFAULT_WEB_PORT)]
    pub web_port: u16,
    /// Keep the database in this directory (default: a temporary one, removed at exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Runs `agent-gate demo` until a signal stops it.
pub fn run(args: &DemoArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    super::serve::init_logging();
    let runtime = crate::runtime::multi_thread("agent-gate-demo")
        .worker_threads(crate::runtime::worker_threads()?)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let running = demo::start(DemoOptions {
            port: args.port,
            web_port: args.web_port,
            data_dir: args.data_dir.clone(),
        })
        .await?;
        writeln!(out, "{}", running.banner())?;
        out.flush()?;
        let signal = wait_for_signal().await;
        running.shutdown().await?;
        signal
    })?;
    writeln!(out, "agent-gate demo stopped")?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        tokio::select! {
            _ = terminate.recv() => {}
            result = tokio::signal::ctrl_c() => result.context("listening for SIGINT")?,
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("listening for Ctrl-C")?;
    Ok(())
}
