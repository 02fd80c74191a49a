//! Which tools an agent could ever be permitted ([`Policy::may_permit`]): a front lists only
//! those, so an agent is not offered tools every rule denies it. The answer errs towards
//! listing: a tool is hidden only when the policy denies every signature it could have.

use agent_gate_manifest::Tool;

use super::{Action, Pattern, Policy};

/// Whether `pattern` matches every signature that starts with `prefix` and ends with
/// `ending`: it is made of literal characters and stars only, with at least one star, its text
/// before the first star starts `prefix` and its text after the last star ends `ending`.
/// `false` when in doubt (classes, `?`, literals between stars).
fn covers(pattern: &Pattern, prefix: &str, ending: &str) -> bool {
    let source = pattern.as_str();
    if source.contains(['?', '[']) {
        return false;
    }
    let (Some(first), Some(last)) = (source.find('*'), source.rfind('*')) else {
        return false;
    };
    let before = &source[..first];
    let after = &source[last + 1..];
    let between = &source[first..=last];
    between.chars().all(|c| c == '*') && prefix.starts_with(before) && ending.ends_with(after)
}

/// Whether `pattern` could match some signature starting with `prefix`.
fn could_match(pattern: &Pattern, prefix: &str) -> bool {
    let literal = pattern.literal_prefix();
    prefix.starts_with(literal) || literal.starts_with(prefix)
}

impl Policy {
    /// Whether `agent` could get `allow` or `ask` for some call of `tool`: `false` only when a
    /// deny rule matches every signature of the tool, or when no allow or ask rule could match
    /// one and the first default that could is a deny matching them all. (A tool without a
    /// signature template has one signature, its name, and is judged as such.)
    pub fn may_permit(&self, agent: &str, tool: &Tool) -> bool {
        if tool.signature.is_none() {
            return self.evaluate(agent, &tool.name) != Action::Deny;
        }
        let prefix = format!("{}(", tool.name);
        let rules = self.rules().iter().filter(|r| r.applies_to(agent));
        let mut permitting = false;
        for rule in rules {
            match rule.action {
                Action::Deny if covers(&rule.pattern, &prefix, ")") => return false,
                Action::Deny => {}
                Action::Allow | Action::Ask => {
                    permitting = permitting || could_match(&rule.pattern, &prefix);
                }
            }
        }
        if permitting {
            return true;
        }
        let first_default = self
            .defaults()
            .iter()
            .filter(|d| d.applies_to(agent))
            .find(|d| could_match(&d.pattern, &prefix));
        match first_default {
            Some(d) => !(d.action == Action::Deny && covers(&d.pattern, &prefix, ")")),
            // Nothing matches: the fallback asks.
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use agent_gate_manifest::{Manifest, Tool};

    use crate::config::PermissionsFile;
    use crate::policy::Policy;

    fn bundled() -> Manifest {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools.toml");
        Manifest::load(&[path]).unwrap().manifest
    }

    trait MayPermit {
        fn may(&self, agent: &str, tool: &str) -> bool;
    }

    impl MayPermit for Policy {
        fn may(&self, agent: &str, tool: &str) -> bool {
            let manifest = bundled();
            let tool: &Tool = manifest.tool(tool).unwrap();
            self.may_permit(agent, tool)
        }
    }

    fn policy(yaml: &str) -> Policy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("permissions.yaml");
        std::fs::write(&path, yaml).unwrap();
        Policy::new(PermissionsFile::load(&path).unwrap())
    }

    #[test]
    fn a_deny_covering_every_signature_hides_the_tool() {
        for pattern in [
            "*",
            "ha_call_service*",
            "ha_call_service(*)",
            "ha_*",
            "ha_call_service(**",
        ] {
            let p = policy(&format!(
                "rules:\n  - pattern: \"{pattern}\"\n    action: deny\n  - pattern: \"*\"\n    action: allow\n"
            ));
            assert!(!p.may("pi", "ha_call_service"), "{pattern}");
        }
    }

    #[test]
    fn a_deny_of_some_signatures_keeps_the_tool() {
        for pattern in [
            "ha_call_service(lock.*)",
            "ha_call_service(?*",
            "ha_*(*",
            "ha_call_service(*, lock.*)",
            "ha_get_state*",
        ] {
            let p = policy(&format!(
                "rules:\n  - pattern: \"{pattern}\"\n    action: deny\n"
            ));
            assert!(p.may("pi", "ha_call_service"), "{pattern}");
        }
    }

    #[test]
    fn a_deny_scoped_to_another_agent_does_not_hide_the_tool() {
        let p = policy(
            "rules:\n  - pattern: \"ha_call_service*\"\n    action: deny\n    agents: [kitchen]\n",
        );
        assert!(p.may("pi", "ha_call_service"));
        let p = policy(
            "rules:\n  - pattern: \"ha_call_service*\"\n    action: deny\n    agents: [pi]\n",
        );
        assert!(!p.may("pi", "ha_call_service"));
    }

    #[test]
    fn defaults_hide_a_tool_only_when_no_rule_could_permit_it() {
        let deny_all = "defaults:\n  - pattern: \"*\"\n    action: deny\n";
        assert!(!policy(deny_all).may("pi", "ha_call_service"));
        let with_allow = format!(
            "rules:\n  - pattern: \"ha_call_service(light.*)\"\n    action: allow\n{deny_all}"
        );
        assert!(policy(&with_allow).may("pi", "ha_call_service"));
        assert!(!policy(&with_allow).may("pi", "ha_get_state"));
        let ask_first = "defaults:\n  - pattern: \"ha_get_*\"\n    action: ask\n  - pattern: \"*\"\n    action: deny\n";
        assert!(policy(ask_first).may("pi", "ha_get_state"));
        assert!(!policy(ask_first).may("pi", "ha_call_service"));
    }

    #[test]
    fn with_no_rules_the_fallback_asks_so_every_tool_is_listed() {
        assert!(policy("rules: []\n").may("pi", "ha_call_service"));
    }

    #[test]
    fn a_tool_without_a_signature_template_is_judged_by_its_name() {
        let p = policy("rules:\n  - pattern: \"ha_get_states\"\n    action: deny\n");
        assert!(!p.may("pi", "ha_get_states"));
        assert!(p.may("pi", "ha_get_state"));
    }
}
