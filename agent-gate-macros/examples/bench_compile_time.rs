//! Measures what `tools!` adds to `cargo check` of the invoking crate for a
//! manifest of 500 tools (budget: at most 2 s on the reference machine).
//!
//! ```sh
//! cargo run -p agent-gate-macros --example bench_compile_time [-- TOOLS RUNS]
//! ```
//!
//! Generates a manifest of TOOLS tools (default 500; every kind of argument,
//! response types, optional arguments) and a crate outside the repository
//! (in the system temp dir) depending on `agent-gate` by path, warms its
//! dependencies up, then times `cargo check` of that crate RUNS times (default
//! 3) without and with the macro call, touching its `lib.rs` each time, and
//! prints the best times and their difference.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn manifest(tools: usize) -> String {
    let mut m = String::from(
        "version = 1\n\n[services.api]\ndescription = \"A large API.\"\n\n\
         [types.Item]\ndescription = \"An item.\"\n\
         fields.id = { type = \"string\", description = \"Id.\" }\n\
         fields.count = { type = \"integer\", required = false, description = \"Count.\" }\n\
         fields.meta = { type = \"object\", required = false, description = \"Metadata.\" }\n\n",
    );
    for i in 0..tools {
        let response = match i % 3 {
            0 => "response = \"Item\"\n",
            1 => "response = \"[Item]\"\n",
            _ => "",
        };
        let wrap = if i % 3 == 1 { ", wrap = \"items\"" } else { "" };
        let _ = write!(
            m,
            "[tools.tool_{i}]\nservice = \"api\"\ndescription = \"Tool number {i}.\"\n\
             signature = \"{{id}}\"\n{response}\
             http = {{ method = \"POST\", path = \"/things/{{id}}\", query = {{ limit = \"limit\" }}, body = [\"name\", \"tags\"], body_merge = \"extra\"{wrap} }}\n\
             args.id = {{ type = \"string\", pattern = \"^[a-z0-9_]+$\", description = \"The id.\" }}\n\
             args.name = {{ type = \"string\", description = \"A name.\" }}\n\
             args.limit = {{ type = \"integer\", required = false, description = \"At most this many.\" }}\n\
             args.tags = {{ type = \"array\", items = \"string\", required = false, description = \"Tags.\" }}\n\
             args.extra = {{ type = \"object\", required = false, description = \"More fields.\" }}\n\n"
        );
    }
    m
}

fn check(dir: &Path, target: &Path) -> Duration {
    let lib = dir.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).expect("read lib.rs");
    std::fs::write(&lib, text).expect("touch lib.rs");
    let start = Instant::now();
    let status = Command::new(env!("CARGO"))
        .args(["check", "-q", "--offline"])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(dir)
        .status()
        .expect("run cargo check");
    let elapsed = start.elapsed();
    assert!(status.success(), "cargo check failed in {}", dir.display());
    elapsed
}

fn best(dir: &Path, target: &Path, runs: usize) -> Duration {
    (0..runs)
        .map(|_| check(dir, target))
        .min()
        .unwrap_or_default()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let tools: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../agent-gate")
        .canonicalize()
        .expect("agent-gate crate");
    let dir: PathBuf = std::env::temp_dir().join("agent-gate-bench-compile-time");
    let target = dir.join("target");
    std::fs::create_dir_all(dir.join("src")).expect("create bench crate");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"bench-tools\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\nagent-gate = {{ path = {:?} }}\n\n[workspace]\n",
            sdk.display().to_string()
        ),
    )
    .expect("write Cargo.toml");
    // Use the repository's lock file so the same dependency versions build offline.
    let _ = std::fs::copy(sdk.join("../Cargo.lock"), dir.join("Cargo.lock"));
    std::fs::write(dir.join("tools.toml"), manifest(tools)).expect("write manifest");

    let without = "//! Bench crate without the macro.\npub fn nothing() {}\n";
    let with = "//! Bench crate with the macro.\n#![deny(missing_docs)]\n\
                /// The generated API.\npub mod api {\n    agent_gate::tools!(\"tools.toml\", trait = Api);\n}\n";

    std::fs::write(dir.join("src/lib.rs"), without).expect("write lib.rs");
    println!(
        "warming up (building dependencies in {}) ...",
        target.display()
    );
    check(&dir, &target);
    let base = best(&dir, &target, runs);

    std::fs::write(dir.join("src/lib.rs"), with).expect("write lib.rs");
    check(&dir, &target);
    let macro_time = best(&dir, &target, runs);

    println!("manifest: {tools} tools, {} bytes", manifest(tools).len());
    println!(
        "cargo check without tools!: {:.2} s (best of {runs})",
        base.as_secs_f64()
    );
    println!(
        "cargo check with tools!:    {:.2} s (best of {runs})",
        macro_time.as_secs_f64()
    );
    println!(
        "added by the macro:         {:.2} s (budget 2.00 s)",
        macro_time.saturating_sub(base).as_secs_f64()
    );
}
