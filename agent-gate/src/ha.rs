//! The Home Assistant tools, generated at compile time from the tool manifest
//! by [`tools!`](crate::tools!): one typed method per tool on the
//! [`HomeAssistant`] trait (implemented for [`AgentGateClient`](crate::AgentGateClient)),
//! one arguments struct per tool (e.g. [`HaGetStateArgs`]), and the
//! [`State`] response type.
//!
//! ```no_run
//! use agent_gate::prelude::*;
//! # async fn run() -> Result<(), agent_gate::Error> {
//! let gw = AgentGateClient::from_env().await?;
//! let state: State = gw.ha_get_state("sensor.kitchen_temperature").await?;
//! println!("{} is {}", state.entity_id, state.state);
//! gw.ha_call_service("light", "turn_on")
//!     .entity_id("light.bedroom")
//!     .data(serde_json::json!({"brightness": 128}))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The manifest is `agent-gate/tools.toml`, a byte-identical copy of the
//! repository's `tools.toml` (so the crate builds when packaged on its own;
//! the `macro_manifest_copy` test fails when they differ).

crate::tools!("tools.toml", trait = HomeAssistant);
