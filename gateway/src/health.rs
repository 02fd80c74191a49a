//! The HTTP side's health endpoint: `GET /healthz` on `gateway.health_host:health_port`.
//!
//! The answer is JSON in two forms at once, upstream's and ours:
//!
//! ```json
//! {"status": "healthy",
//!  "checks": {"database": true, "telegram": true, "approvers": {"telegram": true},
//!             "services": {"homeassistant": false}, "config": true},
//!  "condition": "degraded", "store": {"ok": true},
//!  "approvers": [{"name": "telegram", "ok": true}],
//!  "services": [{"name": "homeassistant", "ok": false, "detail": "unhealthy: ..."}],
//!  "config": {"ok": true},
//!  "agents_connected": 1, "agent_connections": 2, "pending_approvals": 0}
//! ```
//!
//! - Upstream's form (agentpass): `status` is `healthy` or `unhealthy`, `checks` holds a
//!   boolean per part (`database`; `telegram` when a Telegram approver is configured; and
//!   `services` by name); we add `approvers` by name to `checks`.
//! - Ours: `condition` is `ok`, `degraded` (a service is unreachable) or `unhealthy`, and the
//!   parts come with their details.
//!
//! `config` (and `checks.config`) reports the last reload of agents and permissions (SIGHUP,
//! `agent-gate reload`): `{"ok": true}` before any reload and after one that succeeded;
//! `{"ok": false, "detail": "<every problem>", "problems": [...], "at": "<RFC 3339>"}` after
//! one that was refused, until the next one succeeds. A refused reload makes the condition
//! `degraded` but keeps 200 and `healthy`: the gateway still serves under the previous,
//! valid configuration, and restarting it would refuse to start with the broken file.
//!
//! The status code is 200 when the gateway can do its job (the store answers and every
//! approver is healthy: `status: healthy`) and 503 otherwise, as upstream. An unreachable
//! service makes the condition `degraded` but keeps 200 and `healthy`: restarting the gateway
//! would not bring Home Assistant back, and calls to it fail with -32004 until it returns.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde_json::{Value, json};

use crate::engine::Engine;
use crate::server::Front;

/// What the report reads: the engine (store, approvers, services) and the WebSocket front
/// (connected agents).
type Sources = (Arc<Engine>, Arc<Front>);

/// The `/healthz` route.
pub(crate) fn router(engine: Arc<Engine>, front: Arc<Front>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state((engine, front))
}

async fn healthz(State((engine, front)): State<Sources>) -> impl IntoResponse {
    let (code, body) = report(&engine, &front).await;
    (code, Json(body))
}

/// Runs every check; returns the status code and the JSON body.
pub(crate) async fn report(engine: &Engine, front: &Front) -> (StatusCode, Value) {
    let store = match engine.store.get_request("", "").await {
        Ok(_) => json!({"ok": true}),
        Err(error) => json!({"ok": false, "detail": error.to_string()}),
    };
    let store_ok = store["ok"].as_bool().unwrap_or(false);
    let approver_checks = engine.approvers().iter().map(|approver| async move {
        match approver.health().await {
            Ok(()) => json!({"name": approver.name(), "ok": true}),
            Err(detail) => json!({"name": approver.name(), "ok": false, "detail": detail}),
        }
    });
    let approvers = futures_util::future::join_all(approver_checks).await;
    let approvers_ok = approvers.iter().all(|a| a["ok"].as_bool().unwrap_or(false));
    let services: Vec<Value> = engine
        .executor()
        .health_all()
        .await
        .into_iter()
        .map(|(name, status)| {
            if status.is_healthy() {
                json!({"name": name, "ok": true})
            } else {
                json!({"name": name, "ok": false, "detail": status.to_string()})
            }
        })
        .collect();
    let services_ok = services.iter().all(|s| s["ok"].as_bool().unwrap_or(false));
    let config = match engine.last_reload() {
        Some(last) => match last.error {
            None => json!({"ok": true, "reloaded_at": crate::store::rfc3339(last.at)}),
            Some(problems) => json!({
                "ok": false,
                "detail": format!(
                    "the last reload was refused; the previous agents and permissions stay in force: {}",
                    problems.join("; ")
                ),
                "problems": problems,
                "at": crate::store::rfc3339(last.at),
            }),
        },
        None => json!({"ok": true}),
    };
    let config_ok = config["ok"].as_bool().unwrap_or(false);
    let healthy = store_ok && approvers_ok;
    let condition = match (healthy, services_ok && config_ok) {
        (false, _) => "unhealthy",
        (true, false) => "degraded",
        (true, true) => "ok",
    };
    let by_name = |parts: &[Value]| -> serde_json::Map<String, Value> {
        parts
            .iter()
            .map(|p| {
                let name = p["name"].as_str().unwrap_or_default().to_owned();
                (name, Value::Bool(p["ok"].as_bool().unwrap_or(false)))
            })
            .collect()
    };
    let approver_checks = by_name(&approvers);
    let mut checks = serde_json::Map::new();
    checks.insert("database".to_owned(), Value::Bool(store_ok));
    if let Some(telegram) = approver_checks.get("telegram") {
        checks.insert("telegram".to_owned(), telegram.clone());
    }
    checks.insert("approvers".to_owned(), Value::Object(approver_checks));
    checks.insert("services".to_owned(), Value::Object(by_name(&services)));
    checks.insert("config".to_owned(), Value::Bool(config_ok));
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "checks": checks,
        "condition": condition,
        "store": store,
        "approvers": approvers,
        "services": services,
        "config": config,
        "agents_connected": front.connected_agents(),
        "agent_connections": front.connections(),
        "pending_approvals": engine.approvals.pending_count(),
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body)
}
