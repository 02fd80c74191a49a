//! Compile errors of `tools!` and of calls that do not match the manifest,
//! pinned as trybuild `.stderr` snapshots (regenerate with
//! `TRYBUILD=overwrite cargo test -p agent-gate --test macro_ui`).

#[test]
fn compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
