//! The web approval page in a real headless browser (Debian's `chromium` driven through
//! `chromedriver` with WebDriver): log in with the token, see an agent's request appear live,
//! click Allow, and the agent — connected over a real WebSocket to the in-process gateway and
//! waiting on its `ask` request — gets its result.
//!
//! The browser is required: if `/usr/bin/chromium` or `/usr/bin/chromedriver` is missing the
//! test fails and says how to install them.

#[path = "web_support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use support::{WEB_TOKEN, WebHarness, light_on};

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
    async fn start() -> Driver {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: the browser test needs Chromium and its WebDriver. Install them with: {INSTALL}"
            );
        }
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
            .expect("chromedriver exited before reporting its port");
        driver.port = port;
        driver
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
