//! The client subcommands of `agent-gate`: `request`, `tools` and `pending` talk to a running
//! gateway as an agent, through the SDK's [`AgentGateClient`].
//!
//! - stdout carries JSON only (the tool's `data`, the tool list, the pending results), so
//!   the output can be piped into `jq`;
//! - stderr carries errors (message, JSON-RPC code, suggestion) and, while a human decides,
//!   a notice and (when stderr is a terminal) a spinner with the time left;
//! - the exit code says what happened (see [`exit`]).
//!
//! ```text
//! agent-gate request ha_get_state entity_id=sensor.kitchen_temperature
//! agent-gate request ha_call_service domain=light service=turn_on entity_id=light.bedroom data='{"brightness": 128}'
//! agent-gate request ha_call_service --json '{"domain": "light", "service": "turn_off", "entity_id": "light.bedroom"}'
//! agent-gate tools | jq '.[].name'
//! agent-gate pending
//! ```

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_gate::{AgentGateClient, CallEvent, CallOptions, Error, ErrorKind};
use anyhow::Context;
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

/// The exit codes of the client subcommands.
pub mod exit {
    /// The call succeeded; its JSON is on stdout.
    pub const SUCCESS: u8 = 0;
    /// Denied: by a policy rule (`-32003`) or by a human (`-32001`).
    pub const DENIED: u8 = 1;
    /// Timed out: nobody approved in time (`-32002`), or `--timeout` passed.
    pub const TIMEOUT: u8 = 2;
    /// Could not talk to the gateway: unreachable, connection lost for good, token missing
    /// or rejected (`-32005`), rate limited (`-32006`), or a protocol error.
    pub const CONNECTION: u8 = 3;
    /// Invalid arguments: a malformed `key=value` or `--json`, an unknown tool, or
    /// arguments the gateway refused (`-32600`).
    pub const INVALID: u8 = 4;
    /// The gateway ran the tool and it failed (`-32004`).
    pub const EXECUTION: u8 = 5;
    /// The request was withdrawn by its agent (`-32007`: `agent-gate cancel`) before a human
    /// decided; nothing ran.
    pub const CANCELLED: u8 = 6;
}

/// The default of `--timeout` in seconds: the gateway's default approval timeout.
pub const DEFAULT_TIMEOUT_SECS: f64 = 900.0;

/// How to reach the gateway (shared by `request`, `tools` and `pending`).
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The gateway's WebSocket URL (`wss://host:port`, or `ws://` for a local insecure one).
    #[arg(long, env = "AGENT_GATE_URL", default_value = agent_gate::client::DEFAULT_URL)]
    pub url: String,
    /// The agent's token (from the gateway's config.yaml).
    #[arg(long, env = "AGENT_GATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How long the whole call may take, in seconds, including waiting for a human.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS, value_parser = parse_seconds)]
    pub timeout: f64,
    /// A PEM file of CA certificates to trust (for a gateway with a self-signed certificate).
    #[arg(long, env = "AGENT_GATE_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// How many times to retry connecting (at start and after losing the connection).
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
}

/// Arguments of `agent-gate cancel`.
#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    /// The request to withdraw: the `request_id` `agent-gate request` printed while it waited
    /// (or gave with `--request-id`).
    pub request_id: String,
    /// How to reach the gateway.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Arguments of `agent-gate request`.
#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// The tool to run, e.g. `ha_get_state` (`agent-gate tools` lists them).
    pub tool: String,
    /// Arguments as `key=value`; a value that is valid JSON is used as JSON (`brightness=128`,
    /// `data='{"brightness": 128}'`), anything else as a string (`entity_id=light.bedroom`).
    #[arg(value_name = "KEY=VALUE")]
    pub args: Vec<String>,
    /// All arguments as one JSON object; `key=value` arguments are applied on top.
    #[arg(long, value_name = "OBJECT")]
    pub json: Option<String>,
    /// The idempotency key: sending the same id again attaches to the same request.
    #[arg(long)]
    pub request_id: Option<String>,
    /// How to reach the gateway.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Arguments of `agent-gate tools` and `agent-gate pending`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// How to reach the gateway.
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 7.0 * 86_400.0 => Ok(s),
        _ => Err(format!(
            "expected a number of seconds greater than 0 (at most a week), got {text:?}"
        )),
    }
}

/// A `key=value` or `--json` argument that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// No `=` in a positional argument.
    #[error(
        "argument {0:?} is not of the form key=value; write e.g. entity_id=light.bedroom (or pass all arguments with --json '{{...}}')"
    )]
    NotKeyValue(String),
    /// `=value` with nothing before it.
    #[error("argument {0:?} has an empty key; write key=value")]
    EmptyKey(String),
    /// The same key twice among the `key=value` arguments.
    #[error("argument {0:?} is given twice; give each key once")]
    Duplicate(String),
    /// `--json` is not a JSON object.
    #[error("--json must be a JSON object such as '{{\"entity_id\": \"light.bedroom\"}}': {0}")]
    Json(String),
}

/// Builds the arguments object of a tool call from `--json` and `key=value` arguments: a
/// value that parses as JSON is used as JSON, anything else as a string; `key=value`
/// arguments override keys of `--json`.
pub fn build_args(json: Option<&str>, pairs: &[String]) -> Result<Value, ArgsError> {
    let mut args = match json {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                return Err(ArgsError::Json(format!(
                    "got {}",
                    agent_gate_protocol::json_type_name(&other)
                )));
            }
            Err(e) => return Err(ArgsError::Json(e.to_string())),
        },
        None => Map::new(),
    };
    let mut seen = Vec::new();
    for pair in pairs {
        let Some((key, raw)) = pair.split_once('=') else {
            return Err(ArgsError::NotKeyValue(pair.clone()));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(ArgsError::EmptyKey(pair.clone()));
        }
        if seen.contains(&key) {
            return Err(ArgsError::Duplicate(key.to_owned()));
        }
        seen.push(key);
        let value =
            serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        args.insert(key.to_owned(), value);
    }
    Ok(Value::Object(args))
}

/// The exit code for an error of this kind (see [`exit`]).
pub fn exit_code(kind: &ErrorKind) -> u8 {
    match kind {
        ErrorKind::Denied { .. } => exit::DENIED,
        ErrorKind::Timeout => exit::TIMEOUT,
        ErrorKind::Connection
        | ErrorKind::Authentication
        | ErrorKind::Protocol
        | ErrorKind::RateLimited { .. } => exit::CONNECTION,
        ErrorKind::Validation | ErrorKind::UnknownTool => exit::INVALID,
        ErrorKind::Cancelled => exit::CANCELLED,
        _ => exit::EXECUTION,
    }
}

/// Writes `error` to `err` as the client subcommands report it: the message, then the
/// JSON-RPC code, the suggestion, the details and the tools on offer when there are any.
pub fn write_error(err: &mut dyn Write, error: &Error) -> std::io::Result<()> {
    writeln!(err, "error: {}", error.message())?;
    if let Some(code) = error.code() {
        writeln!(err, "  code: {}", code.code())?;
    }
    if let Some(suggestion) = error.suggestion() {
        writeln!(err, "  suggestion: {suggestion}")?;
    }
    if let Some(details) = error.details() {
        writeln!(err, "  details: {details}")?;
    }
    if !error.available_tools().is_empty() {
        writeln!(
            err,
            "  available tools: {}",
            error.available_tools().join(", ")
        )?;
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // One thread: a CLI call needs no parallelism, and on a current-thread runtime the
    // yield in `connect` reliably lets the client's background task attach first.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn connect(args: &ClientArgs) -> Result<AgentGateClient, Error> {
    let Some(token) = args.token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(
            Error::new(ErrorKind::Authentication, "no agent token given").with_suggestion(
                "pass --token or set AGENT_GATE_TOKEN to the agent's token from the gateway's config.yaml",
            ),
        );
    };
    let mut builder = AgentGateClient::builder()
        .ignore_env()
        .url(args.url.clone())
        .token(token)
        .max_retries(Some(args.retries))
        .backoff(Duration::from_millis(250), Duration::from_secs(5))
        .request_timeout(Duration::from_secs_f64(args.timeout));
    if let Some(path) = &args.ca_cert {
        builder = builder.ca_cert_file(path.clone());
    }
    builder.connect().await
}

fn finish(
    result: Result<Value, Error>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(value) => {
            let text = serde_json::to_string_pretty(&value).context("writing JSON")?;
            writeln!(out, "{text}").context("writing to stdout")?;
            Ok(ExitCode::from(exit::SUCCESS))
        }
        Err(error) => {
            write_error(err, &error).context("writing to stderr")?;
            Ok(ExitCode::from(exit_code(error.kind())))
        }
    }
}

/// Runs `agent-gate request`: prints the tool's `data` as JSON on `out`.
pub fn run_request(args: &RequestArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut err = std::io::stderr();
    let call_args = match build_args(args.json.as_deref(), &args.args) {
        Ok(call_args) => call_args,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitCode::from(exit::INVALID));
        }
    };
    let spinner = std::io::stderr().is_terminal();
    let result = runtime()?.block_on(async {
        let client = connect(&args.client).await?;
        let mut options = CallOptions::new().timeout(Duration::from_secs_f64(args.client.timeout));
        if let Some(id) = &args.request_id {
            options = options.request_id(id.clone());
        }
        let result = call(
            &client,
            &args.tool,
            call_args,
            options,
            spinner,
            args.request_id.clone(),
        )
        .await;
        if args.request_id.is_some() && client.honours_request_id() == Some(false) {
            let _ = writeln!(
                std::io::stderr(),
                "warning: this gateway ignores request_id (its answer did not echo it, as upstream agentpass does): re-running with --request-id would run the call again"
            );
        }
        client.close().await;
        result
    });
    finish(result, out, &mut err)
}

/// A local timeout's suggestion in terms of this command's flags instead of the SDK's API.
fn cli_suggestion(error: Error, request_id: Option<&str>) -> Error {
    if error.is_timeout() && error.code().is_none() {
        let again = request_id
            .map(|id| format!(", or re-run with --request-id {id} to wait for it again"))
            .unwrap_or_default();
        return error.with_suggestion(format!(
            "raise --timeout; the request may still be decided at the gateway: run `agent-gate pending` later to fetch its result{again}"
        ));
    }
    error
}

/// Runs `agent-gate tools`: prints the gateway's tools (name, description, service, args,
/// input_schema) as a JSON array on `out`.
pub fn run_tools(args: &ListArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let result = runtime()?.block_on(async {
        let client = connect(&args.client).await?;
        let tools = client.list_tools().await;
        client.close().await;
        to_json(tools?)
    });
    finish(result, out, &mut std::io::stderr())
}

/// Runs `agent-gate pending`: prints the results decided while this agent was away as a
/// JSON array on `out` (fetching them hands them over: the gateway forgets them).
pub fn run_pending(args: &ListArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let result = runtime()?.block_on(async {
        let client = connect(&args.client).await?;
        let results = client.get_pending_results().await;
        client.close().await;
        to_json(results?)
    });
    finish(result, out, &mut std::io::stderr())
}

/// Runs `agent-gate cancel`: prints the gateway's answer as JSON; exit 0 when the request was
/// cancelled, 1 when it had already been decided or ended (the reason on stderr).
pub fn run_cancel(args: &CancelArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let result = runtime()?.block_on(async {
        let client = connect(&args.client).await?;
        let answer = client.cancel_request(args.request_id.clone()).await;
        client.close().await;
        answer
    });
    match result {
        Ok(answer) => {
            let text = serde_json::to_string_pretty(&answer).context("writing JSON")?;
            writeln!(out, "{text}").context("writing to stdout")?;
            if answer.cancelled {
                return Ok(ExitCode::from(exit::SUCCESS));
            }
            let why = answer.message.as_deref().unwrap_or("it had already ended");
            eprintln!(
                "not cancelled: request {} is {}: {why}",
                answer.request_id, answer.state
            );
            Ok(ExitCode::from(exit::DENIED))
        }
        Err(error) => {
            write_error(&mut std::io::stderr(), &error).context("writing to stderr")?;
            Ok(ExitCode::from(exit_code(error.kind())))
        }
    }
}

fn to_json(value: impl serde::Serialize) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|e| {
        Error::new(
            ErrorKind::Protocol,
            format!("cannot encode the answer: {e}"),
        )
    })
}

/// Runs one call through the streaming API, telling the user on stderr when a human has been
/// asked (with a spinner and the time left when `spinner` is set). `request_id` is the one
/// given with `--request-id`, if any (named in a timeout's suggestion).
async fn call(
    client: &AgentGateClient,
    tool: &str,
    args: Value,
    options: CallOptions,
    spinner: bool,
    request_id: Option<String>,
) -> Result<Value, Error> {
    let mut events = client.tool_request_stream(tool, args, options);
    let stop = CancellationToken::new();
    let mut spinner_task = None;
    let mut seen_id = request_id;
    let outcome = loop {
        match events.next().await {
            Some(CallEvent::AwaitingApproval {
                request_id,
                expires_at,
            }) => {
                let until = expires_at
                    .as_deref()
                    .map(|e| format!(" (until {e})"))
                    .unwrap_or_default();
                eprintln!("waiting for a human to approve request {request_id}{until}");
                seen_id = Some(request_id.clone());
                if spinner && spinner_task.is_none() {
                    let deadline = expires_at.as_deref().and_then(parse_expiry);
                    spinner_task = Some(tokio::spawn(spin(request_id, deadline, stop.clone())));
                }
            }
            Some(CallEvent::Result(data)) => break Ok(data),
            Some(CallEvent::Error(error)) => break Err(error),
            Some(_) => {}
            None => {
                break Err(Error::connection(
                    "the call ended without an answer",
                    "run `agent-gate pending` to fetch its result later",
                ));
            }
        }
    };
    stop.cancel();
    if let Some(task) = spinner_task {
        let _ = task.await;
    }
    outcome.map_err(|e| cli_suggestion(e, seen_id.as_deref()))
}

/// `expires_at` (RFC 3339) as a time since the Unix epoch (`None` if it is not RFC 3339 or is
/// before the epoch).
fn parse_expiry(text: &str) -> Option<Duration> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(at.unix_timestamp_nanos())
        .ok()
        .map(Duration::from_nanos)
}

/// `mm:ss` (or `h:mm:ss`) left until `deadline` (a time since the Unix epoch).
pub fn time_left(deadline: Duration, now: Duration) -> String {
    let left = deadline.saturating_sub(now).as_secs();
    let (h, m, s) = (left / 3600, (left / 60) % 60, left % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    }
}

async fn spin(request_id: String, deadline: Option<Duration>, stop: CancellationToken) {
    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut frame = 0usize;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let left = match deadline {
            Some(deadline) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                format!(", {} left", time_left(deadline, now))
            }
            None => String::new(),
        };
        let glyph = FRAMES.get(frame % FRAMES.len()).copied().unwrap_or('*');
        frame = frame.wrapping_add(1);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{glyph} waiting for approval of {request_id}{left}"
        );
        let _ = err.flush();
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn values_are_json_when_they_parse_and_strings_otherwise() {
        let args = build_args(
            None,
            &pairs(&[
                "entity_id=light.bedroom",
                "brightness=128",
                "on=true",
                "data={\"rgb\": [1, 2, 3]}",
                "name=\"42\"",
                "empty=",
                "text=a=b",
            ]),
        )
        .unwrap();
        assert_eq!(
            args,
            json!({
                "entity_id": "light.bedroom",
                "brightness": 128,
                "on": true,
                "data": {"rgb": [1, 2, 3]},
                "name": "42",
                "empty": "",
                "text": "a=b",
            })
        );
    }

    #[test]
    fn key_values_override_the_json_object() {
        let args = build_args(
            Some(r#"{"domain": "light", "service": "turn_on"}"#),
            &pairs(&["service=turn_off"]),
        )
        .unwrap();
        assert_eq!(args, json!({"domain": "light", "service": "turn_off"}));
    }

    #[test]
    fn malformed_arguments_are_refused() {
        assert_eq!(
            build_args(None, &pairs(&["entity_id"])),
            Err(ArgsError::NotKeyValue("entity_id".into()))
        );
        assert_eq!(
            build_args(None, &pairs(&["=x"])),
            Err(ArgsError::EmptyKey("=x".into()))
        );
        assert_eq!(
            build_args(None, &pairs(&["a=1", "a=2"])),
            Err(ArgsError::Duplicate("a".into()))
        );
        assert!(matches!(
            build_args(Some("[1]"), &[]),
            Err(ArgsError::Json(m)) if m == "got an array"
        ));
        assert!(matches!(
            build_args(Some("{"), &[]),
            Err(ArgsError::Json(_))
        ));
    }

    #[test]
    fn exit_codes_follow_the_error_kind() {
        use agent_gate::DeniedBy;
        let cases = [
            (
                ErrorKind::Denied {
                    by: DeniedBy::Policy,
                },
                1,
            ),
            (
                ErrorKind::Denied {
                    by: DeniedBy::Human,
                },
                1,
            ),
            (ErrorKind::Timeout, 2),
            (ErrorKind::Connection, 3),
            (ErrorKind::Authentication, 3),
            (ErrorKind::RateLimited { retry_after: None }, 3),
            (ErrorKind::Protocol, 3),
            (ErrorKind::Validation, 4),
            (ErrorKind::UnknownTool, 4),
            (ErrorKind::Execution, 5),
            (ErrorKind::Cancelled, 6),
        ];
        for (kind, code) in cases {
            assert_eq!(exit_code(&kind), code, "{kind:?}");
        }
    }

    #[test]
    fn time_left_counts_down_and_never_goes_negative() {
        let s = Duration::from_secs;
        assert_eq!(time_left(s(1000 + 754), s(1000)), "12:34");
        assert_eq!(time_left(s(1000 + 3661), s(1000)), "1:01:01");
        assert_eq!(time_left(s(10), s(20)), "00:00");
        assert_eq!(
            parse_expiry("1970-01-01T00:15:00Z"),
            Some(Duration::from_secs(900))
        );
    }

    #[test]
    fn errors_show_code_and_suggestion() {
        let error = Error::from_error_object(agent_gate_protocol::ErrorObject::new(
            agent_gate_protocol::ErrorCode::DeniedByPolicy,
            "Lock control is always denied",
        ));
        let mut text = Vec::new();
        write_error(&mut text, &error.with_suggestion("ask the owner")).unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "error: Lock control is always denied\n  code: -32003\n  suggestion: ask the owner\n"
        );
    }
}
