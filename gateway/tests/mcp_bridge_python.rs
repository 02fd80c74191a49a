//! The stdio MCP bridge (`agent-gate mcp`, the built binary) end to end, launched as a stdio
//! server by the official Python MCP SDK (PyPI `mcp`), in both protocol revisions, forwarding
//! over the WebSocket protocol to a real gateway on a real socket with the in-process Home
//! Assistant: tools listed, an allowed call, a denied call, invalid arguments, an unknown tool,
//! an ask approved while the call is held, an ask that outlives the hold and is fetched by
//! calling again (one backend call), and a gateway restart while the bridge runs (the next
//! call works).
//!
//! The client runs from the Python in `AGENT_GATE_MCP_PYTHON` (a venv with `mcp` installed;
//! `.ci/mcp-venv.sh` makes it). Without it the test says so and does nothing, except under CI,
//! where it fails.

#[path = "server_support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_gate_gateway::app::{Gateway, RunningGateway};
use agent_gate_gateway::approvals::ChannelApprover;
use agent_gate_gateway::config::{Config, ProcessEnv};
use agent_gate_gateway::store::RequestKey;
use agent_gate_sim::home_assistant::{DEFAULT_TOKEN, HomeAssistant};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::task::JoinHandle;

const PERMISSIONS: &str = r#"
rules:
  - pattern: "ha_get_state(*)"
    action: allow
  - pattern: "ha_call_service(lock.*)"
    action: deny
    description: "Locks are off limits"
  - pattern: "ha_call_service(*, lock.*)"
    action: deny
    description: "Locks are off limits"
  - pattern: "ha_call_service(*)"
    action: ask
defaults:
  - pattern: "*"
    action: allow
"#;

/// The Python with the MCP SDK, or `None` (outside CI) when it is not configured.
fn python() -> Option<String> {
    match std::env::var("AGENT_GATE_MCP_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ if std::env::var_os("CI").is_some() => {
            panic!("AGENT_GATE_MCP_PYTHON is not set: .ci/run must provide the MCP SDK venv")
        }
        _ => {
            eprintln!(
                "mcp_bridge_python: not run; set AGENT_GATE_MCP_PYTHON to a Python with `mcp` \
                 installed"
            );
            None
        }
    }
}

/// Approvals held back for the script to ask for, by entity.
type Waiting = Arc<Mutex<HashMap<String, RequestKey>>>;

/// A gateway (on `port`, 0 for any) over the store in `dir`, and its human: approves calls on
/// `held` entities as they come, keeps the others in `waiting`.
async fn start_gateway(
    dir: &Path,
    ha: std::net::SocketAddr,
    port: u16,
    waiting: &Waiting,
) -> (RunningGateway, Arc<ChannelApprover>, JoinHandle<()>) {
    let text = support::config_text(dir, ha, &support::Options::default());
    let path = dir.join("config.yaml");
    std::fs::write(&path, &text).unwrap();
    let mut config = Config::parse(&text, &path, &ProcessEnv).unwrap();
    config.gateway.port = port;
    config.gateway.health_port = 0;
    let policy = support::load_policy_text(dir, PERMISSIONS);
    let approver = Arc::new(ChannelApprover::new("test"));
    let gateway = Gateway::builder(config, policy, support::manifest())
        .approver(approver.clone())
        .insecure(true)
        .start()
        .await
        .unwrap();
    let held = ["light.kitchen", "light.living_room"];
    let human = {
        let approver = approver.clone();
        let waiting = Arc::clone(waiting);
        tokio::spawn(async move {
            while let Some(request) = approver.next_request().await {
                let entity = request.args["entity_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if held.contains(&entity.as_str()) {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    approver.approve(request.key, "alice").await;
                } else {
                    waiting.lock().unwrap().insert(entity, request.key);
                }
            }
        })
    };
    (gateway, approver, human)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_mcp_client_reaches_a_remote_gateway_through_the_bridge() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = HomeAssistant::demo(DEFAULT_TOKEN);
    let (_, ha) = home.spawn("127.0.0.1:0").await.unwrap();
    let waiting: Waiting = Arc::default();
    let (mut gateway, mut approver, mut human) =
        start_gateway(dir.path(), ha.addr(), 0, &waiting).await;
    let addr = gateway.ws_addr();
    let url = format!("ws://{addr}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/bridge_scenario.py");

    for (mode, version, outlives) in [
        ("legacy", "2025-11-25", "light.bedroom"),
        ("2026-07-28", "2026-07-28", "switch.coffee_maker"),
    ] {
        let mut child = tokio::process::Command::new(&python)
            .arg(script)
            .env("BRIDGE_BIN", env!("CARGO_BIN_EXE_agent-gate"))
            .env("GATEWAY_URL", &url)
            .env("MCP_TOKEN", support::PI_TOKEN)
            .env("MCP_MODE", mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the Python client starts");
        let mut stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut results: HashMap<String, Value> = HashMap::new();
        while let Some(line) = tokio::time::timeout(Duration::from_secs(40), lines.next_line())
            .await
            .expect("the client answers within 40 s")
            .unwrap()
        {
            if let Some(json) = line.strip_prefix("RESULT ") {
                let value: Value = serde_json::from_str(json).unwrap();
                results.insert(value["step"].as_str().unwrap().to_owned(), value);
            } else if let Some(entity) = line.strip_prefix("HUMAN ") {
                let key = waiting
                    .lock()
                    .unwrap()
                    .remove(entity)
                    .unwrap_or_else(|| panic!("no pending request on {entity}"));
                approver.approve(key, "alice").await;
                stdin.write_all(b"DONE\n").await.unwrap();
            } else if line == "RESTART" {
                human.abort();
                gateway.shutdown().await.unwrap();
                (gateway, approver, human) =
                    start_gateway(dir.path(), ha.addr(), addr.port(), &waiting).await;
                stdin.write_all(b"DONE\n").await.unwrap();
            } else {
                eprintln!("client: {line}");
            }
        }
        let status = child.wait().await.unwrap();
        assert!(status.success(), "the {mode} scenario failed: {status}");

        assert_eq!(results["negotiated"]["protocol_version"], version);
        let tools: Vec<&str> = results["list"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(tools.contains(&"ha_get_state") && tools.contains(&"ha_call_service"));
        assert!(tools.contains(&"gateway_request_status"), "{tools:?}");

        // The bridge lists what the MCP endpoint lists: output schemas where the manifest
        // declares a response type, and the manifest's hints as annotations.
        let schemas = &results["schemas"];
        assert_eq!(
            schemas["get_state_output"]["properties"]["entity_id"]["type"], "string",
            "{schemas}"
        );
        assert_eq!(
            schemas["call_service_output"],
            Value::Null,
            "no response type"
        );
        let annotations = &results["annotations"];
        assert_eq!(
            annotations["get_state"],
            json!({"readOnlyHint": true, "idempotentHint": true, "openWorldHint": false}),
            "{annotations}"
        );
        assert_eq!(annotations["call_service"]["readOnlyHint"], false);
        assert_eq!(annotations["call_service"]["destructiveHint"], true);
        assert_eq!(annotations["call_service"]["idempotentHint"], false);

        assert_eq!(results["allowed"]["state"], "locked");
        let denied = results["denied"]["text"].as_str().unwrap();
        assert!(denied.contains("Locks are off limits"), "{denied}");
        assert_eq!(results["denied"]["error"]["code"], -32003);
        let invalid = results["invalid"]["text"].as_str().unwrap();
        assert!(invalid.contains("entity_id"), "{invalid}");
        assert_eq!(results["unknown"]["code"], -32602);
        assert!(
            results["unknown"]["message"]
                .as_str()
                .unwrap()
                .contains("ha_no_such_tool")
        );

        let waited = &results["waiting"];
        let request_id = waited["status"]["request_id"].as_str().unwrap();
        let text = waited["text"].as_str().unwrap();
        assert!(
            text.contains(request_id) && text.contains("same arguments"),
            "{text}"
        );
        assert!(
            !waited["progress"].as_array().unwrap().is_empty(),
            "the held calls reported progress"
        );
        assert_eq!(results["fetched"]["result"]["result"][0]["state"], "on");
        let runs = home
            .service_calls()
            .iter()
            .filter(|c| c.data["entity_id"] == outlives)
            .count();
        assert_eq!(runs, 1, "the call that outlived the hold ran once");
        assert_eq!(results["restarted"]["state"], "locked");
    }
    human.abort();
    gateway.shutdown().await.unwrap();
}
