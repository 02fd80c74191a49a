//! Messengers that carry approval requests to humans and bring their decisions back: each
//! one implements [`crate::approvals::Approver`].
//!
//! - [`telegram`]: a Telegram bot (long polling, inline Allow / Deny buttons, message edits).
//! - [`web`]: the approval page on the HTTP side (Allow / Deny buttons, history, live updates).
//! - [`visible`]: how both show request text: hidden characters escaped, with a warning.

pub mod telegram;
pub mod visible;
pub mod web;
