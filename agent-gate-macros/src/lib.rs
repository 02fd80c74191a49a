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
    codegen::tools_macro(input.into()).into()
}
