//! A call from submission to outcome: rate limit, one validation, the policy's judgement,
//! the decided row (allow, deny) or the hand-off to approvals (ask), and the execution of an
//! allowed or approved call with its recorded outcome.

use agent_gate_manifest::{ArgsError, ValidArgs};
use agent_gate_protocol::{ErrorCode, ErrorObject};
use serde_json::{Value, json};
use std::time::Instant;

use super::refusal::{self, store_failure};
use super::{Engine, Submitted, ToolCall};
use crate::approvals::{Ask, AskError, Asked};
use crate::delivery::{Outcome, Progress};
use crate::executor::ExecutionError;
use crate::metrics::{DecidedBy, DecisionLabel, OutcomeLabel};
use crate::policy::{Action, Reason};
use crate::store::{
    AuditEntry, AuditKind, Decision, Grant, InsertOutcome, NewRequest, RequestKey, RequestRecord,
    RequestState, Timestamp, Transition, grant_scope,
};

/// How an allowed call is run and counted: how it was decided, when it arrived, whether its
/// outcome is kept for the agent (see `Engine::execute_and_record`).
struct Run {
    decision: DecisionLabel,
    arrived: Instant,
    kept: bool,
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

/// The audit entry of one use of grant `id` by `agent`'s request `rid`.
pub(super) fn grant_used(agent: &str, rid: &str, signature: &str, id: i64) -> AuditEntry {
    AuditEntry::new(agent, AuditKind::Other("grant_used".to_owned()))
        .request_id(rid)
        .signature(signature)
        .actor(format!("grant:{id}"))
        .detail(json!({ "grant": id }))
}

fn finished(request_id: String, outcome: Outcome, kept: bool) -> Submitted {
    Submitted {
        request_id,
        progress: Progress::Finished(outcome),
        kept,
    }
}

impl Engine {
    /// Submits `agent`'s call. `Ok`: where the call stands (its request id, and its outcome
    /// or the means to wait for it); `Err`: a refusal that belongs to no stored request (rate
    /// limit, unknown tool, invalid arguments, a `request_id` reused for another call, ...).
    ///
    /// The same call re-sent with its `request_id` attaches to the stored request (the store's
    /// digest of tool and arguments says whether it is the same call): it is never a second
    /// request and never executes twice. An allowed call touches the store twice: its decided
    /// row, then its outcome.
    pub(crate) async fn submit(
        &self,
        agent: &str,
        call: ToolCall,
    ) -> Result<Submitted, ErrorObject> {
        // Boxed: a call's whole state machine (the store's writes, the HTTP client's exchange)
        // takes kilobytes, and each front runs it inside a task it spawns. Tokio moves a task's
        // future by value when it spawns it and again when it finishes, so inline those
        // kilobytes would be copied several times per call; boxed they are copied once.
        let _in_progress = self.store.call_in_progress();
        Box::pin(self.submit_unboxed(agent, call)).await
    }

    /// [`Engine::submit`], in place.
    async fn submit_unboxed(&self, agent: &str, call: ToolCall) -> Result<Submitted, ErrorObject> {
        let arrived = Instant::now();
        if let Err(retry) = self.limiter.check(agent) {
            self.metrics.request(
                self.tool_label(&call.tool),
                DecisionLabel::Refused,
                OutcomeLabel::Refused,
            );
            self.audit_in_background(
                AuditEntry::new(agent, AuditKind::Other("rate_limited".to_owned()))
                    .detail(json!({"tool": call.tool, "limit": "max_requests_per_minute"})),
            );
            return Err(refusal::rate_limited(
                self.limiter.max_per_minute(),
                retry.as_secs_f64().ceil(),
            ));
        }
        let ToolCall {
            tool,
            args,
            request_id,
            same_call_attaches,
        } = call;
        let client_key = request_id.is_some();
        // Nothing can fetch the outcome of a call decided at once later (see `ToolCall`).
        let kept = !same_call_attaches || client_key;
        let rid = request_id.unwrap_or_else(new_request_id);

        // Validated once: the same proof serves the judgement and the execution.
        let Some(tool_def) = self.manifest.tool(&tool) else {
            let reason = Reason::unknown_tool(&self.manifest, &tool);
            return Err(self.refuse_invalid(agent, &rid, &tool, &reason).await);
        };
        let valid = match tool_def.validate(&args) {
            Ok(valid) => valid,
            Err(e) => {
                let reason = Reason::InvalidArguments(e);
                return Err(self.refuse_invalid(agent, &rid, &tool, &reason).await);
            }
        };
        // One snapshot: a reload meanwhile does not change this call's decision.
        let policy = self.policy();
        let decision = policy.judge(agent, valid);
        if decision.action != Action::Ask {
            self.metrics.decided(DecidedBy::Policy, arrived.elapsed());
        }
        let rule = refusal::rule_name(&decision.reason);
        let signature = match (&decision.signature, &decision.reason) {
            (Some(signature), _) => signature.clone(),
            (None, reason) => return Err(self.refuse_invalid(agent, &rid, &tool, reason).await),
        };
        let judgement = refusal::judgement_detail(&decision);
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
                let new = NewRequest::allowed(
                    agent,
                    rid.as_str(),
                    tool.as_str(),
                    args_value,
                    signature.as_str(),
                )
                .audit(decision_audit(Decision::Allow));
                let run = Run {
                    decision: DecisionLabel::Allow,
                    arrived,
                    kept,
                };
                self.run_allowed(new, rule.as_deref(), valid, &signature, run)
                    .await
            }
            Action::Deny => {
                let (message, data) = refusal::policy_denial(&decision.reason, &signature);
                let new = NewRequest::denied(
                    agent,
                    rid.as_str(),
                    tool.as_str(),
                    args_value,
                    signature.as_str(),
                )
                .error(ErrorCode::DeniedByPolicy.code(), message.as_str())
                .error_data(data.clone())
                .audit(decision_audit(Decision::Deny));
                let new = if kept { new } else { new.answered_in_band() };
                if let Some(existing) = self.insert_decided(new, rule.as_deref()).await? {
                    return self.attach(rid, existing).await;
                }
                let outcome = Outcome::Failed {
                    code: ErrorCode::DeniedByPolicy,
                    message,
                    data: Some(data),
                };
                self.metrics
                    .request(&tool, DecisionLabel::Deny, OutcomeLabel::Denied);
                self.metrics.finished(&tool, arrived.elapsed());
                Ok(finished(rid, outcome, kept))
            }
            Action::Ask => {
                // A live grant for exactly this call's signatures allows it without asking
                // (deny rules were judged first: a denied call never gets here).
                let scope = grant_scope(decision.judged.iter().map(|(s, _)| s.as_str()));
                if let Some(grant) = self.usable_grant(agent, &rid, &scope, &signature).await? {
                    let actor = format!("grant:{}", grant.id);
                    let audit = AuditEntry::new(agent, AuditKind::Decision)
                        .request_id(rid.as_str())
                        .signature(signature.as_str())
                        .decision(Decision::Allow)
                        .actor(actor.as_str())
                        .detail(json!({"grant": grant.id, "granted_by": grant.created_by}));
                    let new = NewRequest::allowed(
                        agent,
                        rid.as_str(),
                        tool.as_str(),
                        args_value,
                        signature.as_str(),
                    )
                    .resolved_by(actor.as_str())
                    .audit(audit);
                    self.metrics.decided(DecidedBy::Grant, arrived.elapsed());
                    let run = Run {
                        decision: DecisionLabel::Ask,
                        arrived,
                        kept,
                    };
                    return self
                        .run_allowed(new, rule.as_deref(), valid, &signature, run)
                        .await;
                }
                if same_call_attaches && !client_key {
                    let open = self.store.open_ask_for(agent, &tool, &args_value).await;
                    match open {
                        Ok(Some(record)) => {
                            let rid = record.request_id.clone();
                            return self.attach(rid, record).await;
                        }
                        Ok(None) => {}
                        Err(e) => return Err(store_failure(&e)),
                    }
                }
                let decision_audit = decision_audit(Decision::Ask);
                let record_tool = tool.clone();
                let ask = Ask {
                    key: RequestKey::new(agent, rid.as_str()),
                    tool,
                    args: args_value,
                    signature: signature.clone(),
                    targets: decision.targets.clone(),
                    rule,
                    decision_audit,
                };
                match self.approvals.ask(ask).await {
                    Ok(Asked::Pending { expires_at, waiter }) => Ok(Submitted {
                        request_id: rid,
                        progress: waiter.waiting(Some(expires_at)),
                        kept: true,
                    }),
                    Ok(Asked::Existing(record)) => self.attach(rid, record).await,
                    Ok(Asked::Conflict(record)) => Err(refusal::conflict(&record)),
                    Err(AskError::TooManyPending {
                        pending,
                        max,
                        retry_after,
                    }) => {
                        // A re-sent call that has ended is answered, not refused.
                        if client_key
                            && let Ok(Some(record)) = self.store.get_request(agent, &rid).await
                        {
                            return self.attach(rid, record).await;
                        }
                        self.metrics.request(
                            &record_tool,
                            DecisionLabel::Ask,
                            OutcomeLabel::Refused,
                        );
                        self.audit_in_background(
                            AuditEntry::new(agent, AuditKind::Other("rate_limited".to_owned()))
                                .request_id(rid.as_str())
                                .signature(signature.as_str())
                                .detail(json!({"limit": "max_pending_approvals"})),
                        );
                        Err(refusal::too_many_pending(pending, max, retry_after))
                    }
                    Err(AskError::Store(e)) => Err(store_failure(&e)),
                }
            }
        }
    }

    /// Stores an allowed request (by the policy or a grant), executes it and records the
    /// outcome; the same call stored before under this request id is attached to instead.
    async fn run_allowed(
        &self,
        new: NewRequest,
        rule: Option<&str>,
        valid: ValidArgs<'_>,
        signature: &str,
        run: Run,
    ) -> Result<Submitted, ErrorObject> {
        let key = new.key();
        if let Some(existing) = self.insert_decided(new, rule).await? {
            return self.attach(key.request_id, existing).await;
        }
        let kept = run.kept;
        let outcome = self
            .execute_and_record(&key, Ok(valid), signature, run)
            .await;
        self.delivery.deliver(&key, &outcome);
        Ok(finished(key.request_id, outcome, kept))
    }

    /// The live grant of `agent` for `scope`, with this use counted (and audited for request
    /// `rid`); `None` when there is none or it was revoked meanwhile.
    async fn usable_grant(
        &self,
        agent: &str,
        rid: &str,
        scope: &str,
        signature: &str,
    ) -> Result<Option<Grant>, ErrorObject> {
        let grant = self
            .store
            .live_grant(agent, scope, Timestamp::now())
            .await
            .map_err(|e| store_failure(&e))?;
        let Some(grant) = grant else {
            return Ok(None);
        };
        let audit = grant_used(agent, rid, signature, grant.id)
            .detail(json!({"grant": grant.id, "uses": grant.uses + 1}));
        let counted = self
            .store
            .use_grant(grant.id, audit)
            .await
            .map_err(|e| store_failure(&e))?;
        Ok(counted.then_some(grant))
    }

    /// The scope of `agent`'s call of `tool` with `args` as the policy judges it now (see
    /// [`grant_scope`]); `None` when the call is no longer valid.
    pub(crate) fn scope_of_call(&self, agent: &str, tool: &str, args: &Value) -> Option<String> {
        let Value::Object(map) = args else {
            return None;
        };
        let valid = self.manifest.tool(tool)?.validate(map).ok()?;
        let policy = self.policy();
        let decision = policy.judge(agent, valid);
        if decision.judged.is_empty() {
            return None;
        }
        Some(grant_scope(decision.judged.iter().map(|(s, _)| s.as_str())))
    }

    /// Stores a request the policy allowed or denied, with the rule that decided. `Some`: the
    /// same call was stored before under this request id (attach to it); another call under
    /// the same id is a conflict, a store failure an internal error.
    async fn insert_decided(
        &self,
        mut new: NewRequest,
        rule: Option<&str>,
    ) -> Result<Option<RequestRecord>, ErrorObject> {
        if let Some(rule) = rule {
            new = new.rule(rule);
        }
        match self.store.insert_request(new).await {
            Ok(InsertOutcome::Inserted) => Ok(None),
            Ok(InsertOutcome::Duplicate(record)) => Ok(Some(*record)),
            Ok(InsertOutcome::Conflict(record)) => Err(refusal::conflict(&record)),
            Err(e) => Err(store_failure(&e)),
        }
    }

    /// The same call, re-sent: its stored outcome, or a wait for it.
    async fn attach(&self, rid: String, record: RequestRecord) -> Result<Submitted, ErrorObject> {
        let progress = self
            .delivery
            .attach(record)
            .await
            .map_err(|e| store_failure(&e))?;
        Ok(Submitted {
            request_id: rid,
            progress,
            kept: true,
        })
    }

    /// Audits a call refused before judgement and returns what the agent is told.
    async fn refuse_invalid(
        &self,
        agent: &str,
        rid: &str,
        tool: &str,
        reason: &Reason<'_>,
    ) -> ErrorObject {
        let (error, detail) = refusal::invalid_call(&self.manifest, tool, reason);
        self.metrics.request(
            self.tool_label(tool),
            DecisionLabel::Refused,
            OutcomeLabel::Refused,
        );
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

    /// Executes a request in state `executing` and records the outcome (with its audit), kept
    /// for the agent unless the call is answered in band (`kept` false).
    ///
    /// `valid` is the proof that the arguments were validated (once, for the request), or why
    /// they are not valid now (a stored, approved request checked against the manifest again
    /// after a restart): that is recorded as a failed execution.
    async fn execute_and_record(
        &self,
        key: &RequestKey,
        valid: Result<ValidArgs<'_>, ArgsError>,
        signature: &str,
        run: Run,
    ) -> Outcome {
        let Run {
            decision,
            arrived,
            kept,
        } = run;
        let agent = key.agent_id.as_str();
        let rid = key.request_id.as_str();
        let tool_name = match &valid {
            Ok(valid) => valid.tool().name.clone(),
            Err(error) => error.tool.clone(),
        };
        let executing = Instant::now();
        let executed = match valid {
            Ok(valid) => self.executor.execute_valid(valid).await,
            Err(error) => Err(ExecutionError::from(error)),
        };
        let label = self.tool_label(&tool_name);
        self.metrics.executed(label, executing.elapsed());
        let ended = if executed.is_ok() {
            OutcomeLabel::Executed
        } else {
            OutcomeLabel::Failed
        };
        self.metrics.request(label, decision, ended);
        let outcome = self
            .record_execution(agent, rid, signature, &tool_name, executed, kept)
            .await;
        self.metrics.finished(label, arrived.elapsed());
        outcome
    }

    /// Records what an execution gave (with its audit) and returns the outcome.
    async fn record_execution(
        &self,
        agent: &str,
        rid: &str,
        signature: &str,
        tool_name: &str,
        executed: Result<Value, ExecutionError>,
        kept: bool,
    ) -> Outcome {
        let audit = |kind: AuditKind| {
            AuditEntry::new(agent, kind)
                .request_id(rid)
                .signature(signature)
        };
        match executed {
            Ok(data) => {
                let size = serde_json::to_vec(&data).map(|v| v.len()).unwrap_or(0);
                let transition = Transition::executed(agent, rid, data.clone())
                    .audit(audit(AuditKind::Executed).detail(json!({"result_bytes": size})));
                let transition = if kept {
                    transition
                } else {
                    transition.answered_in_band()
                };
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
                let transition = if kept {
                    transition
                } else {
                    transition.answered_in_band()
                };
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

    /// Runs an approved request: `approved → executing` (never twice), execute, record,
    /// deliver.
    pub(super) async fn execute_approved(&self, record: RequestRecord) {
        let key = record.key();
        let agent = key.agent_id.as_str();
        let rid = key.request_id.as_str();
        let args = match &record.args {
            Value::Object(map) => Some(map),
            _ => None,
        };
        let (Some(tool), Some(args)) = (self.manifest.tool(&record.tool), args) else {
            let message = format!(
                "tool `{}` is no longer in the manifest; the approved request was not executed",
                record.tool
            );
            let data = json!({"kind": "invalid", "may_have_executed": false});
            let transition =
                Transition::new(agent, rid, RequestState::Approved, RequestState::Failed)
                    .error(ErrorCode::ExecutionFailed.code(), message.as_str())
                    .error_data(data.clone())
                    .audit(
                        AuditEntry::new(agent, AuditKind::Failed)
                            .request_id(rid)
                            .signature(record.signature.as_str())
                            .detail(json!({"error": message})),
                    );
            match self.store.transition(transition).await {
                Ok(true) => self.delivery.deliver(
                    &key,
                    &Outcome::Failed {
                        code: ErrorCode::ExecutionFailed,
                        message,
                        data: Some(data),
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
        let waited = Timestamp::now().since(record.created_at);
        let run = Run {
            decision: DecisionLabel::Ask,
            arrived: Instant::now()
                .checked_sub(waited)
                .unwrap_or_else(Instant::now),
            kept: true,
        };
        let outcome = self
            .execute_and_record(&key, tool.validate(args), &record.signature, run)
            .await;
        self.delivery.deliver(&key, &outcome);
    }

    /// The `tool` label of a metric: the manifest's name, or `unknown` (an agent must not
    /// grow the label sets with names of its own).
    fn tool_label<'t>(&'t self, tool: &'t str) -> &'t str {
        match self.manifest.tool(tool) {
            Some(known) => known.name.as_str(),
            None => "unknown",
        }
    }
}
