//! The request flows end to end: the SDK client over a real WebSocket, the gateway (from
//! config files), the simulated Home Assistant, and the Telegram bot talking to the simulated
//! Bot API, where the tests press the buttons as a human would.

mod support;

use std::time::Duration;

use agent_gate::client::DEFAULT_REQUEST_TIMEOUT;
use agent_gate::{APPROVAL_DEADLINE_MARGIN, CallEvent, CallOptions, DeniedBy, ErrorKind};
use futures_util::StreamExt;
use serde_json::json;
use support::{LAPTOP_TOKEN, PI_TOKEN, Proxy, World, client, light_on, wait_until};
use tokio::time::Instant;

#[tokio::test]
async fn an_allowed_read_runs_at_once() {
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(60)).await;
    let pi = client(&gateway.ws_url(), PI_TOKEN).await;
    let state = pi
        .tool_request("ha_get_state", json!({"entity_id": "lock.front_door"}))
        .await
        .unwrap();
    assert_eq!(state["state"], "locked");
    let states = pi.tool_request("ha_get_states", json!({})).await.unwrap();
    assert!(states.to_string().contains("sensor.outdoor_humidity"));
    assert!(world.telegram.sent().is_empty(), "nobody was asked");
    pi.close().await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_policy_denial_never_reaches_home_assistant() {
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(60)).await;
    let pi = client(&gateway.ws_url(), PI_TOKEN).await;
    let error = pi
        .tool_request(
            "ha_call_service",
            json!({"domain": "lock", "service": "unlock", "entity_id": "lock.front_door"}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.kind(),
        &ErrorKind::Denied {
            by: DeniedBy::Policy
        }
    );
    assert_eq!(error.code().map(|c| c.code()), Some(-32003));
    assert_eq!(world.home.service_call_count(), 0);
    assert!(world.telegram.sent().is_empty());
    pi.close().await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn ask_then_allow_on_telegram_runs_the_call_once() {
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(60)).await;
    let pi = client(&gateway.ws_url(), PI_TOKEN).await;
    let mut events = pi.tool_request_stream(
        "ha_call_service",
        light_on("light.bedroom"),
        CallOptions::new().request_id("bedroom-1"),
    );
    let Some(CallEvent::AwaitingApproval { request_id, .. }) = events.next().await else {
        panic!("expected awaiting_approval first");
    };
    assert_eq!(request_id, "bedroom-1");
    let message = world.press(1, "✅ Allow").await;
    assert!(message.text.contains("light.bedroom"), "{}", message.text);
    let Some(CallEvent::Result(data)) = events.next().await else {
        panic!("expected the result");
    };
    assert!(data.to_string().contains("light.bedroom"), "{data}");
    assert_eq!(world.home.state("light.bedroom").unwrap()["state"], "on");
    assert_eq!(world.home.service_call_count(), 1);
    pi.close().await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn ask_then_deny_on_telegram() {
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(60)).await;
    let pi = client(&gateway.ws_url(), PI_TOKEN).await;
    let call = pi.tool_request("ha_call_service", light_on("light.kitchen"));
    let (result, _) = tokio::join!(call, world.press(1, "❌ Deny"));
    let error = result.unwrap_err();
    assert_eq!(
        error.kind(),
        &ErrorKind::Denied {
            by: DeniedBy::Human
        }
    );
    assert_eq!(error.code().map(|c| c.code()), Some(-32001));
    assert_eq!(world.home.service_call_count(), 0);
    assert_eq!(world.home.state("light.kitchen").unwrap()["state"], "off");
    pi.close().await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn ask_then_nobody_answers_in_time() {
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_millis(300)).await;
    let pi = client(&gateway.ws_url(), PI_TOKEN).await;
    let error = pi
        .tool_request("ha_call_service", light_on("light.bedroom"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::Timeout);
    assert_eq!(error.code().map(|c| c.code()), Some(-32002));
    assert_eq!(world.home.service_call_count(), 0);
    // The approval message was sent, and is edited to say so: its buttons are gone.
    let message = world.telegram.wait_for_sent(1).await;
    assert!(message.callback_data("✅ Allow").is_some());
    let edited = world.telegram.wait_for_edit(message.message_id, 1).await;
    assert!(edited.buttons.is_empty(), "{edited:?}");
    assert_eq!(world.home.service_call_count(), 0);
    pi.close().await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_timeout_of_its_own_a_call_ends_with_the_gateways_approval_timeout() {
    // The SDK's deadline follows the gateway's `expires_at`: the call ends with the gateway's
    // -32002, not with a client-side timeout, and the deadline it computed is the gateway's
    // expiry (2 s) plus the margin, far inside the default request timeout.
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(2)).await;
    let pi = client(&gateway.ws_url(), PI_TOKEN).await;
    let mut events = pi.tool_request_stream(
        "ha_call_service",
        light_on("light.bedroom"),
        CallOptions::new().request_id("short-approval-1"),
    );
    let Some(CallEvent::AwaitingApproval { expires_at, .. }) = events.next().await else {
        panic!("expected awaiting_approval first");
    };
    assert!(expires_at.is_some());
    let deadline = events.deadline().expect("the call has started");
    assert!(
        deadline <= Instant::now() + Duration::from_secs(2) + APPROVAL_DEADLINE_MARGIN,
        "the deadline follows expires_at"
    );
    let Some(CallEvent::Error(error)) = events.next().await else {
        panic!("expected the gateway's timeout");
    };
    assert_eq!(error.kind(), &ErrorKind::Timeout);
    assert_eq!(error.code().map(|c| c.code()), Some(-32002), "{error}");
    // The plain call, too.
    let error = pi
        .tool_request("ha_call_service", light_on("light.kitchen"))
        .await
        .unwrap_err();
    assert_eq!(error.code().map(|c| c.code()), Some(-32002), "{error}");
    assert_eq!(world.home.service_call_count(), 0);
    pi.close().await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_call_waits_as_long_as_the_gateways_approval_timeout_even_past_the_default() {
    // An approval timeout of two hours, longer than DEFAULT_REQUEST_TIMEOUT: the call's
    // deadline moves past it to the gateway's expiry; an explicit timeout stays as given.
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(2 * 3600)).await;
    let pi = client(&gateway.ws_url(), PI_TOKEN).await;
    let mut events = pi.tool_request_stream(
        "ha_call_service",
        light_on("light.bedroom"),
        CallOptions::new().request_id("long-approval-1"),
    );
    let Some(CallEvent::AwaitingApproval { .. }) = events.next().await else {
        panic!("expected awaiting_approval first");
    };
    let deadline = events.deadline().expect("the call has started");
    assert!(
        deadline > Instant::now() + DEFAULT_REQUEST_TIMEOUT,
        "the deadline follows the gateway's expiry past the default timeout"
    );
    world.press(1, "✅ Allow").await;
    let Some(CallEvent::Result(data)) = events.next().await else {
        panic!("expected the result");
    };
    assert!(data.to_string().contains("light.bedroom"), "{data}");
    let mut explicit = pi.tool_request_stream(
        "ha_call_service",
        light_on("light.kitchen"),
        CallOptions::new()
            .request_id("explicit-1")
            .timeout(Duration::from_secs(60)),
    );
    let Some(CallEvent::AwaitingApproval { .. }) = explicit.next().await else {
        panic!("expected awaiting_approval first");
    };
    let explicit_deadline = explicit.deadline().expect("the call has started");
    assert!(
        explicit_deadline <= Instant::now() + Duration::from_secs(60),
        "an explicit timeout is not extended"
    );
    drop(explicit);
    pi.close().await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_result_decided_while_the_agent_is_offline_arrives_after_it_reconnects() {
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(60)).await;
    let proxy = Proxy::start(gateway.ws_addr()).await;
    let pi = client(&proxy.url(), PI_TOKEN).await;
    let mut events = pi.tool_request_stream(
        "ha_call_service",
        light_on("light.bedroom"),
        CallOptions::new().request_id("offline-1"),
    );
    assert!(matches!(
        events.next().await,
        Some(CallEvent::AwaitingApproval { .. })
    ));
    // The network goes away; the gateway sees the agent leave.
    proxy.cut();
    wait_until("the gateway sees the agent gone", || {
        gateway.connected_agents() == 0
    })
    .await;
    // The human approves meanwhile: the call runs and its result is kept for the agent.
    world.press(1, "✅ Allow").await;
    wait_until("the light is on", || {
        world.home.state("light.bedroom").unwrap()["state"] == "on"
    })
    .await;
    // The network comes back: the SDK reconnects and the waiting call gets its result.
    proxy.restore();
    let event = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("the result arrives after the reconnection");
    let Some(CallEvent::Result(data)) = event else {
        panic!("expected the result, got {event:?}");
    };
    assert!(data.to_string().contains("light.bedroom"), "{data}");
    assert!(pi.reconnect_count() >= 1);
    assert_eq!(world.home.service_call_count(), 1, "executed exactly once");
    // Delivered: nothing is left to fetch.
    assert!(pi.get_pending_results().await.unwrap().is_empty());
    pi.close().await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_agents_get_their_own_rules() {
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(60)).await;
    let pi = client(&gateway.ws_url(), PI_TOKEN).await;
    let laptop = client(&gateway.ws_url(), LAPTOP_TOKEN).await;
    let coffee =
        json!({"domain": "switch", "service": "turn_on", "entity_id": "switch.coffee_maker"});
    let history = json!({"entity_id": "sensor.living_room_temperature"});

    // The laptop may make coffee at once and read history.
    laptop
        .tool_request("ha_call_service", coffee.clone())
        .await
        .unwrap();
    assert_eq!(
        world.home.state("switch.coffee_maker").unwrap()["state"],
        "on"
    );
    laptop
        .tool_request("ha_get_history", history.clone())
        .await
        .unwrap();

    // The pi may not read history, and its coffee needs a human (who says no).
    let error = pi
        .tool_request("ha_get_history", history)
        .await
        .unwrap_err();
    assert!(error.is_denied(), "{error:?}");
    let (result, _) = tokio::join!(
        pi.tool_request("ha_call_service", coffee),
        world.press(1, "❌ Deny")
    );
    assert_eq!(
        result.unwrap_err().kind(),
        &ErrorKind::Denied {
            by: DeniedBy::Human
        }
    );
    assert_eq!(
        world.home.service_call_count(),
        1,
        "only the laptop's coffee ran"
    );
    pi.close().await;
    laptop.close().await;
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn errors_say_which_rule_denied_and_how_a_call_failed() {
    let world = World::new().await;
    let gateway = world.gateway(Duration::from_secs(60)).await;
    let pi = client(&gateway.ws_url(), PI_TOKEN).await;
    let denied = pi
        .tool_request(
            "ha_call_service",
            json!({"domain": "lock", "service": "unlock", "entity_id": ["lock.front_door"]}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        denied.message(),
        "Denied by policy: Locks are never operated by agents"
    );
    assert_eq!(denied.rule(), Some("ha_call_service(lock.*)"));
    let failed = pi
        .tool_request("ha_get_state", json!({"entity_id": "sensor.nowhere"}))
        .await
        .unwrap_err();
    assert_eq!(failed.kind(), &ErrorKind::Execution);
    let failure = failed
        .execution_failure()
        .expect("the gateway says how it failed");
    assert_eq!(failure.kind, "http");
    assert_eq!(failure.status, Some(404));
    assert!(!failure.may_have_executed);
    assert_eq!(
        failure.service_message.as_deref(),
        Some("Entity not found.")
    );
    pi.close().await;
    gateway.shutdown().await.unwrap();
}

/// More calls outstanding after a reconnection than the gateway lets one connection have in
/// flight (256): the SDK re-sends them paced, so none is refused with -32006 and every one
/// gets its human decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reconnection_the_sdk_resends_no_more_than_the_gateways_in_flight_cap() {
    use std::sync::Arc;

    use agent_gate_gateway::app::Gateway;
    use agent_gate_gateway::approvals::ChannelApprover;
    use agent_gate_gateway::config::Config;
    use agent_gate_gateway::policy::Policy;

    const BEFORE: usize = 200;
    const DURING: usize = 100;
    let world = World::new().await;
    world.write_files(1, 2, 900);
    let mut config = Config::load(world.config_path()).unwrap();
    config.gateway.port = 0;
    config.gateway.health_port = 0;
    config.approvers.clear();
    config.rate_limit.max_pending_approvals = 1000;
    let policy = Policy::load(world.permissions_path()).unwrap();
    let manifest = agent_gate_manifest::Manifest::load(&config.tools)
        .unwrap()
        .manifest;
    let approver = Arc::new(ChannelApprover::new("test"));
    let gateway = Gateway::builder(config, policy, manifest)
        .approver(approver.clone())
        .insecure(true)
        .start()
        .await
        .unwrap();
    let proxy = Proxy::start(gateway.ws_addr()).await;
    let pi = client(&proxy.url(), PI_TOKEN).await;
    let call = |pi: &agent_gate::AgentGateClient| {
        let pi = pi.clone();
        tokio::spawn(async move {
            pi.tool_request("ha_call_service", light_on("light.kitchen"))
                .await
        })
    };
    let mut calls: Vec<_> = (0..BEFORE).map(|_| call(&pi)).collect();
    wait_until("the first calls wait for a human", || {
        gateway.pending_approvals() == BEFORE
    })
    .await;
    proxy.cut();
    wait_until("the gateway sees the agent gone", || {
        gateway.connected_agents() == 0
    })
    .await;
    // More calls while the network is away: 300 outstanding in all.
    calls.extend((0..DURING).map(|_| call(&pi)));
    proxy.restore();
    // Deny every request as it comes up; the calls still waiting in the SDK go out as
    // earlier ones are answered.
    let mut asked = 0;
    while asked < BEFORE + DURING {
        match tokio::time::timeout(Duration::from_secs(10), approver.next_request()).await {
            Ok(Some(request)) => {
                approver.deny(request.key, "bob").await;
                asked += 1;
            }
            _ => break,
        }
    }
    let mut denied = 0;
    let mut refused = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Err(e) if matches!(e.kind(), ErrorKind::Denied { .. }) => denied += 1,
            Err(e) if matches!(e.kind(), ErrorKind::RateLimited { .. }) => {
                refused.push(e.message().to_owned())
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert!(
        refused.is_empty(),
        "calls refused with -32006 after the reconnection: {refused:?}"
    );
    assert_eq!(denied, BEFORE + DURING);
    assert!(pi.reconnect_count() >= 1);
    pi.close().await;
    gateway.shutdown().await.unwrap();
}
