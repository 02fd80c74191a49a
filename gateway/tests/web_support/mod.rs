//! Shared harness of the web approval tests: the in-process Home Assistant, a gateway whose
//! config has a `type: web` approver (optionally with a token), and a small HTTP client that
//! keeps the session cookie the way a browser would.
#![allow(dead_code)]

#[path = "../server_support/mod.rs"]
pub mod server;

use std::net::SocketAddr;

use agent_gate_gateway::app::{Gateway, RunningGateway};
use agent_gate_gateway::config::{Config, ProcessEnv};
use agent_gate_sim::home_assistant::{DEFAULT_TOKEN, HomeAssistant, RunningHomeAssistant};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
pub use server::{Client, Options};

/// The approver token of the tests that configure one.
pub const WEB_TOKEN: &str = "web-approver-token-0123456789";

/// The approver name: decisions are recorded as `web:alice`.
pub const NAME: &str = "alice";

pub struct WebHarness {
    pub dir: tempfile::TempDir,
    pub home: HomeAssistant,
    pub ha_server: RunningHomeAssistant,
    pub gateway: Option<RunningGateway>,
    pub token: Option<String>,
}

impl WebHarness {
    /// A gateway whose web page needs no token (loopback only).
    pub async fn loopback() -> Self {
        Self::start(None, Options::default()).await
    }

    /// A gateway whose web page needs [`WEB_TOKEN`].
    pub async fn with_token() -> Self {
        Self::start(Some(WEB_TOKEN), Options::default()).await
    }

    pub async fn start(token: Option<&str>, options: Options) -> Self {
        Self::start_with(token, options, "").await
    }

    /// As [`WebHarness::start`], with `web_keys` (YAML lines indented by four spaces) added to
    /// the web approver's entry, e.g. `    grant_minutes: [5, 120]\n`.
    pub async fn start_with(token: Option<&str>, options: Options, web_keys: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = HomeAssistant::demo(DEFAULT_TOKEN);
        let (_, ha_server) = home.spawn("127.0.0.1:0").await.unwrap();
        let mut text = server::config_text(dir.path(), ha_server.addr(), &options);
        text.push_str(&format!("approvers:\n  - type: web\n    name: {NAME}\n"));
        if let Some(token) = token {
            text.push_str(&format!("    token: \"{token}\"\n"));
        }
        text.push_str(web_keys);
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, &text).unwrap();
        let mut config = Config::parse(&text, &path, &ProcessEnv).expect("test config is valid");
        config.gateway.port = 0;
        config.gateway.health_port = 0;
        let policy = server::load_policy(dir.path());
        let gateway = Gateway::builder(config, policy, server::manifest())
            .insecure(true)
            .limits(options.limits)
            .start()
            .await
            .expect("gateway starts");
        Self {
            dir,
            home,
            ha_server,
            gateway: Some(gateway),
            token: token.map(str::to_owned),
        }
    }

    pub fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().expect("gateway running")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.gateway().health_addr().expect("HTTP side enabled")
    }

    /// `http://127.0.0.1:<port>`: the page's origin.
    pub fn origin(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// A browser-like client without a session.
    pub fn browser(&self) -> Browser {
        Browser::new(self.origin())
    }

    /// A browser-like client with a session (logged in when a token is configured) and the
    /// page's CSRF token.
    pub async fn session(&self) -> Browser {
        let mut browser = self.browser();
        match &self.token {
            Some(token) => {
                let response = browser.login(token).await;
                assert_eq!(response.status(), 303);
            }
            None => {
                let response = browser.get(&self.link_path()).await;
                assert_eq!(response.status(), 303);
            }
        }
        let page = browser.get("/approvals").await;
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        browser.csrf = Some(csrf_of(&html));
        browser
    }

    /// The path of a fresh one-time login link (`/approvals/link/...`).
    pub fn link_path(&self) -> String {
        let link = self.gateway().approval_link().expect("a web page");
        link.strip_prefix(&self.origin())
            .expect("the link is on the page's origin")
            .to_owned()
    }

    /// An agent (`pi`) over a real WebSocket.
    pub async fn agent(&self) -> Client {
        let mut client = Client::connect(&self.gateway().ws_url()).await;
        let answer = client
            .call("auth", json!({"token": server::PI_TOKEN}))
            .await;
        assert_eq!(answer["result"]["status"], "authenticated", "{answer}");
        client
    }

    /// Sends a request that the policy sends to a human and waits until it is pending;
    /// returns its JSON-RPC id.
    pub async fn ask(&self, agent: &mut Client, args: Value, request_id: &str) -> i64 {
        let id = agent
            .tool_with_id("ha_call_service", args, request_id)
            .await;
        let status = agent.notification().await;
        assert_eq!(status["params"]["status"], "awaiting_approval", "{status}");
        id
    }

    pub async fn shutdown(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await.expect("clean shutdown");
        }
    }
}

pub fn light_on(entity: &str) -> Value {
    json!({"domain": "light", "service": "turn_on", "entity_id": entity})
}

/// The CSRF token in the page's `<meta name="csrf-token">`.
pub fn csrf_of(html: &str) -> String {
    let marker = "<meta name=\"csrf-token\" content=\"";
    let start = html.find(marker).expect("page has a CSRF token") + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_owned()
}

/// An HTTP client that keeps the session cookie and sends `Origin` like a browser on the
/// page would (both can be overridden per request).
pub struct Browser {
    pub origin: String,
    pub http: reqwest::Client,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

impl Browser {
    pub fn new(origin: String) -> Self {
        Self::bound(origin, std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// A browser whose connections come from `local` (e.g. 127.0.0.2: another client
    /// address on this machine).
    pub fn bound(origin: String, local: std::net::IpAddr) -> Self {
        Self {
            origin,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(local)
                .build()
                .unwrap(),
            cookie: None,
            csrf: None,
        }
    }

    fn keep_cookie(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let value = value.to_str().unwrap();
            let pair = value.split(';').next().unwrap();
            let (name, v) = pair.split_once('=').unwrap();
            assert_eq!(name, "agent_gate_approvals");
            self.cookie = if v.is_empty() {
                None
            } else {
                Some(pair.to_owned())
            };
        }
    }

    fn headers(&self, origin: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(cookie) = &self.cookie {
            headers.insert("cookie", HeaderValue::from_str(cookie).unwrap());
        }
        if origin {
            headers.insert("origin", HeaderValue::from_str(&self.origin).unwrap());
        }
        headers
    }

    pub async fn get(&mut self, path: &str) -> reqwest::Response {
        let response = self
            .http
            .get(format!("{}{path}", self.origin))
            .headers(self.headers(false))
            .send()
            .await
            .unwrap();
        self.keep_cookie(&response);
        response
    }

    pub async fn get_json(&mut self, path: &str) -> (u16, Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// POSTs a form with the browser's cookie and `Origin`.
    pub async fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let response = self
            .http
            .post(format!("{}{path}", self.origin))
            .headers(self.headers(true))
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep_cookie(&response);
        response
    }

    pub async fn login(&mut self, token: &str) -> reqwest::Response {
        self.post_form("/approvals/login", &[("token", token)])
            .await
    }

    /// Decides through the JSON API as the page's script does (cookie, `Origin`, CSRF
    /// header); `extra` headers are added or override.
    pub async fn decide_with(
        &mut self,
        agent: &str,
        request_id: &str,
        verdict: &str,
        csrf: Option<&str>,
        origin: bool,
        extra: &[(&'static str, &str)],
    ) -> (u16, Value) {
        let mut headers = self.headers(origin);
        if let Some(csrf) = csrf {
            headers.insert("x-csrf-token", HeaderValue::from_str(csrf).unwrap());
        }
        for (name, value) in extra {
            headers.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        let response = self
            .http
            .post(format!(
                "{}/approvals/api/{}/{}/{verdict}",
                self.origin,
                encode(agent),
                encode(request_id)
            ))
            .headers(headers)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// POSTs to a JSON API path as the page's script does (cookie, `Origin`, CSRF header).
    pub async fn post_api(&mut self, path: &str) -> (u16, Value) {
        let mut headers = self.headers(true);
        let csrf = self.csrf.clone().expect("session has a CSRF token");
        headers.insert("x-csrf-token", HeaderValue::from_str(&csrf).unwrap());
        let response = self
            .http
            .post(format!("{}{path}", self.origin))
            .headers(headers)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Decides through the JSON API with `body` as the JSON request body (e.g. a reason).
    pub async fn decide_json(
        &mut self,
        agent: &str,
        request_id: &str,
        verdict: &str,
        body: &Value,
    ) -> (u16, Value) {
        let mut headers = self.headers(true);
        let csrf = self.csrf.clone().expect("session has a CSRF token");
        headers.insert("x-csrf-token", HeaderValue::from_str(&csrf).unwrap());
        let response = self
            .http
            .post(format!(
                "{}/approvals/api/{}/{}/{verdict}",
                self.origin,
                encode(agent),
                encode(request_id)
            ))
            .headers(headers)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn decide(&mut self, agent: &str, request_id: &str, verdict: &str) -> (u16, Value) {
        let csrf = self.csrf.clone().expect("session has a CSRF token");
        self.decide_with(agent, request_id, verdict, Some(&csrf), true, &[])
            .await
    }
}

/// Percent-encodes a path segment.
pub fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}
