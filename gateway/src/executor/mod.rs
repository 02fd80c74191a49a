//! The HTTP executor: turns an allowed tool call into one HTTP request to its service,
//! with the credentials from `config.yaml`, and the answer into the tool's result.
//!
//! - One pooled HTTP/1 client per service ([`transport`]), built at start-up; the service's
//!   timeout covers each request from sending to the last byte of the answer; redirects are not
//!   followed (they would carry the credentials elsewhere).
//! - The request comes from the manifest ([`Tool::http_request`]: path templating,
//!   percent-encoding, query, JSON body); the executor joins it to the service URL (with
//!   or without a trailing slash, with or without a path prefix) and adds the credential
//!   (bearer, header, query parameter or basic).
//! - A 2xx JSON answer is the result (wrapped as `{wrap: ...}` when the tool says so); a
//!   `decode = "text"` answer is the body as a string, wrapped. Anything else is an
//!   [`ExecutionError`]: 401/403, other error statuses (with the configured
//!   `services.<name>.errors` message or a default naming the status and a short,
//!   sanitized excerpt of the body; a 4xx other than 401/403 adds the tool's `error_help`
//!   with the call's arguments, e.g. which service, entities and data were sent), a
//!   non-JSON success, a timeout, a connection failure.
//! - Query flags (`?return_response`) are sent without a value; `wrap_unless` keeps an
//!   answer whole (`HttpRequestParts::wrap` is already `None` for such a call).
//! - At most `services.<name>.max_connections` (default 32) requests to one service are in
//!   flight at once, and at most that many connections are open to it; further calls wait
//!   their turn in arrival order ([`tokio::sync::Semaphore`] is fair).
//! - No retries: a tool call is sent at most once (it may have effects).
//! - Credentials never appear in errors or logs: transport errors carry no URL and every
//!   message is scrubbed of the service's secrets (and of anything that looks like a URL).

mod error;
mod transport;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use agent_gate_manifest::{Decode, Method, Tool, ValidArgs};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use indexmap::IndexMap;
use serde_json::{Map, Value};
use url::Url;

use crate::config::{Config, HealthCheck, ServiceAuth, ServiceConfig};

pub use error::{ExecutionError, ExecutorError};

/// Largest response body the executor reads (larger answers are an error).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// How many characters of a response body an error message quotes.
pub const BODY_EXCERPT_CHARS: usize = 200;

/// The most of a service's own error message (`error.data.service_message`) kept, in bytes.
pub const SERVICE_MESSAGE_BYTES: usize = 4096;

/// What a service says in an error body: the `message` of a JSON `{"message": ...}` body
/// (Home Assistant's error shape), else the body as text.
fn message_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => match object.get("message") {
            Some(Value::String(message)) => message.clone(),
            _ => text.into_owned(),
        },
        _ => text.into_owned(),
    }
}

/// The result of a service health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthStatus {
    /// The service answered with the expected status.
    Healthy,
    /// The service did not answer, or answered with another status.
    Unhealthy {
        /// What went wrong (credential-free).
        reason: String,
    },
    /// No service of that name is configured.
    Unknown,
}

impl HealthStatus {
    /// Whether the service is healthy.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Self::Healthy)
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Healthy => f.write_str("healthy"),
            Self::Unhealthy { reason } => write!(f, "unhealthy: {reason}"),
            Self::Unknown => f.write_str("not configured"),
        }
    }
}

/// One configured service with its connection pool.
struct ServiceClient {
    name: String,
    client: transport::HttpClient,
    /// The service URL, parsed once (may include a path prefix; no query, fragment or
    /// credentials: those in the URL are sent as basic auth).
    base: Url,
    /// The headers of every request: user agent, accept and the credential's header.
    headers: HeaderMap,
    /// A query-parameter credential: name and value, added to every request URL.
    query_auth: Option<(String, String)>,
    timeout: Duration,
    health: HealthCheck,
    health_method: http::Method,
    errors: std::collections::BTreeMap<u16, String>,
    /// Every secret of this service, to scrub from any text that leaves the executor.
    secrets: Vec<String>,
    /// One permit per request in flight to this service (`services.<name>.max_connections`).
    slots: tokio::sync::Semaphore,
}

impl fmt::Debug for ServiceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClient")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Executes tool calls against the configured services.
#[derive(Debug)]
pub struct Executor {
    services: IndexMap<String, ServiceClient>,
}

impl Executor {
    /// Builds one HTTP client per service of the configuration.
    pub fn from_config(config: &Config) -> Result<Self, ExecutorError> {
        Self::new(config.services.values())
    }

    /// Builds one HTTP client per service.
    pub fn new<'a>(
        services: impl IntoIterator<Item = &'a ServiceConfig>,
    ) -> Result<Self, ExecutorError> {
        let mut built = IndexMap::new();
        for service in services {
            built.insert(service.name.clone(), ServiceClient::new(service)?);
        }
        Ok(Self { services: built })
    }

    /// The names of the configured services.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// Executes one tool call: validates `args` against the tool, sends the request once
    /// and returns the tool's result (see the module docs for the mapping).
    pub async fn execute(
        &self,
        tool: &Tool,
        args: &Map<String, Value>,
    ) -> Result<Value, ExecutionError> {
        self.execute_valid(tool.validate(args)?).await
    }

    /// [`Executor::execute`] for arguments already validated against their tool (the
    /// gateway validates each request once).
    pub async fn execute_valid(&self, valid: ValidArgs<'_>) -> Result<Value, ExecutionError> {
        let tool = valid.tool();
        let parts = valid.http_request();
        let service =
            self.services
                .get(&tool.service)
                .ok_or_else(|| ExecutionError::UnknownService {
                    tool: tool.name.clone(),
                    service: tool.service.clone(),
                })?;
        let path = parts.path_and_query();
        tracing::debug!(tool = %tool.name, service = %service.name, method = %parts.method, %path, "executing tool call");
        let url = service.url(&path)?;
        let body = match &parts.body {
            Some(body) => {
                Some(
                    serde_json::to_vec(body).map_err(|error| ExecutionError::Transport {
                        service: service.name.clone(),
                        detail: format!("the request body could not be written as JSON: {error}"),
                    })?,
                )
            }
            None => None,
        };
        // Held until the body is read: the connection is busy until then.
        let _slot = service.slot().await?;
        let (status, body) = service
            .within_timeout(async {
                let response = service.send(method(parts.method), url, body).await?;
                let status = response.status();
                let body = if status.is_success() {
                    service.read_body(response).await?
                } else {
                    // An error answer is reported by its status; its body is only detail.
                    service.read_body(response).await.unwrap_or_default()
                };
                Ok((status, body))
            })
            .await?;
        if !status.is_success() {
            let error = service.status_error(status, &body, parts.error_help.as_deref());
            tracing::info!(tool = %tool.name, service = %service.name, status = status.as_u16(), "service answered with an error");
            return Err(error);
        }
        let data = match parts.decode {
            Decode::Json => serde_json::from_slice::<Value>(&body).map_err(|_| {
                ExecutionError::InvalidResponse {
                    service: service.name.clone(),
                    status: status.as_u16(),
                    problem: format!("the body is not JSON: {}", service.excerpt(&body)),
                }
            })?,
            Decode::Text => Value::String(String::from_utf8_lossy(&body).into_owned()),
        };
        Ok(match parts.wrap {
            Some(key) => {
                let mut wrapped = Map::new();
                wrapped.insert(key, data);
                Value::Object(wrapped)
            }
            None => data,
        })
    }

    /// Checks one service with its configured health request.
    pub async fn health(&self, service: &str) -> HealthStatus {
        match self.services.get(service) {
            Some(service) => service.health().await,
            None => HealthStatus::Unknown,
        }
    }

    /// Checks every service (concurrently), in configuration order.
    pub async fn health_all(&self) -> Vec<(String, HealthStatus)> {
        let checks = self
            .services
            .values()
            .map(|service| async move { (service.name.clone(), service.health().await) });
        futures_util::future::join_all(checks).await
    }
}

/// `base` (a service URL without query or fragment) with `path_and_query` appended to its path.
///
/// Equivalent to parsing the joined text, but only the new path and query are parsed: a call
/// does not pay for parsing the scheme and host again (host parsing includes IDNA mapping).
fn join_url(base: &Url, path_and_query: &str) -> Option<Url> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    if path_and_query.contains('#') {
        // A fragment: rare enough to take the general parser's reading of it.
        let separator = if path_and_query.starts_with('/') {
            ""
        } else {
            "/"
        };
        let base = base.as_str().trim_end_matches('/');
        return Url::parse(&format!("{base}{separator}{path_and_query}")).ok();
    }
    let prefix = base.path().trim_end_matches('/');
    let mut full = String::with_capacity(prefix.len() + path.len() + 1);
    full.push_str(prefix);
    if !path.starts_with('/') {
        full.push('/');
    }
    full.push_str(path);
    let mut url = base.clone();
    url.set_path(&full);
    url.set_query(query);
    Some(url)
}

fn method(method: Method) -> http::Method {
    match method {
        Method::Get => http::Method::GET,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Patch => http::Method::PATCH,
        Method::Delete => http::Method::DELETE,
    }
}

/// The `Authorization` value of HTTP basic auth, marked sensitive.
fn basic_auth(username: &str, password: Option<&str>) -> HeaderValue {
    use base64::Engine as _;
    let pair = format!("{username}:{}", password.unwrap_or_default());
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    // Base64 is always a valid header value; the fallback only guards the type.
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

/// Takes `user:password@` out of `url`, percent-decoded (how browsers and curl send URL
/// credentials: as basic auth). `None` when the URL has none.
fn take_url_credentials(url: &mut Url) -> Option<(String, Option<String>)> {
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .ok()
            .map(|decoded| decoded.into_owned())
    };
    let username = decode(url.username())?;
    let password = match url.password() {
        Some(password) => Some(decode(password)?),
        None => None,
    };
    if username.is_empty() && password.is_none() {
        return None;
    }
    // Both succeed on a URL with a host, which the caller has checked.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some((username, password))
}

impl ServiceClient {
    fn new(config: &ServiceConfig) -> Result<Self, ExecutorError> {
        let name = config.name.clone();
        let mut parsed = Url::parse(config.url.trim_end_matches('/')).map_err(|_| {
            ExecutorError::InvalidUrl {
                service: name.clone(),
            }
        })?;
        // A query or fragment in the service URL would end up in the middle of every
        // request URL once the tool's path is appended.
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none()
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(ExecutorError::InvalidUrl { service: name });
        }
        let mut secrets = Vec::new();
        // Credentials written into the URL (`http://user:password@host`) are secrets too.
        if let Some(password) = parsed.password() {
            secrets.push(password.to_owned());
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("agent-gate/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        if let Some((username, password)) = take_url_credentials(&mut parsed) {
            headers.insert(
                header::AUTHORIZATION,
                basic_auth(&username, password.as_deref()),
            );
        }
        let invalid_header = || ExecutorError::InvalidHeader {
            service: name.clone(),
        };
        let sensitive = |text: &str| {
            let mut value = HeaderValue::from_str(text).map_err(|_| invalid_header())?;
            value.set_sensitive(true);
            Ok::<_, ExecutorError>(value)
        };
        let mut query_auth = None;
        match &config.auth {
            None => {}
            Some(ServiceAuth::Bearer { token }) => {
                secrets.push(token.expose().to_owned());
                let value = sensitive(&format!("Bearer {}", token.expose()))?;
                headers.insert(header::AUTHORIZATION, value);
            }
            Some(ServiceAuth::Header {
                name: header,
                value,
            }) => {
                secrets.push(value.expose().to_owned());
                let header_name =
                    HeaderName::from_bytes(header.as_bytes()).map_err(|_| invalid_header())?;
                headers.insert(header_name, sensitive(value.expose())?);
            }
            Some(ServiceAuth::Query { name: param, value }) => {
                secrets.push(value.expose().to_owned());
                query_auth = Some((param.clone(), value.expose().to_owned()));
            }
            Some(ServiceAuth::Basic { username, password }) => {
                secrets.push(password.expose().to_owned());
                headers.insert(
                    header::AUTHORIZATION,
                    basic_auth(username, Some(password.expose())),
                );
            }
        }
        // Encoded forms too: a secret can come back inside a URL or a query string.
        let encoded: Vec<String> = secrets
            .iter()
            .flat_map(|secret| {
                [
                    agent_gate_manifest::encode_component(secret),
                    form_encode(secret),
                ]
            })
            .collect();
        secrets.extend(encoded);
        secrets.retain(|s| !s.is_empty());
        // Longest first, so a secret is never half-replaced by a shorter one it contains.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let health_method = http::Method::from_bytes(
            config.health.method.to_uppercase().as_bytes(),
        )
        .map_err(|_| ExecutorError::InvalidHealthMethod {
            service: name.clone(),
            method: config.health.method.clone(),
        })?;
        let max_connections = config.max_connections.max(1);
        let client = transport::client(
            &name,
            max_connections,
            config.timeout.min(Duration::from_secs(10)),
        )
        .map_err(|error| ExecutorError::Client {
            service: name.clone(),
            detail: error.to_string(),
        })?;
        Ok(Self {
            name,
            client,
            base: parsed,
            headers,
            query_auth,
            timeout: config.timeout,
            health: config.health.clone(),
            health_method,
            errors: config.errors.clone(),
            secrets,
            slots: tokio::sync::Semaphore::new(max_connections),
        })
    }

    /// Waits for a free slot under `services.<name>.max_connections`.
    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ExecutionError> {
        // The semaphore is never closed; the error arm only guards the type.
        self.slots
            .acquire()
            .await
            .map_err(|_| ExecutionError::Transport {
                service: self.name.clone(),
                detail: "the service's connection limit is closed".to_owned(),
            })
    }

    /// The full URL of `path_and_query` (which starts with `/`) under the service URL.
    fn url(&self, path_and_query: &str) -> Result<Url, ExecutionError> {
        join_url(&self.base, path_and_query).ok_or_else(|| ExecutionError::Transport {
            service: self.name.clone(),
            detail:
                "the request URL could not be built from services.<name>.url and the tool's path"
                    .replace("<name>", &self.name),
        })
    }

    /// Runs `work` (one request, to the end of its answer) within the service's timeout.
    async fn within_timeout<T>(
        &self,
        work: impl Future<Output = Result<T, ExecutionError>>,
    ) -> Result<T, ExecutionError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(ExecutionError::Timeout {
                    service: self.name.clone(),
                    timeout: self.timeout,
                })
            })
    }

    /// Sends one request with the service's headers and credential (and `body` as JSON),
    /// mapping transport failures.
    async fn send(
        &self,
        method: http::Method,
        mut url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<http::Response<Incoming>, ExecutionError> {
        if let Some((name, value)) = &self.query_auth {
            url.query_pairs_mut().append_pair(name, value);
        }
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|_| ExecutionError::Transport {
                service: self.name.clone(),
                detail: "the request URL is not a valid HTTP request target".to_owned(),
            })?;
        let mut headers = self.headers.clone();
        if body.is_some() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let mut request = http::Request::new(Full::new(body.map(Bytes::from).unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        self.client
            .request(request)
            .await
            .map_err(|error| self.transport_error(&error, error.is_connect()))
    }

    /// The error of a failed request: a timeout, a connection that could not be made
    /// (`connect`: nothing was sent), or a failure in transit. Logged without secrets.
    fn transport_error(
        &self,
        error: &(dyn std::error::Error + 'static),
        connect: bool,
    ) -> ExecutionError {
        if timed_out(error) {
            return ExecutionError::Timeout {
                service: self.name.clone(),
                timeout: self.timeout,
            };
        }
        let detail = self.scrub(&root_cause(error));
        tracing::warn!(service = %self.name, %detail, "request to service failed");
        if connect {
            ExecutionError::Connect {
                service: self.name.clone(),
                detail,
            }
        } else {
            ExecutionError::Transport {
                service: self.name.clone(),
                detail,
            }
        }
    }

    /// Reads the body, up to [`MAX_RESPONSE_BYTES`].
    async fn read_body(
        &self,
        response: http::Response<Incoming>,
    ) -> Result<Vec<u8>, ExecutionError> {
        let status = response.status().as_u16();
        let mut incoming = response.into_body();
        let mut body = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|error| self.transport_error(&error, false))?;
            let Ok(chunk) = frame.into_data() else {
                // Trailers: nothing of the answer.
                continue;
            };
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ExecutionError::InvalidResponse {
                    service: self.name.clone(),
                    status,
                    problem: format!("the body is larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The error for a non-2xx answer.
    /// The error of a non-2xx answer. `help` (the tool's `error_help` for this call) is
    /// added to the message of a 4xx answer other than 401 and 403: those are the answers
    /// where the call itself was refused, often without a reason (Home Assistant's
    /// `400: Bad Request`).
    fn status_error(&self, status: StatusCode, body: &[u8], help: Option<&str>) -> ExecutionError {
        let code = status.as_u16();
        let with_help = |message: String| match help {
            Some(help) if status.is_client_error() => {
                let separator = if message.ends_with('.') { " " } else { ". " };
                self.scrub(&format!("{message}{separator}{help}"))
            }
            _ => message,
        };
        if let Some(template) = self.errors.get(&code) {
            let message = template
                .replace("{status}", &code.to_string())
                .replace("{body}", &self.excerpt(body));
            return ExecutionError::Status {
                service: self.name.clone(),
                status: code,
                message: with_help(self.scrub(&message)),
                service_message: self.service_message(body),
            };
        }
        if status.is_redirection() {
            return ExecutionError::Redirect {
                service: self.name.clone(),
                status: code,
            };
        }
        if matches!(code, 401 | 403) {
            return ExecutionError::Unauthorized {
                service: self.name.clone(),
                status: code,
            };
        }
        let reason = status
            .canonical_reason()
            .map(|reason| format!(" {reason}"))
            .unwrap_or_default();
        let excerpt = self.excerpt(body);
        let message = if excerpt.is_empty() {
            format!("service `{}` answered HTTP {code}{reason}", self.name)
        } else {
            format!(
                "service `{}` answered HTTP {code}{reason}: {excerpt}",
                self.name
            )
        };
        ExecutionError::Status {
            service: self.name.clone(),
            status: code,
            message: with_help(message),
            service_message: self.service_message(body),
        }
    }

    /// The service's own message in full: the `message` of a JSON `{"message": ...}` body
    /// (Home Assistant's error shape), else the body as text; secret- and URL-free, cut at
    /// [`SERVICE_MESSAGE_BYTES`] on a character boundary. `None` for an empty body.
    fn service_message(&self, body: &[u8]) -> Option<String> {
        let text = message_of(body);
        let scrubbed = self.scrub(text.trim());
        if scrubbed.is_empty() {
            return None;
        }
        if scrubbed.len() <= SERVICE_MESSAGE_BYTES {
            return Some(scrubbed);
        }
        let mut end = SERVICE_MESSAGE_BYTES - '…'.len_utf8();
        while !scrubbed.is_char_boundary(end) {
            end -= 1;
        }
        let mut short = scrubbed.get(..end).unwrap_or_default().to_owned();
        short.push('…');
        Some(short)
    }

    /// A short, single-line, secret-free excerpt of a body: the `message` of a JSON
    /// `{"message": ...}` body (Home Assistant's error shape), else the text itself.
    fn excerpt(&self, body: &[u8]) -> String {
        let text = message_of(body);
        let single_line = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let scrubbed = self.scrub(&single_line);
        if scrubbed.chars().count() > BODY_EXCERPT_CHARS {
            let mut short: String = scrubbed.chars().take(BODY_EXCERPT_CHARS).collect();
            short.push('…');
            short
        } else {
            scrubbed
        }
    }

    /// Replaces every secret of the service and every URL in `text` by placeholders.
    fn scrub(&self, text: &str) -> String {
        let mut out = redact_urls(text);
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "***");
        }
        out
    }

    async fn health(&self) -> HealthStatus {
        let path = if self.health.path.starts_with('/') {
            self.health.path.clone()
        } else {
            format!("/{}", self.health.path)
        };
        let url = match self.url(&path) {
            Ok(url) => url,
            Err(error) => {
                return HealthStatus::Unhealthy {
                    reason: error.to_string(),
                };
            }
        };
        let _slot = match self.slot().await {
            Ok(slot) => slot,
            Err(error) => {
                return HealthStatus::Unhealthy {
                    reason: error.to_string(),
                };
            }
        };
        let answer = self
            .within_timeout(self.send(self.health_method.clone(), url, None))
            .await;
        match answer {
            Ok(response) if response.status().as_u16() == self.health.expect_status => {
                HealthStatus::Healthy
            }
            Ok(response) => {
                let status = response.status();
                HealthStatus::Unhealthy {
                    reason: format!(
                        "expected HTTP {} from {} {}, got {} {}",
                        self.health.expect_status,
                        self.health_method,
                        self.scrub(&path),
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("")
                    )
                    .trim_end()
                    .to_owned(),
                }
            }
            Err(error) => HealthStatus::Unhealthy {
                reason: error.to_string(),
            },
        }
    }
}

/// `value` as `application/x-www-form-urlencoded` encodes it in a query string (what is
/// sent for a query-parameter credential).
fn form_encode(value: &str) -> String {
    let Ok(mut url) = Url::parse("http://localhost/") else {
        return String::new();
    };
    url.query_pairs_mut().append_pair("k", value);
    url.query()
        .and_then(|query| query.strip_prefix("k="))
        .map(str::to_owned)
        .unwrap_or_default()
}

/// Whether an error chain ends in an operating-system timeout (dialing the service).
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        current = error.source();
    }
    false
}

/// The innermost cause of an error chain (e.g. `Connection refused (os error 111)`).
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// Replaces anything that looks like a URL (`scheme://...` up to whitespace) with `<url>`.
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(index) = rest.find("://") {
        let before = &rest[..index];
        let scheme_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map_or(0, |i| i + 1);
        out.push_str(&before[..scheme_start]);
        out.push_str("<url>");
        let after = &rest[index + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || c == ')' || c == '"' || c == '\'')
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Joining by path and query gives the URL that parsing the joined text gives.
    #[test]
    fn joined_urls_match_parsing_the_joined_text() {
        let bases = [
            "http://127.0.0.1:8123",
            "https://ha.example.org/prefix",
            "http://user:pw@host:1/a/b",
            "http://Bücher.example",
        ];
        let tails = [
            "/api/states/sensor.temp",
            "api/states/x",
            "/api/services/light/turn_on?entity_id=light.k%C3%BCche&x=1",
            "/api/history/period/2026-01-01T00:00:00%2B00:00?filter_entity_id=a,b",
            "/a b/ü?q=a b",
            "/api/../x/./y",
            "/",
            "/p?",
            "/p#frag",
        ];
        for base in bases {
            let parsed = Url::parse(base.trim_end_matches('/')).unwrap();
            for tail in tails {
                let separator = if tail.starts_with('/') { "" } else { "/" };
                let expected =
                    Url::parse(&format!("{}{separator}{tail}", base.trim_end_matches('/')))
                        .unwrap();
                assert_eq!(join_url(&parsed, tail), Some(expected), "{base} + {tail}");
            }
        }
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_urls("error sending request for url (http://h:1/api?token=abc): refused"),
            "error sending request for url (<url>): refused"
        );
        assert_eq!(redact_urls("no url here"), "no url here");
        assert_eq!(redact_urls("a https://x/y b wss://z"), "a <url> b <url>");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(error::format_duration(Duration::from_secs(10)), "10 s");
        assert_eq!(error::format_duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(error::format_duration(Duration::from_millis(1500)), "1.5 s");
    }
}
