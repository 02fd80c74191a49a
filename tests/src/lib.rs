//! End-to-end tests of agent-gate live in `tests/`; this crate has no library code.
