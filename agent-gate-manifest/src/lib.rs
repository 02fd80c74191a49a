//! The agent-gate tool manifest (`tools.toml`): parse and check it, render
//! policy signatures, validate call arguments, build HTTP requests and emit
//! JSON Schemas.
//!
//! The manifest describes every tool an agent may request. It is shared by the
//! proc-macro (which generates typed SDK methods at compile time), the SDK and
//! the gateway (which validates, judges and executes calls at run time). It
//! holds no secrets and no URLs: where a service lives and how to authenticate
//! is in the gateway's `config.yaml`.
//!
//! # Example
//!
//! ```
//! use agent_gate_manifest::Manifest;
//! use serde_json::json;
//!
//! let source = r#"
//! version = 1
//!
//! [services.homeassistant]
//! description = "Home Assistant REST API"
//!
//! [types.State]
//! description = "A state object."
//! fields.entity_id = { type = "string", description = "The entity id." }
//! fields.state = { type = "string" }
//!
//! [tools.ha_get_state]
//! service = "homeassistant"
//! description = "Get the state of one entity."
//! signature = "{entity_id}"
//! response = "State"
//! http = { method = "GET", path = "/api/states/{entity_id}" }
//!
//! [tools.ha_get_state.args.entity_id]
//! type = "string"
//! pattern = '^[a-z0-9_]+\.[a-z0-9_]+$'
//! description = "Entity id, e.g. `sensor.kitchen`."
//! "#;
//! let loaded = Manifest::from_str(source, "tools.toml").unwrap();
//! let tool = loaded.manifest.tool("ha_get_state").unwrap();
//! let args = json!({"entity_id": "sensor.kitchen"});
//! let args = args.as_object().unwrap();
//! assert_eq!(tool.signature(args).unwrap(), "ha_get_state(sensor.kitchen)");
//! assert_eq!(tool.http_request(args).unwrap().path, "/api/states/sensor.kitchen");
//!
//! let bad = json!({"entity_id": "sensor.*"});
//! let err = tool.validate_args(bad.as_object().unwrap()).unwrap_err();
//! assert!(err.to_string().contains("must match the pattern"));
//! ```
//!
//! # Format
//!
//! A manifest is a TOML file. Several files may be loaded together
//! ([`Manifest::load`]); services and types declared in any of them can be
//! used by tools of all of them, and every name must be unique across files.
//! Unknown keys anywhere are errors (with a "did you mean" suggestion).
//!
//! ## Top level
//!
//! | key | meaning |
//! | --- | --- |
//! | `version` | optional; only `1` is accepted |
//! | `[services.<name>]` | a service tools call; key `description` (string) |
//! | `[types.<Name>]` | a response type: `description`, `fields.<name>` (same keys as an argument) |
//! | `[tools.<name>]` | a tool (below) |
//!
//! Tool, argument, field and service names must be snake_case Rust
//! identifiers (`[a-z][a-z0-9_]*`) and not Rust keywords (`type`, `fn`, `gen`,
//! ...), because generated code uses them as method, parameter and field
//! names. Type names are UpperCamelCase (`[A-Z][A-Za-z0-9]*`).
//!
//! ## Tools: `[tools.<name>]`
//!
//! | key | meaning |
//! | --- | --- |
//! | `service` | required; names a declared `[services.<name>]` |
//! | `description` | required; shown to agents |
//! | `signature` | optional template, e.g. `"{domain}.{service}, {entity_id}"`; absent = the signature is the bare tool name |
//! | `response` | optional; `"TypeName"` or `"[TypeName]"` (a list) naming a declared type |
//! | `http` | required; the HTTP mapping (below) |
//! | `targets` | optional table: which arguments name what a call affects, so the policy judges each (below) |
//! | `read_only`, `destructive`, `idempotent`, `open_world` | optional booleans ([`Hints`]): what the tool does to the world, shown to MCP clients as tool annotations; hints only, the policy decides |
//! | `args.<name>` | the arguments; **declaration order is the order of positional parameters in generated code** |
//!
//! ## Arguments: `[tools.<tool>.args.<name>]` (and type fields)
//!
//! | key | meaning |
//! | --- | --- |
//! | `type` | required: `string`, `integer`, `number`, `boolean`, `object` or `array` |
//! | `required` | boolean, default `true` |
//! | `description` | string |
//! | `pattern` | strings only: a regular expression ([`regex`] syntax) the **whole** value must match |
//! | `enum` | strings only: the allowed values (non-empty, no duplicates) |
//! | `items` | arrays only and required for them: `string`, `integer`, `number` or `boolean` |
//! | `forbid_keys` | objects only: top-level keys the object may not contain |
//! | `or_list` | strings only, default `false`: a non-empty list of such strings is accepted too (each item checked like the string); such an argument may appear in a signature only as the `targets` slot |
//!
//! **Patterns match whole values.** A pattern written `^...$` (no top-level
//! `|`, no multi-line flag) is used as is; any other pattern `P` is used as
//! `^(?:P)$`. Write anchored patterns to keep schemas readable. The anchored
//! form is what JSON Schemas publish, so JSON Schema validators (which
//! otherwise search anywhere in the value) agree with the gateway. Patterns
//! are compiled when the manifest is loaded; an invalid one is an error.
//!
//! At run time ([`Tool::validate_args`]) JSON types are exact and nothing is
//! converted: a list where a string is expected is an error, an integer must
//! be a whole number, `null` is refused (omit an optional argument instead),
//! and undeclared arguments are refused, never forwarded.
//!
//! ## Signatures
//!
//! Policies judge a signature such as
//! `ha_call_service(light.turn_on, light.bedroom)`, rendered from the
//! template `"{domain}.{service}, {entity_id}"` as `tool(` + template + `)`.
//! Without a template the signature is the bare tool name (`ha_get_states`).
//! An absent optional argument renders as the empty string; integers, numbers
//! and booleans as their JSON text.
//!
//! A value must not be able to change what a rule matches, so:
//!
//! - only string arguments with a `pattern` or an `enum`, integers, numbers and
//!   booleans may appear in a signature; objects, arrays and free-text strings
//!   are a manifest error (keep templates and service data out of signatures);
//! - at run time, a value that appears in the signature is refused if it
//!   contains a glob metacharacter `* ? [ ] { } !`, a parenthesis, a comma, a
//!   backslash or a control character ([`FORBIDDEN_SIGNATURE_CHARS`]), even if
//!   it matches its pattern; `enum` values are checked the same way at load.
//!
//! ## Targets: `[tools.<name>.targets]`
//!
//! A call can reach a thing through arguments its signature does not show (Home
//! Assistant's `scene.apply` names entities in its service data). `targets`
//! declares where a tool's calls name what they affect; [`Tool::judged`] finds
//! every target and renders one signature per target, and the policy judges
//! each (the strictest answer wins).
//!
//! | key | meaning |
//! | --- | --- |
//! | `slot` | required: the signature placeholder (an argument) each target fills in turn |
//! | `args` | the arguments scanned (default: the slot's); strings, lists and objects are scanned at any depth, object keys included |
//! | `pattern` | required: what a target looks like (whole-value regex, after normalising) |
//! | `lowercase` | lower-case strings before matching (default `false`); they are always trimmed of white space and control characters |
//! | `separator` | a string may name several targets separated by this text (e.g. `","`) |
//! | `refuse_keys` | object keys that select targets some other way (`area_id`, ...): a call carrying one at any depth is refused |
//! | `refuse_values` | values that mean every or no target (`all`, `none`): refused as the slot or under a key named like it |
//! | `dispatch` | `{ arg, values }`: when `arg` has one of `values` (a generic action), each target is also judged with `arg` set to the target's kind (its text before the first `.`) |
//! | `indirect` | kinds of target that act on other things in turn (scripts, scenes); `agent-gate check` warns when a rule allows them all |
//!
//! A call that names no target is judged once with an empty slot. A
//! target-shaped string is judged even where the service would ignore it:
//! judging too much can only ask or deny more, never less.
//!
//! ## HTTP mapping: `http = { ... }`
//!
//! | key | meaning |
//! | --- | --- |
//! | `method` | required: `GET`, `POST`, `PUT`, `PATCH` or `DELETE` |
//! | `path` | required, starts with `/`. `{arg}`: the percent-encoded value of a *required* scalar argument. `{/arg}`: an optional segment, `/value` when the *optional* argument is given, nothing otherwise. No `?` or `#` |
//! | `query` | `{ param = "arg" }`: query parameters from scalar arguments, omitted when the argument is absent; an `or_list` argument given as a list is sent as its items joined by `,` (Home Assistant's `filter_entity_id=a,b`) |
//! | `flags` | `{ param = "arg" }`: query parameters without a value (`?return_response`) from *boolean* arguments: present when the argument is `true`, left out when it is `false` or absent (for services that look only at whether a parameter is there, so `?param=false` would still switch it on) |
//! | `body` | `["arg", ...]`: arguments forming the JSON body object (absent optional ones omitted) |
//! | `body_merge` | `"arg"`: an `object` argument whose keys are merged into the JSON body; its keys may not be the name of another declared argument nor one of its `forbid_keys` |
//! | `body_const` | `{ key = "text" }`: constant strings in the JSON body (e.g. a fixed template); a key may not be an argument's name |
//! | `decode` | `"json"` (default) or `"text"` |
//! | `wrap` | `"key"`: the response is returned as `{key: response}` so `data` is always an object; required with `decode = "text"` |
//! | `wrap_unless` | `"arg"`: a *boolean* argument; when it is `true` the response is returned as it is, not wrapped (Home Assistant's `?return_response` answers with an object `{changed_states, service_response}` instead of the list `wrap` names). Requires `wrap` |
//! | `error_help` | a text with `{arg}` placeholders, added to the message of a 4xx answer (but 401 and 403), for services that often refuse without saying why. Strings are filled in as they are, other values as JSON, absent ones as `(none)` |
//!
//! Path and query values are percent-encoded as URL components (everything
//! but `A-Z a-z 0-9 - . _ ~`, so `/` becomes `%2F`). A `GET` may not have a
//! body. **Every argument must be used** by the path, query, body or
//! body_merge: an unused argument would be silently dropped, so it is an error.
//! A string placed in the path may not be empty, `.` or `..` (it would reach
//! another endpoint once the URL is normalised).
//!
//! ## Diagnostics
//!
//! Errors carry file, byte span, 1-based line and column, message and help
//! ([`Diagnostic`]); [`ManifestError`] lists all errors of all files (a TOML
//! syntax error stops the checking of its file). A manifest without tools
//! loads with a warning ([`Loaded::warnings`]).
//!
//! ```text
//! tools.toml:12:9: error: unknown key `descripton` in tool `ha_get_state`
//!   help: did you mean `description`?
//! ```

#![warn(missing_docs)]

pub mod diagnostics;
mod forbidden;
pub mod model;
pub mod parse;
pub mod request;
pub mod schema;
pub mod signature;
pub mod targets;
pub mod validate;

pub use diagnostics::{Diagnostic, Location, ManifestError, Severity};
pub use forbidden::{FORBIDDEN_SIGNATURE_CHARS, forbidden_char};
pub use model::{
    Arg, ArgType, Decode, Dispatch, Hints, HttpMapping, Manifest, Method, Pattern, ResponseType,
    ScalarType, Service, Targets, Template, TemplatePart, Tool, TypeDef,
};
pub use parse::Loaded;
pub use request::{HttpRequestParts, encode_component};
pub use schema::JSON_SCHEMA_DIALECT;
pub use targets::Judged;
pub use validate::{ArgError, ArgsError, ValidArgs, check_pattern};
