//! Reloading agents and permissions without a restart, through the real interfaces: a
//! gateway in process (`RunningGateway::reload`, what SIGHUP and `POST /admin/reload` call)
//! with real WebSocket and MCP clients, and `agent-gate serve` as a process reloaded by
//! SIGHUP and by `agent-gate reload`.
//!
//! A valid file is applied to the next call; an invalid or half-written one (written in
//! place, not renamed) is refused whole, the old policy stays, and `/healthz` shows why; an
//! added agent's token works at once; a removed agent's (or a rotated-out token's)
//! connections are closed and MCP answers 401; a call waiting for a human keeps waiting.

#[path = "server_support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_gate_gateway::store::AuditQuery;
use agent_gate_sim::home_assistant::{DEFAULT_TOKEN, HomeAssistant, RunningHomeAssistant};
use serde_json::{Value, json};
use support::{Client, Harness, LAPTOP_TOKEN, Options, PERMISSIONS, PI_TOKEN, config_text};

const BIN: &str = env!("CARGO_BIN_EXE_agent-gate");

/// `PERMISSIONS` with reads denied: the "before" policy of the tests.
const READS_DENIED: &str = r#"
rules:
  - pattern: "ha_get_*"
    action: deny
    description: "No reads for now"
  - pattern: "ha_call_service(light.*)"
    action: ask
defaults:
  - pattern: "*"
    action: ask
"#;

const DEN_TOKEN: &str = "den-token-0123456789abcdef";

fn write_in_place(path: &Path, text: &str) {
    // Truncate and rewrite the same inode, as an editor that saves in place does.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.sync_all().unwrap();
}

fn write_permissions(h: &Harness, text: &str) {
    write_in_place(&h.dir.path().join("permissions.yaml"), text);
}

/// Rewrites config.yaml with this `agents:` section (everything else as the harness wrote).
fn write_agents(h: &Harness, agents: &str) {
    let options = Options {
        agents: Some(agents.to_owned()),
        ..h.options.clone()
    };
    let text = config_text(h.dir.path(), h.ha_server.addr(), &options);
    write_in_place(&h.dir.path().join("config.yaml"), &text);
}

async fn read_state(agent: &mut Client) -> Value {
    agent
        .tool("ha_get_state", json!({"entity_id": "light.kitchen"}))
        .await
}

async fn healthz(h: &Harness) -> (u16, Value) {
    let addr = h.gateway().health_addr().expect("HTTP side on");
    let response = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// One stateless MCP `tools/list` with `token`: the status and the body.
async fn mcp_tools(h: &Harness, token: &str) -> (u16, Value) {
    let url = format!("http://{}/mcp", h.gateway().ws_addr());
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn tool_names(body: &Value) -> Vec<String> {
    body["result"]["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

/// The close frame the gateway sends `client`, failing (not hanging) if none comes in 20 s.
async fn closed_within(
    client: &mut Client,
) -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    tokio::time::timeout(Duration::from_secs(20), client.closed())
        .await
        .expect("the gateway closes the connection")
        .expect("with a close frame")
}

async fn harness(permissions: &str) -> Harness {
    Harness::start_with(Options {
        permissions: Some(permissions.to_owned()),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn a_valid_permissions_file_applies_to_the_next_call() {
    let h = harness(READS_DENIED).await;
    let mut agent = h.agent().await;
    let before = read_state(&mut agent).await;
    assert_eq!(before["error"]["code"], -32003, "{before}");
    let (_, listed) = mcp_tools(&h, PI_TOKEN).await;
    assert!(!tool_names(&listed).contains(&"ha_get_state".to_owned()));

    write_permissions(&h, PERMISSIONS);
    let report = h
        .gateway()
        .reload("test")
        .await
        .expect("valid files reload");
    assert_eq!(report.rules, 5);
    assert!(report.agents_added.is_empty() && report.agents_removed.is_empty());

    // The same connection: its next call is judged by the new policy.
    let after = read_state(&mut agent).await;
    assert_eq!(after["result"]["status"], "executed", "{after}");
    // MCP's tool list follows the policy too.
    let (_, listed) = mcp_tools(&h, PI_TOKEN).await;
    assert!(tool_names(&listed).contains(&"ha_get_state".to_owned()));
    let (code, health) = healthz(&h).await;
    assert_eq!(code, 200);
    assert_eq!(health["config"]["ok"], true, "{health}");
    assert_eq!(health["checks"]["config"], true);

    // Recorded in the audit log (written in the background).
    eventually("the reload is audited", || async {
        let audit = h
            .gateway()
            .store()
            .audit_page(AuditQuery::new())
            .await
            .unwrap();
        audit
            .iter()
            .any(|e| e.kind.as_str() == "config_reloaded" && e.actor.as_deref() == Some("test"))
    })
    .await;
}

#[tokio::test]
async fn an_invalid_permissions_file_is_refused_whole_and_shown_on_healthz() {
    let h = harness(READS_DENIED).await;
    let mut agent = h.agent().await;
    // A valid first rule (it would allow reads) and a broken second one: nothing applies.
    let broken = PERMISSIONS
        .replace(
            "action: ask\n    description: \"Lights",
            "action: alow\n    description: \"Lights",
        )
        .replace(
            "pattern: \"ha_call_service(lock.*)\"\n    action: deny",
            "pattern: \"ha_get_*\"\n    action: allow",
        );
    assert!(broken.contains("alow"));
    write_permissions(&h, &broken);
    let error = h.gateway().reload("test").await.expect_err("refused");
    let problems = error.problems().join("\n");
    assert!(problems.contains("permissions.yaml"), "{problems}");
    assert!(problems.contains("alow"), "{problems}");

    let still = read_state(&mut agent).await;
    assert_eq!(
        still["error"]["code"], -32003,
        "old policy applies: {still}"
    );
    let (code, health) = healthz(&h).await;
    assert_eq!(
        code, 200,
        "a refused reload leaves the gateway serving: {health}"
    );
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["condition"], "degraded");
    assert_eq!(health["checks"]["config"], false);
    assert_eq!(health["config"]["ok"], false);
    let detail = health["config"]["detail"].as_str().unwrap();
    assert!(detail.contains("alow"), "{detail}");
    assert!(health["config"]["at"].is_string());

    // Fixed: the next reload applies it and clears the failure.
    write_permissions(&h, PERMISSIONS);
    h.gateway()
        .reload("test")
        .await
        .expect("fixed file reloads");
    let (_, health) = healthz(&h).await;
    assert_eq!(health["config"]["ok"], true, "{health}");
    assert_eq!(health["condition"], "ok");
    assert_eq!(read_state(&mut agent).await["result"]["status"], "executed");
}

#[tokio::test]
async fn a_half_written_file_written_in_place_is_refused_the_same_way() {
    let h = harness(READS_DENIED).await;
    let mut agent = h.agent().await;
    // Cut inside the last rule's action, as a reload racing a slow in-place save would
    // read it: "ha_get_*" allow is complete, the file is not.
    let cut = PERMISSIONS
        .find("action: ask\n    description: \"Lights")
        .unwrap()
        + "action: a".len();
    write_permissions(&h, &PERMISSIONS[..cut]);
    let error = h.gateway().reload("test").await.expect_err("refused");
    assert!(error.to_string().contains("permissions.yaml"), "{error}");
    assert_eq!(read_state(&mut agent).await["error"]["code"], -32003);
    let (_, health) = healthz(&h).await;
    assert_eq!(health["config"]["ok"], false, "{health}");

    // A half-written config.yaml (cut inside the agents' list) is refused too: the agents
    // stay as they were.
    let full = config_text(h.dir.path(), h.ha_server.addr(), &h.options);
    let cut = full.find("  - id: laptop").unwrap() + "  - id: laptop\n    tok".len();
    write_permissions(&h, PERMISSIONS);
    write_in_place(&h.dir.path().join("config.yaml"), &full[..cut]);
    let error = h.gateway().reload("test").await.expect_err("refused");
    assert!(error.to_string().contains("config.yaml"), "{error}");
    assert_eq!(read_state(&mut agent).await["error"]["code"], -32003);
    // laptop still gets in.
    h.agent_with(LAPTOP_TOKEN).await;
}

#[tokio::test]
async fn an_added_agent_authenticates_at_once_over_websocket_and_mcp() {
    let h = harness(PERMISSIONS).await;
    let mut refused = h.connect().await;
    let answer = refused.call("auth", json!({"token": DEN_TOKEN})).await;
    assert!(answer["error"].is_object(), "{answer}");
    assert_eq!(mcp_tools(&h, DEN_TOKEN).await.0, 401);

    write_agents(
        &h,
        &format!(
            "agents:\n  - id: pi\n    token: \"{PI_TOKEN}\"\n  - id: laptop\n    token: \"{LAPTOP_TOKEN}\"\n  - id: den\n    token: \"{DEN_TOKEN}\"\n"
        ),
    );
    let report = h.gateway().reload("test").await.expect("reloads");
    assert_eq!(report.agents_added, vec!["den".to_owned()]);

    let mut den = h.agent_with(DEN_TOKEN).await;
    assert_eq!(read_state(&mut den).await["result"]["status"], "executed");
    let (code, listed) = mcp_tools(&h, DEN_TOKEN).await;
    assert_eq!(code, 200);
    assert!(tool_names(&listed).contains(&"ha_get_state".to_owned()));
}

#[tokio::test]
async fn a_removed_agent_is_disconnected_and_refused_over_mcp() {
    let h = harness(PERMISSIONS).await;
    let mut laptop = h.agent_with(LAPTOP_TOKEN).await;
    let mut pi = h.agent().await;
    assert_eq!(mcp_tools(&h, LAPTOP_TOKEN).await.0, 200);

    write_agents(
        &h,
        &format!("agents:\n  - id: pi\n    token: \"{PI_TOKEN}\"\n"),
    );
    let report = h.gateway().reload("test").await.expect("reloads");
    assert_eq!(report.agents_removed, vec!["laptop".to_owned()]);
    assert_eq!(report.connections_closed, 1);

    let close = closed_within(&mut laptop).await;
    assert_eq!(u16::from(close.code), 1008);
    assert!(close.reason.contains("removed"), "{}", close.reason);
    assert_eq!(mcp_tools(&h, LAPTOP_TOKEN).await.0, 401);
    let mut again = h.connect().await;
    assert!(again.call("auth", json!({"token": LAPTOP_TOKEN})).await["error"].is_object());
    // Others are untouched.
    assert_eq!(read_state(&mut pi).await["result"]["status"], "executed");
}

#[tokio::test]
async fn a_rotated_out_token_closes_only_the_connections_that_used_it() {
    const NEW_TOKEN: &str = "pi-new-token-0123456789abcdef";
    let agents = |tokens: &[&str]| {
        let list: String = tokens
            .iter()
            .map(|t| format!("      - token: \"{t}\"\n"))
            .collect();
        format!(
            "agents:\n  - id: pi\n    tokens:\n{list}  - id: laptop\n    token: \"{LAPTOP_TOKEN}\"\n"
        )
    };
    let h = Harness::start_with(Options {
        agents: Some(agents(&[PI_TOKEN, NEW_TOKEN])),
        ..Options::default()
    })
    .await;
    let mut old = h.agent_with(PI_TOKEN).await;
    let mut new = h.agent_with(NEW_TOKEN).await;

    write_agents(&h, &agents(&[NEW_TOKEN]));
    let report = h.gateway().reload("test").await.expect("reloads");
    assert_eq!(report.tokens_changed, vec!["pi".to_owned()]);
    assert_eq!(report.connections_closed, 1);
    let close = closed_within(&mut old).await;
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(read_state(&mut new).await["result"]["status"], "executed");
}

#[tokio::test]
async fn a_call_waiting_for_a_human_keeps_waiting_when_the_policy_changes() {
    let h = harness(PERMISSIONS).await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id(
            "ha_call_service",
            json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom"}),
            "waiting",
        )
        .await;
    let request = h.approver.next_request().await.unwrap();
    // Lights are now denied: the waiting call keeps the decision it got (ask).
    write_permissions(
        &h,
        &PERMISSIONS.replace(
            "action: ask\n    description: \"Lights",
            "action: deny\n    description: \"Lights",
        ),
    );
    h.gateway().reload("test").await.expect("reloads");
    assert_eq!(h.gateway().pending_approvals(), 1);
    h.approver.approve(request.key, "alice").await;
    let answer = agent.response(id).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    assert_eq!(h.home.state("light.bedroom").unwrap()["state"], "on");
    // A new call of the same kind is denied.
    let denied = agent
        .tool(
            "ha_call_service",
            json!({"domain": "light", "service": "turn_off", "entity_id": "light.bedroom"}),
        )
        .await;
    assert_eq!(denied["error"]["code"], -32003, "{denied}");
}

// --- `agent-gate serve` as a process: SIGHUP and `agent-gate reload` ---

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Served {
    child: Child,
    ws: u16,
    health: u16,
    dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn config(&self) -> std::path::PathBuf {
        self.dir.path().join("config.yaml")
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
    }

    fn reload_cli(&self, token: Option<&str>) -> std::process::Output {
        let mut command = Command::new(BIN);
        command.arg("reload").arg("-c").arg(self.config());
        command.env_remove("AGENT_GATE_ADMIN_TOKEN");
        match token {
            // Explicit: the config's `${RELOAD_TEST_ADMIN_TOKEN}` is not read.
            Some(token) => {
                command
                    .arg("--token")
                    .arg(token)
                    .env_remove("RELOAD_TEST_ADMIN_TOKEN");
            }
            // From gateway.admin_token, as the gateway's own environment resolves it.
            None => {
                command.env("RELOAD_TEST_ADMIN_TOKEN", ADMIN_TOKEN);
            }
        }
        command.output().unwrap()
    }

    async fn agent(&self) -> Client {
        let mut client = Client::connect(&format!("ws://127.0.0.1:{}", self.ws)).await;
        let answer = client.call("auth", json!({"token": PI_TOKEN})).await;
        assert_eq!(answer["result"]["status"], "authenticated", "{answer}");
        client
    }

    /// `agent_gate_reloads_total{result="<result>"}` from `/metrics` (0 before any).
    async fn reloads(&self, result: &str) -> u64 {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.health))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let prefix = format!("agent_gate_reloads_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn healthz(&self) -> Value {
        reqwest::get(format!("http://127.0.0.1:{}/healthz", self.health))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Starts `agent-gate serve --insecure` with an admin token and `permissions`; returns once
/// it logged "ready".
async fn serve(permissions: &str) -> (Served, RunningHomeAssistant) {
    let dir = tempfile::tempdir().unwrap();
    let home = HomeAssistant::demo(DEFAULT_TOKEN);
    let (ha, server) = home.spawn("127.0.0.1:0").await.unwrap();
    let (ws, health) = (free_port(), free_port());
    let text = config_text(dir.path(), ha, &Options::default())
        .replace("port: 8443", &format!("port: {ws}"))
        .replace(
            "health_port: 8080",
            &format!("health_port: {health}\n  admin_token: \"${{RELOAD_TEST_ADMIN_TOKEN}}\""),
        );
    std::fs::write(dir.path().join("config.yaml"), text).unwrap();
    std::fs::write(dir.path().join("permissions.yaml"), permissions).unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--insecure")
        .arg("-c")
        .arg(dir.path().join("config.yaml"))
        .arg("-p")
        .arg(dir.path().join("permissions.yaml"))
        .env("RELOAD_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if line.contains("\"ready\"") {
                // Keep draining so the gateway never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(ready, "serve exited before ready");
    (
        Served {
            child,
            ws,
            health,
            dir,
        },
        server,
    )
}

/// Polls `check` (a fresh call each time) until it holds or 20 s pass.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_agent_gate_reload_apply_new_permissions() {
    let (served, _ha) = serve(READS_DENIED).await;
    let mut agent = served.agent().await;
    assert_eq!(read_state(&mut agent).await["error"]["code"], -32003);

    // SIGHUP: reads become allowed.
    let permissions = served.dir.path().join("permissions.yaml");
    write_in_place(&permissions, PERMISSIONS);
    served.signal("HUP");
    let agent = std::sync::Arc::new(tokio::sync::Mutex::new(agent));
    eventually("SIGHUP applies the new policy", || {
        let agent = std::sync::Arc::clone(&agent);
        async move {
            let mut agent = agent.lock().await;
            read_state(&mut agent).await["result"]["status"] == "executed"
        }
    })
    .await;

    // `agent-gate reload`: reads are denied again, at once.
    write_in_place(&permissions, READS_DENIED);
    let output = served.reload_cli(None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("reloaded"), "{stdout}");
    {
        let mut agent = agent.lock().await;
        assert_eq!(read_state(&mut agent).await["error"]["code"], -32003);
    }

    // A wrong admin token: a clear error, a non-zero exit, nothing reloaded.
    write_in_place(&permissions, PERMISSIONS);
    let output = served.reload_cli(Some("not-the-admin-token-at-all"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refused the admin token"), "{stderr}");
    {
        let mut agent = agent.lock().await;
        assert_eq!(read_state(&mut agent).await["error"]["code"], -32003);
    }

    // An invalid file through `agent-gate reload`: exit 1, the problems on stderr, the old
    // policy stays, /healthz says why.
    write_in_place(
        &permissions,
        "rules:\n  - pattern: \"ha_get_*\"\n    action: alow\n",
    );
    let output = served.reload_cli(None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(stderr.contains("alow"), "{stderr}");
    {
        let mut agent = agent.lock().await;
        assert_eq!(read_state(&mut agent).await["error"]["code"], -32003);
    }
    let health = served.healthz().await;
    assert_eq!(health["config"]["ok"], false, "{health}");
    assert_eq!(health["status"], "healthy");

    // The same file by SIGHUP: refused, and the gateway keeps running.
    assert_eq!(served.reloads("refused").await, 1);
    served.signal("HUP");
    eventually("SIGHUP refuses the invalid file", || async {
        served.reloads("refused").await == 2
    })
    .await;
    {
        let mut agent = agent.lock().await;
        assert_eq!(read_state(&mut agent).await["error"]["code"], -32003);
    }
    write_in_place(&permissions, PERMISSIONS);
    served.signal("HUP");
    eventually("a fixed file reloads by SIGHUP", || async {
        served.healthz().await["config"]["ok"] == true
    })
    .await;
    let mut agent = agent.lock().await;
    assert_eq!(read_state(&mut agent).await["result"]["status"], "executed");
}

#[tokio::test]
async fn agent_gate_reload_without_an_admin_token_says_how_to_enable_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = "gateway:\n  health_port: 1\nagents:\n  - id: pi\n    token: \"pi-token-0123456789abcdef\"\n";
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    let output = Command::new(BIN)
        .arg("reload")
        .arg("-c")
        .arg(dir.path().join("config.yaml"))
        .env_remove("AGENT_GATE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("gateway.admin_token"), "{stderr}");
    assert!(stderr.contains("SIGHUP"), "{stderr}");
}

#[tokio::test]
async fn the_admin_endpoint_is_off_without_an_admin_token_and_says_how_to_enable_it() {
    let h = harness(READS_DENIED).await;
    let addr = h.gateway().health_addr().expect("HTTP side on");
    write_permissions(&h, PERMISSIONS);
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/admin/reload"))
        .bearer_auth("anything-at-all-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("gateway.admin_token"), "{error}");
    assert!(error.contains("SIGHUP"), "{error}");
    // Nothing was reloaded.
    let mut agent = h.agent().await;
    assert_eq!(read_state(&mut agent).await["error"]["code"], -32003);
}
