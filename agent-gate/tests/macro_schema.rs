//! The Rust SDK and the gateway can never disagree about arguments: the
//! schemars schema of every generated arguments struct is equivalent to the
//! manifest crate's JSON Schema of that tool (what the gateway validates
//! against and publishes), and the struct's serde form has exactly the
//! schema's properties, with its types, required ones required and unknown
//! ones refused (the generated `JsonSchema` impl embeds the manifest's
//! schema, so this second check is what ties the Rust fields to it). The
//! same holds for the response types. Also: the SDK's packaged copy of
//! `tools.toml` is byte-identical to the repository's, and is part of the
//! package.

#[path = "macro_fixtures/gateway.rs"]
#[allow(unused)]
mod gateway;

#[allow(dead_code)]
mod small {
    include!("macro_fixtures/small_expanded.rs");
}

use std::collections::BTreeSet;
use std::fmt::Debug;

use agent_gate::__private::schemars::{JsonSchema, schema_for};
use agent_gate::ha;
use agent_gate::tools::Tool;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// The parts of a schema both sides must agree on: type (without `null`),
/// description, properties (recursively), required (as a set), pattern,
/// enum, items, propertyNames and `additionalProperties: false`. Metadata
/// (`$schema`, `title`, `format`) and the default `additionalProperties:
/// true` are left out.
fn normalise(schema: &Value) -> Value {
    let Value::Object(s) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let types: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
        out.insert("type".into(), types.join("|").into());
    }
    for key in ["description", "pattern", "enum", "propertyNames"] {
        if let Some(v) = s.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(items) = s.get("items") {
        out.insert("items".into(), normalise(items));
    }
    let closed = s.get("additionalProperties") == Some(&Value::Bool(false));
    // A closed object without `properties` (schemars' form of a struct
    // without fields) has no properties.
    let empty = Map::new();
    let props = match s.get("properties") {
        Some(Value::Object(props)) => Some(props),
        _ if closed => Some(&empty),
        _ => None,
    };
    if let Some(props) = props {
        let props: Map<String, Value> = props
            .iter()
            .map(|(k, v)| (k.clone(), normalise(v)))
            .collect();
        out.insert("properties".into(), Value::Object(props));
        let required: BTreeSet<&str> = s
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.insert(
            "required".into(),
            required.into_iter().collect::<Vec<_>>().into(),
        );
    }
    if closed {
        out.insert("additionalProperties".into(), false.into());
    }
    Value::Object(out)
}

/// A value of the type `schema` (a property's schema) describes.
fn sample(schema: &Value) -> Value {
    if let Some(Value::Array(values)) = schema.get("enum") {
        return values[0].clone();
    }
    // `or_list`: a string or a list of them; the list form is the one a string-only type
    // would refuse
    if let Some(Value::Array(forms)) = schema.get("anyOf")
        && let Some(list) = forms.iter().find(|f| f["type"] == "array")
    {
        return sample(list);
    }
    match schema["type"].as_str() {
        Some("string") => json!("text"),
        Some("integer") => json!(7),
        Some("number") => json!(1.5),
        Some("boolean") => json!(true),
        Some("array") => json!([sample(&schema["items"])]),
        Some("object") => json!({"key": 1}),
        other => panic!("unexpected type {other:?} in {schema}"),
    }
}

/// `T`'s serde form has exactly the properties of `schema`, of its types:
/// a sample of every property reads and writes back unchanged; leaving out
/// a required property fails with serde's "missing field" and leaving out
/// an optional one is fine; an unknown property is refused when the schema
/// says `additionalProperties: false`. Wrong types are refused.
fn assert_serde_shape<T: Serialize + DeserializeOwned + Debug>(name: &str, schema: &Value) {
    let props = schema["properties"].as_object().unwrap();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let full: Map<String, Value> = props.iter().map(|(k, p)| (k.clone(), sample(p))).collect();
    let read: T = serde_json::from_value(Value::Object(full.clone()))
        .unwrap_or_else(|e| panic!("`{name}` does not read its schema's sample: {e}"));
    assert_eq!(
        serde_json::to_value(&read).unwrap(),
        Value::Object(full.clone()),
        "`{name}` does not write back its schema's sample ({read:?})"
    );
    for key in props.keys() {
        let mut without = full.clone();
        without.remove(key);
        let result = serde_json::from_value::<T>(Value::Object(without));
        if required.contains(&key.as_str()) {
            assert_eq!(
                result.unwrap_err().to_string(),
                format!("missing field `{key}`"),
                "`{name}`"
            );
        } else {
            let read = result.unwrap_or_else(|e| panic!("`{name}`: optional `{key}`: {e}"));
            let written = serde_json::to_value(&read).unwrap();
            assert!(written.get(key).is_none(), "`{name}` writes absent `{key}`");
        }
        let mut wrong = full.clone();
        wrong.insert(key.clone(), json!([[]]));
        assert!(
            serde_json::from_value::<T>(Value::Object(wrong)).is_err(),
            "`{name}` accepts anything as `{key}`"
        );
    }
    let mut unknown = full.clone();
    unknown.insert("not_a_property".into(), json!(1));
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    match serde_json::from_value::<T>(Value::Object(unknown)) {
        Err(e) if closed => assert!(e.to_string().starts_with("unknown field"), "{e}"),
        Err(e) => panic!("`{name}` refuses an unknown property: {e}"),
        Ok(_) => assert!(!closed, "`{name}` accepts an unknown property"),
    }
}

fn assert_equivalent<T: Tool + JsonSchema + Debug>() -> String {
    let rust = serde_json::to_value(schema_for!(T)).unwrap();
    let manifest = T::input_schema().unwrap();
    assert_serde_shape::<T>(T::NAME, &manifest);
    assert_eq!(
        normalise(&rust),
        normalise(&manifest),
        "tool `{}`: the generated struct's schema differs from the manifest's\nschemars: {rust:#}\nmanifest: {manifest:#}",
        T::NAME
    );
    // The normal form keeps what matters: it is not trivially empty.
    assert!(normalise(&manifest).get("properties").is_some());
    T::NAME.to_owned()
}

macro_rules! all_equivalent {
    ($($t:ty),* $(,)?) => {
        vec![$(assert_equivalent::<$t>()),*]
    };
}

#[test]
fn every_home_assistant_struct_has_the_manifests_schema() {
    let checked = all_equivalent![
        ha::HaGetStateArgs,
        ha::HaGetStatesArgs,
        ha::HaGetServicesArgs,
        ha::HaGetHistoryArgs,
        ha::HaGetLogbookArgs,
        ha::HaGetConfigArgs,
        ha::HaRenderTemplateArgs,
        ha::HaGetAreasArgs,
        ha::HaGetCalendarsArgs,
        ha::HaGetCalendarEventsArgs,
        ha::HaCallServiceArgs,
        ha::HaFireEventArgs,
    ];
    assert_eq!(
        checked,
        ha::TOOL_NAMES,
        "every tool of the manifest is checked"
    );
}

#[test]
fn every_small_manifest_struct_has_the_manifests_schema() {
    let checked = all_equivalent![
        small::LightGetArgs,
        small::LightListArgs,
        small::LightSetArgs
    ];
    assert_eq!(checked, small::TOOL_NAMES);
}

/// The same for a response type `T` named `name` in `manifest`.
fn assert_type_equivalent<T: JsonSchema + Serialize + DeserializeOwned + Debug>(
    manifest: &agent_gate_manifest::Manifest,
    name: &str,
) {
    let def = manifest.types().find(|d| d.name == name).unwrap();
    let rust = serde_json::to_value(schema_for!(T)).unwrap();
    let schema = def.json_schema();
    assert_eq!(
        normalise(&rust),
        normalise(&schema),
        "type `{name}`: the generated struct's schema differs from the manifest's"
    );
    assert_serde_shape::<T>(name, &schema);
}

#[test]
fn every_response_type_has_the_manifests_schema() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tools.toml");
    let manifest = agent_gate_manifest::Manifest::load(&[root])
        .unwrap()
        .manifest;
    assert_eq!(
        manifest
            .types()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        ["State"]
    );
    assert_type_equivalent::<ha::State>(&manifest, "State");
    let small = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/macro_fixtures/small.toml"
    );
    let manifest = agent_gate_manifest::Manifest::load(&[small])
        .unwrap()
        .manifest;
    assert_type_equivalent::<small::Light>(&manifest, "Light");
}

#[test]
fn the_shape_check_sees_differences() {
    // A struct missing an optional property, and one with a field more.
    #[derive(Debug, Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Fewer {
        entity_id: String,
    }
    #[derive(Debug, Serialize, serde::Deserialize)]
    struct More {
        entity_id: String,
        extra: String,
    }
    let schema = <ha::HaGetStateArgs as Tool>::input_schema().unwrap();
    assert_serde_shape::<Fewer>("fewer", &schema);
    let closed = serde_json::json!({
        "properties": {"entity_id": {"type": "string"}, "x": {"type": "integer"}},
        "required": ["entity_id"],
        "additionalProperties": false
    });
    let fewer = std::panic::catch_unwind(|| assert_serde_shape::<Fewer>("fewer", &closed));
    assert!(fewer.is_err());
    let more = std::panic::catch_unwind(|| assert_serde_shape::<More>("more", &schema));
    assert!(more.is_err());
}

#[test]
fn normalisation_sees_differences() {
    let a = serde_json::json!({"type": "object", "properties": {"x": {"type": "string", "pattern": "^a$"}}, "required": ["x"]});
    let mut b = a.clone();
    b["properties"]["x"]["pattern"] = "^b$".into();
    assert_ne!(normalise(&a), normalise(&b));
    let mut c = a.clone();
    c["required"] = serde_json::json!([]);
    assert_ne!(normalise(&a), normalise(&c));
    let mut d = a.clone();
    d["properties"]["x"]["type"] = serde_json::json!(["string", "null"]);
    assert_eq!(normalise(&a), normalise(&d));
}

#[test]
fn the_packaged_manifest_is_the_repositorys() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools.toml");
    let root = std::fs::read(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let packaged = include_bytes!("../tools.toml");
    assert!(
        root == packaged,
        "agent-gate/tools.toml (the copy packaged with the SDK, from which agent_gate::ha is generated) \
         differs from the repository's tools.toml; sync it with `cp tools.toml agent-gate/tools.toml`"
    );
    let manifest =
        agent_gate_manifest::Manifest::from_str(std::str::from_utf8(&root).unwrap(), "tools.toml")
            .unwrap()
            .manifest;
    assert_eq!(ha::MANIFEST_HASH, manifest.hash());
}

#[test]
fn the_manifest_is_part_of_the_package() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "package",
            "-p",
            "agent-gate",
            "--list",
            "--no-verify",
            "--allow-dirty",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo package --list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<&str> = stdout.lines().collect();
    assert!(files.contains(&"tools.toml"), "{files:?}");
    assert!(files.contains(&"src/ha.rs"), "{files:?}");
}
