//! `agent-gate check`: loads config, permissions and manifests, cross-checks them, and reports
//! every problem with its location (manifest diagnostics as `file:line:col`). Exit 1 on errors.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use agent_gate_manifest::{Diagnostic, Manifest, Severity};
use clap::Args;

use super::ConfigPaths;
use crate::config::{Config, PermissionsFile, suggest};

/// Arguments of `agent-gate check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Config file locations.
    #[command(flatten)]
    pub paths: ConfigPaths,
}

#[derive(Default)]
struct Report {
    errors: Vec<String>,
    warnings: Vec<String>,
    summary: Vec<String>,
}

/// Runs the check.
pub fn run(args: &CheckArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut report = Report::default();
    let config = match Config::load(&args.paths.config) {
        Ok(c) => {
            report
                .warnings
                .extend(c.warnings.iter().map(ToString::to_string));
            report.summary.push(format!(
                "{}: {} ({}), {} ({}), {}",
                c.file.display(),
                plural(c.agents.len(), "agent"),
                c.agents
                    .iter()
                    .map(|a| a.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                plural(c.services.len(), "service"),
                c.services.keys().cloned().collect::<Vec<_>>().join(", "),
                plural(c.approvers.len(), "approver"),
            ));
            Some(c)
        }
        Err(e) => {
            report
                .errors
                .extend(e.issues().iter().map(ToString::to_string));
            None
        }
    };

    let permissions = match PermissionsFile::load(&args.paths.permissions) {
        Ok(p) => {
            report
                .warnings
                .extend(p.warnings.iter().map(ToString::to_string));
            report.summary.push(format!(
                "{}: {}, {}",
                p.file.display(),
                plural(p.rules.len(), "rule"),
                plural(p.defaults.len(), "default"),
            ));
            Some(p)
        }
        Err(e) => {
            report
                .errors
                .extend(e.issues().iter().map(ToString::to_string));
            None
        }
    };

    let manifest_paths: Vec<PathBuf> = match &config {
        Some(c) => c.tools.clone(),
        None => {
            let fallback = args
                .paths
                .config
                .parent()
                .map(|d| d.join("tools.toml"))
                .unwrap_or_else(|| PathBuf::from("tools.toml"));
            if fallback.is_file() {
                report.warnings.push(format!(
                    "{}: the config has errors, so its `tools:` is unknown; checked the default manifest {} instead",
                    args.paths.config.display(),
                    fallback.display()
                ));
                vec![fallback]
            } else {
                Vec::new()
            }
        }
    };
    let manifest = if manifest_paths.is_empty() {
        None
    } else {
        match Manifest::load(&manifest_paths) {
            Ok(loaded) => {
                for d in &loaded.warnings {
                    report.warnings.push(diagnostic(d));
                }
                report.summary.push(format!(
                    "{}: {}",
                    manifest_paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    plural(loaded.manifest.tools().len(), "tool")
                ));
                Some(loaded.manifest)
            }
            Err(e) => {
                for d in &e.diagnostics {
                    match d.severity {
                        Severity::Warning => report.warnings.push(diagnostic(d)),
                        _ => report.errors.push(diagnostic(d)),
                    }
                }
                None
            }
        }
    };

    if let Some(c) = &config {
        check_files(&mut report, c);
    }
    cross_check(
        &mut report,
        config.as_ref(),
        permissions.as_ref(),
        manifest.as_ref(),
    );

    for e in &report.errors {
        writeln!(out, "error: {e}")?;
    }
    for w in &report.warnings {
        writeln!(out, "warning: {w}")?;
    }
    for s in &report.summary {
        writeln!(out, "{s}")?;
    }
    let verdict = if report.errors.is_empty() {
        "check passed"
    } else {
        "check failed"
    };
    writeln!(
        out,
        "{verdict}: {}, {}",
        plural(report.errors.len(), "error"),
        plural(report.warnings.len(), "warning")
    )?;
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Files the gateway will need at start-up.
fn check_files(report: &mut Report, c: &Config) {
    // The same check `serve` runs before it opens the store.
    if let Err(error) = crate::store::Store::check_path(&c.storage.path) {
        report.errors.push(format!("{}: {error}", c.file.display()));
    }
    match &c.gateway.tls {
        Some(tls) => {
            for (key, path) in [("cert", &tls.cert), ("key", &tls.key)] {
                if !path.is_file() {
                    report.errors.push(format!(
                        "{}: gateway.tls.{key}: file {} not found (paths are relative to the working directory)",
                        c.file.display(),
                        path.display()
                    ));
                }
            }
        }
        None => report.warnings.push(format!(
            "{}: gateway.tls: not set; `serve` then requires --insecure (agents' tokens would cross the network in clear text)",
            c.file.display()
        )),
    }
}

fn cross_check(
    report: &mut Report,
    config: Option<&Config>,
    permissions: Option<&PermissionsFile>,
    manifest: Option<&Manifest>,
) {
    if let (Some(c), Some(p)) = (config, permissions) {
        let known: Vec<&str> = c.agents.iter().map(|a| a.id.as_str()).collect();
        report
            .errors
            .extend(p.unknown_agents(&known).iter().map(ToString::to_string));
    }
    if let (Some(p), Some(m)) = (permissions, manifest) {
        report.warnings.extend(crate::policy::lint::indirect_allows(
            &p.file,
            &p.rules,
            &p.defaults,
            m,
        ));
    }
    if let (Some(c), Some(m)) = (config, manifest) {
        for tool in m.tools() {
            if !c.services.contains_key(&tool.service) {
                report.warnings.push(format!(
                    "{}: tool `{}` uses service `{}`, which {} does not configure under `services:`; calls to it will fail",
                    tool.location,
                    tool.name,
                    tool.service,
                    c.file.display()
                ));
            }
        }
        for name in c.services.keys() {
            if !m.tools().any(|t| &t.service == name) {
                report.warnings.push(format!(
                    "{}: services.{name}: no tool of the manifests uses this service",
                    c.file.display()
                ));
            }
        }
    }
    if let (Some(p), Some(m)) = (permissions, manifest) {
        let names: Vec<&str> = m.tools().map(|t| t.name.as_str()).collect();
        for rule in p.rules.iter().chain(&p.defaults) {
            let prefix = rule.pattern.literal_prefix();
            let tool_part = prefix.split('(').next().unwrap_or(prefix);
            let possible = names.iter().any(|t| {
                t.starts_with(prefix)
                    || (prefix.starts_with(t)
                        && matches!(prefix.get(t.len()..t.len() + 1), None | Some("(")))
            });
            if !possible {
                let hint = suggest(tool_part, names.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                report.warnings.push(format!(
                    "{}: {}[{}].pattern: \"{}\" matches no tool of the manifests{hint}",
                    p.file.display(),
                    rule.list,
                    rule.index,
                    rule.pattern
                ));
            }
        }
    }
}

/// A manifest diagnostic as `file:line:col: message` (plus its help line), the severity being
/// printed in front by the report.
fn diagnostic(d: &Diagnostic) -> String {
    match &d.help {
        Some(help) => format!("{}: {}\n  help: {help}", d.location(), d.message),
        None => format!("{}: {}", d.location(), d.message),
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
