//! What an MCP call leaves in the store, over a real socket: a call decided at once (allowed
//! or denied) is answered in its HTTP response and cannot be fetched again (MCP clients send
//! no request ids, and re-calling attaches only to asks), so it is written like a WebSocket
//! call — the decided row, then the outcome — and leaves nothing for `get_pending_results`.

#[path = "server_support/mod.rs"]
mod support;

use serde_json::{Value, json};
use support::{Harness, Options, PI_TOKEN};

const PERMISSIONS: &str = r#"
rules:
  - pattern: "ha_get_state(*)"
    action: allow
  - pattern: "ha_call_service(lock.*)"
    action: deny
    description: "Locks are off limits"
  - pattern: "ha_call_service(*, lock.*)"
    action: deny
    description: "Locks are off limits"
defaults:
  - pattern: "*"
    action: ask
"#;

/// One stateless MCP `tools/call` (2025-11-25 without a session), the way the bench sends it.
async fn mcp_call(harness: &Harness, name: &str, arguments: Value) -> Value {
    let url = format!("http://{}/mcp", harness.gateway().ws_addr());
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(PI_TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .body(
            json!({
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": name, "arguments": arguments},
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

async fn harness() -> Harness {
    Harness::start_with(Options {
        permissions: Some(PERMISSIONS.to_owned()),
        ..Options::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_mcp_call_is_two_writes_and_leaves_nothing_to_fetch() {
    let harness = harness().await;
    let before = harness.gateway().store().stats().writes;
    let answer = mcp_call(
        &harness,
        "ha_get_state",
        json!({"entity_id": "light.kitchen"}),
    )
    .await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let after = harness.gateway().store().stats().writes;
    assert_eq!(
        after - before,
        2,
        "an allowed call writes its decided row and its outcome, nothing more"
    );
    let mut agent = harness.agent().await;
    let pending = agent.call("get_pending_results", json!({})).await;
    assert_eq!(pending["result"]["results"], json!([]), "{pending}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_mcp_call_is_one_write_and_leaves_nothing_to_fetch() {
    let harness = harness().await;
    let before = harness.gateway().store().stats().writes;
    let answer = mcp_call(
        &harness,
        "ha_call_service",
        json!({"domain": "lock", "service": "unlock", "entity_id": "lock.front_door"}),
    )
    .await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(text.contains("Locks are off limits"), "{answer}");
    let after = harness.gateway().store().stats().writes;
    assert_eq!(
        after - before,
        1,
        "a denied call writes its decided row only"
    );
    let mut agent = harness.agent().await;
    let pending = agent.call("get_pending_results", json!({})).await;
    assert_eq!(pending["result"]["results"], json!([]), "{pending}");
}
