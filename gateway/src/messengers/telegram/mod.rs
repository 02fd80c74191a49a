//! The Telegram guardian bot: [`TelegramApprover`] shows each request that needs a human in
//! the configured chat, with Allow / Deny buttons, takes the decision of an allowed user,
//! and edits the message to say how the request ended.
//!
//! # How it talks to Telegram
//!
//! Through the Bot API (`frankenstein`'s typed methods; the API URL is configurable so tests
//! use the fake Telegram of the `agent-gate-sim` crate, `agent_gate_sim::telegram`), with
//! long polling:
//!
//! - one background task calls `getUpdates` (only `callback_query` updates) with the offset
//!   one past the last update it handled. Telegram deletes an update once a later call
//!   confirms it with a higher offset, so within a run no update is handled twice; at a clean
//!   stop the last batch is confirmed before the task ends. After a crash Telegram may
//!   deliver the last unconfirmed batch again; that is harmless because a decision goes
//!   through the store's conditional transition (a second decision of the same request is
//!   "already decided") — the offset needs no storage of its own;
//! - network errors and `5xx` answers back off exponentially ([`TelegramApproverBuilder::backoff`]),
//!   `429 Too Many Requests` waits exactly `parameters.retry_after`, and a set webhook
//!   (`409`) is deleted once. Telegram being unreachable never stops the gateway: allowed
//!   calls go on, and [`TelegramApprover::health`] (read by `/healthz`) says why the bot is
//!   not connected until it is back.
//!
//! # Messages and buttons
//!
//! The message (HTML parse mode, every value escaped, long parts truncated) shows the tool,
//! signature, agent, arguments and expiry. The callback data of its buttons is just the
//! verdict and the request's identity ([`format::callback_data`]), so a button keeps working
//! after a restart for as long as its request is pending. Presses count only from
//! `allowed_users`; anyone else is answered "not allowed" and the attempt is written to the
//! audit log (kind [`REFUSED_AUDIT_KIND`], actor `telegram:...`). Every press is
//! answered (`answerCallbackQuery`): approved, denied, already decided, expired.
//! Decisions are attributed `telegram:@username` (or `telegram:<user id>` without one).
//!
//! When a request ends (decision, timeout, cancellation) its message is edited to say what
//! happened, by whom and when, and loses its buttons. At shutdown the messages of pending
//! requests are edited to say the gateway stopped (their buttons stay); at the next start
//! they are restored. Edits are best effort: a failed edit is logged and blocks nothing.
//! If a message could not be sent because Telegram was unreachable, it is sent once
//! Telegram is back (if its request is still pending).

mod api;
pub mod format;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use frankenstein::types::{CallbackQuery, MaybeInaccessibleMessage, User};
use frankenstein::updates::{Update, UpdateContent};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::approvals::{
    ApprovalHandle, ApprovalRequest, Approver, ApproverError, BoxFuture, DecideOutcome, Resolution,
    Verdict,
};
use crate::config::{Secret, TelegramConfig};
use crate::store::{AuditEntry, AuditKind, RequestKey, Timestamp};
use api::{ApiFailure, Backoff, BotApi, MessageRef};
use format::ButtonTarget;

/// The name of the approver (the key of its message references and its health entry).
pub const DEFAULT_NAME: &str = "telegram";

/// Default long-poll timeout of `getUpdates`.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// Default first back-off after a network failure (doubling up to [`DEFAULT_MAX_BACKOFF`]).
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// Default longest back-off.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Default time a send or an edit keeps retrying before it is left to the background task
/// (sends) or given up (edits).
pub const DEFAULT_SEND_PATIENCE: Duration = Duration::from_secs(20);

/// How long shutdown waits for the polling task (a send in flight) before aborting it.
const STOP_WORKER_BUDGET: Duration = Duration::from_secs(5);

/// How long shutdown spends editing the messages of pending requests.
const STOP_EDIT_BUDGET: Duration = Duration::from_secs(5);

/// Answer to a press by someone not in `allowed_users`.
pub const NOT_ALLOWED_ANSWER: &str = "⛔ You are not allowed to decide requests of this gateway.";

/// Answer to a press the gateway could not take now (it is stopping); the request stays
/// pending and its button works again after the restart.
pub const RETRY_LATER_ANSWER: &str =
    "The gateway is restarting; this request is still pending. Press again in a moment.";

/// The audit kind of a button press by someone not in `allowed_users`.
pub const REFUSED_AUDIT_KIND: &str = "approval_refused";

/// The bot could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    /// `api_url` is not an http(s) URL.
    #[error(
        "messenger.telegram.api_url `{url}` is not a valid http(s) URL ({reason}); use e.g. https://api.telegram.org"
    )]
    InvalidApiUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No user may decide.
    #[error(
        "messenger.telegram.allowed_users is empty: nobody could approve; list the Telegram user ids allowed to decide"
    )]
    NoAllowedUsers,
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not build the HTTP client for the Telegram Bot API: {0}")]
    HttpClient(String),
}

/// Whether the bot can reach Telegram, as reported by [`TelegramApprover::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelegramHealth {
    /// Not yet in contact (just started).
    Starting,
    /// The last call reached Telegram.
    Connected,
    /// Calls fail (network, timeouts, 5xx) since `since`.
    Unreachable {
        /// When the failures began.
        since: Timestamp,
        /// The last failure.
        error: String,
    },
    /// Telegram refuses the bot (wrong token, another process polling, chat not found).
    Refused {
        /// Why, and what to fix.
        error: String,
    },
}

impl TelegramHealth {
    /// Whether the bot is connected.
    pub fn is_ok(&self) -> bool {
        matches!(self, TelegramHealth::Connected)
    }

    /// A one-line explanation for `/healthz`.
    pub fn describe(&self) -> String {
        match self {
            TelegramHealth::Starting => "telegram: not contacted yet".to_owned(),
            TelegramHealth::Connected => "telegram: connected".to_owned(),
            TelegramHealth::Unreachable { since, error } => format!(
                "telegram unreachable since {}: {error}",
                format::format_time(*since)
            ),
            TelegramHealth::Refused { error } => format!("telegram refuses the bot: {error}"),
        }
    }
}

/// Builds a [`TelegramApprover`].
#[derive(Debug, Clone)]
pub struct TelegramApproverBuilder {
    token: Secret,
    chat_id: i64,
    allowed_users: Vec<i64>,
    api_url: String,
    name: String,
    poll_timeout: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
    send_patience: Duration,
}

impl TelegramApproverBuilder {
    /// Telegram user ids whose presses count (at least one).
    pub fn allowed_users(mut self, users: impl IntoIterator<Item = i64>) -> Self {
        self.allowed_users = users.into_iter().collect();
        self
    }

    /// The Bot API base URL (default `https://api.telegram.org`).
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into();
        self
    }

    /// The approver's name (default `telegram`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The `getUpdates` long-poll timeout (default 30 s).
    pub fn poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }

    /// Back-off after network failures and 5xx answers: first wait and longest wait
    /// (defaults 1 s and 60 s).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// How long a send or an edit retries before it is handed to the background task
    /// (sends: delivered once Telegram is back) or given up (edits). Default 20 s.
    pub fn send_patience(mut self, patience: Duration) -> Self {
        self.send_patience = patience;
        self
    }

    /// Builds the approver (nothing is sent before the gateway starts it).
    pub fn build(self) -> Result<TelegramApprover, TelegramError> {
        if self.allowed_users.is_empty() {
            return Err(TelegramError::NoAllowedUsers);
        }
        let url = reqwest::Url::parse(&self.api_url).map_err(|e| TelegramError::InvalidApiUrl {
            url: self.api_url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TelegramError::InvalidApiUrl {
                url: self.api_url.clone(),
                reason: format!("scheme `{}` is not http or https", url.scheme()),
            });
        }
        let api = BotApi::new(&self.api_url, self.token.expose(), self.poll_timeout)
            .map_err(|e| TelegramError::HttpClient(e.without_url().to_string()))?;
        let (health, _) = watch::channel(TelegramHealth::Starting);
        Ok(TelegramApprover {
            inner: Arc::new(Inner {
                name: self.name,
                chat_id: self.chat_id,
                allowed: self.allowed_users.into_iter().collect(),
                api,
                poll_timeout: self.poll_timeout,
                backoff: Backoff::new(self.initial_backoff, self.max_backoff),
                send_patience: self.send_patience,
                health,
                state: Mutex::new(State::default()),
                jobs: tokio::sync::Mutex::new(()),
                stop: CancellationToken::new(),
                worker: Mutex::new(None),
            }),
        })
    }
}

/// The Telegram guardian bot (see the [module docs](self)). Cheap to clone.
#[derive(Clone)]
pub struct TelegramApprover {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TelegramApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramApprover")
            .field("name", &self.inner.name)
            .field("chat_id", &self.inner.chat_id)
            .field("health", &*self.inner.health.borrow())
            .finish_non_exhaustive()
    }
}

struct Inner {
    name: String,
    chat_id: i64,
    allowed: HashSet<i64>,
    api: BotApi,
    poll_timeout: Duration,
    backoff: Backoff,
    send_patience: Duration,
    health: watch::Sender<TelegramHealth>,
    state: Mutex<State>,
    /// Held while a background job sends or restores a message, and while a resolution
    /// looks for the message to edit, so a late send is never missed by its resolution.
    jobs: tokio::sync::Mutex<()>,
    stop: CancellationToken,
    worker: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    /// Messages of pending requests this process knows of.
    shown: HashMap<RequestKey, (ApprovalRequest, MessageRef)>,
    /// Work waiting for Telegram to be reachable.
    outbox: Vec<Job>,
}

#[derive(Debug, Clone)]
enum Job {
    /// Send the message of a pending request (sending failed, or it was never sent).
    Send(ApprovalRequest),
    /// Restore the message of a pending request after a restart (remove the "stopped" note).
    Restore(ApprovalRequest, MessageRef),
}

impl Job {
    fn request(&self) -> &ApprovalRequest {
        match self {
            Job::Send(request) | Job::Restore(request, _) => request,
        }
    }
}

impl TelegramApprover {
    /// A builder for the bot with `token` posting to `chat_id`.
    pub fn builder(token: impl Into<String>, chat_id: i64) -> TelegramApproverBuilder {
        TelegramApproverBuilder {
            token: Secret::new(token),
            chat_id,
            allowed_users: Vec::new(),
            api_url: crate::config::DEFAULT_TELEGRAM_API_URL.to_owned(),
            name: DEFAULT_NAME.to_owned(),
            poll_timeout: DEFAULT_POLL_TIMEOUT,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            send_patience: DEFAULT_SEND_PATIENCE,
        }
    }

    /// A builder from the `messenger.telegram` / `approvers:` configuration.
    pub fn from_config(config: &TelegramConfig) -> TelegramApproverBuilder {
        Self::builder(config.token.expose(), config.chat_id)
            .allowed_users(config.allowed_users.iter().copied())
            .api_url(config.api_url.clone())
    }

    /// The connection state now.
    pub fn health_status(&self) -> TelegramHealth {
        self.inner.health.borrow().clone()
    }

    /// Waits until the connection state satisfies `check`; returns it.
    pub async fn wait_for_health(&self, check: impl Fn(&TelegramHealth) -> bool) -> TelegramHealth {
        let mut rx = self.inner.health.subscribe();
        match rx.wait_for(|h| check(h)).await {
            Ok(health) => health.clone(),
            // The sender lives in `self.inner`, which outlives this call.
            Err(_) => self.health_status(),
        }
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_health(&self, health: TelegramHealth) {
        self.health.send_if_modified(|current| {
            if *current == health {
                return false;
            }
            *current = health;
            true
        });
    }

    /// Updates the health after a call's outcome.
    fn observe<T>(&self, result: &Result<T, ApiFailure>) {
        match result {
            Ok(_) | Err(ApiFailure::Flood { .. }) => self.set_health(TelegramHealth::Connected),
            Err(ApiFailure::Transient(error)) => {
                let since = match &*self.health.borrow() {
                    TelegramHealth::Unreachable { since, .. } => *since,
                    _ => Timestamp::now(),
                };
                self.set_health(TelegramHealth::Unreachable {
                    since,
                    error: error.clone(),
                });
            }
            Err(failure) if failure.is_bad_token() => self.set_health(TelegramHealth::Refused {
                error: format!("{failure}; check the bot token (messenger.telegram.token)"),
            }),
            Err(failure) if failure.is_conflict() => self.set_health(TelegramHealth::Refused {
                error: format!(
                    "{failure}; another process is polling this bot's updates (run one gateway per bot token)"
                ),
            }),
            Err(failure @ ApiFailure::Rejected { code: 403, .. }) => {
                self.set_health(TelegramHealth::Refused {
                    error: format!(
                        "{failure}; add the bot to chat {} and let it post there",
                        self.chat_id
                    ),
                })
            }
            Err(failure @ ApiFailure::Rejected { description, .. })
                if description.contains("chat not found") =>
            {
                self.set_health(TelegramHealth::Refused {
                    error: format!("{failure}; check messenger.telegram.chat_id"),
                })
            }
            Err(ApiFailure::Rejected { .. }) => self.set_health(TelegramHealth::Connected),
        }
    }

    /// Runs `call` until it succeeds, Telegram refuses it, `deadline` passes or the bot
    /// stops: waits `retry_after` on 429 and backs off on transient failures.
    async fn with_retry<T, F, Fut>(&self, deadline: Instant, mut call: F) -> Result<T, ApiFailure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiFailure>>,
    {
        let mut backoff = self.backoff;
        loop {
            let result = call().await;
            self.observe(&result);
            let wait = match &result {
                Ok(_) | Err(ApiFailure::Rejected { .. }) => return result,
                Err(ApiFailure::Flood { retry_after }) => *retry_after,
                Err(ApiFailure::Transient(_)) => backoff.next_delay(),
            };
            if Instant::now() + wait > deadline || self.stop.is_cancelled() {
                return result;
            }
            tokio::select! {
                () = self.stop.cancelled() => return result,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn deadline_for(&self, request: &ApprovalRequest) -> Instant {
        let now = Instant::now();
        let until_expiry = std::time::SystemTime::from(request.expires_at)
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        now + self.send_patience.min(until_expiry)
    }

    async fn send(&self, request: &ApprovalRequest) -> Result<MessageRef, ApiFailure> {
        let text = format::approval_text(request);
        let deadline = self.deadline_for(request);
        let sent = self
            .with_retry(deadline, || {
                self.api
                    .send_message(self.chat_id, &text, format::keyboard(&request.key))
            })
            .await?;
        self.state()
            .shown
            .insert(request.key.clone(), (request.clone(), sent));
        Ok(sent)
    }

    /// The message of `request`: from the stored references, or sent by this process.
    fn message_of(&self, request: &ApprovalRequest) -> Option<MessageRef> {
        let stored = request
            .refs_of(&self.name)
            .and_then(|refs| serde_json::from_value::<MessageRef>(refs.clone()).ok());
        stored.or_else(|| self.state().shown.get(&request.key).map(|(_, m)| *m))
    }

    async fn resolve_message(
        &self,
        request: &ApprovalRequest,
        resolution: &Resolution,
    ) -> Result<(), ApproverError> {
        let _jobs = self.jobs.lock().await;
        let message = {
            let mut state = self.state();
            state.outbox.retain(|job| job.request().key != request.key);
            let shown = state.shown.remove(&request.key).map(|(_, m)| m);
            drop(state);
            self.message_of(request).or(shown)
        };
        let Some(message) = message else {
            return Ok(());
        };
        let text = format::resolved_text(request, resolution);
        let deadline = Instant::now() + self.send_patience;
        match self
            .with_retry(deadline, || self.api.edit_message(message, &text, None))
            .await
        {
            Ok(()) => Ok(()),
            Err(failure) if failure.is_not_modified() => Ok(()),
            Err(failure) => Err(ApproverError::new(
                self.name.as_str(),
                format!(
                    "could not edit message {} of request {}/{}: {failure}",
                    message.message_id, request.key.agent_id, request.key.request_id
                ),
            )),
        }
    }

    /// Runs queued jobs once (called while Telegram answers). Failed jobs stay queued;
    /// sends of expired requests are dropped.
    async fn run_jobs(&self) {
        let _jobs = self.jobs.lock().await;
        let jobs = std::mem::take(&mut self.state().outbox);
        let now = Timestamp::now();
        let mut keep = Vec::new();
        for job in jobs {
            if job.request().expires_at <= now {
                continue;
            }
            let result = match &job {
                Job::Send(request) => {
                    let text = format::approval_text(request);
                    let sent = self
                        .api
                        .send_message(self.chat_id, &text, format::keyboard(&request.key))
                        .await;
                    self.observe(&sent);
                    sent.map(|message| {
                        tracing::info!(
                            agent = %request.key.agent_id,
                            request_id = %request.key.request_id,
                            message_id = message.message_id,
                            "telegram: sent a delayed approval message"
                        );
                        self.state()
                            .shown
                            .insert(request.key.clone(), (request.clone(), message));
                    })
                }
                Job::Restore(request, message) => {
                    let text = format::approval_text(request);
                    let edited = self
                        .api
                        .edit_message(*message, &text, Some(format::keyboard(&request.key)))
                        .await;
                    self.observe(&edited);
                    match edited {
                        Err(failure) if failure.is_not_modified() => Ok(()),
                        other => other,
                    }
                }
            };
            match result {
                Ok(()) => {}
                Err(ApiFailure::Rejected { .. }) => {
                    tracing::warn!(
                        agent = %job.request().key.agent_id,
                        request_id = %job.request().key.request_id,
                        error = %result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
                        "telegram: gave up on a queued message"
                    );
                }
                Err(_) => keep.push(job),
            }
        }
        self.state().outbox.extend(keep);
    }

    /// At start: pending requests from before this process get their message back (restored
    /// if it exists, sent if it never was).
    async fn catch_up(&self, handle: &ApprovalHandle, started: Timestamp) {
        let pending = handle.pending().await;
        let mut state = self.state();
        for request in pending {
            if request.created_at >= started || state.shown.contains_key(&request.key) {
                continue;
            }
            let stored = request
                .refs_of(&self.name)
                .and_then(|refs| serde_json::from_value::<MessageRef>(refs.clone()).ok());
            match stored {
                Some(message) => {
                    state
                        .shown
                        .insert(request.key.clone(), (request.clone(), message));
                    state.outbox.push(Job::Restore(request, message));
                }
                None => state.outbox.push(Job::Send(request)),
            }
        }
    }

    /// The long-poll loop (until stopped).
    async fn poll(self: Arc<Self>, handle: ApprovalHandle, started: Timestamp) {
        self.catch_up(&handle, started).await;
        let mut offset: Option<i64> = None;
        let mut backoff = self.backoff;
        let mut webhook_deleted = false;
        loop {
            // Queued messages go out as soon as possible, not after the next long poll.
            if !self.state().outbox.is_empty() {
                self.run_jobs().await;
            }
            // Until a call has succeeded (at start, after failures) poll without waiting, so
            // the health turns "connected" as soon as Telegram answers, not a long poll later.
            let timeout = if self.health.borrow().is_ok() {
                self.poll_timeout
            } else {
                Duration::ZERO
            };
            let polled = tokio::select! {
                () = self.stop.cancelled() => break,
                polled = self.api.get_updates(offset, timeout) => polled,
            };
            self.observe(&polled);
            let wait = match polled {
                Ok(updates) => {
                    backoff.reset();
                    for raw in updates {
                        let Some(id) = raw.get("update_id").and_then(Value::as_i64) else {
                            tracing::warn!("telegram: an update without update_id was skipped");
                            continue;
                        };
                        if offset.is_some_and(|o| id < o) {
                            continue;
                        }
                        offset = Some(id + 1);
                        match serde_json::from_value::<Update>(raw) {
                            Ok(Update {
                                content: UpdateContent::CallbackQuery(query),
                                ..
                            }) => self.on_press(&handle, *query).await,
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(update_id = id, %error, "telegram: unreadable update skipped")
                            }
                        }
                    }
                    continue;
                }
                Err(ApiFailure::Flood { retry_after }) => retry_after,
                Err(failure) if failure.is_conflict() && !webhook_deleted => {
                    webhook_deleted = true;
                    tracing::warn!(error = %failure, "telegram: getUpdates conflicts; deleting any webhook");
                    let deleted = self.api.delete_webhook().await;
                    self.observe(&deleted);
                    continue;
                }
                Err(failure) => {
                    tracing::warn!(error = %failure, "telegram: polling failed; backing off");
                    backoff.next_delay()
                }
            };
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        // Confirm what was handled, so the next start does not see it again.
        if let Some(offset) = offset {
            let confirm = self.api.get_updates(Some(offset), Duration::ZERO);
            if tokio::time::timeout(Duration::from_secs(5), confirm)
                .await
                .is_err()
            {
                tracing::debug!("telegram: could not confirm the last updates at shutdown");
            }
        }
    }

    /// Handles one button press; always answers it.
    async fn on_press(&self, handle: &ApprovalHandle, query: CallbackQuery) {
        let user = &query.from;
        let actor = actor_of(user);
        let message_id = match &query.message {
            Some(MaybeInaccessibleMessage::Message(m)) => Some(m.message_id),
            Some(MaybeInaccessibleMessage::InaccessibleMessage(m)) => Some(m.message_id),
            None => None,
        };
        let allowed = i64::try_from(user.id).is_ok_and(|id| self.allowed.contains(&id));
        if !allowed {
            tracing::warn!(
                user = user.id,
                actor = %actor,
                message_id,
                "telegram: button press by a user who is not in allowed_users; refused"
            );
            self.audit_refused(handle, &query, &actor, message_id).await;
            self.answer(&query.id, NOT_ALLOWED_ANSWER, true).await;
            return;
        }
        let Some(button) = query.data.as_deref().and_then(format::parse_callback_data) else {
            self.answer(&query.id, "This button is not one of this gateway's.", true)
                .await;
            return;
        };
        let key = match button.target {
            ButtonTarget::Key(key) => Some(key),
            ButtonTarget::Digest(digest) => handle
                .pending()
                .await
                .into_iter()
                .map(|r| r.key)
                .find(|key| format::key_digest(key) == digest),
        };
        let outcome = match &key {
            Some(key) => {
                handle
                    .decide(key.clone(), button.verdict, actor.as_str())
                    .await
            }
            None => DecideOutcome::NotFound,
        };
        let text = match (outcome, button.verdict) {
            (DecideOutcome::Won, Verdict::Allow) => "✅ Approved",
            (DecideOutcome::Won, Verdict::Deny) => "❌ Denied",
            (DecideOutcome::AlreadyDecided, _) => "This request was already decided.",
            (DecideOutcome::Expired, _) => "This request has expired.",
            (DecideOutcome::NotFound, _) => {
                // Still pending but not decidable: the gateway is stopping (or could not
                // record the decision); the request stays pending for the next start.
                let pending = match &key {
                    Some(key) => handle.pending().await.iter().any(|r| r.key == *key),
                    None => false,
                };
                if pending {
                    RETRY_LATER_ANSWER
                } else {
                    "This request is no longer pending (already decided or expired)."
                }
            }
        };
        tracing::info!(actor = %actor, message_id, ?outcome, "telegram: button pressed");
        self.answer(&query.id, text, false).await;
    }

    /// Writes a refused press to the audit log (kind `approval_refused`), under the agent
    /// and request the button belongs to when they can be told.
    async fn audit_refused(
        &self,
        handle: &ApprovalHandle,
        query: &CallbackQuery,
        actor: &str,
        message_id: Option<i32>,
    ) {
        let button = query.data.as_deref().and_then(format::parse_callback_data);
        let key = match button.as_ref().map(|b| &b.target) {
            Some(ButtonTarget::Key(key)) => Some(key.clone()),
            Some(ButtonTarget::Digest(digest)) => handle
                .pending()
                .await
                .into_iter()
                .map(|r| r.key)
                .find(|key| format::key_digest(key) == *digest),
            None => None,
        };
        let verdict = button.map(|b| match b.verdict {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        });
        let detail = serde_json::json!({
            "approver": self.name,
            "reason": "not in allowed_users",
            "telegram_user_id": query.from.id,
            "username": query.from.username,
            "verdict": verdict,
            "message_id": message_id,
        });
        let agent = key.as_ref().map(|k| k.agent_id.clone()).unwrap_or_default();
        let mut entry = AuditEntry::new(agent, AuditKind::Other(REFUSED_AUDIT_KIND.to_owned()))
            .actor(actor)
            .detail(detail);
        if let Some(key) = key {
            entry = entry.request_id(key.request_id);
        }
        if !handle.audit(entry).await {
            tracing::warn!(actor, "telegram: could not audit a refused button press");
        }
    }

    async fn answer(&self, query_id: &str, text: &str, alert: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let answered = self
            .with_retry(deadline, || self.api.answer_callback(query_id, text, alert))
            .await;
        if let Err(error) = answered {
            tracing::warn!(%error, "telegram: could not answer a button press");
        }
    }

    /// At shutdown: the messages of pending requests say the gateway stopped.
    async fn mark_stopped(&self) {
        let shown: Vec<(ApprovalRequest, MessageRef)> =
            self.state().shown.values().cloned().collect();
        if shown.is_empty() {
            return;
        }
        let at = Timestamp::now();
        let edits = shown.iter().map(|(request, message)| {
            let text = format::paused_text(request, at);
            async move {
                let edited = self
                    .api
                    .edit_message(*message, &text, Some(format::keyboard(&request.key)))
                    .await;
                if let Err(error) = edited {
                    tracing::warn!(%error, message_id = message.message_id, "telegram: could not mark a message as paused");
                }
            }
        });
        if tokio::time::timeout(STOP_EDIT_BUDGET, futures_util::future::join_all(edits))
            .await
            .is_err()
        {
            tracing::warn!("telegram: gave up marking messages as paused (Telegram too slow)");
        }
    }
}

/// `telegram:@username`, or `telegram:<id>` for users without a username.
pub fn actor_of(user: &User) -> String {
    match &user.username {
        Some(username) if !username.is_empty() => format!("telegram:@{username}"),
        _ => format!("telegram:{}", user.id),
    }
}

impl Approver for TelegramApprover {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn start(&self, handle: ApprovalHandle) -> BoxFuture<'_, Result<(), ApproverError>> {
        Box::pin(async move {
            let mut worker = self
                .inner
                .worker
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if worker.is_some() {
                return Err(ApproverError::new(
                    self.inner.name.as_str(),
                    "started twice; use one approver per gateway",
                ));
            }
            let inner = Arc::clone(&self.inner);
            *worker = Some(tokio::spawn(inner.poll(handle, Timestamp::now())));
            Ok(())
        })
    }

    fn notify<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApproverError>> {
        Box::pin(async move {
            let inner = &self.inner;
            match inner.send(request).await {
                Ok(message) => serde_json::to_value(message).map(Some).map_err(|e| {
                    ApproverError::new(inner.name.as_str(), format!("message reference: {e}"))
                }),
                Err(failure @ ApiFailure::Rejected { .. }) => Err(ApproverError::new(
                    inner.name.as_str(),
                    format!("could not send the approval message: {failure}"),
                )),
                Err(failure) => {
                    if !inner.stop.is_cancelled() {
                        inner.state().outbox.push(Job::Send(request.clone()));
                    }
                    Err(ApproverError::new(
                        inner.name.as_str(),
                        format!(
                            "could not send the approval message yet ({failure}); it is sent when Telegram is reachable again"
                        ),
                    ))
                }
            }
        })
    }

    fn resolved<'a>(
        &'a self,
        request: &'a ApprovalRequest,
        resolution: &'a Resolution,
    ) -> BoxFuture<'a, Result<(), ApproverError>> {
        Box::pin(self.inner.resolve_message(request, resolution))
    }

    fn health(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let health = self.health_status();
            if health.is_ok() {
                Ok(())
            } else {
                Err(health.describe())
            }
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.inner.stop.cancel();
            let worker = self
                .inner
                .worker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(mut worker) = worker {
                // The task ends at once unless a send is in flight; never wait long for it.
                match tokio::time::timeout(STOP_WORKER_BUDGET, &mut worker).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "telegram: the polling task failed"),
                    Err(_) => {
                        worker.abort();
                        tracing::warn!("telegram: the polling task did not stop in time; aborted");
                    }
                }
            }
            self.inner.mark_stopped().await;
        })
    }
}
