//! `agent-gate token new`: makes a fresh random agent token and prints it once, with the
//! `token_sha256` line for `config.yaml`, so the file holds only the token's digest. Reads no
//! configuration and stores nothing: the token exists only in this output.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::{TokenDigest, new_token};

/// `agent-gate token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random agent token (once) and the `token_sha256` line for config.yaml.
    #[command(long_about = NEW_LONG_ABOUT)]
    New(NewArgs),
}

const NEW_LONG_ABOUT: &str = "\
Print a new random agent token (256 bits, shown once) and the lines to paste under `agents:` in \
config.yaml. The config then holds only the token's SHA-256 (`token_sha256:`), not the token; \
give the token to the agent (e.g. as AGENT_GATE_TOKEN) and keep it secret. Nothing is stored: \
run it again for another token.

To rotate an agent's token without downtime, list the old and the new under `tokens:`,
  tokens:
    - sha256: \"<old digest>\"
    - sha256: \"<new digest>\"
move the agent to the new token, then remove the old entry. Reads no config file.";

/// Arguments of `agent-gate token new`.
#[derive(Debug, Clone, Args)]
pub struct NewArgs {
    /// The id of the agent the token is for (as in config.yaml's `agents:`; 1-64 letters,
    /// digits, `_`, `-` or `.`).
    #[arg(long, short = 'a', value_parser = parse_agent_id)]
    pub agent: String,
}

fn parse_agent_id(id: &str) -> Result<String, String> {
    if crate::config::valid_agent_id(id) {
        Ok(id.to_owned())
    } else {
        Err(format!(
            "expected an agent id of 1-64 letters, digits, `_`, `-` or `.`, got {id:?}"
        ))
    }
}

/// Runs `agent-gate token ...`.
pub fn run(command: &TokenCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::New(args) => run_new(args, out),
    }
}

/// Prints, on stdout: a comment, the token on a line of its own, a comment, and the YAML list
/// entry for `agents:` (two lines, indented for pasting under `agents:`).
fn run_new(args: &NewArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let token = new_token();
    let digest = TokenDigest::of(&token).to_hex();
    let agent = &args.agent;
    writeln!(
        out,
        "# The token of agent {agent:?}, shown only now: give it to the agent (e.g. as AGENT_GATE_TOKEN) and keep it secret."
    )?;
    writeln!(out, "{token}")?;
    writeln!(
        out,
        "# Paste under `agents:` in config.yaml (the gateway keeps only the token's SHA-256):"
    )?;
    writeln!(out, "  - id: {agent}")?;
    writeln!(out, "    token_sha256: \"{digest}\"")?;
    Ok(ExitCode::SUCCESS)
}
