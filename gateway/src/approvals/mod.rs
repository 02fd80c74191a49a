//! Human approvals: the whole life of an `ask` (`lifecycle`: the pending cap, the durable
//! pending row, timers, telling approvers, resolving races through the store), the
//! [`Approver`] trait that Telegram, the web page and tests implement, the [`ApprovalHandle`]
//! through which they submit decisions, and [`ChannelApprover`], an in-process approver driven
//! through a channel (tests, demos, embedding).
//!
//! # Life of an approval
//!
//! 1. The policy says `ask`; the gateway commits the `pending` row (durably) and only then
//!    calls [`Approver::notify`] on every approver. What `notify` returns (message
//!    references, e.g. a Telegram chat and message id) is persisted with the request, under
//!    the approver's [`Approver::name`], so the approver can edit its message after a
//!    restart ([`ApprovalRequest::approver_refs`]).
//! 2. A human decides: the approver calls [`ApprovalHandle::decide`] with the request's
//!    [`RequestKey`], allow or deny, and who decided. The store's conditional transition
//!    decides races: exactly one of the decisions, the timeout and a restart wins; the others
//!    get [`DecideOutcome::AlreadyDecided`], [`DecideOutcome::Expired`] or
//!    [`DecideOutcome::Cancelled`].
//! 3. Every approver is told the outcome once through [`Approver::resolved`] (approved by
//!    whom and when, denied, expired, cancelled), so it can edit its message.
//!
//! Approvers must not block: `notify` and `resolved` are awaited in a background task, and a
//! failing approver is logged and never blocks the resolution.

mod channel;
mod lifecycle;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

pub use channel::{ApproverEvent, ChannelApprover};
pub(crate) use lifecycle::{Approvals, Ask, AskError, Asked, CANCELLED_BY_AGENT, Resolve};

use crate::store::{AuditEntry, RequestKey, RequestRecord, Timestamp};

/// A boxed future, as returned by the [`Approver`] methods (object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request waiting for a human, as shown to approvers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalRequest {
    /// The agent and its request id; pass it back to [`ApprovalHandle::decide`].
    pub key: RequestKey,
    /// The tool requested.
    pub tool: String,
    /// The arguments (already validated against the manifest).
    pub args: Value,
    /// The signature the policy judged, e.g. `ha_call_service(light.turn_on, light.bedroom)`
    /// (for a call that affects several entities: the one that asked).
    pub signature: String,
    /// Everything the call affects (entity ids), each once, so the approver sees them all;
    /// empty when the call names none.
    pub targets: Vec<String>,
    /// The rule that asked for approval (absent when nothing matched: the fallback).
    pub rule: Option<String>,
    /// When the request was made.
    pub created_at: Timestamp,
    /// When it expires if nobody decides.
    pub expires_at: Timestamp,
    /// The message references every approver returned from [`Approver::notify`], by approver
    /// name (a JSON object), or `None` before any were stored.
    pub approver_refs: Option<Value>,
}

impl ApprovalRequest {
    /// Builds the view of a stored request (`expires_at` defaults to its creation time when
    /// the row has none, which only happens for requests that never were pending).
    pub fn from_record(record: &RequestRecord) -> Self {
        Self {
            key: record.key(),
            tool: record.tool.clone(),
            args: record.args.clone(),
            signature: record.signature.clone(),
            targets: Vec::new(),
            rule: record.rule.clone(),
            created_at: record.created_at,
            expires_at: record.expires_at.unwrap_or(record.created_at),
            approver_refs: record.approver_refs.clone(),
        }
    }

    /// The same request with what it affects (see [`ApprovalRequest::targets`]).
    pub fn with_targets(mut self, targets: Vec<String>) -> Self {
        self.targets = targets;
        self
    }

    /// The references the approver called `name` stored for this request, if any.
    pub fn refs_of(&self, name: &str) -> Option<&Value> {
        self.approver_refs.as_ref().and_then(|refs| refs.get(name))
    }
}

/// A human's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Execute the request.
    Allow,
    /// Refuse it (-32001 for the agent).
    Deny,
}

/// How long an approval's grant lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantTerm {
    /// For this long (at most [`MAX_GRANT`]).
    For(Duration),
    /// Until someone revokes it ("always allow").
    Always,
}

/// The longest a grant lasts (longer ones are cut to this).
pub const MAX_GRANT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The grant durations approvers are offered unless configured otherwise: 15 minutes, an
/// hour, eight hours.
pub const DEFAULT_GRANT_DURATIONS: [Duration; 3] = [
    Duration::from_secs(15 * 60),
    Duration::from_secs(3600),
    Duration::from_secs(8 * 3600),
];

/// A grant duration as approvers see it: `15 min`, `1 h`, `8 h`, `90 s`.
pub fn grant_label(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// The most characters of a denial's reason the agent is told.
pub const MAX_DENY_REASON_CHARS: usize = 500;

/// A human's reason for a denial as the agent gets it: control characters dropped, runs of
/// whitespace made one space, trimmed, at most [`MAX_DENY_REASON_CHARS`] characters; `None`
/// when nothing is left.
pub fn deny_reason(text: &str) -> Option<String> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let joined = words.join(" ");
    let reason: String = joined.chars().take(MAX_DENY_REASON_CHARS).collect();
    (!reason.is_empty()).then_some(reason)
}

/// How a pending request ended, as told to approvers by [`Approver::resolved`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Resolution {
    /// A human approved it.
    Approved {
        /// Who (as given to [`ApprovalHandle::decide`]).
        by: String,
        /// When.
        at: Timestamp,
    },
    /// A human denied it.
    Denied {
        /// Who.
        by: String,
        /// When.
        at: Timestamp,
        /// Why, if they said (see [`deny_reason`]).
        reason: Option<String>,
    },
    /// Nobody decided before the approval timeout.
    Expired {
        /// When it expired.
        at: Timestamp,
    },
    /// Withdrawn: by the agent (`cancel_request`, MCP `tasks/cancel`), or by the gateway when
    /// its execution was interrupted by a restart (the outcome is unknown and it is never
    /// re-run). `reason` says which.
    Cancelled {
        /// Why.
        reason: String,
        /// When.
        at: Timestamp,
    },
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolution::Approved { by, .. } => write!(f, "approved by {by}"),
            Resolution::Denied { by, .. } => write!(f, "denied by {by}"),
            Resolution::Expired { .. } => f.write_str("expired"),
            Resolution::Cancelled { reason, .. } => write!(f, "cancelled: {reason}"),
        }
    }
}

/// What [`ApprovalHandle::decide`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecideOutcome {
    /// This decision won: the request is approved (and executes) or denied.
    Won,
    /// Someone else decided first (another approver, a second press).
    AlreadyDecided,
    /// The request expired before the decision.
    Expired,
    /// The agent withdrew the request (`cancel_request`, `tasks/cancel`) before the decision.
    Cancelled,
    /// No such request.
    NotFound,
}

/// An approver failed to deliver or update its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("approver `{approver}` failed: {message}")]
pub struct ApproverError {
    /// The approver's name.
    pub approver: String,
    /// What went wrong (never a token).
    pub message: String,
}

impl ApproverError {
    /// An error of approver `approver`.
    pub fn new(approver: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            approver: approver.into(),
            message: message.into(),
        }
    }
}

/// Someone who decides `ask` requests: the Telegram bot, the web page, a test.
///
/// Implementations are shared (`Arc<dyn Approver>`) and called from background tasks.
pub trait Approver: Send + Sync + 'static {
    /// A short stable name (`telegram`, `web`, ...): the key of its message references and
    /// the name in the health report.
    fn name(&self) -> &str;

    /// Called once at start-up, before any request is shown, with the handle to submit
    /// decisions through (e.g. to start polling for button presses).
    fn start(&self, handle: ApprovalHandle) -> BoxFuture<'_, Result<(), ApproverError>> {
        drop(handle);
        Box::pin(async { Ok(()) })
    }

    /// Shows a new pending request to humans. Returns references to persist with the request
    /// (e.g. `{"chat_id": 1, "message_id": 2}`), or `None`.
    fn notify<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApproverError>>;

    /// Tells the approver how a request it was shown ended (once per request).
    fn resolved<'a>(
        &'a self,
        request: &'a ApprovalRequest,
        resolution: &'a Resolution,
    ) -> BoxFuture<'a, Result<(), ApproverError>>;

    /// Whether the approver can reach its humans (for `/healthz`); `Err` says why not.
    fn health(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    /// Called once at shutdown; pending requests stay pending for the next start.
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// The gateway side of approvals, implemented by the running gateway.
pub(crate) trait Decider: Send + Sync + 'static {
    fn decide(
        self: Arc<Self>,
        key: RequestKey,
        verdict: Verdict,
        actor: String,
        reason: Option<String>,
        grant: Option<GrantTerm>,
    ) -> BoxFuture<'static, DecideOutcome>;

    fn pending(self: Arc<Self>) -> BoxFuture<'static, Vec<ApprovalRequest>>;

    fn audit(self: Arc<Self>, entry: AuditEntry) -> BoxFuture<'static, bool>;
}

/// Submits human decisions to the running gateway. Cheap to clone; holds the gateway weakly,
/// so a handle kept by an approver does not keep a stopped gateway alive.
#[derive(Clone)]
pub struct ApprovalHandle {
    decider: Weak<dyn Decider>,
}

impl fmt::Debug for ApprovalHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApprovalHandle")
            .field("gateway_running", &(self.decider.strong_count() > 0))
            .finish()
    }
}

impl ApprovalHandle {
    pub(crate) fn new(decider: Weak<dyn Decider>) -> Self {
        Self { decider }
    }

    /// Submits `verdict` for the request `key` on behalf of `actor` (e.g. `telegram:@alice`).
    ///
    /// The store's conditional transition decides: the first of all decisions, the timeout
    /// and a shutdown wins. On [`DecideOutcome::Won`] with [`Verdict::Allow`] the request is
    /// executed (in the background) and the agent answered. Returns
    /// [`DecideOutcome::NotFound`] once the gateway is stopping or stopped (the request stays
    /// pending and can be decided after the next start) and if the store failed to record the
    /// decision (logged; nothing was decided).
    pub async fn decide(
        &self,
        key: RequestKey,
        verdict: Verdict,
        actor: impl Into<String>,
    ) -> DecideOutcome {
        self.submit(key, verdict, actor.into(), None, None).await
    }

    /// Hands a decision to the running gateway; [`DecideOutcome::NotFound`] once it is gone.
    async fn submit(
        &self,
        key: RequestKey,
        verdict: Verdict,
        actor: String,
        reason: Option<String>,
        grant: Option<GrantTerm>,
    ) -> DecideOutcome {
        match self.decider.upgrade() {
            Some(decider) => decider.decide(key, verdict, actor, reason, grant).await,
            None => DecideOutcome::NotFound,
        }
    }

    /// Denies the request `key` on behalf of `actor`, telling the agent why: `reason` (tidied
    /// by [`deny_reason`]; nothing left of it is a denial without a reason) goes into the
    /// error's message and `error.data.reason`. Otherwise as [`ApprovalHandle::decide`].
    pub async fn deny_because(
        &self,
        key: RequestKey,
        actor: impl Into<String>,
        reason: &str,
    ) -> DecideOutcome {
        self.submit(key, Verdict::Deny, actor.into(), deny_reason(reason), None)
            .await
    }

    /// Approves the request `key` on behalf of `actor` and grants its agent the same call for
    /// `duration` (at most [`MAX_GRANT`]): a later call of that agent with exactly the same
    /// signatures (every entity it affects) is allowed without asking until then, unless a
    /// deny rule denies it; requests of the same call already waiting are approved with it.
    /// The grant is stored, listed on the web page (where it can be revoked) and audited.
    pub async fn allow_for(
        &self,
        key: RequestKey,
        actor: impl Into<String>,
        duration: Duration,
    ) -> DecideOutcome {
        let duration = duration.min(MAX_GRANT);
        let term = GrantTerm::For(duration);
        self.submit(key, Verdict::Allow, actor.into(), None, Some(term))
            .await
    }

    /// Approves the request `key` on behalf of `actor` and allows its agent the same call
    /// from now on ("always allow"): a grant without expiry, bound like any grant to the
    /// agent and the call's exact signatures, listed on the web page until someone revokes it.
    /// Deny rules still win over it.
    pub async fn always_allow(&self, key: RequestKey, actor: impl Into<String>) -> DecideOutcome {
        let term = GrantTerm::Always;
        self.submit(key, Verdict::Allow, actor.into(), None, Some(term))
            .await
    }

    /// Appends `entry` to the audit log (e.g. a button press by someone who may not decide).
    /// Returns whether it was written; `false` once the gateway has stopped.
    pub async fn audit(&self, entry: AuditEntry) -> bool {
        match self.decider.upgrade() {
            Some(decider) => decider.audit(entry).await,
            None => false,
        }
    }

    /// The requests waiting for a decision now, soonest expiry first (for a web page or a
    /// bot command listing them). Empty once the gateway has stopped.
    pub async fn pending(&self) -> Vec<ApprovalRequest> {
        match self.decider.upgrade() {
            Some(decider) => decider.pending().await,
            None => Vec::new(),
        }
    }
}
