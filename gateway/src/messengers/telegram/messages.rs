//! The approval messages: sending one, sending or restoring it later when Telegram was
//! unreachable, catching up at start, editing it when its request ends, and marking the
//! pending ones "stopped" at shutdown.

use std::time::Duration;

use tokio::time::Instant;

use super::api::{ApiFailure, MessageRef};
use super::format;
use super::inner::{Inner, Job};
use crate::approvals::{ApprovalHandle, ApprovalRequest, ApproverError, Resolution};
use crate::store::Timestamp;

/// How long shutdown spends editing the messages of pending requests.
const STOP_EDIT_BUDGET: Duration = Duration::from_secs(5);

impl Inner {
    pub(super) async fn send(&self, request: &ApprovalRequest) -> Result<MessageRef, ApiFailure> {
        let text = format::approval_text(request);
        let deadline = self.deadline_for(request);
        let sent = self
            .with_retry(deadline, || {
                self.api.send_message(
                    self.chat_id,
                    &text,
                    format::keyboard(&request.key, &self.grant_durations, &self.deny_reasons),
                )
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

    pub(super) async fn resolve_message(
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
    pub(super) async fn run_jobs(&self) {
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
                        .send_message(
                            self.chat_id,
                            &text,
                            format::keyboard(
                                &request.key,
                                &self.grant_durations,
                                &self.deny_reasons,
                            ),
                        )
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
                        .edit_message(
                            *message,
                            &text,
                            Some(format::keyboard(
                                &request.key,
                                &self.grant_durations,
                                &self.deny_reasons,
                            )),
                        )
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
    pub(super) async fn catch_up(&self, handle: &ApprovalHandle, started: Timestamp) {
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

    /// At shutdown: the messages of pending requests say the gateway stopped.
    pub(super) async fn mark_stopped(&self) {
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
                    .edit_message(*message, &text, Some(format::keyboard(&request.key, &self.grant_durations, &self.deny_reasons)))
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
