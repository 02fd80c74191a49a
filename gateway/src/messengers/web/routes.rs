//! The axum handlers of the approval page and its API: access checks (every credential
//! check through the per-address throttle), the one-time login links and the admin endpoint
//! that issues them, CSRF and origin checks of POSTs, decisions through the
//! [`crate::approvals::ApprovalHandle`], and the event stream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, Query, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, REFERRER_POLICY, RETRY_AFTER, SET_COOKIE,
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
use super::history::{HistoryParams, Search};
use super::{BASE_PATH, Inner, grants, page};
use crate::approvals::{DecideOutcome, Verdict};
use crate::store::RequestKey;

pub(super) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route(BASE_PATH, get(show_page))
        .route("/approvals/login", post(login))
        .route("/approvals/link/{token}", get(link_login))
        .route("/approvals/admin/link", post(admin_link))
        .route("/approvals/logout", post(logout))
        .route("/approvals/decide", post(decide_form))
        .route("/approvals/api/pending", get(api_pending))
        .route("/approvals/api/history", get(api_history))
        .route("/approvals/api/events", get(api_events))
        .route("/approvals/api/grants", get(api_grants))
        .route(
            "/approvals/api/grants/{id}/revoke",
            post(grants::api_revoke),
        )
        .route("/approvals/grants/{id}/revoke", post(grants::form_revoke))
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
pub(super) struct Caller {
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
pub(super) enum Access {
    /// A browser session (a login with the token, or a one-time link).
    Session(SessionInfo),
    /// `Authorization: Bearer <token>`: a script; no cookie, so no CSRF token needed.
    Bearer,
}

/// Why a request was refused; rendered as JSON for the API and as HTML for the page.
pub(super) struct Refusal {
    status: StatusCode,
    message: &'static str,
    /// Seconds to wait (429: the client's address used up its failed credential checks).
    retry_after: Option<u64>,
}

const REMOTE: Refusal = Refusal {
    status: StatusCode::FORBIDDEN,
    message: "the approval page has no token configured, so it answers only clients on this machine (loopback); set `token:` on the web approver to use it from elsewhere",
    retry_after: None,
};
const NOT_LOOPBACK_HOST: Refusal = Refusal {
    status: StatusCode::FORBIDDEN,
    message: "without a token the approval page answers only under localhost, 127.0.0.1 or [::1]; open it by one of those addresses",
    retry_after: None,
};
const LOGIN_REQUIRED: Refusal = Refusal {
    status: StatusCode::UNAUTHORIZED,
    message: "log in to the approval page first (or send Authorization: Bearer with the approver token)",
    retry_after: None,
};
const WRONG_BEARER: Refusal = Refusal {
    status: StatusCode::UNAUTHORIZED,
    message: "wrong approver token in the Authorization header",
    retry_after: None,
};
const CROSS_ORIGIN: Refusal = Refusal {
    status: StatusCode::FORBIDDEN,
    message: "cross-origin request refused: the Origin (or Referer) must be this page's own address",
    retry_after: None,
};
const BAD_CSRF: Refusal = Refusal {
    status: StatusCode::FORBIDDEN,
    message: "missing or wrong CSRF token; reload the approval page and try again",
    retry_after: None,
};
const NO_SESSION: Refusal = Refusal {
    status: StatusCode::FORBIDDEN,
    message: "no session: open the approval page first (through its one-time link when no token is configured: run `agent-gate approve-link`), then decide from it",
    retry_after: None,
};
const LINK_REQUIRED: Refusal = Refusal {
    status: StatusCode::UNAUTHORIZED,
    message: "the approval page has no token configured: open it through a one-time link (printed at start-up; run `agent-gate approve-link` on the gateway's machine for a new one)",
    retry_after: None,
};
const BAD_LINK: Refusal = Refusal {
    status: StatusCode::UNAUTHORIZED,
    message: "this login link is not valid: it was used already, it expired, or it is mistyped; get a new one with `agent-gate approve-link`",
    retry_after: None,
};
const WRONG_ADMIN_SECRET: Refusal = Refusal {
    status: StatusCode::UNAUTHORIZED,
    message: "wrong or missing admin secret: run `agent-gate approve-link` as the gateway's user on its machine",
    retry_after: None,
};

/// The refusal of a client whose address used up its failed credential checks.
fn throttled(retry: std::time::Duration) -> Refusal {
    Refusal {
        status: StatusCode::TOO_MANY_REQUESTS,
        message: "too many failed logins or wrong tokens from this address; wait and try again",
        retry_after: Some((retry.as_secs() + u64::from(retry.subsec_nanos() > 0)).max(1)),
    }
}

/// The refusal of a credential check that failed.
fn refused(refusal: LoginRefusal, wrong: Refusal) -> Refusal {
    match refusal {
        LoginRefusal::WrongToken => wrong,
        LoginRefusal::Throttled(retry) => throttled(retry),
    }
}

impl Refusal {
    pub(super) fn json(&self) -> Response {
        self.with_retry((self.status, Json(json!({ "error": self.message }))).into_response())
    }

    pub(super) fn html(&self) -> Response {
        self.with_retry(html_response(self.status, |nonce| {
            page::result(nonce, self.message)
        }))
    }

    fn with_retry(&self, mut response: Response) -> Response {
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The loopback rule of a page without a token: a loopback peer, under a loopback name.
fn loopback_only(caller: &Caller) -> Result<(), Refusal> {
    if !auth::is_loopback_peer(caller.peer) {
        return Err(REMOTE);
    }
    if !auth::is_loopback_host(&caller.headers) {
        return Err(NOT_LOOPBACK_HOST);
    }
    Ok(())
}

/// Who may use the page, before any POST-specific check.
fn access(inner: &Inner, caller: &Caller) -> Result<Access, Refusal> {
    match &inner.token {
        None => {
            loopback_only(caller)?;
            // No credential-free access, even on loopback: a session comes only from a
            // one-time link.
            inner
                .auth
                .session(&caller.headers)
                .map(Access::Session)
                .ok_or(LINK_REQUIRED)
        }
        Some(token) => {
            if let Some(presented) = auth::bearer(&caller.headers) {
                return inner
                    .auth
                    .checked(caller.peer, || auth::token_matches(token, presented))
                    .map(|()| Access::Bearer)
                    .map_err(|r| {
                        if r == LoginRefusal::WrongToken {
                            tracing::warn!(peer = ?caller.peer, "web approval request with a wrong bearer token");
                        }
                        refused(r, WRONG_BEARER)
                    });
            }
            inner
                .auth
                .session(&caller.headers)
                .map(Access::Session)
                .ok_or(LOGIN_REQUIRED)
        }
    }
}

/// [`check_post`] for the JSON API, whose script sends the CSRF token as a header.
pub(super) fn check_api_post(inner: &Inner, caller: &Caller) -> Result<Access, Refusal> {
    let csrf = caller
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok());
    check_post(inner, caller, csrf)
}

/// The checks of a state-changing request: a browser session needs a same-origin request
/// carrying its CSRF token; a bearer token needs nothing more.
pub(super) fn check_post(
    inner: &Inner,
    caller: &Caller,
    presented_csrf: Option<&str>,
) -> Result<Access, Refusal> {
    let access = access(inner, caller).map_err(|refusal| {
        if inner.token.is_none() && refusal.status == StatusCode::UNAUTHORIZED {
            NO_SESSION
        } else {
            refusal
        }
    })?;
    match &access {
        Access::Bearer => {}
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
    hex::encode(bytes)
}

/// An HTML answer with a CSP that allows only its own nonce-tagged style and script and
/// requests to this origin.
pub(super) fn html_response(status: StatusCode, render: impl FnOnce(&str) -> String) -> Response {
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

async fn render_page(inner: &Inner, session: &SessionInfo, params: HistoryParams) -> Response {
    let search = match Search::parse(params, inner.history_limit) {
        Ok(search) => search,
        Err(message) => {
            return html_response(StatusCode::BAD_REQUEST, |nonce| {
                page::result(nonce, &message)
            });
        }
    };
    let pending = inner.pending().await;
    let history = match inner.history(search.query(1)).await {
        Ok(history) => history,
        Err(error) => {
            tracing::error!(%error, "the approval page could not read the history");
            Vec::new()
        }
    };
    let grants = match inner
        .store
        .live_grants(crate::store::Timestamp::now())
        .await
    {
        Ok(grants) => grants,
        Err(error) => {
            tracing::error!(%error, "the approval page could not read the grants");
            Vec::new()
        }
    };
    let view = page::PageView {
        pending: &pending,
        grants: &grants,
        history: &history,
        search: &search,
        grant_durations: &inner.grant_durations,
        now: crate::store::Timestamp::now(),
        actor: &inner.actor,
        csrf: &session.csrf,
        can_log_out: inner.token.is_some(),
    };
    html_response(StatusCode::OK, |nonce| page::approvals(&view, nonce))
}

async fn show_page(
    State(inner): State<Arc<Inner>>,
    caller: Caller,
    Query(params): Query<HistoryParams>,
) -> Response {
    match access(&inner, &caller) {
        Ok(Access::Session(session)) => render_page(&inner, &session, params).await,
        // A script that proved the token: start a session.
        Ok(Access::Bearer) => {
            let session = inner.auth.create_session();
            let cookie = inner.auth.session_cookie(&session);
            with_cookie(render_page(&inner, &session, params).await, &cookie)
        }
        Err(refusal) if refusal.status == StatusCode::UNAUTHORIZED && inner.token.is_none() => {
            // Anonymous visitors get no session (they could push out the approver's).
            html_response(StatusCode::UNAUTHORIZED, |nonce| {
                page::result(nonce, refusal.message)
            })
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
    match inner.auth.login(caller.peer, token, &form.token) {
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
        Err(LoginRefusal::Throttled(retry)) => {
            tracing::warn!(peer = ?caller.peer, "web approval login refused: too many failed logins from this address");
            let response = html_response(StatusCode::TOO_MANY_REQUESTS, |nonce| {
                page::login(
                    nonce,
                    Some("Too many failed logins from this address; wait a minute and try again."),
                )
            });
            throttled(retry).with_retry(response)
        }
    }
}

/// `GET /approvals/link/{token}`: a one-time login link. A valid, unused, unexpired token
/// starts a session and redirects to the page (so the token leaves the address bar); any
/// other counts as a failed credential check of the client's address.
async fn link_login(
    State(inner): State<Arc<Inner>>,
    caller: Caller,
    Path(token): Path<String>,
) -> Response {
    if inner.token.is_none()
        && let Err(refusal) = loopback_only(&caller)
    {
        return refusal.html();
    }
    match inner
        .auth
        .checked(caller.peer, || inner.auth.redeem_link(&token))
    {
        Ok(()) => {
            let session = inner.auth.create_session();
            tracing::info!(peer = ?caller.peer, actor = %inner.actor, "web approval login with a one-time link");
            with_cookie(see_other(BASE_PATH), &inner.auth.session_cookie(&session))
        }
        Err(refusal) => {
            tracing::warn!(peer = ?caller.peer, "web approval login with an invalid one-time link");
            refused(refusal, BAD_LINK).html()
        }
    }
}

/// `POST /approvals/admin/link` with `Authorization: Bearer <admin secret>`: issues a
/// one-time login link (JSON `{"path": "/approvals/link/...", "expires_in_secs": 600}`).
/// This is what `agent-gate approve-link` calls; the secret is in the data directory,
/// readable only by the gateway's user.
async fn admin_link(State(inner): State<Arc<Inner>>, caller: Caller) -> Response {
    let presented = auth::bearer(&caller.headers).unwrap_or_default();
    let checked = inner.auth.checked(caller.peer, || {
        auth::same_secret(inner.admin_secret.expose(), presented)
    });
    match checked {
        Ok(()) => {
            tracing::info!(peer = ?caller.peer, "one-time approval link issued");
            Json(json!({
                "path": format!("{BASE_PATH}/link/{}", inner.auth.issue_link()),
                "expires_in_secs": auth::LINK_LIFETIME.as_secs(),
            }))
            .into_response()
        }
        Err(refusal) => {
            tracing::warn!(peer = ?caller.peer, "one-time link refused: wrong admin secret");
            refused(refusal, WRONG_ADMIN_SECRET).json()
        }
    }
}

/// A form that carries only the session's CSRF token.
#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: String,
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

/// Decides `agent`'s request `request_id`; `reason` (for a denial only) tells the agent why,
/// `grant_minutes` (for an approval only) grants the same call for that long, `always` from
/// now on.
async fn decide(
    inner: &Inner,
    agent: String,
    request_id: String,
    verdict: &str,
    reason: Option<&str>,
    grant_minutes: Option<u64>,
    always: bool,
) -> Decided {
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
    let reason = reason.filter(|r| !r.trim().is_empty());
    if verdict == Verdict::Allow && reason.is_some() {
        return Decided {
            status: StatusCode::BAD_REQUEST,
            outcome: None,
            message: "a reason goes with a denial only: allow without one, or deny",
        };
    }
    if let Some(minutes) = grant_minutes
        && (verdict != Verdict::Allow || !(1..=MAX_GRANT_MINUTES).contains(&minutes))
    {
        return Decided {
            status: StatusCode::BAD_REQUEST,
            outcome: None,
            message: "grant_minutes goes with allow only, from 1 to 10080 (7 days)",
        };
    }
    if always && (verdict != Verdict::Allow || grant_minutes.is_some()) {
        return Decided {
            status: StatusCode::BAD_REQUEST,
            outcome: None,
            message: "always goes with allow only, and without grant_minutes",
        };
    }
    let key = RequestKey::new(agent, request_id);
    let outcome = match (reason, grant_minutes) {
        _ if always => handle.always_allow(key.clone(), inner.actor.clone()).await,
        (_, Some(minutes)) => {
            handle
                .allow_for(
                    key.clone(),
                    inner.actor.clone(),
                    std::time::Duration::from_secs(minutes * 60),
                )
                .await
        }
        (Some(reason), None) => {
            handle
                .deny_because(key.clone(), inner.actor.clone(), reason)
                .await
        }
        (None, None) => {
            handle
                .decide(key.clone(), verdict, inner.actor.clone())
                .await
        }
    };
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
        (DecideOutcome::Cancelled, _) => (
            StatusCode::CONFLICT,
            "Cancelled: the agent withdrew the request; it never ran.",
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
    body: axum::body::Bytes,
) -> Response {
    if let Err(refusal) = check_api_post(&inner, &caller) {
        return refusal.json();
    }
    // An optional JSON body: `{"reason": "..."}` with a denial, `{"grant_minutes": 60}` with
    // an approval.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        DecideBody::default()
    } else {
        match serde_json::from_slice::<DecideBody>(&body) {
            Ok(body) => body,
            Err(error) => {
                let message = format!(
                    "the body must be a JSON object like {{\"reason\": \"...\"}} (or empty): {error}"
                );
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"outcome": null, "verdict": verdict, "message": message})),
                )
                    .into_response();
            }
        }
    };
    let decided = decide(
        &inner,
        agent,
        request_id,
        &verdict,
        body.reason.as_deref(),
        body.grant_minutes,
        body.always,
    )
    .await;
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

/// The longest grant the page offers or accepts, in minutes (7 days).
const MAX_GRANT_MINUTES: u64 = 7 * 24 * 60;

/// The optional JSON body of an API decision.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    grant_minutes: Option<u64>,
    #[serde(default)]
    always: bool,
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
    reason: Option<String>,
    #[serde(default)]
    grant_minutes: Option<String>,
    #[serde(default)]
    always: Option<String>,
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
    // A grant button carries `grant_minutes` and no verdict: it approves.
    let grant_minutes = match form.grant_minutes.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => match text.parse::<u64>() {
            Ok(minutes) => Some(minutes),
            Err(_) => {
                return html_response(StatusCode::BAD_REQUEST, |nonce| {
                    page::result(nonce, "grant_minutes must be a number of minutes")
                });
            }
        },
    };
    let always = form.always.as_deref().is_some_and(|v| !v.trim().is_empty());
    let verdict = match (form.verdict.as_str(), grant_minutes, always) {
        ("", Some(_), _) | ("", _, true) => "allow",
        (verdict, _, _) => verdict,
    };
    let decided = decide(
        &inner,
        form.agent,
        form.request_id,
        verdict,
        form.reason.as_deref(),
        grant_minutes,
        always,
    )
    .await;
    html_response(decided.status, |nonce| page::result(nonce, decided.message))
}

async fn api_pending(State(inner): State<Arc<Inner>>, caller: Caller) -> Response {
    if let Err(refusal) = access(&inner, &caller) {
        return refusal.json();
    }
    Json(inner.pending().await).into_response()
}

async fn api_grants(State(inner): State<Arc<Inner>>, caller: Caller) -> Response {
    if let Err(refusal) = access(&inner, &caller) {
        return refusal.json();
    }
    match inner
        .store
        .live_grants(crate::store::Timestamp::now())
        .await
    {
        Ok(grants) => Json(grants).into_response(),
        Err(error) => {
            tracing::error!(%error, "the approval page could not read the grants");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "error": format!("cannot read the grants: {error}") })),
            )
                .into_response()
        }
    }
}

/// `GET /approvals/api/history?agent=&tool=&decision=&decider=&limit=&offset=`: one page of
/// the decided requests, newest first (a page shorter than `limit` is the last).
async fn api_history(
    State(inner): State<Arc<Inner>>,
    caller: Caller,
    Query(params): Query<HistoryParams>,
) -> Response {
    if let Err(refusal) = access(&inner, &caller) {
        return refusal.json();
    }
    let search = match Search::parse(params, inner.history_limit) {
        Ok(search) => search,
        Err(message) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response();
        }
    };
    match inner.history(search.query(0)).await {
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
