//! Authentication of `/mcp` requests: `Authorization: Bearer <agent token>` (the same tokens as
//! the WebSocket `auth`) → [`AgentId`]. A missing or wrong token is answered 401 with
//! `WWW-Authenticate: Bearer`; failures count against the client address's throttle (the one
//! the WebSocket front uses), and a throttled address is answered 429 with `Retry-After`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::Notify;

use super::AgentId;
use crate::engine::Engine;

/// The client address of the connection a request came on (set by the listener).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

/// Set once a request of the connection authenticated: the listener then stops counting the
/// connection as unauthenticated.
#[derive(Debug, Default)]
pub(crate) struct Authenticated {
    done: AtomicBool,
    notify: Notify,
}

impl Authenticated {
    fn set(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }

    /// Whether a request of the connection authenticated.
    pub(crate) fn is_set(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Resolves once a request of the connection authenticated.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
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

fn refusal(status: StatusCode, message: &str) -> Response {
    let body = axum::Json(json!({"error": message}));
    let mut response = (status, body).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"agent-gate\", error=\"invalid_token\", \
                 error_description=\"send the agent's token: Authorization: Bearer <token>\"",
            ),
        );
    }
    response
}

/// The middleware: resolves the agent or refuses the request.
pub(super) async fn authenticate(
    State(engine): State<Arc<Engine>>,
    mut request: Request,
    next: Next,
) -> Response {
    let ip = request.extensions().get::<PeerAddr>().map(|p| p.0.ip());
    if let Some(ip) = ip
        && let Err(retry) = engine.auth_throttle.check(ip)
    {
        let mut response = refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed authentications from this address; wait and retry",
        );
        if let Ok(value) = HeaderValue::from_str(&retry.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    // The agents in force now: a reload's new tokens work at once, removed ones get 401.
    let agent = bearer(&request).and_then(|token| engine.agent_by_token(token));
    let Some(agent) = agent else {
        if let Some(ip) = ip {
            engine.auth_throttle.record_failure(ip);
        }
        tracing::info!(peer = ?ip, "MCP request without a valid agent token");
        return refusal(
            StatusCode::UNAUTHORIZED,
            "missing or invalid agent token: send Authorization: Bearer <the agent's token from \
             the gateway's config.yaml>",
        );
    };
    let id = AgentId(Arc::from(agent.0.as_str()));
    if let Some(authenticated) = request.extensions().get::<Arc<Authenticated>>() {
        authenticated.set();
    }
    request.extensions_mut().insert(id);
    next.run(request).await
}
