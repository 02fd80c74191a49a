// A manifest with several errors: all are reported at once, each with
// file:line:col, with "did you mean" where a name is close.
agent_gate::tools!("../../../../agent-gate/tests/ui/manifests/invalid.toml");

fn main() {}
