//! A gateway killed mid-approval (its runtime dropped, no shutdown) loses nothing it
//! acknowledged: the executed call and the pending approval are in the store, and the
//! approval still works after the next start.

#[path = "server_support/mod.rs"]
mod support;

use std::sync::Arc;

use agent_gate_gateway::app::Gateway;
use agent_gate_gateway::approvals::{ChannelApprover, DecideOutcome};
use agent_gate_gateway::store::{RequestKey, RequestState, Store};
use agent_gate_sim::home_assistant::{DEFAULT_TOKEN, HomeAssistant};
use serde_json::json;
use support::{Client, Options, PI_TOKEN, load_config, load_policy, manifest};

#[test]
fn a_killed_gateway_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();

    // First life: one call executed, one approval pending, then the runtime is dropped.
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let executed_rid = first.block_on(async {
        let home = HomeAssistant::demo(DEFAULT_TOKEN);
        let (ha, server) = home.spawn("127.0.0.1:0").await.unwrap();
        std::mem::forget(server);
        let approver = Arc::new(ChannelApprover::new("test"));
        let gateway = Gateway::builder(
            load_config(&path, ha, &Options::default()),
            load_policy(&path),
            manifest(),
        )
        .approver(approver.clone())
        .insecure(true)
        .start()
        .await
        .unwrap();
        let mut agent = Client::connect(&gateway.ws_url()).await;
        agent.call("auth", json!({"token": PI_TOKEN})).await;
        let executed = agent
            .tool("ha_get_state", json!({"entity_id": "light.kitchen"}))
            .await;
        assert_eq!(executed["result"]["status"], "executed");
        agent
            .tool_with_id(
                "ha_call_service",
                json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom"}),
                "pending-at-crash",
            )
            .await;
        // The agent was told it waits for approval: acknowledged.
        assert_eq!(
            agent.notification().await["params"]["request_id"],
            "pending-at-crash"
        );
        approver.next_request().await.unwrap();
        std::mem::forget(gateway);
        executed["result"]["request_id"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    // Kill: every task is dropped where it stands; no shutdown, no flush.
    first.shutdown_background();

    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let store = Store::open(path.join("agent-gate.db")).await.unwrap();
        let executed = store
            .get_request("pi", executed_rid.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(executed.state, RequestState::Executed);
        assert_eq!(executed.result.unwrap()["entity_id"], "light.kitchen");
        let pending = store
            .get_request("pi", "pending-at-crash")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pending.state, RequestState::Pending);
        store.close().await.unwrap();

        // Next life: the approval still works and executes once.
        let home = HomeAssistant::demo(DEFAULT_TOKEN);
        let (ha, _server) = home.spawn("127.0.0.1:0").await.unwrap();
        let approver = Arc::new(ChannelApprover::new("test"));
        let gateway = Gateway::builder(
            load_config(&path, ha, &Options::default()),
            load_policy(&path),
            manifest(),
        )
        .approver(approver.clone())
        .insecure(true)
        .start()
        .await
        .unwrap();
        assert_eq!(
            approver
                .approve(RequestKey::new("pi", "pending-at-crash"), "alice")
                .await,
            DecideOutcome::Won
        );
        approver.next_resolution().await.unwrap();
        let mut agent = Client::connect(&gateway.ws_url()).await;
        agent.call("auth", json!({"token": PI_TOKEN})).await;
        let id = agent
            .tool_with_id(
                "ha_call_service",
                json!({"domain": "light", "service": "turn_on", "entity_id": "light.bedroom"}),
                "pending-at-crash",
            )
            .await;
        assert_eq!(agent.response(id).await["result"]["status"], "executed");
        assert_eq!(home.service_call_count(), 1);
        gateway.shutdown().await.unwrap();
    });
}
