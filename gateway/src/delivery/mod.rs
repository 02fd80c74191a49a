//! Delivery of outcomes to agents, whatever front they came through: who waits for which
//! request ([`Waiter`]), handing a final outcome to every waiter, attaching a re-sent call to
//! its stored request ([`Delivery::attach`]), the outcomes an agent has not received yet
//! ([`Delivery::undelivered`]) and their acknowledgements ([`Delivery::mark_delivered`]).
//!
//! Its own state is the table of waiters; everything durable is in the store: a waiter is only
//! a shortcut, and an outcome nobody waits for stays fetchable until it is acknowledged.
//!
//! Two delivery contracts, told apart by who named the request ([`client_named`]):
//!
//! - **At least once** for a call that carried the client's `request_id`: its outcome stays in
//!   `get_pending_results` until the agent acknowledges it (sends anything on the connection
//!   after the frame that carried it); the client de-duplicates by id.
//! - **At most once** for a call without one (the gateway named it, as upstream's clients
//!   expect): its outcome counts as delivered once the frame carrying it is written, whether
//!   that is the call's answer or a `get_pending_results` answer. Such a client could not tell
//!   a repeated result from a new one.

mod outcome;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use agent_gate_protocol::PendingResult;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

pub(crate) use self::outcome::Outcome;
use crate::store::{RequestKey, RequestRecord, RequestState, Store, StoreError};
/// The time type of outcomes and expiries, and its RFC 3339 form on the wire.
pub(crate) use crate::store::{Timestamp, rfc3339};

type Waiters = HashMap<RequestKey, Vec<oneshot::Sender<Outcome>>>;

/// Whether `request_id` was sent by the client (its idempotency key) rather than made by the
/// gateway for a call that came without one. The engine's ids are `gw-` and 28 lower-case hex
/// digits (`engine::request`); a client that sends an id of exactly that form is treated as
/// not having sent one (its results are delivered at most once).
pub(crate) fn client_named(request_id: &str) -> bool {
    let generated = request_id.strip_prefix("gw-").is_some_and(|rest| {
        rest.len() == 28 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    !generated
}

/// Waiters by request, and the store the outcomes are read from and acknowledged in.
pub(crate) struct Delivery {
    waiters: Mutex<Waiters>,
    store: Store,
    tasks: TaskTracker,
}

/// Where a call stands when a front gets it back.
#[derive(Debug)]
pub(crate) enum Progress {
    /// Its life is over: the outcome to deliver.
    Finished(Outcome),
    /// Not over yet: waiting for a human, or approved and running.
    Waiting(Waiting),
}

/// A call whose outcome is not known yet, and the means to wait for it.
#[derive(Debug)]
pub(crate) struct Waiting {
    /// When the approval expires, while the call waits for a human (`None` once it is approved
    /// and running).
    pub(crate) awaiting_approval: Option<Timestamp>,
    waiter: Waiter,
}

impl Waiting {
    /// Waits for the outcome. `None` when it will not come to this waiter (the gateway is
    /// stopping; the outcome stays stored for the agent). Drop the future to stop waiting.
    pub(crate) async fn outcome(self) -> Option<Outcome> {
        self.waiter.outcome().await
    }
}

/// One registration for the outcome of one request; dropping it unregisters it.
#[derive(Debug)]
pub(crate) struct Waiter {
    key: RequestKey,
    receiver: Option<oneshot::Receiver<Outcome>>,
    delivery: std::sync::Weak<Delivery>,
}

impl Waiter {
    /// Waits for the outcome (see [`Waiting::outcome`]).
    pub(crate) async fn outcome(mut self) -> Option<Outcome> {
        let receiver = self.receiver.take()?;
        receiver.await.ok()
    }

    /// Turns the registration into a [`Waiting`] progress.
    pub(crate) fn waiting(self, awaiting_approval: Option<Timestamp>) -> Progress {
        Progress::Waiting(Waiting {
            awaiting_approval,
            waiter: self,
        })
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // Whether it got its outcome or not, its sender is no use any more.
        drop(self.receiver.take());
        if let Some(delivery) = self.delivery.upgrade() {
            delivery.drop_closed(&self.key);
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").finish_non_exhaustive()
    }
}

fn lock(mutex: &Mutex<Waiters>) -> MutexGuard<'_, Waiters> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Delivery {
    /// Delivery over `store`; acknowledgements are written by tasks of `tasks` (which the
    /// gateway drains before it closes the store).
    pub(crate) fn new(store: Store, tasks: TaskTracker) -> Arc<Self> {
        Arc::new(Self {
            waiters: Mutex::new(HashMap::new()),
            store,
            tasks,
        })
    }

    /// Registers a waiter for the outcome of `key`.
    pub(crate) fn waiter(self: &Arc<Self>, key: RequestKey) -> Waiter {
        let (sender, receiver) = oneshot::channel();
        lock(&self.waiters)
            .entry(key.clone())
            .or_default()
            .push(sender);
        Waiter {
            key,
            receiver: Some(receiver),
            delivery: Arc::downgrade(self),
        }
    }

    /// Hands a final outcome to every waiter of `key`.
    pub(crate) fn deliver(&self, key: &RequestKey, outcome: &Outcome) {
        let waiting = lock(&self.waiters).remove(key);
        for waiter in waiting.into_iter().flatten() {
            let _ = waiter.send(outcome.clone());
        }
    }

    fn drop_closed(&self, key: &RequestKey) {
        let mut waiters = lock(&self.waiters);
        if let Some(list) = waiters.get_mut(key) {
            list.retain(|w| !w.is_closed());
            if list.is_empty() {
                waiters.remove(key);
            }
        }
    }

    /// Number of requests someone waits for now (for tests).
    #[cfg(test)]
    fn waited_for(&self) -> usize {
        lock(&self.waiters).len()
    }

    /// Attaches to the stored request `record` (the same call, re-sent): its outcome if its
    /// life is over, or a waiter for it.
    pub(crate) async fn attach(
        self: &Arc<Self>,
        record: RequestRecord,
    ) -> Result<Progress, StoreError> {
        if let Some(outcome) = Outcome::of_record(&record) {
            return Ok(Progress::Finished(outcome));
        }
        let key = record.key();
        let waiter = self.waiter(key.clone());
        // Read again after registering, so that an outcome recorded in between is not missed.
        let fresh = self
            .store
            .get_request(key.agent_id.as_str(), key.request_id.as_str())
            .await?
            .unwrap_or(record);
        if let Some(outcome) = Outcome::of_record(&fresh) {
            return Ok(Progress::Finished(outcome));
        }
        let awaiting_approval = match fresh.state {
            RequestState::Pending => fresh.expires_at,
            _ => None,
        };
        Ok(waiter.waiting(awaiting_approval))
    }

    /// `agent`'s finished requests whose outcome it has not acknowledged, as
    /// `get_pending_results` rows.
    pub(crate) async fn undelivered(&self, agent: &str) -> Result<Vec<PendingResult>, StoreError> {
        let records = self.store.undelivered(agent).await?;
        Ok(records.iter().filter_map(outcome::pending_result).collect())
    }

    /// Marks outcomes as received by `agent`, in the background. Returns the write's task, so
    /// that a later read of the undelivered outcomes can wait for it.
    pub(crate) fn mark_delivered(
        &self,
        agent: &str,
        ids: Vec<String>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if ids.is_empty() {
            return None;
        }
        let store = self.store.clone();
        let agent = agent.to_owned();
        Some(self.tasks.spawn(async move {
            if let Err(error) = store.mark_delivered(agent, ids).await {
                tracing::error!(%error, "could not mark results as delivered");
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_gate_protocol::ErrorCode;

    async fn delivery() -> (tempfile::TempDir, Arc<Delivery>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("gateway.db")).await.unwrap();
        (dir, Delivery::new(store, TaskTracker::new()))
    }

    fn denied() -> Outcome {
        Outcome::Failed {
            code: ErrorCode::DeniedByHuman,
            message: "Denied by user".to_owned(),
            data: None,
        }
    }

    #[test]
    fn gateway_made_ids_are_told_from_client_ids() {
        assert!(!client_named("gw-019ae8c2b3f0a1b2c3d4e5f60718"));
        assert!(client_named("light-1"));
        assert!(client_named("gw-light"));
        assert!(client_named("gw-019ae8c2b3f0A1B2C3D4E5F60718"));
    }

    #[tokio::test]
    async fn every_waiter_of_a_request_gets_its_outcome() {
        let (_dir, delivery) = delivery().await;
        let key = RequestKey::new("kitchen", "r-1");
        let first = delivery.waiter(key.clone());
        let second = delivery.waiter(key.clone());
        let other = delivery.waiter(RequestKey::new("kitchen", "r-2"));
        delivery.deliver(&key, &denied());
        assert_eq!(first.outcome().await, Some(denied()));
        assert_eq!(second.outcome().await, Some(denied()));
        assert_eq!(delivery.waited_for(), 1, "r-2 still waits");
        drop(other);
        assert_eq!(delivery.waited_for(), 0, "a dropped waiter unregisters");
    }
}
