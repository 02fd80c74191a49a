//! A scripted gateway for the typed-tools tests: a real WebSocket server on
//! 127.0.0.1 (tokio-tungstenite) that authenticates the client, records every
//! frame it receives, and answers `tool_request` with the scripted `data` of
//! the tool and `list_tools` with the scripted tool list.

#![allow(dead_code)]

use std::collections::HashMap;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

pub const TOKEN: &str = "typed-tools-token";

/// What the gateway answers.
#[derive(Default, Clone)]
pub struct Script {
    /// `data` per tool name (a tool not listed is answered with an error).
    pub data: HashMap<String, Value>,
    /// The `list_tools` result's `tools`.
    pub tools: Vec<Value>,
}

/// A running scripted gateway.
pub struct ScriptedGateway {
    pub url: String,
    /// Every text frame the client sent after `auth`, in order.
    pub frames: mpsc::UnboundedReceiver<String>,
}

impl ScriptedGateway {
    pub async fn start(script: Script) -> ScriptedGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let script = script.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    serve(ws, script, tx).await;
                });
            }
        });
        ScriptedGateway {
            url: format!("ws://{addr}"),
            frames,
        }
    }

    pub async fn client(&self) -> agent_gate::AgentGateClient {
        let client = agent_gate::AgentGateClient::builder()
            .ignore_env()
            .url(self.url.clone())
            .token(TOKEN)
            // A broken test fails in seconds instead of waiting for approval.
            .request_timeout(std::time::Duration::from_secs(20))
            .connect()
            .await
            .expect("connect to the scripted gateway");
        // Let the client's connection task attach its writer: a call started
        // before that waits forever (client race reported to its owner:
        // `start_call` waits for a state change that never comes when the
        // supervisor has not yet installed the outbox).
        tokio::task::yield_now().await;
        client
    }

    /// The next recorded frame (waits for it).
    pub async fn next_frame(&mut self) -> String {
        self.frames.recv().await.expect("gateway task ended")
    }
}

async fn serve(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    script: Script,
    frames: mpsc::UnboundedSender<String>,
) {
    let (mut sink, mut stream) = ws.split();
    while let Some(message) = stream.next().await {
        if std::env::var_os("GATEWAY_TRACE").is_some() {
            eprintln!("gateway <- {message:?}");
        }
        let Ok(message) = message else { break };
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).expect("client frames are JSON");
        if std::env::var_os("GATEWAY_TRACE").is_some() {
            eprintln!("gateway <- {text}");
        }
        let id = frame["id"].clone();
        let method = frame["method"].as_str().unwrap_or_default().to_owned();
        let reply = match method.as_str() {
            "auth" => {
                assert_eq!(frame["params"]["token"], json!(TOKEN));
                json!({"jsonrpc": "2.0", "id": id, "result": {"status": "authenticated", "request_ids": "idempotent"}})
            }
            "tool_request" => {
                let _ = frames.send(text.to_string());
                let tool = frame["params"]["tool"].as_str().unwrap_or_default();
                let request_id = frame["params"]["request_id"].clone();
                match script.data.get(tool) {
                    Some(data) => json!({"jsonrpc": "2.0", "id": id, "result": {
                        "status": "executed", "data": data, "request_id": request_id}}),
                    None => json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": -32004, "message": format!("no scripted reply for {tool}")}}),
                }
            }
            "list_tools" => {
                let _ = frames.send(text.to_string());
                json!({"jsonrpc": "2.0", "id": id, "result": {"tools": script.tools}})
            }
            "get_pending_results" => {
                json!({"jsonrpc": "2.0", "id": id, "result": {"results": []}})
            }
            other => json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": -32601, "message": format!("unknown method {other}")}}),
        };
        if sink.send(Message::text(reply.to_string())).await.is_err() {
            break;
        }
    }
}
