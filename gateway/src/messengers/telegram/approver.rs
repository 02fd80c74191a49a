//! [`TelegramApprover`]: the handle the gateway holds, and its [`Approver`] side (start,
//! notify, resolved, health, stop).

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use serde_json::Value;

use super::api::ApiFailure;
use super::health::TelegramHealth;
use super::inner::{Inner, Job};
use crate::approvals::{
    ApprovalHandle, ApprovalRequest, Approver, ApproverError, BoxFuture, Resolution,
};
use crate::store::Timestamp;

/// How long shutdown waits for the polling task (a send in flight) before aborting it.
const STOP_WORKER_BUDGET: Duration = Duration::from_secs(5);

/// The Telegram guardian bot (see the [module docs](super)). Cheap to clone.
#[derive(Clone)]
pub struct TelegramApprover {
    pub(super) inner: Arc<Inner>,
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

impl TelegramApprover {
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
