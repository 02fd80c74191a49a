//! Several connections per agent and the delivery contract, over real WebSockets and a real
//! SQLite file: each connection gets its own answers, a re-sent `request_id` attaches from any
//! connection, the per-agent cap refuses one more connection with 4000, and results are
//! delivered at least once (calls with a `request_id`) or at most once (calls without).

#[path = "server_support/mod.rs"]
mod support;

use std::time::Duration;

use agent_gate_gateway::store::RequestState;
use serde_json::{Value, json};
use support::{Harness, Options, PI_TOKEN};

const LIGHT: &str = "light.kitchen";

fn light_on() -> Value {
    json!({"domain": "light", "service": "turn_on", "entity_id": LIGHT})
}

/// The next frame within `wait`, if any.
async fn frame_within(client: &mut support::Client, wait: Duration) -> Option<Value> {
    tokio::time::timeout(wait, client.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn two_connections_of_one_agent_both_complete_calls_and_get_only_their_own_answers() {
    let h = Harness::start().await;
    let mut first = h.agent().await;
    let mut second = h.agent().await;
    // The first waits for a human; the second reads meanwhile; neither is closed.
    let asked = first
        .request(
            "tool_request",
            json!({"tool": "ha_call_service", "args": light_on()}),
        )
        .await;
    let status = first.notification().await;
    assert_eq!(status["params"]["status"], "awaiting_approval", "{status}");
    let read = second
        .tool("ha_get_state", json!({"entity_id": "light.bedroom"}))
        .await;
    assert_eq!(read["result"]["status"], "executed", "{read}");
    let request = h.approver.next_request().await.unwrap();
    h.approver.approve(request.key.clone(), "alice").await;
    let answer = first.response(asked).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    // The answer went to the connection that asked, not to the other one.
    assert_eq!(
        frame_within(&mut second, Duration::from_millis(300)).await,
        None
    );
    let again = second.tool("ha_get_config", json!({})).await;
    assert_eq!(again["result"]["status"], "executed", "{again}");
    assert_eq!(h.gateway().connected_agents(), 1);
    assert_eq!(h.gateway().agent_connections(), 2);
}

#[tokio::test]
async fn a_re_sent_request_id_attaches_from_another_connection_of_the_agent() {
    let h = Harness::start().await;
    let mut first = h.agent().await;
    let mut second = h.agent().await;
    let one = first
        .tool_with_id("ha_call_service", light_on(), "shared-1")
        .await;
    let _ = first.notification().await;
    // The same call re-sent on the other connection attaches: no second approval request.
    let two = second
        .tool_with_id("ha_call_service", light_on(), "shared-1")
        .await;
    let status = second.notification().await;
    assert_eq!(status["params"]["request_id"], "shared-1", "{status}");
    let request = h.approver.next_request().await.unwrap();
    h.approver.approve(request.key.clone(), "alice").await;
    let a = first.response(one).await;
    let b = second.response(two).await;
    assert_eq!(a["result"]["request_id"], "shared-1", "{a}");
    assert_eq!(b["result"]["request_id"], "shared-1", "{b}");
    assert_eq!(a["result"]["data"], b["result"]["data"]);
    let calls = h.home.service_call_count();
    assert_eq!(calls, 1, "executed once for both connections");
}

#[tokio::test]
async fn over_the_per_agent_cap_the_new_connection_is_refused_with_4000_and_a_reason() {
    let h = Harness::start_with(Options {
        max_connections_per_agent: Some(2),
        ..Options::default()
    })
    .await;
    let mut first = h.agent().await;
    let _second = h.agent().await;
    let mut third = h.connect().await;
    third.request("auth", json!({"token": PI_TOKEN})).await;
    let close = tokio::time::timeout(Duration::from_secs(5), third.closed())
        .await
        .expect("the third connection is closed")
        .expect("refused with a close frame");
    assert_eq!(u16::from(close.code), 4000);
    assert!(
        close.reason.contains("max_connections_per_agent"),
        "the reason names the setting: {}",
        close.reason
    );
    assert!(
        third.backlog.is_empty(),
        "not told it was authenticated: {:?}",
        third.backlog
    );
    // The connections already in are untouched; another agent is not counted with pi.
    let answer = first.tool("ha_get_config", json!({})).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    let mut laptop = h.agent_with(support::LAPTOP_TOKEN).await;
    let answer = laptop.tool("ha_get_config", json!({})).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
}

#[tokio::test]
async fn the_default_cap_is_eight_connections_per_agent() {
    let h = Harness::start().await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(h.agent().await);
    }
    let mut ninth = h.connect().await;
    ninth.request("auth", json!({"token": PI_TOKEN})).await;
    let close = tokio::time::timeout(Duration::from_secs(5), ninth.closed())
        .await
        .expect("the ninth connection is closed")
        .expect("refused");
    assert_eq!(u16::from(close.code), 4000);
    drop(held.pop());
    // A place freed is a place for the next connection.
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let mut client = h.connect().await;
            let answer = client.call("auth", json!({"token": PI_TOKEN})).await;
            if answer["result"]["status"] == "authenticated" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a freed place is taken again");
}

#[tokio::test]
async fn the_rate_limit_counts_all_connections_of_an_agent_together() {
    let h = Harness::start_with(Options {
        max_requests_per_minute: 3,
        ..Options::default()
    })
    .await;
    let mut first = h.agent().await;
    let mut second = h.agent().await;
    for n in 0..3 {
        let client = if n == 1 { &mut second } else { &mut first };
        let answer = client.tool("ha_get_config", json!({})).await;
        assert_eq!(answer["result"]["status"], "executed", "{answer}");
    }
    let answer = second.tool("ha_get_config", json!({})).await;
    assert_eq!(answer["error"]["code"], -32006, "{answer}");
}

/// The results `get_pending_results` lists on a fresh connection of pi.
async fn pending_ids(h: &Harness) -> Vec<String> {
    let mut client = h.agent().await;
    let answer = client.call("get_pending_results", json!({})).await;
    let results = answer["result"]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    results
        .iter()
        .map(|r| r["request_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Approves the next request and waits until its outcome is recorded.
async fn approve_and_finish(h: &Harness) {
    let request = h.approver.next_request().await.unwrap();
    h.approver.approve(request.key.clone(), "alice").await;
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let record = h
                .gateway()
                .store()
                .get_request(
                    request.key.agent_id.as_str(),
                    request.key.request_id.as_str(),
                )
                .await
                .unwrap();
            if record.is_some_and(|r| r.state == RequestState::Executed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the approved call runs");
}

/// Waits until the gateway sees no connection of pi.
async fn until_gone(h: &Harness) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while h.gateway().agent_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the gateway sees the connection gone");
}

#[tokio::test]
async fn an_answer_without_request_id_is_delivered_at_most_once_even_after_an_abrupt_drop() {
    let h = Harness::start().await;
    let mut client = h.agent().await;
    let answer = client.tool("ha_get_config", json!({})).await;
    assert_eq!(answer["result"]["status"], "executed", "{answer}");
    // Gone without a close frame and without sending anything after the answer.
    drop(client);
    until_gone(&h).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        pending_ids(&h).await,
        Vec::<String>::new(),
        "a client without request ids cannot de-duplicate: the answer it got is not repeated"
    );
}

#[tokio::test]
async fn an_answer_with_request_id_stays_until_acknowledged() {
    let h = Harness::start().await;
    let mut client = h.agent().await;
    let id = client
        .tool_with_id("ha_get_config", json!({}), "keep-1")
        .await;
    let answer = client.response(id).await;
    assert_eq!(answer["result"]["request_id"], "keep-1", "{answer}");
    drop(client);
    until_gone(&h).await;
    assert_eq!(
        pending_ids(&h).await,
        vec!["keep-1".to_owned()],
        "at least once"
    );
}

#[tokio::test]
async fn pending_results_without_request_id_are_returned_once_with_tool_name_and_args() {
    let h = Harness::start().await;
    let mut client = h.agent().await;
    let _ = client
        .request(
            "tool_request",
            json!({"tool": "ha_call_service", "args": light_on()}),
        )
        .await;
    let _ = client.notification().await;
    drop(client);
    until_gone(&h).await;
    approve_and_finish(&h).await;

    let mut client = h.agent().await;
    let answer = client.call("get_pending_results", json!({})).await;
    let results = answer["result"]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(results.len(), 1, "{answer}");
    let row = &results[0];
    assert_eq!(row["result"]["status"], "executed", "{row}");
    assert_eq!(row["tool"], "ha_call_service", "{row}");
    assert_eq!(
        row["tool_name"], "ha_call_service",
        "upstream's name: {row}"
    );
    assert_eq!(row["args"], light_on(), "upstream's args: {row}");
    // Dropped abruptly right after: returned once, as upstream does.
    drop(client);
    until_gone(&h).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pending_ids(&h).await, Vec::<String>::new());
}

#[tokio::test]
async fn pending_results_with_request_id_are_returned_until_acknowledged() {
    let h = Harness::start().await;
    let mut client = h.agent().await;
    let _ = client
        .tool_with_id("ha_call_service", light_on(), "later-1")
        .await;
    let _ = client.notification().await;
    drop(client);
    until_gone(&h).await;
    approve_and_finish(&h).await;
    // Fetched, then dropped before acknowledging (sending anything after the answer).
    assert_eq!(pending_ids(&h).await, vec!["later-1".to_owned()]);
    until_gone(&h).await;
    assert_eq!(
        pending_ids(&h).await,
        vec!["later-1".to_owned()],
        "still there"
    );
    // Acknowledged by the next frame on the connection that got it.
    let mut client = h.agent().await;
    let _ = client.call("get_pending_results", json!({})).await;
    let _ = client.call("list_tools", json!({})).await;
    drop(client);
    until_gone(&h).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pending_ids(&h).await, Vec::<String>::new());
}
