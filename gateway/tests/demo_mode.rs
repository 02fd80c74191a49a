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
    let client = AgentGateClient::builder()
        .ignore_env()
        .url(demo.ws_url())
        .token(demo.token())
        .max_retries(Some(0))
        .connect()
        .await
        .expect("the demo agent connects");
    // Work around an SDK race (reported): a call made before the client's background task
    // has attached the first connection waits for a state change that never comes. Yielding
    // lets that task run first.
    tokio::task::yield_now().await;
    client
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
    let http = reqwest::Client::new();
    let page = http.get(demo.approvals_url()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookie = page
        .headers()
        .get("set-cookie")
        .expect("a loopback visitor gets a session")
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
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
