//! What an MCP client that sends something wrong to `/mcp` gets back, over a real socket: a
//! body that is not one JSON-RPC message is a 400 with a JSON-RPC error saying what was wrong
//! and what to send (not a 415: its media type was right), and a call to a method this
//! server serves whose params do not fit is `-32602 Invalid params` naming the field (not
//! `-32601 Method not found`: the method exists). The stdio bridge (`agent-gate mcp`, the
//! built binary, spoken to as a raw stdio client would) answers such params the same way.

#[path = "server_support/mod.rs"]
mod support;

use std::process::Stdio;

use serde_json::{Value, json};
use support::{Harness, PI_TOKEN};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// POSTs `body` to `/mcp` as a 2025-11-25 client would (JSON, both media types accepted, no
/// session) and returns the status, the content type and the body as text.
async fn post(harness: &Harness, content_type: &str, body: &str) -> (u16, String, String) {
    let url = format!("http://{}/mcp", harness.gateway().ws_addr());
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(PI_TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", content_type)
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.unwrap())
}

/// The JSON-RPC error of a 400 answer to `body`, checked to be one (no id: none could be read).
async fn rejected(harness: &Harness, body: &str) -> Value {
    let (status, content_type, text) = post(harness, "application/json", body).await;
    assert_eq!(status, 400, "{body} → {status} {text}");
    assert_eq!(content_type, "application/json", "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
    assert_eq!(answer["id"], Value::Null, "{answer}");
    answer["error"].clone()
}

/// The JSON-RPC answer (HTTP 200) to a request `method` with `params`.
async fn answered(harness: &Harness, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string();
    let (status, _, text) = post(harness, "application/json", &body).await;
    assert_eq!(status, 200, "{body} → {status} {text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["id"], 7, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_a_parse_error() {
    let harness = Harness::start().await;
    let error = rejected(&harness, r#"{"jsonrpc":"2.0","id":1,"#).await;
    assert_eq!(error["code"], -32700, "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("line 1 column 24"), "{message}");
    assert!(message.contains("one JSON-RPC 2.0 message"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_that_is_not_a_json_rpc_message_is_an_invalid_request() {
    let harness = Harness::start().await;
    let batch = rejected(
        &harness,
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#,
    )
    .await;
    assert_eq!(batch["code"], -32600, "{batch}");
    let message = batch["message"].as_str().unwrap();
    assert!(message.contains("batch"), "{message}");

    for body in [
        r#"{"id":1,"method":"tools/list"}"#,
        r#"{"jsonrpc":"1.0","id":1,"method":"tools/list"}"#,
        r#""tools/list""#,
    ] {
        let error = rejected(&harness, body).await;
        assert_eq!(error["code"], -32600, "{body}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(r#""jsonrpc": "2.0""#), "{body}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_media_type_is_still_refused_as_one() {
    let harness = Harness::start().await;
    let (status, _, text) = post(
        &harness,
        "text/plain",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(status, 415, "{text}");
    assert!(text.contains("application/json"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_that_do_not_fit_a_served_method_are_invalid_params() {
    let harness = Harness::start().await;
    let cases = [
        ("tools/call", json!({}), "missing field `name`"),
        (
            "tools/call",
            json!({"name": 5}),
            "invalid type: integer `5`",
        ),
        (
            "tools/call",
            json!({"name": "ha_get_state", "arguments": 5}),
            "invalid type: integer `5`",
        ),
        ("tasks/get", json!({}), "missing field `taskId`"),
        (
            "tasks/cancel",
            json!({"taskId": []}),
            "invalid type: sequence",
        ),
    ];
    for (method, params, expected) in cases {
        let answer = answered(&harness, method, params.clone()).await;
        let error = &answer["error"];
        assert_eq!(error["code"], -32602, "{method} {params}: {answer}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(method), "{method} {params}: {message}");
        assert!(message.contains(expected), "{method} {params}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_method_is_method_not_found_and_says_what_is_served() {
    let harness = Harness::start().await;
    let answer = answered(&harness, "tools/run", json!({})).await;
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("`tools/run`"), "{message}");
    assert!(message.contains("tools/call"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_call_after_bad_ones_is_answered() {
    let harness = Harness::start().await;
    rejected(&harness, "not json").await;
    let answer = answered(&harness, "tools/list", json!({})).await;
    assert!(
        answer["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_bridge_answers_params_that_do_not_fit_as_invalid_params() {
    let harness = Harness::start().await;
    let mut bridge = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-gate"))
        .args([
            "mcp",
            "--url",
            &format!("ws://{}", harness.gateway().ws_addr()),
        ])
        .env("AGENT_GATE_TOKEN", PI_TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = bridge.stdin.take().unwrap();
    let mut lines = BufReader::new(bridge.stdout.take().unwrap()).lines();
    let mut send = async |message: Value| {
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        }}),
    )
    .await;
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": 5}})).await;
    send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/run", "params": {}})).await;
    let mut answers = std::collections::HashMap::new();
    while answers.len() < 3 {
        let line = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
            .await
            .expect("the bridge answers")
            .unwrap()
            .expect("the bridge keeps its stdout open");
        let message: Value = serde_json::from_str(&line).unwrap();
        if let Some(id) = message["id"].as_i64() {
            answers.insert(id, message);
        }
    }
    let call = &answers[&2]["error"];
    assert_eq!(call["code"], -32602, "{call}");
    let message = call["message"].as_str().unwrap();
    assert!(message.contains("tools/call"), "{message}");
    assert!(message.contains("invalid type: integer `5`"), "{message}");
    // What it serves: the tools, not the Tasks extension.
    let unknown = &answers[&3]["error"];
    assert_eq!(unknown["code"], -32601, "{unknown}");
    let message = unknown["message"].as_str().unwrap();
    assert!(message.contains("`tools/run`"), "{message}");
    assert!(
        message.contains("serves tools/list and tools/call"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_as_too_large() {
    let harness = Harness::start().await;
    let padding = "x".repeat(1024 * 1024);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {"pad": padding}}});
    let (status, _, text) = post(&harness, "application/json", &body.to_string()).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("exceeds 1048576 bytes"), "{text}");
}
