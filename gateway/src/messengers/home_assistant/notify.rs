//! The REST side: calling `notify.mobile_app_<device>` for each phone
//! (`POST /api/services/notify/mobile_app_<device>`), retrying while Home Assistant is
//! unreachable or answers 5xx, for the notification of a new request and for its
//! replacement once it ended.

use std::fmt;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::format;
use super::inner::{Inner, NotificationRef};
use crate::approvals::{ApprovalRequest, ApproverError, Resolution};
use crate::store::Timestamp;

/// Why a notify call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyFailure {
    /// Home Assistant answered 4xx: retrying will not help (unknown device, bad token).
    Rejected {
        /// The HTTP status.
        status: u16,
        /// What to check.
        hint: String,
    },
    /// Network failure, timeout or 5xx: may work later.
    Unavailable(String),
}

impl fmt::Display for NotifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyFailure::Rejected { status, hint } => write!(f, "HTTP {status}: {hint}"),
            NotifyFailure::Unavailable(error) => f.write_str(error),
        }
    }
}

impl Inner {
    /// One call of `notify.mobile_app_<device>` with `data`.
    async fn call_notify(&self, device: &str, data: &Value) -> Result<(), NotifyFailure> {
        let url = format!("{}/api/services/notify/mobile_app_{device}", self.base_url);
        let response = self
            .http
            .post(&url)
            .bearer_auth(self.token.expose())
            .json(data)
            .send()
            .await
            // Without the URL: it names the device only, but keep the error one line.
            .map_err(|e| NotifyFailure::Unavailable(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(()),
            401 | 403 => Err(NotifyFailure::Rejected {
                status,
                hint: "Home Assistant refuses the token; create a long-lived access token (profile → Security) and set it as the approver's token".to_owned(),
            }),
            400 | 404 => Err(NotifyFailure::Rejected {
                status,
                hint: format!(
                    "no service notify.mobile_app_{device}: is the companion app installed and registered, and is `{device}` the name of its service (Developer tools → Actions)?"
                ),
            }),
            400..=499 => Err(NotifyFailure::Rejected {
                status,
                hint: "Home Assistant refused the notification".to_owned(),
            }),
            _ => Err(NotifyFailure::Unavailable(format!(
                "Home Assistant answered HTTP {status}"
            ))),
        }
    }

    /// Calls the notify service of `device`, retrying unavailable failures with back-off
    /// until `deadline` (or the approver stops).
    async fn notify_with_retry(
        &self,
        device: &str,
        data: &Value,
        deadline: Instant,
    ) -> Result<(), NotifyFailure> {
        let mut delay = self.initial_backoff;
        loop {
            match self.call_notify(device, data).await {
                Err(NotifyFailure::Unavailable(error)) => {
                    let wake = Instant::now() + delay;
                    if wake >= deadline || self.stop.is_cancelled() {
                        return Err(NotifyFailure::Unavailable(error));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(wake) => {}
                        _ = self.stop.cancelled() => return Err(NotifyFailure::Unavailable(error)),
                    }
                    delay = (delay * 2).min(self.max_backoff);
                }
                other => return other,
            }
        }
    }

    /// Notifies every phone of `request`; returns the references to store. Fails only if no
    /// phone could be notified.
    pub(super) async fn send(
        &self,
        request: &ApprovalRequest,
    ) -> Result<NotificationRef, ApproverError> {
        let code = new_code();
        let data = format::approval_notification(request, &code, self.grant, Timestamp::now());
        let now = Timestamp::now();
        let until_expiry = Duration::from_millis(
            u64::try_from(request.expires_at.as_millis() - now.as_millis()).unwrap_or(0),
        );
        let deadline = Instant::now() + self.send_patience.min(until_expiry);
        let notification = NotificationRef {
            code: code.clone(),
            tag: format::tag(&code),
            devices: self.devices.clone(),
        };
        // Known before the first phone can answer, so an early press finds its request.
        self.codes()
            .insert(code.clone(), (request.key.clone(), notification.clone()));
        let data = &data;
        let sends = self.devices.iter().map(|device| async move {
            (device, self.notify_with_retry(device, data, deadline).await)
        });
        let mut failures = Vec::new();
        for (device, result) in futures_util::future::join_all(sends).await {
            if let Err(failure) = result {
                tracing::warn!(
                    approver = %self.name,
                    device = %device,
                    agent = %request.key.agent_id,
                    request_id = %request.key.request_id,
                    error = %failure,
                    "home assistant: could not notify a phone"
                );
                failures.push(format!("{device}: {failure}"));
            }
        }
        if failures.len() == self.devices.len() {
            self.codes().remove(&code);
            return Err(ApproverError::new(
                self.name.as_str(),
                format!("could not notify any phone ({})", failures.join("; ")),
            ));
        }
        Ok(notification)
    }

    /// Replaces the notification of `request` with one saying how it ended.
    pub(super) async fn resolve_notification(
        &self,
        request: &ApprovalRequest,
        resolution: &Resolution,
    ) -> Result<(), ApproverError> {
        let Some(notification) = self.notification_of(request) else {
            return Ok(());
        };
        self.codes().remove(&notification.code);
        let data = format::resolved_notification(request, &notification.code, resolution);
        let deadline = Instant::now() + self.send_patience;
        let mut failures = Vec::new();
        for device in &notification.devices {
            if let Err(failure) = self.notify_with_retry(device, &data, deadline).await {
                failures.push(format!("{device}: {failure}"));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ApproverError::new(
                self.name.as_str(),
                format!(
                    "could not replace the notification of request {}/{} ({})",
                    request.key.agent_id,
                    request.key.request_id,
                    failures.join("; ")
                ),
            ))
        }
    }
}

/// A new request code: 128 random bits, hex.
fn new_code() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}
