//! The web approval page in a real headless browser (Debian's `chromium` driven through
//! `chromedriver` with WebDriver): log in with the token, see an agent's request appear live,
//! click Allow, and the agent — connected over a real WebSocket to the in-process gateway and
//! waiting on its `ask` request — gets its result.
//!
//! The second test drives the rest of the page in the browser: the countdown ticks, the
//! affected entities are listed, a grant is revoked from the page, the history is searched,
//! and at phone width (390×844) nothing is wider than the screen; it takes screenshots at
//! phone and desktop (1280×900) width. The ignored test writes the screenshots the README
//! shows (`docs/screenshots/approvals-phone.png` and `approvals-desktop.png`):
//!
//! ```sh
//! cargo test -p agent-gate-gateway --test web_browser -- --ignored screenshots
//! ```
//!
//! The browser is required: if `/usr/bin/chromium` or `/usr/bin/chromedriver` is missing the
//! tests fail and say how to install them.

#[path = "web_support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use support::{Browser, WEB_TOKEN, WebHarness, light_on};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "apt-get update && apt-get install -y chromium chromium-driver";

/// A running chromedriver (and the browsers it starts), killed as a process group on drop.
struct Driver {
    child: Child,
    port: u16,
    /// A fresh browser profile, removed after the browser is killed.
    profile: tempfile::TempDir,
}

impl Driver {
    /// Starts chromedriver on a free port and waits for its "started successfully" line.
    ///
    /// Two drivers started at the same moment (the tests run in parallel) can both be handed
    /// the same port by `--port=0`, and the second exits with "bind() failed: Address already in
    /// use" before it reports one; then it is started again, at most three times in all.
    async fn start() -> Driver {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: the browser test needs Chromium and its WebDriver. Install them with: {INSTALL}"
            );
        }
        for attempt in 1..=3 {
            if let Some(driver) = Self::start_once().await {
                return driver;
            }
            eprintln!("chromedriver exited before reporting its port (attempt {attempt} of 3)");
        }
        panic!(
            "chromedriver exited before reporting its port, three times; run {CHROMEDRIVER} --port=0 by hand to see why"
        );
    }

    /// One start of chromedriver: `None` if it exited before reporting its port.
    async fn start_once() -> Option<Driver> {
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group, so the guard can kill the browsers it starts too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {CHROMEDRIVER}: {e}; install it with: {INSTALL}")
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready, port) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut ready = Some(ready);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let port = rest.trim_end_matches('.').trim().parse::<u16>().ok();
                    if let (Some(ready), Some(port)) = (ready.take(), port) {
                        let _ = ready.send(port);
                    }
                }
            }
        });
        let mut driver = Driver {
            child,
            port: 0,
            profile: tempfile::tempdir().unwrap(),
        };
        // A bound on a broken driver, not synchronisation: the line is the signal.
        let port = tokio::time::timeout(Duration::from_secs(30), port)
            .await
            .expect("chromedriver did not report its port within 30 s")
            .ok()?;
        driver.port = port;
        Some(driver)
    }

    async fn browser(&self) -> fantoccini::Client {
        let profile = self.profile.path();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start {CHROMIUM}: {e}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Kill the whole group (chromedriver and the browsers it started) by its id.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_allows_a_request_in_a_real_browser() {
    let h = WebHarness::with_token().await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;

    // Log in through the form.
    browser.goto(&h.url("/approvals")).await.unwrap();
    let token = browser
        .find(Locator::Css("input[name=token]"))
        .await
        .unwrap();
    token.send_keys(WEB_TOKEN).await.unwrap();
    browser
        .find(Locator::Css("button#login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Css("ul#pending"))
        .await
        .unwrap();
    assert_eq!(browser.current_url().await.unwrap().path(), "/approvals");
    // The page connected its event stream before the request exists: it must appear live.
    browser
        .wait()
        .for_element(Locator::XPath("//span[@id='live' and text()='live']"))
        .await
        .unwrap();

    let mut agent = h.agent().await;
    let id = h
        .ask(&mut agent, light_on("light.bedroom"), "browser-1")
        .await;
    let allow = browser
        .wait()
        .for_element(Locator::Css(
            "li.card[data-request='browser-1'] button[data-verdict='allow']",
        ))
        .await
        .unwrap();
    let card = browser
        .find(Locator::Css("ul#pending li.card[data-request='browser-1']"))
        .await
        .unwrap();
    let text = card.text().await.unwrap();
    assert!(
        text.contains("ha_call_service(light.turn_on, light.bedroom)"),
        "{text}"
    );
    assert_eq!(h.home.service_call_count(), 0);

    allow.click().await.unwrap();
    let answer = agent.response(id).await;
    assert!(answer["result"].is_object(), "{answer}");
    assert_eq!(h.home.service_call_count(), 1);
    assert_eq!(h.home.state("light.bedroom").unwrap()["state"], "on");

    // The page says so and moves the request to the history.
    browser
        .wait()
        .for_element(Locator::XPath(
            "//div[@id='status' and starts-with(text(), 'Approved')]",
        ))
        .await
        .unwrap();
    // The history is re-rendered as the page polls, so every check finds its element afresh
    // (an element read after a re-render would be stale).
    browser
        .wait()
        .for_element(Locator::XPath(
            "//ul[@id='history']/li[contains(@class, 'card') and @data-request='browser-1']\
             //*[contains(concat(' ', normalize-space(@class), ' '), ' state-executed ') \
             and normalize-space(text()) = 'executed']",
        ))
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::XPath(
            "//ul[@id='history']/li[@data-request='browser-1' and contains(., 'by web:alice')]",
        ))
        .await
        .unwrap();

    browser.close().await.unwrap();
}

/// Logs `browser` in through the form and waits until the page's event stream is live.
async fn log_in(browser: &fantoccini::Client, h: &WebHarness) {
    browser.goto(&h.url("/approvals")).await.unwrap();
    browser
        .find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(WEB_TOKEN)
        .await
        .unwrap();
    browser
        .find(Locator::Css("button#login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::XPath("//span[@id='live' and text()='live']"))
        .await
        .unwrap();
}

/// Demo-like data: decided requests in the history (a denial with a reason, one that
/// expired, a grant's and a rule's approvals), a one-hour grant for the hallway light, an
/// "always allowed" rule for the living room light, and a pending ask for the kitchen light.
/// Returns the agent (keep it: its pending request is withdrawn when it disconnects).
async fn demo_data(h: &WebHarness, session: &mut Browser) -> support::Client {
    use agent_gate_gateway::store::{NewRequest, Timestamp, Transition};
    let store = h.gateway().store();
    let far = Timestamp::now().saturating_add(Duration::from_secs(3600));
    let earlier = Timestamp::now().saturating_sub(Duration::from_secs(1800));
    for (n, (agent, request, entity)) in [
        ("laptop", "lock-front-door", "lock.front_door"),
        ("laptop", "heater-on", "switch.heater"),
    ]
    .into_iter()
    .enumerate()
    {
        let (domain, service) = entity
            .split_once('.')
            .map(|(d, _)| (d, if d == "lock" { "unlock" } else { "turn_on" }))
            .unwrap();
        store
            .insert_request(NewRequest::pending(
                agent,
                request,
                "ha_call_service",
                json!({"domain": domain, "service": service, "entity_id": entity}),
                format!("ha_call_service({domain}.{service}, {entity})"),
                far,
            ))
            .await
            .unwrap();
        let at = earlier.saturating_add(Duration::from_secs(n as u64 * 300));
        let transition = if n == 0 {
            Transition::deny(agent, request, "telegram:@bob")
                .error(-32001, "Denied by user: Not safe")
        } else {
            Transition::expire(agent, request)
        };
        assert!(store.transition(transition.at(at)).await.unwrap());
    }
    let mut agent = h.agent().await;
    let id = h
        .ask(&mut agent, light_on("light.hallway"), "hallway-evening")
        .await;
    let (status, body) = session
        .decide_json(
            "pi",
            "hallway-evening",
            "allow",
            &json!({"grant_minutes": 60}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    let id = h
        .ask(
            &mut agent,
            light_on("light.living_room"),
            "living-room-evening",
        )
        .await;
    let (status, body) = session
        .decide_json(
            "pi",
            "living-room-evening",
            "allow",
            &json!({"always": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent.response(id).await["result"]["status"], "executed");
    h.ask(&mut agent, light_on("light.kitchen"), "kitchen-dinner")
        .await;
    agent
}

/// Width and height of a PNG, from its IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let word = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

/// Resizes the window so the page's viewport is `width` × `height` CSS pixels (the window's
/// frame, if any, is added), reloads, and waits for the event stream.
async fn viewport(browser: &fantoccini::Client, width: u32, height: u32) {
    browser.set_window_size(width, height).await.unwrap();
    let inner = browser
        .execute("return [window.innerWidth, window.innerHeight];", vec![])
        .await
        .unwrap();
    let (w, hgt) = (
        inner[0].as_u64().unwrap() as u32,
        inner[1].as_u64().unwrap() as u32,
    );
    if (w, hgt) != (width, height) {
        browser
            .set_window_size(
                width + (width - w.min(width)),
                height + (height - hgt.min(height)),
            )
            .await
            .unwrap();
    }
    browser.refresh().await.unwrap();
    browser
        .wait()
        .for_element(Locator::XPath("//span[@id='live' and text()='live']"))
        .await
        .unwrap();
}

/// The page at phone and at desktop width: PNG screenshots, and at phone width nothing
/// wider than the screen (no sideways scrolling).
async fn screenshots(browser: &fantoccini::Client) -> (Vec<u8>, Vec<u8>) {
    viewport(browser, 390, 844).await;
    let widths = browser
        .execute(
            "return [window.innerWidth, document.documentElement.scrollWidth];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(widths[0], 390, "the phone viewport: {widths}");
    assert!(
        widths[1].as_u64().unwrap() <= 390,
        "the page is wider than a phone: {widths}"
    );
    // On a phone the buttons are big enough to tap (at least 44 CSS pixels tall).
    let tall = browser
        .execute(
            "return Math.min.apply(null, Array.prototype.map.call(document.querySelectorAll('#pending button'), function(b){return b.getBoundingClientRect().height;}));",
            vec![],
        )
        .await
        .unwrap();
    assert!(tall.as_f64().unwrap() >= 44.0, "buttons {tall} px tall");
    let phone = browser.screenshot().await.unwrap();
    viewport(browser, 1280, 900).await;
    let desktop = browser.screenshot().await.unwrap();
    (phone, desktop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_counts_down_lists_entities_revokes_grants_and_searches_in_a_real_browser() {
    let h = WebHarness::with_token().await;
    let mut session = h.session().await;
    let _agent = demo_data(&h, &mut session).await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    log_in(&browser, &h).await;

    // The countdown of the kitchen request ticks.
    let countdown = Locator::Css("li.card[data-request='kitchen-dinner'] time.countdown");
    let first = browser.find(countdown).await.unwrap().text().await.unwrap();
    assert!(first.ends_with(" left") && first.contains(':'), "{first}");
    let second = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = browser.find(countdown).await.unwrap().text().await.unwrap();
        if now != first {
            break now;
        }
    };
    let seconds = |text: &str| -> i64 {
        let clock = text.trim_end_matches(" left");
        clock
            .split(':')
            .fold(0, |acc, part| acc * 60 + part.parse::<i64>().unwrap())
    };
    assert!(seconds(&second) < seconds(&first), "{first} then {second}");
    assert!((800..=900).contains(&seconds(&second)), "{second}");

    // The entity it affects.
    let targets = browser
        .find_all(Locator::Css(
            "li.card[data-request='kitchen-dinner'] ul.targets li",
        ))
        .await
        .unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].text().await.unwrap(), "light.kitchen");

    let (phone, desktop) = screenshots(&browser).await;
    assert_eq!(png_size(&phone).0, 390);
    assert_eq!(png_size(&desktop).0, 1280);

    // Revoke the hallway grant from the page (the living room rule stays).
    let rule = browser
        .find(Locator::XPath(
            "//ul[@id='always']//li[contains(., 'light.living_room')]",
        ))
        .await
        .unwrap();
    assert!(rule.text().await.unwrap().contains("granted by web:alice"));
    browser
        .find(Locator::Css("ul#grants button[data-revoke]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::XPath(
            "//div[@id='status' and starts-with(text(), 'Revoked')]",
        ))
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::XPath("//ul[@id='grants']/li[@class='empty']"))
        .await
        .unwrap();
    let (_, grants) = session.get_json("/approvals/api/grants").await;
    let grants = grants.as_array().unwrap();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0]["request_id"], "living-room-evening");
    // The rule is still there, and the kitchen card still counts down.
    browser
        .find(Locator::XPath(
            "//ul[@id='always']//li[contains(., 'light.living_room')]",
        ))
        .await
        .unwrap();
    browser.find(countdown).await.unwrap();

    // Search the history: laptop's denials.
    browser
        .find(Locator::Css("form#search input[name=agent]"))
        .await
        .unwrap()
        .send_keys("laptop")
        .await
        .unwrap();
    browser
        .find(Locator::Css(
            "form#search select[name=decision] option[value=denied]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .find(Locator::Css("button#search-go"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::XPath(
            "//ul[@id='history']/li[@data-request='lock-front-door']",
        ))
        .await
        .unwrap();
    let url = browser.current_url().await.unwrap();
    assert_eq!(
        url.query(),
        Some("agent=laptop&tool=&decision=denied&decider=")
    );
    let rows = browser
        .find_all(Locator::Css("ul#history li.card"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let text = rows[0].text().await.unwrap();
    assert!(
        text.contains("by telegram:@bob") && text.contains("Not safe"),
        "{text}"
    );

    browser.close().await.unwrap();
}

/// Writes the README's screenshots of the page (phone and desktop width) with the demo-like
/// data of [`demo_data`]; see the command at the top of this file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/screenshots/*.png; run it to refresh them"]
async fn screenshots_for_the_readme() {
    let h = WebHarness::with_token().await;
    let mut session = h.session().await;
    let _agent = demo_data(&h, &mut session).await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    log_in(&browser, &h).await;
    let (phone, desktop) = screenshots(&browser).await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("approvals-phone.png"), phone).unwrap();
    std::fs::write(dir.join("approvals-desktop.png"), desktop).unwrap();
    browser.close().await.unwrap();
}
