//! The request engine shared by every connection: rate limit → idempotency → policy →
//! allow / deny / ask, the approval life (durable pending row, approvers, timeouts, decisions
//! raced through the store's conditional transitions), execution, audit and delivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use agent_gate_manifest::{ArgsError, Manifest, Tool, ValidArgs};
use agent_gate_protocol::{
    ErrorCode, ErrorObject, Notification, PendingResults, RequestStatusParams, ToolRequestParams,
};
use serde_json::{Map, Value, json};
use tokio::sync::{oneshot, watch};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::wire::{self, Outcome};
use crate::approvals::{
    ApprovalHandle, ApprovalRequest, Approver, BoxFuture, DecideOutcome, Decider, Resolution,
    Verdict,
};
use crate::config::Config;
use crate::executor::{ExecutionError, Executor};
use crate::policy::{Action, DecidedBy, Policy, Reason};
use crate::ratelimit::{AuthThrottle, RequestLimiter};
use crate::store::{
    AuditEntry, AuditKind, Decision, InsertOutcome, NewRequest, RecoveryReport, RequestKey,
    RequestRecord, RequestState, Store, StoreError, Timestamp, Transition,
};

/// A message for a connection's writer.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// The text frame.
    pub(crate) text: String,
    /// Request ids whose outcome this frame carries: once the frame is written and the agent
    /// sends anything afterwards, they are marked delivered.
    pub(crate) carries: Vec<String>,
}

/// The sending side of a connection, as request handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLink {
    pub(crate) agent: Arc<str>,
    pub(crate) sender: tokio::sync::mpsc::Sender<Outbound>,
    /// Cancelled when the connection ends (or the gateway stops): waits for approvals end.
    pub(crate) stop: CancellationToken,
}

impl ConnectionLink {
    pub(crate) async fn send(&self, text: String, carries: Vec<String>) {
        // A closed connection is fine: the outcome stays in the store for the agent.
        let _ = self.sender.send(Outbound { text, carries }).await;
    }
}

enum Resolve {
    Approve(String),
    Deny(String),
    Expire,
}

/// Why a tool request got no outcome to deliver.
pub(crate) type Answer = Result<(String, Outcome), ErrorObject>;

struct PendingBook {
    /// agent → request id → expiry, for the per-agent cap and its retry hint.
    by_agent: HashMap<String, HashMap<String, Timestamp>>,
}

/// The shared engine.
pub(crate) struct Core {
    pub(crate) config: Arc<Config>,
    pub(crate) policy: Policy,
    pub(crate) manifest: Arc<Manifest>,
    pub(crate) store: Store,
    pub(crate) executor: Arc<Executor>,
    pub(crate) approvers: Vec<Arc<dyn Approver>>,
    pub(crate) limiter: RequestLimiter,
    pub(crate) auth_throttle: AuthThrottle,
    pub(crate) list_tools: Value,
    /// Background work that must finish before the store closes (executions, audits,
    /// approver calls, request handlers).
    pub(crate) tasks: TaskTracker,
    /// Cancelled when shutdown begins: no new connections or requests, approval waits end.
    pub(crate) shutdown: CancellationToken,
    /// Cancelled after in-flight work drained: connections close with 1001 (going away).
    pub(crate) close_connections: CancellationToken,
    waiters: Mutex<HashMap<RequestKey, Vec<oneshot::Sender<Outcome>>>>,
    timers: Mutex<HashMap<RequestKey, AbortHandle>>,
    pending: Mutex<PendingBook>,
    notifying: Mutex<HashMap<RequestKey, watch::Receiver<bool>>>,
    pub(crate) sessions: Mutex<HashMap<String, SessionEntry>>,
    next_connection: AtomicU64,
    self_ref: Weak<Core>,
}

/// The live connection of an agent (a newer one replaces it).
pub(crate) struct SessionEntry {
    pub(crate) connection: u64,
    pub(crate) replaced: CancellationToken,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn store_failure(error: &StoreError) -> ErrorObject {
    tracing::error!(%error, "store failure while handling a request");
    ErrorObject::new(
        ErrorCode::InternalError,
        "Internal error: the gateway could not record the request; retry later",
    )
}

fn rule_name(reason: &Reason<'_>) -> Option<String> {
    match reason {
        Reason::Policy(explanation) => match explanation.decided_by {
            DecidedBy::Rule(r) => Some(format!(
                "{}[{}] {} -> {}",
                r.rule.list, r.rule.index, r.rule.pattern, r.rule.action
            )),
            DecidedBy::Fallback => None,
        },
        _ => None,
    }
}

/// What an agent is told of a policy denial: `Denied by policy: <the rule's description>`
/// (or its pattern, for a rule without one) and `error.data` with the rule's pattern and the
/// signature it matched.
fn policy_denial(reason: &Reason<'_>, signature: &str) -> (String, Value) {
    match reason {
        Reason::Policy(explanation) => match explanation.decided_by {
            DecidedBy::Rule(r) => {
                let why = match &r.rule.description {
                    Some(description) => description.clone(),
                    None => format!("rule \"{}\"", r.rule.pattern),
                };
                (
                    format!("Denied by policy: {why}"),
                    json!({"rule": r.rule.pattern.to_string(), "signature": signature}),
                )
            }
            DecidedBy::Fallback => (
                "Denied by policy".to_owned(),
                json!({"signature": signature}),
            ),
        },
        _ => (
            "Denied by policy".to_owned(),
            json!({"signature": signature}),
        ),
    }
}

/// The audit detail of a decision on a call that affects several things: every target and
/// every signature judged with its action. `None` for a call judged once.
fn judgement_detail(decision: &crate::policy::Decision<'_>) -> Option<Value> {
    if decision.judged.len() < 2 && decision.targets.len() < 2 {
        return None;
    }
    let judged: Vec<Value> = decision
        .judged
        .iter()
        .map(|(signature, e)| json!({"signature": signature, "action": e.action.as_str()}))
        .collect();
    Some(json!({"targets": decision.targets, "judged": judged}))
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

/// A request id for a call that came without one: `gw-`, the time in milliseconds (12 hex
/// digits), then 64 random bits (16 hex digits).
///
/// The time goes first so that ids of consecutive calls sort together: the store's primary key
/// is `(request id, agent)`, and random keys would land every insert on a different page of
/// that index (measured: half the store's throughput, and worse as the table grows). The
/// random part keeps ids unique across restarts and clock steps.
fn new_request_id() -> String {
    let millis = Timestamp::now().as_millis().max(0) as u64 & 0xffff_ffff_ffff;
    format!("gw-{millis:012x}{:016x}", rand::random::<u64>())
}

fn duration_until(at: Timestamp) -> Duration {
    SystemTime::from(at)
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// A JSON-RPC notification as text (serialisation of our own types cannot fail; an error
/// would only drop the notification).
fn status_notification(request_id: &str, expires_at: Timestamp) -> Option<String> {
    let expires = crate::server::rfc3339(expires_at);
    RequestStatusParams::awaiting_approval(request_id, expires)
        .into_notification()
        .to_json()
        .ok()
        .or_else(|| {
            Notification::new("request_status", Value::Null)
                .to_json()
                .ok()
        })
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: Arc<Config>,
        policy: Policy,
        manifest: Manifest,
        store: Store,
        executor: Arc<Executor>,
        approvers: Vec<Arc<dyn Approver>>,
    ) -> Arc<Self> {
        let list_tools = json!({
            "tools": manifest.tools().map(Tool::list_entry).collect::<Vec<_>>()
        });
        let limiter = RequestLimiter::new(config.rate_limit.max_requests_per_minute);
        Arc::new_cyclic(|self_ref| Core {
            config,
            policy,
            manifest: Arc::new(manifest),
            store,
            executor,
            approvers,
            limiter,
            auth_throttle: AuthThrottle::new(),
            list_tools,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            close_connections: CancellationToken::new(),
            waiters: Mutex::new(HashMap::new()),
            timers: Mutex::new(HashMap::new()),
            pending: Mutex::new(PendingBook {
                by_agent: HashMap::new(),
            }),
            notifying: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
            self_ref: self_ref.clone(),
        })
    }

    pub(crate) fn approval_handle(&self) -> ApprovalHandle {
        let weak: Weak<dyn Decider> = self.self_ref.clone();
        ApprovalHandle::new(weak)
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    fn arc(&self) -> Option<Arc<Core>> {
        self.self_ref.upgrade()
    }

    /// Spawns tracked background work.
    fn spawn<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(future);
    }

    // ----- sessions -------------------------------------------------------------------

    /// Registers the authenticated connection `connection` of `agent`, replacing (closing)
    /// an older one.
    pub(crate) fn register_session(
        &self,
        agent: &str,
        connection: u64,
        replaced: CancellationToken,
    ) {
        let old = lock(&self.sessions).insert(
            agent.to_owned(),
            SessionEntry {
                connection,
                replaced,
            },
        );
        if let Some(old) = old {
            tracing::info!(agent, "a new connection replaces the agent's previous one");
            old.replaced.cancel();
        }
    }

    pub(crate) fn unregister_session(&self, agent: &str, connection: u64) {
        let mut sessions = lock(&self.sessions);
        if sessions
            .get(agent)
            .is_some_and(|s| s.connection == connection)
        {
            sessions.remove(agent);
        }
    }

    /// Number of agents connected now.
    pub(crate) fn connected_agents(&self) -> usize {
        lock(&self.sessions).len()
    }

    // ----- delivery -------------------------------------------------------------------

    fn add_waiter(&self, key: &RequestKey) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).entry(key.clone()).or_default().push(tx);
        rx
    }

    /// Hands a final outcome to every connection waiting for it.
    fn deliver(&self, key: &RequestKey, outcome: &Outcome) {
        let waiting = lock(&self.waiters).remove(key);
        for waiter in waiting.into_iter().flatten() {
            let _ = waiter.send(outcome.clone());
        }
    }

    fn drop_closed_waiters(&self, key: &RequestKey) {
        let mut waiters = lock(&self.waiters);
        if let Some(list) = waiters.get_mut(key) {
            list.retain(|w| !w.is_closed());
            if list.is_empty() {
                waiters.remove(key);
            }
        }
    }

    /// Waits for the outcome of `key` on `link` (until the connection or the gateway stops).
    async fn wait_for(
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

    /// Handles one `tool_request` of `link.agent`. `Ok` carries the request id and outcome;
    /// `Err` an error that belongs to no stored request (rate limit, invalid request, ...).
    /// `None`: the connection ended before the outcome was known (it stays stored).
    pub(crate) async fn tool_request(
        &self,
        link: &ConnectionLink,
        params: ToolRequestParams,
    ) -> Option<Answer> {
        let agent: &str = &link.agent;
        if let Err(retry) = self.limiter.check(agent) {
            self.audit_in_background(
                AuditEntry::new(agent, AuditKind::Other("rate_limited".to_owned()))
                    .detail(json!({"tool": params.tool, "limit": "max_requests_per_minute"})),
            );
            let limit = self.limiter.max_per_minute();
            return Some(Err(ErrorObject::new(
                ErrorCode::RateLimited,
                format!("Rate limit exceeded: at most {limit} requests per minute"),
            )
            .with_suggestion("wait and retry; retry_after says how long")
            .with_retry_after(retry.as_secs_f64().ceil())
            .with_details(
                json!({"limit": "max_requests_per_minute", "max": limit}),
            )));
        }
        let ToolRequestParams {
            tool,
            args,
            request_id,
        } = params;

        // Idempotency: the same agent re-sending a request id attaches to the request.
        if let Some(rid) = &request_id {
            match self.store.get_request(agent, rid.as_str()).await {
                Ok(Some(record)) => return self.attach_checked(link, record, &tool, &args).await,
                Ok(None) => {}
                Err(e) => return Some(Err(store_failure(&e))),
            }
        }
        let rid = request_id.unwrap_or_else(new_request_id);

        // Validated once: the same proof serves the judgement and the execution.
        let Some(tool_def) = self.manifest.tool(&tool) else {
            let reason = Reason::unknown_tool(&self.manifest, &tool);
            return Some(Err(self.invalid_request(agent, &rid, &tool, &reason).await));
        };
        let valid = match tool_def.validate(&args) {
            Ok(valid) => valid,
            Err(e) => {
                let reason = Reason::InvalidArguments(e);
                return Some(Err(self.invalid_request(agent, &rid, &tool, &reason).await));
            }
        };
        let decision = self.policy.judge(agent, valid);
        let rule = rule_name(&decision.reason);
        let signature = match (&decision.signature, &decision.reason) {
            (Some(signature), _) => signature.clone(),
            (None, reason) => {
                return Some(Err(self.invalid_request(agent, &rid, &tool, reason).await));
            }
        };
        let judgement = judgement_detail(&decision);
        let decision_audit = |d: Decision| {
            let mut entry = AuditEntry::new(agent, AuditKind::Decision)
                .request_id(rid.as_str())
                .signature(signature.as_str())
                .decision(d)
                .actor("policy");
            if let Some(detail) = &judgement {
                entry = entry.detail(detail.clone());
            }
            match &rule {
                Some(rule) => entry.rule(rule.as_str()),
                None => entry,
            }
        };
        let args_value = Value::Object(args.clone());
        match decision.action {
            Action::Allow => {
                let mut new = NewRequest::allowed(
                    agent,
                    rid.as_str(),
                    tool.as_str(),
                    args_value,
                    signature.as_str(),
                )
                .audit(decision_audit(Decision::Allow));
                if let Some(rule) = &rule {
                    new = new.rule(rule.as_str());
                }
                match self.store.insert_request(new).await {
                    Ok(InsertOutcome::Inserted) => {}
                    Ok(InsertOutcome::Duplicate(record)) => {
                        return self.attach(link, *record).await;
                    }
                    Ok(InsertOutcome::Conflict(record)) => return Some(Err(conflict(&record))),
                    Err(e) => return Some(Err(store_failure(&e))),
                }
                let key = RequestKey::new(agent, rid.as_str());
                let outcome = self.execute_and_record(&key, Ok(valid), &signature).await;
                self.deliver(&key, &outcome);
                Some(Ok((rid, outcome)))
            }
            Action::Deny => {
                let (message, data) = policy_denial(&decision.reason, &signature);
                let mut new = NewRequest::denied(
                    agent,
                    rid.as_str(),
                    tool.as_str(),
                    args_value,
                    signature.as_str(),
                )
                .error(ErrorCode::DeniedByPolicy.code(), message.as_str())
                .error_data(data.clone())
                .audit(decision_audit(Decision::Deny));
                if let Some(rule) = &rule {
                    new = new.rule(rule.as_str());
                }
                match self.store.insert_request(new).await {
                    Ok(InsertOutcome::Inserted) => {}
                    Ok(InsertOutcome::Duplicate(record)) => {
                        return self.attach(link, *record).await;
                    }
                    Ok(InsertOutcome::Conflict(record)) => return Some(Err(conflict(&record))),
                    Err(e) => return Some(Err(store_failure(&e))),
                }
                Some(Ok((
                    rid,
                    Outcome::Failed {
                        code: ErrorCode::DeniedByPolicy,
                        message,
                        data: Some(data),
                    },
                )))
            }
            Action::Ask => {
                let audit = decision_audit(Decision::Ask);
                let targets = decision.targets.clone();
                self.ask(link, rid, tool, args_value, signature, targets, rule, audit)
                    .await
            }
        }
    }

    async fn invalid_request(
        &self,
        agent: &str,
        rid: &str,
        tool: &str,
        reason: &Reason<'_>,
    ) -> ErrorObject {
        let (error, detail) = match reason {
            Reason::UnknownTool { tool, nearest } => {
                let mut available: Vec<String> = nearest.clone();
                let all = self
                    .manifest
                    .nearest_tools(tool, self.manifest.tools().len())
                    .into_iter()
                    .map(str::to_owned);
                for name in all {
                    if !available.contains(&name) {
                        available.push(name);
                    }
                }
                for t in self.manifest.tools() {
                    if !available.contains(&t.name) {
                        available.push(t.name.clone());
                    }
                }
                let suggestion = match nearest.first() {
                    Some(first) => format!("did you mean `{first}`? list_tools shows every tool"),
                    None => "call list_tools to see the tools this gateway offers".to_owned(),
                };
                (
                    ErrorObject::invalid_request(format!("Unknown tool `{tool}`"))
                        .with_suggestion(suggestion)
                        .with_details(json!({
                            "tool": tool,
                            "nearest": nearest,
                            "available_tools": available,
                        })),
                    json!({"reason": "unknown_tool", "tool": tool}),
                )
            }
            Reason::InvalidArguments(e) => (
                ErrorObject::invalid_request(format!("Invalid arguments for `{}`: {e}", e.tool))
                    .with_suggestion("fix the arguments; list_tools shows each tool's input_schema")
                    .with_details(json!({"tool": e.tool, "errors": e.details()})),
                json!({"reason": "invalid_arguments", "tool": e.tool, "errors": e.details()}),
            ),
            Reason::Policy(_) => (
                ErrorObject::invalid_request("Invalid request"),
                json!({"reason": "invalid", "tool": tool}),
            ),
        };
        // The refusal is audited before the agent hears of it.
        let entry = AuditEntry::new(agent, AuditKind::Decision)
            .request_id(rid)
            .decision(Decision::Deny)
            .actor("gateway")
            .detail(detail);
        if let Err(e) = self.store.append_audit(entry).await {
            return store_failure(&e);
        }
        error
    }

    fn audit_in_background(&self, entry: AuditEntry) {
        let store = self.store.clone();
        self.spawn(async move {
            if let Err(error) = store.append_audit(entry).await {
                tracing::error!(%error, "could not append an audit record");
            }
        });
    }

    /// Attaches to an existing request after checking it is the same call.
    async fn attach_checked(
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
    async fn attach(&self, link: &ConnectionLink, record: RequestRecord) -> Option<Answer> {
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

    #[allow(clippy::too_many_arguments)]
    async fn ask(
        &self,
        link: &ConnectionLink,
        rid: String,
        tool: String,
        args: Value,
        signature: String,
        targets: Vec<String>,
        rule: Option<String>,
        decision_audit: AuditEntry,
    ) -> Option<Answer> {
        let agent: &str = &link.agent;
        let now = Timestamp::now();
        let expires_at = now.saturating_add(self.config.approval_timeout);
        if let Err(error) = self.reserve_pending(agent, &rid, expires_at, now) {
            self.audit_in_background(
                AuditEntry::new(agent, AuditKind::Other("rate_limited".to_owned()))
                    .request_id(rid.as_str())
                    .signature(signature.as_str())
                    .detail(json!({"limit": "max_pending_approvals"})),
            );
            return Some(Err(error));
        }
        let key = RequestKey::new(agent, rid.as_str());
        let rx = self.add_waiter(&key);
        // Approvers see the arguments exactly as they are stored (no read back).
        let shown_args = args.clone();
        let mut new = NewRequest::pending(
            agent,
            rid.as_str(),
            tool.as_str(),
            args,
            signature.as_str(),
            expires_at,
        )
        .created_at(now)
        .audit(decision_audit)
        .audit(
            AuditEntry::new(agent, AuditKind::ApprovalRequested)
                .request_id(rid.as_str())
                .signature(signature.as_str())
                .detail(json!({"expires_at": expires_at.as_millis()})),
        );
        if let Some(rule) = &rule {
            new = new.rule(rule.as_str());
        }
        let inserted = self.store.insert_request(new).await;
        match inserted {
            Ok(InsertOutcome::Inserted) => {}
            other => {
                drop(rx);
                self.drop_closed_waiters(&key);
                self.release_pending(&key);
                return match other {
                    Ok(InsertOutcome::Duplicate(record)) => self.attach(link, *record).await,
                    Ok(InsertOutcome::Conflict(record)) => Some(Err(conflict(&record))),
                    Err(e) => Some(Err(store_failure(&e))),
                    Ok(InsertOutcome::Inserted) => None,
                };
            }
        }
        // The pending row is committed: now the timer and the approvers may see it.
        self.arm_timer(key.clone(), expires_at);
        let request = ApprovalRequest {
            key: key.clone(),
            tool,
            args: shown_args,
            signature,
            targets,
            rule,
            created_at: now,
            expires_at,
            approver_refs: None,
        };
        self.notify_approvers(request);
        if let Some(text) = status_notification(&rid, expires_at) {
            link.send(text, Vec::new()).await;
        }
        let outcome = self.wait_for(link, &key, rx).await?;
        Some(Ok((rid, outcome)))
    }

    fn reserve_pending(
        &self,
        agent: &str,
        rid: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<(), ErrorObject> {
        let max = self.config.rate_limit.max_pending_approvals;
        let mut book = lock(&self.pending);
        let mine = book.by_agent.entry(agent.to_owned()).or_default();
        let count = mine.len();
        if u32::try_from(count).unwrap_or(u32::MAX) >= max {
            let soonest = mine.values().min().copied();
            let retry = soonest
                .map(|at| (at.as_millis().saturating_sub(now.as_millis())).max(0) as f64 / 1000.0)
                .unwrap_or(0.0)
                .ceil();
            return Err(ErrorObject::new(
                ErrorCode::RateLimited,
                format!(
                    "Too many pending approvals: {count} of at most {max} are waiting for a human"
                ),
            )
            .with_suggestion("wait until a pending approval is decided or expires")
            .with_retry_after(retry)
            .with_details(
                json!({"limit": "max_pending_approvals", "max": max, "pending": count}),
            ));
        }
        mine.insert(rid.to_owned(), expires_at);
        Ok(())
    }

    fn release_pending(&self, key: &RequestKey) {
        let mut book = lock(&self.pending);
        if let Some(mine) = book.by_agent.get_mut(&key.agent_id) {
            mine.remove(&key.request_id);
            if mine.is_empty() {
                book.by_agent.remove(&key.agent_id);
            }
        }
    }

    /// Pending approvals per agent now (for tests and health).
    pub(crate) fn pending_count(&self) -> usize {
        lock(&self.pending)
            .by_agent
            .values()
            .map(HashMap::len)
            .sum()
    }

    fn arm_timer(&self, key: RequestKey, expires_at: Timestamp) {
        let Some(core) = self.arc() else { return };
        let wait = duration_until(expires_at);
        let timer_key = key.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = core.resolve(timer_key, Resolve::Expire).await;
        });
        if let Some(old) = lock(&self.timers).insert(key, task.abort_handle()) {
            old.abort();
        }
    }

    fn notify_approvers(&self, request: ApprovalRequest) {
        if self.approvers.is_empty() {
            return;
        }
        let (done_tx, done_rx) = watch::channel(false);
        lock(&self.notifying).insert(request.key.clone(), done_rx);
        let approvers = self.approvers.clone();
        let store = self.store.clone();
        let Some(core) = self.arc() else { return };
        self.spawn(async move {
            let calls = approvers.iter().map(|approver| {
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
                && let Err(error) = store
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
            lock(&core.notifying).remove(&request.key);
        });
    }

    fn tell_approvers(&self, key: RequestKey, resolution: Resolution) {
        if self.approvers.is_empty() {
            return;
        }
        let waiting = lock(&self.notifying).get(&key).cloned();
        let approvers = self.approvers.clone();
        let store = self.store.clone();
        let manifest = Arc::clone(&self.manifest);
        self.spawn(async move {
            if let Some(mut done) = waiting {
                let _ = done.wait_for(|d| *d).await;
            }
            let record = match store
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
            let request =
                ApprovalRequest::from_record(&record).with_targets(targets_of(&manifest, &record));
            let calls = approvers
                .iter()
                .map(|approver| approver.resolved(&request, &resolution));
            for result in futures_util::future::join_all(calls).await {
                if let Err(error) = result {
                    tracing::warn!(%error, "an approver could not update its message");
                }
            }
        });
    }

    // ----- resolution -----------------------------------------------------------------

    async fn resolve(&self, key: RequestKey, how: Resolve) -> Result<DecideOutcome, StoreError> {
        let agent = key.agent_id.as_str();
        let rid = key.request_id.as_str();
        let Some(record) = self.store.get_request(agent, rid).await? else {
            return Ok(DecideOutcome::NotFound);
        };
        if record.state != RequestState::Pending {
            return Ok(match record.state {
                RequestState::Expired => DecideOutcome::Expired,
                _ => DecideOutcome::AlreadyDecided,
            });
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
            Resolve::Deny(actor) => Transition::deny(agent, rid, actor.as_str())
                .error(ErrorCode::DeniedByHuman.code(), "Denied by user")
                .audit(audit(AuditKind::Denied).actor(actor.as_str())),
            Resolve::Expire => Transition::expire(agent, rid)
                .error(ErrorCode::ApprovalTimeout.code(), "Approval timed out")
                .audit(audit(AuditKind::Expired).actor("timeout")),
        }
        .at(at);
        if !self.store.transition(transition).await? {
            return Ok(match self.store.get_request(agent, rid).await? {
                None => DecideOutcome::NotFound,
                Some(r) if r.state == RequestState::Expired => DecideOutcome::Expired,
                Some(_) => DecideOutcome::AlreadyDecided,
            });
        }
        // This call won. The timer is over (a timer resolving itself must not abort itself).
        let timer = lock(&self.timers).remove(&key);
        if let Some(timer) = timer
            && !matches!(how, Resolve::Expire)
        {
            timer.abort();
        }
        self.release_pending(&key);
        match how {
            Resolve::Approve(actor) => {
                tracing::info!(agent, request_id = rid, by = %actor, "approved");
                self.tell_approvers(key.clone(), Resolution::Approved { by: actor, at });
                if let Some(core) = self.arc() {
                    let mut approved = record;
                    approved.state = RequestState::Approved;
                    self.spawn(async move { core.execute_approved(approved).await });
                }
            }
            Resolve::Deny(actor) => {
                tracing::info!(agent, request_id = rid, by = %actor, "denied");
                self.tell_approvers(key.clone(), Resolution::Denied { by: actor, at });
                self.deliver(
                    &key,
                    &Outcome::Failed {
                        code: ErrorCode::DeniedByHuman,
                        message: "Denied by user".to_owned(),
                        data: None,
                    },
                );
            }
            Resolve::Expire => {
                tracing::info!(agent, request_id = rid, "approval timed out");
                self.tell_approvers(key.clone(), Resolution::Expired { at });
                self.deliver(
                    &key,
                    &Outcome::Failed {
                        code: ErrorCode::ApprovalTimeout,
                        message: "Approval timed out".to_owned(),
                        data: None,
                    },
                );
            }
        }
        Ok(DecideOutcome::Won)
    }

    /// Runs an approved request: `approved → executing` (never twice), execute, record.
    async fn execute_approved(&self, record: RequestRecord) {
        let key = record.key();
        let agent = key.agent_id.as_str();
        let rid = key.request_id.as_str();
        let args = match &record.args {
            Value::Object(map) => Some(map.clone()),
            _ => None,
        };
        let (Some(tool), Some(args)) = (self.manifest.tool(&record.tool), args) else {
            let message = format!(
                "tool `{}` is no longer in the manifest; the approved request was not executed",
                record.tool
            );
            let transition =
                Transition::new(agent, rid, RequestState::Approved, RequestState::Failed)
                    .error(ErrorCode::ExecutionFailed.code(), message.as_str())
                    .error_data(json!({"kind": "invalid", "may_have_executed": false}))
                    .audit(
                        AuditEntry::new(agent, AuditKind::Failed)
                            .request_id(rid)
                            .signature(record.signature.as_str())
                            .detail(json!({"error": message})),
                    );
            match self.store.transition(transition).await {
                Ok(true) => self.deliver(
                    &key,
                    &Outcome::Failed {
                        code: ErrorCode::ExecutionFailed,
                        message,
                        data: Some(json!({"kind": "invalid", "may_have_executed": false})),
                    },
                ),
                Ok(false) => {}
                Err(error) => tracing::error!(%error, "could not record a failed execution"),
            }
            return;
        };
        let start = Transition::start(agent, rid).audit(
            AuditEntry::new(agent, AuditKind::Executing)
                .request_id(rid)
                .signature(record.signature.as_str()),
        );
        match self.store.transition(start).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::error!(%error, "could not start an approved request; it stays approved");
                return;
            }
        }
        let outcome = self
            .execute_and_record(&key, tool.validate(&args), &record.signature)
            .await;
        self.deliver(&key, &outcome);
    }

    /// Executes a request in state `executing` and records the outcome (with its audit).
    ///
    /// `valid` is the proof that the arguments were validated (once, for the request), or why
    /// they are not valid now (a stored, approved request checked against the manifest again
    /// after a restart): that is recorded as a failed execution.
    async fn execute_and_record(
        &self,
        key: &RequestKey,
        valid: Result<ValidArgs<'_>, ArgsError>,
        signature: &str,
    ) -> Outcome {
        let agent = key.agent_id.as_str();
        let rid = key.request_id.as_str();
        let audit = |kind: AuditKind| {
            AuditEntry::new(agent, kind)
                .request_id(rid)
                .signature(signature)
        };
        let tool_name = match &valid {
            Ok(valid) => valid.tool().name.clone(),
            Err(error) => error.tool.clone(),
        };
        let executed = match valid {
            Ok(valid) => self.executor.execute_valid(valid).await,
            Err(error) => Err(ExecutionError::from(error)),
        };
        match executed {
            Ok(data) => {
                let size = serde_json::to_vec(&data).map(|v| v.len()).unwrap_or(0);
                let transition = Transition::executed(agent, rid, data.clone())
                    .audit(audit(AuditKind::Executed).detail(json!({"result_bytes": size})));
                if let Err(error) = self.store.transition(transition).await {
                    tracing::error!(%error, agent, request_id = rid, "could not record an execution result");
                }
                Outcome::Executed(data)
            }
            Err(error) => {
                let message = error.to_string();
                let data = error.data();
                tracing::warn!(agent, request_id = rid, tool = %tool_name, error = %message, "execution failed");
                let transition = Transition::failed(
                    agent,
                    rid,
                    ErrorCode::ExecutionFailed.code(),
                    message.as_str(),
                )
                .error_data(data.clone())
                .audit(audit(AuditKind::Failed).detail(json!({"error": message, "data": data})));
                if let Err(error) = self.store.transition(transition).await {
                    tracing::error!(%error, agent, request_id = rid, "could not record an execution failure");
                }
                Outcome::Failed {
                    code: ErrorCode::ExecutionFailed,
                    message,
                    data: Some(data),
                }
            }
        }
    }

    // ----- other methods --------------------------------------------------------------

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

    /// After the store's start-up recovery (`report`): tells approvers of requests marked
    /// failed, executes approved-not-started requests,
    /// pending → timers re-armed from `expires_at`, expired pending → expired now.
    pub(crate) async fn recover(&self, report: RecoveryReport) -> Result<(), StoreError> {
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
                {
                    let mut book = lock(&self.pending);
                    book.by_agent
                        .entry(record.agent_id.clone())
                        .or_default()
                        .insert(record.request_id.clone(), expires_at);
                }
                self.arm_timer(record.key(), expires_at);
            }
        }
        for record in &report.expired_pending {
            self.resolve(record.key(), Resolve::Expire).await?;
        }
        for record in report.approved {
            if let Some(core) = self.arc() {
                self.spawn(async move { core.execute_approved(record).await });
            }
        }
        Ok(())
    }

    /// Stops every approval timer (pending requests stay pending for the next start).
    pub(crate) fn stop_timers(&self) {
        for (_, timer) in lock(&self.timers).drain() {
            timer.abort();
        }
    }
}

fn conflict(record: &RequestRecord) -> ErrorObject {
    ErrorObject::invalid_request(format!(
        "request_id `{}` was already used for a different call (tool `{}` with other arguments)",
        record.request_id, record.tool
    ))
    .with_suggestion(
        "use a new request_id for a new call; re-send the same tool and args to resume",
    )
    .with_details(json!({"request_id": record.request_id, "tool": record.tool}))
}

impl Decider for Core {
    fn decide(
        self: Arc<Self>,
        key: RequestKey,
        verdict: Verdict,
        actor: String,
    ) -> BoxFuture<'static, DecideOutcome> {
        Box::pin(async move {
            if self.shutdown.is_cancelled() {
                // Stopping: the request stays pending and can be decided after the restart.
                return DecideOutcome::NotFound;
            }
            let how = match verdict {
                Verdict::Allow => Resolve::Approve(actor),
                Verdict::Deny => Resolve::Deny(actor),
            };
            match self.resolve(key, how).await {
                Ok(outcome) => outcome,
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
            match self.store.pending_unexpired(Timestamp::now()).await {
                Ok(records) => records
                    .iter()
                    .map(|r| {
                        ApprovalRequest::from_record(r).with_targets(targets_of(&self.manifest, r))
                    })
                    .collect(),
                Err(error) => {
                    tracing::error!(%error, "could not list pending requests");
                    Vec::new()
                }
            }
        })
    }
}
