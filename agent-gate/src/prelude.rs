//! The names most programs need: `use agent_gate::prelude::*;` brings the
//! client, its errors, the typed Home Assistant methods ([`HomeAssistant`])
//! and the generic [`CallTool::call`] into scope.

pub use crate::ha::{HomeAssistant, State};
pub use crate::tools::{CallTool, Tool};
pub use crate::{AgentGateClient, CallOptions, Error, ErrorKind};
