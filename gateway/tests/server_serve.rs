//! `agent-gate serve` as a real process: refuses to start without TLS unless `--insecure`
//! (also as the default command), and with `--insecure` serves agents, logs JSON with the
//! addresses, never logs tokens, and stops cleanly on SIGTERM.

#[path = "server_support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use agent_gate_sim::home_assistant::{DEFAULT_TOKEN, HomeAssistant};
use serde_json::{Value, json};
use support::{Client, Options, PI_TOKEN, config_text};

const BIN: &str = env!("CARGO_BIN_EXE_agent-gate");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes config.yaml (on free ports) and permissions.yaml into `dir`.
fn write_files(dir: &Path, ha: std::net::SocketAddr) -> (u16, u16) {
    let (ws, health) = (free_port(), free_port());
    let text = config_text(dir, ha, &Options::default())
        .replace("port: 8443", &format!("port: {ws}"))
        .replace("health_port: 8080", &format!("health_port: {health}"));
    std::fs::write(dir.join("config.yaml"), text).unwrap();
    std::fs::write(dir.join("permissions.yaml"), support::PERMISSIONS).unwrap();
    (ws, health)
}

/// `agent-gate serve --insecure` with the config.yaml and permissions.yaml of `dir`.
fn insecure_serve(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .arg("--insecure")
        .arg("-c")
        .arg(dir.join("config.yaml"))
        .arg("-p")
        .arg(dir.join("permissions.yaml"));
    command
}

/// Sends SIGTERM to process `pid`.
fn sigterm(pid: u32) {
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(killed.success());
}

#[tokio::test]
async fn serve_refuses_to_start_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let home = HomeAssistant::demo(DEFAULT_TOKEN);
    let (ha, _server) = home.spawn("127.0.0.1:0").await.unwrap();
    write_files(dir.path(), ha);
    let explicit = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(dir.path().join("config.yaml"))
        .arg("--permissions")
        .arg(dir.path().join("permissions.yaml"))
        .output()
        .unwrap();
    assert!(!explicit.status.success());
    let stderr = String::from_utf8_lossy(&explicit.stderr);
    assert!(stderr.contains("gateway.tls is not set"), "{stderr}");
    assert!(stderr.contains("--insecure"), "{stderr}");

    // Without a subcommand, `agent-gate` serves (and refuses the same way).
    let default = Command::new(BIN)
        .env("AGENT_GATE_CONFIG", dir.path().join("config.yaml"))
        .env(
            "AGENT_GATE_PERMISSIONS",
            dir.path().join("permissions.yaml"),
        )
        .output()
        .unwrap();
    assert!(!default.status.success());
    assert!(String::from_utf8_lossy(&default.stderr).contains("gateway.tls is not set"));
}

#[tokio::test]
async fn serve_refuses_rules_scoped_to_unknown_agents() {
    let dir = tempfile::tempdir().unwrap();
    let home = HomeAssistant::demo(DEFAULT_TOKEN);
    let (ha, _server) = home.spawn("127.0.0.1:0").await.unwrap();
    write_files(dir.path(), ha);
    // A typo in a rule's agent list would make the rule apply to nobody: refuse to start.
    let permissions =
        "rules:\n  - pattern: \"ha_get_*\"\n    action: allow\n    agents: [kitchen-typo]\n";
    std::fs::write(dir.path().join("permissions.yaml"), permissions).unwrap();
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--insecure")
        .arg("--config")
        .arg(dir.path().join("config.yaml"))
        .arg("--permissions")
        .arg(dir.path().join("permissions.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Were the rule accepted, serve would run until signalled: bound the wait so a regression
    // fails instead of hanging the suite.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve started with a rule scoped to an unknown agent");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("kitchen-typo"), "{stderr}");
}

#[tokio::test]
async fn serve_insecure_serves_agents_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let home = HomeAssistant::demo(DEFAULT_TOKEN);
    let (ha, _server) = home.spawn("127.0.0.1:0").await.unwrap();
    let (ws_port, health_port) = write_files(dir.path(), ha);
    let mut child = insecure_serve(dir.path())
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let (ready, lines_rx) = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        while let Ok(line) = lines_rx.recv() {
            seen.push(line.clone());
            let parsed: Value = serde_json::from_str(&line).expect("JSON log lines");
            if parsed["fields"]["message"] == "ready" {
                return ((parsed, seen), lines_rx);
            }
        }
        panic!("serve exited before ready: {seen:?}");
    })
    .await
    .unwrap();
    let (ready, seen) = ready;
    log.extend(seen);
    assert_eq!(
        ready["fields"]["websocket"],
        format!("ws://127.0.0.1:{ws_port}")
    );
    assert_eq!(
        ready["fields"]["health"],
        format!("http://127.0.0.1:{health_port}/healthz")
    );
    assert!(log.iter().any(|l| l.contains("INSECURE")));

    let mut agent = Client::connect(&format!("ws://127.0.0.1:{ws_port}")).await;
    assert_eq!(
        agent.call("auth", json!({"token": PI_TOKEN})).await["result"]["status"],
        "authenticated"
    );
    let state = agent
        .tool("ha_get_state", json!({"entity_id": "light.kitchen"}))
        .await;
    assert_eq!(state["result"]["status"], "executed");
    let health = reqwest::get(format!("http://127.0.0.1:{health_port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    #[cfg(target_os = "linux")]
    priorities_favour_the_store_writer(child.id());

    sigterm(child.id());
    let close = agent.closed().await.expect("going away");
    assert_eq!(u16::from(close.code), 1001);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    reader.join().unwrap();
    log.extend(lines_rx.try_iter());
    assert!(log.iter().any(|l| l.contains("SIGTERM received")));
    assert!(log.iter().any(|l| l.contains("\"stopped\"")));
    for line in &log {
        assert!(!line.contains(PI_TOKEN), "token logged: {line}");
        assert!(
            !line.contains(DEFAULT_TOKEN),
            "service token logged: {line}"
        );
    }
}

/// In the running binary, runtime workers sit below the process's priority and the store's
/// threads keep it (see `agent_gate_gateway::runtime`).
#[cfg(target_os = "linux")]
fn priorities_favour_the_store_writer(pid: u32) {
    // (thread id, name, nice) of every thread, from /proc/<pid>/task/<tid>/stat.
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
        // "tid (name) state ppid ...": the fields after the name, nice is the 19th overall.
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_owned();
        let nice: i32 = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
        let tid: u32 = task.file_name().to_str().unwrap().parse().unwrap();
        threads.push((tid, name, nice));
    }
    let process = threads.iter().find(|(tid, ..)| *tid == pid).unwrap().2;
    let store: Vec<i32> = threads
        .iter()
        .filter(|(_, name, _)| name == "agent-gate-stor")
        .map(|t| t.2)
        .collect();
    assert!(
        !store.is_empty() && store.iter().all(|&n| n == process),
        "{threads:?}"
    );
    let lowered = (process + agent_gate_gateway::runtime::WORKER_NICE_INCREMENT).min(19);
    assert!(
        threads
            .iter()
            .any(|(_, name, nice)| name == "agent-gate" && *nice == lowered),
        "no runtime worker below the process: {threads:?}"
    );
}

/// The soft and hard `Max open files` of process `pid`, from `/proc/<pid>/limits`.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().to_owned(),
    )
}

#[test]
fn serve_raises_its_open_file_soft_limit_to_the_hard_limit() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let home = HomeAssistant::demo(DEFAULT_TOKEN);
    let (ha, _server) = runtime.block_on(home.spawn("127.0.0.1:0")).unwrap();
    write_files(dir.path(), ha);
    let mut command = insecure_serve(dir.path());
    command
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = limit.rlim_max.min(256);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut ready = false;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("\"ready\"") {
            ready = true;
            break;
        }
    }
    let (soft, hard) = open_file_limits(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ready, "serve did not start");
    assert_ne!(hard, "256", "the hard limit is too low for this test");
    assert_eq!(soft, hard, "the soft limit was not raised");
}

/// At the default log level a gateway logs its life, not its traffic: MCP calls (which the
/// MCP SDK serves one short-lived session each) add no lines, as WebSocket calls add none.
#[tokio::test]
async fn serve_at_the_default_level_logs_no_line_per_mcp_call() {
    let dir = tempfile::tempdir().unwrap();
    let home = HomeAssistant::demo(DEFAULT_TOKEN);
    let (ha, _server) = home.spawn("127.0.0.1:0").await.unwrap();
    let (ws_port, _) = write_files(dir.path(), ha);
    let mut child = insecure_serve(dir.path())
        .env_remove("LOG_LEVEL")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{ws_port}/mcp");
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "ha_get_state", "arguments": {"entity_id": "light.kitchen"}}});
    let mut answered = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while answered < 3 {
        assert!(std::time::Instant::now() < deadline, "no MCP answers");
        let sent = http
            .post(&url)
            .bearer_auth(PI_TOKEN)
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", "2025-11-25")
            .json(&call)
            .send()
            .await;
        // Until the listener is up, connections are refused.
        let Ok(response) = sent else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["result"]["isError"], false, "{answer}");
        answered += 1;
    }
    sigterm(child.id());
    assert!(child.wait().unwrap().success());
    let log = reader.join().unwrap();
    assert!(log.iter().any(|l| l.contains("\"ready\"")), "{log:?}");
    let per_call: Vec<&String> = log
        .iter()
        .filter(|l| {
            let line: Value = serde_json::from_str(l).expect("JSON log lines");
            line["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("rmcp"))
        })
        .collect();
    assert!(per_call.is_empty(), "logged per MCP call: {per_call:?}");
}

/// A worker thread count that is not one stops `serve` before it starts, saying what to set
/// (tokio alone would panic on it).
#[tokio::test]
async fn serve_refuses_a_worker_thread_count_that_is_not_a_number() {
    let dir = tempfile::tempdir().unwrap();
    let home = HomeAssistant::demo(DEFAULT_TOKEN);
    let (ha, _server) = home.spawn("127.0.0.1:0").await.unwrap();
    write_files(dir.path(), ha);
    for value in ["two", "0"] {
        let output = insecure_serve(dir.path())
            .env("TOKIO_WORKER_THREADS", value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("TOKIO_WORKER_THREADS=\"{value}\""))
                && stderr.contains("from 1 to 1024"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
