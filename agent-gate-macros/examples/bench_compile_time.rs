//! Measures what `tools!` adds to `cargo check` of the invoking crate for a
//! manifest of 500 tools (budget: at most 2 s on the reference machine).
//!
//! ```sh
//! cargo run --release -p agent-gate-macros --example bench_compile_time [-- TOOLS|MANIFEST RUNS]
//! ```
//!
//! Generates a manifest of TOOLS tools (default 500; every kind of argument,
//! response types, optional arguments), or takes the manifest file MANIFEST
//! (e.g. `tools.toml`, the 9 Home Assistant tools), and a crate outside the
//! repository (in the system temp dir) invoking `tools!` on it under
//! `#![deny(missing_docs)]`, depending on `agent-gate` by path. Then it times
//! `cargo check` of that crate RUNS times (default 3) without and with the
//! macro call, touching its `lib.rs` each time, and prints the best times and
//! their difference: first incrementally (cargo's default: what an edit of
//! the crate costs), then with `CARGO_INCREMENTAL=0` (a first check).
//!
//! Measured on the 2-core reference machine with other builds running (load
//! average 2 to 2.5): 500 tools add 1.9 s to an incremental check and 3.3 s
//! to a first one (best of 5; the derive-based expansion added 7.1 s and
//! 15.1 s); the 9 Home Assistant tools add 0.04 s and 0.09 s. About 0.35 s
//! of the incremental time is the manifest crate parsing the 300 kB manifest
//! in the unoptimised proc-macro. See `agent-gate/README.md` ("Compile time")
//! and `agent-gate-macros/src/codegen.rs` for how the expansion is kept cheap.

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

fn check(dir: &Path, target: &Path, incremental: bool) -> Duration {
    let lib = dir.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).expect("read lib.rs");
    std::fs::write(&lib, text).expect("touch lib.rs");
    let start = Instant::now();
    let status = Command::new(env!("CARGO"))
        .args(["check", "-q", "--offline"])
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_INCREMENTAL", if incremental { "1" } else { "0" })
        .current_dir(dir)
        .status()
        .expect("run cargo check");
    let elapsed = start.elapsed();
    assert!(status.success(), "cargo check failed in {}", dir.display());
    elapsed
}

fn best(dir: &Path, target: &Path, runs: usize, incremental: bool) -> Duration {
    (0..runs)
        .map(|_| check(dir, target, incremental))
        .min()
        .unwrap_or_default()
}

/// The best times of `cargo check` of the bench crate without and with the
/// macro call, in seconds.
fn measure(dir: &Path, target: &Path, runs: usize, incremental: bool) -> (f64, f64) {
    let lib = dir.join("src/lib.rs");
    let without = "//! Bench crate without the macro.\npub fn nothing() {}\n";
    let with = "//! Bench crate with the macro.\n#![deny(missing_docs)]\n\
                /// The generated API.\npub mod api {\n    agent_gate::tools!(\"tools.toml\", trait = Api);\n}\n";
    let best_of = |text: &str| {
        std::fs::write(&lib, text).expect("write lib.rs");
        check(dir, target, incremental); // warm up (and build agent-gate for this mode)
        best(dir, target, runs, incremental).as_secs_f64()
    };
    (best_of(without), best_of(with))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let source = args.next().unwrap_or_else(|| "500".to_owned());
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let (text, what) = match source.parse::<usize>() {
        Ok(tools) => (manifest(tools), format!("{tools} generated tools")),
        Err(_) => (
            std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("{source}: {e}")),
            format!("the manifest {source}"),
        ),
    };
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
    std::fs::write(dir.join("tools.toml"), &text).expect("write manifest");

    println!(
        "bench crate in {} (dependencies are built on the first run) ...",
        dir.display()
    );
    println!("manifest: {what}, {} bytes", text.len());
    for (incremental, mode) in [(true, "incremental"), (false, "CARGO_INCREMENTAL=0")] {
        let (base, with) = measure(&dir, &target, runs, incremental);
        println!("cargo check ({mode}, best of {runs}):");
        println!("  without tools!:     {base:.2} s");
        println!("  with tools!:        {with:.2} s");
        println!(
            "  added by the macro: {:.2} s (budget 2.00 s)",
            (with - base).max(0.0)
        );
    }
}
