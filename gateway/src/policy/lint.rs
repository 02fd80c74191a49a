//! Advice about a policy that the engine itself cannot give at run time: rules that allow
//! targets which act on other things in turn (scripts, scenes, automations) while other
//! rules deny some of those things. Used by `agent-gate check`.

use std::path::Path;

use agent_gate_manifest::Manifest;
use serde_json::Map;

use crate::config::RuleSpec;
use crate::rule::Action;

/// Placeholder values tried for the signature parts other than the target and the generic
/// action, so that rules such as `ha_call_service(script.turn_on, *)` are probed too.
const PROBE_WORDS: &[&str] = &["x", "turn_on", "turn_off", "toggle", "trigger", "apply"];

/// One warning per rule (in `rules:` or `defaults:`) that allows a kind of target the manifest
/// declares `indirect` (for Home Assistant: `script`, `scene`, `automation`) for a tool that a
/// deny rule also names. Allowing a script allows whatever the script does, including what
/// the deny rule forbids.
///
/// A rule "allows a kind" when its pattern matches a probe signature of the tool: the target
/// `<kind>.x` (or none), the generic-action argument set to the kind, and each of a few
/// common words in the other placeholders. Rules that name specific scripts
/// (`script.morning`) are not reported.
pub fn indirect_allows(
    file: &Path,
    rules: &[RuleSpec],
    defaults: &[RuleSpec],
    manifest: &Manifest,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for tool in manifest.tools() {
        let Some(targets) = &tool.targets else {
            continue;
        };
        if targets.indirect.is_empty() {
            continue;
        }
        let prefix = format!("{}(", tool.name);
        let Some(deny) = rules
            .iter()
            .chain(defaults)
            .find(|r| r.action == Action::Deny && r.pattern.as_str().starts_with(&prefix))
        else {
            continue;
        };
        let placeholders: Vec<&str> = tool.signature_args().collect();
        let empty = Map::new();
        for rule in rules.iter().chain(defaults) {
            if rule.action != Action::Allow {
                continue;
            }
            let covered: Vec<&str> = targets
                .indirect
                .iter()
                .map(String::as_str)
                .filter(|kind| {
                    let target = format!("{kind}.x");
                    PROBE_WORDS.iter().any(|word| {
                        [target.as_str(), ""].iter().any(|slot| {
                            let given: Vec<(&str, &str)> = placeholders
                                .iter()
                                .map(|name| {
                                    let value = if *name == targets.slot {
                                        *slot
                                    } else if targets
                                        .dispatch
                                        .as_ref()
                                        .is_some_and(|d| d.arg == *name)
                                    {
                                        kind
                                    } else {
                                        word
                                    };
                                    (*name, value)
                                })
                                .collect();
                            rule.pattern.matches(&tool.signature_with(&empty, &given))
                        })
                    })
                })
                .collect();
            if covered.is_empty() {
                continue;
            }
            warnings.push(format!(
                "{}: {}[{}] (pattern \"{}\", allow) allows {} of tool `{}` without asking; they act on other entities, so they can do what {}[{}] (pattern \"{}\", deny) forbids: allowing a script, scene or automation allows whatever it contains. Prefer `ask`, or allow the ones you have read by name",
                file.display(),
                rule.list,
                rule.index,
                rule.pattern,
                covered
                    .iter()
                    .map(|k| format!("`{k}.*`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                tool.name,
                deny.list,
                deny.index,
                deny.pattern,
            ));
        }
    }
    warnings
}
