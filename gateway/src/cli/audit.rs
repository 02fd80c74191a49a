//! `agent-gate audit verify`: checks the audit log's hash chain in the gateway's database and
//! names the first row that was changed, removed or reordered. `agent-gate audit export`:
//! the request history as JSON Lines, for log pipelines.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::config::ConfigOutline;
use crate::store::{
    ExportQuery, Timestamp, audit_rows_after, export_requests, open_read_only, verify_audit_chain,
};

/// `agent-gate audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain: exit 0 when every chained row matches, 1 naming the
    /// first row that does not (changed, removed or reordered), 2 when the database cannot be
    /// read.
    Verify(VerifyArgs),
    /// Print the request history as JSON Lines: one object per request created in the window,
    /// with its decision, who decided, its outcome and its timings (no arguments or results).
    /// Exit 0, or 2 when the database cannot be read, 4 for a bad time.
    Export(ExportArgs),
    /// Follow the audit log: print its rows as JSON Lines as they are committed (from the
    /// current end, or `--from-start`), until interrupted.
    Tail(TailArgs),
}

/// Arguments of `agent-gate audit tail`.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// Where the database is.
    #[command(flatten)]
    pub source: VerifyArgs,
    /// Print the whole log first, then follow.
    #[arg(long)]
    pub from_start: bool,
    /// How often to look for new rows, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub interval_ms: u64,
}

/// Arguments of `agent-gate audit export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Where the database is.
    #[command(flatten)]
    pub source: VerifyArgs,
    /// Requests created at or after this time (RFC 3339, e.g. `2026-12-04T00:00:00Z`).
    #[arg(long)]
    pub since: Option<String>,
    /// Requests created before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Only this agent's requests.
    #[arg(long)]
    pub agent: Option<String>,
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
        AuditCommand::Export(args) => export(args, out),
        AuditCommand::Tail(args) => tail(args, out),
    }
}

fn tail(args: &TailArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut err = std::io::stderr();
    let db = match database(&args.source, "tail")? {
        Ok(db) => db,
        Err(code) => return Ok(code),
    };
    let conn = match open_read_only(&db) {
        Ok(conn) => conn,
        Err(e) => {
            writeln!(err, "audit tail: {e}")?;
            return Ok(ExitCode::from(2));
        }
    };
    let mut after = if args.from_start {
        0
    } else {
        match conn.query_row("SELECT coalesce(max(id), 0) FROM audit_log", [], |r| {
            r.get::<_, i64>(0)
        }) {
            Ok(last) => last,
            Err(e) => {
                writeln!(
                    err,
                    "audit tail: cannot read the audit log of {}: {e}",
                    db.display()
                )?;
                return Ok(ExitCode::from(2));
            }
        }
    };
    let interval = std::time::Duration::from_millis(args.interval_ms.clamp(10, 60_000));
    loop {
        match audit_rows_after(&conn, &db, after, 1000) {
            Ok((rows, last)) => {
                for row in &rows {
                    writeln!(out, "{row}").context("writing to stdout")?;
                }
                out.flush().context("writing to stdout")?;
                after = last;
                if rows.len() == 1000 {
                    continue;
                }
            }
            Err(e) => {
                writeln!(err, "audit tail: {e}")?;
                return Ok(ExitCode::from(2));
            }
        }
        std::thread::sleep(interval);
    }
}

/// The database file `args` name, or the exit code after saying why there is none.
fn database(args: &VerifyArgs, command: &str) -> anyhow::Result<Result<PathBuf, ExitCode>> {
    let mut err = std::io::stderr();
    let db = match &args.db {
        Some(db) => db.clone(),
        None => match ConfigOutline::load(&args.config) {
            Ok(config) => config.storage.path,
            Err(e) => {
                writeln!(err, "audit {command}: cannot read the configuration: {e}")?;
                return Ok(Err(ExitCode::from(2)));
            }
        },
    };
    if !db.is_file() {
        writeln!(
            err,
            "audit {command}: {} is not a database file (give the gateway's storage.path, or --db)",
            db.display()
        )?;
        return Ok(Err(ExitCode::from(2)));
    }
    Ok(Ok(db))
}

/// An RFC 3339 time given as `--<flag>`.
fn time_arg(flag: &str, text: Option<&str>) -> Result<Option<Timestamp>, String> {
    let Some(text) = text else {
        return Ok(None);
    };
    let parsed = time::OffsetDateTime::parse(
        text.trim(),
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|e| {
        format!("--{flag} {text:?} is not an RFC 3339 time ({e}); write e.g. 2026-12-04T00:00:00Z")
    })?;
    let millis = parsed.unix_timestamp_nanos() / 1_000_000;
    Ok(Some(Timestamp::from_millis(
        i64::try_from(millis).map_err(|_| format!("--{flag} {text:?} is out of range"))?,
    )))
}

fn export(args: &ExportArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut err = std::io::stderr();
    let (since, until) = match (
        time_arg("since", args.since.as_deref()),
        time_arg("until", args.until.as_deref()),
    ) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => {
            writeln!(err, "audit export: {e}")?;
            return Ok(ExitCode::from(4));
        }
    };
    let db = match database(&args.source, "export")? {
        Ok(db) => db,
        Err(code) => return Ok(code),
    };
    let query = ExportQuery {
        since,
        until,
        agent: args.agent.clone(),
    };
    let lines = match export_requests(&db, &query) {
        Ok(lines) => lines,
        Err(e) => {
            writeln!(err, "audit export: {e}")?;
            return Ok(ExitCode::from(2));
        }
    };
    for line in lines {
        writeln!(out, "{line}").context("writing to stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(args: &VerifyArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut err = std::io::stderr();
    let db = match database(args, "verify")? {
        Ok(db) => db,
        Err(code) => return Ok(code),
    };
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
