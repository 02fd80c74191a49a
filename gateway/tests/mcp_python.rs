//! The MCP front end to end with the official Python MCP SDK (PyPI `mcp`) as the client, both
//! protocol revisions (2025-11-25 with initialize, 2026-07-28 stateless), against a real
//! gateway on a real socket with the in-process Home Assistant: tools listed per agent, an
//! allowed call, a denied call, invalid arguments, an unknown tool, an ask approved while the
//! call is held, an ask that outlives the hold and is fetched by calling again (one backend
//! call), a wrong token (401) and a wrong Origin (403).
//!
//! The client runs from the Python in `AGENT_GATE_MCP_PYTHON` (a venv with `mcp` installed;
//! `.ci/run` makes it). Without it the test says so and does nothing, except under CI, where
//! it fails.

#[path = "server_support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_gate_gateway::app::Gateway;
use agent_gate_gateway::approvals::ChannelApprover;
use agent_gate_gateway::store::RequestKey;
use agent_gate_sim::home_assistant::{DEFAULT_TOKEN, HomeAssistant};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

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
  - pattern: "ha_fire_event*"
    action: deny
    agents: [pi]
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
                "mcp_python: not run; set AGENT_GATE_MCP_PYTHON to a Python with `mcp` installed"
            );
            None
        }
    }
}

fn entity_of(args: &Value) -> String {
    args["entity_id"].as_str().unwrap_or_default().to_owned()
}

/// Runs the scenario in `mode` and returns its `RESULT` lines by step. `human` approves the
/// requests the script asks for; requests on `held` entities are approved as they arrive.
async fn run_scenario(
    python: &str,
    url: &str,
    mode: &str,
    approver: &ChannelApprover,
    waiting: &Arc<Mutex<HashMap<String, RequestKey>>>,
) -> HashMap<String, Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/scenario.py");
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .env("MCP_URL", url)
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
    let mut results = HashMap::new();
    while let Some(line) = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the client answers within a minute")
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
        } else {
            eprintln!("client: {line}");
        }
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "the {mode} scenario failed: {status}");
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_gets_the_tools_the_policy_and_the_human() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = HomeAssistant::demo(DEFAULT_TOKEN);
    let (_, ha) = home.spawn("127.0.0.1:0").await.unwrap();
    let mut config = support::load_config(dir.path(), ha.addr(), &support::Options::default());
    config.mcp.hold = Duration::from_secs(2);
    let policy = support::load_policy_text(dir.path(), PERMISSIONS);
    let approver = Arc::new(ChannelApprover::new("test"));
    let gateway = Gateway::builder(config, policy, support::manifest())
        .approver(approver.clone())
        .insecure(true)
        .start()
        .await
        .unwrap();
    let url = format!("http://{}/mcp", gateway.ws_addr());

    // The human: approves held calls as they come; keeps the others for the script to ask.
    let held = ["light.kitchen", "light.living_room"];
    let waiting: Arc<Mutex<HashMap<String, RequestKey>>> = Arc::default();
    let human = {
        let approver = approver.clone();
        let waiting = Arc::clone(&waiting);
        tokio::spawn(async move {
            while let Some(request) = approver.next_request().await {
                let entity = entity_of(&request.args);
                if held.contains(&entity.as_str()) {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    approver.approve(request.key, "alice").await;
                } else {
                    waiting.lock().unwrap().insert(entity, request.key);
                }
            }
        })
    };

    for (mode, version, outlives) in [
        ("legacy", "2025-11-25", "light.bedroom"),
        ("2026-07-28", "2026-07-28", "switch.coffee_maker"),
    ] {
        let results = run_scenario(&python, &url, mode, &approver, &waiting).await;
        assert_eq!(results["negotiated"]["protocol_version"], version);

        let tools: Vec<&str> = results["list"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(tools.contains(&"ha_get_state") && tools.contains(&"ha_call_service"));
        assert!(tools.contains(&"gateway_request_status"), "{tools:?}");
        assert!(
            !tools.contains(&"ha_fire_event"),
            "every rule denies it to pi: {tools:?}"
        );

        let annotations = &results["annotations"];
        assert_eq!(
            annotations["get_state"]["readOnlyHint"], true,
            "{annotations}"
        );
        assert_eq!(annotations["call_service"]["readOnlyHint"], false);
        assert_eq!(annotations["call_service"]["destructiveHint"], true);
        assert_eq!(annotations["call_service"]["idempotentHint"], false);

        assert_eq!(results["allowed"]["state"], "locked");
        let denied = results["denied"]["text"].as_str().unwrap();
        assert_eq!(denied, "Denied by policy: Locks are off limits");
        assert_eq!(results["denied"]["error"]["code"], -32003);
        let invalid = results["invalid"]["text"].as_str().unwrap();
        assert!(
            invalid.starts_with("Invalid arguments for `ha_get_state`"),
            "{invalid}"
        );
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

        assert_eq!(results["wrong_token"]["status"], 401);
        assert!(
            results["wrong_token"]["www_authenticate"]
                .as_str()
                .unwrap()
                .starts_with("Bearer ")
        );
        assert_eq!(results["wrong_origin"]["status"], 403);
    }
    human.abort();
    gateway.shutdown().await.unwrap();
}

/// A client that declares the Tasks extension: a call that waits for a human is a task at
/// once; the task survives a gateway restart (approved on the restarted gateway, its result
/// read by `tasks/get`), and `tasks/cancel` withdraws a waiting request (approvers are told).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_client_gets_a_task_that_survives_a_restart_and_can_be_cancelled() {
    use agent_gate_gateway::approvals::{ApproverEvent, Resolution};

    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = HomeAssistant::demo(DEFAULT_TOKEN);
    let (_, ha) = home.spawn("127.0.0.1:0").await.unwrap();
    let mut config = support::load_config(dir.path(), ha.addr(), &support::Options::default());
    let start = |config: agent_gate_gateway::config::Config, approver: Arc<ChannelApprover>| {
        let policy = support::load_policy_text(dir.path(), PERMISSIONS);
        async move {
            Gateway::builder(config, policy, support::manifest())
                .approver(approver)
                .insecure(true)
                .start()
                .await
                .unwrap()
        }
    };
    let first = Arc::new(ChannelApprover::new("test"));
    let mut gateway = Some(start(config.clone(), first.clone()).await);
    let port = gateway.as_ref().unwrap().ws_addr().port();
    config.gateway.port = port;
    let url = format!("http://127.0.0.1:{port}/mcp");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/tasks_scenario.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(script)
        .env("MCP_URL", &url)
        .env("MCP_TOKEN", support::PI_TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the Python client starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let second = Arc::new(ChannelApprover::new("test"));
    let mut tasks: Vec<Value> = Vec::new();
    let mut cancelled_id = None;
    while let Some(line) = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the client answers within a minute")
        .unwrap()
    {
        if let Some(rest) = line.strip_prefix("TASK ") {
            let (id, entity) = rest.split_once(' ').unwrap();
            let running = gateway.as_ref().unwrap();
            assert_eq!(
                running.pending_approvals(),
                1,
                "the task is a stored pending request"
            );
            if entity == "light.bedroom" {
                // Restart with the task pending, then approve it on the new gateway.
                gateway.take().unwrap().shutdown().await.unwrap();
                gateway = Some(start(config.clone(), second.clone()).await);
                let outcome = second.approve(RequestKey::new("pi", id), "alice").await;
                assert_eq!(outcome, agent_gate_gateway::approvals::DecideOutcome::Won);
            } else {
                cancelled_id = Some(id.to_owned());
            }
            stdin.write_all(b"DONE\n").await.unwrap();
        } else if let Some(json) = line.strip_prefix("RESULT ") {
            let value: Value = serde_json::from_str(json).unwrap();
            if value["step"] == "task" {
                tasks.push(value);
            }
        } else {
            eprintln!("client: {line}");
        }
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "the Tasks scenario failed: {status}");

    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert_eq!(tasks[0]["status"], "completed", "{tasks:?}");
    assert_eq!(
        tasks[0]["seen"][0], "working",
        "a task first, then its outcome"
    );
    let bedroom = home
        .service_calls()
        .iter()
        .filter(|c| c.data["entity_id"] == "light.bedroom")
        .count();
    assert_eq!(bedroom, 1, "the approved task ran once, after the restart");
    assert_eq!(tasks[1]["status"], "cancelled", "{tasks:?}");
    assert_eq!(tasks[1]["message"], "Cancelled by the agent");
    let cancelled_id = cancelled_id.unwrap();
    let coffee = home
        .service_calls()
        .iter()
        .filter(|c| c.data["entity_id"] == "switch.coffee_maker")
        .count();
    assert_eq!(coffee, 0, "a cancelled request never runs");
    // The approvers were told it was cancelled.
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match second.next_event().await {
                Some(ApproverEvent::Resolved(request, Resolution::Cancelled { reason, .. }))
                    if request.key.request_id == cancelled_id =>
                {
                    return reason;
                }
                Some(_) => continue,
                None => panic!("the approver closed"),
            }
        }
    })
    .await
    .expect("the approvers hear of the cancellation");
    assert_eq!(told, "cancelled by the agent");
    gateway.take().unwrap().shutdown().await.unwrap();
}
