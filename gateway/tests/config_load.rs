//! config.yaml loading: upstream compatibility, defaults, `${VAR}`, coercion, and every
//! mistake reported with file, key path and expectation (never echoing a secret).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_gate_gateway::config::{
    ApproverConfig, Config, ConfigError, EnvLookup, PermissionsFile, ServiceAuth, TokenDigest,
};
use agent_gate_gateway::store::SyncMode;

fn env_of(pairs: &[(&str, &str)]) -> impl EnvLookup + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn no_env() -> impl EnvLookup {
    |_: &str| None
}

fn load(yaml: &str) -> Config {
    Config::parse(yaml, "config.yaml", &no_env()).unwrap_or_else(|e| panic!("{e}"))
}

/// Every error message of a config that must fail.
fn errors(yaml: &str) -> Vec<String> {
    errors_with(yaml, &no_env())
}

fn errors_with(yaml: &str, env: &dyn EnvLookup) -> Vec<String> {
    match Config::parse(yaml, "config.yaml", env) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.issues().iter().map(ToString::to_string).collect(),
    }
}

const UPSTREAM: &str = r#"
gateway:
  host: "0.0.0.0"
  port: 8443
  tls:
    cert: "/path/cert.pem"
    key: "/path/key.pem"
agent:
  token: "test-token-0123456789"
messenger:
  type: "telegram"
  telegram:
    token: "bot-token"
    chat_id: -100123
    allowed_users: [111, 222]
services:
  homeassistant:
    url: "http://ha.local:8123"
    token: "ha-token"
storage:
  type: "sqlite"
  path: "./data/test.db"
"#;

const MINIMAL: &str = r#"
agents:
  - id: default
    token: "a-long-enough-agent-token"
services:
  homeassistant:
    url: "http://ha.local:8123"
    token: "ha-token"
"#;

#[test]
fn upstream_config_loads() {
    let c = load(UPSTREAM);
    assert_eq!(c.gateway.host, "0.0.0.0");
    assert_eq!(c.gateway.port, 8443);
    let tls = c.gateway.tls.as_ref().unwrap();
    assert_eq!(tls.cert, PathBuf::from("/path/cert.pem"));
    assert_eq!(tls.key, PathBuf::from("/path/key.pem"));
    assert_eq!(c.agents.len(), 1);
    assert_eq!(c.agents[0].id, "default");
    assert_eq!(
        c.agents[0].tokens,
        vec![TokenDigest::of("test-token-0123456789")]
    );
    let [ApproverConfig::Telegram(tg)] = c.approvers.as_slice() else {
        panic!("{:?}", c.approvers)
    };
    assert_eq!(tg.token.expose(), "bot-token");
    assert_eq!(tg.chat_id, -100123);
    assert_eq!(tg.allowed_users, vec![111, 222]);
    assert_eq!(tg.api_url, "https://api.telegram.org");
    let ha = &c.services["homeassistant"];
    assert_eq!(ha.url, "http://ha.local:8123");
    assert_eq!(
        ha.auth,
        Some(ServiceAuth::Bearer {
            token: agent_gate_gateway::config::Secret::new("ha-token")
        })
    );
    assert_eq!(c.storage.path, PathBuf::from("./data/test.db"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn defaults() {
    let c = load(MINIMAL);
    assert_eq!(c.gateway.host, "0.0.0.0");
    assert_eq!(c.gateway.port, 8443);
    assert_eq!(c.gateway.tls, None);
    assert_eq!(c.gateway.health_host, "127.0.0.1");
    assert_eq!(c.gateway.health_port, 8080);
    assert_eq!(c.approval_timeout, Duration::from_secs(900));
    assert_eq!(c.rate_limit.max_requests_per_minute, 60);
    assert_eq!(c.rate_limit.max_pending_approvals, 10);
    assert_eq!(c.storage.path, PathBuf::from("data/agent-gate.db"));
    assert_eq!(c.storage.sync, SyncMode::Background);
    assert_eq!(c.tools, vec![PathBuf::from("tools.toml")]);
    let ha = &c.services["homeassistant"];
    assert_eq!(ha.timeout, Duration::from_secs(10));
    assert_eq!(ha.health.method, "GET");
    assert_eq!(ha.health.path, "/");
    assert_eq!(ha.health.expect_status, 200);
    assert!(ha.errors.is_empty());
    // No approver is legal but worth a warning.
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0]
            .to_string()
            .starts_with("config.yaml: approvers: no approver configured"),
        "{}",
        c.warnings[0]
    );
}

#[test]
fn env_substitution_everywhere_and_coercion() {
    let yaml = r#"
gateway:
  host: "${HOST}"
  port: "${PORT}"
  health_port: ${HPORT}
agents:
  - id: default
    token: "${PREFIX}-${SUFFIX}-and-more-characters"
services:
  homeassistant:
    url: "http://${HOST}:${HA_PORT}"
    auth:
      type: header
      name: "X-${HEADER}"
      value: "${HA_TOKEN}"
approvers:
  - type: telegram
    token: "${BOT}"
    chat_id: "${CHAT}"
    allowed_users: ["${USER1}", 222]
approval_timeout: "${TIMEOUT}"
"#;
    let env = env_of(&[
        ("HOST", "10.0.0.2"),
        ("PORT", "9999"),
        ("HPORT", "9090"),
        ("PREFIX", "abc"),
        ("SUFFIX", "xyz"),
        ("HA_PORT", "8123"),
        ("HEADER", "Key"),
        ("HA_TOKEN", "s3cret"),
        ("BOT", "bot:tok"),
        ("CHAT", "-100999"),
        ("USER1", "111"),
        ("TIMEOUT", "30"),
    ]);
    let c = Config::parse(yaml, "config.yaml", &env).unwrap();
    assert_eq!(c.gateway.host, "10.0.0.2");
    assert_eq!(c.gateway.port, 9999);
    assert_eq!(c.gateway.health_port, 9090);
    assert_eq!(
        c.agent_by_token("abc-xyz-and-more-characters").unwrap().id,
        "default"
    );
    assert_eq!(c.services["homeassistant"].url, "http://10.0.0.2:8123");
    match &c.services["homeassistant"].auth {
        Some(ServiceAuth::Header { name, value }) => {
            assert_eq!(name, "X-Key");
            assert_eq!(value.expose(), "s3cret");
        }
        other => panic!("{other:?}"),
    }
    let ApproverConfig::Telegram(tg) = &c.approvers[0] else {
        panic!()
    };
    assert_eq!(tg.chat_id, -100999);
    assert_eq!(tg.allowed_users, vec![111, 222]);
    assert_eq!(c.approval_timeout, Duration::from_secs(30));
}

#[test]
fn env_values_cannot_change_structure_and_escape_works() {
    // A value with YAML syntax stays a plain string: substitution happens after parsing.
    let yaml = MINIMAL.replace("ha-token", "${EVIL}") + "storage:\n  path: \"$${NOT_A_VAR}/db\"\n";
    let env = env_of(&[("EVIL", "x\"\nagents: [] #")]);
    let c = Config::parse(&yaml, "config.yaml", &env).unwrap();
    let Some(ServiceAuth::Bearer { token }) = &c.services["homeassistant"].auth else {
        panic!()
    };
    assert_eq!(token.expose(), "x\"\nagents: [] #");
    assert_eq!(c.agents.len(), 1);
    assert_eq!(c.storage.path, PathBuf::from("${NOT_A_VAR}/db"));
}

#[test]
fn unset_variable_names_variable_and_key_path_once() {
    let yaml = MINIMAL
        .replace("a-long-enough-agent-token", "${AGENT_TOKEN}")
        .replace("http://ha.local:8123", "http://${HA_HOST}:8123")
        + "gateway:\n  port: \"${PORT}\"\n";
    let errs = errors(&yaml);
    assert_eq!(
        errs,
        vec![
            "config.yaml: agents[0].token: environment variable AGENT_TOKEN is not set (export it, or write the value in the file)",
            "config.yaml: services.homeassistant.url: environment variable HA_HOST is not set (export it, or write the value in the file)",
            "config.yaml: gateway.port: environment variable PORT is not set (export it, or write the value in the file)",
        ]
    );
    let errs = errors(&MINIMAL.replace("ha-token", "${BROKEN"));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .starts_with("config.yaml: services.homeassistant.token: `${` without a closing `}`"),
        "{}",
        errs[0]
    );
}

#[test]
fn wrong_values_name_key_and_expectation() {
    let yaml = format!(
        "{MINIMAL}gateway:\n  port: abc\n  health_port: 70000\napproval_timeout: 0\nrate_limit:\n  max_requests_per_minute: -5\n"
    );
    assert_eq!(
        errors(&yaml),
        vec![
            r#"config.yaml: gateway.port: expected an integer 1-65535, got "abc""#,
            "config.yaml: gateway.health_port: expected an integer 1-65535, got 70000",
            "config.yaml: approval_timeout: expected an integer 1-604800, got 0",
            "config.yaml: rate_limit.max_requests_per_minute: expected an integer 1-1000000, got -5",
        ]
    );
}

#[test]
fn unknown_keys_suggest_the_closest() {
    let yaml = format!("{MINIMAL}gateway:\n  prot: 1234\nrate_limits: {{}}\n");
    assert_eq!(
        errors(&yaml),
        vec![
            "config.yaml: rate_limits: unknown key `rate_limits` (did you mean `rate_limit`?); expected one of: gateway, agent, agents, tools, services, storage, messenger, approvers, approval_timeout, rate_limit, mcp",
            "config.yaml: gateway.prot: unknown key `prot` (did you mean `port`?); expected one of: host, port, tls, health_host, health_port, max_unauthenticated_connections, max_unauthenticated_per_address, max_connections_per_agent, admin_token",
        ]
    );
}

#[test]
fn agents_forms_and_their_mistakes() {
    let both = format!("{MINIMAL}agent:\n  token: other-token-0123456789\n");
    let errs = errors(&both);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("config.yaml: agent: both `agent:` and `agents:` are given"));

    let none = "services: {}\n";
    assert!(errors(none)[0].starts_with("config.yaml: agents: missing: expected a list of agents"));

    let dup = r#"
agents:
  - {id: a, token: "same-token-0123456789"}
  - {id: a, token: "other-token-0123456789"}
  - {id: c, token: "same-token-0123456789"}
  - {id: "bad id", token: "third-token-0123456789"}
  - {id: e, token: ""}
  - {id: f, token: 12345}
"#;
    let errs = errors(dup);
    assert_eq!(
        errs,
        vec![
            r#"config.yaml: agents[3].id: expected an agent id of 1-64 letters, digits, `_`, `-` or `.`, got "bad id""#,
            "config.yaml: agents[4].token: must not be empty (if it comes from ${VAR}, that variable is set but empty)",
            "config.yaml: agents[5].token: expected a string (a secret), got a number; put the value in quotes",
            r#"config.yaml: agents[1].id: duplicate agent id "a" (also at agents[0]); every agent needs its own id"#,
            "config.yaml: agents[2].token: the same token as agents[0].token; every agent needs its own token (the token identifies the agent)",
        ]
    );
    for e in &errs {
        assert!(!e.contains("same-token") && !e.contains("12345"), "{e}");
    }

    let short = MINIMAL.replace("a-long-enough-agent-token", "short");
    let c = load(&short);
    assert!(c.warnings.iter().any(|w| w.key == "agents[0].token"));
    assert!(
        c.warnings
            .iter()
            .all(|w| !w.to_string().contains("short\""))
    );
}

#[test]
fn agent_lookup_by_token() {
    let yaml = r#"
agents:
  - {id: kitchen, token: "kitchen-token-0123456789"}
  - {id: garden, token: "garden-token-0123456789"}
"#;
    let c = load(yaml);
    assert_eq!(
        c.agent_by_token("garden-token-0123456789").unwrap().id,
        "garden"
    );
    assert!(c.agent_by_token("garden-token-012345678").is_none());
    assert_eq!(
        c.agent("kitchen").unwrap().tokens,
        vec![TokenDigest::of("kitchen-token-0123456789")]
    );
}

#[test]
fn tools_paths_resolve_against_the_config_directory() {
    let dir = Path::new("/etc/agent-gate");
    let one = format!("{MINIMAL}tools: extra.toml\n");
    let c = Config::parse(&one, dir.join("config.yaml"), &no_env()).unwrap();
    assert_eq!(c.tools, vec![dir.join("extra.toml")]);
    let list = format!("{MINIMAL}tools: [a.toml, /abs/b.toml]\n");
    let c = Config::parse(&list, dir.join("config.yaml"), &no_env()).unwrap();
    assert_eq!(
        c.tools,
        vec![dir.join("a.toml"), PathBuf::from("/abs/b.toml")]
    );
    let c = Config::parse(MINIMAL, dir.join("config.yaml"), &no_env()).unwrap();
    assert_eq!(c.tools, vec![dir.join("tools.toml")]);
    assert_eq!(
        errors(&format!("{MINIMAL}tools: 5\n")),
        vec!["config.yaml: tools: expected a manifest path or a list of paths, got 5"]
    );
}

#[test]
fn service_auth_forms() {
    let yaml = r#"
agents: [{id: default, token: "a-long-enough-agent-token"}]
services:
  bearer: {url: "https://a.example", auth: {type: bearer, token: "t1"}}
  header_up: {url: "https://b.example/", auth: {type: header, header_name: "X-Key", token: "t2"}}
  query: {url: "https://c.example", auth: {type: query, name: "key", value: "t3"}}
  query_up: {url: "https://d.example", auth: {type: query, query_param: "k", token: "t4"}}
  basic: {url: "https://e.example", auth: {type: basic, username: "u", password: "p"}, timeout: 2.5}
  open: {url: "http://f.example", handler: http}
"#;
    let c = load(yaml);
    let s = |n: &str| c.services[n].auth.clone();
    use agent_gate_gateway::config::Secret;
    assert_eq!(
        s("bearer"),
        Some(ServiceAuth::Bearer {
            token: Secret::new("t1")
        })
    );
    assert_eq!(
        s("header_up"),
        Some(ServiceAuth::Header {
            name: "X-Key".into(),
            value: Secret::new("t2")
        })
    );
    assert_eq!(c.services["header_up"].url, "https://b.example");
    assert_eq!(
        s("query"),
        Some(ServiceAuth::Query {
            name: "key".into(),
            value: Secret::new("t3")
        })
    );
    assert_eq!(
        s("query_up"),
        Some(ServiceAuth::Query {
            name: "k".into(),
            value: Secret::new("t4")
        })
    );
    assert_eq!(
        s("basic"),
        Some(ServiceAuth::Basic {
            username: "u".into(),
            password: Secret::new("p")
        })
    );
    assert_eq!(c.services["basic"].timeout, Duration::from_millis(2500));
    assert_eq!(s("open"), None);
}

#[test]
fn service_mistakes() {
    let yaml = r#"
agents: [{id: default, token: "a-long-enough-agent-token"}]
services:
  a: {url: "ftp://admin:hunter2@x/api", token: "secret-value-1", auth: {type: bearer, token: "secret-value-2"}}
  b: {url: "http://x", auth: {type: bearer_token, token: "secret-value-3"}}
  c: {url: "http://x", auth: {type: header, value: "secret-value-4"}}
  d: {url: "http://x", health: {method: FETCH, path: "api", expect_status: 999}}
  e: {url: "http://x", errors: {404: "missing {entity}", 99: "x"}}
  f: {url: "http://x", errors: [{status: 500, message: "boom {status}: {body}"}, {message: "no status"}]}
  g: {url: "http://x", handler: python, tools: "ha_tools.yaml", handler_class: "my.Handler"}
  h: {url: "http://x", timeout: 0}
"#;
    let errs = errors(yaml);
    assert_eq!(
        errs,
        vec![
            r#"config.yaml: services.a.url: expected an http:// or https:// URL such as http://homeassistant.local:8123, got "ftp://***@x/api""#,
            "config.yaml: services.a.token: both `token` and `auth` are given; `token` is short for `auth: {type: bearer, token: ...}`, keep one",
            r#"config.yaml: services.b.auth.type: unknown auth type "bearer_token" (did you mean `bearer`?); expected one of: bearer, header, query, basic"#,
            "config.yaml: services.c.auth.name: missing: expected a string",
            r#"config.yaml: services.d.health.method: expected an HTTP method (GET, HEAD, POST, ...), got "FETCH""#,
            r#"config.yaml: services.d.health.path: expected a path starting with `/`, got "api""#,
            "config.yaml: services.d.health.expect_status: expected an integer 100-599, got 999",
            r#"config.yaml: services.e.errors.99: expected an HTTP status 100-599 as the key, got "99""#,
            "config.yaml: services.e.errors.404: unknown placeholder `{entity}`; only `{status}` and `{body}` are replaced",
            "config.yaml: services.f.errors[1].status: missing: expected an HTTP status 100-599",
            r#"config.yaml: services.g.handler: unsupported handler "python": only `http` is supported (describe the service's tools in a tool manifest)"#,
            r#"config.yaml: services.g.handler_class: custom handler classes of the Python gateway are not supported (got "my.Handler"); describe the service's tools in a tool manifest"#,
            "config.yaml: services.g.tools: YAML tool files of the Python gateway are not supported; describe the tools in a TOML manifest and list it under the top-level `tools:`",
            "config.yaml: services.h.timeout: expected a number of seconds greater than 0 and at most 86400, got 0",
        ]
    );
    for e in &errs {
        assert!(!e.contains("secret-value") && !e.contains("hunter2"), "{e}");
    }
}

#[test]
fn error_templates_both_forms() {
    let yaml = format!(
        "{MINIMAL}  other:\n    url: http://o\n    errors:\n      - {{status: 500, message: \"boom {{status}}: {{body}}\"}}\n"
    );
    let c = load(&yaml);
    assert_eq!(c.services["other"].errors[&500], "boom {status}: {body}");
    let yaml = format!(
        "{MINIMAL}  other:\n    url: http://o\n    errors:\n      404: \"gone: {{body}}\"\n"
    );
    let c = load(&yaml);
    assert_eq!(c.services["other"].errors[&404], "gone: {body}");
}

#[test]
fn approvers_list_form() {
    let yaml = format!(
        r#"{MINIMAL}approvers:
  - type: telegram
    token: bot
    chat_id: "42"
    allowed_users: [7]
    api_url: "http://127.0.0.1:9999"
  - type: web
  - type: web
    token: webtok
"#
    );
    let errs = errors(&yaml);
    assert_eq!(
        errs,
        vec![
            "config.yaml: approvers: more than one `type: web` approver; there is one web approval page"
        ]
    );
    let yaml = format!(
        "{MINIMAL}approvers:\n  - {{type: telegram, token: bot, chat_id: 42, allowed_users: [7], api_url: \"http://127.0.0.1:9999/\"}}\n  - {{type: web, token: webtok}}\n"
    );
    let c = load(&yaml);
    let [ApproverConfig::Telegram(tg), ApproverConfig::Web(web)] = c.approvers.as_slice() else {
        panic!("{:?}", c.approvers)
    };
    assert_eq!(tg.chat_id, 42);
    assert_eq!(tg.api_url, "http://127.0.0.1:9999");
    assert_eq!(web.token.as_ref().unwrap().expose(), "webtok");
    assert_eq!(web.name, "web");
    let named = load(&format!(
        "{MINIMAL}approvers:\n  - {{type: web, name: alice}}\n"
    ));
    let [ApproverConfig::Web(web)] = named.approvers.as_slice() else {
        panic!("{:?}", named.approvers)
    };
    assert_eq!(web.name, "alice");
    assert!(web.token.is_none());
    assert_eq!(
        errors(&format!(
            "{MINIMAL}approvers:\n  - {{type: web, name: \"<b>x</b>\"}}\n"
        )),
        vec![
            r#"config.yaml: approvers[0].name: invalid web approver name "<b>x</b>": use at most 64 letters, digits, `_`, `-`, `.` or `@` (it is recorded as `web:<name>`)"#
        ]
    );
    assert_eq!(c.approvers[1].kind(), "web");
}

#[test]
fn approver_mistakes() {
    let yaml = format!(
        "{MINIMAL}approvers:\n  - {{type: slack}}\n  - {{type: telegram, token: bot, chat_id: abc, allowed_users: []}}\n  - {{type: web, tokn: x}}\n"
    );
    assert_eq!(
        errors(&yaml),
        vec![
            r#"config.yaml: approvers[0].type: unsupported approver type "slack"; expected one of: telegram, web, home_assistant"#,
            r#"config.yaml: approvers[1].chat_id: expected an integer, got "abc""#,
            "config.yaml: approvers[1].allowed_users: must be a non-empty list of Telegram user ids (nobody could approve)",
            "config.yaml: approvers[2].tokn: unknown key `tokn` (did you mean `token`?); expected one of: type, token, name, grant_minutes",
        ]
    );
    let both = format!("{UPSTREAM}approvers: []\n");
    assert!(
        errors(&both)[0].starts_with("config.yaml: messenger: both `messenger:` and `approvers:`")
    );
    let upstream_slack = UPSTREAM.replace("type: \"telegram\"", "type: \"telegrm\"");
    assert_eq!(
        errors(&upstream_slack),
        vec![
            r#"config.yaml: messenger.type: unsupported approver type "telegrm" (did you mean `telegram`?); expected one of: telegram, web"#
        ]
    );
    let storage = UPSTREAM.replace("type: \"sqlite\"", "type: \"postgres\"");
    assert_eq!(
        errors(&storage),
        vec![
            r#"config.yaml: storage.type: unsupported storage type "postgres": only `sqlite` is supported"#
        ]
    );
}

#[test]
fn storage_sync_modes() {
    let always = UPSTREAM.replace("type: \"sqlite\"", "type: \"sqlite\"\n  sync: always");
    assert_eq!(load(&always).storage.sync, SyncMode::Always);
    let background = UPSTREAM.replace("type: \"sqlite\"", "type: \"sqlite\"\n  sync: background");
    assert_eq!(load(&background).storage.sync, SyncMode::Background);
    let typo = UPSTREAM.replace("type: \"sqlite\"", "type: \"sqlite\"\n  sync: full");
    assert_eq!(
        errors(&typo),
        vec![
            r#"config.yaml: storage.sync: unknown sync mode "full"; expected one of: background (answer at commit, survives a crash), always (answer after the disk sync, survives a power cut)"#
        ]
    );
}

#[test]
fn file_and_yaml_errors() {
    let missing = Config::load("/nonexistent/config.yaml").unwrap_err();
    assert!(matches!(missing, ConfigError::Read { .. }));
    assert!(
        missing
            .to_string()
            .starts_with("/nonexistent/config.yaml: cannot read the file:"),
        "{missing}"
    );
    let bad = Config::parse("gateway:\n  port: [1\n", "config.yaml", &no_env()).unwrap_err();
    let ConfigError::Yaml { location, .. } = &bad else {
        panic!("{bad:?}")
    };
    assert!(location.is_some());
    assert!(bad.to_string().starts_with("config.yaml:"), "{bad}");
    let list = Config::parse("- a\n- b\n", "config.yaml", &no_env()).unwrap_err();
    assert_eq!(
        list.to_string(),
        "config.yaml: expected a mapping of keys at the top level, got a list"
    );
}

#[test]
fn debug_output_never_contains_secrets() {
    let c = load(UPSTREAM);
    let debug = format!("{c:?}");
    for secret in ["test-token-0123456789", "bot-token", "ha-token"] {
        assert!(!debug.contains(secret), "{secret} leaked in {debug}");
    }
}

#[test]
fn example_files_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let env = env_of(&[
        ("AGENT_TOKEN", "0123456789abcdef0123456789abcdef"),
        ("HA_TOKEN", "ha"),
        ("TELEGRAM_BOT_TOKEN", "bot"),
        ("WEB_APPROVAL_TOKEN", "web"),
    ]);
    let c = Config::load_with_env(root.join("config.example.yaml"), &env).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.agents[0].id, "default");
    assert_eq!(c.tools, vec![root.join("tools.toml")]);
    assert_eq!(c.approvers.len(), 2);
    assert_eq!(c.services["homeassistant"].health.path, "/api/");
    assert_eq!(c.services["homeassistant"].errors.len(), 2);
    assert!(c.gateway.tls.is_some());

    let p =
        PermissionsFile::load_with_env(root.join("permissions.example.yaml"), &no_env()).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.defaults.len(), 3);
    assert_eq!(p.rules.len(), 6);
    assert!(p.unknown_agents(&["default"]).is_empty());
}

#[test]
fn duplicate_keys_are_yaml_errors() {
    let yaml = format!("{MINIMAL}gateway:\n  port: 1\n  port: 2\n");
    let e = Config::parse(&yaml, "config.yaml", &no_env()).unwrap_err();
    assert!(matches!(e, ConfigError::Yaml { .. }), "{e:?}");
    assert!(e.to_string().contains("duplicate"), "{e}");
}

#[test]
fn connection_caps_have_defaults_and_can_be_set() {
    let c = load(MINIMAL);
    assert_eq!(c.gateway.max_unauthenticated_connections, 512);
    assert_eq!(c.gateway.max_unauthenticated_per_address, 128);
    assert_eq!(c.services["homeassistant"].max_connections, 32);
    let set = MINIMAL.replace(
        "    token: \"ha-token\"\n",
        "    token: \"ha-token\"\n    max_connections: 4\n",
    ) + "gateway:\n  max_unauthenticated_connections: 100\n  max_unauthenticated_per_address: 10\n";
    let c = load(&set);
    assert_eq!(c.gateway.max_unauthenticated_connections, 100);
    assert_eq!(c.gateway.max_unauthenticated_per_address, 10);
    assert_eq!(c.services["homeassistant"].max_connections, 4);
    let zero = MINIMAL.replace(
        "    token: \"ha-token\"\n",
        "    token: \"ha-token\"\n    max_connections: 0\n",
    ) + "gateway:\n  max_unauthenticated_per_address: 0\n";
    assert_eq!(
        errors(&zero),
        vec![
            "config.yaml: gateway.max_unauthenticated_per_address: expected an integer 1-1000000, got 0",
            "config.yaml: services.homeassistant.max_connections: expected an integer 1-100000, got 0",
        ]
    );
}

#[test]
fn a_health_port_on_the_agents_port_is_an_error() {
    for (host, health_host) in [
        ("127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),
        ("127.0.0.1", "localhost"),
    ] {
        let yaml = format!(
            "{MINIMAL}gateway:\n  host: {host}\n  port: 9000\n  health_host: {health_host}\n  health_port: 9000\n"
        );
        assert_eq!(
            errors(&yaml),
            vec![format!(
                "config.yaml: gateway.health_port: the HTTP side ({health_host}:9000) would listen on the agents' port ({host}:9000); give gateway.health_port another port"
            )]
        );
    }
    // Different hosts, neither a wildcard: both binds succeed.
    let yaml = format!(
        "{MINIMAL}gateway:\n  host: 127.0.0.2\n  port: 9000\n  health_host: 127.0.0.1\n  health_port: 9000\n"
    );
    assert_eq!(load(&yaml).gateway.health_port, 9000);
}

#[test]
fn mcp_defaults_and_settings() {
    let c = load(MINIMAL);
    assert!(c.mcp.enabled);
    assert_eq!(c.mcp.path, "/mcp");
    assert_eq!(c.mcp.hold, std::time::Duration::from_secs(50));
    assert!(c.mcp.allowed_hosts.iter().any(|h| h == "localhost"));
    assert!(
        c.mcp
            .allowed_origins
            .iter()
            .any(|o| o == "http://127.0.0.1:*")
    );
    let c = load(&format!(
        "{MINIMAL}gateway:\n  host: 192.168.1.10\nmcp:\n  enabled: false\n  path: /agents/mcp\n  hold_seconds: 20\n  allowed_origins: [\"https://app.example.com\"]\n"
    ));
    assert!(!c.mcp.enabled);
    assert_eq!(c.mcp.path, "/agents/mcp");
    assert_eq!(c.mcp.hold, std::time::Duration::from_secs(20));
    assert!(
        c.mcp.allowed_hosts.iter().any(|h| h == "192.168.1.10"),
        "a specific gateway.host is accepted as Host by default"
    );
    assert_eq!(c.mcp.allowed_origins, ["https://app.example.com"]);
}

#[test]
fn mcp_settings_that_cannot_work_are_refused_with_the_key() {
    let errors = errors(&format!(
        "{MINIMAL}mcp:\n  enabled: \"yes\"\n  path: mcp/\n  hold_seconds: 0\n  allowed_hosts: []\n  allowed_origins: [app.example.com]\n"
    ));
    let all = errors.join("\n");
    assert!(
        all.contains("mcp.enabled") && all.contains("true or false"),
        "{all}"
    );
    assert!(
        all.contains("mcp.path") && all.contains("\"/mcp\""),
        "{all}"
    );
    assert!(all.contains("mcp.hold_seconds"), "{all}");
    assert!(
        all.contains("mcp.allowed_hosts") && all.contains("DNS rebinding"),
        "{all}"
    );
    assert!(
        all.contains("mcp.allowed_origins[0]") && all.contains("https://app.example.com"),
        "{all}"
    );
}

#[test]
fn telegram_deny_reasons_default_configure_and_are_checked() {
    let tg = |c: &Config| match c.approvers.as_slice() {
        [ApproverConfig::Telegram(tg)] => tg.clone(),
        other => panic!("{other:?}"),
    };
    let base = "approvers:\n  - {type: telegram, token: bot, chat_id: 42, allowed_users: [7]";
    let c = load(&format!("{MINIMAL}{base}}}\n"));
    assert_eq!(tg(&c).deny_reasons, vec!["Not now", "Not safe"]);
    let c = load(&format!(
        "{MINIMAL}{base}, deny_reasons: [\"  Kids asleep \", Too late]}}\n"
    ));
    assert_eq!(tg(&c).deny_reasons, vec!["Kids asleep", "Too late"]);
    let c = load(&format!("{MINIMAL}{base}, deny_reasons: []}}\n"));
    assert!(tg(&c).deny_reasons.is_empty());
    let long = "x".repeat(41);
    let errs = errors(&format!(
        "{MINIMAL}{base}, deny_reasons: [a, b, c, d, e, \"\", {long}]}}\n"
    ));
    assert_eq!(
        errs,
        vec![
            "config.yaml: approvers[0].deny_reasons: at most 4 preset reasons fit under a message, got 7; keep the most useful ones",
            "config.yaml: approvers[0].deny_reasons[5]: a preset reason is 1–40 characters (a button label), got 0",
            "config.yaml: approvers[0].deny_reasons[6]: a preset reason is 1–40 characters (a button label), got 41",
        ]
    );
}

#[test]
fn web_grant_minutes_default_configure_and_are_checked() {
    let web = |c: &Config| match c.approvers.as_slice() {
        [ApproverConfig::Web(web)] => web.clone(),
        other => panic!("{other:?}"),
    };
    let minutes = |m: u64| std::time::Duration::from_secs(m * 60);
    let c = load(&format!("{MINIMAL}approvers:\n  - {{type: web}}\n"));
    assert_eq!(
        web(&c).grant_durations,
        vec![minutes(15), minutes(60), minutes(480)]
    );
    let c = load(&format!(
        "{MINIMAL}approvers:\n  - {{type: web, grant_minutes: [5, 120]}}\n"
    ));
    assert_eq!(web(&c).grant_durations, vec![minutes(5), minutes(120)]);
    let c = load(&format!(
        "{MINIMAL}approvers:\n  - {{type: web, grant_minutes: []}}\n"
    ));
    assert!(web(&c).grant_durations.is_empty());
    let errs = errors(&format!(
        "{MINIMAL}approvers:\n  - {{type: web, grant_minutes: [0, 10081, soon]}}\n"
    ));
    assert_eq!(errs.len(), 3, "{errs:?}");
    for (i, err) in errs.iter().enumerate() {
        assert!(
            err.starts_with(&format!("config.yaml: approvers[0].grant_minutes[{i}]: ")),
            "{errs:?}"
        );
    }
    let errs = errors(&format!(
        "{MINIMAL}approvers:\n  - {{type: web, grant_minutes: [1, 2, 3, 4, 5]}}\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("config.yaml: approvers[0].grant_minutes: at most 4"),
        "{errs:?}"
    );
}

#[test]
fn home_assistant_approver_defaults_to_the_homeassistant_service_and_checks_its_keys() {
    let phone = |c: &Config| match c.approvers.as_slice() {
        [ApproverConfig::HomeAssistant(ha)] => ha.clone(),
        other => panic!("{other:?}"),
    };
    let c = load(&format!(
        "{MINIMAL}approvers:\n  - {{type: home_assistant, devices: [pixel_7, notify.mobile_app_ipad], users: [u1]}}\n"
    ));
    let ha = phone(&c);
    assert_eq!(ha.name, "home_assistant");
    assert_eq!(ha.url, "http://ha.local:8123");
    assert_eq!(ha.token.expose(), "ha-token");
    assert_eq!(ha.devices, ["pixel_7", "ipad"]);
    assert_eq!(ha.users, ["u1"]);
    assert_eq!(ha.grant, Some(std::time::Duration::from_secs(3600)));
    let c = load(&format!(
        "{MINIMAL}approvers:\n  - {{type: home_assistant, name: phones, url: \"https://ha.example/\", token: other, devices: [pixel_7], users: [abc123], grant_minutes: [15]}}\n"
    ));
    let ha = phone(&c);
    assert_eq!(
        (ha.name.as_str(), ha.url.as_str(), ha.token.expose()),
        ("phones", "https://ha.example", "other")
    );
    assert_eq!(ha.users, ["abc123"]);
    assert_eq!(ha.grant, Some(std::time::Duration::from_secs(900)));
    let c = load(&format!(
        "{MINIMAL}approvers:\n  - {{type: home_assistant, devices: [pixel_7], users: [u1], grant_minutes: []}}\n"
    ));
    assert_eq!(phone(&c).grant, None);

    let no_service = "agents:\n  - id: default\n    token: \"a-long-enough-agent-token\"\napprovers:\n  - {type: home_assistant, devices: [pixel_7], users: [u1]}\n";
    let errs = errors(no_service);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("config.yaml: approvers[0].url: missing: give Home Assistant's URL")
            && errs[0].contains("services.homeassistant"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("config.yaml: approvers[0].token: missing: give a Home Assistant long-lived access token"),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "{MINIMAL}approvers:\n  - {{type: home_assistant, devices: [], users: [u1], grant_minutes: [15, 60], device: x}}\n"
    ));
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].contains("approvers[0].device: unknown key `device` (did you mean `devices`?)"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("config.yaml: approvers[0].devices: must list at least one phone"),
        "{errs:?}"
    );
    assert!(
        errs[2].starts_with(
            "config.yaml: approvers[0].grant_minutes: a phone notification has room for one"
        ),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "{MINIMAL}approvers:\n  - {{type: home_assistant}}\n  - {{type: home_asistant, devices: [Pixel 7]}}\n"
    ));
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].starts_with("config.yaml: approvers[0].devices: missing: list the phones"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with(
            "config.yaml: approvers[0].users: missing: list the Home Assistant user ids whose presses count"
        ) && errs[1].contains("any administrator token or automation"),
        "{errs:?}"
    );
    assert!(
        errs[2].contains("(did you mean `home_assistant`?)"),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "{MINIMAL}approvers:\n  - {{type: home_assistant, devices: [pixel_7], users: []}}\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "config.yaml: approvers[0].users: must not be empty: list the Home Assistant user ids"
        ),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "{MINIMAL}approvers:\n  - {{type: home_assistant, devices: [Pixel 7], users: [u1]}}\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(r#"config.yaml: approvers[0].devices[0]: invalid device "Pixel 7""#),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "{MINIMAL}approvers:\n  - {{type: home_assistant, devices: [b], users: [u1]}}\n  - {{type: home_assistant, devices: [a], users: [u1]}}\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("two `type: home_assistant` approvers are called \"home_assistant\""),
        "{errs:?}"
    );
    assert!(
        !format!(
            "{:?}",
            load(&format!(
                "{MINIMAL}approvers:\n  - {{type: home_assistant, devices: [a], users: [u1]}}\n"
            ))
        )
        .contains("ha-token")
    );
}

/// `printf %s kitchen-token-0123456789 | sha256sum`
const KITCHEN_SHA256: &str = "bcf5f0b4c9e6f37f77fc3311fbf01ce55963136bea9332e397b85229b9479b4b";

fn kitchen_sha256() -> String {
    let hex = TokenDigest::of("kitchen-token-0123456789").to_hex();
    assert_eq!(hex, KITCHEN_SHA256);
    hex
}

#[test]
fn token_sha256_and_rotation_forms_authenticate_by_digest() {
    let yaml = format!(
        r#"
agents:
  - id: kitchen
    token_sha256: "{kitchen}"
  - id: garden
    tokens:
      - token: "garden-old-token-0123456789"
      - sha256: "{new}"
  - id: upper
    token_sha256: "{upper}"
"#,
        kitchen = kitchen_sha256(),
        new = TokenDigest::of("garden-new-token-0123456789").to_hex(),
        upper = TokenDigest::of("upper-token-0123456789")
            .to_hex()
            .to_uppercase(),
    );
    let c = load(&yaml);
    let id = |token: &str| c.agent_by_token(token).map(|a| a.id.clone());
    assert_eq!(id("kitchen-token-0123456789").as_deref(), Some("kitchen"));
    assert_eq!(id("garden-old-token-0123456789").as_deref(), Some("garden"));
    assert_eq!(id("garden-new-token-0123456789").as_deref(), Some("garden"));
    assert_eq!(id("upper-token-0123456789").as_deref(), Some("upper"));
    // The digest itself is not a token.
    assert_eq!(id(&kitchen_sha256()), None);
    assert_eq!(id("kitchen-token-012345678"), None);
    assert_eq!(id(""), None);
    assert_eq!(c.agent("garden").unwrap().tokens.len(), 2);
    assert!(
        c.warnings.iter().all(|w| !w.key.starts_with("agents")),
        "{:?}",
        c.warnings
    );
    // Nothing of a token shows in the config's Debug output.
    let debug = format!("{c:?}");
    assert!(
        !debug.contains(&kitchen_sha256()) && !debug.contains("garden-old"),
        "{debug}"
    );

    // The upstream single agent takes the digest form too.
    let upstream = format!("agent:\n  token_sha256: \"{}\"\n", kitchen_sha256());
    assert_eq!(
        load(&upstream)
            .agent_by_token("kitchen-token-0123456789")
            .unwrap()
            .id,
        "default"
    );
    // And `${VAR}` works in it, as everywhere.
    let from_env = "agents:\n  - {id: a, token_sha256: \"${DIGEST}\"}\n";
    let env = env_of(&[("DIGEST", KITCHEN_SHA256)]);
    let c = Config::parse(from_env, "config.yaml", &env).unwrap();
    assert_eq!(
        c.agents[0].tokens,
        vec![TokenDigest::from_hex(KITCHEN_SHA256).unwrap()]
    );
}

#[test]
fn token_form_mistakes_name_the_agent_the_key_and_the_fix() {
    let yaml = format!(
        r#"
agents:
  - id: short
    token_sha256: "abc123"
  - id: nothex
    token_sha256: "{nothex}"
  - id: pasted
    token_sha256: "agt_{pasted}"
  - id: none
  - id: both
    token: "both-token-0123456789"
    token_sha256: "{kitchen}"
  - id: list
    tokens:
      - "a-bare-token-string-0123456789"
      - {{token: "list-token-0123456789", sha256: "{kitchen}"}}
      - {{}}
      - {{sha256: "12"}}
  - id: empty
    tokens: []
  - id: kitchen
    token_sha256: "{kitchen}"
  - id: twin
    token: "kitchen-token-0123456789"
  - id: twice
    tokens:
      - token: "twice-token-0123456789"
      - sha256: "{twice}"
"#,
        nothex = "g".repeat(64),
        pasted = "0".repeat(64),
        kitchen = kitchen_sha256(),
        twice = TokenDigest::of("twice-token-0123456789").to_hex(),
    );
    let errs = errors(&yaml);
    let fix = |id: &str| {
        format!(
            "`agent-gate token new --agent {id}` prints a new token and its digest, `printf %s \"$TOKEN\" | sha256sum` the digest of an existing one"
        )
    };
    assert_eq!(
        errs,
        vec![
            format!(r#"config.yaml: agents[0].token_sha256: expected the SHA-256 of agent "short"'s token as 64 hex digits, got 6 characters instead of 64; {}"#, fix("short")),
            format!(r#"config.yaml: agents[1].token_sha256: expected the SHA-256 of agent "nothex"'s token as 64 hex digits, got a character that is not a hex digit (0-9, a-f); {}"#, fix("nothex")),
            format!(r#"config.yaml: agents[2].token_sha256: expected the SHA-256 of agent "pasted"'s token as 64 hex digits, got 68 characters instead of 64 (this looks like the token itself: give the token as `token:`, or its digest here); {}"#, fix("pasted")),
            r#"config.yaml: agents[3]: agent "none" has no token: add `token: "${AGENT_TOKEN}"`, or `token_sha256:` (run `agent-gate token new --agent none` for a token and that line), or `tokens:` (a list of {token: ...} or {sha256: ...}) to accept several while rotating"#.to_owned(),
            r#"config.yaml: agents[4]: agent "both" gives `token` and `token_sha256`; give only one (to accept several tokens while rotating, list each under `tokens:` as {token: ...} or {sha256: ...})"#.to_owned(),
            "config.yaml: agents[5].tokens[0]: expected a mapping {token: ...} or {sha256: ...}, got a string; write `- token: ...` (or `- sha256: ...` for a digest)".to_owned(),
            "config.yaml: agents[5].tokens[1]: gives both `token` and `sha256`; one entry is one token: put each in an entry of its own".to_owned(),
            "config.yaml: agents[5].tokens[2]: expected a mapping {token: ...} or {sha256: ...} (`agent-gate token new --agent list` prints a new one)".to_owned(),
            format!(r#"config.yaml: agents[5].tokens[3].sha256: expected the SHA-256 of agent "list"'s token as 64 hex digits, got 2 characters instead of 64; {}"#, fix("list")),
            "config.yaml: agents[6].tokens: expected at least one entry, each a mapping {token: ...} or {sha256: ...}".to_owned(),
            "config.yaml: agents[8].token: the same token as agents[7].token_sha256; every agent needs its own token (the token identifies the agent)".to_owned(),
            "config.yaml: agents[9].tokens[1].sha256: the same token as agents[9].tokens[0].token; an agent's tokens must differ, remove one of them".to_owned(),
        ]
    );
    for e in &errs {
        assert!(
            !e.contains("a-bare-token")
                && !e.contains(&kitchen_sha256())
                && !e.contains("abc123")
                && !e.contains("gggg"),
            "{e}"
        );
    }
}

#[test]
fn gateway_admin_token_is_an_optional_secret_from_the_environment() {
    const AGENTS: &str = "agents:\n  - id: pi\n    token: \"pi-token-0123456789abcdef\"\n";
    assert_eq!(load(AGENTS).gateway.admin_token, None);
    let yaml = format!("gateway:\n  admin_token: \"${{ADMIN}}\"\n{AGENTS}");
    let env = env_of(&[("ADMIN", "admin-token-0123456789abcdef")]);
    let config = Config::parse(&yaml, "config.yaml", &env).unwrap();
    let token = config.gateway.admin_token.as_ref().expect("set");
    assert_eq!(token.expose(), "admin-token-0123456789abcdef");
    assert!(!format!("{config:?}").contains("admin-token-0123456789abcdef"));
    // Unset or empty: an error naming the key, never a silently open endpoint.
    let unset = errors(&yaml);
    assert!(
        unset
            .iter()
            .any(|e| e.contains("gateway.admin_token") && e.contains("ADMIN")),
        "{unset:?}"
    );
    let empty = errors(&format!("gateway:\n  admin_token: \"\"\n{AGENTS}"));
    assert!(
        empty.iter().any(|e| e.contains("gateway.admin_token")),
        "{empty:?}"
    );
    // Short: a warning.
    let short = load(&format!("gateway:\n  admin_token: \"short\"\n{AGENTS}"));
    assert!(
        short
            .warnings
            .iter()
            .any(|w| w.key == "gateway.admin_token"),
        "{:?}",
        short.warnings
    );
    // The outline (healthcheck, approve-link) needs no admin token variable and hands out
    // none; reload's outline resolves it.
    let outline = agent_gate_gateway::config::ConfigOutline::parse(&yaml, "config.yaml", &no_env())
        .expect("the outline does not resolve gateway.admin_token");
    assert_eq!(outline.gateway.admin_token, None);
}
