//! [`ChannelApprover`]: an in-process approver whose "humans" are the code holding it. Every
//! notification and resolution arrives as an [`ApproverEvent`] on a channel; decisions go back
//! through [`ChannelApprover::approve`] and [`ChannelApprover::deny`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    ApprovalHandle, ApprovalRequest, Approver, ApproverError, BoxFuture, DecideOutcome, Resolution,
    Verdict,
};
use crate::store::RequestKey;

/// What a [`ChannelApprover`] was told.
#[derive(Debug, Clone, PartialEq)]
pub enum ApproverEvent {
    /// A new pending request (after its row was committed).
    Notified(ApprovalRequest),
    /// How a request ended.
    Resolved(ApprovalRequest, Resolution),
}

/// An approver driven through a channel: for tests, demos and programs embedding the gateway.
///
/// `notify` returns the references `{"message": n}` (n counts from 1), which the gateway
/// persists, so a test can check that references survive a restart.
pub struct ChannelApprover {
    name: String,
    sender: mpsc::UnboundedSender<ApproverEvent>,
    receiver: tokio::sync::Mutex<mpsc::UnboundedReceiver<ApproverEvent>>,
    handle: Mutex<Option<ApprovalHandle>>,
    messages: AtomicU64,
}

impl std::fmt::Debug for ChannelApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelApprover")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ChannelApprover {
    /// A channel approver called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            name: name.into(),
            sender,
            receiver: tokio::sync::Mutex::new(receiver),
            handle: Mutex::new(None),
            messages: AtomicU64::new(0),
        }
    }

    /// The next event (waits for one). `None` only if the approver was dropped meanwhile.
    pub async fn next_event(&self) -> Option<ApproverEvent> {
        self.receiver.lock().await.recv().await
    }

    /// The next event if one is already queued.
    pub async fn try_next_event(&self) -> Option<ApproverEvent> {
        self.receiver.lock().await.try_recv().ok()
    }

    /// Waits for the next [`ApproverEvent::Notified`] (skipping resolutions) and returns it.
    pub async fn next_request(&self) -> Option<ApprovalRequest> {
        loop {
            match self.next_event().await? {
                ApproverEvent::Notified(request) => return Some(request),
                ApproverEvent::Resolved(..) => {}
            }
        }
    }

    /// Waits for the next [`ApproverEvent::Resolved`] (skipping notifications) and returns it.
    pub async fn next_resolution(&self) -> Option<(ApprovalRequest, Resolution)> {
        loop {
            match self.next_event().await? {
                ApproverEvent::Resolved(request, resolution) => {
                    return Some((request, resolution));
                }
                ApproverEvent::Notified(_) => {}
            }
        }
    }

    fn current_handle(&self) -> Option<ApprovalHandle> {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Submits a decision as `actor`; [`DecideOutcome::NotFound`] before the gateway started.
    pub async fn decide(
        &self,
        key: RequestKey,
        verdict: Verdict,
        actor: impl Into<String>,
    ) -> DecideOutcome {
        match self.current_handle() {
            Some(handle) => handle.decide(key, verdict, actor).await,
            None => DecideOutcome::NotFound,
        }
    }

    /// Approves `key` as `actor`.
    pub async fn approve(&self, key: RequestKey, actor: impl Into<String>) -> DecideOutcome {
        self.decide(key, Verdict::Allow, actor).await
    }

    /// Denies `key` as `actor`.
    pub async fn deny(&self, key: RequestKey, actor: impl Into<String>) -> DecideOutcome {
        self.decide(key, Verdict::Deny, actor).await
    }

    /// Approves `key` as `actor` and grants the same call for `duration`
    /// ([`ApprovalHandle::allow_for`]).
    pub async fn allow_for(
        &self,
        key: RequestKey,
        actor: impl Into<String>,
        duration: std::time::Duration,
    ) -> DecideOutcome {
        match self.current_handle() {
            Some(handle) => handle.allow_for(key, actor, duration).await,
            None => DecideOutcome::NotFound,
        }
    }

    /// Approves `key` as `actor` and always allows the same call
    /// ([`ApprovalHandle::always_allow`]).
    pub async fn always_allow(&self, key: RequestKey, actor: impl Into<String>) -> DecideOutcome {
        match self.current_handle() {
            Some(handle) => handle.always_allow(key, actor).await,
            None => DecideOutcome::NotFound,
        }
    }

    /// The handle given at start-up, if the gateway has started.
    pub fn handle(&self) -> Option<ApprovalHandle> {
        self.current_handle()
    }
}

impl Approver for ChannelApprover {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&self, handle: ApprovalHandle) -> BoxFuture<'_, Result<(), ApproverError>> {
        *self.handle.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Box::pin(async { Ok(()) })
    }

    fn notify<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApproverError>> {
        Box::pin(async move {
            let message = self.messages.fetch_add(1, Ordering::Relaxed) + 1;
            // A dropped receiver only means nobody listens; the request still waits.
            let _ = self.sender.send(ApproverEvent::Notified(request.clone()));
            Ok(Some(json!({ "message": message })))
        })
    }

    fn resolved<'a>(
        &'a self,
        request: &'a ApprovalRequest,
        resolution: &'a Resolution,
    ) -> BoxFuture<'a, Result<(), ApproverError>> {
        Box::pin(async move {
            let _ = self
                .sender
                .send(ApproverEvent::Resolved(request.clone(), resolution.clone()));
            Ok(())
        })
    }
}
