//! Agent tokens kept as digests, over real sockets: a gateway whose config gives an agent only
//! `token_sha256` (the line `agent-gate token new` printed) and another agent two tokens
//! (`tokens:`, rotation) authenticates the right tokens over the WebSocket `auth` and over MCP
//! (`Authorization: Bearer`), and refuses wrong ones (WebSocket auth error, HTTP 401).

#[path = "server_support/mod.rs"]
mod support;

use std::process::Command;

use agent_gate_gateway::config::TokenDigest;
use serde_json::json;
use support::{Harness, LAPTOP_TOKEN, Options};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The laptop's second token, as during a rotation.
const LAPTOP_NEW_TOKEN: &str = "laptop-new-token-0123456789abcdef";

/// Runs `agent-gate token new --agent pi`: the token and the YAML entry it printed.
fn token_new(agent: &str) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_agent-gate"))
        .args(["token", "new", "--agent", agent])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    (lines[1].to_owned(), format!("{}\n{}\n", lines[3], lines[4]))
}

async fn gateway() -> (Harness, String) {
    let (pi_token, pi_entry) = token_new("pi");
    assert!(
        pi_entry.contains("token_sha256") && !pi_entry.contains(&pi_token),
        "{pi_entry}"
    );
    let agents = format!(
        "agents:\n{pi_entry}  - id: laptop\n    tokens:\n      - token: \"{LAPTOP_TOKEN}\"\n      - sha256: \"{}\"\n",
        TokenDigest::of(LAPTOP_NEW_TOKEN).to_hex()
    );
    let harness = Harness::start_with(Options {
        agents: Some(agents),
        ..Options::default()
    })
    .await;
    (harness, pi_token)
}

#[tokio::test]
async fn websocket_auth_checks_tokens_by_digest() {
    let (h, pi_token) = gateway().await;
    let mut pi = h.agent_with(&pi_token).await;
    let tools = pi.call("list_tools", json!({})).await;
    assert!(tools["result"]["tools"].as_array().unwrap().len() > 5);
    // Both of the laptop's tokens work (rotation).
    h.agent_with(LAPTOP_TOKEN).await;
    h.agent_with(LAPTOP_NEW_TOKEN).await;
    assert_eq!(h.gateway().connected_agents(), 2);

    // A wrong token, and the digest itself sent as a token, are refused and closed.
    let digest = TokenDigest::of(&pi_token).to_hex();
    for wrong in [format!("{pi_token}x"), digest] {
        let mut client = h.connect().await;
        let answer = client.call("auth", json!({"token": wrong})).await;
        assert_eq!(answer["error"]["code"], -32005, "{answer}");
        assert_eq!(answer["error"]["message"], "Invalid token");
        assert_eq!(client.closed().await.unwrap().code, CloseCode::Policy);
    }
}

/// `tools/list` over MCP HTTP with this bearer token: the status and the tool count.
async fn mcp_tools(h: &Harness, token: &str) -> (u16, usize) {
    let url = format!("http://{}/mcp", h.gateway().ws_addr());
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let tools = body["result"]["tools"].as_array().map_or(0, Vec::len);
    (status, tools)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_bearer_auth_checks_tokens_by_digest() {
    let (h, pi_token) = gateway().await;
    for token in [pi_token.as_str(), LAPTOP_TOKEN, LAPTOP_NEW_TOKEN] {
        let (status, tools) = mcp_tools(&h, token).await;
        assert_eq!(status, 200);
        assert!(tools > 0, "{tools}");
    }
    let digest = TokenDigest::of(&pi_token).to_hex();
    for wrong in ["not-the-token", digest.as_str()] {
        assert_eq!(mcp_tools(&h, wrong).await.0, 401);
    }
}
