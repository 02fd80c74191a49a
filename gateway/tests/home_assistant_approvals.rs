//! The Home Assistant phone app approver end to end: a real gateway (WebSocket agents, SQLite
//! in a temp dir) configured with `type: home_assistant` (and the web page and a Telegram bot
//! on the fake Bot API beside it), in front of the simulated Home Assistant, which records
//! what `notify.mobile_app_<device>` is sent and fires `mobile_app_notification_action` to
//! the gateway's real WebSocket subscription when the tests "press" an action.

#[path = "web_support/mod.rs"]
mod web;

use std::sync::Arc;
use std::time::Duration;

use agent_gate_gateway::app::{Gateway, RunningGateway};
use agent_gate_gateway::cli::serve::approvers_from_config;
use agent_gate_gateway::config::{Config, ProcessEnv};
use agent_gate_gateway::messengers::home_assistant::{
    HomeAssistantApprover, HomeAssistantHealth, REFUSED_AUDIT_KIND,
};
use agent_gate_gateway::store::{AuditKind, AuditQuery, RequestState, Timestamp};
use agent_gate_sim::home_assistant::{
    DEFAULT_TOKEN, HomeAssistant, MobilePush, RunningHomeAssistant, USER_ID,
};
use agent_gate_sim::telegram::{FakeTelegram, FakeUser, RunningFakeTelegram};
use serde_json::{Value, json};
use web::server::{self, Client, Options, PI_TOKEN};
use web::{Browser, WEB_TOKEN, csrf_of, light_on};

const DEVICE: &str = "pixel_7";
const BOT_TOKEN: &str = "4242:fake-bot-token";
const CHAT: i64 = -1_001_234_567;
const TELEGRAM_USER: u64 = 1001;
const ACTOR: &str = "home_assistant:5f1c0d6a3b8e4e2f9a7d41c2b6e8f013";

struct Harness {
    dir: tempfile::TempDir,
    home: HomeAssistant,
    ha_server: RunningHomeAssistant,
    /// The Telegram Bot API of the third approver, beside the web page and the phone.
    telegram: FakeTelegram,
    tg_server: RunningFakeTelegram,
    /// YAML lines (indented by four spaces) added to the phone approver's entry.
    extra: String,
    gateway: Option<RunningGateway>,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with("").await
    }

    async fn start_with(extra: &str) -> Self {
        let home = HomeAssistant::builder()
            .token(DEFAULT_TOKEN)
            .demo_entities()
            .mobile_app_device(DEVICE)
            .build()
            .unwrap();
        let (_, ha_server) = home.spawn("127.0.0.1:0").await.unwrap();
        let telegram = FakeTelegram::new(BOT_TOKEN);
        let tg_server = telegram.spawn("127.0.0.1:0").await.unwrap();
        let mut h = Self {
            dir: tempfile::tempdir().unwrap(),
            home,
            ha_server,
            telegram,
            tg_server,
            extra: extra.to_owned(),
            gateway: None,
        };
        h.launch().await;
        h
    }

    /// Starts a gateway on the same database, and waits until its approver listens.
    async fn launch(&mut self) {
        let mut text =
            server::config_text(self.dir.path(), self.ha_server.addr(), &Options::default());
        // `url` and `token` come from services.homeassistant.
        text.push_str(&format!(
            "approvers:\n  - type: web\n    name: alice\n    token: \"{WEB_TOKEN}\"\n  - type: telegram\n    token: \"{BOT_TOKEN}\"\n    chat_id: {CHAT}\n    allowed_users: [{TELEGRAM_USER}]\n    api_url: \"{}\"\n  - type: home_assistant\n    devices: [{DEVICE}]\n    users: [\"{USER_ID}\"]\n{}",
            self.tg_server.url(),
            self.extra
        ));
        let path = self.dir.path().join("config.yaml");
        std::fs::write(&path, &text).unwrap();
        let mut config = Config::parse(&text, &path, &ProcessEnv).expect("test config is valid");
        config.gateway.port = 0;
        config.gateway.health_port = 0;
        let subscriptions = self.home.event_subscriptions();
        let mut builder = Gateway::builder(
            config.clone(),
            server::load_policy(self.dir.path()),
            server::manifest(),
        )
        .insecure(true);
        for approver in approvers_from_config(&config).unwrap() {
            builder = builder.approver(approver);
        }
        self.gateway = Some(builder.start().await.expect("gateway starts"));
        tokio::time::timeout(
            Duration::from_secs(10),
            self.home.wait_for_subscriptions(subscriptions + 1),
        )
        .await
        .expect("the approver subscribes to notification actions");
    }

    fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("gateway running")
    }

    async fn shutdown(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await.expect("clean shutdown");
        }
    }

    async fn agent(&self) -> Client {
        let mut client = Client::connect(&self.gateway().ws_url()).await;
        let answer = client.call("auth", json!({"token": PI_TOKEN})).await;
        assert_eq!(answer["result"]["status"], "authenticated", "{answer}");
        client
    }

    async fn pushes(&self, count: usize) -> Vec<MobilePush> {
        tokio::time::timeout(Duration::from_secs(10), self.home.wait_for_pushes(count))
            .await
            .unwrap_or_else(|_| panic!("{count} pushes; got {:?}", self.home.mobile_pushes()))
    }

    async fn state_of(&self, request_id: &str) -> RequestState {
        self.gateway()
            .store()
            .get_request("pi", request_id)
            .await
            .unwrap()
            .expect("request stored")
            .state
    }

    async fn wait_for_state(&self, request_id: &str, state: RequestState) {
        for _ in 0..200 {
            if self.state_of(request_id).await == state {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("request {request_id} never became {state:?}");
    }

    async fn healthz(&self) -> Value {
        let addr = self.gateway().health_addr().expect("health endpoint");
        let response = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    /// A logged-in session of the web page, with its CSRF token.
    async fn web_session(&self) -> Browser {
        let addr = self.gateway().health_addr().expect("HTTP side enabled");
        let mut browser = Browser::new(format!("http://{addr}"));
        assert_eq!(browser.login(WEB_TOKEN).await.status(), 303);
        let page = browser.get("/approvals").await;
        assert_eq!(page.status(), 200);
        browser.csrf = Some(csrf_of(&page.text().await.unwrap()));
        browser
    }
}

/// The action id of the push whose title is `title`.
fn action(push: &MobilePush, title: &str) -> String {
    push.actions()
        .iter()
        .find(|a| a["title"] == title)
        .and_then(|a| a["action"].as_str())
        .unwrap_or_else(|| panic!("no action {title:?} in {:?}", push.actions()))
        .to_owned()
}

#[tokio::test]
async fn the_phone_gets_an_actionable_notification_and_allow_runs_the_call_once() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "light-1")
        .await;
    let pushes = h.pushes(1).await;
    let push = &pushes[0];
    assert_eq!(push.device, DEVICE);
    assert_eq!(
        push.title.as_deref(),
        Some("Approval needed: ha_call_service")
    );
    assert!(
        push.message.starts_with(
            "ha_call_service(light.turn_on, light.bedroom)\nAgent: pi (request light-1)\n"
        ),
        "{}",
        push.message
    );
    assert!(push.message.contains("Expires: "), "{}", push.message);
    let titles: Vec<Value> = push.actions().iter().map(|a| a["title"].clone()).collect();
    assert_eq!(titles, [json!("Allow"), json!("Allow 1 h"), json!("Deny")]);
    let tag = push.tag().expect("a tag").to_owned();
    let code = tag.strip_prefix("agent-gate-").expect("our tag").to_owned();
    assert_eq!(code.len(), 32);
    assert_eq!(
        push.action_ids(),
        [
            format!("AGENTGATE_ALLOW_{code}"),
            format!("AGENTGATE_GRANT_{code}"),
            format!("AGENTGATE_DENY_{code}"),
        ]
    );
    assert_eq!(push.data["priority"], "high");
    assert!(
        push.data["timeout"]
            .as_i64()
            .is_some_and(|t| t > 800 && t <= 900),
        "{:?}",
        push.data
    );
    assert_eq!(
        h.home.service_call_count(),
        1,
        "only the notification so far"
    );

    h.home.press_action(&action(push, "Allow"), Some(USER_ID));
    let answer = agent.response(id).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    assert_eq!(h.home.state("light.bedroom").unwrap()["state"], "on");

    // The notification is replaced (same tag, no actions) by the outcome.
    let pushes = h.pushes(2).await;
    let replaced = &pushes[1];
    assert_eq!(replaced.tag(), Some(tag.as_str()));
    assert!(replaced.actions().is_empty(), "{replaced:?}");
    assert_eq!(replaced.title.as_deref(), Some("Approved: ha_call_service"));
    assert!(
        replaced
            .message
            .starts_with(&format!("✅ Approved by {ACTOR} at ")),
        "{}",
        replaced.message
    );
    // A second press of the same action changes nothing.
    h.home.press_action(&action(push, "Deny"), Some(USER_ID));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let record = h
        .gateway()
        .store()
        .get_request("pi", "light-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.resolved_by.as_deref(), Some(ACTOR));
    assert_eq!(
        record.approver_refs,
        Some(
            json!({"home_assistant": {"code": code, "tag": tag, "devices": [DEVICE]}, "telegram": {"chat_id": CHAT, "message_id": 1}})
        )
    );
    let light_calls = h
        .home
        .service_calls()
        .iter()
        .filter(|c| c.domain == "light")
        .count();
    assert_eq!(light_calls, 1);
    assert_eq!(h.home.mobile_pushes().len(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn deny_on_the_phone_refuses_the_call() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "light-no")
        .await;
    let push = h.pushes(1).await.remove(0);
    h.home.press_action(&action(&push, "Deny"), Some(USER_ID));
    let answer = agent.response(id).await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    let replaced = h.pushes(2).await.remove(1);
    assert_eq!(replaced.title.as_deref(), Some("Denied: ha_call_service"));
    assert!(
        replaced
            .message
            .starts_with(&format!("❌ Denied by {ACTOR} at ")),
        "{}",
        replaced.message
    );
    assert_eq!(h.home.state("light.bedroom").unwrap()["state"], "off");
    assert_eq!(h.state_of("light-no").await, RequestState::Denied);
    h.shutdown().await;
}

#[tokio::test]
async fn the_allow_for_action_grants_the_same_call_for_the_configured_time() {
    let mut h = Harness::start_with("    grant_minutes: 30\n").await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "grant-1")
        .await;
    let push = h.pushes(1).await.remove(0);
    h.home
        .press_action(&action(&push, "Allow 30 min"), Some(USER_ID));
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    let grants = h
        .gateway()
        .store()
        .live_grants(Timestamp::now())
        .await
        .unwrap();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].created_by, ACTOR);
    let lasts = grants[0].expires_at.unwrap().as_millis() - grants[0].created_at.as_millis();
    assert_eq!(lasts, 30 * 60 * 1000);
    // The same call again runs without a notification.
    let again = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "grant-2")
        .await;
    assert_eq!(agent.response(again).await["result"]["status"], "executed");
    h.pushes(2).await; // the replacement of the first one
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.home.mobile_pushes().len(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn only_listed_users_and_our_own_actions_decide() {
    // The harness lists USER_ID in `users` (a required key).
    let mut h = Harness::start_with("    grant_minutes: []\n").await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "users-1")
        .await;
    let push = h.pushes(1).await.remove(0);
    let titles: Vec<Value> = push.actions().iter().map(|a| a["title"].clone()).collect();
    assert_eq!(titles, [json!("Allow"), json!("Deny")], "no grant action");
    let allow = action(&push, "Allow");

    // Another Home Assistant user's phone, an event without a user, another notification's
    // action and a guessed code: nothing is decided.
    h.home
        .press_action(&allow, Some("0000000000000000000000000000dead"));
    h.home.press_action(&allow, None);
    h.home.press_action("OPEN_GARAGE", Some(USER_ID));
    h.home.press_action(
        "AGENTGATE_ALLOW_0123456789abcdef0123456789abcdef",
        Some(USER_ID),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.state_of("users-1").await, RequestState::Pending);
    let refused = h
        .gateway()
        .store()
        .audit_page(AuditQuery::new().kind(AuditKind::Other(REFUSED_AUDIT_KIND.to_owned())))
        .await
        .unwrap();
    assert_eq!(refused.len(), 2, "{refused:?}");
    let mut actors: Vec<&str> = refused.iter().filter_map(|e| e.actor.as_deref()).collect();
    actors.sort_unstable();
    // Without a user, the press is attributed to the approver.
    assert_eq!(
        actors,
        [
            "home_assistant:0000000000000000000000000000dead",
            "home_assistant:home_assistant"
        ]
    );
    assert!(
        refused
            .iter()
            .all(|e| e.request_id.as_deref() == Some("users-1") && e.agent_id == "pi")
    );
    assert!(
        refused.iter().all(|e| e
            .detail
            .as_ref()
            .is_some_and(|d| d["reason"] == "not in users")),
        "{refused:?}"
    );

    // The listed user decides.
    h.home.press_action(&allow, Some(USER_ID));
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    h.shutdown().await;
}

#[tokio::test]
async fn after_the_web_page_decided_the_phone_is_told_and_its_press_changes_nothing() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "both-1")
        .await;
    let push = h.pushes(1).await.remove(0);
    let mut browser = h.web_session().await;
    let (status, body) = browser.decide("pi", "both-1", "allow").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    let replaced = h.pushes(2).await.remove(1);
    assert_eq!(replaced.tag(), push.tag());
    assert!(replaced.actions().is_empty());
    assert!(
        replaced.message.starts_with("✅ Approved by web:alice at "),
        "{}",
        replaced.message
    );

    // The phone's notification was still showing: its Deny press comes too late.
    h.home.press_action(&action(&push, "Deny"), Some(USER_ID));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let record = h
        .gateway()
        .store()
        .get_request("pi", "both-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.resolved_by.as_deref(), Some("web:alice"));
    assert_eq!(record.state, RequestState::Executed);
    assert_eq!(h.home.mobile_pushes().len(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn a_press_after_a_restart_decides_the_pending_request() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    agent
        .tool_with_id("ha_call_service", light_on("light.kitchen"), "kitchen-1")
        .await;
    let push = h.pushes(1).await.remove(0);
    h.shutdown().await;
    drop(agent);

    // A new gateway on the same database: no new notification; the old one's action decides
    // (its code is found in the stored references).
    h.launch().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.kitchen"), "kitchen-1")
        .await;
    h.home.press_action(&action(&push, "Allow"), Some(USER_ID));
    let answer = agent.response(id).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    let pushes = h.pushes(2).await;
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    assert_eq!(pushes[1].tag(), push.tag());
    assert!(
        pushes[1].message.starts_with("✅ Approved by "),
        "{}",
        pushes[1].message
    );
    h.shutdown().await;
}

#[tokio::test]
async fn the_approver_reconnects_when_home_assistant_drops_the_connection() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "again-1")
        .await;
    let push = h.pushes(1).await.remove(0);
    h.home.drop_websockets();
    // The subscription ends with the connection and comes back after the back-off.
    for _ in 0..200 {
        if h.home.event_subscriptions() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::timeout(Duration::from_secs(10), h.home.wait_for_subscriptions(1))
        .await
        .expect("the approver subscribes again");
    h.home.press_action(&action(&push, "Allow"), Some(USER_ID));
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    h.wait_for_state("again-1", RequestState::Executed).await;
    let health = h.healthz().await;
    assert!(health.to_string().contains("home_assistant"), "{health}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_wrong_token_is_reported_by_health_and_never_logged() {
    let home = HomeAssistant::builder()
        .token(DEFAULT_TOKEN)
        .mobile_app_device(DEVICE)
        .build()
        .unwrap();
    let (addr, _server) = home.spawn("127.0.0.1:0").await.unwrap();
    let approver = HomeAssistantApprover::builder(format!("http://{addr}"), "not-the-token")
        .devices([DEVICE])
        .users([USER_ID])
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = server::load_config(dir.path(), addr, &Options::default());
    let gateway = Gateway::builder(config, server::load_policy(dir.path()), server::manifest())
        .approver(Arc::new(approver.clone()))
        .insecure(true)
        .start()
        .await
        .unwrap();
    let health = tokio::time::timeout(
        Duration::from_secs(10),
        approver.wait_for_health(|h| matches!(h, HomeAssistantHealth::Refused { .. })),
    )
    .await
    .expect("refused");
    let text = health.describe();
    assert!(text.contains("access token is not accepted"), "{text}");
    assert!(!text.contains("not-the-token"), "{text}");
    assert!(!format!("{approver:?}").contains("not-the-token"));
    gateway.shutdown().await.unwrap();
    assert_eq!(approver.health_status(), HomeAssistantHealth::Stopped);
}

#[test]
fn the_builder_refuses_an_approver_without_users_whose_presses_count() {
    let error = HomeAssistantApprover::builder("http://ha.local:8123", "token")
        .devices([DEVICE])
        .build()
        .unwrap_err();
    assert!(
        error.to_string().contains("no users")
            && error
                .to_string()
                .contains("list the Home Assistant user ids"),
        "{error}"
    );
    assert!(
        HomeAssistantApprover::builder("http://ha.local:8123", "token")
            .devices([DEVICE])
            .users([USER_ID])
            .build()
            .is_ok()
    );
}

/// Service calls the tools made: every call Home Assistant got but the notifications.
fn tool_calls(h: &Harness) -> usize {
    h.home.service_call_count() - h.home.mobile_pushes().len()
}

fn telegram_user() -> FakeUser {
    FakeUser::new(TELEGRAM_USER).username("alice")
}

#[tokio::test]
async fn after_telegram_decided_the_phone_is_told_and_its_press_changes_nothing() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "tg-1")
        .await;
    let push = h.pushes(1).await.remove(0);
    let message = h.telegram.wait_for_sent(1).await;
    let allow = message.callback_data("✅ Allow").unwrap().to_owned();
    h.telegram
        .press_button(&telegram_user(), message.message_id, &allow)
        .unwrap();
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    let replaced = h.pushes(2).await.remove(1);
    assert_eq!(replaced.tag(), push.tag());
    assert!(replaced.actions().is_empty());
    assert!(
        replaced
            .message
            .starts_with("✅ Approved by telegram:@alice at "),
        "{}",
        replaced.message
    );
    h.home.press_action(&action(&push, "Deny"), Some(USER_ID));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.state_of("tg-1").await, RequestState::Executed);
    assert_eq!(h.home.mobile_pushes().len(), 2);
    assert_eq!(tool_calls(&h), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn after_the_phone_decided_telegram_is_told_and_its_button_changes_nothing() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "tg-2")
        .await;
    let push = h.pushes(1).await.remove(0);
    let message = h.telegram.wait_for_sent(1).await;
    let allow = message.callback_data("✅ Allow").unwrap().to_owned();
    h.home.press_action(&action(&push, "Deny"), Some(USER_ID));
    assert_eq!(agent.response(id).await["error"]["code"], -32001);
    let edited = h.telegram.wait_for_edit(message.message_id, 1).await;
    assert!(edited.all_buttons().next().is_none(), "{edited:?}");
    assert!(
        edited.text.contains(&format!("Denied by {ACTOR} at ")),
        "{}",
        edited.text
    );
    // A press on a stale copy of the buttons decides nothing.
    let _ = h
        .telegram
        .press_button(&telegram_user(), message.message_id, &allow);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.state_of("tg-2").await, RequestState::Denied);
    assert_eq!(tool_calls(&h), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_cancel_by_the_agent_replaces_the_notification_and_edits_the_telegram_message() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "gone-1")
        .await;
    let push = h.pushes(1).await.remove(0);
    let message = h.telegram.wait_for_sent(1).await;
    let cancel = agent
        .call("cancel_request", json!({"request_id": "gone-1"}))
        .await;
    assert_eq!(cancel["result"]["cancelled"], true, "{cancel}");
    assert_eq!(agent.response(id).await["error"]["code"], -32007);
    let replaced = h.pushes(2).await.remove(1);
    assert_eq!(replaced.tag(), push.tag());
    assert!(replaced.actions().is_empty());
    assert!(
        replaced.message.starts_with("🚫 Cancelled at ")
            && replaced.message.contains("cancelled by the agent"),
        "{}",
        replaced.message
    );
    let edited = h.telegram.wait_for_edit(message.message_id, 1).await;
    assert!(
        edited.text.contains(": cancelled by the agent."),
        "{}",
        edited.text
    );
    // The phone's Allow comes too late.
    h.home.press_action(&action(&push, "Allow"), Some(USER_ID));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.state_of("gone-1").await, RequestState::Cancelled);
    assert_eq!(tool_calls(&h), 0);
    h.shutdown().await;
}
