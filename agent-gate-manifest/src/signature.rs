//! Signatures: rendering `tool(value, ...)` from a tool's template and its
//! arguments, and the characters a signature value may never contain.

use serde_json::{Map, Value};

use crate::model::Tool;
use crate::validate::ArgsError;

/// Characters that may not appear in a value rendered into a signature:
/// glob metacharacters, parentheses, commas and backslash (control characters
/// are refused too, see [`forbidden_char`]). With them a value could change
/// what a policy rule matches, e.g. `light.*` or `a, lock.front_door`.
pub const FORBIDDEN_SIGNATURE_CHARS: &[char] =
    &['*', '?', '[', ']', '{', '}', '!', '(', ')', ',', '\\'];

/// The first character of `value` that may not appear in a signature, if any.
pub fn forbidden_char(value: &str) -> Option<char> {
    value
        .chars()
        .find(|c| FORBIDDEN_SIGNATURE_CHARS.contains(c) || c.is_control())
}

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
    /// The signature policies judge, e.g. `ha_call_service(light.turn_on, light.bedroom)`
    /// for the template `{domain}.{service}, {entity_id}`.
    ///
    /// Without a template the signature is the bare tool name (`ha_get_states`).
    /// An absent optional argument renders as the empty string. The arguments
    /// are validated first with [`Tool::validate_args`] (so a value with a
    /// forbidden character never reaches a signature); the error is that of
    /// validation.
    ///
    /// A tool with `targets` has one signature per target ([`Tool::judged`] gives them all);
    /// this is the first of them.
    pub fn signature(&self, args: &Map<String, Value>) -> Result<String, ArgsError> {
        let judged = self.judged(args)?;
        Ok(judged
            .signatures
            .into_iter()
            .next()
            .unwrap_or_else(|| self.render_signature(args)))
    }

    /// Renders the signature of already validated arguments.
    pub(crate) fn render_signature(&self, args: &Map<String, Value>) -> String {
        self.signature_with(args, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden() {
        for bad in [
            "light.*", "a?", "[ab]", "{a}", "!a", "a(b)", "a,b", "a\\b", "a\nb", "a\u{7f}",
        ] {
            assert!(forbidden_char(bad).is_some(), "{bad:?}");
        }
        assert_eq!(forbidden_char("light.kitchen_2"), None);
        assert_eq!(forbidden_char("2026-11-20T08:00:00+00:00"), None);
    }
}
