//! Procedural macros for agent-gate: [`tools!`] reads a tool manifest
//! (`tools.toml`) at compile time and generates typed, schema-checked Rust
//! code for every tool in it.
//!
//! Use the macro through the SDK (`agent_gate::tools!`): the generated code
//! refers to `::agent_gate` for its runtime support, and reaches serde,
//! serde_json and schemars only through `agent_gate::__private`, so the
//! invoking crate needs no dependency other than `agent-gate`.
//!
//! The code generation lives in the `codegen` module, which uses only
//! `proc_macro2`, so its unit tests (expansion snapshots) run as ordinary
//! tests.

#![warn(missing_docs)]

mod codegen;

/// Generates typed tool methods, argument structs and response types from a
/// tool manifest.
///
/// ```ignore
/// agent_gate::tools!("tools.toml");
/// agent_gate::tools!("manifests/my_api.toml", trait = MyApi);
/// ```
///
/// The path is relative to the invoking crate's `CARGO_MANIFEST_DIR` (the
/// directory of its `Cargo.toml`), or absolute. The file is embedded with
/// `include_str!`, so cargo rebuilds the crate when it changes. `trait = Name`
/// names the generated extension trait (default `Tools`).
///
/// Every error of the manifest (unreadable file, TOML syntax, invalid
/// manifest) is reported at once as compile errors naming `file:line:col`.
/// See the `agent_gate` crate documentation ("Typed tools") for what is
/// generated.
#[proc_macro]
pub fn tools(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    // The manifest path literal comes first.
    let path_span = input
        .clone()
        .into_iter()
        .next()
        .map_or_else(proc_macro::Span::call_site, |tree| tree.span());
    match codegen::tools_macro(input.into()) {
        Ok(expansion) => emit(&expansion, path_span),
        Err(errors) => errors.into(),
    }
}

/// The expansion as tokens. Each part of the generated source goes through
/// the compiler's lexer in one call, which is much faster than building
/// tokens one by one across the proc-macro bridge (the tokens get the call
/// site's span); then the trait's method names get the manifest path's span
/// (`path_span`), for the compiler's "method defined here" notes.
fn emit(expansion: &codegen::Expansion, path_span: proc_macro::Span) -> proc_macro::TokenStream {
    let parse = |code: &str| -> proc_macro::TokenStream {
        code.parse().unwrap_or_else(|e: proc_macro::LexError| {
            let message =
                format!("agent-gate-macros generated invalid Rust ({e}); please report this bug");
            quote::quote!(::core::compile_error!(#message);).into()
        })
    };
    let mut out = parse(&expansion.items);
    out.extend(respan_methods(parse(&expansion.trait_decl), path_span));
    out.extend(parse(&expansion.trait_impl));
    out
}

/// `trait_decl` (`... trait Name { ... fn name(..) -> R; ... }`) with the
/// name of every method spanned at `span`.
fn respan_methods(
    trait_decl: proc_macro::TokenStream,
    span: proc_macro::Span,
) -> proc_macro::TokenStream {
    use proc_macro::{Delimiter, Group, TokenTree};
    trait_decl
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Group(body) if body.delimiter() == Delimiter::Brace => {
                let mut after_fn = false;
                let stream = body
                    .stream()
                    .into_iter()
                    .map(|mut tree| {
                        let is_fn = matches!(&tree, TokenTree::Ident(i) if i.to_string() == "fn");
                        if let (true, TokenTree::Ident(name)) = (after_fn, &mut tree) {
                            name.set_span(span);
                        }
                        after_fn = is_fn;
                        tree
                    })
                    .collect();
                let mut group = Group::new(Delimiter::Brace, stream);
                group.set_span(body.span());
                TokenTree::Group(group)
            }
            other => other,
        })
        .collect()
}
