//! Signatures: rendering `tool(value, ...)` from a tool's template and its
//! already validated arguments. Validating and judging a call (and
//! [`Tool::signature`], the first of its signatures) is the `targets`
//! module's part. The characters a signature value may never contain
//! ([`FORBIDDEN_SIGNATURE_CHARS`], [`forbidden_char`]) live in a leaf module of
//! their own, as validation checks them too; they are re-exported here.

use serde_json::{Map, Value};

pub use crate::forbidden::{FORBIDDEN_SIGNATURE_CHARS, forbidden_char};
use crate::model::{TemplatePart, Tool};

/// How a scalar argument value is written in a signature or a query string:
/// strings as they are, other JSON scalars as their JSON text.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

impl Tool {
    /// Renders the signature of already validated arguments.
    pub(crate) fn render_signature(&self, args: &Map<String, Value>) -> String {
        self.signature_with(args, &[])
    }

    /// The signature with some placeholders given explicitly (the rest from `args`, absent
    /// ones empty). Nothing is validated: this is for analysing rules (which signatures a
    /// pattern covers), never for judging a call ([`Tool::judged`] does that).
    pub fn signature_with(&self, args: &Map<String, Value>, given: &[(&str, &str)]) -> String {
        let Some(template) = &self.signature else {
            return self.name.clone();
        };
        let mut out = String::with_capacity(self.name.len() + 2 + template.source.len());
        out.push_str(&self.name);
        out.push('(');
        for part in &template.parts {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Arg(name) | TemplatePart::OptionalSegment(name) => {
                    match given.iter().find(|(n, _)| n == name) {
                        Some((_, text)) => out.push_str(text),
                        None => {
                            if let Some(text) = args.get(name).and_then(scalar_text) {
                                out.push_str(&text);
                            }
                        }
                    }
                }
            }
        }
        out.push(')');
        out
    }
}
