//! [`HomeAssistantApproverBuilder`]: the approver's settings and their defaults, and what can
//! go wrong setting it up ([`HomeAssistantError`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::approver::HomeAssistantApprover;
use super::health::HomeAssistantHealth;
use super::inner::Inner;
use crate::config::{
    DEFAULT_HOME_ASSISTANT_APPROVER_NAME, DEFAULT_PHONE_GRANT, HomeAssistantApproverConfig, Secret,
};

/// Default first wait before reconnecting (doubling up to [`DEFAULT_MAX_BACKOFF`]).
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// Default longest wait before reconnecting.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Default time a notification (or its replacement) keeps retrying when Home Assistant is
/// unreachable or answers 5xx.
pub const DEFAULT_SEND_PATIENCE: Duration = Duration::from_secs(20);

/// Timeout of one REST call.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// How to fill `users:` (the config's error and [`HomeAssistantError::NoUsers`] say it).
pub(crate) const USERS_HELP: &str = "list the Home Assistant user ids whose presses count, e.g. [\"5f1c0d6a3b8e4e2f9a7d41c2b6e8f013\"] (Settings → People → Users with Advanced mode on in your profile; or context.user_id of a press in Developer tools → Events): otherwise any administrator token or automation that fires mobile_app_notification_action could approve";

/// The approver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HomeAssistantError {
    /// `url` is not an http(s) URL.
    #[error(
        "approvers (type home_assistant): url `{url}` is not a valid http(s) URL ({reason}); use e.g. http://homeassistant.local:8123"
    )]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No phone to notify.
    #[error(
        "approvers (type home_assistant): no devices: nobody would be notified; list the <device> of each notify.mobile_app_<device>"
    )]
    NoDevices,
    /// No user whose presses count.
    #[error("approvers (type home_assistant): no users: {}", USERS_HELP)]
    NoUsers,
    /// The HTTP client could not be built (TLS set-up).
    #[error("could not build the HTTP client for Home Assistant: {0}")]
    HttpClient(String),
}

/// Builds a [`HomeAssistantApprover`].
#[derive(Debug, Clone)]
pub struct HomeAssistantApproverBuilder {
    url: String,
    token: Secret,
    devices: Vec<String>,
    users: Vec<String>,
    grant: Option<Duration>,
    name: String,
    initial_backoff: Duration,
    max_backoff: Duration,
    send_patience: Duration,
    ping_interval: Duration,
}

impl HomeAssistantApproverBuilder {
    /// The phones to notify: the `<device>` of each `notify.mobile_app_<device>` (at least one).
    pub fn devices<S: Into<String>>(mut self, devices: impl IntoIterator<Item = S>) -> Self {
        self.devices = devices.into_iter().map(Into::into).collect();
        self
    }

    /// Home Assistant user ids whose presses count (at least one: a press from anyone else,
    /// such as another administrator's token or an automation, is refused and audited).
    pub fn users<S: Into<String>>(mut self, users: impl IntoIterator<Item = S>) -> Self {
        self.users = users.into_iter().map(Into::into).collect();
        self
    }

    /// The duration of the "Allow for" action (default 1 h; `None`: no such action).
    pub fn grant(mut self, grant: Option<Duration>) -> Self {
        self.grant = grant;
        self
    }

    /// The approver's name (default `home_assistant`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Reconnection back-off: first wait and longest wait (defaults 1 s and 60 s).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// How long a notification retries while Home Assistant is unreachable (default 20 s).
    pub fn send_patience(mut self, patience: Duration) -> Self {
        self.send_patience = patience;
        self
    }

    /// How often the connection is pinged to notice a dead one (default 30 s).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Builds the approver (nothing is sent before the gateway starts it).
    pub fn build(self) -> Result<HomeAssistantApprover, HomeAssistantError> {
        if self.devices.is_empty() {
            return Err(HomeAssistantError::NoDevices);
        }
        if self.users.is_empty() {
            return Err(HomeAssistantError::NoUsers);
        }
        let base = self.url.trim_end_matches('/').to_owned();
        let invalid = |reason: String| HomeAssistantError::InvalidUrl {
            url: self.url.clone(),
            reason,
        };
        let parsed = reqwest::Url::parse(&base).map_err(|e| invalid(e.to_string()))?;
        let ws_scheme = match parsed.scheme() {
            "http" => "ws",
            "https" => "wss",
            other => return Err(invalid(format!("scheme `{other}` is not http or https"))),
        };
        let websocket_url = format!(
            "{ws_scheme}{}/api/websocket",
            &base[parsed.scheme().len()..]
        );
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| HomeAssistantError::HttpClient(e.without_url().to_string()))?;
        let (health, _) = watch::channel(HomeAssistantHealth::Starting);
        Ok(HomeAssistantApprover {
            inner: Arc::new(Inner {
                name: self.name,
                base_url: base,
                websocket_url,
                token: self.token,
                devices: self.devices,
                users: self.users,
                grant: self.grant,
                http,
                initial_backoff: self.initial_backoff,
                max_backoff: self.max_backoff,
                send_patience: self.send_patience,
                ping_interval: self.ping_interval,
                health,
                codes: Mutex::new(HashMap::new()),
                stop: CancellationToken::new(),
                worker: Mutex::new(None),
            }),
        })
    }
}

impl HomeAssistantApprover {
    /// A builder for the approver talking to Home Assistant at `url` (e.g.
    /// `http://homeassistant.local:8123`) with the long-lived access token `token`.
    pub fn builder(
        url: impl Into<String>,
        token: impl Into<String>,
    ) -> HomeAssistantApproverBuilder {
        HomeAssistantApproverBuilder {
            url: url.into(),
            token: Secret::new(token),
            devices: Vec::new(),
            users: Vec::new(),
            grant: Some(DEFAULT_PHONE_GRANT),
            name: DEFAULT_HOME_ASSISTANT_APPROVER_NAME.to_owned(),
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            send_patience: DEFAULT_SEND_PATIENCE,
            ping_interval: Duration::from_secs(30),
        }
    }

    /// A builder with the settings of `approvers: - type: home_assistant`.
    pub fn from_config(config: &HomeAssistantApproverConfig) -> HomeAssistantApproverBuilder {
        Self::builder(config.url.clone(), config.token.expose())
            .devices(config.devices.iter().cloned())
            .users(config.users.iter().cloned())
            .grant(config.grant)
            .name(config.name.clone())
    }
}
