//! An authenticated agent's session on one connection: the frame loop (each request handled
//! concurrently through the engine), the mapping of the engine's answers to JSON-RPC (a
//! `request_status` notification while a call waits for a human, then its response), and the
//! writer that sends answers as they are ready and counts which outcomes were written: an
//! outcome of a call the client named (`request_id`) is acknowledged by the agent's next
//! frame (at least once); one the gateway named is delivered once it is written (at most
//! once; see [`crate::delivery`]).

use std::sync::{Arc, Mutex, PoisonError};

use agent_gate_protocol::{
    ErrorCode, ErrorObject, Id, MethodCall, PendingResults, RequestStatusParams, Response,
    ToolResult, parse_request,
};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::ServerLimits;
use super::connection::{close_for, is_notification, to_text};
use super::sessions::Slot;
use crate::delivery::{Outcome, Progress, Timestamp, client_named, rfc3339};
use crate::engine::{Engine, Registration, Submitted};

/// The close reason of a connection whose agent or token a reload removed (close code 1008).
pub(crate) const REVOKED_REASON: &str =
    "agent or token removed from the gateway's configuration (reload)";

/// Acknowledged outcomes are marked delivered in batches of this many.
const ACK_BATCH: usize = 64;

/// The connection's acknowledged-but-not-yet-marked outcomes and the last marking write.
struct Acks<'a> {
    pending: &'a mut Vec<String>,
    last: &'a mut Option<tokio::task::JoinHandle<()>>,
}

type Shared<T> = Arc<Mutex<T>>;

fn take<T: Default>(shared: &Mutex<T>) -> T {
    std::mem::take(&mut *shared.lock().unwrap_or_else(PoisonError::into_inner))
}

/// A message for the connection's writer, boxed in its queue: the queue keeps a block of 32
/// slots from the start, which for the message itself (72 bytes) came to 2.3 KiB per idle
/// connection.
#[derive(Debug)]
struct Outbound {
    /// The text frame.
    text: String,
    /// Request ids whose outcome this frame carries: once the frame is written and the agent
    /// sends anything afterwards, they are marked delivered.
    carries: Vec<String>,
    /// Request ids whose outcome this frame carries at most once: marked delivered as soon
    /// as the frame is written.
    once: Vec<String>,
}

impl Outbound {
    /// A frame carrying the outcomes of `ids`, each under its delivery contract.
    fn carrying(text: String, ids: Vec<String>) -> Self {
        let (carries, once) = ids.into_iter().partition(|id| client_named(id));
        Outbound {
            text,
            carries,
            once,
        }
    }
}

/// The sending side of a connection, as request handlers see it.
#[derive(Debug, Clone)]
struct Link {
    agent: Arc<str>,
    sender: mpsc::Sender<Box<Outbound>>,
    /// Cancelled when the connection ends (or the gateway stops): waits for outcomes end.
    stop: CancellationToken,
}

impl Link {
    async fn send(&self, text: String, carries: Vec<String>) {
        // A closed connection is fine: the outcome stays recorded for the agent.
        let _ = self
            .sender
            .send(Box::new(Outbound::carrying(text, carries)))
            .await;
    }

    async fn send_response(&self, response: &Response) {
        self.send(to_text(response), Vec::new()).await;
    }
}

/// The `request_status` notification of a call waiting for a human until `expires_at`.
fn awaiting_approval(request_id: &str, expires_at: Timestamp) -> String {
    let params = RequestStatusParams::awaiting_approval(request_id, rfc3339(expires_at));
    params.into_notification().to_json().unwrap_or_else(|_| {
        r#"{"jsonrpc":"2.0","method":"request_status","params":null}"#.to_owned()
    })
}

/// A success response as text, from its typed result.
fn success_text<T: serde::Serialize>(id: &Id, result: &T) -> String {
    Response::success_json(id, result).unwrap_or_else(|e| {
        let error = ErrorObject::new(ErrorCode::InternalError, format!("Internal error: {e}"));
        to_text(&Response::error(Some(id.clone()), error))
    })
}

/// The JSON-RPC answer (as text) to the `tool_request` `id` that ended with `outcome`.
fn tool_response(id: Id, request_id: &str, outcome: Outcome) -> String {
    let response = match outcome {
        Outcome::Executed(data) => {
            return success_text(&id, &ToolResult::executed(data, request_id));
        }
        Outcome::Failed {
            code,
            message,
            data,
        } => Response::error(
            Some(id),
            Outcome::error_object(code, message, data.as_ref())
                .with_details(serde_json::json!({ "request_id": request_id })),
        ),
    };
    to_text(&response)
}

/// Answers a submitted `tool_request` on `link`: at once if it finished, else after a
/// `request_status` notification once its outcome comes (nothing if the connection ends
/// first: the outcome stays stored). The request's place among the connection's in-flight
/// requests (`permit`) is given up before the answer is queued, so an agent that sends its
/// next request as soon as it reads an answer never finds the place still taken.
async fn answer(link: &Link, id: Id, submitted: Submitted, permit: OwnedSemaphorePermit) {
    // Every outcome the session answers is kept until the agent acknowledges it.
    let Submitted {
        request_id,
        progress,
        kept: _,
    } = submitted;
    let outcome = match progress {
        Progress::Finished(outcome) => outcome,
        Progress::Waiting(waiting) => {
            if let Some(expires_at) = waiting.awaiting_approval {
                link.send(awaiting_approval(&request_id, expires_at), Vec::new())
                    .await;
            }
            let outcome = tokio::select! {
                outcome = waiting.outcome() => outcome,
                () = link.stop.cancelled() => None,
            };
            match outcome {
                Some(outcome) => outcome,
                None => return,
            }
        }
    };
    let text = tool_response(id, &request_id, outcome);
    drop(permit);
    link.send(text, vec![request_id]).await;
}

/// Runs the session of the authenticated `agent` until the connection ends.
pub(super) async fn session<S>(
    engine: Arc<Engine>,
    ws: WebSocketStream<S>,
    agent: String,
    slot: Slot,
    registration: Registration,
    limits: ServerLimits,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stop = engine.shutdown.child_token();
    // Cancelled by the reader once it has set the close frame: the writer closes right away.
    let closing = CancellationToken::new();
    let (sink, mut stream) = ws.split();
    let (sender, receiver) = mpsc::channel::<Box<Outbound>>(1024);
    let written: Shared<Vec<String>> = Arc::default();
    let close_frame: Shared<Option<CloseFrame>> = Arc::default();
    let close_all = engine.close_connections.child_token();
    let writer = tokio::spawn(write_loop(
        Arc::clone(&engine),
        Arc::from(agent.as_str()),
        sink,
        receiver,
        Arc::clone(&written),
        Arc::clone(&close_frame),
        closing.clone(),
        close_all,
    ));
    let link = Link {
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
            () = engine.shutdown.cancelled() => {
                set_close(CloseCode::Away, "gateway shutting down");
                break;
            }
            () = registration.close.cancelled() => {
                // Requests in flight keep their decisions; their outcomes stay stored.
                tracing::info!(agent = %agent, "closing the connection: a reload removed its agent or token");
                set_close(CloseCode::Policy, REVOKED_REASON);
                closing.cancel();
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
            && let Some(task) = engine
                .delivery
                .mark_delivered(&agent, std::mem::take(&mut acked))
        {
            last_ack = Some(task);
        }
        match message {
            Message::Text(text) => {
                let acks = Acks {
                    pending: &mut acked,
                    last: &mut last_ack,
                };
                handle_text(&engine, &link, &in_flight, acks, text.as_str()).await;
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
    drop(slot);
    drop(registration);
    engine.delivery.mark_delivered(&agent, acked);
    drop(link);
    let _ = writer.await;
    tracing::info!(agent = %agent, "agent disconnected");
}

async fn handle_text(
    engine: &Arc<Engine>,
    link: &Link,
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
            let response = Response::success(id, engine.list_tools.clone());
            link.send(to_text(&response), Vec::new()).await;
        }
        Ok(MethodCall::GetPendingResults) => {
            let engine2 = Arc::clone(engine);
            let link = link.clone();
            // Acknowledgements sent before this call are written before it reads.
            if let Some(task) = engine
                .delivery
                .mark_delivered(&link.agent, std::mem::take(acks.pending))
            {
                *acks.last = Some(task);
            }
            let ack = acks.last.take();
            engine.tasks.spawn(async move {
                if let Some(ack) = ack {
                    let _ = ack.await;
                }
                match engine2.pending_results(&link.agent).await {
                    Ok(results) => {
                        let ids = results.iter().map(|r| r.request_id.clone()).collect();
                        let text = success_text(&id, &PendingResults { results });
                        link.send(text, ids).await;
                    }
                    Err(error) => {
                        link.send(to_text(&Response::error(Some(id), error)), Vec::new())
                            .await;
                    }
                }
            });
        }
        Ok(MethodCall::CancelRequest(params)) => {
            let engine2 = Arc::clone(engine);
            let link = link.clone();
            engine.tasks.spawn(async move {
                let text = match engine2
                    .cancel_request(&link.agent, &params.request_id)
                    .await
                {
                    Ok(result) => success_text(&id, &result),
                    Err(error) => to_text(&Response::error(Some(id), error)),
                };
                link.send(text, Vec::new()).await;
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
            let engine2 = Arc::clone(engine);
            let link = link.clone();
            engine.tasks.spawn(async move {
                match engine2.submit(&link.agent, params.into()).await {
                    Ok(submitted) => answer(&link, id, submitted, permit).await,
                    Err(error) => {
                        drop(permit);
                        link.send_response(&Response::error(Some(id), error)).await;
                    }
                }
            });
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_loop<S>(
    engine: Arc<Engine>,
    agent: Arc<str>,
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut receiver: mpsc::Receiver<Box<Outbound>>,
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
        let mut once = first.once;
        if sink.feed(Message::text(first.text)).await.is_err() {
            break;
        }
        let mut batch = 1;
        while batch < 64 {
            let Ok(more) = receiver.try_recv() else { break };
            carried.extend(more.carries);
            once.extend(more.once);
            if sink.feed(Message::text(more.text)).await.is_err() {
                break 'outer;
            }
            batch += 1;
        }
        if sink.flush().await.is_err() {
            break;
        }
        // Written: delivered, for the outcomes the client could not de-duplicate.
        engine
            .delivery
            .mark_delivered(&agent, std::mem::take(&mut once));
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
