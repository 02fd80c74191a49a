//! [`TelegramHealth`]: whether the bot can reach Telegram, as `/healthz` reports it.

use super::format;
use crate::store::Timestamp;

/// Whether the bot can reach Telegram, as reported by
/// [`TelegramApprover::health`](crate::approvals::Approver::health).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelegramHealth {
    /// Not yet in contact (just started).
    Starting,
    /// The last call reached Telegram.
    Connected,
    /// Calls fail (network, timeouts, 5xx) since `since`.
    Unreachable {
        /// When the failures began.
        since: Timestamp,
        /// The last failure.
        error: String,
    },
    /// Telegram refuses the bot (wrong token, another process polling, chat not found).
    Refused {
        /// Why, and what to fix.
        error: String,
    },
}

impl TelegramHealth {
    /// Whether the bot is connected.
    pub fn is_ok(&self) -> bool {
        matches!(self, TelegramHealth::Connected)
    }

    /// A one-line explanation for `/healthz`.
    pub fn describe(&self) -> String {
        match self {
            TelegramHealth::Starting => "telegram: not contacted yet".to_owned(),
            TelegramHealth::Connected => "telegram: connected".to_owned(),
            TelegramHealth::Unreachable { since, error } => format!(
                "telegram unreachable since {}: {error}",
                format::format_time(*since)
            ),
            TelegramHealth::Refused { error } => format!("telegram refuses the bot: {error}"),
        }
    }
}
