//! [`Approvals`]: the whole life of an `ask`. The per-agent pending cap, the durable pending
//! row, its expiry timer, telling approvers of it, resolving decisions, timeouts and restarts
//! through the store's conditional transitions, and telling approvers how it ended.
//!
//! It never executes anything: a won approval hands the approved request back to the caller
//! ([`Decided::execute`]), which is the request engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use agent_gate_manifest::Manifest;
use agent_gate_protocol::ErrorCode;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio_util::task::TaskTracker;

use super::{ApprovalRequest, Approver, DecideOutcome, Resolution};
use crate::config::Config;
use crate::delivery::{Delivery, Outcome, Waiter};
use crate::metrics::{DecidedBy, DecisionLabel, Metrics, OutcomeLabel};
use crate::store::{
    AuditEntry, AuditKind, Decision, InsertOutcome, NewRequest, RecoveryReport, RequestKey,
    RequestRecord, RequestState, Store, StoreError, Timestamp, Transition,
};

/// The approvals of the running gateway.
pub(crate) struct Approvals {
    timeout: Duration,
    max_pending: u32,
    store: Store,
    delivery: Arc<Delivery>,
    approvers: Vec<Arc<dyn Approver>>,
    manifest: Arc<Manifest>,
    tasks: TaskTracker,
    metrics: Arc<Metrics>,
    /// agent → request id → expiry, for the per-agent cap and its retry hint.
    pending: Mutex<HashMap<String, HashMap<String, Timestamp>>>,
    timers: Mutex<HashMap<RequestKey, AbortHandle>>,
    /// Requests whose approvers are still being told (their references are not stored yet).
    notifying: Mutex<HashMap<RequestKey, watch::Receiver<bool>>>,
    self_ref: Weak<Approvals>,
}

/// A call the policy asks a human about.
#[derive(Debug)]
pub(crate) struct Ask {
    /// The agent and its request id.
    pub(crate) key: RequestKey,
    /// The tool.
    pub(crate) tool: String,
    /// The validated arguments, as they are stored and shown.
    pub(crate) args: Value,
    /// The signature the policy judged.
    pub(crate) signature: String,
    /// Everything the call affects.
    pub(crate) targets: Vec<String>,
    /// The rule that asked (none: the fallback).
    pub(crate) rule: Option<String>,
    /// The audit entry of the policy's decision, written with the pending row.
    pub(crate) decision_audit: AuditEntry,
}

/// What became of an [`Ask`].
#[derive(Debug)]
pub(crate) enum Asked {
    /// Stored as pending and shown to the approvers; wait on the waiter for the outcome.
    Pending {
        /// When it expires if nobody decides.
        expires_at: Timestamp,
        /// Registered before the row was stored, so that no outcome is missed.
        waiter: Waiter,
    },
    /// The same call was already stored under this request id: attach to it.
    Existing(RequestRecord),
    /// Another call was stored under this request id.
    Conflict(RequestRecord),
}

/// Why an [`Ask`] was not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AskError {
    /// The agent already has the most pending approvals it may have.
    #[error("too many pending approvals: {pending} of at most {max}")]
    TooManyPending {
        /// Its pending approvals now.
        pending: usize,
        /// The cap (`rate_limit.max_pending_approvals`).
        max: u32,
        /// Seconds until the soonest of them expires.
        retry_after: f64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a pending request is to be resolved.
#[derive(Debug, Clone)]
pub(crate) enum Resolve {
    /// A human (the actor) approved it.
    Approve(String),
    /// A human (the actor) denied it, maybe saying why.
    Deny {
        /// Who.
        actor: String,
        /// Why (already tidied by `deny_reason`).
        reason: Option<String>,
    },
    /// Its approval timed out.
    Expire,
    /// The agent that made it withdrew it (the actor names the agent). Recorded as a denial
    /// by the agent, `Cancelled by the agent`; approvers are told it was cancelled.
    Cancel(String),
}

/// The error message of a human's denial, with the reason when one was given.
fn denial_message(reason: &Option<String>) -> String {
    match reason {
        Some(reason) => format!("Denied by user: {reason}"),
        None => "Denied by user".to_owned(),
    }
}

/// The error message of a request its agent cancelled.
pub(crate) const CANCELLED_BY_AGENT: &str = "Cancelled by the agent";

/// The result of a resolution.
#[derive(Debug)]
pub(crate) struct Decided {
    /// What the decision achieved.
    pub(crate) outcome: DecideOutcome,
    /// The request to execute now: the approval won.
    pub(crate) execute: Option<RequestRecord>,
}

impl Decided {
    fn lost(outcome: DecideOutcome) -> Self {
        Self {
            outcome,
            execute: None,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn duration_until(at: Timestamp) -> Duration {
    SystemTime::from(at)
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// What a stored request affects (its targets), found again from its validated arguments by
/// the manifest; empty when the tool is gone or names none.
fn targets_of(manifest: &Manifest, record: &RequestRecord) -> Vec<String> {
    match (manifest.tool(&record.tool), &record.args) {
        (Some(tool), Value::Object(args)) => tool
            .judged(args)
            .map(|judged| judged.targets)
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("timeout", &self.timeout)
            .field("max_pending", &self.max_pending)
            .finish_non_exhaustive()
    }
}

impl Approvals {
    /// Approvals that expire after `config.approval_timeout`, at most
    /// `config.rate_limit.max_pending_approvals` per agent, shown to `approvers`, counted in
    /// `metrics`. Background work (telling approvers) runs on `tasks`.
    pub(crate) fn new(
        config: &Config,
        store: Store,
        delivery: Arc<Delivery>,
        approvers: Vec<Arc<dyn Approver>>,
        manifest: Arc<Manifest>,
        tasks: TaskTracker,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|self_ref| Self {
            metrics,
            timeout: config.approval_timeout,
            max_pending: config.rate_limit.max_pending_approvals,
            store,
            delivery,
            approvers,
            manifest,
            tasks,
            pending: Mutex::new(HashMap::new()),
            timers: Mutex::new(HashMap::new()),
            notifying: Mutex::new(HashMap::new()),
            self_ref: self_ref.clone(),
        })
    }

    /// The approvers, in configuration order.
    pub(crate) fn approvers(&self) -> &[Arc<dyn Approver>] {
        &self.approvers
    }

    /// Stores `ask` as pending (durably), arms its timer and tells the approvers.
    pub(crate) async fn ask(&self, ask: Ask) -> Result<Asked, AskError> {
        let now = Timestamp::now();
        let expires_at = now.saturating_add(self.timeout);
        let key = ask.key;
        let agent = key.agent_id.as_str();
        let rid = key.request_id.as_str();
        // A re-sent call that is pending already is not counted twice: the store finds it.
        let reserved = self.reserve(&key, expires_at, now)?;
        let waiter = self.delivery.waiter(key.clone());
        let mut new = NewRequest::pending(
            agent,
            rid,
            ask.tool.as_str(),
            ask.args.clone(),
            ask.signature.as_str(),
            expires_at,
        )
        .created_at(now)
        .audit(ask.decision_audit)
        .audit(
            AuditEntry::new(agent, AuditKind::ApprovalRequested)
                .request_id(rid)
                .signature(ask.signature.as_str())
                .detail(json!({"expires_at": expires_at.as_millis()})),
        );
        if let Some(rule) = &ask.rule {
            new = new.rule(rule.as_str());
        }
        let inserted = self.store.insert_request(new).await;
        if !matches!(inserted, Ok(InsertOutcome::Inserted)) && reserved {
            self.release(&key);
        }
        match inserted? {
            InsertOutcome::Inserted => {}
            InsertOutcome::Duplicate(record) => return Ok(Asked::Existing(*record)),
            InsertOutcome::Conflict(record) => return Ok(Asked::Conflict(*record)),
        }
        // The pending row is committed: now the timer and the approvers may see it.
        self.arm_timer(key.clone(), expires_at);
        self.notify_approvers(ApprovalRequest {
            key,
            tool: ask.tool,
            args: ask.args,
            signature: ask.signature,
            targets: ask.targets,
            rule: ask.rule,
            created_at: now,
            expires_at,
            approver_refs: None,
        });
        Ok(Asked::Pending { expires_at, waiter })
    }

    /// Counts `key` against its agent's cap. `Ok(false)`: it was counted already (a re-sent
    /// call that is still pending).
    fn reserve(
        &self,
        key: &RequestKey,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, AskError> {
        let mut book = lock(&self.pending);
        let mine = book.entry(key.agent_id.clone()).or_default();
        if mine.contains_key(&key.request_id) {
            return Ok(false);
        }
        let count = mine.len();
        if u32::try_from(count).unwrap_or(u32::MAX) >= self.max_pending {
            let soonest = mine.values().min().copied();
            let retry_after = soonest
                .map(|at| (at.as_millis().saturating_sub(now.as_millis())).max(0) as f64 / 1000.0)
                .unwrap_or(0.0)
                .ceil();
            return Err(AskError::TooManyPending {
                pending: count,
                max: self.max_pending,
                retry_after,
            });
        }
        mine.insert(key.request_id.clone(), expires_at);
        Ok(true)
    }

    fn release(&self, key: &RequestKey) {
        let mut book = lock(&self.pending);
        if let Some(mine) = book.get_mut(&key.agent_id) {
            mine.remove(&key.request_id);
            if mine.is_empty() {
                book.remove(&key.agent_id);
            }
        }
    }

    /// Requests waiting for a human now.
    pub(crate) fn pending_count(&self) -> usize {
        lock(&self.pending).values().map(HashMap::len).sum()
    }

    fn arm_timer(&self, key: RequestKey, expires_at: Timestamp) {
        let Some(approvals) = self.self_ref.upgrade() else {
            return;
        };
        let wait = duration_until(expires_at);
        let timer_key = key.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Err(error) = approvals.resolve(timer_key, Resolve::Expire).await {
                tracing::error!(%error, "could not record an approval timeout");
            }
        });
        if let Some(old) = lock(&self.timers).insert(key, task.abort_handle()) {
            old.abort();
        }
    }

    /// Stops every timer (pending requests stay pending for the next start).
    pub(crate) fn stop_timers(&self) {
        for (_, timer) in lock(&self.timers).drain() {
            timer.abort();
        }
    }

    fn notify_approvers(&self, request: ApprovalRequest) {
        if self.approvers.is_empty() {
            return;
        }
        let Some(approvals) = self.self_ref.upgrade() else {
            return;
        };
        let (done_tx, done_rx) = watch::channel(false);
        lock(&self.notifying).insert(request.key.clone(), done_rx);
        self.tasks.spawn(async move {
            let calls = approvals.approvers.iter().map(|approver| {
                let request = &request;
                async move { (approver.name().to_owned(), approver.notify(request).await) }
            });
            let results = futures_util::future::join_all(calls).await;
            let mut refs = Map::new();
            for (name, result) in results {
                match result {
                    Ok(Some(r)) => {
                        refs.insert(name, r);
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "an approver could not show a request"),
                }
            }
            if !refs.is_empty()
                && let Err(error) = approvals
                    .store
                    .set_approver_refs(
                        request.key.agent_id.as_str(),
                        request.key.request_id.as_str(),
                        Value::Object(refs),
                    )
                    .await
            {
                tracing::error!(%error, "could not store approver message references");
            }
            let _ = done_tx.send(true);
            lock(&approvals.notifying).remove(&request.key);
        });
    }

    /// Tells every approver how the request `key` ended (after they were told of it).
    pub(crate) fn tell_approvers(&self, key: RequestKey, resolution: Resolution) {
        if self.approvers.is_empty() {
            return;
        }
        let Some(approvals) = self.self_ref.upgrade() else {
            return;
        };
        let waiting = lock(&self.notifying).get(&key).cloned();
        self.tasks.spawn(async move {
            if let Some(mut done) = waiting {
                let _ = done.wait_for(|d| *d).await;
            }
            // Read back for the message references the approvers stored.
            let record = match approvals
                .store
                .get_request(key.agent_id.as_str(), key.request_id.as_str())
                .await
            {
                Ok(Some(record)) => record,
                Ok(None) => return,
                Err(error) => {
                    tracing::error!(%error, "could not read a resolved request for the approvers");
                    return;
                }
            };
            let request = approvals.view(&record);
            let calls = approvals
                .approvers
                .iter()
                .map(|approver| approver.resolved(&request, &resolution));
            for result in futures_util::future::join_all(calls).await {
                if let Err(error) = result {
                    tracing::warn!(%error, "an approver could not update its message");
                }
            }
        });
    }

    /// A stored request as approvers see it.
    fn view(&self, record: &RequestRecord) -> ApprovalRequest {
        ApprovalRequest::from_record(record).with_targets(targets_of(&self.manifest, record))
    }

    /// The requests waiting for a decision now, soonest expiry first.
    pub(crate) async fn pending(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        let records = self.store.pending_unexpired(Timestamp::now()).await?;
        Ok(records.iter().map(|r| self.view(r)).collect())
    }

    /// Resolves the pending request `key` as `how`, if it is still pending: the store's
    /// conditional transition decides races (exactly one of the decisions, the timeout and a
    /// restart wins). The agent is answered a denial or timeout here; a won approval is handed
    /// back in [`Decided::execute`].
    pub(crate) async fn resolve(
        &self,
        key: RequestKey,
        how: Resolve,
    ) -> Result<Decided, StoreError> {
        let agent = key.agent_id.as_str();
        let rid = key.request_id.as_str();
        let Some(record) = self.store.get_request(agent, rid).await? else {
            return Ok(Decided::lost(DecideOutcome::NotFound));
        };
        if record.state != RequestState::Pending {
            return Ok(Decided::lost(lost_to(record.state)));
        }
        let at = Timestamp::now();
        let audit = |kind: AuditKind| {
            AuditEntry::new(agent, kind)
                .request_id(rid)
                .signature(record.signature.as_str())
                .at(at)
        };
        let transition = match &how {
            Resolve::Approve(actor) => Transition::approve(agent, rid, actor.as_str())
                .audit(audit(AuditKind::Approved).actor(actor.as_str())),
            Resolve::Deny { actor, reason } => {
                let mut transition = Transition::deny(agent, rid, actor.as_str())
                    .error(ErrorCode::DeniedByHuman.code(), denial_message(reason))
                    .audit(audit(AuditKind::Denied).actor(actor.as_str()));
                if let Some(reason) = reason {
                    transition = transition.error_data(json!({ "reason": reason }));
                }
                transition
            }
            Resolve::Expire => Transition::expire(agent, rid)
                .error(ErrorCode::ApprovalTimeout.code(), "Approval timed out")
                .audit(audit(AuditKind::Expired).actor("timeout")),
            Resolve::Cancel(actor) => Transition::cancel(agent, rid, actor.as_str())
                .error(ErrorCode::Cancelled.code(), CANCELLED_BY_AGENT)
                .audit(
                    audit(AuditKind::Other("cancelled".to_owned()))
                        .actor(actor.as_str())
                        .detail(json!({"reason": "cancelled by the agent"})),
                ),
        }
        .at(at);
        if !self.store.transition(transition).await? {
            return Ok(Decided::lost(
                match self.store.get_request(agent, rid).await? {
                    None => DecideOutcome::NotFound,
                    Some(r) => lost_to(r.state),
                },
            ));
        }
        // This call won. The timer is over (a timer resolving itself must not abort itself).
        let timer = lock(&self.timers).remove(&key);
        if let Some(timer) = timer
            && !matches!(how, Resolve::Expire)
        {
            timer.abort();
        }
        self.release(&key);
        let (by, ended) = match &how {
            Resolve::Approve(_) => (DecidedBy::Human, None),
            Resolve::Deny { .. } => (DecidedBy::Human, Some(OutcomeLabel::Denied)),
            Resolve::Expire => (DecidedBy::Timeout, Some(OutcomeLabel::Expired)),
            Resolve::Cancel(_) => (DecidedBy::Agent, Some(OutcomeLabel::Cancelled)),
        };
        let waited = at.since(record.created_at);
        self.metrics.decided(by, waited);
        if let Some(outcome) = ended {
            self.metrics
                .request(&record.tool, DecisionLabel::Ask, outcome);
            self.metrics.finished(&record.tool, waited);
        }
        let mut execute = None;
        match how {
            Resolve::Approve(actor) => {
                tracing::info!(agent, request_id = rid, by = %actor, "approved");
                self.tell_approvers(key.clone(), Resolution::Approved { by: actor, at });
                let mut approved = record;
                approved.state = RequestState::Approved;
                execute = Some(approved);
            }
            Resolve::Deny { actor, reason } => {
                tracing::info!(agent, request_id = rid, by = %actor, with_reason = reason.is_some(), "denied");
                let message = denial_message(&reason);
                let data = reason.as_ref().map(|reason| json!({ "reason": reason }));
                self.tell_approvers(
                    key.clone(),
                    Resolution::Denied {
                        by: actor,
                        at,
                        reason,
                    },
                );
                self.delivery.deliver(
                    &key,
                    &Outcome::Failed {
                        code: ErrorCode::DeniedByHuman,
                        message,
                        data,
                    },
                );
            }
            Resolve::Cancel(actor) => {
                tracing::info!(agent, request_id = rid, by = %actor, "cancelled by the agent");
                self.tell_approvers(
                    key.clone(),
                    Resolution::Cancelled {
                        reason: "cancelled by the agent".to_owned(),
                        at,
                    },
                );
                self.delivery.deliver(
                    &key,
                    &Outcome::Failed {
                        code: ErrorCode::Cancelled,
                        message: CANCELLED_BY_AGENT.to_owned(),
                        data: None,
                    },
                );
            }
            Resolve::Expire => {
                tracing::info!(agent, request_id = rid, "approval timed out");
                self.tell_approvers(key.clone(), Resolution::Expired { at });
                self.delivery.deliver(
                    &key,
                    &Outcome::Failed {
                        code: ErrorCode::ApprovalTimeout,
                        message: "Approval timed out".to_owned(),
                        data: None,
                    },
                );
            }
        }
        Ok(Decided {
            outcome: DecideOutcome::Won,
            execute,
        })
    }

    /// After the store's start-up recovery (`report`): tells approvers of requests marked
    /// failed, re-arms the timers of pending requests from `expires_at`, expires those whose
    /// time is up. Returns the approved requests that never started, for the engine to run.
    pub(crate) async fn recover(
        &self,
        report: RecoveryReport,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        for record in &report.failed {
            tracing::warn!(
                agent = %record.agent_id,
                request_id = %record.request_id,
                "a request was executing when the gateway stopped: marked failed, not re-run"
            );
            if record.decision == Decision::Ask {
                self.tell_approvers(
                    record.key(),
                    Resolution::Cancelled {
                        reason: crate::store::RESTART_DURING_EXECUTION.to_owned(),
                        at: Timestamp::now(),
                    },
                );
            }
        }
        for record in &report.pending {
            if let Some(expires_at) = record.expires_at {
                lock(&self.pending)
                    .entry(record.agent_id.clone())
                    .or_default()
                    .insert(record.request_id.clone(), expires_at);
                self.arm_timer(record.key(), expires_at);
            }
        }
        for record in &report.expired_pending {
            self.resolve(record.key(), Resolve::Expire).await?;
        }
        Ok(report.approved)
    }
}

/// What a decision that lost is told, the request now being in `state`.
fn lost_to(state: RequestState) -> DecideOutcome {
    match state {
        RequestState::Expired => DecideOutcome::Expired,
        RequestState::Cancelled => DecideOutcome::Cancelled,
        _ => DecideOutcome::AlreadyDecided,
    }
}
