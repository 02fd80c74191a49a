//! The typed `permissions.yaml`: `defaults:` (ordered, first match) and `rules:` (deny wins,
//! then allow, then ask), each entry `{pattern, action, description?, agents?}`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::env::{EnvLookup, ProcessEnv};
use super::error::{ConfigError, Issue};
use super::walk::{Ctx, Field, Obj, parse_yaml, read_yaml, suggest};
use crate::rule::{Action, Pattern};

/// Which list of `permissions.yaml` a rule is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleList {
    /// `rules:` (deny wins, then allow, then ask).
    Rules,
    /// `defaults:` (first match, in order).
    Defaults,
}

impl RuleList {
    /// `rules` or `defaults`, the key in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleList::Rules => "rules",
            RuleList::Defaults => "defaults",
        }
    }
}

impl fmt::Display for RuleList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `rules:` or `defaults:`, with its pattern compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// The list it is in.
    pub list: RuleList,
    /// Its position in that list (0-based, as in the key path `rules[2]`).
    pub index: usize,
    /// The glob pattern over signatures.
    pub pattern: Pattern,
    /// What happens to a matching request.
    pub action: Action,
    /// Why the rule exists (shown to approvers and in `policy explain`).
    pub description: Option<String>,
    /// Agents the rule applies to; `None` means every agent.
    pub agents: Option<Vec<String>>,
}

impl RuleSpec {
    /// Whether the rule applies to this agent.
    pub fn applies_to(&self, agent: &str) -> bool {
        match &self.agents {
            None => true,
            Some(ids) => ids.iter().any(|id| id == agent),
        }
    }
}

/// The whole `permissions.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionsFile {
    /// The file it was loaded from.
    pub file: PathBuf,
    /// `rules:`, in file order.
    pub rules: Vec<RuleSpec>,
    /// `defaults:`, in file order.
    pub defaults: Vec<RuleSpec>,
    /// Non-fatal remarks (unreachable defaults, empty file).
    pub warnings: Vec<Issue>,
}

impl PermissionsFile {
    /// Loads `path`, substituting `${VAR}` from the process environment.
    pub fn load(path: impl AsRef<Path>) -> Result<PermissionsFile, ConfigError> {
        Self::load_with_env(path, &ProcessEnv)
    }

    /// Loads `path`, substituting `${VAR}` from `env`.
    pub fn load_with_env(
        path: impl AsRef<Path>,
        env: &dyn EnvLookup,
    ) -> Result<PermissionsFile, ConfigError> {
        let (value, ctx) = read_yaml(path.as_ref(), env)?;
        build(&value, ctx)
    }

    /// Parses YAML text as if read from `path`.
    pub fn parse(
        text: &str,
        path: impl AsRef<Path>,
        env: &dyn EnvLookup,
    ) -> Result<PermissionsFile, ConfigError> {
        let (value, ctx) = parse_yaml(text, path.as_ref(), env)?;
        build(&value, ctx)
    }

    /// Issues for every `agents:` entry naming an agent that is not configured (a typo there
    /// would silently make a rule apply to nobody).
    pub fn unknown_agents(&self, known: &[&str]) -> Vec<Issue> {
        let mut out = Vec::new();
        for rule in self.rules.iter().chain(&self.defaults) {
            for (i, id) in rule.agents.iter().flatten().enumerate() {
                if known.contains(&id.as_str()) {
                    continue;
                }
                let hint = suggest(id, known.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                out.push(Issue {
                    file: self.file.clone(),
                    key: format!("{}[{}].agents[{i}]", rule.list, rule.index),
                    message: format!(
                        "unknown agent {id:?}{hint}; the agents in the config are: {}",
                        known.join(", ")
                    ),
                });
            }
        }
        out
    }
}

fn build(value: &serde_yaml_ng::Value, mut ctx: Ctx) -> Result<PermissionsFile, ConfigError> {
    let file = ctx.file().to_path_buf();
    let mut out = PermissionsFile {
        file,
        rules: Vec::new(),
        defaults: Vec::new(),
        warnings: Vec::new(),
    };
    if let Some(root) = Obj::root(&mut ctx, value) {
        root.check_keys(&mut ctx, &["defaults", "rules"]);
        out.defaults = list(&mut ctx, &root.field("defaults"), RuleList::Defaults);
        out.rules = list(&mut ctx, &root.field("rules"), RuleList::Rules);
    }
    if out.rules.is_empty() && out.defaults.is_empty() && ctx.issues.is_empty() {
        ctx.warn(
            "",
            "no rules and no defaults: every request will be sent to an approver (ask)",
        );
    }
    // A catch-all default for every agent hides every default after it.
    if let Some(catch_all) = out
        .defaults
        .iter()
        .find(|d| d.pattern.as_str().chars().all(|c| c == '*') && d.agents.is_none())
    {
        for later in out.defaults.iter().filter(|d| d.index > catch_all.index) {
            ctx.warn(
                &format!("defaults[{}]", later.index),
                format!(
                    "never applies: defaults[{}] (`{}`) matches every signature before it; move it above",
                    catch_all.index, catch_all.pattern
                ),
            );
        }
    }
    let (mut out, warnings) = ctx.finish(out)?;
    out.warnings = warnings;
    Ok(out)
}

fn list(ctx: &mut Ctx, f: &Field<'_>, which: RuleList) -> Vec<RuleSpec> {
    let mut out = Vec::new();
    let Some(items) = ctx.list(f) else {
        return out;
    };
    for (index, item) in items.into_iter().enumerate() {
        if item.value.is_none() {
            ctx.error(
                &item.path,
                "expected a mapping {pattern, action}, got nothing",
            );
            continue;
        }
        let Some(obj) = ctx.obj(&item) else { continue };
        obj.check_keys(ctx, &["pattern", "action", "description", "agents"]);
        let pattern_f = obj.field("pattern");
        let pattern = ctx
            .req_string(&pattern_f)
            .and_then(|p| match Pattern::new(&p) {
                Ok(p) => Some(p),
                Err(e) => {
                    ctx.error(&pattern_f.path, format!("invalid pattern {p:?}: {e}"));
                    None
                }
            });
        let action_f = obj.field("action");
        let action = ctx
            .req_string(&action_f)
            .and_then(|a| match a.parse::<Action>() {
                Ok(a) => Some(a),
                Err(_) => {
                    let hint = suggest(&a, ["allow", "deny", "ask"])
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    ctx.error(
                        &action_f.path,
                        format!("invalid action {a:?}{hint}: expected allow, deny or ask"),
                    );
                    None
                }
            });
        let description = ctx.string(&obj.field("description"));
        let agents = agents(ctx, &obj.field("agents"));
        if let (Some(pattern), Some(action)) = (pattern, action) {
            out.push(RuleSpec {
                list: which,
                index,
                pattern,
                action,
                description: description.filter(|d| !d.trim().is_empty()),
                agents,
            });
        }
    }
    out
}

fn agents(ctx: &mut Ctx, f: &Field<'_>) -> Option<Vec<String>> {
    f.value?;
    let items = ctx.list(f)?;
    if items.is_empty() {
        ctx.error(
            &f.path,
            "an empty list makes the rule apply to nobody; remove `agents:` to apply it to every agent",
        );
        return None;
    }
    let mut ids = Vec::new();
    for item in items {
        if let Some(id) = ctx.req_nonempty(&item) {
            ids.push(id);
        }
    }
    Some(ids)
}
