//! The Telegram approver through the `Approver` trait, against the simulated Bot API, on
//! tokio's paused clock: flood control (`retry_after`), back-off on server errors, giving up
//! after the patience, refused calls, and message edits (best effort).

use std::time::{Duration, SystemTime};

use agent_gate_gateway::approvals::{ApprovalRequest, Approver, Resolution};
use agent_gate_gateway::messengers::telegram::{TelegramApprover, TelegramHealth};
use agent_gate_gateway::store::{RequestKey, Timestamp};
use agent_gate_sim::telegram::{FakeTelegram, Fault, RunningFakeTelegram};
use serde_json::json;

const BOT_TOKEN: &str = "4242:fake-bot-token";
const CHAT: i64 = 777;

async fn setup() -> (FakeTelegram, RunningFakeTelegram, TelegramApprover) {
    let telegram = FakeTelegram::new(BOT_TOKEN);
    let server = telegram.spawn("127.0.0.1:0").await.unwrap();
    let bot = TelegramApprover::builder(BOT_TOKEN, CHAT)
        .allowed_users([1001])
        .api_url(server.url())
        .build()
        .unwrap();
    (telegram, server, bot)
}

fn request(id: &str) -> ApprovalRequest {
    let now = Timestamp::from(SystemTime::now());
    ApprovalRequest {
        key: RequestKey::new("pi", id),
        tool: "ha_call_service".into(),
        args: json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom"}),
        signature: "ha_call_service(light.turn_on, light.bedroom)".into(),
        targets: vec!["light.bedroom".into()],
        rule: None,
        created_at: now,
        expires_at: now.saturating_add(Duration::from_secs(900)),
        approver_refs: None,
    }
}

fn gaps(telegram: &FakeTelegram, method: &str) -> Vec<Duration> {
    let calls = telegram.calls_of(method);
    calls.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test(start_paused = true)]
async fn a_send_waits_exactly_as_long_as_retry_after_says() {
    let (telegram, _server, bot) = setup().await;
    telegram.inject(Fault::retry_after(7).on_method("sendMessage"));
    let refs = bot.notify(&request("r1")).await.unwrap().unwrap();
    let calls = telegram.calls_of("sendMessage");
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let gap = gaps(&telegram, "sendMessage")[0];
    assert!(
        gap >= Duration::from_secs(7) && gap < Duration::from_secs(8),
        "{gap:?}"
    );
    let message = telegram.sent()[0].clone();
    assert_eq!(
        refs,
        json!({"chat_id": CHAT, "message_id": message.message_id})
    );
    assert!(bot.health_status().is_ok());
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_with_a_growing_back_off() {
    let (telegram, _server, bot) = setup().await;
    telegram.inject(Fault::status(500).on_method("sendMessage").times(2));
    bot.notify(&request("r1")).await.unwrap().unwrap();
    let statuses: Vec<u16> = telegram
        .calls_of("sendMessage")
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, [500, 500, 200]);
    let gaps = gaps(&telegram, "sendMessage");
    assert!(gaps[0] >= Duration::from_secs(1) && gaps[0] < Duration::from_secs(2));
    assert!(gaps[1] >= Duration::from_secs(2) && gaps[1] < Duration::from_secs(3));
    assert_eq!(telegram.sent().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_send_that_keeps_failing_gives_up_after_the_patience_and_says_so() {
    let (telegram, _server, bot) = setup().await;
    telegram.inject(Fault::status(502).on_method("sendMessage").always());
    let started = tokio::time::Instant::now();
    let error = bot.notify(&request("r1")).await.unwrap_err();
    assert!(
        error
            .message
            .contains("it is sent when Telegram is reachable again"),
        "{error}"
    );
    // Attempts at 0, 1, 3, 7 and 15 s; the next (31 s) would be past the 20 s patience.
    assert_eq!(telegram.calls_of("sendMessage").len(), 5);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(matches!(
        bot.health_status(),
        TelegramHealth::Unreachable { .. }
    ));
    assert!(bot.health().await.unwrap_err().contains("502"));
}

#[tokio::test(start_paused = true)]
async fn a_refused_send_is_not_retried() {
    let (telegram, _server, bot) = setup().await;
    telegram.inject(Fault::status(403).on_method("sendMessage"));
    let error = bot.notify(&request("r1")).await.unwrap_err();
    assert!(error.message.contains("403"), "{error}");
    assert_eq!(telegram.calls_of("sendMessage").len(), 1);
    let health = bot.health().await.unwrap_err();
    assert!(
        health.contains(&format!("add the bot to chat {CHAT}")),
        "{health}"
    );
}

#[tokio::test(start_paused = true)]
async fn resolutions_edit_the_message_and_a_failing_edit_is_reported_not_awaited_forever() {
    let (telegram, _server, bot) = setup().await;
    let mut first = request("r1");
    first.approver_refs = Some(json!({"telegram": bot.notify(&first).await.unwrap().unwrap()}));
    let message_id = telegram.sent()[0].message_id;
    bot.resolved(
        &first,
        &Resolution::Denied {
            by: "telegram:@alice".into(),
            at: Timestamp::from_millis(1_795_000_000_000),
            reason: None,
        },
    )
    .await
    .unwrap();
    let edited = telegram.message(message_id).unwrap();
    assert!(edited.buttons.is_empty());
    assert!(
        edited
            .text
            .ends_with("Denied by telegram:@alice at 2026-11-18 11:06:40 UTC."),
        "{}",
        edited.text
    );

    // A request this bot never showed: nothing to edit.
    bot.resolved(
        &request("unknown"),
        &Resolution::Expired {
            at: Timestamp::from_millis(0),
        },
    )
    .await
    .unwrap();
    assert_eq!(telegram.calls_of("editMessageText").len(), 1);

    // Telegram failing every edit: the resolution reports it after the patience.
    let second = request("r2");
    bot.notify(&second).await.unwrap();
    telegram.inject(Fault::status(500).on_method("editMessageText").always());
    let started = tokio::time::Instant::now();
    let error = bot
        .resolved(
            &second,
            &Resolution::Cancelled {
                reason: "outcome unknown".into(),
                at: Timestamp::from_millis(0),
            },
        )
        .await
        .unwrap_err();
    assert!(error.message.contains("could not edit message"), "{error}");
    assert!(started.elapsed() <= Duration::from_secs(20));
}

#[tokio::test]
async fn bad_settings_are_refused_with_a_fix() {
    let error = TelegramApprover::builder(BOT_TOKEN, CHAT)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("allowed_users"), "{error}");
    let error = TelegramApprover::builder(BOT_TOKEN, CHAT)
        .allowed_users([1])
        .api_url("ftp://example.org")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("not http or https"), "{error}");
    let error = TelegramApprover::builder(BOT_TOKEN, CHAT)
        .allowed_users([1])
        .api_url("not a url")
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("api_url"), "{error}");
    assert!(!error.to_string().contains(BOT_TOKEN));
    let bot = TelegramApprover::builder(BOT_TOKEN, CHAT)
        .allowed_users([1])
        .build()
        .unwrap();
    assert!(!format!("{bot:?}").contains("fake-bot-token"));
}
