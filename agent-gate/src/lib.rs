//! Rust SDK for the agent-gate execution gateway.
