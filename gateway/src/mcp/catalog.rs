//! The tools an MCP client is offered: the manifest's tools the agent could ever get `allow`
//! or `ask` for ([`crate::policy::Policy::may_permit`]), each with its JSON Schema input,
//! an output schema where the manifest declares a response type, and the built-in
//! `gateway_request_status`. Built once per agent, in manifest order (deterministic).

use std::collections::HashMap;
use std::sync::Arc;

use agent_gate_manifest::{Hints, Manifest, Tool as ManifestTool};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::policy::Policy;

/// The name of the built-in tool that reports a request's state by its id.
pub(crate) const REQUEST_STATUS_TOOL: &str = "gateway_request_status";

/// The tool list of every configured agent.
#[derive(Debug)]
pub(crate) struct Catalog {
    by_agent: HashMap<String, Arc<Vec<Tool>>>,
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The manifest's hints as MCP tool annotations (`None` when it gives none).
fn annotations(hints: &Hints) -> Option<ToolAnnotations> {
    if hints.is_empty() {
        return None;
    }
    let mut out = ToolAnnotations::new();
    out.read_only_hint = hints.read_only;
    out.destructive_hint = hints.destructive;
    out.idempotent_hint = hints.idempotent;
    out.open_world_hint = hints.open_world;
    Some(out)
}

fn mcp_tool(manifest: &Manifest, tool: &ManifestTool) -> Tool {
    let mut out = Tool::new(
        tool.name.clone(),
        tool.description.clone(),
        Arc::new(object(tool.input_schema())),
    );
    if let Some(schema) = tool.output_schema(manifest) {
        out = out.with_raw_output_schema(Arc::new(object(schema)));
    }
    if let Some(annotations) = annotations(&tool.hints) {
        out = out.annotate(annotations);
    }
    out
}

/// The built-in `gateway_request_status` tool.
pub(crate) fn request_status_tool() -> Tool {
    let input = json!({
        "type": "object",
        "properties": {
            "request_id": {
                "type": "string",
                "description": "The request_id a call that waits for a human answered with."
            }
        },
        "required": ["request_id"],
        "additionalProperties": false
    });
    Tool::new(
        REQUEST_STATUS_TOOL,
        "Where a call that waited for a human stands: still waiting (until when), or its \
         outcome (the tool's result, a denial, a timeout). Calling the tool again with the same \
         arguments gives the same answer.",
        Arc::new(object(input)),
    )
    .annotate(
        ToolAnnotations::new()
            .read_only(true)
            .idempotent(true)
            .open_world(false),
    )
}

impl Catalog {
    /// The catalog of every agent of `config` under `policy`. Agents that may reach the same
    /// tools share one list, so a thousand agents under one policy cost one list, not a
    /// thousand copies of every description and schema.
    pub(crate) fn new(config: &Config, manifest: &Manifest, policy: &Policy) -> Self {
        let all: Vec<(&ManifestTool, Tool)> = manifest
            .tools()
            .map(|tool| (tool, mcp_tool(manifest, tool)))
            .collect();
        let status = request_status_tool();
        let mut lists: HashMap<Vec<bool>, Arc<Vec<Tool>>> = HashMap::new();
        let by_agent = config
            .agents
            .iter()
            .map(|agent| {
                let reach: Vec<bool> = all
                    .iter()
                    .map(|(tool, _)| policy.may_permit(&agent.id, tool))
                    .collect();
                let tools = lists.entry(reach).or_insert_with_key(|reach| {
                    let mut tools: Vec<Tool> = all
                        .iter()
                        .zip(reach)
                        .filter(|(_, reachable)| **reachable)
                        .map(|((_, listed), _)| listed.clone())
                        .collect();
                    tools.push(status.clone());
                    Arc::new(tools)
                });
                (agent.id.clone(), Arc::clone(tools))
            })
            .collect();
        Self { by_agent }
    }

    /// The tools listed to `agent` (empty for an unknown agent).
    pub(crate) fn tools(&self, agent: &str) -> Arc<Vec<Tool>> {
        self.by_agent.get(agent).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PermissionsFile, ProcessEnv};

    fn bundled() -> Manifest {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools.toml");
        Manifest::load(&[path]).unwrap().manifest
    }

    fn names(tools: &[Tool]) -> Vec<&str> {
        tools.iter().map(|t| t.name.as_ref()).collect()
    }

    #[test]
    fn agents_that_reach_the_same_tools_share_one_list_and_others_get_their_own() {
        let config = Config::parse(
            "agents:\n  - {id: kitchen, token: kitchen-token-0123456789}\n  \
             - {id: hall, token: hall-token-0123456789abc}\n  \
             - {id: garage, token: garage-token-0123456789}\n",
            "/tmp/config.yaml",
            &ProcessEnv,
        )
        .unwrap();
        let no_env = |_: &str| None;
        let policy = Policy::new(
            PermissionsFile::parse(
                "rules:\n  - pattern: \"ha_call_service*\"\n    action: deny\n    agents: [garage]\n\
                 defaults:\n  - pattern: \"*\"\n    action: allow\n",
                "permissions.yaml",
                &no_env,
            )
            .unwrap(),
        );
        let manifest = bundled();
        let catalog = Catalog::new(&config, &manifest, &policy);

        let (kitchen, hall, garage) = (
            catalog.tools("kitchen"),
            catalog.tools("hall"),
            catalog.tools("garage"),
        );
        assert!(Arc::ptr_eq(&kitchen, &hall));
        assert!(!Arc::ptr_eq(&kitchen, &garage));
        let mut every: Vec<&str> = manifest.tools().map(|t| t.name.as_str()).collect();
        every.push(REQUEST_STATUS_TOOL);
        assert_eq!(names(&kitchen), every);
        let without: Vec<&str> = every
            .iter()
            .copied()
            .filter(|name| *name != "ha_call_service")
            .collect();
        assert_eq!(names(&garage), without);
        assert!(catalog.tools("stranger").is_empty());
    }
}
