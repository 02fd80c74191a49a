//! The `agent-gate` binary: parses the command line, runs it, maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

use agent_gate_gateway::cli::{Cli, run};

/// See the `allocator` module: mimalloc, faster than glibc's malloc for the gateway's many small
/// cross-thread allocations.
#[global_allocator]
static ALLOCATOR: agent_gate_gateway::allocator::Allocator =
    agent_gate_gateway::allocator::Allocator;

/// Exit code of a command line that cannot be parsed: "invalid arguments", as for the client
/// commands (clap's own 2 would read as "timeout" there).
const USAGE_ERROR: u8 = 4;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" that print to stdout and succeed.
            let code = if e.use_stderr() {
                ExitCode::from(USAGE_ERROR)
            } else {
                ExitCode::SUCCESS
            };
            let _ = e.print();
            return code;
        }
    };
    // Not locked for the whole run: `mcp` writes the protocol to stdout from its runtime.
    let mut stdout = std::io::stdout();
    match run(cli, &mut stdout) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
