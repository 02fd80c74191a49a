//! The request engine shared by every connection: rate limit → idempotency → one validation →
//! policy → allow / deny / ask, the approval life (durable pending row, approvers, timeouts,
//! decisions raced through the store's conditional transitions), execution, audit and delivery.
//! The WebSocket transport (`server`) hands it authenticated agents' calls through a
//! [`ConnectionLink`]; its parts live in `request` (a `tool_request`), `approval` (an `ask`),
//! `delivery` (waiters, attach, undelivered outcomes) and `wire` (outcomes as protocol shapes).

mod approval;
mod delivery;
mod request;
pub(crate) mod wire;

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

use self::wire::Outcome;
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
    let expires = crate::store::rfc3339(expires_at);
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

    fn audit_in_background(&self, entry: AuditEntry) {
        let store = self.store.clone();
        self.spawn(async move {
            if let Err(error) = store.append_audit(entry).await {
                tracing::error!(%error, "could not append an audit record");
            }
        });
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
