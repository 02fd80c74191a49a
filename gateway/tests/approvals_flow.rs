//! Approvals end to end over real WebSockets: notification, approve / deny / timeout, the
//! pending cap, disconnects and `get_pending_results`, re-sent request ids, races decided
//! once by the store, restarts and shutdowns that keep pending approvals.

#[path = "server_support/mod.rs"]
mod support;

use std::time::Duration;

use agent_gate_gateway::approvals::{ApproverEvent, DecideOutcome, Resolution};
use agent_gate_gateway::store::{AuditKind, AuditQuery, RequestKey, RequestState};
use serde_json::{Value, json};
use support::{Harness, Options, redact};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn light_on(entity: &str) -> Value {
    json!({"domain": "light", "service": "turn_on", "entity_id": entity})
}

#[tokio::test]
async fn ask_then_approve_executes_once_and_everyone_is_told() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "light-1")
        .await;
    let status = agent.notification().await;
    insta::assert_json_snapshot!("request_status", redact(status.clone()));
    assert!(
        status["params"]["expires_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let request = h.approver.next_request().await.unwrap();
    assert_eq!(request.key, RequestKey::new("pi", "light-1"));
    assert_eq!(
        request.signature,
        "ha_call_service(light.turn_on, light.bedroom)"
    );
    assert_eq!(request.args, light_on("light.bedroom"));
    assert_eq!(
        request.rule.as_deref(),
        Some("rules[2] ha_call_service(light.*) -> ask")
    );
    // Nothing runs before the human decides.
    assert_eq!(h.home.service_call_count(), 0);

    assert_eq!(
        h.approver.approve(request.key.clone(), "alice").await,
        DecideOutcome::Won
    );
    let answer = agent.response(id).await;
    let mut shape = answer.clone();
    shape["result"]["data"] = json!("[changed states]");
    insta::assert_json_snapshot!("approved_executed", shape);
    assert_eq!(h.home.service_call_count(), 1);
    assert_eq!(h.home.state("light.bedroom").unwrap()["state"], "on");

    let (resolved, resolution) = h.approver.next_resolution().await.unwrap();
    assert_eq!(resolved.key, request.key);
    assert!(matches!(resolution, Resolution::Approved { ref by, .. } if by == "alice"));
    // The approver's message reference was persisted with the request.
    assert_eq!(resolved.refs_of("test"), Some(&json!({"message": 1})));
    // A second press changes nothing.
    assert_eq!(
        h.approver.approve(request.key.clone(), "bob").await,
        DecideOutcome::AlreadyDecided
    );
    assert_eq!(h.home.service_call_count(), 1);

    let store = h.gateway().store();
    let record = store.get_request("pi", "light-1").await.unwrap().unwrap();
    assert_eq!(record.state, RequestState::Executed);
    assert_eq!(record.resolved_by.as_deref(), Some("alice"));
    assert!(record.resolved_at.is_some());
    let audit = store
        .audit_page(AuditQuery::new().request_id("light-1"))
        .await
        .unwrap();
    let kinds: Vec<_> = audit.iter().rev().map(|a| a.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            AuditKind::Decision,
            AuditKind::ApprovalRequested,
            AuditKind::Approved,
            AuditKind::Executing,
            AuditKind::Executed
        ]
    );
    let approved = audit
        .iter()
        .find(|a| a.kind == AuditKind::Approved)
        .unwrap();
    assert_eq!(approved.actor.as_deref(), Some("alice"));
}

#[tokio::test]
async fn deny_is_minus_32001() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.kitchen"), "deny-me")
        .await;
    let request = h.approver.next_request().await.unwrap();
    assert_eq!(
        h.approver.deny(request.key.clone(), "carol").await,
        DecideOutcome::Won
    );
    insta::assert_json_snapshot!("denied_by_human", agent.response(id).await);
    assert_eq!(h.home.service_call_count(), 0);
    let (_, resolution) = h.approver.next_resolution().await.unwrap();
    assert!(matches!(resolution, Resolution::Denied { ref by, .. } if by == "carol"));
}

#[tokio::test(start_paused = true)]
async fn no_decision_before_the_timeout_is_minus_32002() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.kitchen"), "slow-human")
        .await;
    let request = h.approver.next_request().await.unwrap();
    // The paused clock jumps to the 900 s deadline while we wait.
    let answer = agent.response(id).await;
    insta::assert_json_snapshot!("approval_timeout", answer);
    let (_, resolution) = h.approver.next_resolution().await.unwrap();
    assert!(matches!(resolution, Resolution::Expired { .. }));
    assert_eq!(
        h.approver.approve(request.key, "late").await,
        DecideOutcome::Expired
    );
    assert_eq!(h.home.service_call_count(), 0);
}

#[tokio::test]
async fn the_pending_cap_is_minus_32006_with_a_retry_hint() {
    let h = Harness::start_with(Options {
        max_pending_approvals: 2,
        ..Options::default()
    })
    .await;
    let mut agent = h.agent().await;
    for n in 0..2 {
        agent
            .tool_with_id(
                "ha_call_service",
                light_on("light.kitchen"),
                &format!("p{n}"),
            )
            .await;
        h.approver.next_request().await.unwrap();
    }
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.kitchen"), "p2")
        .await;
    let answer = agent.response(id).await;
    insta::assert_json_snapshot!("pending_cap", redact(answer.clone()));
    let retry = answer["error"]["data"]["retry_after"].as_f64().unwrap();
    assert!(retry > 800.0 && retry <= 900.0, "{retry}");
    // Not recorded as a request, so the id stays usable.
    assert!(
        h.gateway()
            .store()
            .get_request("pi", "p2")
            .await
            .unwrap()
            .is_none()
    );
    // Allowed calls still go through; other agents have their own cap.
    let ok = agent.tool("ha_get_config", json!({})).await;
    assert_eq!(ok["result"]["status"], "executed");
    let mut laptop = h.agent_with(support::LAPTOP_TOKEN).await;
    laptop
        .tool_with_id("ha_call_service", light_on("light.kitchen"), "l0")
        .await;
    assert_eq!(laptop.notification().await["params"]["request_id"], "l0");
}

#[tokio::test]
async fn a_result_decided_while_the_agent_is_gone_is_fetched_later() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "offline-1")
        .await;
    agent.notification().await;
    let request = h.approver.next_request().await.unwrap();
    drop(agent);

    assert_eq!(
        h.approver.approve(request.key, "alice").await,
        DecideOutcome::Won
    );
    h.approver.next_resolution().await.unwrap();
    // Execution happens without the agent.
    let record = loop {
        let record = h
            .gateway()
            .store()
            .get_request("pi", "offline-1")
            .await
            .unwrap()
            .unwrap();
        if record.state.is_terminal() {
            break record;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(record.state, RequestState::Executed);
    assert!(!record.delivered);

    // Another agent does not see it.
    let mut laptop = h.agent_with(support::LAPTOP_TOKEN).await;
    let theirs = laptop.call("get_pending_results", json!({})).await;
    assert_eq!(theirs["result"]["results"], json!([]));

    let mut agent = h.agent().await;
    let pending = agent.call("get_pending_results", json!({})).await;
    let mut shape = pending.clone();
    shape["result"]["results"][0]["result"]["data"] = json!("[changed states]");
    insta::assert_json_snapshot!("pending_results", shape);
    assert_eq!(h.home.service_call_count(), 1);
    // Not acknowledged yet (the agent left without sending anything else): still there.
    drop(agent);
    let mut agent = h.agent().await;
    let again = agent.call("get_pending_results", json!({})).await;
    assert_eq!(again["result"]["results"].as_array().unwrap().len(), 1);
    // Any later frame acknowledges it.
    let after_ack = agent.call("get_pending_results", json!({})).await;
    assert_eq!(after_ack["result"]["results"], json!([]));
    let record = h
        .gateway()
        .store()
        .get_request("pi", "offline-1")
        .await
        .unwrap()
        .unwrap();
    assert!(record.delivered);
}

#[tokio::test]
async fn a_re_sent_request_id_attaches_to_the_pending_request() {
    let h = Harness::start().await;
    let mut first = h.agent().await;
    first
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "resume-1")
        .await;
    first.notification().await;
    let request = h.approver.next_request().await.unwrap();
    drop(first);

    let mut second = h.agent().await;
    let id = second
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "resume-1")
        .await;
    let status = second.notification().await;
    assert_eq!(status["params"]["request_id"], "resume-1");
    assert_eq!(
        h.approver.approve(request.key, "alice").await,
        DecideOutcome::Won
    );
    let answer = second.response(id).await;
    assert_eq!(answer["result"]["status"], "executed");
    assert_eq!(answer["result"]["request_id"], "resume-1");
    assert_eq!(h.home.service_call_count(), 1);
    // The approver was asked once.
    h.approver.next_resolution().await.unwrap();
    assert!(h.approver.try_next_event().await.is_none());

    // Sent once more after the fact: the stored outcome, nothing executed again.
    let id = second
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "resume-1")
        .await;
    assert_eq!(second.response(id).await["result"]["status"], "executed");
    assert_eq!(h.home.service_call_count(), 1);
}

#[tokio::test]
async fn the_same_request_id_with_other_arguments_is_minus_32600() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id(
            "ha_get_state",
            json!({"entity_id": "light.kitchen"}),
            "same-id",
        )
        .await;
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    let id = agent
        .tool_with_id(
            "ha_get_state",
            json!({"entity_id": "light.bedroom"}),
            "same-id",
        )
        .await;
    insta::assert_json_snapshot!("request_id_conflict", agent.response(id).await);
    // Same call, keys in another order: attaches.
    let id = agent
        .tool_with_id(
            "ha_call_service",
            json!({"entity_id": "light.bedroom", "service": "turn_on", "domain": "light"}),
            "order",
        )
        .await;
    let request = h.approver.next_request().await.unwrap();
    let again = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "order")
        .await;
    h.approver.deny(request.key, "dave").await;
    assert_eq!(agent.response(id).await["error"]["code"], -32001);
    assert_eq!(agent.response(again).await["error"]["code"], -32001);
}

#[tokio::test]
async fn two_decisions_racing_are_decided_once() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    for round in 0..5 {
        let rid = format!("race-{round}");
        let id = agent
            .tool_with_id("ha_call_service", light_on("light.kitchen"), &rid)
            .await;
        let request = h.approver.next_request().await.unwrap();
        let (a, b) = tokio::join!(
            h.approver.approve(request.key.clone(), "alice"),
            h.approver.deny(request.key.clone(), "bob"),
        );
        let wins = [a, b].iter().filter(|o| **o == DecideOutcome::Won).count();
        assert_eq!(wins, 1, "{a:?} {b:?}");
        let answer = agent.response(id).await;
        if a == DecideOutcome::Won {
            assert_eq!(answer["result"]["status"], "executed");
        } else {
            assert_eq!(answer["error"]["code"], -32001);
        }
        h.approver.next_resolution().await.unwrap();
    }
    assert!(h.approver.try_next_event().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_button_press_racing_the_timeout_is_decided_once() {
    let h = Harness::start_with(Options {
        approval_timeout_secs: 60,
        ..Options::default()
    })
    .await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.kitchen"), "photo-finish")
        .await;
    let request = h.approver.next_request().await.unwrap();
    let (_, decided) = tokio::join!(
        tokio::time::advance(Duration::from_secs(60)),
        h.approver.approve(request.key.clone(), "alice"),
    );
    let answer = agent.response(id).await;
    let (_, resolution) = h.approver.next_resolution().await.unwrap();
    match decided {
        DecideOutcome::Won => {
            assert_eq!(answer["result"]["status"], "executed");
            assert!(matches!(resolution, Resolution::Approved { .. }));
            assert_eq!(h.home.service_call_count(), 1);
        }
        DecideOutcome::Expired => {
            assert_eq!(answer["error"]["code"], -32002);
            assert!(matches!(resolution, Resolution::Expired { .. }));
            assert_eq!(h.home.service_call_count(), 0);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(h.approver.try_next_event().await.is_none());
}

#[tokio::test]
async fn shutdown_keeps_the_approval_and_approval_after_restart_executes_once() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    agent
        .tool_with_id(
            "ha_call_service",
            light_on("light.bedroom"),
            "across-restart",
        )
        .await;
    agent.notification().await;
    let request = h.approver.next_request().await.unwrap();

    h.shutdown().await;
    let close = agent.closed().await.expect("going away");
    assert_eq!(close.code, CloseCode::Away);
    // Pending, not denied: the approver was not told of any outcome.
    assert!(h.approver.try_next_event().await.is_none());

    h.restart().await;
    assert_eq!(h.gateway().pending_approvals(), 1);
    let record = h
        .gateway()
        .store()
        .get_request("pi", "across-restart")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, RequestState::Pending);
    // The approval message still works after the restart.
    assert_eq!(
        h.approver.approve(request.key.clone(), "alice").await,
        DecideOutcome::Won
    );
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id(
            "ha_call_service",
            light_on("light.bedroom"),
            "across-restart",
        )
        .await;
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    assert_eq!(h.home.service_call_count(), 1);
    assert_eq!(
        h.approver.approve(request.key, "alice").await,
        DecideOutcome::AlreadyDecided
    );
    h.restart().await;
    assert_eq!(h.home.service_call_count(), 1);
    assert_eq!(h.gateway().pending_approvals(), 0);
}

#[tokio::test(start_paused = true)]
async fn timers_are_re_armed_after_a_restart() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "re-armed")
        .await;
    h.approver.next_request().await.unwrap();
    drop(agent);
    h.restart().await;
    // The paused clock runs to the deadline: the re-armed timer expires the request.
    let (request, resolution) = h.approver.next_resolution().await.unwrap();
    assert_eq!(request.key, RequestKey::new("pi", "re-armed"));
    assert!(matches!(resolution, Resolution::Expired { .. }));
    let mut agent = h.agent().await;
    let pending = agent.call("get_pending_results", json!({})).await;
    assert_eq!(pending["result"]["results"][0]["error"]["code"], -32002);
    assert_eq!(
        pending["result"]["results"][0]["result"]["status"],
        "denied"
    );
}

#[tokio::test]
async fn a_request_found_executing_at_start_up_is_failed_not_re_run() {
    use agent_gate_gateway::store::{NewRequest, Store, Timestamp, Transition};

    let mut h = Harness::start().await;
    h.shutdown().await;
    {
        let store = Store::open(h.db_path()).await.unwrap();
        let expires = Timestamp::now().saturating_add(Duration::from_secs(600));
        store
            .insert_request(NewRequest::pending(
                "pi",
                "was-running",
                "ha_call_service",
                light_on("light.bedroom"),
                "ha_call_service(light.turn_on, light.bedroom)",
                expires,
            ))
            .await
            .unwrap();
        assert!(
            store
                .transition(Transition::approve("pi", "was-running", "alice"))
                .await
                .unwrap()
        );
        assert!(
            store
                .transition(Transition::start("pi", "was-running"))
                .await
                .unwrap()
        );
        store.close().await.unwrap();
    }
    h.gateway = Some(h.launch().await.unwrap());
    let (request, resolution) = h.approver.next_resolution().await.unwrap();
    assert_eq!(request.key, RequestKey::new("pi", "was-running"));
    assert!(matches!(resolution, Resolution::Cancelled { .. }));
    assert_eq!(h.home.service_call_count(), 0);
    let mut agent = h.agent().await;
    let pending = agent.call("get_pending_results", json!({})).await;
    insta::assert_json_snapshot!("executing_at_start_up", pending);
}

#[tokio::test]
async fn approvers_see_every_outcome_kind() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "o1")
        .await;
    let request = h.approver.next_request().await.unwrap();
    h.approver.deny(request.key, "erin").await;
    let event = h.approver.next_event().await.unwrap();
    let ApproverEvent::Resolved(_, resolution) = event else {
        panic!("expected a resolution, got {event:?}");
    };
    insta::assert_json_snapshot!(
        "resolution_denied",
        redact(serde_json::to_value(&resolution).unwrap())
    );
}
