//! The Home Assistant phone app approver: [`HomeAssistantApprover`] shows each request that
//! needs a human as an actionable notification of the Home Assistant companion app, and
//! takes the decision from the action pressed on the phone.
//!
//! # How it talks to Home Assistant
//!
//! - **Notifications** go through the REST API: `POST /api/services/notify/mobile_app_<device>`
//!   for each configured phone ([`notify`]), with the request as text (hidden characters
//!   escaped by [`crate::messengers::visible`]), `data.tag` `agent-gate-<code>` and three
//!   actions (Android shows at most three): **Allow**, **Allow <grant>** (the configured
//!   `grant_minutes`, default 1 h; left out with `grant_minutes: []`) and **Deny**. The
//!   action ids are `AGENTGATE_ALLOW_<code>`, `AGENTGATE_GRANT_<code>` and
//!   `AGENTGATE_DENY_<code>`, where `<code>` is 128 random bits drawn for the request. The
//!   code, the tag and the devices are returned from `notify` and stored with the request,
//!   so presses and the final replacement work after a restart.
//! - **Decisions** come from the `mobile_app_notification_action` events the companion app
//!   fires when an action is pressed, read over the WebSocket API (`/api/websocket`:
//!   `auth` with the token, then `subscribe_events`) by one background task ([`events`]),
//!   which reconnects with exponential backoff when Home Assistant restarts or the
//!   connection drops (and pings every 30 s to notice a dead one). Events fired while it is
//!   not connected are not replayed by Home Assistant: such a press is lost and the request
//!   can be decided elsewhere (or by pressing again while the notification shows). Home
//!   Assistant lets only administrators subscribe to this event, so the token must be an
//!   administrator's.
//!
//! # Who may decide
//!
//! Only events whose action carries the code of a pending request count: the code was only
//! sent to the configured phones, so an action of another notification, another app or a
//! guess changes nothing. With `users:` set, only events whose `context.user_id` (the Home
//! Assistant user the phone is registered to) is listed count; others are ignored and
//! written to the audit log (kind [`REFUSED_AUDIT_KIND`]). Decisions are attributed
//! `home_assistant:<user id>` (`home_assistant:<approver name>` for an event without a
//! user). A press for a request already decided (by the web page, Telegram, the timeout)
//! changes nothing: the store's conditional transition decides, the first decision wins.
//!
//! # When a request ends
//!
//! The notification is **replaced** (same `tag`, no actions) by one that says how the
//! request ended: approved or denied by whom, expired, cancelled. A replacement rather than
//! `clear_notification`, so whoever holds the phone sees that someone else decided. Updates
//! are best effort: a failure is logged and blocks nothing.

mod approver;
mod builder;
pub mod events;
pub mod format;
mod health;
mod inner;
pub mod notify;

pub use approver::HomeAssistantApprover;
pub(crate) use builder::USERS_HELP;
pub use builder::{
    DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_SEND_PATIENCE,
    HomeAssistantApproverBuilder, HomeAssistantError,
};
pub use events::{ACTION_EVENT, REFUSED_AUDIT_KIND, actor_of};
pub use health::HomeAssistantHealth;
