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
