//! permissions.yaml loading: the upstream shape, agent scoping, and mistakes reported with
//! file and key path.

use agent_gate_gateway::config::{PermissionsFile, RuleList};
use agent_gate_gateway::policy::{Action, DecidedBy, Policy};

fn parse(yaml: &str) -> Result<PermissionsFile, Vec<String>> {
    let env = |name: &str| (name == "LOCK").then(|| "lock".to_string());
    PermissionsFile::parse(yaml, "permissions.yaml", &env)
        .map_err(|e| e.issues().iter().map(ToString::to_string).collect())
}

#[test]
fn upstream_shape_loads() {
    let p = parse(
        r#"
defaults:
  - pattern: "ha_get_*"
    action: allow
  - pattern: "*"
    action: ask
rules:
  - pattern: "ha_call_service(${LOCK}.*)"
    action: deny
    description: "Lock control denied"
  - pattern: "ha_fire_event(*)"
    action: deny
"#,
    )
    .unwrap();
    assert_eq!(p.defaults.len(), 2);
    assert_eq!(p.defaults[0].pattern.as_str(), "ha_get_*");
    assert_eq!(p.defaults[0].action, Action::Allow);
    assert_eq!(p.defaults[1].list, RuleList::Defaults);
    assert_eq!(p.rules[0].pattern.as_str(), "ha_call_service(lock.*)");
    assert_eq!(
        p.rules[0].description.as_deref(),
        Some("Lock control denied")
    );
    assert_eq!(p.rules[1].description, None);
    assert_eq!(p.rules[1].index, 1);
    assert!(p.warnings.is_empty());

    // Empty or missing lists are fine.
    assert!(
        parse("defaults:\n  - {pattern: '*', action: ask}\nrules: []\n")
            .unwrap()
            .rules
            .is_empty()
    );
    assert!(
        parse("defaults:\n  - {pattern: '*', action: ask}\n")
            .unwrap()
            .rules
            .is_empty()
    );
    let empty = parse("").unwrap();
    assert_eq!(empty.warnings.len(), 1);
    assert!(
        empty.warnings[0]
            .to_string()
            .contains("no rules and no defaults")
    );
}

#[test]
fn mistakes_name_file_and_key_path() {
    let errs = parse(
        r#"
defaults:
  - {pattern: "*", action: permit}
rules:
  - {pattern: "ha_fire_event(*)", action: block}
  - {pattern: "x[ab", action: deny}
  - {pattern: "", action: deny}
  - {action: allow}
  - {pattern: "a", action: alow, descripton: "typo"}
  - {pattern: "b", action: deny, agents: []}
  - {pattern: "c", action: deny, agents: "kitchen"}
rulez: []
"#,
    )
    .unwrap_err();
    assert_eq!(
        errs,
        vec![
            "permissions.yaml: rulez: unknown key `rulez` (did you mean `rules`?); expected one of: defaults, rules",
            r#"permissions.yaml: defaults[0].action: invalid action "permit": expected allow, deny or ask"#,
            r#"permissions.yaml: rules[0].action: invalid action "block": expected allow, deny or ask"#,
            r#"permissions.yaml: rules[1].pattern: invalid pattern "x[ab": `[` at character 2 has no closing `]`; character classes are written `[abc]`, `[a-z]` or `[!abc]`"#,
            r#"permissions.yaml: rules[2].pattern: invalid pattern "": the pattern is empty; use "*" to match every signature"#,
            "permissions.yaml: rules[3].pattern: missing: expected a string",
            "permissions.yaml: rules[4].descripton: unknown key `descripton` (did you mean `description`?); expected one of: pattern, action, description, agents",
            r#"permissions.yaml: rules[4].action: invalid action "alow" (did you mean `allow`?): expected allow, deny or ask"#,
            "permissions.yaml: rules[5].agents: an empty list makes the rule apply to nobody; remove `agents:` to apply it to every agent",
            r#"permissions.yaml: rules[6].agents: expected a list, got "kitchen""#,
        ]
    );
}

#[test]
fn unreachable_defaults_warn_and_unknown_agents_are_found() {
    let p = parse(
        r#"
defaults:
  - {pattern: "*", action: ask}
  - {pattern: "ha_get_*", action: allow}
rules:
  - {pattern: "ha_call_service(*", action: allow, agents: [kitchn, garden]}
"#,
    )
    .unwrap();
    assert_eq!(p.warnings.len(), 1);
    assert_eq!(
        p.warnings[0].to_string(),
        "permissions.yaml: defaults[1]: never applies: defaults[0] (`*`) matches every signature before it; move it above"
    );
    let unknown: Vec<String> = p
        .unknown_agents(&["kitchen", "garden"])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        unknown,
        vec![
            r#"permissions.yaml: rules[0].agents[0]: unknown agent "kitchn" (did you mean `kitchen`?); the agents in the config are: kitchen, garden"#
        ]
    );
}

#[test]
fn explain_names_the_deciding_rule() {
    let policy = Policy::new(
        parse(
            r#"
defaults:
  - {pattern: "ha_get_*", action: allow, description: "reads are fine"}
rules:
  - {pattern: "ha_call_service(light.*)", action: ask, description: "lights need a human"}
  - {pattern: "ha_call_service(lock.*)", action: deny, description: "never locks"}
"#,
        )
        .unwrap(),
    );
    let e = policy.explain("default", "ha_call_service(lock.unlock, lock.front_door)");
    assert_eq!(e.action, Action::Deny);
    let DecidedBy::Rule(r) = e.decided_by else {
        panic!()
    };
    assert_eq!(r.file.to_str(), Some("permissions.yaml"));
    assert_eq!((r.rule.list, r.rule.index), (RuleList::Rules, 1));
    assert_eq!(
        e.to_string(),
        r#"deny by permissions.yaml: rules[1] (pattern "ha_call_service(lock.*)", action deny): never locks"#
    );
    let e = policy.explain("default", "ha_get_states");
    assert_eq!(
        e.to_string(),
        r#"allow by permissions.yaml: defaults[0] (pattern "ha_get_*", action allow): reads are fine"#
    );
    let e = policy.explain("default", "ha_fire_event(x)");
    assert_eq!(e.decided_by, DecidedBy::Fallback);
    assert_eq!(
        e.to_string(),
        "ask by the fallback (no rule or default matched)"
    );
    assert_eq!(e.patterns_tested, 3);
}

#[test]
fn load_for_a_config_refuses_unknown_agents() {
    let dir = tempfile::tempdir().unwrap();
    let perms = dir.path().join("permissions.yaml");
    std::fs::write(
        &perms,
        "rules:\n  - {pattern: '*', action: allow, agents: [kitchen, gardn]}\n",
    )
    .unwrap();
    let env = |_: &str| None;
    let config = agent_gate_gateway::config::Config::parse(
        "agents:\n  - {id: kitchen, token: kitchen-token-0123456789}\n  - {id: garden, token: garden-token-0123456789}\n",
        dir.path().join("config.yaml"),
        &env,
    )
    .unwrap();
    let err = Policy::load_for(&config, &perms).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: rules[0].agents[1]: unknown agent \"gardn\" (did you mean `garden`?); the agents in the config are: kitchen, garden",
            perms.display()
        )
    );
    std::fs::write(
        &perms,
        "rules:\n  - {pattern: '*', action: allow, agents: [garden]}\n",
    )
    .unwrap();
    let policy = Policy::load_for(&config, &perms).unwrap();
    assert_eq!(policy.evaluate("garden", "x"), Action::Allow);
    assert_eq!(policy.evaluate("kitchen", "x"), Action::Ask);
}
