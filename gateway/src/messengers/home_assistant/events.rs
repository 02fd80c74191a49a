//! The WebSocket side: one background task keeps a connection to Home Assistant's
//! `/api/websocket` (authenticate, `subscribe_events` for [`ACTION_EVENT`], ping), turns
//! each press of one of this approver's actions into a decision, and reconnects with
//! exponential back-off when the connection fails or Home Assistant restarts.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::format::{self, Action};
use super::health::HomeAssistantHealth;
use super::inner::{Inner, NotificationRef};
use crate::approvals::{ApprovalHandle, DecideOutcome, Verdict};
use crate::store::{AuditEntry, AuditKind, RequestKey, Timestamp};

/// The event the companion app fires when a notification action is pressed.
pub const ACTION_EVENT: &str = "mobile_app_notification_action";

/// The audit kind of a press by a user not in `users` (the same kind as Telegram's).
pub const REFUSED_AUDIT_KIND: &str = crate::messengers::telegram::REFUSED_AUDIT_KIND;

/// How long the handshake (connect, `auth_required`, `auth_ok`, subscription result) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// The id of the subscription (the first command of every connection).
const SUBSCRIPTION_ID: u64 = 1;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a connection ended.
enum Ended {
    /// The approver is stopping.
    Stopped,
    /// Home Assistant refused the token or the subscription: retry slowly.
    Refused(String),
    /// Anything else: retry with back-off.
    Failed(String),
}

/// `home_assistant:<user id>`, or `home_assistant:<approver name>` for an event without a
/// user.
pub fn actor_of(approver: &str, user_id: Option<&str>) -> String {
    match user_id {
        Some(user) if !user.is_empty() => format!("home_assistant:{user}"),
        _ => format!("home_assistant:{approver}"),
    }
}

impl Inner {
    /// The background task: connect, listen, reconnect, until the approver stops.
    pub(super) async fn listen(self: std::sync::Arc<Self>, handle: ApprovalHandle) {
        let mut delay = self.initial_backoff;
        loop {
            let connected_at = Instant::now();
            let ended = self.connection(&handle).await;
            let wait = match ended {
                Ended::Stopped => break,
                Ended::Refused(error) => {
                    tracing::error!(approver = %self.name, %error, "home assistant: refused; retrying slowly");
                    self.set_health(HomeAssistantHealth::Refused { error });
                    self.max_backoff
                }
                Ended::Failed(error) => {
                    tracing::warn!(approver = %self.name, %error, "home assistant: event connection lost; reconnecting");
                    self.set_health(HomeAssistantHealth::Unreachable {
                        since: Timestamp::now(),
                        error,
                    });
                    // A connection that lasted a while starts the back-off over.
                    if connected_at.elapsed() > self.max_backoff {
                        delay = self.initial_backoff;
                    }
                    let wait = delay;
                    delay = (delay * 2).min(self.max_backoff);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => break,
            }
        }
        self.set_health(HomeAssistantHealth::Stopped);
    }

    /// Connects, authenticates, subscribes, then handles events until the connection ends.
    async fn connection(&self, handle: &ApprovalHandle) -> Ended {
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake());
        let mut socket = tokio::select! {
            _ = self.stop.cancelled() => return Ended::Stopped,
            result = handshake => match result {
                Ok(Ok(socket)) => socket,
                Ok(Err(ended)) => return ended,
                Err(_) => return Ended::Failed("the handshake timed out".to_owned()),
            },
        };
        tracing::info!(approver = %self.name, "home assistant: listening for notification actions");
        self.set_health(HomeAssistantHealth::Connected);
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.tick().await;
        let mut next_id = SUBSCRIPTION_ID + 1;
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => {
                    let _ = socket.close(None).await;
                    return Ended::Stopped;
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > self.ping_interval * 2 {
                        return Ended::Failed("no answer to pings".to_owned());
                    }
                    let message = json!({"id": next_id, "type": "ping"}).to_string();
                    next_id += 1;
                    if let Err(error) = socket.send(Message::text(message)).await {
                        return Ended::Failed(error.to_string());
                    }
                }
                message = socket.next() => {
                    last_heard = Instant::now();
                    let text = match message {
                        None => return Ended::Failed("Home Assistant closed the connection".to_owned()),
                        Some(Err(error)) => return Ended::Failed(error.to_string()),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) => return Ended::Failed("Home Assistant closed the connection".to_owned()),
                        Some(Ok(_)) => continue,
                    };
                    let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
                        tracing::debug!(approver = %self.name, "home assistant: ignored a message that is not JSON");
                        continue;
                    };
                    if message["type"] == "event" && message["id"] == SUBSCRIPTION_ID {
                        self.on_event(handle, &message["event"]).await;
                    }
                }
            }
        }
    }

    /// `auth_required` → `auth` → `auth_ok`, then `subscribe_events` → `result`.
    async fn handshake(&self) -> Result<Socket, Ended> {
        let request = self
            .websocket_url
            .as_str()
            .into_client_request()
            .map_err(|e| Ended::Failed(format!("invalid WebSocket URL: {e}")))?;
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| Ended::Failed(format!("cannot connect to {}: {e}", self.websocket_url)))?;
        let first = next_json(&mut socket).await?;
        if first["type"] != "auth_required" {
            return Err(Ended::Failed(format!(
                "expected auth_required, got {}",
                first["type"]
            )));
        }
        let auth = json!({"type": "auth", "access_token": self.token.expose()}).to_string();
        socket
            .send(Message::text(auth))
            .await
            .map_err(|e| Ended::Failed(e.to_string()))?;
        let answer = next_json(&mut socket).await?;
        match answer["type"].as_str() {
            Some("auth_ok") => {}
            Some("auth_invalid") => {
                return Err(Ended::Refused(format!(
                    "the access token is not accepted ({}); create a long-lived access token (profile → Security) and set it as the approver's token",
                    answer["message"].as_str().unwrap_or("auth_invalid")
                )));
            }
            _ => {
                return Err(Ended::Failed(format!(
                    "expected auth_ok, got {}",
                    answer["type"]
                )));
            }
        }
        let subscribe =
            json!({"id": SUBSCRIPTION_ID, "type": "subscribe_events", "event_type": ACTION_EVENT});
        socket
            .send(Message::text(subscribe.to_string()))
            .await
            .map_err(|e| Ended::Failed(e.to_string()))?;
        loop {
            let result = next_json(&mut socket).await?;
            if result["type"] != "result" || result["id"] != SUBSCRIPTION_ID {
                continue;
            }
            if result["success"] == true {
                return Ok(socket);
            }
            let hint = if result["error"]["code"] == "unauthorized" {
                "; Home Assistant lets only administrators subscribe to it: use a token of an administrator"
            } else {
                ""
            };
            return Err(Ended::Refused(format!(
                "subscribing to {ACTION_EVENT} failed: {}{hint}",
                result["error"]
            )));
        }
    }

    /// Handles one `mobile_app_notification_action` event.
    async fn on_event(&self, handle: &ApprovalHandle, event: &Value) {
        let Some(action_id) = event["data"]["action"].as_str() else {
            return;
        };
        let Some((action, code)) = format::parse_action(action_id) else {
            tracing::debug!(approver = %self.name, "home assistant: ignored an action of another notification");
            return;
        };
        let user_id = event["context"]["user_id"].as_str();
        let actor = actor_of(&self.name, user_id);
        let found = self.find(handle, code).await;
        // `users` is never empty (the builder refuses that), so a press without a user (an
        // automation) or by anyone else is refused.
        if !user_id.is_some_and(|u| self.users.iter().any(|x| x == u)) {
            tracing::warn!(approver = %self.name, actor = %actor, "home assistant: ignored a press by a user not in `users`");
            self.audit_refused(handle, found.as_ref().map(|(k, _)| k), &actor, action)
                .await;
            return;
        }
        let Some((key, _)) = found else {
            tracing::info!(approver = %self.name, actor = %actor, "home assistant: a press for a request that is no longer pending changes nothing");
            return;
        };
        let outcome = match (action, self.grant) {
            (Action::Allow, _) => {
                handle
                    .decide(key.clone(), Verdict::Allow, actor.as_str())
                    .await
            }
            (Action::Grant, Some(grant)) => {
                handle.allow_for(key.clone(), actor.as_str(), grant).await
            }
            // A grant action without a configured grant was not sent by this configuration:
            // a plain approval is all the press can mean.
            (Action::Grant, None) => {
                handle
                    .decide(key.clone(), Verdict::Allow, actor.as_str())
                    .await
            }
            (Action::Deny, _) => {
                handle
                    .decide(key.clone(), Verdict::Deny, actor.as_str())
                    .await
            }
        };
        match outcome {
            DecideOutcome::Won => {}
            DecideOutcome::AlreadyDecided | DecideOutcome::Expired | DecideOutcome::Cancelled => {
                self.codes().remove(code);
            }
            DecideOutcome::NotFound => {}
        }
        tracing::info!(
            approver = %self.name,
            actor = %actor,
            agent = %key.agent_id,
            request_id = %key.request_id,
            ?action,
            ?outcome,
            "home assistant: notification action pressed"
        );
    }

    /// The pending request whose code is `code`: notified by this process, or found in the
    /// stored references of the pending requests (after a restart).
    async fn find(
        &self,
        handle: &ApprovalHandle,
        code: &str,
    ) -> Option<(RequestKey, NotificationRef)> {
        let known = self.codes().get(code).cloned();
        let pending = handle.pending().await;
        if let Some((key, notification)) = known {
            return pending
                .iter()
                .any(|r| r.key == key)
                .then_some((key, notification));
        }
        pending.into_iter().find_map(|request| {
            let stored = request
                .refs_of(&self.name)
                .and_then(|refs| serde_json::from_value::<NotificationRef>(refs.clone()).ok())?;
            (stored.code == code).then_some((request.key, stored))
        })
    }

    /// Writes a refused press to the audit log (kind [`REFUSED_AUDIT_KIND`]).
    async fn audit_refused(
        &self,
        handle: &ApprovalHandle,
        key: Option<&RequestKey>,
        actor: &str,
        action: Action,
    ) {
        let detail = json!({
            "approver": self.name,
            "reason": "not in users",
            "action": format!("{action:?}").to_lowercase(),
        });
        let agent = key.map(|k| k.agent_id.clone()).unwrap_or_default();
        let mut entry = AuditEntry::new(agent, AuditKind::Other(REFUSED_AUDIT_KIND.to_owned()))
            .actor(actor)
            .detail(detail);
        if let Some(key) = key {
            entry = entry.request_id(key.request_id.clone());
        }
        if !handle.audit(entry).await {
            tracing::warn!(actor, "home assistant: could not audit a refused press");
        }
    }
}

/// The next text message as JSON.
async fn next_json(socket: &mut Socket) -> Result<Value, Ended> {
    loop {
        match socket.next().await {
            None => {
                return Err(Ended::Failed(
                    "Home Assistant closed the connection".to_owned(),
                ));
            }
            Some(Err(error)) => return Err(Ended::Failed(error.to_string())),
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str())
                    .map_err(|e| Ended::Failed(format!("a message that is not JSON: {e}")));
            }
            Some(Ok(Message::Close(_))) => {
                return Err(Ended::Failed(
                    "Home Assistant closed the connection".to_owned(),
                ));
            }
            Some(Ok(_)) => {}
        }
    }
}
