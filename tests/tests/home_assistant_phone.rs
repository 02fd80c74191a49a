//! The Home Assistant phone app approver end to end through the real `agent-gate` binary
//! (`serve --insecure`, `approvers: - type: home_assistant`): an ask becomes an actionable
//! notification of `notify.mobile_app_<device>`, and a `mobile_app_notification_action`
//! event fired through Home Assistant's REST API (`POST /api/events/...`, as the companion
//! app's press does through its webhook) decides it.
//!
//! Which Home Assistant: the simulator by default (the phone is registered in it, its pushes
//! are read from it). With `AGENT_GATE_REAL_HA_URL` and `AGENT_GATE_REAL_HA_TOKEN` set (by
//! `.ci/real-ha.sh`), a real Home Assistant with `mobile_app:` enabled: the test registers a
//! phone through `POST /api/mobile_app/registrations` whose `push_url` is a listener of the
//! test, waits for `notify.mobile_app_<device>`, and reads what Home Assistant pushes there
//! (the payload its push relay would get). Same assertions for both.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agent_gate::ha::HomeAssistant as _;
use agent_gate::{CallEvent, CallOptions, DeniedBy, ErrorKind};
use agent_gate_sim::home_assistant::{HomeAssistant, RunningHomeAssistant};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use support::{client, tools_toml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

const AGENT_TOKEN: &str = "phone-agent-token-0123456789abcdef";
const SIM_TOKEN: &str = "phone-home-assistant-token";
/// The registered phone's name; Home Assistant slugifies it into the service name.
const DEVICE_NAME: &str = "agent gate phone";
const DEVICE: &str = "agent_gate_phone";

const PERMISSIONS: &str = r#"
rules:
  - pattern: "ha_call_service(input_boolean.*)"
    action: ask
    description: "The test helper needs a human"
defaults:
  - pattern: "ha_get_*"
    action: allow
  - pattern: "*"
    action: deny
"#;

/// One notification as the phone would get it: `message`, `title`, `data`.
#[derive(Debug, Clone)]
struct Push {
    message: String,
    title: Option<String>,
    data: Map<String, Value>,
}

impl Push {
    fn tag(&self) -> Option<&str> {
        self.data.get("tag").and_then(Value::as_str)
    }

    fn actions(&self) -> Vec<Value> {
        self.data
            .get("actions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    fn action(&self, title: &str) -> String {
        self.actions()
            .iter()
            .find(|a| a["title"] == title)
            .and_then(|a| a["action"].as_str())
            .unwrap_or_else(|| panic!("no action {title:?} in {:?}", self.actions()))
            .to_owned()
    }
}

enum Home {
    Simulated {
        home: HomeAssistant,
        server: RunningHomeAssistant,
        seen: usize,
    },
    Real {
        url: String,
        token: String,
        /// The id of the token's user: the `context.user_id` of the events it fires.
        user_id: String,
        pushes: mpsc::UnboundedReceiver<Value>,
    },
}

impl Home {
    async fn start() -> Self {
        let url = std::env::var("AGENT_GATE_REAL_HA_URL").ok();
        let token = std::env::var("AGENT_GATE_REAL_HA_TOKEN").ok();
        match (url, token) {
            (Some(url), Some(token)) => {
                let user_id = std::env::var("AGENT_GATE_REAL_HA_USER_ID").expect(
                    "AGENT_GATE_REAL_HA_USER_ID: the id of the token's user (.ci/ha/provision.py prints it)",
                );
                let pushes = register_phone(&url, &token).await;
                Self::Real {
                    url,
                    token,
                    user_id,
                    pushes,
                }
            }
            (None, None) => {
                let home = HomeAssistant::builder()
                    .token(SIM_TOKEN)
                    .entity(
                        agent_gate_sim::home_assistant::Entity::new(
                            "input_boolean.agent_gate_test",
                            "off",
                        )
                        .name("agent-gate test"),
                    )
                    .mobile_app_device(DEVICE)
                    .build()
                    .unwrap();
                let (_, server) = home.spawn("127.0.0.1:0").await.unwrap();
                Self::Simulated {
                    home,
                    server,
                    seen: 0,
                }
            }
            _ => panic!("set both AGENT_GATE_REAL_HA_URL and AGENT_GATE_REAL_HA_TOKEN, or neither"),
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Simulated { server, .. } => server.url(),
            Self::Real { url, .. } => url.clone(),
        }
    }

    fn token(&self) -> &str {
        match self {
            Self::Simulated { .. } => SIM_TOKEN,
            Self::Real { token, .. } => token,
        }
    }

    /// The user whose presses count (`users:`): the one the token belongs to, as Home
    /// Assistant puts it in the `context.user_id` of an event fired through the REST API.
    fn user_id(&self) -> &str {
        match self {
            Self::Simulated { .. } => agent_gate_sim::home_assistant::USER_ID,
            Self::Real { user_id, .. } => user_id,
        }
    }

    /// The next notification the phone gets.
    async fn next_push(&mut self) -> Push {
        match self {
            Self::Simulated { home, seen, .. } => {
                *seen += 1;
                let pushes =
                    tokio::time::timeout(Duration::from_secs(20), home.wait_for_pushes(*seen))
                        .await
                        .expect("a push");
                let push = &pushes[*seen - 1];
                assert_eq!(push.device, DEVICE);
                Push {
                    message: push.message.clone(),
                    title: push.title.clone(),
                    data: push.data.clone(),
                }
            }
            Self::Real { pushes, .. } => {
                let body = tokio::time::timeout(Duration::from_secs(20), pushes.recv())
                    .await
                    .expect("Home Assistant pushes the notification in time")
                    .expect("the push listener runs");
                // What Home Assistant adds for the push relay.
                assert_eq!(body["push_token"], "agent-gate-ci-push-token", "{body}");
                assert_eq!(
                    body["registration_info"]["app_id"], "io.agent_gate.ci",
                    "{body}"
                );
                Push {
                    message: body["message"].as_str().unwrap_or_default().to_owned(),
                    title: body["title"].as_str().map(str::to_owned),
                    data: body["data"].as_object().cloned().unwrap_or_default(),
                }
            }
        }
    }

    /// Presses `action`: fires `mobile_app_notification_action` through the REST API.
    async fn press(&self, action: &str) {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/api/events/mobile_app_notification_action",
                self.url()
            ))
            .bearer_auth(self.token())
            .json(&json!({"action": action}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
}

/// Registers a phone with the real Home Assistant (`mobile_app` registration API) whose push
/// URL is a listener of this test, waits for its notify service, and returns what the
/// listener receives.
async fn register_phone(url: &str, token: &str) -> mpsc::UnboundedReceiver<Value> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let push_url = format!("http://{}/push", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(body) = read_http_body(&mut stream).await {
                    // Home Assistant expects the relay's JSON answer (201 like the real relay).
                    let _ = stream
                        .write_all(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
                        .await;
                    if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                        let _ = tx.send(value);
                    }
                }
            });
        }
    });
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{url}/api/mobile_app/registrations"))
        .bearer_auth(token)
        .json(&json!({
            "app_id": "io.agent_gate.ci",
            "app_name": "agent-gate CI",
            "app_version": "1.0",
            "device_name": DEVICE_NAME,
            "manufacturer": "agent-gate",
            "model": "CI",
            "os_name": "Android",
            "os_version": "14",
            "supports_encryption": false,
            "app_data": {"push_token": "agent-gate-ci-push-token", "push_url": push_url},
        }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 201, "registration: {body}");
    for _ in 0..200 {
        let services: Value = http
            .get(format!("{url}/api/services"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = services.as_array().into_iter().flatten().any(|domain| {
            domain["domain"] == "notify"
                && domain["services"]
                    .get(format!("mobile_app_{DEVICE}"))
                    .is_some()
        });
        if found {
            return rx;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("notify.mobile_app_{DEVICE} never appeared");
}

/// Reads one HTTP request and returns its body (by `Content-Length`).
async fn read_http_body(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buffer.len() < end + 4 + length {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        return Some(buffer[end + 4..end + 4 + length].to_vec());
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gateway binary; killed when dropped.
struct Gateway {
    _dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Gateway {
    async fn start(home: &Home) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, health_port) = (free_port(), free_port());
        let config = format!(
            r#"
gateway:
  host: 127.0.0.1
  port: {port}
  health_host: 127.0.0.1
  health_port: {health_port}
agents:
  - id: phone
    token: "{AGENT_TOKEN}"
tools: "{tools}"
services:
  homeassistant:
    url: "{ha}"
    token: "{ha_token}"
storage:
  path: "{db}"
approvers:
  - type: home_assistant
    devices: [{DEVICE}]
    users: ["{user_id}"]
    grant_minutes: 5
approval_timeout: 120
"#,
            tools = tools_toml().display(),
            ha = home.url(),
            ha_token = home.token(),
            user_id = home.user_id(),
            db = dir.path().join("agent-gate.db").display(),
        );
        let config_path = dir.path().join("config.yaml");
        let permissions_path = dir.path().join("permissions.yaml");
        std::fs::write(&config_path, config).unwrap();
        std::fs::write(&permissions_path, PERMISSIONS).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_agent-gate-e2e-gateway"))
            .arg("serve")
            .arg("--insecure")
            .arg("--config")
            .arg(&config_path)
            .arg("--permissions")
            .arg(&permissions_path)
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gateway binary starts");
        let stderr = child.stderr.take().unwrap();
        // Ready once it serves agents and its approver listens for presses.
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
        let token = home.token().to_owned();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            let (mut serving, mut listening) = (false, false);
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                assert!(!line.contains(&token), "the token was logged: {line}");
                serving |= line.contains("\"ready\"");
                listening |= line.contains("listening for notification actions");
                if serving
                    && listening
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(Ok(()));
                }
                if ready.is_some() {
                    seen.push(line);
                }
            }
            if let Some(tx) = ready.take() {
                let _ = tx.send(Err(seen.join("\n")));
            }
        });
        match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(log))) => panic!("the gateway exited before it was ready:\n{log}"),
            other => panic!("the gateway did not become ready: {other:?}"),
        }
        Self {
            _dir: dir,
            child,
            port,
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_press_on_the_phone_decides_and_the_notification_is_replaced() {
    let mut home = Home::start().await;
    let gateway = Gateway::start(&home).await;
    let agent = client(&format!("ws://127.0.0.1:{}", gateway.port), AGENT_TOKEN).await;

    // Asked, notified with three actions, approved from the phone.
    let mut events = agent.tool_request_stream(
        "ha_call_service",
        json!({"domain": "input_boolean", "service": "turn_on", "entity_id": "input_boolean.agent_gate_test"}),
        CallOptions::new().request_id("phone-1"),
    );
    let Some(CallEvent::AwaitingApproval { .. }) = events.next().await else {
        panic!("expected awaiting_approval first");
    };
    let push = home.next_push().await;
    assert_eq!(
        push.title.as_deref(),
        Some("Approval needed: ha_call_service")
    );
    assert!(
        push.message
            .starts_with("ha_call_service(input_boolean.turn_on, input_boolean.agent_gate_test)\n"),
        "{}",
        push.message
    );
    let titles: Vec<Value> = push.actions().iter().map(|a| a["title"].clone()).collect();
    assert_eq!(
        titles,
        [json!("Allow"), json!("Allow 5 min"), json!("Deny")]
    );
    let tag = push.tag().expect("a tag").to_owned();
    home.press(&push.action("Allow")).await;
    let Some(CallEvent::Result(data)) = events.next().await else {
        panic!("expected the result");
    };
    assert_eq!(
        data["result"][0]["entity_id"], "input_boolean.agent_gate_test",
        "{data}"
    );
    assert_eq!(data["result"][0]["state"], "on", "{data}");
    let replaced = home.next_push().await;
    assert_eq!(replaced.tag(), Some(tag.as_str()));
    assert!(replaced.actions().is_empty(), "{:?}", replaced.data);
    assert!(
        replaced
            .message
            .starts_with("✅ Approved by home_assistant:"),
        "{}",
        replaced.message
    );

    // Asked again and denied from the phone.
    let mut events = agent.tool_request_stream(
        "ha_call_service",
        json!({"domain": "input_boolean", "service": "turn_off", "entity_id": "input_boolean.agent_gate_test"}),
        CallOptions::new().request_id("phone-2"),
    );
    let Some(CallEvent::AwaitingApproval { .. }) = events.next().await else {
        panic!("expected awaiting_approval first");
    };
    let push = home.next_push().await;
    home.press(&push.action("Deny")).await;
    let Some(CallEvent::Error(error)) = events.next().await else {
        panic!("expected the denial");
    };
    assert_eq!(
        error.kind(),
        &ErrorKind::Denied {
            by: DeniedBy::Human
        }
    );
    let replaced = home.next_push().await;
    assert!(
        replaced.message.starts_with("❌ Denied by home_assistant:"),
        "{}",
        replaced.message
    );
    let state = agent
        .ha_get_state("input_boolean.agent_gate_test")
        .await
        .unwrap();
    assert_eq!(state.state, "on");
    agent.close().await;
}
