//! `agent-gate request` (the real program) waiting for a human on Telegram: the CLI blocks
//! while the approval message is out, a button press on the simulated Bot API decides, and
//! the exit code says how (0 approved and executed, 1 denied). The other exit codes are
//! proven in `gateway/tests/cli_client_exit_codes.rs`.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use support::{PI_TOKEN, World};

async fn request(url: String, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_agent-gate-e2e-gateway"))
            .arg("request")
            .args(&args)
            .args(["--url", &url, "--token", PI_TOKEN])
            .env_remove("AGENT_GATE_URL")
            .env_remove("AGENT_GATE_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

const BEDROOM_ON: [&str; 4] = [
    "ha_call_service",
    "domain=light",
    "service=turn_on",
    "entity_id=light.bedroom",
];

#[tokio::test]
async fn the_cli_waits_for_the_telegram_allow_and_prints_the_result() {
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(60)).await;
    let (output, _) = tokio::join!(
        request(gateway.ws_url(), &BEDROOM_ON),
        world.press(1, "✅ Allow")
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let data: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(data.to_string().contains("light.bedroom"), "{data}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("waiting for a human to approve request"),
        "{stderr}"
    );
    assert_eq!(world.home.state("light.bedroom").unwrap()["state"], "on");
    assert_eq!(world.home.service_call_count(), 1);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_cli_exits_1_when_the_human_denies_on_telegram() {
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(60)).await;
    let (output, _) = tokio::join!(
        request(gateway.ws_url(), &BEDROOM_ON),
        world.press(1, "❌ Deny")
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("code: -32001"), "{stderr}");
    assert_eq!(world.home.service_call_count(), 0);
    gateway.shutdown().await.unwrap();
}

async fn healthcheck(url: String) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_agent-gate-e2e-gateway"))
            .args(["healthcheck", "--url", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn healthcheck_fails_while_telegram_is_unreachable_and_recovers() {
    let world = World::new().await;
    world.telegram.set_down(true);
    let gateway = world.gateway(Duration::from_secs(60)).await;
    let url = format!("http://{}/healthz", gateway.health_addr().unwrap());
    let down = healthcheck(url.clone()).await;
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    let stderr = String::from_utf8(down.stderr).unwrap();
    assert!(stderr.starts_with("unhealthy: "), "{stderr}");
    assert!(stderr.contains("answered 503"), "{stderr}");
    assert!(stderr.contains("failing: telegram"), "{stderr}");

    world.telegram.set_down(false);
    let mut up = healthcheck(url.clone()).await;
    for _ in 0..400 {
        if up.status.success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        up = healthcheck(url.clone()).await;
    }
    assert_eq!(up.status.code(), Some(0), "{up:?}");
    let stdout = String::from_utf8(up.stdout).unwrap();
    assert!(
        stdout.starts_with(&format!("healthy: {url} answered 200")),
        "{stdout}"
    );
    gateway.shutdown().await.unwrap();
}
