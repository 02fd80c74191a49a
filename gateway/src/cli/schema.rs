//! `agent-gate schema`: prints the JSON Schema (2020-12) of every tool's
//! arguments, for clients not written in Rust. The document is
//! `agent_gate_manifest::Manifest::json_schema` (what the gateway validates
//! against and publishes in `list_tools`); `--tool NAME` prints one tool's
//! `input_schema` instead. The repository's `schema/tools.schema.json` is this
//! command's output for `tools.toml` (a test fails when it is stale).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agent_gate_manifest::Manifest;
use anyhow::Context;
use clap::Args;

/// The command that regenerates the checked-in schema (run at the
/// repository root).
pub const REGENERATE: &str =
    "cargo run -p agent-gate-gateway -- schema --tools tools.toml > schema/tools.schema.json";

/// Arguments of `agent-gate schema`.
#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// Tool manifest(s) to describe (repeat for several; loaded together).
    #[arg(long = "tools", short = 't', default_value = "tools.toml")]
    pub tools: Vec<PathBuf>,
    /// Print only this tool's input schema.
    #[arg(long)]
    pub tool: Option<String>,
}

/// The pretty-printed schema document (with a final newline) of the
/// manifests at `paths`, or of the tool `tool` in them.
pub fn render(paths: &[impl AsRef<Path>], tool: Option<&str>) -> anyhow::Result<String> {
    let loaded = Manifest::load(paths).map_err(|e| anyhow::anyhow!("{e}"))?;
    let manifest = loaded.manifest;
    let value = match tool {
        None => manifest.json_schema(),
        Some(name) => manifest
            .tool(name)
            .map(|t| t.input_schema())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no tool `{name}` in the manifest; tools: {}",
                    manifest.nearest_tools(name, usize::MAX).join(", ")
                )
            })?,
    };
    let mut text = serde_json::to_string_pretty(&value).context("cannot render the schema")?;
    text.push('\n');
    Ok(text)
}

/// Runs `agent-gate schema`.
pub fn run(args: &SchemaArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let text = render(&args.tools, args.tool.as_deref())?;
    out.write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf()
    }

    #[test]
    fn the_checked_in_schema_is_current() {
        let wanted = render(&[root().join("tools.toml")], None).unwrap();
        let path = root().join("schema/tools.schema.json");
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == wanted,
            "{} is stale (tools.toml changed); regenerate it at the repository root with:\n  {REGENERATE}",
            path.display()
        );
        let parsed: serde_json::Value = serde_json::from_str(&current).unwrap();
        assert_eq!(
            parsed["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert!(parsed["$defs"]["ha_get_state"]["properties"]["entity_id"]["pattern"].is_string());
    }

    #[test]
    fn one_tool_and_errors() {
        let mut out = Vec::new();
        let args = SchemaArgs {
            tools: vec![root().join("tools.toml")],
            tool: Some("ha_call_service".into()),
        };
        assert_eq!(run(&args, &mut out).unwrap(), ExitCode::SUCCESS);
        let one: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(one["required"], serde_json::json!(["domain", "service"]));
        assert_eq!(one["additionalProperties"], false);

        let err = render(&[root().join("tools.toml")], Some("ha_get_stat")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no tool `ha_get_stat` in the manifest; tools: ha_get_state"),
            "{err}"
        );
        let err = render(&[root().join("nope.toml")], None).unwrap_err();
        assert!(
            err.to_string().contains("cannot read the tool manifest"),
            "{err}"
        );
    }
}
