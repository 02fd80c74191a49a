//! The `agent-gate` binary: parses the command line, runs it, maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

use agent_gate_gateway::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match run(cli, &mut stdout) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
