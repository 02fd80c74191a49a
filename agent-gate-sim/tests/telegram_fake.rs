//! The simulated Bot API behaves as Telegram's does, over real HTTP: envelopes and status
//! codes, JSON / form / query parameters, long polling with offsets, the one-poller rule,
//! HTML checks, callback answers, injected faults and being down.

use std::time::Duration;

use agent_gate_sim::telegram::{FakeTelegram, FakeUser, Fault, PressError, RunningFakeTelegram};
use serde_json::{Value, json};

const TOKEN: &str = "99:fake";

async fn setup() -> (FakeTelegram, RunningFakeTelegram, reqwest::Client, String) {
    let telegram = FakeTelegram::new(TOKEN);
    let server = telegram.spawn("127.0.0.1:0").await.unwrap();
    let base = format!("{}/bot{TOKEN}", server.url());
    (telegram, server, reqwest::Client::new(), base)
}

async fn call(client: &reqwest::Client, base: &str, method: &str, params: Value) -> (u16, Value) {
    let response = client
        .post(format!("{base}/{method}"))
        .json(&params)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn send_with_buttons(client: &reqwest::Client, base: &str) -> i64 {
    let (status, body) = call(
        client,
        base,
        "sendMessage",
        json!({
            "chat_id": 5,
            "text": "<b>Allow?</b>",
            "parse_mode": "HTML",
            "reply_markup": {"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}]]}
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["result"]["message_id"].as_i64().unwrap()
}

#[tokio::test]
async fn wrong_tokens_and_unknown_methods_get_telegrams_errors() {
    let (_telegram, server, client, base) = setup().await;
    let response = client
        .get(format!("{}/bot1:wrong/getMe", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );
    let (status, body) = call(&client, &base, "sendCarrierPigeon", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(body["description"], "Not Found");
    // Method names are case-insensitive; GET with no parameters works.
    let me: Value = client
        .get(format!("{base}/GETME"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["ok"], true);
    assert_eq!(me["result"]["is_bot"], true);
}

#[tokio::test]
async fn form_encoded_and_query_parameters_are_read_like_json() {
    let (telegram, _server, client, base) = setup().await;
    let markup = json!({"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}).to_string();
    let body: Value = client
        .post(format!("{base}/sendMessage?chat_id=-42"))
        .form(&[
            ("text", "fish &amp; chips"),
            ("parse_mode", "HTML"),
            ("reply_markup", &markup),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["result"]["chat"]["id"], -42);
    assert_eq!(body["result"]["chat"]["type"], "supergroup");
    assert_eq!(body["result"]["text"], "fish & chips");
    assert_eq!(
        body["result"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
        "go"
    );
    let sent = telegram.sent();
    assert_eq!(sent[0].raw_text, "fish &amp; chips");
    assert_eq!(sent[0].callback_data("Go"), Some("go"));
}

#[tokio::test]
async fn html_and_limits_are_checked() {
    let (_telegram, _server, client, base) = setup().await;
    for (text, expected) in [
        ("a < b", "can't parse entities"),
        ("<script>x</script>", "unsupported start tag"),
        ("", "message text is empty"),
    ] {
        let (status, body) = call(
            &client,
            &base,
            "sendMessage",
            json!({"chat_id": 1, "text": text, "parse_mode": "HTML"}),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["description"].as_str().unwrap().contains(expected),
            "{body}"
        );
    }
    let (status, body) = call(
        &client,
        &base,
        "sendMessage",
        json!({"chat_id": 1, "text": "x".repeat(4097)}),
    )
    .await;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("Bad Request: message is too long"))
    );
    let (status, body) = call(
        &client,
        &base,
        "sendMessage",
        json!({"chat_id": 1, "text": "x", "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "d".repeat(65)}]]}}),
    )
    .await;
    assert_eq!(
        (status, body["description"].as_str()),
        (400, Some("Bad Request: BUTTON_DATA_INVALID"))
    );
}

#[tokio::test(start_paused = true)]
async fn long_polls_return_as_soon_as_a_button_is_pressed_and_offsets_confirm() {
    let (telegram, _server, client, base) = setup().await;
    let message_id = send_with_buttons(&client, &base).await;
    let poll = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(
            async move { call(&client, &base, "getUpdates", json!({"timeout": 30})).await },
        )
    };
    // Wait until the poll is parked at the fake, then press.
    telegram
        .wait_for(|t| (t.waiting_polls() == 1).then_some(()))
        .await;
    let started = tokio::time::Instant::now();
    let alice = FakeUser::new(1001).username("alice");
    let query_id = telegram
        .press_button(&alice, i32::try_from(message_id).unwrap(), "y")
        .unwrap();
    let (status, body) = poll.await.unwrap();
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(30));
    let update = &body["result"][0];
    assert_eq!(update["callback_query"]["id"], query_id.as_str());
    assert_eq!(update["callback_query"]["from"]["username"], "alice");
    assert_eq!(update["callback_query"]["data"], "y");
    assert_eq!(
        update["callback_query"]["message"]["message_id"],
        message_id
    );

    // Without a higher offset the update comes again; with one it is gone.
    let id = update["update_id"].as_i64().unwrap();
    let (_, again) = call(&client, &base, "getUpdates", json!({})).await;
    assert_eq!(again["result"][0]["update_id"], id);
    let (_, after) = call(&client, &base, "getUpdates", json!({"offset": id + 1})).await;
    assert_eq!(after["result"], json!([]));
    assert_eq!(telegram.unconfirmed_updates(), 0);

    // Each query is answered once.
    let answer = json!({"callback_query_id": query_id, "text": "Done"});
    assert_eq!(
        call(&client, &base, "answerCallbackQuery", answer.clone())
            .await
            .0,
        200
    );
    let (status, body) = call(&client, &base, "answerCallbackQuery", answer).await;
    assert_eq!(status, 400);
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("query is too old")
    );
    assert_eq!(telegram.answers().len(), 1);

    // A poll with nothing to return waits its timeout out.
    let started = tokio::time::Instant::now();
    let (_, empty) = call(
        &client,
        &base,
        "getUpdates",
        json!({"offset": id + 1, "timeout": 10}),
    )
    .await;
    assert_eq!(empty["result"], json!([]));
    assert!(started.elapsed() >= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_second_poller_ends_the_first_with_a_conflict() {
    let (telegram, _server, client, base) = setup().await;
    let first = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(
            async move { call(&client, &base, "getUpdates", json!({"timeout": 30})).await },
        )
    };
    telegram
        .wait_for(|t| (t.waiting_polls() == 1).then_some(()))
        .await;
    let second = {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move { call(&client, &base, "getUpdates", json!({"timeout": 1})).await })
    };
    let (status, body) = first.await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .starts_with("Conflict: terminated by other getUpdates request")
    );
    assert_eq!(second.await.unwrap().0, 200);
}

#[tokio::test]
async fn edits_replace_text_and_keyboard_and_identical_edits_are_refused() {
    let (telegram, _server, client, base) = setup().await;
    let message_id = send_with_buttons(&client, &base).await;
    let edit =
        json!({"chat_id": 5, "message_id": message_id, "text": "Allowed", "parse_mode": "HTML"});
    let (status, body) = call(&client, &base, "editMessageText", edit.clone()).await;
    assert_eq!(status, 200, "{body}");
    let message = telegram
        .message(i32::try_from(message_id).unwrap())
        .unwrap();
    assert_eq!((message.text.as_str(), message.edits), ("Allowed", 1));
    assert!(
        message.buttons.is_empty(),
        "an edit without reply_markup removes the keyboard"
    );
    let (status, body) = call(&client, &base, "editMessageText", edit).await;
    assert_eq!(status, 400);
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("message is not modified")
    );
    let (status, _) = call(
        &client,
        &base,
        "editMessageText",
        json!({"chat_id": 5, "message_id": 999, "text": "x"}),
    )
    .await;
    assert_eq!(status, 400);
    // The button is gone, so it cannot be pressed any more.
    assert!(matches!(
        telegram.press_button(&FakeUser::new(1), i32::try_from(message_id).unwrap(), "y"),
        Err(PressError::NoSuchButton { .. })
    ));
    assert_eq!(
        telegram.press_button(&FakeUser::new(1), 12345, "y"),
        Err(PressError::NoSuchMessage(12345))
    );
}

#[tokio::test]
async fn faults_and_downtime_look_like_telegrams() {
    let (telegram, _server, client, base) = setup().await;
    telegram.inject(Fault::retry_after(3).on_method("sendMessage"));
    telegram.inject(Fault::status(500).times(2));
    let (status, body) = call(
        &client,
        &base,
        "sendMessage",
        json!({"chat_id": 1, "text": "x"}),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 3", "parameters": {"retry_after": 3}})
    );
    for _ in 0..2 {
        let (status, body) = call(&client, &base, "getMe", json!({})).await;
        assert_eq!((status, body["error_code"].as_i64()), (500, Some(500)));
    }
    assert_eq!(call(&client, &base, "getMe", json!({})).await.0, 200);

    telegram.set_down(true);
    let error = client
        .post(format!("{base}/getMe"))
        .send()
        .await
        .expect_err("the fake is down");
    assert!(error.is_connect() || error.is_request(), "{error}");
    telegram.set_down(false);
    assert_eq!(call(&client, &base, "getMe", json!({})).await.0, 200);
}
