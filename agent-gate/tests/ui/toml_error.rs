// A manifest with a TOML syntax error: reported with file:line:col.
// (trybuild compiles this file in target/tests/trybuild/agent-gate, which is
// the CARGO_MANIFEST_DIR here; the path climbs back to agent-gate/tests/ui.)
agent_gate::tools!("../../../../agent-gate/tests/ui/manifests/toml_error.toml");

fn main() {}
