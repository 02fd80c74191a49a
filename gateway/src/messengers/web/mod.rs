//! The web approval page: [`WebApprover`] serves, on the gateway's HTTP side
//! (`gateway.health_host:health_port`), a page listing the requests waiting for a human with
//! Allow / Deny buttons and the decided history, the JSON endpoints behind it, and a
//! server-sent event stream that tells open pages about new requests and outcomes.
//!
//! # Routes (all under `/approvals`)
//!
//! | Method and path | What |
//! |---|---|
//! | `GET /approvals` | the page (or the login form when a token is configured and the browser has no session) |
//! | `POST /approvals/login` | form field `token`; sets the session cookie |
//! | `POST /approvals/logout` | ends the session |
//! | `POST /approvals/decide` | form fallback without JavaScript: fields `agent`, `request_id`, `verdict`, `csrf` |
//! | `GET /approvals/api/pending` | JSON: the requests waiting, soonest expiry first |
//! | `GET /approvals/api/history` | JSON: requests that needed a human and were decided, newest first |
//! | `POST /approvals/api/{agent}/{request_id}/{allow\|deny}` | JSON: decide; `X-CSRF-Token` header |
//! | `GET /approvals/api/events` | server-sent events `pending`, `resolved` and `refresh` |
//!
//! # Access
//!
//! - With `token:` configured, a browser logs in once through the form; the session lives in
//!   an `HttpOnly; SameSite=Strict` cookie (the token itself is never put in a URL, a cookie
//!   or a log line). Scripts may send `Authorization: Bearer <token>` instead (no cookie,
//!   hence no CSRF token needed). Tokens are compared in constant time; failed logins are
//!   throttled.
//! - Without a token only loopback clients (peer 127.0.0.0/8 or ::1) are served, and only
//!   under a loopback host name (`localhost`, `127.0.0.1`, `[::1]`), which defeats DNS
//!   rebinding. They get a session cookie on their first visit.
//! - Every POST with a session cookie must carry the session's CSRF token (hidden form field
//!   `csrf` or header `X-CSRF-Token`) and an `Origin` (or, failing that, `Referer`) of the
//!   page's own host.
//!
//! Everything shown is escaped (tool arguments come from agents), responses carry a strict
//! Content-Security-Policy with a per-response nonce for the inline style and script, and
//! the page needs nothing from other hosts.
//!
//! Decisions are attributed `web:<name>` (`name:` from the config, default `web`).

mod auth;
mod page;
mod routes;

use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::approvals::{
    ApprovalHandle, ApprovalRequest, Approver, ApproverError, BoxFuture, Resolution,
};
use crate::config::{DEFAULT_WEB_APPROVER_NAME, Secret, WebApproverConfig};
use crate::store::{RequestRecord, Store, StoreError};

pub use auth::{SESSION_COOKIE, SessionLimits};

/// The approver's name: the key of its health entry (and of its message references, of
/// which it has none).
pub const APPROVER_NAME: &str = "web";

/// The path of the page; every route lives under it.
pub const BASE_PATH: &str = "/approvals";

/// Default number of decided requests the history shows.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;

/// How many events an open page may fall behind before it is told to reload its lists.
const EVENT_BUFFER: usize = 256;

/// The web approval page. Cheap to clone (a handle on shared state).
///
/// Register it as an approver and mount [`WebApprover::router`] on the HTTP side; the
/// gateway does both for a `type: web` entry of `approvers:`.
#[derive(Clone)]
pub struct WebApprover {
    inner: Arc<Inner>,
}

struct Inner {
    actor: String,
    token: Option<Secret>,
    store: Store,
    history_limit: u32,
    handle: Mutex<Option<ApprovalHandle>>,
    events: broadcast::Sender<PageEvent>,
    stopped: CancellationToken,
    auth: auth::Auth,
}

impl std::fmt::Debug for WebApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebApprover")
            .field("actor", &self.inner.actor)
            .field("token", &self.inner.token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// Settings of a [`WebApprover`] before it is built: see [`WebApprover::builder`].
#[derive(Debug)]
pub struct WebApproverBuilder {
    store: Store,
    token: Option<Secret>,
    name: String,
    history_limit: u32,
    sessions: SessionLimits,
}

impl WebApproverBuilder {
    /// Require this token to use the page (default: none, loopback clients only).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Secret::new(token));
        self
    }

    /// Who decides through the page: decisions are attributed `web:<name>` (default `web`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How many decided requests the history shows (default [`DEFAULT_HISTORY_LIMIT`]).
    pub fn history_limit(mut self, limit: u32) -> Self {
        self.history_limit = limit;
        self
    }

    /// Session lifetime, session count and login throttle (defaults: [`SessionLimits::default`]).
    pub fn sessions(mut self, limits: SessionLimits) -> Self {
        self.sessions = limits;
        self
    }

    /// The approver.
    pub fn build(self) -> WebApprover {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        WebApprover {
            inner: Arc::new(Inner {
                actor: format!("web:{}", self.name),
                token: self.token,
                store: self.store,
                history_limit: self.history_limit,
                handle: Mutex::new(None),
                events,
                stopped: CancellationToken::new(),
                auth: auth::Auth::new(self.sessions),
            }),
        }
    }
}

impl WebApprover {
    /// A builder for a page that reads the decided history from `store` (the gateway's).
    pub fn builder(store: Store) -> WebApproverBuilder {
        WebApproverBuilder {
            store,
            token: None,
            name: DEFAULT_WEB_APPROVER_NAME.to_owned(),
            history_limit: DEFAULT_HISTORY_LIMIT,
            sessions: SessionLimits::default(),
        }
    }

    /// The page of a `type: web` entry of `approvers:`.
    pub fn from_config(config: &WebApproverConfig, store: Store) -> Self {
        let mut builder = Self::builder(store).name(config.name.clone());
        builder.token = config.token.clone();
        builder.build()
    }

    /// Who decisions made here are attributed to (`web:<name>`).
    pub fn actor(&self) -> &str {
        &self.inner.actor
    }

    /// The routes of the page and its API, to merge into the HTTP side's router. The HTTP
    /// side must be served with connect info (`into_make_service_with_connect_info::<SocketAddr>`):
    /// without a peer address every client counts as remote.
    pub fn router(&self) -> axum::Router {
        routes::router(Arc::clone(&self.inner))
    }

    /// Open event streams (pages listening for updates) right now.
    pub fn listeners(&self) -> usize {
        self.inner.events.receiver_count()
    }
}

impl Inner {
    fn handle(&self) -> Option<ApprovalHandle> {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Requests waiting now (empty before the gateway started).
    async fn pending(&self) -> Vec<PendingView> {
        match self.handle() {
            Some(handle) => handle
                .pending()
                .await
                .iter()
                .map(PendingView::from_request)
                .collect(),
            None => Vec::new(),
        }
    }

    /// Requests that needed a human and were decided, newest first.
    async fn history(&self) -> Result<Vec<HistoryView>, StoreError> {
        let records = self
            .store
            .recently_resolved_asks(self.history_limit)
            .await?;
        Ok(records.iter().map(HistoryView::from_record).collect())
    }

    fn publish(&self, event: PageEvent) {
        // No open page is not an error.
        let _ = self.events.send(event);
    }
}

/// A pending request as the page and `GET /approvals/api/pending` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingView {
    /// The agent.
    pub agent_id: String,
    /// The agent's request id.
    pub request_id: String,
    /// The tool.
    pub tool: String,
    /// The signature the policy judged.
    pub signature: String,
    /// Everything the call affects (entity ids).
    pub targets: Vec<String>,
    /// The arguments (from the agent: untrusted).
    pub args: Value,
    /// The rule that asked for approval.
    pub rule: Option<String>,
    /// When it was requested (RFC 3339, UTC).
    pub created_at: String,
    /// When it expires (RFC 3339, UTC).
    pub expires_at: String,
}

impl PendingView {
    fn from_request(request: &ApprovalRequest) -> Self {
        Self {
            agent_id: request.key.agent_id.clone(),
            request_id: request.key.request_id.clone(),
            tool: request.tool.clone(),
            signature: request.signature.clone(),
            targets: request.targets.clone(),
            args: request.args.clone(),
            rule: request.rule.clone(),
            created_at: crate::server::rfc3339(request.created_at),
            expires_at: crate::server::rfc3339(request.expires_at),
        }
    }
}

/// A decided request as the history and `GET /approvals/api/history` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryView {
    /// The agent.
    pub agent_id: String,
    /// The agent's request id.
    pub request_id: String,
    /// The tool.
    pub tool: String,
    /// The signature.
    pub signature: String,
    /// The arguments (untrusted).
    pub args: Value,
    /// Where the request is now (`approved`, `executing`, `executed`, `failed`, `denied`,
    /// `expired`).
    pub state: String,
    /// Who decided (`web:alice`, `telegram:@bob`, `timeout`, ...).
    pub resolved_by: Option<String>,
    /// When (RFC 3339, UTC).
    pub resolved_at: Option<String>,
    /// When it was requested (RFC 3339, UTC).
    pub created_at: String,
    /// The error of a failed, denied or expired request.
    pub error: Option<String>,
}

impl HistoryView {
    fn from_record(record: &RequestRecord) -> Self {
        Self {
            agent_id: record.agent_id.clone(),
            request_id: record.request_id.clone(),
            tool: record.tool.clone(),
            signature: record.signature.clone(),
            args: record.args.clone(),
            state: record.state.as_str().to_owned(),
            resolved_by: record.resolved_by.clone(),
            resolved_at: record.resolved_at.map(crate::server::rfc3339),
            created_at: crate::server::rfc3339(record.created_at),
            error: record.error.as_ref().map(|e| e.message.clone()),
        }
    }
}

/// What open pages are told.
#[derive(Debug, Clone)]
enum PageEvent {
    Pending(PendingView),
    Resolved {
        agent_id: String,
        request_id: String,
        resolution: Resolution,
    },
}

impl PageEvent {
    fn name(&self) -> &'static str {
        match self {
            PageEvent::Pending(_) => "pending",
            PageEvent::Resolved { .. } => "resolved",
        }
    }

    fn data(&self) -> Value {
        match self {
            PageEvent::Pending(view) => json!(view),
            PageEvent::Resolved {
                agent_id,
                request_id,
                resolution,
            } => json!({
                "agent_id": agent_id,
                "request_id": request_id,
                "resolution": resolution,
                "text": resolution.to_string(),
            }),
        }
    }
}

impl Approver for WebApprover {
    fn name(&self) -> &str {
        APPROVER_NAME
    }

    fn start(&self, handle: ApprovalHandle) -> BoxFuture<'_, Result<(), ApproverError>> {
        *self
            .inner
            .handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Box::pin(async { Ok(()) })
    }

    fn notify<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApproverError>> {
        Box::pin(async move {
            self.inner
                .publish(PageEvent::Pending(PendingView::from_request(request)));
            Ok(None)
        })
    }

    fn resolved<'a>(
        &'a self,
        request: &'a ApprovalRequest,
        resolution: &'a Resolution,
    ) -> BoxFuture<'a, Result<(), ApproverError>> {
        Box::pin(async move {
            self.inner.publish(PageEvent::Resolved {
                agent_id: request.key.agent_id.clone(),
                request_id: request.key.request_id.clone(),
                resolution: resolution.clone(),
            });
            Ok(())
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        // Ends the event streams, so open pages do not hold the HTTP side's shutdown.
        self.inner.stopped.cancel();
        Box::pin(async {})
    }
}
