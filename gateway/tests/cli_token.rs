//! The real `agent-gate` binary: `token new` prints a fresh token once and the `token_sha256`
//! entry for `config.yaml`; the printed entry, loaded as a config, authenticates the printed
//! token. No config file is read.

use std::process::{Command, Output};

use agent_gate_gateway::config::{Config, NEW_TOKEN_PREFIX};

fn run(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_agent-gate"))
        .args(args)
        // An empty directory and a config path that does not exist: nothing to read.
        .current_dir(dir.path())
        .env("AGENT_GATE_CONFIG", dir.path().join("missing.yaml"))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn token_new_prints_a_token_and_the_line_that_accepts_it() {
    let o = run(&["token", "new", "--agent", "kitchen-pi"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{o:?}");
    assert!(o.stderr.is_empty(), "{o:?}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        lines[0].starts_with("# ") && lines[0].contains("\"kitchen-pi\""),
        "{out}"
    );
    let token = lines[1];
    assert!(token.starts_with(NEW_TOKEN_PREFIX), "{token}");
    assert_eq!(token.len(), NEW_TOKEN_PREFIX.len() + 64);
    assert!(
        lines[2].starts_with("# ") && lines[2].contains("agents:"),
        "{out}"
    );
    assert_eq!(lines[3], "  - id: kitchen-pi");
    assert!(lines[4].starts_with("    token_sha256: \""), "{out}");
    // The token shows once, and the entry holds only its digest.
    assert_eq!(out.matches(token).count(), 1, "{out}");

    let yaml = format!("agents:\n{}\n{}\n", lines[3], lines[4]);
    let config = Config::parse(&yaml, "config.yaml", &|_: &str| None).unwrap();
    assert!(config.warnings.iter().all(|w| !w.key.starts_with("agents")));
    assert_eq!(config.agent_by_token(token).unwrap().id, "kitchen-pi");
    assert!(config.agent_by_token(&format!("{token}0")).is_none());

    // Another run, another token.
    let again = stdout(&run(&["token", "new", "--agent", "kitchen-pi"]));
    assert_ne!(again.lines().nth(1), Some(token));
}

#[test]
fn token_new_refuses_a_bad_agent_id_and_explains_itself() {
    let o = run(&["token", "new", "--agent", "bad id"]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("expected an agent id of 1-64 letters"),
        "{err}"
    );
    assert!(o.stdout.is_empty());

    let missing = run(&["token", "new"]);
    assert_eq!(missing.status.code(), Some(4), "{missing:?}");

    let help = stdout(&run(&["token", "new", "--help"]));
    for needle in ["token_sha256", "tokens:", "rotate", "--agent"] {
        assert!(help.contains(needle), "{needle} not in:\n{help}");
    }
}
