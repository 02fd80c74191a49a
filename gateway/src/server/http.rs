//! HTTP/1 connections on the agent listener, for the MCP endpoint: hyper serves the
//! connection with the `/mcp` router, each request carrying the client address and the
//! connection's [`Authenticated`] flag. The connection counts as unauthenticated (under the
//! admission caps, and droppable) until one of its requests authenticates; it closes when the
//! gateway closes its connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::admission::Ticket;
use crate::mcp::{Authenticated, PeerAddr};

/// How long a client has to send a request's head once it started one.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one HTTP/1 connection with `router` until it ends or `close` is cancelled.
pub(super) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    router: axum::Router,
    ticket: Ticket,
    close: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let authenticated = Arc::new(Authenticated::default());
    let flag = Arc::clone(&authenticated);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(PeerAddr(peer));
        request.extensions_mut().insert(Arc::clone(&flag));
        router.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut ticket = Some(ticket);
    loop {
        let evicted = async {
            match &ticket {
                Some(ticket) => ticket.evicted().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "MCP connection ended with an error");
                }
                return;
            }
            () = authenticated.wait(), if ticket.is_some() => {
                // Authenticated: no longer under the caps on unauthenticated connections.
                ticket = None;
            }
            () = evicted => {
                tracing::debug!(%peer, "MCP connection dropped before authenticating: too many unauthenticated connections");
                return;
            }
            () = close.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), connection.as_mut()).await;
                return;
            }
        }
    }
}
