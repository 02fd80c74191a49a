//! Classifying incoming text frames: requests on the gateway side (with the
//! JSON-RPC error response for anything malformed) and responses or
//! notifications on the client side.

use serde_json::Value;
use thiserror::Error;

use super::Request;
use super::envelope::{
    ErrorObject, Id, Notification, RawFrame, Response, Version, id_from_value, json_type_name,
};

/// A frame the gateway could not accept as a request, with the id to echo
/// (when it could be read) and the error to send back.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    /// The request's id, if it could be read.
    pub id: Option<Id>,
    /// `-32700` (not JSON) or `-32600` (not a valid request).
    pub error: ErrorObject,
}

impl FrameError {
    /// The error response to send back.
    pub fn into_response(self) -> Response {
        Response::error(self.id, self.error)
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for FrameError {}

/// Parse a text frame received by the gateway into a [`Request`].
///
/// Not JSON gives `-32700`. A frame that is not an object, has a `jsonrpc`
/// other than `"2.0"`, no `method` or a non-string one, no `id` or an id that
/// is not an integer or a string, or `params` that are not an object gives
/// `-32600` with a message naming the problem. The id is echoed whenever it
/// could be read. Absent or `null` params mean `{}`.
pub fn parse_request(text: &str) -> Result<Request, Box<FrameError>> {
    let fail = |id: Option<Id>, message: String| {
        Box::new(FrameError {
            id,
            error: ErrorObject::invalid_request(format!("Invalid Request: {message}")),
        })
    };
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Box::new(FrameError {
            id: None,
            error: ErrorObject::parse_error(format!("Parse error: {e}")),
        })
    })?;
    let mut object = match value {
        Value::Object(map) => map,
        Value::Array(_) => {
            return Err(fail(
                None,
                "batch requests (JSON arrays) are not supported; send one object per frame"
                    .to_owned(),
            ));
        }
        other => {
            return Err(fail(
                None,
                format!("expected a JSON object, got {}", json_type_name(&other)),
            ));
        }
    };
    let id = match object.get("id") {
        None => {
            return Err(fail(
                None,
                "missing \"id\" (an integer or a string)".to_owned(),
            ));
        }
        Some(v) => id_from_value(v).map_err(|m| fail(None, m))?,
    };
    match object.get("jsonrpc") {
        Some(Value::String(s)) if s == super::JSONRPC_VERSION => {}
        None => return Err(fail(Some(id), "missing \"jsonrpc\": \"2.0\"".to_owned())),
        Some(other) => {
            return Err(fail(
                Some(id),
                format!("\"jsonrpc\" must be \"2.0\", got {other}"),
            ));
        }
    }
    let method = match object.remove("method") {
        Some(Value::String(m)) => m,
        None => return Err(fail(Some(id), "missing \"method\"".to_owned())),
        Some(other) => {
            return Err(fail(
                Some(id),
                format!(
                    "\"method\" must be a string, got {}",
                    json_type_name(&other)
                ),
            ));
        }
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(p)) => p,
        Some(other) => {
            return Err(fail(
                Some(id),
                format!(
                    "\"params\" must be an object, got {}",
                    json_type_name(&other)
                ),
            ));
        }
    };
    Ok(Request {
        jsonrpc: Version,
        method,
        params,
        id,
    })
}

/// A frame received by the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A response to one of the client's requests (or an error with a `null` id).
    Response(Response),
    /// A notification such as `request_status`.
    Notification(Notification),
}

/// Why a frame received by the client could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IncomingError {
    /// The frame was not JSON (or not an object).
    #[error("the gateway sent a frame that is not a JSON object: {0}")]
    NotJson(String),
    /// The frame was JSON but not a JSON-RPC response or notification.
    #[error("the gateway sent an invalid JSON-RPC frame: {0}")]
    Invalid(String),
}

/// Parse a text frame received by the client into a response or a notification.
///
/// A frame with `method` and no `id` is a notification; anything else must be
/// a response with exactly one of `result` and `error`.
pub fn parse_incoming(text: &str) -> Result<Incoming, IncomingError> {
    // Serde would read a JSON array positionally into the frame's fields.
    if !text.trim_start().starts_with('{') {
        return Err(IncomingError::NotJson(
            "expected a JSON object starting with '{'".to_owned(),
        ));
    }
    let raw: RawFrame =
        serde_json::from_str(text).map_err(|e| IncomingError::NotJson(e.to_string()))?;
    let is_notification = raw.method.is_some() && matches!(raw.id, None | Some(Value::Null));
    if is_notification {
        raw.check_version().map_err(IncomingError::Invalid)?;
        let method = match raw.method {
            Some(Value::String(m)) => m,
            Some(other) => {
                return Err(IncomingError::Invalid(format!(
                    "\"method\" must be a string, got {}",
                    json_type_name(&other)
                )));
            }
            None => String::new(),
        };
        return Ok(Incoming::Notification(Notification {
            jsonrpc: Version,
            method,
            params: raw.params.unwrap_or(Value::Null),
        }));
    }
    raw.into_response()
        .map(Incoming::Response)
        .map_err(IncomingError::Invalid)
}
