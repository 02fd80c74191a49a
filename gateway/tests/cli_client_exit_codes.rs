//! The client subcommands of the real `agent-gate` binary (`request`, `tools`, `pending`,
//! `healthcheck`) against an in-process gateway over a real WebSocket: JSON on stdout, errors
//! with code and suggestion on stderr, and each exit code (0 success, 1 denied, 2 timeout,
//! 3 connection/auth, 4 invalid arguments, 5 execution failed, 6 cancelled) and `cancel`.
//!
//! The gateway is the demo's (bundled manifest, demo permissions: reads allowed, locks
//! denied, lights ask) with a channel approver the tests decide through and, where a test
//! needs it, a short approval timeout.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use agent_gate_gateway::app::{Gateway, RunningGateway};
use agent_gate_gateway::approvals::ChannelApprover;
use agent_gate_gateway::demo::{self, DEMO_TOKEN, DemoOptions};
use agent_gate_gateway::store::RequestState;
use agent_gate_sim::home_assistant::{Fault, HomeAssistant, RunningHomeAssistant};
use serde_json::Value;

const HA_TOKEN: &str = "cli-test-home-assistant-token";

struct Harness {
    _dir: tempfile::TempDir,
    home: HomeAssistant,
    _ha: RunningHomeAssistant,
    approver: Arc<ChannelApprover>,
    gateway: RunningGateway,
}

impl Harness {
    async fn start(approval_timeout: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = HomeAssistant::demo(HA_TOKEN);
        let (_, ha) = home.spawn("127.0.0.1:0").await.unwrap();
        let options = DemoOptions {
            port: 0,
            web_port: 0,
            data_dir: None,
        };
        let mut config = demo::demo_config(&options, &ha.url(), HA_TOKEN, dir.path()).unwrap();
        config.approval_timeout = approval_timeout;
        let approver = Arc::new(ChannelApprover::new("test"));
        let gateway = Gateway::builder(
            config,
            demo::demo_policy().unwrap(),
            demo::bundled_manifest().unwrap(),
        )
        .approver(approver.clone())
        .insecure(true)
        .start()
        .await
        .expect("gateway starts");
        Self {
            _dir: dir,
            home,
            _ha: ha,
            approver,
            gateway,
        }
    }

    /// Runs `agent-gate <args>` with the gateway's URL and the demo token.
    async fn cli(&self, args: &[&str]) -> Run {
        let mut all = vec![
            "--url".to_owned(),
            self.gateway.ws_url(),
            "--token".to_owned(),
            DEMO_TOKEN.to_owned(),
        ];
        all.extend(args.iter().map(|s| (*s).to_owned()));
        run(all).await
    }
}

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Runs the binary off the runtime's thread (the gateway keeps serving meanwhile). The
/// subcommand comes first; `--url`/`--token` given before it are moved after it.
async fn run(args: Vec<String>) -> Run {
    let (mut globals, mut rest): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        if (arg == "--url" || arg == "--token") && rest.is_empty() {
            globals.push(arg);
            globals.extend(iter.next());
        } else {
            rest.push(arg);
        }
    }
    let mut ordered = Vec::new();
    let mut rest = rest.into_iter();
    ordered.extend(rest.next());
    ordered.extend(globals);
    ordered.extend(rest);
    let output: Output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_agent-gate"))
            .args(&ordered)
            .env_remove("AGENT_GATE_URL")
            .env_remove("AGENT_GATE_TOKEN")
            .env_remove("AGENT_GATE_CA_CERT")
            .env_remove("AGENT_GATE_CONFIG")
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();
    Run {
        code: output.status.code().expect("exited"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[tokio::test]
async fn exit_0_an_allowed_read_prints_the_state_as_json() {
    let h = Harness::start(Duration::from_secs(60)).await;
    let run = h
        .cli(&[
            "request",
            "ha_get_state",
            "entity_id=sensor.living_room_temperature",
        ])
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    let state = run.json();
    assert_eq!(state["entity_id"], "sensor.living_room_temperature");
    assert_eq!(state["state"], "21.4");
    assert_eq!(state["attributes"]["unit_of_measurement"], "°C");
}

#[tokio::test]
async fn exit_0_json_arguments_and_typed_values_reach_home_assistant() {
    let h = Harness::start(Duration::from_secs(60)).await;
    let approver = h.approver.clone();
    let decide = tokio::spawn(async move {
        let request = approver.next_request().await.expect("a request to approve");
        approver.approve(request.key.clone(), "test:cli").await;
    });
    let run = h
        .cli(&[
            "request",
            "ha_call_service",
            "--json",
            r#"{"domain": "light", "service": "turn_on"}"#,
            "entity_id=light.kitchen",
            r#"data={"brightness": 77}"#,
        ])
        .await;
    decide.await.unwrap();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("waiting for a human to approve request"),
        "{}",
        run.stderr
    );
    let light = h.home.state("light.kitchen").unwrap();
    assert_eq!(light["state"], "on");
    assert_eq!(light["attributes"]["brightness"], 77);
    assert!(run.json().to_string().contains("light.kitchen"));
}

#[tokio::test]
async fn exit_1_a_policy_denial_explains_itself_on_stderr() {
    let h = Harness::start(Duration::from_secs(60)).await;
    let run = h
        .cli(&[
            "request",
            "ha_call_service",
            "domain=lock",
            "service=unlock",
            "entity_id=lock.front_door",
            "--request-id",
            "unlock-1",
        ])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "");
    insta::assert_snapshot!("denied_by_policy_stderr", run.stderr);
    assert_eq!(h.home.service_call_count(), 0);
}

#[tokio::test]
async fn exit_1_a_human_denial() {
    let h = Harness::start(Duration::from_secs(60)).await;
    let approver = h.approver.clone();
    let decide = tokio::spawn(async move {
        let request = approver.next_request().await.expect("a request to deny");
        approver.deny(request.key.clone(), "test:cli").await;
    });
    let run = h
        .cli(&[
            "request",
            "ha_call_service",
            "domain=light",
            "service=turn_on",
            "entity_id=light.bedroom",
        ])
        .await;
    decide.await.unwrap();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("code: -32001"), "{}", run.stderr);
    assert_eq!(h.home.state("light.bedroom").unwrap()["state"], "off");
}

#[tokio::test]
async fn cancel_withdraws_a_waiting_request_and_the_request_exits_6() {
    let h = Harness::start(Duration::from_secs(60)).await;
    let waiting = {
        let url = h.gateway.ws_url();
        tokio::spawn(async move {
            run([
                "--url",
                url.as_str(),
                "--token",
                DEMO_TOKEN,
                "request",
                "--request-id",
                "cli-cancel-1",
                "ha_call_service",
                "domain=light",
                "service=turn_on",
                "entity_id=light.bedroom",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect())
            .await
        })
    };
    h.approver.next_request().await.expect("the request waits");
    let cancel = h.cli(&["cancel", "cli-cancel-1"]).await;
    assert_eq!(cancel.code, 0, "{cancel:?}");
    assert_eq!(cancel.json()["cancelled"], true, "{cancel:?}");
    assert_eq!(cancel.json()["state"], "cancelled", "{cancel:?}");
    let request = waiting.await.unwrap();
    assert_eq!(request.code, 6, "{request:?}");
    assert!(
        request.stderr.contains("code: -32007"),
        "{}",
        request.stderr
    );
    assert_eq!(h.home.service_call_count(), 0);

    // Too late: it says where the request is, and exits 1.
    let again = h.cli(&["cancel", "cli-cancel-1"]).await;
    assert_eq!(again.code, 1, "{again:?}");
    assert_eq!(again.json()["cancelled"], false, "{again:?}");
    assert!(
        again.stderr.contains("already cancelled"),
        "{}",
        again.stderr
    );
    // Not a request of this agent.
    let unknown = h.cli(&["cancel", "no-such-request"]).await;
    assert_eq!(unknown.code, 4, "{unknown:?}");
    assert!(
        unknown.stderr.contains("no-such-request"),
        "{}",
        unknown.stderr
    );
}

#[tokio::test]
async fn exit_2_nobody_approves_in_time() {
    let h = Harness::start(Duration::from_millis(300)).await;
    let run = h
        .cli(&[
            "request",
            "ha_call_service",
            "domain=light",
            "service=turn_on",
            "entity_id=light.bedroom",
        ])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("code: -32002"), "{}", run.stderr);
    assert_eq!(h.home.service_call_count(), 0);
}

#[tokio::test]
async fn exit_2_the_local_timeout_passes_then_pending_fetches_the_result() {
    let h = Harness::start(Duration::from_secs(60)).await;
    let run = h
        .cli(&[
            "request",
            "ha_call_service",
            "domain=light",
            "service=turn_on",
            "entity_id=light.bedroom",
            "--request-id",
            "bedroom-later",
            "--timeout",
            "0.3",
        ])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.starts_with("waiting for a human"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "suggestion: raise --timeout; the request may still be decided at the gateway: run `agent-gate pending` later to fetch its result, or re-run with --request-id bedroom-later to wait for it again"
        ),
        "{}",
        run.stderr
    );
    // The request is still pending at the gateway; a human approves it after the CLI left.
    let request = h.approver.next_request().await.unwrap();
    assert_eq!(request.key.request_id, "bedroom-later");
    h.approver.approve(request.key.clone(), "test:cli").await;
    // The store has no change notification: wait for the outcome to be recorded.
    let store = h.gateway.store();
    for _ in 0..1000 {
        let record = store.get_request("demo", "bedroom-later").await.unwrap();
        if record.is_some_and(|r| r.state == RequestState::Executed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let run = h.cli(&["pending"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let results = run.json();
    let results = results.as_array().expect("an array");
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["request_id"], "bedroom-later");
    assert_eq!(results[0]["result"]["status"], "executed");
    assert_eq!(h.home.state("light.bedroom").unwrap()["state"], "on");
    // Fetched once, gone.
    let run = h.cli(&["pending"]).await;
    assert_eq!(run.json(), serde_json::json!([]));
}

#[tokio::test]
async fn exit_3_a_wrong_or_missing_token_or_no_gateway() {
    let h = Harness::start(Duration::from_secs(60)).await;
    let url = h.gateway.ws_url();
    let wrong = run(vec![
        "tools".into(),
        "--url".into(),
        url.clone(),
        "--token".into(),
        "not-the-demo-token".into(),
    ])
    .await;
    assert_eq!(wrong.code, 3, "{wrong:?}");
    assert!(wrong.stderr.contains("code: -32005"), "{}", wrong.stderr);

    let missing = run(vec!["tools".into(), "--url".into(), url]).await;
    assert_eq!(missing.code, 3, "{missing:?}");
    insta::assert_snapshot!("missing_token_stderr", missing.stderr);

    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = run(vec![
        "tools".into(),
        "--url".into(),
        format!("ws://127.0.0.1:{port}"),
        "--token".into(),
        DEMO_TOKEN.into(),
        "--retries".into(),
        "0".into(),
    ])
    .await;
    assert_eq!(unreachable.code, 3, "{unreachable:?}");
    assert!(
        unreachable.stderr.contains("suggestion:"),
        "{}",
        unreachable.stderr
    );
}

#[tokio::test]
async fn exit_4_invalid_arguments_locally_and_at_the_gateway() {
    let h = Harness::start(Duration::from_secs(60)).await;
    let not_key_value = h.cli(&["request", "ha_get_state", "sensor.x"]).await;
    assert_eq!(not_key_value.code, 4, "{not_key_value:?}");
    insta::assert_snapshot!("not_key_value_stderr", not_key_value.stderr);

    let bad_json = h.cli(&["request", "ha_get_state", "--json", "[1]"]).await;
    assert_eq!(bad_json.code, 4, "{bad_json:?}");

    // A command line clap cannot parse is "invalid arguments" too, not clap's 2 (timeout).
    let unknown_flag = h.cli(&["request", "ha_get_state", "--no-such-flag"]).await;
    assert_eq!(unknown_flag.code, 4, "{unknown_flag:?}");
    let no_tool = h.cli(&["request"]).await;
    assert_eq!(no_tool.code, 4, "{no_tool:?}");

    let missing_arg = h.cli(&["request", "ha_get_state"]).await;
    assert_eq!(missing_arg.code, 4, "{missing_arg:?}");
    assert!(
        missing_arg.stderr.contains("code: -32600"),
        "{}",
        missing_arg.stderr
    );

    let unknown_tool = h
        .cli(&["request", "ha_get_stat", "entity_id=sun.sun"])
        .await;
    assert_eq!(unknown_tool.code, 4, "{unknown_tool:?}");
    assert!(
        unknown_tool.stderr.contains("ha_get_state"),
        "{}",
        unknown_tool.stderr
    );
    assert_eq!(h.home.service_call_count(), 0);
}

#[tokio::test]
async fn exit_5_home_assistant_fails() {
    let h = Harness::start(Duration::from_secs(60)).await;
    h.home.inject(Fault::status(500).on_path("/api/states"));
    let run = h
        .cli(&["request", "ha_get_state", "entity_id=sun.sun"])
        .await;
    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("code: -32004"), "{}", run.stderr);
    assert_eq!(run.stdout, "");
}

#[tokio::test]
async fn tools_lists_the_bundled_manifest_as_json() {
    let h = Harness::start(Duration::from_secs(60)).await;
    let run = h.cli(&["tools"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let tools = run.json();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    insta::assert_json_snapshot!("tool_names", names);
    assert!(tools[0]["input_schema"].is_object());
}

#[tokio::test]
async fn healthcheck_is_0_for_a_healthy_gateway_and_1_otherwise() {
    let h = Harness::start(Duration::from_secs(60)).await;
    let addr = h.gateway.health_addr().unwrap();
    // Through the config file, as the Docker HEALTHCHECK does.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "gateway:\n  health_host: 0.0.0.0\n  health_port: {}\nagents:\n  - id: a\n    token: \"${{HEALTH_TEST_TOKEN}}\"\n",
            addr.port()
        ),
    )
    .unwrap();
    let healthy = healthcheck(&config, &[("HEALTH_TEST_TOKEN", "a-long-enough-token")]).await;
    assert_eq!(healthy.code, 0, "{healthy:?}");
    assert!(
        healthy.stdout.starts_with("healthy: http://127.0.0.1:"),
        "{healthy:?}"
    );

    // The agent's token is not needed to find the health address: its ${VAR} may be unset.
    let no_token = healthcheck(&config, &[]).await;
    assert_eq!(no_token.code, 0, "{no_token:?}");

    // An unset ${VAR} in a key healthcheck reads: the config cannot be read.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            &format!("health_port: {}", addr.port()),
            "health_port: \"${HEALTH_TEST_TOKEN}\"",
        ),
    )
    .unwrap();
    let broken = healthcheck(&config, &[]).await;
    assert_eq!(broken.code, 1, "{broken:?}");
    assert!(
        broken
            .stderr
            .contains("gateway.health_port: environment variable HEALTH_TEST_TOKEN is not set"),
        "{}",
        broken.stderr
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = run(vec![
        "healthcheck".into(),
        "--url".into(),
        format!("http://127.0.0.1:{port}/healthz"),
    ])
    .await;
    assert_eq!(down.code, 1, "{down:?}");
    assert!(down.stderr.starts_with("unhealthy: "), "{}", down.stderr);
}

async fn healthcheck(config: &Path, env: &[(&str, &str)]) -> Run {
    let config = config.to_owned();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_agent-gate"));
        command
            .args(["healthcheck", "--config"])
            .arg(&config)
            .env_remove("HEALTH_TEST_TOKEN");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().expect("the binary runs")
    })
    .await
    .unwrap();
    Run {
        code: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}
