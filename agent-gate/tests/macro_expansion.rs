//! Compiles and exercises the pinned expansion of `macro_fixtures/small.toml`
//! (the text of agent-gate-macros' `expansion_snapshot`), so the snapshot
//! reviewers read is code that builds and works, and checks it matches what
//! the macro itself generates for the same manifest.

#![deny(missing_docs)]

#[path = "macro_fixtures/gateway.rs"]
mod gateway;

/// The pinned expansion.
#[allow(dead_code)]
mod pinned {
    include!("macro_fixtures/small_expanded.rs");
}

/// The macro invoked on the same manifest.
#[allow(dead_code)]
mod live {
    agent_gate::tools!("tests/macro_fixtures/small.toml", trait = Lights);
}

use agent_gate::prelude::*;
use agent_gate::tools::ToolCall;
use gateway::{Script, ScriptedGateway};
use pinned::{Light, LightGetArgs, LightListArgs, LightSetArgs, Lights};
use serde_json::{Value, json};

#[test]
fn constants_describe_the_manifest() {
    assert_eq!(pinned::TOOL_NAMES, ["light_get", "light_list", "light_set"]);
    assert_eq!(pinned::TOOL_NAMES, live::TOOL_NAMES);
    let manifest = agent_gate_manifest::Manifest::load(&[concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/macro_fixtures/small.toml"
    )])
    .unwrap()
    .manifest;
    assert_eq!(pinned::MANIFEST_HASH, manifest.hash());
    assert_eq!(live::MANIFEST_HASH, manifest.hash());
    assert_eq!(pinned::MANIFEST.hash().unwrap(), manifest.hash());
    assert_eq!(pinned::json_schema().unwrap(), manifest.json_schema());
    assert_eq!(<LightSetArgs as Tool>::NAME, "light_set");
    assert_eq!(<LightListArgs as Tool>::WRAP, Some("lights"));
    assert_eq!(
        <LightGetArgs as Tool>::input_schema().unwrap(),
        manifest.tool("light_get").unwrap().input_schema()
    );
}

#[test]
fn optional_arguments_are_skipped_when_none() {
    let args = LightSetArgs {
        id: "kitchen".into(),
        mode: "on".into(),
        level: None,
        ratio: Some(0.5),
        tags: None,
        extra: Default::default(),
    };
    assert_eq!(
        serde_json::to_value(&args).unwrap(),
        json!({"id": "kitchen", "mode": "on", "ratio": 0.5, "extra": {}})
    );
    args.validate().unwrap();
    let back: LightSetArgs =
        serde_json::from_value(json!({"id": "kitchen", "mode": "on", "ratio": 0.5, "extra": {}}))
            .unwrap();
    assert_eq!(back, args);
    // Unknown fields are refused, as by the gateway.
    assert!(
        serde_json::from_value::<LightSetArgs>(json!({"id": "k", "mode": "on", "x": 1})).is_err()
    );
}

/// What the generated impls stand in for: `LightSetArgs` as the derives
/// would make it.
mod derived {
    #![allow(missing_docs)]

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct LightSetArgs {
        pub id: String,
        pub mode: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub level: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ratio: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tags: Option<Vec<String>>,
        pub extra: serde_json::Map<String, serde_json::Value>,
    }
}

#[test]
fn generated_impls_behave_like_the_derives() {
    let inputs = [
        json!({"id": "k", "mode": "on", "extra": {}}),
        json!({"id": "k", "mode": "on", "level": 3, "ratio": 0.5, "tags": ["a"], "extra": {"x": [1]}}),
        json!({"extra": {}, "tags": null, "mode": "off", "id": "k", "level": null}),
        json!({"id": "k", "extra": {}}),
        json!({"id": 1, "mode": "on", "extra": {}}),
        json!({"id": "k", "mode": "on", "level": 1.5, "extra": {}}),
        json!({"id": "k", "mode": "on", "tags": "a", "extra": {}}),
        json!({"id": "k", "mode": "on", "extra": []}),
        json!({"id": "k", "mode": "on", "extra": {}, "colour": "red"}),
        json!({"id": null, "mode": "on", "extra": {}}),
        json!("kitchen"),
        json!(null),
    ];
    for input in inputs {
        let ours = serde_json::from_value::<LightSetArgs>(input.clone());
        let theirs = serde_json::from_value::<derived::LightSetArgs>(input.clone());
        match (ours, theirs) {
            (Ok(ours), Ok(theirs)) => {
                assert_eq!(format!("{ours:?}"), format!("{theirs:?}"), "{input}");
                assert_eq!(format!("{ours:#?}"), format!("{theirs:#?}"), "{input}");
                assert_eq!(
                    serde_json::to_string(&ours).unwrap(),
                    serde_json::to_string(&theirs).unwrap(),
                    "{input}"
                );
                assert_eq!(ours.clone(), ours, "{input}");
                let mut other = ours.clone();
                other.level = Some(other.level.unwrap_or_default() + 1);
                assert_ne!(other, ours, "{input}");
            }
            (Err(ours), Err(theirs)) => {
                assert_eq!(ours.to_string(), theirs.to_string(), "{input}")
            }
            (ours, theirs) => panic!("{input}: generated {ours:?}, derived {theirs:?}"),
        }
    }
    // The one difference: the derive also read a JSON array of the fields in
    // order; arguments are objects (the gateway accepts nothing else).
    let array = json!(["k", "on", null, null, null, {}]);
    assert!(serde_json::from_value::<derived::LightSetArgs>(array.clone()).is_ok());
    assert_eq!(
        serde_json::from_value::<LightSetArgs>(array)
            .unwrap_err()
            .to_string(),
        "invalid type: sequence, expected struct LightSetArgs"
    );
    // From text too (where serde_json adds positions to its own errors).
    let text = r#"{"id": "k", "mode": "on", "extra": {}, "level": 2}"#;
    let ours: LightSetArgs = serde_json::from_str(text).unwrap();
    let theirs: derived::LightSetArgs = serde_json::from_str(text).unwrap();
    assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
    let missing = serde_json::from_str::<LightSetArgs>(r#"{"id": "k", "extra": {}}"#);
    assert!(
        missing
            .unwrap_err()
            .to_string()
            .starts_with("missing field `mode`"),
        "serde's message"
    );
}

#[test]
fn validate_enforces_patterns_and_enums() {
    let bad = LightSetArgs {
        id: "Kitchen!".into(),
        mode: "blink".into(),
        level: None,
        ratio: None,
        tags: None,
        extra: json!({"owner": "me"}).as_object().unwrap().clone(),
    };
    let err = bad.validate().unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Validation);
    let m = err.message();
    assert!(
        m.contains("`id`") && m.contains("must match the pattern"),
        "{m}"
    );
    assert!(m.contains("`mode`"), "{m}");
    assert!(m.contains("owner"), "{m}");
    assert_eq!(err.details().unwrap().as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn generated_methods_call_the_gateway() {
    let light =
        json!({"id": "kitchen", "on": true, "level": 200, "room": "extra fields are kept out"});
    let mut script = Script::default();
    script.data.insert("light_get".into(), light.clone());
    script
        .data
        .insert("light_list".into(), json!({"lights": [light.clone()]}));
    script.data.insert("light_set".into(), json!({"ok": true}));
    let mut gw = ScriptedGateway::start(script).await;
    let client = gw.client().await;

    let got: Light = client.light_get("kitchen").await.unwrap();
    assert_eq!(
        got,
        Light {
            id: "kitchen".into(),
            on: true,
            level: Some(200)
        }
    );
    let frame: Value = serde_json::from_str(&gw.next_frame().await).unwrap();
    assert_eq!(frame["params"]["args"], json!({"id": "kitchen"}));

    let list: Vec<Light> = client.light_list().room("attic").await.unwrap();
    assert_eq!(list, vec![got.clone()]);
    let frame: Value = serde_json::from_str(&gw.next_frame().await).unwrap();
    assert_eq!(frame["params"]["args"], json!({"room": "attic"}));

    // A positional object argument that is not an object fails locally.
    let err = client.light_set("kitchen", "on", 5).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Validation);
    assert!(err.message().contains("must be an object"), "{err}");

    let done = client
        .light_set("kitchen", "toggle", json!({"fade": true}))
        .level(10)
        .tags(vec!["a".into()])
        .await
        .unwrap();
    assert_eq!(done, json!({"ok": true}));
    let frame: Value = serde_json::from_str(&gw.next_frame().await).unwrap();
    assert_eq!(
        frame["params"]["args"],
        json!({"id": "kitchen", "mode": "toggle", "level": 10, "tags": ["a"], "extra": {"fade": true}})
    );

    // The live expansion's trait works the same way.
    let live_got = live::Lights::light_get(&client, "kitchen").await.unwrap();
    assert_eq!(live_got.id, "kitchen");

    // A call built from a struct, through the generic ToolCall.
    let call: ToolCall<'_, LightGetArgs> = client.call(LightGetArgs {
        id: "bad id".into(),
    });
    assert_eq!(call.args().unwrap().id, "bad id");
    let err = call.await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Validation);
}
