//! Measures loading the repository's `tools.toml` and the per-call work the
//! gateway does (validate + signature + request building).
//!
//! `cargo run --release -p agent-gate-manifest --example bench_manifest`

use std::hint::black_box;
use std::time::Instant;

use agent_gate_manifest::Manifest;
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools.toml");
    let source = std::fs::read_to_string(path)?;

    let rounds = 200u32;
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(Manifest::from_str(black_box(&source), "tools.toml")?);
    }
    let load = start.elapsed() / rounds;
    println!("load tools.toml (parse + check + compile regexes): {load:?}");

    let manifest = Manifest::from_str(&source, "tools.toml")?.manifest;
    let tool = manifest
        .tool("ha_call_service")
        .ok_or("ha_call_service missing")?;
    let args = json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom", "data": {"brightness": 128}});
    let args = args.as_object().ok_or("not an object")?;

    let calls = 200_000u32;
    let start = Instant::now();
    for _ in 0..calls {
        black_box(tool.signature(black_box(args))?);
        black_box(tool.http_request(black_box(args))?);
    }
    let per_call = start.elapsed() / calls;
    println!(
        "ha_call_service: validate + signature + validate + http_request: {per_call:?} per call"
    );

    let start = Instant::now();
    for _ in 0..calls {
        black_box(manifest.nearest_tools(black_box("ha_call_servce"), 3));
    }
    println!("nearest_tools over 9 tools: {:?}", start.elapsed() / calls);
    Ok(())
}
