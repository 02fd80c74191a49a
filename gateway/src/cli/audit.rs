//! `agent-gate audit verify`: checks the audit log's hash chain in the gateway's database and
//! names the first row that was changed, removed or reordered.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::config::ConfigOutline;
use crate::store::verify_audit_chain;

/// `agent-gate audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain: exit 0 when every chained row matches, 1 naming the
    /// first row that does not (changed, removed or reordered), 2 when the database cannot be
    /// read.
    Verify(VerifyArgs),
}

/// Arguments of `agent-gate audit verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The gateway configuration (for `storage.path`).
    #[arg(
        long,
        short = 'c',
        env = "AGENT_GATE_CONFIG",
        default_value = "config.yaml"
    )]
    pub config: PathBuf,
    /// The database file itself, instead of the one the configuration names.
    #[arg(long)]
    pub db: Option<PathBuf>,
}

/// Runs `agent-gate audit ...`.
pub fn run(command: &AuditCommand, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify(args) => verify(args, out),
    }
}

fn verify(args: &VerifyArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut err = std::io::stderr();
    let db = match &args.db {
        Some(db) => db.clone(),
        None => match ConfigOutline::load(&args.config) {
            Ok(config) => config.storage.path,
            Err(e) => {
                writeln!(err, "audit verify: cannot read the configuration: {e}")?;
                return Ok(ExitCode::from(2));
            }
        },
    };
    if !db.is_file() {
        writeln!(
            err,
            "audit verify: {} is not a database file (give the gateway's storage.path, or --db)",
            db.display()
        )?;
        return Ok(ExitCode::from(2));
    }
    let report = match verify_audit_chain(&db) {
        Ok(report) => report,
        Err(e) => {
            writeln!(err, "audit verify: {e}")?;
            return Ok(ExitCode::from(2));
        }
    };
    let chained = report.rows - report.unchained;
    match &report.first_broken {
        None => {
            writeln!(
                out,
                "audit log intact: {chained} chained rows{}",
                if report.unchained > 0 {
                    format!(
                        " ({} older rows, written before the chain existed, are not covered)",
                        report.unchained
                    )
                } else {
                    String::new()
                }
            )
            .context("writing to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Some(broken) => {
            writeln!(
                out,
                "audit log BROKEN at row {}: {}; rows from there on cannot be trusted",
                broken.id, broken.problem
            )
            .context("writing to stdout")?;
            Ok(ExitCode::from(1))
        }
    }
}
