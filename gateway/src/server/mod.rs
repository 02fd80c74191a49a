//! The agent-facing WebSocket server: the TCP listener, TLS (rustls), the per-connection
//! authentication handshake and frame loop, and the request engine behind them.
//!
//! - WebSocket over TLS by default; plaintext only when the gateway is started insecure.
//! - Frames and messages are limited ([`ServerLimits::max_message_size`], 1 MiB by default;
//!   a bigger message closes the connection with 1009) and each connection may have at most
//!   [`ServerLimits::max_in_flight`] requests in flight (more are answered `-32006`).
//! - The first frame must be `auth` within [`ServerLimits::auth_timeout`] (10 s); a wrong
//!   token, the timeout or any other first frame is answered `-32005` and the connection is
//!   closed (1008). Failed authentications are throttled per address
//!   ([`crate::ratelimit::AuthThrottle`]).
//! - Several agents may be connected at once, each with up to
//!   `gateway.max_connections_per_agent` connections (8 by default; one more is closed with
//!   4000 before its `auth` is answered). Each connection gets the answers to its own calls.
//! - Requests run concurrently; each answer is sent as soon as it is ready.
//! - Connections that have not authenticated yet are capped in total and per client address
//!   (`gateway.max_unauthenticated_connections` / `max_unauthenticated_per_address`); when a
//!   cap is reached the oldest unauthenticated connection is dropped (see [`admission`]).
//!   Authenticated agents are not counted. Log lines about refused or failed connections are
//!   limited to one per address and [`loglimit::LOG_INTERVAL`], with a count of those left out.

mod admission;
mod connection;
mod http;
pub(crate) mod loglimit;
mod session;
mod sessions;
mod sniff;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use tls::{TlsError, load_tls_acceptor};

use self::admission::Admission;
use self::loglimit::LogLimiter;
use self::sessions::Sessions;
use crate::engine::Engine;

/// What the accept loop and the connections share: the caps on unauthenticated
/// connections, the limiter of per-connection log lines, and the live sessions.
#[derive(Debug)]
pub(crate) struct Front {
    pub(crate) admission: Arc<Admission>,
    pub(crate) logs: LogLimiter,
    pub(crate) sessions: Sessions,
    /// The MCP endpoint served on the same listener, if it is on.
    pub(crate) mcp: Option<McpEndpoint>,
}

/// The MCP endpoint of the agent listener: requests to `path` go to `router`.
#[derive(Debug, Clone)]
pub(crate) struct McpEndpoint {
    /// The endpoint's path (`mcp.path`).
    pub(crate) path: String,
    /// The `/mcp` router ([`crate::mcp::router`]).
    pub(crate) router: axum::Router,
}

impl Front {
    /// Caps of `max_total` unauthenticated connections, `max_per_address` per address, and
    /// `max_per_agent` authenticated WebSocket connections per agent; `mcp` served beside the
    /// WebSocket protocol when given.
    pub(crate) fn new(
        max_total: usize,
        max_per_address: usize,
        max_per_agent: usize,
        mcp: Option<McpEndpoint>,
    ) -> Arc<Self> {
        Arc::new(Self {
            admission: Admission::new(max_total, max_per_address),
            logs: LogLimiter::default(),
            sessions: Sessions::new(max_per_agent),
            mcp,
        })
    }

    /// Agents connected now.
    pub(crate) fn connected_agents(&self) -> usize {
        self.sessions.connected_agents()
    }

    /// Authenticated connections now, all agents together.
    pub(crate) fn connections(&self) -> usize {
        self.sessions.connections()
    }

    /// Connections accepted and not authenticated yet.
    pub(crate) fn unauthenticated(&self) -> usize {
        self.admission.unauthenticated()
    }
}

/// Limits of the WebSocket server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Largest WebSocket message (and frame) accepted, in bytes (default 1 MiB).
    pub max_message_size: usize,
    /// Most requests in flight per connection (default 256); calls waiting for a human count.
    pub max_in_flight: usize,
    /// How long a new connection has to authenticate (default 10 s), TLS handshake included.
    pub auth_timeout: Duration,
    /// How long shutdown waits for in-flight executions (default 10 s).
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_message_size: 1024 * 1024,
            max_in_flight: 256,
            auth_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Accepts connections until the gateway shuts down.
pub(crate) async fn accept_loop(
    engine: Arc<Engine>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: ServerLimits,
    front: Arc<Front>,
) {
    loop {
        let accepted = tokio::select! {
            () = engine.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // E.g. too many open files: back off briefly instead of spinning.
                let unknown = std::net::IpAddr::from([0, 0, 0, 0]);
                if let Some(suppressed) = front.logs.allow(unknown, "accept failed") {
                    tracing::warn!(%error, suppressed, "accepting a connection failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (ticket, displaced) = front.admission.admit(peer.ip());
        if displaced.same_address > 0
            && let Some(suppressed) = front.logs.allow(peer.ip(), "displaced same address")
        {
            tracing::warn!(%peer, suppressed, "too many unauthenticated connections from this address: dropped its oldest");
        }
        if displaced.total > 0
            && let Some(suppressed) = front.logs.allow(peer.ip(), "displaced total")
        {
            tracing::warn!(%peer, suppressed, "too many unauthenticated connections: dropped the oldest");
        }
        let engine = Arc::clone(&engine);
        let tls = tls.clone();
        let front = Arc::clone(&front);
        tokio::spawn(async move {
            connection::serve(engine, stream, peer, tls, limits, front, ticket).await;
        });
    }
}

/// Raises this process's soft limit on open files (`RLIMIT_NOFILE`) to its hard limit, so that
/// held connections exhaust the caps on unauthenticated connections long before the file
/// handles. Returns the soft limit now in force (`None` if it cannot be read, or off Unix).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: `raised` is a valid rlimit; lowering or keeping the hard limit is allowed.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        #[allow(clippy::useless_conversion)]
        Some(u64::from(limit.rlim_cur))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The address a listener is bound to, for logs.
pub(crate) fn local_addr(listener: &TcpListener) -> std::io::Result<SocketAddr> {
    listener.local_addr()
}
