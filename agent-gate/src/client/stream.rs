//! The streaming call: a `Stream` of [`CallEvent`]s for one tool request
//! (status notifications while a human decides, then the result or the error).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures_util::Stream;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::deadline::Deadline;
use super::{AgentGateClient, CallGuard, CallOptions, Delivery, Responder, timeout_error};
use crate::error::Error;
use crate::protocol::{Request, RequestStatus};

/// One event of a streaming tool call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallEvent {
    /// The gateway asked a human; the answer comes by `expires_at` at the latest.
    AwaitingApproval {
        /// The request's idempotency key.
        request_id: String,
        /// When the approval times out (RFC 3339), if the gateway said.
        expires_at: Option<String>,
    },
    /// Another status the gateway reported.
    Status {
        /// The request's idempotency key.
        request_id: String,
        /// The status.
        status: RequestStatus,
        /// An expiry, if the gateway sent one.
        expires_at: Option<String>,
    },
    /// The tool ran; this is its `data`. Last event.
    Result(Value),
    /// The call failed (denied, timed out, …). Last event.
    Error(Error),
}

/// A stream of [`CallEvent`]s, returned by
/// [`AgentGateClient::tool_request_stream`]. Dropping it abandons the call
/// locally (the gateway keeps the request; its result can be fetched later
/// with `get_pending_results`).
///
/// ```no_run
/// use futures_util::StreamExt;
/// use agent_gate::{AgentGateClient, CallEvent, CallOptions};
/// use serde_json::json;
///
/// # async fn run(client: AgentGateClient) {
/// let mut events = client.tool_request_stream(
///     "ha_call_service",
///     json!({"domain": "lock", "service": "unlock", "entity_id": "lock.front_door"}),
///     CallOptions::new(),
/// );
/// while let Some(event) = events.next().await {
///     match event {
///         CallEvent::AwaitingApproval { expires_at, .. } => println!("asked a human, until {expires_at:?}"),
///         CallEvent::Result(data) => println!("done: {data}"),
///         CallEvent::Error(e) => println!("failed: {e}"),
///         _ => {}
///     }
/// }
/// # }
/// ```
pub struct CallStream {
    inner: Pin<Box<dyn Stream<Item = CallEvent> + Send>>,
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl CallStream {
    /// When the call gives up waiting for its answer, as it stands now; `None`
    /// before the stream is first polled (the clock starts then).
    ///
    /// It starts as the call's timeout from then; once the gateway reports
    /// that a human has been asked ([`CallEvent::AwaitingApproval`]) it is
    /// that event's `expires_at` plus
    /// [`APPROVAL_DEADLINE_MARGIN`](crate::APPROVAL_DEADLINE_MARGIN), unless
    /// the timeout was set explicitly ([`CallOptions::timeout`] or
    /// [`ClientBuilder::request_timeout`](crate::ClientBuilder::request_timeout)).
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for CallStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallStream")
            .field("deadline", &self.deadline())
            .finish_non_exhaustive()
    }
}

impl Stream for CallStream {
    type Item = CallEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<CallEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}

struct Active {
    client: AgentGateClient,
    tool: String,
    request_id: String,
    rx: mpsc::UnboundedReceiver<Delivery>,
    guard: CallGuard,
    deadline: Deadline,
    /// Where [`CallStream::deadline`] reads the deadline.
    shown: Arc<Mutex<Option<Instant>>>,
}

impl Active {
    fn follow(&mut self, status: &crate::protocol::RequestStatusParams) {
        self.deadline.follow(status, SystemTime::now());
        *self.shown.lock().unwrap_or_else(|p| p.into_inner()) = Some(self.deadline.at());
    }
}

enum State {
    Init {
        client: AgentGateClient,
        tool: String,
        args: Value,
        options: CallOptions,
        shown: Arc<Mutex<Option<Instant>>>,
    },
    Active(Box<Active>),
    Done,
}

pub(crate) fn start(
    client: AgentGateClient,
    tool: String,
    args: Value,
    options: CallOptions,
) -> CallStream {
    let shown = Arc::new(Mutex::new(None));
    let init = State::Init {
        client,
        tool,
        args,
        options,
        shown: Arc::clone(&shown),
    };
    let stream = futures_util::stream::unfold(init, |state| async move {
        match state {
            State::Done => None,
            State::Init {
                client,
                tool,
                args,
                options,
                shown,
            } => {
                let config = client.config();
                let deadline = match options.timeout {
                    Some(timeout) => Deadline::new(timeout, true),
                    None => Deadline::new(config.request_timeout, config.request_timeout_explicit),
                };
                *shown.lock().unwrap_or_else(|p| p.into_inner()) = Some(deadline.at());
                let (params, request_id) = match client.tool_params(&tool, args, options.request_id)
                {
                    Ok(p) => p,
                    Err(e) => return Some((CallEvent::Error(e), State::Done)),
                };
                let (tx, rx) = mpsc::unbounded_channel();
                let started = client.shared().start_call(
                    crate::protocol::METHOD_TOOL_REQUEST,
                    |id| Request::tool_request(id, params).to_json(),
                    Some(request_id.clone()),
                    Responder::Stream(tx),
                    true,
                );
                match tokio::time::timeout_at(deadline.at(), started).await {
                    Err(_) => Some((
                        CallEvent::Error(timeout_error(&tool, &request_id, deadline.allowed())),
                        State::Done,
                    )),
                    Ok(Err(e)) => Some((CallEvent::Error(e), State::Done)),
                    Ok(Ok(guard)) => {
                        let active = Active {
                            client,
                            tool,
                            request_id,
                            rx,
                            guard,
                            deadline,
                            shown,
                        };
                        next_event(Box::new(active)).await
                    }
                }
            }
            State::Active(active) => next_event(active).await,
        }
    });
    CallStream {
        inner: Box::pin(stream),
        deadline: shown,
    }
}

async fn next_event(mut active: Box<Active>) -> Option<(CallEvent, State)> {
    match tokio::time::timeout_at(active.deadline.at(), active.rx.recv()).await {
        Err(_) => Some((
            CallEvent::Error(timeout_error(
                &active.tool,
                &active.request_id,
                active.deadline.allowed(),
            )),
            State::Done,
        )),
        Ok(None) => Some((
            CallEvent::Error(active.client.shared().lost_error()),
            State::Done,
        )),
        Ok(Some(Delivery::Status(params))) => {
            active.follow(&params);
            let event = match params.status {
                RequestStatus::AwaitingApproval => CallEvent::AwaitingApproval {
                    request_id: params.request_id,
                    expires_at: params.expires_at,
                },
                status => CallEvent::Status {
                    request_id: params.request_id,
                    status,
                    expires_at: params.expires_at,
                },
            };
            Some((event, State::Active(active)))
        }
        Ok(Some(Delivery::Final(reply))) => {
            let Active {
                client,
                tool,
                guard,
                ..
            } = *active;
            drop(guard);
            let event = match client.finish_tool_reply(&tool, reply).await {
                Ok(data) => CallEvent::Result(data),
                Err(e) => CallEvent::Error(e),
            };
            Some((event, State::Done))
        }
    }
}
