//! Request building: turns a tool call into the parts of an HTTP request
//! (method, percent-encoded path, query pairs, JSON body). Pure: the gateway's
//! executor adds the base URL and credentials and sends it.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use crate::model::{Decode, Method, TemplatePart, Tool};
use crate::signature::scalar_text;
use crate::validate::{ArgsError, ValidArgs};

/// Everything but ALPHA / DIGIT / `-` `.` `_` `~` (RFC 3986 unreserved) is
/// percent-encoded in path segments and query components, so a value can
/// never add a path segment (`/`), a query (`?`, `&`, `=`) or a fragment.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `value` as one URL path segment or query component.
pub fn encode_component(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// The HTTP request for one tool call, without base URL and credentials.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpRequestParts {
    /// The method.
    pub method: Method,
    /// The path, each argument value percent-encoded (starts with `/`).
    pub path: String,
    /// Query parameters (name, value), not encoded; absent arguments omitted.
    pub query: Vec<(String, String)>,
    /// The JSON body object, if the tool has `body` or `body_merge`.
    pub body: Option<Value>,
    /// How to decode the response.
    pub decode: Decode,
    /// Query flags sent without a value (`?return_response`), after the query pairs.
    pub flags: Vec<String>,
    /// The key the response is wrapped under, if any (`None` when the tool's
    /// `wrap_unless` argument is `true`).
    pub wrap: Option<String>,
    /// The tool's `error_help` with this call's arguments filled in, for the message of a
    /// 4xx error answer.
    pub error_help: Option<String>,
}

impl HttpRequestParts {
    /// The path followed by the percent-encoded query string, if any:
    /// `/api/history/period?filter_entity_id=sensor.x`.
    pub fn path_and_query(&self) -> String {
        let mut out = self.path.clone();
        let mut first = true;
        let mut separator = |out: &mut String| {
            out.push(if first { '?' } else { '&' });
            first = false;
        };
        for (name, value) in &self.query {
            separator(&mut out);
            out.push_str(&encode_component(name));
            out.push('=');
            out.push_str(&encode_component(value));
        }
        for name in &self.flags {
            separator(&mut out);
            out.push_str(&encode_component(name));
        }
        out
    }
}

impl Tool {
    /// Builds the HTTP request for a call. The arguments are validated first
    /// with [`Tool::validate_args`]; the error is that of validation.
    ///
    /// - path: `{arg}` is replaced by the percent-encoded value (a `/` in a
    ///   value becomes `%2F`); `{/arg}` by `/` + the encoded value when the
    ///   argument is given, by nothing otherwise;
    /// - query: one pair per given argument, strings as they are and other
    ///   scalars as their JSON text; a list (an `or_list` argument) as its items
    ///   joined by `,` (Home Assistant's form for several entities);
    /// - flags: the parameter name alone, for each flag whose argument is `true`;
    /// - body: a JSON object of the `body` arguments that are given, with the
    ///   keys of the `body_merge` object merged in (validation guarantees they
    ///   do not collide with arguments); `None` when the tool declares neither.
    pub fn http_request(&self, args: &Map<String, Value>) -> Result<HttpRequestParts, ArgsError> {
        Ok(self.validate(args)?.http_request())
    }

    fn build_request(&self, args: &Map<String, Value>) -> HttpRequestParts {
        let http = &self.http;
        let mut path = String::new();
        for part in &http.path.parts {
            match part {
                TemplatePart::Literal(text) => path.push_str(text),
                TemplatePart::Arg(name) => {
                    if let Some(text) = args.get(name).and_then(scalar_text) {
                        path.push_str(&encode_component(&text));
                    }
                }
                TemplatePart::OptionalSegment(name) => {
                    if let Some(text) = args.get(name).and_then(scalar_text) {
                        path.push('/');
                        path.push_str(&encode_component(&text));
                    }
                }
            }
        }
        let query = http
            .query
            .iter()
            .filter_map(|(param, arg)| {
                args.get(arg)
                    .and_then(query_text)
                    .map(|v| (param.clone(), v))
            })
            .collect();
        let is_true = |arg: &str| args.get(arg) == Some(&Value::Bool(true));
        let flags = http
            .flags
            .iter()
            .filter(|(_, arg)| is_true(arg))
            .map(|(param, _)| param.clone())
            .collect();
        let wrap = match &http.wrap_unless {
            Some(arg) if is_true(arg) => None,
            _ => http.wrap.clone(),
        };
        let error_help = http.error_help.as_ref().map(|template| {
            let mut out = String::new();
            for part in &template.parts {
                match part {
                    TemplatePart::Literal(text) => out.push_str(text),
                    TemplatePart::Arg(name) | TemplatePart::OptionalSegment(name) => {
                        match args.get(name) {
                            None => out.push_str("(none)"),
                            Some(Value::String(text)) => out.push_str(text),
                            Some(other) => out.push_str(&other.to_string()),
                        }
                    }
                }
            }
            out
        });
        let body = http.has_body().then(|| {
            let mut body = Map::new();
            for name in &http.body {
                if let Some(v) = args.get(name) {
                    body.insert(name.clone(), v.clone());
                }
            }
            for (key, text) in &http.body_const {
                body.insert(key.clone(), Value::String(text.clone()));
            }
            if let Some(Value::Object(extra)) = http.body_merge.as_ref().and_then(|m| args.get(m)) {
                for (k, v) in extra {
                    body.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            Value::Object(body)
        });
        HttpRequestParts {
            method: http.method,
            path,
            query,
            body,
            decode: http.decode,
            flags,
            wrap,
            error_help,
        }
    }
}

/// A query value: a scalar's text, or the items of a list of strings joined by `,`.
fn query_text(value: &Value) -> Option<String> {
    match value {
        Value::Array(items) => {
            let texts: Option<Vec<String>> = items.iter().map(scalar_text).collect();
            texts.map(|texts| texts.join(","))
        }
        other => scalar_text(other),
    }
}

impl ValidArgs<'_> {
    /// The HTTP request of validated arguments (see [`Tool::http_request`]).
    pub fn http_request(&self) -> HttpRequestParts {
        self.tool().build_request(self.args())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(encode_component("light.kitchen_2"), "light.kitchen_2");
        assert_eq!(encode_component("a/b c?d#e"), "a%2Fb%20c%3Fd%23e");
        assert_eq!(
            encode_component("2026-11-20T08:00:00+00:00"),
            "2026-11-20T08%3A00%3A00%2B00%3A00"
        );
        assert_eq!(encode_component("é"), "%C3%A9");
    }
}
