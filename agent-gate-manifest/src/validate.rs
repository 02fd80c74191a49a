//! Argument validation: checks a tool call's JSON arguments against the tool's
//! declaration (no undeclared arguments, required present, exact JSON types,
//! patterns, enums, forbidden signature characters, forbidden object keys).

use serde_json::{Map, Value};

use crate::diagnostics::did_you_mean;
use crate::forbidden::forbidden_char;
use crate::model::{Arg, ArgType, Pattern, ScalarType, Tool};

/// One invalid argument of a tool call. Display says which argument, what was
/// expected, what was got, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// An argument the tool does not declare (never forwarded).
    #[error("tool `{tool}` has no argument `{arg}`; {}", undeclared_fix(.suggestion.as_deref(), .declared))]
    Undeclared {
        /// The tool.
        tool: String,
        /// The undeclared argument.
        arg: String,
        /// The closest declared argument name, if close.
        suggestion: Option<String>,
        /// The declared argument names.
        declared: Vec<String>,
    },
    /// A required argument is missing.
    #[error("tool `{tool}` requires argument `{arg}` ({expected}); add it")]
    Missing {
        /// The tool.
        tool: String,
        /// The missing argument.
        arg: String,
        /// What it should be.
        expected: String,
    },
    /// The JSON type is wrong (never coerced).
    #[error("argument `{arg}` of tool `{tool}` must be {expected}, got {got}; {}", type_fix(.expected, .got))]
    WrongType {
        /// The tool.
        tool: String,
        /// The argument (`name[index]` for an array item).
        arg: String,
        /// The expected JSON type.
        expected: String,
        /// What was given.
        got: String,
    },
    /// A string does not match the argument's pattern.
    #[error(
        "argument `{arg}` of tool `{tool}` must match the pattern `{pattern}`, got {value}; pass a value matching the pattern"
    )]
    PatternMismatch {
        /// The tool.
        tool: String,
        /// The argument.
        arg: String,
        /// The pattern (as written in the manifest).
        pattern: String,
        /// The value given (quoted, shortened).
        value: String,
    },
    /// A string is not one of the allowed values.
    #[error("argument `{arg}` of tool `{tool}` must be one of {}, got {value}; pass one of the allowed values", .allowed.join(", "))]
    NotInEnum {
        /// The tool.
        tool: String,
        /// The argument.
        arg: String,
        /// The allowed values.
        allowed: Vec<String>,
        /// The value given (quoted, shortened).
        value: String,
    },
    /// A value that appears in the signature contains a forbidden character.
    #[error(
        "argument `{arg}` of tool `{tool}` appears in the policy signature and may not contain {ch:?}, got {value}; signature values may not contain * ? [ ] {{ }} ! ( ) , \\ or control characters: pass the exact value, one call per target"
    )]
    ForbiddenChar {
        /// The tool.
        tool: String,
        /// The argument.
        arg: String,
        /// The offending character.
        ch: char,
        /// The value given (quoted, shortened).
        value: String,
    },
    /// A value placed in the URL path is empty, `.` or `..`, which would
    /// change which endpoint the request reaches.
    #[error(
        "argument `{arg}` of tool `{tool}` is a URL path segment and may not be {value}; pass the exact non-empty name"
    )]
    BadPathSegment {
        /// The tool.
        tool: String,
        /// The argument.
        arg: String,
        /// The value given (quoted).
        value: String,
    },
    /// A list was given for an argument that accepts one, but it is empty.
    #[error(
        "argument `{arg}` of tool `{tool}` is an empty list; pass at least one value, or omit the argument"
    )]
    EmptyList {
        /// The tool.
        tool: String,
        /// The argument.
        arg: String,
    },
    /// The call selects what it affects in a way the policy cannot judge (by area, device,
    /// ..., or every entity at once).
    #[error("argument `{arg}` of tool `{tool}` {what} at `{at}`; {fix}")]
    RefusedTarget {
        /// The tool.
        tool: String,
        /// The argument.
        arg: String,
        /// Where in the argument (`data.target.area_id`).
        at: String,
        /// What was found (`targets by `area_id``, `names every target (`all`)`).
        what: String,
        /// How to fix it.
        fix: String,
    },
    /// An object argument contains a key its declaration forbids.
    #[error("argument `{arg}` of tool `{tool}` may not contain the key `{key}`; {}", forbidden_key_fix(.key, .argument_key))]
    ForbiddenKey {
        /// The tool.
        tool: String,
        /// The object argument.
        arg: String,
        /// The forbidden key.
        key: String,
        /// True if the key is forbidden because it is a declared argument of
        /// the tool (the object is merged into the request body); false if it
        /// is listed in `forbid_keys`.
        argument_key: bool,
    },
}

fn undeclared_fix(suggestion: Option<&str>, declared: &[String]) -> String {
    match suggestion {
        Some(s) => format!("did you mean `{s}`?"),
        None if declared.is_empty() => "remove it: this tool takes no arguments".to_owned(),
        None => format!("remove it; the arguments are: {}", declared.join(", ")),
    }
}

fn type_fix(expected: &str, got: &str) -> &'static str {
    if got == "null" {
        "omit an optional argument instead of sending null"
    } else if got.starts_with("an array") && !expected.starts_with("an array") {
        "pass a single value, one call per value"
    } else if expected == "an integer" && got.starts_with("a number") {
        "pass a whole number without fraction or exponent"
    } else {
        "pass a value of the expected JSON type (values are never converted)"
    }
}

fn forbidden_key_fix(key: &str, argument_key: &bool) -> String {
    if *argument_key {
        format!("`{key}` is an argument of the tool: pass it as that argument")
    } else {
        "remove it; targets and other restricted keys must be passed as the tool's own arguments so policies see them".to_owned()
    }
}

impl ArgError {
    /// The tool.
    pub fn tool(&self) -> &str {
        match self {
            ArgError::Undeclared { tool, .. }
            | ArgError::Missing { tool, .. }
            | ArgError::WrongType { tool, .. }
            | ArgError::PatternMismatch { tool, .. }
            | ArgError::NotInEnum { tool, .. }
            | ArgError::ForbiddenChar { tool, .. }
            | ArgError::BadPathSegment { tool, .. }
            | ArgError::EmptyList { tool, .. }
            | ArgError::RefusedTarget { tool, .. }
            | ArgError::ForbiddenKey { tool, .. } => tool,
        }
    }

    /// The argument the error is about.
    pub fn arg(&self) -> &str {
        match self {
            ArgError::Undeclared { arg, .. }
            | ArgError::Missing { arg, .. }
            | ArgError::WrongType { arg, .. }
            | ArgError::PatternMismatch { arg, .. }
            | ArgError::NotInEnum { arg, .. }
            | ArgError::ForbiddenChar { arg, .. }
            | ArgError::BadPathSegment { arg, .. }
            | ArgError::EmptyList { arg, .. }
            | ArgError::RefusedTarget { arg, .. }
            | ArgError::ForbiddenKey { arg, .. } => arg,
        }
    }

    /// A short machine-readable name of the problem (`undeclared`,
    /// `missing`, `wrong_type`, `pattern_mismatch`, `not_in_enum`,
    /// `forbidden_char`, `bad_path_segment`, `empty_list`, `refused_target`,
    /// `forbidden_key`).
    pub fn kind(&self) -> &'static str {
        match self {
            ArgError::Undeclared { .. } => "undeclared",
            ArgError::Missing { .. } => "missing",
            ArgError::WrongType { .. } => "wrong_type",
            ArgError::PatternMismatch { .. } => "pattern_mismatch",
            ArgError::NotInEnum { .. } => "not_in_enum",
            ArgError::ForbiddenChar { .. } => "forbidden_char",
            ArgError::BadPathSegment { .. } => "bad_path_segment",
            ArgError::EmptyList { .. } => "empty_list",
            ArgError::RefusedTarget { .. } => "refused_target",
            ArgError::ForbiddenKey { .. } => "forbidden_key",
        }
    }

    /// `{"arg", "problem", "message"}`, for an error response's `details`.
    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "arg": self.arg(),
            "problem": self.kind(),
            "message": self.to_string(),
        })
    }
}

/// All invalid arguments of one tool call (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.errors))]
pub struct ArgsError {
    /// The tool called.
    pub tool: String,
    /// Every problem found, in argument order.
    pub errors: Vec<ArgError>,
}

impl ArgsError {
    /// One [`ArgError::details`] object per problem.
    pub fn details(&self) -> serde_json::Value {
        serde_json::Value::Array(self.errors.iter().map(ArgError::details).collect())
    }
}

fn render(errors: &[ArgError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A value for error messages: JSON-quoted and cut at 64 characters.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() > MAX {
        let cut: String = value.chars().take(MAX).collect();
        format!("{cut:?}… ({} characters)", value.chars().count())
    } else {
        format!("{value:?}")
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({})", shown(s)),
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(o) => format!("an object with {} keys", o.len()),
    }
}

fn expected(kind: &ArgType) -> String {
    match kind {
        ArgType::String {
            pattern: Some(p),
            or_list,
            ..
        } => format!(
            "a string matching `{}`{}",
            p.as_str(),
            if *or_list { " (or a list of them)" } else { "" }
        ),
        ArgType::String {
            enum_values: Some(v),
            ..
        } => format!("one of {}", v.join(", ")),
        ArgType::String { or_list: true, .. } => "a string or a list of strings".to_owned(),
        ArgType::String { .. } => "a string".to_owned(),
        ArgType::Integer => "an integer".to_owned(),
        ArgType::Number => "a number".to_owned(),
        ArgType::Boolean => "a boolean".to_owned(),
        ArgType::Object { .. } => "an object".to_owned(),
        ArgType::Array { items } => format!("an array of {}s", items.as_str()),
    }
}

fn scalar_ok(item: ScalarType, value: &Value) -> bool {
    match item {
        ScalarType::String => value.is_string(),
        ScalarType::Integer => value.is_i64() || value.is_u64(),
        ScalarType::Number => value.is_number(),
        ScalarType::Boolean => value.is_boolean(),
    }
}

/// Checks `value` against `pattern` for argument `arg` of `tool`, with the
/// exact message the gateway gives, so SDK-side checks and gateway errors read
/// the same.
pub fn check_pattern(
    tool: &str,
    arg: &str,
    value: &str,
    pattern: &Pattern,
) -> Result<(), ArgError> {
    if pattern.is_match(value) {
        Ok(())
    } else {
        Err(ArgError::PatternMismatch {
            tool: tool.to_owned(),
            arg: arg.to_owned(),
            pattern: pattern.as_str().to_owned(),
            value: shown(value),
        })
    }
}

impl Tool {
    /// Checks a call's arguments: undeclared arguments are refused (never
    /// forwarded), required ones must be present, JSON types must match
    /// exactly (an integer must be a whole number; nothing is converted),
    /// strings must match their `pattern` and `enum`, values that appear in
    /// the signature may not contain [`forbidden_char`]s, objects may not
    /// contain their `forbid_keys`, and the `body_merge` object may not
    /// contain a key that is another declared argument. A string placed in the
    /// URL path may not be empty, `.` or `..`. `null` is refused: omit an
    /// optional argument instead. Every problem is reported.
    pub fn validate_args(&self, args: &Map<String, Value>) -> Result<(), ArgsError> {
        let mut errors = Vec::new();
        let declared: Vec<&str> = self.args.iter().map(|a| a.name.as_str()).collect();
        for key in args.keys() {
            if !declared.contains(&key.as_str()) {
                errors.push(ArgError::Undeclared {
                    tool: self.name.clone(),
                    arg: key.clone(),
                    suggestion: did_you_mean(key, declared.iter().copied()).map(str::to_owned),
                    declared: declared.iter().map(|s| (*s).to_owned()).collect(),
                });
            }
        }
        for arg in &self.args {
            let Some(value) = args.get(&arg.name) else {
                if arg.required {
                    errors.push(ArgError::Missing {
                        tool: self.name.clone(),
                        arg: arg.name.clone(),
                        expected: expected(&arg.kind),
                    });
                }
                continue;
            };
            let wrong = || ArgError::WrongType {
                tool: self.name.clone(),
                arg: arg.name.clone(),
                expected: expected_type(&arg.kind),
                got: describe(value),
            };
            match (&arg.kind, value) {
                (ArgType::String { .. }, Value::String(s)) => {
                    self.check_string(arg, &arg.name, s, &mut errors);
                }
                (ArgType::String { or_list: true, .. }, Value::Array(list)) => {
                    if list.is_empty() {
                        errors.push(ArgError::EmptyList {
                            tool: self.name.clone(),
                            arg: arg.name.clone(),
                        });
                    }
                    for (i, item) in list.iter().enumerate() {
                        let label = format!("{}[{i}]", arg.name);
                        match item {
                            Value::String(s) => self.check_string(arg, &label, s, &mut errors),
                            other => errors.push(ArgError::WrongType {
                                tool: self.name.clone(),
                                arg: label,
                                expected: "a string".to_owned(),
                                got: describe(other),
                            }),
                        }
                    }
                }
                (ArgType::Integer, v) if v.is_i64() || v.is_u64() => {}
                (ArgType::Number, Value::Number(_)) | (ArgType::Boolean, Value::Bool(_)) => {}
                (ArgType::Object { forbid_keys }, Value::Object(obj)) => {
                    let merged = self.http.body_merge.as_deref() == Some(arg.name.as_str());
                    for key in obj.keys() {
                        if forbid_keys.iter().any(|k| k == key) {
                            errors.push(ArgError::ForbiddenKey {
                                tool: self.name.clone(),
                                arg: arg.name.clone(),
                                key: key.clone(),
                                argument_key: false,
                            });
                        } else if merged && *key != arg.name && declared.contains(&key.as_str()) {
                            errors.push(ArgError::ForbiddenKey {
                                tool: self.name.clone(),
                                arg: arg.name.clone(),
                                key: key.clone(),
                                argument_key: true,
                            });
                        }
                    }
                }
                (ArgType::Array { items }, Value::Array(list)) => {
                    for (i, item) in list.iter().enumerate() {
                        if !scalar_ok(*items, item) {
                            errors.push(ArgError::WrongType {
                                tool: self.name.clone(),
                                arg: format!("{}[{i}]", arg.name),
                                expected: format!("{} {}", article(items.as_str()), items.as_str()),
                                got: describe(item),
                            });
                        }
                    }
                }
                _ => errors.push(wrong()),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ArgsError {
                tool: self.name.clone(),
                errors,
            })
        }
    }
}

/// Arguments that passed [`Tool::validate`] for their tool: what targets, signatures
/// ([`ValidArgs::judged`]) and the HTTP request ([`ValidArgs::http_request`]) are built from, so
/// a call is validated once however many of them it needs.
#[derive(Clone, Copy, Debug)]
pub struct ValidArgs<'a> {
    tool: &'a Tool,
    args: &'a Map<String, Value>,
}

impl<'a> ValidArgs<'a> {
    /// The tool the arguments were validated for.
    pub fn tool(&self) -> &'a Tool {
        self.tool
    }

    /// The arguments.
    pub fn args(&self) -> &'a Map<String, Value> {
        self.args
    }
}

impl Tool {
    /// Validates `args` ([`Tool::validate_args`]) and returns the proof, from which the
    /// targets, signatures and HTTP request are built without validating again.
    pub fn validate<'a>(
        &'a self,
        args: &'a Map<String, Value>,
    ) -> Result<ValidArgs<'a>, ArgsError> {
        self.validate_args(args)?;
        Ok(ValidArgs { tool: self, args })
    }

    /// The checks of one string value (`label` names it in errors: the argument, or
    /// `name[i]` for an item of a list): enum, pattern, forbidden signature characters and
    /// path segments.
    fn check_string(&self, arg: &Arg, label: &str, s: &str, errors: &mut Vec<ArgError>) {
        let ArgType::String {
            pattern,
            enum_values,
            ..
        } = &arg.kind
        else {
            return;
        };
        if let Some(allowed) = enum_values
            && !allowed.iter().any(|a| a == s)
        {
            errors.push(ArgError::NotInEnum {
                tool: self.name.clone(),
                arg: label.to_owned(),
                allowed: allowed.clone(),
                value: shown(s),
            });
            return;
        }
        if let Some(p) = pattern
            && let Err(e) = check_pattern(&self.name, label, s, p)
        {
            errors.push(e);
            return;
        }
        if self.in_signature(&arg.name)
            && let Some(ch) = forbidden_char(s)
        {
            errors.push(ArgError::ForbiddenChar {
                tool: self.name.clone(),
                arg: label.to_owned(),
                ch,
                value: shown(s),
            });
        }
        if self.in_path(&arg.name) && matches!(s, "" | "." | "..") {
            errors.push(ArgError::BadPathSegment {
                tool: self.name.clone(),
                arg: label.to_owned(),
                value: shown(s),
            });
        }
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The bare JSON type expected (for type errors; pattern and enum are
/// reported separately).
fn expected_type(kind: &ArgType) -> String {
    match kind {
        ArgType::String { or_list: true, .. } => "a string or a list of strings".to_owned(),
        ArgType::Array { items } => format!("an array of {}s", items.as_str()),
        other => format!("{} {}", article(other.type_name()), other.type_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_long_values() {
        let long = "x".repeat(100);
        let s = shown(&long);
        assert!(s.ends_with("… (100 characters)"), "{s}");
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
    }

    #[test]
    fn check_pattern_message() {
        let p = Pattern::new("^[a-z]+$").unwrap();
        assert!(check_pattern("t", "a", "abc", &p).is_ok());
        let e = check_pattern("t", "a", "ABC", &p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "argument `a` of tool `t` must match the pattern `^[a-z]+$`, got \"ABC\"; pass a value matching the pattern"
        );
        assert_eq!(e.arg(), "a");
        assert_eq!(e.tool(), "t");
    }
}
