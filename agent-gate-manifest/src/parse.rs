//! Loading: reads manifest files, walks the spanned TOML tree, checks every
//! rule of the format and builds the [`Manifest`] or the list of diagnostics.

use std::ops::Range;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostics::{Diagnostic, LineIndex, Location, ManifestError, did_you_mean};
use crate::forbidden::forbidden_char;
use crate::model::{
    Arg, ArgType, Decode, Dispatch, Hints, HttpMapping, Manifest, Method, Pattern, ResponseType,
    ScalarType, Service, Targets, Template, TemplatePart, Tool, TypeDef,
};

/// A manifest loaded without errors, with the warnings found on the way.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The manifest.
    pub manifest: Manifest,
    /// Warnings (e.g. a manifest without tools); the manifest is usable.
    pub warnings: Vec<Diagnostic>,
}

type Value<'i> = Spanned<DeValue<'i>>;

const TOP_KEYS: &[&str] = &["version", "services", "types", "tools"];
const SERVICE_KEYS: &[&str] = &["description"];
const TYPE_KEYS: &[&str] = &["description", "fields"];
const TOOL_KEYS: &[&str] = &[
    "service",
    "description",
    "signature",
    "response",
    "http",
    "args",
    "targets",
    "read_only",
    "destructive",
    "idempotent",
    "open_world",
];
const TARGETS_KEYS: &[&str] = &[
    "slot",
    "args",
    "pattern",
    "lowercase",
    "separator",
    "refuse_keys",
    "refuse_values",
    "dispatch",
    "indirect",
];
const DISPATCH_KEYS: &[&str] = &["arg", "values"];
const ARG_KEYS: &[&str] = &[
    "type",
    "required",
    "pattern",
    "enum",
    "description",
    "items",
    "forbid_keys",
    "or_list",
];
const HTTP_KEYS: &[&str] = &[
    "method",
    "path",
    "query",
    "body",
    "body_merge",
    "decode",
    "wrap",
    "flags",
    "wrap_unless",
    "body_const",
    "error_help",
];
const TYPE_NAMES: &[&str] = &["string", "integer", "number", "boolean", "object", "array"];

/// Rust keywords (strict, reserved and edition-2024 reserved): names that
/// generated code could not use as a function, parameter or field.
const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe",
    "use", "where", "while", "abstract", "become", "box", "do", "final", "macro", "override",
    "priv", "try", "typeof", "unsized", "virtual", "yield",
];

impl Manifest {
    /// Reads and merges the manifest files at `paths`.
    ///
    /// Services and types declared in any file may be used by tools of every
    /// file; a tool, service or type name defined twice is an error. All
    /// semantic errors of all files are reported together; a TOML syntax error
    /// stops the checking of that file only.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<Loaded, ManifestError> {
        let mut sources = Vec::with_capacity(paths.len());
        let mut errors = Vec::new();
        for path in paths {
            let path = path.as_ref();
            match std::fs::read_to_string(path) {
                Ok(text) => sources.push((path.to_path_buf(), text)),
                Err(e) => errors.push(
                    Diagnostic::error(
                        Location::whole_file(path),
                        format!("cannot read the tool manifest: {e}"),
                    )
                    .with_help("check the path (relative paths start at the working directory) and the file's permissions"),
                ),
            }
        }
        if !errors.is_empty() {
            return Err(ManifestError {
                diagnostics: errors,
            });
        }
        Self::from_sources(sources.iter().map(|(p, t)| (p.clone(), t.as_str())))
    }

    /// Parses one manifest from `source`; `file_name` is used in diagnostics.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(source: &str, file_name: impl Into<PathBuf>) -> Result<Loaded, ManifestError> {
        Self::from_sources([(file_name.into(), source)])
    }

    /// Parses and merges several manifests given as `(file name, text)`
    /// (for callers that read the files themselves, like the proc-macro).
    pub fn from_sources<'s, P: Into<PathBuf>>(
        sources: impl IntoIterator<Item = (P, &'s str)>,
    ) -> Result<Loaded, ManifestError> {
        let mut b = Builder::default();
        let mut files = Vec::new();
        for (file, source) in sources {
            let file: PathBuf = file.into();
            b.file(&file, source);
            files.push(file);
        }
        b.finish(&files)
    }
}

#[derive(Default)]
struct Builder {
    services: IndexMap<String, Service>,
    types: IndexMap<String, TypeDef>,
    tools: IndexMap<String, Tool>,
    /// (tool, location of its `service` value)
    service_refs: Vec<(String, Location)>,
    /// (tool, location of its `response` value)
    response_refs: Vec<(String, Location)>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

struct Ctx<'a> {
    file: &'a Path,
    source: &'a str,
    lines: LineIndex,
    errors: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn loc(&self, span: Range<usize>) -> Location {
        Location::indexed(self.file, self.source, &self.lines, span)
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>, help: impl Into<String>) {
        let help: String = help.into();
        let mut d = Diagnostic::error(self.loc(span), message);
        if !help.is_empty() {
            d = d.with_help(help);
        }
        self.errors.push(d);
    }

    /// Like [`Ctx::error`], but only when there is help: `None` means the
    /// error is a consequence of one already reported.
    fn error_opt(&mut self, span: Range<usize>, message: impl Into<String>, help: Option<String>) {
        if let Some(help) = help {
            self.error(span, message, help);
        }
    }

    /// Reports keys of `table` not in `allowed`.
    fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], what: &str) {
        for key in table.keys() {
            let name = key.get_ref().as_ref();
            if allowed.contains(&name) {
                continue;
            }
            let help = match did_you_mean(name, allowed.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "the keys allowed here are {}",
                    allowed
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            self.error(key.span(), format!("unknown key `{name}` in {what}"), help);
        }
    }

    /// The span of the text `inner` (a byte range of the string value) inside
    /// the string literal at `value_span`, when the literal has no escapes;
    /// otherwise the whole literal.
    fn inner_span(
        &self,
        value_span: Range<usize>,
        value: &str,
        inner: Range<usize>,
    ) -> Range<usize> {
        let literal = self.source.get(value_span.clone()).unwrap_or_default();
        let quote_len = if literal.starts_with("\"\"\"") || literal.starts_with("'''") {
            3
        } else {
            1
        };
        match literal.get(quote_len..quote_len + value.len()) {
            Some(raw) if raw == value => {
                let start = value_span.start + quote_len;
                start + inner.start..start + inner.end
            }
            _ => value_span,
        }
    }

    fn table<'v, 'i>(&mut self, value: &'v Value<'i>, what: &str) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.error(
                    value.span(),
                    format!("{what} must be a table, found {}", describe(other)),
                    "write it as a `[...]` section or an inline table `{ ... }`",
                );
                None
            }
        }
    }

    fn string(&mut self, value: &Value<'_>, what: &str, example: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.error(
                    value.span(),
                    format!("{what} must be a string, found {}", describe(other)),
                    format!("write it in quotes, e.g. {example}"),
                );
                None
            }
        }
    }

    fn string_list(
        &mut self,
        value: &Value<'_>,
        what: &str,
        example: &str,
    ) -> Option<Vec<Spanned<String>>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.error(
                value.span(),
                format!(
                    "{what} must be an array of strings, found {}",
                    describe(value.get_ref())
                ),
                format!("e.g. {example}"),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Spanned::new(item.span(), s.to_string())),
                other => {
                    ok = false;
                    self.error(
                        item.span(),
                        format!(
                            "{what} must contain only strings, found {}",
                            describe(other)
                        ),
                        format!("e.g. {example}"),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    fn bool(&mut self, value: &Value<'_>, what: &str) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.error(
                    value.span(),
                    format!("{what} must be a boolean, found {}", describe(other)),
                    "write `true` or `false` without quotes",
                );
                None
            }
        }
    }
}

fn describe(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn get<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<&'t Value<'i>> {
    table.get(key)
}

/// Why `name` is not a valid snake_case identifier for generated Rust code.
pub(crate) fn ident_problem(name: &str) -> Option<(String, String)> {
    let suggestion: String = {
        let mut s = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 && !s.ends_with('_') {
                    s.push('_');
                }
                s.push(c.to_ascii_lowercase());
            } else if c.is_ascii_alphanumeric() || c == '_' {
                s.push(c);
            } else if !s.ends_with('_') {
                s.push('_');
            }
        }
        s
    };
    let first = name.chars().next();
    let reason = match first {
        None => "it is empty".to_owned(),
        Some(c) if c.is_ascii_digit() => "it starts with a digit".to_owned(),
        Some(_) => {
            if let Some(bad) = name
                .chars()
                .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
            {
                if bad.is_ascii_uppercase() {
                    "it contains an uppercase letter (names must be snake_case)".to_owned()
                } else {
                    format!("it contains {bad:?} (only a-z, 0-9 and _ are allowed)")
                }
            } else if name.starts_with('_') {
                "it starts with an underscore".to_owned()
            } else if RUST_KEYWORDS.contains(&name) {
                return Some((
                    "it is a Rust keyword, so generated code could not use it as a name".to_owned(),
                    format!("rename it, e.g. `{name}_name` or a more specific word"),
                ));
            } else {
                return None;
            }
        }
    };
    let help = if suggestion.is_empty()
        || suggestion == name
        || suggestion.starts_with(|c: char| c.is_ascii_digit() || c == '_')
    {
        "use a snake_case name that starts with a letter a-z".to_owned()
    } else {
        format!("use a snake_case name, e.g. `{suggestion}`")
    };
    Some((reason, help))
}

fn type_name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_uppercase() => {}
        _ => return Some("it must start with an uppercase letter (UpperCamelCase)".to_owned()),
    }
    chars
        .find(|c| !c.is_ascii_alphanumeric())
        .map(|c| format!("it contains {c:?} (only A-Z, a-z and 0-9 are allowed)"))
}

fn type_alias(name: &str) -> Option<&'static str> {
    Some(match name {
        "str" | "text" => "string",
        "int" | "i64" | "u64" | "long" => "integer",
        "float" | "f64" | "double" | "decimal" => "number",
        "bool" => "boolean",
        "dict" | "map" | "table" | "json" => "object",
        "list" | "vec" | "sequence" => "array",
        _ => return None,
    })
}

/// A template error: byte range in the template, message, help.
type TemplateError = (Range<usize>, String, String);

struct Placeholder {
    name: String,
    range: Range<usize>,
    optional: bool,
}

/// Parses `{arg}` / `{/arg}` placeholders. Errors are (byte range, message, help).
fn parse_template(
    s: &str,
    allow_optional: bool,
) -> Result<(Template, Vec<Placeholder>), TemplateError> {
    let mut parts = Vec::new();
    let mut holders = Vec::new();
    let mut literal = String::new();
    let mut rest = s.char_indices().peekable();
    while let Some((i, c)) = rest.next() {
        match c {
            '{' => {
                let Some(end) = s.get(i..).and_then(|t| t.find('}')).map(|e| e + i) else {
                    return Err((
                        i..s.len(),
                        "unclosed `{` in template".to_owned(),
                        "close the placeholder with `}`".to_owned(),
                    ));
                };
                let inner = s.get(i + 1..end).unwrap_or_default();
                let (optional, name) = match inner.strip_prefix('/') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                if optional && !allow_optional {
                    return Err((
                        i..end + 1,
                        format!(
                            "`{{/{name}}}` (an optional path segment) is only allowed in `http.path`"
                        ),
                        format!("write `{{{name}}}`"),
                    ));
                }
                if name.is_empty() || name.contains('{') {
                    return Err((
                        i..end + 1,
                        format!("`{{{inner}}}` is not a placeholder"),
                        "a placeholder is an argument name in braces, e.g. `{entity_id}`"
                            .to_owned(),
                    ));
                }
                if !literal.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
                }
                parts.push(if optional {
                    TemplatePart::OptionalSegment(name.to_owned())
                } else {
                    TemplatePart::Arg(name.to_owned())
                });
                holders.push(Placeholder {
                    name: name.to_owned(),
                    range: i..end + 1,
                    optional,
                });
                while rest.peek().is_some_and(|(j, _)| *j <= end) {
                    rest.next();
                }
            }
            '}' => {
                return Err((
                    i..i + 1,
                    "unmatched `}` in template".to_owned(),
                    "remove it, or open the placeholder with `{`".to_owned(),
                ));
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(TemplatePart::Literal(literal));
    }
    Ok((
        Template {
            source: s.to_owned(),
            parts,
        },
        holders,
    ))
}

fn regex_message(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or(text)
}

/// Parses an argument (or type field) table.
fn parse_arg(
    ctx: &mut Ctx<'_>,
    name: &Spanned<String>,
    value: &Value<'_>,
    owner: &str,
) -> Option<Arg> {
    let what = format!("argument `{}` of {owner}", name.get_ref());
    let table = ctx.table(value, &what)?;
    ctx.check_keys(table, ARG_KEYS, &what);
    if let Some((reason, help)) = ident_problem(name.get_ref()) {
        ctx.error(
            name.span(),
            format!("invalid name for {what}: {reason}"),
            help,
        );
    }
    let required = match get(table, "required") {
        Some(v) => ctx
            .bool(v, &format!("`required` of {what}"))
            .unwrap_or(true),
        None => true,
    };
    let description = get(table, "description")
        .and_then(|v| {
            ctx.string(
                v,
                &format!("`description` of {what}"),
                "\"What the argument is.\"",
            )
        })
        .unwrap_or_default();

    let Some(type_value) = get(table, "type") else {
        ctx.error(
            value.span(),
            format!("{what} has no `type`"),
            format!("add `type = \"...\"`, one of {}", TYPE_NAMES.join(", ")),
        );
        return None;
    };
    let type_name = ctx.string(type_value, &format!("`type` of {what}"), "\"string\"")?;

    let pattern_v = get(table, "pattern");
    let enum_v = get(table, "enum");
    let items_v = get(table, "items");
    let forbid_v = get(table, "forbid_keys");
    let or_list_v = get(table, "or_list");
    let only = |ctx: &mut Ctx<'_>, v: Option<&Value<'_>>, key: &str, applies: &str| {
        if let Some(v) = v {
            ctx.error(
                v.span(),
                format!("`{key}` only applies to {applies} arguments, but {what} is of type `{type_name}`"),
                format!("remove `{key}`, or change the type"),
            );
        }
    };

    let kind = match type_name.as_str() {
        "string" => {
            let pattern = pattern_v.and_then(|v| {
                let p = ctx.string(v, &format!("`pattern` of {what}"), "\"^[a-z0-9_]+$\"")?;
                match Pattern::new(&p) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        ctx.error(
                            v.span(),
                            format!("invalid regex in `pattern` of {what}: {}", regex_message(&e)),
                            "fix the regular expression (Rust `regex` syntax; backslashes must be doubled in a basic TOML string, or use a 'literal string')",
                        );
                        None
                    }
                }
            });
            let enum_values = enum_v.and_then(|v| {
                let list = ctx.string_list(v, &format!("`enum` of {what}"), "[\"on\", \"off\"]")?;
                if list.is_empty() {
                    ctx.error(
                        v.span(),
                        format!("`enum` of {what} is empty: no value could ever be accepted"),
                        "list the allowed values, or remove `enum`",
                    );
                    return None;
                }
                let mut seen: Vec<&str> = Vec::new();
                for item in &list {
                    if seen.contains(&item.get_ref().as_str()) {
                        ctx.error(
                            item.span(),
                            format!("`enum` of {what} lists {:?} twice", item.get_ref()),
                            "remove the duplicate",
                        );
                    }
                    seen.push(item.get_ref());
                }
                Some(list.into_iter().map(Spanned::into_inner).collect())
            });
            only(ctx, items_v, "items", "array");
            only(ctx, forbid_v, "forbid_keys", "object");
            let or_list = or_list_v
                .and_then(|v| ctx.bool(v, &format!("`or_list` of {what}")))
                .unwrap_or(false);
            ArgType::String {
                pattern,
                enum_values,
                or_list,
            }
        }
        "integer" | "number" | "boolean" => {
            only(ctx, pattern_v, "pattern", "string");
            only(ctx, enum_v, "enum", "string");
            only(ctx, items_v, "items", "array");
            only(ctx, forbid_v, "forbid_keys", "object");
            only(ctx, or_list_v, "or_list", "string");
            match type_name.as_str() {
                "integer" => ArgType::Integer,
                "number" => ArgType::Number,
                _ => ArgType::Boolean,
            }
        }
        "object" => {
            only(ctx, pattern_v, "pattern", "string");
            only(ctx, enum_v, "enum", "string");
            only(ctx, items_v, "items", "array");
            only(ctx, or_list_v, "or_list", "string");
            let forbid_keys = forbid_v
                .and_then(|v| {
                    ctx.string_list(v, &format!("`forbid_keys` of {what}"), "[\"entity_id\"]")
                })
                .map(|l| l.into_iter().map(Spanned::into_inner).collect())
                .unwrap_or_default();
            ArgType::Object { forbid_keys }
        }
        "array" => {
            only(ctx, pattern_v, "pattern", "string");
            only(ctx, enum_v, "enum", "string");
            only(ctx, forbid_v, "forbid_keys", "object");
            only(ctx, or_list_v, "or_list", "string");
            let Some(items_v) = items_v else {
                ctx.error(
                    type_value.span(),
                    format!("{what} is an array but has no `items`"),
                    "add `items = \"string\"` (or integer, number, boolean)",
                );
                return None;
            };
            let items_name = ctx.string(items_v, &format!("`items` of {what}"), "\"string\"")?;
            let items = match items_name.as_str() {
                "string" => ScalarType::String,
                "integer" => ScalarType::Integer,
                "number" => ScalarType::Number,
                "boolean" => ScalarType::Boolean,
                other => {
                    ctx.error(
                        items_v.span(),
                        format!("unknown item type `{other}` for {what}"),
                        match type_alias(other).filter(|t| !matches!(*t, "object" | "array")) {
                            Some(t) => format!(
                                "did you mean `{t}`? items are string, integer, number or boolean"
                            ),
                            None => "items are string, integer, number or boolean".to_owned(),
                        },
                    );
                    return None;
                }
            };
            ArgType::Array { items }
        }
        other => {
            let help = match type_alias(other)
                .or_else(|| did_you_mean(other, TYPE_NAMES.iter().copied()))
            {
                Some(t) => format!("did you mean `{t}`?"),
                None => format!("use one of {}", TYPE_NAMES.join(", ")),
            };
            ctx.error(
                type_value.span(),
                format!("unknown type `{other}` for {what}"),
                help,
            );
            return None;
        }
    };
    Some(Arg {
        name: name.get_ref().clone(),
        kind,
        required,
        description,
        location: ctx.loc(value.span()),
    })
}

/// The valid arguments, and the names of the invalid ones (already reported).
fn parse_args(
    ctx: &mut Ctx<'_>,
    value: &Value<'_>,
    owner: &str,
    key: &str,
) -> (Vec<Arg>, Vec<String>) {
    let Some(table) = ctx.table(value, &format!("`{key}` of {owner}")) else {
        return (Vec::new(), Vec::new());
    };
    let mut out = Vec::new();
    let mut broken = Vec::new();
    for (k, v) in table.iter() {
        let name = Spanned::new(k.span(), k.get_ref().to_string());
        match parse_arg(ctx, &name, v, owner) {
            Some(arg) => out.push(arg),
            None => broken.push(name.into_inner()),
        }
    }
    (out, broken)
}

struct PendingTool {
    tool: Tool,
    service_loc: Option<Location>,
    response_loc: Option<Location>,
}

fn parse_tool(ctx: &mut Ctx<'_>, name: &Spanned<String>, value: &Value<'_>) -> Option<PendingTool> {
    let tool_name = name.get_ref();
    let what = format!("tool `{tool_name}`");
    let table = ctx.table(value, &what)?;
    ctx.check_keys(table, TOOL_KEYS, &what);
    if let Some((reason, help)) = ident_problem(tool_name) {
        ctx.error(
            name.span(),
            format!("invalid tool name `{tool_name}`: {reason}"),
            help,
        );
    }

    let service = match get(table, "service") {
        Some(v) => ctx
            .string(v, &format!("`service` of {what}"), "\"homeassistant\"")
            .map(|s| (s, ctx.loc(v.span()))),
        None => {
            ctx.error(
                value.span(),
                format!("{what} has no `service`"),
                "add `service = \"<name>\"` naming a `[services.<name>]` section",
            );
            None
        }
    };
    let description = match get(table, "description") {
        Some(v) => ctx.string(
            v,
            &format!("`description` of {what}"),
            "\"What the tool does.\"",
        ),
        None => {
            ctx.error(
                value.span(),
                format!("{what} has no `description`"),
                "add `description = \"...\"`: agents read it to choose tools",
            );
            None
        }
    };
    let (args, broken_args) = get(table, "args")
        .map(|v| parse_args(ctx, v, &what, "args"))
        .unwrap_or_default();
    let arg_names: Vec<&str> = args.iter().map(|a| a.name.as_str()).collect();
    // `None` for arguments that are declared but invalid (already reported)
    let unknown_arg_help = |name: &str| {
        if broken_args.iter().any(|b| b == name) {
            return None;
        }
        Some(match did_you_mean(name, arg_names.iter().copied()) {
            Some(s) => {
                format!("did you mean `{s}`? (or declare `[tools.{tool_name}.args.{name}]`)")
            }
            None => format!(
                "declare it as `[tools.{tool_name}.args.{name}]`, or use one of: {}",
                if arg_names.is_empty() {
                    "(no arguments declared)".to_owned()
                } else {
                    arg_names.join(", ")
                }
            ),
        })
    };

    // signature
    let signature = get(table, "signature").and_then(|v| {
        let text = ctx.string(v, &format!("`signature` of {what}"), "\"{entity_id}\"")?;
        match parse_template(&text, false) {
            Err((range, msg, help)) => {
                let span = ctx.inner_span(v.span(), &text, range);
                ctx.error(span, format!("in `signature` of {what}: {msg}"), help);
                None
            }
            Ok((template, holders)) => {
                let mut ok = true;
                for h in holders {
                    let span = ctx.inner_span(v.span(), &text, h.range.clone());
                    let Some(arg) = args.iter().find(|a| a.name == h.name) else {
                        ok = false;
                        ctx.error_opt(
                            span,
                            format!("`{{{}}}` in `signature` of {what} names no argument", h.name),
                            unknown_arg_help(&h.name),
                        );
                        continue;
                    };
                    match &arg.kind {
                        ArgType::Object { .. } | ArgType::Array { .. } => {
                            ok = false;
                            ctx.error(
                                span,
                                format!(
                                    "argument `{}` of {what} is of type `{}` and cannot appear in a signature",
                                    h.name,
                                    arg.kind.type_name()
                                ),
                                "signatures take only strings with a `pattern` or `enum`, integers, numbers and booleans; remove it from `signature`",
                            );
                        }
                        ArgType::String {
                            pattern: None,
                            enum_values: None,
                            ..
                        } => {
                            ok = false;
                            ctx.error(
                                span,
                                format!(
                                    "free-text argument `{}` of {what} cannot appear in a signature",
                                    h.name
                                ),
                                format!(
                                    "add a `pattern` (e.g. `pattern = \"^[a-z0-9_.]+$\"`) or an `enum` to `[tools.{tool_name}.args.{}]`, or remove it from `signature`",
                                    h.name
                                ),
                            );
                        }
                        ArgType::String {
                            enum_values: Some(values),
                            ..
                        } => {
                            for val in values {
                                if let Some(c) = forbidden_char(val) {
                                    ok = false;
                                    ctx.error(
                                        arg.location.span.clone(),
                                        format!(
                                            "`enum` value {val:?} of argument `{}` of {what} contains {c:?}, which may not appear in a signature",
                                            h.name
                                        ),
                                        "signature values may not contain * ? [ ] { } ! ( ) , \\ or control characters; change the value",
                                    );
                                }
                            }
                        }
                        _ => {}
                    }
                }
                ok.then_some(template)
            }
        }
    });

    let response = get(table, "response").and_then(|v| {
        let text = ctx.string(
            v,
            &format!("`response` of {what}"),
            "\"State\" or \"[State]\"",
        )?;
        let (name, list) = match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            Some(inner) => (inner.trim().to_owned(), true),
            None => (text.trim().to_owned(), false),
        };
        if let Some(problem) = type_name_problem(&name) {
            ctx.error(
                v.span(),
                format!("invalid `response` {text:?} of {what}: type name {problem}"),
                "write `response = \"TypeName\"` or `response = \"[TypeName]\"` for a list",
            );
            return None;
        }
        Some((ResponseType { name, list }, ctx.loc(v.span())))
    });

    let mut hints = Hints::default();
    for (key, slot) in [
        ("read_only", &mut hints.read_only),
        ("destructive", &mut hints.destructive),
        ("idempotent", &mut hints.idempotent),
        ("open_world", &mut hints.open_world),
    ] {
        if let Some(v) = get(table, key) {
            *slot = ctx.bool(v, &format!("`{key}` of {what}"));
        }
    }

    let http = match get(table, "http") {
        Some(v) => parse_http(ctx, v, &what, tool_name, &args, &unknown_arg_help),
        None => {
            ctx.error(
                value.span(),
                format!("{what} has no `http` mapping"),
                "add e.g. `http = { method = \"GET\", path = \"/api/...\" }`",
            );
            None
        }
    };

    let targets = get(table, "targets")
        .and_then(|v| parse_targets(ctx, v, &what, &args, signature.as_ref(), &unknown_arg_help));
    // a list-valued argument may appear in the signature only as the targets' slot, which is
    // rendered once per item
    if let Some(template) = &signature {
        for part in &template.parts {
            let TemplatePart::Arg(name) = part else {
                continue;
            };
            let Some(arg) = args.iter().find(|a| a.name == *name) else {
                continue;
            };
            let or_list = matches!(arg.kind, ArgType::String { or_list: true, .. });
            let is_slot = targets.as_ref().is_some_and(|t| t.slot == *name);
            if or_list && !is_slot {
                ctx.error(
                    arg.location.span.clone(),
                    format!(
                        "argument `{name}` of {what} accepts a list (`or_list = true`) and is in the signature, but is not the `slot` of `[tools.{tool_name}.targets]`"
                    ),
                    format!(
                        "declare `[tools.{tool_name}.targets]` with `slot = \"{name}\"` so every item is judged, or remove `or_list`"
                    ),
                );
            }
        }
    }

    // every argument must go somewhere
    if let Some(http) = &http {
        for arg in &args {
            let used = http.path.parts.iter().any(|p| {
                matches!(p, TemplatePart::Arg(n) | TemplatePart::OptionalSegment(n) if *n == arg.name)
            }) || http.query.iter().any(|(_, a)| *a == arg.name)
                || http.flags.iter().any(|(_, a)| *a == arg.name)
                || http.body.contains(&arg.name)
                || http.body_merge.as_deref() == Some(arg.name.as_str());
            if !used {
                ctx.error(
                    arg.location.span.clone(),
                    format!(
                        "argument `{}` of {what} is not used by the HTTP request (not in `path`, `query`, `flags`, `body` nor `body_merge`), so its value would be silently dropped",
                        arg.name
                    ),
                    format!(
                        "use it in `http` (e.g. `body = [\"{}\"]`), or remove the argument",
                        arg.name
                    ),
                );
            }
        }
    }

    let (service, service_loc) = service.map(|(s, l)| (s, Some(l))).unwrap_or_default();
    let (response, response_loc) = match response {
        Some((r, l)) => (Some(r), Some(l)),
        None => (None, None),
    };
    let tool = Tool {
        name: tool_name.clone(),
        service,
        description: description?,
        args,
        signature,
        http: http?,
        response,
        targets,
        hints,
        location: ctx.loc(value.span()),
    };
    Some(PendingTool {
        tool,
        service_loc,
        response_loc,
    })
}

/// The type of an argument as errors name it (`string or list` for `or_list` strings).
fn kind_label(kind: &ArgType) -> &'static str {
    if kind.accepts_list() {
        "string or list (or_list = true)"
    } else {
        kind.type_name()
    }
}

/// `[tools.<name>.targets]`: which arguments carry what a call affects.
fn parse_targets(
    ctx: &mut Ctx<'_>,
    value: &Value<'_>,
    what: &str,
    args: &[Arg],
    signature: Option<&Template>,
    unknown_arg_help: &dyn Fn(&str) -> Option<String>,
) -> Option<Targets> {
    let owner = format!("`targets` of {what}");
    let table = ctx.table(value, &owner)?;
    ctx.check_keys(table, TARGETS_KEYS, &owner);
    let mut ok = true;
    let arg_named = |ctx: &mut Ctx<'_>, v: &Value<'_>, name: &str, key: &str| -> bool {
        if args.iter().any(|a| a.name == name) {
            true
        } else {
            ctx.error_opt(
                v.span(),
                format!("`{key}` of {owner} names no argument: `{name}`"),
                unknown_arg_help(name),
            );
            false
        }
    };
    let slot = match get(table, "slot") {
        Some(v) => {
            let name = ctx.string(v, &format!("`slot` of {owner}"), "\"entity_id\"")?;
            if !arg_named(ctx, v, &name, "slot") {
                return None;
            }
            let in_signature = signature.is_some_and(|t| {
                t.parts
                    .iter()
                    .any(|p| matches!(p, TemplatePart::Arg(n) if *n == name))
            });
            if !in_signature {
                ok = false;
                ctx.error(
                    v.span(),
                    format!(
                        "`slot` `{name}` of {owner} is not a placeholder of the tool's `signature`"
                    ),
                    format!("add `{{{name}}}` to `signature`: each target is judged in its place"),
                );
            }
            name
        }
        None => {
            ctx.error(
                value.span(),
                format!("{owner} has no `slot`"),
                "add `slot = \"<argument>\"`: the signature placeholder each target fills",
            );
            return None;
        }
    };
    let scanned: Vec<String> = match get(table, "args") {
        Some(v) => {
            let list = ctx.string_list(
                v,
                &format!("`args` of {owner}"),
                "[\"entity_id\", \"data\"]",
            )?;
            for name in &list {
                if !arg_named(ctx, v, name.get_ref(), "args") {
                    ok = false;
                }
            }
            list.into_iter().map(Spanned::into_inner).collect()
        }
        None => vec![slot.clone()],
    };
    if !scanned.contains(&slot) {
        ok = false;
        ctx.error(
            value.span(),
            format!("`args` of {owner} does not list the slot `{slot}`"),
            format!("add \"{slot}\" to `args`: the slot's own value is a target too"),
        );
    }
    let pattern = match get(table, "pattern") {
        Some(v) => {
            let text = ctx.string(
                v,
                &format!("`pattern` of {owner}"),
                "'^[a-z0-9_]+\\.[a-z0-9_]+$'",
            )?;
            match Pattern::new(&text) {
                Ok(p) => p,
                Err(e) => {
                    ctx.error(
                        v.span(),
                        format!(
                            "invalid regex in `pattern` of {owner}: {}",
                            regex_message(&e)
                        ),
                        "fix the regular expression (Rust `regex` syntax)",
                    );
                    return None;
                }
            }
        }
        None => {
            ctx.error(
                value.span(),
                format!("{owner} has no `pattern`"),
                "add `pattern = '...'`: what a target looks like, e.g. '^[a-z0-9_]+\\.[a-z0-9_]+$'",
            );
            return None;
        }
    };
    let lowercase = get(table, "lowercase")
        .and_then(|v| ctx.bool(v, &format!("`lowercase` of {owner}")))
        .unwrap_or(false);
    let separator = get(table, "separator").and_then(|v| {
        let text = ctx.string(v, &format!("`separator` of {owner}"), "\",\"")?;
        if text.is_empty() {
            ctx.error(
                v.span(),
                format!("`separator` of {owner} is empty"),
                "give the text between targets, e.g. \",\", or remove `separator`",
            );
            return None;
        }
        Some(text)
    });
    let list = |ctx: &mut Ctx<'_>, key: &str, example: &str| -> Vec<String> {
        get(table, key)
            .and_then(|v| ctx.string_list(v, &format!("`{key}` of {owner}"), example))
            .map(|l| l.into_iter().map(Spanned::into_inner).collect())
            .unwrap_or_default()
    };
    let refuse_keys = list(ctx, "refuse_keys", "[\"area_id\", \"device_id\"]");
    let refuse_values = list(ctx, "refuse_values", "[\"all\", \"none\"]");
    let indirect = list(ctx, "indirect", "[\"script\", \"scene\"]");
    let dispatch = match get(table, "dispatch") {
        Some(v) => {
            let dwhat = format!("`dispatch` of {owner}");
            let dtable = ctx.table(v, &dwhat)?;
            ctx.check_keys(dtable, DISPATCH_KEYS, &dwhat);
            let arg = match get(dtable, "arg") {
                Some(av) => {
                    let name = ctx.string(av, &format!("`arg` of {dwhat}"), "\"domain\"")?;
                    if !arg_named(ctx, av, &name, "dispatch.arg") {
                        return None;
                    }
                    if name == slot {
                        ok = false;
                        ctx.error(
                            av.span(),
                            format!("`arg` of {dwhat} is the slot `{slot}` itself"),
                            "name the argument that holds the generic action, e.g. \"domain\"",
                        );
                    }
                    name
                }
                None => {
                    ctx.error(
                        v.span(),
                        format!("{dwhat} has no `arg`"),
                        "add `arg = \"<argument>\"`",
                    );
                    return None;
                }
            };
            let values = match get(dtable, "values") {
                Some(vv) => ctx
                    .string_list(vv, &format!("`values` of {dwhat}"), "[\"homeassistant\"]")?
                    .into_iter()
                    .map(Spanned::into_inner)
                    .collect(),
                None => {
                    ctx.error(
                        v.span(),
                        format!("{dwhat} has no `values`"),
                        "add `values = [\"...\"]`",
                    );
                    return None;
                }
            };
            Some(Dispatch { arg, values })
        }
        None => None,
    };
    ok.then(|| Targets {
        slot,
        args: scanned,
        pattern,
        lowercase,
        separator,
        refuse_keys,
        refuse_values,
        dispatch,
        indirect,
        location: ctx.loc(value.span()),
    })
}

fn parse_http(
    ctx: &mut Ctx<'_>,
    value: &Value<'_>,
    what: &str,
    tool_name: &str,
    args: &[Arg],
    unknown_arg_help: &dyn Fn(&str) -> Option<String>,
) -> Option<HttpMapping> {
    let hwhat = format!("`http` of {what}");
    let table = ctx.table(value, &hwhat)?;
    ctx.check_keys(table, HTTP_KEYS, &hwhat);
    let mut ok = true;

    let method = match get(table, "method") {
        None => {
            ctx.error(
                value.span(),
                format!("{hwhat} has no `method`"),
                "add `method = \"GET\"` (or POST, PUT, PATCH, DELETE)",
            );
            None
        }
        Some(v) => ctx
            .string(v, &format!("`method` of {hwhat}"), "\"GET\"")
            .and_then(|m| {
                let found = Method::ALL.iter().copied().find(|x| x.as_str() == m);
                if found.is_none() {
                    let upper = m.to_ascii_uppercase();
                    let help = if Method::ALL.iter().any(|x| x.as_str() == upper) {
                        format!("write it in upper case: `\"{upper}\"`")
                    } else {
                        "use one of GET, POST, PUT, PATCH, DELETE".to_owned()
                    };
                    ctx.error(
                        v.span(),
                        format!("unknown HTTP method {m:?} in {hwhat}"),
                        help,
                    );
                }
                found
            }),
    };

    let find_arg = |name: &str| args.iter().find(|a| a.name == name);

    let path = match get(table, "path") {
        None => {
            ctx.error(value.span(), format!("{hwhat} has no `path`"), "add `path = \"/api/...\"`");
            None
        }
        Some(v) => ctx.string(v, &format!("`path` of {hwhat}"), "\"/api/states/{entity_id}\"").and_then(|text| {
            if !text.starts_with('/') {
                ctx.error(v.span(), format!("`path` of {hwhat} must start with `/`"), format!("write `\"/{}\"`; the service's base URL comes from config.yaml", text.trim_start_matches('/')));
                return None;
            }
            let (template, holders) = match parse_template(&text, true) {
                Ok(t) => t,
                Err((range, msg, help)) => {
                    let span = ctx.inner_span(v.span(), &text, range);
                    ctx.error(span, format!("in `path` of {hwhat}: {msg}"), help);
                    return None;
                }
            };
            let mut good = true;
            for part in &template.parts {
                if let TemplatePart::Literal(l) = part
                    && let Some(c) = l.chars().find(|c| matches!(c, '?' | '#') || c.is_whitespace() || c.is_control())
                {
                        good = false;
                        ctx.error(v.span(), format!("`path` of {hwhat} contains {c:?}"), if c == '?' { "put query parameters in `query = { param = \"arg\" }`" } else { "remove it; the path must be a plain URL path" });
                        break;
                    }
            }
            for h in holders {
                let span = ctx.inner_span(v.span(), &text, h.range.clone());
                let shown = if h.optional { format!("{{/{}}}", h.name) } else { format!("{{{}}}", h.name) };
                let Some(arg) = find_arg(&h.name) else {
                    good = false;
                    ctx.error_opt(span, format!("`{shown}` in `path` of {hwhat} names no argument"), unknown_arg_help(&h.name));
                    continue;
                };
                if !arg.kind.is_scalar() {
                    good = false;
                    ctx.error(span.clone(), format!("argument `{}` of {what} is of type `{}` and cannot appear in a path", h.name, kind_label(&arg.kind)), "put it in `body` instead");
                }
                if h.optional && arg.required {
                    good = false;
                    ctx.error(span, format!("`{shown}` in `path` of {hwhat} is an optional segment, but argument `{}` is required", h.name), format!("write `{{{}}}` for a required argument, or set `required = false` on it", h.name));
                } else if !h.optional && !arg.required {
                    good = false;
                    ctx.error(span, format!("`{shown}` in `path` of {hwhat} names optional argument `{}`, which may be absent", h.name), format!("write `{{/{}}}` (an optional segment: `/value` when given, nothing otherwise), or make the argument required", h.name));
                }
            }
            good.then_some(template)
        }),
    };

    let mut query = Vec::new();
    if let Some(v) = get(table, "query") {
        if let Some(qt) = ctx.table(v, &format!("`query` of {hwhat}")) {
            for (param, av) in qt.iter() {
                let Some(arg_name) = ctx.string(
                    av,
                    &format!("query parameter `{}` of {hwhat}", param.get_ref()),
                    "\"entity_id\"",
                ) else {
                    ok = false;
                    continue;
                };
                match find_arg(&arg_name) {
                    None => {
                        ok = false;
                        ctx.error_opt(
                            av.span(),
                            format!(
                                "query parameter `{}` of {hwhat} names no argument `{arg_name}`",
                                param.get_ref()
                            ),
                            unknown_arg_help(&arg_name),
                        );
                    }
                    Some(arg) if !arg.kind.is_scalar() && !arg.kind.accepts_list() => {
                        ok = false;
                        ctx.error(av.span(), format!("argument `{arg_name}` of {what} is of type `{}` and cannot be a query parameter", kind_label(&arg.kind)), "query parameters take strings (a list of them with `or_list = true`), integers, numbers and booleans; put it in `body` instead");
                    }
                    Some(_) => query.push((param.get_ref().to_string(), arg_name)),
                }
            }
        } else {
            ok = false;
        }
    }

    let body_merge = get(table, "body_merge").and_then(|v| {
        let name = ctx.string(v, &format!("`body_merge` of {hwhat}"), "\"data\"")?;
        match find_arg(&name) {
            None => {
                ctx.error_opt(v.span(), format!("`body_merge` of {hwhat} names no argument `{name}`"), unknown_arg_help(&name));
                None
            }
            Some(arg) if !matches!(arg.kind, ArgType::Object { .. }) => {
                ctx.error(v.span(), format!("`body_merge` of {hwhat} names argument `{name}` of type `{}`, but only an object can be merged into the body", arg.kind.type_name()), format!("set `type = \"object\"` on `{name}`, or list it in `body` instead"));
                None
            }
            Some(_) => Some(name),
        }
    });
    if get(table, "body_merge").is_some() && body_merge.is_none() {
        ok = false;
    }

    let mut body = Vec::new();
    if let Some(v) = get(table, "body") {
        match ctx.string_list(v, &format!("`body` of {hwhat}"), "[\"entity_id\"]") {
            None => ok = false,
            Some(list) => {
                for item in list {
                    let name = item.get_ref();
                    if find_arg(name).is_none() {
                        ok = false;
                        ctx.error_opt(
                            item.span(),
                            format!("`body` of {hwhat} names no argument `{name}`"),
                            unknown_arg_help(name),
                        );
                    } else if body.contains(name) {
                        ok = false;
                        ctx.error(
                            item.span(),
                            format!("`body` of {hwhat} lists `{name}` twice"),
                            "remove the duplicate",
                        );
                    } else if body_merge.as_deref() == Some(name.as_str()) {
                        ok = false;
                        ctx.error(item.span(), format!("argument `{name}` of {what} is both in `body` and `body_merge`"), "keep it in one of them: `body` nests the object under its name, `body_merge` merges its keys");
                    } else {
                        body.push(name.clone());
                    }
                }
            }
        }
    }

    if method == Some(Method::Get) && (!body.is_empty() || body_merge.is_some()) {
        ok = false;
        ctx.error(
            value.span(),
            format!("{hwhat} is a GET request with a body"),
            "use `query` for GET requests, or another method",
        );
    }

    let decode = match get(table, "decode") {
        None => Decode::Json,
        Some(v) => match ctx
            .string(v, &format!("`decode` of {hwhat}"), "\"json\"")
            .as_deref()
        {
            Some("json") => Decode::Json,
            Some("text") => Decode::Text,
            Some(other) => {
                ok = false;
                ctx.error(
                    v.span(),
                    format!("unknown `decode` {other:?} in {hwhat}"),
                    "use \"json\" (the default) or \"text\"",
                );
                Decode::Json
            }
            None => {
                ok = false;
                Decode::Json
            }
        },
    };

    let wrap = get(table, "wrap").and_then(|v| {
        let w = ctx.string(v, &format!("`wrap` of {hwhat}"), "\"result\"")?;
        if w.is_empty() {
            ctx.error(
                v.span(),
                format!("`wrap` of {hwhat} is empty"),
                "name the key the response is returned under, e.g. `wrap = \"result\"`",
            );
            return None;
        }
        Some(w)
    });
    if get(table, "wrap").is_some() && wrap.is_none() {
        ok = false;
    }
    if decode == Decode::Text && wrap.is_none() && get(table, "wrap").is_none() {
        ok = false;
        ctx.error(value.span(), format!("{hwhat} decodes text but has no `wrap`"), "add `wrap = \"result\"`: the text is returned as `{\"result\": text}` so `data` is always an object");
    }

    let boolean_arg = |ctx: &mut Ctx, v: &Value<'_>, key: &str| -> Option<String> {
        let name = ctx.string(v, &format!("{key} of {hwhat}"), "\"return_response\"")?;
        match find_arg(&name) {
            None => {
                ctx.error_opt(
                    v.span(),
                    format!("{key} of {hwhat} names no argument `{name}`"),
                    unknown_arg_help(&name),
                );
                None
            }
            Some(arg) if !matches!(arg.kind, ArgType::Boolean) => {
                ctx.error(v.span(), format!("{key} of {hwhat} names argument `{name}` of type `{}`, but only a boolean can switch it", kind_label(&arg.kind)), format!("set `type = \"boolean\"` on `{name}`"));
                None
            }
            Some(_) => Some(name),
        }
    };

    let mut flags = Vec::new();
    if let Some(v) = get(table, "flags") {
        if let Some(ft) = ctx.table(v, &format!("`flags` of {hwhat}")) {
            for (param, av) in ft.iter() {
                match boolean_arg(ctx, av, &format!("flag `{}`", param.get_ref())) {
                    Some(name) => flags.push((param.get_ref().to_string(), name)),
                    None => ok = false,
                }
            }
        } else {
            ok = false;
        }
    }

    let wrap_unless = match get(table, "wrap_unless") {
        None => None,
        Some(v) => {
            let found = boolean_arg(ctx, v, "`wrap_unless`");
            if found.is_none() {
                ok = false;
            } else if get(table, "wrap").is_none() {
                ok = false;
                ctx.error(
                    v.span(),
                    format!("{hwhat} has `wrap_unless` but no `wrap`"),
                    "add `wrap = \"result\"`, or remove `wrap_unless`",
                );
            }
            found
        }
    };

    let mut body_const = Vec::new();
    if let Some(v) = get(table, "body_const") {
        if let Some(bt) = ctx.table(v, &format!("`body_const` of {hwhat}")) {
            for (key, cv) in bt.iter() {
                let key = key.get_ref().to_string();
                let Some(text) = ctx.string(
                    cv,
                    &format!("`body_const.{key}` of {hwhat}"),
                    "\"{{ areas() }}\"",
                ) else {
                    ok = false;
                    continue;
                };
                if find_arg(&key).is_some() {
                    ok = false;
                    ctx.error(
                        cv.span(),
                        format!("`body_const.{key}` of {hwhat} has the name of an argument"),
                        "a body key is either an argument or a constant: rename one of them",
                    );
                    continue;
                }
                body_const.push((key, text));
            }
        } else {
            ok = false;
        }
    }

    let error_help = match get(table, "error_help") {
        None => None,
        Some(v) => match ctx.string(
            v,
            &format!("`error_help` of {hwhat}"),
            "\"check {entity_id}\"",
        ) {
            None => {
                ok = false;
                None
            }
            Some(text) => match parse_template(&text, false) {
                Err((range, msg, help)) => {
                    ok = false;
                    let span = ctx.inner_span(v.span(), &text, range);
                    ctx.error(span, format!("in `error_help` of {hwhat}: {msg}"), help);
                    None
                }
                Ok((template, holders)) => {
                    let mut good = true;
                    for h in holders {
                        if find_arg(&h.name).is_none() {
                            good = false;
                            let span = ctx.inner_span(v.span(), &text, h.range.clone());
                            ctx.error_opt(
                                span,
                                format!(
                                    "`{{{}}}` in `error_help` of {hwhat} names no argument",
                                    h.name
                                ),
                                unknown_arg_help(&h.name),
                            );
                        }
                    }
                    if !good {
                        ok = false;
                    }
                    good.then_some(template)
                }
            },
        },
    };

    if method == Some(Method::Get) && !body_const.is_empty() {
        ok = false;
        ctx.error(
            value.span(),
            format!("{hwhat} is a GET request with a body"),
            "use another method for a constant body",
        );
    }

    let _ = tool_name;

    if !ok {
        return None;
    }
    Some(HttpMapping {
        method: method?,
        path: path?,
        query,
        body,
        body_merge,
        decode,
        wrap,
        flags,
        wrap_unless,
        body_const,
        error_help,
    })
}

impl Builder {
    fn file(&mut self, file: &Path, source: &str) {
        let doc = match DeTable::parse(source) {
            Ok(doc) => doc,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                self.errors.push(
                    Diagnostic::error(
                        Location::new(file, source, span),
                        format!("TOML syntax error: {}", e.message().trim_end()),
                    )
                    .with_help("fix the TOML syntax (see https://toml.io)"),
                );
                return;
            }
        };
        let mut ctx = Ctx {
            file,
            source,
            lines: LineIndex::new(source),
            errors: Vec::new(),
        };
        let root = doc.get_ref();
        ctx.check_keys(root, TOP_KEYS, "the manifest");

        if let Some(v) = get(root, "version") {
            let version = match v.get_ref() {
                DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
                _ => None,
            };
            if version != Some(1) {
                ctx.error(
                    v.span(),
                    "unsupported manifest `version`: only `version = 1` is understood",
                    "write `version = 1`, or remove the line",
                );
            }
        }

        if let Some(v) = get(root, "services")
            && let Some(t) = ctx.table(v, "`services`")
        {
            for (k, sv) in t.iter() {
                let name = k.get_ref().to_string();
                let what = format!("service `{name}`");
                let Some(st) = ctx.table(sv, &what) else {
                    continue;
                };
                ctx.check_keys(st, SERVICE_KEYS, &what);
                if let Some((reason, help)) = ident_problem(&name) {
                    ctx.error(
                        k.span(),
                        format!("invalid service name `{name}`: {reason}"),
                        help,
                    );
                }
                let description = get(st, "description")
                    .and_then(|d| {
                        ctx.string(
                            d,
                            &format!("`description` of {what}"),
                            "\"Home Assistant REST API\"",
                        )
                    })
                    .unwrap_or_default();
                let service = Service {
                    name: name.clone(),
                    description,
                    location: ctx.loc(sv.span()),
                };
                if let Some(first) = self.services.get(&name) {
                    ctx.error(
                        k.span(),
                        format!("service `{name}` is already declared at {}", first.location),
                        "declare each service once (in any one of the manifest files)",
                    );
                } else {
                    self.services.insert(name, service);
                }
            }
        }

        if let Some(v) = get(root, "types")
            && let Some(t) = ctx.table(v, "`types`")
        {
            for (k, tv) in t.iter() {
                let name = k.get_ref().to_string();
                let what = format!("type `{name}`");
                let Some(tt) = ctx.table(tv, &what) else {
                    continue;
                };
                ctx.check_keys(tt, TYPE_KEYS, &what);
                if let Some(problem) = type_name_problem(&name) {
                    ctx.error(
                        k.span(),
                        format!("invalid type name `{name}`: {problem}"),
                        "type names become Rust struct names: use UpperCamelCase, e.g. `State`",
                    );
                }
                let description = get(tt, "description")
                    .and_then(|d| {
                        ctx.string(
                            d,
                            &format!("`description` of {what}"),
                            "\"A state object.\"",
                        )
                    })
                    .unwrap_or_default();
                let fields = get(tt, "fields")
                    .map(|f| parse_args(&mut ctx, f, &what, "fields").0)
                    .unwrap_or_default();
                let def = TypeDef {
                    name: name.clone(),
                    description,
                    fields,
                    location: ctx.loc(tv.span()),
                };
                if let Some(first) = self.types.get(&name) {
                    ctx.error(
                        k.span(),
                        format!("type `{name}` is already declared at {}", first.location),
                        "declare each type once (in any one of the manifest files)",
                    );
                } else {
                    self.types.insert(name, def);
                }
            }
        }

        if let Some(v) = get(root, "tools")
            && let Some(t) = ctx.table(v, "`tools`")
        {
            for (k, tv) in t.iter() {
                let name = Spanned::new(k.span(), k.get_ref().to_string());
                let Some(pending) = parse_tool(&mut ctx, &name, tv) else {
                    continue;
                };
                if let Some(first) = self.tools.get(name.get_ref()) {
                    ctx.error(
                            k.span(),
                            format!("tool `{}` is already defined at {}", name.get_ref(), first.location),
                            "tool names must be unique across all manifest files: rename or remove one of them",
                        );
                    continue;
                }
                let tool_name = name.into_inner();
                if let Some(l) = pending.service_loc {
                    self.service_refs.push((tool_name.clone(), l));
                }
                if let Some(l) = pending.response_loc {
                    self.response_refs.push((tool_name.clone(), l));
                }
                self.tools.insert(tool_name, pending.tool);
            }
        }
        ctx.errors.sort_by_key(|d| d.span.start);
        self.errors.extend(ctx.errors);
    }

    fn finish(mut self, files: &[PathBuf]) -> Result<Loaded, ManifestError> {
        let mut cross = Vec::new();
        for (tool_name, loc) in &self.service_refs {
            let Some(tool) = self.tools.get(tool_name) else {
                continue;
            };
            if !self.services.contains_key(&tool.service) {
                let help =
                    match did_you_mean(&tool.service, self.services.keys().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "declare it with `[services.{}]` and a `description`",
                            tool.service
                        ),
                    };
                cross.push(
                    Diagnostic::error(
                        loc.clone(),
                        format!(
                            "tool `{tool_name}` uses undeclared service `{}`",
                            tool.service
                        ),
                    )
                    .with_help(help),
                );
            }
        }
        for (tool_name, loc) in &self.response_refs {
            let Some(response) = self.tools.get(tool_name).and_then(|t| t.response.as_ref()) else {
                continue;
            };
            if !self.types.contains_key(&response.name) {
                let help = match did_you_mean(&response.name, self.types.keys().map(String::as_str))
                {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "declare it with `[types.{}]` and its `fields`",
                        response.name
                    ),
                };
                cross.push(
                    Diagnostic::error(
                        loc.clone(),
                        format!(
                            "tool `{tool_name}` returns undeclared type `{}`",
                            response.name
                        ),
                    )
                    .with_help(help),
                );
            }
        }
        self.errors.extend(cross);
        if !self.errors.is_empty() {
            return Err(ManifestError {
                diagnostics: self.errors,
            });
        }
        if self.tools.is_empty() {
            let file = files
                .first()
                .map(PathBuf::as_path)
                .unwrap_or(Path::new("tools.toml"));
            self.warnings.push(
                Diagnostic::warning(
                    Location::whole_file(file),
                    "the tool manifest declares no tools: agents can call nothing",
                )
                .with_help(
                    "add `[tools.<name>]` sections, or check that the right file is configured",
                ),
            );
        }
        Ok(Loaded {
            manifest: Manifest {
                services: self.services,
                types: self.types,
                tools: self.tools,
            },
            warnings: self.warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(ident_problem("ha_get_state").is_none());
        assert!(ident_problem("x2").is_none());
        assert!(ident_problem("type").unwrap().0.contains("keyword"));
        assert!(ident_problem("GetState").unwrap().1.contains("`get_state`"));
        assert!(
            ident_problem("get-state")
                .unwrap()
                .1
                .contains("`get_state`")
        );
        assert!(ident_problem("2x").unwrap().0.contains("digit"));
        assert!(ident_problem("_x").is_some());
        assert!(ident_problem("").is_some());
    }

    #[test]
    fn templates() {
        let (t, h) = parse_template("/api/{a}/x{/b}", true).unwrap();
        assert_eq!(
            t.parts,
            vec![
                TemplatePart::Literal("/api/".into()),
                TemplatePart::Arg("a".into()),
                TemplatePart::Literal("/x".into()),
                TemplatePart::OptionalSegment("b".into()),
            ]
        );
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].range, 10..14);
        assert!(parse_template("{a", false).is_err());
        assert!(parse_template("a}", false).is_err());
        assert!(parse_template("{}", false).is_err());
        assert!(parse_template("{/a}", false).is_err());
    }
}
