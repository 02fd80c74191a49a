//! The Telegram guardian bot: [`TelegramApprover`] shows each request that needs a human in
//! the configured chat, with Allow / Deny buttons, takes the decision of an allowed user,
//! and edits the message to say how the request ended.
//!
//! # How it talks to Telegram
//!
//! Through the Bot API (`frankenstein`'s typed methods; the API URL is configurable so tests
//! use the fake Telegram of the `agent-gate-sim` crate, `agent_gate_sim::telegram`), with
//! long polling:
//!
//! - one background task calls `getUpdates` (only `callback_query` updates) with the offset
//!   one past the last update it handled. Telegram deletes an update once a later call
//!   confirms it with a higher offset, so within a run no update is handled twice; at a clean
//!   stop the last batch is confirmed before the task ends. After a crash Telegram may
//!   deliver the last unconfirmed batch again; that is harmless because a decision goes
//!   through the store's conditional transition (a second decision of the same request is
//!   "already decided") — the offset needs no storage of its own;
//! - network errors and `5xx` answers back off exponentially ([`TelegramApproverBuilder::backoff`]),
//!   `429 Too Many Requests` waits exactly `parameters.retry_after`, and a set webhook
//!   (`409`) is deleted once. Telegram being unreachable never stops the gateway: allowed
//!   calls go on, and [`TelegramApprover::health`](crate::approvals::Approver::health) (read
//!   by `/healthz`) says why the bot is not connected until it is back.
//!
//! # Messages and buttons
//!
//! The message (HTML parse mode, every value escaped, long parts truncated) shows the tool,
//! signature, agent, arguments and expiry. The callback data of its buttons is just the
//! verdict and the request's identity ([`format::callback_data`]), so a button keeps working
//! after a restart for as long as its request is pending. Presses count only from
//! `allowed_users`; anyone else is answered "not allowed" and the attempt is written to the
//! audit log (kind [`REFUSED_AUDIT_KIND`], actor `telegram:...`). Every press is
//! answered (`answerCallbackQuery`): approved, denied, already decided, expired.
//! Decisions are attributed `telegram:@username` (or `telegram:<user id>` without one).
//!
//! When a request ends (decision, timeout, cancellation) its message is edited to say what
//! happened, by whom and when, and loses its buttons. At shutdown the messages of pending
//! requests are edited to say the gateway stopped (their buttons stay); at the next start
//! they are restored. Edits are best effort: a failed edit is logged and blocks nothing.
//! If a message could not be sent because Telegram was unreachable, it is sent once
//! Telegram is back (if its request is still pending).

mod api;
mod approver;
mod builder;
pub mod format;
mod health;
mod inner;
mod messages;
mod updates;

pub use approver::TelegramApprover;
pub use builder::{
    DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_NAME, DEFAULT_POLL_TIMEOUT,
    DEFAULT_SEND_PATIENCE, TelegramApproverBuilder, TelegramError,
};
pub use health::TelegramHealth;
pub use updates::{NOT_ALLOWED_ANSWER, REFUSED_AUDIT_KIND, RETRY_LATER_ANSWER, actor_of};
