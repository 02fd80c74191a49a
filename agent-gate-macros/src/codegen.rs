//! Code generation for `tools!`: parses the macro input, loads the manifest
//! with `agent-gate-manifest`, turns its diagnostics into compile errors and
//! emits the typed items. Uses only `proc_macro2`, so it runs in unit tests.
//!
//! What is emitted, per manifest:
//!
//! - per response type `[types.X]`: `pub struct X` (serde + schemars);
//! - per tool `t`: `pub struct TArgs` (serde + schemars, `deny_unknown_fields`,
//!   optional args `Option<T>` skipped when `None`) with `validate()`, an
//!   `impl agent_gate::tools::Tool for TArgs`, and, when the tool has optional
//!   arguments, a builder `pub struct TCall<'a>` with one setter per optional
//!   argument;
//! - a trait (`Tools` unless `trait = Name`) with one method per tool,
//!   implemented for `agent_gate::AgentGateClient`;
//! - `MANIFEST` (the embedded text, parsed once at run time), `MANIFEST_HASH`,
//!   `TOOL_NAMES`, `json_schema()` and `check_manifest(&client)`.
//!
//! Generated methods are thin: they build the arguments struct and hand it to
//! the generic `agent_gate::tools::ToolCall`, so large manifests compile fast.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agent_gate_manifest::{Arg, ArgType, Manifest, ManifestError, ScalarType, Tool, TypeDef};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
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
    /// The argument of the emitted `include_str!(...)`.
    pub include: TokenStream,
    /// The extension trait's name.
    pub trait_name: Ident,
    /// Where errors about the manifest point.
    pub span: Span,
}

/// The macro: expansion, or compile errors. Never panics.
pub(crate) fn tools_macro(input: TokenStream) -> TokenStream {
    match expand_input(input) {
        Ok(tokens) => tokens,
        Err(e) => e.to_compile_error(),
    }
}

fn expand_input(input: TokenStream) -> syn::Result<TokenStream> {
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
    let include = LitStr::new(full_str, span);
    let options = Options {
        display_path: written,
        include: quote!(#include),
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

fn scalar_type(s: ScalarType) -> TokenStream {
    match s {
        ScalarType::String => quote!(::std::string::String),
        ScalarType::Integer => quote!(i64),
        ScalarType::Number => quote!(f64),
        ScalarType::Boolean => quote!(bool),
    }
}

/// The Rust type of an argument's value (without `Option`).
fn value_type(kind: &ArgType) -> TokenStream {
    match kind {
        ArgType::String { .. } => scalar_type(ScalarType::String),
        ArgType::Integer => scalar_type(ScalarType::Integer),
        ArgType::Number => scalar_type(ScalarType::Number),
        ArgType::Boolean => scalar_type(ScalarType::Boolean),
        ArgType::Object { .. } => quote!(::agent_gate::tools::JsonObject),
        ArgType::Array { items } => {
            let item = scalar_type(*items);
            quote!(::std::vec::Vec<#item>)
        }
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

/// `#[doc = " line"]` attributes for `text` (one per line).
fn doc_attrs(text: &str) -> TokenStream {
    let lines = text.lines().map(|l| {
        let l = if l.is_empty() {
            String::new()
        } else {
            format!(" {l}")
        };
        quote!(#[doc = #l])
    });
    quote!(#(#lines)*)
}

/// A JSON value as tokens in `serde_json::json!` syntax (what schemars'
/// `extend(...)` expects).
fn json_tokens(value: &Value) -> TokenStream {
    match value {
        Value::Null => quote!(null),
        Value::Bool(b) => quote!(#b),
        Value::Number(n) => {
            let lit = proc_macro2::Literal::f64_unsuffixed(n.as_f64().unwrap_or_default());
            if let Some(i) = n.as_i64() {
                let lit = proc_macro2::Literal::i64_unsuffixed(i);
                quote!(#lit)
            } else {
                quote!(#lit)
            }
        }
        Value::String(s) => quote!(#s),
        Value::Array(items) => {
            let items = items.iter().map(json_tokens);
            quote!([#(#items),*])
        }
        Value::Object(map) => {
            let entries = map.iter().map(|(k, v)| {
                let v = json_tokens(v);
                quote!(#k: #v)
            });
            quote!({#(#entries),*})
        }
    }
}

fn ident(name: &str, span: Span) -> Ident {
    Ident::new(name, span)
}

/// One struct field (argument or response field). `schema` is the
/// manifest's JSON Schema of the property: its `pattern`, `enum` and
/// `propertyNames` are copied so the schemars schema says the same.
fn field(arg: &Arg, schema: Option<&Value>, span: Span) -> TokenStream {
    let name = ident(&arg.name, span);
    let ty = value_type(&arg.kind);
    let description = &arg.description;
    let doc = if description.is_empty() {
        doc_attrs(&format!("The `{}` value ({}).", arg.name, type_doc(arg)))
    } else {
        doc_attrs(&format!("{description}\n\n*{}*", type_doc(arg)))
    };
    let mut schemars = vec![quote!(description = #description)];
    for key in ["pattern", "enum", "propertyNames"] {
        if let Some(v) = schema.and_then(|s| s.get(key)) {
            let v = json_tokens(v);
            schemars.push(quote!(extend(#key = #v)));
        }
    }
    if arg.required {
        quote! {
            #doc
            #[schemars(#(#schemars),*)]
            pub #name: #ty,
        }
    } else {
        let with = ty.to_string().replace(' ', "");
        quote! {
            #doc
            #[serde(default, skip_serializing_if = "::core::option::Option::is_none")]
            #[schemars(with = #with, #(#schemars),*)]
            pub #name: ::core::option::Option<#ty>,
        }
    }
}

fn response_type(tool: &Tool) -> TokenStream {
    match &tool.response {
        Some(r) => {
            let name = format_ident!("{}", r.name);
            if r.list {
                quote!(::std::vec::Vec<#name>)
            } else {
                quote!(#name)
            }
        }
        None => quote!(::agent_gate::__private::serde_json::Value),
    }
}

fn response_doc(tool: &Tool) -> String {
    match &tool.response {
        Some(r) if r.list => format!("a list of [`{}`]", r.name),
        Some(r) => format!("a [`{}`]", r.name),
        None => "the tool's JSON result (`serde_json::Value`)".to_owned(),
    }
}

fn type_def(def: &TypeDef, span: Span) -> TokenStream {
    let name = format_ident!("{}", def.name);
    let doc = doc_attrs(if def.description.is_empty() {
        "A response type of the tool manifest."
    } else {
        &def.description
    });
    let description = &def.description;
    let schema = def.json_schema();
    let fields = def
        .fields
        .iter()
        .map(|f| field(f, schema.pointer(&format!("/properties/{}", f.name)), span));
    quote! {
        #doc
        #[derive(
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::core::cmp::PartialEq,
            ::agent_gate::__private::serde::Serialize,
            ::agent_gate::__private::serde::Deserialize,
            ::agent_gate::__private::schemars::JsonSchema,
        )]
        #[serde(crate = "::agent_gate::__private::serde")]
        #[schemars(crate = "::agent_gate::__private::schemars", description = #description)]
        pub struct #name {
            #(#fields)*
        }
    }
}

/// The generated items of one tool: (items at module level, trait method
/// declaration, trait method implementation).
struct ToolItems {
    items: TokenStream,
    decl: TokenStream,
    imp: TokenStream,
}

fn tool_items(tool: &Tool, options: &Options) -> ToolItems {
    let span = options.span;
    let camel = upper_camel(&tool.name);
    let args_ident = format_ident!("{}Args", camel);
    let call_ident = format_ident!("{}Call", camel);
    let method = ident(&tool.name, span);
    let trait_name = &options.trait_name;
    let tool_name = &tool.name;
    let description = &tool.description;
    let schema = tool.input_schema();
    let response = response_type(tool);
    let wrap = match &tool.http.wrap {
        Some(w) => quote!(::core::option::Option::Some(#w)),
        None => quote!(::core::option::Option::None),
    };

    let fields = tool
        .args
        .iter()
        .map(|a| field(a, schema.pointer(&format!("/properties/{}", a.name)), span));
    let args_doc = doc_attrs(&format!(
        "Arguments of the `{tool_name}` tool: {description}\n\n\
         Send them with [`{trait_name}::{tool_name}`] or `client.call(args)`; \
         [`validate`](Self::validate) checks them against the manifest."
    ));

    let required: Vec<&Arg> = tool.args.iter().filter(|a| a.required).collect();
    let optional: Vec<&Arg> = tool.args.iter().filter(|a| !a.required).collect();

    // Positional parameters of the method and the struct initialiser.
    let mut params = Vec::new();
    let mut inits = Vec::new();
    // Object arguments are converted first; a failure makes the call fail
    // locally when awaited.
    let mut conversions = Vec::new();
    for arg in &tool.args {
        let name = ident(&arg.name, span);
        if !arg.required {
            inits.push(quote!(#name: ::core::option::Option::None));
            continue;
        }
        match &arg.kind {
            ArgType::String { .. } => {
                params.push(quote!(#name: impl ::core::convert::Into<::std::string::String>));
                inits.push(quote!(#name: #name.into()));
            }
            ArgType::Object { .. } => {
                let arg_name = &arg.name;
                params.push(quote!(#name: impl ::agent_gate::__private::serde::Serialize));
                conversions.push((name.clone(), arg_name.clone()));
                inits.push(quote!(#name));
            }
            kind => {
                let ty = value_type(kind);
                params.push(quote!(#name: #ty));
                inits.push(quote!(#name));
            }
        }
    }
    let build = quote!(::agent_gate::tools::ToolCall::new(self, #args_ident { #(#inits),* }));
    // The method body, returning the call (wrapped in its builder, if any).
    let wrap_call = |wrapper: Option<&Ident>| -> TokenStream {
        let wrap = |call: TokenStream| match wrapper {
            Some(w) => quote!(#w(#call)),
            None => call,
        };
        let conversions = conversions.iter().map(|(name, arg_name)| {
            let fail = wrap(quote!(::agent_gate::tools::ToolCall::from_result(
                self,
                ::core::result::Result::Err(error),
            )));
            quote! {
                let #name = match ::agent_gate::__private::to_object(#tool_name, #arg_name, #name) {
                    ::core::result::Result::Ok(object) => object,
                    ::core::result::Result::Err(error) => return #fail,
                };
            }
        });
        let build = wrap(build.clone());
        quote!(#(#conversions)* #build)
    };

    // The method's documentation.
    let mut method_doc = format!("{description}\n\nCalls the tool `{tool_name}`");
    if required.is_empty() {
        method_doc.push('.');
    } else {
        method_doc.push_str(" with these arguments:\n");
        for a in &required {
            method_doc.push_str(&format!(
                "\n- `{}` ({}): {}",
                a.name,
                type_doc(a),
                a.description
            ));
        }
    }
    if !optional.is_empty() {
        method_doc.push_str(&format!(
            "\n\nOptional arguments are set on the returned [`{call_ident}`] before `.await`:\n"
        ));
        for a in &optional {
            method_doc.push_str(&format!(
                "\n- [`.{0}(..)`]({call_ident}::{0}) ({1}): {2}",
                a.name,
                type_doc(a),
                a.description
            ));
        }
    }
    method_doc.push_str(&format!(
        "\n\n`.await` it for {}. The arguments are checked against the manifest \
         first ([`{args_ident}::validate`]): a bad value fails with a validation \
         error and nothing is sent.",
        response_doc(tool)
    ));
    let method_doc = doc_attrs(&method_doc);

    let (ret, body, call_items) = if optional.is_empty() {
        (
            quote!(::agent_gate::tools::ToolCall<'_, #args_ident>),
            wrap_call(None),
            TokenStream::new(),
        )
    } else {
        let setters = optional.iter().map(|a| {
            let name = ident(&a.name, span);
            let doc = doc_attrs(&format!(
                "Sets the optional argument `{}` ({}): {}",
                a.name,
                type_doc(a),
                a.description
            ));
            let arg_name = &a.name;
            match &a.kind {
                ArgType::String { .. } => quote! {
                    #doc
                    pub fn #name(self, #name: impl ::core::convert::Into<::std::string::String>) -> Self {
                        Self(self.0.with_args(move |a| a.#name = ::core::option::Option::Some(#name.into())))
                    }
                },
                ArgType::Object { .. } => quote! {
                    #doc
                    ///
                    /// Accepts anything that serialises to a JSON object (e.g. `serde_json::json!({...})`);
                    /// anything else fails the call locally.
                    pub fn #name(self, #name: impl ::agent_gate::__private::serde::Serialize) -> Self {
                        Self(self.0.with_object_arg(#arg_name, #name, |a, v| a.#name = ::core::option::Option::Some(v)))
                    }
                },
                kind => {
                    let ty = value_type(kind);
                    quote! {
                        #doc
                        pub fn #name(self, #name: #ty) -> Self {
                            Self(self.0.with_args(move |a| a.#name = ::core::option::Option::Some(#name)))
                        }
                    }
                }
            }
        });
        let call_doc = doc_attrs(&format!(
            "A call of the `{tool_name}` tool being prepared: set optional arguments, then `.await` it.\n\n\
             Returned by [`{trait_name}::{tool_name}`]."
        ));
        let items = quote! {
            #call_doc
            #[must_use = "a tool call does nothing until it is awaited"]
            pub struct #call_ident<'a>(::agent_gate::tools::ToolCall<'a, #args_ident>);

            impl<'a> #call_ident<'a> {
                #(#setters)*

                /// Sets the call's idempotency key (see [`agent_gate::CallOptions::request_id`]).
                pub fn request_id(self, request_id: impl ::core::convert::Into<::std::string::String>) -> Self {
                    Self(self.0.request_id(request_id))
                }

                /// Sets how long this call may take in total (see [`agent_gate::CallOptions::timeout`]).
                pub fn timeout(self, timeout: ::core::time::Duration) -> Self {
                    Self(self.0.timeout(timeout))
                }

                /// Replaces the call's options.
                pub fn options(self, options: ::agent_gate::CallOptions) -> Self {
                    Self(self.0.options(options))
                }
            }

            impl<'a> ::core::future::IntoFuture for #call_ident<'a> {
                type Output = ::core::result::Result<#response, ::agent_gate::Error>;
                type IntoFuture = ::agent_gate::tools::ToolFuture<'a, #response>;

                fn into_future(self) -> Self::IntoFuture {
                    self.0.into_future()
                }
            }
        };
        (quote!(#call_ident<'_>), wrap_call(Some(&call_ident)), items)
    };

    let items = quote! {
        #args_doc
        #[derive(
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::core::cmp::PartialEq,
            ::agent_gate::__private::serde::Serialize,
            ::agent_gate::__private::serde::Deserialize,
            ::agent_gate::__private::schemars::JsonSchema,
        )]
        #[serde(crate = "::agent_gate::__private::serde", deny_unknown_fields)]
        #[schemars(crate = "::agent_gate::__private::schemars", description = #description)]
        pub struct #args_ident {
            #(#fields)*
        }

        impl #args_ident {
            /// Checks the arguments against the manifest (types, required,
            /// patterns, enums, forbidden characters and keys), with the
            /// messages the gateway would give. Typed calls do this before
            /// sending anything.
            pub fn validate(&self) -> ::core::result::Result<(), ::agent_gate::Error> {
                ::agent_gate::tools::validate(self)
            }
        }

        impl ::agent_gate::tools::Tool for #args_ident {
            const NAME: &'static str = #tool_name;
            const DESCRIPTION: &'static str = #description;
            const WRAP: ::core::option::Option<&'static str> = #wrap;
            type Response = #response;

            fn manifest() -> &'static ::agent_gate::tools::ManifestSource {
                &MANIFEST
            }
        }

        #call_items
    };
    let decl = quote! {
        #method_doc
        fn #method(&self, #(#params),*) -> #ret;
    };
    let imp = quote! {
        fn #method(&self, #(#params),*) -> #ret {
            #body
        }
    };
    ToolItems { items, decl, imp }
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

/// Emits the items for a loaded manifest.
pub(crate) fn generate(manifest: &Manifest, options: &Options) -> syn::Result<TokenStream> {
    check_names(manifest, options)?;
    let span = options.span;
    let trait_name = &options.trait_name;
    let display_path = &options.display_path;
    let include = &options.include;
    let hash = manifest.hash();

    let types = manifest.types().map(|d| type_def(d, span));
    let tools: Vec<ToolItems> = manifest.tools().map(|t| tool_items(t, options)).collect();
    let items = tools.iter().map(|t| &t.items);
    let decls = tools.iter().map(|t| &t.decl);
    let imps = tools.iter().map(|t| &t.imp);
    let names = manifest.tools().map(|t| t.name.as_str());

    let trait_doc = doc_attrs(&format!(
        "Typed methods for the tools of `{display_path}`, implemented for \
         [`agent_gate::AgentGateClient`]: `client.tool_name(required args)`, \
         optional arguments as builder methods, then `.await`."
    ));
    let manifest_doc = doc_attrs(&format!(
        "The tool manifest `{display_path}` these items were generated from, \
         embedded at compile time (parsed once, on first use)."
    ));

    Ok(quote! {
        #manifest_doc
        pub static MANIFEST: ::agent_gate::tools::ManifestSource =
            ::agent_gate::tools::ManifestSource::new(#display_path, ::core::include_str!(#include));

        /// SHA-256 of the canonical form of the manifest the code was generated
        /// from (`agent_gate_manifest::Manifest::hash`).
        pub const MANIFEST_HASH: &str = #hash;

        /// The names of all tools of the manifest, in declaration order.
        pub const TOOL_NAMES: &[&str] = &[#(#names),*];

        /// The JSON Schema (2020-12) of every tool's arguments, as the gateway
        /// publishes it (`agent_gate_manifest::Manifest::json_schema`).
        pub fn json_schema() -> ::core::result::Result<::agent_gate::__private::serde_json::Value, ::agent_gate::Error> {
            MANIFEST.json_schema()
        }

        /// Compares the tools compiled into this program with the ones the
        /// gateway serves (`list_tools`) and returns the differences (empty
        /// when they agree).
        pub async fn check_manifest(
            client: &::agent_gate::AgentGateClient,
        ) -> ::core::result::Result<::agent_gate::tools::ManifestDrift, ::agent_gate::Error> {
            ::agent_gate::tools::check_manifest(client, &MANIFEST).await
        }

        #(#types)*

        #(#items)*

        #trait_doc
        pub trait #trait_name {
            #(#decls)*
        }

        impl #trait_name for ::agent_gate::AgentGateClient {
            #(#imps)*
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            include: quote!(::core::concat!(
                ::core::env!("CARGO_MANIFEST_DIR"),
                "/tests/macro_fixtures/small.toml"
            )),
            trait_name: Ident::new("Lights", Span::call_site()),
            span: Span::call_site(),
        };
        let tokens = generate(&manifest, &options).expect("expands");
        let file: syn::File = syn::parse2(tokens).expect("expansion parses as a file");
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
            include: quote!("clash.toml"),
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

    #[test]
    fn json_tokens_round_trip() {
        let v = serde_json::json!({"not": {"enum": ["a", "b"]}, "n": 1, "f": 1.5, "b": true, "z": null});
        let tokens = json_tokens(&v).to_string();
        assert_eq!(
            tokens,
            r#"{ "not" : { "enum" : ["a" , "b"] } , "n" : 1 , "f" : 1.5 , "b" : true , "z" : null }"#
        );
    }
}
