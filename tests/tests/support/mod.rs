//! The end-to-end world: the simulated Home Assistant and the simulated Telegram Bot API
//! (both real HTTP servers on 127.0.0.1), config files in a temp dir pointing at them, an
//! in-process gateway started from those files with the Telegram bot as its approver, SDK
//! clients over real WebSockets, and a TCP proxy that can cut an agent's connection.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_gate::AgentGateClient;
use agent_gate_gateway::app::{Gateway, RunningGateway};
use agent_gate_gateway::config::Config;
use agent_gate_gateway::messengers::telegram::TelegramApprover;
use agent_gate_gateway::policy::Policy;
use agent_gate_sim::home_assistant::{HomeAssistant, RunningHomeAssistant};
use agent_gate_sim::telegram::{FakeMessage, FakeTelegram, FakeUser, RunningFakeTelegram};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub const PI_TOKEN: &str = "pi-agent-token-0123456789abcdef";
pub const LAPTOP_TOKEN: &str = "laptop-agent-token-0123456789abcdef";
pub const HA_TOKEN: &str = "e2e-home-assistant-token";
pub const BOT_TOKEN: &str = "4242:e2e-fake-bot-token";
pub const CHAT: i64 = -1_001_234_567;
pub const ALICE: u64 = 1001;

/// The policy of the suite. `pi` and `laptop` share the rules except the scoped ones: only the
/// laptop may switch the coffee maker without asking, and only the pi may not read history.
pub const PERMISSIONS: &str = r#"
rules:
  - pattern: "ha_call_service(lock.*)"
    action: deny
    description: "Locks are never operated by agents"
  - pattern: "ha_call_service(light.*)"
    action: ask
    description: "Lights need a human"
  - pattern: "ha_call_service(switch.*, switch.coffee_maker)"
    action: allow
    description: "The laptop makes coffee"
    agents: [laptop]
  - pattern: "ha_get_history(*)"
    action: deny
    description: "The pi does not read history"
    agents: [pi]
defaults:
  - pattern: "ha_get_*"
    action: allow
  - pattern: "*"
    action: ask
"#;

pub fn alice() -> FakeUser {
    FakeUser::new(ALICE).username("alice")
}

pub fn light_on(entity: &str) -> Value {
    json!({"domain": "light", "service": "turn_on", "entity_id": entity})
}

/// The repository's tools.toml.
pub fn tools_toml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools.toml")
}

/// The simulated services and the config files.
pub struct World {
    pub dir: tempfile::TempDir,
    pub home: HomeAssistant,
    pub ha: RunningHomeAssistant,
    pub telegram: FakeTelegram,
    pub tg: RunningFakeTelegram,
}

impl World {
    pub async fn new() -> Self {
        let home = HomeAssistant::demo(HA_TOKEN);
        let (_, ha) = home.spawn("127.0.0.1:0").await.unwrap();
        let telegram = FakeTelegram::new(BOT_TOKEN);
        let tg = telegram.spawn("127.0.0.1:0").await.unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            home,
            ha,
            telegram,
            tg,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn permissions_path(&self) -> PathBuf {
        self.dir.path().join("permissions.yaml")
    }

    /// Writes config.yaml and permissions.yaml (the gateway on `port` and `health_port`,
    /// which may be placeholders, 1 and 2, for in-process gateways that bind port 0).
    pub fn write_files(&self, port: u16, health_port: u16, approval_timeout_secs: u64) {
        let config = format!(
            r#"
gateway:
  host: 127.0.0.1
  port: {port}
  health_host: 127.0.0.1
  health_port: {health_port}
agents:
  - id: pi
    token: "{PI_TOKEN}"
  - id: laptop
    token: "{LAPTOP_TOKEN}"
tools: "{tools}"
services:
  homeassistant:
    url: "{ha}"
    token: "{HA_TOKEN}"
    health:
      path: "/api/"
storage:
  path: "{db}"
approvers:
  - type: telegram
    token: "{BOT_TOKEN}"
    chat_id: {CHAT}
    allowed_users: [{ALICE}]
    api_url: "{tg}"
approval_timeout: {approval_timeout_secs}
rate_limit:
  max_requests_per_minute: 10000
"#,
            tools = tools_toml().display(),
            ha = self.ha.url(),
            db = self.dir.path().join("agent-gate.db").display(),
            tg = self.tg.url(),
        );
        std::fs::write(self.config_path(), config).unwrap();
        std::fs::write(self.permissions_path(), PERMISSIONS).unwrap();
    }

    /// Starts an in-process gateway from the files on ephemeral ports, with the Telegram bot
    /// of the config as its approver and `approval_timeout`.
    pub async fn gateway(&self, approval_timeout: Duration) -> RunningGateway {
        self.write_files(1, 2, 900);
        let mut config = Config::load(self.config_path()).expect("config loads");
        config.gateway.port = 0;
        config.gateway.health_port = 0;
        config.approval_timeout = approval_timeout;
        let policy = Policy::load(self.permissions_path()).expect("permissions load");
        let manifest = agent_gate_manifest::Manifest::load(&config.tools)
            .expect("tools.toml loads")
            .manifest;
        let bot = TelegramApprover::builder(BOT_TOKEN, CHAT)
            .allowed_users([i64::try_from(ALICE).unwrap()])
            .api_url(self.tg.url())
            .poll_timeout(Duration::from_secs(5))
            .backoff(Duration::from_millis(20), Duration::from_millis(200))
            .build()
            .unwrap();
        Gateway::builder(config, policy, manifest)
            .approver(Arc::new(bot))
            .insecure(true)
            .start()
            .await
            .expect("gateway starts")
    }

    /// Waits for the `n`th approval message and presses its button labelled `label`
    /// (`✅ Allow` or `❌ Deny`) as alice.
    pub async fn press(&self, n: usize, label: &str) -> FakeMessage {
        let message = self.telegram.wait_for_sent(n).await;
        let data = message
            .callback_data(label)
            .unwrap_or_else(|| panic!("no {label} button on {message:?}"))
            .to_owned();
        let query = self
            .telegram
            .press_button(&alice(), message.message_id, &data)
            .unwrap();
        self.telegram.wait_for_answer(&query).await;
        message
    }
}

/// An SDK client that reconnects quickly (the suite's gateways and proxies come back fast).
pub async fn client(url: &str, token: &str) -> AgentGateClient {
    AgentGateClient::builder()
        .ignore_env()
        .url(url)
        .token(token)
        .backoff(Duration::from_millis(10), Duration::from_millis(100))
        .backoff_jitter(0.0)
        .connect()
        .await
        .expect("agent connects")
}

/// Waits until `check` holds, re-checking every few milliseconds (for gateway state that has
/// no change notification, such as the number of connected agents).
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A TCP proxy in front of the gateway whose connections can be cut (as a network outage
/// would) and which refuses new ones until restored.
pub struct Proxy {
    pub addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let blocked = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (b, c) = (blocked.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if b.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        Self {
            addr,
            blocked,
            connections,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
