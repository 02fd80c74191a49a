//! `BENCH_ONLY=instructions`: instructions per call, counted by `valgrind --tool=callgrind`,
//! which do not move with the host the way times do. Each gateway binary in `BENCH_GATEWAYS`
//! runs under callgrind twice per front, once for `calls` and once for `5 × calls` sequential
//! allowed calls; the difference of the two totals over the difference of the calls is the cost
//! of one call, start-up and shut-down cancelled out. The backend gets the same treatment with
//! direct HTTP calls, for scale (its side of the direct call only: the client is this process).
//!
//! Calls are one at a time: under load the store shares its transactions between calls, so a
//! loaded call costs less than this. The writer thread polls for a short while after each
//! write (see the store's writer), and that polling is counted here as it is on a real host.
//! `BENCH_CALLGRIND_DIR` keeps callgrind's outputs there for `callgrind_annotate`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Error, GatewayProcess, agent, answer, call, mcp_call, release_binary, token};

/// Which way the calls go.
#[derive(Clone, Copy)]
enum Way {
    Direct,
    WebSocket,
    Mcp,
}

impl Way {
    fn slug(self) -> &'static str {
        match self {
            Way::Direct => "direct",
            Way::WebSocket => "websocket",
            Way::Mcp => "mcp",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Way::Direct => "direct (backend only)",
            Way::WebSocket => "WebSocket",
            Way::Mcp => "MCP",
        }
    }
}

/// The callgrind command line that counts into `out`.
fn callgrind(out: &Path) -> Command {
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--dump-line=no");
    command
}

/// The `summary:` total of a callgrind output file.
fn total(out: &Path) -> Result<u64, Error> {
    let text = std::fs::read_to_string(out)
        .map_err(|e| format!("reading callgrind's output {}: {e}", out.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("summary:"))
        .or_else(|| text.lines().find_map(|line| line.strip_prefix("totals:")))
        .ok_or_else(|| format!("{} has no summary line", out.display()))?
        .split_whitespace()
        .next()
        .ok_or("an empty summary line")?
        .parse()
        .map_err(Into::into)
}

/// `calls` direct calls to the backend at `addr`.
async fn direct_calls(addr: SocketAddr, calls: u64) -> Result<(), Error> {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/states/sensor.living_room_temperature");
    for _ in 0..calls {
        let response = client.get(&url).send().await?;
        if !response.status().is_success() {
            return Err(format!("the backend answered {}", response.status()).into());
        }
        std::hint::black_box(response.bytes().await?);
    }
    Ok(())
}

/// `calls` allowed calls one way through the gateway listening on `port`.
async fn gateway_calls(way: Way, port: u16, calls: u64) -> Result<(), Error> {
    match way {
        Way::WebSocket => {
            use futures_util::SinkExt;
            let mut ws = agent(&format!("ws://127.0.0.1:{port}"), &token(0)).await?;
            for id in 1..=calls {
                ws.send(call(id)).await?;
                answer(&mut ws).await?;
            }
            Ok(())
        }
        Way::Mcp => {
            let client = reqwest::Client::new();
            let url = format!("http://127.0.0.1:{port}/mcp");
            for id in 1..=calls {
                mcp_call(&client, &url, &token(0), id).await?;
            }
            Ok(())
        }
        Way::Direct => Err("direct calls do not go through a gateway".into()),
    }
}

/// The backend (`bench_gateway backend`) under callgrind: its total after `calls` direct calls.
async fn backend_run(dir: &Path, calls: u64) -> Result<u64, Error> {
    let out = dir.join(format!("backend-{calls}.out"));
    let mut child = callgrind(&out)
        .arg(std::env::current_exe()?)
        .arg("backend")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting valgrind: {e}; install it (apt-get install valgrind)"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening ")
        .ok_or_else(|| format!("the backend under callgrind said {line:?}"))?
        .parse()?;
    let called = direct_calls(addr, calls).await;
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()?;
    child.wait()?;
    called?;
    total(&out)
}

/// `binary` under callgrind: its total after `calls` calls `way`, against `backend`.
async fn gateway_run(
    binary: &Path,
    way: Way,
    backend: SocketAddr,
    dir: &Path,
    calls: u64,
) -> Result<u64, Error> {
    let state = tempfile::tempdir_in(dir)?;
    let out = dir.join(format!("gateway-{calls}.out"));
    let mut command = callgrind(&out);
    command.arg(binary);
    let gateway = GatewayProcess::start_command(command, binary, state.path(), backend, 1).await?;
    let called = gateway_calls(way, gateway.ports.0, calls).await;
    // Dropping it stops it with SIGTERM and waits: callgrind writes its totals on the way out.
    drop(gateway);
    called?;
    total(&out)
}

/// Instructions per call `way` (for `binary`, or the backend when `way` is direct).
async fn per_call(binary: &Path, way: Way, backend: SocketAddr, calls: u64) -> Result<f64, Error> {
    let temporary = tempfile::tempdir()?;
    // `BENCH_CALLGRIND_DIR` keeps the outputs, for `callgrind_annotate`.
    let dir = match std::env::var_os("BENCH_CALLGRIND_DIR") {
        Some(kept) => {
            let name = match way {
                Way::Direct => "backend".into(),
                _ => binary.file_name().unwrap_or_default().to_string_lossy(),
            };
            let dir = PathBuf::from(kept).join(format!("{name}-{}", way.slug()));
            std::fs::create_dir_all(&dir)?;
            dir
        }
        None => temporary.path().to_owned(),
    };
    let (few, many) = (calls, calls * 5);
    let (small, large) = match way {
        Way::Direct => (
            backend_run(&dir, few).await?,
            backend_run(&dir, many).await?,
        ),
        _ => (
            gateway_run(binary, way, backend, &dir, few).await?,
            gateway_run(binary, way, backend, &dir, many).await?,
        ),
    };
    Ok(large.saturating_sub(small) as f64 / (many - few) as f64)
}

/// Prints instructions per call for the backend and for each binary in `BENCH_GATEWAYS`
/// (default: the release `agent-gate`), each way, alternating binaries.
pub(crate) async fn run(calls: u64) -> Result<(), Error> {
    let binaries: Vec<PathBuf> = match std::env::var("BENCH_GATEWAYS") {
        Ok(list) if !list.is_empty() => list.split(':').map(PathBuf::from).collect(),
        _ => vec![release_binary()?],
    };
    let calls = calls.max(1);
    let backend = super::processes::BackendProcess::start()?;
    let direct = per_call(Path::new(""), Way::Direct, backend.addr, calls).await?;
    println!(
        "  {}: {direct:.0} instructions per call",
        Way::Direct.name()
    );
    for way in [Way::WebSocket, Way::Mcp] {
        for binary in &binaries {
            let through = per_call(binary, way, backend.addr, calls).await?;
            println!(
                "  {}, {}: {through:.0} instructions per call = {:.2}× the backend's",
                way.name(),
                binary.display(),
                through / direct.max(1.0)
            );
        }
    }
    Ok(())
}
