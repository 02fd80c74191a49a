//! The approval page under attack, over real HTTP against a real gateway (issue 15): the
//! per-address throttle of every credential check (bearer header, login form), an approver
//! who still gets in while another address guesses, the strict `Host` check, the page
//! without a token that no local program can use without the one-time link, sessions that
//! anonymous page loads cannot evict, and hidden characters shown escaped.

#[path = "web_support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};

use serde_json::json;
use support::{Browser, WEB_TOKEN, WebHarness, light_on};

const APPROVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const ATTACKER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Issue 15, item 2: 30 wrong bearer tokens from one address. Before the fix every one was
/// compared (30 × 401, no 429); now five are, the rest are refused with 429 and a
/// `Retry-After`, and the address's login form is refused too. Another address is not
/// affected.
#[tokio::test]
async fn wrong_bearer_tokens_are_throttled_per_address() {
    let h = WebHarness::with_token().await;
    let attacker = Browser::bound(h.origin(), ATTACKER_IP);
    let (mut looked_at, mut throttled) = (0, 0);
    for i in 0..30 {
        let response = attacker
            .http
            .get(h.url("/approvals/api/pending"))
            .bearer_auth(format!("guess-{i}"))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            401 => looked_at += 1,
            429 => {
                throttled += 1;
                let retry: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&retry), "Retry-After {retry}");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        (looked_at, throttled),
        (5, 25),
        "guesses looked at / throttled in one window"
    );
    // The same address's login form goes through the same throttle.
    let mut form = Browser::bound(h.origin(), ATTACKER_IP);
    assert_eq!(form.login(WEB_TOKEN).await.status(), 429);
    // The approver, elsewhere, is served.
    let approver = Browser::bound(h.origin(), APPROVER_IP);
    let response = approver
        .http
        .get(h.url("/approvals/api/pending"))
        .bearer_auth(WEB_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Issue 15, item 3 (issue 21, item 6): under a steady login attack from one address the
/// approver, from another, gets in every time. Before the fix the lock-out was shared and
/// the approver got in at most once of 15.
#[tokio::test]
async fn a_login_attack_from_one_address_does_not_lock_out_the_approver() {
    let h = WebHarness::with_token().await;
    let mut attacker = Browser::bound(h.origin(), ATTACKER_IP);
    let mut attacker_looked_at = 0;
    let mut approver_in = 0;
    for round in 0..15 {
        for i in 0..5 {
            let status = attacker.login(&format!("guess-{round}-{i}")).await.status();
            match status.as_u16() {
                401 => attacker_looked_at += 1,
                429 => {}
                other => panic!("unexpected status {other}"),
            }
        }
        let mut approver = Browser::bound(h.origin(), APPROVER_IP);
        if approver.login(WEB_TOKEN).await.status() == 303
            && approver.get("/approvals").await.status() == 200
        {
            approver_in += 1;
        }
    }
    assert_eq!(approver_in, 15, "approver logins that worked, of 15");
    assert!(
        attacker_looked_at <= 10,
        "{attacker_looked_at} of 75 guesses were looked at"
    );
}

/// Issue 15, item 5: a `Host` with userinfo or junk after the port is not a loopback name.
#[tokio::test]
async fn a_host_with_userinfo_or_junk_is_not_a_loopback_name() {
    let h = WebHarness::loopback().await;
    let port = h.http_addr().port();
    let http = reqwest::Client::new();
    for host in [
        format!("127.0.0.1:{port}@evil.example"),
        format!("localhost:{port}@evil.example"),
        format!("evil.example@127.0.0.1:{port}"),
        format!("127.0.0.1:{port}:1"),
        "127.0.0.1:port".to_owned(),
        format!("[::1]:{port}@evil.example"),
    ] {
        let response = http
            .get(h.url("/approvals"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{host}");
        assert!(response.headers().get("set-cookie").is_none(), "{host}");
        let body = response.text().await.unwrap();
        assert!(
            body.contains("localhost, 127.0.0.1 or [::1]"),
            "{host}: {body}"
        );
    }
}

/// Issue 15, item 4: without a web token, a local program with no credentials fetches the
/// page, takes whatever cookie and CSRF token it is handed and approves its own request.
/// Before the fix that worked (three `curl` calls); now the page hands out nothing without
/// the one-time link, and the request stays pending.
#[tokio::test]
async fn without_a_web_token_a_local_program_without_the_link_cannot_approve() {
    let h = WebHarness::loopback().await;
    let mut agent = h.agent().await;
    h.ask(&mut agent, light_on("light.kitchen"), "self-approve")
        .await;
    let mut program = h.browser();
    let page = program.get("/approvals").await;
    let handed_a_cookie = program.cookie.is_some();
    let html = page.text().await.unwrap();
    let marker = "<meta name=\"csrf-token\" content=\"";
    let csrf = html.find(marker).map(|start| {
        let start = start + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_owned()
    });
    let (status, body) = program
        .decide_with("pi", "self-approve", "allow", csrf.as_deref(), true, &[])
        .await;
    assert_ne!(status, 200, "{body}");
    assert!(!handed_a_cookie, "an anonymous visitor got a session");
    assert!(csrf.is_none(), "an anonymous visitor got a CSRF token");
    // Nor can it read the requests.
    assert_eq!(program.get_json("/approvals/api/pending").await.0, 401);
    assert_eq!(h.home.service_call_count(), 0);
    assert_eq!(h.gateway().pending_approvals(), 1);
}

/// Issue 15, item 4: 300 anonymous page loads (more than the 256 sessions kept) do not push
/// the approver's session out. Before the fix every anonymous load created a session and the
/// approver's was evicted (their next decision was refused).
#[tokio::test]
async fn anonymous_page_loads_do_not_evict_the_approvers_session() {
    let h = WebHarness::loopback().await;
    let mut agent = h.agent().await;
    let id = h
        .ask(&mut agent, light_on("light.kitchen"), "evict-1")
        .await;
    let mut approver = h.session().await;
    for _ in 0..300 {
        let mut stranger = h.browser();
        stranger.get("/approvals").await;
    }
    let (status, body) = approver.decide("pi", "evict-1", "allow").await;
    assert_eq!(
        (status, body["outcome"].clone()),
        (200, json!("won")),
        "{body}"
    );
    assert!(agent.response(id).await["result"].is_object());
}

/// Issue 15, item 7 of the report (item 6 of this work): bidirectional and invisible
/// characters in the arguments are shown escaped, with a warning on the card; the JSON the
/// page's script renders carries the escaped text and the flag.
#[tokio::test]
async fn hidden_characters_are_shown_escaped_with_a_warning() {
    let h = WebHarness::with_token().await;
    let mut agent = h.agent().await;
    let mut args = light_on("light.kitchen");
    args["data"] = json!({"note": "harmless\u{202e}txt.exe\u{200b}\u{2066}x\u{feff}"});
    h.ask(&mut agent, args.clone(), "hidden-1").await;
    let mut browser = h.session().await;
    let html = browser.get("/approvals").await.text().await.unwrap();
    for c in ['\u{202e}', '\u{200b}', '\u{2066}', '\u{feff}'] {
        assert!(!html.contains(c), "U+{:04X} reached the page raw", c as u32);
    }
    assert!(html.contains(r"harmless\u{202e}txt.exe\u{200b}\u{2066}x\u{feff}"));
    assert!(html.contains("hidden characters"), "no warning on the card");
    // The data itself is unchanged; the script gets the escaped text to show.
    let (_, pending) = browser.get_json("/approvals/api/pending").await;
    assert_eq!(pending[0]["args"], args);
    assert_eq!(pending[0]["hidden_characters"], true);
    let shown = pending[0]["shown"]["args"].as_str().unwrap();
    assert!(shown.contains(r"harmless\u{202e}txt.exe"), "{shown}");
    assert!(!shown.contains('\u{202e}'));
    // Requests without them carry no flag (the pinned shapes stay as they were).
    h.ask(&mut agent, light_on("light.bedroom"), "plain-1")
        .await;
    let (_, pending) = browser.get_json("/approvals/api/pending").await;
    let plain = pending
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["request_id"] == "plain-1")
        .unwrap();
    assert!(plain.get("hidden_characters").is_none(), "{plain}");
}

/// Issue 15, item 4: the one-time link starts a session once; the same link again, or a
/// guessed one, is refused and counts against the address (5 per minute, then 429).
#[tokio::test]
async fn a_one_time_link_logs_in_once_and_guessed_links_are_throttled() {
    let h = WebHarness::loopback().await;
    let link = h.gateway().approval_link().expect("a web page");
    let path = link
        .strip_prefix(&h.origin())
        .expect("the link is on the page's origin")
        .to_owned();
    assert!(path.starts_with("/approvals/link/"), "{path}");
    let mut approver = h.browser();
    let response = approver.get(&path).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/approvals");
    assert!(approver.cookie.is_some());
    let page = approver.get("/approvals").await;
    assert_eq!(page.status(), 200);
    assert!(!support::csrf_of(&page.text().await.unwrap()).is_empty());
    // Used: refused, no session.
    let mut again = h.browser();
    assert_eq!(again.get(&path).await.status(), 401);
    assert!(again.cookie.is_none());
    // Guessed links from another address: five looked at, then 429.
    let mut attacker = Browser::bound(h.origin(), ATTACKER_IP);
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(
            attacker
                .get(&format!("/approvals/link/{i:064x}"))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429, 429, 429]);
    // The approver's session is untouched.
    assert_eq!(approver.get("/approvals").await.status(), 200);
}

/// Issue 15, item 4: `agent-gate approve-link` reads the admin secret the gateway wrote
/// (mode 0600) and prints a working one-time link; a wrong secret gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_link_prints_a_working_link_from_the_running_gateway() {
    let h = WebHarness::loopback().await;
    let secret_file = h.dir.path().join("web-admin.secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let config = h.dir.path().join("config.yaml");
    let origin = h.origin();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_agent-gate"))
            .arg("approve-link")
            .arg("--config")
            .arg(&config)
            .arg("--url")
            .arg(&origin)
            .env_remove("AGENT_GATE_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let link = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let path = link.strip_prefix(&h.origin()).expect("a link of this page");
    let mut approver = h.browser();
    assert_eq!(approver.get(path).await.status(), 303);
    assert_eq!(approver.get("/approvals").await.status(), 200);
    // Without the secret, no link.
    let response = reqwest::Client::new()
        .post(h.url("/approvals/admin/link"))
        .bearer_auth("not-the-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // A stopped gateway removes the secret: approve-link then says it is not running.
    let mut h = h;
    h.shutdown().await;
    assert!(!secret_file.exists());
}
