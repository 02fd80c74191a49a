//! Property tests of the permission engine: the glob matcher agrees with a reference fnmatch,
//! deny wins whatever the order of rules, defaults are first-match, evaluation is linear, and
//! no argument value accepted by the manifest can make a signature match a rule it would not
//! match on its own.

use std::cell::Cell;
use std::path::Path;
use std::sync::OnceLock;

use agent_gate_gateway::config::{PermissionsFile, RuleList};
use agent_gate_gateway::policy::{Action, DecidedBy, Pattern, Policy, Reason};
use agent_gate_manifest::Manifest;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------- reference fnmatch

/// A pattern token, rendered to glob syntax and matched by the reference matcher.
#[derive(Debug, Clone)]
enum Tok {
    Lit(char),
    Star,
    Any,
    /// `[...]`: (negated, chars in the set).
    Class(bool, Vec<char>),
}

fn render(tokens: &[Tok]) -> String {
    let mut s = String::new();
    for t in tokens {
        match t {
            Tok::Lit(c) => s.push(*c),
            Tok::Star => s.push('*'),
            Tok::Any => s.push('?'),
            Tok::Class(neg, set) => {
                s.push('[');
                if *neg {
                    s.push('!');
                }
                s.extend(set);
                s.push(']');
            }
        }
    }
    s
}

/// Straightforward backtracking fnmatch over tokens (exponential in the worst case, fine for
/// the small inputs used here).
fn reference(p: &[Tok], t: &[char]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some((Tok::Star, rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
        Some((Tok::Any, rest)) => !t.is_empty() && reference(rest, &t[1..]),
        Some((Tok::Class(neg, set), rest)) => {
            t.first().is_some_and(|c| set.contains(c) != *neg) && reference(rest, &t[1..])
        }
        Some((Tok::Lit(c), rest)) => t.first() == Some(c) && reference(rest, &t[1..]),
    }
}

const ALPHABET: &[char] = &['a', 'b', '(', ')', ',', ' ', '.', 'é'];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ALPHABET), 0..12)
        .prop_map(|v| v.into_iter().collect())
}

fn tokens() -> impl Strategy<Value = Vec<Tok>> {
    let tok = prop_oneof![
        4 => prop::sample::select(ALPHABET).prop_map(Tok::Lit),
        2 => Just(Tok::Star),
        1 => Just(Tok::Any),
        1 => (any::<bool>(), prop::collection::vec(prop::sample::select(&['a', 'b', '(', ','][..]), 1..3))
            .prop_map(|(n, s)| Tok::Class(n, s)),
    ];
    prop::collection::vec(tok, 1..8)
}

// ---------------------------------------------------------------- policies

#[derive(Debug, Clone)]
struct RuleGen {
    tokens: Vec<Tok>,
    action: Action,
    agents: Option<Vec<&'static str>>,
}

fn action() -> impl Strategy<Value = Action> {
    prop::sample::select(vec![Action::Allow, Action::Deny, Action::Ask])
}

fn rule() -> impl Strategy<Value = RuleGen> {
    (
        tokens(),
        action(),
        prop::option::weighted(0.3, prop::sample::subsequence(vec!["a1", "a2", "a3"], 1..3)),
    )
        .prop_map(|(tokens, action, agents)| RuleGen {
            tokens,
            action,
            agents,
        })
}

fn yaml_list(rules: &[RuleGen]) -> String {
    let mut s = String::from("[");
    for r in rules {
        let pattern = serde_json::to_string(&render(&r.tokens)).unwrap();
        s.push_str(&format!("{{pattern: {pattern}, action: {}", r.action));
        if let Some(agents) = &r.agents {
            s.push_str(&format!(", agents: [{}]", agents.join(", ")));
        }
        s.push_str("}, ");
    }
    s.push(']');
    s
}

fn policy(rules: &[RuleGen], defaults: &[RuleGen]) -> Policy {
    let yaml = format!(
        "rules: {}\ndefaults: {}\n",
        yaml_list(rules),
        yaml_list(defaults)
    );
    let env = |_: &str| None;
    Policy::new(
        PermissionsFile::parse(&yaml, "p.yaml", &env).unwrap_or_else(|e| panic!("{e}\n{yaml}")),
    )
}

fn applies(r: &RuleGen, agent: &str) -> bool {
    r.agents.as_ref().is_none_or(|a| a.contains(&agent))
}

/// The specification, written independently of the engine.
fn expected(rules: &[RuleGen], defaults: &[RuleGen], agent: &str, sig: &str) -> Action {
    let chars: Vec<char> = sig.chars().collect();
    let hit = |r: &&RuleGen| applies(r, agent) && reference(&r.tokens, &chars);
    let matching: Vec<&RuleGen> = rules.iter().filter(hit).collect();
    for a in [Action::Deny, Action::Allow, Action::Ask] {
        if matching.iter().any(|r| r.action == a) {
            return a;
        }
    }
    defaults.iter().find(hit).map_or(Action::Ask, |d| d.action)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn matcher_agrees_with_reference_fnmatch(toks in tokens(), t in text()) {
        let pattern = Pattern::new(&render(&toks)).unwrap();
        let chars: Vec<char> = t.chars().collect();
        prop_assert_eq!(pattern.matches(&t), reference(&toks, &chars), "pattern {}", pattern);
    }

    #[test]
    fn evaluation_follows_the_specification(
        rules in prop::collection::vec(rule(), 0..8),
        defaults in prop::collection::vec(rule(), 0..5),
        agent in prop::sample::select(vec!["a1", "a2", "a3"]),
        sig in text(),
    ) {
        let p = policy(&rules, &defaults);
        let e = p.explain(agent, &sig);
        prop_assert_eq!(e.action, expected(&rules, &defaults, agent, &sig));
        // The deciding rule really matches, applies to the agent and carries the action.
        match e.decided_by {
            DecidedBy::Rule(r) => {
                prop_assert!(r.rule.pattern.matches(&sig));
                prop_assert!(r.rule.applies_to(agent));
                prop_assert_eq!(r.rule.action, e.action);
                let source = match r.rule.list { RuleList::Rules => &rules, RuleList::Defaults => &defaults };
                prop_assert_eq!(render(&source[r.rule.index].tokens), r.rule.pattern.as_str());
            }
            DecidedBy::Fallback => prop_assert_eq!(e.action, Action::Ask),
        }
    }

    #[test]
    fn deny_wins_whatever_the_order_of_rules(
        rules in prop::collection::vec(rule(), 1..10),
        defaults in prop::collection::vec(rule(), 0..4),
        sig in text(),
        shuffle in any::<prop::sample::Index>(),
        rotate in any::<prop::sample::Index>(),
    ) {
        let agent = "a1";
        let p = policy(&rules, &defaults);
        let action = p.evaluate(agent, &sig);
        let chars: Vec<char> = sig.chars().collect();
        let any_deny = rules.iter().any(|r| r.action == Action::Deny && applies(r, agent) && reference(&r.tokens, &chars));
        prop_assert_eq!(action == Action::Deny && any_deny, any_deny);
        // Reordering the rules never changes the decision.
        let mut reordered = rules.clone();
        reordered.reverse();
        let k = rotate.index(reordered.len());
        reordered.rotate_left(k);
        let i = shuffle.index(reordered.len());
        reordered.swap(0, i);
        prop_assert_eq!(policy(&reordered, &defaults).evaluate(agent, &sig), action);
    }

    #[test]
    fn defaults_are_first_match_in_order(
        defaults in prop::collection::vec(rule(), 1..8),
        sig in text(),
    ) {
        let p = policy(&[], &defaults);
        let chars: Vec<char> = sig.chars().collect();
        let first = defaults.iter().position(|d| applies(d, "a2") && reference(&d.tokens, &chars));
        let e = p.explain("a2", &sig);
        match first {
            Some(i) => {
                prop_assert_eq!(e.action, defaults[i].action);
                let DecidedBy::Rule(r) = e.decided_by else { panic!("expected a rule") };
                prop_assert_eq!((r.rule.list, r.rule.index), (RuleList::Defaults, i));
            }
            None => prop_assert_eq!(e.decided_by, DecidedBy::Fallback),
        }
    }

    #[test]
    fn evaluation_is_linear_in_the_number_of_rules(
        rules in prop::collection::vec(rule(), 0..40),
        defaults in prop::collection::vec(rule(), 0..10),
        sig in text(),
    ) {
        let p = policy(&rules, &defaults);
        let calls = Cell::new(0usize);
        let e = p.explain_with("a1", &sig, |pat, s| {
            calls.set(calls.get() + 1);
            pat.matches(s)
        });
        // Each pattern is tested at most once: never more calls than rules + defaults.
        prop_assert!(calls.get() <= rules.len() + defaults.len());
        prop_assert_eq!(calls.get(), e.patterns_tested);
        prop_assert_eq!(e.action, p.evaluate("a1", &sig));
    }
}

// ---------------------------------------------------------------- no injection via values

fn manifest() -> &'static Manifest {
    static MANIFEST: OnceLock<Manifest> = OnceLock::new();
    MANIFEST.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools.toml");
        Manifest::load(&[path]).unwrap().manifest
    })
}

/// Values an attacker might send: valid identifiers, near misses, and strings full of the
/// characters that could fake structure (`,`, `(`, `)`, glob metacharacters, spaces).
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "light",
            "lock",
            "turn_on",
            "unlock",
            "light.bedroom",
            "lock.front_door",
            "light.bedroom2",
            "light.turn_on",
            "lock.*",
            "light.bedroom, lock.front_door",
            "light.turn_on, light.bedroom",
            "light.bedroom)",
            "lock)",
            "*",
            "",
            " light.bedroom",
            "light.bedroom ",
            "Light.Bedroom",
        ])
        .prop_map(str::to_string),
        "[a-z_.]{1,12}",
        "[a-z_., ()*?\\[\\]!{}\\\\]{0,16}",
    ]
}

/// Strings that look like entity ids, with the disguises Home Assistant undoes (case,
/// padding, comma-separated lists), and harmless text.
fn json_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "lock.front_door",
            "LOCK.Front_Door",
            " lock.front_door ",
            "light.kitchen, lock.back",
            "sensor.x,switch.y",
            "\u{1f}cover.garage",
            "on",
            "21.5",
            "none",
            "a.b.c",
            "script.run",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,6}\\.[a-z0-9_]{1,6}",
        "[ -~]{0,12}",
    ]
}

/// Arbitrary JSON objects (nested objects and lists, entity-shaped keys and values).
fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    let leaf = prop_oneof![
        json_text().prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    let tree = leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((json_text(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    });
    prop::collection::vec((json_text(), tree), 0..4).prop_map(|kv| kv.into_iter().collect())
}

/// The reference: every string value and key of `value` split at commas, trimmed of white
/// space and control characters, lower-cased, that is `word.word`.
fn entity_shaped(value: &Value, out: &mut Vec<String>) {
    fn text(s: &str, out: &mut Vec<String>) {
        for part in s.split(',') {
            let t = part
                .trim_matches(|c: char| c.is_whitespace() || c.is_control())
                .to_lowercase();
            let word = |w: &str| {
                !w.is_empty()
                    && w.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            };
            let shaped = t.split_once('.').is_some_and(|(a, b)| word(a) && word(b));
            if shaped && !out.contains(&t) {
                out.push(t);
            }
        }
    }
    match value {
        Value::String(s) => text(s, out),
        Value::Array(items) => items.iter().for_each(|v| entity_shaped(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                text(k, out);
                entity_shaped(v, out);
            }
        }
        _ => {}
    }
}

fn call_args(
    domain: &str,
    service: &str,
    entity: Option<&str>,
    data: Option<Value>,
) -> Map<String, Value> {
    let mut args = Map::new();
    args.insert("domain".into(), json!(domain));
    args.insert("service".into(), json!(service));
    if let Some(e) = entity {
        args.insert("entity_id".into(), json!(e));
    }
    if let Some(d) = data {
        args.insert("data".into(), d);
    }
    args
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// For every argument set the manifest accepts, a rule matches a judged signature exactly
    /// when the arguments themselves say so: a value can never reach into another position of
    /// the signature or widen a match, and every entity the call names (in `entity_id` or in
    /// its data) is judged in its own signature.
    #[test]
    fn accepted_values_cannot_change_what_a_rule_matches(
        domain in value(),
        service in value(),
        entity in prop::option::of(value()),
        data_key in prop::sample::select(vec!["brightness", "entity_id", "area_id", "device_id", "floor_id", "label_id", "domain", "x"]),
        with_data in any::<bool>(),
    ) {
        let m = manifest();
        let tool = m.tool("ha_call_service").unwrap();
        let data = with_data.then(|| json!({ data_key: "lock.front_door" }));
        let args = call_args(&domain, &service, entity.as_deref(), data);
        let Ok(judged) = tool.judged(&args) else {
            return Ok(()); // refused before a signature exists: nothing to match
        };
        let entity = entity.as_deref();
        let mut targets: Vec<String> = entity.map(str::to_owned).into_iter().collect();
        if with_data && !targets.iter().any(|t| t == "lock.front_door") {
            targets.push("lock.front_door".to_owned());
        }
        prop_assert_eq!(&judged.targets, &targets);
        let exact = Pattern::new("ha_call_service(light.turn_on, light.bedroom)").unwrap();
        let locks = Pattern::new("ha_call_service(lock.*)").unwrap();
        let front_door = Pattern::new("ha_call_service(*, lock.front_door)").unwrap();
        for sig in &judged.signatures {
            // The signature parses back into exactly the values given (the generic
            // `homeassistant` domain is judged under the target's own domain too).
            let inner = sig.strip_prefix("ha_call_service(").and_then(|s| s.strip_suffix(')')).unwrap();
            let parts: Vec<&str> = inner.split(", ").collect();
            prop_assert_eq!(parts.len(), 2, "{}", sig);
            let (action, target) = (parts[0], parts[1]);
            let judged_domain = action.strip_suffix(&format!(".{service}")).unwrap_or("?");
            let dispatched = domain == "homeassistant"
                && target.split_once('.').is_some_and(|(kind, _)| kind == judged_domain);
            prop_assert!(judged_domain == domain || dispatched, "{}", sig);
            if targets.is_empty() {
                prop_assert_eq!(target, "", "{}", sig);
            } else {
                prop_assert!(targets.iter().any(|t| t == target), "{}", sig);
            }
            prop_assert_eq!(
                exact.matches(sig),
                judged_domain == "light" && service == "turn_on" && target == "light.bedroom",
                "{}", sig
            );
            prop_assert_eq!(locks.matches(sig), judged_domain == "lock", "{}", sig);
            prop_assert_eq!(front_door.matches(sig), target == "lock.front_door", "{}", sig);
        }
        // Every target has a signature of its own.
        for t in &targets {
            let tail = format!(", {t})");
            prop_assert!(judged.signatures.iter().any(|s| s.ends_with(&tail)), "{}", t);
        }
        // Data never selects targets by key.
        prop_assert!(!with_data || !["entity_id", "area_id", "device_id", "floor_id", "label_id", "domain"].contains(&data_key));
    }

    /// For arbitrary JSON service data, every entity-shaped string in it (a value, an object
    /// key, or a comma-separated part of one, once trimmed and lower-cased) is judged.
    #[test]
    fn every_entity_in_service_data_is_judged(data in json_object()) {
        let m = manifest();
        let tool = m.tool("ha_call_service").unwrap();
        let args = call_args("light", "turn_on", None, Some(Value::Object(data.clone())));
        let Ok(judged) = tool.judged(&args) else {
            return Ok(()); // refused (a forbidden or refused key): nothing runs
        };
        let mut found = Vec::new();
        entity_shaped(&Value::Object(data), &mut found);
        for entity in found {
            prop_assert!(judged.targets.contains(&entity), "{} missing from {:?}", entity, judged.targets);
            let signature = format!("ha_call_service(light.turn_on, {entity})");
            prop_assert!(judged.signatures.contains(&signature), "{}", signature);
        }
    }

    /// Through `Policy::decide`: a request is allowed only if its own, validated values match an
    /// allow rule; anything the manifest refuses is denied (fail closed).
    #[test]
    fn decide_fails_closed(
        domain in value(),
        service in value(),
        entity in prop::option::of(value()),
    ) {
        let m = manifest();
        let env = |_: &str| None;
        let p = Policy::new(PermissionsFile::parse(
            "rules:\n  - {pattern: 'ha_call_service(light.turn_on, light.bedroom)', action: allow}\ndefaults:\n  - {pattern: '*', action: deny}\n",
            "p.yaml", &env).unwrap());
        let args = call_args(&domain, &service, entity.as_deref(), None);
        let d = p.decide(m, "default", "ha_call_service", &args);
        let allowed = domain == "light" && service == "turn_on" && entity.as_deref() == Some("light.bedroom");
        prop_assert_eq!(d.action == Action::Allow, allowed);
        if let Reason::InvalidArguments(_) = d.reason {
            prop_assert_eq!(d.action, Action::Deny);
            prop_assert!(d.signature.is_none());
            prop_assert!(d.is_invalid_request());
        }
    }
}
