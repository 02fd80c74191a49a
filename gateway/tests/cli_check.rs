//! The real `agent-gate` binary: `check` and `policy explain` on files in temp dirs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tools.toml")
        .canonicalize()
        .unwrap()
}

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the binary with `args`, the config files of this directory, and a clean
    /// environment apart from `env`.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agent-gate"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("AGENT_GATE_CONFIG")
            .env_remove("AGENT_GATE_PERMISSIONS")
            .env_remove("AGENT_TOKEN")
            .env_remove("HA_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn good_config(tools: &Path) -> String {
    format!(
        r#"
agents:
  - id: default
    token: "${{AGENT_TOKEN}}"
  - id: kitchen
    token: "kitchen-token-0123456789abcdef"
tools: "{}"
services:
  homeassistant:
    url: "http://127.0.0.1:8123"
    token: "${{HA_TOKEN}}"
approvers:
  - type: web
"#,
        tools.display()
    )
}

const GOOD_PERMISSIONS: &str = r#"
defaults:
  - {pattern: "ha_get_*", action: allow}
  - {pattern: "*", action: ask}
rules:
  - {pattern: "ha_call_service(lock.*)", action: deny, description: "Lock control is always denied"}
  - {pattern: "ha_call_service(light.turn_on, light.kitchen)", action: allow, agents: [kitchen]}
"#;

const ENV: &[(&str, &str)] = &[
    ("AGENT_TOKEN", "default-token-0123456789abcdef"),
    ("HA_TOKEN", "ha-secret-token"),
];

#[test]
fn check_passes_on_good_files() {
    let d = Dir::new();
    let tls = "gateway:\n  tls: {cert: cert.pem, key: key.pem}\n";
    d.write("config.yaml", &(good_config(&repo_tools()) + tls));
    d.write("permissions.yaml", GOOD_PERMISSIONS);
    d.write("cert.pem", "cert");
    let o = d.run(&["check"], ENV);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("error: config.yaml: gateway.tls.key: file key.pem not found (paths are relative to the working directory)\n"),
        "{}",
        stdout(&o)
    );
    d.write("key.pem", "key");
    let o = d.run(&["check"], ENV);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(
        out.contains(
            "config.yaml: 2 agents (default, kitchen), 1 service (homeassistant), 1 approver"
        ),
        "{out}"
    );
    assert!(
        out.contains("permissions.yaml: 2 rules, 2 defaults"),
        "{out}"
    );
    assert!(out.contains("tools.toml: 12 tools"), "{out}");
    assert!(
        out.ends_with("check passed: 0 errors, 0 warnings\n"),
        "{out}"
    );
    assert!(!out.contains("ha-secret-token") && !out.contains("default-token"));
}

#[test]
fn check_reports_every_problem_with_its_location() {
    let d = Dir::new();
    let tools = d.write(
        "tools.toml",
        "version = 1\n[services.homeassistant]\ndescription = \"HA\"\n[tools.ha_ping]\nservice = \"homeassistant\"\ndescripton = \"typo\"\nhttp = { method = \"GET\", path = \"/api/\" }\n",
    );
    let config =
        good_config(&tools).replace("${AGENT_TOKEN}", "${MISSING_VAR}") + "gateway:\n  port: abc\n";
    d.write("config.yaml", &config);
    d.write(
        "permissions.yaml",
        "rules:\n  - {pattern: \"ha_call_service(*)\", action: block}\n",
    );
    let o = d.run(&["check"], ENV);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.contains(&"error: config.yaml: agents[0].token: environment variable MISSING_VAR is not set (export it, or write the value in the file)"),
        "{out}"
    );
    assert!(
        lines.contains(
            &r#"error: config.yaml: gateway.port: expected an integer 1-65535, got "abc""#
        ),
        "{out}"
    );
    assert!(
        lines.contains(&r#"error: permissions.yaml: rules[0].action: invalid action "block": expected allow, deny or ask"#),
        "{out}"
    );
    // The config failed, so its `tools:` is unknown: the default manifest beside it is checked,
    // and its diagnostics carry file:line:col.
    let manifest_error = lines
        .iter()
        .find(|l| l.contains("tools.toml:6:") && l.contains("descripton"))
        .unwrap_or_else(|| panic!("no manifest diagnostic in:\n{out}"));
    assert!(
        manifest_error.starts_with("error: ")
            && manifest_error.ends_with("unknown key `descripton` in tool `ha_ping`"),
        "{manifest_error}"
    );
    assert!(
        out.contains("  help: did you mean `description`?\n"),
        "{out}"
    );
    assert!(
        out.contains("warning: config.yaml: the config has errors"),
        "{out}"
    );
    assert!(out.contains("check failed: 5 errors, 1 warning"), "{out}");
}

#[test]
fn check_cross_checks_agents_services_and_patterns() {
    let d = Dir::new();
    d.write("config.yaml", &good_config(&repo_tools()));
    d.write(
        "permissions.yaml",
        "rules:\n  - {pattern: \"ha_call_servce(lock.*)\", action: deny}\n  - {pattern: \"*\", action: ask, agents: [kitchn]}\n",
    );
    let o = d.run(&["check"], ENV);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains(r#"error: permissions.yaml: rules[1].agents[0]: unknown agent "kitchn" (did you mean `kitchen`?); the agents in the config are: default, kitchen"#), "{out}");
    assert!(out.contains(r#"warning: permissions.yaml: rules[0].pattern: "ha_call_servce(lock.*)" matches no tool of the manifests (did you mean `ha_call_service`?)"#), "{out}");
}

#[test]
fn check_honours_explicit_paths_and_reports_missing_files() {
    let d = Dir::new();
    let o = d.run(
        &[
            "check",
            "--config",
            "nope.yaml",
            "--permissions",
            d.path("nope-perms.yaml").to_str().unwrap(),
        ],
        ENV,
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains("error: nope.yaml: cannot read the file:"),
        "{out}"
    );
    assert!(
        out.contains("nope-perms.yaml: cannot read the file:"),
        "{out}"
    );
}

#[test]
fn explain_shows_signature_decision_and_rule() {
    let d = Dir::new();
    d.write("config.yaml", &good_config(&repo_tools()));
    d.write("permissions.yaml", GOOD_PERMISSIONS);
    let o = d.run(
        &[
            "policy",
            "explain",
            "ha_call_service",
            "domain=lock",
            "service=unlock",
            "entity_id=lock.front_door",
        ],
        ENV,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "agent:     default\ntool:      ha_call_service\nsignature: ha_call_service(lock.unlock, lock.front_door)\ndecision:  deny\nrule:      rules[0] in permissions.yaml\npattern:   ha_call_service(lock.*)\nwhy:       Lock control is always denied\naffects:   lock.front_door\n"
    );

    // Agent scoping, and JSON values (an object for data).
    let args = [
        "policy",
        "explain",
        "--agent",
        "kitchen",
        "ha_call_service",
        "domain=light",
        "service=turn_on",
        "entity_id=light.kitchen",
        r#"data={"brightness": 128}"#,
    ];
    let o = d.run(&args, ENV);
    let out = stdout(&o);
    assert!(
        out.contains("decision:  allow\nrule:      rules[1] in permissions.yaml\n"),
        "{out}"
    );
    assert!(out.contains("agents:    kitchen\n"), "{out}");
    let mut as_default = args.to_vec();
    as_default.remove(3);
    as_default.remove(2);
    let out = stdout(&d.run(&as_default, ENV));
    assert!(
        out.contains("decision:  ask\nrule:      defaults[1] in permissions.yaml\n"),
        "{out}"
    );
}

#[test]
fn explain_refuses_invalid_requests_and_unknown_agents() {
    let d = Dir::new();
    d.write("config.yaml", &good_config(&repo_tools()));
    d.write("permissions.yaml", GOOD_PERMISSIONS);
    let o = d.run(
        &["policy", "explain", "ha_get_state", "entity_id=light.*"],
        ENV,
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("signature: (none: the request is invalid)\ndecision:  deny\nreason:    invalid arguments: "), "{out}");

    // A JSON number where a string is expected is not converted.
    let o = d.run(&["policy", "explain", "ha_get_state", "entity_id=5"], ENV);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("must be a string"), "{}", stdout(&o));

    let o = d.run(&["policy", "explain", "ha_get_stat"], ENV);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o)
            .contains("reason:    unknown tool `ha_get_stat`; the nearest tools are: ha_get_state"),
        "{}",
        stdout(&o)
    );

    let o = d.run(
        &["policy", "explain", "--agent", "nobody", "ha_get_states"],
        ENV,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: unknown agent \"nobody\"; the agents in config.yaml are: default, kitchen (pass one with --agent)\n"
    );

    let o = d.run(&["policy", "explain", "ha_get_state", "entity_id"], ENV);
    assert_eq!(
        o.status.code(),
        Some(4),
        "usage errors exit 4 (invalid arguments)"
    );
    assert!(stderr(&o).contains("expected KEY=VALUE"), "{}", stderr(&o));
}

#[test]
fn explain_with_tools_needs_no_config() {
    let d = Dir::new();
    d.write("permissions.yaml", GOOD_PERMISSIONS);
    let tools = repo_tools();
    let o = d.run(
        &[
            "policy",
            "explain",
            "--tools",
            tools.to_str().unwrap(),
            "ha_fire_event",
            "event_type=x",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("signature: ha_fire_event(x)\ndecision:  ask\nrule:      defaults[1] in permissions.yaml\n"), "{out}");

    // Without --tools the config is needed, and its failure is reported with context.
    let o = d.run(&["policy", "explain", "ha_get_states"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: cannot load the config: config.yaml: cannot read the file:"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_warns_when_scripts_are_allowed_beside_a_deny_rule() {
    let d = Dir::new();
    d.write("config.yaml", &good_config(&repo_tools()));
    // the repository's example permissions: no false warning
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../permissions.example.yaml");
    d.write(
        "permissions.yaml",
        &std::fs::read_to_string(example).unwrap(),
    );
    let o = d.run(&["check"], ENV);
    let out = stdout(&o);
    let policy_warning = |l: &&str| l.starts_with("warning: permissions.yaml");
    assert_eq!(out.lines().filter(policy_warning).count(), 0, "{out}");
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));

    d.write(
        "permissions.yaml",
        r#"
rules:
  - {pattern: "ha_call_service(lock.*)", action: deny}
  - {pattern: "ha_call_service(script.*)", action: allow}
  - {pattern: "ha_call_service(scene.turn_on, *)", action: allow}
  - {pattern: "ha_call_service(automation.trigger, automation.morning)", action: allow}
defaults:
  - {pattern: "*", action: ask}
"#,
    );
    let o = d.run(&["check"], ENV);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let warnings: Vec<&str> = out.lines().filter(policy_warning).collect();
    assert_eq!(warnings.len(), 2, "{out}");
    assert!(
        warnings[0]
            .contains("rules[1] (pattern \"ha_call_service(script.*)\", allow) allows `script.*`")
            && warnings[0].contains("rules[0] (pattern \"ha_call_service(lock.*)\", deny)"),
        "{out}"
    );
    assert!(
        warnings[1].contains("rules[2]") && warnings[1].contains("`scene.*`"),
        "{out}"
    );
    // a specific automation, allowed by name, is not reported
    assert!(!out.contains("rules[3]"), "{out}");
}

/// Runs `serve --insecure` in `d`, which must refuse to start; returns its stderr. Killed
/// (and the test failed) if it is still running after a bounded wait.
fn serve_refuses(d: &Dir) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-gate"))
        .args(["serve", "--insecure"])
        .current_dir(d.dir.path())
        .env_remove("AGENT_GATE_CONFIG")
        .env_remove("AGENT_GATE_PERMISSIONS")
        .envs(ENV.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("serve started with a configuration `check` should have refused");
    }
    let output = child.wait_with_output().unwrap();
    assert_ne!(output.status.code(), Some(0));
    stderr(&output)
}

#[test]
fn check_refuses_a_health_port_on_the_agents_port_like_serve() {
    let d = Dir::new();
    let gateway = "gateway:\n  host: 127.0.0.1\n  port: 18473\n  health_host: 0.0.0.0\n  health_port: 18473\n";
    d.write("config.yaml", &(good_config(&repo_tools()) + gateway));
    d.write("permissions.yaml", GOOD_PERMISSIONS);
    let o = d.run(&["check"], ENV);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let expected = "gateway.health_port: the HTTP side (0.0.0.0:18473) would listen on the agents' port (127.0.0.1:18473)";
    assert!(out.contains(expected), "{out}");
    let refused = serve_refuses(&d);
    assert!(refused.contains(expected), "{refused}");
}

#[test]
fn check_refuses_unusable_storage_paths_like_serve() {
    let d = Dir::new();
    d.write("permissions.yaml", GOOD_PERMISSIONS);
    std::fs::create_dir(d.path("a-directory")).unwrap();
    d.write("a-file", "not a directory");
    let not_a_directory = format!("{} is not a directory", d.path("a-file").display());
    let cases = [
        ("a-directory", "it is a directory".to_owned()),
        ("a-file/agent-gate.db", not_a_directory.clone()),
        ("a-file/deeper/agent-gate.db", not_a_directory),
    ];
    for (path, problem) in cases {
        let storage = format!("storage:\n  path: \"{}\"\n", d.path(path).display());
        d.write("config.yaml", &(good_config(&repo_tools()) + &storage));
        let o = d.run(&["check"], ENV);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{path}: {out}");
        let expected = format!(
            "storage.path: {} cannot hold the database: {problem}",
            d.path(path).display()
        );
        assert!(out.contains(&expected), "{path}: {out}");
        let refused = serve_refuses(&d);
        assert!(refused.contains(&expected), "{path}: {refused}");
    }
    // A missing directory that can be created is fine (serve creates it).
    let storage = format!(
        "storage:\n  path: \"{}\"\n",
        d.path("new/dir/agent-gate.db").display()
    );
    d.write("config.yaml", &(good_config(&repo_tools()) + &storage));
    let o = d.run(&["check"], ENV);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(!d.path("new").exists(), "check created a directory");
}
