//! The long-poll loop over `getUpdates`, and the button presses it delivers: who may decide,
//! what each press decides, how it is answered, and how a refused press is audited.

use std::sync::Arc;
use std::time::Duration;

use frankenstein::types::{CallbackQuery, MaybeInaccessibleMessage, User};
use frankenstein::updates::{Update, UpdateContent};
use serde_json::Value;
use tokio::time::Instant;

use super::api::ApiFailure;
use super::format::{self, ButtonTarget};
use super::inner::Inner;
use crate::approvals::{ApprovalHandle, DecideOutcome, Verdict};
use crate::store::{AuditEntry, AuditKind, Timestamp};

/// Answer to a press by someone not in `allowed_users`.
pub const NOT_ALLOWED_ANSWER: &str = "⛔ You are not allowed to decide requests of this gateway.";

/// Answer to a press the gateway could not take now (it is stopping); the request stays
/// pending and its button works again after the restart.
pub const RETRY_LATER_ANSWER: &str =
    "The gateway is restarting; this request is still pending. Press again in a moment.";

/// The audit kind of a button press by someone not in `allowed_users`.
pub const REFUSED_AUDIT_KIND: &str = "approval_refused";

impl Inner {
    /// The long-poll loop (until stopped).
    pub(super) async fn poll(self: Arc<Self>, handle: ApprovalHandle, started: Timestamp) {
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
        let reason = button
            .reason
            .and_then(|i| self.deny_reasons.get(usize::from(i)));
        let grant = button
            .grant
            .and_then(|i| self.grant_durations.get(usize::from(i)).copied());
        let outcome = match (&key, reason, grant) {
            (Some(key), None, None) if button.always => {
                handle.always_allow(key.clone(), actor.as_str()).await
            }
            (Some(key), None, Some(duration)) => {
                handle
                    .allow_for(key.clone(), actor.as_str(), duration)
                    .await
            }
            (Some(key), Some(reason), _) => {
                handle
                    .deny_because(key.clone(), actor.as_str(), reason)
                    .await
            }
            (Some(key), None, None) => {
                handle
                    .decide(key.clone(), button.verdict, actor.as_str())
                    .await
            }
            (None, _, _) => DecideOutcome::NotFound,
        };
        let text = match (outcome, button.verdict) {
            (DecideOutcome::Won, Verdict::Allow) => "✅ Approved",
            (DecideOutcome::Won, Verdict::Deny) => "❌ Denied",
            (DecideOutcome::AlreadyDecided, _) => "This request was already decided.",
            (DecideOutcome::Expired, _) => "This request has expired.",
            (DecideOutcome::Cancelled, _) => "The agent cancelled this request.",
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
}

/// `telegram:@username`, or `telegram:<id>` for users without a username.
pub fn actor_of(user: &User) -> String {
    match &user.username {
        Some(username) if !username.is_empty() => format!("telegram:@{username}"),
        _ => format!("telegram:{}", user.id),
    }
}
