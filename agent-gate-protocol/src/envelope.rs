//! JSON-RPC 2.0 envelopes: ids, requests, responses, error objects and notifications.

use std::fmt;

use serde::de::{self, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::error_code::ErrorCode;

/// The only JSON-RPC version spoken: `"2.0"`.
pub const JSONRPC_VERSION: &str = "2.0";

/// A JSON-RPC request id: an integer or a string.
///
/// The client uses incrementing integers (and `"auth-1"` for the first frame);
/// the gateway echoes whatever it received.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// An integer id such as `7`.
    Number(i64),
    /// A string id such as `"auth-1"`.
    String(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<i64> for Id {
    fn from(n: i64) -> Self {
        Id::Number(n)
    }
}

impl From<i32> for Id {
    fn from(n: i32) -> Self {
        Id::Number(i64::from(n))
    }
}

impl From<u32> for Id {
    fn from(n: u32) -> Self {
        Id::Number(i64::from(n))
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id::String(s)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::String(s.to_owned())
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Number(n) => serializer.serialize_i64(*n),
            Id::String(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string id")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                i64::try_from(v)
                    .map(Id::Number)
                    .map_err(|_| E::custom("integer id does not fit in 64 bits"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id::String(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Id, E> {
                Ok(Id::String(v))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

/// Serialises as `"2.0"` and accepts only `"2.0"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Version;

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(JSONRPC_VERSION)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let version = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        if version == JSONRPC_VERSION {
            Ok(Version)
        } else {
            Err(de::Error::custom(format!(
                "unsupported jsonrpc version {version:?}, expected \"2.0\""
            )))
        }
    }
}

/// A JSON-RPC request: `{"jsonrpc":"2.0","method":...,"params":...,"id":...}`.
///
/// `P` is the params type: a typed struct when sending (for example
/// [`ToolRequestParams`](super::ToolRequestParams)), a JSON object when received
/// (see [`parse_request`](super::parse_request)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request<P = Map<String, Value>> {
    /// Always `"2.0"`.
    pub jsonrpc: Version,
    /// The method name, for example `"tool_request"`.
    pub method: String,
    /// The method's parameters (a JSON object on the wire).
    pub params: P,
    /// The request id the response will echo.
    pub id: Id,
}

impl<P> Request<P> {
    /// A request for `method` with `params` and `id`.
    pub fn new(id: impl Into<Id>, method: impl Into<String>, params: P) -> Self {
        Request {
            jsonrpc: Version,
            method: method.into(),
            params,
            id: id.into(),
        }
    }
}

impl<P: Serialize> Request<P> {
    /// The request as wire text.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// The `data` member of an error object: a suggestion for the user, machine-readable
/// details and, for rate limiting, how long to wait.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorData {
    /// What the caller can do about the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
    /// Machine-readable details. For an unknown tool the gateway sends
    /// `{"tool": "...", "available_tools": ["...", ...]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// For `-32006` (rate limited): seconds to wait before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<f64>,
    /// For `-32003` (denied by policy): the pattern of the rule that denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For `-32003`: the signature the rule matched (for a call that affects several
    /// entities, the one that was denied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// For `-32004` (execution failed): how it failed: `timeout`, `connect`, `http`,
    /// `decode` or `interrupted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// For `-32004`: the service's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// For `-32004`: true when the request may have reached the service (so the action may
    /// have happened: check before trying again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_have_executed: Option<bool>,
    /// For `-32004`: the service's own message (its response body, at most 4 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_message: Option<String>,
    /// For `-32001` (denied by a human): why, when the human said (at most 500 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ErrorData {
    /// True when no member is set (serialised as an absent `data`).
    pub fn is_empty(&self) -> bool {
        self == &ErrorData::default()
    }

    /// Read `data` leniently: an object gives its known members (a member of the
    /// wrong type is ignored), any other non-null value becomes `details`.
    pub fn from_value(value: Value) -> Option<ErrorData> {
        match value {
            Value::Null => None,
            Value::Object(mut map) => {
                let suggestion = match map.remove("suggestion") {
                    Some(Value::String(s)) => Some(s),
                    _ => None,
                };
                let retry_after = map.remove("retry_after").and_then(|v| v.as_f64());
                let details = map.remove("details");
                let text =
                    |map: &mut serde_json::Map<String, Value>, key: &str| match map.remove(key) {
                        Some(Value::String(s)) => Some(s),
                        _ => None,
                    };
                let data = ErrorData {
                    suggestion,
                    details,
                    retry_after,
                    rule: text(&mut map, "rule"),
                    signature: text(&mut map, "signature"),
                    kind: text(&mut map, "kind"),
                    status: map
                        .remove("status")
                        .and_then(|v| v.as_u64())
                        .and_then(|v| u16::try_from(v).ok()),
                    may_have_executed: map.remove("may_have_executed").and_then(|v| v.as_bool()),
                    service_message: text(&mut map, "service_message"),
                    reason: text(&mut map, "reason"),
                };
                Some(data)
            }
            other => Some(ErrorData {
                details: Some(other),
                ..ErrorData::default()
            }),
        }
    }
}

/// A JSON-RPC error object: `{"code":-32003,"message":"...","data":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The error code.
    pub code: ErrorCode,
    /// A human-readable message.
    pub message: String,
    /// Optional suggestion, details and retry hint.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_error_data"
    )]
    pub data: Option<Box<ErrorData>>,
}

fn lenient_error_data<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Box<ErrorData>>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(ErrorData::from_value(value).map(Box::new))
}

impl ErrorObject {
    /// An error with `code` and `message` and no data.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Attach a suggestion (`data.suggestion`).
    pub fn with_suggestion(mut self, suggestion: impl Into<String>) -> Self {
        self.data_mut().suggestion = Some(suggestion.into());
        self
    }

    /// Attach machine-readable details (`data.details`).
    pub fn with_details(mut self, details: Value) -> Self {
        self.data_mut().details = Some(details);
        self
    }

    /// Attach a retry hint in seconds (`data.retry_after`).
    pub fn with_retry_after(mut self, seconds: f64) -> Self {
        self.data_mut().retry_after = Some(seconds);
        self
    }

    /// Attach structured members (`rule`, `kind`, `status`, ...) from `data`, a JSON object
    /// as [`ErrorData::from_value`] reads it; members already set are kept unless `data`
    /// sets them.
    pub fn with_data_members(mut self, data: &Value) -> Self {
        if let Some(extra) = ErrorData::from_value(data.clone()) {
            let own = self.data_mut();
            own.suggestion = extra.suggestion.or(own.suggestion.take());
            own.details = extra.details.or(own.details.take());
            own.retry_after = extra.retry_after.or(own.retry_after);
            own.rule = extra.rule.or(own.rule.take());
            own.signature = extra.signature.or(own.signature.take());
            own.kind = extra.kind.or(own.kind.take());
            own.status = extra.status.or(own.status);
            own.may_have_executed = extra.may_have_executed.or(own.may_have_executed);
            own.service_message = extra.service_message.or(own.service_message.take());
            own.reason = extra.reason.or(own.reason.take());
        }
        self
    }

    /// `data.reason`: why a human denied the request, when they said.
    pub fn reason(&self) -> Option<&str> {
        self.data.as_ref().and_then(|d| d.reason.as_deref())
    }

    /// `data.rule`: the pattern of the rule that denied a request, if any.
    pub fn rule(&self) -> Option<&str> {
        self.data.as_ref().and_then(|d| d.rule.as_deref())
    }

    fn data_mut(&mut self) -> &mut ErrorData {
        self.data.get_or_insert_with(Box::default)
    }

    /// `data.suggestion`, if any.
    pub fn suggestion(&self) -> Option<&str> {
        self.data.as_ref().and_then(|d| d.suggestion.as_deref())
    }

    /// `data.details`, if any.
    pub fn details(&self) -> Option<&Value> {
        self.data.as_ref().and_then(|d| d.details.as_ref())
    }

    /// `data.retry_after` in seconds, if any.
    pub fn retry_after(&self) -> Option<f64> {
        self.data.as_ref().and_then(|d| d.retry_after)
    }

    /// `-32700` with `message`.
    pub fn parse_error(message: impl Into<String>) -> Self {
        ErrorObject::new(ErrorCode::ParseError, message)
    }

    /// `-32600` with `message`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        ErrorObject::new(ErrorCode::InvalidRequest, message)
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.message, self.code.code())
    }
}

/// The outcome carried by a response: a result or an error.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponsePayload {
    /// `"result": ...`
    Result(Value),
    /// `"error": {...}`
    Error(ErrorObject),
}

/// A JSON-RPC response: `{"jsonrpc":"2.0","result":...,"id":...}` or
/// `{"jsonrpc":"2.0","error":{...},"id":...}`.
///
/// `id` is `None` (sent as `null`) when the request's id could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The id of the request answered; `None` when it could not be read.
    pub id: Option<Id>,
    /// The result or the error.
    pub payload: ResponsePayload,
}

impl Response {
    /// A success response with `result`.
    pub fn success(id: impl Into<Id>, result: Value) -> Self {
        Response {
            id: Some(id.into()),
            payload: ResponsePayload::Result(result),
        }
    }

    /// A success response whose result is a typed value (for example
    /// [`ToolResult`](super::ToolResult)).
    pub fn success_typed<T: Serialize>(
        id: impl Into<Id>,
        result: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Response::success(id, serde_json::to_value(result)?))
    }

    /// The wire text of a success response whose result is a typed value, serialised
    /// straight from it (no intermediate [`Value`]: a large result is not copied).
    pub fn success_json<T: Serialize>(id: &Id, result: &T) -> Result<String, serde_json::Error> {
        #[derive(Serialize)]
        struct Success<'a, T> {
            jsonrpc: Version,
            result: &'a T,
            id: &'a Id,
        }
        serde_json::to_string(&Success {
            jsonrpc: Version,
            result,
            id,
        })
    }

    /// An error response.
    pub fn error(id: Option<Id>, error: ErrorObject) -> Self {
        Response {
            id,
            payload: ResponsePayload::Error(error),
        }
    }

    /// The result, if this is a success.
    pub fn result(&self) -> Option<&Value> {
        match &self.payload {
            ResponsePayload::Result(v) => Some(v),
            ResponsePayload::Error(_) => None,
        }
    }

    /// The error, if this is an error response.
    pub fn error_object(&self) -> Option<&ErrorObject> {
        match &self.payload {
            ResponsePayload::Result(_) => None,
            ResponsePayload::Error(e) => Some(e),
        }
    }

    /// The result or the error, consuming the response.
    pub fn into_result(self) -> Result<Value, ErrorObject> {
        match self.payload {
            ResponsePayload::Result(v) => Ok(v),
            ResponsePayload::Error(e) => Err(e),
        }
    }

    /// The response as wire text.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("jsonrpc", &Version)?;
        match &self.payload {
            ResponsePayload::Result(v) => map.serialize_entry("result", v)?,
            ResponsePayload::Error(e) => map.serialize_entry("error", e)?,
        }
        map.serialize_entry("id", &self.id)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawFrame::deserialize(deserializer)?;
        raw.into_response().map_err(de::Error::custom)
    }
}

/// A notification (a request without `id`), such as `request_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification<P = Value> {
    /// Always `"2.0"`.
    pub jsonrpc: Version,
    /// The notification name, for example `"request_status"`.
    pub method: String,
    /// Its parameters.
    #[serde(default)]
    pub params: P,
}

impl<P> Notification<P> {
    /// A notification for `method` with `params`.
    pub fn new(method: impl Into<String>, params: P) -> Self {
        Notification {
            jsonrpc: Version,
            method: method.into(),
            params,
        }
    }
}

impl<P: Serialize> Notification<P> {
    /// The notification as wire text.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// Any frame, with every member optional; classified after reading.
#[derive(Deserialize)]
pub(crate) struct RawFrame {
    #[serde(default)]
    pub(crate) jsonrpc: Option<Value>,
    #[serde(default)]
    pub(crate) id: Option<Value>,
    #[serde(default)]
    pub(crate) method: Option<Value>,
    #[serde(default)]
    pub(crate) params: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) result: Option<Value>,
    #[serde(default)]
    pub(crate) error: Option<Value>,
}

/// Maps a present member (even `null`) to `Some`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl RawFrame {
    pub(crate) fn check_version(&self) -> Result<(), String> {
        match &self.jsonrpc {
            None => Err("missing \"jsonrpc\": \"2.0\"".to_owned()),
            Some(Value::String(s)) if s == JSONRPC_VERSION => Ok(()),
            Some(other) => Err(format!("\"jsonrpc\" must be \"2.0\", got {other}")),
        }
    }

    pub(crate) fn into_response(self) -> Result<Response, String> {
        self.check_version()?;
        let id = match self.id {
            None | Some(Value::Null) => None,
            Some(v) => Some(id_from_value(&v)?),
        };
        let payload = match (self.result, self.error) {
            (Some(result), None) => ResponsePayload::Result(result),
            (None, Some(error)) => ResponsePayload::Error(
                serde_json::from_value(error).map_err(|e| format!("invalid error object: {e}"))?,
            ),
            (Some(_), Some(_)) => {
                return Err("a response must not have both \"result\" and \"error\"".to_owned());
            }
            (None, None) => return Err("a response needs \"result\" or \"error\"".to_owned()),
        };
        Ok(Response { id, payload })
    }
}

/// Read an id value: an integer or a string; anything else names its JSON type.
pub(crate) fn id_from_value(value: &Value) -> Result<Id, String> {
    match value {
        Value::String(s) => Ok(Id::String(s.clone())),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(Id::Number(i)),
            None => Err(format!(
                "\"id\" must be an integer or a string, got the non-integer number {n}"
            )),
        },
        other => Err(format!(
            "\"id\" must be an integer or a string, got {}",
            json_type_name(other)
        )),
    }
}

/// The JSON type of `value` as a phrase for error messages: `"an object"`, `"an array"`,
/// `"a string"`, `"a number"`, `"a boolean"` or `"null"`.
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
