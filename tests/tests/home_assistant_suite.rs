//! Every bundled Home Assistant tool end to end: the SDK client over a real WebSocket, the real
//! `agent-gate` binary (`serve --insecure`, from config files in a temp dir), Home Assistant
//! over real HTTP, and the simulated Telegram Bot API where a human presses the buttons.
//!
//! Which Home Assistant: by default the simulator's copy of Home Assistant Core's `demo:`
//! home ([`HomeAssistant::core_demo`]). With `AGENT_GATE_REAL_HA_URL` and
//! `AGENT_GATE_REAL_HA_TOKEN` set, a real Home Assistant set up by `.ci/real-ha.sh` (the
//! demo integration and `.ci/ha/configuration.yaml`); `.ci/run` runs this suite once more that
//! way. The assertions are the same for both, so the simulator cannot drift from the real
//! thing unnoticed. Setting only one of the two variables is an error, not a silent fallback.
//!
//! The tests run concurrently against one home, so each changes entities no other test reads.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_gate::ha::HomeAssistant as _;
use agent_gate::{AgentGateClient, CallEvent, CallOptions, DeniedBy, ErrorKind};
use agent_gate_sim::home_assistant::{HomeAssistant, RunningHomeAssistant};
use agent_gate_sim::telegram::{FakeTelegram, RunningFakeTelegram};
use futures_util::StreamExt;
use serde_json::{Value, json};
use support::{ALICE, BOT_TOKEN, CHAT, alice, client, tools_toml};
use tokio::sync::oneshot;

const AGENT_TOKEN: &str = "suite-agent-token-0123456789abcdef";
const SIM_TOKEN: &str = "suite-home-assistant-token";

/// The suite's policy: locks are denied, switches ask a human, reads and the other services
/// the suite uses are allowed.
const PERMISSIONS: &str = r#"
rules:
  - pattern: "ha_call_service(*, lock.*)"
    action: deny
    description: "Locks are never operated by agents"
  - pattern: "ha_get_history(lock.*)"
    action: deny
    description: "Nobody reads when the doors were opened"
  - pattern: "ha_call_service(switch.*)"
    action: ask
    description: "Switches need a human"
defaults:
  - pattern: "ha_get_*"
    action: allow
  - pattern: "ha_render_template"
    action: allow
  - pattern: "ha_call_service(light.*)"
    action: allow
  - pattern: "ha_call_service(input_boolean.*)"
    action: allow
  - pattern: "ha_call_service(weather.get_forecasts, weather.*)"
    action: allow
  - pattern: "ha_call_service(calendar.get_events, calendar.*)"
    action: allow
  - pattern: "ha_call_service(script.agent_gate_note, )"
    action: allow
  - pattern: "ha_call_service(scene.turn_on, scene.agent_gate_evening)"
    action: allow
  - pattern: "ha_fire_event(agent_gate_*)"
    action: allow
  - pattern: "*"
    action: ask
"#;

/// The Home Assistant the suite runs against.
enum Home {
    Simulated {
        home: HomeAssistant,
        server: RunningHomeAssistant,
    },
    Real {
        url: String,
        token: String,
    },
}

impl Home {
    async fn start() -> Self {
        let url = std::env::var("AGENT_GATE_REAL_HA_URL").ok();
        let token = std::env::var("AGENT_GATE_REAL_HA_TOKEN").ok();
        match (url, token) {
            (Some(url), Some(token)) => Self::Real { url, token },
            (None, None) => {
                let home = HomeAssistant::core_demo(SIM_TOKEN);
                let (_, server) = home.spawn("127.0.0.1:0").await.unwrap();
                Self::Simulated { home, server }
            }
            _ => panic!(
                "set both AGENT_GATE_REAL_HA_URL and AGENT_GATE_REAL_HA_TOKEN to run the suite against a real Home Assistant, or neither for the simulator"
            ),
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Simulated { server, .. } => server.url(),
            Self::Real { url, .. } => url.clone(),
        }
    }

    fn token(&self) -> &str {
        match self {
            Self::Simulated { .. } => SIM_TOKEN,
            Self::Real { token, .. } => token,
        }
    }

    /// Service calls that reached the simulator (`None` for a real Home Assistant).
    fn service_calls(&self) -> Option<usize> {
        match self {
            Self::Simulated { home, .. } => Some(home.service_call_count()),
            Self::Real { .. } => None,
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gateway binary with the suite's files, and the simulated Telegram its approvals go
/// to; the process is killed when dropped.
struct Suite {
    home: Home,
    telegram: FakeTelegram,
    _tg: RunningFakeTelegram,
    _dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Suite {
    async fn start() -> Self {
        let home = Home::start().await;
        let telegram = FakeTelegram::new(BOT_TOKEN);
        let tg = telegram.spawn("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (port, health_port) = (free_port(), free_port());
        let config = format!(
            r#"
gateway:
  host: 127.0.0.1
  port: {port}
  health_host: 127.0.0.1
  health_port: {health_port}
agents:
  - id: suite
    token: "{AGENT_TOKEN}"
tools: "{tools}"
services:
  homeassistant:
    url: "{ha}"
    token: "{ha_token}"
    timeout: 30
storage:
  path: "{db}"
approvers:
  - type: telegram
    token: "{BOT_TOKEN}"
    chat_id: {CHAT}
    allowed_users: [{ALICE}]
    api_url: "{tg}"
approval_timeout: 120
rate_limit:
  max_requests_per_minute: 10000
"#,
            tools = tools_toml().display(),
            ha = home.url(),
            ha_token = home.token(),
            db = dir.path().join("agent-gate.db").display(),
            tg = tg.url(),
        );
        let config_path = dir.path().join("config.yaml");
        let permissions_path = dir.path().join("permissions.yaml");
        std::fs::write(&config_path, config).unwrap();
        std::fs::write(&permissions_path, PERMISSIONS).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_agent-gate-e2e-gateway"))
            .arg("serve")
            .arg("--insecure")
            .arg("--config")
            .arg(&config_path)
            .arg("--permissions")
            .arg(&permissions_path)
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gateway binary starts");
        let stderr = child.stderr.take().unwrap();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("\"ready\"")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(Ok(()));
                }
                if ready.is_some() {
                    seen.push(line);
                }
            }
            if let Some(tx) = ready.take() {
                let _ = tx.send(Err(seen.join("\n")));
            }
        });
        match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(log))) => panic!("the gateway exited before it was ready:\n{log}"),
            other => panic!("the gateway did not become ready: {other:?}"),
        }
        Self {
            home,
            telegram,
            _tg: tg,
            _dir: dir,
            child,
            port,
        }
    }

    async fn agent(&self) -> AgentGateClient {
        client(&format!("ws://127.0.0.1:{}", self.port), AGENT_TOKEN).await
    }

    /// Waits for the `n`th approval message and presses `label` as alice.
    async fn press(&self, n: usize, label: &str) -> String {
        let message = self.telegram.wait_for_sent(n).await;
        let data = message
            .callback_data(label)
            .unwrap_or_else(|| panic!("no {label} button on {message:?}"))
            .to_owned();
        let query = self
            .telegram
            .press_button(&alice(), message.message_id, &data)
            .unwrap();
        self.telegram.wait_for_answer(&query).await;
        message.text
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ISO 8601 UTC time `offset_seconds` from now (seconds precision).
fn iso_from_now(offset_seconds: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = i64::try_from(now).unwrap() + offset_seconds;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn entity_ids(states: &Value) -> Vec<String> {
    states
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|s| s["entity_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The tools this suite calls; a test checks it is every tool of `tools.toml`.
const EXERCISED: [&str; 12] = [
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
];

#[test]
fn the_suite_exercises_every_bundled_tool() {
    let manifest = agent_gate_manifest::Manifest::load(&[tools_toml()])
        .unwrap()
        .manifest;
    let names: Vec<&str> = manifest.tools().map(|t| t.name.as_str()).collect();
    assert_eq!(names, EXERCISED);
}

#[tokio::test]
async fn reads_answer_as_home_assistant_does() {
    let suite = Suite::start().await;
    let agent = suite.agent().await;

    let state = agent.ha_get_state("light.bed_light").await.unwrap();
    assert_eq!(state.entity_id, "light.bed_light");
    assert!(["on", "off"].contains(&state.state.as_str()), "{state:?}");
    assert_eq!(state.attributes["friendly_name"], "Bed Light");
    assert!(
        state.last_reported.is_some(),
        "Home Assistant reports last_reported: {state:?}"
    );

    let states = agent.ha_get_states().await.unwrap();
    let ids: Vec<&str> = states.iter().map(|s| s.entity_id.as_str()).collect();
    for id in [
        "light.bed_light",
        "lock.front_door",
        "switch.decorative_lights",
        "calendar.calendar_1",
        "weather.demo_weather_south",
        "input_boolean.agent_gate_test",
        "script.agent_gate_note",
        "scene.agent_gate_evening",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }

    let services = agent.ha_get_services().await.unwrap();
    let domain = |name: &str| {
        services
            .as_array()
            .and_then(|list| list.iter().find(|d| d["domain"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no domain {name} in {services}"))
    };
    assert!(domain("light")["services"]["turn_on"].is_object());
    assert_eq!(
        domain("weather")["services"]["get_forecasts"]["response"],
        json!({"optional": false})
    );
    assert_eq!(
        domain("script")["services"]["agent_gate_note"]["response"],
        json!({"optional": true})
    );

    let config = agent.ha_get_config().await.unwrap();
    let components: Vec<&str> = config["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for component in ["history", "logbook", "recorder", "light", "calendar"] {
        assert!(components.contains(&component), "{component}: {config}");
    }
    // Which Home Assistant answered: only the real one has loaded the demo integration.
    match &suite.home {
        Home::Real { .. } => {
            eprintln!("against the real Home Assistant {}", config["version"]);
            assert!(components.contains(&"demo"), "{config}");
            if let Ok(version) = std::env::var("AGENT_GATE_REAL_HA_VERSION") {
                assert_eq!(config["version"], json!(version));
            }
        }
        Home::Simulated { .. } => assert!(!components.contains(&"demo"), "{config}"),
    }

    let calendars = agent.ha_get_calendars().await.unwrap();
    assert_eq!(
        calendars,
        json!([
            {"name": "Calendar 1", "entity_id": "calendar.calendar_1"},
            {"name": "Calendar 2", "entity_id": "calendar.calendar_2"},
        ])
    );
    let events = agent
        .ha_get_calendar_events(
            "calendar.calendar_1",
            iso_from_now(-3600),
            iso_from_now(3 * 3600),
        )
        .await
        .unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["summary"], "Future Event");
    assert_eq!(events[0]["location"], "Future Location");
    assert!(events[0]["start"]["dateTime"].is_string(), "{events:?}");
    assert_eq!(events[0]["rrule"], Value::Null);
    let none = agent
        .ha_get_calendar_events(
            "calendar.calendar_1",
            iso_from_now(-3 * 3600),
            iso_from_now(-2 * 3600),
        )
        .await
        .unwrap();
    assert_eq!(none, json!([]));

    let areas = agent.ha_get_areas().await.unwrap();
    assert_eq!(
        areas,
        json!([
            {"area_id": "living_room", "name": "Living Room", "entities": []},
            {"area_id": "kitchen", "name": "Kitchen", "entities": []},
            {"area_id": "bedroom", "name": "Bedroom", "entities": ["light.bed_light"]},
        ])
    );

    let text = agent
        .ha_render_template("{{ greeting }}, {{ state_attr('input_boolean.agent_gate_test', 'friendly_name') }}{{ missing }}")
        .variables(json!({"greeting": "hello"}))
        .await
        .unwrap();
    assert_eq!(text, "hello, agent-gate test");
    agent.close().await;
}

#[tokio::test]
async fn services_take_several_entities_and_answer_with_data() {
    let suite = Suite::start().await;
    let agent = suite.agent().await;

    let changed = agent
        .ha_call_service("light", "turn_off")
        .entity_id(["light.ceiling_lights", "light.kitchen_lights"])
        .await
        .unwrap();
    let mut ids = entity_ids(&changed);
    ids.sort();
    assert_eq!(ids, ["light.ceiling_lights", "light.kitchen_lights"]);
    assert!(
        changed
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "off")
    );

    // Services that answer: the whole `{changed_states, service_response}`.
    let forecasts = agent
        .ha_call_service("weather", "get_forecasts")
        .entity_id("weather.demo_weather_south")
        .data(json!({"type": "daily"}))
        .return_response(true)
        .await
        .unwrap();
    assert_eq!(forecasts["changed_states"], json!([]));
    let forecast = forecasts["service_response"]["weather.demo_weather_south"]["forecast"]
        .as_array()
        .unwrap_or_else(|| panic!("{forecasts}"));
    assert!(!forecast.is_empty());
    assert!(forecast[0]["datetime"].is_string() && forecast[0]["condition"].is_string());

    let events = agent
        .ha_call_service("calendar", "get_events")
        .entity_id(["calendar.calendar_1", "calendar.calendar_2"])
        .data(json!({"duration": {"hours": 24}}))
        .return_response(true)
        .await
        .unwrap();
    let response = &events["service_response"];
    assert_eq!(
        response["calendar.calendar_1"]["events"][0]["summary"], "Future Event",
        "{events}"
    );
    assert!(response["calendar.calendar_1"]["events"][0]["start"].is_string());

    let ran = agent
        .ha_call_service("script", "agent_gate_note")
        .return_response(true)
        .await
        .unwrap();
    assert_eq!(ran["service_response"], json!({}));
    assert!(entity_ids(&ran["changed_states"]).contains(&"script.agent_gate_note".to_owned()));

    // `return_response: false` sends no flag: a plain call and its list of changed states.
    let scene = agent
        .ha_call_service("scene", "turn_on")
        .entity_id("scene.agent_gate_evening")
        .return_response(false)
        .await
        .unwrap();
    assert!(
        entity_ids(&scene).contains(&"scene.agent_gate_evening".to_owned()),
        "{scene}"
    );
    agent.close().await;
}

#[tokio::test]
async fn history_and_logbook_take_their_options() {
    let suite = Suite::start().await;
    let agent = suite.agent().await;
    let start = iso_from_now(-3600);
    for _ in 0..2 {
        agent
            .ha_call_service("input_boolean", "toggle")
            .entity_id("input_boolean.agent_gate_test")
            .await
            .unwrap();
    }
    // The recorder writes in the background: wait until both toggles are in the history.
    let mut history = Value::Null;
    for _ in 0..50 {
        history = agent
            .ha_get_history(["input_boolean.agent_gate_test", "light.bed_light"])
            .start_time(start.clone())
            .end_time(iso_from_now(3600))
            .minimal_response(true)
            .no_attributes(true)
            .await
            .unwrap();
        if history[0].as_array().is_some_and(|l| l.len() >= 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lists = history.as_array().unwrap();
    assert_eq!(lists.len(), 2, "one list per entity: {history}");
    assert_eq!(lists[0][0]["entity_id"], "input_boolean.agent_gate_test");
    assert_eq!(lists[1][0]["entity_id"], "light.bed_light");
    let boolean = lists[0].as_array().unwrap();
    assert!(boolean.len() >= 3, "{history}");
    assert_eq!(boolean[0]["attributes"], json!({}), "no_attributes");
    for later in &boolean[1..] {
        let keys: Vec<&String> = later.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["state", "last_changed"], "minimal_response: {later}");
    }

    let full = agent
        .ha_get_history("input_boolean.agent_gate_test")
        .start_time(start.clone())
        .no_attributes(true)
        .await
        .unwrap();
    let full = full[0].as_array().unwrap();
    assert!(full.len() >= 3);
    assert!(
        full.iter()
            .all(|s| s["attributes"] == json!({}) && s["entity_id"].is_string())
    );

    let entries = agent
        .ha_get_logbook()
        .entity_id("input_boolean.agent_gate_test")
        .start_time(start)
        .end_time(iso_from_now(3600))
        .await
        .unwrap();
    let toggles: Vec<&Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["context_service"] == "toggle")
        .collect();
    assert!(toggles.len() >= 2, "{entries}");
    assert_eq!(toggles[0]["entity_id"], "input_boolean.agent_gate_test");
    assert_eq!(toggles[0]["name"], "agent-gate test");
    let none = agent
        .ha_get_logbook()
        .entity_id("input_boolean.agent_gate_test")
        .start_time(iso_from_now(-7200))
        .end_time(iso_from_now(-7100))
        .await
        .unwrap();
    assert_eq!(none, json!([]));
    agent.close().await;
}

#[tokio::test]
async fn the_policy_denies_asks_and_runs_what_a_human_approves() {
    let suite = Suite::start().await;
    let agent = suite.agent().await;
    let calls_before = suite.home.service_calls();

    let denied = agent
        .ha_call_service("lock", "unlock")
        .entity_id("lock.front_door")
        .await
        .unwrap_err();
    assert_eq!(
        denied.kind(),
        &ErrorKind::Denied {
            by: DeniedBy::Policy
        }
    );
    assert_eq!(denied.rule(), Some("ha_call_service(*, lock.*)"));
    // Each entity of a list is judged: one lock among lights denies the call.
    let denied = agent
        .ha_call_service("light", "turn_on")
        .entity_id(["light.bed_light", "lock.front_door"])
        .await
        .unwrap_err();
    assert_eq!(
        denied.rule(),
        Some("ha_call_service(*, lock.*)"),
        "{denied}"
    );
    let denied = agent
        .ha_get_history(["sensor.outside_temperature", "lock.kitchen_door"])
        .await
        .unwrap_err();
    assert_eq!(denied.rule(), Some("ha_get_history(lock.*)"), "{denied}");
    assert_eq!(
        suite.home.service_calls(),
        calls_before,
        "nothing reached Home Assistant"
    );

    // Asked and approved: runs once, with the approval message naming the entity.
    let mut events = agent.tool_request_stream(
        "ha_call_service",
        json!({"domain": "switch", "service": "turn_off", "entity_id": "switch.decorative_lights"}),
        CallOptions::new().request_id("suite-switch-1"),
    );
    let Some(CallEvent::AwaitingApproval { request_id, .. }) = events.next().await else {
        panic!("expected awaiting_approval first");
    };
    assert_eq!(request_id, "suite-switch-1");
    let text = suite.press(1, "✅ Allow").await;
    assert!(text.contains("switch.decorative_lights"), "{text}");
    let Some(CallEvent::Result(data)) = events.next().await else {
        panic!("expected the result");
    };
    assert_eq!(data["result"][0]["entity_id"], "switch.decorative_lights");
    assert_eq!(data["result"][0]["state"], "off");
    let state = agent
        .ha_get_state("switch.decorative_lights")
        .await
        .unwrap();
    assert_eq!(state.state, "off");

    // Asked and denied by the human: never runs.
    let mut events = agent.tool_request_stream(
        "ha_call_service",
        json!({"domain": "switch", "service": "turn_on", "entity_id": "switch.ac"}),
        CallOptions::new().request_id("suite-switch-2"),
    );
    let Some(CallEvent::AwaitingApproval { .. }) = events.next().await else {
        panic!("expected awaiting_approval first");
    };
    suite.press(2, "❌ Deny").await;
    let Some(CallEvent::Error(error)) = events.next().await else {
        panic!("expected the denial");
    };
    assert_eq!(
        error.kind(),
        &ErrorKind::Denied {
            by: DeniedBy::Human
        }
    );
    assert_eq!(agent.ha_get_state("switch.ac").await.unwrap().state, "off");
    agent.close().await;
}

#[tokio::test]
async fn failures_say_what_was_sent_and_what_home_assistant_said() {
    let suite = Suite::start().await;
    let agent = suite.agent().await;
    let failure = |e: &agent_gate::Error| {
        assert_eq!(e.code().map(|c| c.code()), Some(-32004), "{e}");
        e.execution_failure().cloned().unwrap()
    };

    let e = agent
        .ha_get_state("light.does_not_exist")
        .await
        .unwrap_err();
    let f = failure(&e);
    assert_eq!(f.status, Some(404));
    assert_eq!(f.service_message.as_deref(), Some("Entity not found."));

    // Home Assistant gives no reason for an unknown service: the gateway names what it sent.
    let e = agent
        .ha_call_service("light", "frobnicate")
        .entity_id("light.bed_light")
        .data(json!({"speed": 3}))
        .await
        .unwrap_err();
    let f = failure(&e);
    assert_eq!(f.status, Some(400));
    assert_eq!(f.service_message.as_deref(), Some("400: Bad Request"));
    for part in [
        "light.frobnicate",
        "light.bed_light",
        r#"{"speed":3}"#,
        "ha_get_services",
    ] {
        assert!(e.message().contains(part), "{part} in {}", e.message());
    }

    let e = agent
        .ha_call_service("weather", "get_forecasts")
        .entity_id("weather.demo_weather_south")
        .data(json!({"type": "daily"}))
        .await
        .unwrap_err();
    let f = failure(&e);
    assert_eq!(f.status, Some(400));
    assert!(
        f.service_message
            .as_deref()
            .is_some_and(|m| m.contains("Add ?return_response")),
        "{f:?}"
    );

    let e = agent
        .ha_call_service("light", "turn_on")
        .entity_id("light.bed_light")
        .return_response(true)
        .await
        .unwrap_err();
    assert_eq!(
        failure(&e).service_message.as_deref(),
        Some("Service does not support responses. Remove return_response from request.")
    );

    let e = agent.ha_render_template("{{ nope( }}").await.unwrap_err();
    let f = failure(&e);
    assert_eq!(f.status, Some(400));
    assert!(
        f.service_message
            .as_deref()
            .is_some_and(|m| m.starts_with("Error rendering template: TemplateSyntaxError")),
        "{f:?}"
    );

    for (calendar, start, end) in [
        (
            "calendar.does_not_exist",
            iso_from_now(0),
            iso_from_now(3600),
        ),
        ("calendar.calendar_1", iso_from_now(3600), iso_from_now(0)),
    ] {
        let e = agent
            .ha_get_calendar_events(calendar, start, end)
            .await
            .unwrap_err();
        assert_eq!(failure(&e).status, Some(400), "{calendar}: {e}");
    }

    // Validation before anything is sent.
    let e = agent
        .tool_request("ha_get_history", json!({"entity_id": []}))
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some(-32600), "{e}");
    agent.close().await;
}

#[tokio::test]
async fn events_are_fired() {
    let suite = Suite::start().await;
    let agent = suite.agent().await;
    let fired = agent
        .ha_fire_event("agent_gate_suite")
        .event_data(json!({"note": "hello"}))
        .await
        .unwrap();
    assert_eq!(fired, json!({"message": "Event agent_gate_suite fired."}));
    agent.close().await;
}
