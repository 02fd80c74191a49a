//! Grants ("allow this for a while") over a real WebSocket and a real SQLite file: bound to
//! the agent and the exact signatures of the approved call, never broader; a deny rule still
//! wins; identical requests already waiting are approved with the grant; uses are counted;
//! revocation, expiry and a restart with a live grant.

#[path = "server_support/mod.rs"]
mod support;

use std::time::Duration;

use agent_gate_gateway::approvals::DecideOutcome;
use agent_gate_gateway::store::{AuditQuery, Grant, Timestamp};
use serde_json::{Value, json};
use support::{Harness, LAPTOP_TOKEN, Options};

const PERMISSIONS: &str = r#"
rules:
  - pattern: "ha_call_service(lock.*)"
    action: deny
    description: "Locks are never operated by agents"
  - pattern: "ha_call_service(*, lock.*)"
    action: deny
    description: "Locks are never operated by agents"
defaults:
  - pattern: "ha_get_*"
    action: allow
  - pattern: "*"
    action: ask
"#;

fn call(service: &str, entity: Value) -> Value {
    json!({"domain": "light", "service": service, "entity_id": entity})
}

/// The grants in force now.
async fn live_grants(h: &Harness) -> Vec<Grant> {
    h.gateway()
        .store()
        .live_grants(Timestamp::now())
        .await
        .unwrap()
}

async fn harness() -> Harness {
    Harness::start_with(Options {
        permissions: Some(PERMISSIONS.to_owned()),
        ..Options::default()
    })
    .await
}

/// Sends the call and grants it for `duration` when the human is asked.
async fn ask_and_grant(
    h: &Harness,
    agent: &mut support::Client,
    args: Value,
    rid: &str,
    duration: Duration,
) {
    let id = agent.tool_with_id("ha_call_service", args, rid).await;
    let asked = h.approver.next_request().await.unwrap();
    assert_eq!(asked.key.request_id, rid);
    assert_eq!(
        h.approver.allow_for(asked.key, "alice", duration).await,
        DecideOutcome::Won
    );
    let answer = agent.response(id).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
}

/// The call runs at once, allowed by a grant (nobody is asked).
async fn runs_under_a_grant(h: &Harness, agent: &mut support::Client, args: Value, rid: &str) {
    let answer = agent.tool_with_id("ha_call_service", args, rid).await;
    let answer = agent.response(answer).await;
    assert_eq!(answer["result"]["status"], "executed", "{rid}: {answer}");
    let record = h
        .gateway()
        .store()
        .get_request("pi", rid)
        .await
        .unwrap()
        .unwrap();
    assert!(
        record
            .resolved_by
            .as_deref()
            .is_some_and(|by| by.starts_with("grant:")),
        "{rid}: {record:?}"
    );
}

/// The call waits for a human; the human denies it to clean up.
async fn asks(h: &Harness, agent: &mut support::Client, args: Value, rid: &str) {
    let id = agent.tool_with_id("ha_call_service", args, rid).await;
    let asked = h.approver.next_request().await.unwrap();
    assert_eq!(asked.key.request_id, rid, "{rid} should ask");
    h.approver.deny(asked.key, "alice").await;
    let answer = agent.response(id).await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_allows_exactly_the_same_call_for_the_agent_and_nothing_broader() {
    let h = harness().await;
    let mut pi = h.agent().await;
    let kitchen = || call("turn_on", json!("light.kitchen"));
    ask_and_grant(&h, &mut pi, kitchen(), "g-1", Duration::from_secs(600)).await;
    runs_under_a_grant(&h, &mut pi, kitchen(), "g-2").await;
    // Other data, same signature: allowed too (the grant is the signature, not the data).
    runs_under_a_grant(
        &h,
        &mut pi,
        json!({"domain": "light", "service": "turn_on", "entity_id": "light.kitchen", "data": {"brightness": 20}}),
        "g-3",
    )
    .await;
    // Another entity, another service, one more entity: asked.
    asks(&h, &mut pi, call("turn_on", json!("light.bedroom")), "g-4").await;
    asks(&h, &mut pi, call("turn_off", json!("light.kitchen")), "g-5").await;
    asks(
        &h,
        &mut pi,
        call("turn_on", json!(["light.kitchen", "light.bedroom"])),
        "g-6",
    )
    .await;
    // A deny rule wins over anything a grant covers.
    let id = pi
        .tool_with_id(
            "ha_call_service",
            call("turn_on", json!(["light.kitchen", "lock.front_door"])),
            "g-7",
        )
        .await;
    assert_eq!(pi.response(id).await["error"]["code"], -32003);
    // Another agent does not get it.
    let mut laptop = h.agent_with(LAPTOP_TOKEN).await;
    let id = laptop
        .tool_with_id("ha_call_service", kitchen(), "g-8")
        .await;
    let asked = h.approver.next_request().await.unwrap();
    assert_eq!(asked.key.agent_id, "laptop");
    h.approver.deny(asked.key, "alice").await;
    assert_eq!(laptop.response(id).await["error"]["code"], -32001);

    // Listed with its uses; created and used in the audit log.
    let grants = live_grants(&h).await;
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].agent_id, "pi");
    assert_eq!(grants[0].uses, 2);
    assert_eq!(grants[0].created_by, "alice");
    assert_eq!(
        grants[0].scope,
        "ha_call_service(light.turn_on, light.kitchen)"
    );
    let audit = h
        .gateway()
        .store()
        .audit_page(AuditQuery::new())
        .await
        .unwrap();
    let kinds: Vec<String> = audit.iter().map(|a| a.kind.to_string()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "grant_created").count(), 1);
    assert_eq!(kinds.iter().filter(|k| *k == "grant_used").count(), 2);
    assert_eq!(h.home.service_call_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_waiting_are_approved_with_the_grant() {
    let h = harness().await;
    let mut pi = h.agent().await;
    let kitchen = || call("turn_on", json!("light.kitchen"));
    let first = pi.tool_with_id("ha_call_service", kitchen(), "w-1").await;
    let second = pi.tool_with_id("ha_call_service", kitchen(), "w-2").await;
    let other = pi
        .tool_with_id(
            "ha_call_service",
            call("turn_on", json!("light.bedroom")),
            "w-3",
        )
        .await;
    let mut asked = Vec::new();
    for _ in 0..3 {
        asked.push(h.approver.next_request().await.unwrap());
    }
    let w1 = asked
        .iter()
        .find(|r| r.key.request_id == "w-1")
        .unwrap()
        .key
        .clone();
    h.approver
        .allow_for(w1, "alice", Duration::from_secs(600))
        .await;
    assert_eq!(pi.response(first).await["result"]["status"], "executed");
    let answer = pi.response(second).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    let record = h
        .gateway()
        .store()
        .get_request("pi", "w-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.resolved_by.as_deref(), Some("grant:1"));
    // The other call still waits.
    let w3 = h
        .gateway()
        .store()
        .get_request("pi", "w-3")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w3.state.as_str(), "pending");
    let key = asked
        .iter()
        .find(|r| r.key.request_id == "w-3")
        .unwrap()
        .key
        .clone();
    h.approver.deny(key, "alice").await;
    assert_eq!(pi.response(other).await["error"]["code"], -32001);
    assert_eq!(h.home.service_call_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_expire_are_revoked_and_survive_a_restart() {
    let mut h = harness().await;
    let mut pi = h.agent().await;
    let kitchen = || call("turn_on", json!("light.kitchen"));
    let bedroom = || call("turn_on", json!("light.bedroom"));
    ask_and_grant(&h, &mut pi, kitchen(), "e-1", Duration::from_secs(1)).await;
    ask_and_grant(&h, &mut pi, bedroom(), "e-2", Duration::from_secs(600)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    asks(&h, &mut pi, kitchen(), "e-3").await;

    // A restart keeps the live one.
    drop(pi);
    h.restart().await;
    let mut pi = h.agent().await;
    runs_under_a_grant(&h, &mut pi, bedroom(), "e-4").await;

    // Revoked: asked again; revoking twice says so.
    let store = h.gateway().store();
    let grant = store.live_grants(Timestamp::now()).await.unwrap();
    assert_eq!(grant.len(), 1);
    let audit = agent_gate_gateway::store::AuditEntry::new(
        "pi",
        agent_gate_gateway::store::AuditKind::Other("grant_revoked".to_owned()),
    )
    .actor("web:alice");
    assert!(
        store
            .revoke_grant(grant[0].id, "web:alice", audit.clone())
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_grant(grant[0].id, "web:alice", audit)
            .await
            .unwrap()
    );
    asks(&h, &mut pi, bedroom(), "e-5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_allow_is_a_grant_without_expiry_for_exactly_that_call() {
    let mut h = harness().await;
    let mut pi = h.agent().await;
    let kitchen = || call("turn_on", json!("light.kitchen"));
    let id = pi.tool_with_id("ha_call_service", kitchen(), "a-1").await;
    let asked = h.approver.next_request().await.unwrap();
    assert_eq!(
        h.approver.always_allow(asked.key, "alice").await,
        DecideOutcome::Won
    );
    assert_eq!(pi.response(id).await["result"]["status"], "executed");
    let grants = live_grants(&h).await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].expires_at, None);
    // Survives a restart; still exactly that call.
    drop(pi);
    h.restart().await;
    let mut pi = h.agent().await;
    runs_under_a_grant(&h, &mut pi, kitchen(), "a-2").await;
    asks(&h, &mut pi, call("turn_off", json!("light.kitchen")), "a-3").await;
    let id = pi
        .tool_with_id(
            "ha_call_service",
            call("turn_on", json!(["light.kitchen", "lock.front_door"])),
            "a-4",
        )
        .await;
    assert_eq!(pi.response(id).await["error"]["code"], -32003);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_rule_for_the_granted_call_itself_wins_over_the_grant() {
    let h = harness().await;
    let mut pi = h.agent().await;
    let kitchen = || call("turn_on", json!("light.kitchen"));
    ask_and_grant(&h, &mut pi, kitchen(), "d-1", Duration::from_secs(600)).await;
    runs_under_a_grant(&h, &mut pi, kitchen(), "d-2").await;

    // A reload denies exactly the signature the grant covers.
    let denying = format!(
        "rules:\n  - pattern: \"ha_call_service(*, light.kitchen)\"\n    action: deny\n    description: \"Not the kitchen\"\n{}",
        PERMISSIONS.trim_start().trim_start_matches("rules:\n")
    );
    std::fs::write(h.dir.path().join("permissions.yaml"), denying).unwrap();
    h.gateway().reload("test").await.expect("valid permissions");
    let id = pi.tool_with_id("ha_call_service", kitchen(), "d-3").await;
    let answer = pi.response(id).await;
    assert_eq!(answer["error"]["code"], -32003, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Not the kitchen")),
        "{answer}"
    );
    let grants = live_grants(&h).await;
    assert_eq!(grants.len(), 1, "the grant stays, unused: {grants:?}");
    assert_eq!(grants[0].uses, 1);

    // The rule removed again, the grant applies again.
    std::fs::write(h.dir.path().join("permissions.yaml"), PERMISSIONS).unwrap();
    h.gateway().reload("test").await.expect("valid permissions");
    runs_under_a_grant(&h, &mut pi, kitchen(), "d-4").await;
}
