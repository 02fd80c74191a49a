//! Delivery: who waits for which outcome (per request key), attaching a re-sent `request_id`
//! to its stored request, and the outcomes an agent has not received yet.

use super::*;

impl Core {
    pub(super) fn add_waiter(&self, key: &RequestKey) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).entry(key.clone()).or_default().push(tx);
        rx
    }

    /// Hands a final outcome to every connection waiting for it.
    pub(super) fn deliver(&self, key: &RequestKey, outcome: &Outcome) {
        let waiting = lock(&self.waiters).remove(key);
        for waiter in waiting.into_iter().flatten() {
            let _ = waiter.send(outcome.clone());
        }
    }

    pub(super) fn drop_closed_waiters(&self, key: &RequestKey) {
        let mut waiters = lock(&self.waiters);
        if let Some(list) = waiters.get_mut(key) {
            list.retain(|w| !w.is_closed());
            if list.is_empty() {
                waiters.remove(key);
            }
        }
    }

    /// Waits for the outcome of `key` on `link` (until the connection or the gateway stops).
    pub(super) async fn wait_for(
        &self,
        link: &ConnectionLink,
        key: &RequestKey,
        rx: oneshot::Receiver<Outcome>,
    ) -> Option<Outcome> {
        let result = tokio::select! {
            outcome = rx => outcome.ok(),
            () = link.stop.cancelled() => None,
        };
        if result.is_none() {
            self.drop_closed_waiters(key);
        }
        result
    }

    // ----- tool_request ---------------------------------------------------------------

    /// Attaches to an existing request after checking it is the same call.
    pub(super) async fn attach_checked(
        &self,
        link: &ConnectionLink,
        record: RequestRecord,
        tool: &str,
        args: &Map<String, Value>,
    ) -> Option<Answer> {
        let same = record.tool == tool && record.args.as_object().is_some_and(|a| a == args);
        if !same {
            return Some(Err(conflict(&record)));
        }
        self.attach(link, record).await
    }

    /// Answers with the stored outcome, or waits for it (re-announcing a pending approval).
    pub(super) async fn attach(
        &self,
        link: &ConnectionLink,
        record: RequestRecord,
    ) -> Option<Answer> {
        let rid = record.request_id.clone();
        if let Some(outcome) = Outcome::of_record(&record) {
            return Some(Ok((rid, outcome)));
        }
        let key = record.key();
        let rx = self.add_waiter(&key);
        // Re-read after registering, so a decision in between is not missed.
        let fresh = match self
            .store
            .get_request(key.agent_id.as_str(), key.request_id.as_str())
            .await
        {
            Ok(Some(fresh)) => fresh,
            Ok(None) => record,
            Err(e) => {
                self.drop_closed_waiters(&key);
                return Some(Err(store_failure(&e)));
            }
        };
        if let Some(outcome) = Outcome::of_record(&fresh) {
            return Some(Ok((rid, outcome)));
        }
        if fresh.state == RequestState::Pending
            && let Some(text) = fresh
                .expires_at
                .and_then(|at| status_notification(&rid, at))
        {
            link.send(text, Vec::new()).await;
        }
        let outcome = self.wait_for(link, &key, rx).await?;
        Some(Ok((rid, outcome)))
    }

    /// `get_pending_results`: this agent's finished, undelivered requests.
    pub(crate) async fn pending_results(
        &self,
        agent: &str,
    ) -> Result<(Value, Vec<String>), ErrorObject> {
        let records = self
            .store
            .undelivered(agent)
            .await
            .map_err(|e| store_failure(&e))?;
        let results: Vec<_> = records.iter().filter_map(wire::pending_result).collect();
        let ids = results.iter().map(|r| r.request_id.clone()).collect();
        let value = serde_json::to_value(PendingResults { results }).map_err(|e| {
            ErrorObject::new(ErrorCode::InternalError, format!("Internal error: {e}"))
        })?;
        Ok((value, ids))
    }

    /// Marks outcomes as received by the agent (in the background).
    /// Returns the write's task, so a later `get_pending_results` on the same connection can
    /// wait for it.
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

    // ----- start-up and shutdown ------------------------------------------------------
}
