//! Quickstart: the typed Home Assistant methods against `agent-gate demo`, showing the
//! three things a policy can say: allow (a read), deny (a lock) and ask (a light, which
//! waits until you press Allow or Deny on the demo's approval page).
//!
//! ```sh
//! agent-gate demo                                   # in one terminal
//! cargo run -p agent-gate --example quickstart      # in another
//! ```
//!
//! Settings (defaults fit the demo): `AGENT_GATE_URL` (`ws://127.0.0.1:8443`),
//! `AGENT_GATE_TOKEN` (the demo token), `AGENT_GATE_APPROVALS_URL`
//! (`http://127.0.0.1:8080/approvals`, only printed).

use agent_gate::DeniedBy;
use agent_gate::prelude::*;

/// The demo's fixed agent token (`agent-gate demo` prints it too).
const DEMO_TOKEN: &str = "agent-gate-demo-token";

fn setting(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let url = setting("AGENT_GATE_URL", "ws://127.0.0.1:8443");
    let token = setting("AGENT_GATE_TOKEN", DEMO_TOKEN);
    let approvals = setting(
        "AGENT_GATE_APPROVALS_URL",
        "http://127.0.0.1:8080/approvals",
    );

    println!("connecting to {url}");
    let gw = AgentGateClient::builder()
        .url(url)
        .token(token)
        .max_retries(Some(2))
        .connect()
        .await?;

    // 1. Allowed: reads run at once.
    let temperature: State = gw.ha_get_state("sensor.living_room_temperature").await?;
    let unit = temperature
        .attributes
        .get("unit_of_measurement")
        .and_then(|u| u.as_str())
        .unwrap_or("");
    println!(
        "allow: {} is {}{unit}",
        temperature.entity_id, temperature.state
    );

    // 2. Denied: the policy never lets agents operate locks.
    match gw
        .ha_call_service("lock", "unlock")
        .entity_id("lock.front_door")
        .await
    {
        Ok(_) => println!("deny: unexpectedly, the front door was unlocked"),
        Err(e)
            if e.kind()
                == &(ErrorKind::Denied {
                    by: DeniedBy::Policy,
                }) =>
        {
            println!(
                "deny: unlocking the front door was refused: {}",
                e.message()
            );
        }
        Err(e) => return Err(e),
    }

    // 3. Ask: a human decides. The call waits (up to the gateway's approval timeout).
    println!(
        "ask: turning on light.bedroom needs a human: waiting for approval at {approvals} (press Allow or Deny)"
    );
    match gw
        .ha_call_service("light", "turn_on")
        .entity_id("light.bedroom")
        .data(serde_json::json!({"brightness": 200}))
        .await
    {
        Ok(_) => {
            let light: State = gw.ha_get_state("light.bedroom").await?;
            println!("ask: approved; light.bedroom is now {}", light.state);
        }
        Err(e) if e.is_denied() => println!("ask: denied by the approver: {}", e.message()),
        Err(e) if e.is_timeout() => println!("ask: nobody decided in time"),
        Err(e) => return Err(e),
    }

    gw.close().await;
    Ok(())
}
