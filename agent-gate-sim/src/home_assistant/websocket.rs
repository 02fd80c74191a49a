//! `GET /api/websocket`: the part of Home Assistant's WebSocket API that event listeners use
//! (from core's `websocket_api` component):
//!
//! - the handshake: the server sends `{"type": "auth_required", "ha_version"}`, the client
//!   answers `{"type": "auth", "access_token"}`, the server says `auth_ok` or `auth_invalid`
//!   (and closes); anything else than an `auth` message is `auth_invalid` too;
//! - then commands, each with an `id` that must increase (`id_reuse` otherwise):
//!   `subscribe_events` (with or without `event_type`), `unsubscribe_events`
//!   (`subscription`), `ping` (answered `pong`); anything else is `unknown_command`;
//! - every event fired afterwards (`POST /api/events/<type>`, a phone's action press) reaches
//!   the matching subscriptions as `{"id": <subscription>, "type": "event", "event": {...}}`.
//!
//! [`HomeAssistant::drop_websockets`](super::HomeAssistant::drop_websockets) closes every
//! connection, as a Home Assistant restart does.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{Credential, Shared};

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Upgrades the request to a WebSocket and runs the API on it.
pub(super) async fn upgrade(State(shared): State<Arc<Shared>>, mut request: Request) -> Response {
    let headers = request.headers();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get("sec-websocket-key").cloned() else {
        return (StatusCode::BAD_REQUEST, "400: Bad Request").into_response();
    };
    if !is_upgrade {
        return (StatusCode::BAD_REQUEST, "400: Bad Request").into_response();
    }
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                serve(shared, socket).await;
            }
            Err(error) => {
                tracing::warn!(%error, "simulated Home Assistant: websocket upgrade failed")
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header("sec-websocket-accept", accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn send(socket: &mut Socket, value: Value) -> bool {
    socket.send(Message::text(value.to_string())).await.is_ok()
}

/// The next text message as JSON; `None` when the connection ends.
async fn next_json(socket: &mut Socket) -> Option<Result<Value, String>> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => {
                return Some(serde_json::from_str(text.as_str()).map_err(|e| e.to_string()));
            }
            Ok(Message::Binary(_)) => return Some(Err("binary message".to_owned())),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

fn token_ok(credential: &Credential, given: &str) -> bool {
    match credential {
        Credential::Bearer(token) => bool::from(given.as_bytes().ct_eq(token.as_bytes())),
        _ => false,
    }
}

/// A connection's subscriptions (subscription id → event type, `None`: every event), counted
/// in [`Shared::subscriptions`] while they live.
struct Subscriptions<'a> {
    shared: &'a Shared,
    by_id: HashMap<u64, Option<String>>,
}

impl Subscriptions<'_> {
    fn add(&mut self, id: u64, event_type: Option<String>) {
        if self.by_id.insert(id, event_type).is_none() {
            self.shared.subscriptions.send_modify(|n| *n += 1);
        }
    }

    fn remove(&mut self, id: u64) -> Option<Option<String>> {
        let removed = self.by_id.remove(&id);
        if removed.is_some() {
            self.shared
                .subscriptions
                .send_modify(|n| *n = n.saturating_sub(1));
        }
        removed
    }
}

impl Drop for Subscriptions<'_> {
    fn drop(&mut self) {
        let count = self.by_id.len();
        self.shared
            .subscriptions
            .send_modify(|n| *n = n.saturating_sub(count));
    }
}

async fn serve(shared: Arc<Shared>, mut socket: Socket) {
    let mut kicked = shared.websocket_generation.subscribe();
    kicked.mark_unchanged();
    if !send(
        &mut socket,
        json!({"type": "auth_required", "ha_version": shared.version}),
    )
    .await
    {
        return;
    }
    let authenticated = match next_json(&mut socket).await {
        None => return,
        Some(Ok(message)) if message["type"] == "auth" => match message["access_token"].as_str() {
            Some(token) if token_ok(&shared.credential, token) => true,
            _ => {
                let _ = send(
                    &mut socket,
                    json!({"type": "auth_invalid", "message": "Invalid access token or password"}),
                )
                .await;
                false
            }
        },
        Some(Ok(message)) => {
            let _ = send(
                &mut socket,
                json!({"type": "auth_invalid", "message": format!("Auth message incorrectly formatted: expected auth, got {}", message["type"])}),
            )
            .await;
            false
        }
        Some(Err(error)) => {
            let _ = send(
                &mut socket,
                json!({"type": "auth_invalid", "message": format!("Auth message incorrectly formatted: {error}")}),
            )
            .await;
            false
        }
    };
    if !authenticated {
        let _ = socket.close(None).await;
        return;
    }
    if !send(
        &mut socket,
        json!({"type": "auth_ok", "ha_version": shared.version}),
    )
    .await
    {
        return;
    }
    let mut events = shared.events.subscribe();
    // subscription id → event type (`None`: every event).
    let mut subscriptions = Subscriptions {
        shared: &shared,
        by_id: HashMap::new(),
    };
    let mut last_id = 0u64;
    loop {
        tokio::select! {
            _ = kicked.changed() => {
                let _ = socket.close(None).await;
                return;
            }
            event = events.recv() => match event {
                Ok(event) => {
                    for (id, event_type) in &subscriptions.by_id {
                        let matches = event_type
                            .as_deref()
                            .is_none_or(|t| event["event_type"].as_str() == Some(t));
                        if matches
                            && !send(&mut socket, json!({"id": id, "type": "event", "event": event})).await
                        {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            message = next_json(&mut socket) => {
                let Some(message) = message else { return };
                let Ok(message) = message else {
                    let _ = send(&mut socket, json!({"id": null, "type": "result", "success": false, "error": {"code": "invalid_format", "message": "Message incorrectly formatted."}})).await;
                    continue;
                };
                let Some(id) = message["id"].as_u64() else {
                    let _ = send(&mut socket, json!({"id": null, "type": "result", "success": false, "error": {"code": "invalid_format", "message": "Message incorrectly formatted."}})).await;
                    continue;
                };
                if id <= last_id {
                    let _ = send(&mut socket, json!({"id": id, "type": "result", "success": false, "error": {"code": "id_reuse", "message": "Identifier values have to increase."}})).await;
                    continue;
                }
                last_id = id;
                let reply = match message["type"].as_str() {
                    Some("subscribe_events") => {
                        subscriptions.add(id, message["event_type"].as_str().map(str::to_owned));
                        json!({"id": id, "type": "result", "success": true, "result": null})
                    }
                    Some("unsubscribe_events") => {
                        let removed = message["subscription"]
                            .as_u64()
                            .and_then(|s| subscriptions.remove(s));
                        if removed.is_some() {
                            json!({"id": id, "type": "result", "success": true, "result": null})
                        } else {
                            json!({"id": id, "type": "result", "success": false, "error": {"code": "not_found", "message": "Subscription not found."}})
                        }
                    }
                    Some("ping") => json!({"id": id, "type": "pong"}),
                    _ => json!({"id": id, "type": "result", "success": false, "error": {"code": "unknown_command", "message": "Unknown command."}}),
                };
                if !send(&mut socket, reply).await {
                    return;
                }
            }
        }
    }
}
