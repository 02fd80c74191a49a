//! Simulated services the gateway can talk to instead of real ones: the stand-ins of the
//! test suite and the built-in home of `agent-gate demo`.
//!
//! - [`home_assistant`]: an in-process Home Assistant REST API with a demo home.
//! - [`telegram`]: an in-process Telegram Bot API (long polling, buttons, failures).
//! - [`time`]: UTC timestamps formatted and parsed as Home Assistant does.

pub mod home_assistant;
pub mod telegram;
pub mod time;
