//! The permission engine: glob rules over signatures decide allow, deny or ask.
//!
//! Evaluation of a signature for an agent (rules scoped with `agents:` are skipped for other
//! agents):
//!
//! 1. `rules:` — any matching `deny` rule wins; otherwise the first matching `allow` rule;
//!    otherwise the first matching `ask` rule (file order decides only which rule is reported);
//! 2. `defaults:` — the first matching entry, in order;
//! 3. nothing matched — `ask` (the fallback).
//!
//! Evaluation is one pass over the rules (stopping at the first deny) and one over the defaults
//! (stopping at the first match): each pattern is tested at most once, so the cost is linear in
//! the number of rules. Patterns are compiled at load ([`glob`] documents their syntax:
//! `fnmatch` semantics, `*`, `?` and `[...]` classes).
//!
//! [`Policy::decide`] is the fail-closed entry point for requests: it validates the arguments
//! and renders the signature with the manifest, and turns any error there into a
//! [`Action::Deny`] carrying the reason.

mod decide;
pub mod lint;
mod reach;

use std::fmt;
use std::path::{Path, PathBuf};

pub use crate::rule::glob;
pub use crate::rule::{Action, ParseActionError, Pattern, PatternError};
pub use decide::{Decision, Reason};

use crate::config::{Config, ConfigError, EnvLookup, PermissionsFile, ProcessEnv, RuleSpec};

/// A loaded, compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    file: PathBuf,
    rules: Vec<RuleSpec>,
    defaults: Vec<RuleSpec>,
}

/// What decided an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy<'p> {
    /// A rule or default entry.
    Rule(RuleRef<'p>),
    /// Nothing matched: the fallback `ask`.
    Fallback,
}

/// A rule of a loaded policy, with where it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRef<'p> {
    /// The permissions file.
    pub file: &'p Path,
    /// The rule itself (list, index, pattern, action, description, agents).
    pub rule: &'p RuleSpec,
}

impl fmt::Display for RuleRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}[{}] (pattern \"{}\", action {})",
            self.file.display(),
            self.rule.list,
            self.rule.index,
            self.rule.pattern,
            self.rule.action
        )?;
        if let Some(d) = &self.rule.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// The result of [`Policy::explain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Explanation<'p> {
    /// The decision.
    pub action: Action,
    /// The deciding rule, or the fallback.
    pub decided_by: DecidedBy<'p>,
    /// How many patterns were tested (never more than rules + defaults: evaluation is linear).
    pub patterns_tested: usize,
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.decided_by {
            DecidedBy::Rule(r) => write!(f, "{} by {r}", self.action),
            DecidedBy::Fallback => write!(
                f,
                "{} by the fallback (no rule or default matched)",
                self.action
            ),
        }
    }
}

impl Policy {
    /// Loads and compiles a permissions file, substituting `${VAR}` from the process
    /// environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, ConfigError> {
        Self::load_with_env(path, &ProcessEnv)
    }

    /// Loads and compiles a permissions file, substituting `${VAR}` from `env`.
    pub fn load_with_env(
        path: impl AsRef<Path>,
        env: &dyn EnvLookup,
    ) -> Result<Policy, ConfigError> {
        PermissionsFile::load_with_env(path, env).map(Policy::new)
    }

    /// Loads a permissions file for a loaded config: like [`Policy::load`], and also an error
    /// for every `agents:` entry naming an agent the config does not have (a typo there would
    /// silently make a rule apply to nobody). `serve` and `check` agree through this.
    pub fn load_for(config: &Config, path: impl AsRef<Path>) -> Result<Policy, ConfigError> {
        Self::for_config(config, PermissionsFile::load(path)?)
    }

    /// The policy of a loaded permissions file for a loaded config: an error for every
    /// `agents:` entry naming an agent the config does not have (see [`Policy::load_for`]).
    pub fn for_config(config: &Config, file: PermissionsFile) -> Result<Policy, ConfigError> {
        let known: Vec<&str> = config.agents.iter().map(|a| a.id.as_str()).collect();
        let issues = file.unknown_agents(&known);
        if issues.is_empty() {
            Ok(Policy::new(file))
        } else {
            Err(ConfigError::Invalid {
                file: file.file,
                issues,
            })
        }
    }

    /// Builds the policy from a loaded permissions file.
    pub fn new(file: PermissionsFile) -> Policy {
        Policy {
            file: file.file,
            rules: file.rules,
            defaults: file.defaults,
        }
    }

    /// The permissions file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// `rules:` in file order.
    pub fn rules(&self) -> &[RuleSpec] {
        &self.rules
    }

    /// `defaults:` in file order.
    pub fn defaults(&self) -> &[RuleSpec] {
        &self.defaults
    }

    /// The decision for `signature` requested by `agent`.
    pub fn evaluate(&self, agent: &str, signature: &str) -> Action {
        self.explain(agent, signature).action
    }

    /// The decision for `signature` requested by `agent`, with the deciding rule.
    pub fn explain(&self, agent: &str, signature: &str) -> Explanation<'_> {
        self.explain_with(agent, signature, |p, s| p.matches(s))
    }

    /// [`Policy::explain`] with the pattern matcher supplied by the caller, so tests can count
    /// (or observe) every pattern test.
    #[doc(hidden)]
    pub fn explain_with(
        &self,
        agent: &str,
        signature: &str,
        mut matches: impl FnMut(&Pattern, &str) -> bool,
    ) -> Explanation<'_> {
        let mut tested = 0usize;
        let mut allow: Option<&RuleSpec> = None;
        let mut ask: Option<&RuleSpec> = None;
        let file: &Path = &self.file;
        for rule in &self.rules {
            if !rule.applies_to(agent) {
                continue;
            }
            // An allow (ask) rule after an earlier match of the same action cannot change the
            // outcome; only a deny still could, so skip testing the pattern.
            let relevant = match rule.action {
                Action::Deny => true,
                Action::Allow => allow.is_none(),
                Action::Ask => ask.is_none() && allow.is_none(),
            };
            if !relevant {
                continue;
            }
            tested += 1;
            if !matches(&rule.pattern, signature) {
                continue;
            }
            match rule.action {
                Action::Deny => return decided(file, rule, tested),
                Action::Allow => allow = Some(rule),
                Action::Ask => ask = Some(rule),
            }
        }
        if let Some(rule) = allow.or(ask) {
            return decided(file, rule, tested);
        }
        for rule in &self.defaults {
            if !rule.applies_to(agent) {
                continue;
            }
            tested += 1;
            if matches(&rule.pattern, signature) {
                return decided(file, rule, tested);
            }
        }
        Explanation {
            action: Action::Ask,
            decided_by: DecidedBy::Fallback,
            patterns_tested: tested,
        }
    }
}

fn decided<'p>(file: &'p Path, rule: &'p RuleSpec, tested: usize) -> Explanation<'p> {
    Explanation {
        action: rule.action,
        decided_by: DecidedBy::Rule(RuleRef { file, rule }),
        patterns_tested: tested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PermissionsFile, RuleList};

    fn policy(yaml: &str) -> Policy {
        let env = |_: &str| None;
        Policy::new(PermissionsFile::parse(yaml, "permissions.yaml", &env).unwrap())
    }

    #[test]
    fn upstream_precedence() {
        let p = policy(
            r#"
defaults:
  - {pattern: "ha_get_*", action: allow}
  - {pattern: "ha_call_service*", action: ask}
  - {pattern: "*", action: deny}
rules:
  - {pattern: "ha_call_service(lock.*)", action: deny, description: "Locks never"}
  - {pattern: "ha_call_service(lock.lock, lock.front_door)", action: allow}
  - {pattern: "ha_get_state(sensor.*)", action: ask}
  - {pattern: "ha_get_state(sensor.temp)", action: allow}
"#,
        );
        let e = p.explain("default", "ha_call_service(lock.lock, lock.front_door)");
        assert_eq!(e.action, Action::Deny);
        let DecidedBy::Rule(r) = e.decided_by else {
            panic!("expected a rule")
        };
        assert_eq!((r.rule.list, r.rule.index), (RuleList::Rules, 0));
        assert_eq!(r.rule.description.as_deref(), Some("Locks never"));
        // allow beats ask whatever their order
        assert_eq!(
            p.evaluate("default", "ha_get_state(sensor.temp)"),
            Action::Allow
        );
        assert_eq!(
            p.evaluate("default", "ha_get_state(sensor.hum)"),
            Action::Ask
        );
        // defaults, first match
        assert_eq!(p.evaluate("default", "ha_get_states"), Action::Allow);
        assert_eq!(
            p.evaluate("default", "ha_call_service(light.turn_on, )"),
            Action::Ask
        );
        assert_eq!(p.evaluate("default", "ha_fire_event(x)"), Action::Deny);
        let empty = policy("rules: []");
        let e = empty.explain("a", "x");
        assert_eq!((e.action, e.decided_by), (Action::Ask, DecidedBy::Fallback));
    }

    #[test]
    fn agent_scoping() {
        let p = policy(
            r#"
rules:
  - {pattern: "ha_call_service(*", action: allow, agents: [kitchen]}
defaults:
  - {pattern: "*", action: deny, agents: [guest]}
"#,
        );
        assert_eq!(
            p.evaluate("kitchen", "ha_call_service(x.y, )"),
            Action::Allow
        );
        assert_eq!(p.evaluate("other", "ha_call_service(x.y, )"), Action::Ask);
        assert_eq!(p.evaluate("guest", "ha_call_service(x.y, )"), Action::Deny);
    }
}
