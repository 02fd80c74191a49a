//! The web approval page: [`WebApprover`] serves, on the gateway's HTTP side
//! (`gateway.health_host:health_port`), a page listing the requests waiting for a human
//! (with a live countdown to their expiry, the entities each affects, Allow / Deny / Allow
//! for a while / Always allow buttons), the live grants and the "always allowed" rules with
//! Revoke buttons, and the searchable history of decisions; the JSON endpoints behind it; and
//! a server-sent event stream that tells open pages about new requests and outcomes.
//!
//! The server renders every list, and every button is a form post, so the page works without
//! JavaScript; the script makes the countdowns tick, reloads the lists (as the server renders
//! them) when the event stream says something changed, and sends the buttons' JSON requests.
//! The layout is one column on a phone (under 600 px: two buttons a row, at least 3 rem tall)
//! and two columns from 900 px.
//!
//! # Routes (all under `/approvals`)
//!
//! | Method and path | What |
//! |---|---|
//! | `GET /approvals` | the page (or the login form when a token is configured and the browser has no session) |
//! | `POST /approvals/login` | form field `token`; sets the session cookie |
//! | `GET /approvals/link/{token}` | a one-time login link: sets the session cookie, redirects to the page |
//! | `POST /approvals/admin/link` | `Authorization: Bearer <admin secret>`; JSON: a new one-time link (what `agent-gate approve-link` calls) |
//! | `POST /approvals/logout` | ends the session |
//! | `POST /approvals/decide` | form fallback without JavaScript: fields `agent`, `request_id`, `verdict` (or `grant_minutes`, or `always`), `reason`, `csrf` |
//! | `POST /approvals/grants/{id}/revoke` | form fallback: revokes a grant; field `csrf` |
//! | `GET /approvals/api/pending` | JSON: the requests waiting, soonest expiry first |
//! | `GET /approvals/api/history` | JSON: requests that needed a human and were decided, newest first; the page's search parameters (below) |
//! | `GET /approvals/api/grants` | JSON: the live grants (`expires_at: null`: always allowed) |
//! | `POST /approvals/api/grants/{id}/revoke` | JSON: revokes a grant (audited as `grant_revoked`); `X-CSRF-Token` header |
//! | `POST /approvals/api/{agent}/{request_id}/{allow\|deny}` | JSON: decide; `X-CSRF-Token` header |
//! | `GET /approvals/api/events` | server-sent events `pending`, `resolved` and `refresh` |
//!
//! The history's search (on `GET /approvals` and `GET /approvals/api/history`): `agent` and
//! `tool` (exact), `decision` (`approved`, `denied`, `expired`, `cancelled`), `decider` (part
//! of `resolved_by`, any ASCII case: `web:`, `telegram:@bob`, `timeout`, `grant:`), `limit`
//! (1 to 200, default 50) and `offset`. The store filters in SQL with bound parameters; a
//! wrong value is answered 400 with what is wrong.
//!
//! # Access
//!
//! - With `token:` configured, a browser logs in once through the form; the session lives in
//!   an `HttpOnly; SameSite=Strict` cookie (the token itself is never put in a URL, a cookie
//!   or a log line). Scripts may send `Authorization: Bearer <token>` instead (no cookie,
//!   hence no CSRF token needed). Tokens are compared in constant time.
//! - Without a token only loopback clients (peer 127.0.0.0/8 or ::1) are served, and only
//!   under a loopback host name (`localhost`, `127.0.0.1`, `[::1]`; the `Host` header is
//!   parsed strictly), which defeats DNS rebinding. Even they need a session, which only a
//!   **one-time link** gives: a random single-use token, valid for 10 minutes, printed at
//!   start-up by `serve` and `demo` and issued by `agent-gate approve-link`. So no local
//!   program can approve by just loading the page. Anonymous visitors get no session, so
//!   they cannot push the approver's session out of the 256 kept.
//! - One-time links are issued by `POST /approvals/admin/link` to whoever presents the
//!   admin secret: a random value the gateway writes at start-up to
//!   `<data directory>/web-admin.secret` (mode 0600: readable by the gateway's user only)
//!   and removes at shutdown. Links work whether or not a token is configured.
//! - Every credential check (login form, bearer header, one-time link, admin secret) goes
//!   through a throttle **per client address** (IPv6 per /64): after 5 failures in a
//!   minute that address gets 429 with `Retry-After` until its minute is over; other
//!   addresses, and sessions already open, are not affected, and a success does not clear
//!   the count.
//! - Every POST with a session cookie must carry the session's CSRF token (hidden form field
//!   `csrf` or header `X-CSRF-Token`) and an `Origin` (or, failing that, `Referer`) of the
//!   page's own host.
//!
//! Everything shown is escaped (tool arguments come from agents), hidden characters
//! (bidirectional overrides, invisible and control characters) are shown as `\u{202e}` with
//! a warning on the card ([`crate::messengers::visible`]), responses carry a strict
//! Content-Security-Policy with a per-response nonce for the inline style and script, and
//! the page needs nothing from other hosts.
//!
//! Decisions are attributed `web:<name>` (`name:` from the config, default `web`).

mod auth;
mod grants;
mod history;
mod page;
mod routes;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::approvals::{
    ApprovalHandle, ApprovalRequest, Approver, ApproverError, BoxFuture, Resolution,
};
use crate::config::{DEFAULT_WEB_APPROVER_NAME, Secret, WebApproverConfig};
use crate::messengers::visible;
use crate::store::{HistoryQuery, RequestRecord, Store, StoreError};

pub use auth::{LINK_LIFETIME, SESSION_COOKIE, SessionLimits};

/// The file in the data directory (beside the database) holding the admin secret that
/// `agent-gate approve-link` presents to get a one-time link.
pub const ADMIN_SECRET_FILE: &str = "web-admin.secret";

/// The path of the admin endpoint that issues one-time links.
pub const ADMIN_LINK_PATH: &str = "/approvals/admin/link";

/// Where the admin secret of a gateway whose database is `storage_path` lives.
pub fn admin_secret_path(storage_path: &Path) -> PathBuf {
    match storage_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(ADMIN_SECRET_FILE),
        _ => PathBuf::from(ADMIN_SECRET_FILE),
    }
}

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
    /// The "allow for" buttons of a pending card.
    grant_durations: Vec<Duration>,
    handle: Mutex<Option<ApprovalHandle>>,
    events: broadcast::Sender<PageEvent>,
    stopped: CancellationToken,
    auth: auth::Auth,
    /// What `POST /approvals/admin/link` wants as its bearer token.
    admin_secret: Secret,
    /// Where [`WebApprover::write_admin_secret`] put it (removed at stop).
    admin_secret_file: Mutex<Option<PathBuf>>,
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
    grant_durations: Vec<Duration>,
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

    /// The durations of the "allow for" buttons (default
    /// [`crate::approvals::DEFAULT_GRANT_DURATIONS`]); each is cut to
    /// [`crate::approvals::MAX_GRANT`].
    pub fn grant_durations(mut self, durations: impl IntoIterator<Item = Duration>) -> Self {
        self.grant_durations = durations
            .into_iter()
            .map(|d| d.min(crate::approvals::MAX_GRANT))
            .collect();
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
                grant_durations: self.grant_durations,
                handle: Mutex::new(None),
                events,
                stopped: CancellationToken::new(),
                auth: auth::Auth::new(self.sessions),
                admin_secret: Secret::new(auth::random_hex()),
                admin_secret_file: Mutex::new(None),
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
            grant_durations: crate::approvals::DEFAULT_GRANT_DURATIONS.to_vec(),
            sessions: SessionLimits::default(),
        }
    }

    /// The page of a `type: web` entry of `approvers:`.
    pub fn from_config(config: &WebApproverConfig, store: Store) -> Self {
        let mut builder = Self::builder(store)
            .name(config.name.clone())
            .grant_durations(config.grant_durations.iter().copied());
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

    /// Whether the page has a token (without one, only one-time links log in).
    pub fn has_token(&self) -> bool {
        self.inner.token.is_some()
    }

    /// A fresh one-time login link: its path (`/approvals/link/<token>`), valid once for
    /// [`LINK_LIFETIME`]. The path is a credential: show it to the approver, never log it.
    pub fn issue_link(&self) -> String {
        format!("{BASE_PATH}/link/{}", self.inner.auth.issue_link())
    }

    /// Writes the admin secret to `path` (replacing the file of an earlier run), readable
    /// only by this user (mode 0600 on Unix); it is removed when the approver stops.
    pub fn write_admin_secret(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("secret.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let written = options.open(&tmp).and_then(|mut file| {
            use std::io::Write;
            writeln!(file, "{}", self.inner.admin_secret.expose())?;
            file.sync_all()
        });
        if let Err(error) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(error);
        }
        *self
            .inner
            .admin_secret_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(path.to_owned());
        Ok(())
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

    /// Requests that needed a human and were decided, newest first, as `query` filters and
    /// pages them.
    async fn history(&self, query: HistoryQuery) -> Result<Vec<HistoryView>, StoreError> {
        let records = self.store.history(query).await?;
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
    /// When it expires, in milliseconds since the Unix epoch (for the page's countdown; not
    /// serialized, the JSON has [`PendingView::expires_at`]).
    #[serde(skip)]
    pub expires_at_millis: i64,
    /// Whether the signature, request id, targets or arguments contain hidden characters
    /// (bidirectional overrides, invisible or control characters); serialized only when
    /// true. The page then shows [`PendingView::shown`] and a warning.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hidden_characters: bool,
    /// The texts to show, hidden characters escaped (only when `hidden_characters`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shown: Option<ShownText>,
}

/// The texts of a request that contains hidden characters, as approvers are shown them:
/// every hidden character escaped (`\u{202e}`), see [`crate::messengers::visible`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownText {
    /// The signature.
    pub signature: String,
    /// The request id.
    pub request_id: String,
    /// The arguments as pretty-printed JSON.
    pub args: String,
    /// The targets (entity ids), serialized only when there are some.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// The error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The warning to show with them.
    pub warning: &'static str,
}

impl ShownText {
    /// `Some` when any of the texts contains hidden characters.
    fn of(
        signature: &str,
        request_id: &str,
        targets: &[String],
        args: &Value,
        error: Option<&str>,
    ) -> Option<Self> {
        let args = serde_json::to_string_pretty(args).unwrap_or_default();
        let hidden = visible::has_hidden(signature)
            || visible::has_hidden(request_id)
            || targets.iter().any(|t| visible::has_hidden(t))
            || visible::block_has_hidden(&args)
            || error.is_some_and(visible::has_hidden);
        hidden.then(|| Self {
            signature: visible::escape(signature).into_owned(),
            request_id: visible::escape(request_id).into_owned(),
            args: visible::escape_block(&args).into_owned(),
            targets: targets
                .iter()
                .map(|t| visible::escape(t).into_owned())
                .collect(),
            error: error.map(|e| visible::escape(e).into_owned()),
            warning: visible::WARNING,
        })
    }
}

impl PendingView {
    fn from_request(request: &ApprovalRequest) -> Self {
        let shown = ShownText::of(
            &request.signature,
            &request.key.request_id,
            &request.targets,
            &request.args,
            None,
        );
        Self {
            agent_id: request.key.agent_id.clone(),
            request_id: request.key.request_id.clone(),
            tool: request.tool.clone(),
            signature: request.signature.clone(),
            targets: request.targets.clone(),
            args: request.args.clone(),
            rule: request.rule.clone(),
            created_at: crate::store::rfc3339(request.created_at),
            expires_at: crate::store::rfc3339(request.expires_at),
            expires_at_millis: request.expires_at.as_millis(),
            hidden_characters: shown.is_some(),
            shown,
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
    /// As [`PendingView::hidden_characters`].
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hidden_characters: bool,
    /// As [`PendingView::shown`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shown: Option<ShownText>,
}

impl HistoryView {
    fn from_record(record: &RequestRecord) -> Self {
        let error = record.error.as_ref().map(|e| e.message.clone());
        let shown = ShownText::of(
            &record.signature,
            &record.request_id,
            &[],
            &record.args,
            error.as_deref(),
        );
        Self {
            agent_id: record.agent_id.clone(),
            request_id: record.request_id.clone(),
            tool: record.tool.clone(),
            signature: record.signature.clone(),
            args: record.args.clone(),
            state: record.state.as_str().to_owned(),
            resolved_by: record.resolved_by.clone(),
            resolved_at: record.resolved_at.map(crate::store::rfc3339),
            created_at: crate::store::rfc3339(record.created_at),
            error,
            hidden_characters: shown.is_some(),
            shown,
        }
    }
}

/// What open pages are told.
#[derive(Debug, Clone)]
enum PageEvent {
    Pending(Box<PendingView>),
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
            PageEvent::Pending(view) => json!(view.as_ref()),
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
                .publish(PageEvent::Pending(Box::new(PendingView::from_request(
                    request,
                ))));
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
        // A stopped gateway issues no links: `approve-link` then says it is not running.
        let file = self
            .inner
            .admin_secret_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(file) = file {
            let _ = std::fs::remove_file(file);
        }
        Box::pin(async {})
    }
}
