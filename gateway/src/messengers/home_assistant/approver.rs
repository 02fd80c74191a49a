//! [`HomeAssistantApprover`]: the handle the gateway holds, and its [`Approver`] side (start,
//! notify, resolved, health, stop).

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use serde_json::Value;

use super::health::HomeAssistantHealth;
use super::inner::Inner;
use crate::approvals::{
    ApprovalHandle, ApprovalRequest, Approver, ApproverError, BoxFuture, Resolution,
};

/// How long shutdown waits for the event task before aborting it.
const STOP_WORKER_BUDGET: Duration = Duration::from_secs(5);

/// The Home Assistant phone app approver (see the [module docs](super)). Cheap to clone.
#[derive(Clone)]
pub struct HomeAssistantApprover {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for HomeAssistantApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomeAssistantApprover")
            .field("name", &self.inner.name)
            .field("url", &self.inner.base_url)
            .field("devices", &self.inner.devices)
            .field("health", &*self.inner.health.borrow())
            .finish_non_exhaustive()
    }
}

impl HomeAssistantApprover {
    /// The connection state now.
    pub fn health_status(&self) -> HomeAssistantHealth {
        self.inner.health.borrow().clone()
    }

    /// Waits until the connection state satisfies `check`; returns it.
    pub async fn wait_for_health(
        &self,
        check: impl Fn(&HomeAssistantHealth) -> bool,
    ) -> HomeAssistantHealth {
        let mut rx = self.inner.health.subscribe();
        match rx.wait_for(|h| check(h)).await {
            Ok(health) => health.clone(),
            // The sender lives in `self.inner`, which outlives this call.
            Err(_) => self.health_status(),
        }
    }
}

impl Approver for HomeAssistantApprover {
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
            *worker = Some(tokio::spawn(inner.listen(handle)));
            Ok(())
        })
    }

    fn notify<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApproverError>> {
        Box::pin(async move {
            let notification = self.inner.send(request).await?;
            serde_json::to_value(notification).map(Some).map_err(|e| {
                ApproverError::new(
                    self.inner.name.as_str(),
                    format!("notification reference: {e}"),
                )
            })
        })
    }

    fn resolved<'a>(
        &'a self,
        request: &'a ApprovalRequest,
        resolution: &'a Resolution,
    ) -> BoxFuture<'a, Result<(), ApproverError>> {
        Box::pin(self.inner.resolve_notification(request, resolution))
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
                match tokio::time::timeout(STOP_WORKER_BUDGET, &mut worker).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "home assistant: the event task failed");
                    }
                    Err(_) => {
                        worker.abort();
                        tracing::warn!(
                            "home assistant: the event task did not stop in time; aborted"
                        );
                    }
                }
            }
        })
    }
}
