//! [`TelegramApproverBuilder`]: the bot's settings and their defaults, and what can go wrong
//! setting it up ([`TelegramError`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::api::{Backoff, BotApi};
use super::approver::TelegramApprover;
use super::health::TelegramHealth;
use super::inner::{Inner, State};
use crate::config::{Secret, TelegramConfig};

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

/// Builds a [`TelegramApprover`].
#[derive(Debug, Clone)]
pub struct TelegramApproverBuilder {
    token: Secret,
    chat_id: i64,
    allowed_users: Vec<i64>,
    deny_reasons: Vec<String>,
    grant_durations: Vec<Duration>,
    api_url: String,
    name: String,
    poll_timeout: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
    send_patience: Duration,
}

impl TelegramApproverBuilder {
    /// The preset reasons offered as "deny, because ..." buttons under Allow / Deny (default
    /// [`DEFAULT_DENY_REASONS`](super::format::DEFAULT_DENY_REASONS); empty for none; at most
    /// four are shown). The agent gets the reason of the button pressed.
    pub fn deny_reasons<S: Into<String>>(mut self, reasons: impl IntoIterator<Item = S>) -> Self {
        self.deny_reasons = reasons.into_iter().map(Into::into).collect();
        self
    }

    /// The durations offered as "allow for ..." buttons (default
    /// [`DEFAULT_GRANT_DURATIONS`](crate::approvals::DEFAULT_GRANT_DURATIONS): 15 min, 1 h,
    /// 8 h; empty for none; at most four are shown). A press approves the request and grants
    /// the agent the same call for that long ([`crate::approvals::ApprovalHandle::allow_for`]).
    pub fn grant_durations(mut self, durations: impl IntoIterator<Item = Duration>) -> Self {
        self.grant_durations = durations.into_iter().collect();
        self
    }

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
                deny_reasons: self.deny_reasons,
                grant_durations: self.grant_durations,
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

impl TelegramApprover {
    /// A builder for the bot with `token` posting to `chat_id`.
    pub fn builder(token: impl Into<String>, chat_id: i64) -> TelegramApproverBuilder {
        TelegramApproverBuilder {
            token: Secret::new(token),
            chat_id,
            allowed_users: Vec::new(),
            deny_reasons: super::format::DEFAULT_DENY_REASONS
                .iter()
                .map(|r| (*r).to_owned())
                .collect(),
            grant_durations: crate::approvals::DEFAULT_GRANT_DURATIONS.to_vec(),
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
            .deny_reasons(config.deny_reasons.iter().cloned())
            .grant_durations(config.grant_durations.iter().copied())
            .api_url(config.api_url.clone())
    }
}
