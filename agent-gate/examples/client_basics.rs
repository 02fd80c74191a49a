//! Client basics: connect from the environment, discover tools, make calls,
//! handle every kind of error with `match`, follow an approval with the
//! streaming variant, and close cleanly.
//!
//! ```sh
//! AGENT_GATE_URL=wss://gateway.local:8443 AGENT_GATE_TOKEN=... \
//! AGENT_GATE_CA_CERT=/path/to/gateway-ca.pem \
//!     cargo run -p agent-gate --example client_basics
//! ```

use std::time::Duration;

use agent_gate::{AgentGateClient, CallEvent, CallOptions, DeniedBy, Error, ErrorKind};
use futures_util::StreamExt;
use serde_json::json;

/// What an agent might do with each kind of failure.
fn explain(error: &Error) -> String {
    match error.kind() {
        ErrorKind::Denied {
            by: DeniedBy::Human,
        } => format!("the approver said no: {}", error.message()),
        ErrorKind::Denied {
            by: DeniedBy::Policy,
        } => format!("a policy rule forbids this: {}", error.message()),
        ErrorKind::Timeout => "nobody decided in time; try again later".to_owned(),
        ErrorKind::RateLimited { retry_after } => {
            format!("slow down (retry after {retry_after:?})")
        }
        ErrorKind::UnknownTool => format!(
            "no such tool; nearest: {}",
            error
                .available_tools()
                .first()
                .map_or("none", String::as_str)
        ),
        ErrorKind::Validation => format!("bad arguments: {error}"),
        ErrorKind::Execution => format!("the service failed: {error}"),
        ErrorKind::Connection | ErrorKind::Authentication | ErrorKind::Protocol => {
            format!("gateway problem: {error}")
        }
        _ => error.to_string(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // Explicit settings > AGENT_GATE_* environment variables > defaults.
    let client = AgentGateClient::builder()
        .max_retries(Some(5))
        .request_timeout(Duration::from_secs(15 * 60 + 30))
        .connect()
        .await?;

    // Watch the connection state in the background (a hook for logs/metrics).
    let mut states = client.subscribe();
    tokio::spawn(async move {
        while let Ok(state) = states.recv().await {
            eprintln!("connection: {state:?}");
        }
    });

    for tool in client.list_tools().await? {
        println!("{:<24} {}", tool.name, tool.description);
    }

    // A plain call returns the tool's data.
    match client
        .tool_request("ha_get_state", json!({"entity_id": "sun.sun"}))
        .await
    {
        Ok(state) => println!("sun: {}", state["state"]),
        Err(e) => println!("{}", explain(&e)),
    }

    // A typo: the error lists the gateway's tools, nearest first.
    if let Err(e) = client.tool_request("ha_get_stat", json!({})).await {
        println!("{}", explain(&e));
    }

    // A call that may need a human: follow it as a stream of events.
    let mut events = client.tool_request_stream(
        "ha_call_service",
        json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom"}),
        CallOptions::new().timeout(Duration::from_secs(120)),
    );
    while let Some(event) = events.next().await {
        match event {
            CallEvent::AwaitingApproval { expires_at, .. } => {
                println!("waiting for a human (until {expires_at:?})")
            }
            CallEvent::Result(data) => println!("done: {data}"),
            CallEvent::Error(e) => println!("{}", explain(&e)),
            other => println!("{other:?}"),
        }
    }

    // Results decided while we were offline (also fetched automatically after
    // a reconnection).
    for result in client.get_pending_results().await? {
        println!(
            "pending result for {}: {:?}",
            result.request_id,
            result.outcome()
        );
    }

    // Close explicitly (dropping the last clone also closes the connection).
    client.close().await;
    Ok(())
}
