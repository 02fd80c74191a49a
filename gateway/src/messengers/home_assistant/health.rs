//! [`HomeAssistantHealth`]: whether the approver hears the phones' presses (its WebSocket
//! connection to Home Assistant), as `/healthz` reports it.

use crate::messengers::telegram::format::format_time;
use crate::store::Timestamp;

/// The state of the event connection, as reported by
/// [`HomeAssistantApprover::health`](crate::approvals::Approver::health).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeAssistantHealth {
    /// Not connected yet (just started).
    Starting,
    /// Authenticated and subscribed to `mobile_app_notification_action`.
    Connected,
    /// Home Assistant cannot be reached (network, restart, handshake) since `since`.
    Unreachable {
        /// When the failures began.
        since: Timestamp,
        /// The last failure.
        error: String,
    },
    /// Home Assistant refuses the approver (`auth_invalid`: wrong or revoked token, or the
    /// subscription refused).
    Refused {
        /// Why, and what to fix.
        error: String,
    },
    /// The approver has stopped.
    Stopped,
}

impl HomeAssistantHealth {
    /// Whether presses are heard.
    pub fn is_ok(&self) -> bool {
        matches!(self, HomeAssistantHealth::Connected)
    }

    /// A one-line explanation for `/healthz`.
    pub fn describe(&self) -> String {
        match self {
            HomeAssistantHealth::Starting => "home assistant: not connected yet".to_owned(),
            HomeAssistantHealth::Connected => {
                "home assistant: connected, listening for notification actions".to_owned()
            }
            HomeAssistantHealth::Unreachable { since, error } => format!(
                "home assistant unreachable since {}: {error}",
                format_time(*since)
            ),
            HomeAssistantHealth::Refused { error } => {
                format!("home assistant refuses the approver: {error}")
            }
            HomeAssistantHealth::Stopped => "home assistant: stopped".to_owned(),
        }
    }
}
