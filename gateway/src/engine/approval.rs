//! The life of an `ask`: the per-agent pending cap, the durable pending row, its timer, telling
//! approvers, decisions raced through the store's conditional transitions, running an approved
//! request, and restart recovery.

use super::*;

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn ask(
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

    pub(super) fn reserve_pending(
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

    pub(super) fn release_pending(&self, key: &RequestKey) {
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

    pub(super) fn arm_timer(&self, key: RequestKey, expires_at: Timestamp) {
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

    pub(super) fn notify_approvers(&self, request: ApprovalRequest) {
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

    pub(super) fn tell_approvers(&self, key: RequestKey, resolution: Resolution) {
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

    pub(super) async fn resolve(
        &self,
        key: RequestKey,
        how: Resolve,
    ) -> Result<DecideOutcome, StoreError> {
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
    pub(super) async fn execute_approved(&self, record: RequestRecord) {
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
