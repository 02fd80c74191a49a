//! The agent-gate tool manifest (`tools.toml`).
