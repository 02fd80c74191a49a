//! One WebSocket connection: opening it (TCP, TLS, WebSocket handshake, `auth`)
//! and running it (one reader task dispatching frames by id, one writer task
//! batching outgoing frames and sending keep-alive pings).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::Shared;
use super::config::ClientConfig;
use super::slot::Generation;
use crate::error::{Error, ErrorKind};
use crate::protocol::{AUTH_REQUEST_ID, AuthResult, Id, Incoming, Request, parse_incoming};

/// An open, authenticated WebSocket.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why opening a connection failed.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// TCP, TLS or the WebSocket handshake failed or timed out: worth retrying.
    Connect(Error),
    /// The gateway answered `auth` with an error or something else than the
    /// auth reply, or its TLS certificate is not trusted: retrying will not help.
    Rejected(Error),
    /// The gateway did not answer `auth` in time.
    AuthTimeout(Error),
}

impl OpenError {
    pub(crate) fn into_error(self) -> Error {
        match self {
            OpenError::Connect(e) | OpenError::Rejected(e) | OpenError::AuthTimeout(e) => e,
        }
    }
}

/// Connect to the gateway and authenticate. `true` with the socket when the gateway said it
/// honours `request_id` (see [`AuthResult::honours_request_ids`]).
pub(crate) async fn open(
    config: &ClientConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(Ws, bool), OpenError> {
    let url = config.url.as_str();
    let connector = match tls {
        Some(tls) => Connector::Rustls(Arc::clone(tls)),
        None => Connector::Plain,
    };
    let ws_config = WebSocketConfig::default();
    let connect = tokio_tungstenite::connect_async_tls_with_config(
        url,
        Some(ws_config),
        true,
        Some(connector),
    );
    let (mut ws, _response) = match tokio::time::timeout(config.connect_timeout, connect).await {
        Err(_) => {
            return Err(OpenError::Connect(Error::connection(
                format!(
                    "connecting to {url} timed out after {:?}",
                    config.connect_timeout
                ),
                "check that the gateway is running and reachable, or raise connect_timeout",
            )));
        }
        Ok(Err(e)) if is_tls_failure(&e) => {
            return Err(OpenError::Rejected(Error::connection(
                format!("the TLS handshake with {url} failed: {e}"),
                "if the gateway uses a self-signed or private-CA certificate, trust it with ca_cert_file(..), ca_cert_pem(..) or AGENT_GATE_CA_CERT; check that the host name matches the certificate",
            )));
        }
        Ok(Err(e)) => {
            return Err(OpenError::Connect(Error::connection(
                format!("cannot connect to {url}: {e}"),
                connect_suggestion(url),
            )));
        }
        Ok(Ok(pair)) => pair,
    };

    let auth = Request::auth(config.token.0.clone());
    let frame = auth.to_json().map_err(|e| {
        OpenError::Connect(Error::new(
            ErrorKind::Protocol,
            format!("cannot encode the auth frame: {e}"),
        ))
    })?;
    if let Err(e) = ws.send(Message::text(frame)).await {
        return Err(OpenError::Connect(Error::connection(
            format!("the connection to {url} failed while sending auth: {e}"),
            connect_suggestion(url),
        )));
    }
    match tokio::time::timeout(config.connect_timeout, read_auth_reply(&mut ws, url)).await {
        Err(_) => Err(OpenError::AuthTimeout(
            Error::new(
                ErrorKind::Authentication,
                format!(
                    "the gateway at {url} did not answer auth within {:?}",
                    config.connect_timeout
                ),
            )
            .with_suggestion(
                "check that the URL points at an agent-gate gateway, or raise connect_timeout",
            ),
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok(idempotent)) => Ok((ws, idempotent)),
    }
}

/// A certificate or TLS protocol failure (not worth retrying).
fn is_tls_failure(error: &tokio_tungstenite::tungstenite::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match error {
        WsError::Tls(_) => true,
        WsError::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
}

fn connect_suggestion(url: &str) -> String {
    if url.starts_with("wss://") {
        format!(
            "check that the gateway is running at {url}; for a self-signed certificate trust it with ca_cert_file(..) or AGENT_GATE_CA_CERT"
        )
    } else {
        format!("check that the gateway is running at {url}")
    }
}

async fn read_auth_reply(ws: &mut Ws, url: &str) -> Result<bool, OpenError> {
    let not_auth = |what: String| {
        OpenError::Rejected(
            Error::new(
                ErrorKind::Authentication,
                format!("the gateway at {url} did not answer auth properly: {what}"),
            )
            .with_suggestion("check that the URL points at an agent-gate gateway"),
        )
    };
    loop {
        let message = match ws.next().await {
            None => {
                return Err(OpenError::Connect(Error::connection(
                    format!("the gateway at {url} closed the connection during auth"),
                    "check the gateway's log; it may have rejected the connection",
                )));
            }
            Some(Err(e)) => {
                return Err(OpenError::Connect(Error::connection(
                    format!("the connection to {url} failed during auth: {e}"),
                    connect_suggestion(url),
                )));
            }
            Some(Ok(m)) => m,
        };
        let text = match message {
            Message::Text(t) => t,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Binary(_) => return Err(not_auth("a binary frame".to_owned())),
            Message::Close(Some(frame)) if u16::from(frame.code) == 4000 => {
                // Upstream's gateway takes one connection in all, agent-gate a few per agent:
                // the slot is taken, which passes; the token was not judged.
                let reason = Some(frame.reason.to_string())
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "no reason given".to_owned());
                return Err(OpenError::Connect(Error::connection(
                    format!(
                        "the gateway at {url} refused the connection because its connection slot is taken (close 4000: {reason})"
                    ),
                    "another client with this token is connected (an upstream agentpass gateway takes one connection in all; agent-gate up to gateway.max_connections_per_agent per agent); retrying with backoff: close the other client, or raise max_retries to wait longer",
                )));
            }
            Message::Close(frame) => {
                // A gateway that rejects a token may close with a reason.
                let reason = frame
                    .map(|f| f.reason.to_string())
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "no reason given".to_owned());
                return Err(OpenError::Rejected(
                    Error::new(
                        ErrorKind::Authentication,
                        format!(
                            "the gateway closed the connection instead of answering auth ({reason})"
                        ),
                    )
                    .with_suggestion(
                        "check the token (AGENT_GATE_TOKEN) against the gateway's config.yaml",
                    ),
                ));
            }
        };
        return match parse_incoming(text.as_str()) {
            Ok(Incoming::Response(r)) if r.id == Some(Id::String(AUTH_REQUEST_ID.to_owned())) => {
                match r.into_result() {
                    Ok(value) => match serde_json::from_value::<AuthResult>(value) {
                        Ok(a) if a.is_authenticated() => Ok(a.honours_request_ids()),
                        Ok(a) => Err(not_auth(format!("status {:?}", a.status))),
                        Err(e) => Err(not_auth(format!("unexpected result: {e}"))),
                    },
                    Err(error) => {
                        let mut e = Error::from_error_object(error);
                        if e.kind() != &ErrorKind::Authentication {
                            e = Error::new(ErrorKind::Authentication, e.message().to_owned())
                                .with_suggestion(
                                    "check the token (AGENT_GATE_TOKEN) against the gateway's config.yaml",
                                );
                        }
                        Err(OpenError::Rejected(e))
                    }
                }
            }
            Ok(Incoming::Response(r)) => Err(not_auth(format!(
                "a response with id {}",
                r.id.map(|i| i.to_string()).unwrap_or_else(|| "null".into())
            ))),
            Ok(Incoming::Notification(n)) => {
                Err(not_auth(format!("a {:?} notification", n.method)))
            }
            Err(e) => Err(not_auth(e.to_string())),
        };
    }
}

/// Milliseconds since `epoch` of the last frame received.
pub(crate) struct Liveness {
    epoch: Instant,
    last_seen_ms: AtomicU64,
}

impl Liveness {
    fn new() -> Self {
        Liveness {
            epoch: Instant::now(),
            last_seen_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_seen_ms.store(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_seen_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// The reader and writer tasks of one connection.
pub(crate) struct Running {
    pub(crate) reader: tokio::task::JoinHandle<String>,
    pub(crate) writer: tokio::task::JoinHandle<String>,
}

impl Running {
    /// Start the tasks. The writer ends (sending a Close frame) when every
    /// sender of `outbox` is gone; either task returns why it stopped.
    pub(crate) fn start(
        shared: Arc<Shared>,
        ws: Ws,
        outbox: mpsc::UnboundedReceiver<Message>,
        generation: Generation,
    ) -> Running {
        let ping_interval = shared.config.ping_interval;
        let (sink, stream) = ws.split();
        let liveness = Arc::new(Liveness::new());
        let reader = tokio::spawn(read_loop(shared, stream, Arc::clone(&liveness), generation));
        let writer = tokio::spawn(write_loop(sink, outbox, liveness, ping_interval));
        Running { reader, writer }
    }
}

async fn read_loop(
    shared: Arc<Shared>,
    mut stream: futures_util::stream::SplitStream<Ws>,
    liveness: Arc<Liveness>,
    generation: Generation,
) -> String {
    loop {
        match stream.next().await {
            None => return "the gateway closed the connection".to_owned(),
            Some(Err(e)) => return format!("the connection failed: {e}"),
            Some(Ok(message)) => {
                liveness.touch();
                match message {
                    Message::Text(text) => shared.dispatch(text.as_str(), generation),
                    Message::Close(_) => {
                        return "the gateway closed the connection".to_owned();
                    }
                    Message::Binary(_) => {
                        tracing::warn!("agent-gate: ignoring a binary frame from the gateway");
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
        }
    }
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Ws, Message>,
    mut outbox: mpsc::UnboundedReceiver<Message>,
    liveness: Arc<Liveness>,
    ping_interval: Duration,
) -> String {
    let mut ticker = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            message = outbox.recv() => {
                let Some(message) = message else {
                    // Closed on purpose: say goodbye properly.
                    let _ = sink.send(Message::Close(None)).await;
                    return "closed".to_owned();
                };
                if let Err(e) = sink.feed(message).await {
                    return format!("sending failed: {e}");
                }
                // Batch whatever else is queued into one flush.
                while let Ok(message) = outbox.try_recv() {
                    if let Err(e) = sink.feed(message).await {
                        return format!("sending failed: {e}");
                    }
                }
                if let Err(e) = sink.flush().await {
                    return format!("sending failed: {e}");
                }
            }
            _ = ticker.tick() => {
                let silent = liveness.silent_for();
                if silent > ping_interval * 2 {
                    return format!("no frame or pong from the gateway for {silent:?}");
                }
                if let Err(e) = sink.send(Message::Ping(Default::default())).await {
                    return format!("sending a ping failed: {e}");
                }
            }
        }
    }
}
