//! The manifest model: services, response types, tools, their arguments and
//! HTTP mappings, as loaded and checked from `tools.toml`.

use std::fmt;

use indexmap::IndexMap;
use regex::Regex;

use crate::diagnostics::Location;

/// A loaded, fully checked tool manifest (one or more files merged).
#[derive(Clone, Debug)]
pub struct Manifest {
    pub(crate) services: IndexMap<String, Service>,
    pub(crate) types: IndexMap<String, TypeDef>,
    pub(crate) tools: IndexMap<String, Tool>,
}

impl Manifest {
    /// The tools, in file order then declaration order.
    pub fn tools(&self) -> impl ExactSizeIterator<Item = &Tool> {
        self.tools.values()
    }

    /// The tool called `name`.
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools.get(name)
    }

    /// The declared services, in declaration order.
    pub fn services(&self) -> impl ExactSizeIterator<Item = &Service> {
        self.services.values()
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    /// The declared response types, in declaration order.
    pub fn types(&self) -> impl ExactSizeIterator<Item = &TypeDef> {
        self.types.values()
    }

    /// The response type called `name`.
    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// Up to `n` tool names, most similar to `name` first (Jaro-Winkler
    /// similarity, ties by name). Always returns `min(n, tool count)` names, so
    /// it can be used both for "did you mean" and for listing what exists.
    pub fn nearest_tools(&self, name: &str, n: usize) -> Vec<&str> {
        let mut scored: Vec<(f64, &str)> = self
            .tools
            .keys()
            .map(|t| (strsim::jaro_winkler(name, t), t.as_str()))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored.into_iter().take(n).map(|(_, t)| t).collect()
    }
}

/// A service tools call (e.g. Home Assistant). Where it lives and how to
/// authenticate is configuration, not manifest.
#[derive(Clone, Debug)]
pub struct Service {
    /// The service name, e.g. `homeassistant`.
    pub name: String,
    /// What the service is.
    pub description: String,
    /// Where it is declared.
    pub location: Location,
}

/// A response type (`[types.<Name>]`), for typed SDK methods.
#[derive(Clone, Debug)]
pub struct TypeDef {
    /// The type name (UpperCamelCase), e.g. `State`.
    pub name: String,
    /// What the type is.
    pub description: String,
    /// The fields, in declaration order (same model as tool arguments).
    pub fields: Vec<Arg>,
    /// Where it is declared.
    pub location: Location,
}

/// A tool's response type reference: `"State"` or `"[State]"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResponseType {
    /// The referenced [`TypeDef`] name.
    pub name: String,
    /// True for `"[Name]"`: the response is a list of `Name`.
    pub list: bool,
}

impl fmt::Display for ResponseType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.list {
            write!(f, "[{}]", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

/// One tool an agent may request.
#[derive(Clone, Debug)]
pub struct Tool {
    /// Tool name (snake_case), e.g. `ha_call_service`.
    pub name: String,
    /// The service it calls.
    pub service: String,
    /// What it does (shown to agents).
    pub description: String,
    /// Arguments in declaration order (the order of positional arguments in
    /// generated code).
    pub args: Vec<Arg>,
    /// The signature template; `None` means the signature is the bare tool name.
    pub signature: Option<Template>,
    /// How a call maps onto an HTTP request.
    pub http: HttpMapping,
    /// The response type, if declared.
    pub response: Option<ResponseType>,
    /// Which arguments carry the things a call affects (`[tools.<name>.targets]`), so the
    /// policy judges every one of them; `None`: the signature is rendered once.
    pub targets: Option<Targets>,
    /// What the tool does to the world, as told to MCP clients (tool annotations).
    pub hints: Hints,
    /// Where the tool is defined (its `[tools.<name>]` header).
    pub location: Location,
}

/// `read_only`, `destructive`, `idempotent`, `open_world` of a tool: what it does to the world,
/// shown to MCP clients as tool annotations (hints for the client and the model; the policy
/// decides, never these). `None` where the manifest does not say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// It changes nothing (reads only).
    pub read_only: Option<bool>,
    /// It may destroy or overwrite something (meaningful when not read-only).
    pub destructive: Option<bool>,
    /// Calling it twice with the same arguments does no more than once.
    pub idempotent: Option<bool>,
    /// It reaches things outside the gateway's own world (a home, the internet).
    pub open_world: Option<bool>,
}

impl Hints {
    /// Whether the manifest says nothing.
    pub fn is_empty(&self) -> bool {
        *self == Hints::default()
    }
}

/// Where a tool's call names the things it affects, and how to find them
/// (`[tools.<name>.targets]`).
///
/// Every argument in [`Targets::args`] is scanned at any depth: strings (split at
/// [`Targets::separator`], trimmed, lower-cased when [`Targets::lowercase`]) that match
/// [`Targets::pattern`] are targets, as are such object keys. The policy then judges one
/// signature per target, with the target in the [`Targets::slot`] placeholder.
#[derive(Clone, Debug)]
pub struct Targets {
    /// The signature placeholder (an argument name) each target fills in turn.
    pub slot: String,
    /// The arguments scanned for targets (the slot's own argument among them).
    pub args: Vec<String>,
    /// What a target looks like once normalised (whole-value match).
    pub pattern: Pattern,
    /// Lower-case strings before matching (the service does so too).
    pub lowercase: bool,
    /// A string may name several targets separated by this text (e.g. `","`).
    pub separator: Option<String>,
    /// Object keys that select targets some other way (by area, device, ...): a call
    /// carrying one at any depth of a scanned argument is refused, since the policy could
    /// not see what it affects.
    pub refuse_keys: Vec<String>,
    /// Values that stand for "every" or "no" target (`all`, `none`): refused as the slot
    /// argument or under a key named like the slot.
    pub refuse_values: Vec<String>,
    /// Generic actions that act on each target through the target's own kind.
    pub dispatch: Option<Dispatch>,
    /// Kinds of target (the text before the first `.`) that act on other things in turn
    /// (scripts, scenes, automations): allowing them allows whatever they do.
    pub indirect: Vec<String>,
    /// Where the table is defined.
    pub location: Location,
}

/// `dispatch = { arg = "domain", values = ["homeassistant"] }`: when argument `arg` has one
/// of `values`, the call is also judged with `arg` set to each target's kind (the text of
/// the target before its first `.`), so `homeassistant.turn_off` on `lock.front_door` meets
/// the rules written for `lock.*`.
#[derive(Clone, Debug)]
pub struct Dispatch {
    /// The argument whose value names a generic action.
    pub arg: String,
    /// The generic values.
    pub values: Vec<String>,
}

impl Targets {
    /// The kind of a target: its text before the first `.`, if it has one.
    pub fn kind_of(target: &str) -> Option<&str> {
        target.split_once('.').map(|(kind, _)| kind)
    }
}

impl Tool {
    /// The argument called `name`.
    pub fn arg(&self, name: &str) -> Option<&Arg> {
        self.args.iter().find(|a| a.name == name)
    }

    /// Names of the arguments that appear in the signature, in template order.
    pub fn signature_args(&self) -> impl Iterator<Item = &str> {
        self.signature
            .iter()
            .flat_map(|t| t.parts.iter())
            .filter_map(|p| match p {
                TemplatePart::Arg(name) => Some(name.as_str()),
                TemplatePart::Literal(_) | TemplatePart::OptionalSegment(_) => None,
            })
    }

    /// True if `arg` is placed in the URL path (`{arg}` or `{/arg}`).
    pub fn in_path(&self, arg: &str) -> bool {
        self.http.path.parts.iter().any(
            |p| matches!(p, TemplatePart::Arg(n) | TemplatePart::OptionalSegment(n) if n == arg),
        )
    }

    /// True if `arg` appears in the signature template.
    pub fn in_signature(&self, arg: &str) -> bool {
        self.signature_args().any(|a| a == arg)
    }
}

/// A tool argument (or a response type field).
#[derive(Clone, Debug)]
pub struct Arg {
    /// Name (snake_case), also the JSON key.
    pub name: String,
    /// JSON type and its constraints.
    pub kind: ArgType,
    /// Whether the argument must be given (default true).
    pub required: bool,
    /// What it is (shown to agents).
    pub description: String,
    /// Where it is defined.
    pub location: Location,
}

/// A scalar JSON type (array item types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarType {
    /// A JSON string.
    String,
    /// A JSON number without fraction or exponent that fits in 64 bits.
    Integer,
    /// Any JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
}

impl ScalarType {
    /// The manifest / JSON Schema name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            ScalarType::String => "string",
            ScalarType::Integer => "integer",
            ScalarType::Number => "number",
            ScalarType::Boolean => "boolean",
        }
    }
}

/// An argument's JSON type and constraints.
#[derive(Clone, Debug)]
pub enum ArgType {
    /// A JSON string.
    String {
        /// Regex the whole value must match.
        pattern: Option<Pattern>,
        /// The allowed values, if restricted.
        enum_values: Option<Vec<String>>,
        /// A non-empty list of such strings is accepted too (`or_list = true`).
        or_list: bool,
    },
    /// A JSON integer (64-bit).
    Integer,
    /// Any JSON number.
    Number,
    /// A JSON boolean.
    Boolean,
    /// A JSON object.
    Object {
        /// Top-level keys the object may not contain.
        forbid_keys: Vec<String>,
    },
    /// A JSON array whose items all have one scalar type.
    Array {
        /// The item type.
        items: ScalarType,
    },
}

impl ArgType {
    /// The manifest / JSON Schema name of the type.
    pub fn type_name(&self) -> &'static str {
        match self {
            ArgType::String { .. } => "string",
            ArgType::Integer => "integer",
            ArgType::Number => "number",
            ArgType::Boolean => "boolean",
            ArgType::Object { .. } => "object",
            ArgType::Array { .. } => "array",
        }
    }

    /// True for string, integer, number and boolean (not for a string that also accepts a
    /// list, `or_list = true`).
    pub fn is_scalar(&self) -> bool {
        !matches!(
            self,
            ArgType::Object { .. } | ArgType::Array { .. } | ArgType::String { or_list: true, .. }
        )
    }

    /// True for a string argument that also accepts a non-empty list of strings.
    pub fn accepts_list(&self) -> bool {
        matches!(self, ArgType::String { or_list: true, .. })
    }
}

/// A compiled `pattern`: the whole value must match.
///
/// A pattern that is already anchored at both ends (starts with `^`, ends with
/// an unescaped `$`, has no top-level `|` and no multi-line flag) is used as
/// written; any other pattern `P` is used as `^(?:P)$`. [`Pattern::anchored`]
/// is the pattern that is matched and the one published in JSON Schemas, so
/// schema validators and the gateway agree.
#[derive(Clone, Debug)]
pub struct Pattern {
    written: String,
    anchored: String,
    regex: Regex,
}

impl Pattern {
    /// Compiles `pattern` with whole-value semantics.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        let anchored = if is_whole_anchored(pattern) {
            pattern.to_owned()
        } else {
            format!("^(?:{pattern})$")
        };
        let regex = regex::RegexBuilder::new(&anchored)
            .size_limit(1 << 20)
            .build()?;
        Ok(Pattern {
            written: pattern.to_owned(),
            anchored,
            regex,
        })
    }

    /// The pattern as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    /// The pattern actually matched (anchored at both ends).
    pub fn anchored(&self) -> &str {
        &self.anchored
    }

    /// The compiled regex (of [`Pattern::anchored`]).
    pub fn regex(&self) -> &Regex {
        &self.regex
    }

    /// True if the whole `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

/// True if `p` is `^...$` with no top-level alternation and no flag group
/// that could enable multi-line mode, so it already matches whole values only.
fn is_whole_anchored(p: &str) -> bool {
    if !p.starts_with('^') || !p.ends_with('$') {
        return false;
    }
    let chars: Vec<char> = p.chars().collect();
    let mut depth = 0usize;
    let mut class_depth = 0usize;
    let mut i = 0;
    let mut last_escaped = false;
    while i < chars.len() {
        let c = chars.get(i).copied().unwrap_or_default();
        last_escaped = false;
        match c {
            '\\' => {
                i += 1;
                last_escaped = true;
            }
            '[' => class_depth += 1,
            ']' if class_depth > 0 => class_depth -= 1,
            _ if class_depth > 0 => {}
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    let flags: String = chars
                        .iter()
                        .skip(i + 2)
                        .take_while(|c| c.is_ascii_alphabetic() || **c == '-')
                        .collect();
                    if flags.contains('m') {
                        return false;
                    }
                }
                depth += 1;
            }
            ')' => depth = depth.saturating_sub(1),
            '|' if depth == 0 => return false,
            _ => {}
        }
        i += 1;
    }
    // the final `$` must not have been consumed as an escape (`\$`)
    !last_escaped && class_depth == 0 && depth == 0
}

/// A parsed `{arg}` template (signature or path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    /// The template as written.
    pub source: String,
    /// Its parts in order.
    pub parts: Vec<TemplatePart>,
}

/// One part of a [`Template`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text copied as is.
    Literal(String),
    /// `{arg}`: the value of a (required, for paths) argument.
    Arg(String),
    /// `{/arg}` (paths only): `/value` when the optional argument is given,
    /// nothing otherwise.
    OptionalSegment(String),
}

/// HTTP method of a tool's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    /// All methods, in manifest spelling order.
    pub const ALL: [Method; 5] = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
    ];

    /// The method as written in HTTP (`"GET"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the response body is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Decode {
    /// Parse as JSON (default).
    #[default]
    Json,
    /// Take the body as a string (requires `wrap`).
    Text,
}

impl Decode {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Decode::Json => "json",
            Decode::Text => "text",
        }
    }
}

/// How a tool call maps onto an HTTP request (`http = {...}`).
#[derive(Clone, Debug)]
pub struct HttpMapping {
    /// The method.
    pub method: Method,
    /// The path template (starts with `/`).
    pub path: Template,
    /// Query parameters: parameter name → argument name, in declaration order.
    /// A parameter is omitted when its argument is absent.
    pub query: Vec<(String, String)>,
    /// Arguments forming the JSON body object (absent optional ones omitted).
    pub body: Vec<String>,
    /// An object argument whose keys are merged into the JSON body.
    pub body_merge: Option<String>,
    /// How to decode the response.
    pub decode: Decode,
    /// If set, the response is returned as `{wrap: response}`.
    pub wrap: Option<String>,
    /// Query flags: parameter name → boolean argument. The parameter is sent without a
    /// value (`?return_response`) when the argument is `true`, and left out otherwise.
    pub flags: Vec<(String, String)>,
    /// A boolean argument that, when `true`, returns the response as it is (not wrapped).
    pub wrap_unless: Option<String>,
    /// Constant string values of the JSON body: key → value, in declaration order.
    pub body_const: Vec<(String, String)>,
    /// Help added to the message of a 4xx error answer (except 401 and 403), with `{arg}`
    /// placeholders filled from the call's arguments.
    pub error_help: Option<Template>,
}

impl HttpMapping {
    /// True if the request has a JSON body (`body`, `body_merge` or `body_const` given).
    pub fn has_body(&self) -> bool {
        !self.body.is_empty() || self.body_merge.is_some() || !self.body_const.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchoring() {
        assert!(is_whole_anchored("^[a-z]+$"));
        assert!(is_whole_anchored("^(a|b)$"));
        assert!(!is_whole_anchored("^a|b$"));
        assert!(!is_whole_anchored("^a\\$"));
        assert!(!is_whole_anchored("[a-z]+"));
        assert!(!is_whole_anchored("^(?m)a$"));
        assert!(is_whole_anchored("^[|]$"));

        let p = Pattern::new("[a-z]+").unwrap();
        assert_eq!(p.anchored(), "^(?:[a-z]+)$");
        assert!(p.is_match("abc"));
        assert!(!p.is_match("abc1"));
        let p = Pattern::new("^a|b$").unwrap();
        assert!(!p.is_match("ax"));
        assert!(p.is_match("b"));
        let p = Pattern::new("^[a-z]+$").unwrap();
        assert_eq!(p.anchored(), "^[a-z]+$");
        assert!(!p.is_match("abc\n"));
    }
}
