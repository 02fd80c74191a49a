//! In-process stand-ins of the services agent-gate talks to, for tests and `agent-gate demo`.
//!
//! This crate owns simulated versions of Home Assistant's REST API and Telegram's Bot API
//! that behave like the real services (status codes, error bodies, state changes, long
//! polling, failures on demand), served over loopback HTTP inside the calling process. The
//! gateway's and the end-to-end tests use them as a dev-dependency; the gateway's `demo`
//! feature uses the simulated Home Assistant as the home of `agent-gate demo`. Nothing in
//! this crate depends on the gateway.
//!
//! - [`home_assistant`]: an in-process Home Assistant REST API with a demo home.
//! - [`telegram`]: an in-process Telegram Bot API (long polling, buttons, failures).
//! - [`time`]: UTC timestamps formatted and parsed as Home Assistant does.

pub mod home_assistant;
pub mod telegram;
pub mod time;
