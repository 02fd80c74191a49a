//! JSON renderings of the manifest: per-tool JSON Schemas (draft 2020-12),
//! the one-document schema of all tools, the upstream `list_tools` entry, and
//! the canonical form hashed by [`Manifest::hash`].

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::model::{Arg, ArgType, Manifest, Tool, TypeDef};

/// The JSON Schema dialect of every schema emitted.
pub const JSON_SCHEMA_DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The schema of one argument (or field). `extra_forbidden` are further keys
/// an object may not contain (the tool's argument names for `body_merge`).
fn arg_schema(arg: &Arg, extra_forbidden: &[&str]) -> Value {
    let mut s = Map::new();
    s.insert("type".into(), arg.kind.type_name().into());
    if !arg.description.is_empty() {
        s.insert("description".into(), arg.description.clone().into());
    }
    match &arg.kind {
        ArgType::String {
            pattern,
            enum_values,
            or_list,
        } => {
            let mut one = Map::new();
            one.insert("type".into(), "string".into());
            if let Some(p) = pattern {
                one.insert("pattern".into(), p.anchored().into());
            }
            if let Some(values) = enum_values {
                one.insert("enum".into(), values.clone().into());
            }
            if *or_list {
                // a string, or a non-empty list of such strings
                s.shift_remove("type");
                let list =
                    json!({"type": "array", "items": Value::Object(one.clone()), "minItems": 1});
                s.insert("anyOf".into(), json!([Value::Object(one), list]));
            } else {
                one.shift_remove("type");
                s.extend(one);
            }
        }
        ArgType::Object { forbid_keys } => {
            let mut forbidden: Vec<&str> = forbid_keys.iter().map(String::as_str).collect();
            for k in extra_forbidden {
                if *k != arg.name && !forbidden.contains(k) {
                    forbidden.push(k);
                }
            }
            if !forbidden.is_empty() {
                s.insert(
                    "propertyNames".into(),
                    json!({ "not": { "enum": forbidden } }),
                );
            }
        }
        ArgType::Array { items } => {
            s.insert("items".into(), json!({ "type": items.as_str() }));
        }
        ArgType::Integer | ArgType::Number | ArgType::Boolean => {}
    }
    Value::Object(s)
}

fn object_schema(description: &str, fields: &[Arg], merge: Option<&str>) -> Value {
    let names: Vec<&str> = fields.iter().map(|a| a.name.as_str()).collect();
    let mut properties = Map::new();
    for arg in fields {
        let extra: &[&str] = if merge == Some(arg.name.as_str()) {
            &names
        } else {
            &[]
        };
        properties.insert(arg.name.clone(), arg_schema(arg, extra));
    }
    let required: Vec<&str> = fields
        .iter()
        .filter(|a| a.required)
        .map(|a| a.name.as_str())
        .collect();
    let mut s = Map::new();
    s.insert("type".into(), "object".into());
    if !description.is_empty() {
        s.insert("description".into(), description.into());
    }
    s.insert("properties".into(), Value::Object(properties));
    s.insert("required".into(), required.into());
    s.insert("additionalProperties".into(), false.into());
    Value::Object(s)
}

impl Tool {
    /// The JSON Schema (2020-12) of the tool's `args` object: properties with
    /// type, description, pattern (anchored, as matched), enum and items; the
    /// required list; `additionalProperties: false`; forbidden object keys as
    /// `propertyNames: {not: {enum: [...]}}` (for the `body_merge` object
    /// this includes the names of the tool's other arguments).
    pub fn input_schema(&self) -> Value {
        object_schema(
            &self.description,
            &self.args,
            self.http.body_merge.as_deref(),
        )
    }

    /// The upstream `list_tools` shape of the arguments:
    /// `{name: {type, required, description, pattern?, enum?, items?}}`.
    pub fn list_entry_args(&self) -> Value {
        let mut out = Map::new();
        for arg in &self.args {
            let mut a = Map::new();
            a.insert("type".into(), arg.kind.type_name().into());
            a.insert("required".into(), arg.required.into());
            a.insert("description".into(), arg.description.clone().into());
            match &arg.kind {
                ArgType::String {
                    pattern,
                    enum_values,
                    or_list,
                } => {
                    if let Some(p) = pattern {
                        a.insert("pattern".into(), p.as_str().into());
                    }
                    if let Some(v) = enum_values {
                        a.insert("enum".into(), v.clone().into());
                    }
                    if *or_list {
                        a.insert("or_list".into(), true.into());
                    }
                }
                ArgType::Array { items } => {
                    a.insert("items".into(), items.as_str().into());
                }
                _ => {}
            }
            out.insert(arg.name.clone(), Value::Object(a));
        }
        Value::Object(out)
    }

    /// The tool's `list_tools` entry: `{name, description, service, args, input_schema}`
    /// as upstream has it, plus `output_schema` ([`Tool::output_schema`]) and `annotations`
    /// (the manifest's hints: `read_only`, `destructive`, `idempotent`, `open_world`) when
    /// there are any. `manifest` is the one the tool belongs to (for its response type).
    pub fn list_entry(&self, manifest: &Manifest) -> Value {
        let mut entry = json!({
            "name": self.name,
            "description": self.description,
            "service": self.service,
            "args": self.list_entry_args(),
            "input_schema": self.input_schema(),
        });
        if let Value::Object(map) = &mut entry {
            if let Some(schema) = self.output_schema(manifest) {
                map.insert("output_schema".into(), schema);
            }
            if !self.hints.is_empty() {
                let mut hints = Map::new();
                for (key, value) in [
                    ("read_only", self.hints.read_only),
                    ("destructive", self.hints.destructive),
                    ("idempotent", self.hints.idempotent),
                    ("open_world", self.hints.open_world),
                ] {
                    if let Some(value) = value {
                        hints.insert(key.into(), value.into());
                    }
                }
                map.insert("annotations".into(), Value::Object(hints));
            }
        }
        entry
    }

    /// The JSON Schema of a successful call's output, when the manifest declares a response
    /// type: the type's schema, or for a response under a wrap key, an object holding it
    /// (a list under the key for `"[Type]"`). `None` when the output would not always be a
    /// JSON object of that shape: no response type, a bare list, or a wrap an argument can
    /// turn off (`wrap_unless`). MCP's `outputSchema` is this.
    pub fn output_schema(&self, manifest: &Manifest) -> Option<Value> {
        let response = self.response.as_ref()?;
        if self.http.wrap_unless.is_some() {
            return None;
        }
        let item = manifest.type_def(&response.name)?.json_schema();
        match (response.list, &self.http.wrap) {
            (false, None) => Some(item),
            (false, Some(key)) => Some(json!({
                "type": "object",
                "properties": { key: item },
                "required": [key],
            })),
            (true, Some(key)) => Some(json!({
                "type": "object",
                "properties": { key: {"type": "array", "items": item} },
                "required": [key],
            })),
            (true, None) => None,
        }
    }

    fn canonical(&self) -> Value {
        let args: Vec<Value> = self.args.iter().map(canonical_arg).collect();
        let mut canonical = json!({
            "name": self.name,
            "service": self.service,
            "description": self.description,
            "signature": self.signature.as_ref().map(|t| t.source.clone()),
            "response": self.response.as_ref().map(ToString::to_string),
            "args": args,
            "http": {
                "method": self.http.method.as_str(),
                "path": self.http.path.source,
                "query": self.http.query.iter().map(|(p, a)| json!([p, a])).collect::<Vec<_>>(),
                "body": self.http.body,
                "body_merge": self.http.body_merge,
                "decode": self.http.decode.as_str(),
                "wrap": self.http.wrap,
            },
        });
        // The later HTTP keys, present only when declared, so older manifests keep their hash.
        if let Some(Value::Object(http)) = canonical.get_mut("http") {
            if !self.http.flags.is_empty() {
                let flags: Vec<Value> =
                    self.http.flags.iter().map(|(p, a)| json!([p, a])).collect();
                http.insert("flags".into(), Value::from(flags));
            }
            if let Some(arg) = &self.http.wrap_unless {
                http.insert("wrap_unless".into(), json!(arg));
            }
            if !self.http.body_const.is_empty() {
                let body_const: Vec<Value> = self
                    .http
                    .body_const
                    .iter()
                    .map(|(k, v)| json!([k, v]))
                    .collect();
                http.insert("body_const".into(), Value::from(body_const));
            }
            if let Some(help) = &self.http.error_help {
                http.insert("error_help".into(), json!(help.source));
            }
        }
        // Present only when declared, so manifests without targets keep their hash.
        if let (Some(t), Value::Object(map)) = (&self.targets, &mut canonical) {
            map.insert(
                "targets".into(),
                json!({
                    "slot": t.slot,
                    "args": t.args,
                    "pattern": t.pattern.as_str(),
                    "lowercase": t.lowercase,
                    "separator": t.separator,
                    "refuse_keys": t.refuse_keys,
                    "refuse_values": t.refuse_values,
                    "dispatch": t.dispatch.as_ref().map(|d| json!({"arg": d.arg, "values": d.values})),
                    "indirect": t.indirect,
                }),
            );
        }
        // Present only when declared, so manifests without them keep their hash.
        if let (false, Value::Object(map)) = (self.hints.is_empty(), &mut canonical) {
            let h = &self.hints;
            map.insert(
                "hints".into(),
                json!({
                    "read_only": h.read_only,
                    "destructive": h.destructive,
                    "idempotent": h.idempotent,
                    "open_world": h.open_world,
                }),
            );
        }
        canonical
    }
}

fn canonical_arg(arg: &Arg) -> Value {
    let (pattern, enum_values, forbid, items) = match &arg.kind {
        ArgType::String {
            pattern,
            enum_values,
            ..
        } => (
            pattern.as_ref().map(|p| p.as_str().to_owned()),
            enum_values.clone(),
            None,
            None,
        ),
        ArgType::Object { forbid_keys } => (None, None, Some(forbid_keys.clone()), None),
        ArgType::Array { items } => (None, None, None, Some(items.as_str())),
        _ => (None, None, None, None),
    };
    let mut canonical = json!({
        "name": arg.name,
        "type": arg.kind.type_name(),
        "required": arg.required,
        "description": arg.description,
        "pattern": pattern,
        "enum": enum_values,
        "forbid_keys": forbid,
        "items": items,
    });
    // Present only when set, so manifests without it keep their hash.
    if let (true, Value::Object(map)) = (arg.kind.accepts_list(), &mut canonical) {
        map.insert("or_list".into(), true.into());
    }
    canonical
}

impl TypeDef {
    /// The JSON Schema (2020-12) of the response type. Unlike tool inputs,
    /// responses may carry more fields than declared (`additionalProperties`
    /// is left open).
    pub fn json_schema(&self) -> Value {
        let mut s = object_schema(&self.description, &self.fields, None);
        if let Value::Object(m) = &mut s {
            m.shift_remove("additionalProperties");
        }
        s
    }
}

impl Manifest {
    /// One JSON Schema (2020-12) document describing a `tool_request`'s
    /// `{tool, args}`: `$defs` holds each tool's input schema (by tool name)
    /// and each response type (by type name); `oneOf` pairs each tool name
    /// with its arguments.
    pub fn json_schema(&self) -> Value {
        let mut defs = Map::new();
        let mut one_of = Vec::new();
        for tool in self.tools() {
            defs.insert(tool.name.clone(), tool.input_schema());
            one_of.push(json!({
                "type": "object",
                "properties": {
                    "tool": { "const": tool.name },
                    "args": { "$ref": format!("#/$defs/{}", tool.name) },
                },
                "required": ["tool", "args"],
                "additionalProperties": false,
            }));
        }
        for def in self.types() {
            defs.insert(def.name.clone(), def.json_schema());
        }
        json!({
            "$schema": JSON_SCHEMA_DIALECT,
            "title": "agent-gate tool requests",
            "description": "The `tool` and `args` of a `tool_request`, one alternative per tool.",
            "oneOf": one_of,
            "$defs": defs,
        })
    }

    /// The canonical JSON form of the manifest: services, types and tools
    /// sorted by name, arguments and fields in declaration order, file
    /// locations left out.
    pub fn canonical_json(&self) -> Value {
        let mut services: Vec<_> = self.services().collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        let mut types: Vec<_> = self.types().collect();
        types.sort_by(|a, b| a.name.cmp(&b.name));
        let mut tools: Vec<_> = self.tools().collect();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        json!({
            "version": 1,
            "services": services.iter().map(|s| json!({"name": s.name, "description": s.description})).collect::<Vec<_>>(),
            "types": types.iter().map(|t| json!({
                "name": t.name,
                "description": t.description,
                "fields": t.fields.iter().map(canonical_arg).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "tools": tools.iter().map(|t| t.canonical()).collect::<Vec<_>>(),
        })
    }

    /// SHA-256 (lower-case hex) of [`Manifest::canonical_json`]: equal for
    /// manifests that mean the same, whatever the file layout, comments or
    /// order of sections; stable across runs and versions of this crate's
    /// dependencies.
    pub fn hash(&self) -> String {
        let text = self.canonical_json().to_string();
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}
