//! The connection supervisor: runs the current connection, and after an
//! unexpected loss reconnects with exponential backoff (1 s, 2 s, 4 s … capped,
//! with a little jitter), re-authenticates, re-sends every outstanding call (no more
//! `tool_request`s in flight than the gateway allows) and fetches pending results. Gives up after `max_retries` or on an
//! authentication failure; stops promptly on `close()`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, watch};

use super::config::ClientConfig;
use super::connection::{OpenError, Running, Ws, open};
use super::{ConnectionState, Shared};
use crate::error::Error;

/// Connect for `connect()`: retry connection failures with backoff up to
/// `max_retries`; authentication failures are returned at once.
pub(crate) async fn initial_connect(
    config: &ClientConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(Ws, bool), Error> {
    let mut attempt: u32 = 0;
    loop {
        match open(config, tls).await {
            Ok(opened) => return Ok(opened),
            Err(OpenError::Connect(e)) => {
                if config.max_retries.is_some_and(|max| attempt >= max) {
                    return Err(gave_up(config, attempt, &e));
                }
                tracing::info!(attempt, error = %e, "agent-gate: connection failed, retrying");
                tokio::time::sleep(config.backoff_with_jitter(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
            Err(e) => return Err(e.into_error()),
        }
    }
}

fn gave_up(config: &ClientConfig, retries: u32, last: &Error) -> Error {
    Error::connection(
        format!(
            "Connection lost: could not reach the gateway at {} after {} attempt(s); last error: {}",
            config.url,
            retries.saturating_add(1),
            last.message()
        ),
        last.suggestion().map_or_else(
            || "check that the gateway is running and reachable, or raise max_retries (None retries forever)".to_owned(),
            |s| format!("{s} (or raise max_retries; None retries forever)"),
        ),
    )
}

fn closed_error() -> Error {
    Error::connection(
        "the client was closed",
        "create a new client with AgentGateClient::connect to make more calls",
    )
}

pub(crate) fn spawn_supervisor(shared: Arc<Shared>, ws: (Ws, bool)) -> tokio::task::JoinHandle<()> {
    // Attach before returning, so a call made right after `connect()` finds the outbox
    // instead of waiting for a state change that already happened.
    let running = attach(&shared, ws);
    tokio::spawn(supervise(shared, running))
}

/// Wait until shutdown is requested (or every handle is gone).
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Attach a fresh connection: new outbox, re-send every outstanding call.
/// `idempotent`: the gateway said it honours `request_id` (re-sending is safe).
fn attach(shared: &Arc<Shared>, (ws, idempotent): (Ws, bool)) -> Running {
    let (tx, rx) = mpsc::unbounded_channel();
    let generation = shared.lock().attach(tx, &shared.config.url, idempotent);
    Running::start(Arc::clone(shared), ws, rx, generation)
}

fn detach(shared: &Shared) {
    shared.lock().detach();
}

async fn supervise(shared: Arc<Shared>, first: Running) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut running = first;
    loop {
        // Run until the connection is lost or close() is called.
        let reason = tokio::select! {
            r = &mut running.reader => r.unwrap_or_else(|e| format!("reader task failed: {e}")),
            w = &mut running.writer => w.unwrap_or_else(|e| format!("writer task failed: {e}")),
            _ = shutdown_requested(&mut shutdown) => {
                // Dropping the outbox makes the writer send a Close frame.
                detach(&shared);
                let grace = shared.config.connect_timeout.min(std::time::Duration::from_secs(2));
                let _ = tokio::time::timeout(grace, &mut running.writer).await;
                running.writer.abort();
                running.reader.abort();
                finish(&shared, closed_error(), ConnectionState::Closed);
                return;
            }
        };
        detach(&shared);
        running.reader.abort();
        running.writer.abort();
        tracing::warn!(%reason, "agent-gate: connection lost, reconnecting");

        match reconnect(&shared, &mut shutdown).await {
            Some(ws) => {
                running = attach(&shared, ws);
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                shared.set_state(ConnectionState::Connected);
                // Results decided while we were away resolve their calls.
                let fetcher = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(e) = fetcher.fetch_pending(false).await {
                        tracing::warn!(error = %e, "agent-gate: get_pending_results after reconnecting failed");
                    }
                });
            }
            None => return,
        }
    }
}

/// Mark the client finished: fail outstanding calls with `error`.
fn finish(shared: &Shared, error: Error, state: ConnectionState) {
    shared.lock().fail_all(&error);
    shared.set_state(state);
}

/// The backoff loop. `None` means the client is finished (closed or gave up).
async fn reconnect(
    shared: &Arc<Shared>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(Ws, bool)> {
    let config = &shared.config;
    let mut attempt: u32 = 0;
    let mut last_error: Option<Error> = None;
    loop {
        if config.max_retries.is_some_and(|max| attempt >= max) {
            let error = match &last_error {
                Some(e) => gave_up(config, attempt.saturating_sub(1), e),
                None => Error::connection(
                    format!(
                        "Connection lost: the connection to {} dropped and max_retries is 0",
                        config.url
                    ),
                    "raise max_retries (None retries forever) to reconnect automatically",
                ),
            };
            finish(shared, error.clone(), ConnectionState::Failed(error));
            return None;
        }
        let delay = config.backoff_with_jitter(attempt);
        attempt = attempt.saturating_add(1);
        shared.set_state(ConnectionState::Reconnecting { attempt, delay });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown_requested(shutdown) => {
                finish(shared, closed_error(), ConnectionState::Closed);
                return None;
            }
        }
        let result = tokio::select! {
            r = open(config, shared.tls.as_ref()) => r,
            _ = shutdown_requested(shutdown) => {
                finish(shared, closed_error(), ConnectionState::Closed);
                return None;
            }
        };
        match result {
            Ok(opened) => return Some(opened),
            Err(OpenError::Rejected(e)) => {
                tracing::error!(error = %e, "agent-gate: reconnection rejected (authentication or TLS), giving up");
                finish(shared, e.clone(), ConnectionState::Failed(e));
                return None;
            }
            Err(OpenError::Connect(e) | OpenError::AuthTimeout(e)) => {
                tracing::info!(attempt, error = %e, "agent-gate: reconnection attempt failed");
                last_error = Some(e);
            }
        }
    }
}
