//! The Telegram guardian bot end to end: a real gateway (WebSocket agents, SQLite in a temp
//! dir, the simulated Home Assistant) whose approver is the Telegram bot, talking over real
//! HTTP to the simulated Bot API, where the tests press the buttons.

#[path = "server_support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use agent_gate_gateway::app::{Gateway, RunningGateway};
use agent_gate_gateway::messengers::telegram::{
    NOT_ALLOWED_ANSWER, REFUSED_AUDIT_KIND, RETRY_LATER_ANSWER, TelegramApprover, TelegramHealth,
};
use agent_gate_gateway::store::{AuditKind, AuditQuery, Grant, RequestState};
use agent_gate_sim::home_assistant::{DEFAULT_TOKEN, HomeAssistant, RunningHomeAssistant};
use agent_gate_sim::telegram::{FakeMessage, FakeTelegram, FakeUser, Fault, RunningFakeTelegram};
use serde_json::{Value, json};
use support::{Options, load_config, load_policy, manifest};

const BOT_TOKEN: &str = "4242:fake-bot-token";
const CHAT: i64 = -1_001_234_567;

fn alice() -> FakeUser {
    FakeUser::new(1001).username("alice")
}

fn bob() -> FakeUser {
    FakeUser::new(1002)
}

fn mallory() -> FakeUser {
    FakeUser::new(6666).username("mallory")
}

fn light_on(entity: &str) -> Value {
    json!({"domain": "light", "service": "turn_on", "entity_id": entity})
}

struct Harness {
    dir: tempfile::TempDir,
    home: HomeAssistant,
    ha_server: RunningHomeAssistant,
    telegram: FakeTelegram,
    tg_server: RunningFakeTelegram,
    approver: TelegramApprover,
    gateway: Option<RunningGateway>,
    approval_timeout: Option<Duration>,
    send_patience: Duration,
}

impl Harness {
    async fn new() -> Self {
        let home = HomeAssistant::demo(DEFAULT_TOKEN);
        let (_, ha_server) = home.spawn("127.0.0.1:0").await.unwrap();
        let telegram = FakeTelegram::new(BOT_TOKEN);
        let tg_server = telegram.spawn("127.0.0.1:0").await.unwrap();
        let approver = bot(&tg_server.url(), Duration::from_secs(5));
        Self {
            dir: tempfile::tempdir().unwrap(),
            home,
            ha_server,
            telegram,
            tg_server,
            approver,
            gateway: None,
            approval_timeout: None,
            send_patience: Duration::from_secs(5),
        }
    }

    async fn start() -> Self {
        let mut h = Self::new().await;
        h.launch().await;
        h
    }

    /// Starts a gateway (with a new bot instance) on the same database.
    async fn launch(&mut self) {
        self.approver = bot(&self.tg_server.url(), self.send_patience);
        let mut config = load_config(self.dir.path(), self.ha_server.addr(), &Options::default());
        if let Some(timeout) = self.approval_timeout {
            config.approval_timeout = timeout;
        }
        let policy = load_policy(self.dir.path());
        let gateway = Gateway::builder(config, policy, manifest())
            .approver(Arc::new(self.approver.clone()))
            .insecure(true)
            .start()
            .await
            .expect("gateway starts");
        self.gateway = Some(gateway);
    }

    fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("gateway running")
    }

    async fn shutdown(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await.expect("clean shutdown");
        }
    }

    async fn agent(&self) -> support::Client {
        let mut client = support::Client::connect(&self.gateway().ws_url()).await;
        let answer = client
            .call("auth", json!({"token": support::PI_TOKEN}))
            .await;
        assert_eq!(answer["result"]["status"], "authenticated", "{answer}");
        client
    }

    async fn healthz(&self) -> (u16, Value) {
        let addr = self.gateway().health_addr().expect("health endpoint");
        let response = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
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
}

fn bot(url: &str, send_patience: Duration) -> TelegramApprover {
    TelegramApprover::builder(BOT_TOKEN, CHAT)
        .allowed_users([1001, 1002])
        .api_url(url)
        .poll_timeout(Duration::from_secs(5))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .send_patience(send_patience)
        .build()
        .expect("valid bot settings")
}

/// `text` with every time (`2026-11-21 17:03:12 UTC`) replaced by `[time]`, for snapshots.
fn redact_times(text: &str) -> String {
    const WIDTH: usize = "2026-11-21 17:03:12 UTC".len();
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find(" UTC") {
        let end = pos + " UTC".len();
        let start = end.saturating_sub(WIDTH);
        let candidate = rest.get(start..end).unwrap_or("");
        let looks_like_time = candidate.len() == WIDTH
            && candidate
                .bytes()
                .zip("dddd-dd-dd dd:dd:dd UTC".bytes())
                .all(|(c, p)| {
                    if p == b'd' {
                        c.is_ascii_digit()
                    } else {
                        c == p
                    }
                });
        if looks_like_time {
            out.push_str(&rest[..start]);
            out.push_str("[time]");
        } else {
            out.push_str(&rest[..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn no_buttons(message: &FakeMessage) -> bool {
    message.buttons.is_empty()
}

/// Asks for the bedroom light as `request_id`, presses the button with callback `data` as
/// alice, checks that the call ran, and returns the one grant in force (alice's).
async fn grant_by_button(
    h: &Harness,
    agent: &mut support::Client,
    request_id: &str,
    data: &str,
) -> Grant {
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), request_id)
        .await;
    let message = h.telegram.wait_for_sent(1).await;
    let press = h
        .telegram
        .press_button(&alice(), message.message_id, data)
        .unwrap();
    assert_eq!(
        h.telegram.wait_for_answer(&press).await.text.as_deref(),
        Some("✅ Approved")
    );
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    let mut grants = h
        .gateway()
        .store()
        .live_grants(agent_gate_gateway::store::Timestamp::now())
        .await
        .unwrap();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].created_by, "telegram:@alice");
    grants.remove(0)
}

/// The bedroom light again, as `request_id`: it runs under the grant, with no new message.
async fn runs_again_without_a_message(h: &Harness, agent: &mut support::Client, request_id: &str) {
    let again = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), request_id)
        .await;
    assert_eq!(agent.response(again).await["result"]["status"], "executed");
    assert_eq!(h.telegram.sent().len(), 1);
}

#[tokio::test]
async fn approval_message_shows_the_request_with_allow_and_deny_buttons() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "light-1")
        .await;
    let message = h.telegram.wait_for_sent(1).await;
    assert_eq!(message.chat_id, CHAT);
    assert_eq!(message.parse_mode.as_deref(), Some("HTML"));
    insta::assert_snapshot!("approval_message", redact_times(&message.text));
    insta::assert_snapshot!("approval_message_html", redact_times(&message.raw_text));
    let buttons: Vec<(String, Option<String>)> = message
        .all_buttons()
        .map(|b| (b.text.clone(), b.callback_data.clone()))
        .collect();
    assert_eq!(
        buttons,
        [
            ("✅ Allow".to_owned(), Some("a|pi|light-1".to_owned())),
            ("❌ Deny".to_owned(), Some("d|pi|light-1".to_owned())),
            ("✅ 15 min".to_owned(), Some("g0|pi|light-1".to_owned())),
            ("✅ 1 h".to_owned(), Some("g1|pi|light-1".to_owned())),
            ("✅ 8 h".to_owned(), Some("g2|pi|light-1".to_owned())),
            ("✅ Always".to_owned(), Some("w|pi|light-1".to_owned())),
            ("❌ Not now".to_owned(), Some("r0|pi|light-1".to_owned())),
            ("❌ Not safe".to_owned(), Some("r1|pi|light-1".to_owned())),
        ]
    );
    h.shutdown().await;
}

#[tokio::test]
async fn an_allow_for_button_approves_and_grants_the_same_call() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let grant = grant_by_button(&h, &mut agent, "light-grant", "g1|pi|light-grant").await;
    let lasts = grant.expires_at.unwrap().as_millis() - grant.created_at.as_millis();
    assert_eq!(lasts, 3_600_000);
    // The same call again runs without a message.
    runs_again_without_a_message(&h, &mut agent, "light-grant-2").await;
    assert_eq!(h.home.service_call_count(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn a_preset_reason_button_denies_and_tells_the_agent_why() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "light-why")
        .await;
    let message = h.telegram.wait_for_sent(1).await;
    let press = h
        .telegram
        .press_button(&alice(), message.message_id, "r1|pi|light-why")
        .unwrap();
    assert_eq!(
        h.telegram.wait_for_answer(&press).await.text.as_deref(),
        Some("❌ Denied")
    );
    let answer = agent.response(id).await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    assert_eq!(answer["error"]["data"]["reason"], "Not safe", "{answer}");
    assert_eq!(
        answer["error"]["message"], "Denied by user: Not safe",
        "{answer}"
    );
    let edited = h.telegram.wait_for_edit(message.message_id, 1).await;
    assert!(no_buttons(&edited), "{edited:?}");
    assert!(edited.text.contains("Reason: Not safe"), "{}", edited.text);
    assert_eq!(h.home.service_call_count(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn an_allowed_user_approves_and_the_call_runs_once() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "light-1")
        .await;
    let message = h.telegram.wait_for_sent(1).await;
    assert_eq!(h.home.service_call_count(), 0);

    // Two presses before the bot reads either: the first decides, the second is told so.
    let first = h
        .telegram
        .press_button(&alice(), message.message_id, "a|pi|light-1")
        .unwrap();
    let second = h
        .telegram
        .press_button(&bob(), message.message_id, "d|pi|light-1")
        .unwrap();
    assert_eq!(
        h.telegram.wait_for_answer(&first).await.text.as_deref(),
        Some("✅ Approved")
    );
    assert_eq!(
        h.telegram.wait_for_answer(&second).await.text.as_deref(),
        Some("This request was already decided.")
    );

    let answer = agent.response(id).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    assert_eq!(h.home.service_call_count(), 1);
    assert_eq!(h.home.state("light.bedroom").unwrap()["state"], "on");

    let edited = h.telegram.wait_for_edit(message.message_id, 1).await;
    assert!(no_buttons(&edited), "{edited:?}");
    insta::assert_snapshot!("approved_message", redact_times(&edited.text));
    let record = h
        .gateway()
        .store()
        .get_request("pi", "light-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.resolved_by.as_deref(), Some("telegram:@alice"));
    assert_eq!(
        record.approver_refs,
        Some(json!({"telegram": {"chat_id": CHAT, "message_id": message.message_id}}))
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_user_not_in_allowed_users_is_refused_and_changes_nothing() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "light-1")
        .await;
    let message = h.telegram.wait_for_sent(1).await;

    let press = h
        .telegram
        .press_button(&mallory(), message.message_id, "a|pi|light-1")
        .unwrap();
    let answer = h.telegram.wait_for_answer(&press).await;
    assert_eq!(answer.text.as_deref(), Some(NOT_ALLOWED_ANSWER));
    assert!(answer.show_alert);
    assert_eq!(h.state_of("light-1").await, RequestState::Pending);
    assert_eq!(h.home.service_call_count(), 0);
    assert_eq!(h.telegram.message(message.message_id).unwrap().edits, 0);
    let audit = h
        .gateway()
        .store()
        .audit_page(AuditQuery::new().kind(AuditKind::Other(REFUSED_AUDIT_KIND.into())))
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].agent_id, "pi");
    assert_eq!(audit[0].request_id.as_deref(), Some("light-1"));
    assert_eq!(audit[0].actor.as_deref(), Some("telegram:@mallory"));
    assert_eq!(
        audit[0].detail,
        Some(json!({
            "approver": "telegram",
            "reason": "not in allowed_users",
            "telegram_user_id": 6666,
            "username": "mallory",
            "verdict": "allow",
            "message_id": message.message_id,
        }))
    );

    // An allowed user (without a username: attributed by id) denies.
    let press = h
        .telegram
        .press_button(&bob(), message.message_id, "d|pi|light-1")
        .unwrap();
    assert_eq!(
        h.telegram.wait_for_answer(&press).await.text.as_deref(),
        Some("❌ Denied")
    );
    let answer = agent.response(id).await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    let edited = h.telegram.wait_for_edit(message.message_id, 1).await;
    assert!(
        edited.text.contains("Denied by telegram:1002 at "),
        "{}",
        edited.text
    );
    assert!(no_buttons(&edited));
    assert_eq!(h.home.service_call_count(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn an_old_button_still_works_after_a_restart() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    agent
        .tool_with_id("ha_call_service", light_on("light.kitchen"), "kitchen-1")
        .await;
    let message = h.telegram.wait_for_sent(1).await;

    // Shutdown: the message says the gateway stopped, and keeps its buttons.
    h.shutdown().await;
    drop(agent);
    let paused = h.telegram.message(message.message_id).unwrap();
    assert_eq!(paused.edits, 1);
    assert!(
        paused.text.contains("The gateway stopped at "),
        "{}",
        paused.text
    );
    assert_eq!(paused.buttons, message.buttons);

    // A new gateway and bot on the same database restore the message (no new one is sent).
    h.launch().await;
    let restored = h.telegram.wait_for_edit(message.message_id, 2).await;
    assert_eq!(restored.text, message.text);
    assert_eq!(h.telegram.sent().len(), 1);

    // The agent re-attaches with its request id; the old message's button decides.
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.kitchen"), "kitchen-1")
        .await;
    let press = h
        .telegram
        .press_button(&alice(), message.message_id, "a|pi|kitchen-1")
        .unwrap();
    assert_eq!(
        h.telegram.wait_for_answer(&press).await.text.as_deref(),
        Some("✅ Approved")
    );
    let answer = agent.response(id).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    assert_eq!(h.home.service_call_count(), 1);
    let edited = h.telegram.wait_for_edit(message.message_id, 3).await;
    assert!(
        edited.text.contains("Approved by telegram:@alice"),
        "{}",
        edited.text
    );
    h.shutdown().await;
}

#[tokio::test]
async fn long_request_ids_use_a_digest_that_still_decides() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let rid = "r".repeat(64);
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), &rid)
        .await;
    let message = h.telegram.wait_for_sent(1).await;
    let allow = message.callback_data("✅ Allow").unwrap().to_owned();
    assert!(allow.starts_with("a#") && allow.len() <= 64, "{allow}");
    let press = h
        .telegram
        .press_button(&alice(), message.message_id, &allow)
        .unwrap();
    assert_eq!(
        h.telegram.wait_for_answer(&press).await.text.as_deref(),
        Some("✅ Approved")
    );
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    h.shutdown().await;
}

#[tokio::test]
async fn the_always_button_allows_exactly_that_call_for_good() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let grant = grant_by_button(&h, &mut agent, "light-always", "w|pi|light-always").await;
    assert_eq!(grant.expires_at, None, "always: no expiry");
    // The same call runs without a message; another entity is asked again.
    runs_again_without_a_message(&h, &mut agent, "light-always-2").await;
    agent
        .tool_with_id("ha_call_service", light_on("light.kitchen"), "other-light")
        .await;
    h.telegram.wait_for_sent(2).await;
    assert_eq!(h.state_of("other-light").await, RequestState::Pending);
    assert_eq!(h.home.service_call_count(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn the_message_says_when_the_agent_cancelled_the_request() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "light-cancel")
        .await;
    let message = h.telegram.wait_for_sent(1).await;
    let cancel = agent
        .call("cancel_request", json!({"request_id": "light-cancel"}))
        .await;
    assert_eq!(cancel["result"]["cancelled"], true, "{cancel}");
    assert_eq!(agent.response(id).await["error"]["code"], -32007);
    let edited = h.telegram.wait_for_edit(message.message_id, 1).await;
    assert!(no_buttons(&edited), "{edited:?}");
    assert!(
        edited.text.contains("Cancelled at ") && edited.text.contains(": cancelled by the agent."),
        "{}",
        edited.text
    );
    assert!(!edited.text.contains("by the gateway"), "{}", edited.text);
    assert_eq!(h.home.service_call_count(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn the_message_says_when_a_request_expired() {
    let mut h = Harness::new().await;
    h.approval_timeout = Some(Duration::from_millis(600));
    h.launch().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "light-1")
        .await;
    let message = h.telegram.wait_for_sent(1).await;
    let answer = agent.response(id).await;
    assert_eq!(answer["error"]["code"], -32002, "{answer}");
    let edited = h.telegram.wait_for_edit(message.message_id, 1).await;
    assert!(no_buttons(&edited));
    insta::assert_snapshot!("expired_message", redact_times(&edited.text));
    h.shutdown().await;
}

#[tokio::test]
async fn telegram_down_at_start_up_degrades_health_not_the_gateway() {
    let mut h = Harness::new().await;
    h.send_patience = Duration::from_millis(100);
    h.telegram.set_down(true);
    h.launch().await;

    let health = h
        .approver
        .wait_for_health(|h| matches!(h, TelegramHealth::Unreachable { .. }))
        .await;
    assert!(!health.is_ok());
    let (status, body) = h.healthz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["approvers"][0]["name"], "telegram");
    assert_eq!(body["approvers"][0]["ok"], false);
    let detail = body["approvers"][0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("telegram unreachable since "),
        "{detail}"
    );

    // Allowed calls still work.
    let mut agent = h.agent().await;
    let answer = agent
        .tool("ha_get_state", json!({"entity_id": "light.bedroom"}))
        .await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");

    // A request that needs a human waits; its message goes out once Telegram is back.
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "light-1")
        .await;
    assert_eq!(
        agent.notification().await["params"]["status"],
        "awaiting_approval"
    );
    assert!(h.telegram.sent().is_empty());
    h.telegram.set_down(false);
    let message = h.telegram.wait_for_sent(1).await;
    h.approver.wait_for_health(TelegramHealth::is_ok).await;
    let (status, body) = h.healthz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["approvers"][0]["ok"], true);

    let press = h
        .telegram
        .press_button(&alice(), message.message_id, "a|pi|light-1")
        .unwrap();
    h.telegram.wait_for_answer(&press).await;
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    h.shutdown().await;
}

#[tokio::test]
async fn polling_waits_out_retry_after_and_recovers_from_server_errors() {
    let mut h = Harness::new().await;
    h.telegram
        .inject(Fault::retry_after(1).on_method("getUpdates"));
    h.telegram
        .inject(Fault::status(502).on_method("getUpdates").times(2));
    h.launch().await;
    let polls = h
        .telegram
        .wait_for(|t| {
            let polls = t.calls_of("getUpdates");
            (polls.len() >= 3).then_some(polls)
        })
        .await;
    assert_eq!(polls[0].status, 429);
    assert_eq!(polls[1].status, 502);
    assert_eq!(polls[2].status, 502);
    // The next call came no earlier than Telegram asked.
    assert!(polls[1].at - polls[0].at >= Duration::from_secs(1));
    h.approver.wait_for_health(TelegramHealth::is_ok).await;

    // And the bot works afterwards.
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "light-1")
        .await;
    let message = h.telegram.wait_for_sent(1).await;
    let press = h
        .telegram
        .press_button(&alice(), message.message_id, "a|pi|light-1")
        .unwrap();
    h.telegram.wait_for_answer(&press).await;
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    h.shutdown().await;
}

#[tokio::test]
async fn a_button_of_an_expired_request_says_so_and_changes_nothing() {
    let mut h = Harness::new().await;
    h.approval_timeout = Some(Duration::from_millis(600));
    h.launch().await;
    // The edit after the timeout fails, so the message keeps its buttons.
    h.telegram
        .inject(Fault::status(400).on_method("editMessageText").always());
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id("ha_call_service", light_on("light.bedroom"), "light-1")
        .await;
    let message = h.telegram.wait_for_sent(1).await;
    assert_eq!(agent.response(id).await["error"]["code"], -32002);
    h.telegram
        .wait_for(|t| (!t.calls_of("editMessageText").is_empty()).then_some(()))
        .await;
    let press = h
        .telegram
        .press_button(&alice(), message.message_id, "a|pi|light-1")
        .unwrap();
    assert_eq!(
        h.telegram.wait_for_answer(&press).await.text.as_deref(),
        Some("This request has expired.")
    );
    assert_eq!(h.state_of("light-1").await, RequestState::Expired);
    assert_eq!(h.home.service_call_count(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_press_while_the_gateway_stops_asks_to_retry_and_works_after_the_restart() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    agent
        .tool_with_id("ha_call_service", light_on("light.kitchen"), "kitchen-1")
        .await;
    let message = h.telegram.wait_for_sent(1).await;

    // An allowed call held at Home Assistant keeps the shutdown waiting for it.
    h.home.pause();
    agent
        .request(
            "tool_request",
            json!({"tool": "ha_get_state", "args": {"entity_id": "light.bedroom"}}),
        )
        .await;
    h.home.wait_until_held(1).await;
    let gateway = h.gateway.take().unwrap();
    let stopping = tokio::spawn(gateway.shutdown());
    // Let the shutdown begin (it stops taking decisions before its first await).
    tokio::task::yield_now().await;

    let press = h
        .telegram
        .press_button(&alice(), message.message_id, "a|pi|kitchen-1")
        .unwrap();
    assert_eq!(
        h.telegram.wait_for_answer(&press).await.text.as_deref(),
        Some(RETRY_LATER_ANSWER)
    );
    h.home.resume();
    stopping.await.unwrap().unwrap();
    assert_eq!(h.home.service_call_count(), 0);

    // After the restart the same button decides.
    h.launch().await;
    let press = h
        .telegram
        .press_button(&alice(), message.message_id, "a|pi|kitchen-1")
        .unwrap();
    assert_eq!(
        h.telegram.wait_for_answer(&press).await.text.as_deref(),
        Some("✅ Approved")
    );
    h.shutdown().await;
}

/// Issue 15: right-to-left overrides and invisible characters in the arguments are shown
/// escaped in the approval message, under a warning; the buttons still decide the request.
#[tokio::test]
async fn hidden_characters_are_shown_escaped_with_a_warning() {
    let mut h = Harness::start().await;
    let mut agent = h.agent().await;
    let mut args = light_on("light.bedroom");
    args["data"] = json!({"note": "harmless\u{202e}txt.exe\u{200b}\u{2066}x\u{00ad}"});
    agent
        .tool_with_id("ha_call_service", args, "hidden-1")
        .await;
    let message = h.telegram.wait_for_sent(1).await;
    for c in ['\u{202e}', '\u{200b}', '\u{2066}', '\u{00ad}'] {
        assert!(
            !message.raw_text.contains(c),
            "U+{:04X} reached the message raw",
            c as u32
        );
    }
    assert!(
        message
            .text
            .contains(r"harmless\u{202e}txt.exe\u{200b}\u{2066}x\u{ad}"),
        "{}",
        message.text
    );
    assert!(
        message.text.contains("hidden characters"),
        "{}",
        message.text
    );
    // A message without them has no warning.
    agent
        .tool_with_id("ha_call_service", light_on("light.kitchen"), "plain-1")
        .await;
    let plain = h.telegram.wait_for_sent(2).await;
    assert!(!plain.text.contains("hidden characters"), "{}", plain.text);
    h.shutdown().await;
}
