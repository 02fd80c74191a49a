//! Prometheus metrics: what the gateway counts and measures, and `GET /metrics` on the HTTP
//! side (beside `/healthz`, with the same access rules; never on the agents' port), in the
//! Prometheus text format (OpenMetrics), with the `prometheus-client` crate.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `agent_gate_requests_total` | counter | `tool`, `decision` (`allow`, `deny`, `ask`, `refused`), `outcome` (`executed`, `failed`, `denied`, `expired`, `cancelled`, `refused`) |
//! | `agent_gate_decision_duration_seconds` | histogram | `by` (`policy`, `grant`, `human`, `timeout`, `agent`): from the call's arrival to its decision |
//! | `agent_gate_execution_duration_seconds` | histogram | `tool`: the backend call |
//! | `agent_gate_request_duration_seconds` | histogram | `tool`: from the call's arrival to its recorded outcome |
//! | `agent_gate_pending_approvals` | gauge | — |
//! | `agent_gate_approver_up` | gauge | `approver`: 1 when it can reach its humans |
//! | `agent_gate_connections` | gauge | `front` (`websocket`, `mcp`): open agent connections |
//! | `agent_gate_store_commit_duration_seconds` | histogram | — |
//! | `agent_gate_store_batch_size` | histogram | — (writes per transaction) |
//! | `agent_gate_reloads_total` | counter | `result` (`ok`, `refused`): reloads of agents and permissions |
//!
//! Counters only ever see tool names from the manifest (an unknown tool counts as `unknown`),
//! so an agent cannot grow the label sets.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::Engine;
use crate::server::Front;

/// The content type of the text format served.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets: 50 µs to about 100 s, doubling (a backend call or a store commit; the
/// last bucket is `+Inf`).
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.0, 22)
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// Buckets of waits that may include a human: 50 µs to about 10 days, doubling, so that a
/// decision taken at any `approval_timeout` (at most 7 days) lands in a finite bucket (a
/// policy decision takes microseconds, a human minutes).
fn human_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.0, 35)
}

fn human_histogram() -> Histogram {
    Histogram::new(human_buckets())
}

/// How a call was decided, as `agent_gate_requests_total` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecisionLabel {
    /// The policy (or a grant) allowed it.
    Allow,
    /// The policy denied it.
    Deny,
    /// The policy asked a human.
    Ask,
    /// Refused before judgement (invalid arguments, unknown tool, rate limit).
    Refused,
}

impl DecisionLabel {
    fn as_str(self) -> &'static str {
        match self {
            DecisionLabel::Allow => "allow",
            DecisionLabel::Deny => "deny",
            DecisionLabel::Ask => "ask",
            DecisionLabel::Refused => "refused",
        }
    }
}

/// How a call ended, as `agent_gate_requests_total` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutcomeLabel {
    /// Executed, with a result.
    Executed,
    /// The execution failed.
    Failed,
    /// Denied by the policy or a human.
    Denied,
    /// Nobody decided in time.
    Expired,
    /// Withdrawn by the agent.
    Cancelled,
    /// Refused before judgement.
    Refused,
}

impl OutcomeLabel {
    fn as_str(self) -> &'static str {
        match self {
            OutcomeLabel::Executed => "executed",
            OutcomeLabel::Failed => "failed",
            OutcomeLabel::Denied => "denied",
            OutcomeLabel::Expired => "expired",
            OutcomeLabel::Cancelled => "cancelled",
            OutcomeLabel::Refused => "refused",
        }
    }
}

/// Who decided a call, as `agent_gate_decision_duration_seconds` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecidedBy {
    /// The policy, at once.
    Policy,
    /// A live grant.
    Grant,
    /// A human approver.
    Human,
    /// The approval timeout.
    Timeout,
    /// The agent withdrew it.
    Agent,
}

impl DecidedBy {
    fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Policy => "policy",
            DecidedBy::Grant => "grant",
            DecidedBy::Human => "human",
            DecidedBy::Timeout => "timeout",
            DecidedBy::Agent => "agent",
        }
    }
}

/// An agent-facing transport, as `agent_gate_connections` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrontLabel {
    /// The WebSocket JSON-RPC front.
    WebSocket,
    /// The MCP Streamable HTTP front.
    Mcp,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    tool: String,
    decision: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByLabels {
    by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApproverLabels {
    approver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrontLabels {
    front: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The store writer's measurements (shared with the writer thread, which records them).
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Time of each transaction, `BEGIN` to `COMMIT`.
    pub(crate) commit: Histogram,
    /// Writes per transaction.
    pub(crate) batch: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            commit: latency_histogram(),
            batch: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
        }
    }
}

/// Everything the gateway counts, and the registry `/metrics` encodes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    decision: HistogramFamily<ByLabels>,
    execution: HistogramFamily<ToolLabels>,
    total: HistogramFamily<ToolLabels>,
    pending: Gauge,
    approver_up: Family<ApproverLabels, Gauge>,
    connections: Family<FrontLabels, Gauge<i64, AtomicI64Gauge>>,
    reloads: Family<ResultLabels, Counter>,
}

type AtomicI64Gauge = std::sync::atomic::AtomicI64;

impl Metrics {
    /// The metrics of a gateway whose store writer records into `store`.
    pub(crate) fn new(store: &StoreMetrics) -> Self {
        let mut registry = Registry::with_prefix("agent_gate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Calls by tool, how they were decided and how they ended",
            requests.clone(),
        );
        let decision: HistogramFamily<ByLabels> = Family::new_with_constructor(human_histogram);
        registry.register_with_unit(
            "decision_duration",
            "From a call's arrival to its decision, by who decided",
            prometheus_client::registry::Unit::Seconds,
            decision.clone(),
        );
        let execution: HistogramFamily<ToolLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "execution_duration",
            "The backend call of an executed request",
            prometheus_client::registry::Unit::Seconds,
            execution.clone(),
        );
        let total: HistogramFamily<ToolLabels> = Family::new_with_constructor(human_histogram);
        registry.register_with_unit(
            "request_duration",
            "From a call's arrival to its recorded outcome",
            prometheus_client::registry::Unit::Seconds,
            total.clone(),
        );
        let pending = Gauge::default();
        registry.register(
            "pending_approvals",
            "Requests waiting for a human",
            pending.clone(),
        );
        let approver_up = Family::<ApproverLabels, Gauge>::default();
        registry.register(
            "approver_up",
            "1 when the approver can reach its humans, 0 otherwise",
            approver_up.clone(),
        );
        let connections = Family::<FrontLabels, Gauge<i64, AtomicI64Gauge>>::default();
        registry.register(
            "connections",
            "Open agent connections by front",
            connections.clone(),
        );
        registry.register_with_unit(
            "store_commit_duration",
            "Time of each store transaction, BEGIN to COMMIT",
            prometheus_client::registry::Unit::Seconds,
            store.commit.clone(),
        );
        registry.register(
            "store_batch_size",
            "Writes per store transaction (group commit)",
            store.batch.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of agents and permissions (SIGHUP, agent-gate reload) by result",
            reloads.clone(),
        );
        Self {
            reloads,
            registry,
            requests,
            decision,
            execution,
            total,
            pending,
            approver_up,
            connections,
        }
    }

    /// Counts a call of `tool` that was decided `decision` and ended `outcome`.
    pub(crate) fn request(&self, tool: &str, decision: DecisionLabel, outcome: OutcomeLabel) {
        self.requests
            .get_or_create(&RequestLabels {
                tool: tool.to_owned(),
                decision: decision.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Records how long a decision took, by who made it.
    pub(crate) fn decided(&self, by: DecidedBy, took: Duration) {
        self.decision
            .get_or_create(&ByLabels { by: by.as_str() })
            .observe(took.as_secs_f64());
    }

    /// Records the backend call of `tool`.
    pub(crate) fn executed(&self, tool: &str, took: Duration) {
        self.execution
            .get_or_create(&ToolLabels {
                tool: tool.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records a request of `tool` from arrival to recorded outcome.
    pub(crate) fn finished(&self, tool: &str, took: Duration) {
        self.total
            .get_or_create(&ToolLabels {
                tool: tool.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a reload that was applied (`ok`) or refused.
    pub(crate) fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// One more open connection on `front`, until the guard is dropped.
    pub(crate) fn connection(self: &Arc<Self>, front: FrontLabel) -> ConnectionGuard {
        let gauge = self
            .connections
            .get_or_create(&FrontLabels {
                front: front_name(front),
            })
            .clone();
        gauge.inc();
        ConnectionGuard { gauge }
    }

    /// Sets the gauges read at scrape time and encodes everything.
    fn render(&self, scraped: &Scraped) -> Result<String, std::fmt::Error> {
        self.pending
            .set(i64::try_from(scraped.pending).unwrap_or(i64::MAX));
        self.connections
            .get_or_create(&FrontLabels {
                front: front_name(FrontLabel::WebSocket),
            })
            .set(i64::try_from(scraped.websocket_connections).unwrap_or(i64::MAX));
        for (name, up) in &scraped.approvers {
            self.approver_up
                .get_or_create(&ApproverLabels {
                    approver: name.clone(),
                })
                .set(i64::from(*up));
        }
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn front_name(front: FrontLabel) -> &'static str {
    match front {
        FrontLabel::WebSocket => "websocket",
        FrontLabel::Mcp => "mcp",
    }
}

/// Counts one open connection while it lives ([`Metrics::connection`]).
#[derive(Debug)]
pub(crate) struct ConnectionGuard {
    gauge: Gauge<i64, AtomicI64Gauge>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// What the gauges read at scrape time.
struct Scraped {
    pending: usize,
    websocket_connections: usize,
    approvers: Vec<(String, bool)>,
}

/// The `/metrics` route.
pub(crate) fn router(engine: Arc<Engine>, front: Arc<Front>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state((engine, front))
}

async fn metrics(State((engine, front)): State<(Arc<Engine>, Arc<Front>)>) -> impl IntoResponse {
    let checks = engine.approvers().iter().map(|approver| async move {
        (approver.name().to_owned(), approver.health().await.is_ok())
    });
    let scraped = Scraped {
        pending: engine.approvals.pending_count(),
        websocket_connections: front.connections(),
        approvers: futures_util::future::join_all(checks).await,
    };
    match engine.metrics.render(&scraped) {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "could not encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_human_land_in_a_finite_bucket_up_to_the_longest_approval_timeout() {
        let longest_timeout = 7.0 * 24.0 * 3600.0;
        let human: Vec<f64> = human_buckets().collect();
        assert!(
            human.last().is_some_and(|b| *b >= longest_timeout),
            "{human:?}"
        );
        assert!(
            human.iter().any(|b| *b >= 900.0 && *b < 1800.0),
            "{human:?}"
        );
        // The fine end stays as fine as the backend's.
        assert_eq!(human.first(), latency_buckets().next().as_ref());
    }
}
