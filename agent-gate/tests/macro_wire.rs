//! Wire snapshots of the generated Home Assistant methods: every method is
//! called against a real WebSocket gateway on 127.0.0.1 that records the
//! exact `tool_request` frame (pinned by insta) and answers with a scripted
//! reply, which the method returns as its typed result. Also: bad arguments
//! fail locally without sending anything, and `check_manifest` reports drift.

#[path = "macro_fixtures/gateway.rs"]
mod gateway;

use std::collections::BTreeSet;

use agent_gate::ha::{self, HaGetStateArgs};
use agent_gate::prelude::*;
use agent_gate::tools::ManifestDrift;
use agent_gate_manifest::Manifest;
use gateway::{Script, ScriptedGateway};
use serde_json::{Value, json};

fn state(entity_id: &str, value: &str) -> Value {
    json!({
        "entity_id": entity_id,
        "state": value,
        "attributes": {"friendly_name": "Kitchen"},
        "last_changed": "2026-11-21T08:00:00+00:00",
        "last_updated": "2026-11-21T08:00:01+00:00",
        "context": {"id": "01JD", "parent_id": null, "user_id": null}
    })
}

fn script() -> Script {
    let mut s = Script::default();
    let mut put = |tool: &str, data: Value| {
        s.data.insert(tool.to_owned(), data);
    };
    put("ha_get_state", state("sensor.kitchen", "21.5"));
    put(
        "ha_get_states",
        json!({"states": [state("sensor.kitchen", "21.5"), state("light.bedroom", "off")]}),
    );
    put(
        "ha_get_services",
        json!({"services": [{"domain": "light", "services": {"turn_on": {}}}]}),
    );
    put(
        "ha_get_history",
        json!({"history": [[state("sensor.kitchen", "21.0"), state("sensor.kitchen", "21.5")]]}),
    );
    put(
        "ha_get_logbook",
        json!({"logbook": [{"name": "Front door", "message": "was locked", "entity_id": "lock.front_door"}]}),
    );
    put(
        "ha_get_config",
        json!({"config": {"location_name": "Home", "version": "2026.11.0"}}),
    );
    put("ha_render_template", json!({"result": "21.5"}));
    put(
        "ha_get_areas",
        json!({"areas": [{"area_id": "bedroom", "name": "Bedroom", "entities": ["light.bedroom"]}]}),
    );
    put(
        "ha_get_calendars",
        json!({"calendars": [{"name": "Family", "entity_id": "calendar.family"}]}),
    );
    put(
        "ha_get_calendar_events",
        json!({"events": [{"start": {"dateTime": "2026-11-21T09:00:00+00:00"}, "end": {"dateTime": "2026-11-21T10:00:00+00:00"}, "summary": "Dentist"}]}),
    );
    put(
        "ha_call_service",
        json!({"result": [state("light.bedroom", "on")]}),
    );
    put(
        "ha_fire_event",
        json!({"message": "Event agent_note fired."}),
    );
    s
}

/// Takes the next recorded frame and pins it as `wire_<tool>`.
async fn pin(gw: &mut ScriptedGateway, tool: &str, seen: &mut BTreeSet<String>) {
    let frame = gw.next_frame().await;
    let parsed: Value = serde_json::from_str(&frame).unwrap();
    assert_eq!(parsed["params"]["tool"], json!(tool), "{frame}");
    insta::assert_snapshot!(format!("wire_{tool}"), frame);
    seen.insert(tool.to_owned());
}

#[tokio::test]
async fn every_ha_method_sends_its_snapshotted_frame_and_returns_the_typed_result() {
    let mut gw = ScriptedGateway::start(script()).await;
    let client = gw.client().await;
    let mut seen = BTreeSet::new();

    let s: State = client
        .ha_get_state("sensor.kitchen")
        .request_id("wire-1")
        .await
        .unwrap();
    assert_eq!(s.entity_id, "sensor.kitchen");
    assert_eq!(s.state, "21.5");
    assert_eq!(s.attributes["friendly_name"], json!("Kitchen"));
    assert_eq!(s.last_changed, "2026-11-21T08:00:00+00:00");
    assert_eq!(s.last_updated, "2026-11-21T08:00:01+00:00");
    assert_eq!(s.context.as_ref().unwrap()["id"], json!("01JD"));
    pin(&mut gw, "ha_get_state", &mut seen).await;

    let all: Vec<State> = client.ha_get_states().request_id("wire-2").await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].entity_id, "light.bedroom");
    pin(&mut gw, "ha_get_states", &mut seen).await;

    let services: Value = client.ha_get_services().request_id("wire-3").await.unwrap();
    assert_eq!(services[0]["domain"], json!("light"));
    pin(&mut gw, "ha_get_services", &mut seen).await;

    let history = client
        .ha_get_history(["sensor.kitchen", "light.bedroom"])
        .start_time("2026-11-20T08:00:00+00:00")
        .end_time("2026-11-21")
        .minimal_response(true)
        .no_attributes(true)
        .request_id("wire-4")
        .await
        .unwrap();
    assert_eq!(history[0][1]["state"], json!("21.5"));
    pin(&mut gw, "ha_get_history", &mut seen).await;

    let entries = client
        .ha_get_logbook()
        .entity_id("lock.front_door")
        .request_id("wire-5")
        .await
        .unwrap();
    assert_eq!(entries[0]["message"], json!("was locked"));
    pin(&mut gw, "ha_get_logbook", &mut seen).await;

    let config = client.ha_get_config().request_id("wire-6").await.unwrap();
    assert_eq!(config["location_name"], json!("Home"));
    pin(&mut gw, "ha_get_config", &mut seen).await;

    let text = client
        .ha_render_template("{{ states(entity) }}")
        .variables(json!({"entity": "sensor.kitchen"}))
        .request_id("wire-7")
        .await
        .unwrap();
    assert_eq!(text, json!("21.5"));
    pin(&mut gw, "ha_render_template", &mut seen).await;

    let areas = client.ha_get_areas().request_id("wire-10").await.unwrap();
    assert_eq!(areas[0]["entities"][0], json!("light.bedroom"));
    pin(&mut gw, "ha_get_areas", &mut seen).await;

    let calendars = client
        .ha_get_calendars()
        .request_id("wire-11")
        .await
        .unwrap();
    assert_eq!(calendars[0]["entity_id"], json!("calendar.family"));
    pin(&mut gw, "ha_get_calendars", &mut seen).await;

    let events = client
        .ha_get_calendar_events(
            "calendar.family",
            "2026-11-21T00:00:00+00:00",
            "2026-11-22T00:00:00+00:00",
        )
        .request_id("wire-12")
        .await
        .unwrap();
    assert_eq!(events[0]["summary"], json!("Dentist"));
    pin(&mut gw, "ha_get_calendar_events", &mut seen).await;

    let changed = client
        .ha_call_service("light", "turn_on")
        .entity_id("light.bedroom")
        .data(json!({"brightness": 128, "transition": 2}))
        .request_id("wire-8")
        .await
        .unwrap();
    assert_eq!(changed[0]["state"], json!("on"));
    pin(&mut gw, "ha_call_service", &mut seen).await;

    let fired = client
        .ha_fire_event("agent_note")
        .event_data(json!({"text": "hello"}))
        .request_id("wire-9")
        .await
        .unwrap();
    assert_eq!(fired["message"], json!("Event agent_note fired."));
    pin(&mut gw, "ha_fire_event", &mut seen).await;

    let all_tools: BTreeSet<String> = ha::TOOL_NAMES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        seen, all_tools,
        "every generated method has a wire snapshot"
    );
}

#[tokio::test]
async fn call_with_an_args_struct_sends_the_same_frame() {
    let mut gw = ScriptedGateway::start(script()).await;
    let client = gw.client().await;
    let args = HaGetStateArgs {
        entity_id: "sensor.kitchen".into(),
    };
    let s = client.call(args).request_id("wire-1").await.unwrap();
    assert_eq!(s.state, "21.5");
    let frame = gw.next_frame().await;
    insta::assert_snapshot!("wire_ha_get_state", frame);
}

#[tokio::test]
async fn bad_arguments_fail_locally_with_the_gateways_message_and_send_nothing() {
    let mut gw = ScriptedGateway::start(script()).await;
    let client = gw.client().await;

    // What the gateway itself would answer, from its own copy of the manifest.
    let gateway_manifest = Manifest::load(&[concat!(env!("CARGO_MANIFEST_DIR"), "/tools.toml")])
        .unwrap()
        .manifest;
    let gateway_says = gateway_manifest
        .tool("ha_get_state")
        .unwrap()
        .validate_args(json!({"entity_id": "sensor.*"}).as_object().unwrap())
        .unwrap_err();

    let err = client.ha_get_state("sensor.*").await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Validation);
    assert_eq!(err.message(), gateway_says.to_string());
    assert!(err.message().contains("must match the pattern"), "{err}");
    assert_eq!(err.details(), Some(&gateway_says.details()));

    // validate() says the same without a client.
    let local = HaGetStateArgs {
        entity_id: "sensor.*".into(),
    }
    .validate()
    .unwrap_err();
    assert_eq!(local.message(), gateway_says.to_string());

    // A target smuggled into service data, and data that is not an object.
    let err = client
        .ha_call_service("light", "turn_on")
        .data(json!({"entity_id": "lock.front_door"}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Validation);
    assert!(err.message().contains("entity_id"), "{err}");
    let err = client
        .ha_call_service("light", "turn_on")
        .data(5)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Validation);
    assert!(err.message().contains("must be an object"), "{err}");
    let err = client
        .ha_get_history("sensor.kitchen")
        .start_time("yesterday")
        .await
        .unwrap_err();
    assert!(err.message().contains("start_time"), "{err}");

    // Nothing of the above reached the gateway: the next frame it records is
    // the valid call that follows.
    client.ha_get_config().request_id("after").await.unwrap();
    let frame: Value = serde_json::from_str(&gw.next_frame().await).unwrap();
    assert_eq!(frame["params"]["tool"], json!("ha_get_config"));
    assert_eq!(frame["params"]["request_id"], json!("after"));
}

#[tokio::test]
async fn a_response_that_does_not_match_its_type_is_a_protocol_error() {
    let mut s = script();
    s.data.insert(
        "ha_get_state".into(),
        json!({"entity_id": "sensor.kitchen"}),
    );
    s.data.insert("ha_get_states".into(), json!({"wrong": []}));
    let gw = ScriptedGateway::start(s).await;
    let client = gw.client().await;
    let err = client.ha_get_state("sensor.kitchen").await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Protocol);
    assert!(err.message().contains("declared response type"), "{err}");
    let err = client.ha_get_states().await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Protocol);
    assert!(err.message().contains("no `states` key"), "{err}");
}

#[tokio::test]
async fn check_manifest_reports_drift() {
    let manifest = ha::MANIFEST.manifest().unwrap();
    let same: Vec<Value> = manifest.tools().map(|t| t.list_entry(manifest)).collect();
    let gw = ScriptedGateway::start(Script {
        tools: same.clone(),
        ..Script::default()
    })
    .await;
    let drift = ha::check_manifest(&gw.client().await).await.unwrap();
    assert!(drift.is_empty(), "{drift}");
    assert_eq!(drift, ManifestDrift::default());

    // The gateway dropped one tool, changed another and added a third.
    let mut served: Vec<Value> = same
        .into_iter()
        .filter(|t| t["name"] != json!("ha_fire_event"))
        .collect();
    for t in &mut served {
        if t["name"] == json!("ha_get_state") {
            t["input_schema"]["properties"]["entity_id"]["pattern"] = json!("^.*$");
        }
    }
    served.push(json!({"name": "ha_delete_everything", "description": "x", "service": "homeassistant", "args": {}, "input_schema": {}}));
    let gw = ScriptedGateway::start(Script {
        tools: served,
        ..Script::default()
    })
    .await;
    let drift = ha::check_manifest(&gw.client().await).await.unwrap();
    assert_eq!(drift.missing, vec!["ha_fire_event".to_owned()]);
    assert_eq!(drift.extra, vec!["ha_delete_everything".to_owned()]);
    assert_eq!(drift.changed.len(), 1);
    assert_eq!(drift.changed[0].name, "ha_get_state");
    assert_eq!(
        drift.changed[0].served["properties"]["entity_id"]["pattern"],
        json!("^.*$")
    );
    assert!(!drift.is_compatible());
    insta::assert_snapshot!("drift_display", drift.to_string());
}
