//! The SDK's quickstart example (`agent-gate/examples/quickstart.rs`, built as a program)
//! against demo mode: with only the URL set (the demo token is its default), it reads a
//! sensor, is refused the lock, and waits for the light until a human approves it on the
//! web approval page.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use agent_gate_gateway::demo::{self, DEMO_AGENT, DemoOptions};
use tokio::sync::mpsc;

/// The CSRF token in the page's `<meta name="csrf-token">`.
fn csrf_of(html: &str) -> String {
    let marker = "<meta name=\"csrf-token\" content=\"";
    let start = html.find(marker).expect("page has a CSRF token") + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_owned()
}

#[tokio::test]
async fn the_quickstart_shows_allow_deny_and_ask_against_the_demo() {
    let demo = demo::start(DemoOptions {
        port: 0,
        web_port: 0,
        data_dir: None,
    })
    .await
    .expect("demo starts");
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-gate-e2e-quickstart"))
        .env("AGENT_GATE_URL", demo.ws_url())
        .env_remove("AGENT_GATE_TOKEN")
        .env_remove("AGENT_GATE_CA_CERT")
        .env("AGENT_GATE_APPROVALS_URL", demo.approvals_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the quickstart runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, mut lines) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let mut output = Vec::new();
    loop {
        let line = lines
            .recv()
            .await
            .expect("the quickstart reaches the ask step");
        let waiting = line.starts_with("ask:") && line.contains("waiting for approval");
        output.push(line);
        if waiting {
            break;
        }
    }

    // A human opens the page, sees the request and presses Allow.
    let approvals = demo.gateway().approvals();
    let mut pending = Vec::new();
    for _ in 0..2000 {
        pending = approvals.pending().await;
        if !pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(pending.len(), 1, "the light waits for a human");
    let request_id = pending[0].key.request_id.clone();
    let origin = format!("http://{}", demo.web_addr().unwrap());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The page has no token: the session comes from a one-time link (issue 15; an anonymous
    // page load used to be handed one).
    let link = demo.gateway().approval_link().expect("a web page");
    let opened = http.get(&link).send().await.unwrap();
    let cookie = opened.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = http
        .get(demo.approvals_url())
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let csrf = csrf_of(&page.text().await.unwrap());
    let decided = http
        .post(format!(
            "{origin}/approvals/api/{DEMO_AGENT}/{request_id}/allow"
        ))
        .header("cookie", cookie)
        .header("origin", &origin)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(decided.status(), 200);

    while let Some(line) = lines.recv().await {
        output.push(line);
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}: {output:#?}");
    let text = output
        .join("\n")
        .replace(&demo.ws_url(), "[ws-url]")
        .replace(&demo.approvals_url(), "[approvals-url]");
    insta::assert_snapshot!("quickstart_output", text);
    assert_eq!(demo.home().state("light.bedroom").unwrap()["state"], "on");
    assert_eq!(
        demo.home().state("lock.front_door").unwrap()["state"],
        "locked"
    );
    demo.shutdown().await.unwrap();
}
