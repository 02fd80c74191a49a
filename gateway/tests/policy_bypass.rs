//! "No argument escapes the policy": with the repository's tools.toml and a permissions file
//! that allows one light and denies every lock, each known way of smuggling a target past the
//! signature is refused (denied as an invalid request), and the legitimate calls are judged by
//! their own values.

use std::path::Path;

use agent_gate_gateway::config::PermissionsFile;
use agent_gate_gateway::policy::{Action, Decision, Policy, Reason};
use agent_gate_manifest::{ArgError, Manifest};
use serde_json::{Value, json};

const PERMISSIONS: &str = r#"
defaults:
  - {pattern: "ha_get_*", action: allow}
  - {pattern: "*", action: ask}
rules:
  - {pattern: "ha_call_service(lock.*)", action: deny, description: "no locks"}
  - {pattern: "ha_call_service(*, lock.*)", action: deny, description: "no lock entities"}
  - {pattern: "ha_call_service(light.turn_on, light.kitchen)", action: allow}
  - {pattern: "ha_get_state(sensor.*)", action: allow}
  - {pattern: "ha_fire_event(*)", action: deny}
"#;

struct Fixture {
    manifest: Manifest,
    policy: Policy,
}

fn fixture() -> Fixture {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = Manifest::load(&[root.join("tools.toml")]).unwrap().manifest;
    let env = |_: &str| None;
    let policy =
        Policy::new(PermissionsFile::parse(PERMISSIONS, "permissions.yaml", &env).unwrap());
    Fixture { manifest, policy }
}

impl Fixture {
    fn decide(&self, tool: &str, args: Value) -> Decision<'_> {
        let Value::Object(map) = args else {
            panic!("args must be an object")
        };
        self.policy.decide(&self.manifest, "default", tool, &map)
    }

    /// Asserts the request is refused as invalid, and returns the argument errors.
    fn refused(&self, tool: &str, args: Value) -> Vec<ArgError> {
        let d = self.decide(tool, args.clone());
        assert_eq!(d.action, Action::Deny, "{args} was not denied: {d:?}");
        assert!(d.is_invalid_request(), "{args}: {d:?}");
        assert_eq!(d.signature, None, "{args} got a signature");
        match d.reason {
            Reason::InvalidArguments(e) => e.errors,
            other => panic!("{args}: {other:?}"),
        }
    }
}

#[test]
fn legitimate_calls_are_judged_by_their_values() {
    let f = fixture();
    let d = f.decide(
        "ha_call_service",
        json!({"domain": "light", "service": "turn_on", "entity_id": "light.kitchen", "data": {"brightness": 128}}),
    );
    assert_eq!(d.action, Action::Allow);
    assert_eq!(
        d.signature.as_deref(),
        Some("ha_call_service(light.turn_on, light.kitchen)")
    );
    let d = f.decide(
        "ha_call_service",
        json!({"domain": "lock", "service": "unlock", "entity_id": "lock.front_door"}),
    );
    assert_eq!(d.action, Action::Deny);
    assert!(!d.is_invalid_request());
    let d = f.decide(
        "ha_call_service",
        json!({"domain": "homeassistant", "service": "turn_on", "entity_id": "lock.front_door"}),
    );
    assert_eq!(
        d.action,
        Action::Deny,
        "a lock entity through another domain"
    );
    let d = f.decide(
        "ha_call_service",
        json!({"domain": "light", "service": "turn_on"}),
    );
    assert_eq!(
        d.action,
        Action::Ask,
        "no entity: not the allowed signature"
    );
    assert_eq!(
        d.signature.as_deref(),
        Some("ha_call_service(light.turn_on, )")
    );
    assert_eq!(f.decide("ha_get_states", json!({})).action, Action::Allow);
}

#[test]
fn undeclared_argument_is_refused() {
    let f = fixture();
    let errs = f.refused(
        "ha_call_service",
        json!({"domain": "light", "service": "turn_on", "entity_id": "light.kitchen", "target": {"entity_id": "lock.front_door"}}),
    );
    assert!(matches!(&errs[..], [ArgError::Undeclared { arg, .. }] if arg == "target"));
    let errs = f.refused("ha_get_states", json!({"entity_id": "lock.front_door"}));
    assert!(matches!(&errs[..], [ArgError::Undeclared { .. }]));
}

#[test]
fn list_where_a_string_is_expected_is_refused() {
    let f = fixture();
    // `entity_id` of ha_call_service takes a list (`or_list`): each entity is judged, and the
    // lock among the lights denies the whole call.
    let d = f.decide(
        "ha_call_service",
        json!({"domain": "light", "service": "turn_on", "entity_id": ["light.kitchen", "lock.front_door"]}),
    );
    assert_eq!(d.action, Action::Deny);
    assert_eq!(
        d.signature.as_deref(),
        Some("ha_call_service(light.turn_on, lock.front_door)")
    );
    assert_eq!(d.targets, vec!["light.kitchen", "lock.front_door"]);
    let errs = f.refused(
        "ha_call_service",
        json!({"domain": "light", "service": "turn_on", "entity_id": []}),
    );
    assert!(matches!(&errs[..], [ArgError::EmptyList { arg, .. }] if arg == "entity_id"));
    let errs = f.refused(
        "ha_call_service",
        json!({"domain": "light", "service": "turn_on", "entity_id": ["light.kitchen", 7]}),
    );
    assert!(matches!(&errs[..], [ArgError::WrongType { arg, .. }] if arg == "entity_id[1]"));
    f.refused(
        "ha_call_service",
        json!({"domain": ["light"], "service": "turn_on"}),
    );
    f.refused("ha_get_state", json!({"entity_id": {"0": "sensor.x"}}));
    f.refused("ha_get_state", json!({"entity_id": null}));
}

#[test]
fn targets_inside_data_are_refused() {
    let f = fixture();
    for key in [
        "entity_id",
        "area_id",
        "device_id",
        "floor_id",
        "label_id",
        "target",
    ] {
        let errs = f.refused(
            "ha_call_service",
            json!({"domain": "light", "service": "turn_on", "entity_id": "light.kitchen", "data": {key: "lock.front_door"}}),
        );
        assert!(
            matches!(&errs[..], [ArgError::ForbiddenKey { key: k, .. }] if k == key),
            "{key}: {errs:?}"
        );
    }
    // Declared arguments cannot be overridden through data either.
    for key in ["domain", "service"] {
        f.refused(
            "ha_call_service",
            json!({"domain": "light", "service": "turn_on", "entity_id": "light.kitchen", "data": {key: "lock"}}),
        );
    }
}

#[test]
fn glob_characters_in_values_are_refused() {
    let f = fixture();
    for entity in [
        "light.*",
        "light.kitch?n",
        "light.[k]itchen",
        "*",
        "light.{kitchen}",
        "light.!x",
        "light.kitchen\\",
    ] {
        f.refused(
            "ha_call_service",
            json!({"domain": "light", "service": "turn_on", "entity_id": entity}),
        );
        f.refused("ha_get_state", json!({ "entity_id": entity }));
    }
    f.refused("ha_fire_event", json!({"event_type": "*"}));
}

#[test]
fn fake_second_arguments_are_refused() {
    let f = fixture();
    let attempts = [
        json!({"domain": "light", "service": "turn_on, light.kitchen) ha_call_service(lock.unlock", "entity_id": "lock.front_door"}),
        json!({"domain": "light.turn_on, light.kitchen)", "service": "x"}),
        json!({"domain": "light", "service": "turn_on", "entity_id": "light.kitchen, lock.front_door"}),
        json!({"domain": "light", "service": "turn_on", "entity_id": "light.kitchen)"}),
        json!({"domain": "light", "service": "turn_on", "entity_id": "light.kitchen\n"}),
        json!({"domain": "light", "service": "turn_on", "entity_id": "light.kitchen\u{0}"}),
        json!({"domain": "light", "service": "turn_on", "entity_id": " light.kitchen"}),
        json!({"domain": "Light", "service": "turn_on", "entity_id": "light.kitchen"}),
    ];
    for args in attempts {
        f.refused("ha_call_service", args);
    }
}

#[test]
fn unknown_tools_are_denied_with_suggestions() {
    let f = fixture();
    let d = f.decide("ha_call_servce", json!({}));
    assert_eq!(d.action, Action::Deny);
    assert!(d.is_invalid_request());
    match &d.reason {
        Reason::UnknownTool { tool, nearest } => {
            assert_eq!(tool, "ha_call_servce");
            assert_eq!(nearest.first().map(String::as_str), Some("ha_call_service"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        d.reason
            .to_string()
            .starts_with("unknown tool `ha_call_servce`; the nearest tools are: ha_call_service")
    );
}
