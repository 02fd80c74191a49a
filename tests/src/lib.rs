//! End-to-end tests of agent-gate live in `tests/`; this crate has no library code of its own.
//!
//! Its documentation is the repository README, so that `cargo test` compiles every Rust code
//! block of the README (the examples users copy must keep working).
#![doc = include_str!("../../README.md")]
