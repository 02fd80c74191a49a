//! Rust SDK for the agent-gate execution gateway.
//!
//! - [`protocol`]: the JSON-RPC 2.0 wire types shared with the gateway.
#![warn(missing_docs)]

pub mod protocol;

#[doc(hidden)]
/// Re-exports used by code generated from the tool manifest. Not a stable API.
pub mod __private {
    pub use schemars;
    pub use serde;
    pub use serde_json;
}
