//! The request state machine on real SQLite files: every allowed transition wins exactly once,
//! every other one is refused, races have exactly one winner, and start-up recovery never re-runs
//! an interrupted execution.

use std::collections::BTreeSet;

use agent_gate_gateway::store::{
    AuditEntry, AuditKind, AuditQuery, Decision, InsertOutcome, NewRequest,
    RESTART_DURING_EXECUTION, RequestState, Store, StoreError, Timestamp, Transition,
};
use serde_json::json;

const AGENT: &str = "pi";
const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const LATER: Timestamp = Timestamp::from_millis(1_800_000_900_000);

async fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("gate.db")).await.unwrap();
    (dir, store)
}

fn args(id: &str) -> serde_json::Value {
    json!({"entity_id": format!("light.{id}")})
}

async fn insert(store: &Store, request: NewRequest) {
    assert_eq!(
        store.insert_request(request).await.unwrap(),
        InsertOutcome::Inserted
    );
}

/// Puts a new request `id` into `state` by walking the state machine from its start.
async fn request_in_state(store: &Store, id: &str, state: RequestState) {
    let pending = || NewRequest::pending(AGENT, id, "ha_get_state", args(id), "sig", LATER);
    let allowed = || NewRequest::allowed(AGENT, id, "ha_get_state", args(id), "sig");
    match state {
        RequestState::Pending => insert(store, pending()).await,
        RequestState::Approved => {
            insert(store, pending()).await;
            assert!(
                store
                    .transition(Transition::approve(AGENT, id, "tg:1"))
                    .await
                    .unwrap()
            );
        }
        RequestState::Executing => insert(store, allowed()).await,
        RequestState::Executed => {
            insert(store, allowed()).await;
            assert!(
                store
                    .transition(Transition::executed(AGENT, id, json!({"ok": true})))
                    .await
                    .unwrap()
            );
        }
        RequestState::Failed => {
            insert(store, allowed()).await;
            assert!(
                store
                    .transition(Transition::failed(AGENT, id, -32004, "boom"))
                    .await
                    .unwrap()
            );
        }
        RequestState::Denied => {
            insert(
                store,
                NewRequest::denied(AGENT, id, "ha_get_state", args(id), "sig"),
            )
            .await
        }
        RequestState::Expired => {
            insert(store, pending()).await;
            assert!(
                store
                    .transition(Transition::expire(AGENT, id))
                    .await
                    .unwrap()
            );
        }
        RequestState::Cancelled => {
            insert(store, pending()).await;
            assert!(
                store
                    .transition(Transition::cancel(AGENT, id, "agent:pi"))
                    .await
                    .unwrap()
            );
        }
    }
    let record = store.get_request(AGENT, id).await.unwrap().unwrap();
    assert_eq!(record.state, state, "setting up {id}");
}

#[tokio::test]
async fn every_allowed_transition_wins_once_and_every_other_is_refused() {
    let (_dir, store) = open().await;
    let mut allowed = BTreeSet::new();
    for from in RequestState::ALL {
        for to in RequestState::ALL {
            let id = format!("{from}-{to}");
            let transition = Transition::new(AGENT, id.as_str(), from, to);
            if from.can_transition_to(to) {
                allowed.insert((from.as_str(), to.as_str()));
                request_in_state(&store, &id, from).await;
                assert!(
                    store.transition(transition.clone()).await.unwrap(),
                    "{from} → {to} should win"
                );
                assert!(
                    !store.transition(transition).await.unwrap(),
                    "{from} → {to} must not win twice"
                );
                let record = store
                    .get_request(AGENT, id.as_str())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(record.state, to);
            } else {
                match store.transition(transition).await {
                    Err(StoreError::InvalidTransition { from: f, to: t }) => {
                        assert_eq!((f, t), (from, to));
                    }
                    other => panic!("{from} → {to} must be refused, got {other:?}"),
                }
            }
        }
    }
    // The state machine of docs/ARCHITECTURE.md "States", and nothing else.
    let expected: BTreeSet<_> = [
        ("pending", "approved"),
        ("pending", "denied"),
        ("pending", "expired"),
        ("pending", "cancelled"),
        ("approved", "executing"),
        ("approved", "failed"),
        ("executing", "executed"),
        ("executing", "failed"),
    ]
    .into_iter()
    .collect();
    assert_eq!(allowed, expected);
}

#[tokio::test]
async fn a_transition_only_wins_from_the_current_state() {
    let (_dir, store) = open().await;
    request_in_state(&store, "r1", RequestState::Executing).await;
    // Approving an allowed (executing) request, or finishing an unknown one, changes nothing.
    assert!(
        !store
            .transition(Transition::approve(AGENT, "r1", "tg:1"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .transition(Transition::start(AGENT, "r1"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .transition(Transition::executed(AGENT, "missing", json!({})))
            .await
            .unwrap()
    );
    // Another agent's request with the same id is a different request.
    assert!(
        !store
            .transition(Transition::executed("other-agent", "r1", json!({})))
            .await
            .unwrap()
    );
    let record = store.get_request(AGENT, "r1").await.unwrap().unwrap();
    assert_eq!(record.state, RequestState::Executing);
    assert_eq!(record.result, None);
}

#[tokio::test]
async fn initial_states_follow_the_decision() {
    let (_dir, store) = open().await;
    insert(
        &store,
        NewRequest::allowed(AGENT, "a", "t", json!({}), "t()")
            .rule("allow t")
            .created_at(NOW),
    )
    .await;
    insert(
        &store,
        NewRequest::denied(AGENT, "d", "t", json!({}), "t()").created_at(NOW),
    )
    .await;
    insert(
        &store,
        NewRequest::pending(AGENT, "p", "t", json!({}), "t()", LATER).created_at(NOW),
    )
    .await;
    let a = store.get_request(AGENT, "a").await.unwrap().unwrap();
    assert_eq!(
        (a.decision, a.state),
        (Decision::Allow, RequestState::Executing)
    );
    assert_eq!(a.resolved_by.as_deref(), Some("policy"));
    assert_eq!(a.resolved_at, Some(NOW));
    assert_eq!(a.rule.as_deref(), Some("allow t"));
    let d = store.get_request(AGENT, "d").await.unwrap().unwrap();
    assert_eq!(
        (d.decision, d.state),
        (Decision::Deny, RequestState::Denied)
    );
    assert_eq!(d.error.map(|e| e.code), Some(-32003));
    let p = store.get_request(AGENT, "p").await.unwrap().unwrap();
    assert_eq!(
        (p.decision, p.state),
        (Decision::Ask, RequestState::Pending)
    );
    assert_eq!(p.expires_at, Some(LATER));
    assert_eq!(p.resolved_at, None);
}

#[tokio::test]
async fn transitions_record_who_when_and_the_outcome() {
    let (_dir, store) = open().await;
    request_in_state(&store, "r1", RequestState::Pending).await;
    let t1 = Timestamp::from_millis(NOW.as_millis() + 5);
    assert!(
        store
            .transition(
                Transition::approve(AGENT, "r1", "telegram:42")
                    .at(t1)
                    .audit(
                        AuditEntry::new(AGENT, AuditKind::Approved)
                            .request_id("r1")
                            .actor("telegram:42")
                    ),
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .transition(Transition::start(AGENT, "r1").at(t1))
            .await
            .unwrap()
    );
    let t2 = Timestamp::from_millis(NOW.as_millis() + 9);
    assert!(
        store
            .transition(Transition::executed(AGENT, "r1", json!({"state": "on"})).at(t2))
            .await
            .unwrap()
    );
    let record = store.get_request(AGENT, "r1").await.unwrap().unwrap();
    assert_eq!(record.state, RequestState::Executed);
    assert_eq!(record.resolved_by.as_deref(), Some("telegram:42"));
    assert_eq!(record.resolved_at, Some(t1));
    assert_eq!(record.updated_at, t2);
    assert_eq!(record.result, Some(json!({"state": "on"})));
    assert_eq!(record.error, None);
    assert!(!record.delivered);

    // A losing transition does not write its audit entry.
    assert!(
        !store
            .transition(
                Transition::deny(AGENT, "r1", "telegram:43")
                    .audit(AuditEntry::new(AGENT, AuditKind::Denied).request_id("r1")),
            )
            .await
            .unwrap()
    );
    let audit = store
        .audit_page(AuditQuery::new().request_id("r1"))
        .await
        .unwrap();
    let kinds: Vec<_> = audit.iter().map(|r| r.kind.clone()).collect();
    assert_eq!(kinds, vec![AuditKind::Approved]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_decisions_have_exactly_one_winner() {
    let (_dir, store) = open().await;
    for round in 0..10 {
        let id = format!("race-{round}");
        request_in_state(&store, &id, RequestState::Pending).await;
        let mut tasks = Vec::new();
        for attempt in 0..50 {
            let store = store.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let (transition, target) = match attempt % 3 {
                    0 => (
                        Transition::approve(AGENT, id.as_str(), format!("tg:{attempt}")),
                        RequestState::Approved,
                    ),
                    1 => (
                        Transition::deny(AGENT, id.as_str(), format!("tg:{attempt}")),
                        RequestState::Denied,
                    ),
                    _ => (
                        Transition::expire(AGENT, id.as_str()),
                        RequestState::Expired,
                    ),
                };
                let won = store
                    .transition(
                        transition.audit(
                            AuditEntry::new(AGENT, AuditKind::Other(format!("attempt-{attempt}")))
                                .request_id(id.as_str()),
                        ),
                    )
                    .await
                    .unwrap();
                (won, attempt, target)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let (won, attempt, target) = task.await.unwrap();
            if won {
                winners.push((attempt, target));
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let (attempt, target) = winners[0];
        let record = store
            .get_request(AGENT, id.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.state, target);
        if target != RequestState::Expired {
            assert_eq!(record.resolved_by, Some(format!("tg:{attempt}")));
        }
        // Only the winner's audit entry was committed.
        let audit = store
            .audit_page(AuditQuery::new().request_id(id.as_str()))
            .await
            .unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(
            audit[0].kind,
            AuditKind::Other(format!("attempt-{attempt}"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn races_between_two_stores_on_one_file_have_one_winner() {
    // Two independent Store instances (two writer connections, as two processes would have):
    // only SQLite's conditional UPDATE can arbitrate.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.db");
    let first = Store::open(&path).await.unwrap();
    let second = Store::open(&path).await.unwrap();
    for round in 0..5 {
        let id = format!("race-{round}");
        request_in_state(&first, &id, RequestState::Pending).await;
        let mut tasks = Vec::new();
        for attempt in 0..50 {
            let store = if attempt % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let transition = match attempt % 3 {
                    0 => Transition::approve(AGENT, id.as_str(), format!("tg:{attempt}")),
                    1 => Transition::deny(AGENT, id.as_str(), format!("tg:{attempt}")),
                    _ => Transition::expire(AGENT, id.as_str()),
                };
                store.transition(transition).await.unwrap()
            }));
        }
        let mut wins = 0;
        for task in tasks {
            wins += usize::from(task.await.unwrap());
        }
        assert_eq!(wins, 1, "round {round}");
        let record = second
            .get_request(AGENT, id.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_ne!(record.state, RequestState::Pending);
    }
    first.close().await.unwrap();
    second.close().await.unwrap();
}

#[tokio::test]
async fn recovery_fails_interrupted_executions_and_reports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gate.db");
    let store = Store::open(&path).await.unwrap();
    request_in_state(&store, "running", RequestState::Executing).await;
    request_in_state(&store, "approved", RequestState::Approved).await;
    request_in_state(&store, "done", RequestState::Executed).await;
    insert(
        &store,
        NewRequest::pending(AGENT, "waiting", "t", json!({}), "t()", LATER),
    )
    .await;
    insert(
        &store,
        NewRequest::pending(AGENT, "stale", "t", json!({}), "t()", NOW),
    )
    .await;
    // Simulated crash: the handle is dropped without close.
    drop(store);

    let store = Store::open(&path).await.unwrap();
    let at = Timestamp::from_millis(NOW.as_millis() + 1);
    let report = store.recover_on_startup_at(at).await.unwrap();
    let ids = |records: &[agent_gate_gateway::store::RequestRecord]| {
        records
            .iter()
            .map(|r| r.request_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&report.failed), vec!["running"]);
    assert_eq!(ids(&report.approved), vec!["approved"]);
    assert_eq!(ids(&report.pending), vec!["waiting"]);
    assert_eq!(ids(&report.expired_pending), vec!["stale"]);

    let running = store.get_request(AGENT, "running").await.unwrap().unwrap();
    assert_eq!(running.state, RequestState::Failed);
    let error = running.error.unwrap();
    assert_eq!(error.code, -32004);
    assert_eq!(error.message, RESTART_DURING_EXECUTION);
    assert_eq!(report.failed[0].state, RequestState::Failed);
    assert!(!report.failed[0].delivered);
    // Its outcome waits for the agent, beside the one it had not received before the crash.
    let waiting = store.undelivered(AGENT).await.unwrap();
    assert_eq!(ids(&waiting), vec!["done", "running"]);
    // It can never be executed again.
    assert!(
        !store
            .transition(Transition::executed(AGENT, "running", json!({})))
            .await
            .unwrap()
    );
    let audit = store
        .audit_page(
            AuditQuery::new()
                .request_id("running")
                .kind(AuditKind::Failed),
        )
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor.as_deref(), Some("gateway"));
    assert_eq!(audit[0].at, at);

    // A second recovery finds nothing more to fail.
    let again = store.recover_on_startup_at(at).await.unwrap();
    assert!(again.failed.is_empty());
    assert_eq!(ids(&again.pending), vec!["waiting"]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn same_id_attaches_or_conflicts() {
    let (_dir, store) = open().await;
    let first = NewRequest::pending(
        AGENT,
        "r1",
        "ha_call_service",
        json!({"domain": "light", "service": "turn_on", "data": {"a": 1, "b": [1, 2]}}),
        "sig",
        LATER,
    )
    .audit(AuditEntry::new(AGENT, AuditKind::Decision).request_id("r1"));
    insert(&store, first).await;

    // Same call with the keys in another order: a retry, attached to the stored request.
    let retry = NewRequest::pending(
        AGENT,
        "r1",
        "ha_call_service",
        json!({"data": {"b": [1, 2], "a": 1}, "service": "turn_on", "domain": "light"}),
        "sig",
        LATER,
    )
    .audit(AuditEntry::new(AGENT, AuditKind::Decision).request_id("r1"));
    match store.insert_request(retry).await.unwrap() {
        InsertOutcome::Duplicate(existing) => assert_eq!(existing.state, RequestState::Pending),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // Different arguments, or a different tool, under the same id: a conflict.
    let changed_args = NewRequest::pending(
        AGENT,
        "r1",
        "ha_call_service",
        json!({"domain": "light", "service": "turn_off", "data": {"a": 1, "b": [1, 2]}}),
        "sig",
        LATER,
    );
    assert!(matches!(
        store.insert_request(changed_args).await.unwrap(),
        InsertOutcome::Conflict(_)
    ));
    let changed_tool = NewRequest::pending(
        AGENT,
        "r1",
        "ha_fire_event",
        json!({"domain": "light", "service": "turn_on", "data": {"a": 1, "b": [1, 2]}}),
        "sig",
        LATER,
    );
    assert!(matches!(
        store.insert_request(changed_tool).await.unwrap(),
        InsertOutcome::Conflict(_)
    ));
    // The same id for another agent is a new request.
    insert(
        &store,
        NewRequest::pending("other", "r1", "ha_fire_event", json!({}), "sig", LATER),
    )
    .await;
    // Only the first insert's audit entry exists.
    let audit = store
        .audit_page(AuditQuery::new().agent(AGENT).request_id("r1"))
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
}

#[tokio::test]
async fn the_args_digest_is_sha256_of_tool_and_canonical_json() {
    // Pinned: stored digests must stay comparable across versions.
    let (_dir, store) = open().await;
    insert(
        &store,
        NewRequest::allowed(
            AGENT,
            "r1",
            "ha_call_service",
            json!({"domain": "light", "data": {"b": [true, null], "a": 1}}),
            "sig",
        ),
    )
    .await;
    let record = store.get_request(AGENT, "r1").await.unwrap().unwrap();
    // sha256(b"ha_call_service\0{\"data\":{\"a\":1,\"b\":[true,null]},\"domain\":\"light\"}")
    assert_eq!(
        record.args_digest,
        "08416255281f9bd2cd113df229e08eb43052b1596aa6ff2d129e100447698b9a"
    );
}
