//! Procedural macros for agent-gate.
