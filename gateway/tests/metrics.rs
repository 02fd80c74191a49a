//! `/metrics` on the HTTP side, scraped over real HTTP after a scripted workload over a real
//! WebSocket: the request counts by tool, decision and outcome, the latency histograms, the
//! pending approvals, approver health, connections per front and the store's commits.

#[path = "server_support/mod.rs"]
mod support;

use std::collections::HashMap;

use agent_gate_gateway::approvals::DecideOutcome;
use serde_json::{Value, json};
use support::Harness;

fn light(entity: &str, service: &str) -> Value {
    json!({"domain": "light", "service": service, "entity_id": entity})
}

/// The samples of a Prometheus text exposition: `name{labels}` → value (comments skipped).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(h: &Harness) -> (String, HashMap<String, f64>) {
    let addr = h.gateway().health_addr().expect("HTTP side on");
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let parsed = samples(&text);
    (text, parsed)
}

fn value(samples: &HashMap<String, f64>, key: &str, text: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample `{key}` in:\n{text}"))
}

#[tokio::test]
async fn a_scripted_workload_shows_in_the_metrics() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;

    for _ in 0..3 {
        let answer = agent
            .tool("ha_get_state", json!({"entity_id": "light.kitchen"}))
            .await;
        assert_eq!(answer["result"]["status"], "executed", "{answer}");
    }
    let denied = agent
        .tool(
            "ha_call_service",
            json!({"domain": "lock", "service": "unlock", "entity_id": "lock.front_door"}),
        )
        .await;
    assert_eq!(denied["error"]["code"], -32003, "{denied}");
    let invalid = agent
        .tool("ha_get_state", json!({"entity_id": "Not An Entity"}))
        .await;
    assert!(invalid["error"].is_object(), "{invalid}");
    let unknown = agent.tool("ha_open_the_vault", json!({})).await;
    assert!(unknown["error"].is_object(), "{unknown}");

    // Asks: one approved, one denied by the human, one left pending.
    let approved = agent
        .tool_with_id(
            "ha_call_service",
            light("light.bedroom", "turn_on"),
            "ask-1",
        )
        .await;
    let request = h.approver.next_request().await.unwrap();
    assert_eq!(
        h.approver.approve(request.key, "alice").await,
        DecideOutcome::Won
    );
    let answer = agent.response(approved).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    let refused = agent
        .tool_with_id(
            "ha_call_service",
            light("light.kitchen", "turn_on"),
            "ask-2",
        )
        .await;
    let request = h.approver.next_request().await.unwrap();
    assert_eq!(
        h.approver.deny(request.key, "bob").await,
        DecideOutcome::Won
    );
    let answer = agent.response(refused).await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    agent
        .tool_with_id(
            "ha_call_service",
            light("light.living_room", "turn_off"),
            "ask-3",
        )
        .await;
    h.approver.next_request().await.unwrap();

    // An MCP connection stays open (kept alive) while the scrape runs.
    let mcp = reqwest::Client::new();
    let answer = mcp
        .post(format!("http://{}/mcp", h.gateway().ws_addr()))
        .header("authorization", "Bearer wrong-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);

    let (text, m) = scrape(&h).await;
    let requests = |tool: &str, decision: &str, outcome: &str| {
        value(
            &m,
            &format!(
                "agent_gate_requests_total{{tool=\"{tool}\",decision=\"{decision}\",outcome=\"{outcome}\"}}"
            ),
            &text,
        )
    };
    assert_eq!(requests("ha_get_state", "allow", "executed"), 3.0);
    assert_eq!(requests("ha_call_service", "deny", "denied"), 1.0);
    assert_eq!(requests("ha_get_state", "refused", "refused"), 1.0);
    // An agent cannot add label values: a tool not in the manifest counts as `unknown`.
    assert_eq!(requests("unknown", "refused", "refused"), 1.0);
    assert!(!text.contains("ha_open_the_vault"), "{text}");
    assert_eq!(requests("ha_call_service", "ask", "executed"), 1.0);
    assert_eq!(requests("ha_call_service", "ask", "denied"), 1.0);

    let count = |key: &str| value(&m, key, &text);
    assert_eq!(
        count("agent_gate_decision_duration_seconds_count{by=\"policy\"}"),
        4.0
    );
    assert_eq!(
        count("agent_gate_decision_duration_seconds_count{by=\"human\"}"),
        2.0
    );
    assert_eq!(
        count("agent_gate_execution_duration_seconds_count{tool=\"ha_get_state\"}"),
        3.0
    );
    assert_eq!(
        count("agent_gate_execution_duration_seconds_count{tool=\"ha_call_service\"}"),
        1.0
    );
    // Executed and denied calls have a whole duration; the pending one not yet.
    assert_eq!(
        count("agent_gate_request_duration_seconds_count{tool=\"ha_call_service\"}"),
        3.0
    );
    assert_eq!(count("agent_gate_pending_approvals"), 1.0);
    assert_eq!(count("agent_gate_approver_up{approver=\"test\"}"), 1.0);
    assert_eq!(count("agent_gate_connections{front=\"websocket\"}"), 1.0);
    assert_eq!(count("agent_gate_connections{front=\"mcp\"}"), 1.0);
    assert!(count("agent_gate_store_commit_duration_seconds_count") >= 1.0);
    assert!(count("agent_gate_store_batch_size_count") >= 1.0);
    assert!(count("agent_gate_store_batch_size_sum") >= count("agent_gate_store_batch_size_count"));

    // The MCP connection closed: the gauge follows.
    drop(mcp);
    let mut mcp_open = 1.0;
    for _ in 0..100 {
        let (text, m) = scrape(&h).await;
        mcp_open = value(&m, "agent_gate_connections{front=\"mcp\"}", &text);
        if mcp_open == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(mcp_open, 0.0);
}

#[tokio::test]
async fn metrics_are_not_served_on_the_agents_port() {
    let h = Harness::start().await;
    let answer = reqwest::get(format!("http://{}/metrics", h.gateway().ws_addr())).await;
    // The agent port speaks WebSocket and MCP only: an error, or anything but the metrics.
    if let Ok(response) = answer {
        assert_ne!(response.status(), 200);
    }
}
