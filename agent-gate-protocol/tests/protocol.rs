//! Wire-format tests for `agent_gate_protocol`: an insta snapshot of every
//! message shape (the snapshots are the spec), round trips, and malformed frames.

use agent_gate_protocol::*;
use insta::assert_snapshot;
use serde_json::{Value, json};

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().expect("object").clone()
}

fn wire<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serialise")
}

// ---------------------------------------------------------------- requests

#[test]
fn request_shapes() {
    assert_snapshot!(
        "request_auth",
        Request::auth("secret-token").to_json().unwrap()
    );
    assert_snapshot!(
        "request_tool_request",
        Request::tool_request(
            1,
            ToolRequestParams::new("ha_get_state", obj(json!({"entity_id": "sensor.temp"})))
                .with_request_id("req-1a2b")
        )
        .to_json()
        .unwrap()
    );
    assert_snapshot!(
        "request_tool_request_without_request_id",
        Request::tool_request(2, ToolRequestParams::new("ha_get_states", obj(json!({}))))
            .to_json()
            .unwrap()
    );
    assert_snapshot!(
        "request_list_tools",
        Request::list_tools(3).to_json().unwrap()
    );
    assert_snapshot!(
        "request_get_pending_results",
        Request::get_pending_results(4).to_json().unwrap()
    );
    assert_snapshot!(
        "request_cancel_request",
        Request::cancel_request(5, "req-1a2b").to_json().unwrap()
    );
}

#[test]
fn cancel_request_results_and_params() {
    let cancelled = CancelRequestResult {
        request_id: "req-1a2b".to_owned(),
        cancelled: true,
        state: "cancelled".to_owned(),
        message: None,
    };
    assert_snapshot!(
        "result_cancel_request",
        Response::success_typed(5, &cancelled)
            .unwrap()
            .to_json()
            .unwrap()
    );
    let too_late = CancelRequestResult {
        request_id: "req-1a2b".to_owned(),
        cancelled: false,
        state: "executed".to_owned(),
        message: Some("the request was already decided by tg:1 and has executed".to_owned()),
    };
    assert_snapshot!(
        "result_cancel_request_too_late",
        Response::success_typed(6, &too_late)
            .unwrap()
            .to_json()
            .unwrap()
    );
    // The params are checked: a bad request_id and an unknown key are refused.
    for params in [
        json!({"request_id": "has space"}),
        json!({"request_id": "a", "x": 1}),
        json!({}),
    ] {
        let frame =
            json!({"jsonrpc": "2.0", "id": 1, "method": "cancel_request", "params": params});
        let request = parse_request(&frame.to_string()).unwrap();
        let error = request.method_call().unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidRequest, "{params}");
        assert!(
            error.message.contains("cancel_request"),
            "{}",
            error.message
        );
    }
}

#[test]
fn auth_params_debug_hides_the_token() {
    let debug = format!("{:?}", Request::auth("hunter2"));
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
}

// ---------------------------------------------------------------- results

#[test]
fn a_typed_success_serialised_straight_to_text_is_the_same_frame() {
    let result = ToolResult::executed(
        json!({"entity_id": "sensor.temp", "state": "21.3"}),
        "req-1a2b",
    );
    for id in [Id::from(1), Id::from("one")] {
        let through_value = Response::success_typed(id.clone(), &result)
            .unwrap()
            .to_json()
            .unwrap();
        assert_eq!(Response::success_json(&id, &result).unwrap(), through_value);
    }
    let pending = PendingResults::default();
    assert_eq!(
        Response::success_json(&Id::from(5), &pending).unwrap(),
        r#"{"jsonrpc":"2.0","result":{"results":[]},"id":5}"#
    );
}

#[test]
fn result_shapes() {
    assert_snapshot!(
        "result_auth",
        Response::success_typed("auth-1", &AuthResult::authenticated())
            .unwrap()
            .to_json()
            .unwrap()
    );
    assert_snapshot!(
        "result_tool_request",
        Response::success_typed(
            1,
            &ToolResult::executed(
                json!({"entity_id": "sensor.temp", "state": "21.3"}),
                "req-1a2b"
            )
        )
        .unwrap()
        .to_json()
        .unwrap()
    );
    assert_snapshot!(
        "result_list_tools",
        Response::success_typed(
            3,
            &ListToolsResult {
                tools: vec![ToolInfo {
                    name: "ha_get_state".into(),
                    description: "Get the state of one entity".into(),
                    service: "homeassistant".into(),
                    args: json!({"entity_id": {"type": "string", "required": true}}),
                    input_schema: json!({
                        "type": "object",
                        "properties": {"entity_id": {"type": "string"}},
                        "required": ["entity_id"]
                    }),
                    output_schema: Some(json!({
                        "type": "object",
                        "properties": {"state": {"type": "string"}},
                        "required": ["state"]
                    })),
                    annotations: Some(ToolAnnotations {
                        read_only: Some(true),
                        idempotent: Some(true),
                        ..ToolAnnotations::default()
                    }),
                }],
            }
        )
        .unwrap()
        .to_json()
        .unwrap()
    );
    assert_snapshot!(
        "result_get_pending_results",
        Response::success_typed(
            4,
            &PendingResults {
                results: vec![
                    PendingResult {
                        request_id: "req-1".into(),
                        tool: "ha_call_service".into(),
                        tool_name: "ha_call_service".into(),
                        args: json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom"}),
                        signature: "ha_call_service(light.turn_on, light.bedroom)".into(),
                        result: PendingOutcome {
                            status: ResultStatus::Executed,
                            data: json!({"changed": []}),
                        },
                        error: None,
                    },
                    PendingResult {
                        request_id: "req-2".into(),
                        tool: "ha_call_service".into(),
                        tool_name: "ha_call_service".into(),
                        args: json!({"domain": "lock", "service": "unlock", "entity_id": "lock.front_door"}),
                        signature: "ha_call_service(lock.unlock, lock.front_door)".into(),
                        result: PendingOutcome {
                            status: ResultStatus::Denied,
                            data: json!("Denied by user"),
                        },
                        error: Some(ErrorObject::new(ErrorCode::DeniedByHuman, "Denied by user")),
                    },
                    PendingResult {
                        request_id: "req-3".into(),
                        tool: "ha_get_state".into(),
                        tool_name: "ha_get_state".into(),
                        args: json!({"entity_id": "sensor.temp"}),
                        signature: "ha_get_state(sensor.temp)".into(),
                        result: PendingOutcome {
                            status: ResultStatus::Error,
                            data: json!("Approval timed out"),
                        },
                        error: Some(ErrorObject::new(
                            ErrorCode::ApprovalTimeout,
                            "Approval timed out"
                        )),
                    },
                ],
            }
        )
        .unwrap()
        .to_json()
        .unwrap()
    );
    assert_snapshot!(
        "result_get_pending_results_empty",
        Response::success_typed(5, &PendingResults::default())
            .unwrap()
            .to_json()
            .unwrap()
    );
}

// ---------------------------------------------------------------- errors

fn sample_error(code: ErrorCode) -> ErrorObject {
    match code {
        ErrorCode::ParseError => {
            ErrorObject::parse_error("Parse error: expected value at line 1 column 1")
        }
        ErrorCode::InvalidRequest => {
            ErrorObject::invalid_request("Invalid params for tool_request: missing field `tool`")
        }
        ErrorCode::MethodNotFound => ErrorObject::method_not_found("reboot"),
        ErrorCode::InternalError => ErrorObject::new(code, "Internal error"),
        ErrorCode::DeniedByHuman => ErrorObject::new(code, "Denied by user"),
        ErrorCode::ApprovalTimeout => ErrorObject::new(code, "Approval timed out after 900 s")
            .with_suggestion("ask the approver to respond sooner, or retry later"),
        ErrorCode::DeniedByPolicy => ErrorObject::new(
            code,
            "Denied by policy: ha_call_service(lock.unlock, lock.front_door)",
        )
        .with_details(json!({"rule": "ha_call_service(lock.*)"})),
        ErrorCode::ExecutionFailed => ErrorObject::new(code, "Home Assistant returned HTTP 500")
            .with_details(json!({"status": 500})),
        ErrorCode::NotAuthenticated => ErrorObject::new(code, "Invalid token")
            .with_suggestion("set AGENT_GATE_TOKEN to the agent's token from config.yaml"),
        ErrorCode::RateLimited => ErrorObject::new(code, "Rate limit exceeded")
            .with_suggestion("slow down")
            .with_retry_after(1.5),
        ErrorCode::Cancelled => ErrorObject::new(code, "Cancelled by the agent"),
        ErrorCode::Other(_) => ErrorObject::new(code, "Something new"),
    }
}

#[test]
fn error_response_shapes_one_per_code() {
    for code in ErrorCode::KNOWN {
        let name = format!(
            "error_{}_{}",
            -code.code(),
            code.description().replace(' ', "_")
        );
        let text = Response::error(Some(Id::Number(7)), sample_error(code))
            .to_json()
            .unwrap();
        assert_snapshot!(name, text);
    }
}

#[test]
fn error_response_shapes_special() {
    assert_snapshot!(
        "error_unknown_tool",
        Response::error(
            Some(Id::Number(8)),
            ErrorObject::new(ErrorCode::MethodNotFound, "Unknown tool: \"ha_get_stat\"")
                .with_suggestion("did you mean \"ha_get_state\"?")
                .with_details(json!({"tool": "ha_get_stat", "available_tools": ["ha_get_state", "ha_get_states"]}))
        )
        .to_json()
        .unwrap()
    );
    assert_snapshot!(
        "error_with_null_id",
        Response::error(
            None,
            ErrorObject::parse_error("Parse error: EOF while parsing")
        )
        .to_json()
        .unwrap()
    );
    assert_snapshot!(
        "error_unknown_code",
        Response::error(Some("x".into()), sample_error(ErrorCode::Other(-32099)))
            .to_json()
            .unwrap()
    );
}

// ---------------------------------------------------------------- notification

#[test]
fn notification_shape() {
    let n = RequestStatusParams::awaiting_approval("req-1a2b", "2026-01-01T12:15:00Z")
        .into_notification();
    assert_snapshot!("notification_request_status", n.to_json().unwrap());
}

// ---------------------------------------------------------------- parse errors (gateway side)

fn frame_error(text: &str) -> String {
    let err = parse_request(text).expect_err("should be rejected");
    err.into_response().to_json().unwrap()
}

#[test]
fn malformed_frames_get_the_right_error_response() {
    let cases = [
        ("parse_not_json", "{\"jsonrpc\": \"2.0\", "),
        ("parse_plain_text", "hello"),
        (
            "invalid_batch",
            "[{\"jsonrpc\":\"2.0\",\"method\":\"list_tools\",\"id\":1}]",
        ),
        ("invalid_not_object", "42"),
        (
            "invalid_missing_id",
            r#"{"jsonrpc":"2.0","method":"list_tools","params":{}}"#,
        ),
        (
            "invalid_id_object",
            r#"{"jsonrpc":"2.0","method":"list_tools","params":{},"id":{"a":1}}"#,
        ),
        (
            "invalid_id_array",
            r#"{"jsonrpc":"2.0","method":"list_tools","params":{},"id":[1]}"#,
        ),
        (
            "invalid_id_bool",
            r#"{"jsonrpc":"2.0","method":"list_tools","params":{},"id":true}"#,
        ),
        (
            "invalid_id_float",
            r#"{"jsonrpc":"2.0","method":"list_tools","params":{},"id":1.5}"#,
        ),
        (
            "invalid_id_null",
            r#"{"jsonrpc":"2.0","method":"list_tools","params":{},"id":null}"#,
        ),
        (
            "invalid_wrong_version",
            r#"{"jsonrpc":"1.0","method":"list_tools","params":{},"id":5}"#,
        ),
        (
            "invalid_missing_version",
            r#"{"method":"list_tools","params":{},"id":"abc"}"#,
        ),
        (
            "invalid_missing_method",
            r#"{"jsonrpc":"2.0","params":{},"id":6}"#,
        ),
        (
            "invalid_method_not_string",
            r#"{"jsonrpc":"2.0","method":7,"params":{},"id":6}"#,
        ),
        (
            "invalid_params_array",
            r#"{"jsonrpc":"2.0","method":"tool_request","params":["ha_get_state"],"id":9}"#,
        ),
        (
            "invalid_params_string",
            r#"{"jsonrpc":"2.0","method":"tool_request","params":"x","id":10}"#,
        ),
    ];
    for (name, text) in cases {
        let response = frame_error(text);
        // Not-JSON is -32700, everything else -32600.
        let expected = if name.starts_with("parse_") {
            -32700
        } else {
            -32600
        };
        let v: Value = serde_json::from_str(&response).unwrap();
        assert_eq!(v["error"]["code"], json!(expected), "{name}: {response}");
        assert_snapshot!(format!("frame_{name}"), response);
    }
}

#[test]
fn readable_ids_are_echoed_in_errors() {
    let err = parse_request(r#"{"jsonrpc":"1.0","method":"x","id":"abc"}"#).unwrap_err();
    assert_eq!(err.id, Some(Id::String("abc".into())));
    let err = parse_request(r#"{"jsonrpc":"2.0","params":[],"id":12}"#).unwrap_err();
    assert_eq!(err.id, Some(Id::Number(12)));
    assert!(
        err.error.message.contains("method"),
        "{}",
        err.error.message
    );
    let err = parse_request(r#"{"jsonrpc":"2.0","method":"x","id":false}"#).unwrap_err();
    assert_eq!(err.id, None);
    assert!(
        err.error.message.contains("a boolean"),
        "{}",
        err.error.message
    );
}

#[test]
fn method_call_errors() {
    let call = |text: &str| {
        let request = parse_request(text).expect("valid envelope");
        (
            request.id.clone(),
            request.method_call().expect_err("bad call"),
        )
    };
    let cases = [
        (
            "call_unknown_method",
            r#"{"jsonrpc":"2.0","method":"reboot","params":{},"id":1}"#,
            -32601,
        ),
        (
            "call_auth_missing_token",
            r#"{"jsonrpc":"2.0","method":"auth","params":{},"id":"auth-1"}"#,
            -32600,
        ),
        (
            "call_tool_missing_tool",
            r#"{"jsonrpc":"2.0","method":"tool_request","params":{"args":{}},"id":2}"#,
            -32600,
        ),
        (
            "call_tool_empty_tool",
            r#"{"jsonrpc":"2.0","method":"tool_request","params":{"tool":""},"id":2}"#,
            -32600,
        ),
        (
            "call_tool_args_not_object",
            r#"{"jsonrpc":"2.0","method":"tool_request","params":{"tool":"ha_get_state","args":[1]},"id":3}"#,
            -32600,
        ),
        (
            "call_tool_bad_request_id",
            r#"{"jsonrpc":"2.0","method":"tool_request","params":{"tool":"ha_get_state","args":{},"request_id":"a b"},"id":4}"#,
            -32600,
        ),
        (
            "call_tool_long_request_id",
            &format!(
                r#"{{"jsonrpc":"2.0","method":"tool_request","params":{{"tool":"t","request_id":"{}"}},"id":5}}"#,
                "a".repeat(65)
            ),
            -32600,
        ),
    ];
    for (name, text, code) in cases {
        let (id, err) = call(text);
        assert_eq!(err.code.code(), code, "{name}");
        assert_snapshot!(
            format!("frame_{name}"),
            Response::error(Some(id), err).to_json().unwrap()
        );
    }
}

// ---------------------------------------------------------------- round trips

#[test]
fn requests_round_trip_through_the_server_parser() {
    let auth = parse_request(&Request::auth("tok").to_json().unwrap()).unwrap();
    assert_eq!(auth.id, Id::String("auth-1".into()));
    assert_eq!(
        auth.method_call().unwrap(),
        MethodCall::Auth(AuthParams {
            token: "tok".into()
        })
    );

    let params = ToolRequestParams::new(
        "ha_call_service",
        obj(json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom", "brightness": 128})),
    )
    .with_request_id("abc_DEF-123");
    let req = parse_request(&Request::tool_request(41, params.clone()).to_json().unwrap()).unwrap();
    assert_eq!(req.id, Id::Number(41));
    assert_eq!(req.method_call().unwrap(), MethodCall::ToolRequest(params));

    let req = parse_request(&Request::list_tools(i64::MAX).to_json().unwrap()).unwrap();
    assert_eq!(req.id, Id::Number(i64::MAX));
    assert_eq!(req.method_call().unwrap(), MethodCall::ListTools);
    let req = parse_request(&Request::get_pending_results(-3).to_json().unwrap()).unwrap();
    assert_eq!(req.method_call().unwrap(), MethodCall::GetPendingResults);

    // Absent params mean {}.
    let req = parse_request(r#"{"jsonrpc":"2.0","method":"list_tools","id":1}"#).unwrap();
    assert!(req.params.is_empty());
}

#[test]
fn responses_round_trip_through_the_client_parser() {
    let responses = [
        Response::success_typed("auth-1", &AuthResult::authenticated()).unwrap(),
        Response::success(
            2,
            json!({"status": "executed", "data": {"a": [1, 2]}, "request_id": "r"}),
        ),
        Response::success(3, Value::Null),
        Response::error(Some(Id::Number(4)), sample_error(ErrorCode::RateLimited)),
        Response::error(Some(Id::Number(5)), sample_error(ErrorCode::DeniedByPolicy)),
        Response::error(None, sample_error(ErrorCode::ParseError)),
        Response::error(
            Some("z".into()),
            ErrorObject::new(ErrorCode::Other(-1), "odd"),
        ),
    ];
    for response in responses {
        let text = response.to_json().unwrap();
        assert_eq!(
            parse_incoming(&text).unwrap(),
            Incoming::Response(response.clone()),
            "{text}"
        );
        // Response's own Deserialize agrees.
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), response);
    }
}

#[test]
fn typed_results_round_trip() {
    let tool = ToolResult::executed(json!({"x": 1}), "r-1");
    assert_eq!(
        serde_json::from_str::<ToolResult>(&wire(&tool)).unwrap(),
        tool
    );
    // Upstream results carry no request_id.
    let upstream: ToolResult =
        serde_json::from_str(r#"{"status":"executed","data":{"x":1}}"#).unwrap();
    assert_eq!(upstream.request_id, None);
    assert_eq!(upstream.status, ResultStatus::Executed);
    let odd: ToolResult = serde_json::from_str(r#"{"status":"queued","data":null}"#).unwrap();
    assert_eq!(odd.status, ResultStatus::Other("queued".into()));
    assert_eq!(wire(&odd.status), "\"queued\"");

    let auth: AuthResult = serde_json::from_str(r#"{"status":"authenticated"}"#).unwrap();
    assert!(auth.is_authenticated());
    let not: AuthResult = serde_json::from_str(r#"{"status":"nope"}"#).unwrap();
    assert!(!not.is_authenticated());

    let pending: PendingResults = serde_json::from_str(
        r#"{"results":[{"request_id":"a","tool":"t","signature":"t()","result":{"status":"denied","data":"Denied by user"}}]}"#,
    )
    .unwrap();
    let outcome = pending.results[0].outcome().unwrap_err();
    assert_eq!(outcome.code, ErrorCode::DeniedByHuman);
    assert_eq!(outcome.message, "Denied by user");
}

#[test]
fn error_codes_map_both_ways_and_unknown_codes_survive() {
    let expected = [
        (ErrorCode::ParseError, -32700),
        (ErrorCode::InvalidRequest, -32600),
        (ErrorCode::MethodNotFound, -32601),
        (ErrorCode::InternalError, -32603),
        (ErrorCode::DeniedByHuman, -32001),
        (ErrorCode::ApprovalTimeout, -32002),
        (ErrorCode::DeniedByPolicy, -32003),
        (ErrorCode::ExecutionFailed, -32004),
        (ErrorCode::NotAuthenticated, -32005),
        (ErrorCode::RateLimited, -32006),
    ];
    for (code, n) in expected {
        assert_eq!(code.code(), n);
        assert_eq!(ErrorCode::from_code(n), code);
        assert_eq!(wire(&code), n.to_string());
    }
    assert_eq!(ErrorCode::from_code(-32099), ErrorCode::Other(-32099));
    let e: ErrorObject = serde_json::from_str(r#"{"code":-32099,"message":"m"}"#).unwrap();
    assert_eq!(e.code, ErrorCode::Other(-32099));
    assert_eq!(wire(&e), r#"{"code":-32099,"message":"m"}"#);
}

#[test]
fn error_data_is_read_leniently() {
    let e: ErrorObject = serde_json::from_str(
        r#"{"code":-32006,"message":"slow","data":{"suggestion":"wait","details":{"n":1},"retry_after":2}}"#,
    )
    .unwrap();
    assert_eq!(e.suggestion(), Some("wait"));
    assert_eq!(e.details(), Some(&json!({"n": 1})));
    assert_eq!(e.retry_after(), Some(2.0));
    // A non-object data becomes details; a mistyped suggestion is dropped.
    let e: ErrorObject =
        serde_json::from_str(r#"{"code":-32004,"message":"x","data":"traceback"}"#).unwrap();
    assert_eq!(e.details(), Some(&json!("traceback")));
    let e: ErrorObject =
        serde_json::from_str(r#"{"code":-32004,"message":"x","data":{"suggestion":5}}"#).unwrap();
    assert_eq!(e.suggestion(), None);
    let e: ErrorObject =
        serde_json::from_str(r#"{"code":-32004,"message":"x","data":null}"#).unwrap();
    assert_eq!(e.data, None);
}

// ---------------------------------------------------------------- client-side classification

#[test]
fn client_parser_classifies_frames() {
    let n = parse_incoming(
        r#"{"jsonrpc":"2.0","method":"request_status","params":{"request_id":"r","status":"awaiting_approval","expires_at":"2026-01-01T00:15:00Z"}}"#,
    )
    .unwrap();
    let Incoming::Notification(n) = n else {
        panic!("not a notification: {n:?}")
    };
    assert_eq!(n.method, NOTIFICATION_REQUEST_STATUS);
    let params: RequestStatusParams = serde_json::from_value(n.params).unwrap();
    assert_eq!(
        params,
        RequestStatusParams::awaiting_approval("r", "2026-01-01T00:15:00Z")
    );
    // Unknown statuses are tolerated.
    let p: RequestStatusParams =
        serde_json::from_str(r#"{"request_id":"r","status":"escalated"}"#).unwrap();
    assert_eq!(p.status, RequestStatus::Other("escalated".into()));
    assert_eq!(p.expires_at, None);

    // A result of null is still a result.
    assert_eq!(
        parse_incoming(r#"{"jsonrpc":"2.0","result":null,"id":1}"#).unwrap(),
        Incoming::Response(Response::success(1, Value::Null))
    );

    for (bad, kind) in [
        ("not json", "NotJson"),
        ("[1]", "NotJson"),
        (r#"{"jsonrpc":"2.0","id":1}"#, "Invalid"),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}"#,
            "Invalid",
        ),
        (r#"{"jsonrpc":"1.0","id":1,"result":1}"#, "Invalid"),
        (r#"{"jsonrpc":"2.0","id":{},"result":1}"#, "Invalid"),
        (
            r#"{"jsonrpc":"2.0","id":1,"error":{"message":"no code"}}"#,
            "Invalid",
        ),
        (r#"{"jsonrpc":"2.0","method":3}"#, "Invalid"),
    ] {
        let err = parse_incoming(bad).expect_err(bad);
        let got = match err {
            IncomingError::NotJson(_) => "NotJson",
            IncomingError::Invalid(_) => "Invalid",
        };
        assert_eq!(got, kind, "{bad}: {err}");
    }
}

#[test]
fn upstream_pending_rows_parse_with_result_and_args_as_json_text() {
    // A row as agentpass 0.2.0 sends it: the database row, `result` and `args` as JSON text.
    let row = json!({
        "request_id": "5b0c2b9e-6f0e-4c53-9a57-0d8f1c0e2a11",
        "tool_name": "ha_call_service",
        "args": "{\"domain\": \"light\", \"service\": \"turn_on\"}",
        "signature": "ha_call_service(light.turn_on)",
        "message_id": "17",
        "chat_id": null,
        "result": "{\"status\": \"executed\", \"data\": {\"result\": []}}",
        "created_at": "2026-12-04T18:00:00Z",
        "expires_at": "2026-12-04T18:15:00Z"
    });
    let parsed: PendingResult = serde_json::from_value(row).unwrap();
    assert_eq!(parsed.tool, "ha_call_service");
    assert_eq!(parsed.tool_name, "ha_call_service");
    assert_eq!(
        parsed.args,
        json!({"domain": "light", "service": "turn_on"})
    );
    assert_eq!(parsed.outcome(), Ok(&json!({"result": []})));
    let denied: PendingResult = serde_json::from_value(json!({
        "request_id": "x", "tool_name": "t", "args": "{}",
        "result": "{\"status\": \"denied\", \"data\": \"Denied by user\"}"
    }))
    .unwrap();
    assert_eq!(denied.outcome().unwrap_err().code, ErrorCode::DeniedByHuman);
    // Our own rows keep parsing: `tool` alone, objects, no `args`.
    let ours: PendingResult = serde_json::from_value(json!({
        "request_id": "r", "tool": "ha_get_config", "signature": "ha_get_config()",
        "result": {"status": "executed", "data": {"version": "1"}}
    }))
    .unwrap();
    assert_eq!(ours.tool_name, "ha_get_config");
    assert_eq!(ours.args, Value::Null);
}
