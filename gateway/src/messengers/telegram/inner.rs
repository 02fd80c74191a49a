//! The state every [`TelegramApprover`](super::TelegramApprover) clone shares ([`Inner`]): the
//! Bot API client, the health it reports, the messages it knows of and the work waiting for
//! Telegram; and how one call is retried and what its outcome says about the health.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::{ApiFailure, Backoff, BotApi, MessageRef};
use super::health::TelegramHealth;
use crate::approvals::ApprovalRequest;
use crate::store::{RequestKey, Timestamp};

/// What the bot holds; see the fields.
pub(super) struct Inner {
    pub(super) name: String,
    pub(super) chat_id: i64,
    pub(super) allowed: HashSet<i64>,
    /// The preset reasons of the "deny, because" buttons.
    pub(super) deny_reasons: Vec<String>,
    /// The durations of the "allow for" buttons.
    pub(super) grant_durations: Vec<Duration>,
    pub(super) api: BotApi,
    pub(super) poll_timeout: Duration,
    pub(super) backoff: Backoff,
    pub(super) send_patience: Duration,
    pub(super) health: watch::Sender<TelegramHealth>,
    pub(super) state: Mutex<State>,
    /// Held while a background job sends or restores a message, and while a resolution
    /// looks for the message to edit, so a late send is never missed by its resolution.
    pub(super) jobs: tokio::sync::Mutex<()>,
    pub(super) stop: CancellationToken,
    pub(super) worker: Mutex<Option<JoinHandle<()>>>,
}

/// What the bot knows of its messages and the work it owes Telegram.
#[derive(Default)]
pub(super) struct State {
    /// Messages of pending requests this process knows of.
    pub(super) shown: HashMap<RequestKey, (ApprovalRequest, MessageRef)>,
    /// Work waiting for Telegram to be reachable.
    pub(super) outbox: Vec<Job>,
}

/// Work waiting for Telegram to be reachable.
#[derive(Debug, Clone)]
pub(super) enum Job {
    /// Send the message of a pending request (sending failed, or it was never sent).
    Send(ApprovalRequest),
    /// Restore the message of a pending request after a restart (remove the "stopped" note).
    Restore(ApprovalRequest, MessageRef),
}

impl Job {
    pub(super) fn request(&self) -> &ApprovalRequest {
        match self {
            Job::Send(request) | Job::Restore(request, _) => request,
        }
    }
}

impl Inner {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn set_health(&self, health: TelegramHealth) {
        self.health.send_if_modified(|current| {
            if *current == health {
                return false;
            }
            *current = health;
            true
        });
    }

    /// Updates the health after a call's outcome.
    pub(super) fn observe<T>(&self, result: &Result<T, ApiFailure>) {
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
    pub(super) async fn with_retry<T, F, Fut>(
        &self,
        deadline: Instant,
        mut call: F,
    ) -> Result<T, ApiFailure>
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

    pub(super) fn deadline_for(&self, request: &ApprovalRequest) -> Instant {
        let now = Instant::now();
        let until_expiry = std::time::SystemTime::from(request.expires_at)
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        now + self.send_patience.min(until_expiry)
    }
}
