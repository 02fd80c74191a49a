//! A gateway killed with SIGKILL while a request waits for a human: the real binary
//! (`agent-gate serve`) from config files in a temp dir, pointing at the in-process simulated
//! Home Assistant and Telegram Bot API. After the restart the old approval message still
//! works, the SDK client reconnects and re-attaches to its request by `request_id`, and the
//! call runs exactly once.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agent_gate::{CallEvent, CallOptions};
use futures_util::StreamExt;
use support::{PI_TOKEN, World, client, light_on};
use tokio::sync::oneshot;

/// The gateway process; killed when dropped (a failing test leaves nothing running).
struct GatewayProcess {
    child: Child,
}

impl GatewayProcess {
    /// Starts `agent-gate serve --insecure` on the world's files and waits for its "ready"
    /// log line.
    async fn start(world: &World) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agent-gate-e2e-gateway"))
            .arg("serve")
            .arg("--insecure")
            .arg("--config")
            .arg(world.config_path())
            .arg("--permissions")
            .arg(world.permissions_path())
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gateway binary starts");
        let stderr = child.stderr.take().unwrap();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("\"ready\"")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(Ok(()));
                }
                if ready.is_some() {
                    seen.push(line);
                }
            }
            if let Some(tx) = ready.take() {
                let _ = tx.send(Err(seen.join("\n")));
            }
        });
        match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
            Ok(Ok(Ok(()))) => Self { child },
            Ok(Ok(Err(log))) => panic!("the gateway exited before it was ready:\n{log}"),
            other => panic!("the gateway did not become ready: {other:?}"),
        }
    }

    /// SIGKILL: no shutdown code runs.
    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_gateway_killed_while_a_request_is_pending_resumes_it_and_runs_it_once() {
    let world = World::new().await;
    let (port, health_port) = (free_port(), free_port());
    world.write_files(port, health_port, 120);
    let mut gateway = GatewayProcess::start(&world).await;

    let pi = client(&format!("ws://127.0.0.1:{port}"), PI_TOKEN).await;
    let mut events = pi.tool_request_stream(
        "ha_call_service",
        light_on("light.bedroom"),
        CallOptions::new().request_id("restart-1"),
    );
    assert!(matches!(
        events.next().await,
        Some(CallEvent::AwaitingApproval { .. })
    ));
    let message = world.telegram.wait_for_sent(1).await;

    gateway.kill_9();
    let mut gateway = GatewayProcess::start(&world).await;

    // The button of the message sent by the killed process decides the resumed request.
    world.press(1, "✅ Allow").await;
    // After the reconnection the gateway may report the request as awaiting approval again
    // (it re-attached); the result follows.
    let last = async {
        loop {
            match events.next().await {
                Some(CallEvent::AwaitingApproval { .. }) => continue,
                other => break other,
            }
        }
    };
    let event = tokio::time::timeout(Duration::from_secs(30), last)
        .await
        .expect("the result arrives");
    let Some(CallEvent::Result(data)) = event else {
        panic!("expected the result, got {event:?}");
    };
    assert!(data.to_string().contains("light.bedroom"), "{data}");
    assert!(pi.reconnect_count() >= 1);
    assert_eq!(world.home.state("light.bedroom").unwrap()["state"], "on");
    assert_eq!(world.home.service_call_count(), 1, "executed exactly once");
    // The killed process may have died before it recorded the message it had sent; the new
    // one then announces the request again. Either message decides it, once.
    let sent = world.telegram.sent();
    assert!(sent.len() <= 2, "{sent:?}");
    assert!(sent.iter().all(|m| m.text.contains("light.bedroom")));
    assert_eq!(message.message_id, sent[0].message_id);

    // The same request id again: the stored outcome, not a second execution.
    let again = pi
        .tool_request_with(
            "ha_call_service",
            light_on("light.bedroom"),
            CallOptions::new().request_id("restart-1"),
        )
        .await
        .unwrap();
    assert!(again.to_string().contains("light.bedroom"));
    assert_eq!(world.home.service_call_count(), 1);

    pi.close().await;
    gateway.kill_9();
}
