//! The request engine every front shares (the WebSocket server today): one entry point,
//! [`Engine::submit`], takes an authenticated agent and a tool call through rate limit → one
//! validation → policy → allow / deny / ask, executes what is allowed or approved, records
//! every step, and says where the call stands ([`Submitted`]: finished with its outcome, or
//! waiting for a human until `expires_at`, with the means to wait for the outcome).
//!
//! It knows nothing of transports. Its parts: `request` (a call from submission to outcome),
//! `refusal` (the error objects of refused calls). It hands an `ask` to
//! [`crate::approvals::Approvals`] and outcomes to [`crate::delivery::Delivery`], and takes
//! back approved calls to execute.

mod live;
mod refusal;
mod request;

pub(crate) use live::{LastReload, Registration};
pub use live::{ReloadError, ReloadReport};

use std::sync::{Arc, Weak};

use agent_gate_manifest::Manifest;

use crate::metrics::Metrics;
use agent_gate_protocol::{CancelRequestResult, ErrorObject, PendingResult, ToolRequestParams};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::approvals::{
    ApprovalHandle, ApprovalRequest, Approvals, Approver, BoxFuture, DecideOutcome, Decider,
    GrantTerm, Resolve, Verdict,
};
use crate::config::{Config, TokenDigest};
use crate::delivery::{Delivery, Progress};
use crate::executor::Executor;
use crate::mcp::catalog::Catalog;
use crate::policy::Policy;
use crate::ratelimit::{AuthThrottle, RequestLimiter};
use crate::store::{
    AuditEntry, RecoveryReport, RequestKey, RequestRecord, RequestState, Store, StoreError,
};

/// " by <who>" when the record says who resolved it.
fn by(record: &RequestRecord) -> String {
    match &record.resolved_by {
        Some(who) => format!(" by {who}"),
        None => String::new(),
    }
}

/// A tool call as an agent sent it, through whichever front.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    /// The tool's name.
    pub(crate) tool: String,
    /// Its arguments, not validated yet.
    pub(crate) args: Map<String, Value>,
    /// The agent's key for the call (re-sending it attaches to the same request), if any.
    pub(crate) request_id: Option<String>,
    /// For a call without a request id that the policy asks a human about: attach to an open
    /// request of the same call (same tool and arguments, still waiting, or finished with an
    /// outcome the agent has not received) instead of asking again. For fronts whose clients
    /// send no request id and re-send a call to learn its outcome (MCP).
    ///
    /// Such a call decided at once (allowed or denied) is answered in band: nothing could
    /// fetch its outcome later, so it does not wait in the store for the agent.
    pub(crate) same_call_attaches: bool,
}

impl From<ToolRequestParams> for ToolCall {
    fn from(params: ToolRequestParams) -> Self {
        Self {
            tool: params.tool,
            args: params.args,
            request_id: params.request_id,
            same_call_attaches: false,
        }
    }
}

/// Where a submitted call stands.
#[derive(Debug)]
pub(crate) struct Submitted {
    /// Its request id (the agent's, or one the gateway gave it).
    pub(crate) request_id: String,
    /// Finished with its outcome, or waiting.
    pub(crate) progress: Progress,
    /// The outcome waits in the store until the front marks it received
    /// ([`Delivery::mark_delivered`]); `false` for a call answered in band.
    pub(crate) kept: bool,
}

/// The shared engine.
pub(crate) struct Engine {
    pub(crate) config: Arc<Config>,
    /// What `/metrics` shows.
    pub(crate) metrics: Arc<Metrics>,
    /// The agents and policy in force (swapped by a reload; see `live`).
    live: live::LiveState,
    manifest: Arc<Manifest>,
    pub(crate) store: Store,
    executor: Arc<Executor>,
    pub(crate) approvals: Arc<Approvals>,
    pub(crate) delivery: Arc<Delivery>,
    limiter: RequestLimiter,
    /// Failed authentications per client address, for every front.
    pub(crate) auth_throttle: AuthThrottle,
    /// The `list_tools` answer, built once.
    pub(crate) list_tools: Value,
    /// Background work that must finish before the store closes (executions, audits,
    /// approver calls, request handlers).
    pub(crate) tasks: TaskTracker,
    /// Cancelled when shutdown begins: no new connections or requests, approval waits end.
    pub(crate) shutdown: CancellationToken,
    /// Cancelled after in-flight work drained: connections close with 1001 (going away).
    pub(crate) close_connections: CancellationToken,
    self_ref: Weak<Engine>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// The engine of a gateway with these parts.
    pub(crate) fn new(
        config: Arc<Config>,
        policy: Policy,
        manifest: Manifest,
        store: Store,
        executor: Arc<Executor>,
        approvers: Vec<Arc<dyn Approver>>,
    ) -> Arc<Self> {
        let list_tools = json!({
            "tools": manifest.tools().map(|tool| tool.list_entry(&manifest)).collect::<Vec<_>>()
        });
        let catalog = Catalog::new(&config, &manifest, &policy);
        let live = live::LiveState::new(live::Live {
            config: Arc::clone(&config),
            policy: Arc::new(policy),
            catalog: Arc::new(catalog),
        });
        let manifest = Arc::new(manifest);
        let limiter = RequestLimiter::new(config.rate_limit.max_requests_per_minute);
        let tasks = TaskTracker::new();
        let delivery = Delivery::new(store.clone(), tasks.clone());
        let metrics = Arc::new(Metrics::new(store.metrics()));
        let approvals = Approvals::new(
            &config,
            store.clone(),
            Arc::clone(&delivery),
            approvers,
            Arc::clone(&manifest),
            tasks.clone(),
            Arc::clone(&metrics),
        );
        Arc::new_cyclic(|self_ref| Engine {
            metrics,
            config,
            live,
            manifest,
            store,
            executor,
            approvals,
            delivery,
            limiter,
            auth_throttle: AuthThrottle::new(),
            list_tools,
            tasks,
            shutdown: CancellationToken::new(),
            close_connections: CancellationToken::new(),
            self_ref: self_ref.clone(),
        })
    }

    /// The handle approvers submit decisions through.
    pub(crate) fn approval_handle(&self) -> ApprovalHandle {
        let weak: Weak<dyn Decider> = self.self_ref.clone();
        ApprovalHandle::new(weak)
    }

    /// The tool manifest.
    pub(crate) fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The policy in force now: one snapshot, which a decision keeps while a reload swaps
    /// the next one in.
    pub(crate) fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.live.current().policy)
    }

    /// The MCP tool lists under the policy in force now.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.live.current().catalog)
    }

    /// The agent a presented token belongs to under the agents in force now, with the
    /// token's digest (for [`Engine::register_connection`]); tokens are compared in constant
    /// time ([`Config::agent_by_token`]).
    pub(crate) fn agent_by_token(&self, token: &str) -> Option<(String, TokenDigest)> {
        let live = self.live.current();
        let agent = live.config.agent_by_token(token)?;
        Some((agent.id.clone(), TokenDigest::of(token)))
    }

    /// Registers an authenticated WebSocket connection: its `close` is cancelled when a
    /// reload removes the agent or the token it presented.
    pub(crate) fn register_connection(&self, agent: &str, token: TokenDigest) -> Registration {
        self.live.register(agent, token)
    }

    /// The outcome of the last reload, if any (for `/healthz`).
    pub(crate) fn last_reload(&self) -> Option<LastReload> {
        self.live.last_reload()
    }

    /// Re-reads `config.yaml`'s agents and `permissions.yaml` and swaps them in if both are
    /// valid (see `live`); `by` says what asked (`SIGHUP`, `admin`). Logged and audited
    /// either way; a refusal leaves everything as it was.
    pub(crate) async fn reload(&self, by: &str) -> Result<ReloadReport, ReloadError> {
        if self.shutdown.is_cancelled() {
            return Err(ReloadError::Stopping);
        }
        let manifest = Arc::clone(&self.manifest);
        let result = self
            .live
            .reload(|config, policy| Catalog::new(config, &manifest, policy))
            .await;
        let entry = match &result {
            Ok(report) => {
                for warning in &report.warnings {
                    tracing::warn!("{warning}");
                }
                if !report.restart_needed.is_empty() {
                    tracing::warn!(
                        sections = %report.restart_needed.join(", "),
                        "config.yaml: these sections changed but take effect only at a restart (a reload applies agents and permissions)"
                    );
                }
                tracing::info!(
                    by,
                    agents_added = ?report.agents_added,
                    agents_removed = ?report.agents_removed,
                    tokens_changed = ?report.tokens_changed,
                    connections_closed = report.connections_closed,
                    rules = report.rules,
                    "configuration reloaded"
                );
                AuditEntry::new(
                    "",
                    crate::store::AuditKind::Other("config_reloaded".to_owned()),
                )
                .actor(by)
                .detail(json!(report))
            }
            Err(error) => {
                let problems = error.problems();
                tracing::error!(
                    by,
                    problems = %problems.join("; "),
                    "reload refused; the previous agents and permissions stay in force"
                );
                AuditEntry::new(
                    "",
                    crate::store::AuditKind::Other("config_reload_refused".to_owned()),
                )
                .actor(by)
                .detail(json!({"problems": problems}))
            }
        };
        self.audit_in_background(entry);
        self.metrics.reloaded(result.is_ok());
        result
    }

    /// The executor of the configured services.
    pub(crate) fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The approvers, in configuration order.
    pub(crate) fn approvers(&self) -> &[Arc<dyn Approver>] {
        self.approvals.approvers()
    }

    /// `agent`'s finished requests whose outcome it has not acknowledged.
    pub(crate) async fn pending_results(
        &self,
        agent: &str,
    ) -> Result<Vec<PendingResult>, ErrorObject> {
        self.delivery
            .undelivered(agent)
            .await
            .map_err(|e| refusal::store_failure(&e))
    }

    /// `agent` withdraws its request `request_id` while it waits for a human: what the
    /// withdrawal achieved (`Won`: cancelled; `AlreadyDecided`/`Expired`/`Cancelled`: it had ended;
    /// `NotFound`: no such request of this agent, or the gateway is stopping).
    pub(crate) async fn cancel(&self, agent: &str, request_id: &str) -> DecideOutcome {
        if self.shutdown.is_cancelled() {
            return DecideOutcome::NotFound;
        }
        let key = RequestKey::new(agent, request_id);
        let how = Resolve::Cancel(format!("agent:{agent}"));
        match self.approvals.resolve(key, how).await {
            Ok(decided) => decided.outcome,
            Err(error) => {
                tracing::error!(%error, "could not record a cancellation");
                DecideOutcome::NotFound
            }
        }
    }

    /// `cancel_request` of `agent`: withdraws its request `request_id` if it still waits for a
    /// human, else says where it stands. `Err` when the agent has no such request.
    pub(crate) async fn cancel_request(
        &self,
        agent: &str,
        request_id: &str,
    ) -> Result<CancelRequestResult, ErrorObject> {
        let outcome = self.cancel(agent, request_id).await;
        let result = |state: RequestState, message: Option<String>| CancelRequestResult {
            request_id: request_id.to_owned(),
            cancelled: outcome == DecideOutcome::Won,
            state: state.as_str().to_owned(),
            message,
        };
        if outcome == DecideOutcome::Won {
            return Ok(result(RequestState::Cancelled, None));
        }
        let record = self
            .store
            .get_request(agent, request_id)
            .await
            .map_err(|e| refusal::store_failure(&e))?;
        let Some(record) = record else {
            return Err(ErrorObject::invalid_request(format!(
                "No request `{request_id}` of this agent: cancel_request takes the request_id of one of your own requests"
            )));
        };
        let message = match record.state {
            RequestState::Pending => {
                "the request is still pending: the gateway is stopping, try again".to_owned()
            }
            RequestState::Cancelled => "the request was already cancelled".to_owned(),
            RequestState::Expired => "the request had already expired; nothing ran".to_owned(),
            RequestState::Denied => "the request was already denied; nothing ran".to_owned(),
            RequestState::Approved | RequestState::Executing => format!(
                "the request was already approved{}; it runs (its outcome comes as usual)",
                by(&record)
            ),
            RequestState::Executed | RequestState::Failed => format!(
                "the request was already decided{} and has {}",
                by(&record),
                record.state
            ),
        };
        Ok(result(record.state, Some(message)))
    }

    /// After the store's start-up recovery: approvals re-armed or expired, approved requests
    /// that never started executed now.
    pub(crate) async fn recover(&self, report: RecoveryReport) -> Result<(), StoreError> {
        for record in self.approvals.recover(report).await? {
            self.execute_in_background(record);
        }
        Ok(())
    }

    /// Begins shutdown: no new requests, approval waits end, timers stop (pending requests
    /// stay pending for the next start).
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.cancel();
        self.approvals.stop_timers();
    }

    /// Stores a grant of `record`'s call for `term`, by `actor`: `(id, scope, agent)`, or
    /// `None` when it could not be made (logged; the approval itself stands).
    async fn grant(
        &self,
        record: &RequestRecord,
        actor: &str,
        term: GrantTerm,
    ) -> Option<(i64, String, String)> {
        let agent = record.agent_id.as_str();
        let Some(scope) = self.scope_of_call(agent, &record.tool, &record.args) else {
            tracing::warn!(agent, request_id = %record.request_id, "no grant: the call is no longer valid");
            return None;
        };
        let now = crate::store::Timestamp::now();
        let (expires_at, seconds) = match term {
            GrantTerm::For(duration) => (
                Some(crate::store::Timestamp::from_millis(
                    now.as_millis()
                        .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
                )),
                Some(duration.as_secs()),
            ),
            GrantTerm::Always => (None, None),
        };
        let audit = AuditEntry::new(
            agent,
            crate::store::AuditKind::Other("grant_created".to_owned()),
        )
        .request_id(record.request_id.as_str())
        .signature(record.signature.as_str())
        .actor(actor)
        .detail(json!({
            "scope": scope,
            "seconds": seconds,
            "expires_at": expires_at.map(crate::store::rfc3339),
        }));
        let grant = crate::store::NewGrant {
            agent_id: agent.to_owned(),
            scope: scope.clone(),
            tool: record.tool.clone(),
            request_id: record.request_id.clone(),
            created_by: actor.to_owned(),
            created_at: now,
            expires_at,
            audit: vec![audit],
        };
        match self.store.insert_grant(grant).await {
            Ok(id) => {
                tracing::info!(agent, grant = id, by = actor, ?seconds, "grant created");
                Some((id, scope, agent.to_owned()))
            }
            Err(error) => {
                tracing::error!(%error, "could not store a grant; the approval stands");
                None
            }
        }
    }

    /// Approves `agent`'s requests waiting for the same call as grant `id` (same scope).
    async fn approve_waiting_under(&self, id: i64, scope: &str, agent: &str) {
        let waiting = match self.approvals.pending().await {
            Ok(waiting) => waiting,
            Err(error) => {
                tracing::error!(%error, "could not list pending requests for a new grant");
                return;
            }
        };
        let actor = format!("grant:{id}");
        for request in waiting {
            if request.key.agent_id != agent
                || self
                    .scope_of_call(agent, &request.tool, &request.args)
                    .as_deref()
                    != Some(scope)
            {
                continue;
            }
            match self
                .approvals
                .resolve(request.key.clone(), Resolve::Approve(actor.clone()))
                .await
            {
                Ok(decided) => {
                    if let Some(record) = decided.execute {
                        let audit =
                            request::grant_used(agent, &record.request_id, &record.signature, id);
                        if let Err(error) = self.store.use_grant(id, audit).await {
                            tracing::error!(%error, "could not count a grant's use");
                        }
                        self.execute_in_background(record);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "could not approve a waiting request under a grant")
                }
            }
        }
    }

    fn execute_in_background(&self, record: crate::store::RequestRecord) {
        if let Some(engine) = self.self_ref.upgrade() {
            self.tasks
                .spawn(async move { engine.execute_approved(record).await });
        }
    }

    fn audit_in_background(&self, entry: AuditEntry) {
        let store = self.store.clone();
        self.tasks.spawn(async move {
            if let Err(error) = store.append_audit(entry).await {
                tracing::error!(%error, "could not append an audit record");
            }
        });
    }
}

impl Decider for Engine {
    fn decide(
        self: Arc<Self>,
        key: RequestKey,
        verdict: Verdict,
        actor: String,
        reason: Option<String>,
        grant: Option<GrantTerm>,
    ) -> BoxFuture<'static, DecideOutcome> {
        Box::pin(async move {
            if self.shutdown.is_cancelled() {
                // Stopping: the request stays pending and can be decided after the restart.
                return DecideOutcome::NotFound;
            }
            let how = match verdict {
                Verdict::Allow => Resolve::Approve(actor.clone()),
                Verdict::Deny => Resolve::Deny {
                    actor: actor.clone(),
                    reason,
                },
            };
            match self.approvals.resolve(key, how).await {
                Ok(decided) => {
                    if let Some(record) = decided.execute {
                        let grant = match grant {
                            Some(term) => self.grant(&record, &actor, term).await,
                            None => None,
                        };
                        self.execute_in_background(record);
                        if let Some((id, scope, agent)) = grant {
                            self.approve_waiting_under(id, &scope, &agent).await;
                        }
                    }
                    decided.outcome
                }
                Err(error) => {
                    tracing::error!(%error, "could not record a decision");
                    DecideOutcome::NotFound
                }
            }
        })
    }

    fn audit(self: Arc<Self>, entry: AuditEntry) -> BoxFuture<'static, bool> {
        Box::pin(async move {
            match self.store.append_audit(entry).await {
                Ok(_) => true,
                Err(error) => {
                    tracing::error!(%error, "could not write an approver's audit entry");
                    false
                }
            }
        })
    }

    fn pending(self: Arc<Self>) -> BoxFuture<'static, Vec<ApprovalRequest>> {
        Box::pin(async move {
            match self.approvals.pending().await {
                Ok(requests) => requests,
                Err(error) => {
                    tracing::error!(%error, "could not list pending requests");
                    Vec::new()
                }
            }
        })
    }
}
