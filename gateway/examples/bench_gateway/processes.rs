//! `BENCH_ONLY=processes`: the gateway as agents meet it. Three processes: the backend (this
//! example re-run as `bench_gateway backend`), the release `agent-gate` binary, and this
//! process as the load generator. Each round alternates direct HTTP calls to the backend with
//! the same call through the gateway's WebSocket front and its MCP front, one at a time in
//! blocks of 100 (the gateway's CPU summed over each front's blocks), then runs each of the
//! three with 64 calls in flight; CPU time is read from each process's CPU-time clock. Prints
//! the ratios issue 22 sets targets for.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::Value;

use super::{
    Error, GatewayProcess, agent, answer, call, mcp_call, micros, percentile, release_binary, token,
};

/// The backend as its own process, killed when dropped.
pub(crate) struct BackendProcess {
    child: std::process::Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

impl BackendProcess {
    /// Starts `bench_gateway backend` and reads the address it prints.
    pub(crate) fn start() -> Result<Self, Error> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("backend")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .ok_or_else(|| format!("the backend process said {line:?}"))?
            .parse()?;
        Ok(Self { child, addr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system, all its threads, exited ones included) a process has used so far,
/// to the nanosecond: the process's CPU-time clock (`clock_getcpuclockid`). `/proc/<pid>/stat`
/// counts in ticks of 10 ms, too coarse for a block of 100 calls one at a time. `pid` is a
/// process id, or `self` for this process.
fn process_cpu(pid: &str) -> Result<Duration, Error> {
    // 0 names the calling process.
    let pid: libc::pid_t = if pid == "self" { 0 } else { pid.parse()? };
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid place for the clock id; no other memory is passed.
    let found = unsafe { libc::clock_getcpuclockid(pid, &mut clock) };
    if found != 0 {
        return Err(format!(
            "no CPU-time clock for process {pid}: {}",
            std::io::Error::from_raw_os_error(found)
        )
        .into());
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid `timespec` to write; `clock` came from the call above.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return Err(format!(
            "reading the CPU time of process {pid}: {}",
            std::io::Error::last_os_error()
        )
        .into());
    }
    let seconds = u64::try_from(now.tv_sec)?;
    let nanos = u32::try_from(now.tv_nsec)?;
    Ok(Duration::new(seconds, nanos))
}

/// CPU per call of each process over one throughput run.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    gateway: f64,
    backend: f64,
    load: f64,
}

/// One round's numbers for one gateway binary.
#[derive(Debug, Default)]
struct Round {
    direct: Vec<Duration>,
    websocket: Vec<Duration>,
    mcp: Vec<Duration>,
    direct_rate: f64,
    websocket_rate: f64,
    mcp_rate: f64,
    direct_cpu: Cpu,
    websocket_cpu: Cpu,
    mcp_cpu: Cpu,
    /// The gateway's CPU per call one at a time (µs), WebSocket and MCP.
    sequential_cpu: (f64, f64),
}

/// Sequential latency: blocks of 100 direct calls, 100 WebSocket calls, 100 MCP calls, in
/// turn, after 5 blocks of warm-up; the gateway's CPU time is summed over each front's blocks.
async fn latencies(
    round: &mut Round,
    backend: SocketAddr,
    gateway: &GatewayProcess,
    calls: u64,
) -> Result<(), Error> {
    let gateway_port = gateway.ports.0;
    let pid = gateway.pid().to_string();
    let (mut websocket_cpu, mut mcp_cpu) = (Duration::ZERO, Duration::ZERO);
    let client = reqwest::Client::new();
    let direct_url = format!("http://{backend}/api/states/sensor.living_room_temperature");
    let mcp_url = format!("http://127.0.0.1:{gateway_port}/mcp");
    let mut ws = agent(&format!("ws://127.0.0.1:{gateway_port}"), &token(0)).await?;
    let token0 = token(0);
    let mut id = 1;
    for block in 0..calls.div_ceil(100) + 5 {
        let keep = block >= 5;
        for _ in 0..100 {
            let start = Instant::now();
            let body: Value = client.get(&direct_url).send().await?.json().await?;
            std::hint::black_box(body);
            if keep {
                round.direct.push(start.elapsed());
            }
        }
        let before = process_cpu(&pid)?;
        for _ in 0..100 {
            id += 1;
            let start = Instant::now();
            ws.send(call(id)).await?;
            answer(&mut ws).await?;
            if keep {
                round.websocket.push(start.elapsed());
            }
        }
        let after = process_cpu(&pid)?;
        if keep {
            websocket_cpu += after.saturating_sub(before);
        }
        for _ in 0..100 {
            id += 1;
            let start = Instant::now();
            mcp_call(&client, &mcp_url, &token0, id).await?;
            if keep {
                round.mcp.push(start.elapsed());
            }
        }
        let before = after;
        let after = process_cpu(&pid)?;
        if keep {
            mcp_cpu += after.saturating_sub(before);
        }
    }
    round.sequential_cpu = (
        micros(websocket_cpu) / round.websocket.len().max(1) as f64,
        micros(mcp_cpu) / round.mcp.len().max(1) as f64,
    );
    round.direct.sort();
    round.websocket.sort();
    round.mcp.sort();
    Ok(())
}

/// Which way a throughput run goes.
#[derive(Debug, Clone, Copy)]
enum Path3 {
    Direct,
    WebSocket,
    Mcp,
}

/// 64 calls in flight for `seconds` one way; calls per second and CPU per call.
async fn throughput(
    way: Path3,
    backend: &BackendProcess,
    gateway: &GatewayProcess,
    seconds: u64,
) -> Result<(f64, Cpu), Error> {
    let done = Arc::new(AtomicU64::new(0));
    let port = gateway.ports.0;
    let client = reqwest::Client::new();
    // Connections are opened before the clock starts.
    let mut sockets = Vec::new();
    if let Path3::WebSocket = way {
        for a in 0..8 {
            sockets.push(agent(&format!("ws://127.0.0.1:{port}"), &token(a)).await?);
        }
    }
    let pids = (
        gateway.pid().to_string(),
        backend.pid().to_string(),
        "self".to_owned(),
    );
    let before = (
        process_cpu(&pids.0)?,
        process_cpu(&pids.1)?,
        process_cpu(&pids.2)?,
    );
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    match way {
        Path3::Direct | Path3::Mcp => {
            for t in 0..64u64 {
                let (client, done) = (client.clone(), Arc::clone(&done));
                let url = match way {
                    Path3::Direct => format!(
                        "http://{}/api/states/sensor.living_room_temperature",
                        backend.addr
                    ),
                    _ => format!("http://127.0.0.1:{port}/mcp"),
                };
                let token = token((t % 8) as usize);
                tasks.push(tokio::spawn(async move {
                    let mut id = t * 1_000_000;
                    while Instant::now() < deadline {
                        if let Path3::Direct = way {
                            let body: Value = client.get(&url).send().await?.json().await?;
                            std::hint::black_box(body);
                        } else {
                            mcp_call(&client, &url, &token, id).await?;
                        }
                        id += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<(), Error>(())
                }));
            }
        }
        Path3::WebSocket => {
            for mut ws in sockets {
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
        }
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed();
    let after = (
        process_cpu(&pids.0)?,
        process_cpu(&pids.1)?,
        process_cpu(&pids.2)?,
    );
    let total = done.load(Ordering::Relaxed).max(1) as f64;
    let per_call = |b: Duration, a: Duration| micros(a.saturating_sub(b)) / total;
    Ok((
        total / elapsed.as_secs_f64(),
        Cpu {
            gateway: per_call(before.0, after.0),
            backend: per_call(before.1, after.1),
            load: per_call(before.2, after.2),
        },
    ))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the three-process comparison for each binary of `BENCH_GATEWAYS` (default: the
/// release `agent-gate`), `BENCH_ROUNDS` rounds (default 3), binaries alternating.
pub(crate) async fn run(calls: u64, seconds: u64) -> Result<(), Error> {
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
    let backend = BackendProcess::start()?;
    println!(
        "backend: pid {} on {}; load generator: pid {}",
        backend.pid(),
        backend.addr,
        std::process::id()
    );
    let mut results: Vec<Vec<Round>> = binaries.iter().map(|_| Vec::new()).collect();
    for number in 1..=rounds {
        for (binary, rounds_of) in binaries.iter().zip(results.iter_mut()) {
            let dir = tempfile::tempdir()?;
            let gateway = GatewayProcess::start(binary, dir.path(), backend.addr, 8).await?;
            let mut round = Round::default();
            latencies(&mut round, backend.addr, &gateway, calls).await?;
            for way in [Path3::Direct, Path3::WebSocket, Path3::Mcp] {
                let (rate, cpu) = throughput(way, &backend, &gateway, seconds).await?;
                match way {
                    Path3::Direct => (round.direct_rate, round.direct_cpu) = (rate, cpu),
                    Path3::WebSocket => (round.websocket_rate, round.websocket_cpu) = (rate, cpu),
                    Path3::Mcp => (round.mcp_rate, round.mcp_cpu) = (rate, cpu),
                }
            }
            print_round(&format!("round {number}, {}", binary.display()), &round);
            rounds_of.push(round);
            drop(gateway);
        }
    }
    println!("medians over {rounds} rounds (each ratio taken within its round):");
    for (binary, runs) in binaries.iter().zip(&results) {
        println!("  {}:", binary.display());
        println!(
            "    one at a time, gateway CPU per call: WebSocket {:.1} µs, MCP {:.1} µs",
            median(runs.iter().map(|r| r.sequential_cpu.0).collect()),
            median(runs.iter().map(|r| r.sequential_cpu.1).collect()),
        );
        for (front, through, rate, cpu) in [
            (
                "WebSocket",
                &(|r: &Round| r.websocket.clone()) as &dyn Fn(&Round) -> Vec<Duration>,
                &(|r: &Round| r.websocket_rate) as &dyn Fn(&Round) -> f64,
                &(|r: &Round| r.websocket_cpu) as &dyn Fn(&Round) -> Cpu,
            ),
            (
                "MCP",
                &|r: &Round| r.mcp.clone(),
                &|r: &Round| r.mcp_rate,
                &|r: &Round| r.mcp_cpu,
            ),
        ] {
            let added = |p: f64| {
                median(
                    runs.iter()
                        .map(|r| {
                            micros(percentile(&through(r), p)) - micros(percentile(&r.direct, p))
                        })
                        .collect(),
                )
            };
            let added_ratio = |p: f64| {
                median(
                    runs.iter()
                        .map(|r| {
                            (micros(percentile(&through(r), p)) - micros(percentile(&r.direct, p)))
                                / micros(percentile(&r.direct, p))
                        })
                        .collect(),
                )
            };
            let direct = |p: f64| {
                median(
                    runs.iter()
                        .map(|r| micros(percentile(&r.direct, p)))
                        .collect(),
                )
            };
            println!(
                "    {front}: added p50 {:.0} µs = {:.2}× direct p50 ({:.0} µs; target ≤ 1); added p99 {:.0} µs = {:.2}× direct p99 ({:.0} µs; target ≤ 2)",
                added(0.5),
                added_ratio(0.5),
                direct(0.5),
                added(0.99),
                added_ratio(0.99),
                direct(0.99),
            );
            println!(
                "    {front}: {:.0} calls/s = {:.2}× direct ({:.0}; target ≥ 0.5); gateway CPU {:.1} µs per call = {:.2}× the direct call's CPU (backend + client {:.1} µs; target ≤ 1)",
                median(runs.iter().map(rate).collect()),
                median(runs.iter().map(|r| rate(r) / r.direct_rate).collect()),
                median(runs.iter().map(|r| r.direct_rate).collect()),
                median(runs.iter().map(|r| cpu(r).gateway).collect()),
                median(
                    runs.iter()
                        .map(|r| cpu(r).gateway / (r.direct_cpu.backend + r.direct_cpu.load))
                        .collect()
                ),
                median(
                    runs.iter()
                        .map(|r| r.direct_cpu.backend + r.direct_cpu.load)
                        .collect()
                ),
            );
        }
    }
    Ok(())
}

fn print_round(label: &str, round: &Round) {
    println!(
        "{label}: one call at a time ({} calls each way):",
        round.direct.len()
    );
    for (name, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let d = micros(percentile(&round.direct, p));
        let w = micros(percentile(&round.websocket, p));
        let m = micros(percentile(&round.mcp, p));
        println!(
            "  {name}: direct {d:>7.1} µs | WebSocket {w:>7.1} µs (added {:>6.1}) | MCP {m:>7.1} µs (added {:>6.1})",
            w - d,
            m - d
        );
    }
    println!(
        "  one at a time, gateway CPU per call: WebSocket {:.1} µs, MCP {:.1} µs",
        round.sequential_cpu.0, round.sequential_cpu.1
    );
    for (name, rate, cpu) in [
        ("direct", round.direct_rate, round.direct_cpu),
        ("WebSocket", round.websocket_rate, round.websocket_cpu),
        ("MCP", round.mcp_rate, round.mcp_cpu),
    ] {
        println!(
            "  64 in flight, {name}: {rate:.0} calls/s; CPU per call: gateway {:.1} µs, backend {:.1} µs, load generator {:.1} µs",
            cpu.gateway, cpu.backend, cpu.load
        );
    }
}

/// `bench_gateway backend`: the backend alone, printing `listening <addr>` and serving until
/// killed.
pub(crate) async fn serve_backend() -> Result<(), Error> {
    let addr = super::backend().await?;
    println!("listening {addr}");
    use std::io::Write;
    std::io::stdout().flush()?;
    std::future::pending::<()>().await;
    Ok(())
}
