//! The agent-gate wire protocol (`docs/ARCHITECTURE.md`): JSON-RPC 2.0 envelopes over
//! WebSocket text frames, the four methods with typed params and results, the
//! error-code table, the `request_status` notification, `request_id`
//! validation, and parsers for incoming frames on both sides.
//!
//! Both the SDK client and the gateway server use these types, so they are
//! wire-compatible with the upstream Python gateway by construction:
//!
//! ```
//! use agent_gate_protocol::{Request, Response, ToolRequestParams, ToolResult, parse_request, MethodCall};
//! use serde_json::json;
//!
//! // Client side: build a frame.
//! let params = ToolRequestParams::new("ha_get_state", json!({"entity_id": "sensor.temp"}).as_object().unwrap().clone())
//!     .with_request_id("r-1");
//! let frame = Request::tool_request(1, params).to_json().unwrap();
//!
//! // Server side: classify it and answer.
//! let request = parse_request(&frame).unwrap();
//! let MethodCall::ToolRequest(call) = request.method_call().unwrap() else { unreachable!() };
//! let answer = Response::success_typed(request.id, &ToolResult::executed(json!({"state": "21.3"}), "r-1")).unwrap();
//! assert_eq!(
//!     answer.to_json().unwrap(),
//!     r#"{"jsonrpc":"2.0","result":{"status":"executed","data":{"state":"21.3"},"request_id":"r-1"},"id":1}"#
//! );
//! # assert_eq!(call.tool, "ha_get_state");
//! ```

mod envelope;
mod error_code;
mod methods;
mod parse;
mod request_id;

pub use envelope::{
    ErrorData, ErrorObject, Id, JSONRPC_VERSION, Notification, Request, Response, ResponsePayload,
    Version, json_type_name,
};
pub use error_code::ErrorCode;
pub use methods::{
    AUTH_REQUEST_ID, AuthParams, AuthResult, CancelRequestParams, CancelRequestResult, EmptyParams,
    ListToolsResult, METHOD_AUTH, METHOD_CANCEL_REQUEST, METHOD_GET_PENDING_RESULTS,
    METHOD_LIST_TOOLS, METHOD_TOOL_REQUEST, METHODS, MethodCall, NOTIFICATION_REQUEST_STATUS,
    PendingOutcome, PendingResult, PendingResults, REQUEST_IDS_IDEMPOTENT, RequestStatus,
    RequestStatusParams, ResultStatus, STATUS_AUTHENTICATED, ToolAnnotations, ToolInfo,
    ToolRequestParams, ToolResult,
};
pub use parse::{FrameError, Incoming, IncomingError, parse_incoming, parse_request};
pub use request_id::{
    MAX_REQUEST_ID_LEN, RequestIdError, is_valid_request_id, validate_request_id,
};
