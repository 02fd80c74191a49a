//! Rust SDK for the agent-gate execution gateway.
//!
//! - [`AgentGateClient`]: connect, authenticate, call tools (plain or streaming),
//!   reconnect transparently.
//! - [`Error`] / [`ErrorKind`]: typed errors with code, message, suggestion, details.
//! - [`protocol`]: the JSON-RPC 2.0 wire types shared with the gateway.
#![warn(missing_docs)]

pub mod client;
pub mod error;
pub mod protocol;

pub use client::{
    AgentGateClient, CallEvent, CallOptions, CallStream, ClientBuilder, ClientConfig,
    ConnectionState,
};
pub use error::{AgentGateError, DeniedBy, Error, ErrorKind};

#[doc(hidden)]
/// Re-exports used by code generated from the tool manifest. Not a stable API.
pub mod __private {
    pub use schemars;
    pub use serde;
    pub use serde_json;
}
