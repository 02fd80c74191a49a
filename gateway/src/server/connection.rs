//! One agent connection up to its authentication: the TLS and WebSocket handshakes and the
//! `auth` handshake (throttled per address); then the `session` takes over.

use std::net::SocketAddr;
use std::sync::Arc;

use agent_gate_protocol::{ErrorCode, ErrorObject, Id, MethodCall, Response, parse_request};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::admission::Ticket;
use super::session::session;
use super::sessions::{CLOSE_SLOT_TAKEN, Slot};
use super::sniff;
use super::{Front, ServerLimits};
use crate::engine::{Engine, Registration};
use crate::metrics::FrontLabel;

/// A response as a text frame (serialising our own types cannot fail; if it did, the agent
/// gets an internal error instead of nothing).
pub(super) fn to_text(response: &Response) -> String {
    response.to_json().unwrap_or_else(|_| {
        r#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"Internal error: the answer could not be encoded"},"id":null}"#
            .to_owned()
    })
}

/// Serves one accepted TCP connection until it closes. `ticket` is its place under the caps on
/// unauthenticated connections: given up once it authenticates; if a newer connection
/// displaces it first, the connection is dropped.
pub(crate) async fn serve(
    engine: Arc<Engine>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    limits: ServerLimits,
    front: Arc<Front>,
    ticket: Ticket,
) {
    let deadline = Instant::now() + limits.auth_timeout;
    // This future is the connection's task for as long as it is open, and a task reserves room
    // for every state its future can be in, so what only the handshakes need is kept out of
    // the states that last. A TLS stream is several KiB and each future it passes through
    // holds its own copy: the TLS handshake and the stream are boxed (inline, every
    // connection's task reserved 17.5 KiB, TLS or not). And values taken apart before an
    // `.await` are scoped to a block that ends first: a local whose fields were moved out
    // keeps its room in the future until its scope ends.
    match tls {
        Some(acceptor) => {
            let stream = {
                let accepted = tokio::select! {
                    biased;
                    () = ticket.evicted() => {
                        tracing::debug!(%peer, "dropped during the TLS handshake: too many unauthenticated connections");
                        return;
                    }
                    accepted = timeout_at(deadline, Box::pin(acceptor.accept(stream))) => accepted,
                };
                match accepted {
                    Ok(Ok(stream)) => Box::new(stream),
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                }
            };
            run(engine, stream, peer, deadline, limits, front, ticket).await;
        }
        None => run(engine, stream, peer, deadline, limits, front, ticket).await,
    }
}

/// Tells an MCP request from a WebSocket connection (when the MCP endpoint is on) and serves
/// it accordingly.
async fn run<S>(
    engine: Arc<Engine>,
    mut stream: S,
    peer: SocketAddr,
    deadline: Instant,
    limits: ServerLimits,
    front: Arc<Front>,
    ticket: Ticket,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(mcp) = &front.mcp else {
        return run_websocket(engine, stream, peer, deadline, limits, front, ticket).await;
    };
    let head = tokio::select! {
        biased;
        () = ticket.evicted() => return,
        head = timeout_at(deadline, sniff::read_head(&mut stream)) => match head {
            Ok(Ok(head)) => head,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "connection failed before its first request");
                return;
            }
            Err(_) => return,
        },
    };
    let is_mcp = sniff::is_mcp_request(&head, &mcp.path);
    let stream = sniff::Prefixed::new(head, stream);
    if is_mcp {
        let close = engine.close_connections.child_token();
        let _counted = engine.metrics.connection(FrontLabel::Mcp);
        super::http::serve(stream, peer, mcp.router.clone(), ticket, close).await;
        return;
    }
    run_websocket(engine, stream, peer, deadline, limits, front, ticket).await;
}

async fn run_websocket<S>(
    engine: Arc<Engine>,
    stream: S,
    peer: SocketAddr,
    deadline: Instant,
    limits: ServerLimits,
    front: Arc<Front>,
    ticket: Ticket,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Small buffers: an idle agent connection costs a few KiB, not tungstenite's 2 × 128 KiB.
    // The read buffer is filled to its capacity on the first read and kept: 2 KiB still holds
    // about ten pipelined requests per read, and a larger frame reserves its own length.
    let config = WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(limits.max_message_size.saturating_mul(4))
        .max_message_size(Some(limits.max_message_size))
        .max_frame_size(Some(limits.max_message_size));
    let handshake = async {
        let mut ws = match timeout_at(
            deadline,
            tokio_tungstenite::accept_async_with_config(stream, Some(config)),
        )
        .await
        {
            Ok(Ok(ws)) => ws,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "WebSocket handshake failed");
                return None;
            }
            Err(_) => return None,
        };
        let agent = authenticate(&engine, &front, &mut ws, peer, deadline, limits).await?;
        Some((ws, agent))
    };
    // Boxed and scoped (see `serve`): the session's state is all that stays.
    let (ws, agent, slot, registration) = {
        let handshake = Box::pin(handshake);
        let admitted = tokio::select! {
            biased;
            () = ticket.evicted() => {
                tracing::debug!(%peer, "dropped before authenticating: too many unauthenticated connections");
                None
            }
            admitted = handshake => admitted,
        };
        // Authenticated (or gone): no longer under the caps on unauthenticated connections.
        drop(ticket);
        let Some((ws, (agent, slot, registration))) = admitted else {
            return;
        };
        (ws, agent, slot, registration)
    };
    tracing::info!(agent = %agent, %peer, "agent connected");
    session(engine, ws, agent, slot, registration, limits).await;
}

/// Whether `text` is a JSON-RPC notification: an object with a `method` and no `id`. The
/// gateway never answers those (JSON-RPC 2.0 §4.1). Only called for frames that failed to
/// parse as requests.
pub(super) fn is_notification(text: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => {
            object.contains_key("method") && !object.contains_key("id")
        }
        _ => false,
    }
}

/// The close frame for a frame the WebSocket layer refused: too big (1009), not UTF-8 (1007)
/// or breaking the protocol (1002). `None` for a connection that is simply gone.
pub(super) fn close_for(error: &WsError) -> Option<CloseFrame> {
    let (code, reason) = match error {
        WsError::Capacity(_) => (CloseCode::Size, "message too big"),
        WsError::Utf8(_) => (CloseCode::Invalid, "text frame is not valid UTF-8"),
        // A peer that merely vanished is not answered.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => return None,
        WsError::Protocol(_) => (CloseCode::Protocol, "WebSocket protocol error"),
        _ => return None,
    };
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

/// Reads the first frame; `Some((agent id, its connection slot, its registration))` if it is
/// a valid `auth` and the agent has room for one more connection. The registration closes
/// the connection when a reload takes its agent or token away.
async fn authenticate<S>(
    engine: &Engine,
    front: &Front,
    ws: &mut WebSocketStream<S>,
    peer: SocketAddr,
    deadline: Instant,
    limits: ServerLimits,
) -> Option<(String, Slot, Registration)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(retry) = engine.auth_throttle.check(peer.ip()) {
        if let Some(suppressed) = front.logs.allow(peer.ip(), "refused") {
            tracing::warn!(%peer, suppressed, "connection refused: too many failed authentications from this address");
        }
        let error = ErrorObject::new(
            ErrorCode::NotAuthenticated,
            "Not authenticated: too many failed authentications from this address",
        )
        .with_suggestion("check the token, then retry after retry_after seconds")
        .with_retry_after(retry.as_secs_f64().ceil());
        reject(ws, None, error).await;
        return None;
    }
    let text = loop {
        match timeout_at(deadline, ws.next()).await {
            Err(_) => {
                let seconds = limits.auth_timeout.as_secs_f64();
                let error = ErrorObject::new(
                    ErrorCode::NotAuthenticated,
                    format!("Authentication timeout: no auth request within {seconds} seconds"),
                )
                .with_suggestion(
                    "send {\"method\": \"auth\", \"params\": {\"token\": ...}} as the first frame",
                );
                fail(engine, front, ws, peer, None, error, "timeout").await;
                return None;
            }
            Ok(Some(Err(error))) => {
                if let Some(frame) = close_for(&error) {
                    let blocked = engine.auth_throttle.record_failure(peer.ip());
                    if let Some(suppressed) = front.logs.allow(peer.ip(), "failed") {
                        tracing::warn!(%peer, reason = %frame.reason, blocked_for = ?blocked, suppressed, "authentication failed");
                    }
                    let _ = ws.close(Some(frame)).await;
                }
                return None;
            }
            Ok(None | Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(Message::Text(text)))) => break text,
            Ok(Some(Ok(Message::Binary(_)))) => {
                let error = ErrorObject::new(
                    ErrorCode::NotAuthenticated,
                    "Not authenticated: the first frame must be an auth request (a JSON text frame)",
                );
                fail(engine, front, ws, peer, None, error, "binary first frame").await;
                return None;
            }
            Ok(Some(Ok(_))) => {}
        }
    };
    let request = match parse_request(text.as_str()) {
        Ok(request) => request,
        Err(frame_error) if frame_error.id.is_none() && is_notification(text.as_str()) => {
            // A notification cannot authenticate and is never answered: close without a word.
            let blocked = engine.auth_throttle.record_failure(peer.ip());
            if let Some(suppressed) = front.logs.allow(peer.ip(), "failed") {
                tracing::warn!(%peer, reason = "notification as first frame", blocked_for = ?blocked, suppressed, "authentication failed");
            }
            let _ = ws
                .close(Some(CloseFrame {
                    code: CloseCode::Policy,
                    reason: "not authenticated".into(),
                }))
                .await;
            return None;
        }
        Err(frame_error) => {
            let error = ErrorObject::new(
                ErrorCode::NotAuthenticated,
                format!(
                    "Not authenticated: the first frame must be an auth request ({})",
                    frame_error.error.message
                ),
            );
            fail(
                engine,
                front,
                ws,
                peer,
                frame_error.id,
                error,
                "malformed first frame",
            )
            .await;
            return None;
        }
    };
    let id = request.id.clone();
    match request.method_call() {
        // The agents in force now (a reload's new tokens work at once).
        Ok(MethodCall::Auth(params)) => match engine.agent_by_token(&params.token) {
            // A success does not clear the address's failures (see `AuthThrottle`).
            Some((agent, token)) => {
                // Refused before it is told it is in: a client sees "slot taken", not a drop.
                let slot = match front.sessions.register(&agent) {
                    Ok(slot) => slot,
                    Err(full) => {
                        tracing::warn!(agent = %agent, %peer, max = full.max, "connection refused: the agent holds its most connections");
                        let _ = ws
                            .close(Some(CloseFrame {
                                code: CloseCode::from(CLOSE_SLOT_TAKEN),
                                reason: full.reason().into(),
                            }))
                            .await;
                        return None;
                    }
                };
                // Registered before it is told it is in: a reload from now on sees it.
                let registration = engine.register_connection(&agent, token);
                // `request_ids: idempotent` tells clients that re-sending is safe here.
                let ok = Response::success(
                    id,
                    serde_json::json!({"status": "authenticated", "request_ids": "idempotent"}),
                );
                if ws.send(Message::text(to_text(&ok))).await.is_err() {
                    return None;
                }
                Some((agent, slot, registration))
            }
            None => {
                let error = ErrorObject::new(ErrorCode::NotAuthenticated, "Invalid token")
                    .with_suggestion(
                        "use the token configured for this agent in the gateway's config.yaml",
                    );
                fail(engine, front, ws, peer, Some(id), error, "invalid token").await;
                None
            }
        },
        _ => {
            let error = ErrorObject::new(
                ErrorCode::NotAuthenticated,
                "Not authenticated: the first request must be auth",
            )
            .with_suggestion("send {\"method\": \"auth\", \"params\": {\"token\": ...}} first");
            fail(
                engine,
                front,
                ws,
                peer,
                Some(id),
                error,
                "first request was not auth",
            )
            .await;
            None
        }
    }
}

async fn fail<S>(
    engine: &Engine,
    front: &Front,
    ws: &mut WebSocketStream<S>,
    peer: SocketAddr,
    id: Option<Id>,
    error: ErrorObject,
    why: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let blocked = engine.auth_throttle.record_failure(peer.ip());
    if let Some(suppressed) = front.logs.allow(peer.ip(), "failed") {
        tracing::warn!(%peer, reason = why, blocked_for = ?blocked, suppressed, "authentication failed");
    }
    reject(ws, id, error).await;
}

/// Sends `error`, then closes with 1008 (policy violation).
async fn reject<S>(ws: &mut WebSocketStream<S>, id: Option<Id>, error: ErrorObject)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let response = Response::error(id, error);
    let _ = ws.send(Message::text(to_text(&response))).await;
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Policy,
            reason: "not authenticated".into(),
        }))
        .await;
    // The connection is dropped right away: an unauthenticated peer gets no more of our time.
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, D, E, G, H, F>(_: impl FnOnce(A, B, C, D, E, G, H) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_connection_task_does_not_reserve_room_for_its_handshakes() {
        // Every open connection's task is this future. With the TLS handshake and stream
        // inline it was 17.0 KiB in this test's build (17.5 KiB with the task's header in a
        // release build), TLS or not; with them boxed, 4.2 KiB; with the WebSocket and `auth`
        // handshakes boxed too and their results scoped, 2.7 KiB.
        let size = future_size(serve);
        assert!(size <= 4 * 1024, "the connection future is {size} bytes");
    }
}
