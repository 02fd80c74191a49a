//! The blocking wrapper against the in-process gateway (which runs on its own
//! thread and runtime).

mod support;

use agent_gate::blocking::Client;
use serde_json::json;
use support::{TOKEN, TestGateway};

#[test]
fn blocking_client_calls_and_closes() {
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut gw = TestGateway::start().await;
            url_tx.send(gw.url()).unwrap();
            let mut conn = gw.accept_authenticated().await;
            let (_, request) = conn.recv_request().await;
            assert_eq!(request.params["tool"], json!("ha_get_state"));
            conn.executed(&request, json!({"state": "on"})).await;
            // The client's close arrives as the end of the stream.
            assert_eq!(conn.recv_text().await, None);
        });
    });
    let url = url_rx.recv().unwrap();
    let client = Client::connect(url, TOKEN).unwrap();
    let data = client
        .tool_request("ha_get_state", json!({"entity_id": "light.x"}))
        .unwrap();
    assert_eq!(data, json!({"state": "on"}));
    client.close();
    server.join().unwrap();
}

#[tokio::test]
async fn blocking_client_refuses_to_run_inside_a_runtime() {
    let err = Client::connect("ws://127.0.0.1:9", TOKEN).unwrap_err();
    assert_eq!(err.kind(), &agent_gate::ErrorKind::Validation);
    assert!(err.to_string().contains("AgentGateClient"), "{err}");
}
