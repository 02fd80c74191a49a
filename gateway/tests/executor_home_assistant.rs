//! The HTTP executor against the simulated Home Assistant over real HTTP: every Home
//! Assistant tool of `tools.toml` end to end, URL joining, the four credential kinds,
//! error mapping (401, 404, non-JSON, configured error messages, redirects, timeouts,
//! refused connections), no retries, health checks, and credentials never leaking.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agent_gate_gateway::config::{HealthCheck, Secret, ServiceAuth, ServiceConfig};
use agent_gate_gateway::executor::{ExecutionError, Executor, ExecutorError, HealthStatus};
use agent_gate_manifest::{Manifest, Tool};
use agent_gate_sim::home_assistant::{Credential, Fault, HomeAssistant, RunningHomeAssistant};
use agent_gate_sim::time::Timestamp;
use serde_json::{Map, Value, json};

const TOKEN: &str = "ha-long-lived-token-7f3a9c";

fn manifest() -> Manifest {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools.toml");
    Manifest::load(&[path]).unwrap().manifest
}

fn tool<'m>(manifest: &'m Manifest, name: &str) -> &'m Tool {
    manifest.tool(name).unwrap()
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn service(url: impl Into<String>, auth: Option<ServiceAuth>) -> ServiceConfig {
    ServiceConfig {
        name: "homeassistant".into(),
        url: url.into(),
        auth,
        timeout: Duration::from_secs(10),
        health: HealthCheck {
            method: "GET".into(),
            path: "/api/".into(),
            expect_status: 200,
        },
        errors: BTreeMap::new(),
        max_connections: 32,
    }
}

fn bearer(token: &str) -> Option<ServiceAuth> {
    Some(ServiceAuth::Bearer {
        token: Secret::new(token),
    })
}

fn demo() -> HomeAssistant {
    HomeAssistant::builder()
        .token(TOKEN)
        .demo_entities()
        .start_time(Timestamp::parse("2026-11-21T12:00:00Z").unwrap())
        .build()
        .unwrap()
}

async fn serve(home: &HomeAssistant) -> RunningHomeAssistant {
    home.spawn("127.0.0.1:0").await.unwrap().1
}

fn executor_for(config: ServiceConfig) -> Executor {
    Executor::new([&config]).unwrap()
}

/// Asserts that nothing in the error (message or debug form) reveals `secret` or a URL.
fn assert_clean(error: &ExecutionError, secret: &str) {
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(secret), "secret leaked: {text}");
        assert!(!text.contains("http://"), "URL leaked: {text}");
    }
}

#[tokio::test]
async fn every_home_assistant_tool_works_end_to_end() {
    let manifest = manifest();
    let home = demo();
    let server = serve(&home).await;
    let executor = executor_for(service(server.url(), bearer(TOKEN)));
    let mut called = BTreeSet::new();
    let mut run = async |name: &str, call: Value| {
        called.insert(name.to_owned());
        executor
            .execute(tool(&manifest, name), &args(call))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };

    let state = run("ha_get_state", json!({"entity_id": "light.living_room"})).await;
    assert_eq!(state, home.state("light.living_room").unwrap());

    let states = run("ha_get_states", json!({})).await;
    assert_eq!(
        states["states"].as_array().unwrap().len(),
        home.states().len()
    );

    let services = run("ha_get_services", json!({})).await;
    assert!(
        services["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["domain"] == "light"
                && d["services"]["turn_on"]["fields"]["brightness"].is_object())
    );

    let config = run("ha_get_config", json!({})).await;
    assert_eq!(config["config"]["location_name"], "Home");

    let history = run(
        "ha_get_history",
        json!({
            "entity_id": "sensor.living_room_temperature",
            "start_time": "2026-11-21T03:00:00+00:00",
            "end_time": "2026-11-21T09:00:00+00:00",
        }),
    )
    .await;
    let rows: Vec<&str> = history["history"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(rows, ["20.1", "20.9", "21.7"]);
    assert_eq!(
        history["history"][0][0]["entity_id"],
        "sensor.living_room_temperature"
    );
    // Without a start time: the last day.
    let history = run("ha_get_history", json!({"entity_id": "lock.front_door"})).await;
    assert_eq!(history["history"][0].as_array().unwrap().len(), 3);

    let template = run(
        "ha_render_template",
        json!({"template": "Door: {{ states('lock.front_door') }}"}),
    )
    .await;
    assert_eq!(template, json!({"result": "Door: locked"}));

    let changed = run(
        "ha_call_service",
        json!({"domain": "light", "service": "turn_on", "entity_id": "light.kitchen", "data": {"brightness": 77}}),
    )
    .await;
    assert_eq!(changed["result"][0]["entity_id"], "light.kitchen");
    assert_eq!(changed["result"][0]["attributes"]["brightness"], 77);
    let kitchen = home.state("light.kitchen").unwrap();
    assert_eq!(
        (
            kitchen["state"].as_str(),
            kitchen["attributes"]["brightness"].as_i64()
        ),
        (Some("on"), Some(77))
    );
    assert_eq!(home.service_call_count(), 1, "executed exactly once");
    assert_eq!(
        home.service_calls()[0].data,
        json!({"entity_id": "light.kitchen", "brightness": 77})
    );
    // A service call without a target.
    let changed = run(
        "ha_call_service",
        json!({"domain": "persistent_notification", "service": "create", "data": {"message": "hi"}}),
    )
    .await;
    assert_eq!(changed, json!({"result": []}));

    let logbook = run(
        "ha_get_logbook",
        json!({"entity_id": "light.kitchen", "start_time": "2026-11-21T00:00:00Z", "end_time": "2026-11-22T00:00:00Z"}),
    )
    .await;
    let last = logbook["logbook"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (
            last["state"].as_str(),
            last["context_service"].as_str(),
            last["name"].as_str()
        ),
        (Some("on"), Some("turn_on"), Some("Kitchen light"))
    );
    let logbook = run("ha_get_logbook", json!({})).await;
    assert!(logbook["logbook"].is_array());

    let fired = run(
        "ha_fire_event",
        json!({"event_type": "agent_note", "event_data": {"text": "hi"}}),
    )
    .await;
    assert_eq!(fired, json!({"message": "Event agent_note fired."}));
    assert_eq!(home.fired_events()[0].data, json!({"text": "hi"}));
    let fired = run("ha_fire_event", json!({"event_type": "agent_ping"})).await;
    assert_eq!(fired, json!({"message": "Event agent_ping fired."}));

    // Areas, calendars and services that answer with data, in the home shaped like Home
    // Assistant Core's demo.
    let core = HomeAssistant::core_demo(TOKEN);
    let core_server = serve(&core).await;
    let core_executor = executor_for(service(core_server.url(), bearer(TOKEN)));
    let mut run_core = async |name: &str, call: Value| {
        called.insert(name.to_owned());
        core_executor
            .execute(tool(&manifest, name), &args(call))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let areas = run_core("ha_get_areas", json!({})).await;
    assert_eq!(
        areas["areas"][2],
        json!({"area_id": "bedroom", "name": "Bedroom", "entities": ["light.bed_light"]})
    );
    let calendars = run_core("ha_get_calendars", json!({})).await;
    assert_eq!(
        calendars["calendars"][0]["entity_id"],
        "calendar.calendar_1"
    );
    let events = run_core(
        "ha_get_calendar_events",
        json!({"entity_id": "calendar.calendar_2", "start": "2000-01-01", "end": "2100-01-01"}),
    )
    .await;
    assert_eq!(events["events"][0]["summary"], "Current Event");
    let answered = run_core(
        "ha_call_service",
        json!({"domain": "weather", "service": "get_forecasts", "entity_id": "weather.demo_weather_north", "data": {"type": "daily"}, "return_response": true}),
    )
    .await;
    assert_eq!(answered["changed_states"], json!([]));
    assert_eq!(
        answered["service_response"]["weather.demo_weather_north"]["forecast"][0]["condition"],
        "snowy"
    );
    let recorded = core.requests();
    let last = recorded.last().unwrap();
    assert_eq!(
        (last.path.as_str(), last.query.as_deref()),
        (
            "/api/services/weather/get_forecasts",
            Some("return_response")
        )
    );

    let all: BTreeSet<String> = manifest
        .tools()
        .filter(|t| t.service == "homeassistant")
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(
        called, all,
        "every Home Assistant tool of tools.toml is exercised"
    );
    // Every request carried the bearer token.
    assert!(
        home.requests()
            .iter()
            .all(|r| r.header("authorization") == Some(&format!("Bearer {TOKEN}")))
    );
}

#[tokio::test]
async fn service_urls_join_with_or_without_slash_and_with_a_path_prefix() {
    let manifest = manifest();
    let home = demo();
    // Home Assistant behind a reverse proxy under /ha.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().nest("/ha", home.router());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    for url in [
        format!("http://{addr}/ha"),
        format!("http://{addr}/ha/"),
        format!("http://{addr}/ha//"),
    ] {
        let executor = executor_for(service(&url, bearer(TOKEN)));
        let state = executor
            .execute(
                tool(&manifest, "ha_get_state"),
                &args(json!({"entity_id": "lock.front_door"})),
            )
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(state["state"], "locked");
    }
    let paths: Vec<String> = home.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/ha/api/states/lock.front_door"; 3]);
    server.abort();

    let running = serve(&home).await;
    for url in [running.url(), format!("{}/", running.url())] {
        let executor = executor_for(service(&url, bearer(TOKEN)));
        let history = executor
            .execute(
                tool(&manifest, "ha_get_history"),
                &args(json!({"entity_id": "lock.front_door", "start_time": "2026-11-21T00:00:00+00:00"})),
            )
            .await
            .unwrap();
        assert!(history["history"].is_array());
    }
    let last = home.requests().pop().unwrap();
    assert_eq!(
        last.path,
        "/api/history/period/2026-11-21T00%3A00%3A00%2B00%3A00"
    );
    assert_eq!(
        last.query.as_deref(),
        Some("filter_entity_id=lock.front_door")
    );
}

#[tokio::test]
async fn a_wrong_token_is_reported_as_rejected_credentials() {
    let manifest = manifest();
    let home = demo();
    let server = serve(&home).await;
    let wrong = "not-the-right-token-123";
    let executor = executor_for(service(server.url(), bearer(wrong)));
    let error = executor
        .execute(tool(&manifest, "ha_get_states"), &Map::new())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ExecutionError::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    assert_eq!((error.kind(), error.status()), ("unauthorized", Some(401)));
    assert_eq!(
        error.to_string(),
        "service `homeassistant` rejected the gateway's credentials (HTTP 401); check services.homeassistant.auth (the token) in config.yaml"
    );
    assert!(!error.may_have_executed());
    assert_clean(&error, wrong);
}

#[tokio::test]
async fn an_unknown_entity_is_a_404_with_home_assistants_message() {
    let manifest = manifest();
    let home = demo();
    let server = serve(&home).await;
    let executor = executor_for(service(server.url(), bearer(TOKEN)));
    let error = executor
        .execute(
            tool(&manifest, "ha_get_state"),
            &args(json!({"entity_id": "light.garden"})),
        )
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(404));
    assert_eq!(
        error.to_string(),
        "service `homeassistant` answered HTTP 404 Not Found: Entity not found."
    );
    // An unknown service is Home Assistant's bare 400.
    let error = executor
        .execute(
            tool(&manifest, "ha_call_service"),
            &args(json!({"domain": "light", "service": "explode", "entity_id": "light.kitchen"})),
        )
        .await
        .unwrap_err();
    // Home Assistant gives no reason: the tool's `error_help` says what was sent.
    assert_eq!(
        error.to_string(),
        "service `homeassistant` answered HTTP 400 Bad Request: 400: Bad Request. Home Assistant refused service light.explode on entity_id light.kitchen with data (none); ha_get_services lists each service and the data it takes."
    );
    assert_eq!(error.status(), Some(400));
}

#[tokio::test]
async fn a_success_that_is_not_json_is_an_execution_error_with_a_sanitized_excerpt() {
    let manifest = manifest();
    let home = demo();
    let server = serve(&home).await;
    let executor = executor_for(service(server.url(), bearer(TOKEN)));
    let page = format!(
        "<html>\n<body>Proxy login\tpage, your token {TOKEN} {}</body></html>",
        "x".repeat(400)
    );
    home.inject(Fault::non_json(page).once());
    let error = executor
        .execute(tool(&manifest, "ha_get_config"), &Map::new())
        .await
        .unwrap_err();
    let ExecutionError::InvalidResponse {
        status: 200,
        problem,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert!(
        problem
            .starts_with("the body is not JSON: <html> <body>Proxy login page, your token *** xxx"),
        "{problem}"
    );
    assert!(problem.ends_with("x…"), "truncated: {problem}");
    assert!(problem.chars().count() < 260, "{problem}");
    assert!(error.may_have_executed());
    assert_clean(&error, TOKEN);
    // A text tool takes a non-JSON body as it is.
    let text = executor
        .execute(
            tool(&manifest, "ha_render_template"),
            &args(json!({"template": "plain"})),
        )
        .await
        .unwrap();
    assert_eq!(text, json!({"result": "plain"}));
}

#[tokio::test]
async fn error_statuses_use_the_configured_message_or_a_default() {
    let manifest = manifest();
    let home = demo();
    let server = serve(&home).await;
    let mut config = service(server.url(), bearer(TOKEN));
    config
        .errors
        .insert(500, "Home Assistant failed ({status}): {body}".into());
    config
        .errors
        .insert(401, "Token expired, ask the owner for a new one".into());
    let executor = executor_for(config);
    let call = args(json!({"domain": "lock", "service": "unlock", "entity_id": "lock.front_door"}));

    home.inject(Fault::message(500, format!("Unexpected error, token={TOKEN}")).once());
    let error = executor
        .execute(tool(&manifest, "ha_call_service"), &call)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Home Assistant failed (500): Unexpected error, token=***"
    );
    assert!(
        error.may_have_executed(),
        "a 5xx leaves the outcome unknown"
    );

    home.inject(Fault::status(502).once());
    let error = executor
        .execute(tool(&manifest, "ha_call_service"), &call)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "service `homeassistant` answered HTTP 502 Bad Gateway: 502: Bad Gateway"
    );

    home.inject(Fault::response(503, "text/plain", "").once());
    let error = executor
        .execute(tool(&manifest, "ha_call_service"), &call)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "service `homeassistant` answered HTTP 503 Service Unavailable"
    );

    // A configured message also wins for 401.
    home.inject(Fault::status(401).once());
    let error = executor
        .execute(tool(&manifest, "ha_get_states"), &Map::new())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Token expired, ask the owner for a new one"
    );

    // Redirects are not followed (they would carry the credentials elsewhere).
    home.inject(Fault::response(302, "text/plain", "moved").once());
    let error = executor
        .execute(tool(&manifest, "ha_get_states"), &Map::new())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ExecutionError::Redirect { status: 302, .. }),
        "{error:?}"
    );
    assert_eq!(home.state("lock.front_door").unwrap()["state"], "locked");
    assert_eq!(home.service_call_count(), 0);
}

#[tokio::test]
async fn failures_are_never_retried() {
    let manifest = manifest();
    let home = demo();
    let server = serve(&home).await;
    let executor = executor_for(service(server.url(), bearer(TOKEN)));
    let call =
        args(json!({"domain": "switch", "service": "toggle", "entity_id": "switch.coffee_maker"}));
    // The action happens, then the answer is lost: exactly one call, no second toggle.
    home.inject(Fault::status(503).after_handling().once());
    let error = executor
        .execute(tool(&manifest, "ha_call_service"), &call)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(503));
    assert_eq!(home.service_call_count(), 1);
    assert_eq!(home.requests().len(), 1);
    assert_eq!(home.state("switch.coffee_maker").unwrap()["state"], "on");
}

#[tokio::test]
async fn a_paused_service_times_out_after_the_service_timeout() {
    let manifest = manifest();
    let home = demo();
    let server = serve(&home).await;
    let mut config = service(server.url(), bearer(TOKEN));
    config.timeout = Duration::from_millis(300);
    let executor = executor_for(config);
    home.pause();
    let error = executor
        .execute(
            tool(&manifest, "ha_call_service"),
            &args(json!({"domain": "lock", "service": "unlock", "entity_id": "lock.front_door"})),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ExecutionError::Timeout { .. }), "{error:?}");
    assert_eq!(error.kind(), "timeout");
    assert_eq!(
        error.to_string(),
        "service `homeassistant` did not answer within 300 ms (services.homeassistant.timeout); the action may or may not have happened"
    );
    assert!(error.may_have_executed());
    assert_clean(&error, TOKEN);
    // The request did reach the service, which was still holding it.
    home.wait_until_held(1).await;
    assert_eq!(home.service_call_count(), 0);
    home.resume();
}

#[tokio::test]
async fn a_refused_connection_is_a_clear_error_without_the_url() {
    let manifest = manifest();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let secret = "q-param-secret-55";
    for auth in [
        bearer(TOKEN),
        Some(ServiceAuth::Query {
            name: "api_key".into(),
            value: Secret::new(secret),
        }),
    ] {
        let executor = executor_for(service(format!("http://{addr}"), auth));
        let error = executor
            .execute(
                tool(&manifest, "ha_get_state"),
                &args(json!({"entity_id": "light.kitchen"})),
            )
            .await
            .unwrap_err();
        let ExecutionError::Connect { detail, .. } = &error else {
            panic!("{error:?}");
        };
        assert!(detail.to_lowercase().contains("refused"), "{detail}");
        assert!(
            error
                .to_string()
                .starts_with("cannot connect to service `homeassistant` ("),
            "{error}"
        );
        assert!(error.to_string().ends_with(
            "check services.homeassistant.url in config.yaml and that the service is running"
        ));
        assert!(!error.may_have_executed());
        assert_clean(&error, TOKEN);
        assert_clean(&error, secret);
        assert!(
            !error.to_string().contains(&addr.port().to_string()),
            "{error}"
        );
        let health = executor.health("homeassistant").await;
        assert!(!health.is_healthy());
        assert!(!health.to_string().contains(secret) && !health.to_string().contains(TOKEN));
    }
}

#[tokio::test]
async fn query_parameter_credentials_never_leak_into_errors() {
    let manifest = manifest();
    let secret = "s3cret/with+chars&more";
    let home = HomeAssistant::builder()
        .credential(Credential::Query {
            name: "api_key".into(),
            value: secret.into(),
        })
        .demo_entities()
        .build()
        .unwrap();
    let server = serve(&home).await;
    let mut config = service(
        server.url(),
        Some(ServiceAuth::Query {
            name: "api_key".into(),
            value: Secret::new(secret),
        }),
    );
    config.timeout = Duration::from_millis(300);
    let executor = executor_for(config);
    assert!(!format!("{executor:?}").contains(secret));
    // Works, and the parameter reaches the service encoded.
    executor
        .execute(tool(&manifest, "ha_get_config"), &Map::new())
        .await
        .unwrap();
    let query = home.requests()[0].query.clone().unwrap();
    assert_eq!(query, "api_key=s3cret%2Fwith%2Bchars%26more");
    // The service echoes the URL (with the token) in a non-JSON body.
    home.inject(
        Fault::non_json(format!("bad request to /api/config?{query} (key {secret})")).once(),
    );
    let error = executor
        .execute(tool(&manifest, "ha_get_config"), &Map::new())
        .await
        .unwrap_err();
    assert_clean(&error, secret);
    assert_clean(&error, "s3cret%2Fwith%2Bchars%26more");
    assert!(error.to_string().contains("api_key=***"), "{error}");
    // A timeout: reqwest's error would carry the URL with the token.
    home.pause();
    let error = executor
        .execute(tool(&manifest, "ha_get_config"), &Map::new())
        .await
        .unwrap_err();
    assert!(matches!(error, ExecutionError::Timeout { .. }));
    assert_clean(&error, secret);
    assert_clean(&error, "s3cret%2F");
    home.resume();
}

#[tokio::test]
async fn a_password_in_the_service_url_is_scrubbed_too() {
    let manifest = manifest();
    let home = HomeAssistant::builder()
        .credential(Credential::Header {
            name: "X-Key".into(),
            value: "header-key".into(),
        })
        .demo_entities()
        .build()
        .unwrap();
    let server = serve(&home).await;
    let url = format!("http://proxy-user:url-pass-99@{}", server.addr());
    let executor = executor_for(service(
        url,
        Some(ServiceAuth::Header {
            name: "X-Key".into(),
            value: Secret::new("header-key"),
        }),
    ));
    home.inject(Fault::non_json("you sent url-pass-99 and header-key").once());
    let error = executor
        .execute(tool(&manifest, "ha_get_config"), &Map::new())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("you sent *** and ***"),
        "{error}"
    );
    assert_clean(&error, "url-pass-99");
}

#[tokio::test]
async fn all_four_credential_kinds_reach_the_service() {
    let manifest = manifest();
    let cases = [
        (
            Credential::Bearer("bearer-secret".into()),
            ServiceAuth::Bearer {
                token: Secret::new("bearer-secret"),
            },
        ),
        (
            Credential::Header {
                name: "X-Api-Key".into(),
                value: "header-secret".into(),
            },
            ServiceAuth::Header {
                name: "X-Api-Key".into(),
                value: Secret::new("header-secret"),
            },
        ),
        (
            Credential::Query {
                name: "key".into(),
                value: "query-secret".into(),
            },
            ServiceAuth::Query {
                name: "key".into(),
                value: Secret::new("query-secret"),
            },
        ),
        (
            Credential::Basic {
                username: "gateway".into(),
                password: "basic-secret".into(),
            },
            ServiceAuth::Basic {
                username: "gateway".into(),
                password: Secret::new("basic-secret"),
            },
        ),
    ];
    for (credential, auth) in cases {
        let home = HomeAssistant::builder()
            .credential(credential.clone())
            .demo_entities()
            .build()
            .unwrap();
        let server = serve(&home).await;
        let executor = executor_for(service(server.url(), Some(auth.clone())));
        let state = executor
            .execute(
                tool(&manifest, "ha_get_state"),
                &args(json!({"entity_id": "lock.front_door"})),
            )
            .await
            .unwrap_or_else(|e| panic!("{credential:?}: {e}"));
        assert_eq!(state["entity_id"], "lock.front_door");
        let request = home.requests().pop().unwrap();
        match &credential {
            Credential::Bearer(token) => assert_eq!(
                request.header("authorization"),
                Some(format!("Bearer {token}").as_str())
            ),
            Credential::Header { value, .. } => {
                assert_eq!(request.header("x-api-key"), Some(value.as_str()))
            }
            Credential::Query { value, .. } => {
                assert_eq!(request.query, Some(format!("key={value}")))
            }
            Credential::Basic { .. } => {
                assert_eq!(
                    request.header("authorization"),
                    Some("Basic Z2F0ZXdheTpiYXNpYy1zZWNyZXQ=")
                )
            }
        }
        assert!(
            executor.health("homeassistant").await.is_healthy(),
            "{credential:?}"
        );
        // The wrong secret of the same kind is refused.
        let wrong = match auth {
            ServiceAuth::Bearer { .. } => ServiceAuth::Bearer {
                token: Secret::new("nope"),
            },
            ServiceAuth::Header { name, .. } => ServiceAuth::Header {
                name,
                value: Secret::new("nope"),
            },
            ServiceAuth::Query { name, .. } => ServiceAuth::Query {
                name,
                value: Secret::new("nope"),
            },
            ServiceAuth::Basic { username, .. } => ServiceAuth::Basic {
                username,
                password: Secret::new("nope"),
            },
        };
        let executor = executor_for(service(server.url(), Some(wrong)));
        let error = executor
            .execute(tool(&manifest, "ha_get_states"), &Map::new())
            .await
            .unwrap_err();
        assert!(
            matches!(error, ExecutionError::Unauthorized { .. }),
            "{credential:?}: {error:?}"
        );
    }
}

#[tokio::test]
async fn health_checks_report_each_service() {
    let home = demo();
    let server = serve(&home).await;
    let good = service(server.url(), bearer(TOKEN));
    let mut bad = service(server.url(), bearer("wrong-token"));
    bad.name = "wrong_token".into();
    let mut teapot = service(server.url(), bearer(TOKEN));
    teapot.name = "expects_other".into();
    teapot.health = HealthCheck {
        method: "get".into(),
        path: "api/config".into(),
        expect_status: 418,
    };
    let mut default_check = service(server.url(), None);
    default_check.name = "frontend".into();
    default_check.health = HealthCheck {
        method: "GET".into(),
        path: "/".into(),
        expect_status: 200,
    };
    let executor = Executor::new([&good, &bad, &teapot, &default_check]).unwrap();
    assert_eq!(
        executor.services().collect::<Vec<_>>(),
        ["homeassistant", "wrong_token", "expects_other", "frontend"]
    );
    assert_eq!(
        executor.health("homeassistant").await,
        HealthStatus::Healthy
    );
    assert_eq!(executor.health("nothing").await, HealthStatus::Unknown);
    let all = executor.health_all().await;
    assert_eq!(all[0], ("homeassistant".to_owned(), HealthStatus::Healthy));
    assert_eq!(
        all[1].1,
        HealthStatus::Unhealthy {
            reason: "expected HTTP 200 from GET /api/, got 401 Unauthorized".into()
        }
    );
    assert_eq!(
        all[2].1.to_string(),
        "unhealthy: expected HTTP 418 from GET /api/config, got 200 OK"
    );
    // The config's default check (GET / → 200) works against Home Assistant's frontend.
    assert_eq!(all[3].1, HealthStatus::Healthy);
}

#[tokio::test]
async fn invalid_arguments_and_unknown_services_fail_before_sending() {
    let manifest = manifest();
    let home = demo();
    let server = serve(&home).await;
    let executor = executor_for(service(server.url(), bearer(TOKEN)));
    let error = executor
        .execute(
            tool(&manifest, "ha_get_state"),
            &args(json!({"entity_id": "light.*"})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, ExecutionError::InvalidArguments(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("entity_id"), "{error}");
    let error = executor
        .execute(
            tool(&manifest, "ha_call_service"),
            &args(json!({"domain": "lock", "service": "unlock", "data": {"entity_id": "lock.front_door"}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, ExecutionError::InvalidArguments(_)),
        "{error:?}"
    );

    let other = Manifest::from_str(
        r#"
[services.nas]
description = "A NAS"
[tools.nas_status]
service = "nas"
description = "Status"
http = { method = "GET", path = "/status" }
"#,
        "nas.toml",
    )
    .unwrap()
    .manifest;
    let error = executor
        .execute(other.tool("nas_status").unwrap(), &Map::new())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "tool `nas_status` uses service `nas`, which is not configured; add `services.nas` (url, auth) to config.yaml"
    );
    assert!(home.requests().is_empty(), "nothing was sent");
}

#[test]
fn errors_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<ExecutionError>();
    assert_send_sync::<ExecutorError>();
    assert_send_sync::<Executor>();
}

#[test]
fn bad_service_settings_are_start_up_errors_without_secrets() {
    let error = Executor::new([&service("ftp://nas.local", None)]).unwrap_err();
    assert!(matches!(error, ExecutorError::InvalidUrl { .. }));
    assert_eq!(
        error.to_string(),
        "services.homeassistant.url is not a valid http:// or https:// URL without a query; write it like `http://homeassistant.local:8123`"
    );
    for url in [
        "http://ha.local/?token=abc",
        "not a url",
        "http://ha.local/#x",
    ] {
        let error = Executor::new([&service(url, None)]).unwrap_err();
        assert!(matches!(error, ExecutorError::InvalidUrl { .. }), "{url}");
        assert!(!error.to_string().contains("abc"));
    }
    let header = Some(ServiceAuth::Header {
        name: "X-Key".into(),
        value: Secret::new("line\nbreak-secret"),
    });
    let error = Executor::new([&service("http://127.0.0.1:1", header)]).unwrap_err();
    assert!(matches!(error, ExecutorError::InvalidHeader { .. }));
    assert!(!error.to_string().contains("break-secret"));
    let mut config = service("http://127.0.0.1:1", None);
    config.health.method = "GE T".into();
    assert!(matches!(
        Executor::new([&config]).unwrap_err(),
        ExecutorError::InvalidHealthMethod { .. }
    ));
}

#[tokio::test]
async fn a_long_service_message_reaches_the_agent_whole_up_to_4_kib() {
    let manifest = manifest();
    let home = demo();
    let server = serve(&home).await;
    let executor = executor_for(service(server.url(), bearer(TOKEN)));
    let call = args(json!({"template": "{{ broken"}));
    let detail = format!(
        "Error rendering template: TemplateSyntaxError: unexpected end of template, token={TOKEN}, {}",
        "é".repeat(3000)
    );
    home.inject(Fault::message(400, detail.clone()).once());
    let error = executor
        .execute(tool(&manifest, "ha_render_template"), &call)
        .await
        .unwrap_err();
    // the message quotes an excerpt ...
    assert!(error.to_string().chars().count() < 300, "{error}");
    // ... and error.data carries the service's own message, secret-free, cut at 4 KiB
    let data = error.data();
    assert_eq!(data["kind"], "http");
    assert_eq!(data["status"], 400);
    assert_eq!(data["may_have_executed"], false);
    let message = data["service_message"].as_str().unwrap();
    assert!(
        message.len() <= 4096 && message.len() > 4000,
        "{}",
        message.len()
    );
    assert!(message.starts_with(
        "Error rendering template: TemplateSyntaxError: unexpected end of template, token=***, é"
    ));
    assert!(message.ends_with('…'));
    assert!(!message.contains(TOKEN));
    // a short one whole
    home.inject(
        Fault::message(
            400,
            "Error rendering template: UndefinedError: 'x' is undefined",
        )
        .once(),
    );
    let error = executor
        .execute(tool(&manifest, "ha_render_template"), &call)
        .await
        .unwrap_err();
    assert_eq!(
        error.data()["service_message"],
        "Error rendering template: UndefinedError: 'x' is undefined"
    );
}
