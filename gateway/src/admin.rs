//! The HTTP side's admin endpoint: `POST /admin/reload` re-reads the agents of `config.yaml`
//! and `permissions.yaml` (as SIGHUP does; see [`crate::engine::ReloadReport`]). It is what
//! `agent-gate reload` calls.
//!
//! It needs `gateway.admin_token` in `config.yaml`, presented as `Authorization: Bearer
//! <token>` and compared by SHA-256 digest in constant time. Without a configured token the
//! endpoint answers 404 saying how to turn it on. A wrong token is 401 and counts against the
//! client address's authentication throttle (the agents' one); a throttled address gets 429.
//!
//! Answers (JSON): 200 `{"reloaded": true, ...the report}`; 422 `{"reloaded": false,
//! "error": ..., "problems": [...]}` when a file is invalid (nothing changed); 503 while the
//! gateway stops.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::config::TokenDigest;
use crate::engine::{Engine, ReloadError};

/// The path of the reload endpoint.
pub const RELOAD_PATH: &str = "/admin/reload";

#[derive(Clone)]
struct Admin {
    engine: Arc<Engine>,
    /// The digest of `gateway.admin_token`, if set.
    token: Option<TokenDigest>,
}

/// The admin routes, for the HTTP side.
pub(crate) fn router(engine: Arc<Engine>) -> Router {
    let token = engine
        .config
        .gateway
        .admin_token
        .as_ref()
        .map(|t| TokenDigest::of(t.expose()));
    Router::new()
        .route(RELOAD_PATH, post(reload))
        .with_state(Admin { engine, token })
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn reload(State(admin): State<Admin>, request: Request) -> Response {
    let Some(expected) = &admin.token else {
        return answer(
            StatusCode::NOT_FOUND,
            json!({"error": "the admin endpoint is off: set gateway.admin_token in config.yaml (e.g. \"${AGENT_GATE_ADMIN_TOKEN}\") and restart the gateway; until then, send SIGHUP to reload"}),
        );
    };
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = ip
        && let Err(retry) = admin.engine.auth_throttle.check(ip)
    {
        let mut response = answer(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": "too many failed authentications from this address; wait and retry"}),
        );
        if let Ok(value) = HeaderValue::from_str(&retry.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let presented = bearer(&request).map(TokenDigest::of);
    let valid = presented.is_some_and(|p| bool::from(p.ct_eq(expected)));
    if !valid {
        if let Some(ip) = ip {
            admin.engine.auth_throttle.record_failure(ip);
        }
        tracing::warn!(peer = ?ip, "admin request without a valid admin token");
        let mut response = answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or wrong admin token: send Authorization: Bearer <gateway.admin_token of the gateway's config.yaml>"}),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"agent-gate admin\""),
        );
        return response;
    }
    match admin.engine.reload("admin").await {
        Ok(report) => {
            let mut body = json!({"reloaded": true});
            if let (Some(body), serde_json::Value::Object(report)) =
                (body.as_object_mut(), json!(report))
            {
                body.extend(report);
            }
            answer(StatusCode::OK, body)
        }
        Err(error @ ReloadError::Stopping) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"reloaded": false, "error": error.to_string()}),
        ),
        Err(error) => answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "reloaded": false,
                "error": "refused: the previous agents and permissions stay in force",
                "problems": error.problems(),
            }),
        ),
    }
}
