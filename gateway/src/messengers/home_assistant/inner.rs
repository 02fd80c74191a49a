//! The approver's shared state: settings, the HTTP client, the connection's health, the
//! codes of the requests notified by this process, and the background task.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::health::HomeAssistantHealth;
use crate::approvals::ApprovalRequest;
use crate::config::Secret;
use crate::store::RequestKey;

/// What is stored with a request (its approver references): the code in its action ids,
/// the notification tag, and the phones it was sent to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct NotificationRef {
    pub code: String,
    pub tag: String,
    pub devices: Vec<String>,
}

pub(super) struct Inner {
    pub name: String,
    /// `http(s)://host:port` without a trailing slash.
    pub base_url: String,
    /// `ws(s)://host:port/api/websocket`.
    pub websocket_url: String,
    pub token: Secret,
    pub devices: Vec<String>,
    pub users: Vec<String>,
    pub grant: Option<Duration>,
    pub http: reqwest::Client,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub send_patience: Duration,
    pub ping_interval: Duration,
    pub health: watch::Sender<HomeAssistantHealth>,
    /// code → (request, where it was sent), for requests notified by this process (before
    /// their references are stored, and after: both are looked up).
    pub codes: Mutex<HashMap<String, (RequestKey, NotificationRef)>>,
    pub stop: CancellationToken,
    pub worker: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    pub(super) fn codes(&self) -> MutexGuard<'_, HashMap<String, (RequestKey, NotificationRef)>> {
        self.codes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The notification of `request`: from its stored references, or sent by this process.
    pub(super) fn notification_of(&self, request: &ApprovalRequest) -> Option<NotificationRef> {
        let stored = request
            .refs_of(&self.name)
            .and_then(|refs| serde_json::from_value::<NotificationRef>(refs.clone()).ok());
        stored.or_else(|| {
            self.codes()
                .values()
                .find(|(key, _)| *key == request.key)
                .map(|(_, n)| n.clone())
        })
    }

    pub(super) fn set_health(&self, health: HomeAssistantHealth) {
        self.health.send_if_modified(|current| {
            // Keep the start of an outage while it lasts.
            let same_outage = matches!(
                (&*current, &health),
                (
                    HomeAssistantHealth::Unreachable { .. },
                    HomeAssistantHealth::Unreachable { .. }
                )
            );
            let next = match (&*current, health) {
                (
                    HomeAssistantHealth::Unreachable { since, .. },
                    HomeAssistantHealth::Unreachable { error, .. },
                ) if same_outage => HomeAssistantHealth::Unreachable {
                    since: *since,
                    error,
                },
                (_, other) => other,
            };
            if *current == next {
                false
            } else {
                *current = next;
                true
            }
        });
    }
}
