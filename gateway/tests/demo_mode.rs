//! Demo mode end to end: `demo::start` on ephemeral ports, the SDK client over a real
//! WebSocket, the simulated Home Assistant behind it, and the web approval page's JSON API
//! used the way its script uses it (session cookie, CSRF token, Origin).

use agent_gate::{AgentGateClient, CallEvent, CallOptions, DeniedBy, ErrorKind};
use agent_gate_gateway::demo::{self, DEMO_AGENT, DEMO_TOKEN, DemoOptions, RunningDemo};
use futures_util::StreamExt;
use serde_json::{Value, json};

async fn start() -> RunningDemo {
    demo::start(DemoOptions {
        port: 0,
        web_port: 0,
        data_dir: None,
    })
    .await
    .expect("demo starts")
}

async fn agent(demo: &RunningDemo) -> AgentGateClient {
    AgentGateClient::builder()
        .ignore_env()
        .url(demo.ws_url())
        .token(demo.token())
        .max_retries(Some(0))
        .connect()
        .await
        .expect("the demo agent connects")
}

/// The CSRF token in the page's `<meta name="csrf-token">`.
fn csrf_of(html: &str) -> String {
    let marker = "<meta name=\"csrf-token\" content=\"";
    let start = html.find(marker).expect("page has a CSRF token") + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_owned()
}

/// Approves `request_id` on the approval page as a browser on the same machine does.
async fn approve_on_the_page(demo: &RunningDemo, request_id: &str) -> (u16, Value) {
    let origin = format!("http://{}", demo.web_addr().expect("web page"));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Issue 15: the session comes from the one-time link (a loopback visitor used to get one
    // by just loading the page).
    let link = demo.gateway().approval_link().expect("a web page");
    let opened = http.get(&link).send().await.unwrap();
    assert_eq!(opened.status(), 303);
    let cookie = opened
        .headers()
        .get("set-cookie")
        .expect("the link gives a session")
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = http
        .get(demo.approvals_url())
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains(request_id), "the page lists the request");
    let csrf = csrf_of(&html);
    let pending: Value = http
        .get(format!("{origin}/approvals/api/pending"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        pending.to_string().contains(request_id),
        "the API lists the request: {pending}"
    );
    let response = http
        .post(format!(
            "{origin}/approvals/api/{DEMO_AGENT}/{request_id}/allow"
        ))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn demo_allows_reads_denies_locks_and_asks_for_lights_on_the_web_page() {
    let demo = start().await;
    let client = agent(&demo).await;

    // Allowed: a read.
    let state = client
        .tool_request(
            "ha_get_state",
            json!({"entity_id": "sensor.living_room_temperature"}),
        )
        .await
        .expect("reads are allowed");
    assert_eq!(state["entity_id"], "sensor.living_room_temperature");
    assert_eq!(state["state"], "21.4");

    // Denied by policy: the lock is never touched.
    let error = client
        .tool_request(
            "ha_call_service",
            json!({"domain": "lock", "service": "unlock", "entity_id": "lock.front_door"}),
        )
        .await
        .expect_err("locks are denied");
    assert_eq!(
        error.kind(),
        &ErrorKind::Denied {
            by: DeniedBy::Policy
        }
    );
    assert_eq!(demo.home().service_call_count(), 0);
    assert_eq!(
        demo.home().state("lock.front_door").unwrap()["state"],
        "locked"
    );

    // Ask: a light waits for a human, who approves on the page.
    assert_eq!(demo.home().state("light.bedroom").unwrap()["state"], "off");
    let mut events = client.tool_request_stream(
        "ha_call_service",
        json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom"}),
        CallOptions::new().request_id("bedroom-on"),
    );
    match events.next().await {
        Some(CallEvent::AwaitingApproval {
            request_id,
            expires_at,
        }) => {
            assert_eq!(request_id, "bedroom-on");
            assert!(expires_at.is_some());
        }
        other => panic!("expected awaiting_approval, got {other:?}"),
    }
    assert_eq!(
        demo.home().service_call_count(),
        0,
        "nothing runs before approval"
    );
    let (status, body) = approve_on_the_page(&demo, "bedroom-on").await;
    assert_eq!(status, 200, "{body}");
    match events.next().await {
        Some(CallEvent::Result(data)) => {
            assert!(data.to_string().contains("light.bedroom"), "{data}");
        }
        other => panic!("expected the result, got {other:?}"),
    }
    assert_eq!(demo.home().state("light.bedroom").unwrap()["state"], "on");
    assert_eq!(demo.home().service_call_count(), 1);

    client.close().await;
    let data_dir = demo.data_dir().to_path_buf();
    assert!(data_dir.join("agent-gate.db").exists());
    demo.shutdown().await.expect("clean shutdown");
    assert!(
        !data_dir.exists(),
        "the temporary data directory is removed"
    );
}

#[tokio::test]
async fn the_banner_names_the_urls_the_token_and_what_to_try() {
    let demo = start().await;
    let banner = demo.banner();
    assert!(banner.contains(&demo.ws_url()), "{banner}");
    assert!(banner.contains(&demo.approvals_url()), "{banner}");
    assert!(banner.contains(&demo.health_url()), "{banner}");
    assert!(banner.contains(DEMO_TOKEN), "{banner}");
    assert!(banner.contains("cargo run -p agent-gate --example quickstart"));
    assert!(banner.contains("agent-gate request ha_get_state"));

    // MCP: the endpoint and a ready-to-paste line per client.
    let mcp = demo.mcp_url();
    assert!(banner.contains(&mcp), "{banner}");
    assert!(
        banner.contains(&format!(
            "claude mcp add --transport http agent-gate {mcp} --header \"Authorization: Bearer {DEMO_TOKEN}\""
        )),
        "{banner}"
    );
    let desktop = banner
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("{\"mcpServers\""))
        .expect("the Claude Desktop line");
    let desktop: Value = serde_json::from_str(desktop).expect("the Claude Desktop line is JSON");
    let server = &desktop["mcpServers"]["agent-gate"];
    assert_eq!(
        server["args"],
        serde_json::json!(["mcp", "--url", demo.ws_url()])
    );
    assert_eq!(server["env"]["AGENT_GATE_TOKEN"], DEMO_TOKEN);
    assert!(
        banner.contains(&format!(
            "MCPServerStreamableHttp(params={{\"url\": \"{mcp}\", \"headers\": {{\"Authorization\": \"Bearer {DEMO_TOKEN}\"}}"
        )),
        "{banner}"
    );
    assert!(
        banner.contains(&format!(
            "MultiServerMCPClient({{\"agent-gate\": {{\"transport\": \"streamable_http\", \"url\": \"{mcp}\""
        )),
        "{banner}"
    );
    // The demo serves it: tools/list with the demo token (Host 127.0.0.1 is allowed).
    let listed = reqwest::Client::new()
        .post(&mcp)
        .bearer_auth(DEMO_TOKEN)
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2025-11-25")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.unwrap();
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .expect("a tool list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"ha_get_state"), "{listed}");

    let health = reqwest::get(demo.health_url()).await.unwrap();
    assert_eq!(health.status(), 200);
    demo.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_kept_data_directory_survives_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let demo = demo::start(DemoOptions {
        port: 0,
        web_port: 0,
        data_dir: Some(data.clone()),
    })
    .await
    .expect("demo starts");
    demo.shutdown().await.expect("clean shutdown");
    assert!(data.join("agent-gate.db").exists());
}

#[tokio::test]
async fn the_demo_command_prints_the_banner_serves_the_cli_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-gate"))
        .args(["demo", "--port", "0", "--web-port", "0"])
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let banner = tokio::task::spawn_blocking(move || {
        let mut banner = String::new();
        while !banner.contains("Press Ctrl-C to stop.") {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                break;
            }
            banner.push_str(&line);
        }
        (banner, stdout)
    });
    let (banner, mut stdout) = banner.await.unwrap();
    let url = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("Agents connect to"))
        .expect("the banner names the URL")
        .trim()
        .to_owned();
    assert!(url.starts_with("ws://127.0.0.1:"), "{banner}");
    let data_dir = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("Database"))
        .and_then(|rest| rest.trim().split(" (").next())
        .map(std::path::PathBuf::from)
        .expect("the banner names the database directory");
    assert!(data_dir.join("agent-gate.db").exists(), "{banner}");

    let request = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_agent-gate"))
            .args(["request", "ha_get_state", "entity_id=sun.sun"])
            .args(["--url", &url, "--token", DEMO_TOKEN])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(request.status.code(), Some(0), "{request:?}");
    let state: Value = serde_json::from_slice(&request.stdout).unwrap();
    assert_eq!(state["state"], "above_horizon");

    let pid = child.id().to_string();
    let status = tokio::task::spawn_blocking(move || {
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        (status, rest)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{status:?}");
    assert!(status.1.contains("agent-gate demo stopped"), "{status:?}");
    assert!(
        !data_dir.exists(),
        "the temporary data directory is removed"
    );
}
