//! [`ConfigOutline`]: the parts of `config.yaml` that commands which do not serve read (the
//! listeners, the agent ids, the tool manifests, the storage path), loaded with `${VAR}`
//! resolved in those keys only. `healthcheck`, `policy explain` and `approve-link` use it, so
//! they work where the tokens' variables are not set (a shell on the host, a container's health check); `serve` and `check` load the
//! whole [`Config`](super::Config) and report every unset variable.

use std::path::{Path, PathBuf};

use super::{DEFAULT_TOOLS_PATH, GatewayConfig, StorageConfig, gateway, storage, tool_paths};
use crate::config::env::{EnvLookup, ProcessEnv};
use crate::config::error::ConfigError;
use crate::config::walk::{Ctx, Obj, parse_yaml_resolving, read_yaml_resolving};

/// The listeners, agent ids, tool manifests and storage of a `config.yaml`, without its
/// secrets.
///
/// Other keys are not read at all: their mistakes (and unset variables) are `check`'s and
/// `serve`'s to report.
#[derive(Debug, Clone)]
pub struct ConfigOutline {
    /// The file this was loaded from.
    pub file: PathBuf,
    /// `gateway:`, whole (the health address is what `healthcheck` probes).
    pub gateway: GatewayConfig,
    /// The agents' ids, in file order (the upstream `agent:` is `default`).
    pub agent_ids: Vec<String>,
    /// Tool manifest paths (`tools:` and the services' `tools:`), resolved against the config
    /// file's directory, as in [`Config::tools`](super::Config::tools).
    pub tools: Vec<PathBuf>,
    /// `storage:` (`approve-link` finds the gateway's admin secret beside the database).
    pub storage: StorageConfig,
}

/// Whether a key path is one the outline reads: `gateway.*`, `storage.*`, `tools`, an agent's
/// `id`, a service's `tools`.
/// `gateway.admin_token` is left out (its variable need not be set for a health check); see
/// [`ConfigOutline::load_with_admin_token`].
fn outline_key(path: &str) -> bool {
    if path == "gateway.admin_token" {
        return false;
    }
    path == "gateway"
        || path.starts_with("gateway.")
        || path == "storage"
        || path.starts_with("storage.")
        || path == "tools"
        || path.starts_with("tools[")
        || path == "agent.id"
        || (path.starts_with("agents[") && path.ends_with("].id"))
        || (path.starts_with("services.") && path.ends_with(".tools"))
}

impl ConfigOutline {
    /// Loads the outline of `path`, substituting `${VAR}` (in its keys) from the process
    /// environment.
    pub fn load(path: impl AsRef<Path>) -> Result<ConfigOutline, ConfigError> {
        Self::load_with_env(path, &ProcessEnv)
    }

    /// Loads the outline of `path`, substituting `${VAR}` (in its keys) from `env`.
    /// `gateway.admin_token` is not read (it is `None`).
    pub fn load_with_env(
        path: impl AsRef<Path>,
        env: &dyn EnvLookup,
    ) -> Result<ConfigOutline, ConfigError> {
        let (value, ctx) = read_yaml_resolving(path.as_ref(), env, outline_key)?;
        build(&value, ctx, false)
    }

    /// Like [`ConfigOutline::load_with_env`], and also reads `gateway.admin_token` (its
    /// `${VAR}` must then be set): what `agent-gate reload` presents.
    pub fn load_with_admin_token(
        path: impl AsRef<Path>,
        env: &dyn EnvLookup,
    ) -> Result<ConfigOutline, ConfigError> {
        fn with_admin(path: &str) -> bool {
            path == "gateway.admin_token" || outline_key(path)
        }
        let (value, ctx) = read_yaml_resolving(path.as_ref(), env, with_admin)?;
        build(&value, ctx, true)
    }

    /// Parses the outline of YAML text as if read from `path`.
    pub fn parse(
        text: &str,
        path: impl AsRef<Path>,
        env: &dyn EnvLookup,
    ) -> Result<ConfigOutline, ConfigError> {
        let (value, ctx) = parse_yaml_resolving(text, path.as_ref(), env, outline_key)?;
        build(&value, ctx, false)
    }
}

fn build(
    value: &serde_yaml_ng::Value,
    mut ctx: Ctx,
    admin_token: bool,
) -> Result<ConfigOutline, ConfigError> {
    let file = ctx.file().to_path_buf();
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let Some(root) = Obj::root(&mut ctx, value) else {
        return Err(ctx.finish(()).err().unwrap_or(ConfigError::Invalid {
            file,
            issues: Vec::new(),
        }));
    };
    let mut gateway = gateway::load(&mut ctx, &root);
    if !admin_token {
        // Read unresolved: never hand out a `${VAR}` as if it were the token.
        gateway.admin_token = None;
    }
    let agent_ids = agent_ids(&mut ctx, &root);
    let mut tools = tool_paths(&mut ctx, &root.field("tools"), &base);
    if let Some(services) = ctx.obj(&root.field("services")) {
        for (_, service) in services.entries(&mut ctx) {
            let Some(service) = ctx.obj(&service) else {
                continue;
            };
            // Paths the full loader refuses (YAML tool files) are left to it.
            if let Some(p) = ctx.string(&service.field("tools"))
                && !(p.ends_with(".yaml") || p.ends_with(".yml") || p.trim().is_empty())
            {
                tools.push(base.join(p));
            }
        }
    }
    if tools.is_empty() {
        tools.push(base.join(DEFAULT_TOOLS_PATH));
    }
    let storage = storage::load(&mut ctx, &root.field("storage"));
    let outline = ConfigOutline {
        file,
        gateway,
        agent_ids,
        tools,
        storage,
    };
    ctx.finish(outline).map(|(outline, _warnings)| outline)
}

/// The ids of `agents:`, or `default` (or its `id`) for the upstream `agent:`.
fn agent_ids(ctx: &mut Ctx, root: &Obj<'_>) -> Vec<String> {
    if let Some(agent) = ctx.obj(&root.field("agent")) {
        return vec![
            ctx.string(&agent.field("id"))
                .unwrap_or_else(|| "default".to_owned()),
        ];
    }
    let Some(items) = ctx.list(&root.field("agents")) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let agent = ctx.obj(item)?;
            ctx.string(&agent.field("id"))
        })
        .collect()
}
