//! The policy judges every entity a call can touch: a corpus of calls that reach a lock
//! through some other service or key, each sent through a real WebSocket as an agent would,
//! under a policy that denies locks and allows everything else. Every one must be refused
//! (-32600) or denied (-32003), with the simulated lock still locked and no service call
//! reaching Home Assistant. The simulator runs `scene.apply`, `scene.create`, `group.set`
//! and group expansion the way Home Assistant does, so a call that got through would really
//! unlock the door.

mod server_support;

use std::path::Path;

use agent_gate_sim::home_assistant::{DEFAULT_TOKEN, Entity, HomeAssistant};
use serde_json::{Value, json};
use server_support::{Harness, Options};

/// Locks denied, everything else allowed without asking: the strictest test of the targets,
/// since nothing but a lock rule stands between these calls and the door.
const DENY_LOCKS_ALLOW_REST: &str = r#"
rules:
  - pattern: "ha_call_service(lock.*)"
    action: deny
    description: "Lock control is always denied"
  - pattern: "ha_call_service(*, lock.*)"
    action: deny
    description: "No service may target a lock"
defaults:
  - pattern: "*"
    action: allow
"#;

/// Only the domain rule: `homeassistant.*` on a lock must meet it through dispatch.
const DOMAIN_RULE_ONLY: &str = r#"
rules:
  - pattern: "ha_call_service(lock.*)"
    action: deny
    description: "Lock control is always denied"
defaults:
  - pattern: "*"
    action: allow
"#;

fn home() -> HomeAssistant {
    HomeAssistant::builder()
        .token(DEFAULT_TOKEN)
        .demo_entities()
        .entity(Entity::new("scene.movie_night", "unknown").name("Movie night"))
        .entity(
            Entity::new("group.downstairs", "on")
                .attribute("entity_id", json!(["light.kitchen", "light.living_room"])),
        )
        .entity(Entity::new("script.good_night", "off").name("Good night"))
        .build()
        .expect("the simulator builds")
}

fn call(domain: &str, service: &str, extra: Value) -> Value {
    let mut args = json!({"domain": domain, "service": service});
    if let (Value::Object(args), Value::Object(extra)) = (&mut args, extra) {
        args.extend(extra);
    }
    args
}

/// The corpus: (what it tries, the `ha_call_service` arguments).
fn corpus() -> Vec<(&'static str, Value)> {
    let lock = "lock.front_door";
    vec![
        (
            "scene.apply with the lock in entities",
            call(
                "scene",
                "apply",
                json!({"data": {"entities": {lock: "unlocked"}}}),
            ),
        ),
        (
            "scene.apply with a state object",
            call(
                "scene",
                "apply",
                json!({"data": {"entities": {lock: {"state": "unlocked"}}}}),
            ),
        ),
        (
            "scene.apply with an upper-case id",
            call(
                "scene",
                "apply",
                json!({"data": {"entities": {"LOCK.FRONT_DOOR": "unlocked"}}}),
            ),
        ),
        (
            "scene.apply with a padded id",
            call(
                "scene",
                "apply",
                json!({"data": {"entities": {" lock.front_door ": "unlocked"}}}),
            ),
        ),
        (
            "scene.apply with a Kelvin sign that lower-cases to k",
            call(
                "scene",
                "apply",
                json!({"data": {"entities": {"LOC\u{212a}.FRONT_DOOR": "unlocked"}}}),
            ),
        ),
        (
            "scene.apply with a control character before the id",
            call(
                "scene",
                "apply",
                json!({"data": {"entities": {"\u{1f}lock.front_door": "unlocked"}}}),
            ),
        ),
        (
            "scene.apply beside a light",
            call(
                "scene",
                "apply",
                json!({"data": {"entities": {"light.kitchen": "on", lock: "unlocked"}, "transition": 1}}),
            ),
        ),
        (
            "scene.create with the lock in entities",
            call(
                "scene",
                "create",
                json!({"data": {"scene_id": "sneaky", "entities": {lock: "unlocked"}}}),
            ),
        ),
        (
            "scene.create snapshotting the lock (a list)",
            call(
                "scene",
                "create",
                json!({"data": {"scene_id": "sneaky", "snapshot_entities": [lock]}}),
            ),
        ),
        (
            "scene.create snapshotting the lock (a string)",
            call(
                "scene",
                "create",
                json!({"data": {"scene_id": "sneaky", "snapshot_entities": lock}}),
            ),
        ),
        (
            "group.set with the lock as a member",
            call(
                "group",
                "set",
                json!({"data": {"object_id": "doors", "entities": ["light.kitchen", lock]}}),
            ),
        ),
        (
            "group.set with a comma-separated member list",
            call(
                "group",
                "set",
                json!({"data": {"object_id": "doors", "entities": "light.kitchen, lock.front_door"}}),
            ),
        ),
        (
            "lock.unlock with a list of one",
            call("lock", "unlock", json!({"entity_id": [lock]})),
        ),
        (
            "lock.unlock with the lock among lights",
            call(
                "lock",
                "unlock",
                json!({"entity_id": ["light.kitchen", lock, "light.bedroom"]}),
            ),
        ),
        (
            "lock.unlock with no entity",
            call("lock", "unlock", json!({})),
        ),
        (
            "homeassistant.turn_off on the lock",
            call("homeassistant", "turn_off", json!({"entity_id": lock})),
        ),
        (
            "homeassistant.toggle on a list with the lock",
            call(
                "homeassistant",
                "toggle",
                json!({"entity_id": ["light.kitchen", lock]}),
            ),
        ),
        (
            "homeassistant.turn_on with the lock nested in data",
            call(
                "homeassistant",
                "turn_on",
                json!({"entity_id": "light.kitchen", "data": {"entities": [lock]}}),
            ),
        ),
        (
            "a light service with the lock nested deep in data",
            call(
                "light",
                "turn_on",
                json!({"entity_id": "light.kitchen", "data": {"a": {"b": [{"c": lock}]}}}),
            ),
        ),
        (
            "a light service with the lock as a nested key",
            call(
                "light",
                "turn_on",
                json!({"entity_id": "light.kitchen", "data": {"a": {lock: 1}}}),
            ),
        ),
        (
            "script.turn_on with the lock in variables",
            call(
                "script",
                "turn_on",
                json!({"entity_id": "script.good_night", "data": {"variables": {"door": lock}}}),
            ),
        ),
        (
            "a script called as a service with the lock in its data",
            call(
                "script",
                "good_night",
                json!({"data": {"door": "light.kitchen,lock.front_door"}}),
            ),
        ),
        (
            "entity_id in data",
            call("light", "turn_on", json!({"data": {"entity_id": lock}})),
        ),
        (
            "target with an entity_id in data",
            call(
                "light",
                "turn_on",
                json!({"data": {"target": {"entity_id": lock}}}),
            ),
        ),
        (
            "area_id in data",
            call(
                "homeassistant",
                "turn_off",
                json!({"data": {"area_id": "hallway"}}),
            ),
        ),
        (
            "area_id nested in data",
            call(
                "homeassistant",
                "turn_off",
                json!({"data": {"x": {"area_id": "hallway"}}}),
            ),
        ),
        (
            "device_id nested in data",
            call(
                "homeassistant",
                "turn_off",
                json!({"data": {"x": [{"device_id": "abc123"}]}}),
            ),
        ),
        (
            "floor_id in a nested target",
            call(
                "homeassistant",
                "turn_off",
                json!({"data": {"x": {"target": {"floor_id": "ground"}}}}),
            ),
        ),
        (
            "label_id under an upper-case key",
            call(
                "homeassistant",
                "turn_off",
                json!({"data": {"x": {"LABEL_ID": "doors"}}}),
            ),
        ),
        (
            "entity_id: all",
            call("lock", "unlock", json!({"entity_id": "all"})),
        ),
        (
            "entity_id: all nested in data",
            call(
                "homeassistant",
                "turn_off",
                json!({"data": {"x": {"entity_id": "all"}}}),
            ),
        ),
        (
            "entity_id: none nested in data",
            call(
                "homeassistant",
                "turn_off",
                json!({"data": {"x": {"entity_id": " NONE "}}}),
            ),
        ),
    ]
}

/// Sends every corpus call and returns the descriptions of those that were neither refused
/// nor denied, with the answer.
async fn run_corpus(h: &Harness) -> Vec<String> {
    let mut agent = h.agent().await;
    let mut through = Vec::new();
    for (what, args) in corpus() {
        let answer = agent.tool("ha_call_service", args.clone()).await;
        let code = answer["error"]["code"].as_i64();
        if !matches!(code, Some(-32600) | Some(-32003)) {
            through.push(format!("{what}: {args} -> {answer}"));
        }
    }
    through
}

#[tokio::test]
async fn every_path_to_a_lock_is_refused_or_denied() {
    let options = Options {
        permissions: Some(DENY_LOCKS_ALLOW_REST.to_owned()),
        ..Options::default()
    };
    let h = Harness::start_with_home(options, home()).await;
    assert!(corpus().len() >= 25);
    let through = run_corpus(&h).await;
    assert!(
        through.is_empty(),
        "{} of {} calls got past a policy that denies locks:\n{}",
        through.len(),
        corpus().len(),
        through.join("\n")
    );
    assert_eq!(h.home.state("lock.front_door").unwrap()["state"], "locked");
    assert_eq!(
        h.home.service_call_count(),
        0,
        "a service call reached Home Assistant: {:?}",
        h.home.service_calls()
    );
}

#[tokio::test]
async fn generic_services_meet_the_rules_of_the_entity_s_own_domain() {
    let options = Options {
        permissions: Some(DOMAIN_RULE_ONLY.to_owned()),
        ..Options::default()
    };
    let h = Harness::start_with_home(options, home()).await;
    let mut agent = h.agent().await;
    for (service, entity) in [
        ("turn_off", json!("lock.front_door")),
        ("toggle", json!(["light.kitchen", "lock.front_door"])),
        ("turn_on", json!("LOCK.FRONT_DOOR")),
    ] {
        let answer = agent
            .tool(
                "ha_call_service",
                call("homeassistant", service, json!({"entity_id": entity})),
            )
            .await;
        let code = answer["error"]["code"].as_i64();
        assert!(
            matches!(code, Some(-32003) | Some(-32600)),
            "{service} {entity}: {answer}"
        );
    }
    let answer = agent
        .tool(
            "ha_call_service",
            call(
                "homeassistant",
                "turn_off",
                json!({"entity_id": "lock.front_door"}),
            ),
        )
        .await;
    assert_eq!(answer["error"]["data"]["rule"], "ha_call_service(lock.*)");
    assert_eq!(
        answer["error"]["data"]["signature"],
        "ha_call_service(lock.turn_off, lock.front_door)"
    );
    assert_eq!(h.home.service_call_count(), 0);
    // a generic service on a light is judged as the light's own service too, and allowed
    let answer = agent
        .tool(
            "ha_call_service",
            call(
                "homeassistant",
                "turn_on",
                json!({"entity_id": "light.kitchen"}),
            ),
        )
        .await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
}

/// Runs the corpus under `permissions`: nothing may get through, reach Home Assistant or move
/// the lock.
async fn assert_corpus_denied(permissions: String) {
    let options = Options {
        permissions: Some(permissions),
        ..Options::default()
    };
    let h = Harness::start_with_home(options, home()).await;
    let through = run_corpus(&h).await;
    assert!(through.is_empty(), "{}", through.join("\n"));
    assert_eq!(h.home.state("lock.front_door").unwrap()["state"], "locked");
    assert_eq!(h.home.service_call_count(), 0);
}

#[tokio::test]
async fn the_example_permissions_deny_every_path_to_a_lock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let example = std::fs::read_to_string(root.join("permissions.example.yaml")).unwrap();
    assert_corpus_denied(example).await;
}

#[tokio::test]
async fn the_demo_permissions_deny_every_path_to_a_lock() {
    assert_corpus_denied(agent_gate_gateway::demo::DEMO_PERMISSIONS.to_owned()).await;
}

#[tokio::test]
async fn the_simulator_really_unlocks_through_a_scene() {
    // Without the lock rules, the same scene.apply opens the door: the corpus above is not
    // refused by the simulator but by the gateway.
    let options = Options {
        permissions: Some("defaults:\n  - {pattern: \"*\", action: allow}\n".to_owned()),
        ..Options::default()
    };
    let h = Harness::start_with_home(options, home()).await;
    let mut agent = h.agent().await;
    let answer = agent
        .tool(
            "ha_call_service",
            call(
                "scene",
                "apply",
                json!({"data": {"entities": {"LOCK.Front_Door": "unlocked"}}}),
            ),
        )
        .await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    assert_eq!(
        h.home.state("lock.front_door").unwrap()["state"],
        "unlocked"
    );
    // and a group expands to its members for an entity service
    let answer = agent
        .tool(
            "ha_call_service",
            call("light", "turn_on", json!({"entity_id": "group.downstairs"})),
        )
        .await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    assert_eq!(h.home.state("light.kitchen").unwrap()["state"], "on");
}

#[tokio::test]
async fn several_entities_are_judged_one_by_one_and_listed_to_the_approver() {
    let permissions = r#"
rules:
  - {pattern: "ha_call_service(light.turn_on, light.kitchen)", action: allow}
  - {pattern: "ha_call_service(light.turn_on, light.bedroom)", action: ask, description: "Bedroom needs a human"}
defaults:
  - {pattern: "*", action: deny}
"#;
    let options = Options {
        permissions: Some(permissions.to_owned()),
        ..Options::default()
    };
    let h = Harness::start_with_home(options, home()).await;
    let mut agent = h.agent().await;
    // both allowed: one call, both lights
    let answer = agent
        .tool(
            "ha_call_service",
            call(
                "light",
                "turn_on",
                json!({"entity_id": ["light.kitchen", "light.kitchen"]}),
            ),
        )
        .await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    // one asks: the whole call asks, and the approver sees every entity
    let id = agent
        .tool_with_id(
            "ha_call_service",
            call(
                "light",
                "turn_on",
                json!({"entity_id": ["light.kitchen", "light.bedroom"]}),
            ),
            "two-lights",
        )
        .await;
    let shown = h
        .approver
        .next_request()
        .await
        .expect("the approver is asked");
    assert_eq!(shown.targets, vec!["light.kitchen", "light.bedroom"]);
    assert_eq!(
        shown.signature,
        "ha_call_service(light.turn_on, light.bedroom)"
    );
    assert_eq!(
        shown.rule.as_deref().map(|r| r.contains("light.bedroom")),
        Some(true)
    );
    h.approver.approve(shown.key.clone(), "alice").await;
    let answer = agent.response(id).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    assert_eq!(h.home.state("light.bedroom").unwrap()["state"], "on");
    // one is denied by the default: the whole call is denied, naming the rule
    let answer = agent
        .tool(
            "ha_call_service",
            call(
                "light",
                "turn_on",
                json!({"entity_id": ["light.kitchen", "light.hall"]}),
            ),
        )
        .await;
    assert_eq!(answer["error"]["code"], -32003, "{answer}");
    assert_eq!(answer["error"]["data"]["rule"], "*", "{answer}");
    assert_eq!(
        answer["error"]["data"]["signature"],
        "ha_call_service(light.turn_on, light.hall)"
    );
}

#[tokio::test]
async fn a_policy_denial_says_which_rule_and_why() {
    let options = Options {
        permissions: Some(DENY_LOCKS_ALLOW_REST.to_owned()),
        ..Options::default()
    };
    let mut h = Harness::start_with_home(options, home()).await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id(
            "ha_call_service",
            call("lock", "unlock", json!({"entity_id": "lock.front_door"})),
            "unlock-1",
        )
        .await;
    let answer = agent.response(id).await;
    let error = &answer["error"];
    assert_eq!(error["code"], -32003);
    assert_eq!(
        error["message"],
        "Denied by policy: Lock control is always denied"
    );
    assert_eq!(error["data"]["rule"], "ha_call_service(lock.*)");
    insta::assert_json_snapshot!("policy_denial", error);
    // the same error after a restart, fetched as an undelivered result
    drop(agent);
    h.restart().await;
    let mut agent = h.agent().await;
    let again = agent
        .tool_with_id(
            "ha_call_service",
            call("lock", "unlock", json!({"entity_id": "lock.front_door"})),
            "unlock-1",
        )
        .await;
    let again = agent.response(again).await;
    assert_eq!(&again["error"], error);
}
