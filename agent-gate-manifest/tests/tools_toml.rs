//! The repository's `tools.toml`: it loads, and every Home Assistant tool
//! validates, signs and maps onto HTTP as the upstream gateway does.

use agent_gate_manifest::{ArgError, Decode, Manifest, Method, Tool};
use serde_json::{Map, Value, json};

const TOOLS_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools.toml");

fn manifest() -> Manifest {
    let loaded = Manifest::load(&[TOOLS_TOML]).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    loaded.manifest
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn tool<'m>(m: &'m Manifest, name: &str) -> &'m Tool {
    m.tool(name).unwrap_or_else(|| panic!("no tool {name}"))
}

#[test]
fn all_tools_in_order() {
    let m = manifest();
    let names: Vec<&str> = m.tools().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ha_get_state",
            "ha_get_states",
            "ha_get_services",
            "ha_get_history",
            "ha_get_logbook",
            "ha_get_config",
            "ha_render_template",
            "ha_get_areas",
            "ha_get_calendars",
            "ha_get_calendar_events",
            "ha_call_service",
            "ha_fire_event",
        ]
    );
    assert!(m.tools().all(|t| t.service == "homeassistant"));
    assert_eq!(m.services().count(), 1);
    let state = m.type_def("State").unwrap();
    let fields: Vec<&str> = state.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        fields,
        [
            "entity_id",
            "state",
            "attributes",
            "last_changed",
            "last_updated",
            "last_reported",
            "context"
        ]
    );
    let resp = tool(&m, "ha_get_states").response.as_ref().unwrap();
    assert_eq!((resp.name.as_str(), resp.list), ("State", true));
    let resp = tool(&m, "ha_get_state").response.as_ref().unwrap();
    assert_eq!((resp.name.as_str(), resp.list), ("State", false));
    // positional order of generated parameters = declaration order
    let args: Vec<&str> = tool(&m, "ha_call_service")
        .args
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(
        args,
        ["domain", "service", "entity_id", "data", "return_response"]
    );
    // the location points at the tool's header
    let t = tool(&m, "ha_call_service");
    let text = std::fs::read_to_string(TOOLS_TOML).unwrap();
    assert_eq!(&text[t.location.span.clone()], "[tools.ha_call_service]");
    assert!(t.location.line > 1);
}

#[test]
fn signatures() {
    let m = manifest();
    let cases = [
        (
            "ha_call_service",
            json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom"}),
            "ha_call_service(light.turn_on, light.bedroom)",
        ),
        (
            "ha_call_service",
            json!({"domain": "light", "service": "turn_on", "data": {"brightness": 128}}),
            "ha_call_service(light.turn_on, )",
        ),
        (
            "ha_get_state",
            json!({"entity_id": "sensor.kitchen"}),
            "ha_get_state(sensor.kitchen)",
        ),
        ("ha_get_states", json!({}), "ha_get_states"),
        ("ha_get_services", json!({}), "ha_get_services"),
        ("ha_get_config", json!({}), "ha_get_config"),
        (
            "ha_get_history",
            json!({"entity_id": "sensor.x", "start_time": "2026-11-20T08:00:00+00:00"}),
            "ha_get_history(sensor.x)",
        ),
        ("ha_get_logbook", json!({}), "ha_get_logbook()"),
        (
            "ha_get_logbook",
            json!({"entity_id": "lock.front_door"}),
            "ha_get_logbook(lock.front_door)",
        ),
        (
            "ha_render_template",
            json!({"template": "{{ states('sensor.x') }}"}),
            "ha_render_template",
        ),
        (
            "ha_fire_event",
            json!({"event_type": "agent_note", "event_data": {"text": "hi, (all) *"}}),
            "ha_fire_event(agent_note)",
        ),
    ];
    for (name, args, expected) in cases {
        assert_eq!(tool(&m, name).signature(&obj(args)).unwrap(), expected);
    }
}

#[test]
fn entity_patterns_accept_real_ids_and_reject_globs() {
    let m = manifest();
    let t = tool(&m, "ha_get_state");
    for good in [
        "sensor.0x1234_temp",
        "light.living_room_2",
        "sensor.1st_floor_temperature",
        "binary_sensor.door",
    ] {
        t.validate_args(&obj(json!({ "entity_id": good })))
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in [
        "light.*",
        "light.a?",
        "light.[ab]",
        "light.a\n",
        "light.a\t",
        "light.{a,b}",
        "light.(a)",
        "light.a,lock.b",
        "light.a\\b",
        "light.!a",
        "Light.A",
        "light",
        "",
    ] {
        let err = t
            .validate_args(&obj(json!({ "entity_id": bad })))
            .expect_err(bad);
        assert_eq!(err.errors.len(), 1, "{bad:?}: {err}");
        assert!(
            matches!(err.errors[0], ArgError::PatternMismatch { .. }),
            "{bad:?}: {err}"
        );
    }
    let cs = tool(&m, "ha_call_service");
    for bad in ["light*", "li?ht", "[l]", "l!", "l\u{0}"] {
        let err = cs
            .validate_args(&obj(json!({"domain": bad, "service": "turn_on"})))
            .expect_err(bad);
        assert_eq!(err.errors[0].arg(), "domain");
    }
}

#[test]
fn validate_args_refuses_every_bypass() {
    let m = manifest();
    let cs = tool(&m, "ha_call_service");
    let ok = json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom", "data": {"brightness": 128}});
    cs.validate_args(&obj(ok)).unwrap();

    let refused = |t: &Tool, args: Value| -> Vec<String> {
        match t.validate_args(&obj(args.clone())) {
            Ok(()) => panic!("accepted {args}"),
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        }
    };

    // undeclared argument: never forwarded
    let e = refused(
        cs,
        json!({"domain": "light", "service": "turn_on", "entity": "light.x"}),
    );
    assert_eq!(
        e,
        ["tool `ha_call_service` has no argument `entity`; did you mean `entity_id`?"]
    );
    let e = refused(tool(&m, "ha_get_states"), json!({"x": 1}));
    assert_eq!(
        e,
        ["tool `ha_get_states` has no argument `x`; remove it: this tool takes no arguments"]
    );
    // a list where a string is expected: never coerced (entity_id takes a list: `or_list`)
    cs.validate_args(&obj(
        json!({"domain": "light", "service": "turn_on", "entity_id": ["light.a", "light.b"]}),
    ))
    .unwrap();
    let e = refused(
        cs,
        json!({"domain": ["light", "switch"], "service": "turn_on", "entity_id": "light.a"}),
    );
    assert_eq!(
        e,
        [
            "argument `domain` of tool `ha_call_service` must be a string, got an array of 2 items; pass a single value, one call per value"
        ]
    );
    // targets smuggled in service data
    for key in [
        "entity_id",
        "area_id",
        "device_id",
        "floor_id",
        "label_id",
        "target",
    ] {
        let e = refused(
            cs,
            json!({"domain": "light", "service": "turn_on", "data": {key: "x"}}),
        );
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with(&format!(
                "argument `data` of tool `ha_call_service` may not contain the key `{key}`"
            )),
            "{}",
            e[0]
        );
    }
    // merged data may not override declared arguments
    let e = refused(
        cs,
        json!({"domain": "light", "service": "turn_on", "data": {"domain": "lock"}}),
    );
    assert_eq!(
        e,
        [
            "argument `data` of tool `ha_call_service` may not contain the key `domain`; `domain` is an argument of the tool: pass it as that argument"
        ]
    );
    let fe = tool(&m, "ha_fire_event");
    let e = refused(
        fe,
        json!({"event_type": "x", "event_data": {"event_type": "y"}}),
    );
    assert_eq!(e.len(), 1);
    // glob characters in signature values, even with a permissive pattern
    let e = refused(
        cs,
        json!({"domain": "light", "service": "turn_on", "entity_id": "light.*"}),
    );
    assert!(e[0].contains("must match the pattern"), "{e:?}");
    // missing required
    let e = refused(cs, json!({"service": "turn_on"}));
    assert_eq!(
        e,
        [
            "tool `ha_call_service` requires argument `domain` (a string matching `^[a-z0-9_]+$`); add it"
        ]
    );
    // wrong scalar types
    let e = refused(cs, json!({"domain": 1, "service": true}));
    assert_eq!(e.len(), 2);
    let e = refused(
        cs,
        json!({"domain": "light", "service": "turn_on", "data": "brightness=1"}),
    );
    assert!(e[0].contains("must be an object, got a string"), "{e:?}");
    let e = refused(
        cs,
        json!({"domain": "light", "service": "turn_on", "entity_id": null}),
    );
    assert!(
        e[0].ends_with("got null; omit an optional argument instead of sending null"),
        "{e:?}"
    );
    // several problems are all reported
    let e = refused(cs, json!({"domain": "Light", "service": ["a"], "zzz": 1}));
    assert_eq!(e.len(), 3, "{e:?}");
}

#[test]
fn http_requests_for_every_tool() {
    let m = manifest();
    let req = |name: &str, args: Value| tool(&m, name).http_request(&obj(args)).unwrap();

    let r = req("ha_get_state", json!({"entity_id": "sensor.kitchen"}));
    assert_eq!(
        (r.method, r.path_and_query().as_str()),
        (Method::Get, "/api/states/sensor.kitchen")
    );
    assert_eq!(r.body, None);
    assert_eq!(r.wrap, None);

    let r = req("ha_get_states", json!({}));
    assert_eq!(
        (r.method, r.path_and_query().as_str()),
        (Method::Get, "/api/states")
    );
    assert_eq!(r.wrap.as_deref(), Some("states"));

    let r = req("ha_get_services", json!({}));
    assert_eq!(r.path_and_query(), "/api/services");
    assert_eq!(r.wrap.as_deref(), Some("services"));

    let r = req(
        "ha_get_history",
        json!({"entity_id": "sensor.x", "start_time": "2026-11-20T08:00:00+00:00"}),
    );
    assert_eq!(
        r.path_and_query(),
        "/api/history/period/2026-11-20T08%3A00%3A00%2B00%3A00?filter_entity_id=sensor.x"
    );
    assert_eq!(
        r.query,
        [("filter_entity_id".to_owned(), "sensor.x".to_owned())]
    );
    let r = req("ha_get_history", json!({"entity_id": "sensor.x"}));
    assert_eq!(r.path, "/api/history/period");
    assert_eq!(
        r.path_and_query(),
        "/api/history/period?filter_entity_id=sensor.x"
    );
    let r = req(
        "ha_get_history",
        json!({"entity_id": "sensor.x", "end_time": "2026-11-21T00:00:00Z"}),
    );
    assert_eq!(
        r.path_and_query(),
        "/api/history/period?filter_entity_id=sensor.x&end_time=2026-11-21T00%3A00%3A00Z"
    );
    assert_eq!(r.wrap.as_deref(), Some("history"));

    // Several entities: one comma-separated `filter_entity_id`, as Home Assistant takes it;
    // flags are present without a value when true and absent when false.
    let r = req(
        "ha_get_history",
        json!({"entity_id": ["sensor.x", "light.y"], "minimal_response": true, "no_attributes": false}),
    );
    assert_eq!(
        r.path_and_query(),
        "/api/history/period?filter_entity_id=sensor.x%2Clight.y&minimal_response"
    );
    let r = req(
        "ha_get_history",
        json!({"entity_id": "sensor.x", "minimal_response": false, "no_attributes": true}),
    );
    assert_eq!(
        r.path_and_query(),
        "/api/history/period?filter_entity_id=sensor.x&no_attributes"
    );

    let r = req("ha_get_logbook", json!({}));
    assert_eq!(r.path_and_query(), "/api/logbook");
    let r = req(
        "ha_get_logbook",
        json!({"entity_id": "lock.front_door", "start_time": "2026-11-20"}),
    );
    assert_eq!(
        r.path_and_query(),
        "/api/logbook/2026-11-20?entity=lock.front_door"
    );
    assert_eq!(r.wrap.as_deref(), Some("logbook"));

    let r = req("ha_get_config", json!({}));
    assert_eq!(
        (r.method, r.path.as_str(), r.wrap.as_deref()),
        (Method::Get, "/api/config", Some("config"))
    );

    let r = req("ha_render_template", json!({"template": "{{ 1 + 1 }}"}));
    assert_eq!((r.method, r.path.as_str()), (Method::Post, "/api/template"));
    assert_eq!(r.body, Some(json!({"template": "{{ 1 + 1 }}"})));
    assert_eq!(
        (r.decode, r.wrap.as_deref()),
        (Decode::Text, Some("result"))
    );

    let r = req(
        "ha_call_service",
        json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom", "data": {"brightness": 128, "color_name": "red"}}),
    );
    assert_eq!(
        (r.method, r.path.as_str()),
        (Method::Post, "/api/services/light/turn_on")
    );
    assert_eq!(
        r.body,
        Some(json!({"entity_id": "light.bedroom", "brightness": 128, "color_name": "red"}))
    );
    assert_eq!(r.wrap.as_deref(), Some("result"));
    assert_eq!(r.flags, Vec::<String>::new());
    assert_eq!(
        r.error_help.as_deref(),
        Some(
            "Home Assistant refused service light.turn_on on entity_id light.bedroom with data {\"brightness\":128,\"color_name\":\"red\"}; ha_get_services lists each service and the data it takes."
        )
    );
    // `return_response`: the flag only when true (Home Assistant looks only at its
    // presence), and then the answer `{changed_states, service_response}` is kept whole.
    let r = req(
        "ha_call_service",
        json!({"domain": "weather", "service": "get_forecasts", "entity_id": ["weather.a", "weather.b"], "data": {"type": "daily"}, "return_response": true}),
    );
    assert_eq!(
        r.path_and_query(),
        "/api/services/weather/get_forecasts?return_response"
    );
    assert_eq!(
        r.body,
        Some(json!({"entity_id": ["weather.a", "weather.b"], "type": "daily"}))
    );
    assert_eq!(r.wrap, None);
    let r = req(
        "ha_call_service",
        json!({"domain": "light", "service": "turn_on", "return_response": false}),
    );
    assert_eq!(r.path_and_query(), "/api/services/light/turn_on");
    assert_eq!(r.wrap.as_deref(), Some("result"));
    assert_eq!(
        r.error_help.as_deref(),
        Some(
            "Home Assistant refused service light.turn_on on entity_id (none) with data (none); ha_get_services lists each service and the data it takes."
        )
    );

    let r = req(
        "ha_render_template",
        json!({"template": "{{ room }}", "variables": {"room": "kitchen"}}),
    );
    assert_eq!(
        r.body,
        Some(json!({"template": "{{ room }}", "variables": {"room": "kitchen"}}))
    );
    let r = req("ha_get_areas", json!({}));
    assert_eq!((r.method, r.path.as_str()), (Method::Post, "/api/template"));
    let template = r
        .body
        .as_ref()
        .and_then(|b| b["template"].as_str())
        .unwrap();
    assert!(template.contains("area_entities(area_id)"), "{template}");
    assert_eq!((r.decode, r.wrap.as_deref()), (Decode::Json, Some("areas")));
    let r = req("ha_get_calendars", json!({}));
    assert_eq!(
        (r.path_and_query().as_str(), r.wrap.as_deref()),
        ("/api/calendars", Some("calendars"))
    );
    let r = req(
        "ha_get_calendar_events",
        json!({"entity_id": "calendar.family", "start": "2026-11-20T00:00:00Z", "end": "2026-11-21"}),
    );
    assert_eq!(
        r.path_and_query(),
        "/api/calendars/calendar.family?start=2026-11-20T00%3A00%3A00Z&end=2026-11-21"
    );
    assert_eq!(r.wrap.as_deref(), Some("events"));

    let r = req(
        "ha_call_service",
        json!({"domain": "homeassistant", "service": "restart"}),
    );
    assert_eq!(r.path, "/api/services/homeassistant/restart");
    assert_eq!(r.body, Some(json!({})));

    let r = req(
        "ha_fire_event",
        json!({"event_type": "agent_note", "event_data": {"text": "hello"}}),
    );
    assert_eq!(
        (r.method, r.path.as_str()),
        (Method::Post, "/api/events/agent_note")
    );
    assert_eq!(r.body, Some(json!({"text": "hello"})));
    assert_eq!(r.decode, Decode::Json);
    let r = req("ha_fire_event", json!({"event_type": "agent_note"}));
    assert_eq!(r.body, Some(json!({})));

    // invalid arguments never produce a request
    let e = tool(&m, "ha_get_state")
        .http_request(&obj(json!({"entity_id": "sensor.x/../../config"})))
        .unwrap_err();
    assert_eq!(e.errors[0].arg(), "entity_id");
}

#[test]
fn input_schemas() {
    let m = manifest();
    for t in m.tools() {
        insta::assert_json_snapshot!(format!("input_schema_{}", t.name), t.input_schema());
    }
    insta::assert_json_snapshot!(
        "list_entry_ha_call_service",
        tool(&m, "ha_call_service").list_entry(&m)
    );
}

#[test]
fn output_schemas_only_where_the_output_always_has_that_shape() {
    let m = manifest();
    let state = tool(&m, "ha_get_state").output_schema(&m).unwrap();
    assert_eq!(
        state["required"],
        json!([
            "entity_id",
            "state",
            "attributes",
            "last_changed",
            "last_updated"
        ])
    );
    let states = tool(&m, "ha_get_states").output_schema(&m).unwrap();
    assert_eq!(states["required"], json!(["states"]));
    assert_eq!(states["properties"]["states"]["type"], "array");
    assert_eq!(
        states["properties"]["states"]["items"]["required"],
        json!([
            "entity_id",
            "state",
            "attributes",
            "last_changed",
            "last_updated"
        ])
    );
    // No response type declared: nothing to promise.
    assert_eq!(tool(&m, "ha_call_service").output_schema(&m), None);
    assert_eq!(tool(&m, "ha_get_logbook").output_schema(&m), None);
    // The list entry carries it, and the hints as annotations.
    let entry = tool(&m, "ha_get_state").list_entry(&m);
    assert_eq!(entry["output_schema"], state);
    assert_eq!(
        entry["annotations"],
        json!({"read_only": true, "idempotent": true, "open_world": false})
    );
}

#[test]
fn a_wrap_an_argument_can_turn_off_gives_no_output_schema() {
    let m = Manifest::from_str(
        r#"
version = 1

[services.svc]
description = "A service."

[types.Answer]
description = "An answer."
[types.Answer.fields.value]
type = "string"
description = "The value."

[tools.ask]
service = "svc"
description = "Ask."
response = "Answer"
http = { method = "POST", path = "/ask", flags = { raw = "raw" }, wrap = "answer", wrap_unless = "raw" }
[tools.ask.args.raw]
type = "boolean"
required = false
description = "Return the answer as it is."
"#,
        "ask.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .manifest;
    assert_eq!(tool(&m, "ask").output_schema(&m), None);
}

#[test]
fn whole_manifest_schema() {
    let m = manifest();
    let schema = m.json_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["oneOf"].as_array().unwrap().len(), 12);
    for t in m.tools() {
        assert_eq!(schema["$defs"][&t.name], t.input_schema());
    }
    insta::assert_json_snapshot!("type_State", schema["$defs"]["State"]);
}

#[test]
fn hash_is_stable_and_semantic() {
    let m = manifest();
    let h = m.hash();
    assert_eq!(h.len(), 64);
    assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(manifest().hash(), h);
    // comments and layout don't matter; meaning does
    let text = std::fs::read_to_string(TOOLS_TOML).unwrap();
    let reformatted = format!("# a comment\n\n{text}\n");
    let m2 = Manifest::from_str(&reformatted, "other.toml")
        .unwrap()
        .manifest;
    assert_eq!(m2.hash(), h);
    let changed = text.replace(
        "Get the states of all entities.",
        "Get the states of every entity.",
    );
    let m3 = Manifest::from_str(&changed, "tools.toml").unwrap().manifest;
    assert_ne!(m3.hash(), h);
}

#[test]
fn nearest_tools_first() {
    let m = manifest();
    assert_eq!(
        m.nearest_tools("ha_get_stat", 2),
        ["ha_get_state", "ha_get_states"]
    );
    assert_eq!(m.nearest_tools("ha_call_servce", 1), ["ha_call_service"]);
    assert_eq!(m.nearest_tools("x", 100).len(), 12);
}
