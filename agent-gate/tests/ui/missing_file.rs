// A manifest path that does not exist (relative to CARGO_MANIFEST_DIR).
agent_gate::tools!("tests/ui/manifests/does_not_exist.toml");

fn main() {}
