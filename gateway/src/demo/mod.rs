//! Demo mode (`agent-gate demo`): a complete gateway with no files and no accounts, to try
//! agent-gate in a minute.
//!
//! [`start`] runs, all on loopback:
//!
//! - a simulated Home Assistant ([`HomeAssistant::demo`]: lights, a lock, a switch, a
//!   thermostat, sensors with history; service calls change the state), reached with a
//!   random token that only the gateway knows;
//! - the gateway, with the bundled tool manifest (the repository's `tools.toml`, embedded at
//!   compile time), plaintext WebSocket on [`DEFAULT_PORT`] (insecure, loopback only), one
//!   agent `demo` with the fixed token [`DEMO_TOKEN`], a store in a fresh temporary
//!   directory (removed at shutdown) unless [`DemoOptions::data_dir`] is given;
//! - the web approval page on [`DEFAULT_WEB_PORT`] (`/approvals`, loopback clients only);
//! - the example permissions [`DEMO_PERMISSIONS`]: reads are allowed, lights ask a human on
//!   the web page, locks and events are denied, anything else asks.
//!
//! ```no_run
//! # async fn run() -> Result<(), agent_gate_gateway::demo::DemoError> {
//! use agent_gate_gateway::demo::{self, DemoOptions};
//! let demo = demo::start(DemoOptions::default()).await?;
//! println!("{}", demo.banner());
//! demo.shutdown().await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use agent_gate_manifest::{Manifest, ManifestError};

use crate::app::{Gateway, GatewayError, RunningGateway};
use crate::config::{Config, ConfigError, PermissionsFile};
use crate::policy::Policy;
use agent_gate_sim::home_assistant::{HomeAssistant, RunningHomeAssistant};

/// The demo agent's token. Fixed and public on purpose, so examples work without setup:
/// the demo listens on loopback only and its home is simulated.
pub const DEMO_TOKEN: &str = "agent-gate-demo-token";

/// The demo agent's id (in audit records and on the approval page).
pub const DEMO_AGENT: &str = "demo";

/// Default WebSocket port of the demo (`ws://127.0.0.1:8443`).
pub const DEFAULT_PORT: u16 = 8443;

/// Default port of the demo's HTTP side: the approval page and `/healthz`
/// (`http://127.0.0.1:8080/approvals`). The HTTP side's usual default, so `agent-gate
/// approve-link --data-dir` finds the demo without the `demo` feature.
pub const DEFAULT_WEB_PORT: u16 = crate::config::DEFAULT_HEALTH_PORT;

/// The path of the web approval page on the HTTP side.
pub const APPROVALS_PATH: &str = "/approvals";

/// How long a demo request waits for a human (5 minutes).
pub const DEMO_APPROVAL_TIMEOUT_SECS: u64 = 300;

/// The tool manifest the demo uses: the Home Assistant manifest the SDK ships
/// (`agent-gate/tools.toml`, kept byte-identical to the repository's `tools.toml` by a test),
/// so the gateway crate needs no file outside its own directory.
pub fn bundled_manifest_text() -> &'static str {
    agent_gate::ha::MANIFEST.text()
}

/// The demo's permissions.
pub const DEMO_PERMISSIONS: &str = r#"# agent-gate demo permissions
# A call is judged once per entity it affects (entity_id, and every entity id in its data):
# the first rule catches the lock domain's services (and homeassistant.* on a lock, judged as
# the lock's own service), the second any other service that names a lock (scene.apply,
# group.set, ...).
rules:
  - pattern: "ha_call_service(lock.*)"
    action: deny
    description: "Locks are never operated by agents"
  - pattern: "ha_call_service(*, lock.*)"
    action: deny
    description: "No service may touch a lock"
  - pattern: "ha_fire_event(*)"
    action: deny
    description: "Agents do not fire events"
  - pattern: "ha_call_service(light.*)"
    action: ask
    description: "Lights need a human: approve or deny on the web page"
defaults:
  - pattern: "ha_get_*"
    action: allow
    description: "Reading states, history and logbook is harmless"
  - pattern: "*"
    action: ask
"#;

/// Demo mode could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The simulated Home Assistant could not listen.
    #[error("demo: cannot start the simulated Home Assistant on 127.0.0.1: {0}")]
    Simulator(#[source] std::io::Error),
    /// The data directory could not be created or removed.
    #[error(
        "demo: cannot use {path} as the data directory: {source}; pass another one with --data-dir"
    )]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The built-in configuration was refused (a bug: it is fixed text).
    #[error("demo: the built-in configuration is invalid: {0}")]
    Config(#[from] ConfigError),
    /// The bundled manifest was refused (a bug: it is checked at build time by the tests).
    #[error("demo: the bundled tools.toml is invalid: {0}")]
    Manifest(#[from] ManifestError),
    /// The gateway did not start (usually: a port is taken).
    #[error("demo: {0}; pick other ports with --port and --web-port")]
    Gateway(#[from] GatewayError),
}

/// Settings of demo mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// WebSocket port on 127.0.0.1 (0: any free port). Default [`DEFAULT_PORT`].
    pub port: u16,
    /// Port of the approval page and `/healthz` on 127.0.0.1 (0: any free port). Default
    /// [`DEFAULT_WEB_PORT`].
    pub web_port: u16,
    /// Keep the database here (kept after shutdown). Default: a fresh temporary directory,
    /// removed at shutdown.
    pub data_dir: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            port: DEFAULT_PORT,
            web_port: DEFAULT_WEB_PORT,
            data_dir: None,
        }
    }
}

/// The bundled manifest, parsed.
pub fn bundled_manifest() -> Result<Manifest, ManifestError> {
    Manifest::from_str(bundled_manifest_text(), "tools.toml").map(|loaded| loaded.manifest)
}

/// The demo's policy ([`DEMO_PERMISSIONS`]).
pub fn demo_policy() -> Result<Policy, ConfigError> {
    let no_env = |_: &str| None;
    PermissionsFile::parse(DEMO_PERMISSIONS, "demo-permissions.yaml", &no_env).map(Policy::new)
}

/// The demo's configuration: the gateway on 127.0.0.1, the demo agent, the simulated Home
/// Assistant at `ha_url` with `ha_token`, the store in `data_dir`, the web approver.
pub fn demo_config(
    options: &DemoOptions,
    ha_url: &str,
    ha_token: &str,
    data_dir: &Path,
) -> Result<Config, ConfigError> {
    let db = data_dir.join("agent-gate.db");
    let text = format!(
        r#"
gateway:
  host: 127.0.0.1
  health_host: 127.0.0.1
agents:
  - id: {DEMO_AGENT}
    token: "{DEMO_TOKEN}"
services:
  homeassistant:
    url: "{ha_url}"
    token: "{ha_token}"
    health:
      path: "/api/"
storage:
  path: {db}
approvers:
  - type: web
    name: demo
approval_timeout: {DEMO_APPROVAL_TIMEOUT_SECS}
"#,
        db = serde_json::Value::String(db.display().to_string()),
    );
    let no_env = |_: &str| None;
    let mut config = Config::parse(&text, data_dir.join("demo-config.yaml"), &no_env)?;
    // Set here rather than in the text: the file format refuses port 0 (any free port),
    // which the demo's tests use.
    config.gateway.port = options.port;
    config.gateway.health_port = options.web_port;
    Ok(config)
}

/// Starts demo mode (see the [module docs](self)).
pub async fn start(options: DemoOptions) -> Result<RunningDemo, DemoError> {
    let manifest = bundled_manifest()?;
    let policy = demo_policy()?;
    let (data_dir, temporary) = match &options.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| DemoError::DataDir {
                path: dir.clone(),
                source,
            })?;
            (dir.clone(), false)
        }
        None => (fresh_temp_dir()?, true),
    };
    let cleanup = |dir: &Path| {
        if temporary {
            let _ = std::fs::remove_dir_all(dir);
        }
    };

    let ha_token = format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let home = HomeAssistant::demo(ha_token.clone());
    let ha_server = match home.spawn("127.0.0.1:0").await {
        Ok((_, server)) => server,
        Err(e) => {
            cleanup(&data_dir);
            return Err(DemoError::Simulator(e));
        }
    };
    let config = match demo_config(&options, &ha_server.url(), &ha_token, &data_dir) {
        Ok(config) => config,
        Err(e) => {
            cleanup(&data_dir);
            return Err(e.into());
        }
    };
    let gateway = match Gateway::builder(config, policy, manifest)
        .insecure(true)
        .start()
        .await
    {
        Ok(gateway) => gateway,
        Err(e) => {
            cleanup(&data_dir);
            return Err(e.into());
        }
    };
    Ok(RunningDemo {
        gateway,
        home,
        ha_server,
        data_dir,
        temporary,
    })
}

fn fresh_temp_dir() -> Result<PathBuf, DemoError> {
    let dir = std::env::temp_dir().join(format!(
        "agent-gate-demo-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).map_err(|source| DemoError::DataDir {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// Demo mode, running.
#[derive(Debug)]
pub struct RunningDemo {
    gateway: RunningGateway,
    home: HomeAssistant,
    ha_server: RunningHomeAssistant,
    data_dir: PathBuf,
    temporary: bool,
}

impl RunningDemo {
    /// The gateway.
    pub fn gateway(&self) -> &RunningGateway {
        &self.gateway
    }

    /// The simulated home (to look at its state and its service calls).
    pub fn home(&self) -> &HomeAssistant {
        &self.home
    }

    /// Where agents connect: `ws://127.0.0.1:<port>`.
    pub fn ws_url(&self) -> String {
        self.gateway.ws_url()
    }

    /// The MCP endpoint (Streamable HTTP, on the agent listener):
    /// `http://127.0.0.1:<port>/mcp`.
    pub fn mcp_url(&self) -> String {
        format!(
            "http://{}{}",
            self.gateway.ws_addr(),
            crate::config::DEFAULT_MCP_PATH
        )
    }

    /// Ready-to-paste lines that connect MCP clients to the demo: Claude Code, Claude Desktop
    /// (through the stdio bridge `agent-gate mcp`, run from `bridge`, the path of this
    /// binary), the OpenAI Agents SDK and LangChain's `langchain-mcp-adapters`.
    pub fn mcp_client_lines(&self, bridge: &str) -> String {
        let mcp = self.mcp_url();
        let ws = self.ws_url();
        let desktop = serde_json::json!({
            "mcpServers": {
                "agent-gate": {
                    "command": bridge,
                    "args": ["mcp", "--url", ws],
                    "env": {"AGENT_GATE_TOKEN": DEMO_TOKEN},
                }
            }
        });
        format!(
            r#"  Claude Code:
    claude mcp add --transport http agent-gate {mcp} --header "Authorization: Bearer {DEMO_TOKEN}"

  Claude Desktop (claude_desktop_config.json, through the stdio bridge `agent-gate mcp`):
    {desktop}

  OpenAI Agents SDK (Python; the timeouts leave room for the 50 s hold of a call that asks you):
    MCPServerStreamableHttp(params={{"url": "{mcp}", "headers": {{"Authorization": "Bearer {DEMO_TOKEN}"}}, "timeout": 60}}, client_session_timeout_seconds=60)

  LangChain (langchain-mcp-adapters):
    MultiServerMCPClient({{"agent-gate": {{"transport": "streamable_http", "url": "{mcp}", "headers": {{"Authorization": "Bearer {DEMO_TOKEN}"}}}}}})"#
        )
    }

    /// The demo agent's token ([`DEMO_TOKEN`]).
    pub fn token(&self) -> &'static str {
        DEMO_TOKEN
    }

    /// The HTTP side's address (approval page and health).
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.gateway.health_addr()
    }

    /// The approval page: `http://127.0.0.1:<web port>/approvals`.
    pub fn approvals_url(&self) -> String {
        self.http_url(APPROVALS_PATH)
    }

    /// The health endpoint: `http://127.0.0.1:<web port>/healthz`.
    pub fn health_url(&self) -> String {
        self.http_url("/healthz")
    }

    fn http_url(&self, path: &str) -> String {
        match self.web_addr() {
            Some(addr) => format!("http://{addr}{path}"),
            None => String::from("(the HTTP side is off)"),
        }
    }

    /// The simulated Home Assistant's URL (the gateway's `homeassistant` service).
    pub fn home_assistant_url(&self) -> String {
        self.ha_server.url()
    }

    /// Where the database is.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// What `agent-gate demo` prints at start: the URLs, the token and what to try.
    pub fn banner(&self) -> String {
        let ws = self.ws_url();
        let approvals = self.approvals_url();
        let link = self
            .gateway
            .approval_link()
            .unwrap_or_else(|| String::from("(the HTTP side is off)"));
        let web = self.http_url("");
        let health = self.health_url();
        let mcp = self.mcp_url();
        let bridge = std::env::current_exe()
            .ok()
            .and_then(|path| path.to_str().map(str::to_owned))
            .filter(|path| !path.is_empty())
            .unwrap_or_else(|| String::from("agent-gate"));
        let clients = self.mcp_client_lines(&bridge);
        let keep = if self.temporary {
            "a temporary directory, removed when the demo stops"
        } else {
            "kept after the demo stops"
        };
        format!(
            r#"agent-gate demo is running: a gateway with a simulated Home Assistant, all on this machine.

  Agents connect to    {ws}
  Agent token          {DEMO_TOKEN}   (the fixed demo token; loopback only)
  Approve requests at  {approvals}
  Open it with         {link}
                       (a one-time link, valid 10 minutes; for a new one:
                       agent-gate approve-link --data-dir {data} --url {web})
  MCP (HTTP)           {mcp}   (header Authorization: Bearer {DEMO_TOKEN})
  Health               {health}
  Database             {data} ({keep})

  Policy: reads are allowed, lights ask you on the approval page, locks are denied.

Try it (in another terminal):

  cargo run -p agent-gate --example quickstart

  export AGENT_GATE_URL={ws} AGENT_GATE_TOKEN={DEMO_TOKEN}
  agent-gate request ha_get_state entity_id=sensor.living_room_temperature     # allowed
  agent-gate request ha_call_service domain=lock service=unlock entity_id=lock.front_door   # denied
  agent-gate request ha_call_service domain=light service=turn_on entity_id=light.bedroom   # asks: open the approval page
  agent-gate tools

Connect an MCP client (a call that asks you is held up to 50 s, then answered "still
waiting": calling it again with the same arguments picks up the outcome):

{clients}

Press Ctrl-C to stop."#,
            data = self.data_dir.display(),
        )
    }

    /// Stops the gateway and the simulated home; removes the temporary data directory.
    pub async fn shutdown(self) -> Result<(), DemoError> {
        let RunningDemo {
            gateway,
            ha_server,
            data_dir,
            temporary,
            ..
        } = self;
        let stopped = gateway.shutdown().await;
        let _ = ha_server.shutdown().await;
        if temporary {
            std::fs::remove_dir_all(&data_dir).map_err(|source| DemoError::DataDir {
                path: data_dir.clone(),
                source,
            })?;
        }
        stopped.map_err(DemoError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_manifest_and_policy_load() {
        let manifest = bundled_manifest().unwrap();
        assert!(manifest.tool("ha_get_state").is_some());
        assert!(manifest.tool("ha_call_service").is_some());
        let policy = demo_policy().unwrap();
        use crate::policy::Action;
        let cases = [
            (
                "ha_get_state(sensor.living_room_temperature)",
                Action::Allow,
            ),
            ("ha_get_states", Action::Allow),
            (
                "ha_call_service(lock.unlock, lock.front_door)",
                Action::Deny,
            ),
            ("ha_call_service(light.turn_on, light.bedroom)", Action::Ask),
            ("ha_fire_event(demo_event)", Action::Deny),
            (
                "ha_call_service(switch.turn_on, switch.coffee_maker)",
                Action::Ask,
            ),
        ];
        for (signature, action) in cases {
            assert_eq!(
                policy.evaluate(DEMO_AGENT, signature),
                action,
                "{signature}"
            );
        }
    }

    #[test]
    fn the_config_uses_loopback_the_demo_agent_and_the_web_approver() {
        let dir = std::env::temp_dir();
        let config = demo_config(
            &DemoOptions::default(),
            "http://127.0.0.1:1234",
            "t0k3n",
            &dir,
        )
        .unwrap();
        assert_eq!(config.gateway.host, "127.0.0.1");
        assert_eq!(config.gateway.port, DEFAULT_PORT);
        assert_eq!(config.gateway.health_host, "127.0.0.1");
        assert_eq!(config.gateway.health_port, DEFAULT_WEB_PORT);
        assert_eq!(config.agents.len(), 1);
        assert_eq!(config.agents[0].id, DEMO_AGENT);
        assert_eq!(
            config.agent_by_token(DEMO_TOKEN).map(|a| a.id.as_str()),
            Some(DEMO_AGENT)
        );
        assert_eq!(config.approvers.len(), 1);
        assert_eq!(config.approvers[0].kind(), "web");
        assert_eq!(config.storage.path, dir.join("agent-gate.db"));
        assert_eq!(
            config.services["homeassistant"].url,
            "http://127.0.0.1:1234"
        );
    }
}
