//! Messengers that carry approval requests to humans and bring their decisions back: each
//! one implements [`crate::approvals::Approver`].
//!
//! - [`telegram`]: a Telegram bot (long polling, inline Allow / Deny buttons, message edits).
//! - [`web`]: the approval page on the HTTP side (Allow / Deny buttons, history, live updates).
//! - [`home_assistant`]: actionable notifications of the Home Assistant companion app
//!   (`notify.mobile_app_<device>`), decided from `mobile_app_notification_action` events.
//! - [`visible`]: how they all show request text: hidden characters escaped, with a warning.

pub mod home_assistant;
pub mod telegram;
pub mod visible;
pub mod web;
