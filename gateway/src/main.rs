//! The `agent-gate` binary.

fn main() {}
