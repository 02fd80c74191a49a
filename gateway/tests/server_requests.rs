//! Requests over a real WebSocket: every error of the protocol (docs/ARCHITECTURE.md; malformed JSON, wrong
//! envelope, unknown method, unknown tool, invalid arguments, policy denial, rate limits),
//! allowed calls executed against the in-process Home Assistant, `list_tools`, concurrency,
//! size and in-flight limits, and the audit trail.

#[path = "server_support/mod.rs"]
mod support;

use agent_gate_gateway::server::ServerLimits;
use agent_gate_gateway::store::{AuditKind, AuditQuery, RequestState};
use serde_json::json;
use support::{Harness, Options, redact};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn an_allowed_call_is_executed_and_audited() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id(
            "ha_get_state",
            json!({"entity_id": "light.kitchen"}),
            "read-1",
        )
        .await;
    let answer = agent.response(id).await;
    assert_eq!(answer["result"]["data"]["entity_id"], "light.kitchen");
    let mut shape = answer.clone();
    shape["result"]["data"] = json!("[state object]");
    insta::assert_json_snapshot!("executed", shape);

    let record = h
        .gateway()
        .store()
        .get_request("pi", "read-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, RequestState::Executed);
    assert_eq!(record.signature, "ha_get_state(light.kitchen)");
    assert_eq!(record.resolved_by.as_deref(), Some("policy"));
    let audit = h
        .gateway()
        .store()
        .audit_page(AuditQuery::new().request_id("read-1"))
        .await
        .unwrap();
    let kinds: Vec<_> = audit.iter().rev().map(|a| a.kind.clone()).collect();
    assert_eq!(kinds, vec![AuditKind::Decision, AuditKind::Executed]);
    let decision = audit
        .iter()
        .find(|a| a.kind == AuditKind::Decision)
        .unwrap();
    assert_eq!(
        decision.rule.as_deref(),
        Some("defaults[0] ha_get_* -> allow")
    );
    let executed = audit
        .iter()
        .find(|a| a.kind == AuditKind::Executed)
        .unwrap();
    assert!(
        executed.detail.as_ref().unwrap()["result_bytes"]
            .as_u64()
            .unwrap()
            > 10
    );
}

#[tokio::test]
async fn without_a_request_id_the_gateway_assigns_one() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    let answer = agent.tool("ha_get_config", json!({})).await;
    let rid = answer["result"]["request_id"].as_str().unwrap().to_owned();
    assert!(rid.starts_with("gw-") && rid.len() == 31, "{rid}");
    assert!(agent_gate_protocol::is_valid_request_id(&rid));
    // Ids begin with the time, so later calls sort after earlier ones (the store's index
    // stays append-mostly) and no two are equal.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let answer = agent.tool("ha_get_config", json!({})).await;
    let later = answer["result"]["request_id"].as_str().unwrap();
    assert!(later > rid.as_str(), "{later} should sort after {rid}");
    assert!(later[3..].chars().all(|c| c.is_ascii_hexdigit()), "{later}");
}

#[tokio::test]
async fn a_policy_denial_is_minus_32003_and_nothing_runs() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    let id = agent
        .tool_with_id(
            "ha_call_service",
            json!({"domain": "lock", "service": "unlock", "entity_id": "lock.front_door"}),
            "unlock-1",
        )
        .await;
    let answer = agent.response(id).await;
    insta::assert_json_snapshot!("denied_by_policy", answer);
    assert_eq!(h.home.service_call_count(), 0);
    let record = h
        .gateway()
        .store()
        .get_request("pi", "unlock-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, RequestState::Denied);
    assert_eq!(
        record.rule.as_deref(),
        Some("rules[0] ha_call_service(lock.*) -> deny")
    );
}

#[tokio::test]
async fn envelope_errors_have_their_codes() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;

    agent.send_raw("{\"jsonrpc\": \"2.0\", \"method\": ").await;
    let parse = agent.recv().await.unwrap();
    assert_eq!(parse["error"]["code"], -32700);
    assert_eq!(parse["id"], json!(null));
    let mut parse_shape = parse.clone();
    parse_shape["error"]["message"] = json!("[serde message]");
    insta::assert_json_snapshot!("parse_error", parse_shape);

    agent
        .send(&json!({"method": "list_tools", "params": {}, "id": 7}))
        .await;
    insta::assert_json_snapshot!("missing_jsonrpc", agent.recv().await.unwrap());

    agent
        .send(&json!({"jsonrpc": "1.0", "method": "list_tools", "id": 8}))
        .await;
    insta::assert_json_snapshot!("wrong_version", agent.recv().await.unwrap());

    agent.send(&json!({"jsonrpc": "2.0", "id": 9})).await;
    insta::assert_json_snapshot!("missing_method", agent.recv().await.unwrap());

    agent.send(&json!([1, 2])).await;
    insta::assert_json_snapshot!("batch", agent.recv().await.unwrap());

    let unknown = agent.call("subscribe", json!({})).await;
    insta::assert_json_snapshot!("unknown_method", unknown);

    let missing_tool = agent.call("tool_request", json!({"args": {}})).await;
    assert_eq!(missing_tool["error"]["code"], -32600);

    let bad_id = agent
        .call(
            "tool_request",
            json!({"tool": "ha_get_states", "request_id": "has space"}),
        )
        .await;
    insta::assert_json_snapshot!("invalid_request_id", bad_id);
}

#[tokio::test]
async fn an_unknown_tool_names_the_nearest_tools() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    let answer = agent
        .tool("ha_get_stat", json!({"entity_id": "light.kitchen"}))
        .await;
    insta::assert_json_snapshot!("unknown_tool", redact(answer.clone()));
    let available = answer["error"]["data"]["details"]["available_tools"]
        .as_array()
        .unwrap();
    assert_eq!(available[0], "ha_get_state");
    assert_eq!(available.len(), support::manifest().tools().len());
    // The refusal is audited.
    let audit = h
        .gateway()
        .store()
        .audit_page(AuditQuery::new().agent("pi"))
        .await
        .unwrap();
    assert!(audit.iter().any(|a| {
        a.detail
            .as_ref()
            .is_some_and(|d| d["reason"] == "unknown_tool")
    }));
}

#[tokio::test]
async fn invalid_arguments_say_which_and_what_was_expected() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    let answer = agent
        .call(
            "tool_request",
            json!({"tool": "ha_get_state", "args": {"entity_id": "light.*"}, "request_id": "bad-args"}),
        )
        .await;
    insta::assert_json_snapshot!("invalid_args_pattern", answer);
    let missing = agent
        .call(
            "tool_request",
            json!({"tool": "ha_call_service", "args": {"domain": "light", "extra": 1}, "request_id": "bad-args-2"}),
        )
        .await;
    insta::assert_json_snapshot!("invalid_args_missing", missing);
    assert_eq!(h.home.service_call_count(), 0);
}

#[tokio::test]
async fn list_tools_has_upstream_fields_and_input_schema() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    let answer = agent.call("list_tools", json!({})).await;
    let tools = answer["result"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), support::manifest().tools().len());
    let state = tools.iter().find(|t| t["name"] == "ha_get_state").unwrap();
    insta::assert_json_snapshot!("list_tools_ha_get_state", state);
    for tool in tools {
        for key in ["name", "description", "service", "args", "input_schema"] {
            assert!(tool.get(key).is_some(), "{key} missing in {tool}");
        }
    }
}

#[tokio::test]
async fn the_request_rate_is_limited_per_agent() {
    let h = Harness::start_with(Options {
        max_requests_per_minute: 3,
        ..Options::default()
    })
    .await;
    let mut pi = h.agent().await;
    for _ in 0..3 {
        let ok = pi.tool("ha_get_config", json!({})).await;
        assert_eq!(ok["result"]["status"], "executed");
    }
    let limited = pi.tool("ha_get_config", json!({})).await;
    insta::assert_json_snapshot!("rate_limited", redact(limited.clone()));
    assert!(limited["error"]["data"]["retry_after"].as_f64().unwrap() > 0.0);
    // Another agent has its own window.
    let mut laptop = h.agent_with(support::LAPTOP_TOKEN).await;
    let ok = laptop.tool("ha_get_config", json!({})).await;
    assert_eq!(ok["result"]["status"], "executed");
}

#[tokio::test]
async fn concurrent_requests_are_answered_as_they_finish() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    // The first request waits for a human; the second is allowed and overtakes it.
    let slow = agent
        .tool_with_id(
            "ha_call_service",
            json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom"}),
            "slow",
        )
        .await;
    let request = h.approver.next_request().await.unwrap();
    let fast = agent
        .tool_with_id(
            "ha_get_state",
            json!({"entity_id": "light.bedroom"}),
            "fast",
        )
        .await;
    let first = agent.response(fast).await;
    assert_eq!(first["result"]["data"]["state"], "off");
    assert!(agent.backlog.iter().all(|f| f["id"] != json!(slow)));
    h.approver.approve(request.key, "alice").await;
    let second = agent.response(slow).await;
    assert_eq!(second["result"]["status"], "executed");
    assert_eq!(h.home.state("light.bedroom").unwrap()["state"], "on");
}

#[tokio::test]
async fn an_execution_failure_is_minus_32004() {
    let h = Harness::start().await;
    let mut agent = h.agent().await;
    let answer = agent
        .tool(
            "ha_get_state",
            json!({"entity_id": "sensor.does_not_exist"}),
        )
        .await;
    assert_eq!(answer["error"]["code"], -32004);
    insta::assert_json_snapshot!("execution_failed", redact(answer.clone()));
    let rid = answer["error"]["data"]["details"]["request_id"]
        .as_str()
        .unwrap();
    let record = h
        .gateway()
        .store()
        .get_request("pi", rid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, RequestState::Failed);
}

#[tokio::test]
async fn an_oversized_message_closes_the_connection() {
    let h = Harness::start_with(Options {
        limits: ServerLimits {
            max_message_size: 4096,
            ..ServerLimits::default()
        },
        ..Options::default()
    })
    .await;
    let mut agent = h.agent().await;
    let big = "x".repeat(8192);
    agent
        .send(&json!({"jsonrpc": "2.0", "method": "list_tools", "params": {"pad": big}, "id": 1}))
        .await;
    let close = agent.closed().await.expect("close frame");
    assert_eq!(close.code, CloseCode::Size);
}

#[tokio::test]
async fn in_flight_requests_per_connection_are_capped() {
    let h = Harness::start_with(Options {
        limits: ServerLimits {
            max_in_flight: 1,
            ..ServerLimits::default()
        },
        ..Options::default()
    })
    .await;
    let mut agent = h.agent().await;
    let waiting = agent
        .tool_with_id(
            "ha_call_service",
            json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom"}),
            "waits",
        )
        .await;
    let request = h.approver.next_request().await.unwrap();
    let refused = agent.tool("ha_get_config", json!({})).await;
    insta::assert_json_snapshot!("in_flight_cap", refused);
    h.approver.deny(request.key, "bob").await;
    assert_eq!(agent.response(waiting).await["error"]["code"], -32001);
    let ok = agent.tool("ha_get_config", json!({})).await;
    assert_eq!(ok["result"]["status"], "executed");
}

/// A local HTTP backend that answers every request with `{}` after a short pause and counts
/// the connections open to it and the requests it is serving at once.
struct CountingBackend {
    addr: std::net::SocketAddr,
    counts: std::sync::Arc<std::sync::Mutex<BackendCounts>>,
}

#[derive(Debug, Default)]
struct BackendCounts {
    open: usize,
    peak_open: usize,
    serving: usize,
    peak_serving: usize,
    answered: usize,
}

impl CountingBackend {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = std::sync::Arc::new(std::sync::Mutex::new(BackendCounts::default()));
        let shared = std::sync::Arc::clone(&counts);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counts = std::sync::Arc::clone(&shared);
                tokio::spawn(async move {
                    {
                        let mut c = counts.lock().unwrap();
                        c.open += 1;
                        c.peak_open = c.peak_open.max(c.open);
                    }
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    'connection: loop {
                        // One request head (the gateway's GETs have no body).
                        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => break 'connection,
                                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        buffer.drain(..end);
                        {
                            let mut c = counts.lock().unwrap();
                            c.serving += 1;
                            c.peak_serving = c.peak_serving.max(c.serving);
                        }
                        // A short pause: the calls pile up behind the cap, and connections cycle fast.
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        let body = r#"{"entity_id":"sensor.x","state":"1"}"#;
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        let written = stream.write_all(answer.as_bytes()).await;
                        {
                            let mut c = counts.lock().unwrap();
                            c.serving -= 1;
                            c.answered += 1;
                        }
                        if written.is_err() {
                            break;
                        }
                    }
                    counts.lock().unwrap().open -= 1;
                });
            }
        });
        Self { addr, counts }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_are_capped_per_service_and_every_call_completes() {
    const CALLS: usize = 2000;
    const ROUNDS: usize = 10;
    // The default of services.<name>.max_connections.
    const CAP: usize = 32;
    let backend = CountingBackend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default();
    let config = support::load_config(dir.path(), backend.addr, &options);
    let gateway = agent_gate_gateway::app::Gateway::builder(
        config,
        support::load_policy(dir.path()),
        support::manifest(),
    )
    .insecure(true)
    .start()
    .await
    .unwrap();
    let mut agent = support::Client::connect(&gateway.ws_url()).await;
    let auth = agent
        .call("auth", json!({"token": support::PI_TOKEN}))
        .await;
    assert_eq!(auth["result"]["status"], "authenticated");
    // Rounds of calls sent without waiting, so that each round's calls queue behind the cap
    // and every connection goes back to the pool and out again many times.
    let mut executed = 0;
    for round in 0..ROUNDS {
        let mut ids = Vec::with_capacity(CALLS / ROUNDS);
        for i in 0..CALLS / ROUNDS {
            ids.push(
                agent
                    .tool_with_id(
                        "ha_get_state",
                        json!({"entity_id": "sensor.x"}),
                        &format!("many-{round}-{i}"),
                    )
                    .await,
            );
        }
        for id in ids {
            let answer = agent.response(id).await;
            if answer["result"]["status"] == "executed" {
                executed += 1;
            }
        }
    }
    assert_eq!(executed, CALLS, "every call completes");
    // The backend counts an answer once its write returns, which can be after the gateway has
    // read it and answered the agent: give the last count a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while backend.counts.lock().unwrap().answered < CALLS + 1
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    {
        let counts = backend.counts.lock().unwrap();
        // The start-up health check is one more request.
        assert_eq!(counts.answered, CALLS + 1);
        assert!(counts.peak_serving <= CAP, "{counts:?}");
        assert!(counts.peak_open <= CAP, "{counts:?}");
    }
    gateway.shutdown().await.unwrap();
}
