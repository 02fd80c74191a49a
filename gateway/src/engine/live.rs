//! What a reload swaps: the agents of `config.yaml` and the policy of `permissions.yaml`
//! (with the MCP tool lists they imply), held as one immutable snapshot ([`Live`]) behind a
//! lock that is only ever held to clone or replace an `Arc`.
//!
//! - Every decision takes one snapshot ([`Engine::policy`]) and judges against it, so a call
//!   in flight keeps the decision it got; a call waiting for a human keeps waiting (the policy
//!   is not asked again about it).
//! - Authentication reads the current snapshot, so an added agent or token works at once and
//!   a removed one is refused at once (MCP: 401).
//! - Each authenticated WebSocket connection is registered with the digest of the token it
//!   presented. A reload closes the connections whose agent is gone or no longer accepts that
//!   token (a rotated-out token); connections on tokens that stay are left alone. The swap and
//!   the sweep happen under the registry's lock, and a registration checks the current
//!   snapshot under the same lock, so a connection that authenticated against the old
//!   snapshot just before the swap cannot slip through.
//!
//! A reload parses and validates both files the way start-up does (config, then the policy
//! against the config's agents) and swaps only when both are valid: a broken or half-written
//! file is refused whole and the old snapshot stays. Other settings of `config.yaml`
//! (listeners, TLS, services, approvers, storage, limits, MCP, tool manifests) are read for
//! validation but take effect only at the next start; a reload that sees them changed says so.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, Issue, PermissionsFile, TokenDigest};
use crate::mcp::catalog::Catalog;
use crate::policy::Policy;
use crate::store::Timestamp;

/// The agents and policy in force, with what they imply.
#[derive(Debug)]
pub(crate) struct Live {
    /// The configuration the agents were last loaded from (only `agents` is used from a
    /// reloaded config; the rest stays as started).
    pub(crate) config: Arc<Config>,
    /// The policy.
    pub(crate) policy: Arc<Policy>,
    /// The MCP tool list of each agent under this policy.
    pub(crate) catalog: Arc<Catalog>,
}

/// Why a reload was refused (the old agents and policy stay in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// `config.yaml` or `permissions.yaml` is unreadable or invalid (every problem is listed).
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down; nothing was reloaded")]
    Stopping,
    /// The loading task failed (a bug).
    #[error("reloading failed: {0}")]
    Task(String),
}

impl ReloadError {
    /// Every problem, one per line (for logs, `/healthz` and the HTTP answer).
    pub fn problems(&self) -> Vec<String> {
        match self {
            ReloadError::Invalid(error) => error.issues().iter().map(Issue::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// What a successful reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Agents that are new.
    pub agents_added: Vec<String>,
    /// Agents that are gone (their connections were closed).
    pub agents_removed: Vec<String>,
    /// Agents that kept their id but whose tokens changed.
    pub tokens_changed: Vec<String>,
    /// WebSocket connections closed because their agent or token is gone.
    pub connections_closed: usize,
    /// Rules and defaults of the new policy.
    pub rules: usize,
    /// Sections of `config.yaml` that differ from the running ones and need a restart to
    /// take effect (`gateway`, `services`, ...).
    pub restart_needed: Vec<&'static str>,
    /// Non-fatal remarks of the loaded files.
    pub warnings: Vec<String>,
}

/// The outcome of the last reload, for `/healthz`.
#[derive(Debug, Clone)]
pub(crate) struct LastReload {
    /// When it ran.
    pub(crate) at: Timestamp,
    /// Why it was refused; `None`: it succeeded.
    pub(crate) error: Option<Vec<String>>,
}

/// One open, authenticated WebSocket connection.
#[derive(Debug)]
struct Conn {
    agent: String,
    token: TokenDigest,
    close: CancellationToken,
}

#[derive(Debug, Default)]
struct Registry {
    next: u64,
    open: HashMap<u64, Conn>,
}

/// The swappable state and the connections it governs.
#[derive(Debug)]
pub(crate) struct LiveState {
    current: RwLock<Arc<Live>>,
    registry: Arc<Mutex<Registry>>,
    last: Mutex<Option<LastReload>>,
    /// One reload at a time (SIGHUP and `POST /admin/reload` may race).
    reloading: tokio::sync::Mutex<()>,
}

/// A connection's place in the registry; removed when dropped. `close` is cancelled when a
/// reload takes the connection's agent or token away.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Weak<Mutex<Registry>>,
    id: u64,
    /// Cancelled when the connection must close.
    pub(crate) close: CancellationToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            lock(&registry).open.remove(&self.id);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `config` still lets `agent` in with the token of digest `token`.
fn accepts(config: &Config, agent: &str, token: &TokenDigest) -> bool {
    config
        .agent(agent)
        .is_some_and(|a| bool::from(a.accepts(token)))
}

impl LiveState {
    pub(crate) fn new(live: Live) -> Self {
        Self {
            current: RwLock::new(Arc::new(live)),
            registry: Arc::default(),
            last: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The snapshot in force now.
    pub(crate) fn current(&self) -> Arc<Live> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Registers an authenticated connection of `agent` on the token of digest `token`. If a
    /// reload has taken that token away since it was checked, `close` is already cancelled.
    pub(crate) fn register(&self, agent: &str, token: TokenDigest) -> Registration {
        let close = CancellationToken::new();
        let mut registry = lock(&self.registry);
        if !accepts(&self.current().config, agent, &token) {
            close.cancel();
        }
        let id = registry.next;
        registry.next += 1;
        registry.open.insert(
            id,
            Conn {
                agent: agent.to_owned(),
                token,
                close: close.clone(),
            },
        );
        Registration {
            registry: Arc::downgrade(&self.registry),
            id,
            close,
        }
    }

    /// The outcome of the last reload, if there was one.
    pub(crate) fn last_reload(&self) -> Option<LastReload> {
        lock(&self.last).clone()
    }

    fn record(&self, error: Option<Vec<String>>) {
        *lock(&self.last) = Some(LastReload {
            at: Timestamp::now(),
            error,
        });
    }

    /// Re-reads `config.yaml` (at the path the running config came from) and
    /// `permissions.yaml` (at the running policy's path); swaps them in when both are valid.
    /// `catalog` builds the MCP tool lists of a new snapshot.
    pub(crate) async fn reload(
        &self,
        catalog: impl FnOnce(&Config, &Policy) -> Catalog,
    ) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let old = self.current();
        let config_path: PathBuf = old.config.file.clone();
        let policy_path: PathBuf = old.policy.file().to_path_buf();
        let loaded = tokio::task::spawn_blocking(move || {
            let config = Config::load(&config_path)?;
            let file = PermissionsFile::load(&policy_path)?;
            let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
            // As at start-up: rules scoped to agents the config does not define are refused.
            let policy = Policy::for_config(&config, file)?;
            Ok::<_, ConfigError>((config, policy, warnings))
        })
        .await;
        let (config, policy, permission_warnings) = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(error)) => {
                let error = ReloadError::from(error);
                self.record(Some(error.problems()));
                return Err(error);
            }
            Err(join) => {
                let error = ReloadError::Task(join.to_string());
                self.record(Some(error.problems()));
                return Err(error);
            }
        };
        let mut report = ReloadReport {
            rules: policy.rules().len() + policy.defaults().len(),
            restart_needed: restart_needed(&old.config, &config),
            warnings: config
                .warnings
                .iter()
                .map(ToString::to_string)
                .chain(permission_warnings)
                .collect(),
            ..ReloadReport::default()
        };
        for agent in &config.agents {
            match old.config.agent(&agent.id) {
                None => report.agents_added.push(agent.id.clone()),
                Some(before) if before.tokens != agent.tokens => {
                    report.tokens_changed.push(agent.id.clone());
                }
                Some(_) => {}
            }
        }
        for agent in &old.config.agents {
            if config.agent(&agent.id).is_none() {
                report.agents_removed.push(agent.id.clone());
            }
        }
        // The running config with the new agents: everything else changes only at a restart.
        let mut next = (*old.config).clone();
        next.agents = config.agents;
        next.warnings = config.warnings;
        let catalog = catalog(&next, &policy);
        let live = Arc::new(Live {
            config: Arc::new(next),
            policy: Arc::new(policy),
            catalog: Arc::new(catalog),
        });
        {
            let registry = lock(&self.registry);
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&live);
            for conn in registry.open.values() {
                if !conn.close.is_cancelled() && !accepts(&live.config, &conn.agent, &conn.token) {
                    conn.close.cancel();
                    report.connections_closed += 1;
                }
            }
        }
        self.record(None);
        Ok(report)
    }
}

/// The sections of `config.yaml` other than `agents` that differ between `running` and
/// `loaded` (they take effect only at a restart).
fn restart_needed(running: &Config, loaded: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if running.gateway != loaded.gateway {
        changed.push("gateway");
    }
    if running.tools != loaded.tools {
        changed.push("tools");
    }
    if running.services != loaded.services {
        changed.push("services");
    }
    if running.storage != loaded.storage {
        changed.push("storage");
    }
    if running.approvers != loaded.approvers {
        changed.push("approvers");
    }
    if running.approval_timeout != loaded.approval_timeout {
        changed.push("approval_timeout");
    }
    if running.rate_limit != loaded.rate_limit {
        changed.push("rate_limit");
    }
    if running.mcp != loaded.mcp {
        changed.push("mcp");
    }
    changed
}
