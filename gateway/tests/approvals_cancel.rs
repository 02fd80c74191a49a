//! `cancel_request` over a real WebSocket: an agent withdraws its own pending request, which
//! becomes `cancelled` (stored, told to approvers, answered to the waiting call); a cancel
//! after the decision changes nothing and says what happened; a cancel racing an Allow has
//! exactly one winner; another agent's request cannot be cancelled.

#[path = "server_support/mod.rs"]
mod support;

use agent_gate_gateway::approvals::{DecideOutcome, Resolution};
use agent_gate_gateway::store::{RequestKey, RequestState};
use serde_json::{Value, json};
use support::{Harness, LAPTOP_TOKEN};

fn light(entity: &str) -> Value {
    json!({"domain": "light", "service": "turn_on", "entity_id": entity})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cancels_its_pending_request() {
    let harness = Harness::start().await;
    let mut agent = harness.agent().await;
    let call = agent
        .tool_with_id("ha_call_service", light("light.kitchen"), "cancel-1")
        .await;
    let asked = harness.approver.next_request().await.unwrap();
    assert_eq!(asked.key.request_id, "cancel-1");

    let mut other = harness.agent().await;
    let cancelled = other
        .call("cancel_request", json!({"request_id": "cancel-1"}))
        .await;
    assert_eq!(
        cancelled["result"],
        json!({"request_id": "cancel-1", "cancelled": true, "state": "cancelled"}),
        "{cancelled}"
    );

    // The waiting call ends with the cancellation, not a denial.
    let answer = agent.response(call).await;
    assert_eq!(answer["error"]["code"], -32007, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Cancelled by the agent"),
        "{answer}"
    );
    // The approvers are told.
    let (request, resolution) = harness.approver.next_resolution().await.unwrap();
    assert_eq!(request.key.request_id, "cancel-1");
    assert!(
        matches!(resolution, Resolution::Cancelled { .. }),
        "{resolution:?}"
    );
    // Stored as cancelled, by the agent.
    let record = harness
        .gateway()
        .store()
        .get_request("pi", "cancel-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, RequestState::Cancelled);
    assert_eq!(record.resolved_by.as_deref(), Some("agent:pi"));
    // Nothing ran, and a human's late press changes nothing.
    assert_eq!(
        harness
            .approver
            .approve(RequestKey::new("pi", "cancel-1"), "alice")
            .await,
        DecideOutcome::Cancelled
    );
    assert_eq!(harness.home.service_call_count(), 0);

    // Cancelling again says what happened.
    let again = other
        .call("cancel_request", json!({"request_id": "cancel-1"}))
        .await;
    assert_eq!(again["result"]["cancelled"], false, "{again}");
    assert_eq!(again["result"]["state"], "cancelled", "{again}");
    assert!(again["result"]["message"].is_string(), "{again}");

    // The outcome stays fetchable for the agent, as the cancellation.
    let pending = other.call("get_pending_results", json!({})).await;
    let row = pending["result"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["request_id"] == "cancel-1")
        .cloned();
    if let Some(row) = row {
        assert_eq!(row["error"]["code"], -32007, "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_after_the_decision_changes_nothing() {
    let harness = Harness::start().await;
    let mut agent = harness.agent().await;
    let call = agent
        .tool_with_id("ha_call_service", light("light.kitchen"), "cancel-2")
        .await;
    let asked = harness.approver.next_request().await.unwrap();
    harness.approver.approve(asked.key, "alice").await;
    let answer = agent.response(call).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");

    let late = agent
        .call("cancel_request", json!({"request_id": "cancel-2"}))
        .await;
    assert_eq!(late["result"]["cancelled"], false, "{late}");
    assert_eq!(late["result"]["state"], "executed", "{late}");
    let message = late["result"]["message"].as_str().unwrap();
    assert!(message.contains("already"), "{late}");
    assert_eq!(harness.home.service_call_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_or_foreign_request_cannot_be_cancelled() {
    let harness = Harness::start().await;
    let mut pi = harness.agent().await;
    pi.tool_with_id("ha_call_service", light("light.kitchen"), "cancel-3")
        .await;
    harness.approver.next_request().await.unwrap();

    let mut laptop = harness.agent_with(LAPTOP_TOKEN).await;
    let foreign = laptop
        .call("cancel_request", json!({"request_id": "cancel-3"}))
        .await;
    assert_eq!(foreign["error"]["code"], -32600, "{foreign}");
    assert!(
        foreign["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancel-3"),
        "{foreign}"
    );
    let record = harness
        .gateway()
        .store()
        .get_request("pi", "cancel-3")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, RequestState::Pending);

    let bad = pi.call("cancel_request", json!({})).await;
    assert_eq!(bad["error"]["code"], -32600, "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_an_allow_has_one_winner() {
    let harness = Harness::start().await;
    let mut agent = harness.agent().await;
    let mut other = harness.agent().await;
    for round in 0..10 {
        let rid = format!("race-{round}");
        let call = agent
            .tool_with_id("ha_call_service", light("light.kitchen"), &rid)
            .await;
        let asked = harness.approver.next_request().await.unwrap();
        let (approved, cancelled) = tokio::join!(
            harness.approver.approve(asked.key, "alice"),
            other.call("cancel_request", json!({"request_id": rid}))
        );
        let answer = agent.response(call).await;
        let record = harness
            .gateway()
            .store()
            .get_request("pi", &rid)
            .await
            .unwrap()
            .unwrap();
        if cancelled["result"]["cancelled"] == true {
            assert_eq!(approved, DecideOutcome::Cancelled, "{rid}");
            assert_eq!(record.state, RequestState::Cancelled, "{rid}");
            assert_eq!(answer["error"]["code"], -32007, "{answer}");
        } else {
            assert_eq!(approved, DecideOutcome::Won, "{rid}");
            assert_eq!(answer["result"]["status"], "executed", "{answer}");
            assert_eq!(record.state, RequestState::Executed, "{rid}");
        }
        while harness.approver.try_next_event().await.is_some() {}
    }
    let executed = harness.home.service_call_count();
    assert!(executed <= 10);
}
