//! The Bot API client layer: the few methods the approver uses, over `frankenstein`'s typed
//! parameters and answers, with every failure sorted into what to do about it
//! ([`ApiFailure`]: wait `retry_after`, retry with back-off, or give up), and the back-off
//! itself.

use std::time::Duration;

use frankenstein::AsyncTelegramApi;
use frankenstein::client_reqwest::Bot;
use frankenstein::methods::{
    AnswerCallbackQueryParams, EditMessageTextParams, GetUpdatesParams, SendMessageParams,
};
use frankenstein::response::MethodResponse;
use frankenstein::types::{AllowedUpdate, InlineKeyboardMarkup, Message, ReplyMarkup};
use frankenstein::{Error as BotError, ParseMode};
use serde_json::Value;

/// How long a non-polling call may take before it counts as a network failure.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong with a Bot API call, sorted by what the caller should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiFailure {
    /// `429 Too Many Requests`: flood control; wait `retry_after` before the next call.
    Flood {
        /// `parameters.retry_after` of the answer.
        retry_after: Duration,
    },
    /// The network failed, the call timed out, Telegram answered 5xx or something
    /// unreadable: try again after a back-off.
    Transient(String),
    /// Telegram refused the call (4xx other than 429): the same call will fail again.
    Rejected {
        /// `error_code`.
        code: u64,
        /// `description` (never contains the token).
        description: String,
    },
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiFailure::Flood { retry_after } => write!(
                f,
                "flood control: Telegram asked to retry after {} s",
                retry_after.as_secs()
            ),
            ApiFailure::Transient(detail) => write!(f, "Telegram is unreachable: {detail}"),
            ApiFailure::Rejected { code, description } => {
                write!(f, "Telegram refused the call ({code}): {description}")
            }
        }
    }
}

impl ApiFailure {
    fn from_bot(error: BotError) -> Self {
        match error {
            BotError::Api(response) => {
                let retry_after = response
                    .parameters
                    .and_then(|p| p.retry_after)
                    .map(|s| Duration::from_secs(u64::from(s)));
                match (response.error_code, retry_after) {
                    (429, Some(retry_after)) => ApiFailure::Flood { retry_after },
                    (429, None) | (500..=599, _) => ApiFailure::Transient(format!(
                        "{} {}",
                        response.error_code, response.description
                    )),
                    (code, _) => ApiFailure::Rejected {
                        code,
                        description: response.description,
                    },
                }
            }
            BotError::HttpReqwest(error) => ApiFailure::Transient(error_chain(&error)),
            BotError::JsonDecode { source, .. } => {
                ApiFailure::Transient(format!("unreadable answer from the Bot API: {source}"))
            }
            other => ApiFailure::Transient(other.to_string()),
        }
    }

    /// Whether the failure says the bot token is wrong (`401`, or `404` for an unknown bot).
    pub(crate) fn is_bad_token(&self) -> bool {
        matches!(
            self,
            ApiFailure::Rejected {
                code: 401 | 404,
                ..
            }
        )
    }

    /// Whether the failure is a `409 Conflict` (a webhook is set, or another process polls).
    pub(crate) fn is_conflict(&self) -> bool {
        matches!(self, ApiFailure::Rejected { code: 409, .. })
    }

    /// Whether an edit failed only because the text already is what was asked for.
    pub(crate) fn is_not_modified(&self) -> bool {
        matches!(self, ApiFailure::Rejected { code: 400, description } if description.contains("message is not modified"))
    }
}

/// An error and its sources on one line (`error sending request: ...: connection refused`).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A message sent by the bot: where it is, to edit it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct MessageRef {
    pub(crate) chat_id: i64,
    pub(crate) message_id: i32,
}

/// The Bot API methods the approver uses. Its `Debug` never shows the API URL, which holds
/// the bot token.
#[derive(Clone)]
pub(crate) struct BotApi {
    bot: Bot,
    poll_bot: Bot,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BotApi(<redacted>)")
    }
}

impl BotApi {
    /// A client for the bot at `{api_url}/bot{token}`; long polls may last `poll_timeout`.
    pub(crate) fn new(
        api_url: &str,
        token: &str,
        poll_timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let base = format!("{}/bot{token}", api_url.trim_end_matches('/'));
        let client = |timeout: Duration| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(timeout)
                .build()
        };
        Ok(Self {
            bot: Bot::builder()
                .api_url(base.clone())
                .client(client(REQUEST_TIMEOUT)?)
                .build(),
            poll_bot: Bot::builder()
                .api_url(base)
                .client(client(poll_timeout + Duration::from_secs(15))?)
                .build(),
        })
    }

    /// `getUpdates` (long poll for `timeout`): the raw updates, so one update this client
    /// cannot read does not hide the others (or stall the offset).
    pub(crate) async fn get_updates(
        &self,
        offset: Option<i64>,
        timeout: Duration,
    ) -> Result<Vec<Value>, ApiFailure> {
        let params = GetUpdatesParams {
            offset,
            limit: Some(100),
            timeout: Some(u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX)),
            allowed_updates: Some(vec![AllowedUpdate::CallbackQuery]),
        };
        let response: MethodResponse<Vec<Value>> = self
            .poll_bot
            .request("getUpdates", Some(params))
            .await
            .map_err(ApiFailure::from_bot)?;
        Ok(response.result)
    }

    /// `deleteWebhook` (keeping pending updates), so `getUpdates` may be used.
    pub(crate) async fn delete_webhook(&self) -> Result<(), ApiFailure> {
        let params = frankenstein::methods::DeleteWebhookParams {
            drop_pending_updates: Some(false),
        };
        self.bot
            .delete_webhook(&params)
            .await
            .map(drop)
            .map_err(ApiFailure::from_bot)
    }

    /// `sendMessage` in HTML parse mode with an inline keyboard.
    pub(crate) async fn send_message(
        &self,
        chat_id: i64,
        text: &str,
        keyboard: InlineKeyboardMarkup,
    ) -> Result<MessageRef, ApiFailure> {
        let params = SendMessageParams::builder()
            .chat_id(chat_id)
            .text(text)
            .parse_mode(ParseMode::Html)
            .reply_markup(ReplyMarkup::InlineKeyboardMarkup(keyboard))
            .build();
        let response: MethodResponse<Message> = self
            .bot
            .send_message(&params)
            .await
            .map_err(ApiFailure::from_bot)?;
        Ok(MessageRef {
            chat_id: response.result.chat.id,
            message_id: response.result.message_id,
        })
    }

    /// `editMessageText` in HTML parse mode; without `keyboard` the buttons disappear.
    pub(crate) async fn edit_message(
        &self,
        message: MessageRef,
        text: &str,
        keyboard: Option<InlineKeyboardMarkup>,
    ) -> Result<(), ApiFailure> {
        let params = EditMessageTextParams {
            business_connection_id: None,
            chat_id: Some(message.chat_id.into()),
            message_id: Some(message.message_id),
            inline_message_id: None,
            text: text.to_owned(),
            parse_mode: Some(ParseMode::Html),
            entities: None,
            link_preview_options: None,
            reply_markup: keyboard,
        };
        let result: Result<MethodResponse<Value>, _> =
            self.bot.request("editMessageText", Some(params)).await;
        result.map(drop).map_err(ApiFailure::from_bot)
    }

    /// `answerCallbackQuery` with a short notification (an alert if `alert`).
    pub(crate) async fn answer_callback(
        &self,
        query_id: &str,
        text: &str,
        alert: bool,
    ) -> Result<(), ApiFailure> {
        let params = AnswerCallbackQueryParams {
            callback_query_id: query_id.to_owned(),
            text: Some(text.to_owned()),
            show_alert: Some(alert),
            url: None,
            cache_time: None,
        };
        self.bot
            .answer_callback_query(&params)
            .await
            .map(drop)
            .map_err(ApiFailure::from_bot)
    }
}

/// Exponential back-off: `initial`, doubling up to `max`; [`Backoff::reset`] after a success.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let max = max.max(initial);
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The wait before the next attempt (and doubles the one after).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frankenstein::response::{ErrorResponse, ResponseParameters};

    fn api(code: u64, retry_after: Option<u16>) -> BotError {
        BotError::Api(ErrorResponse {
            ok: false,
            description: "Something".into(),
            error_code: code,
            parameters: retry_after.map(|r| ResponseParameters {
                migrate_to_chat_id: None,
                retry_after: Some(r),
            }),
        })
    }

    #[test]
    fn failures_are_sorted_by_what_to_do() {
        assert_eq!(
            ApiFailure::from_bot(api(429, Some(7))),
            ApiFailure::Flood {
                retry_after: Duration::from_secs(7)
            }
        );
        assert!(matches!(
            ApiFailure::from_bot(api(429, None)),
            ApiFailure::Transient(_)
        ));
        assert!(matches!(
            ApiFailure::from_bot(api(502, None)),
            ApiFailure::Transient(_)
        ));
        assert!(ApiFailure::from_bot(api(401, None)).is_bad_token());
        assert!(ApiFailure::from_bot(api(409, None)).is_conflict());
        assert!(matches!(
            ApiFailure::from_bot(api(400, None)),
            ApiFailure::Rejected { code: 400, .. }
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<u64> = (0..5).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let api = BotApi::new(
            "http://127.0.0.1:9",
            "123:secret-token",
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(!format!("{api:?}").contains("secret-token"));
    }
}
