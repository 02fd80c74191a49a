//! The agent-gate execution gateway.
//!
//! Each module owns one concept:
//!
//! - [`cli`]: the `agent-gate` command line (clap tree, `check`, `policy explain`).
//! - [`config`]: `config.yaml` and `permissions.yaml` loading, `${VAR}` substitution, validation.
//! - [`executor`]: executes allowed tool calls as HTTP requests to their services (credentials, errors, health).
//! - [`policy`]: the permission engine (glob rules over signatures: deny, allow, ask, defaults).
//! - [`store`]: the SQLite store: the request state machine and the append-only audit log.
//! - [`simulator`]: simulated services (an in-process Home Assistant) for tests and `agent-gate demo`.

pub mod cli;
pub mod config;
pub mod executor;
pub mod policy;
pub mod simulator;
pub mod store;
