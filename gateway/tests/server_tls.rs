//! TLS: a gateway with a self-signed certificate serves `wss://`; without `gateway.tls` it
//! refuses to start unless insecure; the health endpoint reports store, approvers, services.

#[path = "server_support/mod.rs"]
mod support;

use std::sync::Arc;

use agent_gate_gateway::app::GatewayError;
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use support::{Client, Harness, Options, PI_TOKEN};
use tokio_tungstenite::Connector;

struct Cert {
    dir: tempfile::TempDir,
    der: CertificateDer<'static>,
}

fn self_signed() -> Cert {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    Cert {
        dir,
        der: certified.cert.der().clone(),
    }
}

fn client_config(cert: &Cert) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test]
async fn agents_connect_over_tls() {
    let cert = self_signed();
    let h = Harness::start_with(Options {
        tls: Some((
            cert.dir.path().join("cert.pem"),
            cert.dir.path().join("key.pem"),
        )),
        insecure: false,
        ..Options::default()
    })
    .await;
    let url = format!("wss://localhost:{}", h.gateway().ws_addr().port());
    assert!(h.gateway().ws_url().starts_with("wss://"));
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        None,
        false,
        Some(Connector::Rustls(client_config(&cert))),
    )
    .await
    .expect("TLS handshake and upgrade");
    let mut agent = Client::from_ws(ws);
    let answer = agent.call("auth", json!({"token": PI_TOKEN})).await;
    assert_eq!(answer["result"]["status"], "authenticated");
    let state = agent
        .tool("ha_get_state", json!({"entity_id": "light.kitchen"}))
        .await;
    assert_eq!(state["result"]["status"], "executed");

    // A plaintext client gets nowhere.
    let plain = format!("ws://127.0.0.1:{}", h.gateway().ws_addr().port());
    assert!(
        tokio_tungstenite::connect_async(plain.as_str())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn without_tls_the_gateway_refuses_to_start_unless_insecure() {
    let h = Harness::start().await;
    let refused = Harness {
        options: Options {
            insecure: false,
            ..Options::default()
        },
        dir: tempfile::tempdir().unwrap(),
        home: h.home.clone(),
        ha_server: h.home.spawn("127.0.0.1:0").await.unwrap().1,
        approver: h.approver.clone(),
        gateway: None,
    };
    let error = refused.launch().await.unwrap_err();
    assert!(matches!(error, GatewayError::TlsRequired { .. }));
    let message = error.to_string();
    assert!(
        message.contains("gateway.tls") && message.contains("--insecure"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unusable_certificate_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let home = agent_gate_sim::home_assistant::HomeAssistant::demo(
        agent_gate_sim::home_assistant::DEFAULT_TOKEN,
    );
    let (_, ha_server) = home.spawn("127.0.0.1:0").await.unwrap();
    let h = Harness {
        options: Options {
            tls: Some((dir.path().join("cert.pem"), dir.path().join("key.pem"))),
            insecure: false,
            ..Options::default()
        },
        dir: tempfile::tempdir().unwrap(),
        home,
        ha_server,
        approver: Arc::new(agent_gate_gateway::approvals::ChannelApprover::new("test")),
        gateway: None,
    };
    let error = h.launch().await.unwrap_err();
    assert!(error.to_string().contains("gateway.tls.cert"), "{error}");
}

async fn healthz(h: &Harness) -> (u16, Value) {
    let addr = h.gateway().health_addr().unwrap();
    let response = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn healthz_reports_store_approvers_and_services() {
    let mut h = Harness::start().await;
    let (status, body) = healthz(&h).await;
    assert_eq!(status, 200);
    insta::assert_json_snapshot!("healthz_ok", body);
    // Upstream's form, which its Docker healthchecks read.
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["checks"]["database"], true);
    assert_eq!(body["checks"]["services"]["homeassistant"], true);

    // Home Assistant down: degraded, still 200 (restarting the gateway would not help).
    let ha = std::mem::replace(
        &mut h.ha_server,
        h.home.spawn("127.0.0.1:0").await.unwrap().1,
    );
    ha.shutdown().await.unwrap();
    let (status, body) = healthz(&h).await;
    assert_eq!(status, 200);
    assert_eq!(body["condition"], "degraded");
    assert_eq!(
        body["status"], "healthy",
        "upstream's status ignores services too"
    );
    assert_eq!(body["services"][0]["ok"], false);
    assert_eq!(body["checks"]["services"]["homeassistant"], false);
}
