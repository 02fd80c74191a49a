//! The HTTP side's health endpoint: `GET /healthz` on `gateway.health_host:health_port`.
//!
//! The answer is JSON:
//!
//! ```json
//! {"status": "ok", "store": {"ok": true},
//!  "approvers": [{"name": "telegram", "ok": true}],
//!  "services": [{"name": "homeassistant", "ok": false, "detail": "unhealthy: ..."}],
//!  "agents_connected": 1, "pending_approvals": 0}
//! ```
//!
//! The status code is 200 when the gateway can do its job (the store answers and every
//! approver is healthy) and 503 otherwise. An unreachable service makes the status
//! `degraded` but keeps 200: restarting the gateway would not bring Home Assistant back, and
//! calls to it fail with -32004 until it returns.

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
    let healthy = store_ok && approvers_ok;
    let status = match (healthy, services_ok) {
        (false, _) => "unhealthy",
        (true, false) => "degraded",
        (true, true) => "ok",
    };
    let body = json!({
        "status": status,
        "store": store,
        "approvers": approvers,
        "services": services,
        "agents_connected": front.connected_agents(),
        "pending_approvals": engine.approvals.pending_count(),
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body)
}
