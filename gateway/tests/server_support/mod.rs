//! Shared test harness for the server tests: an in-process Home Assistant, a gateway on
//! ephemeral ports with a real SQLite file in a temp dir, a channel approver, and a small
//! WebSocket JSON-RPC client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_gate_gateway::app::{Gateway, GatewayError, RunningGateway};
use agent_gate_gateway::approvals::ChannelApprover;
use agent_gate_gateway::config::{Config, ProcessEnv};
use agent_gate_gateway::policy::Policy;
use agent_gate_gateway::server::ServerLimits;
use agent_gate_manifest::Manifest;
use agent_gate_sim::home_assistant::{DEFAULT_TOKEN, HomeAssistant, RunningHomeAssistant};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const PI_TOKEN: &str = "pi-token-0123456789abcdef";
pub const LAPTOP_TOKEN: &str = "laptop-token-0123456789abcdef";

pub const PERMISSIONS: &str = r#"
rules:
  - pattern: "ha_call_service(lock.*)"
    action: deny
    description: "Locks are never operated by agents"
  - pattern: "ha_fire_event(*)"
    action: deny
  - pattern: "ha_call_service(light.*)"
    action: ask
    description: "Lights need a human"
defaults:
  - pattern: "ha_get_*"
    action: allow
  - pattern: "*"
    action: ask
"#;

/// Settings of a test gateway.
#[derive(Debug, Clone)]
pub struct Options {
    pub max_requests_per_minute: u32,
    pub max_pending_approvals: u32,
    pub approval_timeout_secs: u64,
    pub limits: ServerLimits,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub insecure: bool,
    /// The permissions file's text (default [`PERMISSIONS`]).
    pub permissions: Option<String>,
    /// `gateway.max_connections_per_agent` (default: not set, the gateway's default).
    pub max_connections_per_agent: Option<usize>,
    /// The config's `agents:` section, whole (default: `pi` with [`PI_TOKEN`] and `laptop`
    /// with [`LAPTOP_TOKEN`]).
    pub agents: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_requests_per_minute: 10_000,
            max_pending_approvals: 10,
            approval_timeout_secs: 900,
            limits: ServerLimits::default(),
            tls: None,
            insecure: true,
            permissions: None,
            max_connections_per_agent: None,
            agents: None,
        }
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub home: HomeAssistant,
    pub ha_server: RunningHomeAssistant,
    pub approver: Arc<ChannelApprover>,
    pub gateway: Option<RunningGateway>,
    pub options: Options,
}

pub fn manifest() -> Manifest {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools.toml");
    Manifest::load(&[path]).expect("tools.toml loads").manifest
}

pub fn config_text(dir: &Path, ha: std::net::SocketAddr, options: &Options) -> String {
    let tls = match &options.tls {
        Some((cert, key)) => format!(
            "  tls:\n    cert: \"{}\"\n    key: \"{}\"\n",
            cert.display(),
            key.display()
        ),
        None => String::new(),
    };
    let tls = match options.max_connections_per_agent {
        Some(max) => format!("{tls}  max_connections_per_agent: {max}\n"),
        None => tls,
    };
    format!(
        r#"
gateway:
  host: 127.0.0.1
  port: 8443
{tls}  health_host: 127.0.0.1
  health_port: 8080
{agents}
tools:
  - "{tools}"
services:
  homeassistant:
    url: "http://{ha}"
    token: "{DEFAULT_TOKEN}"
    health:
      path: "/api/"
storage:
  path: "{db}"
approval_timeout: {timeout}
rate_limit:
  max_requests_per_minute: {rate}
  max_pending_approvals: {pending}
"#,
        tools = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tools.toml")
            .display(),
        db = dir.join("agent-gate.db").display(),
        agents = options.agents.clone().unwrap_or_else(|| format!(
            "agents:\n  - id: pi\n    token: \"{PI_TOKEN}\"\n  - id: laptop\n    token: \"{LAPTOP_TOKEN}\"\n"
        )),
        timeout = options.approval_timeout_secs,
        rate = options.max_requests_per_minute,
        pending = options.max_pending_approvals,
    )
}

/// The configuration of a test gateway, on ephemeral ports.
pub fn load_config(dir: &Path, ha: std::net::SocketAddr, options: &Options) -> Config {
    let path = dir.join("config.yaml");
    let text = config_text(dir, ha, options);
    std::fs::write(&path, &text).unwrap();
    let mut config = Config::parse(&text, &path, &ProcessEnv).expect("test config is valid");
    config.gateway.port = 0;
    config.gateway.health_port = 0;
    config
}

pub fn load_policy(dir: &Path) -> Policy {
    load_policy_text(dir, PERMISSIONS)
}

pub fn load_policy_text(dir: &Path, text: &str) -> Policy {
    let path = dir.join("permissions.yaml");
    std::fs::write(&path, text).unwrap();
    Policy::load(&path).expect("test permissions are valid")
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        Self::start_with_home(options, HomeAssistant::demo(DEFAULT_TOKEN)).await
    }

    /// A gateway in front of `home` (a simulator built with [`DEFAULT_TOKEN`]).
    pub async fn start_with_home(options: Options, home: HomeAssistant) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (_, ha_server) = home.spawn("127.0.0.1:0").await.unwrap();
        let approver = Arc::new(ChannelApprover::new("test"));
        let mut harness = Self {
            dir,
            home,
            ha_server,
            approver,
            gateway: None,
            options,
        };
        harness.gateway = Some(harness.launch().await.expect("gateway starts"));
        harness
    }

    pub async fn launch(&self) -> Result<RunningGateway, GatewayError> {
        let config = load_config(self.dir.path(), self.ha_server.addr(), &self.options);
        let policy = load_policy_text(
            self.dir.path(),
            self.options.permissions.as_deref().unwrap_or(PERMISSIONS),
        );
        Gateway::builder(config, policy, manifest())
            .approver(self.approver.clone())
            .insecure(self.options.insecure)
            .limits(self.options.limits)
            .start()
            .await
    }

    pub fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("gateway running")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("agent-gate.db")
    }

    pub async fn shutdown(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await.expect("clean shutdown");
        }
    }

    pub async fn restart(&mut self) {
        self.shutdown().await;
        self.gateway = Some(self.launch().await.expect("gateway restarts"));
    }

    pub async fn connect(&self) -> Client {
        Client::connect(&self.gateway().ws_url()).await
    }

    /// A client authenticated as agent `pi`.
    pub async fn agent(&self) -> Client {
        self.agent_with(PI_TOKEN).await
    }

    pub async fn agent_with(&self, token: &str) -> Client {
        let mut client = self.connect().await;
        let answer = client.call("auth", json!({"token": token})).await;
        assert_eq!(answer["result"]["status"], "authenticated", "{answer}");
        client
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A minimal JSON-RPC client over a real WebSocket.
pub struct Client {
    pub ws: Ws,
    next_id: i64,
    /// Frames received while waiting for another id.
    pub backlog: Vec<Value>,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connects");
        Self::from_ws(ws)
    }

    pub fn from_ws(ws: Ws) -> Self {
        Self {
            ws,
            next_id: 1,
            backlog: Vec::new(),
        }
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("sends");
    }

    pub async fn send(&mut self, value: &Value) {
        self.send_raw(&value.to_string()).await;
    }

    /// Sends a request; returns its JSON-RPC id.
    pub async fn request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id}))
            .await;
        id
    }

    /// The next text frame as JSON (`None` once the connection closed).
    pub async fn recv(&mut self) -> Option<Value> {
        if !self.backlog.is_empty() {
            return Some(self.backlog.remove(0));
        }
        self.recv_wire().await
    }

    async fn recv_wire(&mut self) -> Option<Value> {
        loop {
            match self.ws.next().await? {
                Ok(Message::Text(text)) => {
                    return Some(serde_json::from_str(text.as_str()).expect("gateway sends JSON"));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Waits for the response with JSON-RPC id `id`, keeping other frames in the backlog.
    pub async fn response(&mut self, id: i64) -> Value {
        if let Some(pos) = self.backlog.iter().position(|v| v["id"] == json!(id)) {
            return self.backlog.remove(pos);
        }
        loop {
            let frame = self.recv_wire().await.expect("connection open");
            if frame["id"] == json!(id) {
                return frame;
            }
            self.backlog.push(frame);
        }
    }

    /// Waits for the next notification (a frame without id), keeping responses in the backlog.
    pub async fn notification(&mut self) -> Value {
        if let Some(pos) = self.backlog.iter().position(|v| v.get("id").is_none()) {
            return self.backlog.remove(pos);
        }
        loop {
            let frame = self.recv_wire().await.expect("connection open");
            if frame.get("id").is_none() {
                return frame;
            }
            self.backlog.push(frame);
        }
    }

    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params).await;
        self.response(id).await
    }

    pub async fn tool(&mut self, tool: &str, args: Value) -> Value {
        self.call("tool_request", json!({"tool": tool, "args": args}))
            .await
    }

    pub async fn tool_with_id(&mut self, tool: &str, args: Value, request_id: &str) -> i64 {
        self.request(
            "tool_request",
            json!({"tool": tool, "args": args, "request_id": request_id}),
        )
        .await
    }

    /// Reads until the connection closes; returns the close frame the gateway sent.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            match self.ws.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(Message::Text(text))) => {
                    self.backlog
                        .push(serde_json::from_str(text.as_str()).expect("JSON"));
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Replaces volatile values (generated ids, times) so snapshots are stable.
pub fn redact(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    match key.as_str() {
                        "expires_at" | "created_at" | "at" | "retry_after" if !v.is_null() => {
                            *v = Value::from(format!("[{key}]"));
                        }
                        _ => walk(v),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            Value::String(s) if s.starts_with("gw-") => *s = "[generated id]".to_owned(),
            _ => {}
        }
    }
    walk(&mut value);
    value
}
