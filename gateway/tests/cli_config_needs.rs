//! The real `agent-gate` binary: a command resolves `${VAR}` only in the config keys it uses.
//! `healthcheck` needs the health address and `policy explain` the agent ids and the tool
//! manifests, so unset token variables do not stop them; `serve` and `check` still report
//! every unset variable with its key. A variable a command does need is still reported.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tools.toml")
        .canonicalize()
        .unwrap()
}

/// A config whose secrets all come from variables that are not set.
fn config(health_port: &str) -> String {
    format!(
        r#"
gateway:
  health_host: 127.0.0.1
  health_port: {health_port}
agents:
  - id: default
    token: "${{UNSET_AGENT_TOKEN}}"
  - id: kitchen
    token_sha256: "${{UNSET_KITCHEN_SHA256}}"
tools: "{tools}"
services:
  homeassistant:
    url: "http://127.0.0.1:8123"
    token: "${{UNSET_HA_TOKEN}}"
approvers:
  - type: telegram
    token: "${{UNSET_BOT_TOKEN}}"
    chat_id: 1
    allowed_users: [1]
"#,
        tools = repo_tools().display()
    )
}

const PERMISSIONS: &str = r#"
defaults:
  - {pattern: "ha_get_*", action: allow}
  - {pattern: "*", action: ask}
rules:
  - {pattern: "ha_call_service(lock.*)", action: deny, description: "Lock control is always denied"}
"#;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new(config: &str) -> Dir {
        let dir = Dir(tempfile::tempdir().unwrap());
        std::fs::write(dir.0.path().join("config.yaml"), config).unwrap();
        std::fs::write(dir.0.path().join("permissions.yaml"), PERMISSIONS).unwrap();
        dir
    }

    /// Runs the binary in this directory with none of the config's variables set.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-gate"));
        cmd.args(args).current_dir(self.0.path());
        for var in [
            "AGENT_GATE_CONFIG",
            "AGENT_GATE_PERMISSIONS",
            "UNSET_AGENT_TOKEN",
            "UNSET_KITCHEN_SHA256",
            "UNSET_HA_TOKEN",
            "UNSET_BOT_TOKEN",
            "UNSET_PORT",
            "UNSET_TOOLS",
        ] {
            cmd.env_remove(var);
        }
        cmd.output().unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A one-request HTTP server answering `/healthz` with 200 and a healthy body.
fn healthy_server() -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        let body = r#"{"status":"healthy"}"#;
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    (port, handle)
}

#[test]
fn healthcheck_needs_only_the_health_address() {
    let (port, server) = healthy_server();
    let d = Dir::new(&config(&port.to_string()));
    let o = d.run(&["healthcheck", "--config", "config.yaml"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert_eq!(
        text(&o.stdout),
        format!("healthy: http://127.0.0.1:{port}/healthz answered 200 (status healthy)\n")
    );
    assert!(server.join().unwrap().starts_with("GET /healthz "));
}

#[test]
fn healthcheck_still_reports_a_variable_it_needs() {
    let d = Dir::new(&config("\"${UNSET_PORT}\""));
    let o = d.run(&["healthcheck", "--config", "config.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(
            "config.yaml: gateway.health_port: environment variable UNSET_PORT is not set"
        ),
        "{err}"
    );
    assert!(
        !err.contains("UNSET_AGENT_TOKEN") && !err.contains("UNSET_HA_TOKEN"),
        "{err}"
    );
}

#[test]
fn policy_explain_needs_only_the_agents_and_the_tools() {
    let d = Dir::new(&config("8080"));
    let o = d.run(&[
        "policy",
        "explain",
        "--agent",
        "kitchen",
        "ha_call_service",
        "domain=lock",
        "service=unlock",
        "entity_id=lock.front_door",
    ]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(out.contains("decision:  deny"), "{out}");
    assert!(
        out.contains("why:       Lock control is always denied"),
        "{out}"
    );

    // The agent ids are still known.
    let o = d.run(&["policy", "explain", "--agent", "garden", "ha_get_states"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(r#"unknown agent "garden"; the agents in config.yaml are: default, kitchen"#),
        "{err}"
    );

    // A variable explain needs is still reported, with its key.
    let d =
        Dir::new(&config("8080").replace(&repo_tools().display().to_string(), "${UNSET_TOOLS}"));
    let o = d.run(&["policy", "explain", "ha_get_states"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("config.yaml: tools: environment variable UNSET_TOOLS is not set"),
        "{err}"
    );
    assert!(!err.contains("UNSET_AGENT_TOKEN"), "{err}");
}

#[test]
fn serve_and_check_still_report_every_unset_variable() {
    let d = Dir::new(&config("8080"));
    let o = d.run(&["check"]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    for (key, var) in [
        ("agents[0].token", "UNSET_AGENT_TOKEN"),
        ("agents[1].token_sha256", "UNSET_KITCHEN_SHA256"),
        ("services.homeassistant.token", "UNSET_HA_TOKEN"),
        ("approvers[0].token", "UNSET_BOT_TOKEN"),
    ] {
        let line = format!(
            "error: config.yaml: {key}: environment variable {var} is not set (export it, or write the value in the file)"
        );
        assert!(out.lines().any(|l| l == line), "{line} not in:\n{out}");
    }

    let o = d.run(&["serve", "--insecure"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(
            "config.yaml: agents[0].token: environment variable UNSET_AGENT_TOKEN is not set"
        ),
        "{err}"
    );
    assert!(
        err.contains("config.yaml: services.homeassistant.token: environment variable UNSET_HA_TOKEN is not set"),
        "{err}"
    );
}
