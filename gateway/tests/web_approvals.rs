//! The web approval page over real HTTP against a real gateway (WebSocket agents, SQLite in a
//! temp dir, the simulated Home Assistant): access with and without a token, login, CSRF and
//! origin checks, decisions (exactly-once execution, deny, second press, expiry), escaping of
//! attacker-controlled values, the JSON endpoints and the live event stream.

#[path = "web_support/mod.rs"]
mod support;

use agent_gate_gateway::store::{AuditKind, AuditQuery, NewRequest, RequestState};
use serde_json::{Value, json};
use support::{Browser, WEB_TOKEN, WebHarness, light_on};

fn set_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("set-cookie")
        .expect("a Set-Cookie header")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn without_a_token_the_one_time_link_gives_the_page_and_a_strict_session_cookie() {
    let h = WebHarness::loopback().await;
    let mut browser = h.browser();
    // Issue 15: no credential-free access, even on loopback (this test used to get the page
    // and a session by just loading it).
    let anonymous = browser.get("/approvals").await;
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().get("set-cookie").is_none());
    assert!(
        anonymous
            .text()
            .await
            .unwrap()
            .contains("agent-gate approve-link")
    );
    let response = browser.get(&h.link_path()).await;
    assert_eq!(response.status(), 303);
    let cookie = set_cookie(&response);
    assert!(cookie.starts_with("agent_gate_approvals="), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("; Path=/approvals"), "{cookie}");
    let response = browser.get("/approvals").await;
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let html = response.text().await.unwrap();
    // Phone-friendly, self-contained.
    assert!(
        html.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#)
    );
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(html.contains("@media"));
    assert!(html.contains("deciding as web:alice"));
    assert!(!support::csrf_of(&html).is_empty());
    assert!(html.contains("Nothing is waiting for a decision."));

    // The JSON endpoints answer the session (issue 15: not anonymous loopback clients).
    assert_eq!(
        browser.get_json("/approvals/api/pending").await,
        (200, json!([]))
    );
    assert_eq!(
        browser.get_json("/approvals/api/history").await,
        (200, json!([]))
    );
    let mut script = h.browser();
    assert_eq!(script.get_json("/approvals/api/pending").await.0, 401);
    // The page shows up in the health report.
    let health: Value = reqwest::get(h.url("/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        health["approvers"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "web", "ok": true})),
        "{health}"
    );
}

#[tokio::test]
async fn without_a_token_other_host_names_are_refused_against_dns_rebinding() {
    let h = WebHarness::loopback().await;
    let http = reqwest::Client::new();
    for path in [
        "/approvals",
        "/approvals/api/pending",
        "/approvals/api/history",
    ] {
        let response = http
            .get(h.url(path))
            .header("host", "attacker.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
        assert!(response.headers().get("set-cookie").is_none());
        let body = response.text().await.unwrap();
        assert!(body.contains("localhost, 127.0.0.1 or [::1]"), "{body}");
    }
    // `localhost` works (with a session: issue 15).
    let session = h.session().await;
    let response = http
        .get(h.url("/approvals/api/pending"))
        .header("host", format!("localhost:{}", h.http_addr().port()))
        .header("cookie", session.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn with_a_token_missing_or_wrong_credentials_are_refused_and_login_works() {
    let h = WebHarness::with_token().await;
    let mut browser = h.browser();

    // No session: the login form, never the lists.
    let response = browser.get("/approvals").await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("set-cookie").is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("name=\"token\"") && html.contains("type=\"password\""));
    assert!(!html.contains("csrf-token"));
    for path in [
        "/approvals/api/pending",
        "/approvals/api/history",
        "/approvals/api/events",
    ] {
        let (status, body) = browser.get_json(path).await;
        assert_eq!(status, 401, "{path}");
        assert!(body["error"].as_str().unwrap().contains("log in"), "{body}");
    }
    // A forged session cookie counts for nothing.
    browser.cookie = Some("agent_gate_approvals=00ff".to_owned());
    assert_eq!(browser.get("/approvals").await.status(), 401);
    browser.cookie = None;

    // Wrong bearer token, right bearer token (scripts).
    let http = reqwest::Client::new();
    let wrong = http
        .get(h.url("/approvals/api/pending"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = http
        .get(h.url("/approvals/api/pending"))
        .bearer_auth(WEB_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);

    // Wrong token: refused, no cookie.
    let response = browser.login("not-the-token").await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("set-cookie").is_none());
    assert!(response.text().await.unwrap().contains("Wrong token."));
    // A login posted from another site is refused even with the right token.
    browser.origin = "http://attacker.example".to_owned();
    let cross = browser
        .http
        .post(h.url("/approvals/login"))
        .header("origin", "http://attacker.example")
        .form(&[("token", WEB_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    assert!(cross.headers().get("set-cookie").is_none());
    browser.origin = h.origin();

    // The right token: a strict session cookie that is not the token, and a redirect.
    let response = browser.login(WEB_TOKEN).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/approvals");
    let cookie = set_cookie(&response);
    assert!(cookie.contains("; HttpOnly") && cookie.contains("; SameSite=Strict"));
    assert!(!cookie.contains(WEB_TOKEN));
    let page = browser.get("/approvals").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(!html.contains(WEB_TOKEN));
    let csrf = support::csrf_of(&html);
    assert_eq!(browser.get_json("/approvals/api/pending").await.0, 200);

    // Logging out needs the CSRF token, then ends the session.
    let refused = browser
        .post_form("/approvals/logout", &[("csrf", "wrong")])
        .await;
    assert_eq!(refused.status(), 403);
    assert_eq!(browser.get("/approvals").await.status(), 200);
    let out = browser
        .post_form("/approvals/logout", &[("csrf", &csrf)])
        .await;
    assert_eq!(out.status(), 303);
    assert!(set_cookie(&out).contains("Max-Age=0"));
    assert!(browser.cookie.is_none());
    // The old cookie no longer works either.
    let mut replay = h.browser();
    replay.cookie = Some(cookie.split(';').next().unwrap().to_owned());
    assert_eq!(replay.get("/approvals").await.status(), 401);
}

#[tokio::test]
async fn repeated_wrong_logins_are_throttled() {
    let h = WebHarness::with_token().await;
    let mut browser = h.browser();
    for _ in 0..5 {
        assert_eq!(browser.login("guess").await.status(), 401);
    }
    // Now even the right token waits for the window to pass.
    let response = browser.login(WEB_TOKEN).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn posts_without_the_csrf_token_or_from_another_origin_are_refused() {
    let h = WebHarness::with_token().await;
    let mut agent = h.agent().await;
    let id = h.ask(&mut agent, light_on("light.kitchen"), "csrf-1").await;
    let mut browser = h.session().await;
    let csrf = browser.csrf.clone().unwrap();

    /// What is wrong, the CSRF header, whether to send the page's Origin, extra headers.
    type Case<'a> = (&'a str, Option<&'a str>, bool, Vec<(&'static str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        ("no CSRF token", None, true, vec![]),
        ("wrong CSRF token", Some("0123abcd"), true, vec![]),
        (
            "another session's token shape",
            Some(&csrf[..csrf.len() - 1]),
            true,
            vec![],
        ),
        ("no Origin or Referer", Some(&csrf), false, vec![]),
        (
            "cross-origin",
            Some(&csrf),
            false,
            vec![("origin", "http://attacker.example")],
        ),
        (
            "cross-origin Referer",
            Some(&csrf),
            false,
            vec![("referer", "http://attacker.example/approvals")],
        ),
    ];
    for (what, token, origin, extra) in cases {
        let (status, body) = browser
            .decide_with("pi", "csrf-1", "allow", token, origin, &extra)
            .await;
        assert_eq!(status, 403, "{what}: {body}");
        assert!(body["error"].is_string(), "{what}: {body}");
    }
    // The form fallback checks the same.
    let form = browser
        .post_form(
            "/approvals/decide",
            &[
                ("agent", "pi"),
                ("request_id", "csrf-1"),
                ("verdict", "allow"),
                ("csrf", "nope"),
            ],
        )
        .await;
    assert_eq!(form.status(), 403);
    assert_eq!(h.home.service_call_count(), 0);
    assert_eq!(h.gateway().pending_approvals(), 1);

    // A same-origin Referer is enough when a browser sends no Origin.
    let referer = format!("{}/approvals", h.origin());
    let (status, body) = browser
        .decide_with(
            "pi",
            "csrf-1",
            "allow",
            Some(&csrf),
            false,
            &[("referer", &referer)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "won");
    assert!(agent.response(id).await["result"].is_object());
}

#[tokio::test]
async fn without_a_token_posts_need_the_session_of_an_opened_page() {
    let h = WebHarness::loopback().await;
    let mut agent = h.agent().await;
    h.ask(&mut agent, light_on("light.kitchen"), "loop-1").await;
    // No cookie (e.g. a page of another site cannot send it: SameSite=Strict).
    let mut stranger = h.browser();
    let (status, body) = stranger
        .decide_with("pi", "loop-1", "deny", Some("x"), true, &[])
        .await;
    assert_eq!(status, 403);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("open the approval page first")
    );
    // The page's own session and CSRF token work.
    let mut browser = h.session().await;
    let (status, body) = browser.decide("pi", "loop-1", "deny").await;
    assert_eq!((status, body["outcome"].clone()), (200, json!("won")));
}

#[tokio::test]
async fn allow_executes_exactly_once_and_a_second_press_is_already_decided() {
    let h = WebHarness::with_token().await;
    let mut agent = h.agent().await;
    let id = h.ask(&mut agent, light_on("light.bedroom"), "web-1").await;
    let mut browser = h.session().await;

    let (status, pending) = browser.get_json("/approvals/api/pending").await;
    assert_eq!(status, 200);
    let pending = pending.as_array().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["agent_id"], "pi");
    assert_eq!(pending[0]["request_id"], "web-1");
    assert_eq!(
        pending[0]["signature"],
        "ha_call_service(light.turn_on, light.bedroom)"
    );
    assert_eq!(pending[0]["args"], light_on("light.bedroom"));
    assert!(pending[0]["expires_at"].as_str().unwrap().ends_with('Z'));
    // The page lists it with its buttons.
    let html = browser.get("/approvals").await.text().await.unwrap();
    assert!(html.contains("ha_call_service(light.turn_on, light.bedroom)"));
    assert!(html.contains("data-request=\"web-1\""));
    assert!(html.contains(">Allow</button>") && html.contains(">Deny</button>"));
    assert_eq!(h.home.service_call_count(), 0);

    let (status, body) = browser.decide("pi", "web-1", "allow").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "won");
    assert_eq!(body["verdict"], "allow");
    let answer = agent.response(id).await;
    assert!(answer["result"].is_object(), "{answer}");
    assert_eq!(h.home.service_call_count(), 1);
    assert_eq!(h.home.state("light.bedroom").unwrap()["state"], "on");

    // Second presses, either way, change nothing.
    for verdict in ["allow", "deny"] {
        let (status, body) = browser.decide("pi", "web-1", verdict).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["outcome"], "already_decided");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("Already decided")
        );
    }
    assert_eq!(h.home.service_call_count(), 1);

    // Attributed to web:alice, in the store, the audit log and the history.
    let record = h
        .gateway()
        .store()
        .get_request("pi", "web-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, RequestState::Executed);
    assert_eq!(record.resolved_by.as_deref(), Some("web:alice"));
    let audit = h
        .gateway()
        .store()
        .audit_page(AuditQuery::new().request_id("web-1"))
        .await
        .unwrap();
    let approved = audit
        .iter()
        .find(|a| a.kind == AuditKind::Approved)
        .unwrap();
    assert_eq!(approved.actor.as_deref(), Some("web:alice"));
    let (_, history) = browser.get_json("/approvals/api/history").await;
    assert_eq!(history[0]["request_id"], "web-1");
    assert_eq!(history[0]["state"], "executed");
    assert_eq!(history[0]["resolved_by"], "web:alice");
    assert_eq!(
        browser.get_json("/approvals/api/pending").await.1,
        json!([])
    );
    let html = browser.get("/approvals").await.text().await.unwrap();
    assert!(html.contains("<span class=\"state state-executed\">executed</span>"));
    assert!(html.contains("by web:alice"));
}

#[tokio::test]
async fn deny_gives_the_agent_minus_32001_and_the_form_fallback_works() {
    let h = WebHarness::with_token().await;
    let mut agent = h.agent().await;
    let id = h
        .ask(&mut agent, light_on("light.kitchen"), "web-deny")
        .await;
    let mut browser = h.session().await;
    let csrf = browser.csrf.clone().unwrap();
    // The page's form, posted without JavaScript.
    let response = browser
        .post_form(
            "/approvals/decide",
            &[
                ("agent", "pi"),
                ("request_id", "web-deny"),
                ("verdict", "deny"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("Denied."));
    let answer = agent.response(id).await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    assert_eq!(h.home.service_call_count(), 0);
    let (_, history) = browser.get_json("/approvals/api/history").await;
    assert_eq!(history[0]["state"], "denied");
    assert_eq!(history[0]["resolved_by"], "web:alice");
}

#[tokio::test]
async fn a_denial_with_a_reason_tells_the_agent_why() {
    let h = WebHarness::with_token().await;
    let mut agent = h.agent().await;
    let id = h
        .ask(&mut agent, light_on("light.kitchen"), "web-deny-why")
        .await;
    let mut browser = h.session().await;
    let csrf = browser.csrf.clone().unwrap();
    let response = browser
        .post_form(
            "/approvals/decide",
            &[
                ("agent", "pi"),
                ("request_id", "web-deny-why"),
                ("verdict", "deny"),
                ("reason", "  the baby is asleep\u{7}  "),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer = agent.response(id).await;
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    assert_eq!(
        answer["error"]["data"]["reason"], "the baby is asleep",
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the baby is asleep"),
        "{answer}"
    );
    // Stored with the outcome, for an agent that fetches it later.
    let record = h
        .gateway()
        .store()
        .get_request("pi", "web-deny-why")
        .await
        .unwrap()
        .unwrap();
    let error = record.error.unwrap();
    assert_eq!(error.message, "Denied by user: the baby is asleep");
    assert_eq!(error.data, Some(json!({"reason": "the baby is asleep"})));

    // The JSON API takes the reason in the body.
    let id = h
        .ask(&mut agent, light_on("light.bedroom"), "web-deny-api")
        .await;
    let (status, _) = browser
        .decide_json(
            "pi",
            "web-deny-api",
            "deny",
            &json!({"reason": "not tonight"}),
        )
        .await;
    assert_eq!(status, 200);
    let answer = agent.response(id).await;
    assert_eq!(answer["error"]["data"]["reason"], "not tonight", "{answer}");
    // A reason on an Allow is refused, and changes nothing.
    let id = h
        .ask(&mut agent, light_on("light.hallway"), "web-allow-why")
        .await;
    let (status, body) = browser
        .decide_json("pi", "web-allow-why", "allow", &json!({"reason": "sure"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = browser
        .decide_json("pi", "web-allow-why", "allow", &json!({}))
        .await;
    assert_eq!(status, 200);
    let answer = agent.response(id).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
}

#[tokio::test]
async fn a_grant_from_the_page_is_listed_used_and_revoked() {
    let h = WebHarness::with_token().await;
    let mut agent = h.agent().await;
    let id = h
        .ask(&mut agent, light_on("light.kitchen"), "web-grant")
        .await;
    let mut browser = h.session().await;
    let csrf = browser.csrf.clone().unwrap();
    // The page's "Allow 1 h" button, posted without JavaScript.
    let response = browser
        .post_form(
            "/approvals/decide",
            &[
                ("agent", "pi"),
                ("request_id", "web-grant"),
                ("grant_minutes", "60"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    let (status, grants) = browser.get_json("/approvals/api/grants").await;
    assert_eq!(status, 200);
    assert_eq!(grants.as_array().unwrap().len(), 1, "{grants}");
    assert_eq!(grants[0]["created_by"], "web:alice");
    assert_eq!(
        grants[0]["scope"],
        "ha_call_service(light.turn_on, light.kitchen)"
    );
    let grant_id = grants[0]["id"].as_i64().unwrap();

    // The same call runs at once and counts a use.
    let answer = agent
        .call(
            "tool_request",
            json!({"tool": "ha_call_service", "args": light_on("light.kitchen"), "request_id": "web-grant-2"}),
        )
        .await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    let (_, grants) = browser.get_json("/approvals/api/grants").await;
    assert_eq!(grants[0]["uses"], 1);

    // A grant with a denial, or too long, is refused.
    let id2 = h
        .ask(&mut agent, light_on("light.bedroom"), "web-grant-bad")
        .await;
    let (status, _) = browser
        .decide_json("pi", "web-grant-bad", "deny", &json!({"grant_minutes": 60}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = browser
        .decide_json(
            "pi",
            "web-grant-bad",
            "allow",
            &json!({"grant_minutes": 20000}),
        )
        .await;
    assert_eq!(status, 400);
    browser.decide("pi", "web-grant-bad", "deny").await;
    assert_eq!(agent.response(id2).await["error"]["code"], -32001);

    // "Always allow" through the API: listed without an expiry.
    let id4 = h
        .ask(&mut agent, light_on("light.hallway"), "web-always")
        .await;
    let (status, body) = browser
        .decide_json("pi", "web-always", "allow", &json!({"always": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent.response(id4).await["result"]["status"], "executed");
    let (_, all) = browser.get_json("/approvals/api/grants").await;
    let always = all
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["request_id"] == "web-always")
        .cloned()
        .unwrap();
    assert_eq!(always["expires_at"], Value::Null, "{all}");
    let (status, _) = browser
        .post_api(&format!("/approvals/api/grants/{}/revoke", always["id"]))
        .await;
    assert_eq!(status, 200);

    // Revoking needs the page's CSRF token; then the same call asks again.
    let path = format!("/approvals/api/grants/{grant_id}/revoke");
    let refused = browser.post_form(&path, &[]).await;
    assert_eq!(refused.status(), 403);
    let (status, body) = browser.post_api(&path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], true);
    let (status, body) = browser.post_api(&path).await;
    assert_eq!(status, 409, "{body}");
    let (_, grants) = browser.get_json("/approvals/api/grants").await;
    assert_eq!(grants, json!([]));
    let id3 = h
        .ask(&mut agent, light_on("light.kitchen"), "web-grant-3")
        .await;
    browser.decide("pi", "web-grant-3", "deny").await;
    assert_eq!(agent.response(id3).await["error"]["code"], -32001);
    assert_eq!(h.home.service_call_count(), 3);
}

#[tokio::test]
async fn the_history_keeps_human_decisions_behind_many_policy_decisions() {
    let h = WebHarness::with_token().await;
    let mut agent = h.agent().await;
    let id = h
        .ask(&mut agent, light_on("light.bedroom"), "web-human")
        .await;
    let mut browser = h.session().await;
    let (status, body) = browser.decide("pi", "web-human", "deny").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent.response(id).await["error"]["code"], -32001);
    // Then a busy agent: more policy-allowed requests than the history ever reads.
    let store = h.gateway().store();
    let inserts = (0..1100).map(|n| {
        store.insert_request(NewRequest::allowed(
            "pi",
            format!("auto-{n}"),
            "ha_get_state",
            json!({"entity_id": "light.bedroom"}),
            "ha_get_state(light.bedroom)",
        ))
    });
    for inserted in futures_util::future::join_all(inserts).await {
        inserted.unwrap();
    }
    let (_, history) = browser.get_json("/approvals/api/history").await;
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["request_id"], "web-human");
    assert_eq!(history[0]["state"], "denied");
}

#[tokio::test(start_paused = true)]
async fn a_press_after_the_timeout_is_expired() {
    let h = WebHarness::with_token().await;
    let mut agent = h.agent().await;
    let id = h
        .ask(&mut agent, light_on("light.kitchen"), "too-late")
        .await;
    let mut browser = h.session().await;
    // The paused clock jumps to the 900 s deadline while the agent waits.
    let answer = agent.response(id).await;
    assert_eq!(answer["error"]["code"], -32002, "{answer}");
    let (status, body) = browser.decide("pi", "too-late", "allow").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["outcome"], "expired");
    assert!(body["message"].as_str().unwrap().starts_with("Expired"));
    assert_eq!(h.home.service_call_count(), 0);
    let (_, history) = browser.get_json("/approvals/api/history").await;
    assert_eq!(history[0]["state"], "expired");
}

#[tokio::test]
async fn unknown_requests_and_verdicts() {
    let h = WebHarness::with_token().await;
    let mut browser = h.session().await;
    let (status, body) = browser.decide("pi", "never-asked", "allow").await;
    assert_eq!((status, body["outcome"].clone()), (404, json!("not_found")));
    let (status, body) = browser.decide("pi", "never-asked", "maybe").await;
    assert_eq!(status, 404);
    assert_eq!(body["outcome"], Value::Null);
    assert!(body["message"].as_str().unwrap().contains("allow or deny"));
}

#[tokio::test]
async fn attacker_controlled_arguments_are_rendered_escaped() {
    let h = WebHarness::with_token().await;
    let mut agent = h.agent().await;
    let evil = "<script>alert('xss')</script><img src=x onerror=alert(1)>\"'&";
    let args = json!({
        "domain": "light",
        "service": "turn_on",
        "entity_id": "light.kitchen",
        "data": {"note": evil, "</pre><script>alert(2)</script>": 1},
    });
    let rid = "xss-1";
    let id = h.ask(&mut agent, args.clone(), rid).await;
    let mut browser = h.session().await;
    let html = browser.get("/approvals").await.text().await.unwrap();
    assert!(!html.contains("<script>alert"), "raw script in the page");
    assert!(!html.contains("<img"), "raw img in the page");
    assert!(!html.contains("</pre><script>"));
    assert!(html.contains(
        "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    ));
    // Only the page's own (nonce-carrying) script element.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains("<script nonce=\""));
    // The JSON API returns the values as data (the page's script renders them as text).
    let (_, pending) = browser.get_json("/approvals/api/pending").await;
    assert_eq!(pending[0]["args"], args);
    assert_eq!(pending[0]["request_id"], rid);

    // Decided: the history is escaped too.
    let (status, body) = browser.decide("pi", rid, "deny").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent.response(id).await["error"]["code"], -32001);
    let html = browser.get("/approvals").await.text().await.unwrap();
    assert_eq!(html.matches("<script").count(), 1);
    assert!(!html.contains("<img"));
}

/// Reads server-sent events until one named `name` arrives; returns its data.
async fn next_event(stream: &mut reqwest::Response, buffer: &mut String, name: &str) -> Value {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if event.as_deref() == Some(name) {
                return serde_json::from_str(&data).unwrap();
            }
        }
        let chunk = stream.chunk().await.unwrap().expect("stream open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn open_pages_hear_of_new_requests_and_outcomes() {
    let mut h = WebHarness::with_token().await;
    let mut browser = h.session().await;
    let response = browser.get("/approvals/api/events").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response;
    let mut buffer = String::new();

    let mut agent = h.agent().await;
    let id = h.ask(&mut agent, light_on("light.bedroom"), "live-1").await;
    let pending = next_event(&mut stream, &mut buffer, "pending").await;
    assert_eq!(pending["request_id"], "live-1");
    assert_eq!(
        pending["signature"],
        "ha_call_service(light.turn_on, light.bedroom)"
    );
    let (status, _) = browser.decide("pi", "live-1", "allow").await;
    assert_eq!(status, 200);
    let resolved = next_event(&mut stream, &mut buffer, "resolved").await;
    assert_eq!(resolved["request_id"], "live-1");
    assert_eq!(resolved["resolution"]["outcome"], "approved");
    assert_eq!(resolved["resolution"]["by"], "web:alice");
    assert_eq!(resolved["text"], "approved by web:alice");
    agent.response(id).await;

    // Shutdown ends the stream (an open page does not hold the gateway up).
    h.shutdown().await;
    while let Ok(Some(_)) = stream.chunk().await {}
}

#[tokio::test]
async fn a_cancel_by_the_agent_reaches_open_pages_and_a_late_allow_says_so() {
    let mut h = WebHarness::with_token().await;
    let mut browser = h.session().await;
    let mut stream = browser.get("/approvals/api/events").await;
    let mut buffer = String::new();
    let mut agent = h.agent().await;
    let id = h.ask(&mut agent, light_on("light.bedroom"), "gone-1").await;
    let pending = next_event(&mut stream, &mut buffer, "pending").await;
    assert_eq!(pending["request_id"], "gone-1");
    let cancel = agent
        .call("cancel_request", json!({"request_id": "gone-1"}))
        .await;
    assert_eq!(cancel["result"]["cancelled"], true, "{cancel}");
    assert_eq!(agent.response(id).await["error"]["code"], -32007);
    let resolved = next_event(&mut stream, &mut buffer, "resolved").await;
    assert_eq!(resolved["request_id"], "gone-1");
    assert_eq!(resolved["resolution"]["outcome"], "cancelled", "{resolved}");
    assert_eq!(resolved["text"], "cancelled: cancelled by the agent");

    let (status, body) = browser.decide("pi", "gone-1", "allow").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["outcome"], "cancelled", "{body}");
    let (_, listed) = browser.get_json("/approvals/api/pending").await;
    assert!(
        !listed.to_string().contains("gone-1"),
        "no longer pending: {listed}"
    );
    let (_, history) = browser.get_json("/approvals/api/history").await;
    assert_eq!(history[0]["state"], "cancelled", "{history}");
    assert_eq!(h.home.service_call_count(), 0);
    h.shutdown().await;
    while let Ok(Some(_)) = stream.chunk().await {}
}

#[tokio::test]
async fn scripts_with_the_bearer_token_decide_without_a_cookie() {
    let h = WebHarness::with_token().await;
    let mut agent = h.agent().await;
    let id = h
        .ask(&mut agent, light_on("light.kitchen"), "script-1")
        .await;
    let mut script = Browser::new(h.origin());
    // A wrong token is refused; the right one needs no CSRF token (no ambient credential).
    let bearer_wrong = "Bearer nope".to_owned();
    let (status, _) = script
        .decide_with(
            "pi",
            "script-1",
            "allow",
            None,
            false,
            &[("authorization", &bearer_wrong)],
        )
        .await;
    assert_eq!(status, 401);
    let bearer = format!("Bearer {WEB_TOKEN}");
    let (status, body) = script
        .decide_with(
            "pi",
            "script-1",
            "allow",
            None,
            false,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(agent.response(id).await["result"].is_object());
    assert_eq!(h.home.service_call_count(), 1);
}

/// Replaces the times of the page's JSON (they change every run).
fn redact_times(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if key.ends_with("_at") && v.is_string() {
                        *v = Value::from(format!("[{key}]"));
                    } else {
                        walk(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

#[tokio::test]
async fn json_shapes_are_pinned() {
    let h = WebHarness::with_token().await;
    let mut agent = h.agent().await;
    let id = h
        .ask(&mut agent, light_on("light.bedroom"), "shape-1")
        .await;
    let mut browser = h.session().await;
    let (_, pending) = browser.get_json("/approvals/api/pending").await;
    insta::assert_json_snapshot!("web_pending", redact_times(pending));
    let (_, decided) = browser.decide("pi", "shape-1", "deny").await;
    insta::assert_json_snapshot!("web_decided", decided);
    agent.response(id).await;
    let (_, again) = browser.decide("pi", "shape-1", "allow").await;
    insta::assert_json_snapshot!("web_already_decided", again);
    let (_, history) = browser.get_json("/approvals/api/history").await;
    insta::assert_json_snapshot!("web_history", redact_times(history));
    let (_, refused) = h.browser().get_json("/approvals/api/pending").await;
    insta::assert_json_snapshot!("web_login_required", refused);
}

/// The part of the page's HTML inside `<ul id="{id}">`, up to its closing tag (the lists hold
/// no nested lists that end earlier than their own items).
fn list_html<'a>(html: &'a str, id: &str) -> &'a str {
    let marker = format!("<ul id=\"{id}\">");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no list {id}")) + marker.len();
    let rest = &html[start..];
    // The end of the list: the first `</ul>` not closing a nested `<ul`.
    let mut depth = 0;
    let mut at = 0;
    loop {
        let open = rest[at..].find("<ul").map(|i| i + at);
        let close = rest[at..]
            .find("</ul>")
            .map(|i| i + at)
            .expect("closed list");
        match open {
            Some(open) if open < close => {
                depth += 1;
                at = open + 3;
            }
            _ if depth == 0 => return &rest[..close],
            _ => {
                depth -= 1;
                at = close + 5;
            }
        }
    }
}

/// Seeds decided asks straight into the store: (agent, request, tool, how it ended, when).
async fn seed_history(h: &WebHarness) {
    use agent_gate_gateway::store::{Timestamp, Transition};
    let store = h.gateway().store();
    let far = Timestamp::now().saturating_add(std::time::Duration::from_secs(3600));
    let base = Timestamp::now().saturating_sub(std::time::Duration::from_secs(600));
    let rows: [(&str, &str, &str, &str); 4] = [
        ("pi", "h-1", "ha_call_service", "deny"),
        ("pi", "h-2", "ha_call_service", "approve"),
        ("laptop", "h-3", "ha_get_state", "expire"),
        ("laptop", "h-4", "ha_call_service", "cancel"),
    ];
    for (n, (agent, request, tool, end)) in rows.into_iter().enumerate() {
        let args = json!({"entity_id": "light.kitchen"});
        let signature = format!("{tool}(light.kitchen)");
        store
            .insert_request(NewRequest::pending(
                agent, request, tool, args, signature, far,
            ))
            .await
            .unwrap();
        let transition = match end {
            "deny" => Transition::deny(agent, request, "web:alice"),
            "approve" => Transition::approve(agent, request, "telegram:@Bob"),
            "expire" => Transition::expire(agent, request),
            _ => Transition::cancel(agent, request, "agent"),
        };
        let at = base.saturating_add(std::time::Duration::from_secs(n as u64 * 10));
        assert!(store.transition(transition.at(at)).await.unwrap());
    }
}

fn request_ids(history: &Value) -> Vec<&str> {
    history
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {history}"))
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_history_is_searched_by_agent_tool_decision_and_decider_in_pages() {
    let h = WebHarness::with_token().await;
    seed_history(&h).await;
    let mut browser = h.session().await;
    let mut search = async |query: &str| {
        let (status, body) = browser
            .get_json(&format!("/approvals/api/history{query}"))
            .await;
        assert_eq!(status, 200, "{query}: {body}");
        request_ids(&body)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(search("").await, ["h-4", "h-3", "h-2", "h-1"]);
    assert_eq!(search("?agent=pi").await, ["h-2", "h-1"]);
    assert_eq!(search("?tool=ha_get_state").await, ["h-3"]);
    assert_eq!(search("?decision=approved").await, ["h-2"]);
    assert_eq!(search("?decision=denied").await, ["h-1"]);
    assert_eq!(search("?decision=expired").await, ["h-3"]);
    assert_eq!(search("?decision=cancelled").await, ["h-4"]);
    // The decider matches a part, in any case.
    assert_eq!(search("?decider=TELEGRAM%3A").await, ["h-2"]);
    assert_eq!(search("?decider=timeout").await, ["h-3"]);
    assert_eq!(
        search("?agent=laptop&tool=ha_call_service&decision=cancelled").await,
        ["h-4"]
    );
    assert_eq!(
        search("?agent=pi&decision=expired").await,
        Vec::<String>::new()
    );
    // Values are bound parameters, not SQL.
    assert_eq!(
        search("?agent=pi%27%20OR%20%271%27%3D%271").await,
        Vec::<String>::new()
    );
    assert_eq!(search("?decider=%25").await, Vec::<String>::new());
    // Pages: a limit and an offset; empty values mean any.
    assert_eq!(search("?limit=2").await, ["h-4", "h-3"]);
    assert_eq!(search("?limit=2&offset=2").await, ["h-2", "h-1"]);
    assert_eq!(search("?agent=&decision=&limit=3&offset=3").await, ["h-1"]);
    // Mistakes are told.
    for query in ["?decision=maybe", "?limit=0x", "?limit=201", "?offset=-1"] {
        let (status, body) = browser
            .get_json(&format!("/approvals/api/history{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains('`'), "{body}");
    }

    // The page runs the same search from its form (a GET, no JavaScript needed), keeps the
    // filters in the form and links the older page.
    let html = browser
        .get("/approvals?agent=laptop&limit=1")
        .await
        .text()
        .await
        .unwrap();
    let history = list_html(&html, "history");
    assert!(history.contains("data-request=\"h-4\""), "{history}");
    assert!(!history.contains("data-request=\"h-3\""), "{history}");
    assert!(html.contains("<input name=\"agent\" value=\"laptop\""));
    assert!(html.contains("href=\"/approvals?agent=laptop&amp;offset=1\" rel=\"next\">Older"));
    let html = browser
        .get("/approvals?agent=laptop&limit=1&offset=1")
        .await
        .text()
        .await
        .unwrap();
    let history = list_html(&html, "history");
    assert!(history.contains("data-request=\"h-3\""), "{history}");
    assert!(history.contains("tool ha_get_state"), "{history}");
    assert!(history.contains("by timeout"), "{history}");
    assert!(html.contains("rel=\"prev\">← Newer"));
    assert!(!html.contains("rel=\"next\""), "no older page: {html}");
    let html = browser
        .get("/approvals?decision=denied")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("<option value=\"denied\" selected>denied</option>"));
    let history = list_html(&html, "history");
    assert!(history.contains("data-request=\"h-1\"") && history.contains("by web:alice"));
    assert!(!history.contains("data-request=\"h-2\""));
    let html = browser
        .get("/approvals?agent=nobody")
        .await
        .text()
        .await
        .unwrap();
    assert!(list_html(&html, "history").contains("No decisions match."));
    let response = browser.get("/approvals?decision=maybe").await;
    assert_eq!(response.status(), 400);
    // A filter with markup is escaped in the form.
    let html = browser
        .get("/approvals?decider=%22%3E%3Cscript%3Ex")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;x\""));
    assert_eq!(html.matches("<script").count(), 1);
}

#[tokio::test]
async fn pending_cards_count_down_and_list_the_affected_entities() {
    let h = WebHarness::with_token().await;
    let mut agent = h.agent().await;
    let mut args = light_on("light.kitchen");
    args["entity_id"] = json!(["light.kitchen", "light.hallway"]);
    h.ask(&mut agent, args, "two-lights").await;
    let mut browser = h.session().await;
    let html = browser.get("/approvals").await.text().await.unwrap();
    let pending = list_html(&html, "pending");
    // Both entities the policy judged, one chip each.
    assert!(
        pending.contains("<ul class=\"targets\"><li>light.hallway</li><li>light.kitchen</li></ul>")
            || pending.contains(
                "<ul class=\"targets\"><li>light.kitchen</li><li>light.hallway</li></ul>"
            ),
        "{pending}"
    );
    // The server-rendered countdown: the default timeout is 900 s, so 14:5x left.
    let (_, api) = browser.get_json("/approvals/api/pending").await;
    let expires = api[0]["expires_at"].as_str().unwrap();
    let marker = format!("<time class=\"countdown\" datetime=\"{expires}\" data-left-ms=\"");
    let at = pending.find(&marker).unwrap_or_else(|| panic!("{pending}")) + marker.len();
    let left_ms: i64 = pending[at..].split('"').next().unwrap().parse().unwrap();
    assert!((800_000..=900_000).contains(&left_ms), "{left_ms}");
    assert!(pending[at..].contains("\">14:"), "{pending}");
    assert!(pending.contains(" left</time>"), "{pending}");
}

#[tokio::test]
async fn grants_and_always_allowed_rules_are_listed_and_revoked_without_javascript() {
    let h = WebHarness::start_with(
        Some(WEB_TOKEN),
        support::Options::default(),
        "    grant_minutes: [5, 120]\n",
    )
    .await;
    let mut agent = h.agent().await;
    let id = h.ask(&mut agent, light_on("light.kitchen"), "timed").await;
    let mut browser = h.session().await;
    let csrf = browser.csrf.clone().unwrap();
    // The configured durations are the page's buttons, and no others.
    let html = browser.get("/approvals").await.text().await.unwrap();
    let pending = list_html(&html, "pending");
    assert!(
        pending
            .contains("value=\"5\" data-verdict=\"allow\" data-grant=\"5\">Allow 5 min</button>")
    );
    assert!(
        pending
            .contains("value=\"120\" data-verdict=\"allow\" data-grant=\"120\">Allow 2 h</button>")
    );
    assert!(!pending.contains("Allow 15 min") && !pending.contains("Allow 8 h"));
    assert!(pending.contains(">Always allow</button>"));
    let response = browser
        .post_form(
            "/approvals/decide",
            &[
                ("agent", "pi"),
                ("request_id", "timed"),
                ("grant_minutes", "120"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    let id = h.ask(&mut agent, light_on("light.hallway"), "always").await;
    let response = browser
        .post_form(
            "/approvals/decide",
            &[
                ("agent", "pi"),
                ("request_id", "always"),
                ("always", "1"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(agent.response(id).await["result"]["status"], "executed");

    // Server-rendered: the timed grant under Grants, the rule under Always allowed.
    let html = browser.get("/approvals").await.text().await.unwrap();
    let grants = list_html(&html, "grants");
    let always = list_html(&html, "always");
    assert!(
        grants.contains("ha_call_service(light.turn_on, light.kitchen)"),
        "{grants}"
    );
    assert!(grants.contains("granted by web:alice") && grants.contains("class=\"countdown\""));
    assert!(!grants.contains("light.hallway"), "{grants}");
    assert!(
        always.contains("ha_call_service(light.turn_on, light.hallway)"),
        "{always}"
    );
    assert!(!always.contains("class=\"countdown\""), "{always}");
    assert!(html.contains("<span id=\"grants-count\">1</span>"));
    assert!(html.contains("<span id=\"always-count\">1</span>"));
    let (_, listed) = browser.get_json("/approvals/api/grants").await;
    let rule = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["request_id"] == "always")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let path = format!("/approvals/grants/{rule}/revoke");
    assert!(
        always.contains(&format!("<form method=\"post\" action=\"{path}\"")),
        "{always}"
    );

    // The Revoke form needs the session's CSRF token.
    let refused = browser.post_form(&path, &[("csrf", "wrong")]).await;
    assert_eq!(refused.status(), 403);
    let done = browser.post_form(&path, &[("csrf", &csrf)]).await;
    assert_eq!(done.status(), 200);
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("Revoked: the same call asks again.")
    );
    let again = browser.post_form(&path, &[("csrf", &csrf)]).await;
    assert_eq!(again.status(), 409);
    let missing = browser
        .post_form("/approvals/grants/99999/revoke", &[("csrf", &csrf)])
        .await;
    assert_eq!(missing.status(), 404);
    // Audited once, by the page's approver.
    let audit = h
        .gateway()
        .store()
        .audit_page(AuditQuery::new().request_id("always"))
        .await
        .unwrap();
    let revoked: Vec<_> = audit
        .iter()
        .filter(|a| a.kind == AuditKind::Other("grant_revoked".to_owned()))
        .collect();
    assert_eq!(revoked.len(), 1, "{audit:?}");
    assert_eq!(revoked[0].actor.as_deref(), Some("web:alice"));
    assert_eq!(revoked[0].detail.as_ref().unwrap()["grant"], rule);
    let html = browser.get("/approvals").await.text().await.unwrap();
    assert!(list_html(&html, "always").contains("No calls are always allowed."));
    assert!(list_html(&html, "grants").contains("light.kitchen"));
    // The rule is gone: the same call asks again.
    let id = h
        .ask(&mut agent, light_on("light.hallway"), "always-again")
        .await;
    browser.decide("pi", "always-again", "deny").await;
    assert_eq!(agent.response(id).await["error"]["code"], -32001);
}
