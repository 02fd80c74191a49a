//! One agent connection: TLS and WebSocket handshakes, the `auth` handshake, the frame loop
//! (each request handled concurrently) and the writer that sends answers as they are ready.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use agent_gate_protocol::{ErrorCode, ErrorObject, Id, MethodCall, Response, parse_request};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::admission::Ticket;
use super::{Front, ServerLimits};
use crate::engine::{ConnectionLink, Core, Outbound};

/// Acknowledged outcomes are marked delivered in batches of this many.
const ACK_BATCH: usize = 64;

/// The connection's acknowledged-but-not-yet-marked outcomes and the last marking write.
struct Acks<'a> {
    pending: &'a mut Vec<String>,
    last: &'a mut Option<tokio::task::JoinHandle<()>>,
}

/// Close code sent to a connection replaced by a newer one of the same agent.
pub(crate) const CLOSE_REPLACED: u16 = 4000;

type Shared<T> = Arc<Mutex<T>>;

fn take<T: Default>(shared: &Mutex<T>) -> T {
    std::mem::take(&mut *shared.lock().unwrap_or_else(PoisonError::into_inner))
}

fn to_text(response: &Response) -> String {
    response.to_json().unwrap_or_else(|_| {
        r#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"Internal error: the answer could not be encoded"},"id":null}"#
            .to_owned()
    })
}

/// Serves one accepted TCP connection until it closes. `ticket` is its place under the caps on
/// unauthenticated connections: given up once it authenticates; if a newer connection
/// displaces it first, the connection is dropped.
pub(crate) async fn serve(
    core: Arc<Core>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    limits: ServerLimits,
    front: Arc<Front>,
    ticket: Ticket,
) {
    let deadline = Instant::now() + limits.auth_timeout;
    match tls {
        Some(acceptor) => {
            let accepted = tokio::select! {
                biased;
                () = ticket.evicted() => {
                    tracing::debug!(%peer, "dropped during the TLS handshake: too many unauthenticated connections");
                    return;
                }
                accepted = timeout_at(deadline, acceptor.accept(stream)) => accepted,
            };
            match accepted {
                Ok(Ok(stream)) => run(core, stream, peer, deadline, limits, front, ticket).await,
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
        None => run(core, stream, peer, deadline, limits, front, ticket).await,
    }
}

async fn run<S>(
    core: Arc<Core>,
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
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
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
        let agent = authenticate(&core, &front, &mut ws, peer, deadline, limits).await?;
        Some((ws, agent))
    };
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
    let Some((ws, agent)) = admitted else {
        return;
    };
    tracing::info!(agent = %agent, %peer, "agent connected");
    session(core, ws, agent, limits).await;
}

/// Whether `text` is a JSON-RPC notification: an object with a `method` and no `id`. The
/// gateway never answers those (JSON-RPC 2.0 §4.1). Only called for frames that failed to
/// parse as requests.
fn is_notification(text: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => {
            object.contains_key("method") && !object.contains_key("id")
        }
        _ => false,
    }
}

/// The close frame for a frame the WebSocket layer refused: too big (1009), not UTF-8 (1007)
/// or breaking the protocol (1002). `None` for a connection that is simply gone.
fn close_for(error: &WsError) -> Option<CloseFrame> {
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

/// Reads the first frame; `Some(agent id)` if it is a valid `auth`.
async fn authenticate<S>(
    core: &Core,
    front: &Front,
    ws: &mut WebSocketStream<S>,
    peer: SocketAddr,
    deadline: Instant,
    limits: ServerLimits,
) -> Option<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(retry) = core.auth_throttle.check(peer.ip()) {
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
                fail(core, front, ws, peer, None, error, "timeout").await;
                return None;
            }
            Ok(Some(Err(error))) => {
                if let Some(frame) = close_for(&error) {
                    let blocked = core.auth_throttle.record_failure(peer.ip());
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
                fail(core, front, ws, peer, None, error, "binary first frame").await;
                return None;
            }
            Ok(Some(Ok(_))) => {}
        }
    };
    let request = match parse_request(text.as_str()) {
        Ok(request) => request,
        Err(frame_error) if frame_error.id.is_none() && is_notification(text.as_str()) => {
            // A notification cannot authenticate and is never answered: close without a word.
            let blocked = core.auth_throttle.record_failure(peer.ip());
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
                core,
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
        Ok(MethodCall::Auth(params)) => match core.config.agent_by_token(&params.token) {
            // A success does not clear the address's failures (see `AuthThrottle`).
            Some(agent) => {
                let ok = Response::success(id, serde_json::json!({"status": "authenticated"}));
                if ws.send(Message::text(to_text(&ok))).await.is_err() {
                    return None;
                }
                Some(agent.id.clone())
            }
            None => {
                let error = ErrorObject::new(ErrorCode::NotAuthenticated, "Invalid token")
                    .with_suggestion(
                        "use the token configured for this agent in the gateway's config.yaml",
                    );
                fail(core, front, ws, peer, Some(id), error, "invalid token").await;
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
                core,
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
    core: &Core,
    front: &Front,
    ws: &mut WebSocketStream<S>,
    peer: SocketAddr,
    id: Option<Id>,
    error: ErrorObject,
    why: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let blocked = core.auth_throttle.record_failure(peer.ip());
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

async fn session<S>(core: Arc<Core>, ws: WebSocketStream<S>, agent: String, limits: ServerLimits)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = core.next_connection_id();
    let replaced = CancellationToken::new();
    core.register_session(&agent, connection, replaced.clone());
    let stop = core.shutdown.child_token();
    // Cancelled by the reader once it has set the close frame: the writer closes right away.
    let closing = CancellationToken::new();
    let (sink, mut stream) = ws.split();
    let (sender, receiver) = mpsc::channel::<Outbound>(1024);
    let written: Shared<Vec<String>> = Arc::default();
    let close_frame: Shared<Option<CloseFrame>> = Arc::default();
    let close_all = core.close_connections.child_token();
    let writer = tokio::spawn(write_loop(
        sink,
        receiver,
        Arc::clone(&written),
        Arc::clone(&close_frame),
        closing.clone(),
        close_all,
    ));
    let link = ConnectionLink {
        agent: Arc::from(agent.as_str()),
        sender,
        stop: stop.clone(),
    };
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let mut last_ack: Option<tokio::task::JoinHandle<()>> = None;
    let mut acked: Vec<String> = Vec::new();
    let set_close = |code: CloseCode, reason: &'static str| {
        *close_frame.lock().unwrap_or_else(PoisonError::into_inner) = Some(CloseFrame {
            code,
            reason: reason.into(),
        });
    };
    loop {
        let next = tokio::select! {
            biased;
            () = replaced.cancelled() => {
                set_close(CloseCode::from(CLOSE_REPLACED), "replaced by a newer connection of this agent");
                closing.cancel();
                break;
            }
            () = core.shutdown.cancelled() => {
                set_close(CloseCode::Away, "gateway shutting down");
                break;
            }
            next = stream.next() => next,
        };
        let message = match next {
            None => break,
            Some(Err(WsError::Capacity(error))) => {
                tracing::warn!(agent = %agent, %error, "message too big; closing the connection");
                set_close(CloseCode::Size, "message too big");
                closing.cancel();
                break;
            }
            Some(Err(error)) if close_for(&error).is_some() => {
                tracing::warn!(agent = %agent, %error, "invalid frame; closing the connection");
                *close_frame.lock().unwrap_or_else(PoisonError::into_inner) = close_for(&error);
                closing.cancel();
                break;
            }
            Some(Err(error)) => {
                tracing::debug!(agent = %agent, %error, "connection error");
                break;
            }
            Some(Ok(message)) => message,
        };
        // Anything the agent sends acknowledges the answers written before it. The marks are
        // written in batches (and before `get_pending_results` reads, and when the connection
        // ends); until then a result merely stays fetchable a little longer.
        acked.extend(take(&written));
        if acked.len() >= ACK_BATCH
            && let Some(task) = core.mark_delivered(&agent, std::mem::take(&mut acked))
        {
            last_ack = Some(task);
        }
        match message {
            Message::Text(text) => {
                let acks = Acks {
                    pending: &mut acked,
                    last: &mut last_ack,
                };
                handle_text(&core, &link, &in_flight, acks, text.as_str()).await;
            }
            Message::Binary(_) => {
                let error = ErrorObject::invalid_request(
                    "Invalid Request: binary frames are not supported; send JSON-RPC as text frames",
                );
                link.send(to_text(&Response::error(None, error)), Vec::new())
                    .await;
            }
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    stop.cancel();
    core.unregister_session(&agent, connection);
    core.mark_delivered(&agent, acked);
    drop(link);
    let _ = writer.await;
    tracing::info!(agent = %agent, "agent disconnected");
}

async fn handle_text(
    core: &Arc<Core>,
    link: &ConnectionLink,
    in_flight: &Arc<Semaphore>,
    acks: Acks<'_>,
    text: &str,
) {
    let request = match parse_request(text) {
        Ok(request) => request,
        // Notifications are never answered, not even with an error (JSON-RPC 2.0 §4.1).
        Err(frame_error) if frame_error.id.is_none() && is_notification(text) => return,
        Err(frame_error) => {
            link.send(to_text(&frame_error.into_response()), Vec::new())
                .await;
            return;
        }
    };
    let id = request.id.clone();
    match request.method_call() {
        Err(error) => {
            link.send(to_text(&Response::error(Some(id), error)), Vec::new())
                .await;
        }
        Ok(MethodCall::Auth(_)) => {
            let error = ErrorObject::invalid_request(
                "Invalid Request: this connection is already authenticated",
            );
            link.send(to_text(&Response::error(Some(id), error)), Vec::new())
                .await;
        }
        Ok(MethodCall::ListTools) => {
            let response = Response::success(id, core.list_tools.clone());
            link.send(to_text(&response), Vec::new()).await;
        }
        Ok(MethodCall::GetPendingResults) => {
            let core2 = Arc::clone(core);
            let link = link.clone();
            // Acknowledgements sent before this call are written before it reads.
            if let Some(task) = core.mark_delivered(&link.agent, std::mem::take(acks.pending)) {
                *acks.last = Some(task);
            }
            let ack = acks.last.take();
            core.tasks.spawn(async move {
                if let Some(ack) = ack {
                    let _ = ack.await;
                }
                match core2.pending_results(&link.agent).await {
                    Ok((value, ids)) => {
                        link.send(to_text(&Response::success(id, value)), ids).await;
                    }
                    Err(error) => {
                        link.send(to_text(&Response::error(Some(id), error)), Vec::new())
                            .await;
                    }
                }
            });
        }
        Ok(MethodCall::ToolRequest(params)) => {
            let Ok(permit) = Arc::clone(in_flight).try_acquire_owned() else {
                let error = ErrorObject::new(
                    ErrorCode::RateLimited,
                    "Too many requests in flight on this connection",
                )
                .with_suggestion("wait for answers before sending more requests")
                .with_retry_after(1.0);
                link.send(to_text(&Response::error(Some(id), error)), Vec::new())
                    .await;
                return;
            };
            let core2 = Arc::clone(core);
            let link = link.clone();
            core.tasks.spawn(async move {
                let _permit = permit;
                match core2.tool_request(&link, params).await {
                    None => {}
                    Some(Ok((request_id, outcome))) => {
                        let response = outcome.into_response(id, &request_id);
                        link.send(to_text(&response), vec![request_id]).await;
                    }
                    Some(Err(error)) => {
                        link.send(to_text(&Response::error(Some(id), error)), Vec::new())
                            .await;
                    }
                }
            });
        }
    }
}

async fn write_loop<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut receiver: mpsc::Receiver<Outbound>,
    written: Shared<Vec<String>>,
    close_frame: Shared<Option<CloseFrame>>,
    closing: CancellationToken,
    close_all: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    'outer: loop {
        let first = tokio::select! {
            biased;
            message = receiver.recv() => message,
            () = closing.cancelled() => None,
            () = close_all.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut carried = first.carries;
        if sink.feed(Message::text(first.text)).await.is_err() {
            break;
        }
        let mut batch = 1;
        while batch < 64 {
            let Ok(more) = receiver.try_recv() else { break };
            carried.extend(more.carries);
            if sink.feed(Message::text(more.text)).await.is_err() {
                break 'outer;
            }
            batch += 1;
        }
        if sink.flush().await.is_err() {
            break;
        }
        if !carried.is_empty() {
            written
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(carried);
        }
    }
    let frame = take(&close_frame).unwrap_or(CloseFrame {
        code: if close_all.is_cancelled() {
            CloseCode::Away
        } else {
            CloseCode::Normal
        },
        reason: if close_all.is_cancelled() {
            "gateway shutting down".into()
        } else {
            "".into()
        },
    });
    let _ = sink.send(Message::Close(Some(frame))).await;
    let _ = sink.close().await;
}
