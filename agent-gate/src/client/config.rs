//! Client configuration: the builder, precedence (explicit > environment >
//! defaults), and TLS trust (web PKI roots plus optional custom CA certificates).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::{Error, ErrorKind};

/// Environment variable for the gateway URL.
pub const ENV_URL: &str = "AGENT_GATE_URL";
/// Environment variable for the agent's token.
pub const ENV_TOKEN: &str = "AGENT_GATE_TOKEN";
/// Environment variable naming a PEM file of extra CA certificates to trust.
pub const ENV_CA_CERT: &str = "AGENT_GATE_CA_CERT";

/// Default gateway URL when neither the builder nor the environment gives one.
pub const DEFAULT_URL: &str = "wss://localhost:8443";
/// Default per-call timeout. A tool call that the gateway reports as waiting
/// for a human (`request_status` with `expires_at`) waits instead until that
/// `expires_at` plus [`APPROVAL_DEADLINE_MARGIN`](crate::APPROVAL_DEADLINE_MARGIN),
/// however long the gateway's approval timeout is; a timeout set explicitly
/// (here or per call) always applies as given.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(930);
/// Default timeout for the TCP/TLS/WebSocket handshake and, separately, for
/// the reply to `auth`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default first reconnection delay.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Default longest reconnection delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Default random extra delay, as a fraction of the nominal delay.
pub const DEFAULT_BACKOFF_JITTER: f64 = 0.1;
/// Default limit on calls in flight on one connection.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16_384;
/// The gateway's cap on `tool_request`s in flight per connection (more are refused with
/// -32006). The client never has more than this (or `max_in_flight`, if lower) sent and
/// unanswered on one connection: further calls, and calls re-sent after a reconnection, wait
/// for answers first.
pub const GATEWAY_MAX_IN_FLIGHT: usize = 256;
/// Default WebSocket ping interval; a connection silent for two intervals is dead.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);

/// A secret string whose `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(pub(crate) String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Builds an [`AgentGateClient`](crate::AgentGateClient).
///
/// Every setting is resolved as: the value given here, else the environment
/// (`AGENT_GATE_URL`, `AGENT_GATE_TOKEN`, `AGENT_GATE_CA_CERT`), else the
/// default (`wss://localhost:8443`, no token → error).
///
/// ```no_run
/// # async fn run() -> Result<(), agent_gate::Error> {
/// use std::time::Duration;
/// let client = agent_gate::AgentGateClient::builder()
///     .url("wss://gateway.local:8443")
///     .token("agent-token")
///     .ca_cert_file("/etc/agent-gate/ca.pem")
///     .max_retries(Some(5))
///     .request_timeout(Duration::from_secs(60))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct ClientBuilder {
    url: Option<String>,
    token: Option<Token>,
    max_retries: Option<Option<u32>>,
    request_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    backoff: Option<(Duration, Duration)>,
    jitter: Option<f64>,
    max_in_flight: Option<usize>,
    ping_interval: Option<Duration>,
    ca_pems: Vec<Vec<u8>>,
    ca_files: Vec<PathBuf>,
    use_env: bool,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_retries", &self.max_retries)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &self.backoff)
            .field("max_in_flight", &self.max_in_flight)
            .field("ca_files", &self.ca_files)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder that falls back to the environment, then to defaults.
    pub fn new() -> Self {
        ClientBuilder {
            use_env: true,
            ..ClientBuilder::default()
        }
    }

    /// Ignore `AGENT_GATE_*` environment variables (use only explicit values
    /// and defaults).
    pub fn ignore_env(mut self) -> Self {
        self.use_env = false;
        self
    }

    /// The gateway URL, `ws://host:port` or `wss://host:port`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The agent's gateway token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Token(token.into()));
        self
    }

    /// How many reconnection attempts after an unexpected disconnect (and
    /// connection attempts beyond the first in `connect()`); `None` retries
    /// forever (the default).
    pub fn max_retries(mut self, max_retries: Option<u32>) -> Self {
        self.max_retries = Some(max_retries);
        self
    }

    /// Default time a call may take, including waiting for approval and for a
    /// reconnection. Set here, it applies as given to every call; left unset
    /// (930 s), a tool call waiting for a human follows the gateway's
    /// `expires_at` instead. Override per call with
    /// [`CallOptions::timeout`](crate::CallOptions::timeout).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Time allowed for the TCP/TLS/WebSocket handshake, and again for the
    /// reply to `auth` (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Reconnection delays: `initial`, doubled after each failed attempt, at
    /// most `max` (defaults 1 s and 30 s).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Some((initial, max));
        self
    }

    /// Random extra delay added to each backoff step, as a fraction of the
    /// step (default 0.1; 0 makes the schedule exact).
    pub fn backoff_jitter(mut self, fraction: f64) -> Self {
        self.jitter = Some(fraction);
        self
    }

    /// At most this many calls in flight at once (default 16384); further
    /// calls wait for a free slot.
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        self.max_in_flight = Some(limit);
        self
    }

    /// WebSocket ping interval (default 20 s). A connection from which nothing
    /// was received for two intervals is treated as lost.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = Some(interval);
        self
    }

    /// Also trust the CA certificate(s) in this PEM text (for gateways with a
    /// self-signed or private-CA certificate).
    pub fn ca_cert_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.ca_pems.push(pem.as_ref().to_vec());
        self
    }

    /// Also trust the CA certificate(s) in this PEM file.
    pub fn ca_cert_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Resolve the settings (explicit > environment > defaults) and check them.
    pub fn build_config(&self) -> Result<ClientConfig, Error> {
        let env = |name: &str| {
            if self.use_env {
                std::env::var(name).ok().filter(|v| !v.is_empty())
            } else {
                None
            }
        };
        let url = self
            .url
            .clone()
            .or_else(|| env(ENV_URL))
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(Error::validation(
                format!("gateway URL {url:?} must start with ws:// or wss://"),
                Some(format!(
                    "pass e.g. .url(\"wss://gateway:8443\") or set {ENV_URL}"
                )),
            ));
        }
        let token = self
            .token
            .clone()
            .or_else(|| env(ENV_TOKEN).map(Token))
            .ok_or_else(|| {
                Error::new(ErrorKind::Authentication, "no agent token configured").with_suggestion(
                    format!(
                        "pass one with AgentGateClient::builder().token(..) or AgentGateClient::connect(url, token), or set the {ENV_TOKEN} environment variable"
                    ),
                )
            })?;
        if token.0.is_empty() {
            return Err(
                Error::new(ErrorKind::Authentication, "the agent token is empty").with_suggestion(
                    format!("pass the token from the gateway's config.yaml, or set {ENV_TOKEN}"),
                ),
            );
        }
        let (backoff_initial, backoff_max) = self
            .backoff
            .unwrap_or((DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX));
        let jitter = self.jitter.unwrap_or(DEFAULT_BACKOFF_JITTER);
        if !(0.0..=1.0).contains(&jitter) {
            return Err(Error::validation(
                format!("backoff jitter {jitter} is out of range"),
                Some("use a fraction between 0 and 1".to_owned()),
            ));
        }
        let max_in_flight = self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        if max_in_flight == 0 || max_in_flight > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(Error::validation(
                format!("max_in_flight {max_in_flight} is out of range"),
                Some("use at least 1".to_owned()),
            ));
        }
        let mut ca_certs = Vec::new();
        for pem in &self.ca_pems {
            ca_certs.extend(parse_pem(pem, "the PEM given to ca_cert_pem")?);
        }
        let mut files = self.ca_files.clone();
        if let Some(path) = env(ENV_CA_CERT) {
            files.push(PathBuf::from(path));
        }
        for path in &files {
            let bytes = std::fs::read(path).map_err(|e| {
                Error::validation(
                    format!("cannot read CA certificate file {}: {e}", path.display()),
                    Some("check the path given to ca_cert_file or AGENT_GATE_CA_CERT".to_owned()),
                )
            })?;
            ca_certs.extend(parse_pem(&bytes, &path.display().to_string())?);
        }
        Ok(ClientConfig {
            url,
            token,
            max_retries: self.max_retries.unwrap_or(None),
            request_timeout: self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            request_timeout_explicit: self.request_timeout.is_some(),
            connect_timeout: self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            backoff_initial,
            backoff_max: backoff_max.max(backoff_initial),
            jitter,
            max_in_flight,
            ping_interval: self.ping_interval.unwrap_or(DEFAULT_PING_INTERVAL),
            ca_certs: Arc::new(ca_certs),
        })
    }

    /// Connect and authenticate, retrying with backoff up to `max_retries`.
    /// Authentication failures are not retried.
    pub async fn connect(self) -> Result<super::AgentGateClient, Error> {
        let config = self.build_config()?;
        super::AgentGateClient::connect_with_config(config).await
    }
}

fn parse_pem(pem: &[u8], source: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    let certs = certs.map_err(|e| {
        Error::validation(
            format!("{source} is not valid PEM: {e}"),
            Some("give PEM text with -----BEGIN CERTIFICATE----- blocks".to_owned()),
        )
    })?;
    if certs.is_empty() {
        return Err(Error::validation(
            format!("{source} contains no certificate"),
            Some("give PEM text with -----BEGIN CERTIFICATE----- blocks".to_owned()),
        ));
    }
    Ok(certs)
}

/// The resolved settings of a client. `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) url: String,
    pub(crate) token: Token,
    pub(crate) max_retries: Option<u32>,
    pub(crate) request_timeout: Duration,
    /// `request_timeout` was set with the builder, so the gateway's
    /// `expires_at` does not extend it.
    pub(crate) request_timeout_explicit: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) jitter: f64,
    pub(crate) max_in_flight: usize,
    pub(crate) ping_interval: Duration,
    pub(crate) ca_certs: Arc<Vec<CertificateDer<'static>>>,
}

impl ClientConfig {
    /// The gateway URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Reconnection attempts allowed (`None` = forever).
    pub fn max_retries(&self) -> Option<u32> {
        self.max_retries
    }

    /// The default per-call timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The handshake and auth timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The limit on calls in flight.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// The nominal delay before reconnection attempt `attempt` (0-based):
    /// `initial × 2^attempt`, at most `max`, without jitter.
    pub fn backoff_delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX);
        self.backoff_initial
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }

    /// The delay actually used: the nominal delay plus up to `jitter` of it,
    /// still at most `max`.
    pub(crate) fn backoff_with_jitter(&self, attempt: u32) -> Duration {
        let nominal = self.backoff_delay(attempt);
        if self.jitter <= 0.0 {
            return nominal;
        }
        let extra = nominal.mul_f64(self.jitter * rand::random::<f64>());
        (nominal + extra).min(self.backoff_max.max(nominal))
    }

    /// The rustls configuration: web PKI roots plus the configured CAs, ring provider.
    pub(crate) fn tls_config(&self) -> Result<rustls::ClientConfig, Error> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for cert in self.ca_certs.iter() {
            roots.add(cert.clone()).map_err(|e| {
                Error::validation(
                    format!("a configured CA certificate cannot be used as a trust anchor: {e}"),
                    Some("give the gateway's CA (or self-signed) certificate in PEM".to_owned()),
                )
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::validation(format!("TLS setup failed: {e}"), None))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(b: ClientBuilder) -> Result<ClientConfig, Error> {
        b.ignore_env().build_config()
    }

    #[test]
    fn missing_token_says_how_to_provide_one() {
        let err = cfg(ClientBuilder::new().url("ws://x")).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::Authentication);
        let text = err.to_string();
        assert!(text.contains("AGENT_GATE_TOKEN"), "{text}");
        assert!(text.contains(".token("), "{text}");
    }

    #[test]
    fn token_never_in_debug() {
        let b = ClientBuilder::new().url("ws://x").token("s3cr3t-value");
        assert!(!format!("{b:?}").contains("s3cr3t-value"));
        let c = cfg(b).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn defaults_and_explicit_values() {
        let c = cfg(ClientBuilder::new().token("t")).unwrap();
        assert_eq!(c.url(), DEFAULT_URL);
        assert_eq!(c.max_retries(), None);
        assert_eq!(c.request_timeout(), DEFAULT_REQUEST_TIMEOUT);
        let c = cfg(ClientBuilder::new()
            .token("t")
            .url("ws://h:1")
            .max_retries(Some(3))
            .max_in_flight(8))
        .unwrap();
        assert_eq!(c.url(), "ws://h:1");
        assert_eq!(c.max_retries(), Some(3));
        assert_eq!(c.max_in_flight(), 8);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(cfg(ClientBuilder::new().token("t").url("http://x")).is_err());
        assert!(cfg(ClientBuilder::new().token("")).is_err());
        assert!(cfg(ClientBuilder::new().token("t").max_in_flight(0)).is_err());
        assert!(cfg(ClientBuilder::new().token("t").ca_cert_pem("nope")).is_err());
        assert!(
            cfg(ClientBuilder::new()
                .token("t")
                .ca_cert_file("/nonexistent/ca.pem"))
            .is_err()
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = cfg(ClientBuilder::new().token("t")).unwrap();
        let secs: Vec<u64> = (0..8).map(|a| c.backoff_delay(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(c.backoff_delay(u32::MAX), Duration::from_secs(30));
        for a in 0..8 {
            let d = c.backoff_with_jitter(a);
            assert!(
                d >= c.backoff_delay(a)
                    && d <= c
                        .backoff_delay(a)
                        .mul_f64(1.1)
                        .min(Duration::from_secs(30))
                        .max(c.backoff_delay(a))
            );
        }
    }
}
