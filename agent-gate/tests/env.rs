//! Configuration precedence: explicit values > AGENT_GATE_* environment
//! variables > defaults. Its own test binary with one test, because it changes
//! the process environment.

use agent_gate::AgentGateClient;
use agent_gate::client::{DEFAULT_URL, ENV_CA_CERT, ENV_TOKEN, ENV_URL};

#[test]
fn explicit_beats_environment_beats_defaults() {
    // SAFETY: this binary runs this single test; no other thread reads the
    // environment concurrently.
    unsafe {
        std::env::remove_var(ENV_URL);
        std::env::remove_var(ENV_TOKEN);
        std::env::remove_var(ENV_CA_CERT);
    }
    // Nothing set: the default URL, and a missing token is a clear error.
    let err = AgentGateClient::builder().build_config().unwrap_err();
    assert!(err.to_string().contains(ENV_TOKEN), "{err}");
    let cfg = AgentGateClient::builder()
        .token("t")
        .build_config()
        .unwrap();
    assert_eq!(cfg.url(), DEFAULT_URL);

    unsafe {
        std::env::set_var(ENV_URL, "ws://from-env:1234");
        std::env::set_var(ENV_TOKEN, "env-secret-token");
    }
    // Environment fills in what is not given.
    let cfg = AgentGateClient::builder().build_config().unwrap();
    assert_eq!(cfg.url(), "ws://from-env:1234");
    assert!(!format!("{cfg:?}").contains("env-secret-token"));
    // Explicit values win.
    let cfg = AgentGateClient::builder()
        .url("ws://explicit:1")
        .build_config()
        .unwrap();
    assert_eq!(cfg.url(), "ws://explicit:1");
    // ignore_env() uses only explicit values and defaults.
    let err = AgentGateClient::builder()
        .ignore_env()
        .build_config()
        .unwrap_err();
    assert!(err.message().contains("no agent token"), "{err}");

    // A CA file from the environment is read (and a bad path is reported).
    unsafe {
        std::env::set_var(ENV_CA_CERT, "/nonexistent/agent-gate-ca.pem");
    }
    let err = AgentGateClient::builder().build_config().unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/agent-gate-ca.pem"),
        "{err}"
    );
    unsafe {
        std::env::remove_var(ENV_URL);
        std::env::remove_var(ENV_TOKEN);
        std::env::remove_var(ENV_CA_CERT);
    }
}
