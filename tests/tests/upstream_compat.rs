//! Compatibility with the upstream Python gateway, both ways, with the real package from PyPI
//! (`agentpass==0.2.0`, installed in a venv by `.ci/run`):
//!
//! - upstream's client (its `agentpass request` / `pending` CLI and `AgentPassClient`),
//!   unchanged, against our gateway: allow, deny, ask approved and denied through the fake
//!   Telegram, a result fetched after a disconnect (once), two clients with one token;
//! - our CLI against upstream's gateway (started from the same package, its Telegram bot
//!   pointed at the fake Bot API), with the simulated Home Assistant: allow, deny, pending,
//!   a slot taken (4000), and no second execution after a reconnect.
//!
//! The tests are `#[ignore]`d: they need the venv. `.ci/run` builds it (and fails if it
//! cannot) and runs them with `--ignored` and `AGENT_GATE_UPSTREAM_VENV` set; run by hand with
//! that variable pointing at a venv holding `agentpass==0.2.0`. Run with `--ignored` but
//! without the variable they fail, so CI cannot pass them silently.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use agent_gate_sim::home_assistant::Fault;
use serde_json::Value;
use support::{BOT_TOKEN, CHAT, HA_TOKEN, PI_TOKEN, Proxy, World};

const UPSTREAM_TOKEN: &str = "upstream-agent-token-0123456789";

/// The venv with `agentpass==0.2.0`.
fn venv() -> PathBuf {
    match std::env::var_os("AGENT_GATE_UPSTREAM_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "AGENT_GATE_UPSTREAM_VENV is not set: these tests need a venv with agentpass==0.2.0 (.ci/run builds one at ${{AGENT_GATE_VENV_DIR:-$HOME/.cache/agent-gate}}/agentpass-venv)"
        ),
    }
}

fn python() -> PathBuf {
    venv().join("bin/python")
}

/// Runs `agentpass <args>` (upstream's CLI) against `url` as the agent with `token`.
async fn agentpass(url: &str, token: &str, args: &[&str]) -> Output {
    let mut command = Command::new(venv().join("bin/agentpass"));
    command
        .args(args)
        .env("AGENTPASS_URL", url)
        .env("AGENT_TOKEN", token);
    run(command).await
}

/// Runs `agent-gate <args>` (our CLI) against `url` with the upstream agent's token.
async fn ours(url: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agent-gate-e2e-gateway"));
    command
        .args(args)
        .args(["--url", url, "--token", UPSTREAM_TOKEN])
        .env_remove("AGENT_GATE_URL")
        .env_remove("AGENT_GATE_TOKEN");
    run(command).await
}

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("the program runs"))
        .await
        .expect("the program's thread")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_out(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            text(&output.stdout),
            text(&output.stderr)
        )
    })
}

// ----- upstream's client against our gateway ---------------------------------------------

#[tokio::test]
#[ignore = "needs the agentpass venv: .ci/run runs it (AGENT_GATE_UPSTREAM_VENV)"]
async fn upstream_cli_allow_deny_and_ask_through_the_fake_telegram() {
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(60)).await;
    let url = gateway.ws_url();

    let allowed = agentpass(
        &url,
        PI_TOKEN,
        &["request", "ha_get_state", "entity_id=light.kitchen"],
    )
    .await;
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
    assert_eq!(json_out(&allowed)["entity_id"], "light.kitchen");
    // Upstream's wrap keys for the bundled Home Assistant tools.
    let config = agentpass(&url, PI_TOKEN, &["request", "ha_get_config"]).await;
    assert_eq!(config.status.code(), Some(0), "{config:?}");
    assert!(
        json_out(&config)["config"]["version"].is_string(),
        "{config:?}"
    );
    let logbook = agentpass(&url, PI_TOKEN, &["request", "ha_get_logbook"]).await;
    assert_eq!(logbook.status.code(), Some(0), "{logbook:?}");
    assert!(json_out(&logbook)["logbook"].is_array(), "{logbook:?}");

    let denied = agentpass(
        &url,
        PI_TOKEN,
        &[
            "request",
            "ha_call_service",
            "domain=lock",
            "service=unlock",
            "entity_id=lock.front_door",
        ],
    )
    .await;
    assert_eq!(denied.status.code(), Some(1), "{denied:?}");
    assert!(text(&denied.stderr).contains("-32003"), "{denied:?}");

    let on = [
        "request",
        "ha_call_service",
        "domain=light",
        "service=turn_on",
        "entity_id=light.bedroom",
    ];
    let (approved, _) = tokio::join!(agentpass(&url, PI_TOKEN, &on), world.press(1, "✅ Allow"));
    assert_eq!(approved.status.code(), Some(0), "{approved:?}");
    assert_eq!(world.home.state("light.bedroom").unwrap()["state"], "on");
    // Upstream's shape: the changed states under `result`.
    let changed = json_out(&approved);
    assert_eq!(
        changed["result"][0]["entity_id"], "light.bedroom",
        "{changed}"
    );
    assert_eq!(changed["result"][0]["state"], "on", "{changed}");

    let off = [
        "request",
        "ha_call_service",
        "domain=light",
        "service=turn_on",
        "entity_id=light.kitchen",
    ];
    let (refused, _) = tokio::join!(agentpass(&url, PI_TOKEN, &off), world.press(2, "❌ Deny"));
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(text(&refused.stderr).contains("-32001"), "{refused:?}");
    assert_eq!(world.home.state("light.kitchen").unwrap()["state"], "off");
    assert_eq!(world.home.service_call_count(), 1);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
#[ignore = "needs the agentpass venv: .ci/run runs it (AGENT_GATE_UPSTREAM_VENV)"]
async fn upstream_cli_fetches_a_result_decided_after_it_left_once() {
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(60)).await;
    let url = gateway.ws_url();
    // The request gives up waiting after 2 s and disconnects; the approval comes later.
    let on = [
        "request",
        "ha_call_service",
        "domain=light",
        "service=turn_on",
        "entity_id=light.bedroom",
        "--timeout",
        "2",
    ];
    let (gone, _) = tokio::join!(
        agentpass(&url, PI_TOKEN, &on),
        world.telegram.wait_for_sent(1)
    );
    assert_eq!(gone.status.code(), Some(2), "{gone:?}");
    support::wait_until("the gateway sees the agent gone", || {
        gateway.connected_agents() == 0
    })
    .await;
    world.press(1, "✅ Allow").await;
    support::wait_until("the approved call ran", || {
        world.home.service_call_count() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let pending = agentpass(&url, PI_TOKEN, &["pending"]).await;
    assert_eq!(pending.status.code(), Some(0), "{pending:?}");
    let rows = json_out(&pending);
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["result"]["status"], "executed", "{rows}");
    assert_eq!(rows[0]["tool_name"], "ha_call_service", "{rows}");
    // At most once for a client that sent no request_id: the second fetch is empty.
    let again = agentpass(&url, PI_TOKEN, &["pending"]).await;
    assert_eq!(json_out(&again), serde_json::json!([]), "{again:?}");
    gateway.shutdown().await.unwrap();
}

/// Two `AgentPassClient`s with one token, connected at once, each completing calls.
const TWO_CLIENTS: &str = r#"
import asyncio, json, os, sys
from agentpass.client import AgentPassClient

async def main():
    url, token = os.environ["AGENTPASS_URL"], os.environ["AGENT_TOKEN"]
    async with AgentPassClient(url, token, max_retries=0) as a, AgentPassClient(url, token, max_retries=0) as b:
        results = []
        for _ in range(5):
            ra, rb = await asyncio.gather(
                asyncio.wait_for(a.tool_request("ha_get_state", entity_id="light.kitchen"), 10),
                asyncio.wait_for(b.tool_request("ha_get_state", entity_id="light.bedroom"), 10),
            )
            results.append([ra["entity_id"], rb["entity_id"]])
        print(json.dumps(results))

asyncio.run(main())
"#;

#[tokio::test]
#[ignore = "needs the agentpass venv: .ci/run runs it (AGENT_GATE_UPSTREAM_VENV)"]
async fn two_upstream_clients_with_one_token_both_complete_calls() {
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(60)).await;
    let url = gateway.ws_url();
    let mut command = Command::new(python());
    command
        .args(["-c", TWO_CLIENTS])
        .env("AGENTPASS_URL", &url)
        .env("AGENT_TOKEN", PI_TOKEN);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let rows = json_out(&output);
    assert_eq!(rows.as_array().map(Vec::len), Some(5), "{rows}");
    assert_eq!(
        rows[4],
        serde_json::json!(["light.kitchen", "light.bedroom"])
    );

    // And one CLI waiting for a human while another completes a read with the same token.
    let on = [
        "request",
        "ha_call_service",
        "domain=light",
        "service=turn_on",
        "entity_id=light.bedroom",
    ];
    let waiting = tokio::spawn({
        let url = url.clone();
        async move { agentpass(&url, PI_TOKEN, &on).await }
    });
    world.telegram.wait_for_sent(1).await;
    let read = agentpass(
        &url,
        PI_TOKEN,
        &["request", "ha_get_state", "entity_id=light.kitchen"],
    )
    .await;
    assert_eq!(read.status.code(), Some(0), "{read:?}");
    world.press(1, "✅ Allow").await;
    let waited = waiting.await.unwrap();
    assert_eq!(
        waited.status.code(),
        Some(0),
        "the waiting call was not knocked off: {waited:?}"
    );
    gateway.shutdown().await.unwrap();
}

// ----- our CLI against upstream's gateway --------------------------------------------------

/// Starts upstream's gateway with its Telegram bot pointed at the fake Bot API (the package
/// has no setting for that, so the wrapper sets python-telegram-bot's `base_url`; nothing
/// else is changed).
const UPSTREAM_GATEWAY: &str = r#"
import os, sys
import telegram.ext
base = os.environ["AGENTPASS_TEST_TELEGRAM_URL"].rstrip("/")
build = telegram.ext.ApplicationBuilder.build
def build_with_fake_api(self):
    self.base_url(base + "/bot")
    self.base_file_url(base + "/file/bot")
    return build(self)
telegram.ext.ApplicationBuilder.build = build_with_fake_api
from agentpass.__main__ import main
main(sys.argv[1:])
"#;

const UPSTREAM_TOOLS: &str = r#"
tools:
  ha_get_state:
    description: "Get the state of an entity"
    signature: "{entity_id}"
    args:
      entity_id:
        required: true
        validate: "^[a-z_]+\\.[a-z0-9_]+$"
    request:
      method: GET
      path: "/api/states/{entity_id}"
  ha_call_service:
    description: "Call a Home Assistant service"
    signature: "{domain}.{service}, {entity_id}"
    args:
      domain:
        required: true
        validate: "^[a-z_]+$"
      service:
        required: true
        validate: "^[a-z_]+$"
      entity_id:
        required: false
    request:
      method: POST
      path: "/api/services/{domain}/{service}"
      body_exclude: ["domain", "service"]
    response:
      wrap: "result"
"#;

const UPSTREAM_PERMISSIONS: &str = r#"
rules:
  - pattern: "ha_call_service(lock.*)"
    action: deny
  - pattern: "ha_call_service(switch.*)"
    action: allow
defaults:
  - pattern: "ha_get_*"
    action: allow
  - pattern: "*"
    action: ask
"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Upstream's gateway as a child process, killed when dropped.
struct Upstream {
    child: Child,
    url: String,
    port: u16,
    log: PathBuf,
}

impl Upstream {
    async fn start(world: &World) -> Self {
        let dir = world.dir.path();
        let (port, health_port) = (free_port(), free_port());
        std::fs::write(dir.join("upstream-tools.yaml"), UPSTREAM_TOOLS).unwrap();
        std::fs::write(dir.join("upstream-permissions.yaml"), UPSTREAM_PERMISSIONS).unwrap();
        let config = format!(
            r#"
gateway:
  host: 127.0.0.1
  port: {port}
  health_host: 127.0.0.1
  health_port: {health_port}
agent:
  token: "{UPSTREAM_TOKEN}"
messenger:
  type: telegram
  telegram:
    token: "{BOT_TOKEN}"
    chat_id: {CHAT}
    allowed_users: [{alice}]
services:
  homeassistant:
    url: "{ha}"
    auth:
      type: bearer
      token: "{HA_TOKEN}"
    health:
      path: "/api/"
    tools: "upstream-tools.yaml"
storage:
  type: sqlite
  path: "{db}"
approval_timeout: 60
"#,
            alice = support::ALICE,
            ha = world.ha.url(),
            db = dir.join("upstream.db").display(),
        );
        let config_path = dir.join("upstream-config.yaml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.join("upstream.log");
        let child = Command::new(python())
            .args(["-c", UPSTREAM_GATEWAY, "serve", "--insecure", "--config"])
            .arg(&config_path)
            .arg("--permissions")
            .arg(dir.join("upstream-permissions.yaml"))
            .env("AGENTPASS_TEST_TELEGRAM_URL", world.tg.url())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("upstream's gateway starts");
        let upstream = Upstream {
            child,
            url: format!("ws://127.0.0.1:{port}"),
            port,
            log,
        };
        upstream.wait_ready().await;
        upstream
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "upstream's gateway did not listen within 30 s:\n{}",
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
#[ignore = "needs the agentpass venv: .ci/run runs it (AGENT_GATE_UPSTREAM_VENV)"]
async fn our_cli_against_the_upstream_gateway_allow_deny_and_pending() {
    let world = World::new().await;
    let upstream = Upstream::start(&world).await;
    let url = upstream.url.clone();

    let allowed = ours(
        &url,
        &["request", "ha_get_state", "entity_id=light.kitchen"],
    )
    .await;
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{allowed:?}\n{}",
        upstream.log_text()
    );
    assert_eq!(json_out(&allowed)["entity_id"], "light.kitchen");

    let denied = ours(
        &url,
        &[
            "request",
            "ha_call_service",
            "domain=lock",
            "service=unlock",
            "entity_id=lock.front_door",
        ],
    )
    .await;
    assert_eq!(denied.status.code(), Some(1), "{denied:?}");
    assert!(text(&denied.stderr).contains("-32003"), "{denied:?}");

    // --request-id against a gateway that ignores it: answered, with a warning that a re-run
    // would run the call again.
    let with_id = ours(
        &url,
        &[
            "request",
            "ha_get_state",
            "entity_id=light.kitchen",
            "--request-id",
            "read-1",
        ],
    )
    .await;
    assert_eq!(with_id.status.code(), Some(0), "{with_id:?}");
    assert!(
        text(&with_id.stderr).contains("ignores request_id"),
        "{with_id:?}"
    );

    // An ask that the CLI stops waiting for; upstream keeps its one connection slot busy
    // until the human decides, so meanwhile a client is told the slot is taken (4000).
    let on = [
        "request",
        "ha_call_service",
        "domain=light",
        "service=turn_on",
        "entity_id=light.bedroom",
        "--timeout",
        "2",
    ];
    let (gone, _) = tokio::join!(ours(&url, &on), world.telegram.wait_for_sent(1));
    assert_eq!(gone.status.code(), Some(2), "{gone:?}");
    let taken = ours(&url, &["pending", "--retries", "1"]).await;
    assert_eq!(taken.status.code(), Some(3), "{taken:?}");
    let stderr = text(&taken.stderr);
    assert!(stderr.contains("slot is taken (close 4000"), "{stderr}");
    assert!(
        !stderr.contains("check the token"),
        "no misleading hint: {stderr}"
    );

    world.press(1, "Allow").await;
    support::wait_until("the approved call ran", || {
        world.home.service_call_count() >= 1
    })
    .await;
    let pending = wait_for_pending(&url).await;
    let rows = json_out(&pending);
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["tool"], "ha_call_service", "{rows}");
    assert_eq!(rows[0]["result"]["status"], "executed", "{rows}");
    assert!(
        rows[0]["result"]["data"]["result"].is_array(),
        "upstream's wrap: {rows}"
    );
    assert_eq!(rows[0]["args"]["entity_id"], "light.bedroom", "{rows}");
    let again = ours(&url, &["pending"]).await;
    assert_eq!(json_out(&again), serde_json::json!([]), "{again:?}");
    // Seen with agentpass 0.2.0, and pinned here so that it stays known: the approved call
    // ran twice at upstream (sending its answer to the departed client failed inside the
    // execution's error handling, and the offline path executed it again). Our CLI sent it
    // once; the README's migration notes say so.
    assert_eq!(
        world.home.service_call_count(),
        2,
        "upstream's double execution"
    );
}

/// `agent-gate pending` once upstream frees its slot (after the approved call's handler ends).
async fn wait_for_pending(url: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let output = ours(url, &["pending"]).await;
        if output.status.code() == Some(0) || Instant::now() > deadline {
            assert_eq!(output.status.code(), Some(0), "{output:?}");
            return output;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs the agentpass venv: .ci/run runs it (AGENT_GATE_UPSTREAM_VENV)"]
async fn our_cli_never_re_sends_to_the_upstream_gateway_after_a_reconnect() {
    let world = World::new().await;
    let upstream = Upstream::start(&world).await;
    let proxy = Proxy::start(format!("127.0.0.1:{}", upstream.port).parse().unwrap()).await;
    // The service call takes 2 s; the connection is cut meanwhile and comes back at once.
    world.home.inject(
        Fault::delay(Duration::from_secs(2))
            .on_path("/api/services")
            .once(),
    );
    let url = proxy.url();
    let call = tokio::spawn(async move {
        ours(
            &url,
            &[
                "request",
                "ha_call_service",
                "domain=switch",
                "service=turn_on",
                "entity_id=switch.coffee_maker",
                "--retries",
                "20",
            ],
        )
        .await
    });
    support::wait_until("the call reached Home Assistant", || {
        world
            .home
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/api/services"))
    })
    .await;
    proxy.cut();
    proxy.restore();
    let output = call.await.unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(5),
        "{output:?}\n{}",
        upstream.log_text()
    );
    assert!(stderr.contains("outcome unknown"), "{stderr}");
    assert!(stderr.contains("not re-sent"), "{stderr}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        world.home.service_call_count(),
        1,
        "executed once, never re-sent"
    );
}
