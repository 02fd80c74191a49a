//! An in-process Telegram Bot API: the HTTP server the gateway's Telegram approver talks to
//! in tests, served over real HTTP by axum and following the real API's rules.
//!
//! What it mirrors (from <https://core.telegram.org/bots/api>):
//!
//! - requests go to `/bot<token>/<method>` with `GET` or `POST`; parameters come from the
//!   query string, a JSON body or a form-encoded body (where objects such as `reply_markup`
//!   are JSON-serialised strings); method names are case-insensitive;
//! - every answer is an envelope `{"ok": true, "result": ...}` or
//!   `{"ok": false, "error_code": N, "description": "...", "parameters"?: {"retry_after": N}}`
//!   with the HTTP status equal to `error_code`; a wrong token is `401 Unauthorized`, an unknown
//!   method `404 Not Found`;
//! - `getUpdates` with `offset` (confirms every update below it; negative counts from the
//!   end), `limit`, `timeout` (long polling: answers as soon as an update arrives) and
//!   `allowed_updates` (remembered between calls); a second concurrent `getUpdates` ends the
//!   first with `409 Conflict`, as Telegram does when two bot instances poll;
//! - `sendMessage`, `editMessageText` (an edit without `reply_markup` removes the inline
//!   keyboard; an identical edit is `400 message is not modified`), `answerCallbackQuery`
//!   (each query can be answered once), `getMe`, `deleteWebhook`;
//! - `parse_mode: HTML` is checked as Telegram checks it: only the supported tags, properly
//!   nested, and only the `&lt;` `&gt;` `&amp;` `&quot;` and numeric entities; otherwise
//!   `400 can't parse entities`; texts longer than 4096 characters are refused;
//!   `callback_data` must be 1–64 bytes (`BUTTON_DATA_INVALID`).
//!
//! For tests it plays the humans ([`FakeTelegram::press_button`] queues a callback query
//! for a message's button), records every call, sent and edited message and callback
//! answer, can inject failures ([`Fault`]: `429` with `retry_after`, `5xx`) and can be "down"
//! ([`FakeTelegram::set_down`]: connections are reset, as if the network were gone).
//! [`FakeTelegram::wait_for`] waits on an explicit signal for a condition to become true.
//!
//! # Example
//!
//! ```
//! use agent_gate_sim::telegram::FakeTelegram;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let telegram = FakeTelegram::new("123:secret");
//! let server = telegram.spawn("127.0.0.1:0").await?;
//! // The bot's API URL is `{server.url()}/bot123:secret`.
//! let me: serde_json::Value = reqwest::get(format!("{}/bot123:secret/getMe", server.url()))
//!     .await
//!     .map_err(std::io::Error::other)?
//!     .json()
//!     .await
//!     .map_err(std::io::Error::other)?;
//! assert_eq!(me["result"]["is_bot"], true);
//! server.shutdown().await
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The bot user the fake answers `getMe` with (and sends messages as).
pub const BOT_USER_ID: u64 = 7_000_000_001;

/// The bot's username.
pub const BOT_USERNAME: &str = "agent_gate_test_bot";

/// The longest message text Telegram accepts (after entity parsing).
pub const MAX_TEXT_CHARS: usize = 4096;

/// The longest `callback_data` Telegram accepts, in bytes.
pub const MAX_CALLBACK_DATA_BYTES: usize = 64;

/// The longest `getUpdates` timeout the fake honours (Telegram's own limit is undocumented;
/// 50 s is what long-polling bots use in practice).
const MAX_POLL_TIMEOUT_SECS: u64 = 50;

/// A Telegram user who presses buttons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeUser {
    /// The user id.
    pub id: u64,
    /// The `@username`, without the `@`.
    pub username: Option<String>,
    /// The first name.
    pub first_name: String,
}

impl FakeUser {
    /// A user with id `id` and first name `User<id>`.
    pub fn new(id: u64) -> Self {
        Self {
            id,
            username: None,
            first_name: format!("User{id}"),
        }
    }

    /// Sets the `@username` (without the `@`).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    fn to_json(&self) -> Value {
        let mut user = json!({"id": self.id, "is_bot": false, "first_name": self.first_name});
        if let (Some(username), Some(object)) = (&self.username, user.as_object_mut()) {
            object.insert("username".into(), json!(username));
        }
        user
    }
}

/// An inline keyboard button of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeButton {
    /// The label.
    pub text: String,
    /// The callback data sent back when it is pressed.
    pub callback_data: Option<String>,
}

/// A message as the fake holds it (and as it was at a send or an edit, in the records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMessage {
    /// The chat.
    pub chat_id: i64,
    /// The message id (unique across the fake's chats).
    pub message_id: i32,
    /// The text as users see it (markup removed, entities decoded).
    pub text: String,
    /// The text as the bot sent it (with markup).
    pub raw_text: String,
    /// The `parse_mode` it was sent with.
    pub parse_mode: Option<String>,
    /// The inline keyboard, row by row (empty: none).
    pub buttons: Vec<Vec<FakeButton>>,
    /// How many times it was edited.
    pub edits: u32,
}

impl FakeMessage {
    /// Every button, row after row.
    pub fn all_buttons(&self) -> impl Iterator<Item = &FakeButton> {
        self.buttons.iter().flatten()
    }

    /// The callback data of the button labelled `text`, if there is one.
    pub fn callback_data(&self, text: &str) -> Option<&str> {
        self.all_buttons()
            .find(|b| b.text == text)
            .and_then(|b| b.callback_data.as_deref())
    }
}

/// How the bot answered a callback query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackAnswer {
    /// The query answered.
    pub callback_query_id: String,
    /// The notification text, if any.
    pub text: Option<String>,
    /// Whether it was shown as an alert.
    pub show_alert: bool,
}

/// One API call the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// The method as requested (e.g. `sendMessage`).
    pub method: String,
    /// The parameters, merged from query string and body.
    pub params: Value,
    /// When it arrived (tokio's clock, so tests on a paused clock can check back-off).
    pub at: Instant,
    /// The HTTP status answered (`0` when the connection was dropped because the fake was down).
    pub status: u16,
}

/// A failure to inject into the fake's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    status: u16,
    description: String,
    retry_after: Option<u32>,
    method: Option<String>,
    remaining: Option<u32>,
}

impl Fault {
    /// `429 Too Many Requests: retry after N` with `parameters.retry_after = N`, as Telegram's
    /// flood control answers.
    pub fn retry_after(seconds: u32) -> Self {
        Self {
            status: 429,
            description: format!("Too Many Requests: retry after {seconds}"),
            retry_after: Some(seconds),
            method: None,
            remaining: Some(1),
        }
    }

    /// An error answer with this HTTP status (e.g. `500 Internal Server Error`, `502 Bad
    /// Gateway`), in Telegram's envelope.
    pub fn status(status: u16) -> Self {
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        Self {
            status,
            description: reason.to_owned(),
            retry_after: None,
            method: None,
            remaining: Some(1),
        }
    }

    /// Applies only to calls of `method` (case-insensitive).
    pub fn on_method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Applies to the next `n` matching calls (the default is one).
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Applies to every matching call until [`FakeTelegram::clear_faults`].
    pub fn always(mut self) -> Self {
        self.remaining = None;
        self
    }

    fn matches(&self, method: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

/// Why [`FakeTelegram::press_button`] could not press.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PressError {
    /// No message with that id.
    #[error("fake Telegram: there is no message {0}; press a button of a message the bot sent")]
    NoSuchMessage(i32),
    /// The message has no button with that callback data (e.g. its keyboard was removed).
    #[error(
        "fake Telegram: message {message_id} has no button with callback data `{data}`; its buttons are {available:?}"
    )]
    NoSuchButton {
        /// The message.
        message_id: i32,
        /// The data asked for.
        data: String,
        /// The callback data of the buttons it has.
        available: Vec<String>,
    },
}

#[derive(Default)]
struct World {
    next_update_id: i64,
    next_message_id: i32,
    next_query_id: u64,
    /// Unconfirmed updates, oldest first.
    updates: VecDeque<(i64, &'static str, Value)>,
    allowed_updates: Option<Vec<String>>,
    messages: Vec<FakeMessage>,
    sent: Vec<FakeMessage>,
    edits: Vec<FakeMessage>,
    answers: Vec<CallbackAnswer>,
    open_queries: Vec<String>,
    calls: Vec<RecordedCall>,
    faults: Vec<Fault>,
    poll_generation: u64,
    waiting_polls: usize,
}

struct Shared {
    token: String,
    world: Mutex<World>,
    down: Arc<AtomicBool>,
    /// Bumped on every change; waiters (long polls, tests) re-check their condition.
    changes: watch::Sender<u64>,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// The fake Bot API. Cheap to clone; clones share the same state, so a test keeps one while
/// the server runs (and can restart the server on the same state).
#[derive(Clone)]
pub struct FakeTelegram {
    shared: Arc<Shared>,
}

impl fmt::Debug for FakeTelegram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let world = self.shared.world();
        f.debug_struct("FakeTelegram")
            .field("messages", &world.messages.len())
            .field("pending_updates", &world.updates.len())
            .field("down", &self.shared.down.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl FakeTelegram {
    /// A fake Bot API for the bot with token `token` (any other token gets `401`).
    pub fn new(token: impl Into<String>) -> Self {
        let (changes, _) = watch::channel(0);
        let world = World {
            next_update_id: 500_000_000,
            next_message_id: 1,
            next_query_id: 1,
            ..World::default()
        };
        Self {
            shared: Arc::new(Shared {
                token: token.into(),
                world: Mutex::new(world),
                down: Arc::new(AtomicBool::new(false)),
                changes,
            }),
        }
    }

    /// The axum router of the API (for embedding; [`FakeTelegram::spawn`] serves it).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/{bot}/{method}", any(handle))
            .with_state(Arc::clone(&self.shared))
    }

    /// Serves the API on `addr` (e.g. `127.0.0.1:0`).
    pub async fn spawn(&self, addr: impl ToSocketAddrs) -> io::Result<RunningFakeTelegram> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = self.router();
        let listener = FlakyListener {
            inner: listener,
            down: Arc::clone(&self.shared.down),
        };
        let shared = Arc::clone(&self.shared);
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                    // Let long polls return now instead of at their timeout.
                    shared.changed();
                })
                .await
        });
        Ok(RunningFakeTelegram {
            addr,
            stop: Some(stop),
            task: Some(task),
            shared: Arc::clone(&self.shared),
        })
    }

    /// Queues a callback query: `user` pressed the button with `data` on message
    /// `message_id`. Returns the callback query id.
    pub fn press_button(
        &self,
        user: &FakeUser,
        message_id: i32,
        data: &str,
    ) -> Result<String, PressError> {
        let id = {
            let mut world = self.shared.world();
            let message = world
                .messages
                .iter()
                .find(|m| m.message_id == message_id)
                .cloned()
                .ok_or(PressError::NoSuchMessage(message_id))?;
            if message.callback_data_exists(data).is_none() {
                return Err(PressError::NoSuchButton {
                    message_id,
                    data: data.to_owned(),
                    available: message
                        .all_buttons()
                        .filter_map(|b| b.callback_data.clone())
                        .collect(),
                });
            }
            let query_id = format!("{}{:06}", user.id, world.next_query_id);
            world.next_query_id += 1;
            world.open_queries.push(query_id.clone());
            let query = json!({
                "id": query_id,
                "from": user.to_json(),
                "message": message_json(&message),
                "chat_instance": format!("{}", message.chat_id.unsigned_abs()),
                "data": data,
            });
            push_update(&mut world, "callback_query", query);
            query_id
        };
        self.shared.changed();
        Ok(id)
    }

    /// Queues a text message from `user` in chat `chat_id` (e.g. to check the bot ignores it).
    pub fn send_user_message(&self, user: &FakeUser, chat_id: i64, text: &str) {
        {
            let mut world = self.shared.world();
            let message_id = world.next_message_id;
            world.next_message_id += 1;
            let message = json!({
                "message_id": message_id,
                "from": user.to_json(),
                "chat": chat_json(chat_id),
                "date": unix_now(),
                "text": text,
            });
            push_update(&mut world, "message", message);
        }
        self.shared.changed();
    }

    /// Injects a failure (see [`Fault`]); faults apply in the order they were injected.
    pub fn inject(&self, fault: Fault) {
        self.shared.world().faults.push(fault);
        self.shared.changed();
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.shared.world().faults.clear();
        self.shared.changed();
    }

    /// Takes the API down (`true`: every connection, open or new, is reset, as if Telegram
    /// were unreachable) or brings it back (`false`).
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        self.shared.changed();
    }

    /// The messages as they are now, in sending order.
    pub fn messages(&self) -> Vec<FakeMessage> {
        self.shared.world().messages.clone()
    }

    /// The message `message_id` as it is now.
    pub fn message(&self, message_id: i32) -> Option<FakeMessage> {
        self.shared
            .world()
            .messages
            .iter()
            .find(|m| m.message_id == message_id)
            .cloned()
    }

    /// Every message the bot sent, as it was sent.
    pub fn sent(&self) -> Vec<FakeMessage> {
        self.shared.world().sent.clone()
    }

    /// Every successful edit, as the message was right after it.
    pub fn edits(&self) -> Vec<FakeMessage> {
        self.shared.world().edits.clone()
    }

    /// Every callback answer, in order.
    pub fn answers(&self) -> Vec<CallbackAnswer> {
        self.shared.world().answers.clone()
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.world().calls.clone()
    }

    /// The calls of `method` (case-insensitive), in order.
    pub fn calls_of(&self, method: &str) -> Vec<RecordedCall> {
        self.shared
            .world()
            .calls
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .cloned()
            .collect()
    }

    /// `getUpdates` calls in progress (e.g. long polls waiting for an update).
    pub fn waiting_polls(&self) -> usize {
        self.shared.world().waiting_polls
    }

    /// Updates not yet confirmed by a `getUpdates` offset.
    pub fn unconfirmed_updates(&self) -> usize {
        self.shared.world().updates.len()
    }

    /// Waits until `check` returns `Some` (re-checked after every change of the fake's state:
    /// calls, messages, answers, presses) and returns its value.
    pub async fn wait_for<T>(&self, mut check: impl FnMut(&FakeTelegram) -> Option<T>) -> T {
        let mut changes = self.shared.changes.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(value) = check(self) {
                return value;
            }
            if changes.changed().await.is_err() {
                // The sender lives in `self.shared`, which outlives this call.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until the bot has sent at least `n` messages; returns the `n`th (1-based).
    pub async fn wait_for_sent(&self, n: usize) -> FakeMessage {
        self.wait_for(|t| t.sent().get(n.saturating_sub(1)).cloned())
            .await
    }

    /// Waits until the callback query `query_id` is answered; returns the answer.
    pub async fn wait_for_answer(&self, query_id: &str) -> CallbackAnswer {
        self.wait_for(|t| {
            t.answers()
                .into_iter()
                .find(|a| a.callback_query_id == query_id)
        })
        .await
    }

    /// Waits until message `message_id` has been edited at least `n` times; returns it.
    pub async fn wait_for_edit(&self, message_id: i32, n: u32) -> FakeMessage {
        self.wait_for(|t| t.message(message_id).filter(|m| m.edits >= n))
            .await
    }
}

impl FakeMessage {
    fn callback_data_exists(&self, data: &str) -> Option<&FakeButton> {
        self.all_buttons()
            .find(|b| b.callback_data.as_deref() == Some(data))
    }
}

/// A running fake Bot API server.
pub struct RunningFakeTelegram {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
    shared: Arc<Shared>,
}

impl fmt::Debug for RunningFakeTelegram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningFakeTelegram")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningFakeTelegram {
    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base URL (`http://127.0.0.1:port`), the `api_url` of a bot's configuration.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server (long polls in flight return at once) and waits for it.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.shared.changed();
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningFakeTelegram {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ----- the wire ------------------------------------------------------------------------

/// An API error: the HTTP status is the `error_code`.
#[derive(Debug)]
struct ApiError {
    code: u16,
    description: String,
    retry_after: Option<u32>,
}

impl ApiError {
    fn bad_request(detail: impl fmt::Display) -> Self {
        Self {
            code: 400,
            description: format!("Bad Request: {detail}"),
            retry_after: None,
        }
    }

    fn new(code: u16, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body =
            json!({"ok": false, "error_code": self.code, "description": self.description});
        if let (Some(seconds), Some(object)) = (self.retry_after, body.as_object_mut()) {
            object.insert("parameters".into(), json!({"retry_after": seconds}));
        }
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(body)).into_response()
    }
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match parse_params(query.as_deref(), &headers, &body) {
        Ok(params) => params,
        Err(error) => return error.into_response(),
    };
    let at = Instant::now();
    let token_ok = bot.strip_prefix("bot") == Some(shared.token.as_str());
    let response = if !token_ok {
        ApiError::new(401, "Unauthorized").into_response()
    } else if let Some(fault) = take_fault(&shared, &method) {
        fault.into_response()
    } else {
        match dispatch(&shared, &method, &params).await {
            Ok(result) => ok(result),
            Err(error) => error.into_response(),
        }
    };
    let status = if shared.down.load(Ordering::SeqCst) {
        0
    } else {
        response.status().as_u16()
    };
    shared.world().calls.push(RecordedCall {
        method,
        params: Value::Object(params),
        at,
        status,
    });
    shared.changed();
    response
}

fn take_fault(shared: &Shared, method: &str) -> Option<ApiError> {
    let mut world = shared.world();
    let index = world.faults.iter().position(|f| f.matches(method))?;
    let fault = world.faults.get_mut(index)?;
    let error = ApiError {
        code: fault.status,
        description: fault.description.clone(),
        retry_after: fault.retry_after,
    };
    match &mut fault.remaining {
        Some(n) if *n <= 1 => {
            world.faults.remove(index);
        }
        Some(n) => *n -= 1,
        None => {}
    }
    Some(error)
}

/// Merges the query string and the body (JSON or form-encoded) into one parameter object.
fn parse_params(
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    let mut params = Map::new();
    if let Some(query) = query {
        for (key, value) in form_urlencoded(query.as_bytes()) {
            params.insert(key, Value::String(value));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(params);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => params.extend(object),
            Ok(_) => return Err(ApiError::bad_request("parameters must be a JSON object")),
            Err(_) => return Err(ApiError::bad_request("can't parse JSON object")),
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        for (key, value) in form_urlencoded(body) {
            params.insert(key, Value::String(value));
        }
    } else {
        return Err(ApiError::bad_request(format!(
            "unsupported Content-Type `{content_type}`"
        )));
    }
    Ok(params)
}

fn form_urlencoded(input: &[u8]) -> Vec<(String, String)> {
    input
        .split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut parts = pair.splitn(2, |b| *b == b'=');
            let key = parts.next().unwrap_or_default();
            let value = parts.next().unwrap_or_default();
            (decode_component(key), decode_component(value))
        })
        .collect()
}

fn decode_component(raw: &[u8]) -> String {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_encoding::percent_decode(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

/// Typed reads of parameters that may arrive as JSON values or as strings (forms, queries).
struct Params<'a>(&'a Map<String, Value>);

impl Params<'_> {
    fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("invalid {name} specified"))),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid {name} specified"))),
            Some(_) => Err(ApiError::bad_request(format!("invalid {name} specified"))),
        }
    }

    fn string(&self, name: &str) -> Option<String> {
        match self.0.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    fn boolean(&self, name: &str) -> bool {
        match self.0.get(name) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true" || s == "1",
            _ => false,
        }
    }

    /// An object parameter: a JSON value, or a JSON-serialised string (forms).
    fn object(&self, name: &str) -> Result<Option<Value>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("can't parse {name} JSON object"))),
            Some(other) => Ok(Some(other.clone())),
        }
    }

    fn chat_id(&self) -> Result<i64, ApiError> {
        self.int("chat_id")?
            .ok_or_else(|| ApiError::bad_request("chat_id is empty"))
    }
}

async fn dispatch(
    shared: &Arc<Shared>,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let p = Params(params);
    match method.to_ascii_lowercase().as_str() {
        "getme" => Ok(bot_user()),
        "deletewebhook" => Ok(Value::Bool(true)),
        "getupdates" => get_updates(shared, &p).await,
        "sendmessage" => send_message(shared, &p),
        "editmessagetext" => edit_message_text(shared, &p),
        "answercallbackquery" => answer_callback_query(shared, &p),
        _ => Err(ApiError::new(404, "Not Found")),
    }
}

async fn get_updates(shared: &Arc<Shared>, p: &Params<'_>) -> Result<Value, ApiError> {
    let offset = p.int("offset")?;
    let limit = p.int("limit")?.unwrap_or(100).clamp(1, 100);
    let limit = usize::try_from(limit).unwrap_or(100);
    let timeout = p.int("timeout")?.unwrap_or(0).max(0);
    let timeout = Duration::from_secs(
        u64::try_from(timeout)
            .unwrap_or(0)
            .min(MAX_POLL_TIMEOUT_SECS),
    );
    let allowed = p.object("allowed_updates")?;
    let generation = {
        let mut world = shared.world();
        match offset {
            Some(offset) if offset < 0 => {
                let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
                while world.updates.len() > keep {
                    world.updates.pop_front();
                }
            }
            Some(offset) => world.updates.retain(|(id, _, _)| *id >= offset),
            None => {}
        }
        if let Some(Value::Array(kinds)) = allowed {
            let kinds: Vec<String> = kinds
                .iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect();
            world.allowed_updates = (!kinds.is_empty()).then_some(kinds);
        }
        world.poll_generation += 1;
        world.poll_generation
    };
    // A newer getUpdates ends this one (Telegram: only one poller per bot).
    let _waiting = WaitingPoll::enter(shared);
    let deadline = Instant::now() + timeout;
    let mut changes = shared.changes.subscribe();
    loop {
        changes.borrow_and_update();
        {
            let world = shared.world();
            if world.poll_generation != generation {
                return Err(ApiError::new(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                ));
            }
            let allowed = world.allowed_updates.clone();
            let batch: Vec<Value> = world
                .updates
                .iter()
                .filter(|(_, kind, _)| allowed.as_ref().is_none_or(|a| a.iter().any(|k| k == kind)))
                .take(limit)
                .map(|(id, kind, payload)| json!({"update_id": id, *kind: payload}))
                .collect();
            if !batch.is_empty() || shared.down.load(Ordering::SeqCst) {
                return Ok(Value::Array(batch));
            }
        }
        if Instant::now() >= deadline {
            return Ok(Value::Array(Vec::new()));
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(Value::Array(Vec::new()));
                }
            }
            () = tokio::time::sleep_until(deadline) => return Ok(Value::Array(Vec::new())),
        }
    }
}

/// Counts a `getUpdates` call as waiting for as long as it is alive.
struct WaitingPoll(Arc<Shared>);

impl WaitingPoll {
    fn enter(shared: &Arc<Shared>) -> Self {
        shared.world().waiting_polls += 1;
        shared.changed();
        Self(Arc::clone(shared))
    }
}

impl Drop for WaitingPoll {
    fn drop(&mut self) {
        {
            let mut world = self.0.world();
            world.waiting_polls = world.waiting_polls.saturating_sub(1);
        }
        self.0.changed();
    }
}

fn send_message(shared: &Arc<Shared>, p: &Params<'_>) -> Result<Value, ApiError> {
    let chat_id = p.chat_id()?;
    let raw_text = p.string("text").unwrap_or_default();
    let parse_mode = p.string("parse_mode").filter(|m| !m.is_empty());
    let text = render_text(&raw_text, parse_mode.as_deref())?;
    let buttons = parse_keyboard(p.object("reply_markup")?)?;
    let message = {
        let mut world = shared.world();
        let message = FakeMessage {
            chat_id,
            message_id: world.next_message_id,
            text,
            raw_text,
            parse_mode,
            buttons,
            edits: 0,
        };
        world.next_message_id += 1;
        world.messages.push(message.clone());
        world.sent.push(message.clone());
        message
    };
    Ok(message_json(&message))
}

fn edit_message_text(shared: &Arc<Shared>, p: &Params<'_>) -> Result<Value, ApiError> {
    if p.string("inline_message_id").is_some() {
        return Err(ApiError::bad_request(
            "inline messages are not simulated; edit by chat_id and message_id",
        ));
    }
    let chat_id = p.chat_id()?;
    let message_id = p
        .int("message_id")?
        .ok_or_else(|| ApiError::bad_request("message identifier is not specified"))?;
    let raw_text = p.string("text").unwrap_or_default();
    let parse_mode = p.string("parse_mode").filter(|m| !m.is_empty());
    let text = render_text(&raw_text, parse_mode.as_deref())?;
    let buttons = parse_keyboard(p.object("reply_markup")?)?;
    let mut world = shared.world();
    let message = world
        .messages
        .iter_mut()
        .find(|m| i64::from(m.message_id) == message_id && m.chat_id == chat_id)
        .ok_or_else(|| ApiError::bad_request("message to edit not found"))?;
    if message.text == text && message.raw_text == raw_text && message.buttons == buttons {
        return Err(ApiError::bad_request(
            "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        ));
    }
    message.text = text;
    message.raw_text = raw_text;
    message.parse_mode = parse_mode;
    message.buttons = buttons;
    message.edits += 1;
    let edited = message.clone();
    world.edits.push(edited.clone());
    Ok(message_json(&edited))
}

fn answer_callback_query(shared: &Arc<Shared>, p: &Params<'_>) -> Result<Value, ApiError> {
    let id = p
        .string("callback_query_id")
        .ok_or_else(|| ApiError::bad_request("query_id is empty"))?;
    let text = p.string("text").filter(|t| !t.is_empty());
    if text.as_ref().is_some_and(|t| t.chars().count() > 200) {
        return Err(ApiError::bad_request("MESSAGE_TOO_LONG"));
    }
    let mut world = shared.world();
    let Some(index) = world.open_queries.iter().position(|q| *q == id) else {
        return Err(ApiError::bad_request(
            "query is too old and response timeout expired or query ID is invalid",
        ));
    };
    world.open_queries.remove(index);
    world.answers.push(CallbackAnswer {
        callback_query_id: id,
        text,
        show_alert: p.boolean("show_alert"),
    });
    Ok(Value::Bool(true))
}

fn push_update(world: &mut World, kind: &'static str, payload: Value) {
    let id = world.next_update_id;
    world.next_update_id += 1;
    world.updates.push_back((id, kind, payload));
}

fn bot_user() -> Value {
    json!({
        "id": BOT_USER_ID,
        "is_bot": true,
        "first_name": "agent-gate",
        "username": BOT_USERNAME,
        "can_join_groups": true,
        "can_read_all_group_messages": false,
        "supports_inline_queries": false,
    })
}

fn chat_json(chat_id: i64) -> Value {
    if chat_id < 0 {
        json!({"id": chat_id, "type": "supergroup", "title": "Approvals"})
    } else {
        json!({"id": chat_id, "type": "private", "first_name": format!("User{chat_id}")})
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn message_json(message: &FakeMessage) -> Value {
    let mut value = json!({
        "message_id": message.message_id,
        "from": bot_user(),
        "chat": chat_json(message.chat_id),
        "date": unix_now(),
        "text": message.text,
    });
    if message.edits > 0
        && let Some(object) = value.as_object_mut()
    {
        object.insert("edit_date".into(), json!(unix_now()));
    }
    if !message.buttons.is_empty()
        && let Some(object) = value.as_object_mut()
    {
        let rows: Vec<Value> = message
            .buttons
            .iter()
            .map(|row| {
                Value::Array(
                    row.iter()
                        .map(|b| match &b.callback_data {
                            Some(data) => json!({"text": b.text, "callback_data": data}),
                            None => json!({"text": b.text}),
                        })
                        .collect(),
                )
            })
            .collect();
        object.insert("reply_markup".into(), json!({"inline_keyboard": rows}));
    }
    value
}

fn parse_keyboard(markup: Option<Value>) -> Result<Vec<Vec<FakeButton>>, ApiError> {
    let Some(markup) = markup else {
        return Ok(Vec::new());
    };
    let Some(rows) = markup.get("inline_keyboard") else {
        // Reply keyboards and the like are not shown on the message itself.
        return Ok(Vec::new());
    };
    let rows = rows
        .as_array()
        .ok_or_else(|| ApiError::bad_request("field \"inline_keyboard\" must be an Array"))?;
    let mut keyboard = Vec::new();
    for row in rows {
        let row = row
            .as_array()
            .ok_or_else(|| ApiError::bad_request("inline keyboard row must be an Array"))?;
        let mut buttons = Vec::new();
        for button in row {
            let text = button
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_request("can't find field \"text\""))?;
            if text.is_empty() {
                return Err(ApiError::bad_request("BUTTON_TEXT_EMPTY"));
            }
            let callback_data = match button.get("callback_data") {
                None => None,
                Some(Value::String(data))
                    if !data.is_empty() && data.len() <= MAX_CALLBACK_DATA_BYTES =>
                {
                    Some(data.clone())
                }
                Some(_) => return Err(ApiError::bad_request("BUTTON_DATA_INVALID")),
            };
            buttons.push(FakeButton {
                text: text.to_owned(),
                callback_data,
            });
        }
        keyboard.push(buttons);
    }
    Ok(keyboard)
}

/// The text users see for `raw` in `parse_mode`, or Telegram's error for it.
fn render_text(raw: &str, parse_mode: Option<&str>) -> Result<String, ApiError> {
    let text = match parse_mode {
        None => raw.to_owned(),
        Some(mode) if mode.eq_ignore_ascii_case("html") => parse_html(raw)
            .map_err(|e| ApiError::bad_request(format!("can't parse entities: {e}")))?,
        Some(mode) if mode == "MarkdownV2" || mode == "Markdown" => {
            return Err(ApiError::bad_request(
                "the fake Bot API checks parse_mode HTML only",
            ));
        }
        Some(_) => return Err(ApiError::bad_request("unsupported parse_mode")),
    };
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("message text is empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::bad_request("message is too long"));
    }
    Ok(text)
}

const HTML_TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
];

/// Telegram's HTML parse mode: returns the plain text or why the markup is refused.
pub fn parse_html(raw: &str) -> Result<String, String> {
    let mut text = String::with_capacity(raw.len());
    let mut open: Vec<String> = Vec::new();
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        let offset = raw.len() - rest.len();
        match c {
            '<' => {
                let end = rest
                    .find('>')
                    .ok_or_else(|| format!("unclosed start tag at byte offset {offset}"))?;
                let inner = rest.get(1..end).unwrap_or_default();
                if let Some(name) = inner.strip_prefix('/') {
                    let name = name.trim().to_ascii_lowercase();
                    match open.pop() {
                        Some(top) if top == name => {}
                        _ => {
                            return Err(format!(
                                "unmatched end tag at byte offset {offset}, expected \"</{}>\", found \"</{name}>\"",
                                open.last().map(String::as_str).unwrap_or("")
                            ));
                        }
                    }
                } else {
                    let name = inner
                        .split(|ch: char| ch.is_ascii_whitespace())
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    if !HTML_TAGS.contains(&name.as_str()) {
                        return Err(format!(
                            "unsupported start tag \"{name}\" at byte offset {offset}"
                        ));
                    }
                    open.push(name);
                }
                rest = rest.get(end + 1..).unwrap_or_default();
            }
            '&' => {
                let end = rest.find(';').filter(|end| *end <= 10).ok_or_else(|| {
                    format!("character entity expected at byte offset {offset}; escape & as &amp;")
                })?;
                let entity = rest.get(1..end).unwrap_or_default();
                let decoded = match entity {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    numeric => numeric
                        .strip_prefix('#')
                        .and_then(|n| match n.strip_prefix(['x', 'X']) {
                            Some(hex) => u32::from_str_radix(hex, 16).ok(),
                            None => n.parse().ok(),
                        })
                        .and_then(char::from_u32)
                        .ok_or_else(|| {
                            format!("unsupported entity \"&{numeric};\" at byte offset {offset}")
                        })?,
                };
                text.push(decoded);
                rest = rest.get(end + 1..).unwrap_or_default();
            }
            '>' => {
                return Err(format!(
                    "unexpected \">\" at byte offset {offset}; escape it as &gt;"
                ));
            }
            other => {
                text.push(other);
                rest = rest.get(other.len_utf8()..).unwrap_or_default();
            }
        }
    }
    if let Some(tag) = open.last() {
        return Err(format!(
            "can't find end tag corresponding to start tag \"{tag}\""
        ));
    }
    Ok(text)
}

// ----- "down": connections that fail -----------------------------------------------------

struct FlakyListener {
    inner: TcpListener,
    down: Arc<AtomicBool>,
}

impl axum::serve::Listener for FlakyListener {
    type Io = FlakyStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                // While down, new connections are dropped at once (the client sees a reset).
                Ok((_, _)) if self.down.load(Ordering::SeqCst) => {}
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (
                        FlakyStream {
                            inner: stream,
                            down: Arc::clone(&self.down),
                        },
                        addr,
                    );
                }
                Err(error) => {
                    tracing::debug!(%error, "fake Telegram: accept failed");
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that fails every read and write while the fake is down.
struct FlakyStream {
    inner: TcpStream,
    down: Arc<AtomicBool>,
}

impl FlakyStream {
    fn check(&self) -> io::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "fake Telegram is down",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for FlakyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(error) = self.check() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FlakyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(error) = self.check() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_checked_as_telegram_does() {
        assert_eq!(
            parse_html("<b>bold</b> &lt;x&gt; &amp; &quot;q&quot; &#33;").unwrap(),
            "bold <x> & \"q\" !"
        );
        assert_eq!(
            parse_html("<pre><code class=\"language-json\">{}</code></pre>").unwrap(),
            "{}"
        );
        assert!(
            parse_html("a < b")
                .unwrap_err()
                .contains("unclosed start tag")
        );
        assert!(
            parse_html("<foo>x</foo>")
                .unwrap_err()
                .contains("unsupported start tag")
        );
        assert!(
            parse_html("<b>x</i>")
                .unwrap_err()
                .contains("unmatched end tag")
        );
        assert!(
            parse_html("<b>x")
                .unwrap_err()
                .contains("can't find end tag")
        );
        assert!(parse_html("fish & chips").unwrap_err().contains("entity"));
        assert!(
            parse_html("&nbsp;")
                .unwrap_err()
                .contains("unsupported entity")
        );
        assert!(parse_html("a > b").unwrap_err().contains("unexpected"));
    }

    #[test]
    fn forms_decode_plus_and_percent() {
        assert_eq!(
            form_urlencoded(b"text=a+b%26c&chat_id=-5&empty="),
            vec![
                ("text".to_owned(), "a b&c".to_owned()),
                ("chat_id".to_owned(), "-5".to_owned()),
                ("empty".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn keyboards_enforce_callback_data_limits() {
        let long = "x".repeat(65);
        let markup = json!({"inline_keyboard": [[{"text": "A", "callback_data": long}]]});
        assert!(parse_keyboard(Some(markup)).is_err());
        let markup = json!({"inline_keyboard": [[{"text": "A", "callback_data": "x".repeat(64)}]]});
        assert_eq!(parse_keyboard(Some(markup)).unwrap().len(), 1);
    }
}
