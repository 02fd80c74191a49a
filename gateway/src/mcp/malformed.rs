//! What a client that sends `/mcp` something wrong gets back: an answer that says what was
//! wrong and what to send, in the protocol's own terms.
//!
//! - A JSON body that is not one JSON-RPC message: `rmcp` answers 415 (as if the media type
//!   were wrong) with the serde error as plain text. Here it becomes a 400 with a JSON-RPC
//!   error without an id: `-32700 Parse error` for a body that is not JSON (with where it
//!   stops being JSON), `-32600 Invalid Request` for JSON that is no message (a batch, a
//!   message without `"jsonrpc": "2.0"`).
//! - A request to a method this server serves whose params do not fit: `rmcp` finds no
//!   variant for it and hands it over as a custom request, which it answers `-32601 Method
//!   not found`. Here it is `-32602 Invalid params` with the field that did not fit; a method
//!   that is not served stays `-32601`, and says which are.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequestMethod, CallToolRequestParams, CancelTaskMethod, CancelTaskParams, ConstString,
    CustomRequest, ErrorCode, GetTaskMethod, GetTaskParams, ListToolsRequestMethod,
    PaginatedRequestParams,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Which methods a server serves (beyond the protocol's own `initialize` and `ping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    /// `tools/list`, `tools/call` and the Tasks extension's `tasks/get`, `tasks/cancel`
    /// (the `/mcp` endpoint).
    ToolsAndTasks,
    /// `tools/list` and `tools/call` (the stdio bridge).
    Tools,
}

impl Served {
    fn names(self) -> &'static str {
        match self {
            Served::ToolsAndTasks => "tools/list, tools/call, tasks/get and tasks/cancel",
            Served::Tools => "tools/list and tools/call",
        }
    }
}

/// Serves one `/mcp` request with `serve`, having read a JSON POST body first so that a body
/// `rmcp` cannot read as a message is answered as [`not_a_message`] says. Bodies over
/// `max_body_bytes` are refused as `rmcp` refuses them (413).
pub(super) async fn serve<F, Fut>(request: Request, max_body_bytes: usize, serve: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output: IntoResponse>,
{
    if request.method() != Method::POST || !is_json(&request) {
        return serve(request).await.into_response();
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(error) => return unreadable(&error, max_body_bytes),
    };
    let response = serve(Request::from_parts(parts, Body::from(bytes.clone())))
        .await
        .into_response();
    // With a JSON media type, `rmcp`'s only 415 is a body it could not read as a message.
    if response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return not_a_message(&bytes);
    }
    response
}

/// Whether `request` says its body is JSON (`rmcp`'s own test: the media type, any
/// parameters after it ignored).
fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            let essence = value.split_once(';').map_or(value, |(essence, _)| essence);
            essence.trim().eq_ignore_ascii_case("application/json")
        })
}

/// The answer to a body that could not be read: too large (as `rmcp` answers it), or cut off.
fn unreadable(error: &axum::Error, max_body_bytes: usize) -> Response {
    let too_large = std::error::Error::source(error)
        .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
    if too_large {
        let message = format!("Payload Too Large: request body exceeds {max_body_bytes} bytes");
        return (StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
    }
    let message = format!("Bad Request: the request body could not be read ({error})");
    (StatusCode::BAD_REQUEST, message).into_response()
}

/// The 400 answer to a JSON `body` that is not one JSON-RPC message.
fn not_a_message(body: &[u8]) -> Response {
    let (code, message) = match serde_json::from_slice::<Value>(body) {
        Err(error) => (
            ErrorCode::PARSE_ERROR,
            format!(
                "Parse error: the request body is not JSON ({error}); send one JSON-RPC 2.0 \
                 message as the body"
            ),
        ),
        Ok(Value::Array(_)) => (
            ErrorCode::INVALID_REQUEST,
            "Invalid Request: the body is a JSON array (a batch), which MCP does not take; \
             send one JSON-RPC 2.0 message per request"
                .to_owned(),
        ),
        Ok(_) => (
            ErrorCode::INVALID_REQUEST,
            r#"Invalid Request: the body is not a JSON-RPC 2.0 message; a request is an object with "jsonrpc": "2.0", an "id" (a string or a number), a "method" (a string) and, if the method takes them, "params" (an object)"#
                .to_owned(),
        ),
    };
    let answer = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": code.0, "message": message},
    });
    (StatusCode::BAD_REQUEST, axum::Json(answer)).into_response()
}

/// The error for a request `rmcp` handed over as custom, on a server that serves `served`:
/// params that do not fit a served method, or a method that is not served.
pub(crate) fn unserved(request: &CustomRequest, served: Served) -> McpError {
    let params = request.params.as_ref();
    let tasks = served == Served::ToolsAndTasks;
    let (misfit, shape) = match request.method.as_str() {
        CallToolRequestMethod::VALUE => (
            misfit::<CallToolRequestParams>(params, true),
            r#"{"name": a tool tools/list shows, "arguments": an object}"#,
        ),
        ListToolsRequestMethod::VALUE => (
            misfit::<PaginatedRequestParams>(params, false),
            r#"no params, or {"cursor": the nextCursor of the page before}"#,
        ),
        GetTaskMethod::VALUE if tasks => (
            misfit::<GetTaskParams>(params, true),
            r#"{"taskId": the id of a task this server returned}"#,
        ),
        CancelTaskMethod::VALUE if tasks => (
            misfit::<CancelTaskParams>(params, true),
            r#"{"taskId": the id of a task this server returned}"#,
        ),
        method => {
            return McpError::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!(
                    "Method not found: `{method}`; this server serves {}",
                    served.names()
                ),
                None,
            );
        }
    };
    let method = &request.method;
    // Params that fit after all were turned down by `rmcp` for something else.
    let problem = misfit.unwrap_or_else(|| "they are not what it takes".to_owned());
    McpError::invalid_params(
        format!("Invalid params for {method}: {problem}; send {shape}"),
        None,
    )
}

/// Why `params` do not deserialize as `P` (`required`: the method takes params), if they do not.
fn misfit<P: DeserializeOwned>(params: Option<&Value>, required: bool) -> Option<String> {
    match params {
        None if required => Some("params are missing".to_owned()),
        None => None,
        Some(params) => serde_json::from_value::<P>(params.clone())
            .err()
            .map(|error| error.to_string()),
    }
}
