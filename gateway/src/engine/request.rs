//! A `tool_request`: rate limit, idempotency, one validation, the policy's judgement, and for
//! an allowed call the execution and its recorded outcome.

use super::*;

impl Core {
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
                let new = NewRequest::allowed(
                    agent,
                    rid.as_str(),
                    tool.as_str(),
                    args_value,
                    signature.as_str(),
                )
                .audit(decision_audit(Decision::Allow));
                if let Err(answer) = self.insert_decided(link, new, rule.as_deref()).await {
                    return answer;
                }
                let key = RequestKey::new(agent, rid.as_str());
                let outcome = self.execute_and_record(&key, Ok(valid), &signature).await;
                self.deliver(&key, &outcome);
                Some(Ok((rid, outcome)))
            }
            Action::Deny => {
                let (message, data) = policy_denial(&decision.reason, &signature);
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
                if let Err(answer) = self.insert_decided(link, new, rule.as_deref()).await {
                    return answer;
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

    /// Stores a request the policy allowed or denied, with the rule that decided. `Err` carries
    /// the answer when it was not stored as new: a retry of the same call attaches to it, another
    /// call under the same `request_id` is a conflict, a store failure is an internal error.
    async fn insert_decided(
        &self,
        link: &ConnectionLink,
        mut new: NewRequest,
        rule: Option<&str>,
    ) -> Result<(), Option<Answer>> {
        if let Some(rule) = rule {
            new = new.rule(rule);
        }
        match self.store.insert_request(new).await {
            Ok(InsertOutcome::Inserted) => Ok(()),
            Ok(InsertOutcome::Duplicate(record)) => Err(self.attach(link, *record).await),
            Ok(InsertOutcome::Conflict(record)) => Err(Some(Err(conflict(&record)))),
            Err(e) => Err(Some(Err(store_failure(&e)))),
        }
    }

    pub(super) async fn invalid_request(
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

    /// Executes a request in state `executing` and records the outcome (with its audit).
    ///
    /// `valid` is the proof that the arguments were validated (once, for the request), or why
    /// they are not valid now (a stored, approved request checked against the manifest again
    /// after a restart): that is recorded as a failed execution.
    pub(super) async fn execute_and_record(
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
}
