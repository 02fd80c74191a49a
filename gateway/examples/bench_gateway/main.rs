//! End-to-end numbers of the gateway on loopback, against a fast local HTTP backend.
//!
//! ```text
//! cargo build --release -p agent-gate-gateway --bin agent-gate
//! cargo run --release -p agent-gate-gateway --example bench_gateway -- [calls] [seconds]
//! ```
//!
//! 1. Added latency of an allowed call: `calls` sequential `ha_get_state` calls through the
//!    gateway (one WebSocket connection) against the same number of direct HTTP calls to the
//!    backend; p50 and p99 of both and of the difference. Budget: p50 < 150 µs, p99 < 1 ms.
//! 2. Throughput: allowed calls per second with 64 in flight (8 agents × 8 pipelined
//!    requests) for `seconds`. Budget: ≥ 20,000/s.
//! 3. Memory: the release `agent-gate serve --insecure` binary as a separate process; VmRSS
//!    from `/proc/<pid>/status` when idle and with 1,000 authenticated idle agent
//!    connections, over `ws://` and then over `wss://` (a self-signed certificate).
//!    Budget: < 15 MB and < 64 MB.
//!
//! Every call is recorded in two SQLite commits (the decision before execution, the outcome
//! before the answer), group-committed across concurrent calls. Runs the database on disk with
//! `storage.sync: background` (the default) and `always`, and on tmpfs; `BENCH_ONLY=background`
//! (or `direct`, `always`, `tmpfs`, `memory`, `mcp`) runs one part; `direct` is the backend alone
//! with 64 calls in flight, for scale.
//!
//! 4. MCP (`BENCH_ONLY=mcp`): the same allowed call as an MCP `tools/call` over Streamable HTTP
//!    (`/mcp`, keep-alive, 2025-11-25 without a session) to the release `agent-gate` as a
//!    separate process, sequential against direct HTTP calls (alternating in blocks), and with
//!    64 in flight. `BENCH_GATEWAYS=old:new` (paths of `agent-gate` binaries) alternates
//!    binaries for `BENCH_ROUNDS` rounds and prints the medians. Budgets: p50 added ≤ 200 µs,
//!    ≥ 10,000 calls/s.
//! 5. Separate processes (`BENCH_ONLY=processes`, see `processes.rs`): the backend, the
//!    release `agent-gate` and this load generator each a process of its own, as agents meet
//!    the gateway; direct, WebSocket and MCP calls alternate; prints the ratios to the direct
//!    call (latency, throughput, CPU per call of each process). `BENCH_GATEWAYS` and
//!    `BENCH_ROUNDS` as in 4.
//! 6. Instructions (`BENCH_ONLY=instructions`, see `instructions.rs`): instructions per
//!    allowed call, one at a time, each way, counted by `valgrind --tool=callgrind` in the
//!    gateway process and, for scale, in the backend; they do not move with the host.
//!    `BENCH_GATEWAYS` as in 4; `calls` is the smaller of the two runs' calls (try 200).

mod instructions;
mod processes;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent_gate_gateway::app::Gateway;
use agent_gate_gateway::config::{Config, ProcessEnv};
use agent_gate_gateway::policy::Policy;
use axum::Json;
use axum::extract::Path as UrlPath;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The allocator of the `agent-gate` binary, so that the in-process numbers are its numbers.
#[global_allocator]
static ALLOCATOR: agent_gate_gateway::allocator::Allocator =
    agent_gate_gateway::allocator::Allocator;

type Error = Box<dyn std::error::Error + Send + Sync>;

const PERMISSIONS: &str = "defaults:\n  - pattern: \"ha_get_*\"\n    action: allow\n";

fn arg(position: usize, default: u64) -> Result<u64, Error> {
    match std::env::args().nth(position) {
        Some(text) => Ok(text.parse()?),
        None => Ok(default),
    }
}

fn tools_toml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools.toml")
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn token(i: usize) -> String {
    format!("bench-agent-{i:04}-token-0123456789abcdef")
}

fn config_yaml(
    dir: &Path,
    backend: SocketAddr,
    agents: usize,
    ports: (u16, u16),
    sync: &str,
) -> String {
    let mut text = format!(
        "gateway:\n  host: 127.0.0.1\n  port: {}\n  health_host: 127.0.0.1\n  health_port: {}\nagents:\n",
        ports.0, ports.1
    );
    for i in 0..agents {
        text.push_str(&format!("  - id: agent{i}\n    token: \"{}\"\n", token(i)));
    }
    text.push_str(&format!(
        "tools:\n  - \"{}\"\nservices:\n  homeassistant:\n    url: \"http://{backend}\"\n    token: \"backend-token\"\nstorage:\n  path: \"{}\"\n  sync: {sync}\nrate_limit:\n  max_requests_per_minute: 1000000\n",
        tools_toml().display(),
        dir.join("bench.db").display()
    ));
    text
}

async fn backend() -> Result<SocketAddr, Error> {
    let app = axum::Router::new()
        .route(
            "/api/states/{entity_id}",
            get(|UrlPath(id): UrlPath<String>| async move {
                Json(json!({"entity_id": id, "state": "21.5", "attributes": {"unit_of_measurement": "°C"}}))
            }),
        )
        .route("/", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn agent(url: &str, token: &str) -> Result<Ws, Error> {
    agent_over(url, token, None).await
}

/// [`agent`] with `connector` for a `wss://` URL.
async fn agent_over(
    url: &str,
    token: &str,
    connector: Option<tokio_tungstenite::Connector>,
) -> Result<Ws, Error> {
    // Nagle off, as the agent-gate SDK does: pipelined requests must not wait for ACKs.
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, None, true, connector).await?;
    ws.send(Message::text(
        json!({"jsonrpc": "2.0", "method": "auth", "params": {"token": token}, "id": 0})
            .to_string(),
    ))
    .await?;
    match ws.next().await {
        Some(Ok(Message::Text(text))) if text.contains("authenticated") => Ok(ws),
        other => Err(format!("auth failed: {other:?}").into()),
    }
}

fn call(id: u64) -> Message {
    Message::text(
        json!({"jsonrpc": "2.0", "method": "tool_request", "id": id,
               "params": {"tool": "ha_get_state", "args": {"entity_id": "sensor.living_room_temperature"}}})
        .to_string(),
    )
}

async fn answer(ws: &mut Ws) -> Result<Value, Error> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(text.as_str())?;
                if value.get("id").is_some() {
                    if value["result"]["status"] != "executed" {
                        return Err(format!("call failed: {value}").into());
                    }
                    return Ok(value);
                }
            }
            Some(Ok(_)) => {}
            other => return Err(format!("connection ended: {other:?}").into()),
        }
    }
}

async fn latency(url: &str, backend: SocketAddr, calls: u64) -> Result<(), Error> {
    let client = reqwest::Client::new();
    let direct_url = format!("http://{backend}/api/states/sensor.living_room_temperature");
    let mut direct = Vec::with_capacity(calls as usize);
    for i in 0..calls + 500 {
        let start = Instant::now();
        let body: Value = client.get(&direct_url).send().await?.json().await?;
        if i >= 500 {
            direct.push(start.elapsed());
        }
        std::hint::black_box(body);
    }
    let mut ws = agent(url, &token(0)).await?;
    let mut through = Vec::with_capacity(calls as usize);
    for i in 0..calls + 500 {
        let start = Instant::now();
        ws.send(call(i + 1)).await?;
        answer(&mut ws).await?;
        if i >= 500 {
            through.push(start.elapsed());
        }
    }
    direct.sort();
    through.sort();
    println!("latency of an allowed call ({calls} sequential calls, after 500 warm-up):");
    for (name, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let (d, g) = (percentile(&direct, p), percentile(&through, p));
        println!(
            "  {name}: direct HTTP {:>8.1} µs | through the gateway {:>8.1} µs | added {:>8.1} µs",
            micros(d),
            micros(g),
            micros(g) - micros(d)
        );
    }
    Ok(())
}

fn mcp_body(id: u64) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": "ha_get_state", "arguments": {"entity_id": "sensor.living_room_temperature"}},
    })
    .to_string()
}

async fn mcp_call(client: &reqwest::Client, url: &str, token: &str, id: u64) -> Result<(), Error> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .body(mcp_body(id))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() || body["result"]["isError"] != false {
        return Err(format!("MCP call failed: {status} {body}").into());
    }
    std::hint::black_box(body);
    Ok(())
}

/// One MCP measurement of one gateway binary.
struct McpRun {
    direct: Vec<Duration>,
    through: Vec<Duration>,
    calls_per_second: f64,
}

/// MCP `tools/call` latency (alternating blocks of direct and MCP calls) and throughput
/// against the gateway at `url`.
async fn mcp(url: &str, backend: SocketAddr, calls: u64, seconds: u64) -> Result<McpRun, Error> {
    let client = reqwest::Client::new();
    let direct_url = format!("http://{backend}/api/states/sensor.living_room_temperature");
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    let token0 = token(0);
    for i in 0..(calls + 500) / 100 {
        for j in 0..100 {
            let start = Instant::now();
            let body: Value = client.get(&direct_url).send().await?.json().await?;
            std::hint::black_box(body);
            if i >= 5 {
                direct.push(start.elapsed());
            }
            let start = Instant::now();
            mcp_call(&client, url, &token0, i * 100 + j).await?;
            if i >= 5 {
                through.push(start.elapsed());
            }
        }
    }
    direct.sort();
    through.sort();
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let (client, url, done) = (client.clone(), url.to_owned(), Arc::clone(&done));
        let token = token((t % 8) as usize);
        tasks.push(tokio::spawn(async move {
            let mut id = t * 1_000_000;
            while Instant::now() < deadline {
                mcp_call(&client, &url, &token, id).await?;
                id += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let total = done.load(Ordering::Relaxed);
    Ok(McpRun {
        direct,
        through,
        calls_per_second: total as f64 / start.elapsed().as_secs_f64(),
    })
}

fn print_mcp_run(label: &str, run: &McpRun) {
    println!(
        "{label}: MCP tools/call latency ({} calls each, alternating with direct HTTP):",
        run.direct.len()
    );
    for (name, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let (d, g) = (percentile(&run.direct, p), percentile(&run.through, p));
        println!(
            "  {name}: direct HTTP {:>8.1} µs | MCP through the gateway {:>8.1} µs | added {:>8.1} µs | ×{:.1} direct",
            micros(d),
            micros(g),
            micros(g) - micros(d),
            micros(g) / micros(d).max(0.001)
        );
    }
    println!(
        "  throughput: {:.0} allowed calls/s with 64 in flight",
        run.calls_per_second
    );
}

/// A release `agent-gate serve --insecure` as a separate process, with `agents` agents, the
/// database on disk in `dir`; killed when dropped.
struct GatewayProcess {
    child: std::process::Child,
    ports: (u16, u16),
}

impl GatewayProcess {
    async fn start(
        binary: &Path,
        dir: &Path,
        backend: SocketAddr,
        agents: usize,
    ) -> Result<GatewayProcess, Error> {
        Self::start_command(Command::new(binary), binary, dir, backend, agents).await
    }

    /// [`GatewayProcess::start`] with `command` as the program that runs (`binary` itself, or
    /// a tool such as valgrind given `binary` as its argument).
    async fn start_command(
        command: Command,
        binary: &Path,
        dir: &Path,
        backend: SocketAddr,
        agents: usize,
    ) -> Result<GatewayProcess, Error> {
        let ports = (free_port()?, free_port()?);
        let config = config_yaml(dir, backend, agents, ports, "background");
        Self::spawn(command, binary, dir, &config, ports).await
    }

    /// [`GatewayProcess::start`] serving `wss://` with a self-signed certificate for
    /// `localhost` (written to `dir`), and a connector that trusts it.
    async fn start_tls(
        binary: &Path,
        dir: &Path,
        backend: SocketAddr,
        agents: usize,
    ) -> Result<(GatewayProcess, tokio_tungstenite::Connector), Error> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, certified.cert.pem())?;
        std::fs::write(&key, certified.signing_key.serialize_pem())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certified.cert.der().clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let ports = (free_port()?, free_port()?);
        let config = config_yaml(dir, backend, agents, ports, "background").replacen(
            "gateway:\n",
            &format!(
                "gateway:\n  tls:\n    cert: \"{}\"\n    key: \"{}\"\n",
                cert.display(),
                key.display()
            ),
            1,
        );
        let gateway = Self::spawn(Command::new(binary), binary, dir, &config, ports).await?;
        Ok((
            gateway,
            tokio_tungstenite::Connector::Rustls(Arc::new(client)),
        ))
    }

    /// Runs `command` as `agent-gate serve` with `config` in `dir` and waits until it is ready.
    async fn spawn(
        mut command: Command,
        binary: &Path,
        dir: &Path,
        config: &str,
        ports: (u16, u16),
    ) -> Result<GatewayProcess, Error> {
        std::fs::write(dir.join("config.yaml"), config)?;
        std::fs::write(dir.join("permissions.yaml"), PERMISSIONS)?;
        let mut child = command
            .args(["serve", "--insecure", "-c"])
            .arg(dir.join("config.yaml"))
            .arg("-p")
            .arg(dir.join("permissions.yaml"))
            // The default log level, as users run it: what it logs per call is measured too.
            .env_remove("LOG_LEVEL")
            .env_remove("LOG_FORMAT")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let ready = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stderr).lines();
            let found = lines
                .by_ref()
                .map_while(Result::ok)
                .any(|l| l.contains("ready"));
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            found
        })
        .await?;
        let process = GatewayProcess { child, ports };
        if !ready {
            return Err(format!("{} did not become ready", binary.display()).into());
        }
        Ok(process)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// The release `agent-gate` binary next to this example's directory.
fn release_binary() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("agent-gate"))
        .ok_or_else(|| "cannot locate the target directory".into())
}

/// The MCP numbers of each binary in `BENCH_GATEWAYS` (colon-separated paths; default: the
/// release `agent-gate`), each a separate process, alternating binaries round after round
/// (`BENCH_ROUNDS`, default 3), then the medians.
async fn mcp_processes(backend: SocketAddr, calls: u64, seconds: u64) -> Result<(), Error> {
    let binaries: Vec<PathBuf> = match std::env::var("BENCH_GATEWAYS") {
        Ok(list) if !list.is_empty() => list.split(':').map(PathBuf::from).collect(),
        _ => vec![release_binary()?],
    };
    for binary in &binaries {
        if !binary.exists() {
            return Err(format!(
                "{} does not exist; build it first: cargo build --release -p agent-gate-gateway --bin agent-gate",
                binary.display()
            )
            .into());
        }
    }
    let rounds: usize = match std::env::var("BENCH_ROUNDS") {
        Ok(n) => n.parse()?,
        Err(_) => 3,
    };
    let mut results: Vec<Vec<McpRun>> = binaries.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (binary, runs) in binaries.iter().zip(results.iter_mut()) {
            let dir = tempfile::tempdir()?;
            let gateway = GatewayProcess::start(binary, dir.path(), backend, 8).await?;
            let url = format!("http://127.0.0.1:{}/mcp", gateway.ports.0);
            let run = mcp(&url, backend, calls, seconds).await?;
            print_mcp_run(&format!("round {round}, {}", binary.display()), &run);
            runs.push(run);
            // The WebSocket front against the same process, for scale.
            let ws_url = format!("ws://127.0.0.1:{}", gateway.ports.0);
            latency(&ws_url, backend, calls).await?;
            drop(gateway);
        }
    }
    println!("medians over {rounds} rounds (added = gateway − direct, same round):");
    for (binary, runs) in binaries.iter().zip(&results) {
        let median = |mut values: Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let added = |p: f64| {
            median(
                runs.iter()
                    .map(|r| micros(percentile(&r.through, p)) - micros(percentile(&r.direct, p)))
                    .collect(),
            )
        };
        let ratio = median(
            runs.iter()
                .map(|r| micros(percentile(&r.through, 0.5)) / micros(percentile(&r.direct, 0.5)))
                .collect(),
        );
        println!(
            "  {}: added p50 {:.1} µs, p99 {:.1} µs; p50 ×{ratio:.1} direct; {:.0} calls/s",
            binary.display(),
            added(0.5),
            added(0.99),
            median(runs.iter().map(|r| r.calls_per_second).collect())
        );
    }
    Ok(())
}

fn thread_cpu() -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("schedstat")),
        ) else {
            continue;
        };
        let ns: u64 = stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        *by_name.entry(name.trim().to_owned()).or_default() += ns;
    }
    by_name
}

/// The machine's CPU time stolen by the hypervisor and its total, in clock ticks (`/proc/stat`).
fn machine_steal() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    (ticks.get(7).copied().unwrap_or(0), ticks.iter().sum())
}

/// Prints the CPU time per call spent by each kind of thread between two [`thread_cpu`]
/// readings (the gateway, the benchmark's agents and its backend share the runtime threads;
/// the store's threads are the gateway's alone), and the share of the machine stolen meanwhile.
fn print_cpu_per_call(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    steal: ((u64, u64), (u64, u64)),
    calls: u64,
) {
    let calls = calls.max(1) as f64;
    let mut parts = Vec::new();
    let mut total = 0.0;
    for (name, &ns) in after {
        let spent = ns.saturating_sub(before.get(name).copied().unwrap_or(0)) as f64 / 1e3;
        total += spent;
        if spent / calls >= 0.5 {
            parts.push(format!("{name} {:.1}", spent / calls));
        }
    }
    let ((steal0, all0), (steal1, all1)) = steal;
    let stolen =
        100.0 * steal1.saturating_sub(steal0) as f64 / all1.saturating_sub(all0).max(1) as f64;
    println!(
        "  CPU per call: {:.1} µs ({}); machine time stolen by the hypervisor: {stolen:.1}%",
        total / calls,
        parts.join(", ")
    );
}

async fn throughput(url: &str, seconds: u64) -> Result<(), Error> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for a in 0..8 {
        let mut ws = agent(url, &token(a)).await?;
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let mut next = 1u64;
            for _ in 0..8 {
                ws.send(call(next)).await?;
                next += 1;
            }
            let mut outstanding = 8;
            while outstanding > 0 {
                answer(&mut ws).await?;
                done.fetch_add(1, Ordering::Relaxed);
                outstanding -= 1;
                if Instant::now() < deadline {
                    ws.send(call(next)).await?;
                    next += 1;
                    outstanding += 1;
                }
            }
            Ok::<(), Error>(())
        }));
    }
    let start = Instant::now();
    let (cpu_before, steal_before) = (thread_cpu(), machine_steal());
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed();
    let (cpu_after, steal_after) = (thread_cpu(), machine_steal());
    let total = done.load(Ordering::Relaxed);
    println!(
        "throughput: {total} allowed calls in {:.2} s with 64 in flight = {:.0} calls/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    print_cpu_per_call(&cpu_before, &cpu_after, (steal_before, steal_after), total);
    Ok(())
}

/// The same calls straight to the backend, 64 in flight: what this machine can do without the
/// gateway (the client, the backend and the gateway share its cores in this benchmark).
async fn direct_throughput(backend: SocketAddr, seconds: u64) -> Result<(), Error> {
    let client = reqwest::Client::new();
    let url = format!("http://{backend}/api/states/sensor.living_room_temperature");
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let (cpu_before, steal_before) = (thread_cpu(), machine_steal());
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, url, done) = (client.clone(), url.clone(), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let body: Value = client.get(&url).send().await?.json().await?;
                std::hint::black_box(body);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let total = done.load(Ordering::Relaxed);
    println!(
        "direct HTTP to the backend, no gateway: {total} calls in {:.2} s with 64 in flight = {:.0} calls/s",
        start.elapsed().as_secs_f64(),
        total as f64 / start.elapsed().as_secs_f64()
    );
    let (cpu_after, steal_after) = (thread_cpu(), machine_steal());
    print_cpu_per_call(&cpu_before, &cpu_after, (steal_before, steal_after), total);
    Ok(())
}

/// A process's resident memory from `/proc/<pid>/status`, in KiB: the total and its two parts,
/// the process's own memory (anonymous: heap, stacks) and the pages of files it maps (the
/// binary's code and constants, shared with the page cache and reclaimable).
struct Resident {
    total: u64,
    anonymous: u64,
    file: u64,
}

impl std::fmt::Display for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |kib: u64| kib as f64 / 1024.0;
        write!(
            f,
            "{:.1} MB ({:.1} MB anonymous + {:.1} MB mapped files)",
            mb(self.total),
            mb(self.anonymous),
            mb(self.file)
        )
    }
}

fn resident(pid: u32) -> Result<Resident, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64, Error> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status").into())
    };
    Ok(Resident {
        total: field("VmRSS:")?,
        anonymous: field("RssAnon:")?,
        file: field("RssFile:")? + field("RssShmem:")?,
    })
}

/// Idle resident memory with 4 and with 1,000 configured agents, then with 1,000 authenticated
/// idle connections.
async fn memory(backend: SocketAddr) -> Result<(), Error> {
    let binary = release_binary()?;
    if !binary.exists() {
        println!(
            "memory: skipped; build the binary first: cargo build --release -p agent-gate-gateway --bin agent-gate"
        );
        return Ok(());
    }
    {
        let dir = tempfile::tempdir()?;
        let gateway = GatewayProcess::start(&binary, dir.path(), backend, 4).await?;
        // Let start-up allocations settle (the health checks run before "ready").
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!(
            "memory (separate process, /proc/<pid>/status): idle with 4 agents configured: {}",
            resident(gateway.pid())?
        );
    }
    let agents = 1000;
    let dir = tempfile::tempdir()?;
    let gateway = GatewayProcess::start(&binary, dir.path(), backend, agents).await?;
    let url = format!("ws://127.0.0.1:{}", gateway.ports.0);
    idle_connections(&gateway, &url, None, agents, "").await?;
    drop(gateway);

    let dir = tempfile::tempdir()?;
    let (gateway, connector) =
        GatewayProcess::start_tls(&binary, dir.path(), backend, agents).await?;
    let url = format!("wss://localhost:{}", gateway.ports.0);
    idle_connections(&gateway, &url, Some(connector), agents, "over TLS, ").await
}

/// Prints `gateway`'s resident memory idle, then with `agents` authenticated idle connections
/// to `url` (through `connector`, for `wss://`); `label` begins both lines.
async fn idle_connections(
    gateway: &GatewayProcess,
    url: &str,
    connector: Option<tokio_tungstenite::Connector>,
    agents: usize,
    label: &str,
) -> Result<(), Error> {
    let pid = gateway.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "  {label}idle with {agents} agents configured: {}",
        resident(pid)?
    );
    let mut connections = Vec::with_capacity(agents);
    for i in 0..agents {
        connections.push(agent_over(url, &token(i), connector.clone()).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "  {label}with {agents} authenticated idle connections: {}",
        resident(pid)?
    );
    Ok(())
}

/// Latency and throughput with the database in `db_dir` and `storage.sync: <sync>`.
async fn in_process(
    db_dir: &Path,
    sync: &str,
    backend: SocketAddr,
    calls: u64,
    seconds: u64,
) -> Result<(), Error> {
    let config_path = db_dir.join("config.yaml");
    let text = config_yaml(db_dir, backend, 8, (8443, 8080), sync);
    let mut config = Config::parse(&text, &config_path, &ProcessEnv)?;
    config.gateway.port = 0;
    std::fs::write(db_dir.join("permissions.yaml"), PERMISSIONS)?;
    let policy = Policy::load(db_dir.join("permissions.yaml"))?;
    let manifest = agent_gate_manifest::Manifest::load(&[tools_toml()])?.manifest;
    let gateway = Gateway::builder(config, policy, manifest)
        .insecure(true)
        .health_endpoint(false)
        .start()
        .await?;
    let url = gateway.ws_url();
    latency(&url, backend, calls).await?;
    throughput(&url, seconds).await?;
    let stats = gateway.store().stats();
    println!(
        "store: {} writes in {} transactions (largest batch {}), {:.1} WAL pages per commit",
        stats.writes,
        stats.transactions,
        stats.largest_batch,
        stats.wal_frames as f64 / stats.transactions.max(1) as f64
    );
    gateway.shutdown().await?;
    Ok(())
}

/// Runs on the `agent-gate` binary's runtime (workers below the store writer's priority; see
/// `agent_gate_gateway::runtime`), so that the in-process numbers are the binary's.
fn main() -> Result<(), Error> {
    let runtime = agent_gate_gateway::runtime::multi_thread("agent-gate").build()?;
    if std::env::args().nth(1).as_deref() == Some("backend") {
        return runtime.block_on(processes::serve_backend());
    }
    runtime.block_on(run())
}

async fn run() -> Result<(), Error> {
    let calls = arg(1, 5000)?;
    let seconds = arg(2, 5)?;
    let backend = backend().await?;

    let exe = std::env::current_exe()?;
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only == name;
    if wanted("direct") {
        println!("== baseline");
        direct_throughput(backend, seconds).await?;
    }
    let dir = exe.parent().ok_or("no directory of the example")?;
    if wanted("background") {
        let disk = tempfile::tempdir_in(dir)?;
        println!(
            "== database on disk ({}), storage.sync: background (the default: answered at commit, fdatasync right after)",
            disk.path().display()
        );
        in_process(disk.path(), "background", backend, calls, seconds).await?;
    }
    if only == "processes" {
        println!(
            "== separate processes: backend, gateway (database on disk, storage.sync: background), load generator"
        );
        return processes::run(calls, seconds).await;
    }
    if only == "instructions" {
        println!(
            "== instructions per allowed call, one at a time, counted by callgrind (the gateway and the backend each a process)"
        );
        return instructions::run(calls).await;
    }
    if only == "mcp" {
        println!(
            "== MCP over Streamable HTTP, the gateway a separate process, database on disk, storage.sync: background"
        );
        mcp_processes(backend, calls, seconds).await?;
    }
    if wanted("always") {
        let disk = tempfile::tempdir_in(dir)?;
        println!("== database on disk, storage.sync: always (answered after the fdatasync)");
        in_process(disk.path(), "always", backend, calls, seconds).await?;
    }
    if wanted("tmpfs") && Path::new("/dev/shm").is_dir() {
        let shm = tempfile::tempdir_in("/dev/shm")?;
        println!("== database on tmpfs (/dev/shm), storage.sync: always (fsync is free there)");
        in_process(shm.path(), "always", backend, calls, seconds).await?;
    }
    if !wanted("memory") {
        return Ok(());
    }
    println!("== memory");
    memory(backend).await?;
    Ok(())
}
