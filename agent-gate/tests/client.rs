//! Client tests against an in-process WebSocket gateway (tests/support): calls,
//! errors, pipelining, authentication, close, reconnection (paused clock),
//! offline results, streaming, keep-alive, TLS, and snapshots of every frame
//! the client sends.

mod support;

use std::time::Duration;

use agent_gate::protocol::{ErrorCode, ErrorObject, Id, Response};
use agent_gate::{AgentGateClient, CallEvent, CallOptions, ConnectionState, DeniedBy, ErrorKind};
use futures_util::StreamExt;
use insta::assert_snapshot;
use serde_json::{Value, json};
use support::{Conn, TOKEN, TestGateway, builder};
use tokio::time::Instant;

/// Connect a client to `gw` and return it with the authenticated server side.
async fn connected(
    gw: &mut TestGateway,
    configure: impl FnOnce(agent_gate::ClientBuilder) -> agent_gate::ClientBuilder,
) -> (AgentGateClient, Conn) {
    let connect = tokio::spawn(configure(builder(gw)).connect());
    let conn = gw.accept_authenticated().await;
    let client = connect.await.unwrap().expect("connect");
    (client, conn)
}

// ------------------------------------------------------------------ frames and calls

#[tokio::test]
async fn auth_is_the_first_frame_and_calls_use_incrementing_ids() {
    let mut gw = TestGateway::start().await;
    let connect = tokio::spawn(builder(&gw).connect());
    let mut conn = gw.accept().await;
    let auth = conn.authenticate().await;
    assert_snapshot!("client_frame_auth", auth);
    let client = connect.await.unwrap().unwrap();
    assert_eq!(client.connection_state(), ConnectionState::Connected);

    let c = client.clone();
    let call = tokio::spawn(async move {
        c.tool_request_with(
            "ha_get_state",
            json!({"entity_id": "sensor.temp"}),
            CallOptions::new().request_id("req-fixed-1"),
        )
        .await
    });
    let (text, request) = conn.recv_request().await;
    assert_snapshot!("client_frame_tool_request", text);
    assert_eq!(request.id, Id::Number(1));
    conn.executed(
        &request,
        json!({"entity_id": "sensor.temp", "state": "21.3"}),
    )
    .await;
    assert_eq!(
        call.await.unwrap().unwrap(),
        json!({"entity_id": "sensor.temp", "state": "21.3"})
    );

    // A generated request_id, then list_tools and get_pending_results.
    let c = client.clone();
    let call = tokio::spawn(async move { c.tool_request("ha_get_states", Value::Null).await });
    let (_, request) = conn.recv_request().await;
    assert_eq!(request.id, Id::Number(2));
    let rid = request.params["request_id"].as_str().unwrap().to_owned();
    assert!(agent_gate::protocol::is_valid_request_id(&rid), "{rid}");
    assert_eq!(request.params["args"], json!({}));
    conn.executed(&request, json!([])).await;
    assert_eq!(call.await.unwrap().unwrap(), json!([]));

    let c = client.clone();
    let call = tokio::spawn(async move { c.list_tools().await });
    let (text, request) = conn.recv_request().await;
    assert_snapshot!("client_frame_list_tools", text);
    conn.result(
        request.id,
        json!({"tools": [{"name": "ha_get_state", "description": "d", "service": "homeassistant",
                          "args": {}, "input_schema": {"type": "object"}}]}),
    )
    .await;
    let tools = call.await.unwrap().unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].name, "ha_get_state");

    let c = client.clone();
    let call = tokio::spawn(async move { c.get_pending_results().await });
    let (text, request) = conn.recv_request().await;
    assert_snapshot!("client_frame_get_pending_results", text);
    conn.result(request.id, json!({"results": []})).await;
    assert!(call.await.unwrap().unwrap().is_empty());

    client.close().await;
    assert_eq!(conn.recv_text().await, None, "client sends Close");
}

#[tokio::test(start_paused = true)]
async fn a_call_made_right_after_connect_is_sent_at_once() {
    // Regression: the connection used to be attached by a task that had not run yet when
    // `connect()` returned, so the first call waited for its whole timeout.
    let mut gw = TestGateway::start().await;
    let builder = builder(&gw).request_timeout(Duration::from_secs(30));
    let agent = tokio::spawn(async move {
        let client = builder.connect().await?;
        // No yield between connect and the call.
        client.tool_request("ha_get_config", json!({})).await
    });
    let mut conn = gw.accept_authenticated().await;
    let (_, request) = conn.recv_request().await;
    conn.executed(&request, json!({"version": "2026.11.0"}))
        .await;
    let answered = agent.await.unwrap().expect("answered, not timed out");
    assert_eq!(answered, json!({"version": "2026.11.0"}));
}

#[tokio::test]
async fn every_error_code_maps_to_its_kind() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b).await;
    let cases: Vec<(ErrorObject, ErrorKind)> = vec![
        (
            ErrorObject::new(ErrorCode::DeniedByHuman, "Denied by user"),
            ErrorKind::Denied {
                by: DeniedBy::Human,
            },
        ),
        (
            ErrorObject::new(ErrorCode::DeniedByPolicy, "Denied by policy"),
            ErrorKind::Denied {
                by: DeniedBy::Policy,
            },
        ),
        (
            ErrorObject::new(ErrorCode::ApprovalTimeout, "Approval timed out"),
            ErrorKind::Timeout,
        ),
        (
            ErrorObject::new(ErrorCode::ExecutionFailed, "HA said 500")
                .with_details(json!({"status": 500})),
            ErrorKind::Execution,
        ),
        (
            ErrorObject::new(ErrorCode::NotAuthenticated, "Not authenticated"),
            ErrorKind::Authentication,
        ),
        (
            ErrorObject::new(ErrorCode::RateLimited, "Slow down").with_retry_after(3.0),
            ErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(3)),
            },
        ),
        (
            ErrorObject::new(ErrorCode::InvalidRequest, "entity_id: missing")
                .with_suggestion("pass entity_id"),
            ErrorKind::Validation,
        ),
        (
            ErrorObject::new(ErrorCode::ParseError, "Parse error"),
            ErrorKind::Protocol,
        ),
        (
            ErrorObject::new(ErrorCode::InternalError, "boom"),
            ErrorKind::Execution,
        ),
        (
            ErrorObject::new(ErrorCode::Other(-32050), "new"),
            ErrorKind::Execution,
        ),
    ];
    for (object, kind) in cases {
        let c = client.clone();
        let call = tokio::spawn(async move {
            c.tool_request("ha_get_state", json!({"entity_id": "a.b"}))
                .await
        });
        let (_, request) = conn.recv_request().await;
        conn.respond(Response::error(Some(request.id), object.clone()))
            .await;
        let err = call.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), &kind, "{object:?}");
        assert_eq!(err.code(), Some(object.code));
        assert_eq!(err.message(), object.message);
        assert_eq!(err.details(), object.details());
        if let Some(s) = object.suggestion() {
            assert_eq!(err.suggestion(), Some(s));
        }
        assert!(err.to_string().contains(&object.message), "{err}");
    }
    client.close().await;
}

#[tokio::test]
async fn unknown_tool_lists_the_gateway_tools_nearest_first() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b).await;

    // The gateway lists its tools in details.
    let c = client.clone();
    let call = tokio::spawn(async move { c.tool_request("ha_get_stat", json!({})).await });
    let (_, request) = conn.recv_request().await;
    conn.respond(Response::error(
        Some(request.id),
        ErrorObject::new(ErrorCode::MethodNotFound, "Unknown tool: ha_get_stat").with_details(
            json!({"tool": "ha_get_stat", "available_tools": ["ha_call_service", "ha_get_states", "ha_get_state"]}),
        ),
    ))
    .await;
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::UnknownTool);
    assert_eq!(
        err.available_tools(),
        ["ha_get_state", "ha_get_states", "ha_call_service"]
    );
    assert!(
        err.to_string().contains("did you mean \"ha_get_state\""),
        "{err}"
    );

    // It does not: the client asks list_tools and ranks the names itself.
    let c = client.clone();
    let call = tokio::spawn(async move { c.tool_request("ha_fire_evnt", json!({})).await });
    let (_, request) = conn.recv_request().await;
    conn.respond(Response::error(
        Some(request.id),
        ErrorObject::new(ErrorCode::InvalidRequest, "Unknown tool 'ha_fire_evnt'"),
    ))
    .await;
    let (_, list) = conn.recv_request().await;
    assert_eq!(list.method, "list_tools");
    let tool = |n: &str| json!({"name": n, "description": "", "service": "homeassistant", "args": {}, "input_schema": {}});
    conn.result(
        list.id,
        json!({"tools": [tool("ha_get_state"), tool("ha_fire_event"), tool("ha_get_config")]}),
    )
    .await;
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::UnknownTool);
    assert_eq!(err.code(), Some(ErrorCode::InvalidRequest));
    assert_eq!(err.available_tools()[0], "ha_fire_event");
    client.close().await;
}

#[tokio::test]
async fn local_validation_fails_before_sending() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b).await;
    let err = client.tool_request("t", json!([1, 2])).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Validation);
    let err = client
        .tool_request_with("t", json!({}), CallOptions::new().request_id("has space"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Validation);
    let err = client.tool_request("", json!({})).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Validation);
    // Nothing reached the gateway: the next frame is the next real call.
    let c = client.clone();
    let call = tokio::spawn(async move { c.list_tools().await });
    let (_, request) = conn.recv_request().await;
    assert_eq!(request.method, "list_tools");
    conn.result(request.id, json!({"tools": []})).await;
    call.await.unwrap().unwrap();
    client.close().await;
}

#[tokio::test]
async fn hundred_concurrent_calls_answered_out_of_order_resolve_independently() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b).await;
    let mut calls = Vec::new();
    for i in 0..100 {
        let c = client.clone();
        calls.push(tokio::spawn(async move {
            c.tool_request("echo", json!({"n": i})).await
        }));
    }
    let mut requests = Vec::new();
    for _ in 0..100 {
        requests.push(conn.recv_request().await.1);
    }
    assert_eq!(client.in_flight(), 100);
    // Answer in reverse order, interleaving one error.
    for request in requests.iter().rev() {
        let n = request.params["args"]["n"].as_i64().unwrap();
        if n == 42 {
            conn.respond(Response::error(
                Some(request.id.clone()),
                ErrorObject::new(ErrorCode::DeniedByPolicy, "no 42"),
            ))
            .await;
        } else {
            conn.executed(request, json!({"n": n})).await;
        }
    }
    for (i, call) in calls.into_iter().enumerate() {
        let result = call.await.unwrap();
        if i == 42 {
            assert!(result.unwrap_err().is_denied());
        } else {
            assert_eq!(result.unwrap(), json!({"n": i}));
        }
    }
    assert_eq!(client.in_flight(), 0);
    client.close().await;
}

// ------------------------------------------------------------------ authentication

#[tokio::test]
async fn wrong_token_is_an_authentication_error_without_the_token() {
    let mut gw = TestGateway::start().await;
    let connect = tokio::spawn(
        builder(&gw)
            .token("wrong-secret-token")
            .max_retries(Some(3))
            .connect(),
    );
    let mut conn = gw.accept().await;
    let (_, request) = conn.recv_request().await;
    assert_eq!(request.params["token"], json!("wrong-secret-token"));
    conn.respond(Response::error(
        Some(request.id),
        ErrorObject::new(ErrorCode::NotAuthenticated, "Invalid token"),
    ))
    .await;
    let err = connect.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Authentication);
    assert_eq!(err.code(), Some(ErrorCode::NotAuthenticated));
    assert_eq!(err.message(), "Invalid token");
    assert!(!format!("{err} {err:?}").contains("wrong-secret-token"));
}

#[tokio::test(start_paused = true)]
async fn auth_timeout_is_an_authentication_error() {
    let mut gw = TestGateway::start().await;
    let start = Instant::now();
    let connect = tokio::spawn(
        builder(&gw)
            .connect_timeout(Duration::from_secs(5))
            .connect(),
    );
    let mut conn = gw.accept().await;
    let _ = conn.recv_request().await; // never answered
    let err = connect.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Authentication);
    assert!(err.message().contains("did not answer auth"), "{err}");
    assert!(start.elapsed() >= Duration::from_secs(5));
    drop(conn);
}

#[tokio::test]
async fn a_non_auth_reply_is_an_authentication_error() {
    let mut gw = TestGateway::start().await;
    let connect = tokio::spawn(builder(&gw).connect());
    let mut conn = gw.accept().await;
    let _ = conn.recv_request().await;
    conn.result(Id::Number(1), json!({"status": "executed", "data": {}}))
        .await;
    let err = connect.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Authentication);
    assert!(
        err.message().contains("did not answer auth properly"),
        "{err}"
    );

    // A success with another status is no better.
    let connect = tokio::spawn(builder(&gw).connect());
    let mut conn = gw.accept().await;
    let (_, request) = conn.recv_request().await;
    conn.result(request.id, json!({"status": "maybe"})).await;
    let err = connect.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Authentication);
}

#[tokio::test]
async fn unreachable_gateway_fails_after_max_retries() {
    let mut gw = TestGateway::start().await;
    gw.stop_listening();
    let err = builder(&gw)
        .max_retries(Some(0))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connection);
    assert!(err.message().contains("Connection lost"), "{err}");
    assert!(err.suggestion().unwrap().contains("max_retries"));
}

// ------------------------------------------------------------------ close

#[tokio::test]
async fn close_fails_outstanding_calls_and_refuses_new_ones() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b).await;
    let c = client.clone();
    let call = tokio::spawn(async move { c.tool_request("slow", json!({})).await });
    let _ = conn.recv_request().await;
    client.close().await;
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connection);
    assert!(err.message().contains("closed"), "{err}");
    assert_eq!(client.connection_state(), ConnectionState::Closed);
    assert_eq!(conn.recv_text().await, None);
    let err = client.tool_request("t", json!({})).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connection);
    client.close().await; // twice is fine
    assert_eq!(client.reconnect_count(), 0);
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_connection() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b).await;
    drop(client);
    assert_eq!(conn.recv_text().await, None);
}

// ------------------------------------------------------------------ in-flight limit, cancellation, timeouts

#[tokio::test(start_paused = true)]
async fn in_flight_limit_makes_calls_wait_not_fail() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b.max_in_flight(2)).await;
    let mut calls = Vec::new();
    for i in 0..3 {
        let c = client.clone();
        calls.push(tokio::spawn(async move {
            c.tool_request("t", json!({"i": i})).await
        }));
    }
    let (_, first) = conn.recv_request().await;
    let (_, _second) = conn.recv_request().await;
    // The third waits for a free slot.
    assert!(
        tokio::time::timeout(Duration::from_secs(60), conn.recv_text())
            .await
            .is_err()
    );
    conn.executed(&first, json!("one")).await;
    let (_, third) = conn.recv_request().await;
    assert_eq!(third.params["args"], json!({"i": 2}));
    client.close().await;
    for call in calls {
        // Closed while waiting: an error, not a hang.
        let _ = call.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_a_call_removes_its_pending_entry() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b.max_in_flight(1)).await;
    let c = client.clone();
    let first = tokio::spawn(async move { c.tool_request("t", json!({"n": 1})).await });
    let (_, abandoned) = conn.recv_request().await;
    assert_eq!(client.in_flight(), 1);
    first.abort();
    let _ = first.await;
    assert_eq!(client.in_flight(), 0);
    // Its slot is free again, and a late answer is ignored harmlessly.
    conn.executed(&abandoned, json!("late")).await;
    let c = client.clone();
    let second = tokio::spawn(async move { c.tool_request("t", json!({"n": 2})).await });
    let (_, request) = conn.recv_request().await;
    conn.executed(&request, json!("two")).await;
    assert_eq!(second.await.unwrap().unwrap(), json!("two"));
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn per_call_timeout_override() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) =
        connected(&mut gw, |b| b.request_timeout(Duration::from_secs(900))).await;
    let start = Instant::now();
    let c = client.clone();
    let call = tokio::spawn(async move {
        c.tool_request_with(
            "t",
            json!({}),
            CallOptions::new()
                .timeout(Duration::from_secs(5))
                .request_id("slow-1"),
        )
        .await
    });
    let _ = conn.recv_request().await;
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout);
    assert_eq!(err.code(), None);
    assert!(err.message().contains("slow-1"), "{err}");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    assert_eq!(client.in_flight(), 0);
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn approval_gated_calls_wait_as_long_as_the_request_timeout() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b.ping_interval(Duration::from_secs(20))).await;
    let c = client.clone();
    let call = tokio::spawn(async move {
        c.tool_request("ha_call_service", json!({"domain": "lock"}))
            .await
    });
    let (_, request) = conn.recv_request().await;
    // A human answers after 14 minutes; pings keep the connection alive meanwhile.
    tokio::time::sleep(Duration::from_secs(14 * 60)).await;
    conn.executed(&request, json!({"ok": true})).await;
    assert_eq!(call.await.unwrap().unwrap(), json!({"ok": true}));
    assert_eq!(client.reconnect_count(), 0);
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn approval_gated_calls_follow_the_gateways_expires_at_past_the_default_timeout() {
    // The gateway's approval timeout is longer than DEFAULT_REQUEST_TIMEOUT (930 s): once it
    // says when the approval expires, the call waits for the human instead of giving up.
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b.ping_interval(Duration::from_secs(20))).await;
    let c = client.clone();
    let call = tokio::spawn(async move {
        c.tool_request_with(
            "ha_call_service",
            json!({"domain": "lock"}),
            CallOptions::new().request_id("long-1"),
        )
        .await
    });
    let (_, request) = conn.recv_request().await;
    conn.send_json(json!({"jsonrpc": "2.0", "method": "request_status",
        "params": {"request_id": "long-1", "status": "awaiting_approval", "expires_at": "2099-01-01T00:00:00Z"}}))
        .await;
    // A human answers after 20 minutes, past the old fixed deadline.
    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
    conn.executed(&request, json!({"ok": true})).await;
    assert_eq!(call.await.unwrap().unwrap(), json!({"ok": true}));
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn an_explicit_request_timeout_wins_over_the_gateways_expires_at() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) =
        connected(&mut gw, |b| b.request_timeout(Duration::from_secs(60))).await;
    let c = client.clone();
    let call = tokio::spawn(async move {
        c.tool_request_with(
            "ha_call_service",
            json!({"domain": "lock"}),
            CallOptions::new().request_id("short-1"),
        )
        .await
    });
    let _ = conn.recv_request().await;
    conn.send_json(json!({"jsonrpc": "2.0", "method": "request_status",
        "params": {"request_id": "short-1", "status": "awaiting_approval", "expires_at": "2099-01-01T00:00:00Z"}}))
        .await;
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Timeout);
    assert_eq!(err.code(), None, "the client's own timeout: {err}");
    assert!(err.message().contains("short-1"), "{err}");
    client.close().await;
}

// ------------------------------------------------------------------ streaming

#[tokio::test]
async fn stream_yields_awaiting_approval_then_the_result() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b).await;
    let mut events = client.tool_request_stream(
        "ha_call_service",
        json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom"}),
        CallOptions::new().request_id("stream-1"),
    );
    let next = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(e) = events.next().await {
            got.push(e);
        }
        got
    });
    let (_, request) = conn.recv_request().await;
    conn.send_json(json!({"jsonrpc": "2.0", "method": "request_status",
        "params": {"request_id": "other", "status": "awaiting_approval"}}))
        .await;
    conn.send_json(json!({"jsonrpc": "2.0", "method": "request_status",
        "params": {"request_id": "stream-1", "status": "awaiting_approval", "expires_at": "2026-01-01T00:15:00Z"}})).await;
    conn.send_json(json!({"jsonrpc": "2.0", "method": "something_new", "params": {}}))
        .await;
    conn.executed(&request, json!({"done": 1})).await;
    let got = next.await.unwrap();
    assert_eq!(
        got,
        vec![
            CallEvent::AwaitingApproval {
                request_id: "stream-1".into(),
                expires_at: Some("2026-01-01T00:15:00Z".into())
            },
            CallEvent::Result(json!({"done": 1})),
        ]
    );

    // A denied streaming call ends with the error.
    let mut events = client.tool_request_stream("t", json!({}), CallOptions::new());
    let next = tokio::spawn(async move { events.next().await });
    let (_, request) = conn.recv_request().await;
    conn.respond(Response::error(
        Some(request.id),
        ErrorObject::new(ErrorCode::DeniedByHuman, "no"),
    ))
    .await;
    match next.await.unwrap() {
        Some(CallEvent::Error(e)) => assert_eq!(
            e.kind(),
            &ErrorKind::Denied {
                by: DeniedBy::Human
            }
        ),
        other => panic!("{other:?}"),
    }
    client.close().await;
}

// ------------------------------------------------------------------ reconnection

/// Collect connection states until `stop` matches, with their times.
async fn states_until(
    rx: &mut tokio::sync::broadcast::Receiver<ConnectionState>,
    stop: impl Fn(&ConnectionState) -> bool,
) -> Vec<(Instant, ConnectionState)> {
    let mut out = Vec::new();
    loop {
        let s = rx.recv().await.unwrap();
        let done = stop(&s);
        out.push((Instant::now(), s));
        if done {
            return out;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn reconnects_with_exponential_backoff_and_resends_outstanding_calls() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b).await;
    let mut events = client.subscribe();
    let c = client.clone();
    let call = tokio::spawn(async move {
        c.tool_request_with(
            "ha_get_state",
            json!({"entity_id": "sensor.temp"}),
            CallOptions::new().request_id("keep-1"),
        )
        .await
    });
    let (original, _) = conn.recv_request().await;

    // The gateway goes away: three attempts are refused, the fourth succeeds.
    gw.stop_listening();
    let lost_at = Instant::now();
    conn.kill();
    let states = states_until(&mut events, |s| {
        matches!(s, ConnectionState::Reconnecting { attempt: 4, .. })
    })
    .await;
    gw.resume_listening().await;
    let mut conn = gw.accept_authenticated().await;
    let states_after = states_until(&mut events, |s| *s == ConnectionState::Connected).await;

    let delays: Vec<(u32, Duration)> = states
        .iter()
        .map(|(_, s)| match s {
            ConnectionState::Reconnecting { attempt, delay } => (*attempt, *delay),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        delays,
        [
            (1, Duration::from_secs(1)),
            (2, Duration::from_secs(2)),
            (3, Duration::from_secs(4)),
            (4, Duration::from_secs(8))
        ]
    );
    // Each attempt happens after its delay (the refused ones fail at once).
    let offsets: Vec<u64> = states
        .iter()
        .map(|(t, _)| (*t - lost_at).as_secs())
        .collect();
    assert_eq!(offsets, [0, 1, 3, 7]);
    assert_eq!((states_after[0].0 - lost_at).as_secs(), 15);

    // The outstanding call is re-sent unchanged, and pending results are fetched.
    let mut resent = None;
    let mut pending = None;
    for _ in 0..2 {
        let (text, request) = conn.recv_request().await;
        match request.method.as_str() {
            "tool_request" => resent = Some((text, request)),
            "get_pending_results" => pending = Some(request),
            other => panic!("unexpected {other}"),
        }
    }
    let (resent_text, resent) = resent.unwrap();
    assert_eq!(resent_text, original);
    assert_snapshot!("client_frame_tool_request_resent", resent_text);
    conn.result(pending.unwrap().id, json!({"results": []}))
        .await;
    conn.executed(&resent, json!({"state": "20.0"})).await;
    assert_eq!(call.await.unwrap().unwrap(), json!({"state": "20.0"}));
    assert_eq!(client.reconnect_count(), 1);
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn backoff_is_capped_at_thirty_seconds() {
    let mut gw = TestGateway::start().await;
    let (client, conn) = connected(&mut gw, |b| b).await;
    let mut events = client.subscribe();
    gw.stop_listening();
    conn.kill();
    let states = states_until(&mut events, |s| {
        matches!(s, ConnectionState::Reconnecting { attempt: 8, .. })
    })
    .await;
    let delays: Vec<u64> = states
        .iter()
        .map(|(_, s)| match s {
            ConnectionState::Reconnecting { delay, .. } => delay.as_secs(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn jitter_adds_a_little_to_each_step() {
    let mut gw = TestGateway::start().await;
    let (client, conn) = connected(&mut gw, |b| b.backoff_jitter(0.1)).await;
    let mut events = client.subscribe();
    gw.stop_listening();
    conn.kill();
    let states = states_until(&mut events, |s| {
        matches!(s, ConnectionState::Reconnecting { attempt: 4, .. })
    })
    .await;
    for (i, (_, s)) in states.iter().enumerate() {
        let ConnectionState::Reconnecting { delay, .. } = s else {
            panic!("{s:?}")
        };
        let nominal = Duration::from_secs(1 << i);
        assert!(
            *delay >= nominal && *delay <= nominal.mul_f64(1.1),
            "{delay:?} vs {nominal:?}"
        );
    }
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn max_retries_exhausted_fails_outstanding_calls() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b.max_retries(Some(2))).await;
    let c = client.clone();
    let call = tokio::spawn(async move { c.tool_request("t", json!({})).await });
    let _ = conn.recv_request().await;
    gw.stop_listening();
    let start = Instant::now();
    conn.kill();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connection);
    assert!(err.message().starts_with("Connection lost"), "{err}");
    assert!(err.message().contains("2 attempt"), "{err}");
    assert_eq!(start.elapsed().as_secs(), 3, "1 s + 2 s of backoff");
    assert!(matches!(
        client.connection_state(),
        ConnectionState::Failed(_)
    ));
    let later = client.tool_request("t", json!({})).await.unwrap_err();
    assert_eq!(later.kind(), &ErrorKind::Connection);
}

#[tokio::test(start_paused = true)]
async fn close_during_backoff_stops_promptly() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b).await;
    let mut events = client.subscribe();
    let c = client.clone();
    let call = tokio::spawn(async move { c.tool_request("t", json!({})).await });
    let _ = conn.recv_request().await;
    gw.stop_listening();
    conn.kill();
    // Wait until the client sleeps 8 s before attempt 4, then close.
    states_until(&mut events, |s| {
        matches!(s, ConnectionState::Reconnecting { attempt: 4, .. })
    })
    .await;
    let start = Instant::now();
    client.close().await;
    assert!(
        start.elapsed() < Duration::from_millis(10),
        "{:?}",
        start.elapsed()
    );
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connection);
    assert_eq!(client.connection_state(), ConnectionState::Closed);
    assert_eq!(events.recv().await.unwrap(), ConnectionState::Closed);
}

#[tokio::test(start_paused = true)]
async fn calls_made_while_reconnecting_wait_and_then_go_through() {
    let mut gw = TestGateway::start().await;
    let (client, conn) = connected(&mut gw, |b| b).await;
    let mut events = client.subscribe();
    gw.stop_listening();
    conn.kill();
    states_until(&mut events, |s| {
        matches!(s, ConnectionState::Reconnecting { attempt: 2, .. })
    })
    .await;
    let c = client.clone();
    let call = tokio::spawn(async move { c.tool_request("t", json!({"late": true})).await });
    gw.resume_listening().await;
    let mut conn = gw.accept_authenticated().await;
    let mut answered = false;
    for _ in 0..2 {
        let (_, request) = conn.recv_request().await;
        if request.method == "tool_request" {
            assert_eq!(request.params["args"], json!({"late": true}));
            conn.executed(&request, json!("ok")).await;
            answered = true;
        } else {
            conn.result(request.id, json!({"results": []})).await;
        }
    }
    assert!(answered);
    assert_eq!(call.await.unwrap().unwrap(), json!("ok"));
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn offline_results_resolve_the_right_calls() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b).await;
    let mut calls = Vec::new();
    for rid in ["offline-a", "offline-b", "offline-c"] {
        let c = client.clone();
        calls.push(tokio::spawn(async move {
            c.tool_request_with(
                "ha_call_service",
                json!({"rid": rid}),
                CallOptions::new().request_id(rid),
            )
            .await
        }));
        let _ = conn.recv_request().await;
    }
    conn.kill();
    let mut conn = gw.accept_authenticated().await;
    // Four frames: three re-sent calls and get_pending_results (any order).
    let mut pending_id = None;
    let mut resent = Vec::new();
    for _ in 0..4 {
        let (_, request) = conn.recv_request().await;
        if request.method == "get_pending_results" {
            pending_id = Some(request.id);
        } else {
            resent.push(request.params["request_id"].as_str().unwrap().to_owned());
        }
    }
    resent.sort();
    assert_eq!(resent, ["offline-a", "offline-b", "offline-c"]);
    // The gateway decided a and b while the agent was away; c is still pending.
    conn.result(
        pending_id.unwrap(),
        json!({"results": [
            {"request_id": "offline-b", "tool": "ha_call_service", "signature": "s",
             "result": {"status": "denied", "data": "Denied by user"},
             "error": {"code": -32001, "message": "Denied by user"}},
            {"request_id": "offline-a", "tool": "ha_call_service", "signature": "s",
             "result": {"status": "executed", "data": {"a": 1}}},
            {"request_id": "someone-else", "tool": "x", "signature": "x",
             "result": {"status": "executed", "data": {}}}
        ]}),
    )
    .await;
    let mut calls = calls.into_iter();
    assert_eq!(
        calls.next().unwrap().await.unwrap().unwrap(),
        json!({"a": 1})
    );
    let b = calls.next().unwrap().await.unwrap().unwrap_err();
    assert_eq!(
        b.kind(),
        &ErrorKind::Denied {
            by: DeniedBy::Human
        }
    );
    let c = calls.next().unwrap();
    assert_eq!(client.in_flight(), 1);
    // c's re-sent request is answered normally later.
    let frame = json!({"jsonrpc": "2.0", "id": 3, "result": {"status": "executed", "data": "c", "request_id": "offline-c"}});
    conn.send_json(frame).await;
    assert_eq!(c.await.unwrap().unwrap(), json!("c"));
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn rejected_reauthentication_is_not_retried() {
    let mut gw = TestGateway::start().await;
    let (client, mut conn) = connected(&mut gw, |b| b).await;
    let c = client.clone();
    let call = tokio::spawn(async move { c.tool_request("t", json!({})).await });
    let _ = conn.recv_request().await;
    conn.kill();
    let mut conn = gw.accept().await;
    let (_, auth) = conn.recv_request().await;
    conn.respond(Response::error(
        Some(auth.id),
        ErrorObject::new(ErrorCode::NotAuthenticated, "Token revoked"),
    ))
    .await;
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Authentication);
    assert!(matches!(
        client.connection_state(),
        ConnectionState::Failed(_)
    ));
    // No further attempt arrives, however long we wait.
    assert!(
        tokio::time::timeout(Duration::from_secs(3600), gw.accept())
            .await
            .is_err()
    );
    assert!(!format!("{err:?}").contains(TOKEN));
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_detected_by_keepalive() {
    let mut gw = TestGateway::start().await;
    let (client, conn) = connected(&mut gw, |b| b.ping_interval(Duration::from_secs(10))).await;
    let mut events = client.subscribe();
    // Freeze the server side: it stops reading, so pings get no pong.
    let start = Instant::now();
    let frozen = conn.freeze();
    let states = states_until(&mut events, |s| {
        matches!(s, ConnectionState::Reconnecting { .. })
    })
    .await;
    let noticed = states[0].0 - start;
    assert!(
        noticed > Duration::from_secs(20) && noticed <= Duration::from_secs(31),
        "{noticed:?}"
    );
    let _conn = gw.accept_authenticated().await;
    states_until(&mut events, |s| *s == ConnectionState::Connected).await;
    drop(frozen);
    client.close().await;
}

// ------------------------------------------------------------------ TLS

#[tokio::test]
async fn wss_with_a_custom_ca() {
    let mut gw = TestGateway::start_tls().await;
    let (client, mut conn) =
        connected(&mut gw, |b| b.ca_cert_file(support::fixture("ca.pem"))).await;
    let c = client.clone();
    let call = tokio::spawn(async move { c.tool_request("t", json!({})).await });
    let (_, request) = conn.recv_request().await;
    conn.executed(&request, json!("secure")).await;
    assert_eq!(call.await.unwrap().unwrap(), json!("secure"));
    client.close().await;

    // The same CA given as PEM bytes.
    let pem = std::fs::read(support::fixture("ca.pem")).unwrap();
    let (client, _conn) = connected(&mut gw, |b| b.ca_cert_pem(pem)).await;
    client.close().await;
}

#[tokio::test]
async fn wss_without_trusting_the_ca_fails_with_a_hint() {
    let gw = TestGateway::start_tls().await;
    let err = builder(&gw)
        .max_retries(Some(0))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Connection);
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(err.suggestion().unwrap().contains("ca_cert_file"), "{err}");
}

/// Against a gateway that does not say it honours `request_id` (upstream's), a call lost with
/// its connection is not re-sent after reconnecting: it ends "outcome unknown".
#[tokio::test(start_paused = true)]
async fn a_call_lost_at_a_gateway_without_idempotency_is_not_re_sent() {
    let mut gw = TestGateway::start().await;
    let client = AgentGateClient::builder()
        .ignore_env()
        .url(gw.url())
        .token(support::TOKEN)
        .connect();
    let (client, mut conn) = tokio::join!(client, gw.accept_upstream());
    let client = client.unwrap();
    let c = client.clone();
    let call = tokio::spawn(async move {
        c.tool_request(
            "ha_call_service",
            json!({"domain": "switch", "service": "turn_on"}),
        )
        .await
    });
    let _ = conn.recv_request().await;
    conn.kill();
    let mut conn = gw.accept_upstream().await;
    let error = call.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::Execution);
    assert!(error.message().starts_with("outcome unknown"), "{error}");
    assert!(error.message().contains("not re-sent"), "{error}");
    assert!(error.execution_failure().unwrap().may_have_executed);
    assert_eq!(client.honours_request_id(), None);
    // Only get_pending_results comes on the new connection, never the call again.
    let (text, request) = conn.recv_request().await;
    assert_eq!(request.method, "get_pending_results", "{text}");
    client.close().await;
}
