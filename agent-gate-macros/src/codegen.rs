//! Code generation for `tools!`: parses the macro input, loads the manifest
//! with `agent-gate-manifest`, turns its diagnostics into compile errors and
//! emits the typed items. Uses only `proc_macro2`, so it runs in unit tests.
//!
//! What is emitted, per manifest:
//!
//! - per response type `[types.X]`: `pub struct X` (Debug, Clone, PartialEq,
//!   serde, schemars);
//! - per tool `t`: `pub struct TArgs` (the same traits; unknown fields are
//!   refused, optional args are `Option<T>` skipped when `None`) with
//!   `validate()`, an `impl agent_gate::tools::Tool for TArgs`, and, when the
//!   tool has optional arguments, a builder `pub struct TCall<'a>` with one
//!   setter per optional argument;
//! - a trait (`Tools` unless `trait = Name`) with one method per tool,
//!   implemented for `agent_gate::AgentGateClient`;
//! - `MANIFEST` (the embedded text, parsed once at run time), `MANIFEST_HASH`,
//!   `TOOL_NAMES`, `json_schema()` and `check_manifest(&client)`.
//!
//! # Compile time
//!
//! A manifest of 500 tools must add at most 2 s to `cargo check` of the
//! invoking crate (`examples/bench_compile_time.rs`), so the expansion is
//! built for the compiler's sake:
//!
//! - Nothing is derived. The trait impls are written out as one-line bodies
//!   that call generic helpers in `agent_gate::__private` (the same for every
//!   struct, type-checked once in `agent-gate`): serde's derives alone made up
//!   most of the cost. The JSON Schema is the manifest crate's, embedded as
//!   JSON text.
//! - Every path goes through one alias, `use ::agent_gate::__private as
//!   __agent_gate;`, which re-exports the std, serde and schemars items the
//!   code names, so names in the invoking crate never shadow them.
//! - The code is written as Rust source text and handed to the compiler's
//!   lexer once, rather than built token by token with `quote!` (which
//!   crosses the proc-macro bridge for every token); the tokens get the call
//!   site's span.
//! - Generated methods are thin: they build the arguments struct and hand it
//!   to the generic `agent_gate::tools::ToolCall`.
//!
//! Argument and field names are snake_case identifiers (`[a-z][a-z0-9_]*`,
//! checked by the manifest crate), so local names in generated bodies that an
//! argument could shadow start with `__`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use agent_gate_manifest::{Arg, ArgType, Manifest, ManifestError, ScalarType, Tool, TypeDef};
use proc_macro2::{Span, TokenStream};
use serde_json::Value;
use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitStr, Token};

/// Methods of the generated `…Call` builders that an optional argument may
/// not be named like.
const RESERVED_SETTERS: &[&str] = &["request_id", "timeout", "options", "into_future"];

/// The parsed macro input: `"path" [, trait = Name] [,]`.
pub(crate) struct MacroInput {
    /// The manifest path as written.
    pub path: LitStr,
    /// The extension trait's name, if given.
    pub trait_name: Option<Ident>,
}

impl Parse for MacroInput {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(input.error(
                "expected the path of a tool manifest, e.g. `agent_gate::tools!(\"tools.toml\")`",
            ));
        }
        let path: LitStr = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected the path of a tool manifest as a string literal, e.g. `\"tools.toml\"`",
            )
        })?;
        let mut trait_name = None;
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            if input.peek(Token![trait]) {
                input.parse::<Token![trait]>()?;
                input.parse::<Token![=]>()?;
                if trait_name.is_some() {
                    return Err(input.error("`trait = ...` is given twice"));
                }
                trait_name = Some(input.parse::<Ident>()?);
            } else {
                return Err(input.error(
                    "unknown option; the only option is `trait = Name` (the generated trait's name)",
                ));
            }
        }
        Ok(MacroInput { path, trait_name })
    }
}

/// How to emit one manifest.
pub(crate) struct Options {
    /// The manifest path as written (used in docs and diagnostics).
    pub display_path: String,
    /// The argument of the emitted `include_str!(...)`, as Rust source.
    pub include: String,
    /// The extension trait's name.
    pub trait_name: Ident,
    /// Where errors about the manifest point.
    pub span: Span,
}

/// The expansion of `tools!`, as Rust source in three parts (in this order).
pub(crate) struct Expansion {
    /// Everything but the extension trait and its impl.
    pub items: String,
    /// The extension trait's declaration. Its method names should point at
    /// the manifest path, so that the compiler's "method defined here" notes
    /// for calls with the wrong arguments show it.
    pub trait_decl: String,
    /// The trait's impl for `AgentGateClient`.
    pub trait_impl: String,
}

impl Expansion {
    /// The whole expansion as one text.
    #[cfg(test)]
    pub fn text(&self) -> String {
        format!("{}\n{}\n{}", self.items, self.trait_decl, self.trait_impl)
    }
}

/// The macro: the expansion, or compile errors. Never panics.
pub(crate) fn tools_macro(input: TokenStream) -> Result<Expansion, TokenStream> {
    expand_input(input).map_err(|e| e.to_compile_error())
}

fn expand_input(input: TokenStream) -> syn::Result<Expansion> {
    let input: MacroInput = syn::parse2(input)?;
    let span = input.path.span();
    let written = input.path.value();
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .ok_or_else(|| {
            syn::Error::new(
                span,
                "CARGO_MANIFEST_DIR is not set; build with cargo, or give an absolute path",
            )
        })?;
    let full = dir.join(&written);
    let text = std::fs::read_to_string(&full).map_err(|e| {
        syn::Error::new(
            span,
            format!(
                "cannot read the tool manifest `{written}`: {e}\n  \
                 help: the path is relative to the crate's directory (CARGO_MANIFEST_DIR); \
                 looked for `{}`",
                full.display()
            ),
        )
    })?;
    let Some(full_str) = full.to_str() else {
        return Err(syn::Error::new(
            span,
            format!(
                "the tool manifest path `{}` is not valid UTF-8; move the manifest",
                full.display()
            ),
        ));
    };
    let manifest = load(&written, &text, span)?;
    let options = Options {
        display_path: written,
        include: lit(full_str),
        trait_name: input
            .trait_name
            .unwrap_or_else(|| Ident::new("Tools", Span::call_site())),
        span,
    };
    generate(&manifest, &options)
}

/// Parses and checks the manifest; every diagnostic becomes one compile error
/// at `span`, all of them reported together.
pub(crate) fn load(file: &str, text: &str, span: Span) -> syn::Result<Manifest> {
    Manifest::from_sources([(Path::new(file).to_path_buf(), text)])
        .map(|loaded| loaded.manifest)
        .map_err(|err| diagnostics_error(&err, span))
}

fn diagnostics_error(err: &ManifestError, span: Span) -> syn::Error {
    let mut errors = err
        .iter()
        .map(|d| syn::Error::new(span, format!("invalid tool manifest: {d}")));
    let mut first = errors
        .next()
        .unwrap_or_else(|| syn::Error::new(span, format!("invalid tool manifest: {err}")));
    for e in errors {
        first.combine(e);
    }
    first
}

/// `ha_get_state` → `HaGetState`.
pub(crate) fn upper_camel(snake: &str) -> String {
    snake
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            match chars.next() {
                Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `text` as a Rust string literal (`Debug` of a `str` is one: it escapes
/// quotes, backslashes and control characters).
fn lit(text: &str) -> String {
    format!("{text:?}")
}

/// `text` as a raw string literal (`r#"..."#`, with as many `#` as needed),
/// so embedded JSON stays readable in the expansion.
fn raw_lit(text: &str) -> String {
    let mut hashes = String::from("#");
    while text.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    format!("r{hashes}\"{text}\"{hashes}")
}

/// `#[doc = " line"]` attributes for `text` (one per line, as `/// line`
/// comments would be).
fn doc(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.is_empty() {
            out.push_str("#[doc = \"\"]");
        } else {
            let _ = write!(out, "#[doc = {}]", lit(&format!(" {line}")));
        }
    }
    out
}

fn scalar_type(s: ScalarType) -> &'static str {
    match s {
        ScalarType::String => "__agent_gate::String",
        ScalarType::Integer => "i64",
        ScalarType::Number => "f64",
        ScalarType::Boolean => "bool",
    }
}

/// The Rust type of an argument's value (without `Option`).
fn value_type(kind: &ArgType) -> String {
    match kind {
        ArgType::String { or_list: true, .. } => "__agent_gate::OneOrMany".to_owned(),
        ArgType::String { .. } => scalar_type(ScalarType::String).to_owned(),
        ArgType::Integer => scalar_type(ScalarType::Integer).to_owned(),
        ArgType::Number => scalar_type(ScalarType::Number).to_owned(),
        ArgType::Boolean => scalar_type(ScalarType::Boolean).to_owned(),
        ArgType::Object { .. } => "__agent_gate::JsonObject".to_owned(),
        ArgType::Array { items } => format!("__agent_gate::Vec<{}>", scalar_type(*items)),
    }
}

/// A short human description of an argument's type for docs.
fn type_doc(arg: &Arg) -> String {
    let base = match &arg.kind {
        ArgType::String {
            pattern: Some(p), ..
        } => format!("string matching `{}`", p.as_str()),
        ArgType::String {
            enum_values: Some(v),
            ..
        } => format!(
            "one of {}",
            v.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ArgType::String { or_list: true, .. } => "string or list of strings".to_owned(),
        ArgType::String { .. } => "string".to_owned(),
        ArgType::Integer => "integer".to_owned(),
        ArgType::Number => "number".to_owned(),
        ArgType::Boolean => "boolean".to_owned(),
        ArgType::Object { forbid_keys } if forbid_keys.is_empty() => "JSON object".to_owned(),
        ArgType::Object { forbid_keys } => format!(
            "JSON object without the keys {}",
            forbid_keys
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ArgType::Array { items } => format!("array of {}s", items.as_str()),
    };
    if arg.required {
        base
    } else {
        format!("optional {base}")
    }
}

/// A generated struct (an arguments struct or a response type): the
/// definition with documented fields (`Option<T>` when optional), and its
/// `Debug`, `Clone`, `PartialEq`, `Serialize`, `Deserialize` and
/// `JsonSchema` impls.
///
/// The impls are not derived: each body is one call of a generic helper in
/// `agent_gate::__private` (`Clone` clones field by field), which keeps large
/// manifests fast to type-check.
/// They behave like the derives would with optional fields
/// `#[serde(default, skip_serializing_if = "Option::is_none")]` and, when
/// `deny_unknown`, `#[serde(deny_unknown_fields)]` (Debug output, equality
/// and serde's error messages are the same). The schema is the manifest's
/// (`schema`), embedded as JSON text.
fn write_struct(
    out: &mut String,
    name: &str,
    struct_doc: &str,
    fields: &[Arg],
    deny_unknown: bool,
    schema: &Value,
) {
    let name_lit = lit(name);
    let keys = fields
        .iter()
        .map(|f| lit(&f.name))
        .collect::<Vec<_>>()
        .join(", ");
    let refs = |of: &str| {
        fields
            .iter()
            .map(|f| format!("&{of}.{}", f.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (self_refs, other_refs) = (refs("self"), refs("other"));

    let _ = write!(out, "{} pub struct {name} {{", doc(struct_doc));
    for f in fields {
        let doc = if f.description.is_empty() {
            doc(&format!("The `{}` value ({}).", f.name, type_doc(f)))
        } else {
            doc(&format!("{}\n\n*{}*", f.description, type_doc(f)))
        };
        let ty = value_type(&f.kind);
        if f.required {
            let _ = write!(out, "{doc} pub {}: {ty},", f.name);
        } else {
            let _ = write!(out, "{doc} pub {}: __agent_gate::Option<{ty}>,", f.name);
        }
    }
    out.push('}');

    let clones: String = fields
        .iter()
        .map(|f| format!("{0}: __agent_gate::Clone::clone(&self.{0}),", f.name))
        .collect();
    let takes: String = fields
        .iter()
        .map(|f| format!("{0}: fields.take({1}),", f.name, lit(&f.name)))
        .collect();
    let _ = write!(
        out,
        "impl __agent_gate::Debug for {name} {{
            fn fmt(&self, f: &mut __agent_gate::Formatter<'_>) -> __agent_gate::FmtResult {{
                __agent_gate::debug_struct(f, {name_lit}, &[{keys}], &[{self_refs}])
            }}
        }}
        impl __agent_gate::Clone for {name} {{
            fn clone(&self) -> Self {{
                {name} {{ {clones} }}
            }}
        }}
        impl __agent_gate::PartialEq for {name} {{
            fn eq(&self, other: &Self) -> bool {{
                __agent_gate::fields_eq(&[{self_refs}], &[{other_refs}])
            }}
        }}
        impl __agent_gate::Serialize for {name} {{
            fn serialize<S: __agent_gate::Serializer>(&self, serializer: S) -> __agent_gate::Result<S::Ok, S::Error> {{
                __agent_gate::serialize_struct(serializer, {name_lit}, &[{keys}], &[{self_refs}])
            }}
        }}
        impl<'de> __agent_gate::Deserialize<'de> for {name} {{
            fn deserialize<D: __agent_gate::Deserializer<'de>>(deserializer: D) -> __agent_gate::Result<Self, D::Error> {{
                let mut fields = __agent_gate::Fields::deserialize(deserializer, {name_lit}, &[{keys}], {deny_unknown})?;
                let value = {name} {{ {takes} }};
                fields.finish(value)
            }}
        }}
        impl __agent_gate::JsonSchema for {name} {{
            fn schema_name() -> __agent_gate::Cow<'static, str> {{
                __agent_gate::Cow::Borrowed({name_lit})
            }}
            fn schema_id() -> __agent_gate::Cow<'static, str> {{
                __agent_gate::Cow::Borrowed(__agent_gate::concat!(__agent_gate::module_path!(), {id}))
            }}
            fn json_schema(_: &mut __agent_gate::SchemaGenerator) -> __agent_gate::Schema {{
                __agent_gate::schema({schema})
            }}
        }}",
        id = lit(&format!("::{name}")),
        schema = raw_lit(&schema.to_string()),
    );
}

fn response_type(tool: &Tool) -> String {
    match &tool.response {
        Some(r) if r.list => format!("__agent_gate::Vec<{}>", r.name),
        Some(r) => r.name.clone(),
        None => "__agent_gate::Value".to_owned(),
    }
}

fn response_doc(tool: &Tool) -> String {
    match &tool.response {
        Some(r) if r.list => format!("a list of [`{}`]", r.name),
        Some(r) => format!("a [`{}`]", r.name),
        None => "the tool's JSON result (`serde_json::Value`)".to_owned(),
    }
}

fn write_type_def(out: &mut String, def: &TypeDef) {
    let struct_doc = if def.description.is_empty() {
        "A response type of the tool manifest."
    } else {
        &def.description
    };
    write_struct(
        out,
        &def.name,
        struct_doc,
        &def.fields,
        false,
        &def.json_schema(),
    );
}

/// The documentation of a tool's method.
fn method_doc(tool: &Tool, args_ident: &str, call_ident: &str) -> String {
    let description = &tool.description;
    let tool_name = &tool.name;
    let mut doc = format!("{description}\n\nCalls the tool `{tool_name}`");
    let required: Vec<&Arg> = tool.args.iter().filter(|a| a.required).collect();
    let optional: Vec<&Arg> = tool.args.iter().filter(|a| !a.required).collect();
    if required.is_empty() {
        doc.push('.');
    } else {
        doc.push_str(" with these arguments:\n");
        for a in &required {
            let _ = write!(doc, "\n- `{}` ({}): {}", a.name, type_doc(a), a.description);
        }
    }
    if !optional.is_empty() {
        let _ = write!(
            doc,
            "\n\nOptional arguments are set on the returned [`{call_ident}`] before `.await`:\n"
        );
        for a in &optional {
            let _ = write!(
                doc,
                "\n- [`.{0}(..)`]({call_ident}::{0}) ({1}): {2}",
                a.name,
                type_doc(a),
                a.description
            );
        }
    }
    let _ = write!(
        doc,
        "\n\n`.await` it for {}. The arguments are checked against the manifest \
         first ([`{args_ident}::validate`]): a bad value fails with a validation \
         error and nothing is sent.",
        response_doc(tool)
    );
    doc
}

/// Writes the items of one tool to `items`, its trait method declaration to
/// `decls` and the method's implementation to `imps`.
fn write_tool(
    tool: &Tool,
    options: &Options,
    items: &mut String,
    decls: &mut String,
    imps: &mut String,
) {
    let camel = upper_camel(&tool.name);
    let args_ident = format!("{camel}Args");
    let call_ident = format!("{camel}Call");
    let trait_name = &options.trait_name;
    let tool_name = &tool.name;
    let description = &tool.description;
    let response = response_type(tool);
    let optional: Vec<&Arg> = tool.args.iter().filter(|a| !a.required).collect();

    // The arguments struct, its impls, `validate` and the `Tool` impl.
    write_struct(
        items,
        &args_ident,
        &format!(
            "Arguments of the `{tool_name}` tool: {description}\n\n\
             Send them with [`{trait_name}::{tool_name}`] or `client.call(args)`; \
             [`validate`](Self::validate) checks them against the manifest."
        ),
        &tool.args,
        true,
        &tool.input_schema(),
    );
    // `Tool::WRAP` defaults to `None`.
    let wrap = match &tool.http.wrap {
        Some(w) => format!(
            "const WRAP: __agent_gate::Option<&'static str> = __agent_gate::Some({});",
            lit(w)
        ),
        None => String::new(),
    };
    let wrap = match &tool.http.wrap_unless {
        Some(arg) => format!(
            "{wrap} const WRAP_UNLESS: __agent_gate::Option<&'static str> = __agent_gate::Some({});",
            lit(arg)
        ),
        None => wrap,
    };
    let _ = write!(
        items,
        "impl {args_ident} {{
            {validate_doc}
            pub fn validate(&self) -> __agent_gate::Result<(), __agent_gate::Error> {{
                __agent_gate::validate(self)
            }}
        }}
        impl __agent_gate::Tool for {args_ident} {{
            const NAME: &'static str = {name};
            const DESCRIPTION: &'static str = {description};
            {wrap}
            type Response = {response};
            fn manifest() -> &'static __agent_gate::ManifestSource {{
                &MANIFEST
            }}
        }}",
        validate_doc = doc(
            "Checks the arguments against the manifest (types, required,\n\
             patterns, enums, forbidden characters and keys), with the\n\
             messages the gateway would give. Typed calls do this before\n\
             sending anything."
        ),
        name = lit(tool_name),
        description = lit(description),
    );

    // The builder of calls with optional arguments.
    if !optional.is_empty() {
        let _ = write!(
            items,
            "{} #[must_use = \"a tool call does nothing until it is awaited\"]
            pub struct {call_ident}<'a>(__agent_gate::ToolCall<'a, {args_ident}>);
            impl<'a> {call_ident}<'a> {{",
            doc(&format!(
                "A call of the `{tool_name}` tool being prepared: set optional arguments, then `.await` it.\n\n\
                 Returned by [`{trait_name}::{tool_name}`]."
            ))
        );
        for a in &optional {
            let name = &a.name;
            let setter_doc = format!(
                "Sets the optional argument `{name}` ({}): {}",
                type_doc(a),
                a.description
            );
            match &a.kind {
                ArgType::Object { .. } => {
                    let _ = write!(
                        items,
                        "{} pub fn {name}(self, {name}: impl __agent_gate::Serialize) -> Self {{
                            Self(self.0.with_object_arg({arg}, {name}, |__args, __value| __args.{name} = __agent_gate::Some(__value)))
                        }}",
                        doc(&format!(
                            "{setter_doc}\n\nAccepts anything that serialises to a JSON object \
                             (e.g. `serde_json::json!({{...}})`); anything else fails the call locally."
                        )),
                        arg = lit(name),
                    );
                }
                kind => {
                    let (ty, value) = match kind {
                        ArgType::String { or_list: true, .. } => (
                            "impl __agent_gate::Into<__agent_gate::OneOrMany>".to_owned(),
                            format!("{name}.into()"),
                        ),
                        ArgType::String { .. } => (
                            "impl __agent_gate::Into<__agent_gate::String>".to_owned(),
                            format!("{name}.into()"),
                        ),
                        kind => (value_type(kind), name.clone()),
                    };
                    let _ = write!(
                        items,
                        "{} pub fn {name}(mut self, {name}: {ty}) -> Self {{
                            if let __agent_gate::Some(__args) = self.0.args_mut() {{
                                __args.{name} = __agent_gate::Some({value});
                            }}
                            self
                        }}",
                        doc(&setter_doc)
                    );
                }
            }
        }
        let _ = write!(
            items,
            "#[doc = \" Sets the call's idempotency key (see [`agent_gate::CallOptions::request_id`]).\"]
                pub fn request_id(self, request_id: impl __agent_gate::Into<__agent_gate::String>) -> Self {{
                    Self(self.0.request_id(request_id))
                }}
                #[doc = \" Sets how long this call may take in total (see [`agent_gate::CallOptions::timeout`]).\"]
                pub fn timeout(self, timeout: __agent_gate::Duration) -> Self {{
                    Self(self.0.timeout(timeout))
                }}
                #[doc = \" Replaces the call's options.\"]
                pub fn options(self, options: __agent_gate::CallOptions) -> Self {{
                    Self(self.0.options(options))
                }}
            }}
            impl<'a> __agent_gate::IntoFuture for {call_ident}<'a> {{
                type Output = __agent_gate::Result<{response}, __agent_gate::Error>;
                type IntoFuture = __agent_gate::ToolFuture<'a, {response}>;
                fn into_future(self) -> Self::IntoFuture {{
                    self.0.into_future()
                }}
            }}"
        );
    }

    // The method: required arguments positional (strings as `impl
    // Into<String>`, objects as `impl Serialize`, converted first: a failure
    // makes the call fail locally when awaited).
    let mut params = String::new();
    let mut conversions = String::new();
    let mut inits = String::new();
    let (ret, wrap_open, wrap_close) = if optional.is_empty() {
        (
            format!("__agent_gate::ToolCall<'_, {args_ident}>"),
            String::new(),
            "",
        )
    } else {
        (format!("{call_ident}<'_>"), format!("{call_ident}("), ")")
    };
    for arg in &tool.args {
        let name = &arg.name;
        if !arg.required {
            let _ = write!(inits, "{name}: __agent_gate::None,");
            continue;
        }
        match &arg.kind {
            ArgType::String { or_list: true, .. } => {
                let _ = write!(
                    params,
                    ", {name}: impl __agent_gate::Into<__agent_gate::OneOrMany>"
                );
                let _ = write!(inits, "{name}: {name}.into(),");
            }
            ArgType::String { .. } => {
                let _ = write!(
                    params,
                    ", {name}: impl __agent_gate::Into<__agent_gate::String>"
                );
                let _ = write!(inits, "{name}: {name}.into(),");
            }
            ArgType::Object { .. } => {
                let _ = write!(params, ", {name}: impl __agent_gate::Serialize");
                let _ = write!(
                    conversions,
                    "let {name} = match __agent_gate::to_object({tool}, {arg}, {name}) {{
                        __agent_gate::Ok(object) => object,
                        __agent_gate::Err(error) => return {wrap_open}__agent_gate::ToolCall::from_result(self, __agent_gate::Err(error)){wrap_close},
                    }};",
                    tool = lit(tool_name),
                    arg = lit(name),
                );
                let _ = write!(inits, "{name},");
            }
            kind => {
                let _ = write!(params, ", {name}: {}", value_type(kind));
                let _ = write!(inits, "{name},");
            }
        }
    }
    let _ = write!(
        decls,
        "{} fn {tool_name}(&self{params}) -> {ret};",
        doc(&method_doc(tool, &args_ident, &call_ident))
    );
    let _ = write!(
        imps,
        "fn {tool_name}(&self{params}) -> {ret} {{
            {conversions}
            {wrap_open}__agent_gate::ToolCall::new(self, {args_ident} {{ {inits} }}){wrap_close}
        }}"
    );
}

/// Checks that the generated names do not clash and that no optional argument
/// is named like a call-option setter.
fn check_names(manifest: &Manifest, options: &Options) -> syn::Result<()> {
    let mut errors: Vec<syn::Error> = Vec::new();
    let mut setter_errors: Vec<syn::Error> = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let fixed = ["MANIFEST", "MANIFEST_HASH", "TOOL_NAMES"];
    for f in fixed {
        names.insert(f.to_owned(), "a generated constant".to_owned());
    }
    names.insert(
        options.trait_name.to_string(),
        "the generated trait".to_owned(),
    );
    let mut claim = |name: String, what: String| {
        if let Some(prev) = names.get(&name) {
            errors.push(syn::Error::new(
                options.span,
                format!(
                    "invalid tool manifest: {what} would be generated as `{name}`, which is already {prev}; rename one of them{}",
                    if options.trait_name == name {
                        " (or choose another trait name with `trait = Name`)"
                    } else {
                        ""
                    }
                ),
            ));
        } else {
            names.insert(name, what);
        }
    };
    for def in manifest.types() {
        claim(
            def.name.clone(),
            format!("the response type `{}` ({})", def.name, def.location),
        );
    }
    for tool in manifest.tools() {
        let camel = upper_camel(&tool.name);
        claim(
            format!("{camel}Args"),
            format!(
                "the arguments struct of tool `{}` ({})",
                tool.name, tool.location
            ),
        );
        if tool.args.iter().any(|a| !a.required) {
            claim(
                format!("{camel}Call"),
                format!(
                    "the call builder of tool `{}` ({})",
                    tool.name, tool.location
                ),
            );
        }
        for arg in tool.args.iter().filter(|a| !a.required) {
            if RESERVED_SETTERS.contains(&arg.name.as_str()) {
                setter_errors.push(syn::Error::new(
                    options.span,
                    format!(
                        "invalid tool manifest: {}: the optional argument `{}` of tool `{}` would clash with the call option method `.{}(..)` of the generated builder; rename the argument",
                        arg.location, arg.name, tool.name, arg.name
                    ),
                ));
            }
        }
    }
    errors.extend(setter_errors);
    let mut iter = errors.into_iter();
    match iter.next() {
        None => Ok(()),
        Some(mut first) => {
            for e in iter {
                first.combine(e);
            }
            Err(first)
        }
    }
}

/// Emits the items for a loaded manifest, as Rust source.
pub(crate) fn generate(manifest: &Manifest, options: &Options) -> syn::Result<Expansion> {
    check_names(manifest, options)?;
    let trait_name = &options.trait_name;
    let display_path = &options.display_path;
    let names = manifest
        .tools()
        .map(|t| lit(&t.name))
        .collect::<Vec<_>>()
        .join(", ");

    let mut out = String::with_capacity(8192 * manifest.tools().count());
    let _ = write!(
        out,
        "use ::agent_gate::__private as __agent_gate;
        {manifest_doc}
        pub static MANIFEST: __agent_gate::ManifestSource =
            __agent_gate::ManifestSource::new({path}, ::core::include_str!({include}));
        {hash_doc}
        pub const MANIFEST_HASH: &str = {hash};
        {names_doc}
        pub const TOOL_NAMES: &[&str] = &[{names}];
        {schema_doc}
        pub fn json_schema() -> __agent_gate::Result<__agent_gate::Value, __agent_gate::Error> {{
            MANIFEST.json_schema()
        }}
        {check_doc}
        pub async fn check_manifest(
            client: &__agent_gate::AgentGateClient,
        ) -> __agent_gate::Result<__agent_gate::ManifestDrift, __agent_gate::Error> {{
            __agent_gate::check_manifest(client, &MANIFEST).await
        }}",
        manifest_doc = doc(&format!(
            "The tool manifest `{display_path}` these items were generated from, \
             embedded at compile time (parsed once, on first use)."
        )),
        hash_doc = doc(
            "SHA-256 of the canonical form of the manifest the code was generated\n\
             from (`agent_gate_manifest::Manifest::hash`)."
        ),
        names_doc = doc("The names of all tools of the manifest, in declaration order."),
        schema_doc = doc(
            "The JSON Schema (2020-12) of every tool's arguments, as the gateway\n\
             publishes it (`agent_gate_manifest::Manifest::json_schema`)."
        ),
        check_doc = doc(
            "Compares the tools compiled into this program with the ones the\n\
             gateway serves (`list_tools`) and returns the differences (empty\n\
             when they agree)."
        ),
        path = lit(display_path),
        include = options.include,
        hash = lit(&manifest.hash()),
    );
    for def in manifest.types() {
        write_type_def(&mut out, def);
    }
    let mut decls = String::new();
    let mut imps = String::new();
    for tool in manifest.tools() {
        write_tool(tool, options, &mut out, &mut decls, &mut imps);
    }
    let trait_decl = format!(
        "{trait_doc} pub trait {trait_name} {{ {decls} }}",
        trait_doc = doc(&format!(
            "Typed methods for the tools of `{display_path}`, implemented for \
             [`agent_gate::AgentGateClient`]: `client.tool_name(required args)`, \
             optional arguments as builder methods, then `.await`."
        )),
    );
    Ok(Expansion {
        items: out,
        trait_decl,
        trait_impl: format!("impl {trait_name} for __agent_gate::AgentGateClient {{ {imps} }}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    /// The small manifest whose expansion is pinned (and compiled by
    /// `agent-gate/tests/macro_expansion.rs`).
    const SMALL: &str = include_str!("../../agent-gate/tests/macro_fixtures/small.toml");
    /// The pretty-printed expansion, checked in and compiled by agent-gate's tests.
    const EXPANDED_PATH: &str = "../agent-gate/tests/macro_fixtures/small_expanded.rs";

    fn expand_small() -> String {
        let manifest = load("tests/macro_fixtures/small.toml", SMALL, Span::call_site())
            .expect("small manifest loads");
        let options = Options {
            display_path: "tests/macro_fixtures/small.toml".to_owned(),
            include: "::core::concat!(::core::env!(\"CARGO_MANIFEST_DIR\"), \"/tests/macro_fixtures/small.toml\")".to_owned(),
            trait_name: Ident::new("Lights", Span::call_site()),
            span: Span::call_site(),
        };
        let code = generate(&manifest, &options).expect("expands").text();
        let file: syn::File = syn::parse_str(&code).expect("expansion parses as a file");
        prettyplease::unparse(&file)
    }

    #[test]
    fn expansion_snapshot() {
        let expanded = expand_small();
        insta::assert_snapshot!("small_manifest", expanded);
        // The same text is compiled and exercised by agent-gate's tests.
        let header = "// @generated by agent-gate-macros' `expansion_snapshot` test from small.toml.\n\
                      // Regenerate: AGENT_GATE_BLESS=1 cargo test -p agent-gate-macros\n";
        let wanted = format!("{header}{expanded}");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(EXPANDED_PATH);
        if std::env::var_os("AGENT_GATE_BLESS").is_some() {
            std::fs::write(&path, &wanted).expect("write expansion");
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == wanted,
            "{} is stale; regenerate it with `AGENT_GATE_BLESS=1 cargo test -p agent-gate-macros`",
            path.display()
        );
    }

    #[test]
    fn input_forms() {
        let i: MacroInput = syn::parse2(quote!("a.toml")).unwrap();
        assert_eq!(i.path.value(), "a.toml");
        assert!(i.trait_name.is_none());
        let i: MacroInput = syn::parse2(quote!("a.toml", trait = Api,)).unwrap();
        assert_eq!(i.trait_name.unwrap().to_string(), "Api");
        let e = syn::parse2::<MacroInput>(quote!("a.toml", crate = x))
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown option"), "{e}");
        let e = syn::parse2::<MacroInput>(quote!(a_toml)).err().unwrap();
        assert!(e.to_string().contains("string literal"), "{e}");
        let e = syn::parse2::<MacroInput>(quote!()).err().unwrap();
        assert!(e.to_string().contains("expected the path"), "{e}");
    }

    #[test]
    fn every_diagnostic_becomes_an_error() {
        let src = "[services.s]\ndescription = \"x\"\n\n[tools.a]\nservice = \"s\"\ndescripton = \"x\"\nhttp = { method = \"GET\", path = \"/a\" }\n\n[tools.b]\nservice = \"nope\"\ndescription = \"y\"\nhttp = { method = \"GET\", path = \"/b\" }\n";
        let err = load("bad.toml", src, Span::call_site()).err().unwrap();
        let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
        assert!(messages.len() >= 2, "{messages:?}");
        assert!(
            messages.iter().any(|m| m.contains("bad.toml:6:1")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("did you mean `description`")),
            "{messages:?}"
        );
    }

    #[test]
    fn name_clashes_are_errors() {
        let src = "[services.s]\ndescription = \"x\"\n\n[types.AArgs]\ndescription = \"t\"\nfields.x = { type = \"string\" }\n\n[tools.a]\nservice = \"s\"\ndescription = \"x\"\nhttp = { method = \"GET\", path = \"/a\", query = { t = \"timeout\" } }\nargs.timeout = { type = \"integer\", required = false }\n";
        let manifest = load("clash.toml", src, Span::call_site()).unwrap();
        let options = Options {
            display_path: "clash.toml".to_owned(),
            include: "\"clash.toml\"".to_owned(),
            trait_name: Ident::new("Tools", Span::call_site()),
            span: Span::call_site(),
        };
        let err = generate(&manifest, &options).err().unwrap();
        let messages: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].contains("`AArgs`"), "{messages:?}");
        assert!(messages[1].contains("`.timeout(..)`"), "{messages:?}");
    }

    #[test]
    fn camel_case() {
        assert_eq!(upper_camel("ha_get_state"), "HaGetState");
        assert_eq!(upper_camel("v2_api"), "V2Api");
        assert_eq!(upper_camel("x"), "X");
    }
}
