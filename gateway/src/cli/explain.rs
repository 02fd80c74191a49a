//! `agent-gate policy explain`: renders the signature of a tool call and shows the decision
//! and the deciding rule. Exit 0 when the policy decided (whatever the decision), 1 when the
//! request itself is invalid (unknown tool, bad arguments) or the files do not load.
//!
//! Of `config.yaml` only the agent ids and the tool manifests are read ([`ConfigOutline`]):
//! the variables of tokens need not be set.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use agent_gate_manifest::Manifest;
use anyhow::Context;
use clap::Args;
use serde_json::{Map, Value};

use super::ConfigPaths;
use crate::config::ConfigOutline;
use crate::policy::{DecidedBy, Policy, Reason};

/// Arguments of `agent-gate policy explain`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// Config file locations.
    #[command(flatten)]
    pub paths: ConfigPaths,
    /// The agent making the request (rules may be scoped to agents).
    #[arg(long, short = 'a', default_value = "default")]
    pub agent: String,
    /// Tool manifest(s) to use instead of the config's `tools:` (the config is then not read).
    #[arg(long = "tools", value_name = "PATH")]
    pub tools: Vec<PathBuf>,
    /// The tool name.
    pub tool: String,
    /// Arguments as key=value; a value is parsed as JSON when it is valid JSON (`128`, `true`,
    /// `{"brightness":128}`, `"123"`), else taken as a string.
    #[arg(value_name = "KEY=VALUE", value_parser = parse_arg)]
    pub args: Vec<(String, Value)>,
}

fn parse_arg(s: &str) -> Result<(String, Value), String> {
    let Some((key, value)) = s.split_once('=') else {
        return Err(format!(
            "expected KEY=VALUE, got {s:?} (e.g. entity_id=light.kitchen)"
        ));
    };
    if key.is_empty() {
        return Err(format!("the argument name is empty in {s:?}"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

/// Runs the explanation.
pub fn run(args: &ExplainArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let tool_paths = if args.tools.is_empty() {
        let config = ConfigOutline::load(&args.paths.config).context("cannot load the config")?;
        if !config.agent_ids.contains(&args.agent) {
            anyhow::bail!(
                "unknown agent {:?}; the agents in {} are: {} (pass one with --agent)",
                args.agent,
                config.file.display(),
                config.agent_ids.join(", ")
            );
        }
        config.tools
    } else {
        args.tools.clone()
    };
    let manifest = Manifest::load(&tool_paths)
        .context("cannot load the tool manifest")?
        .manifest;
    let policy = Policy::load(&args.paths.permissions).context("cannot load the permissions")?;

    let mut map = Map::new();
    for (key, value) in &args.args {
        if map.insert(key.clone(), value.clone()).is_some() {
            anyhow::bail!("argument `{key}` is given twice");
        }
    }

    let decision = policy.decide(&manifest, &args.agent, &args.tool, &map);
    writeln!(out, "agent:     {}", args.agent)?;
    writeln!(out, "tool:      {}", args.tool)?;
    match &decision.signature {
        Some(s) => writeln!(out, "signature: {s}")?,
        None => writeln!(out, "signature: (none: the request is invalid)")?,
    }
    writeln!(out, "decision:  {}", decision.action)?;
    match &decision.reason {
        Reason::Policy(e) => {
            match e.decided_by {
                DecidedBy::Rule(r) => {
                    writeln!(
                        out,
                        "rule:      {}[{}] in {}",
                        r.rule.list,
                        r.rule.index,
                        r.file.display()
                    )?;
                    writeln!(out, "pattern:   {}", r.rule.pattern)?;
                    if let Some(d) = &r.rule.description {
                        writeln!(out, "why:       {d}")?;
                    }
                    if let Some(agents) = &r.rule.agents {
                        writeln!(out, "agents:    {}", agents.join(", "))?;
                    }
                }
                DecidedBy::Fallback => {
                    writeln!(out, "rule:      none matched (fallback: ask)")?;
                }
            }
            if !decision.targets.is_empty() {
                writeln!(out, "affects:   {}", decision.targets.join(", "))?;
            }
            if decision.judged.len() > 1 {
                writeln!(
                    out,
                    "judged:    {} signatures, the strictest decides:",
                    decision.judged.len()
                )?;
                for (signature, explanation) in &decision.judged {
                    writeln!(out, "  {signature}: {explanation}")?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        other => {
            writeln!(out, "reason:    {other}")?;
            Ok(ExitCode::FAILURE)
        }
    }
}
