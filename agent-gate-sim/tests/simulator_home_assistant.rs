//! The simulated Home Assistant over real HTTP: authentication, every REST endpoint the
//! gateway's tools use, the effects of service calls, and the test controls (request log,
//! service-call count, injected faults, paused responses).

use std::time::Duration;

use agent_gate_sim::home_assistant::{
    Credential, Entity, Fault, HomeAssistant, RunningHomeAssistant, USER_ID,
};
use agent_gate_sim::time::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "test-token";

/// 2026-11-21T12:00:00Z: a fixed clock makes timestamps and ids reproducible.
fn noon() -> Timestamp {
    Timestamp::parse("2026-11-21T12:00:00Z").unwrap()
}

fn fixed_demo() -> HomeAssistant {
    HomeAssistant::builder()
        .token(TOKEN)
        .demo_entities()
        .start_time(noon())
        .build()
        .unwrap()
}

struct Client {
    http: reqwest::Client,
    base: String,
    _server: RunningHomeAssistant,
}

impl Client {
    async fn start(home: &HomeAssistant) -> Self {
        let (_, server) = home.spawn("127.0.0.1:0").await.unwrap();
        Self {
            http: reqwest::Client::new(),
            base: server.url(),
            _server: server,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let (status, body) = self.get(path).await;
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, String) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let (status, body) = self.post(path, body).await;
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }
}

#[tokio::test]
async fn missing_or_wrong_token_is_401_as_home_assistant_answers() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    let url = format!("{}/api/", client.base);
    for request in [
        client.http.get(&url),
        client.http.get(&url).bearer_auth("wrong"),
        client.http.get(&url).header("Authorization", TOKEN),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.text().await.unwrap(), "401: Unauthorized");
    }
    assert_eq!(
        client.get_json("/api/").await,
        (StatusCode::OK, json!({"message": "API running."}))
    );
    let frontend = client
        .http
        .get(format!("{}/", client.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        frontend.status(),
        StatusCode::OK,
        "the frontend needs no token"
    );
    assert_eq!(
        client.get("/api/nothing").await,
        (StatusCode::NOT_FOUND, "404: Not Found".into())
    );
    // A wrong token never reaches a service.
    let response = client
        .http
        .post(format!("{}/api/services/light/turn_on", client.base))
        .bearer_auth("wrong")
        .json(&json!({"entity_id": "light.kitchen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(home.service_call_count(), 0);
    assert_eq!(home.state("light.kitchen").unwrap()["state"], "off");
}

#[tokio::test]
async fn states_and_one_state_with_not_found() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    let (status, states) = client.get_json("/api/states").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = states
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["entity_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"light.living_room") && ids.contains(&"lock.front_door"),
        "{ids:?}"
    );
    let (status, lamp) = client.get_json("/api/states/light.living_room").await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_json_snapshot!("living_room_light_state", lamp);
    assert_eq!(
        client.get_json("/api/states/light.garden").await,
        (
            StatusCode::NOT_FOUND,
            json!({"message": "Entity not found."})
        )
    );
}

#[tokio::test]
async fn light_turn_on_changes_state_and_returns_the_changed_states() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    home.advance_clock(Duration::from_secs(90));
    let (status, changed) = client
        .post_json(
            "/api/services/light/turn_on",
            &json!({"entity_id": "light.kitchen", "brightness": 128}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_json_snapshot!("kitchen_light_turned_on", changed);
    let kitchen = home.state("light.kitchen").unwrap();
    assert_eq!(
        (
            kitchen["state"].as_str(),
            kitchen["attributes"]["brightness"].as_i64()
        ),
        (Some("on"), Some(128))
    );
    assert_eq!(kitchen["context"]["user_id"], USER_ID);
    assert_eq!(home.service_call_count(), 1);
    assert_eq!(
        home.service_calls()[0].data,
        json!({"entity_id": "light.kitchen", "brightness": 128})
    );

    // Nothing changes the second time: Home Assistant reports no changed states.
    let (status, changed) = client
        .post_json(
            "/api/services/light/turn_on",
            &json!({"entity_id": "light.kitchen", "brightness": 128}),
        )
        .await;
    assert_eq!((status, changed), (StatusCode::OK, json!([])));

    // Off forgets the brightness in the attributes, on without brightness restores it.
    client
        .post(
            "/api/services/light/toggle",
            &json!({"entity_id": "light.kitchen"}),
        )
        .await;
    let kitchen = home.state("light.kitchen").unwrap();
    assert_eq!(
        (
            kitchen["state"].as_str(),
            &kitchen["attributes"]["brightness"]
        ),
        (Some("off"), &Value::Null)
    );
    client
        .post(
            "/api/services/light/turn_on",
            &json!({"entity_id": "light.kitchen"}),
        )
        .await;
    assert_eq!(
        home.state("light.kitchen").unwrap()["attributes"]["brightness"],
        128
    );
    client
        .post(
            "/api/services/light/turn_on",
            &json!({"entity_id": "light.kitchen", "brightness_pct": 100}),
        )
        .await;
    assert_eq!(
        home.state("light.kitchen").unwrap()["attributes"]["brightness"],
        255
    );
    assert_eq!(home.service_call_count(), 5);
}

#[tokio::test]
async fn switches_locks_covers_climate_and_generic_services() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    let call = |path: &'static str, body: Value| {
        let client = &client;
        async move { client.post_json(path, &body).await }
    };
    let (status, changed) = call(
        "/api/services/lock/unlock",
        json!({"entity_id": "lock.front_door"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(changed[0]["state"], "unlocked");
    call(
        "/api/services/switch/toggle",
        json!({"entity_id": "switch.coffee_maker"}),
    )
    .await;
    assert_eq!(home.state("switch.coffee_maker").unwrap()["state"], "on");
    call(
        "/api/services/cover/set_cover_position",
        json!({"entity_id": "cover.garage_door", "position": 40}),
    )
    .await;
    let garage = home.state("cover.garage_door").unwrap();
    assert_eq!(
        (
            garage["state"].as_str(),
            garage["attributes"]["current_position"].as_i64()
        ),
        (Some("open"), Some(40))
    );
    call(
        "/api/services/climate/set_temperature",
        json!({"entity_id": "climate.thermostat", "temperature": 19.5}),
    )
    .await;
    assert_eq!(
        home.state("climate.thermostat").unwrap()["attributes"]["temperature"],
        19.5
    );
    // A mode the device does not support is a HomeAssistantError: 500, no change.
    let (status, _) = call(
        "/api/services/climate/set_hvac_mode",
        json!({"entity_id": "climate.thermostat", "hvac_mode": "dry"}),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(home.state("climate.thermostat").unwrap()["state"], "heat");

    // homeassistant.turn_off works across domains and skips what cannot be turned off.
    let (status, changed) = call(
        "/api/services/homeassistant/turn_off",
        json!({"entity_id": ["light.living_room", "switch.coffee_maker", "lock.front_door", "light.nowhere"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let changed: Vec<(&str, &str)> = changed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["entity_id"].as_str().unwrap(),
                s["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        [("light.living_room", "off"), ("switch.coffee_maker", "off")]
    );

    // An entity of another domain is not touched by a domain service.
    let (status, changed) = call(
        "/api/services/light/turn_on",
        json!({"entity_id": "switch.coffee_maker"}),
    )
    .await;
    assert_eq!((status, changed), (StatusCode::OK, json!([])));
    // Notifications are recorded.
    call(
        "/api/services/persistent_notification/create",
        json!({"message": "Door unlocked", "title": "Agent"}),
    )
    .await;
    assert_eq!(home.notifications()[0]["message"], "Door unlocked");
}

#[tokio::test]
async fn unknown_services_and_invalid_data_are_400_like_home_assistant() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    for (path, body) in [
        (
            "/api/services/light/explode",
            json!({"entity_id": "light.kitchen"}),
        ),
        ("/api/services/vacuum/start", json!({})),
        (
            "/api/services/light/turn_on",
            json!({"entity_id": "light.kitchen", "brightness": 300}),
        ),
        (
            "/api/services/light/turn_on",
            json!({"entity_id": "light.kitchen", "brightness": "bright"}),
        ),
        (
            "/api/services/light/turn_on",
            json!({"entity_id": "light.kitchen", "colour": "red"}),
        ),
        (
            "/api/services/light/turn_on",
            json!({"entity_id": "Light.Kit chen"}),
        ),
        (
            "/api/services/cover/set_cover_position",
            json!({"entity_id": "cover.garage_door"}),
        ),
        ("/api/services/light/turn_on", json!(["light.kitchen"])),
    ] {
        assert_eq!(
            client.post(path, &body).await,
            (StatusCode::BAD_REQUEST, "400: Bad Request".to_owned()),
            "{path} {body}"
        );
    }
    let response = client
        .http
        .post(format!("{}/api/services/light/turn_on", client.base))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"message": "Data should be valid JSON."})
    );
    assert_eq!(home.state("light.kitchen").unwrap()["state"], "off");
    assert_eq!(
        home.service_call_count(),
        8,
        "every authenticated call is counted"
    );
}

#[tokio::test]
async fn services_list_has_the_home_assistant_shape() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    let (status, services) = client.get_json("/api/services").await;
    assert_eq!(status, StatusCode::OK);
    let light = services
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == "light")
        .unwrap();
    insta::assert_json_snapshot!("light_services", light);
    let domains: Vec<&str> = services
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["domain"].as_str().unwrap())
        .collect();
    assert_eq!(
        domains,
        [
            "homeassistant",
            "persistent_notification",
            "light",
            "switch",
            "input_boolean",
            "lock",
            "cover",
            "climate"
        ]
    );
}

#[tokio::test]
async fn config_reports_location_version_and_components() {
    let home = HomeAssistant::builder()
        .token(TOKEN)
        .location_name("Cabin")
        .version("2025.1.0")
        .entity(Entity::new("light.porch", "off"))
        .build()
        .unwrap();
    let client = Client::start(&home).await;
    let (status, config) = client.get_json("/api/config").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (config["location_name"].as_str(), config["version"].as_str()),
        (Some("Cabin"), Some("2025.1.0"))
    );
    assert!(
        config["components"]
            .as_array()
            .unwrap()
            .contains(&json!("light"))
    );
    assert_eq!(config["unit_system"]["temperature"], "°C");
}

#[tokio::test]
async fn history_requires_its_entity_filter_and_returns_lists_of_states() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    assert_eq!(
        client.get_json("/api/history/period").await,
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "filter_entity_id is missing"})
        )
    );
    assert_eq!(
        client
            .get_json("/api/history/period/yesterday?filter_entity_id=light.kitchen")
            .await,
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "Invalid datetime"})
        )
    );
    assert_eq!(
        client
            .get_json("/api/history/period?filter_entity_id=light.kitchen&end_time=soon")
            .await,
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "Invalid end_time"})
        )
    );
    assert_eq!(
        client
            .get_json("/api/history/period?filter_entity_id=li-ght.kitchen")
            .await,
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "Invalid filter_entity_id"})
        )
    );
    // Default window: the last day, two entities in the order asked.
    let (status, history) = client
        .get_json("/api/history/period?filter_entity_id=sensor.outdoor_humidity,lock.front_door")
        .await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_json_snapshot!("history_last_day", history);

    // A window from 03:00 (percent-encoded offset in the path) to 09:00: the state in
    // effect at the start is reported at the start, then the changes.
    let (_, history) = client
        .get_json(
            "/api/history/period/2026-11-21T03:00:00%2B00:00?filter_entity_id=sensor.living_room_temperature&end_time=2026-11-21T09:00:00Z&minimal_response",
        )
        .await;
    let rows = history[0].as_array().unwrap();
    assert_eq!(rows[0]["last_changed"], "2026-11-21T03:00:00+00:00");
    assert_eq!(rows[0]["state"], "20.1");
    assert!(rows[0].get("attributes").is_some());
    assert_eq!(
        rows[1],
        json!({"state": "20.9", "last_changed": "2026-11-21T04:00:00+00:00"})
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    // After a service call, the new state is in the history.
    client
        .post(
            "/api/services/lock/unlock",
            &json!({"entity_id": "lock.front_door"}),
        )
        .await;
    let (_, history) = client
        .get_json("/api/history/period?filter_entity_id=lock.front_door")
        .await;
    assert_eq!(
        history[0].as_array().unwrap().last().unwrap()["state"],
        "unlocked"
    );
    // A start in the future is an empty list; an unknown entity contributes nothing.
    assert_eq!(
        client
            .get_json("/api/history/period/2030-01-01T00:00:00Z?filter_entity_id=lock.front_door")
            .await,
        (StatusCode::OK, json!([]))
    );
    assert_eq!(
        client
            .get_json("/api/history/period?filter_entity_id=light.garden")
            .await,
        (StatusCode::OK, json!([]))
    );
}

#[tokio::test]
async fn logbook_lists_state_changes_with_their_service_context() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    home.advance_clock(Duration::from_secs(60));
    client
        .post(
            "/api/services/lock/unlock",
            &json!({"entity_id": "lock.front_door"}),
        )
        .await;
    // Default window: today (UTC), all entities; sensors with units are left out.
    let (status, entries) = client.get_json("/api/logbook").await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_json_snapshot!("logbook_today", entries);
    let (_, entries) = client
        .get_json("/api/logbook/2026-11-20T12:00:00Z?entity=lock.front_door&end_time=2026-11-21T12:30:00Z")
        .await;
    let states: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["unlocked", "locked", "unlocked"]);
    assert_eq!(
        client.get_json("/api/logbook/not-a-date").await,
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "Invalid datetime"})
        )
    );
    assert_eq!(
        client
            .get_json("/api/logbook?entity=lock.front_door&context_id=01ABC")
            .await,
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "Can't combine entity with context_id"})
        )
    );
}

#[tokio::test]
async fn templates_render_states_and_attributes_as_plain_text() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    let render = |template: &str| {
        let body = json!({"template": template});
        let client = &client;
        async move {
            let response = client
                .http
                .post(format!("{}/api/template", client.base))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            (
                response.status(),
                content_type,
                response.text().await.unwrap(),
            )
        }
    };
    let ok = |text: &str| {
        (
            StatusCode::OK,
            "text/plain; charset=utf-8".to_owned(),
            text.to_owned(),
        )
    };
    assert_eq!(
        render("{{ states('sensor.living_room_temperature') }}").await,
        ok("21.4")
    );
    assert_eq!(
        render("It is {{ states(\"sensor.living_room_temperature\") }} {{ state_attr('sensor.living_room_temperature', 'unit_of_measurement') }} ").await,
        ok("It is 21.4 °C")
    );
    assert_eq!(
        render("{{ state_attr('light.living_room','brightness') }}").await,
        ok("180")
    );
    assert_eq!(
        render("{{ state_attr('light.kitchen','brightness') }}").await,
        ok("None")
    );
    assert_eq!(render("{{ states('light.garden') }}").await, ok("unknown"));
    assert_eq!(
        render("{{ is_state('lock.front_door', 'locked') }}").await,
        ok("True")
    );
    assert_eq!(render("no template here").await, ok("no template here"));
    let (status, content_type, body) = render("{{ now() }}").await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::BAD_REQUEST, "application/json")
    );
    let message: Value = serde_json::from_str(&body).unwrap();
    assert!(
        message["message"]
            .as_str()
            .unwrap()
            .starts_with("Error rendering template: "),
        "{message}"
    );
    let (status, _, _) = render("{% for s in states %}{% endfor %}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        client.post_json("/api/template", &json!(["x"])).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "Template data should be a JSON object"})
        )
    );
}

#[tokio::test]
async fn events_are_fired_and_recorded() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    assert_eq!(
        client
            .post_json("/api/events/agent_note", &json!({"text": "hello"}))
            .await,
        (
            StatusCode::OK,
            json!({"message": "Event agent_note fired."})
        )
    );
    assert_eq!(
        client
            .post_json("/api/events/agent_note", &json!([1]))
            .await,
        (
            StatusCode::BAD_REQUEST,
            json!({"message": "Event data should be a JSON object"})
        )
    );
    let events = home.fired_events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].event_type.as_str(), &events[0].data),
        ("agent_note", &json!({"text": "hello"}))
    );
}

#[tokio::test]
async fn requests_are_recorded_with_headers_and_bodies() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    client
        .post(
            "/api/services/switch/turn_on",
            &json!({"entity_id": "switch.coffee_maker"}),
        )
        .await;
    client.get("/api/states?x=1").await;
    let requests = home.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("POST", "/api/services/switch/turn_on")
    );
    assert_eq!(
        requests[0].header("Authorization"),
        Some("Bearer test-token")
    );
    assert_eq!(requests[0].body, r#"{"entity_id":"switch.coffee_maker"}"#);
    assert_eq!(
        (requests[1].path.as_str(), requests[1].query.as_deref()),
        ("/api/states", Some("x=1"))
    );
    home.clear_requests();
    assert!(home.requests().is_empty());
}

#[tokio::test]
async fn injected_faults_replace_responses_before_or_after_handling() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    home.inject(Fault::status(500).on_path("/api/services").once());
    let body = json!({"entity_id": "switch.coffee_maker"});
    assert_eq!(
        client.post("/api/services/switch/turn_on", &body).await,
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error\n\nServer got itself in trouble".into()
        )
    );
    assert_eq!(
        home.state("switch.coffee_maker").unwrap()["state"],
        "off",
        "failed before handling"
    );
    assert_eq!(home.service_call_count(), 0);
    // `once`: the next call goes through; other paths were never affected.
    assert_eq!(client.get("/api/").await.0, StatusCode::OK);
    assert_eq!(
        client.post("/api/services/switch/turn_on", &body).await.0,
        StatusCode::OK
    );

    home.inject(Fault::non_json("<html>502 Bad Gateway</html>").times(2));
    assert_eq!(
        client.get("/api/states").await,
        (StatusCode::OK, "<html>502 Bad Gateway</html>".into())
    );
    assert_eq!(
        client.get("/api/config").await.1,
        "<html>502 Bad Gateway</html>"
    );
    assert_eq!(client.get("/api/").await.0, StatusCode::OK);

    // After handling: the action happened, the answer is lost.
    home.inject(
        Fault::message(503, "Service unavailable")
            .after_handling()
            .once(),
    );
    assert_eq!(
        client
            .post_json("/api/services/switch/turn_off", &body)
            .await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"message": "Service unavailable"})
        )
    );
    assert_eq!(home.state("switch.coffee_maker").unwrap()["state"], "off");
    assert_eq!(home.service_call_count(), 2);

    home.inject(Fault::status(404));
    assert_eq!(
        client.get("/api/").await,
        (StatusCode::NOT_FOUND, "404: Not Found".into())
    );
    home.clear_faults();
    assert_eq!(client.get("/api/").await.0, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn delay_faults_use_tokio_time() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    home.inject(Fault::delay(Duration::from_secs(30)).once());
    let started = tokio::time::Instant::now();
    assert_eq!(client.get("/api/").await.0, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_secs(30));
}

#[tokio::test]
async fn paused_requests_wait_until_resumed() {
    let home = fixed_demo();
    let client = Client::start(&home).await;
    home.pause();
    let body = json!({"entity_id": "lock.front_door"});
    let call = client.post("/api/services/lock/unlock", &body);
    let check = async {
        home.wait_until_held(1).await;
        // Held before handling: recorded, but nothing happened yet.
        assert_eq!(home.requests().len(), 1);
        assert_eq!(home.service_call_count(), 0);
        assert_eq!(home.state("lock.front_door").unwrap()["state"], "locked");
        home.resume();
    };
    let ((status, _), ()) = tokio::join!(call, check);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(home.held_count(), 1);
    assert_eq!(home.state("lock.front_door").unwrap()["state"], "unlocked");
}

#[tokio::test]
async fn other_credential_kinds_are_checked() {
    let cases = [
        (
            Credential::Header {
                name: "X-Api-Key".into(),
                value: "k3y".into(),
            },
            vec![("x-api-key", "k3y")],
            "",
        ),
        (
            Credential::Query {
                name: "api_key".into(),
                value: "s3cret&=".into(),
            },
            vec![],
            "?api_key=s3cret%26%3D",
        ),
        (
            Credential::Basic {
                username: "ha".into(),
                password: "pa:ss".into(),
            },
            vec![("authorization", "Basic aGE6cGE6c3M=")],
            "",
        ),
    ];
    for (credential, headers, query) in cases {
        let home = HomeAssistant::builder()
            .credential(credential.clone())
            .build()
            .unwrap();
        let client = Client::start(&home).await;
        let mut good = client.http.get(format!("{}/api/{query}", client.base));
        for (name, value) in &headers {
            good = good.header(*name, *value);
        }
        assert_eq!(
            good.send().await.unwrap().status(),
            StatusCode::OK,
            "{credential:?}"
        );
        let bad = client
            .http
            .get(format!("{}/api/?api_key=wrong", client.base))
            .header("x-api-key", "wrong");
        assert_eq!(
            bad.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "{credential:?}"
        );
        assert!(
            !format!("{credential:?}").contains("s3cret")
                && !format!("{credential:?}").contains("k3y")
        );
    }
}

#[tokio::test]
async fn set_state_and_shutdown() {
    let home = HomeAssistant::demo(TOKEN);
    let (_, server) = home.spawn("127.0.0.1:0").await.unwrap();
    let url = server.url();
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{url}/api/states/sensor.new_thing"))
        .bearer_auth(TOKEN)
        .json(&json!({"state": "3", "attributes": {"unit_of_measurement": "W"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["location"],
        "/api/states/sensor.new_thing"
    );
    assert_eq!(home.state("sensor.new_thing").unwrap()["state"], "3");
    assert!(
        home.set_state("sensor.new_thing", "4", serde_json::Map::new())
            .unwrap()
    );
    server.shutdown().await.unwrap();
    assert!(
        http.get(format!("{url}/api/")).send().await.is_err(),
        "server stopped"
    );
}

#[test]
fn builder_rejects_bad_entities() {
    use agent_gate_sim::home_assistant::SimulatorError;
    let build = |entities: Vec<Entity>| {
        entities
            .into_iter()
            .fold(HomeAssistant::builder(), |b, e| b.entity(e))
            .build()
            .map(|_| ())
    };
    assert_eq!(
        build(vec![Entity::new("Light.Kitchen", "on")]),
        Err(SimulatorError::InvalidEntityId("Light.Kitchen".into()))
    );
    assert_eq!(
        build(vec![
            Entity::new("light.a", "on"),
            Entity::new("light.a", "off")
        ]),
        Err(SimulatorError::DuplicateEntity("light.a".into()))
    );
    assert_eq!(
        build(vec![
            Entity::new("light.a", "on")
                .changed_ago(Duration::from_secs(60))
                .past_state(Duration::from_secs(30), "off")
        ]),
        Err(SimulatorError::PastStateNotEarlier("light.a".into()))
    );
    assert_eq!(
        HomeAssistant::demo("t").states().len(),
        12,
        "the demo home builds"
    );
}
