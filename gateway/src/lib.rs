//! The agent-gate execution gateway.
//!
//! Each module owns one concept:
//!
//! - [`cli`]: the `agent-gate` command line (clap tree, `check`, `policy explain`).
//! - [`config`]: `config.yaml` and `permissions.yaml` loading, `${VAR}` substitution, validation.
//! - [`policy`]: the permission engine (glob rules over signatures: deny, allow, ask, defaults).
//! - [`store`]: the SQLite store: the request state machine and the append-only audit log.

pub mod cli;
pub mod config;
pub mod policy;
pub mod store;
