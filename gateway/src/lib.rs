//! The agent-gate execution gateway.
//!
//! Each module owns one concept:
//!
//! - [`allocator`]: the process allocator (mimalloc) and its memory settings.
//! - [`app`]: the library entry point: `Gateway::builder(..).start()` and the running gateway.
//! - [`approvals`]: the `Approver` trait, decisions on pending requests, an in-process approver.
//! - [`cli`]: the `agent-gate` command line (clap tree, `check`, `policy explain`).
//! - [`config`]: `config.yaml` and `permissions.yaml` loading, `${VAR}` substitution, validation.
//! - [`demo`]: demo mode (`agent-gate demo`, cargo feature `demo`, on by default): a gateway with a simulated Home Assistant (from `agent-gate-sim`), the web approval page and example permissions, on loopback.
//! - [`executor`]: executes allowed tool calls as HTTP requests to their services (credentials, errors, health).
//! - [`health`]: the HTTP side's `/healthz` endpoint (store, approvers, services).
//! - `metrics`: Prometheus metrics, `/metrics` on the HTTP side.
//! - [`messengers`]: approvers that reach humans through messengers (the Telegram bot).
//! - [`policy`]: the permission engine (glob rules over signatures: deny, allow, ask, defaults).
//! - [`ratelimit`]: per-agent request rate window and the failed-authentication throttle.
//! - [`rule`]: the vocabulary of a permission rule (its action and glob pattern), shared by `config` and `policy`.
//! - [`runtime`]: the binary's async runtime, whose workers yield the CPU to the store's writer.
//! - [`server`]: the WebSocket JSON-RPC server: TLS, auth, frames, the request engine.
//! - [`store`]: the SQLite store: the request state machine and the append-only audit log.

pub mod admin;
pub mod allocator;
pub mod app;
pub mod approvals;
pub mod cli;
pub mod config;
/// The request engine every front shares (see its module docs).
pub(crate) mod delivery;
#[cfg(feature = "demo")]
pub mod demo;
pub(crate) mod engine;
pub mod executor;
pub mod health;
pub(crate) mod mcp;
/// The stdio MCP bridge of `agent-gate mcp` (see its module docs).
pub(crate) mod mcp_bridge;
pub mod messengers;
/// Prometheus metrics and `/metrics` (see its module docs).
pub(crate) mod metrics;
pub mod policy;
pub mod ratelimit;
pub mod rule;
pub mod runtime;
pub mod server;
pub mod store;
