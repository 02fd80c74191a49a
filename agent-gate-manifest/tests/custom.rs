//! A manifest exercising every argument type: exact JSON types at run time,
//! signatures and query strings of non-string scalars, enums, arrays.

use agent_gate_manifest::{ArgError, ArgType, Manifest, Tool, forbidden_char};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const SOURCE: &str = r#"
[services.api]
description = "Some API"

[tools.set_level]
service = "api"
description = "Set a level."
signature = "{zone}: {level} {ratio} {force} {mode}"
http = { method = "PUT", path = "/zones/{zone}/level", query = { level = "level", ratio = "ratio", force = "force" }, body = ["mode", "tags"] }

[tools.set_level.args.zone]
type = "string"
pattern = '[a-z]+'

[tools.set_level.args.level]
type = "integer"

[tools.set_level.args.ratio]
type = "number"
required = false

[tools.set_level.args.force]
type = "boolean"
required = false

[tools.set_level.args.mode]
type = "string"
enum = ["eco", "boost"]
required = false

[tools.set_level.args.tags]
type = "array"
items = "integer"
required = false

[tools.echo]
service = "api"
description = "A permissive pattern in a signature: forbidden characters are still refused."
signature = "{word}"
http = { method = "POST", path = "/echo", body = ["word"] }
args.word = { type = "string", pattern = '.*' }
"#;

fn tool(name: &str) -> Tool {
    let loaded = Manifest::from_str(SOURCE, "custom.toml").unwrap_or_else(|e| panic!("{e}"));
    loaded.manifest.tool(name).unwrap().clone()
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn scalars_in_signature_query_and_body() {
    let t = tool("set_level");
    let args = obj(
        json!({"zone": "hall", "level": -3, "ratio": 0.5, "force": true, "mode": "eco", "tags": [1, 2]}),
    );
    assert_eq!(
        t.signature(&args).unwrap(),
        "set_level(hall: -3 0.5 true eco)"
    );
    let r = t.http_request(&args).unwrap();
    assert_eq!(
        r.path_and_query(),
        "/zones/hall/level?level=-3&ratio=0.5&force=true"
    );
    assert_eq!(r.body, Some(json!({"mode": "eco", "tags": [1, 2]})));

    let args = obj(json!({"zone": "hall", "level": 18446744073709551615u64}));
    assert_eq!(
        t.signature(&args).unwrap(),
        "set_level(hall: 18446744073709551615   )"
    );
    assert_eq!(t.http_request(&args).unwrap().body, Some(json!({})));

    // the unanchored pattern matches whole values only
    let ArgType::String {
        pattern: Some(p), ..
    } = &t.arg("zone").unwrap().kind
    else {
        panic!("zone has a pattern")
    };
    assert_eq!(p.anchored(), "^(?:[a-z]+)$");
    let e = t
        .validate_args(&obj(json!({"zone": "hall1", "level": 1})))
        .unwrap_err();
    assert!(matches!(e.errors[0], ArgError::PatternMismatch { .. }));
    assert_eq!(
        t.input_schema()["properties"]["zone"]["pattern"],
        json!("^(?:[a-z]+)$")
    );
}

#[test]
fn exact_types() {
    let t = tool("set_level");
    let cases = [
        (
            json!({"zone": "a", "level": 1.5}),
            "argument `level` of tool `set_level` must be an integer, got a number (1.5); pass a whole number without fraction or exponent",
        ),
        (
            json!({"zone": "a", "level": 1.0}),
            "argument `level` of tool `set_level` must be an integer, got a number (1.0); pass a whole number without fraction or exponent",
        ),
        (
            json!({"zone": "a", "level": "1"}),
            "argument `level` of tool `set_level` must be an integer, got a string (\"1\"); pass a value of the expected JSON type (values are never converted)",
        ),
        (
            json!({"zone": "a", "level": 1, "ratio": "0.5"}),
            "argument `ratio` of tool `set_level` must be a number, got a string (\"0.5\"); pass a value of the expected JSON type (values are never converted)",
        ),
        (
            json!({"zone": "a", "level": 1, "force": "true"}),
            "argument `force` of tool `set_level` must be a boolean, got a string (\"true\"); pass a value of the expected JSON type (values are never converted)",
        ),
        (
            json!({"zone": "a", "level": 1, "force": 1}),
            "argument `force` of tool `set_level` must be a boolean, got a number (1); pass a value of the expected JSON type (values are never converted)",
        ),
        (
            json!({"zone": "a", "level": 1, "mode": "turbo"}),
            "argument `mode` of tool `set_level` must be one of eco, boost, got \"turbo\"; pass one of the allowed values",
        ),
        (
            json!({"zone": "a", "level": 1, "tags": [1, "2"]}),
            "argument `tags[1]` of tool `set_level` must be an integer, got a string (\"2\"); pass a value of the expected JSON type (values are never converted)",
        ),
        (
            json!({"zone": "a", "level": 1, "tags": 1}),
            "argument `tags` of tool `set_level` must be an array of integers, got a number (1); pass a value of the expected JSON type (values are never converted)",
        ),
        (
            json!({"zone": ["a"], "level": 1}),
            "argument `zone` of tool `set_level` must be a string, got an array of 1 items; pass a single value, one call per value",
        ),
    ];
    for (args, expected) in cases {
        let e = t
            .validate_args(&obj(args.clone()))
            .expect_err(&args.to_string());
        assert_eq!(e.to_string(), expected);
    }
}

#[test]
fn permissive_pattern_still_refuses_forbidden_characters() {
    let t = tool("echo");
    assert_eq!(
        t.signature(&obj(json!({"word": "hello world"}))).unwrap(),
        "echo(hello world)"
    );
    let e = t.signature(&obj(json!({"word": "a, b"}))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "argument `word` of tool `echo` appears in the policy signature and may not contain ',', got \"a, b\"; signature values may not contain * ? [ ] { } ! ( ) , \\ or control characters: pass the exact value, one call per target"
    );
}

proptest! {
    #[test]
    fn signature_values_never_carry_forbidden_characters(word in any::<String>()) {
        let t = tool("echo");
        let args = obj(json!({ "word": word.clone() }));
        match t.signature(&args) {
            Ok(sig) => {
                let inner = sig.strip_prefix("echo(").and_then(|s| s.strip_suffix(')')).unwrap();
                prop_assert_eq!(inner, word.as_str());
                prop_assert_eq!(forbidden_char(inner), None);
            }
            Err(e) => {
                prop_assert!(forbidden_char(&word).is_some(), "{}", e);
            }
        }
    }

    #[test]
    fn path_values_stay_in_their_segment(zone in "[a-z]{1,8}", level in any::<i64>()) {
        let t = tool("set_level");
        let r = t.http_request(&obj(json!({"zone": zone.clone(), "level": level}))).unwrap();
        prop_assert_eq!(r.path, format!("/zones/{zone}/level"));
        prop_assert_eq!(r.query, vec![("level".to_owned(), level.to_string())]);
    }
}

const PATHS: &str = r#"
[services.api]
[tools.get_item]
service = "api"
description = "A free-text path argument."
http = { method = "GET", path = "/items/{name}{/version}" }
args.name = { type = "string" }
args.version = { type = "string", required = false }
"#;

#[test]
fn path_values_cannot_change_the_endpoint() {
    let m = Manifest::from_str(PATHS, "paths.toml").unwrap().manifest;
    let t = m.tool("get_item").unwrap();
    let r = t
        .http_request(&obj(json!({"name": "a/../b c", "version": "1?x=2#f"})))
        .unwrap();
    assert_eq!(r.path, "/items/a%2F..%2Fb%20c/1%3Fx%3D2%23f");
    for bad in ["", ".", ".."] {
        let e = t.http_request(&obj(json!({"name": bad}))).unwrap_err();
        assert_eq!(e.errors[0].kind(), "bad_path_segment");
        let e = t
            .http_request(&obj(json!({"name": "x", "version": bad})))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "argument `version` of tool `get_item` is a URL path segment and may not be {bad:?}; pass the exact non-empty name"
            )
        );
    }
    let e = t
        .validate_args(&obj(json!({"name": "..", "zzz": 1})))
        .unwrap_err();
    assert_eq!(
        e.details(),
        json!([
            {"arg": "zzz", "problem": "undeclared", "message": "tool `get_item` has no argument `zzz`; remove it; the arguments are: name, version"},
            {"arg": "name", "problem": "bad_path_segment", "message": "argument `name` of tool `get_item` is a URL path segment and may not be \"..\"; pass the exact non-empty name"},
        ])
    );
}
