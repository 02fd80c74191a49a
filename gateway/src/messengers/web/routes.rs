//! The axum handlers of the approval page and its API: access checks, CSRF and origin checks
//! of POSTs, decisions through the [`crate::approvals::ApprovalHandle`], and the event stream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::auth::{self, CSRF_HEADER, LoginRefusal, SessionInfo};
use super::{BASE_PATH, Inner, page};
use crate::approvals::{DecideOutcome, Verdict};
use crate::store::RequestKey;

pub(super) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route(BASE_PATH, get(show_page))
        .route("/approvals/login", post(login))
        .route("/approvals/logout", post(logout))
        .route("/approvals/decide", post(decide_form))
        .route("/approvals/api/pending", get(api_pending))
        .route("/approvals/api/history", get(api_history))
        .route("/approvals/api/events", get(api_events))
        .route(
            "/approvals/api/{agent}/{request_id}/{verdict}",
            post(api_decide),
        )
        .layer(axum::middleware::map_response(security_headers))
        .with_state(inner)
}

/// Headers every answer of the page carries; HTML answers set their own CSP (with a nonce).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !headers.contains_key(CONTENT_SECURITY_POLICY) {
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    response
}

/// The peer address and headers of a request.
struct Caller {
    peer: Option<SocketAddr>,
    headers: HeaderMap,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            peer: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
            headers: parts.headers.clone(),
        })
    }
}

/// How a request proved it may use the page.
enum Access {
    /// A browser session (login, or a loopback visit when no token is set).
    Session(SessionInfo),
    /// A loopback client without a session (no token configured): may read, not post.
    Loopback,
    /// `Authorization: Bearer <token>`: a script; no cookie, so no CSRF token needed.
    Bearer,
}

/// Why a request was refused; rendered as JSON for the API and as HTML for the page.
struct Refusal {
    status: StatusCode,
    message: &'static str,
}

const REMOTE: Refusal = Refusal {
    status: StatusCode::FORBIDDEN,
    message: "the approval page has no token configured, so it answers only clients on this machine (loopback); set `token:` on the web approver to use it from elsewhere",
};
const NOT_LOOPBACK_HOST: Refusal = Refusal {
    status: StatusCode::FORBIDDEN,
    message: "without a token the approval page answers only under localhost, 127.0.0.1 or [::1]; open it by one of those addresses",
};
const LOGIN_REQUIRED: Refusal = Refusal {
    status: StatusCode::UNAUTHORIZED,
    message: "log in to the approval page first (or send Authorization: Bearer with the approver token)",
};
const WRONG_BEARER: Refusal = Refusal {
    status: StatusCode::UNAUTHORIZED,
    message: "wrong approver token in the Authorization header",
};
const CROSS_ORIGIN: Refusal = Refusal {
    status: StatusCode::FORBIDDEN,
    message: "cross-origin request refused: the Origin (or Referer) must be this page's own address",
};
const BAD_CSRF: Refusal = Refusal {
    status: StatusCode::FORBIDDEN,
    message: "missing or wrong CSRF token; reload the approval page and try again",
};
const NO_SESSION: Refusal = Refusal {
    status: StatusCode::FORBIDDEN,
    message: "no session: open the approval page first, then decide from it",
};

impl Refusal {
    fn json(&self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }

    fn html(&self) -> Response {
        html_response(self.status, |nonce| page::result(nonce, self.message))
    }
}

/// Who may use the page, before any POST-specific check.
fn access(inner: &Inner, caller: &Caller) -> Result<Access, Refusal> {
    match &inner.token {
        None => {
            if !auth::is_loopback_peer(caller.peer) {
                return Err(REMOTE);
            }
            if !auth::is_loopback_host(&caller.headers) {
                return Err(NOT_LOOPBACK_HOST);
            }
            Ok(inner
                .auth
                .session(&caller.headers)
                .map_or(Access::Loopback, Access::Session))
        }
        Some(token) => {
            if let Some(presented) = auth::bearer(&caller.headers) {
                return if auth::token_matches(token, presented) {
                    Ok(Access::Bearer)
                } else {
                    Err(WRONG_BEARER)
                };
            }
            inner
                .auth
                .session(&caller.headers)
                .map(Access::Session)
                .ok_or(LOGIN_REQUIRED)
        }
    }
}

/// The checks of a state-changing request: a browser session needs a same-origin request
/// carrying its CSRF token; a bearer token needs nothing more.
fn check_post(
    inner: &Inner,
    caller: &Caller,
    presented_csrf: Option<&str>,
) -> Result<Access, Refusal> {
    let access = access(inner, caller)?;
    match &access {
        Access::Bearer => {}
        Access::Loopback => return Err(NO_SESSION),
        Access::Session(session) => {
            if !auth::same_origin(&caller.headers) {
                return Err(CROSS_ORIGIN);
            }
            let valid = presented_csrf.is_some_and(|p| auth::same_secret(&session.csrf, p));
            if !valid {
                return Err(BAD_CSRF);
            }
        }
    }
    Ok(access)
}

/// A fresh CSP nonce.
fn nonce() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An HTML answer with a CSP that allows only its own nonce-tagged style and script and
/// requests to this origin.
fn html_response(status: StatusCode, render: impl FnOnce(&str) -> String) -> Response {
    let nonce = nonce();
    let body = render(&nonce);
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, Html(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(CONTENT_SECURITY_POLICY, value);
    }
    response
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

fn see_other(location: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
}

async fn render_page(inner: &Inner, session: &SessionInfo) -> Response {
    let pending = inner.pending().await;
    let history = match inner.history().await {
        Ok(history) => history,
        Err(error) => {
            tracing::error!(%error, "the approval page could not read the history");
            Vec::new()
        }
    };
    let can_log_out = inner.token.is_some();
    html_response(StatusCode::OK, |nonce| {
        page::approvals(
            &pending,
            &history,
            &inner.actor,
            &session.csrf,
            nonce,
            can_log_out,
        )
    })
}

async fn show_page(State(inner): State<Arc<Inner>>, caller: Caller) -> Response {
    match access(&inner, &caller) {
        Ok(Access::Session(session)) => render_page(&inner, &session).await,
        // A first loopback visit, or a script that proved the token: start a session.
        Ok(Access::Loopback | Access::Bearer) => {
            let session = inner.auth.create_session();
            let cookie = inner.auth.session_cookie(&session);
            with_cookie(render_page(&inner, &session).await, &cookie)
        }
        Err(refusal) if refusal.status == StatusCode::UNAUTHORIZED => {
            html_response(StatusCode::UNAUTHORIZED, |nonce| page::login(nonce, None))
        }
        Err(refusal) => refusal.html(),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(
    State(inner): State<Arc<Inner>>,
    caller: Caller,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(token) = &inner.token else {
        // Nothing to log in to: the page relies on loopback.
        return see_other(BASE_PATH);
    };
    if !auth::same_origin(&caller.headers) {
        return CROSS_ORIGIN.html();
    }
    match inner.auth.login(token, &form.token) {
        Ok(()) => {
            let session = inner.auth.create_session();
            tracing::info!(peer = ?caller.peer, actor = %inner.actor, "web approval login");
            with_cookie(see_other(BASE_PATH), &inner.auth.session_cookie(&session))
        }
        Err(LoginRefusal::WrongToken) => {
            tracing::warn!(peer = ?caller.peer, "web approval login with a wrong token");
            html_response(StatusCode::UNAUTHORIZED, |nonce| {
                page::login(nonce, Some("Wrong token."))
            })
        }
        Err(LoginRefusal::Throttled) => {
            tracing::warn!(peer = ?caller.peer, "web approval login refused: too many failed logins");
            html_response(StatusCode::TOO_MANY_REQUESTS, |nonce| {
                page::login(
                    nonce,
                    Some("Too many failed logins; wait a minute and try again."),
                )
            })
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(inner): State<Arc<Inner>>,
    caller: Caller,
    Form(form): Form<CsrfForm>,
) -> Response {
    match check_post(&inner, &caller, Some(&form.csrf)) {
        Ok(Access::Session(session)) => {
            inner.auth.end_session(&session.id);
            with_cookie(see_other(BASE_PATH), &auth::clear_cookie())
        }
        Ok(_) => see_other(BASE_PATH),
        Err(refusal) => refusal.html(),
    }
}

/// The answer to a decision.
struct Decided {
    status: StatusCode,
    outcome: Option<DecideOutcome>,
    message: &'static str,
}

async fn decide(inner: &Inner, agent: String, request_id: String, verdict: &str) -> Decided {
    let verdict = match verdict {
        "allow" => Verdict::Allow,
        "deny" => Verdict::Deny,
        _ => {
            return Decided {
                status: StatusCode::NOT_FOUND,
                outcome: None,
                message: "unknown verdict: use allow or deny",
            };
        }
    };
    let Some(handle) = inner.handle() else {
        return Decided {
            status: StatusCode::SERVICE_UNAVAILABLE,
            outcome: None,
            message: "the gateway has not started its approvals yet; try again in a moment",
        };
    };
    let key = RequestKey::new(agent, request_id);
    let outcome = handle
        .decide(key.clone(), verdict, inner.actor.clone())
        .await;
    tracing::info!(
        agent = %key.agent_id,
        request_id = %key.request_id,
        ?verdict,
        ?outcome,
        actor = %inner.actor,
        "web approval decision"
    );
    let (status, message) = match (outcome, verdict) {
        (DecideOutcome::Won, Verdict::Allow) => (StatusCode::OK, "Approved: the request runs now."),
        (DecideOutcome::Won, Verdict::Deny) => (StatusCode::OK, "Denied."),
        (DecideOutcome::AlreadyDecided, _) => (
            StatusCode::CONFLICT,
            "Already decided (by someone else, or by an earlier press).",
        ),
        (DecideOutcome::Expired, _) => (
            StatusCode::CONFLICT,
            "Expired: nobody decided before the approval timeout.",
        ),
        (DecideOutcome::NotFound, _) => (StatusCode::NOT_FOUND, "No such request."),
    };
    Decided {
        status,
        outcome: Some(outcome),
        message,
    }
}

async fn api_decide(
    State(inner): State<Arc<Inner>>,
    caller: Caller,
    Path((agent, request_id, verdict)): Path<(String, String, String)>,
) -> Response {
    let csrf = caller
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Err(refusal) = check_post(&inner, &caller, csrf.as_deref()) {
        return refusal.json();
    }
    let decided = decide(&inner, agent, request_id, &verdict).await;
    (
        decided.status,
        Json(json!({
            "outcome": decided.outcome,
            "verdict": verdict,
            "message": decided.message,
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct DecideForm {
    #[serde(default)]
    agent: String,
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    csrf: String,
}

async fn decide_form(
    State(inner): State<Arc<Inner>>,
    caller: Caller,
    Form(form): Form<DecideForm>,
) -> Response {
    if let Err(refusal) = check_post(&inner, &caller, Some(&form.csrf)) {
        return refusal.html();
    }
    let decided = decide(&inner, form.agent, form.request_id, &form.verdict).await;
    html_response(decided.status, |nonce| page::result(nonce, decided.message))
}

async fn api_pending(State(inner): State<Arc<Inner>>, caller: Caller) -> Response {
    if let Err(refusal) = access(&inner, &caller) {
        return refusal.json();
    }
    Json(inner.pending().await).into_response()
}

async fn api_history(State(inner): State<Arc<Inner>>, caller: Caller) -> Response {
    if let Err(refusal) = access(&inner, &caller) {
        return refusal.json();
    }
    match inner.history().await {
        Ok(history) => Json(history).into_response(),
        Err(error) => {
            tracing::error!(%error, "the approval page could not read the history");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "error": format!("cannot read the history: {error}") })),
            )
                .into_response()
        }
    }
}

async fn api_events(State(inner): State<Arc<Inner>>, caller: Caller) -> Response {
    if let Err(refusal) = access(&inner, &caller) {
        return refusal.json();
    }
    let receiver = inner.events.subscribe();
    let stopped = inner.stopped.clone();
    let stream =
        futures_util::stream::unfold((receiver, stopped), |(mut receiver, stopped)| async move {
            let next = tokio::select! {
                () = stopped.cancelled() => return None,
                next = receiver.recv() => next,
            };
            let event = match next {
                Ok(event) => Event::default()
                    .event(event.name())
                    .data(event.data().to_string()),
                // The page fell behind: it reloads its lists.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    Event::default().event("refresh").data("{}")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok::<_, Infallible>(event), (receiver, stopped)))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
